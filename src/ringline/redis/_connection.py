"""One Redis connection: the Conn, the FIFO of waiters, the reader task and
the reply parsers (the I/O glue under `Client`).

Owns: `_Connection` (sending encoded commands, matching replies to waiters,
failing them all when the connection fails), the FIFO waiters beyond plain
futures (`_Batch` for pipelines, `_FireQueue` for fire/recv), the hiredis
reader choice and `open_connection` (dial + handshake).

Lifecycle of a connection (``_Connection``): ringline.connect (or
connect_tls / connect_unix) -> handshake (HELLO 3 or AUTH, CLIENT SETNAME,
SELECT, all pipelined in one write) -> open: every command is encoded,
queued with ``conn.send_nowait`` (the loop writes everything queued in one
iteration together: that *is* the automatic pipelining of concurrent tasks)
and its waiter appended to a FIFO; one reader task per connection loops on
``conn.with_bytes(on_data)``, and on_data parses every complete reply in the
receive buffer and resolves the FIFO's waiters in order -> failed (EOF,
socket error, protocol error, client close): the conn is aborted and every
waiter still in the FIFO fails with the same ``RedisConnectionError`` (or
``ProtocolError``, naming the problem). A ``Client`` whose connection failed
dials again on its next command (lazy reconnect); the failed commands are
not retried (they may have run).

Invariants: replies are matched to waiters strictly in order; a waiter that
timed out or was cancelled stays in the FIFO and its reply is discarded when
it arrives, so the stream never desynchronises; nothing waits without a
bound once the connection has failed; a single command larger than the
native send queue limit is refused with ValueError instead of dropping the
connection, and commands above ``_BIG_COMMAND`` wait for room in the send
queue instead of overflowing it.

Zero copy: on_data reads headers from a bytes copy of at most ``_WINDOW``
bytes of the receive buffer, and bulk strings of at least ``zero_copy_min``
bytes come back as read-only memoryview slices of the receive buffer itself
(``with_bytes`` keeps it valid for as long as the slice lives), so a large
GET is never copied after it arrives.

Parser choice, measured here (CPython 3.11, 2-core VM): replies of a 64-byte
GET, 100 per buffer, parsed in a loop: our pure-Python fast path about 7,500
instructions per reply (callgrind; 0.67 us on an idle core), hiredis.Reader
(feed + gets) about 1,800 (0.12 us). End to end, 50 tasks doing GET of 64 B
on one connection over io_uring: 12,100 instructions per command with
hiredis, 17,400 with our parser (callgrind, client process only), i.e. about
30% less CPU per command. So the default (``parser="auto"``) is hiredis
for RESP2 when it is installed, except that our parser takes a reply whose
bulk string of at least ``zero_copy_min`` bytes starts the receive buffer
(hiredis would copy it twice) and every RESP3 connection (hiredis returns
sets as lists and big numbers as bytes, and cannot tell an attribute from a
reply). ``parser="python"`` uses our parser always; ``parser="hiredis"``
requires hiredis (RESP2 only). Either way hiredis, which cannot be bounded
from outside (it preallocates announced arrays and keeps a partial reply's
objects), is only fed complete replies that the native scanner
``redis._scan.vetted_end`` vouches for: well formed, within every limit
knob of our parser with the same accounting; the first reply it does not
vouch for (incomplete at arrival, malformed, over a limit, a big bulk at the
front) goes to our parser, which parses it or raises the ProtocolError
naming the knob. hiredis thus never holds a partial reply, and both paths
give the same values and errors.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Any, List, Optional, Tuple

from .._conn import api as _native
from .._errors import ConnectionClosed, ConnectionDropped
from .._conn.api import limits
from ._errors import (ProtocolError, RedisConnectionError, RedisError, RedisTimeoutError,
                      ResponseError, error_from_reply)
from ._options import Options
from ._resp import NEED_MORE, Push, encode_command
from ._scan import vetted_end as _vetted_end

__all__ = ["open_connection"]

_Future = asyncio.Future
_InvalidState = asyncio.InvalidStateError
_WINDOW = 256 << 10           # header window copied per receive callback
_BIG_COMMAND = 256 << 10      # commands above this wait for send-queue room
_need_at_least = _native.need_at_least


# -- waiters of the FIFO beyond plain futures ---------------------------------


class _Batch:
    """One pipeline's waiter: it sits in the FIFO once per command and
    collects the replies (errors as values) into one future."""

    __slots__ = ("fut", "replies", "n")

    def __init__(self, fut: asyncio.Future, n: int) -> None:
        self.fut = fut
        self.replies: list = []
        self.n = n

    def set_result(self, value: Any) -> None:
        replies = self.replies
        replies.append(value)
        if len(replies) == self.n and not self.fut.done():
            self.fut.set_result(replies)

    set_exception = set_result


class _FireQueue:
    """The fire/recv waiter: in the FIFO once per fired command; pairs each
    reply with its tag, in order, for recv()."""

    __slots__ = ("tags", "results", "waiter")

    def __init__(self) -> None:
        self.tags: collections.deque = collections.deque()
        self.results: collections.deque = collections.deque()
        self.waiter: Optional[asyncio.Future] = None

    def set_result(self, value: Any) -> None:
        self.results.append((self.tags.popleft(), value))
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    set_exception = set_result


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


def _conn_limits(loop: Any) -> Tuple[int, int]:
    """(max_send_queue, recv_accumulator_cap) of this loop's connections."""
    lim = limits(loop)
    return lim["max_send_queue"], lim["recv_accumulator_cap"]


