"""ringline.grpc's unary fast path (``_UnaryResponse._await`` without a
deadline, ``Rpc.unary`` / ``Rpc._whole`` with the per-channel verdict cache,
``H2Connection._validate``'s cache, ``CachingDecoder``, the engine's
WINDOW_UPDATE credit) against hostile servers (tests/support/grpc_fake.py):
every outcome must be the general path's -- the same call with a deadline
(``_op``) and the same response read by a unary-stream call (``recv()``
and the Deframer) -- and every cache stays bounded whatever the server
sends. Covered: 500 calls whose head and trailer blocks keep changing on a
churning HPACK dynamic table (metadata per call, caches bounded), odd
response shapes (trailers-only, grpc-status in the head, content-types,
odd grpc-status values, a missing status, compressed flag without
encoding, the receive bound, split and padded DATA), cancellation races
(cancel() and task cancellation between the response's arrival and the
task's resumption, 1,000 calls with a random tenth cancelled), the
connection lost with heads sent, RST_STREAM after a complete response and
GOAWAY in the batch of the responses, and the connection window reopened
by the fast path. The suite runs once per RINGLINE_BACKEND.
"""
import asyncio
import contextlib
import random

import pytest

pytest.importorskip("h2")

import ringline.grpc as rg  # noqa: E402
from ringline.grpc import _hpack, _rpc  # noqa: E402
from ringline.http import _h2conn  # noqa: E402
from ringline.http._h2fast import FastH2Connection  # noqa: E402
from support import run  # noqa: E402
from support.grpc_fake import Record, _counter_t, serve_fake  # noqa: E402

CALL_BOUND = 30.0
PATH = "/x.Y/Z"


@contextlib.contextmanager
def _loop_errors():
    """The loop's exception handler records what reaches it (a list)."""
    loop = asyncio.get_running_loop()
    seen = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    try:
        yield seen
    finally:
        loop.set_exception_handler(old)


async def _outcome(call):
    """What awaiting a unary call gave: ("ok", message, trailing metadata)
    or ("error", code, details)."""
    try:
        msg = await asyncio.wait_for(call, CALL_BOUND)
    except rg.AioRpcError as exc:
        return ("error", exc.code(), exc.details())
    return ("ok", msg, await call.trailing_metadata())


async def _stream_outcome(ch, md):
    """The same request as a unary-stream call (the general reader) turned
    into what a unary call must give: one message -> it, none or more ->
    UNIMPLEMENTED, an error -> it."""
    call = ch.unary_stream(PATH)(b"req", metadata=md, timeout=CALL_BOUND)
    msgs = []
    try:
        async for m in call:
            msgs.append(m)
    except rg.AioRpcError as exc:
        return ("error", exc.code(), exc.details())
    if len(msgs) != 1:
        return ("error", rg.StatusCode.UNIMPLEMENTED, None)
    return ("ok", msgs[0], await call.trailing_metadata())


def _counter_md(n):
    """The counter mode's (initial, trailing) metadata of its call N."""
    return ((("x-h", f"h{n % 3}"), ("x-pad", f"{n // 10 % 13}" * 4000)),
            (("x-t", _counter_t(n)), ("x-n", str(n))))


def _conns(ch):
    return list(ch._pool.h2conns)


def _no_streams(ch):
    for c in _conns(ch):
        assert not c.streams, c.streams


# -- 1 and 2: blocks that keep changing, on a churning dynamic table --

