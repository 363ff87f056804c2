# Datagram (UDP and Unix datagram) transports over the ring.
#
# Receive (UDP): one multishot RECVMSG drawing from the loop's datagram
#   buffer ring (its own provided-buffer group): each completion's buffer
#   holds an io_uring_recvmsg_out header, the source address and the payload
#   (room for 65,904 bytes: more than the largest UDP datagram, IPv4 or
#   IPv6); the payload is copied into a bytes, the buffer returned at once.
# Receive (Unix and other families, whose datagrams may be larger: up to the
#   sender's SO_SNDBUF, about 4 MiB): each datagram is delivered whole, by two
#   RECVMSGs -- MSG_PEEK|MSG_TRUNC for its length, then the read itself into
#   the transport's own buffer, grown to the largest datagram seen.
# Send: every sendto() becomes one SENDMSG holding a copy of the datagram and
#   its encoded address until completion; the bytes in flight count for flow
#   control (pause_writing above the high-water mark). sendto_gso() is the
#   same SENDMSG with a UDP_SEGMENT control message in the op (UDP GSO: one
#   buffer of equal-size datagrams, cut by the kernel); the poll driver's
#   emulated SENDMSG passes the control message on to sendmsg(2).
# Lifecycle: created -> connection_made (soon) -> receiving -> close() (waits
#   for sends in flight) or abort() -> connection_lost exactly once (soon).


cdef class _DgramRecvOp(_Op):

    cdef int complete(self, int res, uint32_t flags) except -1:
        return self.owner._on_recv(res, flags)


cdef class _DgramWholeOp(_DgramRecvOp):
    """The two-step receive of a datagram of any size (see the notes)."""

    def __dealloc__(self):
        if self.buf != NULL:
            free(self.buf)
            self.buf = NULL

    cdef int complete(self, int res, uint32_t flags) except -1:
        return self.owner._on_whole(res)


cdef class _DgramSendOp(_Op):

    cdef int complete(self, int res, uint32_t flags) except -1:
        owner = self.owner
        self.owner = None
        if owner is not None:
            owner.sends.discard(self)
            owner._on_sent(self, res)
        self.data = None
        return 0


