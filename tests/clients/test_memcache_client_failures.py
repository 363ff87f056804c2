"""ringline.memcache when things go wrong: a closed client, a server going
away, refused and timed-out connects, over-size replies, broken replies
from a stub server (each fails its own connection only) and errors to
noreply commands (counted, never taken for another command's reply).

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
from support.memcached import Memcached, have_memcached
from support.memcache_stubs import StubServer


pytestmark = pytest.mark.skipif(not have_memcached(), reason="memcached is not installed")


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
# broken replies from a stub server (support.memcache_stubs.StubServer)


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
