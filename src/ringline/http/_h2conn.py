"""One HTTP/2 connection over ringline's Conn API (TLS with ALPN "h2", or
h2c with prior knowledge), with the sans-IO ``h2`` library as its framing
core.

Owns ``H2Connection``: the h2 state machine, one reader task per connection
(``on_data`` feeds every receive straight into h2 and dispatches its events
from the completion, waking only the streams they concern), the streams in
flight (``_Stream``), flow control (receive windows of ``_STREAM_WINDOW`` per
stream and ``_CONN_WINDOW`` per connection, opened as the application reads;
sends wait for the peer's window), SETTINGS, PING (answered by h2), GOAWAY,
RST_STREAM, MAX_CONCURRENT_STREAMS, and the flood and HPACK bounds of
``Bounds``. What it shares with HTTP/3's connection -- waiting for stream
room, a stream's wait bounded by the read timeout, a stream leaving, the
response body object -- is ``_mux``'s (``MuxConn``, ``MuxBody``). The
frame engine is behind a few methods (``_engine``,
``_initiate``, ``_receive``, ``_dispatch``, plus ``_send_head`` and
``_remote_max_streams``) and each event has its handler (``_on_body``,
``_on_head``, ``_on_trailers``, ``_on_ended``, ``_on_reset``,
``_on_window``, ``_on_goaway``, ``_on_ping_ack``, ``_on_settings``), so
``_h2fast.FastH2Connection`` runs the same connection on the native engine.

Lifecycle: OPEN (preface and SETTINGS sent; streams are opened while
``has_room()``, each by ``_new_stream``) -> GOING AWAY (the server sent
GOAWAY: streams above its last stream id fail with
``StaleConnection(safe=True)``, which the client retries on a new
connection; or our stream ids ran out: the stream that took id 2^31-1, the
last of the 2^30 a client has, retires the connection, and a request that
finds no id left raises ``StreamIdsExhausted``, which the client and
ringline.grpc retry once on a new connection; either way the others finish
and no new stream opens here) -> CLOSED (when the last stream ends there;
every stream still open fails with the reason; the pool forgets the
connection). A protocol error, a bound exceeded or the end of the TCP stream
closes the connection at once.

Invariants: every stream leaves ``streams`` exactly once (ended, reset or
failed), which wakes one waiter for stream room; no HEADERS frame goes out
for a stream id above 2^31-1; bytes of a response body are
acknowledged to h2 (reopening the window) only when the application takes
them, so an unread stream holds back only its own window; the count of
control frames that carry no progress (SETTINGS, PING, empty DATA, zero
WINDOW_UPDATE, PRIORITY, unknown frames) is bounded per second; a frame whose
header announces more than our max frame size fails the connection on the
receive that brought the header (its payload is never buffered); a PING we
sent (``ping()``, keepalive) is answered True by its ACK or False when the
connection closes, never left waiting.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional, Tuple

import h2.config  # type: ignore[import-untyped]
import h2.connection  # type: ignore[import-untyped]
import h2.events as ev  # type: ignore[import-untyped]
import h2.exceptions  # type: ignore[import-untyped]
import h2.frame_buffer  # type: ignore[import-untyped]
import h2.settings  # type: ignore[import-untyped]
from h2.errors import ErrorCodes  # type: ignore[import-untyped]
from h2.utilities import HeaderValidationFlags, validate_headers  # type: ignore[import-untyped]

from .._conn.timers import timeout as _timeout
from .._errors import ConnectionClosed, ConnectionDropped
from ._config import Bounds, Timeout
from ._errors import LimitExceeded, ReadError, RemoteProtocolError, WriteTimeout
from ._h1 import check_header
from ._h1conn import StaleConnection, StreamIdsExhausted
from ._models import Response, split_status, trailer_error
from ._mux import MuxBody, MuxConn

__all__ = ["H2Connection", "open_h2"]


class ServerClosed(RemoteProtocolError):
    """The error of every stream in flight when the server closed the TCP
    connection (a RemoteProtocolError to ringline.http's callers; a
    connection that went away to ringline.grpc: UNAVAILABLE)."""

_STREAM_WINDOW = 1 << 20
_CONN_WINDOW = 16 << 20
_SEND_HIGH = 1 << 20
_INITIAL_STREAMS = 100
_MAX_SID = 0x7FFFFFFF           # the highest stream id (31 bits; a client's are odd)
# h2's flags for a response head / informational head and for trailers
_HEAD_FLAGS = HeaderValidationFlags(is_client=True, is_trailer=False, is_response_header=True,
                                    is_push_promise=False)
_TRAILER_FLAGS = HeaderValidationFlags(is_client=True, is_trailer=True, is_response_header=False,
                                       is_push_promise=False)
_VALID_MAX = 64                 # header blocks remembered as valid, per connection
# the bytes h2's frame buffer holds (renamed from "data" in later h2 releases)
_PENDING = "_data" if hasattr(h2.frame_buffer.FrameBuffer(), "_data") else "data"
_CS = h2.connection.ConnectionState
_CI = h2.connection.ConnectionInputs
_AFTER_GOAWAY = (_CI.RECV_HEADERS, _CI.RECV_DATA, _CI.RECV_WINDOW_UPDATE, _CI.RECV_PING,
                 _CI.RECV_SETTINGS, _CI.RECV_RST_STREAM, _CI.RECV_PRIORITY,
                 _CI.RECV_ALTERNATIVE_SERVICE, _CI.SEND_DATA, _CI.SEND_WINDOW_UPDATE,
                 _CI.SEND_RST_STREAM, _CI.SEND_PING, _CI.SEND_SETTINGS)
_TRANSITIONS = dict(h2.connection.H2ConnectionStateMachine._transitions)
_TRANSITIONS.update({(_CS.CLOSED, i): (None, _CS.CLOSED) for i in _AFTER_GOAWAY})


class _Stream:
    __slots__ = ("sid", "status", "headers", "data", "ended", "error", "waiter", "trailers",
                 "window_waiter", "nbytes")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.status = 0
        self.headers: Optional[List[Tuple[bytes, bytes]]] = None
        self.data: List[Tuple[bytes, int]] = []
        self.ended = False
        self.error: Optional[BaseException] = None
        self.waiter: Optional[asyncio.Future] = None
        self.window_waiter: Optional[asyncio.Future] = None
        self.trailers: Optional[List[Tuple[bytes, bytes]]] = None
        self.nbytes = 0

    def wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)
        w = self.window_waiter
        if w is not None:
            self.window_waiter = None
            if not w.done():
                w.set_result(None)


async def open_h2(raw: Any, pool: Any) -> "H2Connection":
    c = H2Connection(raw, pool, pool.bounds)
    c.start()
    return c


class H2Connection(MuxConn):
    __slots__ = ("raw", "pool", "bounds", "h2", "streams", "loop", "reader", "closed",
                 "going_away", "last_stream_id", "error", "room_waiters", "_flood_t",
                 "_flood_n", "scheme", "authority", "max_streams", "http_version", "settled",
                 "pings", "settled_waiter", "valid")

    def __init__(self, raw: Any, pool: Any, bounds: Bounds) -> None:
        self.raw = raw
        self.pool = pool
        self.bounds = bounds
        self.http_version = "HTTP/2"
        self.h2: Any = self._engine(bounds)
        self.streams: Dict[int, _Stream] = {}
        self.loop = asyncio.get_running_loop()
        self.reader: Optional[asyncio.Task] = None
        self.closed = False
        self.going_away = False
        self.last_stream_id = 0
        self.error: Optional[BaseException] = None
        self.room_waiters: List[asyncio.Future] = []
        self._flood_t = 0.0
        self._flood_n = 0
        scheme, host, port = pool.origin
        default = 443 if scheme == "https" else 80
        h = f"[{host}]" if ":" in host else host
        self.scheme = scheme.encode()
        self.authority = (h if port == default else f"{h}:{port}").encode("idna")
        self.max_streams = bounds.max_concurrent_streams
        # until the server's SETTINGS arrive its stream limit is unknown: open
        # at most the 100 the RFC recommends a server allows at least
        self.settled = False
        # done when the server's first SETTINGS arrived or the connection
        # closed: the pool waits on it before dialling a second connection
        self.settled_waiter: asyncio.Future = self.loop.create_future()
        self.pings: Dict[bytes, asyncio.Future] = {}
        self.valid: set = set()

    def _engine(self, bounds: Bounds) -> Any:
        """The frame engine: h2's state machine, configured."""
        # inbound headers are validated as h2 does (illegal characters, pseudo
        # headers: _validate); outbound ones were checked by check_header and
        # Client._wire_headers (lower-case names, no connection-specific
        # fields, TE only "trailers"), so h2 need not check them again
        # h2's inbound validation (the same function, the same flags) runs
        # in _validate, once per distinct header block (see there)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_inbound_headers=False,
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False)
        conn = h2.connection.H2Connection(config=cfg)
        # h2's state machine closes the whole connection on GOAWAY, so any
        # frame after it (DATA, trailers, WINDOW_UPDATE of the streams the
        # GOAWAY lets finish) would be a ProtocolError: keep those legal
        conn.state_machine._transitions = _TRANSITIONS
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
            h2.settings.SettingCodes.HEADER_TABLE_SIZE: bounds.hpack_table_size,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: bounds.max_header_bytes,
        })
        # until our SETTINGS are acknowledged h2's decoder uses its defaults:
        # apply the bounds at once
        conn.decoder.max_header_list_size = bounds.max_header_bytes
        conn.decoder.max_allowed_table_size = bounds.hpack_table_size
        return conn

    def start(self) -> None:
        self._initiate()
        self._flush()
        self.reader = self.loop.create_task(self._read_loop())

    def _initiate(self) -> None:
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_CONN_WINDOW - 65535)

    def _remote_max_streams(self) -> int:
        return int(self.h2.remote_settings.max_concurrent_streams)

    # -- state --

    def has_room(self) -> bool:
        if self.closed or self.going_away:
            return False
        limit = min(self._remote_max_streams(), self.max_streams)
        if not self.settled:
            limit = min(limit, _INITIAL_STREAMS)
        return len(self.streams) < limit

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            try:
                self.raw.send_nowait(data)
            except (ConnectionClosed, ConnectionDropped) as exc:
                self._fail(ReadError(f"HTTP/2 connection failed: {exc}"))

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.h2.close_connection()
            self._flush()
        except Exception:
            pass
        self._fail(ReadError("the HTTP/2 connection was closed by the client"), graceful=True)

    def _fail(self, exc: BaseException, graceful: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.error = exc
        for s in list(self.streams.values()):
            if s.error is None and not s.ended:
                s.error = exc
            s.wake()
        self.streams.clear()
        for p in self.pings.values():
            if not p.done():
                p.set_result(False)
        self.pings.clear()
        for w in self.room_waiters:
            if not w.done():
                w.set_result(None)
        self.room_waiters.clear()
        if not self.settled_waiter.done():
            self.settled_waiter.set_result(None)
        if graceful:
            self.raw.close()
        else:
            self.raw.abort()
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
        self.pool._forget(self)

    # -- receive --

    async def _read_loop(self) -> None:
        try:
            await self.raw.on_data(self._on_data)
        except asyncio.CancelledError:
            return
        except RemoteProtocolError as exc:
            # graceful: the GOAWAY h2 (or _check_frame_length) queued goes out
            self._fail(exc, graceful=True)
            return
        except LimitExceeded as exc:
            self._fail(exc)
            return
        except Exception as exc:
            self._fail(ReadError(f"HTTP/2 connection failed: {exc}"))
            return
        self._fail(ServerClosed("the server closed the HTTP/2 connection"))

    def _flood(self) -> None:
        now = self.loop.time()
        if now - self._flood_t >= 1.0:
            self._flood_t = now
            self._flood_n = 0
        self._flood_n += 1
        if self._flood_n > self.bounds.max_control_frames:
            raise LimitExceeded("max_control_frames", self.bounds.max_control_frames,
                                "HTTP/2 control frames per second")

    def _on_data(self, view: memoryview) -> int:
        n = len(view)
        if self.closed:
            return n
        try:
            events: List[Any] = self._receive(view)
        except h2.exceptions.DenialOfServiceError as exc:
            self._flush()
            raise LimitExceeded("max_header_bytes", self.bounds.max_header_bytes,
                                f"HTTP/2 header block ({exc})") from None
        except h2.exceptions.ProtocolError as exc:
            self._flush()
            raise RemoteProtocolError(f"HTTP/2 protocol error from the server: {exc}") from None
        except Exception as exc:     # hpack errors surface as several types
            if "header" in type(exc).__name__.lower() or "hpack" in type(exc).__module__:
                raise LimitExceeded("max_header_bytes", self.bounds.max_header_bytes,
                                    f"HTTP/2 header block ({type(exc).__name__}: {exc})") \
                    from None
            raise
        if not self._dispatch(events):
            self._flush()
        return n

    def _dispatch(self, events: List[Any]) -> bool:
        """Hand h2's events to the handlers below; True when the connection
        closed on the way."""
        for e in events:
            t = type(e)
            if t is ev.DataReceived:
                self._on_body(e.stream_id, e.data, e.flow_controlled_length,
                              e.stream_ended is not None)
            elif t is ev.ResponseReceived:
                self._on_head(e.stream_id, e.headers)
            elif t is ev.StreamEnded:
                self._on_ended(e.stream_id)
            elif t is ev.TrailersReceived:
                self._on_trailers(e.stream_id, e.headers)
            elif t is ev.StreamReset:
                self._on_reset(e.stream_id, e.error_code)
            elif t is ev.WindowUpdated:
                self._on_window(e.stream_id, e.delta)
            elif t is ev.ConnectionTerminated:
                if self._on_goaway(e.last_stream_id, e.error_code):
                    return True
            elif t is ev.InformationalResponseReceived:
                self._validate(e.headers, _HEAD_FLAGS)
            elif t in (ev.RemoteSettingsChanged, ev.PingReceived, ev.PingAckReceived,
                       ev.PriorityUpdated, ev.UnknownFrameReceived,
                       ev.SettingsAcknowledged):
                self._flood()
                if t is ev.PingAckReceived:
                    self._on_ping_ack(e.ping_data)
                elif t is ev.RemoteSettingsChanged:
                    self._on_settings()
        return False

    def _receive(self, view: memoryview) -> List[Any]:
        events = self.h2.receive_data(bytes(view))
        pending = getattr(self.h2.incoming_buffer, _PENDING)
        if len(pending) >= 9:
            self._check_frame_length(pending)
        return events  # type: ignore[no-any-return]

    # -- one event each (h2's events here, _h2fast's native engine's there) --

    def _on_body(self, sid: int, data: bytes, flow_len: int, ended: bool) -> None:
        s = self.streams.get(sid)
        if s is None:
            self.h2.acknowledge_received_data(flow_len, sid)
            return
        if not data and not ended:
            self._flood()
        s.nbytes += len(data)
        if s.nbytes > self.bounds.max_body_bytes:
            self.h2.reset_stream(sid, ErrorCodes.CANCEL)
            s.error = LimitExceeded("max_body_bytes", self.bounds.max_body_bytes, "body")
            s.wake()
            self._end_stream(s)
            return
        s.data.append((data, flow_len))
        if ended:
            s.ended = True
            s.wake()
            self._end_stream(s)
        else:
            s.wake()

    def _on_head(self, sid: int, hdrs: List[Any]) -> None:
        self._validate(hdrs, _HEAD_FLAGS)
        s = self.streams.get(sid)
        if s is None:
            return
        if len(hdrs) > self.bounds.max_headers:
            self._stream_error(s, LimitExceeded("max_headers", self.bounds.max_headers,
                                                "header count"))
            return
        status, rest = split_status(hdrs)
        if 100 <= status < 200:
            return                      # informational: the final head follows
        s.status = status
        s.headers = rest
        s.wake()

    def _on_ended(self, sid: int) -> None:
        s = self.streams.get(sid)
        if s is not None:
            s.ended = True
            s.wake()
            self._end_stream(s)

    def _on_trailers(self, sid: int, hdrs: List[Any]) -> None:
        key = self._validate(hdrs, _TRAILER_FLAGS)
        s = self.streams.get(sid)
        if key is not None:         # a block not seen before: its size too
            err = trailer_error(sum(len(k) + len(v) for k, v in hdrs), self.bounds)
            if err is not None:
                self.valid.discard(key)     # checked again when it comes again
                if s is not None:
                    self._stream_error(s, err)
                return
        if s is not None:
            s.trailers = list(hdrs)

    def _on_reset(self, sid: int, code: int) -> None:
        s = self.streams.get(sid)
        if s is not None:
            if code == ErrorCodes.REFUSED_STREAM and s.headers is None:
                s.error = StaleConnection(True)
            else:
                try:
                    name = ErrorCodes(code).name
                except ValueError:
                    name = str(code)
                s.error = RemoteProtocolError(f"the server reset the stream ({name})")
            s.wake()
            self._end_stream(s)

    def _on_window(self, sid: int, delta: int) -> None:
        if delta == 0:
            self._flood()
        if sid == 0:
            for s in list(self.streams.values()):
                if s.window_waiter is not None:
                    s.wake()
        else:
            one = self.streams.get(sid)
            if one is not None and one.window_waiter is not None:
                w = one.window_waiter
                one.window_waiter = None
                if not w.done():
                    w.set_result(None)

    def _stop_new_streams(self) -> None:
        """Going away (GOAWAY, or the stream ids ran out): no new stream
        opens here; requests waiting for a stream here go to another
        connection."""
        self.going_away = True
        waiters, self.room_waiters = self.room_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _retire(self) -> None:
        """The stream ids are used up: go away as on a GOAWAY of our own
        making; the streams in flight finish, and the connection closes
        with the last of them (at once when there is none)."""
        if self.going_away:
            return
        self._stop_new_streams()
        if not self.streams:
            self.close()
        else:
            self.pool._forget_h2_soft(self)

    def _on_goaway(self, last_stream_id: int, code: int) -> bool:
        """GOAWAY: True when the connection closed here (stop dispatching)."""
        self._stop_new_streams()
        self.last_stream_id = last_stream_id
        streams = self.streams
        for s in list(streams.values()):
            if s.sid > last_stream_id:
                s.error = StaleConnection(True)
                s.wake()
                streams.pop(s.sid, None)
        if code != ErrorCodes.NO_ERROR:
            try:
                name = ErrorCodes(code).name
            except ValueError:
                name = str(code)
            err = RemoteProtocolError(f"the server ended the HTTP/2 connection (GOAWAY {name})")
            self._flush()
            self._fail(err)
            return True
        if not streams:
            self._flush()
            self.close()
            return True
        self.pool._forget_h2_soft(self)
        return False

    def _on_ping_ack(self, opaque: bytes) -> None:
        p = self.pings.pop(opaque, None)
        if p is not None and not p.done():
            p.set_result(True)

    def _on_settings(self) -> None:
        self.settled = True
        if not self.settled_waiter.done():
            self.settled_waiter.set_result(None)
        waiters, self.room_waiters = self.room_waiters, []
        for w in waiters:       # each re-checks the new limit
            if not w.done():
                w.set_result(None)

    def _validate(self, headers: List[Any], flags: Any) -> Any:
        """h2's inbound header validation (``validate_headers`` with the
        flags h2 would build), run here instead of inside h2 so that a
        block seen before on this connection (a gRPC server's heads and
        trailers repeat call after call) is not validated again: at most
        ``_VALID_MAX`` valid blocks are remembered. An invalid block fails
        the connection (GOAWAY PROTOCOL_ERROR) as h2 would have; unlike
        h2, the frames after it in the same receive were already processed,
        which changes nothing since the connection fails. Returns None for
        a block seen before, else its key in ``valid``."""
        key = (tuple(headers), flags.is_trailer)
        valid = self.valid
        if key in valid:
            return None
        try:
            for _ in validate_headers(headers, flags):
                pass
        except h2.exceptions.ProtocolError as exc:
            try:
                self.h2.close_connection(error_code=ErrorCodes.PROTOCOL_ERROR)
            except h2.exceptions.H2Error:
                pass
            self._flush()
            raise RemoteProtocolError(f"HTTP/2 protocol error from the server: {exc}") from None
        if len(valid) >= _VALID_MAX:
            valid.clear()
        valid.add(key)
        return key

    def _check_frame_length(self, pending: Any) -> None:
        """h2 checks a frame's length against our max frame size only once
        the whole frame is in its buffer, so a server announcing 16 MiB
        frames would have us hold 16 MiB per frame: the header of the frame
        still incomplete is checked here, on the receive that brought it,
        and a length above the limit fails the connection (GOAWAY
        FRAME_SIZE_ERROR) before its payload is buffered."""
        length = (pending[0] << 16) | (pending[1] << 8) | pending[2]
        limit = self.h2.max_inbound_frame_size
        if length > limit:
            try:
                self.h2.close_connection(error_code=ErrorCodes.FRAME_SIZE_ERROR)
            except h2.exceptions.H2Error:
                pass
            self._flush()
            raise RemoteProtocolError(f"HTTP/2 protocol error from the server: a frame of "
                                      f"{length} bytes announced, the limit is {limit}")

    def _stream_error(self, s: _Stream, exc: BaseException) -> None:
        try:
            self.h2.reset_stream(s.sid, ErrorCodes.CANCEL)
        except h2.exceptions.H2Error:
            pass
        s.error = exc
        s.wake()
        self._end_stream(s)

    # -- one exchange --

    def cancel_stream(self, s: _Stream) -> None:
        if self.closed:
            return
        unread = sum(fl for _, fl in s.data)
        s.data = []
        try:
            if s.sid in self.streams:
                self.h2.reset_stream(s.sid, ErrorCodes.CANCEL)
            if unread:
                # bytes never read still count against the connection window
                self.h2.acknowledge_received_data(unread, s.sid)
        except h2.exceptions.H2Error:
            pass
        self._flush()
        self._end_stream(s)

    async def _send_body(self, s: _Stream, content: Optional[bytes], stream: Any,
                         t: Timeout) -> None:
        if content is not None:
            await self._send_data(s, content, t)
        else:
            async for piece in stream:
                if piece:
                    await self._send_data(s, piece, t)
        if s.sid in self.streams and not self.closed:
            self.h2.end_stream(s.sid)
            self._flush()

    async def _sender(self, s: _Stream, content: Optional[bytes], stream: Any,
                      t: Timeout) -> None:
        """The request body, sent next to the response wait; a failure
        (write timeout, a body iterator's error) fails the stream."""
        try:
            await self._send_body(s, content, stream, t)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if s.error is None:
                s.error = exc
            s.wake()
            self.cancel_stream(s)

    async def _send_data(self, s: _Stream, data: bytes, t: Timeout) -> None:
        h2c = self.h2
        view = memoryview(data)
        while view:
            if self.closed or s.sid not in self.streams:
                if s.error is not None:
                    raise s.error
                if self.error is not None:
                    raise self.error
                return                  # the response ended first: stop sending
            window = min(h2c.local_flow_control_window(s.sid), h2c.max_outbound_frame_size)
            if window <= 0:
                fut = s.window_waiter = self.loop.create_future()
                try:
                    if t.write is None:
                        await fut
                    else:
                        async with _timeout(t.write):
                            await fut
                except TimeoutError:
                    self.cancel_stream(s)
                    raise WriteTimeout(f"the server's flow-control window stayed closed for "
                                       f"{t.write} s") from None
                continue
            piece = view[:window]
            h2c.send_data(s.sid, bytes(piece))
            view = view[window:]
            self._flush()
            if self.raw.send_queue_bytes > _SEND_HIGH:
                await self.raw.drain()

    # -- streams driven by a caller of its own (ringline.grpc) --

    async def ping(self) -> bool:
        """Send a PING and wait (unbounded: the caller bounds it) for its
        ACK: True when it came, False when the connection closed first."""
        if self.closed:
            return False
        opaque = len(self.pings).to_bytes(4, "big") + int(self.loop.time() * 1e6 % (1 << 32)) \
            .to_bytes(4, "big")
        fut = self.pings[opaque] = self.loop.create_future()
        try:
            self.h2.ping(opaque)
        except h2.exceptions.H2Error:
            self.pings.pop(opaque, None)
            return False
        self._flush()
        try:
            return bool(await fut)
        finally:
            self.pings.pop(opaque, None)

    def open_stream(self, method: bytes, path: bytes, headers: List[Tuple[bytes, bytes]],
                    end_stream: bool = False, flush: bool = True) -> _Stream:
        """Open a stream whose header fields the caller has checked (lower
        case names, no connection-specific fields); the pseudo headers are
        added here. Raises ``StaleConnection(True)`` when this connection
        takes no new stream. With ``flush=False`` the HEADERS frame leaves
        with the next send on the connection."""
        if self.closed or not self.has_room():
            raise StaleConnection(True)
        hdrs = [(b":method", method), (b":scheme", self.scheme),
                (b":authority", self.authority), (b":path", path)]
        hdrs.extend(headers)
        s = self._new_stream(hdrs, end_stream)
        if flush:
            self._flush()
        return s

    def _new_stream(self, hdrs: List[Tuple[bytes, bytes]], end_stream: bool) -> _Stream:
        """Open the next stream with the header block ``hdrs`` (HEADERS
        queued, not flushed): the one way every request opens a stream.
        The stream that takes the last id (2^31-1) retires the connection
        (it finishes here, later requests go elsewhere); with no id left,
        the connection retires and ``StreamIdsExhausted`` is raised, nothing
        sent. Other engine refusals raise ``RemoteProtocolError``."""
        try:
            sid = self.h2.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            sid = _MAX_SID + 2
        if sid > _MAX_SID:
            self._retire()
            raise StreamIdsExhausted()
        s = _Stream(sid)
        self.streams[sid] = s
        try:
            self._send_head(sid, hdrs, end_stream)
        except h2.exceptions.ProtocolError as exc:
            self.streams.pop(sid, None)
            raise RemoteProtocolError(f"cannot open an HTTP/2 stream: {exc}") from None
        if sid + 2 > _MAX_SID:
            self._retire()
        return s

    def _send_head(self, sid: int, hdrs: List[Tuple[bytes, bytes]], end_stream: bool) -> None:
        h2c = self.h2
        if sid & 0x7E:
            # h2 counts its open streams by walking all of them for every
            # new one (O(streams in flight) per call); has_room() above
            # already kept to the server's limit, so the stream is
            # registered first and h2 skips the count. Every 64th stream
            # goes the counting way, which also drops h2's closed streams.
            h2c._begin_new_stream(sid, h2.connection.AllowedStreamIDs.ODD)
        h2c.send_headers(sid, hdrs, end_stream=end_stream)

    async def send(self, s: _Stream, data: bytes, t: Timeout, end_stream: bool = False) -> None:
        """Send ``data`` on ``s`` as the peer's flow-control windows allow
        (waits bounded by ``t.write``); ``end_stream`` half-closes it after.
        Raises the stream's or the connection's error if either failed."""
        if self.send_now(s, data, end_stream):
            return
        await self._send_data(s, data, t)
        if end_stream:
            self.end_stream(s)

    def send_now(self, s: _Stream, data: bytes, end_stream: bool = False) -> bool:
        """Send ``data`` on ``s`` at once when it fits one frame and the
        peer's windows (True), else send nothing (False: ``send()`` waits)."""
        h2c = self.h2
        sid = s.sid
        if (not self.closed and sid in self.streams and len(data) <= h2c.max_outbound_frame_size
                and len(data) <= h2c.local_flow_control_window(sid)):
            h2c.send_data(sid, data, end_stream=end_stream)
            self._flush()
            return True
        return False

    def end_stream(self, s: _Stream) -> None:
        """Half-close ``s`` (END_STREAM on an empty DATA frame)."""
        if s.sid in self.streams and not self.closed:
            try:
                self.h2.end_stream(s.sid)
            except h2.exceptions.H2Error:
                return
            self._flush()

    async def wait_headers(self, s: _Stream) -> None:
        """Wait (unbounded: the caller bounds it) until the response head of
        ``s`` arrived; raises the stream's error. A wait cut short (timeout,
        cancellation) resets the stream."""
        while s.headers is None:
            if s.error is not None:
                raise s.error
            await self._wait(s, None)

    def body(self, s: _Stream) -> "_H2Body":
        """The response body reader of ``s`` (``read()`` gives the bytes as
        they arrive, acknowledging them to flow control; ``trailers`` is set
        at the end; ``release()`` resets an unfinished stream)."""
        return _H2Body(self, s, None, None)

    async def request(self, client: Any, req: Any, t: Timeout) -> Response:
        if self.closed or not self.has_room():
            raise StaleConnection(True)
        raw_headers, checked, body = client._wire_headers(req, True)
        headers = [(b":method", req.method.encode("ascii")), (b":scheme", self.scheme),
                   (b":authority", self.authority),
                   (b":path", req.url.target.encode("ascii"))]
        for i, (name, value) in enumerate(raw_headers):
            if i >= checked:
                check_header(name, value)
            name = name.lower()
            if name == b"te" and value.lower() != b"trailers":
                continue                # the only TE value HTTP/2 allows
            headers.append((name, value))
        end = req.content is None and body is None or req.content == b""
        h2c = self.h2
        s = self._new_stream(headers, end)
        sid = s.sid
        self._flush()
        sender = None
        if not end:
            if req.content is not None and len(req.content) <= h2c.local_flow_control_window(sid) \
                    and len(req.content) <= h2c.max_outbound_frame_size:
                h2c.send_data(sid, req.content, end_stream=True)
                self._flush()
            else:
                sender = self.loop.create_task(self._sender(s, req.content, body, t))
        try:
            while s.headers is None:
                if s.error is not None:
                    raise s.error
                await self._wait(s, t.read)
        except BaseException:
            if sender is not None:
                sender.cancel()
            raise
        return Response(s.status, headers=s.headers, request=req, http_version="HTTP/2",
                        stream=_H2Body(self, s, t.read, sender), bounds=self.bounds)


class _H2Body(MuxBody):
    """The body of one HTTP/2 response (Response._stream)."""

    __slots__ = ()

    def _take(self, items: List[Any]) -> bytes:
        """The pieces' bytes; their flow-controlled length reopens the
        windows (acknowledged to h2 now that the application has them)."""
        c = self.c
        total = 0
        for _, fl in items:
            total += fl
        if total and not c.closed:
            try:
                c.h2.acknowledge_received_data(total, self.s.sid)
            except h2.exceptions.H2Error:
                pass
            c._flush()
        return items[0][0] if len(items) == 1 else b"".join(d for d, _ in items)
