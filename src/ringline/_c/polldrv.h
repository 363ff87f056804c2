/*
 * ringline poll driver (the other driver behind driver.h): io_uring's
 * submission/completion contract emulated
 * with epoll and non-blocking syscalls (the portable backend).
 *
 * Owns: a submission array the core fills exactly like io_uring SQEs, a
 * growable completion queue of io_uring_cqe records, one epoll instance with
 * one registration per fd (the union of what that fd's waiting operations
 * need), the waiting operations themselves (a copy of each SQE, on a per-fd
 * list and in a user_data hash for ASYNC_CANCEL) and, per provided-buffer
 * group, its own head counter over the user-space buffer ring (the ring is
 * never registered with the kernel: the driver takes entries itself), and
 * the FSYNC helper thread (pdsync.h; its eventfd sits in the epoll set).
 *
 * Lifecycle: rl_pd_init() -> (rl_pd_get_sqe() ... rl_pd_enter(); rl_pd_reap())*
 *            -> rl_pd_exit().
 * One enter: every queued SQE is tried at once non-blockingly, in order
 * (POLL_ADD only registers; ASYNC_CANCEL completes its still-waiting target
 * with -ECANCELED; FSYNC goes to the helper thread of pdsync.h, whose
 * eventfd is in the epoll set); an operation that meets EAGAIN waits on its
 * fd, costing nothing until epoll reports the fd; then one epoll_wait (no wait when
 * completions are already queued or none was asked for), and the operations
 * of every ready fd are retried. Completions are queued, never delivered to
 * the core from here: reap hands them out. The driver never calls into Python
 * and may run without the GIL.
 *
 * Invariants:
 * - an operation completes exactly once (multishot: CQEs with F_MORE, then
 *   one without); after its final CQE (or -ECANCELED) the driver never
 *   touches the memory its SQE points to;
 * - registrations follow the waiters eagerly (ADD/MOD on attach, MOD/DEL on
 *   detach), so a fd number closed and reused by the user is re-registered;
 *   EPOLL_CTL errors complete the waiting operations with the error instead
 *   of failing the loop; a registration that outlives its fd (the file kept
 *   open elsewhere) is detected by a generation tag and cured by rebuilding
 *   the epoll set;
 * - level-triggered epoll: readiness that an operation did not consume is
 *   reported again, so multishot loops may stop early for fairness;
 * - errors are -errno in res; EINTR is retried; EAGAIN means "wait".
 */
#ifndef RINGLINE_POLLDRV_H
#define RINGLINE_POLLDRV_H

#include "ring.h"
#include "pdsync.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#ifndef __NR_epoll_pwait2
#define __NR_epoll_pwait2 441
#endif

#define RL_PD_MAX_GROUPS 16
#define RL_PD_MULTISHOT_BURST 16   /* completions per readiness, multishot */

typedef struct rl_pd_op {
    struct io_uring_sqe sqe;       /* the submission, copied */
    struct rl_pd_op *next, *prev;  /* the fd's wait list */
    struct rl_pd_op *hnext;        /* user_data hash chain */
    uint32_t events;               /* EPOLL* bits this op waits for */
    int connecting;                /* CONNECT: in progress in the kernel */
} rl_pd_op;

typedef struct rl_pd_fd {
    rl_pd_op *head, *tail;
    uint32_t reg;                  /* events registered (0: not registered) */
    uint32_t gen;                  /* tag of the current registration */
} rl_pd_fd;

typedef struct rl_pd_group {
    struct io_uring_buf_ring *br;
    unsigned mask;
    unsigned short head;
} rl_pd_group;

typedef struct rl_polldrv {
    int epfd;
    /* submissions */
    struct io_uring_sqe *sq;
    unsigned sq_entries, sq_len;
    /* completions */
    struct io_uring_cqe *cq;
    unsigned cq_head, cq_tail, cq_cap;
    /* waiting operations */
    rl_pd_fd *fds;
    int nfds;
    rl_pd_op **htab;
    unsigned hmask, hcount;
    rl_pd_op *freelist;
    unsigned nfree;
    unsigned waiting;
    uint32_t gen;
    rl_pd_group groups[RL_PD_MAX_GROUPS];
    struct epoll_event *evs;
    int evcap;
    int no_pwait2;
    rl_pds fsync;                  /* FSYNC runs on its helper thread (pdsync.h) */
    /* counters (same names as the ring's where they mean the same) */
    uint64_t enters, submitted, epoll_waits, epoll_ctls, rebuilds, stale_events;
} rl_polldrv;

/* The opcodes this driver emulates (what the probe reports). */
static const unsigned char rl_pd_supported[] = {
    IORING_OP_NOP, IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_POLL_ADD,
    IORING_OP_SENDMSG, IORING_OP_RECVMSG, IORING_OP_ACCEPT, IORING_OP_ASYNC_CANCEL,
    IORING_OP_CONNECT, IORING_OP_CLOSE, IORING_OP_READ, IORING_OP_WRITE,
    IORING_OP_SEND, IORING_OP_RECV, IORING_OP_FSYNC,
};

