"""The native hot path: one scheduled callback costs no Python-level
allocation beyond the Handle the API returns (issue 2), and no Context copy
when it is scheduled from an empty Context (issue 20: "Shared empty context"
in src/ringline/_loop/sched.pxi; that path reads the thread state's context
field, known on CPython 3.11-3.13, other versions copy)."""
import contextvars
import sys
import threading

import ringline


def _noop():
    pass


def test_call_soon_allocates_only_the_handle():
    loop = ringline.new_event_loop()
    try:
        ctx = contextvars.copy_context()
        n = 2000
        # warm up: grow the ready queue, fill free lists
        for _ in range(n):
            loop.call_soon(_noop, context=ctx)
        loop.call_soon(loop.stop)
        loop.run_forever()
        handles = []
        before = sys.getallocatedblocks()
        for _ in range(n):
            handles.append(loop.call_soon(_noop, context=ctx))
        grown = sys.getallocatedblocks() - before
        # n handles (+ the list that holds them, a few blocks)
        assert grown <= n + 20, grown
        handles.clear()
        loop.call_soon(loop.stop)
        loop.run_forever()
        before = sys.getallocatedblocks()
        for _ in range(n):
            loop.call_soon(_noop, context=ctx)
        loop.call_soon(loop.stop)
        loop.run_forever()
        # running them frees everything again
        assert sys.getallocatedblocks() - before <= 20
    finally:
        loop.close()


def test_timer_allocates_only_the_handle():
    loop = ringline.new_event_loop()
    try:
        ctx = contextvars.copy_context()
        n = 2000
        hs = [loop.call_later(10, _noop, context=ctx) for _ in range(n)]
        for h in hs:
            h.cancel()
        hs = None
        loop.call_soon(loop.stop)
        loop.run_forever()
        keep = []
        before = sys.getallocatedblocks()
        for _ in range(n):
            keep.append(loop.call_later(10, _noop, context=ctx))
        assert sys.getallocatedblocks() - before <= n + 20
    finally:
        loop.close()


SHARES_EMPTY = (3, 11) <= sys.version_info[:2] < (3, 14)


def _blocks_for(schedule, n):
    """Blocks allocated while `schedule(n)` queues n handles (warmed up)."""
    loop = ringline.new_event_loop()
    try:
        for _ in range(2):
            before = sys.getallocatedblocks()
            keep = schedule(loop, n)
            grown = sys.getallocatedblocks() - before
            keep.clear()
            loop.call_soon(loop.stop)
            loop.run_forever()
        return grown
    finally:
        loop.close()


def _in_empty_context(fn, *args):
    return contextvars.Context().run(fn, *args)


def test_call_soon_from_empty_context_copies_no_context():
    def schedule(loop, n):
        return _in_empty_context(lambda: [loop.call_soon(_noop) for _ in range(n)])
    n = 2000
    grown = _blocks_for(schedule, n)
    # the handles come from the freelist the first round filled; a copied
    # Context per call would be about n blocks (CPython keeps only 255 free)
    assert grown <= (n // 4 if SHARES_EMPTY else 3 * n), grown


def test_call_soon_threadsafe_from_fresh_thread_copies_no_context():
    n = 2000

    def schedule(loop, n):
        out = []
        t = threading.Thread(
            target=lambda: out.extend(loop.call_soon_threadsafe(_noop) for _ in range(n)))
        t.start()
        t.join(10)
        assert not t.is_alive()
        return out
    grown = _blocks_for(schedule, n)
    assert grown <= (n // 4 if SHARES_EMPTY else 3 * n), grown
