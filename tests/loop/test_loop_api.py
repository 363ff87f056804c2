"""Behaviour of the event-loop API (scheduling, lifecycle, tasks, errors,
executors, DNS, signals, fd watchers), as documented for asyncio 3.11.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` / ``loop_factory`` fixtures of conftest.py.
"""
import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import re
import signal
import socket
import threading
import time

import pytest

from support import STEP_TIMEOUT, run

cvar = contextvars.ContextVar("cvar", default="default")


def _run_briefly(loop, seconds=0.05):
    run(asyncio.sleep(seconds), loop=loop)


# ---------------------------------------------------------------------------
# call_soon
# ---------------------------------------------------------------------------

def test_call_soon_runs_in_fifo_order_with_args(loop):
    calls = []
    for i in range(10):
        loop.call_soon(calls.append, i)
    loop.call_soon(lambda *a: calls.append(a), "x", 2, None)
    _run_briefly(loop, 0)
    assert calls == list(range(10)) + [("x", 2, None)]


def test_call_soon_returns_cancellable_handle(loop):
    calls = []
    h1 = loop.call_soon(calls.append, 1)
    h2 = loop.call_soon(calls.append, 2)
    assert not h2.cancelled()
    h2.cancel()
    assert h2.cancelled()
    assert not h1.cancelled()
    _run_briefly(loop, 0)
    assert calls == [1]


def test_call_soon_callbacks_scheduled_by_callbacks_run_later(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "nested")

    loop.call_soon(first)
    loop.call_soon(calls.append, "second")
    _run_briefly(loop, 0.01)
    assert calls == ["first", "second", "nested"]


def test_call_soon_rejects_non_callable_in_debug_mode(loop):
    loop.set_debug(True)  # asyncio only validates callbacks in debug mode
    with pytest.raises(TypeError):
        loop.call_soon(42)
    with pytest.raises(TypeError):
        loop.call_later(0.1, "not callable")


def test_call_soon_with_explicit_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(cvar.set, "in-ctx")
    seen = []

    def cb():
        seen.append(cvar.get())
        cvar.set("changed-by-callback")

    loop.call_soon(cb, context=ctx)
    _run_briefly(loop, 0)
    assert seen == ["in-ctx"]
    # the callback ran *inside* ctx: its mutation is visible there...
    assert ctx[cvar] == "changed-by-callback"
    # ...and not in the test's own context
    assert cvar.get() == "default"


def test_call_soon_default_context_is_a_snapshot_at_call_time(loop):
    seen = []

    def scheduler():
        cvar.set("at-schedule-time")
        loop.call_soon(lambda: seen.append(cvar.get()))
        cvar.set("after-schedule")

    contextvars.copy_context().run(scheduler)
    _run_briefly(loop, 0)
    assert seen == ["at-schedule-time"]


def test_call_later_and_call_at_accept_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(cvar.set, "timer-ctx")
    seen = []
    loop.call_later(0.001, lambda: seen.append(("later", cvar.get())),
                    context=ctx)
    loop.call_at(loop.time() + 0.001,
                 lambda: seen.append(("at", cvar.get())), context=ctx)
    _run_briefly(loop, 0.05)
    assert sorted(seen) == [("at", "timer-ctx"), ("later", "timer-ctx")]


# ---------------------------------------------------------------------------
# call_later / call_at
# ---------------------------------------------------------------------------

def test_call_later_orders_by_deadline(loop):
    calls = []
    loop.call_later(0.06, calls.append, "c")
    loop.call_later(0.02, calls.append, "a")
    loop.call_later(0.04, calls.append, "b")
    _run_briefly(loop, 0.15)
    assert calls == ["a", "b", "c"]


def test_call_at_orders_by_deadline_and_mixes_with_call_later(loop):
    calls = []
    now = loop.time()
    loop.call_at(now + 0.05, calls.append, "at-0.05")
    loop.call_later(0.01, calls.append, "later-0.01")
    loop.call_at(now + 0.03, calls.append, "at-0.03")
    _run_briefly(loop, 0.15)
    assert calls == ["later-0.01", "at-0.03", "at-0.05"]


def test_call_later_does_not_fire_early(loop):
    fired = []
    start = loop.time()
    loop.call_later(0.1, lambda: fired.append(loop.time()))
    _run_briefly(loop, 0.05)
    assert fired == []
    _run_briefly(loop, 0.15)
    assert len(fired) == 1
    # allow a little clock granularity slack, but no early firing
    assert fired[0] - start >= 0.1 - 0.005


