/*
 * dx_loop.c - task slots, per-socket wait FIFOs, timers and the ready queue
 * (see dx_loop.h). Nothing here runs user code, so state never changes under
 * a caller's feet: events are turned into ready slots first, and the binding
 * resumes them afterwards.
 *
 * A FIFO per direction keeps operations whole: a task that finds others
 * queued before it waits its turn instead of interleaving its bytes, and
 * only the head of a FIFO is woken by readiness.
 */
#include "dx_prefix.h"
#include "dx_loop.h"
#include "dx_net.h"
#include "dx_time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A debug build (-DDX_DEBUG, make test-debug) checks the loop's
 * invariants: cheap ones where state changes, and all of them
 * (dx_loop_check) after every dx_loop_poll. Other builds pay nothing. */
#ifdef DX_DEBUG
#include <assert.h>
#define DX_ASSERT(c) assert(c)
#else
#define DX_ASSERT(c) ((void)0)
#endif

void dx_watch_init(dx_watch *w, int fd) {
  w->fd = fd;
  w->reg = 0;
  w->head[0] = w->head[1] = w->tail[0] = w->tail[1] = 0;
  w->ready = DX_READ | DX_WRITE;
  w->suspect = 0;
}

int dx_loop_init(dx_loop *l) {
  memset(l, 0, sizeof *l);
  l->fd = -1;
  dx_watch_init(&l->sys[0], -1);
  dx_watch_init(&l->sys[1], -1);
  l->pid = getpid();
  return dx_backend_init(l);
}

void dx_loop_free(dx_loop *l) {
  dx_backend_free(l);
  free(l->tasks);
  free(l->ring);
  free(l->heap);
  memset(l, 0, sizeof *l);
  l->fd = -1;
}

int dx_loop_forked(const dx_loop *l) { return l->pid != getpid(); }

int dx_loop_refork(dx_loop *l) {
  int slot, rc = dx_backend_refork(l);
  if (rc < 0) return rc;
  l->pid = getpid();
  /* a task suspended on a socket would wait for a registration that is
   * gone: it retries its operation instead, and waits anew if it must */
  for (slot = 1; slot < l->ntasks; slot++)
    if (l->tasks[slot].live && l->tasks[slot].waiting && l->tasks[slot].on)
      dx_loop_ready(l, slot);
  return 0;
}

/* Forget w's registration. In a fork child that has not made the loop
 * its own yet, removing it would remove the parent's: only forget. */
static void unregister(dx_loop *l, dx_watch *w, int closing) {
  dx_backend_del(l, w, closing || dx_loop_forked(l));
}

/* --- timer heap (min-heap on `when`; tasks remember their index) -------- */

static void heap_set(dx_loop *l, int i, dx_timer t) {
  l->heap[i] = t;
  l->tasks[t.slot].heap = i;
}

static void heap_up(dx_loop *l, int i) {
  dx_timer t = l->heap[i];
  while (i > 0) {
    int p = (i - 1) / 2;
    if (l->heap[p].when <= t.when) break;
    heap_set(l, i, l->heap[p]);
    i = p;
  }
  heap_set(l, i, t);
}

static void heap_down(dx_loop *l, int i) {
  dx_timer t = l->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= l->nheap) break;
    if (c + 1 < l->nheap && l->heap[c + 1].when < l->heap[c].when) c++;
    if (t.when <= l->heap[c].when) break;
    heap_set(l, i, l->heap[c]);
    i = c;
  }
  heap_set(l, i, t);
}

static void heap_add(dx_loop *l, int slot, double when) {
  DX_ASSERT(l->nheap < l->hcap && l->tasks[slot].heap < 0);
  l->heap[l->nheap].when = when;
  l->heap[l->nheap].slot = slot;
  heap_up(l, l->nheap++);
}

static void heap_remove(dx_loop *l, int slot) {
  int i = l->tasks[slot].heap;
  if (i < 0) return;
  l->tasks[slot].heap = -1;
  if (--l->nheap > i) {
    l->heap[i] = l->heap[l->nheap];
    l->tasks[l->heap[i].slot].heap = i;
    heap_up(l, i);
    heap_down(l, l->tasks[l->heap[i].slot].heap);
  }
}

