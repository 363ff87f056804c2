"""Driver logic without a kernel: the fake-completion harness.

A loop built with ``backend="_fake"`` runs the core's io_uring paths over a
ring with no kernel behind it (``_ring.h``: ``rl_ring_init_fake``). The test
reads what the core submitted (``loop._fake_sqes()``: opcode, flags, fd, len,
user_data of every SQE) and posts the completions it chooses
(``loop._fake_complete(user_data, res, flags)``): short sends, ECANCELED,
ENOBUFS, stale tokens, zero-length results, a nearly full SQ; and the
results of the waits (``loop._fake_script_waits([-EINTR, ...])``: a wait
interrupted by a signal, timed out, or failed; ``loop._fake_waits()``: how
many waits there were and the timeout the last one gave). Sockets are
real socketpairs so the objects are genuine, but the kernel never sees an
operation. These tests need no io_uring and run on every backend pass.
"""
import asyncio
import errno
import os
import socket

import pytest

import ringline
from ringline import _core
from ringline._conn import api as _native
from ringline._loop import loop as _loop

IORING_OP_NOP = 0
IORING_OP_SENDMSG = 9
IORING_OP_ACCEPT = 13
IORING_OP_ASYNC_CANCEL = 14
IORING_OP_CONNECT = 16
IORING_OP_SEND = 26
IORING_OP_RECV = 27
IORING_OP_SEND_ZC = 47
IORING_OP_SENDMSG_ZC = 48
IOSQE_IO_LINK = 1 << 2
IORING_CQE_F_MORE = 1 << 1
IORING_CQE_F_NOTIF = 1 << 3
RL_UD_IGNORE = 0xFFFFFFFFFFFFFFFF
RL_MAX_IO_LEN = 0x7FFFF000


def fake_loop(entries=64):
    return _loop.Loop(backend="_fake", ring_entries=entries)


def turn(loop, times=1):
    """Let the loop go round `times` times: run what is ready, hand what it
    queued to the (fake) kernel, reap posted completions and run their
    callbacks (what an iteration queues is submitted at the next one's
    start, hence two run_forever cycles per turn)."""
    for _ in range(2 * times):
        loop.call_soon(loop.stop)
        loop.run_forever()


def sqes(loop, opcode=None):
    out = loop._fake_sqes()
    if opcode is None:
        return out
    return [s for s in out if s["opcode"] == opcode]


@pytest.fixture
def floop():
    lp = fake_loop()
    yield lp
    # the fake ring answers close()'s cancels with ECANCELED (auto-cancel)
    lp.close()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def adopt(loop, sock):
    """A Conn over sock (on the fake ring: nothing reaches the kernel)."""
    return _native.adopt_fd(loop, os.dup(sock.fileno()), socket.AF_UNIX)


# ------------------------------------------------------------ harness itself


def test_harness_logs_submissions_and_delivers_chosen_completions(floop, pair):
    a, _b = pair
    fut = floop.create_task(floop.sock_recv(a, 100))
    turn(floop)
    recvs = sqes(floop, IORING_OP_RECV)
    assert len(recvs) == 1 and recvs[0]["fd"] == a.fileno()
    assert not fut.done()
    # a stale token (right slot, wrong generation) is counted and dropped
    stale0 = floop.stale_cqes
    ud = recvs[0]["user_data"]
    floop._fake_complete(ud ^ (1 << 32), 5)
    turn(floop)
    assert not fut.done()
    assert floop.stale_cqes == stale0 + 1
    # the genuine completion: 0 bytes = EOF
    floop._fake_complete(ud, 0)
    turn(floop, 2)
    assert fut.done() and fut.result() == b""


# --------------------------------------------------- lengths (finding 3)


