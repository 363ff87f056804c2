/*
 * loadgen.c -- ringline's closed-loop load generator.
 *
 * Owns: driving N client connections against one server, each with exactly
 * one request in flight (closed loop), and reporting what came back.
 *
 * Lifecycle: parse options -> pick the I/O engine -> open all connections
 * (blocking connect, then non-blocking) -> split them round-robin over T
 * threads, each with its own io_uring (or epoll instance), pinned to the
 * CPUs given -> every thread runs until the common deadline (lead-in +
 * duration) or until its connections are done -> merge per-thread
 * histograms -> print one JSON object on stdout.
 *
 * Engines:
 *   epoll  (default) recv/send syscalls per readiness event.  On loopback
 *          the kernel's TCP path dominates the cost of a request, and epoll
 *          keeps the generator independent of the io_uring machinery that
 *          the loop under test uses.
 *   uring  one SEND and one RECV per connection in flight, all of a
 *          thread's submissions and completions batched into one
 *          io_uring_enter per turn; raw syscalls, no liburing.
 *   --spin polls without sleeping; only for a CPU of its own.  It then
 *          measures its own headroom: busy_frac is the share of the
 *          measured window spent handling completions rather than finding
 *          none (a generator near 1.0 is the bottleneck; one at 0.3 could
 *          drive about three times the load).
 *
 * Modes:
 *   echo  TCP; send SIZE bytes, wait for exactly SIZE bytes back.
 *   http  TCP; send one HTTP/1.1 GET, wait for one full response framed by
 *         Content-Length; the status must be 200 and the connection must
 *         stay open (keep-alive).
 *   udp   connected UDP socket; send one SIZE-byte datagram, wait for the
 *         echo.  A datagram that is not answered within --udp-timeout-ms is
 *         counted as a timeout and sent again (loss is not an echo error).
 *
 * Invariants:
 *   - Only requests completed inside the measured window count; every one
 *     of them lands in the latency histogram (log-linear buckets with 32
 *     sub-buckets per power of two, so a reported percentile is within ~3%).
 *   - Anything unexpected on a connection (short or extra bytes, a bad
 *     status line, missing framing, an early close, a content mismatch when
 *     --verify is on) counts as an error and retires that connection; the
 *     run carries on with the others and reports the error kinds.
 *   - Each request's first 8 bytes carry a sequence number (when SIZE >= 8),
 *     so --verify catches stale or reordered data and UDP can tell a late
 *     reply from the current one.
 *   - uring: a buffer handed to the kernel is never reused or freed while
 *     its operation is in flight (one SEND and one RECV per connection at
 *     most; the next request waits for the previous SEND's completion).
 *
 * Build: cc -O2 -pthread -o loadgen loadgen.c   (Linux only)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/io_uring.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_ECHO, MODE_HTTP, MODE_UDP };
enum engine { ENGINE_AUTO, ENGINE_EPOLL, ENGINE_URING };

enum err_kind {
    ERR_CLOSED,      /* peer closed or reset the connection */
    ERR_IO,          /* send/recv failed */
    ERR_SHORT_EXTRA, /* more bytes than the request asked for */
    ERR_MISMATCH,    /* --verify: echoed bytes differ from sent bytes */
    ERR_HTTP,        /* malformed or unexpected HTTP response */
    ERR_DGRAM,       /* UDP datagram of the wrong length */
    ERR_KINDS
};
static const char *err_names[ERR_KINDS] = {
    "closed", "io", "extra_bytes", "mismatch", "http", "datagram"};

/* ---- histogram ---------------------------------------------------------- */

#define SUB_BITS 5
#define SUB_COUNT (1 << SUB_BITS)
#define HIST_BUCKETS ((64 - SUB_BITS + 1) * SUB_COUNT)

static inline int hist_index(uint64_t v)
{
    if (v < 2 * SUB_COUNT)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* e >= SUB_BITS + 1 */
    return (e - SUB_BITS + 1) * SUB_COUNT +
           (int)((v >> (e - SUB_BITS)) & (SUB_COUNT - 1));
}

