"""The asyncio transports of the ringline loop: thin Python faces on native cores.

Owns: the transport classes :class:`ringline._loop.loop.Loop` hands to
protocols -- ``_SocketTransport`` (TCP and Unix streams),
``_ReadPipeTransport`` and ``_WritePipeTransport`` (pipes, sockets and
character devices given to connect_read_pipe / connect_write_pipe),
``_DatagramTransport`` (UDP and Unix datagrams), ``_SubprocessTransport`` (a
child process whose pipes are the transports above) -- and
``_socket_extra``, the ``get_extra_info`` map of a socket transport.  All
I/O, flow control and the close/abort state machine live in the native
cores of ``ringline._core`` (``_loop/stream.pxi``, ``_loop/datagram.pxi``);
the classes here give those cores asyncio's transport class hierarchy, the
attributes asyncio's own machinery looks for (``_start_tls_compatible``,
``_sendfile_compatible``, ``_protocol_paused``, ...) and their reprs.

Lifecycle: the Loop's ``_make_*_transport`` hooks construct one, register
it by fd and start its core; from then on the core drives it, and the
transport object only forwards.  A stream transport garbage-collected while
still open warns (ResourceWarning) and aborts its core.

Invariants: the hot methods (write, writelines, is_closing, sendto, ...)
are the core's bound methods stored on the instance, so calling them costs
no Python frame; a write pipe has no reading side (asyncio's
ReadTransport methods are not bound); nothing here does I/O itself.
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from asyncio import base_subprocess, constants

from .. import _core


def _socket_extra(sock, extra):
    """get_extra_info for a socket transport: the real socket object, its
    name and its peer's (None where the kernel has none)."""
    extra = dict(extra) if extra else {}
    extra["socket"] = sock
    try:
        extra.setdefault("sockname", sock.getsockname())
    except OSError:
        extra.setdefault("sockname", None)
    if extra.get("peername") is None:
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None
    return extra


class _CoreDelegate:
    """What the stream and datagram transport wrappers forward to their
    native core unchanged (hot methods are bound on the instance instead)."""
    __slots__ = ()

    def close(self):
        self._core.close()

    def abort(self):
        self._core.abort()

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol)

    def get_protocol(self):
        return self._core.get_protocol()

    def set_write_buffer_limits(self, high=None, low=None):
        self._core.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    def _force_close(self, exc):
        self._core._force_close(exc)

    @property
    def _sock(self):
        return self._core.sock


class _SocketTransport(_CoreDelegate, asyncio.transports._FlowControlMixin):
    """A TCP or Unix stream transport whose I/O goes through the ring.

    The methods users call most (write, writelines, is_closing, ...) are the
    native core's bound methods stored on the instance, so a call costs no
    Python frame."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE
    _kind = _core.STREAM_SOCKET

    def __init__(self, loop, sock, protocol, extra, server, context=None):
        asyncio.BaseTransport.__init__(self, extra)
        core = _core._make_stream_core(loop, sock, protocol, self, self._extra,
                                       server, context, self._kind)
        self._core = core
        self._loop = loop
        self.write = core.write
        self.writelines = core.writelines
        self.is_closing = core.is_closing
        self.get_write_buffer_size = core.get_write_buffer_size
        if self._kind != _core.STREAM_WRITE_PIPE:
            # a write pipe has no reading side: asyncio's raise
            # NotImplementedError (ReadTransport's methods)
            self.pause_reading = core.pause_reading
            self.resume_reading = core.resume_reading
            self.is_reading = core.is_reading
        self.get_extra_info = core.get_extra_info

    def __repr__(self):
        info = [self.__class__.__name__]
        core = self._core
        try:
            closed = core.sock.fileno() == -1
        except (ValueError, OSError):    # a pipe's file object once closed
            closed = True
        if closed:
            info.append("closed")
        elif core.is_closing():
            info.append("closing")
        else:
            info.append("open")
        info.append(f"fd={core.fileno_}")
        return "<{}>".format(" ".join(info))

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True


    def set_write_hard_cap(self, cap):
        """Drop the connection with WriteBufferOverflow when unsent bytes
        exceed cap (0 disables). Off by default, as in asyncio."""
        if cap < 0:
            raise ValueError("cap must be >= 0")
        self._core.hard_cap = cap


    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core._reset_empty_waiter()

    @property
    def _protocol_paused(self):
        return self._core.protocol_paused_


    @property
    def _protocol(self):
        return self._core.get_protocol()

    def _fatal_error(self, exc, message="Fatal error on transport"):
        self._core._fatal_error(exc, message)

    def __del__(self, _warn=__import__("warnings").warn):
        core = self.__dict__.get("_core")
        if core is None or core.is_closing():
            return
        try:
            open_fd = core.sock.fileno() != -1
        except (ValueError, OSError):
            open_fd = False
        if open_fd:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            if not self._loop.is_closed():
                core.abort()


class _DatagramTransport(_CoreDelegate, asyncio.transports._FlowControlMixin,
                         asyncio.DatagramTransport):
    """A UDP or Unix datagram transport over the ring."""

    def __init__(self, loop, sock, protocol, address, extra):
        asyncio.BaseTransport.__init__(self, extra)
        core = _core._make_datagram_core(loop, sock, protocol, self, self._extra,
                                         address, None)
        self._core = core
        self._loop = loop
        self.sendto = core.sendto
        self.sendto_gso = core.sendto_gso
        self.is_closing = core.is_closing
        self.get_extra_info = core.get_extra_info
        self.get_write_buffer_size = core.get_write_buffer_size

    def __repr__(self):
        return f"<{self.__class__.__name__} fd={self._core.fileno_}>"




    @property
    def _protocol_paused(self):
        return False

    @property
    def _address(self):
        return self._core.address


class _ReadPipeTransport(_SocketTransport, asyncio.ReadTransport):
    """The read end of a pipe (or a socket/character device), read through
    the ring (READ_MULTISHOT from the provided buffer ring when available)."""
    _start_tls_compatible = False
    _sendfile_compatible = constants._SendfileMode.UNSUPPORTED
    _kind = _core.STREAM_READ_PIPE


class _WritePipeTransport(_SocketTransport, asyncio.WriteTransport):
    """The write end of a pipe, written through the ring (WRITE/WRITEV)."""
    _start_tls_compatible = False
    _sendfile_compatible = constants._SendfileMode.UNSUPPORTED
    _kind = _core.STREAM_WRITE_PIPE


class _SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """A child process; its pipes are ring transports and its exit arrives
    through the ring (a poll on its pidfd)."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        stdin_w = None
        if stdin == subprocess.PIPE and sys.platform.startswith("aix"):
            stdin, stdin_w = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
                universal_newlines=False, bufsize=bufsize, **kwargs)
            if stdin_w is not None:
                stdin.close()
                self._proc.stdin = open(stdin_w.detach(), "wb", buffering=bufsize)
                stdin_w = None
        finally:
            if stdin_w is not None:
                stdin.close()
                stdin_w.close()
