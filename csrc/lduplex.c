/*
 * lduplex.c - the module table (luaopen_duplex_core), its state, and the
 * helpers every binding file shares: waiting, results and errors, options
 * and addresses. Module functions here: type, now, resolve.
 */
#include "dx_prefix.h"
#include "lduplex.h"
#include "dx_time.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* --- waiting --------------------------------------------------------------- */

double lx_deadline(double timeout) {
  if (timeout < 0 || timeout == HUGE_VAL) return -1;
  if (timeout == 0) return 0;
  return dx_now() + timeout;
}

int lx_wait(lua_State *L, lx_state *S, lx_sock *s, int dir, double deadline,
            lua_KContext ctx, lua_KFunction k) {
  int rc;
  if (deadline == 0) return -EAGAIN;
  if (deadline > 0 && dx_now() >= deadline) return -ETIMEDOUT;
  if (S->running != NULL) {
    /* Yielding from here would resume the wrong coroutine (or is impossible
     * across a C call); blocking would stall every task. Say so instead. */
    if (S->running != L || !lua_isyieldable(L))
      return luaL_error(L, "duplex: cannot wait here: inside duplex.run, only a "
                           "task's own coroutine can wait (not a coroutine it "
                           "created, nor a C function such as table.sort)");
    rc = dx_loop_suspend(&S->loop, S->slot, &s->w, dir == DX_WRITE, deadline);
    if (rc < 0) return rc;
    S->waited = 1;
    return lua_yieldk(L, 0, ctx, k);
  }
  rc = dx_wait_fd(s->w.fd, dir, dx_ms_until(deadline));
  return rc < 0 ? rc : 0;
}

int lx_spent(lua_State *L, lx_state *S) {
  return S->running == L && --S->budget < 0 && lua_isyieldable(L);
}

int lx_yield(lua_State *L, lx_state *S, lua_KContext ctx, lua_KFunction k) {
  dx_loop_ready(&S->loop, S->slot);     /* back of the queue */
  S->waited = 1;
  return lua_yieldk(L, 0, ctx, k);
}

int lx_myturn(lua_State *L, lx_state *S, lx_sock *s, int dir) {
  return S->running != L || dx_loop_myturn(&s->w, dir, S->slot);
}

void *lx_checkself(lua_State *L, const void *mt, const char *tname) {
  void *p = lua_touserdata(L, 1);
  if (p != NULL && lua_getmetatable(L, 1)) {
    const void *m = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (m == mt) return p;
  }
  return luaL_checkudata(L, 1, tname);
}

void lx_sock_close(lx_state *S, lx_sock *s) {
  if (s->w.fd < 0) return;
  if (S->loop_ok) dx_loop_close_watch(&S->loop, &s->w);
  dx_close(s->w.fd);
  s->w.fd = -1;
}

/* --- results --------------------------------------------------------------- */

int lx_fail(lua_State *L, const char *op, const char *label, int code) {
  luaL_pushfail(L);
  if (label && label[0])
    lua_pushfstring(L, "%s %s: %s", op, label, dx_strerror(code));
  else
    lua_pushfstring(L, "%s: %s", op, dx_strerror(code));
  lua_pushstring(L, dx_errname(code));
  return 3;
}

int lx_push_addr(lua_State *L, const dx_addr *a) {
  char host[112];
  const char *family;
  int port;
  dx_addr_text(a, host, sizeof host, &port, &family);
  lua_pushstring(L, host);
  if (port >= 0) lua_pushinteger(L, port);
  else lua_pushnil(L);
  lua_pushstring(L, family);
  return 3;
}

/* --- arguments --------------------------------------------------------------- */

double lx_opt_timeout(lua_State *L, int arg) {
  double t;
  if (lua_isnoneornil(L, arg)) return -1;
  t = luaL_checknumber(L, arg);
  luaL_argcheck(L, t >= 0 && t == t, arg, "timeout must be a non-negative number");
  return t;
}

