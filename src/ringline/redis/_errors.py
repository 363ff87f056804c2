"""Exceptions of ringline's Redis client and the mapping from error replies.

Owns: the ``RedisError`` hierarchy and ``error_from_reply()``, which turns
the text of a RESP error reply (``-ERR ...``, ``!<len> ...``) into the
matching subclass. Error replies are *values* to the parser (they may sit
inside an array, as EXEC results do); the client raises them when they are a
command's top-level reply.

Lifecycle: none (classes and one pure function).

Invariants: every exception the client raises for a server or wire problem
is a ``RedisError``; connection-level failures are also ``ConnectionError``
(so ``except ConnectionError`` catches a dead server); redirections carry the
slot and the target address parsed from the reply.
"""
from __future__ import annotations

from typing import Optional, Tuple

from .._util.addr import split_host_port

__all__ = [
    "RedisError", "ResponseError", "WrongTypeError", "MovedError", "AskError",
    "TryAgainError", "LoadingError", "AuthenticationError", "NoPermissionError",
    "CrossSlotError", "ClusterDownError", "BusyError", "ProtocolError",
    "RedisConnectionError", "RedisTimeoutError", "error_from_reply",
]


class RedisError(Exception):
    """Base class of every error of ringline.redis."""


class ResponseError(RedisError):
    """The server answered a command with an error reply. ``code`` is the
    first word of the reply (``ERR``, ``WRONGTYPE``, ...)."""

    code: str = "ERR"

    def __init__(self, message: str = "", code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __reduce__(self):  # keep pickling (and copy) working with 2 args
        return (self.__class__, (self.message, self.code))


class WrongTypeError(ResponseError):
    """WRONGTYPE: the key holds a value of another type."""


class AuthenticationError(ResponseError):
    """NOAUTH / WRONGPASS / invalid password: authentication failed or is
    needed."""


class NoPermissionError(ResponseError):
    """NOPERM: the ACL user may not run this command or touch this key."""


class BusyError(ResponseError):
    """BUSY: a script is running (or BUSYKEY: the target key exists)."""


class _Redirect(ResponseError):
    """A cluster redirection: ``slot`` and the target ``host``/``port``."""

    def __init__(self, message: str = "", code: Optional[str] = None) -> None:
        super().__init__(message, code)
        parts = message.split()
        self.slot = -1
        self.host = ""
        self.port = 0
        if len(parts) >= 3:
            try:
                self.slot = int(parts[1])
            except ValueError:
                pass
            try:
                self.host, self.port = split_host_port(parts[2], default_host="",
                                                       min_port=0)
            except ValueError:
                pass

    @property
    def address(self) -> Tuple[str, int]:
        return (self.host, self.port)


class MovedError(_Redirect):
    """MOVED <slot> <host>:<port>: the slot lives on another node for good."""


class AskError(_Redirect):
    """ASK <slot> <host>:<port>: the slot is migrating; ask the target once
    (after ASKING)."""


class TryAgainError(ResponseError):
    """TRYAGAIN: a multi-key command during a slot migration; retry later."""


class LoadingError(ResponseError):
    """LOADING: the server is loading its dataset; retry later."""


class CrossSlotError(ResponseError):
    """CROSSSLOT: the keys of one command hash to different cluster slots
    (raised by ClusterClient before sending, and by the server)."""


class ClusterDownError(ResponseError):
    """CLUSTERDOWN: the cluster cannot serve the slot right now."""


class RedisConnectionError(RedisError, ConnectionError):
    """The connection to the server failed, closed or was dropped; commands
    pending on it fail with this error."""


class ProtocolError(RedisConnectionError):
    """The server's bytes are not valid RESP (or exceed a parser limit). The
    connection is closed; every command pending on it fails with this error,
    whose message names the problem and the byte offset."""


class RedisTimeoutError(RedisError, TimeoutError):
    """A connect or command timeout expired."""


_BY_CODE = {
    "ERR": ResponseError,
    "WRONGTYPE": WrongTypeError,
    "MOVED": MovedError,
    "ASK": AskError,
    "TRYAGAIN": TryAgainError,
    "LOADING": LoadingError,
    "CROSSSLOT": CrossSlotError,
    "CLUSTERDOWN": ClusterDownError,
    "NOAUTH": AuthenticationError,
    "WRONGPASS": AuthenticationError,
    "NOPERM": NoPermissionError,
    "BUSY": BusyError,
    "BUSYKEY": BusyError,
}


def error_from_reply(text: bytes | str) -> ResponseError:
    """The exception for an error reply's text (without the leading '-')."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", "replace")
    code, _, _rest = text.partition(" ")
    cls = _BY_CODE.get(code)
    if cls is None:
        if code.isupper() and code.isalpha():
            cls = ResponseError
        else:
            code = "ERR"
            cls = ResponseError
    if cls is ResponseError and ("invalid password" in text
                                 or "without any password configured" in text):
        cls = AuthenticationError
    return cls(text, code)
