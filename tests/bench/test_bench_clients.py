"""The client workloads of ``ringline bench``, end to end, without judging timing.

* Every driver (ringline's Redis and memcached clients, and the peers that
  are installed: redis-py, aiomcache, emcache) runs each of its loads for a
  very short session in its real worker process against a real redis-server
  or memcached started by the harness: positive operation count, no error,
  GETs return the preloaded value, SETs store the value (read back over a
  plain socket), and a value changed behind the driver's back is caught.
* ``ringline bench --clients`` through the real command line writes
  results.json with every round of every driver and prints the client tables.
* The quick preset's client section is planned to stay under four minutes.

The ringline drivers fail, rather than skip, when their client is missing;
a peer whose package is not installed is skipped.
"""
import importlib.util
import json
import socket
import subprocess
import sys

import pytest

from ringline.bench.clients import (CLIENT_PRESETS, ClientConfig, plan_client_cells,
                                    planned_seconds)
from ringline.bench.clients_drivers import DRIVERS, KINDS, ClientCell, keys_for, value_for
from ringline.bench.clients_procs import BackingServer, WorkerProcess
from support import free_port

pytestmark = pytest.mark.timeout(120)

_PEER_MODULES = {"redis-py": "redis", "aiomcache": "aiomcache", "emcache": "emcache",
                 "emcache-autobatch": "emcache"}
SESSION = dict(duration=0.15, lead_in=0.0, verify=True)


def _installed(name: str) -> bool:
    module = _PEER_MODULES.get(name)
    return module is None or importlib.util.find_spec(module) is not None


AVAILABLE = [name for name in DRIVERS if _installed(name)]
# the peers ringline's clients are compared with (in the bench extra); with
# only the test extra installed there are none, and no ratios
PEERS = [name for name in AVAILABLE if not DRIVERS[name].subject]


