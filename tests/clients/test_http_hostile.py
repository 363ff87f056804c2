"""ringline.http against hostile servers (a fake server in a subprocess:
tests/support/http_fake.py): a garbage status line, oversized headers,
a Content-Length lie, smuggling shapes (CL with TE, conflicting CL, chunk
size overflow, NUL in a header), an endless chunked body, endless chunk
extensions and trailers, a decompression bomb, and for HTTP/2 (h2c by prior
knowledge) SETTINGS / PING / empty-DATA floods, an HPACK bomb, RST_STREAM
and GOAWAY.

Each case checks, on the backend the suite runs with: the request ends
within a bound with the error that names the problem (LimitExceeded names
its knob); the client process's peak RSS grows by less than MEMORY_BOUND
while the server streams up to 300 MB; a bystander connection opened before
(another Client's keep-alive connection to the same server) still works
afterwards and is the same connection.
"""
import asyncio
import os
import sys

import pytest

import ringline.http as rh

from support import run
from support.portproc import port_processes
from support.rss import reset_peak_rss, status

MIB = 1 << 20
MEMORY_BOUND = 64 * MIB
CALL_BOUND = 30.0
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fake():
    yield from port_processes(lambda mode: [sys.executable, "-m", "support.http_fake", mode],
                              cwd=TESTS_DIR)


SMALL = rh.Bounds(max_body_bytes=32 * MIB, max_decoded_bytes=32 * MIB)

# mode, error class, text the message must contain, bounds
H1_CASES = [
    ("garbage", rh.RemoteProtocolError, "invalid HTTP/1.1 response", None),
    ("huge_headers", rh.LimitExceeded, "max_header_bytes", None),
    ("huge_header_line", rh.LimitExceeded, "max_header_bytes", None),
    ("many_headers", rh.LimitExceeded, "max_headers", None),
    ("cl_lie", rh.RemoteProtocolError, "after 1000 of 100000 body bytes", None),
    ("cl_te", rh.RemoteProtocolError, "Content-Length", None),
    ("cl_conflict", rh.RemoteProtocolError, "Content-Length", None),
    ("chunk_overflow", rh.RemoteProtocolError, "overflow", None),
    ("header_nul", rh.RemoteProtocolError, "header value", None),
    ("endless_chunked", rh.LimitExceeded, "max_body_bytes", SMALL),
    ("endless_chunk_ext", rh.LimitExceeded, "max_chunk_line", None),
    ("endless_trailer", rh.LimitExceeded, "max_trailer_bytes", None),
    ("gzip_bomb", rh.LimitExceeded, "max_decode_ratio", None),
    ("slow_head", rh.ReadTimeout, "within", None),
]

H2_CASES = [
    ("h2_settings_flood", rh.LimitExceeded, "max_control_frames"),
    ("h2_ping_flood", rh.LimitExceeded, "max_control_frames"),
    ("h2_empty_data_flood", rh.LimitExceeded, "max_control_frames"),
    ("h2_hpack_bomb", rh.LimitExceeded, "max_header_bytes"),
    ("h2_rst", rh.RemoteProtocolError, "reset the stream"),
]


async def _measured(aw):
    base = reset_peak_rss()
    task = asyncio.ensure_future(aw)
    await asyncio.wait([task], timeout=CALL_BOUND)
    if not task.done():
        task.cancel()
        pytest.fail(f"the call hung for {CALL_BOUND} s")
    return task.exception(), status("VmHWM:") - base


def _check(exc, cls, text, growth):
    assert isinstance(exc, cls), repr(exc)
    assert text in str(exc), str(exc)
    assert growth < MEMORY_BOUND, f"peak RSS grew by {growth / MIB:.1f} MiB"


