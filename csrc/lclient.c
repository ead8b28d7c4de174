/*
 * lclient.c - duplex.client: a connected stream with a receive buffer in
 * C, and duplex.stream over a descriptor duplex did not make. This file
 * owns the object (made closed, so that no error can leak a descriptor),
 * its options and its end; reading, writing, forwarding, TLS and
 * connecting are the files above it.
 */
#include "dx_prefix.h"
#include "lclient.h"
#include "ldrive.h"
#include "lxaux.h"
#include "dx_fd.h"
#ifdef DX_TLS
#include "dx_tls.h"
#endif

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LX_MAXLINE (1024 * 1024)

#define check_client(L, S) ((lx_client *)lx_checksock(L, S, &lx_client_class))

lx_client *lx_client_new(lua_State *L) {
  lx_client *c = lx_newsock(L, &lx_client_class, sizeof(lx_client));
  dx_buf_init(&c->rb);
  c->maxline = LX_MAXLINE;
  c->streamfd = -1;
  dx_stream_init(&c->st, DX_STREAM_SOCKET);
  return c;
}

void lx_client_peer(lx_client *c, const dx_addr *a) {
  c->isunix = a->ss.ss_family == AF_UNIX;
  memset(&c->peer, 0, sizeof c->peer);
  if (!c->isunix && a->len <= sizeof c->peer) memcpy(&c->peer, &a->ss, a->len);
}

void lx_client_set(lx_client *c, int fd, const dx_addr *peer) {
  dx_watch_init(&c->s.w, fd);
  if (peer) lx_client_peer(c, peer);
}

void lx_client_label(lx_client *c, char *out, size_t n) {
  dx_addr a;
  out[0] = '\0';
  if (c->streamfd >= 0) {
    snprintf(out, n, "fd %d", c->streamfd);     /* also once closed */
  } else if (c->peer.sin6_family != 0) {
    memset(&a, 0, sizeof a);
    memcpy(&a.ss, &c->peer, sizeof c->peer);
    a.len = c->peer.sin6_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof c->peer;
    dx_addr_label(&a, out, n);
  } else if (c->s.w.fd >= 0) {     /* unix: the peer, else our own path */
    if (dx_sockname(c->s.w.fd, 1, &a) == 0) dx_addr_label(&a, out, n);
    if (out[0] == '\0' && dx_sockname(c->s.w.fd, 0, &a) == 0) dx_addr_label(&a, out, n);
  }
}

/* --- methods ------------------------------------------------------------------ */

/* A layered stream's end of writing: all of its last bytes (TLS's
 * close_notify: the socket may be full), then the FIN. Stack: 1 self,
 * 2 how (SHUT_*). */
static int try_shutdown(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  int r = dx_stream_shutdown(&c->st, c->s.w.fd, (int)lua_tointeger(L, 2));
  if (r == -EAGAIN) return LX_WAIT_WRITE;
  return r < 0 ? r : LX_DONE;
}

static const lx_op op_shutdown = {
  .name = "shutdown", .dir = LX_WRITERS, .sockarg = 1, .try = try_shutdown,
  .push = lx_push_self,
};

static int c_shutdown(lua_State *L) {
  static const char *const hows[] = {"r", "w", "rw", NULL};
  static const int how_of[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
  lx_state *S = lx_state_of(L);
  lx_client *c = check_client(L, S);
  int how, rc;
  if (!lua_isnoneornil(L, 2)) lx_checkcstring(L, 2, "mode");
  how = how_of[luaL_checkoption(L, 2, "rw", hows)];
  if (c->s.w.fd < 0) return lx_closed(L, &c->s, "shutdown");
  if (dx_stream_layered(&c->st) && how != SHUT_RD) {   /* a writer: in turn, and it may wait */
    lua_settop(L, 1);
    lua_pushinteger(L, how);
    return lx_drive_on(L, S, &c->s, &op_shutdown, lx_deadline(c->s.timeout));
  }
  rc = dx_stream_shutdown(&c->st, c->s.w.fd, how);
  if (rc < 0) return lx_sockfail(L, &c->s, "shutdown", rc);
  lua_settop(L, 1);
  return 1;
}

/* The peer; behind a proxy, the original client its header named. */
static int c_getpeername(lua_State *L) {
  lx_client *c = check_client(L, lx_state_of(L));
  dx_addr a;
  int rc;
  if (c->s.w.fd < 0) return lx_closed(L, &c->s, "getpeername");
  if (c->proxy && c->proxy->done && c->proxy->info.addressed)
    return lx_push_addr(L, &c->proxy->info.src);
  rc = dx_sockname(c->s.w.fd, 1, &a);
  if (rc < 0) return lx_sockfail(L, &c->s, "getpeername", rc);
  return lx_push_addr(L, &a);
}

static const char *const client_opts[] = {
  "nodelay", "keepalive", "linger", "rcvbuf", "sndbuf", "maxline", "idletimeout", "deadline", NULL
};

/* The client's own options: maxline, idletimeout (seconds without a byte
 * moved; false or math.huge: none). */
static int c_setoption(lua_State *L) {
  lx_client *c = check_client(L, lx_state_of(L));
  int r = lx_sockopt(L, &c->s, 1, client_opts);
  if (r >= 0) return r;
  if (lua_tostring(L, 2)[0] == 'm') {
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n > 0, 3, "maxline must be positive");
    c->maxline = (size_t)n;
  } else if (lua_isboolean(L, 3) && !lua_toboolean(L, 3)) {
    c->s.idle = -1;
  } else {
    double t = luaL_checknumber(L, 3);
    luaL_argcheck(L, t > 0, 3, "idletimeout must be a positive number or false");
    c->s.idle = t == HUGE_VAL ? -1 : t;
  }
  lua_settop(L, 1);
  return 1;
}