@pytest.fixture(scope="module")
def servers():
    missing = [k for k in KINDS if BackingServer.binary(k) is None]
    if missing:
        pytest.skip(f"server binaries missing: {missing}")
    started = {}
    try:
        for kind in KINDS:
            started[kind] = BackingServer(kind).start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def _raw(port: int, payload: bytes, done) -> bytes:
    """Send payload on a new connection; read until done(data) is true."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        data = b""
        while not done(data):
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {data!r:.200}")
            data += chunk
        return data


def _redis_bulk_done(data: bytes) -> bool:
    if b"\r\n" not in data:
        return False
    header = data.split(b"\r\n", 1)[0]
    if not header.startswith(b"$") or header == b"$-1":
        return True
    return len(data) >= len(header) + 2 + int(header[1:]) + 2


def _raw_get(kind: str, port: int, key: bytes) -> bytes | None:
    if kind == "redis":
        reply = _raw(port, b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key),
                     _redis_bulk_done)
        header, rest = reply.split(b"\r\n", 1)
        assert header.startswith(b"$"), reply
        return None if header == b"$-1" else rest[:int(header[1:])]
    reply = _raw(port, b"get " + key + b"\r\n", lambda d: d.endswith(b"END\r\n"))
    if reply == b"END\r\n":
        return None
    header, rest = reply.split(b"\r\n", 1)
    return rest[:int(header.split()[3])]


def _raw_set(kind: str, port: int, key: bytes, value: bytes) -> None:
    if kind == "redis":
        cmd = b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key,
                                                                len(value), value)
        assert _raw(port, cmd, lambda d: d.endswith(b"\r\n")) == b"+OK\r\n"
    else:
        cmd = b"set %b 0 0 %d\r\n%b\r\n" % (key, len(value), value)
        assert _raw(port, cmd, lambda d: d.endswith(b"\r\n")) == b"STORED\r\n"


def _loads(name: str) -> list[ClientCell]:
    spec = DRIVERS[name]
    kind = KINDS[spec.kind]
    cells = []
    for op in ("get", "set"):
        for tasks, batch in ((1, None), (4, None), (1, 100)):
            if batch and op not in kind.batch_ops:
                continue
            cell = ClientCell(spec.kind, op, 64, tasks, batch)
            if spec.applies(cell):
                cells.append(cell)
    return cells


@pytest.mark.parametrize("name", list(DRIVERS))
def test_driver_runs_and_is_correct(servers, name):
    if not _installed(name):
        pytest.skip(f"{name} is not installed")
    spec = DRIVERS[name]
    server = servers[spec.kind]
    worker = WorkerProcess(name)
    try:
        hello = worker.start()
        assert hello["loop"] == spec.loop
        for cell in _loads(name):
            size = 1024 if cell.tasks == 4 else 64  # both sizes, cheaply
            what = f"{name} {cell.key}"
            worker.request("setup", 30, host="127.0.0.1", port=server.port, op=cell.op,
                           size=size, tasks=cell.tasks, batch=cell.batch)
            if cell.op == "set":
                # a SET session must leave the preloaded value in place
                _raw_set(spec.kind, server.port, keys_for(size)[0], b"stale")
            r = worker.request("run", 30, **SESSION)
            assert r["errors"] == 0, (what, r["first_error"])
            assert r["ops"] > 0 and r["ops_per_s"] > 0, (what, r)
            assert r["cpu_s"] > 0, (what, r)
            assert r["lat_us"]["p50"] > 0, (what, r)
            if cell.batch:
                assert r["ops"] % cell.batch == 0, (what, r)
            key = keys_for(size)[0]
            assert _raw_get(spec.kind, server.port, key) == value_for(size), what
            worker.request("teardown", 30)

        # a wrong value is an error of the session, not a silent success
        for get_cell in [c for c in _loads(name) if c.op == "get"][::2]:
            worker.request("setup", 30, host="127.0.0.1", port=server.port, op="get",
                           size=64, tasks=get_cell.tasks, batch=get_cell.batch)
            for key in keys_for(64):
                _raw_set(spec.kind, server.port, key, b"x" * 64)
            r = worker.request("run", 30, **SESSION)
            assert r["errors"] > 0 and r["first_error"], (get_cell.key, r)
            worker.request("teardown", 30)
    finally:
        worker.stop()
    assert not worker.alive()


def test_connect_failure_is_reported(servers):
    """A driver that cannot connect fails its setup with a readable error."""
    worker = WorkerProcess("ringline-redis")
    try:
        worker.start()
        port = free_port()
        with pytest.raises(Exception) as info:
            worker.request("setup", 30, host="127.0.0.1", port=port, op="get", size=64,
                           tasks=1, batch=None)
        assert "ringline-redis" in str(info.value)
        assert worker.alive()  # the worker survives and takes the next command
        reply = worker.request("setup", 30, host="127.0.0.1", port=servers["redis"].port,
                               op="get", size=64, tasks=1, batch=None)
        assert reply["ok"]
    finally:
        worker.stop()


def test_quick_preset_plan():
    cfg = ClientConfig(**CLIENT_PRESETS["quick"])
    cells, skipped = plan_client_cells(cfg)
    keys = {c.key for c in cells}
    for op in ("get", "set"):
        for size in (64, 1024):
            assert f"redis/{op}/{size}B/t1" in keys and f"redis/{op}/{size}B/t50" in keys
            assert f"redis/{op}/{size}B/p100" in keys
            assert f"memcache/{op}/{size}B/t1" in keys
            assert f"memcache/{op}/{size}B/t32" in keys
        assert f"memcache/get/{size}B/p100" in keys
    assert "memcache/set/64B/p100" not in keys and skipped
    assert planned_seconds(cfg) < 250


# ---- the command line ---------------------------------------------------------

CLI_ROUNDS = 2


@pytest.fixture(scope="module")
def clients_run(tmp_path_factory, servers):
    out = tmp_path_factory.mktemp("bench-clients")
    argv = [sys.executable, "-m", "ringline.bench", "--clients",
            "--client-drivers", ",".join(AVAILABLE), "--client-ops", "get",
            "--client-sizes", "64", "--rounds", str(CLI_ROUNDS), "--duration", "0.15",
            "--warmup", "0.05", "--lead-in", "0", "--out", str(out), "--quiet", "--strict"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return proc, json.loads((out / "results.json").read_text())


def test_clients_cli_prints_tables(clients_run):
    proc, _ = clients_run
    assert "### Client throughput (ops/s)" in proc.stdout
    assert "### Client CPU per million ops" in proc.stdout
    assert "ringline/redis-py" in proc.stdout or "redis-py" not in AVAILABLE
    assert ("Client ratios" in proc.stdout) == bool(PEERS)


def test_clients_results_json(clients_run):
    _, results = clients_run
    assert results["cells"] == [] and results["micro"] is None
    clients = results["clients"]
    assert clients["config"]["rounds"] == CLI_ROUNDS
    assert clients["config"]["ops"] == ["get"]
    assert set(clients["servers"]) == {"redis", "memcache"}
    for kind, info in clients["servers"].items():
        assert info["version"] and info["port"], info
    for name in AVAILABLE:
        assert clients["drivers"][name]["available"], clients["drivers"][name]
    seen = set()
    assert clients["cells"], clients
    for cell in clients["cells"]:
        assert cell["op"] == "get" and cell["size"] == 64
        for name, entry in cell["drivers"].items():
            seen.add(name)
            assert DRIVERS[name].kind == cell["kind"]
            assert [r["round"] for r in entry["rounds"]] == list(range(CLI_ROUNDS))
            assert entry["status"] == "ok", (cell["key"], name, entry.get("error"))
            for r in entry["rounds"]:
                assert r["status"] == "ok" and r["ops"] > 0 and r["errors"] == 0
                assert r["cpu_s_per_mop"] > 0 and r["server_cpu_s"] >= 0
            assert entry["summary"]["ops_per_s"]["median"] > 0
            assert entry["warmup"]["status"] == "ok"
    assert seen == set(AVAILABLE)
    ratios = clients["ratios"]
    assert bool(ratios) == bool(PEERS)
    assert all(r["ratio"] and r["ratio"] > 0 for r in ratios)
    assert {r["peer"] for r in ratios} == set(PEERS)
    for target in clients["targets"]:
        assert target["tasks"] == KINDS[target["kind"]].target_tasks
        assert 0 <= target["met"] <= target["cells"]


def test_server_death_is_recorded_not_raised():
    """memcached killed after the first cell: the next cell's rounds are errors."""
    if BackingServer.binary("memcache") is None:
        pytest.skip("memcached missing")
    import os
    import signal

    from ringline.bench.clients import count_client_errors, run_client_section

    cfg = ClientConfig(drivers=["ringline-memcache"], ops=["get"], sizes=[64], pipeline=0,
                       rounds=2, duration=0.1, warmup=0.05, lead_in=0.0)
    killed = []

    def after_cell(doc):
        if not killed:
            os.kill(doc["servers"]["memcache"]["pid"], signal.SIGKILL)
            killed.append(True)

    doc = run_client_section(cfg, on_cell=after_cell)
    first, second = doc["cells"]
    assert first["drivers"]["ringline-memcache"]["status"] == "ok"
    entry = second["drivers"]["ringline-memcache"]
    assert entry["status"] == "error" and entry["error"]
    assert [r["round"] for r in entry["rounds"]] == [0, 1]
    assert all(r["status"] == "error" for r in entry["rounds"])
    assert count_client_errors(doc)