/* Midpoint of a bucket, in the histogram's unit (ns). */
static double hist_value(int idx)
{
    if (idx < 2 * SUB_COUNT)
        return (double)idx;
    int e = idx / SUB_COUNT + SUB_BITS - 1;
    int sub = idx % SUB_COUNT;
    double lo = (double)((uint64_t)(SUB_COUNT + sub) << (e - SUB_BITS));
    double width = (double)((uint64_t)1 << (e - SUB_BITS));
    return lo + width / 2.0;
}

/* ---- options ------------------------------------------------------------ */

static struct {
    const char *host;
    int port;
    enum mode mode;
    int conns;
    size_t size;
    double duration;
    double warmup;
    int threads;
    int cpus[256];
    int ncpus;
    int verify;
    long max_requests; /* per connection; 0 = unlimited */
    int udp_timeout_ms;
    int spin;          /* poll without sleeping (dedicated core) */
    enum engine engine;
} opt = {
    .host = "127.0.0.1",
    .port = 0,
    .mode = MODE_ECHO,
    .conns = 10,
    .size = 1024,
    .duration = 5.0,
    .warmup = 1.0,
    .threads = 0,
    .ncpus = 0,
    .verify = 0,
    .max_requests = 0,
    .udp_timeout_ms = 200,
    .spin = 0,
    .engine = ENGINE_EPOLL,
};

static uint64_t t_measure_start, t_end;

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#include "loadgen_uring.h"

/* ---- connections -------------------------------------------------------- */

enum { OP_SEND = 1, OP_RECV = 2 };

struct conn {
    int fd;
    int id;
    int alive;
    int want_out;        /* epoll: waiting for EPOLLOUT */
    int send_inflight;   /* uring: a SEND is submitted */
    int recv_inflight;   /* uring: a RECV is submitted */
    int start_deferred;  /* uring: next request waits for the SEND CQE */
    uint64_t seq;
    uint64_t t_start;
    long done;           /* completed requests (whole run) */
    unsigned char *sbuf; /* request bytes */
    size_t slen;
    size_t sent;
    unsigned char *rbuf; /* response bytes (verify / http / udp) */
    size_t rcap;
    size_t got;
    size_t expect;       /* bytes expected for the current response */
    int hdr_done;        /* http: header parsed, expect is final */
} __attribute__((aligned(8)));

struct worker {
    pthread_t tid;
    int index;
    int cpu;             /* -1: not pinned */
    int ep;
    struct uring ring;
    int ring_error;
    struct conn **conns;
    int nconns;
    int alive;
    unsigned char *scratch;
    size_t scratch_len;
    /* results */
    uint64_t hist[HIST_BUCKETS];
    uint64_t measured;
    uint64_t total;
    uint64_t lat_sum;
    uint64_t lat_max;
    uint64_t bytes;
    uint64_t errors[ERR_KINDS];
    uint64_t timeouts;
    uint64_t stale;
    uint64_t idle_ns;    /* measured window: polls that found nothing */
    uint64_t t_finish;
    char first_error[200];
};

static const char http_request_fmt[] =
    "GET / HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: ringline-loadgen\r\n"
    "Accept: */*\r\n\r\n";

static void conn_close(struct worker *w, struct conn *c)
{
    if (!c->alive)
        return;
    c->alive = 0;
    w->alive--;
    if (opt.engine == ENGINE_EPOLL) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    } else {
        /* in-flight ops hold the socket; shutting it down completes them */
        shutdown(c->fd, SHUT_RDWR);
    }
    close(c->fd);
    c->fd = -1;
}

static void conn_fail(struct worker *w, struct conn *c, enum err_kind kind,
                      const char *detail)
{
    if (!c->alive)
        return;
    w->errors[kind]++;
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof w->first_error, "conn %d: %s: %s",
                 c->id, err_names[kind], detail);
    conn_close(w, c);
}

