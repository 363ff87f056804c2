# _conn/slot.pxi -- one native connection's state, and the table of them.
#
# Owns: _ConnSlot (fd, receive accumulator, the multishot RECV, the send
# queue and its single in-flight send, guarded sends and chains, shutdown
# and close; the send queue is sendq.pxi's _SendQueue), and
# _ConnTable (one per loop: the slots, their free list, the per-loop knobs
# -- send queue limit, accumulator cap, zero-copy threshold, connection
# limit, send pool budget -- and counters).
#
# Lifecycle of a slot: OPEN -> CLOSING (close(): receive stopped, queued
# sends drain) or DEAD (drop/abort/error: sends discarded, waiters failed)
# -> its fd is closed once no operation of it is in flight -> FREE: back on
# the free list with its generation bumped.
#
# Invariants: at most one send (or chain) in flight per slot (`busy`); a
# partial send continues from the right offset; every buffer an op points
# at is held by the op until its final completion (invariant 1); the fd is
# closed only when `nops` is zero; a slot's generation changes when it is
# freed, so a stale Conn handle never reaches the connection reusing it;
# nothing is ever submitted by the fd number once the close is queued (the
# write shutdown is a direct call, see _send_shutdown: invariant 10).


# ---------------------------------------------------------------------------
# the slot


cdef int _S_OPEN = 0
cdef int _S_CLOSING = 1     # close(): queued sends drain, then the fd closes
cdef int _S_DEAD = 2        # dropped / failed / aborted
cdef int _S_FREE = 3        # fd closed, slot on the free list