void lx_check_opts(lua_State *L, int arg, const char *const known[]) {
  if (lua_isnoneornil(L, arg)) return;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int i, ok = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *key = lua_tostring(L, -1);
      for (i = 0; known[i]; i++)
        if (strcmp(known[i], key) == 0) ok = 1;
      if (!ok) luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", key));
    } else {
      luaL_argerror(L, arg, "option names must be strings");
    }
  }
}

int lx_opt_bool(lua_State *L, int arg, const char *key, int dflt) {
  int v = dflt;
  if (lua_isnoneornil(L, arg)) return dflt;
  lua_getfield(L, arg, key);
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1))
      luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a boolean", key));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

int lx_resolve(lua_State *L, int hostarg, int portarg, int passive,
               dx_addr *out, int max) {
  const char *host = luaL_checkstring(L, hostarg);
  lua_Integer port;
  if (strncmp(host, "unix:", 5) == 0) {
    int rc = dx_addr_unix(host + 5, out);
    if (rc == -EINVAL) luaL_argerror(L, hostarg, "empty unix socket path");
    return rc < 0 ? rc : 1;
  }
  port = luaL_checkinteger(L, portarg);
  luaL_argcheck(L, port >= 0 && port <= 65535, portarg, "port out of range");
  return dx_resolve(host, (int)port, passive, out, max);
}

/* --- module functions ---------------------------------------------------------- */

static int m_type(lua_State *L) {
  lx_sock *s;
  luaL_checkany(L, 1);
  if ((s = luaL_testudata(L, 1, LX_CLIENT)) != NULL)
    lua_pushstring(L, s->w.fd < 0 ? "closed client" : "client");
  else if ((s = luaL_testudata(L, 1, LX_SERVER)) != NULL)
    lua_pushstring(L, s->w.fd < 0 ? "closed server" : "server");
  else
    luaL_pushfail(L);
  return 1;
}

static int m_now(lua_State *L) {
  lua_pushnumber(L, dx_now());
  return 1;
}

/* resolve(host [, port]) -> { {host=, port=, family=}, ... } */
static int m_resolve(lua_State *L) {
  dx_addr addrs[16];
  int n, i;
  if (lua_isnoneornil(L, 2)) lua_settop(L, 1), lua_pushinteger(L, 0);
  n = lx_resolve(L, 1, 2, 0, addrs, 16);
  if (n < 0) return lx_fail(L, "resolve", luaL_checkstring(L, 1), n);
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lx_push_addr(L, &addrs[i]);
    lua_setfield(L, -4, "family");
    lua_setfield(L, -3, "port");
    lua_setfield(L, -2, "host");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

const void *lx_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                        const luaL_Reg *metamethods, const char *field) {
  luaL_newmetatable(L, name);              /* module, state, mt */
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, metamethods, 1);
  lua_newtable(L);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -5, field);              /* module[field] = methods */
  lua_setfield(L, -2, "__index");
  return lua_topointer(L, -1);
}

static int state_gc(lua_State *L) {
  lx_state *S = lua_touserdata(L, 1);
  if (S->loop_ok) dx_loop_free(&S->loop);
  S->loop_ok = 0;
  return 0;
}

static const luaL_Reg funcs[] = {
  {"type", m_type},
  {"now", m_now},
  {"resolve", m_resolve},
  {NULL, NULL}
};

#if defined(__GNUC__)
#define LX_EXPORT __attribute__((visibility("default")))
#else
#define LX_EXPORT
#endif

LX_EXPORT int luaopen_duplex_core(lua_State *L);

LX_EXPORT int luaopen_duplex_core(lua_State *L) {
  /* The state lives in a userdata created first, so that at lua_close it is
   * finalised after every socket that still needs its loop. */
  lx_state *S = lua_newuserdatauv(L, sizeof(lx_state), 4);
  memset(S, 0, sizeof *S);
  lua_newtable(L);                         /* uservalue 1: tasks by slot */
  lua_setiuservalue(L, -2, 1);
  lua_newtable(L);                         /* uservalue 3: idle coroutines */
  lua_setiuservalue(L, -2, 3);             /* (4: the client metatable) */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);

  lua_newtable(L);                         /* the module */
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pushliteral(L, "duplex 0.1.0");
  lua_setfield(L, -2, "_VERSION");
  lua_insert(L, -2);                       /* module, state */
  lx_open_server(L);
  lx_open_client(L);
  lx_open_sched(L);
  lua_pop(L, 1);
  return 1;
}

