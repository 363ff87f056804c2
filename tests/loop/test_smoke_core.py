"""Smoke tests of the native core that need no helper suite: the loop runs,
backend() reports the backend in use (io_uring, or poll on the suite's
RINGLINE_BACKEND=poll pass), and socket operations really go through the
driver's operations (the same opcode counters on both backends)."""
import asyncio
import os
import socket

import ringline
from ringline._loop.backend import OPCODE_NUMBERS


# The suite runs once per backend; without RINGLINE_BACKEND=poll this machine
# must give io_uring (CI has it), so a silent fallback fails here.
EXPECTED = "poll" if os.environ.get("RINGLINE_BACKEND") == "poll" else "io_uring"


def test_backend_reports_the_backend_in_use():
    info = ringline.backend()
    assert info.name == EXPECTED
    assert info.kernel
    assert "RECV" in info.opcodes and "SEND" in info.opcodes
    assert info.as_dict()["name"] == EXPECTED
    if EXPECTED == "io_uring":
        assert info.reason.startswith("io_uring_setup succeeded")
        assert info.setup_flags        # the flags the kernel accepted
    else:
        assert info.reason == "forced by RINGLINE_BACKEND=poll"
        assert info.setup_flags == ()
        # what the poll driver reports unsupported, the core never uses
        assert "SEND_ZC" not in info.opcodes and "READ_MULTISHOT" not in info.opcodes


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
        # sock_sendall tries one non-blocking send() when called, as asyncio
        # does (issue 13): what the socket takes never needs the ring
        assert after.get(send, 0) - before.get(send, 0) == 0
        assert after.get(recv, 0) - before.get(recv, 0) == 10
        a.close()
        b.close()
    finally:
        loop.close()


def test_busy_loop_skips_idle_enters_without_starving_io():
    """With callbacks always ready, an iteration with nothing to submit, no
    completion and no flagged task work skips its zero-timeout enter; I/O
    that arrives meanwhile is still completed (the kernel flags its task
    work), so a task spinning on sleep(0) cannot starve a receive."""
    loop = ringline.new_event_loop()
    try:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)

        async def spinner(stop):
            while not stop.done():
                await asyncio.sleep(0)

        async def main():
            stop = loop.create_future()
            spin = asyncio.ensure_future(spinner(stop))
            recv = asyncio.ensure_future(loop.sock_recv(b, 100))
            for _ in range(200):
                await asyncio.sleep(0)
            a.send(b"arrived while spinning")   # plain send from outside the ring
            data = await asyncio.wait_for(recv, 5)
            stop.set_result(None)
            await spin
            return data

        assert loop.run_until_complete(main()) == b"arrived while spinning"
        stats = loop._ring_stats()
        if stats.get("backend", "io_uring") == "io_uring":
            assert stats["skipped_enters"] > 100
            assert stats["enters"] < stats["iterations"] / 2
        a.close()
        b.close()
    finally:
        loop.close()
