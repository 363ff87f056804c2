"""`python -m ringline.kv.bench`: ringline.kv against redis-server with
redis-benchmark, in one run (issue 19, acceptance 5).

Owns: starting the servers (a `redis-server` with persistence off, one with
`--appendonly yes --appendfsync always` when the `disk` policy runs, and
`python -m ringline.kv` once per ack policy asked for: `none` in memory,
`disk` with `--appendonly yes --ack-policy disk` in a temp dir), each on a
free loopback port; running `redis-benchmark -t set` then `-t get` (-n N -c C -P p) for
every pipeline depth asked for against each; reading the server processes'
CPU time (utime + stime of the process and its children, from
/proc/<pid>/stat and /proc/<pid>/task/*/children) before and after every
run; printing requests/s, server CPU microseconds per request and the
ratios to redis-server.

Lifecycle: every server is started first; then `repeat` rounds, each running
every pipeline depth against every server in turn (so a load change on a
shared machine hits all alike); the medians are reported. The servers are
stopped (SIGTERM, then SIGKILL after 5 s) and temp dirs removed at the end,
also on failure.

Invariants: only loopback addresses; every run is bounded by -n; the same
redis-benchmark arguments are used for every server.

The comparison's shape (stated in the output and docs/kv.md): ringline.kv
runs `--workers` shards (default 1: redis-server is one thread serving one
keyspace, and redis-benchmark needs the machine's other core).
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["main", "run"]

_TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> List[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid and its live descendants, seconds."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])     # utime, stime
    return total / _TICK


def _wait_ping(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not answer PING")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _benchmark(port: int, pid: int, n: int, clients: int, pipeline: int,
               keyspace: int) -> Dict[str, float]:
    """SET then GET (one redis-benchmark run each, so each gets its own
    server CPU reading): requests/s and server CPU microseconds/request."""
    rows: Dict[str, float] = {}
    for test in ("set", "get"):
        cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test,
               "-n", str(n), "-c", str(clients), "-P", str(pipeline), "--csv"]
        if keyspace:
            cmd += ["-r", str(keyspace)]
        before = cpu_seconds(pid)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             timeout=600).stdout
        used = cpu_seconds(pid) - before
        rows.update({r[0].lower(): float(r[1]) for r in csv.reader(io.StringIO(out))
                     if len(r) > 1 and r[0].lower() == test})
        rows[test + "_cpu_us"] = used * 1e6 / n
    return rows


def run(n: int = 200_000, clients: int = 50, pipelines: Sequence[int] = (1, 16),
        workers: int = 1, policies: Sequence[str] = ("none", "disk"),
        keyspace: int = 100_000, backend: Optional[str] = None,
        redis: bool = True, repeat: int = 1) -> List[Tuple[str, int, Dict[str, float]]]:
    """Benchmark every server; returns (server label, pipeline, results),
    each result the median of `repeat` rounds. All servers run at once (idle
    but for the one benchmarked) and the rounds interleave them, so a load
    change on a shared machine hits every server alike."""
    tmp = tempfile.mkdtemp(prefix="kvbench-")
    servers: List[Tuple[str, List[str]]] = []
    env = dict(os.environ)
    if backend:
        env["RINGLINE_BACKEND"] = backend
    if redis:
        servers.append(("redis-server", ["redis-server", "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--port"]))
        if "disk" in policies:      # Redis' own durable mode, for scale
            os.makedirs(os.path.join(tmp, "redis"))
            servers.append(("redis-server always", [
                "redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--dir", os.path.join(tmp, "redis"), "--port"]))
    for policy in policies:
        cmd = [sys.executable, "-m", "ringline.kv", "--workers", str(workers)]
        if policy == "disk":
            cmd += ["--appendonly", "yes", "--ack-policy", "disk",
                    "--dir", os.path.join(tmp, "disk")]
        cmd.append("--port")
        servers.append((f"ringline.kv {policy}", cmd))
    running: List[Tuple[str, int, subprocess.Popen]] = []
    rounds: Dict[Tuple[str, int], List[Dict[str, float]]] = {}
    try:
        for label, cmd in servers:
            port = _free_port()
            proc = subprocess.Popen(cmd + [str(port)], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            running.append((label, port, proc))
            _wait_ping(port, proc)
        for _ in range(repeat):
            for p in pipelines:
                for label, port, proc in running:
                    rounds.setdefault((label, p), []).append(
                        _benchmark(port, proc.pid, n, clients, p, keyspace))
    finally:
        for _, _, proc in running:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    results = []
    for (label, p), rs in sorted(rounds.items(), key=lambda kv: (
            [s[0] for s in servers].index(kv[0][0]), kv[0][1])):
        results.append((label, p, {k: statistics.median(r[k] for r in rs) for k in rs[0]}))
    return results


def report(results: List[Tuple[str, int, Dict[str, float]]]) -> str:
    base = {(p, t): r[t] for label, p, r in results if label == "redis-server"
            for t in ("set", "get")}
    lines = [f"{'server':<22}{'-P':>4}{'SET/s':>12}{'GET/s':>12}{'SET CPU':>9}{'GET CPU':>9}"
             f"{'SET x':>8}{'GET x':>8}   (CPU: server us/request)"]
    for label, p, r in results:
        ratios = ""
        if (p, "set") in base:
            ratios = f"{r['set'] / base[p, 'set']:>8.2f}{r['get'] / base[p, 'get']:>8.2f}"
        lines.append(f"{label:<22}{p:>4}{r['set']:>12,.0f}{r['get']:>12,.0f}"
                     f"{r['set_cpu_us']:>9.2f}{r['get_cpu_us']:>9.2f}{ratios}")
    # the cost of durability: durable SET / non-durable SET, per server
    got = {(label, p): r for label, p, r in results}
    for durable, plain in (("ringline.kv disk", "ringline.kv none"),
                           ("redis-server always", "redis-server")):
        for label, p, r in results:
            if label == durable and (plain, p) in got:
                cpu = got[plain, p]["set_cpu_us"]     # 0 when under one clock tick
                lines.append(f"{durable} / {plain} SET at -P {p}: "
                             f"{r['set'] / got[plain, p]['set']:.2f}x throughput, " +
                             (f"{r['set_cpu_us'] / cpu:.2f}x" if cpu else "n/a") +
                             " server CPU per request")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ringline.kv.bench", description=__doc__)
    ap.add_argument("-n", type=int, default=200_000, help="requests per test (redis-benchmark -n)")
    ap.add_argument("-c", type=int, default=50, help="connections")
    ap.add_argument("-P", type=int, action="append", help="pipeline depths (default 1 and 16)")
    ap.add_argument("-r", type=int, default=100_000, help="keyspace (redis-benchmark -r; 0: one key)")
    ap.add_argument("--workers", type=int, default=1, help="ringline.kv shards")
    ap.add_argument("--policy", action="append", choices=["none", "disk"],
                    help="ringline.kv ack policies to run (default none and disk)")
    ap.add_argument("--backend", choices=["io_uring", "poll"], help="RINGLINE_BACKEND")
    ap.add_argument("--no-redis", action="store_true", help="skip redis-server")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds (interleaving the servers); medians are reported")
    a = ap.parse_args(argv)
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark is not installed", file=sys.stderr)
        return 1
    res = run(a.n, a.c, a.P or (1, 16), a.workers, a.policy or ("none", "disk"), a.r,
              a.backend, not a.no_redis, a.repeat)
    print(f"redis-benchmark -t set, -t get -n {a.n} -c {a.c} -r {a.r}; median of {a.repeat} "
          f"interleaved rounds; ringline.kv --workers "
          f"{a.workers}; backend {a.backend or os.environ.get('RINGLINE_BACKEND', 'default')}; "
          f"Python {sys.version.split()[0]}; {os.cpu_count()} cpus")
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
