"""ringline.grpc's use of the HTTP/2 layer, against the hostile h2 fake
(tests/support/grpc_fake.py) and hpack itself: a burst of calls made before
the server's SETTINGS arrive stays on one connection; a frame header
announcing more than our max frame size fails the connection at once with
GOAWAY FRAME_SIZE_ERROR (its payload is never awaited); h2's inbound header
validation, run once per distinct block, still fails an invalid head or
trailers with GOAWAY PROTOCOL_ERROR; the caching HPACK
decoder gives what hpack's decoder gives, block for block, decodes a changed
block afresh, never caches a block that changed the dynamic table, and stays
bounded. The suite runs once per RINGLINE_BACKEND, so each test that does
I/O runs on both backends.
"""
import asyncio

import pytest

pytest.importorskip("h2")

import ringline.grpc as rg  # noqa: E402
from support import run  # noqa: E402

CALL_BOUND = 30.0


def test_burst_before_settings_stays_on_one_connection():
    from support.grpc_fake import serve_fake

    async def main():
        async with serve_fake("slow_settings") as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                call = ch.unary_unary("/x.Y/Z")
                # 150 calls: more than the 100 streams a connection opens
                # before the server's SETTINGS (sent 0.3 s late) say 1000
                got = await asyncio.wait_for(
                    asyncio.gather(*[call(b"req", timeout=20) for _ in range(150)]),
                    CALL_BOUND)
                assert got == [b"ok"] * 150
                pool = ch._pool
                assert pool.opened == 1 and len(pool.h2conns) == 1
                assert pool.h2conns[0].settled
                # h2's header validation ran once per distinct block: the
                # head and the trailers
                assert len(pool.h2conns[0].valid) == 2
    run(main)


def _connection_failure(mode, text, goaway):
    """One call to the fake in MODE fails with INTERNAL naming TEXT, and
    the fake receives our GOAWAY with the error code named GOAWAY."""
    from h2.errors import ErrorCodes

    from support import grpc_fake

    async def main():
        grpc_fake.GOAWAYS.clear()
        async with grpc_fake.serve_fake(mode) as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                with pytest.raises(rg.AioRpcError) as ei:
                    await ch.unary_unary("/x.Y/Z")(b"req", timeout=CALL_BOUND)
                assert ei.value.code() is rg.StatusCode.INTERNAL, ei.value
                assert text in ei.value.details(), ei.value
                for _ in range(100):
                    if grpc_fake.GOAWAYS:
                        break
                    await asyncio.sleep(0.05)
                assert grpc_fake.GOAWAYS == [getattr(ErrorCodes, goaway)]
    run(main)


def test_overlong_frame_fails_the_connection_at_once():
    # the fake sends 100 bytes of the 1 MiB frame and waits: a client that
    # buffered the frame would wait for the deadline (CALL_BOUND)
    _connection_failure("big_frame", "1048576 bytes announced", "FRAME_SIZE_ERROR")


@pytest.mark.parametrize("mode", ["bad_header", "pseudo_trailers"])
def test_invalid_header_block_fails_the_connection(mode):
    # h2's inbound validation runs in H2Connection._validate (once per
    # distinct block): an invalid head or trailers fail the connection
    _connection_failure(mode, "protocol error", "PROTOCOL_ERROR")


def _pair():
    import hpack

    from ringline.grpc._hpack import CachingDecoder
    return hpack.Encoder(), CachingDecoder(hpack.Decoder()), hpack.Decoder()


def test_caching_decoder_matches_hpack_and_reuses_blocks():
    enc, dec, plain = _pair()
    head = [(b":status", b"200"), (b"content-type", b"application/grpc"),
            (b"grpc-accept-encoding", b"identity,gzip")]
    trailers = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
    blocks = []
    for _ in range(5):
        for hs in (head, trailers):
            b = enc.encode(hs, huffman=True)
            blocks.append(b)
            assert dec.decode(b, raw=True) == plain.decode(b, raw=True) == hs
    # the first head and trailers inserted into the table: never cached;
    # the later ones (references to it) are, once each
    assert blocks[0] not in dec.cache and blocks[1] not in dec.cache
    assert set(dec.cache) == {blocks[2], blocks[3]}
    # a changed block is decoded afresh (and changes the table: the cache
    # is emptied, the old bytes might mean something else now)
    changed = [(b"grpc-status", b"13"), (b"grpc-message", b"boom")]
    b = enc.encode(changed)
    assert dec.decode(b, raw=True) == plain.decode(b, raw=True) == changed
    assert dec.cache == {}
    b2 = enc.encode(head)
    assert dec.decode(b2, raw=True) == plain.decode(b2, raw=True) == head


def test_caching_decoder_same_bytes_new_meaning():
    # the same bytes (an index into the dynamic table) after the table
    # changed mean another header: the cache must not answer for them
    import hpack
    from ringline.grpc._hpack import CachingDecoder
    dec = CachingDecoder(hpack.Decoder())
    insert = hpack.Encoder().encode([(b"x-a", b"1")])
    ref = bytes([0x80 | 62])               # dynamic table entry 1
    assert dec.decode(insert, raw=True) == [(b"x-a", b"1")]
    assert dec.decode(ref, raw=True) == [(b"x-a", b"1")]
    assert ref in dec.cache
    assert dec.decode(hpack.Encoder().encode([(b"x-b", b"2")]), raw=True) == [(b"x-b", b"2")]
    assert dec.decode(ref, raw=True) == [(b"x-b", b"2")]
    # a table size update alone (no eviction) also empties the cache
    assert dec.decode(ref, raw=True) == [(b"x-b", b"2")] and ref in dec.cache
    assert dec.decode(bytes([0x3F, 0xE1, 0x0F]), raw=True) == []     # size 2048
    assert dec.cache == {}


def test_caching_decoder_bounded_and_passes_settings():
    from ringline.grpc._hpack import _DECODE_BLOCK_MAX, _DECODE_CACHE_MAX
    _, dec, plain = _pair()
    from ringline.grpc._hpack import encode_field
    for i in range(_DECODE_CACHE_MAX * 3):
        b = encode_field(b"grpc-message", b"m%d" % i)     # no indexing
        assert dec.decode(b, raw=True) == [(b"grpc-message", b"m%d" % i)]
        assert len(dec.cache) <= _DECODE_CACHE_MAX
    big = encode_field(b"x-big", b"v" * _DECODE_BLOCK_MAX)
    assert dec.decode(big, raw=True) == [(b"x-big", b"v" * _DECODE_BLOCK_MAX)]
    assert big not in dec.cache
    # h2 sets the bounds through the wrapper; the wrapped decoder enforces them
    dec.max_header_list_size = 100
    assert dec.inner.max_header_list_size == 100 and dec.max_header_list_size == 100
    with pytest.raises(Exception) as ei:
        dec.decode(big, raw=True)
    assert "header" in type(ei.value).__name__.lower() or "hpack" in type(ei.value).__module__