static void set_interest(struct worker *w, struct conn *c, int want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void stamp_seq(struct conn *c)
{
    if (opt.mode != MODE_HTTP && c->slen >= 8)
        memcpy(c->sbuf, &c->seq, 8);
}

/* Where the next received bytes should land. */
static void recv_target(struct worker *w, struct conn *c, unsigned char **dst,
                        size_t *room)
{
    if (opt.mode == MODE_HTTP || (opt.mode == MODE_ECHO && opt.verify)) {
        /* verify: read exactly what is owed; a surplus then shows up as a
         * mismatch of the next request (its sequence number cannot match) */
        *dst = c->rbuf + c->got;
        *room = (opt.mode == MODE_HTTP ? c->rcap : c->expect) - c->got;
    } else if (opt.mode == MODE_UDP) {
        *dst = c->rbuf;
        *room = c->rcap;
    } else {
        /* content unchecked: any buffer will do, even one shared by
         * concurrent receives */
        *dst = w->scratch;
        *room = w->scratch_len;
    }
}

/* ---- sending ------------------------------------------------------------ */

static void epoll_send(struct worker *w, struct conn *c)
{
    while (c->sent < c->slen) {
        ssize_t n = send(c->fd, c->sbuf + c->sent, c->slen - c->sent,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
            w->bytes += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (opt.mode == MODE_UDP)
                return; /* dropped locally: the timeout resends it */
            set_interest(w, c, 1);
            return;
        }
        conn_fail(w, c, n == 0 ? ERR_CLOSED : ERR_IO, strerror(errno));
        return;
    }
    if (c->want_out)
        set_interest(w, c, 0);
}

static void uring_send(struct worker *w, struct conn *c)
{
    if (c->send_inflight || c->sent >= c->slen)
        return;
    struct io_uring_sqe *sqe = uring_sqe(&w->ring);
    if (!sqe) {
        conn_fail(w, c, ERR_IO, "submission queue full");
        return;
    }
    sqe->opcode = IORING_OP_SEND;
    sqe->fd = c->fd;
    sqe->addr = (uint64_t)(uintptr_t)(c->sbuf + c->sent);
    sqe->len = (uint32_t)(c->slen - c->sent);
    sqe->msg_flags = MSG_NOSIGNAL;
    sqe->user_data = (uint64_t)(uintptr_t)c | OP_SEND;
    c->send_inflight = 1;
}

static void uring_recv(struct worker *w, struct conn *c)
{
    if (c->recv_inflight || !c->alive)
        return;
    unsigned char *dst;
    size_t room;
    recv_target(w, c, &dst, &room);
    if (room == 0)
        return; /* armed again once the next request starts */
    struct io_uring_sqe *sqe = uring_sqe(&w->ring);
    if (!sqe) {
        conn_fail(w, c, ERR_IO, "submission queue full");
        return;
    }
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = c->fd;
    sqe->addr = (uint64_t)(uintptr_t)dst;
    sqe->len = (uint32_t)(room > 0x7fffffff ? 0x7fffffff : room);
    sqe->user_data = (uint64_t)(uintptr_t)c | OP_RECV;
    c->recv_inflight = 1;
}

static void issue_send(struct worker *w, struct conn *c)
{
    if (opt.engine == ENGINE_EPOLL)
        epoll_send(w, c);
    else
        uring_send(w, c);
}

/* ---- request cycle ------------------------------------------------------ */

static void start_request(struct worker *w, struct conn *c, uint64_t now)
{
    if (opt.max_requests && c->done >= opt.max_requests) {
        conn_close(w, c);
        return;
    }
    if (c->send_inflight) {
        /* the previous request's last SEND completion is still queued */
        c->start_deferred = 1;
        return;
    }
    c->start_deferred = 0;
    c->seq++;
    stamp_seq(c);
    c->sent = 0;
    c->got = 0;
    c->hdr_done = 0;
    c->expect = opt.mode == MODE_HTTP ? 0 : c->slen;
    c->t_start = now;
    issue_send(w, c);
    if (opt.engine == ENGINE_URING)
        uring_recv(w, c);
}

static void complete_request(struct worker *w, struct conn *c)
{
    uint64_t now = now_ns();
    c->done++;
    w->total++;
    if (now >= t_measure_start && now < t_end) {
        uint64_t lat = now - c->t_start;
        w->hist[hist_index(lat)]++;
        w->measured++;
        w->lat_sum += lat;
        if (lat > w->lat_max)
            w->lat_max = lat;
    }
    start_request(w, c, now);
}

/* ---- http --------------------------------------------------------------- */

static int header_is(const char *line, size_t len, const char *name)
{
    size_t nl = strlen(name);
    return len > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0;
}

/* Parse status line and headers in rbuf[0..hdr_len).  Returns NULL on
 * success (and sets c->expect), else a description of the problem. */
static const char *parse_http_head(struct conn *c, size_t hdr_len)
{
    const char *p = (const char *)c->rbuf;
    const char *end = p + hdr_len;
    if (hdr_len < 12 || memcmp(p, "HTTP/1.1 ", 9) != 0)
        return "status line is not HTTP/1.1";
    if (memcmp(p + 9, "200", 3) != 0 || (p[12] != ' ' && p[12] != '\r'))
        return "status is not 200";
    const char *line = memchr(p, '\n', hdr_len);
    if (!line)
        return "no line end";
    line++;
    long content_length = -1;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        size_t len = (size_t)(eol - line);
        if (len && line[len - 1] == '\r')
            len--;
        if (len == 0)
            break;
        if (header_is(line, len, "content-length")) {
            const char *v = line + 15;
            while (v < line + len && (*v == ' ' || *v == '\t'))
                v++;
            char *stop;
            long cl = strtol(v, &stop, 10);
            if (stop == v || cl < 0)
                return "bad Content-Length";
            if (content_length >= 0 && cl != content_length)
                return "conflicting Content-Length";
            content_length = cl;
        } else if (header_is(line, len, "transfer-encoding")) {
            return "Transfer-Encoding not expected";
        } else if (header_is(line, len, "connection")) {
            const char *v = line + 11;
            while (v < line + len && (*v == ' ' || *v == '\t'))
                v++;
            if ((size_t)(line + len - v) >= 5 && strncasecmp(v, "close", 5) == 0)
                return "server closes the keep-alive connection";
        }
        line = eol + 1;
    }
    if (content_length < 0)
        return "no Content-Length";
    c->expect = hdr_len + (size_t)content_length;
    return NULL;
}

