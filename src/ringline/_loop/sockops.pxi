# Socket operations of the asyncio API (sock_recv, sock_sendall, ...) issued
# as io_uring operations, never as readiness polls followed by syscalls.
#
# Each call creates one operation object that owns every byte the kernel may
# touch (a bounce buffer for receives, a buffer export of the data for sends,
# sockaddr/msghdr storage) until the kernel's final completion. Cancelling
# the awaiting task submits IORING_OP_ASYNC_CANCEL; if the kernel completes the
# operation anyway, received bytes (or an accepted connection) are kept in a
# per-socket stash that the next call on that socket consumes first, so nothing
# is lost and the caller's buffer is never written after cancellation.

from asyncio import tasks as _asyncio_tasks

cdef size_t _SOCKADDR_MAX = 128


cdef object _parse_sockaddr(sockaddr *sa, socklen_t salen):
    cdef char buf[64]
    cdef sockaddr_in *sin
    cdef sockaddr_in6 *sin6
    cdef sockaddr_un *sun
    cdef Py_ssize_t plen
    if salen == 0:
        return None
    if sa.sa_family == AF_INET:
        sin = <sockaddr_in*>sa
        inet_ntop(AF_INET, &sin.sin_addr, buf, 64)
        return (buf.decode('ascii'), ntohs(sin.sin_port))
    if sa.sa_family == AF_INET6:
        sin6 = <sockaddr_in6*>sa
        inet_ntop(AF_INET6, &sin6.sin6_addr, buf, 64)
        return (buf.decode('ascii'), ntohs(sin6.sin6_port),
                ntohl(sin6.sin6_flowinfo), sin6.sin6_scope_id)
    if sa.sa_family == AF_UNIX:
        sun = <sockaddr_un*>sa
        plen = <Py_ssize_t>salen - <Py_ssize_t>RL_SUN_PATH_OFFSET
        if plen <= 0:
            return ''
        if sun.sun_path[0] == 0:
            return sun.sun_path[:plen]          # abstract namespace: bytes
        while plen > 0 and sun.sun_path[plen - 1] == 0:
            plen -= 1
        return _os.fsdecode(sun.sun_path[:plen])
    return None


cdef socklen_t _build_sockaddr(int family, object address, sockaddr_storage *out) except 0:
    """Encode a resolved Python address for `family` into `out`."""
    cdef sockaddr_in *sin
    cdef sockaddr_in6 *sin6
    cdef sockaddr_un *sun
    cdef bytes host
    cdef bytes path
    memset(out, 0, sizeof(sockaddr_storage))
    if family == AF_INET:
        if not isinstance(address, tuple) or len(address) != 2:
            raise TypeError(f'AF_INET address must be a (host, port) tuple, not {address!r}')
        sin = <sockaddr_in*>out
        sin.sin_family = AF_INET
        port = address[1]
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise OverflowError('port must be 0-65535.')
        sin.sin_port = htons(<uint16_t>port)
        host = _host_bytes(address[0])
        if inet_pton(AF_INET, host, &sin.sin_addr) != 1:
            return 1  # not numeric: the caller resolves
        return sizeof(sockaddr_in)
    if family == AF_INET6:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise TypeError(f'AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]]), not {address!r}')
        sin6 = <sockaddr_in6*>out
        sin6.sin6_family = AF_INET6
        port = address[1]
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise OverflowError('port must be 0-65535.')
        sin6.sin6_port = htons(<uint16_t>port)
        if len(address) > 2:
            sin6.sin6_flowinfo = htonl(<uint32_t>address[2])
        if len(address) > 3:
            sin6.sin6_scope_id = <uint32_t>address[3]
        host = _host_bytes(address[0])
        if b'%' in host:
            return 1
        if inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1:
            return 1
        return sizeof(sockaddr_in6)
    if family == AF_UNIX:
        sun = <sockaddr_un*>out
        sun.sun_family = AF_UNIX
        if isinstance(address, str):
            path = _os.fsencode(address)
        elif isinstance(address, (bytes, bytearray, memoryview)):
            path = bytes(address)
        else:
            raise TypeError(f'AF_UNIX address must be str or bytes, not {type(address).__name__}')
        if len(path) > 107 or (len(path) == 107 and path[:1] != b'\0'):
            raise OSError(_errno.ENAMETOOLONG, 'AF_UNIX path too long')
        memcpy(sun.sun_path, <char*>path, len(path))
        if path[:1] == b'\0':
            return <socklen_t>(RL_SUN_PATH_OFFSET + len(path))
        return <socklen_t>(RL_SUN_PATH_OFFSET + len(path) + 1)
    raise OSError(_errno.EAFNOSUPPORT, f'address family {family} is not supported')


