# The loop core: ready queue, timer heap, operation table, the ring, and the
# iteration that ties them together.
#
# Owns: the driver of one loop -- its io_uring ring, or the poll driver
# (_polldrv.h: the same SQE-in / CQE-out contract emulated with epoll) when
# io_uring is unavailable or not wanted -- every in-flight operation (each
# holds the memory the kernel may touch until its final completion), the
# ready queue and the timer heap (each a C array of strong references).
# Operations never know which driver runs them: they fill SQEs from _sqe()
# and receive completions through _dispatch(); only the few _drv_* calls
# below look at `use_poll`.
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
# Lifecycle: created with its ring; run_forever/run_until_complete any number
# of times; close() cancels every operation, waits for the kernel to finish
# with their memory (bounded), then unmaps the ring.

import os as _os
import threading as _threading
import socket as _socket
import signal as _signal
import errno as _errno
import weakref as _weakref
from asyncio import events as _events
from asyncio import futures as _futures
from asyncio import exceptions as _aexc
from asyncio.log import logger as _logger

cdef double _MAX_WAIT = 86400.0
cdef unsigned _OPCOUNT_MAX = 64

ctypedef struct TEntry:
    double when
    uint64_t seq
    PyObject *h


cdef class _Op:
    """An operation submitted to the ring. Holds everything the kernel may
    touch until its final completion (invariant 1)."""
    cdef uint64_t ud
    cdef LoopCore loop
    cdef object fut
    cdef bint inflight
    cdef bint cancelling
    cdef int fd
    cdef uint64_t epoch      # loop.sq_epoch when its SQE was queued

    cdef int complete(self, int res, uint32_t flags) except -1:
        return 0


cdef class _WakeOp(_Op):
    """A standing read on the loop's eventfd: the cross-thread wakeup."""
    cdef uint64_t value

    cdef int complete(self, int res, uint32_t flags) except -1:
        if not self.loop.closing:
            self.loop._arm_wake()
        return 0


cdef class _SignalOp(_Op):
    """A standing read on the signal wakeup socket (signal.set_wakeup_fd)."""
    cdef unsigned char buf[256]

    cdef int complete(self, int res, uint32_t flags) except -1:
        cdef int i
        loop = self.loop
        if res > 0:
            for i in range(res):
                loop._handle_signal(self.buf[i])
        if loop.closing or res == -125:  # ECANCELED
            return 0
        if res < 0 and res != -11 and res != -4:
            return 0
        loop._arm_signal()
        return 0


cdef class _PollOp(_Op):
    """add_reader/add_writer: a one-shot poll re-armed after each readiness,
    which gives asyncio's level-triggered semantics."""
    cdef Handle handle
    cdef uint32_t events
    cdef bint removed
    cdef object fileobj      # what add_reader/add_writer was given

    cdef int complete(self, int res, uint32_t flags) except -1:
        if self.removed:
            return 0
        if res == -125:  # ECANCELED
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


