"""The thread-per-core runtime (ringline.serve / launch / Handler / Config)
on the backend RINGLINE_BACKEND selects (workers inherit it).

Servers listen on 127.0.0.1 with port 0 (or a free port for `serve` in a
child process). Tests that need signals or a process tree of their own run
their program in a subprocess; every process a test starts is shut down or
killed in a finally block, and every wait is bounded."""
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ringline
from ringline._runtime.config import Config
from ringline._errors import ConfigError
from ringline._runtime.handler import Handler
from ringline._runtime.launch import launch
from support import DOCS, free_port, run
from support.conn import read_exactly

DOC = os.path.join(DOCS, "runtime.md")


def run_script(tmp_path, code, timeout=40, **popen):
    path = tmp_path / "prog.py"
    path.write_text(textwrap.dedent(code))
    return subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def finish(proc, timeout=30):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        out, err = proc.communicate()
        pytest.fail(f"child did not finish in {timeout} s\n{err[-3000:]}")
    return out, err


def _descendants(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        return []
    return kids + [d for k in kids for d in _descendants(k)]


def kill_tree(proc):
    """SIGKILL a child and whatever it forked (workers are its children, or
    its grandchildren under launch(), whose supervisor is a process)."""
    if proc.poll() is not None:
        return
    for pid in [proc.pid, *_descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def launched(handler, bind=("127.0.0.1", 0), **cfg):
    cfg.setdefault("max_connections", 256)
    rt = launch(handler, bind, Config(**cfg))
    try:
        yield rt
    finally:
        pids = [p for p in rt.workers if p]
        rt.shutdown(0)
        if not rt.join(15):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            rt.join(5)
        for pid in pids:   # reaped by the supervisor: gone for good
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def line_client(port, timeout=5):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def recv_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"EOF after {data!r}")
        data += chunk
    return data


# ---------------------------------------------------------------------------
# 1. echo, length-prefixed protocol, spreading over workers


class MultiProto(Handler):
    """First byte picks the protocol: b"e" echo (b"o": echo with on_data),
    b"l" length-prefixed frames
    (reply: frame of b"<worker id>|" + payload), b"w" worker id and close."""

    async def on_accept(self, conn):
        wid = self.worker.worker_id
        kind = bytearray()

        def first(view):
            kind.extend(view[:1])
            return 1
        if not await conn.with_data(first):
            return
        if kind == b"w":
            conn.send_nowait(b"%d\n" % wid)
            return
        if kind == b"e" or kind == b"o":
            def echo(view):
                conn.send_nowait(bytes(view))
                return len(view)
            if kind == b"o":                 # the callback form: no task switch per message
                await conn.on_data(echo)
                return
            while await conn.with_data(echo):
                pass
            return
        prefix = b"%d|" % wid

        def frame(view):
            if len(view) < 4:
                return ringline.need_at_least(4)
            (n,) = struct.unpack_from(">I", view)
            if len(view) < 4 + n:
                return ringline.need_at_least(4 + n)
            payload = prefix + bytes(view[4:4 + n])
            conn.send_nowait(struct.pack(">I", len(payload)) + payload)
            return 4 + n
        while await conn.with_data(frame):
            pass


async def _exercise(port, nconn):
    addr = ("127.0.0.1", port)
    # echo (with_data loop and on_data), sizes from 1 byte to several
    # receive buffers
    for kind in (b"e", b"o"):
        conn = await ringline.connect(addr, timeout=5)
        conn.send_nowait(kind)
        for size in (1, 1000, 300_000):
            blob = os.urandom(size)
            conn.send_nowait(blob)
            assert await read_exactly(conn, size) == blob
        conn.close()
    # length-prefixed frames: pipelined and split across writes
    conn = await ringline.connect(f"127.0.0.1:{port}", timeout=5)
    payloads = [os.urandom(n) for n in (0, 1, 5, 4096, 70_000)]
    conn.send_nowait(b"l" + b"".join(struct.pack(">I", len(p)) + p for p in payloads))
    split = struct.pack(">I", 10) + b"0123456789"
    conn.send_nowait(split[:3])
    await conn.send(split[3:7])
    await asyncio.sleep(0.02)
    conn.send_nowait(split[7:])
    ids = set()
    for p in payloads + [b"0123456789"]:
        (n,) = struct.unpack(">I", await read_exactly(conn, 4))
        wid, _, body = (await read_exactly(conn, n)).partition(b"|")
        assert body == p
        ids.add(int(wid))
    conn.close()

    async def who():
        c = await ringline.connect(addr, timeout=5)
        c.send_nowait(b"w")
        line = await read_exactly(c, 2)
        c.close()
        return int(line)
    ids.update(await asyncio.gather(*[who() for _ in range(nconn)]))
    return ids


@pytest.mark.parametrize("distribution", ["reuseport", "acceptor"])
@pytest.mark.parametrize("workers", [1, 2])
def test_echo_and_length_prefixed_spread_over_workers(workers, distribution):
    with launched(MultiProto, workers=workers, distribution=distribution) as rt:
        assert rt.port and rt.address == ("127.0.0.1", rt.port)
        assert len(rt.workers) == workers and all(rt.workers)
        ids = run(_exercise(rt.port, 40))
        assert ids == set(range(workers))


@pytest.mark.parametrize("distribution", ["reuseport", "acceptor"])
def test_unix_path_bind(tmp_path, distribution):
    path = str(tmp_path / "rl.sock")
    with launched(MultiProto, bind=path, workers=2, distribution=distribution) as rt:
        assert rt.address == path and rt.port is None

        async def client():
            conn = await ringline.connect_unix(path, timeout=5)
            conn.send_nowait(b"e" + b"x" * 5000)
            data = await read_exactly(conn, 5000)
            conn.close()
            return data
        assert run(client()) == b"x" * 5000
    assert not os.path.exists(path)


# ---------------------------------------------------------------------------
# 2. Config validation


BAD_VALUES = [
    ("workers", 0), ("workers", "2"), ("workers", True),
    ("pin_to_core", 1), ("sq_entries", 100), ("sq_entries", 4), ("sq_entries", 65536),
    ("recv_buffers", 3), ("recv_buffers", 0), ("recv_buffer_size", 10),
    ("max_connections", 0), ("max_connections", 1.5), ("backlog", 0),
    ("distribution", "roundrobin"), ("acceptor_queue", 0),
    ("recv_accumulator_cap", 10), ("max_send_queue", -1), ("send_zc_threshold", 0),
    ("timer_slots", 0), ("tick", 0), ("tick", -1.0), ("tick", "1"),
    ("grace", -1), ("grace", math.nan), ("grace", math.inf),
    ("udp_bind", "127.0.0.1:53"), ("udp_bind", [("127.0.0.1", 70000)]),
    ("udp_bind", [(1, 2)]),
]


@pytest.mark.parametrize("field,value", BAD_VALUES,
                         ids=[f"{f}={v!r}" for f, v in BAD_VALUES])
def test_config_rejects_bad_value_naming_the_field(field, value):
    with pytest.raises(ConfigError) as info:
        Config(**{field: value})
    assert f"Config.{field}" in str(info.value)
    assert isinstance(info.value, ValueError) and ringline.ConfigError is ConfigError


def test_config_defaults_and_frozen():
    cfg = Config()
    assert cfg.workers >= 1 and cfg.sq_entries == 4096 and cfg.distribution == "reuseport"
    assert cfg.grace == 5.0 and cfg.tick is None and cfg.udp_bind == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.workers = 3
    cfg2 = cfg.replace(workers=3, udp_bind=["127.0.0.1:0"], tick=1)
    assert cfg2.workers == 3 and cfg2.udp_bind == (("127.0.0.1", 0),) and cfg2.tick == 1.0
    with pytest.raises(ConfigError, match="Config.sq_entries"):
        cfg.replace(sq_entries=12)


# ---------------------------------------------------------------------------
# 3. respawn and graceful shutdown


RESPAWN = """
import json, os, signal, socket, sys, time
import ringline
from ringline import Config, Handler, launch

class Who(Handler):
    async def on_accept(self, conn):
        conn.send_nowait(b"%d\\n" % self.worker.worker_id)

def ask(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return int(s.recv(16))

rt = launch(Who, ("127.0.0.1", 0), Config(workers=2, distribution=sys.argv[1],
                                           max_connections=64, grace=1))
try:
    before = list(rt.workers)
    os.kill(before[0], signal.SIGKILL)
    until = time.monotonic() + 10
    while rt.workers[0] in (before[0], None) and time.monotonic() < until:
        time.sleep(0.02)
    after = list(rt.workers)
    ids = set()
    until = time.monotonic() + 10
    while ids != {0, 1} and time.monotonic() < until:
        ids.add(ask(rt.port))
    print(json.dumps({"before": before, "after": after, "ids": sorted(ids),
                      "stats": rt.stats(), "codes": rt.exit_codes}), flush=True)
finally:
    rt.shutdown(0)
    rt.join(10)
"""


@pytest.mark.parametrize("distribution", ["reuseport", "acceptor"])
def test_killed_worker_is_replaced_and_serves_again(tmp_path, distribution):
    (tmp_path / "respawn.py").write_text(RESPAWN)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "respawn.py"), distribution],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = finish(proc)
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, err[-3000:]
    res = json.loads(out)
    assert res["after"][0] not in (None, res["before"][0])
    assert res["after"][1] == res["before"][1]
    assert res["ids"] == [0, 1]
    assert res["stats"]["respawns"] == 1 and res["stats"]["deaths"] == 1
    assert "worker 0" in err and "SIGKILL" in err and "respawning" in err


