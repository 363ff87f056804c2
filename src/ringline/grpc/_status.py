"""gRPC status codes and the error a failed call raises.

Owns ``StatusCode`` (the 17 codes of the gRPC spec, named and numbered as in
grpcio's ``grpc.StatusCode``), ``AioRpcError`` (shaped like
``grpc.aio.AioRpcError``: ``code()``, ``details()``, ``initial_metadata()``,
``trailing_metadata()``, ``debug_error_string()``) and the mapping of an
HTTP status without a grpc-status to a code (the gRPC HTTP/2 spec's table).
Nothing here does I/O; every object is immutable once built.
"""
from __future__ import annotations

import enum
from typing import Optional, Tuple

__all__ = ["StatusCode", "AioRpcError", "code_of_int", "code_of_http"]

Metadata = Tuple[Tuple[str, object], ...]


class StatusCode(enum.Enum):
    """A gRPC status: ``value`` is ``(number, lower-case name)`` as in grpcio."""
    OK = (0, "ok")
    CANCELLED = (1, "cancelled")
    UNKNOWN = (2, "unknown")
    INVALID_ARGUMENT = (3, "invalid argument")
    DEADLINE_EXCEEDED = (4, "deadline exceeded")
    NOT_FOUND = (5, "not found")
    ALREADY_EXISTS = (6, "already exists")
    PERMISSION_DENIED = (7, "permission denied")
    RESOURCE_EXHAUSTED = (8, "resource exhausted")
    FAILED_PRECONDITION = (9, "failed precondition")
    ABORTED = (10, "aborted")
    OUT_OF_RANGE = (11, "out of range")
    UNIMPLEMENTED = (12, "unimplemented")
    INTERNAL = (13, "internal")
    UNAVAILABLE = (14, "unavailable")
    DATA_LOSS = (15, "data loss")
    UNAUTHENTICATED = (16, "unauthenticated")


_BY_INT = {c.value[0]: c for c in StatusCode}


def code_of_int(n: int) -> StatusCode:
    """The code numbered ``n``; an unknown number is UNKNOWN (spec)."""
    return _BY_INT.get(n, StatusCode.UNKNOWN)


_HTTP = {400: StatusCode.INTERNAL, 401: StatusCode.UNAUTHENTICATED,
         403: StatusCode.PERMISSION_DENIED, 404: StatusCode.UNIMPLEMENTED,
         429: StatusCode.UNAVAILABLE, 502: StatusCode.UNAVAILABLE,
         503: StatusCode.UNAVAILABLE, 504: StatusCode.UNAVAILABLE}


def code_of_http(status: int) -> StatusCode:
    """The code for a non-200 HTTP response that carries no grpc-status."""
    return _HTTP.get(status, StatusCode.UNKNOWN)


class AioRpcError(Exception):
    """A call that ended with a status other than OK."""

    def __init__(self, code: StatusCode, details: Optional[str] = None,
                 initial_metadata: Metadata = (), trailing_metadata: Metadata = (),
                 debug_error_string: Optional[str] = None) -> None:
        super().__init__(code, details)
        self._code = code
        self._details = details
        self._initial = initial_metadata
        self._trailing = trailing_metadata
        self._debug = debug_error_string

    def code(self) -> StatusCode:
        return self._code

    def details(self) -> Optional[str]:
        return self._details

    def initial_metadata(self) -> Metadata:
        return self._initial

    def trailing_metadata(self) -> Metadata:
        return self._trailing

    def debug_error_string(self) -> str:
        return self._debug or f"{self._code.name}: {self._details}"

    def __str__(self) -> str:
        return (f"<AioRpcError of RPC that terminated with:\n\tstatus = {self._code}\n"
                f"\tdetails = \"{self._details}\"\n>")

    __repr__ = __str__
