"""Low-level socket operations on connected TCP sockets: sock_recv /
sock_recv_into (waiting, nbytes, EOF, resets, buffers) and sock_sendall
(buffer types, slow readers, concurrent recv, resets): results, errors
and data integrity.

Each test runs against ``asyncio.SelectorEventLoop`` (reference) and the
ringline loop via the ``loop`` fixture of conftest.py. The peer side of a
connection is an ordinary blocking socket driven by the test (or by a helper
thread), so it does not depend on the loop under test. The ``tcp`` / ``udp``
socket-pair fixtures are in tests/loop/conftest.py, the peer-side helpers
in support/sock_ops.py.
"""
import asyncio
import hashlib
import os
import socket
import threading
import time

import pytest

from support import run
from support.sock_ops import MiB, PeerReader, peer_recv_exactly, recv_exactly, reset_connection


# ---------------------------------------------------------------------------
# sock_recv / sock_recv_into
# ---------------------------------------------------------------------------

def test_sock_recv_returns_available_data(loop, tcp):
    ours, peer = tcp
    peer.sendall(b"hello")
    assert run(recv_exactly(loop, ours, 5), loop=loop) == b"hello"


def test_sock_recv_waits_for_data(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(ours, 100))
        await asyncio.sleep(0.05)
        assert not task.done()
        peer.sendall(b"late data")
        return await task

    assert run(main(), loop=loop) == b"late data"


def test_sock_recv_respects_nbytes(loop, tcp):
    ours, peer = tcp
    peer.sendall(b"0123456789")

    async def main():
        first = await loop.sock_recv(ours, 4)
        rest = await recv_exactly(loop, ours, 10 - len(first))
        return first, rest

    first, rest = run(main(), loop=loop)
    assert 1 <= len(first) <= 4
    assert first + rest == b"0123456789"


def test_sock_recv_eof_returns_empty_bytes(loop, tcp):
    ours, peer = tcp
    peer.sendall(b"last")
    peer.shutdown(socket.SHUT_WR)

    async def main():
        data = await recv_exactly(loop, ours, 4)
        eof1 = await loop.sock_recv(ours, 100)
        eof2 = await loop.sock_recv(ours, 100)
        return data, eof1, eof2

    assert run(main(), loop=loop) == (b"last", b"", b"")


def test_sock_recv_eof_while_waiting(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(ours, 100))
        await asyncio.sleep(0.02)
        peer.close()
        return await task

    assert run(main(), loop=loop) == b""


def test_sock_recv_peer_reset_raises_connection_reset(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(ours, 100))
        await asyncio.sleep(0.02)
        assert not task.done()
        reset_connection(peer)
        return await task

    with pytest.raises(ConnectionResetError):
        run(main(), loop=loop)


def test_sock_recv_into(loop, tcp):
    ours, peer = tcp
    buf = bytearray(b"." * 16)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(ours, buf))
        await asyncio.sleep(0.02)
        assert not task.done()
        peer.sendall(b"abcdef")
        return await task

    n = run(main(), loop=loop)
    assert n == 6  # loopback delivers a small send in one piece
    assert buf == b"abcdef" + b"." * 10


def test_sock_recv_into_memoryview_slice(loop, tcp):
    ours, peer = tcp
    buf = bytearray(b"." * 12)
    peer.sendall(b"XYZ")
    n = run(loop.sock_recv_into(ours, memoryview(buf)[4:8]), loop=loop)
    assert n == 3
    assert buf == b"....XYZ....."


def test_sock_recv_into_eof_returns_zero(loop, tcp):
    ours, peer = tcp
    peer.shutdown(socket.SHUT_WR)
    buf = bytearray(b"*" * 8)
    assert run(loop.sock_recv_into(ours, buf), loop=loop) == 0
    assert buf == b"*" * 8


def test_sock_recv_into_peer_reset(loop, tcp):
    ours, peer = tcp

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(ours, bytearray(10)))
        await asyncio.sleep(0.02)
        reset_connection(peer)
        return await task

    with pytest.raises(ConnectionResetError):
        run(main(), loop=loop)


def test_many_small_messages_in_order(loop, tcp):
    ours, peer = tcp
    expected = b"".join(b"%06d" % i for i in range(5000))
    reader = None

    async def main():
        got = bytearray()
        while len(got) < len(expected):
            data = await loop.sock_recv(ours, 4096)
            assert data
            got += data
        return bytes(got)

    def writer():
        for i in range(0, len(expected), 60):
            peer.sendall(expected[i:i + 60])

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert run(main(), loop=loop) == expected
    finally:
        t.join()
    del reader


# ---------------------------------------------------------------------------
# sock_sendall
# ---------------------------------------------------------------------------

def test_sock_sendall_small(loop, tcp):
    ours, peer = tcp
    assert run(loop.sock_sendall(ours, b"small payload"), loop=loop) is None
    assert peer_recv_exactly(peer, 13) == b"small payload"


def test_sock_sendall_accepts_buffer_types(loop, tcp):
    ours, peer = tcp

    async def main():
        await loop.sock_sendall(ours, bytearray(b"ba"))
        await loop.sock_sendall(ours, memoryview(b"xxmvxx")[2:4])
        await loop.sock_sendall(ours, b"")

    run(main(), loop=loop)
    assert peer_recv_exactly(peer, 4) == b"bamv"


def test_sock_sendall_large_to_slow_reader(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    payload = os.urandom(6 * MiB)
    reader = PeerReader(peer, nbytes=len(payload), delay=0.0005)
    ticks = []

    async def ticker():
        while True:
            ticks.append(None)
            await asyncio.sleep(0.01)

    async def main():
        tick = asyncio.ensure_future(ticker())
        reader.start()
        try:
            await loop.sock_sendall(ours, payload)
        finally:
            tick.cancel()

    start = time.monotonic()
    run(main(), loop=loop)
    got = reader.result()
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    # the loop kept running other tasks while sendall waited for the reader
    if time.monotonic() - start > 0.1:
        assert len(ticks) >= 3


def test_sock_sendall_concurrent_with_recv_on_same_socket(loop, tcp):
    ours, peer = tcp
    payload = os.urandom(2 * MiB)

    def echo():
        total = 0
        while total < len(payload):
            data = peer.recv(1 << 16)
            if not data:
                return
            peer.sendall(data)
            total += len(data)

    async def main():
        send = asyncio.ensure_future(loop.sock_sendall(ours, payload))
        got = await recv_exactly(loop, ours, len(payload))
        await send
        return got

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    try:
        got = run(main(), loop=loop)
    finally:
        t.join(5)
    assert got == payload


def test_sock_sendall_peer_reset_raises(loop, tcp):
    ours, peer = tcp
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(ours, b"x" * (16 * MiB)))
        await asyncio.sleep(0.05)
        assert not task.done()
        reset_connection(peer)
        await task

    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        run(main(), loop=loop)


# ---------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------


def test_sock_recv_zero_bytes(loop, tcp):
    ours, peer = tcp
    peer.sendall(b"keep")
    assert run(loop.sock_recv(ours, 0), loop=loop) == b""
    assert run(recv_exactly(loop, ours, 4), loop=loop) == b"keep"