static int rl_pd_init(rl_polldrv *d, unsigned entries) {
    memset(d, 0, sizeof(*d));
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (d->epfd < 0)
        return -errno;
    d->sq_entries = entries ? entries : 1024;
    d->sq = (struct io_uring_sqe *)calloc(d->sq_entries, sizeof(struct io_uring_sqe));
    d->cq_cap = 1024;
    d->cq = (struct io_uring_cqe *)malloc(d->cq_cap * sizeof(struct io_uring_cqe));
    d->hmask = 1023;
    d->htab = (rl_pd_op **)calloc(d->hmask + 1, sizeof(rl_pd_op *));
    d->evcap = 256;
    d->evs = (struct epoll_event *)malloc(d->evcap * sizeof(struct epoll_event));
    if (!d->sq || !d->cq || !d->htab || !d->evs) {
        free(d->sq); free(d->cq); free(d->htab); free(d->evs);
        close(d->epfd);
        d->epfd = -1;
        return -ENOMEM;
    }
    return 0;
}

static void rl_pd_exit(rl_polldrv *d) {
    rl_pd_op *op, *nx;
    unsigned i;
    if (d->epfd < 0)
        return;
    for (i = 0; i <= d->hmask; i++) {
        for (op = d->htab[i]; op; op = nx) {
            nx = op->hnext;
            free(op);
        }
    }
    for (op = d->freelist; op; op = nx) {
        nx = op->next;
        free(op);
    }
    rl_pds_exit(&d->fsync);
    free(d->htab); free(d->sq); free(d->cq); free(d->evs); free(d->fds);
    close(d->epfd);
    d->epfd = -1;
}

/* ---- submissions and completions ----------------------------------------- */

static inline struct io_uring_sqe *rl_pd_get_sqe(rl_polldrv *d) {
    struct io_uring_sqe *sqe;
    if (d->sq_len >= d->sq_entries)
        return NULL;
    sqe = &d->sq[d->sq_len++];
    memset(sqe, 0, sizeof(*sqe));
    return sqe;
}

/* The poll driver's rl_ring_void_sqe: a queued SQE not yet run becomes a
 * NOP whose completion is ignored. Returns 1 when found. */
static int rl_pd_void_sqe(rl_polldrv *d, uint64_t ud) {
    unsigned i;
    for (i = 0; i < d->sq_len; i++) {
        struct io_uring_sqe *sqe = &d->sq[i];
        if (sqe->user_data == ud) {
            rl_sqe_void(sqe);
            return 1;
        }
    }
    return 0;
}

static unsigned rl_pd_void_fd(rl_polldrv *d, int fd, uint64_t *out, unsigned max) {
    return rl_void_fd_range(d->sq, 0xFFFFFFFFu, 0, d->sq_len, fd, out, max);
}

static void rl_pd_post(rl_polldrv *d, uint64_t ud, int res, uint32_t flags) {
    if (ud == RL_UD_IGNORE)
        return;
    if (d->cq_tail == d->cq_cap) {
        if (d->cq_head > 0) {
            memmove(d->cq, d->cq + d->cq_head,
                    (d->cq_tail - d->cq_head) * sizeof(struct io_uring_cqe));
            d->cq_tail -= d->cq_head;
            d->cq_head = 0;
        }
        if (d->cq_tail == d->cq_cap) {
            struct io_uring_cqe *ncq = (struct io_uring_cqe *)realloc(
                d->cq, 2 * d->cq_cap * sizeof(struct io_uring_cqe));
            if (!ncq)
                abort(); /* losing a completion would leak memory the core holds */
            d->cq = ncq;
            d->cq_cap *= 2;
        }
    }
    d->cq[d->cq_tail].user_data = ud;
    d->cq[d->cq_tail].res = res;
    d->cq[d->cq_tail].flags = flags;
    d->cq_tail++;
}

static inline unsigned rl_pd_reap(rl_polldrv *d, struct io_uring_cqe *out, unsigned max) {
    unsigned n = 0;
    while (d->cq_head != d->cq_tail && n < max)
        out[n++] = d->cq[d->cq_head++];
    if (d->cq_head == d->cq_tail)
        d->cq_head = d->cq_tail = 0;
    return n;
}

static int rl_pd_probe(unsigned char *ops_out, int max_ops) {
    size_t i;
    int last = 0;
    memset(ops_out, 0, (size_t)max_ops);
    for (i = 0; i < sizeof(rl_pd_supported); i++) {
        if (rl_pd_supported[i] < max_ops) {
            ops_out[rl_pd_supported[i]] = 1;
            if (rl_pd_supported[i] + 1 > last)
                last = rl_pd_supported[i] + 1;
        }
    }
    return last;
}

