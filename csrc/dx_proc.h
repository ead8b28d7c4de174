/*
 * dx_proc.h - processes and what they hand each other (dx_proc.c):
 * listeners inherited as descriptors (from a supervisor, from systemd,
 * from duplex.cluster's master), spawning a program that keeps some
 * descriptors, reaping children without waiting. No Lua in this file.
 */
#ifndef DX_PROC_H
#define DX_PROC_H

#include "dx_prefix.h"
#include <sys/types.h>

/* Make fd, a descriptor this process inherited, a listener of ours:
 * -EBADF if it is not open, -ENOTSOCK if it is not a socket, -EINVAL if
 * it is not a listening stream socket; else it is made non-blocking and
 * close-on-exec and 0 is returned. */
int dx_adopt_listener(int fd);

/* The descriptor systemd passed under name (NULL: the first one), from
 * LISTEN_PID (must be this process), LISTEN_FDS and LISTEN_FDNAMES; or
 * -ENOENT (nothing passed to this process, or no such name). */
int dx_systemd_fd(const char *name);

/* Start argv[0] (searched in PATH) with argv and envp, in a process
 * group of its own, with default signal dispositions and an empty
 * signal mask; the descriptors keep[0..nkeep) stay open in it (at the
 * same numbers), every other close-on-exec one is closed. Returns the
 * pid or -errno (the exec's own failure included). */
pid_t dx_spawn(char *const argv[], char *const envp[], const int *keep, int nkeep);

/* Has child pid ended? Without waiting: 1 when it has (it is reaped:
 * *how 0 for an exit, *code its status; 1 for a signal, *code the
 * signal), 0 while it runs, -errno (-ECHILD: no such child). Only that
 * pid: children the program started otherwise (io.popen) stay its own. */
int dx_reap(pid_t pid, int *how, int *code);

/* A pair of connected Unix stream sockets, close-on-exec, non-blocking. */
int dx_socketpair(int fds[2]);

/* kill(pid, signo): 0 or -errno. */
int dx_kill(pid_t pid, int signo);

/* The processors online (at least 1). */
int dx_ncpu(void);

#endif
