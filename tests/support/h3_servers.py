"""HTTP/3 peers for the ringline.http3 tests, on loopback, stopped by the
fixture that started them.

* ``Ngtcp2``: Debian's ngtcp2 example server (``gtlsserver``, GnuTLS +
  nghttp3; package ngtcp2-server) serving files of ``SIZES`` bytes from a
  temporary document root (``/f<size>``); an independent QUIC + HTTP/3
  implementation.
* ``HypercornQuic``: ``hypercorn support.http_app:app --quic-bind`` (aioquic
  underneath): ``/bytes/N``, ``/echo``...
* ``OurServer``: ringline.http3's own server (``tests/support/h3_server.py``)
  in a subprocess: ``/bytes/N``, ``/echo``, ``/goaway``, ``/reset``,
  ``/sleep/S``.
* ``LossyRelay``: a UDP relay in a thread between a client and a server
  that drops a share of the datagrams each way and reorders (holds one
  datagram back behind the next).

``have_ngtcp2()`` / ``have_hypercorn_quic()`` tell whether each can run.
"""
import hashlib
import os
import random
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from ringline.bench.childio import stop_child
from ringline.bench.nginx import tls_files

from .net import free_port

__all__ = ["SIZES", "Ngtcp2", "HypercornQuic", "OurServer", "LossyRelay", "have_ngtcp2",
           "have_hypercorn_quic", "tls_files", "udp_port"]

SIZES = [0, 1, 1000, 65536, 1 << 20, 16 << 20]
GTLSSERVER = shutil.which("gtlsserver") or (
    "/usr/sbin/gtlsserver" if os.path.exists("/usr/sbin/gtlsserver") else None)
_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def have_ngtcp2():
    return GTLSSERVER is not None


def have_hypercorn_quic():
    import importlib.util
    return (importlib.util.find_spec("hypercorn") is not None
            and importlib.util.find_spec("aioquic") is not None)


def udp_port():
    """A UDP port on 127.0.0.1 that nothing is bound to (at return time)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_udp(proc, log, port, deadline):
    """Until something is bound to UDP ``port`` (read from /proc/net/udp)."""
    hexport = f":{port:04X}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log, "rb") as f:
                raise RuntimeError(f"server exited ({proc.returncode}): {f.read()[-2000:]!r}")
        with open("/proc/net/udp") as f:
            if any(line.split()[1].endswith(hexport) for line in f.readlines()[1:]):
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing bound UDP port {port}")


class _Proc:
    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix=f"ringline-{name}-")
        self.tls = tls_files(self.dir)
        self.log = os.path.join(self.dir, f"{name}.log")
        self.proc = None
        self.port = udp_port()

    def _spawn(self, argv, **kw):
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, **kw)
        _wait_udp(self.proc, self.log, self.port, time.monotonic() + 20)

    def stop(self):
        stop_child(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Ngtcp2(_Proc):
    def __init__(self):
        super().__init__("ngtcp2")
        self.root = os.path.join(self.dir, "www")
        os.mkdir(self.root)
        self.digests = {}
        rnd = random.Random(7)
        for n in SIZES:
            data = rnd.randbytes(n) if n else b""
            # ("/<number>" is the server's generated response: name files f<size>)
            with open(os.path.join(self.root, f"f{n}"), "wb") as f:
                f.write(data)
            self.digests[n] = hashlib.sha256(data).hexdigest()

    @staticmethod
    def path(n):
        """The URL path of the n-byte file (ngtcp2 answers an empty file
        with 404: 0 B is its generated "/0", an empty body)."""
        return f"/f{n}" if n else "/0"

    def start(self):
        self._spawn([GTLSSERVER, "-q", "-d", self.root, "--timeout=30s", "127.0.0.1",
                     str(self.port), self.tls["key"], self.tls["cert"]])
        return self


class HypercornQuic(_Proc):
    def __init__(self):
        super().__init__("hypercorn-quic")

    def start(self):
        tcp = free_port()                      # hypercorn needs a TCP bind too
        env = dict(os.environ, PYTHONPATH=_TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._spawn([sys.executable, "-m", "hypercorn", "support.http_app:app",
                     "--bind", f"127.0.0.1:{tcp}", "--quic-bind", f"127.0.0.1:{self.port}",
                     "--certfile", self.tls["cert"], "--keyfile", self.tls["key"],
                     "--workers", "1"], env=env, cwd=_TESTS)
        return self


class OurServer(_Proc):
    def __init__(self, engine=None):
        super().__init__("h3-ours")
        self.engine = engine

    def start(self):
        argv = [sys.executable, os.path.join(_TESTS, "support", "h3_server.py"),
                str(self.port), self.tls["cert"], self.tls["key"]]
        if self.engine:
            argv.append(self.engine)
        self._spawn(argv, cwd=_TESTS)
        return self


class LossyRelay:
    """client <-> relay port <-> server; ``drop`` of the datagrams are lost
    each way, and one in ``reorder`` is held back and sent after the next
    one. Only loopback addresses."""

    def __init__(self, server_port, drop=0.05, reorder=10, seed=1):
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind(("127.0.0.1", 0))
        for s in (self.sock, self.up):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.port = self.sock.getsockname()[1]
        self.drop = drop
        self.reorder = reorder
        self.rnd = random.Random(seed)
        self.client = None
        self.dropped = self.relayed = self.reordered = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        held = {}
        while not self.stopping:
            r, _, _ = select.select([self.sock, self.up], [], [], 0.05)
            for s in r:
                data, addr = s.recvfrom(65536)
                if s is self.sock:
                    self.client = addr
                    out, dest = self.up, self.server
                else:
                    if self.client is None:
                        continue
                    out, dest = self.sock, self.client
                if self.rnd.random() < self.drop:
                    self.dropped += 1
                    continue
                key = id(out)
                if key not in held and self.rnd.randrange(self.reorder) == 0:
                    held[key] = (data, dest)
                    self.reordered += 1
                    continue
                out.sendto(data, dest)
                self.relayed += 1
                if key in held:
                    d, dst = held.pop(key)
                    out.sendto(d, dst)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
        self.up.close()