def test_changing_blocks_metadata_per_call_caches_bounded():
    """500 calls (one at a time, then 50 at once, 9 rounds) on a server
    whose heads and trailers vary call by call through h2's indexing
    encoder: each call's message and metadata are its own (its number is
    its stream id's), and the verdict cache, the connection's set of
    valid blocks, the HPACK decode cache and the request-head caches stay
    within their bounds."""
    async def main():
        async with serve_fake("counter") as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                method = ch.unary_unary(PATH)
                fast = 0

                async def one(i):
                    nonlocal fast
                    # per-call metadata: the request heads differ too
                    call = method(b"req", metadata=[("x-i", str(i))])
                    msg = await asyncio.wait_for(call, CALL_BOUND)
                    n = (call._rpc.s.sid - 1) // 2
                    assert msg == str(n).encode(), (msg, n)
                    init, trail = _counter_md(n)
                    assert await call.initial_metadata() == init, n
                    assert await call.trailing_metadata() == trail, n
                    fast += call._rpc.deframer is None

                for i in range(50):
                    await one(i)
                for r in range(9):
                    await asyncio.gather(*(one(1000 * r + i) for i in range(50)))
                assert fast == 500          # every call took the fast path
                assert 0 < len(ch._shapes) <= _rpc._SHAPES_MAX
                conns = _conns(ch)
                assert conns
                for c in conns:
                    assert len(c.valid) <= _h2conn._VALID_MAX
                    assert len(c.h2.decoder.cache) <= _hpack._DECODE_CACHE_MAX
                    assert len(c.h2.encoder.blocks) <= _hpack._BLOCKS_MAX
                    assert len(c.h2.encoder.cache) <= _hpack._CACHE_MAX
                _no_streams(ch)
    run(main)


def test_decoder_cache_used_and_never_stale():
    """300 calls to a server whose trailer bytes name one value, then,
    after an insertion into the dynamic table shifted the indices, another
    (the flip mode; once the table is full an insertion evicts as much as
    it adds): CachingDecoder is hit, yet every call's metadata is the one
    its number gives (a stale cached block would give the other value)."""
    async def main():
        hits = [0]
        real = _hpack.CachingDecoder.decode

        def counting(self, data, raw=False):
            if bytes(data) in self.cache:
                hits[0] += 1
            return real(self, data, raw)

        _hpack.CachingDecoder.decode = counting
        try:
            async with serve_fake("flip") as port:
                async with rg.Channel(f"127.0.0.1:{port}") as ch:
                    method = ch.unary_unary(PATH)
                    for _ in range(300):
                        call = method(b"req")
                        msg = await asyncio.wait_for(call, CALL_BOUND)
                        n = (call._rpc.s.sid - 1) // 2
                        assert msg == str(n).encode()
                        init = (("x-h", f"{n:05d}" * 800),) if n % 3 == 0 else ()
                        assert await call.initial_metadata() == init, n
                        want = (("x-t", "a" if n % 2 else "b"),)
                        assert await call.trailing_metadata() == want, n
        finally:
            _hpack.CachingDecoder.decode = real
        assert hits[0] > 0
    run(main)


# -- 3: response shapes, the fast path against the general path --

SHAPES = [
    ("ok", ("ok", b"K")),
    ("trailers_only_err", ("error", "NOT_FOUND", "nf")),
    ("trailers_only_ok", ("error", "UNIMPLEMENTED", None)),
    ("head_status_body", ("ok", b"K")),         # not Trailers-Only: no END_STREAM
    ("status_in_both", ("error", "NOT_FOUND", "late")),
    ("dup_ct", ("error", "UNKNOWN", "invalid content-type 'text/plain'")),  # the first
    ("ct_proto", ("ok", b"K")),
    ("ct_foo", ("ok", b"K")),                   # as the general path (prefix match)
    ("status_00", ("ok", b"K")),
    # a value with surrounding whitespace is malformed HTTP/2 (RFC 9113
    # 8.2.1): h2's validation fails the connection, on every path
    ("status_sp_lead", ("error", "INTERNAL", None)),
    ("status_sp_trail", ("error", "INTERNAL", None)),
    ("status_under", ("error", "UNKNOWN", None)),   # not an integer to grpcio
    ("status_plus", ("error", "UNKNOWN", None)),    # nor a sign
    ("no_status", ("error", "UNKNOWN", None)),
    ("dup_status", ("error", "NOT_FOUND", None)),     # the first
    ("compressed_no_enc", ("error", "INTERNAL", None)),
    ("size_1000", ("ok", b"x" * 1000)),         # exactly the receive bound
    ("size_1001", ("error", "RESOURCE_EXHAUSTED", None)),
    ("size_0", ("ok", b"")),
    ("split", ("ok", b"K")),
    ("padded", ("ok", b"K")),
]