def test_zero_and_negative_delays_run_promptly(loop):
    calls = []
    loop.call_later(0.3, calls.append, "later")
    loop.call_later(0, calls.append, "zero")
    loop.call_later(-1, calls.append, "negative")
    loop.call_at(loop.time() - 10, calls.append, "past-at")
    t0 = time.monotonic()
    _run_briefly(loop, 0)
    _run_briefly(loop, 0)
    assert time.monotonic() - t0 < 0.25
    assert set(calls) == {"zero", "negative", "past-at"}
    _run_briefly(loop, 0.35)
    assert calls[-1] == "later"


def test_timer_handle_cancel_before_firing(loop):
    calls = []
    h = loop.call_later(0.01, calls.append, "cancelled")
    keep = loop.call_later(0.01, calls.append, "kept")
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    assert h.cancelled()
    _run_briefly(loop, 0.05)
    assert calls == ["kept"]
    assert not keep.cancelled()


def test_timer_handle_when(loop):
    target = loop.time() + 10
    h = loop.call_at(target, lambda: None)
    assert h.when() == target
    before = loop.time()
    h2 = loop.call_later(5, lambda: None)
    after = loop.time()
    assert before + 5 <= h2.when() <= after + 5
    h.cancel()
    h2.cancel()


def test_timer_cancelled_from_earlier_callback(loop):
    calls = []
    victim = loop.call_later(0.03, calls.append, "victim")
    loop.call_later(0.01, victim.cancel)
    _run_briefly(loop, 0.06)
    assert calls == []
    assert victim.cancelled()


def test_many_timers_all_fire_in_order(loop):
    calls = []
    delays = [(i * 7919) % 50 / 1000 for i in range(200)]
    base = loop.time() + 0.01
    for i, d in enumerate(delays):
        loop.call_at(base + d, calls.append, (d, i))
    _run_briefly(loop, 0.12)
    assert len(calls) == len(delays)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_time_is_monotonic_and_tracks_wall_time(loop):
    samples = [loop.time() for _ in range(1000)]
    assert samples == sorted(samples)
    t0 = loop.time()
    time.sleep(0.05)
    dt = loop.time() - t0
    assert 0.045 <= dt < 1.0


# ---------------------------------------------------------------------------
# call_soon_threadsafe
# ---------------------------------------------------------------------------

def test_call_soon_threadsafe_wakes_blocked_loop(loop):
    fut = loop.create_future()
    # Without a wake-up the loop would sleep until this 2 s timer.
    loop.call_later(2.0, lambda: fut.done() or fut.set_result("timer"))
    seen_thread = []

    def from_thread():
        time.sleep(0.1)
        seen_thread.append(threading.get_ident())
        loop.call_soon_threadsafe(
            lambda v: fut.done() or fut.set_result(v), "thread")

    t = threading.Thread(target=from_thread)
    start = time.monotonic()
    t.start()
    try:
        assert run(fut, loop=loop) == "thread"
    finally:
        t.join()
    assert time.monotonic() - start < 1.0


def test_call_soon_threadsafe_many_threads(loop):
    n_threads, per_thread = 4, 250
    results = []
    done = loop.create_future()
    lock = threading.Lock()
    finished = [0]

    def on_loop(tid, i):
        results.append((tid, i))
        if len(results) == n_threads * per_thread and not done.done():
            done.set_result(None)

    def worker(tid):
        for i in range(per_thread):
            loop.call_soon_threadsafe(on_loop, tid, i)
        with lock:
            finished[0] += 1

    threads = [threading.Thread(target=worker, args=(k,))
               for k in range(n_threads)]
    for t in threads:
        t.start()
    try:
        run(done, loop=loop)
    finally:
        for t in threads:
            t.join()
    assert len(results) == n_threads * per_thread
    for k in range(n_threads):  # per-thread FIFO
        assert [i for tid, i in results if tid == k] == list(range(per_thread))


def test_call_soon_threadsafe_with_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(cvar.set, "ts-ctx")
    fut = loop.create_future()

    def from_thread():
        loop.call_soon_threadsafe(lambda: fut.set_result(cvar.get()),
                                  context=ctx)

    t = threading.Thread(target=from_thread)
    t.start()
    try:
        assert run(fut, loop=loop) == "ts-ctx"
    finally:
        t.join()


# ---------------------------------------------------------------------------
# run_forever / run_until_complete / stop
# ---------------------------------------------------------------------------

