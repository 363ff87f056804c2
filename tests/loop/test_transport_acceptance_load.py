"""Acceptance tests for "Transports, servers and subprocesses on io_uring",
under load: connection churn with fds and memory back to the baseline
(acceptance 2), and the syscall economy of an echo load under strace
(acceptance 5).

Behaviour that is asyncio's runs on both loops of the ``loop`` fixture (the
asyncio case validates the test); ringline-only knobs and counters
(write_hard_cap, _ring_stats, io_uring_enter counts) run on ringline only.
The echo protocols and waiting helpers shared by the
test_transport_acceptance_*.py files are in support/transports.py.
"""
import asyncio
import gc
import os
import re
import resource
import shutil
import subprocess
import sys
import time

import pytest

from support import TOOLS, run
from support.proc import open_fds, rss_bytes
from support.transports import (HOST, EchoClient, EchoServer, collect_loop_errors,
                                echo_round_trip, is_ringline, new_stats, wait_until)


# ---------------------------------------------------------------------------
# churn: fds and memory return to the baseline

CHURN_SEQUENTIAL = 20_000
CHURN_HELD = 1_000
CHURN_WARMUP = 3_000
# RSS margin after the warm-up. The warm-up sizes pymalloc's arenas, the
# loop's free lists, the kernel-facing structures (ring, buffer ring) and
# the allocator's heap for the peak of 1,000 simultaneous connections; what
# is left is fragmentation noise (a few pages per arena that pymalloc cannot
# hand back). 8 MiB over 21,000 further connections is < 400 bytes per
# connection: leaking any per-connection object (a transport with its
# socket, protocol and dicts is well over 1 KiB) would exceed it.
RSS_MARGIN = 8 * 1024 * 1024


def _ensure_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def _hold_many(loop, port, stats, n, base_fds):
    """Open n connections at once (each echoes once), hold them, close all."""
    clients = [EchoClient(loop, b"held %d" % i, close_when_echoed=False)
               for i in range(n)]
    await asyncio.gather(*(loop.create_connection(lambda c=c: c, HOST, port)
                           for c in clients))
    await asyncio.gather(*(c.echoed for c in clients))
    await wait_until(lambda: stats["active"] == n, 10, f"{n} server connections")
    held_fds = open_fds()
    # both ends of every connection are ours
    assert held_fds >= base_fds + 2 * n, (held_fds, base_fds)
    for c in clients:
        c.transport.close()
    lost = await asyncio.gather(*(c.lost for c in clients))
    assert all(exc is None for exc in lost)
    await wait_until(lambda: stats["active"] == 0, 10, "server side to close")
    return held_fds


async def _churn(loop, port, stats, n):
    for i in range(n):
        await echo_round_trip(loop, port, b"churn %d" % i)
    await wait_until(lambda: stats["active"] == 0, 10, "server side to close")


def test_churn_fds_and_rss_return_to_baseline(loop):
    _ensure_nofile(2 * CHURN_HELD + 200)
    errors = collect_loop_errors(loop)
    stats = new_stats()
    server = run(loop.create_server(lambda: EchoServer(stats), HOST, 0,
                                          backlog=CHURN_HELD + 100), loop=loop)
    port = server.sockets[0].getsockname()[1]
    try:
        # warm-up: the same shapes as the measured run
        run(_churn(loop, port, stats, CHURN_WARMUP), timeout=60, loop=loop)
        run(_hold_many(loop, port, stats, CHURN_HELD, open_fds()), timeout=30, loop=loop)
        gc.collect()
        base_fds, base_rss = open_fds(), rss_bytes()
        ring = is_ringline(loop)
        base_inflight = loop._ring_stats()["inflight"] if ring else None

        t0 = time.perf_counter()
        run(_churn(loop, port, stats, CHURN_SEQUENTIAL), timeout=60, loop=loop)
        churn_s = time.perf_counter() - t0
        gc.collect()
        fds_after_churn, rss_after_churn = open_fds(), rss_bytes()

        held_fds = run(_hold_many(loop, port, stats, CHURN_HELD, base_fds),
                       timeout=30, loop=loop)
        gc.collect()
        fds_after, rss_after = open_fds(), rss_bytes()
        print(f"\n[churn {type(loop).__name__}] {CHURN_SEQUENTIAL} sequential "
              f"connections in {churn_s:.2f} s ({churn_s / CHURN_SEQUENTIAL * 1e6:.0f} us "
              f"each); fds baseline={base_fds} after-churn={fds_after_churn} "
              f"held={held_fds} after={fds_after}; RSS baseline={base_rss / 2**20:.1f} MiB "
              f"after-churn={rss_after_churn / 2**20:.1f} MiB after={rss_after / 2**20:.1f} MiB")
        assert stats["made"] == stats["lost"] == CHURN_WARMUP + CHURN_SEQUENTIAL + 2 * CHURN_HELD
        assert fds_after_churn == base_fds, "fd leak over sequential churn"
        assert fds_after == base_fds, "fd leak after 1,000 held connections"
        assert rss_after_churn - base_rss <= RSS_MARGIN, (
            f"RSS grew {(rss_after_churn - base_rss) / 2**20:.1f} MiB over "
            f"{CHURN_SEQUENTIAL} connections")
        assert rss_after - base_rss <= RSS_MARGIN, (
            f"RSS grew {(rss_after - base_rss) / 2**20:.1f} MiB")
        if ring:
            # no operation (receive, send, cancel) outlives its connection
            stats_after = loop._ring_stats()
            print(f"[churn ring] inflight baseline={base_inflight} "
                  f"after={stats_after['inflight']} stale_cqes={stats_after['stale_cqes']}")
            assert stats_after["inflight"] == base_inflight, (stats_after, base_inflight)
        assert not errors, errors
    finally:
        server.close()
        run(server.wait_closed(), loop=loop)


