"""Low-level socket operations, cancellation: every sock_* operation
cancelled and the socket reused, cancellations racing with data (nothing
lost, nothing written into a cancelled receive's buffer, a consistent
stream after a cancelled sendall).

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` fixture of conftest.py. The peer side of a
connection is an ordinary blocking socket driven by the test (or by a helper
thread), so it does not depend on the loop under test. The ``tcp`` / ``udp``
socket-pair fixtures are in tests/loop/conftest.py, the peer-side helpers
in support/sock_ops.py.
"""
import asyncio
import errno
import os
import socket
import time

import pytest

from support import closing_all, run, tcp_listener, tcp_pair
from support.sock_ops import MiB, PeerReader, recv_exactly


# ---------------------------------------------------------------------------
# cancellation
# ---------------------------------------------------------------------------

async def _cancel_pending(task, settle=0.02):
    """Let ``task`` block, cancel it, and check it ends cancelled."""
    await asyncio.sleep(settle)
    assert not task.done(), "operation completed although it should block"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    # the loop keeps working
    await asyncio.sleep(0)
    assert await asyncio.sleep(0.001, "alive") == "alive"


def test_cancel_sock_recv_then_reuse_no_data_lost(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(ours, 100))
        await _cancel_pending(task)
        peer.sendall(b"after cancel")
        await asyncio.sleep(0.02)
        return await recv_exactly(loop, ours, 12)

    assert run(main(), loop=loop) == b"after cancel"


def test_cancel_sock_recv_repeatedly(loop, tcp):
    ours, peer = tcp

    async def main():
        for _ in range(20):
            task = asyncio.ensure_future(loop.sock_recv(ours, 100))
            await _cancel_pending(task, settle=0.001)
        peer.sendall(b"still here")
        return await recv_exactly(loop, ours, 10)

    assert run(main(), loop=loop) == b"still here"


def test_cancel_sock_recv_racing_with_data_loses_nothing(loop, tcp):
    """Cancel a recv at the moment data arrives: every byte must end up
    either in the (completed) recv's result or in a later recv."""
    ours, peer = tcp
    n = 60
    expected = b"".join(b"<%04d>" % i for i in range(n))

    async def main():
        got = bytearray()
        for i in range(n):
            task = asyncio.ensure_future(loop.sock_recv(ours, 1024))
            await asyncio.sleep(0)
            peer.sendall(b"<%04d>" % i)
            if i % 3 == 1:
                await asyncio.sleep(0)
            elif i % 3 == 2:
                await asyncio.sleep(0.002)
            task.cancel()
            try:
                got += await task
            except asyncio.CancelledError:
                pass
        while len(got) < len(expected):
            data = await loop.sock_recv(ours, 4096)
            assert data, "EOF"
            got += data
        return bytes(got)

    assert run(main(), loop=loop) == expected


def test_cancel_sock_recv_into_then_reuse(loop, tcp):
    ours, peer = tcp
    buf = bytearray(32)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(ours, buf))
        await _cancel_pending(task)
        peer.sendall(b"into after cancel")
        await asyncio.sleep(0.02)
        n = await loop.sock_recv_into(ours, buf)
        return bytes(buf[:n])

    assert run(main(), loop=loop) == b"into after cancel"


def test_cancelled_recv_into_never_writes_buffer(loop, tcp):
    ours, peer = tcp
    buf = bytearray(64)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(ours, buf))
        await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the buffer belongs to the application again
        pattern = bytes(range(64))
        buf[:] = pattern
        peer.sendall(b"X" * 48)
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert buf == pattern, "a cancelled sock_recv_into wrote the buffer"
        # ...and the peer's data was not lost either
        return await recv_exactly(loop, ours, 48)

    assert run(main(), loop=loop) == b"X" * 48


def test_cancel_sock_recvfrom_then_reuse(loop, udp):
    ours, peer = udp

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom(ours, 100))
        await _cancel_pending(task)
        peer.sendto(b"dgram after cancel", ours.getsockname())
        await asyncio.sleep(0.02)
        return await loop.sock_recvfrom(ours, 100)

    assert run(main(), loop=loop) == (b"dgram after cancel", peer.getsockname())


