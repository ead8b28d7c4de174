/*
 * dx_net.c - sockets and addresses over the BSD API (see dx_net.h). The one
 * place that talks to the kernel about sockets; it retries EINTR and turns
 * EWOULDBLOCK into -EAGAIN so that callers see one code for "not now".
 */
#include "dx_prefix.h"
#include "dx_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int neg_errno(void) {
  int e = errno;
  if (e == EWOULDBLOCK) e = EAGAIN;
  return -e;
}

/* --- resolver codes: an explicit table, as libuv does -------------------- */

static const struct { int eai; const char *name; } eai_names[] = {
  {EAI_AGAIN, "EAI_AGAIN"}, {EAI_BADFLAGS, "EAI_BADFLAGS"}, {EAI_FAIL, "EAI_FAIL"},
  {EAI_FAMILY, "EAI_FAMILY"}, {EAI_MEMORY, "EAI_MEMORY"}, {EAI_NONAME, "EAI_NONAME"},
  {EAI_SERVICE, "EAI_SERVICE"}, {EAI_SOCKTYPE, "EAI_SOCKTYPE"},
#ifdef EAI_OVERFLOW
  {EAI_OVERFLOW, "EAI_OVERFLOW"},
#endif
#ifdef EAI_NODATA
  {EAI_NODATA, "EAI_NODATA"},
#endif
#ifdef EAI_ADDRFAMILY
  {EAI_ADDRFAMILY, "EAI_ADDRFAMILY"},
#endif
};
#define NEAI ((int)(sizeof eai_names / sizeof eai_names[0]))

/* Our code for getaddrinfo's result; an unknown one reads as EAI_FAIL. */
static int eai_code(int eai) {
  int i;
  for (i = 0; i < NEAI; i++)
    if (eai_names[i].eai == eai) return -(DX_EAI_BASE + i);
  return -(DX_EAI_BASE + 2);                     /* EAI_FAIL */
}

/* --- addresses --------------------------------------------------------- */

void dx_addr_set_port(dx_addr *a, int port) {
  if (a->ss.ss_family == AF_INET)
    ((struct sockaddr_in *)&a->ss)->sin_port = htons((unsigned short)port);
  else if (a->ss.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((unsigned short)port);
}

static int any_addrs(int port, dx_addr *out, int max) {
  int n = 0;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out[0].ss;
  memset(out, 0, sizeof(*out) * (size_t)(max < 2 ? max : 2));
  s6->sin6_family = AF_INET6;
  s6->sin6_addr = in6addr_any;
  out[n].len = sizeof(*s6);
  dx_addr_set_port(&out[n++], port);
  if (max > 1) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out[1].ss;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_ANY);
    out[n].len = sizeof(*s4);
    dx_addr_set_port(&out[n++], port);
  }
  return n;
}

int dx_resolve(const char *host, int port, int passive, dx_addr *out, int max) {
  return dx_resolve_ex(host, port, passive ? DX_PASSIVE : 0, AF_UNSPEC, out, max);
}

int dx_resolve_ex(const char *host, int port, int flags, int family, dx_addr *out, int max) {
  struct addrinfo hints, *res, *ai;
  int n = 0, rc, passive = flags & DX_PASSIVE;
  if (max <= 0) return -EINVAL;
  if (strcmp(host, "*") == 0) return any_addrs(port, out, max);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | (passive ? AI_PASSIVE : 0);
  rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc == EAI_NONAME && (flags & DX_NUMERIC)) return DX_NOT_NUMERIC;
  if (rc == EAI_NONAME) {                            /* a name: ask the resolver */
    hints.ai_flags = (passive ? AI_PASSIVE : 0) | AI_ADDRCONFIG;
    rc = getaddrinfo(host, NULL, &hints, &res);
#ifdef EAI_ADDRFAMILY
    if (rc == EAI_ADDRFAMILY) rc = EAI_NONAME;
#endif
    if (rc == EAI_NONAME) {
      hints.ai_flags &= ~AI_ADDRCONFIG;   /* loopback-only hosts */
      rc = getaddrinfo(host, NULL, &hints, &res);
    }
  }
  if (rc != 0) return rc == EAI_SYSTEM ? neg_errno() : eai_code(rc);
  for (ai = res; ai != NULL && n < max; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(out[n].ss)) continue;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    memset(&out[n], 0, sizeof out[n]);
    memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
    out[n].len = (socklen_t)ai->ai_addrlen;
    dx_addr_set_port(&out[n++], port);
  }
  freeaddrinfo(res);
  return n > 0 ? n : eai_code(EAI_NONAME);
}

