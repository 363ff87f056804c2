# _loop/ops.pxi -- operations, the operation table and the driver calls.
#
# Owns: _Op (the base of every operation: whatever the kernel may touch
# until the final completion, invariant 1), the loop's eventfd read
# (_WakeOp), and _LoopOps, the second class of the loop core's chain
# (_LoopSched -> _LoopOps -> _LoopSock -> LoopCore): the driver (an io_uring
# ring, or the poll driver of polldrv.h that emulates the same SQE-in /
# CQE-out contract with epoll), the operation table, the provided buffer
# rings and the cache of bounce buffers.
#
# Lifecycle of an operation: created by its owner (a stream, a sock_* call,
# a connection slot, ...), registered and queued by _submit() (one table
# slot, a generation-checked token in user_data, one strong reference held
# by the table), completed by _dispatch() (the reference dropped at the
# final completion: a CQE without IORING_CQE_F_MORE), cancelled by
# _cancel_op() (ASYNC_CANCEL), or voided while its SQE is still queued
# (_void_queued / _void_fd: it completes with -ECANCELED at the next reap).
#
# Invariants: user_data = generation << 32 | slot; a completion whose
# generation does not match its slot's is stale and dropped (counted in
# stale_cqes); `inflight` is the number of table slots in use; the driver
# is only released when nothing is in flight (the kernel may still write
# into an operation's memory until then). Operations never know which
# driver runs them: they fill SQEs from _submit() and receive completions
# through _dispatch(); which driver runs is _c/driver.h's business (a
# capability bit in drv.caps says what it can do).

cdef inline object _oserror(int err, str msg=None):
    if msg is None:
        msg = _os.strerror(err)
    return OSError(err, msg)


class SubmissionQueueFull(RuntimeError):
    """A group of linked submissions could not be placed in the submission
    queue whole; nothing of it was queued."""


cdef unsigned _max_chain_links(unsigned sq_entries) noexcept:
    # a chain takes at most a quarter of the SQ, so the rest of an
    # iteration's work still fits beside it (and it always fits after one
    # submit of what was queued before it)
    cdef unsigned n = sq_entries // 4
    return n if n >= 1 else 1


cdef class _Op:
    """An operation submitted to the ring. Holds everything the kernel may
    touch until its final completion (invariant 1)."""

    cdef int complete(self, int res, uint32_t flags) except -1:
        return 0


cdef class _WakeOp(_Op):
    """A standing read on the loop's eventfd: the cross-thread wakeup."""

    cdef int complete(self, int res, uint32_t flags) except -1:
        if not self.loop.closing:
            self.loop._arm_wake()
        return 0