/* ---- provided buffers (the driver is the consumer) ------------------------ */

static int rl_pd_pbuf_init(rl_polldrv *d, rl_pbuf *pb, unsigned nbufs, unsigned buf_size,
                           unsigned short bgid) {
    int ret;
    if (bgid >= RL_PD_MAX_GROUPS)
        return -EINVAL;
    ret = rl_pbuf_alloc(pb, nbufs, buf_size, bgid);
    if (ret < 0)
        return ret;
    d->groups[bgid].br = pb->br;
    d->groups[bgid].mask = nbufs - 1;
    d->groups[bgid].head = 0;
    return 0;
}

static void rl_pd_pbuf_exit(rl_polldrv *d, rl_pbuf *pb) {
    if (pb->bgid < RL_PD_MAX_GROUPS && d->groups[pb->bgid].br == pb->br)
        d->groups[pb->bgid].br = NULL;
    rl_pbuf_free(pb);
}

/* The next free buffer of a group, or NULL (-ENOBUFS for the caller). */
static inline struct io_uring_buf *rl_pd_buf_peek(rl_polldrv *d, unsigned bgid) {
    rl_pd_group *g;
    unsigned short tail;
    if (bgid >= RL_PD_MAX_GROUPS || !d->groups[bgid].br)
        return NULL;
    g = &d->groups[bgid];
    tail = __atomic_load_n(&g->br->tail, __ATOMIC_ACQUIRE);
    if (g->head == tail)
        return NULL;
    return &g->br->bufs[g->head & g->mask];
}

static inline void rl_pd_buf_take(rl_polldrv *d, unsigned bgid) {
    d->groups[bgid].head++;
}

/* ---- operation table ------------------------------------------------------ */

static inline unsigned rl_pd_hash(rl_polldrv *d, uint64_t ud) {
    return (unsigned)((ud * 0x9E3779B97F4A7C15ULL) >> 40) & d->hmask;
}

static void rl_pd_hash_grow(rl_polldrv *d) {
    unsigned newmask = d->hmask * 2 + 1, i;
    rl_pd_op **nt = (rl_pd_op **)calloc(newmask + 1, sizeof(rl_pd_op *));
    rl_pd_op *op, *nx;
    if (!nt)
        return; /* keep the smaller table: longer chains, still correct */
    for (i = 0; i <= d->hmask; i++) {
        for (op = d->htab[i]; op; op = nx) {
            unsigned h = (unsigned)((op->sqe.user_data * 0x9E3779B97F4A7C15ULL) >> 40) & newmask;
            nx = op->hnext;
            op->hnext = nt[h];
            nt[h] = op;
        }
    }
    free(d->htab);
    d->htab = nt;
    d->hmask = newmask;
}

static void rl_pd_hash_add(rl_polldrv *d, rl_pd_op *op) {
    unsigned h;
    if (d->hcount > 2 * (d->hmask + 1))
        rl_pd_hash_grow(d);
    h = rl_pd_hash(d, op->sqe.user_data);
    op->hnext = d->htab[h];
    d->htab[h] = op;
    d->hcount++;
}

static rl_pd_op *rl_pd_hash_find(rl_polldrv *d, uint64_t ud) {
    rl_pd_op *op;
    for (op = d->htab[rl_pd_hash(d, ud)]; op; op = op->hnext)
        if (op->sqe.user_data == ud)
            return op;
    return NULL;
}

static void rl_pd_hash_del(rl_polldrv *d, rl_pd_op *op) {
    rl_pd_op **pp = &d->htab[rl_pd_hash(d, op->sqe.user_data)];
    while (*pp) {
        if (*pp == op) {
            *pp = op->hnext;
            d->hcount--;
            return;
        }
        pp = &(*pp)->hnext;
    }
}

static inline rl_pd_op *rl_pd_op_new(rl_polldrv *d, const struct io_uring_sqe *sqe) {
    rl_pd_op *op = d->freelist;
    if (op) {
        d->freelist = op->next;
        d->nfree--;
    } else {
        op = (rl_pd_op *)malloc(sizeof(rl_pd_op));
        if (!op)
            return NULL;
    }
    memcpy(&op->sqe, sqe, sizeof(*sqe));
    op->next = op->prev = op->hnext = NULL;
    op->events = 0;
    op->connecting = 0;
    return op;
}

static inline void rl_pd_op_free(rl_polldrv *d, rl_pd_op *op) {
    if (d->nfree < 4096) {
        op->next = d->freelist;
        d->freelist = op;
        d->nfree++;
    } else {
        free(op);
    }
}

/* ---- epoll registrations -------------------------------------------------- */

