/*
 * loadgen_uring.h -- part of loadgen.c, included by it at this point (one
 * translation unit: it uses the definitions that come before it there).
 * Owns: the raw io_uring syscalls the uring engine uses (setup, enter, SQE slots); no liburing.
 */
#ifndef LOADGEN_URING_H
#define LOADGEN_URING_H

/* ---- io_uring (raw syscalls; no liburing needed) ----------------------- */

struct uring {
    int fd;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    unsigned sq_entries;
    unsigned sqe_tail; /* next SQE to fill (not yet published) */
};

static int uring_setup(struct uring *r, unsigned entries)
{
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_CQSIZE,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE,
        IORING_SETUP_CQSIZE,
    };
    struct io_uring_params p;
    int fd = -1;
    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        memset(&p, 0, sizeof p);
        p.flags = flag_sets[i];
        p.cq_entries = entries * 2;
        fd = (int)syscall(__NR_io_uring_setup, entries, &p);
        if (fd >= 0)
            break;
    }
    if (fd < 0)
        return -errno;
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single && cq_len > sq_len)
        sq_len = cq_len;
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED)
        return -errno;
    char *cq = sq;
    if (!single) {
        cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
        if (cq == MAP_FAILED)
            return -errno;
    }
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
                   PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED)
        return -errno;
    r->fd = fd;
    r->sq_head = (unsigned *)(sq + p.sq_off.head);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    r->sq_entries = p.sq_entries;
    r->sqe_tail = *r->sq_tail;
    return 0;
}

/* Publish filled SQEs, submit them and (optionally) wait for completions. */
static int uring_enter(struct uring *r, unsigned wait_nr, long timeout_ns)
{
    __atomic_store_n(r->sq_tail, r->sqe_tail, __ATOMIC_RELEASE);
    unsigned pending = r->sqe_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    unsigned flags = IORING_ENTER_GETEVENTS;
    struct __kernel_timespec ts;
    struct io_uring_getevents_arg arg;
    void *argp = NULL;
    size_t argsz = 0;
    if (wait_nr && timeout_ns > 0) {
        ts.tv_sec = timeout_ns / 1000000000L;
        ts.tv_nsec = timeout_ns % 1000000000L;
        memset(&arg, 0, sizeof arg);
        arg.ts = (uint64_t)(uintptr_t)&ts;
        argp = &arg;
        argsz = sizeof arg;
        flags |= IORING_ENTER_EXT_ARG;
    }
    int ret = (int)syscall(__NR_io_uring_enter, r->fd, pending, wait_nr, flags,
                           argp, argsz);
    if (ret < 0 && (errno == ETIME || errno == EINTR || errno == EAGAIN ||
                    errno == EBUSY))
        return 0;
    return ret < 0 ? -errno : ret;
}

static struct io_uring_sqe *uring_sqe(struct uring *r)
{
    unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    if (r->sqe_tail - head >= r->sq_entries) {
        uring_enter(r, 0, 0); /* full: push what we have */
        head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
        if (r->sqe_tail - head >= r->sq_entries)
            return NULL;
    }
    unsigned idx = r->sqe_tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[idx];
    r->sq_array[idx] = idx;
    r->sqe_tail++;
    memset(sqe, 0, sizeof *sqe);
    return sqe;
}

#endif /* LOADGEN_URING_H */
