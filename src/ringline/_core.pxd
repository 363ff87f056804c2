# ringline._core: the declarations of every extension type of the native
# core, apart from their bodies (which live in the .pxi files _core.pyx
# includes, named in the section headers below).
#
# Reading order: the driver layer (_c/), then the loop core's class chain
#   _LoopSched (sched.pxi: ready queue, timer heap, call_* API)
#     -> _LoopOps (ops.pxi: driver, operation table, dispatch)
#       -> _LoopSock (sockapi.pxi: sock_* API, stashes)
#         -> LoopCore (iteration.pxi: the loop turn, readers/writers, signals)
# then the operations and transports over it (_loop/), then the native
# connection API (_conn/). Every operation is an _Op: it holds whatever the
# kernel may touch until its final completion (invariant 1).

cimport cython

include "_c/decl.pxi"


ctypedef struct TEntry:         # a timer heap entry
    double when
    uint64_t seq                # scheduling order: ties run first-come
    PyObject *h                 # the TimerHandle (one strong reference)

ctypedef struct _rl_timespec:   # struct __kernel_timespec (LINK_TIMEOUT)
    int64_t tv_sec
    long long tv_nsec


# ---- _loop/sched.pxi ---------------------------------------------------------

cdef class Handle:
    cdef object callback
    cdef object args
    cdef object context         # None: the loop's shared empty one (sched.pxi)
    cdef _LoopSched loop
    cdef bint cancelled_
    cdef object source_tb
    cdef object repr_cache
    cdef bint is_timer
    cdef object __weakref__     # asyncio.Handle is weak-referenceable
    @cython.final
    cdef inline int _run(self) except -1
    @cython.final
    cdef object _own_context(self)
    @cython.final
    cdef int _report(self, object exc, object cb, object args) except -1

cdef class TimerHandle(Handle):
    cdef double when_
    cdef bint scheduled      # currently in the loop's timer heap
    @cython.final
    cdef bint __eq_(self, TimerHandle o)

cdef class _LoopSched:
    # ready queue (circular): rq[(rq_head + i) & (rq_cap - 1)], one reference each
    cdef PyObject **rq
    cdef Py_ssize_t rq_head, rq_len, rq_cap
    # timer heap, ordered by (when, seq)
    cdef TEntry *th
    cdef Py_ssize_t th_len, th_cap
    cdef uint64_t th_seq
    # wakeup of a blocked wait (call_soon_threadsafe)
    cdef int wake_fd
    cdef bint waiting
    cdef bint wake_sent      # one eventfd write per wait is enough
    # shared empty context (sched.pxi): empty whenever a handle enters it
    cdef object ectx
    cdef PyObject *ectx_user  # the handle running in ectx (borrowed), or NULL
    # public asyncio-compatible state
    cdef public bint _closed
    cdef public bint _stopping
    cdef public bint _debug
    cdef public object _thread_id
    cdef public Py_ssize_t _timer_cancelled_count
    cdef public double slow_callback_duration
    cdef public object _current_handle
    cdef public double _clock_resolution
    cdef object __weakref__
    @cython.final
    cdef int _push_ready(self, Handle h) except -1
    @cython.final
    cdef inline PyObject *_pop_ready(self)
    @cython.final
    cdef int _heap_push(self, TimerHandle h) except -1
    @cython.final
    cdef PyObject *_heap_pop(self)
    @cython.final
    cdef int _heap_rebuild(self) except -1
    @cython.final
    cdef void _timer_cancelled(self, TimerHandle h)
    @cython.final
    cdef inline int _check_closed_c(self) except -1
    @cython.final
    cdef TimerHandle _call_at(self, double when, object callback, object args, object context, int depth)
    @cython.final
    cdef inline void _wake(self)
    @cython.final
    cdef inline int _run_handle(self, Handle h) except -1
    @cython.final
    cdef object _new_future(self)


# ---- _loop/ops.pxi -----------------------------------------------------------

