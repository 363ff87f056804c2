"""One memcache connection: automatic pipelining over a ringline `Conn` (the
I/O glue).

Owns: a `Conn`, the reader task, the write side (sending requests and values,
merged gets, early pushes, the quiet-run ``mn``), the futures handed to
callers, fire/recv waiting and the reply watchdog. The wire format
(`_proto.ResponseParser`, the encoders) and the matching of replies to
commands (`_matcher.ReplyMatcher`: converters, the FIFO and its quiet-command
state machine) are sans-IO modules this file drives.

Lifecycle: `connect()` opens the Conn and starts the reader task. Every
command encodes its request, queues it with `conn.send_nowait` (the loop
writes everything queued during one iteration together, so commands from
concurrent tasks share one send) and appends one entry to the matcher's
FIFO. The reader task waits on `conn.with_data`, parses every complete reply
in the buffer and hands them to the matcher, which resolves the FIFO entries
in order: one wake-up per batch of replies, not per command. `close()`, EOF,
a ProtocolError or a reply timeout fail the connection: the Conn is closed,
every pending command fails with an error naming the cause, later commands
fail at once, nothing hangs.

Quiet commands (classic ``noreply`` and meta commands with ``q``) have no
reply on success. To keep the FIFO in step, a run of quiet commands is
always closed by an ``mn`` (meta no-op) before the next ordinary command or
at the end of the loop iteration (this file sends it; the matcher treats its
``MN`` as the sync point, see `_matcher`).

Invariants: replies are matched strictly in order; a reply that does not fit
the command at the head of the FIFO is a ProtocolError that closes the
connection (never a silent desync); ``CLIENT_ERROR`` to a command with a data
block also closes it (memcached may have read the data as a command); a run
of quiet commands is never followed by an ordinary command without its
``mn`` in between; merged gets keep their FIFO slot from the first caller on,
so whatever is queued after them follows them on the wire.
"""
from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

from .. import _errors
from .._conn.api import need_at_least
from .._util.addr import parse_address
from ._matcher import (_AS_CAS_ITEM, _AS_ITEM, _AS_VALUE, _BATCH, _MN, _Fired, _GetBatch,
                       _Quiet, _c_cas, _c_deleted, _c_get, _c_get_item, _c_get_many,
                       _c_gets_many, _c_incr, _c_meta, _c_meta_set, _c_mn, _c_ok, _c_stats,
                       _c_stored, _c_touched, _c_version, ReplyMatcher)
from ._proto import (MAX_KEY_LENGTH, DEFAULT_MAX_REPLY_BYTES, DEFAULT_MAX_VALUE, Item,
                     MetaResult, ProtocolError, ResponseParser, _bad_key_byte,
                     check_key, check_value, encode_meta, meta_flag_tokens)

__all__ = ["Client", "connect"]

Key = Union[bytes, str]
_CRLF = b"\r\n"
# values at least this big go out as their own send part (bytes by reference,
# other buffers as zero-copy guard parts) instead of being joined to the header
_BIG_VALUE = 16384
# reply headers are parsed from a bytes copy of at most this much of the
# receive buffer; data blocks beyond it are taken from the buffer directly
_WINDOW = 65536


def _key(key: Any) -> bytes:
    if key.__class__ is bytes and 0 < len(key) <= MAX_KEY_LENGTH and _bad_key_byte(key) is None:
        return key
    return check_key(key)


# ---------------------------------------------------------------------------


