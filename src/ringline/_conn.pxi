# The native connection API (ringline.Conn) over the ring.
#
# Objects and their lifecycle:
#   _ConnTable (one per loop) owns the connection slots (_ConnSlot), a free
#     list of them, the per-loop knobs (send queue limit, accumulator cap,
#     zero-copy threshold, connection limit, send pool budget) and counters.
#   _ConnSlot is one connection's state: fd, receive accumulator, the
#     multishot RECV, the send queue and its single in-flight send. A slot is
#     OPEN -> CLOSING (close(): receive stopped, queued sends drain) or DEAD
#     (drop/abort/error: sends discarded, waiters failed) -> its fd is closed
#     once no operation of it is in flight -> the slot goes back to the free
#     list with its generation bumped.
#   Conn is the handle users hold: (slot, generation). Every call checks the
#     generation first, so a handle of a closed connection never touches the
#     connection that reuses its slot (it raises ConnectionClosed).
# Receive: the multishot RECV draws from the loop's provided buffer ring; each
#   completion's bytes are appended to the slot's accumulator (a _Chunk) and
#   the buffer goes straight back. The accumulator is bounded by
#   recv_accumulator_cap: above it the receive is cancelled (TCP pushes back)
#   until the handler consumes. A chunk that a handler still references (a
#   with_bytes view it kept) is never moved or overwritten: the unconsumed tail
#   moves to a fresh chunk instead.
# Waiting: with_data()/with_bytes() return a _ReadWait awaitable that an
#   asyncio Task waits on as it would on a future; the receive completion wakes
#   the task directly (no future, no handle), inside the task's context.
# Send: send_nowait() queues bytes (by reference; mutable buffers copied);
#   the loop flushes each connection once per iteration (one SEND/SENDMSG for
#   everything queued, at most one send in flight, partial sends continue
#   from the right offset). Guard parts and chains are queue entries of their
#   own, sent in order with the bytes around them; zero-copy memory is held
#   until the kernel's notification (invariant 1).

cimport cython
from libc.string cimport memmove
from collections import deque as _deque
from ringline._errors import (ConnectionClosed, ConnectionDropped,
                              SendPoolExhausted)

cdef extern from "<sys/socket.h>" nogil:
    int getpeername(int, sockaddr*, socklen_t*)
    int getsockname(int, sockaddr*, socklen_t*)

cdef extern from "Python.h":
    object PyMemoryView_FromObject(object)
    int PyBuffer_FillInfo(Py_buffer *view, object obj, void *buf, Py_ssize_t len,
                          int readonly, int flags) except -1
    Py_ssize_t _rl_refcnt "Py_REFCNT"(PyObject *)

cdef extern from "<netinet/in.h>" nogil:
    int IPPROTO_TCP
cdef extern from "<netinet/tcp.h>" nogil:
    int TCP_NODELAY
cdef extern from "<sys/socket.h>" nogil:
    int setsockopt(int, int, int, const void*, socklen_t)

cdef extern from "_amsend.h":
    ctypedef int (*rl_step_fn)(object, PyObject **) except -1
    int rl_install_am_send(PyTypeObject *tp, rl_step_fn fn)

cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        pass

cdef int _OP_LINK_TIMEOUT = 15
cdef int _ECONNRESET = 104
from operator import index as _operator_index

ctypedef struct _rl_timespec:
    int64_t tv_sec
    long long tv_nsec


cdef class _NeedAtLeast:
    cdef readonly Py_ssize_t n


def need_at_least(Py_ssize_t n):
    """Returned by a parse callback: wait until at least n bytes are buffered
    (room for them is reserved once)."""
    if n <= 0:
        raise ValueError(f'need_at_least(n) needs n > 0, got {n}')
    cdef _NeedAtLeast r = _NeedAtLeast.__new__(_NeedAtLeast)
    r.n = n
    return r


NEED_MORE = 0


