"""ringline.kv against a real redis-server, reply for reply.

One redis-server and one ringline.kv (a subprocess on this test's backend)
are started for the module; the same command scripts run on both over raw
RESP connections and the parsed replies must be equal (after normalising
what Redis itself leaves unordered or clock-dependent: set members, TTLs in
milliseconds). Then redis-py, ringline.redis and redis-cli run unchanged
against ringline.kv.
"""
from __future__ import annotations

import subprocess

import pytest

from ringline.redis._errors import ResponseError
from support.kv_server import KvServer, RespConn
from support.redis_server import REDIS_CLI, RedisServer, have_redis

pytestmark = pytest.mark.skipif(not have_redis(), reason="redis-server is not installed")

FAR = b"4102444800"          # 2100-01-01, seconds
FAR_MS = b"4102444800000"

STRINGS = [
    ("SET", "k", "v"), ("GET", "k"), ("GET", "missing"), ("SET", "k", "v2", "NX"),
    ("SET", "k", "v3", "XX"), ("GET", "k"), ("SET", "nx1", "v", "XX"), ("GET", "nx1"),
    ("SET", "n", "10"), ("INCR", "n"), ("INCRBY", "n", "5"), ("DECR", "n"),
    ("DECRBY", "n", "3"), ("INCR", "k"), ("INCRBY", "n", "abc"), ("INCRBY", "n", "01"),
    ("INCRBY", "n", "-0"), ("INCRBY", "n", "+1"), ("INCRBY", "n", " 1"),
    ("SET", "big", "9223372036854775807"), ("INCR", "big"), ("DECRBY", "n", "-9223372036854775808"),
    ("SET", "small", "-9223372036854775808"), ("DECR", "small"),
    ("INCRBY", "n", "9223372036854775808"), ("INCR", "fresh"), ("DECR", "fresh2"),
    ("APPEND", "k", "xyz"), ("APPEND", "new", "abc"), ("STRLEN", "k"), ("STRLEN", "missing"),
    ("MSET", "a", "1", "b", "2", "c", "3"), ("MGET", "a", "b", "missing", "c"),
    ("MSET", "a"), ("MSET", "a", "1", "b"), ("GET",), ("GET", "a", "b"), ("SET", "k"),
    ("SET", "k", "v", "EX", "0"), ("SET", "k", "v", "EX", "-5"), ("SET", "k", "v", "EX", "abc"),
    ("SET", "k", "v", "NX", "XX"), ("SET", "k", "v", "EX", "10", "PX", "100"),
    ("SET", "k", "v", "EX"), ("SET", "k", "v", "BOGUS"), ("SET", "k", "v", "GET"),
    ("SET", "k", "w", "NX", "GET"), ("SET", "k", "v", "EX", "100"), ("TTL", "k"),
    ("SET", "k", "v2", "KEEPTTL"), ("TTL", "k"), ("SET", "k", "v3"), ("TTL", "k"),
    ("SET", "k", "v", "PX", "100000"), ("PTTL", "k"), ("SET", "k", "v", "EXAT", FAR),
    ("TTL", "k"), ("SET", "k", "v", "PXAT", FAR_MS), ("PTTL", "k"),
    ("SET", "k", "v", "KEEPTTL", "EX", "5"), ("SET", "k", "v", "EX", "9223372036854775807"),
    ("INCR", "k"), ("SET", "k", "5", "EX", "100"), ("INCR", "k"), ("TTL", "k"),
    ("APPEND", "k", "0"), ("TTL", "k"), ("get", "k"), ("sEt", "k", "mixed"), ("GET", "k"),
    ("SET", "empty", ""), ("GET", "empty"), ("STRLEN", "empty"), ("APPEND", "empty", ""),
]