/* --- ready queue (a ring as large as the task table) --------------------- */

/* A slot has at most one entry (inring), so the ring never overflows; an
 * entry left by a task that was killed serves the slot's next task. */
static void queue(dx_loop *l, int slot) {
  dx_task *t = &l->tasks[slot];
  DX_ASSERT(t->live && !t->waiting);
  t->queued = 1;
  if (!t->inring) {
    DX_ASSERT(l->rcount < l->rcap);
    t->inring = 1;
    l->ring[(l->rhead + l->rcount++) & (l->rcap - 1)] = slot;
  }
}

/* Room in the heap for one more timer (a task is in it at most once). */
static int heap_room(dx_loop *l) {
  int n = l->hcap ? 2 * l->hcap : 64;
  dx_timer *h;
  if (l->nheap < l->hcap) return 0;
  if (n > l->ntasks) n = l->ntasks;
  h = realloc(l->heap, sizeof *h * (size_t)n);
  if (h == NULL) return -ENOMEM;
  l->heap = h;
  l->hcap = n;
  return 0;
}

/* Make the ring hold `n` tasks. */
static int reserve(dx_loop *l, int n) {
  int *r, i;
  r = malloc(sizeof *r * (size_t)n);
  if (r == NULL) return -ENOMEM;
  for (i = 0; i < l->rcount; i++) r[i] = l->ring[(l->rhead + i) & (l->rcap - 1)];
  free(l->ring);
  l->ring = r;
  l->rhead = 0;
  l->rcap = n;
  return 0;
}

int dx_loop_batch(dx_loop *l) { return l->rcount; }

int dx_loop_pop(dx_loop *l) {
  int slot;
  if (l->rcount == 0) return 0;
  slot = l->ring[l->rhead];
  l->rhead = (l->rhead + 1) & (l->rcap - 1);
  l->rcount--;
  l->tasks[slot].inring = 0;
  if (!l->tasks[slot].queued) return 0;     /* killed since */
  l->tasks[slot].queued = 0;
  return slot;
}

/* --- FIFOs --------------------------------------------------------------- */

/* The link that follows slot s in w's FIFO d: a task may stand in two. */
static int *link_of(dx_loop *l, int s, const dx_watch *w, int d) {
  dx_task *t = &l->tasks[s];
  return t->watch2 == w && t->dir2 == d ? &t->next2 : &t->next;
}

/* Take slot (followed by next) out of w's FIFO d. */
static void fifo_unlink(dx_loop *l, int slot, int next, dx_watch *w, int d) {
  int prev = 0, s;
  for (s = w->head[d]; s != 0 && s != slot; s = *link_of(l, s, w, d)) prev = s;
  if (s == slot) {
    if (prev) *link_of(l, prev, w, d) = next;
    else w->head[d] = next;
    if (w->tail[d] == slot) w->tail[d] = prev;
  }
  /* the new head may have been waiting for its turn */
  if (prev == 0 && w->head[d] && l->tasks[w->head[d]].waiting)
    dx_loop_ready(l, w->head[d]);
}

static void fifo_remove(dx_loop *l, int slot) {
  dx_task *t = &l->tasks[slot];
  dx_watch *w = t->watch, *w2 = t->watch2;
  int d = t->dir, d2 = t->dir2, n = t->next, n2 = t->next2;
  t->watch = t->watch2 = NULL;
  t->next = t->next2 = 0;
  if (w) fifo_unlink(l, slot, n, w, d);
  if (w2) fifo_unlink(l, slot, n2, w2, d2);
}

static void fifo_append(dx_loop *l, int slot, dx_watch *w, int d) {
  if (w->tail[d]) *link_of(l, w->tail[d], w, d) = slot;
  else w->head[d] = slot;
  w->tail[d] = slot;
}

/* --- tasks --------------------------------------------------------------- */

