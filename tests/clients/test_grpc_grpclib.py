"""ringline.grpc against grpclib's server (tests/support/grpclib_server.py, a
subprocess on 127.0.0.1): interop with a second, independent HTTP/2 and
gRPC implementation (grpclib on the sans-IO h2 library). Every call kind,
metadata both ways (binary and repeated keys), status codes and details
(grpclib sends errors as trailers-only responses), deadlines (grpclib reads
grpc-timeout and enforces it on its side too), cancellation seen by the
server, many calls on one connection, TLS, and grpclib's lack of
compression (a clear status, not a hang). Runs once per RINGLINE_BACKEND.
"""
import asyncio

import pytest

pytest.importorskip("grpclib")
pytest.importorskip("h2")

import ringline.grpc as rg  # noqa: E402
from support import run  # noqa: E402
from support.grpc_server import GrpcServer, check_status_codes, tls_files  # noqa: E402


@pytest.fixture(scope="module")
def server():
    s = GrpcServer(impl="grpclib")
    yield s
    s.close()


def test_call_kinds_and_metadata(server):
    async def main():
        async with rg.Channel(server.target, metadata=[("x-chan", "c")]) as ch:
            echo = ch.unary_unary("/test.T/Echo")
            assert await echo(b"hello", timeout=5) == b"hello"
            assert await echo(b"") == b""
            call = echo(b"md", metadata=[("x-a", "1"), ("x-a", "2"),
                                          ("x-b-bin", b"\x00\xff\x01")])
            assert await call == b"md"
            assert await call.code() is rg.StatusCode.OK
            init = await call.initial_metadata()
            assert [v for k, v in init if k == "x-a"] == ["1", "2"]
            assert dict(init)["x-b-bin"] == b"\x00\xff\x01" and dict(init)["x-chan"] == "c"
            trail = dict(await call.trailing_metadata())
            assert trail["x-b-t-bin"] == b"\x00\xff\x01"
            count = ch.unary_stream("/test.T/Count", response_deserializer=int)
            assert [n async for n in count(b"5")] == [0, 1, 2, 3, 4]
            assert [n async for n in count(b"0")] == []
            join = ch.stream_unary("/test.T/Join")
            assert await join(iter([b"a", b"b", b"c"])) == b"a|b|c"
            call = join()
            await call.write(b"x")
            await call.write(b"y")
            await call.done_writing()
            assert await call == b"x|y"
            chat = ch.stream_stream("/test.T/Chat")
            assert [m async for m in chat(iter([b"1", b"2"]))] == [b"1", b"2"]
            call = chat()
            for m in (b"p", b"q"):
                await call.write(m)
                assert await call.read() == m
            await call.done_writing()
            assert await call.read() is rg.EOF
            # large messages both ways, many calls on one connection
            assert len(await echo(b"y" * (3 << 20), timeout=20)) == 3 << 20
            replies = await asyncio.gather(*[echo(b"%d" % i, timeout=20) for i in range(300)])
            assert replies[299] == b"299"
            # grpclib allows 100 streams a connection: the calls spread on
            # more connections (at most ringline.max_connections, 4)
            assert 1 <= len(ch._pool.h2conns) <= 4
    run(main)


def test_status_codes_and_details(server):
    async def main():
        async with rg.Channel(server.target) as ch:
            await check_status_codes(ch)
            # grpclib has no compression: a gzip request is a status, not a hang
            with pytest.raises(rg.AioRpcError) as ei:
                await ch.unary_unary("/test.T/Echo")(b"z" * 100, compression="gzip",
                                                     timeout=5)
            assert ei.value.code() in (rg.StatusCode.UNKNOWN, rg.StatusCode.UNIMPLEMENTED,
                                       rg.StatusCode.INTERNAL)
            assert await ch.unary_unary("/test.T/Echo")(b"still ok") == b"still ok"
    run(main)


def test_deadline_and_cancellation(server):
    async def main():
        async with rg.Channel(server.target) as ch:
            dl = ch.unary_unary("/test.T/Deadline")
            assert await dl(b"") == b"none"
            left = float(await dl(b"", timeout=5))
            assert 3.0 < left <= 5.0
            sleep = ch.unary_unary("/test.T/Sleep")
            with pytest.raises(rg.AioRpcError) as ei:
                await sleep(b"5", timeout=0.3)
            assert ei.value.code() is rg.StatusCode.DEADLINE_EXCEEDED
            before = int(await ch.unary_unary("/test.T/Cancelled")(b""))
            call = sleep(b"5")
            task = asyncio.ensure_future(call)
            await asyncio.sleep(0.3)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await call.code() is rg.StatusCode.CANCELLED
            cancelled = ch.unary_unary("/test.T/Cancelled")
            for _ in range(50):         # the server sees the RST_STREAM
                if int(await cancelled(b"")) > before:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("grpclib never saw the cancellation")
            assert await sleep(b"0.01", timeout=5) == b"slept"
    run(main)


def test_tls(tmp_path):
    pytest.importorskip("trustme")
    ca, files = tls_files(tmp_path)
    srv = GrpcServer(tls=files, impl="grpclib")
    try:
        import ssl
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)

        async def main():
            async with rg.Channel(srv.target, tls=ctx) as ch:
                assert await ch.unary_unary("/test.T/Echo")(b"secret", timeout=10) == b"secret"
                assert [m async for m in ch.unary_stream("/test.T/Count")(b"3")] == \
                    [b"0", b"1", b"2"]
        run(main)
    finally:
        srv.close()
