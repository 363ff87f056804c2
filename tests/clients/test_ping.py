"""ringline.ping: PingClient and PingHandler (on the backend RINGLINE_BACKEND picks)."""
import asyncio
import socket

import pytest

import ringline
import ringline.ping as rping
from ringline._conn import api as _native

from support import run
from support.servers import ReplyServer


class InProcessServer:
    """Serve a Handler in this loop: accept on a socket, adopt each
    connection as a ringline Conn, run handler.on_accept(conn) as a task."""

    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.tasks = []
        self._accepter = None

    async def __aenter__(self):
        self._accepter = asyncio.ensure_future(self._accept_loop())
        return self

    async def _accept_loop(self):
        loop = asyncio.get_running_loop()
        while True:
            s, _ = await loop.sock_accept(self.sock)
            conn = _native.adopt(loop, s)
            self.tasks.append(asyncio.ensure_future(self._serve(conn)))

    async def _serve(self, conn):
        try:
            await self.handler.on_accept(conn)
        finally:
            conn.close()

    async def __aexit__(self, *exc):
        self._accepter.cancel()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(self._accepter, *self.tasks, return_exceptions=True)
        self.sock.close()


def test_ping_handler_is_a_runtime_handler():
    assert issubclass(rping.PingHandler, ringline.Handler)


def test_ping_and_ping_many_against_ping_handler():
    async def main():
        async with InProcessServer(rping.PingHandler()) as srv:
            async with await rping.connect("127.0.0.1", srv.port) as c:
                rtt = await c.ping()
                assert 0 < rtt < 5
                total = await c.ping_many(1000)
                assert 0 < total < 10
                rtts = await asyncio.gather(*(c.ping() for _ in range(500)))
                assert len(rtts) == 500 and all(r > 0 for r in rtts)
                # ping_many and single pings interleaved stay in order
                results = await asyncio.gather(c.ping_many(10), c.ping(), c.ping_many(3))
                assert all(r > 0 for r in results)
            c2 = await rping.connect(f"127.0.0.1:{srv.port}")
            assert await c2.ping() > 0
            await c2.close()
            with pytest.raises(ValueError):
                await c2.ping_many(0)
    run(main)


def _raw_exchange(port, payload, expect_len):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        out = b""
        while len(out) < expect_len:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def test_ping_handler_lines():
    async def main():
        async with InProcessServer(rping.PingHandler()) as srv:
            out = await asyncio.to_thread(
                _raw_exchange, srv.port, b"PING\r\nping\nPI", 12)
            assert out == b"PONG\r\nPONG\r\n"
            payload = b"PING\r\nHELLO\r\nPING\r\n"
            expect = b"PONG\r\nERROR unknown command\r\nPONG\r\n"
            out = await asyncio.to_thread(_raw_exchange, srv.port, payload, len(expect))
            assert out == expect
            out = await asyncio.to_thread(_raw_exchange, srv.port, b"PING\r\n" * 5000,
                                          6 * 5000)
            assert out == b"PONG\r\n" * 5000
            # an endless line closes the connection
            out = await asyncio.to_thread(_raw_exchange, srv.port, b"x" * 5000, 1)
            assert out == b""
    run(main)



def test_garbage_reply_fails_that_client_only():
    answers = iter([b"PONG\r\n", b"PONK\r\n"])

    def reply(line):
        return next(answers, b"PONG\r\n")

    async def main(stub):
        async with InProcessServer(rping.PingHandler()) as srv:
            good = await rping.connect("127.0.0.1", srv.port)
            bad = await rping.connect("127.0.0.1", stub.port)
            assert await bad.ping() > 0
            f1 = asyncio.ensure_future(bad.ping())
            f2 = asyncio.ensure_future(bad.ping())
            other = asyncio.ensure_future(good.ping_many(100))
            with pytest.raises(rping.ProtocolError, match=r"expected PONG, got b'PONK"):
                await f1
            with pytest.raises(ringline.ConnectionClosed):
                await f2
            assert bad.closed
            with pytest.raises(ringline.ConnectionClosed):
                await bad.ping()
            assert await other > 0 and await good.ping() > 0
            await bad.close()
            await good.close()

    with ReplyServer(reply) as stub:
        run(main, stub)


def test_server_closing_fails_pending_pings():
    def reply(line):
        return None          # close on the first line

    async def main(stub):
        c = await rping.connect("127.0.0.1", stub.port)
        with pytest.raises(ringline.ConnectionClosed, match="closed the connection"):
            await c.ping()
        await c.close()

    with ReplyServer(reply) as stub:
        run(main, stub)


def test_close_fails_pending_pings():
    async def main(stub):
        c = await rping.connect("127.0.0.1", stub.port)
        f = asyncio.ensure_future(c.ping())
        await asyncio.sleep(0.05)
        await c.close()
        with pytest.raises(ringline.ConnectionClosed, match="closed"):
            await f
    with ReplyServer(lambda line: b"") as stub:     # never answers
        run(main, stub)


def test_ping_handler_under_the_runtime():
    cfg = ringline.Config(workers=1, pin_to_core=False, grace=1.0)
    rt = ringline.launch(rping.PingHandler, ("127.0.0.1", 0), cfg)
    try:
        async def main():
            async with await rping.connect("127.0.0.1", rt.port) as c:
                assert await c.ping() > 0
                assert await c.ping_many(2000) > 0
        run(main)
    finally:
        rt.shutdown(1.0)
        assert rt.join(15)