def test_transport_send_of_2_pow_32_bytes_is_clamped_not_zero(floop, pair):
    """Finding 3: 2^32 cast to the 32-bit SQE length became 0; the zero-byte
    send 'succeeded' and was requeued forever."""
    a, _b = pair
    proto = asyncio.Protocol()

    async def make():
        return await floop.create_connection(lambda: proto, sock=a)
    tr, _ = floop.run_until_complete(make())
    big = bytes(1 << 32)            # calloc'd: no memory is touched
    tr.write(big)
    turn(floop)
    sends = [s for s in sqes(floop) if s["opcode"] in (IORING_OP_SEND, IORING_OP_SENDMSG,
                                                       IORING_OP_SEND_ZC)]
    assert len(sends) == 1
    assert sends[0]["opcode"] == IORING_OP_SEND
    assert sends[0]["len"] == RL_MAX_IO_LEN
    # the kernel takes what one call can; the rest is sent from the offset
    floop._fake_complete(sends[0]["user_data"], RL_MAX_IO_LEN)
    turn(floop, 2)
    assert tr.get_write_buffer_size() == (1 << 32) - RL_MAX_IO_LEN
    nxt = [s for s in sqes(floop) if s["opcode"] == IORING_OP_SEND]
    assert len(nxt) == 1 and nxt[0]["len"] == RL_MAX_IO_LEN
    tr.abort()
    turn(floop)


def test_zero_byte_result_of_a_non_empty_send_is_an_error_not_progress(floop, pair):
    a, _b = pair
    lost = []

    class P(asyncio.Protocol):
        def connection_lost(self, exc):
            lost.append(exc)

    async def make():
        return await floop.create_connection(P, sock=a)
    errors = []
    floop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    tr, _ = floop.run_until_complete(make())
    tr.write(b"x" * 100)
    turn(floop)
    (send,) = sqes(floop, IORING_OP_SEND)
    floop._fake_complete(send["user_data"], 0)
    turn(floop, 3)
    # no requeue (no new SEND), the transport failed with an error
    assert sqes(floop, IORING_OP_SEND) == []
    assert len(lost) == 1 and isinstance(lost[0], OSError)
    assert lost[0].errno == errno.EIO


def test_conn_send_of_2_pow_32_bytes_is_clamped(floop, pair):
    a, _b = pair
    c = adopt(floop, a)
    _native.configure(floop, max_send_queue=1 << 33, send_pool_limit=1 << 34)
    sqes(floop)
    c.send_nowait(bytes(1 << 32))
    turn(floop)
    (send,) = sqes(floop, IORING_OP_SEND)
    assert send["len"] == RL_MAX_IO_LEN
    floop._fake_complete(send["user_data"], 0)      # no progress: an error
    turn(floop, 2)
    assert sqes(floop, IORING_OP_SEND) == []
    with pytest.raises(OSError):
        c.send_nowait(b"more")


# ------------------------------------------- send chains (finding 1, 12c)


@pytest.mark.parametrize("free", [5, 2])
def test_chain_reaches_the_kernel_whole_when_the_sq_is_nearly_full(floop, pair, free):
    """Finding 1: with the SQ nearly full, the chain's first links were
    submitted (the last one still flagged IO_LINK) apart from the rest. Other
    work leaves `free` SQ slots; the chain is flushed at the end of the same
    iteration: the reservation submits what was queued first, so the whole
    chain lands in one later enter."""
    a, _b = pair
    c = adopt(floop, a)
    sqes(floop)
    n = floop.max_chain_links
    assert n == 16        # a quarter of the 64-entry SQ
    ch = c.send_chain()
    for i in range(n):
        ch.add(i.to_bytes(4, "big"))
    futs = []

    def fill_then_submit():
        floop._queue_nops(64 - free)
        futs.append(ch.submit())
    floop.call_soon(fill_then_submit)
    turn(floop)
    fut = futs[0]
    log = sqes(floop)
    # the chain, whole and in order, each link but the last linked
    links = [s for s in log if s["opcode"] == IORING_OP_SEND]
    assert len(links) == n
    first = log.index(links[0])
    assert log[first:first + n] == links           # contiguous in the log
    assert all(s["flags"] & IOSQE_IO_LINK for s in links[:-1])
    assert not links[-1]["flags"] & IOSQE_IO_LINK
    # the kernel saw the chain in one enter: no enter boundary inside it
    assert len({s["enter"] for s in links}) == 1
    # and the NOPs queued before it went in an earlier one
    nops = [s for s in log if s["opcode"] == IORING_OP_NOP]
    assert nops and max(s["enter"] for s in nops) < links[0]["enter"]
    for s in links:
        floop._fake_complete(s["user_data"], 4)
    turn(floop, 2)
    res = fut.result()
    assert res.ok and res.bytes_sent == 4 * n


