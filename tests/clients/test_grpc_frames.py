"""The native HTTP/2 frame engine under ringline.grpc (``_h2frames.H2Engine``,
driven by ``_h2fast.FastH2Connection``): unit tests feeding it frames as
bytes (a normal exchange, frames split at every byte, padding, flow control
both ways, SETTINGS, PING, header blocks split into CONTINUATION on send)
and its refusals (a frame above our max frame size, invalid frames, length
lies, idle and closed streams, flow-control overruns, an oversized header
block, an endless CONTINUATION run): each raises a clear error and queues
GOAWAY with the right code. Then the same refusals from a hostile server
(tests/support/grpc_fake.py) through a real Channel: the call fails with a
status naming the bound or the violation, and a second channel to a sound
server is unaffected. The suite runs once per RINGLINE_BACKEND, so each
test that does I/O runs on both backends.
"""
import asyncio

import pytest

pytest.importorskip("h2")

import h2.exceptions as h2x  # noqa: E402
import hpack  # noqa: E402

import ringline.grpc as rg  # noqa: E402
from ringline.http import _h2frames as F  # noqa: E402
from support import run  # noqa: E402

CALL_BOUND = 30.0
MAX_HEADER_BYTES = 65536


def _frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") \
        + payload


def _parse(data):
    """Frames in DATA as (type, flags, sid, payload)."""
    out = []
    while data:
        n = int.from_bytes(data[:3], "big")
        out.append((data[3], data[4], int.from_bytes(data[5:9], "big"), data[9:9 + n]))
        data = data[9 + n:]
    return out


def _engine(stream_window=1 << 20, conn_window=16 << 20):
    e = F.H2Engine(stream_window, conn_window, 100, 4096, MAX_HEADER_BYTES, hpack.Encoder(),
                   hpack.Decoder(max_header_list_size=MAX_HEADER_BYTES))
    e.initiate()
    out = e.data_to_send()
    assert out.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    return e


def _open(e, end=True):
    sid = e.get_next_available_stream_id()
    e.send_headers(sid, [(b":method", b"POST"), (b":path", b"/x.Y/Z")], end)
    e.data_to_send()
    return sid


def _head_block():
    return hpack.Encoder().encode([(b":status", b"200"), (b"content-type",
                                                          b"application/grpc")])


def _trailer_block():
    return hpack.Encoder().encode([(b"grpc-status", b"0")])


def _goaway_code(e):
    frames = [f for f in _parse(e.data_to_send()) if f[0] == 7]
    assert frames, "no GOAWAY queued"
    return int.from_bytes(frames[-1][3][4:8], "big")


def _refused(e, data, exc, code, text):
    with pytest.raises(exc) as ei:
        e.receive(data)
    assert text in str(ei.value), ei.value
    assert _goaway_code(e) == code
    assert e.dead and e.receive(b"\x00" * 9) == []


def test_exchange_and_split_at_every_byte():
    for step in (1000, 1, 7):
        wire = (_frame(4, 0, 0, b"\x00\x03\x00\x00\x03\xe8") + _frame(1, 4, 1, _head_block())
                + _frame(0, 0, 1, b"\x00\x00\x00\x00\x02ok") + _frame(1, 5, 1, _trailer_block()))
        e = _engine()
        sid = _open(e)
        events = []
        for i in range(0, len(wire), step):
            events += e.receive(wire[i:i + step])
        assert [ev[0] for ev in events] == [F.EV_SETTINGS, F.EV_HEADERS, F.EV_DATA, F.EV_HEADERS]
        assert e.remote_max_concurrent_streams == 1000
        assert events[1][1:] == (sid, [(b":status", b"200"), (b"content-type",
                                                               b"application/grpc")], False,
                                 False)
        assert events[2][1:] == (sid, b"\x00\x00\x00\x00\x02ok", 7, False)
        assert events[3][1:] == (sid, [(b"grpc-status", b"0")], True, True)
        acks = [f for f in _parse(e.data_to_send()) if f[0] == 4]
        assert acks == [(4, 1, 0, b"")]             # our SETTINGS ACK
        with pytest.raises(h2x.StreamClosedError):  # closed both ways: gone
            e.local_flow_control_window(sid)


