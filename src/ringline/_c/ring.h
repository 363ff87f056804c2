/*
 * ringline ring layer: io_uring driven by raw syscalls (one of the two
 * drivers behind driver.h).
 *
 * Owns: ring setup (asking for the best flags the kernel accepts and stepping
 * down when refused), the SQ/CQ mappings, SQE acquisition, submit-and-wait with
 * a timeout, CQE iteration, the opcode probe and provided buffer rings.
 *
 * Lifecycle: rl_ring_init() -> (rl_get_sqe() ... rl_enter())* -> rl_ring_exit().
 * One ring belongs to one thread (SINGLE_ISSUER when the kernel grants it):
 * only the owning thread may submit; other threads wake it through an eventfd.
 *
 * Nothing beyond the kernel UAPI headers is used: constants newer than the
 * installed headers are defined here and their use is gated by the probe.
 */
#ifndef RINGLINE_RING_H
#define RINGLINE_RING_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/io_uring.h>
#include <stddef.h>
#include <sys/un.h>

#define RL_SUN_PATH_OFFSET offsetof(struct sockaddr_un, sun_path)

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

/* Setup flags (some newer than old headers). */
#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7)
#endif
#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif

/* Opcodes newer than the 6.1 headers, by number. */
#define RL_OP_READ_MULTISHOT 49

/* Op flags. */
#ifndef IORING_RECV_MULTISHOT
#define IORING_RECV_MULTISHOT (1U << 1)
#endif
#ifndef IORING_ACCEPT_MULTISHOT
#define IORING_ACCEPT_MULTISHOT (1U << 0)
#endif
#ifndef IORING_POLL_ADD_MULTI
#define IORING_POLL_ADD_MULTI (1U << 0)
#endif
#ifndef IORING_ASYNC_CANCEL_ALL
#define IORING_ASYNC_CANCEL_ALL (1U << 0)
#endif
#ifndef IORING_ASYNC_CANCEL_ANY
#define IORING_ASYNC_CANCEL_ANY (1U << 2)
#endif
#ifndef IORING_CQE_F_NOTIF
#define IORING_CQE_F_NOTIF (1U << 3)
#endif
#ifndef IORING_CQE_F_SOCK_NONEMPTY
#define IORING_CQE_F_SOCK_NONEMPTY (1U << 2)
#endif
#ifndef IORING_ENTER_EXT_ARG
#define IORING_ENTER_EXT_ARG (1U << 3)
#endif
#ifndef IORING_FEAT_EXT_ARG
#define IORING_FEAT_EXT_ARG (1U << 8)
#endif

#define RL_UD_IGNORE 0xFFFFFFFFFFFFFFFFULL

typedef struct rl_ring {
    int fd;
    unsigned setup_flags;     /* flags the kernel accepted */
    unsigned features;
    /* SQ */
    unsigned *sq_khead, *sq_ktail, *sq_kflags, *sq_array;
    unsigned sq_mask, sq_entries;
    unsigned sqe_tail;        /* our local tail (SQEs handed out) */
    struct io_uring_sqe *sqes;
    /* CQ */
    unsigned *cq_khead, *cq_ktail, *cq_koverflow;
    unsigned cq_mask, cq_entries;
    struct io_uring_cqe *cqes;
    /* mappings */
    void *sq_ptr, *cq_ptr;
    size_t sq_len, cq_len, sqes_len;
    /* counters */
    uint64_t enters;
    uint64_t submitted;
    /* the fake-completion test harness (rl_ring_init_fake): no kernel; SQEs
     * the core submits are copied to a log, CQEs are posted by the test */
    int fake;
    unsigned fake_ctl[4];          /* sq head, sq tail, sq flags, cq overflow */
    unsigned fake_cq_ctl[2];       /* cq head, cq tail */
    struct io_uring_sqe *fake_log;
    unsigned *fake_log_enter;      /* per logged SQE: which enter took it */
    unsigned fake_log_len, fake_log_cap;
    int fake_wait_res[8];          /* scripted results of the next waits */
    unsigned fake_wait_n;
    uint64_t fake_waits;           /* enters that asked to wait */
    long long fake_wait_timeout_ns; /* the timeout the last of them gave */
} rl_ring;