cdef bytes _host_bytes(host):
    if isinstance(host, str):
        if host == '':
            return b'0.0.0.0'
        if host == '<broadcast>':       # socket module's name for INADDR_BROADCAST
            return b'255.255.255.255'
        return (<str>host).encode('idna')
    if isinstance(host, bytes):
        return host
    raise TypeError(f'host must be str or bytes, not {type(host).__name__}')


cdef int _sock_family(sock, int fd) except -1:
    """The socket's family: the object's own attribute, a getsockopt only
    for stand-ins (mocks, wrappers) whose .family is not an int."""
    fam_attr = getattr(sock, 'family', None)
    if isinstance(fam_attr, int):
        return fam_attr
    return _sock_family_fd(fd)


cdef int _sock_family_fd(int fd) except -1:
    cdef int fam = 0
    cdef socklen_t l = sizeof(int)
    if getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &fam, &l) < 0:
        raise _oserror(errno)
    return fam


cdef int _sock_fd(sock) except -1:
    fd = sock.fileno()
    if fd < 0:
        raise OSError(_errno.EBADF, 'Bad file descriptor (the socket is closed)')
    return fd


cdef class _RecvOp(_SockOp):
    """sock_recv / sock_recv_into: RECV into a bounce buffer (from the loop's
    cache, returned at the final completion)."""

    def __dealloc__(self):
        if self.mem != NULL:
            free(self.mem)
            self.mem = NULL

    cdef int _release(self, int res) except -1:
        self.target = None
        self.loop._bounce_put(self.mem, self.cap)
        self.mem = NULL
        return 0

    cdef int _result(self, int res, uint32_t flags) except -1:
        cdef Py_buffer view
        fut = self.fut
        if res >= 0:
            if fut.done():
                if res > 0:
                    self.loop._recv_orphan(self, self.mem[:res])
            elif self.target is None:
                fut.set_result(self.mem[:res])
            else:
                PyObject_GetBuffer(self.target, &view, PyBUF_WRITABLE)
                try:
                    if <size_t>res > <size_t>view.len:
                        res = <int>view.len
                    memcpy(view.buf, self.mem, res)
                finally:
                    PyBuffer_Release(&view)
                fut.set_result(res)
        elif not fut.done():
            fut.set_exception(_oserror(-res))
        self.target = None
        self.loop._bounce_put(self.mem, self.cap)
        self.mem = NULL
        return 0


cdef class _SendOp(_SockOp):
    """sock_sendall: SEND of a held buffer export, continued after partial
    sends until everything went out."""

    def __dealloc__(self):
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False

    @cython.final
    cdef int submit(self) except -1:
        cdef io_uring_sqe *sqe
        _sock_op_queued(self.loop, self)
        sqe = self.loop._submit(self, IORING_OP_SEND, self.fd,
                                <char*>self.view.buf + self.offset,
                                <size_t>self.view.len - self.offset, 0)
        sqe.msg_flags = MSG_NOSIGNAL
        return 0

    cdef int _release(self, int res) except -1:
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False
        return 0

    cdef int _result(self, int res, uint32_t flags) except -1:
        fut = self.fut
        if res >= 0:
            self.offset += res
            if self.once:
                if not fut.done():
                    fut.set_result(res)
            elif self.offset < <size_t>self.view.len and not fut.done():
                self.submit()
                return 0
            elif not fut.done():
                fut.set_result(None)
        elif res == -EAGAIN or res == -EINTR:
            if not fut.done():
                self.submit()
                return 0
        elif not fut.done():
            fut.set_exception(_oserror(-res))
        if self.has_view and not self.inflight:
            PyBuffer_Release(&self.view)
            self.has_view = False
        if not self.inflight and self.release_waiter is not None:
            if not self.release_waiter.done():
                self.release_waiter.set_result(None)
            self.release_waiter = None
        return 0


cdef class _AcceptOp(_SockOp):

    cdef int _release(self, int res) except -1:
        if res >= 0:
            c_close(res)         # accepted from a listener the user closed
        return 0

    cdef int _result(self, int res, uint32_t flags) except -1:
        fut = self.fut
        if res >= 0:
            if fut.done() or self.loop.closing:
                self.loop._stash_accept(self.sock, res)
                return 0
            try:
                conn = _socket.socket(self.sock.family, self.sock.type,
                                      self.sock.proto, fileno=res)
            except BaseException:
                c_close(res)
                raise
            conn.setblocking(False)
            fut.set_result((conn, _parse_sockaddr(<sockaddr*>&self.addr, self.addrlen)))
        elif not fut.done():
            fut.set_exception(_oserror(-res))
        return 0


