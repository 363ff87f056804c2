"""``ringline bench http``: HTTP client workloads, ringline.http side by side
with aiohttp, httpx and, where installed, httpx2 and niquests (each on
uvloop), against a local nginx.

Owns the harness (start nginx, run one client process per cell, print the
table and write JSON) and the client process (``python -m
ringline.bench.http_bench --worker ...``: one client library, one
workload, timed by the process's own CPU clock).

Cells: HTTP/1.1 with 1 and 50 concurrent tasks (each task one request at a
time; the client may open up to one connection per task), HTTP/2 with 50
concurrent streams (over TLS, ALPN h2; aiohttp has no HTTP/2 and is left
out), each for a small body (16 B) and 64 KiB. Reported per cell and
client: requests per second, client CPU per request (the client process's
user+system time over the requests it completed, in microseconds), and the
ratio of requests per second to the reference (aiohttp for HTTP/1.1, the
best other client for HTTP/2). Every response body's length is checked. A client library
that is not installed is left out (httpx2 and niquests are not in the bench
extra: niquests replaces urllib3 with urllib3-future).

Lifecycle: nginx starts once (ringline.bench.nginx; with ``--pin``, nginx
runs on the last CPU and the clients on the first), each cell runs a warm-up
then ``--duration`` seconds, a client process is started per cell and
exits; nginx is stopped at the end, whatever happened. Loopback only; the
run is bounded by cells x (warm-up + duration + a start-up margin).

On a shared or noisy machine, compare ratios, not absolute numbers.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional

from .closedloop import (by_cell, drive, emit, finish_worker, harness_parser, result_cells,
                         run_cells, run_worker, worker_parser)

__all__ = ["main", "CLIENTS", "CELLS"]

CLIENTS = ("ringline", "aiohttp", "httpx", "httpx2", "niquests")
# (protocol, concurrent tasks/streams, body size)
CELLS = [("h1", 1, 16), ("h1", 50, 16), ("h1", 1, 65536), ("h1", 50, 65536),
         ("h2", 50, 16), ("h2", 50, 65536)]
_RESULT = "RINGLINE-HTTP-BENCH "


# -- the client process --------------------------------------------------------

async def _drive(get: Any, url: str, size: int, tasks: int, warmup: float,
                 duration: float) -> Dict[str, Any]:
    async def step(_n: int) -> Optional[str]:
        n = await get(url)
        return None if n == size else f"body of {n} bytes, expected {size}"

    r = await drive(step, tasks, warmup, duration)
    w = r["rounds"][0]
    return {"requests": w["n"], "rps": w["rate"], "cpu_us": w["cpu_us"],
            "errors": r["errors"], "last_error": r["last_error"]}


async def _client_main(client: str, proto: str, url: str, ca: Optional[str], size: int,
                       tasks: int, warmup: float, duration: float) -> Dict[str, Any]:
    import ssl
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    if client == "ringline":
        import ringline.http as rh
        async with rh.Client(verify=ctx or True, http2=proto == "h2", timeout=30,
                             limits=rh.Limits(max_connections=tasks if proto == "h1" else 1,
                                              max_keepalive_connections=tasks)) as c:
            async def get(u: str) -> int:
                return len((await c.get(u)).content)
            return await _drive(get, url, size, tasks, warmup, duration)
    if client == "aiohttp":
        import aiohttp
        conn = aiohttp.TCPConnector(limit=tasks, ssl=ctx or False)
        async with aiohttp.ClientSession(connector=conn) as s:
            async def get(u: str) -> int:
                async with s.get(u) as r:
                    return len(await r.read())
            return await _drive(get, url, size, tasks, warmup, duration)
    if client in ("httpx", "httpx2"):
        hx: Any = __import__(client)
        limits = hx.Limits(max_connections=tasks if proto == "h1" else 1,
                           max_keepalive_connections=tasks)
        async with hx.AsyncClient(http2=proto == "h2", verify=ctx or True, limits=limits,
                                  timeout=30) as c:
            async def get(u: str) -> int:
                return len((await c.get(u)).content)
            return await _drive(get, url, size, tasks, warmup, duration)
    if client == "niquests":
        import niquests
        async with niquests.AsyncSession(disable_http2=proto == "h1", disable_http3=True,
                                         pool_maxsize=tasks if proto == "h1" else 1) as s:
            verify = ca or True

            async def get(u: str) -> int:
                return len((await s.get(u, timeout=30, verify=verify)).content or b"")
            return await _drive(get, url, size, tasks, warmup, duration)
    raise SystemExit(f"unknown client {client}")


def _worker(argv: List[str]) -> int:
    p = worker_parser()
    p.add_argument("proto")
    p.add_argument("url")
    p.add_argument("size", type=int)
    p.add_argument("tasks", type=int)
    p.add_argument("--ca")
    p.add_argument("--cpu", type=int)
    a = p.parse_args(argv)
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    coro = _client_main(a.client, a.proto, a.url, a.ca, a.size, a.tasks, a.warmup, a.duration)
    return finish_worker(_RESULT, coro, a.client == "ringline")


# -- the harness -----------------------------------------------------------------

def _run_cell(client: str, proto: str, tasks: int, size: int, srv: Any, warmup: float,
              duration: float, cpu: Optional[int]) -> Dict[str, Any]:
    if proto == "h2":
        url, ca = f"https://127.0.0.1:{srv.tls_port}/f{size}", srv.tls["ca"]
    else:
        url, ca = f"http://127.0.0.1:{srv.port}/f{size}", None
    cmd = [sys.executable, "-m", "ringline.bench.http_bench", "--worker", client, proto, url,
           str(size), str(tasks), "--warmup", str(warmup), "--duration", str(duration)]
    if ca:
        cmd += ["--ca", ca]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    return run_worker(cmd, _RESULT, warmup + duration + 60)


def _available(client: str) -> bool:
    try:
        __import__({"ringline": "ringline.http"}.get(client, client))
        if client != "ringline":
            __import__("uvloop")
        return True
    except ImportError:
        return False


def render(results: List[Dict[str, Any]]) -> str:
    lines = ["| protocol | tasks | body | client | req/s | client CPU us/req | "
             "req/s vs reference | errors |", "|---|---|---|---|---|---|---|---|"]
    for (proto, tasks, size), row in by_cell(results, "proto", "tasks", "size").items():
        if proto == "h1":
            ref = row.get("aiohttp", {}).get("rps")
        else:       # the best other HTTP/2 client
            ref = max((r.get("rps", 0) for c, r in row.items() if c != "ringline"), default=0)
        for client, r in row.items():
            lines.append(f"| {proto} | {tasks} | {size} | {client} | "
                         f"{result_cells(r, 'rps', ref)} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    p = harness_parser("ringline bench http", __doc__, CLIENTS)
    p.add_argument("--cells", default="all",
                   help="comma-separated PROTO:TASKS:SIZE, e.g. h1:50:16 (default: all)")
    p.add_argument("--pin", action="store_true",
                   help="pin nginx to the last CPU and the clients to the first (off by "
                        "default: on a shared machine a pinned process waits for its "
                        "CPU's other load)")
    a = p.parse_args(argv)
    from .nginx import Nginx
    cells = CELLS if a.cells == "all" else [
        (c.split(":")[0], int(c.split(":")[1]), int(c.split(":")[2])) for c in a.cells.split(",")]
    clients = [c for c in a.clients.split(",") if c]
    cpus = sorted(os.sched_getaffinity(0))
    client_cpu = cpus[0] if len(cpus) > 1 and a.pin else None
    srv = Nginx().start()
    try:
        if client_cpu is not None and srv.proc is not None:
            os.sched_setaffinity(srv.proc.pid, {cpus[-1]})
        results = run_cells(
            [{"proto": proto, "tasks": tasks, "size": size} for proto, tasks, size in cells],
            clients,
            lambda client, proto, tasks, size: _run_cell(client, proto, tasks, size, srv,
                                                         a.warmup, a.duration, client_cpu),
            # left out: aiohttp on HTTP/2 (it has none), a client not installed
            lambda client, cell: ("" if (cell["proto"] == "h2" and client == "aiohttp")
                                  or not _available(client) else None))
    finally:
        srv.stop()
    return emit(results, render, a.json)


if __name__ == "__main__":
    sys.exit(main())