int dx_is_name(const char *host) {
  unsigned char bin[sizeof(struct in6_addr)];
  dx_addr a;
  if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1) return 0;
  return dx_resolve_ex(host, 0, DX_NUMERIC, AF_UNSPEC, &a, 1) == DX_NOT_NUMERIC;
}

void dx_addr_map4(dx_addr *a) {
  struct sockaddr_in s4;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
  if (a->ss.ss_family != AF_INET) return;
  memcpy(&s4, &a->ss, sizeof s4);
  memset(a, 0, sizeof *a);
  s6->sin6_family = AF_INET6;
  s6->sin6_port = s4.sin_port;
  s6->sin6_addr.s6_addr[10] = 0xff;
  s6->sin6_addr.s6_addr[11] = 0xff;
  memcpy(&s6->sin6_addr.s6_addr[12], &s4.sin_addr, 4);
  a->len = sizeof *s6;
}

int dx_addr_unix(const char *spec, dx_addr *out) {
  struct sockaddr_un *su = (struct sockaddr_un *)&out->ss;
  size_t len = strlen(spec);
  memset(out, 0, sizeof *out);
  su->sun_family = AF_UNIX;
  if (len == 0) return -EINVAL;
  if (len >= sizeof su->sun_path) return -ENAMETOOLONG;
  memcpy(su->sun_path, spec, len);
  if (spec[0] == '@') {            /* Linux abstract namespace: no NUL end */
    su->sun_path[0] = '\0';
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
  } else {
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  }
  return 0;
}

/* Decimal digits of v (0..65535) at out; returns the end. */
static char *put_u16(char *out, unsigned v) {
  char tmp[5];
  int n = 0;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
  while (n > 0) *out++ = tmp[--n];
  return out;
}

/* inet_ntop for IPv4 by hand: glibc's goes through sprintf, and a failed
 * read's message names its peer on every would-block poll (copas, with
 * timeout 0), where that was most of the cost. */
static void ipv4_text(const void *in4, char *host, size_t hostlen) {
  const unsigned char *b = in4;
  char buf[16], *p = buf;
  int i;
  for (i = 0; i < 4; i++) {
    if (i) *p++ = '.';
    p = put_u16(p, b[i]);
  }
  *p = '\0';
  if ((size_t)(p - buf) < hostlen) memcpy(host, buf, (size_t)(p - buf) + 1);
}

void dx_addr_text(const dx_addr *a, char *host, size_t hostlen, int *port,
                  const char **family) {
  const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
  *port = -1;
  host[0] = '\0';
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    ipv4_text(&s4->sin_addr, host, hostlen);
    *port = ntohs(s4->sin_port);
    *family = "inet";
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {    /* an IPv4 peer of a dual-stack socket */
      ipv4_text(&s6->sin6_addr.s6_addr[12], host, hostlen);
      *family = "inet";
    } else {
      inet_ntop(AF_INET6, &s6->sin6_addr, host, (socklen_t)hostlen);
      *family = "inet6";
    }
    *port = ntohs(s6->sin6_port);
  } else if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *su = (const struct sockaddr_un *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path), n;
    n = a->len > off ? a->len - off : 0;
    if (n > 0 && su->sun_path[0] == '\0') {          /* abstract */
      n = n - 1 < hostlen - 2 ? n - 1 : hostlen - 2;
      host[0] = '@';
      memcpy(host + 1, su->sun_path + 1, n);
      host[n + 1] = '\0';
    } else {
      n = strnlen(su->sun_path, n);
      if (n > hostlen - 1) n = hostlen - 1;
      memcpy(host, su->sun_path, n);
      host[n] = '\0';
    }
    *family = "unix";
  } else {
    *family = "unknown";
  }
}

void dx_addr_label(const dx_addr *a, char *out, size_t outlen) {
  char host[112], full[128], *p = full;
  const char *family;
  int port;
  size_t n;
  dx_addr_text(a, host, sizeof host, &port, &family);
  n = strlen(host);
  if (port >= 0 && strcmp(family, "inet6") == 0) {     /* [host]:port */
    *p++ = '[';
    memcpy(p, host, n);
    p += n;
    *p++ = ']';
  } else {
    memcpy(p, host, n);
    p += n;
  }
  if (port >= 0) {
    *p++ = ':';
    p = put_u16(p, (unsigned)port);
  }
  n = (size_t)(p - full);                  /* cut to fit, as snprintf would */
  if (outlen == 0) return;
  if (n > outlen - 1) n = outlen - 1;
  memcpy(out, full, n);
  out[n] = '\0';
}

/* --- sockets ----------------------------------------------------------- */

int dx_socket(int family, int type) {
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return fd < 0 ? neg_errno() : fd;
}