def test_padding_stripped_and_counted():
    e = _engine(stream_window=100, conn_window=65535)
    sid = _open(e)
    ev = e.receive(_frame(0, 0x8, sid, b"\x03abc\x00\x00\x00"))
    assert ev == [(F.EV_DATA, sid, b"abc", 7, False)]
    # the 7 bytes (padding included) count: 93 left of the stream's 100
    _refused(e, _frame(0, 0, sid, b"x" * 94), h2x.FlowControlError, 3, "flow-control window")


def test_receive_windows_reopen_as_acknowledged():
    e = _engine(stream_window=1000, conn_window=65535)
    sid = _open(e)
    e.receive(_frame(0, 0, sid, b"x" * 600))
    e.acknowledge_received_data(600, sid)
    ups = [f for f in _parse(e.data_to_send()) if f[0] == 8]
    assert ups == [(8, 0, sid, (600).to_bytes(4, "big"))]
    e.receive(_frame(0, 0, sid, b"x" * 1000))       # the whole reopened window
    _refused(e, _frame(0, 0, sid, b"x"), h2x.FlowControlError, 3, f"stream {sid}")


def test_send_windows_kept_and_updated():
    e = _engine()
    sid = _open(e, end=False)
    assert e.local_flow_control_window(sid) == 65535
    with pytest.raises(h2x.FrameTooLargeError):
        e.send_data(sid, b"x" * 16385)
    for _ in range(3):
        e.send_data(sid, b"x" * 16384)
    e.send_data(sid, b"x" * 16383)
    assert e.local_flow_control_window(sid) == 0
    with pytest.raises(h2x.FlowControlError):
        e.send_data(sid, b"x")
    e.receive(_frame(8, 0, 0, (10).to_bytes(4, "big")) + _frame(8, 0, sid, (5).to_bytes(4, "big")))
    assert e.local_flow_control_window(sid) == 5
    # SETTINGS_INITIAL_WINDOW_SIZE moves every open stream's window
    e.receive(_frame(4, 0, 0, b"\x00\x04" + (65545).to_bytes(4, "big")))
    assert e.local_flow_control_window(sid) == 10
    e.send_data(sid, b"y" * 10, end_stream=True)
    with pytest.raises(h2x.StreamClosedError):
        e.send_data(sid, b"z")


def test_window_events_only_when_a_sender_can_wait():
    """A WINDOW_UPDATE is an event only when the window it opens was at or
    below 0 (a sender waits only then); the windows move either way."""
    e = _engine()
    a = _open(e, end=False)
    b = _open(e, end=True)          # our side closed: nothing of it ever waits
    win = lambda sid, n: _frame(8, 0, sid, n.to_bytes(4, "big"))  # noqa: E731
    assert e.receive(win(0, 7) + win(a, 7) + win(b, 7)) == []      # all open: no event
    assert e.local_flow_control_window(a) == 65542
    for _ in range(4):
        e.send_data(a, b"x" * 16384)
    e.send_data(a, b"x" * (65542 - 4 * 16384))
    assert e.local_flow_control_window(a) == 0       # both windows at 0
    assert e.receive(win(a, 3)) == [(F.EV_WINDOW, a, 3)]
    assert e.receive(win(0, 10)) == [(F.EV_WINDOW, 0, 10)]
    e.send_data(a, b"x" * 3)                         # stream 0, connection 7
    assert e.receive(win(a, 100)) == [(F.EV_WINDOW, a, 100)]
    e.send_data(a, b"x" * 7)                         # stream 93, connection 0
    assert e.receive(win(a, 5)) == []                # a wait here is the connection's
    assert e.receive(win(0, 50)) == [(F.EV_WINDOW, 0, 50)]
    assert e.local_flow_control_window(a) == 50
    assert e.receive(win(0, 50)) == []


def test_release_after_an_early_answer():
    e = _engine()
    sid = _open(e, end=False)                   # our request side stays open
    e.receive(_frame(1, 5, sid, _head_block()))     # trailers-only: the server ended
    e.release(sid)
    assert _parse(e.data_to_send()) == [(3, 0, sid, b"\x00\x00\x00\x00")]
    with pytest.raises(h2x.StreamClosedError):
        e.send_data(sid, b"x")
    e.release(sid)                              # once only
    other = _open(e, end=False)
    e.release(other)                            # still open both ways: kept
    assert e.data_to_send() == b"" and e.local_flow_control_window(other) == 65535


