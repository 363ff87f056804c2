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

Modes for the unary fast path's hostile tests
(tests/clients/test_grpc_fastpath_hostile.py): scripted (each request's
``x-reply`` metadata names its reply, ``x-k`` is a key echoed in it: see
``_scripted``; request headers reach ``_reply`` for this mode only),
counter (N the call's number on its connection, (stream id - 1) / 2: a
head with x-h "h<N % 3>" and x-pad, 4,000 times the digit(s) of N / 10 % 13,
the message "<N>", OK trailers with x-t "t<N % 2>" -- or, for every
seventh call below 300, "u<N>" and 1,500 "z" -- and x-n "<N>" never
indexed: h2's encoder indexes the other values, so blocks repeat byte for
byte (references to the dynamic table) between insertions that shift the
indices, the client's 64 KiB table evicts, and from call 300 on, once the
table settled, every trailer block differs without touching the table),
flip (N as in counter: content-type and grpc-status never indexed, so
only two fields use the dynamic table: x-t in the trailers, "a" for odd N,
"b" for even, and x-h, "<N as 5 digits>" 800 times, in the head of every
third call: each insertion shifts the indices, so the same trailer bytes
name "a" on one call and "b" a few calls later; once the 64 KiB table is
full each insertion evicts as much as it adds),
heads_then_close (with ``gate``: the held calls get only their heads, then
the server closes the TCP connection; calls answered at once are "ok"),
goaway_batch (with ``gate``: GOAWAY NO_ERROR naming the last of the held
calls, then complete "ok" replies to them all, in one write), rst_after (an
"ok" reply, then RST_STREAM CANCEL on the finished stream, one write);
with ``record``, refusing unprocessed on connection 0 and "ok" on the
others: refuse_first (RST_STREAM REFUSED_STREAM to stream 1 only),
refuse_conn0 (REFUSED_STREAM to every stream), goaway_first (GOAWAY
NO_ERROR with last stream id 0 on the first request); lower_streams
(the first request answered "ok" together with SETTINGS lowering
MAX_CONCURRENT_STREAMS to ``LOWERED_STREAMS``; the rest as "ok", held while
``gate`` is clear: h2 fails the connection if the client opens more).

Every GOAWAY a client sends is appended (its error code) to ``GOAWAYS``.
With ``record`` (a ``Record``) the server notes each request's connection
and stream id, and each connection the client closed; with ``gate`` (an
``asyncio.Event``) requests that arrive while it is clear are answered only
once it is set (calls held in flight).
"""
import asyncio
import contextlib
import gzip

import h2.exceptions
import hpack

_BOMB = gzip.compress(b"\x00" * (64 << 20))
SETTINGS_DELAY = 0.3
LOWERED_STREAMS = 2
GOAWAYS = []


# modes that refuse requests unprocessed on the first connection (0) and
# answer "ok" on the others; they need a Record
_REFUSING = ("refuse_first", "refuse_conn0", "goaway_first")


class Record:
    """What a fake server saw: ``requests``, (connection number, stream id)
    in arrival order (connections numbered from 0 as they are accepted),
    ``resets``, (connection number, stream id) of each RST_STREAM the client
    sent, and ``closed``, the numbers of the connections whose client closed (or
    reset) them."""

    def __init__(self):
        self.requests = []
        self.resets = []
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


def _counter_t(n):
    """x-t of the counter mode's call N."""
    return f"u{n}" + "z" * 1500 if n % 7 == 6 and n < 300 else f"t{n % 2}"


def _scripted(conn, sid, hdrs):
    """The reply the request's ``x-reply`` names (``x-k``: its key, sent
    back as the message and in x-k metadata where the reply has them):
    ok, trailers_only_err (the head holds grpc-status 5 and END_STREAM),
    trailers_only_ok (the same with status 0), head_status_body (a head
    with grpc-status 0 and content-type, then the message and OK trailers),
    status_in_both (the head with grpc-status 0, trailers with 5), dup_ct
    (content-type "text/plain", then "application/grpc"), ct_proto
    (application/grpc+proto), ct_foo (application/grpcfoo), status_00 /
    status_sp_lead / status_sp_trail / status_under / status_plus
    (grpc-status "00", " 0", "0 ", "0_0", "+0"), dup_status (grpc-status "5", then "0"), no_status
    (trailers without grpc-status), compressed_no_enc (a message flagged
    compressed, no grpc-encoding), size_<N> (a message of N bytes "x"),
    split (the message in two DATA frames), padded (DATA with 40 bytes of
    padding)."""
    h = dict(hdrs)
    what = h.get(b"x-reply", b"ok").decode()
    key = h.get(b"x-k", b"k")
    msg = b"\x00" + len(key).to_bytes(4, "big") + key
    head = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"x-k", key)]
    trailers = [(b"grpc-status", b"0"), (b"x-k", key)]
    if what in ("trailers_only_err", "trailers_only_ok"):
        code = b"5" if what.endswith("err") else b"0"
        conn.send_headers(sid, head + [(b"grpc-status", code), (b"grpc-message", b"nf")],
                          end_stream=True)
        return
    if what == "head_status_body":
        head = head + [(b"grpc-status", b"0")]
    elif what == "status_in_both":
        head = head + [(b"grpc-status", b"0")]
        trailers = [(b"grpc-status", b"5"), (b"grpc-message", b"late")]
    elif what == "dup_ct":
        head = [head[0], (b"content-type", b"text/plain")] + head[1:]
    elif what in ("ct_proto", "ct_foo"):
        head[1] = (b"content-type", b"application/grpc+proto" if what == "ct_proto"
                   else b"application/grpcfoo")
    elif what.startswith("status_") and what != "status_in_both":
        v = {"status_00": b"00", "status_sp_lead": b" 0", "status_sp_trail": b"0 ",
             "status_under": b"0_0", "status_plus": b"+0"}[what]
        trailers[0] = (b"grpc-status", v)
    elif what == "no_status":
        trailers = [(b"x-k", key)]
    elif what == "dup_status":
        trailers = [(b"grpc-status", b"5"), (b"grpc-status", b"0")]
    elif what == "compressed_no_enc":
        msg = b"\x01" + msg[1:]
    elif what.startswith("size_"):
        n = int(what[5:])
        msg = b"\x00" + n.to_bytes(4, "big") + b"x" * n
    conn.send_headers(sid, head)
    if what == "split":
        conn.send_data(sid, msg[:3])
        conn.send_data(sid, msg[3:])
    elif what == "padded":
        conn.send_data(sid, msg, pad_length=40)
    else:
        for i in range(0, len(msg), 16384):
            conn.send_data(sid, msg[i:i + 16384])
    conn.send_headers(sid, trailers, end_stream=True)


