/* ringline: is the calling thread's current contextvars Context empty?
 *
 * The scheduling methods (call_soon, call_soon_threadsafe, call_later, ...)
 * must run a callback in a copy of the caller's Context. When that Context
 * holds no variable, the copy is indistinguishable from a fresh empty
 * Context, and the loop runs the handle in a loop-owned empty Context
 * instead of allocating a copy per call (see "Shared empty context" in
 * _loop/sched.pxi for why that is safe).
 *
 * rl_ctx_current_empty() answers the question without allocating: it reads
 * the thread state's current context (PyThreadState.context, declared in
 * CPython's cpython/pystate.h from 3.11 to 3.13; NULL while the thread has
 * never entered a Context, which means empty) and asks its length (the
 * Context mapping's mp_length, the variable count of its HAMT, never
 * failing). On any other Python (or the free-threaded build, whose thread
 * state layout we do not rely on) it answers 0 and callers copy as before.
 * No state; the GIL must be held.
 */
#ifndef RINGLINE_CTXEMPTY_H
#define RINGLINE_CTXEMPTY_H
#include <Python.h>

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 \
    && !defined(Py_GIL_DISABLED) && !defined(Py_LIMITED_API) \
    && !defined(PYPY_VERSION)
#define RL_CTX_EMPTY_FAST 1
#else
#define RL_CTX_EMPTY_FAST 0
#endif

static inline int rl_ctx_current_empty(void)
{
#if RL_CTX_EMPTY_FAST
    PyObject *ctx = PyThreadState_Get()->context;
    if (ctx == NULL)
        return 1;
    return Py_TYPE(ctx)->tp_as_mapping->mp_length(ctx) == 0;
#else
    return 0;
#endif
}

#endif /* RINGLINE_CTXEMPTY_H */
