"""Acceptance tests for "Transports, servers and subprocesses on io_uring",
flow control: a slow reader pauses and resumes the writer, the write hard
cap drops only the flooded connection (acceptance 3), and ENOBUFS parks
reads of the provided buffer ring without losing a byte (acceptance 6).

Behaviour that is asyncio's runs on both loops of the ``loop`` fixture (the
asyncio case validates the test); ringline-only knobs and counters
(write_hard_cap, _ring_stats, io_uring_enter counts) run on ringline only.
The echo protocols and waiting helpers shared by the
test_transport_acceptance_*.py files are in support/transports.py.
"""
import asyncio
import hashlib
import random
import socket
import time

import pytest

from support import run
from support.transports import (HOST, EchoClient, collect_loop_errors, echo_round_trip,
                                wait_until)


# ---------------------------------------------------------------------------
# slow reader: flow control, and the hard cap on ringline

HIGH, LOW, CHUNK = 256 * 1024, 64 * 1024, 16 * 1024


class _FlowControlledWriter(asyncio.Protocol):
    """Writes CHUNKs for as long as it is not paused (the canonical
    well-behaved producer); stops for good at the first resume_writing
    after ``reader_started`` was set, then closes."""

    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.events = []
        self.paused = False
        self.written = 0
        self.max_size = 0
        self.max_size_paused = 0
        self.reader_started = False
        self.resumed_after_reading = loop.create_future()
        self.lost = loop.create_future()
        self.chunk = bytes(range(256)) * (CHUNK // 256)

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        transport.set_write_buffer_limits(high=HIGH, low=LOW)
        self.events.append("made")
        self._pump()

    def _pump(self):
        while not self.paused and not self.transport.is_closing():
            self.transport.write(self.chunk)
            self.written += len(self.chunk)
            self.max_size = max(self.max_size, self.transport.get_write_buffer_size())

    def pause_writing(self):
        assert not self.paused, "pause_writing twice in a row"
        self.paused = True
        self.events.append("pause")

    def resume_writing(self):
        assert self.paused, "resume_writing without pause_writing"
        self.paused = False
        self.events.append("resume")
        if self.reader_started:
            self.events.append("stop")
            if not self.resumed_after_reading.done():
                self.resumed_after_reading.set_result(None)
            # not close() right here: asyncio's selector transport (3.11)
            # then calls connection_lost twice when the buffer is empty
            self.loop.call_soon(self.transport.close)
            return
        self.loop.call_soon(self._pump)

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


class _PausedReader(asyncio.Protocol):
    """A client transport that reads nothing until resume_reading()."""

    def __init__(self, loop):
        self.received = 0
        self.eof = False
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        transport.pause_reading()

    def data_received(self, data):
        self.received += len(data)

    def eof_received(self):
        self.eof = True

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def _slow_reader_scenario(loop, client_kind):
    writers = []

    def factory():
        w = _FlowControlledWriter(loop)
        writers.append(w)
        return w

    server = await loop.create_server(factory, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    reader.setblocking(False)
    try:
        await loop.sock_connect(reader, (HOST, port))
        client = None
        if client_kind == "transport":
            _, client = await loop.create_connection(lambda: _PausedReader(loop),
                                                     sock=reader)
        await wait_until(lambda: writers and writers[0].transport, 5,
                          "the server connection")
        w = writers[0]
        # The client reads nothing: the kernel buffers fill and the writer
        # ends up paused for good.
        stable_since, last = None, None
        deadline = time.monotonic() + 10
        while True:
            state = (w.paused, w.written)
            if w.paused and state == last:
                if time.monotonic() - stable_since > 0.3:
                    break
            else:
                stable_since, last = time.monotonic(), state
            size = w.transport.get_write_buffer_size()
            if w.paused:
                w.max_size_paused = max(w.max_size_paused, size)
            assert time.monotonic() < deadline, f"writer never stalled: {w.events[-5:]}"
            await asyncio.sleep(0.01)
        stalled_size = w.transport.get_write_buffer_size()
        assert "pause" in w.events
        assert LOW < stalled_size <= HIGH + CHUNK, stalled_size
        assert w.max_size <= HIGH + CHUNK, w.max_size
        assert w.max_size_paused <= HIGH + CHUNK, w.max_size_paused
        assert not w.resumed_after_reading.done()

        # Now read: the buffer drains and resume_writing fires.
        w.reader_started = True
        if client is None:
            received = 0
            while True:
                data = await loop.sock_recv(reader, 256 * 1024)
                if not data:
                    break
                received += len(data)
        else:
            client.transport.resume_reading()
            assert await client.lost is None
            assert client.eof
            received = client.received
        await w.resumed_after_reading
        assert await w.lost is None
        assert received == w.written, (received, w.written)
        ev = [e for e in w.events if isinstance(e, str)]
        assert ev[0] == "made" and ev[-2:] == ["resume", "stop"], ev
        # strictly alternating pause/resume
        flow = [e for e in ev if e in ("pause", "resume")]
        assert flow == ["pause", "resume"] * (len(flow) // 2), flow
        assert [e for e in w.events if isinstance(e, tuple)] == [("lost", None)]
        return stalled_size
    finally:
        reader.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("client_kind", ["socket", "transport"])
def test_slow_reader_pause_and_resume_writing(loop, client_kind):
    """client 'socket': a plain socket nobody reads; 'transport': a client
    transport kept in pause_reading()."""
    errors = collect_loop_errors(loop)
    stalled = run(_slow_reader_scenario(loop, client_kind), timeout=25, loop=loop)
    print(f"\n[slow reader {type(loop).__name__}/{client_kind}] write buffer while "
          f"stalled: {stalled} "
          f"bytes (high={HIGH})")
    assert not errors, errors


def test_hard_cap_spares_a_flow_controlled_writer():
    """A cap above the high-water mark never drops a producer that honours
    pause_writing: only unbounded growth is punished."""
    import ringline

    lp = ringline.Loop(write_hard_cap=2 * HIGH)
    errors = collect_loop_errors(lp)
    try:
        run(_slow_reader_scenario(lp, "transport"), timeout=25, loop=lp)
    finally:
        lp.close()
    assert not errors, errors


class _CapServer(asyncio.Protocol):
    """Echo, except after b'FLOOD' it writes forever, ignoring pause_writing."""

    def __init__(self, loop, cap_on_transport, log):
        self.loop = loop
        self.cap_on_transport = cap_on_transport
        self.log = log
        self.flooding = False
        self.lost_calls = []
        self.lost = loop.create_future()
        log.append(self)

    def connection_made(self, transport):
        self.transport = transport
        if self.cap_on_transport:
            transport.set_write_hard_cap(self.cap_on_transport)

    def data_received(self, data):
        if data.startswith(b"FLOOD"):
            self.flooding = True
            self.loop.call_soon(self._flood)
        elif not self.flooding:
            self.transport.write(data)

    def pause_writing(self):
        pass        # deliberately ignored

    def _flood(self):
        if self.lost.done():
            return
        for _ in range(4):
            self.transport.write(b"f" * 65536)
        self.loop.call_soon(self._flood)

    def connection_lost(self, exc):
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)


@pytest.mark.parametrize("where", ["transport", "loop"])
def test_write_hard_cap_drops_only_the_flooded_connection(where):
    import ringline
    from ringline._core import WriteBufferOverflow

    cap = 1_000_000 + 7     # an odd number, to find in the message
    lp = ringline.Loop(write_hard_cap=cap) if where == "loop" else ringline.Loop()
    errors = collect_loop_errors(lp)
    log = []

    async def scenario():
        server = await lp.create_server(
            lambda: _CapServer(lp, cap if where == "transport" else 0, log), HOST, 0)
        port = server.sockets[0].getsockname()[1]
        # a well-behaved client connected before the flood, kept open across it
        steady = EchoClient(lp, b"before", close_when_echoed=False)
        await lp.create_connection(lambda: steady, HOST, port)
        assert await steady.echoed == b"before"
        flooded = socket.socket()
        flooded.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        flooded.setblocking(False)
        try:
            await lp.sock_connect(flooded, (HOST, port))
            await lp.sock_sendall(flooded, b"FLOOD")
            await wait_until(lambda: len(log) == 2 and log[1].flooding, 5, "the flood")
            exc = await asyncio.wait_for(log[1].lost, 10)
            assert isinstance(exc, WriteBufferOverflow), repr(exc)
            assert str(cap) in str(exc), str(exc)
            await asyncio.sleep(0.05)
            assert len(log[1].lost_calls) == 1, log[1].lost_calls
            # the flooded client sees its connection go away
            while True:
                try:
                    data = await asyncio.wait_for(lp.sock_recv(flooded, 1 << 20), 5)
                except ConnectionResetError:
                    break
                if not data:
                    break
        finally:
            flooded.close()
        # the other connection, and a new one, still work
        steady.buf.clear()
        steady.transport.write(b"after")
        await wait_until(lambda: bytes(steady.buf) == b"after", 5, "steady echo")
        assert not log[0].lost.done()
        await echo_round_trip(lp, port, b"new connection")
        steady.transport.close()
        assert await steady.lost is None
        server.close()
        await server.wait_closed()

    try:
        run(scenario(), timeout=25, loop=lp)
    finally:
        lp.close()
    # the drop is reported once, naming the overflow; nothing else went wrong
    assert all(isinstance(c.get("exception"), WriteBufferOverflow) for c in errors), errors
    assert len(errors) <= 1, errors


# ---------------------------------------------------------------------------
# ENOBUFS parking (ringline only)

ENOBUFS_CONNS, ENOBUFS_BYTES = 50, 1 << 20


class _HashingSink(asyncio.Protocol):
    """Hashes everything received; on EOF replies with the hex digest."""

    def connection_made(self, transport):
        self.transport = transport
        self.hash = hashlib.sha256()
        self.size = 0

    def data_received(self, data):
        self.hash.update(data)
        self.size += len(data)

    def eof_received(self):
        self.transport.write(b"%d %s" % (self.size, self.hash.hexdigest().encode()))
        self.transport.close()
        return True


class _HashingBufferedSink(asyncio.BufferedProtocol):
    """The same through get_buffer/buffer_updated with a 1000-byte buffer
    (several copies per 4 KiB ring buffer); pauses reading every 97 calls
    and resumes 1 ms later, so parked streams also get paused/resumed."""

    def __init__(self, loop):
        self.loop = loop
        self.buf = bytearray(1000)
        self.calls = 0

    def connection_made(self, transport):
        self.transport = transport
        self.hash = hashlib.sha256()
        self.size = 0

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.hash.update(memoryview(self.buf)[:nbytes])
        self.size += nbytes
        self.calls += 1
        if self.calls % 97 == 0:
            self.transport.pause_reading()
            self.loop.call_later(0.001, self.transport.resume_reading)

    eof_received = _HashingSink.eof_received


class _PatternSource(asyncio.Protocol):
    def __init__(self, loop, data):
        self.data = data
        self.reply = b""
        self.done = loop.create_future()

    def connection_made(self, transport):
        # a few writes, so sends and receives interleave
        for i in range(0, len(self.data), 256 * 1024):
            transport.write(self.data[i:i + 256 * 1024])
        transport.write_eof()

    def data_received(self, data):
        self.reply += data

    def connection_lost(self, exc):
        if exc is not None:
            self.done.set_exception(exc)
        else:
            self.done.set_result(self.reply)


@pytest.mark.parametrize("sink", ["protocol", "buffered-pausing"])
def test_enobufs_parks_and_loses_nothing(sink):
    import ringline

    nbufs, bufsize = 4, 4096
    lp = ringline.Loop(recv_buffers=nbufs, recv_buffer_size=bufsize)
    errors = collect_loop_errors(lp)

    async def scenario():
        factory = _HashingSink if sink == "protocol" else (lambda: _HashingBufferedSink(lp))
        server = await lp.create_server(factory, HOST, 0, backlog=ENOBUFS_CONNS + 16)
        port = server.sockets[0].getsockname()[1]
        sources, expected = [], []
        for i in range(ENOBUFS_CONNS):
            data = random.Random(i).randbytes(ENOBUFS_BYTES)
            expected.append(b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode()))
            src = _PatternSource(lp, data)
            sources.append(src)
            await lp.create_connection(lambda s=src: s, HOST, port)
        replies = await asyncio.gather(*(s.done for s in sources))
        server.close()
        await server.wait_closed()
        return replies, expected

    try:
        t0 = time.perf_counter()
        replies, expected = run(scenario(), timeout=30, loop=lp)
        elapsed = time.perf_counter() - t0
        stats = lp._ring_stats()
    finally:
        lp.close()
    from ringline._loop.backend import OPCODE_NUMBERS
    recvs = stats["ops"].get(OPCODE_NUMBERS["RECV"], 0)
    fills = ENOBUFS_CONNS * ENOBUFS_BYTES // bufsize
    print(f"\n[enobufs {sink}] {ENOBUFS_CONNS} x {ENOBUFS_BYTES} bytes through {nbufs} x {bufsize} "
          f"buffers in {elapsed:.2f} s: enobufs={stats['enobufs']} RECV armed={recvs} "
          f"iterations={stats['iterations']} enters={stats['enters']} "
          f"(>= {fills} buffer fills needed)")
    bad = [i for i, (r, e) in enumerate(zip(replies, expected)) if r != e]
    assert not bad, f"corrupted or short streams: {bad[:10]} e.g. {replies[bad[0]]!r}"
    assert stats["enobufs"] > 0, "the buffer ring never ran dry: no parking exercised"
    # Parking never spins: every loop iteration hands out at least one buffer
    # (a stream re-armed on a still-empty ring without progress would add
    # iterations that consume none).
    assert stats["iterations"] <= fills + 2_000, (stats["iterations"], fills)
    assert not errors, errors
