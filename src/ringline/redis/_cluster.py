"""Redis Cluster: key slots, the slot map and redirect handling.

Owns: ``key_slot`` (CRC16/XMODEM of the key, or of its ``{hash tag}``,
modulo 16384), slot-map parsing (``CLUSTER SHARDS``, falling back to
``CLUSTER SLOTS``), and ``ClusterClient``: one automatically pipelined
``Client`` per master, commands routed by the slot of their key(s).

Lifecycle: connect_cluster dials the seed nodes until one returns the slot
map, then opens a connection to every master. A command goes to the master
of its slot; MOVED updates that slot's owner at once, retries on the new
node and schedules a full map refresh; ASK retries once on the target with
ASKING written immediately before the command (same write, same
connection); TRYAGAIN, LOADING and CLUSTERDOWN are retried after a short,
growing pause; a dead node's connection error triggers a map refresh and a
retry elsewhere. At most ``max_redirects`` (default 5) redirects and
retries per command, then the last error is raised. A node that disappears
from the map is closed at the next refresh.

Invariants: multi-key commands whose keys hash to different slots are
refused with CrossSlotError before anything is written; one refresh runs at
a time (concurrent triggers share it); counters in ``stats`` record every
redirect, retry and refresh (tests assert on them).
"""
from __future__ import annotations

import asyncio
import binascii
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .._util.addr import parse_address
from ._client import Client
from ._connection import open_connection
from ._options import Options, _make_options
from ._pipeline import _EXEC, _MULTI, Pipeline, _finish_pipeline
from ._commands import AllNodesAdmin, Commands, _k
from ._errors import (AskError, ClusterDownError, CrossSlotError, LoadingError, MovedError,
                      RedisConnectionError, RedisError, ResponseError, TryAgainError)
from ._resp import encode_arg, encode_command

__all__ = ["key_slot", "ClusterClient", "connect_cluster", "parse_cluster_slots",
           "parse_cluster_shards", "SLOTS"]

SLOTS = 16384
Address = Tuple[str, int]
_crc16 = binascii.crc_hqx          # CRC-CCITT (XMODEM): Redis Cluster's CRC16


def key_slot(key: Union[bytes, str, memoryview]) -> int:
    """The cluster slot of key: CRC16 of the part between the first '{' and
    the next '}' when that part is non-empty, else of the whole key."""
    if type(key) is not bytes:
        key = _k(key)
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return _crc16(key, 0) & 0x3FFF


def _text(v: Any) -> str:
    if isinstance(v, (bytes, memoryview)):
        return bytes(v).decode()
    return str(v)


def parse_cluster_slots(reply: list, seed_host: str) -> List[Tuple[int, int, Address]]:
    """[(first_slot, last_slot, (host, port) of the master)] from CLUSTER
    SLOTS. An empty or '?' host means "the node you asked"."""
    out = []
    for entry in reply:
        lo, hi, master = int(entry[0]), int(entry[1]), entry[2]
        host = _text(master[0])
        if host in ("", "?"):
            host = seed_host
        out.append((lo, hi, (host, int(master[1]))))
    return out


def _as_map(v: Any) -> Dict[str, Any]:
    if isinstance(v, dict):
        return {_text(k): x for k, x in v.items()}
    it = iter(v)
    return {_text(k): x for k, x in zip(it, it)}


def parse_cluster_shards(reply: list, seed_host: str) -> List[Tuple[int, int, Address]]:
    """The same ranges from CLUSTER SHARDS (Redis 7+): the online master of
    each shard."""
    out = []
    for shard in reply:
        shard = _as_map(shard)
        slots = [int(s) for s in shard.get("slots", [])]
        master = None
        for node in shard.get("nodes", []):
            node = _as_map(node)
            if _text(node.get("role", "")) == "master" and \
                    _text(node.get("health", "online")) == "online":
                master = node
                break
        if master is None or not slots:
            continue
        host = _text(master.get("ip") or master.get("endpoint") or "")
        if host in ("", "?"):
            host = seed_host
        port = master.get("port") or master.get("tls-port")
        for i in range(0, len(slots) - 1, 2):
            out.append((slots[i], slots[i + 1], (host, int(port))))
    return out


