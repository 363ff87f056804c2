"""A hostile gRPC server for ringline.grpc's tests: h2c (prior knowledge) on
the sans-IO ``h2`` library, served on the test's own running loop
(``asyncio.start_server`` on 127.0.0.1). ``serve_fake(mode, record=None,
gate=None)`` is an async context manager yielding the port; every request
on every connection gets the reply MODE names:

ok (a message "ok", then OK trailers), length_lie (a prefix promising 100 bytes, 10 sent, then OK trailers),
huge_length (a prefix of 4 GiB - 1, then bytes until the client resets),
no_trailers (a message, then END_STREAM on DATA), bomb (a gzip message that
inflates to 64 MiB), html (200 text/html), http503 (503, no grpc-status),
rst (RST_STREAM INTERNAL_ERROR), two_messages (two messages to a unary
call, then OK), garbage (bytes that are not HTTP/2), silent (reads and
never answers anything, PINGs included), slow_settings (the server's
SETTINGS, allowing 1000 streams, only after SETTINGS_DELAY s; then every
call is answered "ok"), big_frame (the header of a DATA frame announcing
1 MiB, then 100 bytes of it, then nothing), bad_header (a response head
with an upper-case header name), pseudo_trailers (trailers holding a
pseudo header), mixed (the same head and message, then, call by call in
turn, trailers OK with x-t "a", NOT_FOUND, OK with x-t "b", OK with x-t
"c" and "d"); raw frames the native engine must refuse:
data_stream0 (DATA on stream 0), bad_padding (a pad length past the frame),
short_window_update (a WINDOW_UPDATE 3 bytes long), flow_overrun (DATA past
the stream's 1 MiB window, before any head), big_headers (a header block of 80 KiB in
HEADERS + CONTINUATION), endless_continuation (HEADERS then empty
CONTINUATION frames without END_HEADERS, 1,000 of them).

Every GOAWAY a client sends is appended (its error code) to ``GOAWAYS``.
With ``record`` (a ``Record``) the server notes each request's connection
and stream id, and each connection the client closed; with ``gate`` (an
``asyncio.Event``) requests that arrive while it is clear are answered only
once it is set (calls held in flight).
"""
import asyncio
import contextlib
import gzip

_BOMB = gzip.compress(b"\x00" * (64 << 20))
SETTINGS_DELAY = 0.3
GOAWAYS = []


class Record:
    """What a fake server saw: ``requests``, (connection number, stream id)
    in arrival order (connections numbered from 0 as they are accepted), and
    ``closed``, the numbers of the connections whose client closed (or
    reset) them."""

    def __init__(self):
        self.requests = []
        self.closed = []
        self.connections = 0


def _frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") \
        + payload


def _raw_reply(mode, conn, sid):
    """The raw frames of the modes h2 would not send."""
    grpc_head = [(":status", "200"), ("content-type", "application/grpc")]
    if mode == "data_stream0":
        return _frame(0, 0, 0, b"x")
    if mode == "bad_padding":
        conn.send_headers(sid, grpc_head)
        return _frame(0, 0x8, sid, b"\x09abc")
    if mode == "short_window_update":
        return _frame(8, 0, 0, b"\x00\x00\x01")
    if mode == "flow_overrun":         # no head: the client reads (and acknowledges) nothing
        return b"".join(_frame(0, 0, sid, b"\x00" * 16384) for _ in range(66))
    if mode == "big_headers":
        out = _frame(1, 0, sid, b"\x00" * 16384)
        return out + b"".join(_frame(9, 0x4 if i == 3 else 0, sid, b"\x00" * 16384)
                              for i in range(4))
    if mode == "endless_continuation":
        return _frame(1, 0, sid, b"\x88") + _frame(9, 0, sid, b"") * 1000
    return None


