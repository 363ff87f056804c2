/*
 * uring_echo_server.c -- the io_uring physical reference for ringline's benchmarks.
 *
 * Owns: one single-threaded io_uring server, written against the kernel's
 * own header and raw syscalls only (no liburing), doing per request what a
 * completion-based loop does at the least: a multishot accept, one
 * multishot recv per connection drawing from a provided buffer ring, one
 * send in flight per connection, everything queued during a turn submitted
 * with the wait in one io_uring_enter.  Beside echo_server.c (the epoll
 * reference) it shows what the machine can do on the kernel path ringline's
 * io_uring backend takes, with no interpreter in the way.
 *
 * Modes:
 *   echo  TCP: send back every byte received, in order.
 *   http  TCP: answer every request (a header block ending in CRLFCRLF;
 *         requests carry no body) with one fixed keep-alive response.
 * (UDP has no io_uring variant here: the epoll server is its reference.)
 *
 * Per connection: received bytes are copied out of the provided buffer
 * into the connection's pending buffer and the provided buffer goes back
 * to the ring at once (so the ring never runs dry under a closed-loop
 * load); when no send is in flight the pending buffer becomes the
 * in-flight one and a SEND is queued.  A partial send continues from its
 * offset.  A recv completion without IORING_CQE_F_MORE (the ring ran dry,
 * or the kernel ended the multishot) re-arms it unless the stream ended.
 *
 * Lifecycle: bind + listen on HOST:PORT (PORT 0 = ephemeral) -> print
 * "READY <port>" -> serve until stdin reaches end of file (a READ on fd 0
 * completes with 0) or SIGTERM.  Same command line as echo_server.c.
 *
 * Invariants: a connection's memory is freed only when neither its recv
 * nor its send can complete any more; every fd is closed exactly once;
 * completions are routed by a pointer-and-kind user_data, never by fd.
 *
 * The modes, the command line and the listening socket are echo_common.h's
 * (shared with echo_server.c).
 *
 * Build: cc -O2 -o uring_echo_server uring_echo_server.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "echo_common.h"

#define RING_ENTRIES 4096u
#define CQ_ENTRIES 16384u
#define NBUFS 1024u /* power of two */
#define BUF_SIZE (32u * 1024u)
#define BGID 0

enum kind { K_RECV = 0, K_SEND = 1, K_ACCEPT = 2, K_STDIN = 3 };

struct buf {
    char *data;
    size_t len, cap;
};

struct conn {
    int fd;
    int match;          /* http: how much of CRLFCRLF the input ends with */
    int recv_armed;     /* a multishot recv may still complete */
    int send_inflight;  /* a SEND is in the kernel */
    int eof;            /* the stream ended or failed: no more reads */
    size_t sent;        /* progress of the in-flight buffer */
    struct buf pend;    /* bytes owed, not yet handed to the kernel */
    struct buf out;     /* the in-flight send's bytes */
} __attribute__((aligned(16)));

static struct {
    int fd;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    unsigned sq_local_tail, to_submit;
} ring;

static struct io_uring_buf_ring *br;
static char *bufs;
static unsigned short br_tail;
static struct echo_opts opt;
static int listen_fd;
static char stdin_byte[64];

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(unsigned submit, unsigned min_complete, unsigned flags)
{
    return (int)syscall(__NR_io_uring_enter, ring.fd, submit, min_complete, flags,
                        NULL, 0);
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void ring_init(void)
{
    struct io_uring_params p;
    unsigned tries[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, 0};
    for (unsigned i = 0; i < 2; i++) {
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        ring.fd = sys_setup(RING_ENTRIES, &p);
        if (ring.fd >= 0)
            break;
    }
    if (ring.fd < 0)
        die("io_uring_setup");
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
        fprintf(stderr, "kernel without IORING_FEAT_SINGLE_MMAP\n");
        exit(1);
    }
    size_t len = sq_len > cq_len ? sq_len : cq_len;
    char *sq = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    ring.fd, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED)
        die("mmap sq");
    ring.sq_head = (unsigned *)(sq + p.sq_off.head);
    ring.sq_tail = (unsigned *)(sq + p.sq_off.tail);
    ring.sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    ring.sq_array = (unsigned *)(sq + p.sq_off.array);
    ring.cq_head = (unsigned *)(sq + p.cq_off.head);
    ring.cq_tail = (unsigned *)(sq + p.cq_off.tail);
    ring.cq_mask = (unsigned *)(sq + p.cq_off.ring_mask);
    ring.cqes = (struct io_uring_cqe *)(sq + p.cq_off.cqes);
    ring.sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
                     PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring.fd,
                     IORING_OFF_SQES);
    if (ring.sqes == MAP_FAILED)
        die("mmap sqes");
    /* identity-map the index array once: slot i always names sqe i */
    for (unsigned i = 0; i < p.sq_entries; i++)
        ring.sq_array[i] = i;
    ring.sq_local_tail = *ring.sq_tail;
}

