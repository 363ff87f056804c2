# _conn/recv.pxi -- the receive side of a native connection (ringline.Conn).
#
# Owns: the receive accumulator's storage (_Chunk: one malloc'd buffer that
# exports views, never moved or overwritten while a view of it lives),
# need_at_least() (a handler's "give me at least n bytes" answer), the
# multishot RECV op of a slot (_NRecvOp) and _ReadWait, the awaitable of
# with_data()/with_bytes()/on_data() that a Task waits on as on a future.
#
# Lifecycle of a wait: created by the Conn call; registered on the slot
# (slot.reader) until data, EOF or an error arrives; the receive completion
# wakes the task directly (no future, no handle), inside the task's context;
# at most one waiter per connection.
#
# Invariants: bytes are consumed only by the handler's return value (a
# count, or need_at_least); a chunk that a handler still references is never
# written again: the unconsumed tail moves to a fresh chunk instead.


cdef class _NeedAtLeast:
    """need_at_least(n): a handler's answer "consume nothing, wake me with
    at least n bytes buffered"."""


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


cdef class _RecvBuffer:
    """A connection's receive accumulator: the bytes received and not yet
    consumed, chunk.buf[start:end], and how many a handler wants before it
    is called again (want: 1, or need_at_least's n).

    Lifecycle: one per connection slot, reused with it; clear() when the
    slot opens, release() when it is given back (a chunk a handler still
    references is dropped then, not reused).

    Invariants: append() never moves or overwrites the bytes of a chunk that
    anything besides this buffer references (a view a handler kept): the
    unconsumed tail moves to a fresh chunk instead; a chunk that a large
    message grew beyond 64 KiB is given back once emptied."""

    @cython.final
    cdef inline void clear(self):
        self.start = self.end = 0
        self.want = 1

    @cython.final
    cdef inline void release(self):
        if self.chunk is not None and self.shared():
            self.chunk = None
        self.start = self.end = 0
        self.want = 1

    @cython.final
    cdef inline bint shared(self):
        # somebody besides this buffer references the chunk (a view a
        # handler kept): its bytes must not move or be overwritten
        return _rl_refcnt(<PyObject*>self.chunk) > 1

    @cython.final
    cdef bint append(self, char *ptr, Py_ssize_t n, Py_ssize_t chunk_size) except -1:
        """Add n received bytes. True when the unconsumed tail had to be
        copied away from a chunk a handler still references."""
        cdef Py_ssize_t avail = self.end - self.start
        cdef Py_ssize_t need, cap
        cdef bint shared, copied = False
        cdef _Chunk nc
        if self.chunk is None:
            cap = chunk_size
            while cap < n:
                cap <<= 1
            self.chunk = _new_chunk(cap)
            self.start = self.end = 0
        shared = self.shared()
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
                copied = shared
                self.chunk = nc
                nc = None
            self.start = 0
            self.end = avail
        memcpy(self.chunk.buf + self.end, ptr, n)
        self.end += n
        return copied

    @cython.final
    cdef int reserve(self, Py_ssize_t n, Py_ssize_t chunk_size) except -1:
        """Room for n bytes from start on (need_at_least), in one chunk."""
        cdef _Chunk c = self.chunk
        cdef _Chunk nc
        cdef Py_ssize_t cap, avail
        if c is not None and c.cap - self.start >= n:
            return 0
        cap = chunk_size
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

    @cython.final
    cdef object view(self):
        """A read-only memoryview of the unconsumed bytes (it keeps the chunk
        alive, and so keeps append() from touching it, while it lives)."""
        cdef _Chunk c = self.chunk
        c.vstart = self.start
        c.vlen = self.end - self.start
        return PyMemoryView_FromObject(c)

    @cython.final
    cdef inline void consume(self, Py_ssize_t r):
        """r bytes (at most end - start) are consumed."""
        self.start += r
        self.want = 1
        if self.start == self.end and self.chunk.cap > 65536:
            self.chunk = None      # give back a chunk a big message grew
            self.start = self.end = 0


cdef class _NRecvOp(_Op):

    cdef int complete(self, int res, uint32_t flags) except -1:
        return self.slot._on_recv(res, flags)


# ---------------------------------------------------------------------------
# the awaitable of with_data / with_bytes


cdef class _ReadWait:
    """Awaitable of with_data()/with_bytes(). An asyncio Task waits on it as
    on a future (_asyncio_future_blocking protocol); a receive completion wakes
    the task directly."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self._step()

    def send(self, value):
        return self._step()

    def throw(self, typ, val=None, tb=None):
        self._unregister()
        if val is None:
            if isinstance(typ, BaseException):
                raise typ
            val = typ()
        raise val

    def close(self):
        self._unregister()

    @cython.final
    cdef int _unregister(self) except -1:
        cdef _ConnSlot slot
        if self.registered:
            self.registered = False
            slot = self.handle.slot
            if slot.reader is self:
                slot.reader = None
        self.cb = None
        self.cb_ctx = None
        return 0

    @cython.final
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
        return not self.registered

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
        if not self.registered:
            return False
        self.exc = _aexc.CancelledError() if msg is None else _aexc.CancelledError(msg)
        self.registered = False
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

    @cython.final
    cdef int _pump(self) except -1:
        # on_data(): bytes arrived for a registered reader. fn consumes them right
        # here in the completion, without resuming the task; the task is
        # woken only to finish (EOF, a closed connection, an error from fn).
        cdef _ConnSlot slot = self.handle.slot
        ctx = self.cb_ctx
        if ctx is not None:
            PyContext_Enter(ctx)
        try:
            if not self._consume_each():
                return 0                        # wait for more, still registered
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.exc = exc
        finally:
            if ctx is not None:
                PyContext_Exit(ctx)
        self.registered = False
        if slot.reader is self:
            slot.reader = None
        self._wake(True)
        return 0

    @cython.final
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

    @cython.final
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
    if self.registered:
        # resumed by the task after a wakeup
        self.registered = False
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
    self.registered = True
    self._asyncio_future_blocking = True
    Py_INCREF(self)
    out[0] = <PyObject*>self
    return 0


rl_install_am_send(<PyTypeObject*>_ReadWait, _readwait_step)

_mv_release = memoryview.release
