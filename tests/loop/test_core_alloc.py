"""The native hot path: one scheduled callback costs no Python-level
allocation beyond the Handle the API returns (issue 2)."""
import contextvars
import sys

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
