/*
 * epollfail.c - an LD_PRELOAD for spec/07 and spec/40: epoll that refuses
 * new registrations, as it does once /proc/sys/fs/epoll/max_user_watches
 * is reached. While the file named by EPOLLFAIL_FLAG exists, every
 * EPOLL_CTL_ADD fails with ENOSPC; the test creates and removes that file
 * to start and end the shortage. Everything else passes through.
 * Build: make shims (build/shim/epollfail.so)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

int epoll_ctl(int ep, int op, int fd, struct epoll_event *ev) {
  static int (*real)(int, int, int, struct epoll_event *);
  const char *flag = getenv("EPOLLFAIL_FLAG");
  if (op == EPOLL_CTL_ADD && flag != NULL && access(flag, F_OK) == 0) {
    errno = ENOSPC;
    return -1;
  }
  if (real == NULL) real = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
  return real(ep, op, fd, ev);
}