def _reply(mode, conn, sid):
    raw = _raw_reply(mode, conn, sid)
    if raw is not None:
        return raw
    from h2.errors import ErrorCodes
    grpc_head = [(":status", "200"), ("content-type", "application/grpc")]
    ok = [("grpc-status", "0")]
    if mode == "length_lie":
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\x00\x00\x00\x64" + b"x" * 10)
        conn.send_headers(sid, ok, end_stream=True)
    elif mode == "huge_length":
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\xff\xff\xff\xff" + b"x" * 1000)
    elif mode == "no_trailers":
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\x00\x00\x00\x02hi", end_stream=True)
    elif mode == "bomb":
        conn.send_headers(sid, grpc_head + [("grpc-encoding", "gzip")])
        msg = b"\x01" + len(_BOMB).to_bytes(4, "big") + _BOMB
        for i in range(0, len(msg), 16384):
            conn.send_data(sid, msg[i:i + 16384])
        conn.send_headers(sid, ok, end_stream=True)
    elif mode == "html":
        conn.send_headers(sid, [(":status", "200"), ("content-type", "text/html")])
        conn.send_data(sid, b"<html></html>", end_stream=True)
    elif mode == "http503":
        conn.send_headers(sid, [(":status", "503")], end_stream=True)
    elif mode == "rst":
        conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
    elif mode in ("slow_settings", "ok"):
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\x00\x00\x00\x02ok")
        conn.send_headers(sid, ok, end_stream=True)
    elif mode == "big_frame":
        conn.send_headers(sid, grpc_head)
        return (1 << 20).to_bytes(3, "big") + b"\x00\x00" + sid.to_bytes(4, "big") + b"x" * 100
    elif mode == "bad_header":
        conn.send_headers(sid, grpc_head + [("X-Upper", "1")])
    elif mode == "pseudo_trailers":
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\x00\x00\x00\x02ok")
        conn.send_headers(sid, [(":status", "200")] + ok, end_stream=True)
    elif mode == "gzip_ok":             # one compressed message, status OK
        import gzip
        z = gzip.compress(b"ok")
        conn.send_headers(sid, grpc_head + [("grpc-encoding", "gzip")])
        conn.send_data(sid, b"\x01" + len(z).to_bytes(4, "big") + z)
        conn.send_headers(sid, ok, end_stream=True)
    elif mode == "error_after_message":     # a message, then a non-OK status
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\x00\x00\x00\x02ok")
        conn.send_headers(sid, [("grpc-status", "5"), ("grpc-message", "gone")],
                          end_stream=True)
    elif mode == "big_trailers":        # over max_trailer_bytes, under max_header_bytes
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\x00\x00\x00\x02ok")
        conn.send_headers(sid, ok + [("x-pad", "p" * 20000)], end_stream=True)
    elif mode == "mixed":       # per call in turn: OK, NOT_FOUND, OK, OK (x-t twice)
        turn = (sid - 1) // 2 % 4
        trailers = {0: ok + [("x-t", "a")], 1: [("grpc-status", "5"), ("grpc-message", "gone")],
                    2: ok + [("x-t", "b")], 3: ok + [("x-t", "c"), ("x-t", "d")]}[turn]
        conn.send_headers(sid, grpc_head + [("x-h", "1")])
        conn.send_data(sid, b"\x00\x00\x00\x00\x02ok")
        conn.send_headers(sid, trailers, end_stream=True)
    elif mode == "two_messages":
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\x00\x00\x00\x01a\x00\x00\x00\x00\x01b")
        conn.send_headers(sid, ok, end_stream=True)


def _hold(gate, held, conn, mode, writer):
    """Answer the requests in ``held`` once ``gate`` is set (a task)."""
    async def release():
        await gate.wait()
        raw = b"".join(_reply(mode, conn, sid) or b"" for sid in held)
        held.clear()
        writer.write(conn.data_to_send() + raw)
    return asyncio.get_running_loop().create_task(release())


async def _serve(reader, writer, mode, record=None, gate=None):
    import h2.config
    import h2.connection
    import h2.events
    if mode == "silent":
        while await reader.read(65536):
            pass
        writer.close()
        return
    if mode == "garbage":
        await reader.read(100)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n" * 10)
        await writer.drain()
        writer.close()
        return
    # the invalid modes send what h2 would refuse to send
    invalid = mode in ("bad_header", "pseudo_trailers")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, validate_outbound_headers=not invalid,
        normalize_outbound_headers=not invalid))
    if mode == "slow_settings":
        import h2.settings
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        await asyncio.sleep(SETTINGS_DELAY)
    conn.initiate_connection()
    conn.increment_flow_control_window(100 << 20)
    writer.write(conn.data_to_send())
    number = None
    if record is not None:
        number = record.connections
        record.connections += 1
    held, release = [], None
    try:
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionError:     # a close with our bytes unread is a reset
                data = b""
            if not data:
                if record is not None:
                    record.closed.append(number)
                break
            raw = b""
            for e in conn.receive_data(data):
                if isinstance(e, h2.events.RequestReceived):
                    if record is not None:
                        record.requests.append((number, e.stream_id))
                    if gate is not None and not gate.is_set():
                        held.append(e.stream_id)
                        if release is None or release.done():
                            release = _hold(gate, held, conn, mode, writer)
                        continue
                    raw += _reply(mode, conn, e.stream_id) or b""
                elif isinstance(e, h2.events.DataReceived):
                    conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                elif isinstance(e, h2.events.ConnectionTerminated):
                    GOAWAYS.append(e.error_code)
            writer.write(conn.data_to_send() + raw)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    except Exception:
        pass
    finally:
        if release is not None:
            release.cancel()
        writer.close()


@contextlib.asynccontextmanager
async def serve_fake(mode, record=None, gate=None):
    server = await asyncio.start_server(lambda r, w: _serve(r, w, mode, record, gate),
                                        "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
