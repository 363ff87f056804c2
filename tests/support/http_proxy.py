"""A small HTTP proxy for the ringline.http proxy tests
(tests/clients/test_http_proxy.py): stock asyncio on 127.0.0.1, on its own
loop in a daemon thread (``support.servers.ThreadedServer``), so what it
does never depends on the loop under test.

``HttpProxy(mode, credentials=None)``; use it as a context manager
(``with HttpProxy("ok") as proxy: ... proxy.url``). Modes:

* ``ok``: forwards absolute-form requests (``GET http://host:port/path``;
  bodies by Content-Length or chunked) to their origin in origin-form with
  ``Connection: close``, relaying the answer (its Connection fields
  dropped, so the client's connection to the proxy stays open), and opens
  CONNECT tunnels (``200 Connection established``, then bytes both ways).
* ``forbid``: ``403 Forbidden`` to every request.
* ``close``: closes the connection once a request head arrived, without a
  word.
* ``cut``: half a status line, then closes.
* ``garbage``: answers with something that is not HTTP (an SSH banner).
* ``drop``: answers CONNECT with 200, then closes (the TLS handshake that
  follows meets the end of the stream).
* ``endless``: a 200 status line and a header that never ends (capped at
  ``CAP`` bytes; the client's bound must stop it long before).
* ``huge``: a complete answer head of about 100 KB (50 header lines).
* ``silent``: reads, never answers.

With ``credentials=(user, password)`` any mode first checks
Proxy-Authorization (Basic) and answers ``407 Proxy Authentication
Required`` (with Proxy-Authenticate) when it is missing or wrong.

Records, in arrival order: ``requests`` (``Seen(method, target, headers)``;
headers a dict with lower-case names), ``accepted`` (client connections)
and ``closed`` (client connections ended, whoever ended them). ``url`` is
``http://127.0.0.1:PORT``.

Only 127.0.0.1 is ever a target: a request or CONNECT for any other host
is answered 403 and nothing is dialled. Leaving the block stops the loop;
every handler still running is cancelled and its connections closed.
"""
import asyncio
import base64
from collections import namedtuple
from urllib.parse import urlsplit

from .servers import ThreadedServer

__all__ = ["HttpProxy", "Seen", "CAP"]

CAP = 16 << 20
MODES = ("ok", "forbid", "close", "cut", "garbage", "drop", "endless", "huge", "silent")
Seen = namedtuple("Seen", "method target headers")


async def _read_body(reader, headers):
    """The request body as it came (chunked coding kept)."""
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        return b""
    out = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        out += line
        size = int(line.split(b";")[0], 16)
        if size == 0:
            while True:                    # trailers, then the empty line
                line = await reader.readuntil(b"\r\n")
                out += line
                if line == b"\r\n":
                    return bytes(out)
        out += await reader.readexactly(size + 2)


async def _pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class HttpProxy(ThreadedServer):
    """See the module docstring."""

    def __init__(self, mode="ok", credentials=None):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        super().__init__()
        self.mode = mode
        self.expected = None
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            self.expected = "Basic " + token
        self.requests = []
        self.accepted = 0
        self.closed = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader, writer):
        self.accepted += 1
        task = asyncio.ensure_future(self._serve(reader, writer))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (task, stop):
                t.cancel()
            await asyncio.gather(task, stop, return_exceptions=True)
            writer.close()
            self.closed += 1

    async def _serve(self, reader, writer):
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.requests.append(Seen(method, target, headers))
                if not await self._answer(reader, writer, method, target, headers):
                    return
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass

    async def _answer(self, reader, writer, method, target, headers):
        """One request; True when the connection takes another."""
        mode = self.mode
        if mode == "silent":
            while await reader.read(65536):
                pass
            return False
        if mode == "close":
            return False
        if mode in ("cut", "garbage"):
            writer.write(b"HTTP/1.1 200 Conn" if mode == "cut"
                         else b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            await writer.drain()
            return False
        if self.expected is not None and headers.get("proxy-authorization") != self.expected:
            await _read_body(reader, headers)
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 4\r\n\r\n"
                         b"auth")
            await writer.drain()
            return method != "CONNECT"
        if mode == "forbid":
            await _read_body(reader, headers)
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno way")
            await writer.drain()
            return method != "CONNECT"
        if mode == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\nX-Junk: ")
            sent = 0
            while sent < CAP:
                writer.write(b"j" * 65536)
                sent += 65536
                await writer.drain()
            return False
        if mode == "huge":
            writer.write(b"HTTP/1.1 200 Connection established\r\n"
                         + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 2000)
                                    for i in range(50))
                         + b"\r\n")
            await writer.drain()
            await reader.read(65536)        # until the client gives up
            return False
        if method == "CONNECT":
            await self._tunnel(reader, writer, target)
            return False
        return await self._forward(reader, writer, method, target, headers)

    async def _refuse(self, writer):
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\n\r\nnot loopback\n")
        await writer.drain()

    async def _tunnel(self, reader, writer, target):
        host, _, port = target.rpartition(":")
        if host != "127.0.0.1":
            await self._refuse(writer)
            return
        if self.mode == "drop":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _forward(self, reader, writer, method, target, headers):
        body = await _read_body(reader, headers)
        url = urlsplit(target)
        if url.scheme != "http" or url.hostname != "127.0.0.1":
            await self._refuse(writer)
            return True
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        drop = ("proxy-authorization", "proxy-connection", "connection", "keep-alive")
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items() if k not in drop)
        head += "Connection: close\r\n\r\n"
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", url.port or 80)
        try:
            up_writer.write(head.encode("latin-1") + body)
            await up_writer.drain()
            answer = await up_reader.readuntil(b"\r\n\r\n")
            lines = answer[:-4].split(b"\r\n")
            kept = [ln for ln in lines if ln.split(b":")[0].strip().lower()
                    not in (b"connection", b"keep-alive")]
            framed = any(ln.split(b":")[0].strip().lower() in (b"content-length",
                                                               b"transfer-encoding")
                         for ln in kept[1:])
            writer.write(b"\r\n".join(kept) + b"\r\n\r\n")
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            up_writer.close()
        # an answer delimited by the origin's close is delimited by ours too
        return framed or method == "HEAD"
