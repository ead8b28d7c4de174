/*
 * dx_resolver.c - the lookup pool (see dx_resolver.h). One mutex guards the
 * queue, the done list and every lookup's state. Workers start with every
 * signal blocked, so that signals reach the thread that runs the loop. The
 * pool is freed by whoever leaves it last: the closing owner when no
 * thread runs, else the last thread.
 */
#include "dx_prefix.h"
#include "dx_resolver.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 4
#define MAX_QUEUED 256

struct dx_resolver {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  dx_lookup *qhead, *qtail;      /* waiting for a thread */
  dx_lookup *done;               /* finished, not collected */
  int nqueued, nthreads, idle, closing;
  int pipe[2];                   /* [0] watched by the loop */
  pid_t pid;                     /* the process that made it */
  pthread_t threads[MAX_THREADS];
  int busy[MAX_THREADS];         /* in getaddrinfo: cannot be waited for */
};

/* A worker's start: the pool and its place in it. */
typedef struct worker_arg {
  dx_resolver *r;
  int i;
} worker_arg;

dx_lookup *dx_lookup_new(const char *host, int port, int flags, int family, long long owner) {
  dx_lookup *lk = calloc(1, sizeof *lk);
  if (lk == NULL) return NULL;
  lk->host = strdup(host);
  if (lk->host == NULL) {
    free(lk);
    return NULL;
  }
  lk->port = port;
  lk->flags = flags;
  lk->family = family;
  lk->owner = owner;
  return lk;
}

void dx_lookup_free(dx_lookup *lk) {
  if (lk == NULL) return;
  free(lk->host);
  free(lk);
}

