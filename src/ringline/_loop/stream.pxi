# _loop/stream.pxi -- stream transports (TCP, Unix sockets, pipes) over the
# driver.
#
# _StreamCore owns one connected socket's (or pipe's) I/O:
#   receive: one multishot RECV (READ for a read pipe) drawing from the
#     loop's provided buffer ring; each completion's bytes are copied out
#     (into an exact-size bytes, or into a BufferedProtocol's buffer) and the
#     buffer goes straight back to the ring. An empty ring (ENOBUFS) parks
#     the stream; the loop re-arms parked streams once the batch that emptied
#     the ring has been dispatched.
#   send: write() queues (bytes by reference, mutable buffers copied) on the
#     send queue it inherits (sendq.pxi); the loop flushes every transport
#     with queued data right before its single io_uring_enter, one send per
#     transport (zero-copy above the loop's threshold, WRITE/WRITEV for a
#     pipe); at most one send in flight.
#   lifecycle: created -> connection_made (soon) -> reading -> close()
#     (drains queued sends) or abort()/fatal error (drops them) ->
#     connection_lost exactly once (soon) -> socket closed, ops cancelled.
# Protocol callbacks run in the contextvars.Context captured at creation.

from asyncio import constants as _aconstants
from asyncio import base_events as _base_events


# What a stream transport runs on (_StreamCore.kind); the Python names are
# what ringline._loop.loop's transport classes pass to _make_stream_core.
cdef enum:
    _STREAM_SOCKET = 0          # a connected socket: RECV / SEND
    _STREAM_READ_PIPE = 1       # a pipe read end: READ, no send
    _STREAM_WRITE_PIPE = 2      # a pipe write end: WRITE / WRITEV, no receive
STREAM_SOCKET = _STREAM_SOCKET
STREAM_READ_PIPE = _STREAM_READ_PIPE
STREAM_WRITE_PIPE = _STREAM_WRITE_PIPE

_FATAL_ERROR_IGNORE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_MSG_DONTWAIT_NOSIGNAL = _socket.MSG_DONTWAIT | _socket.MSG_NOSIGNAL

# asyncio.Server's private client-tracking hooks: _attach()/_detach() through
# 3.12, _attach(transport)/_detach(transport) from 3.13 (the server then keeps
# its clients for close_clients()/abort_clients()). Pinned by
# tests/test_asyncio_hooks.py.
import inspect as _inspect
_SERVER_HOOKS_TAKE_TRANSPORT = (
    len(_inspect.signature(_base_events.Server._attach).parameters) == 2)


def _server_attach(server, transport):
    if _SERVER_HOOKS_TAKE_TRANSPORT:
        server._attach(transport)
    else:
        server._attach()


def _server_detach(server, transport):
    if _SERVER_HOOKS_TAKE_TRANSPORT:
        server._detach(transport)
    else:
        server._detach()


cdef class _StreamRecvOp(_Op):

    cdef int complete(self, int res, uint32_t flags) except -1:
        return self.owner._on_recv(res, flags)


