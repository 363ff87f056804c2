"""docs/invariants.md's invariants on the native connection API (the transport-side
tests are in test_invariants.py / test_transport_acceptance_*.py):

3. one send in flight per connection; sends made meanwhile are coalesced into
   the next one; close waits for queued sends (test_native_conn.py).
4. no syscall per send or receive on the io_uring backend: a native
   ping-pong adds only io_uring_enter calls under strace.
1/2/5/7 are shown in test_native_conn.py (guards held until the
notification, stale handles after slot reuse, max_send_queue and the
accumulator cap, fds back to the baseline)."""
import asyncio
import os
import shutil
import socket

import pytest

import ringline
from ringline._conn import api as _native

from support import TOOLS
from support.strace import FORBIDDEN, strace_counts

SEND, SENDMSG = 26, 9


def _sends(loop):
    ops = loop._ring_stats()["ops"]
    return ops.get(SEND, 0) + ops.get(SENDMSG, 0)


def test_sends_of_one_iteration_are_coalesced_into_one_operation():
    async def main():
        loop = asyncio.get_running_loop()
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        conn = await ringline.connect(server.getsockname())
        peer, _ = server.accept()
        before = _sends(loop)
        for i in range(50):
            conn.send_nowait(b"%03d," % i)
        await asyncio.sleep(0)          # one iteration: one flush
        await asyncio.sleep(0.01)
        assert _sends(loop) - before == 1
        peer.settimeout(5)
        data = b""
        while len(data) < 200:
            data += peer.recv(4096)
        assert data == b"".join(b"%03d," % i for i in range(50))
        conn.close()
        peer.close()
        server.close()
    ringline.run(main())


def test_one_send_in_flight_later_sends_wait_and_coalesce():
    async def main():
        loop = asyncio.get_running_loop()
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        conn = await ringline.connect(server.getsockname())
        peer, _ = server.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        await asyncio.sleep(0.01)
        baseline = loop.inflight        # the loop's own ops + this conn's receive
        big = os.urandom(7 << 20)       # more than the socket buffers hold
        first = conn.send(big)
        most = 0
        for i in range(20):
            conn.send_nowait(b"tail%02d" % i)
            await asyncio.sleep(0.002)
            most = max(most, loop.inflight - baseline)
        assert not first.done()         # the peer is not reading: still going
        assert most == 1, f"{most} sends in flight on one connection"
        assert conn.send_queue_bytes >= 20 * 6
        peer.setblocking(False)
        want = len(big) + 20 * 6
        data = bytearray()
        while len(data) < want:
            try:
                data += peer.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                most = max(most, loop.inflight - baseline)
        assert most == 1
        # partial sends continued from the right offset, tails after, in order
        assert bytes(data) == big + b"".join(b"tail%02d" % i for i in range(20))
        assert await first == len(big)
        conn.close()
        peer.close()
        server.close()
    ringline.run(main())


@pytest.mark.skipif(ringline.backend().name != "io_uring", reason="io_uring backend only")
def test_native_pingpong_makes_no_send_recv_syscalls():
    assert shutil.which("strace"), "strace is needed (.ci/run installs it)"
    n = 5_000
    tool = os.path.join(TOOLS, "native_pingpong.py")
    counts, err = strace_counts([tool, str(n)])
    baseline, _ = strace_counts([tool, "0"])
    added = {k: v - baseline.get(k, 0) for k, v in counts.items()}
    print("added syscalls:", sorted(added.items(), key=lambda kv: -kv[1])[:12])
    for name in FORBIDDEN:
        assert added.get(name, 0) <= 10, (name, added.get(name))
    # 4 operations per round trip (2 sends, 2 receives), all through the ring
    assert 0 < added.get("io_uring_enter", 0) <= 2 * n + 100
