"""ringline.redis clients against real redis-server processes and asyncio stubs.

Runs on whichever backend RINGLINE_BACKEND selects (io_uring or poll). Every
coroutine runs under a deadline (redis_support.run), so a hang fails fast.
"""
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

import ringline
import ringline.redis as rr
from support import DOCS, free_port, run
from support.servers import start_reply_server
from support.redis_server import (RedisServer, have_redis, make_tls_files, sync_command,
                           tls_supported)

pytestmark = pytest.mark.skipif(not have_redis(), reason="redis-server is not installed")

PROTOCOLS = [2, 3]


@pytest.fixture(scope="module")
def server():
    s = RedisServer(args=["--enable-debug-command", "yes"]).start()
    yield s
    s.close()


@pytest.fixture
def port(server):
    assert sync_command(server.port, "FLUSHALL") == b"OK"
    return server.port


def _reads(port):
    info = rr.parse_info(sync_command(port, "INFO", "stats"))
    return info["total_reads_processed"]


# ---------------------------------------------------------------------------
# typed helpers, both protocols


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_string_helpers(port, proto):
    async def main():
        async with await rr.connect("127.0.0.1", port, protocol=proto) as c:
            assert await c.get("s") is None
            assert await c.set("s", "v") is True
            assert await c.get("s") == b"v"
            assert await c.get(b"s") == b"v"
            assert await c.set("s", "w", nx=True) is False
            assert await c.set("s", "w", xx=True) is True
            assert await c.set("nx", 1, xx=True) is False
            assert await c.set("s", "x", get=True) == b"w"
            assert await c.set("e", 1, ex=100) is True
            assert 0 < await c.ttl("e") <= 100
            assert await c.set("p", 1, px=100_000) is True
            assert 0 < await c.pttl("p") <= 100_000
            assert await c.mset({"a": 1, "b": b"2", "c": 3.5}) is True
            assert await c.mget("a", "b", "c", "zz") == [b"1", b"2", b"3.5", None]
            assert await c.mget(["a", "b"]) == [b"1", b"2"]
            assert await c.getdel("a") == b"1"
            assert await c.get("a") is None
            assert await c.append("ap", "he") == 2
            assert await c.append("ap", "llo") == 5
            assert await c.strlen("ap") == 5
            assert await c.getrange("ap", 1, 3) == b"ell"
            assert await c.incr("n") == 1
            assert await c.incrby("n", 10) == 11
            assert await c.decr("n") == 10
            assert await c.decrby("n", 3) == 7
            assert await c.incrbyfloat("f", 1.25) == 1.25
            assert await c.setnx("nx2", 1) is True
            assert await c.setnx("nx2", 2) is False
            assert await c.setex("se", 50, "v") is True
            assert await c.getset("se", "v2") == b"v"
            assert await c.msetnx({"m1": 1, "m2": 2}) is True
            assert await c.msetnx({"m2": 1, "m3": 2}) is False
            assert await c.execute("GET", "m1") == b"1"
            assert await c.set("unicode", "ключ") is True
            assert (await c.get("unicode")).decode() == "ключ"
    run(main())


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_key_helpers(port, proto):
    async def main():
        async with await rr.connect("127.0.0.1", port, protocol=proto) as c:
            await c.mset({"k1": 1, "k2": 2, "k3": 3})
            assert await c.exists("k1") == 1
            assert await c.exists("k1", "k2", "nope") == 2
            assert await c.delete("k1") == 1
            assert await c.delete("k1", "k2", "k3") == 2
            await c.set("t", 1)
            assert await c.expire("t", 100) is True
            assert await c.expire("missing", 100) is False
            assert 0 < await c.ttl("t") <= 100
            assert await c.pexpire("t", 50_000) is True
            assert 0 < await c.pttl("t") <= 50_000
            assert await c.persist("t") is True
            assert await c.ttl("t") == -1
            assert await c.ttl("missing") == -2
            assert await c.type("t") == "string"
            await c.lpush("l", 1)
            assert await c.type("l") == "list"
            assert await c.type("missing") == "none"
            assert await c.rename("t", "t2") is True
            assert await c.get("t2") == b"1"
            assert await c.renamenx("t2", "l") is False
            with pytest.raises(rr.ResponseError):
                await c.rename("missing", "x")
            assert sorted(await c.keys("*")) == [b"l", b"t2"]
            for i in range(50):
                await c.set(f"scan:{i}", i)
            cursor, batch = await c.scan(0, match="scan:*", count=10)
            assert isinstance(cursor, int) and all(k.startswith(b"scan:") for k in batch)
            seen = {k async for k in c.scan_iter(match="scan:*", count=7)}
            assert seen == {f"scan:{i}".encode() for i in range(50)}
            assert await c.unlink("t2") == 1
    run(main())


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_hash_helpers(port, proto):
    async def main():
        async with await rr.connect("127.0.0.1", port, protocol=proto) as c:
            assert await c.hset("h", "f1", "v1") == 1
            assert await c.hset("h", mapping={"f2": 2, "f3": b"3"}) == 2
            assert await c.hget("h", "f1") == b"v1"
            assert await c.hget("h", "nope") is None
            assert await c.hgetall("h") == {b"f1": b"v1", b"f2": b"2", b"f3": b"3"}
            assert await c.hgetall("missing") == {}
            assert await c.hmget("h", "f1", "nope", "f3") == [b"v1", None, b"3"]
            assert await c.hmget("h", ["f2"]) == [b"2"]
            assert await c.hincrby("h", "n", 5) == 5
            assert await c.hincrbyfloat("h", "x", 0.5) == 0.5
            assert sorted(await c.hkeys("h")) == [b"f1", b"f2", b"f3", b"n", b"x"]
            assert sorted(await c.hvals("h")) == sorted([b"v1", b"2", b"3", b"5", b"0.5"])
            assert await c.hlen("h") == 5
            assert await c.hexists("h", "f1") is True
            assert await c.hexists("h", "zz") is False
            assert await c.hdel("h", "f1", "zz") == 1
            assert await c.hsetnx("h", "f2", 9) is False
            assert await c.hsetnx("h", "new", 9) is True
    run(main())


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_list_helpers(port, proto):
    async def main():
        async with await rr.connect("127.0.0.1", port, protocol=proto) as c:
            assert await c.rpush("l", "a", "b", "c") == 3
            assert await c.lpush("l", "z") == 4
            assert await c.lrange("l", 0, -1) == [b"z", b"a", b"b", b"c"]
            assert await c.llen("l") == 4
            assert await c.lindex("l", 1) == b"a"
            assert await c.lindex("l", 99) is None
            assert await c.lpop("l") == b"z"
            assert await c.rpop("l") == b"c"
            await c.rpush("l", "a", "x", "a")
            assert await c.lrem("l", 0, "a") == 3
            assert await c.lrange("l", 0, -1) == [b"b", b"x"]
            await c.rpush("l", 1, 2, 3)
            assert await c.ltrim("l", 1, 3) is True
            assert await c.lrange("l", 0, -1) == [b"x", b"1", b"2"]
            assert await c.lset("l", 0, "y") is True
            assert await c.lpop("l", 2) == [b"y", b"1"]
            assert await c.lpop("missing") is None
            assert await c.lpop("missing", 2) is None
    run(main())


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_set_helpers(port, proto):
    async def main():
        async with await rr.connect("127.0.0.1", port, protocol=proto) as c:
            assert await c.sadd("s1", "a", "b", "c") == 3
            assert await c.sadd("s2", "b", "c", "d") == 3
            assert await c.smembers("s1") == {b"a", b"b", b"c"}
            assert await c.smembers("missing") == set()
            assert await c.sismember("s1", "a") is True
            assert await c.sismember("s1", "z") is False
            assert await c.scard("s1") == 3
            assert await c.sinter("s1", "s2") == {b"b", b"c"}
            assert await c.sunion("s1", "s2") == {b"a", b"b", b"c", b"d"}
            assert await c.sdiff("s1", "s2") == {b"a"}
            assert await c.srem("s1", "a", "zz") == 1
    run(main())


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_sorted_set_helpers(port, proto):
    async def main():
        async with await rr.connect("127.0.0.1", port, protocol=proto) as c:
            assert await c.zadd("z", {"a": 1, "b": 2.5, "c": 3}) == 3
            assert await c.zadd("z", {"a": 5}, nx=True) == 0
            assert await c.zadd("z", {"a": 0.5}, xx=True, ch=True) == 1
            assert await c.zscore("z", "a") == 0.5
            assert await c.zscore("z", "nope") is None
            assert await c.zrange("z", 0, -1) == [b"a", b"b", b"c"]
            assert await c.zrange("z", 0, -1, withscores=True) == \
                [(b"a", 0.5), (b"b", 2.5), (b"c", 3.0)]
            assert await c.zrange("z", 0, 0, desc=True) == [b"c"]
            assert await c.zrangebyscore("z", 1, "+inf") == [b"b", b"c"]
            assert await c.zrangebyscore("z", "-inf", "(3", withscores=True) == \
                [(b"a", 0.5), (b"b", 2.5)]
            assert await c.zrangebyscore("z", "-inf", "+inf", offset=1, count=1) == [b"b"]
            assert await c.zincrby("z", 2, "a") == 2.5
            assert await c.zcard("z") == 3
            assert await c.zcount("z", 2, 3) == 3
            assert await c.zrank("z", "c") == 2
            assert await c.zrank("z", "nope") is None
            assert await c.zrevrank("z", "c") == 0
            assert await c.zrem("z", "a", "nope") == 1
            assert await c.zrange("z", 0, -1, withscores=True) == [(b"b", 2.5), (b"c", 3.0)]
    run(main())


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_admin_helpers(port, proto):
    async def main():
        async with await rr.connect("127.0.0.1", port, protocol=proto) as c:
            assert await c.ping() is True
            assert await c.ping("hi") == b"hi"
            assert await c.echo("hello") == b"hello"
            await c.mset({"a": 1, "b": 2})
            assert await c.dbsize() == 2
            assert await c.flushdb() is True
            assert await c.dbsize() == 0
            await c.set("a", 1)
            assert await c.flushall() is True
            assert await c.dbsize() == 0
            assert await c.config_set("maxmemory-samples", 7) is True
            assert (await c.config_get("maxmemory-samples")) == {"maxmemory-samples": "7"}
            info = await c.info("server")
            assert info["redis_version"].startswith("7") and isinstance(info["tcp_port"], int)
            await c.set("x", 1)
            ks = await c.info("keyspace")
            assert ks["db0"]["keys"] == 1
            t = await c.time()
            assert t > 1e9
    run(main())


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_error_replies_raise_typed_errors(port, proto):
    async def main():
        async with await rr.connect("127.0.0.1", port, protocol=proto) as c:
            await c.set("str", "x")
            with pytest.raises(rr.WrongTypeError) as info:
                await c.lpush("str", 1)
            assert info.value.code == "WRONGTYPE"
            with pytest.raises(rr.ResponseError, match="unknown command"):
                await c.execute("NOSUCHCOMMAND")
            with pytest.raises(rr.ResponseError):
                await c.incr("str")
            # the connection is still in sync afterwards
            assert await c.get("str") == b"x"
            p = c.pipeline()
            p.incr("str").get("str")
            res = await p.execute(raise_on_error=False)
            assert isinstance(res[0], rr.ResponseError) and res[1] == b"x"
            with pytest.raises(rr.ResponseError):
                await c.pipeline().incr("str").execute()
    run(main())