static int new_socket(int family) { return dx_socket(family, SOCK_STREAM); }

int dx_close(int fd) {
  /* Linux closes the descriptor even when close reports EINTR: no retry. */
  return close(fd) < 0 && errno != EINTR ? neg_errno() : 0;
}

static int fail_close(int fd) {
  int rc = neg_errno();
  close(fd);
  return rc;
}

/* A Unix socket file that nobody accepts on: left by a process that died.
 * A connect to it is refused at once; to a live one it succeeds or would
 * wait. Anything not a socket is never stale. */
static int stale_unix(const dx_addr *a) {
  const struct sockaddr_un *su = (const struct sockaddr_un *)&a->ss;
  struct stat st;
  int fd, rc;
  if (su->sun_path[0] == '\0') return 0;           /* abstract: no file */
  if (lstat(su->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode)) return 0;
  fd = new_socket(AF_UNIX);
  if (fd < 0) return 0;
  rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
  rc = rc < 0 && errno == ECONNREFUSED;
  close(fd);
  return rc;
}

int dx_listen(const dx_addr *a, const dx_listen_opts *o) {
  int fd = new_socket(a->ss.ss_family), one = 1;
  if (fd < 0) return fd;
  if (a->ss.ss_family != AF_UNIX) {
    if (o->reuseaddr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
      return fail_close(fd);
#ifdef SO_REUSEPORT
    if (o->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
      return fail_close(fd);
#endif
    if (a->ss.ss_family == AF_INET6) {
      /* "*" binds in6addr_any: dual-stack unless asked otherwise. */
      int v6 = o->v6only;
      if (v6 < 0) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        v6 = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? 0 : 1;
      }
      if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6) < 0)
        return fail_close(fd);
    }
    if (o->nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
      return fail_close(fd);
  }
  if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
    int e = errno;              /* the probe below has errors of its own */
    if (!(e == EADDRINUSE && a->ss.ss_family == AF_UNIX && stale_unix(a))) {
      close(fd);
      return -e;
    }
    dx_unlink_unix(a);                       /* replace the stale path */
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) return fail_close(fd);
  }
  if (listen(fd, o->backlog) < 0) return fail_close(fd);
  return fd;
}

int dx_accept(int fd, dx_addr *peer) {
  for (;;) {
    int c;
    if (peer) peer->len = sizeof peer->ss;
    c = accept4(fd, peer ? (struct sockaddr *)&peer->ss : NULL,
                peer ? &peer->len : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) return c;
    /* A connection reset before we took it: take the next one. */
    if (errno == EINTR || errno == ECONNABORTED) continue;
    return neg_errno();
  }
}

int dx_nodelay_inherited(void) {
#ifdef __linux__
  return 1;          /* the accepted socket is a clone of the listener's */
#else
  return 0;
#endif
}

int dx_connect_start(const dx_addr *a, const dx_addr *bind_to, int nodelay, int *fdp) {
  int fd = new_socket(a->ss.ss_family), one = 1;
  *fdp = -1;
  if (fd < 0) return fd;
  if (nodelay && a->ss.ss_family != AF_UNIX &&
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
    return fail_close(fd);
  if (bind_to && bind(fd, (const struct sockaddr *)&bind_to->ss, bind_to->len) < 0)
    return fail_close(fd);
  *fdp = fd;
  if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0) return 0;
  /* An interrupted connect goes on in the background: same as EINPROGRESS. */
  if (errno == EINPROGRESS || errno == EINTR) return -EINPROGRESS;
  /* Anything else failed at once. (A Unix socket whose listen queue is full
   * says EAGAIN here: there is no connection in progress to wait for.) */
  *fdp = -1;
  return fail_close(fd);
}

int dx_connect_result(int fd) {
  struct pollfd p;
  int err = 0;
  socklen_t len = sizeof err;
  p.fd = fd;
  p.events = POLLOUT;
  p.revents = 0;
  /* A wakeup is no proof: SO_ERROR reads 0 while still connecting. */
  if (poll(&p, 1, 0) <= 0) return -EINPROGRESS;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return neg_errno();
  return -err;
}

long dx_recv(int fd, char *p, size_t n) {
  for (;;) {
    ssize_t r = recv(fd, p, n, 0);
    if (r >= 0) return (long)r;
    if (errno != EINTR) return neg_errno();
  }
}

long dx_sendv(int fd, struct iovec *iov, int iovcnt) {
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = iov;
  m.msg_iovlen = (size_t)iovcnt;
  for (;;) {
    ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (r >= 0) return (long)r;
    if (errno != EINTR) return neg_errno();
  }
}