def test_stop_from_callback_finishes_current_batch(loop):
    calls = []

    def stopper():
        calls.append("stopper")
        loop.stop()
        loop.call_soon(calls.append, "scheduled-by-stopper")

    loop.call_soon(stopper)
    loop.call_soon(calls.append, "same-batch")
    loop.run_forever()
    assert calls == ["stopper", "same-batch"]
    assert not loop.is_running()
    # The callback scheduled during the last iteration is still pending.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["stopper", "same-batch", "scheduled-by-stopper"]


def test_stop_before_run_forever_runs_one_iteration(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "next-iteration")

    loop.call_soon(first)
    loop.stop()
    start = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - start < 1.0
    assert calls == ["first"]
    loop.stop()
    loop.run_forever()
    assert calls == ["first", "next-iteration"]


def test_stop_before_run_forever_does_not_wait_for_timers(loop):
    loop.call_later(3, lambda: None)
    loop.stop()
    start = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - start < 1.0


def test_run_forever_can_be_restarted(loop):
    counter = []
    for _ in range(3):
        loop.call_soon(counter.append, 1)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert counter == [1, 1, 1]


def test_run_until_complete_returns_result(loop):
    async def coro(x):
        await asyncio.sleep(0)
        return x * 2

    assert loop.run_until_complete(coro(21)) == 42
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "fut-result")
    assert loop.run_until_complete(fut) == "fut-result"
    task = loop.create_task(coro(5))
    assert loop.run_until_complete(task) == 10


def test_run_until_complete_propagates_exception(loop):
    class Boom(Exception):
        pass

    async def coro():
        await asyncio.sleep(0)
        raise Boom("inner")

    with pytest.raises(Boom, match="inner"):
        loop.run_until_complete(coro())
    assert not loop.is_running()
    # loop still usable
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


def test_run_until_complete_stopped_early_raises(loop):
    async def long():
        await asyncio.sleep(3)

    loop.call_later(0.01, loop.stop)
    task = loop.create_task(long())
    with pytest.raises(RuntimeError, match="Event loop stopped before Future "
                                           "completed"):
        loop.run_until_complete(task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)


def test_run_until_complete_rejects_future_of_other_loop(loop, loop_factory):
    other = loop_factory()
    try:
        fut = other.create_future()
        with pytest.raises(ValueError):
            loop.run_until_complete(fut)
    finally:
        other.close()


def test_run_until_complete_rejects_non_awaitable(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(42)


def test_nested_run_raises(loop):
    async def outer():
        inner = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="already running"):
                loop.run_until_complete(inner)
        finally:
            inner.close()
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_forever()
        return "ok"

    assert run(outer(), loop=loop) == "ok"


def test_running_a_loop_inside_another_running_loop_raises(loop, loop_factory):
    other = loop_factory()
    try:
        async def outer():
            coro = asyncio.sleep(0)
            try:
                with pytest.raises(RuntimeError,
                                   match="another loop is running"):
                    other.run_until_complete(coro)
            finally:
                coro.close()
            return "ok"

        assert run(outer(), loop=loop) == "ok"
    finally:
        other.close()


def test_get_running_loop_inside_and_outside(loop):
    async def probe():
        return asyncio.get_running_loop(), asyncio.get_event_loop()

    running, ev = run(probe(), loop=loop)
    assert running is loop and ev is loop
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_is_running(loop):
    seen = []
    assert not loop.is_running()
    loop.call_soon(lambda: seen.append(loop.is_running()))
    _run_briefly(loop, 0)
    assert seen == [True]
    assert not loop.is_running()


# ---------------------------------------------------------------------------
# close / is_closed
# ---------------------------------------------------------------------------

