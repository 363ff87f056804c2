"""The poll backend's driver (_polldrv.h) at its edges: what emulating io_uring
completions with epoll has to get right beyond the shared suite. These run on
a loop forced to backend="poll" on both passes of the suite.

- an operation waiting for readiness costs nothing (no busy loop);
- a cancelled operation completes with ECANCELED and never afterwards (the
  bytes it would have read stay in the socket);
- a receive and a blocked send waiting on the same fd share one registration;
- a fd number closed by the user and reused by a new socket works (the new
  file is registered afresh) and a registration that outlives its fd (the
  file kept open by a dup) is dropped instead of firing forever;
- UDP through the multishot RECVMSG emulation (io_uring_recvmsg_out layout);
- the emulated probe: no READ_MULTISHOT or SEND_ZC, so the core uses READ
  with buffer selection for pipes and plain SEND for large writes.
"""
import asyncio
import os
import socket

import pytest

import ringline
from ringline._loop.backend import OPCODE_NUMBERS

from support import run


@pytest.fixture
def ploop():
    loop = ringline.new_event_loop(backend="poll")
    try:
        yield loop
    finally:
        loop.close()


def _pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_waiting_costs_nothing(ploop):
    a, b = _pair()

    async def main():
        task = asyncio.ensure_future(ploop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        before = ploop._ring_stats()["epoll_waits"]
        await asyncio.sleep(0.3)
        idle_waits = ploop._ring_stats()["epoll_waits"] - before
        b.send(b"ping")
        assert await asyncio.wait_for(task, 2) == b"ping"
        return idle_waits

    # An idle loop takes about 3 waits here (the sleep's wait, then the timer
    # and the task step). A busy loop would take thousands in 0.3 s; the bound
    # leaves room for wakeups a loaded CI machine adds (a SIGCHLD from an
    # earlier test's child process, a late timer) without hiding a spin.
    try:
        assert run(main(), loop=ploop) <= 50
    finally:
        a.close()
        b.close()


def test_cancelled_recv_never_completes_and_loses_nothing(ploop):
    a, b = _pair()

    async def main():
        task = asyncio.ensure_future(ploop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.01)
        b.send(b"after-cancel")
        await asyncio.sleep(0.05)
        # the cancelled op took nothing: the bytes are still in the socket
        assert await asyncio.wait_for(ploop.sock_recv(a, 100), 2) == b"after-cancel"
        stats = ploop._ring_stats()
        assert stats["stale_cqes"] == 0
        assert stats["waiting"] == 1       # the loop's wakeup read only

    try:
        run(main(), loop=ploop)
    finally:
        a.close()
        b.close()


def test_recv_and_blocked_send_on_one_fd(ploop):
    a, b = _pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = os.urandom(4 << 20)

    async def main():
        recv_task = asyncio.ensure_future(ploop.sock_recv(a, 100))
        send_task = asyncio.ensure_future(ploop.sock_sendall(a, big))
        await asyncio.sleep(0.05)
        assert not send_task.done()        # the peer does not read: send waits
        b.send(b"reply")
        assert await asyncio.wait_for(recv_task, 2) == b"reply"
        got = bytearray()
        while len(got) < len(big):
            got += await ploop.sock_recv(b, 1 << 20)
        await asyncio.wait_for(send_task, 5)
        assert bytes(got) == big

    try:
        run(main(), timeout=20, loop=ploop)
    finally:
        a.close()
        b.close()


def test_fd_closed_without_cancel_and_number_reused(ploop):
    async def main():
        a, b = _pair()
        task = asyncio.ensure_future(ploop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        fd = a.fileno()
        a.close()                          # no cancel: the op stays behind
        c, d = _pair()
        reused = [s for s in (c, d) if s.fileno() == fd]
        assert reused, "the fd number was not reused"
        other = d if reused[0] is c else c
        other.send(b"new file")
        assert await asyncio.wait_for(ploop.sock_recv(reused[0], 100), 2) == b"new file"
        task.cancel()
        for s in (b, c, d):
            s.close()

    run(main(), loop=ploop)


def test_registration_outliving_its_fd_is_dropped(ploop):
    a, b = _pair()
    keep = None

    async def main():
        nonlocal keep
        task = asyncio.ensure_future(ploop.sock_recv(a, 100))
        await asyncio.sleep(0.01)
        keep = os.dup(a.fileno())         # the file outlives fd a
        a.close()
        b.send(b"data")                    # readiness of the orphaned file
        before = ploop._ring_stats()["epoll_waits"]
        await asyncio.sleep(0.2)
        stats = ploop._ring_stats()
        assert stats["epoll_waits"] - before <= 10, "busy loop on an orphaned registration"
        assert stats["epoll_rebuilds"] >= 1
        for _ in range(250):               # a loaded machine may need more turns
            if task.done():
                break
            await asyncio.sleep(0.02)
        assert task.done()                 # completed with EBADF, not lost
        with pytest.raises(OSError):
            task.result()

    try:
        run(main(), loop=ploop)
    finally:
        if keep is not None:
            os.close(keep)
        b.close()


def test_udp_multishot_recvmsg_emulation(ploop):
    class Collect(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = []
            self.done = ploop.create_future()

        def datagram_received(self, data, addr):
            self.got.append((data, addr))
            if len(self.got) == 50 and not self.done.done():
                self.done.set_result(None)

    async def main():
        tr, proto = await ploop.create_datagram_endpoint(Collect, local_addr=("127.0.0.1", 0))
        port = tr.get_extra_info("sockname")[1]
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        payloads = [os.urandom(i * 97 % 1400 + 1) for i in range(50)]
        for p in payloads:
            peer.sendto(p, ("127.0.0.1", port))
        await asyncio.wait_for(proto.done, 5)
        assert [g[0] for g in proto.got] == payloads
        assert all(g[1] == peer.getsockname() for g in proto.got)
        tr.sendto(b"back", peer.getsockname())
        peer.setblocking(False)
        assert await asyncio.wait_for(ploop.sock_recvfrom(peer, 100), 2) == \
            (b"back", ("127.0.0.1", port))
        tr.close()
        peer.close()

    run(main(), loop=ploop)


def test_probe_and_the_paths_the_core_takes(ploop):
    info = ringline.backend(ploop)
    assert info.name == "poll"
    for op in ("READ", "WRITE", "WRITEV", "RECV", "SEND", "SENDMSG", "RECVMSG", "ACCEPT",
               "CONNECT", "POLL_ADD", "ASYNC_CANCEL"):
        assert op in info.opcodes
    # no shutdown op: a write shutdown is a direct call (invariant 10)
    assert "SHUTDOWN" not in info.opcodes
    assert "READ_MULTISHOT" not in info.opcodes and "SEND_ZC" not in info.opcodes
    assert ploop.zc_ok is False

    async def main():
        r, w = os.pipe()
        got = bytearray()
        done = ploop.create_future()

        class Reader(asyncio.Protocol):
            def data_received(self, data):
                got.extend(data)

            def connection_lost(self, exc):
                done.set_result(exc)

        await ploop.connect_read_pipe(Reader, os.fdopen(r, "rb", 0))
        os.write(w, b"through the read pipe")
        os.close(w)
        assert await asyncio.wait_for(done, 2) is None
        assert bytes(got) == b"through the read pipe"

    run(main(), loop=ploop)
    ops = ploop._ring_stats()["ops"]
    assert ops.get(OPCODE_NUMBERS["READ"], 0) >= 1
    assert ops.get(OPCODE_NUMBERS["READ_MULTISHOT"], 0) == 0


def test_connect_refused_then_retry_on_the_same_socket(ploop):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    addr = listener.getsockname()
    sock = socket.socket()
    sock.setblocking(False)

    async def main():
        with pytest.raises(ConnectionRefusedError):
            await ploop.sock_connect(sock, addr)
        listener.listen(1)
        # a refused socket is left unconnected, ready for another connect()
        await asyncio.wait_for(ploop.sock_connect(sock, addr), 2)

    try:
        run(main(), loop=ploop)
    finally:
        sock.close()
        listener.close()
