"""ringline.grpc against a real grpcio aio server (tests/support/grpc_server.py,
a subprocess on 127.0.0.1) and its sans-IO wire format: every call kind,
metadata both ways, every status code, deadlines (sent as grpc-timeout and
enforced locally with RST_STREAM), cancellation seen by the server, 200
concurrent calls on one channel, the receive bound, gzip both ways, and a
hostile Deframer input (length lie, bomb, bad flag). The suite runs once
per RINGLINE_BACKEND, so each test runs on both backends.
"""
import asyncio
import collections
import gzip

import pytest

pytest.importorskip("grpc")
pytest.importorskip("h2")

import ringline.grpc as rg  # noqa: E402
from ringline.grpc._wire import (Deframer, decode_message, encode_metadata,  # noqa: E402
                                 encode_timeout, frame)
from support import free_port, run  # noqa: E402
from support.grpc_server import GrpcServer, check_status_codes, tls_files  # noqa: E402


@pytest.fixture(scope="module")
def server():
    s = GrpcServer()
    yield s
    s.close()


def test_unary_and_metadata_both_ways(server):
    async def main():
        async with rg.Channel(server.target, metadata=[("x-chan", "c")]) as ch:
            echo = ch.unary_unary("/test.T/Echo")
            assert await echo(b"hello", timeout=5) == b"hello"
            assert await echo(b"") == b""
            call = echo(b"md", metadata=[("x-a", "1"), ("x-b-bin", b"\x00\xff\x01")])
            assert await call == b"md"
            assert await call.code() is rg.StatusCode.OK
            assert await call.details() == ""
            assert call.done() and not call.cancelled()
            init = dict(await call.initial_metadata())
            assert init["x-a"] == "1" and init["x-b-bin"] == b"\x00\xff\x01"
            assert init["x-chan"] == "c"          # the channel's metadata went too
            trail = dict(await call.trailing_metadata())
            assert trail["x-a-t"] == "1" and trail["x-b-t-bin"] == b"\x00\xff\x01"
            # serializers are the caller's
            up = ch.unary_unary("/test.T/Echo", request_serializer=str.encode,
                                response_deserializer=bytes.decode)
            assert await up("text") == "text"
    run(main)


def test_every_status_code(server):
    async def main():
        async with rg.Channel(server.target) as ch:
            await check_status_codes(ch)
            assert await ch.unary_unary("/test.T/Echo")(b"still ok") == b"still ok"
    run(main)


def test_deadline_sent_and_enforced(server):
    async def main():
        loop = asyncio.get_running_loop()
        async with rg.Channel(server.target) as ch:
            left = float(await ch.unary_unary("/test.T/Deadline")(b"", timeout=5.0))
            assert 3.0 < left <= 5.0
            assert await ch.unary_unary("/test.T/Deadline")(b"") == b"none"
            cancelled = ch.unary_unary("/test.T/Cancelled")
            before = int(await cancelled(b""))
            t0 = loop.time()
            call = ch.unary_unary("/test.T/Sleep")(b"10", timeout=0.3)
            with pytest.raises(rg.AioRpcError) as ei:
                await call
            assert ei.value.code() is rg.StatusCode.DEADLINE_EXCEEDED
            assert loop.time() - t0 < 3.0
            assert await call.code() is rg.StatusCode.DEADLINE_EXCEEDED
            # the server saw the call go (RST_STREAM, or its own deadline)
            for _ in range(100):
                if int(await cancelled(b"")) > before:
                    break
                await asyncio.sleep(0.05)
            assert int(await cancelled(b"")) > before
            # a streaming call's deadline covers every read
            with pytest.raises(rg.AioRpcError) as ei:
                async for _ in ch.stream_stream("/test.T/Chat")(timeout=0.3):
                    pass
            assert ei.value.code() is rg.StatusCode.DEADLINE_EXCEEDED
    run(main)


