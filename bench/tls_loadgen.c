/*
 * tls_loadgen.c -- a single-threaded TLS load generator (OpenSSL 3) for the
 * TLS echo servers (c_tls_server.c, servers/duplex_tls.lua).
 *
 *   tls_loadgen MODE PORT CAFILE [options]
 *
 * The server is 127.0.0.1:PORT; its certificate is verified against CAFILE
 * (chain, and the name 127.0.0.1 against the certificate's IP SAN). The
 * client speaks TLS 1.3 only, offers only X25519, keeps no sessions (every
 * handshake is a full one), and uses SSL_MODE_ENABLE_PARTIAL_WRITE |
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER.
 *
 * Modes:
 *   handshake [-d SECONDS] [-n COUNT]   sequential full handshakes for
 *       SECONDS (5), or COUNT of them (a fixed amount of work, for valgrind):
 *       connect, handshake, 1-byte echo, close_notify, wait for the server's
 *       close_notify / end, close. "RESULT handshakes=.. secs=.. rate=.."
 *   bulk [-b BYTES] [-k CHUNK] [-t LIMIT]   one connection, non-blocking:
 *       sends BYTES (2 GiB) in CHUNK-byte SSL_writes (16 KiB) while reading
 *       the echo; fails after LIMIT seconds (120). "RESULT bytes=.. secs=.. gbps=.."
 *   small [-c CONNS] [-s SIZE] [-d SECONDS] [-n COUNT]   CONNS connections
 *       (64), each with one SIZE-byte (64) message in flight: send, wait for
 *       the whole echo, again, for SECONDS (5) or COUNT messages in all. "RESULT msgs=.. secs=.. rate=.. p50_us=.. p99_us=.."
 *   idle [-c CONNS] [-t LIMIT]   opens CONNS connections (1000; at most 64
 *       handshakes in flight), one 1-byte echo on each, then holds them.
 *       "RESULT conns=.."
 *
 * Every mode has three phases: setup (connections, handshakes and one echo
 * each for small and idle; the handshake for bulk; nothing for handshake),
 * then "READY ...", the measured run, "RESULT ...", then teardown (close
 * every connection with close_notify) and "DONE". With -w the program waits
 * for a SIGUSR1 after READY and another after RESULT (at most -H HOLD
 * seconds each, default 300), so a runner can read the server's CPU time and
 * memory between the phases: the setup's handshakes are not counted in the
 * small-message figures, and the idle connections stay open until the
 * runner has read the server's RSS. Without -w the phases follow at once.
 * Every wait is bounded: 10 s without progress is a failure ("FAIL ...",
 * exit 1). Lines also say "cipher=..." and the client's own CPU time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define STALL 10.0 /* seconds without progress: the server is stuck */

static struct sockaddr_in target;
static SSL_CTX *cctx;
static int gated;
static double hold = 300;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void fail(const char *fmt, const char *what) {
    unsigned long e = ERR_peek_last_error();
    printf("FAIL ");
    printf(fmt, what);
    if (e) printf(" (%s)", ERR_reason_error_string(e));
    else if (errno) printf(" (%s)", strerror(errno));
    printf("\n");
    fflush(stdout);
    exit(1);
}

static void raise_nofile(long need) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((long)rl.rlim_cur >= need) return;
    rl.rlim_cur = (long)rl.rlim_max >= need ? (rlim_t)need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* Wait for the runner's SIGUSR1 (with -w). */
static void gate(const char *after) {
    if (!gated) return;
    sigset_t ss;
    siginfo_t si;
    struct timespec ts = {(time_t)hold, 0};
    sigemptyset(&ss);
    sigaddset(&ss, SIGUSR1);
    if (sigtimedwait(&ss, &si, &ts) < 0) {
        printf("FAIL no SIGUSR1 within %.0f s after %s\n", hold, after);
        exit(1);
    }
}