KEYS = [
    ("MSET", "a", "1", "b", "2", "c", "3"), ("DEL", "a", "b", "missing"), ("DEL", "a"),
    ("EXISTS", "a", "b", "c", "c"), ("EXISTS", "missing"), ("EXPIRE", "c", "100"),
    ("TTL", "c"), ("PERSIST", "c"), ("TTL", "c"), ("PERSIST", "c"), ("PERSIST", "missing"),
    ("TTL", "missing"), ("PTTL", "missing"), ("PTTL", "c"), ("EXPIRE", "missing", "10"),
    ("EXPIRE", "c", "abc"), ("EXPIRE", "c", "10", "NX"), ("EXPIRE", "c", "20", "NX"),
    ("TTL", "c"), ("EXPIRE", "c", "30", "XX"), ("TTL", "c"), ("EXPIRE", "c", "5", "GT"),
    ("EXPIRE", "c", "50", "GT"), ("TTL", "c"), ("EXPIRE", "c", "60", "LT"),
    ("EXPIRE", "c", "5", "LT"), ("TTL", "c"), ("EXPIRE", "c", "5", "NX", "XX"),
    ("EXPIRE", "c", "5", "GT", "LT"), ("EXPIRE", "c", "5", "FOO"),
    ("EXPIRE", "c", "9223372036854775807"), ("PEXPIRE", "c", "100000"), ("PTTL", "c"),
    ("EXPIREAT", "c", FAR), ("TTL", "c"), ("PEXPIREAT", "c", FAR_MS), ("PTTL", "c"),
    ("EXPIRE", "c", "-1"), ("EXISTS", "c"), ("TTL", "c"), ("SET", "d", "1"),
    ("PEXPIRE", "d", "0"), ("GET", "d"), ("SET", "e", "1"), ("EXPIREAT", "e", "1"),
    ("EXISTS", "e"), ("TYPE", "e"), ("SET", "s1", "x"), ("TYPE", "s1"),
    ("EXPIRE",), ("TTL",), ("DEL",), ("EXISTS",),
]

HASHES = [
    ("HSET", "h", "f1", "v1", "f2", "v2"), ("HSET", "h", "f1", "x"), ("HGET", "h", "f1"),
    ("HGET", "h", "nope"), ("HGET", "nokey", "f"), ("HDEL", "h", "f2", "nope"),
    ("HLEN", "h"), ("HLEN", "nokey"), ("HEXISTS", "h", "f1"), ("HEXISTS", "h", "f2"),
    ("HEXISTS", "nokey", "f"), ("HINCRBY", "h", "cnt", "5"), ("HINCRBY", "h", "cnt", "-7"),
    ("HINCRBY", "h", "f1", "1"), ("HINCRBY", "h", "cnt", "x"), ("HINCRBY", "h2", "c", "3"),
    ("HSET", "h3", "n", "9223372036854775807"), ("HINCRBY", "h3", "n", "1"),
    ("HGETALL", "h"), ("HGETALL", "missing"), ("HSET", "h", "f"), ("HSET", "h", "f", "v", "g"),
    ("SET", "str", "v"), ("HSET", "str", "f", "v"), ("HGET", "str", "f"), ("HGETALL", "str"),
    ("HLEN", "str"), ("HDEL", "str", "f"), ("HEXISTS", "str", "f"), ("HINCRBY", "str", "f", "1"),
    ("HDEL", "h", "f1", "cnt"), ("EXISTS", "h"), ("TYPE", "h2"), ("HDEL", "nokey", "f"),
    ("HSET", "h", "", ""), ("HGET", "h", ""),
]

LISTS = [
    ("RPUSH", "l", "a", "b", "c"), ("LPUSH", "l", "z", "y"), ("LRANGE", "l", "0", "-1"),
    ("LRANGE", "l", "1", "2"), ("LRANGE", "l", "-2", "-1"), ("LRANGE", "l", "5", "10"),
    ("LRANGE", "l", "-100", "100"), ("LRANGE", "l", "3", "1"), ("LRANGE", "l", "4", "4"),
    ("LRANGE", "l", "-1", "-5"), ("LLEN", "l"), ("LPOP", "l"), ("RPOP", "l"),
    ("LPOP", "l", "2"), ("RPOP", "l", "0"), ("LPOP", "l", "-1"), ("LPOP", "l", "x"),
    ("LPOP", "l", "1", "2"), ("LPOP", "missing"), ("LPOP", "missing", "2"),
    ("RPOP", "missing", "0"), ("RPOP", "l", "10"), ("EXISTS", "l"), ("LLEN", "missing"),
    ("SET", "str", "v"), ("LPUSH", "str", "x"), ("RPUSH", "str", "x"), ("LPOP", "str"),
    ("LRANGE", "str", "0", "1"), ("LLEN", "str"), ("LRANGE", "l", "a", "b"),
    ("LRANGE", "missing", "0", "-1"), ("RPUSH", "l2", "1"), ("LPOP", "l2"), ("TYPE", "l2"),
    ("LPUSH", "l3", "a", "b", "c", "d", "e", "f"), ("LRANGE", "l3", "3", "5"),
    ("LRANGE", "l3", "4", "-1"), ("LPUSH", "l3"),
]