def test_resp3_and_resp2_reply_types(port):
    async def main():
        async with await rr.connect("127.0.0.1", port, protocol=3) as c3, \
                await rr.connect("127.0.0.1", port, protocol=2) as c2:
            hello3 = await c3.execute("HELLO", 3)
            assert isinstance(hello3, dict) and hello3[b"proto"] == 3
            await c3.hset("h", mapping={"a": 1})
            await c3.sadd("s", "m")
            await c3.zadd("z", {"m": 1.5})
            assert await c3.execute("HGETALL", "h") == {b"a": b"1"}          # map
            assert await c2.execute("HGETALL", "h") == [b"a", b"1"]          # flat array
            assert await c3.execute("SMEMBERS", "s") == {b"m"}               # set
            assert await c2.execute("SMEMBERS", "s") == [b"m"]
            assert await c3.execute("ZSCORE", "z", "m") == 1.5               # double
            assert await c2.execute("ZSCORE", "z", "m") == b"1.5"
            assert await c3.execute("GET", "missing") is None                # null
            assert await c3.execute("EXISTS", "h") == 1
            info = await c3.execute("CLIENT", "INFO")
            assert b"resp=3" in bytes(info)                                  # verbatim
            assert b"resp=2" in bytes(await c2.execute("CLIENT", "INFO"))
    run(main())


