"""Asyncio protocols and helpers shared by the transport acceptance tests
(tests/loop/test_transport_acceptance_*.py).

Owns ``HOST`` (the loopback address they serve on), ``EchoServer`` (echoes,
closes on EOF, counts live connections in a ``new_stats()`` dict),
``EchoClient`` and ``echo_round_trip`` (one full connection: connect, send,
get the echo, close), ``wait_until`` (poll a predicate, bounded in time),
``collect_loop_errors`` (the loop's exception handler into a list) and
``is_ringline``. Stateless: every connection and server belongs to the test
that made it.
"""
import asyncio
import time


HOST = "127.0.0.1"


def is_ringline(loop):
    return type(loop).__module__.startswith("ringline")


def collect_loop_errors(loop):
    """Route the loop's exception handler into a list (keeps logs quiet and
    lets a test check what was reported)."""
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    return errors


async def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


class EchoServer(asyncio.Protocol):
    """Echoes; closes on EOF. Counts live connections on a shared dict."""

    def __init__(self, stats):
        self.stats = stats
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.stats["made"] += 1
        self.stats["active"] += 1

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.stats["active"] -= 1
        self.stats["lost"] += 1


def new_stats():
    return {"made": 0, "lost": 0, "active": 0}


class EchoClient(asyncio.Protocol):
    """Sends a payload; ``echoed`` resolves once it is all back; optionally
    closes right then; ``lost`` resolves on connection_lost."""

    def __init__(self, loop, payload, close_when_echoed=True):
        self.payload = payload
        self.buf = bytearray()
        self.close_when_echoed = close_when_echoed
        self.echoed = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.payload)

    def data_received(self, data):
        self.buf += data
        if len(self.buf) >= len(self.payload) and not self.echoed.done():
            self.echoed.set_result(bytes(self.buf))
            if self.close_when_echoed:
                self.transport.close()

    def connection_lost(self, exc):
        if not self.echoed.done():
            self.echoed.set_exception(exc or ConnectionError("closed before echo"))
        if not self.lost.done():
            self.lost.set_result(exc)


async def echo_round_trip(loop, port, payload=b"ping"):
    """One full connection: connect, send, get the echo, close."""
    client = EchoClient(loop, payload)
    await loop.create_connection(lambda: client, HOST, port)
    assert await client.echoed == payload
    assert await client.lost is None
