"""Client workloads: ringline's Redis and memcached clients against their peers.

Owns: the client drivers (how each library connects, GETs, SETs and runs a
batch), the worker process that runs one driver (``python -m
ringline.bench.clients --worker NAME``), the backing servers (redis-server and
memcached) and :func:`run_client_section`, which produces the ``clients``
part of the results document.

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

Method:

1. One redis-server (``--save '' --appendonly no``) and one memcached
   (``-t 1 -U 0 -m 256``) on free 127.0.0.1 ports, pinned to the server CPU
   (CPU 1 by default); they live for the whole section.
2. One worker process per driver, pinned to the subject CPU (CPU 0 by
   default), alive for the whole section (a driver's import and loop start
   are never measured).  The harness talks to it with JSON lines on its
   stdin/stdout.
3. Per cell (server x op x value size x load), every driver of that server
   connects a fresh client, preloads the 100 keys of the cell (``rlb:S:i``
   with a value of S bytes) and checks one GET, then runs a warm-up session;
   then ``rounds`` measured sessions run interleaved driver by driver
   (A B C, A B C, ...); then the clients close.
4. A session is a closed loop: T tasks, each doing GET (or SET) of its key
   back to back, or, for ``pipeline 100``, one task sending batches of 100
   commands and waiting for the 100 replies.  After an unmeasured lead-in
   the window opens: completed operations are counted, each one's latency
   (or each batch's) recorded, and the worker's own CPU time (``getrusage``,
   user + system, all threads) read at the window's edges.  Every GET's
   value is compared with the preloaded one (a batch: the count and the
   first and last values; in ``verify`` mode every value); a wrong value is
   an error of that session.
5. The median over rounds is reported with the min and max; the ratios are
   ringline's median over each peer's.

What "pipeline 100" is for each peer: redis-py ``pipeline(transaction=False)``
with 100 commands and ``execute()``; ringline-redis ``pipeline()`` likewise;
memcached has no batched SET in aiomcache or emcache, so there it is GET
only: aiomcache ``multi_get(*keys)``, emcache ``get_many(keys)``,
ringline-memcache ``get_many(keys)``, each one ``get k1 ... k100`` request.

Invariants: a driver that cannot be imported, a worker that dies or hangs,
a session with errors: each is recorded for that driver's rounds (and the
worker restarted for the next cell), never an exception out of the run.
Every planned round has a record.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Callable

# ---------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class ServerKind:
    name: str
    tasks: tuple[int, ...]          # closed-loop task counts
    batch_ops: tuple[str, ...]      # ops that have a "pipeline" load
    target_tasks: int               # the load the target is set at
    target_ratio: float


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

    def applies(self, cell: "ClientCell") -> bool:
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


# ---------------------------------------------------------------------------
# drivers (inside the worker process)


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
    @staticmethod
    def value_of(item):
        return item.value if item is not None else None

    async def open(self, host, port, tasks):
        import emcache

        self.c = c = await emcache.create_client(
            [emcache.MemcachedHostAddress(host, port)], timeout=None,
            max_connections=max(1, tasks))
        self.get = c.get
        self.set = c.set

    def get_batch(self, keys):
        return self.c.get_many(keys)

    def batch_values(self, result):
        return [item.value for item in result.values()]

    async def close(self):
        await self.c.close()


class _EmcacheAutobatch(_Emcache):
    async def open(self, host, port, tasks):
        import emcache

        self.c = c = await emcache.create_client(
            [emcache.MemcachedHostAddress(host, port)], timeout=None,
            max_connections=max(1, tasks), autobatching=True)
        self.get = c.get
        self.set = c.set


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


class _Window:
    """The measured window of one session (opened and closed by timers)."""

    __slots__ = ("measuring", "stop", "t0", "t1", "ru0", "ru1", "errors", "first_error")

    def __init__(self):
        self.measuring = False
        self.stop = False
        self.t0 = self.t1 = 0.0
        self.ru0 = self.ru1 = None
        self.errors = 0
        self.first_error: str | None = None

    def begin(self):
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()
        self.measuring = True

    def end(self):
        self.t1 = time.perf_counter()
        self.ru1 = resource.getrusage(resource.RUSAGE_SELF)
        self.measuring = False
        self.stop = True

    def fail(self, message: str):
        self.errors += 1
        if self.first_error is None:
            self.first_error = message[:300]


async def _get_loop(get, key, expected, value_of, w: _Window, lat: list):
    perf = time.perf_counter
    try:
        while not w.stop:
            t0 = perf()
            v = await get(key)
            t1 = perf()
            if w.measuring:
                lat.append(t1 - t0)
            if v != expected and (value_of is None or value_of(v) != expected):
                w.fail(f"GET {key!r} returned {v!r:.80}, expected {len(expected)} bytes")
    except Exception as exc:  # noqa: BLE001 - any failure is the session's error
        w.fail(f"GET {key!r}: {type(exc).__name__}: {exc}")


async def _set_loop(set_, key, value, w: _Window, lat: list):
    perf = time.perf_counter
    try:
        while not w.stop:
            t0 = perf()
            await set_(key, value)
            t1 = perf()
            if w.measuring:
                lat.append(t1 - t0)
    except Exception as exc:  # noqa: BLE001
        w.fail(f"SET {key!r}: {type(exc).__name__}: {exc}")


async def _batch_loop(batch, args, n, expected, values_of, verify, w: _Window, lat: list):
    perf = time.perf_counter
    try:
        while not w.stop:
            t0 = perf()
            res = await batch(*args)
            t1 = perf()
            if w.measuring:
                lat.append(t1 - t0)
            if expected is None:            # a SET batch: n replies, no error
                if len(res) != n:
                    w.fail(f"batch returned {len(res)} replies, expected {n}")
                continue
            vals = values_of(res)
            if len(vals) != n:
                w.fail(f"batch returned {len(vals)} values, expected {n}")
            elif verify:
                bad = sum(1 for v in vals if v != expected)
                if bad:
                    w.fail(f"batch: {bad} of {n} values differ from the preloaded one")
            elif vals[0] != expected or vals[-1] != expected:
                w.fail("batch: a value differs from the preloaded one")
    except Exception as exc:  # noqa: BLE001
        w.fail(f"batch: {type(exc).__name__}: {exc}")


def _percentiles_us(lat: list[float]) -> dict:
    if not lat:
        return {"p50": None, "p99": None, "p999": None, "max": None}
    lat.sort()
    n = len(lat)

    def at(q: float) -> float:
        return round(lat[min(n - 1, int(q * n))] * 1e6, 1)

    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999),
            "max": round(lat[-1] * 1e6, 1)}


class Worker:
    """The state of one worker process: its driver and the current cell."""

    def __init__(self, name: str):
        self.name = name
        self.spec = DRIVERS[name]
        self.driver: _Driver | None = None
        self.cell: dict | None = None

    async def setup(self, host: str, port: int, op: str, size: int, tasks: int,
                    batch: int | None) -> dict:
        if self.driver is not None:
            await self.teardown()
        driver = _DRIVER_CLASSES[self.name]()
        await driver.open(host, port, tasks)
        self.driver = driver
        value = value_for(size)
        keys = keys_for(size, max(KEYS_PER_CELL, batch or 0))
        for key in keys:
            await driver.set(key, value)
        got = await driver.get(keys[0])
        if driver.value_of is not None and got is not None and got != value:
            got = driver.value_of(got)
        if got != value:
            raise RuntimeError(f"preload check: GET {keys[0]!r} returned {got!r:.80}")
        self.cell = {"op": op, "size": size, "tasks": tasks, "batch": batch,
                     "keys": keys, "value": value}
        return {"info": driver.info()}

    async def teardown(self) -> dict:
        driver, self.driver, self.cell = self.driver, None, None
        if driver is not None:
            await driver.close()
        return {}

    async def session(self, duration: float, lead_in: float, verify: bool) -> dict:
        if self.driver is None or self.cell is None:
            raise RuntimeError("no cell set up")
        d, cell = self.driver, self.cell
        loop = asyncio.get_running_loop()
        w = _Window()
        lat: list[float] = []
        keys, value, batch = cell["keys"], cell["value"], cell["batch"]
        if batch:
            n = batch
            if cell["op"] == "get":
                coros = [_batch_loop(d.get_batch, (keys[:n],), n, value, d.batch_values,
                                     verify, w, lat)]
            else:
                coros = [_batch_loop(d.set_batch, (keys[:n], value), n, None, None,
                                     verify, w, lat)]
        else:
            n = 1
            if cell["op"] == "get":
                coros = [_get_loop(d.get, keys[i % len(keys)], value, d.value_of, w, lat)
                         for i in range(cell["tasks"])]
            else:
                coros = [_set_loop(d.set, keys[i % len(keys)], value, w, lat)
                         for i in range(cell["tasks"])]
        tasks = [loop.create_task(c) for c in coros]
        loop.call_later(lead_in, w.begin)
        loop.call_later(lead_in + duration, w.end)
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), lead_in + duration + 30)
        except asyncio.TimeoutError:
            w.fail("session did not finish within 30 s of its end")
        if w.ru0 is None or w.ru1 is None:
            raise RuntimeError(w.first_error or "the measured window never closed")
        wall = w.t1 - w.t0
        user = w.ru1.ru_utime - w.ru0.ru_utime
        system = w.ru1.ru_stime - w.ru0.ru_stime
        ops = len(lat) * n
        return {"ops": ops, "wall_s": wall, "ops_per_s": ops / wall if wall > 0 else 0.0,
                "cpu_s": user + system, "user_s": user, "sys_s": system,
                "errors": w.errors, "first_error": w.first_error,
                "lat_us": _percentiles_us(lat), "latency_of": "batch" if batch else "op"}


def _versions(spec: DriverSpec) -> dict:
    out = {}
    for pkg in spec.packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def worker_main(name: str, cpu: int | None) -> int:
    """The worker process: one hello line, then one answer per command line."""
    from .loops import LOOPS, create_loop

    out = sys.stdout

    def say(obj: dict) -> None:
        out.write(WORKER_PREFIX + json.dumps(obj) + "\n")
        out.flush()

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    spec = DRIVERS[name]
    try:
        # import everything the driver needs before anything is measured
        __import__(_MODULES[name])
        runner = asyncio.Runner(loop_factory=lambda: create_loop(spec.loop))
        loop = runner.get_loop()
    except Exception as exc:  # noqa: BLE001
        say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    worker = Worker(name)
    say({"ok": True, "versions": _versions(spec), "loop": spec.loop,
         "loop_version": LOOPS[spec.loop].version(),
         "loop_class": f"{type(loop).__module__}.{type(loop).__qualname__}",
         "pid": os.getpid(), "cpu": cpu})
    with runner:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                cmd = req.pop("cmd")
                if cmd == "setup":
                    result = runner.run(worker.setup(**req))
                elif cmd == "run":
                    result = runner.run(worker.session(**req))
                elif cmd == "teardown":
                    result = runner.run(worker.teardown())
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                say({"ok": True, **result})
            except Exception as exc:  # noqa: BLE001
                say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        try:
            runner.run(worker.teardown())
        except Exception:  # noqa: BLE001
            pass
    return 0


# ---------------------------------------------------------------------------
# the harness side: backing servers and worker processes


class ClientBenchError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})
    return pin


class BackingServer:
    """redis-server or memcached on a free 127.0.0.1 port, pinned to ``cpu``."""

    def __init__(self, kind: str, cpu: int | None = None, host: str = "127.0.0.1"):
        if kind not in KINDS:
            raise ValueError(f"unknown server kind {kind!r}")
        self.kind = kind
        self.cpu = cpu
        self.host = host
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.version: str | None = None
        self.argv: list[str] = []
        self._dir: str | None = None
        self._log = None

    @staticmethod
    def binary(kind: str) -> str | None:
        name = "redis-server" if kind == "redis" else "memcached"
        return shutil.which(name) or (f"/usr/bin/{name}"
                                      if os.path.exists(f"/usr/bin/{name}") else None)

    def start(self, timeout: float = 10.0) -> "BackingServer":
        exe = self.binary(self.kind)
        if exe is None:
            raise ClientBenchError(f"{self.kind}: server binary not found "
                                   f"({'redis-server' if self.kind == 'redis' else 'memcached'})")
        self.port = _free_port()
        self._dir = tempfile.mkdtemp(prefix=f"ringline-bench-{self.kind}-")
        if self.kind == "redis":
            self.argv = [exe, "--save", "", "--appendonly", "no", "--port", str(self.port),
                         "--bind", self.host, "--dir", self._dir]
        else:
            self.argv = [exe, "-l", self.host, "-p", str(self.port), "-U", "0", "-t", "1",
                         "-m", "256"]
            if os.geteuid() == 0:
                self.argv += ["-u", "root"]
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self._dir, preexec_fn=_pin(self.cpu),
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ClientBenchError(f"{self.kind} server exited with status "
                                       f"{self.proc.returncode}: {self.log_tail()}")
            try:
                self.version = self._hello()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ClientBenchError(f"{self.kind} server did not answer on port "
                                           f"{self.port} within {timeout:g} s")
                time.sleep(0.02)

    def _hello(self) -> str:
        with socket.create_connection((self.host, self.port), timeout=1) as s:
            if self.kind == "redis":
                s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
                data = b""
                while b"redis_version:" not in data or not data.endswith(b"\r\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed")
                    data += chunk
                line = data.split(b"redis_version:", 1)[1].split(b"\r\n", 1)[0]
                return "redis " + line.decode()
            s.sendall(b"version\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            return "memcached " + data.decode().split()[-1]

    def cpu_times(self) -> tuple[float, float]:
        from .procs import read_cpu_times

        assert self.proc is not None
        return read_cpu_times(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, limit: int = 1000) -> str:
        if self._log is None:
            return ""
        try:
            self._log.seek(0)
            return self._log.read().decode(errors="replace").strip()[-limit:]
        except (OSError, ValueError):
            return ""

    def describe(self) -> dict:
        return {"kind": self.kind, "version": self.version, "port": self.port,
                "cpu": self.cpu, "argv": self.argv,
                "pid": self.proc.pid if self.proc else None}

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "BackingServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class WorkerProcess:
    """A driver's worker process, as the harness sees it."""

    def __init__(self, name: str, cpu: int | None = None):
        self.name = name
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None
        self.hello: dict = {}
        self._stderr = None
        self._buf = b""

    def start(self, timeout: float = 30.0) -> dict:
        from .procs import _package_env

        argv = [sys.executable, "-m", "ringline.bench.clients", "--worker", self.name]
        if self.cpu is not None:
            argv += ["--cpu", str(self.cpu)]
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=_package_env(),
                                     start_new_session=True)
        self.hello = self._read(timeout)
        if not self.hello.get("ok"):
            error = self.hello.get("error")
            self.stop()
            raise ClientBenchError(f"{self.name}: {error}")
        return self.hello

    def request(self, cmd: str, timeout: float, **args: Any) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            raise ClientBenchError(f"{self.name}: worker is not running" + self._tail())
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            raise ClientBenchError(f"{self.name}: worker died ({exc})" + self._tail())
        reply = self._read(timeout)
        if not reply.get("ok"):
            raise ClientBenchError(f"{self.name}: {reply.get('error')}")
        return reply

    def _read(self, timeout: float) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buf:
                    raw, self._buf = self._buf.split(b"\n", 1)
                    line = raw.decode(errors="replace")
                    if line.startswith(WORKER_PREFIX):
                        return json.loads(line[len(WORKER_PREFIX):])
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stop()
                    raise ClientBenchError(f"{self.name}: no answer within {timeout:g} s"
                                           + self._tail())
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    try:
                        self.proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
                    code = self.proc.returncode
                    tail = self._tail()
                    self.stop()
                    raise ClientBenchError(f"{self.name}: worker exited (status {code})"
                                           + tail)
                self._buf += chunk

    def _tail(self, limit: int = 1500) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - limit))
            text = self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f"\n--- stderr of the {self.name} worker ---\n{text}" if text else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    if proc.stdin:
                        proc.stdin.close()
                    proc.wait(timeout=5)
                except (subprocess.TimeoutExpired, OSError):
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
        self._buf = b""
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> "WorkerProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# configuration, plan, the run


