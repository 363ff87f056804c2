"""ringline.kv's native request path against its Python reference.

- Scanner (native) and resp.RequestParser agree on random, truncated and
  malformed input: the same commands, bytes used, `want` and error text,
  under small limits so that every bound is reached.
- FastConn (native GET / plain SET, the rest through Shard.execute) and the
  Python path (RequestParser, Shard.execute, encode) give the same reply
  bytes, journal records, keyspace and counters for random command streams
  (expiring keys, wrong types, RESP3, errors, QUIT, protocol errors), fed in
  random pieces.
"""
from __future__ import annotations

from typing import Any, List, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringline.kv._fastresp import FastConn, Scanner
from ringline.kv.commands import Shard
from ringline.kv.resp import Error, Limits, ProtocolError, RequestParser, encode
from ringline.kv.repl import WriteLog
from ringline.kv.server import KvServer

SMALL = Limits(max_bulk=12, max_args=5, max_inline=24, max_request=60)


def _cmd(args: List[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


_word = st.binary(max_size=14)
_piece = st.one_of(
    st.lists(_word, min_size=0, max_size=6).map(_cmd),
    st.sampled_from([b"*0\r\n", b"*-1\r\n", b"*-0\r\n", b"*+1\r\n", b"*01\r\n", b"*\r\n",
                     b"*99999999999999999999\r\n", b"*-99999999999999999999\r\n",
                     b"*1\r\n$-1\r\n", b"*1\r\n$01\r\n", b"*1\r\n$0\r\n\r\n", b"*1\r\nx",
                     b"*1\r\n$3\r\nabcXY", b"\r\n", b"\n", b"PING\r\n", b"GET k\n",
                     b"SET \"a b\" 'c'\r\n", b"\"unbalanced\r\n", b"'x'y\r\n",
                     b"\"\\x41\\n\"\r\n", b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
                     b"$3\r\n", b"*1\r\r\n", b"*1\r\n$1\r\r\n"]),
    st.binary(max_size=30),
)
_stream = st.lists(_piece, max_size=8).map(b"".join)


def _both(data: bytes, limits: Limits) -> None:
    ref = RequestParser(limits)
    nat = Scanner(limits)
    r_cmds, r_used = ref.feed(data)
    n_cmds, n_used = nat.feed(data)
    assert n_cmds == r_cmds
    assert n_used == r_used
    assert nat.want == ref.want
    assert (str(nat.error) if nat.error else None) == (str(ref.error) if ref.error else None)
    assert type(nat.error) is type(ref.error)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stream, st.sampled_from([SMALL, Limits()]))
def test_scanner_agrees_with_the_reference(data, limits):
    _both(data, limits)
    for cut in {len(data) // 3, len(data) // 2, len(data) - 1}:   # truncated
        if cut > 0:
            _both(data[:cut], limits)


def test_scanner_bounds_by_example():
    for data in [b"*6\r\n", b"*1\r\n$13\r\n", b"x" * 25, b"*" + b"1" * 30,
                 b"*1\r\n$" + b"1" * 30, _cmd([b"0123456789ab"] * 5),
                 _cmd([b"0123456789ab"] * 4)[:-3], b"*1\r\n$5\r\nabc\r\n\r\n",
                 b"*1\r\n$2\r\n\xff"]:
        _both(data, SMALL)


# -- FastConn against the Python path -------------------------------------------

class _Gate:
    def __init__(self) -> None:
        self.out: List[bytes] = []
        self.closing = False

    def push(self, data: bytes, seq: int) -> bool:
        self.out.append(data)
        return True

    def close_after_sent(self) -> None:
        self.closing = True


class _Clock:
    now = 1_000_000

    def __call__(self) -> int:
        return self.now


def _shard(clock: _Clock, records: List[List[bytes]]) -> Shard:
    sh = Shard()
    sh.ks.clock = clock
    sh.on_write = records.append
    return sh


def _server(shard: Shard) -> KvServer:
    srv = KvServer()
    srv.shard = shard
    srv.worker_id = 0
    srv.writelog = WriteLog()
    return srv


def _python_path(srv: KvServer, session: Any, data: bytes) -> Optional[bytes]:
    """The reference: every complete command through Shard.execute."""
    parser = RequestParser(Limits())
    cmds, used = parser.feed(data)
    out = []
    for args in cmds:
        out.append(srv._run_one(session, args))
        if session.closing:
            break
    if parser.error is not None and not session.closing:
        out.append(encode(Error(str(parser.error).encode()), session.proto))
        session.closing = True
    return b"".join(out)


_key = st.sampled_from([b"k", b"K", b"exp", b"h", b"n", b"\x00\xff"])
_val = st.sampled_from([b"v", b"", b"12", b"x" * 300, b"\r\n"])
_op = st.one_of(
    st.tuples(st.sampled_from([b"GET", b"get", b"gEt"]), _key),
    st.tuples(st.sampled_from([b"SET", b"set", b"Set"]), _key, _val),
    st.tuples(st.just(b"SET"), _key, _val, st.sampled_from([b"PX", b"NX", b"XX", b"GET"]),
              st.sampled_from([b"5", b"100"])),
    st.tuples(st.just(b"PEXPIRE"), _key, st.sampled_from([b"5", b"1000"])),
    st.tuples(st.sampled_from([b"HSET"]), _key, _val, _val),
    st.tuples(st.sampled_from([b"INCR", b"DEL", b"TTL", b"PERSIST"]), _key),
    st.tuples(st.just(b"GET")), st.tuples(st.just(b"SET"), _key),
    st.tuples(st.just(b"GET"), _key, _key),
    st.just((b"HELLO", b"3")), st.just((b"HELLO", b"2")), st.just((b"PING",)),
    st.just((b"NOSUCH", b"x")), st.just((b"QUIT",)), st.just((b"DBSIZE",)),
    st.just(b"tick"), st.just(b"garbage"),
)


def _encode_ops(ops: List[Any]) -> List[Any]:
    out: List[Any] = []
    for op in ops:
        if op == b"garbage":
            out.append(b"*1\r\n$x\r\n")
        elif op == b"tick":
            out.append(op)
        else:
            out.append(_cmd(list(op)))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_op, max_size=6), max_size=8), st.randoms())
