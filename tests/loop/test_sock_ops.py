"""Low-level socket operations (loop.sock_*) on non-blocking sockets:
results, errors, cancellation and data integrity.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` fixture of conftest.py. The peer side of a
connection is an ordinary blocking socket driven by the test (or by a helper
thread), so it does not depend on the loop under test.
"""
import asyncio
import contextlib
import errno
import hashlib
import io
import os
import socket
import tempfile
import threading
import time

import pytest

from support import (closing_all, free_port, run, tcp_listener, tcp_pair,
                     udp_pair)

MiB = 1 << 20


async def recv_exactly(loop, sock, n):
    chunks = []
    while n:
        data = await loop.sock_recv(sock, n)
        if not data:
            raise EOFError(f"EOF with {n} bytes still expected")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def peer_recv_exactly(peer, n):
    chunks = []
    while n:
        data = peer.recv(min(n, 1 << 16))
        if not data:
            raise EOFError(f"EOF with {n} bytes still expected")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


class PeerReader(threading.Thread):
    """Reads from a blocking peer socket in a thread.

    Stops after ``nbytes`` bytes, after ``marker`` was seen at the end of the
    stream, or at EOF. ``delay`` seconds are slept after every recv to make a
    slow reader.
    """

    def __init__(self, peer, nbytes=None, marker=None, delay=0.0,
                 chunk=1 << 16):
        super().__init__(daemon=True)
        self.peer, self.nbytes, self.marker = peer, nbytes, marker
        self.delay, self.chunk = delay, chunk
        self.buf = bytearray()
        self.error = None

    def run(self):
        try:
            while True:
                if self.nbytes is not None and len(self.buf) >= self.nbytes:
                    return
                if self.marker is not None and self.buf.endswith(self.marker):
                    return
                data = self.peer.recv(self.chunk)
                if not data:
                    return
                self.buf += data
                if self.delay:
                    time.sleep(self.delay)
        except Exception as exc:  # noqa: BLE001 - reported by result()
            self.error = exc

    def result(self, timeout=10):
        self.join(timeout)
        assert not self.is_alive(), "peer reader did not finish"
        if self.error is not None:
            raise self.error
        return bytes(self.buf)