def test_cancel_seen_by_server(server):
    async def main():
        async with rg.Channel(server.target) as ch:
            cancelled = ch.unary_unary("/test.T/Cancelled")
            before = int(await cancelled(b""))
            call = ch.unary_unary("/test.T/Sleep")(b"10")
            task = asyncio.ensure_future(call)
            await asyncio.sleep(0.3)
            assert call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert call.cancelled() and call.done()
            assert await call.code() is rg.StatusCode.CANCELLED
            assert not call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call                  # awaiting it again: still cancelled
            # a call cancelled before it started sends nothing
            early = ch.unary_unary("/test.T/Sleep")(b"10")
            assert early.cancel()
            with pytest.raises(asyncio.CancelledError):
                await early
            stream = ch.unary_stream("/test.T/Count")(b"1000000")
            assert await stream.read() == b"0"
            assert stream.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stream.read()
            for _ in range(100):
                if int(await cancelled(b"")) > before:
                    break
                await asyncio.sleep(0.05)
            assert int(await cancelled(b"")) == before + 1
            # cancelling the awaiting task cancels the call the same way
            call = ch.unary_unary("/test.T/Sleep")(b"10")
            task = asyncio.ensure_future(call)
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert call.cancelled()
            for _ in range(100):
                if int(await cancelled(b"")) > before + 1:
                    break
                await asyncio.sleep(0.05)
            assert int(await cancelled(b"")) == before + 2
    run(main)


def test_1000_concurrent_calls_on_one_channel(server):
    async def main():
        async with rg.Channel(server.target) as ch:
            echo = ch.unary_unary("/test.T/Echo")
            replies = await asyncio.gather(*[echo(b"%d" % i, timeout=30) for i in range(1000)])
            assert replies == [b"%d" % i for i in range(1000)]
            assert ch._pool.opened <= 2
            replies = await asyncio.gather(*[echo(b"%d" % i) for i in range(200)])
            assert replies == [b"%d" % i for i in range(200)]
    run(main)


def test_message_size_bounds(server):
    async def main():
        async with rg.Channel(server.target) as ch:
            big = ch.unary_unary("/test.T/Big")
            assert len(await big(b"%d" % (4 << 20))) == 4 << 20        # exactly the bound
            with pytest.raises(rg.AioRpcError) as ei:
                await big(b"%d" % ((4 << 20) + 1))
            assert ei.value.code() is rg.StatusCode.RESOURCE_EXHAUSTED
            assert "larger than max" in ei.value.details()
            assert await ch.unary_unary("/test.T/Echo")(b"after") == b"after"
            # large messages both ways
            payload = bytes(range(256)) * (12 << 10)        # 3 MiB
            assert await ch.unary_unary("/test.T/Echo")(payload) == payload
        opts = [("grpc.max_receive_message_length", 8 << 20),
                ("grpc.max_send_message_length", 1000)]
        async with rg.Channel(server.target, options=opts) as ch:
            assert len(await ch.unary_unary("/test.T/Big")(b"%d" % (6 << 20))) == 6 << 20
            with pytest.raises(rg.AioRpcError) as ei:
                await ch.unary_unary("/test.T/Echo")(b"x" * 1001)
            assert ei.value.code() is rg.StatusCode.RESOURCE_EXHAUSTED
    run(main)


def test_streaming_calls(server):
    async def main():
        async with rg.Channel(server.target) as ch:
            count = ch.unary_stream("/test.T/Count", response_deserializer=int)
            assert [m async for m in count(b"50")] == list(range(50))
            call = count(b"2")
            assert await call.read() == 0 and await call.read() == 1
            assert await call.read() is rg.EOF
            assert await call.code() is rg.StatusCode.OK
            assert [m async for m in count(b"0")] == []

            join = ch.stream_unary("/test.T/Join")
            assert await join(iter([b"a", b"b", b"c"])) == b"a|b|c"

            async def agen():
                for i in range(3):
                    await asyncio.sleep(0.01)
                    yield b"%d" % i
            assert await join(agen()) == b"0|1|2"
            call = join()
            await call.write(b"w1")
            await call.write(b"w2")
            await call.done_writing()
            assert await call == b"w1|w2"

            chat = ch.stream_stream("/test.T/Chat")
            assert [m async for m in chat(iter([b"x", b"y"]))] == [b"x", b"y"]
            call = chat()
            for i in range(5):          # ping-pong on one stream
                await call.write(b"%d" % i)
                assert await call.read() == b"%d" % i
            await call.done_writing()
            assert await call.read() is rg.EOF
    run(main)


