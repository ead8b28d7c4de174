/*
 * shortio.c - an LD_PRELOAD shim that makes socket I/O short and
 * interrupted, to test that a program copes with partial transfers and EINTR.
 *
 * Build:  make shims (build/shim/shortio.so)
 * Use:    LD_PRELOAD=./build/shim/shortio.so lua5.4 spec/shim/shortio_check.lua
 *
 * Wrapped: read, write, readv, writev, recv, recvfrom, recvmsg, send, sendto,
 * sendmsg (and epoll_ctl, epoll_wait, close: below). Only calls on a stream socket are touched: whether the descriptor
 * is one is asked of the kernel on every call (getsockopt SO_TYPE), so
 * nothing is cached that could outlive a close, and files, pipes and
 * terminals (Lua's own I/O, a test runner's output) pass straight through.
 * Datagram sockets pass through too: cutting a datagram would change what is
 * sent, not how it is delivered.
 *
 * On a stream socket each call either
 *   - fails with -1/EINTR without doing anything (one call in SHORTIO_EINTR,
 *     chosen at random; default 8; 0 turns this off), or
 *   - is passed on with its length cut to a random 1..SHORTIO_MAX bytes
 *     (default 7); for the iovec calls the iovec is copied and cut so that
 *     its total is that many bytes. A call asking for 0 bytes stays 0.
 * A read it cut short owes the reader an edge: the shim also wraps epoll_ctl,
 * epoll_wait and close, and the next epoll_wait reports the descriptor
 * readable again. That is the kernel's own contract (a short read means
 * drained, and every later byte raises an edge), which a reader under
 * edge-triggered epoll may trust: duplex does (spec/core/et_short_read.c).
 * The random sequence is seeded from SHORTIO_SEED (default fixed), so a run
 * is repeatable as far as the program's own call order is.
 * SHORTIO_STATS=1 prints the counts to stderr at exit (from a process that
 * made socket calls).
 *
 * Not thread-safe beyond a simple PRNG whose races only change the sequence.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* glibc declares recvfrom and sendto with transparent-union address
 * arguments when _GNU_SOURCE is on; match its declarations exactly. */
#ifdef __GLIBC__
#define SA_ARG __SOCKADDR_ARG
#define CSA_ARG __CONST_SOCKADDR_ARG
#else
#define SA_ARG struct sockaddr *
#define CSA_ARG const struct sockaddr *
#endif

/* The cut never needs more than this many iovec entries: each kept entry
 * carries at least one byte (empty entries are dropped) and the cut is at
 * most SHORTIO_MAX bytes; SHORTIO_MAX above this is clamped to it. */
#define SHIM_IOV 1024

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*readv_fn)(int, const struct iovec *, int);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);
typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*recvfrom_fn)(int, void *, size_t, int, SA_ARG, socklen_t *);
typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, CSA_ARG, socklen_t);
typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);
typedef int (*epoll_ctl_fn)(int, int, int, struct epoll_event *);
typedef int (*epoll_wait_fn)(int, struct epoll_event *, int, int);
typedef int (*close_fn)(int);

static struct {
  read_fn read;
  write_fn write;
  readv_fn readv;
  writev_fn writev;
  recv_fn recv;
  send_fn send;
  recvfrom_fn recvfrom;
  sendto_fn sendto;
  recvmsg_fn recvmsg;
  sendmsg_fn sendmsg;
  epoll_ctl_fn epoll_ctl;
  epoll_wait_fn epoll_wait;
  close_fn close;
} real;

static int inited;
static size_t max_bytes = 7;
static unsigned long eintr_one_in = 8;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static int want_stats;
static unsigned long n_calls, n_eintr, n_cut, n_bytes;

/* The next definition of name. dlsym returns void *, which POSIX lets a
 * function pointer be made from; LOAD copies the bits so that -pedantic has
 * nothing to say either. */
static void *next_sym(const char *name) {
  void *p = dlsym(RTLD_NEXT, name);
  if (p == NULL) {
    /* stdio writes through libc's internal entry, not through this shim */
    fprintf(stderr, "shortio: dlsym(RTLD_NEXT, \"%s\") failed\n", name);
    abort();
  }
  return p;
}
#define LOAD(field, name) do { void *p_ = next_sym(name); \
    memcpy(&real.field, &p_, sizeof p_); } while (0)