def test_close_running_loop_raises(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(exc)

    loop.call_soon(try_close)
    _run_briefly(loop, 0)
    assert len(errors) == 1
    assert not loop.is_closed()


def test_close_is_idempotent_and_is_closed(loop):
    assert not loop.is_closed()
    loop.close()
    assert loop.is_closed()
    loop.close()
    assert loop.is_closed()


def test_operations_after_close_raise(loop):
    loop.close()

    def closed():
        return pytest.raises(RuntimeError, match="Event loop is closed")

    with closed():
        loop.call_soon(lambda: None)
    with closed():
        loop.call_later(1, lambda: None)
    with closed():
        loop.call_at(loop.time() + 1, lambda: None)
    with closed():
        loop.call_soon_threadsafe(lambda: None)
    with closed():
        loop.run_forever()
    coro = asyncio.sleep(0)
    try:
        with closed():
            loop.run_until_complete(coro)
    finally:
        coro.close()
    coro = asyncio.sleep(0)
    try:
        with closed():
            loop.create_task(coro)
    finally:
        coro.close()
    with closed():
        loop.run_in_executor(None, lambda: None)


def test_close_with_pending_callbacks_discards_them(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_later(0.01, calls.append, 2)
    loop.close()
    time.sleep(0.02)
    assert calls == []


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

class Boom(Exception):
    pass


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
    _run_briefly(loop, 0.01)
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
    _run_briefly(loop, 0.03)
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
    _run_briefly(loop, 0.01)
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
    _run_briefly(loop, 0.01)
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
    _run_briefly(loop, 0.01)
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
    _run_briefly(loop, 0.01)
    warnings = [r for r in caplog.records
                if r.name == "asyncio" and r.levelno == logging.WARNING]
    assert any("took" in r.getMessage() for r in warnings), \
        [r.getMessage() for r in caplog.records]


def test_no_slow_callback_warning_for_fast_callbacks(loop, caplog):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    loop.set_debug(True)
    loop.slow_callback_duration = 0.5
    loop.call_soon(lambda: None)
    _run_briefly(loop, 0.01)
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


# ---------------------------------------------------------------------------
# async generators / default executor shutdown
# ---------------------------------------------------------------------------

def test_shutdown_asyncgens_finalizes_unfinished_generator(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)  # finalization may await
            finalized.append(True)

    async def start():
        g = agen()
        assert await g.__anext__() == 1
        return g

    g = run(start(), loop=loop)
    assert finalized == []
    run(loop.shutdown_asyncgens(), loop=loop)
    assert finalized == [True]
    del g


def test_asyncgen_finalized_by_loop_when_garbage_collected(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            finalized.append(True)

    async def main():
        g = agen()
        await g.__anext__()
        del g
        import gc
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    run(main(), loop=loop)
    assert finalized == [True]


def test_shutdown_default_executor_waits_for_jobs(loop):
    done = []

    def job():
        time.sleep(0.2)
        done.append(True)

    async def main():
        loop.run_in_executor(None, job)
        await asyncio.sleep(0.01)
        await loop.shutdown_default_executor()
        return list(done)

    assert run(main(), loop=loop) == [True]
    with pytest.raises(RuntimeError):
        loop.run_in_executor(None, job)


def test_shutdown_default_executor_without_executor(loop):
    assert run(loop.shutdown_default_executor(), loop=loop) is None


# ---------------------------------------------------------------------------
# run_in_executor
# ---------------------------------------------------------------------------

def test_run_in_executor_default(loop):
    main_ident = threading.get_ident()

    def work(a, b):
        return a + b, threading.get_ident()

    result, ident = run(loop.run_in_executor(None, work, 2, 3), loop=loop)
    assert result == 5
    assert ident != main_ident


def test_run_in_executor_propagates_exception(loop):
    def work():
        raise Boom("in executor")

    with pytest.raises(Boom, match="in executor"):
        run(loop.run_in_executor(None, work), loop=loop)


def test_run_in_executor_explicit_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="explicit-pool") as ex:
        name = run(loop.run_in_executor(
            ex, lambda: threading.current_thread().name), loop=loop)
    assert name.startswith("explicit-pool")


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="custom-default")
    loop.set_default_executor(ex)
    name = run(loop.run_in_executor(
        None, lambda: threading.current_thread().name), loop=loop)
    assert name.startswith("custom-default")
    run(loop.shutdown_default_executor(), loop=loop)
    # shutting down the default executor shuts down the one we set
    with pytest.raises(RuntimeError):
        ex.submit(lambda: None)


def test_set_default_executor_rejects_non_thread_pool(loop):
    # 3.11: anything but a ThreadPoolExecutor is a TypeError
    ex = concurrent.futures.ProcessPoolExecutor(max_workers=1)
    try:
        with pytest.raises(TypeError):
            loop.set_default_executor(ex)
    finally:
        ex.shutdown(wait=False)


def test_run_in_executor_cancel_wrapper(loop):
    gate = threading.Event()

    async def main():
        fut = loop.run_in_executor(None, gate.wait, 2)
        await asyncio.sleep(0.01)
        fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fut
        gate.set()
        return await loop.run_in_executor(None, lambda: "still works")

    assert run(main(), loop=loop) == "still works"


# ---------------------------------------------------------------------------
# getaddrinfo / getnameinfo
# ---------------------------------------------------------------------------

def test_getaddrinfo_numeric(loop):
    res = run(loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM), loop=loop)
    assert res == socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    fam, typ, proto, canon, addr = res[0]
    assert fam == socket.AF_INET and typ == socket.SOCK_STREAM
    assert addr == ("127.0.0.1", 80)