def _reply(mode, conn, sid, hdrs=None):
    if mode == "lower_streams":
        mode = "ok"
    if mode == "scripted":
        return _scripted(conn, sid, hdrs or [])
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
    elif mode == "counter":
        n = (sid - 1) // 2
        conn.send_headers(sid, grpc_head + [("x-h", f"h{n % 3}"),
                                            ("x-pad", f"{n // 10 % 13}" * 4000)])
        body = str(n).encode()
        conn.send_data(sid, b"\x00" + len(body).to_bytes(4, "big") + body)
        conn.send_headers(sid, ok + [("x-t", _counter_t(n)),
                                     hpack.NeverIndexedHeaderTuple("x-n", str(n))],
                          end_stream=True)
    elif mode == "flip":
        n = (sid - 1) // 2
        nix = hpack.NeverIndexedHeaderTuple
        head = [(":status", "200"), nix("content-type", "application/grpc")]
        if n % 3 == 0:
            head.append(("x-h", f"{n:05d}" * 800))
        conn.send_headers(sid, head)
        body = str(n).encode()
        conn.send_data(sid, b"\x00" + len(body).to_bytes(4, "big") + body)
        conn.send_headers(sid, [nix("grpc-status", "0"), ("x-t", "a" if n % 2 else "b")],
                          end_stream=True)
    elif mode in ("goaway_batch", "rst_after", "heads_then_close"):
        if mode == "heads_then_close" and conn.__dict__.get("_held_reply"):
            conn.send_headers(sid, grpc_head)
            return None
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\x00\x00\x00\x02ok")
        conn.send_headers(sid, ok, end_stream=True)
        if mode == "rst_after":     # h2 refuses to reset an ended stream: raw
            return _frame(3, 0, sid, int(ErrorCodes.CANCEL).to_bytes(4, "big"))
    elif mode == "two_messages":
        conn.send_headers(sid, grpc_head)
        conn.send_data(sid, b"\x00\x00\x00\x00\x01a\x00\x00\x00\x00\x01b")
        conn.send_headers(sid, ok, end_stream=True)


def _hold(gate, held, conn, mode, writer, reqs):
    """Answer the requests in ``held`` once ``gate`` is set (a task)."""
    async def release():
        await gate.wait()
        conn._held_reply = True
        raw = b""
        for sid in held:
            try:
                raw += _reply(mode, conn, sid, reqs.pop(sid, None)) or b""
            except h2.exceptions.ProtocolError:
                pass        # the client reset it meanwhile (closed, or id too low)
        conn._held_reply = False
        first = b""
        if mode == "goaway_batch" and held:     # raw: h2 sends nothing after its GOAWAY
            first = _frame(7, 0, 0, max(held).to_bytes(4, "big") + bytes(4))
        held.clear()
        writer.write(first + conn.data_to_send() + raw)
        if mode == "heads_then_close":
            await writer.drain()
            writer.close()
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
    invalid = mode in ("bad_header", "pseudo_trailers", "scripted")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, validate_outbound_headers=not invalid,
        normalize_outbound_headers=not invalid))
    import h2.settings
    if mode == "slow_settings":
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
    held, release, reqs = [], None, {}
    first_request = True
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
                    hdrs = e.headers if mode == "scripted" else None
                    if mode == "lower_streams" and first_request:
                        # answer, then allow only LOWERED_STREAMS streams
                        first_request = False
                        raw += _reply("ok", conn, e.stream_id) or b""
                        conn.update_settings({
                            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: LOWERED_STREAMS})
                        continue
                    if mode in _REFUSING:       # needs record (connection numbers)
                        refuse = number == 0 and (mode != "refuse_first" or e.stream_id == 1)
                        if refuse and mode == "goaway_first":
                            conn.close_connection(last_stream_id=0)
                        elif refuse:
                            conn.reset_stream(e.stream_id, 7)     # REFUSED_STREAM
                        else:
                            raw += _reply("ok", conn, e.stream_id) or b""
                        continue
                    if gate is not None and not gate.is_set():
                        held.append(e.stream_id)
                        reqs[e.stream_id] = hdrs
                        if release is None or release.done():
                            release = _hold(gate, held, conn, mode, writer, reqs)
                        continue
                    raw += _reply(mode, conn, e.stream_id, hdrs) or b""
                elif isinstance(e, h2.events.DataReceived):
                    conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                elif isinstance(e, h2.events.StreamReset) and record is not None:
                    record.resets.append((number, e.stream_id))
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
