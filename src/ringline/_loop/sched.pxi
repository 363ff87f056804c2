# _loop/sched.pxi -- callback handles, the ready queue, the timer heap and
# the call_* scheduling API.
#
# Owns: Handle / TimerHandle (a callback, its arguments and the Context it
# runs in) and _LoopSched, the base of the loop core's class chain
# (_LoopSched -> _LoopOps -> _LoopSock -> LoopCore, see _core.pxd): the
# circular ready queue and the timer heap (each a C array holding one strong
# reference per entry), the asyncio-visible scheduling state (_closed,
# _stopping, _debug, _thread_id, ...) and the eventfd that wakes a blocked
# wait (call_soon_threadsafe).
#
# Lifecycle: handles are created by the scheduling methods, queued (ready
# queue or timer heap), run at most once (a reader's handle is re-queued on
# every readiness) and may be cancelled at any time; cancel() drops the
# callback and arguments so that cycles are broken early. A handle runs its
# callback inside its Context through the C API (PyContext_Enter/Exit): no
# bound method or tuple is allocated per run.
#
# Invariants: the ready queue's capacity is a power of two (index masks);
# the heap orders by (when, seq), seq being the scheduling order, so timers
# due at the same time run in the order they were scheduled; a TimerHandle is
# `scheduled` exactly while the heap holds it; _timer_cancelled_count counts
# the cancelled handles still in the heap (the iteration rebuilds the heap
# when they are the majority).
#
# GC-hidden handles (call_soon_threadsafe): a producer thread can queue
# handles far faster than the loop thread gets the GIL to run them (tens of
# thousands per switch interval). Each is a GC-tracked object with a fresh
# GC-tracked Context, and every young collection the allocations trigger
# would traverse all of them (measured: a quarter of the CPU of the
# call_soon_threadsafe micro-benchmark went to gc_collect_main and its
# visitors). Such a handle and the Context copied for it are therefore
# untracked while they sit in the ready queue (_gc_hide) and tracked again
# (_gc_show) as soon as the queue lets go of them: popped by the iteration or
# by close(), asked for its context (get_context/_context), or deallocated
# (its context is re-tracked before its last reference may go: CPython's
# Context dealloc requires a tracked object). While hidden, the ready queue
# holds a strong reference, so nothing they reach can be collected from
# under them (an untracked object counts as an external root); a cycle
# through one is collected once it is shown again. A context passed in by
# the caller is never untracked.
#
# Shared empty context: asyncio runs every callback in a copy of the
# Context current when it was scheduled. When that Context holds no
# variable (rl_ctx_current_empty, _c/ctxempty.h: executor threads, tasks
# that set none), the copy is an empty Context, and allocating one per call
# cost ~2.5 % of call_soon_threadsafe plus the GC and allocator work of one
# more object per handle. Such a handle gets context None instead and runs
# in the loop's own empty Context `ectx`. That is equivalent because ectx
# is empty whenever a handle enters it: after a run that leaves it with a
# variable (the callback set one), or during which someone got hold of it
# (get_context()/_context of the running handle), the handle keeps it as
# its own context (h.context = ectx, as asyncio's handle keeps the copy it
# ran in, visible to its next run if it is a reader's) and the loop starts
# a new empty one. So no callback ever sees another's variables, and ectx
# is never reachable from Python outside the one run that uses it
# (copy_context() and Task creation inside a callback copy it). A handle
# whose context is None and which is asked for it before it runs gets a
# new empty Context of its own (lazily, _own_context), then runs in that.
# If ectx is already entered when a None handle runs (a nested run inside
# a callback), that handle gets a fresh Context instead. A context passed
# in by the caller is always used as given.


import sys as _sys
from asyncio import format_helpers as _format_helpers

cdef object _empty_tuple = ()

# 3.13 added debug= (full argument reprs in debug mode, reprlib otherwise)
import inspect as _inspect_h
cdef bint _FMT_TAKES_DEBUG = "debug" in _inspect_h.signature(
    _format_helpers._format_callback_source).parameters


cdef object _callback_source(object cb, object args, _LoopSched loop):
    if _FMT_TAKES_DEBUG:
        return _format_helpers._format_callback_source(
            cb, args, debug=loop is not None and loop._debug)
    return _format_helpers._format_callback_source(cb, args)


