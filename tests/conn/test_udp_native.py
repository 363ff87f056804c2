"""ringline.UdpSocket on the backend RINGLINE_BACKEND selects: recv_from,
with_datagram, send_to (batched, bounded), send_ready, close, bad input.

Peers are plain blocking sockets on 127.0.0.1; every wait is bounded."""
import asyncio
import socket

import pytest

import ringline
from ringline import QueueFull
from ringline._errors import ConnectionClosed
from ringline._conn.udp import UdpSocket

from support import run


def peer():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


def test_exported_and_bound():
    assert ringline.UdpSocket is UdpSocket

    async def main():
        udp = UdpSocket.bind(("127.0.0.1", 0))
        try:
            host, port = udp.local_addr
            assert host == "127.0.0.1" and port > 0
            assert udp.fileno() >= 0 and not udp.closed
        finally:
            udp.close()
        assert udp.closed and udp.fileno() == -1
        udp.close()            # idempotent
    run(main())


def test_recv_from_and_send_to_roundtrip():
    p = peer()

    async def main():
        udp = UdpSocket.bind(("127.0.0.1", 0))
        try:
            p.sendto(b"hello", udp.local_addr)
            data, addr = await udp.recv_from()
            assert data == b"hello" and addr == p.getsockname()
            udp.send_to(bytearray(b"world"), addr)      # mutable: copied
            udp.send_to(memoryview(b"!!"), addr)
            await asyncio.sleep(0)
            assert udp.queued_bytes <= 7
            loop = asyncio.get_running_loop()
            got = [await loop.run_in_executor(None, p.recvfrom, 100) for _ in range(2)]
            assert [g[0] for g in got] == [b"world", b"!!"]
            assert got[0][1] == udp.local_addr
            assert udp.sent == 2 and udp.send_errors == 0
        finally:
            udp.close()
    try:
        run(main())
    finally:
        p.close()


def test_with_datagram_view_released_and_result_returned():
    p = peer()

    async def main():
        udp = UdpSocket.bind(("127.0.0.1", 0))
        kept = []
        try:
            p.sendto(b"abcdef", udp.local_addr)

            def fn(view, addr):
                assert isinstance(view, memoryview) and view.readonly is False
                kept.append(view)
                return bytes(view[1:4]), addr
            data, addr = await udp.with_datagram(fn)
            assert data == b"bcd" and addr == p.getsockname()
            with pytest.raises(ValueError):        # released after fn
                bytes(kept[0])
            # two concurrent receivers each get a datagram
            t1 = asyncio.ensure_future(udp.with_datagram(lambda v, a: bytes(v)))
            t2 = asyncio.ensure_future(udp.with_datagram(lambda v, a: bytes(v)))
            await asyncio.sleep(0.01)
            p.sendto(b"one", udp.local_addr)
            p.sendto(b"two", udp.local_addr)
            assert sorted(await asyncio.gather(t1, t2)) == [b"one", b"two"]
            # an exception in fn propagates; the socket keeps working
            p.sendto(b"x", udp.local_addr)

            def boom(view, addr):
                raise KeyError("boom")
            with pytest.raises(KeyError):
                await udp.with_datagram(boom)
            p.sendto(b"y" * 3000, udp.local_addr)
            assert await udp.with_datagram(lambda v, a: len(v)) == 3000
        finally:
            udp.close()
    try:
        run(main())
    finally:
        p.close()


def test_many_datagrams_sent_in_order():
    p = peer()
    p.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    async def main():
        udp = UdpSocket.bind(("127.0.0.1", 0))
        try:
            for i in range(300):
                udp.send_to(b"%04d" % i, p.getsockname())
            while udp.queued_bytes:
                await asyncio.sleep(0.005)
            assert udp.sent == 300
        finally:
            udp.close()
    try:
        run(main())
        got = [p.recv(10) for _ in range(300)]
        assert got == [b"%04d" % i for i in range(300)]
    finally:
        p.close()