cdef class _Op:
    cdef uint64_t ud
    cdef LoopCore loop
    cdef object fut
    cdef bint inflight
    cdef bint cancelling
    cdef int fd
    cdef uint64_t epoch      # loop.sq_epoch when its SQE was queued
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _WakeOp(_Op):
    cdef uint64_t value
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _LoopOps(_LoopSched):
    cdef rl_driver drv          # the driver (_c/driver.h): ring or poll, and its caps
    cdef bint ring_ok           # the driver is set up
    cdef public unsigned max_chain_links   # longest linked chain one submission takes
    cdef public bint closing
    # operation table: ops[slot] holds one reference while in flight
    cdef PyObject **ops
    cdef uint32_t *gens
    cdef int32_t *quiet             # per slot: the result of a quiet completion, or -1
    cdef uint32_t quiet_slots[64]   # the slots marked quiet for the coming wait
    cdef int nquiet
    cdef bint before_wait           # the flush right before the wait runs
    cdef uint32_t *free_slots
    cdef uint32_t nfree, ops_cap
    cdef public Py_ssize_t inflight
    cdef _WakeOp wake_op
    cdef uint64_t op_counts[64]
    cdef public uint64_t stale_cqes
    cdef public uint64_t sq_full_enters  # submissions forced by a full SQ
    cdef uint64_t sq_epoch          # driver submissions so far (see _void_queued)
    cdef list voided                # user_data of ops whose SQE was voided
    cdef unsigned char probe_ops[256]
    cdef public int probe_len
    cdef public bint zc_ok
    # provided buffer rings: streams (group 1) and datagrams (group 2)
    cdef rl_pbuf pbuf
    cdef bint pbuf_ok
    cdef rl_pbuf dpbuf
    cdef bint dpbuf_ok
    cdef public unsigned recv_buffers
    cdef public unsigned recv_buffer_size
    # bounce buffers of receive operations, kept for reuse (a fresh malloc of
    # up to 256 KiB per operation would hit glibc's mmap threshold)
    cdef char *bcache[8]
    cdef size_t bcap[8]
    cdef int bn
    @cython.final
    cdef int _setup_wake(self) except -1
    @cython.final
    cdef int _arm_wake(self) except -1
    @cython.final
    cdef inline int _drv_enter(self, unsigned wait_nr, long long timeout_ns) noexcept nogil
    @cython.final
    cdef int _grow_ops(self) except -1
    @cython.final
    cdef uint64_t _reg(self, _Op op) except 0
    @cython.final
    cdef inline void _mark_quiet(self, _Op op, Py_ssize_t res)
    @cython.final
    cdef inline void _clear_quiet(self)
    @cython.final
    cdef io_uring_sqe *_sqe(self, int opcode) except NULL
    @cython.final
    cdef inline io_uring_sqe *_submit(self, _Op op, int opcode, int fd, const void *addr, size_t length, uint64_t off) except NULL
    @cython.final
    cdef int _sq_reserve(self, unsigned n) except -1
    @cython.final
    cdef int _cancel_op(self, _Op op) except -1
    @cython.final
    cdef bint _void_queued(self, _Op op) except -1
    @cython.final
    cdef int _void_fd(self, int fd) except -1
    @cython.final
    cdef int _cancel_for_close(self, _Op op) except -1
    @cython.final
    cdef inline int _dispatch(self, uint64_t ud, int res, uint32_t flags) except -1
    @cython.final
    cdef int _reap(self) except -1
    @cython.final
    cdef int _ensure_pbuf(self) except -1
    @cython.final
    cdef int _ensure_dpbuf(self) except -1
    @cython.final
    cdef char *_bounce_get(self, size_t size, size_t *cap) except NULL
    @cython.final
    cdef void _bounce_put(self, char *p, size_t cap) noexcept
    @cython.final
    cdef void _bounce_clear(self) noexcept


# ---- _loop/fdguard.pxi -------------------------------------------------------

cdef class _SockOp(_Op):
    cdef object sock
    cdef bint filed          # in loop.sock_ops
    cdef bint orphaned       # its socket gave up the fd: drop the result
    cdef _SockOp fd_prev, fd_next   # the other operations filed under fd
    cdef int complete(self, int res, uint32_t flags) except -1
    cdef int _result(self, int res, uint32_t flags) except -1
    cdef int _release(self, int res) except -1


# ---- _loop/sockops.pxi -------------------------------------------------------

cdef class _RecvOp(_SockOp):
    cdef char *mem
    cdef size_t cap
    cdef size_t n
    cdef object target      # recv_into: the caller's buffer object
    cdef int _release(self, int res) except -1
    cdef int _result(self, int res, uint32_t flags) except -1

