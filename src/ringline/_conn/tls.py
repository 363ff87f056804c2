"""TLS for ringline's native connections, in user space (no kTLS).

Owns: :class:`TlsConn`, a wrapper that gives a plain :class:`ringline.Conn`
the same API over TLS, using ``ssl.SSLObject`` with two ``ssl.MemoryBIO``
(ciphertext in from the Conn's receive accumulator, ciphertext out through the
Conn's send queue); :func:`connect_tls` for clients,
:func:`wrap_client_tls` for a client connection that is already open (a
tunnel through an HTTP proxy) and :func:`wrap_server_tls` for connections a
server accepted.

Lifecycle of a TlsConn::

    HANDSHAKING --ok--> OPEN --close()--> CLOSED
         |                |
         +--error/timeout-+--TLS or socket error--> FAILED

* HANDSHAKING: do_handshake() is retried each time ciphertext arrives, under
  a deadline (the caller's timeout, else HANDSHAKE_TIMEOUT) so a peer that
  stalls or sends garbage can never hang the caller. Any failure closes the
  underlying Conn and raises ``ssl.SSLError`` saying what went wrong (or
  TimeoutError).
* OPEN: reads decrypt only when the caller's parse callback needs more bytes
  (pull-driven, so decrypted plaintext is bounded by the loop's
  ``recv_accumulator_cap`` plus one read); every TLS operation is followed by
  moving whatever the SSLObject produced into the Conn's send queue, which
  keeps ciphertext in order (records are never reordered or dropped).
* close(): close_notify is queued best-effort, then the Conn closes
  gracefully (queued sends go out first). Later calls raise ConnectionClosed.
* FAILED: a TLS protocol error (bad record, truncated stream...) aborts the
  Conn; every later call raises that error.

Invariants: plaintext handed to a parse callback is exactly the decrypted
stream, each byte once, in order; views given by ``with_bytes`` are never
mutated (a buffer that is still exported is replaced, never resized in
place); a failed TLS connection never leaves its socket open.
"""
from __future__ import annotations

import asyncio
import ssl
from typing import Any, Callable, List, Optional

from .. import _core
from .._core import ChainResult, Conn, need_at_least
from .._errors import ConnectionClosed, ConnectionDropped
from .._util.addr import parse_address
from . import api
from .timers import timeout_at

__all__ = ["TlsConn", "connect_tls", "wrap_client_tls", "wrap_server_tls",
           "HANDSHAKE_TIMEOUT"]

Address = api.Address

# how long a handshake may take when the caller gave no timeout (asyncio's
# ssl_handshake_timeout default)
HANDSHAKE_TIMEOUT = 60.0

_READ_SIZE = 256 * 1024
_NEED_AT_LEAST = type(need_at_least(1))


def _named_ssl_error(exc: ssl.SSLError, context: str) -> ssl.SSLError:
    """A new SSLError of the same kind whose message says where and what.
    The OpenSSL library/reason codes are kept."""
    reason = getattr(exc, "reason", None)
    detail = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        new: ssl.SSLError = ssl.SSLCertVerificationError(
            exc.errno, f"{context}: certificate verification failed: "
            f"{getattr(exc, 'verify_message', None) or detail}")
        new.verify_code = getattr(exc, "verify_code", None)      # type: ignore[attr-defined]
        new.verify_message = getattr(exc, "verify_message", None)  # type: ignore[attr-defined]
    else:
        hint = ""
        if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                      "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL",
                      "RECORD_LENGTH_MISMATCH", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST"):
            hint = " (the peer does not speak TLS, or sent corrupt data)"
        new = type(exc)(exc.errno, f"{context}: {reason or type(exc).__name__}{hint}: {detail}")
    try:
        new.library = getattr(exc, "library", None)    # type: ignore[misc]
        new.reason = reason                            # type: ignore[misc]
    except AttributeError:
        pass
    return new


