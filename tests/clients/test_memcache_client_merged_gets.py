"""ringline.memcache merged gets: concurrent single-key gets of one loop
iteration go out as one get line (FIFO order kept, lines capped, full
runs pushed at once, fired gets merged too); a cancelled caller, an error
or broken reply, or a close, each handled for every caller of the line.

Runs on whichever backend RINGLINE_BACKEND selects (io_uring or poll). The
``server`` (one real memcached per module) and ``port`` (flushed for each
test) fixtures are in tests/clients/conftest.py; the stub servers in
support/memcache_stubs.py.
"""
import asyncio

import pytest

import ringline
import ringline.memcache as mc
from support import run
from support.memcached import have_memcached
from support.memcache_stubs import MemStub


pytestmark = pytest.mark.skipif(not have_memcached(), reason="memcached is not installed")


# ---------------------------------------------------------------------------
# merged gets: concurrent single-key gets of one loop iteration -> one line


def _keys_of(line):
    return line.split()[1:]


def test_50_concurrent_gets_go_out_as_one_get_line():
    async def main(stub):
        async with mc.connect("127.0.0.1", stub.port, push_at=0) as c:
            await asyncio.gather(*(c.set(b"k%d" % i, b"value %d" % i, flags=i)
                                   for i in range(20)))
            # 50 tasks, each one get; they all run in the same loop iteration.
            # k0..k19 hit (k0..k9 asked for several times), m0..m4 miss
            asked = [b"k%d" % (i % 20) if i % 10 else b"m%d" % (i // 10) for i in range(50)]

            async def one(key):
                return await c.get(key)
            before = len(stub.lines)
            got = await asyncio.gather(*(one(k) for k in asked))
            want = [b"value %s" % k[1:] if k.startswith(b"k") else None for k in asked]
            assert got == want
            lines = stub.lines[before:]
            assert len(lines) == 1 and lines[0].startswith(b"get ")
            # every key once, in the order first asked for
            assert _keys_of(lines[0]) == list(dict.fromkeys(asked))
            assert c.get_lines == 1 and c.get_calls == 50
            assert c.pending == 0

            # the same with plain futures (no tasks) and gets/get_item mixed in:
            # one ``gets`` line, each caller gets its own kind of result
            before = len(stub.lines)
            futs = [c.get(b"k1"), c.gets(b"k2"), c.get_item(b"k3"), c.get(b"k1"),
                    c.gets(b"nope"), c.get(b"k2")]
            r = await asyncio.gather(*futs)
            assert r[0] == b"value 1" and r[3] == b"value 1" and r[5] == b"value 2"
            assert r[1] == mc.Item(b"k2", b"value 2", 2, stub.store[b"k2"][2])
            assert r[2] == mc.Item(b"k3", b"value 3", 3, None)
            assert r[4] is None
            assert stub.lines[before:] == [b"gets k1 k2 k3 nope"]
            assert c.get_lines == 2 and c.get_calls == 56
    with MemStub() as stub:
        run(main, stub)


def test_merged_gets_keep_fifo_order_with_interleaved_commands():
    async def main(stub):
        async with mc.connect("127.0.0.1", stub.port) as c:
            assert await c.set(b"a", b"old") and await c.set(b"b", b"B")
            before = len(stub.lines)
            # all queued in one iteration: a merged get never moves across
            # another command, so the get after the set sees the new value
            f = [c.get(b"a"), c.get(b"b"), c.set(b"a", b"new"), c.get(b"a"),
                 c.get(b"c"), c.delete(b"b"), c.get(b"b"), c.mg(b"a", "v"),
                 c.get(b"a"), c.get(b"a")]
            r = await asyncio.gather(*f)
            assert r[:7] == [b"old", b"B", True, b"new", None, True, None]
            assert r[7].value == b"new" and r[8] == b"new" and r[9] == b"new"
            assert stub.lines[before:] == [b"get a b", b"set a 0 0 3", b"get a c",
                                           b"delete b", b"get b", b"mg a v", b"get a"]
            # noreply commands end a merged get too (and are closed by mn)
            before = len(stub.lines)
            f1 = c.get(b"a")
            c.set(b"a", b"newer", noreply=True)
            f2 = c.get(b"a")
            assert await f1 == b"new" and await f2 == b"newer"
            assert stub.lines[before:] == [b"get a", b"set a 0 0 5 noreply", b"mn", b"get a"]
            assert c.pending == 0
    with MemStub() as stub:
        run(main, stub)


def test_merged_gets_against_memcached(port):
    async def main():
        async with mc.connect("127.0.0.1", port, push_at=0) as c:
            await asyncio.gather(*(c.set(b"key:%d" % i, b"v%d" % i) for i in range(30)))
            lines0, calls0 = c.get_lines, c.get_calls

            async def one(i):
                return await c.get(b"key:%d" % (i % 40))      # 30..39 miss
            got = await asyncio.gather(*(one(i) for i in range(50)))
            assert got == [b"v%d" % (i % 40) if i % 40 < 30 else None for i in range(50)]
            assert c.get_lines - lines0 == 1 and c.get_calls - calls0 == 50
            # gets merged with gets: each caller its own cas
            items = await asyncio.gather(*(c.gets(b"key:%d" % i) for i in range(5)))
            assert [it.value for it in items] == [b"v%d" % i for i in range(5)]
            assert await c.cas(b"key:0", b"x", items[0].cas) is True
            assert await c.cas(b"key:1", b"y", items[0].cas) is False
            # set, get, set, get in one iteration: in order
            r = await asyncio.gather(c.set(b"o", b"1"), c.get(b"o"), c.get(b"o"),
                                     c.set(b"o", b"2"), c.get(b"o"), c.incr(b"o", 5),
                                     c.get(b"o"))
            assert r == [True, b"1", b"1", True, b"2", 7, b"7"]
            assert c.pending == 0
    run(main)


def test_merged_get_lines_are_capped():
    async def main(stub):
        async with mc.connect("127.0.0.1", stub.port, push_at=0) as c:
            long_keys = [b"%s%04d" % (b"x" * 40, i) for i in range(600)]     # 44 bytes
            short_keys = [b"s%d" % i for i in range(1500)]                   # <= 5 bytes
            for k in long_keys[::7] + short_keys[::7]:
                c.set(k, k[::-1], noreply=True)
            await c.mn()
            before = len(stub.lines)
            got = await asyncio.gather(*(c.get(k) for k in long_keys))
            assert got == [k[::-1] if i % 7 == 0 else None for i, k in enumerate(long_keys)]
            lines = stub.lines[before:]
            assert len(lines) == 4 and all(len(ln) + 2 <= 8000 for ln in lines)
            assert [k for ln in lines for k in _keys_of(ln)] == long_keys
            before = len(stub.lines)
            got = await asyncio.gather(*(c.get(k) for k in short_keys))
            assert got == [k[::-1] if i % 7 == 0 else None for i, k in enumerate(short_keys)]
            lines = stub.lines[before:]
            assert [len(_keys_of(ln)) for ln in lines] == [1000, 500]
    with MemStub() as stub:
        run(main, stub)


def test_full_runs_are_pushed_at_once(port):
    """With the default push_at=16, 16 commands queued in one iteration go
    to the kernel at once (Conn.push): 50 gets make merged lines of 16, 16,
    16 and 2 callers, 40 sets three pushes of 16, and every caller still gets
    its own result, in order."""
    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            await asyncio.gather(*(c.set(b"p:%d" % i, b"v%d" % i) for i in range(50)))
            lines0, calls0, pushes0 = c.get_lines, c.get_calls, c.pushes

            async def one(i):
                return await c.get(b"p:%d" % i)
            got = await asyncio.gather(*(one(i) for i in range(50)))
            assert got == [b"v%d" % i for i in range(50)]
            assert c.get_lines - lines0 == 4 and c.get_calls - calls0 == 50
            assert c.pushes - pushes0 == 3
            # fired gets are pushed the same way
            for i in range(40):
                c.fire(i, "get", b"p:%d" % i)
            assert [await c.recv() for _ in range(40)] == [(i, b"v%d" % i) for i in range(40)]
            assert c.pushes - pushes0 == 5 and c.pending == 0
            stored = await asyncio.gather(*(c.set(b"q:%d" % i, b"w") for i in range(40)))
            assert stored == [True] * 40 and c.pushes - pushes0 == 7
            # a run spread over iterations is not pushed: the count restarts
            for i in range(10):
                assert await c.set(b"r", b"%d" % i) is True
            assert c.pushes - pushes0 == 7 and await c.get(b"r") == b"9"
    run(main)


def test_push_at_is_validated():
    async def main():
        for bad in (-1, 1.5, "16", None):
            with pytest.raises(ValueError, match="push_at"):
                mc.Client(object(), push_at=bad)
    run(main)


def test_fired_gets_are_merged_and_received_in_order():
    async def main(stub):
        async with mc.connect("127.0.0.1", stub.port) as c:
            await c.set(b"a", b"A")
            await c.set(b"b", b"B", flags=5)
            before = len(stub.lines)
            for i, (cmd, key) in enumerate([("get", b"a"), ("get", b"zz"), ("get_item", b"b"),
                                            ("get", b"a"), ("gets", b"b"), ("version", None),
                                            ("get", b"b")]):
                c.fire(i, cmd, *([key] if key else []))
            out = [await c.recv() for _ in range(7)]
            assert [t for t, _ in out] == list(range(7))
            assert out[0][1] == b"A" and out[1][1] is None and out[3][1] == b"A"
            assert out[2][1] == mc.Item(b"b", b"B", 5, None)
            assert out[4][1].cas == stub.store[b"b"][2]
            assert out[5][1] == "1.6.0-stub" and out[6][1] == b"B"
            assert stub.lines[before:] == [b"gets a zz b", b"version", b"get b"]
    with MemStub() as stub:
        run(main, stub)


def test_a_cancelled_caller_does_not_disturb_its_merged_get():
    async def main(stub):
        async with mc.connect("127.0.0.1", stub.port) as c:
            await c.set(b"a", b"A")
            f1, f2, f3 = c.get(b"a"), c.get(b"a"), c.get(b"b")
            f2.cancel()
            task = asyncio.ensure_future(c.get(b"a"))
            await asyncio.sleep(0)
            task.cancel()
            assert await f1 == b"A" and await f3 is None
            assert await c.get(b"a") == b"A" and c.pending == 0
    with MemStub() as stub:
        run(main, stub)


def test_an_error_reply_to_a_merged_get_fails_every_caller_and_keeps_the_connection():
    async def main(stub):
        async with mc.connect("127.0.0.1", stub.port) as c:
            await c.set(b"a", b"A")
            futs = [c.get(b"a"), c.get(b"srverr"), c.gets(b"a")]
            c.fire("fired", "get", b"a")
            after = c.get_many([b"a"])
            for f in futs:
                with pytest.raises(mc.ServerError, match="out of memory"):
                    await f
            tag, err = await c.recv()
            assert tag == "fired" and isinstance(err, mc.ServerError)
            assert await after == {b"a": b"A"}
            assert not c.closed and await c.get(b"a") == b"A"
    with MemStub() as stub:
        run(main, stub)


@pytest.mark.parametrize("key, match", [
    (b"stranger", "not the ones asked for"),
    (b"garbled", "bad data length"),
])
def test_a_broken_reply_to_a_merged_get_fails_every_caller_and_closes(key, match):
    async def main(stub):
        async with mc.connect("127.0.0.1", stub.port) as c:
            await c.set(b"a", b"A")
            before = c.get(b"a")
            assert await before == b"A"
            first = c.set(b"x", b"1")
            futs = [c.get(b"a"), c.get(key), c.get(b"a"), c.get_item(b"b")]
            c.fire("fired", "get", b"b")
            later = c.version()
            assert await first is True
            for f in futs:
                with pytest.raises(mc.ProtocolError, match=match):
                    await f
            tag, err = await c.recv()
            assert tag == "fired" and isinstance(err, mc.ProtocolError)
            with pytest.raises(ringline.ConnectionClosed, match="ProtocolError"):
                await later
            assert c.closed
            with pytest.raises(ringline.ConnectionClosed):
                c.get(b"a")
    with MemStub() as stub:
        run(main, stub)


def test_close_fails_a_merged_get_not_yet_sent(port):
    async def main():
        c = await mc.connect("127.0.0.1", port)
        futs = [c.get(b"k%d" % i) for i in range(5)]
        c.fire("f", "get", b"k")
        await c.close()                   # before the loop flushed the merged get
        for f in futs:
            with pytest.raises(ringline.ConnectionClosed):
                await f
        tag, err = await c.recv()
        assert isinstance(err, ringline.ConnectionClosed)
        assert c.get_lines == 0
        await asyncio.sleep(0)            # the pre-flush hook finds nothing to send
    run(main)
