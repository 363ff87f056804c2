"""Property tests of the protocol parsers through the paths the clients use.

RESP: the Redis client's receive callbacks (``_Connection._on_data``, our
parser, and ``_on_data_hiredis``, hiredis fed only vetted complete replies)
are driven by a model of the receive accumulator (``with_bytes``: consumed
counts, ``need_at_least``), at every split point and with mutated valid
replies. Both paths must give the same values, or the same ProtocolError,
at every split; mutated input gives values or a ProtocolError, never
another exception, never a stall while bytes are buffered.

Memcache: ``ResponseParser`` with and without the native VALUE scanner,
mutated replies, at every split point: the same replies or a ProtocolError.

Plus a regression test per parser finding of issue 12 (4, 5, 7, 9, 10).
"""
import collections

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ringline.memcache import _proto
from ringline.memcache._proto import MetaResult, ProtocolError as McProtocolError, ResponseParser
from ringline.redis import _connection as rc
from ringline.redis._errors import ProtocolError, error_from_reply
from ringline.redis._resp import NEED_MORE, Parser, Push

from test_redis_resp import _norm, replies as resp3_replies

# -- a model of the receive accumulator driving the Redis client's callback ----


class _Recorder:
    __slots__ = ("out",)

    def __init__(self, out):
        self.out = out

    def set_result(self, v):
        self.out.append(_norm(v))

    set_exception = set_result


def _connection(kind, **limits):
    """A _Connection with no socket: just its parse state (kind: 'python' or
    'hiredis'), and a FIFO of recorders."""
    opts = rc.Options(parser="python" if kind == "python" else "hiredis", **limits)
    c = rc._Connection.__new__(rc._Connection)
    c.opts = opts
    c.name = "redis test"
    c.loop = None
    c.pending = collections.deque()
    c.parser = opts._parser()
    c.zc_min = opts.zero_copy_min
    c.window = max(rc._WINDOW, opts.max_line + 64)
    c.max_send, c.recv_cap = 8 << 20, 16 << 20
    c.error = None
    c.pushes_dropped = 0
    if kind == "hiredis":
        import hiredis
        c._hreader = hiredis.Reader(replyError=rc._hiredis_error,
                                    protocolError=rc._hiredis_protocol_error)
        c._on_data_fn = c._on_data_hiredis
    else:
        c._hreader = None
        c._on_data_fn = c._on_data
    return c


def drive(kind, chunks, **limits):
    """Feed chunks as ringline's accumulator would (with_bytes semantics);
    returns (values delivered, error class name or None, bytes left)."""
    c = _connection(kind, **limits)
    out = []
    rec = _Recorder(out)
    c.pending.extend([rec] * 10_000)
    buf = b""
    want = 1
    calls = 0
    try:
        for chunk in chunks:
            buf += chunk
            while buf and len(buf) >= want:
                calls += 1
                assert calls < 100_000, "the callback does not make progress"
                res = c._on_data_fn(memoryview(buf))
                if type(res) is int:
                    assert 0 <= res <= len(buf)
                    if res:
                        buf = buf[res:]
                        want = 1
                        continue
                    want = len(buf) + 1
                else:
                    assert res.n <= c.recv_cap
                    want = res.n if res.n > len(buf) else len(buf) + 1
                break
    except ProtocolError:
        return out, "ProtocolError", None
    return out, None, len(buf)


def _outcome(kind, wire, cut=None, **limits):
    chunks = [wire] if cut is None else [wire[:cut], wire[cut:]]
    return drive(kind, chunks, **limits)


# -- RESP2 replies (what hiredis handles), as wire bytes ------------------------

_simple = st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
resp2_scalars = st.one_of(
    _simple.map(lambda s: b"+" + s + b"\r\n"),
    st.sampled_from([b"-ERR x\r\n", b"-WRONGTYPE t\r\n", b"-MOVED 3 127.0.0.1:7000\r\n"]),
    st.integers(-2**63, 2**63 - 1).map(lambda i: b":%d\r\n" % i),
    st.binary(max_size=90).map(lambda b: b"$%d\r\n%b\r\n" % (len(b), b)),
    st.just(b"$-1\r\n"), st.just(b"*-1\r\n"), st.just(b"*0\r\n"),
)
resp2 = st.recursive(resp2_scalars,
                     lambda kids: st.lists(kids, max_size=5).map(
                         lambda xs: b"*%d\r\n" % len(xs) + b"".join(xs)),
                     max_leaves=20)
resp2_stream = st.lists(resp2, min_size=1, max_size=4).map(b"".join)

