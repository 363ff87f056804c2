# _loop/sendq.pxi -- the send queue: the one implementation of "queue bytes,
# send them with at most one operation in flight" that stream transports
# (_StreamCore, stream.pxi) and native connections (_ConnSlot,
# _conn/slot.pxi) both inherit.
#
# Owns: _SendQueue, the queue (wq: bytes objects by reference, plus whatever
# entries a subclass queues between them, such as _conn's guarded parts and
# chains), the offset already sent of its head, the byte counts, and the
# reusable send operation (_QSendOp) that takes the run of bytes at the head
# of the queue into one SEND / SENDMSG (or SEND_ZC / SENDMSG_ZC, or WRITE /
# WRITEV for pipes, chosen by the subclass).
#
# Lifecycle of a send: the subclass's flush() calls _take() (the head run
# moves into the op: its iovecs point into the bytes objects the op now
# holds), submits it, and gets the completion in _sent(); a short send or
# EAGAIN puts back what the kernel did not take with _requeue() (the first
# buffer not sent whole goes back as the head with the offset reached: no
# copy, so a huge buffer sent in many short sends costs no copying).
#
# Batching: at most _MAX_IOV buffers per send. A deeper queue of bytes (a
# pipeline of small writes) is first gathered into one buffer of at most
# about _JOIN_BYTES, so a round trip of the loop sends more than 64 small
# writes; buffers that are large on their own are never copied.
#
# Invariants: wq_bytes counts the queued bytes not yet sent (the head's
# first wq_off bytes are out); inflight_bytes those of the send in flight;
# an op holds every buffer its iovecs point at until its final completion
# (for zero-copy sends: until the kernel's notification, invariant 1).

cdef Py_ssize_t _MAX_IOV = 64
cdef Py_ssize_t _JOIN_BYTES = 256 * 1024


cdef class _Flushable:
    """What the loop's flush list holds: a queue flushed once per iteration,
    right before the wait, and a receive it re-arms after an empty buffer
    ring (LoopCore.parked)."""

    cdef int flush(self) except -1:
        return 0

    cdef int rearm(self) except -1:
        # re-arm a receive parked on an empty provided-buffer ring
        return 0


cdef class _QSendOp(_Op):
    """One send of a send queue's head run. Reused from send to send (the
    queue's `spare`) unless the kernel still reads its buffers."""

    @cython.final
    cdef void release(self):
        # Zero-copy sends keep their buffers until the kernel's notification
        # (invariant 1): release() before that only marks the intent.
        if self.notif_pending:
            return
        if self.bufs is not None:
            # emptied, not dropped: the queue takes the list back as its wq
            # at the next send (_take), so a send allocates no list
            PyList_SetSlice(self.bufs, 0, PY_SSIZE_T_MAX, NULL)

    cdef int complete(self, int res, uint32_t flags) except -1:
        if flags & IORING_CQE_F_NOTIF:
            # the zero-copy notification: the kernel is done with the memory
            self.notif_pending = False
            self.loop.zc_notifs += 1
            self.release()
            return 0
        if self.zc and (flags & IORING_CQE_F_MORE):
            self.notif_pending = True
        owner = self.owner
        self.owner = None
        if owner is None:
            # its queue let go of it (a closed transport): only release
            self.release()
            return 0
        return owner._sent(self, res)


