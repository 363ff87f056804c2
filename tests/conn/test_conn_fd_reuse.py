"""Invariant 10 for the native connection (ringline.Conn): its write
shutdown never reaches a socket that took over its fd number.

``Conn.shutdown_write()`` followed at once by ``close()`` gives the fd
number back; the next socket created gets it. The half-close must have
happened while the number was still the connection's: on io_uring an
IORING_OP_SHUTDOWN runs in a kernel worker thread that looks the number up
late, after an IORING_OP_CLOSE submitted with it has already freed it, so
the shutdown hit whatever socket the program opened in between.

Two tests: on the real kernel of each backend (the race, tried many times:
a new socket pair that reuses the number must stay intact in both
directions), and on the fake ring (deterministic: no kernel runs anything
queued, so the half-close must be visible to the peer before the loop even
turns, and no SHUTDOWN submission carrying the number may be queued).
"""
import asyncio
import os
import socket

import pytest

import ringline
from ringline._conn import api as _native
from ringline._loop import loop as _loop

from support import run, tcp_listener

IORING_OP_SHUTDOWN = 34
IORING_OP_CLOSE = 19
ROUNDS = 60


def _intact(x, peer):
    """x and its peer still carry bytes both ways (x was not shut down)."""
    x.setblocking(True)
    x.settimeout(5)
    peer.settimeout(5)
    x.sendall(b"from-x")          # BrokenPipeError if x was shut for writing
    assert peer.recv(16) == b"from-x"
    peer.sendall(b"to-x")
    assert x.recv(16) == b"to-x"


async def _pairs_onto(fd, limit=8):
    """New socket pairs until one end has the number fd; (that end, its
    peer), the others closed. None if the number was not free yet."""
    spare = []
    try:
        for _ in range(limit):
            a, b = socket.socketpair()
            if a.fileno() == fd:
                return a, b
            if b.fileno() == fd:
                return b, a
            spare += [a, b]
        return None
    finally:
        for s in spare:
            s.close()


def test_shutdown_write_then_close_never_shuts_the_socket_reusing_the_fd(run):
    async def main():
        lsock = tcp_listener(ROUNDS)
        loop = asyncio.get_running_loop()
        port = lsock.getsockname()[1]
        reused = 0
        # a 1-byte accumulator: one byte from the peer parks the receive, so
        # no operation of the connection is in flight and the close is
        # submitted in the same enter as the shutdown (the tightest window)
        _native.configure(loop, recv_accumulator_cap=1)
        try:
            for _ in range(ROUNDS):
                c = await ringline.connect(("127.0.0.1", port), timeout=5)
                srv, _ = await loop.sock_accept(lsock)
                fd = c.fileno()
                pauses = _native.stats()["recv_pauses"]
                await loop.sock_sendall(srv, b"z")
                for _ in range(200):
                    await asyncio.sleep(0)
                    if _native.stats()["recv_pauses"] > pauses:
                        break
                for _ in range(5):       # the receive's cancel completes
                    await asyncio.sleep(0)
                c.shutdown_write()
                c.close()
                got = None
                for _ in range(200):      # the close reaches the kernel
                    await asyncio.sleep(0)
                    got = await _pairs_onto(fd)
                    if got is not None:
                        break
                assert got is not None, "the connection's fd was never closed"
                reused += 1
                x, peer = got
                try:
                    for _ in range(5):   # let an in-flight op land, if any
                        await asyncio.sleep(0)
                    _intact(x, peer)
                finally:
                    x.close()
                    peer.close()
                # the old connection's peer saw its FIN
                srv.setblocking(True)
                srv.settimeout(5)
                assert srv.recv(16) == b""
                srv.close()
        finally:
            lsock.close()
        assert reused == ROUNDS
    run(main())


def test_shutdown_write_happens_while_the_fd_is_the_conns_fake_ring():
    """On the fake ring nothing queued ever runs: the FIN must already be
    out when shutdown_write() returns, and nothing the ring would run later
    may carry the number as a shutdown."""
    floop = _loop.Loop(backend="_fake", ring_entries=64)
    a, b = socket.socketpair()
    try:
        c = _native.adopt_fd(floop, os.dup(a.fileno()), socket.AF_UNIX)
        fd = c.fileno()
        floop._fake_sqes()
        c.shutdown_write()
        b.settimeout(5)
        assert b.recv(16) == b""          # FIN already sent
        c.close()
        for _ in range(4):
            floop.call_soon(floop.stop)
            floop.run_forever()
        log = floop._fake_sqes()
        assert not [s for s in log
                    if s["opcode"] == IORING_OP_SHUTDOWN and s["fd"] == fd]
    finally:
        floop.close()
        a.close()
        b.close()


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "linked-timeout"])
def test_connect_cancelled_before_submission_never_connects_the_fd_reusing_socket(run, timeout):
    """A connect cancelled in the iteration that queued its CONNECT closes
    its socket at once; the CONNECT, still in the submission queue, must
    not then run against the next socket given that number (it would
    connect it to the address)."""
    async def main():
        loop = asyncio.get_running_loop()
        lsock = tcp_listener(8)
        try:
            probe = socket.socket()
            fd = probe.fileno()          # the lowest free number: the
            probe.close()                # connect's socket gets it
            coro = _native._connect_sockaddr(
                loop, socket.AF_INET, ("127.0.0.1", lsock.getsockname()[1]), timeout)
            coro.send(None)               # the CONNECT is queued, not submitted
            with pytest.raises(asyncio.CancelledError):
                coro.throw(asyncio.CancelledError())
            fresh = socket.socket()       # takes the number back at once
            try:
                assert fresh.fileno() == fd
                for _ in range(5):
                    await asyncio.sleep(0)
                await asyncio.sleep(0.05)
                with pytest.raises(OSError):
                    fresh.getpeername()       # never connected
                with pytest.raises(BlockingIOError):
                    lsock.accept()[0].close()
            finally:
                fresh.close()
        finally:
            lsock.close()
    run(main())
