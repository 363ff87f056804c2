"""Helpers over the native connection API (``ringline.Conn``) shared by the
conn and runtime tests: ``echo`` (a handler sending back every byte it
receives until the peer closes), ``read_exactly`` (``n`` bytes through
``with_data``; fewer only if the connection ends first) and
``NativeServer`` (a native-API listener inside the running loop, running a
handler per accepted connection; ``close()`` stops it and cancels them).

``echo`` and ``read_exactly`` use only public ``Conn`` methods and do not
close the connection; ``NativeServer`` closes each connection its handler
leaves open.
"""
import asyncio
import socket

from ringline._conn import api as _native



async def echo(conn):
    """Send back everything received on ``conn`` until it ends."""
    def on_data(view):
        conn.send_nowait(bytes(view))
        return len(view)
    while await conn.with_data(on_data):
        pass


async def read_exactly(conn, n):
    """``n`` bytes from ``conn``, or what came before it ended."""
    out = bytearray()

    def take(view):
        k = min(len(view), n - len(out))
        out.extend(view[:k])
        return k
    while len(out) < n:
        if not await conn.with_data(take):
            break
    return bytes(out)


class NativeServer:
    """A native-API server inside the current loop: handler(conn) per conn."""

    def __init__(self, handler):
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.conns = []
        self.tasks = []
        self.errors = []
        self.listener = _native.Listener(self.loop, self.sock, self._on_fd)

    def _on_fd(self, fd):
        conn = _native.adopt_fd(self.loop, fd, socket.AF_INET)
        self.conns.append(conn)
        self.tasks.append(self.loop.create_task(self._run(conn)))

    async def _run(self, conn):
        try:
            await self.handler(conn)
        except Exception as exc:   # recorded for the test to inspect
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self):
        self.listener.close()
        self.sock.close()
        for t in self.tasks:
            t.cancel()