cdef class _Chunk:
    """A block of the receive accumulator. Exports a read-only window to
    handlers; whoever keeps a view keeps the block alive."""
    cdef char *buf
    cdef Py_ssize_t cap
    cdef Py_ssize_t vstart, vlen

    def __dealloc__(self):
        if self.buf != NULL:
            free(self.buf)
            self.buf = NULL

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError('the receive buffer is read-only')
        PyBuffer_FillInfo(view, self, self.buf + self.vstart, self.vlen, 1, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass


cdef _Chunk _new_chunk(Py_ssize_t cap):
    cdef _Chunk c = _Chunk.__new__(_Chunk)
    c.buf = <char*>malloc(cap)
    if c.buf == NULL:
        raise MemoryError()
    c.cap = cap
    return c


cdef class ChainState:
    """The aggregate state of one send chain (IO_LINK'd sends): one operation
    completion per link, plus one notification per zero-copy link. Events:
    'pending' (more completions due), 'ops_complete' (every link completed,
    zero-copy notifications outstanding) and 'complete'."""
    cdef readonly int total
    cdef readonly int received
    cdef readonly Py_ssize_t bytes_sent
    cdef readonly Py_ssize_t total_bytes
    cdef readonly int first_error       # 0 or a negative errno
    cdef readonly int cancelled         # links that reported ECANCELED
    cdef readonly int short_links       # links the kernel sent only in part
    cdef readonly int zc_pending
    cdef readonly int zc_notifs

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
            if res == -_ECANCELED:
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


cdef class _NRecvOp(_Op):
    cdef _ConnSlot slot

    cdef int complete(self, int res, uint32_t flags) except -1:
        return self.slot._on_recv(res, flags)


cdef class _NSendOp(_Op):
    """A SEND/SENDMSG of queued bytes (copy path); reused per slot."""
    cdef _ConnSlot slot
    cdef list bufs
    cdef iovec iov[64]
    cdef msghdr msg
    cdef Py_ssize_t nbytes
    cdef Py_ssize_t off0     # bufs[0] is sent from this offset

    cdef int complete(self, int res, uint32_t flags) except -1:
        return self.slot._on_sent(self, res)


cdef class _Guarded:
    """A queue entry sent on its own: copy runs gathered into one buffer and
    guard parts in place (SENDMSG_ZC); everything held until the kernel's
    notification. fut resolves to the bytes sent."""
    cdef list parts          # bytes (copies) and memoryviews (guards)
    cdef Py_ssize_t nbytes
    cdef object fut


cdef class _NZcOp(_Op):
    """SENDMSG_ZC of one _Guarded entry (or one zero-copy chain link)."""
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
    """A queue entry of linked sends (IO_LINK on io_uring; one after the
    other on the poll backend) with one aggregate result."""
    cdef list links          # bytes or memoryview (guard) per link
    cdef list zc             # bool per link
    cdef ChainState state
    cdef object fut
    cdef list ops            # keep link ops referenced
    cdef int next_link       # poll backend: next link to send
    cdef Py_ssize_t link_off # poll backend: bytes of the current link sent
    cdef bint done_ops

    cdef int _on_link(self, _ConnSlot slot, int link, int res) except -1:
        cdef Py_ssize_t expected = len(self.links[link])
        ev = self.state.on_op(res, expected)
        if ev != 'pending':
            self._ops_done(slot, ev)
        return 0

    cdef int _on_notif(self, _ConnSlot slot) except -1:
        ev = self.state.on_notif()
        if ev == 'complete':
            self._resolve()
        return 0

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
            if self.state.first_error != 0 and self.state.first_error != -_ECANCELED:
                err = _oserror(-self.state.first_error)
            else:
                err = ConnectionDropped(
                    f'send chain cut short ({self.state.bytes_sent} of '
                    f'{self.state.total_bytes} bytes sent)')
            slot._fail(err)
            return 0
        slot._after_send()
        return 0

    cdef int _resolve(self) except -1:
        fut = self.fut
        self.ops = None
        if fut is not None and not fut.done():
            err = None
            if self.state.first_error != 0:
                err = _oserror(-self.state.first_error)
            fut.set_result(ChainResult(self.state.bytes_sent, err, self.state.cancelled))
        return 0


cdef class _NPollLinkOp(_Op):
    """Poll backend: one link of a chain (or its remainder) as a plain SEND."""
    cdef _ConnSlot slot
    cdef _Chain chain
    cdef object buf
    cdef Py_ssize_t nbytes

    cdef int complete(self, int res, uint32_t flags) except -1:
        cdef _ConnSlot slot = self.slot
        slot.nops -= 1
        slot._on_poll_link(self, res)
        slot._maybe_recycle()
        return 0


cdef class _NShutOp(_Op):
    cdef _ConnSlot slot

    cdef int complete(self, int res, uint32_t flags) except -1:
        self.slot.nops -= 1
        self.slot._maybe_recycle()
        return 0


cdef class _NConnectOp(_Op):
    cdef sockaddr_storage addr
    cdef socklen_t addrlen
    cdef _rl_timespec ts
    cdef object address

    cdef int complete(self, int res, uint32_t flags) except -1:
        fut = self.fut
        if fut is None or fut.done():
            return 0
        if res == 0 or res == -106:     # EISCONN after a retried attempt
            fut.set_result(None)
        elif res == -_ECANCELED:
            fut.set_exception(TimeoutError(f'connect to {self.address!r} timed out'))
        else:
            fut.set_exception(OSError(-res, f'connect to {self.address!r} failed: '
                                            f'{_os.strerror(-res)}'))
        return 0


cdef class _NListenOp(_Op):
    """Multishot ACCEPT handing each accepted fd to a Python callback."""
    cdef object on_fd
    cdef bint stopped

    cdef int arm(self) except -1:
        cdef io_uring_sqe *sqe
        if self.stopped or self.inflight:
            return 0
        sqe = self.loop._sqe(IORING_OP_ACCEPT)
        sqe.fd = self.fd
        sqe.ioprio = IORING_ACCEPT_MULTISHOT
        sqe.accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC
        sqe.user_data = self.loop._reg(self)
        return 0

    def _rearm(self):
        self.arm()

    cdef int complete(self, int res, uint32_t flags) except -1:
        if res >= 0:
            if self.stopped:
                c_close(res)
                return 0
            try:
                self.on_fd(res)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.loop.call_exception_handler({
                    'message': 'ringline listener: on_fd() failed',
                    'exception': exc,
                })
        elif self.stopped or res == -_ECANCELED:
            return 0
        elif res in (-24, -23, -105, -12):   # EMFILE ENFILE ENOBUFS ENOMEM
            self.loop.call_exception_handler({
                'message': 'accept() out of system resource',
                'exception': _oserror(-res),
            })
            if not (flags & IORING_CQE_F_MORE):
                self.loop.call_later(0.1, self._rearm)
            return 0
        elif res == -22 or res == -9:
            self.stopped = True
            return 0
        if not (flags & IORING_CQE_F_MORE) and not self.stopped:
            self.arm()
        return 0


# ---------------------------------------------------------------------------
# the awaitable of with_data / with_bytes


cdef class _ReadWait:
    """Awaitable of with_data()/with_bytes(). An asyncio Task waits on it as
    on a future (_asyncio_future_blocking protocol); a receive completion wakes
    the task directly."""
    cdef public object _asyncio_future_blocking
    cdef Conn handle
    cdef object fn
    cdef bint keep         # with_bytes: views stay valid
    cdef object cb
    cdef object cb_ctx
    cdef object exc        # raised by result() (cancellation)
    cdef bint parked
    cdef bint each         # on_data(): fn runs on every arrival, inside the completion
    cdef Py_ssize_t total  # on_data(): bytes consumed so far

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self._step()

    def send(self, value):
        return self._step()

    def throw(self, typ, val=None, tb=None):
        self._unpark()
        if val is None:
            if isinstance(typ, BaseException):
                raise typ
            val = typ()
        raise val

    def close(self):
        self._unpark()

    cdef int _unpark(self) except -1:
        cdef _ConnSlot slot
        if self.parked:
            self.parked = False
            slot = self.handle.slot
            if slot.reader is self:
                slot.reader = None
        self.cb = None
        self.cb_ctx = None
        return 0

    cdef object _step(self):
        cdef PyObject *out = NULL
        if _readwait_step(self, &out) == 1:
            raise StopIteration(<object>out)
        return <object>out

    # -- the future protocol asyncio.Task uses --

    def get_loop(self):
        return self.handle.slot.loop

    def add_done_callback(self, fn, *, context=None):
        if self.cb is not None:
            raise RuntimeError('with_data() awaitable is awaited by more than one task')
        self.cb = fn
        self.cb_ctx = context if context is not None else PyContext_CopyCurrent()

    def remove_done_callback(self, fn):
        if self.cb is fn:
            self.cb = None
            self.cb_ctx = None
            return 1
        return 0

    def done(self):
        return not self.parked

    def cancelled(self):
        return False

    def result(self):
        if self.exc is not None:
            exc = self.exc
            self.exc = None
            raise exc
        return None

    def exception(self):
        return self.exc

    def cancel(self, msg=None):
        cdef _ConnSlot slot
        if not self.parked:
            return False
        self.exc = _aexc.CancelledError() if msg is None else _aexc.CancelledError(msg)
        self.parked = False
        slot = self.handle.slot
        if slot.reader is self:
            slot.reader = None
        cb = self.cb
        ctx = self.cb_ctx
        self.cb = None
        self.cb_ctx = None
        if cb is not None:
            slot.loop.call_soon(cb, self, context=ctx)
        return True

    cdef int _pump(self) except -1:
        # on_data(): bytes arrived for a parked reader. fn consumes them right
        # here in the completion, without resuming the task; the task is
        # woken only to finish (EOF, a closed connection, an error from fn).
        cdef _ConnSlot slot = self.handle.slot
        ctx = self.cb_ctx
        if ctx is not None:
            PyContext_Enter(ctx)
        try:
            if not self._consume_each():
                return 0                        # wait for more, still parked
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.exc = exc
        finally:
            if ctx is not None:
                PyContext_Exit(ctx)
        self.parked = False
        if slot.reader is self:
            slot.reader = None
        self._wake(True)
        return 0

    cdef bint _consume_each(self) except -1:
        # on_data(): run fn over what is buffered until it needs more (False)
        # or the stream ended: EOF, or closed by the handler (True)
        cdef Conn h = self.handle
        cdef _ConnSlot slot = h.slot
        cdef Py_ssize_t r
        while True:
            if slot.gen != h.gen or (slot.state != _S_OPEN and slot.error is None):
                return True
            r = slot._try_consume(self.fn, False, h)
            if r > 0:
                self.total += r
            elif r == 0:
                return True
            else:
                return False

    cdef int _wake(self, bint direct) except -1:
        # called by the slot when data (or EOF, or an error) arrived. direct:
        # from a completion (no task is running): step the task right here;
        # otherwise (close() from another task) through the ready queue.
        cb = self.cb
        ctx = self.cb_ctx
        self.cb = None
        self.cb_ctx = None
        if cb is None:
            return 0
        if not direct:
            self.handle.slot.loop.call_soon(cb, self, context=ctx)
            return 0
        PyContext_Enter(ctx)
        try:
            cb(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.handle.slot.loop.call_exception_handler({
                'message': 'ringline: waking a connection task failed',
                'exception': exc,
            })
        finally:
            PyContext_Exit(ctx)
        return 0


cdef int _readwait_step(object obj, PyObject **out) except -1:
    """One step of a _ReadWait: 1 with *out = the count (done), 0 with *out =
    the awaitable itself (the task waits on it). New references."""
    cdef _ReadWait self = <_ReadWait>obj
    cdef Conn h = self.handle
    cdef _ConnSlot slot = h.slot
    cdef Py_ssize_t r
    if self.exc is not None:
        exc = self.exc
        self.exc = None
        raise exc
    if slot.gen != h.gen:
        raise ConnectionClosed('connection is closed')
    if self.parked:
        # resumed by the task after a wakeup
        self.parked = False
        if slot.reader is self:
            slot.reader = None
    if self.each:
        if self._consume_each():
            res = PyLong_FromSsize_t(self.total)
            Py_INCREF(res)
            out[0] = <PyObject*>res
            return 1
    else:
        r = slot._try_consume(self.fn, self.keep, h)
        if r >= 0:
            res = PyLong_FromSsize_t(r)
            Py_INCREF(res)
            out[0] = <PyObject*>res
            return 1
    if slot.reader is not None and slot.reader is not self:
        raise RuntimeError('another task is already waiting for data on this connection')
    slot.reader = self
    self.parked = True
    self._asyncio_future_blocking = True
    Py_INCREF(self)
    out[0] = <PyObject*>self
    return 0


rl_install_am_send(<PyTypeObject*>_ReadWait, _readwait_step)

_mv_release = memoryview.release


# ---------------------------------------------------------------------------
# the slot


cdef int _S_OPEN = 0
cdef int _S_CLOSING = 1     # close(): queued sends drain, then the fd closes
cdef int _S_DEAD = 2        # dropped / failed / aborted
cdef int _S_FREE = 3        # fd closed, slot on the free list


cdef class _ConnSlot(_Flushable):
    cdef LoopCore loop
    cdef _ConnTable table
    cdef readonly uint32_t gen
    cdef readonly int index
    cdef int fd
    cdef int state
    cdef bint fd_closed
    cdef bint eof
    cdef object error          # why the connection ended (raised to callers)
    cdef int nops              # operations (and notifications) in flight
    cdef int family
    # receive
    cdef _Chunk chunk
    cdef Py_ssize_t start, end
    cdef Py_ssize_t want
    cdef _NRecvOp rop
    cdef bint recv_paused      # accumulator over its cap
    cdef bint recv_parked      # waiting for provided buffers
    cdef _ReadWait reader
    # send
    cdef list wq
    cdef Py_ssize_t wq_off   # wq[0] (bytes) was partly sent: wq_off bytes are out
    cdef Py_ssize_t wq_bytes
    cdef Py_ssize_t inflight_bytes
    cdef bint busy             # a send (or chain) is in flight
    cdef _NSendOp spare
    cdef object send_waiters   # deque of (end offset, future)
    cdef long long queued_total
    cdef long long sent_total
    cdef bint shut_requested
    cdef bint shut_sent
    cdef object peer
    cdef object cur_send       # the send op (or chain) in flight
    cdef object __weakref__

    cdef int _open(self, int fd, int family) except -1:
        self.fd = fd
        self.family = family
        self.state = _S_OPEN
        self.fd_closed = False
        self.eof = False
        self.error = None
        self.start = 0
        self.end = 0
        self.want = 1
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
        if self.spare is not None:
            self.spare.fd = fd
        return 0

    # -- receive --

    cdef int rearm(self) except -1:
        self.recv_parked = False
        return self._arm_recv()

    cdef int _arm_recv(self) except -1:
        cdef io_uring_sqe *sqe
        if self.rop.inflight or self.state != _S_OPEN or self.eof or self.recv_paused:
            return 0
        self.loop._ensure_pbuf()
        sqe = self.loop._sqe(IORING_OP_RECV)
        sqe.ioprio = IORING_RECV_MULTISHOT
        sqe.fd = self.fd
        sqe.flags = IOSQE_BUFFER_SELECT
        sqe.buf_group = self.loop.pbuf.bgid
        sqe.user_data = self.loop._reg(self.rop)
        self.nops += 1
        return 0

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
        elif res == -_ENOBUFS:
            loop.enobufs += 1
            if self.state == _S_OPEN and not self.recv_parked:
                self.recv_parked = True
                loop.parked.append(self)
            self._maybe_recycle()
            return 0
        elif res == -_ECANCELED:
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
            if self.eof or self.end - self.start >= self.want or self.state != _S_OPEN:
                if self.reader.each:
                    self.reader._pump()
                else:
                    self.reader._wake(True)
        self._maybe_recycle()
        return 0

    cdef inline bint _chunk_shared(self):
        # somebody besides this slot references the chunk (a view a handler
        # kept): its bytes must not move or be overwritten
        return _rl_refcnt(<PyObject*>self.chunk) > 1

    cdef int _append(self, char *ptr, Py_ssize_t n) except -1:
        cdef Py_ssize_t avail = self.end - self.start
        cdef Py_ssize_t need, cap
        cdef bint shared
        cdef _Chunk nc
        if self.chunk is None:
            cap = self.table.chunk_size
            while cap < n:
                cap <<= 1
            self.chunk = _new_chunk(cap)
            self.start = self.end = 0
        shared = self._chunk_shared()
        if avail == 0 and not shared:
            self.start = self.end = 0
        if self.end + n > self.chunk.cap:
            need = avail + n
            if need < self.want:
                need = self.want
            if need <= self.chunk.cap and not shared:
                memmove(self.chunk.buf, self.chunk.buf + self.start, avail)
            else:
                cap = self.chunk.cap
                while cap < need:
                    cap <<= 1
                nc = _new_chunk(cap)
                memcpy(nc.buf, self.chunk.buf + self.start, avail)
                if shared:
                    self.table.chunk_copies += 1
                self.chunk = nc
                nc = None
            self.start = 0
            self.end = avail
        memcpy(self.chunk.buf + self.end, ptr, n)
        self.end += n
        if self.end - self.start >= self.table.recv_cap and not self.recv_paused:
            # bounded accumulator: stop receiving until the handler consumes
            self.recv_paused = True
            self.table.recv_pauses += 1
            if self.rop.inflight:
                self.loop._cancel_op(self.rop)
        return 0

    cdef Py_ssize_t _try_consume(self, fn, bint keep, Conn h) except -2:
        """Run fn over the unconsumed bytes. Returns what it consumed (> 0),
        0 at EOF, or -1 when the caller must wait."""
        cdef Py_ssize_t avail, r
        cdef _Chunk c
        cdef _NeedAtLeast na
        while True:
            if self.state != _S_OPEN:
                if self.error is not None:
                    raise self.error
                raise ConnectionClosed('connection is closed')
            avail = self.end - self.start
            if avail > 0 and avail >= self.want:
                c = self.chunk
                c.vstart = self.start
                c.vlen = avail
                view = PyMemoryView_FromObject(c)
                try:
                    res = fn(view)
                finally:
                    if not keep:
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
                        self.start += r
                        self.want = 1
                        if self.start == self.end and self.chunk.cap > 65536:
                            self.chunk = None      # give back a chunk a big message grew
                            self.start = self.end = 0
                        if self.recv_paused and self.end - self.start < self.table.recv_cap // 2:
                            self.recv_paused = False
                            self._arm_recv()
                        return r
                    if r < 0:
                        raise ValueError(f'parse callback returned {r}; expected the number '
                                         'of bytes consumed, 0 or need_at_least(n)')
                    self.want = avail + 1
                else:
                    na = <_NeedAtLeast>res
                    if na.n > self.table.recv_cap:
                        raise ValueError(f'need_at_least({na.n}) exceeds the receive accumulator '
                                         f'cap ({self.table.recv_cap} bytes)')
                    self.want = na.n if na.n > avail else avail + 1
                    self._reserve(self.want)
            if self.eof:
                if self.error is not None:
                    raise self.error
                return 0
            if self.recv_paused and self.end - self.start >= self.table.recv_cap:
                raise ConnectionDropped(
                    f'the parse callback needs more than recv_accumulator_cap '
                    f'({self.table.recv_cap} bytes) without consuming')
            return -1

    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef _Chunk c = self.chunk
        cdef _Chunk nc
        cdef Py_ssize_t cap, avail
        if c is not None and c.cap - self.start >= n:
            return 0
        cap = self.table.chunk_size
        while cap < n:
            cap <<= 1
        nc = _new_chunk(cap)
        avail = self.end - self.start
        if c is not None and avail:
            memcpy(nc.buf, c.buf + self.start, avail)
        self.chunk = nc
        self.start = 0
        self.end = avail
        return 0

    # -- send --

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

    cdef int _queue(self, object item, Py_ssize_t n) except -1:
        self.wq.append(item)
        self.wq_bytes += n
        self.queued_total += n
        self.table.pool_bytes += n
        if not self.busy and not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.flush_list.append(self)
        return 0

    cdef int flush(self) except -1:
        cdef _NSendOp op
        cdef Py_ssize_t i, k, total = 0, ln, nq
        cdef io_uring_sqe *sqe
        cdef bytes b
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
        nq = len(wq)
        k = 0
        while k < nq and type(wq[k]) is bytes:
            k += 1
        if k > _MAX_IOV:
            # a deep pipeline: gather everything into one buffer rather than
            # sending 64 iovecs per completion round
            if self.wq_off:
                wq[0] = (<bytes>wq[0])[self.wq_off:]
                self.wq_off = 0
            joined = b''.join(wq[:k])
            del wq[:k]
            wq.insert(0, joined)
            nq = len(wq)
            k = 1
        op = self.spare
        if op is None:
            op = _NSendOp.__new__(_NSendOp)
            op.loop = self.loop
            op.slot = self
            op.fd = self.fd
        else:
            self.spare = None
        if k == nq:
            op.bufs = wq
            self.wq = []
        else:
            op.bufs = wq[:k]
            del wq[:k]
        for i in range(k):
            b = <bytes>op.bufs[i]
            ln = len(b)
            op.iov[i].iov_base = PyBytes_AS_STRING(b)
            op.iov[i].iov_len = ln
            total += ln
        # a partly sent head continues from its offset, without a copy
        op.off0 = self.wq_off
        self.wq_off = 0
        op.iov[0].iov_base = <char*>op.iov[0].iov_base + op.off0
        op.iov[0].iov_len -= op.off0
        total -= op.off0
        op.nbytes = total
        self.wq_bytes -= total
        self.inflight_bytes = total
        self.busy = True
        self.cur_send = op
        self.nops += 1
        if k == 1:
            sqe = self.loop._sqe(IORING_OP_SEND)
            rl_prep_rw(sqe, IORING_OP_SEND, self.fd, op.iov[0].iov_base,
                       op.iov[0].iov_len, 0, self.loop._reg(op))
        else:
            op.msg.msg_iov = op.iov
            op.msg.msg_iovlen = k
            sqe = self.loop._sqe(IORING_OP_SENDMSG)
            rl_prep_rw(sqe, IORING_OP_SENDMSG, self.fd, &op.msg, 1, 0, self.loop._reg(op))
        sqe.msg_flags = MSG_NOSIGNAL
        return 0

    cdef int _on_sent(self, _NSendOp op, int res) except -1:
        cdef Py_ssize_t sent, i, ln
        self.nops -= 1
        self.busy = False
        self.cur_send = None
        self.inflight_bytes = 0
        if res == 0 and op.nbytes > 0:
            res = -_EIO   # no progress on a non-empty send is an error, never a retry
        if self.state == _S_DEAD or self.state == _S_FREE:
            op.bufs = None
            self.spare = op
            self.table.pool_bytes -= op.nbytes
            self._maybe_recycle()
            return 0
        if res < 0:
            if res == -11 or res == -4:
                self.wq[0:0] = op.bufs
                self.wq_off = op.off0
                self.wq_bytes += op.nbytes
                op.bufs = None
                self.spare = op
                self._schedule_flush()
                return 0
            op.bufs = None
            self.spare = op
            self.table.pool_bytes -= op.nbytes
            self._fail(_oserror(-res))
            self._maybe_recycle()
            return 0
        sent = res
        if sent < op.nbytes:
            # the first buffer not sent whole goes back as the head with the
            # offset reached (no copy of the rest)
            sent += op.off0
            i = 0
            ln = len(<bytes>op.bufs[0])
            while sent >= ln:
                sent -= ln
                i += 1
                ln = len(<bytes>op.bufs[i])
            self.wq[0:0] = op.bufs[i:]
            self.wq_off = sent
            self.wq_bytes += op.nbytes - res
        op.bufs = None
        self.spare = op
        self.sent_total += res
        self.table.pool_bytes -= res
        self._after_send()
        return 0

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

    cdef int _schedule_flush(self) except -1:
        if not self.flush_scheduled and not self.busy:
            self.flush_scheduled = True
            self.loop.flush_list.append(self)
        return 0

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
        sqe = self.loop._sqe(IORING_OP_SENDMSG_ZC)
        rl_prep_rw(sqe, IORING_OP_SENDMSG_ZC, self.fd, &op.msg, 1, 0, self.loop._reg(op))
        sqe.msg_flags = MSG_NOSIGNAL | MSG_WAITALL
        return 0

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

    cdef int _submit_chain(self, _Chain ch) except -1:
        cdef Py_ssize_t i, n = len(ch.links)
        cdef io_uring_sqe *sqe
        cdef _NZcOp zop
        cdef Py_buffer view
        cdef Py_ssize_t total = ch.state.total_bytes
        if not self.loop.use_poll:
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
        if self.loop.use_poll:
            ch.next_link = 0
            ch.link_off = 0
            return self._poll_next_link(ch)
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
                sqe = self.loop._sqe(IORING_OP_SEND_ZC)
                rl_prep_rw(sqe, IORING_OP_SEND_ZC, self.fd, zop.iov[0].iov_base,
                           zop.iov[0].iov_len, 0, self.loop._reg(zop))
            else:
                sqe = self.loop._sqe(IORING_OP_SEND)
                rl_prep_rw(sqe, IORING_OP_SEND, self.fd, zop.iov[0].iov_base,
                           zop.iov[0].iov_len, 0, self.loop._reg(zop))
            sqe.msg_flags = MSG_NOSIGNAL | MSG_WAITALL
            if i + 1 < n:
                sqe.flags = IOSQE_IO_LINK
        self.table.chains += 1
        return 0

    cdef int _poll_next_link(self, _Chain ch) except -1:
        cdef _NPollLinkOp op
        cdef io_uring_sqe *sqe
        cdef Py_buffer view
        part = ch.links[ch.next_link]
        if ch.link_off:
            part = memoryview(part)[ch.link_off:]
        op = _NPollLinkOp.__new__(_NPollLinkOp)
        op.loop = self.loop
        op.slot = self
        op.fd = self.fd
        op.chain = ch
        op.buf = part
        PyObject_GetBuffer(part, &view, PyBUF_SIMPLE)
        op.nbytes = view.len
        sqe = self.loop._sqe(IORING_OP_SEND)
        rl_prep_rw(sqe, IORING_OP_SEND, self.fd, view.buf, <size_t>view.len, 0,
                   self.loop._reg(op))
        PyBuffer_Release(&view)
        sqe.msg_flags = MSG_NOSIGNAL
        self.nops += 1
        ch.ops.append(op)
        return 0

    cdef int _on_poll_link(self, _NPollLinkOp op, int res) except -1:
        # the poll backend runs a chain link by link with the same aggregate
        # result as IO_LINK: the first failure cancels the links after it
        cdef _Chain ch = op.chain
        cdef Py_ssize_t i, n = len(ch.links)
        cdef Py_ssize_t link_len = len(ch.links[ch.next_link])
        if self.state == _S_DEAD or self.state == _S_FREE:
            res = -_ECANCELED if res >= 0 else res
        if res == 0 and op.nbytes > 0:
            res = -_EIO   # no progress is an error, never a retry
        if res >= 0 and ch.link_off + res < link_len:
            ch.link_off += res
            return self._poll_next_link(ch)
        if res >= 0:
            ev = ch.state.on_op(<int>(ch.link_off + res), link_len)
        else:
            ch.state.bytes_sent += ch.link_off
            ev = ch.state.on_op(res, link_len)
            for i in range(ch.next_link + 1, n):
                ev = ch.state.on_op(-_ECANCELED, -1)
        ch.link_off = 0
        ch.next_link += 1
        if ev == 'pending':
            return self._poll_next_link(ch)
        return ch._ops_done(self, ev)

    cdef int _send_shutdown(self) except -1:
        cdef _NShutOp op
        cdef io_uring_sqe *sqe
        self.shut_sent = True
        op = _NShutOp.__new__(_NShutOp)
        op.loop = self.loop
        op.slot = self
        op.fd = self.fd
        sqe = self.loop._sqe(IORING_OP_SHUTDOWN)
        sqe.fd = self.fd
        sqe.len = SHUT_WR
        sqe.user_data = self.loop._reg(op)
        self.nops += 1
        return 0

    # -- ending --

    cdef int _wake_reader(self) except -1:
        if self.reader is not None:
            r = self.reader
            self.reader = None
            (<_ReadWait>r)._wake(False)
        return 0

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
        sqe = self.loop._sqe(IORING_OP_CLOSE)
        sqe.fd = self.fd
        sqe.user_data = RL_UD_IGNORE
        self.table.closed += 1
        self._maybe_recycle()
        return 0

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

    def __cinit__(self):
        self.slots = []
        self.free = []
        self.max_send_queue = 8 << 20
        self.recv_cap = 16 << 20
        self.zc_threshold = 65536
        self.max_connections = 1 << 20
        self.pool_limit = 1 << 30
        self.chunk_size = 16384

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

    cdef int _release(self, _ConnSlot s) except -1:
        if s.chunk is not None and s._chunk_shared():
            s.chunk = None
        s.start = s.end = 0
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


# ---------------------------------------------------------------------------
# the handle


@cython.freelist(32)
cdef class Conn:
    """A connection of ringline's native API (see ringline.Conn's docs)."""
    cdef _ConnSlot slot
    cdef readonly uint32_t gen

    def __init__(self):
        raise TypeError('Conn objects are created by ringline (connect(), handlers)')

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
        return s.end - s.start

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
        one opt-in exception to "one enter per iteration" (design.md §3.4).
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
    cdef Conn conn
    cdef list parts        # (kind, obj): 0 copy (bytes), 1 guard (memoryview)
    cdef Py_ssize_t nbytes
    cdef bint submitted

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
    cdef Conn conn
    cdef list links
    cdef list zc
    cdef Py_ssize_t nbytes
    cdef bint submitted

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
        if not loop.use_poll:
            loop._sq_reserve(2)   # CONNECT + LINK_TIMEOUT in one submission
    fut = op.fut = loop._new_future()
    sqe = loop._sqe(IORING_OP_CONNECT)
    sqe.fd = fd
    sqe.addr = <uint64_t><uintptr_t>&op.addr
    sqe.off = op.addrlen
    sqe.user_data = loop._reg(op)
    if timeout is not None:
        if loop.use_poll:
            loop.call_later(t, _connect_timed_out, op)
        else:
            sqe.flags = IOSQE_IO_LINK
            op.ts.tv_sec = <int64_t>t
            op.ts.tv_nsec = <long long>((t - <double>op.ts.tv_sec) * 1e9)
            sqe = loop._sqe(_OP_LINK_TIMEOUT)
            rl_prep_rw(sqe, _OP_LINK_TIMEOUT, -1, &op.ts, 1, 0, RL_UD_IGNORE)
    return fut, op


def _connect_timed_out(_NConnectOp op):
    if op.inflight and op.fut is not None and not op.fut.done():
        op.loop._cancel_op(op)


def _cancel_connect(_NConnectOp op):
    if op.inflight:
        op.loop._cancel_op(op)


def _listen(LoopCore loop, sock, on_fd):
    cdef _NListenOp op = _NListenOp.__new__(_NListenOp)
    op.loop = loop
    op.fd = sock.fileno()
    if loop.sock_ops:
        _fd_claim(loop, op.fd, sock)
    op.on_fd = on_fd
    op.arm()
    return op


def _listen_stop(_NListenOp op):
    op.stopped = True
    if op.inflight:
        op.loop._cancel_op(op)


def _listen_active(_NListenOp op):
    return op.inflight and not op.stopped
