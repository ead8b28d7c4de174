/*
 * dx_net.h - addresses and socket syscalls. Every function returns >= 0 (an
 * fd, a count) or -errno; resolver failures are codes <= -DX_EAI_BASE of
 * our own (dx_errname and dx_strerror read them), whatever values the C
 * library gives its EAI_ constants.
 * Every descriptor is born non-blocking and close-on-exec; sends never raise
 * SIGPIPE. EINTR is retried here and nowhere else. No Lua in this file.
 */
#ifndef DX_NET_H
#define DX_NET_H

#include "dx_prefix.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define DX_EAI_BASE 20000
#define DX_ISEAI(code) ((code) <= -DX_EAI_BASE && (code) > -DX_EAI_BASE - 1000)

typedef struct dx_addr {
  struct sockaddr_storage ss;
  socklen_t len;
} dx_addr;

/* DX_SUSPECT: an event after which a short read may leave something to
 * read (the peer's end, urgent data) */
enum { DX_READ = 1, DX_WRITE = 2, DX_SUSPECT = 4 };

/* Besides bytes and -errno: wait for that direction (TLS may want either,
 * whatever the operation). */
#define DX_WANT_READ  (-40001)
#define DX_WANT_WRITE (-40002)
/* A code of duplex's own: the peer's TLS certificate did not verify. */
#define DX_ECERT (-40003)
/* Another of duplex's own: the socket was closed before the call (by
 * another task, often); its name is "EBADF", as the kernel's would be. */
#define DX_ECLOSED (-40004)

/* Resolve host/port into up to `max` addresses. host "*" means every
 * address (IPv6 dual-stack first, then IPv4); `passive` is for binding.
 * Returns the count (>= 1) or a negative code. */
int dx_resolve(const char *host, int port, int passive, dx_addr *out, int max);
/* The same with flags (DX_PASSIVE; DX_NUMERIC: numeric hosts only, and
 * DX_NOT_NUMERIC for a name) and a family (AF_UNSPEC, AF_INET, AF_INET6). */
enum { DX_PASSIVE = 1, DX_NUMERIC = 2 };
#define DX_NOT_NUMERIC (-(DX_EAI_BASE + 1000))
int dx_resolve_ex(const char *host, int port, int flags, int family, dx_addr *out, int max);
/* Is host a name for the resolver (not an address, nor "*")? The common
 * dotted-quad and IPv6 forms are told without getaddrinfo. */
int dx_is_name(const char *host);
/* Set the port of an inet/inet6 address (others are left alone). */
void dx_addr_set_port(dx_addr *a, int port);
/* An IPv4 address in the v4-mapped IPv6 form (::ffff:a.b.c.d) that a
 * dual-stack socket sends to; others are left alone. */
void dx_addr_map4(dx_addr *a);
/* "unix:/path" or "unix:@abstract" (after the "unix:" prefix: spec). */
int dx_addr_unix(const char *spec, dx_addr *out);
/* Text form: host (or path) into `host`, port (or -1 for unix), family
 * name. A v4-mapped address (an IPv4 peer of a dual-stack socket) reads as
 * the IPv4 address it is, family "inet". */
void dx_addr_text(const dx_addr *a, char *host, size_t hostlen, int *port,
                  const char **family);
/* "127.0.0.1:80", "[::1]:80" or the unix path, for messages. */
void dx_addr_label(const dx_addr *a, char *out, size_t outlen);

typedef struct dx_listen_opts {
  int backlog, reuseaddr, reuseport, v6only;   /* v6only < 0: leave default */
  int nodelay;            /* TCP_NODELAY, which accepted sockets inherit */
} dx_listen_opts;

/* A new socket of this family and type (SOCK_STREAM, SOCK_DGRAM). */
int dx_socket(int family, int type);
int dx_listen(const dx_addr *a, const dx_listen_opts *o);
/* A new connection (its peer in *peer if not NULL), or -EAGAIN;
 * ECONNABORTED is skipped. */
int dx_accept(int fd, dx_addr *peer);
/* Start connecting (TCP_NODELAY on first if nodelay): returns an fd in
 * *fdp and 0 (connected) or -EINPROGRESS; on any other error the fd is
 * closed and -errno returned. */
int dx_connect_start(const dx_addr *a, const dx_addr *bind, int nodelay, int *fdp);
/* Whether accepted sockets inherit TCP_NODELAY from the listener. */
int dx_nodelay_inherited(void);
/* 0 once connected, -EINPROGRESS while still connecting, else the
 * connection's -errno. */
int dx_connect_result(int fd);

long dx_recv(int fd, char *p, size_t n);            /* 0 is end of stream */
long dx_sendv(int fd, struct iovec *iov, int iovcnt);
int dx_shutdown(int fd, int how);                    /* SHUT_RD/WR/RDWR */
int dx_close(int fd);
int dx_sockname(int fd, int peer, dx_addr *out);
/* Remove the file of a Unix socket bound to a path (not abstract). */
void dx_unlink_unix(const dx_addr *a);

int dx_setopt(int fd, int level, int name, int value);
int dx_getopt(int fd, int level, int name, int *value);
/* Bytes the kernel holds for reading on fd (a socket or a pipe), or -errno. */
int dx_inq(int fd);
/* The family of socket fd (AF_*), or -errno; *dual: an AF_INET6 socket
 * that reaches IPv4 too (IPV6_V6ONLY off). */
int dx_sock_family(int fd, int *dual);
int dx_setlinger(int fd, int on, int seconds);
int dx_getlinger(int fd, int *on, int *seconds);

/* Wait until fd is ready for `events` (DX_READ|DX_WRITE) or ms pass (-1:
 * forever). Returns 1 ready, 0 timed out or interrupted, -errno. */
int dx_wait_fd(int fd, int events, int ms);

const char *dx_errname(int code);     /* "ETIMEDOUT", "EAI_NONAME" */
const char *dx_strerror(int code);    /* strerror / gai_strerror */

#endif