SETS = [
    ("SADD", "s", "a", "b", "c", "a"), ("SADD", "s", "a"), ("SREM", "s", "a", "x"),
    ("SMEMBERS", "s"), ("SISMEMBER", "s", "b"), ("SISMEMBER", "s", "a"),
    ("SISMEMBER", "missing", "a"), ("SCARD", "s"), ("SCARD", "missing"),
    ("SMEMBERS", "missing"), ("SET", "str", "v"), ("SADD", "str", "x"), ("SREM", "str", "x"),
    ("SMEMBERS", "str"), ("SISMEMBER", "str", "x"), ("SCARD", "str"), ("SREM", "missing", "a"),
    ("SREM", "s", "b", "c"), ("EXISTS", "s"), ("TYPE", "s"), ("SADD", "s"),
]

SERVER = [
    ("PING",), ("PING", "hi"), ("PING", "a", "b"), ("ECHO", "hello"), ("ECHO",),
    ("SET", "x", "1"), ("DBSIZE",), ("SELECT", "0"), ("SELECT", "x"),
    ("CLIENT", "SETNAME", "myname"), ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", "bad name"),
    ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", ""), ("CLIENT", "GETNAME"),
    ("CLIENT", "NOSUCH"), ("FLUSHDB",), ("DBSIZE",), ("NOSUCHCMD", "a", "b"), ("NOSUCHCMD",),
    ("NOSUCHCMD", "x" * 200, "y"), ("SET", "y", "1"), ("FLUSHALL",), ("DBSIZE",),
    ("FLUSHALL", "ASYNC"), ("FLUSHALL", "BOGUS"), ("HELLO", "4"), ("HELLO", "x"),
    ("AUTH", "x"), ("AUTH", "default", "x"), ("AUTH", "bob", "x"), ("AUTH",),
    ("HELLO", "3", "AUTH", "bob", "x"), ("HELLO", "2", "AUTH", "default", "x"),
]

RESP3 = [
    ("HELLO", "3"), ("HSET", "h", "a", "1", "b", "2"), ("HGETALL", "h"), ("HGETALL", "nokey"),
    ("SADD", "s", "x", "y"), ("SMEMBERS", "s"), ("GET", "missing"), ("LPOP", "missing", "2"),
    ("HGET", "h", "zz"), ("MGET", "h", "missing"), ("INCR", "n"), ("PING",),
    ("CLIENT", "GETNAME"), ("HELLO", "2"), ("HGETALL", "h"), ("GET", "missing"),
]

SCRIPTS = {"strings": STRINGS, "keys": KEYS, "hashes": HASHES, "lists": LISTS,
           "sets": SETS, "server": SERVER, "resp3": RESP3}


@pytest.fixture(scope="module")
def servers():
    with RedisServer() as real, KvServer() as kv:
        yield real, kv


class Near:
    """A clock-dependent number: equal to another Near within `slack` (the
    two servers read their clocks at different moments)."""

    def __init__(self, value, slack):
        self.value, self.slack = value, slack

    def __eq__(self, other):
        return isinstance(other, Near) and abs(self.value - other.value) <= self.slack

    def __repr__(self):
        return f"~{self.value}"