static struct io_uring_sqe *get_sqe(void)
{
    unsigned head = __atomic_load_n(ring.sq_head, __ATOMIC_ACQUIRE);
    if (ring.sq_local_tail - head >= RING_ENTRIES) {
        /* full: hand what is queued to the kernel first */
        if (sys_enter(ring.to_submit, 0, 0) < 0 && errno != EINTR)
            die("io_uring_enter (flush)");
        ring.to_submit = 0;
    }
    struct io_uring_sqe *sqe = &ring.sqes[ring.sq_local_tail & *ring.sq_mask];
    memset(sqe, 0, sizeof *sqe);
    ring.sq_local_tail++;
    ring.to_submit++;
    __atomic_store_n(ring.sq_tail, ring.sq_local_tail, __ATOMIC_RELEASE);
    return sqe;
}

static void bufring_init(void)
{
    size_t ring_len = NBUFS * sizeof(struct io_uring_buf);
    br = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bufs = mmap(NULL, (size_t)NBUFS * BUF_SIZE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED)
        die("mmap buffers");
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br,
                                   .ring_entries = NBUFS, .bgid = BGID};
    if (syscall(__NR_io_uring_register, ring.fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0)
        die("IORING_REGISTER_PBUF_RING");
    for (unsigned i = 0; i < NBUFS; i++) {
        struct io_uring_buf *b = &br->bufs[(br_tail + i) & (NBUFS - 1)];
        b->addr = (uint64_t)(uintptr_t)(bufs + (size_t)i * BUF_SIZE);
        b->len = BUF_SIZE;
        b->bid = (unsigned short)i;
    }
    br_tail += NBUFS;
    __atomic_store_n(&br->tail, br_tail, __ATOMIC_RELEASE);
}

static void buf_recycle(unsigned bid)
{
    struct io_uring_buf *b = &br->bufs[br_tail & (NBUFS - 1)];
    b->addr = (uint64_t)(uintptr_t)(bufs + (size_t)bid * BUF_SIZE);
    b->len = BUF_SIZE;
    b->bid = (unsigned short)bid;
    br_tail++;
    __atomic_store_n(&br->tail, br_tail, __ATOMIC_RELEASE);
}

static uint64_t tag(struct conn *c, enum kind k)
{
    return (uint64_t)(uintptr_t)c | (uint64_t)k;
}

static void arm_accept(void)
{
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_ACCEPT;
    sqe->fd = listen_fd;
    sqe->ioprio = IORING_ACCEPT_MULTISHOT;
    sqe->user_data = tag(NULL, K_ACCEPT);
}

static void arm_stdin(void)
{
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_READ;
    sqe->fd = 0;
    sqe->addr = (uint64_t)(uintptr_t)stdin_byte;
    sqe->len = sizeof stdin_byte;
    sqe->off = (uint64_t)-1;
    sqe->user_data = tag(NULL, K_STDIN);
}

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = c->fd;
    sqe->ioprio = IORING_RECV_MULTISHOT;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    sqe->user_data = tag(c, K_RECV);
    c->recv_armed = 1;
}