def test_cancel_sock_recvfrom_into_then_reuse(loop, udp):
    ours, peer = udp
    buf = bytearray(b"." * 32)

    async def main():
        task = asyncio.ensure_future(loop.sock_recvfrom_into(ours, buf))
        await _cancel_pending(task)
        pattern = b"#" * 32
        buf[:] = pattern
        peer.sendto(b"dgram", ours.getsockname())
        await asyncio.sleep(0.03)
        assert buf == pattern, "a cancelled sock_recvfrom_into wrote the buffer"
        n, addr = await loop.sock_recvfrom_into(ours, buf)
        return bytes(buf[:n]), addr

    assert run(main(), loop=loop) == (b"dgram", peer.getsockname())


def test_cancel_sock_accept_then_reuse(loop):
    lsock = tcp_listener()
    client = socket.socket()
    with closing_all(lsock, client):
        async def main():
            task = asyncio.ensure_future(loop.sock_accept(lsock))
            await _cancel_pending(task)
            client.settimeout(5)
            client.connect(lsock.getsockname())
            await asyncio.sleep(0.02)
            conn, addr = await loop.sock_accept(lsock)
            conn.close()
            return addr

        assert run(main(), loop=loop) == client.getsockname()


def test_cancel_sock_connect(loop):
    # listen(0) + one queued connection fills the accept queue: the kernel
    # drops further SYNs, so the next connect stays in progress.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    sock = socket.socket()
    sock.setblocking(False)
    other = tcp_listener()
    sock2 = socket.socket()
    sock2.setblocking(False)
    with closing_all(lsock, sock, other, sock2):
        for _ in range(2):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(lsock.getsockname())
            fillers.append(f)
        time.sleep(0.05)
        try:
            async def main():
                task = asyncio.ensure_future(
                    loop.sock_connect(sock, lsock.getsockname()))
                await _cancel_pending(task, settle=0.1)
                # other connects on the loop still work
                await loop.sock_connect(sock2, other.getsockname())
                conn, _ = await loop.sock_accept(other)
                conn.close()
                return True

            assert run(main(), loop=loop)
        finally:
            for f in fillers:
                f.close()


def test_cancel_sock_sendall_then_reuse(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    payload = os.urandom(8 * MiB)
    marker = b"\n--MARKER-after-cancelled-sendall--\n"

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(ours, payload))
        await _cancel_pending(task, settle=0.05)
        reader = PeerReader(peer, marker=marker)
        reader.start()
        await loop.sock_sendall(ours, marker)
        return reader

    reader = run(main(), loop=loop)
    got = reader.result()
    assert got.endswith(marker)
    prefix = got[:-len(marker)]
    assert len(prefix) < len(payload), "cancelled sendall sent everything"
    assert prefix == payload[:len(prefix)], \
        "stream is not a prefix of the payload followed by the marker"


def test_cancel_one_of_two_waiters_other_still_served(loop, udp, tcp):
    tsock, tpeer = tcp
    usock, upeer = udp

    async def main():
        t_recv = asyncio.ensure_future(loop.sock_recv(tsock, 100))
        u_recv = asyncio.ensure_future(loop.sock_recvfrom(usock, 100))
        await _cancel_pending(t_recv)
        upeer.sendto(b"u", usock.getsockname())
        data, _ = await u_recv
        tpeer.sendall(b"t")
        return data, await recv_exactly(loop, tsock, 1)

    assert run(main(), loop=loop) == (b"u", b"t")


def test_socket_closed_by_peer_during_sendall(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(ours, b"y" * (16 * MiB)))
        await asyncio.sleep(0.05)
        peer.close()
        await task

    with pytest.raises(OSError) as info:
        run(main(), loop=loop)
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)


# ---------------------------------------------------------------------------
# cancellation races: what a cancelled operation leaves behind must stay in
# the *kernel* socket, where any other reader (plain socket calls, add_reader,
# a transport) can get it -- as with asyncio's readiness-based operations.
# ---------------------------------------------------------------------------

# A completion-based loop may have received the bytes by the time the
# cancellation reaches the kernel; it then keeps them for the next receive on
# that socket. So "nothing lost" is checked through the loop's own next call.
def test_cancel_recv_race_then_next_recv_loses_nothing(loop, tcp):
    ours, peer = tcp
    rounds = 30

    async def main():
        lost = []
        for i in range(rounds):
            msg = b"<%04d>" % i
            task = asyncio.ensure_future(loop.sock_recv(ours, 1024))
            await asyncio.sleep(0)          # the receive is now pending
            peer.sendall(msg)               # data arrives...
            task.cancel()                   # ...as the task is cancelled
            try:
                got = await task            # completed first: fine
            except asyncio.CancelledError:
                got = b""
            # the rest must come with the next receive
            if len(got) < len(msg):
                got += await asyncio.wait_for(
                    loop.sock_recv(ours, len(msg) - len(got)), 2)
            if got != msg:
                lost.append((i, got))
        return lost

    assert run(main(), loop=loop) == []


