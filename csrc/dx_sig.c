/*
 * dx_sig.c - signals as readable events (see dx_sig.h). The self-pipe
 * handler only writes one byte (async-signal-safe), never blocking: a pipe
 * full of signals already says that signals came. With signalfd no handler
 * runs at all: the signal stays pending until read.
 */
#include "dx_prefix.h"
#include "dx_sig.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The self-pipe is the default, on Linux too: signalfd needs the signal
 * blocked, and a blocked signal stays blocked in every process the
 * program starts (io.popen, os.execute), which would then ignore TERM;
 * a handler is reset by exec. -DDX_USE_SIGNALFD builds the other. */
#if defined(__linux__) && defined(DX_USE_SIGNALFD)
#define DX_SIGNALFD 1
#include <sys/signalfd.h>
#endif

static const struct { const char *name; int signo; } names[] = {
  {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
  {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
  {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
  {"TTOU", SIGTTOU}, {"WINCH", SIGWINCH}, {"URG", SIGURG}, {"XCPU", SIGXCPU},
  {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"SYS", SIGSYS},
  {NULL, 0}
};

int dx_signo(const char *name) {
  int i;
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  for (i = 0; names[i].name; i++)
    if (strcmp(names[i].name, name) == 0) return names[i].signo;
  return 0;
}

const char *dx_signame(int signo) {
  int i;
  for (i = 0; names[i].name; i++)
    if (names[i].signo == signo) return names[i].name;
  return "?";
}

void dx_sigs_init(dx_sigs *s) {
  memset(s, 0, sizeof *s);
  s->fd = s->wfd = -1;
  sigemptyset(&s->watched);
}

int dx_sig_any(const dx_sigs *s) {
  int i;
  for (i = 1; i < DX_NSIG; i++)
    if (sigismember(&s->watched, i) == 1) return 1;
  return 0;
}

#ifdef DX_SIGNALFD

int dx_sig_watch(dx_sigs *s, int signo) {
  sigset_t one, old;
  int fd;
  if (sigismember(&s->watched, signo) == 1) return 0;
  sigemptyset(&one);
  sigaddset(&one, signo);
  if (sigprocmask(SIG_BLOCK, &one, &old) < 0) return -errno;
  s->wasblocked[signo] = sigismember(&old, signo) == 1;
  sigaddset(&s->watched, signo);
  fd = signalfd(s->fd, &s->watched, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    dx_sig_unwatch(s, signo);
    return -e;
  }
  s->fd = fd;
  return 0;
}

int dx_sig_unwatch(dx_sigs *s, int signo) {
  sigset_t one;
  if (sigismember(&s->watched, signo) != 1) return 0;
  sigdelset(&s->watched, signo);
  if (s->fd >= 0) signalfd(s->fd, &s->watched, SFD_NONBLOCK | SFD_CLOEXEC);
  if (!s->wasblocked[signo]) {
    struct timespec zero = {0, 0};
    sigemptyset(&one);
    sigaddset(&one, signo);
    /* one that came while watched was ours: it must not now take its
     * default action (end the process) */
    while (sigtimedwait(&one, NULL, &zero) > 0) {}
    sigprocmask(SIG_UNBLOCK, &one, NULL);
  }
  return 0;
}

int dx_sigs_refork(dx_sigs *s) {
  (void)s;
  return 0;
}

int dx_sig_next(dx_sigs *s) {
  struct signalfd_siginfo si;
  ssize_t n;
  if (s->fd < 0) return 0;
  do n = read(s->fd, &si, sizeof si); while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  return n == (ssize_t)sizeof si ? (int)si.ssi_signo : 0;
}

#else /* self-pipe */

/* For the handler, which gets no argument of ours: the pipe, the process
 * it is for, and the signals that came to a fork child before it had a
 * pipe of its own (the parent's must not carry them). */
static int pipe_wfd = -1;
static volatile pid_t pipe_pid;
static volatile sig_atomic_t stray[DX_NSIG];

static void on_signal(int signo) {
  int e = errno;
  unsigned char b = (unsigned char)signo;
  if (getpid() != pipe_pid) stray[signo] = 1;
  else if (write(pipe_wfd, &b, 1) < 0) {}   /* full: signals are known to be there */
  errno = e;
}

static int make_pipe(dx_sigs *s) {
  int p[2], i;
  if (s->fd >= 0) return 0;
  if (pipe(p) < 0) return -errno;
  for (i = 0; i < 2; i++) {
    fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
    fcntl(p[i], F_SETFD, FD_CLOEXEC);
  }
  s->fd = p[0];
  s->wfd = pipe_wfd = p[1];
  pipe_pid = getpid();               /* after pipe_wfd: the handler reads it first */
  return 0;
}

int dx_sigs_refork(dx_sigs *s) {
  int oldr = s->fd, oldw = s->wfd, rc, i;
  if (oldr < 0 || pipe_pid == getpid()) return 0;
  s->fd = s->wfd = -1;
  if ((rc = make_pipe(s)) < 0) {
    s->fd = oldr;
    s->wfd = oldw;
    return rc;
  }
  close(oldr);                       /* this process's copies of the parent's pipe */
  close(oldw);
  for (i = 1; i < DX_NSIG; i++) {
    if (stray[i]) {
      unsigned char b = (unsigned char)i;
      stray[i] = 0;
      if (write(s->wfd, &b, 1) < 0) {}
    }
  }
  return 0;
}

int dx_sig_watch(dx_sigs *s, int signo) {
  struct sigaction sa;
  int rc;
  if (sigismember(&s->watched, signo) == 1) return 0;
  if ((rc = make_pipe(s)) < 0) return rc;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(signo, &sa, &s->old[signo]) < 0) return -errno;
  sigaddset(&s->watched, signo);
  return 0;
}

int dx_sig_unwatch(dx_sigs *s, int signo) {
  if (sigismember(&s->watched, signo) != 1) return 0;
  sigaction(signo, &s->old[signo], NULL);
  sigdelset(&s->watched, signo);
  return 0;
}

int dx_sig_next(dx_sigs *s) {
  unsigned char b;
  ssize_t n;
  if (s->fd < 0) return 0;
  do n = read(s->fd, &b, 1); while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  return n == 1 ? b : 0;
}

#endif

void dx_sigs_free(dx_sigs *s) {
  int i;
  for (i = 1; i < DX_NSIG; i++) dx_sig_unwatch(s, i);
  if (s->fd >= 0) close(s->fd);
  if (s->wfd >= 0) close(s->wfd);
  s->fd = s->wfd = -1;
}