def test_getaddrinfo_numeric_ipv6_and_flags(loop):
    res = run(loop.getaddrinfo(
        "::1", "8080", family=socket.AF_INET6, type=socket.SOCK_DGRAM,
        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV), loop=loop)
    assert res
    assert all(r[0] == socket.AF_INET6 and r[1] == socket.SOCK_DGRAM
               for r in res)
    assert res[0][4][:2] == ("::1", 8080)


def test_getaddrinfo_localhost(loop):
    res = run(loop.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM), loop=loop)
    addrs = {r[4][0] for r in res}
    assert addrs & {"127.0.0.1", "::1"}


def test_getaddrinfo_error_raises_gaierror(loop):
    with pytest.raises(socket.gaierror):
        run(loop.getaddrinfo("not-a-numeric-host", 80,
                                   flags=socket.AI_NUMERICHOST), loop=loop)
    with pytest.raises(socket.gaierror):
        run(loop.getaddrinfo("127.0.0.1", "no-such-service-xyz",
                                   type=socket.SOCK_STREAM), loop=loop)


def test_getnameinfo(loop):
    res = run(loop.getnameinfo(
        ("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV), loop=loop)
    assert res == ("127.0.0.1", "80")
    res = run(loop.getnameinfo(("127.0.0.1", 0)), loop=loop)
    assert res == socket.getnameinfo(("127.0.0.1", 0), 0)


def test_getnameinfo_error_raises_gaierror(loop):
    # getnameinfo only accepts numeric hosts
    with pytest.raises(socket.gaierror):
        run(loop.getnameinfo(("not-a-numeric-host", 80)), loop=loop)


def test_getaddrinfo_runs_off_loop_thread(loop, monkeypatch):
    real = socket.getaddrinfo
    resolver_threads = []

    def slow_getaddrinfo(*args, **kwargs):
        resolver_threads.append(threading.get_ident())
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    events = []

    async def main():
        loop.call_later(0.05, events.append, "timer")
        # a name, not a numeric address: numeric hosts may be answered inline
        res = await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        events.append("resolved")
        return res

    res = run(main(), loop=loop)
    assert res and res[0][4][1] == 80
    assert resolver_threads, "socket.getaddrinfo was not used"
    assert resolver_threads[0] != threading.get_ident()
    assert events == ["timer", "resolved"]


def test_concurrent_getaddrinfo_calls(loop):
    async def main():
        hosts = ["127.0.0.1", "::1", "localhost", "127.0.0.2"] * 4
        return await asyncio.gather(*(
            loop.getaddrinfo(h, 443, type=socket.SOCK_STREAM) for h in hosts))

    results = run(main(), loop=loop)
    assert len(results) == 16
    assert all(results)


# ---------------------------------------------------------------------------
# signals
# ---------------------------------------------------------------------------

def _send_self(sig):
    """os.kill(self) -- but only if that cannot kill the test process."""
    handler = signal.getsignal(sig)
    blocked = sig in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    if handler in (signal.SIG_DFL, None) and not blocked:
        pytest.fail(f"signal {sig} neither has a handler nor is blocked; "
                    "refusing to os.kill() the test process")
    os.kill(os.getpid(), sig)


def test_add_signal_handler_invokes_callback_with_args(loop):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1,
                            lambda *a: got.done() or got.set_result(a),
                            "arg1", 2)
    try:
        loop.call_later(0.01, _send_self, signal.SIGUSR1)
        assert run(got, loop=loop) == ("arg1", 2)
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_signal_delivered_while_loop_blocked(loop):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "sig")
    try:
        loop.call_later(2.0, lambda: got.done() or got.set_result("timer"))

        def sender():
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGUSR1)

        t = threading.Thread(target=sender)
        start = time.monotonic()
        # make sure the process can't be killed by the signal below
        assert (signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None)
                or signal.SIGUSR1 in signal.pthread_sigmask(
                    signal.SIG_BLOCK, [])), "SIGUSR1 not handled"
        t.start()
        try:
            assert run(got, loop=loop) == "sig"
        finally:
            t.join()
        assert time.monotonic() - start < 1.0
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_handler_replaced(loop):
    calls = []
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR2, calls.append, "old")
    loop.add_signal_handler(signal.SIGUSR2,
                            lambda: (calls.append("new"), done.set_result(1)))
    try:
        loop.call_later(0.01, _send_self, signal.SIGUSR2)
        run(done, loop=loop)
        assert calls == ["new"]
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)