def reset_connection(sock):
    """Close ``sock`` so that the other end sees a TCP RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")  # l_onoff=1, l_linger=0
    sock.close()


@pytest.fixture
def tcp():
    ours, peer = tcp_pair()
    with closing_all(ours, peer):
        yield ours, peer


@pytest.fixture
def udp():
    ours, peer = udp_pair()
    with closing_all(ours, peer):
        yield ours, peer


# ---------------------------------------------------------------------------
# sock_recv / sock_recv_into
# ---------------------------------------------------------------------------

def test_sock_recv_returns_available_data(loop, tcp):
    ours, peer = tcp
    peer.sendall(b"hello")
    assert run(recv_exactly(loop, ours, 5), loop=loop) == b"hello"


def test_sock_recv_waits_for_data(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(ours, 100))
        await asyncio.sleep(0.05)
        assert not task.done()
        peer.sendall(b"late data")
        return await task

    assert run(main(), loop=loop) == b"late data"


def test_sock_recv_respects_nbytes(loop, tcp):
    ours, peer = tcp
    peer.sendall(b"0123456789")

    async def main():
        first = await loop.sock_recv(ours, 4)
        rest = await recv_exactly(loop, ours, 10 - len(first))
        return first, rest

    first, rest = run(main(), loop=loop)
    assert 1 <= len(first) <= 4
    assert first + rest == b"0123456789"


def test_sock_recv_eof_returns_empty_bytes(loop, tcp):
    ours, peer = tcp
    peer.sendall(b"last")
    peer.shutdown(socket.SHUT_WR)

    async def main():
        data = await recv_exactly(loop, ours, 4)
        eof1 = await loop.sock_recv(ours, 100)
        eof2 = await loop.sock_recv(ours, 100)
        return data, eof1, eof2

    assert run(main(), loop=loop) == (b"last", b"", b"")


def test_sock_recv_eof_while_waiting(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(ours, 100))
        await asyncio.sleep(0.02)
        peer.close()
        return await task

    assert run(main(), loop=loop) == b""


def test_sock_recv_peer_reset_raises_connection_reset(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(ours, 100))
        await asyncio.sleep(0.02)
        assert not task.done()
        reset_connection(peer)
        return await task

    with pytest.raises(ConnectionResetError):
        run(main(), loop=loop)


def test_sock_recv_into(loop, tcp):
    ours, peer = tcp
    buf = bytearray(b"." * 16)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(ours, buf))
        await asyncio.sleep(0.02)
        assert not task.done()
        peer.sendall(b"abcdef")
        return await task

    n = run(main(), loop=loop)
    assert n == 6  # loopback delivers a small send in one piece
    assert buf == b"abcdef" + b"." * 10


def test_sock_recv_into_memoryview_slice(loop, tcp):
    ours, peer = tcp
    buf = bytearray(b"." * 12)
    peer.sendall(b"XYZ")
    n = run(loop.sock_recv_into(ours, memoryview(buf)[4:8]), loop=loop)
    assert n == 3
    assert buf == b"....XYZ....."


def test_sock_recv_into_eof_returns_zero(loop, tcp):
    ours, peer = tcp
    peer.shutdown(socket.SHUT_WR)
    buf = bytearray(b"*" * 8)
    assert run(loop.sock_recv_into(ours, buf), loop=loop) == 0
    assert buf == b"*" * 8


def test_sock_recv_into_peer_reset(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(ours, bytearray(10)))
        await asyncio.sleep(0.02)
        reset_connection(peer)
        return await task

    with pytest.raises(ConnectionResetError):
        run(main(), loop=loop)


def test_many_small_messages_in_order(loop, tcp):
    ours, peer = tcp
    expected = b"".join(b"%06d" % i for i in range(5000))
    reader = None

    async def main():
        got = bytearray()
        while len(got) < len(expected):
            data = await loop.sock_recv(ours, 4096)
            assert data
            got += data
        return bytes(got)

    def writer():
        for i in range(0, len(expected), 60):
            peer.sendall(expected[i:i + 60])

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert run(main(), loop=loop) == expected
    finally:
        t.join()
    del reader


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


# ---------------------------------------------------------------------------
# sock_sendall
# ---------------------------------------------------------------------------

def test_sock_sendall_small(loop, tcp):
    ours, peer = tcp
    assert run(loop.sock_sendall(ours, b"small payload"), loop=loop) is None
    assert peer_recv_exactly(peer, 13) == b"small payload"


def test_sock_sendall_accepts_buffer_types(loop, tcp):
    ours, peer = tcp

    async def main():
        await loop.sock_sendall(ours, bytearray(b"ba"))
        await loop.sock_sendall(ours, memoryview(b"xxmvxx")[2:4])
        await loop.sock_sendall(ours, b"")

    run(main(), loop=loop)
    assert peer_recv_exactly(peer, 4) == b"bamv"


def test_sock_sendall_large_to_slow_reader(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    payload = os.urandom(6 * MiB)
    reader = PeerReader(peer, nbytes=len(payload), delay=0.0005)
    ticks = []

    async def ticker():
        while True:
            ticks.append(None)
            await asyncio.sleep(0.01)

    async def main():
        tick = asyncio.ensure_future(ticker())
        reader.start()
        try:
            await loop.sock_sendall(ours, payload)
        finally:
            tick.cancel()

    start = time.monotonic()
    run(main(), loop=loop)
    got = reader.result()
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    # the loop kept running other tasks while sendall waited for the reader
    if time.monotonic() - start > 0.1:
        assert len(ticks) >= 3


def test_sock_sendall_concurrent_with_recv_on_same_socket(loop, tcp):
    ours, peer = tcp
    payload = os.urandom(2 * MiB)

    def echo():
        total = 0
        while total < len(payload):
            data = peer.recv(1 << 16)
            if not data:
                return
            peer.sendall(data)
            total += len(data)

    async def main():
        send = asyncio.ensure_future(loop.sock_sendall(ours, payload))
        got = await recv_exactly(loop, ours, len(payload))
        await send
        return got

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    try:
        got = run(main(), loop=loop)
    finally:
        t.join(5)
    assert got == payload


def test_sock_sendall_peer_reset_raises(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(ours, b"x" * (16 * MiB)))
        await asyncio.sleep(0.05)
        assert not task.done()
        reset_connection(peer)
        await task

    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        run(main(), loop=loop)


# ---------------------------------------------------------------------------
# sock_accept / sock_connect
# ---------------------------------------------------------------------------

def test_sock_accept(loop):
    lsock = tcp_listener()
    client = socket.socket()
    with closing_all(lsock, client):
        async def main():
            task = asyncio.ensure_future(loop.sock_accept(lsock))
            await asyncio.sleep(0.02)
            assert not task.done()
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(lsock.getsockname())
            return await task

        conn, addr = run(main(), loop=loop)
        with conn:
            assert addr == client.getsockname()
            assert conn.getpeername() == client.getsockname()
            assert conn.getblocking() is False
            client.setblocking(True)
            client.sendall(b"via accepted")
            assert run(recv_exactly(loop, conn, 12), loop=loop) == b"via accepted"


def test_sock_accept_pending_connection(loop):
    lsock = tcp_listener()
    client = socket.create_connection(lsock.getsockname(), timeout=5)
    with closing_all(lsock, client):
        conn, addr = run(loop.sock_accept(lsock), loop=loop)
        conn.close()
        assert addr == client.getsockname()


def test_sock_connect_tcp(loop):
    lsock = tcp_listener()
    sock = socket.socket()
    sock.setblocking(False)
    with closing_all(lsock, sock):
        async def main():
            await loop.sock_connect(sock, lsock.getsockname())
            conn, _ = await loop.sock_accept(lsock)
            with conn:
                await loop.sock_sendall(sock, b"ping")
                got = await recv_exactly(loop, conn, 4)
                await loop.sock_sendall(conn, b"pong")
                return got, await recv_exactly(loop, sock, 4)

        assert run(main(), loop=loop) == (b"ping", b"pong")
        assert sock.getpeername() == lsock.getsockname()


def test_sock_connect_resolves_hostname(loop):
    lsock = tcp_listener()
    sock = socket.socket(socket.AF_INET)
    sock.setblocking(False)
    with closing_all(lsock, sock):
        port = lsock.getsockname()[1]
        run(loop.sock_connect(sock, ("localhost", port)), loop=loop)
        assert sock.getpeername() == ("127.0.0.1", port)


def test_sock_connect_refused(loop):
    sock = socket.socket()
    sock.setblocking(False)
    with sock:
        with pytest.raises(ConnectionRefusedError):
            run(loop.sock_connect(sock, ("127.0.0.1", free_port())), loop=loop)


def test_sock_connect_and_accept_unix(loop):
    with tempfile.TemporaryDirectory(prefix="rl") as d:
        path = os.path.join(d, "s.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen(8)
        lsock.setblocking(False)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        with closing_all(lsock, sock):
            async def main():
                accept = asyncio.ensure_future(loop.sock_accept(lsock))
                await loop.sock_connect(sock, path)
                conn, addr = await accept
                with conn:
                    await loop.sock_sendall(sock, b"over unix")
                    return addr, await recv_exactly(loop, conn, 9)

            # an unbound AF_UNIX client has the empty address
            assert run(main(), loop=loop) == ("", b"over unix")
            assert sock.getpeername() == path


def test_sock_connect_and_accept_unix_abstract(loop):
    name = "\0ringline-test-%d-%d" % (os.getpid(), id(loop))
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(name)
    lsock.listen(8)
    lsock.setblocking(False)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind("\0ringline-client-%d-%d" % (os.getpid(), id(loop)))
    with closing_all(lsock, sock):
        async def main():
            accept = asyncio.ensure_future(loop.sock_accept(lsock))
            await loop.sock_connect(sock, name)
            conn, addr = await accept
            conn.close()
            return addr

        assert run(main(), loop=loop) == sock.getsockname()
        assert sock.getpeername() == name.encode()


def test_sock_ipv6_tcp_and_udp(loop):
    lsock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    lsock.bind(("::1", 0))
    lsock.listen(4)
    lsock.setblocking(False)
    csock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    csock.setblocking(False)
    u1 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u1.bind(("::1", 0))
    u1.setblocking(False)
    u2 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u2.bind(("::1", 0))
    u2.setblocking(False)
    with closing_all(lsock, csock, u1, u2):
        async def main():
            accept = asyncio.ensure_future(loop.sock_accept(lsock))
            await loop.sock_connect(csock, lsock.getsockname()[:2])
            conn, addr = await accept
            conn.close()
            await loop.sock_sendto(u1, b"v6", u2.getsockname()[:2])
            data, uaddr = await loop.sock_recvfrom(u2, 10)
            return addr, data, uaddr

        addr, data, uaddr = run(main(), loop=loop)
        assert addr == csock.getsockname()          # 4-tuple
        assert (data, uaddr) == (b"v6", u1.getsockname())


def test_sock_connect_unix_missing_path(loop):
    with tempfile.TemporaryDirectory(prefix="rl") as d:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        with sock:
            with pytest.raises(FileNotFoundError):
                run(loop.sock_connect(sock, os.path.join(d, "nope")), loop=loop)


def test_concurrent_echo_clients(loop):
    lsock = tcp_listener(backlog=64)
    n_clients = 20

    async def handle(conn):
        with conn:
            while True:
                data = await loop.sock_recv(conn, 4096)
                if not data:
                    return
                await loop.sock_sendall(conn, data)

    async def server():
        handlers = []
        for _ in range(n_clients):
            conn, _ = await loop.sock_accept(lsock)
            handlers.append(asyncio.ensure_future(handle(conn)))
        await asyncio.gather(*handlers)

    async def client(i):
        sock = socket.socket()
        sock.setblocking(False)
        with sock:
            await loop.sock_connect(sock, lsock.getsockname())
            msg = (b"client-%03d;" % i) * (200 + i)
            await loop.sock_sendall(sock, msg)
            got = await recv_exactly(loop, sock, len(msg))
            sock.shutdown(socket.SHUT_WR)
            assert await loop.sock_recv(sock, 10) == b""
            return got == msg

    async def main():
        srv = asyncio.ensure_future(server())
        results = await asyncio.gather(*(client(i) for i in range(n_clients)))
        await srv
        return results

    with lsock:
        assert run(main(), loop=loop) == [True] * n_clients


# ---------------------------------------------------------------------------
# sock_sendfile
# ---------------------------------------------------------------------------

@pytest.fixture
def datafile():
    content = os.urandom(MiB + 123)
    with tempfile.TemporaryFile() as f:
        f.write(content)
        f.flush()
        f.seek(0)
        yield f, content


def test_sock_sendfile_whole_file(loop, tcp, datafile):
    ours, peer = tcp
    f, content = datafile
    reader = PeerReader(peer, nbytes=len(content))
    reader.start()
    sent = run(loop.sock_sendfile(ours, f), loop=loop)
    assert sent == len(content)
    assert reader.result() == content
    assert f.tell() == len(content)


def test_sock_sendfile_offset_and_count(loop, tcp, datafile):
    ours, peer = tcp
    f, content = datafile
    offset, count = 1000, 300_000
    reader = PeerReader(peer, nbytes=count)
    reader.start()
    sent = run(loop.sock_sendfile(ours, f, offset, count), loop=loop)
    assert sent == count
    assert reader.result() == content[offset:offset + count]
    # the file position is updated to offset + bytes sent
    assert f.tell() == offset + count


def test_sock_sendfile_offset_to_eof(loop, tcp, datafile):
    ours, peer = tcp
    f, content = datafile
    offset = len(content) - 5000
    reader = PeerReader(peer, nbytes=5000)
    reader.start()
    assert run(loop.sock_sendfile(ours, f, offset=offset), loop=loop) == 5000
    assert reader.result() == content[offset:]


def test_sock_sendfile_empty_file(loop, tcp):
    ours, peer = tcp
    with tempfile.TemporaryFile() as f:
        assert run(loop.sock_sendfile(ours, f), loop=loop) == 0


def test_sock_sendfile_fallback_for_non_regular_file(loop, tcp):
    ours, peer = tcp
    content = os.urandom(200_000)
    reader = PeerReader(peer, nbytes=len(content) - 10)
    reader.start()
    bio = io.BytesIO(content)
    sent = run(loop.sock_sendfile(ours, bio, 10, fallback=True), loop=loop)
    assert sent == len(content) - 10
    assert reader.result() == content[10:]
    assert bio.tell() == len(content)


def test_sock_sendfile_no_fallback_raises(loop, tcp):
    ours, peer = tcp
    with pytest.raises(asyncio.SendfileNotAvailableError):
        run(loop.sock_sendfile(ours, io.BytesIO(b"data"),
                                     fallback=False), loop=loop)
    # nothing was sent, connection still usable
    run(loop.sock_sendall(ours, b"ok"), loop=loop)
    assert peer_recv_exactly(peer, 2) == b"ok"


def test_sock_sendfile_parameter_errors(loop, tcp, udp, datafile):
    ours, _peer = tcp
    f, _content = datafile
    with tempfile.TemporaryFile(mode="w+") as text:
        with pytest.raises(ValueError):
            run(loop.sock_sendfile(ours, text), loop=loop)
    with pytest.raises(ValueError):
        run(loop.sock_sendfile(udp[0], f), loop=loop)
    with pytest.raises(ValueError):
        run(loop.sock_sendfile(ours, f, count=0), loop=loop)
    with pytest.raises(ValueError):
        run(loop.sock_sendfile(ours, f, offset=-1), loop=loop)
    with pytest.raises(TypeError):
        run(loop.sock_sendfile(ours, f, count="10"), loop=loop)


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
# cancellation
# ---------------------------------------------------------------------------

async def _cancel_pending(task, settle=0.02):
    """Let ``task`` block, cancel it, and check it ends cancelled."""
    await asyncio.sleep(settle)
    assert not task.done(), "operation completed although it should block"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    # the loop keeps working
    await asyncio.sleep(0)
    assert await asyncio.sleep(0.001, "alive") == "alive"


def test_cancel_sock_recv_then_reuse_no_data_lost(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(ours, 100))
        await _cancel_pending(task)
        peer.sendall(b"after cancel")
        await asyncio.sleep(0.02)
        return await recv_exactly(loop, ours, 12)

    assert run(main(), loop=loop) == b"after cancel"


def test_cancel_sock_recv_repeatedly(loop, tcp):
    ours, peer = tcp

    async def main():
        for _ in range(20):
            task = asyncio.ensure_future(loop.sock_recv(ours, 100))
            await _cancel_pending(task, settle=0.001)
        peer.sendall(b"still here")
        return await recv_exactly(loop, ours, 10)

    assert run(main(), loop=loop) == b"still here"


def test_cancel_sock_recv_racing_with_data_loses_nothing(loop, tcp):
    """Cancel a recv at the moment data arrives: every byte must end up
    either in the (completed) recv's result or in a later recv."""
    ours, peer = tcp
    n = 60
    expected = b"".join(b"<%04d>" % i for i in range(n))

    async def main():
        got = bytearray()
        for i in range(n):
            task = asyncio.ensure_future(loop.sock_recv(ours, 1024))
            await asyncio.sleep(0)
            peer.sendall(b"<%04d>" % i)
            if i % 3 == 1:
                await asyncio.sleep(0)
            elif i % 3 == 2:
                await asyncio.sleep(0.002)
            task.cancel()
            try:
                got += await task
            except asyncio.CancelledError:
                pass
        while len(got) < len(expected):
            data = await loop.sock_recv(ours, 4096)
            assert data, "EOF"
            got += data
        return bytes(got)

    assert run(main(), loop=loop) == expected


