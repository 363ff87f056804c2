# cython: language_level=3, boundscheck=False, wraparound=False
"""Native HTTP/2 frame engine for the client side of one connection, used by
``_h2fast.FastH2Connection`` (ringline.grpc's connections) in place of the
``h2`` library's state machine.

Owns ``H2Engine``: the receive buffer and frame parser (DATA, HEADERS and
CONTINUATION, PRIORITY, RST_STREAM, SETTINGS and its ACK, PUSH_PROMISE
(refused: push is disabled), PING, GOAWAY, WINDOW_UPDATE; unknown types are
skipped), the per-stream states (``_EStream``: open / half-closed either
way; a stream leaves the table once both sides closed or it was reset),
flow-control windows both ways, the server's SETTINGS, and the bytes to
send (preface, SETTINGS, HEADERS with CONTINUATION when the block exceeds the
server's max frame size, DATA, WINDOW_UPDATE, RST_STREAM, PING, GOAWAY).
HPACK is the caller's ``encoder`` / ``decoder`` (``hpack``'s or a caching
wrapper of it): every header block is decoded, whatever stream it is on,
so the dynamic table stays in step. The API mirrors the subset of
``h2.connection.H2Connection`` that ``_h2conn`` uses, so that code (sending,
cancelling, body reads) runs on either.

Lifecycle: ``initiate()`` queues the preface -> ``receive(bytes)`` returns
the events of the complete frames (a partial frame is kept for the next
receive) -> ``data_to_send()`` takes what is queued; after any error raised
by ``receive`` the engine is dead (the connection fails).

Events (tuples, first item the kind): (EV_DATA, sid, data, flow_len, ended),
(EV_HEADERS, sid, headers, ended, is_trailer), (EV_RESET, sid, code),
(EV_WINDOW, sid, increment: only when the window it opens -- the
connection's, or that of a stream still sending -- was at or below 0, the
only case where a sender waits on it), (EV_SETTINGS,), (EV_SETTINGS_ACK,), (EV_PING,),
(EV_PING_ACK, opaque), (EV_GOAWAY, last_sid, code), (EV_OTHER,) (PRIORITY,
unknown types: frames carrying no progress, for the flood count). Frames of
streams no longer in the table (reset or finished here) are dropped; their
DATA is credited back to the connection window at once.

Invariants and bounds (the checks h2 makes that matter): a frame whose
header announces more than ``max_inbound_frame_size`` (16384, what we
advertise) fails the connection before its payload is buffered, so the
buffer holds at most one frame; fixed-size frames (PRIORITY 5, RST_STREAM 4,
PING 8, WINDOW_UPDATE 4, SETTINGS a multiple of 6, its ACK 0) and padding
longer than the payload are FRAME_SIZE / PROTOCOL errors; a header block
(HEADERS + CONTINUATION) is at most ``max_header_bytes`` bytes and
``MAX_HEADER_FRAMES`` frames (``DenialOfServiceError``: an endless
CONTINUATION run ends there), and no other frame may come inside it;
stream ids: DATA / HEADERS / RST_STREAM on stream 0, SETTINGS / PING /
GOAWAY off stream 0, frames on an idle stream (above the highest we opened,
or even: servers cannot push here) are PROTOCOL errors; DATA or HEADERS
after the server ended the stream is STREAM_CLOSED; trailers without
END_STREAM are a PROTOCOL error; the receive windows (ours, per stream and
per connection) are never overrun (FLOW_CONTROL_ERROR) and are reopened
only as the caller acknowledges bytes; the send windows (the server's) are
never exceeded by ``send_data`` and a WINDOW_UPDATE or SETTINGS that would
push one past 2^31-1 is a FLOW_CONTROL error; a zero WINDOW_UPDATE is a
PROTOCOL error; no stream is opened above id 2^31-1 (``send_headers``
raises NoAvailableStreamIDError before encoding or queueing anything: the
31-bit field would wrap the id). Every connection error queues GOAWAY with
its code before raising (``h2.exceptions.ProtocolError`` subclasses), so
the caller only flushes and fails the connection.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

import h2.exceptions as _h2x  # type: ignore[import-untyped]

__all__ = ["H2Engine", "MAX_HEADER_FRAMES"]

EV_DATA = 0
EV_HEADERS = 1
EV_RESET = 2
EV_WINDOW = 3
EV_SETTINGS = 4
EV_SETTINGS_ACK = 5
EV_PING = 6
EV_PING_ACK = 7
EV_GOAWAY = 8
EV_OTHER = 9

MAX_HEADER_FRAMES = 64          # HEADERS + CONTINUATION frames of one header block

cdef enum:
    T_DATA = 0
    T_HEADERS = 1
    T_PRIORITY = 2
    T_RST = 3
    T_SETTINGS = 4
    T_PUSH = 5
    T_PING = 6
    T_GOAWAY = 7
    T_WINDOW = 8
    T_CONT = 9

cdef enum:
    F_END_STREAM = 0x1
    F_ACK = 0x1
    F_END_HEADERS = 0x4
    F_PADDED = 0x8
    F_PRIORITY = 0x20

cdef enum:
    E_NO_ERROR = 0
    E_PROTOCOL = 1
    E_FLOW = 3
    E_STREAM_CLOSED = 5
    E_FRAME_SIZE = 6
    E_COMPRESSION = 9
    E_ENHANCE_YOUR_CALM = 11

cdef long long _WIN_MAX = 0x7FFFFFFF
cdef unsigned int _SID_MAX = 0x7FFFFFFF      # the highest stream id (31 bits)
cdef bytes _PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


cdef class _EStream:
    cdef long long send_window
    cdef long long recv_window
    cdef long long unacked
    cdef bint local_closed
    cdef bint remote_closed
    cdef bint head_seen


cdef inline bytes _hdr(Py_ssize_t length, int ftype, int flags, unsigned int sid):
    cdef char buf[9]
    buf[0] = <char>((length >> 16) & 0xFF)
    buf[1] = <char>((length >> 8) & 0xFF)
    buf[2] = <char>(length & 0xFF)
    buf[3] = <char>ftype
    buf[4] = <char>flags
    buf[5] = <char>((sid >> 24) & 0x7F)
    buf[6] = <char>((sid >> 16) & 0xFF)
    buf[7] = <char>((sid >> 8) & 0xFF)
    buf[8] = <char>(sid & 0xFF)
    return PyBytes_FromStringAndSize(buf, 9)


cdef inline unsigned int _u32(const unsigned char *p) noexcept:
    return (<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) | \
        (<unsigned int>p[2] << 8) | <unsigned int>p[3]


cdef inline bytes _u32b(unsigned int v):
    cdef char buf[4]
    buf[0] = <char>((v >> 24) & 0xFF)
    buf[1] = <char>((v >> 16) & 0xFF)
    buf[2] = <char>((v >> 8) & 0xFF)
    buf[3] = <char>(v & 0xFF)
    return PyBytes_FromStringAndSize(buf, 4)


cdef class H2Engine:
    cdef public object encoder
    cdef public object decoder
    cdef bytearray out
    cdef bytes pending
    cdef dict streams
    cdef unsigned int _next_sid
    cdef readonly unsigned int highest_sid
    cdef readonly long long max_outbound_frame_size
    cdef readonly long long max_inbound_frame_size
    cdef readonly long long remote_max_concurrent_streams
    cdef readonly long long remote_max_header_list_size
    cdef long long remote_initial_window
    cdef long long conn_send_window
    cdef long long conn_recv_window
    cdef long long conn_unacked
    cdef long long conn_window
    cdef long long stream_window
    cdef long long max_header_bytes
    cdef Py_ssize_t max_streams_local
    cdef long long header_table_size
    # the header block being collected (HEADERS then CONTINUATION)
    cdef unsigned int block_sid
    cdef int block_frames
    cdef bint block_end_stream
    cdef list block_parts
    cdef Py_ssize_t block_len
    cdef readonly bint dead

    def __init__(self, long long stream_window, long long conn_window, int max_streams,
                 long long header_table_size, long long max_header_bytes, encoder, decoder):
        self.encoder = encoder
        self.decoder = decoder
        self.out = bytearray()
        self.pending = b""
        self.streams = {}
        self._next_sid = 1
        self.highest_sid = 0
        self.max_outbound_frame_size = 16384
        self.max_inbound_frame_size = 16384
        self.remote_max_concurrent_streams = 0x7FFFFFFF
        self.remote_max_header_list_size = 0x7FFFFFFF
        self.remote_initial_window = 65535
        self.conn_send_window = 65535
        self.conn_recv_window = 65535
        self.conn_unacked = 0
        self.conn_window = conn_window
        self.stream_window = stream_window
        self.max_header_bytes = max_header_bytes
        self.max_streams_local = max_streams
        self.header_table_size = header_table_size
        self.block_sid = 0
        self.block_parts = []
        self.dead = False

    # -- sending --

    def initiate(self):
        """Queue the preface, our SETTINGS and the connection window's
        opening from 65535 to ``conn_window``."""
        cdef bytes settings = b"".join([
            b"\x00\x02" + _u32b(0),                               # ENABLE_PUSH
            b"\x00\x03" + _u32b(self.max_streams_local),          # MAX_CONCURRENT_STREAMS
            b"\x00\x04" + _u32b(self.stream_window),              # INITIAL_WINDOW_SIZE
            b"\x00\x01" + _u32b(self.header_table_size),          # HEADER_TABLE_SIZE
            b"\x00\x06" + _u32b(self.max_header_bytes),           # MAX_HEADER_LIST_SIZE
        ])
        self.out += _PREFACE
        self.out += _hdr(len(settings), T_SETTINGS, 0, 0)
        self.out += settings
        if self.conn_window > 65535:
            self.out += _hdr(4, T_WINDOW, 0, 0)
            self.out += _u32b(self.conn_window - 65535)
            self.conn_recv_window = self.conn_window

    def data_to_send(self):
        if not self.out:
            return b""
        data = bytes(self.out)
        self.out = bytearray()
        return data

    @property
    def next_sid(self):
        """The id the next stream takes (odd; above 2^31-1 once the ids are
        used up). Settable, to an odd id above every id used so far, so a
        test can start a connection near the end of the id space."""
        return self._next_sid

    @next_sid.setter
    def next_sid(self, unsigned int sid):
        if not sid & 1 or sid <= self.highest_sid:
            raise ValueError(f"the next stream id must be odd and above {self.highest_sid}, "
                             f"not {sid}")
        self._next_sid = sid

    def get_next_available_stream_id(self):
        """The id the next stream takes; as h2, NoAvailableStreamIDError
        once the 2^30 client ids of a connection (odd, up to 2^31-1) are
        used up."""
        if self._next_sid > _SID_MAX:
            raise _h2x.NoAvailableStreamIDError("the connection's stream ids are used up")
        return self._next_sid

    def send_headers(self, unsigned int sid, headers, bint end_stream=False):
        """Open stream ``sid`` (the next id) with a header block,
        CONTINUATION frames after HEADERS when it exceeds the server's max
        frame size. An id above 2^31-1 raises NoAvailableStreamIDError
        before anything is encoded or queued (the frame header's 31 bits
        would wrap it onto an id already used)."""
        if sid > _SID_MAX:
            raise _h2x.NoAvailableStreamIDError(f"stream id {sid} is above 2^31-1: the "
                                                "connection's stream ids are used up")
        if sid != self._next_sid:
            raise _h2x.ProtocolError(f"stream {sid} is not the next stream id {self._next_sid}")
        if self.dead:
            raise _h2x.ProtocolError("the connection is closed")
        cdef bytes block = bytes(self.encoder.encode(headers))
        cdef _EStream s = _EStream()
        s.send_window = self.remote_initial_window
        s.recv_window = self.stream_window
        s.local_closed = end_stream
        self.streams[sid] = s
        self._next_sid = sid + 2
        self.highest_sid = sid
        cdef Py_ssize_t n = PyBytes_GET_SIZE(block)
        cdef Py_ssize_t fmax = self.max_outbound_frame_size
        cdef int flags = F_END_STREAM if end_stream else 0
        if n <= fmax:
            self.out += _hdr(n, T_HEADERS, flags | F_END_HEADERS, sid)
            self.out += block
            return
        self.out += _hdr(fmax, T_HEADERS, flags, sid)
        self.out += block[:fmax]
        cdef Py_ssize_t pos = fmax
        cdef Py_ssize_t k
        while pos < n:
            k = min(fmax, n - pos)
            self.out += _hdr(k, T_CONT, F_END_HEADERS if pos + k >= n else 0, sid)
            self.out += block[pos:pos + k]
            pos += k

    def local_flow_control_window(self, unsigned int sid):
        cdef _EStream s = self.streams.get(sid)
        if s is None:
            raise _h2x.StreamClosedError(sid)
        return min(s.send_window, self.conn_send_window)

    def send_data(self, unsigned int sid, data, bint end_stream=False):
        cdef _EStream s = self.streams.get(sid)
        if s is None or s.local_closed:
            raise _h2x.StreamClosedError(sid)
        cdef Py_ssize_t n = len(data)
        if n > self.max_outbound_frame_size:
            raise _h2x.FrameTooLargeError(f"{n} bytes exceed the server's max frame size "
                                          f"{self.max_outbound_frame_size}")
        if n > s.send_window or n > self.conn_send_window:
            raise _h2x.FlowControlError(f"{n} bytes exceed the server's flow-control window")
        s.send_window -= n
        self.conn_send_window -= n
        self.out += _hdr(n, T_DATA, F_END_STREAM if end_stream else 0, sid)
        self.out += data
        if end_stream:
            self._close_local(sid, s)

    def end_stream(self, unsigned int sid):
        cdef _EStream s = self.streams.get(sid)
        if s is None or s.local_closed:
            raise _h2x.StreamClosedError(sid)
        self.out += _hdr(0, T_DATA, F_END_STREAM, sid)
        self._close_local(sid, s)

    cdef void _close_local(self, unsigned int sid, _EStream s):
        s.local_closed = True
        if s.remote_closed:
            del self.streams[sid]

    def reset_stream(self, unsigned int sid, int error_code=0):
        """RST_STREAM; nothing for a stream already closed both ways."""
        if self.streams.pop(sid, None) is None or self.dead:
            return
        self.out += _hdr(4, T_RST, 0, sid)
        self.out += _u32b(error_code)

    def release(self, unsigned int sid):
        """The caller is done with ``sid``: a stream the server ended while
        ours is still open leaves the table with RST_STREAM NO_ERROR (the
        request side will send nothing more), so no stream outlives its
        call."""
        cdef _EStream s = self.streams.get(sid)
        if s is None or not s.remote_closed:
            return
        del self.streams[sid]
        if not self.dead:
            self.out += _hdr(4, T_RST, 0, sid)
            self.out += _u32b(0)

    def acknowledge_received_data(self, long long n, unsigned int sid):
        """The caller took ``n`` flow-controlled bytes of ``sid``: reopen the
        windows (a WINDOW_UPDATE once half of a window is used up). True
        when a WINDOW_UPDATE was queued (there is something to send)."""
        return self._ack(n, sid)

    cdef bint _ack(self, long long n, unsigned int sid):
        cdef bint queued = False
        self.conn_unacked += n
        if self.conn_unacked >= self.conn_window // 2:
            self.out += _hdr(4, T_WINDOW, 0, 0)
            self.out += _u32b(self.conn_unacked)
            self.conn_recv_window += self.conn_unacked
            self.conn_unacked = 0
            queued = True
        cdef _EStream s = self.streams.get(sid)
        if s is None or s.remote_closed:
            return queued
        s.unacked += n
        if s.unacked >= self.stream_window // 2:
            self.out += _hdr(4, T_WINDOW, 0, sid)
            self.out += _u32b(s.unacked)
            s.recv_window += s.unacked
            s.unacked = 0
            queued = True
        return queued

    def ping(self, bytes opaque):
        if len(opaque) != 8:
            raise ValueError("a PING carries 8 bytes")
        self.out += _hdr(8, T_PING, 0, 0)
        self.out += opaque

    def close_connection(self, int error_code=0):
        """Queue GOAWAY (no server stream was accepted: last stream 0)."""
        self.out += _hdr(8, T_GOAWAY, 0, 0)
        self.out += _u32b(0)
        self.out += _u32b(error_code)
        self.dead = True

    # -- receiving --

    cdef _conn_error(self, int code, str msg, type exc=_h2x.ProtocolError):
        self.close_connection(code)
        self.pending = b""
        return exc(msg)

    def receive(self, data):
        """Parse ``data`` after what an earlier receive left; the events of
        the complete frames (see the module docstring)."""
        if self.dead:
            return []
        cdef bytes buf
        if self.pending:
            buf = self.pending + bytes(data)
        else:
            buf = bytes(data)
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t length
        cdef int ftype, flags
        cdef unsigned int sid
        cdef list events = []
        while n - pos >= 9:
            length = (<Py_ssize_t>p[pos] << 16) | (<Py_ssize_t>p[pos + 1] << 8) | p[pos + 2]
            ftype = p[pos + 3]
            flags = p[pos + 4]
            sid = _u32(p + pos + 5) & 0x7FFFFFFF
            if length > self.max_inbound_frame_size:
                raise self._conn_error(E_FRAME_SIZE, f"a frame of {length} bytes announced, "
                                       f"the limit is {self.max_inbound_frame_size}",
                                       _h2x.FrameTooLargeError)
            if n - pos - 9 < length:
                break
            self._frame(events, ftype, flags, sid, p + pos + 9, length)
            pos += 9 + length
        self.pending = buf[pos:] if pos < n else b""
        return events

    cdef _frame(self, list events, int ftype, int flags, unsigned int sid,
                const unsigned char *p, Py_ssize_t length):
        cdef _EStream s
        cdef Py_ssize_t pad, start
        cdef long long inc
        if self.block_sid and ftype != T_CONT:
            raise self._conn_error(E_PROTOCOL, f"a frame of type {ftype} inside the header "
                                   f"block of stream {self.block_sid}")
        if ftype == T_DATA:
            if sid == 0:
                raise self._conn_error(E_PROTOCOL, "DATA on stream 0")
            pad = 0
            if flags & F_PADDED:
                if length < 1 or p[0] >= length:
                    raise self._conn_error(E_PROTOCOL, "DATA padding longer than the frame")
                pad = p[0] + 1
            self.conn_recv_window -= length
            if self.conn_recv_window < 0:
                raise self._conn_error(E_FLOW, "the server overran the connection's "
                                       "flow-control window", _h2x.FlowControlError)
            s = self._recv_stream(sid, "DATA")
            if s is None:
                self._ack(length, sid)          # a stream reset or done here: credit it back
                return
            s.recv_window -= length
            if s.recv_window < 0:
                raise self._conn_error(E_FLOW, f"the server overran stream {sid}'s "
                                       f"flow-control window", _h2x.FlowControlError)
            if flags & F_END_STREAM:
                self._close_remote(sid, s)
            events.append((EV_DATA, sid, PyBytes_FromStringAndSize(
                <const char *>p + (1 if pad else 0), length - pad), length,
                bool(flags & F_END_STREAM)))
        elif ftype == T_HEADERS:
            if sid == 0:
                raise self._conn_error(E_PROTOCOL, "HEADERS on stream 0")
            pad = 0
            start = 0
            if flags & F_PADDED:
                if length < 1:
                    raise self._conn_error(E_PROTOCOL, "HEADERS padding longer than the frame")
                pad = p[0]
                start = 1
            if flags & F_PRIORITY:
                start += 5
            if start + pad > length:
                raise self._conn_error(E_PROTOCOL, "HEADERS padding longer than the frame")
            self.block_parts = [PyBytes_FromStringAndSize(<const char *>p + start,
                                                          length - start - pad)]
            self.block_len = length
            self.block_frames = 1
            self.block_end_stream = flags & F_END_STREAM
            self.block_sid = sid
            self._check_block()
            if flags & F_END_HEADERS:
                self._block_done(events)
        elif ftype == T_CONT:
            if self.block_sid == 0 or sid != self.block_sid:
                raise self._conn_error(E_PROTOCOL, f"CONTINUATION on stream {sid} outside "
                                       f"a header block")
            self.block_parts.append(PyBytes_FromStringAndSize(<const char *>p, length))
            self.block_len += length
            self.block_frames += 1
            self._check_block()
            if flags & F_END_HEADERS:
                self._block_done(events)
        elif ftype == T_WINDOW:
            if length != 4:
                raise self._conn_error(E_FRAME_SIZE, f"WINDOW_UPDATE of {length} bytes",
                                       _h2x.FrameDataMissingError)
            inc = _u32(p) & 0x7FFFFFFF
            if inc == 0:
                raise self._conn_error(E_PROTOCOL, f"a WINDOW_UPDATE of 0 on stream {sid}")
            if sid == 0:
                self.conn_send_window += inc
                if self.conn_send_window > _WIN_MAX:
                    raise self._conn_error(E_FLOW, "the server's connection window passed "
                                           "2^31-1", _h2x.FlowControlError)
                if self.conn_send_window - inc > 0:
                    return          # no sender can be waiting on an open window
            else:
                if sid > self.highest_sid or not sid & 1:
                    raise self._conn_error(E_PROTOCOL, f"WINDOW_UPDATE on idle stream {sid}")
                s = self.streams.get(sid)
                if s is None:
                    return
                s.send_window += inc
                if s.send_window > _WIN_MAX:
                    raise self._conn_error(E_FLOW, f"the server's window of stream {sid} "
                                           f"passed 2^31-1", _h2x.FlowControlError)
                if s.local_closed or s.send_window - inc > 0:
                    # nothing of this stream can wait for it: a sender waits
                    # only on a window at or below 0 (the connection's
                    # opening is an event of its own)
                    return
            events.append((EV_WINDOW, sid, inc))
        elif ftype == T_SETTINGS:
            if sid != 0:
                raise self._conn_error(E_PROTOCOL, f"SETTINGS on stream {sid}")
            if flags & F_ACK:
                if length != 0:
                    raise self._conn_error(E_FRAME_SIZE, "a SETTINGS ACK with a payload")
                events.append((EV_SETTINGS_ACK,))
                return
            if length % 6:
                raise self._conn_error(E_FRAME_SIZE, f"SETTINGS of {length} bytes")
            self._settings(p, length)
            self.out += _hdr(0, T_SETTINGS, F_ACK, 0)
            events.append((EV_SETTINGS,))
        elif ftype == T_PING:
            if sid != 0:
                raise self._conn_error(E_PROTOCOL, f"PING on stream {sid}")
            if length != 8:
                raise self._conn_error(E_FRAME_SIZE, f"PING of {length} bytes")
            if flags & F_ACK:
                events.append((EV_PING_ACK, PyBytes_FromStringAndSize(<const char *>p, 8)))
            else:
                self.out += _hdr(8, T_PING, F_ACK, 0)
                self.out += PyBytes_FromStringAndSize(<const char *>p, 8)
                events.append((EV_PING,))
        elif ftype == T_RST:
            if sid == 0:
                raise self._conn_error(E_PROTOCOL, "RST_STREAM on stream 0")
            if length != 4:
                raise self._conn_error(E_FRAME_SIZE, f"RST_STREAM of {length} bytes")
            if sid > self.highest_sid or not sid & 1:
                raise self._conn_error(E_PROTOCOL, f"RST_STREAM on idle stream {sid}")
            if self.streams.pop(sid, None) is not None:
                events.append((EV_RESET, sid, _u32(p)))
        elif ftype == T_GOAWAY:
            if sid != 0:
                raise self._conn_error(E_PROTOCOL, f"GOAWAY on stream {sid}")
            if length < 8:
                raise self._conn_error(E_FRAME_SIZE, f"GOAWAY of {length} bytes")
            events.append((EV_GOAWAY, _u32(p) & 0x7FFFFFFF, _u32(p + 4)))
        elif ftype == T_PRIORITY:
            if sid == 0:
                raise self._conn_error(E_PROTOCOL, "PRIORITY on stream 0")
            if length != 5:
                raise self._conn_error(E_FRAME_SIZE, f"PRIORITY of {length} bytes")
            events.append((EV_OTHER,))
        elif ftype == T_PUSH:
            raise self._conn_error(E_PROTOCOL, "PUSH_PROMISE with push disabled")
        else:
            events.append((EV_OTHER,))          # unknown frame types are ignored

    cdef _EStream _recv_stream(self, unsigned int sid, str what):
        """The stream a DATA / HEADERS frame is on, None when it left the
        table (reset or finished here); idle and remotely closed streams
        are connection errors."""
        if sid > self.highest_sid or not sid & 1:
            raise self._conn_error(E_PROTOCOL, f"{what} on idle stream {sid}")
        cdef _EStream s = self.streams.get(sid)
        if s is not None and s.remote_closed:
            raise self._conn_error(E_STREAM_CLOSED, f"{what} on stream {sid} after its "
                                   f"END_STREAM", _h2x.StreamClosedError)
        return s

    cdef void _close_remote(self, unsigned int sid, _EStream s):
        s.remote_closed = True
        if s.local_closed:
            del self.streams[sid]

    cdef _check_block(self):
        if self.block_len > self.max_header_bytes:
            raise self._conn_error(E_ENHANCE_YOUR_CALM, f"a header block of more than "
                                   f"{self.max_header_bytes} bytes (max_header_bytes)",
                                   _h2x.DenialOfServiceError)
        if self.block_frames > MAX_HEADER_FRAMES:
            raise self._conn_error(E_ENHANCE_YOUR_CALM, f"a header block in more than "
                                   f"{MAX_HEADER_FRAMES} frames (MAX_HEADER_FRAMES)",
                                   _h2x.DenialOfServiceError)

    cdef _block_done(self, list events):
        cdef unsigned int sid = self.block_sid
        cdef bint ended = self.block_end_stream
        parts = self.block_parts
        block = parts[0] if len(parts) == 1 else b"".join(parts)
        self.block_parts = []
        self.block_sid = 0
        try:
            headers = self.decoder.decode(block, True)
        except Exception as exc:
            name = type(exc).__name__
            if name == "OversizedHeaderListError":
                raise self._conn_error(E_ENHANCE_YOUR_CALM, f"a header list over "
                                       f"{self.max_header_bytes} bytes (max_header_bytes)",
                                       _h2x.DenialOfServiceError)
            raise self._conn_error(E_COMPRESSION, f"HPACK decoding failed ({name}: {exc})")
        cdef _EStream s = self._recv_stream(sid, "HEADERS")
        if s is None:
            return
        cdef bint trailer = s.head_seen
        if trailer:
            if not ended:
                raise self._conn_error(E_PROTOCOL, f"trailers without END_STREAM on "
                                       f"stream {sid}")
        elif not (headers and headers[0][0] == b":status" and headers[0][1][:1] == b"1"):
            s.head_seen = True
        elif ended:
            raise self._conn_error(E_PROTOCOL, f"an informational head with END_STREAM on "
                                   f"stream {sid}")
        if ended:
            self._close_remote(sid, s)
        events.append((EV_HEADERS, sid, headers, ended, trailer))

    cdef _settings(self, const unsigned char *p, Py_ssize_t length):
        cdef Py_ssize_t i = 0
        cdef int ident
        cdef long long v, delta
        cdef _EStream s
        while i < length:
            ident = (p[i] << 8) | p[i + 1]
            v = _u32(p + i + 2)
            i += 6
            if ident == 1:
                self.encoder.header_table_size = v
            elif ident == 2:
                if v > 1:
                    raise self._conn_error(E_PROTOCOL, f"SETTINGS_ENABLE_PUSH {v}")
            elif ident == 3:
                self.remote_max_concurrent_streams = v
            elif ident == 4:
                if v > _WIN_MAX:
                    raise self._conn_error(E_FLOW, f"SETTINGS_INITIAL_WINDOW_SIZE {v}",
                                           _h2x.FlowControlError)
                delta = v - self.remote_initial_window
                self.remote_initial_window = v
                for s in self.streams.values():
                    s.send_window += delta
                    if s.send_window > _WIN_MAX:
                        raise self._conn_error(E_FLOW, "a stream window passed 2^31-1",
                                               _h2x.FlowControlError)
            elif ident == 5:
                if v < 16384 or v > 16777215:
                    raise self._conn_error(E_PROTOCOL, f"SETTINGS_MAX_FRAME_SIZE {v}")
                self.max_outbound_frame_size = v
            elif ident == 6:
                self.remote_max_header_list_size = v