def test_remove_signal_handler_unregistered_returns_false(loop):
    assert loop.remove_signal_handler(signal.SIGUSR2) is False


def test_add_signal_handler_invalid_signal(loop):
    with pytest.raises(ValueError):
        loop.add_signal_handler(0, lambda: None)
    with pytest.raises(ValueError):
        loop.add_signal_handler(signal.NSIG + 1, lambda: None)
    with pytest.raises(TypeError):
        loop.add_signal_handler("SIGUSR1", lambda: None)
    with pytest.raises(ValueError):
        loop.remove_signal_handler(signal.NSIG + 1)


def test_add_signal_handler_sigkill_raises(loop):
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, lambda: None)
    assert loop.remove_signal_handler(signal.SIGKILL) is False


def test_add_signal_handler_rejects_coroutines(loop):
    async def coro_fn():
        pass

    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, coro_fn)
    coro = coro_fn()
    try:
        with pytest.raises(TypeError):
            loop.add_signal_handler(signal.SIGUSR1, coro)
    finally:
        coro.close()
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_add_signal_handler_from_non_main_thread_raises(loop):
    result = []

    def in_thread():
        try:
            loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        except Exception as exc:  # noqa: BLE001 - recorded for the assert
            result.append(exc)
        else:
            result.append(None)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert isinstance(result[0], RuntimeError)


def test_add_signal_handler_after_close_raises(loop):
    loop.close()
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, lambda: None)


# ---------------------------------------------------------------------------
# add_reader / add_writer
# ---------------------------------------------------------------------------

@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_add_reader_invoked_with_args(loop, sockpair):
    a, b = sockpair
    got = loop.create_future()

    def on_readable(sock, tag):
        data = sock.recv(100)
        loop.remove_reader(sock)
        got.set_result((tag, data))

    loop.add_reader(a, on_readable, a, "tag")
    loop.call_later(0.02, b.send, b"ping")
    assert run(got, loop=loop) == ("tag", b"ping")
    assert loop.remove_reader(a) is False


def test_add_reader_accepts_raw_fd(loop, sockpair):
    a, b = sockpair
    got = loop.create_future()

    def on_readable():
        got.set_result(a.recv(100))

    loop.add_reader(a.fileno(), on_readable)
    b.send(b"fd")
    try:
        assert run(got, loop=loop) == b"fd"
    finally:
        assert loop.remove_reader(a.fileno()) is True


def test_add_reader_not_called_when_idle(loop, sockpair):
    a, b = sockpair
    calls = []
    loop.add_reader(a, calls.append, 1)
    _run_briefly(loop, 0.05)
    assert calls == []
    assert loop.remove_reader(a) is True


def test_add_reader_is_level_triggered(loop, sockpair):
    a, b = sockpair
    calls = []
    loop.add_reader(a, calls.append, 1)  # never consumes the data
    b.send(b"x")
    _run_briefly(loop, 0.05)
    assert loop.remove_reader(a) is True
    assert len(calls) >= 2
    n = len(calls)
    _run_briefly(loop, 0.02)
    assert len(calls) == n  # removal stops the callbacks
    assert a.recv(10) == b"x"


def test_remove_reader_return_values(loop, sockpair):
    a, b = sockpair
    assert loop.remove_reader(a) is False
    loop.add_reader(a, lambda: None)
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_remove_reader_stops_callbacks(loop, sockpair):
    a, b = sockpair
    calls = []
    loop.add_reader(a, calls.append, 1)
    assert loop.remove_reader(a) is True
    b.send(b"data")
    _run_briefly(loop, 0.05)
    assert calls == []


def test_add_reader_replaces_previous_callback(loop, sockpair):
    a, b = sockpair
    calls = []
    got = loop.create_future()

    def second(tag):
        calls.append(tag)
        a.recv(100)
        if not got.done():
            got.set_result(None)

    loop.add_reader(a, calls.append, "first")
    loop.add_reader(a, second, "second")
    b.send(b"data")
    try:
        run(got, loop=loop)
    finally:
        assert loop.remove_reader(a) is True
    assert calls == ["second"]


