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

Native runtime (thread-per-core workers and the connection API):
    Conn, connect, connect_unix, connect_tls, need_at_least, NEED_MORE,
    ChainResult, Handler, serve, launch, Runtime, Config, UdpSocket,
    sleep, sleep_until, timeout, timeout_at, try_sleep, try_timeout, spawn,
    TaskHandle, Channel, ChannelClosed, BackpressureQueue, and the errors
    ConnectionClosed, ConnectionDropped, SendPoolExhausted, QueueFull,
    TimerPoolExhausted, ConfigError.

Backends: io_uring when the kernel grants it, else the poll backend (epoll)
automatically; RINGLINE_BACKEND=io_uring|poll or new_event_loop(backend=...)
force one.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Coroutine, TypeVar

from ._loop.backend import BackendInfo, BackendUnavailable, backend
from ._errors import (ConfigError, ConnectionClosed, ConnectionDropped, QueueFull,
                      SendPoolExhausted, TimerPoolExhausted)
from ._loop.loop import Loop
from ._native import (NEED_MORE, ChainResult, Conn, connect, connect_tls, connect_unix,
                      need_at_least)

if TYPE_CHECKING:
    # what __getattr__ serves lazily, spelled out for type checkers (the
    # redundant aliases mark them as re-exported)
    from ._config import Config as Config
    from ._runtime import Handler as Handler
    from ._runtime import Runtime as Runtime
    from ._runtime import WorkerContext as WorkerContext
    from ._runtime import launch as launch
    from ._runtime import serve as serve
    from ._tasks import BackpressureQueue as BackpressureQueue
    from ._tasks import Channel as Channel
    from ._tasks import ChannelClosed as ChannelClosed
    from ._tasks import ChannelEmpty as ChannelEmpty
    from ._tasks import TaskHandle as TaskHandle
    from ._tasks import Timeout as Timeout
    from ._tasks import sleep as sleep
    from ._tasks import sleep_until as sleep_until
    from ._tasks import spawn as spawn
    from ._tasks import timeout as timeout
    from ._tasks import timeout_at as timeout_at
    from ._tasks import try_sleep as try_sleep
    from ._tasks import try_timeout as try_timeout
    from ._tls import TlsConn as TlsConn
    from ._tls import wrap_server_tls as wrap_server_tls
    from ._udp import UdpSocket as UdpSocket

# names served by modules imported on first use (the runtime, tasks, UDP)
_LAZY = {
    "Handler": "_runtime", "serve": "_runtime", "launch": "_runtime",
    "Runtime": "_runtime", "WorkerContext": "_runtime", "Config": "_config",
    "UdpSocket": "_udp",
    "sleep": "_tasks", "sleep_until": "_tasks", "timeout": "_tasks",
    "timeout_at": "_tasks", "try_sleep": "_tasks", "try_timeout": "_tasks",
    "spawn": "_tasks", "TaskHandle": "_tasks", "Channel": "_tasks",
    "ChannelClosed": "_tasks", "BackpressureQueue": "_tasks",
    "ChannelEmpty": "_tasks", "Timeout": "_tasks",
    "TlsConn": "_tls", "wrap_server_tls": "_tls",
}

__all__ = ["Loop", "new_event_loop", "EventLoopPolicy", "install", "run",
           "backend", "BackendInfo", "BackendUnavailable",
           "Conn", "connect", "connect_unix", "connect_tls", "need_at_least",
           "NEED_MORE", "ChainResult", "ConnectionClosed", "ConnectionDropped",
           "SendPoolExhausted", "QueueFull", "TimerPoolExhausted", "ConfigError",
           *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ringline' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"ringline.{module}"), name)
    globals()[name] = value
    return value
__version__ = "0.1.0"

_T = TypeVar("_T")


def new_event_loop(*, backend: str | None = None, **kwargs: Any) -> Loop:
    """Create a new ringline event loop. backend: "io_uring", "poll" or None
    (RINGLINE_BACKEND if set, else io_uring when available, else poll);
    other keyword arguments go to Loop()."""
    return Loop(backend=backend, **kwargs)


# The policy system is deprecated from 3.14 (removal planned for 3.16):
# asyncio.DefaultEventLoopPolicy and asyncio.set_event_loop_policy() warn
# there.  ringline's policy derives from the class behind that name (the same
# class on 3.11-3.13) and install() uses the private setter when it exists, so
# neither import nor install() warns; ringline.run() or
# asyncio.run(main(), loop_factory=ringline.new_event_loop) is the way forward.
_unix_events = asyncio.unix_events
_PolicyBase = getattr(_unix_events, "_UnixDefaultEventLoopPolicy", None)
if _PolicyBase is None:          # pragma: no cover - a future Python
    _PolicyBase = getattr(asyncio.events, "_BaseDefaultEventLoopPolicy", object)


class EventLoopPolicy(_PolicyBase):  # type: ignore[misc, valid-type]
    """An asyncio event loop policy that creates ringline loops (prefer
    ringline.run() or asyncio.run(..., loop_factory=ringline.new_event_loop):
    asyncio deprecates policies from Python 3.14)."""

    def _loop_factory(self) -> Loop:  # type: ignore[override]
        return new_event_loop()


def install() -> None:
    """Set ringline's EventLoopPolicy as asyncio's current policy, so that
    asyncio.new_event_loop() and asyncio.run() without a loop_factory create
    ringline loops.  Works without a DeprecationWarning on 3.11-3.14; where
    asyncio has no policy system any more it raises RuntimeError."""
    setter = getattr(asyncio.events, "_set_event_loop_policy", None)
    if setter is None:
        setter = getattr(asyncio.events, "set_event_loop_policy", None)
    if setter is None or _PolicyBase is object:
        raise RuntimeError(
            "this Python has no asyncio event loop policies: use ringline.run(main()) "
            "or asyncio.run(main(), loop_factory=ringline.new_event_loop)")
    setter(EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None,
        **kwargs: Any) -> _T:
    """Run a coroutine on a new ringline loop, like asyncio.run()."""
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("ringline.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop, **kwargs) as runner:
        return runner.run(main)
