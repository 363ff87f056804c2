"""One HTTP/3 connection: the engine's H3Connection on a ringline.quic
connection, and the streams of the requests in flight on it.

Owns ``H3Conn``: the H3Connection (QPACK, frames, SETTINGS, GOAWAY), the
streams in flight (``_Stream``), the receive bound and the stream room
(waiting for room, a stream's bounded wait and the response body object
are shared with HTTP/2's connection: ``http._mux``).
Every QUIC event of a turn goes through ``_on_quic_event`` (called by the
QuicConn while it drains the engine) and wakes only the streams it concerns;
requests queue their HEADERS / DATA and ``kick`` the connection, so all the
requests of one loop turn leave in one batch of datagrams.

Backpressure: body bytes received and not yet read are counted over the
connection (``buffered``); past ``QuicLimits.max_buffered_bytes`` the QUIC
connection is paused (datagrams stay unprocessed, no window reopens: the
server stops within one connection window) and it resumes when reads bring
the count under half. Neither engine can withhold credit per stream (both
reopen a stream's window when its data became an event), so the bound is
per connection: an unread stream can hold back the others on its
connection -- read or close responses you stream.

Lifecycle: OPEN (streams open while ``has_room()``) -> GOING AWAY (the
server's GOAWAY: streams at or above its id fail with
``StaleConnection(safe=True)``, which the client retries on a new
connection; the others finish; no new stream opens) -> CLOSED (the QUIC
connection terminated -- idle timeout, error, close -- every stream still
open fails with the reason; the client forgets the connection).

Invariants: every stream leaves ``streams`` exactly once (ended, reset or
failed), waking one waiter for room; ``buffered`` equals the bytes held in
the streams' ``data`` lists.

A stalled peer (``Timeout.write``): while a request body has bytes the
engine holds unsent (the peer's flow control stays closed) and no response
head came, a ``write`` period with no byte leaving fails the request with
``WriteTimeout`` (the stream is reset); bytes leaving, however slowly,
restart the period. Once the body is out, ``Timeout.read`` applies.

0-RTT: on a connection dialed with a session ticket allowing early data
(``qc.early``), GET and HEAD requests without a body are sent before the
handshake ends; any other request waits for it (``Timeout.connect``).
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional, Tuple

from .._conn.timers import timeout as _timeout
from ..http._config import Bounds, Timeout
from ..http._errors import (ConnectError, ConnectTimeout, LimitExceeded, ReadError,
                            RemoteProtocolError, WriteTimeout)
from ..http._h1 import check_header
from ..http._h1conn import StaleConnection
from ..http._models import Response, split_status, trailer_error
from ..http._mux import MuxBody, MuxConn
from ..quic import QuicConn
from ._config import QuicLimits

__all__ = ["H3Conn"]

_H3_REQUEST_CANCELLED = 0x10C
_H3_NO_ERROR = 0x100
_EARLY = ("GET", "HEAD")         # the requests that may go as 0-RTT early data
_SEND_HIGH = 1 << 20            # request body bytes queued in the engine per stream


class _Stream:
    __slots__ = ("sid", "status", "headers", "data", "ended", "error", "waiter", "trailers",
                 "nbytes", "unread", "fed")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.fed = 0                # request body bytes handed to the engine
        self.status = 0
        self.headers: Optional[List[Tuple[bytes, bytes]]] = None
        self.data: List[bytes] = []
        self.ended = False
        self.error: Optional[BaseException] = None
        self.waiter: Optional[asyncio.Future] = None
        self.trailers: Optional[List[Tuple[bytes, bytes]]] = None
        self.nbytes = 0
        self.unread = 0

    def wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)


class H3Conn(MuxConn):
    PROTO = "HTTP/3"
    __slots__ = ("qc", "h3", "bounds", "limits", "streams", "loop", "closed", "going_away",
                 "error", "room_waiters", "send_waiters", "buffered", "authority", "owner",
                 "_h3ev", "_qev", "_send_size", "origin")

    def __init__(self, qc: QuicConn, bounds: Bounds, limits: QuicLimits, origin: Any,
                 owner: Any) -> None:
        self.qc = qc
        eng = qc.engine
        self.h3 = eng.H3Connection(qc.quic)
        self.bounds = bounds
        self.limits = limits
        self.origin = origin
        self.owner = owner
        self.streams: Dict[int, _Stream] = {}
        self.loop = qc.loop
        self.closed = False
        self.going_away = False
        self.error: Optional[BaseException] = None
        self.room_waiters: List[asyncio.Future] = []
        self.send_waiters: List[asyncio.Future] = []
        self.buffered = 0
        _, host, port = origin
        h = f"[{host}]" if ":" in host else host
        self.authority = (h if port == 443 else f"{h}:{port}").encode("idna")
        self._h3ev = eng.h3events
        self._qev = eng.events
        self._send_size = getattr(qc.quic, "get_send_buffer_size", None)
        qc.on_turn = self._on_turn
        qc.set_handler(self._on_quic_event)
        qc.kick()                  # the control and QPACK streams' SETTINGS

    # -- room --

    def has_room(self) -> bool:
        if self.closed or self.going_away or len(self.streams) >= self.bounds.max_concurrent_streams:
            return False
        q = self.qc.quic
        # qh3 refuses a stream past the peer's MAX_STREAMS (a cumulative
        # count); aioquic queues it until the peer raises the limit
        peer = getattr(q, "max_concurrent_bidi_streams", None)
        return peer is None or (q.get_next_available_stream_id() >> 2) < peer

    # -- events (inside the QUIC connection's turn) --

    def _on_quic_event(self, e: Any) -> None:
        qev = self._qev
        t = type(e)
        if t is qev.ConnectionTerminated:
            why = e.reason_phrase or ("no error" if e.error_code in (0, 0x100) else "error")
            self._fail(ReadError(f"the HTTP/3 connection closed: {why} (0x{e.error_code:x})"))
            return
        if t is qev.StreamReset:
            s = self.streams.get(e.stream_id)
            if s is not None:
                self._reset(s, e.error_code)
            # the engine's H3 layer sees it too (qh3 emits its own event)
        for he in self.h3.handle_event(e):
            self._on_h3_event(he)

    def _reset(self, s: _Stream, code: int) -> None:
        if s.error is None and not s.ended:
            if code == 0x10B and s.headers is None:     # H3_REQUEST_REJECTED: not processed
                s.error = StaleConnection(True)
            else:
                s.error = RemoteProtocolError(f"the server reset the HTTP/3 stream "
                                              f"(error 0x{code:x})")
        self._drop_unread(s)
        s.wake()
        self._end_stream(s)

    def _on_h3_event(self, e: Any) -> None:
        ev = self._h3ev
        t = type(e)
        if t is ev.DataReceived:
            s = self.streams.get(e.stream_id)
            if s is None:
                return
            data = e.data
            if data:
                n = len(data)
                s.nbytes += n
                if s.nbytes > self.bounds.max_body_bytes:
                    self._stream_error(s, LimitExceeded("max_body_bytes",
                                                        self.bounds.max_body_bytes, "body"))
                    return
                s.data.append(data)
                s.unread += n
                self.buffered += n
                if self.buffered > self.limits.max_buffered_bytes and not self.qc.paused:
                    self.qc.pause()
            if e.stream_ended:
                s.ended = True
                self._end_stream(s)
            s.wake()
        elif t is ev.HeadersReceived:
            s = self.streams.get(e.stream_id)
            if s is None:
                return
            hdrs = e.headers
            if len(hdrs) > self.bounds.max_headers:
                self._stream_error(s, LimitExceeded("max_headers", self.bounds.max_headers,
                                                    "header count"))
                return
            size = 0
            for k, v in hdrs:
                size += len(k) + len(v) + 32
            if s.headers is None:
                if size > self.bounds.max_header_bytes:
                    self._stream_error(s, LimitExceeded("max_header_bytes",
                                                        self.bounds.max_header_bytes,
                                                        "HTTP/3 header section"))
                    return
                status, rest = split_status(hdrs)
                if 100 <= status < 200:
                    return
                s.status = status
                s.headers = rest
            else:
                err = trailer_error(size, self.bounds)
                if err is not None:
                    self._stream_error(s, err)
                    return
                s.trailers = list(hdrs)
            if e.stream_ended:
                s.ended = True
                self._end_stream(s)
            s.wake()
        elif t is ev.GoawayReceived:
            self.going_away = True
            waiters, self.room_waiters = self.room_waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)
            for s in list(self.streams.values()):
                if s.sid >= e.stream_id:
                    s.error = StaleConnection(True)
                    s.wake()
                    self._end_stream(s)
            self.owner._forget(self)
            if not self.streams:
                self.close()
        elif t.__name__ == "StreamReset":       # qh3's H3-level reset event
            s = self.streams.get(e.stream_id)
            if s is not None:
                self._reset(s, e.error_code)

    def _on_turn(self) -> None:
        if self.room_waiters and self.has_room():
            # the peer raised MAX_STREAMS: every waiter checks again
            waiters, self.room_waiters = self.room_waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)
        waiters = self.send_waiters
        if waiters:
            self.send_waiters = []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def _stream_error(self, s: _Stream, exc: BaseException) -> None:
        s.error = exc
        self.cancel_stream(s)
        s.wake()

    def _drop_unread(self, s: _Stream) -> None:
        if s.unread:
            self.buffered -= s.unread
            s.unread = 0
            s.data = []
            self._maybe_resume()

    def _maybe_resume(self) -> None:
        if self.qc.paused and self.buffered <= self.limits.max_buffered_bytes // 2:
            self.qc.resume()

    def cancel_stream(self, s: _Stream) -> None:
        """Reset our side of ``s`` and ask the server to stop sending."""
        self._drop_unread(s)
        if s.sid in self.streams and not self.closed:
            q = self.qc.quic
            try:
                q.reset_stream(s.sid, _H3_REQUEST_CANCELLED)
            except Exception:
                pass
            try:
                q.stop_stream(s.sid, _H3_REQUEST_CANCELLED)
            except Exception:
                pass
            self.qc.kick()
        self._end_stream(s)

    # -- ending --

    def _fail(self, exc: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        self.error = exc
        for s in list(self.streams.values()):
            if s.error is None and not s.ended:
                s.error = exc
            s.wake()
        self.streams.clear()
        for lst in (self.room_waiters, self.send_waiters):
            for w in lst:
                if not w.done():
                    w.set_result(None)
            lst.clear()
        self.owner._forget(self)
        self.qc.endpoint.close()

    def close(self) -> None:
        """Close gracefully (CONNECTION_CLOSE with H3_NO_ERROR)."""
        if self.closed:
            return
        self.qc.close(_H3_NO_ERROR, "")
        self._fail(ReadError("the HTTP/3 connection was closed by the client"))

    # -- one exchange --

    def _unsent(self, sid: int) -> int:
        """Bytes of stream ``sid`` the engine holds not yet transmitted."""
        size = self._send_size
        if size is not None:                       # qh3
            return size(sid)
        st = getattr(self.qc.quic, "_streams", {}).get(sid)      # aioquic
        snd = getattr(st, "sender", None)
        if snd is None:
            return 0
        return max(0, snd._buffer_stop - snd.highest_offset)

    async def _wait_upload(self, s: _Stream, period: float) -> None:
        """Wait for the response head while the body is still going out:
        a ``period`` with no body byte leaving is a stalled peer."""
        mark = s.fed - self._unsent(s.sid)
        fut = s.waiter = self.loop.create_future()
        try:
            async with _timeout(period):
                await fut
            return
        except TimeoutError:
            pass
        except BaseException:
            self.cancel_stream(s)
            raise
        if s.waiter is fut:
            s.waiter = None
        unsent = self._unsent(s.sid)
        if unsent and s.fed - unsent == mark and s.headers is None and s.error is None:
            self.cancel_stream(s)
            raise WriteTimeout(f"the HTTP/3 server took no request body bytes for {period} s "
                               f"({unsent} bytes waiting: its flow control stays closed)")

    async def _sender(self, s: _Stream, body: Any) -> None:
        """A streamed request body, as the engine takes it (at most
        ``_SEND_HIGH`` bytes queued per stream when the engine tells)."""
        h3 = self.h3
        size = self._send_size
        try:
            async for piece in body:
                if not piece:
                    continue
                if self.closed or s.sid not in self.streams:
                    return
                h3.send_data(s.sid, piece, False)
                s.fed += len(piece)
                self.qc.kick()
                while size is not None and not self.closed and s.sid in self.streams \
                        and size(s.sid) > _SEND_HIGH:
                    fut = self.loop.create_future()
                    self.send_waiters.append(fut)
                    await fut
            if not self.closed and s.sid in self.streams:
                h3.send_data(s.sid, b"", True)
                self.qc.kick()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if s.error is None:
                s.error = exc
            s.wake()
            self.cancel_stream(s)

    async def _handshake(self, t: Timeout) -> None:
        """Wait for the end of a 0-RTT connection's handshake."""
        qc = self.qc
        try:
            if t.connect is None:
                await asyncio.shield(qc.handshake)
            else:
                async with _timeout(t.connect):
                    await asyncio.shield(qc.handshake)
        except TimeoutError:
            self.close()
            raise ConnectTimeout(f"QUIC handshake with {self.authority.decode()} timed out "
                                 f"after {t.connect} s") from None
        if qc.terminated is not None:
            raise ConnectError(f"QUIC handshake with {self.authority.decode()} failed: "
                               f"{getattr(qc.terminated, 'reason_phrase', '')}")

    async def request(self, client: Any, req: Any, t: Timeout) -> Response:
        if not self.has_room():
            raise StaleConnection(True)
        if self.qc.early and not self.qc.handshake.done() and (
                req.method not in _EARLY or req.content or req.stream is not None):
            await self._handshake(t)           # only GET and HEAD go as 0-RTT
            if not self.has_room():
                raise StaleConnection(True)
        raw_headers, checked, body = client._wire_headers(req, True)
        headers = [(b":method", req.method.encode("ascii")), (b":scheme", b"https"),
                   (b":authority", self.authority),
                   (b":path", req.url.target.encode("ascii"))]
        for i, (name, value) in enumerate(raw_headers):
            if i >= checked:
                check_header(name, value)
            name = name.lower()
            if name == b"te" and value.lower() != b"trailers":
                continue
            headers.append((name, value))
        end = req.content is None and body is None or req.content == b""
        q = self.qc.quic
        sid = q.get_next_available_stream_id()
        s = _Stream(sid)
        self.streams[sid] = s
        h3 = self.h3
        try:
            h3.send_headers(sid, headers, end_stream=end)
            if not end and req.content is not None:
                h3.send_data(sid, req.content, True)
                s.fed = len(req.content)
        except Exception as exc:
            self.streams.pop(sid, None)
            raise RemoteProtocolError(f"cannot open an HTTP/3 stream: {exc}") from None
        self.qc.kick()
        sender = None
        if not end and req.content is None:
            sender = self.loop.create_task(self._sender(s, body))
        try:
            while s.headers is None:
                if s.error is not None:
                    raise s.error
                if end or t.write is None or self._unsent(sid) == 0:
                    await self._wait(s, t.read)
                else:
                    await self._wait_upload(s, t.write)
        except BaseException:
            if sender is not None:
                sender.cancel()
            raise
        return Response(s.status, headers=s.headers, request=req, http_version="HTTP/3",
                        stream=_H3Body(self, s, t.read, sender), bounds=self.bounds)


class _H3Body(MuxBody):
    """The body of one HTTP/3 response (Response._stream)."""

    __slots__ = ()

    def _take(self, items: List[Any]) -> bytes:
        """The pieces' bytes; they leave the connection's receive bound
        (``buffered``), which may resume a paused QUIC connection."""
        c = self.c
        s = self.s
        c.buffered -= s.unread
        s.unread = 0
        if c.qc.paused:
            c._maybe_resume()
        return items[0] if len(items) == 1 else b"".join(items)
