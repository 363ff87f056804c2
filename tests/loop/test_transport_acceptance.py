"""Acceptance tests for "Transports, servers and subprocesses on io_uring"
(acceptance 2-6): connection churn without leaks, slow readers and the write
hard cap, failing peers (reset mid-write, garbage TLS, half-close), syscall
economy under strace, and ENOBUFS parking of the provided buffer ring.

Behaviour that is asyncio's runs on both loops of the ``loop`` fixture (the
asyncio case validates the test); ringline-only knobs and counters
(write_hard_cap, _ring_stats, io_uring_enter counts) run on ringline only.
"""
import asyncio
import datetime
import gc
import hashlib
import ipaddress
import os
import random
import re
import resource
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time

import pytest

from support import TOOLS, run

HOST = "127.0.0.1"


# ---------------------------------------------------------------------------
# helpers

def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _is_ringline(loop):
    return type(loop).__module__.startswith("ringline")


def _collect_loop_errors(loop):
    """Route the loop's exception handler into a list (keeps logs quiet and
    lets a test check what was reported)."""
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    return errors


async def _wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


class _EchoServer(asyncio.Protocol):
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


def _new_stats():
    return {"made": 0, "lost": 0, "active": 0}


class _EchoClient(asyncio.Protocol):
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


async def _echo_round_trip(loop, port, payload=b"ping"):
    """One full connection: connect, send, get the echo, close."""
    client = _EchoClient(loop, payload)
    await loop.create_connection(lambda: client, HOST, port)
    assert await client.echoed == payload
    assert await client.lost is None


# ---------------------------------------------------------------------------
# 1. churn: fds and memory return to the baseline

CHURN_SEQUENTIAL = 20_000
CHURN_HELD = 1_000
CHURN_WARMUP = 3_000
# RSS margin after the warm-up. The warm-up sizes pymalloc's arenas, the
# loop's free lists, the kernel-facing structures (ring, buffer ring) and
# the allocator's heap for the peak of 1,000 simultaneous connections; what
# is left is fragmentation noise (a few pages per arena that pymalloc cannot
# hand back). 8 MiB over 21,000 further connections is < 400 bytes per
# connection: leaking any per-connection object (a transport with its
# socket, protocol and dicts is well over 1 KiB) would exceed it.
RSS_MARGIN = 8 * 1024 * 1024


def _ensure_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def _hold_many(loop, port, stats, n, base_fds):
    """Open n connections at once (each echoes once), hold them, close all."""
    clients = [_EchoClient(loop, b"held %d" % i, close_when_echoed=False)
               for i in range(n)]
    await asyncio.gather(*(loop.create_connection(lambda c=c: c, HOST, port)
                           for c in clients))
    await asyncio.gather(*(c.echoed for c in clients))
    await _wait_until(lambda: stats["active"] == n, 10, f"{n} server connections")
    held_fds = _open_fds()
    # both ends of every connection are ours
    assert held_fds >= base_fds + 2 * n, (held_fds, base_fds)
    for c in clients:
        c.transport.close()
    lost = await asyncio.gather(*(c.lost for c in clients))
    assert all(exc is None for exc in lost)
    await _wait_until(lambda: stats["active"] == 0, 10, "server side to close")
    return held_fds


async def _churn(loop, port, stats, n):
    for i in range(n):
        await _echo_round_trip(loop, port, b"churn %d" % i)
    await _wait_until(lambda: stats["active"] == 0, 10, "server side to close")


