# _conn/parts.pxi -- multi-part and linked sends of a native connection.
#
# Owns: SendParts (conn.send_parts(): copies and guarded zero-copy views
# sent as one queue entry, _Guarded, by SENDMSG_ZC ops, _NZcOp), SendChain
# (conn.send_chain(): linked SEND/SEND_ZC links, _Chain, submitted whole or
# not at all; links the driver cannot link are sent one by one with
# _NLinkOp), and ChainState / ChainResult (the accounting of one chain's
# completions and notifications, and what its future resolves to).
#
# Lifecycle: built by the user, submitted once (a second submit raises),
# queued behind the bytes queued before it, resolved when the last
# completion (and every zero-copy notification) has arrived.
#
# Invariants: guarded memory is held until the kernel's notification
# (invariant 1); a chain's SQEs reach the kernel in one submission
# (invariant 9: _sq_reserve) or not at all.


cdef class ChainState:
    """The aggregate state of one send chain (IO_LINK'd sends): one operation
    completion per link, plus one notification per zero-copy link. Events:
    'pending' (more completions due), 'ops_complete' (every link completed,
    zero-copy notifications outstanding) and 'complete'."""

    def __init__(self, int total, Py_ssize_t total_bytes):
        self.total = total
        self.total_bytes = total_bytes

    cpdef str on_op(self, int res, Py_ssize_t expected=-1):
        self.received += 1
        if res >= 0:
            self.bytes_sent += res
            if expected >= 0 and res < expected:
                self.short_links += 1
        else:
            if res == -ECANCELED:
                self.cancelled += 1
            if self.first_error == 0:
                self.first_error = res
        return self.event()

    cpdef add_notif(self):
        self.zc_pending += 1

    cpdef str on_notif(self):
        if self.zc_pending <= 0:
            raise RuntimeError('zero-copy notification without a pending send')
        self.zc_pending -= 1
        self.zc_notifs += 1
        return self.event()

    cpdef str event(self):
        if self.received == self.total:
            return 'complete' if self.zc_pending == 0 else 'ops_complete'
        return 'pending'


class ChainResult(tuple):
    """Result of a send chain: (bytes_sent, error, cancelled). error is the
    first link's OSError (None when every link succeeded); cancelled counts
    links the kernel did not run because an earlier one failed."""
    __slots__ = ()

    def __new__(cls, bytes_sent, error, cancelled):
        return tuple.__new__(cls, (bytes_sent, error, cancelled))

    bytes_sent = property(lambda self: self[0])
    error = property(lambda self: self[1])
    cancelled = property(lambda self: self[2])
    ok = property(lambda self: self[1] is None and self[2] == 0)

    def __repr__(self):
        return f'ChainResult(bytes_sent={self[0]}, error={self[1]!r}, cancelled={self[2]})'


# ---------------------------------------------------------------------------
# operations


cdef class _Guarded:
    """A queue entry sent on its own: copy runs gathered into one buffer and
    guard parts in place (SENDMSG_ZC); everything held until the kernel's
    notification. fut resolves to the bytes sent."""


cdef class _NZcOp(_Op):
    """SENDMSG_ZC of one _Guarded entry (or one zero-copy chain link)."""

    cdef int complete(self, int res, uint32_t flags) except -1:
        cdef _ConnSlot slot = self.slot
        if flags & IORING_CQE_F_NOTIF:
            self.notif_pending = False
            self.loop.zc_notifs += 1
            self.parts = None         # the kernel is done with the memory
            slot.nops -= 1
            if self.chain is not None:
                self.chain._on_notif(slot)
            slot._maybe_recycle()
            return 0
        self.op_done = True
        if flags & IORING_CQE_F_MORE:
            self.notif_pending = True
            slot.table.zc_guard_sends += 1
            if self.chain is not None:
                self.chain.state.add_notif()
        else:
            self.parts = None
            slot.nops -= 1
        if self.chain is not None:
            self.chain._on_link(slot, self.link, res)
        else:
            slot._on_guarded_sent(self, res)
        slot._maybe_recycle()
        return 0


cdef class _Chain:
    """A queue entry of linked sends (IO_LINK where the driver links; one
    after the other where it does not) with one aggregate result."""

    @cython.final
    cdef int _on_link(self, _ConnSlot slot, int link, int res) except -1:
        cdef Py_ssize_t expected = len(self.links[link])
        ev = self.state.on_op(res, expected)
        if ev != 'pending':
            self._ops_done(slot, ev)
        return 0

    @cython.final
    cdef int _on_notif(self, _ConnSlot slot) except -1:
        ev = self.state.on_notif()
        if ev == 'complete':
            self._resolve()
        return 0

    @cython.final
    cdef int _ops_done(self, _ConnSlot slot, str ev) except -1:
        self.done_ops = True
        slot.sent_total += self.state.bytes_sent
        slot.table.pool_bytes -= self.state.total_bytes
        slot.inflight_bytes = 0
        slot.busy = False
        slot.cur_send = None
        if ev == 'complete':
            self._resolve()
        if self.state.bytes_sent < self.state.total_bytes:
            # the peer got part of the chain: the stream cannot continue
            if self.state.first_error != 0 and self.state.first_error != -ECANCELED:
                err = _oserror(-self.state.first_error)
            else:
                err = ConnectionDropped(
                    f'send chain cut short ({self.state.bytes_sent} of '
                    f'{self.state.total_bytes} bytes sent)')
            slot._fail(err)
            return 0
        slot._after_send()
        return 0

    @cython.final
    cdef int _resolve(self) except -1:
        fut = self.fut
        self.ops = None
        if fut is not None and not fut.done():
            err = None
            if self.state.first_error != 0:
                err = _oserror(-self.state.first_error)
            fut.set_result(ChainResult(self.state.bytes_sent, err, self.state.cancelled))
        return 0


