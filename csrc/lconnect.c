/*
 * lconnect.c - duplex.connect: the addresses to try (the host's, after
 * the driver's lookup phase), Happy Eyeballs (RFC 8305) among them, the
 * local address to bind, and the TLS handshake, all one operation of the
 * driver under one deadline.
 */
#include "dx_prefix.h"
#include "lconnect.h"
#include "lclient.h"
#include "lresolve.h"
#include "ltls.h"
#include "lxaux.h"
#include "dx_time.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define LX_MAXADDR 16
#define LX_STAGGER 0.25        /* Happy Eyeballs: start the next address after */
#define LX_RECHECK 0.025       /* older attempts are polled this often */

/* The addresses to try and the attempts under way (fd[i] for a[i], -1
 * when none); its __gc closes attempts left by a task that was cancelled. */
typedef struct lx_targets {
  int n, hasbind, last;        /* last: the address of the last failure */
  int ready;                   /* 1: the addresses are known; -1: the bind
                                  address failed */
  int family;                  /* AF_UNSPEC, or only addresses of this one */
  int client_fd;               /* the attempt the client watches (it owns it) */
  double next_start;           /* when the next address may start */
  char name[256];              /* the host as given: SNI, messages */
  dx_addr a[LX_MAXADDR];
  int fd[LX_MAXADDR];
  dx_addr bind;
} lx_targets;

/* Close every attempt but keep and the client's own. */
static void close_attempts(lx_targets *t, int keep) {
  int i;
  for (i = 0; i < t->n; i++) {
    if (t->fd[i] >= 0 && t->fd[i] != keep && t->fd[i] != t->client_fd) dx_close(t->fd[i]);
    t->fd[i] = -1;
  }
}

static int targets_gc(lua_State *L) {
  close_attempts((lx_targets *)lua_touserdata(L, 1), -1);
  return 0;
}

/* Make fd the one the client waits on (the driver's watch): the client
 * owns it then, and closes it itself (targets never do). */
static void watch_fd(lx_state *S, lx_client *c, lx_targets *t, int fd) {
  if (S->loop_ok) dx_loop_rewatch(&S->loop, &c->s.w, fd);
  else c->s.w.fd = fd;
  t->client_fd = fd;
}

/* The TLS handshake after connecting, under the same deadline. */
static int handshake(lx_call *k, lx_client *c) {
  int r = dx_stream_handshake(&c->st);
  if (r == DX_WANT_READ) return LX_WAIT_READ;
  if (r == DX_WANT_WRITE) return LX_WAIT_WRITE;
  if (r == 0) lx_client_moved(k->S, c);
  return r;
}

/* Attempt i connected: it becomes the client; the others are closed; TLS
 * starts if asked (SNI and the name checked: the context's servername,
 * else the host as given). */
static int won(lua_State *L, lx_call *k, lx_targets *t, int i) {
  lx_client *c = (lx_client *)k->sock;
  int fd = t->fd[i], old = t->client_fd;
  watch_fd(k->S, c, t, fd);
  if (old >= 0 && old != fd) dx_close(old);   /* the client watched another */
  close_attempts(t, fd);
  lx_client_peer(c, &t->a[i]);
  if (!lua_isnil(L, 5)) {
    char host[256];
    if (t->name[0]) snprintf(host, sizeof host, "%s", t->name);
    else {
      int port;
      const char *family;
      dx_addr_text(&t->a[i], host, sizeof host, &port, &family);
    }
    lx_tls_connect(L, c, 5, host);
    return handshake(k, c);
  }
  return LX_DONE;
}

static void interleave(lx_targets *t);

/* The first try: the local address and the ones to try, in their order,
 * from numbers or the lookup phase's answers. */
static int targets_of(lua_State *L, lx_targets *t) {
  int n, i;
  if (!lua_isnil(L, 6)) {
    if ((n = lx_resolve(L, 6, 7, 1, &t->bind, 1)) < 0) {
      t->ready = -1;
      return n;
    }
    t->hasbind = 1;
  }
  n = lx_resolve(L, 1, 2, 0, t->a, LX_MAXADDR);
  if (n < 0) return n;
  for (i = 0; i < n; i++)
    if (t->family == AF_UNSPEC || t->a[i].ss.ss_family == t->family) t->a[t->n++] = t->a[i];
  if (t->n == 0) return -EAFNOSUPPORT;
  interleave(t);
  t->ready = 1;
  return 0;
}

/* Stack: 1 host, 2 port, 3 opts, 4 targets, 5 the TLS context or nil, 6
 * and 7 the bind host and port or nil, 8 the client. Progress: k[0] the
 * next address to start, k[1] the last failure. Happy Eyeballs (RFC 8305):
 * the next address starts after LX_STAGGER, or at once when an attempt
 * fails; the first to connect wins; all under the one deadline of the
 * call. The client waits on its newest attempt; older ones are polled. */