cdef class _ConnSlot(_SendQueue):

    @cython.final
    cdef int _open(self, int fd, int family) except -1:
        self.fd = fd
        self.family = family
        self.state = _S_OPEN
        self.fd_closed = False
        self.eof = False
        self.error = None
        self.rb.clear()
        self.recv_paused = False
        self.recv_parked = False
        self.reader = None
        self.wq = []
        self.wq_off = 0
        self.wq_bytes = 0
        self.inflight_bytes = 0
        self.busy = False
        self.send_waiters = None
        self.queued_total = 0
        self.sent_total = 0
        self.shut_requested = False
        self.shut_sent = False
        self.peer = None
        if self.rop is None:
            self.rop = _NRecvOp.__new__(_NRecvOp)
            self.rop.loop = self.loop
            self.rop.slot = self
        self.rop.fd = fd
        return 0

    # -- receive --

    cdef int rearm(self) except -1:
        self.recv_parked = False
        return self._arm_recv()

    @cython.final
    cdef int _arm_recv(self) except -1:
        cdef io_uring_sqe *sqe
        if self.rop.inflight or self.state != _S_OPEN or self.eof or self.recv_paused:
            return 0
        self.loop._ensure_pbuf()
        sqe = self.loop._submit(self.rop, IORING_OP_RECV, self.fd, NULL, 0, 0)
        sqe.ioprio = IORING_RECV_MULTISHOT
        sqe.flags = IOSQE_BUFFER_SELECT
        sqe.buf_group = self.loop.pbuf.bgid
        self.nops += 1
        return 0

    @cython.final
    cdef int _on_recv(self, int res, uint32_t flags) except -1:
        cdef unsigned bid
        cdef LoopCore loop = self.loop
        if not (flags & IORING_CQE_F_MORE):
            self.nops -= 1
        if flags & IORING_CQE_F_BUFFER:
            bid = flags >> IORING_CQE_BUFFER_SHIFT
            try:
                if res > 0 and self.state == _S_OPEN:
                    self._append(rl_pbuf_addr(&loop.pbuf, bid), res)
            finally:
                rl_pbuf_add(&loop.pbuf, <unsigned short>bid)
                rl_pbuf_publish(&loop.pbuf)
        elif res == 0:
            self.eof = True
        elif res == -ENOBUFS:
            loop.enobufs += 1
            if self.state == _S_OPEN and not self.recv_parked:
                self.recv_parked = True
                loop.parked.append(self)
            self._maybe_recycle()
            return 0
        elif res == -ECANCELED:
            if self.state == _S_OPEN and not self.recv_paused and not self.eof:
                self._arm_recv()
            self._maybe_recycle()
            return 0
        elif res < 0:
            if self.state == _S_OPEN:
                self.eof = True
                self.error = _oserror(-res)
        if res > 0 and not (flags & IORING_CQE_F_MORE):
            self._arm_recv()
        if self.reader is not None:
            if self.eof or self.rb.end - self.rb.start >= self.rb.want or self.state != _S_OPEN:
                if self.reader.each:
                    self.reader._pump()
                else:
                    self.reader._wake(True)
        self._maybe_recycle()
        return 0

    @cython.final
    cdef int _append(self, char *ptr, Py_ssize_t n) except -1:
        cdef _RecvBuffer rb = self.rb
        if rb.append(ptr, n, self.table.chunk_size):
            self.table.chunk_copies += 1
        if rb.end - rb.start >= self.table.recv_cap and not self.recv_paused:
            # bounded accumulator: stop receiving until the handler consumes
            self.recv_paused = True
            self.table.recv_pauses += 1
            if self.rop.inflight:
                self.loop._cancel_op(self.rop)
        return 0

    @cython.final
    cdef Py_ssize_t _try_consume(self, fn, bint keep, Conn h) except -2:
        """Run fn over the unconsumed bytes. Returns what it consumed (> 0),
        0 at EOF, or -1 when the caller must wait."""
        cdef Py_ssize_t avail, r
        cdef _RecvBuffer rb = self.rb
        cdef _NeedAtLeast na
        while True:
            if self.state != _S_OPEN:
                if self.error is not None:
                    raise self.error
                raise ConnectionClosed('connection is closed')
            avail = rb.end - rb.start
            if avail > 0 and avail >= rb.want:
                view = rb.view()
                try:
                    res = fn(view)
                finally:
                    if not keep and _rl_refcnt(<PyObject*>view) > 1:
                        # the handler kept the view somewhere: end it, so that
                        # it cannot read bytes the buffer later reuses (a view
                        # only this frame holds simply goes, with no call)
                        try:
                            _mv_release(view)
                        except BufferError:
                            pass    # the handler exported it: the chunk stays referenced
                    view = None
                if h.gen != self.gen or self.state != _S_OPEN:
                    # fn closed the connection: report what it consumed
                    if type(res) is int and res > 0:
                        return res
                    if self.state != _S_OPEN and self.error is not None:
                        raise self.error
                    raise ConnectionClosed('connection is closed')
                if type(res) is not int and not isinstance(res, _NeedAtLeast):
                    if res is None:
                        raise TypeError('parse callback returned None; return the number of '
                                        'bytes consumed, 0 or need_at_least(n)')
                    if isinstance(res, bool):
                        raise TypeError('parse callback returned a bool; return the number '
                                        'of bytes consumed, 0 or need_at_least(n)')
                    # int subclasses (IntEnum) and __index__ objects take the
                    # one int path below (re-arm, negative check included)
                    res = _operator_index(res)
                if type(res) is int:
                    r = res
                    if r > 0:
                        if r > avail:
                            raise ValueError(f'parse callback consumed {r} bytes but only '
                                             f'{avail} are buffered')
                        rb.consume(r)
                        if self.recv_paused and rb.end - rb.start < self.table.recv_cap // 2:
                            self.recv_paused = False
                            self._arm_recv()
                        return r
                    if r < 0:
                        raise ValueError(f'parse callback returned {r}; expected the number '
                                         'of bytes consumed, 0 or need_at_least(n)')
                    rb.want = avail + 1
                else:
                    na = <_NeedAtLeast>res
                    if na.n > self.table.recv_cap:
                        raise ValueError(f'need_at_least({na.n}) exceeds the receive accumulator '
                                         f'cap ({self.table.recv_cap} bytes)')
                    rb.want = na.n if na.n > avail else avail + 1
                    rb.reserve(rb.want, self.table.chunk_size)
            if self.eof:
                if self.error is not None:
                    raise self.error
                return 0
            if self.recv_paused and rb.end - rb.start >= self.table.recv_cap:
                raise ConnectionDropped(
                    f'the parse callback needs more than recv_accumulator_cap '
                    f'({self.table.recv_cap} bytes) without consuming')
            return -1

    # -- send --

    @cython.final
    cdef int _check_send(self, Conn h) except -1:
        if self.gen != h.gen:
            raise ConnectionClosed('connection is closed')
        if self.state != _S_OPEN:
            if self.error is not None:
                raise self.error
            raise ConnectionClosed('connection is closed')
        if self.shut_requested:
            raise ConnectionClosed('the write side of this connection is shut down')
        return 0

    @cython.final
    cdef int _admit(self, Py_ssize_t n) except -1:
        cdef _ConnTable t = self.table
        if self.wq_bytes + self.inflight_bytes + n > t.max_send_queue:
            t.dropped_slow += 1
            err = ConnectionDropped(
                f'send queue limit exceeded: {self.wq_bytes + self.inflight_bytes + n} '
                f'bytes unsent > max_send_queue ({t.max_send_queue} bytes)')
            self._fail(err)
            raise err
        if t.pool_bytes + n > t.pool_limit:
            raise SendPoolExhausted(
                f'send pool budget exhausted: {t.pool_bytes} + {n} bytes > '
                f'{t.pool_limit} bytes queued on this worker')
        return 0

    @cython.final
    cdef int _queue(self, object item, Py_ssize_t n) except -1:
        self.wq.append(item)
        self.wq_bytes += n
        self.queued_total += n
        self.table.pool_bytes += n
        if not self.busy and not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop._want_flush(self)
        return 0

    cdef int flush(self) except -1:
        cdef _QSendOp op
        cdef list wq = self.wq
        self.flush_scheduled = False
        if self.busy or not wq or self.state == _S_DEAD or self.state == _S_FREE:
            return 0
        first = wq[0]
        if type(first) is _Guarded:
            del wq[0]
            return self._submit_guarded(<_Guarded>first)
        if type(first) is _Chain:
            del wq[0]
            return self._submit_chain(<_Chain>first)
        op = self._take()
        self.busy = True
        self.cur_send = op
        self.nops += 1
        self._submit_send(op, False)
        if (self.loop.before_wait and not self.wq and self.state == _S_OPEN
                and not self.shut_requested and not self.send_waiters):
            # nothing waits for this send to end: its completion needs no
            # turn of the loop of its own (LoopCore._mark_quiet)
            self.loop._mark_quiet(op, op.nbytes)
        return 0

    cdef int _sent(self, _QSendOp op, int res) except -1:
        self.nops -= 1
        self.busy = False
        self.cur_send = None
        self.inflight_bytes = 0
        if res == 0 and op.nbytes > 0:
            res = -EIO   # no progress on a non-empty send is an error, never a retry
        if self.state == _S_DEAD or self.state == _S_FREE:
            op.release()
            self.spare = op
            self.table.pool_bytes -= op.nbytes
            self._maybe_recycle()
            return 0
        if res < 0:
            if res == -EAGAIN or res == -EINTR:
                self._requeue(op, res)
                op.release()
                self.spare = op
                self._schedule_flush()
                return 0
            op.release()
            self.spare = op
            self.table.pool_bytes -= op.nbytes
            self._fail(_oserror(-res))
            self._maybe_recycle()
            return 0
        if res < op.nbytes:
            self._requeue(op, res)
        op.release()
        self.spare = op
        self.sent_total += res
        self.table.pool_bytes -= res
        self._after_send()
        return 0

    @cython.final
    cdef int _after_send(self) except -1:
        # resolve send() futures whose bytes are all out, then continue
        cdef object ws = self.send_waiters
        if ws:
            while ws and ws[0][0] <= self.sent_total:
                end, n, fut = ws.popleft()
                if not fut.done():
                    fut.set_result(n)
        if self.wq:
            if self.state != _S_DEAD:
                self.flush()
            return 0
        if self.state == _S_CLOSING:
            self._close_fd()
        elif self.shut_requested and not self.shut_sent:
            self._send_shutdown()
        self._maybe_recycle()
        return 0

    @cython.final
    cdef int _schedule_flush(self) except -1:
        if not self.flush_scheduled and not self.busy:
            self.flush_scheduled = True
            self.loop._want_flush(self)
        return 0

    @cython.final
    cdef int _submit_guarded(self, _Guarded g) except -1:
        cdef _NZcOp op = _NZcOp.__new__(_NZcOp)
        cdef Py_ssize_t i, k = len(g.parts)
        cdef io_uring_sqe *sqe
        cdef Py_buffer view
        op.loop = self.loop
        op.slot = self
        op.fd = self.fd
        op.parts = g.parts
        op.entry = g
        op.nbytes = g.nbytes
        for i in range(k):
            PyObject_GetBuffer(g.parts[i], &view, PyBUF_SIMPLE)
            op.iov[i].iov_base = view.buf
            op.iov[i].iov_len = view.len
            PyBuffer_Release(&view)   # the part object itself stays referenced by op.parts
        op.msg.msg_iov = op.iov
        op.msg.msg_iovlen = k
        self.wq_bytes -= g.nbytes
        self.inflight_bytes = g.nbytes
        self.busy = True
        self.cur_send = op
        self.nops += 1
        sqe = self.loop._submit(op, IORING_OP_SENDMSG_ZC, self.fd, &op.msg, 1, 0)
        sqe.msg_flags = MSG_NOSIGNAL | MSG_WAITALL
        return 0

    @cython.final
    cdef int _on_guarded_sent(self, _NZcOp op, int res) except -1:
        cdef _Guarded g = op.entry
        self.busy = False
        self.cur_send = None
        self.inflight_bytes = 0
        self.table.pool_bytes -= g.nbytes
        if res >= 0:
            self.sent_total += res
        if self.state == _S_DEAD or self.state == _S_FREE:
            if g.fut is not None and not g.fut.done():
                g.fut.set_exception(self.error or ConnectionClosed('connection is closed'))
            return 0
        if res < 0 or res < g.nbytes:
            err = _oserror(-res) if res < 0 else ConnectionDropped(
                f'zero-copy send was cut short ({res} of {g.nbytes} bytes)')
            if g.fut is not None and not g.fut.done():
                g.fut.set_exception(err)
            self._fail(err)
            return 0
        if g.fut is not None and not g.fut.done():
            g.fut.set_result(res)
        self._after_send()
        return 0

    @cython.final
    cdef int _submit_chain(self, _Chain ch) except -1:
        cdef Py_ssize_t i, n = len(ch.links)
        cdef io_uring_sqe *sqe
        cdef _NZcOp zop
        cdef Py_buffer view
        cdef Py_ssize_t total = ch.state.total_bytes
        if self.loop.drv.caps & RL_CAP_LINKS:
            # the whole chain reaches the kernel in one submission or not at
            # all (invariant 9): room for every link first, before any state
            # changes, so a chain that cannot fit fails alone and the
            # connection stays usable
            try:
                self.loop._sq_reserve(<unsigned>n)
            except SubmissionQueueFull as exc:
                self.wq_bytes -= total
                self.table.pool_bytes -= total
                if ch.fut is not None and not ch.fut.done():
                    ch.fut.set_exception(exc)
                if self.wq:
                    self._schedule_flush()
                return 0
        self.wq_bytes -= total
        self.inflight_bytes = total
        self.busy = True
        self.cur_send = ch
        ch.ops = []
        if not (self.loop.drv.caps & RL_CAP_LINKS):
            # the driver does not link: the links go out one by one
            ch.next_link = 0
            ch.link_off = 0
            return self._send_next_link(ch)
        for i in range(n):
            part = ch.links[i]
            zop = _NZcOp.__new__(_NZcOp)
            zop.loop = self.loop
            zop.slot = self
            zop.fd = self.fd
            zop.parts = [part]
            zop.chain = ch
            zop.link = i
            PyObject_GetBuffer(part, &view, PyBUF_SIMPLE)
            zop.iov[0].iov_base = view.buf
            zop.iov[0].iov_len = view.len
            PyBuffer_Release(&view)
            zop.nbytes = zop.iov[0].iov_len
            ch.ops.append(zop)
            self.nops += 1
            if ch.zc[i]:
                sqe = self.loop._submit(zop, IORING_OP_SEND_ZC, self.fd, zop.iov[0].iov_base, zop.iov[0].iov_len, 0)
            else:
                sqe = self.loop._submit(zop, IORING_OP_SEND, self.fd, zop.iov[0].iov_base, zop.iov[0].iov_len, 0)
            sqe.msg_flags = MSG_NOSIGNAL | MSG_WAITALL
            if i + 1 < n:
                sqe.flags = IOSQE_IO_LINK
        self.table.chains += 1
        return 0

    @cython.final
    cdef int _send_next_link(self, _Chain ch) except -1:
        cdef _NLinkOp op
        cdef io_uring_sqe *sqe
        cdef Py_buffer view
        part = ch.links[ch.next_link]
        if ch.link_off:
            part = memoryview(part)[ch.link_off:]
        op = _NLinkOp.__new__(_NLinkOp)
        op.loop = self.loop
        op.slot = self
        op.fd = self.fd
        op.chain = ch
        op.buf = part
        PyObject_GetBuffer(part, &view, PyBUF_SIMPLE)
        op.nbytes = view.len
        sqe = self.loop._submit(op, IORING_OP_SEND, self.fd, view.buf, <size_t>view.len, 0)
        PyBuffer_Release(&view)
        sqe.msg_flags = MSG_NOSIGNAL
        self.nops += 1
        ch.ops.append(op)
        return 0

    @cython.final
    cdef int _on_link_sent(self, _NLinkOp op, int res) except -1:
        # a driver without links runs a chain link by link with the same
        # aggregate result as IO_LINK: the first failure cancels the links after it
        cdef _Chain ch = op.chain
        cdef Py_ssize_t i, n = len(ch.links)
        cdef Py_ssize_t link_len = len(ch.links[ch.next_link])
        if self.state == _S_DEAD or self.state == _S_FREE:
            res = -ECANCELED if res >= 0 else res
        if res == 0 and op.nbytes > 0:
            res = -EIO   # no progress is an error, never a retry
        if res >= 0 and ch.link_off + res < link_len:
            ch.link_off += res
            return self._send_next_link(ch)
        if res >= 0:
            ev = ch.state.on_op(<int>(ch.link_off + res), link_len)
        else:
            ch.state.bytes_sent += ch.link_off
            ev = ch.state.on_op(res, link_len)
            for i in range(ch.next_link + 1, n):
                ev = ch.state.on_op(-ECANCELED, -1)
        ch.link_off = 0
        ch.next_link += 1
        if ev == 'pending':
            return self._send_next_link(ch)
        return ch._ops_done(self, ev)

    @cython.final
    cdef int _send_shutdown(self) except -1:
        # A direct shutdown(2), not IORING_OP_SHUTDOWN: the kernel runs that
        # op in a worker thread that looks the fd number up late, after a
        # close submitted in the same enter may have freed it for a new
        # socket, which it would then half-close (invariant 10). Called only
        # once no send is in flight or queued: nothing to order it after.
        # Non-blocking and cheap; its result is of no use (a peer already
        # gone shows on the receive side), as the op's never was.
        self.shut_sent = True
        shutdown(self.fd, SHUT_WR)
        return 0

    # -- ending --

    @cython.final
    cdef int _wake_reader(self) except -1:
        if self.reader is not None:
            r = self.reader
            self.reader = None
            (<_ReadWait>r)._wake(False)
        return 0

    @cython.final
    cdef int _fail_waiters(self, exc) except -1:
        ws = self.send_waiters
        self.send_waiters = None
        if ws:
            for end, n, fut in ws:
                if not fut.done():
                    fut.set_exception(exc)
        for item in self.wq:
            if type(item) is _Guarded and (<_Guarded>item).fut is not None:
                if not (<_Guarded>item).fut.done():
                    (<_Guarded>item).fut.set_exception(exc)
            elif type(item) is _Chain and (<_Chain>item).fut is not None:
                if not (<_Chain>item).fut.done():
                    (<_Chain>item).fut.set_exception(exc)
        self.table.pool_bytes -= self.wq_bytes
        self.wq = []
        self.wq_off = 0
        self.wq_bytes = 0
        return 0

    @cython.final
    cdef int _fail(self, exc) except -1:
        """Drop the connection now: queued sends discarded, waiters failed with
        exc, operations cancelled, fd closed once they are done."""
        if self.state == _S_DEAD or self.state == _S_FREE:
            return 0
        self.state = _S_DEAD
        if self.error is None:
            self.error = exc
        self.table.live -= 1
        self._fail_waiters(exc)
        if self.rop.inflight:
            self.loop._cancel_op(self.rop)
        self._wake_reader()
        self._close_fd()
        return 0

    @cython.final
    cdef int _close(self) except -1:
        """Graceful close: stop receiving, send what is queued, close."""
        if self.state != _S_OPEN:
            return 0
        self.state = _S_CLOSING
        self.table.live -= 1
        if self.rop.inflight:
            self.loop._cancel_op(self.rop)
        self._wake_reader()
        if not self.busy and not self.wq:
            self._close_fd()
        return 0

    @cython.final
    cdef int _close_fd(self) except -1:
        cdef io_uring_sqe *sqe
        if self.fd_closed:
            return 0
        if self.rop.inflight or self.busy:
            # wait for in-flight operations: the fd must outlive them
            if self.busy and self.state == _S_DEAD:
                self._cancel_sends()
            return 0
        self.fd_closed = True
        self.loop._submit(None, IORING_OP_CLOSE, self.fd, NULL, 0, 0)
        self.table.closed += 1
        self._maybe_recycle()
        return 0

    @cython.final
    cdef int _cancel_sends(self) except -1:
        cur = self.cur_send
        if cur is None:
            return 0
        if type(cur) is _Chain:
            for o in (<_Chain>cur).ops or ():
                if (<_Op>o).inflight and not (type(o) is _NZcOp and (<_NZcOp>o).op_done):
                    self.loop._cancel_op(<_Op>o)
        elif (<_Op>cur).inflight:
            self.loop._cancel_op(<_Op>cur)
        return 0

    @cython.final
    cdef int _maybe_recycle(self) except -1:
        if self.state == _S_FREE:
            return 0
        if (self.state != _S_OPEN and not self.fd_closed and not self.rop.inflight and
                not self.busy and not self.wq):
            self._close_fd()
            return 0
        if self.fd_closed and self.nops == 0 and not self.rop.inflight and not self.busy:
            self.state = _S_FREE
            self.table._release(self)
        return 0


