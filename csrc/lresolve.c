/*
 * lresolve.c - duplex.resolve(host [, port [, opts]]) as an operation of
 * the driver: inside a task a name goes to the lookup pool (dx_resolver)
 * and the task waits like any other wait, under its timeout, while the
 * others run; outside a task getaddrinfo blocks as it always has. Numeric
 * hosts never reach the pool. connect, listen and the datagram calls given
 * a name in a task look it up this way first (lx_lookup), through
 * lua_callk, and go on with the numeric addresses.
 */
#include "dx_prefix.h"
#include "lduplex.h"
#include "dx_resolver.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Per call (stack index 4): the pool's lookup while it runs, then the
 * answer. Its __gc abandons a lookup nobody waits for any more. */
typedef struct lx_answer {
  dx_lookup *lk;
  lx_state *S;
  int n;
  dx_addr addrs[DX_LOOKUP_MAX];
} lx_answer;

static void forget(lx_answer *a) {
  if (a->lk == NULL) return;
  dx_lookup_abandon(a->S->resolver, a->lk);
  a->lk = NULL;
  if (--a->S->nlookups == 0 && a->S->loop_ok) dx_loop_watch_sys(&a->S->loop, 1, -1);
}

static int answer_gc(lua_State *L) {
  forget((lx_answer *)lua_touserdata(L, 1));
  return 0;
}

/* Stack: 1 host, 2 port, 3 family (AF_*), 4 the answer. k[0]: 1 once the
 * lookup is in the pool. */
static int try_resolve(lua_State *L, lx_call *k) {
  lx_state *S = k->S;
  lx_answer *a = (lx_answer *)lua_touserdata(L, 4);
  const char *host = lua_tostring(L, 1);
  int port = (int)lua_tointeger(L, 2), family = (int)lua_tointeger(L, 3), rc;
  if (k->k[0] == 0) {
    a->n = dx_resolve_ex(host, port, DX_NUMERIC, family, a->addrs, DX_LOOKUP_MAX);
    if (a->n != DX_NOT_NUMERIC) return a->n < 0 ? a->n : LX_DONE;
    if (S->running != L || !lua_isyieldable(L)) {       /* outside a task: block */
      a->n = dx_resolve_ex(host, port, 0, family, a->addrs, DX_LOOKUP_MAX);
      return a->n < 0 ? a->n : LX_DONE;
    }
    a->lk = dx_lookup_new(host, port, 0, family, lx_task_id(S, S->slot));
    if (a->lk == NULL) return -ENOMEM;
    rc = dx_lookup_start(&S->resolver, a->lk);
    if (rc < 0) {
      dx_lookup_free(a->lk);
      a->lk = NULL;
      return rc;
    }
    S->nlookups++;
    /* (every time: a fork child's first lookup makes a new pool while
     * lookups of the parent's may still be counted) */
    if ((rc = dx_loop_watch_sys(&S->loop, 1, dx_resolver_fd(S->resolver))) < 0) {
      forget(a);
      return rc;
    }
    k->k[0] = 1;
    return LX_WAIT_TIMER;
  }
  if (a->lk->state != DX_LK_COLLECTED) return LX_WAIT_TIMER;
  a->n = a->lk->n;
  if (a->n > 0) memcpy(a->addrs, a->lk->addrs, sizeof(dx_addr) * (size_t)a->n);
  forget(a);
  return a->n < 0 ? a->n : LX_DONE;
}

