/*
 * lserve.c - what serve (lua/duplex/serve.lua) needs of the binding
 * beyond the public API: a task per connection that closes its client
 * however it ends, the list of them, and whether a client is between two
 * requests, for the graceful close.
 */
#include "dx_prefix.h"
#include "lserve.h"
#include "lclient.h"
#include "lsched.h"

#define check_client(L, S) ((lx_client *)lx_checksock(L, S, &lx_client_class))

/* idle(client) -> true when the connection is between two requests: a
 * task waits to read it, nothing of a next request has arrived, and it
 * has read nothing since it last wrote (a handler waiting for the rest of
 * a request is not idle). serve's graceful close ends these at once.
 * "Arrived" counts the kernel's queue too: a request that came just after
 * the accept, or just after the last answer, and that the waiting task has
 * not been woken for yet, must not be cut off (a reload under load). */
static int m_idle(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = check_client(L, S);
  lua_pushboolean(L, c->s.w.fd >= 0 && S->loop_ok && !c->unanswered &&
                     dx_buf_len(&c->rb) == 0 && dx_loop_head_waits(&S->loop, &c->s.w, 0) &&
                     dx_inq(c->s.w.fd) == 0);
  return 1;
}

/* go_guarded(ended, client, fn, ...) -> id: go(fn, ...) for a
 * connection, whose task ends by closing client and calling ended(client,
 * ok [, err, traceback]) (not when cancelled). No wrapper frame stays on
 * the task's stack: an idle connection holds one call frame less per
 * level. */
static int k_go_guarded(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  return lx_spawn(L, LX_TASK_GUARDED);
}

/* guarded(ended) -> the clients of the live guarded tasks whose end
 * function is ended, and their task ids: a serve's connections, kept
 * nowhere else (memory of idle connections), for its graceful close. */
static int k_guarded(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int slot, n = 0;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_newtable(L);                                 /* 2 clients */
  lua_newtable(L);                                 /* 3 ids */
  if (!S->loop_ok) return 2;
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_GUARDS);
  for (slot = 1; slot < dx_loop_nslots(&S->loop) && slot < S->ndetached; slot++) {
    if (!dx_loop_alive(&S->loop, slot) || LX_KIND(S, slot) != LX_TASK_GUARDED) continue;
    lua_rawgeti(L, 4, 2 * (lua_Integer)slot - 1);
    if (lua_rawequal(L, -1, 1)) {
      lua_rawgeti(L, 4, 2 * (lua_Integer)slot);
      lua_rawseti(L, 2, ++n);
      lua_pushinteger(L, lx_task_id(S, slot));
      lua_rawseti(L, 3, n);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 2;
}

static const luaL_Reg funcs[] = {
  {"go_guarded", k_go_guarded},
  {"guarded", k_guarded},
  {"idle", m_idle},
  {NULL, NULL}
};

/* Stack on entry: module, state. */
void lx_open_serve(lua_State *L) {
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pop(L, 1);
}
