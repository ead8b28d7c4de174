/*
 * nosplice.c - an LD_PRELOAD for spec/70: a kernel that cannot splice these
 * descriptors, so that client:forward's fallback to its buffer runs.
 *   NOSPLICE=in    splice from a socket into a pipe fails with EINVAL
 *   NOSPLICE=out   splice from a pipe into a socket fails with EINVAL (the
 *                  pipe already holds bytes: they must go back to the buffer)
 *   NOSPLICE=pipe  pipe2 fails with EMFILE (no pipe to splice through)
 * At exit it writes "in=N out=N pipe=N" (the failures it made) to the file
 * NOSPLICE_LOG names, so that a spec knows the fallback was taken. Only the
 * first process acts: the peers it starts inherit LD_PRELOAD, not the fault.
 * Build: make shims (build/shim/nosplice.so)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int armed, failed_in, failed_out, failed_pipe;

/* The first process keeps its pid across exec (env execs lua5.4); the
 * peers it starts have their own. */
__attribute__((constructor)) static void arm(void) {
  const char *first = getenv("NOSPLICE_PID");
  char pid[32];
  snprintf(pid, sizeof pid, "%ld", (long)getpid());
  if (first == NULL) setenv("NOSPLICE_PID", pid, 1);
  armed = first == NULL || strcmp(first, pid) == 0;
}

static int mode_is(const char *m) {
  const char *e = getenv("NOSPLICE");
  return armed && e != NULL && strcmp(e, m) == 0;
}

static int is_pipe(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
               unsigned int flags) {
  static ssize_t (*real)(int, loff_t *, int, loff_t *, size_t, unsigned int);
  if (mode_is("in") && is_pipe(fd_out) && !is_pipe(fd_in)) {
    failed_in++;
    errno = EINVAL;
    return -1;
  }
  if (mode_is("out") && is_pipe(fd_in) && !is_pipe(fd_out)) {
    failed_out++;
    errno = EINVAL;
    return -1;
  }
  if (real == NULL) real = (ssize_t (*)(int, loff_t *, int, loff_t *, size_t, unsigned int))
                             dlsym(RTLD_NEXT, "splice");
  return real(fd_in, off_in, fd_out, off_out, len, flags);
}

int pipe2(int fds[2], int flags) {
  static int (*real)(int *, int);
  if (mode_is("pipe")) {
    failed_pipe++;
    errno = EMFILE;
    return -1;
  }
  if (real == NULL) real = (int (*)(int *, int))dlsym(RTLD_NEXT, "pipe2");
  return real(fds, flags);
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("NOSPLICE_LOG");
  FILE *f;
  if (!armed || path == NULL || (f = fopen(path, "w")) == NULL) return;
  fprintf(f, "in=%d out=%d pipe=%d\n", failed_in, failed_out, failed_pipe);
  fclose(f);
}
