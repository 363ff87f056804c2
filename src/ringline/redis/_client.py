"""The Redis client: `connect()` and `Client` (the command face of one
connection).

Owns: ``connect()`` / ``Client`` (one connection, automatic pipelining, lazy
reconnect), the fire/recv API and ``set_guarded`` (zero-copy large values).
The connection itself (FIFO, reader, parsers) is `_connection._Connection`;
the options are `_options.Options`; explicit batches are
`_pipeline.Pipeline`.

Lifecycle: ``connect()`` builds the Options and opens a `_Connection`; every
command method encodes its command (`Commands`) and queues it on the current
connection (the hot GET path and the plain dispatch inline
``_Connection.call``). When the connection failed, the next command dials
again (lazy reconnect, one attempt shared by concurrent callers); the failed
commands are not retried (they may have run). ``close()`` closes the
connection and cancels a redial in progress.

Invariants: commands of one Client go out and are answered in call order;
after ``close()`` no command dials again; fire() never waits: beyond
``max_in_flight`` fired-and-unreceived commands it raises QueueFull and
queues nothing.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional, Tuple

from .._errors import ConnectionClosed, ConnectionDropped, QueueFull
from ._commands import Commands, _k
from ._connection import _BIG_COMMAND, _Connection, _FireQueue, _Future, open_connection
from ._errors import RedisConnectionError
from ._options import Options, _make_options, options_from_url
from ._pipeline import _EXEC, _MULTI, Pipeline, _finish_pipeline
from ._resp import encode_command

__all__ = ["connect", "Client", "Pipeline", "Options", "options_from_url"]


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
                raise c._lost(exc) from None
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
                raise c._lost(exc) from None
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

    async def _execute_pipeline(self, cmds: list, transaction: bool,
                                raise_on_error: bool) -> list:
        """Run a Pipeline's commands on this connection (Pipeline.execute)."""
        data = b"".join([c[0] for c in cmds])
        n = len(cmds)
        if transaction:
            data = _MULTI + data + _EXEC
            n += 2
        replies = await self._run_batch(data, n)
        return _finish_pipeline(cmds, replies, transaction, raise_on_error)

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