GRACEFUL = """
import asyncio, sys
import ringline
from ringline import Config, Handler, serve

class Slow(Handler):
    async def on_accept(self, conn):
        line = bytearray()
        def take(view):
            i = bytes(view).find(b"\\n")
            if i < 0:
                return 0
            line.extend(view[:i])
            return i + 1
        if not await conn.with_data(take):
            return
        conn.send_nowait(b"started\\n")
        await asyncio.sleep(float(line))
        conn.send_nowait(b"done\\n")

serve(Slow, ("127.0.0.1", int(sys.argv[1])),
      Config(workers=2, grace=float(sys.argv[2]), max_connections=64))
print("serve returned", flush=True)
"""


@pytest.mark.parametrize("distribution", ["reuseport", "acceptor"])
def test_sigterm_graceful_shutdown_within_grace(tmp_path, distribution):
    grace = 2.0
    port = free_port()
    code = GRACEFUL.replace("workers=2,", f"workers=2, distribution={distribution!r},")
    (tmp_path / "graceful.py").write_text(code)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "graceful.py"), str(port),
                             str(grace)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    clients = []
    try:
        until = time.monotonic() + 15
        while True:
            try:
                quick = line_client(port)
                break
            except ConnectionRefusedError:
                assert proc.poll() is None and time.monotonic() < until
                time.sleep(0.05)
        slow = line_client(port)
        clients = [quick, slow]
        quick.sendall(b"0.6\n")
        slow.sendall(b"30\n")
        assert recv_line(quick) == b"started\n"
        assert recv_line(slow) == b"started\n"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert recv_line(quick) == b"done\n"        # finished within the grace
        slow.settimeout(grace + 5)
        assert slow.recv(100) == b""                # cancelled at the grace: closed
        cancelled_after = time.monotonic() - t0
        assert grace - 0.5 <= cancelled_after <= grace + 3
        try:                                        # no longer accepting
            probe = line_client(port, timeout=2)
        except ConnectionRefusedError:
            pass
        else:
            with probe:
                with contextlib.suppress(ConnectionResetError):
                    assert probe.recv(1) == b""
        out, err = finish(proc, timeout=grace + 10)
        elapsed = time.monotonic() - t0
        assert proc.returncode == 0, err[-3000:]
        assert "serve returned" in out
        assert elapsed <= grace + 5
    finally:
        for c in clients:
            c.close()
        kill_tree(proc)