def test_cancel_recv_into_race_then_next_recv_loses_nothing(loop, tcp):
    ours, peer = tcp
    rounds = 30

    async def main():
        lost = []
        buf = bytearray(1024)
        for i in range(rounds):
            msg = b"[%04d]" % i
            task = asyncio.ensure_future(loop.sock_recv_into(ours, buf))
            await asyncio.sleep(0)
            peer.sendall(msg)
            task.cancel()
            try:
                got = bytes(buf[:await task])
            except asyncio.CancelledError:
                got = b""
            if len(got) < len(msg):
                got += await asyncio.wait_for(
                    loop.sock_recv(ours, len(msg) - len(got)), 2)
            if got != msg:
                lost.append((i, got))
        return lost

    assert run(main(), loop=loop) == []


def test_cancel_recvfrom_race_loses_no_datagram(loop, udp):
    ours, peer = udp
    rounds = 30

    async def main():
        lost = []
        for i in range(rounds):
            msg = b"dgram-%04d" % i
            task = asyncio.ensure_future(loop.sock_recvfrom(ours, 1024))
            await asyncio.sleep(0)
            peer.sendto(msg, ours.getsockname())
            task.cancel()
            try:
                got, _addr = await task
            except asyncio.CancelledError:
                # the datagram must still be there for the next receive
                try:
                    got, _addr = await asyncio.wait_for(
                        loop.sock_recvfrom(ours, 1024), 0.2)
                except asyncio.TimeoutError:
                    got = None
            if got != msg:
                lost.append((i, got))
                if len(lost) >= 3:
                    break
        return lost

    assert run(main(), loop=loop) == []


def test_cancel_accept_race_then_next_accept(loop):
    lsock = tcp_listener(backlog=64)
    clients = []
    with lsock:
        async def main():
            lost = []
            for i in range(15):
                task = asyncio.ensure_future(loop.sock_accept(lsock))
                await asyncio.sleep(0)
                c = socket.create_connection(lsock.getsockname(), timeout=5)
                clients.append(c)
                task.cancel()
                try:
                    conn, _ = await task
                except asyncio.CancelledError:
                    try:
                        conn, _ = await asyncio.wait_for(loop.sock_accept(lsock), 2)
                    except asyncio.TimeoutError:
                        conn = None
                if conn is None:
                    lost.append(i)
                    continue
                with conn:
                    if conn.getpeername() != c.getsockname():
                        lost.append((i, "wrong connection"))
            return lost

        try:
            assert run(main(), loop=loop) == []
        finally:
            for c in clients:
                c.close()


def test_cancel_sendall_while_peer_reads_keeps_stream_consistent(loop):
    payload = os.urandom(16 * MiB)
    for attempt in range(4):
        ours, peer = tcp_pair()
        with closing_all(ours, peer):
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            marker = b"\n--MARKER-%d--\n" % attempt
            # ~32 KiB per ms at best: 16 MiB takes > 0.5 s
            reader = PeerReader(peer, marker=marker, delay=0.001,
                                chunk=32 * 1024)

            async def main():
                reader.start()
                task = asyncio.ensure_future(loop.sock_sendall(ours, payload))
                await asyncio.sleep(0.02 + 0.01 * attempt)  # mid-transfer
                assert not task.done()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await loop.sock_sendall(ours, marker)

            run(main(), loop=loop)
            got = reader.result()
            assert got.endswith(marker)
            prefix = got[:-len(marker)]
            assert prefix == payload[:len(prefix)], (
                f"attempt {attempt}: bytes after a cancelled sendall are "
                f"not a prefix of its payload ({len(prefix)} bytes)")


def test_cancelled_sendall_releases_buffer(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    payload = bytearray(os.urandom(8 * MiB))

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(ours, payload))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The application owns the buffer again and may resize it.
        payload.extend(b"more")
        del payload[:]

    run(main(), loop=loop)
    assert payload == b""
