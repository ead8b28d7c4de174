/*
 * lsched.c - the dispatcher under duplex.run: task slots hold coroutines,
 * step() waits for readiness and resumes every ready task once; sleep and
 * suspend are timer operations of the driver. Policy (task objects, join,
 * error reports, cancelling on failure) is Lua's, in lua/duplex/sched.lua;
 * this file only resumes and reports to the functions installed with
 * sethooks(done, report): done(id, true, results...) or done(id, false,
 * err, traceback) when a task ends, report(err, traceback) for an error of
 * a <close> handler.
 *
 * Every task gets a new coroutine: one that ran another task would carry
 * its hooks and, to code that kept coroutine.running(), its identity.
 */
#include "dx_prefix.h"
#include "lsched.h"
#include "lresolve.h"
#include "lsock.h"
#include "lxaux.h"
#include "dx_resolver.h"
#include "dx_time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SLOT_MASK ((1 << LX_SLOT_BITS) - 1)

/* What a waiting task is resumed with: nothing where the driver's yield
 * has a continuation; where it has none (LX_NO_YIELDK), what it yielded,
 * which becomes its C call's results (ldrive.c). */
#ifdef LX_NO_YIELDK
#define RESUMED_WITH(co) lua_gettop(co)
#else
#define RESUMED_WITH(co) 0
#endif

int lx_task_slot(lx_state *S, lua_Integer id) {
  int slot = (int)(id & SLOT_MASK);
  if (!S->loop_ok || id < 0 || !dx_loop_alive(&S->loop, slot)) return 0;
  return (lua_Integer)dx_loop_gen(&S->loop, slot) == id >> LX_SLOT_BITS ? slot : 0;
}

void lx_need_loop(lua_State *L, lx_state *S) {
  if (!S->loop_ok) {
    int rc = dx_loop_init(&S->loop);
    if (rc < 0) luaL_error(L, "duplex: cannot create the event loop: %s", dx_strerror(rc));
    S->loop_ok = 1;
  }
}

void lx_own_process(lua_State *L, lx_state *S) {
  int rc;
  if (!S->loop_ok || !dx_loop_forked(&S->loop)) return;
  rc = dx_sigs_refork(&S->sigs);
  if (rc == 0) rc = dx_loop_refork(&S->loop);
  if (rc == 0) {
    dx_resolver_forked(&S->resolver);
    rc = dx_loop_watch_sys(&S->loop, 0, dx_sig_any(&S->sigs) ? S->sigs.fd : -1);
  }
  if (rc == 0)         /* a pool of its own (made by a task forked inside run) stays */
    rc = dx_loop_watch_sys(&S->loop, 1, S->resolver ? S->loop.sys[1].fd : -1);
  if (rc < 0)
    luaL_error(L, "duplex: cannot make the event loop this process's own: %s", dx_strerror(rc));
}

/* Call the report function (uservalue 3) with the error on the top of L
 * and a traceback. */
static void report(lua_State *L, const char *traceback) {
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_REPORT);
  lua_insert(L, -2);
  lua_pushstring(L, traceback);
  lua_call(L, 2, 0);
}

/* Close a coroutine's pending to-be-closed variables; an error one of
 * them raises is reported, not lost. err: stack index in L of the error
 * the coroutine ended with, or 0. */
static void close_thread(lua_State *L, lua_State *co, int err) {
  int status = lua_closethread(co, L);
  if (status == LUA_OK || lua_gettop(co) < 1) return;
  lua_xmove(co, L, 1);
  if (err != 0 && lua_rawequal(L, -1, err)) {
    lua_pop(L, 1);                 /* only the task's own error came back */
    return;
  }
  report(L, "(raised by a <close> handler of a task that was ending)");
}

/* A guarded task's end function and guard wait in guards[2 * slot - 1]
 * and guards[2 * slot] (LX_UV_GUARDS; not on the task's own stack, which
 * an error leaves unreachable); the guard also lies to be closed below
 * the function the task runs. */
