"""Stream-id exhaustion on ringline's HTTP/2 client connections: a client
opens at most 2^30 streams on one connection (odd ids up to 2^31-1), and
running out must never fail a call.

The stream that takes id 2^31-1 retires its connection: the calls in flight
there finish on it, it takes no new stream (``has_room()`` False), later
calls go to a new connection, and the old one closes with its last stream.
A call that finds no id left (the connection's next id already past
2^31-1) is moved to a new connection once; if that one has none either,
the call fails with a clear error instead of looping. No HEADERS frame ever
carries an id above 2^31-1 (the 31-bit field would wrap it onto an id
already used): the native engine refuses it before encoding anything.

Each scenario runs through ringline.grpc (the native engine, ``H2Engine``,
started near the end of the id space through its ``next_sid``) and through
ringline.http's HTTP/2 client (the ``h2`` library's engine, through its
``highest_outbound_stream_id``), against the fake h2c server of
tests/support/grpc_fake.py, which records every request's connection and
stream id. The I/O tests take the ``run`` fixture: each runs on both
backends.
"""
import asyncio

import pytest

pytest.importorskip("h2")

import h2.exceptions as h2x  # noqa: E402
import hpack  # noqa: E402

import ringline.grpc as rg  # noqa: E402
import ringline.http as rh  # noqa: E402
from ringline.http import _h2frames as F  # noqa: E402
from support.grpc_fake import Record, serve_fake  # noqa: E402
from support.transports import wait_until  # noqa: E402

SID_MAX = 2 ** 31 - 1
CALL_BOUND = 30.0
WAIT = 10.0
OK_BODY = b"\x00\x00\x00\x00\x02ok"        # the fake's "ok" reply, as plain HTTP sees it


def _exhaust_new_connections(pool):
    """Every connection ``pool`` dials from now on starts with no id left."""
    factory = pool.h2_factory

    async def spent(raw, p):
        c = await factory(raw, p)
        _jump(c, SID_MAX + 2)
        return c
    pool.h2_factory = spent


def _jump(conn, next_sid):
    """Make ``next_sid`` the next stream id of ``conn``, on either engine."""
    if isinstance(conn.h2, F.H2Engine):
        conn.h2.next_sid = next_sid
    else:
        conn.h2.highest_outbound_stream_id = next_sid - 2


def _only_pool(client):
    (pool,) = client._pools.values()
    return pool


# -- the native engine, alone --

class _SpyEncoder:
    """hpack's encoder, counting the header blocks it encodes."""

    def __init__(self):
        self.inner = hpack.Encoder()
        self.calls = 0

    def encode(self, headers):
        self.calls += 1
        return self.inner.encode(headers)


def _engine():
    enc = _SpyEncoder()
    e = F.H2Engine(1 << 20, 16 << 20, 100, 4096, 65536, enc, hpack.Decoder())
    e.initiate()
    e.data_to_send()
    return e, enc


_HEAD = [(b":method", b"POST"), (b":path", b"/x.Y/Z")]


def test_engine_opens_the_last_id_then_refuses_past_it():
    e, enc = _engine()
    e.next_sid = SID_MAX
    assert e.get_next_available_stream_id() == SID_MAX
    e.send_headers(SID_MAX, _HEAD, True)
    out = e.data_to_send()
    assert out[3] == 1 and int.from_bytes(out[5:9], "big") == SID_MAX     # HEADERS, 2^31-1
    assert e.next_sid == SID_MAX + 2 and enc.calls == 1
    with pytest.raises(h2x.NoAvailableStreamIDError):
        e.get_next_available_stream_id()
    with pytest.raises(h2x.NoAvailableStreamIDError):
        e.send_headers(SID_MAX + 2, _HEAD, True)
    # nothing queued, nothing encoded (the HPACK table did not move)
    assert e.data_to_send() == b"" and enc.calls == 1


def test_engine_refuses_headers_above_the_id_space_and_emits_nothing():
    e, enc = _engine()
    e.next_sid = SID_MAX + 2            # the ids are used up
    with pytest.raises(h2x.NoAvailableStreamIDError) as ei:
        e.send_headers(SID_MAX + 2, _HEAD, True)
    assert "2^31-1" in str(ei.value)
    assert e.data_to_send() == b"" and enc.calls == 0
    assert e.highest_sid == 0           # no stream was registered


