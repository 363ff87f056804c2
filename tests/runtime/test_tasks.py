"""Timers (sleep, timeouts, the bounded timer pool), spawn/TaskHandle and
Channel, on a ringline loop under both backends.

The backend comes from RINGLINE_BACKEND when it is set; otherwise every test
runs once per backend.
"""
import asyncio
import gc
import logging
import os
import random
import re
import subprocess
import sys
import time

import pytest

from ringline._conn import timers as _tasks
from ringline._conn.timers import (set_timer_slots, sleep, sleep_until, timeout, timeout_at,
                                   timer_stats, try_sleep, try_timeout)
from ringline._errors import QueueFull, TimerPoolExhausted
from ringline._runtime.channels import Channel, ChannelClosed, ChannelEmpty
from ringline._runtime.tasks import TaskHandle, spawn

from support import BACKENDS, DOCS


def in_use():
    return timer_stats()["in_use"]


async def settle(n=3):
    for _ in range(n):
        await asyncio.sleep(0)


# --------------------------------------------------------------------------
# sleep / sleep_until / try_sleep
# --------------------------------------------------------------------------

def test_sleep_waits_and_returns_its_slot(run):
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        task = asyncio.ensure_future(sleep(0.05, "r"))
        await settle()
        assert in_use() == 1
        assert await task == "r"
        assert loop.time() - t0 >= 0.045
        assert in_use() == 0
        assert timer_stats()["peak"] >= 1
    run(main)


def test_sleep_zero_and_negative_only_yield(run):
    async def main():
        loop = asyncio.get_running_loop()
        set_timer_slots(loop, 1)
        hog = asyncio.ensure_future(sleep(10))
        await settle()
        assert in_use() == 1
        assert await sleep(0, 7) == 7
        assert await sleep(-1) is None
        assert await sleep_until(loop.time() - 1, "past") == "past"
        assert await try_sleep(0) is True
        hog.cancel()
        await asyncio.gather(hog, return_exceptions=True)
        assert in_use() == 0
    run(main)


def test_sleep_until_deadline(run):
    async def main():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.04
        await sleep_until(deadline)
        assert loop.time() >= deadline - 0.001
        assert in_use() == 0
    run(main)


def test_sleep_rejects_bad_values(run):
    async def main():
        with pytest.raises(ValueError, match="NaN"):
            await sleep(float("nan"))
        with pytest.raises(TypeError):
            await sleep("1")
        assert in_use() == 0
    run(main)


def test_sleep_outside_a_loop_is_a_clear_error():
    coro = sleep(1)
    with pytest.raises(RuntimeError, match="running event loop"):
        coro.send(None)
    coro.close()


def test_cancelled_sleepers_return_their_slots(run):
    async def main():
        tasks = [asyncio.ensure_future(sleep(30)) for _ in range(100)]
        await settle()
        assert in_use() == 100
        for t in tasks[::2]:
            t.cancel()
        await asyncio.gather(*tasks[::2], return_exceptions=True)
        assert in_use() == 50
        for t in tasks[1::2]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(t.cancelled() for t in tasks)
        assert in_use() == 0
    run(main)