# Freed Handles (112 bytes with the GC header on 64-bit) are kept for reuse,
# up to 65,536 per process (at most 7 MiB, held only once that many were
# queued at the same time): a call_soon_threadsafe producer queues tens of
# thousands per GIL switch interval, and with a smaller list pymalloc gave
# their arenas back and faulted fresh pages in for every batch (measured:
# 14 page faults per 1,000 calls with 1,024, 1.5 with 65,536).
@cython.freelist(65536)
cdef class Handle:
    """A callback scheduled on a ringline loop (asyncio.Handle's interface)."""

    def __cinit__(self):
        self.cancelled_ = False

    def __init__(self, callback, args, loop, context=None):
        # Python-level construction (used by code that builds handles itself).
        self.callback = callback
        self.args = tuple(args) if args is not None else _empty_tuple
        self.loop = <LoopCore?>loop
        self.context = context if context is not None else PyContext_CopyCurrent()

    @cython.final
    cdef inline int _run(self) except -1:
        cdef object ctx = self.context
        cdef object cb = self.callback
        cdef object args = self.args
        cdef object error = None
        cdef _LoopSched loop = None
        if ctx is None:
            # see "Shared empty context" in the file notes
            loop = self.loop
            if loop is None or loop.ectx_user != NULL:
                ctx = self.context = PyContext_New()
                loop = None
            else:
                ctx = loop.ectx
                loop.ectx_user = <PyObject*>self
        PyContext_Enter(ctx)
        try:
            if PyTuple_GET_SIZE(args) == 0:
                PyObject_CallNoArgs(cb)
            else:
                PyObject_Call(cb, args, NULL)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            error = exc
        finally:
            PyContext_Exit(ctx)
            if loop is not None:
                loop.ectx_user = NULL
                if self.context is not None or len(ctx) != 0:
                    # claimed or dirtied: the handle keeps it (unless a
                    # nested run of this same handle gave it a fresh one)
                    if self.context is None:
                        self.context = ctx
                    loop.ectx = PyContext_New()
        if error is not None:
            # Reported after leaving the context: from 3.12 the loop runs a
            # custom exception handler inside the handle's context
            # (ctx.run), which cannot enter a context that is still entered.
            self._report(error, cb, args)
        return 0

    @cython.final
    cdef int _report(self, object exc, object cb, object args) except -1:
        cb_repr = _callback_source(cb, args, self.loop)
        context = {
            'message': f'Exception in callback {cb_repr}',
            'exception': exc,
            'handle': self,
        }
        if self.source_tb is not None:
            context['source_traceback'] = self.source_tb
        self.loop.call_exception_handler(context)
        return 0

    def cancel(self):
        if not self.cancelled_:
            self.cancelled_ = True
            if self.loop is not None and self.loop._debug:
                self.repr_cache = self._repr_info()
            self.callback = None
            self.args = None

    def cancelled(self):
        return self.cancelled_

    def __dealloc__(self):
        # a context still hidden must be tracked before it may be freed
        _gc_track(self.context)

    @cython.final
    cdef object _own_context(self):
        # the handle's context, made its own if it had none (file notes)
        cdef _LoopSched loop
        _gc_show(self)
        if self.context is None:
            loop = self.loop
            if loop is not None and loop.ectx_user == <PyObject*>self:
                # asked while running in the shared one: it keeps that one
                self.context = loop.ectx
            else:
                self.context = PyContext_New()
        return self.context

    def get_context(self):
        return self._own_context()

    @property
    def _cancelled(self):
        return self.cancelled_

    @property
    def _callback(self):
        return self.callback

    @property
    def _args(self):
        return self.args

    @property
    def _context(self):
        return self._own_context()

    @property
    def _loop(self):
        return self.loop

    @property
    def _source_traceback(self):
        return self.source_tb

    def _repr_info(self):
        info = [self.__class__.__name__]
        if self.cancelled_:
            info.append('cancelled')
        if self.is_timer:
            info.append(f'when={(<TimerHandle>self).when_}')
        if self.callback is not None:
            info.append(_callback_source(self.callback, self.args, self.loop))
        if self.source_tb:
            frame = self.source_tb[len(self.source_tb) - 1]
            info.append(f'created at {frame[0]}:{frame[1]}')
        return info

    def __repr__(self):
        if self.repr_cache is not None:
            return self.repr_cache
        return '<{}>'.format(' '.join(self._repr_info()))


