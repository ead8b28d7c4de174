/*
 * loadgen.c -- a small single-threaded epoll load generator for echo servers.
 *
 *   loadgen pingpong PORT [-c CONNS] [-s SIZE] [-d SECONDS] [-n COUNT]
 *       CONNS connections (default 64); each sends a SIZE-byte message
 *       (default 64), waits for the whole echo, and repeats, for SECONDS
 *       (default 5) or until COUNT messages in all. Prints
 *       "RESULT msgs=.. secs=.. rate=.. p50_us=.. p99_us=.. errors=.."
 *
 *   loadgen bulk PORT [-b BYTES] [-k CHUNK] [-t SECONDS]
 *       one connection; sends BYTES (default 2 GiB) in CHUNK-byte writes
 *       (default 64 KiB) while reading the echo concurrently; done when the
 *       whole echo is back, or fails after SECONDS (default 120) or 10 s
 *       without progress. Prints
 *       "RESULT bytes=.. secs=.. gbps=.."   (GB = 1e9 bytes)
 *
 *   loadgen idle PORT [-c CONNS] [-t SECONDS] [-H HOLD] [-V]
 *       opens CONNS connections (default 10000, within SECONDS, default 60,
 *       and failing after 10 s without progress),
 *       then (unless -V) sends one byte on each and waits for every echo, so
 *       the server has really accepted and served each one. Prints
 *       "READY conns=N", then holds them until SIGTERM/SIGINT/SIGUSR1, a line
 *       or EOF on stdin (when stdin is a pipe or a tty), or HOLD seconds
 *       (default 300); closes them all (with RST, so no TIME_WAIT piles up)
 *       and prints "DONE". On failure prints "FAIL ..." and exits 1.
 *
 * The server is always 127.0.0.1:PORT. RLIMIT_NOFILE is raised as needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in target;

#define STALL 10.0 /* seconds without progress: the server is stuck, give up */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static void raise_nofile(long need) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((long)rl.rlim_cur >= need) return;
    if ((long)rl.rlim_max >= need) {
        rl.rlim_cur = (rlim_t)need;
    } else {
        rl.rlim_cur = rl.rlim_max = (rlim_t)need; /* needs root */
    }
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void set_nonblock(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int connect_blocking(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_nonblock(fd);
    return fd;
}

static void close_rst(int fd) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* ------------------------------------------------------------ pingpong */

typedef struct {
    int fd;
    size_t got;
    double sent_at;
    int alive;
} pp_conn;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int send_all(int fd, const char *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) { off += (size_t)n; continue; }
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        return -1;
    }
    return 0;
}

static int run_pingpong(int conns, size_t size, double secs, long count) {
    raise_nofile(conns + 64);
    pp_conn *cs = calloc((size_t)conns, sizeof *cs);
    char *msg = malloc(size), *rbuf = malloc(size);
    for (size_t i = 0; i < size; i++) msg[i] = (char)('a' + i % 26);
    size_t lcap = 1 << 20, lcount = 0;
    double *lat = malloc(lcap * sizeof *lat);
    long errors = 0, inflight = 0;

    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < conns; i++) {
        cs[i].fd = connect_blocking();
        cs[i].alive = 1;
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &e);
    }
    double start = now(), stop = start + secs;
    for (int i = 0; i < conns; i++) {
        cs[i].sent_at = now();
        if (send_all(cs[i].fd, msg, size) < 0) { cs[i].alive = 0; errors++; continue; }
        inflight++;
    }
    int stopping = 0;
    double end = stop;
    struct epoll_event evs[256];
    while (inflight > 0) {
        double t = now();
        if (!stopping && (t >= stop || (count > 0 && (long)lcount >= count))) {
            stopping = 1;
            end = t;
        }
        if (stopping && t > end + 2.0) break; /* stragglers: give up */
        int n = epoll_wait(ep, evs, 256, 200);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        if (n == 0 && t > stop + 10.0) break;
        for (int k = 0; k < n; k++) {
            pp_conn *c = &cs[evs[k].data.u32];
            if (!c->alive) continue;
            ssize_t r = recv(c->fd, rbuf, size - c->got, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r <= 0) {
                c->alive = 0; errors++; inflight--;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            if (memcmp(rbuf, msg + c->got, (size_t)r) != 0) errors++;
            c->got += (size_t)r;
            if (c->got < size) continue;
            double t2 = now();
            c->got = 0;
            inflight--;
            if (stopping) continue; /* finished after the end: not counted */
            if (lcount == lcap) { lcap *= 2; lat = realloc(lat, lcap * sizeof *lat); }
            lat[lcount++] = (t2 - c->sent_at) * 1e6;
            if (count > 0 && (long)lcount >= count) continue;
            c->sent_at = t2;
            if (send_all(c->fd, msg, size) < 0) { c->alive = 0; errors++; continue; }
            inflight++;
        }
    }
    if (!stopping) end = now();
    double elapsed = end - start;
    for (int i = 0; i < conns; i++) close(cs[i].fd);
    if (lcount == 0) {
        printf("FAIL no message completed errors=%ld\n", errors);
        return 1;
    }
    qsort(lat, lcount, sizeof *lat, cmp_double);
    double p50 = lat[(size_t)(0.50 * (double)(lcount - 1))];
    double p99 = lat[(size_t)(0.99 * (double)(lcount - 1))];
    printf("RESULT msgs=%zu secs=%.3f rate=%.1f p50_us=%.1f p99_us=%.1f errors=%ld\n",
           lcount, elapsed, (double)lcount / elapsed, p50, p99, errors);
    return errors ? 1 : 0;
}

