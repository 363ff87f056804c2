"""Server.close_clients() and abort_clients() (Python 3.13's API, which
uvloop lacks: on 3.13 ringline uses asyncio's base class, before it its own
Server subclass provides them), compared with stock asyncio where stock has
them, and protocol callbacks running in the context captured when the
transport was created."""
import asyncio
import contextvars

import pytest

import ringline

from support import run

request_id = contextvars.ContextVar("request_id", default=None)
STOCK_HAS_CLIENTS = hasattr(asyncio.base_events.Server, "close_clients")


class Hold(asyncio.Protocol):
    def __init__(self, log):
        self.log = log

    def connection_made(self, tr):
        self.tr = tr
        self.log.append("made")
        tr.write(b"hello")

    def connection_lost(self, exc):
        self.log.append(("lost", type(exc).__name__))


def _clients(loop, n, method):
    log = []

    async def main():
        server = await loop.create_server(lambda: Hold(log), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
        for r, _ in conns:
            assert await r.readexactly(5) == b"hello"
        getattr(server, method)()
        tails = []
        for r, w in conns:
            tails.append(await asyncio.wait_for(r.read(), 2))   # EOF
            w.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 2)
        # nothing left attached once every connection is gone
        return tails, sorted(map(str, log))

    try:
        return run(main(), loop=loop)
    finally:
        loop.close()


@pytest.mark.parametrize("method", ["close_clients", "abort_clients"])
def test_server_clients_methods(method):
    got = _clients(ringline.new_event_loop(), 5, method)
    assert got[0] == [b""] * 5
    assert got[1].count("made") == 5
    if STOCK_HAS_CLIENTS:
        assert got == _clients(asyncio.SelectorEventLoop(), 5, method)


def test_server_clients_use_base_class_on_313():
    from ringline._loop import loop as _loop
    if STOCK_HAS_CLIENTS:
        assert "close_clients" not in vars(_loop.Server)
        assert "abort_clients" not in vars(_loop.Server)
    else:
        assert callable(_loop.Server.close_clients)
        assert callable(_loop.Server.abort_clients)


def test_protocol_callbacks_run_in_creation_context():
    loop = ringline.new_event_loop()
    seen = []

    class P(asyncio.Protocol):
        def connection_made(self, tr):
            seen.append(("made", request_id.get()))

        def data_received(self, data):
            seen.append(("data", request_id.get()))

        def connection_lost(self, exc):
            seen.append(("lost", request_id.get()))

    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        request_id.set("client-ctx")
        tr, _ = await loop.create_connection(P, "127.0.0.1", port)
        request_id.set("changed-later")
        peer_r, peer_w = None, None
        server.close()
        tr.close()
        await asyncio.sleep(0.05)
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert ("made", "client-ctx") in seen
    assert all(v == "client-ctx" for _, v in seen), seen