# first key, last key (-1: last argument, -2: second to last), step
_KEY_SPECS: Dict[bytes, Tuple[int, int, int]] = {}
for _names, _spec in (
    ((b"GET", b"SET", b"SETNX", b"SETEX", b"PSETEX", b"GETSET", b"GETDEL", b"GETEX",
      b"APPEND", b"STRLEN", b"INCR", b"DECR", b"INCRBY", b"DECRBY", b"INCRBYFLOAT",
      b"GETRANGE", b"SETRANGE", b"EXPIRE", b"PEXPIRE", b"EXPIREAT", b"PEXPIREAT", b"TTL",
      b"PTTL", b"PERSIST", b"TYPE", b"HSET", b"HSETNX", b"HGET", b"HMGET", b"HMSET",
      b"HGETALL", b"HDEL", b"HINCRBY", b"HINCRBYFLOAT", b"HKEYS", b"HVALS", b"HLEN",
      b"HEXISTS", b"HSTRLEN", b"HSCAN", b"LPUSH", b"RPUSH", b"LPUSHX", b"RPUSHX", b"LPOP",
      b"RPOP", b"LRANGE", b"LLEN", b"LINDEX", b"LSET", b"LREM", b"LTRIM", b"LINSERT",
      b"LPOS", b"SADD", b"SREM", b"SMEMBERS", b"SISMEMBER", b"SMISMEMBER", b"SCARD",
      b"SPOP", b"SRANDMEMBER", b"SSCAN", b"ZADD", b"ZREM", b"ZSCORE", b"ZMSCORE",
      b"ZINCRBY", b"ZCARD", b"ZCOUNT", b"ZRANK", b"ZREVRANK", b"ZRANGE", b"ZREVRANGE",
      b"ZRANGEBYSCORE", b"ZREVRANGEBYSCORE", b"ZRANGEBYLEX", b"ZREMRANGEBYRANK",
      b"ZREMRANGEBYSCORE", b"ZSCAN", b"ZPOPMIN", b"ZPOPMAX", b"DUMP", b"RESTORE",
      b"XADD", b"XLEN", b"XRANGE", b"XREVRANGE", b"XDEL", b"XTRIM",
      b"PFADD", b"GETBIT", b"SETBIT", b"BITCOUNT", b"BITPOS", b"GEOADD", b"GEOPOS",
      b"GEODIST", b"GEOSEARCH", b"WATCH"), (1, 1, 1)),
    ((b"MGET", b"DEL", b"UNLINK", b"EXISTS", b"TOUCH", b"SINTER", b"SUNION", b"SDIFF",
      b"PFCOUNT", b"PFMERGE", b"SINTERSTORE", b"SUNIONSTORE", b"SDIFFSTORE"), (1, -1, 1)),
    ((b"MSET", b"MSETNX"), (1, -1, 2)),
    ((b"RENAME", b"RENAMENX", b"SMOVE", b"LMOVE", b"RPOPLPUSH", b"COPY"), (1, 2, 1)),
    ((b"BLPOP", b"BRPOP", b"BZPOPMIN", b"BZPOPMAX"), (1, -2, 1)),
):
    for _name in _names:
        _KEY_SPECS[_name] = _spec
_KEYLESS = {b"PING", b"ECHO", b"INFO", b"DBSIZE", b"FLUSHDB", b"FLUSHALL", b"CONFIG",
            b"TIME", b"CLUSTER", b"COMMAND", b"CLIENT", b"KEYS", b"SCAN", b"RANDOMKEY",
            b"LASTSAVE", b"MEMORY", b"SLOWLOG", b"DEBUG", b"HELLO", b"AUTH", b"SELECT",
            b"READONLY", b"READWRITE", b"WAIT", b"SCRIPT", b"FUNCTION", b"ACL", b"LATENCY",
            b"MULTI", b"EXEC", b"DISCARD", b"UNWATCH", b"PUBLISH"}


