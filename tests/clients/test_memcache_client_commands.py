"""ringline.memcache against a real memcached, the commands: classic
(get/set and friends, big and zero-copy values, key checks, noreply),
meta (plain and quiet, a random mix checked against a model), pipelining
and fire/recv with a thousand commands in flight, cancelled commands.

Runs on whichever backend RINGLINE_BACKEND selects (io_uring or poll). The
``server`` (one real memcached per module) and ``port`` (flushed for each
test) fixtures are in tests/clients/conftest.py; the stub servers in
support/memcache_stubs.py.
"""
import asyncio
import os

import pytest

import ringline
import ringline.memcache as mc
from support import run
from support.memcached import have_memcached


pytestmark = pytest.mark.skipif(not have_memcached(), reason="memcached is not installed")


# ---------------------------------------------------------------------------
# classic commands


def test_get_set_and_friends(port):
    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            assert await c.get(b"nope") is None
            assert await c.set(b"k", b"v1") is True
            assert await c.get(b"k") == b"v1"
            assert await c.get("k") == b"v1"                   # str keys are UTF-8
            assert await c.set("ключ", b"unicode key") is True
            assert await c.get("ключ".encode()) == b"unicode key"
            assert await c.set(b"f", b"flagged", flags=42, exptime=100)
            item = await c.get_item(b"f")
            assert (item.key, item.value, item.flags) == (b"f", b"flagged", 42)
            assert await c.get_item(b"nope") is None
            assert await c.set(b"empty", b"") and await c.get(b"empty") == b""
            assert await c.set(b"crlf", b"a\r\nEND\r\nb") and await c.get(b"crlf") == b"a\r\nEND\r\nb"
            # get_many: one request, only hits come back
            assert await c.get_many([b"k", b"nope", "f"]) == {b"k": b"v1", b"f": b"flagged"}
            assert await c.get_many([]) == {}
            # add / replace
            assert await c.add(b"k", b"x") is False
            assert await c.add(b"new", b"n") is True
            assert await c.replace(b"absent", b"x") is False
            assert await c.replace(b"new", b"n2") is True
            assert await c.get(b"new") == b"n2"
            # append / prepend
            assert await c.append(b"new", b">") is True
            assert await c.prepend(b"new", b"<") is True
            assert await c.get(b"new") == b"<n2>"
            assert await c.append(b"absent", b"x") is False
            # gets / cas
            item = await c.gets(b"k")
            assert item.value == b"v1" and isinstance(item.cas, int)
            assert await c.cas(b"k", b"v2", item.cas) is True
            assert await c.cas(b"k", b"v3", item.cas) is False     # EXISTS
            assert await c.cas(b"absent", b"v", 1) is None          # NOT_FOUND
            assert await c.get(b"k") == b"v2"
            many = await c.gets_many([b"k", b"new", b"nope"])
            assert set(many) == {b"k", b"new"} and many[b"k"].cas != item.cas
            # incr / decr
            assert await c.incr(b"n") is None
            assert await c.set(b"n", b"10")
            assert await c.incr(b"n", 5) == 15
            assert await c.decr(b"n") == 14
            assert await c.decr(b"n", 100) == 0
            assert await c.incr(b"n", 2**64 - 1) == 2**64 - 1
            with pytest.raises(ValueError):
                c.incr(b"n", -1)
            with pytest.raises(mc.ClientError, match="non-numeric"):
                await c.incr(b"k")
            # delete / touch / gat
            assert await c.touch(b"k", 100) is True
            assert await c.touch(b"nope", 100) is False
            assert await c.gat(100, b"k") == b"v2"
            assert await c.gat(100, b"nope") is None
            assert (await c.gats(100, b"k")).cas is not None
            assert await c.delete(b"k") is True
            assert await c.delete(b"k") is False
            # version / stats / flush_all
            assert (await c.version()).startswith("1.")
            stats = await c.stats()
            assert stats["pid"].isdigit() and "curr_items" in stats
            assert "maxbytes" in await c.stats("settings")
            assert await c.flush_all() is None
            assert await c.get(b"new") is None
            assert c.pending == 0
    run(main)


