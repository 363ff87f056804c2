"""Event-loop API, scheduling: call_soon (FIFO order, handles, contexts),
call_later / call_at (deadline order, cancellation, time()),
call_soon_threadsafe (wake-ups from other threads, none lost) and an idle
loop that does not busy-wait, as documented for asyncio 3.11.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` / ``loop_factory`` fixtures of conftest.py;
helpers shared with the other test_loop_api_*.py files are in
support/loop_api.py.
"""
import asyncio
import contextvars
import threading
import time

import pytest

from support import run
from support.loop_api import cvar, run_briefly


# ---------------------------------------------------------------------------
# call_soon
# ---------------------------------------------------------------------------

def test_call_soon_runs_in_fifo_order_with_args(loop):
    calls = []
    for i in range(10):
        loop.call_soon(calls.append, i)
    loop.call_soon(lambda *a: calls.append(a), "x", 2, None)
    run_briefly(loop, 0)
    assert calls == list(range(10)) + [("x", 2, None)]


def test_call_soon_returns_cancellable_handle(loop):
    calls = []
    h1 = loop.call_soon(calls.append, 1)
    h2 = loop.call_soon(calls.append, 2)
    assert not h2.cancelled()
    h2.cancel()
    assert h2.cancelled()
    assert not h1.cancelled()
    run_briefly(loop, 0)
    assert calls == [1]


def test_call_soon_callbacks_scheduled_by_callbacks_run_later(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "nested")

    loop.call_soon(first)
    loop.call_soon(calls.append, "second")
    run_briefly(loop, 0.01)
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
    run_briefly(loop, 0)
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
    run_briefly(loop, 0)
    assert seen == ["at-schedule-time"]


def test_call_later_and_call_at_accept_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(cvar.set, "timer-ctx")
    seen = []
    loop.call_later(0.001, lambda: seen.append(("later", cvar.get())),
                    context=ctx)
    loop.call_at(loop.time() + 0.001,
                 lambda: seen.append(("at", cvar.get())), context=ctx)
    run_briefly(loop, 0.05)
    assert sorted(seen) == [("at", "timer-ctx"), ("later", "timer-ctx")]


# ---------------------------------------------------------------------------
# call_later / call_at
# ---------------------------------------------------------------------------

def test_call_later_orders_by_deadline(loop):
    calls = []
    loop.call_later(0.06, calls.append, "c")
    loop.call_later(0.02, calls.append, "a")
    loop.call_later(0.04, calls.append, "b")
    run_briefly(loop, 0.15)
    assert calls == ["a", "b", "c"]


def test_call_at_orders_by_deadline_and_mixes_with_call_later(loop):
    calls = []
    now = loop.time()
    loop.call_at(now + 0.05, calls.append, "at-0.05")
    loop.call_later(0.01, calls.append, "later-0.01")
    loop.call_at(now + 0.03, calls.append, "at-0.03")
    run_briefly(loop, 0.15)
    assert calls == ["later-0.01", "at-0.03", "at-0.05"]


def test_call_later_does_not_fire_early(loop):
    fired = []
    start = loop.time()
    loop.call_later(0.1, lambda: fired.append(loop.time()))
    run_briefly(loop, 0.05)
    assert fired == []
    run_briefly(loop, 0.15)
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
    run_briefly(loop, 0)
    run_briefly(loop, 0)
    assert time.monotonic() - t0 < 0.25
    assert set(calls) == {"zero", "negative", "past-at"}
    run_briefly(loop, 0.35)
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
    run_briefly(loop, 0.05)
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
    run_briefly(loop, 0.06)
    assert calls == []
    assert victim.cancelled()


def test_many_timers_all_fire_in_order(loop):
    calls = []
    delays = [(i * 7919) % 50 / 1000 for i in range(200)]
    base = loop.time() + 0.01
    for i, d in enumerate(delays):
        loop.call_at(base + d, calls.append, (d, i))
    run_briefly(loop, 0.12)
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
# idling and wake-ups
# ---------------------------------------------------------------------------


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
