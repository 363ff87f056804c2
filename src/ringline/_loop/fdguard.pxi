# File-descriptor identity guard for the sock_* operations (invariant 10: no
# operation outlives its file descriptor's identity).
#
# Owns: the loop's registry of pending sock_* operations, by fd number
# (LoopCore.sock_ops: fd -> the first _SockOp of that fd's list, linked
# through the operations themselves), the list of those queued since the
# last submission (LoopCore.sock_new) and the time of the last full check.
#
# Problem: user code may close a socket while one of its sock_* operations is
# pending; the number is then free and the next socket may get it. Drivers
# file operations by number: the poll driver would run the old operation
# against the new socket (the old waiter reads the new socket's bytes, an old
# sendall writes into it), and an io_uring operation keeps the closed file
# open (its peer sees no EOF). asyncio is the reference for what is observed:
# the old waiter keeps waiting (until it is cancelled), the new socket gets all
# of its bytes, the old peer sees EOF at once.
#
# Rule: an operation whose socket no longer owns its fd number (fileno() is
# -1 or another number) is *orphaned*: taken out of the registry, its SQE made
# a NOP if the driver has not read it yet (LoopCore._cancel_for_close), else
# cancelled; its
# completion then only releases what it holds (a bounce buffer, a buffer
# export, an accepted fd) and never touches the future. Checked:
#   - when a new owner appears for fd N (_fd_claim): a sock_* call with another
#     socket object, a transport, datagram transport, listener or Conn created
#     on N, add_reader/add_writer on N, the signal socket -- before the new
#     owner's first operation is queued, so the driver sees the cancel first;
#   - before every submission, for the operations queued since the previous
#     one (their SQE still in the SQ: voided, never run on a reused number);
#   - all of the registry at most once per _SCAN_INTERVAL (scaled with its
#     size) and, when the loop is about to block, no later than that: this
#     releases the closed file on io_uring so the peer sees EOF.
# Cost: nothing unless sock_* operations are pending; transports and Conns
# only test `if loop.sock_ops` once when created. A sock_* operation pays a
# dict insert and delete and one ownership check (the fd field of the
# socket object read directly; fileno() for other objects).

cdef double _SCAN_INTERVAL = 0.001       # s between full checks, at least
cdef double _SCAN_PER_ENTRY = 1e-6       # s added per registered fd

cdef extern from *:
    """
    /* CPython's socket object starts with its fd (Modules/socketmodule.h:
     * PySocketSockObject { PyObject_HEAD; SOCKET_T sock_fd; ... }); checked
     * against fileno() when the module loads (_sock_fd_direct_ok). */
    typedef struct { PyObject_HEAD int sock_fd; } rl_pysock_head;
    static inline int rl_pysock_fd(PyObject *o) { return ((rl_pysock_head *)o)->sock_fd; }
    """
    int rl_pysock_fd(PyObject *o)

import _socket as _c_socket


cdef type _SockBase = _c_socket.socket


cdef bint _sock_fd_direct_ok():
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ok = rl_pysock_fd(<PyObject*>s) == s.fileno() and s.fileno() >= 0
    finally:
        s.close()
    return ok and rl_pysock_fd(<PyObject*>s) == -1


cdef bint _SOCK_FD_DIRECT = _sock_fd_direct_ok()


cdef class _SockOp(_Op):
    """An operation of the sock_* API, filed under its fd while in flight."""

    cdef int complete(self, int res, uint32_t flags) except -1:
        try:
            if self.orphaned:
                self._release(res)
            else:
                self._result(res, flags)
        finally:
            if self.filed and not self.inflight:
                _sock_op_unfile(self)
        return 0

    cdef int _result(self, int res, uint32_t flags) except -1:
        return 0

    cdef int _release(self, int res) except -1:
        """Orphaned: free what the operation holds; the future is left alone."""
        return 0


cdef inline bint _sock_owns(sock, int fd):
    """Does this socket object still own fd (not closed, not detached)?"""
    if _SOCK_FD_DIRECT and isinstance(sock, _SockBase):
        return rl_pysock_fd(<PyObject*>sock) == fd
    try:
        return sock.fileno() == fd
    except Exception:
        return True          # a stand-in we cannot ask: assume it does