/* Test hook (RINGLINE_FAKE_URING_ERRNO, see _loop/backend.py): when non-zero,
 * io_uring_setup "fails" with this errno without asking the kernel. */
static int rl_fake_setup_errno = 0;

static inline int rl_sys_setup(unsigned entries, struct io_uring_params *p) {
    if (rl_fake_setup_errno) {
        errno = rl_fake_setup_errno;
        return -1;
    }
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static inline int rl_sys_enter(int fd, unsigned to_submit, unsigned min_complete,
                               unsigned flags, void *arg, size_t argsz) {
    return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
}

static inline int rl_sys_register(int fd, unsigned op, void *arg, unsigned nr) {
    return (int)syscall(__NR_io_uring_register, fd, op, arg, nr);
}

/* The flag sets tried in order; the first the kernel accepts wins. */
static const unsigned rl_flag_ladder[] = {
    IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL |
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
    IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL |
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
        IORING_SETUP_TASKRUN_FLAG,
    IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL |
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL |
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
    IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL,
    IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP,
    0,
};
#define RL_FLAG_LADDER_LEN (sizeof(rl_flag_ladder) / sizeof(rl_flag_ladder[0]))

/* Returns 0 or -errno of the last attempt. `mask_flags` removes flags from
 * every rung (used by tests and RINGLINE_URING_FLAGS). */
static int rl_ring_init(rl_ring *r, unsigned entries, unsigned cq_entries,
                        unsigned mask_flags) {
    struct io_uring_params p;
    int fd = -1;
    int err = -ENOSYS;
    size_t i;
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    for (i = 0; i < RL_FLAG_LADDER_LEN; i++) {
        unsigned want = rl_flag_ladder[i] & ~mask_flags;
        if (i > 0 && want == (rl_flag_ladder[i - 1] & ~mask_flags))
            continue;
        memset(&p, 0, sizeof(p));
        p.flags = want;
        p.cq_entries = cq_entries;
        fd = rl_sys_setup(entries, &p);
        if (fd >= 0) {
            r->setup_flags = want;
            break;
        }
        err = -errno;
        if (err == -ENOSYS || err == -EPERM || err == -ENOMEM)
            return err; /* no point stepping down */
    }
    if (fd < 0)
        return err;
    r->fd = fd;
    r->features = p.features;
    r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (r->cq_len > r->sq_len)
            r->sq_len = r->cq_len;
        r->cq_len = r->sq_len;
    }
    r->sq_ptr = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     fd, IORING_OFF_SQ_RING);
    if (r->sq_ptr == MAP_FAILED) {
        err = -errno;
        close(fd);
        r->fd = -1;
        return err;
    }
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        r->cq_ptr = r->sq_ptr;
    } else {
        r->cq_ptr = mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
        if (r->cq_ptr == MAP_FAILED) {
            err = -errno;
            munmap(r->sq_ptr, r->sq_len);
            close(fd);
            r->fd = -1;
            return err;
        }
    }
    r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                   fd, IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED) {
        err = -errno;
        if (r->cq_ptr != r->sq_ptr)
            munmap(r->cq_ptr, r->cq_len);
        munmap(r->sq_ptr, r->sq_len);
        close(fd);
        r->fd = -1;
        return err;
    }
    char *sq = (char *)r->sq_ptr;
    char *cq = (char *)r->cq_ptr;
    r->sq_khead = (unsigned *)(sq + p.sq_off.head);
    r->sq_ktail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_kflags = (unsigned *)(sq + p.sq_off.flags);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_entries = p.sq_entries;
    r->cq_khead = (unsigned *)(cq + p.cq_off.head);
    r->cq_ktail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_koverflow = (unsigned *)(cq + p.cq_off.overflow);
    r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    r->cq_entries = p.cq_entries;
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    /* Identity SQ index array: SQE i lives in slot i. */
    for (i = 0; i < p.sq_entries; i++)
        r->sq_array[i] = (unsigned)i;
    r->sqe_tail = *r->sq_ktail;
    return 0;
}

