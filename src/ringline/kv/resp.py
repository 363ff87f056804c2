"""The server side of RESP: request parsing and reply encoding (sans-IO).

Owns: `RequestParser`, which turns received bytes into commands (lists of
bytes arguments) from both request forms Redis accepts (RESP arrays of bulk
strings, as every client library and redis-benchmark send, and inline
commands, space-separated on one line, as telnet and `redis-cli` in some
modes send), and `encode`, which turns a command's reply value into RESP2 or
RESP3 bytes.

Why not ringline.redis's reply parser: a request is a narrower grammar (only
arrays of bulk strings, or an inline line) with different limits (a server
refuses what a client accepts), and inline commands are not RESP replies at
all. The bounds are checked on the announced sizes, before any payload is
buffered.

Lifecycle: one RequestParser per connection; `feed(data)` is called with the
unconsumed bytes each time more arrive and returns the complete commands at
their start and how many bytes they took; an incomplete command stays in the
caller's buffer (its announced size is reported in `want` so the caller can
ask for that many bytes at once). A malformed or oversized request raises
`ProtocolError` whose text is the RESP error to send before closing (Redis
closes the connection after a protocol error too).

Bounds (`Limits`, documented knobs):
  max_bulk      bytes of one argument (default 8 MiB)
  max_args      arguments of one command (default 1,048,576)
  max_inline    bytes of one inline command line, and of an array or bulk
                header line (default 64 KiB, Redis' PROTO_INLINE_MAX_SIZE)
  max_request   bytes of one whole command (default 16 MiB): the runtime's
                receive accumulator is sized from it, so no request ever
                needs more buffering than the connection allows

Reply values (what commands return) and their encodings:
  bytes                  bulk string
  int                    integer
  None                   null bulk ($-1 / _)
  NULL_ARRAY             null array (*-1 / _)
  list / tuple           array
  Simple(text)           simple string (+text)
  Error(text)            error (-text)
  Map(pairs)             RESP3 map (%), a flat array in RESP2
  SetReply(items)        RESP3 set (~), an array in RESP2
"""
from __future__ import annotations

from typing import Any, Iterable, List, NamedTuple, Optional, Tuple

__all__ = ["Limits", "ProtocolError", "RequestParser", "Simple", "Error", "Map",
           "SetReply", "NULL_ARRAY", "encode", "OK", "PONG", "QUEUED"]


class ProtocolError(Exception):
    """A request that cannot be parsed; str(exc) is the RESP error text."""


class Limits(NamedTuple):
    max_bulk: int = 8 << 20
    max_args: int = 1 << 20
    max_inline: int = 64 << 10
    max_request: int = 16 << 20


class Simple(bytes):
    """A simple string reply."""


class Error(bytes):
    """An error reply (its text, without the leading '-')."""


class Map(list):
    """A map reply: a flat [k1, v1, k2, v2, ...] list."""


class SetReply(list):
    """A set reply."""


class _NullArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY = _NullArray()
OK = Simple(b"OK")
PONG = Simple(b"PONG")
QUEUED = Simple(b"QUEUED")


def _parse_len(line: bytes) -> Optional[int]:
    """A decimal length/count field, or None when it is not one."""
    if not line or len(line) > 20:
        return None
    if line[:1] == b"-":
        body = line[1:]
        if not body.isdigit():
            return None
        return -int(body)
    if not line.isdigit():
        return None
    return int(line)


