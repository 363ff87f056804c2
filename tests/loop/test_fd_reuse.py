"""Invariant 10: no operation outlives its file descriptor's identity.

A socket closed by user code while one of its sock_* operations is pending
gives up its fd number; the next socket may get it at once. asyncio is the
reference for what is observed: the old waiter keeps waiting and never sees
the new socket's bytes, nothing the old socket sends reaches the new one,
the old socket's peer sees EOF. Reusing the number is forced with os.dup2 so
that each scenario is deterministic. Tests that compare with stock asyncio
take the ``loop_factory`` fixture; those whose second half asyncio itself
cannot run (its selector keeps a stale key for the closed fd, so a new
sock_* call on the same number never wakes up) run on ringline only.
"""
import asyncio
import os
import socket

import pytest

from support import run

ringline = pytest.importorskip("ringline")

BIG = 8 << 20


def _pair(kind=socket.SOCK_STREAM):
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _onto(fd, sock):
    """sock, moved to the fd number `fd` (closed just before)."""
    if sock.fileno() != fd:
        os.dup2(sock.fileno(), fd)
        sock.close()
        sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


def _reuse(fd, kind=socket.SOCK_STREAM):
    """A new connected socket whose fd is `fd` (closed just before), and its peer."""
    x, peer = _pair(kind)
    if peer.fileno() == fd:
        x, peer = peer, x
    return _onto(fd, x), peer


async def _cancel(*tasks):
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _spin(loop, n=5):
    for _ in range(n):
        await asyncio.sleep(0)
    await asyncio.sleep(0.02)


async def _read_to_eof(loop, sock, limit=2 * BIG):
    """All bytes until EOF (bounded by the run() timeout)."""
    total = 0
    while total <= limit:
        data = await loop.sock_recv(sock, 1 << 16)
        if not data:
            return total
        total += len(data)
    raise AssertionError("no EOF")


def _nothing_to_read(sock):
    try:
        data = sock.recv(1 << 16)
    except BlockingIOError:
        return True
    raise AssertionError(f"unexpected {data[:40]!r}")


# -- asyncio-compared: the waiter and the peer of the closed socket ---------

def test_recv_pending_closed_peer_sees_eof(loop_factory):
    """A sock_recv pending on A, A closed: A's peer sees EOF, A's task keeps
    waiting (io_uring used to hold A's file open until the task ended)."""
    loop = loop_factory()

    async def main():
        a, a_peer = _pair()
        t = loop.create_task(loop.sock_recv(a, 100))
        await _spin(loop)
        a.close()
        assert await asyncio.wait_for(loop.sock_recv(a_peer, 10), 2) == b""
        await _spin(loop)
        assert not t.done()
        await _cancel(t)
        a_peer.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


def test_sendall_pending_closed_stops(loop_factory):
    """An 8 MB sock_sendall blocked on A, A closed: the peer gets what was
    sent before, then EOF -- never the rest of the 8 MB (the send kept
    going on io_uring, and the task reported success)."""
    loop = loop_factory()

    async def main():
        a, a_peer = _pair()
        t = loop.create_task(loop.sock_sendall(a, b"x" * BIG))
        await _spin(loop)
        assert not t.done()
        a.close()
        await _spin(loop)
        got = await _read_to_eof(loop, a_peer)
        assert got < BIG
        assert not t.done()
        await _cancel(t)
        a_peer.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


def test_accept_pending_closed_listener_refuses(loop_factory):
    """A sock_accept pending on a listener, the listener closed: new
    connections are refused (io_uring's ACCEPT kept the listener open and
    handed the closed listener's task a connection)."""
    loop = loop_factory()

    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        lsock.setblocking(False)
        addr = lsock.getsockname()
        t = loop.create_task(loop.sock_accept(lsock))
        await _spin(loop)
        lsock.close()
        await _spin(loop)
        c = socket.socket()
        c.settimeout(2)
        with pytest.raises(ConnectionRefusedError):
            c.connect(addr)         # blocking: loopback refuses at once
        c.close()
        await _spin(loop)
        assert not t.done()
        await _cancel(t)

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


def test_recv_queued_then_closed_and_reused_same_iteration(loop_factory):
    """sock_recv(A) starts and, in the same loop iteration, A is closed and
    its number taken by a socket the loop does not know: the queued receive
    must not run against it (it would take that socket's bytes)."""
    loop = loop_factory()

    async def main():
        a, a_peer = _pair()
        fd = a.fileno()
        state = {}

        def close_and_reuse():
            a.close()
            state["c"], state["c_peer"] = _reuse(fd)
            state["c_peer"].send(b"for-C")      # ready before the loop submits

        t = loop.create_task(loop.sock_recv(a, 100))
        loop.call_soon(close_and_reuse)
        await _spin(loop)
        c, c_peer = state["c"], state["c_peer"]
        assert c.recv(100) == b"for-C"
        assert not t.done()
        await _cancel(t)
        for s in (a_peer, c, c_peer):
            s.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