def test_values_are_bytes_like_and_big_values_round_trip(port):
    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            big = os.urandom(700_000)
            assert await c.set(b"b1", big)
            assert await c.set(b"b2", bytearray(big))
            assert await c.set(b"b3", memoryview(big)[100:])
            assert await c.set(b"s1", bytearray(b"small"))
            assert await c.set(b"s2", memoryview(b"xsmall")[1:])
            assert await c.set(b"arr", memoryview(bytes(range(8))).cast("I"))
            got = await c.get_many([b"b1", b"b2", b"b3", b"s1", b"s2", b"arr"])
            assert got[b"b1"] == big and got[b"b2"] == big and got[b"b3"] == big[100:]
            assert got[b"s1"] == b"small" and got[b"s2"] == b"small"
            assert got[b"arr"] == bytes(range(8))
            with pytest.raises(TypeError, match="encode str"):
                c.set(b"k", "text")
            with pytest.raises(TypeError):
                c.set(b"k", 12)
            # memcached's default 1 MiB item cap: SERVER_ERROR, the connection survives
            with pytest.raises(mc.ServerError, match="too large"):
                await c.set(b"huge", b"x" * (2 << 20))
            assert await c.get(b"b1") == big
    run(main)


def test_zero_copy_values_are_views_of_the_receive_buffer(port):
    async def main():
        async with mc.connect("127.0.0.1", port, zero_copy=True) as c:
            big = os.urandom(300_000)
            await c.set(b"big", big)
            await c.set(b"small", b"tiny")
            v = await c.get(b"big")
            assert isinstance(v, memoryview) and v.readonly and v == big
            got = await c.get_many([b"big", b"small"])
            assert bytes(got[b"small"]) == b"tiny" and got[b"big"] == big
            r = await c.mg(b"big", "v")
            assert isinstance(r.value, memoryview) and r.value == big
            values = await asyncio.gather(*(c.get(b"small") for _ in range(300)))
            assert all(bytes(x) == b"tiny" for x in values)
            del values, v, got, r
    run(main)


def test_keys_are_checked_before_sending(port):
    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            for bad, match in [(b"a b", "whitespace"), (b"a\r\nflush_all", "whitespace"),
                               (b"x" * 251, "251 bytes"), (b"", "empty"),
                               ("tab\t", "whitespace"), (b"nul\x00", "control")]:
                with pytest.raises(ValueError, match=match):
                    c.get(bad)
                with pytest.raises(ValueError, match=match):
                    c.set(bad, b"v")
                with pytest.raises(ValueError, match=match):
                    c.get_many([b"ok", bad])
                with pytest.raises(ValueError, match=match):
                    c.mg(bad, "v")
            with pytest.raises(TypeError):
                c.get(12)
            assert await c.set(b"x" * 250, b"max") and await c.get(b"x" * 250) == b"max"
            assert c.pending == 0 and not c.closed
    run(main)


def test_noreply_variants(port):
    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            assert await c.set(b"a", b"1", noreply=True) is None
            c.set(b"b", b"2", noreply=True)
            c.add(b"a", b"no", noreply=True)            # not stored, silently
            c.add(b"c", b"3", noreply=True)
            c.replace(b"b", b"22", noreply=True)
            c.append(b"b", b">", noreply=True)
            c.prepend(b"b", b"<", noreply=True)
            c.set(b"n", b"5", noreply=True)
            c.incr(b"n", 10, noreply=True)
            c.decr(b"n", 1, noreply=True)
            c.touch(b"a", 50, noreply=True)
            c.delete(b"c", noreply=True)
            assert await c.get_many([b"a", b"b", b"c", b"n"]) == {
                b"a": b"1", b"b": b"<22>", b"n": b"14"}
            item = await c.gets(b"a")
            c.cas(b"a", b"cas'd", item.cas, noreply=True)
            assert await c.get(b"a") == b"cas'd"
            # a whole batch of noreply commands then one reply
            for i in range(500):
                c.set(b"nr%d" % i, b"%d" % i, noreply=True)
            got = await c.get_many([b"nr%d" % i for i in range(500)])
            assert len(got) == 500 and got[b"nr499"] == b"499"
            # noreply as the last command of an iteration: the sync mn goes out by itself
            c.set(b"last", b"L", noreply=True)
            await asyncio.sleep(0.05)
            assert c.pending == 0
            c.flush_all(noreply=True)
            assert await c.get(b"last") is None
            c.set(b"b", b"text", noreply=True)
            c.incr(b"b", 1, noreply=True)               # non-numeric: the error is hidden too
            assert await c.get(b"b") == b"text"
            assert c.noreply_errors == 0 and not c.closed
    run(main)


# ---------------------------------------------------------------------------
# meta commands


