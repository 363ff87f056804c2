"""The Redis client over ringline's native connections (the I/O glue).

Owns: ``connect()`` / ``Client`` (one connection, automatic pipelining, lazy
reconnect), ``Pipeline`` (explicit batches, optionally MULTI/EXEC), the
fire/recv API, ``set_guarded`` (zero-copy large values) and the connection
options (``Options``, ``redis://`` / ``rediss://`` / ``unix://`` URLs).

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
import ssl as _ssl
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

import ringline
from ringline._errors import ConnectionClosed, ConnectionDropped, QueueFull

from ._commands import Commands, _k
from ._errors import (ProtocolError, RedisConnectionError, RedisError, RedisTimeoutError,
                      ResponseError)
from ._resp import (DEFAULT_MAX_BIGNUM_DIGITS, DEFAULT_MAX_BULK, DEFAULT_MAX_DEPTH,
                    DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_LINE, DEFAULT_MAX_REPLY_BYTES,
                    DEFAULT_ZERO_COPY_MIN, NEED_MORE, Parser, Push, encode_command)

__all__ = ["connect", "Client", "Pipeline", "Options"]

_Future = asyncio.Future
_InvalidState = asyncio.InvalidStateError
_WINDOW = 256 << 10           # header window copied per receive callback
_BIG_COMMAND = 256 << 10      # commands above this wait for send-queue room
_need_at_least = ringline.need_at_least
from ._scan import vetted_end as _vetted_end   # noqa: E402


# -- options ---------------------------------------------------------------


class Options:
    """Connection options (see ``connect``'s docstring for each)."""

    __slots__ = ("host", "port", "path", "db", "username", "password", "protocol",
                 "client_name", "connect_timeout", "command_timeout", "ssl",
                 "server_hostname", "max_depth", "max_bulk", "max_elements", "max_line",
                 "max_reply_bytes", "max_bignum_digits",
                 "zero_copy_min", "max_in_flight", "on_push", "parser", "reconnect")

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, *,
                 path: Optional[str] = None, db: int = 0,
                 username: Optional[str] = None, password: Optional[str] = None,
                 protocol: int = 2, client_name: Optional[str] = None,
                 connect_timeout: Optional[float] = 10.0,
                 command_timeout: Optional[float] = None,
                 ssl: Any = None, server_hostname: Optional[str] = None,
                 max_depth: int = DEFAULT_MAX_DEPTH, max_bulk: int = DEFAULT_MAX_BULK,
                 max_elements: int = DEFAULT_MAX_ELEMENTS, max_line: int = DEFAULT_MAX_LINE,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
                 max_bignum_digits: int = DEFAULT_MAX_BIGNUM_DIGITS,
                 zero_copy_min: int = DEFAULT_ZERO_COPY_MIN, max_in_flight: int = 10_000,
                 on_push: Optional[Callable[[Push], Any]] = None,
                 parser: str = "auto", reconnect: bool = True) -> None:
        if protocol not in (2, 3):
            raise ValueError(f"protocol must be 2 or 3, got {protocol!r}")
        if parser not in ("auto", "python", "hiredis"):
            raise ValueError(f"parser must be 'auto', 'python' or 'hiredis', got {parser!r}")
        if parser == "hiredis" and protocol == 3:
            raise ValueError("parser='hiredis' supports protocol=2 only (it cannot tell "
                             "RESP3 attributes from replies)")
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive int, got {max_in_flight!r}")
        for name, t in (("connect_timeout", connect_timeout),
                        ("command_timeout", command_timeout)):
            if t is not None and (not isinstance(t, (int, float)) or t <= 0):
                raise ValueError(f"{name} must be a positive number or None, got {t!r}")
        self.host = host
        self.port = int(port)
        self.path = path
        self.db = int(db)
        self.username = username
        self.password = password
        self.protocol = protocol
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        if ssl is True:
            ssl = _ssl.create_default_context()
        self.ssl = ssl or None
        self.server_hostname = server_hostname
        self.max_depth = max_depth
        self.max_bulk = max_bulk
        self.max_elements = max_elements
        self.max_line = max_line
        self.max_reply_bytes = max_reply_bytes
        self.max_bignum_digits = max_bignum_digits
        self.zero_copy_min = zero_copy_min
        self.max_in_flight = max_in_flight
        self.on_push = on_push
        self.parser = parser
        self.reconnect = reconnect
        self._parser()                  # validates the limits

    def _parser(self) -> Parser:
        """A reply parser with these options' limits."""
        return Parser(max_depth=self.max_depth, max_bulk=self.max_bulk,
                      max_elements=self.max_elements, max_line=self.max_line,
                      zero_copy_min=self.zero_copy_min, max_reply_bytes=self.max_reply_bytes,
                      max_bignum_digits=self.max_bignum_digits)

    @property
    def address_text(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        return f"{self.host}:{self.port}"

    def replace(self, **changes: Any) -> "Options":
        kw = {name: getattr(self, name) for name in self.__slots__}
        kw.update(changes)
        host, port = kw.pop("host"), kw.pop("port")
        return Options(host, port, **kw)


_URL_INTS = ("db", "protocol", "max_in_flight", "zero_copy_min", "max_depth", "max_bulk",
             "max_elements", "max_line", "max_reply_bytes", "max_bignum_digits")
_URL_FLOATS = ("connect_timeout", "command_timeout", "socket_timeout",
               "socket_connect_timeout")


def options_from_url(url: str, **overrides: Any) -> Options:
    """Options from redis://[[user]:password@]host[:port][/db][?k=v...],
    rediss://... (TLS) or unix:///path[?db=n]. Keyword overrides win."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} (redis, rediss or unix)")
    kw: Dict[str, Any] = {}
    if parts.username:
        kw["username"] = unquote(parts.username)
    if parts.password is not None:
        kw["password"] = unquote(parts.password)
    if kw.get("username") is not None and "password" not in kw:
        # redis://password@host is the legacy form of a password without user
        kw["password"], kw["username"] = kw["username"], None
    if scheme == "unix":
        kw["path"] = unquote(parts.path)
    else:
        kw["host"] = parts.hostname or "127.0.0.1"
        kw["port"] = parts.port or 6379
        db = parts.path.lstrip("/")
        if db:
            kw["db"] = int(db)
    for name, values in parse_qs(parts.query).items():
        value = values[-1]
        if name in _URL_INTS:
            kw[name] = int(value)
        elif name in _URL_FLOATS:
            target = {"socket_timeout": "command_timeout",
                      "socket_connect_timeout": "connect_timeout"}.get(name, name)
            kw[target] = float(value)
        elif name in ("client_name", "name"):
            kw["client_name"] = value
        elif name == "ssl_cert_reqs" or name == "ssl_ca_certs" or name == "ssl_check_hostname":
            kw.setdefault("_ssl", {})[name] = value
        else:
            raise ValueError(f"unknown URL option {name!r}")
    ssl_opts = kw.pop("_ssl", {})
    if scheme == "rediss":
        ctx = _ssl.create_default_context(cafile=ssl_opts.get("ssl_ca_certs"))
        reqs = ssl_opts.get("ssl_cert_reqs", "required").lower()
        if reqs in ("none", "optional"):
            ctx.check_hostname = False
            ctx.verify_mode = _ssl.CERT_NONE if reqs == "none" else _ssl.CERT_OPTIONAL
        elif ssl_opts.get("ssl_check_hostname", "true").lower() in ("false", "0", "no"):
            ctx.check_hostname = False
        kw["ssl"] = ctx
    kw.update(overrides)
    host = kw.pop("host", "127.0.0.1")
    port = kw.pop("port", 6379)
    return Options(host, port, **kw)


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
    try:
        from ringline import _core
        table = _core._conn_table(loop)
        return int(table.max_send_queue), int(table.recv_cap)
    except Exception:                                  # pragma: no cover
        return 8 << 20, 16 << 20


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

    def call(self, data: bytes) -> Any:
        """Queue one encoded command; an awaitable of its reply."""
        if self.error is not None:
            raise self._dead()
        fut = _Future(loop=self.loop)
        if len(data) > _BIG_COMMAND:
            return self._call_big(data, fut, None)
        try:
            self.conn.send_nowait(data)
        except (ConnectionClosed, ConnectionDropped) as exc:
            self.fail(RedisConnectionError(f"{self.name}: {exc}"))
            raise self._dead() from None
        self.pending.append(fut)
        if self.opts.command_timeout is not None:
            self._arm_timeout(fut)
        return fut

    def call_batch(self, data: bytes, n: int) -> Any:
        """Queue n encoded commands at once; an awaitable of the list of their
        replies (error replies as values)."""
        if self.error is not None:
            raise self._dead()
        fut = _Future(loop=self.loop)
        batch = _Batch(fut, n)
        if len(data) > _BIG_COMMAND:
            return self._call_big(data, fut, batch)
        try:
            self.conn.send_nowait(data)
        except (ConnectionClosed, ConnectionDropped) as exc:
            self.fail(RedisConnectionError(f"{self.name}: {exc}"))
            raise self._dead() from None
        self.pending.extend([batch] * n)
        if self.opts.command_timeout is not None:
            self._arm_timeout(fut)
        return fut

    def fire(self, data: bytes, fq: _FireQueue, tag: Any) -> None:
        if self.error is not None:
            raise self._dead()
        try:
            self.conn.send_nowait(data)
        except (ConnectionClosed, ConnectionDropped) as exc:
            self.fail(RedisConnectionError(f"{self.name}: {exc}"))
            raise self._dead() from None
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
            self.fail(RedisConnectionError(f"{self.name}: {exc}"))
            raise self._dead() from None
        sent.add_done_callback(_retrieve)
        self._drain = sent
        if batch is None:
            self.pending.append(fut)
        else:
            self.pending.extend([batch] * batch.n)
        if self.opts.command_timeout is not None:
            self._arm_timeout(fut)
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
            self.fail(RedisConnectionError(f"{self.name}: {exc}"))
            raise self._dead() from None
        sent.add_done_callback(_retrieve)
        self._drain = sent
        self.pending.append(fut)
        if self.opts.command_timeout is not None:
            self._arm_timeout(fut)
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
    from ._errors import error_from_reply
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
            conn = await ringline.connect_unix(opts.path)
        elif opts.ssl is not None:
            try:
                from ringline._conn import tls  # noqa: F401  (the TLS layer may be missing)
            except ImportError as exc:
                raise RedisConnectionError(f"redis {where}: TLS is not available in this "
                                           f"ringline build ({exc})") from None
            conn = await ringline.connect_tls((opts.host, opts.port), ssl_context=opts.ssl,
                                              server_hostname=opts.server_hostname or opts.host)
        else:
            conn = await ringline.connect((opts.host, opts.port))
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


# -- the client ---------------------------------------------------------------


async def _apply(awaitable: Any, post: Callable[[Any], Any]) -> Any:
    return post(await awaitable)


class Client(Commands):
    """A Redis client on one connection, with automatic pipelining: commands
    issued by concurrent tasks go out together once per loop iteration.
    Create it with ``await ringline.redis.connect(...)``."""

    __slots__ = ("_c", "_opts", "_fireq", "_redialing", "_closed")

    def __init__(self, connection: _Connection, opts: Options) -> None:
        self._c = connection
        self._opts = opts
        self._fireq = _FireQueue()
        self._redialing: Optional[asyncio.Future] = None
        self._closed = False

    @property
    def options(self) -> Options:
        return self._opts

    @property
    def is_connected(self) -> bool:
        return self._c.error is None

    @property
    def connection(self) -> Any:
        """The underlying ringline Conn (of the current connection)."""
        return self._c.conn

    # -- the command path --

    def _dispatch(self, data: bytes, key: Any, post: Any) -> Any:
        c = self._c
        if c.fast and len(data) <= _BIG_COMMAND:
            # _Connection.call() inlined: the hot path of every command
            fut = _Future(loop=c.loop)
            try:
                c.conn.send_nowait(data)
            except (ConnectionClosed, ConnectionDropped) as exc:
                c.fail(RedisConnectionError(f"{c.name}: {exc}"))
                raise c._dead() from None
            c.pending.append(fut)
        elif c.error is None:
            fut = c.call(data)
        elif not self._closed and self._opts.reconnect:
            fut = self._redial_then(_Connection.call, data)
        else:
            raise c._dead()
        if post is None:
            return fut
        return _apply(fut, post)

    def get(self, key: Any) -> Any:
        """GET: the value (bytes, or a memoryview from zero_copy_min bytes
        on) or None. (Commands.get with the dispatch inlined: the hottest
        command gets the shortest path.)"""
        if type(key) is not bytes:
            key = _k(key)
        c = self._c
        if c.fast and len(key) < 65536:
            fut = _Future(loop=c.loop)
            try:
                c.conn.send_nowait(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key))
            except (ConnectionClosed, ConnectionDropped) as exc:
                c.fail(RedisConnectionError(f"{c.name}: {exc}"))
                raise c._dead() from None
            c.pending.append(fut)
            return fut
        return Commands.get(self, key)

    async def _redial_then(self, method: Callable, *args: Any) -> Any:
        await self._redial()
        return await method(self._c, *args)

    async def _redial(self) -> None:
        """Open a new connection (one attempt shared by concurrent callers)."""
        if self._closed:
            raise RedisConnectionError(f"redis {self._opts.address_text}: client is closed")
        if self._c.error is None:
            return
        pending = self._redialing
        if pending is None:
            pending = self._redialing = asyncio.ensure_future(open_connection(self._opts))
            pending.add_done_callback(self._redialed)
        await asyncio.shield(pending)

    def _redialed(self, fut: asyncio.Future) -> None:
        self._redialing = None
        if fut.cancelled() or fut.exception() is not None:
            return
        conn = fut.result()
        if self._closed:
            asyncio.ensure_future(conn.close())
            return
        self._c = conn

    async def ensure_connected(self) -> None:
        """Reconnect now if the connection failed (commands do it lazily)."""
        await self._redial()

    def execute(self, *args: Any) -> Any:
        """Run any command: ``await client.execute("SET", "k", 1)``."""
        return self._dispatch(encode_command(args), None, None)

    command = execute

    def pipeline(self, transaction: bool = False) -> "Pipeline":
        """A batch: queue commands on it, then ``await p.execute()``."""
        return Pipeline(self, transaction)

    def _run_batch(self, data: bytes, n: int) -> Any:
        c = self._c
        if c.error is None:
            return c.call_batch(data, n)
        if not self._closed and self._opts.reconnect:
            return self._redial_then(_Connection.call_batch, data, n)
        raise c._dead()

    # -- zero-copy large values --

    async def set_guarded(self, key: Any, obj: Any, *, ex: Optional[int] = None,
                          px: Optional[int] = None) -> bool:
        """SET key to the bytes of obj (any contiguous buffer), sending obj in
        place: zero-copy above the loop's send_zc_threshold, never copied
        into a command buffer. Do not modify obj until this returns."""
        key = _k(key)
        mv = memoryview(obj)
        size = mv.nbytes
        extra = b""
        nargs = 3
        if ex is not None:
            extra += b"$2\r\nEX\r\n" + _bulk(b"%d" % int(ex))
            nargs += 2
        if px is not None:
            extra += b"$2\r\nPX\r\n" + _bulk(b"%d" % int(px))
            nargs += 2
        prefix = b"*%d\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n" % (nargs, len(key), key, size)
        if self._c.error is not None:
            await self._redial()
        await self._c.call_guarded(prefix, obj, b"\r\n" + extra, size)
        return True

    # -- fire / recv --

    def fire(self, tag: Any, *args: Any) -> None:
        """Queue a command tagged with tag; its reply comes back from recv()
        as (tag, value), in firing order. Error replies come back as the
        exception object in place of the value (not raised), so no tag is
        lost. Raises ringline.QueueFull (and queues nothing) when
        max_in_flight commands are fired and not yet received: fire never
        waits."""
        fq = self._fireq
        if len(fq.tags) + len(fq.results) >= self._opts.max_in_flight:
            raise QueueFull(f"max_in_flight ({self._opts.max_in_flight}) commands are fired "
                            "and not yet received")
        c = self._c
        if c.error is not None:
            raise c._dead()
        c.fire(encode_command(args), fq, tag)

    @property
    def in_flight(self) -> int:
        """Fired commands whose replies recv() has not returned yet."""
        return len(self._fireq.tags) + len(self._fireq.results)

    async def recv(self) -> Tuple[Any, Any]:
        """The next (tag, value) of fire(), waiting for it. RuntimeError when
        nothing is in flight (it would wait forever)."""
        fq = self._fireq
        while not fq.results:
            if not fq.tags:
                raise RuntimeError("recv() with no fired command in flight")
            w = fq.waiter
            if w is None or w.done():
                w = fq.waiter = _Future(loop=asyncio.get_running_loop())
            await w
        return fq.results.popleft()

    def try_recv(self) -> Optional[Tuple[Any, Any]]:
        """(tag, value) if a reply is ready, else None (never waits)."""
        fq = self._fireq
        return fq.results.popleft() if fq.results else None

    # -- lifecycle --

    async def close(self) -> None:
        """Close the connection; pending commands fail with
        RedisConnectionError. Idempotent."""
        self._closed = True
        pending = self._redialing
        if pending is not None:
            pending.cancel()
        await self._c.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "connected" if self._c.error is None else "disconnected"
        return f"<ringline.redis.Client {self._opts.address_text} {state}>"


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(b), b)


class Pipeline(Commands):
    """Commands queued on the pipeline go out in one write by execute(),
    which returns their replies in order. ``async with`` runs nothing by
    itself: call ``await p.execute()`` (leaving the block discards what was
    not executed). With transaction=True the batch is wrapped in
    MULTI/EXEC."""

    __slots__ = ("_client", "_transaction", "_cmds")

    def __init__(self, client: Any, transaction: bool = False) -> None:
        self._client = client
        self._transaction = transaction
        self._cmds: List[Tuple[bytes, Any, Any]] = []

    def _dispatch(self, data: bytes, key: Any, post: Any) -> "Pipeline":
        self._cmds.append((data, key, post))
        return self

    def command(self, *args: Any) -> "Pipeline":
        """Queue any command."""
        self._cmds.append((encode_command(args), None, None))
        return self

    execute_command = command

    def __len__(self) -> int:
        return len(self._cmds)

    def reset(self) -> None:
        self._cmds = []

    async def execute(self, raise_on_error: bool = True) -> list:
        """Send everything queued; the list of replies (converted like the
        helpers do). With raise_on_error the first error reply is raised
        after every reply arrived; otherwise errors are in the list."""
        cmds, self._cmds = self._cmds, []
        if not cmds:
            return []
        return await self._client._execute_pipeline(cmds, self._transaction, raise_on_error)

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._cmds = []


_MULTI = encode_command((b"MULTI",))
_EXEC = encode_command((b"EXEC",))


def _finish_pipeline(cmds: list, replies: list, transaction: bool, raise_on_error: bool) -> list:
    if transaction:
        head = replies[:-1]
        for r in head:
            if isinstance(r, BaseException):
                if raise_on_error:
                    raise r
        replies = replies[-1]
        if isinstance(replies, BaseException):
            raise replies
        if replies is None:
            raise ResponseError("EXEC aborted: a watched key changed", "EXECABORT")
    out = []
    first_error = None
    for (_data, _key, post), reply in zip(cmds, replies):
        if isinstance(reply, BaseException):
            if first_error is None:
                first_error = reply
            out.append(reply)
        elif post is not None:
            try:
                out.append(post(reply))
            except Exception as exc:                  # pragma: no cover
                out.append(exc)
        else:
            out.append(reply)
    if first_error is not None and raise_on_error:
        raise first_error
    return out


async def _client_execute_pipeline(self: Client, cmds: list, transaction: bool,
                                   raise_on_error: bool) -> list:
    data = b"".join([c[0] for c in cmds])
    n = len(cmds)
    if transaction:
        data = _MULTI + data + _EXEC
        n += 2
    replies = await self._run_batch(data, n)
    return _finish_pipeline(cmds, replies, transaction, raise_on_error)


Client._execute_pipeline = _client_execute_pipeline  # type: ignore[attr-defined]


async def connect(host: Optional[str] = None, port: Optional[int] = None, *,
                  url: Optional[str] = None, **options: Any) -> Client:
    """Open a Client. ``connect("127.0.0.1", 6379)``, or ``connect(url=
    "redis://user:pass@host:6379/0?protocol=3")`` (``rediss://`` for TLS,
    ``unix:///path/redis.sock``). Options:

    db, username, password, protocol (2 or 3: HELLO 3), client_name,
    connect_timeout (connect + handshake, default 10 s), command_timeout
    (per command, default None: a timed-out command raises
    RedisTimeoutError, its reply is discarded when it arrives), ssl (an
    SSLContext or True), server_hostname, zero_copy_min (bulk strings of at
    least this many bytes come back as memoryviews, default 16 KiB),
    max_depth / max_bulk / max_elements / max_line / max_reply_bytes /
    max_bignum_digits (parser limits; a reply beyond one is a ProtocolError
    naming it, and the connection closes),
    max_in_flight (fire/recv bound, default 10,000), on_push (callback for
    RESP3 push messages), parser ("auto": hiredis for RESP2 when installed,
    with our parser for large values and RESP3; "python"; "hiredis"), reconnect (redial
    lazily after a failure, default True).
    """
    opts = _make_options(host, port, url, options)
    return Client(await open_connection(opts), opts)


def _make_options(host: Optional[str], port: Optional[int], url: Optional[str],
                  options: Dict[str, Any]) -> Options:
    if url is not None:
        if host is not None or port is not None:
            raise TypeError("pass either url or host/port, not both")
        return options_from_url(url, **options)
    if host is not None and "://" in host:
        return options_from_url(host, **options)
    return Options(host or "127.0.0.1", 6379 if port is None else port, **options)