cdef list _fd_ops(_LoopSock loop, int fd):
    """The operations filed under fd (a copy: safe to orphan while walking)."""
    cdef list out = []
    cdef _SockOp op = loop.sock_ops.get(fd)
    while op is not None:
        out.append(op)
        op = op.fd_next
    return out


cdef int _sock_op_queued(_LoopSock loop, _SockOp op) except -1:
    """Call right before queueing op's SQE (first submission or a retry)."""
    cdef _SockOp head
    if not op.filed:
        head = None
        if loop.sock_ops:
            head = loop.sock_ops.get(op.fd)
            if head is not None and (head.sock is not op.sock or head.fd_next is not None):
                _fd_claim(loop, op.fd, op.sock)
                head = loop.sock_ops.get(op.fd)
        if head is None:
            loop.sock_ops[op.fd] = op
        else:                               # after the head: no dict write
            op.fd_prev = head
            op.fd_next = head.fd_next
            if head.fd_next is not None:
                head.fd_next.fd_prev = op
            head.fd_next = op
        op.filed = True
    loop.sock_new.append(op)
    return 0


cdef int _sock_op_unfile(_SockOp op) except -1:
    cdef dict reg = op.loop.sock_ops
    cdef _SockOp nxt = op.fd_next
    op.filed = False
    if op.fd_prev is None:
        if nxt is None:
            if reg.get(op.fd) is op:
                del reg[op.fd]
        else:
            reg[op.fd] = nxt
            nxt.fd_prev = None
    else:
        op.fd_prev.fd_next = nxt
        if nxt is not None:
            nxt.fd_prev = op.fd_prev
    op.fd_prev = op.fd_next = None
    return 0


cdef int _sock_op_orphan(_LoopSock loop, _SockOp op) except -1:
    op.orphaned = True
    if op.filed:
        _sock_op_unfile(op)
    if op.inflight:
        loop._cancel_for_close(op)
    return 0


cdef int _fd_claim(_LoopSock loop, int fd, sock) except -1:
    """A new owner (sock, or None for a bare fd) takes fd: orphan what is
    still filed under it for a socket that gave the number up. Call only when
    loop.sock_ops is not empty (the callers test it: that is the whole cost
    of this guard on paths that do not use sock_*)."""
    cdef _SockOp op
    if fd not in loop.sock_ops:
        return 0
    for o in _fd_ops(loop, fd):
        op = <_SockOp>o
        if op.sock is not sock and not _sock_owns(op.sock, fd):
            _sock_op_orphan(loop, op)
    return 0


def _fd_claim_py(_LoopSock loop, int fd, sock=None):
    """_fd_claim for the Python side (_loop/loop.py, _conn/api.py)."""
    if loop.sock_ops:
        _fd_claim(loop, fd, sock)


cdef int _sock_ops_check_new(_LoopSock loop) except -1:
    """Before a submission: orphan the operations queued since the previous
    one whose socket was closed meanwhile (their SQE is voided in place)."""
    cdef list new = loop.sock_new
    cdef _SockOp op
    for o in new:
        op = <_SockOp>o
        if op.filed and op.inflight and not _sock_owns(op.sock, op.fd):
            _sock_op_orphan(loop, op)
    del new[:]
    return 0


cdef long long _sock_ops_scan(_LoopSock loop, long long timeout_ns) except -2:
    """Before a wait, with operations registered: check all of them unless
    the last check is recent; a wait that would block past the next check is
    shortened to it. Returns the (possibly shortened) timeout."""
    cdef double now = rl_monotonic()
    cdef double interval = _SCAN_INTERVAL + _SCAN_PER_ENTRY * len(loop.sock_ops)
    cdef double left = loop.sock_scan_at + interval - now
    cdef long long left_ns
    cdef _SockOp op
    if left > 0:
        if timeout_ns != 0:
            left_ns = <long long>(left * 1e9) + 1
            if timeout_ns < 0 or left_ns < timeout_ns:
                return left_ns
        return timeout_ns
    loop.sock_scan_at = now
    for fd in list(loop.sock_ops):
        for o in _fd_ops(loop, fd):
            op = <_SockOp>o
            if not op.inflight:
                _sock_op_unfile(op)       # its SQE could not be queued
            elif not _sock_owns(op.sock, fd):
                _sock_op_orphan(loop, op)
    return timeout_ns
