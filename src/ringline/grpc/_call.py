"""The call objects of ringline.grpc, shaped like grpc.aio's: what a
multi-callable returns.

Owns ``UnaryUnaryCall`` and ``StreamUnaryCall`` (awaitable: the response
message), ``UnaryStreamCall`` and ``StreamStreamCall`` (async iterators and
``read()`` -> message or ``EOF``), the request-side ``write()`` /
``done_writing()`` of the stream-request calls, and for all of them
``cancel()``, ``cancelled()``, ``done()``, ``time_remaining()``,
``add_done_callback()`` and the awaitable ``initial_metadata()``,
``trailing_metadata()``, ``code()`` and ``details()``.

Lifecycle: a call is created by a multi-callable and starts its RPC when it
is first awaited, read or written (in the task doing so); it is done when
the RPC has a status. Every wait runs under the call's deadline: when the
deadline passes the stream is reset (RST_STREAM) and the call raises
``AioRpcError(DEADLINE_EXCEEDED)``; ``cancel()`` resets the stream and the
waiting task sees ``asyncio.CancelledError``, as with grpc.aio.

Invariants: the status is fixed once (the first of: trailers, a local
failure, the deadline, cancel()); done callbacks run once, after it; a
request iterator runs in a task of the call that never outlives the call.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, List, Optional

from .._conn.timers import timeout_at as _timeout_at
from ._rpc import Rpc
from ._status import AioRpcError, StatusCode

__all__ = ["UnaryUnaryCall", "UnaryStreamCall", "StreamUnaryCall", "StreamStreamCall", "EOF"]


class _EOF:
    def __repr__(self) -> str:
        return "<grpc EOF>"

    def __bool__(self) -> bool:
        return False


EOF: Any = _EOF()
_UNSET: Any = object()


class _Call:
    __slots__ = ("_rpc", "_ser", "_deser", "_timeout", "_deadline", "_headers", "_cancelled",
                 "_task", "_callbacks", "_started", "_loop", "_sender", "_finished")

    def __init__(self, channel: Any, path: bytes, ser: Optional[Callable],
                 deser: Optional[Callable], timeout: Optional[float], headers: List,
                 compression: Optional[str], wait_for_ready: bool = False) -> None:
        self._rpc = Rpc(channel, path, compression, wait_for_ready)
        self._ser = ser             # None: requests and responses are bytes
        self._deser = deser
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._deadline = None if timeout is None else self._loop.time() + timeout
        self._headers = headers
        self._cancelled = False
        self._task: Optional[asyncio.Task] = None
        self._callbacks: Optional[List[Callable]] = None
        self._started = False
        self._sender: Optional[asyncio.Task] = None
        self._finished: Optional[asyncio.Future] = None

    # -- the deadline around each wait --

    async def _op(self, fn: Callable, *args: Any) -> Any:
        if self._rpc.code is not None and self._rpc.code is not StatusCode.OK:
            if self._cancelled:
                raise asyncio.CancelledError()      # as grpc.aio: a cancelled call
            raise self._rpc._error()
        try:
            if self._deadline is None:
                return await fn(*args)
            async with _timeout_at(self._deadline):
                return await fn(*args)
        except (TimeoutError, asyncio.CancelledError, AioRpcError) as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: BaseException) -> BaseException:
        """What a wait of the call that raised ``exc`` raises: the deadline
        (TimeoutError) ends the call with DEADLINE_EXCEEDED, a cancellation
        ends it CANCELLED (and is raised again), an AioRpcError ends it."""
        if isinstance(exc, TimeoutError):
            if self._rpc.code is not None:
                return exc
            return self._finish(self._rpc.abort(StatusCode.DEADLINE_EXCEEDED,
                                                "Deadline Exceeded"))
        if isinstance(exc, asyncio.CancelledError):
            self._cancelled = True
            self._finish(self._rpc.abort(StatusCode.CANCELLED,
                                         "Locally cancelled by application!"))
            return exc
        return self._finish(exc)

    def _finish(self, exc: Any = None) -> Any:
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
        f = self._finished
        if f is not None and not f.done():
            f.set_result(None)
        cbs, self._callbacks = self._callbacks, None
        if cbs:
            for cb in cbs:
                self._loop.call_soon(cb, self)
        return exc

    def _serialize(self, request: Any) -> bytes:
        try:
            ser = self._ser
            return request if ser is None else ser(request)
        except AioRpcError as exc:
            raise self._finish(self._rpc.abort(exc.code(), exc.details() or "")) from None
        except Exception as exc:
            raise self._finish(self._rpc.abort(StatusCode.INTERNAL,
                                               f"Exception serializing request! ({exc!r})"))

    def _deserialize(self, data: bytes) -> Any:
        try:
            deser = self._deser
            return data if deser is None else deser(data)
        except Exception as exc:
            raise self._finish(self._rpc.abort(StatusCode.INTERNAL,
                                               f"Exception deserializing response! ({exc!r})"))

    def _time_left(self) -> Optional[float]:
        return None if self._deadline is None else self._deadline - self._loop.time()

    async def _start(self, first: Any = _UNSET) -> None:
        self._started = True
        if self._task is None:
            self._task = asyncio.current_task()
        payload = None if first is _UNSET else self._serialize(first)
        await self._rpc.start(self._headers, self._time_left(), payload)

    # -- grpc.aio's Call interface --

    def cancel(self) -> bool:
        if self.done():
            return False
        self._cancelled = True
        self._finish(self._rpc.abort(StatusCode.CANCELLED, "Locally cancelled by application!"))
        t = self._task
        if t is not None and t is not asyncio.current_task() and not t.done():
            t.cancel()
        return True

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._rpc.code is not None

    def time_remaining(self) -> Optional[float]:
        left = self._time_left()
        return None if left is None else max(0.0, left)

    def add_done_callback(self, callback: Callable) -> None:
        if self.done():
            self._loop.call_soon(callback, self)
        else:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(callback)

    async def _wait_done(self) -> None:
        if self.done():
            return
        if self._finished is None:
            self._finished = self._loop.create_future()
        await self._finished

    async def initial_metadata(self) -> Any:
        if self._rpc.body is None and not self.done():
            if not self._started:
                await self._begin()
            try:
                await self._op(self._rpc.head)
            except AioRpcError:
                pass
        return self._rpc.initial

    async def trailing_metadata(self) -> Any:
        await self._wait_done()
        return self._rpc.trailing

    async def code(self) -> StatusCode:
        await self._wait_done()
        return self._rpc.code   # type: ignore[return-value]

    async def details(self) -> Optional[str]:
        await self._wait_done()
        return self._rpc.details

    async def _begin(self) -> None:
        raise NotImplementedError

    async def wait_for_connection(self) -> None:
        if not self._started:
            await self._begin()


class _UnaryResponse(_Call):
    """Awaitable for the one response message."""
    __slots__ = ("_result", "_busy")
    _one_request = False        # a request message in the call (unary-unary)

    def _init_result(self) -> None:
        self._result: Any = _UNSET
        self._busy = False          # a task is awaiting the response

    def __await__(self) -> Any:
        return self._await().__await__()

    async def _await(self) -> Any:
        if self._result is not _UNSET:
            return self._result
        rpc = self._rpc
        code = rpc.code
        if code is not None and code is not StatusCode.OK:
            if self._cancelled:
                raise asyncio.CancelledError()
            raise rpc._error()
        if self._busy:
            # another task awaits the call: its outcome is this one's too
            # (the stream has one reader)
            if not self.done():
                if self._finished is None:
                    self._finished = self._loop.create_future()
                await asyncio.shield(self._finished)
            if self._result is not _UNSET:
                return self._result
            if self._cancelled:
                raise asyncio.CancelledError()
            raise rpc._error()
        self._busy = True
        self._task = asyncio.current_task()
        try:
            if self._deadline is None and not self._started and self._one_request:
                # the common call in one step: _op's guard without a
                # deadline, _invoke and _start inline
                self._started = True
                try:
                    await rpc.start(self._headers, None, self._serialize(self._request))
                    msg = await rpc.unary()
                except (asyncio.CancelledError, AioRpcError) as exc:
                    raise self._failed(exc) from None
                result = self._deserialize(msg)
            else:
                result = await self._op(self._invoke)
        finally:
            self._busy = False
        self._result = result
        self._finish()
        return result

    async def _invoke(self) -> Any:
        if not self._started:
            await self._begin_inner()
        return self._deserialize(await self._rpc.unary())

    async def _begin(self) -> None:
        await self._op(self._begin_inner)

    async def _begin_inner(self) -> None:
        raise NotImplementedError


class _StreamResponse(_Call):
    """Async iterator / read() of the response messages."""
    __slots__ = ()

    async def read(self) -> Any:
        if not self._started:
            await self._begin()
        msg = await self._op(self._rpc.recv)
        if msg is None:
            self._finish()
            return EOF
        return self._deserialize(msg)

    def __aiter__(self) -> Any:
        return self._iter()

    async def _iter(self) -> Any:
        while True:
            msg = await self.read()
            if msg is EOF:
                return
            yield msg

    async def _begin(self) -> None:
        await self._op(self._begin_inner)

    async def _begin_inner(self) -> None:
        raise NotImplementedError


class _RequestStream:
    """The request side of stream-request calls: an iterator drained by a
    task of the call, or write() / done_writing()."""
    __slots__ = ()

    def _init_requests(self, request_iterator: Any) -> None:
        self._requests = request_iterator   # type: ignore[attr-defined]

    async def _begin_inner(self) -> None:
        await self._start()     # type: ignore[attr-defined]
        if self._requests is not None:     # type: ignore[attr-defined]
            self._sender = asyncio.get_running_loop().create_task(   # type: ignore[attr-defined]
                self._send_all())

    async def _send_all(self) -> None:
        rpc = self._rpc   # type: ignore[attr-defined]
        it = self._requests   # type: ignore[attr-defined]
        try:
            if hasattr(it, "__aiter__"):
                async for r in it:
                    await rpc.send(self._serialize(r))   # type: ignore[attr-defined]
            else:
                for r in it:
                    await rpc.send(self._serialize(r))   # type: ignore[attr-defined]
            rpc.end()
        except (asyncio.CancelledError, AioRpcError):
            pass
        except Exception as exc:
            self._finish(rpc.abort(StatusCode.UNKNOWN,   # type: ignore[attr-defined]
                                   f"the request iterator raised {exc!r}"))

    async def write(self, request: Any) -> None:
        if self._requests is not None:     # type: ignore[attr-defined]
            raise RuntimeError("write() on a call made with a request iterator")
        if not self._started:   # type: ignore[attr-defined]
            await self._begin()   # type: ignore[attr-defined]
        await self._op(self._rpc.send, self._serialize(request))   # type: ignore[attr-defined]

    async def done_writing(self) -> None:
        if self._requests is not None:     # type: ignore[attr-defined]
            raise RuntimeError("done_writing() on a call made with a request iterator")
        if not self._started:   # type: ignore[attr-defined]
            await self._begin()   # type: ignore[attr-defined]
        if not self.done():   # type: ignore[attr-defined]
            self._rpc.end()   # type: ignore[attr-defined]


class UnaryUnaryCall(_UnaryResponse):
    __slots__ = ("_request",)
    _one_request = True

    def __init__(self, request: Any, *args: Any) -> None:
        super().__init__(*args)
        self._request = request
        self._init_result()

    async def _begin_inner(self) -> None:
        await self._start(self._request)


class UnaryStreamCall(_StreamResponse):
    __slots__ = ("_request",)

    def __init__(self, request: Any, *args: Any) -> None:
        super().__init__(*args)
        self._request = request

    async def _begin_inner(self) -> None:
        await self._start(self._request)


class StreamUnaryCall(_RequestStream, _UnaryResponse):
    __slots__ = ("_requests",)

    def __init__(self, request_iterator: Any, *args: Any) -> None:
        _UnaryResponse.__init__(self, *args)
        self._init_requests(request_iterator)
        self._init_result()


class StreamStreamCall(_RequestStream, _StreamResponse):
    __slots__ = ("_requests",)

    def __init__(self, request_iterator: Any, *args: Any) -> None:
        _StreamResponse.__init__(self, *args)
        self._init_requests(request_iterator)
