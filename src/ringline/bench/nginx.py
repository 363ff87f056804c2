"""An nginx on loopback with a generated config: the fast local HTTP server
of the HTTP client benchmark (``ringline bench --http``) and of the
ringline.http tests (tests/support/http_servers.py).

Owns ``Nginx``: a temp dir with static files, a config and (when trustme is
installed) a test CA and certificate; ``start()`` runs the Debian nginx
binary in the foreground (one worker, no master) and waits for its ports;
``stop()`` terminates it and removes the temp dir. Ports:

* ``port``: plain HTTP/1.1;
* ``tls_port``: TLS with HTTP/2 and HTTP/1.1 by ALPN (needs trustme);
* ``idle_port``: plain HTTP/1.1 with keepalive_timeout 1 s.

Files: ``/f{N}`` for N in ``SIZES`` (the bytes b"0123456789" repeated),
``/text.txt`` (gzip-compressed on the fly), ``/redirect`` (302 to /f1024),
``/upload`` (reads and discards the body, answers its Content-Length).
Every response carries ``X-Conn: $connection`` (the server's connection
serial), so a client can count the connections the server saw.

Only 127.0.0.1 is ever bound; nginx is never left running: it is a child
of the caller, stopped by ``stop()``.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Dict, Optional

from .childio import free_port, log_tail, stop_child

__all__ = ["Nginx", "NGINX", "SIZES", "have_nginx", "tls_files", "pattern"]

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)
SIZES = (0, 1, 16, 1024, 65536, 1 << 20, 16 << 20)


def have_nginx() -> bool:
    return NGINX is not None


def pattern(n: int) -> bytes:
    return (b"0123456789" * (n // 10 + 1))[:n]


def tls_files(directory: str) -> Dict[str, str]:
    """A trustme CA and a certificate for 127.0.0.1 and localhost, as PEM
    files in directory: {"ca", "cert", "key"} paths."""
    import trustme  # type: ignore[import-not-found,import-untyped]
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


def wait_port(port: int, proc: "subprocess.Popen[bytes]", log: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {log_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not come up: {log_tail(log)}")


class Nginx:
    def __init__(self, tls: bool = True) -> None:
        if NGINX is None:
            raise RuntimeError("nginx is not installed (scripts/setup-system.sh installs it)")
        self.dir = tempfile.mkdtemp(prefix="ringline-nginx-")
        self.port = free_port()
        self.tls_port = free_port()
        self.idle_port = free_port()
        self.tls: Optional[Dict[str, str]] = tls_files(self.dir) if tls else None
        self.proc: Optional[subprocess.Popen[bytes]] = None
        root = os.path.join(self.dir, "www")
        os.makedirs(root)
        for n in SIZES:
            with open(os.path.join(root, f"f{n}"), "wb") as f:
                f.write(pattern(n))
        with open(os.path.join(root, "text.txt"), "wb") as f:
            f.write(b"hello ringline http client\n" * 4000)
        self.log = os.path.join(self.dir, "error.log")
        d = self.dir
        tls_listen = ""
        if self.tls is not None:
            tls_listen = (f"listen 127.0.0.1:{self.tls_port} ssl http2;\n"
                          f"        ssl_certificate {self.tls['cert']};\n"
                          f"        ssl_certificate_key {self.tls['key']};\n"
                          f"        http2_max_concurrent_streams 128;")
        conf = f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {self.log} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 10;
    types {{ text/plain txt; }}
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{self.port} backlog=1024;
        {tls_listen}
        root {root};
        add_header X-Conn $connection always;
        location = /redirect {{ return 302 /f1024; }}
        location = /upload {{ return 200 "$content_length"; }}
    }}
    server {{
        listen 127.0.0.1:{self.idle_port};
        keepalive_timeout 1s;
        root {root};
        add_header X-Conn $connection always;
    }}
}}
"""
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)

    def start(self) -> "Nginx":
        assert NGINX is not None
        self.proc = subprocess.Popen([NGINX, "-c", self.conf, "-p", self.dir, "-e", self.log],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        ports = [self.port, self.idle_port] + ([self.tls_port] if self.tls else [])
        for port in ports:
            wait_port(port, self.proc, self.log, deadline)
        return self

    def stop(self) -> None:
        stop_child(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)