def _split_inline(line: bytes) -> List[bytes]:
    """Split an inline command the way Redis does for the common cases:
    whitespace-separated words, double-quoted words with backslash escapes
    and single-quoted words. Unbalanced quotes are a protocol error."""
    out: List[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t":
            i += 1
        if i >= n:
            return out
        c = line[i]
        if c == 0x22 or c == 0x27:          # " or '
            quote = c
            i += 1
            word = bytearray()
            while True:
                if i >= n:
                    raise ProtocolError("ERR Protocol error: unbalanced quotes in request")
                ch = line[i]
                if ch == 0x5C and quote == 0x22 and i + 1 < n:     # backslash
                    nxt = line[i + 1]
                    if nxt == 0x78 and i + 3 < n:                   # \xHH
                        try:
                            word.append(int(line[i + 2:i + 4], 16))
                            i += 4
                            continue
                        except ValueError:
                            pass
                    word.append({0x6E: 10, 0x72: 13, 0x74: 9, 0x62: 8, 0x61: 7}.get(nxt, nxt))
                    i += 2
                    continue
                if ch == 0x5C and quote == 0x27 and i + 1 < n and line[i + 1] == 0x27:
                    word.append(0x27)
                    i += 2
                    continue
                if ch == quote:
                    i += 1
                    if i < n and line[i] not in b" \t":
                        raise ProtocolError("ERR Protocol error: unbalanced quotes in request")
                    break
                word.append(ch)
                i += 1
            out.append(bytes(word))
        else:
            j = i
            while j < n and line[j] not in b" \t":
                j += 1
            out.append(line[i:j])
            i = j


class RequestParser:
    """Incremental request parser of one connection (see the module doc)."""

    __slots__ = ("limits", "want", "error")

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.want = 0       # bytes the first incomplete command needs (0: unknown)
        self.error: Optional[ProtocolError] = None

    def feed(self, data: bytes) -> Tuple[List[List[bytes]], int]:
        """Parse the complete commands at the start of data: (commands,
        bytes consumed). A malformed request ends the parse: the commands
        before it are returned and `error` holds the ProtocolError (the
        caller runs them, replies the error, closes)."""
        cmds: List[List[bytes]] = []
        try:
            return self._feed(data, cmds)
        except ProtocolError as exc:
            self.error = exc
            return cmds, len(data)

    def _feed(self, data: bytes, cmds: List[List[bytes]]) -> Tuple[List[List[bytes]], int]:
        pos = 0
        n = len(data)
        lim = self.limits
        max_bulk, max_inline, max_request = lim.max_bulk, lim.max_inline, lim.max_request
        find = data.find
        self.want = 0
        while pos < n:
            start = pos
            if data[pos] != 0x2A:                    # '*': else an inline command
                eol = data.find(b"\n", pos)
                if eol < 0:
                    if n - pos > lim.max_inline:
                        raise ProtocolError("ERR Protocol error: too big inline request")
                    break
                if eol - pos > lim.max_inline:
                    raise ProtocolError("ERR Protocol error: too big inline request")
                line = data[pos:eol]
                if line.endswith(b"\r"):
                    line = line[:-1]
                pos = eol + 1
                args = _split_inline(line)
                if args:
                    cmds.append(args)
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                if n - pos > lim.max_inline:
                    raise ProtocolError("ERR Protocol error: too big mbulk count string")
                break
            count = _parse_len(data[pos + 1:eol])
            if count is None or count > lim.max_args:
                raise ProtocolError("ERR Protocol error: invalid multibulk length")
            pos = eol + 2
            if count <= 0:
                continue                             # '*0' / '*-1': nothing to run
            args = []
            complete = True
            for _ in range(count):
                if pos >= n:
                    complete = False
                    break
                if data[pos] != 0x24:                # '$'
                    raise ProtocolError(
                        "ERR Protocol error: expected '$', got '%s'" % chr(data[pos]))
                eol = find(b"\r\n", pos)
                if eol < 0:
                    if n - pos > max_inline:
                        raise ProtocolError("ERR Protocol error: too big bulk count string")
                    complete = False
                    break
                field = data[pos + 1:eol]
                # Redis' string2ll: digits only, no sign, no leading zero
                if not field.isdigit() or len(field) > 19 or \
                        (field[0] == 0x30 and len(field) > 1):
                    raise ProtocolError("ERR Protocol error: invalid bulk length")
                size = int(field)
                if size > max_bulk:
                    raise ProtocolError("ERR Protocol error: invalid bulk length")
                body = eol + 2
                end = body + size
                if end + 2 > n:
                    if end + 2 - start > max_request:
                        raise ProtocolError("ERR Protocol error: request too big")
                    self.want = end + 2 - start
                    complete = False
                    break
                if not data.startswith(b"\r\n", end):
                    raise ProtocolError("ERR Protocol error: bulk string not terminated by CRLF")
                args.append(data[body:end])
                pos = end + 2
            if complete and pos - start > max_request:
                raise ProtocolError("ERR Protocol error: request too big")
            if not complete:
                if n - start > lim.max_request:
                    raise ProtocolError("ERR Protocol error: request too big")
                pos = start
                break
            cmds.append(args)
        return cmds, pos


# ---------------------------------------------------------------------------
# reply encoding

_INT_CACHE = [b":%d\r\n" % i for i in range(256)]


def _enc(v: Any, proto: int, out: List[bytes]) -> None:
    t = type(v)
    if t is bytes:
        out.append(b"$%d\r\n" % len(v))
        out.append(v)
        out.append(b"\r\n")
    elif t is int:
        out.append(_INT_CACHE[v] if 0 <= v < 256 else b":%d\r\n" % v)
    elif v is None:
        out.append(b"_\r\n" if proto == 3 else b"$-1\r\n")
    elif t is Simple:
        out.append(b"+" + v + b"\r\n")
    elif t is Error:
        out.append(b"-" + v + b"\r\n")
    elif t is Map:
        if proto == 3:
            out.append(b"%%%d\r\n" % (len(v) // 2))
        else:
            out.append(b"*%d\r\n" % len(v))
        for item in v:
            _enc(item, proto, out)
    elif t is SetReply:
        out.append((b"~%d\r\n" if proto == 3 else b"*%d\r\n") % len(v))
        for item in v:
            _enc(item, proto, out)
    elif t is list or t is tuple:
        out.append(b"*%d\r\n" % len(v))
        for item in v:
            _enc(item, proto, out)
    elif v is NULL_ARRAY:
        out.append(b"_\r\n" if proto == 3 else b"*-1\r\n")
    elif t is bool:
        if proto == 3:
            out.append(b"#t\r\n" if v else b"#f\r\n")
        else:
            out.append(b":1\r\n" if v else b":0\r\n")
    elif t is float:
        text = repr(v).encode()
        out.append(b"," + text + b"\r\n" if proto == 3 else b"$%d\r\n%s\r\n" % (len(text), text))
    elif isinstance(v, (bytes, bytearray, memoryview)):
        _enc(bytes(v), proto, out)
    else:
        raise TypeError(f"cannot encode a {t.__name__} reply")


def encode(v: Any, proto: int = 2) -> bytes:
    """The RESP2 (proto=2) or RESP3 (proto=3) bytes of one reply value."""
    t = type(v)
    if t is Simple:
        return b"+" + v + b"\r\n"
    if t is bytes:
        return b"$%d\r\n%s\r\n" % (len(v), v)
    if t is int:
        return _INT_CACHE[v] if 0 <= v < 256 else b":%d\r\n" % v
    out: List[bytes] = []
    _enc(v, proto, out)
    return b"".join(out)


def encode_all(values: Iterable[Any], proto: int = 2) -> bytes:
    out: List[bytes] = []
    for v in values:
        _enc(v, proto, out)
    return b"".join(out)