/* { {host=, port=, family=}, ... } */
static int push_resolve(lua_State *L, lx_call *k) {
  lx_answer *a = (lx_answer *)lua_touserdata(L, 4);
  int i;
  (void)k;
  lua_createtable(L, a->n, 0);
  for (i = 0; i < a->n; i++) {
    lua_createtable(L, 0, 3);
    lx_push_addr(L, &a->addrs[i]);
    lua_setfield(L, -4, "family");
    lua_setfield(L, -3, "port");
    lua_setfield(L, -2, "host");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int fail_resolve(lua_State *L, lx_call *k, int code) {
  (void)k;
  forget((lx_answer *)lua_touserdata(L, 4));       /* a timeout, say */
  return lx_fail(L, "resolve", lua_tostring(L, 1), code);
}

static const lx_op op_resolve = {"resolve", -1, 0, 0, try_resolve, push_resolve, fail_resolve, NULL, 0, 0};

/* For lx_lookup: the answer itself, which lx_resolve reads. */
static int push_answer(lua_State *L, lx_call *k) {
  (void)k;
  lua_pushvalue(L, 4);
  return 1;
}

static const lx_op op_lookup = {"resolve", -1, 0, 0, try_resolve, push_answer, fail_resolve, NULL, 0, 0};

static const char *const resolve_opts[] = {"family", "timeout", NULL};

/* resolve(host [, port [, opts]]) -> { {host=, port=, family=}, ... };
 * upvalue 3 true: the answer userdata instead (lx_lookup's). */
static int m_resolve(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lua_Integer port = 0;
  int family = AF_UNSPEC;
  double timeout = -1;
  lx_answer *a;
  lx_checkcstring(L, 1, "host");
  if (!lua_isnoneornil(L, 2)) {
    port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  }
  lua_settop(L, 3);
  lx_check_opts(L, 3, resolve_opts);
  if (!lua_isnil(L, 3)) {
    const char *why;
    lua_getfield(L, 3, "family");
    if (!lua_isnil(L, -1)) {
      const char *f = lua_tostring(L, -1);
      if (f && strcmp(f, "inet") == 0) family = AF_INET;
      else if (f && strcmp(f, "inet6") == 0) family = AF_INET6;
      else luaL_argerror(L, 3, "option 'family' must be \"inet\" or \"inet6\"");
    }
    lua_getfield(L, 3, "timeout");
    why = lx_timeout_error(L, -1, &timeout);
    if (why) luaL_argerror(L, 3, lua_pushfstring(L, "option 'timeout': %s", why));
    lua_settop(L, 3);
  }
  if (strncmp(lua_tostring(L, 1), "unix:", 5) == 0) {
    dx_addr u;
    int rc = dx_addr_unix(lua_tostring(L, 1) + 5, &u);
    if (rc < 0) return lx_fail(L, "resolve", lua_tostring(L, 1), rc);
    lua_createtable(L, 1, 0);
    lua_createtable(L, 0, 3);
    lx_push_addr(L, &u);
    lua_setfield(L, -4, "family");
    lua_setfield(L, -3, "port");
    lua_setfield(L, -2, "host");
    lua_rawseti(L, -2, 1);
    return 1;
  }
  lua_pushinteger(L, port);
  lua_replace(L, 2);
  lua_pushinteger(L, family);
  lua_replace(L, 3);
  a = lua_newuserdatauv(L, sizeof *a, 0);           /* 4 */
  a->lk = NULL;
  a->S = S;
  a->n = 0;
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setmetatable(L, -2);
  lua_toclose(L, 4);          /* a cancelled task gives its lookup up at once */
  return lx_drive(L, lua_toboolean(L, lua_upvalueindex(3)) ? &op_lookup : &op_resolve,
                  lx_deadline(timeout));
}

int lx_answer_addrs(lua_State *L, int idx, int port, dx_addr *out, int max) {
  lx_state *S = lx_state_of(L);
  lx_answer *a = lua_touserdata(L, idx);
  int i, n = 0;
  if (a == NULL || !lua_getmetatable(L, idx)) return -1;
  if (lua_topointer(L, -1) != S->answer_mt) n = -1;
  lua_pop(L, 1);
  for (i = 0; n >= 0 && i < a->n && n < max; i++) {
    out[n] = a->addrs[i];
    dx_addr_set_port(&out[n++], port);
  }
  return n;
}

/* --- lookups for the other calls ----------------------------------------- */

int lx_need_lookup(lua_State *L, int hostarg) {
  lx_state *S = lx_state_of(L);
  const char *host;
  dx_addr a;
  if (S->running != L || !lua_isyieldable(L) || lua_type(L, hostarg) != LUA_TSTRING) return 0;
  host = lua_tostring(L, hostarg);
  return strncmp(host, "unix:", 5) != 0 && strlen(host) == lua_rawlen(L, hostarg) &&
         dx_resolve_ex(host, 0, DX_NUMERIC, AF_UNSPEC, &a, 1) == DX_NOT_NUMERIC;
}

int lx_lookup(lua_State *L, int hostarg, int portarg, double timeout,
              lua_KContext ctx, lua_KFunction k) {
  luaL_checkstack(L, 6, NULL);
  lua_getiuservalue(L, lua_upvalueindex(1), 8);        /* resolve */
  lua_pushvalue(L, hostarg);
  if (lua_isinteger(L, portarg)) lua_pushvalue(L, portarg);
  else lua_pushnil(L);
  lua_createtable(L, 0, 1);
  if (timeout >= 0) {
    lua_pushnumber(L, timeout);
    lua_setfield(L, -2, "timeout");
  }
  lua_callk(L, 3, 3, ctx, k);
  return k(L, LUA_OK, ctx);
}

int lx_lookup_done(lua_State *L, int hostarg, const char *op) {
  int top = lua_gettop(L);
  if (lua_isnil(L, top - 2)) {                       /* nil, msg, code */
    const char *msg = lua_tostring(L, top - 1);
    lua_pushfstring(L, "%s%s", op, msg + strlen("resolve"));
    lua_replace(L, top - 1);
    return 3;
  }
  lua_pushvalue(L, top - 2);                          /* the answer */
  lua_replace(L, hostarg);
  lua_settop(L, top - 3);
  return 0;
}

void lx_resolve_collect(lx_state *S) {
  dx_lookup *lk = dx_lookup_collect(S->resolver);
  for (; lk; lk = lk->next) {
    int slot = (int)(lk->owner & ((1 << LX_SLOT_BITS) - 1));
    if (dx_loop_alive(&S->loop, slot) && lx_task_id(S, slot) == lk->owner &&
        dx_loop_sleeping(&S->loop, slot))
      dx_loop_ready(&S->loop, slot);
  }
}

/* Stack on entry: module, state. Adds resolve. */
void lx_open_resolve(lua_State *L) {
  lx_state *S = (lx_state *)lua_touserdata(L, -1);
  lua_createtable(L, 0, 2);                 /* the answers' metatable */
  lua_pushcfunction(L, answer_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, answer_gc);
  lua_setfield(L, -2, "__close");
  S->answer_mt = lua_topointer(L, -1);
  lua_pushvalue(L, -2);                     /* resolve: state, mt, false */
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 0);
  lua_pushcclosure(L, m_resolve, 3);
  lua_setfield(L, -4, "resolve");
  lua_pushvalue(L, -2);                     /* lx_lookup's: state, mt, true */
  lua_insert(L, -2);
  lua_pushboolean(L, 1);
  lua_pushcclosure(L, m_resolve, 3);
  lua_setiuservalue(L, -2, 8);
}
