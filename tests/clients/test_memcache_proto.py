"""ringline.memcache._proto: the sans-IO memcache core (no sockets here).

Property tests: any valid reply stream gives the same replies however it is
split; truncated streams and garbage raise ProtocolError.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringline.memcache._proto import (ClientError, CommandError, Item, MetaResult,
                                      ProtocolError, ResponseParser, ServerError,
                                      check_key, check_value, encode_meta,
                                      encode_storage, meta_flag_tokens)

from ringline.memcache import _proto


@pytest.fixture(autouse=True, params=["native", "python"])
def scanner(request, monkeypatch):
    """Every parser test runs with the native VALUE scanner and without it."""
    if request.param == "python":
        monkeypatch.setattr(_proto, "_scan_values", None)
    return request.param


def test_the_native_scanner_is_used(scanner):
    p = ResponseParser()
    calls = []
    real = _proto._scan_values
    if real is not None:
        _proto._scan_values = lambda *a: calls.append(1) or real(*a)
    try:
        wire = b"VALUE a 5 1 77\r\nA\r\nVALUE b 0 2\r\nBB\r\nEND\r\n"
        assert p.parse(wire) == len(wire)
        assert p.replies == [[(b"a", 5, b"A", 77), (b"b", 0, b"BB", None)]]
    finally:
        _proto._scan_values = real
    assert bool(calls) == (scanner == "native")


@pytest.mark.parametrize("wire, items", [
    # 20-digit cas (u64 max), 32-bit flags max, a key with high bytes, an
    # empty value: the scanner leaves what it does not take to the Python path
    (b"VALUE k 0 1 18446744073709551615\r\nv\r\nEND\r\n", [(b"k", 0, b"v", 2**64 - 1)]),
    (b"VALUE k 4294967295 0\r\n\r\nEND\r\n", [(b"k", 2**32 - 1, b"", None)]),
    ("VALUE kä 1 2\r\nzz\r\nVALUE x 0 0 0\r\n\r\nEND\r\n".encode(),
     [("kä".encode(), 1, b"zz", None), (b"x", 0, b"", 0)]),
])
def test_value_edge_cases(wire, items):
    p = ResponseParser()
    assert p.parse(wire) == len(wire)
    assert p.replies == [items]


def test_value_records_split_by_a_bad_one():
    p = ResponseParser()
    with pytest.raises(ProtocolError, match="not followed by CRLF"):
        p.parse(b"VALUE a 0 1\r\nA\r\nVALUE b 0 1\r\nBBB\r\nEND\r\n")


# ---------------------------------------------------------------------------
# strategies: a reply as (wire bytes, expected parsed reply)

keys = st.binary(min_size=1, max_size=40).map(
    lambda b: bytes((c % 94) + 33 for c in b))           # printable, no space
values = st.binary(max_size=300) | st.sampled_from([b"", b"\r\n", b"END\r\n",
                                                     b"VALUE x 0 1\r\n"])
u32 = st.integers(0, 2**32 - 1)


@st.composite
def get_reply(draw):
    items = draw(st.lists(st.tuples(keys, u32, values, st.none() | st.integers(0, 2**63)),
                          max_size=4))
    wire = b""
    for k, f, v, cas in items:
        wire += b"VALUE %b %d %d" % (k, f, len(v))
        if cas is not None:
            wire += b" %d" % cas
        wire += b"\r\n" + v + b"\r\n"
    return wire + b"END\r\n", list(items)


@st.composite
def stats_reply(draw):
    stats = draw(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                                 st.from_regex(r"[a-z0-9.: ]{0,20}", fullmatch=True)
                                 .map(str.strip).filter(bool),
                                 min_size=1, max_size=4))
    wire = b"".join(b"STAT %s %s\r\n" % (k.encode(), v.encode()) for k, v in stats.items())
    return wire + b"END\r\n", stats


status = st.sampled_from([b"STORED", b"NOT_STORED", b"EXISTS", b"NOT_FOUND", b"DELETED",
                          b"TOUCHED", b"OK", b"VERSION 1.6.18"]).map(
    lambda s: (s + b"\r\n", s))
number = st.integers(0, 2**64 - 1).map(lambda n: (b"%d\r\n" % n, b"%d" % n))
meta_flag = st.sampled_from(["f5", "t-1", "c123", "kfoo", "O77", "W", "X", "Z", "s3"])


@st.composite
def meta_reply(draw):
    code = draw(st.sampled_from(["VA", "HD", "EN", "NF", "NS", "EX", "MN"]))
    flags = {}
    for f in draw(st.lists(meta_flag, max_size=4)):
        flags[f[0]] = f[1:]
    toks = " ".join(k + v for k, v in flags.items())
    if code == "VA":
        v = draw(values)
        wire = b"VA %d" % len(v) + (b" " + toks.encode() if toks else b"") + b"\r\n" + v + b"\r\n"
        return wire, MetaResult("VA", flags, v)
    wire = code.encode() + (b" " + toks.encode() if toks else b"") + b"\r\n"
    return wire, MetaResult(code, flags)


error = st.sampled_from([(b"ERROR\r\n", CommandError("ERROR")),
                         (b"CLIENT_ERROR bad data chunk\r\n",
                          ClientError("CLIENT_ERROR bad data chunk")),
                         (b"SERVER_ERROR out of memory\r\n",
                          ServerError("SERVER_ERROR out of memory"))])

reply = get_reply() | stats_reply() | status | number | meta_reply() | error
stream = st.lists(reply, min_size=1, max_size=8)


def _norm(r):
    if isinstance(r, Exception):
        return (type(r).__name__, r.line)
    return r


def _expected(replies):
    return [_norm(r) for _, r in replies]


def _parse_chunks(chunks, **kw):
    p = ResponseParser(**kw)
    out = []
    for c in chunks:
        out.extend(p.feed(c))
    p.eof()
    return [_norm(r) for r in out]


# ---------------------------------------------------------------------------
# properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream)
def test_every_split_point_gives_the_same_replies(replies):
    wire = b"".join(w for w, _ in replies)
    expected = _expected(replies)
    assert _parse_chunks([wire]) == expected
    for i in range(len(wire) + 1):
        assert _parse_chunks([wire[:i], wire[i:]]) == expected, i


@settings(max_examples=100, deadline=None)
@given(stream, st.data())
def test_random_chunking_and_byte_at_a_time(replies, data):
    wire = b"".join(w for w, _ in replies)
    expected = _expected(replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    chunks, prev = [], 0
    for c in cuts + [len(wire)]:
        chunks.append(wire[prev:c])
        prev = c
    assert _parse_chunks(chunks) == expected
    assert _parse_chunks([wire[i:i + 1] for i in range(len(wire))]) == expected


@settings(max_examples=100, deadline=None)
@given(stream, st.data())
def test_truncated_stream_raises_protocol_error_at_eof(replies, data):
    wire = b"".join(w for w, _ in replies)
    boundaries = set()
    pos = 0
    for w, _ in replies:
        boundaries.add(pos)
        pos += len(w)
    cut = data.draw(st.integers(1, len(wire) - 1).filter(lambda c: c not in boundaries)
                    if len(wire) > 1 else st.just(0))
    if cut in boundaries:
        return
    p = ResponseParser()
    p.feed(wire[:cut])
    with pytest.raises(ProtocolError, match="closed in the middle of a reply"):
        p.eof()


@settings(max_examples=100, deadline=None)
@given(stream, st.integers(100, 400), st.booleans())
def test_windowed_parse_with_values_from_the_source_buffer(replies, window, views):
    """What the client does with big buffers: headers from a bytes copy of a
    window, data blocks straight from the receive buffer."""
    wire = b"".join(w for w, _ in replies)
    p = ResponseParser()
    data = memoryview(wire)
    while len(data):
        pos = p.parse(bytes(data[:window]), 0, data, views)
        assert pos > 0
        data = data[pos:]
    got = p.replies
    if views:
        for r in got:
            if isinstance(r, list):
                assert all(isinstance(v, memoryview) for _, _, v, _ in r)
            elif isinstance(r, MetaResult) and r.value is not None:
                assert isinstance(r.value, memoryview)

    def as_bytes(r):
        if isinstance(r, list):
            return [(k, f, bytes(v), c) for k, f, v, c in r]
        if isinstance(r, MetaResult) and r.value is not None:
            return MetaResult(r.status, r.flags, bytes(r.value))
        return _norm(r)
    assert [as_bytes(r) for r in got] == _expected(replies)


def test_parse_from_source_reports_need_beyond_the_window():
    p = ResponseParser()
    wire = b"VALUE k 0 100000\r\n" + b"x" * 50000
    assert p.parse(wire[:1000], 0, memoryview(wire)) == 0
    assert p.need == len(b"VALUE k 0 100000\r\n") + 100002
    full = wire + b"x" * 50000 + b"\r\nEND\r\n"
    pos = p.parse(full[:1000], 0, memoryview(full))
    assert pos == len(full) - 5 and p.parse(full[pos:]) == 5
    assert p.replies == [[(b"k", 0, b"x" * 100000, None)]]
    with pytest.raises(ProtocolError, match="not followed by CRLF"):
        ResponseParser().parse(b"VA 3\r\n", 0, memoryview(b"VA 3\r\nabcd\r\n"))


def test_parse_over_a_buffer_reports_need_for_a_partial_value():
    p = ResponseParser()
    wire = b"STORED\r\nVALUE k 0 10\r\n0123"
    pos = p.parse(wire)
    assert pos == len(b"STORED\r\n") and p.replies == [b"STORED"]
    assert p.need == len(b"VALUE k 0 10\r\n") + 12
    p.replies.clear()
    wire = wire[pos:] + b"456789\r\nEND\r\n"
    assert p.parse(wire) == len(wire)
    assert p.replies == [[(b"k", 0, b"0123456789", None)]]


def test_large_multiget_is_parsed_once_across_chunks():
    wire = b"".join(b"VALUE k%d 0 3\r\nabc\r\n" % i for i in range(2000)) + b"END\r\n"
    p = ResponseParser()
    out = []
    for i in range(0, len(wire), 1000):
        out.extend(p.feed(wire[i:i + 1000]))
    assert len(out) == 1 and len(out[0]) == 2000
    assert out[0][1999] == (b"k1999", 0, b"abc", None)


# ---------------------------------------------------------------------------
# garbage


@pytest.mark.parametrize("wire, match", [
    (b"HELLO\r\n", "unexpected reply line"),
    (b"\r\n", "unexpected reply line"),
    (b"VALUE k 0 xx\r\nab\r\nEND\r\n", "bad data length"),
    (b"VALUE k zz 2\r\nab\r\nEND\r\n", "malformed VALUE"),
    (b"VALUE k 0\r\nEND\r\n", "malformed VALUE"),
    (b"VALUE k 0 2\r\nabcd\r\nEND\r\n", "not followed by CRLF"),
    (b"VA 2\r\nabcd\r\n", "not followed by CRLF"),
    (b"VA\r\n", "VA reply without a size"),
    (b"VA -1\r\n", "bad data length"),
    (b"VALUE k 0 1\r\nx\r\nSTORED\r\n", "inside a VALUE reply"),
    (b"STAT a b\r\nVALUE k 0 1\r\nx\r\nEND\r\n", "VALUE line inside a STAT"),
    (b"STAT a b\r\nHD\r\n", "inside a STAT reply"),
    (b"12ab\r\n", "unexpected reply line"),
    (b"VALUE k 0 99999999999\r\n", "exceeds max_value_size"),
    (b"VA 9000000000 f1\r\n", "exceeds max_value_size"),
    (b"x" * 9000, "longer than max_line"),
])
def test_garbage_raises_protocol_error_naming_the_problem(wire, match):
    p = ResponseParser()
    with pytest.raises(ProtocolError, match=match):
        p.feed(wire)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([c for c in range(256) if c not in b"VSNEDTOR0123456789CHM"]),
       st.binary(max_size=60), st.binary(max_size=20))
def test_random_garbage_lines_raise(first, middle, tail):
    with pytest.raises(ProtocolError):
        ResponseParser().feed(bytes([first]) + middle + b"\r\n" + tail)


def test_error_line_ends_a_multiget_and_the_stream_stays_in_sync():
    p = ResponseParser()
    out = p.feed(b"VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory writing get response\r\n"
                 b"STORED\r\n")
    assert isinstance(out[0], ServerError) and out[1] == b"STORED"


def test_value_cap_is_a_knob():
    p = ResponseParser(max_value=4)
    assert p.feed(b"VALUE k 0 4\r\nabcd\r\nEND\r\n") == [[(b"k", 0, b"abcd", None)]]
    with pytest.raises(ProtocolError, match=r"5 bytes exceeds max_value_size \(4 bytes\)"):
        p.feed(b"VALUE k 0 5\r\n")


# ---------------------------------------------------------------------------
# keys, values, encoders


def test_check_key():
    assert check_key("abc") == b"abc"
    assert check_key(b"a" * 250) == b"a" * 250
    assert check_key("ключ") == "ключ".encode()
    assert check_key(bytearray(b"k")) == b"k"
    for bad, match in [(b"", "empty"), (b"a" * 251, "251 bytes long"),
                       (b"a b", "whitespace"), (b"a\r\n", "whitespace"),
                       ("tab\there", "whitespace"), (b"\x00", "control"),
                       (b"del\x7f", "control")]:
        with pytest.raises(ValueError, match=match):
            check_key(bad)
    with pytest.raises(TypeError):
        check_key(42)


def test_check_value():
    for v in (b"x", bytearray(b"x"), memoryview(b"x")):
        assert check_value(v) is v
    with pytest.raises(TypeError, match="encode str"):
        check_value("text")
    with pytest.raises(TypeError):
        check_value(12)


def test_encoders():
    assert encode_storage(b"set", b"k", 3, 10, 5, False) == b"set k 3 10 5\r\n"
    assert encode_storage(b"add", b"k", 0, 0, 1, True) == b"add k 0 0 1 noreply\r\n"
    toks = meta_flag_tokens(b"mg", ["v", b"f", "T30", "O1"])
    assert encode_meta(b"mg", b"k", toks) == b"mg k v f T30 O1\r\n"
    assert encode_meta(b"ms", b"k", ["T0"], 3) == b"ms k 3 T0\r\n"


@pytest.mark.parametrize("cmd, flags, match", [
    (b"ms", ["v"], "unknown flag"),
    (b"mg", ["Z"], "unknown flag"),
    (b"mg", ["T"], "needs a token"),
    (b"mg", ["vx"], "takes no token"),
    (b"mg", ["T3 0"], "whitespace"),
    (b"mg", ["O" + "x" * 33], "opaque token longer"),
    (b"md", [""], "unknown flag"),
])
def test_meta_flags_are_checked(cmd, flags, match):
    with pytest.raises(ValueError, match=match):
        meta_flag_tokens(cmd, flags)


def test_result_types():
    r = MetaResult("VA", {"c": "5", "f": "3", "t": "-1", "k": "a", "O": "9", "W": ""}, b"v")
    assert r.ok and r.hit and r.cas == 5 and r.client_flags == 3 and r.ttl == -1
    assert r.key == "a" and r.opaque == "9" and r.won and not r.stale
    assert not MetaResult("EN").ok and MetaResult("EN").cas is None
    assert Item(b"k", b"v", 1, 2) == Item(b"k", b"v", 1, 2)