/* --- socket options shared by servers and clients ------------------------------ */

#include <netinet/in.h>
#include <netinet/tcp.h>

typedef struct lx_optdef {
  const char *name;
  int level, opt;
  char kind;            /* 'b' boolean, 'i' integer, 'l' linger, 'r' read-only boolean */
} lx_optdef;

static const lx_optdef optdefs[] = {
  {"nodelay", IPPROTO_TCP, TCP_NODELAY, 'b'},
  {"keepalive", SOL_SOCKET, SO_KEEPALIVE, 'b'},
  {"linger", SOL_SOCKET, SO_LINGER, 'l'},
  {"rcvbuf", SOL_SOCKET, SO_RCVBUF, 'i'},
  {"sndbuf", SOL_SOCKET, SO_SNDBUF, 'i'},
  {"reuseaddr", SOL_SOCKET, SO_REUSEADDR, 'b'},
#ifdef SO_REUSEPORT
  {"reuseport", SOL_SOCKET, SO_REUSEPORT, 'b'},
#endif
  {"v6only", IPPROTO_IPV6, IPV6_V6ONLY, 'r'},
  {NULL, 0, 0, 0}
};

int lx_sockopt(lua_State *L, lx_sock *s, int set, const char *const allowed[]) {
  const char *name = luaL_checkstring(L, 2);
  const lx_optdef *d;
  int i, rc = 0, v = 0, ok = 0;
  for (i = 0; allowed[i]; i++)
    if (strcmp(allowed[i], name) == 0) ok = 1;
  if (!ok) return luaL_argerror(L, 2, lua_pushfstring(L, "unknown option '%s'", name));
  for (d = optdefs; d->name && strcmp(d->name, name) != 0; d++) {}
  if (d->name == NULL) return -1;         /* not a socket option: caller's */
  if (set) {
    if (d->kind == 'r')
      return luaL_argerror(L, 2, lua_pushfstring(L, "option '%s' is read-only", name));
    if (d->kind == 'b') {
      luaL_checktype(L, 3, LUA_TBOOLEAN);
      rc = dx_setopt(s->w.fd, d->level, d->opt, lua_toboolean(L, 3));
    } else if (d->kind == 'i') {
      lua_Integer n = luaL_checkinteger(L, 3);
      luaL_argcheck(L, n > 0 && n <= 0x7fffffff, 3, "size out of range");
      rc = dx_setopt(s->w.fd, d->level, d->opt, (int)n);
    } else {                              /* linger: seconds, or false */
      if (lua_isboolean(L, 3) && !lua_toboolean(L, 3)) {
        rc = dx_setlinger(s->w.fd, 0, 0);
      } else {
        lua_Integer n = luaL_checkinteger(L, 3);
        luaL_argcheck(L, n >= 0 && n <= 0x7fff, 3, "linger out of range");
        rc = dx_setlinger(s->w.fd, 1, (int)n);
      }
    }
    if (rc < 0) return lx_fail(L, "setoption", name, rc);
    lua_settop(L, 1);
    return 1;
  }
  if (d->kind == 'l') {
    int on, secs;
    rc = dx_getlinger(s->w.fd, &on, &secs);
    if (rc < 0) return lx_fail(L, "getoption", name, rc);
    if (on) lua_pushinteger(L, secs);
    else lua_pushboolean(L, 0);
    return 1;
  }
  rc = dx_getopt(s->w.fd, d->level, d->opt, &v);
  if (rc < 0) return lx_fail(L, "getoption", name, rc);
  if (d->kind == 'i') lua_pushinteger(L, v);
  else lua_pushboolean(L, v != 0);
  return 1;
}