# ---------------------------------------------------------------------------
# the table


cdef class _ConnTable:

    def __cinit__(self):
        self.slots = []
        self.free = []
        self.max_send_queue = 8 << 20
        self.recv_cap = 16 << 20
        self.zc_threshold = 65536
        self.max_connections = 1 << 20
        self.pool_limit = 1 << 30
        self.chunk_size = 16384

    @cython.final
    cdef _ConnSlot _alloc(self, int fd, int family):
        cdef _ConnSlot s
        if self.live >= self.max_connections:
            self.refused += 1
            raise ConnectionRefusedError(
                f'max_connections ({self.max_connections}) reached on this worker')
        if self.free:
            s = <_ConnSlot>self.free.pop()
        else:
            s = _ConnSlot.__new__(_ConnSlot)
            s.rb = _RecvBuffer.__new__(_RecvBuffer)
            s.loop = self.loop
            s.table = self
            s.index = len(self.slots)
            s.gen = 0
            self.slots.append(s)
        s.gen += 1
        s._open(fd, family)
        self.live += 1
        self.opened += 1
        return s

    @cython.final
    cdef int _release(self, _ConnSlot s) except -1:
        s.rb.release()
        s.reader = None
        s.wq = None
        s.send_waiters = None
        s.gen += 1           # stale handles can never match again
        self.free.append(s)
        return 0

    def stats(self):
        return {
            'live': self.live, 'opened': self.opened, 'closed': self.closed,
            'slots': len(self.slots), 'free': len(self.free),
            'dropped_slow': self.dropped_slow, 'refused': self.refused,
            'pool_bytes': self.pool_bytes, 'parts_copied': self.parts_copied,
            'parts_zc': self.parts_zc, 'zc_guard_sends': self.zc_guard_sends,
            'chains': self.chains, 'chunk_copies': self.chunk_copies,
            'recv_pauses': self.recv_pauses,
        }


cdef _ConnTable _table_of(LoopCore loop):
    cdef _ConnTable t = loop.conn_table
    if t is None:
        t = _ConnTable.__new__(_ConnTable)
        t.loop = loop
        loop.conn_table = t
    return t