# -- one connection ---------------------------------------------------------


class _Connection:
    """One open connection: the Conn, the FIFO of waiters, the reader task
    and the parser (see the module docstring for the lifecycle)."""

    __slots__ = ("conn", "loop", "pending", "parser", "opts", "error", "reader", "name",
                 "zc_min", "window", "max_send", "recv_cap", "_on_data_fn", "_drain",
                 "pushes_dropped", "_hreader", "fast", "__weakref__")

    def __init__(self, conn: Any, loop: Any, opts: Options) -> None:
        self.conn = conn
        self.loop = loop
        self.opts = opts
        self.name = f"redis {opts.address_text}"
        self.pending: collections.deque = collections.deque()
        self.parser = opts._parser()
        self.zc_min = opts.zero_copy_min
        self.window = max(_WINDOW, opts.max_line + 64)
        self.max_send, self.recv_cap = _conn_limits(loop)
        self.error: Optional[BaseException] = None
        # open and without a command timeout: Client._dispatch may inline call()
        self.fast = opts.command_timeout is None
        self._drain: Optional[asyncio.Future] = None
        self.pushes_dropped = 0
        self._hreader = None
        hiredis = _hiredis_module() if opts.parser != "python" and opts.protocol == 2 else None
        if opts.parser == "hiredis" and hiredis is None:
            raise RedisError("parser='hiredis' needs the hiredis package")
        if hiredis is not None:
            self._hreader = hiredis.Reader(replyError=_hiredis_error,
                                           protocolError=_hiredis_protocol_error)
            self._on_data_fn = self._on_data_hiredis
        else:
            self._on_data_fn = self._on_data
        self.reader = loop.create_task(self._read_loop())

    # -- sending --

    @property
    def alive(self) -> bool:
        return self.error is None

    def _dead(self) -> RedisConnectionError:
        err = self.error
        if isinstance(err, RedisConnectionError):
            new = type(err)(str(err))
        else:
            new = RedisConnectionError(f"{self.name}: connection is closed")
        new.__cause__ = err
        return new

    def _lost(self, exc: BaseException) -> RedisConnectionError:
        """Queueing a command found the Conn closed or dropped: fail the
        connection; the error to raise to the caller."""
        self.fail(RedisConnectionError(f"{self.name}: {exc}"))
        return self._dead()

    def _expect(self, fut: asyncio.Future, batch: Optional[_Batch]) -> None:
        """A command (or a batch of n) was queued: its waiter joins the FIFO
        (a batch once per command) and its timeout is armed."""
        if batch is None:
            self.pending.append(fut)
        else:
            self.pending.extend([batch] * batch.n)
        if self.opts.command_timeout is not None:
            self._arm_timeout(fut)

    def _queue(self, data: bytes, fut: asyncio.Future, batch: Optional[_Batch]) -> Any:
        if len(data) > _BIG_COMMAND:
            return self._call_big(data, fut, batch)
        try:
            self.conn.send_nowait(data)
        except (ConnectionClosed, ConnectionDropped) as exc:
            raise self._lost(exc) from None
        self._expect(fut, batch)
        return fut

    def call(self, data: bytes) -> Any:
        """Queue one encoded command; an awaitable of its reply."""
        if self.error is not None:
            raise self._dead()
        return self._queue(data, _Future(loop=self.loop), None)

    def call_batch(self, data: bytes, n: int) -> Any:
        """Queue n encoded commands at once; an awaitable of the list of their
        replies (error replies as values)."""
        if self.error is not None:
            raise self._dead()
        fut = _Future(loop=self.loop)
        return self._queue(data, fut, _Batch(fut, n))

    def fire(self, data: bytes, fq: _FireQueue, tag: Any) -> None:
        if self.error is not None:
            raise self._dead()
        try:
            self.conn.send_nowait(data)
        except (ConnectionClosed, ConnectionDropped) as exc:
            raise self._lost(exc) from None
        fq.tags.append(tag)
        self.pending.append(fq)

    def _arm_timeout(self, fut: asyncio.Future) -> None:
        timeout = self.opts.command_timeout
        name = self.name

        def expire() -> None:
            if not fut.done():
                fut.set_exception(RedisTimeoutError(
                    f"{name}: no reply within command_timeout ({timeout} s)"))

        handle = self.loop.call_later(timeout, expire)
        fut.add_done_callback(lambda _f: handle.cancel())

    async def _wait_room(self, n: int) -> None:
        if n > self.max_send:
            raise ValueError(f"a command of {n} bytes exceeds the connection's send queue "
                             f"limit (max_send_queue = {self.max_send} bytes; raise it with "
                             "ringline._conn.api.configure)")
        conn = self.conn
        while self.error is None and conn.send_queue_bytes + n > self.max_send:
            drain = self._drain
            if drain is not None and not drain.done():
                await asyncio.shield(drain)
            else:
                # queued by send_nowait: it drains as the loop flushes
                await asyncio.sleep(0.0005)
        if self.error is not None:
            raise self._dead()

    async def _call_big(self, data: bytes, fut: asyncio.Future, batch: Optional[_Batch]) -> Any:
        await self._wait_room(len(data))
        try:
            sent = self.conn.send(data)
        except (ConnectionClosed, ConnectionDropped) as exc:
            raise self._lost(exc) from None
        sent.add_done_callback(_retrieve)
        self._drain = sent
        self._expect(fut, batch)
        return await fut

    async def call_guarded(self, prefix: bytes, obj: Any, suffix: bytes, size: int) -> Any:
        """One command whose large argument obj is sent in place (zero-copy
        above the loop's threshold), framed by the prefix and suffix bytes."""
        if self.error is not None:
            raise self._dead()
        await self._wait_room(len(prefix) + size + len(suffix))
        fut = _Future(loop=self.loop)
        try:
            sent = self.conn.send_parts().copy(prefix).guard(obj).copy(suffix).submit()
        except (ConnectionClosed, ConnectionDropped) as exc:
            raise self._lost(exc) from None
        sent.add_done_callback(_retrieve)
        self._drain = sent
        self._expect(fut, None)
        reply = await fut
        if not sent.done():
            await asyncio.shield(sent)      # obj stays guarded until the kernel is done
        return reply

    # -- receiving --

    async def _read_loop(self) -> None:
        conn = self.conn
        fn = self._on_data_fn
        try:
            while True:
                if not await conn.with_bytes(fn):
                    raise RedisConnectionError(f"{self.name}: server closed the connection")
        except asyncio.CancelledError:
            self.fail(RedisConnectionError(f"{self.name}: connection closed by the client"))
        except RedisConnectionError as exc:
            self.fail(exc)
        except (ConnectionError, OSError) as exc:
            self.fail(RedisConnectionError(f"{self.name}: {exc}"))
        except BaseException as exc:          # a bug: still never leave waiters hanging
            err = RedisConnectionError(f"{self.name}: reply handling failed: {exc!r}")
            err.__cause__ = exc
            self.fail(err)
            if not isinstance(exc, Exception):
                raise

    def _need(self, pos: int, want: int) -> Any:
        if pos > 0:
            return pos
        if want > 1:
            if want > self.recv_cap:
                raise ProtocolError(
                    f"a reply needs {want} bytes buffered, more than the "
                    f"connection's recv_accumulator_cap ({self.recv_cap} bytes); raise it "
                    "with ringline._conn.api.configure(loop, recv_accumulator_cap=...)")
            return _need_at_least(want)
        if want == 0:                               # cannot happen: window > max_line
            raise ProtocolError("reply header does not fit the parse window")
        return 0

    def _on_data(self, view: memoryview) -> Any:
        n = len(view)
        data = view.tobytes() if n <= self.window else view[:self.window].tobytes()
        limit = len(data)
        pos = 0
        parser = self.parser
        popleft = self.pending.popleft
        zc = self.zc_min
        try:
            if parser._stack:
                value, pos = parser.parse_at(data, 0, view, n)
                if value is NEED_MORE:
                    return self._need(pos, parser.want)
                self._deliver(value)
            while pos < limit:
                t = data[pos]
                if t == 36:                                 # $ bulk string
                    e = data.find(b"\r\n", pos + 1, pos + 24)
                    if e > 0:
                        s = data[pos + 1:e]
                        if s.isdigit():
                            start = e + 2
                            end = start + int(s)
                            if (end + 2 <= limit and end - start < zc and data[end] == 13
                                    and data[end + 1] == 10):
                                pos = end + 2
                                try:
                                    popleft().set_result(data[start:end])
                                except _InvalidState:
                                    pass
                                continue
                elif t == 43:                               # + simple string
                    e = data.find(b"\r\n", pos + 1, pos + 4096)
                    if e > 0:
                        value = data[pos + 1:e]
                        if 10 in value or 13 in value:     # the parser names it
                            value, new = parser.parse_at(data, pos, view, n)
                        pos = e + 2
                        try:
                            popleft().set_result(value)
                        except _InvalidState:
                            pass
                        continue
                elif t == 58:                               # : integer
                    e = data.find(b"\r\n", pos + 1, pos + 24)
                    if e > 0:
                        s = data[pos + 1:e]
                        if s.isdigit():
                            pos = e + 2
                            value = int(s)
                            try:
                                popleft().set_result(value)
                            except _InvalidState:
                                pass
                            continue
                # every other case (and every malformed one) in the full parser
                value, new = parser.parse_at(data, pos, view, n)
                if value is NEED_MORE:
                    return self._need(new, parser.want)
                pos = new
                self._deliver(value)
        except IndexError:
            raise ProtocolError(f"{self.name}: the server sent a reply while no command was "
                                "waiting for one") from None
        except ProtocolError as exc:
            raise ProtocolError(f"{self.name}: {exc}") from None
        return pos

    def _deliver(self, value: Any) -> None:
        if type(value) is Push:
            on_push = self.opts.on_push
            if on_push is None:
                self.pushes_dropped += 1
                return
            try:
                on_push(value)
            except Exception as exc:      # the callback's bug must not kill the connection
                self.loop.call_exception_handler({
                    "message": f"{self.name}: on_push callback failed",
                    "exception": exc,
                })
            return
        waiter = self.pending.popleft()
        try:
            if isinstance(value, ResponseError):
                waiter.set_exception(value)
            else:
                waiter.set_result(value)
        except _InvalidState:
            pass

    def _on_data_hiredis(self, view: memoryview) -> Any:
        # hiredis only ever gets complete replies that redis._scan vouches
        # for (well formed, RESP2, within every parser limit, not a big bulk
        # at the front); the first reply it does not vouch for (incomplete,
        # unusual, malformed, over a limit) goes to our parser, which parses
        # it, zero-copy for a big bulk, or raises the ProtocolError naming
        # the problem. So hiredis never holds a partial reply and a peer
        # cannot make it allocate beyond the parser's bounds.
        parser = self.parser
        if parser._stack:
            return self._on_data(view)
        end = _vetted_end(view, parser.max_depth, parser.max_elements, parser.max_bulk,
                          parser.max_line, parser.max_reply_bytes, self.zc_min)
        if not end:
            return self._on_data(view)
        reader = self._hreader
        reader.feed(view, 0, end)
        gets = reader.gets
        popleft = self.pending.popleft
        try:
            while True:
                value = gets()
                if value is False:
                    break
                try:
                    if isinstance(value, ResponseError):
                        popleft().set_exception(value)
                    else:
                        popleft().set_result(value)
                except _InvalidState:
                    pass
        except IndexError:
            raise ProtocolError(f"{self.name}: the server sent a reply while no command was "
                                "waiting for one") from None
        except ProtocolError as exc:
            raise ProtocolError(f"{self.name}: {exc}") from None
        if reader.has_data():         # cannot happen: it was given whole replies
            raise ProtocolError(f"{self.name}: hiredis kept part of a vetted reply")
        return end

    # -- failing and closing --

    def fail(self, exc: BaseException) -> None:
        """Mark the connection failed, abort the socket and fail every waiter."""
        self.fast = False
        if self.error is None:
            self.error = exc
        # Stop the reader task first: cancelling unparks its with_bytes wait
        # through call_soon, whereas aborting a conn with a parked reader
        # wakes that task synchronously, which fails when another task (the
        # one calling us) is running.
        reader = self.reader
        if reader is not None and reader is not asyncio.current_task() and not reader.done():
            reader.cancel()
        try:
            self.conn.abort()
        except Exception:                              # pragma: no cover
            pass
        pending = self.pending
        while pending:
            waiter = pending.popleft()
            try:
                waiter.set_exception(exc)
            except _InvalidState:
                pass

    async def close(self) -> None:
        if self.error is None:
            self.fail(RedisConnectionError(f"{self.name}: connection closed by the client"))
        reader = self.reader
        if reader is not None and reader is not asyncio.current_task():
            try:
                await reader
            except BaseException:
                pass


