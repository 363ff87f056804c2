"""Bounded channels between tasks of one loop: :class:`Channel` and
:class:`BackpressureQueue`.

Owns: :class:`Channel`, a bounded, single-loop FIFO channel, and
:class:`BackpressureQueue`, the "reader never blocks" helper that spills
into a small local backlog while the channel is full.

Lifecycle: channel: open -> closed.  ``close()`` wakes every waiter; senders
then get :class:`ChannelClosed`, receivers drain what is buffered and then get
:class:`ChannelClosed`.

Invariants: a channel never holds more than ``capacity`` items; no item is
lost or duplicated when a sender or receiver is cancelled (a wake-up that a
cancelled waiter received is passed on to the next waiter); a
BackpressureQueue keeps the order of enqueued items across spilling and
draining and never holds more than ``cap`` items.

Single-loop: a channel binds to the loop that first waits on it and is not
thread-safe (each ringline worker has its own loop).
"""
from __future__ import annotations

import asyncio
import collections
import logging
from asyncio import events
from typing import Any, AsyncIterator, Callable, Deque, Generic, List, Optional, TypeVar

from .._errors import QueueFull

__all__ = ["Channel", "ChannelClosed", "ChannelEmpty", "BackpressureQueue"]

logger = logging.getLogger("ringline.tasks")

_T = TypeVar("_T")


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
