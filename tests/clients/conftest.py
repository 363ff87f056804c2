"""Fixtures shared by the client tests of this folder (on top of
tests/conftest.py).

* ``nginx``, ``nghttpd``, ``hypercorn``: the real HTTP servers of
  support.http_servers (TLS, h2, h2c), one per test module that asks for
  it, stopped at the end of that module; skipped when not installed.
  (test_http3.py has its own ``hypercorn``: the QUIC one.)

For the memcache client tests (tests/clients/test_memcache_client_*.py):

* ``server``: a real memcached (support.memcached.Memcached), one per test
  module that asks for it, stopped at the end of that module.
* ``port``: that server's port, its cache flushed for each test.

A test module that defines its own ``server`` / ``port`` (the redis client
tests do) uses its own instead.
"""
import os
import socket

import pytest

from support.http_servers import (Hypercorn, Nghttpd, Nginx, have_hypercorn, have_nghttpd,
                                  have_nginx)
from support.memcached import Memcached


@pytest.fixture(scope="module")
def server():
    m = Memcached().start()
    yield m
    m.stop()


@pytest.fixture
def port(server):
    # a clean cache for every test
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"flush_all\r\n")
        assert s.recv(100) == b"OK\r\n"
    return server.port


@pytest.fixture(scope="module")
def nginx():
    if not have_nginx():
        pytest.skip("nginx is not installed (scripts/setup-system.sh installs it)")
    srv = Nginx().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def nghttpd(nginx):
    if not have_nghttpd():
        pytest.skip("nghttpd is not installed (scripts/setup-system.sh installs it)")
    srv = Nghttpd(os.path.join(nginx.dir, "www")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def hypercorn():
    if not have_hypercorn():
        pytest.skip("hypercorn is not installed (the test extra has it)")
    srv = Hypercorn().start()
    yield srv
    srv.stop()