@pytest.mark.parametrize("cancel_first", [True, False])
def test_cancel_racing_the_timer_returns_the_slot_once(run, cancel_first):
    """The sleep's timer and a cancel() become due in the same iteration, in
    either order: the slot comes back exactly once."""
    async def main():
        loop = asyncio.get_running_loop()
        # far enough ahead that a loaded machine's settle() cannot reach it
        deadline = loop.time() + 0.3
        sleeper = asyncio.ensure_future(sleep_until(deadline, "woke"))
        if cancel_first:
            loop.call_at(deadline - 0.001, sleeper.cancel)
            await settle()
        else:
            await settle()
            loop.call_at(deadline + 0.001, sleeper.cancel)
        assert in_use() == 1
        time.sleep(0.4)         # both callbacks are due when the loop next looks
        results = await asyncio.gather(sleeper, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert in_use() == 0
    run(main)


def test_exhaustion_raises_and_slots_come_back(run):
    async def main():
        loop = asyncio.get_running_loop()
        set_timer_slots(loop, 3)
        hogs = [asyncio.ensure_future(sleep(30)) for _ in range(3)]
        await settle()
        assert in_use() == 3
        with pytest.raises(TimerPoolExhausted, match=r"all 3 timer slots .* in use"):
            await sleep(1)
        with pytest.raises(TimerPoolExhausted, match="timer_slots"):
            await sleep_until(loop.time() + 1)
        with pytest.raises(TimerPoolExhausted):
            async with timeout(1):
                pass
        assert timer_stats()["exhausted"] == 3
        assert in_use() == 3
        hogs[0].cancel()
        await asyncio.gather(hogs[0], return_exceptions=True)
        assert await sleep(0.001, "ok") == "ok"
        for h in hogs:
            h.cancel()
        await asyncio.gather(*hogs, return_exceptions=True)
        assert in_use() == 0
    run(main)


def test_fired_timer_frees_its_slot_for_the_next(run):
    async def main():
        set_timer_slots(asyncio.get_running_loop(), 1)
        for _ in range(20):
            await sleep(0.001)
        assert in_use() == 0
    run(main)


def test_try_sleep_returns_none_when_exhausted(run):
    async def main():
        loop = asyncio.get_running_loop()
        set_timer_slots(loop, 1)
        assert await try_sleep(0.005) is True
        hog = asyncio.ensure_future(sleep(30))
        await settle()
        t0 = loop.time()
        assert await try_sleep(5) is None
        assert loop.time() - t0 < 1          # returned at once, did not sleep
        assert timer_stats()["exhausted"] == 1
        hog.cancel()
        await asyncio.gather(hog, return_exceptions=True)
        assert in_use() == 0
    run(main)


def test_set_timer_slots_validates_and_defaults(run):
    async def main():
        loop = asyncio.get_running_loop()
        assert timer_stats()["capacity"] == _tasks.DEFAULT_TIMER_SLOTS == 65536
        for bad in (0, -1, 1.5, True, "3"):
            with pytest.raises(ValueError):
                set_timer_slots(loop, bad)
        set_timer_slots(loop, 5)
        assert timer_stats(loop)["capacity"] == 5
    run(main)


def test_lowering_capacity_below_use(run):
    async def main():
        loop = asyncio.get_running_loop()
        hogs = [asyncio.ensure_future(sleep(30)) for _ in range(4)]
        await settle()
        set_timer_slots(loop, 2)
        assert await try_sleep(1) is None
        for h in hogs[:3]:
            h.cancel()
        await asyncio.gather(*hogs[:3], return_exceptions=True)
        assert await try_sleep(0.001) is True
        hogs[3].cancel()
        await asyncio.gather(hogs[3], return_exceptions=True)
        assert in_use() == 0
    run(main)


def test_pools_are_per_loop(run):
    async def main():
        set_timer_slots(asyncio.get_running_loop(), 7)
        return timer_stats()["capacity"]
    assert run(main) == 7
    assert run(lambda: _capacity()) == 65536


async def _capacity():
    return timer_stats()["capacity"]


# --------------------------------------------------------------------------
# timeout / timeout_at / try_timeout
# --------------------------------------------------------------------------

def test_timeout_expires_with_timeout_error(run):
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError) as ei:
            async with timeout(0.03) as cm:
                assert in_use() == 1
                await asyncio.sleep(5)
        assert isinstance(ei.value.__cause__, asyncio.CancelledError)
        assert cm.expired()
        assert 0.025 <= loop.time() - t0 < 2
        assert in_use() == 0
        assert asyncio.current_task().cancelling() == 0
    run(main)


