"""The ringline event loop class: asyncio's API over the native core.

Owns: the composition of the native LoopCore (ready queue, timers, the ring,
socket operations, readers/writers) with asyncio.BaseEventLoop, whose
cold-path machinery (create_connection's happy eyeballs, create_server's
Server object, TLS via SSLProtocol, subprocess plumbing, executors, DNS in a
thread) is reused unchanged on top of our hooks.

Lifecycle: Loop() sets up its ring (raising OSError naming the reason when
the kernel refuses); run_forever/run_until_complete drive it; close()
releases the executor, signal handlers, every in-flight operation and the ring.
"""
from __future__ import annotations

import asyncio
import errno
import io
import os
import signal
import socket
import sys
import threading
from asyncio import base_events, coroutines, events, exceptions
from asyncio.log import logger

from . import _core

__all__ = ["Loop"]

_SENDFILE_CHUNK = 256 * 1024


def _sighandler_noop(signum, frame):
    """Python-level handler: the real work happens through the wakeup fd."""


class Loop(_core.LoopCore, asyncio.BaseEventLoop):
    """An asyncio event loop whose I/O goes through io_uring."""

    def __init__(self, *, ring_entries: int = 4096, _mask_flags: int = 0) -> None:
        asyncio.BaseEventLoop.__init__(self)
        self._setup_ring(ring_entries, _mask_flags)
        self._transports = {}

    def __repr__(self) -> str:
        return (f"<{self.__class__.__name__} running={self.is_running()} "
                f"closed={self.is_closed()} debug={self.get_debug()} backend=io_uring>")

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
        if (coroutines.iscoroutine(callback)
                or coroutines.iscoroutinefunction(callback)):
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
                await self.sock_sendall(sock, data)
                total += len(data)
            return total
        finally:
            if total > 0:
                file.seek(offset + total)
