"""Content-Encoding decoders with size caps (sans-IO).

Owns: one decoder per coding of a response's ``Content-Encoding``
(gzip/x-gzip, deflate (zlib or raw), br when the ``brotli`` module is
installed, zstd when ``zstandard`` is), chained for stacked codings, and the
two caps every decoder keeps: the total decoded size (``max_decoded_bytes``)
and the ratio of decoded to encoded bytes (``max_decode_ratio``, checked once
the output passes 1 MiB so that small, well-compressed bodies pass).

Lifecycle: ``make_decoder(content_encoding, bounds)`` -> ``decode(chunk)``
for each raw chunk -> ``flush()`` once at the end. zlib output is produced in
bounded pieces (``max_length``), so a decompression bomb is stopped before it
occupies more than one piece past the cap. An unknown coding raises
DecodingError at the first chunk (the raw bytes stay available through
``aiter_raw``).
"""
from __future__ import annotations

import zlib
from typing import Any, List, Optional

_brotli: Any
_zstd: Any

from ._errors import DecodingError, LimitExceeded

__all__ = ["make_decoder", "SUPPORTED"]

_PIECE = 1 << 20          # zlib output produced per step
_RATIO_FLOOR = 1 << 20    # the ratio cap applies once this much was produced

try:                       # optional codings
    import brotli as _brotli  # type: ignore[import-not-found,import-untyped,no-redef]
except ImportError:        # pragma: no cover - depends on the environment
    _brotli = None
try:
    import zstandard as _zstd  # type: ignore[import-not-found,import-untyped,no-redef]
except ImportError:        # pragma: no cover
    _zstd = None

SUPPORTED = ("gzip", "deflate") + (("br",) if _brotli else ()) + (("zstd",) if _zstd else ())


class _Caps:
    __slots__ = ("max_out", "max_ratio", "raw_in", "out")

    def __init__(self, max_out: int, max_ratio: int) -> None:
        self.max_out = max_out
        self.max_ratio = max_ratio
        self.raw_in = 0
        self.out = 0

    def produced(self, n: int) -> None:
        self.out += n
        if self.out > self.max_out:
            raise LimitExceeded("max_decoded_bytes", self.max_out, "decoded body")
        if self.out > _RATIO_FLOOR and self.out > self.max_ratio * max(self.raw_in, 1):
            raise LimitExceeded("max_decode_ratio", self.max_ratio,
                                f"decompression ratio {self.out // max(self.raw_in, 1)}")


class _Zlib:
    """gzip and deflate. deflate is zlib-wrapped (RFC 9110) or, as some
    servers send it, raw: the first two bytes tell (a zlib header is
    CM=8 and a multiple of 31)."""

    def __init__(self, kind: str, caps: _Caps) -> None:
        self.kind = kind
        self.caps = caps
        self.pending = b"" if kind == "deflate" else None
        self.obj = zlib.decompressobj(16 + zlib.MAX_WBITS if kind == "gzip" else zlib.MAX_WBITS)

    def _choose(self, force: bool) -> bytes:
        data = self.pending or b""
        if len(data) < 2 and not force:
            return b""
        wrapped = len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] * 256 + data[1]) % 31 == 0
        self.obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        self.pending = None
        return data

    def _run(self, data: bytes) -> List[bytes]:
        out = []
        obj = self.obj
        while data:
            piece = obj.decompress(data, _PIECE)
            if piece:
                self.caps.produced(len(piece))
                out.append(piece)
            data = obj.unconsumed_tail
            if obj.eof:
                break
        return out

    def decode(self, data: bytes) -> List[bytes]:
        if self.pending is not None:
            self.pending += data
            data = self._choose(False)
            if not data:
                return []
        try:
            return self._run(data)
        except zlib.error as exc:
            raise DecodingError(f"invalid {self.kind} body: {exc}") from None

    def flush(self) -> List[bytes]:
        out: List[bytes] = []
        if self.pending is not None:
            out = self.decode(self._choose(True)) if self.pending else []
            self.pending = None
        try:
            piece = self.obj.flush()
        except zlib.error as exc:
            raise DecodingError(f"invalid {self.kind} body: {exc}") from None
        if piece:
            self.caps.produced(len(piece))
            out.append(piece)
        return out


class _Brotli:
    def __init__(self, caps: _Caps) -> None:
        self.caps = caps
        self.obj = _brotli.Decompressor()
        self.limited = "output_buffer_limit" in (getattr(self.obj.process, "__doc__", "") or "")

    def decode(self, data: bytes) -> List[bytes]:
        try:
            if self.limited:
                out = []
                piece = self.obj.process(data, output_buffer_limit=_PIECE)
                while True:
                    if piece:
                        self.caps.produced(len(piece))
                        out.append(piece)
                    if self.obj.is_finished() or self.obj.can_accept_more_data():
                        break
                    piece = self.obj.process(b"", output_buffer_limit=_PIECE)
                return out
            piece = self.obj.process(data)
        except _brotli.error as exc:
            raise DecodingError(f"invalid br body: {exc}") from None
        self.caps.produced(len(piece))
        return [piece] if piece else []

    def flush(self) -> List[bytes]:
        return []


class _Zstd:
    def __init__(self, caps: _Caps) -> None:
        self.caps = caps
        self.obj = _zstd.ZstdDecompressor().decompressobj()

    def decode(self, data: bytes) -> List[bytes]:
        # the C API has no output limit per call: feed in small slices so a
        # bomb overshoots the cap by at most one slice's expansion
        out = []
        try:
            for i in range(0, len(data), 4096):
                piece = self.obj.decompress(data[i:i + 4096])
                if piece:
                    self.caps.produced(len(piece))
                    out.append(piece)
        except _zstd.ZstdError as exc:
            raise DecodingError(f"invalid zstd body: {exc}") from None
        return out

    def flush(self) -> List[bytes]:
        return []


class _Chain:
    """Decoders applied in reverse order of the Content-Encoding list."""

    def __init__(self, decoders: List[Any], caps: _Caps) -> None:
        self.decoders = decoders
        self.caps = caps

    def decode(self, data: bytes) -> bytes:
        self.caps.raw_in += len(data)
        pieces = [data]
        for d in self.decoders:
            nxt: List[bytes] = []
            for p in pieces:
                nxt.extend(d.decode(p))
            pieces = nxt
        return b"".join(pieces)

    def flush(self) -> bytes:
        pieces: List[bytes] = []
        for d in self.decoders:
            nxt: List[bytes] = []
            for p in pieces:
                nxt.extend(d.decode(p))
            nxt.extend(d.flush())
            pieces = nxt
        return b"".join(pieces)


def make_decoder(content_encoding: Optional[str], max_decoded_bytes: int,
                 max_decode_ratio: int) -> Optional[_Chain]:
    """A decoder for the header's value, or None for identity."""
    if not content_encoding:
        return None
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    caps = _Caps(max_decoded_bytes, max_decode_ratio)
    decoders: List[Any] = []
    for c in reversed(codings):
        if c in ("gzip", "x-gzip"):
            decoders.append(_Zlib("gzip", caps))
        elif c == "deflate":
            decoders.append(_Zlib("deflate", caps))
        elif c == "br" and _brotli is not None:
            decoders.append(_Brotli(caps))
        elif c == "zstd" and _zstd is not None:
            decoders.append(_Zstd(caps))
        else:
            raise DecodingError(f"unsupported Content-Encoding {c!r} "
                                f"(supported here: {', '.join(SUPPORTED)})")
    return _Chain(decoders, caps)