static int try_connect(lua_State *L, lx_call *k) {
  lx_targets *t = (lx_targets *)lua_touserdata(L, 4);
  lx_client *c = (lx_client *)k->sock;
  if (dx_stream_layered(&c->st)) return handshake(k, c);   /* connected: TLS under way */
  if (t->ready == 0) {
    int bad = targets_of(L, t);
    if (bad < 0) return bad;
  }
  for (;;) {
    int i, rc, fd, busy = 0, failed = 0, newest = -1;
    double now;
    for (i = 0; i < (int)k->k[0]; i++) {
      if (t->fd[i] < 0) continue;
      rc = dx_connect_result(t->fd[i]);
      if (rc == 0) return won(L, k, t, i);
      if (rc == -EINPROGRESS) {
        busy++;
        newest = i;
        continue;
      }
      if (t->fd[i] == c->s.w.fd) watch_fd(k->S, c, t, -1);
      dx_close(t->fd[i]);
      t->fd[i] = -1;
      k->k[1] = rc;
      t->last = i;
      failed = 1;
    }
    now = busy && k->k[0] < t->n ? dx_now() : 0;
    if (k->k[0] < t->n && (busy == 0 || failed || now >= t->next_start)) {
      i = (int)k->k[0]++;
      rc = dx_connect_start(&t->a[i], t->hasbind ? &t->bind : NULL,
                            lx_opt_bool(L, 3, "nodelay", 1), &fd);
      t->fd[i] = fd;
      if (rc == 0) return won(L, k, t, i);
      if (rc != -EINPROGRESS) {
        k->k[1] = rc;
        t->last = i;
        continue;                         /* failed at once: the next now */
      }
      t->next_start = dx_now() + LX_STAGGER;
      continue;                           /* it may have connected at once */
    }
    if (busy == 0) return k->k[1] ? (int)k->k[1] : -ECONNREFUSED;
    if (c->s.w.fd != t->fd[newest]) watch_fd(k->S, c, t, t->fd[newest]);
    if (k->k[0] < t->n) k->wake_at = t->next_start;
    else if (busy > 1) k->wake_at = dx_now() + LX_RECHECK;
    return LX_WAIT_WRITE;
  }
}

static int push_connect(lua_State *L, lx_call *k) {
  (void)k;
  lua_pushvalue(L, 8);
  return 1;
}

static int fail_connect(lua_State *L, lx_call *k, int code) {
  lx_targets *t = (lx_targets *)lua_touserdata(L, 4);
  lx_client *c = (lx_client *)k->sock;
  char where[300];
  if (dx_stream_layered(&c->st)) {        /* connected, the handshake failed */
    const char *why = dx_stream_reason(&c->st, code);
    if (t->name[0]) {                     /* name the peer as it was given */
      int port = (int)lua_tointeger(L, 2);
      if (strchr(t->name, ':')) snprintf(where, sizeof where, "[%s]:%d", t->name, port);
      else snprintf(where, sizeof where, "%s:%d", t->name, port);
    } else {
      lx_client_label(c, where, sizeof where);
    }
    luaL_pushfail(L);
    lua_pushfstring(L, "tls handshake %s: %s", where, why ? why : dx_strerror(code));
    lua_pushstring(L, dx_errname(code));
    lx_client_release(k->S, c);
    return 3;
  }
  if (t->ready < 0) return lx_fail(L, "bind", lx_host_label(L, 6), code);
  if (t->ready == 0) return lx_fail(L, "connect", t->name, code);
  if (code == -ETIMEDOUT || code == -EAGAIN) {   /* name what it waited on */
    int i;
    for (i = 0; i < t->n; i++)
      if (t->fd[i] >= 0) t->last = i;
  }
  watch_fd(k->S, c, t, -1);
  close_attempts(t, -1);
  dx_addr_label(&t->a[t->last], where, sizeof where);
  return lx_fail(L, "connect", where, code);
}

/* Happy Eyeballs order: the families alternate, starting with the first
 * address's (the resolver's preference). */
static void interleave(lx_targets *t) {
  dx_addr out[LX_MAXADDR];
  int used[LX_MAXADDR] = {0}, n = 0, i, want;
  if (t->n < 2) return;
  want = t->a[0].ss.ss_family;
  while (n < t->n) {
    int found = 0;
    for (i = 0; i < t->n && !found; i++) {
      if (!used[i] && t->a[i].ss.ss_family == want) {
        out[n++] = t->a[i];
        used[i] = found = 1;
      }
    }
    if (!found) {                          /* only the other family is left */
      for (i = 0; i < t->n; i++)
        if (!used[i]) out[n++] = t->a[i], used[i] = 1;
    }
    want = want == AF_INET6 ? AF_INET : AF_INET6;
  }
  memcpy(t->a, out, sizeof(dx_addr) * (size_t)t->n);
}

static const lx_op op_connect = {
  .name = "connect", .dir = LX_WRITERS, .sockarg = 8, .opens = 1, .try = try_connect,
  .push = push_connect, .fail = fail_connect,
};

/* The bind host is looked up first. */
static const lx_hosts connect_hosts = {
  .op = &op_connect, .n = 2, .arg = {{.host = 6, .what = "bind"}, {.host = 1}},
};

/* opts.bind: "host" or {host, port}. Pushes its host and port (6, 7),
 * or nil, nil. (Checked here, whether or not a lookup follows.) */
