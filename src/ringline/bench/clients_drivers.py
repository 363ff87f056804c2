"""The client drivers of the client workloads: what is compared, and how.

Owns: the registry (:data:`KINDS`, the two backing servers and their task
counts and targets; :data:`DRIVERS`, one :class:`DriverSpec` a library: its
server, its loop, its settings and what "pipeline N" means for it;
:class:`ClientCell`, one cell of the plan: server x op x value size x load),
the keys and values a cell preloads, the marker of the worker's answer lines
(``WORKER_PREFIX``), and the driver classes that run inside a worker
process (how each library connects, GETs, SETs and runs a batch).

Drivers (one per library, each on the loop it is normally used with):

=================  ========  ========  ===========================================
name               server    loop      client
=================  ========  ========  ===========================================
redis-py           redis     uvloop    ``redis.asyncio.Redis`` (hiredis parser)
ringline-redis     redis     ringline  ``ringline.redis.connect``
aiomcache          memcache  uvloop    ``aiomcache.Client(pool_size=tasks)``
emcache            memcache  uvloop    ``emcache.create_client(max_connections=tasks)``
emcache-autobatch  memcache  uvloop    the same with ``autobatching=True`` (GET,
                                       concurrent tasks only: an extra column)
ringline-memcache  memcache  ringline  ``ringline.memcache.connect``
=================  ========  ========  ===========================================

Lifecycle: the registry is constant data read by the harness and the
workers alike; a driver object lives in one worker for one cell
(``open`` -> sessions -> ``close``) and imports its library only when
opened, so the harness never imports a peer's package.

Invariants: :data:`DRIVERS`, ``_MODULES`` and ``_DRIVER_CLASSES`` name the
same drivers; a driver adds no layer of its own between the session loops
and the library's calls (bound methods where the library allows).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ServerKind:
    name: str
    tasks: tuple[int, ...]          # closed-loop task counts
    batch_ops: tuple[str, ...]      # ops that have a "pipeline" load
    target_tasks: int               # the load the target is set at
    target_ratio: float


@dataclass(frozen=True)
class ClientCell:
    kind: str
    op: str
    size: int
    tasks: int
    batch: int | None

    @property
    def load(self) -> str:
        if self.batch:
            return f"pipeline {self.batch}"
        return f"{self.tasks} task" + ("" if self.tasks == 1 else "s")

    @property
    def key(self) -> str:
        load = f"p{self.batch}" if self.batch else f"t{self.tasks}"
        return f"{self.kind}/{self.op}/{self.size}B/{load}"


@dataclass(frozen=True)
class DriverSpec:
    name: str
    kind: str
    loop: str                       # a name in loops.LOOPS
    subject: bool                   # ringline's own client
    packages: tuple[str, ...]       # distributions whose versions are reported
    settings: str                   # how the client is configured
    batch: str                      # what "pipeline N" is for this driver
    ops: tuple[str, ...] = ("get", "set")
    concurrent_only: bool = False   # only the cells with more than one task
    variant_of: str | None = None   # another configuration of that driver (no target)

    def applies(self, cell: ClientCell) -> bool:
        if cell.kind != self.kind or cell.op not in self.ops:
            return False
        return not self.concurrent_only or (not cell.batch and cell.tasks > 1)


KINDS: dict[str, ServerKind] = {
    "redis": ServerKind("redis", (1, 50), ("get", "set"), 50, 5.0),
    "memcache": ServerKind("memcache", (1, 32), ("get",), 32, 3.0),
}

DRIVERS: dict[str, DriverSpec] = {d.name: d for d in (
    DriverSpec("redis-py", "redis", "uvloop", False, ("redis", "hiredis"),
               "redis.asyncio.Redis(decode_responses=False), hiredis parser, "
               "default pool (one connection per concurrent task)",
               "pipeline(transaction=False) + execute()"),
    DriverSpec("ringline-redis", "redis", "ringline", True, ("ringline",),
               "ringline.redis.connect(host, port): one connection, automatic pipelining",
               "pipeline() + execute()"),
    DriverSpec("aiomcache", "memcache", "uvloop", False, ("aiomcache",),
               "aiomcache.Client(pool_size=tasks)", "multi_get(*keys)"),
    DriverSpec("emcache", "memcache", "uvloop", False, ("emcache",),
               "emcache.create_client(max_connections=tasks, timeout=None), "
               "autobatching off (its default)", "get_many(keys)"),
    DriverSpec("emcache-autobatch", "memcache", "uvloop", False, ("emcache",),
               "emcache.create_client(max_connections=tasks, timeout=None, "
               "autobatching=True): concurrent GETs merged into multi-key gets",
               "-", ops=("get",), concurrent_only=True, variant_of="emcache"),
    DriverSpec("ringline-memcache", "memcache", "ringline", True, ("ringline",),
               "ringline.memcache.connect(host, port): one connection, automatic pipelining",
               "get_many(keys)"),
)}

ALL_OPS = ("get", "set")
DEFAULT_SIZES = (64, 1024)
KEYS_PER_CELL = 100
WORKER_PREFIX = "@@RLB "


def value_for(size: int) -> bytes:
    pattern = b"%d|abcdefghijklmnopqrstuvwxyz0123456789|" % size
    return (pattern * (size // len(pattern) + 1))[:size]


def keys_for(size: int, count: int = KEYS_PER_CELL) -> list[bytes]:
    return [b"rlb:%d:%d" % (size, i) for i in range(count)]


class _Driver:
    """One library's client: connect, the per-op callables, close.

    ``get(key)``, ``set(key, value)``, ``get_batch(keys)``, ``set_batch(keys,
    value)`` return awaitables; the session loops call them directly (bound
    methods where the library allows) so the harness adds no layer of its
    own.  ``value_of`` turns a GET result into bytes when the library wraps
    it; ``batch_values`` turns a batch result into a list of values.
    """

    value_of: Callable[[Any], Any] | None = None

    async def open(self, host: str, port: int, tasks: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def batch_values(self, result: Any) -> list:
        return list(result.values()) if isinstance(result, dict) else list(result)

    def info(self) -> dict:
        return {}


class _RedisPy(_Driver):
    async def open(self, host, port, tasks):
        import redis.asyncio as aioredis

        self.r = r = aioredis.Redis(host=host, port=port, decode_responses=False)
        self.get = r.get
        self.set = r.set

    async def get_batch(self, keys):
        p = self.r.pipeline(transaction=False)
        for k in keys:
            p.get(k)
        return await p.execute()

    async def set_batch(self, keys, value):
        p = self.r.pipeline(transaction=False)
        for k in keys:
            p.set(k, value)
        return await p.execute()

    async def close(self):
        await self.r.aclose()

    def info(self):
        import redis.asyncio.connection as conn
        import redis.utils

        return {"parser": conn.DefaultParser.__name__,
                "hiredis": bool(redis.utils.HIREDIS_AVAILABLE)}


class _RinglineRedis(_Driver):
    async def open(self, host, port, tasks):
        import ringline.redis

        self.c = c = await ringline.redis.connect(host, port)
        self.get = c.get
        self.set = c.set

    async def get_batch(self, keys):
        p = self.c.pipeline()
        for k in keys:
            p.get(k)
        return await p.execute()

    async def set_batch(self, keys, value):
        p = self.c.pipeline()
        for k in keys:
            p.set(k, value)
        return await p.execute()

    async def close(self):
        await self.c.close()

    def info(self):
        return {"parser": self.c.options.parser if hasattr(self, "c") else None}


class _Aiomcache(_Driver):
    async def open(self, host, port, tasks):
        import aiomcache

        self.c = c = aiomcache.Client(host, port, pool_size=max(1, tasks))
        self.get = c.get
        self.set = c.set

    def get_batch(self, keys):
        return self.c.multi_get(*keys)

    async def close(self):
        await self.c.close()


class _Emcache(_Driver):
    options: dict = {}      # create_client's keywords beyond the common ones

    @staticmethod
    def value_of(item):
        return item.value if item is not None else None

    async def open(self, host, port, tasks):
        import emcache

        self.c = c = await emcache.create_client(
            [emcache.MemcachedHostAddress(host, port)], timeout=None,
            max_connections=max(1, tasks), **self.options)
        self.get = c.get
        self.set = c.set

    def get_batch(self, keys):
        return self.c.get_many(keys)

    def batch_values(self, result):
        return [item.value for item in result.values()]

    async def close(self):
        await self.c.close()


class _EmcacheAutobatch(_Emcache):
    options = {"autobatching": True}


class _RinglineMemcache(_Driver):
    async def open(self, host, port, tasks):
        import ringline.memcache

        self.c = c = await ringline.memcache.connect(host, port)
        self.get = c.get
        self.set = c.set

    def get_batch(self, keys):
        return self.c.get_many(keys)

    async def close(self):
        await self.c.close()


_MODULES = {"redis-py": "redis.asyncio", "ringline-redis": "ringline.redis",
            "aiomcache": "aiomcache", "emcache": "emcache", "emcache-autobatch": "emcache",
            "ringline-memcache": "ringline.memcache"}

_DRIVER_CLASSES: dict[str, type[_Driver]] = {
    "redis-py": _RedisPy, "ringline-redis": _RinglineRedis, "aiomcache": _Aiomcache,
    "emcache": _Emcache, "emcache-autobatch": _EmcacheAutobatch,
    "ringline-memcache": _RinglineMemcache,
}
