"""Ketama consistent hashing, compatible with libmemcached's ketama (MD5) mode.

Owns: the continuum (a sorted array of 32-bit points, each naming a node) and
the key -> node lookup used by `ringline.memcache.ShardedClient`.

How the continuum is built (libmemcached `update_continuum`, weighted ketama):
each node gets ``floor(40 * n_nodes * weight / total_weight)`` "virtual node"
names ``f"{name}-{i}"``; each name is hashed with MD5 once and the 16-byte
digest gives four points (bytes 0-3, 4-7, 8-11, 12-15, each little-endian).
With equal weights that is the classic 160 points per server. A key is hashed
the same way (the first four digest bytes, little-endian) and belongs to the
first point at or after its hash, wrapping to the first point of the ring.
Integer arithmetic is used for the point count (libmemcached computes it in
floating point with a tiny epsilon; the results agree for any sane weights).

Node names are hashed as given, so pass libmemcached-style ``"host:port"``
names to land on the same servers as other ketama clients. (libmemcached
itself drops ``:11211`` from the name when the port is the default one.)

Lifecycle: built from the initial nodes; `add`, `remove` and `set_weight`
rebuild the whole continuum (membership changes are rare; lookups are hot).

Invariants: `node_for` does one MD5 and one `bisect` (C) per key and never
allocates more than the digest; the ring is never empty while a lookup runs
(an empty ring raises LookupError).
"""
from __future__ import annotations

from bisect import bisect_left
from struct import Struct
from typing import Dict, Iterable, List, Mapping, Tuple, Union

__all__ = ["Ketama"]

try:  # CPython's built-in MD5 is about twice as fast as OpenSSL's for short keys
    from _md5 import md5
except ImportError:  # pragma: no cover - builds without the module
    from hashlib import md5

_u32_le = Struct("<I").unpack_from

_POINTS_PER_HASH = 4          # four 32-bit points per MD5 digest
_VNODES_PER_SERVER = 40       # 160 points / 4 points per digest


def _points_for(name: str, count: int) -> List[int]:
    points: List[int] = []
    append = points.append
    for i in range(count):
        digest = md5(f"{name}-{i}".encode()).digest()
        for r in range(0, 16, 4):
            append(int.from_bytes(digest[r:r + 4], "little"))
    return points


class Ketama:
    """A ketama continuum over named nodes.

    `nodes` is a mapping ``{name: weight}`` (positive ints) or an iterable of
    names (weight 1 each). Names are any strings; they are hashed as UTF-8.
    """

    __slots__ = ("_weights", "_points", "_owners")

    def __init__(self, nodes: Union[Mapping[str, int], Iterable[str]] = ()) -> None:
        self._weights: Dict[str, int] = {}
        if isinstance(nodes, Mapping):
            items = list(nodes.items())
        else:
            items = [(name, 1) for name in nodes]
        for name, weight in items:
            self._weights[self._check_name(name)] = self._check_weight(name, weight)
        self._points: List[int] = []
        self._owners: List[str] = []
        self._rebuild()

    @staticmethod
    def _check_name(name: object) -> str:
        if not isinstance(name, str) or not name:
            raise TypeError(f"ketama node names must be non-empty str, got {name!r}")
        return name

    @staticmethod
    def _check_weight(name: str, weight: object) -> int:
        if not isinstance(weight, int) or isinstance(weight, bool) or weight <= 0:
            raise ValueError(f"ketama node {name!r}: weight must be a positive int, "
                             f"got {weight!r}")
        return weight

    def _rebuild(self) -> None:
        weights = self._weights
        total = sum(weights.values())
        n = len(weights)
        pairs: List[Tuple[int, int, str]] = []
        # order = node order; on a (2^-32-rare) point collision the node listed
        # last wins, as in uhashring; libmemcached's unstable qsort is arbitrary
        for order, (name, weight) in enumerate(weights.items()):
            vnodes = (_VNODES_PER_SERVER * n * weight) // total
            for point in _points_for(name, vnodes):
                pairs.append((point, -order, name))
        pairs.sort()
        points: List[int] = []
        owners: List[str] = []
        for point, _, name in pairs:
            if points and points[-1] == point:
                continue
            points.append(point)
            owners.append(name)
        self._points = points
        self._owners = owners

    # -- membership -------------------------------------------------------

    @property
    def nodes(self) -> Dict[str, int]:
        """A copy of ``{name: weight}``."""
        return dict(self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, name: object) -> bool:
        return name in self._weights

    def add(self, name: str, weight: int = 1) -> None:
        """Add a node (or change its weight) and rebuild the continuum."""
        self._weights[self._check_name(name)] = self._check_weight(name, weight)
        self._rebuild()

    set_weight = add

    def remove(self, name: str) -> None:
        """Remove a node; KeyError if unknown."""
        del self._weights[name]
        self._rebuild()

    # -- lookups ------------------------------------------------------------

    @staticmethod
    def hash(key: Union[bytes, str]) -> int:
        """The 32-bit ketama hash of a key (str keys are UTF-8 encoded)."""
        if isinstance(key, str):
            key = key.encode()
        return _u32_le(md5(key).digest())[0]

    def node_for(self, key: Union[bytes, bytearray, memoryview, str]) -> str:
        """The node owning `key` (the first point at or after its hash)."""
        if key.__class__ is str:
            key = key.encode()  # type: ignore[union-attr]
        points = self._points
        if not points:
            raise LookupError("ketama ring has no nodes")
        i = bisect_left(points, _u32_le(md5(key).digest())[0])
        if i == len(points):
            i = 0
        return self._owners[i]

    def points(self) -> List[Tuple[int, str]]:
        """The continuum as sorted ``(point, name)`` pairs (for inspection)."""
        return list(zip(self._points, self._owners))

    def __repr__(self) -> str:
        return f"Ketama({self._weights!r}, points={len(self._points)})"