def test_churn_fds_and_rss_return_to_baseline(loop):
    _ensure_nofile(2 * CHURN_HELD + 200)
    errors = _collect_loop_errors(loop)
    stats = _new_stats()
    server = run(loop.create_server(lambda: _EchoServer(stats), HOST, 0,
                                          backlog=CHURN_HELD + 100), loop=loop)
    port = server.sockets[0].getsockname()[1]
    try:
        # warm-up: the same shapes as the measured run
        run(_churn(loop, port, stats, CHURN_WARMUP), timeout=60, loop=loop)
        run(_hold_many(loop, port, stats, CHURN_HELD, _open_fds()), timeout=30, loop=loop)
        gc.collect()
        base_fds, base_rss = _open_fds(), _rss_bytes()
        ring = _is_ringline(loop)
        base_inflight = loop._ring_stats()["inflight"] if ring else None

        t0 = time.perf_counter()
        run(_churn(loop, port, stats, CHURN_SEQUENTIAL), timeout=60, loop=loop)
        churn_s = time.perf_counter() - t0
        gc.collect()
        fds_after_churn, rss_after_churn = _open_fds(), _rss_bytes()

        held_fds = run(_hold_many(loop, port, stats, CHURN_HELD, base_fds),
                       timeout=30, loop=loop)
        gc.collect()
        fds_after, rss_after = _open_fds(), _rss_bytes()
        print(f"\n[churn {type(loop).__name__}] {CHURN_SEQUENTIAL} sequential "
              f"connections in {churn_s:.2f} s ({churn_s / CHURN_SEQUENTIAL * 1e6:.0f} us "
              f"each); fds baseline={base_fds} after-churn={fds_after_churn} "
              f"held={held_fds} after={fds_after}; RSS baseline={base_rss / 2**20:.1f} MiB "
              f"after-churn={rss_after_churn / 2**20:.1f} MiB after={rss_after / 2**20:.1f} MiB")
        assert stats["made"] == stats["lost"] == CHURN_WARMUP + CHURN_SEQUENTIAL + 2 * CHURN_HELD
        assert fds_after_churn == base_fds, "fd leak over sequential churn"
        assert fds_after == base_fds, "fd leak after 1,000 held connections"
        assert rss_after_churn - base_rss <= RSS_MARGIN, (
            f"RSS grew {(rss_after_churn - base_rss) / 2**20:.1f} MiB over "
            f"{CHURN_SEQUENTIAL} connections")
        assert rss_after - base_rss <= RSS_MARGIN, (
            f"RSS grew {(rss_after - base_rss) / 2**20:.1f} MiB")
        if ring:
            # no operation (receive, send, cancel) outlives its connection
            stats_after = loop._ring_stats()
            print(f"[churn ring] inflight baseline={base_inflight} "
                  f"after={stats_after['inflight']} stale_cqes={stats_after['stale_cqes']}")
            assert stats_after["inflight"] == base_inflight, (stats_after, base_inflight)
        assert not errors, errors
    finally:
        server.close()
        run(server.wait_closed(), loop=loop)


