"""Acceptance tests for "Transports, servers and subprocesses on io_uring",
failing peers (acceptance 4): a reset in the middle of a write, a garbage
TLS client (dropped; the server keeps serving), half-close with
eof_received keeping the transport open or not.

Behaviour that is asyncio's runs on both loops of the ``loop`` fixture (the
asyncio case validates the test); ringline-only knobs and counters
(write_hard_cap, _ring_stats, io_uring_enter counts) run on ringline only.
The echo protocols and waiting helpers shared by the
test_transport_acceptance_*.py files are in support/transports.py.
"""
import asyncio
import datetime
import ipaddress
import random
import socket
import ssl
import struct

import pytest

from support import run
from support.transports import HOST, collect_loop_errors, echo_round_trip, wait_until


# ---------------------------------------------------------------------------
# failing peers

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
    errors = collect_loop_errors(loop)
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
            await wait_until(lambda: log and log[0].paused, 10,
                              "the server to queue more than the kernel holds")
            # reset: SO_LINGER 0 then close sends an RST
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            peer.close()
        exc = await asyncio.wait_for(log[0].lost, 5)
        await asyncio.sleep(0.1)
        await echo_round_trip(loop, port, b"still serving")
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
    errors = collect_loop_errors(loop)
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
        await wait_until(lambda: log and log[-1].lost, 5, "the TLS server side to close")
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
    errors = collect_loop_errors(loop)
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
