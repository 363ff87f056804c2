"""Matching memcache replies to commands, without I/O: the reply conversions
and the state machine of the command FIFO (quiet runs, merged gets,
fire/recv results).

Owns: the converters (a parsed reply -> a command's result, or the error it
raises), the FIFO entries beyond plain futures (`_Quiet` for quiet meta
commands and the ``mn`` that closes a run of them, `_Fired` for fire/recv,
`_GetBatch` for merged single-key gets) and `ReplyMatcher`, which holds the
FIFO and resolves its entries from the replies `ResponseParser` produces
(bytes in, replies out there; replies in, resolved targets out here). The
client (`_client.py`) owns everything that touches the Conn, the loop or a
timer, and only appends to the FIFO and hands replies over.

Targets are anything with the future interface (``done()``,
``set_result()``, ``set_exception()``: an asyncio.Future in the client, any
Future in the tests) or a `_Fired`, whose ``(tag, result)`` goes to
`ReplyMatcher.done` (and `wake` is called, so a recv() can be woken).

Lifecycle: one ReplyMatcher per connection, created with the client;
`expect()` entries as commands go out, `dispatch()` each batch of parsed
replies; `fail()` once when the connection fails, after which it is not used
again.

Invariants: replies resolve entries strictly in FIFO order; a reply that
does not fit the entry at the head (or arrives with nothing pending) raises
ProtocolError, and the command it was popped for gets that error too
(`blamed`), so it is never left unresolved; a ReplyError fails only its own
command (every caller of a merged get); a quiet command whose reply did not
come before a later reply or the closing ``MN`` got the suppressed success
(EN for mg, HD otherwise); an error after a classic noreply command is
counted (`noreply_errors`) and logged, never handed to another command; a
target already done (its caller gave up) still has its reply checked, then
the reply is dropped.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Tuple

from .. import _errors
from ._proto import ClientError, Item, MetaResult, ProtocolError, ReplyError

__all__ = ["ReplyMatcher"]

_log = logging.getLogger("ringline.memcache")

# concurrent single-key gets are merged into one ``get k1 k2 ...`` line of at
# most this many keys and (about) this many bytes
_BATCH_KEYS = 1000
_BATCH_BYTES = 8000
_MN = b"mn\r\n"

# ---------------------------------------------------------------------------
# reply converters: reply -> result, or raise. A ReplyError fails only its own
# command; a ProtocolError (a reply that does not fit) closes the connection.


def _not_convertible(r: Any, exc: BaseException) -> ProtocolError:
    """The error for a reply a converter could not turn into a result (the
    command it was popped for gets it: never left unresolved)."""
    return ProtocolError(f"reply {repr(r)[:80]} could not be converted: {exc!r}"[:300])


def _unexpected(r: Any, what: str) -> Any:
    if isinstance(r, ReplyError):
        raise r
    if isinstance(r, ProtocolError):
        raise r
    raise ProtocolError(f"unexpected reply {r!r} to {what}")


def _c_get(r: Any) -> Any:
    if r.__class__ is list:
        return r[0][2] if r else None
    return _unexpected(r, "get")


def _c_get_item(r: Any) -> Any:
    if r.__class__ is list:
        if not r:
            return None
        k, f, v, c = r[0]
        return Item(k, v, f, c)
    return _unexpected(r, "gets")


# what a merged-get caller wants from its item (see _GetBatch.entries)
_AS_VALUE = 0        # get: the value or None
_AS_ITEM = 1         # get_item: Item without cas
_AS_CAS_ITEM = 2     # gets: Item with cas


def _convert_item(it: Any, kind: int) -> Any:
    """A merged-get caller's result from its VALUE item (None: a miss)."""
    if it is None:
        return None
    if kind == _AS_VALUE:
        return it[2]
    k, f, v, c = it
    return Item(k, v, f, c if kind == _AS_CAS_ITEM else None)


def _c_get_many(r: Any) -> Any:
    if r.__class__ is list:
        return {k: v for k, _, v, _ in r}
    return _unexpected(r, "get_many")


def _c_gets_many(r: Any) -> Any:
    if r.__class__ is list:
        return {k: Item(k, v, f, c) for k, f, v, c in r}
    return _unexpected(r, "gets_many")


def _storage_error(r: Any, what: str) -> Any:
    if r.__class__ is ClientError:
        raise ProtocolError(f"{what}: memcached answered {r.line!r}; the value may have been "
                            "read as a command, so the connection is closed")
    return _unexpected(r, what)


