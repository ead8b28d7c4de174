/*
 * dx_loop_poll.c - poll(2) backend for systems without epoll, included by
 * dx_loop.c (build with -DDX_USE_POLL to try it on Linux). It keeps a table
 * of registered watches and asks only for the directions somebody waits on,
 * so a level-triggered poll never spins on data nobody wants yet.
 */
#include <poll.h>

typedef struct dx_pollset {
  dx_watch **w;
  struct pollfd *p;
  int n, cap;
} dx_pollset;

int dx_backend_init(dx_loop *l) {
  l->backend = calloc(1, sizeof(dx_pollset));
  return l->backend ? 0 : -ENOMEM;
}

void dx_backend_free(dx_loop *l) {
  dx_pollset *ps = l->backend;
  if (ps) {
    free(ps->w);
    free(ps->p);
    free(ps);
  }
  l->backend = NULL;
}

/* Nothing of the table lives in the kernel: a fork child's is its own. */
int dx_backend_refork(dx_loop *l) {
  (void)l;
  return 0;
}

int dx_backend_add(dx_loop *l, dx_watch *w) {
  dx_pollset *ps = l->backend;
  if (ps->n == ps->cap) {
    int cap = ps->cap ? 2 * ps->cap : 64;
    dx_watch **nw = realloc(ps->w, sizeof *nw * (size_t)cap);
    struct pollfd *np;
    if (nw == NULL) return -ENOMEM;
    ps->w = nw;
    np = realloc(ps->p, sizeof *np * (size_t)cap);
    if (np == NULL) return -ENOMEM;
    ps->p = np;
    ps->cap = cap;
  }
  ps->w[ps->n++] = w;
  w->reg = ps->n;
  return 0;
}

void dx_backend_del(dx_loop *l, dx_watch *w, int closing) {
  dx_pollset *ps = l->backend;
  int i = w->reg - 1;
  (void)closing;
  ps->w[i] = ps->w[--ps->n];
  ps->w[i]->reg = i + 1;
  w->reg = 0;
}

int dx_backend_wait(dx_loop *l, int ms) {
  dx_pollset *ps = l->backend;
  int i, n;
  for (i = 0; i < ps->n; i++) {
    dx_watch *w = ps->w[i];
    short ev = w == &l->sys[0] || w == &l->sys[1] ? POLLIN : 0;
    int d;
    for (d = 0; d < 2; d++) {
      const dx_task *h = w->head[d] ? &l->tasks[w->head[d]] : NULL;
      if (h && h->waiting && h->on == w) ev |= h->want ? POLLOUT : POLLIN;
    }
    ps->p[i].fd = ev ? w->fd : -1;
    ps->p[i].events = ev;
    ps->p[i].revents = 0;
  }
  n = poll(ps->p, (nfds_t)ps->n, ms);
  if (n < 0) return errno == EINTR ? 0 : -errno;
  for (i = 0; i < ps->n && n > 0; i++) {
    short r = ps->p[i].revents;
    int bits = 0;
    if (r == 0) continue;
    n--;
    if (r & (POLLIN | POLLHUP | POLLERR)) bits |= DX_READ;
    if (r & (POLLOUT | POLLHUP | POLLERR)) bits |= DX_WRITE;
    dx_loop_fire(l, ps->w[i], bits);
  }
  return 0;
}