static int rl_pd_fd_slot(rl_polldrv *d, int fd) {
    if (fd < d->nfds)
        return 0;
    int n = d->nfds ? d->nfds : 256;
    while (n <= fd)
        n *= 2;
    rl_pd_fd *nf = (rl_pd_fd *)realloc(d->fds, (size_t)n * sizeof(rl_pd_fd));
    if (!nf)
        return -ENOMEM;
    memset(nf + d->nfds, 0, (size_t)(n - d->nfds) * sizeof(rl_pd_fd));
    d->fds = nf;
    d->nfds = n;
    return 0;
}

static inline uint32_t rl_pd_want(rl_pd_fd *f) {
    uint32_t w = 0;
    rl_pd_op *op;
    for (op = f->head; op; op = op->next)
        w |= op->events;
    return w;
}

static int rl_pd_ctl(rl_polldrv *d, int op, int fd, uint32_t events, uint32_t gen) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)gen << 32);
    d->epoll_ctls++;
    if (epoll_ctl(d->epfd, op, fd, &ev) < 0)
        return -errno;
    return 0;
}

/* Make the kernel's registration of fd match its waiters. `force`: issue it
 * even if the mask did not change (a new waiter: the fd number may now name
 * another file than the registration). Returns 0 or -errno (the fd cannot be
 * watched: the caller completes the waiters with it). */
static int rl_pd_sync(rl_polldrv *d, int fd, int force) {
    rl_pd_fd *f = &d->fds[fd];
    uint32_t want = rl_pd_want(f);
    int ret;
    if (want == 0) {
        if (f->reg) {
            ret = rl_pd_ctl(d, EPOLL_CTL_DEL, fd, 0, f->gen);
            f->reg = 0;
            (void)ret; /* ENOENT/EBADF: already gone with the file */
        }
        return 0;
    }
    if (f->reg && (force || want != f->reg)) {
        ret = rl_pd_ctl(d, EPOLL_CTL_MOD, fd, want, f->gen);
        if (ret == 0) {
            f->reg = want;
            return 0;
        }
        if (ret != -ENOENT)
            return ret;
        f->reg = 0; /* the file was closed under us: register the new one */
    }
    if (!f->reg) {
        f->gen = ++d->gen;
        ret = rl_pd_ctl(d, EPOLL_CTL_ADD, fd, want, f->gen);
        if (ret == -EEXIST)
            ret = rl_pd_ctl(d, EPOLL_CTL_MOD, fd, want, f->gen);
        if (ret < 0)
            return ret;
        f->reg = want;
    }
    return 0;
}

static inline void rl_pd_unlink(rl_polldrv *d, rl_pd_op *op) {
    rl_pd_fd *f = &d->fds[op->sqe.fd];
    if (op->prev)
        op->prev->next = op->next;
    else
        f->head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        f->tail = op->prev;
    op->next = op->prev = NULL;
    rl_pd_hash_del(d, op);
    d->waiting--;
}

/* ---- running one operation -------------------------------------------------- */

#define RL_PD_DONE 1
#define RL_PD_WAIT 0

static inline uint32_t rl_pd_op_events(const struct io_uring_sqe *sqe) {
    switch (sqe->opcode) {
    case IORING_OP_READ: case IORING_OP_READV: case IORING_OP_RECV:
    case IORING_OP_RECVMSG: case IORING_OP_ACCEPT:
        return EPOLLIN;
    case IORING_OP_WRITE: case IORING_OP_WRITEV: case IORING_OP_SEND:
    case IORING_OP_SENDMSG: case IORING_OP_CONNECT:
    case IORING_OP_SEND_ZC: case IORING_OP_SENDMSG_ZC:
        return EPOLLOUT;
    case IORING_OP_POLL_ADD:
        return sqe->poll32_events & (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP);
    }
    return 0;
}

/* Is there data to read (for an empty buffer group: -ENOBUFS only when the
 * kernel would have picked a buffer)? 1 yes, 0 no, -errno on error/EOF=-1000. */