cdef class _ConnectOp(_SockOp):

    cdef int _result(self, int res, uint32_t flags) except -1:
        fut = self.fut
        if fut.done():
            return 0
        if res == 0:
            fut.set_result(None)
        elif res == -EINTR or res == -EAGAIN:
            # interrupted before completion: ask again (EISCONN means done)
            self.loop._submit_connect(self)
        elif res == -EISCONN:  # after a retried attempt
            fut.set_result(None)
        elif getattr(self.sock, 'family', None) == AF_UNIX:
            # a Unix connect fails at once on asyncio (in connect() itself):
            # the OS's message, which callers match on
            fut.set_exception(_oserror(-res))
        else:
            fut.set_exception(OSError(-res, f'Connect call failed {self.address}'))
        return 0


cdef class _MsgOp(_SockOp):
    """RECVMSG / SENDMSG with their msghdr, iovec and address storage."""

    def __dealloc__(self):
        if self.mem != NULL:
            free(self.mem)
            self.mem = NULL
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False

    @cython.final
    cdef int submit_recv(self) except -1:
        cdef io_uring_sqe *sqe
        self.msg.msg_namelen = sizeof(sockaddr_storage)
        _sock_op_queued(self.loop, self)
        self.loop._submit(self, IORING_OP_RECVMSG, self.fd, &self.msg, 1, 0)
        return 0

    cdef int _release(self, int res) except -1:
        self.target = None
        if self.mem != NULL:
            self.loop._bounce_put(self.mem, self.cap)
            self.mem = NULL
        if self.has_view:
            PyBuffer_Release(&self.view)
            self.has_view = False
        return 0

    cdef int _result(self, int res, uint32_t flags) except -1:
        if res == -EAGAIN and not self.is_send and self.mem != NULL and not self.fut.done():
            # readable with nothing to read (a UDP socket shut down for
            # reading): the kernel gave up after its own poll; keep waiting,
            # as a selector loop does, instead of failing the await
            return self.submit_recv()
        try:
            return self._complete(res, flags)
        finally:
            if self.mem != NULL:
                self.loop._bounce_put(self.mem, self.cap)
                self.mem = NULL

    @cython.final
    cdef int _complete(self, int res, uint32_t flags) except -1:
        cdef Py_buffer view
        fut = self.fut
        if self.is_send:
            if self.has_view:
                PyBuffer_Release(&self.view)
                self.has_view = False
            if fut.done():
                return 0
            if res >= 0:
                fut.set_result(res)
            else:
                fut.set_exception(_oserror(-res))
            return 0
        if fut.done():
            if res >= 0:
                # cancelled as it arrived: keep it for the next sock_recvfrom
                self.loop._stash_datagram(self.sock, self.mem[:res],
                    _parse_sockaddr(<sockaddr*>&self.addr, self.msg.msg_namelen))
            return 0
        if res < 0:
            fut.set_exception(_oserror(-res))
            return 0
        addr = _parse_sockaddr(<sockaddr*>&self.addr, self.msg.msg_namelen)
        if self.target is None:
            fut.set_result((self.mem[:res], addr))
        else:
            PyObject_GetBuffer(self.target, &view, PyBUF_WRITABLE)
            try:
                if <size_t>res > <size_t>view.len:
                    res = <int>view.len
                memcpy(view.buf, self.mem, res)
            finally:
                PyBuffer_Release(&view)
            self.target = None
            fut.set_result((res, addr))
        return 0


cdef class _ReadOp(_Op):
    """READ of a file into a bounce buffer (sendfile's file side); the
    awaiting coroutine copies the bytes out and returns the buffer."""

    def __dealloc__(self):
        if self.mem != NULL:
            free(self.mem)
            self.mem = NULL

    cdef int complete(self, int res, uint32_t flags) except -1:
        fut = self.fut
        if fut.done():
            return 0
        if res >= 0:
            fut.set_result(res)
        else:
            fut.set_exception(_oserror(-res))
        return 0


cdef int _check_sock(_LoopSock loop, sock) except -1:
    if loop._closed:
        raise RuntimeError('Event loop is closed')
    if isinstance(sock, _ssl_SSLSocket):
        raise TypeError('Socket cannot be of type SSLSocket')
    if loop._debug and sock.gettimeout() != 0:
        raise ValueError('the socket must be non-blocking')
    return 0


try:
    from ssl import SSLSocket as _ssl_SSLSocket
except ImportError:  # pragma: no cover
    class _ssl_SSLSocket:
        pass
