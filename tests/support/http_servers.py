"""Real HTTP servers for the ringline.http tests, started on loopback with
temporary files and stopped by the fixture that started them.

* ``Nginx`` (ringline.bench.nginx, shared with the benchmark): the Debian
  nginx binary with a generated config: plain HTTP/1.1 on one port, HTTP/2
  (and 1.1) over TLS on another, static files of 0 B .. 16 MiB, gzip for
  text, a redirect, ``X-Conn: $connection`` on every response (so tests
  count connections the server saw), and a short keepalive_timeout on a
  third port (idle-close tests).
* ``Hypercorn``: ``hypercorn support.http_app:app`` on a plain port (h1 and
  h2c) and a TLS port (h1 and h2 by ALPN).
* ``Nghttpd``: nghttp2's nghttpd (a third, independent HTTP/2
  implementation) serving nginx's static files: h2c with prior knowledge on
  one port, h2 over TLS on another; ``--echo-upload`` answers a POST with
  its body.
* ``tls_files(dir)``: a trustme CA and a 127.0.0.1/localhost certificate.

``have_nginx()`` / ``have_hypercorn()`` / ``have_nghttpd()`` tell whether
each can run here.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from ringline.bench.childio import stop_child
from ringline.bench.nginx import SIZES, Nginx, have_nginx, tls_files
from ringline.bench.nginx import wait_port as _wait_port

from .net import free_port

__all__ = ["SIZES", "Nginx", "Hypercorn", "Nghttpd", "have_nginx", "have_hypercorn",
           "have_nghttpd", "tls_files"]

NGHTTPD = shutil.which("nghttpd") or ("/usr/sbin/nghttpd" if os.path.exists("/usr/sbin/nghttpd")
                                      else None)


def have_nghttpd():
    return NGHTTPD is not None


def have_hypercorn():
    import importlib.util
    return importlib.util.find_spec("hypercorn") is not None


class Hypercorn:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ringline-hypercorn-")
        self.port = free_port()
        self.tls_port = free_port()
        self.tls = tls_files(self.dir)
        self.log = os.path.join(self.dir, "hypercorn.log")
        self.proc = None

    def start(self):
        tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=tests_dir + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hypercorn", "support.http_app:app",
                 "--insecure-bind", f"127.0.0.1:{self.port}",
                 "--bind", f"127.0.0.1:{self.tls_port}",
                 "--certfile", self.tls["cert"], "--keyfile", self.tls["key"],
                 "--keep-alive", "30", "--workers", "1"],
                stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=tests_dir)
        deadline = time.monotonic() + 20
        for port in (self.port, self.tls_port):
            _wait_port(port, self.proc, self.log, deadline)
        return self

    def stop(self):
        stop_child(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Nghttpd:
    """nghttpd serving ``root`` (an Nginx's www dir): h2c on ``port``, TLS
    on ``tls_port``."""

    def __init__(self, root):
        self.dir = tempfile.mkdtemp(prefix="ringline-nghttpd-")
        self.root = root
        self.port = free_port()
        self.tls_port = free_port()
        self.tls = tls_files(self.dir)
        self.log = os.path.join(self.dir, "nghttpd.log")
        self.procs = []

    def start(self):
        with open(self.log, "wb") as logf:
            common = ["-d", self.root, "--echo-upload", "-a", "127.0.0.1"]
            self.procs.append(subprocess.Popen([NGHTTPD, *common, "--no-tls", str(self.port)],
                                               stdout=logf, stderr=subprocess.STDOUT))
            self.procs.append(subprocess.Popen([NGHTTPD, *common, str(self.tls_port),
                                                self.tls["key"], self.tls["cert"]],
                                               stdout=logf, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 10
        _wait_port(self.port, self.procs[0], self.log, deadline)
        _wait_port(self.tls_port, self.procs[1], self.log, deadline)
        return self

    def stop(self):
        for p in self.procs:
            stop_child(p)
        shutil.rmtree(self.dir, ignore_errors=True)