def test_cancel_sock_recv_into_then_reuse(loop, tcp):
    ours, peer = tcp
    buf = bytearray(32)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(ours, buf))
        await _cancel_pending(task)
        peer.sendall(b"into after cancel")
        await asyncio.sleep(0.02)
        n = await loop.sock_recv_into(ours, buf)
        return bytes(buf[:n])

    assert run(main(), loop=loop) == b"into after cancel"


def test_cancelled_recv_into_never_writes_buffer(loop, tcp):
    ours, peer = tcp
    buf = bytearray(64)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(ours, buf))
        await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the buffer belongs to the application again
        pattern = bytes(range(64))
        buf[:] = pattern
        peer.sendall(b"X" * 48)
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert buf == pattern, "a cancelled sock_recv_into wrote the buffer"
        # ...and the peer's data was not lost either
        return await recv_exactly(loop, ours, 48)

    assert run(main(), loop=loop) == b"X" * 48


def test_cancel_sock_recvfrom_then_reuse(loop, udp):
    ours, peer = udp

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(ours, 100))
        await _cancel_pending(task)
        peer.sendto(b"dgram after cancel", ours.getsockname())
        await asyncio.sleep(0.02)
        return await loop.sock_recvfrom(ours, 100)

    assert run(main(), loop=loop) == (b"dgram after cancel", peer.getsockname())