class Broken(Handler):
    @classmethod
    def create_for_worker(cls, worker_id):
        if worker_id == 1:
            raise LookupError("no settings for worker 1")
        return cls()


def _children():
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as f:
        return set(f.read().split())


def test_worker_startup_failure_fails_launch():
    before = _children()
    with pytest.raises(RuntimeError,
                       match="worker 1 failed to start: LookupError: no settings"):
        launch(Broken, ("127.0.0.1", 0), Config(workers=2, max_connections=16))
    assert _children() <= before          # the other worker was reaped too


def test_shutdown_returns_early_when_connections_finish():
    with launched(MultiProto, workers=2, grace=30) as rt:
        with line_client(rt.port) as s:
            s.sendall(b"w")
            assert s.recv(10) in (b"0\n", b"1\n")
        idle = line_client(rt.port)        # an open connection whose task ends at EOF
        try:
            idle.sendall(b"e")
            t0 = time.monotonic()
            rt.shutdown()                  # Config.grace: 30 s
            time.sleep(0.2)
            idle.close()
            assert rt.join(10)
            assert time.monotonic() - t0 < 5
            assert rt.exit_codes == [0, 0]
        finally:
            idle.close()


ORPHAN = """
import os
from ringline import Config, Handler, launch

class Idle(Handler):
    async def on_accept(self, conn):
        await conn.with_data(len)

rt = launch(Idle, ("127.0.0.1", 0), Config(workers=2, grace=1.0, max_connections=16))
print(rt.supervisor_pid, *rt.workers, flush=True)
os._exit(0)      # no shutdown, no atexit hook: the launching process just vanishes
"""


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_launched_runtime_stops_when_its_caller_vanishes(tmp_path):
    # the supervisor is a process of its own under launch(): EOF on its link
    # to the caller makes it shut the workers down gracefully and exit
    proc = run_script(tmp_path, ORPHAN)
    out, err = finish(proc)
    pids = [int(p) for p in out.split()]
    try:
        assert proc.returncode == 0 and len(pids) == 3, out + err[-3000:]
        deadline = time.monotonic() + 30
        while not all(map(_gone, pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(map(_gone, pids)), [p for p in pids if not _gone(p)]
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------
# 4. on_start (client-only), on_tick, on_udp_bind


class Client(Handler):
    """bind=None: on_start is the program. Reports to a plain TCP collector."""

    ticks = 0

    def on_tick(self, ctx):
        assert ctx.worker_id == self.worker.worker_id and ctx.now() > 0
        self.ticks += 1

    async def on_start(self):
        port = int(os.environ["RL_TEST_COLLECTOR"])
        await asyncio.sleep(0.4)     # idle: ticks come from Config.tick
        conn = await ringline.connect(("127.0.0.1", port), timeout=5)
        report = {"id": self.worker.worker_id, "ticks": self.ticks,
                  "cpu": self.worker.cpu, "affinity": sorted(os.sched_getaffinity(0)),
                  "pid": os.getpid()}
        await conn.send(json.dumps(report).encode() + b"\n")
        conn.close()


def test_on_start_per_worker_client_only_and_on_tick(monkeypatch):
    collector = socket.create_server(("127.0.0.1", 0))
    collector.settimeout(10)
    monkeypatch.setenv("RL_TEST_COLLECTOR", str(collector.getsockname()[1]))
    reports = []

    def collect():
        for _ in range(2):
            c, _ = collector.accept()
            with c:
                reports.append(json.loads(recv_line(c)))
    # the collector thread starts after launch() forked the workers (a fork
    # in a multi-threaded process is deprecated); the listen backlog holds
    # the workers' connections until it runs
    t = threading.Thread(target=collect, daemon=True)
    try:
        rt = launch(Client, None, Config(workers=2, tick=0.02, max_connections=16))
        t.start()
        assert rt.address is None and rt.port is None
        assert rt.join(20), "client-only workers did not finish"
        t.join(5)
        assert rt.exit_codes == [0, 0]
    finally:
        collector.close()
    assert sorted(r["id"] for r in reports) == [0, 1]
    assert len({r["pid"] for r in reports}) == 2
    for r in reports:
        assert r["ticks"] >= 5, r            # ~20 ticks in 0.4 s of idling
        if r["cpu"] is not None:
            assert r["affinity"] == [r["cpu"]]


class UdpEcho(Handler):
    async def on_udp_bind(self, udp):
        tag = b"%d:" % self.worker.worker_id
        while True:
            data, addr = await udp.recv_from()
            if not udp.can_send():
                await udp.send_ready()
            udp.send_to(tag + data, addr)


def test_on_udp_bind_gets_a_working_udp_socket():
    with launched(UdpEcho, bind=None, workers=2, udp_bind=[("127.0.0.1", 0)],
                  grace=1) as rt:
        (addr,) = rt.udp_addresses
        assert addr[1] != 0
        ids = set()
        for i in range(16):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.sendto(b"ping%d" % i, addr)
                wid, _, data = s.recv(100).partition(b":")
                assert data == b"ping%d" % i
                ids.add(int(wid))
        assert ids <= {0, 1} and ids
        t0 = time.monotonic()
        rt.shutdown()
        assert rt.join(10)
        assert time.monotonic() - t0 < 3     # UDP handlers are cancelled at once


# ---------------------------------------------------------------------------
# 5. RLIMIT_NOFILE


RLIMIT = """
import ctypes, os, resource, sys
import ringline
from ringline import Config, Handler, launch, serve

def drop_cap_sys_resource():
    # root may raise a hard limit (CAP_SYS_RESOURCE): drop that capability
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    libc = ctypes.CDLL(None, use_errno=True)
    hdr, data = Header(0x20080522, 0), (Data * 2)()
    assert libc.capget(ctypes.byref(hdr), data) == 0
    data[0].effective &= ~(1 << 24)
    data[0].permitted &= ~(1 << 24)
    assert libc.capset(ctypes.byref(hdr), data) == 0

resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
if os.geteuid() == 0:
    drop_cap_sys_resource()
for start in (launch, serve):
    try:
        start(Handler, ("127.0.0.1", 0), Config(workers=2, max_connections=1000))
    except OSError as exc:
        print("FAILED:", exc, flush=True)
    else:
        print("STARTED", flush=True)
print("children:", open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split())
"""


def test_rlimit_nofile_too_low_fails_startup_naming_it(tmp_path):
    proc = run_script(tmp_path, RLIMIT)
    try:
        out, err = finish(proc)
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, err[-3000:]
    failures = [line for line in out.splitlines() if line.startswith("FAILED:")]
    assert len(failures) == 2, out + err
    for line in failures:
        assert "RLIMIT_NOFILE" in line and "2" in line and "64" in line
    assert "children: []" in out        # nothing was forked


DERIVED = RLIMIT.split("resource.setrlimit")[0] + """
import logging, socket, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(message)s")
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit // 2, limit))   # soft below hard
if os.geteuid() == 0:
    drop_cap_sys_resource()

class Echo(Handler):
    async def on_accept(self, conn):
        await conn.on_data(lambda view: conn.send_nowait(bytes(view)) or len(view))

try:
    rt = launch(Echo, ("127.0.0.1", 0), Config(workers=2))    # default max_connections
except OSError as exc:
    print("FAILED:", exc, flush=True)
else:
    with socket.create_connection(("127.0.0.1", rt.port), timeout=5) as s:
        s.sendall(b"ping")
        print("ECHO", s.recv(4).decode(), flush=True)
    print("CONFIG", rt.config.max_connections, rt.config.acceptor_queue, flush=True)
    print("SOFT", resource.getrlimit(resource.RLIMIT_NOFILE)[0], flush=True)
    rt.shutdown(0)
    assert rt.join(10)
"""


def test_default_max_connections_derived_from_a_low_rlimit(tmp_path):
    # hard limit 300, soft 150: the default Config must start (the soft limit
    # is raised towards the hard one) with the budget divided among 2 workers
    path = tmp_path / "derived.py"
    path.write_text(DERIVED)
    proc = subprocess.run([sys.executable, str(path), "300"], capture_output=True,
                          text=True, timeout=40)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "ECHO ping" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("CONFIG")]
    max_connections, acceptor_queue = map(int, line.split()[1:])
    slack = 64 + 16 * 2
    assert max_connections == (300 - slack) // 2
    assert acceptor_queue == min(1024, max_connections)
    (soft,) = [int(l.split()[1]) for l in proc.stdout.splitlines() if l.startswith("SOFT")]
    assert max_connections * 2 + slack <= soft <= 300
    logs = [l for l in proc.stdout.splitlines() if l.startswith("LOG ")]
    assert any("max_connections=%d" % max_connections in l and "RLIMIT_NOFILE" in l
               for l in logs), logs


def test_default_max_connections_fails_naming_a_limit_too_low(tmp_path):
    path = tmp_path / "derived.py"
    path.write_text(DERIVED)
    proc = subprocess.run([sys.executable, str(path), "90"], capture_output=True,
                          text=True, timeout=40)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("FAILED:")]
    assert "RLIMIT_NOFILE" in line and "can be raised to 90" in line, line