static unsigned long env_ulong(const char *name, unsigned long dflt) {
  const char *s = getenv(name);
  char *end;
  unsigned long v;
  if (s == NULL || *s == '\0') return dflt;
  errno = 0;
  v = strtoul(s, &end, 0);
  if (errno != 0 || *end != '\0') return dflt;
  return v;
}

static void report(void) {
  char buf[200];
  int n;
  if (!want_stats || n_calls == 0 || real.write == NULL) return;
  n = snprintf(buf, sizeof buf,
               "shortio: %lu socket calls, %lu EINTR injected, %lu cut, %lu bytes moved\n",
               n_calls, n_eintr, n_cut, n_bytes);
  if (n > 0) (void)!real.write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void init(void) {
  unsigned long seed;
  if (inited) return;
  LOAD(read, "read");
  LOAD(write, "write");
  LOAD(readv, "readv");
  LOAD(writev, "writev");
  LOAD(recv, "recv");
  LOAD(send, "send");
  LOAD(recvfrom, "recvfrom");
  LOAD(sendto, "sendto");
  LOAD(recvmsg, "recvmsg");
  LOAD(sendmsg, "sendmsg");
  LOAD(epoll_ctl, "epoll_ctl");
  LOAD(epoll_wait, "epoll_wait");
  LOAD(close, "close");
  max_bytes = env_ulong("SHORTIO_MAX", 7);
  if (max_bytes == 0) max_bytes = 1;
  if (max_bytes > SHIM_IOV) max_bytes = SHIM_IOV;
  eintr_one_in = env_ulong("SHORTIO_EINTR", 8);
  seed = env_ulong("SHORTIO_SEED", 12345);
  rng_state ^= (uint64_t)seed * 0xD1B54A32D192ED03ull;
  if (rng_state == 0) rng_state = 1;
  want_stats = env_ulong("SHORTIO_STATS", 0) != 0;
  inited = 1;
  atexit(report);
}

__attribute__((constructor)) static void shim_ctor(void) { init(); }

/* xorshift64* */
static uint64_t rnd(void) {
  uint64_t x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* Whether fd is a stream socket. Preserves errno. */
static int is_stream(int fd) {
  int type = 0, saved = errno;
  socklen_t len = sizeof type;
  int ok = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
  errno = saved;
  return ok;
}

/* For a call on fd: 0 to pass it through untouched, 1 to shim it, -1 to
 * fail it with EINTR (errno is set). */
static int decide(int fd) {
  init();
  if (!is_stream(fd)) return 0;
  n_calls++;
  if (eintr_one_in != 0 && rnd() % eintr_one_in == 0) {
    n_eintr++;
    errno = EINTR;
    return -1;
  }
  return 1;
}

static size_t cut_len(size_t n) {
  size_t c;
  if (n == 0) return 0;
  c = 1 + (size_t)(rnd() % max_bytes);
  if (c < n) {
    n_cut++;
    return c;
  }
  return n;
}

static ssize_t moved(ssize_t r) {
  if (r > 0) n_bytes += (unsigned long)r;
  return r;
}

/* --- the edges cut reads owe --------------------------------------------- */

#define SHIM_FDS 65536
static epoll_data_t epdata[SHIM_FDS];   /* the fd's registration, if any */
static unsigned char registered[SHIM_FDS], owed[SHIM_FDS];
static int nowed;

/* A read on fd returned r of the n bytes asked. */
static ssize_t owe(int fd, ssize_t r, size_t n) {
  if (r > 0 && (size_t)r < n && fd >= 0 && fd < SHIM_FDS && registered[fd] && !owed[fd]) {
    owed[fd] = 1;
    nowed++;
  }
  return r;
}

static void forget(int fd) {
  if (fd < 0 || fd >= SHIM_FDS) return;
  if (owed[fd]) nowed--;
  registered[fd] = owed[fd] = 0;
}

static size_t iov_total(const struct iovec *iov, size_t cnt) {
  size_t t = 0, i;
  for (i = 0; i < cnt; i++) t += iov[i].iov_len;
  return t;
}

int epoll_ctl(int ep, int op, int fd, struct epoll_event *ev) {
  int r;
  init();
  r = real.epoll_ctl(ep, op, fd, ev);
  if (r == 0 && fd >= 0 && fd < SHIM_FDS) {
    if (op == EPOLL_CTL_DEL) forget(fd);
    else if (ev != NULL) {
      epdata[fd] = ev->data;
      registered[fd] = 1;
    }
  }
  return r;
}

int epoll_wait(int ep, struct epoll_event *evs, int max, int ms) {
  int n, fd;
  init();
  n = real.epoll_wait(ep, evs, max, nowed > 0 ? 0 : ms);
  if (n < 0 || nowed == 0) return n;
  for (fd = 0; fd < SHIM_FDS && nowed > 0 && n < max; fd++) {
    if (!owed[fd]) continue;
    owed[fd] = 0;
    nowed--;
    evs[n].events = EPOLLIN;
    evs[n].data = epdata[fd];
    n++;
  }
  return n;
}

int close(int fd) {
  init();
  forget(fd);
  return real.close(fd);
}

/* Copy iov[0..cnt) into out, dropping empty entries and ending once the
 * total reaches a random cut; returns the number of entries in out. */
static int cut_iov(const struct iovec *iov, size_t cnt, struct iovec *out) {
  size_t total = 0, i, left;
  int n = 0;
  for (i = 0; i < cnt; i++) total += iov[i].iov_len;
  left = cut_len(total);
  for (i = 0; i < cnt && left > 0 && n < SHIM_IOV; i++) {
    size_t l = iov[i].iov_len;
    if (l == 0) continue;
    if (l > left) l = left;
    out[n].iov_base = iov[i].iov_base;
    out[n].iov_len = l;
    left -= l;
    n++;
  }
  return n;
}

/* --- the wrappers ------------------------------------------------------- */

ssize_t read(int fd, void *buf, size_t n) {
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0) return real.read(fd, buf, n);
  return owe(fd, moved(real.read(fd, buf, cut_len(n))), n);
}

ssize_t write(int fd, const void *buf, size_t n) {
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0) return real.write(fd, buf, n);
  return moved(real.write(fd, buf, cut_len(n)));
}

