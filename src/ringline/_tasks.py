"""Timers, standalone tasks and bounded channels of ringline's native runtime.

Owns:

* the per-loop **timer pool**: a bounded count of timer slots (``Config.timer_slots``,
  set by the runtime through :func:`set_timer_slots`; 65536 by default) that
  :func:`sleep`, :func:`sleep_until`, :func:`timeout`, :func:`timeout_at` and
  their non-raising variants :func:`try_sleep` and :func:`try_timeout` draw
  from.  The timers themselves are ordinary ``loop.call_at`` handles; the pool
  bounds how many of them the native API keeps armed at once so that a flood
  of peers cannot grow the loop's timer heap without limit.
* :func:`spawn` / :class:`TaskHandle`: standalone tasks that are kept alive by
  the loop (asyncio only keeps weak references to tasks) and whose failures are
  logged on logger ``ringline.tasks`` instead of being lost.
* :class:`Channel`: a bounded, single-loop FIFO channel, and
  :class:`BackpressureQueue`: the "reader never blocks" helper that spills
  into a small local backlog while the channel is full.

Lifecycles:

* timer slot: taken when a timer is armed (a sleep starts, a timeout is
  entered or rescheduled from "no deadline" to a deadline, ``try_timeout``
  reserves one at creation); returned exactly once, when the timer fires, when
  it is cancelled (the sleeping task is cancelled, the timeout block exits or
  is rescheduled to ``None``) or -- for a ``try_timeout`` object that is never
  entered -- when the object is garbage collected.  ``sleep(0)`` and other
  deadlines already in the past only yield and hold no slot.
* timeout: CREATED -> ENTERED -> (EXPIRING -> EXPIRED) | EXITED.  On expiry
  the task is cancelled; leaving the block turns that cancellation (and only
  that one: ``Task.uncancel`` counts are compared) into ``TimeoutError``.
* spawned task: running -> done (result | exception | cancelled); it is in
  the loop's live set until done; an exception is logged unless a waiter of
  its handle receives it.
* channel: open -> closed.  ``close()`` wakes every waiter; senders then get
  :class:`ChannelClosed`, receivers drain what is buffered and then get
  :class:`ChannelClosed`.

Invariants: the number of slots in use never exceeds the pool's capacity and
returns to zero when no timer of this API is armed, whatever was cancelled;
a channel never holds more than ``capacity`` items; no item is lost or
duplicated when a sender or receiver is cancelled (a wake-up that a cancelled
waiter received is passed on to the next waiter); a BackpressureQueue keeps
the order of enqueued items across spilling and draining and never holds more
than ``cap`` items.

Everything here is single-loop: objects bind to the loop that first uses
them and are not thread-safe (each ringline worker has its own loop).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import weakref
from asyncio import events
from types import TracebackType
from typing import (Any, AsyncIterator, Callable, Coroutine, Deque, Dict, Generator,
                    Generic, List, Optional, Set, Type, TypeVar)

from ._errors import QueueFull, TimerPoolExhausted

__all__ = ["sleep", "sleep_until", "try_sleep", "timeout", "timeout_at", "try_timeout",
           "Timeout", "spawn", "TaskHandle", "Channel", "ChannelClosed", "ChannelEmpty",
           "BackpressureQueue", "set_timer_slots", "timer_stats", "DEFAULT_TIMER_SLOTS"]

logger = logging.getLogger("ringline.tasks")

_T = TypeVar("_T")

DEFAULT_TIMER_SLOTS = 65536


# --------------------------------------------------------------------------
# per-loop state: the timer pool and the live set of spawned tasks
# --------------------------------------------------------------------------

class _LoopState:
    """What this module keeps per loop. The slot counters are plain ints:
    everything runs on the loop's own thread."""

    __slots__ = ("capacity", "in_use", "peak", "exhausted", "spawned", "__weakref__")

    def __init__(self) -> None:
        self.capacity = DEFAULT_TIMER_SLOTS
        self.in_use = 0
        self.peak = 0
        self.exhausted = 0
        self.spawned: Set[asyncio.Task] = set()

    def try_acquire(self) -> bool:
        if self.in_use >= self.capacity:
            self.exhausted += 1
            return False
        self.in_use += 1
        if self.in_use > self.peak:
            self.peak = self.in_use
        return True

    def acquire(self, what: str) -> None:
        if not self.try_acquire():
            raise TimerPoolExhausted(
                f"{what}: all {self.capacity} timer slots of this loop are in use "
                "(raise Config.timer_slots, or use ringline.try_sleep()/try_timeout() "
                "to shed load instead of failing)")

    def release(self) -> None:
        self.in_use -= 1


