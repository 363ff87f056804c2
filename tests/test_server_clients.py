"""Server.close_clients() and abort_clients() (Python 3.13's API, which
uvloop lacks), and protocol callbacks running in the context captured when
the transport was created."""
import asyncio
import contextvars

import ringline

request_id = contextvars.ContextVar("request_id", default=None)


class Hold(asyncio.Protocol):
    lost = []

    def connection_made(self, tr):
        self.tr = tr

    def connection_lost(self, exc):
        Hold.lost.append(exc)


def _clients(loop, n, method):
    Hold.lost = []

    async def main():
        server = await loop.create_server(Hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(n)]
        for _ in range(20):
            await asyncio.sleep(0.01)
            if len(server._ringline_clients()) == n:
                break
        assert len(server._ringline_clients()) == n
        getattr(server, method)()
        for r, w in conns:
            assert await asyncio.wait_for(r.read(), 2) == b""   # peer sees EOF/close
            w.close()
        server.close()
        await server.wait_closed()
        return len(Hold.lost)

    return loop.run_until_complete(main())


def test_close_clients():
    loop = ringline.new_event_loop()
    try:
        assert _clients(loop, 5, "close_clients") == 5
    finally:
        loop.close()


def test_abort_clients():
    loop = ringline.new_event_loop()
    try:
        assert _clients(loop, 5, "abort_clients") == 5
    finally:
        loop.close()


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