def test_sendall_queued_then_closed_and_reused_same_iteration(loop_factory):
    """sock_sendall(A) starts and, in the same iteration, A is closed and its
    number reused: nothing A meant to send reaches the new socket's peer."""
    loop = loop_factory()

    async def main():
        a, a_peer = _pair()
        fd = a.fileno()
        state = {}

        def close_and_reuse():
            a.close()
            state["c"], state["c_peer"] = _reuse(fd)

        t = loop.create_task(loop.sock_sendall(a, b"from-A" * 1000))
        loop.call_soon(close_and_reuse)
        await _spin(loop)
        assert _nothing_to_read(state["c_peer"])
        await _cancel(t)
        for s in (a_peer, state["c"], state["c_peer"]):
            s.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


def test_transport_closed_and_fd_reused_at_once(loop_factory):
    """A transport shut for writing and aborted from data_received; a socket
    takes its number before the loop submits: the shutdown never reaches
    the new socket (it used to shut the new socket's sending side)."""
    loop = loop_factory()

    async def main():
        a, a_peer = _pair()
        fd = a.fileno()
        state = {}

        def reuse():
            assert a.fileno() == -1
            state["b"], state["b_peer"] = _reuse(fd)

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                self.tr = tr

            def data_received(self, data):
                self.tr.write_eof()
                self.tr.abort()
                loop.call_soon(reuse)

        tr, _ = await loop.connect_accepted_socket(P, a)
        await loop.sock_sendall(a_peer, b"go")
        await _spin(loop)
        b, b_peer = state["b"], state["b_peer"]
        await loop.sock_sendall(b, b"ping")
        assert await asyncio.wait_for(loop.sock_recv(b_peer, 10), 2) == b"ping"
        for s in (a_peer, b, b_peer):
            s.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


def test_datagram_transport_abort_blocked_send_fd_reused(loop_factory):
    """A Unix datagram transport whose sends block (the peer does not read)
    is aborted and its number reused by a stream socket the loop reads:
    none of the aborted transport's datagrams reach the new socket's peer."""
    loop = loop_factory()

    async def main():
        tag = f"ringline-fdreuse-{os.getpid()}-{id(loop)}"
        a_peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        a_peer.bind("\0" + tag + "-p")
        tr, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, family=socket.AF_UNIX,
            local_addr="\0" + tag + "-a", remote_addr="\0" + tag + "-p")
        a = tr.get_extra_info("socket")
        fd = a.fileno()
        for _ in range(200):
            tr.sendto(b"d" * 1000)
        await _spin(loop)
        tr.abort()
        await _spin(loop)
        assert a.fileno() == -1
        b, b_peer = _reuse(fd)
        t = loop.create_task(loop.sock_recv(b, 100))
        await _spin(loop)
        assert _nothing_to_read(b_peer)
        b_peer.send(b"hi")
        assert await asyncio.wait_for(t, 2) == b"hi"
        for s in (a_peer, b, b_peer):
            s.close()

    try:
        run(main(), loop=loop)
    finally:
        loop.close()


# -- ringline only: the new socket on the same number -----------------------
# (asyncio's selector keeps the closed fd's key, so a sock_* call on the new
# socket never wakes up there: no reference to compare with)

@pytest.fixture
def rloop():
    lp = ringline.new_event_loop()
    try:
        yield lp
    finally:
        lp.close()


def test_recv_pending_fd_reused_new_socket_gets_its_bytes(rloop):
    loop = rloop

    async def main():
        a, a_peer = _pair()
        fd = a.fileno()
        ta = loop.create_task(loop.sock_recv(a, 100))
        await _spin(loop)
        a.close()
        b, b_peer = _reuse(fd)
        tb = loop.create_task(loop.sock_recv(b, 100))
        await _spin(loop)
        b_peer.send(b"hello-B")
        assert await asyncio.wait_for(tb, 2) == b"hello-B"
        await _spin(loop)
        assert not ta.done()
        assert await asyncio.wait_for(loop.sock_recv(a_peer, 10), 2) == b""
        await _cancel(ta)
        for s in (a_peer, b, b_peer):
            s.close()

    run(main(), loop=loop)


def test_recv_into_pending_fd_reused(rloop):
    loop = rloop

    async def main():
        a, a_peer = _pair()
        fd = a.fileno()
        abuf = bytearray(100)
        ta = loop.create_task(loop.sock_recv_into(a, abuf))
        await _spin(loop)
        a.close()
        b, b_peer = _reuse(fd)
        bbuf = bytearray(100)
        tb = loop.create_task(loop.sock_recv_into(b, bbuf))
        await _spin(loop)
        b_peer.send(b"into-B")
        n = await asyncio.wait_for(tb, 2)
        assert bytes(bbuf[:n]) == b"into-B"
        await _spin(loop)
        assert not ta.done() and abuf == bytearray(100)
        await _cancel(ta)
        for s in (a_peer, b, b_peer):
            s.close()

    run(main(), loop=loop)


