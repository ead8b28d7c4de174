/*
 * dx_splice.c - splice(2) through a pipe of our own (see dx_splice.h).
 * Like dx_fd.c's writes, the only process-wide state touched is the
 * calling thread's signal mask, for the length of a batch of splices into
 * sockets: unlike send, splice has no MSG_NOSIGNAL.
 */
#include "dx_prefix.h"
#include "dx_splice.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__) && defined(SPLICE_F_NONBLOCK)
#define DX_HAVE_SPLICE 1
#else
#define DX_HAVE_SPLICE 0
#endif

int dx_splice_mode(void) {
  static int mode = -1;
  if (mode < 0) {
    const char *e = getenv("DUPLEX_SPLICE");
    mode = !DX_HAVE_SPLICE || (e && strcmp(e, "off") == 0) ? 0
         : e && strcmp(e, "always") == 0 ? 2 : 1;
  }
  return mode;
}

long dx_pipe_open(int fds[2], size_t size) {
  long cap = 65536;                 /* Linux's default, if we cannot ask */
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) return -errno;
#ifdef F_SETPIPE_SZ
  {
    long got = fcntl(fds[1], F_SETPIPE_SZ, (int)size);   /* EPERM over the limit */
    if (got < 0) got = fcntl(fds[1], F_GETPIPE_SZ);
    if (got > 0) cap = got;
  }
#else
  (void)size;
#endif
  return cap;
}

void dx_pipe_close(int fds[2]) {
  if (fds[0] >= 0) close(fds[0]);
  if (fds[1] >= 0) close(fds[1]);
  fds[0] = fds[1] = -1;
}

#if DX_HAVE_SPLICE
static long splice_once(int from, int to, size_t n) {
  for (;;) {
    ssize_t r = splice(from, NULL, to, NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (r >= 0) return (long)r;
    if (errno == EINTR) continue;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}
#else
static long splice_once(int from, int to, size_t n) {
  (void)from, (void)to, (void)n;
  return -ENOSYS;
}
#endif

long dx_splice_in(int fd, int pipew, size_t n) {
  return splice_once(fd, pipew, n);
}

long dx_splice_out(int piper, int fd, size_t n) {
  return splice_once(piper, fd, n);
}

long dx_pipe_read(int piper, char *p, size_t n) {
  for (;;) {
    ssize_t r = read(piper, p, n);
    if (r >= 0) return (long)r;
    if (errno != EINTR) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

void dx_pipeguard_hold(dx_pipeguard *g) {
  sigset_t pipe, pending;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  sigpending(&pending);
  g->was_pending = sigismember(&pending, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
}

void dx_pipeguard_release(dx_pipeguard *g, int epipe) {
  if (epipe && !g->was_pending) {
    sigset_t pipe;
    struct timespec zero = {0, 0};
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigtimedwait(&pipe, NULL, &zero);     /* the SIGPIPE our splice raised */
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}
