"""ringline.memcache against a real memcached (and asyncio stub servers).

Runs on whichever backend RINGLINE_BACKEND selects (io_uring or poll).
"""
import asyncio
import os
import socket
import ssl
import subprocess

import pytest

import ringline
import ringline.memcache as mc
from ringline._util.ketama import Ketama
from support import DOCS, run
from support.memcached import Memcached, have_memcached, memcached_has_tls
from support.servers import ThreadedServer

pytestmark = pytest.mark.skipif(not have_memcached(), reason="memcached is not installed")


@pytest.fixture(scope="module")
def server():
    m = Memcached().start()
    yield m
    m.stop()


@pytest.fixture
def port(server):
    # a clean cache for every test
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"flush_all\r\n")
        assert s.recv(100) == b"OK\r\n"
    return server.port


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


# ---------------------------------------------------------------------------
# connection failures


def test_close_fails_pending_and_later_commands(port):
    async def main():
        c = await mc.connect(f"127.0.0.1:{port}")
        assert await c.set(b"k", b"v")
        futs = [c.get(b"k") for _ in range(10)]
        await c.close()
        for f in futs:
            with pytest.raises(ringline.ConnectionClosed):
                await f
        with pytest.raises(ringline.ConnectionClosed, match="closed"):
            c.get(b"k")
        assert c.closed
        await c.close()                              # idempotent
    run(main)


def test_server_going_away_fails_pending_commands():
    async def main(m):
        c = await mc.connect("127.0.0.1", m.port)
        assert await c.set(b"k", b"v")
        m.stop()
        for _ in range(100):
            if c.closed:
                break
            await asyncio.sleep(0.02)
        assert c.closed
        with pytest.raises(ringline.ConnectionClosed, match="memcached closed the connection"):
            await c.get(b"k")
        await c.close()
    m = Memcached().start()
    try:
        run(main, m)
    finally:
        m.stop()


def test_connect_refused_and_timeout():
    async def main():
        port = Memcached().port                 # nobody listens there
        with pytest.raises(OSError):
            await mc.connect("127.0.0.1", port)
    run(main)


def test_reply_over_max_value_size_closes_that_connection(port):
    async def main():
        async with mc.connect("127.0.0.1", port) as good:
            await good.set(b"big", b"x" * 5000)
            bad = await mc.connect("127.0.0.1", port, max_value_size=4096)
            f1 = bad.get(b"big")
            f2 = bad.get(b"big")         # merged with f1: the same reply breaks both
            f3 = bad.version()
            for f in (f1, f2):
                with pytest.raises(mc.ProtocolError, match=r"5000 bytes exceeds max_value_size"):
                    await f
            with pytest.raises(ringline.ConnectionClosed, match="ProtocolError"):
                await f3
            assert bad.closed
            assert await good.get(b"big") == b"x" * 5000
            await bad.close()
    run(main)


# ---------------------------------------------------------------------------
# a stub server (stdlib asyncio in a thread) answering broken replies