@pytest.mark.parametrize("reply, want", SHAPES, ids=[s[0] for s in SHAPES])
def test_shape_same_outcome_on_every_path(reply, want):
    """Each reply shape three times over (the verdict cache is warm the
    second and third time) on the fast path, with a deadline, and read by
    a unary-stream call: the same code, details, message and trailing
    metadata each time, and the expected one."""
    async def main():
        opts = [("grpc.max_receive_message_length", 1000)]
        async with serve_fake("scripted") as port:
            async with rg.Channel(f"127.0.0.1:{port}", options=opts) as ch:
                md = [("x-reply", reply), ("x-k", "K")]
                method = ch.unary_unary(PATH)
                seen = []
                for _ in range(3):
                    seen.append(await _outcome(method(b"req", metadata=md)))
                    seen.append(await _outcome(method(b"req", metadata=md,
                                                      timeout=CALL_BOUND)))
                    seen.append(await _stream_outcome(ch, md))
                first = seen[0]
                for other in seen[1:]:
                    if first[0] == "error" and first[1] is rg.StatusCode.UNIMPLEMENTED:
                        assert other[:2] == first[:2], (seen, reply)
                    else:
                        assert other == first, (seen, reply)
                assert first[0] == want[0], first
                if want[0] == "ok":
                    assert first[1] == want[1]
                else:
                    assert first[1] is getattr(rg.StatusCode, want[1]), first
                    if want[2] is not None:
                        assert first[2] == want[2], first
                _no_streams(ch)
                # the connection still serves (its window was credited)
                ok = await _outcome(method(b"req", metadata=[("x-reply", "ok"), ("x-k", "K")]))
                assert ok[:2] == ("ok", b"K")
    run(main)


def test_head_with_status_and_body_does_not_leak_the_window():
    """A head carrying grpc-status without END_STREAM, then a 16,000-byte
    message and trailers, all in one batch, 1,200 times (19 MB, more than
    the 16 MiB connection window): every call gets its message, so every
    message's bytes were credited back to the connection."""
    async def main():
        async with serve_fake("scripted") as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                method = ch.unary_unary(PATH)
                md = [("x-reply", "head_status_body"), ("x-k", "k" * 16000)]
                for _ in range(24):
                    got = await asyncio.wait_for(asyncio.gather(
                        *(method(b"req", metadata=md) for _ in range(50))), CALL_BOUND)
                    assert all(g == b"k" * 16000 for g in got)
                _no_streams(ch)
    run(main)


def test_fast_path_reopens_the_connection_window():
    """1,200 fast-path calls of a 16,000-byte message each (19 MB through a
    16 MiB connection window): _whole credits every message and sends the
    WINDOW_UPDATE the engine queues, or the server would stall."""
    async def main():
        async with serve_fake("scripted") as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                method = ch.unary_unary(PATH)
                md = [("x-reply", "size_16000")]
                fast = 0
                for _ in range(120):
                    calls = [method(b"req", metadata=md) for _ in range(10)]
                    got = await asyncio.wait_for(asyncio.gather(*calls), CALL_BOUND)
                    assert all(g == b"x" * 16000 for g in got)
                    fast += sum(c._rpc.deframer is None for c in calls)
                    # every WINDOW_UPDATE queued went out at once, not with
                    # some later request (a receive-only stretch would stall)
                    for c in _conns(ch):
                        assert c.h2.data_to_send() == b""
                # a reply split across receives goes the general way; the
                # fast path alone carried more than the connection window
                assert fast * 16005 > 16 << 20, fast
    run(main)


# -- 4: cancellation races --

@contextlib.contextmanager
def _after_dispatch(hook):
    """Run ``hook(conn)`` right after each batch of events a connection
    dispatched: the woken calls have not resumed yet."""
    real = FastH2Connection._dispatch

    def dispatch(self, events):
        closed = real(self, events)
        hook(self)
        return closed

    FastH2Connection._dispatch = dispatch
    try:
        yield
    finally:
        FastH2Connection._dispatch = real


