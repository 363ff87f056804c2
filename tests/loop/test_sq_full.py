"""A full submission queue never drops or reorders an operation.

The loop is built with a tiny ring (``ring_entries=4``) and then given far
more operations in one turn than its SQ holds: sends, receives and closes on
many connections at once. When the SQ fills the loop hands the batch to the
driver and goes on (``LoopCore._sqe``); the driver must run every SQE it got,
in order. Each connection carries a numbered byte pattern, so a dropped,
repeated or reordered send shows as wrong bytes at the peer; each close must
come after every byte queued before it (a graceful Conn close drains).
Both backends; the peers are socketpairs read with blocking sockets in the
test's own thread after the loop has finished its part, or by the loop itself.
"""
import asyncio
import os
import socket

import pytest

from ringline._conn import api as _native
from ringline._loop import loop as _loop

from support import BACKENDS, close_loop, run
from support.conn import read_exactly

ENTRIES = 4
PAIRS = 48
MSGS = 12       # messages per connection, queued in the same turn


def _pattern(i, k, size=700):
    """Message k of connection i: recognisable and never all the same byte."""
    head = f"{i:04d}:{k:04d}|".encode()
    return (head * (size // len(head) + 1))[:size]


@pytest.fixture(params=BACKENDS)
def small_loop(request):
    lp = _loop.Loop(backend=request.param, ring_entries=ENTRIES)
    try:
        yield lp
    finally:
        close_loop(lp)


def _pairs(n):
    out = []
    for _ in range(n):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        out.append((a, b))
    return out


def _full_enters(loop):
    return loop._ring_stats()["sq_full_enters"]


def _adopt_all(loop, pairs):
    """A Conn over the first socket of every pair (which it then owns)."""
    conns = [_native.adopt_fd(loop, os.dup(a.fileno()), socket.AF_UNIX) for a, _ in pairs]
    for a, _ in pairs:
        a.close()
    return conns


def _close_all(pairs):
    for a, b in pairs:
        a.close()
        b.close()


def test_sock_sends_and_receives_beyond_the_sq_arrive_whole_and_in_order(small_loop):
    async def main():
        loop = asyncio.get_running_loop()
        pairs = _pairs(PAIRS)
        try:
            expect = [b"".join(_pattern(i, k) for k in range(MSGS)) for i in range(PAIRS)]

            async def sender(i, sock):
                for k in range(MSGS):
                    await loop.sock_sendall(sock, _pattern(i, k))

            async def receiver(i, sock):
                got = bytearray()
                while len(got) < len(expect[i]):
                    data = await loop.sock_recv(sock, 4096)
                    assert data, f"EOF on pair {i} after {len(got)} bytes"
                    got += data
                return bytes(got)

            # every receive and every first send queued in one turn: 2 * PAIRS
            # submissions on a ring of ENTRIES
            full0 = _full_enters(loop)
            recvs = [loop.create_task(receiver(i, b)) for i, (a, b) in enumerate(pairs)]
            sends = [loop.create_task(sender(i, a)) for i, (a, b) in enumerate(pairs)]
            await asyncio.gather(*sends)
            got = await asyncio.gather(*recvs)
            assert _full_enters(loop) > full0, "the SQ never filled: the test tests nothing"
            for i in range(PAIRS):
                assert got[i] == expect[i], f"pair {i}: bytes lost or out of order"
        finally:
            _close_all(pairs)
    run(main(), loop=small_loop)


def test_conn_sends_then_closes_beyond_the_sq_drain_in_order_then_eof(small_loop):
    async def main():
        loop = asyncio.get_running_loop()
        pairs = _pairs(PAIRS)
        try:
            conns = _adopt_all(loop, pairs)
            # one turn: every message of every connection, then every close
            full0 = _full_enters(loop)
            for i, c in enumerate(conns):
                for k in range(MSGS):
                    c.send_nowait(_pattern(i, k))
            for c in conns:
                c.close()

            async def drain(i, peer):
                got = bytearray()
                while True:
                    data = await loop.sock_recv(peer, 1 << 16)
                    if not data:
                        return bytes(got)
                    got += data

            got = await asyncio.gather(*(drain(i, b) for i, (_, b) in enumerate(pairs)))
            assert _full_enters(loop) > full0, "the SQ never filled: the test tests nothing"
            for i in range(PAIRS):
                assert got[i] == b"".join(_pattern(i, k) for k in range(MSGS)), \
                    f"conn {i}: bytes lost, reordered or cut by the close"
            for _ in range(100):
                if _native.stats()["live"] == 0:
                    break
                await asyncio.sleep(0.01)
            assert _native.stats()["live"] == 0
        finally:
            for _, b in pairs:
                b.close()
    run(main(), loop=small_loop)


def test_conn_receives_beyond_the_sq_arrive_whole_and_in_order(small_loop):
    async def main():
        loop = asyncio.get_running_loop()
        pairs = _pairs(PAIRS)
        try:
            # every connection's receive armed in one turn
            full0 = _full_enters(loop)
            conns = _adopt_all(loop, pairs)
            expect = [b"".join(_pattern(i, k) for k in range(MSGS)) for i in range(PAIRS)]
            readers = [loop.create_task(read_exactly(c, len(expect[i])))
                       for i, c in enumerate(conns)]

            async def feed(i, peer):
                for k in range(MSGS):
                    await loop.sock_sendall(peer, _pattern(i, k))

            await asyncio.gather(*(feed(i, b) for i, (_, b) in enumerate(pairs)))
            got = await asyncio.gather(*readers)
            assert _full_enters(loop) > full0, "the SQ never filled: the test tests nothing"
            for i in range(PAIRS):
                assert got[i] == expect[i], f"conn {i}: bytes lost or out of order"
            for c in conns:
                c.close()
        finally:
            for _, b in pairs:
                b.close()
    run(main(), loop=small_loop)
