"""Connection pools and ketama sharding for memcache.

Owns: `Pool` (a fixed number of `Client` connections to one server, used in
round-robin order and reconnected lazily) and `ShardedClient` (a `Pool` per
server, keys routed by libmemcached-compatible ketama, `ringline._util.ketama`).

Pool lifecycle: slots start empty; the first command that lands on a slot
connects it. A slot whose client failed (server restart, protocol error,
reply timeout) is reconnected by the next command that lands on it;
concurrent commands on that slot share the one connect attempt. A failed
connect raises to the commands waiting for it and leaves the slot empty for
the next try. `close()` closes every client; later commands raise
ConnectionClosed.

Invariants: a command fails only with its own connection's error (commands
are never retried: memcache writes are not idempotent in general); a dead
slot never blocks the others; at most one connect per slot is in flight.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .. import _errors
from .._util.ketama import Ketama
from ._client import Client, Key, _open, _split_addr

__all__ = ["Pool", "ShardedClient"]

# commands whose first argument is the key
_KEY_COMMANDS = ("get", "get_item", "gets", "set", "add", "replace", "append", "prepend",
                 "cas", "incr", "decr", "delete", "touch", "mg", "ms", "md", "ma")
_OTHER_COMMANDS = ("get_many", "gets_many", "gat", "gats", "flush_all", "version", "stats",
                   "mn")


class Pool:
    """`size` connections to one memcached, round-robin, lazily (re)connected.

    Has the command methods of `Client` (get, set, mg, ...). Options are
    `connect()`'s (timeout, ssl, server_hostname, max_value_size,
    reply_timeout, ...).
    """

    def __init__(self, host: Any = "127.0.0.1", port: Optional[int] = None, *, size: int = 4,
                 **options: Any) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.address = _split_addr(host, port)
        self.size = size
        self._options = options
        self._clients: List[Optional[Client]] = [None] * size
        self._connecting: List[Optional[asyncio.Future]] = [None] * size
        self._next = 0
        self._closed = False
        self.reconnects = 0

    # -- slots ----------------------------------------------------------------

    def _pick(self) -> Tuple[int, Optional[Client]]:
        i = self._next
        self._next = i + 1 if i + 1 < self.size else 0
        c = self._clients[i]
        if c is not None and c._error is None:
            return i, c
        return i, None

    async def _slot(self, i: int) -> Client:
        if self._closed:
            raise _errors.ConnectionClosed("memcache pool is closed")
        c = self._clients[i]
        if c is not None and c._error is None:
            return c
        fut = self._connecting[i]
        if fut is None:
            fut = self._connecting[i] = asyncio.ensure_future(self._connect_slot(i))
            fut.add_done_callback(_retrieve)
        return await asyncio.shield(fut)

    async def _connect_slot(self, i: int) -> Client:
        try:
            old = self._clients[i]
            if old is not None:
                self.reconnects += 1
                await old.close()
            c = await _open(*self.address, **self._options)
            if self._closed:
                await c.close()
                raise _errors.ConnectionClosed("memcache pool is closed")
            self._clients[i] = c
            return c
        finally:
            self._connecting[i] = None

    async def client(self) -> Client:
        """The next client in round-robin order, connected."""
        i, c = self._pick()
        return c if c is not None else await self._slot(i)

    async def connect(self) -> "Pool":
        """Connect every slot now (otherwise they connect on first use)."""
        await asyncio.gather(*(self._slot(i) for i in range(self.size)))
        return self

    async def _slow(self, i: int, name: str, args: Tuple[Any, ...], kw: Dict[str, Any]) -> Any:
        c = await self._slot(i)
        return await getattr(c, name)(*args, **kw)

    def _call(self, name: str, args: Tuple[Any, ...], kw: Dict[str, Any]) -> Any:
        if self._closed:
            raise _errors.ConnectionClosed("memcache pool is closed")
        i, c = self._pick()
        if c is not None:
            return getattr(c, name)(*args, **kw)
        return self._slow(i, name, args, kw)

    @property
    def connected(self) -> int:
        """Slots holding a live connection."""
        return sum(1 for c in self._clients if c is not None and c._error is None)

    async def close(self) -> None:
        self._closed = True
        for fut in self._connecting:
            if fut is not None:
                fut.cancel()
        clients = [c for c in self._clients if c is not None]
        self._clients = [None] * self.size
        for c in clients:
            await c.close()

    async def __aenter__(self) -> "Pool":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<memcache.Pool {self.address} size={self.size} connected={self.connected}>"


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


def _pool_method(name: str) -> Any:
    def method(self: Pool, *args: Any, **kw: Any) -> Any:
        return self._call(name, args, kw)
    method.__name__ = name
    method.__qualname__ = f"Pool.{name}"
    method.__doc__ = getattr(Client, name).__doc__
    return method


for _name in _KEY_COMMANDS + _OTHER_COMMANDS:
    setattr(Pool, _name, _pool_method(_name))


# ---------------------------------------------------------------------------


class ShardedClient:
    """Keys spread over several memcached servers by ketama (MD5, 160 points
    per unit of weight; libmemcached/twemproxy compatible for the same
    ``"host:port"`` names).

    `nodes`: ``{"host:port": weight}`` or a list of ``"host:port"``. Each
    server gets a `Pool` of `pool_size` connections; other options go to
    `connect()`. Single-key commands go to the key's server; `get_many` and
    `gets_many` split the keys by server and merge the answers; `flush_all`,
    `version`, `stats` and `mn` go to every server and return
    ``{"host:port": result}``.
    """

    def __init__(self, nodes: Union[Mapping[str, int], Iterable[str]], *, pool_size: int = 1,
                 **options: Any) -> None:
        if not isinstance(nodes, Mapping):
            nodes = {n: 1 for n in nodes}
        self._options = dict(options, size=pool_size)
        self.ring = Ketama(nodes)
        self.pools: Dict[str, Pool] = {name: Pool(name, **self._options) for name in nodes}

    def node_for(self, key: Key) -> str:
        """The ``"host:port"`` owning `key`."""
        return self.ring.node_for(key)

    def pool_for(self, key: Key) -> Pool:
        return self.pools[self.ring.node_for(key)]

    def add_node(self, name: str, weight: int = 1) -> None:
        """Add a server (or change its weight); keys move by ketama's rules."""
        self.ring.add(name, weight)
        if name not in self.pools:
            self.pools[name] = Pool(name, **self._options)

    async def remove_node(self, name: str) -> None:
        self.ring.remove(name)
        pool = self.pools.pop(name)
        await pool.close()

    def _by_node(self, keys: Iterable[Key]) -> Dict[str, List[Key]]:
        groups: Dict[str, List[Key]] = {}
        node_for = self.ring.node_for
        for k in keys:
            groups.setdefault(node_for(k), []).append(k)
        return groups

    async def _many(self, name: str, keys: Iterable[Key]) -> Dict[bytes, Any]:
        groups = self._by_node(keys)
        if len(groups) == 1:
            ((node, ks),) = groups.items()
            return await getattr(self.pools[node], name)(ks)
        out: Dict[bytes, Any] = {}
        for part in await asyncio.gather(*(getattr(self.pools[n], name)(ks)
                                           for n, ks in groups.items())):
            out.update(part)
        return out

    def get_many(self, keys: Iterable[Key]) -> Any:
        """``{key: value}`` for the keys that hit, across servers."""
        return self._many("get_many", keys)

    def gets_many(self, keys: Iterable[Key]) -> Any:
        """``{key: Item}`` for the keys that hit, across servers."""
        return self._many("gets_many", keys)

    def gat(self, exptime: int, key: Key) -> Any:
        return self.pool_for(key).gat(exptime, key)

    def gats(self, exptime: int, key: Key) -> Any:
        return self.pool_for(key).gats(exptime, key)

    async def _all(self, name: str, *args: Any, **kw: Any) -> Dict[str, Any]:
        names = list(self.pools)
        results = await asyncio.gather(*(getattr(self.pools[n], name)(*args, **kw)
                                         for n in names))
        return dict(zip(names, results))

    def flush_all(self, delay: int = 0, *, noreply: bool = False) -> Any:
        return self._all("flush_all", delay, noreply=noreply)

    def version(self) -> Any:
        return self._all("version")

    def stats(self, *args: str) -> Any:
        return self._all("stats", *args)

    def mn(self) -> Any:
        return self._all("mn")

    async def close(self) -> None:
        for pool in list(self.pools.values()):
            await pool.close()

    async def __aenter__(self) -> "ShardedClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<memcache.ShardedClient {self.ring.nodes!r}>"


def _sharded_method(name: str) -> Any:
    def method(self: ShardedClient, key: Key, *args: Any, **kw: Any) -> Any:
        return getattr(self.pools[self.ring.node_for(key)], name)(key, *args, **kw)
    method.__name__ = name
    method.__qualname__ = f"ShardedClient.{name}"
    method.__doc__ = getattr(Client, name).__doc__
    return method


for _name in _KEY_COMMANDS:
    setattr(ShardedClient, _name, _sharded_method(_name))
del _name