@dataclass
class ClientConfig:
    drivers: list[str] = field(default_factory=lambda: list(DRIVERS))
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    ops: list[str] = field(default_factory=lambda: list(ALL_OPS))
    sizes: list[int] = field(default_factory=lambda: list(DEFAULT_SIZES))
    pipeline: int = 100
    rounds: int = 3
    duration: float = 1.0
    warmup: float = 0.3
    lead_in: float = 0.1
    verify: bool = False
    client_cpu: int | None = None       # the client under test
    server_cpu: int | None = None       # redis-server / memcached
    host: str = "127.0.0.1"

    def to_json(self) -> dict:
        return asdict(self)


#: Client settings per preset (rounds x duration, warm-up, lead-in).
CLIENT_PRESETS: dict[str, dict] = {
    "quick": dict(rounds=3, duration=1.0, warmup=0.3, lead_in=0.1),
    "default": dict(rounds=5, duration=2.0, warmup=1.0, lead_in=0.2),
    "full": dict(rounds=5, duration=2.0, warmup=1.0, lead_in=0.2),
    "smoke": dict(rounds=1, duration=0.2, warmup=0.05, lead_in=0.0, verify=True),
}


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


def plan_client_cells(cfg: ClientConfig) -> tuple[list[ClientCell], list[str]]:
    cells, skipped = [], []
    kinds = [k for k in cfg.kinds if any(DRIVERS[d].kind == k for d in cfg.drivers)]
    for kind in kinds:
        spec = KINDS[kind]
        for op in cfg.ops:
            for size in cfg.sizes:
                for tasks in spec.tasks:
                    cells.append(ClientCell(kind, op, size, tasks, None))
                if cfg.pipeline:
                    if op in spec.batch_ops:
                        cells.append(ClientCell(kind, op, size, 1, cfg.pipeline))
                    elif size == cfg.sizes[0]:
                        skipped.append(f"{kind} {op} pipeline {cfg.pipeline}: no batched "
                                       f"{op.upper()} in the peers")
    return cells, skipped