def test_cancel_sock_recvfrom_into_then_reuse(loop, udp):
    ours, peer = udp
    buf = bytearray(b"." * 32)

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom_into(ours, buf))
        await _cancel_pending(task)
        pattern = b"#" * 32
        buf[:] = pattern
        peer.sendto(b"dgram", ours.getsockname())
        await asyncio.sleep(0.03)
        assert buf == pattern, "a cancelled sock_recvfrom_into wrote the buffer"
        n, addr = await loop.sock_recvfrom_into(ours, buf)
        return bytes(buf[:n]), addr

    assert run(main(), loop=loop) == (b"dgram", peer.getsockname())


def test_cancel_sock_accept_then_reuse(loop):
    lsock = tcp_listener()
    client = socket.socket()
    with closing_all(lsock, client):
        async def main():
            task = asyncio.ensure_future(loop.sock_accept(lsock))
            await _cancel_pending(task)
            client.settimeout(5)
            client.connect(lsock.getsockname())
            await asyncio.sleep(0.02)
            conn, addr = await loop.sock_accept(lsock)
            conn.close()
            return addr

        assert run(main(), loop=loop) == client.getsockname()


def test_cancel_sock_connect(loop):
    # listen(0) + one queued connection fills the accept queue: the kernel
    # drops further SYNs, so the next connect stays in progress.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    sock = socket.socket()
    sock.setblocking(False)
    other = tcp_listener()
    sock2 = socket.socket()
    sock2.setblocking(False)
    with closing_all(lsock, sock, other, sock2):
        for _ in range(2):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(lsock.getsockname())
            fillers.append(f)
        time.sleep(0.05)
        try:
            async def main():
                task = asyncio.ensure_future(
                    loop.sock_connect(sock, lsock.getsockname()))
                await _cancel_pending(task, settle=0.1)
                # other connects on the loop still work
                await loop.sock_connect(sock2, other.getsockname())
                conn, _ = await loop.sock_accept(other)
                conn.close()
                return True

            assert run(main(), loop=loop)
        finally:
            for f in fillers:
                f.close()


