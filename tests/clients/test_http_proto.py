"""The sans-IO parts of ringline.http, without sockets.

* ``ResponseParser`` driven by a model of the receive accumulator (the
  bytes it does not consume stay buffered and come back with the next
  arrival, as ``with_data`` does) at every split point of generated
  responses (Content-Length, chunked with trailers, close-delimited, HEAD,
  1xx before the final status): the same status, headers, body and trailers
  as parsing in one piece; mutated responses give a result or
  RemoteProtocolError, never another exception.
* Request heads: CR / LF / NUL in names or values, bad methods and targets
  are refused before anything is sent.
* Decoders: gzip, deflate (zlib and raw), br, zstd, stacked, at any split,
  and their caps.
* Headers, URL merging.
* The HTTP/2 glue (``H2Connection._on_data`` over h2) with a server byte
  stream (three streams: a body with trailers, a bodiless 404, a
  Content-Length body) cut at every split point: the same heads, bodies,
  trailers and ends as in one piece.
"""
import gzip
import zlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ringline.http as rh
from ringline.http._config import Bounds
from ringline.http._decode import SUPPORTED, make_decoder
from ringline.http._h1 import ResponseParser, chunk, encode_head
from ringline.http._models import URL, Headers, merge_url

B = Bounds()


def drive(data, splits, head=False, bounds=B):
    """Parse data arriving in pieces cut at ``splits``; returns the parser
    once done (or at the end of input, after feed_eof)."""
    p = ResponseParser(bounds, head)
    buf = b""
    cuts = sorted(set(s for s in splits if 0 < s < len(data))) + [len(data)]
    pos = 0
    for cut in cuts:
        buf += data[pos:cut]
        pos = cut
        while buf and not p.done:
            n = p.feed(memoryview(buf))
            if n == 0:
                break
            buf = buf[n:]
    if not p.done:
        p.feed_eof()
    return p


def result(p):
    return (p.status, p.reason, p.headers, b"".join(p.body), p.trailers, p.keep_alive)


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda s: s.lower() not in ("content-length", "transfer-encoding", "connection",
                                "trailer", "content-encoding"))
value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ;=/", max_size=30).map(
    lambda s: s.strip())


@st.composite
def responses(draw):
    status = draw(st.sampled_from([200, 201, 204, 301, 404, 500]))
    headers = draw(st.lists(st.tuples(token, value), max_size=6))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    interim = draw(st.booleans())
    head = b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b""
    head += b"HTTP/1.1 %d Reason\r\n" % status
    for k, v in headers:
        head += f"{k}: {v}\r\n".encode()
    trailers = []
    if status == 204:
        framing, body = "length", b""
    if framing == "length":
        head += b"Content-Length: %d\r\n\r\n" % len(body)
        wire = head + body
    elif framing == "chunked":
        pieces = draw(st.lists(st.integers(1, 50), max_size=8))
        out, pos = [], 0
        for n in pieces:
            if pos >= len(body):
                break
            out.append(chunk(body[pos:pos + n]))
            pos += n
        if pos < len(body):
            out.append(chunk(body[pos:]))
        trailers = draw(st.lists(st.tuples(token, value), max_size=2))
        tail = b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers) + b"\r\n"
        wire = head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(out) + tail
    else:
        wire = head + b"Connection: close\r\n\r\n" + body
    return wire, status, body if status != 204 else b""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
@example((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n\r\n",
          200, b"hello"))
def test_every_split_point_gives_the_same_response(case):
    wire, status, body = case
    whole = result(drive(wire, []))
    assert whole[0] == status and whole[3] == body
    for i in range(1, len(wire)):
        assert result(drive(wire, [i])) == whole, i
    assert result(drive(wire, range(1, len(wire)))) == whole      # byte by byte


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses(), st.data())
def test_head_responses_stop_at_the_header_section(case, data):
    wire, status, _ = case
    if b"chunked" in wire or b"Content-Length: 0" in wire:
        return
    cut = data.draw(st.integers(0, len(wire)))
    p = drive(wire, [cut], head=True)
    assert p.done and p.status == status and p.body == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses(), st.data())
def test_mutated_responses_fail_cleanly(case, data):
    wire = bytearray(case[0])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    split = data.draw(st.integers(0, len(wire)))
    try:
        drive(bytes(wire), [split])
    except rh.RemoteProtocolError:
        pass


