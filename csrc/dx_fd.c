/*
 * dx_fd.c - descriptors that are not sockets of ours (see dx_fd.h). The
 * only process-wide state touched is the calling thread's signal mask,
 * for the length of one write: SIGPIPE is held back, and a SIGPIPE that
 * the write itself raised is taken off before the mask is restored.
 */
#include "dx_prefix.h"
#include "dx_fd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int dx_fd_adopt(int fd, int *oldflags) {
  int flags = fcntl(fd, F_GETFL), type = 0;
  socklen_t len = sizeof type;
  if (flags < 0) return -errno;
  *oldflags = flags;
  if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

void dx_fd_restore(int fd, int oldflags) {
  fcntl(fd, F_SETFL, oldflags);
}

long dx_read(int fd, char *p, size_t n) {
  for (;;) {
    ssize_t r = read(fd, p, n);
    if (r >= 0) return (long)r;
    if (errno == EWOULDBLOCK) return -EAGAIN;
    if (errno != EINTR) return -errno;
  }
}

long dx_writev(int fd, struct iovec *iov, int iovcnt) {
  sigset_t pipe, old, pending;
  ssize_t r;
  int err, was_pending;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  sigpending(&pending);
  was_pending = sigismember(&pending, SIGPIPE);
  sigprocmask(SIG_BLOCK, &pipe, &old);
  do r = writev(fd, iov, iovcnt); while (r < 0 && errno == EINTR);
  err = errno;
  if (r < 0 && err == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    sigtimedwait(&pipe, NULL, &zero);        /* the SIGPIPE this write raised */
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (r >= 0) return (long)r;
  return err == EWOULDBLOCK ? -EAGAIN : -err;
}
