"""TlsConn (ringline.connect_tls / wrap_server_tls): TLS in user space over
the native Conn, against an asyncio TLS echo server running on its own
(stock asyncio) loop in a thread, and against small blocking peers that
misbehave on purpose. Every test runs on both backends (RINGLINE_BACKEND
picks one when set).

Certificates come from `trustme` when it is installed, else from
`openssl req` (a self-signed certificate for localhost and 127.0.0.1).
"""
import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

import ringline
from ringline._conn import api as _native
from ringline._core import ChainResult
from ringline._errors import ConnectionClosed
from ringline._conn.tls import TlsConn, connect_tls, wrap_server_tls
from support import free_port


# --------------------------------------------------------------------------
# certificates
# --------------------------------------------------------------------------

class Certs:
    """server_ctx() / client_ctx() for a certificate valid for localhost and
    127.0.0.1, and an untrusting client context."""

    def __init__(self, tmpdir):
        self.dir = tmpdir
        try:
            import trustme
        except ImportError:
            trustme = None
        if trustme is not None:
            ca = trustme.CA()
            leaf = ca.issue_cert("localhost", "127.0.0.1")
            self.cert_pem = os.path.join(tmpdir, "cert.pem")
            self.key_pem = os.path.join(tmpdir, "key.pem")
            self.ca_pem = os.path.join(tmpdir, "ca.pem")
            leaf.private_key_and_cert_chain_pem.write_to_path(self.cert_pem)
            leaf.private_key_pem.write_to_path(self.key_pem)
            ca.cert_pem.write_to_path(self.ca_pem)
            self.source = "trustme"
        else:
            openssl = shutil.which("openssl")
            if openssl is None:
                pytest.skip("neither trustme nor openssl is available")
            self.cert_pem = os.path.join(tmpdir, "cert.pem")
            self.key_pem = os.path.join(tmpdir, "key.pem")
            subprocess.run(
                [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", self.key_pem, "-out", self.cert_pem, "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                check=True, capture_output=True, timeout=30)
            self.ca_pem = self.cert_pem
            self.source = "openssl"

    def server_ctx(self):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_pem, self.key_pem)
        return ctx

    def client_ctx(self):
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.load_verify_locations(self.ca_pem)
        return ctx


@pytest.fixture(scope="module")
def certs():
    with tempfile.TemporaryDirectory() as tmp:
        yield Certs(tmp)


# --------------------------------------------------------------------------
# the asyncio TLS echo server (stock asyncio loop, own thread)
# --------------------------------------------------------------------------

