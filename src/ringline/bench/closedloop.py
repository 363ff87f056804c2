"""The closed-loop client cell shared by the per-library client benchmarks
(:mod:`.http_bench`, :mod:`.grpc_bench`, :mod:`.momento_bench`; the worker
end also by :mod:`.http3_bench`).

Owns: the worker side -- :func:`drive` (``tasks`` tasks issuing one request
each, back to back, with measured windows timed by the process's own
clocks), :func:`worker_parser` (the options every worker takes) and
:func:`finish_worker` (run the client's coroutine on ringline's loop or
uvloop, print its result line); the harness side --
:func:`harness_parser` (the options every such bench takes),
:func:`run_cells` (every cell with every client, in turn),
:func:`run_worker` (start one worker process per cell, wait for it within a
deadline, return the JSON of its result line), :func:`by_cell` and
:func:`result_cells` (the table's rows: results grouped by cell, a
result's measured cells) and :func:`emit` (the table on stdout, the results
as JSON where asked).

Lifecycle: a worker process calls :func:`drive` once and ends with
:func:`finish_worker`, which prints its result line (``prefix + json``);
the harness runs the process with :func:`run_worker` and gets that dict
back, or ``{"error": ...}`` (a timeout, or the last line of the worker's
stderr when it printed no result).

Invariants: a failed request is counted as an error (its message kept as
``last_error``) and followed by a 10 ms pause, never a busy spin; a wrong
answer is an error too; the tasks are stopped and awaited (10 s at most)
before :func:`drive` returns.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
import sys
from typing import Any, Awaitable, Callable, Coroutine, Dict, List, Optional, Sequence

__all__ = ["by_cell", "drive", "emit", "finish_worker", "harness_parser", "result_cells",
           "run_cells", "run_worker", "worker_parser"]


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


def worker_parser(clients: Optional[Sequence[str]] = None,
                  duration: float = 2.0) -> argparse.ArgumentParser:
    """A worker's command line with what every worker takes: the client
    (one of ``clients`` when given), ``--warmup`` and ``--duration``; the
    bench adds the cell's arguments after the client."""
    p = argparse.ArgumentParser()
    p.add_argument("client", choices=clients)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--duration", type=float, default=duration)
    return p


def finish_worker(prefix: str, coro: Coroutine[Any, Any, Dict[str, Any]],
                  on_ringline: bool) -> int:
    """Run ``coro`` (a worker's whole client run) on ringline's loop when
    ``on_ringline``, else on uvloop, or on asyncio where uvloop is not
    installed (the result's ``"loop"`` names the loop then); print the
    result as the line :func:`run_worker` reads (``prefix + json``).
    Returns the worker's exit status (0)."""
    if on_ringline:
        import ringline
        result = ringline.run(coro)
    else:
        try:
            import uvloop  # type: ignore[import-not-found]
        except ImportError:
            result = asyncio.run(coro)
            result["loop"] = "asyncio (uvloop is not installed)"
        else:
            result = uvloop.run(coro)
            result["loop"] = "uvloop"
    print(prefix + json.dumps(result), flush=True)
    return 0


def harness_parser(prog: str, doc: Optional[str], clients: Sequence[str],
                   duration: float = 2.0,
                   duration_help: str = "seconds measured per cell") -> argparse.ArgumentParser:
    """The harness's command line with the options every client bench
    takes: ``--clients`` (comma-separated, default all of ``clients``),
    ``--duration``, ``--warmup`` and ``--json``; the bench adds its cells'.
    The description is the first paragraph of ``doc`` (the module's)."""
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    p.add_argument("--clients", default=",".join(clients),
                   help=f"comma-separated (default: {','.join(clients)})")
    p.add_argument("--duration", type=float, default=duration, help=duration_help)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--json", help="also write the results to this file")
    return p


def run_cells(cells: Sequence[Dict[str, Any]], clients: Sequence[str],
              run: Callable[..., Dict[str, Any]],
              unavailable: Optional[Callable[[str, Dict[str, Any]], Optional[str]]] = None,
              ) -> List[Dict[str, Any]]:
    """Every cell (its labels, e.g. ``{"op": "get", "tasks": 100}``) with
    every client in turn: ``run(client, **cell)`` after a progress line on
    stderr, its result tagged with ``client`` and the cell's labels.
    ``unavailable(client, cell)`` says why a pair cannot run: None runs it,
    "" leaves it out, any other reason stands as its result
    (``{"error": reason}``). Returns the results in order."""
    results: List[Dict[str, Any]] = []
    for cell in cells:
        for client in clients:
            why = unavailable(client, cell) if unavailable is not None else None
            if why == "":
                continue
            if why is not None:
                r: Dict[str, Any] = {"error": why}
            else:
                labels = " ".join(f"{k}={v}" for k, v in cell.items())
                print(f"{labels} {client} ...", file=sys.stderr, flush=True)
                r = run(client, **cell)
            r.update(cell, client=client)
            results.append(r)
    return results


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


def by_cell(results: List[Dict[str, Any]], *labels: str
            ) -> Dict[tuple, Dict[str, Dict[str, Any]]]:
    """The results grouped for the table: the tuple of a cell's ``labels``
    -> client -> result, in the order the results came."""
    out: Dict[tuple, Dict[str, Dict[str, Any]]] = {}
    for r in results:
        out.setdefault(tuple(r[k] for k in labels), {})[r["client"]] = r
    return out


def result_cells(r: Dict[str, Any], rate: str, ref: Optional[float]) -> str:
    """The last four cells of a result's table row, ``|``-separated: the
    rate (``r[rate]``), the client CPU per operation, the rate over ``ref``
    (the reference client's; "-" without one) and the errors with the last
    one's message; ``- | - | - | <error>`` for a cell that failed."""
    if "error" in r:
        return f"- | - | - | {r['error']}"
    ratio = f"{r[rate] / ref:.2f}x" if ref else "-"
    err = str(r["errors"]) + (f" ({r['last_error']})" if r.get("last_error") else "")
    return f"{r[rate]:,.0f} | {r['cpu_us']:.0f} | {ratio} | {err}"


def emit(results: List[Dict[str, Any]], render: Callable[[List[Dict[str, Any]]], str],
         json_path: Optional[str]) -> int:
    """Print ``render(results)``; write ``results`` as JSON to ``json_path``
    when given. Returns the harness's exit status (0)."""
    sys.stdout.write(render(results))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
    return 0