def test_timeout_not_reached(run):
    async def main():
        async with timeout(5) as cm:
            await asyncio.sleep(0.001)
        assert not cm.expired()
        assert in_use() == 0
        async with timeout(None) as cm:
            assert in_use() == 0
            assert cm.when() is None
        assert in_use() == 0
    run(main)


def test_timeout_at_and_when(run):
    async def main():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.02
        with pytest.raises(TimeoutError):
            async with timeout_at(deadline) as cm:
                assert cm.when() == deadline
                await asyncio.sleep(5)
        assert loop.time() >= deadline - 0.001
        # an already-past deadline expires at the first await
        with pytest.raises(TimeoutError):
            async with timeout_at(loop.time() - 1):
                await asyncio.sleep(5)
        assert in_use() == 0
    run(main)


def test_timeout_reschedule(run):
    async def main():
        loop = asyncio.get_running_loop()
        async with timeout(0.01) as cm:
            cm.reschedule(loop.time() + 5)             # extend: no expiry
            await asyncio.sleep(0.03)
            assert in_use() == 1
            cm.reschedule(None)                        # disarm: slot returned
            assert in_use() == 0
            await asyncio.sleep(0.001)
        assert not cm.expired()
        with pytest.raises(TimeoutError):
            async with timeout(None) as cm:
                cm.reschedule(loop.time() + 0.01)      # arm: slot taken
                assert in_use() == 1
                await asyncio.sleep(5)
        assert in_use() == 0
        with pytest.raises(RuntimeError, match="cannot reschedule"):
            cm.reschedule(None)
    run(main)


def test_timeout_reschedule_from_none_when_exhausted(run):
    async def main():
        loop = asyncio.get_running_loop()
        set_timer_slots(loop, 1)
        hog = asyncio.ensure_future(sleep(30))
        await settle()
        async with timeout(None) as cm:
            with pytest.raises(TimerPoolExhausted):
                cm.reschedule(loop.time() + 1)
            assert cm.when() is None
        hog.cancel()
        await asyncio.gather(hog, return_exceptions=True)
        assert in_use() == 0
    run(main)


def test_nested_timeouts(run):
    async def main():
        async with timeout(5) as outer:
            with pytest.raises(TimeoutError):
                async with timeout(0.01):
                    await asyncio.sleep(5)
            assert in_use() == 1
            await asyncio.sleep(0.001)
        assert not outer.expired()
        # the outer deadline, reached while the inner block waits, belongs to
        # the outer block: the inner one lets the cancellation through
        with pytest.raises(TimeoutError):
            async with timeout(0.01) as outer:
                async with timeout(5) as inner:
                    await asyncio.sleep(5)
        assert outer.expired() and not inner.expired()
        assert in_use() == 0
    run(main)


def test_outer_cancel_is_not_turned_into_timeout(run):
    async def main():
        async def body():
            async with timeout(5):
                await asyncio.sleep(5)

        task = asyncio.ensure_future(body())
        await settle()
        assert in_use() == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert in_use() == 0
    run(main)


def test_timeout_reentry_and_task_required(run):
    async def main():
        cm = timeout(1)
        async with cm:
            pass
        with pytest.raises(RuntimeError, match="only once"):
            async with cm:
                pass
        assert in_use() == 0
    run(main)


def test_try_timeout(run):
    async def main():
        loop = asyncio.get_running_loop()
        set_timer_slots(loop, 2)
        cm = try_timeout(0.01)
        assert cm is not None and in_use() == 1       # reserved at creation
        with pytest.raises(TimeoutError):
            async with cm:
                assert in_use() == 1
                await asyncio.sleep(5)
        assert in_use() == 0
        a = try_timeout(5)
        b = try_timeout(5)
        assert a is not None and b is not None
        assert try_timeout(5) is None                 # exhausted: None, no raise
        assert try_timeout(None) is not None          # no deadline, no slot
        async with a:
            await asyncio.sleep(0.001)
        assert in_use() == 1
        del b                                         # never entered: given back
        gc.collect()
        assert in_use() == 0
    run(main)


