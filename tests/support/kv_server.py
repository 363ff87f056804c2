"""ringline.kv servers for the tests, started in a subprocess.

Owns: ``KvServer`` (``python -m ringline.kv`` on a free 127.0.0.1 port with
its own temp dir for the journal; ``start`` / ``stop`` (SIGTERM) / ``kill``
(SIGKILL) / ``start`` again on the same port and dir) and ``RespConn`` (a
blocking raw RESP connection: send commands, read parsed replies, built on
ringline.redis's sans-IO parser, so the tests compare what two servers
answer independently of any client library).

The server runs with the backend of the test process (RINGLINE_BACKEND is
inherited). Every process is killed and every temp dir removed at close
(also on failure).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, List, Optional, Sequence, Tuple

from ringline.bench.childio import log_tail
from ringline.redis._resp import NEED_MORE, Parser, encode_command

__all__ = ["KvServer", "RespConn"]


class RespConn:
    """A blocking RESP connection (replies parsed, errors returned as values)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.parser = Parser()
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, *args: Any) -> None:
        self.sock.sendall(encode_command(args))

    def read(self) -> Any:
        while True:
            if self.buf:
                value, used = self.parser.parse(self.buf)
                self.buf = self.buf[used:]
                if value is not NEED_MORE:
                    return value
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def call(self, *args: Any) -> Any:
        self.send(*args)
        return self.read()

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> List[Any]:
        self.sock.sendall(b"".join(encode_command(c) for c in commands))
        return [self.read() for _ in commands]

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (reading what is left)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(1 << 16):
                pass
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RespConn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class KvServer:
    """One ``python -m ringline.kv`` process on 127.0.0.1."""

    def __init__(self, *args: str, workers: int = 1) -> None:
        self.workers = workers
        self._pick_port()
        self.args = list(args)
        self.dir = tempfile.mkdtemp(prefix="ringline-kv-")
        self.log = os.path.join(self.dir, "kv.log")
        self.proc: Optional[subprocess.Popen] = None
        self.started = 0          # successful starts (a restart keeps the port)

    def _pick_port(self) -> None:
        # P (and with several shards P+1..P+N): a run of free ports below
        # the ephemeral range, where no client connection takes one of them
        # meanwhile (the neighbour of a free ephemeral port is often taken,
        # and a port a restart reuses could be)
        low, _high = _ephemeral_range()
        rng = random.Random()
        for _ in range(1000):
            port = rng.randrange(max(1024, low - 12000), low - self.workers - 1)
            if all(_port_free(port + i) for i in range(self.workers + 1 if self.workers > 1
                                                       else 1)):
                self.port = port
                return
        raise RuntimeError("no run of free ports found")

    def command_line(self) -> List[str]:
        return [sys.executable, "-m", "ringline.kv", "--port", str(self.port),
                "--workers", str(self.workers), "--dir", self.dir] + self.args

    def start(self, timeout: float = 20.0) -> "KvServer":
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError as exc:
                # a free port taken by another process meanwhile: a new one,
                # unless a restart must keep its address
                if attempt == 2 or self.started or "Address already in use" not in str(exc):
                    raise
                self._pick_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> "KvServer":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command_line(), stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.port + 1 + i for i in range(self.workers)]
                               if self.workers > 1 else [])
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"ringline.kv exited ({self.proc.returncode}): "
                                       f"{self.tail()}")
                try:
                    with RespConn(port, timeout=1.0) as c:
                        if c.call("PING") == b"PONG":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"ringline.kv did not come up: {self.tail()}")
                time.sleep(0.05)
        self.started += 1
        return self

    def tail(self) -> str:
        return log_tail(self.log, 3000)

    def _signal_group(self, sig: int) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)      # the supervisor and its workers
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker at once (a crash)."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def conn(self, timeout: float = 10.0) -> RespConn:
        return RespConn(self.port, timeout)

    def close(self) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "KvServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _ephemeral_range() -> Tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = f.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