def test_bounds_at_every_split():
    small = Bounds(max_header_bytes=200, max_headers=5)
    wire = b"HTTP/1.1 200 OK\r\n" + b"X-A: " + b"a" * 300 + b"\r\nContent-Length: 0\r\n\r\n"
    for i in range(1, len(wire)):
        with pytest.raises(rh.LimitExceeded, match="max_header_bytes"):
            drive(wire, [i], bounds=small)
    wire = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"\r\n"
    for i in range(1, len(wire)):
        with pytest.raises(rh.LimitExceeded, match="max_headers"):
            drive(wire, [i], bounds=small)


@pytest.mark.parametrize("wire,msg", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"9" * 30 + b"\r\n", "overflow"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabHTTP/1.1 200 OK\r\n", None),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "after 3 of 10"),
])
def test_smuggling_shapes(wire, msg):
    if msg is None:     # bytes after a complete response: kept out, no reuse
        p = drive(wire, [])
        assert p.done and not p.keep_alive and b"".join(p.body) == b"ab"
        return
    with pytest.raises(rh.RemoteProtocolError) as info:
        drive(wire, [])
    assert msg.lower() in str(info.value).lower(), str(info.value)


@pytest.mark.parametrize("name,value", [
    (b"X-A", b"a\r\nInjected: 1"), (b"X-A", b"a\nb"), (b"X-A", b"a\x00b"),
    (b"X A", b"v"), (b"X-A\r\n", b"v"), (b"", b"v"), (b"X:A", b"v"), (b"X-A", b" lead"),
])
def test_request_header_injection_is_refused(name, value):
    with pytest.raises(rh.LocalProtocolError):
        encode_head(b"GET", b"/", [(name, value)])


def test_request_line_checks():
    assert encode_head(b"GET", b"/a?b=c", [(b"Host", b"h")]) == \
        b"GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n"
    for method, target in ((b"G T", b"/"), (b"GET\r\n", b"/"), (b"GET", b"/a b"),
                           (b"GET", b"/\r\nX: y"), (b"GET", b"")):
        with pytest.raises(rh.LocalProtocolError):
            encode_head(method, target, [])


# -- decoders ---------------------------------------------------------------


def _encoders():
    out = {"gzip": gzip.compress, "deflate": zlib.compress,
           "raw-deflate": lambda d: zlib.compress(d)[2:-4]}
    if "br" in SUPPORTED:
        import brotli
        out["br"] = brotli.compress
    if "zstd" in SUPPORTED:
        import zstandard
        out["zstd"] = lambda d: zstandard.ZstdCompressor().compress(d)
    return out


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=5000), st.sampled_from(sorted(_encoders())), st.integers(1, 200))
@example(b"", "raw-deflate", 1)      # the zlib/raw choice needs two bytes
@example(b"x", "deflate", 1)
def test_decoders_at_any_split(data, kind, step):
    enc = _encoders()[kind](data)
    dec = make_decoder("deflate" if kind == "raw-deflate" else kind, 1 << 30, 1000)
    out = b"".join(dec.decode(enc[i:i + step]) for i in range(0, len(enc), step))
    assert out + dec.flush() == data


def test_stacked_encodings_and_caps():
    data = b"abc" * 1000
    enc = gzip.compress(zlib.compress(data))
    dec = make_decoder("deflate, gzip", 1 << 30, 1000)
    assert dec.decode(enc) + dec.flush() == data
    bomb = gzip.compress(b"\0" * (8 << 20))
    with pytest.raises(rh.LimitExceeded, match="max_decode_ratio"):
        make_decoder("gzip", 1 << 30, 100).decode(bomb)
    with pytest.raises(rh.LimitExceeded, match="max_decoded_bytes"):
        make_decoder("gzip", 1 << 20, 100000).decode(bomb)
    with pytest.raises(rh.DecodingError, match="unsupported"):
        make_decoder("compress", 1 << 20, 100)
    with pytest.raises(rh.DecodingError, match="invalid gzip"):
        make_decoder("gzip", 1 << 20, 100).decode(b"not gzip at all")
    assert make_decoder("identity", 1, 1) is None


# -- models -----------------------------------------------------------------


