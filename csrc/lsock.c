/*
 * lsock.c - what servers, clients and datagram sockets share behind their
 * common head (lx_sock): the type and closed checks, closing, failure
 * results, the making of their classes, and one copy of the methods and
 * options that do not depend on the class: settimeout, fileno,
 * getsockname, and socket options. What differs it reaches through the
 * class descriptor, never by calling into a class's file.
 */
#include "dx_prefix.h"
#include "lsock.h"
#include "lxaux.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

void *lx_newsock(lua_State *L, const lx_class *cls, size_t size) {
  lx_sock *s = lua_newuserdatauv(L, size, 0);
  memset(s, 0, size);
  dx_watch_init(&s->w, -1);
  s->timeout = s->idle = s->deadline = -1;
  s->cls = cls;
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_CLASS_MT + cls->index);
  lua_setmetatable(L, -2);
  return s;
}

lx_sock *lx_tosock(lua_State *L, const lx_state *S, int idx, const lx_class *cls) {
  void *p = lua_touserdata(L, idx);
  if (p != NULL && lua_getmetatable(L, idx)) {
    const void *m = lua_topointer(L, -1);
    int i;
    lua_pop(L, 1);
    if (cls) return m == S->mt[cls->index] ? (lx_sock *)p : NULL;
    for (i = 0; i < LX_NCLASSES; i++)
      if (m == S->mt[i]) return (lx_sock *)p;
  }
  return NULL;
}

lx_sock *lx_checksock(lua_State *L, const lx_state *S, const lx_class *cls) {
  lx_sock *s = lx_tosock(L, S, 1, cls);
  return s ? s : (lx_sock *)luaL_checkudata(L, 1, cls->name);
}

int lx_closed(lua_State *L, lx_sock *s, const char *op) {
  return lx_sockfail(L, s, op, DX_ECLOSED);
}

void lx_sock_close(lx_state *S, lx_sock *s) {
  if (s->w.fd < 0) return;
  /* A connection's registration is left for close to remove (one system
   * call less per connection); a listener's, which forked workers may
   * share, goes at once, so that their connections never wake this loop. */
  if (S->loop_ok && s->cls->connection) {
    dx_loop_close_fd(&S->loop, &s->w);
    return;
  }
  if (S->loop_ok) dx_loop_close_watch(&S->loop, &s->w);
  dx_close(s->w.fd);
  s->w.fd = -1;
}

int lx_sockfail(lua_State *L, lx_sock *s, const char *op, int code) {
  char where[128];
  const char *why = s->cls->reason ? s->cls->reason(s, code) : NULL;
  s->cls->label(s, where, sizeof where);
  if (why == NULL) return lx_fail(L, op, where, code);
  luaL_pushfail(L);
  lua_pushfstring(L, "%s %s: %s", op, where, why);
  lua_pushstring(L, dx_errname(code));
  return 3;
}

/* --- shared methods (upvalue 2: the class) ------------------------------ */

#define self_of(L) \
  lx_checksock(L, lx_state_of(L), (const lx_class *)lua_touserdata(L, lua_upvalueindex(2)))

/* Also of a closed socket: it uses no descriptor. */
static int m_settimeout(lua_State *L) {
  lx_sock *s = self_of(L);
  s->timeout = lx_opt_timeout(L, 2);
  lua_settop(L, 1);
  return 1;
}

static int m_fileno(lua_State *L) {
  lx_sock *s = self_of(L);
  if (s->w.fd < 0) return lx_closed(L, s, "fileno");
  lua_pushinteger(L, s->w.fd);
  return 1;
}

static int m_getsockname(lua_State *L) {
  lx_sock *s = self_of(L);
  dx_addr a;
  int rc;
  if (s->w.fd < 0) return lx_closed(L, s, "getsockname");
  rc = dx_sockname(s->w.fd, 0, &a);
  if (rc < 0) return lx_sockfail(L, s, "getsockname", rc);
  return lx_push_addr(L, &a);
}