@pytest.mark.parametrize("how", ["call_cancel", "task_cancel"])
def test_cancel_between_arrival_and_resumption(how):
    """200 calls held by the server, then answered in one write; right
    after the batch that completed them, every third call is cancelled
    (call.cancel() or its task cancelled) before its task resumes: those
    raise CancelledError and end CANCELLED, the others get their own
    message, no stream is left, nothing reaches the loop's handler, and
    the connection serves the next calls."""
    async def main():
        gate = asyncio.Event()
        with _loop_errors() as errors:
            async with serve_fake("scripted", gate=gate) as port:
                async with rg.Channel(f"127.0.0.1:{port}") as ch:
                    gate.set()
                    method = ch.unary_unary(PATH)
                    assert await method(b"req", metadata=[("x-k", "warm")]) == b"warm"
                    gate.clear()
                    calls = [method(b"req", metadata=[("x-k", f"k{i}")]) for i in range(200)]
                    tasks = [asyncio.ensure_future(c) for c in calls]
                    victims = set(range(0, 200, 3))
                    hit = set()

                    def hook(conn):
                        for i in victims - hit:
                            s = calls[i]._rpc.s
                            if s is not None and s.ended:
                                hit.add(i)
                                if how == "call_cancel":
                                    assert calls[i].cancel() is True
                                else:
                                    tasks[i].cancel()

                    for _ in range(500):
                        if all(c._rpc.s is not None for c in calls):
                            break
                        await asyncio.sleep(0.01)
                    assert all(c._rpc.s is not None for c in calls)
                    with _after_dispatch(hook):
                        gate.set()
                        done, _ = await asyncio.wait(tasks, timeout=CALL_BOUND)
                    assert len(done) == 200
                    assert hit == victims
                    for i, (c, t) in enumerate(zip(calls, tasks)):
                        if i in victims:
                            assert t.cancelled(), (i, t)
                            assert c.cancelled() and c.done()
                            assert await c.code() is rg.StatusCode.CANCELLED
                        else:
                            assert t.result() == f"k{i}".encode()
                            assert await c.code() is rg.StatusCode.OK
                    _no_streams(ch)
                    got = await asyncio.gather(*(method(b"req", metadata=[("x-k", f"n{i}")])
                                                 for i in range(20)))
                    assert got == [f"n{i}".encode() for i in range(20)]
        assert errors == []
    run(main)


def test_thousand_calls_random_tenth_cancelled():
    """1,000 calls in flight (held by the server: 4 connections of 100
    streams, the rest wait for room), a random tenth cancelled -- some
    before the answers, some from another task while the answers arrive,
    some right after their batch -- : the others each get their own
    message, no stream is left, nothing reaches the loop's handler."""
    async def main():
        rnd = random.Random(1234)
        gate = asyncio.Event()
        record = Record()
        with _loop_errors() as errors:
            async with serve_fake("scripted", gate=gate, record=record) as port:
                async with rg.Channel(f"127.0.0.1:{port}") as ch:
                    method = ch.unary_unary(PATH)
                    calls = [method(b"req", metadata=[("x-k", f"k{i}")]) for i in range(1000)]
                    tasks = [asyncio.ensure_future(c) for c in calls]
                    victims = rnd.sample(range(1000), 100)
                    early, during, late = victims[:30], victims[30:65], victims[65:]
                    for _ in range(500):
                        if len(record.requests) >= 400:     # 4 connections full
                            break
                        await asyncio.sleep(0.01)
                    opened = 0
                    for i in early:
                        opened += calls[i]._rpc.s is not None
                        assert calls[i].cancel() is True
                    for _ in range(500):        # each opened stream was reset
                        if len(record.resets) >= opened:
                            break
                        await asyncio.sleep(0.01)
                    assert opened and len(record.resets) == opened
                    pending_late = set(late)

                    def hook(conn):
                        for i in list(pending_late):
                            s = calls[i]._rpc.s
                            if s is not None and s.ended:
                                pending_late.discard(i)
                                tasks[i].cancel()

                    async def canceller():
                        for i in during:
                            await asyncio.sleep(0)
                            calls[i].cancel()

                    with _after_dispatch(hook):
                        gate.set()
                        killer = asyncio.ensure_future(canceller())
                        done, _ = await asyncio.wait(tasks, timeout=CALL_BOUND)
                        await killer
                    assert len(done) == 1000
                    vset = set(victims)
                    for i, (c, t) in enumerate(zip(calls, tasks)):
                        if i in vset:
                            # a call already answered when cancel() came is not cancelled
                            if t.cancelled():
                                assert await c.code() is rg.StatusCode.CANCELLED
                            else:
                                assert t.result() == f"k{i}".encode()
                        else:
                            assert t.result() == f"k{i}".encode(), i
                    _no_streams(ch)
        assert errors == []
    run(main)