cdef class _LoopOps(_LoopSched):
    """The driver and the operation table (see the file notes)."""

    def __cinit__(self, *args, **kwargs):
        self.ops_cap = 0
        self.voided = []
        self.recv_buffers = 256
        self.recv_buffer_size = 32768
        memset(self.op_counts, 0, sizeof(self.op_counts))
        memset(self.probe_ops, 0, sizeof(self.probe_ops))
        self._grow_ops()

    def __dealloc__(self):
        self._bounce_clear()
        if self.ring_ok and self.inflight == 0:
            rl_drv_exit(&self.drv)
            self.ring_ok = False
        # Operations still in flight keep their memory (and the ring stays
        # mapped) rather than risk the kernel writing into freed memory.
        if self.ops != NULL and self.inflight == 0:
            free(self.ops)
            free(self.gens)
            free(self.quiet)
            free(self.free_slots)
            self.ops = NULL

    def _setup_ring(self, unsigned entries=4096, unsigned mask_flags=0,
                    int fake_errno=0):
        """Create the ring and check that it has what ringline needs (the
        opcodes it uses and provided buffer rings). Raises OSError naming the
        reason when refused. fake_errno: a test hook, setup fails with it."""
        cdef int err
        cdef rl_pbuf probe_pb
        global rl_fake_setup_errno
        rl_fake_setup_errno = fake_errno
        err = rl_drv_init_ring(&self.drv, entries, entries * 4, mask_flags)
        rl_fake_setup_errno = 0
        if err < 0:
            raise OSError(-err, f'io_uring_setup failed: {_errno.errorcode.get(-err, -err)} '
                                f'({_os.strerror(-err)})')
        self.probe_len = rl_drv_probe(&self.drv, self.probe_ops, 256)
        if self.probe_len < 0:
            err = self.probe_len
            rl_drv_exit(&self.drv)
            raise OSError(-err, 'io_uring opcode probe failed (kernel older than 5.6): '
                                + _os.strerror(-err))
        missing = [name for name, op in (
            ('READ', IORING_OP_READ), ('RECV', IORING_OP_RECV), ('SEND', IORING_OP_SEND),
            ('ACCEPT', IORING_OP_ACCEPT), ('CONNECT', IORING_OP_CONNECT),
            ('POLL_ADD', IORING_OP_POLL_ADD), ('ASYNC_CANCEL', IORING_OP_ASYNC_CANCEL),
            ('SENDMSG', IORING_OP_SENDMSG), ('RECVMSG', IORING_OP_RECVMSG),
            ('WRITE', IORING_OP_WRITE),
            ('WRITEV', IORING_OP_WRITEV))
            if op >= self.probe_len or not self.probe_ops[op]]
        if missing:
            rl_drv_exit(&self.drv)
            raise OSError(_errno.EOPNOTSUPP,
                          'io_uring lacks opcodes ringline needs: ' + ', '.join(missing))
        err = rl_drv_pbuf_init(&self.drv, &probe_pb, 1, 64, 0)
        if err < 0:
            rl_drv_exit(&self.drv)
            raise OSError(-err, 'io_uring provided buffer rings unavailable (kernel older '
                                f'than 5.19): {_errno.errorcode.get(-err, -err)}')
        rl_drv_pbuf_exit(&self.drv, &probe_pb)
        self.ring_ok = True
        self.max_chain_links = _max_chain_links(rl_drv_sq_entries(&self.drv))
        self.zc_ok = (self.probe_ops[IORING_OP_SEND_ZC] != 0 and
                      self.probe_ops[IORING_OP_SENDMSG_ZC] != 0)
        self._setup_wake()

    def _setup_fake_ring(self, unsigned entries=4096):
        """Test harness: a ring with no kernel behind it (see _c/ring.h). The
        core runs its io_uring paths; _fake_sqes() returns what it submitted
        and _fake_complete() posts the completions the test chooses."""
        cdef int err
        if entries & (entries - 1):
            raise ValueError('entries must be a power of two')
        err = rl_drv_init_fake(&self.drv, entries, entries * 4)
        if err < 0:
            raise OSError(-err, 'fake ring setup failed')
        self.probe_len = rl_drv_probe(&self.drv, self.probe_ops, 256)
        self.ring_ok = True
        self.max_chain_links = _max_chain_links(rl_drv_sq_entries(&self.drv))
        self.zc_ok = True
        self._setup_wake()

    def _fake_sqes(self):
        """Test harness: the SQEs submitted since the last call, as dicts."""
        cdef unsigned i
        cdef io_uring_sqe *q
        if not self.drv.ring.fake:
            raise RuntimeError('not a fake ring')
        out = []
        for i in range(self.drv.ring.fake_log_len):
            q = &self.drv.ring.fake_log[i]
            out.append({'opcode': q.opcode, 'flags': q.flags, 'fd': q.fd,
                        'addr': q.addr, 'len': q.len, 'off': q.off,
                        'msg_flags': q.msg_flags, 'user_data': q.user_data,
                        'enter': self.drv.ring.fake_log_enter[i]})
        self.drv.ring.fake_log_len = 0
        return out

    def _fake_complete(self, uint64_t user_data, int res, uint32_t flags=0):
        """Test harness: post one completion (reaped by the next iteration)."""
        if not self.drv.ring.fake:
            raise RuntimeError('not a fake ring')
        if rl_fake_post(&self.drv.ring, user_data, res, flags) < 0:
            raise RuntimeError('fake completion queue is full')

    def _fake_script_waits(self, results):
        """Test harness: the results of the next waits that submit nothing
        (negative errno values: -EINTR, -ETIME, ...), in order; at most 8."""
        cdef unsigned i
        if not self.drv.ring.fake:
            raise RuntimeError('not a fake ring')
        results = list(results)
        if self.drv.ring.fake_wait_n + len(results) > 8:
            raise ValueError('at most 8 scripted wait results')
        for r in results:
            self.drv.ring.fake_wait_res[self.drv.ring.fake_wait_n] = r
            self.drv.ring.fake_wait_n += 1

    def _fake_waits(self):
        """Test harness: (enters that asked to wait so far, the timeout in ns
        the last of them gave (< 0: none), scripted results not used yet)."""
        if not self.drv.ring.fake:
            raise RuntimeError('not a fake ring')
        return (self.drv.ring.fake_waits, self.drv.ring.fake_wait_timeout_ns,
                self.drv.ring.fake_wait_n)

    def _queue_nops(self, unsigned n):
        """Test hook: queue n NOPs (completions ignored) in this iteration,
        as if that much other work was queued beside the caller's."""
        cdef io_uring_sqe *sqe
        cdef unsigned i
        for i in range(n):
            self._submit(None, IORING_OP_NOP, -1, NULL, 0, 0)

    def _fake_auto_cancel(self, bint on):
        """Test harness: whether ASYNC_CANCEL completes its target with
        -ECANCELED at once (the default) or the test posts every completion."""
        if not self.drv.ring.fake:
            raise RuntimeError('not a fake ring')
        self.drv.ring.fake = 1 if on else 2

    def _fake_pending_sqes(self):
        """Test harness: SQEs queued this iteration, not yet submitted."""
        return rl_sq_pending(&self.drv.ring)

    def _setup_poll(self, unsigned entries=4096):
        """Use the poll driver (epoll) instead of a ring."""
        cdef int err
        err = rl_drv_init_poll(&self.drv, entries)
        if err < 0:
            raise OSError(-err, 'epoll_create1 failed: ' + _os.strerror(-err))
        self.ring_ok = True
        self.max_chain_links = _max_chain_links(rl_drv_sq_entries(&self.drv))
        self.probe_len = rl_drv_probe(&self.drv, self.probe_ops, 256)
        self.zc_ok = False
        self._setup_wake()

    @cython.final
    cdef int _setup_wake(self) except -1:
        self.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.wake_fd < 0:
            raise _oserror(errno)
        self.wake_op = _WakeOp.__new__(_WakeOp)
        self.wake_op.loop = <LoopCore>self
        self.wake_op.fd = self.wake_fd
        self._arm_wake()
        return 0

    @cython.final
    cdef int _arm_wake(self) except -1:
        cdef _WakeOp op = self.wake_op
        self._submit(op, IORING_OP_READ, self.wake_fd, &op.value, 8, <uint64_t>-1)
        return 0

    @cython.final
    cdef inline int _drv_enter(self, unsigned wait_nr, long long timeout_ns) noexcept nogil:
        # every submission goes through here: sq_epoch counts them
        self.sq_epoch += 1
        return rl_drv_enter(&self.drv, wait_nr, timeout_ns)

    @cython.final
    cdef int _grow_ops(self) except -1:
        cdef uint32_t newcap = self.ops_cap * 2 if self.ops_cap else 1024
        cdef uint32_t i
        cdef PyObject **nops = <PyObject**>realloc(self.ops, sizeof(PyObject*) * newcap)
        if nops == NULL:
            raise MemoryError()
        self.ops = nops
        cdef uint32_t *ngens = <uint32_t*>realloc(self.gens, sizeof(uint32_t) * newcap)
        if ngens == NULL:
            raise MemoryError()
        self.gens = ngens
        cdef int32_t *nquiet = <int32_t*>realloc(self.quiet, sizeof(int32_t) * newcap)
        if nquiet == NULL:
            raise MemoryError()
        self.quiet = nquiet
        cdef uint32_t *nfree = <uint32_t*>realloc(self.free_slots, sizeof(uint32_t) * newcap)
        if nfree == NULL:
            raise MemoryError()
        self.free_slots = nfree
        # new slots go on the free list highest first so low slots are used first
        for i in range(newcap - 1, self.ops_cap - 1, -1) if self.ops_cap else range(newcap - 1, -1, -1):
            self.ops[i] = NULL
            self.gens[i] = 0
            self.quiet[i] = -1
            self.free_slots[self.nfree] = i
            self.nfree += 1
        self.ops_cap = newcap
        return 0

    @cython.final
    cdef uint64_t _reg(self, _Op op) except 0:
        cdef uint32_t slot, gen
        if self.nfree == 0:
            self._grow_ops()
        self.nfree -= 1
        slot = self.free_slots[self.nfree]
        gen = self.gens[slot] + 1
        if gen == 0xFFFFFFFF or gen == 0:
            gen = 1
        self.gens[slot] = gen
        self.quiet[slot] = -1
        Py_INCREF(op)
        self.ops[slot] = <PyObject*>op
        self.inflight += 1
        op.ud = ((<uint64_t>gen) << 32) | slot
        op.inflight = True
        op.cancelling = False
        op.epoch = self.sq_epoch
        return op.ud

    @cython.final
    cdef inline void _mark_quiet(self, _Op op, Py_ssize_t res):
        # op's completion with this result needs no loop turn of its own:
        # the wait that follows goes on past it (rl_drv_wait, _c/driver.h).
        # Only for the wait right after the flush that queued op (before_wait:
        # no Python code runs in between that could start waiting on it), or
        # for an op whose completion is always followed by one of another op
        # (a file write linked to its sync: fileops.pxi); the marks are
        # cleared when that wait returns (_clear_quiet).
        cdef uint32_t slot
        if res <= 0 or res > 0x7FFFFFFF or self.nquiet >= 64:
            return
        slot = <uint32_t>(op.ud & 0xFFFFFFFFULL)
        self.quiet[slot] = <int32_t>res
        self.quiet_slots[self.nquiet] = slot
        self.nquiet += 1

    @cython.final
    cdef inline void _clear_quiet(self):
        cdef int i
        for i in range(self.nquiet):
            self.quiet[self.quiet_slots[i]] = -1
        self.nquiet = 0

    @cython.final
    cdef io_uring_sqe *_sqe(self, int opcode) except NULL:
        cdef io_uring_sqe *sqe
        if not self.ring_ok:
            raise RuntimeError('the ring of this loop is closed')
        sqe = rl_drv_get_sqe(&self.drv)
        if sqe == NULL:
            # SQ full within one iteration: hand the batch to the kernel now.
            self.sq_full_enters += 1
            self._drv_enter(0, 0)
            sqe = rl_drv_get_sqe(&self.drv)
            if sqe == NULL:
                raise RuntimeError('io_uring submission queue is full')
        sqe.opcode = <uint8_t>opcode
        if opcode < 64:
            self.op_counts[opcode] += 1
        return sqe

    @cython.final
    cdef inline io_uring_sqe *_submit(self, _Op op, int opcode, int fd, const void *addr,
                                      size_t length, uint64_t off) except NULL:
        """Queue one SQE: opcode on fd with its address, length (clamped to
        RL_MAX_IO_LEN) and offset, registered to op (None: a completion that
        nobody waits for, RL_UD_IGNORE). Returns the SQE for the fields only
        some opcodes use (msg_flags, ioprio, flags, buf_group, ...). The one
        place operations are queued: the SQE first (a full SQ submits what is
        queued), then the registration (op.epoch is the submission the SQE
        goes out with)."""
        cdef io_uring_sqe *sqe = self._sqe(opcode)
        rl_prep_rw(sqe, opcode, fd, addr, length, off,
                   RL_UD_IGNORE if op is None else self._reg(op))
        return sqe

    @cython.final
    cdef int _sq_reserve(self, unsigned n) except -1:
        """Make room for n SQEs that must reach the kernel in one submission
        (a linked chain: invariant 9). What is already queued is submitted
        first when the rest of the queue cannot hold all n, so no _sqe() call
        between this and the chain's last SQE submits a partial chain. Raises
        SubmissionQueueFull, with nothing queued, when n cannot fit."""
        if not self.ring_ok:
            raise RuntimeError('the ring of this loop is closed')
        cdef unsigned size = rl_drv_sq_entries(&self.drv)
        if size - rl_drv_sq_pending(&self.drv) >= n:
            return 0
        self._drv_enter(0, 0)
        if size - rl_drv_sq_pending(&self.drv) >= n:
            return 0
        raise SubmissionQueueFull(
            f'{n} linked submissions do not fit the submission queue '
            f'({size - rl_drv_sq_pending(&self.drv)} of {size} free)')

    @cython.final
    cdef int _cancel_op(self, _Op op) except -1:
        cdef io_uring_sqe *sqe
        if not op.inflight or op.cancelling or not self.ring_ok:
            return 0
        op.cancelling = True
        self._submit(None, IORING_OP_ASYNC_CANCEL, -1, <void*><uintptr_t>op.ud, 0, 0)
        return 0

    @cython.final
    cdef bint _void_queued(self, _Op op) except -1:
        """If op's SQE has not been handed to the driver yet, turn it into an
        ignored NOP: op then completes with -ECANCELED at the next reap."""
        cdef int found
        if not op.inflight or op.epoch != self.sq_epoch or not self.ring_ok:
            return False
        found = rl_drv_void_sqe(&self.drv, op.ud)
        if not found:
            return False
        op.cancelling = True
        self.voided.append(op.ud)
        return True

    @cython.final
    cdef int _void_fd(self, int fd) except -1:
        """fd's owner is about to close it, and the number may be reused at
        once (invariant 10): every SQE on fd still in the submission queue is
        voided, never run against the next file with that number; their
        operations complete with -ECANCELED at the next reap. Operations
        already submitted are cancelled by the caller as usual."""
        cdef uint64_t uds[64]
        cdef unsigned n, i
        cdef uint32_t slot
        cdef _Op op
        if not self.ring_ok:
            return 0
        while True:
            if rl_drv_sq_pending(&self.drv) == 0:
                return 0
            n = rl_drv_void_fd(&self.drv, fd, uds, 64)
            for i in range(n):
                self.voided.append(uds[i])
                slot = <uint32_t>(uds[i] & 0xFFFFFFFFULL)
                if slot < self.ops_cap and self.ops[slot] != NULL:
                    op = <_Op>self.ops[slot]
                    if op.ud == uds[i]:
                        op.cancelling = True
            if n < 64:
                return 0

    @cython.final
    cdef int _cancel_for_close(self, _Op op) except -1:
        """Cancel op because its fd is about to be closed, and its number may
        be reused at once (invariant 10): an SQE still in the submission queue
        is voided, never run against whatever file gets that number."""
        if not self._void_queued(op):
            self._cancel_op(op)
        return 0

    @cython.final
    cdef inline int _dispatch(self, uint64_t ud, int res, uint32_t flags) except -1:
        cdef uint32_t slot, gen
        cdef _Op op
        if ud == RL_UD_IGNORE:
            return 0
        slot = <uint32_t>(ud & 0xFFFFFFFFULL)
        gen = <uint32_t>(ud >> 32)
        if slot >= self.ops_cap or self.gens[slot] != gen or self.ops[slot] == NULL:
            self.stale_cqes += 1
            return 0
        op = <_Op>self.ops[slot]
        if not (flags & IORING_CQE_F_MORE):
            self.ops[slot] = NULL
            self.free_slots[self.nfree] = slot
            self.nfree += 1
            self.inflight -= 1
            op.inflight = False
            Py_DECREF(op)
        if self._closed and op.fut is not None:
            # close() drains the operations it cancelled: an awaiting
            # sock_*() call stays pending, as on asyncio (resolving its
            # future now could only fail: the loop is closed); the op's
            # memory is released with the op
            if res >= 0 and isinstance(op, _AcceptOp):
                c_close(res)
            return 0
        try:
            op.complete(res, flags)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.call_exception_handler({
                'message': 'Exception in a ringline completion handler',
                'exception': exc,
            })
        return 0

    @cython.final
    cdef int _reap(self) except -1:
        cdef io_uring_cqe cqes[128]
        cdef unsigned n, i
        while True:
            n = rl_drv_reap(&self.drv, cqes, 128)
            for i in range(n):
                self._dispatch(cqes[i].user_data, cqes[i].res, cqes[i].flags)
            if n < 128:
                break
        if self.voided:
            voided = self.voided
            self.voided = []
            for ud in voided:
                self._dispatch(ud, -ECANCELED, 0)
        return 0

    @cython.final
    cdef int _ensure_pbuf(self) except -1:
        cdef int err
        cdef unsigned n = 1
        if self.pbuf_ok:
            return 0
        while n < self.recv_buffers:
            n <<= 1
        err = rl_drv_pbuf_init(&self.drv, &self.pbuf, n, self.recv_buffer_size, 1)
        if err < 0:
            raise _oserror(-err, 'cannot register the provided buffer ring: ' + _os.strerror(-err))
        self.pbuf_ok = True
        return 0

    @cython.final
    cdef int _ensure_dpbuf(self) except -1:
        cdef int err
        if self.dpbuf_ok:
            return 0
        err = rl_drv_pbuf_init(&self.drv, &self.dpbuf, 64, 65536 + 512, 2)
        if err < 0:
            raise _oserror(-err, 'cannot register the datagram buffer ring: ' + _os.strerror(-err))
        self.dpbuf_ok = True
        return 0

    @cython.final
    cdef char *_bounce_get(self, size_t size, size_t *cap) except NULL:
        cdef int i
        cdef char *p
        if size == 0:
            size = 1
        for i in range(self.bn):
            if self.bcap[i] >= size and self.bcap[i] <= 4 * size + 4096:
                p = self.bcache[i]
                cap[0] = self.bcap[i]
                self.bn -= 1
                self.bcache[i] = self.bcache[self.bn]
                self.bcap[i] = self.bcap[self.bn]
                return p
        p = <char*>malloc(size)
        if p == NULL:
            raise MemoryError()
        cap[0] = size
        return p

    @cython.final
    cdef void _bounce_put(self, char *p, size_t cap) noexcept:
        # only called at an operation's final completion: the kernel is done
        if p == NULL:
            return
        if self.closing or self.bn >= 8:
            free(p)
            return
        self.bcache[self.bn] = p
        self.bcap[self.bn] = cap
        self.bn += 1

    @cython.final
    cdef void _bounce_clear(self) noexcept:
        while self.bn > 0:
            self.bn -= 1
            free(self.bcache[self.bn])

    def _inflight_user_data(self):
        """user_data of every operation in flight (tests of invariant 2)."""
        cdef uint32_t i
        return [(<_Op>self.ops[i]).ud for i in range(self.ops_cap) if self.ops[i] != NULL]

    def _inject_cqe(self, uint64_t ud, int res, uint32_t flags=0):
        """Feed a synthetic completion (tests of the dispatch logic)."""
        self._dispatch(ud, res, flags)