static const luaL_Reg shared[] = {
  {"settimeout", m_settimeout},
  {"fileno", m_fileno},
  {"getsockname", m_getsockname},
  {NULL, NULL}
};

void lx_newclass(lua_State *L, const lx_class *cls, const luaL_Reg *methods,
                 const luaL_Reg *metamethods, const char *field) {
  lx_state *S = (lx_state *)lua_touserdata(L, -1);
  /* The first load registers the metatable under its name; a later load
   * makes its own, so as not to rebind the objects of the first. */
  if (!luaL_newmetatable(L, cls->name)) {  /* module, state, mt */
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, cls->name);
    lua_setfield(L, -2, "__name");
  }
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, metamethods, 1);
  lua_newtable(L);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -3);
  lua_pushlightuserdata(L, (void *)cls);
  luaL_setfuncs(L, shared, 2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -5, field);              /* module[field] = methods */
  lua_setfield(L, -2, "__index");
  S->mt[cls->index] = lua_topointer(L, -1);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, -3, LX_UV_CLASS_MT + cls->index);   /* for lx_newsock */
}

/* --- socket options ---------------------------------------------------------- */

typedef struct lx_optdef {
  const char *name;
  int level, opt;
  char kind;            /* 'b' boolean, 'i' size, 'l' linger, 'r' read-only
                           boolean, 'd' the deadline; of the IP layer (the
                           socket's family picks opt, or opt6): 'h' a hop
                           count, 'B' a boolean */
  int opt6;
} lx_optdef;

static const lx_optdef optdefs[] = {
  {"nodelay", IPPROTO_TCP, TCP_NODELAY, 'b', 0},
  {"keepalive", SOL_SOCKET, SO_KEEPALIVE, 'b', 0},
  {"linger", SOL_SOCKET, SO_LINGER, 'l', 0},
  {"rcvbuf", SOL_SOCKET, SO_RCVBUF, 'i', 0},
  {"sndbuf", SOL_SOCKET, SO_SNDBUF, 'i', 0},
  {"reuseaddr", SOL_SOCKET, SO_REUSEADDR, 'b', 0},
#ifdef SO_REUSEPORT
  {"reuseport", SOL_SOCKET, SO_REUSEPORT, 'b', 0},
#endif
  {"v6only", IPPROTO_IPV6, IPV6_V6ONLY, 'r', 0},
  {"broadcast", SOL_SOCKET, SO_BROADCAST, 'b', 0},
  {"deadline", 0, 0, 'd', 0},
  {"ttl", IPPROTO_IP, IP_TTL, 'h', IPV6_UNICAST_HOPS},
  {"multicast_ttl", IPPROTO_IP, IP_MULTICAST_TTL, 'h', IPV6_MULTICAST_HOPS},
  {"multicast_loop", IPPROTO_IP, IP_MULTICAST_LOOP, 'B', IPV6_MULTICAST_LOOP},
  {NULL, 0, 0, 0, 0}
};

/* An option of the IP layer, which each family has under its own name: a
 * dual-stack socket has it twice, for its IPv6 and its IPv4 traffic, and
 * sets both (reading the IPv6 one). */
static int ip_option(lua_State *L, lx_sock *s, int set, const lx_optdef *d) {
  int dual, v = 0, rc = dx_sock_family(s->w.fd, &dual);
  int v6 = rc == AF_INET6;
  if (rc >= 0 && rc != AF_INET && rc != AF_INET6) rc = -ENOPROTOOPT;
  if (rc < 0) return lx_fail(L, set ? "setoption" : "getoption", d->name, rc);
  if (!set) {
    rc = dx_getopt(s->w.fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? d->opt6 : d->opt, &v);
    if (rc < 0) return lx_fail(L, "getoption", d->name, rc);
    if (d->kind == 'B') lua_pushboolean(L, v != 0);
    else lua_pushinteger(L, v);
    return 1;
  }
  if (d->kind == 'B') {
    luaL_checktype(L, 3, LUA_TBOOLEAN);
    v = lua_toboolean(L, 3);
  } else {
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0 && n <= 255, 3, "hop count out of range");
    v = (int)n;
  }
  rc = dx_setopt(s->w.fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? d->opt6 : d->opt, v);
  if (rc == 0 && dual) rc = dx_setopt(s->w.fd, IPPROTO_IP, d->opt, v);
  if (rc < 0) return lx_fail(L, "setoption", d->name, rc);
  lua_settop(L, 1);
  return 1;
}

