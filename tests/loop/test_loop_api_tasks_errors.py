"""Event-loop API, futures, tasks and errors: create_future / create_task
(names, contexts, task factories, cancellation), exception handlers and
the default handler, unretrieved task exceptions, debug mode (slow
callbacks, thread checks), as documented for asyncio 3.11.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` / ``loop_factory`` fixtures of conftest.py;
helpers shared with the other test_loop_api_*.py files are in
support/loop_api.py.
"""
import asyncio
import contextvars
import logging
import re
import threading
import time

import pytest

from support import run
from support.loop_api import Boom, cvar, run_briefly


# ---------------------------------------------------------------------------
# futures and tasks
# ---------------------------------------------------------------------------

def test_create_future(loop):
    fut = loop.create_future()
    assert asyncio.isfuture(fut)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_later(0.01, fut.set_result, 7)
    assert run(fut, loop=loop) == 7


def test_create_task_and_names(loop):
    async def coro():
        await asyncio.sleep(0)
        return asyncio.current_task()

    t1 = loop.create_task(coro(), name="alpha")
    t2 = loop.create_task(coro())
    assert t1.get_name() == "alpha"
    assert re.fullmatch(r"Task-\d+", t2.get_name())
    t2.set_name("beta")
    assert t2.get_name() == "beta"
    assert t1.get_loop() is loop
    cur1 = run(t1, loop=loop)
    cur2 = run(t2, loop=loop)
    assert cur1 is t1 and cur2 is t2


def test_create_task_with_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(cvar.set, "task-ctx")

    async def coro():
        val = cvar.get()
        cvar.set("modified-in-task")
        return val

    task = loop.create_task(coro(), context=ctx)
    assert run(task, loop=loop) == "task-ctx"
    assert ctx[cvar] == "modified-in-task"
    assert cvar.get() == "default"


def test_create_task_rejects_non_coroutine(loop):
    with pytest.raises(TypeError):
        loop.create_task(lambda: None)


def test_task_factory(loop):
    calls = []

    def factory(lp, coro, **kwargs):
        calls.append((lp, kwargs))
        return asyncio.Task(coro, loop=lp, **kwargs)

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def coro():
        return cvar.get()

    # 3.11: without context= the factory is called as factory(loop, coro)
    t = loop.create_task(coro(), name="named-via-factory")
    assert calls[-1] == (loop, {})
    assert t.get_name() == "named-via-factory"
    assert loop.run_until_complete(t) == "default"

    # 3.11: with context= it is called as factory(loop, coro, context=ctx)
    ctx = contextvars.copy_context()
    ctx.run(cvar.set, "factory-ctx")
    t = loop.create_task(coro(), context=ctx)
    assert calls[-1] == (loop, {"context": ctx})
    assert loop.run_until_complete(t) == "factory-ctx"

    # tasks created implicitly (run_until_complete(coro)) use it too
    n = len(calls)
    assert loop.run_until_complete(coro()) == "default"
    assert len(calls) == n + 1

    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    loop.run_until_complete(coro())
    assert len(calls) == n + 1


def test_set_task_factory_rejects_non_callable(loop):
    with pytest.raises(TypeError):
        loop.set_task_factory(42)


def test_task_cancellation(loop):
    started = loop.create_future()

    async def sleeper():
        started.set_result(None)
        await asyncio.sleep(3)

    async def main():
        t = asyncio.ensure_future(sleeper())
        await started
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()

    assert run(main(), loop=loop) is True


# ---------------------------------------------------------------------------
# exception handling
# ---------------------------------------------------------------------------


def test_exception_handler_set_get_and_called(loop):
    contexts = []

    def handler(lp, context):
        contexts.append((lp, context))

    assert loop.get_exception_handler() is None
    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler

    exc = Boom("in callback")

    def bad():
        raise exc

    loop.call_soon(bad)
    loop.call_soon(lambda: None)
    run_briefly(loop, 0.01)
    assert len(contexts) == 1
    lp, context = contexts[0]
    assert lp is loop
    assert context["exception"] is exc
    assert isinstance(context["message"], str) and context["message"]
    # the loop keeps running after a callback raised
    assert run(asyncio.sleep(0, "alive"), loop=loop) == "alive"

    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


