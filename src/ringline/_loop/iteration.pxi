# _loop/iteration.pxi -- the loop turn: LoopCore, the top of the core's
# class chain (_LoopSched -> _LoopOps -> _LoopSock -> LoopCore).
#
# Owns: the iteration (_run_once), run_forever, the blocking wait and its
# wakeup, the flush of queued sends, the re-arm of streams parked on an
# empty buffer ring, the pre-flush and per-tick hooks of the native runtime,
# add_reader/add_writer (_PollOp), signal delivery through the ring
# (_SignalOp), close and the introspection counters.
#
# One iteration (_run_once), in asyncio's order:
#   1. drop cancelled timers from the heap top (rebuild when most are dead);
#   2. one io_uring_enter: submits everything queued since the last one and
#      waits (zero timeout when callbacks are ready, else until the nearest
#      timer, else indefinitely; call_soon_threadsafe wakes it via an eventfd
#      read that is always armed in the ring); Python signal handlers run
#      right after it;
#   3. run the callbacks that were ready before the wait (asyncio runs the
#      ready queue before the I/O callbacks of the poll that follows it);
#   4. dispatch every completion to its operation (generation-checked token:
#      stale completions are counted and dropped): protocol callbacks and
#      add_reader/add_writer callbacks run here, as asyncio's I/O handles;
#   5. run the timers that are due.
# Callbacks scheduled during 3-5 run in the next iteration, after its wait.
#
# Lifecycle: created with its driver; run_forever/run_until_complete any
# number of times; close() cancels every operation, waits for the kernel to
# finish with their memory (bounded), then releases the driver.

cdef double _MAX_WAIT = 86400.0


cdef class _SignalOp(_Op):
    """A standing read on the signal wakeup socket (signal.set_wakeup_fd)."""

    cdef int complete(self, int res, uint32_t flags) except -1:
        cdef int i
        loop = self.loop
        if res > 0:
            for i in range(res):
                loop._handle_signal(self.buf[i])
        if loop.closing or res == -ECANCELED:
            return 0
        if res < 0 and res != -EAGAIN and res != -EINTR:
            return 0
        loop._arm_signal()
        return 0


cdef class _PollOp(_Op):
    """add_reader/add_writer: a one-shot poll re-armed after each readiness,
    which gives asyncio's level-triggered semantics."""

    cdef int complete(self, int res, uint32_t flags) except -1:
        if self.removed:
            return 0
        if res == -ECANCELED:
            return 0
        if self.handle.cancelled_:
            return 0
        h = self.handle
        if res >= 0 and not self.loop.closing:
            self.loop._arm_poll(self)
        if self.loop.closing:
            return 0
        # an I/O callback of this wait: it runs now, after the callbacks
        # that were ready before the wait and before the due timers
        self.loop._run_handle(h)
        return 0


