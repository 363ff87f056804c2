/*
 * loadgen_setup.h -- part of loadgen.c, included by it at this point (one
 * translation unit: it uses the definitions that come before it there).
 * Owns: opening the connections and parsing the command line (CPU lists, sizes), usage and the JSON error line.
 */
#ifndef LOADGEN_SETUP_H
#define LOADGEN_SETUP_H

/* ---- setup -------------------------------------------------------------- */

static int open_conn(const struct sockaddr_in *addr, char *why, size_t whylen)
{
    int type = opt.mode == MODE_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return -1;
    }
    if (type == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    } else {
        int buf = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    }
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
        snprintf(why, whylen, "connect %s:%d: %s", opt.host, opt.port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    return fd;
}

static int parse_cpus(const char *s)
{
    opt.ncpus = 0;
    while (*s) {
        char *stop;
        long a = strtol(s, &stop, 10);
        if (stop == s)
            return -1;
        long b = a;
        s = stop;
        if (*s == '-') {
            s++;
            b = strtol(s, &stop, 10);
            if (stop == s)
                return -1;
            s = stop;
        }
        for (long i = a; i <= b && opt.ncpus < 256; i++)
            opt.cpus[opt.ncpus++] = (int)i;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return 0;
}

static size_t parse_size(const char *s)
{
    char *stop;
    double v = strtod(s, &stop);
    if (*stop == 'k' || *stop == 'K')
        v *= 1024;
    else if (*stop == 'm' || *stop == 'M')
        v *= 1024 * 1024;
    return (size_t)v;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen [options]\n"
            "  -H, --host ADDR         server IPv4 address (127.0.0.1)\n"
            "  -p, --port PORT         server port (required)\n"
            "  -m, --mode MODE         echo | http | udp (echo)\n"
            "  -c, --conns N           connections (10)\n"
            "  -s, --size BYTES        message size for echo/udp (1024; K/M ok)\n"
            "  -d, --duration SECS     measured duration (5)\n"
            "  -w, --warmup SECS       unmeasured lead-in (1)\n"
            "  -t, --threads N         threads (one per CPU in --cpus, else 1)\n"
            "  -a, --cpus LIST         pin threads round-robin, e.g. 1 or 2-3\n"
            "  -n, --requests N        stop each connection after N requests\n"
            "  -V, --verify            compare echoed bytes with sent bytes\n"
            "      --udp-timeout-ms N  resend an unanswered datagram (200)\n"
            "      --spin              busy-poll instead of sleeping in the kernel\n"
            "                          (use only on a core of its own)\n"
            "  -e, --engine E          epoll | uring (epoll)\n");
}

static void json_error(const char *msg)
{
    printf("{\"error\": \"");
    for (const char *p = msg; *p; p++) {
        if (*p == '"' || *p == '\\')
            putchar('\\');
        putchar(*p);
    }
    printf("\"}\n");
    fflush(stdout);
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

#endif /* LOADGEN_SETUP_H */