/* deadline: a duplex.now() time by which every call of the socket ends
 * (nil, msg, "ETIMEDOUT" once it would have to wait past it), beside each
 * call's own timeout; false removes it. */
static int deadline_option(lua_State *L, lx_sock *s, int set) {
  const char *why;
  if (!set) {
    if (s->deadline < 0) lua_pushboolean(L, 0);
    else lua_pushnumber(L, s->deadline);
    return 1;
  }
  why = lx_deadline_error(L, 3, &s->deadline);
  if (why) return luaL_argerror(L, 3, why);
  lua_settop(L, 1);
  return 1;
}

static int set_option(lua_State *L, lx_sock *s, const lx_optdef *d) {
  int rc;
  if (d->kind == 'r')
    return luaL_argerror(L, 2, lua_pushfstring(L, "option '%s' is read-only", d->name));
  if (d->kind == 'b') {
    luaL_checktype(L, 3, LUA_TBOOLEAN);
    rc = dx_setopt(s->w.fd, d->level, d->opt, lua_toboolean(L, 3));
  } else if (d->kind == 'i') {
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n > 0 && n <= 0x7fffffff, 3, "size out of range");
    rc = dx_setopt(s->w.fd, d->level, d->opt, (int)n);
  } else if (lua_isboolean(L, 3) && !lua_toboolean(L, 3)) {   /* linger off */
    rc = dx_setlinger(s->w.fd, 0, 0);
  } else {
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0 && n <= 0x7fff, 3, "linger out of range");
    rc = dx_setlinger(s->w.fd, 1, (int)n);
  }
  if (rc < 0) return lx_fail(L, "setoption", d->name, rc);
  lua_settop(L, 1);
  return 1;
}

static int get_option(lua_State *L, lx_sock *s, const lx_optdef *d) {
  int rc, v = 0;
  if (d->kind == 'l') {
    int on, secs;
    rc = dx_getlinger(s->w.fd, &on, &secs);
    if (rc < 0) return lx_fail(L, "getoption", d->name, rc);
    if (on) lua_pushinteger(L, secs);
    else lua_pushboolean(L, 0);
    return 1;
  }
  rc = dx_getopt(s->w.fd, d->level, d->opt, &v);
  if (rc < 0) return lx_fail(L, "getoption", d->name, rc);
  if (d->kind == 'i') lua_pushinteger(L, v);
  else lua_pushboolean(L, v != 0);
  return 1;
}

int lx_sockopt(lua_State *L, lx_sock *s, int set, const char *const allowed[]) {
  const char *name = lx_checkcstring(L, 2, "option name");
  const lx_optdef *d;
  int i, ok = 0;
  for (i = 0; allowed[i] && !ok; i++) ok = strcmp(allowed[i], name) == 0;
  if (!ok) return luaL_argerror(L, 2, lua_pushfstring(L, "unknown option '%s'", name));
  if (s->w.fd < 0) return lx_closed(L, s, set ? "setoption" : "getoption");
  for (d = optdefs; d->name && strcmp(d->name, name) != 0; d++) {}
  if (d->name == NULL) return -1;         /* not a socket option: caller's */
  if (d->kind == 'd') return deadline_option(L, s, set);
  if (d->kind == 'h' || d->kind == 'B') return ip_option(L, s, set, d);
  return set ? set_option(L, s, d) : get_option(L, s, d);
}