ssize_t recv(int fd, void *buf, size_t n, int flags) {
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0) return real.recv(fd, buf, n, flags);
  return owe(fd, moved(real.recv(fd, buf, cut_len(n), flags)), n);
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0) return real.send(fd, buf, n, flags);
  return moved(real.send(fd, buf, cut_len(n), flags));
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, SA_ARG from, socklen_t *fromlen) {
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0) return real.recvfrom(fd, buf, n, flags, from, fromlen);
  return owe(fd, moved(real.recvfrom(fd, buf, cut_len(n), flags, from, fromlen)), n);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, CSA_ARG to, socklen_t tolen) {
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0) return real.sendto(fd, buf, n, flags, to, tolen);
  return moved(real.sendto(fd, buf, cut_len(n), flags, to, tolen));
}

ssize_t readv(int fd, const struct iovec *iov, int cnt) {
  struct iovec mine[SHIM_IOV];
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0 || cnt <= 0) return real.readv(fd, iov, cnt);
  return owe(fd, moved(real.readv(fd, mine, cut_iov(iov, (size_t)cnt, mine))),
             iov_total(iov, (size_t)cnt));
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  struct iovec mine[SHIM_IOV];
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0 || cnt <= 0) return real.writev(fd, iov, cnt);
  return moved(real.writev(fd, mine, cut_iov(iov, (size_t)cnt, mine)));
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  struct iovec mine[SHIM_IOV];
  struct msghdr m;
  ssize_t r;
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0 || msg == NULL || msg->msg_iovlen == 0) return real.recvmsg(fd, msg, flags);
  m = *msg;
  m.msg_iov = mine;
  m.msg_iovlen = (size_t)cut_iov(msg->msg_iov, msg->msg_iovlen, mine);
  r = real.recvmsg(fd, &m, flags);
  /* the kernel's answers (name and control lengths, flags) go back */
  msg->msg_namelen = m.msg_namelen;
  msg->msg_controllen = m.msg_controllen;
  msg->msg_flags = m.msg_flags;
  return owe(fd, moved(r), iov_total(msg->msg_iov, msg->msg_iovlen));
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  struct iovec mine[SHIM_IOV];
  struct msghdr m;
  int d = decide(fd);
  if (d < 0) return -1;
  if (d == 0 || msg == NULL || msg->msg_iovlen == 0) return real.sendmsg(fd, msg, flags);
  m = *msg;
  m.msg_iov = mine;
  m.msg_iovlen = (size_t)cut_iov(msg->msg_iov, msg->msg_iovlen, mine);
  return moved(real.sendmsg(fd, &m, flags));
}