static void submit_send(struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = c->fd;
    sqe->addr = (uint64_t)(uintptr_t)(c->out.data + c->sent);
    sqe->len = (unsigned)(c->out.len - c->sent);
    sqe->msg_flags = MSG_NOSIGNAL;
    sqe->user_data = tag(c, K_SEND);
    c->send_inflight = 1;
}

static void buf_append(struct buf *b, const char *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data)
            die("realloc");
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

/* Promote the pending bytes to a new in-flight send, if idle. */
static void flush(struct conn *c)
{
    if (c->send_inflight || c->pend.len == 0)
        return;
    struct buf t = c->out;
    c->out = c->pend;
    c->pend = t;
    c->pend.len = 0;
    c->sent = 0;
    submit_send(c);
}

static void maybe_free(struct conn *c)
{
    if (c->recv_armed || c->send_inflight || !c->eof)
        return;
    close(c->fd);
    free(c->pend.data);
    free(c->out.data);
    free(c);
}

static void on_recv(struct conn *c, int res, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE))
        c->recv_armed = 0;
    if (res > 0) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        const char *data = bufs + (size_t)bid * BUF_SIZE;
        if (opt.mode == MODE_ECHO)
            buf_append(&c->pend, data, (size_t)res);
        else
            for (int k = count_requests(&c->match, data, (size_t)res); k > 0; k--)
                buf_append(&c->pend, http_response, sizeof http_response - 1);
        buf_recycle(bid);
        if (!c->eof)
            flush(c);
        if (!c->recv_armed && !c->eof)
            arm_recv(c);
        return;
    }
    if (res == -ENOBUFS && !c->eof) {
        if (!c->recv_armed)
            arm_recv(c); /* buffers were recycled above: arm again */
        return;
    }
    c->eof = 1; /* 0: peer closed; any other error: give up on the stream */
    if (c->recv_armed)
        shutdown(c->fd, SHUT_RDWR);
    maybe_free(c);
}

static void on_send(struct conn *c, int res)
{
    c->send_inflight = 0;
    if (res <= 0) {
        /* the peer is gone: stop reading, free once the recv ends */
        c->eof = 1;
        if (c->recv_armed)
            shutdown(c->fd, SHUT_RDWR);
        maybe_free(c);
        return;
    }
    c->sent += (size_t)res;
    if (c->sent < c->out.len) {
        submit_send(c); /* partial: continue from the offset */
        return;
    }
    c->out.len = 0;
    c->sent = 0;
    if (c->eof)
        maybe_free(c);
    else
        flush(c);
}

static void on_accept(int res, unsigned flags)
{
    if (!(flags & IORING_CQE_F_MORE))
        arm_accept();
    if (res < 0)
        return;
    int one = 1;
    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = aligned_alloc(16, sizeof *c);
    if (!c)
        die("malloc");
    memset(c, 0, sizeof *c);
    c->fd = res;
    arm_recv(c);
}

int main(int argc, char **argv)
{
    echo_options(argc, argv, 1, &opt);
    listen_fd = echo_listen(&opt, 0);

    ring_init();
    bufring_init();
    arm_accept();
    arm_stdin();

    echo_ready(listen_fd);

    for (;;) {
        int r = sys_enter(ring.to_submit, 1, IORING_ENTER_GETEVENTS);
        if (r < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY)
            die("io_uring_enter");
        if (r >= 0)
            ring.to_submit -= (unsigned)r < ring.to_submit ? (unsigned)r : ring.to_submit;
        unsigned head = *ring.cq_head;
        unsigned tail = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &ring.cqes[head & *ring.cq_mask];
            uint64_t ud = cqe->user_data;
            struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)15);
            switch ((enum kind)(ud & 15)) {
            case K_RECV: on_recv(c, cqe->res, cqe->flags); break;
            case K_SEND: on_send(c, cqe->res); break;
            case K_ACCEPT: on_accept(cqe->res, cqe->flags); break;
            case K_STDIN:
                if (cqe->res <= 0)
                    return 0;
                arm_stdin();
                break;
            }
        }
        __atomic_store_n(ring.cq_head, head, __ATOMIC_RELEASE);
    }
}
