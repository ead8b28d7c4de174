/*
 * dx_loop_epoll.c - epoll backend, included by dx_loop.c. Interest is
 * registered once per descriptor, edge-triggered for both directions, and
 * kept until close: a wait costs no epoll_ctl. Edge triggering is safe
 * because a task only waits after its syscall said EAGAIN, and an edge that
 * arrives while nobody waits is simply dropped.
 */
#include <sys/epoll.h>
#include <unistd.h>

#define DX_EVENTS 256

int dx_backend_init(dx_loop *l) {
  l->fd = epoll_create1(EPOLL_CLOEXEC);
  return l->fd < 0 ? -errno : 0;
}

void dx_backend_free(dx_loop *l) {
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
}

int dx_backend_add(dx_loop *l, dx_watch *w) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
  ev.data.ptr = w;
  if (epoll_ctl(l->fd, EPOLL_CTL_ADD, w->fd, &ev) < 0) {
    if (errno != EEXIST) return -errno;
    /* a stale registration of a reused fd number: take it over */
    if (epoll_ctl(l->fd, EPOLL_CTL_MOD, w->fd, &ev) < 0) return -errno;
  }
  w->reg = 1;
  return 0;
}

void dx_backend_del(dx_loop *l, dx_watch *w) {
  struct epoll_event ev;   /* non-NULL for kernels before 2.6.9 */
  memset(&ev, 0, sizeof ev);
  if (w->fd >= 0) epoll_ctl(l->fd, EPOLL_CTL_DEL, w->fd, &ev);
  w->reg = 0;
}

int dx_backend_wait(dx_loop *l, int ms) {
  struct epoll_event evs[DX_EVENTS];
  int n = epoll_wait(l->fd, evs, DX_EVENTS, ms), i;
  if (n < 0) return errno == EINTR ? 0 : -errno;   /* EINTR: zero events */
  for (i = 0; i < n; i++) {
    unsigned e = evs[i].events;
    int bits = 0;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) bits |= DX_READ;
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) bits |= DX_WRITE;
    if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) bits |= DX_SUSPECT | DX_READ;
    dx_loop_fire(l, evs[i].data.ptr, bits);
  }
  return 0;
}