# ---------------------------------------------------------------------------
# syscall economy under strace (ringline only; io_uring_enter batching on
#    the io_uring backend, its epoll equivalent on the poll backend)

ECHO_CONNS, ECHO_MESSAGES = 100, 1_000
SOCKET_IO_SYSCALLS = {"read", "write", "readv", "writev", "send", "recv", "sendto",
                      "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
                      "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl",
                      "poll", "ppoll", "select", "pselect6"}


def _strace(tmp_path, args):
    out = tmp_path / f"strace-{len(list(tmp_path.iterdir()))}.txt"
    proc = subprocess.run(["strace", "-f", "-c", "-o", str(out), sys.executable] + args,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {}
    for line in out.read_text().splitlines():
        # % time, seconds, usecs/call, calls, [errors,] syscall
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m:
            counts[m.group(2)] = int(m.group(1))
    stats = dict(kv.split("=") for kv in proc.stdout.split())
    return counts, {k: int(v) for k, v in stats.items()}


def test_echo_load_syscall_economy(tmp_path):
    if not shutil.which("strace"):
        pytest.fail("strace is needed (.ci/run installs it)")
    import ringline
    if ringline.backend().name == "poll":
        return _poll_echo_load_economy(tmp_path)
    tool = os.path.join(TOOLS, "echo_load.py")
    loaded, stats = _strace(tmp_path, [tool, str(ECHO_CONNS), str(ECHO_MESSAGES)])
    idle, idle_stats = _strace(tmp_path, [tool, str(ECHO_CONNS), "0"])
    messages = stats["messages"]
    assert messages == ECHO_CONNS * ECHO_MESSAGES
    added = {k: v - idle.get(k, 0) for k, v in loaded.items()}
    enters = added.get("io_uring_enter", 0)
    ratio = messages / max(enters, 1)
    print(f"\n[syscalls] {ECHO_CONNS} connections x {ECHO_MESSAGES} messages: "
          f"io_uring_enter loaded={loaded.get('io_uring_enter')} "
          f"idle={idle.get('io_uring_enter')} added={enters}; "
          f"{ratio:.1f} messages (each way) per io_uring_enter; "
          f"{2 * messages / max(enters, 1):.1f} sends per enter; ring stats {stats}")
    print("[syscalls] added by the load:",
          sorted(((k, v) for k, v in added.items() if v), key=lambda kv: -kv[1])[:10])
    # measured: ~5,000 enters for 100,000 messages each way (~19 per enter)
    assert 0 < enters < messages / 4, (enters, messages)
    for name in SOCKET_IO_SYSCALLS:
        assert added.get(name, 0) <= 10, (name, loaded.get(name), idle.get(name))


def _poll_echo_load_economy(tmp_path):
    """The poll backend's equivalent: no io_uring_enter; each message costs
    one send and one receive syscall per direction (short reads end a
    multishot burst, so no EAGAIN probing), epoll_wait batches many ready
    connections per call, and registrations do not churn per message."""
    messages_per_conn = 100          # every operation is a syscall under strace
    tool = os.path.join(TOOLS, "echo_load.py")
    loaded, stats = _strace(tmp_path, [tool, str(ECHO_CONNS), str(messages_per_conn)])
    idle, _ = _strace(tmp_path, [tool, str(ECHO_CONNS), "0"])
    messages = stats["messages"]
    assert messages == ECHO_CONNS * messages_per_conn
    added = {k: v - idle.get(k, 0) for k, v in loaded.items()}
    sends = sum(added.get(k, 0) for k in ("send", "sendto", "sendmsg", "write", "writev"))
    recvs = sum(added.get(k, 0) for k in ("recv", "recvfrom", "recvmsg", "read", "readv"))
    waits = sum(added.get(k, 0) for k in ("epoll_wait", "epoll_pwait", "epoll_pwait2"))
    print(f"\n[syscalls poll] {ECHO_CONNS} connections x {messages_per_conn} messages: "
          f"sends={sends} recvs={recvs} epoll_waits={waits} "
          f"epoll_ctl={added.get('epoll_ctl', 0)}; stats {stats}")
    print("[syscalls poll] added by the load:",
          sorted(((k, v) for k, v in added.items() if v), key=lambda kv: -kv[1])[:10])
    assert loaded.get("io_uring_enter", 0) == 0
    assert 2 * messages <= sends <= 2 * messages + 100, sends
    assert 2 * messages <= recvs <= 2.2 * messages + 100, recvs
    assert 0 < waits < messages / 4, (waits, messages)
    assert added.get("epoll_ctl", 0) <= 10 * ECHO_CONNS, added.get("epoll_ctl")
