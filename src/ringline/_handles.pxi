# Callback handles: Handle (call_soon) and TimerHandle (call_later/call_at).
#
# Owns: the callback, its arguments and the contextvars.Context it runs in.
# Lifecycle: created by the loop's scheduling methods, queued (ready queue or
# timer heap, each holding one strong reference), run at most once (a reader's
# handle is re-queued on every readiness), cancelled at any time; cancel()
# drops the callback and arguments so that cycles are broken early.
# A handle runs its callback inside its Context through the C API
# (PyContext_Enter/Exit): no bound method or tuple is allocated per run.

import sys as _sys
from asyncio import format_helpers as _format_helpers

cdef object _empty_tuple = ()

# 3.13 added debug= (full argument reprs in debug mode, reprlib otherwise)
import inspect as _inspect_h
cdef bint _FMT_TAKES_DEBUG = "debug" in _inspect_h.signature(
    _format_helpers._format_callback_source).parameters


cdef object _callback_source(object cb, object args, LoopCore loop):
    if _FMT_TAKES_DEBUG:
        return _format_helpers._format_callback_source(
            cb, args, debug=loop is not None and loop._debug)
    return _format_helpers._format_callback_source(cb, args)


cdef class Handle:
    """A callback scheduled on a ringline loop (asyncio.Handle's interface)."""
    cdef object callback
    cdef object args
    cdef object context
    cdef LoopCore loop
    cdef bint cancelled_
    cdef object source_tb
    cdef object repr_cache
    cdef bint is_timer
    cdef object __weakref__     # asyncio.Handle is weak-referenceable

    def __cinit__(self):
        self.cancelled_ = False

    def __init__(self, callback, args, loop, context=None):
        # Python-level construction (used by code that builds handles itself).
        self.callback = callback
        self.args = tuple(args) if args is not None else _empty_tuple
        self.loop = <LoopCore?>loop
        self.context = context if context is not None else PyContext_CopyCurrent()

    cdef inline int _run(self) except -1:
        cdef object ctx = self.context
        cdef object cb = self.callback
        cdef object args = self.args
        cdef object error = None
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
        if error is not None:
            # Reported after leaving the context: from 3.12 the loop runs a
            # custom exception handler inside the handle's context
            # (ctx.run), which cannot enter a context that is still entered.
            self._report(error, cb, args)
        return 0

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

    def get_context(self):
        return self.context

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
        return self.context

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
    cdef double when_
    cdef bint scheduled      # currently in the loop's timer heap

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

    cdef bint __eq_(self, TimerHandle o):
        return (self.when_ == o.when_ and self.callback == o.callback and
                self.args == o.args and self.cancelled_ == o.cancelled_)


cdef inline Handle _new_handle(LoopCore loop, object callback, object args, object context):
    cdef Handle h = Handle.__new__(Handle)
    h.callback = callback
    h.args = args
    h.loop = loop
    if context is None:
        context = PyContext_CopyCurrent()
    h.context = context
    return h


cdef inline TimerHandle _new_timer(LoopCore loop, double when, object callback,
                                   object args, object context):
    cdef TimerHandle h = TimerHandle.__new__(TimerHandle)
    h.callback = callback
    h.args = args
    h.loop = loop
    if context is None:
        context = PyContext_CopyCurrent()
    h.context = context
    h.when_ = when
    h.is_timer = True
    return h
