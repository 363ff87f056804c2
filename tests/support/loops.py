"""Driving coroutines in tests: the one ``run()`` helper, the loop factories
the ``loop`` fixture is parametrized over, and that fixture's teardown.

``run(main, *args, loop=None, timeout=RUN_TIMEOUT, backend=None)`` runs
``main`` (an awaitable, or an async function called as ``main(*args)``) to
completion and returns its result:

* with ``loop``: on that loop (``run_until_complete``; the loop stays open,
  the fixture that made it closes it);
* without: on a fresh ringline loop (``asyncio.Runner``, closed on return);
* ``backend``: first asserts the loop is a ringline loop on that backend
  ("io_uring" or "poll"), so a test parametrized over backends cannot
  silently run twice on the same one.

Every call is bounded by ``timeout`` seconds (``asyncio.wait_for``): a hung
loop is a prompt failure, not a stuck suite (pytest-timeout's 120 s from
pyproject stays the hard backstop). ``STEP_TIMEOUT`` bounds each teardown
step of a loop.
"""
import asyncio
import os

import ringline

# The default bound of one run() call; tests that knowingly take longer pass
# their own timeout.
RUN_TIMEOUT = 60.0
# The bound of each teardown step (and of checks that something is prompt).
STEP_TIMEOUT = 5.0

# The backends a backend-parametrized test runs on: the one RINGLINE_BACKEND
# names (the suite's io_uring and poll passes), else both.
BACKENDS = ([os.environ["RINGLINE_BACKEND"]] if os.environ.get("RINGLINE_BACKEND")
            else ["io_uring", "poll"])


def run(main, *args, loop=None, timeout=RUN_TIMEOUT, backend=None):
    """Run ``main`` to completion, bounded by ``timeout`` seconds (see the
    module docstring)."""
    async def bounded():
        if backend is not None:
            running = asyncio.get_running_loop()
            assert isinstance(running, ringline.Loop), running
            assert ringline.backend(running).name == backend
        aw = main(*args) if callable(main) else main
        return await asyncio.wait_for(aw, timeout)

    if loop is not None:
        return loop.run_until_complete(bounded())
    with asyncio.Runner(loop_factory=ringline.new_event_loop) as runner:
        return runner.run(bounded())


def _asyncio_factory():
    return asyncio.SelectorEventLoop()


def _ringline_factory():
    return ringline.new_event_loop()


# asyncio.SelectorEventLoop is the reference that validates a test;
# ringline.new_event_loop() the implementation under test.
LOOP_FACTORIES = {
    "asyncio": _asyncio_factory,
    "ringline": _ringline_factory,
}


def close_loop(lp):
    """Tear a test's loop down: cancel leftover tasks, shut down async
    generators and the default executor (each step bounded), close it."""
    if lp.is_closed():
        return
    if lp.is_running():  # should never happen; don't hang teardown
        lp.stop()
        return
    try:
        _cancel_leftover_tasks(lp)
        lp.run_until_complete(asyncio.wait_for(lp.shutdown_asyncgens(), STEP_TIMEOUT))
        lp.run_until_complete(
            asyncio.wait_for(lp.shutdown_default_executor(), STEP_TIMEOUT))
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
