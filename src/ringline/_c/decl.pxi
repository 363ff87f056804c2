# _c/decl.pxi -- the declarations the native core uses: the driver layer
# (driver.h over ring.h and polldrv.h, and amsend.h, in this folder), libc, the kernel UAPI and
# the CPython C-API pieces, and the errno values the core tests, by name.
#
# Declarations only: no state lives here, nothing runs. Included once, by
# _core.pxd, so every .pxi of the extension sees them.

from libc.stdint cimport uint64_t, uint32_t, int32_t, int64_t, uint16_t, uint8_t, uintptr_t
from libc.string cimport memcpy, memmove, memset, strlen
from libc.stdlib cimport malloc, free, realloc, calloc
from libc.errno cimport errno

cdef extern from "<errno.h>" nogil:
    # the errno values the core tests, by name (a completion carries -errno)
    enum:
        EINTR, EAGAIN, EIO, EBADF, ENOMEM, EBUSY, EINVAL, ENFILE, EMFILE
        ETIME, ENOBUFS, EISCONN, ECANCELED
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_DECREF, Py_XDECREF
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release,
                             PyBUF_SIMPLE, PyBUF_WRITABLE, PyObject_CheckBuffer)
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

cdef extern from "Python.h":
    object PyContext_CopyCurrent()
    object PyContext_New()
    void PyObject_GC_Track(object)
    void PyObject_GC_UnTrack(object)
    bint PyObject_GC_IsTracked(object)
    bint PyObject_IS_GC(object)
    int PyList_SetSlice(object, Py_ssize_t, Py_ssize_t, PyObject*)
    Py_ssize_t PY_SSIZE_T_MAX
    int PyContext_Enter(object) except -1
    int PyContext_Exit(object) except -1
    int PyErr_CheckSignals() except -1
    object PyObject_Call(object, object, PyObject*)
    object PyObject_CallNoArgs(object)
    object PyObject_CallOneArg(object, object)
    bint PyTuple_CheckExact(object)
    Py_ssize_t PyTuple_GET_SIZE(object)
    object PyMemoryView_FromMemory(char *mem, Py_ssize_t size, int flags)
    int PyBUF_READ
    int PyBUF_WRITE
    bint PyBytes_CheckExact(object)
    bint PyByteArray_CheckExact(object)
    bint PyMemoryView_Check(object)
    object PyByteArray_FromStringAndSize(const char*, Py_ssize_t)
    char* PyByteArray_AS_STRING(object)
    Py_ssize_t PyByteArray_GET_SIZE(object)
    int PyByteArray_Resize(object, Py_ssize_t) except -1
    object PyLong_FromSsize_t(Py_ssize_t)
    object PyMemoryView_FromObject(object)
    int PyBuffer_FillInfo(Py_buffer *view, object obj, void *buf, Py_ssize_t len,
                          int readonly, int flags) except -1
    Py_ssize_t _rl_refcnt "Py_REFCNT"(PyObject *)
    ctypedef struct PyTypeObject:
        pass

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    int AF_INET, AF_INET6, AF_UNIX
    int SOCK_STREAM, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_CLOEXEC
    int MSG_NOSIGNAL, MSG_TRUNC, MSG_DONTWAIT, MSG_WAITALL, MSG_PEEK
    int SOL_SOCKET, SO_DOMAIN, SO_ERROR
    int getsockopt(int, int, int, void*, socklen_t*)
    ssize_t c_send "send" (int, const void*, size_t, int)
    int shutdown(int, int)
    int SHUT_WR, SHUT_RD, SHUT_RDWR
    int getpeername(int, sockaddr*, socklen_t*)
    int getsockname(int, sockaddr*, socklen_t*)
    int setsockopt(int, int, int, const void*, socklen_t)

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)
    int IPPROTO_TCP

cdef extern from "<netinet/tcp.h>" nogil:
    int TCP_NODELAY

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)

cdef extern from "<sys/un.h>" nogil:
    struct sockaddr_un:
        sa_family_t sun_family
        char sun_path[108]


cdef extern from "<poll.h>" nogil:
    int POLLIN, POLLOUT, POLLERR, POLLHUP, POLLPRI

cdef extern from "<unistd.h>" nogil:
    ssize_t c_write "write" (int fd, const void *buf, size_t count)
    ssize_t c_read "read" (int fd, void *buf, size_t count)
    int c_close "close" (int fd)

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK, EFD_CLOEXEC

cdef extern from "<string.h>" nogil:
    char *strerror(int errnum)