static int rl_pd_sock_has_data(int fd) {
    char c;
    ssize_t n;
    do {
        n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        return 1;
    if (n == 0)
        return 1; /* EOF (or an empty datagram): deliver it */
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    if (errno == ENOTSOCK)
        return 1;
    return 1;
}

/* RECV / READ / RECVMSG drawing from a provided-buffer group. */
static int rl_pd_run_bufsel(rl_polldrv *d, rl_pd_op *op, int from_event) {
    struct io_uring_sqe *sqe = &op->sqe;
    int multishot = 0, is_msg = sqe->opcode == IORING_OP_RECVMSG;
    int is_sock = sqe->opcode != IORING_OP_READ;
    int burst = 0;
    ssize_t n;
    if (sqe->opcode == IORING_OP_RECV || is_msg)
        multishot = (sqe->ioprio & IORING_RECV_MULTISHOT) != 0;
    for (;;) {
        struct io_uring_buf *b = rl_pd_buf_peek(d, sqe->buf_group);
        char *addr;
        unsigned len;
        if (!b) {
            /* io_uring picks a buffer only once data is there */
            if (is_sock) {
                if (!rl_pd_sock_has_data(sqe->fd))
                    return RL_PD_WAIT;
            } else if (!from_event || burst > 0) {
                return RL_PD_WAIT;
            }
            rl_pd_post(d, sqe->user_data, -ENOBUFS, 0);
            return RL_PD_DONE;
        }
        addr = (char *)(uintptr_t)b->addr;
        len = b->len;
        if (!is_msg && sqe->len && sqe->len < len)
            len = sqe->len;
        if (is_msg && multishot) {
            /* the kernel's layout: io_uring_recvmsg_out, name, control, payload */
            struct msghdr *tmpl = (struct msghdr *)(uintptr_t)sqe->addr;
            struct io_uring_recvmsg_out *out = (struct io_uring_recvmsg_out *)addr;
            size_t hdr = sizeof(*out) + tmpl->msg_namelen + tmpl->msg_controllen;
            struct msghdr m;
            struct iovec iov;
            if (hdr > len) {
                rl_pd_post(d, sqe->user_data, -EFAULT, 0);
                return RL_PD_DONE;
            }
            memset(&m, 0, sizeof(m));
            m.msg_name = tmpl->msg_namelen ? addr + sizeof(*out) : NULL;
            m.msg_namelen = tmpl->msg_namelen;
            m.msg_control = tmpl->msg_controllen ? addr + sizeof(*out) + tmpl->msg_namelen : NULL;
            m.msg_controllen = tmpl->msg_controllen;
            iov.iov_base = addr + hdr;
            iov.iov_len = len - hdr;
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            do {
                n = recvmsg(sqe->fd, &m, (int)(sqe->msg_flags | MSG_DONTWAIT));
            } while (n < 0 && errno == EINTR);
            if (n >= 0) {
                out->namelen = m.msg_namelen;
                out->controllen = (uint32_t)m.msg_controllen;
                out->payloadlen = (uint32_t)n;
                out->flags = (uint32_t)m.msg_flags;
                n += (ssize_t)hdr;
            }
        } else if (is_msg) {
            struct msghdr *um = (struct msghdr *)(uintptr_t)sqe->addr;
            struct msghdr m = *um;
            struct iovec iov;
            iov.iov_base = addr;
            iov.iov_len = len;
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            do {
                n = recvmsg(sqe->fd, &m, (int)(sqe->msg_flags | MSG_DONTWAIT));
            } while (n < 0 && errno == EINTR);
            if (n >= 0) {
                um->msg_namelen = m.msg_namelen;
                um->msg_controllen = m.msg_controllen;
                um->msg_flags = m.msg_flags;
            }
        } else if (sqe->opcode == IORING_OP_RECV) {
            do {
                n = recv(sqe->fd, addr, len, (int)(sqe->msg_flags | MSG_DONTWAIT));
            } while (n < 0 && errno == EINTR);
        } else {
            do {
                if (sqe->off == (uint64_t)-1)
                    n = read(sqe->fd, addr, len);
                else
                    n = pread(sqe->fd, addr, len, (off_t)sqe->off);
            } while (n < 0 && errno == EINTR);
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return RL_PD_WAIT;
            rl_pd_post(d, sqe->user_data, -errno, 0);
            return RL_PD_DONE;
        }
        if (n == 0 && !is_msg) {
            /* EOF: no buffer consumed, and a multishot ends here */
            rl_pd_post(d, sqe->user_data, 0, 0);
            return RL_PD_DONE;
        }
        rl_pd_buf_take(d, sqe->buf_group);
        rl_pd_post(d, sqe->user_data, (int)n,
                   IORING_CQE_F_BUFFER | ((uint32_t)b->bid << IORING_CQE_BUFFER_SHIFT) |
                       (multishot ? IORING_CQE_F_MORE : 0));
        if (!multishot)
            return RL_PD_DONE;
        burst++;
        /* a short stream read drained the socket; level-triggered epoll
         * reports it again if more came meanwhile */
        if (!is_msg && (size_t)n < len)
            return RL_PD_WAIT;
        if (burst >= RL_PD_MULTISHOT_BURST)
            return RL_PD_WAIT;
    }
}


/* READ/READV/WRITE/WRITEV as one call: offset -1 means the file position
 * (read/write), otherwise the positional variants; EINTR retried. */
static ssize_t rl_pd_rw(int opcode, int fd, void *addr, unsigned len, uint64_t off) {
    ssize_t n;
    int cur = off == (uint64_t)-1;
    do {
        switch (opcode) {
        case IORING_OP_READ:
            n = cur ? read(fd, addr, len) : pread(fd, addr, len, (off_t)off);
            break;
        case IORING_OP_READV:
            n = cur ? readv(fd, (struct iovec *)addr, (int)len)
                    : preadv(fd, (struct iovec *)addr, (int)len, (off_t)off);
            break;
        case IORING_OP_WRITE:
            n = cur ? write(fd, addr, len) : pwrite(fd, addr, len, (off_t)off);
            break;
        default: /* IORING_OP_WRITEV */
            n = cur ? writev(fd, (struct iovec *)addr, (int)len)
                    : pwritev(fd, (struct iovec *)addr, (int)len, (off_t)off);
            break;
        }
    } while (n < 0 && errno == EINTR);
    return n;
}

static int rl_pd_run(rl_polldrv *d, rl_pd_op *op, int from_event, uint32_t revents) {
    struct io_uring_sqe *sqe = &op->sqe;
    int fd = sqe->fd;
    ssize_t n;
    int err;
    void *addr = (void *)(uintptr_t)sqe->addr;

    if ((sqe->flags & IOSQE_BUFFER_SELECT) &&
        (sqe->opcode == IORING_OP_RECV || sqe->opcode == IORING_OP_READ ||
         sqe->opcode == IORING_OP_RECVMSG))
        return rl_pd_run_bufsel(d, op, from_event);

    switch (sqe->opcode) {
    case IORING_OP_NOP:
        rl_pd_post(d, sqe->user_data, 0, 0);
        return RL_PD_DONE;

    case IORING_OP_READ:
    case IORING_OP_READV:
    case IORING_OP_WRITE:
    case IORING_OP_WRITEV:
        n = rl_pd_rw(sqe->opcode, fd, addr, sqe->len, sqe->off);
        break;

    case IORING_OP_RECV:
        do {
            n = recv(fd, addr, sqe->len, (int)(sqe->msg_flags | MSG_DONTWAIT));
        } while (n < 0 && errno == EINTR);
        break;

    case IORING_OP_SEND:
    case IORING_OP_SEND_ZC:
        do {
            n = send(fd, addr, sqe->len, (int)(sqe->msg_flags | MSG_DONTWAIT));
        } while (n < 0 && errno == EINTR);
        break;

    case IORING_OP_SENDMSG:
    case IORING_OP_SENDMSG_ZC:
        do {
            n = sendmsg(fd, (struct msghdr *)addr, (int)(sqe->msg_flags | MSG_DONTWAIT));
        } while (n < 0 && errno == EINTR);
        break;

    case IORING_OP_RECVMSG:
        do {
            n = recvmsg(fd, (struct msghdr *)addr, (int)(sqe->msg_flags | MSG_DONTWAIT));
        } while (n < 0 && errno == EINTR);
        break;

    case IORING_OP_ACCEPT: {
        int multishot = (sqe->ioprio & IORING_ACCEPT_MULTISHOT) != 0;
        int burst = 0;
        for (;;) {
            n = accept4(fd, (struct sockaddr *)addr,
                        (socklen_t *)(uintptr_t)sqe->addr2, (int)sqe->accept_flags);
            if (n < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return RL_PD_WAIT;
                rl_pd_post(d, sqe->user_data, -errno, 0);
                return RL_PD_DONE;
            }
            rl_pd_post(d, sqe->user_data, (int)n, multishot ? IORING_CQE_F_MORE : 0);
            if (!multishot)
                return RL_PD_DONE;
            if (++burst >= 64)
                return RL_PD_WAIT;
        }
    }

    case IORING_OP_CONNECT:
        /* Once in progress, ask connect() again rather than reading SO_ERROR:
         * like the kernel's own retry it reports the outcome and leaves a
         * failed socket unconnected (ready for another connect()). */
        do {
            n = connect(fd, (struct sockaddr *)addr, (socklen_t)sqe->off);
        } while (n < 0 && errno == EINTR && !op->connecting);
        if (n < 0) {
            err = errno;
            if (err == EINPROGRESS || err == EALREADY || err == EINTR) {
                op->connecting = 1;
                return RL_PD_WAIT;
            }
            if (err == EISCONN && op->connecting) {
                rl_pd_post(d, sqe->user_data, 0, 0);
                return RL_PD_DONE;
            }
            errno = err;
        }
        break;

    case IORING_OP_POLL_ADD: {
        uint32_t mask;
        if (!from_event)
            return RL_PD_WAIT; /* level-triggered epoll reports it at once */
        mask = revents & (sqe->poll32_events | EPOLLERR | EPOLLHUP);
        if (!mask)
            return RL_PD_WAIT;
        if (sqe->len & IORING_POLL_ADD_MULTI) {
            rl_pd_post(d, sqe->user_data, (int)mask, IORING_CQE_F_MORE);
            return RL_PD_WAIT;
        }
        rl_pd_post(d, sqe->user_data, (int)mask, 0);
        return RL_PD_DONE;
    }

    case IORING_OP_CLOSE:
        n = close(fd);
        break;

    default:
        rl_pd_post(d, sqe->user_data, -EINVAL, 0);
        return RL_PD_DONE;
    }
    if (n < 0) {
        err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return RL_PD_WAIT;
        rl_pd_post(d, sqe->user_data, -err, 0);
        return RL_PD_DONE;
    }
    if (sqe->opcode == IORING_OP_SEND_ZC || sqe->opcode == IORING_OP_SENDMSG_ZC) {
        /* a copy was made: the "notification" follows at once */
        rl_pd_post(d, sqe->user_data, (int)n, IORING_CQE_F_MORE);
        rl_pd_post(d, sqe->user_data, 0, IORING_CQE_F_NOTIF);
        return RL_PD_DONE;
    }
    rl_pd_post(d, sqe->user_data, (int)n, 0);
    return RL_PD_DONE;
}

/* Complete every waiter of fd with `res` (the fd cannot be watched). */
static void rl_pd_fail_fd(rl_polldrv *d, int fd, int res) {
    rl_pd_fd *f = &d->fds[fd];
    rl_pd_op *op;
    while ((op = f->head) != NULL) {
        rl_pd_unlink(d, op);
        if (res == -EPERM && op->sqe.opcode == IORING_OP_POLL_ADD) {
            /* not pollable (a regular file): always ready, as the kernel says */
            rl_pd_post(d, op->sqe.user_data,
                       (int)(op->sqe.poll32_events & (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)), 0);
        } else {
            rl_pd_post(d, op->sqe.user_data, res, 0);
        }
        rl_pd_op_free(d, op);
    }
    f->reg = 0;
}

/* Put a not-yet-complete op on its fd's wait list and watch the fd. */
static void rl_pd_wait_on(rl_polldrv *d, rl_pd_op *op) {
    int fd = op->sqe.fd, ret;
    rl_pd_fd *f;
    if (fd < 0 || rl_pd_fd_slot(d, fd) < 0) {
        rl_pd_post(d, op->sqe.user_data, fd < 0 ? -EBADF : -ENOMEM, 0);
        rl_pd_op_free(d, op);
        return;
    }
    f = &d->fds[fd];
    op->events = rl_pd_op_events(&op->sqe);
    op->next = NULL;
    op->prev = f->tail;
    if (f->tail)
        f->tail->next = op;
    else
        f->head = op;
    f->tail = op;
    rl_pd_hash_add(d, op);
    d->waiting++;
    ret = rl_pd_sync(d, fd, 1);
    if (ret < 0)
        rl_pd_fail_fd(d, fd, ret);
}

static void rl_pd_cancel(rl_polldrv *d, const struct io_uring_sqe *sqe) {
    rl_pd_op *target = rl_pd_hash_find(d, sqe->addr);
    int fd;
    if (!target) {
        rl_pd_post(d, sqe->user_data, -ENOENT, 0);
        return;
    }
    fd = target->sqe.fd;
    rl_pd_unlink(d, target);
    rl_pd_post(d, target->sqe.user_data, -ECANCELED, 0);
    rl_pd_op_free(d, target);
    if (rl_pd_sync(d, fd, 0) < 0)
        rl_pd_fail_fd(d, fd, -EBADF);
    rl_pd_post(d, sqe->user_data, 0, 0);
}

/* ---- FSYNC: on the helper thread (pdsync.h), never on the loop thread ---- */

static int rl_pd_sync_watch(rl_polldrv *d) {
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.u64 = RL_PD_SYNC_TAG;
    d->epoll_ctls++;
    return epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->fsync.efd, &ev) < 0 ? -errno : 0;
}