def test_long_header_block_sent_in_continuation():
    e = _engine()
    sid = e.get_next_available_stream_id()
    e.send_headers(sid, [(b":path", b"/p"), (b"x-big", b"v" * 40000)], True)
    frames = _parse(e.data_to_send())
    assert [(f[0], f[1]) for f in frames] == [(1, 1), (9, 0), (9, 4)]
    assert [len(f[3]) for f in frames[:2]] == [16384, 16384]
    block = b"".join(f[3] for f in frames)
    assert hpack.Decoder().decode(block, raw=True)[1] == (b"x-big", b"v" * 40000)


def test_ping_answered_and_ack_reported():
    e = _engine()
    ev = e.receive(_frame(6, 0, 0, b"12345678") + _frame(6, 1, 0, b"abcdefgh"))
    assert ev == [(F.EV_PING,), (F.EV_PING_ACK, b"abcdefgh")]
    assert _parse(e.data_to_send()) == [(6, 1, 0, b"12345678")]


def test_reset_and_goaway_reported_stream_dropped():
    e = _engine()
    sid = _open(e)
    ev = e.receive(_frame(3, 0, sid, (8).to_bytes(4, "big"))
                   + _frame(0, 0, sid, b"late")                 # after the reset: dropped
                   + _frame(7, 0, 0, (1).to_bytes(4, "big") + (0).to_bytes(4, "big")))
    assert ev == [(F.EV_RESET, sid, 8), (F.EV_GOAWAY, 1, 0)]


def test_frame_above_max_size_refused_before_payload():
    e = _engine()
    _refused(e, _frame(0, 0, 1, b"")[:0] + (16385).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01",
             h2x.FrameTooLargeError, 6, "16385 bytes announced, the limit is 16384")


@pytest.mark.parametrize("data, exc, code, text", [
    (_frame(0, 0, 0, b"x"), h2x.ProtocolError, 1, "DATA on stream 0"),
    (_frame(0, 0, 3, b"x"), h2x.ProtocolError, 1, "idle stream 3"),
    (_frame(0, 0, 2, b"x"), h2x.ProtocolError, 1, "idle stream 2"),
    (_frame(0, 0x8, 1, b"\x05ab"), h2x.ProtocolError, 1, "padding"),
    (_frame(1, 0x8, 1, b"\x09ab"), h2x.ProtocolError, 1, "padding"),
    (_frame(8, 0, 0, b"\x00\x00\x01"), h2x.FrameDataMissingError, 6, "WINDOW_UPDATE of 3"),
    (_frame(8, 0, 0, b"\x00\x00\x00\x00"), h2x.ProtocolError, 1, "WINDOW_UPDATE of 0"),
    (_frame(8, 0, 0, b"\x7f\xff\xff\xff"), h2x.FlowControlError, 3, "2^31-1"),
    (_frame(4, 0, 0, b"\x00\x05\x00\x00\x00\x10"), h2x.ProtocolError, 1, "MAX_FRAME_SIZE 16"),
    (_frame(4, 0, 0, b"\x00\x04\x80\x00\x00\x00"), h2x.FlowControlError, 3, "INITIAL_WINDOW"),
    (_frame(4, 0, 0, b"\x00\x04\x00"), h2x.ProtocolError, 6, "SETTINGS of 3"),
    (_frame(4, 1, 0, b"\x00" * 6), h2x.ProtocolError, 6, "ACK with a payload"),
    (_frame(4, 0, 1, b""), h2x.ProtocolError, 1, "SETTINGS on stream 1"),
    (_frame(6, 0, 0, b"1234"), h2x.ProtocolError, 6, "PING of 4"),
    (_frame(3, 0, 1, b"\x00\x00"), h2x.ProtocolError, 6, "RST_STREAM of 2"),
    (_frame(7, 0, 0, b"\x00\x00"), h2x.ProtocolError, 6, "GOAWAY of 2"),
    (_frame(2, 0, 1, b"\x00"), h2x.ProtocolError, 6, "PRIORITY of 1"),
    (_frame(5, 4, 1, b"\x00\x00\x00\x02"), h2x.ProtocolError, 1, "PUSH_PROMISE"),
    (_frame(9, 4, 1, b""), h2x.ProtocolError, 1, "outside a header block"),
    (_frame(1, 0, 1, b"") + _frame(0, 0, 1, b"x"), h2x.ProtocolError, 1, "inside the header"),
    (_frame(1, 4, 1, b"\xff\xff\xff\xff\x0f"), h2x.ProtocolError, 9, "HPACK"),
])
def test_invalid_frames_refused(data, exc, code, text):
    e = _engine()
    _open(e)
    _refused(e, data, exc, code, text)


