"""Loop micro-benchmarks, run in a subprocess per loop and timed by the harness.

Owns: :data:`MICRO_BENCHMARKS` (name -> coroutine function doing ``n``
operations on the running loop) and the subprocess entry point
``python -m ringline.bench.micro --loop NAME --time SECONDS``, which prints
one JSON object: ops/s per benchmark.

Method: each benchmark is calibrated by doubling ``n`` until one run takes a
quarter of the target time (these runs double as warm-up), then run once
with ``n`` scaled to the target time; the wall time of that run, measured
with ``time.perf_counter`` around ``run_until_complete``, is the result.
The loop's own clock is never used, so a loop cannot flatter itself.

Built-ins: ``call_soon`` (schedule and run callbacks), ``call_later_cancel``
(schedule a timer and cancel it), ``call_soon_threadsafe`` (from another
thread, until the loop has run them all), ``sleep0_switch`` (task switches
through ``await asyncio.sleep(0)``, 10 tasks), ``getaddrinfo_numeric``
(``loop.getaddrinfo("127.0.0.1", ...)``).  :func:`register_micro` adds more.

Lifecycle: the harness starts one subprocess per loop (pinned to the
subject CPU when asked); it runs every benchmark, prints its JSON line and
exits.

Invariants: one benchmark's failure is reported under ``errors`` and does
not stop the others; a fresh loop is used for each benchmark.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from typing import Awaitable, Callable

MicroFn = Callable[[asyncio.AbstractEventLoop, int], Awaitable[int]]

MICRO_BENCHMARKS: dict[str, tuple[MicroFn, str]] = {}

_BATCH = 1000


def register_micro(name: str, description: str) -> Callable[[MicroFn], MicroFn]:
    def decorate(fn: MicroFn) -> MicroFn:
        MICRO_BENCHMARKS[name] = (fn, description)
        return fn
    return decorate


def _noop() -> None:
    pass


@register_micro("call_soon", "loop.call_soon(cb) and running cb")
async def _call_soon(loop: asyncio.AbstractEventLoop, n: int) -> int:
    done = loop.create_future()
    call_soon = loop.call_soon
    left = n
    while left > 0:
        batch = min(_BATCH, left)
        left -= batch
        for _ in range(batch - 1 if left == 0 else batch):
            call_soon(_noop)
        if left == 0:
            call_soon(done.set_result, None)  # FIFO: runs after all the others
        await asyncio.sleep(0)
    await done
    return n


@register_micro("call_later_cancel", "loop.call_later(3600, cb).cancel()")
async def _call_later_cancel(loop: asyncio.AbstractEventLoop, n: int) -> int:
    call_later = loop.call_later
    left = n
    while left > 0:
        batch = min(_BATCH, left)
        left -= batch
        for _ in range(batch):
            call_later(3600.0, _noop).cancel()
        await asyncio.sleep(0)  # let the loop drop cancelled timers
    return n


@register_micro("call_soon_threadsafe", "call_soon_threadsafe from another thread")
async def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, n: int) -> int:
    done = loop.create_future()

    def produce():
        threadsafe = loop.call_soon_threadsafe
        for _ in range(n - 1):
            threadsafe(_noop)
        threadsafe(done.set_result, None)

    thread = threading.Thread(target=produce)
    thread.start()
    await done
    thread.join()
    return n


@register_micro("sleep0_switch", "task switch via await asyncio.sleep(0), 10 tasks")
async def _sleep0_switch(loop: asyncio.AbstractEventLoop, n: int) -> int:
    tasks = 10
    each = max(1, n // tasks)

    async def spin():
        for _ in range(each):
            await asyncio.sleep(0)

    await asyncio.gather(*(spin() for _ in range(tasks)))
    return each * tasks


@register_micro("getaddrinfo_numeric", "loop.getaddrinfo('127.0.0.1', 8080)")
async def _getaddrinfo_numeric(loop: asyncio.AbstractEventLoop, n: int) -> int:
    getaddrinfo = loop.getaddrinfo
    for _ in range(n):
        await getaddrinfo("127.0.0.1", 8080, type=socket.SOCK_STREAM)
    return n


def _timed(loop_name: str, fn: MicroFn, n: int) -> tuple[int, float]:
    from .loops import create_loop

    loop = create_loop(loop_name)
    try:
        asyncio.set_event_loop(loop)
        started = time.perf_counter()
        ops = loop.run_until_complete(fn(loop, n))
        elapsed = time.perf_counter() - started
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return ops, elapsed


def measure(loop_name: str, name: str, target_s: float) -> dict:
    fn, _ = MICRO_BENCHMARKS[name]
    n = 100
    ops, elapsed = _timed(loop_name, fn, n)
    while elapsed < target_s / 4 and n < 1 << 26:
        n *= 2
        ops, elapsed = _timed(loop_name, fn, n)
    n = max(n, int(n * target_s / max(elapsed, 1e-6)))
    ops, elapsed = _timed(loop_name, fn, n)
    return {"ops": ops, "seconds": elapsed, "ops_per_s": ops / elapsed}


def run_all(loop_name: str, target_s: float, only: list[str] | None = None) -> dict:
    from .loops import get_loop_spec

    results, errors = {}, {}
    for name in only or list(MICRO_BENCHMARKS):
        try:
            results[name] = measure(loop_name, name, target_s)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
    return {"loop": loop_name, "version": get_loop_spec(loop_name).version(),
            "results": results, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ringline.bench.micro")
    parser.add_argument("--loop", required=True)
    parser.add_argument("--time", type=float, default=0.2,
                        help="target seconds per benchmark (default 0.2)")
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    only = args.only.split(",") if args.only else None
    print(json.dumps(run_all(args.loop, args.time, only)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
