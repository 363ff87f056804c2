"""One HTTP/1.1 connection over ringline's Conn API (plain or TLS): the I/O
glue around the sans-IO ``_h1`` module.

Owns ``H1Connection``: sending one request at a time (head and body queued
with ``send_nowait``; large and streamed bodies in pieces with ``drain`` so
the native send-queue bound is never hit), reading the response pull-driven
(``with_data`` runs the parser straight over the receive buffer; nothing
reads unless the caller waits for the head or the next body piece, so an
unread stream holds back the server through TCP), ``Expect: 100-continue``,
and the ``_H1Body`` stream a Response reads from. Also the retry signals
every connection kind raises: ``StaleConnection`` and its HTTP/2 case
``StreamIdsExhausted`` (the connection's stream ids are used up).

Lifecycle: CONNECTED (in the pool's idle list or checked out) -> one
request: head sent -> response head read -> body read to its end -> back to
the pool if both sides allow keep-alive, else closed. Any error (protocol,
bound, timeout, cancellation, a body abandoned before its end) closes the
connection; the pool then forgets it. Pipelining is off: a connection
carries one request at a time.

Invariants: the connection is given back to its pool exactly once per
request (``_done``); bytes after a response make the connection unusable
(never parsed as the next response); a request on a reused connection that
saw the connection close before any response byte raises ``_StaleConnection``
so the pool can retry it once on a new connection (idempotent methods only).
"""
from __future__ import annotations

import asyncio
from typing import Any, List, Optional, Tuple

from .._conn.timers import timeout as _timeout
from .._errors import ConnectionClosed, ConnectionDropped
from ._config import Bounds, Timeout
from ._errors import (LocalProtocolError, ReadError, ReadTimeout, RemoteProtocolError,
                      WriteError, WriteTimeout)
from ._h1 import LAST_CHUNK, ResponseParser, chunk, encode_head

__all__ = ["H1Connection", "StaleConnection", "StreamIdsExhausted"]

_SMALL_BODY = 256 << 10       # bodies up to this go out with the head, in one send
_PIECE = 1 << 20              # larger ones in pieces of this, each awaited with drain
_CONTINUE_WAIT = 1.0          # Expect: 100-continue: send the body anyway after this


class StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before it
    answered, or an HTTP/2 stream the server refused or left above its
    GOAWAY's last stream id. ``safe`` is True when the protocol guarantees
    the server did not process the request (HTTP/2), so any method may be
    sent again; for HTTP/1.1 only idempotent methods are."""

    def __init__(self, safe: bool = False) -> None:
        super().__init__("the connection closed before the server answered")
        self.safe = safe


class StreamIdsExhausted(StaleConnection):
    """The connection's stream ids are used up (a client opens at most 2^30
    streams, odd ids up to 2^31-1): nothing was sent, and the connection,
    now going away, takes no new stream. The request goes to a new
    connection, once."""

    def __init__(self) -> None:
        super().__init__(True)
        self.args = ("the HTTP/2 connection's stream ids are used up",)


class H1Connection:
    __slots__ = ("conn", "pool", "bounds", "idle_since", "requests", "parser", "closed",
                 "http_version", "_feed", "_loop", "_timed_out", "_expire_cb", "_spare")

    def __init__(self, conn: Any, pool: Any, bounds: Bounds) -> None:
        self.conn = conn
        self.pool = pool
        self.bounds = bounds
        self.idle_since = 0.0
        self.requests = 0
        self.parser: Optional[ResponseParser] = None
        self.closed = False
        self.http_version = "HTTP/1.1"
        self._feed = self._feed_parser
        self._loop = asyncio.get_running_loop()
        self._timed_out = False
        self._expire_cb = self._expire
        self._spare: Optional[ResponseParser] = None    # reused for the next response

    # -- state --

    def usable(self) -> bool:
        c = self.conn
        return not self.closed and c.is_alive and not c.at_eof and not c.buffered

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.abort()
            self.pool._forget(self)

    def _done(self, reusable: bool) -> None:
        p = self.parser
        self.parser = None
        if reusable and p is not None and not p._head and p.done:
            self._spare = p
        if reusable and not self.closed:
            self.pool._put_back(self)
        else:
            self.close()

    # -- receive --

    def _feed_parser(self, view: memoryview) -> int:
        return self.parser.feed(view)      # type: ignore[union-attr]

    def _expire(self) -> None:
        # a read timeout: the connection is useless now; aborting it wakes
        # the waiting read (cheaper than cancelling the task per read)
        self._timed_out = True
        self.conn.abort()

    async def _read_once(self, read_timeout: Optional[float]) -> None:
        """One receive's worth of parsing; raises at EOF unless the parser
        completes there."""
        timer = (None if read_timeout is None
                 else self._loop.call_later(read_timeout, self._expire_cb))
        try:
            n = await self.conn.with_data(self._feed)
        except (ConnectionClosed, ConnectionDropped, OSError) as exc:
            if self._timed_out:
                raise ReadTimeout(f"no response bytes within {read_timeout} s") from None
            raise ReadError(f"connection failed while reading the response: {exc}") from None
        finally:
            if timer is not None:
                timer.cancel()
        if n == 0:
            self.parser.feed_eof()      # type: ignore[union-attr]

    # -- send --

    async def _drain(self, write_timeout: Optional[float]) -> None:
        try:
            if write_timeout is None:
                await self.conn.drain()
            else:
                async with _timeout(write_timeout):
                    await self.conn.drain()
        except TimeoutError:
            raise WriteTimeout(f"the server did not take the request body within "
                               f"{write_timeout} s") from None

    async def _send_body(self, content: Optional[bytes], stream: Any, t: Timeout) -> None:
        conn = self.conn
        if content is not None:
            for i in range(0, len(content), _PIECE):
                conn.send_nowait(content[i:i + _PIECE])
                await self._drain(t.write)
            return
        if stream is None:
            return
        chunked = stream.chunked
        declared = stream.length
        sent = 0
        async for piece in stream:
            if not piece:
                continue
            sent += len(piece)
            if declared is not None and sent > declared:
                raise LocalProtocolError(f"the request body is longer than its "
                                         f"Content-Length ({declared})")
            conn.send_nowait(chunk(piece) if chunked else piece)
            if conn.send_queue_bytes > _PIECE:
                await self._drain(t.write)
        if declared is not None and sent != declared:
            raise LocalProtocolError(f"the request body ({sent} bytes) is shorter than its "
                                     f"Content-Length ({declared})")
        if chunked:
            conn.send_nowait(LAST_CHUNK)

    # -- one exchange --

    async def request(self, method: bytes, target: bytes, headers: List[Tuple[bytes, bytes]],
                      checked: int, content: Optional[bytes], stream: Any, t: Timeout,
                      expect_continue: bool = False) -> ResponseParser:
        """Send one request and read its response head. Returns the parser
        (status, headers, and whatever body arrived with the head)."""
        reused = self.requests > 0
        self.requests += 1
        head = encode_head(method, target, headers, checked)
        p = self._spare
        if p is not None and method != b"HEAD":
            self._spare = None
            p.reset()
        else:
            p = ResponseParser(self.bounds, head=method == b"HEAD")
        self.parser = p
        conn = self.conn
        try:
            try:
                if expect_continue and (content or stream is not None):
                    conn.send_nowait(head)
                    await self._await_continue(p, t)
                    if not p.head_done:
                        await self._send_body(content, stream, t)
                    else:
                        p.keep_alive = False    # final status before the body: no reuse
                elif content is not None and len(content) <= _SMALL_BODY:
                    conn.send_nowait(head + content if content else head)
                else:
                    conn.send_nowait(head)
                    await self._send_body(content, stream, t)
            except (ConnectionClosed, ConnectionDropped, OSError) as exc:
                if reused and not p._started:
                    raise StaleConnection() from None
                raise WriteError(f"connection failed while sending the request: {exc}") from None
            while not p.head_done:
                try:
                    await self._read_once(t.read)
                except RemoteProtocolError:
                    if reused and not p._started and p._fed_head == 0:
                        raise StaleConnection() from None
                    raise
                except ReadError:
                    if reused and p._fed_head == 0 and not p._started:
                        raise StaleConnection() from None
                    raise
        except BaseException:
            self.parser = None
            self.close()
            raise
        self.http_version = p.http_version
        return p

    async def _await_continue(self, p: ResponseParser, t: Timeout) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (_CONTINUE_WAIT if t.read is None else min(t.read, _CONTINUE_WAIT))
        while not p.head_done and not p.interim:
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                await self._read_once(left)
            except ReadTimeout:
                return

    def body(self, p: ResponseParser, t: Timeout) -> "_H1Body":
        return _H1Body(self, p, t.read)


class _H1Body:
    """The body of one response, read on demand (Response._stream)."""

    __slots__ = ("c", "p", "read_timeout", "trailers", "finished", "released")

    def __init__(self, c: H1Connection, p: ResponseParser, read_timeout: Optional[float]) -> None:
        self.c = c
        self.p = p
        self.read_timeout = read_timeout
        self.trailers: Any = None
        self.finished = False
        self.released = False

    async def read(self) -> Optional[bytes]:
        """The next raw body piece, or None at the end (the connection then
        goes back to its pool)."""
        p = self.p
        while True:
            if self.finished:
                return None             # p may serve the connection's next response now
            body = p.body
            if body:
                p.body = []
                return body[0] if len(body) == 1 else b"".join(body)
            if p.done:
                self._finish()
                return None
            if self.released:
                return None
            try:
                await self.c._read_once(self.read_timeout)
            except BaseException:
                self.released = True
                self.c.close()
                raise

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.trailers = self.p.trailers
            if not self.released:
                self.released = True
                self.c._done(self.p.keep_alive)

    def release(self) -> None:
        """The Response is closed: a finished body gives the connection
        back, an unfinished one closes it."""
        if self.released:
            return
        p = self.p
        if p.done and not p.body:
            self._finish()
            return
        self.released = True
        self.c.close()
