# _loop/accept.pxi -- listening sockets: a multishot ACCEPT per listener.
#
# Owns: _ListenOp (create_server's serving side: one transport per accepted
# connection, through LoopCore._accepted) and _NListenOp (the native
# runtime's listener: each accepted fd handed to a Python callback).
#
# Lifecycle: armed once; the kernel keeps the ACCEPT armed (IORING_CQE_F_MORE)
# and the op re-arms itself when a completion ends it; a resource error
# (EMFILE, ENFILE, ENOBUFS, ENOMEM) is reported and the accept retried after
# a delay; EINVAL/EBADF (the socket stopped listening or was closed) stop
# it; stop() cancels it.
#
# Invariants: a connection accepted after stop() is closed at once, never
# handed on; an op is armed at most once at a time (`inflight`).


cdef class _ListenOp(_Op):
    """Multishot ACCEPT on a listening socket (create_server)."""

    cdef int arm(self) except -1:
        cdef io_uring_sqe *sqe
        if self.stopped or self.inflight:
            return 0
        sqe = self.loop._sqe(IORING_OP_ACCEPT)
        sqe.fd = self.fd
        sqe.ioprio = IORING_ACCEPT_MULTISHOT
        sqe.accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC
        sqe.user_data = self.loop._reg(self)
        return 0

    def _rearm(self):
        self.arm()

    cdef int complete(self, int res, uint32_t flags) except -1:
        if res >= 0:
            if self.stopped:
                c_close(res)
                return 0
            try:
                self.loop._accepted(self, res)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.loop.call_exception_handler({
                    'message': 'Error accepting a connection',
                    'exception': exc,
                    'socket': self.sock,
                })
        elif self.stopped or res == -_ECANCELED:
            return 0
        elif res in (-24, -23, -105, -12):   # EMFILE ENFILE ENOBUFS ENOMEM
            self.loop.call_exception_handler({
                'message': 'socket.accept() out of system resource',
                'exception': _oserror(-res),
                'socket': self.sock,
            })
            if not (flags & IORING_CQE_F_MORE):
                self.loop.call_later(_aconstants.ACCEPT_RETRY_DELAY, self._rearm)
            return 0
        elif res == -22 or res == -9:   # EINVAL (not listening) / EBADF: stop
            self.stopped = True
            return 0
        if not (flags & IORING_CQE_F_MORE) and not self.stopped:
            self.arm()
        return 0


def _make_listen_op(LoopCore loop, sock, protocol_factory, sslcontext, server,
                    backlog, ssl_handshake_timeout, ssl_shutdown_timeout):
    cdef _ListenOp op = _ListenOp.__new__(_ListenOp)
    op.loop = loop
    op.sock = sock
    op.fd = sock.fileno()
    if loop.sock_ops:
        _fd_claim(loop, op.fd, sock)
    op.family = sock.family
    op.stype = sock.type
    op.proto = sock.proto
    op.protocol_factory = protocol_factory
    op.sslcontext = sslcontext
    op.server = server
    op.backlog = backlog
    op.ssl_handshake_timeout = ssl_handshake_timeout
    op.ssl_shutdown_timeout = ssl_shutdown_timeout
    op.context = PyContext_CopyCurrent()
    op.arm()
    return op


def _stop_listen_op(_ListenOp op):
    op.stopped = True
    if op.inflight:
        op.loop._cancel_op(op)


cdef class _NListenOp(_Op):
    """Multishot ACCEPT handing each accepted fd to a Python callback."""

    cdef int arm(self) except -1:
        cdef io_uring_sqe *sqe
        if self.stopped or self.inflight:
            return 0
        sqe = self.loop._sqe(IORING_OP_ACCEPT)
        sqe.fd = self.fd
        sqe.ioprio = IORING_ACCEPT_MULTISHOT
        sqe.accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC
        sqe.user_data = self.loop._reg(self)
        return 0

    def _rearm(self):
        self.arm()

    cdef int complete(self, int res, uint32_t flags) except -1:
        if res >= 0:
            if self.stopped:
                c_close(res)
                return 0
            try:
                self.on_fd(res)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.loop.call_exception_handler({
                    'message': 'ringline listener: on_fd() failed',
                    'exception': exc,
                })
        elif self.stopped or res == -_ECANCELED:
            return 0
        elif res in (-24, -23, -105, -12):   # EMFILE ENFILE ENOBUFS ENOMEM
            self.loop.call_exception_handler({
                'message': 'accept() out of system resource',
                'exception': _oserror(-res),
            })
            if not (flags & IORING_CQE_F_MORE):
                self.loop.call_later(0.1, self._rearm)
            return 0
        elif res == -22 or res == -9:
            self.stopped = True
            return 0
        if not (flags & IORING_CQE_F_MORE) and not self.stopped:
            self.arm()
        return 0


def _listen(LoopCore loop, sock, on_fd):
    cdef _NListenOp op = _NListenOp.__new__(_NListenOp)
    op.loop = loop
    op.fd = sock.fileno()
    if loop.sock_ops:
        _fd_claim(loop, op.fd, sock)
    op.on_fd = on_fd
    op.arm()
    return op


def _listen_stop(_NListenOp op):
    op.stopped = True
    if op.inflight:
        op.loop._cancel_op(op)


def _listen_active(_NListenOp op):
    return op.inflight and not op.stopped