static void rl_ring_exit(rl_ring *r) {
    if (r->fake) {
        free(r->sqes); free(r->sq_array); free(r->cqes); free(r->fake_log);
        free(r->fake_log_enter);
        r->sqes = NULL; r->sq_array = NULL; r->cqes = NULL; r->fake_log = NULL;
        r->fake_log_enter = NULL;
        r->fake = 0;
        return;
    }
    if (r->fd < 0)
        return;
    munmap(r->sqes, r->sqes_len);
    if (r->cq_ptr != r->sq_ptr)
        munmap(r->cq_ptr, r->cq_len);
    munmap(r->sq_ptr, r->sq_len);
    close(r->fd);
    r->fd = -1;
}

/* SQEs handed out but not yet seen by the kernel. */
static inline unsigned rl_sq_pending(rl_ring *r) {
    return r->sqe_tail - __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
}

static inline void rl_publish(rl_ring *r) {
    __atomic_store_n(r->sq_ktail, r->sqe_tail, __ATOMIC_RELEASE);
}

/* An SQE, zeroed, or NULL when the SQ is full (the caller then submits). */
static inline struct io_uring_sqe *rl_get_sqe(rl_ring *r) {
    unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
    if (r->sqe_tail - head >= r->sq_entries)
        return NULL;
    struct io_uring_sqe *sqe = &r->sqes[r->sqe_tail & r->sq_mask];
    r->sqe_tail++;
    memset(sqe, 0, sizeof(*sqe));
    return sqe;
}

/* Turn the SQE carrying `ud` that the kernel has not read yet into a NOP
 * whose completion is ignored (link flags kept), so that an operation whose
 * file descriptor is being closed (its number may be reused at once) never
 * reaches the kernel; the caller completes the operation itself. Returns 1
 * when found, 0 when that SQE was already submitted. */
static inline void rl_sqe_void(struct io_uring_sqe *sqe) {
    uint8_t links = sqe->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK);
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_NOP;
    sqe->fd = -1;
    sqe->flags = links;
    sqe->user_data = RL_UD_IGNORE;
}

static int rl_ring_void_sqe(rl_ring *r, uint64_t ud) {
    unsigned i = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
    for (; i != r->sqe_tail; i++) {
        struct io_uring_sqe *sqe = &r->sqes[i & r->sq_mask];
        if (sqe->user_data == ud) {
            rl_sqe_void(sqe);
            return 1;
        }
    }
    return 0;
}

/* Void the not yet submitted SQEs sqes[from..to) (indices masked) that name
 * `fd` (its owner is closing it). The user_data of those that had one are
 * stored in out (at most max; the caller repeats while max were stored). */
static unsigned rl_void_fd_range(struct io_uring_sqe *sqes, unsigned mask, unsigned from,
                                 unsigned to, int fd, uint64_t *out, unsigned max) {
    unsigned i, n = 0;
    for (i = from; i != to; i++) {
        struct io_uring_sqe *sqe = &sqes[i & mask];
        if (sqe->fd != fd || sqe->opcode == IORING_OP_NOP || (sqe->flags & IOSQE_FIXED_FILE))
            continue;
        if (sqe->user_data != RL_UD_IGNORE) {
            if (n == max)
                break;
            out[n++] = sqe->user_data;
        }
        rl_sqe_void(sqe);
    }
    return n;
}

static unsigned rl_ring_void_fd(rl_ring *r, int fd, uint64_t *out, unsigned max) {
    return rl_void_fd_range(r->sqes, r->sq_mask, __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE),
                            r->sqe_tail, fd, out, max);
}

/* Submit everything pending and wait for `wait_nr` completions or until the
 * timeout (timeout_ns < 0: no timeout). Returns >= 0 or -errno; -ETIME and
 * -EINTR are ordinary outcomes. Call without the GIL when it may block. */
static int rl_fake_enter(rl_ring *r, unsigned wait_nr, long long timeout_ns);

