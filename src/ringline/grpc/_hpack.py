"""A fast HPACK encoder for the request heads of ringline.grpc, installed in
place of the ``hpack`` library's encoder on each HTTP/2 connection a
Channel opens.

Owns ``StaticEncoder``: header blocks built only from representations that
never touch the dynamic table (RFC 7541: an indexed field of the static
table, or a literal field without indexing, its name indexed from the
static table when it is there; "never indexed" for ``hpack``'s
NeverIndexedHeaderTuple), with the encoded bytes of each field kept in a
bounded cache, so a call's head (a dozen fields, nearly all the same for
every call of a channel) is a few dict look-ups and one join instead of
``hpack``'s per-field table search, insertion and logging.

Lifecycle: one per connection, wrapping that connection's ``hpack``
encoder; h2 sets ``header_table_size`` on it when the server's SETTINGS
change the table size, which is passed to the wrapped encoder, and the next
block is encoded by that encoder so that it starts with the dynamic table
size update the RFC requires.

Invariants: the blocks this encoder makes never add to or refer to the
dynamic table, so they are valid whatever the peer's table holds (the
wrapped encoder's blocks keep their own table in step); the cache holds at
most ``_CACHE_MAX`` fields (varying values such as grpc-timeout are encoded
each time once it is full) and at most ``_BLOCKS_MAX`` whole blocks (a
block of plain tuples is kept by its fields, emptied when full: a head
without a deadline is the same call after call); no Huffman coding (the
strings go as they are).

Also owns ``CachingDecoder``, installed in place of the connection's
``hpack`` decoder: a gRPC server's response heads and trailers repeat call
after call byte for byte (after the first call they are references to the
dynamic table), so a block that leaves the dynamic table as it found it is
kept, by its bytes, with its decoded list, and the same bytes later are a
dict look-up. Invariants: a block that changed the table (an insertion, a
size update, an eviction) is never cached, and any change of the table
empties the cache, so a cached list is always what the wrapped decoder
would give for those bytes now (the table it depends on is unchanged); at
most ``_DECODE_CACHE_MAX`` blocks of at most ``_DECODE_BLOCK_MAX`` bytes are
kept; every block is first decoded by the wrapped decoder, so its bounds
(header list size, table size) apply to every cached list.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Tuple

__all__ = ["CachingDecoder", "StaticEncoder"]

_CACHE_MAX = 512
_BLOCKS_MAX = 64
_PLAIN = {tuple}
_DECODE_CACHE_MAX = 64
_DECODE_BLOCK_MAX = 1024

# RFC 7541 Appendix A: the static table entries a request head uses
_FULL = {(b":method", b"GET"): 2, (b":method", b"POST"): 3, (b":path", b"/"): 4,
         (b":scheme", b"http"): 6, (b":scheme", b"https"): 7,
         (b"accept-encoding", b"gzip, deflate"): 16}
_NAMES = {b":authority": 1, b":method": 2, b":path": 4, b":scheme": 6, b":status": 8,
          b"accept-charset": 15, b"accept-encoding": 16, b"accept-language": 17,
          b"accept": 19, b"authorization": 23, b"cache-control": 24,
          b"content-encoding": 26, b"content-length": 28, b"content-type": 31,
          b"cookie": 32, b"user-agent": 58}


def _int(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer with an N-bit prefix; ``first`` holds the pattern
    bits above the prefix."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes((first | value,))
    out = bytearray((first | top,))
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(s: bytes) -> bytes:
    return _int(len(s), 7, 0) + s


def encode_field(name: bytes, value: bytes, never_indexed: bool = False) -> bytes:
    """One header field in a representation that leaves the dynamic table
    alone."""
    pattern = 0x10 if never_indexed else 0x00
    if not never_indexed:
        idx = _FULL.get((name, value))
        if idx is not None:
            return bytes((0x80 | idx,))
    idx = _NAMES.get(name)
    if idx is not None:
        return _int(idx, 4, pattern) + _string(value)
    return bytes((pattern,)) + _string(name) + _string(value)


class StaticEncoder:
    __slots__ = ("inner", "cache", "blocks")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cache: Dict[Tuple[bytes, bytes], bytes] = {}
        self.blocks: Dict[Tuple[Any, ...], bytes] = {}

    @property
    def header_table_size(self) -> int:
        return int(self.inner.header_table_size)

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self.inner.header_table_size = value

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        if self.inner.table_size_changes:       # the size update goes first
            return bytes(self.inner.encode(headers, huffman))
        # a whole block seen before (the same head, call after call): one
        # look-up; only blocks of plain tuples are kept (a never-indexed
        # field, a tuple subclass, equal as a tuple, would match a plain one)
        key = tuple(headers)
        b = self.blocks.get(key)
        if b is not None:
            return b
        plain = set(map(type, key)) == _PLAIN
        cache = self.cache
        parts = []
        for h in key:
            if getattr(h, "indexable", True):
                b = cache.get(h)
                if b is None:
                    name, value = h
                    b = encode_field(bytes(name), bytes(value))
                    if len(cache) < _CACHE_MAX:
                        cache[(name, value)] = b
            else:
                b = encode_field(bytes(h[0]), bytes(h[1]), True)
            parts.append(b)
        block = b"".join(parts)
        if plain:
            if len(self.blocks) >= _BLOCKS_MAX:
                self.blocks.clear()
            self.blocks[key] = block
        return block


class CachingDecoder:
    """An ``hpack`` decoder with a cache of the blocks that do not touch
    the dynamic table (see the module docstring); the wrapped decoder's
    settings (``max_header_list_size``, ``max_allowed_table_size``,
    ``header_table_size``) are read and set through it."""

    __slots__ = ("inner", "cache", "table")

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "cache", {})
        object.__setattr__(self, "table", inner.header_table)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)
        self.cache.clear()

    def decode(self, data: Any, raw: bool = False) -> Any:
        cache = self.cache
        key = bytes(data)
        hit = cache.get(key)
        if hit is not None and hit[0] is raw:
            return list(hit[1])
        table = self.table
        entries = table.dynamic_entries
        size = len(entries)
        first = entries[0] if size else None
        maxsize = table.maxsize
        out = self.inner.decode(data, raw=raw)
        if (len(entries) != size or (entries[0] if entries else None) is not first
                or table.maxsize != maxsize):
            cache.clear()               # the table changed: nothing kept is sure
        elif len(key) <= _DECODE_BLOCK_MAX:
            if len(cache) >= _DECODE_CACHE_MAX:
                cache.clear()
            cache[key] = (raw, tuple(out))
        return out