def test_fastconn_matches_the_python_path(batches, rnd):
    clock_a, clock_b = _Clock(), _Clock()
    rec_a: List[List[bytes]] = []
    rec_b: List[List[bytes]] = []
    sh_a, sh_b = _shard(clock_a, rec_a), _shard(clock_b, rec_b)
    srv_a, srv_b = _server(sh_a), _server(sh_b)
    se_a, se_b = sh_a.new_session(), sh_b.new_session()
    gate = _Gate()
    fast = FastConn(Limits(), sh_a, se_a, gate, None, srv_a._run_one, srv_a._failure_reply,
                    lambda n: ("need", n))
    want_out: List[bytes] = []
    for batch in batches:
        for piece in _encode_ops(batch):
            if piece == b"tick":
                clock_a.now += 7
                clock_b.now += 7
                continue
            if se_b.closing:
                break
            # the reference takes each command whole
            want_out.append(_python_path(srv_b, se_b, piece))
            # the native path gets it in two random pieces
            cut = rnd.randint(1, len(piece))
            res = fast.on_data(memoryview(piece[:cut]))
            used = res if isinstance(res, int) else 0
            rest = piece[used:]
            if rest and not se_a.closing:
                assert fast.on_data(memoryview(rest)) == len(rest)
            assert gate.closing == se_a.closing
    assert b"".join(gate.out) == b"".join(want_out)
    assert rec_a == rec_b
    assert sh_a.ks.data == sh_b.ks.data and sh_a.ks.expires == sh_b.ks.expires
    assert sh_a.commands_processed == sh_b.commands_processed
    assert sh_a.ks.expired_keys == sh_b.ks.expired_keys
    assert (sh_a.ks.dirty == sh_b.ks.dirty)
    assert se_a.proto == se_b.proto and se_a.closing == se_b.closing


def test_fastconn_replies_resp3_null_and_batches_one_push():
    sh = Shard()
    srv = _server(sh)
    se = sh.new_session()
    gate = _Gate()
    fast = FastConn(Limits(), sh, se, gate, None, srv._run_one, srv._failure_reply,
                    lambda n: ("need", n))
    data = _cmd([b"SET", b"a", b"1"]) + _cmd([b"GET", b"a"]) + _cmd([b"GET", b"b"])
    assert fast.on_data(memoryview(data)) == len(data)
    assert gate.out == [b"+OK\r\n$1\r\n1\r\n$-1\r\n"]
    fast.on_data(memoryview(_cmd([b"HELLO", b"3"]) + _cmd([b"GET", b"b"])))
    assert gate.out[-1].endswith(b"_\r\n")
    # an incomplete bulk asks for its announced size
    part = b"*2\r\n$3\r\nGET\r\n$100\r\nabc"
    assert fast.on_data(memoryview(part)) == ("need", len(part) - 3 + 102)
    assert sh.commands_processed == 5