static inline int rl_enter(rl_ring *r, unsigned wait_nr, long long timeout_ns) {
    unsigned to_submit;
    unsigned flags = 0;
    int ret;
    rl_publish(r);
    if (__builtin_expect(r->fake, 0))
        return rl_fake_enter(r, wait_nr, timeout_ns);
    to_submit = rl_sq_pending(r);
    if (wait_nr > 0 || (r->setup_flags & IORING_SETUP_DEFER_TASKRUN))
        flags |= IORING_ENTER_GETEVENTS;
    r->enters++;
    if (wait_nr > 0 && timeout_ns >= 0 && (r->features & IORING_FEAT_EXT_ARG)) {
        struct __kernel_timespec ts;
        struct io_uring_getevents_arg arg;
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        memset(&arg, 0, sizeof(arg));
        arg.ts = (uint64_t)(uintptr_t)&ts;
        ret = rl_sys_enter(r->fd, to_submit, wait_nr, flags | IORING_ENTER_EXT_ARG,
                           &arg, sizeof(arg));
    } else {
        ret = rl_sys_enter(r->fd, to_submit, wait_nr, flags, NULL, 0);
    }
    if (ret < 0)
        return -errno;
    r->submitted += (unsigned)ret;
    return ret;
}

/* Copy up to `max` CQEs out of the ring and release their slots at once, so
 * that dispatching them can never overflow the CQ. */
static inline unsigned rl_reap(rl_ring *r, struct io_uring_cqe *out, unsigned max) {
    unsigned head = *r->cq_khead;
    unsigned tail = __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE);
    unsigned n = 0;
    while (head != tail && n < max) {
        out[n++] = r->cqes[head & r->cq_mask];
        head++;
    }
    __atomic_store_n(r->cq_khead, head, __ATOMIC_RELEASE);
    return n;
}

/* True when a zero-timeout enter would do nothing: no SQE to hand over, no
 * completion waiting in the CQ, and (the kernel flags it with TASKRUN_FLAG)
 * no deferred task work pending. Only meaningful with TASKRUN_FLAG. */
static inline int rl_enter_is_noop(rl_ring *r) {
    if (!(r->setup_flags & IORING_SETUP_TASKRUN_FLAG))
        return 0;
    if (r->sqe_tail != __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE))
        return 0;
    if (__atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE) != *r->cq_khead)
        return 0;
    return (__atomic_load_n(r->sq_kflags, __ATOMIC_ACQUIRE) &
            (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) == 0;
}

/* Probe: fills ops_out[op] = 1 when supported. Returns the last op + 1 or -errno. */
static int rl_probe(rl_ring *r, unsigned char *ops_out, int max_ops) {
    size_t sz = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *p;
    int i, ret;
    if (r->fake) {                 /* the fake ring "supports" every opcode */
        for (i = 0; i < max_ops && i < IORING_OP_LAST; i++)
            ops_out[i] = 1;
        return IORING_OP_LAST;
    }
    p = (struct io_uring_probe *)calloc(1, sz);
    if (!p)
        return -ENOMEM;
    ret = rl_sys_register(r->fd, IORING_REGISTER_PROBE, p, 256);
    if (ret < 0) {
        ret = -errno;
        free(p);
        return ret;
    }
    for (i = 0; i < p->ops_len && i < max_ops; i++)
        ops_out[i] = (p->ops[i].flags & IO_URING_OP_SUPPORTED) ? 1 : 0;
    ret = p->last_op + 1;
    free(p);
    return ret;
}

/* ---- provided buffer rings ------------------------------------------- */

typedef struct rl_pbuf {
    struct io_uring_buf_ring *br;
    size_t br_len;
    char *mem;           /* nbufs * buf_size bytes */
    size_t mem_len;
    unsigned nbufs;      /* power of two */
    unsigned buf_size;
    unsigned short bgid;
    unsigned short tail; /* local tail */
    unsigned outstanding; /* buffers handed to user space, not yet returned */
} rl_pbuf;

static inline void rl_pbuf_add(rl_pbuf *pb, unsigned short bid) {
    struct io_uring_buf *b = &pb->br->bufs[pb->tail & (pb->nbufs - 1)];
    b->addr = (uint64_t)(uintptr_t)(pb->mem + (size_t)bid * pb->buf_size);
    b->len = pb->buf_size;
    b->bid = bid;
    pb->tail++;
}

static inline void rl_pbuf_publish(rl_pbuf *pb) {
    __atomic_store_n(&pb->br->tail, pb->tail, __ATOMIC_RELEASE);
}

/* The buffer ring and the buffers themselves, filled and published; plain
 * user memory until registered (the poll driver never registers it). */
