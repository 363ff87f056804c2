"""Property tests of the sans-IO RESP core (ringline.redis._resp).

Valid replies are generated as (wire bytes, expected value) trees covering
every RESP2 and RESP3 type; they must decode to the expected value whole, at
every split point, and in random chunkings (the parser absorbs completed
elements of an unfinished aggregate, so consumed counts must add up).
Invalid input must raise ProtocolError (and only ProtocolError), and every
limit knob must be enforced.
"""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringline.redis import _resp
from ringline.redis._errors import (AskError, MovedError, ProtocolError, ResponseError,
                                    WrongTypeError, error_from_reply)
from ringline.redis._resp import NEED_MORE, Parser, Push, encode_command

# -- generators of valid replies ---------------------------------------------

_line_text = st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_err_text = st.from_regex(r"\A(ERR|WRONGTYPE|MOVED 12 127\.0\.0\.1:7000|ASK 3 h:1|X) [a-z ]{0,20}\Z")


def _bulk(b):
    return b"$%d\r\n%b\r\n" % (len(b), b), b


def _as_value(v):
    return v


scalars = st.one_of(
    _line_text.map(lambda s: (b"+" + s + b"\r\n", s)),
    _err_text.map(lambda s: (b"-" + s.encode() + b"\r\n", error_from_reply(s))),
    st.integers(min_value=-2**63, max_value=2**63 - 1).map(lambda i: (b":%d\r\n" % i, i)),
    st.binary(max_size=300).map(_bulk),
    st.just((b"$-1\r\n", None)),
    st.just((b"_\r\n", None)),
    st.just((b"*-1\r\n", None)),
    st.booleans().map(lambda x: (b"#t\r\n" if x else b"#f\r\n", x)),
    st.floats(allow_nan=False).map(lambda f: (b",%b\r\n" % repr(f).encode(), f)),
    st.integers(min_value=-10**40, max_value=10**40).map(lambda i: (b"(%d\r\n" % i, i)),
    st.binary(max_size=40).map(lambda b: (b"=%d\r\ntxt:%b\r\n" % (len(b) + 4, b), b)),
    _err_text.map(lambda s: (b"!%d\r\n%b\r\n" % (len(s), s.encode()), error_from_reply(s))),
)

_hashable_scalars = st.one_of(
    _line_text.map(lambda s: (b"+" + s + b"\r\n", s)),
    st.integers(min_value=-1000, max_value=1000).map(lambda i: (b":%d\r\n" % i, i)),
    st.binary(max_size=20).map(_bulk),
)


def _aggregates(children):
    def array(items):
        return b"*%d\r\n" % len(items) + b"".join(w for w, _ in items), [v for _, v in items]

    def push(items):
        return b">%d\r\n" % len(items) + b"".join(w for w, _ in items), Push(v for _, v in items)

    def mapping(pairs):
        d = {}
        wire = []
        for (kw, kv), (vw, vv) in pairs:
            if kv in d:
                continue
            d[kv] = vv
            wire.append(kw + vw)
        return b"%%%d\r\n" % len(d) + b"".join(wire), d

    def aset(items):
        seen = {}
        for w, v in items:
            seen.setdefault(v, w)
        return b"~%d\r\n" % len(seen) + b"".join(seen.values()), set(seen)

    def attributed(args):
        (aw, _), (w, v) = args
        return b"|1\r\n" + aw + b"+x\r\n" + w, v

    return st.one_of(
        st.lists(children, max_size=5).map(array),
        st.lists(children, max_size=4).map(push),
        st.lists(st.tuples(_hashable_scalars, children), max_size=4).map(mapping),
        st.lists(_hashable_scalars, max_size=5).map(aset),
        st.tuples(_hashable_scalars, children).map(attributed),
    )


replies = st.recursive(scalars, _aggregates, max_leaves=25)


def _norm(v):
    """A comparable form: errors by class and text, views as bytes, floats exact."""
    if isinstance(v, Exception):
        return ("error", type(v).__name__, str(v))
    if isinstance(v, memoryview):
        return bytes(v)
    if isinstance(v, Push):
        return ("push", [_norm(x) for x in v])
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return ("map", sorted(((repr(_norm(k)), _norm(x)) for k, x in v.items()),
                              key=lambda kv: kv[0]))
    if isinstance(v, set):
        return ("set", sorted(repr(_norm(x)) for x in v))
    if isinstance(v, float):
        return ("float", repr(v))
    if isinstance(v, bool):
        return ("bool", v)
    return v


def _parse_chunked(wire, cuts, parser=None):
    """Feed wire in pieces ending at cuts; return every value parsed."""
    parser = parser or Parser()
    out = []
    buf = b""
    prev = 0
    for cut in sorted(set(cuts)) + [len(wire)]:
        buf += wire[prev:cut]
        prev = cut
        while buf:
            value, used = parser.parse(buf)
            assert 0 <= used <= len(buf)
            buf = buf[used:]
            if value is NEED_MORE:
                assert parser.want >= 1
                break
            out.append(value)
    assert buf == b"" and not parser.partial
    return out


