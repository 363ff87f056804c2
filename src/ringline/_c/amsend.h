/* ringline: an am_send slot for the native awaitables (_ReadWait).
 *
 * `await conn.with_data(fn)` drives the awaitable through PyIter_Send, which
 * uses tp_as_async->am_send when the type has one: the awaitable can then
 * hand back its result (PYGEN_RETURN) without raising StopIteration, which
 * for a Cython __next__ also means building a traceback frame per call.
 * The step function itself is written in Cython; this file only adapts its
 * return convention (1 done, 0 yield, -1 error) to PySendResult.
 */
#ifndef RINGLINE_AMSEND_H
#define RINGLINE_AMSEND_H
#include <Python.h>

typedef int (*rl_step_fn)(PyObject *self, PyObject **out);

static rl_step_fn rl_readwait_step = NULL;

static PySendResult rl_readwait_am_send(PyObject *self, PyObject *arg, PyObject **result)
{
    PyObject *out = NULL;
    int rc;
    (void)arg;
    rc = rl_readwait_step(self, &out);
    if (rc < 0) {
        *result = NULL;
        return PYGEN_ERROR;
    }
    *result = out;
    return rc == 1 ? PYGEN_RETURN : PYGEN_NEXT;
}

static int rl_install_am_send(PyTypeObject *tp, rl_step_fn fn)
{
    if (tp->tp_as_async == NULL)
        return -1;
    rl_readwait_step = fn;
    tp->tp_as_async->am_send = rl_readwait_am_send;
    return 0;
}
#endif