def normalise(cmd, reply):
    name = cmd[0].upper() if cmd else ""
    if isinstance(reply, ResponseError):
        return ("error", str(reply))
    if name == "HELLO" and isinstance(reply, (dict, list)):
        d = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))
        return ("hello", d.get(b"proto"), d.get(b"server"))
    if name == "PTTL" and isinstance(reply, int) and reply > 0:
        return Near(reply, 2000)
    if name == "TTL" and isinstance(reply, int) and reply > 0:
        return Near(reply, 2)
    if name == "SMEMBERS" and isinstance(reply, (list, set)):
        return ("members", type(reply).__name__, sorted(reply))
    if isinstance(reply, memoryview):
        return bytes(reply)
    return reply


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_reply_for_reply(servers, script):
    real, kv = servers
    commands = SCRIPTS[script]
    answers = []
    for srv in (real, kv):
        with RespConn(srv.port) as c:
            assert c.call("FLUSHALL") == b"OK"
            answers.append([normalise(cmd, c.call(*cmd)) for cmd in commands])
    diffs = [f"{cmd!r}: redis={r!r} kv={k!r}"
             for cmd, r, k in zip(commands, *answers) if r != k]
    assert not diffs, "\n".join(diffs)


def test_pipelined_script_matches(servers):
    """The whole strings script in one write: same replies, same order."""
    real, kv = servers
    answers = []
    for srv in (real, kv):
        with RespConn(srv.port) as c:
            c.call("FLUSHALL")
            answers.append([normalise(cmd, r) for cmd, r in
                            zip(STRINGS, c.pipeline(STRINGS))])
    assert answers[0] == answers[1]


def test_inline_commands_match(servers):
    real, kv = servers
    lines = (b"SET ik hello\r\nGET ik\r\nSET q \"a b\\x41\\n\"\r\nGET q\r\n"
             b"SET sq 'it\\'s'\r\nGET sq\r\n  PING  \r\n\r\nECHO 'x y'\nDEL ik q sq\r\n")
    answers = []
    for srv in (real, kv):
        with RespConn(srv.port) as c:
            c.call("FLUSHALL")
            c.send_raw(lines)
            answers.append([normalise(("X",), c.read()) for _ in range(9)])
    assert answers[0] == answers[1]


def test_redis_py_unchanged(servers):
    redis = pytest.importorskip("redis")
    _real, kv = servers
    for proto in (2, 3):
        r = redis.Redis(port=kv.port, protocol=proto)
        try:
            r.flushall()
            assert r.set("a", "1") is True
            assert r.get("a") == b"1"
            assert r.incr("a", 5) == 6
            assert r.mset({"x": "1", "y": "2"}) is True
            assert r.mget("x", "y", "z") == [b"1", b"2", None]
            assert r.hset("h", mapping={"f": "v", "g": "w"}) == 2
            assert r.hgetall("h") == {b"f": b"v", b"g": b"w"}
            assert r.rpush("l", 1, 2, 3) == 3
            assert r.lrange("l", 0, -1) == [b"1", b"2", b"3"]
            assert r.sadd("s", "a", "b") == 2
            assert r.smembers("s") == {b"a", b"b"}
            assert r.expire("a", 100) is True
            assert 99 <= r.ttl("a") <= 100
            assert r.client_setname("me") is True
            assert r.client_getname() in ("me", b"me")
            pipe = r.pipeline(transaction=False)
            for i in range(100):
                pipe.set(f"p{i}", i)
            for i in range(100):
                pipe.get(f"p{i}")
            out = pipe.execute()
            assert out[:100] == [True] * 100
            assert out[100:] == [str(i).encode() for i in range(100)]
            assert r.dbsize() == 106
            assert r.ping() is True
        finally:
            r.close()


def test_ringline_redis_unchanged(servers, run):
    from ringline.redis import connect
    _real, kv = servers

    async def main():
        c = await connect("127.0.0.1", kv.port)
        try:
            await c.execute("FLUSHALL")
            assert await c.execute("SET", "k", "v") == b"OK"
            assert await c.get("k") == b"v"
            await c.execute("HSET", "h", "f", "1")
            assert await c.execute("HINCRBY", "h", "f", "2") == 3
            replies = await __import__("asyncio").gather(
                *[c.execute("INCR", "cnt") for _ in range(200)])
            assert sorted(replies) == list(range(1, 201))
        finally:
            await c.close()
    run(main)