/* ---------------------------------------------------------------- bulk */

static int run_bulk(long long total, size_t chunk, double limit) {
    int fd = connect_blocking();
    char *out = malloc(chunk);
    size_t inlen = 256 * 1024;
    char *in = malloc(inlen);
    for (size_t i = 0; i < chunk; i++) out[i] = (char)(i * 7 + 3);
    long long sent = 0, recvd = 0;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    double start = now(), deadline = start + limit, progress = start;
    long long last_recvd = 0;
    size_t off = 0; /* offset within the current chunk */
    int writing = 1;
    while (recvd < total) {
        double t = now();
        if (recvd != last_recvd) { last_recvd = recvd; progress = t; }
        if (t > deadline || t > progress + STALL) {
            printf("FAIL %s after %.1fs sent=%lld received=%lld\n",
                   t > deadline ? "timeout" : "stalled", t - start, sent, recvd);
            return 1;
        }
        struct epoll_event ev[2];
        int n = epoll_wait(ep, ev, 2, 200);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        if (n == 0) continue;
        if (ev[0].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            for (;;) {
                ssize_t r = recv(fd, in, inlen, 0);
                if (r > 0) { recvd += r; if ((size_t)r < inlen) break; continue; }
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && errno == EAGAIN) break;
                printf("FAIL connection lost sent=%lld received=%lld: %s\n", sent, recvd,
                       r == 0 ? "EOF" : strerror(errno));
                return 1;
            }
        }
        if (writing && (ev[0].events & EPOLLOUT)) {
            while (sent < total) {
                size_t want = chunk - off;
                if ((long long)want > total - sent) want = (size_t)(total - sent);
                ssize_t w = send(fd, out + off, want, MSG_NOSIGNAL);
                if (w > 0) {
                    sent += w; off += (size_t)w;
                    if (off == chunk) off = 0;
                    continue;
                }
                if (w < 0 && errno == EINTR) continue;
                if (w < 0 && errno == EAGAIN) break;
                printf("FAIL send sent=%lld received=%lld: %s\n", sent, recvd, strerror(errno));
                return 1;
            }
            if (sent == total) {
                writing = 0;
                struct epoll_event e2 = {.events = EPOLLIN, .data.fd = fd};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e2);
            }
        }
    }
    double secs = now() - start;
    close(fd);
    printf("RESULT bytes=%lld secs=%.3f gbps=%.3f\n", total, secs, (double)total / secs / 1e9);
    return 0;
}

/* ---------------------------------------------------------------- idle */