def test_meta_commands(port):
    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            r = await c.mg(b"k", "v")
            assert r.status == "EN" and not r.hit and r.value is None
            r = await c.ms(b"k", b"hello", "T0", "F7", "c")
            assert r.status == "HD" and r.ok and r.cas
            cas = r.cas
            r = await c.mg(b"k", "v", "f", "t", "c", "k", "s", "O42")
            assert r.status == "VA" and r.value == b"hello"
            assert (r.client_flags, r.ttl, r.cas, r.key, r.size, r.opaque) == (
                7, -1, cas, "k", 5, "42")
            r = await c.mg(b"k")                               # no flags: HD on a hit
            assert r.status == "HD" and r.value is None
            r = await c.mg(b"k", "T100", "t")
            assert 0 < r.ttl <= 100
            # ms modes and cas compare
            assert (await c.ms(b"k", b"!", "MA")).status == "HD"        # append
            assert (await c.mg(b"k", "v")).value == b"hello!"
            assert (await c.ms(b"k", b"x", "ME")).status == "NS"        # add: exists
            assert (await c.ms(b"k", b"x", "C1")).status == "EX"        # cas mismatch
            assert (await c.ms(b"k", bytearray(b"bytes-like"), b"T0")).ok
            assert (await c.mg(b"k", "v")).value == b"bytes-like"
            # md
            assert (await c.md(b"k", "C1")).status == "EX"
            assert (await c.md(b"k")).status == "HD"
            assert (await c.md(b"k")).status == "NF"
            # ma
            assert (await c.ma(b"ctr")).status == "NF"
            r = await c.ma(b"ctr", "N0", "J10", "v")
            assert r.status == "VA" and r.value == b"10"
            r = await c.ma(b"ctr", "D5", "v")
            assert r.value == b"15"
            r = await c.ma(b"ctr", "MD", "D20", "v", "t", "c")
            assert r.value == b"0" and r.ttl == -1 and r.cas
            assert (await c.ma(b"ctr")).status == "HD"
            # stale-while-revalidate flags: invalidate, then the next mg wins
            await c.ms(b"sw", b"old", "T0")
            assert (await c.md(b"sw", "I", "T30")).status == "HD"
            r = await c.mg(b"sw", "v", "c")
            assert r.stale and r.won and r.value == b"old"
            assert await c.mn() is None
            # flags are checked before sending
            with pytest.raises(ValueError, match="unknown flag"):
                c.ms(b"k", b"v", "v")
            with pytest.raises(ValueError, match="needs a token"):
                c.mg(b"k", "T")
            with pytest.raises(ValueError, match="opaque token longer"):
                c.mg(b"k", "O" + "x" * 40)
            assert c.pending == 0 and not c.closed
    run(main)


def test_quiet_meta_commands(port):
    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            for i in range(0, 20, 2):
                await c.ms(b"q%d" % i, b"v%d" % i)
            # a pipelined batch of quiet gets: hits come back, misses are EN
            rs = await asyncio.gather(*(c.mg(b"q%d" % i, "v", "q", "k") for i in range(20)))
            for i, r in enumerate(rs):
                if i % 2 == 0:
                    assert r.status == "VA" and r.value == b"v%d" % i and r.key == "q%d" % i
                else:
                    assert r.status == "EN" and r.value is None
            # quiet sets/deletes resolve to HD (suppressed) or their real status
            rs = await asyncio.gather(c.ms(b"a", b"1", "q"), c.ms(b"a", b"2", "q", "ME"),
                                      c.md(b"nope", "q"), c.md(b"a", "q"),
                                      c.ma(b"nope", "q"), c.mg(b"q0", "v", "q", "O77"))
            assert [r.status for r in rs] == ["HD", "NS", "NF", "HD", "NF", "VA"]
            assert rs[5].opaque == "77"
            # quiet and ordinary commands interleaved
            f1 = c.mg(b"q1", "v", "q")
            f2 = c.get(b"q2")
            f3 = c.mg(b"q4", "v", "q")
            f4 = c.set(b"z", b"z", noreply=True)
            f5 = c.mg(b"q6", "v")
            assert (await f1).status == "EN" and await f2 == b"v2"
            assert (await f3).value == b"v4" and await f4 is None
            assert (await f5).value == b"v6"
            assert await c.get(b"z") == b"z"
            assert c.pending == 0
    run(main)