static int tcp_connect(int timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("%s", "socket");
    struct timeval tv = {timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) fail("%s", "connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static SSL *tls_new(int fd) {
    SSL *s = SSL_new(cctx);
    if (!s || SSL_set_fd(s, fd) != 1) fail("%s", "SSL_new");
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), "127.0.0.1") != 1) fail("%s", "set1_ip");
    SSL_set_connect_state(s);
    return s;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static const char *cipher_of(SSL *s) { return s ? SSL_get_cipher_name(s) : "?"; }

/* ----------------------------------------------------------- handshake */

static long max_count; /* -n: stop after this many handshakes / messages */

static int run_handshake(double secs) {
    printf("READY\n");
    fflush(stdout);
    gate("READY");
    char cipher[64] = "?";
    long count = 0;
    double c0 = cpu_self(), start = now(), end = start + secs;
    do {
        int fd = tcp_connect(5);
        SSL *s = tls_new(fd);
        char b = 'h';
        size_t n;
        ERR_clear_error();
        if (SSL_connect(s) != 1) fail("%s", "handshake");
        if (SSL_version(s) != TLS1_3_VERSION) fail("%s", "not TLS 1.3");
        if (SSL_session_reused(s)) fail("%s", "session resumed");
        if (SSL_write_ex(s, &b, 1, &n) != 1) fail("%s", "write");
        b = 0;
        if (SSL_read_ex(s, &b, 1, &n) != 1 || b != 'h') fail("%s", "echo");
        if (count == 0) snprintf(cipher, sizeof cipher, "%s", cipher_of(s));
        SSL_shutdown(s);                              /* our close_notify */
        if (SSL_read_ex(s, &b, 1, &n) == 1 || SSL_get_error(s, 0) != SSL_ERROR_ZERO_RETURN)
            fail("%s", "no close_notify from the server");
        SSL_free(s);
        close(fd);
        count++;
    } while (now() < end && (max_count == 0 || count < max_count));
    double t = now() - start, cpu = cpu_self() - c0;
    printf("RESULT handshakes=%ld secs=%.3f rate=%.1f client_cpu_us=%.1f cipher=%s errors=0\n", count,
           t, count / t, cpu * 1e6 / count, cipher);
    fflush(stdout);
    gate("RESULT");
    printf("DONE\n");
    return 0;
}

/* ---------------------------------------------------------------- bulk */

static int run_bulk(long long total, size_t chunk, double limit) {
    int fd = tcp_connect(10);
    SSL *s = tls_new(fd);
    ERR_clear_error();
    if (SSL_connect(s) != 1) fail("%s", "handshake");
    set_nonblock(fd);
    /* bytes at stream offset p are pat[p % 251]: any chunk of the stream is
     * one slice of pat */
    size_t patlen = chunk + 256;
    if (patlen < 65536 + 256) patlen = 65536 + 256;
    unsigned char *pat = malloc(patlen), *in = malloc(65536);
    for (size_t i = 0; i < patlen; i++) pat[i] = (unsigned char)(i % 251);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    uint32_t cur = EPOLLIN | EPOLLOUT;
    printf("READY cipher=%s\n", cipher_of(s));
    fflush(stdout);
    gate("READY");

    long long sent = 0, recvd = 0;
    double c0 = cpu_self(), start = now(), deadline = start + limit, progress = start;
    while (recvd < total) {
        uint32_t need = 0;
        int moved = 0;
        /* write one record's worth while there is something to send */
        while (sent < total) {
            size_t want = chunk, n;
            if ((long long)want > total - sent) want = (size_t)(total - sent);
            ERR_clear_error();
            if (SSL_write_ex(s, pat + sent % 251, want, &n) == 1) { sent += (long long)n; moved = 1; continue; }
            int err = SSL_get_error(s, 0);
            if (err == SSL_ERROR_WANT_WRITE) need |= EPOLLOUT;
            else if (err == SSL_ERROR_WANT_READ) need |= EPOLLIN;
            else fail("%s", "SSL_write");
            break;
        }
        for (;;) {
            size_t n;
            ERR_clear_error();
            if (SSL_read_ex(s, in, 65536, &n) == 1) {
                if (memcmp(in, pat + recvd % 251, n) != 0) fail("%s", "wrong echo");
                recvd += (long long)n;
                moved = 1;
                if (recvd >= total) break;
                continue;
            }
            int err = SSL_get_error(s, 0);
            if (err == SSL_ERROR_WANT_READ) need |= EPOLLIN;
            else if (err == SSL_ERROR_WANT_WRITE) need |= EPOLLOUT;
            else fail("%s", "SSL_read (connection lost)");
            break;
        }
        double t = now();
        if (moved) progress = t;
        if (t > deadline || t > progress + STALL) {
            printf("FAIL %s after %.1fs sent=%lld received=%lld\n", t > deadline ? "timeout" : "stalled",
                   t - start, sent, recvd);
            return 1;
        }
        if (moved || recvd >= total) continue;
        if (need != cur) {
            struct epoll_event e2 = {.events = need, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e2);
            cur = need;
        }
        struct epoll_event ev;
        if (epoll_wait(ep, &ev, 1, 200) < 0 && errno != EINTR) fail("%s", "epoll_wait");
    }
    double secs = now() - start, cpu = cpu_self() - c0;
    printf("RESULT bytes=%lld secs=%.3f gbps=%.3f client_cpu_s_per_gb=%.3f cipher=%s errors=0\n", total,
           secs, (double)total / secs / 1e9, cpu / ((double)total / 1e9), cipher_of(s));
    fflush(stdout);
    gate("RESULT");
    SSL_shutdown(s);
    SSL_free(s);
    close(fd);
    printf("DONE\n");
    return 0;
}