int lx_spawn(lua_State *L, int detached) {
  lx_state *S = lx_state_of(L);
  int n = lua_gettop(L), slot;
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (detached == LX_TASK_GUARDED) luaL_checktype(L, 3, LUA_TFUNCTION);
  lx_need_loop(L, S);
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_TASKS);
  co = lua_newthread(L);           /* never reused: a task inherits nothing */
  if (!lua_checkstack(co, n + LUA_MINSTACK))
    return luaL_error(L, "duplex: too many arguments for a task");
  slot = dx_loop_spawn(&S->loop);
  if (slot < 0) return luaL_error(L, "duplex: cannot start a task: %s", dx_strerror(slot));
  if (slot >= S->ndetached) {
    int want = dx_loop_nslots(&S->loop);
    unsigned char *d = realloc(S->detached, (size_t)want);
    if (d == NULL) {
      dx_loop_kill(&S->loop, slot);
      return luaL_error(L, "not enough memory");
    }
    S->detached = d;
    S->ndetached = want;
  }
  S->detached[slot] = (unsigned char)detached;
  lua_rawseti(L, -2, slot);                        /* tasks[slot] = co */
  lua_pop(L, 1);
  if (detached == LX_TASK_GUARDED) {
    lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_GUARDS);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 2 * (lua_Integer)slot - 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 2 * (lua_Integer)slot);
    lua_pop(L, 1);
    lua_remove(L, 1);                              /* the end function */
    n--;
  }
  lua_xmove(L, co, n);                             /* fn and its arguments */
#ifndef LX_NO_TOCLOSE
  if (detached == LX_TASK_GUARDED) lua_toclose(co, 1);   /* closed however it ends */
#endif
  lua_pushinteger(L, lx_task_id(S, slot));
  return 1;
}

/* spawn(fn, ...) -> id; its end is reported to the done function */
static int k_spawn(lua_State *L) { return lx_spawn(L, LX_TASK_JOINABLE); }

/* go(fn, ...) -> id; only a failure is reported (no Lua call when one
 * ends well) */
static int k_go(lua_State *L) { return lx_spawn(L, LX_TASK_DETACHED); }

/* Take a guarded task's end function and guard out of the guards:
 * pushed when push, forgotten either way. */
static void take_guard(lua_State *L, int slot, int push) {
  lua_Integer i = 2 * (lua_Integer)slot - 1;
  int h;
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_GUARDS);
  h = lua_gettop(L);
  if (push) {
    lua_rawgeti(L, h, i);
    lua_rawgeti(L, h, i + 1);
  }
  lua_pushnil(L);
  lua_rawseti(L, h, i);
  lua_pushnil(L);
  lua_rawseti(L, h, i + 1);
  lua_remove(L, h);
}

/* Take what the task in slot holds (lx_hold) and, when cancel, end it
 * through its __cancel: a cancelled task's lookup, connect attempts or
 * forward pipe, or a cond's waiter (duplex.sync). */
static void drop_held(lua_State *L, lx_state *S, int slot, int cancel) {
  int h;
  S->detached[slot] &= (unsigned char)~LX_HELD;
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_HELD);
  h = lua_gettop(L);
  lua_rawgeti(L, h, slot);
  lua_pushnil(L);
  lua_rawseti(L, h, slot);
  if (cancel && luaL_getmetafield(L, h + 1, "__cancel")) {
    lua_insert(L, h + 1);
    lua_call(L, 1, 0);
  }
  lua_settop(L, h - 1);
}

/* A cancelled guarded task: no end call, and its guard closes (by its
 * coroutine's close where the guard is to-be-closed). */
static void release_guard(lua_State *L, lx_state *S, int slot) {
#ifdef LX_NO_TOCLOSE
  lx_sock *c;
  take_guard(L, slot, 1);
  c = lx_tosock(L, S, -1, NULL);
  if (c) c->cls->release(S, c);
  lua_pop(L, 2);
#else
  (void)S;
  take_guard(L, slot, 0);
#endif
}

/* A guarded task ended: close what it left open, then
 * ended(guard, ok [, err, traceback]). */
