"""The gRPC-over-HTTP/2 wire format, sans-IO: message framing, the
grpc-timeout header, custom metadata and grpc-message.

Owns ``frame`` (a message with its 5-byte prefix: compressed flag and
big-endian length), ``Deframer`` (the bounded reassembly of messages from
DATA bytes: a message longer than the receive bound is refused from its
prefix, before its bytes are held; gzip messages are inflated with the same
bound, so a decompression bomb stops at the bound), ``encode_timeout``,
``encode_metadata`` / ``decode_metadata`` (``-bin`` keys carry base64
bytes) and ``decode_message`` (grpc-message is percent-encoded UTF-8).

Invariants: a Deframer holds at most one partial message, never more than
its bound (plus a prefix); every error it raises is an ``AioRpcError`` with
the status the gRPC spec gives for it. Nothing here does I/O.
"""
from __future__ import annotations

import base64
import gzip
import re
import zlib
from typing import Any, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from ._status import AioRpcError, StatusCode

__all__ = ["frame", "Deframer", "encode_timeout", "encode_metadata", "decode_metadata",
           "decode_message", "RESERVED"]

_KEY = re.compile(r"^[0-9a-z_.\-]+$")
# response headers that are the protocol's own, never application metadata
RESERVED = frozenset((b"content-type", b"grpc-status", b"grpc-message", b"grpc-encoding",
                      b"grpc-accept-encoding", b"te", b"user-agent", b"grpc-timeout"))


def frame(msg: bytes, compression: Optional[str] = None) -> bytes:
    """One length-prefixed message; ``compression="gzip"`` deflates it."""
    if compression == "gzip":
        msg = gzip.compress(msg, compresslevel=6, mtime=0)
        return b"\x01" + len(msg).to_bytes(4, "big") + msg
    n = len(msg)
    if n >= 1 << 32:
        raise AioRpcError(StatusCode.RESOURCE_EXHAUSTED, "message longer than 4 GiB")
    return b"\x00" + n.to_bytes(4, "big") + msg


class Deframer:
    """Messages out of a response body's bytes, each at most ``max_size``
    bytes (after decompression)."""

    __slots__ = ("max_size", "encoding", "buf", "need", "flag")

    def __init__(self, max_size: int, encoding: Optional[bytes]) -> None:
        self.max_size = max_size
        self.encoding = encoding
        self.buf = bytearray()
        self.need = -1          # body length of the message being read, -1: prefix
        self.flag = 0

    def feed(self, data: bytes) -> List[bytes]:
        buf = self.buf
        buf += data
        out: List[bytes] = []
        while True:
            if self.need < 0:
                if len(buf) < 5:
                    return out
                self.flag = buf[0]
                n = int.from_bytes(buf[1:5], "big")
                del buf[:5]
                if self.flag not in (0, 1):
                    raise AioRpcError(StatusCode.INTERNAL,
                                      f"invalid message prefix flag {self.flag}")
                if n > self.max_size:
                    raise AioRpcError(StatusCode.RESOURCE_EXHAUSTED,
                                      f"received message larger than max ({n} vs. "
                                      f"{self.max_size})")
                self.need = n
            if len(buf) < self.need:
                return out
            n = self.need
            msg = bytes(buf[:n])
            del buf[:n]
            self.need = -1
            if self.flag:
                msg = self._inflate(msg)
            out.append(msg)

    def _inflate(self, msg: bytes) -> bytes:
        if self.encoding in (None, b"identity"):
            raise AioRpcError(StatusCode.INTERNAL, "compressed message without grpc-encoding")
        if self.encoding != b"gzip":
            raise AioRpcError(StatusCode.UNIMPLEMENTED,
                              f"unsupported grpc-encoding {self.encoding.decode('latin-1')!r}")
        d = zlib.decompressobj(wbits=31)
        try:
            out = d.decompress(msg, self.max_size + 1)
        except zlib.error as exc:
            raise AioRpcError(StatusCode.INTERNAL, f"bad gzip message: {exc}") from None
        if len(out) > self.max_size:
            raise AioRpcError(StatusCode.RESOURCE_EXHAUSTED,
                              f"decompressed message larger than max ({self.max_size})")
        return out

    def partial(self) -> bool:
        """True when bytes of an unfinished message are held (at the end of
        the body that is a protocol error)."""
        return bool(self.buf) or self.need >= 0


_UNITS = ((b"n", 1), (b"u", 10 ** 3), (b"m", 10 ** 6), (b"S", 10 ** 9), (b"M", 60 * 10 ** 9),
          (b"H", 3600 * 10 ** 9))       # in nanoseconds


def encode_timeout(seconds: float) -> bytes:
    """grpc-timeout: at most 8 digits and a unit, the finest unit that fits."""
    ns = max(1, round(seconds * 1e9)) if seconds < 1e12 else 10 ** 21
    for unit, size in _UNITS:
        v = -(-ns // size)              # rounded up: never a shorter deadline
        if v < 100_000_000:
            return b"%d%s" % (v, unit)
    return b"99999999H"


def encode_metadata(metadata: Optional[Iterable[Tuple[str, Any]]]) -> List[Tuple[bytes, bytes]]:
    """Custom metadata as header fields: keys lower-case ``[0-9a-z_.-]``
    (not ``grpc-``), ``-bin`` values bytes (sent base64), others printable
    ASCII strings."""
    out: List[Tuple[bytes, bytes]] = []
    if not metadata:
        return out
    for key, value in metadata:
        if not isinstance(key, str):
            key = key.decode("ascii")
        k = key.lower()
        if not _KEY.match(k) or k.startswith("grpc-") or k.encode() in RESERVED:
            raise ValueError(f"invalid or reserved metadata key {key!r}")
        if k.endswith("-bin"):
            if isinstance(value, str):
                value = value.encode()
            v = base64.b64encode(value).rstrip(b"=")
        else:
            v = value.encode("ascii") if isinstance(value, str) else bytes(value)
            if any(c < 0x20 or c > 0x7E for c in v):
                raise ValueError(f"metadata value of {key!r} must be printable ASCII")
        out.append((k.encode(), v))
    return out


def decode_metadata(headers: Optional[Sequence[Tuple[bytes, bytes]]]) -> Tuple[Tuple[str, Any], ...]:
    """Application metadata out of a header or trailer list (``-bin``
    values as bytes; malformed base64 drops the value's bad tail)."""
    if not headers:
        return ()
    out = []
    for k, v in headers:
        if k in RESERVED or k[:1] == b":":
            continue
        key = k.decode("latin-1")
        if key.endswith("-bin"):
            try:
                out.append((key, base64.b64decode(v + b"=" * (-len(v) % 4))))
            except ValueError:
                out.append((key, b""))
        else:
            out.append((key, v.decode("latin-1")))
    return tuple(out)


def decode_message(v: Optional[bytes]) -> str:
    """grpc-message: percent-encoded UTF-8 (invalid sequences replaced)."""
    if not v:
        return ""
    return unquote(v.decode("latin-1"), errors="replace")