def test_chain_longer_than_the_limit_is_refused_and_the_conn_stays_usable(floop, pair):
    a, _b = pair
    c = adopt(floop, a)
    ch = c.send_chain()
    for i in range(floop.max_chain_links + 1):
        ch.add(b"x")
    with pytest.raises(ValueError, match="max_chain_links"):
        ch.submit()
    c.send_nowait(b"still fine")
    turn(floop)
    (send,) = sqes(floop, IORING_OP_SEND)
    assert send["len"] == len(b"still fine")


def test_chain_link_failure_cancels_the_rest_and_fails_the_conn(floop, pair):
    a, _b = pair
    c = adopt(floop, a)
    sqes(floop)
    fut = c.send_chain().add(b"aaaa").add(b"bbbb").add(b"cccc").submit()
    turn(floop)
    links = sqes(floop, IORING_OP_SEND)
    assert len(links) == 3
    floop._fake_complete(links[0]["user_data"], 4)
    floop._fake_complete(links[1]["user_data"], -errno.EPIPE)
    floop._fake_complete(links[2]["user_data"], -errno.ECANCELED)
    turn(floop, 2)
    res = fut.result()
    assert res.bytes_sent == 4 and res.cancelled == 1
    assert isinstance(res.error, BrokenPipeError)
    with pytest.raises(OSError):
        c.send_nowait(b"x")


def test_cancelled_zero_copy_link_is_not_a_stale_completion(floop, pair):
    """Finding 12e: a zero-copy link cancelled by an earlier failed link
    reports ECANCELED with F_MORE, then its notification; neither is stale."""
    a, _b = pair
    c = adopt(floop, a)
    _native.configure(floop, send_zc_threshold=64)
    sqes(floop)
    big = bytes(range(256)) * 4
    fut = c.send_chain().add(b"head").guard(big).submit()
    turn(floop)
    log = sqes(floop)
    head = [s for s in log if s["opcode"] == IORING_OP_SEND][0]
    zc = [s for s in log if s["opcode"] in (IORING_OP_SEND_ZC, IORING_OP_SENDMSG_ZC)][0]
    stale0 = floop.stale_cqes
    floop._fake_complete(head["user_data"], -errno.EPIPE)
    floop._fake_complete(zc["user_data"], -errno.ECANCELED, IORING_CQE_F_MORE)
    floop._fake_complete(zc["user_data"], 0, IORING_CQE_F_NOTIF)
    turn(floop, 2)
    assert floop.stale_cqes == stale0
    res = fut.result()
    assert res.cancelled == 1 and isinstance(res.error, BrokenPipeError)


# ------------------------------------------------ receive: ENOBUFS parks


def test_enobufs_parks_the_stream_without_spinning(floop, pair):
    a, _b = pair
    got = []

    class P(asyncio.Protocol):
        def data_received(self, data):
            got.append(data)

    async def make():
        return await floop.create_connection(P, sock=a)
    tr, _ = floop.run_until_complete(make())
    turn(floop)
    recvs = sqes(floop, IORING_OP_RECV)
    assert len(recvs) == 1
    enobufs0 = floop.enobufs
    floop._fake_complete(recvs[0]["user_data"], -errno.ENOBUFS)
    turn(floop, 3)
    # parked, then re-armed once after the batch that emptied the ring
    # returned its buffers: one new receive, not one per iteration
    assert floop.enobufs == enobufs0 + 1
    again = sqes(floop, IORING_OP_RECV)
    assert len(again) == 1
    turn(floop, 3)
    assert sqes(floop, IORING_OP_RECV) == []
    assert got == []
    tr.abort()
    turn(floop)