int dx_loop_spawn(dx_loop *l) {
  int slot;
  dx_task *t;
  if (l->freelist == 0) {                 /* grow: n stays a power of two */
    int n = l->ntasks ? 2 * l->ntasks : 64, i;
    dx_task *ts;
    if (n > (1 << 24)) return -ENOMEM;
    ts = realloc(l->tasks, sizeof *ts * (size_t)n);
    if (ts == NULL) return -ENOMEM;
    l->tasks = ts;
    if (reserve(l, n) < 0) return -ENOMEM;
    memset(ts + l->ntasks, 0, sizeof *ts * (size_t)(n - l->ntasks));
    for (i = n - 1; i >= (l->ntasks ? l->ntasks : 1); i--) {
      ts[i].next = l->freelist;
      ts[i].heap = -1;
      l->freelist = i;
    }
    l->ntasks = n;
  }
  slot = l->freelist;
  t = &l->tasks[slot];
  l->freelist = t->next;
  t->next = t->next2 = 0;
  t->watch = t->watch2 = t->on = NULL;
  t->heap = -1;
  t->live = 1;
  t->waiting = t->fired = 0;
  queue(l, slot);
  l->live++;
  return slot;
}

void dx_loop_kill(dx_loop *l, int slot) {
  dx_task *t = &l->tasks[slot];
  if (!t->live) return;
  dx_loop_leave(l, slot);
  DX_ASSERT(t->heap < 0 && t->watch == NULL && t->watch2 == NULL && l->live > 0);
  t->live = t->queued = 0;
  t->gen++;
  t->next = l->freelist;
  l->freelist = slot;
  l->live--;
}

int dx_loop_suspend(dx_loop *l, int slot, dx_watch *w, int dir, double deadline) {
  return dx_loop_suspend_for(l, slot, w, dir, dir, deadline);
}

int dx_loop_suspend_for(dx_loop *l, int slot, dx_watch *w, int dir, int want, double deadline) {
  if (w != NULL && !w->reg) {             /* refused: nothing joined */
    int rc = dx_backend_add(l, w);
    if (rc < 0) return rc;
  }
  if (w != NULL) dx_loop_join(l, slot, w, dir);
  return dx_loop_suspend_on(l, slot, w, want, deadline);
}

void dx_loop_join(dx_loop *l, int slot, dx_watch *w, int dir) {
  dx_task *t = &l->tasks[slot];
  if ((t->watch == w && t->dir == dir) || (t->watch2 == w && t->dir2 == dir)) return;
  if (t->watch == NULL) {
    t->watch = w;
    t->dir = (unsigned char)dir;
    t->next = 0;
  } else if (t->watch2 == NULL) {
    t->watch2 = w;
    t->dir2 = (unsigned char)dir;
    t->next2 = 0;
  } else {
    DX_ASSERT(0);             /* never: an operation has two sockets at most */
    return;
  }
  fifo_append(l, slot, w, dir);
}

int dx_loop_suspend_on(dx_loop *l, int slot, dx_watch *on, int want, double deadline) {
  dx_task *t = &l->tasks[slot];
  /* (suspending a waiting task again replaces its timer; one waiting on a
   * socket is counted in nio already) */
  DX_ASSERT(t->live && (!t->waiting || t->on == NULL) && (want == 0 || want == 1));
  if (on != NULL && !on->reg) {
    int rc = dx_backend_add(l, on);
    if (rc < 0) return rc;
  }
  heap_remove(l, slot);
  if (deadline >= 0 && heap_room(l) < 0) return -ENOMEM;
  t->want = (unsigned char)want;
  t->on = on;
  if (deadline >= 0) heap_add(l, slot, deadline);
  t->waiting = 1;
  t->fired = 0;
  if (on) l->nio++;
  return 0;
}

void dx_loop_rewatch(dx_loop *l, dx_watch *w, int fd) {
  if (w->reg) unregister(l, w, 0);
  w->fd = fd;
  w->ready = DX_READ | DX_WRITE;
  w->suspect = 0;
}

/* Only an edge-triggered registration tells of every byte that arrives
 * later. Two things stay readable after a short read with no edge to come
 * (spec/core/et_short_read.c shows both on this kernel): the end of stream
 * when the bytes and the FIN came in one edge, and the bytes behind TCP
 * urgent data. Once the backend saw either, short reads prove nothing. */
void dx_loop_drained(dx_loop *l, dx_watch *w) {
  if (l->fd >= 0 && w->reg && !w->suspect) w->ready &= ~DX_READ;
}