def test_closed_stream_and_trailers_rules():
    e = _engine()
    sid = _open(e)
    e.receive(_frame(1, 4, sid, _head_block()))
    # trailers must end the stream
    _refused(e, _frame(1, 4, sid, _trailer_block()), h2x.ProtocolError, 1, "END_STREAM")
    e = _engine()
    sid = _open(e, end=False)
    e.receive(_frame(0, 1, sid, b"x"))              # the server ended its side
    _refused(e, _frame(0, 0, sid, b"y"), h2x.StreamClosedError, 5, "after its END_STREAM")


def test_connection_window_overrun():
    e = _engine(stream_window=1 << 20, conn_window=65535)
    sids = [_open(e) for _ in range(5)]
    for sid in sids[:4]:
        e.receive(_frame(0, 0, sid, b"x" * 16383))
    _refused(e, _frame(0, 0, sids[4], b"x" * 100), h2x.FlowControlError, 3,
             "connection's flow-control window")


def test_oversized_header_block_refused():
    e = _engine()
    sid = _open(e)
    e.receive(_frame(1, 0, sid, b"\x00" * 16384))
    for _ in range(2):
        e.receive(_frame(9, 0, sid, b"\x00" * 16384))
    # the header block holds at most max_header_bytes (65536): the fifth
    # fragment is refused before it is decoded
    e.receive(_frame(9, 0, sid, b"\x00" * 16384))
    _refused(e, _frame(9, 0, sid, b"\x00"), h2x.DenialOfServiceError, 11, "max_header_bytes")


def test_endless_continuation_refused():
    e = _engine()
    sid = _open(e)
    e.receive(_frame(1, 0, sid, b"\x88"))
    events = e.receive(_frame(9, 0, sid, b"") * (F.MAX_HEADER_FRAMES - 1))
    assert events == []
    _refused(e, _frame(9, 0, sid, b""), h2x.DenialOfServiceError, 11, "MAX_HEADER_FRAMES")


def test_decoded_header_list_bound():
    e = _engine()
    sid = _open(e)
    big = hpack.Encoder().encode([(b":status", b"200")] + [(b"x-%d" % i, b"v" * 1000)
                                                           for i in range(70)])
    frames = [big[i:i + 16384] for i in range(0, len(big), 16384)]
    assert len(big) <= MAX_HEADER_BYTES < 70 * 1000 and len(frames) > 1
    wire = _frame(1, 0, sid, frames[0]) + b"".join(
        _frame(9, 4 if i == len(frames) - 2 else 0, sid, f) for i, f in enumerate(frames[1:]))
    with pytest.raises(h2x.DenialOfServiceError) as ei:
        e.receive(wire)
    assert "max_header_bytes" in str(ei.value)


# -- through a Channel, against a hostile server --

@pytest.mark.parametrize("mode, code, text", [
    ("data_stream0", "INTERNAL", "DATA on stream 0"),
    ("bad_padding", "INTERNAL", "padding"),
    ("short_window_update", "INTERNAL", "WINDOW_UPDATE of 3 bytes"),
    ("flow_overrun", "INTERNAL", "flow-control window"),
    ("big_headers", "RESOURCE_EXHAUSTED", "max_header_bytes"),
    ("endless_continuation", "RESOURCE_EXHAUSTED", "MAX_HEADER_FRAMES"),
])
def test_hostile_frames_fail_the_call_other_channels_unaffected(mode, code, text):
    from support.grpc_fake import serve_fake

    async def main():
        async with serve_fake(mode) as bad, serve_fake("slow_settings") as good:
            async with rg.Channel(f"127.0.0.1:{bad}") as ch, \
                    rg.Channel(f"127.0.0.1:{good}") as other:
                ok = other.unary_unary("/x.Y/Z")
                assert await ok(b"req", timeout=CALL_BOUND) == b"ok"
                with pytest.raises(rg.AioRpcError) as ei:
                    await ch.unary_unary("/x.Y/Z")(b"req", timeout=CALL_BOUND)
                assert ei.value.code() is getattr(rg.StatusCode, code), ei.value
                assert text in ei.value.details(), ei.value
                assert not ch._pool.h2conns         # the failed connection is gone
                assert await ok(b"req", timeout=CALL_BOUND) == b"ok"
    run(main)