class Client:
    """A memcache client on one connection (see `connect`).

    Command methods return awaitables (futures) and can be called from many
    tasks at once: their requests are pipelined on the connection and their
    replies matched in order. Argument errors (bad keys, bad flags) raise at
    the call.
    """

    def __init__(self, conn: Any, *, address: Any = None,
                 max_value_size: int = DEFAULT_MAX_VALUE,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
                 max_in_flight: Optional[int] = None,
                 reply_timeout: Optional[float] = None,
                 zero_copy: bool = False, push_at: int = 16) -> None:
        if push_at.__class__ is not int or push_at < 0:
            raise ValueError(f"push_at must be an int >= 0, not {push_at!r}")
        self._conn = conn
        self._push_at = push_at
        self._zero_copy = zero_copy
        self._send = conn.send_nowait
        self._loop = asyncio.get_running_loop()
        # asyncio.Future (the C type) bound to the loop: cheaper than the
        # loop's create_future(), which is Python code on a ringline loop
        self._new_future = partial(asyncio.Future, loop=self._loop)
        self._parser = ResponseParser(max_value=max_value_size,
                                      max_reply_bytes=max_reply_bytes)
        # the FIFO and its state machine (sans-IO); _pending and _done are
        # its deques (never replaced)
        self._m = m = ReplyMatcher(address, self._wake_recv)
        self._pending = m.fifo
        self._address = address
        self._error: Optional[BaseException] = None
        # merged gets: the batch still open (not sent), the pre-flush hook
        self._batch: Optional[_GetBatch] = None
        self._hook_set = False
        self._at_flush = self._loop._at_flush
        self.get_lines = 0                # merged get/gets lines sent
        self.get_calls = 0                # single-key get calls they carried
        self.pushes = 0                   # runs handed to the kernel before the iteration's end
        self._run = 0                     # commands queued since the last push / iteration end
        # fire/recv
        self.max_in_flight = max_in_flight
        self._fired = 0                   # fired and not yet recv()d
        self._done = m.done
        self._recv_waiter: Optional[asyncio.Future] = None
        # reply watchdog
        self._reply_timeout = reply_timeout
        self._watch_mark = -1
        self._watchdog: Optional[asyncio.TimerHandle] = None
        self._reader: Optional[asyncio.Task] = None
        self._reader = self._loop.create_task(self._read_loop())

    # -- lifecycle ----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection failed or was closed."""
        return self._error is not None

    @property
    def pending(self) -> int:
        """Commands sent and not yet answered."""
        return len(self._pending)

    @property
    def address(self) -> Any:
        return self._address

    @property
    def noreply_errors(self) -> int:
        """Error replies that followed classic noreply commands (logged, not
        raised: no command waits for them)."""
        return self._m.noreply_errors

    async def close(self) -> None:
        """Close the connection; commands still pending fail with
        ConnectionClosed."""
        self._fail(_errors.ConnectionClosed("memcache client closed"))
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            await asyncio.wait([reader])

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._error is not None else f"pending={len(self._pending)}"
        return f"<memcache.Client {self._address!r} {state}>"

    # -- the reader -----------------------------------------------------------

    async def _read_loop(self) -> None:
        conn = self._conn
        on_data = self._on_data
        wait = conn.with_bytes if self._zero_copy else conn.with_data
        try:
            while True:
                n = await wait(on_data)
                if n == 0:
                    if conn.buffered or self._parser.in_reply:
                        raise ProtocolError(
                            f"memcached closed the connection in the middle of a reply "
                            f"({conn.buffered} bytes of an incomplete reply)")
                    raise _errors.ConnectionClosed("memcached closed the connection")
        except asyncio.CancelledError:
            self._fail(_errors.ConnectionClosed("memcache reader cancelled"))
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure closes the conn
            self._fail(exc)

    def _on_data(self, view: memoryview) -> Any:
        parser = self._parser
        try:
            if self._zero_copy:
                # headers are parsed from a copy of (at most) a window; values
                # are slices of the receive buffer itself (with_bytes keeps it
                # alive)
                pos = parser.parse(bytes(view[:_WINDOW]), 0, view, True)
            elif len(view) <= _WINDOW:
                pos = parser.parse(bytes(view))
            else:
                # big values are copied once, straight from the receive buffer
                pos = parser.parse(bytes(view[:_WINDOW]), 0, view)
        finally:
            # also when parsing failed: the replies complete before the broken
            # one reach their callers, then the broken one's caller gets the
            # error
            replies = parser.replies
            if replies:
                parser.replies = []
                self._m.dispatch(replies)
        if pos:
            return pos
        need = parser.need
        return need_at_least(need) if need else 0


    def _fail(self, exc: BaseException) -> None:
        if self._error is not None:
            return
        if not isinstance(exc, Exception):      # KeyboardInterrupt & co.
            exc = _errors.ConnectionClosed(f"memcache connection aborted: {exc!r}")
        self._error = exc
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        reader = self._reader
        if reader is not None and not reader.done():
            try:
                current = asyncio.current_task()
            except RuntimeError:
                current = None
            if reader is not current:
                # unpark the reader first: closing the Conn under a parked
                # reader would wake it synchronously from inside this task
                reader.cancel()
        try:
            if isinstance(exc, (ProtocolError, TimeoutError)):
                self._conn.abort()
            else:
                self._conn.close()
        except Exception:  # noqa: BLE001 - already closed
            pass
        self._batch = None                  # failed with the rest
        self._m.fail(exc)

    # -- writing --------------------------------------------------------------

    def _closed(self) -> BaseException:
        """The error a command gets once the connection failed."""
        return self._m.closed_error(self._error)  # type: ignore[arg-type]

    def _send_value(self, head: bytes, value: Any) -> None:
        """head + value + CRLF: one bytes object for small values, separate
        parts (no copy of the value) for big ones."""
        if len(value) < _BIG_VALUE:
            if value.__class__ is bytes:
                self._send(head + value + _CRLF)
            else:
                self._send(b"".join((head, value, _CRLF)))
        elif value.__class__ is bytes:
            send = self._send
            send(head)
            send(value)
            send(_CRLF)
        else:
            fut = self._conn.send_parts().copy(head).guard(value).copy(_CRLF).submit()
            fut.add_done_callback(_ignore_result)

    def _arm_watchdog(self) -> None:
        if self._watchdog is None and self._reply_timeout is not None:
            self._watch_mark = self._m.progress
            self._watchdog = self._loop.call_later(self._reply_timeout, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        if self._error is not None or not self._pending:
            return
        if self._m.progress == self._watch_mark:
            self._fail(TimeoutError(f"memcached at {self._address} sent no reply for "
                                    f"{self._reply_timeout} s with {len(self._pending)} "
                                    "commands pending"))
            return
        self._arm_watchdog()

    def _close_quiet_run(self) -> None:
        m = self._m
        if m.quiet_open and self._error is None:
            m.quiet_open = False
            if self._batch is not None:       # (never open during a quiet run)
                self._flush_batch()
            try:
                self._send(_MN)
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)
                return
            m.close_quiet_run()

    def _open_quiet_run(self) -> None:
        if not self._m.quiet_open:
            self._m.quiet_open = True
            self._loop.call_soon(self._close_quiet_run)
        if self._watchdog is None and self._reply_timeout is not None:
            self._arm_watchdog()

    def _write(self, data: Any, value: Any, quiet: bool) -> None:
        """Queue one request (its line, and `value` as a data block): after
        the open merged get, and for an ordinary (not `quiet`) command after
        the ``mn`` closing an open quiet run, so the wire order is the FIFO
        order. Raises the connection's error when it failed (before, or
        while queueing)."""
        if self._batch is not None:
            self._flush_batch()
        if self._error is not None:
            raise self._closed()
        if not quiet and self._m.quiet_open:
            self._close_quiet_run()
        try:
            if value is None:
                self._send(data)
            else:
                self._send_value(data, value)
        except Exception as exc:  # noqa: BLE001 - the conn dropped under us
            self._fail(exc)
            raise self._closed() from exc

    def _submit(self, data: Any, conv: Any, value: Any = None) -> asyncio.Future:
        """Send a command expecting a reply; return the future of its result."""
        self._write(data, value, False)
        fut = self._new_future()
        self._pending.append((conv, fut))
        if self._watchdog is None and self._reply_timeout is not None:
            self._arm_watchdog()
        self._count()
        return fut

    def _submit_noreply(self, data: Any, value: Any = None) -> asyncio.Future:
        self._write(data, value, True)
        self._open_quiet_run()
        fut = self._new_future()
        fut.set_result(None)
        return fut

    def _submit_quiet(self, data: Any, entry: _Quiet, value: Any = None,
                      target: Any = None) -> Any:
        self._write(data, value, True)
        if target is None:
            target = self._new_future()
        self._pending.append((entry, target))
        self._open_quiet_run()
        return target

    # -- merged gets ------------------------------------------------------------

    def _open_batch(self) -> _GetBatch:
        """Start a merged get (after sending the one still open): its FIFO
        slot is taken now, its line is sent when the batch is closed."""
        if self._batch is not None:
            self._flush_batch()
        if self._error is not None:
            raise self._closed()
        if self._m.quiet_open:
            self._close_quiet_run()
            if self._error is not None:
                raise self._closed()
        b = self._batch = _GetBatch()
        self._pending.append((_BATCH, b))
        if not self._hook_set:
            self._hook_set = True
            self._at_flush(self._on_flush)
        if self._watchdog is None and self._reply_timeout is not None:
            self._arm_watchdog()
        return b

    def _on_flush(self) -> None:
        # the loop is about to write this iteration's sends: join them
        self._hook_set = False
        self._run = 0
        if self._batch is not None:
            self._flush_batch()

    def _flush_batch(self) -> None:
        """Send the open merged get: every command queued after it follows
        it on the wire, as in the FIFO."""
        b = self._batch
        self._batch = None
        if b is None or self._error is not None:
            return
        self.get_lines += 1
        self.get_calls += len(b.entries)
        try:
            self._send(b.line())
        except Exception as exc:  # noqa: BLE001 - the conn dropped under us
            self._fail(exc)

    def _get1(self, key: bytes, kind: int, target: Any) -> Any:
        """Add a single-key get (of `kind`) to the open merged get."""
        b = self._batch
        if b is None:
            b = self._open_batch()
        if target is None:
            target = self._new_future()
        if not b.add(key, kind, target):
            self._open_batch().add(key, kind, target)
        self._count()
        return target

    def _count(self) -> None:
        """One more command queued in this iteration; a full run is pushed."""
        run = self._run + 1
        if run == self._push_at:
            self._push_run()
            return
        self._run = run
        if run == 1 and not self._hook_set:
            self._hook_set = True
            self._at_flush(self._on_flush)

    def _push_run(self) -> None:
        # push_at commands queued in this iteration go to the kernel at once:
        # memcached works on them while the callers of the next run execute
        # (double buffering); the rest go with the iteration's submissions
        self._run = 0
        if self._batch is not None:
            self._flush_batch()
        if self._error is None:
            self.pushes += 1
            try:
                self._conn.push()
            except Exception as exc:  # noqa: BLE001 - the conn dropped under us
                self._fail(exc)

    # -- classic commands -----------------------------------------------------

    def get(self, key: Key) -> "asyncio.Future[Optional[bytes]]":
        """The value of `key`, or None on a miss.

        Gets issued one after another during one loop iteration (from any
        number of tasks) go out as one ``get k1 k2 ...`` line."""
        if key.__class__ is not bytes or not 0 < len(key) <= MAX_KEY_LENGTH \
                or _bad_key_byte(key) is not None:
            key = check_key(key)
        return self._get1(key, _AS_VALUE, None)

    def get_item(self, key: Key) -> "asyncio.Future[Optional[Item]]":
        """`Item` (value, flags) of `key`, or None on a miss (merged like get)."""
        return self._get1(_key(key), _AS_ITEM, None)

    def gets(self, key: Key) -> "asyncio.Future[Optional[Item]]":
        """`Item` (value, flags, cas) of `key`, or None on a miss (merged
        like get: the merged line is then ``gets``)."""
        return self._get1(_key(key), _AS_CAS_ITEM, None)

    def get_many(self, keys: Iterable[Key]) -> "asyncio.Future[Dict[bytes, bytes]]":
        """``{key: value}`` for the keys that hit (one ``get`` line)."""
        ks = [_key(k) for k in keys]
        if not ks:
            fut = self._new_future()
            fut.set_result({})
            return fut
        return self._submit(b"get " + b" ".join(ks) + _CRLF, _c_get_many)

    def gets_many(self, keys: Iterable[Key]) -> "asyncio.Future[Dict[bytes, Item]]":
        """``{key: Item}`` (with cas) for the keys that hit."""
        ks = [_key(k) for k in keys]
        if not ks:
            fut = self._new_future()
            fut.set_result({})
            return fut
        return self._submit(b"gets " + b" ".join(ks) + _CRLF, _c_gets_many)

    def gat(self, exptime: int, key: Key) -> "asyncio.Future[Optional[bytes]]":
        """Get and touch: the value of `key` (None on a miss), new exptime."""
        return self._submit(b"gat %d %b\r\n" % (exptime, _key(key)), _c_get)

    def gats(self, exptime: int, key: Key) -> "asyncio.Future[Optional[Item]]":
        """Get and touch with cas: `Item` or None."""
        return self._submit(b"gats %d %b\r\n" % (exptime, _key(key)), _c_get_item)

    def _store(self, cmd: bytes, key: Key, value: Any, flags: int, exptime: int,
               noreply: bool) -> asyncio.Future:
        if key.__class__ is not bytes or not 0 < len(key) <= MAX_KEY_LENGTH \
                or _bad_key_byte(key) is not None:
            key = check_key(key)
        if value.__class__ is not bytes:
            value = check_value(value)
            n = memoryview(value).nbytes
            if n != len(value):
                value = memoryview(value).cast("B")
        else:
            n = len(value)
        if noreply:
            return self._submit_noreply(b"%b %b %d %d %d noreply\r\n"
                                        % (cmd, key, flags, exptime, n), value)
        head = b"%b %b %d %d %d\r\n" % (cmd, key, flags, exptime, n)
        if self._batch is not None:
            self._flush_batch()
        if n < _BIG_VALUE and value.__class__ is bytes and self._error is None \
                and not self._m.quiet_open:
            try:
                self._send(head + value + _CRLF)
            except Exception:  # noqa: BLE001
                return self._submit(head, _c_stored, value)
            fut = self._new_future()
            self._pending.append((_c_stored, fut))
            if self._reply_timeout is not None and self._watchdog is None:
                self._arm_watchdog()
            self._count()
            return fut
        return self._submit(head, _c_stored, value)

    def set(self, key: Key, value: Any, *, flags: int = 0, exptime: int = 0,
            noreply: bool = False) -> "asyncio.Future[bool]":
        """Store `value` (bytes-like). True when stored."""
        return self._store(b"set", key, value, flags, exptime, noreply)

    def add(self, key: Key, value: Any, *, flags: int = 0, exptime: int = 0,
            noreply: bool = False) -> "asyncio.Future[bool]":
        """Store only if `key` is absent. True when stored."""
        return self._store(b"add", key, value, flags, exptime, noreply)

    def replace(self, key: Key, value: Any, *, flags: int = 0, exptime: int = 0,
                noreply: bool = False) -> "asyncio.Future[bool]":
        """Store only if `key` exists. True when stored."""
        return self._store(b"replace", key, value, flags, exptime, noreply)

    def append(self, key: Key, value: Any, *, noreply: bool = False) -> "asyncio.Future[bool]":
        """Append to an existing value. True when stored."""
        return self._store(b"append", key, value, 0, 0, noreply)

    def prepend(self, key: Key, value: Any, *, noreply: bool = False) -> "asyncio.Future[bool]":
        """Prepend to an existing value. True when stored."""
        return self._store(b"prepend", key, value, 0, 0, noreply)

    def cas(self, key: Key, value: Any, cas: int, *, flags: int = 0, exptime: int = 0,
            noreply: bool = False) -> "asyncio.Future[Optional[bool]]":
        """Store if the item's cas is still `cas`: True stored, False changed
        since (EXISTS), None missing (NOT_FOUND)."""
        key = _key(key)
        value = check_value(value)
        n = memoryview(value).nbytes
        if n != len(value):
            value = memoryview(value).cast("B")
        if noreply:
            return self._submit_noreply(b"cas %b %d %d %d %d noreply\r\n"
                                        % (key, flags, exptime, n, cas), value)
        return self._submit(b"cas %b %d %d %d %d\r\n" % (key, flags, exptime, n, cas),
                            _c_cas, value)

    def incr(self, key: Key, delta: int = 1, *, noreply: bool = False
             ) -> "asyncio.Future[Optional[int]]":
        """Add `delta` to a decimal value: the new value, or None if missing."""
        return self._arith(b"incr", key, delta, noreply)

    def decr(self, key: Key, delta: int = 1, *, noreply: bool = False
             ) -> "asyncio.Future[Optional[int]]":
        """Subtract `delta` (floors at 0): the new value, or None if missing."""
        return self._arith(b"decr", key, delta, noreply)

    def _arith(self, cmd: bytes, key: Key, delta: int, noreply: bool) -> asyncio.Future:
        if not isinstance(delta, int) or not 0 <= delta < 1 << 64:
            raise ValueError(f"{cmd.decode()}: delta must be an int in 0..2**64-1, got {delta!r}")
        key = _key(key)
        if noreply:
            return self._submit_noreply(b"%b %b %d noreply\r\n" % (cmd, key, delta))
        return self._submit(b"%b %b %d\r\n" % (cmd, key, delta), _c_incr)

    def delete(self, key: Key, *, noreply: bool = False) -> "asyncio.Future[bool]":
        """Delete `key`: True if it existed."""
        key = _key(key)
        if noreply:
            return self._submit_noreply(b"delete " + key + b" noreply\r\n")
        return self._submit(b"delete " + key + _CRLF, _c_deleted)

    def touch(self, key: Key, exptime: int, *, noreply: bool = False) -> "asyncio.Future[bool]":
        """Set a new expiry on `key`: True if it existed."""
        key = _key(key)
        if noreply:
            return self._submit_noreply(b"touch %b %d noreply\r\n" % (key, exptime))
        return self._submit(b"touch %b %d\r\n" % (key, exptime), _c_touched)

    def flush_all(self, delay: int = 0, *, noreply: bool = False) -> "asyncio.Future[None]":
        """Invalidate every item (after `delay` seconds)."""
        line = b"flush_all %d" % delay if delay else b"flush_all"
        if noreply:
            return self._submit_noreply(line + b" noreply\r\n")
        return self._submit(line + _CRLF, _c_ok)

    def version(self) -> "asyncio.Future[str]":
        """The server's version string."""
        return self._submit(b"version\r\n", _c_version)

    def stats(self, *args: str) -> "asyncio.Future[Dict[str, str]]":
        """``stats [args]`` as a dict of str."""
        for a in args:
            if not a or any(c.isspace() for c in a):
                raise ValueError(f"bad stats argument {a!r}")
        line = b" ".join([b"stats"] + [a.encode() for a in args])
        return self._submit(line + _CRLF, _c_stats)

    # -- meta commands ----------------------------------------------------------

    def _meta(self, cmd: bytes, key: Key, flags: Tuple[Any, ...], conv: Any,
              default: str, value: Any = None, target: Any = None) -> Any:
        key = _key(key)
        tokens = meta_flag_tokens(cmd, flags) if flags else []
        n = None
        if value is not None:
            value = check_value(value)
            n = memoryview(value).nbytes
            if n != len(value):
                value = memoryview(value).cast("B")
        if "q" in tokens:
            entry = self._m.quiet_entry(tokens, default, conv)
            return self._submit_quiet(encode_meta(cmd, key, tokens, n), entry, value, target)
        data = encode_meta(cmd, key, tokens, n)
        if target is not None:
            return self._submit_fired(data, conv, target, value)
        return self._submit(data, conv, value)

    def mg(self, key: Key, *flags: Union[str, bytes]) -> "asyncio.Future[MetaResult]":
        """Meta get. Flags: ``v`` value, ``f`` client flags, ``t`` TTL, ``c``
        cas, ``k`` key, ``s`` size, ``h`` hit before, ``l`` last access,
        ``O<token>`` opaque, ``T<ttl>`` touch, ``N<ttl>`` vivify on miss,
        ``R<ttl>`` recache, ``u`` no LRU bump, ``q`` quiet (a miss is EN
        without a reply line), ``E<cas>``, ``b`` base64 key.
        Returns a `MetaResult` (status VA/HD on a hit, EN on a miss)."""
        if not flags and key.__class__ is bytes and 0 < len(key) <= MAX_KEY_LENGTH \
                and _bad_key_byte(key) is None:
            return self._submit(b"mg " + key + _CRLF, _c_meta)
        return self._meta(b"mg", key, flags, _c_meta, "EN")

    def ms(self, key: Key, value: Any, *flags: Union[str, bytes]
           ) -> "asyncio.Future[MetaResult]":
        """Meta set. Flags: ``T<ttl>``, ``F<client flags>``, ``C<cas>``
        compare, ``I`` invalidate, ``M<mode>`` (E add, A append, P prepend,
        R replace, S set), ``N<ttl>`` autovivify on append, ``c`` return cas,
        ``k``, ``O<token>``, ``q`` quiet, ``b``. Status HD stored, NS not
        stored, EX cas mismatch, NF not found."""
        return self._meta(b"ms", key, flags, _c_meta_set, "HD", value)

    def md(self, key: Key, *flags: Union[str, bytes]) -> "asyncio.Future[MetaResult]":
        """Meta delete. Flags: ``C<cas>``, ``I`` invalidate (mark stale),
        ``T<ttl>`` (with I), ``k``, ``O<token>``, ``q``, ``x``, ``b``. Status
        HD deleted, NF not found, EX cas mismatch."""
        return self._meta(b"md", key, flags, _c_meta, "HD")

    def ma(self, key: Key, *flags: Union[str, bytes]) -> "asyncio.Future[MetaResult]":
        """Meta arithmetic. Flags: ``D<delta>``, ``M<mode>`` (I/+ incr, D/-
        decr), ``N<ttl>`` create on miss with ``J<initial>``, ``T<ttl>``,
        ``C<cas>``, ``v`` return the value, ``t``, ``c``, ``k``, ``O``,
        ``q``, ``b``. Status HD/VA success, NF not found, NS, EX."""
        return self._meta(b"ma", key, flags, _c_meta, "HD")

    def mn(self) -> "asyncio.Future[None]":
        """Meta no-op: resolves once every command sent before it was answered."""
        return self._submit(_MN, _c_mn)

    # -- fire / recv ------------------------------------------------------------

    def _submit_fired(self, data: Any, conv: Any, target: _Fired, value: Any = None) -> _Fired:
        self._write(data, value, False)
        self._pending.append((conv, target))
        if self._watchdog is None and self._reply_timeout is not None:
            self._arm_watchdog()
        return target

    def fire(self, tag: Any, command: str, *args: Any, **kwargs: Any) -> None:
        """Send `command` (a method name: "get", "set", "mg", ...) without
        waiting; its result comes back from `recv()` as ``(tag, result)``.

        Raises ringline.QueueFull when `max_in_flight` fired commands have
        not been received yet. noreply commands are not allowed here."""
        if self.max_in_flight is not None and self._fired >= self.max_in_flight:
            raise _errors.QueueFull(f"{self._fired} fired commands in flight "
                                    f"(max_in_flight={self.max_in_flight})")
        if kwargs.get("noreply"):
            raise ValueError("fire(): noreply commands have no result to recv()")
        builder = _FIRE_BUILDERS.get(command)
        if builder is None:
            raise ValueError(f"fire(): unknown command {command!r} "
                             f"(one of {', '.join(sorted(_FIRE_BUILDERS))})")
        builder(self, _Fired(tag), *args, **kwargs)
        self._fired += 1

    @property
    def in_flight(self) -> int:
        """Fired commands whose results were not received yet."""
        return self._fired

    async def recv(self) -> Tuple[Any, Any]:
        """The next fired command's ``(tag, result)``, in the order fired.
        A command that failed has its exception (a `MemcacheError` or a
        connection error) as the result. RuntimeError if nothing is fired."""
        while not self._done:
            if self._fired == 0:
                raise RuntimeError("recv(): no fired command is pending")
            if self._error is not None and not self._done:
                raise self._closed()
            waiter = self._recv_waiter
            if waiter is None or waiter.done():
                waiter = self._recv_waiter = self._new_future()
            await waiter
        self._fired -= 1
        return self._done.popleft()

    def _wake_recv(self) -> None:
        w = self._recv_waiter
        if w is not None:
            self._recv_waiter = None
            if not w.done():
                w.set_result(None)