cdef class _SendOp(_SockOp):
    cdef Py_buffer view
    cdef bint has_view
    cdef size_t offset
    cdef bint once           # resolve with the byte count after one send
    cdef object release_waiter   # a cancelled caller waits for the buffer
    @cython.final
    cdef int submit(self) except -1
    cdef int _release(self, int res) except -1
    cdef int _result(self, int res, uint32_t flags) except -1

cdef class _AcceptOp(_SockOp):
    cdef sockaddr_storage addr
    cdef socklen_t addrlen
    cdef int _release(self, int res) except -1
    cdef int _result(self, int res, uint32_t flags) except -1

cdef class _ConnectOp(_SockOp):
    cdef sockaddr_storage addr
    cdef socklen_t addrlen
    cdef object address
    cdef int _result(self, int res, uint32_t flags) except -1

cdef class _MsgOp(_SockOp):
    cdef msghdr msg
    cdef iovec iov
    cdef sockaddr_storage addr
    cdef char *mem
    cdef size_t cap
    cdef Py_buffer view
    cdef bint has_view
    cdef bint is_send
    cdef object target
    @cython.final
    cdef int submit_recv(self) except -1
    cdef int _release(self, int res) except -1
    cdef int _result(self, int res, uint32_t flags) except -1
    @cython.final
    cdef int _complete(self, int res, uint32_t flags) except -1

cdef class _ReadOp(_Op):
    cdef char *mem
    cdef size_t cap
    cdef size_t n
    cdef int complete(self, int res, uint32_t flags) except -1


# ---- _loop/sockapi.pxi -------------------------------------------------------

cdef class _LoopSock(_LoopOps):
    cdef dict recv_stash, accept_stash
    cdef dict sock_ops              # fd -> pending sock_* operations (fdguard.pxi)
    cdef list sock_new              # sock_* operations queued since the last submit
    cdef double sock_scan_at        # last full check of sock_ops
    cdef _recv_orphan(self, _RecvOp done, bytes data)
    cdef _stash_recv(self, sock, data)
    @cython.final
    cdef object _take_stash(self, sock, int fd, Py_ssize_t n)
    cdef _stash_datagram(self, sock, bytes data, addr)
    @cython.final
    cdef object _take_datagram(self, sock, int fd)
    cdef _stash_accept(self, sock, int newfd)
    @cython.final
    cdef int _submit_connect(self, _ConnectOp op) except -1
    @cython.final
    cdef _MsgOp _recvmsg_op(self, sock, int fd, Py_ssize_t size)


# ---- _loop/iteration.pxi -----------------------------------------------------

cdef class _SignalOp(_Op):
    cdef unsigned char buf[256]
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _PollOp(_Op):
    cdef Handle handle
    cdef uint32_t events
    cdef bint removed
    cdef object fileobj      # what add_reader/add_writer was given
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class LoopCore(_LoopSock):
    cdef _SignalOp sig_op
    cdef object sig_rsock, sig_wsock
    cdef public dict _signal_handlers
    cdef dict readers, writers
    cdef public uint64_t iterations
    cdef public uint64_t enobufs
    cdef public uint64_t skipped_enters
    # the streams and slots with sends to flush before the wait (_want_flush):
    # a C array holding one reference each, reused from turn to turn
    cdef PyObject **fl_items
    cdef Py_ssize_t fl_len, fl_cap
    cdef list parked                # streams waiting for provided buffers
    cdef public Py_ssize_t write_hard_cap
    cdef public Py_ssize_t send_zc_threshold
    cdef public uint64_t zc_sends
    cdef public uint64_t zc_notifs
    cdef public object conn_table   # the native API's connections (_conn/)
    cdef object tick_cb             # called once per iteration (native runtime)
    cdef list pre_flush             # one-shot hooks run before the flush (_at_flush)
    @cython.final
    cdef int _wait(self, long long timeout_ns) except -1
    @cython.final
    cdef int _want_flush(self, _Flushable f) except -1
    @cython.final
    cdef int _flush_writes(self) except -1
    @cython.final
    cdef void _drop_flushes(self)
    @cython.final
    cdef int _unpark(self) except -1
    @cython.final
    cdef int _run_once(self) except -1
    @cython.final
    cdef int _run_pre_flush(self) except -1
    @cython.final
    cdef int _arm_poll(self, _PollOp op) except -1
    cdef _add_poller(self, dict table, fileobj, uint32_t events, callback, tuple args)
    @cython.final
    cdef bint _remove_poller(self, dict table, fileobj) except -1
    @cython.final
    cdef int _arm_signal(self) except -1


