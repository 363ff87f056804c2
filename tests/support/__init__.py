"""Shared helpers of the ringline test suite (a package: ``tests/`` is on
sys.path through pyproject's ``pythonpath``, so every test imports
``from support import ...``).

Owns the repository paths the tests read (``REPO``, ``DOCS``, ``TOOLS``) and
re-exports the helpers almost every test file needs, from the modules that
own them:

* ``support.loops``: ``run()`` (the one way a test drives a coroutine to
  completion, bounded in time), the loop factories the ``loop`` fixture is
  parametrized over, and the teardown that fixture uses.
* ``support.conn``: ``echo`` and ``read_exactly`` over the native ``Conn``.
* ``support.net``: loopback sockets (free ports, listeners, connected TCP and
  UDP pairs).
* ``support.servers``: the shared stub servers on stock asyncio (a server in
  its own thread, one answering each line with a reply function, the same
  answers from a server on the running loop).
* ``support.strace``: syscall counting under ``strace -c -f``.
* ``support.redis_server`` / ``support.memcached``: real redis-server and
  memcached peers started and stopped by the tests; ``support.kv_server``:
  ringline.kv in a subprocess and a raw RESP connection.
* ``support.proc``: /proc probes of the test process (open fds, RSS).
* ``support.portproc``: a peer subprocess that prints its port and serves
  until stdin closes (the clients' hostile fake servers).
* helpers shared by the files of one split test topic: ``support.loop_api``
  (tests/loop/test_loop_api_*.py), ``support.sock_ops`` (test_sock_ops_*.py),
  ``support.transports`` (test_transport_acceptance_*.py),
  ``support.memcache_stubs`` (clients/test_memcache_client_*.py).
* ``support.fakering``: the fake-ring loop fixture and helpers of the file
  operation tests (tests/loop/test_file_ops.py, tests/kv/test_kv_journal_sync.py).
* ``support/tools/``: small programs the tests run in a subprocess.

Nothing here is a test; nothing here outlives the test that used it (every
server, process and socket a helper makes is closed by the helper or by its
context manager).
"""
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
DOCS = REPO / "docs"
TOOLS = Path(__file__).resolve().parent / "tools"

__all__ = ["REPO", "DOCS", "TESTS", "TOOLS", "BACKENDS", "LOOP_FACTORIES", "RUN_TIMEOUT",
           "STEP_TIMEOUT", "close_loop", "run", "closing_all", "free_port", "tcp_listener",
           "tcp_pair", "udp_pair"]

from support.loops import (BACKENDS, LOOP_FACTORIES, RUN_TIMEOUT, STEP_TIMEOUT,  # noqa: E402
                           close_loop, run)
from support.net import closing_all, free_port, tcp_listener, tcp_pair, udp_pair  # noqa: E402
