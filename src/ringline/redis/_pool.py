"""Several connections behind one client: ``Pool`` and ``ShardedClient``.

Owns: ``Pool`` (a fixed number of ``Client`` connections to one server,
used round-robin; each one redials lazily on its next command after it
broke, so a pool outlives a server restart) and ``ShardedClient`` (several
servers, each key sent to the server ketama picks for it, via
``ringline._util.ketama.Ketama``).

Lifecycle: connect_pool / connect_sharded open every connection up front
(failing fast on a wrong address or password); from then on nothing is
dialed except to replace a broken connection, by the first command that
lands on it. close() closes every connection; pending commands fail with
RedisConnectionError.

Invariants: a command's replies come from the connection it was written to
(each ``Client`` matches its own FIFO); a pipeline runs on one connection
(Pool) or one connection per shard (ShardedClient) so its order holds;
multi-key commands whose keys live on different shards are refused with
CrossSlotError before anything is sent.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .._util.addr import split_host_port
from ._client import Client
from ._connection import open_connection
from ._options import Options, _make_options
from ._pipeline import Pipeline
from ._commands import AllNodesAdmin, Commands, _k
from ._errors import CrossSlotError
from ._resp import encode_command

__all__ = ["Pool", "connect_pool", "ShardedClient", "connect_sharded"]


async def _open_clients(opts: Options, n: int) -> List[Client]:
    results = await asyncio.gather(*[open_connection(opts) for _ in range(n)],
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for r in results:
            if not isinstance(r, BaseException):
                await r.close()
        raise errors[0]
    return [Client(c, opts) for c in results]


class Pool(Commands):
    """A fixed number of connections to one server, used round-robin. Each
    connection pipelines automatically; a broken one is replaced lazily."""

    __slots__ = ("_clients", "_next", "_opts")

    def __init__(self, clients: Sequence[Client], opts: Options) -> None:
        if not clients:
            raise ValueError("a Pool needs at least one connection")
        self._clients = list(clients)
        self._next = 0
        self._opts = opts

    @property
    def size(self) -> int:
        return len(self._clients)

    @property
    def clients(self) -> List[Client]:
        return list(self._clients)

    def _pick(self) -> Client:
        i = self._next
        clients = self._clients
        self._next = i + 1 if i + 1 < len(clients) else 0
        return clients[i]

    def _dispatch(self, data: bytes, key: Any, post: Any) -> Any:
        return self._pick()._dispatch(data, key, post)

    def execute(self, *args: Any) -> Any:
        return self._pick()._dispatch(encode_command(args), None, None)

    command = execute

    def pipeline(self, transaction: bool = False) -> Pipeline:
        return Pipeline(self, transaction)

    async def _execute_pipeline(self, cmds: list, transaction: bool,
                                raise_on_error: bool) -> list:
        return await self._pick()._execute_pipeline(cmds, transaction, raise_on_error)

    async def set_guarded(self, key: Any, obj: Any, **kw: Any) -> bool:
        return await self._pick().set_guarded(key, obj, **kw)

    async def close(self) -> None:
        await asyncio.gather(*[c.close() for c in self._clients], return_exceptions=True)

    async def __aenter__(self) -> "Pool":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        up = sum(1 for c in self._clients if c.is_connected)
        return f"<ringline.redis.Pool {self._opts.address_text} {up}/{len(self._clients)} up>"


async def connect_pool(host: Optional[str] = None, port: Optional[int] = None, *,
                       size: int = 4, url: Optional[str] = None, **options: Any) -> Pool:
    """Open a Pool of size connections (same options as connect())."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    opts = _make_options(host, port, url, options)
    return Pool(await _open_clients(opts, size), opts)


# -- sharding ------------------------------------------------------------------


def _default_ring(weights: Dict[str, int]) -> Any:
    from ringline._util.ketama import Ketama
    return Ketama(weights)