static int c_getoption(lua_State *L) {
  lx_client *c = check_client(L, lx_state_of(L));
  int r = lx_sockopt(L, &c->s, 0, client_opts);
  if (r >= 0) return r;
  if (lua_tostring(L, 2)[0] == 'm') lua_pushinteger(L, (lua_Integer)c->maxline);
  else if (c->s.idle < 0) lua_pushboolean(L, 0);
  else lua_pushnumber(L, c->s.idle);
  return 1;
}

static void client_label(lx_sock *s, char *out, size_t n) {
  lx_client_label((lx_client *)s, out, n);
}

static const char *client_reason(lx_sock *s, int code) {
  return dx_stream_reason(&((lx_client *)s)->st, code);    /* TLS: OpenSSL's reason */
}

static void client_release(lx_state *S, lx_sock *s) {
  lx_client_release(S, (lx_client *)s);
}

const lx_class lx_client_class = {
  .name = "duplex.client", .type = {"client", "closed client"}, .index = 1, .connection = 1,
  .label = client_label, .reason = client_reason, .release = client_release,
};

void lx_client_push(lua_State *L, lx_client *c, size_t used, size_t len) {
  c->pushing = 1;
  lua_pushlstring(L, dx_buf_take(&c->rb, used), len);
  c->pushing = 0;
  if (c->s.w.fd < 0) dx_buf_free(&c->rb);      /* closed meanwhile */
  else dx_buf_settle(&c->rb);
}

void lx_client_proxy_free(lx_client *c) {
  if (c->proxy == NULL) return;
#ifdef DX_TLS
  if (c->proxy->tls) dx_tls_ctx_unref(c->proxy->tls);
#endif
  free(c->proxy);
  c->proxy = NULL;
}

void lx_client_release(lx_state *S, lx_client *c) {
  dx_stream_close(&c->st, c->s.w.fd);     /* TLS: close_notify once, never waiting */
  if (c->adopted && c->s.w.fd >= 0) {        /* duplex.stream: give it back */
    dx_fd_restore(c->s.w.fd, c->oldflags);
    if (c->keepfd) {
      if (S->loop_ok) dx_loop_close_watch(&S->loop, &c->s.w);
      c->s.w.fd = -1;
    }
  }
  lx_sock_close(S, &c->s);
  if (!c->pushing) dx_buf_free(&c->rb);
  lx_client_proxy_free(c);
}

/* close, __close and __gc: idempotent */
static int c_close(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client_release(S, check_client(L, S));
  lua_pushboolean(L, 1);
  return 1;
}

static int c_gc(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = check_client(L, S);
  c->pushing = 0;              /* none runs: one that raised left it set */
  lx_client_release(S, c);
  return 0;
}

static int c_tostring(lua_State *L) {
  lx_client *c = check_client(L, lx_state_of(L));
  char local[128] = "?", remote[128];
  dx_addr a;
  if (c->s.w.fd < 0) {
    lua_pushliteral(L, "duplex.client (closed)");
    return 1;
  }
  if (dx_sockname(c->s.w.fd, 0, &a) == 0) dx_addr_label(&a, local, sizeof local);
  if (local[0] == '\0') strcpy(local, "unix");
  lx_client_label(c, remote, sizeof remote);
  if (c->streamfd >= 0) lua_pushfstring(L, "duplex.client (%s)", remote);
  else lua_pushfstring(L, "duplex.client (%s -> %s)", local, remote);
  return 1;
}

/* --- stream ------------------------------------------------------------------ */

static const char *const stream_opts[] = {"close", NULL};

/* stream(fd [, opts]) -> a client over a descriptor we did not make. Its
 * O_NONBLOCK is set, and put back by close, which also closes the
 * descriptor unless opts.close is false (the default for 0, 1 and 2). */
static int m_stream(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  int oldflags, kind;
  lx_client *c;
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 1, "not a descriptor number");
  lua_settop(L, 2);
  lx_check_opts(L, 2, stream_opts);
  c = lx_client_new(L);                   /* before adopting: nothing leaks */
  c->keepfd = !lx_opt_bool(L, 2, "close", fd > 2);
  kind = dx_fd_adopt((int)fd, &oldflags);
  if (kind < 0) {
    lua_pushfstring(L, "fd %d", (int)fd);
    return lx_fail(L, "stream", lua_tostring(L, -1), kind);
  }
  dx_watch_init(&c->s.w, (int)fd);
  c->adopted = 1;
  c->oldflags = oldflags;
  if (kind == 0) {                          /* a pipe, a tty, a file: read/write */
    c->streamfd = (int)fd;
    dx_stream_init(&c->st, DX_STREAM_FILE);
  } else {
    dx_addr a;
    c->isunix = 1;                          /* no inet peer: label by name */
    if (dx_sockname((int)fd, 1, &a) == 0) lx_client_peer(c, &a);
  }
  return 1;
}

static const luaL_Reg methods[] = {
  {"shutdown", c_shutdown},
  {"getpeername", c_getpeername},
  {"setoption", c_setoption},
  {"getoption", c_getoption},
  {"close", c_close},
  {NULL, NULL}
};

static const luaL_Reg metamethods[] = {
  {"__gc", c_gc},
  {"__close", c_gc},
  {"__tostring", c_tostring},
  {NULL, NULL}
};

/* Stack on entry: module, state. Adds stream and client_methods (the
 * reading, writing, forwarding and TLS methods are added by the files
 * above this one). */
void lx_open_client(lua_State *L) {
  lx_newclass(L, &lx_client_class, methods, metamethods, "client_methods");
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, m_stream, 1);
  lua_setfield(L, -3, "stream");
}