# ---------------------------------------------------------------------------
# 2. slow reader: flow control, and the hard cap on ringline

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
        await _wait_until(lambda: writers and writers[0].transport, 5,
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
    errors = _collect_loop_errors(loop)
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
    errors = _collect_loop_errors(lp)
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
    errors = _collect_loop_errors(lp)
    log = []

    async def scenario():
        server = await lp.create_server(
            lambda: _CapServer(lp, cap if where == "transport" else 0, log), HOST, 0)
        port = server.sockets[0].getsockname()[1]
        # a well-behaved client connected before the flood, kept open across it
        steady = _EchoClient(lp, b"before", close_when_echoed=False)
        await lp.create_connection(lambda: steady, HOST, port)
        assert await steady.echoed == b"before"
        flooded = socket.socket()
        flooded.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        flooded.setblocking(False)
        try:
            await lp.sock_connect(flooded, (HOST, port))
            await lp.sock_sendall(flooded, b"FLOOD")
            await _wait_until(lambda: len(log) == 2 and log[1].flooding, 5, "the flood")
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
        await _wait_until(lambda: bytes(steady.buf) == b"after", 5, "steady echo")
        assert not log[0].lost.done()
        await _echo_round_trip(lp, port, b"new connection")
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
# 3. failing peers

class _RoleServer(asyncio.Protocol):
    """b'F' first: write a large amount (flow-controlled); otherwise echo.
    Records every callback."""

    def __init__(self, loop, log):
        self.loop = loop
        self.calls = []
        self.role = None
        self.paused = False
        self.written = 0
        self.lost = loop.create_future()
        log.append(self)

    def connection_made(self, transport):
        self.transport = transport
        self.calls.append("made")

    def data_received(self, data):
        if self.role is None:
            self.role = "firehose" if data[:1] == b"F" else "echo"
            if self.role == "firehose":
                self._pump()
                return
        if self.role == "echo":
            self.transport.write(data)

    def _pump(self):
        chunk = b"z" * 262144
        while not self.paused and not self.transport.is_closing() and self.written < 1 << 30:
            self.transport.write(chunk)
            self.written += len(chunk)

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.loop.call_soon(self._pump)

    def eof_received(self):
        self.calls.append("eof")

    def connection_lost(self, exc):
        self.calls.append(("lost", exc))
        if not self.lost.done():
            self.lost.set_result(exc)


def test_peer_reset_mid_write(loop):
    errors = _collect_loop_errors(loop)
    log = []

    async def scenario():
        server = await loop.create_server(lambda: _RoleServer(loop, log), HOST, 0)
        port = server.sockets[0].getsockname()[1]
        peer = socket.socket()
        peer.setblocking(False)
        try:
            await loop.sock_connect(peer, (HOST, port))
            await loop.sock_sendall(peer, b"F")
            got = 0
            while got < 512 * 1024:       # the server is writing
                data = await loop.sock_recv(peer, 65536)
                assert data
                got += len(data)
            # paused: the kernel buffers are full and the transport holds a
            # backlog (and, on ringline, a send in flight)
            await _wait_until(lambda: log and log[0].paused, 10,
                              "the server to queue more than the kernel holds")
            # reset: SO_LINGER 0 then close sends an RST
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            peer.close()
        exc = await asyncio.wait_for(log[0].lost, 5)
        await asyncio.sleep(0.1)
        await _echo_round_trip(loop, port, b"still serving")
        server.close()
        await server.wait_closed()
        return exc

    exc = run(scenario(), timeout=20, loop=loop)
    srv = log[0]
    lost_calls = [c for c in srv.calls if isinstance(c, tuple)]
    print(f"\n[reset {type(loop).__name__}] connection_lost({exc!r}); "
          f"server queued {srv.written} bytes")
    # asyncio reports the reset as whichever of read/write sees it first
    assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)
    assert len(lost_calls) == 1, srv.calls
    assert srv.calls[0] == "made" and srv.calls[-1] == lost_calls[0], srv.calls
    assert "eof" not in srv.calls, srv.calls
    assert len(log) == 2 and log[1].calls == ["made", "eof", ("lost", None)], log[1].calls
    assert not errors, errors