/* ---- receiving: the same accounting for both engines -------------------- */

/* n > 0 bytes arrived at dst (from recv_target).  Returns 1 when the current
 * request completed (the next one has been started), 0 when more bytes are
 * owed, -1 when the connection failed. */
static int consume(struct worker *w, struct conn *c, unsigned char *dst, size_t n)
{
    w->bytes += n;
    if (opt.mode == MODE_UDP) {
        if (n != c->slen) {
            conn_fail(w, c, ERR_DGRAM, "datagram length differs");
            return -1;
        }
        if (c->slen >= 8) {
            uint64_t seq;
            memcpy(&seq, dst, 8);
            if (seq != c->seq) {
                w->stale++; /* answer to a request we already resent */
                return 0;
            }
        }
        if (opt.verify && memcmp(dst, c->sbuf, c->slen) != 0) {
            conn_fail(w, c, ERR_MISMATCH, "echoed datagram differs");
            return -1;
        }
        complete_request(w, c);
        return 1;
    }
    size_t before = c->got;
    c->got += n;
    if (opt.mode == MODE_HTTP && !c->hdr_done) {
        size_t from = before >= 3 ? before - 3 : 0;
        unsigned char *hit = memmem(c->rbuf + from, c->got - from, "\r\n\r\n", 4);
        if (!hit) {
            if (c->got == c->rcap) {
                conn_fail(w, c, ERR_HTTP, "response header too large");
                return -1;
            }
            return 0;
        }
        const char *why = parse_http_head(c, (size_t)(hit - c->rbuf) + 4);
        if (why) {
            conn_fail(w, c, ERR_HTTP, why);
            return -1;
        }
        if (c->expect > c->rcap) {
            conn_fail(w, c, ERR_HTTP, "response larger than buffer");
            return -1;
        }
        c->hdr_done = 1;
    }
    if (c->got > c->expect) {
        conn_fail(w, c, ERR_SHORT_EXTRA,
                  opt.mode == MODE_HTTP ? "bytes after the response"
                                        : "more bytes than sent");
        return -1;
    }
    if (c->got < c->expect)
        return 0;
    if (opt.mode == MODE_ECHO && opt.verify &&
        memcmp(c->rbuf, c->sbuf, c->slen) != 0) {
        conn_fail(w, c, ERR_MISMATCH, "echoed bytes differ");
        return -1;
    }
    complete_request(w, c);
    return 1;
}

