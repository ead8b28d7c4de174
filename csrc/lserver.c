/*
 * lserver.c - duplex.server: a listening socket (socket + bind + listen
 * queue) and duplex.listen. accept creates the client object before taking
 * the connection, so running out of memory can never leak a descriptor.
 * A server bound to a unix path removes that path when it is closed.
 */
#include "dx_prefix.h"
#include "lduplex.h"

#include <errno.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct lx_server {
  lx_sock s;
  dx_addr addr;               /* where it listens, for messages and unlink */
} lx_server;

static lx_server *check_server(lua_State *L) {
  return (lx_server *)lx_checkself(L, lx_state_of(L)->server_mt, LX_SERVER);
}

static lx_server *check_open(lua_State *L) {
  lx_server *s = check_server(L);
  if (s->s.w.fd < 0) luaL_error(L, "attempt to use a closed " LX_SERVER);
  return s;
}

static int sfail(lua_State *L, lx_server *s, const char *op, int code) {
  char where[128];
  dx_addr_label(&s->addr, where, sizeof where);
  return lx_fail(L, op, where, code);
}

/* Stack: 1 self, 2 timeout, 3 deadline, 4 the client to fill. */
static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  lx_state *S = lx_state_of(L);
  lx_server *s = (lx_server *)lua_touserdata(L, 1);
  double deadline = lua_tonumber(L, 3);
  int r;
  (void)status;
  for (;;) {
    if (s->s.w.fd < 0) {
      lx_done(S, L);
      return sfail(L, s, "accept", -ECANCELED);
    }
    if (lx_myturn(L, S, &s->s, 0)) {
      dx_addr peer;
      int fd = dx_accept(s->s.w.fd, &peer);
      if (fd >= 0) {
        lx_done(S, L);
        lx_client_set(lua_touserdata(L, 4), fd, &peer);
        return 1;
      }
      if (fd != -EAGAIN) {
        lx_done(S, L);
        return sfail(L, s, "accept", fd);
      }
    }
    r = lx_wait(L, S, &s->s, DX_READ, deadline, ctx, accept_k);
    if (r < 0) {
      lx_done(S, L);
      return sfail(L, s, "accept", r);
    }
  }
}

static int s_accept(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_server *s = check_open(L);
  double timeout = lua_isnoneornil(L, 2) ? s->s.timeout : lx_opt_timeout(L, 2);
  lua_settop(L, 2);
  lua_pushnumber(L, lx_deadline(timeout));
  lx_client_new(L);
  if (lx_spent(L, S)) return lx_yield(L, S, 0, accept_k);
  return accept_k(L, LUA_OK, 0);
}

static int s_getsockname(lua_State *L) {
  lx_server *s = check_open(L);
  dx_addr a;
  int rc = dx_sockname(s->s.w.fd, 0, &a);
  if (rc < 0) return sfail(L, s, "getsockname", rc);
  return lx_push_addr(L, &a);
}

static int s_settimeout(lua_State *L) {
  lx_server *s = check_open(L);
  s->s.timeout = lx_opt_timeout(L, 2);
  lua_settop(L, 1);
  return 1;
}

static const char *const server_opts[] = {
  "reuseaddr", "reuseport", "rcvbuf", "sndbuf", "v6only", NULL
};

static int s_setoption(lua_State *L) {
  lx_server *s = check_open(L);
  return lx_sockopt(L, &s->s, 1, server_opts);
}

static int s_getoption(lua_State *L) {
  lx_server *s = check_open(L);
  return lx_sockopt(L, &s->s, 0, server_opts);
}

static int s_fileno(lua_State *L) {
  lx_server *s = check_open(L);
  lua_pushinteger(L, s->s.w.fd);
  return 1;
}

static int s_close(lua_State *L) {
  lx_server *s = check_server(L);
  if (s->s.w.fd >= 0) {
    const struct sockaddr_un *su = (const struct sockaddr_un *)&s->addr.ss;
    lx_sock_close(lx_state_of(L), &s->s);
    if (su->sun_family == AF_UNIX && su->sun_path[0] != '\0')
      unlink(su->sun_path);       /* we made it: leave no stale path */
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int s_tostring(lua_State *L) {
  lx_server *s = check_server(L);
  char where[128];
  if (s->s.w.fd < 0) {
    lua_pushliteral(L, LX_SERVER " (closed)");
    return 1;
  }
  dx_addr_label(&s->addr, where, sizeof where);
  lua_pushfstring(L, LX_SERVER " (%s)", where);
  return 1;
}

static const char *const listen_opts[] = {
  "backlog", "reuseaddr", "reuseport", "v6only", NULL
};

static int m_listen(lua_State *L) {
  dx_addr addrs[16];
  dx_listen_opts o;
  lx_server *s;
  int n, i, fd = -EADDRNOTAVAIL;
  lua_settop(L, 3);
  lx_check_opts(L, 3, listen_opts);
  o.backlog = 128;
  o.reuseaddr = lx_opt_bool(L, 3, "reuseaddr", 1);
  o.reuseport = lx_opt_bool(L, 3, "reuseport", 0);
  o.v6only = -1;
  if (!lua_isnil(L, 3)) {
    lua_getfield(L, 3, "backlog");
    if (!lua_isnil(L, -1)) {
      lua_Integer b;
      if (!lua_isinteger(L, -1)) luaL_argerror(L, 3, "option 'backlog' must be an integer");
      b = lua_tointeger(L, -1);
      luaL_argcheck(L, b >= 0 && b <= 65535, 3, "option 'backlog' out of range");
      o.backlog = (int)b;
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "v6only");
    if (!lua_isnil(L, -1)) o.v6only = lx_opt_bool(L, 3, "v6only", 0);
    lua_pop(L, 1);
  }
  n = lx_resolve(L, 1, 2, 1, addrs, 16);
  if (n < 0) return lx_fail(L, "listen", lua_tostring(L, 1), n);
  s = lua_newuserdatauv(L, sizeof(lx_server), 0);
  dx_watch_init(&s->s.w, -1);
  s->s.timeout = -1;
  luaL_setmetatable(L, LX_SERVER);
  /* Only a family this host lacks moves on to the next address ("*" on a
   * host without IPv6 becomes 0.0.0.0); a port in use or forbidden is the
   * answer, or "*" would quietly listen on IPv4 alone. */
  for (i = 0; i < n; i++) {
    s->addr = addrs[i];
    fd = dx_listen(&addrs[i], &o);
    if (fd >= 0 || (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL)) break;
  }
  if (fd < 0) return sfail(L, s, "listen", fd);
  dx_watch_init(&s->s.w, fd);
  dx_sockname(fd, 0, &s->addr);           /* the port the kernel chose */
  return 1;
}

static const luaL_Reg methods[] = {
  {"accept", s_accept},
  {"getsockname", s_getsockname},
  {"settimeout", s_settimeout},
  {"setoption", s_setoption},
  {"getoption", s_getoption},
  {"fileno", s_fileno},
  {"close", s_close},
  {NULL, NULL}
};

static const luaL_Reg metamethods[] = {
  {"__gc", s_close},
  {"__close", s_close},
  {"__tostring", s_tostring},
  {NULL, NULL}
};

/* Stack on entry: module, state. Adds listen and server_methods. */
void lx_open_server(lua_State *L) {
  lx_state *S = (lx_state *)lua_touserdata(L, -1);
  S->server_mt = lx_newclass(L, LX_SERVER, methods, metamethods, "server_methods");
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, m_listen, 1);
  lua_setfield(L, -3, "listen");
}