_STATE_ATTR = "_ringline_tasks_state"
# loops that refuse new attributes (no __dict__) keep their state here
_foreign_states: "weakref.WeakKeyDictionary[Any, _LoopState]" = weakref.WeakKeyDictionary()


def _state_of(loop: Any) -> _LoopState:
    state = getattr(loop, _STATE_ATTR, None)
    if state is None:
        state = _LoopState()
        try:
            setattr(loop, _STATE_ATTR, state)
        except AttributeError:
            state = _foreign_states.setdefault(loop, state)
    return state


def _running_loop(what: str) -> asyncio.AbstractEventLoop:
    try:
        return events.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"ringline.{what}() needs a running event loop (inside "
                           "ringline.serve or asyncio.Runner(loop_factory="
                           "ringline.new_event_loop))") from None


def set_timer_slots(loop: asyncio.AbstractEventLoop, slots: int) -> None:
    """Set how many timers of this API may be armed at once on ``loop``.

    Lowering it below the number in use is allowed: new timers then fail
    until enough of the armed ones fire or are cancelled."""
    if not isinstance(slots, int) or isinstance(slots, bool) or slots <= 0:
        raise ValueError(f"timer_slots must be a positive int, got {slots!r}")
    _state_of(loop).capacity = slots


def timer_stats(loop: Optional[asyncio.AbstractEventLoop] = None) -> Dict[str, int]:
    """Timer pool counters of ``loop`` (the running one by default):
    capacity, in_use, peak, exhausted (how many requests found no slot) and
    spawned (live spawned tasks)."""
    if loop is None:
        loop = _running_loop("timer_stats")
    state = _state_of(loop)
    return {"capacity": state.capacity, "in_use": state.in_use, "peak": state.peak,
            "exhausted": state.exhausted, "spawned": len(state.spawned)}


# --------------------------------------------------------------------------
# sleeping
# --------------------------------------------------------------------------