cdef class LoopCore:
    """The native part of ringline's event loop (see the module notes)."""
    cdef rl_ring ring
    cdef rl_polldrv pd
    cdef bint use_poll          # the poll driver runs this loop, not the ring
    cdef bint ring_ok           # the driver (either one) is set up
    cdef public unsigned max_chain_links   # longest linked chain one submission takes
    cdef public bint closing
    # ready queue (circular)
    cdef PyObject **rq
    cdef Py_ssize_t rq_head, rq_len, rq_cap
    # timer heap
    cdef TEntry *th
    cdef Py_ssize_t th_len, th_cap
    cdef uint64_t th_seq
    # operation table
    cdef PyObject **ops
    cdef uint32_t *gens
    cdef uint32_t *free_slots
    cdef uint32_t nfree, ops_cap
    cdef public Py_ssize_t inflight
    # wakeup
    cdef int wake_fd
    cdef bint waiting
    cdef bint wake_sent      # one eventfd write per wait is enough
    cdef _WakeOp wake_op
    cdef _SignalOp sig_op
    cdef object sig_rsock, sig_wsock
    # public asyncio-compatible state
    cdef public bint _closed
    cdef public bint _stopping
    cdef public bint _debug
    cdef public object _thread_id
    cdef public Py_ssize_t _timer_cancelled_count
    cdef public double slow_callback_duration
    cdef public object _current_handle
    cdef public double _clock_resolution
    cdef public dict _signal_handlers
    # bookkeeping
    cdef uint64_t op_counts[64]
    cdef public uint64_t stale_cqes
    cdef public uint64_t iterations
    cdef dict readers, writers
    cdef dict recv_stash, accept_stash
    cdef dict sock_ops              # fd -> pending sock_* operations (_fdguard.pxi)
    cdef list sock_new              # sock_* operations queued since the last submit
    cdef double sock_scan_at        # last full check of sock_ops
    cdef uint64_t sq_epoch          # driver submissions so far (see _void_queued)
    cdef list voided                # user_data of ops whose SQE was voided
    cdef unsigned char probe_ops[256]
    # streams
    cdef rl_pbuf pbuf
    cdef bint pbuf_ok
    cdef rl_pbuf dpbuf
    cdef bint dpbuf_ok
    cdef public unsigned recv_buffers
    cdef public unsigned recv_buffer_size
    cdef public Py_ssize_t write_hard_cap
    cdef list flush_list
    cdef list parked
    cdef public uint64_t enobufs
    cdef public uint64_t skipped_enters
    # bounce buffers of receive operations, kept for reuse (a fresh malloc of
    # up to 256 KiB per operation would hit glibc's mmap threshold)
    cdef char *bcache[8]
    cdef size_t bcap[8]
    cdef int bn
    cdef public Py_ssize_t send_zc_threshold
    cdef public bint zc_ok
    cdef public uint64_t zc_sends
    cdef public uint64_t zc_notifs
    cdef public int probe_len
    cdef public object conn_table   # the native API's connections (_conn.pxi)
    cdef object tick_cb             # called once per iteration (native runtime)
    cdef list pre_flush             # one-shot hooks run before the flush (_at_flush)
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        cdef int err
        self.rq_cap = 1024
        self.rq = <PyObject**>malloc(sizeof(PyObject*) * self.rq_cap)
        self.th_cap = 256
        self.th = <TEntry*>malloc(sizeof(TEntry) * self.th_cap)
        self.ops_cap = 0
        self.wake_fd = -1
        self.readers = {}
        self.writers = {}
        self.recv_stash = {}
        self.accept_stash = {}
        self.sock_ops = {}
        self.sock_new = []
        self.voided = []
        self._signal_handlers = {}
        self.flush_list = []
        self.pre_flush = []
        self.parked = []
        self.recv_buffers = 256
        self.recv_buffer_size = 32768
        self.send_zc_threshold = 1 << 62
        self.slow_callback_duration = 0.1
        self._clock_resolution = 1e-9
        memset(self.op_counts, 0, sizeof(self.op_counts))
        memset(self.probe_ops, 0, sizeof(self.probe_ops))
        if self.rq == NULL or self.th == NULL:
            raise MemoryError()
        self._grow_ops()

    def _setup_ring(self, unsigned entries=4096, unsigned mask_flags=0,
                    int fake_errno=0):
        """Create the ring and check that it has what ringline needs (the
        opcodes it uses and provided buffer rings). Raises OSError naming the
        reason when refused. fake_errno: a test hook, setup fails with it."""
        cdef int err
        cdef rl_pbuf probe_pb
        global rl_fake_setup_errno
        rl_fake_setup_errno = fake_errno
        err = rl_ring_init(&self.ring, entries, entries * 4, mask_flags)
        rl_fake_setup_errno = 0
        if err < 0:
            raise OSError(-err, f'io_uring_setup failed: {_errno.errorcode.get(-err, -err)} '
                                f'({_os.strerror(-err)})')
        self.probe_len = rl_probe(&self.ring, self.probe_ops, 256)
        if self.probe_len < 0:
            err = self.probe_len
            rl_ring_exit(&self.ring)
            raise OSError(-err, 'io_uring opcode probe failed (kernel older than 5.6): '
                                + _os.strerror(-err))
        missing = [name for name, op in (
            ('READ', IORING_OP_READ), ('RECV', IORING_OP_RECV), ('SEND', IORING_OP_SEND),
            ('ACCEPT', IORING_OP_ACCEPT), ('CONNECT', IORING_OP_CONNECT),
            ('POLL_ADD', IORING_OP_POLL_ADD), ('ASYNC_CANCEL', IORING_OP_ASYNC_CANCEL),
            ('SENDMSG', IORING_OP_SENDMSG), ('RECVMSG', IORING_OP_RECVMSG),
            ('SHUTDOWN', IORING_OP_SHUTDOWN), ('WRITE', IORING_OP_WRITE),
            ('WRITEV', IORING_OP_WRITEV))
            if op >= self.probe_len or not self.probe_ops[op]]
        if missing:
            rl_ring_exit(&self.ring)
            raise OSError(_errno.EOPNOTSUPP,
                          'io_uring lacks opcodes ringline needs: ' + ', '.join(missing))
        err = rl_pbuf_init(&self.ring, &probe_pb, 1, 64, 0)
        if err < 0:
            rl_ring_exit(&self.ring)
            raise OSError(-err, 'io_uring provided buffer rings unavailable (kernel older '
                                f'than 5.19): {_errno.errorcode.get(-err, -err)}')
        rl_pbuf_exit(&self.ring, &probe_pb)
        self.ring_ok = True
        self.max_chain_links = _max_chain_links(self.ring.sq_entries)
        self.zc_ok = (self.probe_ops[IORING_OP_SEND_ZC] != 0 and
                      self.probe_ops[IORING_OP_SENDMSG_ZC] != 0)
        self._setup_wake()

    def _setup_fake_ring(self, unsigned entries=4096):
        """Test harness: a ring with no kernel behind it (see _ring.h). The
        core runs its io_uring paths; _fake_sqes() returns what it submitted
        and _fake_complete() posts the completions the test chooses."""
        cdef int err
        if entries & (entries - 1):
            raise ValueError('entries must be a power of two')
        err = rl_ring_init_fake(&self.ring, entries, entries * 4)
        if err < 0:
            raise OSError(-err, 'fake ring setup failed')
        self.probe_len = rl_probe(&self.ring, self.probe_ops, 256)
        self.ring_ok = True
        self.max_chain_links = _max_chain_links(self.ring.sq_entries)
        self.zc_ok = True
        self._setup_wake()

    def _fake_sqes(self):
        """Test harness: the SQEs submitted since the last call, as dicts."""
        cdef unsigned i
        cdef io_uring_sqe *q
        if not self.ring.fake:
            raise RuntimeError('not a fake ring')
        out = []
        for i in range(self.ring.fake_log_len):
            q = &self.ring.fake_log[i]
            out.append({'opcode': q.opcode, 'flags': q.flags, 'fd': q.fd,
                        'addr': q.addr, 'len': q.len, 'off': q.off,
                        'msg_flags': q.msg_flags, 'user_data': q.user_data,
                        'enter': self.ring.fake_log_enter[i]})
        self.ring.fake_log_len = 0
        return out

    def _fake_complete(self, uint64_t user_data, int res, uint32_t flags=0):
        """Test harness: post one completion (reaped by the next iteration)."""
        if not self.ring.fake:
            raise RuntimeError('not a fake ring')
        if rl_fake_post(&self.ring, user_data, res, flags) < 0:
            raise RuntimeError('fake completion queue is full')

    def _queue_nops(self, unsigned n):
        """Test hook: queue n NOPs (completions ignored) in this iteration,
        as if that much other work was queued beside the caller's."""
        cdef io_uring_sqe *sqe
        cdef unsigned i
        for i in range(n):
            sqe = self._sqe(IORING_OP_NOP)
            sqe.fd = -1
            sqe.user_data = RL_UD_IGNORE

    def _fake_auto_cancel(self, bint on):
        """Test harness: whether ASYNC_CANCEL completes its target with
        -ECANCELED at once (the default) or the test posts every completion."""
        if not self.ring.fake:
            raise RuntimeError('not a fake ring')
        self.ring.fake = 1 if on else 2

    def _fake_pending_sqes(self):
        """Test harness: SQEs queued this iteration, not yet submitted."""
        return rl_sq_pending(&self.ring)

    def _setup_poll(self, unsigned entries=4096):
        """Use the poll driver (epoll) instead of a ring."""
        cdef int err
        err = rl_pd_init(&self.pd, entries)
        if err < 0:
            raise OSError(-err, 'epoll_create1 failed: ' + _os.strerror(-err))
        self.use_poll = True
        self.ring_ok = True
        self.max_chain_links = _max_chain_links(self.pd.sq_entries)
        self.probe_len = rl_pd_probe(self.probe_ops, 256)
        self.zc_ok = False
        self._setup_wake()

    cdef int _setup_wake(self) except -1:
        self.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.wake_fd < 0:
            raise _oserror(errno)
        self.wake_op = _WakeOp.__new__(_WakeOp)
        self.wake_op.loop = self
        self.wake_op.fd = self.wake_fd
        self._arm_wake()
        return 0

    # ---- the driver (io_uring ring or poll driver) ------------------------

    cdef inline io_uring_sqe *_drv_get_sqe(self) noexcept:
        if self.use_poll:
            return rl_pd_get_sqe(&self.pd)
        return rl_get_sqe(&self.ring)

    cdef inline int _drv_enter(self, unsigned wait_nr, long long timeout_ns) noexcept nogil:
        self.sq_epoch += 1
        if self.use_poll:
            return rl_pd_enter(&self.pd, wait_nr, timeout_ns)
        return rl_enter(&self.ring, wait_nr, timeout_ns)

    cdef inline unsigned _drv_reap(self, io_uring_cqe *out, unsigned max) noexcept:
        if self.use_poll:
            return rl_pd_reap(&self.pd, out, max)
        return rl_reap(&self.ring, out, max)

    cdef int _drv_pbuf_init(self, rl_pbuf *pb, unsigned nbufs, unsigned size,
                            unsigned short bgid) noexcept:
        if self.use_poll:
            return rl_pd_pbuf_init(&self.pd, pb, nbufs, size, bgid)
        return rl_pbuf_init(&self.ring, pb, nbufs, size, bgid)

    cdef void _drv_pbuf_exit(self, rl_pbuf *pb) noexcept:
        if self.use_poll:
            rl_pd_pbuf_exit(&self.pd, pb)
        else:
            rl_pbuf_exit(&self.ring, pb)

    cdef void _drv_exit(self) noexcept:
        if self.use_poll:
            rl_pd_exit(&self.pd)
        else:
            rl_ring_exit(&self.ring)

    def __dealloc__(self):
        cdef Py_ssize_t i
        self._bounce_clear()
        if self.rq != NULL:
            for i in range(self.rq_len):
                Py_XDECREF(self.rq[(self.rq_head + i) & (self.rq_cap - 1)])
            free(self.rq)
            self.rq = NULL
        if self.th != NULL:
            for i in range(self.th_len):
                Py_XDECREF(self.th[i].h)
            free(self.th)
            self.th = NULL
        if self.ring_ok and self.inflight == 0:
            self._drv_exit()
            self.ring_ok = False
        # Operations still in flight keep their memory (and the ring stays
        # mapped) rather than risk the kernel writing into freed memory.
        if self.ops != NULL and self.inflight == 0:
            free(self.ops)
            free(self.gens)
            free(self.free_slots)
            self.ops = NULL
        if self.wake_fd >= 0:
            c_close(self.wake_fd)
            self.wake_fd = -1

    # ---- operation table --------------------------------------------------

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
        cdef uint32_t *nfree = <uint32_t*>realloc(self.free_slots, sizeof(uint32_t) * newcap)
        if nfree == NULL:
            raise MemoryError()
        self.free_slots = nfree
        # new slots go on the free list highest first so low slots are used first
        for i in range(newcap - 1, self.ops_cap - 1, -1) if self.ops_cap else range(newcap - 1, -1, -1):
            self.ops[i] = NULL
            self.gens[i] = 0
            self.free_slots[self.nfree] = i
            self.nfree += 1
        self.ops_cap = newcap
        return 0

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
        Py_INCREF(op)
        self.ops[slot] = <PyObject*>op
        self.inflight += 1
        op.ud = ((<uint64_t>gen) << 32) | slot
        op.inflight = True
        op.cancelling = False
        op.epoch = self.sq_epoch
        return op.ud

    cdef io_uring_sqe *_sqe(self, int opcode) except NULL:
        cdef io_uring_sqe *sqe
        if not self.ring_ok:
            raise RuntimeError('the ring of this loop is closed')
        sqe = self._drv_get_sqe()
        if sqe == NULL:
            # SQ full within one iteration: hand the batch to the kernel now.
            self._drv_enter(0, 0)
            sqe = self._drv_get_sqe()
            if sqe == NULL:
                raise RuntimeError('io_uring submission queue is full')
        sqe.opcode = <uint8_t>opcode
        if opcode < 64:
            self.op_counts[opcode] += 1
        return sqe

    cdef inline unsigned _drv_sq_space(self) noexcept:
        if self.use_poll:
            return self.pd.sq_entries - self.pd.sq_len
        return self.ring.sq_entries - rl_sq_pending(&self.ring)

    cdef int _sq_reserve(self, unsigned n) except -1:
        """Make room for n SQEs that must reach the kernel in one submission
        (a linked chain: invariant 9). What is already queued is submitted
        first when the rest of the queue cannot hold all n, so no _sqe() call
        between this and the chain's last SQE submits a partial chain. Raises
        SubmissionQueueFull, with nothing queued, when n cannot fit."""
        if not self.ring_ok:
            raise RuntimeError('the ring of this loop is closed')
        if self._drv_sq_space() >= n:
            return 0
        self._drv_enter(0, 0)
        if self._drv_sq_space() >= n:
            return 0
        raise SubmissionQueueFull(
            f'{n} linked submissions do not fit the submission queue '
            f'({self._drv_sq_space()} of {self.ring.sq_entries if not self.use_poll else self.pd.sq_entries} free)')

    cdef int _cancel_op(self, _Op op) except -1:
        cdef io_uring_sqe *sqe
        if not op.inflight or op.cancelling or not self.ring_ok:
            return 0
        op.cancelling = True
        sqe = self._sqe(IORING_OP_ASYNC_CANCEL)
        sqe.fd = -1
        sqe.addr = op.ud
        sqe.user_data = RL_UD_IGNORE
        return 0

    cdef bint _void_queued(self, _Op op) except -1:
        """If op's SQE has not been handed to the driver yet, turn it into an
        ignored NOP: op then completes with -ECANCELED at the next reap."""
        cdef int found
        if not op.inflight or op.epoch != self.sq_epoch or not self.ring_ok:
            return False
        if self.use_poll:
            found = rl_pd_void_sqe(&self.pd, op.ud)
        else:
            found = rl_ring_void_sqe(&self.ring, op.ud)
        if not found:
            return False
        op.cancelling = True
        self.voided.append(op.ud)
        return True

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
            if self.use_poll:
                if self.pd.sq_len == 0:
                    return 0
                n = rl_pd_void_fd(&self.pd, fd, uds, 64)
            else:
                if rl_sq_pending(&self.ring) == 0:
                    return 0
                n = rl_ring_void_fd(&self.ring, fd, uds, 64)
            for i in range(n):
                self.voided.append(uds[i])
                slot = <uint32_t>(uds[i] & 0xFFFFFFFFULL)
                if slot < self.ops_cap and self.ops[slot] != NULL:
                    op = <_Op>self.ops[slot]
                    if op.ud == uds[i]:
                        op.cancelling = True
            if n < 64:
                return 0

    cdef int _cancel_for_close(self, _Op op) except -1:
        """Cancel op because its fd is about to be closed, and its number may
        be reused at once (invariant 10): an SQE still in the submission queue
        is voided, never run against whatever file gets that number."""
        if not self._void_queued(op):
            self._cancel_op(op)
        return 0

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

    cdef int _reap(self) except -1:
        cdef io_uring_cqe cqes[128]
        cdef unsigned n, i
        while True:
            n = self._drv_reap(cqes, 128)
            for i in range(n):
                self._dispatch(cqes[i].user_data, cqes[i].res, cqes[i].flags)
            if n < 128:
                break
        if self.voided:
            voided = self.voided
            self.voided = []
            for ud in voided:
                self._dispatch(ud, -125, 0)      # -ECANCELED
        return 0

    # ---- ready queue ------------------------------------------------------

    cdef int _push_ready(self, Handle h) except -1:
        cdef Py_ssize_t newcap, i
        cdef PyObject **nrq
        if self.rq_len == self.rq_cap:
            newcap = self.rq_cap * 2
            nrq = <PyObject**>malloc(sizeof(PyObject*) * newcap)
            if nrq == NULL:
                raise MemoryError()
            for i in range(self.rq_len):
                nrq[i] = self.rq[(self.rq_head + i) & (self.rq_cap - 1)]
            free(self.rq)
            self.rq = nrq
            self.rq_head = 0
            self.rq_cap = newcap
        Py_INCREF(h)
        self.rq[(self.rq_head + self.rq_len) & (self.rq_cap - 1)] = <PyObject*>h
        self.rq_len += 1
        return 0

    cdef inline PyObject *_pop_ready(self):
        # Returns a strong reference the caller owns.
        cdef PyObject *p = self.rq[self.rq_head]
        self.rq_head = (self.rq_head + 1) & (self.rq_cap - 1)
        self.rq_len -= 1
        return p

    # ---- timer heap -------------------------------------------------------

    cdef int _heap_push(self, TimerHandle h) except -1:
        cdef Py_ssize_t i, parent
        cdef TEntry e
        cdef TEntry *nth
        if self.th_len == self.th_cap:
            nth = <TEntry*>realloc(self.th, sizeof(TEntry) * self.th_cap * 2)
            if nth == NULL:
                raise MemoryError()
            self.th = nth
            self.th_cap *= 2
        Py_INCREF(h)
        e.when = h.when_
        e.seq = self.th_seq
        self.th_seq += 1
        e.h = <PyObject*>h
        i = self.th_len
        self.th_len += 1
        while i > 0:
            parent = (i - 1) >> 1
            if _tless(&e, &self.th[parent]):
                self.th[i] = self.th[parent]
                i = parent
            else:
                break
        self.th[i] = e
        h.scheduled = True
        return 0

    cdef PyObject *_heap_pop(self):
        # Removes the top entry and returns its strong reference.
        cdef PyObject *top = self.th[0].h
        cdef TEntry last
        cdef Py_ssize_t i, child, n
        self.th_len -= 1
        n = self.th_len
        if n > 0:
            last = self.th[n]
            i = 0
            while True:
                child = 2 * i + 1
                if child >= n:
                    break
                if child + 1 < n and _tless(&self.th[child + 1], &self.th[child]):
                    child += 1
                if _tless(&self.th[child], &last):
                    self.th[i] = self.th[child]
                    i = child
                else:
                    break
            self.th[i] = last
        return top

    cdef int _heap_rebuild(self) except -1:
        # Drop cancelled timers and re-heapify (Floyd).
        cdef Py_ssize_t i, j = 0, n, child, k
        cdef TEntry e
        cdef Handle h
        for i in range(self.th_len):
            h = <Handle>self.th[i].h
            if h.cancelled_:
                (<TimerHandle>h).scheduled = False
                Py_DECREF(h)
            else:
                self.th[j] = self.th[i]
                j += 1
        self.th_len = j
        n = j
        for i in range((n >> 1) - 1, -1, -1):
            e = self.th[i]
            k = i
            while True:
                child = 2 * k + 1
                if child >= n:
                    break
                if child + 1 < n and _tless(&self.th[child + 1], &self.th[child]):
                    child += 1
                if _tless(&self.th[child], &e):
                    self.th[k] = self.th[child]
                    k = child
                else:
                    break
            self.th[k] = e
        self._timer_cancelled_count = 0
        return 0

    cdef void _timer_cancelled(self, TimerHandle h):
        if h.scheduled:
            self._timer_cancelled_count += 1

    def _timer_handle_cancelled(self, handle):
        if isinstance(handle, TimerHandle) and (<TimerHandle>handle).scheduled:
            self._timer_cancelled_count += 1

    # ---- scheduling API ---------------------------------------------------

    def time(self):
        """Loop time: CLOCK_MONOTONIC seconds, as time.monotonic()."""
        return rl_monotonic()

    cdef inline int _check_closed_c(self) except -1:
        if self._closed:
            raise RuntimeError('Event loop is closed')
        return 0

    def _check_closed(self):
        if self._closed:
            raise RuntimeError('Event loop is closed')

    def call_soon(self, callback, *args, context=None):
        cdef Handle h
        if self._closed:
            raise RuntimeError('Event loop is closed')
        if self._debug:
            self._check_thread()
            self._check_callback(callback, 'call_soon')
        h = _new_handle(self, callback, args, context)
        if self._debug:
            # native methods have no frame: frame 0 is the caller's
            h.source_tb = _format_helpers.extract_stack(_sys._getframe(0))
        self._push_ready(h)
        return h

    def _call_soon(self, callback, args, context):
        cdef Handle h = _new_handle(self, callback, tuple(args), context)
        if self._debug:
            h.source_tb = _format_helpers.extract_stack(_sys._getframe(0))
        self._push_ready(h)
        return h

    def call_soon_threadsafe(self, callback, *args, context=None):
        cdef Handle h
        if self._closed:
            raise RuntimeError('Event loop is closed')
        if self._debug:
            self._check_callback(callback, 'call_soon_threadsafe')
        h = _new_handle(self, callback, args, context)
        if self._debug:
            h.source_tb = _format_helpers.extract_stack(_sys._getframe(0))
        self._push_ready(h)
        self._wake()
        return h

    def call_later(self, delay, callback, *args, context=None):
        if delay is None:
            raise TypeError('delay must not be None')
        cdef double d = delay
        return self._call_at(rl_monotonic() + d, callback, args, context, 0)

    def call_at(self, when, callback, *args, context=None):
        if when is None:
            raise TypeError('when cannot be None')
        return self._call_at(when, callback, args, context, 0)

    cdef TimerHandle _call_at(self, double when, object callback, object args,
                              object context, int depth):
        cdef TimerHandle h
        if self._closed:
            raise RuntimeError('Event loop is closed')
        if self._debug:
            self._check_thread()
            self._check_callback(callback, 'call_at')
        h = _new_timer(self, when, callback, args, context)
        if self._debug:
            # native methods have no frame: frame `depth` is the caller's
            h.source_tb = _format_helpers.extract_stack(_sys._getframe(depth))
        self._heap_push(h)
        return h

    def _add_callback(self, handle):
        if not (<Handle?>handle).cancelled_:
            self._push_ready(handle)

    def _add_callback_signalsafe(self, handle):
        self._add_callback(handle)
        self._wake()

    cdef inline void _wake(self):
        # Only while the loop is blocked, and only once per wait: later
        # callers find the loop already on its way back (the GIL orders this).
        cdef uint64_t one = 1
        if self.waiting and not self.wake_sent and self.wake_fd >= 0:
            self.wake_sent = True
            c_write(self.wake_fd, &one, 8)

    def _write_to_self(self):
        cdef uint64_t one = 1
        if self.wake_fd >= 0:
            c_write(self.wake_fd, &one, 8)

    def _check_thread(self):
        if self._thread_id is None:
            return
        if _threading.get_ident() != self._thread_id:
            raise RuntimeError(
                'Non-thread-safe operation invoked on an event loop other '
                'than the current one')

    # ---- the iteration ----------------------------------------------------

    cdef int _arm_wake(self) except -1:
        cdef io_uring_sqe *sqe = self._sqe(IORING_OP_READ)
        cdef _WakeOp op = self.wake_op
        rl_prep_rw(sqe, IORING_OP_READ, self.wake_fd, &op.value, 8, <uint64_t>-1,
                   self._reg(op))
        return 0

    cdef int _wait(self, long long timeout_ns) except -1:
        cdef int ret
        if self.sock_new:
            _sock_ops_check_new(self)
        if self.sock_ops:
            timeout_ns = _sock_ops_scan(self, timeout_ns)
        if timeout_ns == 0:
            if not self.use_poll and rl_enter_is_noop(&self.ring):
                self.skipped_enters += 1
                return 0      # nothing to submit, reap or run: skip the syscall
            ret = self._drv_enter(0, 0)
        else:
            self.waiting = True
            with nogil:
                ret = self._drv_enter(1, timeout_ns)
            self.waiting = False
            self.wake_sent = False
            # A signal that interrupted the wait is not always reported as
            # EINTR (io_uring_enter returns the number it submitted when it
            # submitted any): let Python run its handlers after every
            # blocking wait (a flag test when none is pending).
            PyErr_CheckSignals()
        if ret < 0:
            if ret == -4:  # EINTR
                PyErr_CheckSignals()
            elif ret != -62 and ret != -16 and ret != -11:  # ETIME, EBUSY, EAGAIN
                raise _oserror(-ret, ('epoll_wait' if self.use_poll else 'io_uring_enter')
                               + ' failed: ' + _os.strerror(-ret))
        return 0

    def _submit_pending(self):
        """Hand every queued SQE to the kernel now (no wait)."""
        if self.sock_new:
            _sock_ops_check_new(self)
        self._drv_enter(0, 0)

    cdef int _flush_writes(self) except -1:
        cdef list fl = self.flush_list
        self.flush_list = []
        for f in fl:
            (<_Flushable>f).flush()
        return 0

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

    cdef int _ensure_pbuf(self) except -1:
        cdef int err
        cdef unsigned n = 1
        if self.pbuf_ok:
            return 0
        while n < self.recv_buffers:
            n <<= 1
        err = self._drv_pbuf_init(&self.pbuf, n, self.recv_buffer_size, 1)
        if err < 0:
            raise _oserror(-err, 'cannot register the provided buffer ring: ' + _os.strerror(-err))
        self.pbuf_ok = True
        return 0

    cdef int _ensure_dpbuf(self) except -1:
        cdef int err
        if self.dpbuf_ok:
            return 0
        err = self._drv_pbuf_init(&self.dpbuf, 64, 65536 + 512, 2)
        if err < 0:
            raise _oserror(-err, 'cannot register the datagram buffer ring: ' + _os.strerror(-err))
        self.dpbuf_ok = True
        return 0

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

    cdef void _bounce_clear(self) noexcept:
        while self.bn > 0:
            self.bn -= 1
            free(self.bcache[self.bn])

    def _inflight_user_data(self):
        """user_data of every operation in flight (tests of invariant 2)."""
        cdef uint32_t i
        return [(<_Op>self.ops[i]).ud for i in range(self.ops_cap) if self.ops[i] != NULL]

    def _accepted(self, _ListenOp lop, int fd):
        conn = _socket.socket(lop.family, lop.stype | SOCK_NONBLOCK, lop.proto, fileno=fd)
        ctx = lop.context.copy()
        ctx.run(self._accept_connection, lop.protocol_factory, conn, lop.sslcontext,
                lop.server, lop.backlog, lop.ssl_handshake_timeout,
                lop.ssl_shutdown_timeout)

    cdef inline int _run_handle(self, Handle h) except -1:
        cdef double t0, dt
        if not self._debug:
            h._run()
            return 0
        try:
            self._current_handle = h
            t0 = rl_monotonic()
            h._run()
            dt = rl_monotonic() - t0
            if dt >= self.slow_callback_duration:
                _logger.warning('Executing %s took %.3f seconds',
                                _format_handle(h), dt)
        finally:
            self._current_handle = None
        return 0

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
        if self.flush_list:
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

    def stop(self):
        self._stopping = True

    def is_running(self):
        return self._thread_id is not None

    def is_closed(self):
        return self._closed

    def get_debug(self):
        return self._debug

    def _close_core(self):
        """Release the ready queue, timers, operations and the ring."""
        cdef Py_ssize_t i
        cdef PyObject *p
        cdef double deadline
        self.closing = True
        self._bounce_clear()
        while self.rq_len > 0:
            p = self._pop_ready()
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
                self._drv_pbuf_exit(&self.pbuf)
                self.pbuf_ok = False
            if self.dpbuf_ok:
                self._drv_pbuf_exit(&self.dpbuf)
                self.dpbuf_ok = False
            self._drv_exit()
            self.ring_ok = False
            if self.wake_fd >= 0:
                c_close(self.wake_fd)
                self.wake_fd = -1

    # ---- readers and writers (poll operations) ----------------------------

    cdef int _arm_poll(self, _PollOp op) except -1:
        cdef io_uring_sqe *sqe = self._sqe(IORING_OP_POLL_ADD)
        sqe.fd = op.fd
        sqe.poll32_events = op.events
        sqe.user_data = self._reg(op)
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

    # ---- signals (through the ring) ---------------------------------------

    cdef int _arm_signal(self) except -1:
        cdef io_uring_sqe *sqe
        cdef _SignalOp op = self.sig_op
        if op is None or self.sig_rsock is None:
            return 0
        sqe = self._sqe(IORING_OP_READ)
        rl_prep_rw(sqe, IORING_OP_READ, op.fd, op.buf, 256, <uint64_t>-1, self._reg(op))
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

    # ---- socket operations (see _sockops.pxi) -----------------------------

    cdef _recv_orphan(self, _RecvOp done, bytes data):
        """A cancelled receive completed with data: keep it for the next
        receive on that socket, and if one is already waiting (it could not
        see the stash when it started), hand it the oldest bytes now."""
        cdef _RecvOp other
        cdef uint32_t i
        cdef Py_ssize_t k
        cdef Py_buffer view
        sock = done.sock
        self._stash_recv(sock, data)
        for i in range(self.ops_cap):
            if self.ops[i] == NULL or type(<object>self.ops[i]) is not _RecvOp:
                continue
            other = <_RecvOp>self.ops[i]
            if other is done or other.sock is not sock or other.fut.done():
                continue
            chunk = self._take_stash(sock, done.fd, <Py_ssize_t>other.n)
            if chunk is None:
                return
            if other.target is None:
                other.fut.set_result(chunk)
            else:
                k = len(chunk)
                PyObject_GetBuffer(other.target, &view, PyBUF_WRITABLE)
                try:
                    if k > view.len:
                        k = view.len
                    memcpy(view.buf, PyBytes_AS_STRING(chunk), k)
                finally:
                    PyBuffer_Release(&view)
                other.target = None
                other.fut.set_result(k)
            # whatever that receive still gets from the kernel comes later
            # in the stream: its completion stashes it after these bytes
            self._cancel_op(other)
            return

    cdef _stash_recv(self, sock, data):
        key = sock.fileno()
        ent = self.recv_stash.get(key)
        if ent is not None and ent[0]() is sock:
            ent[1].extend(data)
        else:
            self.recv_stash[key] = (_weakref.ref(sock), bytearray(data))

    cdef object _take_stash(self, sock, int fd, Py_ssize_t n):
        ent = self.recv_stash.get(fd)
        if ent is None:
            return None
        if ent[0]() is not sock:
            del self.recv_stash[fd]
            return None
        buf = <bytearray>ent[1]
        data = bytes(buf[:n])
        del buf[:n]
        if not buf:
            del self.recv_stash[fd]
        return data

    cdef _stash_datagram(self, sock, bytes data, addr):
        key = ('dgram', sock.fileno())
        ent = self.recv_stash.get(key)
        if ent is not None and ent[0]() is sock:
            ent[1].append((data, addr))
        else:
            self.recv_stash[key] = (_weakref.ref(sock), [(data, addr)])

    cdef object _take_datagram(self, sock, int fd):
        key = ('dgram', fd)
        ent = self.recv_stash.get(key)
        if ent is None:
            return None
        if ent[0]() is not sock or not ent[1]:
            del self.recv_stash[key]
            return None
        item = ent[1].pop(0)
        if not ent[1]:
            del self.recv_stash[key]
        return item

    cdef _stash_accept(self, sock, int newfd):
        if self.closing:
            # the loop is closing (the stash is already cleared): nobody can
            # take this connection any more
            c_close(newfd)
            return
        key = sock.fileno()
        ent = self.accept_stash.get(key)
        if ent is not None and ent[0]() is sock:
            ent[1].append(newfd)
        else:
            if ent is not None:
                for fd in ent[1]:
                    c_close(fd)
            self.accept_stash[key] = (_weakref.ref(sock), [newfd])

    cdef object _new_future(self):
        return _futures.Future(loop=self)

    def create_future(self):
        """A new asyncio.Future attached to this loop."""
        return _futures.Future(loop=self)

    def _at_flush(self, fn):
        """Run fn() once, at the end of this iteration's callbacks, right
        before queued sends are flushed to the kernel: protocol clients batch
        the commands of one iteration there (several hooks may be pending)."""
        self.pre_flush.append(fn)

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from a non-blocking socket (RECV in the ring)."""
        cdef _RecvOp op
        cdef io_uring_sqe *sqe
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        cdef Py_ssize_t size = n
        if size < 0:
            raise ValueError('negative buffersize in recv')
        if self.recv_stash:
            data = self._take_stash(sock, fd, size)
            if data is not None:
                return data
        if size == 0:
            return b''
        if size > 262144:
            size = 262144
        op = _RecvOp.__new__(_RecvOp)
        op.loop = self
        op.fd = fd
        op.sock = sock
        op.n = size
        op.mem = self._bounce_get(size, &op.cap)
        fut = op.fut = self._new_future()
        _sock_op_queued(self, op)
        sqe = self._sqe(IORING_OP_RECV)
        rl_prep_rw(sqe, IORING_OP_RECV, fd, op.mem, <size_t>size, 0, self._reg(op))
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                data = fut.result()
                if data:
                    self._stash_recv(sock, data)
            raise

    async def sock_recv_into(self, sock, buf):
        """Receive into a writable buffer. The kernel writes into a bounce
        buffer owned by the operation; the caller's buffer is written only
        when the result is delivered, never after cancellation."""
        cdef _RecvOp op
        cdef io_uring_sqe *sqe
        cdef Py_buffer view
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        cdef Py_ssize_t size = view.len
        PyBuffer_Release(&view)
        if self.recv_stash:
            data = self._take_stash(sock, fd, size)
            if data is not None:
                memoryview(buf).cast('B')[:len(data)] = data
                return len(data)
        if size == 0:
            return 0
        if size > 262144:
            size = 262144
        op = _RecvOp.__new__(_RecvOp)
        op.loop = self
        op.fd = fd
        op.sock = sock
        op.n = size
        op.target = buf
        op.mem = self._bounce_get(size, &op.cap)
        fut = op.fut = self._new_future()
        _sock_op_queued(self, op)
        sqe = self._sqe(IORING_OP_RECV)
        rl_prep_rw(sqe, IORING_OP_RECV, fd, op.mem, <size_t>size, 0, self._reg(op))
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            op.target = None
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                nread = fut.result()
                if nread:
                    self._stash_recv(sock, bytes(memoryview(buf).cast('B')[:nread]))
            raise

    async def sock_sendall(self, sock, data):
        """Send all of data: one non-blocking send() at once, as asyncio
        does (so a close() right after the call cannot overtake the data),
        then SEND in the ring for the rest, continued after partial sends."""
        cdef _SendOp op
        cdef ssize_t sent
        cdef int err
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        op = _SendOp.__new__(_SendOp)
        PyObject_GetBuffer(data, &op.view, PyBUF_SIMPLE)
        op.has_view = True
        if op.view.len == 0:
            PyBuffer_Release(&op.view)
            op.has_view = False
            return None
        sent = c_send(fd, op.view.buf, <size_t>op.view.len, MSG_DONTWAIT | MSG_NOSIGNAL)
        if sent < 0:
            err = errno
            if err != _errno.EAGAIN and err != _errno.EINTR:
                PyBuffer_Release(&op.view)
                op.has_view = False
                raise _oserror(err)
        elif sent == op.view.len:
            PyBuffer_Release(&op.view)
            op.has_view = False
            return None
        else:
            op.offset = <size_t>sent
        op.loop = self
        op.fd = fd
        op.sock = sock
        fut = op.fut = self._new_future()
        op.submit()
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            if op.inflight:
                # the caller owns its buffer again once the cancellation
                # surfaces: wait for the kernel to let go of it (invariant 1)
                waiter = op.release_waiter = self._new_future()
                try:
                    await waiter
                except _aexc.CancelledError:
                    pass
            raise

    async def _sock_send(self, sock, data):
        """One SEND: resolves with the number of bytes the kernel took."""
        cdef _SendOp op
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        op = _SendOp.__new__(_SendOp)
        PyObject_GetBuffer(data, &op.view, PyBUF_SIMPLE)
        op.has_view = True
        if op.view.len == 0:
            PyBuffer_Release(&op.view)
            op.has_view = False
            return 0
        op.loop = self
        op.fd = fd
        op.sock = sock
        op.once = True
        fut = op.fut = self._new_future()
        op.submit()
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise

    async def sock_accept(self, sock):
        """Accept a connection: (conn, address); conn is non-blocking."""
        cdef _AcceptOp op
        cdef io_uring_sqe *sqe
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        if self.accept_stash:
            ent = self.accept_stash.get(fd)
            if ent is not None:
                if ent[0]() is sock and ent[1]:
                    newfd = ent[1].pop(0)
                    if not ent[1]:
                        del self.accept_stash[fd]
                    conn = _socket.socket(sock.family, sock.type, sock.proto, fileno=newfd)
                    conn.setblocking(False)
                    try:
                        addr = conn.getpeername()
                    except OSError:
                        addr = None
                    return conn, addr
                del self.accept_stash[fd]
        op = _AcceptOp.__new__(_AcceptOp)
        op.loop = self
        op.fd = fd
        op.sock = sock
        op.addrlen = sizeof(sockaddr_storage)
        fut = op.fut = self._new_future()
        _sock_op_queued(self, op)
        sqe = self._sqe(IORING_OP_ACCEPT)
        sqe.fd = fd
        sqe.addr = <uint64_t><uintptr_t>&op.addr
        sqe.off = <uint64_t><uintptr_t>&op.addrlen
        sqe.accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC
        sqe.user_data = self._reg(op)
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                conn, _ = fut.result()
                self._stash_accept(sock, conn.detach())
            raise

    cdef int _submit_connect(self, _ConnectOp op) except -1:
        cdef io_uring_sqe *sqe
        _sock_op_queued(self, op)
        sqe = self._sqe(IORING_OP_CONNECT)
        sqe.fd = op.fd
        sqe.addr = <uint64_t><uintptr_t>&op.addr
        sqe.off = op.addrlen
        sqe.user_data = self._reg(op)
        # Connect is handed to the kernel at once (the one exception to "one
        # io_uring_enter per iteration"): asyncio's loops call connect() when
        # sock_connect is called, and code that then blocks on the peer in the
        # same thread (e.g. listener.accept()) relies on the SYN being out.
        if self.sock_new:
            _sock_ops_check_new(self)
        self._drv_enter(0, 0)
        return 0

    async def sock_connect(self, sock, address):
        """Connect a non-blocking socket (CONNECT in the ring)."""
        cdef _ConnectOp op
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        family = sock.family
        op = _ConnectOp.__new__(_ConnectOp)
        op.loop = self
        op.fd = fd
        op.sock = sock
        alen = _build_sockaddr(family, address, &op.addr)
        if alen == 1:
            resolved = await self._ensure_resolved(
                address, family=family, type=sock.type, proto=sock.proto, loop=self)
            address = resolved[0][4]
            alen = _build_sockaddr(family, address, &op.addr)
            if alen == 1:
                raise OSError(_errno.EINVAL, f'cannot encode address {address!r}')
        op.addrlen = alen
        op.address = address
        fut = op.fut = self._new_future()
        self._submit_connect(op)
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise

    cdef _MsgOp _recvmsg_op(self, sock, int fd, Py_ssize_t size):
        cdef _MsgOp op = _MsgOp.__new__(_MsgOp)
        op.loop = self
        op.fd = fd
        op.sock = sock
        op.mem = self._bounce_get(size, &op.cap)
        op.iov.iov_base = op.mem
        op.iov.iov_len = size
        op.msg.msg_name = &op.addr
        op.msg.msg_iov = &op.iov
        op.msg.msg_iovlen = 1
        op.fut = self._new_future()
        op.submit_recv()
        return op

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram: (data, address) (RECVMSG in the ring)."""
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        cdef Py_ssize_t size = bufsize
        if size < 0:
            raise ValueError('negative buffersize in recvfrom')
        if self.recv_stash:
            item = self._take_datagram(sock, fd)
            if item is not None:
                return (item[0][:size], item[1])
        op = self._recvmsg_op(sock, fd, size)
        try:
            return await op.fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into buf: (nbytes, address)."""
        cdef Py_buffer view
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        cdef Py_ssize_t size = view.len
        PyBuffer_Release(&view)
        if nbytes:
            if nbytes < 0:
                raise ValueError('negative buffersize in recvfrom_into')
            if nbytes > size:
                raise ValueError('nbytes is greater than the length of the buffer')
            size = nbytes
        if self.recv_stash:
            item = self._take_datagram(sock, fd)
            if item is not None:
                data = item[0][:size]
                memoryview(buf).cast('B')[:len(data)] = data
                return (len(data), item[1])
        op = self._recvmsg_op(sock, fd, size)
        op.target = buf
        try:
            return await op.fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            op.target = None
            raise

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to address (SENDMSG in the ring)."""
        cdef _MsgOp op
        cdef io_uring_sqe *sqe
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        cdef int family = _sock_family(sock, fd)
        op = _MsgOp.__new__(_MsgOp)
        op.loop = self
        op.fd = fd
        op.sock = sock
        op.is_send = True
        alen = _build_sockaddr(family, address, &op.addr)
        if alen == 1:
            resolved = await self._ensure_resolved(
                address, family=family, type=_socket.SOCK_DGRAM, proto=0, loop=self)
            address = resolved[0][4]
            alen = _build_sockaddr(family, address, &op.addr)
        PyObject_GetBuffer(data, &op.view, PyBUF_SIMPLE)
        op.has_view = True
        op.iov.iov_base = op.view.buf
        op.iov.iov_len = op.view.len
        op.msg.msg_name = &op.addr
        op.msg.msg_namelen = alen
        op.msg.msg_iov = &op.iov
        op.msg.msg_iovlen = 1
        fut = op.fut = self._new_future()
        _sock_op_queued(self, op)
        sqe = self._sqe(IORING_OP_SENDMSG)
        rl_prep_rw(sqe, IORING_OP_SENDMSG, fd, &op.msg, 1, 0, self._reg(op))
        sqe.msg_flags = MSG_NOSIGNAL
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise

    async def _file_read(self, int fd, Py_ssize_t n, uint64_t offset):
        """Read up to n bytes of a file at offset (READ in the ring)."""
        cdef _ReadOp op = _ReadOp.__new__(_ReadOp)
        cdef io_uring_sqe *sqe
        if self.sock_ops:
            _fd_claim(self, fd, None)
        op.loop = self
        op.fd = fd
        op.n = n
        op.mem = self._bounce_get(n, &op.cap)
        fut = op.fut = self._new_future()
        sqe = self._sqe(IORING_OP_READ)
        rl_prep_rw(sqe, IORING_OP_READ, fd, op.mem, <size_t>n, offset, self._reg(op))
        try:
            res = await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise
        data = op.mem[:res]
        self._bounce_put(op.mem, op.cap)      # completed: the kernel is done
        op.mem = NULL
        return data

    # ---- introspection ----------------------------------------------------

    def _ring_info(self):
        """Setup flags, features and probed opcodes of this loop's ring (or
        what the poll driver emulates)."""
        if not self.ring_ok:
            return None
        ops = [i for i in range(min(self.probe_len, 256)) if self.probe_ops[i]]
        if self.use_poll:
            return {
                'backend': 'poll',
                'fd': self.pd.epfd,
                'setup_flags': 0,
                'features': 0,
                'sq_entries': self.pd.sq_entries,
                'cq_entries': self.pd.cq_cap,
                'opcodes': ops,
            }
        return {
            'backend': 'io_uring',
            'fd': self.ring.fd,
            'setup_flags': self.ring.setup_flags,
            'features': self.ring.features,
            'sq_entries': self.ring.sq_entries,
            'cq_entries': self.ring.cq_entries,
            'opcodes': ops,
        }

    def _ring_stats(self):
        """Counters: operations prepared per opcode, io_uring_enter calls,
        SQEs submitted, stale completions dropped, loop iterations."""
        if self.use_poll:
            drv = {'enters': self.pd.enters, 'submitted': self.pd.submitted,
                   'epoll_waits': self.pd.epoll_waits, 'epoll_ctls': self.pd.epoll_ctls,
                   'epoll_rebuilds': self.pd.rebuilds, 'waiting': self.pd.waiting}
        else:
            drv = {'enters': self.ring.enters, 'submitted': self.ring.submitted}
        return {
            'backend': 'poll' if self.use_poll else 'io_uring',
            'ops': {i: self.op_counts[i] for i in range(64) if self.op_counts[i]},
            **drv,
            'stale_cqes': self.stale_cqes,
            'iterations': self.iterations,
            'inflight': self.inflight,
            'enobufs': self.enobufs,
            'skipped_enters': self.skipped_enters,
            'zc_sends': self.zc_sends,
            'zc_notifs': self.zc_notifs,
        }

    def _sock_ops_pending(self):
        """sock_* operations filed in the fd registry (tests of invariant 10)."""
        return sum([len(_fd_ops(self, fd)) for fd in self.sock_ops])

    def _inject_cqe(self, uint64_t ud, int res, uint32_t flags=0):
        """Feed a synthetic completion (tests of the dispatch logic)."""
        self._dispatch(ud, res, flags)


cdef inline bint _tless(TEntry *a, TEntry *b):
    if a.when < b.when:
        return True
    if a.when > b.when:
        return False
    return a.seq < b.seq


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


def _format_handle(handle):
    cb = handle._callback
    if isinstance(getattr(cb, '__self__', None), _asyncio_tasks.Task):
        return repr(cb.__self__)
    return str(handle)
