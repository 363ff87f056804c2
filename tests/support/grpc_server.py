"""A real grpcio aio server for ringline.grpc's tests, run in a subprocess
(``python tests/support/grpc_server.py [CERT_CHAIN KEY]``: TLS when given
the PEM files): it prints its port (127.0.0.1, a free one, or the one
``GrpcServer(port=...)`` asks for) and serves until its stdin closes. ``GrpcServer`` starts and
stops it, or grpclib_server.py's server with ``impl="grpclib"``.

Service ``test.T`` with generic bytes handlers (no protoc needed):
Echo (the request; echoes ``x-*`` metadata back as initial metadata and,
suffixed ``-t``, as trailing metadata), Abort (request ``"<CODE> <details>"``
-> context.abort), Sleep (sleeps float(request) s; counts cancellations),
Cancelled (how many Sleep calls saw cancellation), Deadline (the
time the server saw left, or "none"), Gzip (the request x100, sent gzip), Big (``int(request)``
bytes), Count (unary-stream: int(request) messages), Join (stream-unary:
the requests joined), Chat (stream-stream: each request echoed).
"""
import asyncio
import os
import sys

from ringline.bench.portchild import PortChild, serve_until_eof

_CANCELLED = [0]


def _handlers():
    import grpc

    async def echo(req, ctx):
        md = [(k, v) for k, v in ctx.invocation_metadata() if k.startswith("x-")]
        if md:
            await ctx.send_initial_metadata(md)
            ctx.set_trailing_metadata([(k + "-t" if not k.endswith("-bin")
                                        else k[:-4] + "-t-bin", v) for k, v in md])
        return req

    async def abort(req, ctx):
        name, _, details = req.decode().partition(" ")
        await ctx.abort(getattr(grpc.StatusCode, name), details)

    async def sleep(req, ctx):
        try:
            await asyncio.sleep(float(req))
        except asyncio.CancelledError:
            _CANCELLED[0] += 1
            raise
        return b"slept"

    async def cancelled(req, ctx):
        return str(_CANCELLED[0]).encode()

    async def deadline(req, ctx):
        left = ctx.time_remaining()
        return b"none" if left is None else b"%.3f" % left

    async def gzip(req, ctx):
        ctx.set_compression(grpc.Compression.Gzip)
        return req * 100

    async def big(req, ctx):
        return b"x" * int(req)

    async def count(req, ctx):
        for i in range(int(req)):
            yield b"%d" % i

    async def join(it, ctx):
        return b"|".join([r async for r in it])

    async def chat(it, ctx):
        async for r in it:
            yield r

    uu = grpc.unary_unary_rpc_method_handler
    h = {"Echo": uu(echo), "Abort": uu(abort), "Sleep": uu(sleep), "Cancelled": uu(cancelled),
         "Deadline": uu(deadline), "Gzip": uu(gzip),
         "Big": uu(big), "Count": grpc.unary_stream_rpc_method_handler(count),
         "Join": grpc.stream_unary_rpc_method_handler(join),
         "Chat": grpc.stream_stream_rpc_method_handler(chat)}
    return grpc.method_handlers_generic_handler("test.T", h)


def main():
    import grpc
    tls = sys.argv[1:3]
    want = int(os.environ.get("RINGLINE_GRPC_TEST_PORT", "0"))

    async def serve():
        server = grpc.aio.server(options=[("grpc.max_send_message_length", 64 << 20),
                                          ("grpc.max_receive_message_length", 64 << 20),
                                          # the keepalive test pings often
                                          ("grpc.http2.min_ping_interval_without_data_ms", 10),
                                          ("grpc.http2.max_ping_strikes", 0)])
        server.add_generic_rpc_handlers((_handlers(),))
        if tls:
            with open(tls[0], "rb") as f:
                chain = f.read()
            with open(tls[1], "rb") as f:
                key = f.read()
            creds = grpc.ssl_server_credentials([(key, chain)])
            port = server.add_secure_port(f"127.0.0.1:{want}", creds)
        else:
            port = server.add_insecure_port(f"127.0.0.1:{want}")
        await server.start()
        await serve_until_eof(port)
        await server.stop(2)        # GOAWAY; calls in flight get 2 s

    asyncio.run(serve())


_SCRIPTS = {"grpcio": os.path.abspath(__file__),
            "grpclib": os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "grpclib_server.py")}


def tls_files(tmp_path):
    """A trustme CA and a certificate for 127.0.0.1 written to PEM files:
    ``(ca, (chain_path, key_path))``, the pair GrpcServer's ``tls=`` takes."""
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    cert.private_key_pem.write_to_path(str(key))
    return ca, (str(chain), str(key))


class GrpcServer(PortChild):
    """The server above (``impl="grpcio"``) or grpclib_server.py's
    (``impl="grpclib"``) in a subprocess; ``.port``; ``close()`` stops it."""

    def __init__(self, tls=None, port=0, impl="grpcio"):
        extra = list(tls) if tls else []
        env = dict(os.environ, RINGLINE_GRPC_TEST_PORT=str(port))
        super().__init__([sys.executable, _SCRIPTS[impl]] + extra,
                         what="the grpc test server", env=env)


if __name__ == "__main__":
    main()


async def check_status_codes(ch):
    """On channel ``ch`` to either server (grpcio's or grpclib's ``test.T``):
    every status code other than OK comes back from Abort with its details,
    grpc-message percent-encoded UTF-8 survives, an unknown method is
    UNIMPLEMENTED. Shared by the two interop test files."""
    import pytest

    import ringline.grpc as rg
    abort = ch.unary_unary("/test.T/Abort")
    for code in rg.StatusCode:
        if code is rg.StatusCode.OK:
            continue
        with pytest.raises(rg.AioRpcError) as ei:
            await abort(f"{code.name} why {code.value[0]}".encode())
        assert ei.value.code() is code, (code, ei.value)
        assert ei.value.details() == f"why {code.value[0]}"
    with pytest.raises(rg.AioRpcError) as ei:
        await abort("INTERNAL 100% caf\u00e9 \u2603\nnext".encode())
    assert ei.value.details() == "100% caf\u00e9 \u2603\nnext"
    with pytest.raises(rg.AioRpcError) as ei:
        await ch.unary_unary("/test.T/Nope")(b"")
    assert ei.value.code() is rg.StatusCode.UNIMPLEMENTED