# ---- _loop/sendq.pxi ---------------------------------------------------------

cdef class _Flushable:
    cdef bint flush_scheduled
    cdef int flush(self) except -1
    cdef int rearm(self) except -1

cdef class _QSendOp(_Op):
    cdef _SendQueue owner        # None once its queue let go of it
    cdef list bufs               # the bytes objects the iovecs point into
    cdef iovec iov[64]
    cdef msghdr msg
    cdef int niov
    cdef Py_ssize_t nbytes
    cdef Py_ssize_t off0         # bufs[0] is sent from this offset
    cdef bint zc                 # sent with SEND_ZC / SENDMSG_ZC
    cdef bint notif_pending      # the kernel still reads the buffers
    @cython.final
    cdef void release(self)
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _SendQueue(_Flushable):
    cdef LoopCore loop
    cdef int fd
    cdef list wq
    cdef Py_ssize_t wq_off       # wq[0] was partly sent: its first wq_off bytes are out
    cdef Py_ssize_t wq_bytes     # queued bytes not sent yet
    cdef Py_ssize_t inflight_bytes
    cdef _QSendOp spare
    cdef int _sent(self, _QSendOp op, int res) except -1
    @cython.final
    cdef bint _join_head(self) except -1
    @cython.final
    cdef inline _QSendOp _take(self)
    @cython.final
    cdef inline int _submit_send(self, _QSendOp op, bint zc) except -1
    @cython.final
    cdef inline int _requeue(self, _QSendOp op, int res) except -1


# ---- _loop/stream.pxi --------------------------------------------------------

cdef class _StreamRecvOp(_Op):
    cdef _StreamCore owner
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _StreamCore(_SendQueue):
    cdef readonly object sock
    cdef object protocol
    cdef object data_received   # protocol.data_received (None: a BufferedProtocol)
    cdef object transport       # the asyncio.Transport wrapper users see
    cdef object context
    cdef object server
    cdef public dict extra
    cdef bint is_buffered
    cdef bint closing
    cdef bint eof_requested
    cdef bint eof_sent
    cdef bint reading_paused
    cdef bint lost_scheduled
    cdef bint in_ctx
    cdef bint protocol_paused
    cdef bint connected
    cdef int conn_lost
    cdef _StreamRecvOp rop
    cdef _QSendOp sop           # the send in flight
    cdef public Py_ssize_t high_water
    cdef public Py_ssize_t low_water
    cdef public Py_ssize_t hard_cap
    cdef list pending_data
    cdef bint replay_pending    # pending_data is being replayed: keep order
    cdef public object empty_waiter
    cdef public bint zc_allowed
    cdef public int kind            # _STREAM_SOCKET / _READ_PIPE / _WRITE_PIPE (stream.pxi)
    cdef _PipeWatchOp watch_op
    @cython.final
    cdef inline bint _enter(self) except -1
    @cython.final
    cdef inline int _exit(self, bint entered) except -1
    @cython.final
    cdef int _arm_recv(self) except -1
    cdef int rearm(self) except -1
    @cython.final
    cdef int _on_recv(self, int res, uint32_t flags) except -1
    @cython.final
    cdef int _deliver(self, char *ptr, Py_ssize_t n) except -1
    @cython.final
    cdef int _on_eof(self) except -1
    @cython.final
    cdef int _stop_recv(self) except -1
    cdef int flush(self) except -1
    cdef int _sent(self, _QSendOp op, int res) except -1
    @cython.final
    cdef int _schedule_flush(self) except -1
    @cython.final
    cdef int _send_eof(self) except -1
    @cython.final
    cdef int _maybe_pause_protocol(self) except -1
    @cython.final
    cdef int _maybe_resume_protocol(self) except -1
    @cython.final
    cdef int _use_protocol(self, protocol) except -1
    @cython.final
    cdef int _send_queued_now(self) except -1
    @cython.final
    cdef int _schedule_connection_lost(self, exc) except -1
    @cython.final
    cdef int _stop_watch(self) except -1
    @cython.final
    cdef int _release(self) except -1

