"""Syscall economy on the io_uring backend (issue 2, acceptance 4): under
`strace -c -f`, a sock_sendall/sock_recv ping-pong of 10,000 messages makes
no send/recv/epoll syscalls, only io_uring_enter."""
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)
FORBIDDEN = {"send", "sendto", "sendmsg", "recv", "recvfrom", "recvmsg", "read",
             "write", "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "ppoll",
             "select", "pselect6"}


def strace_counts(args):
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"strace-{os.getpid()}.txt")
    proc = subprocess.run(["strace", "-f", "-c", "-o", out, sys.executable] + args,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    counts = {}
    with open(out) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m:
                counts[m.group(2)] = int(m.group(1))
    os.unlink(out)
    return counts, proc.stderr


def test_pingpong_makes_no_send_recv_epoll_syscalls():
    assert shutil.which("strace"), "strace is needed (.ci/run installs it)"
    n = 10_000
    counts, err = strace_counts([os.path.join(HERE, "tools", "pingpong.py"), str(n)])
    baseline, _ = strace_counts([os.path.join(HERE, "tools", "pingpong.py"), "0"])
    # what the 10,000 round trips added on top of start-up and teardown
    added = {k: v - baseline.get(k, 0) for k, v in counts.items()}
    print("added syscalls:", sorted(added.items(), key=lambda kv: -kv[1])[:12])
    print(err)
    for name in FORBIDDEN:
        assert added.get(name, 0) <= 10, (name, added.get(name))
    # 2 messages each way per round trip: 40,000 operations, all via the ring
    assert added.get("io_uring_enter", 0) > 0
    assert added["io_uring_enter"] <= 4 * n + 100
