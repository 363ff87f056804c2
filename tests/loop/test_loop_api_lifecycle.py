"""Event-loop API, lifecycle: run_forever / run_until_complete / stop,
is_running, nested runs, close / is_closed and what close() releases,
asyncio.Runner with a loop_factory, BaseException and Ctrl-C propagation,
as documented for asyncio 3.11.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` / ``loop_factory`` fixtures of conftest.py;
helpers shared with the other test_loop_api_*.py files are in
support/loop_api.py.
"""
import asyncio
import contextlib
import signal
import socket
import threading
import time

import pytest

from support import STEP_TIMEOUT, run
from support.loop_api import Boom, run_briefly
from support.proc import open_fds


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
    run_briefly(loop, 0)
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
    run_briefly(loop, 0)
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
# robustness: BaseException propagation, Ctrl-C, fds released by close()
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


@pytest.mark.parametrize("usage", ["idle", "run", "signal-handler",
                                   "signal-handler-other-thread", "reader",
                                   "executor"])
def test_close_releases_file_descriptors(loop_factory, usage):
    import gc
    gc.collect()
    baseline = open_fds()
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
    assert open_fds() == baseline, f"{open_fds() - baseline} fd(s) leaked"
