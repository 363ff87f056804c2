"""The memcache ASCII protocol without I/O: key checks, command encoders and an
incremental reply parser (bytes in, replies out).

Owns: the wire format of memcached's text protocol (classic commands and the
meta commands mg/ms/md/ma/mn), the error classes, and the result types the
client hands out (`MetaResult`, `Item`).

Parser lifecycle: `ResponseParser.parse(buf, pos)` consumes whole *units*
from `buf` (a reply line, or one ``VALUE``/``VA`` header with its data block)
and returns the position after the last unit it consumed; bytes after that
are an incomplete unit the caller must present again, with more data, next
time. Multi-line replies (``VALUE``... ``END``, ``STAT``... ``END``) are
accumulated inside the parser across calls, so a large multi-get is parsed
once no matter how it is split. Completed replies are appended to
`parser.replies` (the caller drains it). `parser.need` says how many bytes
(counted from the returned position) the next unit needs when known, so the
I/O layer can wait for that many instead of re-parsing. `feed(data)` wraps
all of this with an internal buffer for callers that have plain chunks.

Replies come out as:
  * ``list`` of ``(key, flags, value, cas_or_None)`` for a get-family reply
    (``[]`` for a bare ``END``: a miss, or an empty ``stats`` reply);
  * ``dict`` ``{name: value}`` (str) for a ``STAT`` reply;
  * ``bytes``: any other classic status line without its CRLF (b"STORED",
    b"NOT_FOUND", b"42", b"VERSION 1.6.18", ...);
  * `MetaResult` for a meta reply (VA/HD/EN/NF/NS/EX/MN);
  * an *instance* (not raised) of `CommandError`/`ClientError`/`ServerError`
    for ``ERROR``/``CLIENT_ERROR``/``SERVER_ERROR`` lines.

Invariants: every reply line is at most `max_line` bytes and every value at
most `max_value` bytes, else `ProtocolError` naming the limit; a multi-line
reply (``VALUE``... or ``STAT``... before its ``END``) holds at most
`max_reply_bytes` (default 64 MiB) in the parser, accounted as each record's
wire bytes plus 192 (an over-estimate of the tuple or dict entry and the
objects it holds; 384 when values are memoryviews), else `ProtocolError` naming ``max_reply_bytes``; numbers
(data lengths, flags, cas, incr/decr results) have at most 20 digits and
keys at most 250 bytes, else `ProtocolError`; anything that is not valid
memcache reply syntax raises `ProtocolError` naming what was wrong. The
outcome does not depend on how the bytes were split, nor on whether the
native scanner is present. After a ProtocolError the parser (and the connection) must not be
used again: the stream position is unknown.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Union

from . import _speedups

__all__ = [
    "MemcacheError", "ProtocolError", "ReplyError", "CommandError", "ClientError",
    "ServerError", "MetaResult", "Item", "ResponseParser", "check_key", "check_value",
    "encode_get", "encode_storage", "encode_cas", "encode_meta", "meta_flag_tokens",
    "MAX_KEY_LENGTH", "DEFAULT_MAX_VALUE", "DEFAULT_MAX_LINE", "DEFAULT_MAX_REPLY_BYTES",
]

MAX_KEY_LENGTH = 250
DEFAULT_MAX_VALUE = 8 << 20       # memcached's default item cap is 1 MiB (-I)
DEFAULT_MAX_LINE = 8192
DEFAULT_MAX_REPLY_BYTES = 64 << 20
# what one VALUE record or STAT line of an unfinished reply is charged on top
# of its wire bytes (tracemalloc: about 150 bytes of tuple/dict entry and
# object headers on CPython 3.11)
RECORD_COST = 192
# and this much more per record when values are memoryviews (`views`)
VIEW_COST = 192
_MAX_DIGITS = 20                  # a 64-bit number has at most 20 digits


# ---------------------------------------------------------------------------
# errors


class MemcacheError(Exception):
    """Base class of every memcache error."""


class ProtocolError(MemcacheError):
    """The server's reply could not be parsed (or broke a configured limit).
    The connection it came from is closed: its stream position is unknown."""


class ReplyError(MemcacheError):
    """The server answered a command with an error line; the connection stays
    usable. `.line` is the reply line (str)."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


class CommandError(ReplyError):
    """``ERROR``: the server did not recognise the command."""