_NO = object()


def _status_conv(what: str, results: Dict[bytes, Any],
                 on_other: Callable[[Any, str], Any]) -> Callable[[Any], Any]:
    """A converter of a classic status-line reply: `results` maps each
    expected line to the command's result; anything else goes to `on_other`
    (`_unexpected`, or `_storage_error` for commands with a data block)."""
    get = results.get

    def conv(r: Any) -> Any:
        if r.__class__ is bytes:
            v = get(r, _NO)
            if v is not _NO:
                return v
        return on_other(r, what)
    return conv


_c_stored = _status_conv("a storage command", {b"STORED": True, b"NOT_STORED": False},
                         _storage_error)
_c_cas = _status_conv("cas", {b"STORED": True, b"EXISTS": False, b"NOT_FOUND": None},
                      _storage_error)
_c_deleted = _status_conv("delete", {b"DELETED": True, b"NOT_FOUND": False}, _unexpected)
_c_touched = _status_conv("touch", {b"TOUCHED": True, b"NOT_FOUND": False}, _unexpected)
_c_ok = _status_conv("flush_all/verbosity", {b"OK": None}, _unexpected)


def _c_incr(r: Any) -> Any:
    if r.__class__ is bytes:
        if r.isdigit():
            return int(r)
        if r == b"NOT_FOUND":
            return None
    return _unexpected(r, "incr/decr")


def _c_version(r: Any) -> Any:
    if r.__class__ is bytes and r.startswith(b"VERSION "):
        return r[8:].decode("ascii", "replace")
    return _unexpected(r, "version")


def _c_stats(r: Any) -> Any:
    if r.__class__ is dict:
        return r
    if r.__class__ is list and not r:
        return {}
    return _unexpected(r, "stats")


def _c_meta(r: Any) -> Any:
    if r.__class__ is MetaResult and r.status != "MN":
        return r
    return _unexpected(r, "a meta command")


def _c_meta_set(r: Any) -> Any:
    if r.__class__ is MetaResult and r.status != "MN":
        return r
    return _storage_error(r, "ms")


def _c_mn(r: Any) -> Any:
    if r.__class__ is MetaResult and r.status == "MN":
        return None
    return _unexpected(r, "mn")


class _Quiet:
    """A FIFO entry of a quiet meta command (see the module docstring)."""
    __slots__ = ("opaque", "default", "conv")

    def __init__(self, opaque: str, default: str, conv: Callable[[Any], Any]) -> None:
        self.opaque = opaque
        self.default = default
        self.conv = conv


_SYNC = _Quiet("", "MN", _c_mn)     # the mn closing a run of quiet commands


class _Fired:
    """The target of a fire()d command: its result goes to recv() with tag."""
    __slots__ = ("tag",)

    def __init__(self, tag: Any) -> None:
        self.tag = tag


class _GetBatch:
    """The single-key gets (get, get_item, gets) queued in a row during one
    loop iteration: sent as one ``get``/``gets k1 k2 ...`` line, answered by
    one VALUE... END reply, one FIFO slot.

    `keys` holds the distinct keys in order (a dict used as an ordered set),
    `entries` one ``(key, kind, target)`` per caller in call order (target: a
    future or a _Fired), `room` the bytes the line may still grow by, `cas`
    whether some caller needs cas (then the line is ``gets``)."""
    __slots__ = ("keys", "entries", "room", "cas")

    def __init__(self) -> None:
        self.keys: Dict[bytes, None] = {}
        self.entries: List[Tuple[bytes, int, Any]] = []
        self.room = _BATCH_BYTES - 7          # "gets " + CRLF
        self.cas = False

    def add(self, key: bytes, kind: int, target: Any) -> bool:
        """One more caller; False (and nothing added) when the line has no
        room for `key` (then the caller starts a new batch)."""
        keys = self.keys
        if key not in keys:
            room = self.room - len(key) - 1
            if room < 0 or len(keys) >= _BATCH_KEYS:
                return False
            keys[key] = None
            self.room = room
        if kind == _AS_CAS_ITEM:
            self.cas = True
        self.entries.append((key, kind, target))
        return True

    def line(self) -> bytes:
        """The request line of the merged get."""
        return (b"gets " if self.cas else b"get ") + b" ".join(self.keys) + b"\r\n"


def _BATCH(r: Any) -> Any:    # the FIFO conv of a _GetBatch (never called)
    raise AssertionError("a merged get is delivered by ReplyMatcher._deliver_batch")


