"""A server lowering MAX_CONCURRENT_STREAMS on a live HTTP/2 connection:
ringline's client connections (the native engine under ringline.grpc, the
``h2`` library under ringline.http, which skips h2's own stream count on
most opens) must keep to the new limit from the SETTINGS on, the requests
over it waiting for a stream to end -- never an extra stream the server
would refuse (h2 on the server side fails the whole connection then).

The fake h2c server of tests/support/grpc_fake.py, mode lower_streams,
answers the first request together with SETTINGS lowering the limit to
``LOWERED_STREAMS`` and holds later requests while the test's gate is
clear; the record says which streams reached it. The clients may use one
connection only (``ringline.max_connections`` 1, ``Limits(max_connections=1)``):
with more, the requests over the limit go to new connections instead of
waiting, which is also correct. Each test runs on both backends (the ``run``
fixture).
"""
import asyncio

import pytest

pytest.importorskip("h2")

import ringline.grpc as rg  # noqa: E402
import ringline.http as rh  # noqa: E402
from support.grpc_fake import LOWERED_STREAMS, Record, serve_fake  # noqa: E402
from support.transports import wait_until  # noqa: E402

CALL_BOUND = 30.0
WAIT = 10.0
N = 10                  # requests launched at once after the limit came down
OK_BODY = b"\x00\x00\x00\x00\x02ok"        # the fake's "ok" reply, as plain HTTP sees it


async def _over_the_limit(first, launch, record, gate, conns):
    """The first request brings the lower limit; then N at once: only
    LOWERED_STREAMS reach the server while it holds them, the rest wait;
    released, all complete on the one connection."""
    await first()
    tasks = [asyncio.ensure_future(launch()) for _ in range(N)]
    await wait_until(lambda: len(record.requests) == 1 + LOWERED_STREAMS, WAIT,
                     "the streams the lower limit allows")
    for _ in range(20):         # turns in which an extra stream would go out
        await asyncio.sleep(0.01)
    assert len(record.requests) == 1 + LOWERED_STREAMS, record.requests
    assert not any(t.done() for t in tasks)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert len(record.requests) == 1 + N
    assert record.connections == 1 and not record.closed
    assert len(conns()) == 1
    return results


def test_grpc_keeps_to_a_lowered_stream_limit(run):
    record, gate = Record(), asyncio.Event()

    async def main():
        async with serve_fake("lower_streams", record, gate) as port:
            async with rg.Channel(f"127.0.0.1:{port}",
                                  options=[("ringline.max_connections", 1)]) as ch:
                unary = ch.unary_unary("/x.Y/Z")

                async def first():
                    gate.set()
                    assert await unary(b"req", timeout=CALL_BOUND) == b"ok"
                    gate.clear()
                results = await _over_the_limit(
                    first, lambda: unary(b"req", timeout=CALL_BOUND), record, gate,
                    lambda: ch._pool.h2conns)
                assert results == [b"ok"] * N
    run(main)


def test_http_keeps_to_a_lowered_stream_limit(run):
    record, gate = Record(), asyncio.Event()

    async def main():
        async with serve_fake("lower_streams", record, gate) as port:
            async with rh.Client(base_url=f"http://127.0.0.1:{port}", http2=True, http1=False,
                                 timeout=CALL_BOUND, limits=rh.Limits(max_connections=1)) as c:
                async def first():
                    gate.set()
                    assert (await c.get("/a")).content == OK_BODY
                    gate.clear()

                async def get():
                    return (await c.get("/b")).content
                results = await _over_the_limit(
                    first, get, record, gate,
                    lambda: [h for p in c._pools.values() for h in p.h2conns])
                assert results == [OK_BODY] * N
    run(main)