cdef class _PipeWatchOp(_Op):
    cdef _StreamCore owner
    cdef int complete(self, int res, uint32_t flags) except -1


# ---- _loop/accept.pxi --------------------------------------------------------

cdef class _ListenOp(_Op):
    cdef object sock
    cdef object on_fd            # native listener: on_fd(fd) per connection
    cdef tuple serve             # create_server: (protocol_factory, sslcontext,
                                 #   server, backlog, handshake and shutdown timeouts)
    cdef object context          # create_server: the context serving began in
    cdef int family, stype, proto
    cdef bint stopped
    @cython.final
    cdef int arm(self) except -1
    @cython.final
    cdef int _report(self, str message, exc) except -1
    cdef int complete(self, int res, uint32_t flags) except -1


# ---- _loop/datagram.pxi ------------------------------------------------------

cdef class _DgramRecvOp(_Op):
    cdef _DatagramCore owner
    cdef msghdr msg
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _DgramWholeOp(_DgramRecvOp):
    cdef iovec iov
    cdef sockaddr_storage addr
    cdef char scratch
    cdef char *buf
    cdef size_t cap
    cdef bint peeking
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _DgramSendOp(_Op):
    cdef _DatagramCore owner
    cdef msghdr msg
    cdef iovec iov
    cdef sockaddr_storage addr
    cdef bytes data
    cdef uint64_t cmsg[4]    # a UDP_SEGMENT control message (GSO sends; udpgso.h)
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _DatagramCore:
    cdef LoopCore loop
    cdef readonly object sock
    cdef object protocol
    cdef object transport
    cdef object context
    cdef public dict extra
    cdef public object address
    cdef int fd
    cdef int family
    cdef bint whole          # datagrams may exceed the buffer ring's: _DgramWholeOp
    cdef bint closing
    cdef bint lost_scheduled
    cdef bint connected
    cdef bint protocol_paused
    cdef int conn_lost
    cdef _DgramRecvOp rop
    cdef set sends           # SENDMSG operations in flight
    cdef Py_ssize_t inflight_bytes
    cdef Py_ssize_t inflight_ops
    cdef public Py_ssize_t high_water
    cdef public Py_ssize_t low_water
    @cython.final
    cdef int _arm_recv(self) except -1
    @cython.final
    cdef int _arm_whole(self, bint peek) except -1
    @cython.final
    cdef int _on_whole(self, int res) except -1
    @cython.final
    cdef int _on_recv(self, int res, uint32_t flags) except -1
    @cython.final
    cdef int _send(self, data, addr, int segment) except -1
    @cython.final
    cdef int _on_sent(self, _DgramSendOp op, int res) except -1
    @cython.final
    cdef int _maybe_pause_protocol(self) except -1
    @cython.final
    cdef int _maybe_resume_protocol(self) except -1
    @cython.final
    cdef int _schedule_connection_lost(self, exc) except -1


# ---- _loop/fileops.pxi -------------------------------------------------------

cdef class _FileOp(_Op):
    cdef _FileReq req
    cdef bint is_sync        # its FSYNC (else its WRITE)
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _FileReq:
    cdef RingFile file
    cdef Py_buffer view      # the bytes to write (held until the final completion)
    cdef bint has_view
    cdef size_t done         # bytes of view written so far
    cdef uint64_t pos        # file offset of view[0]; (uint64_t)-1: the file position
    cdef int sync            # after the write: 0 nothing, 1 fdatasync, 2 fsync
    cdef bint sent_write, sent_sync   # what the round in flight carries
    cdef int nops            # operations of the round in flight
    cdef int wres, sres      # their results
    cdef object callback     # callback(None or OSError), or None
    cdef object fut          # the future write()/sync() returned, or None
    @cython.final
    cdef int _round(self) except -1
    @cython.final
    cdef int _again(self) except -1
    @cython.final
    cdef int _on_op(self, _FileOp op, int res) except -1
    @cython.final
    cdef int _finish(self, int err, exc=*) except -1

cdef class RingFile:
    cdef LoopCore loop
    cdef readonly int fd
    cdef readonly Py_ssize_t pending    # requests in flight
    cdef bint closing
    cdef object on_closed               # close()'s callback
    cdef readonly uint64_t writes, syncs, short_writes
    @cython.final
    cdef _FileReq _request(self, int sync, callback)
    @cython.final
    cdef int _req_done(self) except -1
    @cython.final
    cdef int _close_fd(self) except -1


