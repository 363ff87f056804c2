/* driver.h -- the one driver interface of ringline's loop core.
 *
 * Owns: rl_driver, which runs a loop's operations either on an io_uring ring
 * (ring.h) or on the poll driver (polldrv.h: the same SQE-in / CQE-out
 * contract emulated with epoll and non-blocking syscalls), and the calls the
 * core makes on it. The tag (`kind`) is read only in this file: what differs
 * between the drivers that the core must know is a capability bit in `caps`,
 * so code above this layer asks "can the driver do X", never "which driver
 * runs".
 *
 * Lifecycle: zeroed (RL_DRV_NONE) -> rl_drv_init_ring / _init_fake /
 * _init_poll -> get_sqe / enter / reap / void ... -> rl_drv_exit (only once
 * no operation is in flight: the kernel may write into their memory until
 * then).
 *
 * Invariants: every SQE the core fills comes from rl_drv_get_sqe and reaches
 * the driver at the next rl_drv_enter (one submission per enter); a voided
 * SQE (rl_drv_void_sqe / _void_fd) never runs; completions come back in
 * rl_drv_reap in the order the driver produced them.
 */
#ifndef RINGLINE_DRIVER_H
#define RINGLINE_DRIVER_H

#include "ring.h"
#include "polldrv.h"

enum { RL_DRV_NONE = 0, RL_DRV_URING = 1, RL_DRV_POLL = 2 };

/* Capability bits (rl_driver.caps). */
/* Linked SQEs (IOSQE_IO_LINK, LINK_TIMEOUT) run as one chain in the driver;
 * without it the core sends a chain link by link and times a connect with a
 * timer. */
#define RL_CAP_LINKS        0x1u
/* A zero-timeout enter can be skipped when nothing is queued, completed or
 * pending (rl_drv_enter_is_noop answers). */
#define RL_CAP_NOOP_ENTER   0x2u

typedef struct {
    int kind;            /* RL_DRV_*: read only in this file */
    unsigned caps;       /* RL_CAP_* */
    rl_ring ring;        /* kind == RL_DRV_URING (a real or a fake ring) */
    rl_polldrv pd;       /* kind == RL_DRV_POLL */
} rl_driver;

static inline int rl_drv_init_ring(rl_driver *d, unsigned entries, unsigned cq_entries,
                                   unsigned mask_flags) {
    int err = rl_ring_init(&d->ring, entries, cq_entries, mask_flags);
    if (err < 0)
        return err;
    d->kind = RL_DRV_URING;
    d->caps = RL_CAP_LINKS | RL_CAP_NOOP_ENTER;
    return 0;
}

static inline int rl_drv_init_fake(rl_driver *d, unsigned entries, unsigned cq_entries) {
    int err = rl_ring_init_fake(&d->ring, entries, cq_entries);
    if (err < 0)
        return err;
    d->kind = RL_DRV_URING;
    d->caps = RL_CAP_LINKS | RL_CAP_NOOP_ENTER;
    return 0;
}

static inline int rl_drv_init_poll(rl_driver *d, unsigned entries) {
    int err = rl_pd_init(&d->pd, entries);
    if (err < 0)
        return err;
    d->kind = RL_DRV_POLL;
    d->caps = 0;
    return 0;
}

static inline void rl_drv_exit(rl_driver *d) {
    if (d->kind == RL_DRV_POLL)
        rl_pd_exit(&d->pd);
    else if (d->kind == RL_DRV_URING)
        rl_ring_exit(&d->ring);
    /* the tag stays: introspection still names the backend after close */
}

/* The opcodes the driver runs (ops_out[op] != 0); returns how many entries
 * were written, or -errno. */
static inline int rl_drv_probe(rl_driver *d, unsigned char *ops_out, int max_ops) {
    if (d->kind == RL_DRV_POLL)
        return rl_pd_probe(ops_out, max_ops);
    return rl_probe(&d->ring, ops_out, max_ops);
}