static void finish_guarded(lua_State *L, lx_state *S, int T, int slot, lua_State *co,
                          int status) {
  int nargs = 2;
  lx_sock *c;
  take_guard(L, slot, 1);
  /* A task that ended well left one closer pending, its socket's: run at
   * once, without resetting the dead coroutine (which reallocates its stack). */
#ifdef LX_NO_TOCLOSE
  c = lx_tosock(L, S, -1, NULL);         /* nothing else closes it */
#else
  c = status == LUA_OK ? lx_tosock(L, S, -1, NULL) : NULL;
#endif
  if (c) c->cls->release(S, c);
  lua_pushboolean(L, status == LUA_OK);
  if (status != LUA_OK) {
    lua_pushvalue(co, -1);        /* the error stays on co for its closers */
    lua_xmove(co, L, 1);
    luaL_traceback(L, co, NULL, 0);    /* the message is reported beside it */
    nargs = 4;
  }
  if (c == NULL) close_thread(L, co, status == LUA_OK ? 0 : lua_gettop(L) - 1);
  dx_loop_kill(&S->loop, slot);
  lua_pushnil(L);
  lua_rawseti(L, T, slot);
  lua_call(L, nargs, 0);
}

/* Report a finished task and free its slot. Stack: tasks at T. */
static void finish(lua_State *L, lx_state *S, int T, int slot, lua_State *co,
                   int status, int nres) {
  lua_Integer id = lx_task_id(S, slot);
  int nargs;
  if (S->detached[slot] & LX_HELD) drop_held(L, S, slot, 0);
  if (LX_KIND(S, slot) == LX_TASK_GUARDED) {
    finish_guarded(L, S, T, slot, co, status);
    return;
  }
  if (status == LUA_OK && LX_KIND(S, slot) != LX_TASK_JOINABLE) {
    dx_loop_kill(&S->loop, slot);
    lua_pushnil(L);
    lua_rawseti(L, T, slot);
    return;
  }
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_DONE);
  lua_pushinteger(L, id);
  if (status == LUA_OK) {
    luaL_checkstack(L, nres + 2, "too many results");
    lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    nargs = nres + 2;
  } else {
    lua_pushboolean(L, 0);
    lua_pushvalue(co, -1);         /* the error stays on co for its closers */
    lua_xmove(co, L, 1);
    luaL_traceback(L, co, NULL, 0);
    close_thread(L, co, lua_gettop(L) - 1);
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
  nargs = lua_status(co) != LUA_OK ? RESUMED_WITH(co)
        : lua_gettop(co) - 1 - (LX_KIND(S, slot) == LX_TASK_GUARDED);
  S->running = co;
  S->slot = slot;
  S->budget = LX_BUDGET;
  S->waited = 0;
  status = lua_resume(co, L, nargs, &nres);
  S->running = NULL;
  if (status == LUA_YIELD) {
    /* a bare coroutine.yield() in a task: run again next turn; a wait of
     * the driver's keeps what it yielded (nothing, or its call's stack) */
    if (!S->waited) {
      lua_pop(co, nres);
      dx_loop_ready(&S->loop, slot);
    }
    return;
  }
  finish(L, S, T, slot, co, status, nres);
}

/* step() -> number of live tasks, after one turn: wait, then resume every
 * task that was ready when the turn began. */
static int k_step(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int rc, n, T;
  lx_need_loop(L, S);
  if (S->running) return luaL_error(L, "duplex.run: already running");
  rc = dx_loop_poll(&S->loop);
  if (rc == -EDEADLK)
    return luaL_error(L, "duplex.run: deadlock: every task waits for another task");
  if (rc < 0) return luaL_error(L, "duplex.run: %s", dx_strerror(rc));
  rc = dx_loop_sys_ready(&S->loop);
  if (rc & 2) lx_resolve_collect(S);     /* lookups finished: wake their tasks */
  if (rc & 1) {                          /* signals: hook(name) for each */
    int signo;
    while ((signo = dx_sig_next(&S->sigs)) > 0) {
      lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_SIGNAL);
      lua_pushstring(L, dx_signame(signo));
      lua_call(L, 1, 0);
    }
  }
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_TASKS);
  T = lua_gettop(L);
  for (n = dx_loop_batch(&S->loop); n > 0; n--) {
    int slot = dx_loop_pop(&S->loop);
    if (slot) resume_one(L, S, T, slot);
  }
  lua_pushinteger(L, dx_loop_nlive(&S->loop));
  return 1;
}

/* sethooks(done, report, signal): done(id, ok, ...) when a task ends;
 * report(err, traceback) for an error nothing else reports (a <close>
 * handler's); signal(name) when a watched signal arrives */
