"""HTTP/1.1 wire format, sans-IO: request heads out, responses in.

Owns:

* ``encode_head(method, target, headers)``: the request line and header
  section as one bytes object, refusing (LocalProtocolError, nothing sent)
  a method or header name that is not a token, a target with whitespace or
  control bytes, and CR, LF or NUL in any header value (request smuggling
  and header injection).
* ``chunk(data)`` / ``LAST_CHUNK``: the chunked transfer coding of uploads.
* ``ResponseParser``: one response (with any 1xx interim responses before
  it) parsed incrementally on httptools' llhttp binding, in strict mode, so
  a conflicting or duplicate Content-Length, Transfer-Encoding together
  with Content-Length, invalid or overflowing chunk sizes and malformed
  status lines or headers are protocol errors. On top of llhttp it keeps
  every bound of ``Bounds`` (header section bytes and count, body bytes,
  bytes with no chunk progress, trailer bytes), frames HEAD responses
  (headers only), bodies delimited by the end of the stream, and refuses
  bytes that follow the response (no pipelining: the connection is then not
  reused).

Why httptools and not h11: parsing one small keep-alive response (status
line, 4 headers, 13-byte body) costs about 4.3 us of CPU through this class
on httptools against about 31 us through h11 (its client state machine, with
the send() calls each cycle needs), measured with process_time over 50,000
responses on the 2-core dev VM (docs/http.md has the script); both are
strict about framing.

Lifecycle of a parser: created per response -> ``feed(view)`` returns the
bytes consumed (all of them, except that a HEAD response stops at the end of
its header section) -> ``head_done`` (status, reason, headers set) ->
body chunks appended to ``body`` (the caller takes them) -> ``done``. At end
of stream the caller calls ``feed_eof()``, which completes a body delimited
by the close or raises RemoteProtocolError. Any error leaves the parser
unusable; the caller closes the connection.
"""
from __future__ import annotations

import re
from typing import Iterable, List, Optional, Tuple

from httptools import HttpParserError, HttpResponseParser  # type: ignore[import-untyped]

from ._config import Bounds
from ._errors import LimitExceeded, LocalProtocolError, RemoteProtocolError

__all__ = ["encode_head", "chunk", "LAST_CHUNK", "ResponseParser", "check_header"]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS",
                      b"TRACE", b"CONNECT"))

LAST_CHUNK = b"0\r\n\r\n"


def check_header(name: bytes, value: bytes) -> None:
    if not _TOKEN.match(name):
        raise LocalProtocolError(f"invalid header name {name[:80]!r}")
    if _BAD_VALUE.search(value):
        raise LocalProtocolError(f"header {name[:80]!r}: value contains CR, LF or NUL")
    # leading/trailing whitespace is not part of a field value
    if value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t"):
        raise LocalProtocolError(f"header {name[:80]!r}: value has surrounding whitespace")


