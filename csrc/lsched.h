/*
 * lsched.h - the dispatcher under duplex.run (lsched.c): task slots,
 * starting, resuming, ending and cancelling tasks. The waits that are no
 * I/O (sleep, suspend) are lwait.c's, signals lsignal.c's.
 */
#ifndef LSCHED_H
#define LSCHED_H

#include "lduplex.h"

/* What a task's end calls (the kind it was started as). */
enum {
  LX_TASK_JOINABLE,           /* spawn: done(id, ok, ...) */
  LX_TASK_DETACHED,           /* go: done only when it fails */
  LX_TASK_GUARDED             /* go_guarded: its guard closes, then ended(guard, ok, ...) */
};
/* A task's kind (LX_TASK_*), without its LX_HELD mark. */
#define LX_KIND(S, slot) ((S)->detached[slot] & ~LX_HELD)


/* With fn and its arguments at 1..top (a guarded task: ended, guard, fn,
 * ...), start a task of that kind; push its id (1 result). */
int lx_spawn(lua_State *L, int kind);
/* The slot of a live task id, or 0. */
int lx_task_slot(lx_state *S, lua_Integer id);
/* The loop, made the first time it is needed. */
void lx_need_loop(lua_State *L, lx_state *S);
/* In a fork child, the first run (or onsignal) since the fork: the loop's
 * epoll instance, the signal pipe and the lookup pool were the parent's;
 * make them this process's own, before anything waits or registers. */
void lx_own_process(lua_State *L, lx_state *S);

void lx_open_sched(lua_State *L);

#endif
