"""``ringline bench grpc``: the gRPC client workload, ringline.grpc (on
ringline's loop) side by side with grpcio's aio client and grpclib's client
(each on uvloop), against one grpcio aio server.

Owns the harness (start the server, run one client process per cell and
client, print the table, write JSON), the server process (``python -m
ringline.bench.grpc_bench --server``: a grpcio aio server with one unary
echo method on bytes, on 127.0.0.1, serving until its stdin closes) and the
client process (``--worker CLIENT CONCURRENCY``: one client library, timed
by the process's own CPU clock, which counts every thread of it, so
grpcio's C-core threads are in its CPU per call).

Cells: unary echo of a 16-byte message with 1 and 100 calls in flight (each
of N tasks makes one call at a time on one shared channel). Reported per
cell and client: calls per second and client CPU per call (user+system
time of the client process over the calls it completed, microseconds), the
medians over ``--rounds`` rounds of ``--duration`` seconds after a warm-up,
and the ratios to grpcio aio and grpclib. Every reply is checked. A client
that is not installed or fails is a footnoted error in its row, never a
crash of the run.

Lifecycle: the server starts once; each cell's client process is bounded
by warm-up + rounds x duration + a margin and then killed; the server is
stopped at the end, whatever happened. Loopback only. On a shared or noisy
machine, compare CPU per call, not calls per second.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
from typing import Any, Dict, List, Optional

from .closedloop import (by_cell, drive, emit, finish_worker, harness_parser, run_cells,
                         run_worker, worker_parser)
from .portchild import PortChild, serve_until_eof

__all__ = ["main", "CLIENTS", "CONCURRENCY"]

CLIENTS = ("ringline", "grpcio", "grpclib")
CONCURRENCY = (1, 100)
METHOD = "/bench.Echo/Echo"
PAYLOAD = b"0123456789abcdef"
_RESULT = "RINGLINE-GRPC-BENCH "


# -- the server process ------------------------------------------------------------

def _server() -> int:
    import grpc

    async def echo(req: bytes, ctx: Any) -> bytes:
        return req

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await serve_until_eof(port)
        await server.stop(None)

    asyncio.run(serve())
    return 0


# -- the client process ------------------------------------------------------------

async def _drive(call: Any, tasks: int, warmup: float, rounds: int,
                 duration: float) -> Dict[str, Any]:
    async def step(_n: int) -> Optional[str]:
        reply = await call(PAYLOAD)
        return None if reply == PAYLOAD else f"reply {reply[:20]!r}, expected the request"

    r = await drive(step, tasks, warmup, duration, rounds)
    return {"rounds": [{"calls": w["n"], "cps": w["rate"], "cpu_us": w["cpu_us"]}
                       for w in r["rounds"]],
            "errors": r["errors"], "last_error": r["last_error"]}


def _grpclib_codec() -> Any:
    from grpclib.encoding.base import CodecBase

    class Raw(CodecBase):       # bytes as they are (no protobuf in the way)
        __content_subtype__ = "proto"

        def encode(self, message: Any, message_type: Any) -> bytes:
            return bytes(message)

        def decode(self, data: bytes, message_type: Any) -> bytes:
            return bytes(data)
    return Raw()


async def _client_main(client: str, port: int, tasks: int, warmup: float, rounds: int,
                       duration: float) -> Dict[str, Any]:
    target = f"127.0.0.1:{port}"
    if client == "ringline":
        import ringline.grpc as rg
        async with rg.Channel(target) as ch:
            return await _drive(ch.unary_unary(METHOD), tasks, warmup, rounds, duration)
    if client == "grpcio":
        import grpc
        async with grpc.aio.insecure_channel(target) as ch:
            return await _drive(ch.unary_unary(METHOD), tasks, warmup, rounds, duration)
    if client == "grpclib":
        from grpclib.client import Channel, UnaryUnaryMethod
        lib_ch = Channel("127.0.0.1", port, codec=_grpclib_codec())
        try:
            return await _drive(UnaryUnaryMethod(lib_ch, METHOD, bytes, bytes), tasks, warmup,
                                rounds, duration)
        finally:
            lib_ch.close()
    raise SystemExit(f"unknown client {client}")


def _worker(argv: List[str]) -> int:
    p = worker_parser(duration=1.0)
    p.add_argument("port", type=int)
    p.add_argument("tasks", type=int)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    coro = _client_main(a.client, a.port, a.tasks, a.warmup, a.rounds, a.duration)
    return finish_worker(_RESULT, coro, a.client == "ringline")


# -- the harness ---------------------------------------------------------------------

def _run_cell(client: str, port: int, tasks: int, warmup: float, rounds: int,
              duration: float) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "ringline.bench.grpc_bench", "--worker", client, str(port),
           str(tasks), "--warmup", str(warmup), "--rounds", str(rounds),
           "--duration", str(duration)]
    r = run_worker(cmd, _RESULT, warmup + rounds * duration + 60)
    if "rounds" in r:           # the worker's result line
        rs = r["rounds"]
        r["cps"] = statistics.median(x["cps"] for x in rs)
        r["cpu_us"] = statistics.median(x["cpu_us"] for x in rs)
        r["calls"] = sum(x["calls"] for x in rs)
    return r


def _available(client: str) -> Optional[str]:
    mods = {"ringline": ["ringline.grpc", "h2"], "grpcio": ["grpc", "uvloop"],
            "grpclib": ["grpclib", "uvloop"]}[client]
    for m in mods:
        try:
            __import__(m)
        except ImportError:
            return f"{m} is not installed"
    return None


def render(results: List[Dict[str, Any]]) -> str:
    lines = ["| concurrent calls | client | calls/s | client CPU us/call | calls/s vs grpcio "
             "| CPU/call: grpcio / it | calls/s vs grpclib | CPU/call: grpclib / it | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    notes: List[str] = []
    for (tasks,), row in by_cell(results, "tasks").items():
        refs = {name: row.get(name, {}) for name in ("grpcio", "grpclib")}
        for client, r in row.items():
            if "error" in r:
                notes.append(f"{client} at {tasks}: {r['error']}")
                lines.append(f"| {tasks} | {client} | - | - | - | - | - | - | "
                             f"error [{len(notes)}] |")
                continue
            ratios = []
            for ref in refs.values():
                ok = "cps" in ref and ref["cps"] > 0 and r["cpu_us"] > 0
                ratios.append(f"{r['cps'] / ref['cps']:.2f}x" if ok else "-")
                ratios.append(f"{ref['cpu_us'] / r['cpu_us']:.2f}x" if ok else "-")
            err = str(r["errors"])
            if r.get("last_error"):
                notes.append(f"{client} at {tasks}: {r['last_error']}")
                err += f" [{len(notes)}]"
            lines.append(f"| {tasks} | {client} | {r['cps']:,.0f} | {r['cpu_us']:.0f} | "
                         + " | ".join(ratios) + f" | {err} |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"[{i}] {n}" for i, n in enumerate(notes, 1)) + "\n"
    return text


def _server_process() -> PortChild:
    """The server process: ``.port``; ``close()`` closes its stdin, then kills."""
    return PortChild([sys.executable, "-m", "ringline.bench.grpc_bench", "--server"],
                     what="the grpcio bench server (is grpcio installed?)")


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    if argv[:1] == ["--server"]:
        return _server()
    p = harness_parser("ringline bench grpc", __doc__, CLIENTS, duration=1.0,
                       duration_help="seconds per round")
    p.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)),
                   help="comma-separated calls in flight (default: 1,100)")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    clients = [c for c in a.clients.split(",") if c]
    for c in clients:
        if c not in CLIENTS:
            p.error(f"unknown client {c!r} (one of {', '.join(CLIENTS)})")
    levels = [int(c) for c in a.concurrency.split(",") if c]
    srv = _server_process()
    try:
        results = run_cells(
            [{"tasks": tasks} for tasks in levels], clients,
            lambda client, tasks: _run_cell(client, srv.port, tasks, a.warmup, a.rounds,
                                            a.duration),
            lambda client, cell: _available(client))
    finally:
        srv.close()
    return emit(results, render, a.json)


if __name__ == "__main__":
    sys.exit(main())