# -- valid replies -------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(replies, min_size=1, max_size=4))
def test_whole_buffer_decodes_to_expected_values(items):
    wire = b"".join(w for w, _ in items)
    values, used = Parser().parse_all(wire)
    assert used == len(wire)
    assert [_norm(v) for v in values] == [_norm(v) for _, v in items]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies)
def test_every_split_point_gives_the_same_values(item):
    wire, expected = item
    want = [_norm(expected)]
    for cut in range(len(wire) + 1):
        assert [_norm(v) for v in _parse_chunked(wire, [cut])] == want, cut


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(replies, min_size=1, max_size=5), st.data())
def test_random_chunkings_give_the_same_values(items, data):
    wire = b"".join(w for w, _ in items)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    got = _parse_chunked(wire, cuts)
    assert [_norm(v) for v in got] == [_norm(v) for _, v in items]


@settings(max_examples=100, deadline=None)
@given(st.lists(replies, min_size=1, max_size=4), st.integers(1, 64))
def test_window_form_matches_whole_parse(items, window):
    """parse_at with a small header window over a view (the client's form)
    yields the same values; want == 0 only asks for a new window."""
    wire = b"".join(w for w, _ in items)
    parser = Parser(zero_copy_min=8, max_line=window)
    view = memoryview(wire)
    out = []
    start = 0
    guard = 0
    while start < len(wire):
        guard += 1
        assert guard < 10 * len(wire) + 10
        w = max(window + 2 + 40, 1)
        sub = view[start:]
        try:
            value, pos = parser.parse_at(bytes(sub[:w]), 0, sub, len(sub))
        except ProtocolError:
            # a simple line longer than the tiny max_line: fine, skip this example
            return
        start += pos
        if value is NEED_MORE:
            assert parser.want == 0 or start == len(wire) or pos > 0
            if parser.want != 0 and pos == 0:
                pytest.fail("asked for network bytes that are already buffered")
            continue
        out.append(value)
    assert [_norm(v) for v in out] == [_norm(v) for _, v in items]


def test_specific_types():
    wire = (b"+OK\r\n-WRONGTYPE Operation against a key\r\n:-42\r\n$3\r\nabc\r\n"
            b"$-1\r\n*-1\r\n_\r\n#t\r\n#f\r\n,3.25\r\n,inf\r\n,-inf\r\n(123456789012345678901234\r\n"
            b"=8\r\ntxt:four\r\n!21\r\nMOVED 5 10.0.0.1:6380\r\n%1\r\n+k\r\n*1\r\n:1\r\n"
            b"~1\r\n+m\r\n>2\r\n+message\r\n+x\r\n|1\r\n+ttl\r\n:3\r\n+value\r\n")
    values, used = Parser().parse_all(wire)
    assert used == len(wire)
    assert values[0] == b"OK"
    assert isinstance(values[1], WrongTypeError)
    assert values[2:5] == [-42, b"abc", None]
    assert values[5] is None and values[6] is None
    assert values[7] is True and values[8] is False
    assert values[9] == 3.25 and values[10] == math.inf and values[11] == -math.inf
    assert values[12] == 123456789012345678901234
    assert values[13] == b"four"
    assert isinstance(values[14], MovedError)
    assert (values[14].slot, values[14].host, values[14].port) == (5, "10.0.0.1", 6380)
    assert values[15] == {b"k": [1]}
    assert values[16] == {b"m"}
    assert isinstance(values[17], Push) and values[17] == [b"message", b"x"]
    assert values[18] == b"value"


