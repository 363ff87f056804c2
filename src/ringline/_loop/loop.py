"""The ringline event loop class: asyncio's API over the native core.

Owns: the composition of the native LoopCore (ready queue, timers, the ring,
socket operations, readers/writers) with asyncio.BaseEventLoop, whose
cold-path machinery (create_connection's happy eyeballs, create_server's
Server object, TLS via SSLProtocol, subprocess plumbing, executors, DNS in a
thread) is reused unchanged on top of our hooks; the ``_make_*_transport``
hooks build the transports of ``transports.py`` and register them by fd.

Lifecycle: Loop() sets up its driver -- an io_uring ring, or the poll driver
(epoll) when io_uring is unavailable or not wanted (see backend.py; forcing
io_uring where the kernel refuses raises BackendUnavailable naming the
reason); run_forever/run_until_complete drive it; close() releases the
executor, signal handlers, every in-flight operation and the driver.

Invariants: every transport is registered by its fd in ``_transports`` from
its creation, and add_reader/add_writer refuse an fd a live transport owns;
getaddrinfo never blocks the loop (numeric hosts and ports are answered at
once without DNS, everything else resolves in the executor); close() is
refused while the loop runs and is idempotent.
"""
from __future__ import annotations

import asyncio
import errno
import inspect
import io
import os
import signal
import socket
import stat
import sys
import threading
import weakref
from asyncio import (base_events, coroutines, exceptions, sslproto, tasks,
                     unix_events)
from asyncio.log import logger

from .. import _core
from . import backend as _backend
from .backend import BackendInfo
from .transports import (_DatagramTransport, _ReadPipeTransport, _SocketTransport,
                         _SubprocessTransport, _WritePipeTransport, _socket_extra)

__all__ = ["Loop"]

_SENDFILE_CHUNK = 256 * 1024
# Zero-copy sends: measured with scripts/zc_threshold.py (docs/benchmarks.md),
# SEND_ZC never beat SEND over loopback here (the kernel copies loopback
# traffic anyway and the notification costs extra), so by default loopback
# and Unix peers never use it, and other peers use it from 64 KiB. An explicit
# send_zc_threshold applies to every stream socket.
DEFAULT_SEND_ZC_THRESHOLD = 64 * 1024


_NUMERIC_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_numeric_cache: dict = {}   # numeric answers never change: up to 1024 kept


def _numeric_host(host):
    """A literal IPv4/IPv6 address (or None): parsing only, never DNS."""
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeError:
            return False
    if not isinstance(host, str) or not host:
        return False
    try:
        socket.inet_pton(socket.AF_INET, host)
        return True
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        return True
    except OSError:
        return False


def _numeric_port(port):
    if port is None or isinstance(port, int):
        return True
    if isinstance(port, bytes):
        return port.isdigit()
    return isinstance(port, str) and port.isdigit()


def _is_loopback_peer(sock, peername):
    if sock.family == socket.AF_UNIX:
        return True
    host = peername[0] if isinstance(peername, tuple) and peername else ""
    return (host.startswith("127.") or host == "::1"
            or host.startswith("::ffff:127."))


# 3.14 deprecates coroutines.iscoroutinefunction (asyncio.iscoroutinefunction)
# and keeps the warning-free check as coroutines._iscoroutinefunction.
_iscoroutinefunction = getattr(coroutines, "_iscoroutinefunction", None) \
    or coroutines.iscoroutinefunction


def _sighandler_noop(signum, frame):
    """Python-level handler: the real work happens through the wakeup fd."""


# 3.13's create_unix_server unlinks the socket's path when the server closes
# (cleanup_socket=True); before 3.13 asyncio leaves the file, and so does
# ringline there unless cleanup_socket=True is passed.
_UNIX_CLEANUP_DEFAULT = "cleanup_socket" in inspect.signature(
    unix_events._UnixSelectorEventLoop.create_unix_server).parameters


# 3.13 gave asyncio's Server close_clients()/abort_clients() over its own
# set of attached transports (filled by _attach(transport)): there the base
# class is used as is.  Before 3.13 ringline keeps the set itself.
_BASE_SERVER_HAS_CLIENTS = hasattr(base_events.Server, "close_clients")


if _BASE_SERVER_HAS_CLIENTS:
    class Server(base_events.Server):
        """asyncio's Server (close_clients() and abort_clients() are the
        base class's own on this Python)."""

        def _ringline_clients(self):
            return list(self._clients)