def _ignore_result(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


# fire() builders: (client, target, *args) -> queue the command with target


def _fire_simple(conv: Any, line: Callable[..., bytes]) -> Callable[..., Any]:
    def build(c: Client, target: _Fired, *args: Any, **kw: Any) -> Any:
        return c._submit_fired(line(*args, **kw), conv, target)
    return build


def _fire_store(cmd: bytes) -> Callable[..., Any]:
    def build(c: Client, target: _Fired, key: Key, value: Any, *, flags: int = 0,
              exptime: int = 0, noreply: bool = False) -> Any:
        key = _key(key)
        value = check_value(value)
        n = memoryview(value).nbytes
        if n != len(value):
            value = memoryview(value).cast("B")
        return c._submit_fired(b"%b %b %d %d %d\r\n" % (cmd, key, flags, exptime, n),
                               _c_stored, target, value)
    return build


def _fire_cas(c: Client, target: _Fired, key: Key, value: Any, cas: int, *, flags: int = 0,
              exptime: int = 0, noreply: bool = False) -> Any:
    key = _key(key)
    value = check_value(value)
    n = memoryview(value).nbytes
    return c._submit_fired(b"cas %b %d %d %d %d\r\n" % (key, flags, exptime, n, cas),
                           _c_cas, target, value)


def _arith_line(cmd: bytes) -> Callable[..., bytes]:
    def line(key: Key, delta: int = 1, *, noreply: bool = False) -> bytes:
        if not isinstance(delta, int) or not 0 <= delta < 1 << 64:
            raise ValueError(f"delta must be an int in 0..2**64-1, got {delta!r}")
        return b"%b %b %d\r\n" % (cmd, _key(key), delta)
    return line


def _fire_meta(cmd: bytes, conv: Any, default: str) -> Callable[..., Any]:
    def build(c: Client, target: _Fired, key: Key, *flags: Any) -> Any:
        return c._meta(cmd, key, flags, conv, default, None, target)
    return build


def _fire_ms(c: Client, target: _Fired, key: Key, value: Any, *flags: Any) -> Any:
    return c._meta(b"ms", key, flags, _c_meta_set, "HD", value, target)


_FIRE_BUILDERS: Dict[str, Callable[..., Any]] = {
    "get": lambda c, target, key: c._get1(_key(key), _AS_VALUE, target),
    "get_item": lambda c, target, key: c._get1(_key(key), _AS_ITEM, target),
    "gets": lambda c, target, key: c._get1(_key(key), _AS_CAS_ITEM, target),
    "get_many": _fire_simple(_c_get_many,
                             lambda keys: b"get " + b" ".join(_key(k) for k in keys) + _CRLF),
    "gets_many": _fire_simple(_c_gets_many,
                              lambda keys: b"gets " + b" ".join(_key(k) for k in keys) + _CRLF),
    "set": _fire_store(b"set"),
    "add": _fire_store(b"add"),
    "replace": _fire_store(b"replace"),
    "append": _fire_store(b"append"),
    "prepend": _fire_store(b"prepend"),
    "cas": _fire_cas,
    "incr": _fire_simple(_c_incr, _arith_line(b"incr")),
    "decr": _fire_simple(_c_incr, _arith_line(b"decr")),
    "delete": _fire_simple(_c_deleted,
                           lambda key, *, noreply=False: b"delete " + _key(key) + _CRLF),
    "touch": _fire_simple(_c_touched, lambda key, exptime, *, noreply=False:
                          b"touch %b %d\r\n" % (_key(key), exptime)),
    "version": _fire_simple(_c_version, lambda: b"version\r\n"),
    "mg": _fire_meta(b"mg", _c_meta, "EN"),
    "ms": _fire_ms,
    "md": _fire_meta(b"md", _c_meta, "HD"),
    "ma": _fire_meta(b"ma", _c_meta, "HD"),
    "mn": _fire_simple(_c_mn, lambda: _MN),
}


# ---------------------------------------------------------------------------


def _split_addr(host: Any, port: Optional[int]) -> Tuple[str, int]:
    if port is None:
        return parse_address(host, default_port=11211)
    return str(host), int(port)


async def _open(host: Any, port: Optional[int], *, timeout: Optional[float] = None,
                ssl: Any = None, server_hostname: Optional[str] = None,
                max_value_size: int = DEFAULT_MAX_VALUE, max_in_flight: Optional[int] = None,
                reply_timeout: Optional[float] = None, zero_copy: bool = False,
                push_at: int = 16, max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> Client:
    from .._conn import api as _native
    addr = _split_addr(host, port)
    if ssl is not None and ssl is not False:
        import ssl as _ssl
        from .._conn import tls as _tls
        ctx = ssl if isinstance(ssl, _ssl.SSLContext) else _ssl.create_default_context()
        conn: Any = await _tls.connect_tls(addr, ssl_context=ctx,
                                           server_hostname=server_hostname or addr[0],
                                           timeout=timeout)
    else:
        conn = await _native.connect(addr, timeout=timeout)
    return Client(conn, address=addr, max_value_size=max_value_size,
                  max_reply_bytes=max_reply_bytes,
                  max_in_flight=max_in_flight, reply_timeout=reply_timeout,
                  zero_copy=zero_copy, push_at=push_at)


class _Connecting:
    """`connect()`'s result: await it for a Client, or use it in ``async with``."""

    __slots__ = ("_coro", "_client")

    def __init__(self, coro: Any) -> None:
        self._coro = coro
        self._client: Optional[Client] = None

    def __await__(self) -> Any:
        return self._coro.__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._coro
        return self._client

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.close()


def connect(host: Any = "127.0.0.1", port: Optional[int] = None, *,
            timeout: Optional[float] = None, ssl: Any = None,
            server_hostname: Optional[str] = None,
            max_value_size: int = DEFAULT_MAX_VALUE, max_in_flight: Optional[int] = None,
            reply_timeout: Optional[float] = None, zero_copy: bool = False,
            push_at: int = 16,
            max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> _Connecting:
    """Connect to memcached: ``client = await connect(host, port)`` or
    ``async with connect(host, port) as client``.

    `host` may also be ``"host:port"`` or ``(host, port)``; the port defaults
    to 11211. `timeout` bounds the connect. `ssl`: an `ssl.SSLContext` (or
    True for the default context) for TLS. `max_value_size` caps the size of
    a value in a reply (a bigger one is a ProtocolError that closes the
    connection). `max_reply_bytes` (64 MiB) caps what one multi-line reply
    (VALUE... or STAT... before its END) may hold while it is incomplete
    (wire bytes plus 192 per record; beyond it a ProtocolError naming it
    closes the connection). `max_in_flight` bounds `fire()`. `reply_timeout`: fail the
    connection when commands are pending and no reply came for that long.
    `zero_copy`: values in replies are read-only memoryviews of the receive
    buffer (`conn.with_bytes`) instead of bytes copies.
    `push_at`: when this many commands (a merged get counts each caller)
    were queued in one loop iteration, they are handed to the kernel at once,
    so memcached works on them while the next ones are built (0: everything
    goes out at the end of the iteration).
    Needs a running ringline event loop.
    """
    return _Connecting(_open(host, port, timeout=timeout, ssl=ssl,
                             server_hostname=server_hostname, max_value_size=max_value_size,
                             max_reply_bytes=max_reply_bytes,
                             max_in_flight=max_in_flight, reply_timeout=reply_timeout,
                             zero_copy=zero_copy, push_at=push_at))

