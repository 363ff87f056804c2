"""ringline.grpc: a gRPC client on ringline.http's HTTP/2 connections,
shaped like grpc.aio so that generated stubs work unchanged.

    async with ringline.grpc.Channel("127.0.0.1:50051") as ch:
        stub = helloworld_pb2_grpc.GreeterStub(ch)
        reply = await stub.SayHello(HelloRequest(name="ring"), timeout=1.0)

Layout: ``_wire`` (sans-IO framing, grpc-timeout, metadata, grpc-message),
``_status`` (StatusCode, AioRpcError), ``_rpc`` (one call on one HTTP/2
stream), ``_call`` (grpc.aio's call objects), ``_channel`` (Channel and the
multi-callables). The serializers are the caller's (bytes in, bytes out by
default); nothing of grpcio is imported. See docs/grpc.md.
"""
from ._call import EOF, StreamStreamCall, StreamUnaryCall, UnaryStreamCall, UnaryUnaryCall
from ._channel import Channel, insecure_channel, secure_channel
from ._status import AioRpcError, StatusCode

__all__ = ["Channel", "insecure_channel", "secure_channel", "AioRpcError", "StatusCode", "EOF",
           "UnaryUnaryCall", "UnaryStreamCall", "StreamUnaryCall", "StreamStreamCall"]
