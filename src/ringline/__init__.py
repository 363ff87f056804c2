"""ringline: an io_uring-native asyncio event loop for Linux.

Public API:
    new_event_loop()   a new ringline loop
    EventLoopPolicy    an asyncio policy whose loops are ringline loops
    install()          make ringline the default loop policy
    run(coro, **kw)    like asyncio.run() on a ringline loop
    backend()          which backend runs (io_uring or poll), why, and what
                       the kernel granted
    Loop               the loop class
    BackendUnavailable raised when io_uring is forced but unavailable

Backends: io_uring when the kernel grants it, else the poll backend (epoll)
automatically; RINGLINE_BACKEND=io_uring|poll or new_event_loop(backend=...)
force one.
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

from ._backend import BackendInfo, BackendUnavailable, backend
from ._loop import Loop

__all__ = ["Loop", "new_event_loop", "EventLoopPolicy", "install", "run",
           "backend", "BackendInfo", "BackendUnavailable"]
__version__ = "0.1.0"

_T = TypeVar("_T")


def new_event_loop(*, backend: str | None = None, **kwargs: Any) -> Loop:
    """Create a new ringline event loop. backend: "io_uring", "poll" or None
    (RINGLINE_BACKEND if set, else io_uring when available, else poll);
    other keyword arguments go to Loop()."""
    return Loop(backend=backend, **kwargs)


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An asyncio event loop policy that creates ringline loops."""

    def _loop_factory(self) -> Loop:  # type: ignore[override]
        return new_event_loop()


def install() -> None:
    """Set ringline's EventLoopPolicy as asyncio's current policy."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None,
        **kwargs: Any) -> _T:
    """Run a coroutine on a new ringline loop, like asyncio.run()."""
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("ringline.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop, **kwargs) as runner:
        return runner.run(main)