def test_random_cancellation_storm_leaves_no_slot_behind(run):
    async def main():
        rng = random.Random(1234)
        loop = asyncio.get_running_loop()
        set_timer_slots(loop, 64)

        async def worker():
            for _ in range(5):
                kind = rng.randrange(4)
                delay = rng.uniform(0, 0.01)
                try:
                    if kind == 0:
                        await sleep(delay)
                    elif kind == 1:
                        await try_sleep(delay)
                    elif kind == 2:
                        async with timeout(delay):
                            await asyncio.sleep(rng.uniform(0, 0.02))
                    else:
                        cm = try_timeout(delay)
                        if cm is not None:
                            async with cm:
                                await sleep(rng.uniform(0, 0.02))
                except (TimeoutError, TimerPoolExhausted):
                    pass

        tasks = [asyncio.ensure_future(worker()) for _ in range(200)]
        for _ in range(40):
            await asyncio.sleep(rng.uniform(0, 0.003))
            for t in rng.sample(tasks, 5):
                t.cancel()
            assert 0 <= in_use() <= 64
        await asyncio.gather(*tasks, return_exceptions=True)
        assert in_use() == 0
        assert timer_stats()["peak"] <= 64
    run(main, timeout=20)


# --------------------------------------------------------------------------
# spawn / TaskHandle
# --------------------------------------------------------------------------

def test_spawn_result_and_state(run):
    async def main():
        async def work(x):
            await asyncio.sleep(0.001)
            return x * 2

        handle = spawn(work(21), name="doubler")
        assert isinstance(handle, TaskHandle)
        assert handle.name == "doubler"
        assert not handle.done()
        assert timer_stats()["spawned"] == 1
        assert await handle == 42
        assert handle.done() and not handle.cancelled()
        assert handle.result() == 42
        assert await handle == 42            # awaiting a finished handle again
        await settle()
        assert timer_stats()["spawned"] == 0
    run(main)


def test_spawn_abort(run):
    async def main():
        cleaned = []

        async def forever():
            try:
                await asyncio.sleep(30)
            finally:
                cleaned.append(True)

        handle = spawn(forever())
        await settle()
        assert handle.abort() is True
        with pytest.raises(asyncio.CancelledError):
            await handle
        assert handle.cancelled() and handle.done()
        assert cleaned == [True]
        assert handle.abort() is False
    run(main)


def test_spawn_exception_is_logged_not_lost(run, caplog):
    async def main():
        loop = asyncio.get_running_loop()
        unhandled = []
        loop.set_exception_handler(lambda _l, ctx: unhandled.append(ctx))

        async def boom():
            raise ValueError("spawned failure 17")

        spawn(boom(), name="boomer")          # handle dropped on purpose
        await settle()
        gc.collect()
        await settle()
        return unhandled

    with caplog.at_level(logging.ERROR, logger="ringline.tasks"):
        unhandled = run(main)
    records = [r for r in caplog.records if r.name == "ringline.tasks"]
    assert len(records) == 1
    assert "boomer" in records[0].getMessage()
    assert "spawned failure 17" in records[0].getMessage()
    assert records[0].exc_info[0] is ValueError
    assert unhandled == []                   # asyncio's "never retrieved" not fired


def test_awaited_exception_goes_to_the_waiter(run, caplog):
    async def main():
        async def boom():
            await asyncio.sleep(0.001)
            raise KeyError("for the waiter")

        handle = spawn(boom())
        with pytest.raises(KeyError):
            await handle

    with caplog.at_level(logging.ERROR, logger="ringline.tasks"):
        run(main)
    assert [r for r in caplog.records if r.name == "ringline.tasks"] == []


def test_cancelling_a_waiter_leaves_the_task_running(run):
    async def main():
        async def work():
            await asyncio.sleep(0.02)
            return "finished"

        handle = spawn(work())
        waiter = asyncio.ensure_future(_await(handle))
        await settle()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert not handle.done()
        assert await handle == "finished"
    run(main)


