# _loop/sockapi.pxi -- the asyncio sock_* API of the loop.
#
# Owns: _LoopSock, the third class of the loop core's chain (_LoopSched ->
# _LoopOps -> _LoopSock -> LoopCore): the sock_* coroutines (sock_recv,
# sock_recv_into, sock_sendall, sock_accept, sock_connect, sock_recvfrom,
# sock_recvfrom_into, sock_sendto, and the private _sock_send / _file_read),
# each issuing one operation object of sockops.pxi, and the per-socket
# stashes that keep what a cancelled operation still received (bytes,
# datagrams, an accepted fd) for the next call on the same socket. The fd
# registry these operations are filed in (sock_ops, sock_new) is fdguard.pxi's.
#
# Lifecycle: a call creates its operation, files it (fdguard), queues it and
# awaits its future; cancellation submits ASYNC_CANCEL and, if the kernel
# completed the operation anyway, stashes its result (nothing is lost, the
# caller's buffer is never written after cancellation).
#
# Invariants: a stash entry is keyed by fd and holds a weak reference to its
# socket: an entry whose socket is gone (the fd reused) is dropped, never
# served to another socket; a receive served from the stash never reaches
# the kernel.


cdef class _LoopSock(_LoopOps):
    """The sock_* API and its stashes (see the file notes)."""

    def __cinit__(self, *args, **kwargs):
        self.recv_stash = {}
        self.accept_stash = {}
        self.sock_ops = {}
        self.sock_new = []
    cdef _recv_orphan(self, _RecvOp done, bytes data):
        """A cancelled receive completed with data: keep it for the next
        receive on that socket, and if one is already waiting (it could not
        see the stash when it started), hand it the oldest bytes now."""
        cdef _RecvOp other
        cdef uint32_t i
        cdef Py_ssize_t k
        cdef Py_buffer view
        sock = done.sock
        self._stash_recv(sock, data)
        for i in range(self.ops_cap):
            if self.ops[i] == NULL or type(<object>self.ops[i]) is not _RecvOp:
                continue
            other = <_RecvOp>self.ops[i]
            if other is done or other.sock is not sock or other.fut.done():
                continue
            chunk = self._take_stash(sock, done.fd, <Py_ssize_t>other.n)
            if chunk is None:
                return
            if other.target is None:
                other.fut.set_result(chunk)
            else:
                k = len(chunk)
                PyObject_GetBuffer(other.target, &view, PyBUF_WRITABLE)
                try:
                    if k > view.len:
                        k = view.len
                    memcpy(view.buf, PyBytes_AS_STRING(chunk), k)
                finally:
                    PyBuffer_Release(&view)
                other.target = None
                other.fut.set_result(k)
            # whatever that receive still gets from the kernel comes later
            # in the stream: its completion stashes it after these bytes
            self._cancel_op(other)
            return

    cdef _stash_recv(self, sock, data):
        key = sock.fileno()
        ent = self.recv_stash.get(key)
        if ent is not None and ent[0]() is sock:
            ent[1].extend(data)
        else:
            self.recv_stash[key] = (_weakref.ref(sock), bytearray(data))

    @cython.final
    cdef object _take_stash(self, sock, int fd, Py_ssize_t n):
        ent = self.recv_stash.get(fd)
        if ent is None:
            return None
        if ent[0]() is not sock:
            del self.recv_stash[fd]
            return None
        buf = <bytearray>ent[1]
        data = bytes(buf[:n])
        del buf[:n]
        if not buf:
            del self.recv_stash[fd]
        return data

    cdef _stash_datagram(self, sock, bytes data, addr):
        key = ('dgram', sock.fileno())
        ent = self.recv_stash.get(key)
        if ent is not None and ent[0]() is sock:
            ent[1].append((data, addr))
        else:
            self.recv_stash[key] = (_weakref.ref(sock), [(data, addr)])

    @cython.final
    cdef object _take_datagram(self, sock, int fd):
        key = ('dgram', fd)
        ent = self.recv_stash.get(key)
        if ent is None:
            return None
        if ent[0]() is not sock or not ent[1]:
            del self.recv_stash[key]
            return None
        item = ent[1].pop(0)
        if not ent[1]:
            del self.recv_stash[key]
        return item

    cdef _stash_accept(self, sock, int newfd):
        if self.closing:
            # the loop is closing (the stash is already cleared): nobody can
            # take this connection any more
            c_close(newfd)
            return
        key = sock.fileno()
        ent = self.accept_stash.get(key)
        if ent is not None and ent[0]() is sock:
            ent[1].append(newfd)
        else:
            if ent is not None:
                for fd in ent[1]:
                    c_close(fd)
            self.accept_stash[key] = (_weakref.ref(sock), [newfd])

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from a non-blocking socket (RECV in the ring)."""
        cdef _RecvOp op
        cdef io_uring_sqe *sqe
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        cdef Py_ssize_t size = n
        if size < 0:
            raise ValueError('negative buffersize in recv')
        if self.recv_stash:
            data = self._take_stash(sock, fd, size)
            if data is not None:
                return data
        if size == 0:
            return b''
        if size > 262144:
            size = 262144
        op = _RecvOp.__new__(_RecvOp)
        op.loop = <LoopCore>self
        op.fd = fd
        op.sock = sock
        op.n = size
        op.mem = self._bounce_get(size, &op.cap)
        fut = op.fut = self._new_future()
        _sock_op_queued(self, op)
        sqe = self._submit(op, IORING_OP_RECV, fd, op.mem, <size_t>size, 0)
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                data = fut.result()
                if data:
                    self._stash_recv(sock, data)
            raise

    async def sock_recv_into(self, sock, buf):
        """Receive into a writable buffer. The kernel writes into a bounce
        buffer owned by the operation; the caller's buffer is written only
        when the result is delivered, never after cancellation."""
        cdef _RecvOp op
        cdef io_uring_sqe *sqe
        cdef Py_buffer view
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        cdef Py_ssize_t size = view.len
        PyBuffer_Release(&view)
        if self.recv_stash:
            data = self._take_stash(sock, fd, size)
            if data is not None:
                memoryview(buf).cast('B')[:len(data)] = data
                return len(data)
        if size == 0:
            return 0
        if size > 262144:
            size = 262144
        op = _RecvOp.__new__(_RecvOp)
        op.loop = <LoopCore>self
        op.fd = fd
        op.sock = sock
        op.n = size
        op.target = buf
        op.mem = self._bounce_get(size, &op.cap)
        fut = op.fut = self._new_future()
        _sock_op_queued(self, op)
        sqe = self._submit(op, IORING_OP_RECV, fd, op.mem, <size_t>size, 0)
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            op.target = None
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                nread = fut.result()
                if nread:
                    self._stash_recv(sock, bytes(memoryview(buf).cast('B')[:nread]))
            raise

    async def sock_sendall(self, sock, data):
        """Send all of data: one non-blocking send() at once, as asyncio
        does (so a close() right after the call cannot overtake the data),
        then SEND in the ring for the rest, continued after partial sends."""
        cdef _SendOp op
        cdef ssize_t sent
        cdef int err
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        op = _SendOp.__new__(_SendOp)
        PyObject_GetBuffer(data, &op.view, PyBUF_SIMPLE)
        op.has_view = True
        if op.view.len == 0:
            PyBuffer_Release(&op.view)
            op.has_view = False
            return None
        sent = c_send(fd, op.view.buf, <size_t>op.view.len, MSG_DONTWAIT | MSG_NOSIGNAL)
        if sent < 0:
            err = errno
            if err != EAGAIN and err != EINTR:
                PyBuffer_Release(&op.view)
                op.has_view = False
                raise _oserror(err)
        elif sent == op.view.len:
            PyBuffer_Release(&op.view)
            op.has_view = False
            return None
        else:
            op.offset = <size_t>sent
        op.loop = <LoopCore>self
        op.fd = fd
        op.sock = sock
        fut = op.fut = self._new_future()
        op.submit()
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            if op.inflight:
                # the caller owns its buffer again once the cancellation
                # surfaces: wait for the kernel to let go of it (invariant 1)
                waiter = op.release_waiter = self._new_future()
                try:
                    await waiter
                except _aexc.CancelledError:
                    pass
            raise

    async def _sock_send(self, sock, data):
        """One SEND: resolves with the number of bytes the kernel took."""
        cdef _SendOp op
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        op = _SendOp.__new__(_SendOp)
        PyObject_GetBuffer(data, &op.view, PyBUF_SIMPLE)
        op.has_view = True
        if op.view.len == 0:
            PyBuffer_Release(&op.view)
            op.has_view = False
            return 0
        op.loop = <LoopCore>self
        op.fd = fd
        op.sock = sock
        op.once = True
        fut = op.fut = self._new_future()
        op.submit()
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise

    async def sock_accept(self, sock):
        """Accept a connection: (conn, address); conn is non-blocking."""
        cdef _AcceptOp op
        cdef io_uring_sqe *sqe
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        if self.accept_stash:
            ent = self.accept_stash.get(fd)
            if ent is not None:
                if ent[0]() is sock and ent[1]:
                    newfd = ent[1].pop(0)
                    if not ent[1]:
                        del self.accept_stash[fd]
                    conn = _socket.socket(sock.family, sock.type, sock.proto, fileno=newfd)
                    conn.setblocking(False)
                    try:
                        addr = conn.getpeername()
                    except OSError:
                        addr = None
                    return conn, addr
                del self.accept_stash[fd]
        op = _AcceptOp.__new__(_AcceptOp)
        op.loop = <LoopCore>self
        op.fd = fd
        op.sock = sock
        op.addrlen = sizeof(sockaddr_storage)
        fut = op.fut = self._new_future()
        _sock_op_queued(self, op)
        sqe = self._submit(op, IORING_OP_ACCEPT, fd, &op.addr, 0, <uint64_t><uintptr_t>&op.addrlen)
        sqe.accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                conn, _ = fut.result()
                self._stash_accept(sock, conn.detach())
            raise

    @cython.final
    cdef int _submit_connect(self, _ConnectOp op) except -1:
        cdef io_uring_sqe *sqe
        _sock_op_queued(self, op)
        self._submit(op, IORING_OP_CONNECT, op.fd, &op.addr, 0, op.addrlen)
        # Connect is handed to the kernel at once (the one exception to "one
        # io_uring_enter per iteration"): asyncio's loops call connect() when
        # sock_connect is called, and code that then blocks on the peer in the
        # same thread (e.g. listener.accept()) relies on the SYN being out.
        if self.sock_new:
            _sock_ops_check_new(self)
        self._drv_enter(0, 0)
        return 0

    async def sock_connect(self, sock, address):
        """Connect a non-blocking socket (CONNECT in the ring)."""
        cdef _ConnectOp op
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        family = sock.family
        op = _ConnectOp.__new__(_ConnectOp)
        op.loop = <LoopCore>self
        op.fd = fd
        op.sock = sock
        alen = _build_sockaddr(family, address, &op.addr)
        if alen == 1:
            resolved = await self._ensure_resolved(
                address, family=family, type=sock.type, proto=sock.proto, loop=self)
            address = resolved[0][4]
            alen = _build_sockaddr(family, address, &op.addr)
            if alen == 1:
                raise OSError(_errno.EINVAL, f'cannot encode address {address!r}')
        op.addrlen = alen
        op.address = address
        fut = op.fut = self._new_future()
        self._submit_connect(op)
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise

    @cython.final
    cdef _MsgOp _recvmsg_op(self, sock, int fd, Py_ssize_t size):
        cdef _MsgOp op = _MsgOp.__new__(_MsgOp)
        op.loop = <LoopCore>self
        op.fd = fd
        op.sock = sock
        op.mem = self._bounce_get(size, &op.cap)
        op.iov.iov_base = op.mem
        op.iov.iov_len = size
        op.msg.msg_name = &op.addr
        op.msg.msg_iov = &op.iov
        op.msg.msg_iovlen = 1
        op.fut = self._new_future()
        op.submit_recv()
        return op

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram: (data, address) (RECVMSG in the ring)."""
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        cdef Py_ssize_t size = bufsize
        if size < 0:
            raise ValueError('negative buffersize in recvfrom')
        if self.recv_stash:
            item = self._take_datagram(sock, fd)
            if item is not None:
                return (item[0][:size], item[1])
        op = self._recvmsg_op(sock, fd, size)
        try:
            return await op.fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into buf: (nbytes, address)."""
        cdef Py_buffer view
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        cdef Py_ssize_t size = view.len
        PyBuffer_Release(&view)
        if nbytes:
            if nbytes < 0:
                raise ValueError('negative buffersize in recvfrom_into')
            if nbytes > size:
                raise ValueError('nbytes is greater than the length of the buffer')
            size = nbytes
        if self.recv_stash:
            item = self._take_datagram(sock, fd)
            if item is not None:
                data = item[0][:size]
                memoryview(buf).cast('B')[:len(data)] = data
                return (len(data), item[1])
        op = self._recvmsg_op(sock, fd, size)
        op.target = buf
        try:
            return await op.fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            op.target = None
            raise

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to address (SENDMSG in the ring)."""
        cdef _MsgOp op
        cdef io_uring_sqe *sqe
        _check_sock(self, sock)
        cdef int fd = _sock_fd(sock)
        cdef int family = _sock_family(sock, fd)
        op = _MsgOp.__new__(_MsgOp)
        op.loop = <LoopCore>self
        op.fd = fd
        op.sock = sock
        op.is_send = True
        alen = _build_sockaddr(family, address, &op.addr)
        if alen == 1:
            resolved = await self._ensure_resolved(
                address, family=family, type=_socket.SOCK_DGRAM, proto=0, loop=self)
            address = resolved[0][4]
            alen = _build_sockaddr(family, address, &op.addr)
        PyObject_GetBuffer(data, &op.view, PyBUF_SIMPLE)
        op.has_view = True
        op.iov.iov_base = op.view.buf
        op.iov.iov_len = op.view.len
        op.msg.msg_name = &op.addr
        op.msg.msg_namelen = alen
        op.msg.msg_iov = &op.iov
        op.msg.msg_iovlen = 1
        fut = op.fut = self._new_future()
        _sock_op_queued(self, op)
        sqe = self._submit(op, IORING_OP_SENDMSG, fd, &op.msg, 1, 0)
        sqe.msg_flags = MSG_NOSIGNAL
        try:
            return await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise

    async def _file_read(self, int fd, Py_ssize_t n, uint64_t offset):
        """Read up to n bytes of a file at offset (READ in the ring)."""
        cdef _ReadOp op = _ReadOp.__new__(_ReadOp)
        cdef io_uring_sqe *sqe
        if self.sock_ops:
            _fd_claim(self, fd, None)
        op.loop = <LoopCore>self
        op.fd = fd
        op.n = n
        op.mem = self._bounce_get(n, &op.cap)
        fut = op.fut = self._new_future()
        sqe = self._submit(op, IORING_OP_READ, fd, op.mem, <size_t>n, offset)
        try:
            res = await fut
        except _aexc.CancelledError:
            self._cancel_op(op)
            raise
        data = op.mem[:res]
        self._bounce_put(op.mem, op.cap)      # completed: the kernel is done
        op.mem = NULL
        return data

    def _sock_ops_pending(self):
        """sock_* operations filed in the fd registry (tests of invariant 10)."""
        return sum([len(_fd_ops(self, fd)) for fd in self.sock_ops])