def test_add_writer_invoked_with_args(loop, sockpair):
    a, b = sockpair
    got = loop.create_future()

    def on_writable(tag):
        loop.remove_writer(a)
        a.send(b"w")
        got.set_result(tag)

    loop.add_writer(a, on_writable, "w-tag")
    assert run(got, loop=loop) == "w-tag"
    assert loop.remove_writer(a) is False
    assert b.recv(10) == b"w"


def test_remove_writer_return_values(loop, sockpair):
    a, b = sockpair
    assert loop.remove_writer(a) is False
    loop.add_writer(a, lambda: None)
    assert loop.remove_writer(a) is True
    assert loop.remove_writer(a) is False


def test_add_writer_waits_for_buffer_space(loop, sockpair):
    a, b = sockpair
    # fill a's send buffer
    try:
        while True:
            a.send(b"\0" * 65536)
    except BlockingIOError:
        pass
    calls = []
    loop.add_writer(a, calls.append, "writable")
    try:
        _run_briefly(loop, 0.05)
        assert calls == []

        async def drain():
            while True:
                try:
                    b.recv(1 << 20)
                except BlockingIOError:
                    break
            for _ in range(50):
                if calls:
                    return
                await asyncio.sleep(0.01)

        run(drain(), loop=loop)
        assert calls
    finally:
        loop.remove_writer(a)


def test_reader_and_writer_on_same_fd(loop, sockpair):
    a, b = sockpair
    events = []
    done = loop.create_future()

    def on_write():
        events.append("w")
        loop.remove_writer(a)

    def on_read():
        events.append("r")
        a.recv(10)
        loop.remove_reader(a)
        done.set_result(None)

    loop.add_reader(a, on_read)
    loop.add_writer(a, on_write)
    loop.call_later(0.03, b.send, b"r")
    run(done, loop=loop)
    assert events == ["w", "r"]
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False


def test_add_reader_after_close_raises(loop, sockpair):
    a, b = sockpair
    loop.close()
    with pytest.raises(RuntimeError):
        loop.add_reader(a, lambda: None)
    with pytest.raises(RuntimeError):
        loop.add_writer(a, lambda: None)


def test_add_reader_invalid_fd(loop):
    with pytest.raises(ValueError):
        loop.add_reader(-1, lambda: None)
    with pytest.raises((TypeError, ValueError)):
        loop.add_reader("not an fd", lambda: None)


# ---------------------------------------------------------------------------
# asyncio.Runner(loop_factory=...)
# ---------------------------------------------------------------------------

def test_runner_with_loop_factory(loop_factory):
    async def main(x):
        await asyncio.sleep(0.01)
        return x, asyncio.get_running_loop()

    reference = loop_factory()
    expected_type = type(reference)
    reference.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        value, running = runner.run(main(1))
        assert value == 1
        assert type(running) is expected_type
        assert runner.get_loop() is running
        value2, running2 = runner.run(main(2))
        assert value2 == 2 and running2 is running
    assert running.is_closed()


def test_runner_debug_and_exception(loop_factory):
    async def main():
        assert asyncio.get_running_loop().get_debug()
        raise Boom("from runner")

    with asyncio.Runner(loop_factory=loop_factory, debug=True) as runner:
        with pytest.raises(Boom):
            runner.run(main())


def test_runner_cancels_leftover_tasks_on_close(loop_factory):
    cancelled = []

    async def background():
        try:
            await asyncio.sleep(3)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        asyncio.create_task(background())
        await asyncio.sleep(0.01)

    start = time.monotonic()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    assert cancelled == [True]
    assert time.monotonic() - start < STEP_TIMEOUT


# ---------------------------------------------------------------------------
# robustness: BaseException propagation, Ctrl-C, idling, wake-ups
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_propagates(loop, exc_type):
    calls = []

    def raiser():
        raise exc_type()

    loop.call_soon(raiser)
    loop.call_soon(calls.append, "after")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    # the loop is still usable; the remaining callback runs
    assert run(asyncio.sleep(0.01, "ok"), loop=loop) == "ok"
    assert calls == ["after"]


def test_sigint_interrupts_blocked_runner(loop_factory):
    """Ctrl-C while the loop sleeps in its wait: asyncio.Runner's SIGINT
    handler cancels the main task and run() raises KeyboardInterrupt."""
    main_ident = threading.get_ident()
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        async def main():
            threading.Timer(
                0.1, signal.pthread_kill, (main_ident, signal.SIGINT)).start()
            await asyncio.sleep(3)

        start = time.monotonic()
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            with pytest.raises(KeyboardInterrupt):
                runner.run(main())
        assert time.monotonic() - start < 1.5
    finally:
        signal.signal(signal.SIGINT, old)


