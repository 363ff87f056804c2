/*
 * echo_server.c -- the physical reference server for ringline's benchmarks.
 *
 * Owns: one single-threaded epoll server that answers as cheaply as the
 * kernel allows.  It exists to prove the load generator is never the
 * bottleneck (the generator must drive it to >= 3x the best Python server),
 * and to show what the machine can do without an interpreter in the way.
 *
 * Modes:
 *   echo  TCP: write back every byte read.
 *   http  TCP: answer every request (a header block ending in CRLFCRLF;
 *         requests carry no body) with one fixed keep-alive response.
 *   udp   UDP: send every datagram back to its sender.
 *
 * --spin polls epoll without sleeping (for a CPU of its own), to see how
 * far the generator goes when the server never needs waking.
 *
 * Lifecycle: bind + listen on HOST:PORT (PORT 0 = ephemeral) -> print
 * "READY <port>" on stdout -> serve until SIGTERM/SIGINT or until stdin
 * reaches end of file (so a dead harness never leaves it running).
 *
 * Invariants: a connection whose peer stops reading is never read from
 * again until its pending output is flushed (bounded memory per connection);
 * every fd is closed exactly once.
 *
 * The modes, the command line and the listening socket are echo_common.h's
 * (shared with uring_echo_server.c).
 *
 * Build: cc -O2 -o echo_server echo_server.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "echo_common.h"

struct conn {
    int fd;
    int match;        /* http: how much of CRLFCRLF the input ends with */
    char *out;        /* pending output */
    size_t out_len, out_off, out_cap;
};

static int ep;
static struct echo_opts opt;
static char buf[1 << 18];

static void conn_close(struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->out);
    free(c);
}

static void watch(struct conn *c, int op, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, op, c->fd, &ev);
}

/* Queue bytes that could not be written now; switch to waiting for POLLOUT. */
static void keep(struct conn *c, const char *data, size_t len)
{
    size_t pending = c->out_len - c->out_off;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, pending);
        c->out_off = 0;
        c->out_len = pending;
    }
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    if (pending == 0)
        watch(c, EPOLL_CTL_MOD, EPOLLOUT);
}

/* Write data (after anything already pending).  Returns -1 if c was closed. */
static int emit(struct conn *c, const char *data, size_t len)
{
    if (c->out_len > c->out_off) {
        keep(c, data, len);
        return 0;
    }
    while (len) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            keep(c, data, len);
            return 0;
        } else {
            conn_close(c);
            return -1;
        }
    }
    return 0;
}

static void on_writable(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            conn_close(c);
            return;
        }
    }
    c->out_off = c->out_len = 0;
    watch(c, EPOLL_CTL_MOD, EPOLLIN);
}

static void on_readable(struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (opt.mode == MODE_ECHO) {
                if (emit(c, buf, (size_t)n) < 0)
                    return;
            } else {
                int k = count_requests(&c->match, buf, (size_t)n);
                for (int i = 0; i < k; i++)
                    if (emit(c, http_response, sizeof http_response - 1) < 0)
                        return;
            }
            if (c->out_len > c->out_off)
                return; /* stop reading until the peer drains */
            if ((size_t)n < sizeof buf)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c);
        return;
    }
}

static void on_udp(int fd)
{
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer,
                             &plen);
        if (n < 0)
            return;
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen);
    }
}

int main(int argc, char **argv)
{
    echo_options(argc, argv, 0, &opt);
    int udp = opt.mode == MODE_UDP;
    int lfd = echo_listen(&opt, SOCK_NONBLOCK);
    int one = 1;

    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    int stdin_watch = 0;
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &stdin_watch};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev); /* fails harmlessly on a tty/file */

    echo_ready(lfd);

    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, opt.spin ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &stdin_watch) {
                char tmp[64];
                if (read(0, tmp, sizeof tmp) <= 0)
                    return 0;
                continue;
            }
            if (p == NULL) {
                if (udp) {
                    on_udp(lfd);
                    continue;
                }
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0)
                        break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    watch(c, EPOLL_CTL_ADD, EPOLLIN);
                }
                continue;
            }
            struct conn *c = p;
            if (evs[i].events & EPOLLOUT)
                on_writable(c);
            else
                on_readable(c);
        }
    }
}
