"""Shared in-test servers on stock asyncio: fake peers that answer what a
test chooses, independent of the ringline loop under test.

* ``reply_handler(reply, lines=...)``: a stream handler answering each
  request (a line, or each received chunk) with ``reply(request)``; ``None``
  closes the connection.
* ``ThreadedServer``: a stock-asyncio TCP server on 127.0.0.1 on its own loop
  in a daemon thread; subclasses define ``_handle(reader, writer)``. Use it as
  a context manager (``with Stub() as stub: ... stub.port``); leaving the
  block stops the loop and joins the thread. ``self._stop`` (an
  ``asyncio.Event`` of the server's loop) is set at stop, so a handler can
  hang until then.
* ``ReplyServer``: a ``ThreadedServer`` answering each line with ``reply``.
* ``start_reply_server(reply, lines=...)``: the same answers from a server
  on the running loop (for tests that want the stub beside the client);
  returns ``(server, port)``, the caller closes the server.
"""
import asyncio
import threading


def reply_handler(reply, *, lines):
    """A stream handler: each request (a line if ``lines``, else each chunk
    received) is answered with ``reply(request)``; ``None`` closes."""
    async def handle(reader, writer):
        try:
            while True:
                data = await (reader.readline() if lines else reader.read(65536))
                if not data:
                    break
                out = reply(data)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
    return handle


async def start_reply_server(reply, *, lines=False):
    """A server on the running loop answering with ``reply`` (see
    ``reply_handler``): ``(server, port)``."""
    server = await asyncio.start_server(reply_handler(reply, lines=lines), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


class ThreadedServer:
    """A stock-asyncio server in its own thread (see the module docstring)."""

    def __init__(self):
        self.port = None
        self._ready = threading.Event()
        self._loop = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        daemon=True)

    async def _handle(self, reader, writer):
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self):
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()


class ReplyServer(ThreadedServer):
    """A ``ThreadedServer`` answering each line with ``reply(line)``."""

    def __init__(self, reply):
        super().__init__()
        self._handle = reply_handler(reply, lines=True)