def _make_tls_contexts(tmp_path):
    """A self-signed certificate for localhost/127.0.0.1: (server, client)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        from test.test_asyncio import utils as test_utils   # CPython's test certs
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(test_utils.ONLYCERT, test_utils.ONLYKEY)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        return server, client
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert_path)
    return server, client


class _CountingEcho(asyncio.Protocol):
    def __init__(self, log):
        self.made = 0
        self.lost = []
        log.append(self)

    def connection_made(self, transport):
        self.made += 1
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.lost.append(exc)


def test_garbage_tls_client_is_dropped_and_server_keeps_serving(loop, tmp_path):
    errors = _collect_loop_errors(loop)
    server_ctx, client_ctx = _make_tls_contexts(tmp_path)
    log = []
    rng = random.Random(20240601)
    garbage = [
        rng.randbytes(4096),                                   # pure noise
        b"\x16\x03\x01\x02\x00" + rng.randbytes(512),          # a handshake record header, then noise
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                  # plaintext to a TLS port
    ]

    async def scenario():
        server = await loop.create_server(lambda: _CountingEcho(log), HOST, 0,
                                          ssl=server_ctx, ssl_handshake_timeout=5)
        port = server.sockets[0].getsockname()[1]
        for junk in garbage:
            sock = socket.socket()
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (HOST, port))
                await loop.sock_sendall(sock, junk)
                # the server closes (maybe after a TLS alert): EOF or a reset
                while True:
                    try:
                        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                    except ConnectionResetError:
                        break
                    if not data:
                        break
            finally:
                sock.close()
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=client_ctx, server_hostname="localhost")
        writer.write(b"hello over tls\n")
        assert await reader.readline() == b"hello over tls\n"
        writer.close()
        await writer.wait_closed()
        await _wait_until(lambda: log and log[-1].lost, 5, "the TLS server side to close")
        server.close()
        await server.wait_closed()

    run(scenario(), timeout=25, loop=loop)
    # the app protocol of a failed handshake is never connected; whatever was
    # created gets connection_lost at most once, and only after connection_made
    for p in log:
        assert len(p.lost) <= 1 and len(p.lost) <= p.made, (p.made, p.lost)
    good = [p for p in log if p.made]
    assert len(good) == 1 and good[0].lost == [None], [(p.made, p.lost) for p in log]
    assert not errors, errors


class _HalfCloseServer(asyncio.Protocol):
    def __init__(self, loop, keep_open, log):
        self.loop = loop
        self.keep_open = keep_open
        self.calls = []
        self.data = b""
        self.closing_after_eof = None
        self.lost = loop.create_future()
        log.append(self)

    def connection_made(self, transport):
        self.transport = transport
        self.calls.append("made")

    def data_received(self, data):
        self.calls.append("data")
        self.data += data

    def eof_received(self):
        self.calls.append("eof")
        if self.keep_open:
            self.loop.call_soon(self._reply)
        return self.keep_open

    def _reply(self):
        self.closing_after_eof = self.transport.is_closing()
        self.transport.write(b"reply:" + self.data)
        self.transport.close()

    def connection_lost(self, exc):
        self.calls.append(("lost", exc))
        self.lost.set_result(exc)


class _HalfCloseClient(asyncio.Protocol):
    def __init__(self, loop):
        self.calls = []
        self.data = b""
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.calls.append("made")
        transport.write(b"request")
        transport.write_eof()

    def data_received(self, data):
        self.calls.append("data")
        self.data += data

    def eof_received(self):
        self.calls.append("eof")

    def connection_lost(self, exc):
        self.calls.append(("lost", exc))
        self.lost.set_result(exc)


def _squash(calls):
    out = []
    for c in calls:
        if c == "data" and out and out[-1] == "data":
            continue
        out.append(c)
    return out


@pytest.mark.parametrize("keep_open", [True, False], ids=["keep-open", "close"])
def test_half_close_eof_received(loop, keep_open):
    errors = _collect_loop_errors(loop)
    log = []

    async def scenario():
        server = await loop.create_server(
            lambda: _HalfCloseServer(loop, keep_open, log), HOST, 0)
        port = server.sockets[0].getsockname()[1]
        client = _HalfCloseClient(loop)
        await loop.create_connection(lambda: client, HOST, port)
        assert await asyncio.wait_for(client.lost, 5) is None
        assert await asyncio.wait_for(log[0].lost, 5) is None
        await asyncio.sleep(0.05)     # any duplicate callback would land here
        server.close()
        await server.wait_closed()
        return client

    client = run(scenario(), timeout=15, loop=loop)
    srv = log[0]
    assert srv.data == b"request"
    assert _squash(srv.calls) == ["made", "data", "eof", ("lost", None)], srv.calls
    if keep_open:
        assert srv.closing_after_eof is False      # the write side stayed open
        assert client.data == b"reply:request"
        assert _squash(client.calls) == ["made", "data", "eof", ("lost", None)], client.calls
    else:
        assert client.data == b""
        assert client.calls == ["made", "eof", ("lost", None)], client.calls
    assert not errors, errors


# ---------------------------------------------------------------------------
# 4. syscall economy under strace (ringline only; io_uring_enter batching on
#    the io_uring backend, its epoll equivalent on the poll backend)

ECHO_CONNS, ECHO_MESSAGES = 100, 1_000
SOCKET_IO_SYSCALLS = {"read", "write", "readv", "writev", "send", "recv", "sendto",
                      "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
                      "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl",
                      "poll", "ppoll", "select", "pselect6"}


def _strace(tmp_path, args):
    out = tmp_path / f"strace-{len(list(tmp_path.iterdir()))}.txt"
    proc = subprocess.run(["strace", "-f", "-c", "-o", str(out), sys.executable] + args,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {}
    for line in out.read_text().splitlines():
        # % time, seconds, usecs/call, calls, [errors,] syscall
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m:
            counts[m.group(2)] = int(m.group(1))
    stats = dict(kv.split("=") for kv in proc.stdout.split())
    return counts, {k: int(v) for k, v in stats.items()}


def test_echo_load_syscall_economy(tmp_path):
    if not shutil.which("strace"):
        pytest.fail("strace is needed (.ci/run installs it)")
    import ringline
    if ringline.backend().name == "poll":
        return _poll_echo_load_economy(tmp_path)
    tool = os.path.join(TOOLS, "echo_load.py")
    loaded, stats = _strace(tmp_path, [tool, str(ECHO_CONNS), str(ECHO_MESSAGES)])
    idle, idle_stats = _strace(tmp_path, [tool, str(ECHO_CONNS), "0"])
    messages = stats["messages"]
    assert messages == ECHO_CONNS * ECHO_MESSAGES
    added = {k: v - idle.get(k, 0) for k, v in loaded.items()}
    enters = added.get("io_uring_enter", 0)
    ratio = messages / max(enters, 1)
    print(f"\n[syscalls] {ECHO_CONNS} connections x {ECHO_MESSAGES} messages: "
          f"io_uring_enter loaded={loaded.get('io_uring_enter')} "
          f"idle={idle.get('io_uring_enter')} added={enters}; "
          f"{ratio:.1f} messages (each way) per io_uring_enter; "
          f"{2 * messages / max(enters, 1):.1f} sends per enter; ring stats {stats}")
    print("[syscalls] added by the load:",
          sorted(((k, v) for k, v in added.items() if v), key=lambda kv: -kv[1])[:10])
    # measured: ~5,000 enters for 100,000 messages each way (~19 per enter)
    assert 0 < enters < messages / 4, (enters, messages)
    for name in SOCKET_IO_SYSCALLS:
        assert added.get(name, 0) <= 10, (name, loaded.get(name), idle.get(name))


def _poll_echo_load_economy(tmp_path):
    """The poll backend's equivalent: no io_uring_enter; each message costs
    one send and one receive syscall per direction (short reads end a
    multishot burst, so no EAGAIN probing), epoll_wait batches many ready
    connections per call, and registrations do not churn per message."""
    messages_per_conn = 100          # every operation is a syscall under strace
    tool = os.path.join(TOOLS, "echo_load.py")
    loaded, stats = _strace(tmp_path, [tool, str(ECHO_CONNS), str(messages_per_conn)])
    idle, _ = _strace(tmp_path, [tool, str(ECHO_CONNS), "0"])
    messages = stats["messages"]
    assert messages == ECHO_CONNS * messages_per_conn
    added = {k: v - idle.get(k, 0) for k, v in loaded.items()}
    sends = sum(added.get(k, 0) for k in ("send", "sendto", "sendmsg", "write", "writev"))
    recvs = sum(added.get(k, 0) for k in ("recv", "recvfrom", "recvmsg", "read", "readv"))
    waits = sum(added.get(k, 0) for k in ("epoll_wait", "epoll_pwait", "epoll_pwait2"))
    print(f"\n[syscalls poll] {ECHO_CONNS} connections x {messages_per_conn} messages: "
          f"sends={sends} recvs={recvs} epoll_waits={waits} "
          f"epoll_ctl={added.get('epoll_ctl', 0)}; stats {stats}")
    print("[syscalls poll] added by the load:",
          sorted(((k, v) for k, v in added.items() if v), key=lambda kv: -kv[1])[:10])
    assert loaded.get("io_uring_enter", 0) == 0
    assert 2 * messages <= sends <= 2 * messages + 100, sends
    assert 2 * messages <= recvs <= 2.2 * messages + 100, recvs
    assert 0 < waits < messages / 4, (waits, messages)
    assert added.get("epoll_ctl", 0) <= 10 * ECHO_CONNS, added.get("epoll_ctl")


# ---------------------------------------------------------------------------
# 5. ENOBUFS parking (ringline only)

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
    errors = _collect_loop_errors(lp)

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