def test_attribute_is_kept_aside():
    p = Parser()
    v, used = p.parse(b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.5\r\n*1\r\n:7\r\n")
    assert v == [7]
    assert p.attribute == {b"key-popularity": {b"a": 0.5}}


def test_error_classes_from_reply_text():
    assert type(error_from_reply(b"ERR unknown")) is ResponseError
    e = error_from_reply("ASK 3999 127.0.0.1:6381")
    assert isinstance(e, AskError) and e.address == ("127.0.0.1", 6381) and e.slot == 3999


def test_large_bulk_is_a_zero_copy_view_of_the_buffer():
    payload = bytes(range(256)) * 100
    buf = bytearray(b"$%d\r\n%b\r\n+OK\r\n" % (len(payload), payload))
    p = Parser(zero_copy_min=1024)
    values, used = p.parse_all(memoryview(buf))
    assert used == len(buf)
    big, ok = values
    assert isinstance(big, memoryview) and big == payload and ok == b"OK"
    hdr = len(b"$%d\r\n" % len(payload))
    buf[hdr + 10] ^= 0xFF          # the value is the buffer's memory, not a copy
    assert big[10] == buf[hdr + 10] != payload[10]
    small = Parser(zero_copy_min=1 << 20).parse(memoryview(buf))[0]
    assert type(small) is bytes


def test_need_more_reports_how_much():
    p = Parser()
    v, used = p.parse(b"$10\r\nabc")
    assert v is NEED_MORE and used == 0 and p.want == 5 + 10 + 2
    v, used = p.parse(b"*3\r\n:1\r\n:2\r\n")
    assert v is NEED_MORE and used == len(b"*3\r\n:1\r\n:2\r\n") and p.partial
    v, used = p.parse(b":3\r\n")
    assert v == [1, 2, 3] and used == 4 and not p.partial


# -- invalid input ------------------------------------------------------------

garbage_cases = [
    b"hello\r\n",                 # no type byte
    b"$abc\r\nxyz\r\n",           # bad length
    b"$3\r\nabcXY",               # payload not followed by CRLF
    b"$-2\r\n",                   # negative length other than -1
    b":12a\r\n",                  # bad integer
    b":\r\n",                     # empty integer
    b"*x\r\n",                    # bad aggregate length
    b"#x\r\n",                    # bad boolean
    b",1.2.3\r\n",                # bad double
    b"_x\r\n",                    # null with payload
    b"=2\r\nab\r\n",              # verbatim without format
    b"+OK\n",                     # LF without CR
    b"\x00\x01\x02",              # binary noise
    b"$ 3\r\nabc\r\n",            # whitespace int() would accept
    b"$1_0\r\n0123456789\r\n",    # underscores int() would accept
    b"%-2\r\n",
]


@pytest.mark.parametrize("wire", garbage_cases, ids=repr)
def test_garbage_raises_protocol_error(wire):
    with pytest.raises(ProtocolError) as info:
        Parser().parse_all(wire)
    assert "invalid RESP reply" in str(info.value)


def test_limits_are_enforced():
    with pytest.raises(ProtocolError, match="max_depth"):
        Parser(max_depth=3).parse(b"*1\r\n" * 4 + b":1\r\n")
    assert Parser(max_depth=4).parse(b"*1\r\n" * 4 + b":1\r\n")[0] == [[[[1]]]]
    with pytest.raises(ProtocolError, match="max_bulk"):
        Parser(max_bulk=10).parse(b"$11\r\n")
    with pytest.raises(ProtocolError, match="max_elements"):
        Parser(max_elements=10).parse(b"*11\r\n")
    with pytest.raises(ProtocolError, match="max_line"):
        Parser(max_line=100).parse(b"+" + b"a" * 200)
    # a huge announced array allocates nothing up front
    v, used = Parser(max_elements=1 << 32).parse(b"*4000000000\r\n:1\r\n")
    assert v is NEED_MORE and used == len(b"*4000000000\r\n:1\r\n")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_protocol_error(junk):
    p = Parser(max_depth=8, max_elements=1000, max_bulk=1000)
    try:
        p.parse_all(junk)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"\x00", b"a", b"Z", b"\r", b"\n", b"@", b"{", b"0", b"."]),
       st.binary(max_size=50))
def test_invalid_type_byte_is_a_protocol_error(first, rest):
    with pytest.raises(ProtocolError, match="type byte"):
        Parser().parse(first + rest + b"\r\n")


@settings(max_examples=200, deadline=None)
@given(replies, st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_corrupted_length_never_misparses_silently(item, where, junk):
    """Replacing bytes of a valid reply either still parses (into something),
    waits for more, or raises ProtocolError: never another exception."""
    wire, _ = item
    i = where % len(wire)
    bad = wire[:i] + junk + wire[i + len(junk):]
    try:
        Parser(max_elements=10_000, max_bulk=10_000).parse_all(bad)
    except ProtocolError:
        pass


# -- encoder -------------------------------------------------------------------


@given(st.lists(st.one_of(st.binary(max_size=50), st.text(max_size=20),
                          st.integers(-2**70, 2**70),
                          st.floats(allow_nan=False)), min_size=1, max_size=8))
def test_encoder_round_trips_through_the_parser(args):
    wire = encode_command(args)
    value, used = Parser().parse(wire)
    assert used == len(wire)
    expected = []
    for a in args:
        if isinstance(a, bytes):
            expected.append(a)
        elif isinstance(a, str):
            expected.append(a.encode())
        elif isinstance(a, int):
            expected.append(str(a).encode())
        else:
            assert float(value[len(expected)]) == a
            expected.append(value[len(expected)])
    assert value == expected


def test_encoder_accepts_buffers_and_refuses_bool_and_none():
    assert encode_command((b"SET", bytearray(b"k"), memoryview(b"v"))) == \
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    for bad in (True, None, object()):
        with pytest.raises(TypeError):
            encode_command(("SET", "k", bad))
    assert _resp.encode_commands([("PING",), ("ECHO", "x")]) == \
        b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n"