def test_exception_in_timer_callback_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    exc = Boom("in timer")

    def bad():
        raise exc

    loop.call_later(0.001, bad)
    run_briefly(loop, 0.03)
    assert [c["exception"] for c in contexts] == [exc]


def test_set_exception_handler_rejects_non_callable(loop):
    with pytest.raises(TypeError):
        loop.set_exception_handler("nope")


def test_default_exception_handler_logs(loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    exc = Boom("logged-by-default")

    def bad():
        raise exc

    loop.call_soon(bad)
    run_briefly(loop, 0.01)
    errors = [r for r in caplog.records
              if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert errors, "default handler did not log to the 'asyncio' logger"
    assert any(r.exc_info and r.exc_info[1] is exc for r in errors)


def test_call_exception_handler_uses_default_and_message(loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    exc = Boom("direct")
    loop.call_exception_handler({"message": "custom message 123",
                                 "exception": exc})
    errors = [r for r in caplog.records
              if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert any("custom message 123" in r.getMessage() for r in errors)
    assert any(r.exc_info and r.exc_info[1] is exc for r in errors)


def test_call_exception_handler_when_handler_raises(loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    handler_exc = Boom("handler failed")
    calls = []

    def handler(lp, context):
        calls.append(context)
        raise handler_exc

    loop.set_exception_handler(handler)
    # must not propagate
    loop.call_exception_handler({"message": "original"})
    assert len(calls) == 1 and calls[0]["message"] == "original"
    errors = [r for r in caplog.records
              if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert any(r.exc_info and r.exc_info[1] is handler_exc for r in errors)
    assert any("exception handler" in r.getMessage() for r in errors)

    # same when triggered by a failing callback on the running loop
    caplog.clear()
    loop.call_soon(lambda: 1 / 0)
    run_briefly(loop, 0.01)
    assert len(calls) == 2
    assert isinstance(calls[1]["exception"], ZeroDivisionError)
    assert any(r.exc_info and r.exc_info[1] is handler_exc
               for r in caplog.records)


def test_unretrieved_task_exception_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    exc = Boom("never retrieved")

    async def failing():
        raise exc

    task = loop.create_task(failing())
    run_briefly(loop, 0.01)
    assert task.done()
    del task
    import gc
    gc.collect()
    assert any(c.get("exception") is exc for c in contexts)


# ---------------------------------------------------------------------------
# debug mode
# ---------------------------------------------------------------------------

def test_debug_flag(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_debug_slow_callback_warning(loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    loop.call_soon(time.sleep, 0.1)
    run_briefly(loop, 0.01)
    warnings = [r for r in caplog.records
                if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert any("took" in r.getMessage() for r in warnings), \
        [r.getMessage() for r in caplog.records]


def test_no_slow_callback_warning_for_fast_callbacks(loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    loop.set_debug(True)
    loop.slow_callback_duration = 0.5
    loop.call_soon(lambda: None)
    run_briefly(loop, 0.01)
    assert not [r for r in caplog.records
                if r.name == "asyncio" and r.levelno == logging.WARNING
                and "took" in r.getMessage()]


def test_debug_call_soon_from_other_thread_raises(loop):
    loop.set_debug(True)

    def in_thread():
        try:
            loop.call_soon(lambda: None)
        except RuntimeError as exc:
            return exc
        return None

    async def main():
        return await loop.run_in_executor(None, in_thread)

    exc = run(main(), loop=loop)
    assert isinstance(exc, RuntimeError)


def test_debug_call_soon_threadsafe_from_other_thread_ok(loop):
    loop.set_debug(True)
    fut = loop.create_future()
    t = threading.Thread(
        target=lambda: loop.call_soon_threadsafe(fut.set_result, "ok"))
    t.start()
    try:
        assert run(fut, loop=loop) == "ok"
    finally:
        t.join()
