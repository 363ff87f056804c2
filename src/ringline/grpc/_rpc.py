"""One gRPC call on one stream of ringline.http's HTTP/2 connection.

Owns ``Rpc``: picking a connection with stream room from the channel's pool
(a stream the server refused or left above its GOAWAY goes to another
connection, a few times -- at open, and, for a call whose one request went
with its head, also after it was sent: the server refused it unprocessed,
so it goes again, as grpcio's transparent retry; a call that found its
connection's stream ids used up goes to a new connection, once), the request head (``:path``,
``te: trailers``, content-type, grpc-timeout, grpc-encoding, metadata; with
wait-for-ready a target that refuses the connection is dialled again with a
jittered backoff until the call's deadline), sending framed
messages (flow control is the HTTP/2 layer's), the response head (a
non-200 or trailers-only response is a status at once), reading messages
through a bounded ``Deframer``, and the final status from the trailers.

Lifecycle: ``start()`` opens the stream -> ``send()``* / ``end()`` ->
``head()`` -> ``recv()``* until it returns None (status OK) or raises
``AioRpcError`` -> done. ``abort(code, details)`` at any point resets the
stream (RST_STREAM CANCEL) and fixes the status; nothing after it reaches
the network.

Invariants: every failure leaves as an ``AioRpcError`` (transport errors
map to UNAVAILABLE / INTERNAL / RESOURCE_EXHAUSTED as the gRPC spec maps
them); a stream that does not end cleanly is reset exactly once; the status
is set exactly once.
"""
from __future__ import annotations

import asyncio
import collections
import random
from typing import Any, Awaitable, Deque, List, Optional, Tuple

from .._conn.timers import sleep as _sleep
from ..http._config import Timeout
from ..http._errors import (ConnectError, ConnectTimeout, LimitExceeded, PoolTimeout,
                            RemoteProtocolError, TransportError)
from ..http._h1conn import StaleConnection, StreamIdsExhausted
from ..http._h2conn import ServerClosed
from ._status import AioRpcError, StatusCode, code_of_http, code_of_int
from ._wire import Deframer, decode_message, decode_metadata, encode_timeout, frame

__all__ = ["Rpc"]

_NO_TIMEOUT = Timeout(None)
_STALE_RETRIES = 3
_BACKOFF_FIRST = 0.1           # wait-for-ready redial backoff (x1.6, jittered +-20 %)
_BACKOFF_MAX = 2.0
_RESET_CODES = {"CANCEL": StatusCode.CANCELLED, "REFUSED_STREAM": StatusCode.UNAVAILABLE,
                "ENHANCE_YOUR_CALM": StatusCode.RESOURCE_EXHAUSTED,
                "INADEQUATE_SECURITY": StatusCode.PERMISSION_DENIED}


