"""Low-level socket operations, errors common to every sock_* operation
(blocking or closed sockets, a closed loop) and pending operations across
a loop stop / restart, a loop close, and thousands at once.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` fixture of conftest.py. The peer side of a
connection is an ordinary blocking socket driven by the test (or by a helper
thread), so it does not depend on the loop under test. The ``tcp`` / ``udp``
socket-pair fixtures are in tests/loop/conftest.py, the peer-side helpers
in support/sock_ops.py.
"""
import asyncio
import contextlib
import socket
import tempfile
import time

import pytest

from support import closing_all, run, tcp_listener, tcp_pair, udp_pair
from support.sock_ops import peer_recv_exactly


# ---------------------------------------------------------------------------
# error cases common to all operations
# ---------------------------------------------------------------------------

SOCK_OPS = ["recv", "recv_into", "recvfrom", "recvfrom_into", "sendall",
            "sendto", "accept", "connect", "sendfile"]


def _make_op(loop, name, sock, *, addr=None, fileobj=None):
    if name == "recv":
        return loop.sock_recv(sock, 10)
    if name == "recv_into":
        return loop.sock_recv_into(sock, bytearray(10))
    if name == "recvfrom":
        return loop.sock_recvfrom(sock, 10)
    if name == "recvfrom_into":
        return loop.sock_recvfrom_into(sock, bytearray(10))
    if name == "sendall":
        return loop.sock_sendall(sock, b"x")
    if name == "sendto":
        return loop.sock_sendto(sock, b"x", addr)
    if name == "accept":
        return loop.sock_accept(sock)
    if name == "connect":
        return loop.sock_connect(sock, addr)
    if name == "sendfile":
        return loop.sock_sendfile(sock, fileobj)
    raise AssertionError(name)


@contextlib.contextmanager
def _op_setup(name, *, blocking):
    """A socket suitable for operation ``name``; the op completes immediately
    (data is pending, a connection is queued...), so an implementation that
    wrongly accepts a blocking socket fails fast instead of hanging."""
    with contextlib.ExitStack() as stack:
        kw = {}
        if name in ("recvfrom", "recvfrom_into", "sendto"):
            sock, peer = udp_pair()
            stack.enter_context(closing_all(sock, peer))
            peer.sendto(b"pending", sock.getsockname())
            kw["addr"] = peer.getsockname()
        elif name == "accept":
            sock = tcp_listener()
            stack.enter_context(closing_all(sock))
            client = socket.create_connection(sock.getsockname(), timeout=5)
            stack.enter_context(closing_all(client))
        elif name == "connect":
            lsock = tcp_listener()
            sock = socket.socket()
            stack.enter_context(closing_all(lsock, sock))
            kw["addr"] = lsock.getsockname()
        else:
            sock, peer = tcp_pair()
            stack.enter_context(closing_all(sock, peer))
            peer.sendall(b"pending")
            if name == "sendfile":
                f = stack.enter_context(tempfile.TemporaryFile())
                f.write(b"file data")
                f.seek(0)
                kw["fileobj"] = f
        if blocking:
            sock.settimeout(None)
        else:
            sock.setblocking(False)
        yield sock, kw


@pytest.mark.parametrize("name", SOCK_OPS)
def test_blocking_socket_raises_value_error(loop, name):
    # asyncio performs this check in debug mode
    loop.set_debug(True)
    with _op_setup(name, blocking=True) as (sock, kw):
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            run(_make_op(loop, name, sock, **kw), loop=loop)


@pytest.mark.parametrize("name", SOCK_OPS)
def test_closed_socket_raises_os_error(loop, name):
    with _op_setup(name, blocking=False) as (sock, kw):
        sock.close()
        assert sock.fileno() == -1
        with pytest.raises(OSError):
            run(_make_op(loop, name, sock, **kw), loop=loop)
        # the loop is unaffected
        assert run(asyncio.sleep(0.01, "alive"), loop=loop) == "alive"


def _start(aw):
    """Drive an awaitable to its first suspension point without a loop."""
    it = aw.__await__()
    try:
        next(it)
    finally:
        with contextlib.suppress(Exception):
            it.close()


@pytest.mark.parametrize("name", ["recv", "recv_into", "recvfrom",
                                  "recvfrom_into", "accept"])
def test_operation_on_closed_loop_raises(loop, name):
    # nothing pending, so the operation would have to wait on the loop
    if name in ("recvfrom", "recvfrom_into"):
        sock, peer = udp_pair()
    elif name == "accept":
        sock, peer = tcp_listener(), socket.socket()
    else:
        sock, peer = tcp_pair()
    with closing_all(sock, peer):
        loop.close()
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            _start(_make_op(loop, name, sock))


# ---------------------------------------------------------------------------
# pending operations across stop / restart, close, and many at once
# ---------------------------------------------------------------------------


def test_pending_recv_survives_stop_and_restart(loop, tcp):
    ours, peer = tcp
    buf = bytearray(16)
    task = loop.create_task(loop.sock_recv_into(ours, buf))
    run(asyncio.sleep(0.02), loop=loop)
    assert not task.done()
    peer.sendall(b"while stopped")   # arrives while the loop is not running
    time.sleep(0.02)
    assert run(task, loop=loop) == 13
    assert buf[:13] == b"while stopped"


def test_close_loop_with_pending_operations(loop, tcp):
    ours, peer = tcp
    lsock = tcp_listener()
    buf = bytearray(b"\xaa" * 64)
    with lsock:
        tasks = [loop.create_task(loop.sock_recv_into(ours, buf)),
                 loop.create_task(loop.sock_recv(ours, 100)),
                 loop.create_task(loop.sock_accept(lsock))]
        run(asyncio.sleep(0.02), loop=loop)
        assert not any(t.done() for t in tasks)
        loop.close()
        assert loop.is_closed()
        peer.sendall(b"Z" * 64)
        time.sleep(0.05)
        assert buf == b"\xaa" * 64, "closed loop's operation wrote the buffer"
        # the data is still in the socket
        ours.setblocking(True)
        ours.settimeout(2)
        assert peer_recv_exactly(ours, 64) == b"Z" * 64
        for t in tasks:
            t._log_destroy_pending = False


def test_many_concurrent_pending_recvs(loop):
    import resource
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # more operations than a 4096-entry ring holds, if the fd limit allows
    n = max(100, min(5000, (soft - 256) // 2))
    pairs = [socket.socketpair() for _ in range(n)]
    try:
        for a, b in pairs:
            a.setblocking(False)

        async def main():
            tasks = [asyncio.ensure_future(loop.sock_recv(a, 64))
                     for a, _ in pairs]
            await asyncio.sleep(0.05)
            assert not any(t.done() for t in tasks)
            for i, (_, b) in enumerate(pairs):
                b.send(b"%d" % i)
            return await asyncio.gather(*tasks)

        results = run(main(), timeout=20, loop=loop)
        assert results == [b"%d" % i for i in range(n)]
    finally:
        for a, b in pairs:
            a.close()
            b.close()