# ---- _conn/recv.pxi ----------------------------------------------------------

cdef class _NeedAtLeast:
    cdef readonly Py_ssize_t n

cdef class _Chunk:
    cdef char *buf
    cdef Py_ssize_t cap
    cdef Py_ssize_t vstart, vlen

cdef class _RecvBuffer:
    cdef _Chunk chunk
    cdef Py_ssize_t start, end   # the unconsumed bytes: chunk.buf[start:end]
    cdef Py_ssize_t want         # call the handler again with at least this many
    @cython.final
    cdef inline void clear(self)
    @cython.final
    cdef inline void release(self)
    @cython.final
    cdef inline bint shared(self)
    @cython.final
    cdef bint append(self, char *ptr, Py_ssize_t n, Py_ssize_t chunk_size) except -1
    @cython.final
    cdef int reserve(self, Py_ssize_t n, Py_ssize_t chunk_size) except -1
    @cython.final
    cdef object view(self)
    @cython.final
    cdef inline void consume(self, Py_ssize_t r)

cdef class _NRecvOp(_Op):
    cdef _ConnSlot slot
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _ReadWait:
    cdef public object _asyncio_future_blocking
    cdef Conn handle
    cdef object fn
    cdef bint keep         # with_bytes: views stay valid
    cdef object cb
    cdef object cb_ctx
    cdef object exc        # raised by result() (cancellation)
    cdef bint registered     # it is its slot's reader (a task waits on it)
    cdef bint each         # on_data(): fn runs on every arrival, inside the completion
    cdef Py_ssize_t total  # on_data(): bytes consumed so far
    @cython.final
    cdef int _unregister(self) except -1
    @cython.final
    cdef object _step(self)
    @cython.final
    cdef int _pump(self) except -1
    @cython.final
    cdef bint _consume_each(self) except -1
    @cython.final
    cdef int _wake(self, bint direct) except -1


# ---- _conn/slot.pxi ----------------------------------------------------------

cdef class _ConnSlot(_SendQueue):
    cdef _ConnTable table
    cdef readonly uint32_t gen
    cdef readonly int index
    cdef int state
    cdef bint fd_closed
    cdef bint eof
    cdef object error          # why the connection ended (raised to callers)
    cdef int nops              # operations (and notifications) in flight
    cdef int family
    # receive
    cdef _RecvBuffer rb        # the receive accumulator (_conn/recv.pxi)
    cdef _NRecvOp rop
    cdef bint recv_paused      # accumulator over its cap
    cdef bint recv_parked      # waiting for provided buffers
    cdef _ReadWait reader
    # send (the queue itself: _SendQueue)
    cdef bint busy             # a send (or chain) is in flight
    cdef object send_waiters   # deque of (end offset, future)
    cdef long long queued_total
    cdef long long sent_total
    cdef bint shut_requested
    cdef bint shut_sent
    cdef object peer
    cdef object cur_send       # the send op (or chain) in flight
    cdef object __weakref__
    @cython.final
    cdef int _open(self, int fd, int family) except -1
    cdef int rearm(self) except -1
    @cython.final
    cdef int _arm_recv(self) except -1
    @cython.final
    cdef int _on_recv(self, int res, uint32_t flags) except -1
    @cython.final
    cdef int _append(self, char *ptr, Py_ssize_t n) except -1
    @cython.final
    cdef Py_ssize_t _try_consume(self, fn, bint keep, Conn h) except -2
    @cython.final
    cdef int _check_send(self, Conn h) except -1
    @cython.final
    cdef int _admit(self, Py_ssize_t n) except -1
    @cython.final
    cdef int _queue(self, object item, Py_ssize_t n) except -1
    cdef int flush(self) except -1
    cdef int _sent(self, _QSendOp op, int res) except -1
    @cython.final
    cdef int _after_send(self) except -1
    @cython.final
    cdef int _schedule_flush(self) except -1
    @cython.final
    cdef int _submit_guarded(self, _Guarded g) except -1
    @cython.final
    cdef int _on_guarded_sent(self, _NZcOp op, int res) except -1
    @cython.final
    cdef int _submit_chain(self, _Chain ch) except -1
    @cython.final
    cdef int _send_next_link(self, _Chain ch) except -1
    @cython.final
    cdef int _on_link_sent(self, _NLinkOp op, int res) except -1
    @cython.final
    cdef int _send_shutdown(self) except -1
    @cython.final
    cdef int _wake_reader(self) except -1
    @cython.final
    cdef int _fail_waiters(self, exc) except -1
    @cython.final
    cdef int _fail(self, exc) except -1
    @cython.final
    cdef int _close(self) except -1
    @cython.final
    cdef int _close_fd(self) except -1
    @cython.final
    cdef int _cancel_sends(self) except -1
    @cython.final
    cdef int _maybe_recycle(self) except -1

