"""``python -m ringline.bench.http3_bench``: HTTP/3 client workloads,
ringline.http3 side by side with aioquic's own asyncio client and qh3's
(each on uvloop) and, when it is installed, niquests' HTTP/3, against one
local server.

Owns the harness (start the server, run one client process per cell, print
the table, optionally write JSON) and the client process (``--worker``: one
client, one workload, timed by the process's own CPU clock).

Server, the same for every client: Debian's ngtcp2 example server
(``gtlsserver``, C: the clients, not the server, are what is measured)
serving two files, or with ``--server ringline`` (the default when ngtcp2
is not installed) ringline.http3's own server (ringline.quic + qh3, in
Python) in a subprocess (``--serve``). Workloads, over one connection:
``bulk`` (one GET of ``--bulk-mib`` MiB, 64 by default) and ``small``
(``--small`` GETs of 16 B, 1,000 by default, at most ``--inflight`` in
flight, 100 by default: ngtcp2's stream limit, so past the first hundred
each request also waits for the server to return stream credit); and with
``--works ...,upload`` ``upload`` (one POST of ``--bulk-mib`` MiB to the
ringline server's ``/length``; ringline clients only: it measures the
client's send path, where UDP GSO applies -- run it with
``RINGLINE_QUIC_GSO=0`` and ``=1`` to compare).
Reported per cell and client: wall time, throughput (MiB/s or requests/s),
the client process's CPU seconds (user + system) over the workload, and the
throughput ratio to aioquic-on-uvloop. Every body length is checked.

Clients: ``ringline`` (ringline.http3, qh3 engine, on a ringline loop),
``ringline-aioquic`` (the same with aioquic as the engine: the I/O layer
compared engine for engine), ``aioquic-uvloop`` and ``qh3-uvloop`` (each
engine's own asyncio QuicConnectionProtocol with its H3Connection, on
uvloop), ``niquests`` (its HTTP/3 over qh3; run by ``--niquests-python``
when niquests lives in another environment -- it replaces urllib3).

Lifecycle: the server starts once, one client process per cell, the server
is stopped at the end whatever happened. Loopback only; each cell is
bounded by ``--cell-timeout``. One run: on a shared machine compare ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from .childio import stop_child
from .closedloop import finish_worker
from .portchild import serve_until_eof

__all__ = ["main", "CLIENTS"]

CLIENTS = ("ringline", "ringline-aioquic", "aioquic-uvloop", "qh3-uvloop", "niquests")
_RESULT = "RINGLINE-H3-BENCH "
_INFLIGHT = 100
_SMALL = 16


# -- the server process ---------------------------------------------------------

def _serve(port: int, cert: str, key: str) -> None:
    import ringline
    from ringline.http3 import serve

    async def run() -> None:
        srv = await serve("127.0.0.1", port, certfile=cert, keyfile=key)
        await serve_until_eof(srv.port)
        srv.close()
    ringline.run(run())


# -- the clients ------------------------------------------------------------------

def _engine_client(engine: str) -> Any:
    """``get(path) -> body length`` over one connection with the engine's own
    asyncio QuicConnectionProtocol and H3Connection."""
    import importlib
    aio = importlib.import_module(engine + ".asyncio")
    h3c = importlib.import_module(engine + ".h3.connection")
    h3e = importlib.import_module(engine + ".h3.events")
    cfgm = importlib.import_module(engine + ".quic.configuration")

    class Proto(aio.QuicConnectionProtocol):  # type: ignore[misc,name-defined]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.h3 = h3c.H3Connection(self._quic)
            self.waiting: Dict[int, Any] = {}
            self.room: List[Any] = []

        def _has_room(self) -> bool:
            # qh3 refuses a stream past the peer's MAX_STREAMS (aioquic queues it)
            limit = getattr(self._quic, "max_concurrent_bidi_streams", None)
            return limit is None or (self._quic.get_next_available_stream_id() >> 2) < limit

        def quic_event_received(self, event: Any) -> None:
            if self.room and self._has_room():
                room, self.room = self.room, []
                for f in room:
                    if not f.done():
                        f.set_result(None)
            for e in self.h3.handle_event(event):
                w = self.waiting.get(getattr(e, "stream_id", -1))
                if w is None:
                    continue
                if isinstance(e, h3e.DataReceived):
                    w[1].append(e.data)
                if getattr(e, "stream_ended", False):
                    del self.waiting[e.stream_id]
                    w[0].set_result(b"".join(w[1]))

        async def get(self, authority: bytes, path: str) -> int:
            while not self._has_room():
                f = asyncio.get_running_loop().create_future()
                self.room.append(f)
                await f
            sid = self._quic.get_next_available_stream_id()
            fut = asyncio.get_running_loop().create_future()
            self.waiting[sid] = (fut, [])
            self.h3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"),
                                       (b":authority", authority), (b":path", path.encode())],
                                 end_stream=True)
            self.transmit()
            return len(await fut)

    return aio, cfgm, Proto


def _path(server: str, n: int) -> str:
    return f"/f{n}" if server == "ngtcp2" else f"/bytes/{n}"


async def _run_work(get: Any, work: str, bulk: int, small: int,
                    server: str, post: Any = None) -> Dict[str, Any]:
    if work == "upload" and (post is None or server != "ringline"):
        raise RuntimeError("upload: ringline clients against --server ringline only")
    body = b"u" * bulk if work == "upload" else b""
    t0 = time.perf_counter()
    c0 = time.process_time()
    if work == "upload":
        n = await post("/length", body)
        if n != bulk:
            raise RuntimeError(f"the server counted {n} bytes, expected {bulk}")
        done = 1
    elif work == "bulk":
        n = await get(_path(server, bulk))
        if n != bulk:
            raise RuntimeError(f"bulk body of {n} bytes, expected {bulk}")
        done = 1
    else:
        sem = asyncio.Semaphore(_INFLIGHT)
        bad = 0

        async def one() -> None:
            nonlocal bad
            async with sem:
                if await get(_path(server, _SMALL)) != _SMALL:
                    bad += 1
        await asyncio.gather(*[one() for _ in range(small)])
        if bad:
            raise RuntimeError(f"{bad} small bodies of the wrong length")
        done = small
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "done": done}


async def _client_main(client: str, port: int, ca: str, work: str, bulk: int,
                       small: int, server: str = "ringline") -> Dict[str, Any]:
    warm = _path(server, _SMALL)
    if client in ("ringline", "ringline-aioquic"):
        import ringline.http3 as h3
        limits = h3.QuicLimits(engine="aioquic" if client == "ringline-aioquic" else "qh3")
        async with h3.Client(base_url=f"https://127.0.0.1:{port}", verify=ca, quic=limits,
                             timeout=120) as c:
            await c.get(warm)                   # the handshake is not measured

            async def get(path: str) -> int:
                return len((await c.get(path)).content)

            async def post(path: str, body: bytes) -> int:
                return int((await c.post(path, content=body)).text.split()[0])
            out = await _run_work(get, work, bulk, small, server, post)
            ep = next(iter(c._all)).qc.endpoint
            out["sendmsgs"] = ep.sendmsgs
            out["gso_sends"] = ep.gso_sends
            out["datagrams_out"] = ep.datagrams_out
            out["gso"] = ep.gso
            return out
    if client in ("aioquic-uvloop", "qh3-uvloop"):
        aio, cfgm, Proto = _engine_client(client.split("-")[0])
        cfg = cfgm.QuicConfiguration(is_client=True, alpn_protocols=["h3"])
        cfg.load_verify_locations(ca)
        if client.startswith("qh3"):
            cfg.max_datagram_frame_size = 65536
        auth = f"127.0.0.1:{port}".encode()
        async with aio.connect("127.0.0.1", port, configuration=cfg,
                               create_protocol=Proto) as proto:
            await proto.get(auth, warm)

            async def get(path: str) -> int:
                return int(await proto.get(auth, path))
            return await _run_work(get, work, bulk, small, server)
    if client == "niquests":
        import niquests  # type: ignore[import-not-found]
        async with niquests.AsyncSession(pool_maxsize=1) as s:
            s.quic_cache_layer.add_domain("127.0.0.1", port)
            base = f"https://127.0.0.1:{port}"
            r = await s.get(base + warm, verify=ca)
            if getattr(r, "http_version", 0) != 30:
                raise RuntimeError(f"niquests did not use HTTP/3 (http_version "
                                   f"{getattr(r, 'http_version', None)})")

            async def get(path: str) -> int:
                return len((await s.get(base + path, verify=ca, timeout=120)).content or b"")
            return await _run_work(get, work, bulk, small, server)
    raise SystemExit(f"unknown client {client}")


def _worker(argv: List[str]) -> int:
    global _INFLIGHT
    p = argparse.ArgumentParser()
    p.add_argument("client")
    p.add_argument("port", type=int)
    p.add_argument("ca")
    p.add_argument("work", choices=("bulk", "small", "upload"))
    p.add_argument("--bulk", type=int, default=64 << 20)
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--server", default="ringline")
    p.add_argument("--inflight", type=int, default=100)
    a = p.parse_args(argv)
    _INFLIGHT = a.inflight
    coro = _client_main(a.client, a.port, a.ca, a.work, a.bulk, a.small, a.server)
    return finish_worker(_RESULT, coro, a.client.startswith("ringline"))


# -- the harness --------------------------------------------------------------------

def _available(client: str, niquests_python: Optional[str]) -> Optional[str]:
    """The python that runs ``client``, or None when it cannot run here."""
    import importlib.util
    if client == "niquests":
        py = niquests_python or sys.executable
        ok = subprocess.run([py, "-c", "import niquests, qh3"], capture_output=True).returncode
        return py if ok == 0 else None
    mod = {"ringline": "qh3", "ringline-aioquic": "aioquic", "aioquic-uvloop": "aioquic",
           "qh3-uvloop": "qh3"}[client]
    return sys.executable if importlib.util.find_spec(mod) is not None else None


def _gtlsserver() -> Optional[str]:
    return shutil.which("gtlsserver") or (
        "/usr/sbin/gtlsserver" if os.path.exists("/usr/sbin/gtlsserver") else None)


def _start_server(kind: str, tmp: str, tls: Dict[str, str], bulk: int,
                  env: Dict[str, str]) -> Any:
    """(process, port) of the server every client runs against."""
    if kind == "ngtcp2":
        import socket
        root = os.path.join(tmp, "www")
        os.mkdir(root)
        for n in (bulk, _SMALL):
            with open(os.path.join(root, f"f{n}"), "wb") as f:
                f.write(b"x" * n)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([_gtlsserver() or "gtlsserver", "-q", "-d", root,
                                 "127.0.0.1", str(port), tls["key"], tls["cert"]],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return proc, port
    proc = subprocess.Popen([sys.executable, "-m", "ringline.bench.http3_bench", "--serve",
                             "0", tls["cert"], tls["key"]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env)
    return proc, int(proc.stdout.readline())      # type: ignore[union-attr]


def run_bench(clients: List[str], bulk_mib: int = 64, small: int = 1000,
              niquests_python: Optional[str] = None, cell_timeout: float = 300,
              out: Any = sys.stdout, server_kind: Optional[str] = None,
              inflight: int = _INFLIGHT,
              works: tuple = ("bulk", "small")) -> Dict[str, Any]:
    from .nginx import tls_files
    if server_kind is None:
        server_kind = "ngtcp2" if _gtlsserver() else "ringline"
    tmp = tempfile.mkdtemp(prefix="ringline-h3bench-")
    tls = tls_files(tmp)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server, port = _start_server(server_kind, tmp, tls, bulk_mib << 20, env)
    results: Dict[str, Any] = {"bulk_bytes": bulk_mib << 20, "small": small,
                               "server": server_kind, "inflight": inflight, "cells": {}}
    print(f"server: {server_kind} on 127.0.0.1:{port}", file=out, flush=True)
    try:
        for work in works:
            for client in clients:
                py = _available(client, niquests_python)
                key = f"{work}/{client}"
                if py is None:
                    results["cells"][key] = {"skipped": "not installed"}
                    continue
                argv = [py, "-m", "ringline.bench.http3_bench", "--worker", client, str(port),
                        tls["ca"], work, "--bulk", str(bulk_mib << 20), "--small", str(small),
                        "--server", server_kind, "--inflight", str(inflight)]
                try:
                    p = subprocess.run(argv, capture_output=True, text=True, env=env,
                                       timeout=cell_timeout)
                    line = [x for x in p.stdout.splitlines() if x.startswith(_RESULT)]
                    if not line:
                        raise RuntimeError((p.stderr or p.stdout).strip()[-400:])
                    res = json.loads(line[-1][len(_RESULT):])
                except Exception as exc:                   # shown in the table
                    res = {"error": f"{type(exc).__name__}: {exc}"[:400]}
                results["cells"][key] = res
                print(_row(work, client, res, bulk_mib, small), file=out, flush=True)
    finally:
        if server_kind == "ngtcp2":     # it ignores its stdin
            stop_child(server, grace=10, eof_wait=0)
        else:
            stop_child(server, grace=0, eof_wait=10)
        shutil.rmtree(tmp, ignore_errors=True)
    _ratios(results, out)
    return results


def _rate(work: str, res: Dict[str, Any], bulk_mib: int, small: int) -> float:
    return (small if work == "small" else bulk_mib) / res["wall"]


def _row(work: str, client: str, res: Dict[str, Any], bulk_mib: int, small: int) -> str:
    if "error" in res or "skipped" in res:
        return f"{work:5} {client:17} {res.get('error') or res.get('skipped')}"
    unit = "req/s" if work == "small" else "MiB/s"
    extra = (f"  {res['datagrams_out']} datagrams in {res['sendmsgs']} SENDMSG "
             f"({res['gso_sends']} GSO)") if "sendmsgs" in res else ""
    return (f"{work:5} {client:17} {res['wall']:7.2f} s  {_rate(work, res, bulk_mib, small):9.1f} "
            f"{unit}  client CPU {res['cpu']:6.2f} s{extra}")


def _ratios(results: Dict[str, Any], out: Any) -> None:
    cells = results["cells"]
    bulk_mib = results["bulk_bytes"] >> 20
    for work in ("bulk", "small", "upload"):
        ref = cells.get(f"{work}/aioquic-uvloop", {})
        if "wall" not in ref:
            continue
        for client in CLIENTS:
            r = cells.get(f"{work}/{client}", {})
            if "wall" in r and client != "aioquic-uvloop":
                tput = _rate(work, r, bulk_mib, results["small"]) / _rate(
                    work, ref, bulk_mib, results["small"])
                r["x_aioquic_uvloop"] = round(tput, 2)
                r["cpu_x_aioquic_uvloop"] = round(ref["cpu"] / max(r["cpu"], 1e-9), 2)
                print(f"{work:5} {client:17} throughput x{tput:.2f} vs aioquic-uvloop, "
                      f"client CPU x{r['cpu_x_aioquic_uvloop']:.2f} less", file=out)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    if argv[:1] == ["--serve"]:
        _serve(int(argv[1]), argv[2], argv[3])
        return 0
    p = argparse.ArgumentParser(prog="python -m ringline.bench.http3_bench",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default=",".join(CLIENTS))
    p.add_argument("--bulk-mib", type=int, default=64)
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--inflight", type=int, default=_INFLIGHT,
                   help="small requests in flight at once (default 100)")
    p.add_argument("--niquests-python", help="a python whose environment has niquests")
    p.add_argument("--cell-timeout", type=float, default=300)
    p.add_argument("--server", choices=("ngtcp2", "ringline"),
                   help="the server (default: ngtcp2's gtlsserver when installed)")
    p.add_argument("--works", default="bulk,small",
                   help="workloads, comma-separated: bulk, small, upload")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args(argv)
    res = run_bench([c for c in a.clients.split(",") if c], a.bulk_mib, a.small,
                    a.niquests_python, a.cell_timeout, server_kind=a.server,
                    inflight=a.inflight, works=tuple(w for w in a.works.split(",") if w))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
