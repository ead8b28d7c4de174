/*
 * c_server.c -- the ceiling: a single-threaded epoll server in plain C.
 *
 *   c_server http PORT   HTTP/1.1 "Hello, World!" (keep-alive; honours
 *                        "Connection: close" by answering and closing)
 *   c_server echo PORT   echoes every byte back
 *
 * PORT 0 lets the kernel choose; the chosen port is printed as "PORT n".
 * Level-triggered epoll, non-blocking sockets, accept4 in a loop until
 * EAGAIN, one shared 256 KiB read buffer (up to 256 KiB per recv, as the
 * C server of issue 10's independent measurements: fewer syscalls per byte
 * in bulk echo); a connection owns heap memory only while it holds a partial
 * request or unsent output (so idle connections cost only the kernel socket
 * and a small slot).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF (256 * 1024)

static const char RESP[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";
static const char RESP_CLOSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "Connection: close\r\n"
    "\r\n"
    "Hello, World!";

typedef struct {
    char *in;            /* partial HTTP request (http mode) */
    size_t inlen;
    char *out;           /* unsent output */
    size_t outlen, outoff;
    int closing;         /* close once output is flushed */
    int open;
} conn_t;

static conn_t *conns;
static int nconns_max;
static int ep;
static int http_mode;
static char rbuf[RBUF];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void conn_close(int fd) {
    conn_t *c = &conns[fd];
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof *c);
    close(fd); /* also removes it from the epoll set */
}

static void set_events(int fd, uint32_t ev) {
    struct epoll_event e = {.events = ev, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) < 0) die("epoll_ctl mod");
}

/* Send buf; keep what the kernel did not take and wait for EPOLLOUT.
 * Returns 0 if the connection is still usable, -1 if it was closed. */
static int send_or_queue(int fd, const char *buf, size_t len) {
    conn_t *c = &conns[fd];
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) { off += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_close(fd);
        return -1;
    }
    if (off < len) {
        c->out = malloc(len - off);
        if (!c->out) die("malloc");
        memcpy(c->out, buf + off, len - off);
        c->outlen = len - off;
        c->outoff = 0;
        set_events(fd, EPOLLOUT); /* stop reading until flushed: back-pressure */
    } else if (c->closing) {
        conn_close(fd);
        return -1;
    }
    return 0;
}

static void http_input(int fd, const char *data, size_t len);

static void on_writable(int fd) {
    conn_t *c = &conns[fd];
    while (c->outoff < c->outlen) {
        ssize_t n = send(fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (n > 0) { c->outoff += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_close(fd);
        return;
    }
    free(c->out);
    c->out = NULL;
    c->outlen = c->outoff = 0;
    if (c->closing) { conn_close(fd); return; }
    set_events(fd, EPOLLIN);
    if (c->inlen) http_input(fd, "", 0); /* pipelined requests left waiting */
}

static int wants_close(const char *head, size_t len) {
    /* look for a "Connection:" header whose value contains "close" */
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        if ((size_t)(eol - p) > 11 && strncasecmp(p, "Connection:", 11) == 0) {
            for (const char *q = p + 11; q + 5 <= eol; q++)
                if (strncasecmp(q, "close", 5) == 0) return 1;
        }
        p = eol + 1;
    }
    return 0;
}

static void http_input(int fd, const char *data, size_t len) {
    conn_t *c = &conns[fd];
    char *buf = (char *)data;
    char *joined = NULL;
    if (c->inlen) { /* rare: a request split across reads */
        joined = malloc(c->inlen + len);
        if (!joined) die("malloc");
        memcpy(joined, c->in, c->inlen);
        memcpy(joined + c->inlen, data, len);
        len += c->inlen;
        free(c->in);
        c->in = NULL;
        c->inlen = 0;
        buf = joined;
    }
    /* answer every complete request (pipelining) in one send */
    char out[8192];
    size_t outlen = 0, pos = 0;
    for (;;) {
        char *end = memmem(buf + pos, len - pos, "\r\n\r\n", 4);
        if (!end) break;
        size_t hlen = (size_t)(end - (buf + pos)) + 4;
        int close_it = wants_close(buf + pos, hlen);
        const char *r = close_it ? RESP_CLOSE : RESP;
        size_t rl = close_it ? sizeof RESP_CLOSE - 1 : sizeof RESP - 1;
        if (outlen + rl > sizeof out) {
            if (send_or_queue(fd, out, outlen) < 0) { free(joined); return; }
            outlen = 0;
            if (c->out) break; /* blocked: keep the rest for later (rare) */
        }
        pos += hlen;
        memcpy(out + outlen, r, rl);
        outlen += rl;
        if (close_it) { c->closing = 1; break; }
    }
    if (!c->closing && pos < len) {
        if (len - pos > 1 << 20) { free(joined); conn_close(fd); return; }
        c->in = malloc(len - pos);
        if (!c->in) die("malloc");
        memcpy(c->in, buf + pos, len - pos);
        c->inlen = len - pos;
    }
    free(joined);
    if (outlen) send_or_queue(fd, out, outlen);
}

static void on_readable(int fd) {
    for (;;) {
        ssize_t n = recv(fd, rbuf, sizeof rbuf, 0);
        if (n > 0) {
            if (http_mode) http_input(fd, rbuf, (size_t)n);
            else send_or_queue(fd, rbuf, (size_t)n);
            /* level-triggered: one read per wakeup is fair and cheap; but a
             * full buffer likely means more is waiting, so read again */
            if (!conns[fd].open || conns[fd].out || n < (ssize_t)sizeof rbuf) return;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        conn_close(fd); /* EOF or error */
        return;
    }
}

static void on_accept(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EMFILE || errno == ENFILE) { perror("accept4"); return; }
            die("accept4");
        }
        if (fd >= nconns_max) { close(fd); continue; }
        memset(&conns[fd], 0, sizeof conns[fd]);
        conns[fd].open = 1;
        struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl add");
    }
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536) {
        struct rlimit want = {65536, 65536}; /* works as root */
        setrlimit(RLIMIT_NOFILE, &want);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    nconns_max = rl.rlim_cur == RLIM_INFINITY ? 1 << 20 : (int)rl.rlim_cur;
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "http") && strcmp(argv[1], "echo"))) {
        fprintf(stderr, "usage: %s http|echo PORT\n", argv[0]);
        return 2;
    }
    http_mode = strcmp(argv[1], "http") == 0;
    int port = atoi(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    conns = calloc((size_t)nconns_max, sizeof *conns);
    if (!conns) die("calloc");

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("PORT %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event e = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) < 0) die("epoll_ctl");

    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            uint32_t ev = evs[i].events;
            if (fd == lfd) { on_accept(lfd); continue; }
            if (!conns[fd].open) continue;
            if (ev & EPOLLOUT) { on_writable(fd); continue; }
            if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(fd);
        }
    }
}