static void pool_free(dx_resolver *r) {
  while (r->qhead) {
    dx_lookup *lk = r->qhead;
    r->qhead = lk->next;
    dx_lookup_free(lk);
  }
  while (r->done) {
    dx_lookup *lk = r->done;
    r->done = lk->next;
    dx_lookup_free(lk);
  }
  if (r->pipe[0] >= 0) close(r->pipe[0]);
  if (r->pipe[1] >= 0) close(r->pipe[1]);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static void *worker(void *arg) {
  worker_arg w = *(worker_arg *)arg;
  dx_resolver *r = w.r;
  free(arg);
  pthread_mutex_lock(&r->mu);
  for (;;) {
    dx_lookup *lk;
    while (r->qhead == NULL && !r->closing) {
      r->idle++;
      pthread_cond_wait(&r->cv, &r->mu);
      r->idle--;
    }
    if (r->closing) break;
    lk = r->qhead;
    r->qhead = lk->next;
    if (r->qhead == NULL) r->qtail = NULL;
    r->nqueued--;
    lk->state = DX_LK_RUNNING;
    r->busy[w.i] = 1;
    pthread_mutex_unlock(&r->mu);
    lk->n = dx_resolve_ex(lk->host, lk->port, lk->flags, lk->family, lk->addrs, DX_LOOKUP_MAX);
    pthread_mutex_lock(&r->mu);
    r->busy[w.i] = 0;
    if (lk->abandoned || r->closing) {
      dx_lookup_free(lk);
    } else {
      char b = 1;
      lk->state = DX_LK_DONE;
      lk->next = r->done;
      r->done = lk;
      if (write(r->pipe[1], &b, 1) < 0) {}      /* full: the loop knows already */
    }
  }
  if (--r->nthreads == 0 && r->closing == 2) {
    pthread_mutex_unlock(&r->mu);              /* detached, the last one out */
    pool_free(r);
    return NULL;
  }
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

/* Threads may outlive the Lua state that made them (a lookup still
 * running at exit): the code they run must stay mapped, so the library
 * holding it is never unloaded once a thread exists. */
static void pin_code(void) {
  static int pinned;
  Dl_info info;
  if (!pinned && dladdr((void *)pin_code, &info) && info.dli_fname) {
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
    pinned = 1;
  }
}

static dx_resolver *pool_new(void) {
  dx_resolver *r = calloc(1, sizeof *r);
  int i;
  if (r == NULL) return NULL;
  pin_code();
  if (pipe(r->pipe) < 0) {
    free(r);
    return NULL;
  }
  for (i = 0; i < 2; i++) {
    fcntl(r->pipe[i], F_SETFL, fcntl(r->pipe[i], F_GETFL) | O_NONBLOCK);
    fcntl(r->pipe[i], F_SETFD, FD_CLOEXEC);
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  r->pid = getpid();
  return r;
}

/* One more thread, with every signal blocked in it. Called locked. */
static int add_thread(dx_resolver *r) {
  sigset_t all, old;
  worker_arg *w = malloc(sizeof *w);
  int rc, i = r->nthreads;
  if (w == NULL) return -ENOMEM;
  w->r = r;
  w->i = i;
  r->busy[i] = 0;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&r->threads[i], NULL, worker, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    free(w);
    return -rc;
  }
  r->nthreads++;
  return 0;
}

/* The parent's mutex may be held for good: never touch it here. */
void dx_resolver_forked(dx_resolver **rp) {
  dx_resolver *r = *rp;
  if (r == NULL || r->pid == getpid()) return;
  close(r->pipe[0]);                   /* this process's copies */
  close(r->pipe[1]);
  *rp = NULL;
}

int dx_lookup_start(dx_resolver **rp, dx_lookup *lk) {
  dx_resolver *r;
  int rc = 0;
  dx_resolver_forked(rp);
  if ((r = *rp) == NULL && (r = *rp = pool_new()) == NULL) return -ENOMEM;
  pthread_mutex_lock(&r->mu);
  if (r->nqueued >= MAX_QUEUED) {
    rc = -EAGAIN;
  } else if (r->nqueued + 1 > r->idle && r->nthreads < MAX_THREADS &&
             (rc = add_thread(r)) < 0 && r->nthreads > 0) {
    /* (a thread signalled but not yet awake still counts as idle: count
     * what waits for one instead) */
    rc = 0;                          /* no new thread, but one will come */
  }
  if (rc == 0) {
    lk->state = DX_LK_QUEUED;
    lk->pool = r;
    lk->next = NULL;
    if (r->qtail) r->qtail->next = lk;
    else r->qhead = lk;
    r->qtail = lk;
    r->nqueued++;
    pthread_cond_signal(&r->cv);
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

int dx_resolver_fd(const dx_resolver *r) {
  return r ? r->pipe[0] : -1;
}

dx_lookup *dx_lookup_collect(dx_resolver *r) {
  dx_lookup *list, *lk;
  char buf[64];
  if (r == NULL || r->pid != getpid()) return NULL;
  while (read(r->pipe[0], buf, sizeof buf) > 0) {}
  pthread_mutex_lock(&r->mu);
  list = r->done;
  r->done = NULL;
  for (lk = list; lk; lk = lk->next) lk->state = DX_LK_COLLECTED;
  pthread_mutex_unlock(&r->mu);
  return list;
}

void dx_lookup_abandon(dx_resolver *r, dx_lookup *lk) {
  if (r == NULL || lk->pool != r || r->pid != getpid() || lk->state == DX_LK_COLLECTED) {
    dx_lookup_free(lk);
    return;
  }
  pthread_mutex_lock(&r->mu);
  if (lk->state == DX_LK_QUEUED) {
    dx_lookup **pp = &r->qhead, *prev = NULL;
    while (*pp != lk) prev = *pp, pp = &(*pp)->next;
    *pp = lk->next;
    if (r->qtail == lk) r->qtail = prev;
    r->nqueued--;
    dx_lookup_free(lk);
  } else if (lk->state == DX_LK_DONE) {
    dx_lookup **pp = &r->done;
    while (*pp != lk) pp = &(*pp)->next;
    *pp = lk->next;
    dx_lookup_free(lk);
  } else {
    lk->abandoned = 1;                 /* running: its thread frees it */
  }
  pthread_mutex_unlock(&r->mu);
}

/* Idle threads are waited for, so that nothing of theirs outlives the
 * program's own end; a thread still inside getaddrinfo (which cannot be
 * interrupted) is left to finish on its own, and the last one out frees
 * the pool. */
void dx_resolver_close(dx_resolver *r) {
  int i, n, busy = 0;
  if (r == NULL) return;
  if (r->pid != getpid()) {            /* a fork child: the parent's */
    close(r->pipe[0]);
    close(r->pipe[1]);
    return;
  }
  pthread_mutex_lock(&r->mu);
  r->closing = 1;
  n = r->nthreads;
  for (i = 0; i < n; i++) busy += r->busy[i];
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (busy == 0) {
    for (i = 0; i < n; i++) pthread_join(r->threads[i], NULL);
    pool_free(r);
    return;
  }
  pthread_mutex_lock(&r->mu);
  for (i = 0; i < n; i++) pthread_detach(r->threads[i]);
  r->closing = 2;                      /* the last thread frees it */
  close(r->pipe[0]);                   /* nobody writes there any more */
  close(r->pipe[1]);
  r->pipe[0] = r->pipe[1] = -1;
  if (r->nthreads == 0) {
    pthread_mutex_unlock(&r->mu);
    pool_free(r);
    return;
  }
  pthread_mutex_unlock(&r->mu);
}