class ClientError(ReplyError):
    """``CLIENT_ERROR <msg>``: the server rejected the command's input."""


class ServerError(ReplyError):
    """``SERVER_ERROR <msg>``: the server failed to carry out the command
    (out of memory, object too large, ...)."""


# ---------------------------------------------------------------------------
# result types


class Item:
    """A stored item as returned by `gets`/`gets_many`/`get_item`."""

    __slots__ = ("key", "value", "flags", "cas")

    def __init__(self, key: bytes, value: bytes, flags: int = 0,
                 cas: Optional[int] = None) -> None:
        self.key = key
        self.value = value
        self.flags = flags
        self.cas = cas

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Item) and self.key == other.key
                and self.value == other.value and self.flags == other.flags
                and self.cas == other.cas)

    def __repr__(self) -> str:
        return (f"Item(key={self.key!r}, value={self.value!r}, flags={self.flags}, "
                f"cas={self.cas})")


class MetaResult:
    """The reply to a meta command.

    `status` is the two-letter code: ``"VA"`` (value follows), ``"HD"``
    (success, no value), ``"EN"`` (miss), ``"NF"`` (not found), ``"NS"``
    (not stored), ``"EX"`` (exists / CAS mismatch) or ``"MN"`` (no-op).
    `flags` maps each returned flag letter to its token (``""`` for bare
    flags such as W, X, Z). `value` is the data block (VA only).
    """

    __slots__ = ("status", "flags", "value")

    def __init__(self, status: str, flags: Optional[Dict[str, str]] = None,
                 value: Optional[bytes] = None) -> None:
        self.status = status
        self.flags = flags if flags is not None else {}
        self.value = value

    @property
    def ok(self) -> bool:
        """True for a hit or a success (VA, HD); False otherwise."""
        return self.status == "VA" or self.status == "HD"

    hit = ok

    def _int(self, letter: str) -> Optional[int]:
        tok = self.flags.get(letter)
        return int(tok) if tok else None

    @property
    def cas(self) -> Optional[int]:
        """The ``c`` flag: the item's CAS value."""
        return self._int("c")

    @property
    def client_flags(self) -> Optional[int]:
        """The ``f`` flag: the item's client flags."""
        return self._int("f")

    @property
    def ttl(self) -> Optional[int]:
        """The ``t`` flag: remaining TTL in seconds (-1 = never expires)."""
        return self._int("t")

    @property
    def size(self) -> Optional[int]:
        """The ``s`` flag: the item's size."""
        return self._int("s")

    @property
    def key(self) -> Optional[str]:
        """The ``k`` flag: the key."""
        return self.flags.get("k")

    @property
    def opaque(self) -> Optional[str]:
        """The ``O`` flag: the opaque token sent with the command."""
        return self.flags.get("O")

    @property
    def won(self) -> bool:
        """``W``: this client won the right to recache the item."""
        return "W" in self.flags

    @property
    def stale(self) -> bool:
        """``X``: the item is stale."""
        return "X" in self.flags

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, MetaResult) and self.status == other.status
                and self.flags == other.flags and self.value == other.value)

    def __repr__(self) -> str:
        v = "" if self.value is None else f", value={self.value!r}"
        return f"MetaResult({self.status!r}, {self.flags!r}{v})"


# ---------------------------------------------------------------------------
# keys and values

# a key byte must be > 0x20 and != 0x7f (memcached splits on whitespace and
# control characters would corrupt the line)
_bad_key_byte = re.compile(rb"[\x00-\x20\x7f]").search


def check_key(key: Union[bytes, str]) -> bytes:
    """Return `key` as bytes, or raise ValueError/TypeError naming what is
    wrong: keys are 1..250 bytes without whitespace or control characters."""
    if key.__class__ is str:
        key = key.encode()  # type: ignore[union-attr]
    elif key.__class__ is not bytes:
        if isinstance(key, (bytearray, memoryview)):
            key = bytes(key)
        else:
            raise TypeError(f"memcache keys are bytes or str, got {type(key).__name__}")
    n = len(key)  # type: ignore[arg-type]
    if 0 < n <= MAX_KEY_LENGTH and _bad_key_byte(key) is None:  # type: ignore[arg-type]
        return key  # type: ignore[return-value]
    if n == 0:
        raise ValueError("memcache key is empty")
    if n > MAX_KEY_LENGTH:
        raise ValueError(f"memcache key is {n} bytes long; the limit is {MAX_KEY_LENGTH}: "
                         f"{key[:40]!r}...")  # type: ignore[index]
    raise ValueError(f"memcache key contains whitespace or a control character: {key!r}")


