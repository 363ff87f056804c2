"""ringline.kv under hostile input: malformed RESP gets the error Redis sends
and the connection closes; oversized inputs are refused by the documented
bounds; nothing takes the shard down (other connections keep working)."""
from __future__ import annotations

import random
import socket

import pytest

from ringline.redis._resp import encode_command

from support.kv_server import KvServer, RespConn
from support.redis_server import RedisServer, have_redis

MALFORMED = [
    b"*abc\r\n",
    b"*1\r\nx\r\n",
    b"*1\r\n$abc\r\n",
    b"*1\r\n$-5\r\n",
    b"*1\r\n$600000000\r\n",                     # over Redis' 512 MiB and our max_bulk
    b"*99999999999\r\n",
    b"*1\r\n$4\r\nPING\r\n*-3x\r\n",
]


@pytest.fixture(scope="module")
def kv():
    with KvServer("--max-bulk", "65536", "--max-request", "262144", "--max-args", "1000",
                  "--max-inline", "4096") as srv:
        yield srv


def _raw(port, data, timeout=5.0, eof=False):
    """Send data (then EOF when eof), return everything the server sent
    until it closed (or the timeout, then None marks "still open")."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if eof:
            s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk
        except socket.timeout:
            return None if not out else out + b"<open>"


@pytest.mark.skipif(not have_redis(), reason="redis-server is not installed")
def test_malformed_requests_match_redis(kv):
    with RedisServer() as real:
        for data in MALFORMED:
            want = _raw(real.port, data)
            got = _raw(kv.port, data)
            assert got == want, (data, want, got)


def _alive(kv):
    with kv.conn() as c:
        assert c.call("PING") == b"PONG"


def test_bounds_refuse_and_close(kv):
    # one argument over max_bulk (announced: refused before the payload)
    out = _raw(kv.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$70000\r\n")
    assert out == b"-ERR Protocol error: invalid bulk length\r\n"
    # more arguments than max_args
    assert _raw(kv.port, b"*1001\r\n") == b"-ERR Protocol error: invalid multibulk length\r\n"
    # a whole request over max_request (each argument within max_bulk)
    big = b"x" * 60000
    # (refused as soon as the fifth argument's header announces the excess:
    # its payload is not sent, so the client has nothing unread when the
    # server closes, and the close is not a reset)
    req = b"*6\r\n$4\r\nMSET\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(big), big)
                                             for _ in range(4)) + b"$60000\r\n"
    assert _raw(kv.port, req) == b"-ERR Protocol error: request too big\r\n"
    # a bulk not followed by CRLF (Redis skips two bytes, whatever they are)
    assert _raw(kv.port, b"*2\r\n$3\r\nGET\r\n$1\r\nkXY\r\n") == \
        b"-ERR Protocol error: bulk string not terminated by CRLF\r\n"
    # an endless inline line
    assert _raw(kv.port, b"GET " + b"a" * 5000) == \
        b"-ERR Protocol error: too big inline request\r\n"
    # an endless header line
    assert _raw(kv.port, b"*" + b"1" * 5000) == \
        b"-ERR Protocol error: too big mbulk count string\r\n"
    _alive(kv)


def test_values_at_the_bound_work_in_pieces(kv):
    value = bytes(random.Random(1).getrandbits(8) for _ in range(65536))
    req = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$65536\r\n" + value + b"\r\n"
    with socket.create_connection(("127.0.0.1", kv.port), timeout=10) as s:
        for i in range(0, len(req), 999):
            s.sendall(req[i:i + 999])
        assert s.recv(100) == b"+OK\r\n"
    with kv.conn() as c:
        assert c.call("GET", "big") == value


def test_unknown_and_wrong_arity_keep_the_connection(kv):
    with kv.conn() as c:
        replies = c.pipeline([("NOPE",), ("GET",), ("SET", "a", "1"), ("GET", "a")])
        assert "unknown command" in str(replies[0])
        assert "wrong number of arguments" in str(replies[1])
        assert replies[2:] == [b"OK", b"1"]


def test_garbage_never_takes_the_shard_down(kv):
    rng = random.Random(19)
    alphabet = b"*$:+-\r\n0123456789abcGETSET \"'\\"
    with kv.conn() as survivor:
        survivor.call("SET", "survivor", "yes")
        for i in range(150):
            n = rng.randrange(1, 200)
            data = bytes(rng.choice(alphabet) for _ in range(n))
            try:
                _raw(kv.port, data, timeout=2.0, eof=True)
            except OSError:
                pass
            if i % 30 == 0:
                assert survivor.call("GET", "survivor") == b"yes"
        assert survivor.call("GET", "survivor") == b"yes"
    _alive(kv)


def test_quit_closes_after_its_reply(kv):
    with socket.create_connection(("127.0.0.1", kv.port), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n")
        out = b""
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            out += chunk
    assert out == b"+PONG\r\n+OK\r\n"


def test_many_connections_pipelining(kv):
    conns = [RespConn(kv.port) for _ in range(200)]
    try:
        for i, c in enumerate(conns):
            c.sock.sendall(b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\nc%d:%d\r\n$1\r\nv\r\n"
                                    % (len(b"c%d:%d" % (i, j)), i, j) for j in range(16)))
        for c in conns:
            assert [c.read() for _ in range(16)] == [b"OK"] * 16
    finally:
        for c in conns:
            c.close()
    with kv.conn() as c:
        assert c.call("EXISTS", "c0:0", "c199:15") == 2


def test_ten_thousand_connections_pipelining(kv):
    """10,000 connections open at once on one shard, each with a pipeline
    of 4 commands in flight; every reply arrives, in order."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 10_000 + 200
    if soft < need:
        if hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    socks = []
    try:
        for i in range(10_000):
            s = socket.create_connection(("127.0.0.1", kv.port), timeout=30)
            key = b"conn%d" % i
            s.sendall(b"".join(encode_command(c) for c in
                               ([b"SET", key, b"1"], [b"INCR", key], [b"GET", key], [b"PING"])))
            socks.append(s)
        want = b"+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n"
        for s in socks:
            got = b""
            while len(got) < len(want):
                chunk = s.recv(64)
                assert chunk, "connection closed"
                got += chunk
            assert got == want
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    _alive(kv)