cdef class _ConnTable:
    cdef LoopCore loop
    cdef list slots
    cdef list free
    cdef public Py_ssize_t max_send_queue
    cdef public Py_ssize_t recv_cap
    cdef public Py_ssize_t zc_threshold
    cdef public Py_ssize_t max_connections
    cdef public Py_ssize_t pool_limit
    cdef public Py_ssize_t chunk_size
    cdef public Py_ssize_t pool_bytes
    cdef public Py_ssize_t live
    cdef public uint64_t opened, closed, dropped_slow, refused
    cdef public uint64_t parts_copied, parts_zc, zc_guard_sends, chains
    cdef public uint64_t chunk_copies, recv_pauses
    @cython.final
    cdef _ConnSlot _alloc(self, int fd, int family)
    @cython.final
    cdef int _release(self, _ConnSlot s) except -1


# ---- _conn/parts.pxi ---------------------------------------------------------

cdef class ChainState:
    cdef readonly int total
    cdef readonly int received
    cdef readonly Py_ssize_t bytes_sent
    cdef readonly Py_ssize_t total_bytes
    cdef readonly int first_error       # 0 or a negative errno
    cdef readonly int cancelled         # links that reported ECANCELED
    cdef readonly int short_links       # links the kernel sent only in part
    cdef readonly int zc_pending
    cdef readonly int zc_notifs
    cpdef str on_op(self, int res, Py_ssize_t expected=*)
    cpdef add_notif(self)
    cpdef str on_notif(self)
    cpdef str event(self)

cdef class _Guarded:
    cdef list parts          # bytes (copies) and memoryviews (guards)
    cdef Py_ssize_t nbytes
    cdef object fut

cdef class _NZcOp(_Op):
    cdef _ConnSlot slot
    cdef list parts
    cdef iovec iov[64]
    cdef msghdr msg
    cdef Py_ssize_t nbytes
    cdef bint notif_pending
    cdef bint op_done
    cdef _Guarded entry
    cdef _Chain chain
    cdef int link
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class _Chain:
    cdef list links          # bytes or memoryview (guard) per link
    cdef list zc             # bool per link
    cdef ChainState state
    cdef object fut
    cdef list ops            # keep link ops referenced
    cdef int next_link       # no links in the driver: next link to send
    cdef Py_ssize_t link_off # no links in the driver: bytes of the current link sent
    cdef bint done_ops
    @cython.final
    cdef int _on_link(self, _ConnSlot slot, int link, int res) except -1
    @cython.final
    cdef int _on_notif(self, _ConnSlot slot) except -1
    @cython.final
    cdef int _ops_done(self, _ConnSlot slot, str ev) except -1
    @cython.final
    cdef int _resolve(self) except -1

cdef class _NLinkOp(_Op):
    cdef _ConnSlot slot
    cdef _Chain chain
    cdef object buf
    cdef Py_ssize_t nbytes
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class SendParts:
    cdef Conn conn
    cdef list parts        # (kind, obj): 0 copy (bytes), 1 guard (memoryview)
    cdef Py_ssize_t nbytes
    cdef bint submitted

cdef class SendChain:
    cdef Conn conn
    cdef list links
    cdef list zc
    cdef Py_ssize_t nbytes
    cdef bint submitted


# ---- _conn/conn.pxi ----------------------------------------------------------

cdef class _NConnectOp(_Op):
    cdef sockaddr_storage addr
    cdef socklen_t addrlen
    cdef _rl_timespec ts
    cdef object address
    cdef int complete(self, int res, uint32_t flags) except -1

cdef class Conn:
    cdef _ConnSlot slot
    cdef readonly uint32_t gen
    @cython.final
    cdef inline _ConnSlot _live(self)