static int run_idle(int conns, double limit, double hold, int verify) {
    raise_nofile(conns + 64);
    int *fds = malloc((size_t)conns * sizeof *fds);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    double deadline = now() + limit;
    int started = 0, connected = 0, pending = 0, failed = 0, last_connected = 0;
    double progress = now();
    struct epoll_event evs[512];
    const int window = 256; /* connects in flight at once */

    while (connected < conns) {
        while (pending < window && started < conns) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) { printf("FAIL socket #%d: %s\n", started, strerror(errno)); return 1; }
            fds[started] = fd;
            int r = connect(fd, (struct sockaddr *)&target, sizeof target);
            if (r < 0 && errno != EINPROGRESS) { failed++; started++; continue; }
            struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)started};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
            started++;
            pending++;
        }
        if (failed) break;
        double t = now();
        if (connected != last_connected) { last_connected = connected; progress = t; }
        if (t > deadline || t > progress + STALL) break;
        int n = epoll_wait(ep, evs, 512, 200);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32, fd = fds[i], err = 0;
            socklen_t l = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); /* one event per connect */
            pending--;
            if (err) { failed++; continue; }
            connected++;
        }
    }
    if (connected < conns) {
        printf("FAIL connected=%d of %d (failed=%d)\n", connected, conns, failed);
        return 1;
    }
    if (verify) {
        int echoed = 0, lost = 0;
        char *done = calloc((size_t)conns, 1);
        for (int i = 0; i < conns; i++) {
            if (send(fds[i], "x", 1, MSG_NOSIGNAL) != 1) { done[i] = 1; lost++; continue; }
            struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
        }
        double vdeadline = now() + limit;
        int last_echoed = 0;
        progress = now();
        while (echoed + lost < conns) {
            double t = now();
            if (echoed + lost != last_echoed) { last_echoed = echoed + lost; progress = t; }
            if (t > vdeadline || t > progress + STALL) break;
            int n = epoll_wait(ep, evs, 512, 200);
            for (int k = 0; k < n; k++) {
                int i = (int)evs[k].data.u32;
                char b;
                ssize_t r = recv(fds[i], &b, 1, 0);
                if (r < 0 && errno == EAGAIN) continue;
                epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                if (done[i]) continue;
                done[i] = 1;
                if (r == 1) echoed++; else lost++;
            }
        }
        if (echoed < conns) {
            printf("FAIL connected=%d verified=%d lost=%d\n", connected, echoed, lost);
            return 1;
        }
    }
    /* wait for the signal to let go */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGUSR1);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    int sfd = signalfd(-1, &ss, SFD_CLOEXEC);
    printf("READY conns=%d\n", connected);
    fflush(stdout);
    struct stat st;
    int watch_stdin = fstat(0, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(0));
    struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = watch_stdin ? 0 : -1, .events = POLLIN}};
    poll(pf, 2, (int)(hold * 1000));
    for (int i = 0; i < conns; i++) close_rst(fds[i]);
    printf("DONE\n");
    return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen pingpong PORT [-c CONNS] [-s SIZE] [-d SECONDS] [-n COUNT]\n"
            "       loadgen bulk PORT [-b BYTES] [-k CHUNK] [-t SECONDS]\n"
            "       loadgen idle PORT [-c CONNS] [-t SECONDS] [-H HOLD] [-V]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 3) usage();
    const char *mode = argv[1];
    int port = atoi(argv[2]);
    if (port <= 0 || port > 65535) usage();
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int conns = -1, verify = 1;
    long long bytes = 2LL << 30, count = 0;
    size_t size = 64, chunk = 64 * 1024;
    double secs = -1, hold = 300;
    optind = 3;
    int opt;
    while ((opt = getopt(argc, argv, "c:s:d:n:b:k:t:H:V")) != -1) {
        switch (opt) {
        case 'c': conns = atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 'd': case 't': secs = atof(optarg); break;
        case 'n': count = atoll(optarg); break;
        case 'b': bytes = atoll(optarg); break;
        case 'k': chunk = (size_t)atol(optarg); break;
        case 'H': hold = atof(optarg); break;
        case 'V': verify = 0; break;
        default: usage();
        }
    }
    if (strcmp(mode, "pingpong") == 0)
        return run_pingpong(conns > 0 ? conns : 64, size ? size : 64, secs > 0 ? secs : 5, count);
    if (strcmp(mode, "bulk") == 0)
        return run_bulk(bytes, chunk ? chunk : 65536, secs > 0 ? secs : 120);
    if (strcmp(mode, "idle") == 0)
        return run_idle(conns > 0 ? conns : 10000, secs > 0 ? secs : 60, hold, verify);
    usage();
    return 2;
}