def test_fastconn_journal_failure_is_an_error_reply():
    from ringline.kv.journal import JournalError
    sh = Shard()

    def failing(args: List[bytes]) -> None:
        raise JournalError("disk gone")
    sh.on_write = failing
    srv = _server(sh)
    se = sh.new_session()
    gate = _Gate()
    fast = FastConn(Limits(), sh, se, gate, None, srv._run_one, srv._failure_reply,
                    lambda n: ("need", n))
    fast.on_data(memoryview(_cmd([b"SET", b"a", b"1"]) + _cmd([b"SET", b"a", b"1", b"NX"])))
    assert gate.out == [b"-ERR journal failed: writes are not persisted\r\n$-1\r\n"]


def test_protocol_error_reply_text():
    sh = Shard()
    srv = _server(sh)
    se = sh.new_session()
    gate = _Gate()
    fast = FastConn(Limits(), sh, se, gate, None, srv._run_one, srv._failure_reply,
                    lambda n: ("need", n))
    data = b"PING\r\n*1\r\n$x\r\n"
    assert fast.on_data(memoryview(data)) == len(data)
    assert gate.out == [b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"]
    assert gate.closing and se.closing
    assert isinstance(fast.error, ProtocolError)


def _journalled_shard(path: str) -> Any:
    from ringline.kv.journal import Journal
    from ringline.redis._resp import encode_command
    j = Journal.open(path, fsync=False)
    sh = Shard()

    def hook(args: List[bytes]) -> None:
        j.append(encode_command(args))
    sh.on_write = hook
    return sh, j, hook


@given(st.lists(_op, max_size=12))
@settings(max_examples=60, deadline=None)
def test_fastconn_frames_journal_records_as_append_does(tmp_path_factory, ops):
    d = tmp_path_factory.mktemp("j")
    sh_a, j_a, hook_a = _journalled_shard(str(d / "a.rlj"))
    sh_b, j_b, _ = _journalled_shard(str(d / "b.rlj"))
    for sh in (sh_a, sh_b):
        sh.ks.clock = _Clock()
    srv_a, srv_b = _server(sh_a), _server(sh_b)
    se_a, se_b = sh_a.new_session(), sh_b.new_session()
    fast = FastConn(Limits(), sh_a, se_a, _Gate(), None, srv_a._run_one, srv_a._failure_reply,
                    lambda n: ("need", n), j_a, hook_a)
    data = b"".join(p for p in _encode_ops(ops) if p != b"tick")
    if data:
        fast.on_data(memoryview(data))
        _python_path(srv_b, se_b, data)
    assert j_a.appended == j_b.appended
    j_a.close()
    j_b.close()
    with open(d / "a.rlj", "rb") as fa, open(d / "b.rlj", "rb") as fb:
        assert fa.read() == fb.read()


@given(st.binary(max_size=600))
def test_crc32_is_zlibs(data):
    import zlib

    from ringline.kv._fastresp import crc32
    assert crc32(data) == zlib.crc32(data)


def test_fastconn_many_arguments_then_small_commands():
    sh = Shard()
    srv = _server(sh)
    se = sh.new_session()
    gate = _Gate()
    fast = FastConn(Limits(), sh, se, gate, None, srv._run_one, srv._failure_reply,
                    lambda n: ("need", n))
    keys = [b"k%d" % i for i in range(3000)]
    mset = [b"MSET"] + [x for k in keys for x in (k, k)]
    data = _cmd(mset) + _cmd([b"DEL"] + keys[:2000]) + _cmd([b"GET", b"k2999"])
    assert fast.on_data(memoryview(data)) == len(data)
    assert gate.out == [b"+OK\r\n:2000\r\n$5\r\nk2999\r\n"]
    data = _cmd([b"SET", b"a", b"b"]) + _cmd([b"GET", b"a"])
    assert fast.on_data(memoryview(data)) == len(data)
    assert gate.out[-1] == b"+OK\r\n$1\r\nb\r\n"
