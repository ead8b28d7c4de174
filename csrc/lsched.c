/*
 * lsched.c - the dispatcher under duplex.run: task slots hold coroutines,
 * step() waits for readiness and resumes every ready task once. Policy
 * (task objects, join, error reports, cancelling on failure) is Lua's, in
 * lua/duplex/init.lua; this file only resumes and reports completions to
 * the function installed with setdone(fn): fn(id, true, results...) or
 * fn(id, false, err, traceback).
 *
 * A task's id is gen << 24 | slot, so an id outlives its slot harmlessly.
 * Coroutines of tasks that returned are kept in a small pool and reused:
 * a server spawning a task per connection then allocates no coroutine.
 */
#include "dx_prefix.h"
#include "lduplex.h"
#include "dx_time.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#if LUA_VERSION_RELEASE_NUM >= 50406
#define lx_closethread(co, from) lua_closethread(co, from)
#else
#define lx_closethread(co, from) ((void)(from), lua_resetthread(co))
#endif

#define POOL_MAX 256      /* idle coroutines kept for reuse */
#define SLOT_BITS 24
#define SLOT_MASK ((1 << SLOT_BITS) - 1)

static lua_Integer id_of(lx_state *S, int slot) {
  return (lua_Integer)S->loop.tasks[slot].gen << SLOT_BITS | slot;
}

/* The slot of a live task id, or 0. */
static int slot_of(lx_state *S, lua_Integer id) {
  int slot = (int)(id & SLOT_MASK);
  if (!S->loop_ok || id < 0 || slot <= 0 || slot >= S->loop.ntasks) return 0;
  if (!S->loop.tasks[slot].live || (lua_Integer)S->loop.tasks[slot].gen != id >> SLOT_BITS) return 0;
  return slot;
}

static void need_loop(lua_State *L, lx_state *S) {
  if (!S->loop_ok) {
    int rc = dx_loop_init(&S->loop);
    if (rc < 0) luaL_error(L, "duplex: cannot create the event loop: %s", dx_strerror(rc));
    S->loop_ok = 1;
  }
}

/* Push an idle coroutine: one from the pool, else a new one. */
static lua_State *new_thread(lua_State *L, lx_state *S) {
  lua_State *co;
  if (S->npool == 0) return lua_newthread(L);
  lua_getiuservalue(L, lua_upvalueindex(1), 3);
  lua_rawgeti(L, -1, S->npool);
  co = lua_tothread(L, -1);
  lua_pushnil(L);
  lua_rawseti(L, -3, S->npool--);
  lua_remove(L, -2);
  return co;
}

/* Keep the returned coroutine at the top of L for reuse (and pop it). */
static void recycle(lua_State *L, lx_state *S) {
  if (S->npool < POOL_MAX) {
    lua_getiuservalue(L, lua_upvalueindex(1), 3);
    lua_insert(L, -2);
    lua_rawseti(L, -2, ++S->npool);
  }
  lua_pop(L, 1);
}

static int spawn_task(lua_State *L, int detached) {
  lx_state *S = lx_state_of(L);
  int n = lua_gettop(L), slot;
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  need_loop(L, S);
  lua_getiuservalue(L, lua_upvalueindex(1), 1);   /* tasks */
  co = new_thread(L, S);
  slot = dx_loop_spawn(&S->loop);
  if (slot < 0) return luaL_error(L, "not enough memory");
  if (slot > SLOT_MASK) {
    dx_loop_kill(&S->loop, slot);
    return luaL_error(L, "duplex: too many tasks");
  }
  lua_rawseti(L, -2, slot);                        /* tasks[slot] = co */
  lua_pop(L, 1);
  lua_xmove(L, co, n);                             /* fn and its arguments */
  S->loop.tasks[slot].detached = (unsigned char)detached;
  lua_pushinteger(L, id_of(S, slot));
  return 1;
}

/* spawn(fn, ...) -> id; its end is reported to the done function */
static int k_spawn(lua_State *L) { return spawn_task(L, 0); }

