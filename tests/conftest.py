"""Shared fixtures of the ringline test suite (its helpers live in the
``support`` package: tests/support/).

* ``loop_factory`` / ``loop``: every loop-level test is parametrized over two
  loop factories: ``asyncio`` (``asyncio.SelectorEventLoop``: the reference;
  validates the test) and ``ringline`` (``ringline.new_event_loop()``: the
  implementation under test). ``loop`` is a fresh, not-yet-running loop that
  is torn down (leftover tasks cancelled, each step bounded) and closed after
  the test.
* ``run``: ``support.run`` on a fresh ringline loop of each backend of
  ``support.BACKENDS`` (RINGLINE_BACKEND set for the test), asserting the
  backend it got.

The machine's proxy variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY,
NO_PROXY, any case) are removed for the whole session, subprocesses
included: ``ringline.http.Client`` reads them (``trust_env``, as httpx), and
a test's traffic must never leave loopback through a proxy the machine
names. tests/clients/test_http_proxy.py sets them per test.
"""
import functools
import os

import pytest

from support import BACKENDS, LOOP_FACTORIES, close_loop
from support import run as _run

for _name in [n for n in os.environ
              if n.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")]:
    del os.environ[_name]


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
        close_loop(lp)


@pytest.fixture(params=BACKENDS)
def run(request, monkeypatch):
    """run(main, timeout=...): support.run on a fresh ringline loop of the
    parametrized backend."""
    monkeypatch.setenv("RINGLINE_BACKEND", request.param)
    return functools.partial(_run, backend=request.param)