cdef class _StreamCore(_SendQueue):
    """The native side of a stream transport (see the module notes)."""

    def __cinit__(self):
        self.high_water = 64 * 1024
        self.low_water = 16 * 1024

    # -- context handling --

    @cython.final
    cdef inline bint _enter(self) except -1:
        if self.in_ctx or self.context is None:
            return False
        PyContext_Enter(self.context)
        self.in_ctx = True
        return True

    @cython.final
    cdef inline int _exit(self, bint entered) except -1:
        if entered:
            self.in_ctx = False
            PyContext_Exit(self.context)
        return 0

    # -- setup --

    def _start(self, waiter):
        """Schedule connection_made, the first receive and the waiter, in
        that order, as asyncio's transports do."""
        self.loop.call_soon(self._connection_made, context=self.context)
        if waiter is not None:
            self.loop.call_soon(_futures._set_result_unless_cancelled, waiter, None)

    def _connection_made(self):
        # runs as a handle inside self.context
        self.connected = True
        # Start receiving one iteration later, as asyncio does, so that
        # whoever awaits the transport (create_connection's caller) resumes
        # before the first data_received; scheduled first so that, as on
        # asyncio, an exception in connection_made is only logged (by the
        # handle) and the transport keeps working. Arming checks whether
        # connection_made closed the transport or paused reading.
        self.loop.call_soon(self._rearm_after_park)
        self.in_ctx = True
        try:
            self.protocol.connection_made(self.transport)
        finally:
            self.in_ctx = False

    # -- receive --

    @cython.final
    cdef int _arm_recv(self) except -1:
        cdef io_uring_sqe *sqe
        if (self.rop.inflight or self.closing or self.reading_paused or
                self.replay_pending or self.kind == _STREAM_WRITE_PIPE):
            return 0
        self.loop._ensure_pbuf()
        if self.kind == _STREAM_READ_PIPE:
            # a read pipe: READ at the current position, multishot where the
            # kernel has it
            sqe = self.loop._submit(
                self.rop, RL_OP_READ_MULTISHOT if self.loop.probe_ops[RL_OP_READ_MULTISHOT]
                else IORING_OP_READ, self.fd, NULL, 0, <uint64_t>-1)
        else:
            sqe = self.loop._submit(self.rop, IORING_OP_RECV, self.fd, NULL, 0, 0)
            sqe.ioprio = IORING_RECV_MULTISHOT
        sqe.flags = IOSQE_BUFFER_SELECT
        sqe.buf_group = self.loop.pbuf.bgid
        return 0

    def _rearm_after_park(self):
        self._arm_recv()

    cdef int rearm(self) except -1:
        return self._arm_recv()

    @cython.final
    cdef int _on_recv(self, int res, uint32_t flags) except -1:
        cdef unsigned bid
        cdef char *ptr
        cdef LoopCore loop = self.loop
        if flags & IORING_CQE_F_BUFFER:
            bid = flags >> IORING_CQE_BUFFER_SHIFT
            ptr = rl_pbuf_addr(&loop.pbuf, bid)
            try:
                if res > 0 and not loop.closing:
                    self._deliver(ptr, res)
            finally:
                rl_pbuf_add(&loop.pbuf, <unsigned short>bid)
                rl_pbuf_publish(&loop.pbuf)
            if not (flags & IORING_CQE_F_MORE) and not loop.closing:
                self._arm_recv()
            return 0
        if loop.closing:
            # loop.close() cancelled the receive: no callbacks, no re-arm
            return 0
        if res == 0:
            self._on_eof()
            return 0
        if res == -ENOBUFS:
            loop.enobufs += 1
            loop.parked.append(self)
            return 0
        if res == -ECANCELED:
            # a pause (or close) cancelled the receive; if reading resumed
            # meanwhile, start again
            if (not self.closing and not self.reading_paused and
                    not self.replay_pending and self.connected):
                self._arm_recv()
            return 0
        if res < 0:
            self._fatal_error(_oserror(-res), 'Fatal read error on socket transport')
            return 0
        if not (flags & IORING_CQE_F_MORE):
            self._arm_recv()
        return 0

    @cython.final
    cdef int _deliver(self, char *ptr, Py_ssize_t n) except -1:
        cdef Py_buffer view
        cdef Py_ssize_t k
        cdef bint entered
        if self.closing:
            return 0
        if self.reading_paused or self.replay_pending:
            # paused, or older bytes still waiting to be replayed: keep order
            if self.pending_data is None:
                self.pending_data = []
            self.pending_data.append(PyBytes_FromStringAndSize(ptr, n))
            return 0
        entered = self._enter()
        try:
            if not self.is_buffered:
                data = PyBytes_FromStringAndSize(ptr, n)
                try:
                    if self.data_received is not None:
                        self.data_received(data)
                    else:
                        self.protocol.data_received(data)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, 'Fatal error: protocol.data_received() call failed.')
                return 0
            while n > 0:
                try:
                    buf = self.protocol.get_buffer(n)
                    PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
                    try:
                        k = view.len
                        if k == 0:
                            raise RuntimeError('get_buffer() returned an empty buffer')
                        if k > n:
                            k = n
                        memcpy(view.buf, ptr, k)
                    finally:
                        PyBuffer_Release(&view)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, 'Fatal error: protocol.get_buffer() call failed.')
                    return 0
                try:
                    self.protocol.buffer_updated(k)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, 'Fatal error: protocol.buffer_updated() call failed.')
                    return 0
                ptr += k
                n -= k
                if self.closing:
                    return 0
                if self.reading_paused and n > 0:
                    if self.pending_data is None:
                        self.pending_data = []
                    self.pending_data.append(PyBytes_FromStringAndSize(ptr, n))
                    return 0
        finally:
            self._exit(entered)
        return 0

    @cython.final
    cdef int _on_eof(self) except -1:
        cdef bint entered
        if self.closing:
            return 0
        if self.reading_paused or self.replay_pending:
            if self.pending_data is None:
                self.pending_data = []
            self.pending_data.append(None)   # EOF marker
            return 0
        if self.loop._debug:
            _logger.debug('%r received EOF', self.transport)
        if self.kind == _STREAM_READ_PIPE:
            # a read pipe: eof_received, then connection_lost, whatever the
            # protocol answers
            self.closing = True
            self.loop.call_soon(self.protocol.eof_received, context=self.context)
            self._schedule_connection_lost(None)
            return 0
        entered = self._enter()
        try:
            try:
                keep_open = self.protocol.eof_received()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, 'Fatal error: protocol.eof_received() call failed.')
                return 0
        finally:
            self._exit(entered)
        if keep_open:
            self.reading_paused = True   # no more reads; writing stays open
            self._stop_recv()
        else:
            self.close()
        return 0

    @cython.final
    cdef int _stop_recv(self) except -1:
        if self.rop.inflight:
            self.loop._cancel_op(self.rop)
        return 0

    def pause_reading(self):
        if self.closing or self.reading_paused:
            return
        self.reading_paused = True
        self._stop_recv()
        if self.loop._debug:
            _logger.debug('%r pauses reading', self.transport)

    def resume_reading(self):
        if self.closing or not self.reading_paused:
            return
        self.reading_paused = False
        if self.replay_pending:
            return      # the scheduled replay continues and re-arms
        pending = self.pending_data
        self.pending_data = None
        if pending:
            self.replay_pending = True
            self.loop.call_soon(self._replay, pending, context=self.context)
        elif self.connected:
            if not self.rop.inflight:
                self._arm_recv()
            else:
                # a cancellation is still on its way: re-arm after it lands
                self.loop.call_soon(self._rearm_after_park)
        if self.loop._debug:
            _logger.debug('%r resumes reading', self.transport)

    def _replay(self, list pending):
        self.in_ctx = True
        try:
            self._replay_in_ctx(pending)
        finally:
            self.in_ctx = False

    def _replay_in_ctx(self, list pending):
        # Deliver bytes that arrived while paused, then anything that arrived
        # during the replay, in order; re-arm the receive only afterwards.
        cdef bytes chunk
        while pending:
            for i, item in enumerate(pending):
                if self.closing:
                    self.replay_pending = False
                    return
                if self.reading_paused:
                    rest = pending[i:]
                    if self.pending_data:
                        rest.extend(self.pending_data)
                    self.pending_data = rest
                    self.replay_pending = False
                    return
                if item is None:
                    self.replay_pending = False
                    self._on_eof()
                    return
                chunk = item
                self.replay_pending = False
                self._deliver(PyBytes_AS_STRING(chunk), len(chunk))
                self.replay_pending = True
            pending = self.pending_data
            self.pending_data = None
        self.replay_pending = False
        if not self.closing and not self.reading_paused:
            self._arm_recv()

    def is_reading(self):
        return not self.reading_paused and not self.closing

    # -- send --

    def write(self, data):
        cdef Py_ssize_t n
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f'data argument must be a bytes-like object, '
                                f'not {type(data).__name__!r}')
            data = bytes(data)     # the caller may reuse a mutable buffer
        if self.eof_requested:
            raise RuntimeError('Cannot call write() after write_eof()')
        if self.empty_waiter is not None:
            raise RuntimeError('unable to write; sendfile is in progress')
        n = len(<bytes>data)
        if n == 0:
            return
        if self.conn_lost:
            if self.conn_lost >= _aconstants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                _logger.warning('socket.send() raised exception.')
            self.conn_lost += 1
            return
        if self.kind == _STREAM_WRITE_PIPE and self.sop is None and not self.wq:
            # Pipes write at call time when idle, as asyncio's and uvloop's
            # pipe transports do (subprocess I/O is latency-bound and callers
            # may block on the other end right after write()); what the pipe
            # does not take goes through the ring. Sockets batch per iteration.
            written = c_write(self.fd, PyBytes_AS_STRING(data), n)
            if written == n:
                return
            if written < 0:
                err = errno
                if err != EAGAIN and err != EINTR:
                    self._fatal_error(_oserror(err), 'Fatal write error on pipe transport')
                    return
            else:
                data = data[written:]
                n -= written
        self.wq.append(data)
        self.wq_bytes += n
        if self.sop is None and not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop._want_flush(self)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data):
        for data in list_of_data:
            self.write(data)

    cdef int flush(self) except -1:
        cdef _QSendOp op
        cdef io_uring_sqe *sqe
        cdef LoopCore loop = self.loop
        self.flush_scheduled = False
        if self.sop is not None or not self.wq or self.lost_scheduled:
            return 0
        op = self._take()
        self.sop = op
        if self.kind == _STREAM_WRITE_PIPE:
            # a pipe: WRITE / WRITEV at the current file position
            if op.niov == 1:
                sqe = loop._submit(op, IORING_OP_WRITE, self.fd, op.iov[0].iov_base, op.iov[0].iov_len, <uint64_t>-1)
            else:
                sqe = loop._submit(op, IORING_OP_WRITEV, self.fd, op.iov, <unsigned>op.niov, <uint64_t>-1)
            return 0
        if op.nbytes >= loop.send_zc_threshold and loop.zc_ok and self.zc_allowed:
            # large sends: zero-copy, buffers held until the notification
            loop.zc_sends += 1
            return self._submit_send(op, True)
        self._submit_send(op, False)
        if (loop.before_wait and not self.wq and not self.closing and not self.eof_requested
                and not self.protocol_paused and self.empty_waiter is None):
            # nothing waits for this send to end: its completion needs no
            # turn of the loop of its own (LoopCore._mark_quiet)
            loop._mark_quiet(op, op.nbytes)
        return 0

    cdef int _sent(self, _QSendOp op, int res) except -1:
        self.sop = None
        self.inflight_bytes = 0
        if self.loop.closing:
            # the loop is closing and cancelled this send: closing is not an
            # error (asyncio's loops just stop driving their transports)
            op.release()
            return 0
        if res == 0 and op.nbytes > 0:
            # lengths are clamped (rl_prep_rw), so a non-empty send cannot
            # legitimately take nothing: never requeue it as progress
            res = -EIO
        if res < 0:
            if res == -EAGAIN or res == -EINTR:   # send it all again
                self._requeue(op, res)
                op.release()
                self._schedule_flush()
                return 0
            op.release()
            if res == -ECANCELED and self.lost_scheduled:
                return 0
            self._fatal_error(_oserror(-res), 'Fatal write error on socket transport')
            return 0
        if res < op.nbytes:
            self._requeue(op, res)
        op.release()
        if not op.notif_pending:
            self.spare = op
        if self.lost_scheduled:
            return 0
        if not self.wq:
            # resume_writing may write more (e.g. a TLS close_notify)
            self._maybe_resume_protocol()
        if self.wq:
            self.flush()
            self._maybe_resume_protocol()
            return 0
        if self.empty_waiter is not None and not self.empty_waiter.done():
            self.empty_waiter.set_result(None)
        if self.closing:
            self._schedule_connection_lost(None)
        elif self.eof_requested and not self.eof_sent:
            self._send_eof()
        return 0

    @cython.final
    cdef int _schedule_flush(self) except -1:
        if not self.flush_scheduled and self.sop is None:
            self.flush_scheduled = True
            self.loop._want_flush(self)
        return 0

    @cython.final
    cdef int _send_eof(self) except -1:
        cdef io_uring_sqe *sqe
        self.eof_sent = True
        if self.kind == _STREAM_WRITE_PIPE:
            # a pipe has no half-close: EOF is closing it
            self.closing = True
            self._schedule_connection_lost(None)
            return 0
        # A direct call, not IORING_OP_SHUTDOWN: the kernel always runs that
        # one from its worker threads, where it looks the fd number up late;
        # a transport closed meanwhile and its number reused would shut the
        # new socket (invariant 10). Nothing is in flight here: no ordering
        # with sends to keep.
        if shutdown(self.fd, SHUT_WR) < 0 and errno != _errno.ENOTCONN:
            self._fatal_error(_oserror(errno), 'Fatal error on shutdown')
        return 0

    def write_eof(self):
        if self.closing or self.eof_requested:
            return
        self.eof_requested = True
        if self.kind == _STREAM_WRITE_PIPE:
            self._stop_watch()
        if self.sop is None and not self.wq:
            self._send_eof()

    def can_write_eof(self):
        return True

    def get_write_buffer_size(self):
        return self.wq_bytes + self.inflight_bytes

    def get_write_buffer_limits(self):
        return (self.low_water, self.high_water)

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            if low is None:
                high = 64 * 1024
            else:
                high = 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f'high ({high!r}) must be >= low ({low!r}) must be >= 0')
        self.high_water = high
        self.low_water = low
        self._maybe_pause_protocol()

    @cython.final
    cdef int _maybe_pause_protocol(self) except -1:
        cdef Py_ssize_t size = self.wq_bytes + self.inflight_bytes
        if self.hard_cap > 0 and size > self.hard_cap:
            self._fatal_error(
                WriteBufferOverflow(size, self.hard_cap),
                'Write buffer hard cap exceeded; connection dropped')
            return 0
        if size <= self.high_water or self.protocol_paused:
            return 0
        self.protocol_paused = True
        try:
            self.protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.loop.call_exception_handler({
                'message': 'protocol.pause_writing() failed',
                'exception': exc,
                'transport': self.transport,
                'protocol': self.protocol,
            })
        return 0

    @cython.final
    cdef int _maybe_resume_protocol(self) except -1:
        if (self.protocol_paused and
                self.wq_bytes + self.inflight_bytes <= self.low_water):
            self.protocol_paused = False
            try:
                self.protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.loop.call_exception_handler({
                    'message': 'protocol.resume_writing() failed',
                    'exception': exc,
                    'transport': self.transport,
                    'protocol': self.protocol,
                })
        return 0

    # -- closing --

    def is_closing(self):
        return self.closing

    def close(self):
        if self.closing:
            return
        if self.kind == _STREAM_WRITE_PIPE:
            self.write_eof()
            return
        self.closing = True
        self._stop_recv()
        if self.sop is None and not self.wq:
            self._schedule_connection_lost(None)

    def abort(self):
        if self.wq and self.sop is None and self.kind == _STREAM_SOCKET and not self.lost_scheduled:
            self._send_queued_now()
        self._force_close(None)

    @cython.final
    cdef int _send_queued_now(self) except -1:
        # abort() right after write(): asyncio's write() has already tried
        # the send, so the peer gets those bytes; give the kernel what was
        # queued this iteration with one non-blocking send (abort is rare:
        # write() itself stays syscall-free). What the socket does not take
        # is dropped, as asyncio drops its buffer.
        try:
            self.sock.sendmsg(self.wq[:_MAX_IOV], [], _MSG_DONTWAIT_NOSIGNAL)
        except OSError:
            pass
        return 0

    @cython.final
    cdef int _schedule_connection_lost(self, exc) except -1:
        if self.lost_scheduled:
            return 0
        self.lost_scheduled = True
        self.conn_lost += 1
        self.loop.call_soon(self._call_connection_lost, exc, context=self.context)
        return 0

    def _make_empty_waiter(self):
        if self.empty_waiter is not None:
            raise RuntimeError('Empty waiter is already set')
        self.empty_waiter = self.loop._new_future()
        if not self.wq and self.sop is None:
            self.empty_waiter.set_result(None)
        return self.empty_waiter

    def _reset_empty_waiter(self):
        self.empty_waiter = None

    @property
    def protocol_paused_(self):
        return self.protocol_paused

    def _force_close(self, exc):
        if self.lost_scheduled:
            return
        if exc is not None and self.empty_waiter is not None and not self.empty_waiter.done():
            self.empty_waiter.set_exception(exc)
        self.wq.clear()
        self.wq_off = 0
        self.wq_bytes = 0
        if self.sop is not None:
            self.loop._cancel_op(self.sop)
        if not self.closing:
            self.closing = True
            self._stop_recv()
        self._schedule_connection_lost(exc)

    def _fatal_error(self, exc, message='Fatal error on transport'):
        if isinstance(exc, OSError) and isinstance(exc, _FATAL_ERROR_IGNORE):
            if self.loop._debug:
                _logger.debug('%r: %s', self.transport, message, exc_info=True)
        else:
            self.loop.call_exception_handler({
                'message': message,
                'exception': exc,
                'transport': self.transport,
                'protocol': self.protocol,
            })
        self._force_close(exc)

    def _call_connection_lost(self, exc):
        self.in_ctx = True
        try:
            if self.connected:
                self.protocol.connection_lost(exc)
        finally:
            self.in_ctx = False
            self._release()
            if self.empty_waiter is not None and not self.empty_waiter.done():
                self.empty_waiter.set_exception(
                    ConnectionError('Connection is closed by peer'))

    @cython.final
    cdef int _stop_watch(self) except -1:
        if self.watch_op is not None and self.watch_op.inflight:
            self.loop._cancel_op(self.watch_op)
        if self.watch_op is not None:
            self.watch_op.owner = None
        self.watch_op = None
        return 0

    def _start_watch(self):
        """Write pipes: a poll on the write end reports the reader closing."""
        cdef io_uring_sqe *sqe
        cdef _PipeWatchOp op = _PipeWatchOp.__new__(_PipeWatchOp)
        op.loop = self.loop
        op.owner = self
        op.fd = self.fd
        self.watch_op = op
        sqe = self.loop._submit(op, IORING_OP_POLL_ADD, self.fd, NULL, 0, 0)
        sqe.poll32_events = POLLIN

    def _peer_closed(self):
        self.watch_op = None
        if self.lost_scheduled:
            return
        if self.wq or self.sop is not None:
            self._force_close(BrokenPipeError())
        else:
            self.closing = True
            self._schedule_connection_lost(None)

    @cython.final
    cdef int _release(self) except -1:
        # the fd closes below and its number may be reused at once: what is
        # still in the submission queue is voided, the rest cancelled first
        self.loop._void_fd(self.fd)
        self._stop_watch()
        if self.rop.inflight:
            self.loop._cancel_op(self.rop)
        if self.sop is not None:
            self.loop._cancel_op(self.sop)
            self.sop.owner = None
            self.sop = None
        fd = self.fd
        transports = getattr(self.loop, '_transports', None)
        if transports is not None and transports.get(fd) is self.transport:
            del transports[fd]
        self.sock.close()
        self.protocol = None
        self.data_received = None
        transport = self.transport
        self.transport = None
        server = self.server
        self.server = None
        if server is not None:
            _server_detach(server, transport)
        return 0

    # -- protocol --

    @cython.final
    cdef int _use_protocol(self, protocol) except -1:
        self.protocol = protocol
        self.is_buffered = isinstance(protocol, _BufferedProtocol)
        # looked up once, as uvloop does: the per-read call skips the lookup
        # (a protocol without one, such as a write pipe's, is looked up again
        # at the read and fails there, as on asyncio)
        self.data_received = (None if self.is_buffered
                              else getattr(protocol, 'data_received', None))
        return 0

    def set_protocol(self, protocol):
        self._use_protocol(protocol)
        # pause_writing/resume_writing come in pairs per protocol: a protocol
        # swapped in (start_tls's SSLProtocol) starts unpaused, except asyncio's
        # sendfile fallback, which reads the paused state before the swap and
        # waits for the matching resume_writing.
        if not isinstance(protocol, _base_events._SendfileFallbackProtocol):
            self.protocol_paused = False

    def get_protocol(self):
        return self.protocol

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)

    @property
    def fileno_(self):
        return self.fd