def test_cancel_sock_sendall_then_reuse(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    payload = os.urandom(8 * MiB)
    marker = b"\n--MARKER-after-cancelled-sendall--\n"

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(ours, payload))
        await _cancel_pending(task, settle=0.05)
        reader = PeerReader(peer, marker=marker)
        reader.start()
        await loop.sock_sendall(ours, marker)
        return reader

    reader = run(main(), loop=loop)
    got = reader.result()
    assert got.endswith(marker)
    prefix = got[:-len(marker)]
    assert len(prefix) < len(payload), "cancelled sendall sent everything"
    assert prefix == payload[:len(prefix)], \
        "stream is not a prefix of the payload followed by the marker"


def test_cancel_one_of_two_waiters_other_still_served(loop, udp, tcp):
    tsock, tpeer = tcp
    usock, upeer = udp

    async def main():
        t_recv = asyncio.ensure_future(loop.sock_recv(tsock, 100))
        u_recv = asyncio.ensure_future(loop.sock_recvfrom(usock, 100))
        await _cancel_pending(t_recv)
        upeer.sendto(b"u", usock.getsockname())
        data, _ = await u_recv
        tpeer.sendall(b"t")
        return data, await recv_exactly(loop, tsock, 1)

    assert run(main(), loop=loop) == (b"u", b"t")


