"""ringline: an io_uring-native asyncio event loop for Linux.

Owns the package face: the names listed below, and the few functions that
are its own (new_event_loop, EventLoopPolicy, install, run).  Lifecycle:
importing ringline loads the native core, the loop and the Conn API; the
runtime, the timer pool, TLS and UDP are imported on first use of one of
their names (the module's ``__getattr__``), so a plain import stays cheap.
Invariants: the face imports the layers below it and never a protocol
client or ``ringline.bench``; ``ringline.run()`` refuses to nest in a
running loop.

Every name in ``__all__``, one per line (tests/test_layers.py checks that
this list and ``__all__`` are the same):

The event loop:
    Loop                the loop class
    new_event_loop      a new ringline loop
    EventLoopPolicy     an asyncio policy whose loops are ringline loops
    install             make ringline the default loop policy
    run                 like asyncio.run() on a ringline loop
    backend             which backend runs (io_uring or poll), why, and what
                        the kernel granted (a BackendInfo)
    BackendInfo         what backend() returns
    BackendUnavailable  raised when io_uring is forced but unavailable

Native connections (ringline._conn):
    Conn                a connection with a receive accumulator and a send queue
    connect             open a TCP Conn ("host:port" or (host, port))
    connect_unix        open a Unix stream Conn
    connect_tls         open a TLS connection (a TlsConn)
    wrap_server_tls     run the server side of a TLS handshake on a Conn
    TlsConn             a TLS connection with Conn's API
    UdpSocket           a datagram socket with a bounded send queue
    need_at_least       a parse callback's "give me n bytes" answer
    NEED_MORE           a parse callback's "give me more bytes" answer
    ChainResult         the outcome of a send chain
    limits              the connection limits of a loop (max_send_queue,
                        recv_accumulator_cap, send_zc_threshold,
                        max_connections, send_pool_limit)
    stats               the connection counters of a loop

The runtime (ringline._runtime: thread-per-core workers):
    Handler             base class of a server: on_start, on_accept, ...
    WorkerContext       what a worker knows about itself (handler.worker)
    serve               run a server in this process until it stops
    launch              start a server in the background (returns a Runtime)
    Runtime             a server started by launch()
    Config              the runtime's knobs
    sleep               sleep on the loop's bounded timer pool
    sleep_until         sleep until a loop time
    try_sleep           sleep, or None at once when the pool is full
    timeout             an async with block with a deadline in seconds
    timeout_at          an async with block with a deadline in loop time
    try_timeout         timeout(), or None when the pool is full
    Timeout             what timeout()/timeout_at() return
    spawn               run a standalone task (kept alive, failures logged)
    TaskHandle          what spawn() returns
    Channel             a bounded FIFO channel between tasks
    ChannelClosed       raised by a closed Channel
    ChannelEmpty        raised by Channel.try_recv() on an empty channel
    BackpressureQueue   a never-waiting sender with a bounded spill backlog

Errors:
    ConnectionClosed    the connection was closed by this side
    ConnectionDropped   the peer or the kernel ended the connection
    SendPoolExhausted   no send buffer left in the loop's pool
    QueueFull           a bounded queue is full
    TimerPoolExhausted  no timer slot left in the loop's pool
    ConfigError         a Config field is out of range

Backends: io_uring when the kernel grants it, else the poll backend (epoll)
automatically; RINGLINE_BACKEND=io_uring|poll or new_event_loop(backend=...)
force one.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Coroutine, TypeVar

from ._loop.backend import BackendInfo, BackendUnavailable
from ._errors import (ConfigError, ConnectionClosed, ConnectionDropped, QueueFull,
                      SendPoolExhausted, TimerPoolExhausted)
from ._conn.api import (NEED_MORE, ChainResult, Conn, connect, connect_unix, limits,
                        need_at_least, stats)
from ._loop.loop import Loop, backend

if TYPE_CHECKING:
    # what __getattr__ serves lazily, spelled out for type checkers (the
    # redundant aliases mark them as re-exported)
    from ._conn.timers import Timeout as Timeout
    from ._conn.timers import sleep as sleep
    from ._conn.timers import sleep_until as sleep_until
    from ._conn.timers import timeout as timeout
    from ._conn.timers import timeout_at as timeout_at
    from ._conn.timers import try_sleep as try_sleep
    from ._conn.timers import try_timeout as try_timeout
    from ._conn.tls import TlsConn as TlsConn
    from ._conn.tls import connect_tls as connect_tls
    from ._conn.tls import wrap_server_tls as wrap_server_tls
    from ._conn.udp import UdpSocket as UdpSocket
    from ._runtime.channels import BackpressureQueue as BackpressureQueue
    from ._runtime.channels import Channel as Channel
    from ._runtime.channels import ChannelClosed as ChannelClosed
    from ._runtime.channels import ChannelEmpty as ChannelEmpty
    from ._runtime.config import Config as Config
    from ._runtime.handler import Handler as Handler
    from ._runtime.handler import WorkerContext as WorkerContext
    from ._runtime.launch import Runtime as Runtime
    from ._runtime.launch import launch as launch
    from ._runtime.supervisor import serve as serve
    from ._runtime.tasks import TaskHandle as TaskHandle
    from ._runtime.tasks import spawn as spawn

# names served by modules imported on first use (the runtime, timers, TLS, UDP)
_LAZY = {
    "Handler": "_runtime.handler", "WorkerContext": "_runtime.handler",
    "serve": "_runtime.supervisor", "launch": "_runtime.launch",
    "Runtime": "_runtime.launch", "Config": "_runtime.config",
    "UdpSocket": "_conn.udp",
    "sleep": "_conn.timers", "sleep_until": "_conn.timers", "timeout": "_conn.timers",
    "timeout_at": "_conn.timers", "try_sleep": "_conn.timers",
    "try_timeout": "_conn.timers", "Timeout": "_conn.timers",
    "spawn": "_runtime.tasks", "TaskHandle": "_runtime.tasks",
    "Channel": "_runtime.channels", "ChannelClosed": "_runtime.channels",
    "BackpressureQueue": "_runtime.channels", "ChannelEmpty": "_runtime.channels",
    "TlsConn": "_conn.tls", "wrap_server_tls": "_conn.tls", "connect_tls": "_conn.tls",
}

__all__ = ["Loop", "new_event_loop", "EventLoopPolicy", "install", "run",
           "backend", "BackendInfo", "BackendUnavailable",
           "Conn", "connect", "connect_unix", "need_at_least", "NEED_MORE",
           "ChainResult", "limits", "stats", "ConnectionClosed", "ConnectionDropped",
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