static void epoll_readable(struct worker *w, struct conn *c)
{
    while (c->alive) {
        unsigned char *dst;
        size_t room;
        recv_target(w, c, &dst, &room);
        if (room == 0) {
            conn_fail(w, c, ERR_SHORT_EXTRA, "data with no request out");
            return;
        }
        ssize_t n = recv(c->fd, dst, room, 0);
        if (n > 0) {
            int r = consume(w, c, dst, (size_t)n);
            if (r != 0 && opt.mode != MODE_UDP)
                return; /* done (the echo of the next one is not here yet) */
            continue;
        }
        if (n == 0 && opt.mode != MODE_UDP) {
            conn_fail(w, c, ERR_CLOSED, "closed by server");
            return;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == ECONNREFUSED) {
            conn_fail(w, c, ERR_CLOSED, "connection refused");
            return;
        }
        conn_fail(w, c, ERR_IO, n < 0 ? strerror(errno) : "empty datagram");
        return;
    }
}

static void udp_check_timeouts(struct worker *w, uint64_t now)
{
    uint64_t limit = (uint64_t)opt.udp_timeout_ms * 1000000ull;
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = w->conns[i];
        if (c->alive && !c->send_inflight && now - c->t_start > limit) {
            w->timeouts++;
            c->seq++;
            stamp_seq(c);
            c->sent = 0;
            c->t_start = now;
            issue_send(w, c);
        }
    }
}

/* ---- completions (uring) ------------------------------------------------ */

static void uring_completion(struct worker *w, uint64_t user_data, int res)
{
    struct conn *c = (struct conn *)(uintptr_t)(user_data & ~(uint64_t)7);
    int op = (int)(user_data & 7);
    if (op == OP_SEND) {
        c->send_inflight = 0;
        if (!c->alive)
            return;
        if (res < 0) {
            if (res == -EINTR || res == -EAGAIN) {
                uring_send(w, c);
                return;
            }
            conn_fail(w, c, res == -EPIPE || res == -ECONNRESET ? ERR_CLOSED : ERR_IO,
                      strerror(-res));
            return;
        }
        c->sent += (size_t)res;
        w->bytes += (uint64_t)res;
        if (c->sent < c->slen)
            uring_send(w, c);
        else if (c->start_deferred)
            start_request(w, c, now_ns());
        return;
    }
    c->recv_inflight = 0;
    if (!c->alive)
        return;
    if (res > 0) {
        unsigned char *dst;
        size_t room;
        recv_target(w, c, &dst, &room);
        consume(w, c, dst, (size_t)res);
        uring_recv(w, c);
        return;
    }
    if (res == 0 && opt.mode != MODE_UDP) {
        conn_fail(w, c, ERR_CLOSED, "closed by server");
        return;
    }
    if (res == -EINTR || res == -EAGAIN || res == -ENOBUFS || res == 0) {
        uring_recv(w, c);
        return;
    }
    conn_fail(w, c, res == -ECONNREFUSED || res == -ECONNRESET ? ERR_CLOSED : ERR_IO,
              strerror(-res));
}

static int uring_reap(struct worker *w)
{
    struct uring *r = &w->ring;
    unsigned head = *r->cq_head;
    unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    int n = 0;
    while (head != tail) {
        struct io_uring_cqe *cqe = &r->cqes[head & *r->cq_mask];
        uint64_t ud = cqe->user_data;
        int res = cqe->res;
        head++;
        __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
        uring_completion(w, ud, res);
        n++;
        if (head == tail)
            tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    }
    return n;
}