else:
    class Server(base_events.Server):
        """asyncio's Server plus what Python 3.13 added and uvloop lacks:
        close_clients() and abort_clients()."""

        def _ringline_clients(self):
            clients = self.__dict__.get("_rl_clients")
            return list(clients) if clients else []

        def close_clients(self):
            """Close every connection this server accepted (after their
            queued writes drain)."""
            for transport in self._ringline_clients():
                transport.close()

        def abort_clients(self):
            """Abort every connection this server accepted (queued writes
            dropped)."""
            for transport in self._ringline_clients():
                transport.abort()


class Loop(_core.LoopCore, asyncio.BaseEventLoop):
    """An asyncio event loop whose I/O goes through io_uring (or, where
    io_uring is unavailable, through the poll backend's epoll emulation of
    the same operations)."""

    def __init__(self, *, backend: str | None = None, ring_entries: int = 4096,
                 recv_buffers: int = 256,
                 recv_buffer_size: int = 32768, write_hard_cap: int = 0,
                 send_zc_threshold: int | None = None,
                 _mask_flags: int = 0) -> None:
        """backend: "io_uring", "poll" or None/"auto" (RINGLINE_BACKEND, else
        io_uring when available); ring_entries: SQ size; recv_buffers x recv_buffer_size: the provided
        buffer ring streams receive into; write_hard_cap: default hard cap on a
        transport's unsent bytes (0: off, asyncio's behaviour);
        send_zc_threshold: sends of at least this many bytes use SEND_ZC /
        SENDMSG_ZC (None: the default, see docs/benchmarks.md; 0: always)."""
        if recv_buffers < 1 or recv_buffers > 32768:
            raise ValueError("recv_buffers must be in 1..32768")
        if recv_buffer_size < 64 or recv_buffer_size > 16 * 1024 * 1024:
            raise ValueError("recv_buffer_size must be in 64..16 MiB")
        if write_hard_cap < 0:
            raise ValueError("write_hard_cap must be >= 0")
        asyncio.BaseEventLoop.__init__(self)
        self._backend_name, self._backend_reason = _backend.setup_backend(
            self, backend, ring_entries, _mask_flags)
        self.recv_buffers = recv_buffers
        self.recv_buffer_size = recv_buffer_size
        self.write_hard_cap = write_hard_cap
        self._zc_explicit = send_zc_threshold is not None
        if send_zc_threshold is None:
            send_zc_threshold = DEFAULT_SEND_ZC_THRESHOLD
        if send_zc_threshold < 0:
            raise ValueError("send_zc_threshold must be >= 0")
        self.send_zc_threshold = send_zc_threshold
        self._transports = {}
        self._listeners = {}
        # Unix listening sockets whose path is unlinked when the server
        # closes (3.13's cleanup_socket): socket -> inode of the path
        self._unix_server_sockets = {}

    def __repr__(self) -> str:
        return (f"<{self.__class__.__name__} running={self.is_running()} "
                f"closed={self.is_closed()} debug={self.get_debug()} "
                f"backend={getattr(self, '_backend_name', '?')}>")

    # ---- lifecycle ------------------------------------------------------

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        if self._debug:
            logger.debug("Close %r", self)
        if self._signal_handlers:
            if not sys.is_finalizing():
                for sig in list(self._signal_handlers):
                    self.remove_signal_handler(sig)
            else:
                self._signal_handlers.clear()
        self._closed = True
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)
        self._close_core()

    def set_debug(self, enabled: bool) -> None:
        self._debug = bool(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    # ---- DNS --------------------------------------------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """Numeric hosts and ports are answered at once (getaddrinfo with
        AI_NUMERICHOST|AI_NUMERICSERV never does DNS, so it cannot block);
        everything else resolves in the default executor, off the loop."""
        if not self._debug and _numeric_port(port) and _numeric_host(host):
            key = (host, port, family, type, proto, flags)
            try:
                cached = _numeric_cache.get(key)
            except TypeError:      # unhashable arguments: let the resolver say
                cached = None
                key = None
            if cached is not None:
                return list(cached)
            try:
                res = socket.getaddrinfo(host, port, family, type, proto,
                                         flags | _NUMERIC_FLAGS)
            except (socket.gaierror, UnicodeError, TypeError, ValueError):
                pass
            else:
                if key is not None:
                    if len(_numeric_cache) >= 1024:
                        _numeric_cache.clear()
                    _numeric_cache[key] = tuple(res)
                return res
        return await super().getaddrinfo(host, port, family=family, type=type,
                                         proto=proto, flags=flags)

    # ---- readers / writers ------------------------------------------------

    def _ensure_fd_no_transport(self, fd):
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transport = self._transports.get(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(
                f"File descriptor {fd!r} is used by transport {transport!r}")

    def add_reader(self, fd, callback, *args):
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd):
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd, callback, *args):
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd):
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    # ---- signals ----------------------------------------------------------

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig, callback, *args):
        """Run callback(*args) in the loop when signal sig arrives. The signal
        reaches the loop through the ring (a read on the wakeup socket)."""
        if coroutines.iscoroutine(callback) or _iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        wsock = self._ensure_signal_reader()
        try:
            signal.set_wakeup_fd(wsock.fileno())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))
        handle = _core.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    def remove_signal_handler(self, sig):
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise
        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                logger.info("set_wakeup_fd(-1) failed: %s", exc)
        return True

    # ---- sendfile through the ring ----------------------------------------

    async def _sock_sendfile_native(self, sock, file, offset, count):
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise exceptions.SendfileNotAvailableError("not a regular file")
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else fsize
        if not blocksize:
            return 0
        total = 0
        try:
            while True:
                want = _SENDFILE_CHUNK
                if count:
                    want = min(want, count - total)
                    if want <= 0:
                        break
                data = await self._file_read(fileno, want, offset + total)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    n = await self._sock_send(sock, view)
                    total += n
                    view = view[n:]
            return total
        finally:
            if total > 0:
                file.seek(offset + total)

    # ---- transports and servers -------------------------------------------

    def _make_socket_transport(self, sock, protocol, waiter=None, *,
                               extra=None, server=None):
        extra = _socket_extra(sock, extra)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            base_events._set_nodelay(sock)
        transport = _SocketTransport(self, sock, protocol, extra, server)
        if server is not None:
            _core._server_attach(server, transport)
            if not _BASE_SERVER_HAS_CLIENTS:
                clients = server.__dict__.get("_rl_clients")
                if clients is None:
                    clients = server.__dict__["_rl_clients"] = weakref.WeakSet()
                clients.add(transport)
        if not self._zc_explicit and _is_loopback_peer(sock, extra["peername"]):
            transport._core.zc_allowed = False
        self._transports[sock.fileno()] = transport
        transport._core._start(waiter)
        return transport

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None,
                            server=None, ssl_handshake_timeout=None,
                            ssl_shutdown_timeout=None, call_connection_made=True):
        ssl_protocol = sslproto.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=call_connection_made)
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None,
                       backlog=100, ssl_handshake_timeout=None,
                       ssl_shutdown_timeout=None):
        fd = sock.fileno()
        if fd in self._listeners:
            return
        self._listeners[fd] = _core._make_listen_op(
            self, sock, protocol_factory, sslcontext, server, backlog,
            ssl_handshake_timeout, ssl_shutdown_timeout)

    def _stop_serving(self, sock):
        op = self._listeners.pop(sock.fileno(), None)
        if op is not None:
            _core._listen_stop(op)
            # hand the cancellation to the kernel now so that the listening
            # socket (referenced by the accept) is gone when close returns
            self._submit_pending()
        inode = self._unix_server_sockets.pop(sock, None)
        path = None
        if inode is not None:
            try:
                path = sock.getsockname()
            except OSError:
                path = None
        sock.close()
        if path:
            # only the file this server bound: another may have replaced it
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to clean up listening UNIX socket %r: %r",
                             path, err)

    def _accept_connection(self, protocol_factory, conn, sslcontext, server,
                           backlog, ssl_handshake_timeout, ssl_shutdown_timeout):
        """A connection arrived on a listener (called inside a copy of the
        context create_server ran in)."""
        if sslcontext:
            self.create_task(self._accept_tls(
                protocol_factory, conn, sslcontext, server,
                ssl_handshake_timeout, ssl_shutdown_timeout))
            return
        try:
            protocol = protocol_factory()
            self._make_socket_transport(conn, protocol, server=server)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            conn.close()
            self.call_exception_handler({
                "message": "Error on transport creation for incoming connection",
                "exception": exc,
            })

    async def _accept_tls(self, protocol_factory, conn, sslcontext, server,
                          ssl_handshake_timeout, ssl_shutdown_timeout):
        protocol = None
        transport = None
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            transport = self._make_ssl_transport(
                conn, protocol, sslcontext, waiter=waiter, server_side=True,
                server=server, ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout)
            try:
                await waiter
            except BaseException:
                transport.close()
                raise
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            if self._debug:
                context = {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                }
                if protocol is not None:
                    context["protocol"] = protocol
                if transport is not None:
                    context["transport"] = transport
                self.call_exception_handler(context)

    async def create_server(self, *args, **kwargs):
        server = await super().create_server(*args, **kwargs)
        server.__class__ = Server
        return server

    # ---- Unix sockets -----------------------------------------------------

    async def create_unix_connection(self, protocol_factory, path=None, *, ssl=None,
                                     sock=None, server_hostname=None,
                                     ssl_handshake_timeout=None,
                                     ssl_shutdown_timeout=None):
        if server_hostname is not None and not isinstance(server_hostname, str):
            raise TypeError("server_hostname must be a str")
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    async def create_unix_server(self, protocol_factory, path=None, *, sock=None,
                                 backlog=100, ssl=None, ssl_handshake_timeout=None,
                                 ssl_shutdown_timeout=None, start_serving=True,
                                 cleanup_socket=_UNIX_CLEANUP_DEFAULT):
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if path[0] not in (0, "\x00"):     # not an abstract name
                try:
                    if stat.S_ISSOCK(os.stat(path).st_mode):
                        os.remove(path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    logger.error("Unable to check or remove stale UNIX socket %r: %r",
                                 path, err)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE,
                                  f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        sock.setblocking(False)
        if cleanup_socket:
            path = sock.getsockname()
            if path and path[0] not in (0, "\x00"):     # not an abstract name
                try:
                    self._unix_server_sockets[sock] = os.stat(path).st_ino
                except FileNotFoundError:
                    pass
        server = Server(self, [sock], protocol_factory, ssl, backlog,
                        ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)
        return server

    # ---- sendfile on transports -------------------------------------------

    async def _sendfile_native(self, transp, file, offset, count):
        sock = transp._sock
        fd = sock.fileno()
        self._transports.pop(fd, None)
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        try:
            return await self.sock_sendfile(sock, file, offset, count, fallback=False)
        finally:
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()
            self._transports[fd] = transp

    # ---- datagrams --------------------------------------------------------

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None,
                                 extra=None):
        extra = _socket_extra(sock, extra)
        transport = _DatagramTransport(self, sock, protocol, address, extra)
        self._transports[sock.fileno()] = transport
        transport._core._start(waiter)
        return transport

    # ---- pipes ------------------------------------------------------------

    def _make_pipe_transport(self, cls, pipe, protocol, waiter, extra):
        fileno = pipe.fileno()
        mode = os.fstat(fileno).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            raise ValueError("Pipe transport is for pipes/sockets only.")
        os.set_blocking(fileno, False)
        extra = dict(extra) if extra else {}
        extra["pipe"] = pipe
        transport = cls(self, pipe, protocol, extra, None)
        self._transports[fileno] = transport
        if cls is _WritePipeTransport and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            transport._core._start_watch()    # reports the reader closing
        transport._core._start(waiter)
        return transport

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return self._make_pipe_transport(_ReadPipeTransport, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        return self._make_pipe_transport(_WritePipeTransport, pipe, protocol, waiter, extra)

    # ---- subprocesses -----------------------------------------------------

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout,
                                         stderr, bufsize, extra=None, **kwargs):
        waiter = self.create_future()
        transp = _SubprocessTransport(self, protocol, args, shell, stdin, stdout,
                                      stderr, bufsize, waiter=waiter, extra=extra,
                                      **kwargs)
        self._watch_child(transp.get_pid(), transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _watch_child(self, pid, transp):
        """Exit notification through the ring: a poll on the child's pidfd."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
        if pidfd < 0:
            # no pidfd: fall back to a thread that waits for the child
            def waiter():
                try:
                    _, status = os.waitpid(pid, 0)
                    code = os.waitstatus_to_exitcode(status)
                except ChildProcessError:
                    code = 255
                if not self.is_closed():
                    self.call_soon_threadsafe(transp._process_exited, code)
            threading.Thread(target=waiter, daemon=True).start()
            return

        def on_exit():
            self._remove_reader(pidfd)
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
                if wpid == 0:      # spurious: wait again
                    self._add_reader(pidfd, on_exit)
                    return
                code = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                code = 255
                logger.warning("Unknown child process pid %d, will report returncode 255", pid)
            os.close(pidfd)
            if transp._returncode is None:
                transp._process_exited(code)

        self._add_reader(pidfd, on_exit)


def backend(loop=None) -> BackendInfo:
    """Which backend a loop uses and why: `loop`'s, or (cached per setting of
    the RINGLINE_* environment variables) what a new loop would get. (Here,
    not in backend.py, because it creates a Loop: backend.py stays below
    this module.)"""
    if loop is not None:
        return _backend.info_from_loop(loop)
    key = _backend._env_key()
    info = _backend._cache.get(key)
    if info is None:
        new = Loop()
        try:
            info = _backend._cache[key] = _backend.info_from_loop(new)
        finally:
            new.close()
    return info
