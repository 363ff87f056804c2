"""Event-loop API, work off the loop thread: async-generator finalisation
and shutdown_asyncgens, the default executor (run_in_executor,
set_default_executor, shutdown_default_executor), getaddrinfo /
getnameinfo, as documented for asyncio 3.11.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` / ``loop_factory`` fixtures of conftest.py;
helpers shared with the other test_loop_api_*.py files are in
support/loop_api.py.
"""
import asyncio
import concurrent.futures
import socket
import threading
import time

import pytest

from support import run
from support.loop_api import Boom


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
# numeric hosts: resolved without the resolver, same answers
# ---------------------------------------------------------------------------


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