def _keys_by_spec(args: Sequence[bytes], spec: Tuple[int, int, int]) -> List[bytes]:
    first, last, step = spec
    if first <= 0:
        return []
    n = len(args)
    stop = n + last if last < 0 else last
    return [args[i] for i in range(first, min(stop, n - 1) + 1, step)]


def _common_slot(keys: List[bytes]) -> int:
    slot = key_slot(keys[0])
    for k in keys[1:]:
        if key_slot(k) != slot:
            raise CrossSlotError("CROSSSLOT Keys in request don't hash to the same slot "
                                 "(refused by the client before sending)", "CROSSSLOT")
    return slot


class ClusterClient(AllNodesAdmin, Commands):
    """A Redis Cluster client (see the module docstring)."""

    __slots__ = ("_opts", "_seeds", "_nodes", "_dialing", "_slots", "_refreshing",
                 "_closed", "max_redirects", "retry_delay", "stats")

    def __init__(self, seeds: Sequence[Address], opts: Options, *, max_redirects: int = 5,
                 retry_delay: float = 0.05) -> None:
        self._opts = opts
        self._seeds = list(seeds)
        self._nodes: Dict[Address, Client] = {}
        self._dialing: Dict[Address, asyncio.Future] = {}
        self._slots: List[Optional[Address]] = [None] * SLOTS
        self._refreshing: Optional[asyncio.Future] = None
        self._closed = False
        self.max_redirects = max_redirects
        self.retry_delay = retry_delay
        self.stats = {"moved": 0, "ask": 0, "tryagain": 0, "loading": 0, "clusterdown": 0,
                      "connection_errors": 0, "refreshes": 0, "crossslot_refused": 0}

    # -- the map --

    @property
    def masters(self) -> List[Address]:
        return sorted({a for a in self._slots if a is not None})

    def node_for_slot(self, slot: int) -> Optional[Address]:
        return self._slots[slot]

    def node_for_key(self, key: Any) -> Optional[Address]:
        return self._slots[key_slot(key)]

    async def refresh(self) -> None:
        """Reload the slot map now (one refresh at a time, shared)."""
        pending = self._refreshing
        if pending is None:
            pending = self._refreshing = asyncio.ensure_future(self._load_map())
            pending.add_done_callback(self._refreshed)
        await asyncio.shield(pending)

    def _refreshed(self, fut: asyncio.Future) -> None:
        self._refreshing = None
        if not fut.cancelled():
            fut.exception()

    def _schedule_refresh(self) -> None:
        if self._refreshing is None and not self._closed:
            self._refreshing = asyncio.ensure_future(self._load_map())
            self._refreshing.add_done_callback(self._refreshed)

    async def _load_map(self) -> None:
        self.stats["refreshes"] += 1
        candidates = [a for a in self._nodes if self._nodes[a].is_connected]
        candidates += [a for a in self._nodes if a not in candidates]
        candidates += [s for s in self._seeds if s not in candidates]
        errors = []
        for addr in candidates:
            try:
                client = await self._node(addr)
                ranges = await self._fetch_ranges(client, addr[0])
            except (RedisError, OSError) as exc:
                errors.append(f"{addr[0]}:{addr[1]}: {exc}")
                continue
            if not ranges:
                errors.append(f"{addr[0]}:{addr[1]}: empty slot map")
                continue
            slots: List[Optional[Address]] = [None] * SLOTS
            for lo, hi, owner in ranges:
                for s in range(lo, hi + 1):
                    slots[s] = owner
            self._slots = slots
            live = set(slots)
            for old in [a for a in self._nodes if a not in live and a not in self._seeds]:
                client = self._nodes.pop(old)
                asyncio.ensure_future(client.close())
            return
        raise RedisConnectionError("cannot load the cluster slot map: " + "; ".join(errors))

    async def _fetch_ranges(self, client: Client, seed_host: str) -> List[Tuple[int, int, Address]]:
        try:
            reply = await client.execute(b"CLUSTER", b"SHARDS")
            ranges = parse_cluster_shards(reply, seed_host)
            if ranges:
                return ranges
        except ResponseError:
            pass
        reply = await client.execute(b"CLUSTER", b"SLOTS")
        return parse_cluster_slots(reply, seed_host)

    async def _node(self, addr: Address) -> Client:
        client = self._nodes.get(addr)
        if client is not None:
            return client
        if self._closed:
            raise RedisConnectionError("cluster client is closed")
        pending = self._dialing.get(addr)
        if pending is None:
            pending = asyncio.ensure_future(
                open_connection(self._opts.replace(host=addr[0], port=addr[1])))
            self._dialing[addr] = pending

            def done(fut: asyncio.Future, addr: Address = addr) -> None:
                self._dialing.pop(addr, None)
                if fut.cancelled() or fut.exception() is not None:
                    return
                conn = fut.result()
                if self._closed or addr in self._nodes:
                    asyncio.ensure_future(conn.close())
                else:
                    self._nodes[addr] = Client(conn, self._opts.replace(host=addr[0],
                                                                        port=addr[1]))
            pending.add_done_callback(done)
        await asyncio.shield(pending)
        client = self._nodes.get(addr)
        if client is None:
            raise RedisConnectionError(f"redis {addr[0]}:{addr[1]}: connection was closed")
        return client

    def _any_node(self) -> Address:
        masters = [a for a in self._nodes if self._nodes[a].is_connected and a in set(self._slots)]
        if masters:
            return masters[0]
        for a in self._slots:
            if a is not None:
                return a
        return self._seeds[0]

    # -- the command path --

    def _dispatch(self, data: bytes, key: Any, post: Any) -> Any:
        if key is None:
            slot = -1
        elif type(key) is list:
            try:
                slot = _common_slot(key)
            except CrossSlotError:
                self.stats["crossslot_refused"] += 1
                raise
        else:
            slot = key_slot(key)
        return self._call(slot, data, post, 1)

    async def _call(self, slot: int, data: bytes, post: Any, n: int) -> Any:
        """Run data (n commands) on the master of slot (-1: any node),
        following redirects; the reply (n == 1) or the list of replies."""
        target = self._slots[slot] if slot >= 0 else self._any_node()
        if target is None:
            await self.refresh()
            target = self._slots[slot] or self._any_node()
        asking = False
        attempts = 0
        while True:
            try:
                client = self._nodes.get(target)
                if client is None:
                    client = await self._node(target)
                if asking:
                    replies = await client._run_batch(_ASKING + data, n + 1)
                    replies = replies[1:]
                    reply = replies[0] if n == 1 else replies
                elif n == 1:
                    reply = await client._dispatch(data, None, None)
                else:
                    reply = await client._run_batch(data, n)
                if n == 1 and isinstance(reply, BaseException):
                    raise reply
                if n > 1:
                    redirect = next((r for r in reply if isinstance(r, (MovedError, AskError,
                                    TryAgainError, LoadingError, ClusterDownError))), None)
                    if redirect is not None and attempts < self.max_redirects:
                        raise redirect
                return post(reply) if post is not None else reply
            except MovedError as exc:
                attempts += 1
                self.stats["moved"] += 1
                if attempts > self.max_redirects:
                    raise
                if 0 <= exc.slot < SLOTS:
                    self._slots[exc.slot] = exc.address
                self._schedule_refresh()
                target = exc.address
                asking = False
            except AskError as exc:
                attempts += 1
                self.stats["ask"] += 1
                if attempts > self.max_redirects:
                    raise
                target = exc.address
                asking = True
            except (TryAgainError, LoadingError, ClusterDownError) as exc:
                attempts += 1
                name = {TryAgainError: "tryagain", LoadingError: "loading",
                        ClusterDownError: "clusterdown"}[type(exc)]
                self.stats[name] += 1
                if attempts > self.max_redirects:
                    raise
                await asyncio.sleep(self.retry_delay * attempts)
                if isinstance(exc, ClusterDownError):
                    await self._try_refresh()
                asking = False if isinstance(exc, LoadingError) else asking
                if not asking and slot >= 0 and self._slots[slot] is not None:
                    target = self._slots[slot]
            except RedisConnectionError:
                attempts += 1
                self.stats["connection_errors"] += 1
                if attempts > self.max_redirects or self._closed:
                    raise
                await self._try_refresh()
                new = self._slots[slot] if slot >= 0 else self._any_node()
                if new == target:
                    await asyncio.sleep(self.retry_delay * attempts)
                target = new or target
                asking = False

    async def _try_refresh(self) -> None:
        try:
            await self.refresh()
        except RedisError:
            pass

    # -- generic commands --

    async def _keys_of(self, args: Sequence[Any]) -> List[bytes]:
        enc = [encode_arg(a) for a in args]
        name = enc[0].upper()
        spec = _KEY_SPECS.get(name)
        if spec is not None:
            return _keys_by_spec(enc, spec)
        if name in _KEYLESS:
            return []
        client = await self._node(self._any_node())
        info = await client.execute(b"COMMAND", b"INFO", name)
        entry = info[0] if info else None
        if not entry:
            return []
        flags = {bytes(f).lower() for f in entry[2]}
        spec = (int(entry[3]), int(entry[4]), int(entry[5]))
        if b"movablekeys" in flags or spec[0] <= 0:
            # keys found by the server (movable keys, or a container command
            # such as OBJECT whose subcommands have the key specs)
            try:
                keys = await client.execute(b"COMMAND", b"GETKEYS", *enc)
            except ResponseError:            # "no key arguments": a keyless command
                return []
            return [bytes(k) for k in keys]
        _KEY_SPECS[name] = spec
        return _keys_by_spec(enc, spec)

    async def execute(self, *args: Any) -> Any:
        """Run any command on the master of its key(s) (found from a table of
        common commands, else COMMAND INFO / COMMAND GETKEYS)."""
        keys = await self._keys_of(args)
        if not keys:
            slot = -1
        else:
            try:
                slot = _common_slot(keys)
            except CrossSlotError:
                self.stats["crossslot_refused"] += 1
                raise
        return await self._call(slot, encode_command(args), None, 1)

    command = execute

    async def set_guarded(self, key: Any, obj: Any, **kw: Any) -> bool:
        slot = key_slot(key)
        attempts = 0
        while True:
            target = self._slots[slot] or self._any_node()
            try:
                client = await self._node(target)
                return await client.set_guarded(key, obj, **kw)
            except MovedError as exc:
                attempts += 1
                self.stats["moved"] += 1
                if attempts > self.max_redirects:
                    raise
                self._slots[exc.slot] = exc.address
                self._schedule_refresh()

    def pipeline(self, transaction: bool = False) -> Pipeline:
        return Pipeline(self, transaction)

    async def _execute_pipeline(self, cmds: list, transaction: bool,
                                raise_on_error: bool) -> list:
        """Commands grouped by master, one batch per master, replies put back
        in order; commands answered with a redirect are re-run one by one
        through the redirect-following path."""
        slots = []
        for _data, key, _post in cmds:
            if key is None:
                slots.append(-1)
            elif type(key) is list:
                slots.append(_common_slot(key))
            else:
                slots.append(key_slot(key))
        if transaction:
            real = {s for s in slots if s >= 0}
            if len(real) > 1:
                self.stats["crossslot_refused"] += 1
                raise CrossSlotError("CROSSSLOT a cluster transaction must use one slot",
                                     "CROSSSLOT")
            slot = real.pop() if real else -1
            data = _MULTI + b"".join(c[0] for c in cmds) + _EXEC
            replies = await self._call(slot, data, None, len(cmds) + 2)
            return _finish_pipeline(cmds, replies, True, raise_on_error)
        groups: Dict[Optional[Address], List[int]] = {}
        for i, s in enumerate(slots):
            groups.setdefault(self._slots[s] if s >= 0 else self._any_node(), []).append(i)
        raw: List[Any] = [None] * len(cmds)

        async def run(addr: Optional[Address], idx: List[int]) -> None:
            try:
                client = await self._node(addr) if addr is not None else None
                if client is None:
                    raise RedisConnectionError("slot has no known master")
                got = await client._run_batch(b"".join(cmds[i][0] for i in idx), len(idx))
            except RedisConnectionError as exc:
                got = [exc] * len(idx)
            for i, r in zip(idx, got):
                raw[i] = r

        await asyncio.gather(*[run(a, idx) for a, idx in groups.items()])
        for i, r in enumerate(raw):
            if isinstance(r, (MovedError, AskError, TryAgainError, LoadingError,
                              ClusterDownError, RedisConnectionError)):
                try:
                    raw[i] = await self._call(slots[i], cmds[i][0], None, 1)
                except RedisError as exc:
                    raw[i] = exc
        return _finish_pipeline(cmds, raw, False, raise_on_error)

    # -- broadcast helpers --

    async def _masters_clients(self) -> List[Client]:
        return [await self._node(a) for a in self.masters]

    async def _all(self, method: str, *args: Any) -> List[Any]:
        clients = await self._masters_clients()
        return list(await asyncio.gather(*[getattr(c, method)(*args) for c in clients]))

    async def ping(self, message: Any = None) -> Any:
        if message is not None:
            return await self._call(-1, encode_command((b"PING", message)), None, 1)
        return all(await self._all("ping"))

    async def scan_iter(self, **kw: Any):
        for client in await self._masters_clients():
            async for k in client.scan_iter(**kw):
                yield k

    # -- lifecycle --

    async def close(self) -> None:
        self._closed = True
        if self._refreshing is not None:
            self._refreshing.cancel()
        for fut in list(self._dialing.values()):
            fut.cancel()
        await asyncio.gather(*[c.close() for c in self._nodes.values()],
                             return_exceptions=True)
        self._nodes.clear()

    async def __aenter__(self) -> "ClusterClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<ringline.redis.ClusterClient masters={self.masters}>"