def test_gzip_both_ways(server):
    async def main():
        async with rg.Channel(server.target, compression="gzip") as ch:
            assert await ch.unary_unary("/test.T/Echo")(b"z" * 10000) == b"z" * 10000
        async with rg.Channel(server.target) as ch:
            assert await ch.unary_unary("/test.T/Gzip")(b"ab") == b"ab" * 100
            assert await ch.unary_unary("/test.T/Echo")(b"q", compression="gzip") == b"q"
    run(main)


def test_server_restart_reconnects():
    first = GrpcServer()
    port = first.port
    second = None
    try:
        async def main():
            nonlocal second
            async with rg.Channel(first.target) as ch:
                echo = ch.unary_unary("/test.T/Echo")
                assert await echo(b"1", timeout=10) == b"1"
                sleeper = asyncio.ensure_future(ch.unary_unary("/test.T/Sleep")(b"30"))
                await asyncio.sleep(0.2)
                await asyncio.get_running_loop().run_in_executor(None, first.close)
                # the call in flight fails (GOAWAY then the connection's end)
                with pytest.raises(rg.AioRpcError) as ei:
                    await sleeper
                assert ei.value.code() in (rg.StatusCode.UNAVAILABLE, rg.StatusCode.INTERNAL,
                                           rg.StatusCode.CANCELLED), ei.value
                with pytest.raises(rg.AioRpcError) as ei:
                    await echo(b"down", timeout=10)
                assert ei.value.code() is rg.StatusCode.UNAVAILABLE
                second = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: GrpcServer(port=port))
                assert await echo(b"2", timeout=10) == b"2"     # a new connection
        run(main)
    finally:
        first.close()
        if second is not None:
            second.close()


def test_unreachable_target_is_unavailable():
    async def main():
        async with rg.Channel(f"127.0.0.1:{free_port()}") as ch:
            with pytest.raises(rg.AioRpcError) as ei:
                await ch.unary_unary("/test.T/Echo")(b"", timeout=5)
            assert ei.value.code() is rg.StatusCode.UNAVAILABLE
        with pytest.raises(rg.AioRpcError):
            ch.unary_unary("/test.T/Echo")(b"")          # closed channel
    run(main)


# -- the wire format, sans-IO --

def test_deframer_bounds_and_lies():
    d = Deframer(100, None)
    msgs = d.feed(frame(b"a") + frame(b"bb")[:3])
    assert msgs == [b"a"] and d.partial()
    assert d.feed(frame(b"bb")[3:]) == [b"bb"] and not d.partial()
    # a length past the bound is refused from the prefix, before its bytes
    with pytest.raises(rg.AioRpcError) as ei:
        Deframer(100, None).feed(b"\x00\xff\xff\xff\xff")
    assert ei.value.code() is rg.StatusCode.RESOURCE_EXHAUSTED
    # a length lie: the body ends inside the message
    d = Deframer(100, None)
    assert d.feed(b"\x00\x00\x00\x00\x50" + b"x" * 10) == [] and d.partial()
    with pytest.raises(rg.AioRpcError) as ei:
        Deframer(100, None).feed(b"\x02\x00\x00\x00\x00")
    assert ei.value.code() is rg.StatusCode.INTERNAL
    # compressed without grpc-encoding; an unknown encoding
    with pytest.raises(rg.AioRpcError) as ei:
        Deframer(100, None).feed(frame(b"x", "gzip"))
    assert ei.value.code() is rg.StatusCode.INTERNAL
    with pytest.raises(rg.AioRpcError) as ei:
        Deframer(100, b"snappy").feed(frame(b"x", "gzip"))
    assert ei.value.code() is rg.StatusCode.UNIMPLEMENTED
    # a decompression bomb stops at the bound
    bomb = gzip.compress(b"\x00" * (10 << 20))
    assert len(bomb) < 20000
    with pytest.raises(rg.AioRpcError) as ei:
        Deframer(1 << 20, b"gzip").feed(b"\x01" + len(bomb).to_bytes(4, "big") + bomb)
    assert ei.value.code() is rg.StatusCode.RESOURCE_EXHAUSTED
    assert Deframer(100, b"gzip").feed(frame(b"ok", "gzip")) == [b"ok"]