cdef class _SendQueue(_Flushable):
    """Queued bytes and the one send in flight (see the file notes)."""

    def __cinit__(self, *args, **kwargs):
        self.wq = []

    cdef int _sent(self, _QSendOp op, int res) except -1:
        # the subclass's completion handler
        return 0

    @cython.final
    cdef bint _join_head(self) except -1:
        # Gather the bytes at the head of wq into one buffer of at most about
        # _JOIN_BYTES. False when the head is too large to be worth a copy.
        cdef list wq = self.wq
        cdef Py_ssize_t j = 0, n = len(wq), total = 0
        while j < n and type(wq[j]) is bytes and total < _JOIN_BYTES:
            total += len(<bytes>wq[j])
            j += 1
        if j < 2:
            return False
        if self.wq_off:
            wq[0] = (<bytes>wq[0])[self.wq_off:]
            self.wq_off = 0
        joined = b''.join(wq[:j])
        del wq[:j]
        wq.insert(0, joined)
        return True

    @cython.final
    cdef inline _QSendOp _take(self):
        # Move the run of bytes at the head of wq (the caller checked that
        # wq[0] is bytes) into the spare op, iovecs set; returns the op.
        cdef _QSendOp op
        cdef list wq = self.wq
        cdef Py_ssize_t i, k = 1, total = 0, ln, lim
        cdef Py_ssize_t nq = len(wq)
        cdef bytes b
        if nq > 1:
            lim = nq if nq <= _MAX_IOV else _MAX_IOV + 1
            while k < lim and type(wq[k]) is bytes:
                k += 1
            if k > _MAX_IOV:
                if self._join_head():
                    k = 1
                    nq = len(wq)
                else:
                    k = _MAX_IOV
        op = self.spare
        if op is None:
            op = _QSendOp.__new__(_QSendOp)
            op.loop = self.loop
        else:
            self.spare = None
        op.fd = self.fd
        op.owner = self
        op.zc = False
        if k == nq:
            # the whole queue goes out: the op takes the list, the queue the
            # op's emptied one
            self.wq = op.bufs if op.bufs is not None else []
            op.bufs = wq
        else:
            op.bufs = wq[:k]
            del wq[:k]
        for i in range(k):
            b = <bytes>op.bufs[i]
            ln = len(b)
            op.iov[i].iov_base = PyBytes_AS_STRING(b)
            op.iov[i].iov_len = ln
            total += ln
        op.niov = <int>k
        # a partly sent head continues from its offset, without a copy
        op.off0 = self.wq_off
        self.wq_off = 0
        op.iov[0].iov_base = <char*>op.iov[0].iov_base + op.off0
        op.iov[0].iov_len -= op.off0
        total -= op.off0
        op.nbytes = total
        self.wq_bytes -= total
        self.inflight_bytes = total
        return op

    @cython.final
    cdef inline int _submit_send(self, _QSendOp op, bint zc) except -1:
        # SEND for one buffer, SENDMSG for several; their zero-copy forms
        # when zc (the buffers are then held until the notification)
        cdef int opcode
        cdef io_uring_sqe *sqe
        cdef LoopCore loop = self.loop
        op.zc = zc
        if op.niov == 1:
            opcode = IORING_OP_SEND_ZC if zc else IORING_OP_SEND
            sqe = loop._submit(op, opcode, self.fd, op.iov[0].iov_base, op.iov[0].iov_len, 0)
        else:
            op.msg.msg_iov = op.iov
            op.msg.msg_iovlen = op.niov
            opcode = IORING_OP_SENDMSG_ZC if zc else IORING_OP_SENDMSG
            sqe = loop._submit(op, opcode, self.fd, &op.msg, 1, 0)
        sqe.msg_flags = MSG_NOSIGNAL
        return 0

    @cython.final
    cdef inline int _requeue(self, _QSendOp op, int res) except -1:
        # Put back at the head of wq what the kernel did not take of op: all
        # of it when res < 0 (EAGAIN / EINTR), the rest after a short send.
        cdef Py_ssize_t sent, i, ln
        if res < 0:
            self.wq[0:0] = op.bufs
            self.wq_off = op.off0
            self.wq_bytes += op.nbytes
            return 0
        sent = res + op.off0
        i = 0
        ln = len(<bytes>op.bufs[0])
        while sent >= ln:
            sent -= ln
            i += 1
            ln = len(<bytes>op.bufs[i])
        self.wq[0:0] = op.bufs[i:]
        self.wq_off = sent
        self.wq_bytes += op.nbytes - res
        return 0