def test_random_mix_of_quiet_noreply_and_ordinary_commands_matches_a_model(port):
    """Pipelined batches mixing every reply style; memcached runs them in
    order, so a dict model predicts every result."""
    import random
    rng = random.Random(1234)

    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            model = {}
            for _ in range(25):
                futs, expected = [], []
                for _ in range(rng.randint(1, 120)):
                    k = b"m%d" % rng.randint(0, 15)
                    v = b"v%d" % rng.randint(0, 999)
                    op = rng.randrange(10)
                    if op == 0:
                        futs.append(c.set(k, v)); expected.append(True); model[k] = v
                    elif op == 1:
                        futs.append(c.set(k, v, noreply=True)); expected.append(None)
                        model[k] = v
                    elif op == 2:
                        futs.append(c.get(k)); expected.append(model.get(k))
                    elif op == 3:
                        futs.append(c.mg(k, "v", "q"))
                        expected.append(("VA", model[k]) if k in model else ("EN", None))
                    elif op == 4:
                        futs.append(c.mg(k, "v"))
                        expected.append(("VA", model[k]) if k in model else ("EN", None))
                    elif op == 5:
                        futs.append(c.ms(k, v, "q")); expected.append(("HD", None))
                        model[k] = v
                    elif op == 6:
                        futs.append(c.md(k, "q"))
                        expected.append(("HD", None) if k in model else ("NF", None))
                        model.pop(k, None)
                    elif op == 7:
                        futs.append(c.delete(k, noreply=True)); expected.append(None)
                        model.pop(k, None)
                    elif op == 8:
                        futs.append(c.add(k, v)); expected.append(k not in model)
                        model.setdefault(k, v)
                    else:
                        futs.append(c.delete(k)); expected.append(k in model)
                        model.pop(k, None)
                    if rng.random() < 0.1:
                        await asyncio.sleep(0)         # split the batch across iterations
                results = await asyncio.gather(*futs)
                got = [(r.status, r.value) if isinstance(r, mc.MetaResult) else r
                       for r in results]
                assert got == expected
            assert c.pending == 0 and c.noreply_errors == 0
    run(main)


# ---------------------------------------------------------------------------
# pipelining, fire/recv


def test_pipelining_1000_concurrent_commands(port):
    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            sets = await asyncio.gather(*(c.set(b"p%d" % i, b"value-%d" % i)
                                          for i in range(1000)))
            assert all(sets)

            async def one(i):
                return await c.get(b"p%d" % i)
            got = await asyncio.gather(*(one(i) for i in range(1000)))
            assert got == [b"value-%d" % i for i in range(1000)]
            # mixed commands from many tasks stay matched
            futs = []
            for i in range(1000):
                if i % 3 == 0:
                    futs.append(c.get(b"p%d" % i))
                elif i % 3 == 1:
                    futs.append(c.mg(b"p%d" % i, "v"))
                else:
                    futs.append(c.delete(b"p%d" % i))
            res = await asyncio.gather(*futs)
            for i, r in enumerate(res):
                if i % 3 == 0:
                    assert r == b"value-%d" % i
                elif i % 3 == 1:
                    assert r.value == b"value-%d" % i
                else:
                    assert r is True
    run(main)


def test_fire_recv_1000_in_flight(port):
    async def main():
        async with mc.connect("127.0.0.1", port, max_in_flight=1000) as c:
            for i in range(1000):
                c.fire(("set", i), "set", b"f%d" % i, b"%d" % i)
            assert c.in_flight == 1000
            with pytest.raises(ringline.QueueFull):
                c.fire("one too many", "get", b"x")
            results = [await c.recv() for _ in range(1000)]
            assert results == [(("set", i), True) for i in range(1000)]
            for i in range(1000):
                c.fire(i, "get", b"f%d" % i)
            tags = []
            for i in range(1000):
                tag, value = await c.recv()
                assert value == b"%d" % tag
                tags.append(tag)
            assert tags == list(range(1000))
            with pytest.raises(RuntimeError, match="no fired command"):
                await c.recv()
            # every command kind can be fired; errors come back as results
            c.fire("mg", "mg", b"f1", "v")
            c.fire("mgq", "mg", b"missing", "v", "q")
            c.fire("ms", "ms", b"f2", b"new", "T0")
            c.fire("incr", "incr", b"f3", 2)
            c.fire("bad", "incr", b"mg")          # missing -> None
            c.fire("set", "set", b"txt", b"abc")
            c.fire("err", "incr", b"txt")         # non-numeric -> ClientError
            c.fire("ver", "version")
            c.fire("many", "get_many", [b"f4", b"f5"])
            out = dict([await c.recv() for _ in range(9)])
            assert out["mg"].value == b"1" and out["mgq"].status == "EN"
            assert out["ms"].status == "HD" and out["incr"] == 5 and out["bad"] is None
            assert isinstance(out["err"], mc.ClientError)
            assert out["ver"].startswith("1.")
            assert out["many"] == {b"f4": b"4", b"f5": b"5"}
            with pytest.raises(ValueError, match="unknown command"):
                c.fire(1, "nope")
            with pytest.raises(ValueError, match="noreply"):
                c.fire(1, "set", b"k", b"v", noreply=True)
    run(main)


def test_cancelled_commands_do_not_desync(port):
    async def main():
        async with mc.connect("127.0.0.1", port) as c:
            await c.set(b"a", b"A")
            await c.set(b"b", b"B")
            f1 = c.get(b"a")
            f1.cancel()
            task = asyncio.ensure_future(c.get(b"a"))
            await asyncio.sleep(0)
            task.cancel()
            assert await c.get(b"b") == b"B"
            assert await c.get(b"a") == b"A"
    run(main)