class StubServer(ThreadedServer):
    """Answers each request line with a canned reply chosen by the key."""

    REPLIES = {
        b"truncated": (b"VALUE truncated 0 10\r\nabc", True),       # then close
        b"garbage": (b"HELLO THERE\r\n", False),
        b"badlen": (b"VALUE badlen 0 zz\r\nabc\r\nEND\r\n", False),
        b"nocrlf": (b"VALUE nocrlf 0 3\r\nabcdef\r\nEND\r\n", False),
        b"silent": (b"VALUE silent 0 10\r\nabc", None),             # then hang
        b"wrongtype": (b"STORED\r\n", False),
        b"ok": (b"VALUE ok 0 2\r\nok\r\nEND\r\n", False),
    }

    async def _handle(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                parts = line.split()
                if parts[:1] == [b"set"]:
                    await reader.readexactly(int(parts[4]) + 2)
                    if b"noreply" in parts:
                        if parts[1] == b"nrerr":   # an error despite noreply
                            writer.write(b"SERVER_ERROR out of memory storing object\r\n")
                        continue
                    writer.write(b"STORED\r\n")
                    continue
                if parts[:1] == [b"mn"]:
                    writer.write(b"MN\r\n")
                    continue
                key = parts[1] if len(parts) > 1 else b""
                reply, close = self.REPLIES.get(key, (b"END\r\n", False))
                writer.write(reply)
                await writer.drain()
                if close:
                    break
                if close is None:
                    await self._stop.wait()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("key, error, match", [
    (b"truncated", mc.ProtocolError, "closed the connection in the middle of a reply"),
    (b"garbage", mc.ProtocolError, "unexpected reply line b'HELLO THERE'"),
    (b"badlen", mc.ProtocolError, "bad data length"),
    (b"nocrlf", mc.ProtocolError, "not followed by CRLF"),
    (b"wrongtype", mc.ProtocolError, "unexpected reply b'STORED' to get"),
    (b"silent", TimeoutError, "sent no reply for 0.3 s"),
])
def test_broken_reply_fails_that_connection_only(port, key, error, match):
    async def main(stub):
        async with mc.connect("127.0.0.1", port) as good:
            await good.set(b"k", b"v")
            bad = await mc.connect("127.0.0.1", stub.port, reply_timeout=0.3)
            assert await bad.get(b"ok") == b"ok"
            f1 = bad.get(key)
            f2 = bad.get(b"ok")          # merged with f1: one line, one (broken) reply
            f3 = bad.set(b"after", b"x")
            background = [good.get(b"k") for _ in range(50)]
            for f in (f1, f2):
                with pytest.raises(error, match=match):
                    await f
            with pytest.raises(ringline.ConnectionClosed):
                await f3
            assert bad.closed
            with pytest.raises(ringline.ConnectionClosed):
                bad.get(b"ok")
            assert await asyncio.gather(*background) == [b"v"] * 50
            assert await good.get(b"k") == b"v"
            await bad.close()
    with StubServer() as stub:
        run(main, stub)


def test_errors_after_noreply_commands_are_counted_not_misrouted():
    async def main(stub):
        async with mc.connect("127.0.0.1", stub.port) as c:
            c.set(b"nrerr", b"x", noreply=True)
            c.set(b"fine", b"x", noreply=True)
            # the stub answers the first set with SERVER_ERROR despite noreply:
            # it must not become the reply of the get that follows
            assert await c.get(b"nothing") is None
            assert c.noreply_errors == 1
            assert await c.get(b"ok") == b"ok"
            c.set(b"nrerr", b"x", noreply=True)     # last in its iteration
            await asyncio.sleep(0.05)
            assert c.noreply_errors == 2 and c.pending == 0 and not c.closed
    with StubServer() as stub:
        run(main, stub)


# ---------------------------------------------------------------------------
# merged gets: concurrent single-key gets of one loop iteration -> one line


class MemStub(StubServer):
    """A tiny in-memory memcache (get/gets/set/delete/mg/mn/version) that
    records every request line. Keys with a meaning: ``srverr`` makes the
    whole get reply SERVER_ERROR, ``stranger`` adds a VALUE for a key nobody
    asked for, ``garbled`` answers garbage."""

    def __init__(self):
        super().__init__()
        self.lines = []
        self.store = {}
        self._cas = 0

    def get_lines(self):
        return [ln for ln in self.lines if ln.split()[0] in (b"get", b"gets")]

    async def _handle(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                line = line.rstrip(b"\r\n")
                self.lines.append(line)
                parts = line.split()
                cmd = parts[0]
                if cmd in (b"get", b"gets"):
                    keys = parts[1:]
                    if b"srverr" in keys:
                        writer.write(b"SERVER_ERROR out of memory\r\n")
                        continue
                    if b"garbled" in keys:
                        writer.write(b"VALUE garbled 0 zz\r\n")
                        continue
                    out = []
                    for k in keys + ([b"nobody"] if b"stranger" in keys else []):
                        if k == b"nobody" or k in self.store:
                            flags, v, cas = self.store.get(k, (0, b"?", 1))
                            head = b"VALUE %b %d %d" % (k, flags, len(v))
                            if cmd == b"gets":
                                head += b" %d" % cas
                            out.append(head + b"\r\n" + v + b"\r\n")
                    writer.write(b"".join(out) + b"END\r\n")
                elif cmd == b"set":
                    data = (await reader.readexactly(int(parts[4]) + 2))[:-2]
                    self._cas += 1
                    self.store[parts[1]] = (int(parts[2]), data, self._cas)
                    if b"noreply" not in parts:
                        writer.write(b"STORED\r\n")
                elif cmd == b"delete":
                    found = self.store.pop(parts[1], None) is not None
                    writer.write(b"DELETED\r\n" if found else b"NOT_FOUND\r\n")
                elif cmd == b"mg":
                    item = self.store.get(parts[1])
                    if item is None:
                        writer.write(b"EN\r\n")
                    else:
                        writer.write(b"VA %d\r\n%b\r\n" % (len(item[1]), item[1]))
                elif cmd == b"mn":
                    writer.write(b"MN\r\n")
                elif cmd == b"version":
                    writer.write(b"VERSION 1.6.0-stub\r\n")
                else:
                    writer.write(b"ERROR\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


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


# ---------------------------------------------------------------------------
# Pool and ShardedClient


def test_pool_round_robin_and_survives_a_restart():
    async def main(m):
        async with mc.Pool("127.0.0.1", m.port, size=3) as pool:
            assert pool.connected == 0                   # lazy
            assert await pool.set(b"k", b"v")
            assert await asyncio.gather(*(pool.get(b"k") for _ in range(30))) == [b"v"] * 30
            assert pool.connected == 3
            clients = {id(await pool.client()) for _ in range(6)}
            assert len(clients) == 3

            await asyncio.to_thread(m.restart)          # same port, empty cache
            ok = 0
            errors = 0
            for _ in range(200):
                try:
                    await pool.set(b"k2", b"after")
                    assert await pool.get(b"k2") == b"after"
                    ok += 1
                    if ok >= 10:
                        break
                except (ConnectionError, OSError):
                    errors += 1
                    await asyncio.sleep(0.02)
            assert ok >= 10, errors
            assert pool.connected == 3 or pool.connected >= 1
            assert pool.reconnects >= 1
            assert await asyncio.gather(*(pool.get(b"k2") for _ in range(30))) == [b"after"] * 30
        with pytest.raises(ringline.ConnectionClosed):
            pool.get(b"k")
    m = Memcached().start()
    try:
        run(main, m)
    finally:
        m.stop()


def test_pool_connect_failure_then_recovery():
    async def main(m):
        pool = mc.Pool("127.0.0.1", m.port, size=2, timeout=2)
        with pytest.raises(OSError):
            await pool.get(b"k")
        await asyncio.to_thread(m.start)
        assert await pool.set(b"k", b"v") and await pool.get(b"k") == b"v"
        await pool.close()
    m = Memcached()
    try:
        run(main, m)
    finally:
        m.stop()


def test_sharded_client_routes_by_ketama():
    servers = [Memcached().start() for _ in range(3)]
    try:
        nodes = {s.address: w for s, w in zip(servers, (1, 2, 3))}

        async def main():
            ring = Ketama(nodes)
            async with mc.ShardedClient(nodes, pool_size=2) as sc:
                keys = [b"key:%d" % i for i in range(300)]
                assert all(await asyncio.gather(*(sc.set(k, k + b"!") for k in keys)))
                assert await sc.get_many(keys) == {k: k + b"!" for k in keys}
                assert await sc.get(b"key:7") == b"key:7!"
                assert (await sc.mg(b"key:8", "v")).value == b"key:8!"
                assert await sc.gat(100, b"key:9") == b"key:9!"
                assert sc.node_for(b"key:1") == ring.node_for(b"key:1")
                # each key lives on exactly the server ketama names
                per_node = {}
                for s in servers:
                    async with mc.connect("127.0.0.1", s.port) as c:
                        per_node[s.address] = set(await c.get_many(keys))
                for k in keys:
                    owners = [n for n, ks in per_node.items() if k in ks]
                    assert owners == [ring.node_for(k)]
                assert all(len(v) > 20 for v in per_node.values())
                versions = await sc.version()
                assert set(versions) == set(nodes)
                await sc.flush_all()
                assert await sc.get_many(keys) == {}
        run(main)
    finally:
        for s in servers:
            s.stop()


# ---------------------------------------------------------------------------
# TLS


def _tls_skip_reason():
    if not memcached_has_tls():
        return "memcached built without TLS (memcached -h has no --enable-ssl)"
    try:
        import ringline._conn.tls  # noqa: F401
    except ImportError as exc:
        return f"ringline._tls is not available yet: {exc}"
    return None


@pytest.mark.skipif(_tls_skip_reason() is not None, reason=str(_tls_skip_reason()))
def test_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    m = Memcached(extra=["-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key}"]).start()
    try:
        async def main():
            ctx = ssl.create_default_context(cafile=str(cert))
            async with mc.connect("127.0.0.1", m.port, ssl=ctx,
                                  server_hostname="localhost") as c:
                assert await c.set(b"k", b"over tls")
                assert await c.get(b"k") == b"over tls"
                big = os.urandom(300_000)
                assert await c.set(b"big", big) and await c.get(b"big") == big
                got = await asyncio.gather(*(c.get(b"k") for _ in range(200)))
                assert got == [b"over tls"] * 200
                assert (await c.mg(b"k", "v")).value == b"over tls"
                assert await c.set(b"ba", bytearray(big)) and await c.get(b"ba") == big
            async with mc.connect("127.0.0.1", m.port, ssl=ctx, server_hostname="localhost",
                                  zero_copy=True) as z:
                v = await z.get(b"big")
                assert isinstance(v, memoryview) and v == big
        run(main)
    finally:
        m.stop()


# ---------------------------------------------------------------------------
# docs/memcache.md: every example runs


def _doc_blocks():
    import re
    doc = os.path.join(DOCS, "memcache.md")
    return re.findall(r"```python\n(.*?)```", open(doc).read(), re.S)


@pytest.mark.parametrize("code", _doc_blocks(), ids=lambda c: c.strip().splitlines()[-1][:40])
def test_doc_examples_run(server, port, code):
    import sys
    env = dict(os.environ, MEMCACHE_ADDR=server.address)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr


def test_doc_has_examples():
    assert len(_doc_blocks()) >= 6