def test_resp3_push_messages_go_to_on_push_and_keep_order(port):
    async def main():
        pushes = []
        async with await rr.connect("127.0.0.1", port, protocol=3,
                                    on_push=pushes.append) as c, \
                await rr.connect("127.0.0.1", port) as other:
            assert await c.execute("CLIENT", "TRACKING", "on") == b"OK"
            await c.set("tracked", 1)
            assert await c.get("tracked") == b"1"
            await other.set("tracked", 2)           # the server invalidates c's cache
            for _ in range(100):
                if pushes:
                    break
                await c.ping()
            assert pushes and isinstance(pushes[0], rr.Push)
            assert pushes[0][0] == b"invalidate" and pushes[0][1] == [b"tracked"]
            # replies stayed matched to their commands around the push
            assert await c.get("tracked") == b"2"
            assert await c.echo("after") == b"after"
    run(main())


def test_hiredis_parser_option(port):
    async def main():
        async with await rr.connect("127.0.0.1", port, parser="hiredis") as c:
            await c.set("k", "v")
            assert await c.get("k") == b"v"
            assert await c.hgetall("missing") == {}
            with pytest.raises(rr.WrongTypeError):
                await c.hget("k", "f")
            assert await asyncio.gather(*[c.incr("n") for _ in range(200)]) == \
                list(range(1, 201))
        with pytest.raises(ValueError):
            await rr.connect("127.0.0.1", port, parser="hiredis", protocol=3)
    run(main())