/* ---- worker thread ------------------------------------------------------ */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    if (opt.engine == ENGINE_URING) {
        /* created here: a SINGLE_ISSUER ring belongs to its creating thread */
        unsigned entries = 64;
        while (entries < 2u * (unsigned)w->nconns + 16u && entries < 32768u)
            entries *= 2;
        int ret = uring_setup(&w->ring, entries);
        if (ret < 0) {
            w->ring_error = -ret;
            w->t_finish = now_ns();
            return NULL;
        }
    }
    struct epoll_event evs[512];
    uint64_t now = now_ns();
    for (int i = 0; i < w->nconns; i++)
        start_request(w, w->conns[i], now);
    uint64_t next_udp_check = now + 10000000ull;

    while (w->alive > 0) {
        now = now_ns();
        if (now >= t_end)
            break;
        long wait_ns = (long)(t_end - now);
        if (wait_ns > 20000000L)
            wait_ns = 20000000L;
        int handled;
        if (opt.engine == ENGINE_URING) {
            int ret = uring_enter(&w->ring, opt.spin ? 0 : 1, wait_ns);
            if (ret < 0) {
                w->ring_error = -ret;
                break;
            }
            handled = uring_reap(w);
        } else {
            int timeout_ms = opt.spin ? 0 : (int)(wait_ns / 1000000L) + 1;
            int n = epoll_wait(w->ep, evs, 512, timeout_ms);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                perror("epoll_wait");
                break;
            }
            for (int i = 0; i < n; i++) {
                struct conn *c = evs[i].data.ptr;
                uint32_t e = evs[i].events;
                if (!c->alive)
                    continue;
                if ((e & EPOLLOUT) && c->sent < c->slen)
                    epoll_send(w, c);
                if (c->alive && (e & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                    epoll_readable(w, c);
            }
            handled = n;
        }
        if (!handled && opt.spin && now >= t_measure_start)
            w->idle_ns += now_ns() - now;
        if (opt.mode == MODE_UDP) {
            now = now_ns();
            if (now >= next_udp_check) {
                udp_check_timeouts(w, now);
                next_udp_check = now + 10000000ull;
            }
        }
    }
    w->t_finish = now_ns();
    return NULL;
}

