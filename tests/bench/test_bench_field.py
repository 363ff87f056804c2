"""The field pieces of the benchmark harness (issue 20), without judging timing.

* Loop specs: ``--loops field`` expands to asyncio, uvloop, the installed
  field loops and ringline, in that order and without duplicates; a spec's
  environment is applied (and unset) before its module is imported; the C
  reference names resolve per mode; ``--python`` re-runs the same command
  under another interpreter.
* Failures are footnotes, never crashes: a loop that cannot be created, and
  a server that answers with wrong bytes of the right length (caught by the
  verified warm-up), each become an error for their cells, with every
  planned round recorded, while the other loops and the C reference are
  measured in the same run.
* The C io_uring reference server answers correctly: byte-exact echo of
  small and multi-buffer messages on several connections, HTTP responses
  (pipelined too), the generator's verified bounded load, and it exits when
  its stdin closes.

Servers listen on 127.0.0.1 on ephemeral ports and are stopped by the tests.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ringline.bench.cli import build_parser, config_from_args, reexec_argv
from ringline.bench.loadgen import LoadSpec, run_loadgen, uring_echo_server_path
from ringline.bench.loops import (LOOPS, LoopSpec, expand_loop_names, field_loops,
                                  register_loop)
from ringline.bench.procs import ServerProcess
from ringline.bench.runner import references_for
from support import REPO

PLUGIN_DIR = Path(__file__).with_name("plugins")
SRC = REPO / "src"


# ---- specs ---------------------------------------------------------------------


def test_field_expansion_order_and_dedup():
    installed = field_loops()
    assert expand_loop_names(["field"]) == ["asyncio", "uvloop", *installed, "ringline"]
    # named loops keep their place, the rest of the field follows once
    assert expand_loop_names(["ringline", "field", "asyncio"]) == \
        ["ringline", "asyncio", "uvloop", *installed]
    for name in ("zloop", "zloop-uring", "talyn", "blazio", "rloop", "uringcore"):
        assert LOOPS[name].group == "field"


def test_field_selects_installed_loops_only():
    register_loop(LoopSpec("not-installed-here", "no_such_module_for_ringline:new",
                           group="field"))
    try:
        assert "not-installed-here" in field_loops(installed_only=False)
        assert "not-installed-here" not in field_loops()
        assert "not-installed-here" not in expand_loop_names(["field"])
    finally:
        del LOOPS["not-installed-here"]


def test_cli_loops_field_and_unknown():
    cfg = config_from_args(build_parser().parse_args(["--loops", "field", "--no-pin"]))
    assert cfg.loops == expand_loop_names(["field"])
    assert cfg.references == ["auto"]
    with pytest.raises(SystemExit):
        config_from_args(build_parser().parse_args(["--loops", "nosuchloop"]))
    with pytest.raises(SystemExit):
        config_from_args(build_parser().parse_args(["--references", "c-nothing"]))


def test_spec_environment_set_and_unset(monkeypatch):
    monkeypatch.setenv("ZLOOP_IO_URING", "completion")
    LOOPS["zloop"].apply_env()
    assert "ZLOOP_IO_URING" not in os.environ
    LOOPS["zloop-uring"].apply_env()
    assert os.environ["ZLOOP_IO_URING"] == "completion"


def test_references_per_mode():
    assert references_for(["auto"], "echo") == ["c-uring"]
    assert references_for(["auto"], "http") == ["c-uring"]
    assert references_for(["auto"], "udp") == ["c-epoll"]
    assert references_for(["c-uring", "c-epoll"], "udp") == ["c-epoll"]
    assert references_for(["none"], "echo") == []
    with pytest.raises(ValueError):
        references_for(["c-rust"], "echo")


def test_python_option_reexecs_the_same_command():
    argv = ["--quick", "--python", "/x/python3.13", "--loops", "field", "--python=/y"]
    assert reexec_argv("/x/python3.13", argv) == \
        ["/x/python3.13", "-m", "ringline.bench", "--quick", "--loops", "field"]


# ---- failures are footnotes ----------------------------------------------------


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("field-failures")
    env = dict(os.environ)
    env["RINGLINE_BENCH_PLUGINS"] = "bench_field_plugin"
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(PLUGIN_DIR),
                                         env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "ringline.bench", "--workloads", "protocol,liar",
            "--loops", "asyncio,broken", "--conns", "4", "--sizes", "1K",
            "--rounds", "2", "--duration", "0.2", "--warmup", "0.2", "--lead-in", "0",
            "--no-micro", "--no-chart", "--quiet", "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=110)
    results = json.loads((out / "results.json").read_text())
    return proc, results


def test_failing_loop_is_a_footnote(failing_run):
    proc, results = failing_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not results["loops"]["broken"]["available"]
    assert "cannot be created" in results["loops"]["broken"]["error"]
    for cell in results["cells"]:
        entry = cell["loops"]["broken"]
        assert entry["status"] == "error"
        assert [r["round"] for r in entry["rounds"]] == [0, 1]
    table = proc.stdout
    assert "error[" in table and "loop unavailable" in table


def test_wrong_answers_are_a_footnote(failing_run):
    proc, results = failing_run
    liar = next(c for c in results["cells"] if c["workload"] == "liar")
    entry = liar["loops"]["asyncio"]
    assert entry["status"] == "error"
    assert "wrong answers" in entry["error"] and "mismatch" in entry["error"]
    assert [r["round"] for r in entry["rounds"]] == [0, 1]
    assert all(r["status"] == "error" for r in entry["rounds"])
    assert "liar/c4/1KiB on asyncio: wrong answers" in proc.stdout


def test_correct_loop_and_reference_measured_beside_failures(failing_run):
    proc, results = failing_run
    proto = next(c for c in results["cells"] if c["workload"] == "protocol")
    entry = proto["loops"]["asyncio"]
    assert entry["status"] == "ok" and entry["warmup"]["status"] == "ok"
    assert all(r["status"] == "ok" for r in entry["rounds"])
    ref = proto["references"]["c-uring"]
    assert ref["status"] == "ok" and len(ref["rounds"]) == 2
    assert proto["c_reference"]["name"] == "c-uring"
    assert proto["c_reference"]["relative"]["asyncio"] > 0
    assert "C reference req/s" in proc.stdout and "(vs C)" in proc.stdout


# ---- the C io_uring reference server -------------------------------------------


def _recv_exactly(sock, n):
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        assert chunk, f"closed after {got} of {n} bytes"
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


@pytest.fixture
def uring_server(request):
    proc = ServerProcess.c_echo(request.param, engine="uring")
    assert Path(proc.argv[0]) == uring_echo_server_path()
    try:
        proc.start()
        yield proc
    finally:
        proc.close()


@pytest.mark.parametrize("uring_server", ["echo"], indirect=True)
def test_uring_server_echoes_exactly(uring_server):
    payloads = [b"x", bytes(range(256)) * 4, os.urandom(100 * 1024), os.urandom(1 << 20)]
    conns = [socket.create_connection(("127.0.0.1", uring_server.port), timeout=10)
             for _ in range(3)]
    try:
        for payload in payloads:
            for i, conn in enumerate(conns):
                data = bytes([i]) + payload
                conn.sendall(data)
            for i, conn in enumerate(conns):
                assert _recv_exactly(conn, len(payload) + 1) == bytes([i]) + payload
    finally:
        for conn in conns:
            conn.close()
    report = run_loadgen(LoadSpec(mode="echo", port=uring_server.port, conns=20,
                                  size=1024, duration=15, verify=True, requests=200),
                         timeout=30)
    assert report["errors"] == 0 and report["requests_total"] == 20 * 200


@pytest.mark.parametrize("uring_server", ["http"], indirect=True)
def test_uring_server_answers_http(uring_server):
    request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(("127.0.0.1", uring_server.port), timeout=10) as conn:
        conn.sendall(request * 3)  # pipelined
        body = b""
        while body.count(b"Hello, World!") < 3:
            chunk = conn.recv(65536)
            assert chunk
            body += chunk
        assert body.count(b"HTTP/1.1 200 OK\r\n") == 3
    report = run_loadgen(LoadSpec(mode="http", port=uring_server.port, conns=10, size=None,
                                  duration=15, requests=100), timeout=30)
    assert report["errors"] == 0 and report["requests_total"] == 1000


@pytest.mark.parametrize("uring_server", ["echo"], indirect=True)
def test_uring_server_exits_when_stdin_closes(uring_server):
    uring_server.proc.stdin.close()
    assert uring_server.proc.wait(timeout=10) == 0
