"""The benchmark harness, end to end, without judging any timing.

* Every registered server answers correctly on every loop: byte-exact echo
  (small and multi-segment messages) or a well-framed HTTP/1.1 200 response
  on a kept-alive connection, checked by a plain-socket client here and by
  the C load generator in ``--verify`` mode with a bounded request count.
* The generator catches wrong answers (corrupted echo, bad HTTP status), and
  agrees with the C echo server.
* A small harness run through the real command line writes results.json with
  every round of every loop and a chart.png, and prints the table.

Servers listen on 127.0.0.1 on ephemeral ports and are stopped at the end of
each test.  The ringline cases fail, rather than skip, while the loop lacks
what a server needs. What needs the bench extra (uvloop, httptools for the
HTTP workload, matplotlib for the chart) is skipped, with that reason, when
only the test extra is installed.
"""
import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest

from ringline.bench.loadgen import LoadSpec, echo_server_path, loadgen_path, run_loadgen
from ringline.bench.procs import ServerProcess
from ringline.bench.servers import HTTP_BODY, WORKLOADS, load_plugins

from support.answering import AnsweringServer

load_plugins()

LOOPS = ["asyncio", "uvloop", "ringline"]
ECHO_PAYLOADS = [b"x", bytes(range(256)) * 4, os.urandom(100 * 1024),
                 os.urandom(1 << 20)]
UDP_PAYLOADS = [b"x", os.urandom(1000), os.urandom(60000)]
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
REQUESTS_PER_CONN = 40


@pytest.fixture(scope="module", autouse=True)
def native_tools():
    return loadgen_path(), echo_server_path()


BENCH_EXTRA = "in the bench extra: pip install -e '.[test,bench]'"


def _need(module, what):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} ({what}) is not installed; it is {BENCH_EXTRA}")


@pytest.fixture(params=LOOPS)
def loop_name(request):
    if request.param == "uvloop":
        _need("uvloop", "the uvloop peer")
    return request.param


@pytest.fixture(params=list(WORKLOADS))
def server(request, loop_name):
    if not WORKLOADS[request.param].supports_loop(loop_name):
        pytest.skip(f"workload {request.param} runs only on {WORKLOADS[request.param].loops}")
    if WORKLOADS[request.param].mode == "http":
        _need("httptools", "the HTTP workload's parser")
    """A not-yet-started server; the test starts it (a start failure is a failure)."""
    proc = ServerProcess.python(loop_name, request.param)
    try:
        yield proc, WORKLOADS[request.param]
    finally:
        proc.close()
    assert not proc.alive()


def _recv_exactly(sock, n):
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise AssertionError(f"connection closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_http_responses(sock, count):
    """Parse ``count`` responses with httptools; returns [(status, headers, body)]."""
    import httptools

    done = []

    class Collector:
        def on_message_begin(self):
            self.headers, self.body = {}, b""

        def on_header(self, name, value):
            self.headers[name.decode().lower()] = value.decode()

        def on_body(self, body):
            self.body += body

        def on_message_complete(self):
            done.append((parser.get_status_code(), self.headers, self.body))

    collector = Collector()
    parser = httptools.HttpResponseParser(collector)
    while len(done) < count:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"closed after {len(done)} of {count} responses")
        parser.feed_data(data)
    return done


