/*
 * dx_loop_epoll.c - epoll backend, included by dx_loop.c. Interest is
 * registered once per descriptor, edge-triggered for both directions, and
 * kept until close: a wait costs no epoll_ctl. Edge triggering is safe
 * because a task only waits after its syscall said EAGAIN (or a short
 * read the loop may trust, see dx_loop_drained), and the loop keeps every
 * edge in the watch's ready bits.
 *
 * An event names its watch by descriptor and registration tag, never by
 * pointer: a descriptor duplex closes is left registered, for close to
 * remove with no epoll_ctl of its own (one system call less per
 * connection). If its open file lives on elsewhere (a child forked inside
 * run, a descriptor passed to another process), the registration lives on
 * too, and its events, naming a tag nobody holds, are dropped.
 *
 * A fork child shares the instance until it makes one of its own
 * (dx_backend_refork, when its first run begins).
 */
#include <sys/epoll.h>
#include <unistd.h>

#define DX_EVENTS 256

typedef struct dx_epoll {
  dx_watch **byfd;       /* the watch registered under each descriptor */
  size_t cap;
  int tag;               /* the last registration's tag (1..INT_MAX) */
} dx_epoll;

int dx_backend_init(dx_loop *l) {
  l->backend = calloc(1, sizeof(dx_epoll));
  if (l->backend == NULL) return -ENOMEM;
  l->fd = epoll_create1(EPOLL_CLOEXEC);
  return l->fd < 0 ? -errno : 0;
}

void dx_backend_free(dx_loop *l) {
  dx_epoll *ep = l->backend;
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
  if (ep) free(ep->byfd);
  free(ep);
  l->backend = NULL;
}

/* The child's copy of the epoll descriptor goes (closing it leaves the
 * parent's instance alone); the registrations stay the parent's. */
int dx_backend_refork(dx_loop *l) {
  dx_epoll *ep = l->backend;
  int fd = epoll_create1(EPOLL_CLOEXEC);
  size_t i;
  if (fd < 0) return -errno;
  close(l->fd);
  l->fd = fd;
  for (i = 0; i < ep->cap; i++) {
    dx_watch *w = ep->byfd[i];
    if (w == NULL) continue;
    ep->byfd[i] = NULL;
    w->reg = 0;
    w->ready = DX_READ | DX_WRITE;   /* the next registration tells */
    w->suspect = 0;
  }
  return 0;
}

/* Make byfd hold descriptor fd. */
static int reserve_fd(dx_epoll *ep, int fd) {
  size_t cap = ep->cap ? ep->cap : 64;
  dx_watch **t;
  if (fd < 0) return -EBADF;
  while (cap <= (size_t)fd) cap *= 2;
  if (cap == ep->cap) return 0;
  t = realloc(ep->byfd, sizeof *t * (size_t)cap);
  if (t == NULL) return -ENOMEM;
  memset(t + ep->cap, 0, sizeof *t * (cap - ep->cap));
  ep->byfd = t;
  ep->cap = cap;
  return 0;
}

int dx_backend_add(dx_loop *l, dx_watch *w) {
  dx_epoll *ep = l->backend;
  struct epoll_event ev;
  int tag = ep->tag == 0x7fffffff ? 1 : ep->tag + 1;
  int rc = reserve_fd(ep, w->fd);
  if (rc < 0) return rc;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
  ev.data.u64 = (uint64_t)(unsigned)w->fd | (uint64_t)tag << 32;
  if (epoll_ctl(l->fd, EPOLL_CTL_ADD, w->fd, &ev) < 0) {
    if (errno != EEXIST) return -errno;
    /* a registration of this open file under this number that nobody
     * removed (another duplex.stream of the same descriptor): take it over */
    if (epoll_ctl(l->fd, EPOLL_CTL_MOD, w->fd, &ev) < 0) return -errno;
  }
  ep->tag = tag;
  ep->byfd[w->fd] = w;
  w->reg = tag;
  return 0;
}

/* Forget w; closing: its descriptor is closed next, and close removes the
 * registration (a live registration of a dead tag is harmless). */
void dx_backend_del(dx_loop *l, dx_watch *w, int closing) {
  dx_epoll *ep = l->backend;
  if (w->fd >= 0 && (size_t)w->fd < ep->cap && ep->byfd[w->fd] == w) {
    ep->byfd[w->fd] = NULL;
    if (!closing) {
      struct epoll_event ev;   /* non-NULL for kernels before 2.6.9 */
      memset(&ev, 0, sizeof ev);
      epoll_ctl(l->fd, EPOLL_CTL_DEL, w->fd, &ev);
    }
  }
  w->reg = 0;
}

int dx_backend_wait(dx_loop *l, int ms) {
  dx_epoll *ep = l->backend;
  struct epoll_event evs[DX_EVENTS];
  int n = epoll_wait(l->fd, evs, DX_EVENTS, ms), i;
  if (n < 0) return errno == EINTR ? 0 : -errno;   /* EINTR: zero events */
  for (i = 0; i < n; i++) {
    unsigned e = evs[i].events;
    int fd = (int)(evs[i].data.u64 & 0xffffffffu), tag = (int)(evs[i].data.u64 >> 32), bits = 0;
    dx_watch *w = (size_t)fd < ep->cap ? ep->byfd[fd] : NULL;
    if (w == NULL || w->reg != tag) continue;     /* a closed watch's registration */
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) bits |= DX_READ;
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) bits |= DX_WRITE;
    if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) bits |= DX_SUSPECT | DX_READ;
    dx_loop_fire(l, w, bits);
  }
  return 0;
}