class _Builder:
    """Collects the parts of a send_parts()/send_chain() call. Guard parts
    are encrypted at submit(), so TLS only needs the object until then: the
    ciphertext is always a fresh buffer (guards degrade to copies)."""

    __slots__ = ("_conn", "_parts", "_submitted", "_chain")

    def __init__(self, conn: "TlsConn", chain: bool) -> None:
        self._conn = conn
        self._parts: List[Any] = []
        self._submitted = False
        self._chain = chain

    def copy(self, data: Any) -> "_Builder":
        """A part copied now (the caller may reuse data afterwards)."""
        part = bytes(data)
        if self._chain and not part:
            raise ValueError("a chain link cannot be empty")
        self._parts.append(part)
        return self

    add = copy

    def guard(self, obj: Any) -> "_Builder":
        """A part read in place when submit() encrypts it (it is not needed
        afterwards: over TLS the kernel sends ciphertext, never obj)."""
        view = memoryview(obj)
        if not view.c_contiguous:
            raise ValueError("guard() needs a contiguous buffer")
        if view.itemsize != 1 or view.ndim != 1:
            view = view.cast("B")
        if self._chain and not len(view):
            raise ValueError("a chain link cannot be empty")
        self._parts.append(view)
        return self

    def __len__(self) -> int:
        return len(self._parts)

    def submit(self) -> "asyncio.Future[Any]":
        if self._submitted:
            raise RuntimeError("send builder already submitted")
        self._submitted = True
        if self._chain:
            return self._conn._submit_chain(self._parts)
        return self._conn._submit_parts(self._parts)