def test_config_leaves_fd_bounds_to_the_runtime():
    cfg = Config(workers=3)
    assert cfg.max_connections is None and cfg.acceptor_queue is None
    assert Config(max_connections=7, acceptor_queue=5).max_connections == 7


def test_rlimit_raised_to_fit_the_config(tmp_path):
    proc = run_script(tmp_path, """
        import resource
        from ringline import Config, Handler, launch
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        rt = launch(Handler, None, Config(workers=2, max_connections=1000))
        print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        rt.join(10)
    """)
    try:
        out, err = finish(proc)
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, err[-3000:]
    assert int(out.split()[0]) >= 2000


# ---------------------------------------------------------------------------
# 6. max_connections and the acceptor queue


class Holder(Handler):
    """Line commands: hold -> ok, stats -> this worker's stats as JSON,
    echo X -> X; the connection lives until the peer closes."""

    async def on_accept(self, conn):
        buf = bytearray()

        def take(view):
            buf.extend(view)
            return len(view)
        while await conn.with_data(take):
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf[:] = rest
                if line == b"hold":
                    conn.send_nowait(b"ok\n")
                elif line == b"stats":
                    conn.send_nowait(json.dumps(self.worker.stats()).encode() + b"\n")
                elif line.startswith(b"echo "):
                    conn.send_nowait(line[5:] + b"\n")
                elif line.startswith(b"block "):
                    time.sleep(float(line[6:]))     # stalls this worker's loop
                    conn.send_nowait(b"unblocked\n")