# ------------------------------------------- connect and accept (12a, 12b)


def test_connect_with_a_negative_timeout_queues_nothing(floop):
    s = socket.socket()
    s.setblocking(False)
    try:
        sqes(floop)
        inflight0 = floop.inflight
        with pytest.raises(ValueError, match="timeout"):
            _core._connect_fd(floop, s.fileno(), socket.AF_INET, ("127.0.0.1", 9), -1.0)
        turn(floop)
        assert sqes(floop, IORING_OP_CONNECT) == []
        assert floop.inflight == inflight0
    finally:
        s.close()


def test_accept_completing_while_the_loop_closes_does_not_leak_the_fd(pair):
    lp = fake_loop()
    lp._fake_auto_cancel(False)     # the accept completes despite the cancel
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.setblocking(False)
    try:
        task = lp.create_task(lp.sock_accept(lsock))
        turn(lp)
        (acc,) = sqes(lp, IORING_OP_ACCEPT)
        task.cancel()
        turn(lp, 2)
        assert task.cancelled()
        # the kernel accepted anyway; its completion arrives during close()
        newfd = os.dup(pair[1].fileno())
        lp._fake_complete(acc["user_data"], newfd)
        lp.close()
        with pytest.raises(OSError) as ei:
            os.fstat(newfd)
        assert ei.value.errno == errno.EBADF
    finally:
        lsock.close()
        if not lp.is_closed():
            lp.close()


# --------------------------------------------------- the wait (no kernel)


@pytest.mark.parametrize("res", [errno.EINTR, errno.ETIME, errno.EBUSY, errno.EAGAIN],
                         ids=["EINTR", "ETIME", "EBUSY", "EAGAIN"])
def test_a_wait_ending_in_an_ordinary_outcome_goes_on_and_timers_still_fire(floop, res):
    """EINTR (a signal interrupted the wait), ETIME (its timeout ran out),
    EBUSY and EAGAIN are not errors: the loop runs what is due and waits
    again; a timer set before the wait fires at its time, not earlier."""
    fired = []
    floop.call_later(5.0, fired.append, "late")
    floop.call_later(0.05, fired.append, "due")
    floop.call_later(0.05, floop.stop)
    turn(floop)                            # settle what setting up queued
    waits0, _, _ = floop._fake_waits()
    floop._fake_script_waits([-res, -res, -res])
    floop.run_forever()
    waits, timeout_ns, left = floop._fake_waits()
    assert left == 0                       # every scripted result was met
    assert waits - waits0 >= 3             # and each was followed by a new wait
    assert fired == ["due"]                # the 5 s timer did not fire early
    # the waits were bounded by the next timer (50 ms), never unbounded
    assert 0 <= timeout_ns <= 50_000_000


def test_the_wait_timeout_comes_from_the_next_timer(floop):
    seen = []

    def look():
        seen.append(floop._fake_waits()[1])
    turn(floop)
    floop.call_later(3.0, lambda: None)
    floop.call_later(0.02, look)           # runs after at least one wait
    floop.call_later(0.02, floop.stop)
    floop.run_forever()
    # the 20 ms timer bounded the wait, not the 3 s one, and it was a
    # bounded wait (a negative timeout means none)
    assert seen and 0 <= seen[0] <= 20_000_000


def test_a_wait_failing_with_a_real_error_raises_naming_the_call(floop):
    turn(floop)
    floop.call_later(0.05, floop.stop)
    floop._fake_script_waits([-errno.EBADF])
    with pytest.raises(OSError) as ei:
        floop.run_forever()
    assert ei.value.errno == errno.EBADF
    assert "io_uring_enter" in str(ei.value)
    # the loop is still usable afterwards
    done = []
    floop.call_soon(done.append, 1)
    turn(floop)
    assert done == [1]