static void rl_pd_fsync(rl_polldrv *d, const struct io_uring_sqe *sqe) {
    int err = 0;
    if (!d->fsync.started) {
        err = rl_pds_start(&d->fsync);
        if (err == 0 && (err = rl_pd_sync_watch(d)) < 0)
            rl_pds_exit(&d->fsync);
    }
    if (err == 0)
        err = rl_pds_push(&d->fsync, sqe->fd, (sqe->fsync_flags & IORING_FSYNC_DATASYNC) != 0,
                          sqe->user_data);
    if (err < 0)
        rl_pd_post(d, sqe->user_data, err, 0);
}

/* The helper's eventfd fired: post the completions of the syncs it ran. */
static void rl_pd_sync_drain(rl_polldrv *d) {
    rl_pds_job *list = rl_pds_take(&d->fsync), *j;
    for (j = list; j; j = j->next)
        rl_pd_post(d, j->ud, j->res, 0);
    rl_pds_free_list(list);
}

static unsigned rl_pd_submit(rl_polldrv *d) {
    unsigned i, n = d->sq_len;
    for (i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = &d->sq[i];
        rl_pd_op *op;
        if (sqe->opcode == IORING_OP_ASYNC_CANCEL) {
            rl_pd_cancel(d, sqe);
            continue;
        }
        if (sqe->opcode == IORING_OP_FSYNC) {
            rl_pd_fsync(d, sqe);
            continue;
        }
        op = rl_pd_op_new(d, sqe);
        if (!op) {
            rl_pd_post(d, sqe->user_data, -ENOMEM, 0);
            continue;
        }
        if (rl_pd_run(d, op, 0, 0) == RL_PD_DONE)
            rl_pd_op_free(d, op);
        else
            rl_pd_wait_on(d, op);
    }
    d->sq_len = 0;
    d->submitted += n;
    return n;
}