# ---------------------------------------------------------------------------
# connection options


def test_url_db_client_name_and_async_with(port):
    async def main():
        c = await rr.connect(url=f"redis://127.0.0.1:{port}/3?client_name=ringline-test"
                                 "&protocol=3")
        async with c:
            await c.set("in-db-3", 1)
            assert await c.execute("CLIENT", "GETNAME") == b"ringline-test"
            assert b" db=3 " in bytes(await c.execute("CLIENT", "INFO"))
        assert not c.is_connected
        with pytest.raises(rr.RedisConnectionError):
            await c.get("x")
        assert sync_command(port, "SELECT", 3) == b"OK"
        c0 = await rr.connect("127.0.0.1", port)
        async with c0:
            assert await c0.get("in-db-3") is None
    run(main())
    # the db-3 key is really in db 3
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*2\r\n$3\r\nGET\r\n$7\r\nin-db-3\r\n")
        data = b""
        while data.count(b"\r\n") < 3:
            data += s.recv(100)
        assert data == b"+OK\r\n$1\r\n1\r\n"


def test_options_are_validated():
    with pytest.raises(ValueError):
        rr.Options(protocol=4)
    with pytest.raises(ValueError):
        rr.Options(max_depth=0)
    with pytest.raises(ValueError):
        rr.Options(command_timeout=-1)
    with pytest.raises(ValueError):
        rr.options_from_url("http://x")
    o = rr.options_from_url("redis://user:p%40ss@h:7000/2?protocol=3&socket_timeout=1.5")
    assert (o.host, o.port, o.db, o.username, o.password, o.protocol, o.command_timeout) == \
        ("h", 7000, 2, "user", "p@ss", 3, 1.5)
    o = rr.options_from_url("redis://:secret@h")
    assert (o.username, o.password, o.port) == (None, "secret", 6379)
    assert rr.options_from_url("rediss://h").ssl is not None
    assert rr.options_from_url("unix:///tmp/r.sock?db=1").path == "/tmp/r.sock"


@pytest.fixture(scope="module")
def auth_server():
    s = RedisServer(password="s3cret").start()
    s.command("ACL", "SETUSER", "app", "on", ">apppass", "~app:*", "+@all")
    yield s
    s.close()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_auth_password_and_acl_user(auth_server, proto):
    port = auth_server.port

    async def main():
        async with await rr.connect("127.0.0.1", port, password="s3cret", protocol=proto) as c:
            assert await c.ping() is True
        async with await rr.connect(url=f"redis://app:apppass@127.0.0.1:{port}",
                                    protocol=proto) as c:
            assert await c.execute("ACL", "WHOAMI") == b"app"
            assert await c.set("app:x", 1) is True
            with pytest.raises(rr.NoPermissionError):
                await c.set("other:x", 1)
        with pytest.raises(rr.AuthenticationError):
            await rr.connect("127.0.0.1", port, password="wrong", protocol=proto)
        with pytest.raises(rr.AuthenticationError):
            await rr.connect("127.0.0.1", port, username="app", password="nope",
                             protocol=proto)
        if proto == 2:
            async with await rr.connect("127.0.0.1", port) as c:   # no password at all
                with pytest.raises(rr.AuthenticationError):
                    await c.get("x")
        else:
            with pytest.raises(rr.AuthenticationError):
                await rr.connect("127.0.0.1", port, protocol=3)   # HELLO 3 needs AUTH
    run(main())