def encode_head(method: bytes, target: bytes, headers: Iterable[Tuple[bytes, bytes]],
                checked: int = 0) -> bytes:
    """The request head. headers[:checked] were validated before (a client's
    default headers are checked once)."""
    if method not in _METHODS and not _TOKEN.match(method):
        raise LocalProtocolError(f"invalid method {method[:80]!r}")
    if not target or _BAD_TARGET.search(target):
        raise LocalProtocolError(f"invalid request target {target[:80]!r}")
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    i = 0
    for name, value in headers:
        if i >= checked:
            check_header(name, value)
        i += 1
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class ResponseParser:
    """One HTTP/1.1 response (see the module docstring)."""

    __slots__ = ("_p", "_b", "_head", "status", "reason", "headers", "trailers", "body",
                 "head_done", "done", "keep_alive", "until_eof", "content_length",
                 "content_encoding", "chunked", "connection_close", "interim", "_fed_head",
                 "_hbytes", "_body_bytes", "_progress", "_idle", "_error", "_extra",
                 "http_version", "_started", "_trailer")

    def __init__(self, bounds: Bounds, head: bool = False) -> None:
        self._p = HttpResponseParser(self)
        self._b = bounds
        self.reset(head)

    def reset(self, head: bool = False) -> None:
        """Ready for the next response on the same keep-alive connection
        (llhttp is back at the start of a message after a complete one)."""
        self._head = head
        self.status = 0
        self.reason = b""
        self.headers: List[Tuple[bytes, bytes]] = []
        self.trailers: Optional[List[Tuple[bytes, bytes]]] = None
        self.body: List[bytes] = []
        self.head_done = False
        self.done = False
        self.keep_alive = True
        self.until_eof = False
        self.content_length: Optional[int] = None
        self.content_encoding: Optional[bytes] = None
        self.chunked = False
        self.connection_close = False
        self.interim = 0
        self.http_version = "HTTP/1.1"
        self._fed_head = 0
        self._hbytes = 0
        self._body_bytes = 0
        self._progress = False
        self._idle = 0
        self._error: Optional[BaseException] = None
        self._extra = False
        self._started = False
        self._trailer = False

    # -- llhttp callbacks --

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        raise exc

    def on_message_begin(self) -> None:
        if self.done:
            self._extra = True
            raise RemoteProtocolError("unsolicited bytes after the response")
        self._started = True

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # the hot path: one append; sizes and the framing headers are read
        # once, in on_headers_complete (a head that is still incomplete is
        # bounded by feed()'s byte count)
        if self.head_done:
            self._on_trailer(name, value)
            return
        headers = self.headers
        headers.append((name, value))
        if len(headers) > self._b.max_headers:
            self._fail(LimitExceeded("max_headers", self._b.max_headers, "header count"))

    def _on_trailer(self, name: bytes, value: bytes) -> None:
        self._hbytes += len(name) + len(value) + 4
        self._progress = True
        if self._hbytes > self._b.max_trailer_bytes:
            self._fail(LimitExceeded("max_trailer_bytes", self._b.max_trailer_bytes,
                                     "trailer section"))
        if self.trailers is None:
            self.trailers = []
        self.trailers.append((name, value))
        if len(self.trailers) > self._b.max_headers:
            self._fail(LimitExceeded("max_headers", self._b.max_headers, "trailer count"))

    def _scan_headers(self) -> None:
        """Size bound and the framing headers of the final head."""
        total = len(self.reason)
        for name, value in self.headers:
            n = len(name)
            total += n + len(value) + 4
            if n == 14:
                if name.lower() == b"content-length":
                    try:
                        cl = int(value)
                    except ValueError:
                        self._fail(RemoteProtocolError(f"invalid Content-Length {value[:40]!r}"))
                    if self.content_length is not None and self.content_length != cl:
                        self._fail(RemoteProtocolError("conflicting Content-Length headers"))
                    self.content_length = cl
            elif n == 16:
                if name.lower() == b"content-encoding":
                    self.content_encoding = (value if self.content_encoding is None
                                             else self.content_encoding + b", " + value)
            elif n == 17:
                if name.lower() == b"transfer-encoding":
                    self.chunked = value.strip().lower().endswith(b"chunked")
            elif n == 10:
                if name.lower() == b"connection" and b"close" in value.lower():
                    self.connection_close = True
        if total > self._b.max_header_bytes:
            self._fail(LimitExceeded("max_header_bytes", self._b.max_header_bytes,
                                     "header section"))
        length = self.content_length
        if length is not None and length > self._b.max_body_bytes:
            self._fail(LimitExceeded("max_body_bytes", self._b.max_body_bytes,
                                     f"Content-Length {length}"))

    def on_headers_complete(self) -> None:
        status = self._p.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                self._fail(RemoteProtocolError("101 Switching Protocols was not asked for"))
            self.interim += 1           # 100 Continue, 103 Early Hints: skipped
            self.status = status
            self.headers = []
            self.reason = b""
            return
        self.status = status
        self._scan_headers()
        self.head_done = True
        self._hbytes = 0
        self._progress = True
        self.http_version = "HTTP/1.0" if self._p.get_http_version() == "1.0" else "HTTP/1.1"
        if self.http_version == "HTTP/1.0" or self.connection_close:
            self.keep_alive = False
        if self.content_length is not None and self.chunked:
            self._fail(RemoteProtocolError("both Transfer-Encoding and Content-Length"))
        if self._head or status in (204, 304):
            self.done = True
            return
        if not self.chunked and self.content_length is None:
            self.until_eof = True
            self.keep_alive = False

    def on_body(self, data: bytes) -> None:
        self._progress = True
        self._trailer = False
        self._body_bytes += len(data)
        if self._body_bytes > self._b.max_body_bytes:
            self._fail(LimitExceeded("max_body_bytes", self._b.max_body_bytes, "body"))
        self.body.append(data)

    def on_chunk_header(self) -> None:
        # bytes after a chunk header that are not body are the trailer
        # section (only the last chunk, of size 0, is followed by non-body)
        self._progress = True
        self._trailer = True

    def on_chunk_complete(self) -> None:
        self._progress = True
        self._trailer = False

    def on_message_complete(self) -> None:
        if not self.head_done:          # the end of an interim (1xx) response
            self.interim_done()
            return
        self._progress = True
        self.done = True

    def interim_done(self) -> None:
        # a 1xx message completed; the final response follows as a new message
        self._started = False
        self.status = 0

    # -- driving --

    def feed(self, data: memoryview) -> int:
        """Parse data; returns the bytes consumed. Raises RemoteProtocolError
        (or LimitExceeded) on a malformed or unbounded response."""
        n = len(data)
        if self.done:
            self.keep_alive = False
            return n                    # bytes after the response: not reusable
        if self._head and not self.head_done:
            buf = bytes(data)
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if self._fed_head + n > self._b.max_header_bytes:
                    raise LimitExceeded("max_header_bytes", self._b.max_header_bytes,
                                        "header section")
                return 0                # wait for the end of the head
            data = data[:end + 4]
            n = end + 4
        self._progress = False
        try:
            self._p.feed_data(data)
        except HttpParserError as exc:
            if self._extra:
                self.keep_alive = False
                return len(data) if not self._head else n
            if self._error is not None:
                raise self._error from None
            raise RemoteProtocolError(f"invalid HTTP/1.1 response: {exc}") from None
        if self._error is not None:
            raise self._error
        if not self.head_done:
            self._fed_head += n
            if self._fed_head > self._b.max_header_bytes + 4:
                raise LimitExceeded("max_header_bytes", self._b.max_header_bytes,
                                    "header section")
        elif not self._progress:
            self._idle += n
            if self._trailer:
                if self._idle > self._b.max_trailer_bytes:
                    raise LimitExceeded("max_trailer_bytes", self._b.max_trailer_bytes,
                                        "trailer section")
            elif self._idle > self._b.max_chunk_line:
                raise LimitExceeded("max_chunk_line", self._b.max_chunk_line,
                                    "chunk-size line")
        else:
            self._idle = 0
        if self._head and self.head_done and not self.done:
            self.done = True
        return n

    def feed_eof(self) -> None:
        """The peer closed: completes a body delimited by the close, else
        raises RemoteProtocolError saying what was cut short."""
        if self.done:
            return
        if self.head_done and self.until_eof:
            self.done = True
            return
        if not self.head_done:
            if self._fed_head == 0 and not self._started:
                raise RemoteProtocolError("server closed the connection without a response")
            raise RemoteProtocolError("server closed the connection in the response head")
        if self.content_length is not None:
            raise RemoteProtocolError(
                f"server closed the connection after {self._body_bytes} of "
                f"{self.content_length} body bytes (Content-Length)")
        raise RemoteProtocolError("server closed the connection in a chunked body")
