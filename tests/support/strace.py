"""Syscall counting for the syscall-economy tests (tests/loop/test_syscalls.py,
tests/conn/test_native_invariants.py, tests/loop/test_transport_acceptance_load.py).

Owns ``strace_counts`` (run a Python program under ``strace -f -c``, return
the per-syscall counts) and ``FORBIDDEN`` (the I/O syscalls the io_uring
backend must not make per message). Stateless; the strace output file is
removed before returning.
"""
import os
import re
import subprocess
import sys

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