def test_engine_next_sid_takes_only_odd_unused_ids():
    e, _ = _engine()
    e.next_sid = 101
    e.send_headers(101, _HEAD, True)
    for bad in (102, 101, 99, 1):       # even, or an id already used (or below it)
        with pytest.raises(ValueError):
            e.next_sid = bad
    assert e.next_sid == 103


# -- ringline.grpc (the native engine) --

def test_grpc_calls_move_to_a_new_connection_when_the_ids_run_out(run):
    record = Record()

    async def main():
        async with serve_fake("ok", record) as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                unary = ch.unary_unary("/x.Y/Z")
                assert await unary(b"req", timeout=CALL_BOUND) == b"ok"
                pool = ch._pool
                old = pool.h2conns[0]
                _jump(old, SID_MAX - 2)
                calls = []
                for i in range(4):
                    call = unary(b"req", timeout=CALL_BOUND)
                    assert await call == b"ok"
                    assert await call.code() is rg.StatusCode.OK
                    calls.append(call)
                    # the call that took 2^31-1 retired the connection
                    assert old.going_away is (i >= 1)
                conns = [c._rpc.conn for c in calls]
                assert conns[0] is old and conns[1] is old      # 2^31-3, then 2^31-1
                new = conns[2]
                assert new is not old and conns[3] is new
                # the old connection closed with its last stream; one is open
                assert old.going_away and old.closed
                assert pool.h2conns == [new] and pool.opened == 1
                await wait_until(lambda: 0 in record.closed, WAIT, "the old connection's end")
    run(main)
    assert record.requests == [(0, 1), (0, SID_MAX - 2), (0, SID_MAX), (1, 1), (1, 3)]
    assert max(sid for _, sid in record.requests) == SID_MAX


def test_grpc_calls_in_flight_finish_on_the_old_connection(run):
    record, gate = Record(), asyncio.Event()

    async def main():
        gate.set()
        async with serve_fake("ok", record, gate) as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                unary = ch.unary_unary("/x.Y/Z")
                assert await unary(b"req", timeout=CALL_BOUND) == b"ok"
                pool = ch._pool
                old = pool.h2conns[0]
                _jump(old, SID_MAX - 2)
                gate.clear()                # the server holds its answers
                calls = [unary(b"req", timeout=CALL_BOUND) for _ in range(4)]
                tasks = [asyncio.ensure_future(c) for c in calls]
                await wait_until(lambda: len(record.requests) == 5, WAIT, "four requests")
                # the ids ran out with two calls in flight: going away, still open
                assert old.going_away and not old.closed and not old.has_room()
                assert len(old.streams) == 2 and not any(t.done() for t in tasks)
                gate.set()
                assert await asyncio.gather(*tasks) == [b"ok"] * 4
                conns = [c._rpc.conn for c in calls]
                assert conns[0] is old and conns[1] is old
                new = conns[2]
                assert new is not old and conns[3] is new
                await wait_until(lambda: old.closed, WAIT, "the old connection to close")
                assert pool.h2conns == [new]
                assert await unary(b"req", timeout=CALL_BOUND) == b"ok"
                await wait_until(lambda: 0 in record.closed, WAIT, "the old connection's end")
    run(main)
    assert sorted(record.requests) == [(0, 1), (0, SID_MAX - 2), (0, SID_MAX), (1, 1), (1, 3),
                                       (1, 5)]


def test_grpc_call_finding_no_id_moves_to_a_new_connection(run):
    record = Record()

    async def main():
        async with serve_fake("ok", record) as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                unary = ch.unary_unary("/x.Y/Z")
                assert await unary(b"req", timeout=CALL_BOUND) == b"ok"
                old = ch._pool.h2conns[0]
                _jump(old, SID_MAX + 2)     # used up, not yet known to the pool
                assert old.has_room()
                call = unary(b"req", timeout=CALL_BOUND)
                assert await call == b"ok"
                assert call._rpc.conn is not old
                assert old.closed and ch._pool.h2conns == [call._rpc.conn]
    run(main)
    assert record.requests == [(0, 1), (1, 1)]


