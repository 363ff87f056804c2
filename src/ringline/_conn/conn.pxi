# _conn/conn.pxi -- ringline.Conn, the handle of a native connection, and
# the module-level plumbing ringline's Conn API (_conn/api.py) calls.
#
# Objects and their lifecycle (the parts live in recv.pxi, slot.pxi and
# parts.pxi):
#   _ConnTable (one per loop) owns the connection slots (_ConnSlot).
#   _ConnSlot is one connection's state; OPEN -> CLOSING or DEAD -> FREE.
#   Conn is the handle users hold: (slot, generation). Every call checks the
#     generation first, so a handle of a closed connection never touches the
#     connection that reuses its slot (it raises ConnectionClosed).
# Receive: the multishot RECV draws from the loop's provided buffer ring; each
#   completion's bytes are appended to the slot's accumulator (a _Chunk) and
#   the buffer goes straight back. The accumulator is bounded by
#   recv_accumulator_cap: above it the receive is cancelled (TCP pushes back)
#   until the handler consumes.
# Waiting: with_data()/with_bytes() return a _ReadWait awaitable (recv.pxi).
# Send: send_nowait() queues bytes (by reference; mutable buffers copied);
#   the loop flushes each connection once per iteration (one SEND/SENDMSG for
#   everything queued, at most one send in flight, partial sends continue
#   from the right offset). Guard parts and chains are queue entries of their
#   own, sent in order with the bytes around them; zero-copy memory is held
#   until the kernel's notification (invariant 1).
# Connect: _connect_fd() submits a CONNECT (_NConnectOp) with a linked
#   timeout where the driver links operations, a timer otherwise.

from collections import deque as _deque
from operator import index as _operator_index
from ringline._errors import (ConnectionClosed, ConnectionDropped,
                              SendPoolExhausted)


cdef class _NConnectOp(_Op):

    cdef int complete(self, int res, uint32_t flags) except -1:
        fut = self.fut
        if fut is None or fut.done():
            return 0
        if res == 0 or res == -EISCONN:     # after a retried attempt
            fut.set_result(None)
        elif res == -ECANCELED:
            fut.set_exception(TimeoutError(f'connect to {self.address!r} timed out'))
        else:
            fut.set_exception(OSError(-res, f'connect to {self.address!r} failed: '
                                            f'{_os.strerror(-res)}'))
        return 0


# ---------------------------------------------------------------------------
# the handle


