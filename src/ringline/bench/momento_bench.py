"""``ringline bench momento`` (``python -m ringline.bench.momento_bench``):
Momento cache client workloads, ringline.momento side by side with the official ``momento`` SDK
(its ``CacheClientAsync``, on grpcio's aio client), against the same fake
Momento server (ringline.bench.momento_fake: grpcio's aio server with the
momento-wire-types Scs servicer) on 127.0.0.1.

Owns the harness (start the fake, run one client process per cell, print
the table, write JSON) and the client process (``--worker``: one client,
one workload, timed by the process's own CPU clock).

Cells: get (hits, on keys set before the warm-up) and set, each with 1 and
100 concurrent tasks (each task one command at a time; every client keeps
one channel, so the 100 share one HTTP/2 connection), values of
``--value-size`` bytes (100). Reported per cell and client: ops per
second, client CPU per op (the client process's user+system time over the
ops it completed, in microseconds) and the ratio of ops/s to the SDK's.
Every get's value is checked. The SDK runs on uvloop when that is installed
(grpcio's aio client runs on any asyncio loop), ringline on its own loop.

Lifecycle: the fake starts once; each cell runs a warm-up then
``--duration`` seconds in a client process that exits; the fake stops at
the end, whatever happened. Loopback only; the run is bounded by cells x
(warm-up + duration + a start-up margin). The fake server (Python) is
usually the bottleneck at 100 concurrent commands, and the 2 processes
share the machine's CPUs: compare CPU per op, and ratios, not absolute
numbers.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

from .closedloop import (by_cell, drive, emit, finish_worker, harness_parser, result_cells,
                         run_cells, run_worker, worker_parser)

__all__ = ["main", "CLIENTS", "CELLS"]

CLIENTS = ("ringline", "momento")
CELLS = [("get", 1), ("get", 100), ("set", 1), ("set", 100)]
KEY = "bench-key"
CACHE = "bench"
KEYS = 1000
_RESULT = "RINGLINE-MOMENTO-BENCH "


# -- the client process --------------------------------------------------------

async def _drive(op: Any, tasks: int, warmup: float, duration: float) -> Dict[str, Any]:
    async def step(n: int) -> None:
        await op(n % KEYS)

    r = await drive(step, tasks, warmup, duration, count_failures=True)
    w = r["rounds"][0]
    return {"ops": w["n"], "ops_s": w["rate"], "cpu_us": w["cpu_us"],
            "errors": w["errors"], "last_error": r["last_error"]}


def _keys_values(size: int) -> tuple:
    keys = [f"key-{i}".encode() for i in range(KEYS)]
    values = [(b"%08d" % i) * (size // 8 + 1) for i in range(KEYS)]
    return keys, [v[:size] for v in values]


async def _ringline(op: str, port: int, tasks: int, size: int, warmup: float,
                    duration: float) -> Dict[str, Any]:
    from ringline import momento
    keys, values = _keys_values(size)
    cred = momento.Credential.for_momento_local(port=port, api_key=KEY)
    async with momento.CacheClient(cred, momento.Configuration.laptop(), 600) as c:
        await c.set_batch(CACHE, zip(keys, values))

        async def get(i: int) -> None:
            if await c.get(CACHE, keys[i]) != values[i]:
                raise AssertionError("wrong value")

        async def set_(i: int) -> None:
            await c.set(CACHE, keys[i], values[i])
        return await _drive(get if op == "get" else set_, tasks, warmup, duration)


async def _sdk(op: str, port: int, tasks: int, size: int, warmup: float,
               duration: float) -> Dict[str, Any]:
    from datetime import timedelta
    from momento import CacheClientAsync, Configurations, CredentialProvider
    from momento.responses import CacheGet, CacheSet
    keys, values = _keys_values(size)
    cred = CredentialProvider(auth_token=KEY, control_endpoint="127.0.0.1",
                              cache_endpoint="127.0.0.1", token_endpoint="127.0.0.1", port=port)
    c = await CacheClientAsync.create(Configurations.Laptop.v1(), cred, timedelta(seconds=600))
    async with c:
        for k, v in zip(keys, values):
            r = await c.set(CACHE, k, v)
            if not isinstance(r, CacheSet.Success):
                raise SystemExit(f"set failed: {r}")

        async def get(i: int) -> None:
            r = await c.get(CACHE, keys[i])
            if not isinstance(r, CacheGet.Hit) or r.value_bytes != values[i]:
                raise AssertionError(f"wrong reply {r!r}")

        async def set_(i: int) -> None:
            r = await c.set(CACHE, keys[i], values[i])
            if not isinstance(r, CacheSet.Success):
                raise AssertionError(f"wrong reply {r!r}")
        return await _drive(get if op == "get" else set_, tasks, warmup, duration)


def _worker(argv: List[str]) -> int:
    p = worker_parser(CLIENTS)
    p.add_argument("op", choices=("get", "set"))
    p.add_argument("port", type=int)
    p.add_argument("tasks", type=int)
    p.add_argument("--value-size", type=int, default=100)
    a = p.parse_args(argv)
    run = _ringline if a.client == "ringline" else _sdk
    return finish_worker(_RESULT, run(a.op, a.port, a.tasks, a.value_size, a.warmup, a.duration),
                         a.client == "ringline")


# -- the harness -----------------------------------------------------------------

def _run_cell(client: str, op: str, tasks: int, port: int, size: int, warmup: float,
              duration: float) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "ringline.bench.momento_bench", "--worker", client, op,
           str(port), str(tasks), "--value-size", str(size), "--warmup", str(warmup),
           "--duration", str(duration)]
    return run_worker(cmd, _RESULT, warmup + duration + 60)


def _available(client: str) -> bool:
    try:
        __import__({"ringline": "ringline.momento"}.get(client, client))
        return True
    except ImportError:
        return False


def render(results: List[Dict[str, Any]]) -> str:
    lines = ["| op | tasks | client | ops/s | client CPU us/op | ops/s vs SDK | errors |",
             "|---|---|---|---|---|---|---|"]
    for (op, tasks), row in by_cell(results, "op", "tasks").items():
        ref = row.get("momento", {}).get("ops_s")
        for client, r in row.items():
            lines.append(f"| {op} | {tasks} | {client} | {result_cells(r, 'ops_s', ref)} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    p = harness_parser("ringline bench momento", __doc__, CLIENTS)
    p.add_argument("--cells", default="all",
                   help="comma-separated OP:TASKS, e.g. get:100 (default: all)")
    p.add_argument("--value-size", type=int, default=100)
    a = p.parse_args(argv)
    from .momento_fake import MomentoFake
    cells = CELLS if a.cells == "all" else [
        (c.split(":")[0], int(c.split(":")[1])) for c in a.cells.split(",")]
    clients = [c for c in a.clients.split(",") if c and _available(c)]
    fake = MomentoFake(KEY)
    try:
        results = run_cells(
            [{"op": op, "tasks": tasks} for op, tasks in cells], clients,
            lambda client, op, tasks: _run_cell(client, op, tasks, fake.port, a.value_size,
                                                a.warmup, a.duration))
    finally:
        fake.close()
    return emit(results, render, a.json)


if __name__ == "__main__":
    sys.exit(main())
