"""Standalone tasks of ringline's native runtime: :func:`spawn` and :class:`TaskHandle`.

Owns: starting a coroutine as a task that the loop keeps alive (asyncio only
keeps weak references to tasks) and whose failure is logged on logger
``ringline.tasks`` instead of being lost.  The live set is the per-loop state
of ``ringline._conn.timers`` (so ``timer_stats()["spawned"]`` counts it).

Lifecycle: spawned task: running -> done (result | exception | cancelled); it
is in the loop's live set until done; an exception is logged unless a waiter
of its handle receives it.

Invariants: a spawned task is strongly referenced until it is done, and
removed from the live set when it is; awaiting a handle never cancels the
task (only :meth:`TaskHandle.abort` does).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine, Generator, Generic, Optional, TypeVar

from .._conn.timers import _running_loop, _state_of

__all__ = ["spawn", "TaskHandle"]

logger = logging.getLogger("ringline.tasks")

_T = TypeVar("_T")


class TaskHandle(Generic[_T]):
    """A handle to a task started by :func:`spawn`.

    ``await handle`` waits for the task and returns its result or raises its
    exception (``CancelledError`` if it was aborted); cancelling the waiter
    does not cancel the task -- :meth:`abort` does."""

    __slots__ = ("_task", "_waiters")

    def __init__(self, task: "asyncio.Task[_T]") -> None:
        self._task = task
        self._waiters = 0

    def abort(self) -> bool:
        """Cancel the task; False if it had already finished."""
        return self._task.cancel()

    def done(self) -> bool:
        return self._task.done()

    def cancelled(self) -> bool:
        return self._task.cancelled()

    def result(self) -> _T:
        """The task's result; raises like ``asyncio.Task.result()``."""
        return self._task.result()

    @property
    def name(self) -> str:
        return self._task.get_name()

    @property
    def task(self) -> "asyncio.Task[_T]":
        """The underlying asyncio task."""
        return self._task

    def __await__(self) -> Generator[Any, None, _T]:
        task = self._task
        if not task.done():
            waiter = task.get_loop().create_future()

            def wake(_task: asyncio.Task) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            task.add_done_callback(wake)
            self._waiters += 1
            try:
                yield from waiter
            finally:
                self._waiters -= 1
                task.remove_done_callback(wake)
        return task.result()

    def __repr__(self) -> str:
        state = "done" if self._task.done() else "running"
        return f"<ringline.TaskHandle {self._task.get_name()} {state}>"

    def _on_done(self, task: asyncio.Task) -> None:
        # registered first, so it runs before any waiter's wake-up callback:
        # a failure a waiter will receive is not logged, any other is.
        if task.cancelled():
            return
        exc = task.exception()   # also marks it retrieved for asyncio
        if exc is not None and self._waiters == 0:
            logger.error("spawned task %s failed: %s: %s", task.get_name(),
                         type(exc).__name__, exc, exc_info=exc)


def spawn(coro: Coroutine[Any, Any, _T], *, name: Optional[str] = None) -> TaskHandle[_T]:
    """Run ``coro`` as a standalone task on the running loop.

    The loop keeps the task alive until it finishes (no need to hold the
    handle); an exception it ends with is logged on ``ringline.tasks``
    unless someone is awaiting the handle."""
    loop = _running_loop("spawn")
    if not asyncio.iscoroutine(coro):
        raise TypeError(f"spawn() needs a coroutine, got {type(coro).__name__}")
    task = loop.create_task(coro, name=name)
    handle = TaskHandle(task)
    live = _state_of(loop).spawned
    live.add(task)
    task.add_done_callback(handle._on_done)
    task.add_done_callback(live.discard)
    return handle
