"""Transport features users of uvloop asked for (issue 3): happy eyeballs,
TCP_NODELAY by default, the real socket object from get_extra_info('socket'),
the Server object's API, Unix sockets and connect_accepted_socket."""
import asyncio
import os
import socket
import tempfile

import pytest

import ringline


@pytest.fixture
def rloop():
    loop = ringline.new_event_loop()
    yield loop
    loop.close()


class Echo(asyncio.Protocol):
    def connection_made(self, tr):
        self.tr = tr

    def data_received(self, data):
        self.tr.write(data)


async def _roundtrip(reader, writer, payload=b"hello"):
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), 5)


def test_extra_info_socket_is_real_and_nodelay(rloop):
    async def main():
        server = await rloop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, _ = await rloop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        sock = tr.get_extra_info("socket")
        assert type(sock) is socket.socket
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert tr.get_extra_info("peername") == ("127.0.0.1", port)
        assert tr.get_extra_info("sockname") == sock.getsockname()
        assert tr.get_extra_info("nonexistent", 42) == 42
        tr.close()
        server.close()
        await server.wait_closed()
    rloop.run_until_complete(main())


def test_happy_eyeballs_falls_through_to_a_listening_address(rloop):
    """Two candidate addresses: the first refuses, the second listens; with
    happy_eyeballs_delay the connection still lands on the live one."""
    async def main():
        server = await rloop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        dead = socket.socket()
        dead.bind(("127.0.0.2", 0))
        dead_port = dead.getsockname()[1]
        dead.close()

        real_getaddrinfo = rloop.getaddrinfo

        async def fake_getaddrinfo(host, p, **kw):
            if host == "multi.test":
                return [
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                ]
            return await real_getaddrinfo(host, p, **kw)

        rloop.getaddrinfo = fake_getaddrinfo
        try:
            r, w = await asyncio.open_connection("multi.test", port,
                                                 happy_eyeballs_delay=0.05,
                                                 interleave=1)
        finally:
            del rloop.getaddrinfo
        assert await _roundtrip(r, w) == b"hello"
        assert w.get_extra_info("peername") == ("127.0.0.1", port)
        w.close()
        await w.wait_closed()
        server.close()
        await server.wait_closed()
    rloop.run_until_complete(main())


def test_server_object_api(rloop):
    async def main():
        server = await rloop.create_server(Echo, "127.0.0.1", 0, start_serving=False,
                                           reuse_address=True, backlog=10)
        assert not server.is_serving()
        await server.start_serving()
        assert server.is_serving()
        assert server.get_loop() is rloop
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await _roundtrip(r, w) == b"hello"
        w.close()
        await w.wait_closed()
        async with server:
            pass
        assert not server.is_serving()
        await server.wait_closed()
        # closed: new connections are refused
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
    rloop.run_until_complete(main())


def test_serve_forever_cancelled(rloop):
    async def main():
        server = await rloop.create_server(Echo, "127.0.0.1", 0)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
    rloop.run_until_complete(main())


def test_unix_server_and_connection(rloop):
    async def main():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.sock")
            server = await asyncio.start_unix_server(
                lambda r, w: _echo_stream(r, w), path)
            r, w = await asyncio.open_unix_connection(path)
            assert await _roundtrip(r, w, b"unix!") == b"unix!"
            w.close()
            await w.wait_closed()
            server.close()
            await server.wait_closed()
    rloop.run_until_complete(main())


async def _echo_stream(r, w):
    while data := await r.read(1000):
        w.write(data)
    w.close()


def test_connect_accepted_socket(rloop):
    async def main():
        a, b = socket.socketpair()
        tr, pr = await rloop.connect_accepted_socket(Echo, a)
        b.setblocking(False)
        await rloop.sock_sendall(b, b"ping")
        assert await asyncio.wait_for(rloop.sock_recv(b, 10), 5) == b"ping"
        tr.close()
        b.close()
    rloop.run_until_complete(main())


def test_write_pipe_large_payload_goes_through_the_ring(rloop):
    """More than the pipe buffer holds: write() puts what fits directly, the
    rest goes through the ring (WRITE/WRITEV) in order."""
    from ringline._loop.backend import OPCODE_NUMBERS

    async def main():
        r, w = os.pipe()
        wobj = os.fdopen(w, "wb", 0)
        tr, _ = await rloop.connect_write_pipe(asyncio.Protocol, wobj)
        chunks = [os.urandom(100_000) for _ in range(5)]
        for c in chunks:
            tr.write(c)
        os.set_blocking(r, False)
        got = bytearray()
        want = b"".join(chunks)
        for _ in range(500):
            await asyncio.sleep(0.002)
            try:
                while True:
                    data = os.read(r, 1 << 16)
                    if not data:
                        break
                    got += data
            except BlockingIOError:
                pass
            if len(got) >= len(want):
                break
        assert bytes(got) == want
        ops = rloop._ring_stats()["ops"]
        assert ops.get(OPCODE_NUMBERS["WRITE"], 0) + ops.get(OPCODE_NUMBERS["WRITEV"], 0) > 0
        tr.close()
        await asyncio.sleep(0.01)
        os.close(r)
    rloop.run_until_complete(main())
