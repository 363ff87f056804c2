"""The per-loop timer pool and the deadlines drawn from it: sleep and timeout.

Owns:

* the per-loop **timer pool**: a bounded count of timer slots (``Config.timer_slots``,
  set by the runtime through :func:`set_timer_slots`; 65536 by default) that
  :func:`sleep`, :func:`sleep_until`, :func:`timeout`, :func:`timeout_at` and
  their non-raising variants :func:`try_sleep` and :func:`try_timeout` draw
  from.  The timers themselves are ordinary ``loop.call_at`` handles; the pool
  bounds how many of them the native API keeps armed at once so that a flood
  of peers cannot grow the loop's timer heap without limit.
* the per-loop state object (:func:`_state_of`) that also holds the live set of
  spawned tasks (``ringline._runtime.tasks``), so that :func:`timer_stats`
  reports both.

It sits in the connection layer, not in the runtime, because connections
draw from the pool too (a TLS handshake's deadline is a :func:`timeout_at`);
the runtime and the package face re-export it.

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

Invariants: the number of slots in use never exceeds the pool's capacity and
returns to zero when no timer of this API is armed, whatever was cancelled.

Single-loop: the state binds to its loop and is not thread-safe (each
ringline worker has its own loop).
"""
from __future__ import annotations

import asyncio
import math
import weakref
from asyncio import events
from types import TracebackType
from typing import Any, Dict, Optional, Set, Type, TypeVar

from .._errors import TimerPoolExhausted

__all__ = ["sleep", "sleep_until", "try_sleep", "timeout", "timeout_at", "try_timeout",
           "Timeout", "set_timer_slots", "timer_stats", "DEFAULT_TIMER_SLOTS"]

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