cdef class LoopCore(_LoopSock):
    """The native part of ringline's event loop (see the file notes)."""

    def __cinit__(self, *args, **kwargs):
        self.readers = {}
        self.writers = {}
        self._signal_handlers = {}
        self.pre_flush = []
        self.parked = []
        self.send_zc_threshold = 1 << 62
    @cython.final
    cdef int _wait(self, long long timeout_ns) except -1:
        cdef int ret
        if self.sock_new:
            _sock_ops_check_new(self)
        if self.sock_ops:
            timeout_ns = _sock_ops_scan(self, timeout_ns)
        if timeout_ns != 0:
            # No lost wakeup: call_soon_threadsafe pushes and then writes the
            # eventfd only if `waiting` is set, both under the GIL. Python
            # code run since the timeout was chosen (flushes, socket-op
            # scans) may have let a producer thread push while `waiting` was
            # still False: the queue is checked again after setting it, and
            # from here to the release of the GIL in rl_drv_wait no Python
            # code runs, so a later push sees `waiting` and wakes the wait.
            self.waiting = True
            if self.rq_len > 0:
                self.waiting = False
                timeout_ns = 0
        if self.nquiet and timeout_ns == 0:
            self._clear_quiet()         # no wait to go past them
        if timeout_ns == 0:
            if rl_drv_enter_is_noop(&self.drv):
                self.skipped_enters += 1
                return 0      # nothing to submit, reap or run: skip the syscall
            ret = self._drv_enter(0, 0)
        else:
            self.sq_epoch += 1      # a submission (as _drv_enter counts it)
            with nogil:
                ret = rl_drv_wait(&self.drv, timeout_ns, self.quiet, self.gens, self.ops_cap)
            self.waiting = False
            self.wake_sent = False
            if self.nquiet:
                self._clear_quiet()     # good for this wait only
            # A signal that interrupted the wait is not always reported as
            # EINTR (io_uring_enter returns the number it submitted when it
            # submitted any): let Python run its handlers after every
            # blocking wait (a flag test when none is pending).
            PyErr_CheckSignals()
        if ret < 0:
            if ret == -EINTR:
                PyErr_CheckSignals()
            elif ret != -ETIME and ret != -EBUSY and ret != -EAGAIN:
                raise _oserror(-ret, rl_drv_wait_call(&self.drv).decode()
                               + ' failed: ' + _os.strerror(-ret))
        return 0

    def _submit_pending(self):
        """Hand every queued SQE to the kernel now (no wait)."""
        if self.sock_new:
            _sock_ops_check_new(self)
        self._drv_enter(0, 0)

    def __dealloc__(self):
        self._drop_flushes()
        free(self.fl_items)
        self.fl_items = NULL

    @cython.final
    cdef int _want_flush(self, _Flushable f) except -1:
        # f has sends to flush before the next wait (the caller set its
        # flush_scheduled: it is listed once)
        cdef PyObject **items
        cdef Py_ssize_t cap
        if self.fl_len == self.fl_cap:
            cap = self.fl_cap * 2 if self.fl_cap else 64
            items = <PyObject**>realloc(self.fl_items, sizeof(PyObject*) * cap)
            if items == NULL:
                raise MemoryError()
            self.fl_items = items
            self.fl_cap = cap
        Py_INCREF(f)
        self.fl_items[self.fl_len] = <PyObject*>f
        self.fl_len += 1
        return 0

    @cython.final
    cdef int _flush_writes(self) except -1:
        # Flush what _want_flush listed, in order. One listed meanwhile (a
        # failing flush can run a protocol's connection_lost, which may
        # write elsewhere) is flushed in the same pass.
        cdef Py_ssize_t i = 0
        cdef _Flushable f
        self.before_wait = True
        try:
            while i < self.fl_len:
                f = <_Flushable>self.fl_items[i]    # a reference of our own
                Py_DECREF(f)                        # the array's
                self.fl_items[i] = NULL
                i += 1
                f.flush()
        finally:
            self.before_wait = False
            # what a raising flush left unflushed stays listed
            if i < self.fl_len:
                memmove(self.fl_items, self.fl_items + i, sizeof(PyObject*) * (self.fl_len - i))
            self.fl_len -= i
        return 0

    @cython.final
    cdef void _drop_flushes(self):
        cdef Py_ssize_t i
        cdef PyObject *p
        for i in range(self.fl_len):
            p = self.fl_items[i]
            self.fl_items[i] = NULL
            Py_XDECREF(p)
        self.fl_len = 0

    @cython.final
    cdef int _unpark(self) except -1:
        # The batch that emptied the buffer ring has been dispatched and its
        # buffers returned: re-arm the streams that found it empty, first
        # come first served, at most one per buffer (more would only find
        # the ring empty again); the rest wait for the next iteration, which
        # then does not block.
        cdef list parked = self.parked
        cdef Py_ssize_t n = len(parked)
        cdef Py_ssize_t take = self.pbuf.nbufs if self.pbuf_ok else n
        if take < n:
            self.parked = parked[take:]
            parked = parked[:take]
        else:
            self.parked = []
        for s in parked:
            (<_Flushable>s).rearm()
        return 0

    @cython.final
    cdef int _run_once(self) except -1:
        cdef long long timeout_ns
        cdef double now, dt
        cdef double end = 0
        cdef Py_ssize_t ntodo, i
        cdef PyObject *p
        cdef Handle h
        cdef TimerHandle top
        cdef bint has_timers
        cdef uint64_t seq_limit = 0

        self.iterations += 1
        if self.pre_flush:
            self._run_pre_flush()
        if self.th_len > 100 and self._timer_cancelled_count * 2 > self.th_len:
            self._heap_rebuild()
        else:
            while self.th_len > 0 and (<Handle>self.th[0].h).cancelled_:
                p = self._heap_pop()
                (<TimerHandle>p).scheduled = False
                self._timer_cancelled_count -= 1
                Py_DECREF(<object>p)

        if self.rq_len > 0 or self._stopping or self.parked:
            timeout_ns = 0
        elif self.th_len > 0:
            now = rl_monotonic()
            dt = self.th[0].when - now
            if dt <= 0:
                timeout_ns = 0
            else:
                if dt > _MAX_WAIT:
                    dt = _MAX_WAIT
                timeout_ns = <long long>(dt * 1e9) + 1
        else:
            timeout_ns = -1
        if self.fl_len:
            self._flush_writes()
        self._wait(timeout_ns)

        # which timers are due is decided now, as asyncio does when it moves
        # them to its ready queue: a timer scheduled by a callback of this
        # iteration waits for the next one, behind the call_soon() handles
        # scheduled before it
        has_timers = self.th_len > 0
        if has_timers:
            end = rl_monotonic() + self._clock_resolution
            seq_limit = self.th_seq

        # the callbacks that were ready before the wait
        ntodo = self.rq_len
        for i in range(ntodo):
            p = self._pop_ready()
            h = <Handle>p
            Py_DECREF(h)
            _gc_show(h)
            if h.cancelled_:
                continue
            self._run_handle(h)
        h = None

        # the I/O callbacks of this wait
        self._reap()
        if self.parked:
            self._unpark()

        # the timers that were due after the wait
        if has_timers:
            while (self.th_len > 0 and self.th[0].when < end
                   and self.th[0].seq < seq_limit):
                p = self._heap_pop()
                top = <TimerHandle>p
                Py_DECREF(top)
                top.scheduled = False
                if top.cancelled_:
                    self._timer_cancelled_count -= 1
                    continue
                self._run_handle(top)
            top = None
        if self.tick_cb is not None:
            try:
                self.tick_cb()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.call_exception_handler({
                    'message': 'ringline: on_tick() failed',
                    'exception': exc,
                })
        return 0

    @cython.final
    cdef int _run_pre_flush(self) except -1:
        cdef list hooks = self.pre_flush
        self.pre_flush = []
        for fn in hooks:
            try:
                fn()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.call_exception_handler({
                    'message': 'ringline: a pre-flush hook failed',
                    'exception': exc,
                })
        return 0

    def _set_tick(self, fn):
        """fn() is called once per loop iteration, after completions are
        dispatched and ready callbacks run (the native runtime's on_tick)."""
        if fn is not None and not callable(fn):
            raise TypeError('tick callback must be callable or None')
        self.tick_cb = fn

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = _sys.get_asyncgen_hooks()
        try:
            self._thread_id = _threading.get_ident()
            _sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                                    finalizer=self._asyncgen_finalizer_hook)
            _events._set_running_loop(self)
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._thread_id = None
            _events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            _sys.set_asyncgen_hooks(*old_agen_hooks)

    def _close_core(self):
        """Release the ready queue, timers, operations and the ring."""
        cdef Py_ssize_t i
        cdef PyObject *p
        cdef double deadline
        self.closing = True
        self._bounce_clear()
        self._drop_flushes()
        while self.rq_len > 0:
            p = self._pop_ready()
            _gc_show(<Handle>p)
            Py_DECREF(<object>p)
        while self.th_len > 0:
            p = self._heap_pop()
            (<TimerHandle>p).scheduled = False
            Py_DECREF(<object>p)
        self._timer_cancelled_count = 0
        for op in list(self.readers.values()) + list(self.writers.values()):
            (<_PollOp>op).removed = True
        self.readers.clear()
        self.writers.clear()
        for stash in self.accept_stash.values():
            for fd in stash[1]:
                try:
                    _os.close(fd)
                except OSError:
                    pass
        self.accept_stash.clear()
        self.recv_stash.clear()
        if self.sig_rsock is not None:
            if self.sig_op is not None and self.sig_op.inflight:
                self._cancel_op(self.sig_op)
            self.sig_rsock.close()
            self.sig_wsock.close()
            self.sig_rsock = self.sig_wsock = None
        if not self.ring_ok:
            return
        # Cancel everything in flight and wait (bounded) until the kernel has
        # let go of the memory those operations reference.
        if self.sock_new:
            _sock_ops_check_new(self)
        if self.inflight > 0:
            for i in range(self.ops_cap):
                if self.ops[i] != NULL:
                    self._cancel_op(<_Op>self.ops[i])
            deadline = rl_monotonic() + 2.0
            while self.inflight > 0 and rl_monotonic() < deadline:
                self._drv_enter(1, 10000000)
                self._reap()
        for fd in list(self.sock_ops):
            for op in _fd_ops(self, fd):
                _sock_op_unfile(<_SockOp>op)
        self.sock_new = []
        if self.inflight == 0:
            if self.pbuf_ok:
                rl_drv_pbuf_exit(&self.drv, &self.pbuf)
                self.pbuf_ok = False
            if self.dpbuf_ok:
                rl_drv_pbuf_exit(&self.drv, &self.dpbuf)
                self.dpbuf_ok = False
            rl_drv_exit(&self.drv)
            self.ring_ok = False
            if self.wake_fd >= 0:
                c_close(self.wake_fd)
                self.wake_fd = -1

    def _at_flush(self, fn):
        """Run fn() once, at the end of this iteration's callbacks, right
        before queued sends are flushed to the kernel: protocol clients batch
        the commands of one iteration there (several hooks may be pending)."""
        self.pre_flush.append(fn)

    def _accepted(self, _ListenOp lop, int fd):
        conn = _socket.socket(lop.family, lop.stype | SOCK_NONBLOCK, lop.proto, fileno=fd)
        protocol_factory, sslcontext, server, backlog, hs_timeout, sd_timeout = lop.serve
        ctx = lop.context.copy()
        ctx.run(self._accept_connection, protocol_factory, conn, sslcontext,
                server, backlog, hs_timeout, sd_timeout)

    @cython.final
    cdef int _arm_poll(self, _PollOp op) except -1:
        cdef io_uring_sqe *sqe = self._submit(op, IORING_OP_POLL_ADD, op.fd, NULL, 0, 0)
        sqe.poll32_events = op.events
        return 0

    cdef _add_poller(self, dict table, fileobj, uint32_t events, callback, tuple args):
        cdef _PollOp op
        cdef Handle h
        cdef int fd = _fileobj_to_fd(fileobj)
        self._check_closed_c()
        h = _new_handle(self, callback, args, None)
        old = table.get(fd)
        if old is not None:
            op = <_PollOp>old
            op.handle.cancel()
            op.handle = h
            op.fileobj = fileobj
            return
        if self.sock_ops:
            _fd_claim(self, fd, None)
        op = _PollOp.__new__(_PollOp)
        op.loop = self
        op.fd = fd
        op.fileobj = fileobj
        op.events = events
        op.handle = h
        table[fd] = op
        self._arm_poll(op)

    @cython.final
    cdef bint _remove_poller(self, dict table, fileobj) except -1:
        cdef _PollOp op
        try:
            fd = _fileobj_to_fd(fileobj)
        except ValueError:
            # the object no longer has a fd (a closed socket): find its
            # registration by the object, as selectors do
            for key, old in table.items():
                if (<_PollOp>old).fileobj is fileobj:
                    fd = key
                    break
            else:
                raise
        old = table.pop(fd, None)
        if old is None:
            return False
        op = <_PollOp>old
        op.removed = True
        op.handle.cancel()
        if op.inflight:
            self._cancel_op(op)
        return True

    def _add_reader(self, fd, callback, *args):
        self._add_poller(self.readers, fd, POLLIN, callback, args)

    def _add_writer(self, fd, callback, *args):
        self._add_poller(self.writers, fd, POLLOUT, callback, args)

    def _remove_reader(self, fd):
        if self._closed:
            return False
        return self._remove_poller(self.readers, fd)

    def _remove_writer(self, fd):
        if self._closed:
            return False
        return self._remove_poller(self.writers, fd)

    def _has_reader(self, fd):
        return _fileobj_to_fd(fd) in self.readers

    def _has_writer(self, fd):
        return _fileobj_to_fd(fd) in self.writers

    @cython.final
    cdef int _arm_signal(self) except -1:
        cdef io_uring_sqe *sqe
        cdef _SignalOp op = self.sig_op
        if op is None or self.sig_rsock is None:
            return 0
        sqe = self._submit(op, IORING_OP_READ, op.fd, op.buf, 256, <uint64_t>-1)
        return 0

    def _ensure_signal_reader(self):
        """Create the signal wakeup socket pair and arm its read in the ring."""
        if self.sig_rsock is not None:
            return self.sig_wsock
        rsock, wsock = _socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        self.sig_rsock = rsock
        self.sig_wsock = wsock
        if self.sock_ops:
            _fd_claim(self, rsock.fileno(), None)
        self.sig_op = _SignalOp.__new__(_SignalOp)
        self.sig_op.loop = self
        self.sig_op.fd = rsock.fileno()
        self._arm_signal()
        return wsock

    def _close_signal_reader(self):
        if self.sig_op is not None and self.sig_op.inflight:
            self._cancel_op(self.sig_op)
        # the sockets are closed once the read has completed (or at close)

    def _handle_signal(self, sig):
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if (<Handle>handle).cancelled_:
            self.remove_signal_handler(sig)
        else:
            self._push_ready(<Handle>handle)

    def _ring_info(self):
        """Setup flags, features and probed opcodes of this loop's ring (or
        what the poll driver emulates)."""
        cdef rl_drv_info info
        if not self.ring_ok:
            return None
        rl_drv_get_info(&self.drv, &info)
        return {
            'backend': rl_drv_name(&self.drv).decode(),
            'fd': info.fd,
            'setup_flags': info.setup_flags,
            'features': info.features,
            'sq_entries': info.sq_entries,
            'cq_entries': info.cq_entries,
            'opcodes': [i for i in range(min(self.probe_len, 256)) if self.probe_ops[i]],
        }

    def _ring_stats(self):
        """Counters: operations prepared per opcode, io_uring_enter calls,
        SQEs submitted, stale completions dropped, submissions forced by a full
        SQ, loop iterations."""
        cdef rl_drv_info info
        rl_drv_get_info(&self.drv, &info)
        drv = {'enters': info.enters, 'submitted': info.submitted}
        if info.has_epoll:
            drv.update({'epoll_waits': info.epoll_waits, 'epoll_ctls': info.epoll_ctls,
                        'epoll_rebuilds': info.rebuilds, 'waiting': info.waiting})
        return {
            'backend': rl_drv_name(&self.drv).decode(),
            'ops': {i: self.op_counts[i] for i in range(64) if self.op_counts[i]},
            **drv,
            'stale_cqes': self.stale_cqes,
            'sq_full_enters': self.sq_full_enters,
            'iterations': self.iterations,
            'inflight': self.inflight,
            'enobufs': self.enobufs,
            'skipped_enters': self.skipped_enters,
            'zc_sends': self.zc_sends,
            'zc_notifs': self.zc_notifs,
        }


cdef int _fileobj_to_fd(fileobj) except -1:
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f'Invalid file object: {fileobj!r}') from None
    if fd < 0:
        raise ValueError(f'Invalid file descriptor: {fd}')
    return fd