def test_grpc_no_id_on_the_new_connection_either_is_a_clear_error(run):
    record = Record()

    async def main():
        async with serve_fake("ok", record) as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                _exhaust_new_connections(ch._pool)
                with pytest.raises(rg.AioRpcError) as ei:
                    await ch.unary_unary("/x.Y/Z")(b"req", timeout=CALL_BOUND)
                assert ei.value.code() is rg.StatusCode.UNAVAILABLE, ei.value
                assert "stream id" in ei.value.details(), ei.value
                assert not ch._pool.h2conns and ch._pool.opened == 0
                await wait_until(lambda: len(record.closed) == 2, WAIT, "both connections' end")
    run(main)
    assert record.connections == 2 and record.requests == []      # moved once, not more


# -- ringline.http's HTTP/2 client (the h2 library's engine) --

def _client(port):
    return rh.Client(base_url=f"http://127.0.0.1:{port}", http2=True, http1=False,
                     timeout=CALL_BOUND)


def test_http_requests_move_to_a_new_connection_when_the_ids_run_out(run):
    record = Record()

    async def main():
        async with serve_fake("ok", record) as port:
            async with _client(port) as c:
                assert (await c.get("/a")).content == OK_BODY
                pool = _only_pool(c)
                old = pool.h2conns[0]
                _jump(old, SID_MAX - 2)
                for i in range(4):
                    r = await c.post("/b", content=b"body")     # not idempotent: still moved
                    assert r.status_code == 200 and r.content == OK_BODY
                    assert old.going_away is (i >= 1)
                assert old.closed and len(pool.h2conns) == 1 and pool.h2conns[0] is not old
                assert pool.opened == 1
                await wait_until(lambda: 0 in record.closed, WAIT, "the old connection's end")
    run(main)
    assert record.requests == [(0, 1), (0, SID_MAX - 2), (0, SID_MAX), (1, 1), (1, 3)]


def test_http_requests_in_flight_finish_on_the_old_connection(run):
    record, gate = Record(), asyncio.Event()

    async def main():
        gate.set()
        async with serve_fake("ok", record, gate) as port:
            async with _client(port) as c:
                assert (await c.get("/a")).content == OK_BODY
                pool = _only_pool(c)
                old = pool.h2conns[0]
                _jump(old, SID_MAX - 2)
                gate.clear()
                tasks = [asyncio.ensure_future(c.get(f"/{i}")) for i in range(4)]
                await wait_until(lambda: len(record.requests) == 5, WAIT, "four requests")
                assert old.going_away and not old.closed and not old.has_room()
                assert len(old.streams) == 2 and not any(t.done() for t in tasks)
                gate.set()
                for r in await asyncio.gather(*tasks):
                    assert r.status_code == 200 and r.content == OK_BODY
                await wait_until(lambda: old.closed, WAIT, "the old connection to close")
                assert len(pool.h2conns) == 1 and pool.h2conns[0] is not old
                await wait_until(lambda: 0 in record.closed, WAIT, "the old connection's end")
    run(main)
    assert sorted(record.requests) == [(0, 1), (0, SID_MAX - 2), (0, SID_MAX), (1, 1), (1, 3)]


def test_http_streamed_request_finding_no_id_moves_to_a_new_connection(run):
    record = Record()

    async def body():
        yield b"part one, "
        yield b"part two"

    async def main():
        async with serve_fake("ok", record) as port:
            async with _client(port) as c:
                assert (await c.get("/a")).content == OK_BODY
                pool = _only_pool(c)
                old = pool.h2conns[0]
                _jump(old, SID_MAX + 2)     # used up, not yet known to the pool
                # a streamed body is never sent twice; nothing was sent here
                r = await c.post("/b", content=body())
                assert r.status_code == 200 and r.content == OK_BODY
                assert old.closed and len(pool.h2conns) == 1 and pool.h2conns[0] is not old
    run(main)
    assert record.requests == [(0, 1), (1, 1)]


def test_http_no_id_on_the_new_connection_either_is_a_clear_error(run):
    record = Record()

    async def main():
        async with serve_fake("ok", record) as port:
            async with _client(port) as c:
                assert (await c.get("/a")).content == OK_BODY
                pool = _only_pool(c)
                _jump(pool.h2conns[0], SID_MAX + 2)
                _exhaust_new_connections(pool)
                with pytest.raises(rh.TransportError) as ei:
                    await c.get("/b")
                assert "no HTTP/2 stream id left" in str(ei.value)
                assert not pool.h2conns and pool.opened == 0
                await wait_until(lambda: len(record.closed) == 2, WAIT, "both connections' end")
    run(main)
    assert record.connections == 2 and record.requests == [(0, 1)]