cdef class TimerHandle(Handle):
    """A callback scheduled for a point in loop time (asyncio.TimerHandle)."""

    def __init__(self, when, callback, args, loop, context=None):
        Handle.__init__(self, callback, args, loop, context)
        self.when_ = when
        self.is_timer = True

    def when(self):
        return self.when_

    @property
    def _when(self):
        return self.when_

    @property
    def _scheduled(self):
        return self.scheduled

    def cancel(self):
        if not self.cancelled_ and self.loop is not None:
            self.loop._timer_cancelled(self)
        Handle.cancel(self)

    def __hash__(self):
        return hash(self.when_)

    def __richcmp__(self, other, int op):
        if not isinstance(other, TimerHandle):
            return NotImplemented
        cdef TimerHandle o = <TimerHandle>other
        if op == 0:
            return self.when_ < o.when_
        if op == 1:
            return self.when_ < o.when_ or self.__eq_(o)
        if op == 2:
            return self.__eq_(o)
        if op == 3:
            return not self.__eq_(o)
        if op == 4:
            return self.when_ > o.when_
        if op == 5:
            return self.when_ > o.when_ or self.__eq_(o)
        return NotImplemented

    @cython.final
    cdef bint __eq_(self, TimerHandle o):
        return (self.when_ == o.when_ and self.callback == o.callback and
                self.args == o.args and self.cancelled_ == o.cancelled_)


cdef inline Handle _new_handle(_LoopSched loop, object callback, object args, object context):
    cdef Handle h = Handle.__new__(Handle)
    h.callback = callback
    h.args = args
    h.loop = loop
    if context is None and not rl_ctx_current_empty():
        context = PyContext_CopyCurrent()
    h.context = context
    return h


cdef inline void _gc_hide(Handle h, bint own_context):
    # see "GC-hidden handles" in the file notes
    PyObject_GC_UnTrack(h)
    if own_context and h.context is not None:
        PyObject_GC_UnTrack(h.context)


cdef inline void _gc_show(Handle h):
    if not PyObject_GC_IsTracked(h):
        PyObject_GC_Track(h)
        _gc_track(h.context)


cdef inline void _gc_track(object o):
    # only a GC object may be tracked (a caller's context= need not be one)
    if o is not None and PyObject_IS_GC(o) and not PyObject_GC_IsTracked(o):
        PyObject_GC_Track(o)


cdef inline TimerHandle _new_timer(_LoopSched loop, double when, object callback,
                                   object args, object context):
    cdef TimerHandle h = TimerHandle.__new__(TimerHandle)
    h.callback = callback
    h.args = args
    h.loop = loop
    if context is None and not rl_ctx_current_empty():
        context = PyContext_CopyCurrent()
    h.context = context
    h.when_ = when
    h.is_timer = True
    return h


cdef class _LoopSched:
    """Ready queue, timer heap and the call_* API (base of LoopCore)."""

    def __cinit__(self, *args, **kwargs):
        self.rq_cap = 1024
        self.rq = <PyObject**>malloc(sizeof(PyObject*) * self.rq_cap)
        self.th_cap = 256
        self.th = <TEntry*>malloc(sizeof(TEntry) * self.th_cap)
        self.wake_fd = -1
        self.ectx = PyContext_New()
        self.slow_callback_duration = 0.1
        self._clock_resolution = 1e-9
        if self.rq == NULL or self.th == NULL:
            raise MemoryError()

    def __dealloc__(self):
        # runs after the subclasses' (_LoopOps has released the driver)
        cdef Py_ssize_t i
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
        if self.wake_fd >= 0:
            c_close(self.wake_fd)
            self.wake_fd = -1
    @cython.final
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

    @cython.final
    cdef inline PyObject *_pop_ready(self):
        # Returns a strong reference the caller owns.
        cdef PyObject *p = self.rq[self.rq_head]
        self.rq_head = (self.rq_head + 1) & (self.rq_cap - 1)
        self.rq_len -= 1
        return p

    @cython.final
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

    @cython.final
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

    @cython.final
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

    @cython.final
    cdef void _timer_cancelled(self, TimerHandle h):
        if h.scheduled:
            self._timer_cancelled_count += 1

    def _timer_handle_cancelled(self, handle):
        if isinstance(handle, TimerHandle) and (<TimerHandle>handle).scheduled:
            self._timer_cancelled_count += 1

    def time(self):
        """Loop time: CLOCK_MONOTONIC seconds, as time.monotonic()."""
        return rl_monotonic()

    @cython.final
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
        _gc_hide(h, context is None)
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

    @cython.final
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

    @cython.final
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

    @cython.final
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

    def stop(self):
        self._stopping = True

    def is_running(self):
        return self._thread_id is not None

    def is_closed(self):
        return self._closed

    def get_debug(self):
        return self._debug

    @cython.final
    cdef object _new_future(self):
        return _futures.Future(loop=self)

    def create_future(self):
        """A new asyncio.Future attached to this loop."""
        return _futures.Future(loop=self)


cdef inline bint _tless(TEntry *a, TEntry *b):
    if a.when < b.when:
        return True
    if a.when > b.when:
        return False
    return a.seq < b.seq


def _format_handle(handle):
    cb = handle._callback
    if isinstance(getattr(cb, '__self__', None), _asyncio_tasks.Task):
        return repr(cb.__self__)
    return str(handle)
