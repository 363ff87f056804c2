"""Behaviour that changed between CPython 3.11, 3.12 and 3.13, checked on
stock asyncio and on ringline (both backends through RINGLINE_BACKEND).

Owns the version-sensitive scenarios: the custom exception handler for
callbacks (3.12+ runs it inside the handle's context), eager task factories
(3.12+), asyncio.run / Runner with a loop_factory, TaskGroup and timeout
semantics, Queue.shutdown (3.13), and Server.close_clients/abort_clients
(3.13's base class; ringline's own on 3.11/3.12).  Every scenario runs on
both loops and the results are compared, or checked against what asyncio
documents when the result is a plain value.
"""
import asyncio
import contextvars
import sys

import pytest

import ringline

from support import run

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)

request_id = contextvars.ContextVar("request_id", default="base")


# ---- the exception handler for callbacks ---------------------------------

def _handler_scenario(loop):
    """A callback raises; the custom handler must see it (in the callback's
    context on 3.12+, as asyncio runs it there)."""
    seen = []

    def handler(lp, context):
        seen.append((type(context.get("exception")).__name__,
                     context["message"].startswith("Exception in callback"),
                     context.get("handle") is not None,
                     request_id.get()))

    def boom():
        raise ValueError("boom")

    loop.set_exception_handler(handler)
    ctx = contextvars.copy_context()
    ctx.run(request_id.set, "cb-ctx")

    async def main():
        loop.call_soon(boom, context=ctx)
        loop.call_later(0.001, boom, context=ctx)
        for _ in range(50):
            await asyncio.sleep(0.002)
            if len(seen) == 2:
                break

    try:
        run(main(), loop=loop)
    finally:
        loop.close()
    return seen


def test_exception_handler_sees_callback_errors(loop_factory):
    ref = _handler_scenario(asyncio.SelectorEventLoop())
    got = _handler_scenario(loop_factory())
    assert len(ref) == 2
    assert got == ref


def test_exception_handler_for_callback_runs_in_handle_context(loop_factory):
    seen = _handler_scenario(loop_factory())
    want = "cb-ctx" if PY312 else "base"
    assert [s[3] for s in seen] == [want, want]


# ---- eager tasks (3.12+) ----------------------------------------------------

needs312 = pytest.mark.skipif(not PY312, reason="asyncio feature of 3.12+")
needs313 = pytest.mark.skipif(not PY313, reason="asyncio feature of 3.13+")


def _eager_scenario(loop, factory):
    order = []

    async def child(n):
        order.append(f"start{n}")
        if n == 2:
            await asyncio.sleep(0)
        order.append(f"end{n}")
        return n * 10

    async def main():
        loop.set_task_factory(factory)
        t1 = asyncio.create_task(child(1))
        order.append(f"after1 done={t1.done()}")
        t2 = loop.create_task(child(2))
        order.append(f"after2 done={t2.done()}")
        res = await asyncio.gather(t1, t2)
        order.append(res)
        return type(t1).__name__

    try:
        kind = run(main(), loop=loop)
    finally:
        loop.close()
    return order, kind


@needs312
def test_eager_task_factory(loop_factory):
    ref = _eager_scenario(asyncio.SelectorEventLoop(), asyncio.eager_task_factory)
    got = _eager_scenario(loop_factory(), asyncio.eager_task_factory)
    assert ref[0][:2] == ["start1", "end1"]
    assert got == ref


@needs312
def test_create_eager_task_factory_custom_class(loop_factory):
    class MyTask(asyncio.Task):
        pass

    factory = asyncio.create_eager_task_factory(MyTask)
    ref = _eager_scenario(asyncio.SelectorEventLoop(), factory)
    got = _eager_scenario(loop_factory(), factory)
    assert ref[1] == "MyTask"
    assert got == ref


@needs312
def test_eager_task_context_and_current_task(loop_factory):
    def scenario(loop):
        async def child():
            return (asyncio.current_task() is not None, request_id.get())

        async def main():
            loop.set_task_factory(asyncio.eager_task_factory)
            request_id.set("parent")
            t = asyncio.create_task(child())
            done_at_once = t.done()
            return done_at_once, await t

        try:
            return run(main(), loop=loop)
        finally:
            loop.close()

    ref = scenario(asyncio.SelectorEventLoop())
    assert ref == (True, (True, "parent"))
    assert scenario(loop_factory()) == ref


# ---- asyncio.run / Runner with a loop factory --------------------------------

def _which_loop():
    return type(asyncio.get_running_loop()).__name__


@needs312
def test_asyncio_run_with_loop_factory():
    assert asyncio.run(_which_loop_coro(),
                       loop_factory=ringline.new_event_loop) == "Loop"
    assert asyncio.run(_which_loop_coro(),
                       loop_factory=asyncio.SelectorEventLoop) == "_UnixSelectorEventLoop"


async def _which_loop_coro():
    await asyncio.sleep(0)
    return _which_loop()


def test_runner_with_loop_factory():
    with asyncio.Runner(loop_factory=ringline.new_event_loop) as runner:
        assert runner.run(_which_loop_coro()) == "Loop"
        loop = runner.get_loop()
        assert isinstance(loop, ringline.Loop)
        assert runner.run(_which_loop_coro()) == "Loop"
    assert loop.is_closed()


def test_ringline_run_returns_and_closes():
    seen = []

    async def main():
        seen.append(asyncio.get_running_loop())
        return 7

    assert ringline.run(main()) == 7
    assert seen[0].is_closed()


# ---- TaskGroup and timeouts ---------------------------------------------------

