/*
 * dx_proc.c - processes and what they hand each other (see dx_proc.h).
 * A listener handed down is checked before it is taken (a socket, a
 * stream, listening), then gets what duplex gives every descriptor of its
 * own: O_NONBLOCK and FD_CLOEXEC. Spawning goes through posix_spawn, so
 * nothing but the exec runs in the child of a process that has threads
 * (the resolver's); a descriptor handed to the child is one posix_spawn
 * dup2s onto itself, which clears its FD_CLOEXEC in the child alone.
 */
#include "dx_prefix.h"
#include "dx_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int dx_adopt_listener(int fd) {
  int type = 0, listening = 0, fl;
  socklen_t len = sizeof type;
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) return -EBADF;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return -errno;
  if (type != SOCK_STREAM) return -EINVAL;
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0) return -errno;
  if (!listening) return -EINVAL;
  if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
  if ((fl = fcntl(fd, F_GETFD)) < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) return -errno;
  return 0;
}

/* A whole decimal number in [0, max], or -1. */
static long number(const char *s, long max) {
  char *end;
  long v;
  if (s == NULL || *s < '0' || *s > '9') return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno || *end != '\0' || v > max) return -1;
  return v;
}

/* sd_listen_fds(3): descriptors from 3 on; names in LISTEN_FDNAMES, one
 * per descriptor, separated by ':'. */
int dx_systemd_fd(const char *name) {
  long pid = number(getenv("LISTEN_PID"), 0x7fffffffL);
  long n = number(getenv("LISTEN_FDS"), 4096);
  const char *names = getenv("LISTEN_FDNAMES"), *p;
  size_t len;
  long i;
  if (pid != (long)getpid() || n <= 0) return -ENOENT;
  if (name == NULL) return 3;
  if (names == NULL) return -ENOENT;
  len = strlen(name);
  for (i = 0, p = names; i < n; i++) {
    const char *end = strchr(p, ':');
    size_t l = end ? (size_t)(end - p) : strlen(p);
    if (l == len && memcmp(p, name, len) == 0) return 3 + (int)i;
    if (!end) break;
    p = end + 1;
  }
  return -ENOENT;
}

pid_t dx_spawn(char *const argv[], char *const envp[], const int *keep, int nkeep) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, deflt;
  pid_t pid = -1;
  int i, rc;
  if ((rc = posix_spawn_file_actions_init(&fa)) != 0) return -rc;
  if ((rc = posix_spawnattr_init(&at)) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return -rc;
  }
  for (i = 0; rc == 0 && i < nkeep; i++)
    rc = posix_spawn_file_actions_adddup2(&fa, keep[i], keep[i]);
  sigemptyset(&none);
  sigfillset(&deflt);
  sigdelset(&deflt, SIGKILL);
  sigdelset(&deflt, SIGSTOP);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&at, &none);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&at, &deflt);
  if (rc == 0) rc = posix_spawnattr_setpgroup(&at, 0);
  if (rc == 0)
    rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                       POSIX_SPAWN_SETPGROUP);
  if (rc == 0) rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, envp);
  posix_spawnattr_destroy(&at);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -rc;
}

int dx_reap(pid_t pid, int *how, int *code) {
  int st = 0;
  pid_t r;
  do r = waitpid(pid, &st, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  if (r == 0) return 0;
  if (WIFSIGNALED(st)) {
    *how = 1;
    *code = WTERMSIG(st);
  } else {
    *how = 0;
    *code = WEXITSTATUS(st);
  }
  return 1;
}

int dx_socketpair(int fds[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) return -errno;
  return 0;
}

int dx_kill(pid_t pid, int signo) {
  return kill(pid, signo) < 0 ? -errno : 0;
}

int dx_ncpu(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
