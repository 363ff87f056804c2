"""The closed-loop client cell shared by the per-library client benchmarks
(:mod:`.http_bench`, :mod:`.grpc_bench`, :mod:`.momento_bench`).

Owns: :func:`drive`, the worker side (``tasks`` tasks issuing one request
each, back to back, with measured windows timed by the process's own
clocks), and :func:`run_worker`, the harness side (start one worker process
per cell, wait for it within a deadline, return the JSON of its result
line), and :func:`emit`, the harness's output (the table on stdout, the
results as JSON where asked).

Lifecycle: a worker process calls :func:`drive` once and prints its result
line (``prefix + json``); the harness runs the process with
:func:`run_worker` and gets that dict back, or ``{"error": ...}`` (a
timeout, or the last line of the worker's stderr when it printed no
result).

Invariants: a failed request is counted as an error (its message kept as
``last_error``) and followed by a 10 ms pause, never a busy spin; a wrong
answer is an error too; the tasks are stopped and awaited (10 s at most)
before :func:`drive` returns.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import time
import sys
from typing import Any, Awaitable, Callable, Dict, List, Optional

__all__ = ["drive", "emit", "run_worker"]


async def drive(step: Callable[[int], Awaitable[Optional[str]]], tasks: int, warmup: float,
                duration: float, rounds: int = 1,
                count_failures: bool = False) -> Dict[str, Any]:
    """Run ``tasks`` tasks; task ``i`` awaits ``step(n)`` back to back with
    ``n = i, i + tasks, i + 2 * tasks, ...``; ``step`` returns None or what
    was wrong with the answer. After ``warmup`` seconds, ``rounds`` windows
    of ``duration`` seconds each. A request that raised is counted as done
    too when ``count_failures``. Returns ``{"rounds": [{"n", "rate",
    "cpu_us", "errors"}], "errors", "last_error"}``: per window the requests
    completed, their rate, the process CPU per request (microseconds) and the
    errors in the window; then all errors and the last one's message."""
    loop = asyncio.get_running_loop()
    state: Dict[str, Any] = {"count": 0, "errors": 0, "stop": False, "last_error": None}

    async def one(i: int) -> None:
        n = i
        while not state["stop"]:
            try:
                wrong = await step(n)
            except Exception as exc:     # counted, shown in the table
                state["errors"] += 1
                state["last_error"] = f"{type(exc).__name__}: {exc}"[:200]
                await asyncio.sleep(0.01)
                if not count_failures:
                    continue
            else:
                if wrong is not None:
                    state["errors"] += 1
                    state["last_error"] = wrong[:200]
            n += tasks
            state["count"] += 1

    workers = [loop.create_task(one(i)) for i in range(tasks)]
    await asyncio.sleep(warmup)
    out: List[Dict[str, Any]] = []
    for _ in range(rounds):
        c0, e0 = state["count"], state["errors"]
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.sleep(duration)
        c1, e1 = state["count"], state["errors"]
        t1, cpu1 = time.perf_counter(), time.process_time()
        n = c1 - c0
        out.append({"n": n, "rate": n / (t1 - t0), "cpu_us": (cpu1 - cpu0) / max(n, 1) * 1e6,
                    "errors": e1 - e0})
    state["stop"] = True
    await asyncio.wait(workers, timeout=10)
    return {"rounds": out, "errors": state["errors"], "last_error": state["last_error"]}


def run_worker(cmd: List[str], prefix: str, timeout: float) -> Dict[str, Any]:
    """Run one worker process (``cmd``) for at most ``timeout`` seconds and
    return the JSON object of its first stdout line starting with
    ``prefix``, or ``{"error": ...}``."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    for line in out.stdout.splitlines():
        if line.startswith(prefix):
            return dict(json.loads(line[len(prefix):]))
    return {"error": (out.stderr.strip().splitlines() or ["no result"])[-1][:200]}


def emit(results: List[Dict[str, Any]], render: Callable[[List[Dict[str, Any]]], str],
         json_path: Optional[str]) -> int:
    """Print ``render(results)``; write ``results`` as JSON to ``json_path``
    when given. Returns the harness's exit status (0)."""
    sys.stdout.write(render(results))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
    return 0