def test_send_queue_bound_and_send_ready():
    p = peer()
    p.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        udp = UdpSocket(sock, max_send_queue=1000)
        dest = p.getsockname()
        try:
            udp.send_to(b"a" * 400, dest)
            udp.send_to(b"b" * 400, dest)
            assert not udp.can_send()
            with pytest.raises(QueueFull):
                udp.send_to(b"c" * 400, dest)      # 1200 > 1000
            await udp.send_ready()
            assert udp.can_send() and udp.queued_bytes <= 500
            udp.send_to(b"c" * 400, dest)
            # a single datagram larger than the bound is still accepted
            while udp.queued_bytes:
                await asyncio.sleep(0.005)
            udp.send_to(b"d" * 1500, dest)
            await udp.send_ready()
        finally:
            udp.close()
        return udp.sent
    try:
        assert run(main()) == 4
        assert [len(p.recv(2000)) for _ in range(4)] == [400, 400, 400, 1500]
    finally:
        p.close()


@pytest.mark.parametrize("data,addr,exc", [
    ("text", ("127.0.0.1", 9), TypeError),
    (12, ("127.0.0.1", 9), TypeError),
    (b"x" * 70000, ("127.0.0.1", 9), ValueError),
    (b"x", ("localhost", 9), ValueError),           # not numeric
    (b"x", ("127.0.0.1", 0), ValueError),
    (b"x", ("127.0.0.1", 70000), ValueError),
    (b"x", ("127.0.0.1", "9"), ValueError),
    (b"x", "127.0.0.1:9", ValueError),
    (b"x", ("::1", 9), ValueError),                 # IPv6 on an IPv4 socket
    (b"x", None, ValueError),
])
def test_send_to_rejects_bad_input(data, addr, exc):
    async def main():
        udp = UdpSocket.bind(("127.0.0.1", 0))
        try:
            with pytest.raises(exc):
                udp.send_to(data, addr)
            assert udp.queued_bytes == 0
        finally:
            udp.close()
    run(main())


def test_bad_construction():
    async def main():
        with socket.socket() as tcp:
            with pytest.raises(ValueError, match="SOCK_DGRAM"):
                UdpSocket(tcp)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError, match="max_datagram"):
                UdpSocket(s, max_datagram=0)
            with pytest.raises(ValueError, match="max_send_queue"):
                UdpSocket(s, max_send_queue=0)
    run(main())


def test_close_wakes_pending_receivers_and_rejects_calls():
    async def main():
        udp = UdpSocket.bind(("127.0.0.1", 0))
        r1 = asyncio.ensure_future(udp.recv_from())
        r2 = asyncio.ensure_future(udp.with_datagram(lambda v, a: bytes(v)))
        await asyncio.sleep(0.02)
        udp.close()
        for r in (r1, r2):
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(r, 5)
        assert udp.fileno() == -1          # the fd is closed once they returned
        with pytest.raises(ConnectionClosed):
            await udp.recv_from()
        with pytest.raises(ConnectionClosed):
            udp.send_to(b"x", ("127.0.0.1", 9))
        with pytest.raises(ConnectionClosed):
            await udp.send_ready()
    run(main())


def test_cancelled_receive_loses_nothing():
    p = peer()

    async def main():
        udp = UdpSocket.bind(("127.0.0.1", 0))
        try:
            r = asyncio.ensure_future(udp.recv_from())
            await asyncio.sleep(0.01)
            r.cancel()
            with pytest.raises(asyncio.CancelledError):
                await r
            p.sendto(b"after-cancel", udp.local_addr)
            data, _ = await udp.recv_from()
            assert data == b"after-cancel"
        finally:
            udp.close()
    try:
        run(main())
    finally:
        p.close()


def test_ipv6_socket():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1")

    async def main():
        a = UdpSocket.bind(("::1", 0))
        b = UdpSocket.bind(("::1", 0))
        try:
            a.send_to(b"six", b.local_addr[:2])
            data, addr = await b.recv_from()
            assert data == b"six" and addr[:2] == a.local_addr[:2]
            with pytest.raises(ValueError):
                a.send_to(b"x", ("127.0.0.1", 9))
        finally:
            a.close()
            b.close()
    run(main())