static int rl_pbuf_alloc(rl_pbuf *pb, unsigned nbufs, unsigned buf_size,
                         unsigned short bgid) {
    unsigned i;
    int ret;
    memset(pb, 0, sizeof(*pb));
    pb->nbufs = nbufs;
    pb->buf_size = buf_size;
    pb->bgid = bgid;
    pb->br_len = (size_t)nbufs * sizeof(struct io_uring_buf);
    if (pb->br_len < 4096)
        pb->br_len = 4096;
    pb->br = mmap(NULL, pb->br_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (pb->br == MAP_FAILED) {
        pb->br = NULL;
        return -errno;
    }
    pb->mem_len = (size_t)nbufs * buf_size;
    pb->mem = mmap(NULL, pb->mem_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (pb->mem == MAP_FAILED) {
        ret = -errno;
        munmap(pb->br, pb->br_len);
        pb->br = NULL;
        pb->mem = NULL;
        return ret;
    }
    pb->br->tail = 0;
    pb->tail = 0;
    for (i = 0; i < nbufs; i++)
        rl_pbuf_add(pb, (unsigned short)i);
    rl_pbuf_publish(pb);
    return 0;
}

static void rl_pbuf_free(rl_pbuf *pb) {
    if (!pb->br)
        return;
    munmap(pb->mem, pb->mem_len);
    munmap(pb->br, pb->br_len);
    pb->br = NULL;
    pb->mem = NULL;
}

static int rl_pbuf_init(rl_ring *r, rl_pbuf *pb, unsigned nbufs, unsigned buf_size,
                        unsigned short bgid) {
    struct io_uring_buf_reg reg;
    int ret = rl_pbuf_alloc(pb, nbufs, buf_size, bgid);
    if (ret < 0)
        return ret;
    if (r->fake)
        return 0;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)pb->br;
    reg.ring_entries = nbufs;
    reg.bgid = bgid;
    ret = rl_sys_register(r->fd, IORING_REGISTER_PBUF_RING, &reg, 1);
    if (ret < 0) {
        ret = -errno;
        rl_pbuf_free(pb);
        return ret;
    }
    return 0;
}

/* Only after every operation using the group has completed. */
static void rl_pbuf_exit(rl_ring *r, rl_pbuf *pb) {
    struct io_uring_buf_reg reg;
    if (!pb->br)
        return;
    memset(&reg, 0, sizeof(reg));
    reg.bgid = pb->bgid;
    if (r->fd >= 0)
        rl_sys_register(r->fd, IORING_UNREGISTER_PBUF_RING, &reg, 1);
    rl_pbuf_free(pb);
}

static inline char *rl_pbuf_addr(rl_pbuf *pb, unsigned bid) {
    return pb->mem + (size_t)bid * pb->buf_size;
}

/* ---- SQE preparation ---------------------------------------------------- */

/* The largest length one read/write/send/recv SQE carries: the kernel's own
 * per-call cap (MAX_RW_COUNT, INT_MAX rounded down to a page). The SQE's len
 * field is 32 bits: a size_t handed in unclamped would wrap (2^32 -> 0, a
 * zero-byte send "succeeding" forever). Callers pass the full size_t length;
 * the op then completes short and continues from its offset. */
#define RL_MAX_IO_LEN 0x7FFFF000u

static inline void rl_prep_rw(struct io_uring_sqe *sqe, int op, int fd, const void *addr,
                              size_t len, uint64_t off, uint64_t ud) {
    sqe->opcode = (uint8_t)op;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)addr;
    sqe->len = len > RL_MAX_IO_LEN ? RL_MAX_IO_LEN : (unsigned)len;
    sqe->off = off;
    sqe->user_data = ud;
}

static inline double rl_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the fake-completion harness ---------------------------------------
 * A ring with no kernel behind it, for testing the core's driver logic with
 * chosen completions (tests/loop/test_fake_completions.py). The SQ and CQ are
 * plain memory laid out as the kernel's; "submitting" copies the published
 * SQEs to a log the test reads; the test posts CQEs, which the core reaps
 * through the ordinary rl_reap(). Never used outside tests. */

