"""Helpers of the ringline.kv replication tests (tests/kv/test_kv_repl*.py).

Owns: `info(port)` (INFO as a dict), `until(pred)` (a bounded poll: the
condition or an AssertionError after `tries` rounds; never a timing
assertion), `replica_of(primary, *args)` (a KvServer started with
`--replicaof` the primary), `synced(primary, *replicas)` (every replica
acknowledged the primary's offset), `pause` / `resume` (SIGSTOP / SIGCONT of
a server's whole process group), `load(conn, tag)` (a write load over every
type; returns its keys), `dump(port, keys)` (what a server holds for those
keys, with DBSIZE: two servers' dumps compare their keyspaces) and
`FakePrimary` (a scripted primary on a free 127.0.0.1 port that answers
each connection with given bytes).

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

__all__ = ["info", "until", "replica_of", "synced", "pause", "resume", "load", "dump",
           "FakePrimary"]


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


def load(c: RespConn, tag: str, n: int = 300) -> List[str]:
    """A write load over every type (fast-path SETs among them); its keys."""
    cmds = [("SET", f"{tag}:s{i}", f"v{i}") for i in range(n)]
    cmds += [("INCRBY", f"{tag}:n", "5"), ("HSET", f"{tag}:h", "a", "1", "b", "2"),
             ("RPUSH", f"{tag}:l", "1", "2", "3"), ("LPOP", f"{tag}:l"),
             ("SADD", f"{tag}:set", "x", "y"), ("SET", f"{tag}:ttl", "v", "EX", "1000"),
             ("DEL", f"{tag}:s0"), ("APPEND", f"{tag}:s1", "+")]
    replies = c.pipeline(cmds)
    assert not any(isinstance(r, Exception) for r in replies), replies
    return [f"{tag}:s{i}" for i in range(n)] + [f"{tag}:{k}" for k in
                                                ("n", "h", "l", "set", "ttl")]


def dump(port: int, keys: List[str]) -> Dict[str, Any]:
    """Type, value and whether a TTL is set of every key, and DBSIZE."""
    with RespConn(port) as c:
        out: Dict[str, Any] = {}
        for k in keys:
            t = c.call("TYPE", k)
            v = {b"string": ("GET", k), b"hash": ("HGETALL", k), b"list": ("LRANGE", k, "0", "-1"),
                 b"set": ("SMEMBERS", k)}.get(t)
            val = c.call(*v) if v else None
            out[k] = (t, sorted(val) if t == b"set" else val, c.call("PTTL", k) > 0)
        out["dbsize"] = c.call("DBSIZE")
        return out


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