def test_wire_helpers():
    assert encode_timeout(1.5) == b"1500000u"
    assert encode_timeout(0.000001) == b"1000n"
    assert encode_timeout(0) == b"1n"
    assert encode_timeout(10 ** 6) == b"1000000S"
    assert encode_timeout(10 ** 9) == b"16666667M"
    assert len(encode_timeout(1e12)) <= 9
    assert decode_message(b"a%25b%E2%98%83") == "a%b\u2603"
    assert encode_metadata([("K-bin", b"\xff")]) == [(b"k-bin", b"/w")]
    for bad in [("grpc-x", "v"), ("a b", "v"), ("content-type", "v"), ("x", "\n")]:
        with pytest.raises(ValueError):
            encode_metadata([bad])


_PROTO = """
syntax = "proto3";
package test;
message Msg { string text = 1; repeated int64 nums = 2; }
service T { rpc Echo (Msg) returns (Msg); }
"""


def test_generated_stub_unchanged(server, tmp_path, monkeypatch):
    # a stub compiled at test time by grpcio-tools runs on a ringline Channel
    protoc = pytest.importorskip("grpc_tools.protoc")
    (tmp_path / "ringtest.proto").write_text(_PROTO)
    assert protoc.main(["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}",
                        f"--grpc_python_out={tmp_path}", str(tmp_path / "ringtest.proto")]) == 0
    monkeypatch.syspath_prepend(str(tmp_path))
    import ringtest_pb2
    import ringtest_pb2_grpc

    async def main():
        async with rg.Channel(server.target) as ch:
            stub = ringtest_pb2_grpc.TStub(ch)
            reply = await stub.Echo(ringtest_pb2.Msg(text="ring", nums=[1, 2, 3]), timeout=5)
            assert reply.text == "ring" and list(reply.nums) == [1, 2, 3]
            call = stub.Echo(ringtest_pb2.Msg(text="md"), metadata=[("x-k", "v")])
            assert (await call).text == "md"
            assert dict(await call.trailing_metadata())["x-k-t"] == "v"
    run(main)


@pytest.mark.parametrize("mode,code,text", [
    ("length_lie", rg.StatusCode.INTERNAL, "inside a message"),
    ("huge_length", rg.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    ("no_trailers", rg.StatusCode.INTERNAL, "without trailers"),
    ("bomb", rg.StatusCode.RESOURCE_EXHAUSTED, "decompressed message larger"),
    ("html", rg.StatusCode.UNKNOWN, "content-type"),
    ("http503", rg.StatusCode.UNAVAILABLE, "503"),
    ("rst", rg.StatusCode.INTERNAL, "INTERNAL_ERROR"),
    ("two_messages", rg.StatusCode.UNIMPLEMENTED, "more than one"),
    ("garbage", None, ""),
])
def test_hostile_server(mode, code, text):
    from support.grpc_fake import serve_fake

    async def main():
        async with serve_fake(mode) as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                with pytest.raises(rg.AioRpcError) as ei:
                    await ch.unary_unary("/x.Y/Z")(b"req", timeout=10)
                if code is None:
                    assert ei.value.code() in (rg.StatusCode.INTERNAL,
                                               rg.StatusCode.UNAVAILABLE), ei.value
                else:
                    assert ei.value.code() is code, ei.value
                    assert text in ei.value.details(), ei.value
    run(main)


def test_tls(tmp_path):
    pytest.importorskip("trustme")
    ca, files = tls_files(tmp_path)
    srv = GrpcServer(tls=files)
    try:
        import ssl
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)

        async def main():
            async with rg.Channel(srv.target, tls=ctx) as ch:
                assert await ch.unary_unary("/test.T/Echo")(b"secret", timeout=10) == b"secret"
                assert [m async for m in ch.unary_stream("/test.T/Count")(b"3")] == \
                    [b"0", b"1", b"2"]
            # a client that does not trust the server's CA: UNAVAILABLE
            async with rg.Channel(srv.target, tls=True) as ch:
                with pytest.raises(rg.AioRpcError) as ei:
                    await ch.unary_unary("/test.T/Echo")(b"x", timeout=10)
                assert ei.value.code() is rg.StatusCode.UNAVAILABLE
        run(main)
    finally:
        srv.close()


