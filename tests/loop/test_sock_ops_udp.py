"""Low-level socket operations on UDP sockets: sock_recvfrom /
sock_recvfrom_into / sock_sendto (truncation, nbytes, message boundaries,
host names).

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` fixture of conftest.py. The peer side of a
connection is an ordinary blocking socket driven by the test (or by a helper
thread), so it does not depend on the loop under test. The ``tcp`` / ``udp``
socket-pair fixtures are in tests/loop/conftest.py, the peer-side helpers
in support/sock_ops.py.
"""
import asyncio
import socket
import threading

from support import run


# ---------------------------------------------------------------------------
# sock_recvfrom / sock_recvfrom_into / sock_sendto (UDP)
# ---------------------------------------------------------------------------

def test_sock_recvfrom(loop, udp):
    ours, peer = udp

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(ours, 1024))
        await asyncio.sleep(0.02)
        assert not task.done()
        peer.sendto(b"datagram", ours.getsockname())
        return await task

    data, addr = run(main(), loop=loop)
    assert data == b"datagram"
    assert addr == peer.getsockname()


def test_sock_recvfrom_waits_on_a_socket_shut_down_for_reading(loop, udp):
    """After shutdown(SHUT_RD) a UDP socket polls readable with nothing to
    read: sock_recvfrom keeps waiting (no BlockingIOError) and still gets a
    datagram that arrives later, as on asyncio's own loop."""
    ours, peer = udp
    try:
        ours.shutdown(socket.SHUT_RD)
    except OSError:
        pass                     # ENOTCONN: Linux marks the socket shut down anyway

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(ours, 1024))
        await asyncio.sleep(0.1)
        assert not task.done()
        peer.sendto(b"late", ours.getsockname())
        return await task

    data, addr = run(main(), loop=loop)
    assert data == b"late" and addr == peer.getsockname()


def test_sock_recvfrom_truncates_to_bufsize(loop, udp):
    ours, peer = udp
    peer.sendto(b"0123456789", ours.getsockname())
    data, addr = run(loop.sock_recvfrom(ours, 4), loop=loop)
    assert data == b"0123"
    assert addr == peer.getsockname()


def test_sock_recvfrom_into(loop, udp):
    ours, peer = udp
    buf = bytearray(b"-" * 10)
    peer.sendto(b"abc", ours.getsockname())
    n, addr = run(loop.sock_recvfrom_into(ours, buf), loop=loop)
    assert (n, addr) == (3, peer.getsockname())
    assert buf == b"abc" + b"-" * 7


def test_sock_recvfrom_into_nbytes(loop, udp):
    ours, peer = udp
    buf = bytearray(b"-" * 10)

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom_into(ours, buf, 2))
        await asyncio.sleep(0.02)
        peer.sendto(b"abcdef", ours.getsockname())
        return await task

    n, addr = run(main(), loop=loop)
    assert n == 2 and addr == peer.getsockname()
    assert buf == b"ab" + b"-" * 8


def test_sock_sendto(loop, udp):
    ours, peer = udp
    n = run(loop.sock_sendto(ours, b"to-peer", peer.getsockname()), loop=loop)
    assert n == len(b"to-peer")
    data, addr = peer.recvfrom(100)
    assert data == b"to-peer" and addr == ours.getsockname()


def test_udp_message_boundaries_preserved(loop, udp):
    ours, peer = udp
    msgs = [b"m%d" % i * (i + 1) for i in range(20)]

    async def main():
        for m in msgs:
            await loop.sock_sendto(ours, m, peer.getsockname())
        got = []
        for _ in msgs:
            data, _addr = await loop.sock_recvfrom(ours, 4096)
            got.append(data)
        return got

    def echo():
        for _ in msgs:
            data, addr = peer.recvfrom(4096)
            peer.sendto(data, addr)

    t = threading.Thread(target=echo)
    t.start()
    try:
        assert run(main(), loop=loop) == msgs
    finally:
        t.join()


def test_sock_sendto_resolves_hostname(loop, udp):
    ours, peer = udp
    port = peer.getsockname()[1]
    n = run(loop.sock_sendto(ours, b"by name", ("localhost", port)), loop=loop)
    assert n == 7
    assert peer.recvfrom(100)[0] == b"by name"
