"""Exceptions of ringline's native runtime, shared by every module.

Owns the exception classes in ``__all__``.  They are plain classes with no
state beyond their message (and, for ConnectionDropped, the reason), so any
layer may raise them: the connection core, the runtime, the timer pool,
queues and the protocol clients.

Lifecycle: none (class definitions only).

Invariants: a leaf -- this module imports nothing of ringline; each class
derives from the builtin exception a caller already catches for that kind
of failure (ConnectionError, BufferError, RuntimeError, ValueError; QueueFull
from Exception).
"""
from __future__ import annotations

__all__ = ["ConnectionClosed", "ConnectionDropped", "QueueFull",
           "TimerPoolExhausted", "ConfigError", "SendPoolExhausted"]


class ConnectionClosed(ConnectionError):
    """An operation was attempted on a connection that is closed (or whose
    slot now belongs to a newer connection)."""


class ConnectionDropped(ConnectionError):
    """The connection was dropped by ringline; ``reason`` says why (for
    example the send queue limit or the receive accumulator cap)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"connection dropped: {reason}")
        self.reason = reason


class SendPoolExhausted(BufferError):
    """send_nowait() would exceed the worker's total send pool budget; the
    connection stays open and the caller may retry after sends complete."""


class QueueFull(Exception):
    """A bounded queue is over its cap: the caller should shed the peer."""


class TimerPoolExhausted(RuntimeError):
    """Every timer slot of this worker is in use (Config.timer_slots)."""


class ConfigError(ValueError):
    """A Config field has an invalid value; the message names the field."""
