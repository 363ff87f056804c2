# _loop/accept.pxi -- listening sockets: the one accept operation.
#
# Owns: _ListenOp, a multishot ACCEPT on a listening socket, for both of its
# users: asyncio's create_server (each accepted fd becomes a transport,
# through LoopCore._accepted, in the context captured when serving began)
# and the native runtime's listeners (each accepted fd handed to the
# on_fd callback: ringline.Conn's listen()). The two differ only in what an
# accepted fd becomes, the retry delay after a resource error and the words
# of their error reports (kept as asyncio's for create_server).
#
# Lifecycle: armed once by _make_listen_op / _listen; the kernel keeps the
# ACCEPT armed (IORING_CQE_F_MORE) and the op re-arms itself when a
# completion ends it; a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM) is
# reported and the accept retried after a delay; EINVAL/EBADF (the socket
# stopped listening or was closed) end it; _listen_stop() cancels it.
#
# Invariants: a connection accepted after stop is closed at once, never
# handed on; an op is armed at most once at a time (`inflight`).


cdef class _ListenOp(_Op):
    """Multishot ACCEPT on a listening socket (see the file notes)."""

    @cython.final
    cdef int arm(self) except -1:
        cdef io_uring_sqe *sqe
        if self.stopped or self.inflight:
            return 0
        sqe = self.loop._submit(self, IORING_OP_ACCEPT, self.fd, NULL, 0, 0)
        sqe.ioprio = IORING_ACCEPT_MULTISHOT
        sqe.accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC
        return 0

    def _rearm(self):
        self.arm()

    @cython.final
    cdef int _report(self, str message, exc) except -1:
        context = {'message': message, 'exception': exc}
        if self.serve is not None:
            context['socket'] = self.sock
        self.loop.call_exception_handler(context)
        return 0

    cdef int complete(self, int res, uint32_t flags) except -1:
        if res >= 0:
            if self.stopped:
                c_close(res)
                return 0
            try:
                if self.serve is not None:
                    self.loop._accepted(self, res)
                else:
                    self.on_fd(res)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._report('Error accepting a connection' if self.serve is not None
                             else 'ringline listener: on_fd() failed', exc)
        elif self.stopped or res == -ECANCELED:
            return 0
        elif res in (-EMFILE, -ENFILE, -ENOBUFS, -ENOMEM):
            self._report('socket.accept() out of system resource' if self.serve is not None
                         else 'accept() out of system resource', _oserror(-res))
            if not (flags & IORING_CQE_F_MORE):
                self.loop.call_later(_aconstants.ACCEPT_RETRY_DELAY if self.serve is not None
                                     else 0.1, self._rearm)
            return 0
        elif res == -EINVAL or res == -EBADF:   # not listening / closed: stop
            self.stopped = True
            return 0
        if not (flags & IORING_CQE_F_MORE) and not self.stopped:
            self.arm()
        return 0


cdef _ListenOp _new_listen_op(LoopCore loop, sock):
    cdef _ListenOp op = _ListenOp.__new__(_ListenOp)
    op.loop = loop
    op.sock = sock
    op.fd = sock.fileno()
    if loop.sock_ops:
        _fd_claim(loop, op.fd, sock)
    return op


def _make_listen_op(LoopCore loop, sock, protocol_factory, sslcontext, server,
                    backlog, ssl_handshake_timeout, ssl_shutdown_timeout):
    """create_server's serving side: a transport per accepted connection."""
    cdef _ListenOp op = _new_listen_op(loop, sock)
    op.family = sock.family
    op.stype = sock.type
    op.proto = sock.proto
    op.serve = (protocol_factory, sslcontext, server, backlog,
                ssl_handshake_timeout, ssl_shutdown_timeout)
    op.context = PyContext_CopyCurrent()
    op.arm()
    return op


def _listen(LoopCore loop, sock, on_fd):
    """The native runtime's listener: on_fd(fd) per accepted connection."""
    cdef _ListenOp op = _new_listen_op(loop, sock)
    op.on_fd = on_fd
    op.arm()
    return op


def _listen_stop(_ListenOp op):
    op.stopped = True
    if op.inflight:
        op.loop._cancel_op(op)


def _listen_active(_ListenOp op):
    return op.inflight and not op.stopped