def test_socket_closed_by_peer_during_sendall(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(ours, b"y" * (16 * MiB)))
        await asyncio.sleep(0.05)
        peer.close()
        await task

    with pytest.raises(OSError) as info:
        run(main(), loop=loop)
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)


# ---------------------------------------------------------------------------
# cancellation races: what a cancelled operation leaves behind must stay in
# the *kernel* socket, where any other reader (plain socket calls, add_reader,
# a transport) can get it -- as with asyncio's readiness-based operations.
# ---------------------------------------------------------------------------

# A completion-based loop may have received the bytes by the time the
# cancellation reaches the kernel; it then keeps them for the next receive on
# that socket. So "nothing lost" is checked through the loop's own next call.
def test_cancel_recv_race_then_next_recv_loses_nothing(loop, tcp):
    ours, peer = tcp
    rounds = 30

    async def main():
        lost = []
        for i in range(rounds):
            msg = b"<%04d>" % i
            task = asyncio.ensure_future(loop.sock_recv(ours, 1024))
            await asyncio.sleep(0)          # the receive is now pending
            peer.sendall(msg)               # data arrives...
            task.cancel()                   # ...as the task is cancelled
            try:
                got = await task            # completed first: fine
            except asyncio.CancelledError:
                got = b""
            # the rest must come with the next receive
            if len(got) < len(msg):
                got += await asyncio.wait_for(
                    loop.sock_recv(ours, len(msg) - len(got)), 2)
            if got != msg:
                lost.append((i, got))
        return lost

    assert run(main(), loop=loop) == []