void dx_loop_ready(dx_loop *l, int slot) {
  dx_task *t = &l->tasks[slot];
  DX_ASSERT(t->live);
  if (t->waiting) {
    t->waiting = 0;
    DX_ASSERT(!t->on || l->nio > 0);
    if (t->on) l->nio--;
    t->on = NULL;
  }
  heap_remove(l, slot);
  queue(l, slot);
}

void dx_loop_leave(dx_loop *l, int slot) {
  dx_task *t = &l->tasks[slot];
  if (t->waiting) {
    t->waiting = 0;
    DX_ASSERT(!t->on || l->nio > 0);
    if (t->on) l->nio--;
    t->on = NULL;
  }
  heap_remove(l, slot);
  fifo_remove(l, slot);
}

/* A task in the FIFO that is not suspended is running or already queued
 * to run (a connect between two addresses closes its own socket): it only
 * leaves the FIFO. */
static void unwatch(dx_loop *l, dx_watch *w, int closing) {
  int d;
  for (d = 0; d < 2; d++) {
    while (w->head[d]) {
      int s = w->head[d], *link = link_of(l, s, w, d);
      dx_task *t = &l->tasks[s];
      if (t->waiting) dx_loop_ready(l, s);
      w->head[d] = *link;
      if (w->head[d] == 0) w->tail[d] = 0;
      *link = 0;
      if (t->watch2 == w && t->dir2 == d) t->watch2 = NULL;
      else t->watch = NULL;
    }
  }
  if (w->reg) unregister(l, w, closing);
}

void dx_loop_close_watch(dx_loop *l, dx_watch *w) { unwatch(l, w, 0); }

int dx_loop_close_fd(dx_loop *l, dx_watch *w) {
  int rc;
  unwatch(l, w, 1);
  rc = dx_close(w->fd);
  w->fd = -1;
  return rc;
}

/* --- events -------------------------------------------------------------- */

/* The head of FIFO d, if it waits for one of these events. */
static void wake_head(dx_loop *l, dx_watch *w, int d, int events) {
  int s = w->head[d];
  if (s && l->tasks[s].waiting && l->tasks[s].on == w &&
      (events & (l->tasks[s].want ? DX_WRITE : DX_READ)))
    dx_loop_ready(l, s);
}

void dx_loop_poke(dx_loop *l, dx_watch *w) {
  wake_head(l, w, 0, DX_READ | DX_WRITE);
  wake_head(l, w, 1, DX_READ | DX_WRITE);
}

void dx_loop_fire(dx_loop *l, dx_watch *w, int events) {
  if (w == &l->sys[0] || w == &l->sys[1]) {
    l->sysready |= w == &l->sys[0] ? 1 : 2;
    return;
  }
  w->ready |= events & (DX_READ | DX_WRITE);
  if (events & DX_SUSPECT) w->suspect = 1;
  wake_head(l, w, 0, events);
  wake_head(l, w, 1, events);
}

int dx_loop_watch_sys(dx_loop *l, int i, int fd) {
  dx_watch *w = &l->sys[i];
  if (w->fd == fd && (w->reg || fd < 0)) return 0;
  if (w->reg) unregister(l, w, 0);
  dx_watch_init(w, fd);
  return fd < 0 ? 0 : dx_backend_add(l, w);
}

int dx_loop_sys_ready(dx_loop *l) {
  int r = l->sysready;
  l->sysready = 0;
  return r;
}

int dx_loop_poll(dx_loop *l) {
  int ms = -1, rc;
  if (l->rcount > 0) ms = 0;
  else if (l->nheap > 0) ms = dx_ms_until(l->heap[0].when);
  else if (l->nio == 0 && l->sys[0].fd < 0 && l->sys[1].fd < 0)
    return l->live > 0 ? -EDEADLK : 0;
  rc = dx_backend_wait(l, ms);
  if (rc < 0) return rc;
  if (l->nheap > 0) {
    double now = dx_now();
    while (l->nheap > 0 && l->heap[0].when <= now) {
      int s = l->heap[0].slot;
      l->tasks[s].fired = 1;
      dx_loop_ready(l, s);
    }
  }
#ifdef DX_DEBUG
  dx_loop_check(l);
#endif
  return 0;
}

#ifdef DX_DEBUG
/* Walk FIFO d of w from its head: each task on it is live and stands in
 * it, the last is the tail. The number of tasks. */