@cython.freelist(32)
cdef class Conn:
    """A connection of ringline's native API (see ringline.Conn's docs)."""

    def __init__(self):
        raise TypeError('Conn objects are created by ringline (connect(), handlers)')

    @cython.final
    cdef inline _ConnSlot _live(self):
        cdef _ConnSlot s = self.slot
        if s.gen != self.gen:
            raise ConnectionClosed('connection is closed')
        if s.state != _S_OPEN:
            if s.error is not None:
                raise s.error
            raise ConnectionClosed('connection is closed')
        return s

    # -- receive --

    def with_data(self, fn):
        """Awaitable: call fn(view) over the unconsumed bytes until it
        consumes some; resolves to the count, 0 at EOF. The view is released
        when fn returns."""
        self._live()
        cdef _ReadWait w = _ReadWait.__new__(_ReadWait)
        w.handle = self
        w.fn = fn
        return w

    def with_bytes(self, fn):
        """Like with_data, but the view (and slices of it) stay valid for as
        long as the caller keeps them."""
        self._live()
        cdef _ReadWait w = _ReadWait.__new__(_ReadWait)
        w.handle = self
        w.fn = fn
        w.keep = True
        return w

    def on_data(self, fn):
        """Awaitable: call fn(view) every time bytes arrive, as with_data
        does, until EOF; resolves to the total consumed. fn runs straight
        from the receive completion, without resuming the awaiting task, so
        a connection that only reacts to what it receives (an echo, a
        request/response server that answers from fn) costs no task switch
        per message. It ends at EOF, when fn closes the connection, or with
        the exception fn raised (or the connection's error)."""
        self._live()
        cdef _ReadWait w = _ReadWait.__new__(_ReadWait)
        w.handle = self
        w.fn = fn
        w.each = True
        return w

    def try_with_data(self, fn):
        """Run fn over the unconsumed bytes now, never waiting. Returns the
        bytes consumed (0 when none, also at EOF)."""
        cdef _ConnSlot s = self._live()
        cdef Py_ssize_t r = s._try_consume(fn, False, self)
        return r if r > 0 else 0

    @property
    def buffered(self):
        """Bytes received and not yet consumed."""
        cdef _ConnSlot s = self.slot
        if s.gen != self.gen:
            return 0
        return s.rb.end - s.rb.start

    @property
    def at_eof(self):
        cdef _ConnSlot s = self.slot
        return s.gen != self.gen or s.eof

    # -- send --

    def send_nowait(self, data):
        """Queue data; the loop sends it with everything else queued in this
        iteration. Raises ConnectionClosed, or ConnectionDropped when the
        connection's unsent bytes would exceed max_send_queue."""
        cdef _ConnSlot s = self.slot
        cdef Py_ssize_t n
        if s.gen != self.gen or s.state != _S_OPEN or s.shut_requested:
            s._check_send(self)
        if type(data) is not bytes:
            data = _as_bytes(data)
        n = len(<bytes>data)
        if n == 0:
            return
        s._admit(n)
        s._queue(data, n)

    def send(self, data):
        """Queue data; the returned future resolves to its length once the
        kernel completed sending it."""
        cdef _ConnSlot s = self.slot
        cdef Py_ssize_t n
        s._check_send(self)
        if type(data) is not bytes:
            data = _as_bytes(data)
        n = len(<bytes>data)
        fut = s.loop._new_future()
        if n == 0:
            fut.set_result(0)
            return fut
        s._admit(n)
        s._queue(data, n)
        if s.send_waiters is None:
            s.send_waiters = _deque()
        s.send_waiters.append((s.queued_total, n, fut))
        return fut

    def drain(self):
        """A future resolving to None once every byte queued on this
        connection so far (send_nowait, send, parts, chains) has been sent;
        at once when nothing is queued or in flight. For flow control in
        handlers that produce faster than the peer reads: await it before
        queueing more. Fails with the connection's error if it is dropped
        first."""
        cdef _ConnSlot s = self._live()
        fut = s.loop._new_future()
        if s.sent_total >= s.queued_total:
            fut.set_result(None)
            return fut
        if s.send_waiters is None:
            s.send_waiters = _deque()
        s.send_waiters.append((s.queued_total, None, fut))
        return fut

    def send_parts(self):
        """A builder: .copy(data) and .guard(obj) parts, then .submit()."""
        self._live()
        return SendParts(self)

    def send_chain(self):
        """A builder of linked sends: .add(data)/.guard(obj) per link, then
        .submit() -> future of ChainResult."""
        self._live()
        return SendChain(self)

    def push(self):
        """Hand the queued bytes to the kernel now rather than with the
        rest of this iteration's submissions: one extra io_uring_enter, the
        one opt-in exception to "one enter per iteration" (docs/invariants.md, invariant 4).
        For pipelining clients that want the peer working on a first batch
        while they build the next; a no-op when a send is already in flight
        (the queued bytes follow it) or nothing is queued."""
        cdef _ConnSlot s = self._live()
        if s.busy or not s.wq:
            return
        s.flush()
        if s.busy:
            s.loop._drv_enter(0, 0)

    def shutdown_write(self):
        """Half-close: send FIN once the queued sends are out."""
        cdef _ConnSlot s = self._live()
        if s.shut_requested:
            return
        s.shut_requested = True
        if not s.busy and not s.wq:
            s._send_shutdown()

    def close(self):
        """Close gracefully: receiving stops, queued sends go out, then the
        socket closes. Idempotent; later calls on this handle raise
        ConnectionClosed."""
        cdef _ConnSlot s = self.slot
        if s.gen != self.gen:
            return
        if s.state == _S_OPEN:
            s._close()

    def abort(self):
        """Close now, discarding queued sends."""
        cdef _ConnSlot s = self.slot
        if s.gen != self.gen or s.state != _S_OPEN:
            return
        s._fail(ConnectionClosed('connection was aborted'))

    @property
    def is_alive(self):
        cdef _ConnSlot s = self.slot
        return s.gen == self.gen and s.state == _S_OPEN

    @property
    def peer_addr(self):
        cdef _ConnSlot s = self._live()
        cdef sockaddr_storage ss
        cdef socklen_t sl = sizeof(sockaddr_storage)
        if s.peer is None:
            if getpeername(s.fd, <sockaddr*>&ss, &sl) < 0:
                raise _oserror(errno)
            s.peer = _parse_sockaddr(<sockaddr*>&ss, sl)
        return s.peer

    @property
    def local_addr(self):
        cdef _ConnSlot s = self._live()
        cdef sockaddr_storage ss
        cdef socklen_t sl = sizeof(sockaddr_storage)
        if getsockname(s.fd, <sockaddr*>&ss, &sl) < 0:
            raise _oserror(errno)
        return _parse_sockaddr(<sockaddr*>&ss, sl)

    def fileno(self):
        cdef _ConnSlot s = self.slot
        if s.gen != self.gen or s.state != _S_OPEN:
            return -1
        return s.fd

    @property
    def slot_index(self):
        return self.slot.index

    @property
    def send_queue_bytes(self):
        cdef _ConnSlot s = self.slot
        if s.gen != self.gen:
            return 0
        return s.wq_bytes + s.inflight_bytes

    def __repr__(self):
        cdef _ConnSlot s = self.slot
        state = 'open' if (s.gen == self.gen and s.state == _S_OPEN) else 'closed'
        return f'<ringline.Conn slot={s.index} gen={self.gen} {state}>'