def test_cancel_recv_into_race_then_next_recv_loses_nothing(loop, tcp):
    ours, peer = tcp
    rounds = 30

    async def main():
        lost = []
        buf = bytearray(1024)
        for i in range(rounds):
            msg = b"[%04d]" % i
            task = asyncio.ensure_future(loop.sock_recv_into(ours, buf))
            await asyncio.sleep(0)
            peer.sendall(msg)
            task.cancel()
            try:
                got = bytes(buf[:await task])
            except asyncio.CancelledError:
                got = b""
            if len(got) < len(msg):
                got += await asyncio.wait_for(
                    loop.sock_recv(ours, len(msg) - len(got)), 2)
            if got != msg:
                lost.append((i, got))
        return lost

    assert run(main(), loop=loop) == []


def test_cancel_recvfrom_race_loses_no_datagram(loop, udp):
    ours, peer = udp
    rounds = 30

    async def main():
        lost = []
        for i in range(rounds):
            msg = b"dgram-%04d" % i
            task = asyncio.ensure_future(loop.sock_recvfrom(ours, 1024))
            await asyncio.sleep(0)
            peer.sendto(msg, ours.getsockname())
            task.cancel()
            try:
                got, _addr = await task
            except asyncio.CancelledError:
                # the datagram must still be there for the next receive
                try:
                    got, _addr = await asyncio.wait_for(
                        loop.sock_recvfrom(ours, 1024), 0.2)
                except asyncio.TimeoutError:
                    got = None
            if got != msg:
                lost.append((i, got))
                if len(lost) >= 3:
                    break
        return lost

    assert run(main(), loop=loop) == []