@pytest.fixture(scope="module")
def tls_server():
    ok, why = tls_supported()
    if not ok:
        pytest.skip(why)
    try:
        import ringline._conn.tls  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"ringline._tls is not available: {exc}")
    d = tempfile.mkdtemp(prefix="ringline-redis-tls-")
    files = make_tls_files(d)
    s = RedisServer(tls_files=files).start()
    yield s, files
    s.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_tls(tls_server, proto):
    import ssl
    s, files = tls_server

    async def main():
        ctx = ssl.create_default_context(cafile=files["ca"])
        async with await rr.connect("127.0.0.1", s.tls_port, ssl=ctx, protocol=proto,
                                    server_hostname="localhost") as c:
            await c.delete("tn")
            assert await c.set("tls", "yes") is True
            assert await c.get("tls") == b"yes"
            assert await asyncio.gather(*[c.incr("tn") for _ in range(300)]) == \
                list(range(1, 301))
            big = os.urandom(300_000)
            assert await c.set("tbig", big) is True
            assert bytes(await c.get("tbig")) == big
        url = f"rediss://localhost:{s.tls_port}?ssl_ca_certs={files['ca']}&protocol={proto}"
        async with await rr.connect(url=url) as c:
            assert await c.get("tls") == b"yes"
        # an untrusted certificate fails the handshake with a clear error
        with pytest.raises((ssl.SSLError, rr.RedisConnectionError)):
            await rr.connect("127.0.0.1", s.tls_port, ssl=ssl.create_default_context(),
                             server_hostname="localhost", connect_timeout=5)
    run(main())


def test_connect_errors_and_connect_timeout():
    async def main():
        dead_port = free_port()
        with pytest.raises(rr.RedisConnectionError, match="connect failed"):
            await rr.connect("127.0.0.1", dead_port)
        # a server that accepts but never answers the handshake; it keeps
        # its writers (3.13's StreamWriter.__del__ closes the connection,
        # and the client would see a reset instead of a timeout)
        held = []
        server = await asyncio.start_server(lambda r, w: held.append(w),
                                            "127.0.0.1", 0)
        silent = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(rr.RedisTimeoutError, match="connect_timeout"):
            await rr.connect("127.0.0.1", silent, client_name="x", connect_timeout=0.3)
        assert loop.time() - t0 < 3
        for w in held:
            w.close()
        server.close()
    run(main())


def test_command_timeout_discards_the_late_reply(port):
    async def main():
        async with await rr.connect("127.0.0.1", port, command_timeout=0.2) as c:
            await c.set("k", "v")
            with pytest.raises(rr.RedisTimeoutError, match="command_timeout"):
                await c.execute("DEBUG", "SLEEP", "0.5")
            assert isinstance(rr.RedisTimeoutError("x"), TimeoutError)
            # the late +OK of DEBUG SLEEP is dropped; this GET gets its own reply
            await asyncio.sleep(0.4)
            assert await c.get("k") == b"v"
            assert c.is_connected
    run(main())


# ---------------------------------------------------------------------------
# pipelining: batch, automatic, fire/recv


@pytest.mark.parametrize("parser", ["auto", "python"])
def test_batch_pipeline_with_1000_commands(port, parser):
    async def main():
        async with await rr.connect("127.0.0.1", port, parser=parser) as c:
            reads0 = _reads(port)
            async with c.pipeline() as p:
                for i in range(1000):
                    p.set(f"k{i}", i)
                for i in range(1000):
                    p.get(f"k{i}")
                p.hset("h", mapping={"a": 1}).hgetall("h")
                results = await p.execute()
            assert results[:1000] == [True] * 1000
            assert results[1000:2000] == [str(i).encode() for i in range(1000)]
            assert results[2000:] == [1, {b"a": b"1"}]
            assert _reads(port) - reads0 < 60           # arrived in a few writes
            assert await c.pipeline().execute() == []
            # a transaction
            tx = c.pipeline(transaction=True)
            tx.incr("ctr").incr("ctr").get("ctr")
            assert await tx.execute() == [1, 2, b"2"]
    run(main())