def _check_number(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{what} must not be NaN")
    return value


def _wake_sleeper(fut: asyncio.Future, state: _LoopState) -> None:
    # A sleeper cancelled before its timer ran returns the slot itself (in
    # _sleep_armed); here only a live sleeper is woken and the slot returned.
    if fut.done():
        return
    state.release()
    fut.set_result(None)


async def _sleep_armed(loop: asyncio.AbstractEventLoop, state: _LoopState,
                       deadline: float) -> None:
    """Sleep until deadline on a slot already taken from state."""
    fut = loop.create_future()
    handle = loop.call_at(deadline, _wake_sleeper, fut, state)
    try:
        await fut
    except BaseException:
        # The timer did not wake us if the future is still pending or was
        # cancelled (the callback skips done futures): cancel it and give the
        # slot back here, exactly once.
        if not fut.done() or fut.cancelled():
            handle.cancel()
            state.release()
        raise


async def sleep(seconds: float, result: _T = None) -> _T:  # type: ignore[assignment]
    """Suspend the current task for ``seconds`` (like ``asyncio.sleep``), using
    one timer slot of the loop's pool while it sleeps.

    Raises TimerPoolExhausted when every slot is in use. ``seconds <= 0``
    only yields to the loop once and uses no slot."""
    _check_number(seconds, "seconds")
    loop = _running_loop("sleep")
    if seconds <= 0:
        await asyncio.sleep(0)
        return result
    state = _state_of(loop)
    state.acquire("ringline.sleep()")
    await _sleep_armed(loop, state, loop.time() + seconds)
    return result


async def sleep_until(deadline: float, result: _T = None) -> _T:  # type: ignore[assignment]
    """Suspend the current task until ``loop.time() >= deadline``; like
    :func:`sleep`, it holds one timer slot while it waits."""
    _check_number(deadline, "deadline")
    loop = _running_loop("sleep_until")
    if deadline <= loop.time():
        await asyncio.sleep(0)
        return result
    state = _state_of(loop)
    state.acquire("ringline.sleep_until()")
    await _sleep_armed(loop, state, deadline)
    return result


async def try_sleep(seconds: float) -> Optional[bool]:
    """Like :func:`sleep`, but when no timer slot is free it returns None at
    once (without sleeping) instead of raising. Returns True after sleeping."""
    _check_number(seconds, "seconds")
    loop = _running_loop("try_sleep")
    if seconds <= 0:
        await asyncio.sleep(0)
        return True
    state = _state_of(loop)
    if not state.try_acquire():
        return None
    await _sleep_armed(loop, state, loop.time() + seconds)
    return True


# --------------------------------------------------------------------------
# timeouts
# --------------------------------------------------------------------------

_CREATED, _ENTERED, _EXPIRING, _EXPIRED, _EXITED = (
    "created", "active", "expiring", "expired", "finished")


class Timeout:
    """An ``async with`` block that cancels the current task at a deadline
    and turns that cancellation into ``TimeoutError`` when the block exits
    (the semantics of ``asyncio.timeout``), holding one timer slot of the
    loop's pool while a deadline is armed.

    Create it with :func:`timeout`, :func:`timeout_at` or :func:`try_timeout`.
    """

    __slots__ = ("_when", "_state", "_task", "_loop", "_pool", "_handle", "_holds_slot",
                 "_cancelling")

    def __init__(self, when: Optional[float]) -> None:
        if when is not None:
            _check_number(when, "deadline")
        self._when = when
        self._state = _CREATED
        self._task: Optional[asyncio.Task] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._pool: Optional[_LoopState] = None
        self._handle: Optional[asyncio.TimerHandle] = None
        self._holds_slot = False
        self._cancelling = 0

    def when(self) -> Optional[float]:
        """The deadline in loop.time() units, or None."""
        return self._when

    def expired(self) -> bool:
        """Whether the deadline was reached (the task was cancelled by it)."""
        return self._state in (_EXPIRING, _EXPIRED)

    def reschedule(self, when: Optional[float]) -> None:
        """Move the deadline (loop.time() units; None disarms it and returns
        the slot). Arming a block that had no deadline takes a slot and may
        raise TimerPoolExhausted."""
        if self._state is not _ENTERED:
            raise RuntimeError(f"cannot reschedule a timeout that is {self._state}")
        if when is not None:
            _check_number(when, "deadline")
            if not self._holds_slot:
                # may raise: then nothing has changed
                assert self._pool is not None
                self._pool.acquire("ringline.timeout().reschedule()")
                self._holds_slot = True
        self._disarm_timer()
        self._when = when
        if when is None:
            self._give_back_slot()
            return
        assert self._loop is not None
        self._handle = self._loop.call_at(when, self._on_deadline)

    def __repr__(self) -> str:
        return f"<ringline.Timeout {self._state} when={self._when}>"

    async def __aenter__(self) -> "Timeout":
        self._enter()
        return self

    def _enter(self) -> None:
        if self._state is not _CREATED:
            raise RuntimeError("a ringline Timeout can be entered only once")
        loop = _running_loop("timeout")
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("ringline.timeout() must be used inside a task")
        if self._pool is not None and self._loop is not loop:
            raise RuntimeError("this try_timeout() was created on another event loop")
        self._loop = loop
        self._task = task
        self._cancelling = task.cancelling()
        if self._pool is None:
            self._pool = _state_of(loop)
        self._state = _ENTERED
        if self._when is None:
            self._give_back_slot()
            return
        if not self._holds_slot:
            self._pool.acquire("ringline.timeout()")
            self._holds_slot = True
        self._handle = loop.call_at(self._when, self._on_deadline)

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        self._disarm_timer()
        self._give_back_slot()
        if self._state is _EXPIRING:
            self._state = _EXPIRED
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError(f"ringline.timeout: deadline {self._when} reached") from exc
        elif self._state is _ENTERED:
            self._state = _EXITED
        return None

    def _on_deadline(self) -> None:
        self._handle = None
        self._give_back_slot()
        assert self._task is not None
        self._task.cancel()
        self._state = _EXPIRING

    def _disarm_timer(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _give_back_slot(self) -> None:
        if self._holds_slot:
            self._holds_slot = False
            assert self._pool is not None
            self._pool.release()

    def __del__(self) -> None:
        # only a try_timeout() that was never entered can still hold a slot
        if self._state is _CREATED and self._holds_slot:
            self._give_back_slot()


def timeout(seconds: Optional[float]) -> Timeout:
    """``async with ringline.timeout(1.5): ...`` raises TimeoutError if the
    block runs longer than ``seconds`` (None: no deadline). Entering the block
    raises TimerPoolExhausted when no timer slot is free."""
    if seconds is None:
        return Timeout(None)
    _check_number(seconds, "seconds")
    return Timeout(_running_loop("timeout").time() + seconds)


def timeout_at(deadline: Optional[float]) -> Timeout:
    """Like :func:`timeout` with an absolute deadline in loop.time() units."""
    return Timeout(deadline)


def try_timeout(seconds: Optional[float]) -> Optional[Timeout]:
    """Like :func:`timeout`, but reserves the timer slot now and returns None
    when none is free, so the caller can shed load instead of failing::

        cm = ringline.try_timeout(2.0)
        if cm is None:
            conn.close()          # overloaded: refuse this peer
            return
        async with cm:
            ...

    Enter the returned block right away; one never entered gives its slot
    back when it is garbage collected."""
    loop = _running_loop("try_timeout")
    if seconds is None:
        return Timeout(None)
    _check_number(seconds, "seconds")
    state = _state_of(loop)
    if not state.try_acquire():
        return None
    cm = Timeout(loop.time() + seconds)
    cm._loop = loop
    cm._pool = state
    cm._holds_slot = True
    return cm


# --------------------------------------------------------------------------
# standalone tasks
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# channels
# --------------------------------------------------------------------------

class ChannelClosed(Exception):
    """The channel is closed: nothing more can be sent, and everything that
    was buffered has been received."""


class ChannelEmpty(asyncio.QueueEmpty):
    """try_recv() found the channel open and empty."""


def _wake_first(waiters: Deque[asyncio.Future]) -> None:
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(None)
            return


def _wake_all(waiters: Any) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(None)
    waiters.clear()


class Channel(Generic[_T]):
    """A bounded FIFO channel between tasks of one loop.

    ``try_send`` never waits (QueueFull when full), ``send`` waits for room;
    ``recv`` waits for an item, ``try_recv`` never waits (ChannelEmpty).
    After ``close()`` sends raise ChannelClosed and receives drain what is
    buffered, then raise ChannelClosed. Every receive notifies the
    ``on_recv`` callbacks and wakes ``wait_room()`` waiters: this is the
    drain signal a :class:`BackpressureQueue` waits for."""

    __slots__ = ("_capacity", "_items", "_closed", "_getters", "_putters",
                 "_room_waiters", "_recv_hooks", "_loop")

    def __init__(self, capacity: int) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"Channel capacity must be an int >= 1, got {capacity!r}")
        self._capacity = capacity
        self._items: Deque[_T] = collections.deque()
        self._closed = False
        self._getters: Deque[asyncio.Future] = collections.deque()
        self._putters: Deque[asyncio.Future] = collections.deque()
        self._room_waiters: List[asyncio.Future] = []
        self._recv_hooks: List[Callable[[], Any]] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def is_closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def len(self) -> int:
        """Items buffered now (same as ``len(channel)``)."""
        return len(self._items)

    def is_full(self) -> bool:
        return len(self._items) >= self._capacity

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ringline.Channel {state} {len(self._items)}/{self._capacity}>"

    # -- sending --------------------------------------------------------

    def try_send(self, item: _T) -> None:
        """Put item in the channel now; QueueFull when it is full,
        ChannelClosed when it is closed."""
        if self._closed:
            raise ChannelClosed("send on a closed channel")
        if len(self._items) >= self._capacity:
            raise QueueFull(f"channel is full ({self._capacity} items)")
        self._items.append(item)
        if self._getters:
            _wake_first(self._getters)

    async def send(self, item: _T) -> None:
        """Put item in the channel, waiting while it is full; ChannelClosed
        if it is (or gets) closed before the item went in."""
        first_wait = True
        while True:
            if self._closed:
                raise ChannelClosed("send on a closed channel")
            if len(self._items) < self._capacity:
                self._items.append(item)
                if self._getters:
                    _wake_first(self._getters)
                return
            fut = self._new_future()
            # a sender woken for room that another sender took keeps its turn
            if first_wait:
                self._putters.append(fut)
                first_wait = False
            else:
                self._putters.appendleft(fut)
            try:
                await fut
            except BaseException:
                fut.cancel()
                try:
                    self._putters.remove(fut)
                except ValueError:
                    pass
                if not fut.cancelled() and len(self._items) < self._capacity:
                    _wake_first(self._putters)    # pass the wake-up on
                raise

    # -- receiving ------------------------------------------------------

    def try_recv(self) -> _T:
        """Take the oldest item now; ChannelEmpty when there is none,
        ChannelClosed when closed and drained."""
        if self._items:
            return self._take()
        if self._closed:
            raise ChannelClosed("channel is closed and drained")
        raise ChannelEmpty("channel is empty")

    async def recv(self) -> _T:
        """Take the oldest item, waiting while the channel is empty;
        ChannelClosed once it is closed and drained."""
        while not self._items:
            if self._closed:
                raise ChannelClosed("channel is closed and drained")
            fut = self._new_future()
            self._getters.append(fut)
            try:
                await fut
            except BaseException:
                fut.cancel()
                try:
                    self._getters.remove(fut)
                except ValueError:
                    pass
                if not fut.cancelled() and self._items:
                    _wake_first(self._getters)    # pass the wake-up on
                raise
        return self._take()

    def __aiter__(self) -> AsyncIterator[_T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[_T]:
        while True:
            try:
                item = await self.recv()
            except ChannelClosed:
                return
            yield item

    def _take(self) -> _T:
        item = self._items.popleft()
        if self._putters:
            _wake_first(self._putters)
        if self._room_waiters:
            _wake_all(self._room_waiters)
        if self._recv_hooks:
            for hook in tuple(self._recv_hooks):
                try:
                    hook()
                except Exception:
                    logger.exception("Channel on_recv callback %r failed", hook)
        return item

    # -- drain signal ---------------------------------------------------

    def on_recv(self, callback: Callable[[], Any]) -> Callable[[], None]:
        """Call ``callback()`` after every item received (synchronously, on
        the loop). Returns a function that unregisters it. Exceptions of the
        callback are logged, never raised into the receiver."""
        if not callable(callback):
            raise TypeError("on_recv needs a callable")
        self._recv_hooks.append(callback)

        def remove() -> None:
            try:
                self._recv_hooks.remove(callback)
            except ValueError:
                pass
        return remove

    async def wait_room(self) -> None:
        """Return once the channel has room or is closed (at once if it
        already has): level-triggered, so a receive that happened before the
        call is never missed."""
        while not self._closed and len(self._items) >= self._capacity:
            fut = self._new_future()
            self._room_waiters.append(fut)
            try:
                await fut
            finally:
                if not fut.done():
                    fut.cancel()
                    try:
                        self._room_waiters.remove(fut)
                    except ValueError:
                        pass

    # -- closing --------------------------------------------------------

    def close(self) -> None:
        """Close the channel (idempotent) and wake every waiter."""
        if self._closed:
            return
        self._closed = True
        _wake_all(self._getters)
        _wake_all(self._putters)
        _wake_all(self._room_waiters)

    def _new_future(self) -> asyncio.Future:
        loop = events.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("a ringline Channel is bound to the event loop that first "
                               "waited on it; it cannot be used from another loop")
        return loop.create_future()


class BackpressureQueue(Generic[_T]):
    """Sends into a :class:`Channel` without ever waiting: while the channel
    is full, items spill into a local backlog of at most ``cap`` items.

    The producer (typically a connection's reader, which must keep reading)
    calls :meth:`enqueue_or_send`; when it raises QueueFull the consumer is
    too slow and the producer should shed its peer. Items leave the backlog
    via :meth:`try_drain`, typically after ``await queue.drained()`` (which
    returns once the consumer has received something, i.e. there is room).
    Order is kept: while the backlog is non-empty new items go behind it.
    ``cap == 0`` allows no spill at all."""

    __slots__ = ("_channel", "_cap", "_backlog")

    def __init__(self, channel: Channel[_T], cap: int) -> None:
        if not isinstance(channel, Channel):
            raise TypeError("BackpressureQueue needs a ringline.Channel")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            raise ValueError(f"cap must be an int >= 0, got {cap!r}")
        self._channel = channel
        self._cap = cap
        self._backlog: Deque[_T] = collections.deque()

    @property
    def channel(self) -> Channel[_T]:
        return self._channel

    @property
    def cap(self) -> int:
        return self._cap

    @property
    def backlog(self) -> int:
        """Items waiting in the local backlog."""
        return len(self._backlog)

    @property
    def has_pending(self) -> bool:
        return bool(self._backlog)

    def __len__(self) -> int:
        return len(self._backlog)

    def len(self) -> int:
        return len(self._backlog)

    def __repr__(self) -> str:
        return f"<ringline.BackpressureQueue backlog={len(self._backlog)}/{self._cap}>"

    def enqueue_or_send(self, item: _T) -> None:
        """Send item into the channel, or append it to the backlog when the
        channel is full or the backlog is non-empty. Raises QueueFull when the
        backlog is already at its cap (shed the peer) and ChannelClosed when
        the channel is closed."""
        channel = self._channel
        if channel._closed:
            raise ChannelClosed("backpressure queue: the channel is closed")
        if not self._backlog:
            if len(channel._items) < channel._capacity:
                channel.try_send(item)
                return
        if len(self._backlog) >= self._cap:
            raise QueueFull(f"backpressure backlog is full ({self._cap} items and the "
                            f"channel's {channel._capacity}): the consumer is too slow; "
                            "shed the peer")
        self._backlog.append(item)

    def try_drain(self) -> int:
        """Move backlog items into the channel while it has room; returns how
        many moved. ChannelClosed if the channel is closed while items are
        still waiting."""
        backlog = self._backlog
        if not backlog:
            return 0
        channel = self._channel
        if channel._closed:
            raise ChannelClosed("backpressure queue: the channel is closed with "
                                f"{len(backlog)} items still in the backlog")
        moved = 0
        while backlog and len(channel._items) < channel._capacity:
            channel.try_send(backlog.popleft())
            moved += 1
        return moved

    async def drained(self) -> None:
        """Wait until the consumer has made room in the channel (it signals
        after each receive) or the channel is closed; returns at once if
        there is room already. Follow it with :meth:`try_drain`."""
        await self._channel.wait_room()

    async def flush(self) -> None:
        """Wait until the whole backlog is in the channel (ChannelClosed if
        the channel closes first)."""
        while self._backlog:
            await self._channel.wait_room()
            self.try_drain()