cdef class _PipeWatchOp(_Op):

    cdef int complete(self, int res, uint32_t flags) except -1:
        owner = self.owner
        self.owner = None
        if owner is None or res == -ECANCELED:
            return 0
        owner._peer_closed()
        return 0


class WriteBufferOverflow(ConnectionError):
    """A transport's unsent bytes exceeded its hard cap (see
    Loop(write_hard_cap=...) / transport.set_write_hard_cap()); the
    connection was dropped."""

    def __init__(self, size, cap):
        super().__init__(f'write buffer of {size} bytes exceeds the hard cap of '
                         f'{cap} bytes; the peer is not reading: connection dropped')
        self.size = size
        self.cap = cap


from asyncio import BufferedProtocol as _BufferedProtocol


def _make_stream_core(LoopCore loop, sock, protocol, transport, dict extra, server,
                      context, int kind=_STREAM_SOCKET):
    """Create the native side of a stream transport (used by _loop/loop.py).
    kind: STREAM_SOCKET, STREAM_READ_PIPE or STREAM_WRITE_PIPE."""
    cdef _StreamCore c = _StreamCore.__new__(_StreamCore)
    c.kind = kind
    c.zc_allowed = kind == _STREAM_SOCKET
    c.loop = loop
    c.sock = sock
    c.fd = sock.fileno()
    if loop.sock_ops:
        _fd_claim(loop, c.fd, sock)
    c._use_protocol(protocol)
    c.transport = transport
    c.extra = extra
    c.server = server
    c.context = context if context is not None else PyContext_CopyCurrent()
    c.hard_cap = loop.write_hard_cap
    c.rop = _StreamRecvOp.__new__(_StreamRecvOp)
    c.rop.loop = loop
    c.rop.owner = c
    c.rop.fd = c.fd
    return c