async def _await(handle):
    return await handle


def test_spawned_task_survives_without_references(run):
    async def main():
        box = []

        async def work():
            await asyncio.sleep(0.01)
            gc.collect()
            await asyncio.sleep(0.01)
            box.append("done")

        spawn(work())
        gc.collect()
        for _ in range(100):
            if box:
                break
            await asyncio.sleep(0.005)
        assert box == ["done"]
    run(main)


def test_spawn_argument_and_loop_errors(run):
    async def main():
        with pytest.raises(TypeError, match="coroutine"):
            spawn(lambda: None)
    run(main)

    async def lonely():
        return 1

    coro = lonely()
    with pytest.raises(RuntimeError, match="running event loop"):
        spawn(coro)
    coro.close()


# --------------------------------------------------------------------------
# Channel
# --------------------------------------------------------------------------

def test_channel_basics(run):
    async def main():
        with pytest.raises(ValueError):
            Channel(0)
        ch = Channel(2)
        assert ch.capacity == 2 and len(ch) == 0 and ch.len() == 0
        assert not ch.is_closed
        with pytest.raises(ChannelEmpty):
            ch.try_recv()
        with pytest.raises(asyncio.QueueEmpty):         # ChannelEmpty is one
            ch.try_recv()
        ch.try_send("a")
        ch.try_send("b")
        assert len(ch) == 2 and ch.is_full()
        with pytest.raises(QueueFull, match="full"):
            ch.try_send("c")
        assert ch.try_recv() == "a"
        assert await ch.recv() == "b"
        assert "open 0/2" in repr(ch)
    run(main)


def test_channel_send_waits_for_room_and_recv_for_items(run):
    async def main():
        ch = Channel(1)
        got = []

        async def consumer():
            for _ in range(5):
                got.append(await ch.recv())
                await asyncio.sleep(0.001)

        task = asyncio.ensure_future(consumer())
        for i in range(5):
            await ch.send(i)
            assert len(ch) <= 1
        await task
        assert got == [0, 1, 2, 3, 4]
    run(main)


def test_channel_fifo_with_many_senders(run):
    async def main():
        ch = Channel(2)
        senders = [asyncio.ensure_future(ch.send(i)) for i in range(10)]
        await settle()
        assert len(ch) == 2
        got = [await ch.recv() for _ in range(10)]
        assert got == list(range(10))                 # waiting senders keep order
        await asyncio.gather(*senders)
    run(main)


def test_channel_close_semantics(run):
    async def main():
        ch = Channel(3)
        ch.try_send(1)
        ch.try_send(2)
        ch.close()
        ch.close()                                    # idempotent
        assert ch.is_closed
        with pytest.raises(ChannelClosed):
            ch.try_send(3)
        with pytest.raises(ChannelClosed):
            await ch.send(3)
        assert await ch.recv() == 1                   # buffered items drain first
        assert ch.try_recv() == 2
        with pytest.raises(ChannelClosed):
            await ch.recv()
        with pytest.raises(ChannelClosed):
            ch.try_recv()
    run(main)


def test_channel_close_wakes_waiters(run):
    async def main():
        empty = Channel(1)
        receivers = [asyncio.ensure_future(empty.recv()) for _ in range(3)]
        full = Channel(1)
        full.try_send("x")
        senders = [asyncio.ensure_future(full.send(i)) for i in range(3)]
        await settle()
        empty.close()
        full.close()
        results = await asyncio.gather(*receivers, *senders, return_exceptions=True)
        assert all(isinstance(r, ChannelClosed) for r in results)
        assert full.try_recv() == "x"
    run(main)


def test_channel_async_iteration(run):
    async def main():
        ch = Channel(4)

        async def produce():
            for i in range(6):
                await ch.send(i)
            ch.close()

        task = asyncio.ensure_future(produce())
        got = [item async for item in ch]
        await task
        assert got == list(range(6))
    run(main)


