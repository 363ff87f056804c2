"""The processes the client workloads start: backing servers and driver workers.

Owns: :class:`BackingServer` (redis-server with ``--save '' --appendonly
no``, or memcached with ``-t 1 -U 0 -m 256``, on a free 127.0.0.1 port,
pinned to the server CPU), :class:`WorkerProcess` (the harness's end of a
driver worker's JSON-lines pipe; the other end is :mod:`.clients_worker`)
and :class:`ClientBenchError`, the one error both raise.

Lifecycle: ``start()`` (a server: until it answers INFO / ``version``; a
worker: until its hello line) -> any number of requests or CPU samples ->
``stop()``, which is idempotent and also runs from ``__exit__``.

Invariants: both run in their own session (a Ctrl-C aimed at the harness
reaches the harness only); a server's output and a worker's stderr go to
temporary files (never a pipe nobody reads) and their tails are quoted in
every error about them; a worker that dies or does not answer in time is
stopped and reported as a ClientBenchError, never left running.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from .childio import LineReader, file_tail, free_port, stop_child
from .clients_drivers import KINDS, WORKER_PREFIX


class ClientBenchError(RuntimeError):
    pass


def _pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})
    return pin


class BackingServer:
    """redis-server or memcached on a free 127.0.0.1 port, pinned to ``cpu``."""

    def __init__(self, kind: str, cpu: int | None = None, host: str = "127.0.0.1"):
        if kind not in KINDS:
            raise ValueError(f"unknown server kind {kind!r}")
        self.kind = kind
        self.cpu = cpu
        self.host = host
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.version: str | None = None
        self.argv: list[str] = []
        self._dir: str | None = None
        self._log = None

    @staticmethod
    def binary(kind: str) -> str | None:
        name = "redis-server" if kind == "redis" else "memcached"
        return shutil.which(name) or (f"/usr/bin/{name}"
                                      if os.path.exists(f"/usr/bin/{name}") else None)

    def start(self, timeout: float = 10.0) -> "BackingServer":
        exe = self.binary(self.kind)
        if exe is None:
            raise ClientBenchError(f"{self.kind}: server binary not found "
                                   f"({'redis-server' if self.kind == 'redis' else 'memcached'})")
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix=f"ringline-bench-{self.kind}-")
        if self.kind == "redis":
            self.argv = [exe, "--save", "", "--appendonly", "no", "--port", str(self.port),
                         "--bind", self.host, "--dir", self._dir]
        else:
            self.argv = [exe, "-l", self.host, "-p", str(self.port), "-U", "0", "-t", "1",
                         "-m", "256"]
            if os.geteuid() == 0:
                self.argv += ["-u", "root"]
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self._dir, preexec_fn=_pin(self.cpu),
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ClientBenchError(f"{self.kind} server exited with status "
                                       f"{self.proc.returncode}: {self.log_tail()}")
            try:
                self.version = self._hello()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ClientBenchError(f"{self.kind} server did not answer on port "
                                           f"{self.port} within {timeout:g} s")
                time.sleep(0.02)

    def _hello(self) -> str:
        with socket.create_connection((self.host, self.port), timeout=1) as s:
            if self.kind == "redis":
                s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
                data = b""
                while b"redis_version:" not in data or not data.endswith(b"\r\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed")
                    data += chunk
                line = data.split(b"redis_version:", 1)[1].split(b"\r\n", 1)[0]
                return "redis " + line.decode()
            s.sendall(b"version\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            return "memcached " + data.decode().split()[-1]

    def cpu_times(self) -> tuple[float, float]:
        from .procs import read_cpu_times

        assert self.proc is not None
        return read_cpu_times(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, limit: int = 1000) -> str:
        if self._log is None:
            return ""
        try:
            self._log.seek(0)
            return self._log.read().decode(errors="replace").strip()[-limit:]
        except (OSError, ValueError):
            return ""

    def describe(self) -> dict:
        return {"kind": self.kind, "version": self.version, "port": self.port,
                "cpu": self.cpu, "argv": self.argv,
                "pid": self.proc.pid if self.proc else None}

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_child(proc)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "BackingServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class WorkerProcess:
    """A driver's worker process, as the harness sees it."""

    def __init__(self, name: str, cpu: int | None = None):
        self.name = name
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None
        self.hello: dict = {}
        self._stderr = None
        self._lines: LineReader | None = None

    def start(self, timeout: float = 30.0) -> dict:
        from .procs import _package_env

        argv = [sys.executable, "-m", "ringline.bench.clients", "--worker", self.name]
        if self.cpu is not None:
            argv += ["--cpu", str(self.cpu)]
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=_package_env(),
                                     start_new_session=True)
        assert self.proc.stdout is not None
        self._lines = LineReader(self.proc.stdout.fileno())
        self.hello = self._read(timeout)
        if not self.hello.get("ok"):
            error = self.hello.get("error")
            self.stop()
            raise ClientBenchError(f"{self.name}: {error}")
        return self.hello

    def request(self, cmd: str, timeout: float, **args: Any) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            raise ClientBenchError(f"{self.name}: worker is not running" + self._tail())
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            raise ClientBenchError(f"{self.name}: worker died ({exc})" + self._tail())
        reply = self._read(timeout)
        if not reply.get("ok"):
            raise ClientBenchError(f"{self.name}: {reply.get('error')}")
        return reply

    def _read(self, timeout: float) -> dict:
        assert self.proc is not None and self._lines is not None
        try:
            line = self._lines.next_with(WORKER_PREFIX, time.monotonic() + timeout)
        except TimeoutError:
            self.stop()
            raise ClientBenchError(f"{self.name}: no answer within {timeout:g} s"
                                   + self._tail()) from None
        if line is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            code = self.proc.returncode
            tail = self._tail()
            self.stop()
            raise ClientBenchError(f"{self.name}: worker exited (status {code})" + tail)
        return json.loads(line[len(WORKER_PREFIX):])

    def _tail(self, limit: int = 1500) -> str:
        text = file_tail(self._stderr, limit)
        return f"\n--- stderr of the {self.name} worker ---\n{text}" if text else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_child(proc, grace=0, eof_wait=5)
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
        self._lines = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> "WorkerProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