#include "loadgen_setup.h"

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},
        {"mode", required_argument, 0, 'm'},
        {"conns", required_argument, 0, 'c'},
        {"size", required_argument, 0, 's'},
        {"duration", required_argument, 0, 'd'},
        {"warmup", required_argument, 0, 'w'},
        {"threads", required_argument, 0, 't'},
        {"cpus", required_argument, 0, 'a'},
        {"requests", required_argument, 0, 'n'},
        {"verify", no_argument, 0, 'V'},
        {"udp-timeout-ms", required_argument, 0, 'U'},
        {"spin", no_argument, 0, 'S'},
        {"engine", required_argument, 0, 'e'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "H:p:m:c:s:d:w:t:a:n:Ve:h", longopts,
                             NULL)) != -1) {
        switch (ch) {
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'm':
            if (!strcmp(optarg, "echo")) opt.mode = MODE_ECHO;
            else if (!strcmp(optarg, "http")) opt.mode = MODE_HTTP;
            else if (!strcmp(optarg, "udp")) opt.mode = MODE_UDP;
            else { usage(stderr); return 2; }
            break;
        case 'c': opt.conns = atoi(optarg); break;
        case 's': opt.size = parse_size(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 't': opt.threads = atoi(optarg); break;
        case 'a':
            if (parse_cpus(optarg) < 0) { usage(stderr); return 2; }
            break;
        case 'n': opt.max_requests = atol(optarg); break;
        case 'V': opt.verify = 1; break;
        case 'U': opt.udp_timeout_ms = atoi(optarg); break;
        case 'S': opt.spin = 1; break;
        case 'e':
            if (!strcmp(optarg, "uring")) opt.engine = ENGINE_URING;
            else if (!strcmp(optarg, "epoll")) opt.engine = ENGINE_EPOLL;
            else { usage(stderr); return 2; }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.duration <= 0 ||
        opt.warmup < 0 || (opt.mode != MODE_HTTP && opt.size == 0)) {
        usage(stderr);
        return 2;
    }
    if (opt.mode == MODE_UDP && opt.size > 65507) {
        json_error("udp size above 65507 bytes");
        return 2;
    }
    if (opt.engine != ENGINE_EPOLL) {
        struct uring probe;
        int ret = uring_setup(&probe, 8);
        if (ret == 0) {
            close(probe.fd);
            opt.engine = ENGINE_URING;
        } else if (opt.engine == ENGINE_URING) {
            char why[128];
            snprintf(why, sizeof why, "io_uring unavailable: %s", strerror(-ret));
            json_error(why);
            return 2;
        } else {
            opt.engine = ENGINE_EPOLL;
        }
    }
    if (opt.threads <= 0)
        opt.threads = opt.ncpus > 0 ? opt.ncpus : 1;
    if (opt.threads > opt.conns)
        opt.threads = opt.conns;

    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
        json_error("host must be an IPv4 address");
        return 2;
    }

    struct worker *workers = calloc((size_t)opt.threads, sizeof *workers);
    struct conn *conns = calloc((size_t)opt.conns, sizeof *conns);
    char http_req[512];
    int http_len = snprintf(http_req, sizeof http_req, http_request_fmt,
                            opt.host, opt.port);
    for (int t = 0; t < opt.threads; t++) {
        struct worker *w = &workers[t];
        w->index = t;
        w->cpu = opt.ncpus ? opt.cpus[t % opt.ncpus] : -1;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->conns = calloc((size_t)opt.conns / (size_t)opt.threads + 1,
                          sizeof *w->conns);
        w->scratch_len = opt.mode == MODE_UDP ? 65536 : 262144;
        w->scratch = malloc(w->scratch_len);
    }
    for (int i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        struct worker *w = &workers[i % opt.threads];
        char why[256];
        c->id = i;
        c->fd = open_conn(&addr, why, sizeof why);
        if (c->fd < 0) {
            json_error(why);
            return 1;
        }
        if (opt.mode == MODE_HTTP) {
            c->slen = (size_t)http_len;
            c->sbuf = (unsigned char *)strdup(http_req);
            c->rcap = 65536;
        } else {
            c->slen = opt.size;
            c->sbuf = malloc(c->slen);
            for (size_t k = 0; k < c->slen; k++)
                c->sbuf[k] = (unsigned char)((k * 7 + (size_t)i * 13 + 1) & 0xff);
            c->rcap = opt.mode == MODE_UDP ? c->slen + 1 /* catch oversize */
                      : opt.verify          ? c->slen
                                            : 0;
        }
        if (c->rcap)
            c->rbuf = malloc(c->rcap);
        c->alive = 1;
        if (opt.engine == ENGINE_EPOLL) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev);
        }
        w->conns[w->nconns++] = c;
        w->alive++;
    }

    uint64_t t0 = now_ns();
    t_measure_start = t0 + (uint64_t)(opt.warmup * 1e9);
    t_end = t_measure_start + (uint64_t)(opt.duration * 1e9);
    for (int t = 0; t < opt.threads; t++)
        pthread_create(&workers[t].tid, NULL, worker_main, &workers[t]);
    for (int t = 0; t < opt.threads; t++)
        pthread_join(workers[t].tid, NULL);

    /* merge */
    static uint64_t hist[HIST_BUCKETS];
    uint64_t measured = 0, total = 0, lat_sum = 0, lat_max = 0, bytes = 0;
    uint64_t errors[ERR_KINDS] = {0}, err_total = 0, timeouts = 0, stale = 0;
    uint64_t finish = t_measure_start, idle_ns = 0;
    int alive = 0, ring_error = 0;
    const char *first_error = "";
    for (int t = 0; t < opt.threads; t++) {
        struct worker *w = &workers[t];
        for (int b = 0; b < HIST_BUCKETS; b++)
            hist[b] += w->hist[b];
        measured += w->measured;
        total += w->total;
        lat_sum += w->lat_sum;
        if (w->lat_max > lat_max)
            lat_max = w->lat_max;
        bytes += w->bytes;
        for (int k = 0; k < ERR_KINDS; k++) {
            errors[k] += w->errors[k];
            err_total += w->errors[k];
        }
        timeouts += w->timeouts;
        idle_ns += w->idle_ns;
        if (w->ring_error)
            ring_error = w->ring_error;
        stale += w->stale;
        alive += w->alive;
        if (w->t_finish > finish)
            finish = w->t_finish;
        if (!first_error[0] && w->first_error[0])
            first_error = w->first_error;
    }
    if (finish > t_end)
        finish = t_end;
    double measured_s = finish > t_measure_start
                            ? (double)(finish - t_measure_start) / 1e9
                            : 0.0;

    if (ring_error) {
        char why[128];
        snprintf(why, sizeof why, "io_uring setup in a worker failed: %s",
                 strerror(ring_error));
        json_error(why);
        return 1;
    }
    double busy = measured_s > 0 && opt.spin
                      ? 1.0 - (double)idle_ns / 1e9 / (measured_s * opt.threads)
                      : -1.0;

    static const double pcts[] = {0.50, 0.90, 0.99, 0.999};
    static const char *pct_names[] = {"p50", "p90", "p99", "p999"};
    double pct_us[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4 && measured; k++) {
        uint64_t rank = (uint64_t)(pcts[k] * (double)measured + 0.999999);
        if (rank < 1)
            rank = 1;
        uint64_t cum = 0;
        for (int b = 0; b < HIST_BUCKETS; b++) {
            cum += hist[b];
            if (cum >= rank) {
                double v = hist_value(b);
                if (v > (double)lat_max) /* a bucket's midpoint can pass the max */
                    v = (double)lat_max;
                pct_us[k] = v / 1000.0;
                break;
            }
        }
    }

    const char *mode_name = opt.mode == MODE_ECHO   ? "echo"
                            : opt.mode == MODE_HTTP ? "http"
                                                    : "udp";
    printf("{\"mode\": \"%s\", \"conns\": %d, \"size\": %zu, \"threads\": %d, "
           "\"verify\": %s, \"engine\": \"%s\", \"spin\": %s, ",
           mode_name, opt.conns, opt.mode == MODE_HTTP ? (size_t)0 : opt.size,
           opt.threads, opt.verify ? "true" : "false",
           opt.engine == ENGINE_URING ? "uring" : "epoll",
           opt.spin ? "true" : "false");
    if (busy >= 0)
        printf("\"busy_frac\": %.3f, ", busy < 0 ? 0.0 : busy);
    printf("\"duration_s\": %.6f, \"requests\": %llu, \"requests_total\": %llu, "
           "\"rps\": %.1f, \"bytes_total\": %llu, ",
           measured_s, (unsigned long long)measured, (unsigned long long)total,
           measured_s > 0 ? (double)measured / measured_s : 0.0,
           (unsigned long long)bytes);
    printf("\"errors\": %llu, \"error_kinds\": {", (unsigned long long)err_total);
    int first = 1;
    for (int k = 0; k < ERR_KINDS; k++) {
        if (!errors[k])
            continue;
        printf("%s\"%s\": %llu", first ? "" : ", ", err_names[k],
               (unsigned long long)errors[k]);
        first = 0;
    }
    printf("}, \"first_error\": ");
    print_json_string(first_error);
    printf(", \"timeouts\": %llu, \"stale\": %llu, \"conns_alive\": %d, ",
           (unsigned long long)timeouts, (unsigned long long)stale, alive);
    printf("\"lat_us\": {");
    for (int k = 0; k < 4; k++)
        printf("\"%s\": %.1f, ", pct_names[k], pct_us[k]);
    printf("\"mean\": %.1f, \"max\": %.1f}}\n",
           measured ? (double)lat_sum / (double)measured / 1000.0 : 0.0,
           (double)lat_max / 1000.0);
    fflush(stdout);
    return 0;
}
