/*
 * dx_splice.h - moving bytes between two descriptors through a pipe with
 * splice(2), without copying them through user space. A pipe of our own
 * holds what was taken from the source and not yet given to the
 * destination. Where the kernel cannot splice (not Linux, gVisor, some
 * descriptor types) the caller copies through a buffer instead. Pure C,
 * no Lua; every call returns >= 0 or -errno.
 */
#ifndef DX_SPLICE_H
#define DX_SPLICE_H

#include "dx_prefix.h"
#include <signal.h>
#include <stddef.h>

/* When to splice: 0 never (not built for this system, or DUPLEX_SPLICE=off
 * in the environment), 1 for bulk streams (the default), 2 always
 * (DUPLEX_SPLICE=always). The environment is read once: a test hook. */
int dx_splice_mode(void);
/* A pipe (fds[0] read end, fds[1] write end), non-blocking and
 * close-on-exec, grown towards `size` bytes if the kernel lets us. Its
 * capacity in bytes, or -errno. */
long dx_pipe_open(int fds[2], size_t size);
void dx_pipe_close(int fds[2]);
/* Up to n bytes from fd into the pipe: a count, 0 at end of stream,
 * -EAGAIN, or -errno (-EINVAL, -ENOSYS: fd cannot be spliced). */
long dx_splice_in(int fd, int pipew, size_t n);
/* Up to n bytes from the pipe into fd: a count, -EAGAIN or -errno. Call
 * it only between dx_pipeguard_hold and _release: a splice into a closed
 * socket raises SIGPIPE, which they hold back and take off. */
long dx_splice_out(int piper, int fd, size_t n);
/* Up to n bytes from the pipe into p (to give them back to a buffer). */
long dx_pipe_read(int piper, char *p, size_t n);

typedef struct dx_pipeguard {
  sigset_t old;
  int was_pending;
} dx_pipeguard;
void dx_pipeguard_hold(dx_pipeguard *g);
/* epipe: a splice said EPIPE, so the SIGPIPE it raised is taken off. */
void dx_pipeguard_release(dx_pipeguard *g, int epipe);

#endif