def test_idle_loop_does_not_busy_wait(loop):
    loop.call_later(10_000_000, lambda: None)  # a far-away timer
    cpu0, wall0 = time.process_time(), time.monotonic()
    run(asyncio.sleep(0.3), loop=loop)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    assert wall >= 0.29
    assert cpu < 0.5 * wall, f"loop burned {cpu:.3f}s CPU in {wall:.3f}s"


def test_call_soon_threadsafe_no_lost_wakeups(loop):
    """Each threadsafe call must wake an idle loop (no timers pending)."""
    rounds = 400
    missed = []
    done = loop.create_future()

    def pinger():
        try:
            for i in range(rounds):
                ev = threading.Event()
                loop.call_soon_threadsafe(ev.set)
                if not ev.wait(2.0):
                    missed.append(i)
                    return
                if i % 7 == 0:
                    time.sleep(0.0005)  # sometimes let the loop go idle
        finally:
            loop.call_soon_threadsafe(done.set_result, None)

    t = threading.Thread(target=pinger)
    t.start()
    try:
        run(done, timeout=20, loop=loop)
    finally:
        t.join()
    assert missed == []


def test_exception_in_reader_callback_goes_to_handler(loop, sockpair):
    a, b = sockpair
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    calls = []

    def bad_reader():
        calls.append(a.recv(10))
        raise Boom("in reader")

    loop.add_reader(a, bad_reader)
    try:
        b.send(b"1")
        _run_briefly(loop, 0.03)
        b.send(b"2")
        _run_briefly(loop, 0.03)
    finally:
        loop.remove_reader(a)
    # the reader stays registered after raising
    assert calls == [b"1", b"2"]
    assert [str(c["exception"]) for c in contexts] == ["in reader"] * 2


def test_reader_callback_replaces_itself(loop, sockpair):
    a, b = sockpair
    calls = []
    got = loop.create_future()

    def second():
        calls.append(("second", a.recv(10)))
        loop.remove_reader(a)
        got.set_result(None)

    def first():
        calls.append(("first", a.recv(10)))
        loop.remove_reader(a)
        loop.add_reader(a, second)

    loop.add_reader(a, first)
    b.send(b"x")
    _run_briefly(loop, 0.02)
    b.send(b"y")
    run(got, loop=loop)
    assert calls == [("first", b"x"), ("second", b"y")]


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("usage", ["idle", "run", "signal-handler",
                                   "signal-handler-other-thread", "reader",
                                   "executor"])
def test_close_releases_file_descriptors(loop_factory, usage):
    import gc
    gc.collect()
    baseline = _open_fds()
    lp = loop_factory()
    try:
        if usage == "run":
            lp.run_until_complete(asyncio.sleep(0.01))
        elif usage == "signal-handler":
            lp.add_signal_handler(signal.SIGUSR1, lambda: None)
            lp.run_until_complete(asyncio.sleep(0.01))
            assert lp.remove_signal_handler(signal.SIGUSR1) is True
        elif usage == "signal-handler-other-thread":
            def in_thread():
                with contextlib.suppress(RuntimeError):
                    lp.add_signal_handler(signal.SIGUSR1, lambda: None)
            t = threading.Thread(target=in_thread)
            t.start()
            t.join()
        elif usage == "reader":
            a, b = socket.socketpair()
            with a, b:
                lp.add_reader(a, lambda: None)
                lp.run_until_complete(asyncio.sleep(0.01))
                lp.remove_reader(a)
        elif usage == "executor":
            lp.run_until_complete(lp.run_in_executor(None, time.sleep, 0))
            lp.run_until_complete(lp.shutdown_default_executor())
    finally:
        lp.close()
    # the closed loop is still referenced: whatever it holds open leaked
    assert _open_fds() == baseline, f"{_open_fds() - baseline} fd(s) leaked"


def test_numeric_getaddrinfo_matches_the_resolver(loop):
    async def main():
        out = []
        for host, port, kw in [("127.0.0.1", 80, {}), ("::1", "443", {}),
                               ("10.1.2.3", 0, {"type": socket.SOCK_DGRAM}),
                               ("127.0.0.1", 80, {"family": socket.AF_INET,
                                                  "type": socket.SOCK_STREAM})]:
            got = await loop.getaddrinfo(host, port, **kw)
            want = socket.getaddrinfo(host, port, kw.get("family", 0),
                                      kw.get("type", 0))
            out.append((got, want))
        return out

    for got, want in run(main(), loop=loop):
        assert got == want