# -- the unary fast path (Rpc.unary): the common shape in one step, any other
# shape through the general reader, with the same outcome --

@pytest.mark.parametrize("mode, options, outcome, fast", [
    ("slow_settings", None, b"ok", True),            # head, one message, OK trailers
    ("gzip_ok", None, b"ok", False),                 # compressed: the Deframer inflates it
    ("error_after_message", None, "NOT_FOUND", False),
    ("slow_settings", [("grpc.max_receive_message_length", 1)], "RESOURCE_EXHAUSTED", False),
    ("two_messages", None, "UNIMPLEMENTED", False),
    ("length_lie", None, "INTERNAL", False),
])
def test_unary_fast_path_takes_only_the_common_shape(mode, options, outcome, fast):
    from support.grpc_fake import serve_fake

    async def main():
        async with serve_fake(mode) as port:
            async with rg.Channel(f"127.0.0.1:{port}", options=options) as ch:
                call = ch.unary_unary("/x.Y/Z")(b"req", timeout=CALL_BOUND)
                if isinstance(outcome, bytes):
                    assert await call == outcome
                    assert await call.code() is rg.StatusCode.OK
                else:
                    with pytest.raises(rg.AioRpcError) as ei:
                        await call
                    assert ei.value.code() is getattr(rg.StatusCode, outcome), ei.value
                # the fast path never builds a Deframer; the general reader does
                assert (call._rpc.deframer is None) is fast
                conn = ch._pool.h2conns[0] if ch._pool.h2conns else None
                if conn is not None:
                    assert not conn.streams          # the stream left the connection
    run(main)


def test_trailer_bound_holds_for_a_repeated_block():
    """Header blocks seen before skip validation; a trailer section over
    max_trailer_bytes fails its call every time it comes, not only the
    first (the size check is not skipped with the validation)."""
    from support.grpc_fake import serve_fake

    async def main():
        async with serve_fake("big_trailers") as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                for _ in range(3):
                    with pytest.raises(rg.AioRpcError) as ei:
                        await ch.unary_unary("/x.Y/Z")(b"req", timeout=CALL_BOUND)
                    assert "max_trailer_bytes" in ei.value.details(), ei.value
                assert len(ch._pool.h2conns) == 1       # one connection, never failed
    run(main)


def test_fast_path_verdicts_are_per_block_pair():
    """Rpc._whole remembers its verdict per (head, trailers) pair on the
    channel: calls whose trailers differ (another status, other metadata,
    a repeated field) on one connection each get their own outcome and
    metadata, whatever came before."""
    from support.grpc_fake import serve_fake

    async def main():
        async with serve_fake("mixed") as port:
            async with rg.Channel(f"127.0.0.1:{port}") as ch:
                method = ch.unary_unary("/x.Y/Z")
                for _ in range(3):
                    call = method(b"req", timeout=CALL_BOUND)
                    assert await call == b"ok"
                    assert await call.trailing_metadata() == (("x-t", "a"),)
                    assert await call.initial_metadata() == (("x-h", "1"),)
                    call = method(b"req", timeout=CALL_BOUND)
                    with pytest.raises(rg.AioRpcError) as ei:
                        await call
                    assert ei.value.code() is rg.StatusCode.NOT_FOUND
                    assert ei.value.details() == "gone"
                    call = method(b"req", timeout=CALL_BOUND)
                    assert await call == b"ok"
                    assert await call.trailing_metadata() == (("x-t", "b"),)
                    call = method(b"req", timeout=CALL_BOUND)
                    assert await call == b"ok"
                    assert await call.trailing_metadata() == (("x-t", "c"), ("x-t", "d"))
                    assert call._rpc.deframer is not None   # the general reader took it
                assert len(ch._pool.h2conns) == 1
    run(main)
