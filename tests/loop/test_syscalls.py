"""Syscall economy (issue 2, acceptance 4): under `strace -c -f`, a
sock_sendall/sock_recv ping-pong of 10,000 messages on the io_uring backend
makes no recv/epoll syscalls, only io_uring_enter, and exactly one send per
sock_sendall (it tries a non-blocking send() when called, as asyncio does:
issue 13; only what the socket does not take goes through the ring). On the poll backend
(the suite's second pass) its equivalent: one send/recv syscall per
operation (no EAGAIN retries), one epoll_wait per loop iteration, no
epoll_ctl churn and no io_uring_enter at all."""
import os
import shutil

import pytest

import ringline

from support import TOOLS
from support.strace import FORBIDDEN, strace_counts


def test_pingpong_makes_no_send_recv_epoll_syscalls():
    assert shutil.which("strace"), "strace is needed (.ci/run installs it)"
    if ringline.backend().name == "poll":
        return _poll_pingpong_economy()
    n = 10_000
    counts, err = strace_counts([os.path.join(TOOLS, "pingpong.py"), str(n)])
    baseline, _ = strace_counts([os.path.join(TOOLS, "pingpong.py"), "0"])
    # what the 10,000 round trips added on top of start-up and teardown
    added = {k: v - baseline.get(k, 0) for k, v in counts.items()}
    print("added syscalls:", sorted(added.items(), key=lambda kv: -kv[1])[:12])
    print(err)
    for name in FORBIDDEN - {"sendto"}:
        assert added.get(name, 0) <= 10, (name, added.get(name))
    # sock_sendall's attempt at call time: one send(2) (sendto) per call
    assert 2 * n <= added.get("sendto", 0) <= 2 * n + 10, added.get("sendto")
    # 2 messages each way per round trip: the receives via the ring
    assert added.get("io_uring_enter", 0) > 0
    assert added["io_uring_enter"] <= 4 * n + 100


def _poll_pingpong_economy():
    n = 2_000       # every operation is a syscall here, and strace is slow
    counts, err = strace_counts([os.path.join(TOOLS, "pingpong.py"), str(n)])
    baseline, _ = strace_counts([os.path.join(TOOLS, "pingpong.py"), "0"])
    added = {k: v - baseline.get(k, 0) for k, v in counts.items()}
    print("added syscalls (poll backend):", sorted(added.items(), key=lambda kv: -kv[1])[:12])
    print(err)
    sends = sum(added.get(k, 0) for k in ("send", "sendto", "sendmsg"))
    recvs = sum(added.get(k, 0) for k in ("recv", "recvfrom", "recvmsg"))
    waits = sum(added.get(k, 0) for k in ("epoll_wait", "epoll_pwait", "epoll_pwait2"))
    # 2 sends and 2 receives per round trip, each one syscall
    assert 2 * n <= sends <= 2 * n + 10, sends
    assert 2 * n <= recvs <= 2 * n + 10, recvs
    assert 0 < waits <= 4 * n + 100, waits
    assert added.get("epoll_ctl", 0) <= 10, added.get("epoll_ctl")
    assert counts.get("io_uring_enter", 0) == 0
    for name in ("poll", "ppoll", "select", "pselect6"):
        assert added.get(name, 0) <= 10, (name, added.get(name))
