/*
 * lwait.c - the waits of tasks that are no I/O: sleep, and suspend and
 * wake (under join, cond and queue), as timer operations of the driver;
 * the check of timeouts given in Lua; and waiting(id), with which a spec
 * waits for a task's state instead of a guessed time.
 */
#include "dx_prefix.h"
#include "lwait.h"
#include "ldrive.h"
#include "lsched.h"
#include "lxaux.h"
#include "dx_time.h"

#include <errno.h>

/* What a suspended task waits for: its turn in a socket's FIFO, a
 * socket's readiness, or a timer (a deadline, or a wake: sleep, join,
 * cond, a lookup); NULL when it runs, is ready to, or has ended. */
static const char *waits_for(const dx_loop *l, int slot) {
  const dx_task *t = &l->tasks[slot];
  if (!t->waiting) return NULL;
  if ((t->watch && t->watch->head[t->dir] != slot) ||
      (t->watch2 && t->watch2->head[t->dir2] != slot)) return "turn";
  if (t->on == NULL) return "timer";
  return t->want ? "write" : "read";
}

/* waiting(id) -> "turn", "read", "write" or "timer" while the task is
 * suspended, and the descriptor whose readiness wakes it (-1: none);
 * else false. For specs, which wait for a state instead of a guessed time
 * (spec/helpers.lua's until_waiting); not duplex's API. */
static int k_waiting(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int slot = lx_task_slot(S, luaL_checkinteger(L, 1));
  const char *what = slot ? waits_for(&S->loop, slot) : NULL;
  const dx_watch *on;
  if (what == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  on = S->loop.tasks[slot].on;
  lua_pushstring(L, what);
  lua_pushinteger(L, on ? on->fd : -1);
  return 2;
}

/* suspend: stack 1 timeout. Done when woken (true); false when the
 * deadline passed first (or at once for timeout 0). */
static int try_suspend(lua_State *L, lx_call *k) {
  (void)L;
  if (k->k[0] == 0) {
    k->k[0] = 1;
    return LX_WAIT_TIMER;
  }
  return k->fired ? -ETIMEDOUT : LX_DONE;
}

static int push_true(lua_State *L, lx_call *k) {
  (void)k;
  lua_pushboolean(L, 1);
  return 1;
}

static int push_false(lua_State *L, lx_call *k, int code) {
  (void)k, (void)code;
  lua_pushboolean(L, 0);
  return 1;
}

static const lx_op op_suspend = {
  .name = "suspend", .dir = LX_NOQUEUE, .try = try_suspend, .push = push_true,
  .fail = push_false,
};

static void must_be_task(lua_State *L, lx_state *S, const char *what) {
  if (S->running != L || !lua_isyieldable(L))
    luaL_error(L, "%s: not inside a duplex task", what);
}

/* suspend([timeout]) -> true when woken by wake(id), false on timeout */
static int k_suspend(lua_State *L) {
  lx_state *S = lx_state_of(L);
  double timeout = lx_opt_timeout(L, 1);
  must_be_task(L, S, "suspend");
  lua_settop(L, 1);
  return lx_drive(L, &op_suspend, lx_deadline(timeout));
}

/* wake(id) -> true if the task was suspended and is now ready */
static int k_wake(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int slot = lx_task_slot(S, luaL_checkinteger(L, 1));
  int ok = slot != 0 && dx_loop_sleeping(&S->loop, slot);
  if (ok) dx_loop_ready(&S->loop, slot);
  lua_pushboolean(L, ok);
  return 1;
}

/* sleep: stack 1 seconds; the deadline is the goal, not a limit. */
static int try_sleep(lua_State *L, lx_call *k) {
  (void)L, (void)k;
  return LX_WAIT_TIMER;
}

static int slept(lua_State *L, lx_call *k, int code) {
  if (code != -ETIMEDOUT) return luaL_error(L, "sleep: %s", dx_strerror(code));
  return push_true(L, k);
}

static const lx_op op_sleep = {
  .name = "sleep", .dir = LX_NOQUEUE, .try = try_sleep, .push = push_true, .fail = slept,
};

/* sleep(s): yields inside a task, blocks the process outside duplex.run. */
static int k_sleep(lua_State *L) {
  lx_state *S = lx_state_of(L);
  double s;
  luaL_checknumber(L, 1);
  s = lx_opt_timeout(L, 1);
  if (s == 0 && lx_can_pass(L, S)) return lx_pass(L, S);
  lua_settop(L, 1);
  return lx_drive(L, &op_sleep, dx_now() + s);
}

/* timeout_error(v) -> nil if v is a good timeout, else why not (for the
 * timeouts checked in Lua: one rule everywhere) */
static int k_timeout_error(lua_State *L) {
  double t;
  const char *why = lx_timeout_error(L, 1, &t);
  if (why == NULL) return 0;
  lua_pushstring(L, why);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"waiting", k_waiting},
  {"timeout_error", k_timeout_error},
  {"suspend", k_suspend},
  {"wake", k_wake},
  {"sleep", k_sleep},
  {NULL, NULL}
};

/* Stack on entry: module, state. */
void lx_open_wait(lua_State *L) {
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pop(L, 1);
}