def test_redis_cli_smoke(servers):
    _real, kv = servers

    def cli(*args):
        return subprocess.run([REDIS_CLI, "-p", str(kv.port), *args], capture_output=True,
                              text=True, timeout=20).stdout

    assert cli("FLUSHALL").strip() == "OK"
    assert cli("SET", "greeting", "hello world").strip() == "OK"
    assert cli("GET", "greeting").strip() == "hello world"
    assert cli("RPUSH", "l", "a", "b").strip() == "2"
    assert cli("LRANGE", "l", "0", "-1").split() == ["a", "b"]
    assert "redis_version" in cli("INFO")
    assert cli("DBSIZE").strip() == "2"
    # an interactive-style session fed on stdin
    out = subprocess.run([REDIS_CLI, "-p", str(kv.port)], input="PING\nGET greeting\n",
                         capture_output=True, text=True, timeout=20).stdout
    assert out.split("\n")[:2] == ["PONG", "hello world"]


def _random_commands(seed, n):
    """Random commands of the whole set over a few keys of every type, with
    valid and invalid arguments mixed."""
    import random
    rng = random.Random(seed)
    keys = ["s1", "s2", "n1", "h1", "l1", "z1", "missing"]
    vals = ["", "0", "1", "-1", "17", "abc", "9223372036854775807", "x" * 40, "3.5"]
    ints = ["0", "1", "2", "-1", "-3", "5", "100", "abc", "-100"]

    def k():
        return rng.choice(keys)

    def v():
        return rng.choice(vals)

    def i():
        return rng.choice(ints)
    makers = [
        lambda: ("SET", k(), v()), lambda: ("SET", k(), v(), rng.choice(["NX", "XX", "GET"])),
        lambda: ("GET", k()), lambda: ("MGET", k(), k(), k()),
        lambda: ("MSET", k(), v(), k(), v()),
        lambda: ("INCR", k()), lambda: ("DECRBY", k(), i()), lambda: ("INCRBY", k(), i()),
        lambda: ("APPEND", k(), v()), lambda: ("STRLEN", k()), lambda: ("DEL", k(), k()),
        lambda: ("EXISTS", k(), k()), lambda: ("TYPE", k()), lambda: ("PERSIST", k()),
        lambda: ("EXPIRE", k(), rng.choice(["100", "200", "-1", "abc"])),
        lambda: ("TTL", k()), lambda: ("HSET", k(), v(), v()), lambda: ("HGET", k(), v()),
        lambda: ("HDEL", k(), v(), v()), lambda: ("HGETALL", k()), lambda: ("HLEN", k()),
        lambda: ("HEXISTS", k(), v()), lambda: ("HINCRBY", k(), v(), i()),
        lambda: ("LPUSH", k(), v(), v()), lambda: ("RPUSH", k(), v()), lambda: ("LPOP", k()),
        lambda: ("RPOP", k(), rng.choice(["0", "1", "3", "-1"])), lambda: ("LLEN", k()),
        lambda: ("LRANGE", k(), i(), i()), lambda: ("SADD", k(), v(), v()),
        lambda: ("SREM", k(), v()), lambda: ("SMEMBERS", k()), lambda: ("SCARD", k()),
        lambda: ("SISMEMBER", k(), v()), lambda: ("DBSIZE",),
    ]
    return [rng.choice(makers)() for _ in range(n)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_commands_match(servers, seed):
    real, kv = servers
    commands = _random_commands(seed, 1500)
    answers = []
    for srv in (real, kv):
        with RespConn(srv.port) as c:
            c.call("FLUSHALL")
            answers.append([normalise(cmd, r) for cmd, r in
                            zip(commands, c.pipeline(commands))])
    diffs = [f"#{n} {cmd!r}: redis={r!r} kv={k!r}"
             for n, (cmd, r, k) in enumerate(zip(commands, *answers)) if r != k]
    assert not diffs, "\n".join(diffs[:10])
