"""The exceptions of ringline.http, named as httpx names them where the
meaning is the same, so code written against httpx catches the same names.

Owns only the class tree; no state beyond a message and, where given, the
request. Every layer of the package (sans-IO parsers, connections, pools,
client) raises these.

    HTTPError
      RequestError                  (has .request once the client knows it)
        TransportError
          TimeoutException          (also a builtin TimeoutError)
            ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout
          NetworkError
            ConnectError, ReadError, WriteError
          ProxyError                (a proxy refused, broke or overran CONNECT)
          ProtocolError
            RemoteProtocolError     (the peer broke HTTP; the connection is closed)
              LimitExceeded         (a bound knob was exceeded; .knob names it)
            LocalProtocolError      (our request is invalid; also a ValueError)
        DecodingError               (content-encoding undecodable or over its caps)
        TooManyRedirects
      HTTPStatusError               (raise_for_status)
    StreamError: StreamConsumed, StreamClosed, ResponseNotRead
"""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["HTTPError", "RequestError", "TransportError", "TimeoutException",
           "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "NetworkError",
           "ConnectError", "ReadError", "WriteError", "ProxyError", "ProtocolError",
           "RemoteProtocolError", "LimitExceeded", "LocalProtocolError", "DecodingError",
           "TooManyRedirects", "HTTPStatusError", "StreamError", "StreamConsumed", "StreamClosed",
           "ResponseNotRead"]


class HTTPError(Exception):
    """Base of every error this package raises."""


class RequestError(HTTPError):
    """A request could not be completed; ``request`` is set by the client."""

    request: Optional[Any] = None


class TransportError(RequestError):
    pass


class TimeoutException(TransportError, TimeoutError):
    pass


class ConnectTimeout(TimeoutException):
    pass


class ReadTimeout(TimeoutException):
    pass


class WriteTimeout(TimeoutException):
    pass


class PoolTimeout(TimeoutException):
    pass


class NetworkError(TransportError):
    pass


class ConnectError(NetworkError):
    pass


class ReadError(NetworkError):
    pass


class WriteError(NetworkError):
    pass


class ProxyError(TransportError):
    """An HTTP proxy did not open the tunnel (CONNECT) to the origin: it
    answered with a status other than 2xx (the message quotes its status
    line, e.g. ``407 Proxy Authentication Required``), closed the
    connection, sent something that is not an HTTP response, or a response
    head over ``max_header_bytes``. The connection to the proxy is closed."""


class ProtocolError(TransportError):
    pass


class RemoteProtocolError(ProtocolError):
    """The server broke the protocol (or closed too early): the connection
    it happened on is closed; other connections are unaffected."""


class LimitExceeded(RemoteProtocolError):
    """The response exceeded one of the documented bounds; ``knob`` names it."""

    def __init__(self, knob: str, limit: int, detail: str = "") -> None:
        super().__init__(f"{detail or 'response'} exceeds {knob}={limit}")
        self.knob = knob
        self.limit = limit


class LocalProtocolError(ProtocolError, ValueError):
    """The request cannot be sent as given (CR/LF/NUL in a header, a bad
    method or target, conflicting lengths...). Nothing was sent."""


class DecodingError(RequestError):
    pass


class TooManyRedirects(RequestError):
    pass


class HTTPStatusError(HTTPError):
    def __init__(self, message: str, *, request: Any, response: Any) -> None:
        super().__init__(message)
        self.request = request
        self.response = response


class StreamError(RuntimeError):
    pass


class StreamConsumed(StreamError):
    pass


class StreamClosed(StreamError):
    pass


class ResponseNotRead(StreamError):
    def __init__(self) -> None:
        super().__init__("the response body was not read: call await response.aread() "
                         "(or use client.request(), which reads it)")
