"""ringline.memcache over TLS against a memcached built with TLS (skipped
where memcached or its TLS support is missing).

Runs on whichever backend RINGLINE_BACKEND selects (io_uring or poll). The
``server`` (one real memcached per module) and ``port`` (flushed for each
test) fixtures are in tests/clients/conftest.py; the stub servers in
support/memcache_stubs.py.
"""
import asyncio
import os
import ssl
import subprocess

import pytest

import ringline.memcache as mc
from support import run
from support.memcached import Memcached, have_memcached, memcached_has_tls


pytestmark = pytest.mark.skipif(not have_memcached(), reason="memcached is not installed")


# ---------------------------------------------------------------------------
# TLS


def _tls_skip_reason():
    if not memcached_has_tls():
        return "memcached built without TLS (memcached -h has no --enable-ssl)"
    try:
        import ringline._conn.tls  # noqa: F401
    except ImportError as exc:
        return f"ringline._tls is not available yet: {exc}"
    return None


@pytest.mark.skipif(_tls_skip_reason() is not None, reason=str(_tls_skip_reason()))
def test_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    m = Memcached(extra=["-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}"]).start()
    try:
        async def main():
            ctx = ssl.create_default_context(cafile=str(cert))
            async with mc.connect("127.0.0.1", m.port, ssl=ctx,
                                  server_hostname="localhost") as c:
                assert await c.set(b"k", b"over tls")
                assert await c.get(b"k") == b"over tls"
                big = os.urandom(300_000)
                assert await c.set(b"big", big) and await c.get(b"big") == big
                got = await asyncio.gather(*(c.get(b"k") for _ in range(200)))
                assert got == [b"over tls"] * 200
                assert (await c.mg(b"k", "v")).value == b"over tls"
                assert await c.set(b"ba", bytearray(big)) and await c.get(b"ba") == big
            async with mc.connect("127.0.0.1", m.port, ssl=ctx, server_hostname="localhost",
                                  zero_copy=True) as z:
                v = await z.get(b"big")
                assert isinstance(v, memoryview) and v == big
        run(main)
    finally:
        m.stop()