def check_value(value: Any) -> Any:
    """Accept bytes-like values (bytes, bytearray, memoryview, other buffers)."""
    if value.__class__ is bytes:
        return value
    if isinstance(value, str):
        raise TypeError("memcache values are bytes-like; encode str values first")
    try:
        memoryview(value)
    except TypeError:
        raise TypeError(f"memcache values are bytes-like, got {type(value).__name__}") from None
    return value


# ---------------------------------------------------------------------------
# encoders


def encode_get(cmd: bytes, keys: Iterable[bytes]) -> bytes:
    """``get``/``gets`` over already checked keys."""
    return cmd + b" " + b" ".join(keys) + b"\r\n"


def encode_storage(cmd: bytes, key: bytes, flags: int, exptime: int, nbytes: int,
                   noreply: bool) -> bytes:
    """The command line of set/add/replace/append/prepend (data follows)."""
    if noreply:
        return b"%b %b %d %d %d noreply\r\n" % (cmd, key, flags, exptime, nbytes)
    return b"%b %b %d %d %d\r\n" % (cmd, key, flags, exptime, nbytes)


def encode_cas(key: bytes, flags: int, exptime: int, nbytes: int, cas: int,
               noreply: bool) -> bytes:
    if noreply:
        return b"cas %b %d %d %d %d noreply\r\n" % (key, flags, exptime, nbytes, cas)
    return b"cas %b %d %d %d %d\r\n" % (key, flags, exptime, nbytes, cas)


# flag letters each meta command accepts (memcached 1.6 protocol.txt); a
# stray letter would make memcached answer CLIENT_ERROR and, for ms, read
# the data block as a command: check them before sending
_META_FLAGS = {
    b"mg": frozenset("bcfhklOqstuvENRT"),
    b"ms": frozenset("bcCFIkOqTMN"),
    b"md": frozenset("bCIkOqTx"),
    b"ma": frozenset("bCNJDTMOqtcvk"),
}
_TOKEN_FLAGS = frozenset("OENRTCFMJD")  # letters that take a token
_token_ok = re.compile(r"[\x21-\x7e]*\Z").match
_MAX_OPAQUE = 32


def meta_flag_tokens(cmd: bytes, flags: Iterable[Union[str, bytes]]) -> List[str]:
    """Check meta flags (``"v"``, ``"T30"``, ``b"O12"``...) for `cmd`
    (b"mg", b"ms", b"md" or b"ma") and return them as str tokens.

    Raises ValueError naming the bad flag."""
    allowed = _META_FLAGS[cmd]
    out = []
    for f in flags:
        if isinstance(f, bytes):
            f = f.decode("ascii", "replace")
        elif not isinstance(f, str):
            raise TypeError(f"meta flags are str or bytes, got {f!r}")
        letter = f[:1]
        if not letter or letter not in allowed:
            raise ValueError(f"{cmd.decode()}: unknown flag {f!r} (allowed: "
                             f"{' '.join(sorted(allowed))})")
        if len(f) > 1:
            if letter not in _TOKEN_FLAGS:
                raise ValueError(f"{cmd.decode()}: flag {letter!r} takes no token, got {f!r}")
            if not _token_ok(f, 1):
                raise ValueError(f"{cmd.decode()}: flag {f!r} contains whitespace or a "
                                 "control character")
            if letter == "O" and len(f) - 1 > _MAX_OPAQUE:
                raise ValueError(f"opaque token longer than {_MAX_OPAQUE} bytes: {f!r}")
        elif letter in _TOKEN_FLAGS and letter != "M":
            raise ValueError(f"{cmd.decode()}: flag {letter!r} needs a token (e.g. "
                             f"{letter}30)")
        out.append(f)
    return out


def encode_meta(cmd: bytes, key: bytes, tokens: List[str],
                datalen: Optional[int] = None) -> bytes:
    """A meta command line (``ms`` gets `datalen`; the data block follows)."""
    parts = [cmd, key]
    if datalen is not None:
        parts.append(b"%d" % datalen)
    if tokens:
        parts.append(" ".join(tokens).encode())
    return b" ".join(parts) + b"\r\n"