def test_cancel_accept_race_then_next_accept(loop):
    lsock = tcp_listener(backlog=64)
    clients = []
    with lsock:
        async def main():
            lost = []
            for i in range(15):
                task = asyncio.ensure_future(loop.sock_accept(lsock))
                await asyncio.sleep(0)
                c = socket.create_connection(lsock.getsockname(), timeout=5)
                clients.append(c)
                task.cancel()
                try:
                    conn, _ = await task
                except asyncio.CancelledError:
                    try:
                        conn, _ = await asyncio.wait_for(loop.sock_accept(lsock), 2)
                    except asyncio.TimeoutError:
                        conn = None
                if conn is None:
                    lost.append(i)
                    continue
                with conn:
                    if conn.getpeername() != c.getsockname():
                        lost.append((i, "wrong connection"))
            return lost

        try:
            assert run(main(), loop=loop) == []
        finally:
            for c in clients:
                c.close()


def test_cancel_sendall_while_peer_reads_keeps_stream_consistent(loop):
    payload = os.urandom(16 * MiB)
    for attempt in range(4):
        ours, peer = tcp_pair()
        with closing_all(ours, peer):
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            marker = b"\n--MARKER-%d--\n" % attempt
            # ~32 KiB per ms at best: 16 MiB takes > 0.5 s
            reader = PeerReader(peer, marker=marker, delay=0.001,
                                chunk=32 * 1024)

            async def main():
                reader.start()
                task = asyncio.ensure_future(loop.sock_sendall(ours, payload))
                await asyncio.sleep(0.02 + 0.01 * attempt)  # mid-transfer
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await loop.sock_sendall(ours, marker)

            run(main(), loop=loop)
            got = reader.result()
            assert got.endswith(marker)
            prefix = got[:-len(marker)]
            assert prefix == payload[:len(prefix)], (
                f"attempt {attempt}: bytes after a cancelled sendall are "
                f"not a prefix of its payload ({len(prefix)} bytes)")


def test_cancelled_sendall_releases_buffer(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    payload = bytearray(os.urandom(8 * MiB))

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(ours, payload))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The application owns the buffer again and may resize it.
        payload.extend(b"more")
        del payload[:]

    run(main(), loop=loop)
    assert payload == b""


def test_sock_sendto_resolves_hostname(loop, udp):
    ours, peer = udp
    port = peer.getsockname()[1]
    n = run(loop.sock_sendto(ours, b"by name", ("localhost", port)), loop=loop)
    assert n == 7
    assert peer.recvfrom(100)[0] == b"by name"


def test_sock_recv_zero_bytes(loop, tcp):
    ours, peer = tcp
    peer.sendall(b"keep")
    assert run(loop.sock_recv(ours, 0), loop=loop) == b""
    assert run(recv_exactly(loop, ours, 4), loop=loop) == b"keep"


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
