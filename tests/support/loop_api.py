"""Helpers shared by the event-loop API tests (tests/loop/test_loop_api_*.py).

Owns ``cvar`` (the one context variable the context-propagation tests set and
read; it keeps its ``"default"`` value in the test's own context),
``run_briefly`` (turn a loop for a short while, bounded like every ``run``)
and ``Boom`` (the exception those tests raise on purpose, so that nothing
else can be mistaken for it). Stateless: nothing here outlives a test.
"""
import asyncio
import contextvars

from support.loops import run

cvar = contextvars.ContextVar("cvar", default="default")


def run_briefly(loop, seconds=0.05):
    """Run ``loop`` (not running) for about ``seconds``."""
    run(asyncio.sleep(seconds), loop=loop)


class Boom(Exception):
    """The exception a test raises on purpose."""
