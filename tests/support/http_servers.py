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
* ``tls_files(dir)``: a trustme CA and a 127.0.0.1/localhost certificate.

``have_nginx()`` / ``have_hypercorn()`` tell whether each can run here.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from ringline.bench.nginx import SIZES, Nginx, have_nginx, tls_files
from ringline.bench.nginx import wait_port as _wait_port

from .net import free_port

__all__ = ["SIZES", "Nginx", "Hypercorn", "have_nginx", "have_hypercorn", "tls_files"]


def have_hypercorn():
    try:
        import hypercorn  # noqa: F401
        return True
    except ImportError:
        return False


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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
