"""Smoke tests of the native core that need no helper suite: the loop runs,
backend() reports io_uring, and socket operations really go through the ring."""
import asyncio
import socket

import ringline
from ringline._backend import OPCODE_NUMBERS


def test_backend_reports_io_uring():
    info = ringline.backend()
    assert info.name == "io_uring"
    assert info.kernel
    assert "RECV" in info.opcodes and "SEND" in info.opcodes
    assert info.as_dict()["name"] == "io_uring"


def test_sock_ops_go_through_the_ring():
    loop = ringline.new_event_loop()
    try:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)

        async def main():
            for _ in range(10):
                await loop.sock_sendall(a, b"ping")
                assert await loop.sock_recv(b, 100) == b"ping"

        before = loop._ring_stats()["ops"]
        loop.run_until_complete(main())
        after = loop._ring_stats()["ops"]
        send, recv = OPCODE_NUMBERS["SEND"], OPCODE_NUMBERS["RECV"]
        assert after.get(send, 0) - before.get(send, 0) == 10
        assert after.get(recv, 0) - before.get(recv, 0) == 10
        a.close()
        b.close()
    finally:
        loop.close()