def test_cancelled_woken_receiver_passes_the_item_on(run):
    async def main():
        ch = Channel(2)
        r1 = asyncio.ensure_future(ch.recv())
        r2 = asyncio.ensure_future(ch.recv())
        await settle()
        ch.try_send("only")          # wakes r1 ...
        r1.cancel()                  # ... which is cancelled before it runs
        assert await r2 == "only"
        assert r1.cancelled()
        assert len(ch) == 0
    run(main)


def test_cancelled_woken_sender_passes_the_room_on(run):
    async def main():
        ch = Channel(1)
        ch.try_send("first")
        s1 = asyncio.ensure_future(ch.send("s1"))
        s2 = asyncio.ensure_future(ch.send("s2"))
        await settle()
        assert ch.try_recv() == "first"     # wakes s1 ...
        s1.cancel()                          # ... cancelled before it ran
        await s2
        assert s1.cancelled()
        assert ch.try_recv() == "s2"         # s1's item never went in
        assert len(ch) == 0
    run(main)


def test_cancelled_waiting_receiver_loses_nothing(run):
    async def main():
        ch = Channel(2)
        r1 = asyncio.ensure_future(ch.recv())
        await settle()
        r1.cancel()
        await asyncio.gather(r1, return_exceptions=True)
        ch.try_send(1)
        assert await ch.recv() == 1
    run(main)


def test_on_recv_hook_and_wait_room(run, caplog):
    async def main():
        ch = Channel(1)
        calls = []
        remove = ch.on_recv(lambda: calls.append(len(ch)))
        await ch.wait_room()                 # room already: returns at once
        ch.try_send(1)
        waiter = asyncio.ensure_future(ch.wait_room())
        await settle()
        assert not waiter.done()
        assert ch.try_recv() == 1
        await asyncio.wait_for(waiter, 1)
        assert calls == [0]
        remove()
        remove()                             # idempotent
        ch.try_send(2)
        await ch.recv()
        assert calls == [0]

        def bad_hook():
            raise RuntimeError("hook failure")
        ch.on_recv(bad_hook)
        ch.try_send(3)
        assert ch.try_recv() == 3            # hook errors never reach the receiver

        ch.try_send(4)
        waiter = asyncio.ensure_future(ch.wait_room())
        await settle()
        ch.close()
        await asyncio.wait_for(waiter, 1)    # close wakes room waiters too

    with caplog.at_level(logging.ERROR, logger="ringline.tasks"):
        run(main)
    assert any("hook failure" in (r.exc_text or "") or r.exc_info
               for r in caplog.records if r.name == "ringline.tasks")


def test_channel_is_bound_to_one_loop(run):
    ch = Channel(1)

    async def first():
        task = asyncio.ensure_future(ch.recv())
        await settle()
        ch.try_send(1)
        return await task

    assert run(first) == 1

    async def second():
        with pytest.raises(RuntimeError, match="another loop"):
            await ch.recv()
    run(second)


# --------------------------------------------------------------------------
# docs/tasks.md examples run on both backends
# --------------------------------------------------------------------------

DOC = os.path.join(DOCS, "tasks.md")


def _doc_blocks():
    with open(DOC) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_tasks_doc_examples_run():
    blocks = _doc_blocks()
    assert len(blocks) >= 7
    try:
        import trustme  # noqa: F401  (the TLS example makes its certificates with it)
    except ImportError:
        blocks = [b for b in blocks if "import trustme" not in b]
    for backend in BACKENDS:
        env = dict(os.environ, RINGLINE_BACKEND=backend)
        # one interpreter per backend, each example in its own namespace
        script = "\n".join(
            f"exec(compile({code!r}, 'docs/tasks.md#{i}', 'exec'), {{'__name__': '__main__'}})"
            for i, code in enumerate(blocks))
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                              text=True, timeout=25, env=env)
        assert proc.returncode == 0, f"{backend}: {proc.stderr}"
        assert "Traceback" not in proc.stderr, f"{backend}: {proc.stderr}"