/* Re-register every fd that has waiters in a fresh epoll set (a registration
 * outlived its fd and keeps firing). */
static void rl_pd_rebuild(rl_polldrv *d) {
    int fd, nep = epoll_create1(EPOLL_CLOEXEC);
    if (nep < 0)
        return;
    d->rebuilds++;
    close(d->epfd);
    d->epfd = nep;
    if (d->fsync.started)
        rl_pd_sync_watch(d);
    for (fd = 0; fd < d->nfds; fd++) {
        d->fds[fd].reg = 0;
        if (d->fds[fd].head && rl_pd_sync(d, fd, 0) < 0)
            rl_pd_fail_fd(d, fd, -EBADF);
    }
}

static void rl_pd_ready(rl_polldrv *d, int fd, uint32_t revents) {
    rl_pd_fd *f = &d->fds[fd];
    rl_pd_op *op, *nx;
    int changed = 0;
    for (op = f->head; op; op = nx) {
        nx = op->next;
        if (!(revents & (op->events | EPOLLERR | EPOLLHUP)))
            continue;
        if (rl_pd_run(d, op, 1, revents) == RL_PD_DONE) {
            rl_pd_unlink(d, op);
            rl_pd_op_free(d, op);
            changed = 1;
        }
    }
    if (changed && rl_pd_sync(d, fd, 0) < 0)
        rl_pd_fail_fd(d, fd, -EBADF);
}

