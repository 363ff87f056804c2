"""call_soon_threadsafe under load: producer threads hammering a loop that
keeps going to sleep (every callback runs exactly once, per-thread FIFO, no
wait hangs), and the handles it returns while they are GC-hidden in the
ready queue (see "GC-hidden handles" in src/ringline/_loop/sched.pxi):
tracked again once run, their context a fresh copy per call, cancellable
from the producing thread, collectable when part of a cycle, and dropped
safely when the loop is closed with them queued.

Each test runs on asyncio.SelectorEventLoop (the reference: what is checked
is defined asyncio behaviour) and on ringline; run the file with
RINGLINE_BACKEND=io_uring and =poll for both backends. Every wait is
bounded (support.run's timeout, Event.wait timeouts, Thread.join timeouts).
"""
import asyncio
import contextvars
import gc
import threading
import weakref

import pytest

from support import run

tvar = contextvars.ContextVar("tvar", default="unset")


def ctx_of(h):
    """The handle's context (asyncio's Handle.get_context() is new in 3.12)."""
    return h.get_context() if hasattr(h, "get_context") else h._context


@pytest.mark.parametrize("threads,per_thread", [(4, 5000), (2, 20000)])
def test_hammer_while_loop_sleeps(loop, threads, per_thread):
    seen = [[] for _ in range(threads)]
    done = loop.create_future()
    left = [threads * per_thread]

    def on_loop(tid, i):
        seen[tid].append(i)
        left[0] -= 1
        if left[0] == 0:
            done.set_result(None)

    def produce(tid):
        ts = loop.call_soon_threadsafe
        for i in range(per_thread):
            ts(on_loop, tid, i)
            if i % 997 == 0:
                threading.Event().wait(0.0005)  # let the loop go idle

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    try:
        run(done, timeout=60, loop=loop)   # no timers: only wakeups end the waits
    finally:
        for w in workers:
            w.join(10)
    assert all(not w.is_alive() for w in workers)
    assert [len(s) for s in seen] == [per_thread] * threads
    for s in seen:
        assert s == list(range(per_thread))   # exactly once, FIFO per thread


def test_handles_from_thread_context_cancel_and_tracking(loop):
    out = {}
    ran = []
    ready = threading.Event()

    def produce():
        tvar.set("producer")
        h1 = loop.call_soon_threadsafe(lambda: ran.append(("h1", tvar.get())))
        h2 = loop.call_soon_threadsafe(lambda: ran.append(("h2", tvar.get())))
        h3 = loop.call_soon_threadsafe(ran.append, "h3")
        h3.cancel()
        out.update(h1=h1, h2=h2, h3=h3)
        ready.set()

    t = threading.Thread(target=produce)
    t.start()
    assert ready.wait(10)
    t.join(10)
    h1, h2, h3 = out["h1"], out["h2"], out["h3"]
    assert callable(h1.cancel) and callable(h1.cancelled)   # the handle is returned
    assert h3.cancelled() and not h1.cancelled()
    # one fresh copy of the producer's context per call
    c1, c2 = ctx_of(h1), ctx_of(h2)
    assert c1 is not c2
    assert c1[tvar] == "producer" and c2[tvar] == "producer"
    gc.collect()        # while queued: must neither crash nor run them
    assert ran == []
    run(asyncio.sleep(0.01), loop=loop)
    assert ran == [("h1", "producer"), ("h2", "producer")]
    for h in (h1, h2, h3):
        assert gc.is_tracked(h)
        assert gc.is_tracked(ctx_of(h))


def test_cycle_through_threadsafe_handle_is_collected(loop):
    class Holder:
        def cb(self):
            pass

    def produce(sink):
        obj = Holder()
        obj.handle = loop.call_soon_threadsafe(obj.cb)   # obj -> handle -> obj.cb -> obj
        sink.append(weakref.ref(obj))

    refs = []
    t = threading.Thread(target=produce, args=(refs,))
    t.start()
    t.join(10)
    run(asyncio.sleep(0.01), loop=loop)
    gc.collect()
    assert refs and refs[0]() is None


def test_close_with_queued_threadsafe_handles(loop_factory):
    lp = loop_factory()
    kept = []

    def produce():
        for i in range(3000):
            h = lp.call_soon_threadsafe(lambda: None)
            if i % 100 == 0:
                kept.append(h)

    t = threading.Thread(target=produce)
    t.start()
    t.join(10)
    lp.close()
    gc.collect()
    assert all(gc.is_tracked(h) and gc.is_tracked(ctx_of(h)) for h in kept)
    kept.clear()
    gc.collect()
    with pytest.raises(RuntimeError):
        lp.call_soon_threadsafe(lambda: None)
