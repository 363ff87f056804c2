"""Client workloads: ringline's Redis and memcached clients against their peers.

Owns: the client section of ``ringline bench``: its configuration
(:class:`ClientConfig`, :data:`CLIENT_PRESETS`), the plan of cells and its
time estimate, :func:`run_client_section` (servers up, workers up, every
cell's interleaved rounds, everything stopped), which produces the
``clients`` part of the results document, and the ratios and error list
read from that document.  The parts it drives, one module a job:

====================  =========================================================
``clients_drivers``   the registry (server kinds, drivers, cells) and the
                      driver classes: how each library connects, GETs, SETs
                      and runs a batch
``clients_worker``    the worker process that runs one driver
                      (``python -m ringline.bench.clients --worker NAME``)
``clients_procs``     the backing servers (redis-server, memcached) and the
                      harness's end of a worker's pipe
====================  =========================================================

Lifecycle: :func:`run_client_section` starts one backing server per kind
and one worker per driver, runs the cells in order (reporting the document
after each one through ``on_cell``) and stops every process on the way out,
errors included.

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
   the window opens (and closes at its end, or at the first completion if
   none came before: a stalled machine, not a measurement): completed
   operations are counted, each one's latency
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

import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .clients_drivers import ALL_OPS, DEFAULT_SIZES, DRIVERS, KINDS, ClientCell
from .clients_procs import BackingServer, ClientBenchError, WorkerProcess
from .summary import median_min_max, median_of, one_line_error


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


def summarize_client_rounds(rounds: list[dict]) -> dict | None:
    ok = [r for r in rounds if r.get("status") == "ok"]
    if not ok:
        return None

    lat = [r["lat_us"] for r in ok]
    return {"rounds_ok": len(ok), "ops_per_s": median_min_max([r["ops_per_s"] for r in ok]),
            "cpu_s_per_mop": median_of(ok, "cpu_s_per_mop"),
            "cpu_util": median_of(ok, "cpu_util"),
            "server_cpu_s_per_mop": median_of(ok, "server_cpu_s_per_mop"),
            "p50_us": median_of(lat, "p50"), "p99_us": median_of(lat, "p99"),
            "p999_us": median_of(lat, "p999")}


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
            entry.update(available=False, error=one_line_error(str(exc)), detail=str(exc))
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
                self.doc["servers"][kind] = {"kind": kind, "error": one_line_error(str(exc))}
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
        entry.update(status="error", error=one_line_error(message), detail=message)
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
                    rec = {"round": round_no, "status": "error",
                           "error": one_line_error(str(exc)), "detail": str(exc)}
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


if __name__ == "__main__":
    # ``python -m ringline.bench.clients --worker NAME``: the worker process
    from .clients_worker import main

    sys.exit(main())
