"""The Context a scheduled callback runs in, as asyncio defines it: a copy of
the Context current when it was scheduled, or the one passed as context=.

ringline runs handles scheduled from an empty Context in a loop-owned
shared empty Context instead of a copy per call (see "Shared empty context"
in src/ringline/_loop/sched.pxi). These tests pin down that nothing of that
is observable: a callback that sets a ContextVar never leaks it into another
callback (call_soon, call_soon_threadsafe from another thread, call_later,
add_reader), from empty and non-empty contexts; explicit contexts are used as
given; get_context()/_context before, during and after the run; copy_context()
and Task creation inside a callback; reset() back to empty; the custom
exception handler's context (3.12+ runs it in the handle's context).

Each test runs on asyncio.SelectorEventLoop (the reference) and on ringline;
run the file with RINGLINE_BACKEND=io_uring and =poll for both backends.
Every wait is bounded (support.run's timeout, Thread.join timeouts).
The test process's own Context is not empty (the test machinery sets
variables), so every test body runs inside a new empty Context
(@in_empty_context), which is what makes ringline take its shared path.
"""
import asyncio
import contextvars
import functools
import socket
import sys
import threading

from support import run

var = contextvars.ContextVar("var", default="unset")


def in_empty_context(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        def body():
            assert len(contextvars.copy_context()) == 0
            return test(*args, **kwargs)
        return contextvars.Context().run(body)
    return wrapper


def ctx_of(h):
    """The handle's context (asyncio's Handle.get_context() is new in 3.12)."""
    return h.get_context() if hasattr(h, "get_context") else h._context


def settle(loop):
    run(asyncio.sleep(0.01), loop=loop)


def setter(seen, tag):
    seen.append((tag, var.get()))
    var.set(tag)


def set_from_outside_then_schedule(loop, ctx, seen, tag):
    """Set `var` in a context someone kept, then run one more setter: what
    it sees must not depend on that context."""
    ctx.run(var.set, "outside")
    loop.call_soon(setter, seen, tag)
    settle(loop)


@in_empty_context
def test_call_soon_from_empty_context_does_not_leak(loop):
    seen = []
    hs = [loop.call_soon(setter, seen, i) for i in range(4)]
    settle(loop)
    assert seen == [(i, "unset") for i in range(4)]
    # each handle kept the context its callback ran in
    ctxs = [ctx_of(h) for h in hs]
    assert [c[var] for c in ctxs] == [0, 1, 2, 3]
    assert len({id(c) for c in ctxs}) == 4
    assert var.get() == "unset"


@in_empty_context
def test_call_soon_threadsafe_from_empty_thread_does_not_leak(loop):
    seen = []
    hs = []

    def produce():
        assert var.get() == "unset"
        for i in range(200):
            hs.append(loop.call_soon_threadsafe(setter, seen, i))

    t = threading.Thread(target=produce)
    t.start()
    t.join(10)
    assert not t.is_alive()
    settle(loop)
    assert seen == [(i, "unset") for i in range(200)]
    assert ctx_of(hs[7])[var] == 7 and ctx_of(hs[199])[var] == 199


@in_empty_context
def test_from_non_empty_context_sees_it_and_does_not_leak(loop):
    seen = []

    def produce():
        var.set("producer")
        loop.call_soon_threadsafe(setter, seen, "a")
        loop.call_soon_threadsafe(setter, seen, "b")

    t = threading.Thread(target=produce)
    t.start()
    t.join(10)
    token = var.set("main")
    try:
        loop.call_soon(setter, seen, "c")
        loop.call_soon(setter, seen, "d")
    finally:
        var.reset(token)
    loop.call_soon(setter, seen, "e")    # empty again
    settle(loop)
    assert seen == [("a", "producer"), ("b", "producer"),
                    ("c", "main"), ("d", "main"), ("e", "unset")]


@in_empty_context
def test_callbacks_mixing_empty_and_set_contexts_in_one_batch(loop):
    seen = []
    token = var.set("outer")
    try:
        loop.call_soon(setter, seen, 1)
    finally:
        var.reset(token)
    for i in range(2, 6):
        loop.call_soon(setter, seen, i)
    settle(loop)
    assert seen == [(1, "outer")] + [(i, "unset") for i in range(2, 6)]


@in_empty_context
def test_scheduled_before_a_set_in_the_same_callback(loop):
    seen = []

    def first():
        loop.call_soon(setter, seen, "early")   # scheduled while still empty
        var.set("first")
        loop.call_soon(setter, seen, "late")    # scheduled after the set

    loop.call_soon(first)
    settle(loop)
    assert seen == [("early", "unset"), ("late", "first")]


@in_empty_context
def test_explicit_context_used_as_given(loop):
    ctx = contextvars.Context()            # empty, and shared on purpose
    seen = []
    h1 = loop.call_soon(setter, seen, 1, context=ctx)
    h2 = loop.call_soon(setter, seen, 2, context=ctx)
    h3 = loop.call_later(0, setter, seen, 3, context=ctx)
    assert ctx_of(h1) is ctx and ctx_of(h2) is ctx and ctx_of(h3) is ctx
    settle(loop)
    assert seen == [(1, "unset"), (2, 1), (3, 2)]
    assert ctx[var] == 3


@in_empty_context
def test_get_context_before_run_is_the_one_it_runs_in(loop):
    seen = []
    h1 = loop.call_soon(setter, seen, 1)
    h2 = loop.call_soon(setter, seen, 2)
    c1 = ctx_of(h1)
    assert isinstance(c1, contextvars.Context) and len(c1) == 0
    assert ctx_of(h1) is c1
    c1.run(var.set, "preset")
    c2 = ctx_of(h2)
    assert c2 is not c1 and len(c2) == 0
    settle(loop)
    assert seen == [(1, "preset"), (2, "unset")]
    assert ctx_of(h1) is c1 and c1[var] == 1


@in_empty_context
def test_get_context_of_the_running_handle(loop):
    seen = []
    box = {}

    def cb():
        c = ctx_of(box["h"])
        box["during"] = c
        assert var.get() == "unset"
        var.set("cb")
        assert c[var] == "cb"         # it is the context the callback runs in

    box["h"] = loop.call_soon(cb)
    loop.call_soon(setter, seen, "next")
    settle(loop)
    c = box["during"]
    assert ctx_of(box["h"]) is c and c[var] == "cb"
    # using it later must not reach any other callback
    set_from_outside_then_schedule(loop, c, seen, "after")
    assert seen == [("next", "unset"), ("after", "unset")]


@in_empty_context
def test_get_context_of_an_untouched_handle_after_run(loop):
    h = loop.call_soon(lambda: None)
    settle(loop)
    c = ctx_of(h)
    assert isinstance(c, contextvars.Context) and len(c) == 0
    seen = []
    set_from_outside_then_schedule(loop, c, seen, 1)
    assert seen == [(1, "unset")]


@in_empty_context
def test_copy_context_inside_a_callback(loop):
    copies = []
    seen = []

    def cb():
        copies.append(contextvars.copy_context())
        var.set("cb")
        copies.append(contextvars.copy_context())

    loop.call_soon(cb)
    loop.call_soon(setter, seen, "next")
    settle(loop)
    before, after = copies
    assert var not in before and after[var] == "cb"
    assert before.run(var.get) == "unset"
    set_from_outside_then_schedule(loop, after, seen, "last")
    assert seen == [("next", "unset"), ("last", "unset")]


@in_empty_context
def test_task_created_from_a_callback(loop):
    got = {}

    async def coro(name):
        await asyncio.sleep(0)
        got[name] = var.get()
        var.set("task-" + name)

    def cb():
        got["t1"] = loop.create_task(coro("plain"))
        var.set("cb")
        got["t2"] = loop.create_task(coro("set"))

    loop.call_soon(cb)
    seen = []
    loop.call_soon(setter, seen, "next")
    settle(loop)
    assert got["plain"] == "unset" and got["set"] == "cb"
    assert seen == [("next", "unset")]
    assert got["t1"].done() and got["t2"].done()


@in_empty_context
def test_reset_back_to_empty(loop):
    seen = []
    hs = []

    def cb():
        token = var.set("temp")
        var.reset(token)

    hs.append(loop.call_soon(cb))
    hs.append(loop.call_soon(setter, seen, "next"))
    settle(loop)
    assert seen == [("next", "unset")]
    assert var not in ctx_of(hs[0])


@in_empty_context
def test_call_later_from_empty_context_does_not_leak(loop):
    seen = []
    for i in range(3):
        loop.call_later(0, setter, seen, i)
    settle(loop)
    assert seen == [(i, "unset") for i in range(3)]


@in_empty_context
def test_reader_handle_keeps_its_context_between_runs(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    seen = []
    done = loop.create_future()

    def on_readable():
        seen.append(var.get())
        var.set(len(seen))
        if len(seen) == 3:
            loop.remove_reader(a)
            done.set_result(None)

    other = []
    try:
        b.send(b"x")                     # stays unread: level-triggered
        loop.add_reader(a, on_readable)
        loop.call_soon(setter, other, "elsewhere")
        run(done, timeout=10, loop=loop)
        loop.call_soon(setter, other, "after")
        settle(loop)
    finally:
        loop.remove_reader(a)
        a.close()
        b.close()
    # asyncio: one copy per add_reader, reused by every run
    assert seen == ["unset", 1, 2]
    assert other == [("elsewhere", "unset"), ("after", "unset")]


@in_empty_context
def test_exception_handler_context(loop):
    got = []

    def handler(lp, context):
        got.append(var.get())

    def boom():
        var.set("boom")
        raise ValueError("x")

    loop.set_exception_handler(handler)
    loop.call_soon(boom)
    seen = []
    loop.call_soon(setter, seen, "next")
    settle(loop)
    # 3.12+ runs a custom handler inside the failing handle's context
    assert got == (["boom"] if sys.version_info >= (3, 12) else ["unset"])
    assert seen == [("next", "unset")]


@in_empty_context
def test_executor_completion_keeps_the_task_context(loop):
    async def main():
        var.set("task")
        r = await loop.run_in_executor(None, var.get)
        return r, var.get()

    assert run(main(), loop=loop) == ("unset", "task")
