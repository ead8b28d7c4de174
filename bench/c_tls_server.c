/*
 * c_tls_server.c -- the TLS ceiling: a single-threaded epoll TLS echo server
 * in plain C with OpenSSL 3.
 *
 *   c_tls_server CERT KEY PORT
 *
 * CERT is a PEM chain, KEY its private key; PORT 0 lets the kernel choose,
 * the chosen port is printed as "PORT n" once the server is ready. Listens on
 * 127.0.0.1 and echoes every byte of every TLS connection.
 *
 * The context is set up as duplex sets up a server context (dx_tls.c):
 * TLS_method, TLS 1.2 at least, OpenSSL's default suites, groups and
 * session tickets, and SSL_MODE_ENABLE_PARTIAL_WRITE |
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS; and
 * TCP_NODELAY on the listener, inherited by accepted sockets, as duplex's
 * listen sets it. The connection's I/O goes through OpenSSL's own socket
 * BIO.
 *
 * Level-triggered epoll, non-blocking sockets, accept4 until EAGAIN. Every
 * SSL_* call may want either direction (SSL_read may want to write, SSL_write
 * may want to read): the connection then waits for the direction OpenSSL
 * asked for, and any readiness reruns the whole state machine (flush the
 * pending echo, then read). One shared 64 KiB read buffer; a connection owns
 * heap memory of its own (beyond OpenSSL's) only while it holds an echo that
 * SSL_write has not taken yet. A clean end (close_notify) is answered with
 * one close_notify, never awaited; any error just closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define RBUF (64 * 1024)

typedef struct {
    SSL *ssl;
    char *out;            /* echo not yet taken by SSL_write */
    size_t outlen, outoff;
    uint32_t events;      /* what epoll waits for now */
    int handshaken;
} conn_t;

static conn_t *conns;
static int nconns_max;
static int ep;
static SSL_CTX *ctx;
static char rbuf[RBUF];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void die_ssl(const char *what) {
    fprintf(stderr, "%s: ", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void conn_close(int fd, int notify) {
    conn_t *c = &conns[fd];
    if (notify) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* one close_notify; never waits for the peer's */
    }
    SSL_free(c->ssl);
    free(c->out);
    memset(c, 0, sizeof *c);
    ERR_clear_error();
    close(fd); /* also removes it from the epoll set */
}

static void want(int fd, uint32_t ev) {
    conn_t *c = &conns[fd];
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) < 0) die("epoll_ctl mod");
    c->events = ev;
}

/* After an SSL_* call failed with error e: wait for the direction OpenSSL
 * wants and return 0, or close the connection and return -1. */
static int wait_or_close(int fd, int e) {
    switch (e) {
    case SSL_ERROR_WANT_READ: want(fd, EPOLLIN); return 0;
    case SSL_ERROR_WANT_WRITE: want(fd, EPOLLOUT); return 0;
    case SSL_ERROR_ZERO_RETURN: conn_close(fd, 1); return -1; /* close_notify: answer it */
    default: conn_close(fd, 0); return -1;                    /* error or EOF: just close */
    }
}

/* Write buf through TLS; what SSL_write does not take now is kept (the
 * retry offers the same bytes, as OpenSSL requires). 1: all written,
 * 0: waiting (the rest is queued), -1: closed. */
static int tls_send(int fd, const char *buf, size_t len) {
    conn_t *c = &conns[fd];
    size_t off = 0, n;
    while (off < len) {
        ERR_clear_error();
        if (SSL_write_ex(c->ssl, buf + off, len - off, &n) == 1) { off += n; continue; }
        int e = SSL_get_error(c->ssl, 0);
        if (buf != c->out) {            /* keep the rest */
            c->out = malloc(len - off);
            if (!c->out) die("malloc");
            memcpy(c->out, buf + off, len - off);
            c->outlen = len - off;
            c->outoff = 0;
        } else {
            c->outoff = off;
        }
        return wait_or_close(fd, e);
    }
    if (buf == c->out) {
        free(c->out);
        c->out = NULL;
        c->outlen = c->outoff = 0;
    }
    return 1;
}

/* Run the connection as far as it goes: handshake, pending echo, then read
 * and echo until OpenSSL wants to wait. */
static void conn_run(int fd) {
    conn_t *c = &conns[fd];
    if (!c->handshaken) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            wait_or_close(fd, e == SSL_ERROR_ZERO_RETURN ? SSL_ERROR_SSL : e);
            return;
        }
        c->handshaken = 1;
    }
    if (c->out) {
        int r = tls_send(fd, c->out + c->outoff, c->outlen - c->outoff);
        if (r <= 0) return;
    }
    for (;;) {
        size_t n;
        ERR_clear_error();
        if (SSL_read_ex(c->ssl, rbuf, sizeof rbuf, &n) == 1) {
            if (tls_send(fd, rbuf, n) <= 0) return;
            continue;
        }
        wait_or_close(fd, SSL_get_error(c->ssl, 0));
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
        conn_t *c = &conns[fd];
        memset(c, 0, sizeof *c);
        c->ssl = SSL_new(ctx);
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) die_ssl("SSL_new");
        SSL_set_accept_state(c->ssl);
        c->events = EPOLLIN;
        struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl add");
        conn_run(fd); /* the ClientHello is often there already */
    }
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    nconns_max = rl.rlim_cur == RLIM_INFINITY ? 1 << 20 : (int)rl.rlim_cur;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s CERT KEY PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[3]);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    conns = calloc((size_t)nconns_max, sizeof *conns);
    if (!conns) die("calloc");

    ctx = SSL_CTX_new(TLS_method());
    if (!ctx) die_ssl("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1) die_ssl(argv[1]);
    if (SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) die_ssl(argv[2]);
    if (SSL_CTX_check_private_key(ctx) != 1) die_ssl("key does not match the certificate");

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* as duplex's listen does by default: accepted sockets inherit it on
     * Linux (without it a handshake's last small records meet the
     * client's delayed ACK: 40 ms per handshake) */
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event e = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) < 0) die("epoll_ctl");
    printf("PORT %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) { on_accept(lfd); continue; }
            if (!conns[fd].ssl) continue; /* closed earlier in this batch */
            conn_run(fd);
        }
    }
}
