"""The worker process of the client workloads: one driver, measured sessions.

Owns: :class:`Worker` (the driver of the current cell, its preload and its
sessions), the session loops (closed-loop GET, SET and batch tasks), the
measured window (:class:`_Window`: wall time, the process's own CPU time,
errors) and :func:`worker_main`, the process's command loop.  The process is
started as ``python -m ringline.bench.clients --worker NAME`` (see
:mod:`.clients_procs` for the harness's side of the pipe).

Lifecycle: one hello line (versions, loop, pid, or the import error), then
one answer line per command line on stdin: ``setup`` (connect a fresh
client, preload the cell's keys, check one GET), ``run`` (one session:
lead-in, then the measured window), ``teardown`` (close the client); end of
stdin closes the client and ends the process.

Invariants: every answer is one line starting with ``WORKER_PREFIX`` (other
output on stdout is ignored by the harness); a failure inside a command is
an answer (``ok: false``), never the end of the process; the library is
imported before anything is measured; every GET's value is checked.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
import time
from importlib import metadata

from .clients_drivers import (_DRIVER_CLASSES, _MODULES, DRIVERS, KEYS_PER_CELL,
                              WORKER_PREFIX, DriverSpec, _Driver, keys_for, value_for)


class _Window:
    """The measured window of one session (opened and closed by timers; a
    window that saw no completion by its deadline closes at the first one)."""

    __slots__ = ("measuring", "stop", "late", "count", "t0", "t1", "ru0", "ru1", "errors",
                 "first_error")

    def __init__(self):
        self.measuring = False
        self.stop = False
        self.late = False       # the deadline passed with nothing measured yet
        self.count = 0          # completions recorded in the window
        self.t0 = self.t1 = 0.0
        self.ru0 = self.ru1 = None
        self.errors = 0
        self.first_error: str | None = None

    def begin(self):
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()
        self.measuring = True

    def end(self):
        """The window's deadline. A window in which nothing completed yet stays
        open until the first completion (see record): on a loaded machine the
        worker or the server may not have run at all in a short window, and
        such a window measured the stall, not the driver."""
        if self.measuring and not self.count:
            self.late = True
            return
        self.close()

    def close(self):
        self.t1 = time.perf_counter()
        self.ru1 = resource.getrusage(resource.RUSAGE_SELF)
        self.measuring = False
        self.late = False
        self.stop = True

    def record(self, lat: list, dt: float):
        """One operation (or batch) completed, taking dt seconds."""
        if self.measuring:
            lat.append(dt)
            self.count += 1
            if self.late:
                self.close()

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
            w.record(lat, perf() - t0)
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
            w.record(lat, perf() - t0)
    except Exception as exc:  # noqa: BLE001
        w.fail(f"SET {key!r}: {type(exc).__name__}: {exc}")


async def _batch_loop(batch, args, n, expected, values_of, verify, w: _Window, lat: list):
    perf = time.perf_counter
    try:
        while not w.stop:
            t0 = perf()
            res = await batch(*args)
            w.record(lat, perf() - t0)
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
        if w.late:
            w.close()   # every task ended (failed) before anything completed
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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ringline.bench.clients")
    parser.add_argument("--worker", required=True, choices=list(DRIVERS))
    parser.add_argument("--cpu", type=int)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness stops us via stdin
    return worker_main(args.worker, args.cpu)