static int k_sethooks(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  lua_setiuservalue(L, lua_upvalueindex(1), LX_UV_SIGNAL);
  lua_setiuservalue(L, lua_upvalueindex(1), LX_UV_REPORT);
  lua_setiuservalue(L, lua_upvalueindex(1), LX_UV_DONE);
  return 0;
}

/* inrun(flag): duplex.run begins or ends; meanwhile only tasks may wait.
 * A run that begins in a fork child makes the loop its own first. */
static int k_inrun(lua_State *L) {
  lx_state *S = lx_state_of(L);
  if (lua_toboolean(L, 1)) lx_own_process(L, S);
  S->in_run = lua_toboolean(L, 1);
  return 0;
}

/* current() -> id of the task running this code, or nil */
static int k_current(lua_State *L) {
  lx_state *S = lx_state_of(L);
  if (S->running != L) return 0;
  lua_pushinteger(L, lx_task_id(S, S->slot));
  return 1;
}

/* resume_as(co, ...) -> as coroutine.resume(co, ...), but co is the
 * running task while it runs, so that it may wait: duplex.pcall, a pcall
 * whose function runs in a coroutine of its own where a yield cannot cross
 * pcall (PUC 5.1). Only the task's own coroutine may lend it. */
static int k_resume_as(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lua_State *co = lua_tothread(L, 1);
  int n = lua_gettop(L) - 1, status, nres;
  luaL_argcheck(L, co != NULL && co != L, 1, "another coroutine expected");
  if (S->running != L) return luaL_error(L, "duplex: only a task's own coroutine can lend it");
  if (!lua_checkstack(co, n)) return luaL_error(L, "too many arguments to resume");
  lua_xmove(L, co, n);
  S->running = co;
  status = lua_resume(co, L, n, &nres);
  S->running = L;
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_xmove(co, L, 1);
    return 2;
  }
  if (!lua_checkstack(L, nres + 1)) return luaL_error(L, "too many results to resume");
  lua_pushboolean(L, 1);
  lua_xmove(co, L, nres);
  return nres + 1;
}

/* alive(id) -> whether the task still runs */
static int k_alive(lua_State *L) {
  lua_pushboolean(L, lx_task_slot(lx_state_of(L), luaL_checkinteger(L, 1)) != 0);
  return 1;
}

/* hold(v): v is what the running task's wait holds (lx_hold). */
static int k_hold(lua_State *L) {
  lua_settop(L, 1);
  lx_hold(L, 1);
  return 0;
}

/* cancel(id) -> true if cancelled now, false if already finished, or the
 * string "self" when the task is the one running (the caller unwinds it). */
static int k_cancel(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int slot = lx_task_slot(S, luaL_checkinteger(L, 1));
  lua_State *co;
  if (slot == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_TASKS);
  lua_rawgeti(L, -1, slot);
  co = lua_tothread(L, -1);
  if (co == S->running) {
    lua_pushliteral(L, "self");
    return 1;
  }
  if (LX_KIND(S, slot) == LX_TASK_GUARDED) release_guard(L, S, slot);   /* cancelled: no end call */
  dx_loop_kill(&S->loop, slot);
  if (S->detached[slot] & LX_HELD) drop_held(L, S, slot, 1);
  lua_pushnil(L);
  lua_rawseti(L, -3, slot);
  close_thread(L, co, 0);          /* co stays anchored on our stack */
  lua_pushboolean(L, 1);
  return 1;
}

/* ids() -> array of the ids of every live task */
static int k_ids(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int slot, n = 0;
  lua_newtable(L);
  for (slot = 1; S->loop_ok && slot < dx_loop_nslots(&S->loop); slot++) {
    if (!dx_loop_alive(&S->loop, slot)) continue;
    lua_pushinteger(L, lx_task_id(S, slot));
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

static const luaL_Reg funcs[] = {
  {"ids", k_ids},
  {"spawn", k_spawn},
  {"go", k_go},
  {"step", k_step},
  {"sethooks", k_sethooks},
  {"inrun", k_inrun},
  {"current", k_current},
  {"alive", k_alive},
  {"cancel", k_cancel},
  {"hold", k_hold},
  {"resume_as", k_resume_as},
  {NULL, NULL}
};

/* Stack on entry: module, state. */
void lx_open_sched(lua_State *L) {
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pop(L, 1);
}