/* ------------------------------------------ many connections: small, idle */

enum { HS, SEND, RECV, REST };

typedef struct {
    int fd;
    SSL *ssl;
    int state;
    uint32_t events;     /* registered with epoll */
    size_t off;          /* of the current message, sent or received */
    unsigned seq;        /* message number: its bytes are seq + i */
    double sent_at;
} tconn;

static int ep;
static unsigned char *msgbuf, *inbuf;
static size_t msgsize;
static long done_msgs;        /* echoes completed in the measured run */
static double *lat;           /* their round trips, µs */
static long nlat, caplat;
static int running;           /* the measured run: count and keep going */
static long started_msgs;     /* messages started in the measured run */
static double run_end;

static void conn_watch(tconn *c, uint32_t ev) {
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) < 0) fail("%s", "epoll_ctl");
    c->events = ev;
}

/* After a failed SSL_* call: wait for what OpenSSL wants, or fail. */
static void conn_want(tconn *c, int r, const char *what) {
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) conn_watch(c, EPOLLIN);
    else if (err == SSL_ERROR_WANT_WRITE) conn_watch(c, EPOLLOUT);
    else fail("%s", what);
}

/* Run one connection until it must wait or rests (REST: message done and
 * no more wanted). Returns 1 if it made progress. */
static int conn_pump(tconn *c) {
    int moved = 0;
    for (;;) {
        size_t n;
        ERR_clear_error();
        switch (c->state) {
        case HS: {
            int r = SSL_do_handshake(c->ssl);
            if (r != 1) { conn_want(c, r, "handshake"); return moved; }
            moved = 1;
            c->state = SEND;
            c->off = 0;
            for (size_t i = 0; i < msgsize; i++) msgbuf[i] = (unsigned char)(c->seq + i);
            c->sent_at = now();
            break;
        }
        case SEND:
            /* the message is regenerated from seq, so a retry offers the same bytes */
            for (size_t i = 0; i < msgsize; i++) msgbuf[i] = (unsigned char)(c->seq + i);
            if (SSL_write_ex(c->ssl, msgbuf + c->off, msgsize - c->off, &n) != 1) {
                conn_want(c, 0, "write");
                return moved;
            }
            moved = 1;
            c->off += n;
            if (c->off == msgsize) { c->state = RECV; c->off = 0; }
            break;
        case RECV:
            if (SSL_read_ex(c->ssl, inbuf, msgsize - c->off, &n) != 1) {
                conn_want(c, 0, "read (connection lost)");
                return moved;
            }
            moved = 1;
            for (size_t i = 0; i < n; i++)
                if (inbuf[i] != (unsigned char)(c->seq + c->off + i)) fail("%s", "wrong echo");
            c->off += n;
            if (c->off < msgsize) break;
            if (running) {
                double t = now();
                done_msgs++;
                if (nlat == caplat) {
                    caplat = caplat ? caplat * 2 : 1 << 16;
                    lat = realloc(lat, (size_t)caplat * sizeof *lat);
                    if (!lat) fail("%s", "realloc");
                }
                lat[nlat++] = (t - c->sent_at) * 1e6;
                if (t < run_end && (max_count == 0 || started_msgs < max_count)) {
                    started_msgs++;
                    c->seq++;
                    c->state = SEND;
                    c->off = 0;
                    c->sent_at = t;
                    break;
                }
            }
            c->seq++;
            c->state = REST;
            conn_watch(c, EPOLLIN);   /* a rest: the server should send nothing */
            return moved;
        case REST:
            return moved;
        }
    }
}