@pytest.mark.parametrize("parser", ["auto", "python"])
def test_automatic_pipelining_1000_concurrent_tasks(port, parser):
    async def main():
        async with await rr.connect("127.0.0.1", port, parser=parser) as c:
            await asyncio.gather(*[c.set(f"a{i}", i) for i in range(1000)])
            reads0 = _reads(port)

            async def one(i):
                return await c.get(f"a{i}")

            got = await asyncio.gather(*[asyncio.ensure_future(one(i)) for i in range(1000)])
            assert got == [str(i).encode() for i in range(1000)]
            # 1,000 commands from 1,000 tasks reached the server in a few writes
            assert _reads(port) - reads0 < 60
            # mixed reply types from concurrent tasks stay matched
            res = await asyncio.gather(*[
                (c.incr("n") if i % 3 == 0 else c.get(f"a{i}") if i % 3 == 1 else c.echo(i))
                for i in range(999)])
            for i, r in enumerate(res):
                if i % 3 == 0:
                    assert r == i // 3 + 1
                elif i % 3 == 1:
                    assert r == str(i).encode()
                else:
                    assert r == str(i).encode()
    run(main())


@pytest.mark.parametrize("parser", ["auto", "python"])
def test_fire_and_recv_1000_in_flight(port, parser):
    async def main():
        async with await rr.connect("127.0.0.1", port, max_in_flight=1000,
                                    parser=parser) as c:
            with pytest.raises(RuntimeError):
                await c.recv()                   # nothing in flight: no hang
            for i in range(1000):
                c.fire(("set", i), "SET", f"f{i}", i)
            assert c.in_flight == 1000
            with pytest.raises(ringline.QueueFull):
                c.fire("over", "PING")           # fire raises, never waits
            for i in range(1000):
                assert await c.recv() == (("set", i), b"OK")
            for i in range(999):
                c.fire(i, "GET", f"f{i}")
            c.fire("bad", "LPUSH", "f1", 1)          # an error reply keeps its tag
            for i in range(999):
                tag, value = await c.recv()
                assert tag == i and value == str(i).encode()
            tag, value = await c.recv()
            assert tag == "bad" and isinstance(value, rr.WrongTypeError)
            assert c.in_flight == 0 and c.try_recv() is None
            # normal commands interleave with fired ones on the same FIFO
            c.fire("x", "GET", "f5")
            assert await c.get("f6") == b"6"
            assert await c.recv() == ("x", b"5")
    run(main())


# ---------------------------------------------------------------------------
# large values


def test_set_guarded_and_zero_copy_get(port):
    async def main():
        async with await rr.connect("127.0.0.1", port, zero_copy_min=64 << 10) as c:
            big = bytearray(os.urandom(4 << 20))
            assert await c.set_guarded("big", big) is True
            assert await c.set_guarded("big-ex", memoryview(big)[:100_000], ex=100) is True
            assert 0 < await c.ttl("big-ex") <= 100
            got = await c.get("big")
            assert isinstance(got, memoryview) and got.readonly
            # a view of the receive buffer itself, not of a copy
            assert not isinstance(got.obj, (bytes, bytearray))
            assert got == big
            small = await c.get("big-ex")
            assert isinstance(small, memoryview) and bytes(small) == bytes(big[:100_000])
            # a value under zero_copy_min is plain bytes
            await c.set("s", b"x" * 100)
            assert type(await c.get("s")) is bytes
            # a big value through the ordinary path (waits for send-queue room)
            blob = os.urandom(3 << 20)
            assert await c.set("blob", blob) is True
            assert await c.strlen("blob") == len(blob)
            # several large values in flight at once keep their order
            vals = [os.urandom(1 << 20) for _ in range(6)]
            await asyncio.gather(*[c.set_guarded(f"g{i}", v) for i, v in enumerate(vals)])
            got = await asyncio.gather(*[c.get(f"g{i}") for i in range(6)])
            assert [bytes(g) for g in got] == vals
            # a command bigger than the whole send queue is refused, not dropped
            limit = c._c.max_send
            with pytest.raises(ValueError, match="max_send_queue"):
                await c.set("huge", b"x" * (limit + 1))
            assert await c.ping() is True
    run(main(), timeout=60)