def test_wait_for_ready():
    port = free_port()
    srv = None
    try:
        async def main():
            nonlocal srv
            loop = asyncio.get_running_loop()
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                echo = ch.unary_unary("/test.T/Echo")
                # without it: UNAVAILABLE at once; with it and a deadline: DEADLINE_EXCEEDED
                with pytest.raises(rg.AioRpcError) as ei:
                    await echo(b"", timeout=5)
                assert ei.value.code() is rg.StatusCode.UNAVAILABLE
                with pytest.raises(rg.AioRpcError) as ei:
                    await echo(b"", timeout=0.5, wait_for_ready=True)
                assert ei.value.code() is rg.StatusCode.DEADLINE_EXCEEDED
                # the server comes up while the call waits
                call = asyncio.ensure_future(echo(b"ready", timeout=20, wait_for_ready=True))
                await asyncio.sleep(0.3)
                srv = await loop.run_in_executor(None, lambda: GrpcServer(port=port))
                assert await call == b"ready"
        run(main)
    finally:
        if srv is not None:
            srv.close()


def test_keepalive(server):
    from support.grpc_fake import serve_fake
    opts = [("grpc.keepalive_time_ms", 100), ("grpc.keepalive_timeout_ms", 300)]

    async def main():
        loop = asyncio.get_running_loop()
        # answered pings keep a slow call alive
        async with rg.Channel(server.target, options=opts) as ch:
            assert await ch.unary_unary("/test.T/Sleep")(b"0.6", timeout=10) == b"slept"
            assert ch._ka_task is not None and not ch._ka_task.done()
        assert ch._ka_task.cancelled() or ch._ka_task.done()
        # a server that went silent: the call without a deadline fails after
        # keepalive_time + keepalive_timeout, not never
        async with serve_fake("silent") as port:
            async with rg.Channel(f"127.0.0.1:{port}", options=opts) as ch:
                t0 = loop.time()
                with pytest.raises(rg.AioRpcError) as ei:
                    await ch.unary_unary("/x.Y/Z")(b"")
                assert ei.value.code() is rg.StatusCode.UNAVAILABLE
                assert "keepalive" in ei.value.details()
                assert loop.time() - t0 < 5
    run(main)


def test_goaway_lets_calls_in_flight_finish():
    srv = GrpcServer()
    try:
        async def main():
            loop = asyncio.get_running_loop()
            async with rg.Channel(srv.target) as ch:
                echo = ch.unary_unary("/test.T/Echo")
                assert await echo(b"up", timeout=10) == b"up"
                call = asyncio.ensure_future(ch.unary_unary("/test.T/Sleep")(b"0.8", timeout=10))
                await asyncio.sleep(0.3)
                closer = loop.run_in_executor(None, srv.close)   # GOAWAY, 2 s of grace
                assert await call == b"slept"
                await closer
                with pytest.raises(rg.AioRpcError) as ei:
                    await echo(b"", timeout=5)
                assert ei.value.code() is rg.StatusCode.UNAVAILABLE
        run(main)
    finally:
        srv.close()


def test_static_hpack_encoder_round_trips():
    # ringline.grpc's request heads are encoded without the dynamic table
    # (grpc/_hpack.py); hpack's decoder reads them back exactly, a pending
    # table size change goes out first, and the cache stays bounded
    import hpack
    from ringline.grpc._hpack import _CACHE_MAX, StaticEncoder
    enc = StaticEncoder(hpack.Encoder())
    dec = hpack.Decoder()
    heads = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:5"),
             (b":path", b"/test.T/Echo"), (b"content-type", b"application/grpc"),
             (b"te", b"trailers"), (b"user-agent", b"u" * 300), (b"x-k" * 50, b"v" * 127),
             (b"authorization", b"secret"), hpack.NeverIndexedHeaderTuple(b"x-pw", b"pw")]
    for _ in range(3):
        assert dec.decode(enc.encode(heads), raw=True) == heads
    assert dec.header_table.dynamic_entries == collections.deque()
    enc.header_table_size = 1024       # the server's SETTINGS changed the table
    block = enc.encode(heads)
    assert block[0] & 0xE0 == 0x20     # a dynamic table size update first
    assert dec.decode(block, raw=True) == heads
    assert dec.decode(enc.encode(heads), raw=True) == heads
    for i in range(_CACHE_MAX + 10):
        assert dec.decode(enc.encode([(b"grpc-timeout", b"%dm" % i)]), raw=True) == \
            [(b"grpc-timeout", b"%dm" % i)]
    assert len(enc.cache) <= _CACHE_MAX