def _taskgroup_scenario(loop):
    log = []

    async def ok(n):
        await asyncio.sleep(0.001 * n)
        log.append(f"ok{n}")
        return n

    async def bad():
        await asyncio.sleep(0.002)
        raise ValueError("bad")

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            log.append("slow-cancelled")
            raise

    async def main():
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(ok(1))
                tg.create_task(bad())
                tg.create_task(slow())
        except* ValueError as eg:
            log.append(("eg", [str(e) for e in eg.exceptions]))
        # timeout(): the timed-out block raises TimeoutError, the outer task
        # is not left cancelled
        try:
            async with asyncio.timeout(0.01) as cm:
                await asyncio.sleep(10)
        except TimeoutError:
            log.append(("timeout", cm.expired()))
        log.append(("uncancel", asyncio.current_task().cancelling()))
        # reschedule
        async with asyncio.timeout(None) as cm:
            cm.reschedule(asyncio.get_running_loop().time() + 5)
            await asyncio.sleep(0)
        log.append(("rescheduled", cm.expired()))
        # a timeout around a TaskGroup whose children are cancelled
        try:
            async with asyncio.timeout(0.01):
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(slow())
        except TimeoutError:
            log.append("tg-timeout")
        try:
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        except TimeoutError:
            log.append("wait_for-timeout")
        return log

    try:
        return run(main(), loop=loop)
    finally:
        loop.close()


def test_taskgroup_and_timeout_semantics(loop_factory):
    ref = _taskgroup_scenario(asyncio.SelectorEventLoop())
    assert ("eg", ["bad"]) in ref and "tg-timeout" in ref
    assert _taskgroup_scenario(loop_factory()) == ref


# ---- Queue.shutdown (3.13) ------------------------------------------------------

def _queue_shutdown_scenario(loop):
    log = []

    async def main():
        q = asyncio.Queue()
        for i in range(3):
            q.put_nowait(i)

        async def getter():
            try:
                while True:
                    log.append(("got", await q.get()))
                    q.task_done()
            except asyncio.QueueShutDown:
                log.append("getter-shutdown")

        g = asyncio.create_task(getter())
        await asyncio.sleep(0.001)
        q.shutdown()
        await g
        try:
            q.put_nowait(9)
        except asyncio.QueueShutDown:
            log.append("put-shutdown")
        q2 = asyncio.Queue()
        q2.put_nowait("x")
        waiter = asyncio.create_task(q2.join())
        await asyncio.sleep(0)
        q2.shutdown(immediate=True)
        await asyncio.wait_for(waiter, 1)
        log.append(("immediate-empty", q2.empty()))
        return log

    try:
        return run(main(), loop=loop)
    finally:
        loop.close()


@needs313
def test_queue_shutdown(loop_factory):
    ref = _queue_shutdown_scenario(asyncio.SelectorEventLoop())
    assert "getter-shutdown" in ref and "put-shutdown" in ref
    assert _queue_shutdown_scenario(loop_factory()) == ref


# ---- the policy system (deprecated from 3.14) ------------------------------------

def test_install_and_import_without_deprecation_warnings():
    """import ringline and ringline.install() warn on no supported Python
    (3.14 deprecates asyncio.DefaultEventLoopPolicy and
    set_event_loop_policy(); ringline uses what stays warning-free), and
    install() still makes asyncio.new_event_loop() a ringline loop."""
    import subprocess
    code = (
        "import asyncio, ringline\n"
        "ringline.install()\n"
        "loop = asyncio.new_event_loop()\n"
        "assert isinstance(loop, ringline.Loop), loop\n"
        "loop.close()\n"
        "assert asyncio.run(asyncio.sleep(0, 'ok')) == 'ok'\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning",
                          "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ---- Unix server socket cleanup (3.13: cleanup_socket) ----------------------------

def _unix_cleanup_scenario(loop, tmp_path, **kw):
    import os
    import socket as _socket
    out = []

    async def main():
        async def serve(r, w):
            w.close()
        # bound by the server from a path
        path = str(tmp_path / "a.sock")
        srv = await asyncio.start_unix_server(serve, path, **kw)
        srv.close()
        await srv.wait_closed()
        out.append(os.path.exists(path))
        # an already bound socket passed in
        path2 = str(tmp_path / "b.sock")
        with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as sock:
            sock.bind(path2)
            srv = await asyncio.start_unix_server(serve, sock=sock, **kw)
            srv.close()
            await srv.wait_closed()
        out.append(os.path.exists(path2))
        # replaced by someone else meanwhile: their file stays
        path3 = str(tmp_path / "c.sock")
        srv = await asyncio.start_unix_server(serve, path3, **kw)
        os.unlink(path3)
        with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as other:
            other.bind(path3)
            srv.close()
            await srv.wait_closed()
            out.append(os.path.exists(path3))
        for p in (path, path2, path3):
            if os.path.exists(p):
                os.unlink(p)
        return out

    try:
        return run(main(), loop=loop)
    finally:
        loop.close()


@pytest.mark.parametrize("kw", [{}, {"cleanup_socket": False}],
                         ids=["default", "no-cleanup"])
def test_unix_server_socket_cleanup(loop_factory, tmp_path, kw):
    if kw and not PY313:
        pytest.skip("cleanup_socket is a 3.13 parameter")
    (tmp_path / "ref").mkdir()
    (tmp_path / "got").mkdir()
    ref = _unix_cleanup_scenario(asyncio.SelectorEventLoop(), tmp_path / "ref", **kw)
    got = _unix_cleanup_scenario(loop_factory(), tmp_path / "got", **kw)
    if PY313 and not kw:
        assert ref == [False, False, True]
    assert got == ref