def test_sendall_pending_fd_reused_nothing_reaches_new_peer(rloop):
    loop = rloop

    async def main():
        a, a_peer = _pair()
        fd = a.fileno()
        ta = loop.create_task(loop.sock_sendall(a, b"A" * BIG))
        await _spin(loop)
        assert not ta.done()
        a.close()
        b, b_peer = _reuse(fd)
        tb = loop.create_task(loop.sock_recv(b, 100))   # the loop watches fd
        await _spin(loop)
        assert _nothing_to_read(b_peer)
        b_peer.send(b"x")
        assert await asyncio.wait_for(tb, 2) == b"x"
        assert (await _read_to_eof(loop, a_peer)) < BIG
        assert not ta.done()
        await _cancel(ta)
        for s in (a_peer, b, b_peer):
            s.close()

    run(main(), loop=loop)


def test_recvfrom_pending_fd_reused(rloop):
    loop = rloop

    async def main():
        a, a_peer = _pair(socket.SOCK_DGRAM)
        fd = a.fileno()
        ta = loop.create_task(loop.sock_recvfrom(a, 100))
        await _spin(loop)
        a.close()
        b, b_peer = _reuse(fd, socket.SOCK_DGRAM)
        tb = loop.create_task(loop.sock_recvfrom(b, 100))
        await _spin(loop)
        b_peer.send(b"dgram-B")
        data, _ = await asyncio.wait_for(tb, 2)
        assert data == b"dgram-B"
        await _spin(loop)
        assert not ta.done()
        await _cancel(ta)
        for s in (a_peer, b, b_peer):
            s.close()

    run(main(), loop=loop)


def test_accept_pending_fd_reused_by_new_listener(rloop):
    loop = rloop

    async def main():
        la = socket.socket()
        la.bind(("127.0.0.1", 0))
        la.listen(8)
        la.setblocking(False)
        fd = la.fileno()
        ta = loop.create_task(loop.sock_accept(la))
        await _spin(loop)
        la.close()
        lb0 = socket.socket()
        lb0.bind(("127.0.0.1", 0))
        lb0.listen(8)
        lb = _onto(fd, lb0)
        tb = loop.create_task(loop.sock_accept(lb))
        await _spin(loop)
        c = socket.socket()
        c.setblocking(False)
        await loop.sock_connect(c, lb.getsockname())
        conn, _ = await asyncio.wait_for(tb, 2)
        await _spin(loop)
        assert not ta.done()
        await _cancel(ta)
        for s in (conn, c, lb):
            s.close()

    run(main(), loop=loop)


def test_connect_pending_fd_reused(rloop):
    """A connect that cannot finish (the listener's queue is full), its
    socket closed and the number reused by a connected socket: the old
    connect must not 'succeed' on the new socket."""
    loop = rloop

    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        addr = lsock.getsockname()
        fillers = []
        ta = None
        for _ in range(16):
            s = socket.socket()
            s.setblocking(False)
            t = loop.create_task(loop.sock_connect(s, addr))
            await _spin(loop, 2)
            if not t.done():
                ta, a = t, s
                break
            fillers.append(s)
        assert ta is not None, "could not get a pending connect"
        fd = a.fileno()
        a.close()
        b, b_peer = _reuse(fd)
        tb = loop.create_task(loop.sock_recv(b, 100))
        await _spin(loop)
        b_peer.send(b"B")
        assert await asyncio.wait_for(tb, 2) == b"B"
        await _spin(loop)
        assert not ta.done()
        await _cancel(ta)
        for s in fillers + [b, b_peer, lsock]:
            s.close()

    run(main(), loop=loop)


def test_registry_empties(rloop):
    """The registry of pending sock_* operations holds nothing after they end
    (completed, cancelled or orphaned)."""
    loop = rloop

    async def main():
        a, a_peer = _pair()
        t = loop.create_task(loop.sock_recv(a, 100))
        await _spin(loop)
        assert loop._sock_ops_pending() == 1
        a_peer.send(b"x")
        assert await t == b"x"
        t = loop.create_task(loop.sock_recv(a, 100))
        await _spin(loop)
        await _cancel(t)
        await _spin(loop)
        assert loop._sock_ops_pending() == 0
        t = loop.create_task(loop.sock_recv(a, 100))
        await _spin(loop)
        a.close()
        await _spin(loop)
        assert loop._sock_ops_pending() == 0
        await _cancel(t)
        a_peer.close()

    run(main(), loop=loop)
