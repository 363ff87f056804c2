"""Fixtures shared by the memcache client tests of this folder
(tests/clients/test_memcache_client_*.py; on top of tests/conftest.py).

* ``server``: a real memcached (support.memcached.Memcached), one per test
  module that asks for it, stopped at the end of that module.
* ``port``: that server's port, its cache flushed for each test.

A test module that defines its own ``server`` / ``port`` (the redis client
tests do) uses its own instead.
"""
import socket

import pytest

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
