"""The sans-IO RESP core: command encoder and incremental RESP2/RESP3 parser.

Owns: turning command arguments into request bytes (``encode_command``) and
turning received bytes into reply values (``Parser``). No sockets, no event
loop: bytes in, values out, so every path is testable with plain buffers.

Encoding: each argument becomes a bulk string. ``bytes`` go as they are,
``str`` as UTF-8, ``int`` in decimal, ``float`` by ``repr`` (the shortest
string that round-trips; ``inf``/``-inf`` are accepted by Redis), other
buffers (bytearray, memoryview) by copy. ``bool`` and ``None`` are refused:
they have no single obvious wire form.

Parser lifecycle: ``Parser.parse(buf)`` parses one reply from the start of
``buf`` and returns ``(value, consumed)``. When ``buf`` holds only part of a
reply it returns ``(NEED_MORE, consumed)``: the bytes of every *completed*
element of an unfinished aggregate are absorbed into the parser's stack (so a
huge array arriving in many pieces is parsed once, not re-scanned from its
start each time), the caller drops ``consumed`` bytes and calls again with
the rest once ``parser.want`` bytes (counted from the new start) are there.
A parse error raises ``ProtocolError``; the parser (and the stream) is then
unusable, the caller must close the connection.

Reply values (both protocols):
  simple string -> bytes          bulk string -> bytes, or a memoryview slice
  integer, big number -> int        of the caller's buffer when at least
  null, nil bulk/array -> None      ``zero_copy_min`` long and a view was given
  double -> float                 boolean -> bool
  array -> list                   map -> dict (unhashable keys become tuples)
  set -> set                      push -> Push (a list subclass)
  verbatim -> bytes (the text after the 'txt:' style prefix)
  error, bulk error -> a ResponseError subclass instance (a value: it may be
  nested in an array; the client raises it when it is a command's reply)
  attribute -> dropped (kept in ``parser.attribute``); the value it annotates
  is returned.

Limits (knobs of ``Parser``, each violation is a ``ProtocolError`` that
names the knob; the caller closes the connection):
  max_depth         nesting of aggregates (default 64)
  max_bulk          bytes of one bulk string / verbatim / bulk error
                    (default 512 MiB, Redis' own proto-max-bulk-len; the
                    client is further bounded by recv_accumulator_cap)
  max_elements      elements announced by one aggregate (default 2**20:
                    at 64 accounted bytes or more per element, no more
                    than that fits max_reply_bytes, so a bigger header is
                    refused before anything is consumed)
  max_reply_bytes   memory one reply may hold in the parser while it is
                    incomplete (default 64 MiB, 4x the default receive
                    accumulator cap). Accounted as the reply's wire bytes
                    plus 256 per non-empty aggregate and, per element of
                    an aggregate, 64 (256 for an empty aggregate, 512 for
                    an error): over-estimates of the Python objects they
                    become (tracemalloc, CPython 3.11). Checked at every
                    aggregate header, when a parse call runs out of bytes
                    and when the reply completes (exactly), so the
                    outcome never depends on the split and a peer cannot
                    make the client hold much more than this
  max_line          bytes of one header or simple line (default 64 KiB)
  max_bignum_digits digits of a RESP3 big number (default 4300, Python's
                    own int_max_str_digits default; longer ones are
                    converted piecewise, whatever sys.set_int_max_str_digits
                    says)
Length and count fields longer than 20 digits, and integers (``:``) longer
than 20 characters (a RESP integer is 64-bit), are ProtocolErrors too.

Line syntax: a line ends at the first CRLF; a bare CR or LF inside a simple
string or error line is a ProtocolError, whatever the chunking (hiredis
rejects them too: "Bad simple string value"). Map keys and set members
are never memoryviews: a zero-copy bulk in that position is copied to
bytes, so they are always hashable.

Window protocol (used by the client glue, optional for other callers):
``parse_at(data, pos, view, n)`` reads headers from ``data`` (bytes, a copy
of ``view[:len(data)]``) and bulk payloads from ``view`` (``n`` bytes), so a
receive buffer holding a large value is never copied just to find the next
header. When a header runs past the end of ``data`` while ``view`` has more,
it returns NEED_MORE with ``want == 0`` ("give me a new window"), never a
request for more network bytes.

Invariants: bytes in, values out (no I/O); the values a byte stream parses
to, and whether it is a ProtocolError, never depend on how the stream was
split into chunks; a ProtocolError is final for its stream (the caller
closes the connection rather than parse on).
"""
from __future__ import annotations