static int fifo_walk(const dx_loop *l, const dx_watch *w, int d) {
  int s = w->head[d], n = 0, last = 0;
  while (s != 0) {
    const dx_task *t;
    DX_ASSERT(s >= 1 && s < l->ntasks && ++n < l->ntasks);
    t = &l->tasks[s];
    DX_ASSERT(t->live && ((t->watch == w && t->dir == d) || (t->watch2 == w && t->dir2 == d)));
    last = s;
    s = t->watch2 == w && t->dir2 == d ? t->next2 : t->next;
  }
  DX_ASSERT(last == w->tail[d]);
  return n;
}

/* Is slot the head of FIFO d of w? */
#define HEADS(w, d, slot) ((w)->head[d] == (slot))

void dx_loop_check(const dx_loop *l) {
  int slot, i, live = 0, nio = 0, inring = 0, members = 0, walked = 0, nfree = 0;
  DX_ASSERT(l->ntasks == 0 || (l->ntasks & (l->ntasks - 1)) == 0);
  DX_ASSERT(l->rcap == l->ntasks && l->rcount >= 0 && l->rcount <= l->rcap);
  DX_ASSERT(l->nheap >= 0 && l->nheap <= l->hcap && l->hcap <= l->ntasks);
  for (slot = 1; slot < l->ntasks; slot++) {
    const dx_task *t = &l->tasks[slot];
    inring += t->inring;
    if (!t->live) {             /* free: in nothing but maybe a stale ring entry */
      DX_ASSERT(!t->queued && !t->waiting && t->heap < 0);
      DX_ASSERT(t->watch == NULL && t->watch2 == NULL && t->on == NULL);
      continue;
    }
    live++;
    DX_ASSERT(!t->queued || t->inring);                 /* queued: it has an entry */
    DX_ASSERT(!(t->queued && t->waiting));              /* ready or suspended, not both */
    DX_ASSERT(t->heap < 0 || t->waiting);               /* a deadline only while waiting */
    DX_ASSERT(t->heap < l->nheap && (t->heap < 0 || l->heap[t->heap].slot == slot));
    DX_ASSERT(t->waiting || t->on == NULL);
    if (t->waiting && t->on) nio++;
    if (t->watch) {
      DX_ASSERT(t->dir <= 1 && t->watch->head[t->dir] != 0 && t->watch->tail[t->dir] != 0);
      members++;
      if (HEADS(t->watch, t->dir, slot)) walked += fifo_walk(l, t->watch, t->dir);
    }
    if (t->watch2) {       /* (it may stay when a close took the first away) */
      DX_ASSERT(t->dir2 <= 1 && !(t->watch2 == t->watch && t->dir2 == t->dir));
      members++;
      if (HEADS(t->watch2, t->dir2, slot)) walked += fifo_walk(l, t->watch2, t->dir2);
    }
  }
  /* every FIFO walked from its head holds exactly the tasks that claim
   * to stand in it */
  DX_ASSERT(walked == members);
  DX_ASSERT(live == l->live && nio == l->nio);
  DX_ASSERT(inring == l->rcount);       /* one entry per slot at most */
  for (i = 0; i < l->rcount; i++) {
    int s = l->ring[(l->rhead + i) & (l->rcap - 1)];
    DX_ASSERT(s >= 1 && s < l->ntasks && l->tasks[s].inring);
  }
  for (i = 0; i < l->nheap; i++) {
    int s = l->heap[i].slot;
    DX_ASSERT(s >= 1 && s < l->ntasks && l->tasks[s].heap == i);
    DX_ASSERT(i == 0 || l->heap[(i - 1) / 2].when <= l->heap[i].when);
  }
  for (slot = l->freelist; slot != 0 && nfree < l->ntasks; slot = l->tasks[slot].next) {
    DX_ASSERT(slot >= 1 && slot < l->ntasks && !l->tasks[slot].live);
    nfree++;
  }
  DX_ASSERT(l->ntasks == 0 || nfree + live == l->ntasks - 1);
}
#endif

/* The backend, chosen at build time (as Redis's ae.c does). */
#if defined(__linux__) && !defined(DX_USE_POLL)
#include "dx_loop_epoll.c"
#else
#include "dx_loop_poll.c"
#endif