static int rl_ring_init_fake(rl_ring *r, unsigned entries, unsigned cq_entries) {
    unsigned i;
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->fake = 1;
    r->setup_flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    r->sq_entries = entries;
    r->sq_mask = entries - 1;
    r->cq_entries = cq_entries;
    r->cq_mask = cq_entries - 1;
    r->sq_khead = &r->fake_ctl[0];
    r->sq_ktail = &r->fake_ctl[1];
    r->sq_kflags = &r->fake_ctl[2];
    r->cq_koverflow = &r->fake_ctl[3];
    r->cq_khead = &r->fake_cq_ctl[0];
    r->cq_ktail = &r->fake_cq_ctl[1];
    r->sqes = (struct io_uring_sqe *)calloc(entries, sizeof(struct io_uring_sqe));
    r->sq_array = (unsigned *)calloc(entries, sizeof(unsigned));
    r->cqes = (struct io_uring_cqe *)calloc(cq_entries, sizeof(struct io_uring_cqe));
    if (!r->sqes || !r->sq_array || !r->cqes) {
        rl_ring_exit(r);
        return -ENOMEM;
    }
    for (i = 0; i < entries; i++)
        r->sq_array[i] = i;
    return 0;
}

static int rl_fake_post(rl_ring *r, uint64_t ud, int res, uint32_t flags);

/* One enter: the published SQEs go to the log. An enter that asks to wait
 * never blocks: it is counted with its timeout, and when it submitted nothing
 * it returns the next scripted wait result (-EINTR, -ETIME, ...) if the test
 * queued one, as the kernel reports an interrupted or timed-out wait (one
 * that submitted something returns that number, whatever the wait did). */
static int rl_fake_enter(rl_ring *r, unsigned wait_nr, long long timeout_ns) {
    unsigned head = *r->sq_khead, tail = *r->sq_ktail, n = tail - head;
    r->enters++;
    if (r->fake_log_len + n > r->fake_log_cap) {
        unsigned cap = r->fake_log_cap ? r->fake_log_cap : 64;
        struct io_uring_sqe *nl;
        unsigned *ne;
        while (cap < r->fake_log_len + n)
            cap *= 2;
        nl = (struct io_uring_sqe *)realloc(r->fake_log, (size_t)cap * sizeof(*nl));
        if (!nl)
            return -ENOMEM;
        r->fake_log = nl;
        ne = (unsigned *)realloc(r->fake_log_enter, (size_t)cap * sizeof(*ne));
        if (!ne)
            return -ENOMEM;
        r->fake_log_enter = ne;
        r->fake_log_cap = cap;
    }
    while (head != tail) {
        struct io_uring_sqe *sqe = &r->sqes[r->sq_array[head & r->sq_mask]];
        r->fake_log_enter[r->fake_log_len] = (unsigned)r->enters;
        r->fake_log[r->fake_log_len++] = *sqe;
        /* fake == 1: an ASYNC_CANCEL completes its target at once with
         * -ECANCELED, as the kernel does for an operation still waiting;
         * fake == 2 leaves every completion to the test */
        if (r->fake == 1 && sqe->opcode == IORING_OP_ASYNC_CANCEL)
            rl_fake_post(r, sqe->addr, -ECANCELED, 0);
        head++;
    }
    __atomic_store_n(r->sq_khead, head, __ATOMIC_RELEASE);
    r->submitted += n;
    if (wait_nr > 0) {
        r->fake_waits++;
        r->fake_wait_timeout_ns = timeout_ns;
        if (n == 0 && r->fake_wait_n > 0) {
            int res = r->fake_wait_res[0];
            r->fake_wait_n--;
            memmove(r->fake_wait_res, r->fake_wait_res + 1, r->fake_wait_n * sizeof(int));
            return res;
        }
    }
    return (int)n;
}

/* Post one completion; -EBUSY when the CQ is full. */
static int rl_fake_post(rl_ring *r, uint64_t ud, int res, uint32_t flags) {
    unsigned tail = *r->cq_ktail;
    struct io_uring_cqe *cqe;
    if (tail - *r->cq_khead >= r->cq_entries)
        return -EBUSY;
    cqe = &r->cqes[tail & r->cq_mask];
    cqe->user_data = ud;
    cqe->res = res;
    cqe->flags = flags;
    __atomic_store_n(r->cq_ktail, tail + 1, __ATOMIC_RELEASE);
    return 0;
}

#endif /* RINGLINE_RING_H */