def map_error(exc: BaseException) -> AioRpcError:
    """The gRPC status for an error of the HTTP/2 layer."""
    if isinstance(exc, AioRpcError):
        return exc
    if isinstance(exc, (StaleConnection, ConnectError, ConnectTimeout, PoolTimeout,
                        ServerClosed)):
        return AioRpcError(StatusCode.UNAVAILABLE, str(exc))
    if isinstance(exc, LimitExceeded):
        return AioRpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, RemoteProtocolError):
        msg = str(exc)
        if "reset the stream (" in msg:
            name = msg.rsplit("(", 1)[1].rstrip(")")
            return AioRpcError(_RESET_CODES.get(name, StatusCode.INTERNAL), msg)
        return AioRpcError(StatusCode.INTERNAL, msg)
    if isinstance(exc, (TransportError, OSError)):
        return AioRpcError(StatusCode.UNAVAILABLE, str(exc))
    return AioRpcError(StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")


def _get(headers: List[Tuple[bytes, bytes]], name: bytes) -> Optional[bytes]:
    for k, v in headers:
        if k == name:
            return v
    return None


_SHAPES_MAX = 64        # block pairs remembered per channel (each within the header bounds)


def _shape(headers: Tuple[Tuple[bytes, bytes], ...],
           trailers: Tuple[Tuple[bytes, bytes], ...]) -> Any:
    """For ``Rpc._whole``: (initial metadata, trailing metadata, details) of
    a response whose head and trailers are these blocks when they are of
    the common shape (a gRPC content-type, no field repeated, no status in
    the head, status OK in the trailers), else False (``recv()`` then says
    what the response is)."""
    head = dict(headers)
    tail = dict(trailers)
    ct = head.get(b"content-type")
    if (len(head) != len(headers) or b"grpc-status" in head or ct is None
            or not ct.startswith(b"application/grpc") or len(tail) != len(trailers)
            or tail.get(b"grpc-status") != b"0"):
        return False
    return (decode_metadata(headers), decode_metadata(trailers),
            decode_message(tail.get(b"grpc-message")))


class Rpc:
    __slots__ = ("channel", "path", "conn", "s", "body", "deframer", "msgs", "initial",
                 "trailing", "code", "details", "compression", "ended_body", "wait_for_ready",
                 "replay", "retries")

    def __init__(self, channel: Any, path: bytes, compression: Optional[str],
                 wait_for_ready: bool = False) -> None:
        self.wait_for_ready = wait_for_ready
        self.channel = channel
        self.path = path
        self.conn: Any = None
        self.s: Any = None
        self.body: Any = None
        self.deframer: Optional[Deframer] = None
        self.msgs: Deque[bytes] = collections.deque()
        self.initial: Tuple[Tuple[str, Any], ...] = ()
        self.trailing: Tuple[Tuple[str, Any], ...] = ()
        self.code: Optional[StatusCode] = None
        self.details: Optional[str] = None
        self.compression = compression
        self.ended_body = False
        # a call whose one request went with its head can be sent again
        # when the server never processed it: (headers, deadline, message)
        self.replay: Optional[Tuple[Any, Optional[float], bytes]] = None
        self.retries = 0

    # -- request --

    def start(self, headers: List[Tuple[bytes, bytes]], timeout: Optional[float],
              first: Optional[bytes] = None) -> Awaitable[None]:
        """Open the stream; with ``first`` the one request message goes with
        the head and the request side is closed (and the call can be sent
        again on another stream if the server refuses it unprocessed:
        ``head()``)."""
        if first is not None:
            deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
            self.replay = (headers, deadline, first)
        return self._open(headers, timeout, first)     # no coroutine of its own

    async def _open(self, headers: List[Tuple[bytes, bytes]], timeout: Optional[float],
                    first: Optional[bytes]) -> None:
        hdrs = list(self.channel._base_headers)
        if timeout is not None:
            hdrs.append((b"grpc-timeout", encode_timeout(timeout)))
        if self.compression:
            hdrs.append((b"grpc-encoding", self.compression.encode()))
        hdrs.extend(headers)
        pool = self.channel._pool
        attempt = 0
        moved = False
        backoff = _BACKOFF_FIRST
        while True:
            try:
                for conn in pool.h2conns:       # a connection with room: no wait
                    if conn.has_room():
                        break
                else:
                    conn = await pool.connection(self.channel._conn_timeout)
                self.conn = conn
                self.s = conn.open_stream(b"POST", self.path, hdrs, flush=first is None)
                if self.channel._ka_time is not None:
                    self.channel._keepalive_start()
            except StreamIdsExhausted:
                # that connection now goes away; a new one has ids
                if moved:
                    raise self._fail(AioRpcError(
                        StatusCode.UNAVAILABLE,
                        "no HTTP/2 stream id left on a new connection either")) from None
                moved = True
                continue
            except StaleConnection as exc:
                attempt += 1
                if attempt > _STALE_RETRIES:
                    raise self._fail(map_error(exc)) from None
                continue
            except (ConnectError, ConnectTimeout) as exc:
                if not self.wait_for_ready or self.channel._closed:
                    raise self._fail(map_error(exc)) from None
                # wait-for-ready: dial again after a backoff (the caller's
                # deadline bounds the whole wait)
                await _sleep(backoff * (0.8 + 0.4 * random.random()))
                backoff = min(backoff * 1.6, _BACKOFF_MAX)
                continue
            except Exception as exc:        # cancellation (deadline) passes through
                raise self._fail(map_error(exc)) from None
            break
        if first is not None:
            try:
                data = frame(first, self.compression)
                sent = self.conn.send_now(self.s, data, True)
            except Exception as exc:
                raise self._fail(map_error(exc)) from None
            if not sent:        # larger than a frame or the window: wait for it
                await self._send(data, True)

    async def send(self, msg: bytes, end: bool = False) -> None:
        try:
            data = frame(msg, self.compression)
        except AioRpcError as exc:
            raise self._fail(exc) from None
        await self._send(data, end)

    async def _send(self, data: bytes, end: bool) -> None:
        try:
            await self.conn.send(self.s, data, _NO_TIMEOUT, end)
        except BaseException as exc:
            if not isinstance(exc, Exception) or self.code is not None:
                raise
            raise self._fail(map_error(exc)) from None

    def end(self) -> None:
        self.conn.end_stream(self.s)

    # -- response --

    async def head(self) -> None:
        if self.body is not None or self.code is not None:
            return
        while True:
            conn = self.conn
            s = self.s
            try:
                await conn.wait_headers(s)
                break
            except AioRpcError:
                raise
            except StaleConnection as exc:
                # refused unprocessed (REFUSED_STREAM, above a GOAWAY's last
                # stream): a call whose request is known goes again on
                # another stream, as grpcio's transparent retry
                if self.replay is None or self.retries >= _STALE_RETRIES or self.code is not None:
                    raise self._fail(map_error(exc)) from None
                self.retries += 1
                headers, deadline, first = self.replay
                left = None if deadline is None else max(0.0, deadline - conn.loop.time())
                await self._open(headers, left, first)
            except Exception as exc:
                raise self._fail(map_error(exc)) from None
        headers = s.headers
        status = s.status
        gs = _get(headers, b"grpc-status")
        if gs is not None and (not s.ended or s.data or s.trailers is not None):
            # Trailers-Only is a head that ends the stream (END_STREAM, as
            # grpcio decides); in any other head grpc-status is no status
            gs = None
        if status != 200 and gs is None:
            self.initial = decode_metadata(headers)
            conn.cancel_stream(s)
            raise self._fail(AioRpcError(code_of_http(status),
                                         f"HTTP status {status} without grpc-status",
                                         self.initial))
        if gs is not None:              # trailers-only: the head is the status
            self.body = conn.body(s)
            self.ended_body = True
            self._status(headers)
            return
        ct = _get(headers, b"content-type") or b""
        if not ct.startswith(b"application/grpc"):
            conn.cancel_stream(s)
            raise self._fail(AioRpcError(StatusCode.UNKNOWN,
                                         f"invalid content-type {ct.decode('latin-1')!r}"))
        self.initial = decode_metadata(headers)
        self.deframer = Deframer(self.channel._max_recv, _get(headers, b"grpc-encoding"))
        self.body = conn.body(s)

    async def recv(self) -> Optional[bytes]:
        """The next response message, or None once the call ended with OK."""
        msgs = self.msgs
        while not msgs:
            if self.ended_body:
                if self.code is not StatusCode.OK and self.code is not None:
                    raise self._error()
                return None
            if self.body is None:
                await self.head()
                continue
            try:
                data = await self.body.read()
            except AioRpcError:
                raise
            except Exception as exc:
                raise self._fail(map_error(exc)) from None
            if data is None:
                self.ended_body = True
                if self.deframer is not None and self.deframer.partial():
                    raise self._fail(AioRpcError(StatusCode.INTERNAL,
                                                 "the stream ended inside a message"))
                tr = self.body.trailers
                if tr is None:
                    raise self._fail(AioRpcError(StatusCode.INTERNAL,
                                                 "the stream ended without trailers"))
                self._status(tr)
                continue
            try:
                msgs.extend(self.deframer.feed(data))   # type: ignore[union-attr]
            except AioRpcError as exc:
                self.reset()
                raise self._fail(exc) from None
        return msgs.popleft()

    async def unary(self) -> bytes:
        """The one message of a unary response. The common case -- the head,
        one uncompressed message in one DATA frame and trailers with status
        OK all arrived in the batch that woke the call -- is taken in one
        step; anything else (and any error) goes through ``recv()``."""
        s = self.s
        if self.body is None and self.code is None and s is not None:
            loop = self.conn.loop
            while s.headers is None and s.error is None:
                # a wait cut short resets the stream (the caller's abort)
                fut = s.waiter = loop.create_future()
                await fut
            if s.ended and s.error is None and s.status == 200 and s.trailers is not None:
                msg = self._whole(s)
                if msg is not None:
                    return msg
        msg = await self.recv()
        if msg is None:
            raise self._fail(AioRpcError(StatusCode.UNIMPLEMENTED,
                                         "the server sent no response message"))
        if await self.recv() is not None:
            self.reset()
            raise self._fail(AioRpcError(StatusCode.UNIMPLEMENTED,
                                         "the server sent more than one response message"))
        return msg

    def _whole(self, s: Any) -> Optional[bytes]:
        """The message of an ended stream in the common shape, taken (flow
        control credited, metadata and status set); None, touching
        nothing, when the stream has any other shape. The verdict on a
        pair of header and trailer blocks (and the metadata they carry) is
        remembered per channel: a server sends the same few pairs."""
        data = s.data
        if len(data) != 1:
            return None
        d, flow = data[0]
        n = len(d) - 5
        if n < 0 or d[0] or int.from_bytes(d[1:5], "big") != n or n > self.channel._max_recv:
            return None
        shapes = self.channel._shapes
        key = (tuple(s.headers), tuple(s.trailers))
        shape = shapes.get(key)
        if shape is None:
            shape = _shape(*key)
            if len(shapes) >= _SHAPES_MAX:
                shapes.clear()
            shapes[key] = shape
        if shape is False:
            return None
        s.data = []
        conn = self.conn
        if not conn.closed and conn.h2.acknowledge_received_data(flow, s.sid):
            conn._flush()           # a WINDOW_UPDATE was queued
        self.initial, self.trailing, self.details = shape
        self.ended_body = True
        self.code = StatusCode.OK
        return d[5:]

    def _status(self, trailers: List[Tuple[bytes, bytes]]) -> None:
        gs = _get(trailers, b"grpc-status")
        self.trailing = decode_metadata(trailers)
        if gs is None:                  # UNKNOWN, as grpcio ("No status received")
            raise self._fail(AioRpcError(StatusCode.UNKNOWN, "missing grpc-status",
                                         self.initial, self.trailing))
        try:
            if not gs.isdigit():        # ASCII digits only: int() also takes "+0", "0_0"
                raise ValueError(gs)
            code = code_of_int(int(gs))
        except ValueError:
            code = StatusCode.UNKNOWN
        self.code = code
        self.details = decode_message(_get(trailers, b"grpc-message"))
        if code is not StatusCode.OK:
            raise self._error()

    def _error(self) -> AioRpcError:
        return AioRpcError(self.code, self.details, self.initial,   # type: ignore[arg-type]
                           self.trailing)

    def _fail(self, exc: AioRpcError) -> AioRpcError:
        if self.code is None:
            self.code = exc.code()
            self.details = exc.details()
            self.ended_body = True
            if not exc.initial_metadata() and self.initial:
                exc = AioRpcError(exc.code(), exc.details(), self.initial, self.trailing)
        return exc

    def reset(self) -> None:
        """RST_STREAM (CANCEL) unless the stream already ended."""
        if self.s is not None and self.conn is not None:
            self.conn.cancel_stream(self.s)

    def abort(self, code: StatusCode, details: str) -> AioRpcError:
        """End the call here with ``code`` (deadline, cancellation)."""
        err = AioRpcError(code, details, self.initial, self.trailing)
        s = self.s
        if s is not None and s.error is None and not s.ended:
            s.error = err           # wakes a reader of this call in another task
            s.wake()
        self.reset()
        if self.code is None:
            self.code = code
            self.details = details
            self.ended_body = True
        return err
