"""The keyspace of one ringline.kv shard: values, expiry deadlines, counters.

Owns: the dict of keys to values (bytes for strings, dict for hashes, deque
for lists, set for sets), the expiry deadlines (absolute Unix time in
milliseconds, as Redis keeps them), the heap that active expiry walks, and
the `dirty` counter of changes (the command layer journals a write command
only when it changed something).

Lifecycle: one Keyspace per shard (worker process), created empty, filled by
journal recovery, then by commands; `active_expire()` runs on a timer of the
server; `flush()` empties it.

Invariants:
  - a key whose deadline has passed is never visible: every read goes
    through `lookup`, which deletes it first (lazy expiry);
  - an empty hash, list or set is never stored (the command that empties it
    deletes the key, as Redis does);
  - every deadline in `expires` belongs to a key in `data`; the heap may hold
    stale entries (a deadline changed or removed), which active expiry skips
    by comparing with `expires`, and it is rebuilt when stale entries
    outnumber live ones, so its size stays within 2x `expires` + 64;
  - `active_expire` does a bounded amount of work per call (`budget` keys).
"""
from __future__ import annotations

import heapq
import time
from collections import deque
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["Keyspace", "now_ms", "type_name"]


def now_ms() -> int:
    return int(time.time() * 1000)


def type_name(value: Any) -> bytes:
    t = type(value)
    if t is bytes:
        return b"string"
    if t is dict:
        return b"hash"
    if t is deque:
        return b"list"
    if t is set:
        return b"set"
    return b"none"


class Keyspace:
    """One shard's data (see the module doc)."""

    __slots__ = ("data", "expires", "_heap", "dirty", "expired_keys", "clock")

    def __init__(self) -> None:
        self.data: Dict[bytes, Any] = {}
        self.expires: Dict[bytes, int] = {}
        self._heap: List[Tuple[int, bytes]] = []
        self.dirty = 0                  # changes since start
        self.expired_keys = 0
        self.clock = now_ms             # replaceable in tests

    def __len__(self) -> int:
        return len(self.data)

    # -- reads ------------------------------------------------------------

    def lookup(self, key: bytes) -> Any:
        """The live value of key, or None (deleting it first when expired)."""
        v = self.data.get(key)
        if v is None:
            return None
        if self.expires and key in self.expires and self.expires[key] <= self.clock():
            self._expire(key)
            return None
        return v

    def ttl_ms(self, key: bytes) -> Optional[int]:
        """Milliseconds left, or None when the key has no deadline (the
        caller has checked that the key exists)."""
        at = self.expires.get(key)
        if at is None:
            return None
        return max(0, at - self.clock())

    # -- writes -----------------------------------------------------------

    def set(self, key: bytes, value: Any, keep_ttl: bool = False) -> None:
        """Store value; a previous deadline is dropped unless keep_ttl."""
        self.data[key] = value
        if not keep_ttl and key in self.expires:
            del self.expires[key]
        self.dirty += 1

    def delete(self, key: bytes) -> bool:
        if self.lookup(key) is None:
            return False
        del self.data[key]
        self.expires.pop(key, None)
        self.dirty += 1
        return True

    def expire_at(self, key: bytes, at_ms: int) -> None:
        """Give an existing key a deadline; one in the past deletes it."""
        if at_ms <= self.clock():
            self.data.pop(key, None)
            self.expires.pop(key, None)
            self.dirty += 1
            return
        self.expires[key] = at_ms
        heapq.heappush(self._heap, (at_ms, key))
        if len(self._heap) > 2 * len(self.expires) + 64:
            self._heap = [(t, k) for k, t in self.expires.items()]
            heapq.heapify(self._heap)
        self.dirty += 1

    def persist(self, key: bytes) -> bool:
        if key in self.expires:
            del self.expires[key]
            self.dirty += 1
            return True
        return False

    def flush(self) -> None:
        self.data.clear()
        self.expires.clear()
        self._heap = []
        self.dirty += 1

    def _expire(self, key: bytes) -> None:
        del self.data[key]
        del self.expires[key]
        self.expired_keys += 1

    # -- active expiry ----------------------------------------------------

    def active_expire(self, budget: int = 200) -> int:
        """Delete up to budget keys whose deadline passed (earliest first);
        returns how many were deleted."""
        heap = self._heap
        now = self.clock()
        done = 0
        steps = 0
        while heap and heap[0][0] <= now and steps < budget * 2:
            at, key = heapq.heappop(heap)
            steps += 1
            if self.expires.get(key) == at:
                self._expire(key)
                done += 1
                if done >= budget:
                    break
        return done