_HIREDIS: Any = None


def _hiredis_module() -> Any:
    global _HIREDIS          # a cached import, not state: the same for every loop
    if _HIREDIS is None:
        try:
            import hiredis
        except ImportError:
            hiredis = False
        _HIREDIS = hiredis
    return _HIREDIS or None


def _hiredis_error(message: str) -> ResponseError:
    return error_from_reply(message)


def _hiredis_protocol_error(message: str) -> ProtocolError:
    return ProtocolError(f"invalid RESP reply: {message}")


# -- opening a connection -----------------------------------------------------


async def open_connection(opts: Options) -> _Connection:
    """Dial, handshake and return an open _Connection (bounded by
    connect_timeout)."""
    loop = asyncio.get_running_loop()
    try:
        if opts.connect_timeout is None:
            return await _open(loop, opts)
        async with asyncio.timeout(opts.connect_timeout):
            return await _open(loop, opts)
    except TimeoutError as exc:
        if isinstance(exc, RedisTimeoutError):
            raise
        raise RedisTimeoutError(f"redis {opts.address_text}: connect and handshake took "
                                f"longer than connect_timeout ({opts.connect_timeout} s)") from None


async def _open(loop: Any, opts: Options) -> _Connection:
    where = opts.address_text
    try:
        if opts.path:
            conn = await _native.connect_unix(opts.path)
        elif opts.ssl is not None:
            try:
                from ringline._conn import tls as _tls  # the TLS layer may be missing
            except ImportError as exc:
                raise RedisConnectionError(f"redis {where}: TLS is not available in this "
                                           f"ringline build ({exc})") from None
            conn = await _tls.connect_tls((opts.host, opts.port), ssl_context=opts.ssl,
                                           server_hostname=opts.server_hostname or opts.host)
        else:
            conn = await _native.connect((opts.host, opts.port))
    except RedisError:
        raise
    except TimeoutError:
        raise
    except (OSError, ConnectionError) as exc:
        raise RedisConnectionError(f"redis {where}: connect failed: {exc}") from exc
    c = _Connection(conn, loop, opts)
    try:
        await _handshake(c, opts)
    except BaseException:
        await c.close()
        raise
    return c


async def _handshake(c: _Connection, opts: Options) -> None:
    cmds: List[list] = []
    if opts.protocol == 3:
        hello: list = [b"HELLO", b"3"]
        if opts.password is not None:
            hello += [b"AUTH", opts.username or b"default", opts.password]
        if opts.client_name:
            hello += [b"SETNAME", opts.client_name]
        cmds.append(hello)
    else:
        if opts.password is not None:
            cmds.append([b"AUTH", opts.username, opts.password] if opts.username
                        else [b"AUTH", opts.password])
        if opts.client_name:
            cmds.append([b"CLIENT", b"SETNAME", opts.client_name])
    if opts.db:
        cmds.append([b"SELECT", opts.db])
    if not cmds:
        return
    futs = [c.call(encode_command(cmd)) for cmd in cmds]
    results = await asyncio.gather(*futs, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
