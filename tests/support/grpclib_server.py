"""A real grpclib server for ringline.grpc's interop tests, run in a
subprocess through ``GrpcServer(impl="grpclib")`` of grpc_server.py (the
same start/stop shape: it prints its port on 127.0.0.1 and serves until
its stdin closes; ``python tests/support/grpclib_server.py [CERT KEY]``:
TLS when given the PEM files).

Service ``test.T`` with bytes in and bytes out (a codec that passes
messages through, so no protoc is needed), the subset of grpc_server.py's
methods the interop tests use: Echo (the request; ``x-*`` metadata echoed
as initial metadata and, suffixed ``-t``, as trailing metadata), Abort
(request ``"<CODE> <details>"`` -> that status), Sleep (float(request) s;
counts cancellations), Cancelled (how many Sleep calls saw cancellation),
Deadline (the time the server saw left, or "none"), Count (unary-stream),
Join (stream-unary), Chat (stream-stream).
"""
import asyncio
import os
import sys

from ringline.bench.portchild import serve_until_eof


def _service():
    from grpclib.const import Cardinality, Handler, Status
    from grpclib.exceptions import GRPCError

    cancelled = [0]

    def _md(stream):
        return [(k, v) for k, v in stream.metadata.items() if k.startswith("x-")]

    async def echo(stream):
        req = await stream.recv_message()
        md = _md(stream)
        await stream.send_initial_metadata(metadata=md or None)
        await stream.send_message(req)
        await stream.send_trailing_metadata(metadata=[
            (k + "-t" if not k.endswith("-bin") else k[:-4] + "-t-bin", v) for k, v in md]
            or None)

    async def abort(stream):
        name, _, details = (await stream.recv_message()).decode().partition(" ")
        raise GRPCError(getattr(Status, name), details)

    async def sleep(stream):
        try:
            await asyncio.sleep(float(await stream.recv_message()))
        except asyncio.CancelledError:
            cancelled[0] += 1
            raise
        await stream.send_message(b"slept")

    async def cancelled_count(stream):
        await stream.recv_message()
        await stream.send_message(str(cancelled[0]).encode())

    async def deadline(stream):
        await stream.recv_message()
        d = stream.deadline
        await stream.send_message(b"none" if d is None else b"%.3f" % d.time_remaining())

    async def count(stream):
        for i in range(int(await stream.recv_message())):
            await stream.send_message(b"%d" % i)

    async def join(stream):
        await stream.send_message(b"|".join([r async for r in stream]))

    async def chat(stream):
        async for r in stream:
            await stream.send_message(r)

    C = Cardinality
    table = {"Echo": (echo, C.UNARY_UNARY), "Abort": (abort, C.UNARY_UNARY),
             "Sleep": (sleep, C.UNARY_UNARY),
             "Cancelled": (cancelled_count, C.UNARY_UNARY), "Deadline": (deadline, C.UNARY_UNARY),
             "Count": (count, C.UNARY_STREAM), "Join": (join, C.STREAM_UNARY),
             "Chat": (chat, C.STREAM_STREAM)}

    class T:
        def __mapping__(self):
            return {f"/test.T/{name}": Handler(fn, card, None, None)
                    for name, (fn, card) in table.items()}
    return T()


def _codec():
    from grpclib.encoding.base import CodecBase

    class Raw(CodecBase):
        """Messages are bytes as they are (the content type stays
        application/grpc+proto, which every client sends or accepts)."""
        __content_subtype__ = "proto"

        def encode(self, message, message_type):
            return bytes(message)

        def decode(self, data, message_type):
            return bytes(data)
    return Raw()


def main():
    from grpclib.server import Server
    tls = sys.argv[1:3]
    want = int(os.environ.get("RINGLINE_GRPC_TEST_PORT", "0"))

    async def serve():
        ctx = None
        if tls:
            import ssl
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls[0], tls[1])
            ctx.set_alpn_protocols(["h2"])
        server = Server([_service()], codec=_codec())
        await server.start("127.0.0.1", want, ssl=ctx)
        await serve_until_eof(server._server.sockets[0].getsockname()[1])
        server.close()
        await server.wait_closed()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