class ShardedClient(AllNodesAdmin, Commands):
    """Keys spread over several servers by consistent (ketama) hashing.
    Keyless commands go to every server where that makes sense (ping,
    dbsize, flushdb, flushall, keys, scan_iter) and to the first server
    otherwise; ``node(name)`` reaches one server directly."""

    __slots__ = ("_nodes", "_ring", "_names", "_node_for")

    def __init__(self, nodes: Mapping[str, Any], ring: Any) -> None:
        if not nodes:
            raise ValueError("a ShardedClient needs at least one server")
        self._nodes = dict(nodes)
        self._names = list(nodes)
        self._ring = ring
        self._node_for = ring.node_for

    @property
    def names(self) -> List[str]:
        return list(self._names)

    def node(self, name: str) -> Any:
        """The Client (or Pool) of one server."""
        return self._nodes[name]

    def node_name_for(self, key: Any) -> str:
        return self._node_for(_k(key))

    def _target(self, key: Any) -> Any:
        if key is None:
            return self._nodes[self._names[0]]
        if type(key) is list:
            names = {self._node_for(k) for k in key}
            if len(names) > 1:
                raise CrossSlotError("CROSSSLOT the keys of this command live on different "
                                     f"shards ({', '.join(sorted(names))})", "CROSSSLOT")
            return self._nodes[names.pop()]
        return self._nodes[self._node_for(key)]

    def _dispatch(self, data: bytes, key: Any, post: Any) -> Any:
        return self._target(key)._dispatch(data, key, post)

    def execute(self, *args: Any, key: Any = None) -> Any:
        """Run any command on the server of key (keyword; the first server
        when None)."""
        return self._target(None if key is None else _k(key))._dispatch(
            encode_command(args), None, None)

    command = execute

    async def set_guarded(self, key: Any, obj: Any, **kw: Any) -> bool:
        return await self._target(_k(key)).set_guarded(key, obj, **kw)

    def pipeline(self, transaction: bool = False) -> Pipeline:
        if transaction:
            raise ValueError("a ShardedClient pipeline cannot be a transaction")
        return Pipeline(self, False)

    async def _execute_pipeline(self, cmds: list, transaction: bool,
                                raise_on_error: bool) -> list:
        groups: Dict[int, Tuple[Any, List[int]]] = {}
        for i, (_data, key, _post) in enumerate(cmds):
            node = self._target(key)
            groups.setdefault(id(node), (node, []))[1].append(i)
        replies: List[Any] = [None] * len(cmds)

        async def run(node: Any, idx: List[int]) -> None:
            sub = [cmds[i] for i in idx]
            got = await node._execute_pipeline(sub, False, False)
            for i, r in zip(idx, got):
                replies[i] = r

        await asyncio.gather(*[run(node, idx) for node, idx in groups.values()])
        # the conversions already ran per node: only surface the first error
        first = next((r for r in replies if isinstance(r, BaseException)), None)
        if first is not None and raise_on_error:
            raise first
        return replies

    # -- broadcast helpers --

    async def _all(self, method: str, *args: Any) -> List[Any]:
        return list(await asyncio.gather(*[getattr(n, method)(*args)
                                           for n in self._nodes.values()]))

    async def ping(self, message: Any = None) -> Any:
        if message is not None:
            return await self._nodes[self._names[0]].ping(message)
        return all(await self._all("ping"))

    async def scan_iter(self, **kw: Any):
        for name in self._names:
            async for k in self._nodes[name].scan_iter(**kw):
                yield k

    async def close(self) -> None:
        await asyncio.gather(*[n.close() for n in self._nodes.values()],
                             return_exceptions=True)

    async def __aenter__(self) -> "ShardedClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


ServerSpec = Union[str, Tuple[str, int]]


async def connect_sharded(servers: Union[Iterable[ServerSpec], Mapping[str, int]], *,
                          pool_size: int = 1, ring: Any = None, **options: Any) -> ShardedClient:
    """Open a ShardedClient. servers: "host:port" strings, (host, port) pairs
    or URLs, or a mapping of them to ketama weights. The node names (what
    the ring hashes) are "host:port". pool_size > 1 puts a Pool behind each
    server. ring: an object with node_for(key: bytes) -> name (default
    ringline._util.ketama.Ketama over the weights). Other options as connect()."""
    if isinstance(servers, Mapping):
        items = list(servers.items())
    else:
        items = [(s, 1) for s in servers]
    specs: Dict[str, Options] = {}
    weights: Dict[str, int] = {}
    for spec, weight in items:
        if isinstance(spec, tuple):
            opts = Options(spec[0], spec[1], **options)
        elif "://" in spec:
            opts = _make_options(None, None, spec, options)
        else:
            opts = Options(*split_host_port(spec), **options)
        name = opts.address_text
        if name in specs:
            raise ValueError(f"server {name} is listed twice")
        specs[name] = opts
        weights[name] = int(weight)
    if ring is None:
        ring = _default_ring(weights)
    opened = await asyncio.gather(*[_open_clients(o, pool_size) for o in specs.values()],
                                  return_exceptions=True)
    failure = next((got for got in opened if isinstance(got, BaseException)), None)
    if failure is not None:
        for got in opened:
            if not isinstance(got, BaseException):
                for c in got:
                    await c.close()
        raise failure
    nodes: Dict[str, Any] = {}
    for (name, opts), got in zip(specs.items(), opened):
        nodes[name] = got[0] if pool_size == 1 else Pool(got, opts)
    return ShardedClient(nodes, ring)
