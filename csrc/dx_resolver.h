/*
 * dx_resolver.h - name lookups off the loop: getaddrinfo on a few worker
 * threads, made when first needed, with a bounded queue. A finished
 * lookup is announced on a pipe the loop watches; the loop then collects
 * it. A lookup whose owner stopped waiting (timeout, cancel) is abandoned:
 * its thread finishes it and throws the result away. A child after fork()
 * never uses its parent's pool: the next lookup there makes a new one.
 * Pure C (pthreads), no Lua.
 */
#ifndef DX_RESOLVER_H
#define DX_RESOLVER_H

#include "dx_prefix.h"
#include "dx_net.h"

#define DX_LOOKUP_MAX 16           /* addresses kept per lookup */

enum { DX_LK_QUEUED, DX_LK_RUNNING, DX_LK_DONE, DX_LK_COLLECTED };

typedef struct dx_lookup {
  struct dx_lookup *next;
  int state;
  int abandoned;                   /* nobody will collect it: free when done */
  long long owner;                 /* the caller's (a task id) */
  struct dx_resolver *pool;        /* the pool it was queued on */
  char *host;
  int port, flags, family;
  int n;                           /* addresses found, or a negative code */
  dx_addr addrs[DX_LOOKUP_MAX];
} dx_lookup;

typedef struct dx_resolver dx_resolver;

/* A new lookup (to start), or NULL without memory. */
dx_lookup *dx_lookup_new(const char *host, int port, int flags, int family, long long owner);
/* Queue it on *rp (made on first use, or again in a fork child): 0, or
 * -errno (-EAGAIN: the queue is full). The lookup belongs to the pool
 * until collected or abandoned. */
int dx_lookup_start(dx_resolver **rp, dx_lookup *lk);
/* In a fork child, leave the parent's pool behind (*rp becomes NULL):
 * its threads are not here and its pipe is the parent's. The lookups
 * queued on it are abandoned as any other, and only freed. */
void dx_resolver_forked(dx_resolver **rp);
/* The descriptor that becomes readable when lookups finish, or -1. */
int dx_resolver_fd(const dx_resolver *r);
/* Finished lookups not abandoned, in a list (state COLLECTED): the
 * caller's now. */
dx_lookup *dx_lookup_collect(dx_resolver *r);
/* The owner stops waiting: free it now (queued or collected), or when
 * its thread is done. */
void dx_lookup_abandon(dx_resolver *r, dx_lookup *lk);
void dx_lookup_free(dx_lookup *lk);
/* No more lookups: threads finish what they run and the pool goes away
 * with the last of them. */
void dx_resolver_close(dx_resolver *r);

#endif