_ASKING = encode_command((b"ASKING",))


def _seed(spec: Any) -> Address:
    return parse_address(spec if isinstance(spec, tuple) else str(spec))


async def connect_cluster(seeds: Union[Iterable[Any], str], *, max_redirects: int = 5,
                          retry_delay: float = 0.05, **options: Any) -> ClusterClient:
    """Open a ClusterClient from seed nodes ("host:port" strings or (host,
    port) pairs, or one redis:// URL). Options as connect() (db must be 0)."""
    if isinstance(seeds, str):
        if "://" in seeds:
            opts = _make_options(None, None, seeds, options)
            seed_list = [(opts.host, opts.port)]
        else:
            seed_list = [_seed(s) for s in seeds.split(",")]
            opts = Options(seed_list[0][0], seed_list[0][1], **options)
    else:
        seed_list = [_seed(s) for s in seeds]
        if not seed_list:
            raise ValueError("connect_cluster needs at least one seed node")
        opts = Options(seed_list[0][0], seed_list[0][1], **options)
    if opts.db:
        raise ValueError("Redis Cluster has only database 0")
    client = ClusterClient(seed_list, opts, max_redirects=max_redirects,
                           retry_delay=retry_delay)
    try:
        await client.refresh()
        await client._masters_clients()
    except BaseException:
        await client.close()
        raise
    return client