@pytest.mark.parametrize("timeout", [None, CALL_BOUND])
def test_one_call_awaited_by_three_tasks(timeout):
    """A unary call awaited by three tasks at once (grpc.aio allows it):
    all three get the message (the fast path, and with a deadline); an
    error reaches all three; cancelling one waiting task leaves the call
    to the others."""
    async def main():
        async with serve_fake("scripted") as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                method = ch.unary_unary(PATH)
                call = method(b"req", metadata=[("x-k", "one")], timeout=timeout)
                got = await asyncio.wait_for(asyncio.gather(call, call, call), CALL_BOUND)
                assert got == [b"one"] * 3
                assert await call == b"one"
                call = method(b"req", metadata=[("x-reply", "trailers_only_err")],
                              timeout=timeout)
                outs = await asyncio.wait_for(asyncio.gather(
                    call, call, call, return_exceptions=True), CALL_BOUND)
                assert all(isinstance(o, rg.AioRpcError) and o.code() is rg.StatusCode.NOT_FOUND
                           for o in outs), outs
                call = method(b"req", metadata=[("x-k", "two")], timeout=timeout)
                first = asyncio.ensure_future(call)
                await asyncio.sleep(0)
                second = asyncio.ensure_future(call)
                await asyncio.sleep(0)
                second.cancel()
                assert await asyncio.wait_for(first, CALL_BOUND) == b"two"
                assert second.cancelled()
                _no_streams(ch)
    run(main)


# -- 5: the connection lost after the heads --

def test_connection_lost_after_heads():
    """50 calls in flight (fast path, with a deadline, unary-stream) get
    their heads, then the server closes the TCP connection: all end with
    the same code, UNAVAILABLE (a connection that fails), no stream is
    left, and the next call dials a new connection."""
    async def main():
        gate = asyncio.Event()
        record = Record()
        async with serve_fake("heads_then_close", record=record, gate=gate) as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                method = ch.unary_unary(PATH)

                async def stream_one():
                    return await _stream_outcome(ch, None)

                outs = ([_outcome(method(b"req")) for _ in range(30)]
                        + [_outcome(method(b"req", timeout=CALL_BOUND)) for _ in range(10)]
                        + [stream_one() for _ in range(10)])
                tasks = [asyncio.ensure_future(o) for o in outs]
                for _ in range(200):
                    if len(record.requests) >= 50:
                        break
                    await asyncio.sleep(0.01)
                assert len(record.requests) == 50
                gate.set()
                results = await asyncio.wait_for(asyncio.gather(*tasks), CALL_BOUND)
                codes = {r[1] for r in results}
                assert codes == {rg.StatusCode.UNAVAILABLE}, results
                _no_streams(ch)
                assert await asyncio.wait_for(method(b"req"), CALL_BOUND) == b"ok"
                assert record.connections == 2
    run(main)


# -- 6: RST_STREAM after a complete response, GOAWAY with the responses --

def test_rst_stream_after_complete_response():
    """Each reply is complete, then RST_STREAM CANCEL on its stream: every
    call is OK on every path (the reset of an ended stream is ignored),
    on one connection, no stream left."""
    async def main():
        with _loop_errors() as errors:
            async with serve_fake("rst_after") as port:
                async with rg.Channel(f"127.0.0.1:{port}") as ch:
                    method = ch.unary_unary(PATH)
                    for _ in range(20):
                        assert await method(b"req") == b"ok"
                        assert await method(b"req", timeout=CALL_BOUND) == b"ok"
                        assert (await _stream_outcome(ch, None))[:2] == ("ok", b"ok")
                    got = await asyncio.wait_for(asyncio.gather(
                        *(method(b"req") for _ in range(100))), CALL_BOUND)
                    assert got == [b"ok"] * 100
                    assert len(_conns(ch)) == 1
                    _no_streams(ch)
        assert errors == []
    run(main)