cdef class _NLinkOp(_Op):
    """Poll backend: one link of a chain (or its remainder) as a plain SEND."""

    cdef int complete(self, int res, uint32_t flags) except -1:
        cdef _ConnSlot slot = self.slot
        slot.nops -= 1
        slot._on_link_sent(self, res)
        slot._maybe_recycle()
        return 0


cdef bytes _as_bytes(data):
    if isinstance(data, (bytearray, memoryview)) or PyObject_CheckBuffer(data):
        return bytes(data)
    raise TypeError(f'data must be a bytes-like object, not {type(data).__name__}')


cdef object _guard_view(obj):
    if not PyObject_CheckBuffer(obj):
        raise TypeError(f'guard() needs a buffer exporter, not {type(obj).__name__}')
    mv = memoryview(obj)
    if not mv.c_contiguous:
        raise ValueError('guard() needs a contiguous buffer')
    if mv.itemsize != 1 or mv.ndim != 1:
        mv = mv.cast('B')
    return mv


cdef class SendParts:
    """Builder of one send made of copied parts and zero-copy guard parts."""

    def __cinit__(self, Conn conn):
        self.conn = conn
        self.parts = []

    def copy(self, data):
        """A part copied into the send buffer (the caller may reuse data)."""
        if type(data) is not bytes:
            data = _as_bytes(data)
        self.parts.append((0, data))
        self.nbytes += len(<bytes>data)
        return self

    def guard(self, obj):
        """A part sent in place (zero-copy above the threshold); obj is kept
        alive until the kernel's zero-copy notification."""
        mv = _guard_view(obj)
        self.parts.append((1, mv))
        self.nbytes += len(mv)
        return self

    def submit(self):
        """Queue the parts as one send; returns a future of the bytes sent."""
        cdef _ConnSlot s = self.conn.slot
        cdef _ConnTable t
        cdef _Guarded g
        cdef list out
        if self.submitted:
            raise RuntimeError('send_parts() builder already submitted')
        self.submitted = True
        s._check_send(self.conn)
        t = s.table
        fut = s.loop._new_future()
        if self.nbytes == 0:
            fut.set_result(0)
            return fut
        has_guard = any(k == 1 for k, _ in self.parts)
        if (not has_guard or self.nbytes < t.zc_threshold or not s.loop.zc_ok or
                len(self.parts) > _MAX_IOV):
            # the copy path: everything gathered into one buffer
            if has_guard:
                t.parts_copied += 1
            data = b''.join([p for _, p in self.parts])
            s._admit(self.nbytes)
            s._queue(data, self.nbytes)
            if s.send_waiters is None:
                s.send_waiters = _deque()
            s.send_waiters.append((s.queued_total, self.nbytes, fut))
            return fut
        # zero-copy: runs of copy parts gathered, guard parts in place
        out = []
        run = []
        for k, p in self.parts:
            if k == 0:
                run.append(p)
            else:
                if run:
                    out.append(b''.join(run))
                    run = []
                out.append(p)
        if run:
            out.append(b''.join(run))
        t.parts_zc += 1
        g = _Guarded.__new__(_Guarded)
        g.parts = out
        g.nbytes = self.nbytes
        g.fut = fut
        s._admit(self.nbytes)
        s._queue(g, self.nbytes)
        return fut


cdef class SendChain:
    """Builder of sends linked so the kernel runs them in order (IO_LINK);
    one aggregate ChainResult."""

    def __cinit__(self, Conn conn):
        self.conn = conn
        self.links = []
        self.zc = []

    def add(self, data):
        """A link sent from a copy of data."""
        if type(data) is not bytes:
            data = _as_bytes(data)
        if len(<bytes>data) == 0:
            raise ValueError('a chain link cannot be empty')
        self.links.append(data)
        self.zc.append(False)
        self.nbytes += len(<bytes>data)
        return self

    copy = add

    def guard(self, obj):
        """A link sent in place (zero-copy above the threshold), obj kept
        alive until the kernel's notification."""
        cdef _ConnSlot s = self.conn.slot
        mv = _guard_view(obj)
        if len(mv) == 0:
            raise ValueError('a chain link cannot be empty')
        if len(mv) >= s.table.zc_threshold and s.loop.zc_ok:
            self.links.append(mv)
            self.zc.append(True)
        else:
            s.table.parts_copied += 1
            self.links.append(bytes(mv))
            self.zc.append(False)
        self.nbytes += len(mv)
        return self

    def __len__(self):
        return len(self.links)

    def submit(self):
        """Queue the chain; returns a future of ChainResult(bytes_sent,
        error, cancelled), resolved after every link completed and every
        zero-copy notification arrived."""
        cdef _ConnSlot s = self.conn.slot
        cdef _Chain ch
        if self.submitted:
            raise RuntimeError('send_chain() builder already submitted')
        self.submitted = True
        s._check_send(self.conn)
        if not self.links:
            raise ValueError('empty send chain')
        if len(self.links) > s.loop.max_chain_links:
            raise ValueError(f'a send chain has at most max_chain_links = '
                             f'{s.loop.max_chain_links} links (a quarter of the '
                             f'submission queue), got {len(self.links)}')
        fut = s.loop._new_future()
        ch = _Chain.__new__(_Chain)
        ch.links = self.links
        ch.zc = self.zc
        ch.state = ChainState(len(self.links), self.nbytes)
        ch.fut = fut
        s._admit(self.nbytes)
        s._queue(ch, self.nbytes)
        return fut
