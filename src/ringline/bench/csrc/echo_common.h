/*
 * echo_common.h -- what the two C reference servers share: echo_server.c
 * (epoll) and uring_echo_server.c (io_uring) each include it (one
 * translation unit each; every definition is static).
 *
 * Owns: the modes and the fixed HTTP response, the CRLFCRLF request
 * counter, the command line (struct echo_opts, echo_options: --host,
 * --port, --mode, --cpu and, on epoll only, --spin and --mode udp; it also
 * pins the CPU), the listening socket (echo_listen) and the "READY <port>"
 * line the harness waits for (echo_ready).
 *
 * Invariants: a bad command line exits with status 2, a socket that cannot
 * be bound or listened on with status 1 (after perror); only the address
 * given by --host (an IPv4 address, 127.0.0.1 by default) is ever bound.
 */
#ifndef ECHO_COMMON_H
#define ECHO_COMMON_H

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum mode { MODE_ECHO, MODE_HTTP, MODE_UDP };

static const char http_response[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
    "\r\nHello, World!";

struct echo_opts {
    const char *host;
    int port, cpu, spin;
    enum mode mode;
};

/* How many requests (header blocks ending in CRLFCRLF) end in p[0..n);
 * *match carries how much of CRLFCRLF the input seen so far ends with. */
static int count_requests(int *match, const char *p, size_t n)
{
    static const char pat[4] = {'\r', '\n', '\r', '\n'};
    int count = 0, m = *match;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == pat[m]) {
            if (++m == 4) {
                count++;
                m = 0;
            }
        } else {
            m = p[i] == '\r' ? 1 : 0;
        }
    }
    *match = m;
    return count;
}

/* The command line of either server into *o (uring: the io_uring one,
 * which refuses --spin and --mode udp); then pins the process to --cpu. */
static void echo_options(int argc, char **argv, int uring, struct echo_opts *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'}, {"port", required_argument, 0, 'p'},
        {"mode", required_argument, 0, 'm'}, {"cpu", required_argument, 0, 'a'},
        {"spin", no_argument, 0, 'S'}, {0, 0, 0, 0}};
    int ch;
    *o = (struct echo_opts){.host = "127.0.0.1", .cpu = -1, .mode = MODE_ECHO};
    while ((ch = getopt_long(argc, argv, "H:p:m:a:S", longopts, NULL)) != -1) {
        switch (ch) {
        case 'H': o->host = optarg; break;
        case 'p': o->port = atoi(optarg); break;
        case 'a': o->cpu = atoi(optarg); break;
        case 'S':
            if (uring)
                goto usage;
            o->spin = 1;
            break;
        case 'm':
            if (!strcmp(optarg, "echo")) o->mode = MODE_ECHO;
            else if (!strcmp(optarg, "http")) o->mode = MODE_HTTP;
            else if (!strcmp(optarg, "udp") && !uring) o->mode = MODE_UDP;
            else {
                if (uring)
                    fprintf(stderr, "mode %s: only echo and http run on io_uring\n",
                            optarg);
                exit(2);
            }
            break;
        default:
            goto usage;
        }
    }
    if (o->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(o->cpu, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    return;
usage:
    fprintf(stderr, uring ? "usage: uring_echo_server [--host A] [--port P] "
                            "[--mode echo|http] [--cpu N]\n"
                          : "usage: echo_server [--host A] [--port P] "
                            "[--mode echo|http|udp] [--cpu N] [--spin]\n");
    exit(2);
}

/* The server's socket on --host:--port (TCP listening, or UDP for --mode
 * udp), created with the extra socket type flags (SOCK_NONBLOCK or 0). */
static int echo_listen(const struct echo_opts *o, int type_flags)
{
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((unsigned short)o->port)};
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1) {
        fprintf(stderr, "host must be an IPv4 address\n");
        exit(2);
    }
    int udp = o->mode == MODE_UDP;
    int fd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | type_flags, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (udp) {
        int sz = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        (!udp && listen(fd, 4096) < 0)) {
        perror("bind/listen");
        exit(1);
    }
    return fd;
}

/* Tell the harness the server is serving: "READY <port>" on stdout. */
static void echo_ready(int fd)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &alen);
    printf("READY %d\n", ntohs(addr.sin_port));
    fflush(stdout);
}

#endif /* ECHO_COMMON_H */