/* go(fn, ...) -> id; only a failure is reported (serve's per-connection
 * tasks: no Lua call when one ends well) */
static int k_go(lua_State *L) { return spawn_task(L, 1); }

/* Report a finished task and free its slot. Stack: tasks at T. */
static void finish(lua_State *L, lx_state *S, int T, int slot, lua_State *co,
                   int status, int nres) {
  int nargs;
  lua_Integer id = id_of(S, slot);
  if (status == LUA_OK) {          /* returned: its coroutine can be reused */
    lua_rawgeti(L, T, slot);
    if (S->loop.tasks[slot].detached) {
      lua_settop(co, 0);
      dx_loop_kill(&S->loop, slot);
      lua_pushnil(L);
      lua_rawseti(L, T, slot);
      recycle(L, S);
      return;
    }
    recycle(L, S);                 /* still anchored in tasks until below */
  }
  lua_getiuservalue(L, lua_upvalueindex(1), 2);    /* the done function */
  lua_pushinteger(L, id);
  if (status == LUA_OK) {
    luaL_checkstack(L, nres + 2, "too many results");
    lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    nargs = nres + 2;
  } else {
    lua_pushboolean(L, 0);
    lua_xmove(co, L, 1);                           /* the error object */
    luaL_traceback(L, co, NULL, 0);
    lx_closethread(co, L);                         /* close its <close> variables */
    nargs = 4;
  }
  dx_loop_kill(&S->loop, slot);
  lua_pushnil(L);
  lua_rawseti(L, T, slot);
  lua_call(L, nargs, 0);
}

static void resume_one(lua_State *L, lx_state *S, int T, int slot) {
  lua_State *co;
  int nargs, nres = 0, status;
  lua_rawgeti(L, T, slot);
  co = lua_tothread(L, -1);
  lua_pop(L, 1);                 /* still anchored in tasks */
  nargs = lua_status(co) == LUA_OK ? lua_gettop(co) - 1 : 0;
  S->running = co;
  S->slot = slot;
  S->budget = LX_BUDGET;
  S->waited = 0;
  status = lua_resume(co, L, nargs, &nres);
  S->running = NULL;
  if (status == LUA_YIELD) {
    lua_pop(co, nres);
    /* a bare coroutine.yield() in a task: run again next turn */
    if (!S->waited) dx_loop_ready(&S->loop, slot);
    return;
  }
  finish(L, S, T, slot, co, status, nres);
}

/* step() -> number of live tasks, after one turn: wait, then resume every
 * task that was ready when the turn began. */
static int k_step(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int rc, n, T;
  need_loop(L, S);
  if (S->running) return luaL_error(L, "duplex.run: already running");
  rc = dx_loop_poll(&S->loop);
  if (rc == -EDEADLK)
    return luaL_error(L, "duplex.run: deadlock: every task waits for another task");
  if (rc < 0) return luaL_error(L, "duplex.run: %s", dx_strerror(rc));
  lua_getiuservalue(L, lua_upvalueindex(1), 1);
  T = lua_gettop(L);
  for (n = dx_loop_batch(&S->loop); n > 0; n--) {
    int slot = dx_loop_pop(&S->loop);
    if (slot) resume_one(L, S, T, slot);
  }
  lua_pushinteger(L, S->loop.live);
  return 1;
}

static int k_setdone(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setiuservalue(L, lua_upvalueindex(1), 2);
  return 0;
}

/* current() -> id of the task running this code, or nil */
static int k_current(lua_State *L) {
  lx_state *S = lx_state_of(L);
  if (S->running != L) return 0;
  lua_pushinteger(L, id_of(S, S->slot));
  return 1;
}

static int suspend_k(lua_State *L, int status, lua_KContext ctx) {
  lx_state *S = lx_state_of(L);
  (void)status;
  (void)ctx;
  lua_pushboolean(L, !S->loop.tasks[S->slot].fired);
  dx_loop_leave(&S->loop, S->slot);
  return 1;
}