@pytest.mark.parametrize("mode,cls,text,bounds", H1_CASES, ids=[c[0] for c in H1_CASES])
def test_hostile_h1(fake, mode, cls, text, bounds):
    srv = fake(mode)
    url = f"http://127.0.0.1:{srv.port}/"

    async def main():
        async with rh.Client() as bystander:
            r = await bystander.get(url)
            assert r.content == b"ok"
            conn = next(iter(bystander._pools.values())).idle[-1]
            async with rh.Client(bounds=bounds or rh.Bounds(),
                                 timeout=rh.Timeout(10, read=1.0 if mode == "slow_head" else 10)
                                 ) as c:
                exc, growth = await _measured(c.get(url))
                _check(exc, cls, text, growth)
                pool = next(iter(c._pools.values()))
                assert pool.opened == 0 and not pool.idle    # the bad connection is closed
            r = await bystander.get(url)
            assert r.content == b"ok"
            assert next(iter(bystander._pools.values())).idle[-1] is conn
    run(main)


def test_hostile_h1_stream_bounds(fake):
    """Streaming does not lift the body bound."""
    srv = fake("endless_chunked")

    async def main():
        async with rh.Client() as bystander:
            await bystander.get(f"http://127.0.0.1:{srv.port}/")
            async with rh.Client(bounds=SMALL) as c:
                async def consume():
                    async with c.stream("GET", f"http://127.0.0.1:{srv.port}/") as r:
                        async for _ in r.aiter_raw():
                            pass
                exc, growth = await _measured(consume())
                _check(exc, rh.LimitExceeded, "max_body_bytes", growth)
    run(main)


@pytest.mark.parametrize("mode,cls,text", H2_CASES, ids=[c[0] for c in H2_CASES])
def test_hostile_h2(fake, mode, cls, text):
    srv = fake(mode)
    url = f"http://127.0.0.1:{srv.port}/"

    async def main():
        async with rh.Client(http1=False, http2=True) as bystander:
            r = await bystander.get(url)
            assert r.content == b"ok" and r.http_version == "HTTP/2"
            conn = next(iter(bystander._pools.values())).h2conns[0]
            async with rh.Client(http1=False, http2=True) as c:
                exc, growth = await _measured(c.get(url))
                _check(exc, cls, text, growth)
            r = await bystander.get(url)
            assert r.content == b"ok"
            assert next(iter(bystander._pools.values())).h2conns[0] is conn
    run(main)


def test_h2_goaway_before_processing_is_retried(fake):
    """A GOAWAY whose last stream id is below our stream: the server did not
    process the request, so the client sends it again on a new connection
    (the fake's third), and the caller sees only the answer."""
    srv = fake("h2_goaway")
    url = f"http://127.0.0.1:{srv.port}/"

    async def main():
        async with rh.Client(http1=False, http2=True) as bystander:
            assert (await bystander.get(url)).content == b"ok"
            async with rh.Client(http1=False, http2=True) as c:
                r = await asyncio.wait_for(c.post(url, content=b"not idempotent"), CALL_BOUND)
                assert r.content == b"ok"
                pool = next(iter(c._pools.values()))
                assert pool.opened == 1          # the GOAWAY'd connection is gone
    run(main)


def test_h2_goaway_midflight_retries_the_unprocessed_streams(fake):
    """Three requests in flight on one connection; the server answers the
    first and sends GOAWAY naming it as the last stream it processed: the
    first completes, the two above it are sent again on a new connection."""
    srv = fake("h2_goaway_midflight")
    url = f"http://127.0.0.1:{srv.port}/"

    async def main():
        async with rh.Client(http1=False, http2=True) as bystander:
            assert (await bystander.get(url)).content == b"ok"
            async with rh.Client(http1=False, http2=True) as c:
                rs = await asyncio.wait_for(
                    asyncio.gather(*[c.get(url, params={"i": i}) for i in range(3)]),
                    CALL_BOUND)
                assert sorted(r.content for r in rs) == [b"first", b"ok", b"ok"]
                pool = next(iter(c._pools.values()))
                assert pool.opened == 1 and pool.h2conns[0].going_away is False
    run(main)
