"""Real Redis peers for the ringline.redis tests, started by the tests.

Owns: ``RedisServer`` (one redis-server on a free 127.0.0.1 port with its own
temp dir, ``--save '' --appendonly no``; stop / start again on the same port),
``RedisCluster`` (three masters with ``--cluster-enabled yes`` joined by
``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes``, waited
on until every node reports ``cluster_state:ok`` and the same slot map),
``make_tls_files`` (a self-signed certificate made with openssl) and
``tls_supported`` (whether this redis-server build accepts ``--tls-port``),
plus ``sync_command`` (a blocking one-shot client over a plain socket, built
on the sans-IO core, used to set up and check state independently of the
client under test).

Every process is killed at teardown (also on failure) and every temp dir
removed; nothing outlives the test module that started it.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ringline.redis._resp import NEED_MORE, Parser, encode_command
from ringline.bench.childio import log_tail, stop_child
from support.net import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def have_redis() -> bool:
    return os.path.exists(REDIS_SERVER) and os.path.exists(REDIS_CLI)


def sync_command(port: int, *args: Any, password: Optional[str] = None,
                 username: Optional[str] = None, timeout: float = 5.0,
                 host: str = "127.0.0.1") -> Any:
    """Send one command on a new blocking connection and return its reply
    (error replies are returned, not raised)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        cmds = []
        if password is not None:
            cmds.append(("AUTH", username, password) if username else ("AUTH", password))
        cmds.append(args)
        s.sendall(b"".join(encode_command(c) for c in cmds))
        parser = Parser()
        buf = b""
        replies = []
        while len(replies) < len(cmds):
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
            while buf:
                value, used = parser.parse(buf)
                buf = buf[used:]
                if value is NEED_MORE:
                    break
                replies.append(value)
        return replies[-1]


def _wait_port(port: int, proc: subprocess.Popen, log: str, deadline: float,
               tls: bool = False) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited ({proc.returncode}): {log_tail(log)}")
        try:
            if tls:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            reply = sync_command(port, "PING", timeout=0.5)
            # PONG, or NOAUTH when a password is set: up either way
            if reply == b"PONG" or (isinstance(reply, Exception)
                                    and "LOADING" not in str(reply)):
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"redis-server on port {port} did not come up: {log_tail(log)}")


class RedisServer:
    """One redis-server on 127.0.0.1. ``start()`` / ``stop()`` can repeat;
    the port and the temp dir stay the same (so restarts keep the address)."""

    def __init__(self, *, port: Optional[int] = None, args: Sequence[str] = (),
                 password: Optional[str] = None, cluster: bool = False,
                 tls_files: Optional[Dict[str, str]] = None) -> None:
        self.port = port or free_port(10000 if cluster else 0)
        self.tls_port = free_port() if tls_files else None
        self.args = list(args)
        self.password = password
        self.cluster = cluster
        self.tls_files = tls_files
        self.dir = tempfile.mkdtemp(prefix="ringline-redis-")
        self.log = os.path.join(self.dir, "redis.log")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def address(self) -> Tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def command_line(self) -> List[str]:
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", self.dir, "--save", "", "--appendonly", "no",
               "--logfile", self.log, "--daemonize", "no", "--protected-mode", "no"]
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        if self.cluster:
            cmd += ["--cluster-enabled", "yes", "--cluster-config-file",
                    os.path.join(self.dir, "nodes.conf"), "--cluster-node-timeout", "2000",
                    # the other masters keep serving while one is down
                    "--cluster-require-full-coverage", "no"]
        if self.tls_files:
            cmd += ["--tls-port", str(self.tls_port),
                    "--tls-cert-file", self.tls_files["cert"],
                    "--tls-key-file", self.tls_files["key"],
                    "--tls-ca-cert-file", self.tls_files["ca"],
                    "--tls-auth-clients", "no"]
        return cmd + self.args

    def start(self, timeout: float = 10.0) -> "RedisServer":
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen(self.command_line(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        try:
            _wait_port(self.port, self.proc, self.log, deadline)
            if self.tls_port:
                _wait_port(self.tls_port, self.proc, self.log, deadline, tls=True)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_child(proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def command(self, *args: Any) -> Any:
        return sync_command(self.port, *args, password=self.password)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class RedisCluster:
    """Three cluster-enabled masters, slots split by redis-cli --cluster."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [RedisServer(cluster=True) for _ in range(masters)]

    @property
    def addresses(self) -> List[Tuple[str, int]]:
        return [n.address for n in self.nodes]

    def start(self, timeout: float = 30.0) -> "RedisCluster":
        try:
            for n in self.nodes:
                n.start()
            cmd = [REDIS_CLI, "--cluster", "create",
                   *[f"127.0.0.1:{n.port}" for n in self.nodes],
                   "--cluster-replicas", "0", "--cluster-yes"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout}{out.stderr}")
            self.wait_stable(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def slot_owner_ports(self, port: int) -> Dict[int, int]:
        """slot -> owning port, per CLUSTER SLOTS as seen by node `port`."""
        owners = {}
        for entry in sync_command(port, "CLUSTER", "SLOTS"):
            lo, hi, master = entry[0], entry[1], entry[2]
            for slot in range(lo, hi + 1):
                owners[slot] = master[1]
        return owners

    def wait_stable(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                infos = [sync_command(n.port, "CLUSTER", "INFO") for n in self.nodes]
                if all(b"cluster_state:ok" in bytes(i) for i in infos):
                    maps = [self.slot_owner_ports(n.port) for n in self.nodes]
                    if all(len(m) == 16384 and m == maps[0] for m in maps):
                        return
                last = infos
            except (OSError, ConnectionError) as exc:
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"cluster did not become stable: {last!r}")

    def node_id(self, port: int) -> str:
        return bytes(sync_command(port, "CLUSTER", "MYID")).decode()

    def close(self) -> None:
        for n in self.nodes:
            n.close()

    def __enter__(self) -> "RedisCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_tls_files(directory: str) -> Dict[str, str]:
    """A self-signed certificate for localhost / 127.0.0.1 (also its own CA)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return {"cert": cert, "key": key, "ca": cert}


_TLS_SUPPORT: Optional[Tuple[bool, str]] = None


def tls_supported() -> Tuple[bool, str]:
    """(True, "") when this redis-server build serves TLS, else (False, why)."""
    global _TLS_SUPPORT
    if _TLS_SUPPORT is not None:
        return _TLS_SUPPORT
    if shutil.which("openssl") is None:
        _TLS_SUPPORT = (False, "openssl is not installed (needed to make test certificates)")
        return _TLS_SUPPORT
    directory = tempfile.mkdtemp(prefix="ringline-redis-tls-")
    try:
        files = make_tls_files(directory)
        server = RedisServer(tls_files=files)
        try:
            server.start(timeout=5)
            _TLS_SUPPORT = (True, "")
        except RuntimeError as exc:
            _TLS_SUPPORT = (False, f"redis-server does not serve --tls-port here: {exc}")
        finally:
            server.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return _TLS_SUPPORT