static void must_be_task(lua_State *L, lx_state *S, const char *what) {
  if (S->running != L || !lua_isyieldable(L))
    luaL_error(L, "%s: not inside a duplex task", what);
}

/* suspend([timeout]) -> true when woken by wake(id), false on timeout */
static int k_suspend(lua_State *L) {
  lx_state *S = lx_state_of(L);
  double deadline = lx_deadline(lx_opt_timeout(L, 1));
  int rc;
  must_be_task(L, S, "suspend");
  if (deadline == 0) deadline = dx_now();   /* timeout 0: just a turn */
  rc = dx_loop_suspend(&S->loop, S->slot, NULL, 0, deadline);
  if (rc < 0) return luaL_error(L, "suspend: %s", dx_strerror(rc));
  S->waited = 1;
  return lua_yieldk(L, 0, 0, suspend_k);
}

/* wake(id) -> true if the task was suspended and is now ready */
static int k_wake(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int slot = slot_of(S, luaL_checkinteger(L, 1));
  dx_task *t = slot ? &S->loop.tasks[slot] : NULL;
  int ok = t != NULL && t->waiting && t->watch == NULL;
  if (ok) dx_loop_ready(&S->loop, slot);
  lua_pushboolean(L, ok);
  return 1;
}

/* cancel(id) -> true if cancelled now, false if already finished, or the
 * string "self" when the task is the one running (the caller unwinds it). */
static int k_cancel(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int slot = slot_of(S, luaL_checkinteger(L, 1));
  lua_State *co;
  if (slot == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_getiuservalue(L, lua_upvalueindex(1), 1);
  lua_rawgeti(L, -1, slot);
  co = lua_tothread(L, -1);
  if (co == S->running) {
    lua_pushliteral(L, "self");
    return 1;
  }
  dx_loop_kill(&S->loop, slot);
  lua_pushnil(L);
  lua_rawseti(L, -3, slot);
  lx_closethread(co, L);           /* close its <close> variables; it stays anchored on our stack */
  lua_pushboolean(L, 1);
  return 1;
}

static int k_sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  dx_loop_leave(&lx_state_of(L)->loop, lx_state_of(L)->slot);
  lua_pushboolean(L, 1);
  return 1;
}

/* sleep(s): yields inside a task, blocks the process outside one. */
static int k_sleep(lua_State *L) {
  lx_state *S = lx_state_of(L);
  double s = luaL_checknumber(L, 1), deadline;
  luaL_argcheck(L, s >= 0 && s == s, 1, "seconds must be a non-negative number");
  deadline = dx_now() + s;
  if (S->running != NULL) {
    int rc;
    must_be_task(L, S, "sleep");
    rc = dx_loop_suspend(&S->loop, S->slot, NULL, 0, deadline);
    if (rc < 0) return luaL_error(L, "sleep: %s", dx_strerror(rc));
    S->waited = 1;
    return lua_yieldk(L, 0, 0, k_sleep_k);
  }
  for (;;) {                      /* nanosleep again after a signal */
    double left = deadline - dx_now();
    struct timespec ts;
    if (left <= 0) break;
    ts.tv_sec = (time_t)left;
    ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ids() -> array of the ids of every live task */
static int k_ids(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int slot, n = 0;
  lua_newtable(L);
  for (slot = 1; S->loop_ok && slot < S->loop.ntasks; slot++) {
    if (!S->loop.tasks[slot].live) continue;
    lua_pushinteger(L, id_of(S, slot));
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

static const luaL_Reg funcs[] = {
  {"ids", k_ids},
  {"spawn", k_spawn},
  {"go", k_go},
  {"step", k_step},
  {"setdone", k_setdone},
  {"current", k_current},
  {"suspend", k_suspend},
  {"wake", k_wake},
  {"cancel", k_cancel},
  {"sleep", k_sleep},
  {NULL, NULL}
};

/* Stack on entry: module, state. */
void lx_open_sched(lua_State *L) {
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pop(L, 1);
}