def _refused(sock):
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("distribution", ["reuseport", "acceptor"])
def test_max_connections_refusal_counted_others_keep_working(distribution):
    with launched(Holder, workers=1, max_connections=3,
                  distribution=distribution) as rt:
        held = [line_client(rt.port) for _ in range(3)]
        extra = []
        try:
            for s in held:
                s.sendall(b"hold\n")
                assert recv_line(s) == b"ok\n"
            extra = [line_client(rt.port) for _ in range(2)]
            for s in extra:
                assert _refused(s)
            held[1].sendall(b"echo still here\n")
            assert recv_line(held[1]) == b"still here\n"
            held.pop(0).close()
            until = time.monotonic() + 5
            while True:       # the freed slot is usable once its fd is closed
                s = line_client(rt.port)
                extra.append(s)
                s.sendall(b"stats\n")
                try:
                    stats = json.loads(recv_line(s))
                    break
                except (ConnectionError, OSError):
                    assert time.monotonic() < until
                    time.sleep(0.05)
            assert stats["refused"] >= 2 and stats["live"] == 3
            assert stats["accepted"] >= 4
        finally:
            for s in held + extra:
                s.close()


def test_acceptor_refuses_when_every_worker_queue_is_full():
    with launched(Holder, workers=1, distribution="acceptor", acceptor_queue=1) as rt:
        blocker = line_client(rt.port)
        others = []
        try:
            blocker.sendall(b"block 1.0\n")
            time.sleep(0.2)                    # the worker is stuck in time.sleep
            others = [line_client(rt.port) for _ in range(4)]
            assert recv_line(blocker) == b"unblocked\n"
            # one waited in the worker's queue, three were refused by the parent
            refused = sum(_refused(s) for s in others[1:])
            assert refused == 3
            others[0].sendall(b"echo queued\n")
            assert recv_line(others[0]) == b"queued\n"
            assert rt.stats()["refused_queue_full"] == 3
        finally:
            for s in [blocker, *others]:
                s.close()