static void bind_args(lua_State *L) {
  lua_Integer port;
  size_t len;
  int isnum;
  if (lua_isnil(L, 3)) lua_pushnil(L);
  else lua_getfield(L, 3, "bind");
  if (lua_isnil(L, -1)) {
    lua_pushnil(L);
    return;
  }
  if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    if (lua_isnil(L, -1)) lua_pushinteger(L, 0), lua_replace(L, -2);
  } else {
    luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 3, "option 'bind' must be a host or {host, port}");
    lua_pushvalue(L, -1);
    lua_pushinteger(L, 0);
  }
  if (lua_type(L, -2) != LUA_TSTRING) luaL_argerror(L, 3, "option 'bind' needs a host");
  if (strlen(lua_tolstring(L, -2, &len)) != len)
    luaL_argerror(L, 3, "option 'bind': host contains a zero byte");
  if (strcmp(lua_tostring(L, -2), "unix:") == 0)
    luaL_argerror(L, 3, "option 'bind': empty unix socket path");
  port = lua_tointegerx(L, -1, &isnum);
  luaL_argcheck(L, isnum && port >= 0 && port <= 65535, 3, "option 'bind': port must be an integer from 0 to 65535");
  lua_pushinteger(L, port);
  lua_replace(L, -2);
  lua_remove(L, -3);
}

/* A family name as the third argument (what getsockname returns third),
 * so that connect(server:getsockname()) works: "unix" makes the host a
 * path; "inet"/"inet6" keep only addresses of that family. */
static int family_arg(lua_State *L) {
  static const char *const names[] = {"inet", "inet6", "unix", NULL};
  static const int families[] = {AF_INET, AF_INET6, AF_UNIX};
  int f;
  lx_checkcstring(L, 3, "family");
  f = families[luaL_checkoption(L, 3, NULL, names)];
  lua_pushnil(L);
  lua_replace(L, 3);
  if (f == AF_UNIX && strncmp(luaL_checkstring(L, 1), "unix:", 5) != 0) {
    lua_pushfstring(L, "unix:%s", lua_tostring(L, 1));
    lua_replace(L, 1);
  }
  return f;
}

static const char *const connect_opts[] = {"timeout", "deadline", "nodelay", "bind", "tls", NULL};

/* opts.deadline: a duplex.now() time, or false/nil (-1). */
static double deadline_opt(lua_State *L) {
  double at;
  const char *why;
  lua_getfield(L, 3, "deadline");
  why = lx_deadline_error(L, -1, &at);
  if (why) luaL_argerror(L, 3, lua_pushfstring(L, "option 'deadline': %s", why));
  lua_pop(L, 1);
  return at;
}

/* connect(host, port [, opts]): the options and the host are checked, the
 * attempts' list and the client made (closed) before any lookup; one
 * deadline covers lookups, attempts and the TLS handshake. */
static int m_connect(lua_State *L) {
  lx_targets *t;
  double timeout = -1, at = -1;
  int family = AF_UNSPEC, i;
  lua_settop(L, 3);
  if (lua_type(L, 3) == LUA_TSTRING) family = family_arg(L);
  lx_check_opts(L, 3, connect_opts);
  if (!lua_isnil(L, 3)) {
    const char *why;
    lua_getfield(L, 3, "timeout");
    why = lx_timeout_error(L, -1, &timeout);
    if (why) luaL_argerror(L, 3, lua_pushfstring(L, "option 'timeout': %s", why));
    lua_pop(L, 1);
    at = deadline_opt(L);
    lx_opt_bool(L, 3, "nodelay", 0);
  }
  t = lua_newuserdatauv(L, sizeof(lx_targets), 0);        /* 4 */
  memset(t, 0, sizeof *t);
  for (i = 0; i < LX_MAXADDR; i++) t->fd[i] = -1;
  t->client_fd = -1;
  t->family = family;
  if (lua_type(L, 1) == LUA_TSTRING) snprintf(t->name, sizeof t->name, "%s", lua_tostring(L, 1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setmetatable(L, -2);
  lx_toclose(L, 4);      /* a cancelled task's attempts close at once */
  if (lua_isnil(L, 3)) lua_pushnil(L);                     /* 5 */
  else lua_getfield(L, 3, "tls");
  if (!lua_isnil(L, 5)) lx_tls_option(L, 5, 3, 0);
  lx_check_host(L, 1, 2);
  bind_args(L);                                           /* 6, 7 */
  lx_client_new(L)->s.deadline = at;                      /* 8 */
  return lx_drive_hosts(L, &connect_hosts, lx_deadline_by(lx_deadline(timeout), at));
}

/* Stack on entry: module, state. Adds connect. */
void lx_open_connect(lua_State *L) {
  lua_pushvalue(L, -1);
  lua_createtable(L, 0, 2);                 /* the targets' metatable */
  lua_pushcfunction(L, targets_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, targets_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, targets_gc);
  lua_setfield(L, -2, "__cancel");     /* LX_CANCEL_BY_STACK */
  lua_pushcclosure(L, m_connect, 2);
  lua_setfield(L, -3, "connect");
}
