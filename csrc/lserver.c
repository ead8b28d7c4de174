/*
 * lserver.c - duplex.server: a listening socket (socket + bind + listen
 * queue) and duplex.listen. accept creates the client object before taking
 * the connection, so running out of memory can never leak a descriptor.
 * A server bound to a unix path removes that path when it is closed.
 */
#include "dx_prefix.h"
#include "lserver.h"
#include "lclient.h"
#include "lproxy.h"
#include "lresolve.h"
#include "ltls.h"
#include "lxaux.h"
#include "dx_proc.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

typedef struct lx_server {
  lx_sock s;
  dx_addr addr;               /* where it listens, for messages and unlink */
  int nodelay;                /* accepted TCP clients get TCP_NODELAY */
  struct dx_tls_ctx *tls;     /* accepted clients speak TLS, or NULL */
  double hs_timeout;          /* serve's handshake timeout (seconds) */
  lx_proxy_cfg *proxy;        /* clients begin with a PROXY header, or NULL */
  int inherited;              /* fd:N or systemd: a Unix path is not ours to remove */
} lx_server;

static void server_label(lx_sock *s, char *out, size_t n) {
  dx_addr_label(&((lx_server *)s)->addr, out, n);
}

/* What close, __close and __gc do: idempotent. */
static void server_release(lx_state *S, lx_sock *sock) {
  lx_server *s = (lx_server *)sock;
  if (s->s.w.fd >= 0) {
    lx_sock_close(S, &s->s);
    if (!s->inherited) dx_unlink_unix(&s->addr);   /* we made it: leave no stale path */
  }
  lx_tls_unref(s->tls);
  s->tls = NULL;
  free(s->proxy);
  s->proxy = NULL;
}

static const lx_class server_class = {
  .name = "duplex.server", .type = {"server", "closed server"}, .index = 0,
  .label = server_label, .release = server_release,
};

#define check_server(L) ((lx_server *)lx_checksock(L, lx_state_of(L), &server_class))

/* Stack: 1 self, 2 timeout, 3 the client to fill, 4 its PROXY header is
 * read later (serve). A listener with the proxy option hands the client
 * to lproxy.c, and TLS starts after the header. */
static int try_accept(lua_State *L, lx_call *k) {
  lx_server *s = (lx_server *)k->sock;
  lx_client *c;
  dx_addr peer;
  int fd = dx_accept(s->s.w.fd, &peer);
  if (fd == -EAGAIN) return LX_WAIT_READ;
  if (fd < 0) return fd;
  if (s->nodelay && !dx_nodelay_inherited() && peer.ss.ss_family != AF_UNIX)
    dx_setopt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  c = (lx_client *)lua_touserdata(L, 3);
  lx_client_set(c, fd, &peer);
  c->accepted = 1;
  dx_loop_fresh(&c->s.w);        /* a request rarely comes with the accept */
  if (s->proxy) {
    if (lx_proxy_accept(c, s->proxy, &peer, s->tls) < 0) {
      dx_close(fd);
      dx_watch_init(&c->s.w, -1);
      return -ENOMEM;
    }
  } else if (s->tls && lx_tls_accept(c, s->tls) < 0) {   /* the handshake runs on first use */
    dx_close(fd);
    dx_watch_init(&c->s.w, -1);
    return -ENOMEM;
  }
  return LX_DONE;
}

static int push_accept(lua_State *L, lx_call *k) {
  (void)k;
  if (((lx_client *)lua_touserdata(L, 3))->proxy && !lua_toboolean(L, 4))
    return lx_proxy_read(L, 3);     /* the header, before the client is returned */
  lua_pushvalue(L, 3);
  return 1;
}

static const lx_op op_accept = {
  .name = "accept", .dir = LX_READERS, .sockarg = 1, .try = try_accept,
  .push = push_accept,
};

static int s_accept(lua_State *L) {
  lx_server *s = check_server(L);
  double timeout = lua_isnoneornil(L, 2) ? s->s.timeout : lx_opt_timeout(L, 2);
  int later = lua_touserdata(L, 3) == (void *)&lx_proxy_later;
  lua_settop(L, 2);
  lx_client_new(L);               /* before the descriptor: nothing can leak */
  lua_pushboolean(L, later);
  return lx_drive(L, &op_accept, lx_deadline(timeout));
}

static const char *const server_opts[] = {
  "reuseaddr", "reuseport", "rcvbuf", "sndbuf", "v6only", "nodelay", "handshake_timeout", "deadline",
  NULL
};