static int rl_pd_epoll_wait(rl_polldrv *d, long long timeout_ns) {
    int n;
    d->epoll_waits++;
    if (timeout_ns > 0 && !d->no_pwait2) {
        struct __kernel_timespec ts;
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        n = (int)syscall(__NR_epoll_pwait2, d->epfd, d->evs, d->evcap, &ts, NULL, 0);
        if (n >= 0 || errno != ENOSYS)
            return n;
        d->no_pwait2 = 1;
    }
    if (timeout_ns < 0)
        return epoll_wait(d->epfd, d->evs, d->evcap, -1);
    if (timeout_ns == 0)
        return epoll_wait(d->epfd, d->evs, d->evcap, 0);
    long long ms = (timeout_ns + 999999) / 1000000;
    if (ms > 0x7fffffff)
        ms = 0x7fffffff;
    return epoll_wait(d->epfd, d->evs, d->evcap, (int)ms);
}

/* Submit everything queued, then wait up to timeout_ns (< 0: no limit) for
 * readiness unless wait_nr is 0 or completions are already queued; retry the
 * operations of ready fds. Returns the number of SQEs submitted or -errno
 * (-EINTR when a signal interrupted the wait). */
static int rl_pd_enter(rl_polldrv *d, unsigned wait_nr, long long timeout_ns) {
    unsigned submitted;
    int n, i;
    d->enters++;
    submitted = rl_pd_submit(d);
    /* no wait when wait_nr completions are ready already (rl_drv_wait asks
     * for one more than the quiet ones it has seen) */
    if (wait_nr == 0 || d->cq_tail - d->cq_head >= wait_nr)
        timeout_ns = 0;
    n = rl_pd_epoll_wait(d, timeout_ns);
    if (n < 0)
        return errno == EINTR ? -EINTR : -errno;
    for (i = 0; i < n; i++) {
        uint64_t data = d->evs[i].data.u64;
        int fd = (int)(uint32_t)data;
        uint32_t gen = (uint32_t)(data >> 32);
        if (data == RL_PD_SYNC_TAG) {
            rl_pd_sync_drain(d);
            continue;
        }
        if (fd >= d->nfds || d->fds[fd].reg == 0 || d->fds[fd].gen != gen) {
            /* a registration we could not remove: start afresh (the rest of
             * this batch belongs to the old set; level-triggered readiness
             * is reported again) */
            d->stale_events++;
            rl_pd_rebuild(d);
            break;
        }
        rl_pd_ready(d, fd, d->evs[i].events);
    }
    if (n == d->evcap && d->evcap < 65536) {
        struct epoll_event *ne = (struct epoll_event *)realloc(
            d->evs, 2 * (size_t)d->evcap * sizeof(struct epoll_event));
        if (ne) {
            d->evs = ne;
            d->evcap *= 2;
        }
    }
    return (int)submitted;
}

#endif /* RINGLINE_POLLDRV_H */