def test_goaway_in_the_batch_of_the_responses():
    """60 calls held (fast path, with a deadline, unary-stream), then one
    write: GOAWAY NO_ERROR naming the last of them, then all the answers:
    every call is OK (no stream is above the GOAWAY's last id), the
    connection closes with its last stream, the next call dials a new
    one."""
    async def main():
        gate = asyncio.Event()
        record = Record()
        with _loop_errors() as errors:
            async with serve_fake("goaway_batch", record=record, gate=gate) as port:
                async with rg.Channel(f"127.0.0.1:{port}") as ch:
                    method = ch.unary_unary(PATH)
                    outs = ([_outcome(method(b"req")) for _ in range(40)]
                            + [_outcome(method(b"req", timeout=CALL_BOUND)) for _ in range(10)]
                            + [_stream_outcome(ch, None) for _ in range(10)])
                    tasks = [asyncio.ensure_future(o) for o in outs]
                    for _ in range(200):
                        if len(record.requests) >= 60:
                            break
                        await asyncio.sleep(0.01)
                    gate.set()
                    results = await asyncio.wait_for(asyncio.gather(*tasks), CALL_BOUND)
                    assert all(r[:2] == ("ok", b"ok") for r in results), results
                    assert await asyncio.wait_for(method(b"req"), CALL_BOUND) == b"ok"
                    assert record.connections == 2
                    _no_streams(ch)
        assert errors == []
    run(main)


# -- transparent retry: a call the server refused unprocessed goes again --

@pytest.mark.parametrize("mode, seen", [
    ("refuse_first", [(0, 1), (0, 3)]),        # REFUSED_STREAM: again, same connection
    ("goaway_first", [(0, 1), (1, 1)]),        # above GOAWAY's last stream: a new one
])
@pytest.mark.parametrize("kind", ["unary_unary", "unary_unary_deadline", "unary_stream"])
def test_refused_unprocessed_call_goes_again(mode, seen, kind):
    """As grpcio's transparent retry: a call whose one request went with
    its head and which the server refused without processing it
    (REFUSED_STREAM before any head, or a stream above a GOAWAY's last
    stream id) is sent again on another stream and succeeds; the server
    saw it twice, nothing else."""

    async def main():
        rec = Record()
        async with serve_fake(mode, record=rec) as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                if kind == "unary_stream":
                    call = ch.unary_stream("/x.Y/Z")(b"req", timeout=CALL_BOUND)
                    assert [m async for m in call] == [b"ok"]
                else:
                    timeout = CALL_BOUND if kind.endswith("deadline") else None
                    call = ch.unary_unary("/x.Y/Z")(b"req", timeout=timeout)
                    assert await call == b"ok"
                assert await call.code() is rg.StatusCode.OK
                assert call._rpc.retries == 1
        assert rec.requests == seen
    run(main)


def test_refused_calls_go_again_a_bounded_number_of_times():
    """A server refusing every stream: the call goes 1 + 3 times, then ends
    UNAVAILABLE; a call with a request stream (not kept) is not sent again."""

    async def main():
        rec = Record()
        async with serve_fake("refuse_conn0", record=rec) as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                with pytest.raises(rg.AioRpcError) as ei:
                    await ch.unary_unary("/x.Y/Z")(b"req", timeout=CALL_BOUND)
                assert ei.value.code() is rg.StatusCode.UNAVAILABLE, ei.value
                assert rec.requests == [(0, 1), (0, 3), (0, 5), (0, 7)]
                call = ch.stream_unary("/x.Y/Z")(iter([b"req"]), timeout=CALL_BOUND)
                with pytest.raises(rg.AioRpcError) as ei:
                    await call
                assert ei.value.code() is rg.StatusCode.UNAVAILABLE, ei.value
                assert len(rec.requests) == 5
    run(main)
