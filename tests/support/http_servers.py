"""Real HTTP servers for the ringline.http tests, started on loopback with
temporary files and stopped by the fixture that started them.

* ``Nginx``: the Debian nginx binary with a generated config: plain
  HTTP/1.1 on one port, HTTP/2 (and 1.1) over TLS on another, static files
  of 0 B .. 16 MiB, gzip for text, a redirect, ``X-Conn: $connection`` on
  every response (so tests count connections the server saw), and a short
  keepalive_timeout on a third port (idle-close tests).
* ``Hypercorn``: ``hypercorn support.http_app:app`` on a plain port (h1 and
  h2c) and a TLS port (h1 and h2 by ALPN).
* ``tls_files(dir)``: a trustme CA and a 127.0.0.1/localhost certificate.

``have_nginx()`` / ``have_hypercorn()`` tell whether each can run here.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from .net import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)
SIZES = (0, 1, 1024, 65536, 1 << 20, 16 << 20)


def have_nginx():
    return NGINX is not None


def have_hypercorn():
    try:
        import hypercorn  # noqa: F401
        return True
    except ImportError:
        return False


def tls_files(directory):
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    out = {"ca": os.path.join(directory, "ca.pem"), "cert": os.path.join(directory, "cert.pem"),
           "key": os.path.join(directory, "key.pem")}
    ca.cert_pem.write_to_path(out["ca"])
    cert.private_key_pem.write_to_path(out["key"])
    with open(out["cert"], "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    return out


def _wait_port(port, proc, log, deadline):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not come up: {_tail(log)}")


def _tail(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return "(no log)"


def _pattern(n):
    return (b"0123456789" * (n // 10 + 1))[:n]


class Nginx:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ringline-nginx-")
        self.port = free_port()
        self.tls_port = free_port()
        self.idle_port = free_port()
        self.tls = tls_files(self.dir)
        self.proc = None
        root = os.path.join(self.dir, "www")
        os.makedirs(root)
        for n in SIZES:
            with open(os.path.join(root, f"f{n}"), "wb") as f:
                f.write(_pattern(n))
        with open(os.path.join(root, "text.txt"), "wb") as f:
            f.write(b"hello ringline http client\n" * 4000)
        self.log = os.path.join(self.dir, "error.log")
        conf = f"""
daemon off;
master_process off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.log} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    default_type application/octet-stream;
    keepalive_requests 100000;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 10;
    types {{ text/plain txt; }}
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{self.port};
        listen 127.0.0.1:{self.tls_port} ssl http2;
        ssl_certificate {self.tls['cert']};
        ssl_certificate_key {self.tls['key']};
        root {root};
        add_header X-Conn $connection always;
        location = /redirect {{ return 302 /f1024; }}
        location = /upload {{
            # the body is read (and discarded); 200 with the length seen
            client_body_buffer_size 64m;
            return 200 "$content_length";
        }}
    }}
    server {{
        listen 127.0.0.1:{self.idle_port};
        keepalive_timeout 1s;
        root {root};
        add_header X-Conn $connection always;
    }}
}}
"""
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)

    def start(self):
        self.proc = subprocess.Popen([NGINX, "-c", self.conf, "-p", self.dir, "-e", self.log],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        for port in (self.port, self.tls_port, self.idle_port):
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