@pytest.mark.parametrize("parser,proto", [("auto", 2), ("python", 2), ("python", 3)])
def test_large_aggregate_replies_arrive_in_pieces(port, parser, proto):
    """Arrays and maps far bigger than one receive: the parser absorbs the
    completed elements of each piece, values mixed with a large bulk."""
    async def main():
        async with await rr.connect("127.0.0.1", port, parser=parser, protocol=proto,
                                    zero_copy_min=4096) as c:
            items = [os.urandom(i % 50) for i in range(60_000)]
            async with c.pipeline() as p:
                for i in range(0, len(items), 5000):
                    p.rpush("biglist", *items[i:i + 5000])
                await p.execute()
            got, n, big, again = await asyncio.gather(
                c.lrange("biglist", 0, -1), c.llen("biglist"),
                c.set("bigval", b"v" * 100_000), c.lrange("biglist", 0, 9))
            assert [bytes(x) for x in got] == items and n == len(items)
            assert [bytes(x) for x in again] == items[:10]
            fields = {f"f{i}".encode(): os.urandom(20) for i in range(20_000)}
            await c.hset("bighash", mapping=fields)
            h, v = await asyncio.gather(c.hgetall("bighash"), c.get("bigval"))
            assert h == fields and v == b"v" * 100_000
    run(main(), timeout=30)


# ---------------------------------------------------------------------------
# pools


def test_pool_round_robin_and_restart():
    s = RedisServer().start()
    try:
        async def main():
            pool = await rr.connect_pool("127.0.0.1", s.port, size=3)
            async with pool:
                ids = {await pool.execute("CLIENT", "ID") for _ in range(6)}
                assert len(ids) == 3                  # round-robin over 3 connections
                await pool.set("k", "v")
                assert await asyncio.gather(*[pool.get("k") for _ in range(300)]) == \
                    [b"v"] * 300
                s.stop()
                errors = 0
                for _ in range(6):
                    try:
                        await pool.get("k")
                    except rr.RedisConnectionError:
                        errors += 1
                assert errors == 6                    # every connection saw the outage
                s.start()
                # the pool reconnects lazily: each broken connection redials on use
                await pool.set("k2", "after")
                got = await asyncio.gather(*[pool.get("k2") for _ in range(30)])
                assert got == [b"after"] * 30
                assert all(c.is_connected for c in pool.clients)
                ids2 = {await pool.execute("CLIENT", "ID") for _ in range(3)}
                assert len(ids2) == 3
                async with pool.pipeline() as p:
                    p.set("p", 1).get("p")
                    assert await p.execute() == [True, b"1"]
        run(main(), timeout=40)
    finally:
        s.close()


def test_client_reconnects_lazily_after_restart():
    s = RedisServer().start()
    try:
        async def main():
            async with await rr.connect("127.0.0.1", s.port, client_name="re") as c:
                await c.set("k", 1)
                s.restart()
                with pytest.raises(rr.RedisConnectionError):
                    await c.get("k")
                assert await c.get("k") is None          # a new server (no persistence)
                assert await c.execute("CLIENT", "GETNAME") == b"re"   # handshake redone
        run(main())
    finally:
        s.close()


# ---------------------------------------------------------------------------
# sharding


@pytest.fixture(scope="module")
def three_servers():
    servers = [RedisServer().start() for _ in range(3)]
    yield servers
    for s in servers:
        s.close()


def test_sharded_client_spreads_keys_by_ketama(three_servers):
    from ringline._util.ketama import Ketama
    names = [f"127.0.0.1:{s.port}" for s in three_servers]
    for s in three_servers:
        s.command("FLUSHALL")

    async def main():
        async with await rr.connect_sharded(names) as sc:
            await asyncio.gather(*[sc.set(f"key:{i}", i) for i in range(300)])
            assert await sc.get("key:7") == b"7"
            assert await sc.dbsize() == 300
            assert len(await sc.keys("key:*")) == 300
            async with sc.pipeline() as p:
                for i in range(10):
                    p.get(f"key:{i}")
                assert await p.execute() == [str(i).encode() for i in range(10)]
            with pytest.raises(rr.CrossSlotError):
                await sc.mget("key:1", "key:2", "key:3", "key:4", "key:5")
            assert await sc.ping() is True
            assert await sc.execute("GET", "key:9", key="key:9") == b"9"
        async with await rr.connect_sharded({n: 1 for n in names}, pool_size=2) as sc:
            assert isinstance(sc.node(names[0]), rr.Pool)
            assert await asyncio.gather(*[sc.get(f"key:{i}") for i in range(20)]) == \
                [str(i).encode() for i in range(20)]
    run(main())
    ring = Ketama({n: 1 for n in names})
    counts = {}
    for i in range(300):
        owner = ring.node_for(f"key:{i}".encode())
        port = int(owner.rpartition(":")[2])
        assert sync_command(port, "GET", f"key:{i}") == str(i).encode()
        counts[owner] = counts.get(owner, 0) + 1
    assert len(counts) == 3 and min(counts.values()) > 30


