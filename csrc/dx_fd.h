/*
 * dx_fd.h - descriptors that are not sockets of ours: a pipe, a tty,
 * stdin/stdout, a socket inherited from a parent. Adopting one makes it
 * non-blocking and says what it was, so that the flag can be put back;
 * reads and writes work on any of them, and a write to a pipe whose reader
 * is gone fails with -EPIPE instead of raising SIGPIPE. Pure C, no Lua.
 */
#ifndef DX_FD_H
#define DX_FD_H

#include "dx_prefix.h"
#include <stddef.h>
#include <sys/uio.h>

/* Make fd non-blocking; *oldflags gets its file status flags to restore.
 * Returns 1 for a stream socket, 0 for anything else, or -errno. */
int dx_fd_adopt(int fd, int *oldflags);
/* Put the file status flags back (O_NONBLOCK as it was). */
void dx_fd_restore(int fd, int oldflags);
long dx_read(int fd, char *p, size_t n);            /* 0 is end of stream */
long dx_writev(int fd, struct iovec *iov, int iovcnt);

#endif