def _check_echo(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as a, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as b:
        for payload in ECHO_PAYLOADS:
            for conn in (a, b):
                conn.sendall(payload)
                assert _recv_exactly(conn, len(payload)) == payload


def _check_http(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(HTTP_REQUEST)
        first = _read_http_responses(conn, 1)
        conn.sendall(HTTP_REQUEST * 3)  # kept alive, then pipelined
        rest = _read_http_responses(conn, 3)
        for status, headers, body in first + rest:
            assert status == 200
            assert headers["content-length"] == str(len(HTTP_BODY))
            assert body == HTTP_BODY
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        [(status, _, body)] = _read_http_responses(conn, 1)
        assert status == 200 and body == HTTP_BODY
        assert conn.recv(1) == b""  # the server honours Connection: close


def _check_udp(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as conn:
        conn.settimeout(5)
        conn.connect(("127.0.0.1", port))
        for payload in UDP_PAYLOADS:
            conn.send(payload)
            assert conn.recv(65536) == payload


def _bounded_load(mode, port, conns, size, engine=None):
    report = run_loadgen(LoadSpec(mode=mode, port=port, conns=conns, size=size,
                                  duration=15, warmup=0, verify=True, engine=engine,
                                  requests=REQUESTS_PER_CONN), timeout=30)
    assert report["errors"] == 0, report
    assert report["requests_total"] == conns * REQUESTS_PER_CONN, report
    return report


def test_server_answers_correctly(server):
    proc, workload = server
    proc.start(timeout=20)
    {"echo": _check_echo, "http": _check_http, "udp": _check_udp}[workload.mode](proc.port)
    if workload.mode == "http":
        _bounded_load("http", proc.port, 4, None)
    else:
        _bounded_load(workload.mode, proc.port, 4, 1000)
        _bounded_load(workload.mode, proc.port, 2,
                      60000 if workload.mode == "udp" else 100 * 1024)
    assert proc.alive(), proc.describe_death()


@pytest.mark.parametrize("engine", ["epoll", "uring"])
@pytest.mark.parametrize("mode", ["echo", "http", "udp"])
def test_generator_against_c_server(mode, engine):
    with ServerProcess.c_echo(mode) as proc:
        proc.start()
        report = _bounded_load(mode, proc.port, 8, None if mode == "http" else 4096,
                               engine=engine)
        assert report["engine"] == engine
        if mode != "http":  # messages that need several sends and receives
            _bounded_load(mode, proc.port, 2, 60000 if mode == "udp" else 300 * 1024,
                          engine=engine)
        assert report["lat_us"]["p50"] > 0
        assert report["lat_us"]["p50"] <= report["lat_us"]["p99"] <= report["lat_us"]["max"]


@pytest.mark.parametrize("mode,verify,answer,kind", [
    ("echo", True, lambda d: d[:-1] + bytes([d[-1] ^ 0xFF]), "mismatch"),
    ("echo", False, lambda d: d + b"!", "extra_bytes"),
    ("http", False, lambda d: b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", "http"),
    ("http", False, lambda d: b"HTTP/1.1 200 OK\r\n\r\n", "http"),
], ids=["corrupt-echo", "extra-echo", "http-500", "http-unframed"])
def test_generator_detects_wrong_answers(mode, verify, answer, kind):
    bad = AnsweringServer(answer)
    try:
        report = run_loadgen(LoadSpec(mode=mode, port=bad.port, conns=2, size=100,
                                      duration=5, verify=verify, requests=5), timeout=20)
    finally:
        bad.close()
    assert report["errors"] == 2, report
    assert report["error_kinds"].get(kind) == 2, report


# ---- the harness through its command line ---------------------------------

HARNESS_ROUNDS = 2
HARNESS_WORKLOADS = ["protocol", "http"]


@pytest.fixture(scope="module")
def harness_run(tmp_path_factory):
    for module, what in [("uvloop", "the uvloop peer"),
                         ("httptools", "the HTTP workload's parser"),
                         ("matplotlib", "the chart")]:
        _need(module, what)
    out = tmp_path_factory.mktemp("bench-out")
    argv = [sys.executable, "-m", "ringline.bench", "--loops", ",".join(LOOPS),
            "--workloads", ",".join(HARNESS_WORKLOADS), "--conns", "2", "--sizes", "64",
            "--rounds", str(HARNESS_ROUNDS), "--duration", "0.2", "--warmup", "0.1",
            "--lead-in", "0", "--micro-rounds", "1", "--micro-time", "0.005",
            "--verify", "--out", str(out), "--quiet"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    return proc, out, results


def test_harness_writes_outputs(harness_run):
    proc, out, results = harness_run
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| workload"))
    for loop in LOOPS:
        assert f"{loop} req/s" in header
    assert "ringline/uvloop" in header and "ringline/asyncio" in header
    assert results["machine"]["cpu_model"] and results["machine"]["kernel"]
    assert results["machine"]["packages"]["uvloop"]


def test_results_json_holds_every_round(harness_run):
    _, _, results = harness_run
    assert [c["workload"] for c in results["cells"]] == HARNESS_WORKLOADS
    for cell in results["cells"]:
        assert set(cell["loops"]) == set(LOOPS)
        for loop, entry in cell["loops"].items():
            assert [r["round"] for r in entry["rounds"]] == list(range(HARNESS_ROUNDS)), \
                (cell["key"], loop)
    for loop in LOOPS:
        assert len(results["micro"]["loops"][loop]["rounds"]) == 1


def test_harness_rounds_succeed(harness_run, loop_name):
    _, _, results = harness_run
    assert results["loops"][loop_name]["available"], results["loops"][loop_name]
    for cell in results["cells"]:
        entry = cell["loops"][loop_name]
        for r in entry["rounds"]:
            assert r["status"] == "ok", (cell["key"], r.get("error"))
            assert r["requests"] > 0 and r["errors"] == 0
            assert r["server_cpu_s"] >= 0 and r["cpu_s_per_mreq"] is not None
    micro = results["micro"]["loops"][loop_name]["rounds"][0]
    assert micro["status"] == "ok" and not micro["errors"], micro


@pytest.mark.parametrize("loop", ["asyncio", "ringline"])
def test_server_with_stdin_reader_ends_with_its_stdin(loop):
    # The instruction-count tool (bench/instr.py) runs servers under valgrind
    # with --stdin-reader: the loop itself must see the end of stdin and
    # stop, after answering, with no other wake-up (no thread, no poke).
    proc = ServerProcess.python(loop, "protocol")
    proc.argv.append("--stdin-reader")
    try:
        proc.start()
        with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as c:
            c.sendall(b"x" * 100)
            assert _recv_exactly(c, 100) == b"x" * 100
        proc.proc.stdin.close()
        assert proc.proc.wait(timeout=10) == 0
    finally:
        proc.close()