static tconn *conn_open(void) {
    tconn *c = calloc(1, sizeof *c);
    if (!c) fail("%s", "calloc");
    c->fd = tcp_connect(10);
    set_nonblock(c->fd);
    c->ssl = tls_new(c->fd);
    c->state = HS;
    return c;
}

/* Pump the event loop until `resting` connections rest (or fail on a stall).
 * `more` opens further connections while fewer than `window` are busy. */
static void loop_until(tconn **cs, int total, int *opened, int window, int *resting) {
    struct epoll_event evs[256];
    double progress = now();
    for (;;) {
        while (*opened < total && *opened - *resting < window) {
            tconn *c = cs[(*opened)++] = conn_open();
            conn_pump(c);
            if (c->state == REST) (*resting)++;
        }
        if (*resting >= total) return;
        int n = epoll_wait(ep, evs, 256, 200);
        if (n < 0 && errno != EINTR) fail("%s", "epoll_wait");
        double t = now();
        for (int k = 0; k < n; k++) {
            tconn *c = evs[k].data.ptr;
            if (c->state == REST) {
                /* something arrived on a resting connection: read it (a
                 * session ticket is consumed; data is an error) */
                unsigned char b;
                size_t got;
                ERR_clear_error();
                if (SSL_read_ex(c->ssl, &b, 1, &got) == 1) fail("%s", "unexpected data");
                int err = SSL_get_error(c->ssl, 0);
                if (err == SSL_ERROR_WANT_READ) continue;
                if (err == SSL_ERROR_WANT_WRITE) { conn_watch(c, EPOLLOUT | EPOLLIN); continue; }
                fail("%s", "a resting connection was closed by the server");
            }
            if (conn_pump(c)) progress = t;
            if (c->state == REST) (*resting)++;
        }
        if (t > progress + STALL) {
            printf("FAIL stalled: %d of %d connections done\n", *resting, total);
            exit(1);
        }
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void close_all(tconn **cs, int n) {
    for (int i = 0; i < n; i++) {
        ERR_clear_error();
        SSL_shutdown(cs[i]->ssl);
        SSL_free(cs[i]->ssl);
        close(cs[i]->fd);
        free(cs[i]);
    }
}

static int run_many(int idle, int conns, size_t size, double secs) {
    raise_nofile(conns + 64);
    ep = epoll_create1(EPOLL_CLOEXEC);
    msgsize = idle ? 1 : size;
    msgbuf = malloc(msgsize);
    inbuf = malloc(msgsize);
    tconn **cs = calloc((size_t)conns, sizeof *cs);
    int opened = 0, resting = 0;
    double c0 = cpu_self(), t0 = now();
    /* setup: handshake and one echo on every connection */
    loop_until(cs, conns, &opened, 64, &resting);
    printf("READY conns=%d setup_secs=%.3f client_setup_cpu_us_per_conn=%.1f cipher=%s\n", conns,
           now() - t0, (cpu_self() - c0) * 1e6 / conns, cipher_of(cs[0]->ssl));
    fflush(stdout);
    gate("READY");
    if (idle) {
        printf("RESULT conns=%d errors=0\n", conns);
    } else {
        running = 1;
        c0 = cpu_self();
        double start = now();
        run_end = start + secs;
        resting = 0;
        started_msgs = conns;
        for (int i = 0; i < conns; i++) {
            tconn *c = cs[i];
            c->state = SEND;
            c->off = 0;
            c->sent_at = now();
            conn_pump(c);
            if (c->state == REST) resting++;
        }
        loop_until(cs, conns, &opened, conns, &resting);
        double t = now() - start, cpu = cpu_self() - c0;
        qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
        printf("RESULT msgs=%ld secs=%.3f rate=%.1f p50_us=%.1f p99_us=%.1f client_cpu_us=%.2f errors=0\n",
               done_msgs, t, done_msgs / t, nlat ? lat[nlat / 2] : 0.0,
               nlat ? lat[(long)(nlat * 0.99)] : 0.0, done_msgs ? cpu * 1e6 / done_msgs : 0.0);
    }
    fflush(stdout);
    gate("RESULT");
    close_all(cs, conns);
    printf("DONE\n");
    return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void) {
    fprintf(stderr,
            "usage: tls_loadgen handshake PORT CAFILE [-d SECONDS] [-n COUNT] [-w] [-H HOLD]\n"
            "       tls_loadgen bulk PORT CAFILE [-b BYTES] [-k CHUNK] [-t LIMIT] [-w] [-H HOLD]\n"
            "       tls_loadgen small PORT CAFILE [-c CONNS] [-s SIZE] [-d SECONDS] [-n COUNT] [-w] [-H HOLD]\n"
            "       tls_loadgen idle PORT CAFILE [-c CONNS] [-w] [-H HOLD]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 4) usage();
    const char *mode = argv[1], *cafile = argv[3];
    int port = atoi(argv[2]);
    if (port <= 0 || port > 65535) usage();
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int conns = -1;
    long long bytes = 2LL << 30;
    size_t size = 64, chunk = 16 * 1024;
    double secs = -1;
    optind = 4;
    int opt;
    while ((opt = getopt(argc, argv, "c:s:d:n:b:k:t:H:w")) != -1) {
        switch (opt) {
        case 'c': conns = atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 'd': case 't': secs = atof(optarg); break;
        case 'b': bytes = atoll(optarg); break;
        case 'k': chunk = (size_t)atol(optarg); break;
        case 'H': hold = atof(optarg); break;
        case 'n': max_count = atol(optarg); break;
        case 'w': gated = 1; break;
        default: usage();
        }
    }
    if (gated) { /* SIGUSR1 stays pending until gate() takes it */
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGUSR1);
        sigprocmask(SIG_BLOCK, &ss, NULL);
    }
    if (size < 1 || chunk < 1 || chunk > 1 << 20 || bytes < 1) usage();

    cctx = SSL_CTX_new(TLS_client_method());
    if (!cctx) fail("%s", "SSL_CTX_new");
    SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
    if (SSL_CTX_set1_groups_list(cctx, "X25519") != 1) fail("%s", "groups");
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(cctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_load_verify_locations(cctx, cafile, NULL) != 1) fail("%s", cafile);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);

    if (strcmp(mode, "handshake") == 0) return run_handshake(secs > 0 ? secs : 5);
    if (strcmp(mode, "bulk") == 0) return run_bulk(bytes, chunk, secs > 0 ? secs : 120);
    if (strcmp(mode, "small") == 0) return run_many(0, conns > 0 ? conns : 64, size, secs > 0 ? secs : 5);
    if (strcmp(mode, "idle") == 0) return run_many(1, conns > 0 ? conns : 1000, 1, 0);
    usage();
    return 2;
}