# ---------------------------------------------------------------------------
# the reply parser

# the native scanner of runs of complete VALUE records (None: the
# pure-Python path alone; the tests run the parser both ways)
_scan_values: Any = _speedups.scan_values

# the longest VALUE header line the native scanner accepts: "VALUE " + a
# 250-byte key + " " + 10-digit flags + " " + 19-digit size + " " + 19-digit cas
_SCAN_MAX_HEADER = 6 + MAX_KEY_LENGTH + 1 + 10 + 1 + 19 + 1 + 19

_META_CODES = {b"VA": "VA", b"HD": "HD", b"EN": "EN", b"NF": "NF", b"NS": "NS",
               b"EX": "EX", b"MN": "MN", b"ME": "ME"}
_EMPTY: Dict[str, str] = {}


def _meta_flags(toks: List[bytes], first: int) -> Dict[str, str]:
    flags = {}
    for i in range(first, len(toks)):
        s = toks[i].decode("utf-8", "replace")
        flags[s[0]] = s[1:]
    return flags


class ResponseParser:
    """Incremental parser of memcache replies (see the module docstring)."""

    __slots__ = ("replies", "need", "max_value", "max_line", "max_reply_bytes", "_items",
                 "_stats", "_buf", "_used")

    def __init__(self, max_value: int = DEFAULT_MAX_VALUE,
                 max_line: int = DEFAULT_MAX_LINE,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
        for name, v in (("max_value", max_value), ("max_line", max_line),
                        ("max_reply_bytes", max_reply_bytes)):
            if v.__class__ is not int or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.replies: List[Any] = []
        self.need = 0
        self.max_value = max_value
        self.max_line = max_line
        self.max_reply_bytes = max_reply_bytes
        self._used = 0                         # accounted bytes of the reply in progress
        self._items: Optional[list] = None     # a get-family reply in progress
        self._stats: Optional[dict] = None     # a stats reply in progress
        self._buf = b""                        # feed() only

    @property
    def in_reply(self) -> bool:
        """True while a multi-line reply has started but not ended."""
        return self._items is not None or self._stats is not None

    def parse(self, buf: bytes, pos: int = 0, src: Any = None, views: bool = False) -> int:
        """Consume whole units of `buf` from `pos`; return the new position.
        Completed replies are appended to `self.replies`.

        With `src` (a buffer whose first ``len(buf)`` bytes are `buf`, e.g.
        the receive buffer `buf` was copied from), data blocks are taken from
        `src` and may extend past the end of `buf`: the returned position can
        then be beyond ``len(buf)``. Values are then ``bytes`` copied from
        `src`, or with `views` slices of `src` itself (no copy)."""
        append = self.replies.append
        # (with `src` values come from the receive buffer: the Python path;
        # the scanner does not check max_line, so it runs only when no record
        # it accepts can have a longer header line)
        scan = (_scan_values if src is None and buf.__class__ is bytes
                and self.max_line >= _SCAN_MAX_HEADER else None)
        end = len(buf)
        find = buf.find
        items = self._items
        stats = self._stats
        max_value = self.max_value
        used = self._used
        max_reply = self.max_reply_bytes
        cost = RECORD_COST + VIEW_COST if views else RECORD_COST
        self.need = 0
        try:
            while pos < end:
                if scan is not None and buf[pos] == 86 and stats is None:     # 'V'
                    # the native scanner takes a run of complete VALUE records;
                    # what it stops at (END, an incomplete or bad record) is
                    # handled below
                    if items is None:
                        got: list = []
                        p2 = scan(buf, pos, max_value, got)
                        if p2 != pos:
                            if buf.startswith(b"END\r\n", p2):
                                append(got)
                                pos = p2 + 5
                            else:
                                items = got
                                used += p2 - pos + RECORD_COST * len(got)
                                pos = p2
                                if used > max_reply:
                                    raise ProtocolError(self._over_budget("VALUE"))
                            continue
                    else:
                        n0 = len(items)
                        p2 = scan(buf, pos, max_value, items)
                        if p2 != pos:
                            used += p2 - pos + RECORD_COST * (len(items) - n0)
                            pos = p2
                            if used > max_reply:
                                raise ProtocolError(self._over_budget("VALUE"))
                            continue
                eol = find(b"\r\n", pos)
                if eol < 0 or eol - pos > self.max_line:
                    # (without a CRLF yet, max_line + 1 bytes may be a whole
                    # line whose CR has come without its LF)
                    if eol >= 0 or end - pos > self.max_line + 1:
                        raise ProtocolError(
                            f"reply line longer than max_line ({self.max_line} bytes): "
                            f"{bytes(buf[pos:pos + 60])!r}...")
                    break
                c = buf[pos]
                if c == 86:                                                   # 'V'
                    c1 = buf[pos + 1]
                    if c1 == 65 and buf[pos + 2] == 76 and buf.startswith(b"VALUE ", pos):
                        if stats is not None:
                            raise ProtocolError("VALUE line inside a STAT reply")
                        toks = buf[pos + 6:eol].split()
                        nt = len(toks)
                        if nt != 3 and nt != 4:
                            raise ProtocolError(
                                f"malformed VALUE line: {bytes(buf[pos:eol])[:80]!r}")
                        size = toks[2]
                        if not size.isdigit() or len(size) > _MAX_DIGITS:
                            raise ProtocolError(
                                f"bad data length in {bytes(buf[pos:eol])[:80]!r}")
                        if len(toks[0]) > MAX_KEY_LENGTH:
                            raise ProtocolError(f"VALUE key longer than {MAX_KEY_LENGTH} "
                                                f"bytes: {bytes(buf[pos:eol])[:80]!r}")
                        value = self._block(buf, src, views, pos, eol, size, "VALUE")
                        if value is None:
                            break
                        stop = eol + 2 + len(value)
                        flags = toks[1]
                        if (not flags.isdigit() or len(flags) > _MAX_DIGITS
                                or (nt == 4 and (not toks[3].isdigit()
                                                 or len(toks[3]) > _MAX_DIGITS))):
                            raise ProtocolError(
                                f"malformed VALUE line: {bytes(buf[pos:eol])[:80]!r}")
                        item = (toks[0], 0 if flags == b"0" else int(flags),
                                value, int(toks[3]) if nt == 4 else None)
                        if items is None:
                            if buf.startswith(b"END\r\n", stop + 2):   # a one-item reply
                                append([item])
                                pos = stop + 7
                                continue
                            items = [item]
                        else:
                            items.append(item)
                        used += stop + 2 - pos + cost
                        if used > max_reply:
                            raise ProtocolError(self._over_budget("VALUE"))
                        pos = stop + 2
                        continue
                    if c1 == 65 and (buf[pos + 2] == 32 or eol == pos + 2):      # VA
                        if items is not None or stats is not None:
                            raise ProtocolError("VA reply inside a multi-line reply")
                        toks = buf[pos + 3:eol].split()
                        if not toks:
                            raise ProtocolError(f"VA reply without a size: "
                                                f"{bytes(buf[pos:eol])!r}")
                        size = toks[0]
                        if not size.isdigit() or len(size) > _MAX_DIGITS:
                            raise ProtocolError(
                                f"bad data length in {bytes(buf[pos:eol])[:80]!r}")
                        value = self._block(buf, src, views, pos, eol, size, "VA")
                        if value is None:
                            break
                        stop = eol + 2 + len(value)
                        append(MetaResult("VA", _meta_flags(toks, 1) if len(toks) > 1 else {},
                                          value))
                        pos = stop + 2
                        continue
                    if buf.startswith(b"VERSION ", pos) and items is None and stats is None:
                        append(buf[pos:eol])
                        pos = eol + 2
                        continue
                    raise ProtocolError(f"unexpected reply line {bytes(buf[pos:eol])[:80]!r}")
                if eol == pos + 3 and c == 69 and buf[pos + 1] == 78 and buf[pos + 2] == 68:
                    if items is not None:                                      # END
                        append(items)
                        items = None
                    elif stats is not None:
                        append(stats)
                        stats = None
                    else:
                        append([])
                    used = 0
                    pos = eol + 2
                    continue
                line = buf[pos:eol]
                if items is None and stats is None:
                    if line in _STATUS_LINES:
                        append(line)
                        pos = eol + 2
                        continue
                    if 48 <= c <= 57 and line.isdigit():
                        if eol - pos > _MAX_DIGITS:
                            raise ProtocolError(f"numeric reply of {eol - pos} digits (a "
                                                "memcache counter is 64-bit)")
                        append(line)
                        pos = eol + 2
                        continue
                    if eol == pos + 2 or (eol > pos + 2 and buf[pos + 2] == 32):
                        code = _META_CODES.get(line[:2])
                        if code is not None:
                            append(MetaResult(code, _meta_flags(line.split(), 1)
                                              if eol > pos + 2 else {}))
                            pos = eol + 2
                            continue
                if c == 83 and line.startswith(b"STAT "):                       # STAT
                    if items is not None:
                        raise ProtocolError("STAT line inside a VALUE reply")
                    if stats is None:
                        stats = {}
                    name, _, value = bytes(line[5:]).partition(b" ")
                    stats[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
                    used += eol + 2 - pos + RECORD_COST
                    if used > max_reply:
                        raise ProtocolError(self._over_budget("STAT"))
                    pos = eol + 2
                    continue
                err = self._error(line)
                if err is not None:
                    # an error line may also cut a multi-line reply short
                    items = stats = None
                    used = 0
                    append(err)
                    pos = eol + 2
                    continue
                if items is not None or stats is not None:
                    raise ProtocolError(
                        f"unexpected line {bytes(line)[:80]!r} inside a "
                        f"{'VALUE' if items is not None else 'STAT'} reply")
                raise ProtocolError(f"unexpected reply line {bytes(line)[:80]!r}")
        finally:
            self._items = items
            self._stats = stats
            self._used = used
        return pos

    def _over_budget(self, what: str) -> str:
        return (f"a {what} reply without END exceeds max_reply_bytes "
                f"({self.max_reply_bytes} bytes of records and their overhead)")

    def _block(self, buf: Any, src: Any, views: bool, pos: int, eol: int, size: bytes,
               what: str) -> Any:
        """The data block after the `what` header line ``buf[pos:eol]`` that
        announced `size` (checked digits) bytes: the value, or None (with
        `need` set) when it has not fully arrived; ProtocolError when it is
        over max_value or not followed by CRLF."""
        n = int(size)
        if n > self.max_value:
            raise ProtocolError(f"value of {n} bytes exceeds max_value_size "
                                f"({self.max_value} bytes)")
        start = eol + 2
        stop = start + n
        if src is not None:
            return self._value_from(src, views, pos, start, stop, what)
        if stop + 2 > len(buf):
            self.need = stop + 2 - pos
            return None
        if buf[stop] != 13 or buf[stop + 1] != 10:
            raise ProtocolError(f"{what} data block of {n} bytes not followed by CRLF")
        return buf[start:stop]

    def _value_from(self, src: Any, views: bool, pos: int, start: int, stop: int,
                    what: str) -> Any:
        if stop + 2 > len(src):
            self.need = stop + 2 - pos
            return None
        if src[stop] != 13 or src[stop + 1] != 10:
            raise ProtocolError(f"{what} data block of {stop - start} bytes not followed "
                                "by CRLF")
        return src[start:stop] if views else bytes(src[start:stop])

    @staticmethod
    def _error(line: Any) -> Optional[ReplyError]:
        if line == b"ERROR":
            return CommandError("ERROR")
        if line.startswith(b"CLIENT_ERROR"):
            return ClientError(bytes(line).decode("utf-8", "replace"))
        if line.startswith(b"SERVER_ERROR"):
            return ServerError(bytes(line).decode("utf-8", "replace"))
        return None

    # -- a buffered front end (tests, plain-chunk callers) --

    def feed(self, data: bytes) -> List[Any]:
        """Add a chunk; return the replies it completed (in order)."""
        buf = self._buf + bytes(data) if self._buf else bytes(data)
        pos = self.parse(buf)
        self._buf = buf[pos:] if pos else buf
        replies = self.replies
        self.replies = []
        return replies

    def eof(self) -> None:
        """The peer closed: raise ProtocolError if a reply was cut short."""
        if self._buf or self._items is not None or self._stats is not None:
            raise ProtocolError(
                f"connection closed in the middle of a reply "
                f"({len(self._buf)} bytes of an incomplete reply buffered)")


_STATUS_LINES = frozenset([
    b"STORED", b"NOT_STORED", b"EXISTS", b"NOT_FOUND", b"DELETED", b"TOUCHED",
    b"OK", b"RESET",
])
# first bytes of every status line, digits and error lines
_STATUS_FIRST = frozenset(b"SNEDTOR0123456789C")
