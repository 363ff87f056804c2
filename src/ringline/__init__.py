"""ringline: an io_uring-native asyncio event loop for Linux.

Public API:
    new_event_loop()   a new ringline loop
    EventLoopPolicy    an asyncio policy whose loops are ringline loops
    install()          make ringline the default loop policy
    run(coro, **kw)    like asyncio.run() on a ringline loop
    backend()          which backend runs and what the kernel granted
    Loop               the loop class
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

from ._backend import BackendInfo, backend
from ._loop import Loop

__all__ = ["Loop", "new_event_loop", "EventLoopPolicy", "install", "run",
           "backend", "BackendInfo"]
__version__ = "0.1.0"

_T = TypeVar("_T")


def new_event_loop() -> Loop:
    """Create a new ringline event loop."""
    return Loop()


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
