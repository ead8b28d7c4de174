/*
 * syscount.c - an LD_PRELOAD shim that counts a server's socket system
 * calls without slowing it (strace does, and so changes what it counts:
 * a slowed server finds more data ready). At exit, or on SIGUSR2, it
 * writes one line "name=count ..." to the file in SYSCOUNT_OUT.
 *
 *   cc -shared -fPIC -O2 -o bin/syscount.so syscount.c -ldl
 *   SYSCOUNT_OUT=/tmp/c.txt LD_PRELOAD=bin/syscount.so lua5.4 server.lua
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

enum { RECV, RECVFROM, READ, SENDMSG, SEND, WRITE, WRITEV, EPOLL_WAIT, ACCEPT4, NCOUNT };
static const char *const names[NCOUNT] = {"recv", "recvfrom", "read", "sendmsg", "send",
                                          "write", "writev", "epoll_wait", "accept4"};
static volatile unsigned long count[NCOUNT];

#define NEXT(type, name) ((type)dlsym(RTLD_NEXT, name))

static void dump(void) {
  const char *path = getenv("SYSCOUNT_OUT");
  char line[512];
  int n = 0, i, fd;
  if (path == NULL) return;
  for (i = 0; i < NCOUNT; i++)
    n += snprintf(line + n, sizeof line - (size_t)n, "%s=%lu ", names[i], count[i]);
  line[n - 1] = '\n';
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    ssize_t (*wr)(int, const void *, size_t) = NEXT(ssize_t (*)(int, const void *, size_t), "write");
    (void)!wr(fd, line, (size_t)n);
    close(fd);
  }
}

static void on_usr2(int sig) { (void)sig; dump(); }

__attribute__((constructor)) static void init(void) {
  signal(SIGUSR2, on_usr2);
  atexit(dump);
}

ssize_t recv(int fd, void *b, size_t n, int f) {
  count[RECV]++;
  return NEXT(ssize_t (*)(int, void *, size_t, int), "recv")(fd, b, n, f);
}
ssize_t recvfrom(int fd, void *b, size_t n, int f, struct sockaddr *a, socklen_t *l) {
  count[RECVFROM]++;
  return NEXT(ssize_t (*)(int, void *, size_t, int, struct sockaddr *, socklen_t *),
              "recvfrom")(fd, b, n, f, a, l);
}
ssize_t read(int fd, void *b, size_t n) {
  count[READ]++;
  return NEXT(ssize_t (*)(int, void *, size_t), "read")(fd, b, n);
}
ssize_t sendmsg(int fd, const struct msghdr *m, int f) {
  count[SENDMSG]++;
  return NEXT(ssize_t (*)(int, const struct msghdr *, int), "sendmsg")(fd, m, f);
}
ssize_t send(int fd, const void *b, size_t n, int f) {
  count[SEND]++;
  return NEXT(ssize_t (*)(int, const void *, size_t, int), "send")(fd, b, n, f);
}
ssize_t write(int fd, const void *b, size_t n) {
  count[WRITE]++;
  return NEXT(ssize_t (*)(int, const void *, size_t), "write")(fd, b, n);
}
ssize_t writev(int fd, const struct iovec *v, int n) {
  count[WRITEV]++;
  return NEXT(ssize_t (*)(int, const struct iovec *, int), "writev")(fd, v, n);
}
int epoll_wait(int ep, struct epoll_event *e, int n, int ms) {
  count[EPOLL_WAIT]++;
  return NEXT(int (*)(int, struct epoll_event *, int, int), "epoll_wait")(ep, e, n, ms);
}
int accept4(int fd, struct sockaddr *a, socklen_t *l, int f) {
  count[ACCEPT4]++;
  return NEXT(int (*)(int, struct sockaddr *, socklen_t *, int), "accept4")(fd, a, l, f);
}