def test_headers():
    h = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X-One", "1")])
    assert h["SET-COOKIE"] == "a=1, b=2" and h.get_list("set-cookie") == ["a=1", "b=2"]
    assert "x-one" in h and "x-two" not in h and h.get("x-two") is None
    h["x-one"] = "uno"
    assert h.multi_items()[-1] == ("x-one", "uno") and len(h) == 2
    raw = Headers._from_raw([(b"Content-Type", b"text/plain"), (b"X", b"\xe9")])
    assert raw["content-type"] == "text/plain" and raw["x"] == "\xe9"
    assert Headers({"A": "1"}) == Headers([("a", "1")])
    with pytest.raises(KeyError):
        h["missing"]


def test_urls():
    base = URL("http://example.test:8080/api/")
    assert str(merge_url(base, "/items", {"a": 1})) == "http://example.test:8080/api/items?a=1"
    assert merge_url(base, "x?y=1", [("z", "2")]).target == "/api/x?y=1&z=2"
    u = URL("https://[::1]/p#frag")
    assert u.origin == ("https", "::1", 443) and u.target == "/p" and u.netloc == "[::1]"
    assert URL("http://h/a/b").join("../c").target == "/c"
    for bad in ("ftp://h/", "http:///nohost", "http://h:99999/"):
        with pytest.raises(rh.LocalProtocolError):
            URL(bad)


def test_timeout_limits_bounds_validation():
    t = rh.Timeout(2.0, read=None)
    assert (t.connect, t.read, t.write, t.pool) == (2.0, None, 2.0, 2.0)
    with pytest.raises(ValueError):
        rh.Timeout(-1)
    with pytest.raises(ValueError):
        rh.Limits(max_connections=0)
    with pytest.raises(ValueError, match="max_headers"):
        rh.Bounds(max_headers=0)


# -- HTTP/2 glue at every split point -------------------------------------------


class _FakeRaw:
    """What H2Connection needs of a Conn, without a socket."""

    def __init__(self):
        self.sent = bytearray()
        self.send_queue_bytes = 0

    def send_nowait(self, data):
        self.sent += data

    def close(self):
        pass

    abort = close


class _FakePool:
    origin = ("http", "127.0.0.1", 80)
    bounds = B

    def _forget(self, c):
        pass

    def _forget_h2_soft(self, c):
        pass


def _h2_exchange(server_script):
    """(client H2Connection driven by hand, the stream objects, server bytes)."""
    import h2.config
    import h2.connection
    from ringline.http._h2conn import H2Connection, _Stream

    async def build():
        c = H2Connection(_FakeRaw(), _FakePool(), B)
        c.h2.initiate_connection()
        c._flush()
        srv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        srv.initiate_connection()
        srv.receive_data(bytes(c.raw.sent))
        c.raw.sent.clear()
        streams = []
        for _ in range(3):
            sid = c.h2.get_next_available_stream_id()
            c.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                    (b":authority", b"x"), (b":path", b"/")], end_stream=True)
            s = _Stream(sid)
            c.streams[sid] = s
            streams.append(s)
        c._flush()
        srv.receive_data(bytes(c.raw.sent))
        server_script(srv, [s.sid for s in streams])
        return c, streams, srv.data_to_send()
    return build


def _script(srv, sids):
    a, b, d = sids
    srv.send_headers(a, [(":status", "200"), ("x-a", "1")])
    srv.send_data(a, b"hello " * 50)
    srv.send_headers(b, [(":status", "404")], end_stream=True)
    srv.send_data(a, b"world", end_stream=False)
    srv.send_headers(a, [("x-trailer", "t")], end_stream=True)
    srv.send_headers(d, [(":status", "200"), ("content-length", "3")])
    srv.send_data(d, b"abc", end_stream=True)


def _outcome(streams):
    return [(s.status, s.headers, b"".join(d for d, _ in s.data), s.trailers, s.ended,
             repr(s.error)) for s in streams]


def test_h2_glue_at_every_split_point():
    import asyncio
    results = {}

    async def main():
        c, streams, wire = await _h2_exchange(_script)()
        c._on_data(memoryview(wire))
        whole = _outcome(streams)
        assert whole[0][0] == 200 and whole[0][2] == b"hello " * 50 + b"world"
        assert whole[0][3] == [(b"x-trailer", b"t")] and whole[1][0] == 404
        assert whole[2][2] == b"abc" and all(o[4] for o in whole)
        for i in range(1, len(wire)):
            c2, s2, w2 = await _h2_exchange(_script)()
            assert w2 == wire
            c2._on_data(memoryview(wire[:i]))
            c2._on_data(memoryview(wire[i:]))
            assert _outcome(s2) == whole, i
        results["n"] = len(wire)

    asyncio.run(main())
    assert results["n"] > 100
