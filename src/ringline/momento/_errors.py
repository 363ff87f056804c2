"""The errors of ringline.momento: one exception family, raised by every
command of ``CacheClient`` (results are plain values; a failure is raised).

Owns ``ErrorCode`` (the Momento SDK's error categories, by name), the
``MomentoError`` base and its subclasses, and ``from_rpc_error``, which
turns a ringline.grpc ``AioRpcError`` into the matching one.

Invariants: every error raised by a command is a ``MomentoError`` (the
client never lets an ``AioRpcError`` through); ``.code`` is an
``ErrorCode``, ``.status`` the gRPC status it came from (None for errors
found on the client before any call), ``.details`` the server's message.
Timeouts are also ``builtins.TimeoutError`` and invalid arguments also
``ValueError``, so ordinary ``except`` clauses catch them.
"""
from __future__ import annotations

import builtins
import enum
from typing import Dict, Optional, Tuple, Type

from ..grpc import AioRpcError, StatusCode

__all__ = ["ErrorCode", "MomentoError", "InvalidArgumentError", "AuthenticationError",
           "PermissionDeniedError", "NotFoundError", "LimitExceededError", "TimeoutError",
           "ServerUnavailableError", "InternalServerError", "CancelledError",
           "FailedPreconditionError", "from_rpc_error"]


class ErrorCode(enum.Enum):
    """What went wrong, in the Momento SDK's vocabulary."""
    INVALID_ARGUMENT_ERROR = "INVALID_ARGUMENT_ERROR"
    UNKNOWN_SERVICE_ERROR = "UNKNOWN_SERVICE_ERROR"
    ALREADY_EXISTS_ERROR = "ALREADY_EXISTS_ERROR"
    NOT_FOUND_ERROR = "NOT_FOUND_ERROR"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    PERMISSION_ERROR = "PERMISSION_ERROR"
    AUTHENTICATION_ERROR = "AUTHENTICATION_ERROR"
    CANCELLED_ERROR = "CANCELLED_ERROR"
    LIMIT_EXCEEDED_ERROR = "LIMIT_EXCEEDED_ERROR"
    BAD_REQUEST_ERROR = "BAD_REQUEST_ERROR"
    TIMEOUT_ERROR = "TIMEOUT_ERROR"
    SERVER_UNAVAILABLE = "SERVER_UNAVAILABLE"
    FAILED_PRECONDITION_ERROR = "FAILED_PRECONDITION_ERROR"
    UNKNOWN_ERROR = "UNKNOWN_ERROR"


class MomentoError(Exception):
    """A command that failed. ``code``: ErrorCode; ``status``: the gRPC
    StatusCode (None when the client refused the command before sending);
    ``details``: the server's message (or the client's)."""
    code = ErrorCode.UNKNOWN_ERROR

    def __init__(self, details: str, status: Optional[StatusCode] = None,
                 code: Optional[ErrorCode] = None) -> None:
        super().__init__(details)
        self.details = details
        self.status = status
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.details!r}, status={self.status}, "
                f"code={self.code.name})")


class InvalidArgumentError(MomentoError, ValueError):
    code = ErrorCode.INVALID_ARGUMENT_ERROR


class AuthenticationError(MomentoError):
    code = ErrorCode.AUTHENTICATION_ERROR


class PermissionDeniedError(MomentoError):
    code = ErrorCode.PERMISSION_ERROR


class NotFoundError(MomentoError):
    """Usually: the cache does not exist."""
    code = ErrorCode.NOT_FOUND_ERROR


class LimitExceededError(MomentoError):
    code = ErrorCode.LIMIT_EXCEEDED_ERROR


class TimeoutError(MomentoError, builtins.TimeoutError):   # noqa: A001
    """The configured deadline passed (DEADLINE_EXCEEDED)."""
    code = ErrorCode.TIMEOUT_ERROR


class ServerUnavailableError(MomentoError):
    code = ErrorCode.SERVER_UNAVAILABLE


class InternalServerError(MomentoError):
    code = ErrorCode.INTERNAL_SERVER_ERROR


class CancelledError(MomentoError):
    """The server cancelled the call (a local cancellation stays
    ``asyncio.CancelledError``)."""
    code = ErrorCode.CANCELLED_ERROR


class FailedPreconditionError(MomentoError):
    """E.g. increment of a value that is not an integer."""
    code = ErrorCode.FAILED_PRECONDITION_ERROR


# gRPC status -> (class, code); the table the Momento SDKs use
_BY_STATUS: Dict[StatusCode, Tuple[Type[MomentoError], Optional[ErrorCode]]] = {
    StatusCode.INVALID_ARGUMENT: (InvalidArgumentError, None),
    StatusCode.OUT_OF_RANGE: (MomentoError, ErrorCode.BAD_REQUEST_ERROR),
    StatusCode.UNIMPLEMENTED: (MomentoError, ErrorCode.BAD_REQUEST_ERROR),
    StatusCode.FAILED_PRECONDITION: (FailedPreconditionError, None),
    StatusCode.PERMISSION_DENIED: (PermissionDeniedError, None),
    StatusCode.UNAUTHENTICATED: (AuthenticationError, None),
    StatusCode.RESOURCE_EXHAUSTED: (LimitExceededError, None),
    StatusCode.NOT_FOUND: (NotFoundError, None),
    StatusCode.ALREADY_EXISTS: (MomentoError, ErrorCode.ALREADY_EXISTS_ERROR),
    StatusCode.DEADLINE_EXCEEDED: (TimeoutError, None),
    StatusCode.CANCELLED: (CancelledError, None),
    StatusCode.UNAVAILABLE: (ServerUnavailableError, None),
    StatusCode.UNKNOWN: (MomentoError, ErrorCode.UNKNOWN_SERVICE_ERROR),
    StatusCode.INTERNAL: (InternalServerError, None),
    StatusCode.ABORTED: (InternalServerError, None),
    StatusCode.DATA_LOSS: (InternalServerError, None),
}


def from_rpc_error(err: AioRpcError) -> MomentoError:
    """The MomentoError for a failed call."""
    status = err.code()
    cls, code = _BY_STATUS.get(status, (InternalServerError, None))
    return cls(err.details() or status.name, status, code)