cdef extern from "ring.h" nogil:
    struct io_uring_sqe:
        uint8_t opcode
        uint8_t flags
        uint16_t ioprio
        int fd
        uint64_t off
        uint64_t addr2
        uint64_t addr
        uint32_t len
        uint32_t rw_flags
        uint32_t fsync_flags
        uint32_t msg_flags
        uint32_t poll32_events
        uint32_t accept_flags
        uint32_t cancel_flags
        uint32_t splice_flags
        uint64_t user_data
        uint16_t buf_index
        uint16_t buf_group
        uint16_t personality
        int splice_fd_in
        uint32_t file_index
        uint16_t addr_len
    struct io_uring_cqe:
        uint64_t user_data
        int res
        uint32_t flags

    ctypedef struct rl_ring:
        int fd
        unsigned setup_flags
        unsigned features
        unsigned sq_entries
        unsigned cq_entries
        uint64_t enters
        uint64_t submitted
        int fake
        io_uring_sqe *fake_log
        unsigned *fake_log_enter
        unsigned fake_log_len
        int fake_wait_res[8]
        unsigned fake_wait_n
        uint64_t fake_waits
        long long fake_wait_timeout_ns

    ctypedef struct rl_pbuf:
        unsigned nbufs
        unsigned buf_size
        unsigned short bgid
        unsigned short tail
        unsigned outstanding
        char *mem

    unsigned rl_sq_pending(rl_ring *r)
    int rl_fake_setup_errno
    int rl_fake_post(rl_ring *r, uint64_t ud, int res, uint32_t flags)
    void rl_pbuf_add(rl_pbuf *pb, unsigned short bid)
    void rl_pbuf_publish(rl_pbuf *pb)
    char *rl_pbuf_addr(rl_pbuf *pb, unsigned bid)
    void rl_prep_rw(io_uring_sqe *sqe, int op, int fd, const void *addr, size_t len, uint64_t off, uint64_t ud)
    unsigned RL_MAX_IO_LEN
    double rl_monotonic()
    uint64_t RL_UD_IGNORE
    int RL_OP_READ_MULTISHOT
    size_t RL_SUN_PATH_OFFSET

    int IORING_OP_NOP, IORING_OP_WRITEV, IORING_OP_POLL_ADD
    int IORING_OP_SENDMSG, IORING_OP_RECVMSG
    int IORING_OP_ACCEPT, IORING_OP_ASYNC_CANCEL
    int IORING_OP_CONNECT, IORING_OP_CLOSE, IORING_OP_READ, IORING_OP_WRITE
    int IORING_OP_SEND, IORING_OP_RECV
    int IORING_OP_SEND_ZC, IORING_OP_SENDMSG_ZC, IORING_OP_LINK_TIMEOUT
    int IORING_OP_FSYNC, IORING_FSYNC_DATASYNC
    int IORING_CQE_F_MORE, IORING_CQE_F_BUFFER, IORING_CQE_F_NOTIF
    int IORING_CQE_BUFFER_SHIFT
    int IOSQE_BUFFER_SELECT, IOSQE_IO_LINK
    int IORING_RECV_MULTISHOT, IORING_ACCEPT_MULTISHOT

cdef extern from "driver.h" nogil:
    # the one driver interface (see driver.h): the core never looks at which
    # driver runs, only at the capability bits
    ctypedef struct rl_driver:
        unsigned caps
        rl_ring ring            # the ring's test harness (fake ring) only
    unsigned RL_CAP_LINKS, RL_CAP_NOOP_ENTER
    ctypedef struct rl_drv_info:
        int fd
        unsigned setup_flags, features
        unsigned sq_entries, cq_entries
        uint64_t enters, submitted
        int has_epoll
        uint64_t epoll_waits, epoll_ctls, rebuilds, waiting
    int rl_drv_init_ring(rl_driver *d, unsigned entries, unsigned cq_entries, unsigned mask_flags)
    int rl_drv_init_fake(rl_driver *d, unsigned entries, unsigned cq_entries)
    int rl_drv_init_poll(rl_driver *d, unsigned entries)
    void rl_drv_exit(rl_driver *d)
    int rl_drv_probe(rl_driver *d, unsigned char *ops_out, int max_ops)
    io_uring_sqe *rl_drv_get_sqe(rl_driver *d)
    int rl_drv_enter(rl_driver *d, unsigned wait_nr, long long timeout_ns)
    int rl_drv_enter_is_noop(rl_driver *d)
    int rl_drv_wait(rl_driver *d, long long timeout_ns, const int32_t *quiet,
                    const uint32_t *gens, uint32_t cap)
    unsigned rl_drv_reap(rl_driver *d, io_uring_cqe *out, unsigned max)
    unsigned rl_drv_sq_entries(rl_driver *d)
    unsigned rl_drv_sq_pending(rl_driver *d)
    int rl_drv_void_sqe(rl_driver *d, uint64_t ud)
    unsigned rl_drv_void_fd(rl_driver *d, int fd, uint64_t *out, unsigned max)
    int rl_drv_pbuf_init(rl_driver *d, rl_pbuf *pb, unsigned nbufs, unsigned buf_size, unsigned short bgid)
    void rl_drv_pbuf_exit(rl_driver *d, rl_pbuf *pb)
    const char *rl_drv_name(rl_driver *d)
    const char *rl_drv_wait_call(rl_driver *d)
    void rl_drv_get_info(rl_driver *d, rl_drv_info *out)

cdef extern from "ring.h":
    cdef struct io_uring_recvmsg_out:
        uint32_t namelen
        uint32_t controllen
        uint32_t payloadlen
        uint32_t flags

cdef extern from "amsend.h":
    ctypedef int (*rl_step_fn)(object, PyObject **) except -1
    int rl_install_am_send(PyTypeObject *tp, rl_step_fn fn)

cdef extern from "ctxempty.h":
    bint rl_ctx_current_empty()

cdef extern from "udpgso.h" nogil:
    size_t RL_GSO_CMSG_SPACE
    size_t rl_udp_segment_cmsg(void *buf, uint16_t segment)