static inline struct io_uring_sqe *rl_drv_get_sqe(rl_driver *d) {
    if (d->kind == RL_DRV_POLL)
        return rl_pd_get_sqe(&d->pd);
    return rl_get_sqe(&d->ring);
}

static inline int rl_drv_enter(rl_driver *d, unsigned wait_nr, long long timeout_ns) {
    if (d->kind == RL_DRV_POLL)
        return rl_pd_enter(&d->pd, wait_nr, timeout_ns);
    return rl_enter(&d->ring, wait_nr, timeout_ns);
}

/* ---- waiting past quiet completions -----------------------------------
 *
 * A "quiet" completion is one the core has no reason to wake up for: the
 * completion of a send that took all its bytes and that nothing waits on
 * (no drain, no close, no more queued data, no paused protocol). The core
 * marks such an operation's slot with the result it expects (quiet[slot]
 * == res, for the operation of generation gens[slot]); rl_drv_wait then does
 * not return for CQEs that all match their marks: it waits again, in the same
 * call, for one completion more than the CQ holds. The quiet CQEs stay in the
 * CQ, in order, and are reaped with the next ones as usual. What it saves is a
 * whole loop turn per request-response (the send's completion arrives at
 * once, the next request later): the turn, and releasing and taking the GIL
 * once more. */

/* The CQEs ready now, when every one of them is quiet; 0 when none is ready
 * or any is not quiet. */
static inline unsigned rl_drv_quiet_ready(rl_driver *d, const int32_t *quiet,
                                          const uint32_t *gens, uint32_t cap) {
    const struct io_uring_cqe *c;
    unsigned head, tail, mask, n, i;
    if (d->kind == RL_DRV_POLL) {
        head = d->pd.cq_head;
        tail = d->pd.cq_tail;
        mask = 0xFFFFFFFFu;
        c = d->pd.cq;
    } else {
        if (d->ring.fake)
            return 0;
        head = *d->ring.cq_khead;
        tail = __atomic_load_n(d->ring.cq_ktail, __ATOMIC_ACQUIRE);
        mask = d->ring.cq_mask;
        c = d->ring.cqes;
    }
    n = tail - head;
    if (n == 0)
        return 0;
    for (i = head; i != tail; i++) {
        const struct io_uring_cqe *e = &c[i & mask];
        uint32_t slot = (uint32_t)(e->user_data & 0xFFFFFFFFu);
        if (slot >= cap || gens[slot] != (uint32_t)(e->user_data >> 32) ||
            quiet[slot] < 0 || quiet[slot] != e->res || (e->flags & IORING_CQE_F_MORE))
            return 0;
    }
    return n;
}

static inline long long rl_drv_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Submit what is queued and wait up to timeout_ns (< 0: no limit) for a
 * completion that is not quiet (see above). Returns what the first enter
 * returned (the number submitted), or the -errno of a failed wait. */
static inline int rl_drv_wait(rl_driver *d, long long timeout_ns, const int32_t *quiet,
                              const uint32_t *gens, uint32_t cap) {
    long long start = 0, left = timeout_ns;
    unsigned q, cq_size;
    int ret, again, rounds = 0;
    if (timeout_ns > 0)
        start = rl_drv_now_ns();
    ret = rl_drv_enter(d, 1, timeout_ns);
    if (ret < 0)
        return ret;
    cq_size = d->kind == RL_DRV_POLL ? d->pd.cq_cap : d->ring.cq_entries;
    while (rounds++ < 64) {
        q = rl_drv_quiet_ready(d, quiet, gens, cap);
        if (q == 0 || q + 1 > cq_size / 2)
            break;
        if (timeout_ns == 0)
            break;
        if (timeout_ns > 0) {
            left = timeout_ns - (rl_drv_now_ns() - start);
            if (left <= 0)
                break;
        }
        again = rl_drv_enter(d, q + 1, left);
        if (again < 0)
            return again;
    }
    return ret;
}