class EchoServer:
    def __init__(self, certs):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.unix_path = os.path.join(certs.dir, "echo.sock")
        self.ctx = certs.server_ctx()
        self.eofs = 0
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def _echo(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    self.eofs += 1
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def _main(self):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.tcp = await asyncio.start_server(self._echo, "127.0.0.1", 0, ssl=self.ctx)
            self.unix = await asyncio.start_unix_server(self._echo, self.unix_path,
                                                        ssl=self.ctx)
            self.port = self.tcp.sockets[0].getsockname()[1]

        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()

        async def shutdown():
            self.tcp.close()
            self.unix.close()
            await self.tcp.wait_closed()
            await self.unix.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.loop.run_until_complete(shutdown())
        self.loop.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def echo(certs):
    server = EchoServer(certs)
    yield server
    server.stop()


# --------------------------------------------------------------------------
# one-connection blocking peers
# --------------------------------------------------------------------------

def serve_once(handler):
    """Listen on 127.0.0.1, accept one connection in a thread and run
    handler(sock) on it. Returns (port, thread)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(10)

    def main():
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        finally:
            lsock.close()
        conn.settimeout(10)
        try:
            handler(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return lsock.getsockname()[1], thread


async def read_exactly(conn, n):
    """n bytes from conn through with_data (NEED_MORE until all are there)."""
    out = bytearray()

    def take(view):
        want = n - len(out)
        chunk = view[:want]
        out.extend(chunk)
        return len(chunk)

    while len(out) < n:
        got = await conn.with_data(take)
        if got == 0:
            raise EOFError(f"EOF after {len(out)} of {n} bytes")
    return bytes(out)


# --------------------------------------------------------------------------
# happy paths
# --------------------------------------------------------------------------

def test_connect_and_echo(run, certs, echo):
    async def main():
        conn = await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(), timeout=5)
        assert isinstance(conn, TlsConn)
        assert conn.is_alive and conn.fileno() >= 0
        assert conn.peer_addr[1] == echo.port
        assert conn.ssl_object.version() in ("TLSv1.2", "TLSv1.3")
        conn.send_nowait(b"hello ")
        conn.send_nowait(memoryview(b"world"))
        assert await read_exactly(conn, 11) == b"hello world"
        conn.close()
        assert not conn.is_alive and conn.fileno() == -1
        conn.close()                                   # idempotent
        with pytest.raises(ConnectionClosed):
            conn.send_nowait(b"x")
        with pytest.raises(ConnectionClosed):
            await conn.with_data(lambda v: len(v))
    run(main)


def test_default_context_and_string_address(run, certs, echo):
    async def main():
        # the default context does not trust our CA: verification fails
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verif"):
            await connect_tls(f"127.0.0.1:{echo.port}", timeout=5)
        conn = await connect_tls(f"localhost:{echo.port}", certs.client_ctx(), timeout=5)
        conn.send_nowait(b"ping")
        assert await read_exactly(conn, 4) == b"ping"
        conn.close()
    run(main)


def test_need_more_and_need_at_least(run, certs, echo):
    async def main():
        conn = await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(), timeout=5)
        frames = []

        def parse(view):
            if len(view) < 4:
                return ringline.need_at_least(4)
            size = int.from_bytes(view[:4], "big")
            if len(view) < 4 + size:
                return ringline.need_at_least(4 + size)
            frames.append(bytes(view[4:4 + size]))
            return 4 + size

        payload = os.urandom(40000)
        frame = len(payload).to_bytes(4, "big") + payload
        conn.send_nowait(frame[:3])                    # a split header ...
        await asyncio.sleep(0.02)
        conn.send_nowait(frame[3:20000])               # ... and a split body
        await asyncio.sleep(0.02)
        conn.send_nowait(frame[20000:] + b"\x00\x00\x00\x02ok")
        assert await conn.with_data(parse) == len(frame)
        assert await conn.with_data(parse) == 6
        assert frames == [payload, b"ok"]

        def never(view):
            return ringline.NEED_MORE
        assert conn.try_with_data(never) == 0
        conn.close()
    run(main)


def test_with_bytes_views_stay_valid(run, certs, echo):
    async def main():
        conn = await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(), timeout=5)
        kept = []

        def keep_line(view):
            i = bytes(view).find(b"\n")
            if i < 0:
                return 0
            kept.append(view[:i])
            return i + 1

        lines = [b"line-%03d" % i for i in range(50)]
        for line in lines:
            conn.send_nowait(line + b"\n")
        for _ in lines:
            assert await conn.with_bytes(keep_line) > 0
        assert [bytes(v) for v in kept] == lines       # none was overwritten
        assert all(v.readonly for v in kept)
        conn.close()
    run(main)


def test_try_with_data(run, certs, echo):
    async def main():
        conn = await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(), timeout=5)
        assert conn.try_with_data(lambda v: len(v)) == 0
        conn.send_nowait(b"abc")
        got = 0
        for _ in range(200):
            got = conn.try_with_data(lambda v: len(v))
            if got:
                break
            await asyncio.sleep(0.005)
        assert got == 3
        conn.close()
    run(main)


def test_send_send_parts_and_chain(run, certs, echo):
    async def main():
        conn = await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(), timeout=5)
        assert await conn.send(b"one,") == 4
        assert await conn.send(b"") == 0
        guarded = bytearray(b"guard,")
        n = await conn.send_parts().copy(b"two,").guard(guarded).copy(b"three,").submit()
        assert n == 16
        chain = conn.send_chain().add(b"four,").guard(memoryview(b"five,")).copy(b"six")
        assert len(chain) == 3
        res = await chain.submit()
        assert isinstance(res, ChainResult) and res.ok
        assert res.bytes_sent == 13 and res.error is None and res.cancelled == 0
        expected = b"one,two,guard,three,four,five,six"
        assert await read_exactly(conn, len(expected)) == expected
        with pytest.raises(ValueError):
            conn.send_chain().add(b"")
        builder = conn.send_parts().copy(b"x")
        await builder.submit()
        with pytest.raises(RuntimeError):
            builder.submit()
        await read_exactly(conn, 1)
        conn.close()
    run(main)


def test_large_transfer_both_ways(run, certs, echo):
    async def main():
        conn = await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(), timeout=5)
        blob = os.urandom(3 * 1024 * 1024 + 17)
        sender = asyncio.ensure_future(conn.send(blob))
        assert await read_exactly(conn, len(blob)) == blob
        assert await sender == len(blob)
        conn.close()
    run(main, timeout=15)


def test_unix_path(run, certs, echo):
    async def main():
        conn = await connect_tls(None, certs.client_ctx(), server_hostname="localhost",
                                 timeout=5, unix_path=echo.unix_path)
        conn.send_nowait(b"over unix")
        assert await read_exactly(conn, 9) == b"over unix"
        conn.close()
        with pytest.raises(ValueError, match="server_hostname"):
            await connect_tls(None, certs.client_ctx(), unix_path=echo.unix_path)
    run(main)


def test_shutdown_write_then_read_to_eof(run, certs):
    """TLS half-close: our close_notify + FIN, the peer reads to its EOF,
    answers, and ends the stream. (asyncio's own TLS transport cannot
    half-close, so the peer is a blocking ssl socket.)"""
    server_ctx = certs.server_ctx()
    seen = {}

    def handler(sock):
        with server_ctx.wrap_socket(sock, server_side=True, suppress_ragged_eofs=False) as tls:
            data = b""
            while True:
                chunk = tls.recv(100)
                if not chunk:
                    break
                data += chunk
            seen["request"] = data
            tls.sendall(b"answer:" + data)
            tls.unwrap()

    port, thread = serve_once(handler)

    async def main():
        conn = await connect_tls(("127.0.0.1", port), certs.client_ctx(), timeout=5)
        conn.send_nowait(b"last words")
        conn.shutdown_write()
        conn.shutdown_write()                          # idempotent
        with pytest.raises(ConnectionClosed):
            conn.send_nowait(b"more")
        assert await read_exactly(conn, 17) == b"answer:last words"
        assert await conn.with_data(lambda v: len(v)) == 0
        assert conn.at_eof
        conn.close()

    run(main)
    thread.join(5)
    assert seen == {"request": b"last words"}


def test_close_sends_close_notify(run, certs):
    result = {}
    server_ctx = certs.server_ctx()

    def handler(sock):
        with server_ctx.wrap_socket(sock, server_side=True, suppress_ragged_eofs=False) as tls:
            result["data"] = tls.recv(100)
            try:
                result["eof"] = tls.recv(100)              # b"" only for close_notify
            except ssl.SSLError as exc:
                result["eof"] = exc

    port, thread = serve_once(handler)

    async def main():
        conn = await connect_tls(("127.0.0.1", port), certs.client_ctx(), timeout=5)
        await conn.send(b"bye")
        await asyncio.sleep(0.05)
        conn.close()
        await asyncio.sleep(0.05)

    run(main)
    thread.join(5)
    assert result == {"data": b"bye", "eof": b""}


def test_peer_close_notify_ends_the_stream(run, certs):
    server_ctx = certs.server_ctx()

    def handler(sock):
        with server_ctx.wrap_socket(sock, server_side=True) as tls:
            tls.sendall(b"goodbye")
            tls.unwrap()

    port, thread = serve_once(handler)

    async def main():
        conn = await connect_tls(("127.0.0.1", port), certs.client_ctx(), timeout=5)
        assert await read_exactly(conn, 7) == b"goodbye"
        assert await conn.with_data(lambda v: len(v)) == 0
        conn.close()

    run(main)
    thread.join(5)


# --------------------------------------------------------------------------
# server side
# --------------------------------------------------------------------------

def test_wrap_server_tls(run, certs):
    client_ctx = certs.client_ctx()
    replies = []

    def client(port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"request")
                data = b""
                while len(data) < 14:
                    chunk = tls.recv(100)
                    if not chunk:
                        break
                    data += chunk
                replies.append(data)

    async def main():
        loop = asyncio.get_running_loop()
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        lsock.setblocking(False)
        port = lsock.getsockname()[1]
        thread = threading.Thread(target=client, args=(port,), daemon=True)
        thread.start()
        sock, _ = await loop.sock_accept(lsock)
        lsock.close()
        conn = _native.adopt(loop, sock)
        tls = await wrap_server_tls(conn, certs.server_ctx(), timeout=5)
        assert tls.ssl_object.server_side
        request = await read_exactly(tls, 7)
        tls.send_nowait(b"reply:" + request + b"!")
        await asyncio.sleep(0.05)
        tls.close()
        await loop.run_in_executor(None, thread.join, 5)
        return request

    assert run(main) == b"request"
    assert replies == [b"reply:request!"]


def test_server_handshake_with_plaintext_client_fails_clearly(run, certs):
    def client(port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                raw.recv(100)
            except OSError:
                pass

    async def main():
        loop = asyncio.get_running_loop()
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        lsock.setblocking(False)
        thread = threading.Thread(target=client, args=(lsock.getsockname()[1],), daemon=True)
        thread.start()
        sock, _ = await loop.sock_accept(lsock)
        lsock.close()
        conn = _native.adopt(loop, sock)
        with pytest.raises(ssl.SSLError, match="TLS handshake with 127.0.0.1:.* failed"):
            await wrap_server_tls(conn, certs.server_ctx(), timeout=5)
        assert not conn.is_alive
        await loop.run_in_executor(None, thread.join, 5)

    run(main)


# --------------------------------------------------------------------------
# misbehaving servers: a clear error, never a hang
# --------------------------------------------------------------------------

def test_garbage_from_server_is_a_clear_error(run, certs):
    def handler(sock):
        sock.recv(4096)                                 # the ClientHello
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        sock.recv(4096)

    port, thread = serve_once(handler)

    async def main():
        with pytest.raises(ssl.SSLError) as ei:
            await connect_tls(("127.0.0.1", port), certs.client_ctx(), timeout=5)
        message = str(ei.value)
        assert message.startswith(f"TLS handshake with 127.0.0.1:{port} failed")
        assert "does not speak TLS" in message
        assert ei.value.reason
        await asyncio.sleep(0.01)
        assert _native.stats()["live"] == 0           # the socket was closed

    run(main)
    thread.join(5)


def test_server_closing_during_handshake(run, certs):
    port, thread = serve_once(lambda sock: sock.recv(4096))

    async def main():
        with pytest.raises(ssl.SSLError, match="closed the connection"):
            await connect_tls(("127.0.0.1", port), certs.client_ctx(), timeout=5)
        await asyncio.sleep(0.01)
        assert _native.stats()["live"] == 0

    run(main)
    thread.join(5)


def test_stalled_handshake_times_out(run, certs):
    stop = threading.Event()

    def handler(sock):
        sock.recv(4096)
        sock.sendall(b"\x16\x03\x03\x40\x00")          # a 16 KiB record that never comes
        stop.wait(5)

    port, thread = serve_once(handler)

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError, match="TLS handshake"):
            await connect_tls(("127.0.0.1", port), certs.client_ctx(), timeout=0.3)
        assert loop.time() - t0 < 3
        assert ringline._conn.timers.timer_stats()["in_use"] == 0
        await asyncio.sleep(0.01)
        assert _native.stats()["live"] == 0

    try:
        run(main)
    finally:
        stop.set()
        thread.join(5)


def test_hostname_mismatch(run, certs, echo):
    async def main():
        with pytest.raises(ssl.SSLCertVerificationError, match="TLS handshake with"):
            await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(),
                              server_hostname="not-this-host.example", timeout=5)
    run(main)


def test_corrupt_record_after_handshake(run, certs):
    server_ctx = certs.server_ctx()

    def handler(sock):
        with server_ctx.wrap_socket(sock, server_side=True) as tls:
            tls.sendall(b"fine")
            # an application-data record that does not authenticate
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x20" + b"\xab" * 32)
            try:
                tls.recv(100)
            except (OSError, ssl.SSLError):
                pass

    port, thread = serve_once(handler)

    async def main():
        conn = await connect_tls(("127.0.0.1", port), certs.client_ctx(), timeout=5)
        assert await read_exactly(conn, 4) == b"fine"
        with pytest.raises(ssl.SSLError, match="TLS receive failed"):
            await conn.with_data(lambda v: len(v))
        assert not conn.is_alive and conn.fileno() == -1
        with pytest.raises(ssl.SSLError):                # the same error again
            conn.send_nowait(b"x")

    run(main)
    thread.join(5)


def test_connection_refused(run, certs):
    port = free_port()

    async def main():
        with pytest.raises(ConnectionRefusedError):
            await connect_tls(("127.0.0.1", port), certs.client_ctx(), timeout=5)
    run(main)


def test_top_level_connect_tls(run, certs, echo):
    async def main():
        conn = await ringline.connect_tls(("127.0.0.1", echo.port), certs.client_ctx(),
                                          timeout=5)
        conn.send_nowait(b"top")
        assert await read_exactly(conn, 3) == b"top"
        conn.close()
    run(main)


def test_cancelled_read_then_read_again(run, certs, echo):
    async def main():
        conn = await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(), timeout=5)
        waiter = asyncio.ensure_future(conn.with_data(lambda v: len(v)))
        await asyncio.sleep(0.02)
        with pytest.raises(RuntimeError, match="already waiting"):
            await conn.with_data(lambda v: len(v))
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert waiter.cancelled()
        conn.send_nowait(b"after cancel")
        assert await read_exactly(conn, 12) == b"after cancel"
        conn.close()
    run(main)


def test_parse_callback_errors(run, certs, echo):
    async def main():
        conn = await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(), timeout=5)
        conn.send_nowait(b"abc")
        with pytest.raises(ValueError, match="exceeds the receive accumulator cap"):
            await conn.with_data(lambda v: ringline.need_at_least(1 << 40))
        with pytest.raises(TypeError, match="returned None"):
            await conn.with_data(lambda v: None)
        with pytest.raises(ValueError, match="only 3 are buffered"):
            await conn.with_data(lambda v: 10)
        assert await conn.with_data(lambda v: len(v)) == 3    # nothing was lost
        conn.close()
    run(main)


def test_plaintext_bounded_by_the_accumulator_cap(run, certs, echo):
    async def main():
        loop = asyncio.get_running_loop()
        _native.configure(loop, recv_accumulator_cap=64 * 1024)
        conn = await connect_tls(("127.0.0.1", echo.port), certs.client_ctx(), timeout=5)
        conn.send_nowait(b"z" * (256 * 1024))
        with pytest.raises(ringline.ConnectionDropped, match="recv_accumulator_cap"):
            await conn.with_data(lambda v: ringline.NEED_MORE)   # never consumes
        assert not conn.is_alive
    run(main)


def test_on_data_drain_and_push_over_tls(run, certs):
    """on_data over TLS: fn sees the decrypted stream on every arrival until
    the peer's close_notify, the total comes back; drain and push reach the
    raw connection."""
    server_ctx = certs.server_ctx()

    def handler(sock):
        with server_ctx.wrap_socket(sock, server_side=True) as tls:
            assert tls.recv(2) == b"hi"
            time.sleep(0.05)
            for part in (b"alpha;", b"beta;", b"gamma;"):
                tls.sendall(part)
                time.sleep(0.02)
            tls.unwrap()

    port, thread = serve_once(handler)

    async def main():
        conn = await connect_tls(("127.0.0.1", port), certs.client_ctx(), timeout=5)
        seen = []

        def fn(view):
            seen.append(bytes(view))
            return len(view)
        conn.send_nowait(b"hi")
        conn.push()
        assert await asyncio.wait_for(conn.drain(), 5) is None
        assert await conn.on_data(fn) == len(b"alpha;beta;gamma;")
        assert b"".join(seen) == b"alpha;beta;gamma;" and len(seen) >= 2
        conn.close()
        with pytest.raises(ConnectionClosed):
            conn.drain()

    run(main)
    thread.join(5)