_SETUP_S = 0.3
_WORKER_START_S = 1.0
_ROUND_OVERHEAD_S = 0.05


def _drivers_for(cfg: ClientConfig, kind: str, cell: ClientCell | None = None) -> list[str]:
    # peers first, ringline last (the order of the report's columns)
    names = [d for d in cfg.drivers if DRIVERS[d].kind == kind
             and (cell is None or DRIVERS[d].applies(cell))]
    return sorted(names, key=lambda d: DRIVERS[d].subject)


def planned_seconds(cfg: ClientConfig) -> float:
    cells, _ = plan_client_cells(cfg)
    total = _WORKER_START_S * len(cfg.drivers) + 0.5 * len(cfg.kinds)
    per_session = cfg.lead_in + cfg.duration + _ROUND_OVERHEAD_S
    for cell in cells:
        n = len(_drivers_for(cfg, cell.kind, cell))
        total += n * (_SETUP_S + cfg.warmup + cfg.lead_in + _ROUND_OVERHEAD_S
                      + cfg.rounds * per_session)
    return total


def _mmm(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize_client_rounds(rounds: list[dict]) -> dict | None:
    ok = [r for r in rounds if r.get("status") == "ok"]
    if not ok:
        return None

    def med(key: str) -> float | None:
        values = [r[key] for r in ok if r.get(key) is not None]
        return statistics.median(values) if values else None

    def lat(key: str) -> float | None:
        values = [r["lat_us"][key] for r in ok if r["lat_us"].get(key) is not None]
        return statistics.median(values) if values else None

    return {"rounds_ok": len(ok), "ops_per_s": _mmm([r["ops_per_s"] for r in ok]),
            "cpu_s_per_mop": med("cpu_s_per_mop"), "cpu_util": med("cpu_util"),
            "server_cpu_s_per_mop": med("server_cpu_s_per_mop"),
            "p50_us": lat("p50"), "p99_us": lat("p99"), "p999_us": lat("p999")}


def _one_line(message: str) -> str:
    lines = [l for l in str(message).strip().splitlines() if l.strip()]
    if not lines:
        return "error"
    if len(lines) > 1 and "Traceback" in message:
        return f"{lines[0]} ... {lines[-1].strip()}"[:300]
    return lines[0][:300]


class _ClientRun:
    def __init__(self, cfg: ClientConfig, progress: Any, on_cell: Callable[[dict], None]):
        self.cfg = cfg
        self.progress = progress
        self.on_cell = on_cell
        self.cells, self.skipped = plan_client_cells(cfg)
        self.servers: dict[str, BackingServer] = {}
        self.workers: dict[str, WorkerProcess] = {}
        self.doc: dict[str, Any] = {
            "config": cfg.to_json(),
            "pinning": {"client_cpu": cfg.client_cpu, "server_cpu": cfg.server_cpu,
                        "pinned": cfg.client_cpu is not None},
            "servers": {}, "drivers": {}, "cells": [], "skipped": self.skipped,
            "ratios": [], "targets": []}

    def _note(self, message: str) -> None:
        if self.progress is not None:
            self.progress.note(message)

    def _show(self, message: str) -> None:
        if self.progress is not None:
            self.progress.show(message)

    def _advance(self, seconds: float) -> None:
        if self.progress is not None:
            self.progress.advance(seconds)

    def _start_worker(self, name: str) -> WorkerProcess | None:
        entry = self.doc["drivers"][name]
        worker = WorkerProcess(name, self.cfg.client_cpu)
        try:
            hello = worker.start()
        except ClientBenchError as exc:
            entry.update(available=False, error=_one_line(str(exc)), detail=str(exc))
            return None
        entry.update(available=True, error=None, versions=hello.get("versions"),
                     loop_version=hello.get("loop_version"),
                     loop_class=hello.get("loop_class"))
        self.workers[name] = worker
        return worker

    def setup(self) -> None:
        cfg = self.cfg
        for kind in cfg.kinds:
            if not _drivers_for(cfg, kind):
                continue
            self._show(f"[clients] starting {kind} server")
            server = BackingServer(kind, cfg.server_cpu, cfg.host)
            try:
                server.start()
                self.servers[kind] = server
                self.doc["servers"][kind] = server.describe()
            except ClientBenchError as exc:
                self.doc["servers"][kind] = {"kind": kind, "error": _one_line(str(exc))}
                self._note(f"[clients] {kind} server: {exc}")
            self._advance(0.5)
        for name in cfg.drivers:
            spec = DRIVERS[name]
            self.doc["drivers"][name] = {"kind": spec.kind, "loop": spec.loop,
                                         "subject": spec.subject, "settings": spec.settings,
                                         "batch": spec.batch, "available": False}
            self._show(f"[clients] starting the {name} worker")
            if self._start_worker(name) is None:
                self._note(f"[clients] {name} unavailable: "
                           f"{self.doc['drivers'][name]['error']}")
            self._advance(_WORKER_START_S)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def _session_timeout(self, seconds: float) -> float:
        return seconds + 30.0

    def _fail(self, entry: dict, name: str, message: str, label: str) -> None:
        entry.update(status="error", error=_one_line(message), detail=message)
        worker = self.workers.pop(name, None)
        if worker is not None and not worker.alive():
            worker.stop()
        elif worker is not None:
            self.workers[name] = worker  # alive: keep it for the next cell
        self._note(f"{label} {name}: {entry['error']}")

    def _session(self, name: str, server: BackingServer, duration: float,
                 lead_in: float, round_no: int | None) -> dict:
        worker = self.workers[name]
        try:
            s0 = sum(server.cpu_times())
        except OSError:
            raise ClientBenchError(f"{server.kind} server died: {server.log_tail()}")
        reply = worker.request("run", self._session_timeout(lead_in + duration),
                               duration=duration, lead_in=lead_in, verify=self.cfg.verify)
        try:
            s1 = sum(server.cpu_times())
        except OSError:
            raise ClientBenchError(f"{server.kind} server died: {server.log_tail()}")
        ops = reply["ops"]
        wall = reply["wall_s"]
        rec = {
            "round": round_no,
            "status": "ok" if reply["errors"] == 0 and ops > 0 else "errors",
            "ops": ops, "wall_s": round(wall, 4), "ops_per_s": reply["ops_per_s"],
            "cpu_s": round(reply["cpu_s"], 4), "user_s": round(reply["user_s"], 4),
            "sys_s": round(reply["sys_s"], 4),
            "cpu_s_per_mop": reply["cpu_s"] / ops * 1e6 if ops else None,
            "cpu_util": reply["cpu_s"] / wall if wall else None,
            # the server's CPU over the whole session (lead-in included), per op of the window
            "server_cpu_s": round(s1 - s0, 4),
            "server_cpu_s_per_mop": (s1 - s0) / ops * 1e6 * (wall / (wall + lead_in))
            if ops and wall else None,
            "errors": reply["errors"], "lat_us": reply["lat_us"],
            "latency_of": reply["latency_of"],
        }
        if rec["status"] != "ok":
            rec["error"] = reply.get("first_error") or "no operation completed"
        return rec

    def run_cell(self, index: int, cell: ClientCell) -> dict:
        cfg = self.cfg
        label = f"[clients {index + 1}/{len(self.cells)}] {cell.kind} {cell.op.upper()} " \
                f"{cell.size} B {cell.load}"
        record: dict[str, Any] = {"kind": cell.kind, "op": cell.op, "size": cell.size,
                                  "tasks": cell.tasks, "batch": cell.batch,
                                  "load": cell.load, "key": cell.key, "drivers": {}}
        names = _drivers_for(cfg, cell.kind, cell)
        per_session = cfg.lead_in + cfg.duration + _ROUND_OVERHEAD_S
        server = self.servers.get(cell.kind)
        if server is not None and not server.alive():
            self.doc["servers"][cell.kind]["error"] = (
                f"{cell.kind} server died (status {server.proc.returncode if server.proc else None})"
                f": {server.log_tail()}")
            self._note(f"{label}: {self.doc['servers'][cell.kind]['error']}")
            server.stop()
            del self.servers[cell.kind]
            server = None
        active: list[str] = []
        for name in names:
            entry: dict[str, Any] = {"status": "ok", "error": None, "info": None,
                                     "warmup": None, "rounds": []}
            record["drivers"][name] = entry
            if server is None:
                entry.update(status="error", error=self.doc["servers"][cell.kind].get("error"))
            elif not self.doc["drivers"][name]["available"]:
                entry.update(status="error",
                             error=f"unavailable: {self.doc['drivers'][name]['error']}")
            elif name not in self.workers and self._start_worker(name) is None:
                entry.update(status="error", error=self.doc["drivers"][name]["error"])
            else:
                self._show(f"{label} | {name} connects and preloads")
                try:
                    reply = self.workers[name].request(
                        "setup", 60.0, host=cfg.host, port=server.port, op=cell.op,
                        size=cell.size, tasks=cell.tasks, batch=cell.batch)
                    entry["info"] = reply.get("info")
                    self._show(f"{label} | warm-up {name}")
                    warm = self._session(name, server, cfg.warmup, cfg.lead_in, None)
                    entry["warmup"] = {k: warm.get(k) for k in
                                       ("ops_per_s", "ops", "errors", "status", "error")}
                    active.append(name)
                except (ClientBenchError, OSError) as exc:
                    self._fail(entry, name, str(exc), label)
            self._advance(_SETUP_S + cfg.warmup + cfg.lead_in + _ROUND_OVERHEAD_S)

        for round_no in range(cfg.rounds):
            for name in names:
                entry = record["drivers"][name]
                if name not in active:
                    entry["rounds"].append({"round": round_no, "status": "error",
                                            "error": entry["error"]})
                    self._advance(per_session)
                    continue
                self._show(f"{label} | round {round_no + 1}/{cfg.rounds} | {name}")
                try:
                    rec = self._session(name, server, cfg.duration, cfg.lead_in, round_no)
                    if rec["status"] != "ok":
                        self._note(f"{label} {name} round {round_no + 1}: {rec['error']}")
                except (ClientBenchError, OSError) as exc:
                    rec = {"round": round_no, "status": "error", "error": _one_line(str(exc)),
                           "detail": str(exc)}
                    self._fail(entry, name, str(exc), label)
                    active.remove(name)
                entry["rounds"].append(rec)
                self._advance(per_session)

        for name in active:
            try:
                self.workers[name].request("teardown", 30.0)
            except ClientBenchError as exc:
                self._fail(record["drivers"][name], name, str(exc), label)
        for name, entry in record["drivers"].items():
            entry["summary"] = summarize_client_rounds(entry["rounds"])
            if entry["summary"] is None and entry["status"] == "ok":
                entry["status"] = "error"
                entry["error"] = next((r.get("error") for r in entry["rounds"]
                                       if r.get("error")), "no successful round")
        return record

    def run(self) -> dict:
        try:
            self.setup()
            for note in self.skipped:
                self._note(f"[clients] skipped: {note}")
            for index, cell in enumerate(self.cells):
                self.doc["cells"].append(self.run_cell(index, cell))
                self.doc["ratios"], self.doc["targets"] = client_ratios(self.doc)
                self.on_cell(self.doc)
        finally:
            self.close()
        self.doc["ratios"], self.doc["targets"] = client_ratios(self.doc)
        return self.doc


def run_client_section(cfg: ClientConfig, progress: Any = None,
                       on_cell: Callable[[dict], None] | None = None) -> dict:
    """Run the client workloads; returns the ``clients`` results document."""
    return _ClientRun(cfg, progress, on_cell or (lambda doc: None)).run()


# ---------------------------------------------------------------------------
# ratios (shared with the report)


def _median_ops(entry: dict | None) -> float | None:
    summary = (entry or {}).get("summary")
    return summary["ops_per_s"]["median"] if summary else None


def _cpu(entry: dict | None) -> float | None:
    return ((entry or {}).get("summary") or {}).get("cpu_s_per_mop")


def client_ratios(doc: dict) -> tuple[list[dict], list[dict]]:
    """ringline's median ops/s over each peer's, per cell; and the targets."""
    ratios = []
    for cell in doc.get("cells", []):
        drivers = cell["drivers"]
        subjects = [n for n in drivers if DRIVERS.get(n) and DRIVERS[n].subject]
        peers = [n for n in drivers if DRIVERS.get(n) and not DRIVERS[n].subject]
        for subject in subjects:
            for peer in peers:
                mine, theirs = _median_ops(drivers[subject]), _median_ops(drivers[peer])
                cpu_mine, cpu_theirs = _cpu(drivers[subject]), _cpu(drivers[peer])
                ratios.append({
                    "kind": cell["kind"], "op": cell["op"], "size": cell["size"],
                    "tasks": cell["tasks"], "batch": cell["batch"], "load": cell["load"],
                    "subject": subject, "peer": peer,
                    "ratio": mine / theirs if mine and theirs else None,
                    "cpu_ratio": cpu_mine / cpu_theirs if cpu_mine and cpu_theirs else None})
    targets = []
    seen = {(r["kind"], r["subject"], r["peer"]) for r in ratios}
    for kind, subject, peer in sorted(seen):
        spec = KINDS[kind]
        if DRIVERS[peer].variant_of is not None:
            continue
        rows = [r for r in ratios if r["kind"] == kind and r["subject"] == subject
                and r["peer"] == peer and not r["batch"] and r["tasks"] == spec.target_tasks
                and r["ratio"] is not None]
        if not rows:
            continue
        targets.append({"kind": kind, "subject": subject, "peer": peer,
                        "tasks": spec.target_tasks, "required": spec.target_ratio,
                        "min": min(r["ratio"] for r in rows),
                        "max": max(r["ratio"] for r in rows),
                        "cells": len(rows),
                        "met": sum(1 for r in rows if r["ratio"] >= spec.target_ratio)})
    return ratios, targets


def count_client_errors(doc: dict | None) -> list[str]:
    problems: list[str] = []
    if not doc:
        return problems
    for kind, info in doc.get("servers", {}).items():
        if info.get("error"):
            problems.append(f"{kind} server: {info['error']}")
    for name, info in doc.get("drivers", {}).items():
        if not info.get("available"):
            problems.append(f"client {name}: {info.get('error')}")
    for cell in doc.get("cells", []):
        for name, entry in cell["drivers"].items():
            bad = [r for r in entry["rounds"] if r.get("status") != "ok"]
            if entry["status"] != "ok" or bad:
                why = entry.get("error") or (bad[0].get("error") if bad else "")
                problems.append(f"{cell['key']} on {name}: {why}")
    return problems


# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ringline.bench.clients")
    parser.add_argument("--worker", required=True, choices=list(DRIVERS))
    parser.add_argument("--cpu", type=int)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness stops us via stdin
    return worker_main(args.worker, args.cpu)


if __name__ == "__main__":
    sys.exit(main())