int dx_shutdown(int fd, int how) {
  return shutdown(fd, how) < 0 ? neg_errno() : 0;
}

int dx_sockname(int fd, int peer, dx_addr *out) {
  int rc;
  memset(out, 0, sizeof *out);
  out->len = sizeof out->ss;
  rc = peer ? getpeername(fd, (struct sockaddr *)&out->ss, &out->len)
            : getsockname(fd, (struct sockaddr *)&out->ss, &out->len);
  return rc < 0 ? neg_errno() : 0;
}

void dx_unlink_unix(const dx_addr *a) {
  const struct sockaddr_un *su = (const struct sockaddr_un *)&a->ss;
  if (su->sun_family == AF_UNIX && su->sun_path[0] != '\0') unlink(su->sun_path);
}

int dx_setopt(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value) < 0 ? neg_errno() : 0;
}

int dx_getopt(int fd, int level, int name, int *value) {
  socklen_t len = sizeof *value;
  *value = 0;
  return getsockopt(fd, level, name, value, &len) < 0 ? neg_errno() : 0;
}

int dx_inq(int fd) {
  int n = 0;
  return ioctl(fd, FIONREAD, &n) < 0 ? neg_errno() : n;
}

int dx_sock_family(int fd, int *dual) {
  int family, v6only = 1, rc = dx_getopt(fd, SOL_SOCKET, SO_DOMAIN, &family);
  *dual = 0;
  if (rc < 0) return rc;
  if (family == AF_INET6 && dx_getopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only) == 0) *dual = !v6only;
  return family;
}

int dx_setlinger(int fd, int on, int seconds) {
  struct linger l;
  l.l_onoff = on;
  l.l_linger = seconds;
  return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0 ? neg_errno() : 0;
}

int dx_getlinger(int fd, int *on, int *seconds) {
  struct linger l;
  socklen_t len = sizeof l;
  memset(&l, 0, sizeof l);
  if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) < 0) return neg_errno();
  *on = l.l_onoff;
  *seconds = l.l_linger;
  return 0;
}

int dx_wait_fd(int fd, int events, int ms) {
  struct pollfd p;
  int r;
  p.fd = fd;
  p.events = (short)(((events & DX_READ) ? POLLIN : 0) | ((events & DX_WRITE) ? POLLOUT : 0));
  p.revents = 0;
  r = poll(&p, 1, ms);
  if (r < 0) return errno == EINTR ? 0 : neg_errno();
  return r;
}

/* --- error names ------------------------------------------------------- */

#define DX_ERRNAMES(X) \
  X(EPERM) X(ENOENT) X(EINTR) X(EIO) X(EBADF) X(EAGAIN) X(ENOMEM) X(EACCES) \
  X(EFAULT) X(EBUSY) X(EEXIST) X(ENOTDIR) X(EISDIR) X(EINVAL) X(ENFILE) \
  X(EMFILE) X(ENOSPC) X(EPIPE) X(ENAMETOOLONG) X(ENOTSOCK) X(EDESTADDRREQ) \
  X(EMSGSIZE) X(EPROTOTYPE) X(ENOPROTOOPT) X(EPROTONOSUPPORT) X(EOPNOTSUPP) \
  X(EAFNOSUPPORT) X(EADDRINUSE) X(EADDRNOTAVAIL) X(ENETDOWN) X(ENETUNREACH) \
  X(ENETRESET) X(ECONNABORTED) X(ECONNRESET) X(ENOBUFS) X(EISCONN) \
  X(ENOTCONN) X(ESHUTDOWN) X(ETIMEDOUT) X(ECONNREFUSED) X(EHOSTDOWN) \
  X(EHOSTUNREACH) X(EALREADY) X(EINPROGRESS) X(ECANCELED) X(ELOOP) X(EPROTO) \
  X(ENODEV)

const char *dx_errname(int code) {
  if (code == DX_ECERT) return "ECERT";
  if (code == DX_ECLOSED) return "EBADF";
  if (DX_ISEAI(code)) {
    int i = -code - DX_EAI_BASE;
    return i < NEAI ? eai_names[i].name : "EAI_FAIL";
  }
#define X(n) if (-code == n) return #n;
  DX_ERRNAMES(X)
#undef X
  return "EUNKNOWN";     /* an errno this table does not name: rare */
}

const char *dx_strerror(int code) {
  if (code == DX_ECERT) return "certificate verification failed";
  if (code == DX_ECLOSED) return "socket is closed";
  if (DX_ISEAI(code)) {
    int i = -code - DX_EAI_BASE;
    return gai_strerror(i < NEAI ? eai_names[i].eai : EAI_FAIL);
  }
  return strerror(-code);
}
