"""Replication frames and the backlog (a primary's, or a replica's relay
of its primary's): `frame`, `Backlog`, `FrameReader`.

Owns:
  frame(payload)  one frame: the journal's record format (little-endian u32
                  payload length, u32 CRC-32 of the payload, payload), so a
                  batch of journal records is a batch of frames as it is
                  and a replica can journal a frame without re-framing it.
  Backlog         one shard's ring of recent frames with 64-bit offsets: the
                  frame at offset o is the o-th write since the history
                  (`replid`) began; it holds the frames after `start` up to
                  `end`, at most `size` bytes of them (the oldest chunks are
                  dropped first). `since(o)` is every frame after o, or None
                  when o is no longer (or not yet) covered.
  FrameReader     the replica's side: cuts frames out of received bytes,
                  checks each frame's length bound and CRC.

Lifecycle: a Backlog lives as long as its primary's history (a worker
process); a replica's is `reset` to the new offset at each full sync;
appends come in chunks (one per journal hand-over: a fast-path
batch or one command's record). A FrameReader per connection to a primary.

Invariants: `start <= end`; the bytes held are at most `size` (a single
chunk bigger than `size` is not kept at all: `start` moves to `end`);
`since(o)` returns exactly the frames o+1..end, in order, or None; a frame
whose length passes the reader's bound or whose CRC does not match is an
error (FrameError), never applied.
"""
from __future__ import annotations

import zlib
from collections import deque
from typing import Deque, List, Optional, Tuple

from .journal import HEADER

__all__ = ["frame", "Backlog", "FrameReader", "FrameError"]

_HDR = HEADER.size


def frame(payload: bytes) -> bytes:
    """One frame (a journal record) around payload."""
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


class FrameError(ValueError):
    """A peer sent a frame that is too big or corrupt."""


class Backlog:
    """The recent frames of one shard, bounded by `size` bytes."""

    __slots__ = ("size", "chunks", "start", "end", "bytes")

    def __init__(self, size: int, offset: int = 0) -> None:
        if size < 1:
            raise ValueError("backlog size must be positive")
        self.size = size
        self.chunks: Deque[Tuple[int, int, bytes]] = deque()   # (first offset - 1, count, data)
        self.start = offset        # frames after start are held ...
        self.end = offset          # ... up to end
        self.bytes = 0

    def append_framed(self, data: bytes, count: int) -> None:
        """count frames (data) that follow `end`."""
        self.chunks.append((self.end, count, data))
        self.end += count
        self.bytes += len(data)
        chunks = self.chunks
        while self.bytes > self.size:
            before, n, old = chunks.popleft()
            self.bytes -= len(old)
            self.start = before + n

    def reset(self, offset: int) -> None:
        self.chunks.clear()
        self.start = self.end = offset
        self.bytes = 0

    def covers(self, offset: int) -> bool:
        return self.start <= offset <= self.end

    def since(self, offset: int) -> Optional[bytes]:
        """The frames after offset (b"" when offset is end), or None."""
        if not self.covers(offset):
            return None
        out: List[bytes] = []
        for before, n, data in self.chunks:
            if before + n <= offset:
                continue
            if before < offset:
                data = data[_skip(data, offset - before):]
            out.append(data)
        return b"".join(out)


def _skip(data: bytes, count: int) -> int:
    """The byte position after the first count frames of data."""
    pos = 0
    for _ in range(count):
        length, _crc = HEADER.unpack_from(data, pos)
        pos += _HDR + length
    return pos


class FrameReader:
    """Frames out of a byte stream, each checked (max_frame, CRC)."""

    __slots__ = ("max_frame",)

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame

    def read(self, data: memoryview, limit: int = -1) -> Tuple[List[memoryview], int, int]:
        """Up to limit (-1: all) complete frames at the start of data:
        (frames, bytes used, bytes the next incomplete frame needs in all
        or 0). A frame is the header and payload (payload at [8:])."""
        frames: List[memoryview] = []
        pos = 0
        n = len(data)
        while limit < 0 or len(frames) < limit:
            if n - pos < _HDR:
                return frames, pos, (_HDR if n > pos else 0)
            length, crc = HEADER.unpack_from(data, pos)
            if length > self.max_frame:
                raise FrameError(f"frame of {length} bytes passes the bound of {self.max_frame}")
            end = pos + _HDR + length
            if end > n:
                return frames, pos, _HDR + length
            f = data[pos:end]
            if zlib.crc32(f[_HDR:]) != crc:
                raise FrameError("frame CRC mismatch")
            frames.append(f)
            pos = end
        return frames, pos, 0