# small limits, so generated and mutated replies reach them
_TIGHT = dict(max_depth=4, max_elements=6, max_line=40, max_bulk=70, max_reply_bytes=1500,
              zero_copy_min=48)


@st.composite
def mutated(draw, base):
    wire = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "digits"]))
        i = draw(st.integers(0, len(wire)))
        if op == "flip" and i < len(wire):
            wire[i] = draw(st.sampled_from(b"\r\n*$:+-%~>|_,#(=!0123456789x\x00\xff"))
        elif op == "insert":
            wire[i:i] = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b"9" * 25, b"*", b"-1",
                                              b"0", b"%2\r\n", b"~1\r\n"]))
        elif op == "delete" and i < len(wire):
            del wire[i:i + draw(st.integers(1, 4))]
        elif op == "digits":
            wire[i:i] = b"*" + b"9" * draw(st.integers(1, 30)) + b"\r\n"
    return bytes(wire)


_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(resp2_stream, st.booleans())
def test_resp2_both_paths_agree_at_every_split(wire, tight):
    limits = _TIGHT if tight else {}
    want = _outcome("python", wire, **limits)
    if not tight:
        assert want[1] is None and want[2] == 0
    for kind in ("python", "hiredis"):
        for cut in range(len(wire) + 1):
            assert _outcome(kind, wire, cut, **limits) == want, (kind, cut)


@_SETTINGS
@given(mutated(resp2_stream), st.booleans(), st.data())
def test_resp2_mutations_give_values_or_protocol_error_on_both_paths(wire, tight, data):
    limits = _TIGHT if tight else {}
    want = _outcome("python", wire, **limits)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6, unique=True))
    for kind in ("python", "hiredis"):
        assert _outcome(kind, wire, **limits) == want, kind
        for cut in cuts:
            assert _outcome(kind, wire, cut, **limits) == want, (kind, cut)


@_SETTINGS
@given(st.one_of(resp3_replies.map(lambda r: r[0]), mutated(resp3_replies.map(lambda r: r[0]))),
       st.booleans())
def test_resp3_same_outcome_at_every_split(wire, tight):
    limits = _TIGHT if tight else {}
    want = _outcome("python", wire, **limits)
    for cut in range(len(wire) + 1):
        assert _outcome("python", wire, cut, **limits) == want, cut


@_SETTINGS
@given(st.binary(max_size=120))
def test_resp_random_bytes_on_both_paths(junk):
    want = _outcome("python", junk, **_TIGHT)
    assert _outcome("hiredis", junk, **_TIGHT) == want


# -- regression tests: one per RESP finding ---------------------------------------


def _all_splits(wire, parse):
    """parse(chunks) at every split point: the set of distinct outcomes."""
    return {repr(parse([wire[:i], wire[i:]])) for i in range(len(wire) + 1)}


def _parser_outcome(chunks, **kw):
    p = Parser(**kw)
    buf = b""
    out = []
    try:
        for c in chunks:
            buf += c
            while buf:
                v, used = p.parse(buf)
                buf = buf[used:]
                if v is NEED_MORE:
                    break
                out.append(_norm(v))
    except ProtocolError:
        return out, "ProtocolError"
    return out, len(buf)


@pytest.mark.parametrize("wire", [b"+a\nb\r\n", b"-ERR a\rb\r\n", b"+OK\n+OK\r\n",
                                  b"*2\r\n+x\r\n+y\nz\r\n"])
def test_bare_cr_or_lf_in_a_line_is_rejected_at_every_split(wire):
    """Finding 10: the same bytes give the same result at every split."""
    assert _all_splits(wire, _parser_outcome) == {repr(([], "ProtocolError"))}
    outcomes = {repr(_outcome(k, wire, cut)) for k in ("python", "hiredis")
                for cut in range(len(wire) + 1)}
    assert outcomes == {repr(([], "ProtocolError", None))}


def test_bytearray_map_and_set_keys_of_zero_copy_size_are_bytes():
    """Finding 9: keys of zero_copy_min bytes or more from a bytearray."""
    key = b"k" * 40
    wire = bytearray(b"%%1\r\n$%d\r\n%b\r\n:1\r\n~1\r\n$%d\r\n%b\r\n" % (len(key), key,
                                                                      len(key), key))
    p = Parser(zero_copy_min=16)
    values, used = p.parse_all(wire)
    assert used == len(wire)
    m, s = values
    assert m == {key: 1} and type(next(iter(m))) is bytes
    assert s == {key} and type(next(iter(s))) is bytes
    # a big value (not a key) is still a zero-copy view
    v, _ = Parser(zero_copy_min=16).parse(bytearray(b"%%1\r\n+k\r\n$%d\r\n%b\r\n" % (
        len(key), key)))
    assert type(v[b"k"]) is memoryview