# ---------------------------------------------------------------------------
# module-level plumbing used by ringline._native


def _conn_table(LoopCore loop):
    return _table_of(loop)


def _adopt_fd(LoopCore loop, int fd, int family):
    """Wrap a connected, non-blocking socket fd (now owned by ringline) in a
    Conn and start receiving."""
    cdef _ConnTable t = _table_of(loop)
    cdef _ConnSlot s
    if loop.sock_ops:
        _fd_claim(loop, fd, None)
    try:
        s = t._alloc(fd, family)
    except BaseException:
        c_close(fd)
        raise
    cdef Conn c = Conn.__new__(Conn)
    cdef int one = 1
    c.slot = s
    c.gen = s.gen
    if family == AF_INET or family == AF_INET6:
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int))
    s._arm_recv()
    return c


def _connect_fd(LoopCore loop, int fd, int family, address, timeout):
    """Submit a CONNECT for fd (a new non-blocking socket owned by the
    caller), with a linked timeout in the ring when given. Returns (future,
    op); cancel with _cancel_connect(op)."""
    cdef _NConnectOp op = _NConnectOp.__new__(_NConnectOp)
    cdef io_uring_sqe *sqe
    cdef double t
    if loop.sock_ops:
        _fd_claim(loop, fd, None)
    op.loop = loop
    op.fd = fd
    op.address = address
    alen = _build_sockaddr(family, address, &op.addr)
    if alen == 1:
        raise ValueError(f'cannot encode address {address!r}')
    op.addrlen = alen
    t = -1.0
    if timeout is not None:
        # validated before anything is queued: a raise after the CONNECT was
        # in the ring would leave it running on an fd the caller then closes
        t = timeout
        if not (t >= 0):
            raise ValueError(f'timeout must be >= 0, got {timeout!r}')
        if loop.drv.caps & RL_CAP_LINKS:
            loop._sq_reserve(2)   # CONNECT + LINK_TIMEOUT in one submission
    fut = op.fut = loop._new_future()
    sqe = loop._submit(op, IORING_OP_CONNECT, fd, &op.addr, 0, op.addrlen)
    if timeout is not None:
        if not (loop.drv.caps & RL_CAP_LINKS):
            # no linked timeout in this driver: a timer cancels the connect
            loop.call_later(t, _connect_timed_out, op)
        else:
            sqe.flags = IOSQE_IO_LINK
            op.ts.tv_sec = <int64_t>t
            op.ts.tv_nsec = <long long>((t - <double>op.ts.tv_sec) * 1e9)
            loop._submit(None, IORING_OP_LINK_TIMEOUT, -1, &op.ts, 1, 0)
    return fut, op


def _connect_timed_out(_NConnectOp op):
    if op.inflight and op.fut is not None and not op.fut.done():
        op.loop._cancel_op(op)


def _cancel_connect(_NConnectOp op):
    """Cancel a CONNECT whose fd the caller closes next: a CONNECT still in
    the submission queue is voided (it would run against whatever socket
    gets the number next: invariant 10), one already submitted cancelled
    (the kernel holds its own reference to the socket meanwhile)."""
    if op.inflight:
        op.loop._cancel_for_close(op)