class TlsConn:
    """A TLS connection with the API of :class:`ringline.Conn` (``with_data``,
    ``try_with_data``, ``with_bytes``, ``send_nowait``, ``send``,
    ``send_parts``, ``send_chain``, ``close``, ``shutdown_write``,
    ``peer_addr``, ``is_alive``, ``fileno``), over a plain Conn it owns.

    Made by :func:`connect_tls` or :func:`wrap_server_tls`, never directly.
    """

    def __init__(self, raw: Conn, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:
        self._raw = raw
        self._ssl = sslobj
        self._in = incoming
        self._out = outgoing
        self._plain = bytearray()
        self._start = 0
        self._want = 1            # bytes needed before the callback runs again
        self._eof = False         # no more plaintext will come
        self._closed = False
        self._write_shut = False
        self._error: Optional[BaseException] = None
        # a TLS error met after some plaintext was decrypted: raised once that
        # plaintext has been offered to the caller
        self._deferred: Optional[BaseException] = None
        self._reading = False
        self._loop = asyncio.get_running_loop()

    # -- handshake -------------------------------------------------------

    async def _handshake(self, deadline: float, peer: str) -> None:
        context = f"TLS handshake with {peer} failed"
        try:
            async with timeout_at(deadline):
                while True:
                    try:
                        self._ssl.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        pass
                    self._flush_out()
                    n = await self._raw.with_data(self._feed)
                    if n == 0:
                        raise ssl.SSLEOFError(
                            ssl.SSL_ERROR_EOF, f"{context}: the peer closed the connection")
                self._flush_out()
        except TimeoutError:
            self._raw.abort()
            raise TimeoutError(f"{context}: no answer within the timeout") from None
        except ssl.SSLError as exc:
            self._raw.abort()
            if str(exc).startswith(context):
                raise
            raise _named_ssl_error(exc, context) from exc
        except BaseException:
            self._raw.abort()
            raise

    # -- plumbing ----------------------------------------------------------

    def _feed(self, view: memoryview) -> int:
        return self._in.write(view)

    def _flush_out(self) -> None:
        if self._out.pending:
            self._raw.send_nowait(self._out.read())

    def _fail(self, exc: BaseException) -> BaseException:
        if self._error is None:
            self._error = exc
        self._raw.abort()
        return self._error

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ConnectionClosed("TLS connection is closed")

    def _decrypt(self) -> bool:
        """Move everything the SSLObject can decrypt now into the plaintext
        buffer. True when plaintext grew or the end of the stream was seen."""
        got = False
        ssl_obj = self._ssl
        if self._deferred is not None:
            return False
        try:
            while True:
                data = ssl_obj.read(_READ_SIZE)
                if not data:
                    self._eof = True
                    got = True
                    break
                self._append(data)
                got = True
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._eof = True           # close_notify: a clean end
            got = True
        except ssl.SSLEOFError:
            # the peer closed without close_notify: treated as the end of the
            # stream, like suppress_ragged_eofs does for ssl sockets
            self._eof = True
            got = True
        except ssl.SSLError as exc:
            error = _named_ssl_error(exc, "TLS receive failed")
            error.__cause__ = exc
            if not got:
                raise self._fail(error)
            self._deferred = error
        try:
            self._flush_out()          # e.g. a TLS 1.3 key update answer
        except ConnectionError:
            pass
        return got

    def _append(self, data: bytes) -> None:
        try:
            self._plain += data
        except BufferError:
            # a view handed out by with_bytes is still alive: leave its
            # buffer untouched and continue in a new one
            self._plain = self._plain[self._start:] + data
            self._start = 0

    def _consumed(self, n: int) -> None:
        self._start += n
        self._want = 1
        plain = self._plain
        if self._start == len(plain):
            try:
                del plain[:]
            except BufferError:
                self._plain = bytearray()
            self._start = 0
        elif self._start >= 65536 and 2 * self._start >= len(plain):
            try:
                del plain[:self._start]
            except BufferError:
                self._plain = plain[self._start:]
            self._start = 0

    def _pull_buffered(self) -> bool:
        """Feed the ciphertext the Conn already holds, decrypt it; never
        waits. True when plaintext grew or the stream ended."""
        raw = self._raw
        if raw.is_alive and raw.buffered:
            raw.try_with_data(self._feed)
        elif raw.is_alive and raw.at_eof and not self._eof:
            self._in.write_eof()
        return self._decrypt()

    def _try_consume(self, fn: Callable[[memoryview], Any], keep: bool) -> int:
        """Run fn over the unconsumed plaintext. Returns the count consumed
        (> 0), 0 at the end of the stream, -1 when more must be received."""
        cap = _core._conn_table(self._loop).recv_cap
        while True:
            self._check_open()
            avail = len(self._plain) - self._start
            if avail > 0 and avail >= self._want:
                base = memoryview(self._plain)
                if keep:
                    base = base.toreadonly()
                view = base[self._start:]
                try:
                    res = fn(view)
                finally:
                    if not keep:
                        try:
                            view.release()
                            base.release()
                        except BufferError:
                            pass       # fn kept a slice: _append copes
                    del view, base
                self._check_open()     # fn may have closed us
                if isinstance(res, _NEED_AT_LEAST):
                    if res.n > cap:
                        raise ValueError(f"need_at_least({res.n}) exceeds the receive "
                                         f"accumulator cap ({cap} bytes)")
                    self._want = res.n if res.n > avail else avail + 1
                elif res is None:
                    raise TypeError("parse callback returned None; return the number of "
                                    "bytes consumed, 0 or need_at_least(n)")
                else:
                    consumed = int(res)
                    if consumed > 0:
                        if consumed > avail:
                            raise ValueError(f"parse callback consumed {consumed} bytes but "
                                             f"only {avail} are buffered")
                        self._consumed(consumed)
                        return consumed
                    if consumed < 0:
                        raise ValueError(f"parse callback returned {consumed}; expected the "
                                         "number of bytes consumed, 0 or need_at_least(n)")
                    self._want = avail + 1
                if avail >= cap:
                    exc = ConnectionDropped(
                        "the parse callback needs more than recv_accumulator_cap "
                        f"({cap} bytes) of TLS plaintext without consuming")
                    raise self._fail(exc)
            if self._deferred is not None:
                raise self._fail(self._deferred)
            if self._eof:
                return 0
            if not self._pull_buffered():
                return -1

    async def _read(self, fn: Callable[[memoryview], Any], keep: bool) -> int:
        if self._reading:
            raise RuntimeError("another task is already waiting for data on this "
                               "TLS connection")
        self._reading = True
        try:
            while True:
                r = self._try_consume(fn, keep)
                if r >= 0:
                    return r
                try:
                    n = await self._raw.with_data(self._feed)
                except ConnectionError:
                    if self._error is not None:
                        raise self._error from None
                    if self._closed:
                        raise ConnectionClosed("TLS connection is closed") from None
                    raise
                if n == 0:
                    self._in.write_eof()
                self._decrypt()
        finally:
            self._reading = False

    # -- receive ---------------------------------------------------------

    async def with_data(self, fn: Callable[[memoryview], Any]) -> int:
        """Call fn(view) over the unconsumed plaintext until it consumes some
        (it returns the count, NEED_MORE or need_at_least(n)); resolves to
        the count, 0 at the end of the stream. The view is released after
        fn returns."""
        return await self._read(fn, False)

    async def with_bytes(self, fn: Callable[[memoryview], Any]) -> int:
        """Like with_data, but the read-only view (and slices of it) stay
        valid for as long as the caller keeps them."""
        return await self._read(fn, True)

    async def on_data(self, fn: Callable[[memoryview], Any]) -> int:
        """Call fn on every arrival of plaintext until EOF (see Conn.on_data);
        the total consumed. Over TLS the task resumes per record decrypted."""
        total = 0
        while True:
            if self._closed and self._error is None:
                return total                 # closed by fn
            n = await self._read(fn, False)
            if n == 0:
                return total
            total += n

    def try_with_data(self, fn: Callable[[memoryview], Any]) -> int:
        """Run fn over the plaintext available now, never waiting; 0 when
        nothing was consumed (also at the end of the stream)."""
        if self._reading:
            raise RuntimeError("another task is waiting for data on this TLS connection")
        r = self._try_consume(fn, False)
        return r if r > 0 else 0

    @property
    def buffered(self) -> int:
        """Decrypted bytes received and not yet consumed."""
        return len(self._plain) - self._start

    @property
    def at_eof(self) -> bool:
        return self._eof and len(self._plain) == self._start

    # -- send --------------------------------------------------------------

    def _encrypt(self, data: Any) -> bytes:
        self._check_open()
        if self._write_shut:
            raise ConnectionClosed("TLS connection is shut down for writing")
        view = memoryview(data)
        if view.itemsize != 1 or view.ndim != 1:
            view = view.cast("B")
        try:
            while len(view):
                n = self._ssl.write(view)
                view = view[n:]
        except ssl.SSLWantReadError:
            raise self._fail(ssl.SSLError(
                ssl.SSL_ERROR_WANT_READ, "TLS send failed: the peer asked for a renegotiation, which "
                "ringline does not support")) from None
        except ssl.SSLError as exc:
            raise self._fail(_named_ssl_error(exc, "TLS send failed")) from exc
        return self._out.read()

    def send_nowait(self, data: Any) -> None:
        """Encrypt data and queue it on the connection (flushed once per loop
        iteration). Raises ConnectionClosed, or ConnectionDropped past the
        connection's max_send_queue."""
        if not len(data):
            self._check_open()
            return
        self._raw.send_nowait(self._encrypt(data))

    def send(self, data: Any) -> "asyncio.Future[int]":
        """Encrypt and queue data; the future resolves to len(data) once the
        kernel sent its ciphertext."""
        n = memoryview(data).nbytes
        if n == 0:
            self._check_open()
            fut = self._loop.create_future()
            fut.set_result(0)
            return fut
        return self._map_future(self._raw.send(self._encrypt(data)), lambda _r: n)

    def send_parts(self) -> _Builder:
        """A builder: .copy(data) and .guard(obj) parts, then .submit() ->
        future of the plaintext bytes sent. Over TLS guards are encrypted at
        submit() (they are copies in effect)."""
        self._check_open()
        return _Builder(self, chain=False)

    def send_chain(self) -> _Builder:
        """A builder of links (.add/.copy/.guard) sent in order; .submit() ->
        future of ChainResult whose bytes_sent counts the plaintext of the
        links that went out completely."""
        self._check_open()
        return _Builder(self, chain=True)

    def _submit_parts(self, parts: List[Any]) -> "asyncio.Future[int]":
        total = sum(memoryview(p).nbytes for p in parts)
        if total == 0:
            self._check_open()
            fut = self._loop.create_future()
            fut.set_result(0)
            return fut
        cipher = self._encrypt(b"".join(parts))
        return self._map_future(self._raw.send(cipher), lambda _r: total)

    def _submit_chain(self, links: List[Any]) -> "asyncio.Future[ChainResult]":
        if not links:
            raise ValueError("empty send chain")
        self._check_open()
        plain_sizes = [memoryview(link).nbytes for link in links]
        builder = self._raw.send_chain()
        cipher_sizes = []
        for link in links:
            cipher = self._encrypt(link)
            cipher_sizes.append(len(cipher))
            builder.add(cipher)

        def translate(res: ChainResult) -> ChainResult:
            if res.ok:
                return ChainResult(sum(plain_sizes), None, 0)
            # count the links whose every ciphertext byte went out; the TLS
            # stream cannot continue after a lost record, so it is failed
            sent, plain = res.bytes_sent, 0
            for c_size, p_size in zip(cipher_sizes, plain_sizes):
                if sent < c_size:
                    break
                sent -= c_size
                plain += p_size
            self._fail(res.error or ConnectionClosed("a TLS send chain link was cancelled"))
            return ChainResult(plain, res.error, res.cancelled)

        return self._map_future(builder.submit(), translate)

    def _map_future(self, inner: "asyncio.Future[Any]",
                    convert: Callable[[Any], Any]) -> "asyncio.Future[Any]":
        outer = self._loop.create_future()

        def done(f: "asyncio.Future[Any]") -> None:
            if outer.done():
                return
            if f.cancelled():
                outer.cancel()
            elif f.exception() is not None:
                outer.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                try:
                    outer.set_result(convert(f.result()))
                except BaseException as exc:   # pragma: no cover (defensive)
                    outer.set_exception(exc)

        inner.add_done_callback(done)
        return outer

    # -- ending ------------------------------------------------------------

    def _send_close_notify(self) -> None:
        try:
            self._ssl.unwrap()
        except ssl.SSLError:
            pass                       # WantRead: the peer's reply is not awaited
        try:
            self._flush_out()
        except ConnectionError:
            pass

    def drain(self) -> "asyncio.Future[None]":
        """Resolves once everything queued so far is sent (see Conn.drain)."""
        self._check_open()
        return self._raw.drain()

    def push(self) -> None:
        """Hand the queued (encrypted) bytes to the kernel now: see Conn.push."""
        self._check_open()
        self._raw.push()

    def shutdown_write(self) -> None:
        """Half-close: queue close_notify, then FIN once the queued sends
        are out. Receiving goes on."""
        self._check_open()
        if self._write_shut:
            return
        self._write_shut = True
        self._send_close_notify()
        self._raw.shutdown_write()

    def close(self) -> None:
        """Close gracefully: close_notify is queued (best-effort), queued
        sends go out, then the socket closes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._error is None and self._raw.is_alive and not self._write_shut:
            self._send_close_notify()
        self._raw.close()

    def abort(self) -> None:
        """Close now, discarding queued sends (no close_notify)."""
        self._closed = True
        self._raw.abort()

    # -- introspection -------------------------------------------------------

    @property
    def is_alive(self) -> bool:
        return not self._closed and self._error is None and bool(self._raw.is_alive)

    @property
    def peer_addr(self) -> Any:
        self._check_open()
        return self._raw.peer_addr

    @property
    def local_addr(self) -> Any:
        self._check_open()
        return self._raw.local_addr

    def fileno(self) -> int:
        """The socket's fd, -1 once closed."""
        if self._closed or self._error is not None:
            return -1
        return int(self._raw.fileno())

    @property
    def raw(self) -> Conn:
        """The underlying (ciphertext) Conn."""
        return self._raw

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The SSLObject: version(), cipher(), getpeercert(),
        selected_alpn_protocol() ..."""
        return self._ssl

    @property
    def send_queue_bytes(self) -> int:
        return int(self._raw.send_queue_bytes)

    def __repr__(self) -> str:
        state = "open" if self.is_alive else "closed"
        return f"<ringline.TlsConn {state} {self._ssl.version()} over {self._raw!r}>"


def _peer_name(addr: Any, unix_path: Any) -> str:
    if unix_path is not None:
        return f"unix:{unix_path}"
    if isinstance(addr, tuple):
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


async def connect_tls(addr: Optional[Address], ssl_context: Optional[ssl.SSLContext] = None,
                      server_hostname: Optional[str] = None,
                      timeout: Optional[float] = None, *,
                      unix_path: Optional[str] = None) -> TlsConn:
    """Open a TLS client connection to addr ((host, port) or "host:port"),
    or to the Unix socket unix_path. ssl_context defaults to
    ``ssl.create_default_context()``; server_hostname (SNI and certificate
    check) defaults to addr's host. timeout bounds connect and handshake
    together (None: the handshake alone is bounded by HANDSHAKE_TIMEOUT).
    Raises TimeoutError, OSError from connecting, or ssl.SSLError naming
    the problem."""
    loop = api._running_loop("connect_tls")
    if ssl_context is None:
        ssl_context = ssl.create_default_context()
    elif not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext, got "
                        f"{type(ssl_context).__name__}")
    if server_hostname is None and addr is not None:
        server_hostname = parse_address(addr)[0]
    if server_hostname is None and ssl_context.check_hostname:
        raise ValueError("connect_tls() needs server_hostname when connecting to a Unix "
                         "socket with a context that checks host names")
    start = loop.time()
    if unix_path is not None:
        raw = await api.connect_unix(unix_path, timeout=timeout)
    elif addr is None:
        raise ValueError("connect_tls() needs an address or unix_path")
    else:
        raw = await api.connect(addr, timeout=timeout)
    deadline = (start + timeout if timeout is not None
                else loop.time() + HANDSHAKE_TIMEOUT)
    return await _client_handshake(raw, ssl_context, server_hostname, deadline,
                                   _peer_name(addr, unix_path))


async def wrap_client_tls(conn: Conn, ssl_context: Optional[ssl.SSLContext] = None,
                          server_hostname: Optional[str] = None,
                          timeout: Optional[float] = None) -> TlsConn:
    """Run the client side of a TLS handshake on a connected Conn (one a
    proxy turned into a tunnel with CONNECT, say) and return the TlsConn
    (the Conn belongs to it from now on). ssl_context defaults to
    ``ssl.create_default_context()``; server_hostname is the SNI and the
    name the certificate is checked against (required when the context
    checks host names). timeout defaults to HANDSHAKE_TIMEOUT; on failure
    the Conn is closed and ssl.SSLError (or TimeoutError) raised."""
    loop = api._running_loop("wrap_client_tls")
    if ssl_context is None:
        ssl_context = ssl.create_default_context()
    elif not isinstance(ssl_context, ssl.SSLContext):
        conn.abort()
        raise TypeError(f"ssl_context must be an ssl.SSLContext, got "
                        f"{type(ssl_context).__name__}")
    if server_hostname is None and ssl_context.check_hostname:
        conn.abort()
        raise ValueError("wrap_client_tls() needs server_hostname with a context that "
                         "checks host names")
    deadline = loop.time() + (timeout if timeout is not None else HANDSHAKE_TIMEOUT)
    return await _client_handshake(conn, ssl_context, server_hostname, deadline,
                                   server_hostname or "server")


async def _client_handshake(raw: Conn, ssl_context: ssl.SSLContext,
                            server_hostname: Optional[str], deadline: float,
                            peer: str) -> TlsConn:
    """The client side of the handshake on raw, which it owns from now on
    (closed on any failure)."""
    try:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = ssl_context.wrap_bio(incoming, outgoing, server_side=False,
                                      server_hostname=server_hostname)
        conn = TlsConn(raw, sslobj, incoming, outgoing)
    except BaseException:
        raw.abort()
        raise
    await conn._handshake(deadline, peer)
    return conn


async def wrap_server_tls(conn: Conn, ssl_context: ssl.SSLContext,
                          timeout: Optional[float] = None) -> TlsConn:
    """Run the server side of a TLS handshake on an accepted Conn and return
    the TlsConn (the Conn belongs to it from now on). timeout defaults to
    HANDSHAKE_TIMEOUT; on failure the Conn is closed and ssl.SSLError (or
    TimeoutError) raised."""
    if not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError("wrap_server_tls() needs an ssl.SSLContext")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (timeout if timeout is not None else HANDSHAKE_TIMEOUT)
    try:
        peer = conn.peer_addr
        peer_name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
    except (OSError, ConnectionError):
        peer_name = "client"
    try:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = ssl_context.wrap_bio(incoming, outgoing, server_side=True)
        tls = TlsConn(conn, sslobj, incoming, outgoing)
    except BaseException:
        conn.abort()
        raise
    await tls._handshake(deadline, peer_name)
    return tls