static inline int rl_drv_enter_is_noop(rl_driver *d) {
    if (!(d->caps & RL_CAP_NOOP_ENTER))
        return 0;
    return rl_enter_is_noop(&d->ring);
}

static inline unsigned rl_drv_reap(rl_driver *d, struct io_uring_cqe *out, unsigned max) {
    if (d->kind == RL_DRV_POLL)
        return rl_pd_reap(&d->pd, out, max);
    return rl_reap(&d->ring, out, max);
}

static inline unsigned rl_drv_sq_entries(rl_driver *d) {
    return d->kind == RL_DRV_POLL ? d->pd.sq_entries : d->ring.sq_entries;
}

/* SQEs queued since the last enter. */
static inline unsigned rl_drv_sq_pending(rl_driver *d) {
    return d->kind == RL_DRV_POLL ? d->pd.sq_len : rl_sq_pending(&d->ring);
}

static inline int rl_drv_void_sqe(rl_driver *d, uint64_t ud) {
    if (d->kind == RL_DRV_POLL)
        return rl_pd_void_sqe(&d->pd, ud);
    return rl_ring_void_sqe(&d->ring, ud);
}

static inline unsigned rl_drv_void_fd(rl_driver *d, int fd, uint64_t *out, unsigned max) {
    if (d->kind == RL_DRV_POLL)
        return rl_pd_void_fd(&d->pd, fd, out, max);
    return rl_ring_void_fd(&d->ring, fd, out, max);
}

static inline int rl_drv_pbuf_init(rl_driver *d, rl_pbuf *pb, unsigned nbufs,
                                   unsigned buf_size, unsigned short bgid) {
    if (d->kind == RL_DRV_POLL)
        return rl_pd_pbuf_init(&d->pd, pb, nbufs, buf_size, bgid);
    return rl_pbuf_init(&d->ring, pb, nbufs, buf_size, bgid);
}

static inline void rl_drv_pbuf_exit(rl_driver *d, rl_pbuf *pb) {
    if (d->kind == RL_DRV_POLL)
        rl_pd_pbuf_exit(&d->pd, pb);
    else
        rl_pbuf_exit(&d->ring, pb);
}

/* ---- introspection ---------------------------------------------------- */

static inline const char *rl_drv_name(rl_driver *d) {
    return d->kind == RL_DRV_POLL ? "poll" : "io_uring";
}

/* The system call a failed wait reports. */
static inline const char *rl_drv_wait_call(rl_driver *d) {
    return d->kind == RL_DRV_POLL ? "epoll_wait" : "io_uring_enter";
}

typedef struct {
    int fd;                  /* the ring's fd, or the epoll fd */
    unsigned setup_flags, features;      /* io_uring's; 0 for poll */
    unsigned sq_entries, cq_entries;
    uint64_t enters, submitted;
    int has_epoll;           /* the epoll counters below are meaningful */
    uint64_t epoll_waits, epoll_ctls, rebuilds, waiting;
} rl_drv_info;

static inline void rl_drv_get_info(rl_driver *d, rl_drv_info *out) {
    memset(out, 0, sizeof(*out));
    if (d->kind == RL_DRV_POLL) {
        out->fd = d->pd.epfd;
        out->sq_entries = d->pd.sq_entries;
        out->cq_entries = d->pd.cq_cap;
        out->enters = d->pd.enters;
        out->submitted = d->pd.submitted;
        out->has_epoll = 1;
        out->epoll_waits = d->pd.epoll_waits;
        out->epoll_ctls = d->pd.epoll_ctls;
        out->rebuilds = d->pd.rebuilds;
        out->waiting = d->pd.waiting;
    } else {
        out->fd = d->ring.fd;
        out->setup_flags = d->ring.setup_flags;
        out->features = d->ring.features;
        out->sq_entries = d->ring.sq_entries;
        out->cq_entries = d->ring.cq_entries;
        out->enters = d->ring.enters;
        out->submitted = d->ring.submitted;
    }
}

#endif
