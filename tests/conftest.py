"""Shared fixtures for the ringline behaviour suite.

Every loop-level test is parametrized over two loop factories:

* ``asyncio``  -- ``asyncio.SelectorEventLoop``: the reference; validates the test.
* ``ringline`` -- ``ringline.new_event_loop()``: the implementation under test.

``ringline`` is imported lazily so the reference cases still run (and the
ringline cases fail at setup) while the package is incomplete.
"""
import asyncio
import contextlib
import socket

import pytest

# Upper bound for any single await driven by ``run()`` below. Tests are meant
# to finish well under this; it turns a hung loop into a prompt failure
# (pytest-timeout's 120 s from pyproject remains the hard backstop).
STEP_TIMEOUT = 5.0


def _asyncio_factory():
    return asyncio.SelectorEventLoop()


def _ringline_factory():
    import ringline

    return ringline.new_event_loop()


LOOP_FACTORIES = {
    "asyncio": _asyncio_factory,
    "ringline": _ringline_factory,
}


@pytest.fixture(params=list(LOOP_FACTORIES), ids=list(LOOP_FACTORIES))
def loop_factory(request):
    """A zero-argument callable returning a new, not-yet-running event loop."""
    return LOOP_FACTORIES[request.param]


@pytest.fixture
def loop(loop_factory):
    lp = loop_factory()
    try:
        yield lp
    finally:
        if not lp.is_closed():
            if lp.is_running():  # should never happen; don't hang teardown
                lp.stop()
            else:
                try:
                    _cancel_leftover_tasks(lp)
                    lp.run_until_complete(
                        asyncio.wait_for(lp.shutdown_asyncgens(), STEP_TIMEOUT))
                    lp.run_until_complete(
                        asyncio.wait_for(lp.shutdown_default_executor(),
                                         STEP_TIMEOUT))
                finally:
                    lp.close()


def _cancel_leftover_tasks(lp):
    pending = [t for t in asyncio.all_tasks(lp) if not t.done()]
    if not pending:
        return
    for t in pending:
        t.cancel()
    lp.run_until_complete(asyncio.wait_for(
        asyncio.gather(*pending, return_exceptions=True), STEP_TIMEOUT))


def run(loop, aw, timeout=STEP_TIMEOUT):
    """Run ``aw`` to completion on ``loop``, bounded by ``timeout`` seconds."""
    return loop.run_until_complete(asyncio.wait_for(aw, timeout))


def free_port(host="127.0.0.1"):
    """A TCP port on ``host`` that nothing is listening on (at return time)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tcp_listener(backlog=16):
    """A non-blocking TCP listening socket bound to 127.0.0.1 (ephemeral)."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(backlog)
    lsock.setblocking(False)
    return lsock


def tcp_pair():
    """A connected pair of TCP sockets over loopback: (ours, peer).

    ``ours`` is non-blocking (for the loop); ``peer`` is blocking with a
    timeout, to be driven directly by the test or a helper thread.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        peer = socket.create_connection(lsock.getsockname(), timeout=5)
        ours, _ = lsock.accept()
    ours.setblocking(False)
    peer.settimeout(5)
    return ours, peer


def udp_pair():
    """Two UDP sockets on loopback, each connected to nothing: (ours, peer).

    ``ours`` is non-blocking; ``peer`` is blocking with a timeout.
    """
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.bind(("127.0.0.1", 0))
    ours.setblocking(False)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5)
    return ours, peer


@contextlib.contextmanager
def closing_all(*socks):
    try:
        yield socks
    finally:
        for s in socks:
            s.close()