cdef class _DatagramCore:

    def __cinit__(self):
        self.high_water = 64 * 1024
        self.low_water = 16 * 1024

    def _start(self, waiter):
        self.loop.call_soon(self._connection_made, context=self.context)
        if waiter is not None:
            self.loop.call_soon(_futures._set_result_unless_cancelled, waiter, None)

    def _connection_made(self):
        # runs as a handle inside self.context; an exception is logged by
        # the handle and the transport keeps working, as on asyncio
        self.connected = True
        try:
            self.protocol.connection_made(self.transport)
        finally:
            if not self.closing:
                self._arm_recv()

    @cython.final
    cdef int _arm_recv(self) except -1:
        cdef io_uring_sqe *sqe
        if self.rop.inflight or self.closing:
            return 0
        if self.whole:
            return self._arm_whole(True)
        self.loop._ensure_dpbuf()
        self.rop.msg.msg_namelen = sizeof(sockaddr_storage)
        self.rop.msg.msg_controllen = 0
        sqe = self.loop._submit(self.rop, IORING_OP_RECVMSG, self.fd, &self.rop.msg, 1, 0)
        sqe.ioprio = IORING_RECV_MULTISHOT
        sqe.flags = IOSQE_BUFFER_SELECT
        sqe.buf_group = self.loop.dpbuf.bgid
        return 0

    def _rearm(self):
        self._arm_recv()

    @cython.final
    cdef int _arm_whole(self, bint peek) except -1:
        cdef _DgramWholeOp op = <_DgramWholeOp>self.rop
        cdef io_uring_sqe *sqe
        op.peeking = peek
        memset(&op.msg, 0, sizeof(msghdr))
        if peek:
            op.iov.iov_base = &op.scratch
            op.iov.iov_len = 1
        else:
            op.iov.iov_base = op.buf
            op.iov.iov_len = op.cap
            op.msg.msg_name = &op.addr
            op.msg.msg_namelen = sizeof(sockaddr_storage)
        op.msg.msg_iov = &op.iov
        op.msg.msg_iovlen = 1
        sqe = self.loop._submit(op, IORING_OP_RECVMSG, self.fd, &op.msg, 1, 0)
        if peek:
            sqe.msg_flags = MSG_PEEK | MSG_TRUNC    # the result is the whole length
        return 0

    @cython.final
    cdef int _on_whole(self, int res) except -1:
        cdef _DgramWholeOp op = <_DgramWholeOp>self.rop
        cdef size_t need
        cdef char *nbuf
        if self.closing or res == -ECANCELED:
            return 0
        if res == -EAGAIN or res == -EINTR:    # ask again
            return self._arm_whole(op.peeking)
        if res < 0:
            self.protocol.error_received(_oserror(-res))
            if not self.closing:
                self._arm_whole(True)
            return 0
        if op.peeking:
            need = <size_t>res if res > 0 else 1
            if need > op.cap:
                nbuf = <char*>realloc(op.buf, need)   # not in flight: the kernel is done
                if nbuf == NULL:
                    raise MemoryError()
                op.buf = nbuf
                op.cap = need
            return self._arm_whole(False)
        namelen = op.msg.msg_namelen
        if namelen > sizeof(sockaddr_storage):
            namelen = sizeof(sockaddr_storage)
        addr = _parse_sockaddr(<sockaddr*>&op.addr, namelen)
        if self.address is not None and addr is None:
            addr = self.address
        data = PyBytes_FromStringAndSize(op.buf, res)
        try:
            self.protocol.datagram_received(data, addr)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, 'Fatal error: protocol.datagram_received() call failed.')
        if not self.closing:
            self._arm_whole(True)
        return 0

    @cython.final
    cdef int _on_recv(self, int res, uint32_t flags) except -1:
        cdef unsigned bid
        cdef char *ptr
        cdef io_uring_recvmsg_out *out
        cdef LoopCore loop = self.loop
        cdef uint32_t namelen
        if flags & IORING_CQE_F_BUFFER:
            bid = flags >> IORING_CQE_BUFFER_SHIFT
            ptr = rl_pbuf_addr(&loop.dpbuf, bid)
            try:
                if res >= <int>sizeof(io_uring_recvmsg_out) and not self.closing:
                    out = <io_uring_recvmsg_out*>ptr
                    namelen = out.namelen
                    if namelen > sizeof(sockaddr_storage):
                        namelen = sizeof(sockaddr_storage)
                    addr = _parse_sockaddr(<sockaddr*>(ptr + sizeof(io_uring_recvmsg_out)), namelen)
                    data = PyBytes_FromStringAndSize(
                        ptr + sizeof(io_uring_recvmsg_out) + sizeof(sockaddr_storage),
                        out.payloadlen)
                    if self.address is not None and addr is None:
                        addr = self.address
                    # protocol callbacks run in the endpoint's context
                    PyContext_Enter(self.context)
                    try:
                        self.protocol.datagram_received(data, addr)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self._fatal_error(exc, 'Fatal error: protocol.datagram_received() call failed.')
                    finally:
                        PyContext_Exit(self.context)
            finally:
                rl_pbuf_add(&loop.dpbuf, <unsigned short>bid)
                rl_pbuf_publish(&loop.dpbuf)
        elif res == -ENOBUFS:
            loop.enobufs += 1
            loop.call_soon(self._rearm)
            return 0
        elif res == -ECANCELED:
            return 0
        elif res < 0 and not self.closing:
            PyContext_Enter(self.context)
            try:
                self.protocol.error_received(_oserror(-res))
            finally:
                PyContext_Exit(self.context)
        if not (flags & IORING_CQE_F_MORE) and not self.closing:
            self._arm_recv()
        return 0

    def sendto(self, data, addr=None):
        self._send(data, addr, 0)

    def sendto_gso(self, data, int segment, addr=None):
        """Send ``data`` as datagrams of ``segment`` bytes each (the last
        may be shorter) with one SENDMSG carrying a UDP_SEGMENT control
        message (UDP GSO: the kernel cuts the buffer). The caller bounds
        the count (the kernel refuses more than 64 segments or more than
        one datagram's 64 KiB in all, with EINVAL reported through
        error_received). Datagram sockets of the IP families only."""
        if segment <= 0 or segment > 65535:
            raise ValueError(f'segment must be 1..65535, not {segment}')
        if self.whole:
            raise ValueError('UDP GSO needs an AF_INET or AF_INET6 socket')
        self._send(data, addr, segment)

    @cython.final
    cdef int _send(self, data, addr, int segment) except -1:
        cdef _DgramSendOp op
        cdef io_uring_sqe *sqe
        cdef socklen_t alen = 0
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f'data argument must be a bytes-like object, '
                            f'not {type(data).__name__!r}')
        if not data:
            return 0
        if self.address is not None:
            if addr not in (None, self.address):
                raise ValueError(f'Invalid address: must be None or {self.address}')
            addr = None      # connected: the kernel knows the peer
        if self.conn_lost or self.closing:
            if self.conn_lost >= _aconstants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                _logger.warning('socket.sendto() raised exception.')
            self.conn_lost += 1
            return 0
        op = _DgramSendOp.__new__(_DgramSendOp)
        if addr is not None:
            alen = _build_sockaddr(self.family, addr, &op.addr)
            if alen == 1:
                # a name: resolved here, as socket.sendto() does; a failure
                # goes to error_received, as on asyncio
                try:
                    info = _socket.getaddrinfo(addr[0], addr[1], self.family,
                                               _socket.SOCK_DGRAM)
                except OSError as exc:
                    self.protocol.error_received(exc)
                    return 0
                alen = _build_sockaddr(self.family, info[0][4], &op.addr)
        op.loop = self.loop
        op.owner = self
        op.fd = self.fd
        op.data = bytes(data)
        op.iov.iov_base = PyBytes_AS_STRING(op.data)
        op.iov.iov_len = len(op.data)
        op.msg.msg_name = &op.addr if alen else NULL
        op.msg.msg_namelen = alen
        op.msg.msg_iov = &op.iov
        op.msg.msg_iovlen = 1
        if segment:
            op.msg.msg_control = &op.cmsg[0]
            op.msg.msg_controllen = rl_udp_segment_cmsg(&op.cmsg[0], <uint16_t>segment)
        sqe = self.loop._submit(op, IORING_OP_SENDMSG, self.fd, &op.msg, 1, 0)
        sqe.msg_flags = MSG_NOSIGNAL
        self.sends.add(op)
        self.inflight_bytes += len(op.data)
        self.inflight_ops += 1
        self._maybe_pause_protocol()
        return 0

    @cython.final
    cdef int _on_sent(self, _DgramSendOp op, int res) except -1:
        self.inflight_bytes -= len(op.data)
        self.inflight_ops -= 1
        if self.protocol is None:
            return 0         # cancelled by abort(): connection_lost was called
        if res < 0 and res != -ECANCELED and not self.lost_scheduled:
            PyContext_Enter(self.context)
            try:
                self.protocol.error_received(_oserror(-res))
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, 'Fatal error: protocol.error_received() call failed.')
                return 0
            finally:
                PyContext_Exit(self.context)
        self._maybe_resume_protocol()
        if self.closing and self.inflight_ops == 0:
            self._schedule_connection_lost(None)
        return 0

    @cython.final
    cdef int _maybe_pause_protocol(self) except -1:
        if self.inflight_bytes <= self.high_water or self.protocol_paused:
            return 0
        self.protocol_paused = True
        try:
            self.protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.loop.call_exception_handler({
                'message': 'protocol.pause_writing() failed', 'exception': exc,
                'transport': self.transport, 'protocol': self.protocol})
        return 0

    @cython.final
    cdef int _maybe_resume_protocol(self) except -1:
        if self.protocol_paused and self.inflight_bytes <= self.low_water:
            self.protocol_paused = False
            try:
                self.protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.loop.call_exception_handler({
                    'message': 'protocol.resume_writing() failed', 'exception': exc,
                    'transport': self.transport, 'protocol': self.protocol})
        return 0

    def get_write_buffer_size(self):
        return self.inflight_bytes

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f'high ({high!r}) must be >= low ({low!r}) must be >= 0')
        self.high_water = high
        self.low_water = low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self):
        return (self.low_water, self.high_water)

    def is_closing(self):
        return self.closing

    def close(self):
        if self.closing:
            return
        self.closing = True
        if self.rop.inflight:
            self.loop._cancel_op(self.rop)
        if self.inflight_ops == 0:
            self._schedule_connection_lost(None)

    def abort(self):
        self._force_close(None)

    def _force_close(self, exc):
        if self.lost_scheduled:
            return
        if not self.closing:
            self.closing = True
            if self.rop.inflight:
                self.loop._cancel_op(self.rop)
        self._schedule_connection_lost(exc)

    def _fatal_error(self, exc, message='Fatal error on transport'):
        if isinstance(exc, OSError):
            if self.loop._debug:
                _logger.debug('%r: %s', self.transport, message, exc_info=True)
        else:
            self.loop.call_exception_handler({
                'message': message, 'exception': exc,
                'transport': self.transport, 'protocol': self.protocol})
        self._force_close(exc)

    @cython.final
    cdef int _schedule_connection_lost(self, exc) except -1:
        if self.lost_scheduled:
            return 0
        self.lost_scheduled = True
        self.conn_lost += 1
        self.loop.call_soon(self._call_connection_lost, exc, context=self.context)
        return 0

    def _call_connection_lost(self, exc):
        try:
            if self.connected:
                self.protocol.connection_lost(exc)
        finally:
            # the fd closes below and its number may be reused at once: what
            # is still queued is voided, what is in flight cancelled first
            # (abort() leaves sends in flight; a blocked Unix datagram send
            # must never go out on the next socket with this number)
            self.loop._void_fd(self.fd)
            if self.rop.inflight:
                self.loop._cancel_op(self.rop)
            for op in list(self.sends):
                if (<_DgramSendOp>op).inflight:
                    self.loop._cancel_op(<_DgramSendOp>op)
            transports = getattr(self.loop, '_transports', None)
            if transports is not None and transports.get(self.fd) is self.transport:
                del transports[self.fd]
            self.sock.close()
            self.protocol = None
            self.transport = None

    def set_protocol(self, protocol):
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol

    def get_extra_info(self, name, default=None):
        return self.extra.get(name, default)

    @property
    def fileno_(self):
        return self.fd


def _make_datagram_core(LoopCore loop, sock, protocol, transport, dict extra,
                        address, context):
    cdef _DatagramCore c = _DatagramCore.__new__(_DatagramCore)
    c.loop = loop
    c.sock = sock
    c.fd = sock.fileno()
    if loop.sock_ops:
        _fd_claim(loop, c.fd, sock)
    c.family = sock.family
    c.protocol = protocol
    c.transport = transport
    c.extra = extra
    c.address = address
    c.context = context if context is not None else PyContext_CopyCurrent()
    c.sends = set()
    c.whole = c.family != AF_INET and c.family != AF_INET6
    c.rop = (_DgramWholeOp.__new__(_DgramWholeOp) if c.whole
             else _DgramRecvOp.__new__(_DgramRecvOp))
    c.rop.loop = loop
    c.rop.owner = c
    c.rop.fd = c.fd
    return c