import re
from typing import Any, List, Optional, Tuple

from ._errors import ProtocolError, error_from_reply

__all__ = ["NEED_MORE", "Push", "Parser", "encode_command", "encode_commands",
           "encode_arg", "DEFAULT_MAX_DEPTH", "DEFAULT_MAX_BULK",
           "DEFAULT_MAX_ELEMENTS", "DEFAULT_MAX_LINE", "DEFAULT_ZERO_COPY_MIN",
           "DEFAULT_MAX_REPLY_BYTES", "DEFAULT_MAX_BIGNUM_DIGITS"]

DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_BULK = 512 << 20
DEFAULT_MAX_ELEMENTS = 1 << 20
DEFAULT_MAX_LINE = 64 << 10
DEFAULT_ZERO_COPY_MIN = 16 << 10
DEFAULT_MAX_REPLY_BYTES = 64 << 20
DEFAULT_MAX_BIGNUM_DIGITS = 4300

# what an element of an incomplete reply is charged against max_reply_bytes
# on top of its wire bytes (the redis._scan vetting scanner charges the same)
SCALAR_COST = 64
AGGREGATE_COST = 256
ERROR_COST = 512
# length / count fields: more digits than this is a ProtocolError
_MAX_LEN_DIGITS = 20
# ':' integers are 64-bit: "-9223372036854775808" is 20 characters
_MAX_INT_CHARS = 20


class _NeedMore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"

    def __bool__(self) -> bool:
        return False


NEED_MORE: Any = _NeedMore()


class Push(list):
    """A RESP3 push message (out of band: pub/sub messages, invalidations).
    It is never the reply to a command."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Push({list.__repr__(self)})"


# -- encoding ---------------------------------------------------------------


def encode_arg(a: Any) -> bytes:
    """One argument's bytes (not framed)."""
    t = type(a)
    if t is bytes:
        return a
    if t is str:
        return a.encode()
    if t is int:
        return b"%d" % a
    if t is float:
        return repr(a).encode()
    if t is bool or a is None:
        raise TypeError(f"cannot send {a!r} to Redis: convert it to bytes, str, int or float")
    if isinstance(a, (bytearray, memoryview)):
        return bytes(a)
    if isinstance(a, str):
        return str(a).encode()
    if isinstance(a, int):
        return b"%d" % int(a)
    if isinstance(a, float):
        return repr(float(a)).encode()
    try:
        return bytes(memoryview(a))
    except TypeError:
        pass
    raise TypeError(f"cannot send a {t.__name__} to Redis: use bytes, str, int or float")


