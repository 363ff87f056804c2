"""Start and stop a throwaway memcached on a free 127.0.0.1 port for tests."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import List, Optional

from ringline.bench.childio import stop_child
from support.net import free_port

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"


def have_memcached() -> bool:
    return os.path.exists(MEMCACHED)


def memcached_has_tls() -> bool:
    try:
        out = subprocess.run([MEMCACHED, "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--enable-ssl" in out.stdout


class Memcached:
    """One memcached process: ``Memcached().start()``, ``.port``, ``.stop()``;
    ``restart()`` brings it back on the same port."""

    def __init__(self, port: Optional[int] = None, extra: Optional[List[str]] = None) -> None:
        self.port = port or free_port()
        self.extra = list(extra or [])
        self.proc: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "Memcached":
        args = [MEMCACHED, "-l", f"127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64",
                "-t", "1", *self.extra]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"memcached exited with {self.proc.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"memcached did not listen on port {self.port} in {timeout} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_child(proc)
        if proc.stderr:
            proc.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "Memcached":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