# ---------------------------------------------------------------------------
# broken peers: stub servers


def test_broken_resp_fails_that_connection_only(port):
    async def main():
        server, stub_port = await start_reply_server(lambda data: b"+OK\r\n$5\r\nhel" + b"lo\r\n" +
                                        b"?garbage\r\n")
        good = await rr.connect("127.0.0.1", port)
        bad = await rr.connect("127.0.0.1", stub_port, reconnect=False)
        await good.set("k", "v")
        futs = [asyncio.ensure_future(bad.get(f"x{i}")) for i in range(5)]
        keep_going = asyncio.ensure_future(
            asyncio.gather(*[good.get("k") for _ in range(200)]))
        results = await asyncio.gather(*futs, return_exceptions=True)
        assert results[0] == b"OK" and results[1] == b"hello"
        for r in results[2:]:
            assert isinstance(r, rr.ProtocolError)
            assert "type byte" in str(r) and f"127.0.0.1:{stub_port}" in str(r)
        assert isinstance(results[2], rr.RedisConnectionError)
        assert not bad.is_connected
        with pytest.raises(rr.ProtocolError):
            await bad.get("again")
        assert await keep_going == [b"v"] * 200
        assert await good.get("k") == b"v"
        await bad.close()
        await good.close()
        server.close()
    run(main(), timeout=10)


def test_peer_closing_fails_pending_commands():
    async def main():
        server, stub_port = await start_reply_server(lambda data: None)
        c = await rr.connect("127.0.0.1", stub_port, reconnect=False)
        res = await asyncio.gather(*[c.get("x") for _ in range(3)], return_exceptions=True)
        assert all(isinstance(r, rr.RedisConnectionError) for r in res)
        assert "closed" in str(res[0])
        server.close()
    run(main(), timeout=10)


@pytest.mark.parametrize("garbage,problem", [
    (b"$abc\r\n", "invalid length"),
    (b"+OK\n", "bare CR or LF"),
    (b"+O\rK\r\n", "bare CR or LF"),
    (b"*4294967296\r\n", "max_elements"),
    (b":" + b"9" * 5000 + b"\r\n", "integer of 5000 characters"),
    (b"*1\r\n" * 100 + b":1\r\n", "max_depth"),
    (b"$999999999999\r\n", "max_bulk"),
    (b":1\r\n:2\r\n", "no command was waiting"),
])
@pytest.mark.parametrize("parser", ["python", "auto"])
def test_protocol_errors_name_the_problem(garbage, problem, parser):
    # parser='auto' (hiredis on RESP2) gives the same errors: hiredis is only
    # fed replies the vetting scanner vouches for, the rest go to our parser
    async def main():
        server, stub_port = await start_reply_server(lambda data: garbage)
        c = await rr.connect("127.0.0.1", stub_port, reconnect=False, parser=parser)
        if garbage.startswith(b":1"):
            assert await c.get("x") == 1          # the extra reply then breaks the stream
            await asyncio.sleep(0.05)
        with pytest.raises(rr.ProtocolError, match=problem):
            await asyncio.gather(c.get("x"))
        assert not c.is_connected
        server.close()
        await c.close()
    run(main(), timeout=10)


# ---------------------------------------------------------------------------
# inside a ringline.serve worker


class _WorkerHandler(ringline.Handler):
    port = 0

    async def on_start(self):
        async with await rr.connect("127.0.0.1", self.port) as c:
            await asyncio.gather(*[c.incr("worker-hits") for _ in range(100)])
            async with c.pipeline() as p:
                p.set("worker-ok", self.worker.worker_id)
                await p.execute()


def test_works_inside_a_serve_worker(port):
    _WorkerHandler.port = port
    cfg = ringline.Config(workers=1, pin_to_core=False)
    ringline.serve(_WorkerHandler, None, cfg)
    assert sync_command(port, "GET", "worker-hits") == b"100"
    assert sync_command(port, "GET", "worker-ok") == b"0"


# ---------------------------------------------------------------------------
# docs/redis.md examples


def _doc_blocks():
    path = os.path.join(DOCS, "redis.md")
    with open(path) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


@pytest.mark.parametrize("code", _doc_blocks(), ids=lambda c: c.splitlines()[0][:40])
def test_docs_examples_run(code, port):
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{port}")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
