"""Low-level socket operations that make connections: sock_accept and
sock_connect over TCP (IPv4, IPv6, host names, refusals) and Unix sockets
(paths, abstract names), with concurrent echo clients.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` fixture of conftest.py. The peer side of a
connection is an ordinary blocking socket driven by the test (or by a helper
thread), so it does not depend on the loop under test. The ``tcp`` / ``udp``
socket-pair fixtures are in tests/loop/conftest.py, the peer-side helpers
in support/sock_ops.py.
"""
import asyncio
import contextlib
import os
import socket
import tempfile

import pytest

from support import closing_all, free_port, run, tcp_listener
from support.sock_ops import recv_exactly


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