@pytest.mark.parametrize("wire, knob", [
    (b":" + b"9" * 5000 + b"\r\n", "integer of 5000 characters"),
    (b"$" + b"9" * 5000 + b"\r\n", "length field of 5000 digits"),
    (b"*" + b"9" * 5000 + b"\r\n", "aggregate length of 5000 digits"),
    (b"%" + b"9" * 5000 + b"\r\n", "aggregate length"),
    (b"~" + b"9" * 5000 + b"\r\n", "aggregate length"),
    (b">" + b"9" * 5000 + b"\r\n", "aggregate length"),
    (b"=" + b"9" * 5000 + b"\r\n", "length field"),
    (b"!" + b"9" * 5000 + b"\r\n", "length field"),
    (b"(" + b"9" * 5000 + b"\r\n", "max_bignum_digits"),
])
def test_long_numeric_fields_are_protocol_errors(wire, knob):
    """Finding 7: beyond the digit bound a ProtocolError, never ValueError."""
    with pytest.raises(ProtocolError, match=knob):
        Parser().parse(wire)
    if wire[:1] in b":$*":
        for kind in ("python", "hiredis"):
            assert _outcome(kind, wire) == ([], "ProtocolError", None)


def test_big_numbers_within_the_knob_are_exact():
    n = int("7" * 4300)
    assert Parser().parse(b"(%d\r\n" % n)[0] == n
    assert Parser().parse(b"(-%d\r\n" % n)[0] == -n
    big = (10 ** 9000 - 1) // 3          # 9000 threes, beyond int()'s own limit
    assert Parser(max_bignum_digits=9000).parse(b"(" + b"3" * 9000 + b"\r\n")[0] == big


def test_huge_aggregate_headers_are_refused_before_anything_is_consumed():
    """Finding 4: the default max_elements refuses *4294967296 at once."""
    with pytest.raises(ProtocolError, match=r"max_elements \(1048576\)"):
        Parser().parse(b"*4294967296\r\n")
    for kind in ("python", "hiredis"):
        assert _outcome(kind, b"*4294967296\r\n~0\r\n~0\r\n") == ([], "ProtocolError", None)


@pytest.mark.parametrize("element", [b"~0\r\n", b"*0\r\n", b":1\r\n", b"-E\r\n",
                                     b"$3\r\nabc\r\n"])
def test_reply_memory_is_bounded_by_max_reply_bytes(element):
    """Finding 4: elements absorbed into an incomplete reply count against
    max_reply_bytes, fed in pieces as a peer would send them."""
    limit = 200_000
    p = Parser(max_reply_bytes=limit)
    buf = b"*1000000\r\n"
    with pytest.raises(ProtocolError, match="max_reply_bytes"):
        for _ in range(100_000):
            buf += element * 100
            v, used = p.parse(buf)
            buf = buf[used:]
            assert v is NEED_MORE
    assert not p.partial


def test_max_reply_bytes_is_the_same_on_both_paths():
    wire = b"*500\r\n" + b"*0\r\n" * 500
    exact = (6 + 256) + 500 * (4 + 256)          # wire + AGGREGATE_COST each
    limits = dict(max_reply_bytes=exact - 1)
    assert _outcome("python", wire, **limits) == ([], "ProtocolError", None)
    assert _outcome("hiredis", wire, **limits) == ([], "ProtocolError", None)
    limits = dict(max_reply_bytes=exact)
    ok = _outcome("python", wire, **limits)
    assert ok == ([[[]] * 500], None, 0)
    assert _outcome("hiredis", wire, **limits) == ok


# -- memcache -------------------------------------------------------------------------