def encode_command(args: tuple | list) -> bytes:
    """A command (name and arguments) as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for a in args:
        t = type(a)
        if t is bytes:
            b = a
        elif t is str:
            b = a.encode()
        elif t is int:
            b = b"%d" % a
        else:
            b = encode_arg(a)
        append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(parts)


def encode_commands(commands) -> bytes:
    """Several commands back to back (a pipeline's request bytes)."""
    return b"".join([encode_command(c) for c in commands])


# -- parsing ----------------------------------------------------------------

_ARRAY, _MAP, _SET, _PUSH, _ATTR = range(5)
_AGG_KIND = {42: _ARRAY, 37: _MAP, 126: _SET, 62: _PUSH, 124: _ATTR}
_DOUBLE = re.compile(rb"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|nan)\Z",
                     re.IGNORECASE)
_FINISHED_ATTR: Any = object()
_BARE = "bare CR or LF inside a line"
_TYPE_BYTES = frozenset(b"$+:-*%~>|_,#(=!")


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple((_hashable(k), _hashable(x)) for k, x in v.items())
    if isinstance(v, set):
        return frozenset(v)
    if isinstance(v, memoryview):
        return v.tobytes()
    return v


def _to_dict(items: list) -> dict:
    it = iter(items)
    try:
        return dict(zip(it, it))
    except (TypeError, ValueError):     # ValueError: a writable memoryview
        it = iter(items)
        return {_hashable(k): v for k, v in zip(it, it)}


def _to_set(items: list) -> set:
    try:
        return set(items)
    except (TypeError, ValueError):
        return {_hashable(x) for x in items}


def _long_int(s: bytes) -> int:
    """int(s) for a digit string of any length (sign allowed), in pieces
    that stay under every possible sys.get_int_max_str_digits()."""
    neg = s[:1] == b"-"
    if s[:1] in (b"-", b"+"):
        s = s[1:]
    v = 0
    for i in range(0, len(s), 600):
        piece = s[i:i + 600]
        v = v * 10 ** len(piece) + int(piece)
    return -v if neg else v


def _key_bytes(frame: list, value: Any) -> Any:
    # a zero-copy view about to become a map key or a set member: bytes
    kind = frame[0]
    if kind == _SET or ((kind == _MAP or kind == _ATTR) and frame[1] % 2 == 0):
        return value.tobytes()
    return value


def _snippet(data: bytes, pos: int) -> str:
    return repr(bytes(data[pos:pos + 40]))


class Parser:
    """Incremental RESP2/RESP3 reply parser (see the module docstring)."""

    __slots__ = ("max_depth", "max_bulk", "max_elements", "max_line", "zero_copy_min",
                 "max_reply_bytes", "max_bignum_digits", "want", "attribute", "_stack",
                 "_used")

    def __init__(self, *, max_depth: int = DEFAULT_MAX_DEPTH,
                 max_bulk: int = DEFAULT_MAX_BULK,
                 max_elements: int = DEFAULT_MAX_ELEMENTS,
                 max_line: int = DEFAULT_MAX_LINE,
                 zero_copy_min: int = DEFAULT_ZERO_COPY_MIN,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
                 max_bignum_digits: int = DEFAULT_MAX_BIGNUM_DIGITS) -> None:
        for name, v in (("max_depth", max_depth), ("max_bulk", max_bulk),
                        ("max_elements", max_elements), ("max_line", max_line),
                        ("zero_copy_min", zero_copy_min),
                        ("max_reply_bytes", max_reply_bytes),
                        ("max_bignum_digits", max_bignum_digits)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.max_depth = max_depth
        self.max_bulk = max_bulk
        self.max_elements = max_elements
        self.max_line = max_line
        self.zero_copy_min = zero_copy_min
        self.max_reply_bytes = max_reply_bytes
        self.max_bignum_digits = max_bignum_digits
        self.want = 1
        self.attribute: Optional[dict] = None
        self._stack: List[list] = []
        self._used = 0          # accounted bytes of the reply in progress

    @property
    def partial(self) -> bool:
        """True while an aggregate is half parsed (its elements absorbed)."""
        return bool(self._stack)

    def reset(self) -> None:
        """Forget any partial reply (only useful after the stream was reset)."""
        self._stack.clear()
        self._used = 0
        self.want = 1
        self.attribute = None

    def parse(self, buf) -> Tuple[Any, int]:
        """Parse one reply from the start of buf (bytes-like). Returns
        (value, consumed) or (NEED_MORE, consumed); see the module docstring.
        A memoryview (or bytearray) buf lets large bulk strings come back as
        zero-copy slices of it: keep buf unchanged while you keep them."""
        if type(buf) is bytes:
            return self.parse_at(buf, 0, None, len(buf))
        view = memoryview(buf)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        return self.parse_at(view.tobytes(), 0, view, len(view))

    def _fail(self, what: str, data, pos: int) -> ProtocolError:
        self._stack.clear()
        self._used = 0
        return ProtocolError(f"invalid RESP reply: {what} at byte {pos} (near {_snippet(data, pos)})")

    def _need_line(self, data, pos: int, limit: int, n: int) -> Tuple[Any, int]:
        # no CRLF within max_line of pos: a bad type byte, too long, a bare
        # LF, or not here yet
        if data[pos] not in _TYPE_BYTES:
            raise self._fail(f"invalid type byte {bytes((data[pos],))!r}", data, pos)
        bound = pos + self.max_line + 2
        stop = min(limit, bound)
        # a CR in the last byte may still be followed by its LF; any other
        # CR or LF before the (missing) CRLF is bare, whatever comes next
        if data.find(b"\n", pos + 1, stop) >= 0 or data.find(b"\r", pos + 1, stop - 1) >= 0:
            raise self._fail(_BARE, data, pos)
        if limit >= bound:
            raise self._fail(f"line longer than max_line ({self.max_line} bytes)", data, pos)
        self.want = 0 if limit < n else limit - pos + 1
        return NEED_MORE, pos

    def parse_at(self, data: bytes, pos: int, view: Any, n: int) -> Tuple[Any, int]:
        """The window form of parse(): headers from data (bytes), bulk
        payloads from view (None: from data). Returns (value, new_pos) or
        (NEED_MORE, new_pos) with self.want set (0: new window needed)."""
        limit = len(data)
        if view is None:
            view = data
            n = limit
        stack = self._stack
        max_line = self.max_line
        # max_reply_bytes accounting (see the module docstring): wire bytes
        # are charged as position deltas from `mark` at aggregate pushes and
        # when a call suspends, 64 per element when its aggregate completes,
        # extras in the rare branches; nothing per scalar on the hot path.
        # Every check sees a partial sum of the reply's final total, and the
        # total is checked when the reply completes: the outcome does not
        # depend on how the bytes were split.
        used = self._used
        mark = pos
        max_reply = self.max_reply_bytes
        while True:
            if pos >= limit:
                self._suspend(used + pos - mark, data, pos)
                self.want = 0 if limit < n else 1
                return NEED_MORE, pos
            t = data[pos]
            e = data.find(b"\r\n", pos + 1, pos + max_line + 2)
            if e < 0:
                self._suspend(used + pos - mark, data, pos)
                return self._need_line(data, pos, limit, n)
            if t == 36 or t == 61 or t == 33:           # $ bulk, = verbatim, ! bulk error
                s = data[pos + 1:e]
                if s.isdigit():
                    if e - pos > 21:                    # _MAX_LEN_DIGITS + 1
                        raise self._fail(f"length field of {e - pos - 1} digits", data, pos)
                    ln = int(s)
                elif s == b"-1" and t == 36:
                    value = None
                    pos = e + 2
                    ln = -1
                else:
                    raise self._fail(f"invalid length {s[:40]!r}", data, pos)
                if ln >= 0:
                    if ln > self.max_bulk:
                        raise self._fail(f"bulk of {ln} bytes exceeds max_bulk ({self.max_bulk})",
                                         data, pos)
                    start_v = e + 2
                    end = start_v + ln
                    if end + 2 > n:
                        self._suspend(used + pos - mark, data, pos)
                        self.want = end + 2 - pos
                        return NEED_MORE, pos
                    if end + 2 <= limit:
                        if data[end] != 13 or data[end + 1] != 10:
                            raise self._fail("bulk string not followed by CRLF", data, end)
                        if ln < self.zero_copy_min or view is data:
                            value = data[start_v:end]
                        else:
                            value = view[start_v:end]
                            if stack:
                                value = _key_bytes(stack[-1], value)
                    else:
                        if view[end:end + 2] != b"\r\n":
                            raise self._fail("bulk string not followed by CRLF", data, pos)
                        value = view[start_v:end]
                        if ln < self.zero_copy_min:
                            value = bytes(value)
                        elif stack:
                            value = _key_bytes(stack[-1], value)
                    pos = end + 2
                    if t == 61:
                        if ln < 4 or value[3] != 58:
                            raise self._fail("verbatim string without a 'xxx:' format", data,
                                             start_v)
                        value = value[4:]
                    elif t == 33:
                        value = error_from_reply(bytes(value))
                        if stack:
                            used += ERROR_COST - SCALAR_COST
                            if used + pos - mark > max_reply:
                                raise self._fail(self._over_budget(), data, pos)
            elif t == 43:                                   # + simple string
                value = data[pos + 1:e]
                if 10 in value or 13 in value:
                    raise self._fail(_BARE, data, pos)
                pos = e + 2
            elif t == 58 or t == 40:                        # : integer, ( big number
                s = data[pos + 1:e]
                if not (s.isdigit() or (s[:1] in (b"-", b"+") and s[1:].isdigit())):
                    raise self._fail(f"invalid integer {s[:40]!r}", data, pos)
                if t == 58:
                    if e - pos > _MAX_INT_CHARS + 1:
                        raise self._fail(f"integer of {e - pos - 1} characters (a RESP "
                                         "integer is 64-bit)", data, pos)
                    value = int(s)
                else:
                    digits = e - pos - 1 - (s[0] < 48)
                    if digits > self.max_bignum_digits:
                        raise self._fail(f"big number of {digits} digits exceeds "
                                         f"max_bignum_digits ({self.max_bignum_digits})",
                                         data, pos)
                    value = int(s) if digits <= 600 else _long_int(s)
                pos = e + 2
            elif t == 45:                                   # - error
                s = data[pos + 1:e]
                if 10 in s or 13 in s:
                    raise self._fail(_BARE, data, pos)
                value = error_from_reply(s)
                pos = e + 2
                if stack:
                    used += ERROR_COST - SCALAR_COST
                    if used + pos - mark > max_reply:
                        raise self._fail(self._over_budget(), data, pos)
            elif t in _AGG_KIND:                            # * % ~ > |
                s = data[pos + 1:e]
                if s.isdigit():
                    if e - pos > _MAX_LEN_DIGITS + 1:
                        raise self._fail(f"aggregate length of {e - pos - 1} digits", data, pos)
                    count = int(s)
                elif s == b"-1" and (t == 42 or t == 37 or t == 126):
                    count = -1
                else:
                    raise self._fail(f"invalid aggregate length {s[:40]!r}", data, pos)
                if count > self.max_elements:
                    raise self._fail(f"aggregate of {count} elements exceeds max_elements "
                                     f"({self.max_elements})", data, pos)
                pos = e + 2
                if count < 0:
                    value = None
                else:
                    kind = _AGG_KIND[t]
                    if kind == _MAP or kind == _ATTR:
                        count *= 2
                    if count:
                        if len(stack) >= self.max_depth:
                            raise self._fail(f"aggregates nested deeper than max_depth "
                                             f"({self.max_depth})", data, pos)
                        used += pos - mark + AGGREGATE_COST
                        mark = pos
                        if used > max_reply:
                            raise self._fail(self._over_budget(), data, pos)
                        stack.append([kind, count, []])
                        continue
                    if stack:
                        used += AGGREGATE_COST - SCALAR_COST
                        if used + pos - mark > max_reply:
                            raise self._fail(self._over_budget(), data, pos)
                    value = self._finish(kind, [])
                    if value is _FINISHED_ATTR:
                        continue
            elif t == 95:                                   # _ null
                if e != pos + 1:
                    raise self._fail("null with a payload", data, pos)
                value = None
                pos = e + 2
            elif t == 44:                                   # , double
                s = data[pos + 1:e]
                if _DOUBLE.match(s) is None:
                    raise self._fail(f"invalid double {s[:40]!r}", data, pos)
                value = float(s)
                pos = e + 2
            elif t == 35:                                   # # boolean
                s = data[pos + 1:e]
                if s == b"t":
                    value = True
                elif s == b"f":
                    value = False
                else:
                    raise self._fail(f"invalid boolean {s[:40]!r}", data, pos)
                pos = e + 2
            else:
                raise self._fail(f"invalid type byte {bytes((t,))!r}", data, pos)
            # a value is complete: hand it to the enclosing aggregate(s)
            while stack:
                frame = stack[-1]
                items = frame[2]
                items.append(value)
                frame[1] -= 1
                if frame[1]:
                    break
                stack.pop()
                used += SCALAR_COST * len(items)
                value = self._finish(frame[0], items)
                if value is _FINISHED_ATTR:
                    break
            else:
                if used:                    # an aggregate reply: its total
                    self._used = 0
                    if used + pos - mark > max_reply:
                        raise self._fail(self._over_budget(), data, pos)
                return value, pos

    def _suspend(self, used: int, data: Any, pos: int) -> None:
        # a call returns NEED_MORE: keep the charge, check it with the
        # elements of the still open aggregates
        if self._stack:
            if used + SCALAR_COST * sum([len(f[2]) for f in self._stack]) > self.max_reply_bytes:
                raise self._fail(self._over_budget(), data, pos)
        self._used = used

    def _over_budget(self) -> str:
        return (f"reply exceeds max_reply_bytes ({self.max_reply_bytes} bytes of wire and "
                "element overhead held while incomplete)")

    def _finish(self, kind: int, items: list) -> Any:
        if kind == _ARRAY:
            return items
        if kind == _MAP:
            return _to_dict(items)
        if kind == _SET:
            return _to_set(items)
        if kind == _PUSH:
            return Push(items)
        self.attribute = _to_dict(items)
        return _FINISHED_ATTR

    def parse_all(self, buf) -> Tuple[list, int]:
        """Every complete reply at the start of buf: (values, consumed)."""
        out = []
        consumed = 0
        if type(buf) is bytes:
            data, view, n = buf, None, len(buf)
        else:
            view = memoryview(buf).cast("B")
            data, n = view.tobytes(), len(view)
        while consumed < n:
            value, pos = self.parse_at(data, consumed, view, n)
            consumed = pos
            if value is NEED_MORE:
                break
            out.append(value)
        return out, consumed