/* nodelay on a server is for the clients it accepts from now on. */
static int s_setoption(lua_State *L) {
  lx_server *s = check_server(L);
  int nodelay = lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "nodelay") == 0;
  int on = lua_toboolean(L, 3);
  int r = lx_sockopt(L, &s->s, 1, server_opts);
  if (r < 0) {                                /* handshake_timeout */
    double t = luaL_checknumber(L, 3);
    luaL_argcheck(L, t > 0, 3, "handshake_timeout must be a positive number");
    s->hs_timeout = t;
    lua_settop(L, 1);
    return 1;
  }
  if (nodelay && r == 1) s->nodelay = on;     /* set: self is the one result */
  return r;
}

/* handshake_timeout: serve's, for a TLS server (nil for plaintext). */
static int s_getoption(lua_State *L) {
  lx_server *s = check_server(L);
  int r = lx_sockopt(L, &s->s, 0, server_opts);
  if (r >= 0) return r;
  if (s->tls) lua_pushnumber(L, s->hs_timeout);
  else lua_pushnil(L);
  return 1;
}

static int s_close(lua_State *L) {
  server_release(lx_state_of(L), &check_server(L)->s);
  lua_pushboolean(L, 1);
  return 1;
}

static int s_tostring(lua_State *L) {
  lx_server *s = check_server(L);
  char where[128];
  if (s->s.w.fd < 0) {
    lua_pushliteral(L, "duplex.server (closed)");
    return 1;
  }
  dx_addr_label(&s->addr, where, sizeof where);
  lua_pushfstring(L, "duplex.server (%s)", where);
  return 1;
}

static const char *const listen_opts[] = {
  "backlog", "reuseaddr", "reuseport", "v6only", "nodelay", "tls", "handshake_timeout",
  "proxy", "proxy_from", "proxy_timeout", NULL
};

#define LX_HANDSHAKE_TIMEOUT 10.0

/* Stack: 1 host (or its answer), 2 port, 3 opts, 4 the TLS context or
 * nil, 5 the dx_listen_opts, 6 the server (closed until it listens).
 * Only a family this host lacks moves on to the next address ("*" on a
 * host without IPv6 becomes 0.0.0.0); a port in use or forbidden is the
 * answer, or "*" would quietly listen on IPv4 alone. k[0]: 1 once the
 * addresses are known (a failure then names the address). */
static int try_listen(lua_State *L, lx_call *k) {
  lx_server *s = (lx_server *)lua_touserdata(L, 6);
  dx_addr addrs[16];
  int n = lx_resolve(L, 1, 2, 1, addrs, 16), i, fd = -EADDRNOTAVAIL;
  if (n < 0) return n;
  k->k[0] = 1;
  for (i = 0; i < n; i++) {
    s->addr = addrs[i];
    fd = dx_listen(&addrs[i], (const dx_listen_opts *)lua_touserdata(L, 5));
    if (fd >= 0 || (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL)) break;
  }
  if (fd < 0) return fd;
  dx_watch_init(&s->s.w, fd);
  dx_sockname(fd, 0, &s->addr);           /* the port the kernel chose */
  return LX_DONE;
}

static int push_listen(lua_State *L, lx_call *k) {
  (void)k;
  lua_pushvalue(L, 6);
  return 1;
}

static int fail_listen(lua_State *L, lx_call *k, int code) {
  if (k->k[0]) return lx_sockfail(L, (lx_sock *)lua_touserdata(L, 6), "listen", code);
  return lx_fail(L, "listen", lx_host_label(L, 1), code);
}

static const lx_op op_listen = {
  .name = "listen", .dir = LX_NOQUEUE, .try = try_listen, .push = push_listen,
  .fail = fail_listen,
};
static const lx_hosts listen_hosts = {.op = &op_listen, .n = 1, .arg = {{.host = 1}}};

/* listen("fd:N" | "systemd" | "systemd:NAME" [, port [, opts]]): a
 * listener handed down (by a supervisor, systemd, duplex.cluster's
 * master) becomes a server that owns the descriptor. The port and the
 * options that shape a new socket (backlog, reuseaddr, reuseport,
 * v6only) are the giver's business and are ignored; nodelay, tls and
 * handshake_timeout apply. A malformed "fd:" raises; a descriptor that
 * is missing or not a listening stream socket is nil, msg, code. Stack:
 * 1 host, 4 the TLS context or nil. */
