"""Large datagrams arrive whole (issue 12, finding 8).

Unix datagrams can be far larger than UDP's (up to the sender's SO_SNDBUF,
about 4 MiB); the datagram transport used to cut every one at 65,904 bytes
(the room in its provided buffers) without a word. Compared with stock
asyncio on both backends: the transport, sock_recvfrom and
sock_recvfrom_into deliver 65,905- and 100,000-byte Unix datagrams whole,
and the largest UDP datagram (IPv4 and IPv6) whole. For the largest Unix
datagram the socket accepts, ringline delivers it whole; asyncio's
transport reads at most 256 KiB per datagram (its max_size) and cuts the
rest, which the test states rather than copies.
"""
import asyncio
import os
import socket

import pytest

from support import run

ASYNCIO_DGRAM_MAX = 256 * 1024      # asyncio's _SelectorDatagramTransport.max_size


def _is_asyncio(loop):
    return type(loop) is asyncio.SelectorEventLoop


def _unix_pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 30)   # clamped to wmem_max
    b.setblocking(False)
    return a, b


def _largest_unix_datagram():
    """The largest datagram a Unix socket with the largest SO_SNDBUF takes."""
    a, b = _unix_pair()
    b.setblocking(True)
    try:
        lo, hi = 1, 1 << 24
        while lo < hi:
            mid = (lo + hi + 1) // 2
            try:
                a.send(b"s" * mid)
            except OSError:
                hi = mid - 1
                continue
            b.recv(1)
            lo = mid
        return lo
    finally:
        a.close()
        b.close()


class _Collect(asyncio.DatagramProtocol):
    def __init__(self, want):
        self.got = []
        self.want = want
        self.done = asyncio.get_running_loop().create_future()

    def datagram_received(self, data, addr):
        self.got.append(data)
        if len(self.got) == self.want and not self.done.done():
            self.done.set_result(None)


def _pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(min(n, 4096))) * (n // 4096 + 1)


@pytest.mark.parametrize("sizes", [[65905], [100000], [10, 100000, 0, 65905, 1]],
                         ids=["65905", "100000", "mixed"])
def test_unix_datagram_transport_whole(loop_factory, sizes):
    loop = loop_factory()

    async def main():
        a, b = _unix_pair()
        proto = _Collect(len(sizes))
        tr, _ = await loop.create_datagram_endpoint(lambda: proto, sock=b)
        await asyncio.sleep(0)
        sent = [_pattern(n, i)[:n] for i, n in enumerate(sizes)]
        for d in sent:
            a.send(d)
        await asyncio.wait_for(proto.done, 5)
        assert [len(d) for d in proto.got] == sizes
        assert proto.got == sent
        tr.close()
        a.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


def test_unix_datagram_transport_largest(loop_factory):
    n = _largest_unix_datagram()
    assert n > ASYNCIO_DGRAM_MAX      # the case asyncio cuts
    loop = loop_factory()

    async def main():
        a, b = _unix_pair()
        proto = _Collect(2)
        tr, _ = await loop.create_datagram_endpoint(lambda: proto, sock=b)
        await asyncio.sleep(0)
        big = _pattern(n, 3)[:n]
        a.send(big)
        a.send(b"after")
        await asyncio.wait_for(proto.done, 5)
        expect = big[:ASYNCIO_DGRAM_MAX] if _is_asyncio(loop) else big
        assert len(proto.got[0]) == len(expect)
        assert proto.got[0] == expect
        assert proto.got[1] == b"after"
        tr.close()
        a.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


@pytest.mark.parametrize("n", [65905, 100000])
def test_unix_sock_recvfrom_whole(loop_factory, n):
    loop = loop_factory()

    async def main():
        a, b = _unix_pair()
        d = _pattern(n, 1)[:n]
        a.send(d)
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(b, 1 << 20), 5)
        assert data == d
        a.send(d)
        buf = bytearray(1 << 20)
        k, _ = await asyncio.wait_for(loop.sock_recvfrom_into(b, buf), 5)
        assert k == n and buf[:k] == d
        a.close()
        b.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


@pytest.mark.parametrize("family,host,n", [
    (socket.AF_INET, "127.0.0.1", 65507),
    (socket.AF_INET6, "::1", 65527),
], ids=["ipv4", "ipv6"])
def test_udp_largest_datagram_whole(loop_factory, family, host, n):
    try:
        rx = socket.socket(family, socket.SOCK_DGRAM)
        rx.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} on this machine")
    tx = socket.socket(family, socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.setblocking(False)
    loop = loop_factory()

    async def main():
        d = _pattern(n, 5)[:n]
        tx.sendto(d, rx.getsockname())
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(rx, 1 << 17), 5)
        assert data == d
        proto = _Collect(1)
        tr, _ = await loop.create_datagram_endpoint(lambda: proto, sock=rx)
        await asyncio.sleep(0)
        tx.sendto(d, rx.getsockname())
        await asyncio.wait_for(proto.done, 5)
        assert proto.got == [d]
        tr.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()
        tx.close()
        rx.close()


def test_udpsocket_largest_datagram_whole():
    import ringline

    loop = ringline.new_event_loop()

    async def main():
        us = ringline.UdpSocket.bind(("127.0.0.1", 0))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        d = _pattern(65507, 9)[:65507]
        tx.sendto(d, us.local_addr)
        data, _ = await asyncio.wait_for(us.recv_from(), 5)
        assert data == d
        tx.sendto(d, us.local_addr)
        got = await asyncio.wait_for(us.with_datagram(lambda v, a: bytes(v)), 5)
        assert got == d
        us.close()
        tx.close()
        await asyncio.sleep(0)

    try:
        run(main(), loop=loop)
    finally:
        loop.close()
