"""Redis Cluster's key-to-slot mapping, and the split of the 16384 slots
among ringline.kv's shards.

Owns: `key_slot(key)` (CRC16/XMODEM of the key, or of its first non-empty
`{hash tag}`, modulo 16384: the mapping every cluster client computes) and
`split(n)` (contiguous, near-equal slot ranges, one per shard).

Lifecycle: pure functions; the CRC table is built once at import.

Invariants: `split(n)` covers 0..16383 exactly once, in order.
"""
from __future__ import annotations

from typing import List, Tuple

__all__ = ["SLOTS", "key_slot", "split"]

SLOTS = 16384


def _table() -> List[int]:
    out = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        out.append(c & 0xFFFF)
    return out


_CRC = _table()


def crc16(data: bytes) -> int:
    c = 0
    tab = _CRC
    for b in data:
        c = ((c << 8) & 0xFFFF) ^ tab[((c >> 8) ^ b) & 0xFF]
    return c


def key_slot(key: bytes) -> int:
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key) % SLOTS


def split(n: int) -> List[Tuple[int, int]]:
    """n contiguous (first, last) slot ranges covering every slot."""
    out = []
    for i in range(n):
        out.append((SLOTS * i // n, SLOTS * (i + 1) // n - 1))
    return out