static int listen_inherited(lua_State *L, const char *host, const dx_listen_opts *o,
                            int tls, double hs_timeout) {
  lx_server *s;
  int fd, rc;
  if (strncmp(host, "fd:", 3) == 0) {
    char *end;
    long n = strtol(host + 3, &end, 10);
    luaL_argcheck(L, host[3] >= '0' && host[3] <= '9' && *end == '\0' && n <= 0x7fffffffL, 1,
                  "'fd:' wants a descriptor number");
    fd = (int)n;
  } else {
    fd = dx_systemd_fd(host[7] == ':' ? host + 8 : NULL);
    if (fd < 0) {
      luaL_pushfail(L);
      if (host[7] == ':')
        lua_pushfstring(L, "listen %s: systemd passed no descriptor named '%s' "
                        "(LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES)", host, host + 8);
      else
        lua_pushfstring(L, "listen %s: systemd passed no descriptor to this process "
                        "(LISTEN_PID, LISTEN_FDS)", host);
      lua_pushliteral(L, "ENOENT");
      return 3;
    }
  }
  if ((rc = dx_adopt_listener(fd)) < 0) {
    if (rc != -EINVAL) return lx_fail(L, "listen", host, rc);
    luaL_pushfail(L);
    lua_pushfstring(L, "listen %s: descriptor %d is not a listening stream socket", host, fd);
    lua_pushliteral(L, "EINVAL");
    return 3;
  }
  s = lx_newsock(L, &server_class, sizeof(lx_server));
  s->nodelay = o->nodelay;
  s->hs_timeout = hs_timeout;
  s->inherited = 1;
  if (tls) s->tls = lx_tls_ref(L, 4);
  dx_watch_init(&s->s.w, fd);
  s->proxy = lx_proxy_options(L, 3, 3);     /* a bad option: the server, collected, closes fd */
  dx_sockname(fd, 0, &s->addr);
  if (o->nodelay && s->addr.ss.ss_family != AF_UNIX)   /* what accepted clients inherit */
    dx_setopt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  return 1;
}

static int is_inherited(lua_State *L) {
  const char *h = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : "";
  return strncmp(h, "fd:", 3) == 0 || strcmp(h, "systemd") == 0 || strncmp(h, "systemd:", 8) == 0;
}

/* listen(host, port [, opts]): the server is made, closed, before any
 * lookup; its descriptor comes last. */
static int m_listen(lua_State *L) {
  dx_listen_opts o;
  lx_server *s;
  int tls = 0;
  double hs_timeout = LX_HANDSHAKE_TIMEOUT;
  lua_settop(L, 3);
  lx_check_opts(L, 3, listen_opts);
  o.backlog = 128;
  o.reuseaddr = lx_opt_bool(L, 3, "reuseaddr", 1);
  o.reuseport = lx_opt_bool(L, 3, "reuseport", 0);
  o.nodelay = lx_opt_bool(L, 3, "nodelay", 1);
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
    lua_getfield(L, 3, "handshake_timeout");
    if (!lua_isnil(L, -1)) {
      hs_timeout = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(hs_timeout > 0))
        luaL_argerror(L, 3, "option 'handshake_timeout' must be a positive number");
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "tls");                /* 4: the context, or nil */
    tls = !lua_isnil(L, -1);
    if (tls) lx_tls_option(L, 4, 3, 1);
  }
  lua_settop(L, 4);
  if (is_inherited(L)) return listen_inherited(L, lua_tostring(L, 1), &o, tls, hs_timeout);
  lx_check_host(L, 1, 2);
  *(dx_listen_opts *)lua_newuserdatauv(L, sizeof o, 0) = o;      /* 5 */
  s = lx_newsock(L, &server_class, sizeof(lx_server));            /* 6 */
  s->nodelay = o.nodelay;
  s->hs_timeout = hs_timeout;
  if (tls) s->tls = lx_tls_ref(L, 4);
  s->proxy = lx_proxy_options(L, 3, 3);     /* raises before it holds memory */
  return lx_drive_hosts(L, &listen_hosts, -1);
}

static const luaL_Reg methods[] = {
  {"accept", s_accept},
  {"setoption", s_setoption},
  {"getoption", s_getoption},
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
  lx_newclass(L, &server_class, methods, metamethods, "server_methods");
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, m_listen, 1);
  lua_setfield(L, -3, "listen");
}