def _no_wake() -> None:
    pass


class ReplyMatcher:
    """The FIFO of commands awaiting replies and its state machine (see the
    module docstring).

    `fifo` holds ``(conv, target)`` pairs: `conv` a converter, a `_Quiet`
    (then `target` may be None for the `_SYNC` mn) or `_BATCH` (then
    `target` is the `_GetBatch`). `done` holds the ``(tag, result)`` of fired
    commands until recv() takes them. `progress` counts dispatched batches
    (the reply watchdog compares it). `quiet_open` is True while a run of
    quiet commands has not been closed by its ``mn`` yet."""

    __slots__ = ("fifo", "done", "wake", "address", "blamed", "quiet_open", "opaque",
                 "noreply_errors", "progress")

    def __init__(self, address: Any = None, wake: Callable[[], None] = _no_wake) -> None:
        self.fifo: Deque[Tuple[Any, Any]] = deque()
        self.done: Deque[Tuple[Any, Any]] = deque()
        self.wake = wake
        self.address = address
        self.blamed = False
        self.quiet_open = False
        self.opaque = 0
        self.noreply_errors = 0
        self.progress = 0

    # -- commands going out -----------------------------------------------------

    def expect(self, conv: Any, target: Any) -> None:
        """A command was sent: its reply goes through `conv` to `target`."""
        self.fifo.append((conv, target))

    def quiet_entry(self, tokens: List[str], default: str,
                    conv: Callable[[Any], Any]) -> _Quiet:
        """The FIFO entry of a quiet meta command with flag `tokens`; adds an
        opaque token (``O<hex>``) to `tokens` when the caller gave none, so
        its reply, if any, can be told apart."""
        opaque = None
        for t in tokens:
            if t[0] == "O":
                opaque = t[1:]
        if opaque is None:
            self.opaque = (self.opaque + 1) & 0xFFFFFFFF
            opaque = "%x" % self.opaque
            tokens.append("O" + opaque)
        return _Quiet(opaque, default, conv)

    def close_quiet_run(self) -> None:
        """The ``mn`` closing the open quiet run was sent: its MN is the sync
        point."""
        self.quiet_open = False
        self.fifo.append((_SYNC, None))

    # -- replies coming in ------------------------------------------------------

    def dispatch(self, replies: List[Any]) -> None:
        """Resolve FIFO entries from `replies` (in order); raises
        ProtocolError on a reply that does not fit (see the invariants)."""
        pending = self.fifo
        self.progress += 1
        popleft = pending.popleft
        for r in replies:
            try:
                conv, target = popleft()
            except IndexError:
                raise ProtocolError(f"unsolicited reply {r!r} (no command pending)") from None
            if conv.__class__ is _Quiet:
                pending.appendleft((conv, target))
                self._dispatch_quiet(r)
                continue
            self._deliver(conv, target, r)

    @staticmethod
    def _check_only(conv: Any, r: Any) -> None:
        try:
            conv(r)
        except ReplyError:
            pass
        except ProtocolError:
            raise
        except Exception as exc:
            raise _not_convertible(r, exc) from exc

    def _deliver(self, conv: Any, target: Any, r: Any) -> None:
        """Resolve one entry (not a _Quiet) with its reply."""
        if conv is _BATCH:
            self._deliver_batch(target, r)
            return
        if target.__class__ is _Fired:
            self._deliver_fired(conv, target, r)
            return
        if target.done():
            self._check_only(conv, r)
            return
        try:
            value = conv(r)
        except ReplyError as e:
            target.set_exception(e)
        except ProtocolError as e:
            self.blamed = True
            target.set_exception(e)
            raise
        except Exception as exc:
            self.blamed = True
            err = _not_convertible(r, exc)
            target.set_exception(err)
            raise err from exc
        else:
            target.set_result(value)

    def _deliver_fired(self, conv: Any, target: _Fired, r: Any) -> None:
        try:
            value = conv(r)
        except ReplyError as e:
            value = e
        except ProtocolError as e:
            self.blamed = True
            self.done.append((target.tag, e))
            self.wake()
            raise
        except Exception as exc:
            self.blamed = True
            err = _not_convertible(r, exc)
            self.done.append((target.tag, err))
            self.wake()
            raise err from exc
        self.done.append((target.tag, value))
        self.wake()

    def _deliver_batch(self, b: _GetBatch, r: Any) -> None:
        """Hand a merged get's reply to each of its callers."""
        entries = b.entries
        if r.__class__ is not list:
            if isinstance(r, ReplyError):          # every caller gets the error
                for _, _, target in entries:
                    self.put(target, r.__class__(r.line), True)
                return
            self._fail_batch(b, r if isinstance(r, ProtocolError) else ProtocolError(
                f"unexpected reply {r!r} to {'gets' if b.cas else 'get'}"))
        got = {it[0]: it for it in r}
        if len(got) != len(r) or not got.keys() <= b.keys.keys():
            self._fail_batch(b, ProtocolError(
                f"reply to {'gets' if b.cas else 'get'} {b' '.join(b.keys)[:80]!r} has "
                f"VALUE lines for keys {[it[0] for it in r][:10]!r}: not the ones asked for"))
        get = got.get
        for key, kind, target in entries:
            if target.__class__ is not _Fired:
                if target.done():              # the caller gave up (cancelled)
                    continue
                if kind == _AS_VALUE:
                    it = get(key)
                    target.set_result(it[2] if it is not None else None)
                    continue
            self.put(target, _convert_item(get(key), kind), False)

    def _fail_batch(self, b: _GetBatch, err: ProtocolError) -> None:
        """A merged get's reply broke the stream: every caller gets `err`,
        which then closes the connection."""
        self.blamed = True
        for _, _, target in b.entries:
            self.put(target, err, True)
        raise err

    def put(self, target: Any, value: Any, error: bool) -> None:
        """A result (or with `error` an exception) for a future or a _Fired."""
        if target.__class__ is _Fired:
            self.done.append((target.tag, value))
            self.wake()
        elif not target.done():
            if error:
                target.set_exception(value)
            else:
                target.set_result(value)

    def _dispatch_quiet(self, r: Any) -> None:
        pending = self.fifo
        while pending:
            conv, target = pending[0]
            if conv is _SYNC:
                if r.__class__ is MetaResult and r.status == "MN":
                    pending.popleft()
                    return
                if isinstance(r, ReplyError):
                    self.noreply_errors += 1
                    _log.warning("memcache %s: error after a noreply command: %s",
                                 self.address, r)
                    return
                raise ProtocolError(f"unexpected reply {r!r} after noreply commands")
            if conv.__class__ is not _Quiet:
                pending.popleft()
                self._deliver(conv, target, r)
                return
            if r.__class__ is MetaResult:
                if r.status != "MN" and r.flags.get("O") == conv.opaque:
                    pending.popleft()
                    self._deliver(conv.conv, target, r)
                    return
            elif isinstance(r, ReplyError):
                pending.popleft()
                self._deliver(conv.conv, target, r)
                return
            else:
                raise ProtocolError(f"unexpected reply {r!r} to a quiet meta command")
            # no reply of its own came before this one: its success was suppressed
            pending.popleft()
            self._deliver(conv.conv, target, MetaResult(conv.default, {}))
        raise ProtocolError(f"unsolicited reply {r!r} (no command pending)")

    # -- failure ----------------------------------------------------------------

    def closed_error(self, exc: BaseException) -> BaseException:
        """The ConnectionClosed a command gets once the connection failed
        with `exc`."""
        if isinstance(exc, _errors.ConnectionClosed) and not isinstance(
                exc, (ProtocolError, TimeoutError)):
            err = _errors.ConnectionClosed(f"memcache connection to {self.address} is closed: "
                                           f"{exc}")
        else:
            err = _errors.ConnectionClosed(
                f"memcache connection to {self.address} was closed after "
                f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err

    def fail(self, exc: BaseException) -> None:
        """The connection failed with `exc`: every entry still in the FIFO
        gets an error. The head gets `exc` itself when its reply broke the
        stream (a ProtocolError or a reply timeout) and it was not blamed
        already; every other one a ConnectionClosed caused by `exc`."""
        pending = list(self.fifo)
        self.fifo.clear()
        first = not self.blamed     # the head's reply broke: it gets exc itself
        for conv, target in pending:
            if target is None:
                continue
            if first and isinstance(exc, (ProtocolError, TimeoutError)):
                err: BaseException = exc      # the command whose reply broke
            else:
                err = self.closed_error(exc)
            first = False
            if conv is _BATCH:                # every caller of a merged get
                for _, _, t in target.entries:
                    self.put(t, err, True)
                continue
            if target.__class__ is _Fired:
                self.done.append((target.tag, err))
            elif not target.done():
                target.set_exception(err)
        self.wake()

