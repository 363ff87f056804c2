"""Helpers of the ringline.kv replication tests (tests/kv/test_kv_repl*.py).

Owns: `info(port)` (INFO as a dict), `until(pred)` (a bounded poll: the
condition or an AssertionError after `tries` rounds; never a timing
assertion), `replica_of(primary, *args)` (a KvServer started with
`--replicaof` the primary), `synced(primary, *replicas)` (every replica
acknowledged the primary's offset), `pause` / `resume` (SIGSTOP / SIGCONT of
a server's whole process group) and `FakePrimary` (a scripted primary on a
free 127.0.0.1 port that answers each connection with given bytes).

Everything started here is stopped by its owner's context manager.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any, Callable, Dict, List

from support.kv_server import KvServer, RespConn

__all__ = ["info", "until", "replica_of", "synced", "pause", "resume", "FakePrimary"]


def info(port: int, section: str = "all") -> Dict[str, str]:
    with RespConn(port) as c:
        text = c.call("INFO", section).decode()
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)


def until(pred: Callable[[], Any], tries: int = 400, what: str = "condition") -> Any:
    """Poll pred every 50 ms, at most tries times; its first true value."""
    for _ in range(tries):
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"{what} did not hold")


def replica_of(primary: KvServer, *args: str) -> KvServer:
    return KvServer("--replicaof", "127.0.0.1", str(primary.port), *args,
                    workers=primary.workers)


def synced(primary: KvServer, *replicas: KvServer) -> bool:
    off = info(primary.port)["master_repl_offset"]
    return all(info(r.port).get("slave_repl_offset") == off
               and info(r.port).get("master_link_status") == "up" for r in replicas)


def pause(server: KvServer) -> None:
    os.killpg(server.proc.pid, signal.SIGSTOP)          # type: ignore[union-attr]


def resume(server: KvServer) -> None:
    os.killpg(server.proc.pid, signal.SIGCONT)          # type: ignore[union-attr]


class FakePrimary:
    """A listener on 127.0.0.1 that reads a connection's first bytes and
    answers with `script` (then keeps it open until the peer closes)."""

    def __init__(self, script: bytes) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.requests: List[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            with conn:
                conn.settimeout(2.0)
                try:
                    self.requests.append(conn.recv(4096))
                    conn.sendall(self.script)
                    while not self._stop.is_set() and conn.recv(4096):
                        pass
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(10)

    def __enter__(self) -> "FakePrimary":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
