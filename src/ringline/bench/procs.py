"""Server processes under the harness's control, and their CPU accounting.

Owns: :class:`ServerProcess`, which starts a benchmark server (a Python
workload on a loop, or a C reference server: epoll or io_uring), waits for its ready line, reads
the process's own CPU accounting from ``/proc/PID/stat`` and stops it.

Lifecycle: ``start()`` -> ready (``port`` known) -> any number of
``cpu_times()`` samples -> ``stop()``.  ``stop()`` closes the server's stdin
(servers exit on end of file), then escalates to SIGTERM and SIGKILL; it is
idempotent and also runs from ``__exit__``.

Invariants: servers run in their own session, so a Ctrl-C aimed at the
harness reaches the harness only and it stops them in order; a server's
stderr goes to a temporary file (never a pipe nobody reads) and its tail is
quoted in every error about it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .childio import LineReader, file_tail, stop_child
from .loadgen import echo_server_path, uring_echo_server_path
from .server import READY_PREFIX

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    pass


def _package_env() -> dict[str, str]:
    """Environment in which ``python -m ringline.bench.server`` imports this very tree."""
    env = dict(os.environ)
    src_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if src_root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([src_root, *paths])
    return env


def read_cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads included."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read()
    fields = text[text.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def read_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class ServerProcess:
    """One server process; see the module docstring for the lifecycle."""

    def __init__(self, argv: list[str], label: str, *, native: bool = False):
        self.argv = argv
        self.label = label
        self.native = native
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.info: dict = {}
        self._stderr = None

    @classmethod
    def python(cls, loop: str, workload: str, *, cpu: int | None = None,
               host: str = "127.0.0.1") -> "ServerProcess":
        argv = [sys.executable, "-m", "ringline.bench.server", "--loop", loop,
                "--workload", workload, "--host", host]
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        return cls(argv, f"{workload} on {loop}")

    @classmethod
    def probe(cls, loop: str) -> "ServerProcess":
        return cls([sys.executable, "-m", "ringline.bench.server", "--loop", loop,
                    "--probe"], f"probe of {loop}")

    @classmethod
    def c_echo(cls, mode: str, *, cpu: int | None = None,
               host: str = "127.0.0.1", engine: str = "epoll") -> "ServerProcess":
        """The C reference server: ``engine`` epoll (echo_server.c) or
        uring (uring_echo_server.c, TCP modes only)."""
        binary = uring_echo_server_path() if engine == "uring" else echo_server_path()
        argv = [str(binary), "--mode", mode, "--host", host]
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        return cls(argv, f"C {engine} {mode} server", native=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> "ServerProcess":
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, env=_package_env(), start_new_session=True)
        line = self._read_ready_line(timeout)
        if self.native:
            self.info = {"port": int(line.split()[1])}
        else:
            self.info = json.loads(line[len(READY_PREFIX):])
        self.port = self.info.get("port")
        return self

    def _read_ready_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        prefix = "READY " if self.native else READY_PREFIX
        reader = LineReader(self.proc.stdout.fileno())
        try:
            line = reader.next_with(prefix, time.monotonic() + timeout)
        except TimeoutError:
            self.stop()
            raise ServerError(f"{self.label}: no ready line within {timeout:g}s"
                              + self._stderr_suffix()) from None
        if line is None:
            self.proc.wait(timeout=5)
            code = self.proc.returncode
            self.stop()
            raise ServerError(f"{self.label}: exited with status {code} "
                              f"before it was ready" + self._stderr_suffix())
        return line

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_times(self) -> tuple[float, float]:
        return read_cpu_times(self.pid)

    def rss_kib(self) -> int | None:
        return read_rss_kib(self.pid)

    def stderr_tail(self, limit: int = 1500) -> str:
        return file_tail(self._stderr, limit)

    def _stderr_suffix(self) -> str:
        tail = self.stderr_tail()
        return f"\n--- stderr of {self.label} ---\n{tail}" if tail else ""

    def describe_death(self) -> str:
        code = self.proc.returncode if self.proc else None
        return f"{self.label}: server died (status {code})" + self._stderr_suffix()

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        stop_child(proc, grace=2, eof_wait=3)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.stop()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