def test_handler_exception_logged_worker_lives_on(tmp_path):
    proc = run_script(tmp_path, """
        import socket
        from ringline import Config, Handler, launch

        class Flaky(Handler):
            async def on_accept(self, conn):
                got = []
                def take(view):
                    got.append(bytes(view))
                    return len(view)
                await conn.with_data(take)
                if got[0].startswith(b"boom"):
                    raise RuntimeError("handler blew up")
                conn.send_nowait(b"fine")

        rt = launch(Flaky, ("127.0.0.1", 0), Config(workers=1, max_connections=16))
        try:
            for msg in (b"boom", b"ok", b"boom", b"ok"):
                with socket.create_connection(("127.0.0.1", rt.port), timeout=5) as s:
                    s.sendall(msg)
                    print(msg.decode(), s.recv(10), flush=True)
            print("pids", rt.workers, rt.stats()["deaths"])
        finally:
            rt.shutdown(0)
            rt.join(10)
    """)
    try:
        out, err = finish(proc)
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, err
    assert out.count("ok b'fine'") == 2 and out.count("boom b''") == 2
    assert re.search(r"pids \[\d+\] 0", out)
    assert err.count("RuntimeError: handler blew up") == 2
    assert "ringline.runtime" in err or "on_accept() failed" in err


# ---------------------------------------------------------------------------
# docs/runtime.md examples run


def _doc_blocks():
    with open(DOC) as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.parametrize("code", _doc_blocks(), ids=lambda c: c.splitlines()[0][:40])
def test_runtime_doc_example_runs(code):
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = finish(proc, timeout=30)
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, err[-3000:]