@pytest.fixture(params=["native", "python"])
def scanner(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(_proto, "_scan_values", None)
    return request.param


def _mc_norm(r):
    if isinstance(r, Exception):
        return (type(r).__name__, str(r))
    if isinstance(r, MetaResult):
        return ("meta", r.status, sorted(r.flags.items()), r.value)
    return r


def _mc_outcome(chunks, **kw):
    p = ResponseParser(**kw)
    out = []
    try:
        for c in chunks:
            out.extend(_mc_norm(r) for r in p.feed(c))
    except McProtocolError:
        # the replies completed before the broken one still reach their
        # callers (as the client's _on_data does)
        out.extend(_mc_norm(r) for r in p.replies)
        return out, "ProtocolError"
    return out, len(p._buf)


mc_units = st.one_of(
    st.builds(lambda k, f, v, cas: b"VALUE %b %d %d%b\r\n%b\r\n" % (
        k, f, len(v), b" %d" % cas if cas is not None else b"", v),
        st.binary(min_size=1, max_size=8).filter(lambda k: all(c > 32 and c != 127 for c in k)),
        st.integers(0, 2**32 - 1), st.binary(max_size=30),
        st.none() | st.integers(0, 2**64 - 1)),
    st.sampled_from([b"END\r\n", b"STORED\r\n", b"NOT_FOUND\r\n", b"42\r\n",
                     b"STAT pid 1\r\n", b"STAT version 1.6\r\n", b"HD\r\n", b"EN\r\n",
                     b"VA 2 f1\r\nab\r\n", b"MN\r\n", b"SERVER_ERROR oom\r\n",
                     b"VERSION 1.6.21\r\n"]),
)
mc_stream = st.lists(mc_units, min_size=1, max_size=8).map(b"".join)


@_SETTINGS
@given(st.one_of(mc_stream, mutated(mc_stream)), st.booleans())
# a line of exactly max_line bytes cut between its CR and its LF (found by CI)
@example(wire=b"VALUE !!!!!!! 1000000000 0 100\r\n\r\n", tight=True)
# a complete VALUE record whose header line is longer than max_line (the native
# scanner took it; found by hypothesis)
@example(wire=b"VALUE !!!!!!!! 1000000000 0 100\r\n\r\n", tight=True)
def test_memcache_same_outcome_at_every_split_on_both_scanner_paths(wire, tight):
    kw = dict(max_line=30, max_value=20, max_reply_bytes=600) if tight else {}
    outcomes = set()
    for native in (True, False):
        saved = _proto._scan_values
        if not native:
            _proto._scan_values = None
        try:
            for cut in range(len(wire) + 1):
                outcomes.add(repr(_mc_outcome([wire[:cut], wire[cut:]], **kw)))
        finally:
            _proto._scan_values = saved
    assert len(outcomes) == 1, outcomes


def test_memcache_value_records_without_end_are_bounded(scanner):
    """Finding 5: VALUE records without END."""
    p = ResponseParser(max_reply_bytes=100_000)
    with pytest.raises(McProtocolError, match="max_reply_bytes"):
        for _ in range(10_000):
            p.feed(b"VALUE k 0 3\r\nabc\r\n" * 50)


def test_memcache_stat_lines_are_bounded(scanner):
    """Finding 5: endless STAT lines."""
    p = ResponseParser(max_reply_bytes=100_000)
    with pytest.raises(McProtocolError, match="max_reply_bytes"):
        for _ in range(10_000):
            p.feed(b"STAT x 1\r\n" * 50)


def test_memcache_default_reply_bound_applies(scanner):
    p = ResponseParser()
    chunk = b"STAT curr_items 123456\r\n" * 4000
    with pytest.raises(McProtocolError, match=r"max_reply_bytes \(67108864"):
        for _ in range(1000):
            p.feed(chunk)


@pytest.mark.parametrize("wire, what", [
    (b"9" * 5000 + b"\r\n", "numeric reply of 5000 digits"),
    (b"VA " + b"9" * 5000 + b" f\r\n", "bad data length"),
    (b"VALUE k 0 " + b"9" * 5000 + b"\r\n", "bad data length"),
    (b"VALUE k " + b"9" * 5000 + b" 1\r\nx\r\nEND\r\n", "malformed VALUE"),
    (b"VALUE k 0 1 " + b"9" * 5000 + b"\r\nx\r\nEND\r\n", "malformed VALUE"),
    (b"VALUE k 1_0 1\r\nx\r\nEND\r\n", "malformed VALUE"),
    (b"VALUE " + b"k" * 251 + b" 0 1\r\nx\r\nEND\r\n", "longer than 250"),
])
def test_memcache_long_numbers_and_keys_are_protocol_errors(scanner, wire, what):
    """Finding 7: long numeric fields (and VA's length) are ProtocolErrors."""
    with pytest.raises(McProtocolError, match=what):
        ResponseParser(max_line=1 << 20).feed(wire)


def test_memcache_long_line_with_crlf_is_refused_like_one_without(scanner):
    wire = b"STAT " + b"x" * 9000 + b"\r\nEND\r\n"
    assert {repr(_mc_outcome([wire[:i], wire[i:]])) for i in range(0, len(wire), 97)} == \
        {repr(([], "ProtocolError"))}
