/*
 * lclient.c - duplex.client: a connected stream socket with a receive buffer
 * in C, and duplex.connect. Reads are atomic: every format of one call is
 * answered from the buffer before anything is consumed, so a read that
 * times out or fails leaves every received byte for the next call. Writes
 * send all their arguments with one sendmsg and resume partial progress.
 *
 * Operations are continuation functions (k): the same code runs once
 * outside a task (waiting with poll) and again after every yield inside one.
 * Per-call state lives on the Lua stack, never in malloc'd memory.
 */
#include "dx_prefix.h"
#include "lduplex.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#define LX_MAXLINE (1024 * 1024)
#define LX_READSOME 65536

typedef struct lx_client {
  lx_sock s;
  dx_buf rb;
  size_t maxline;
  unsigned char eof;          /* the peer ended its stream */
  unsigned char isunix;       /* a Unix domain socket */
  struct sockaddr_in6 peer;   /* an inet/inet6 peer for messages (kept after
                                 close); family 0 for Unix sockets */
} lx_client;

enum { OP_READ, OP_UNTIL, OP_SOME };

static lx_client *check_client(lua_State *L, const lx_state *S) {
  return (lx_client *)lx_checkself(L, S->client_mt, LX_CLIENT);
}

static lx_client *check_open(lua_State *L, const lx_state *S) {
  lx_client *c = check_client(L, S);
  if (c->s.w.fd < 0) luaL_error(L, "attempt to use a closed " LX_CLIENT);
  return c;
}

lx_client *lx_client_new(lua_State *L) {
  lx_client *c = lua_newuserdatauv(L, sizeof(lx_client), 0);
  dx_watch_init(&c->s.w, -1);
  c->s.timeout = -1;
  dx_buf_init(&c->rb);
  c->maxline = LX_MAXLINE;
  c->eof = c->isunix = 0;
  memset(&c->peer, 0, sizeof c->peer);
  lua_getiuservalue(L, lua_upvalueindex(1), 4);   /* the client metatable */
  lua_setmetatable(L, -2);
  return c;
}

static void set_peer(lx_client *c, const dx_addr *a) {
  c->isunix = a->ss.ss_family == AF_UNIX;
  memset(&c->peer, 0, sizeof c->peer);
  if (!c->isunix && a->len <= sizeof c->peer) memcpy(&c->peer, &a->ss, a->len);
}

void lx_client_set(lx_client *c, int fd, const dx_addr *peer) {
  dx_watch_init(&c->s.w, fd);
  if (peer) set_peer(c, peer);
}

static void label(lx_client *c, char *out, size_t n) {
  dx_addr a;
  out[0] = '\0';
  if (c->peer.sin6_family != 0) {
    memset(&a, 0, sizeof a);
    memcpy(&a.ss, &c->peer, sizeof c->peer);
    a.len = c->peer.sin6_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof c->peer;
    dx_addr_label(&a, out, n);
  } else if (c->s.w.fd >= 0) {     /* unix: the peer, else our own path */
    if (dx_sockname(c->s.w.fd, 1, &a) == 0) dx_addr_label(&a, out, n);
    if (out[0] == '\0' && dx_sockname(c->s.w.fd, 0, &a) == 0) dx_addr_label(&a, out, n);
  }
}

static int cfail(lua_State *L, lx_client *c, const char *op, int code) {
  char where[128];
  label(c, where, sizeof where);
  return lx_fail(L, op, where, code);
}

/* Own any leftover in the shared scratch before the scratch is reused. */
static void settle(lua_State *L, lx_client *c) {
  if (dx_buf_settle(&c->rb) < 0) {
    dx_buf_init(&c->rb);       /* cannot keep it: never point at scratch */
    luaL_error(L, "not enough memory");
  }
}

/* Receive once into the buffer: > 0 bytes, 0 end of stream, or -errno. */
static long fill(lx_state *S, lx_client *c) {
  char *p;
  long n;
  if (c->rb.data == NULL) dx_buf_borrow(&c->rb, S->scratch, LX_SCRATCH);
  p = dx_buf_prep(&c->rb, 4096);
  if (p == NULL) return -ENOMEM;
  n = dx_recv(c->s.w.fd, p, dx_buf_space(&c->rb));
  if (n > 0) dx_buf_commit(&c->rb, (size_t)n);
  return n;
}

/* --- reading ------------------------------------------------------------------ */

static void check_format(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TNUMBER) {
    lua_Integer n;
    luaL_argcheck(L, lua_isinteger(L, i) || lua_tonumber(L, i) == (lua_Number)(lua_Integer)lua_tonumber(L, i),
                  i, "byte count must be an integer");
    n = (lua_Integer)lua_tonumber(L, i);
    luaL_argcheck(L, n >= 0, i, "byte count must be non-negative");
    lua_pushinteger(L, n);
    lua_replace(L, i);
  } else {
    const char *f = luaL_checkstring(L, i);
    if (*f == '*') f++;                   /* skip optional '*' (for compatibility) */
    luaL_argcheck(L, (f[0] == 'l' || f[0] == 'L' || f[0] == 'a') && f[1] == '\0',
                  i, "invalid format");
    lua_pushlstring(L, f, 1);             /* try_read sees "l", "L" or "a" */
    lua_replace(L, i);
  }
}

/* Answer formats first..last from the buffer. Pushes and consumes only when
 * all can be answered: returns the count pushed, 0 for "need more data",
 * or -EMSGSIZE. At end of stream a format with nothing left gives nil and
 * ends the list, as io.read does. */
static int try_read(lua_State *L, lx_client *c, int first, int last) {
  const char *p = dx_buf_peek(&c->rb);
  size_t len = dx_buf_len(&c->rb), off = 0;
  int top = lua_gettop(L), i;
  for (i = first; i <= last; i++) {
    size_t avail = len - off;
    if (lua_type(L, i) == LUA_TNUMBER) {
      size_t n = (size_t)lua_tointeger(L, i);
      if (avail >= n && (n > 0 || avail > 0 || !c->eof)) {
        lua_pushlstring(L, p + off, n);
        off += n;
        continue;
      }
      if (!c->eof) goto more;
    } else {
      const char *f = lua_tostring(L, i);
      if (*f == 'a') {
        if (!c->eof) goto more;
        lua_pushlstring(L, p + off, avail);
        off = len;
        continue;
      } else {
        const char *nl = avail ? memchr(p + off, '\n', avail) : NULL;
        if (nl != NULL) {
          size_t n = (size_t)(nl - (p + off));       /* bytes before '\n' */
          if (n > c->maxline) goto toolong;
          if (*f == 'L') lua_pushlstring(L, p + off, n + 1);
          else lua_pushlstring(L, p + off, (n > 0 && nl[-1] == '\r') ? n - 1 : n);
          off += n + 1;
          continue;
        }
        if (avail > c->maxline) goto toolong;
        if (!c->eof) goto more;
      }
    }
    /* end of stream: what is left, else nil and stop */
    if (len - off == 0) {
      luaL_pushfail(L);
      break;
    }
    lua_pushlstring(L, p + off, len - off);
    off = len;
  }
  dx_buf_consume(&c->rb, off);
  return lua_gettop(L) - top;
more:
  lua_settop(L, top);
  return 0;
toolong:
  lua_settop(L, top);
  return -EMSGSIZE;
}

static int try_until(lua_State *L, lx_client *c) {
  size_t dlen, max = (size_t)lua_tointeger(L, 3);
  const char *d = lua_tolstring(L, 2, &dlen);
  size_t len = dx_buf_len(&c->rb);
  long pos = dx_buf_find(&c->rb, 0, d, dlen);
  if (pos >= 0) {
    if ((size_t)pos > max) return -EMSGSIZE;
    lua_pushlstring(L, dx_buf_peek(&c->rb), (size_t)pos);
    dx_buf_consume(&c->rb, (size_t)pos + dlen);
    return 1;
  }
  if (len >= max + dlen) return -EMSGSIZE;   /* no delimiter can start in time */
  if (c->eof) {
    luaL_pushfail(L);               /* the unterminated rest stays buffered */
    return 1;
  }
  return 0;
}

static int try_some(lua_State *L, lx_client *c) {
  size_t len = dx_buf_len(&c->rb);
  size_t max = lua_isnil(L, 2) ? LX_READSOME : (size_t)lua_tointeger(L, 2);
  if (len > 0) {
    if (len > max) len = max;
    lua_pushlstring(L, dx_buf_peek(&c->rb), len);
    dx_buf_consume(&c->rb, len);
    return 1;
  }
  if (c->eof) {
    luaL_pushfail(L);
    return 1;
  }
  return 0;
}

static const char *const opnames[] = {"read", "readuntil", "readsome"};

/* Stack: 1 self, 2..base args, then the deadline at base+1 once it is
 * needed (first call: before the first wait; after a yield: always there).
 * ctx = base << 2 | op. */
static int read_k(lua_State *L, int status, lua_KContext ctx) {
  lx_state *S = lx_state_of(L);
  lx_client *c = (lx_client *)lua_touserdata(L, 1);
  int base = (int)(ctx >> 2), op = (int)(ctx & 3), r;
  int saved = status != LUA_OK;
  double deadline = saved ? lua_tonumber(L, base + 1) : -1;
  for (;;) {
    if (c->s.w.fd < 0) {               /* closed by another task meanwhile */
      lx_done(S, L);
      return cfail(L, c, opnames[op], -ECANCELED);
    }
    if (lx_myturn(L, S, &c->s, 0)) {
      long n;
      r = op == OP_READ ? try_read(L, c, 2, base)
        : op == OP_UNTIL ? try_until(L, c) : try_some(L, c);
      if (r == 0) {
        n = fill(S, c);
        if (n > 0) continue;
        if (n == 0) {
          c->eof = 1;
          continue;
        }
        if (n != -EAGAIN) r = (int)n;
      }
      if (r != 0) {
        settle(L, c);
        lx_done(S, L);
        return r > 0 ? r : cfail(L, c, opnames[op], r);
      }
    }
    settle(L, c);
    if (!saved) {
      deadline = lx_deadline(c->s.timeout);
      lua_pushnumber(L, deadline);
      saved = 1;
    }
    r = lx_wait(L, S, &c->s, DX_READ, deadline, ctx, read_k);
    if (r < 0) {
      lx_done(S, L);
      return cfail(L, c, opnames[op], r);
    }
  }
}

static int start_read(lua_State *L, lx_state *S, lx_client *c, int op) {
  lua_KContext ctx = (lua_KContext)lua_gettop(L) << 2 | op;
  if (lx_spent(L, S)) {
    lua_pushnumber(L, lx_deadline(c->s.timeout));
    return lx_yield(L, S, ctx, read_k);
  }
  return read_k(L, LUA_OK, ctx);
}

/* read(0) answers "" unless the stream has ended, which only a receive
 * can tell when nothing is buffered; it never waits. */
static int read_zero(lua_State *L, lx_state *S, lx_client *c) {
  if (dx_buf_len(&c->rb) == 0 && !c->eof) {
    long n = fill(S, c);
    settle(L, c);
    if (n == 0) c->eof = 1;
    else if (n < 0 && n != -EAGAIN) return cfail(L, c, "read", (int)n);
  }
  if (dx_buf_len(&c->rb) == 0 && c->eof) luaL_pushfail(L);
  else lua_pushliteral(L, "");
  return 1;
}

static int c_read(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = check_open(L, S);
  int top = lua_gettop(L), i;
  if (top == 1) {
    lua_pushliteral(L, "l");
    top = 2;
  }
  luaL_checkstack(L, top + 4, "too many formats");
  for (i = 2; i <= top; i++) check_format(L, i);
  if (top == 2 && lua_type(L, 2) == LUA_TNUMBER && lua_tointeger(L, 2) == 0)
    return read_zero(L, S, c);
  return start_read(L, S, c, OP_READ);
}

static int c_readuntil(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = check_open(L, S);
  size_t dlen;
  lua_Integer max;
  luaL_checklstring(L, 2, &dlen);
  luaL_argcheck(L, dlen > 0, 2, "empty delimiter");
  max = luaL_optinteger(L, 3, (lua_Integer)c->maxline);
  luaL_argcheck(L, max >= 0, 3, "maximum must be non-negative");
  lua_settop(L, 3);
  lua_pushinteger(L, max);
  lua_replace(L, 3);
  return start_read(L, S, c, OP_UNTIL);
}

static int c_readsome(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = check_open(L, S);
  lua_Integer max = luaL_optinteger(L, 2, LX_READSOME);
  luaL_argcheck(L, max > 0, 2, "maximum must be positive");
  lua_settop(L, 2);
  return start_read(L, S, c, OP_SOME);
}

/* --- writing ------------------------------------------------------------------ */

#define LX_IOV 64

/* Send arguments 2..last, skipping the *done bytes already sent. Returns 1
 * when all is sent, 0 on EAGAIN, or -errno; *done always counts progress. */
static int send_args(lua_State *L, dx_watch *w, int last, size_t *done) {
  for (;;) {
    struct iovec iov[LX_IOV];
    size_t skip = *done, want = 0;
    int i, n = 0;
    long r;
    for (i = 2; i <= last && n < LX_IOV; i++) {
      size_t len;
      const char *s = lua_tolstring(L, i, &len);
      if (skip >= len) {
        skip -= len;
        continue;
      }
      iov[n].iov_base = (void *)(s + skip);
      iov[n].iov_len = len - skip;
      want += len - skip;
      skip = 0;
      n++;
    }
    if (n == 0) return 1;
    r = dx_sendv(w->fd, iov, n);
    if (r < 0) return r == -EAGAIN ? 0 : (int)r;
    *done += (size_t)r;
    if ((size_t)r < want && i > last) return 0;   /* partial: socket full */
  }
}

static int wfail(lua_State *L, lx_client *c, int code, size_t done) {
  cfail(L, c, "write", code);
  lua_pushinteger(L, (lua_Integer)done);
  return 4;
}

/* Stack: 1 self, 2..base data, then base+1 deadline and base+2 bytes done
 * once a wait is needed (first call: before the first wait; after a yield:
 * always there). ctx = base. */
static int write_k(lua_State *L, int status, lua_KContext ctx) {
  lx_state *S = lx_state_of(L);
  lx_client *c = (lx_client *)lua_touserdata(L, 1);
  int base = (int)ctx, r;
  int saved = status != LUA_OK;
  double deadline = saved ? lua_tonumber(L, base + 1) : -1;
  size_t done = saved ? (size_t)lua_tointeger(L, base + 2) : 0;
  for (;;) {
    if (c->s.w.fd < 0) {
      lx_done(S, L);
      return wfail(L, c, -ECANCELED, done);
    }
    if (lx_myturn(L, S, &c->s, 1)) {
      r = send_args(L, &c->s.w, base, &done);
      if (r != 0) {
        lx_done(S, L);
        if (r < 0) return wfail(L, c, r, done);
        lua_settop(L, 1);
        return 1;
      }
    }
    if (!saved) {
      deadline = lx_deadline(c->s.timeout);
      lua_pushnumber(L, deadline);
      lua_pushinteger(L, (lua_Integer)done);
      saved = 1;
    } else {
      lua_pushinteger(L, (lua_Integer)done);
      lua_replace(L, base + 2);
    }
    r = lx_wait(L, S, &c->s, DX_WRITE, deadline, ctx, write_k);
    if (r < 0) {
      lx_done(S, L);
      return wfail(L, c, r, done);
    }
  }
}

static int c_write(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = check_open(L, S);
  int top = lua_gettop(L), i;
  for (i = 2; i <= top; i++) luaL_checklstring(L, i, NULL);
  if (lx_spent(L, S)) {
    lua_pushnumber(L, lx_deadline(c->s.timeout));
    lua_pushinteger(L, 0);
    return lx_yield(L, S, top, write_k);
  }
  return write_k(L, LUA_OK, top);
}

/* --- the rest of the methods ------------------------------------------------------ */

static int c_shutdown(lua_State *L) {
  static const char *const hows[] = {"r", "w", "rw", NULL};
  static const int how_of[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
  lx_client *c = check_open(L, lx_state_of(L));
  int how = how_of[luaL_checkoption(L, 2, "rw", hows)];
  int rc = dx_shutdown(c->s.w.fd, how);
  if (rc < 0) return cfail(L, c, "shutdown", rc);
  lua_settop(L, 1);
  return 1;
}

static int c_settimeout(lua_State *L) {
  lx_client *c = check_open(L, lx_state_of(L));
  c->s.timeout = lx_opt_timeout(L, 2);
  lua_settop(L, 1);
  return 1;
}

static int c_name(lua_State *L, int peer) {
  lx_client *c = check_open(L, lx_state_of(L));
  dx_addr a;
  int rc = dx_sockname(c->s.w.fd, peer, &a);
  if (rc < 0) return cfail(L, c, peer ? "getpeername" : "getsockname", rc);
  return lx_push_addr(L, &a);
}

static int c_getpeername(lua_State *L) { return c_name(L, 1); }
static int c_getsockname(lua_State *L) { return c_name(L, 0); }

static const char *const client_opts[] = {
  "nodelay", "keepalive", "linger", "rcvbuf", "sndbuf", "maxline", NULL
};

static int c_setoption(lua_State *L) {
  lx_client *c = check_open(L, lx_state_of(L));
  int r = lx_sockopt(L, &c->s, 1, client_opts);
  if (r >= 0) return r;
  {                                        /* maxline */
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n > 0, 3, "maxline must be positive");
    c->maxline = (size_t)n;
  }
  lua_settop(L, 1);
  return 1;
}

static int c_getoption(lua_State *L) {
  lx_client *c = check_open(L, lx_state_of(L));
  int r = lx_sockopt(L, &c->s, 0, client_opts);
  if (r >= 0) return r;
  lua_pushinteger(L, (lua_Integer)c->maxline);
  return 1;
}

static int c_fileno(lua_State *L) {
  lx_client *c = check_open(L, lx_state_of(L));
  lua_pushinteger(L, c->s.w.fd);
  return 1;
}

static void release(lua_State *L, lx_client *c) {
  lx_sock_close(lx_state_of(L), &c->s);
  dx_buf_free(&c->rb);
}

static int c_close(lua_State *L) {
  release(L, check_client(L, lx_state_of(L)));
  lua_pushboolean(L, 1);
  return 1;
}

/* __gc and __close: Lua calls them only on our own objects */
static int c_gc(lua_State *L) {
  release(L, (lx_client *)lua_touserdata(L, 1));
  return 0;
}

static int c_tostring(lua_State *L) {
  lx_client *c = check_client(L, lx_state_of(L));
  char local[128] = "?", remote[128];
  dx_addr a;
  if (c->s.w.fd < 0) {
    lua_pushliteral(L, LX_CLIENT " (closed)");
    return 1;
  }
  if (dx_sockname(c->s.w.fd, 0, &a) == 0) dx_addr_label(&a, local, sizeof local);
  if (local[0] == '\0') strcpy(local, "unix");
  label(c, remote, sizeof remote);
  lua_pushfstring(L, LX_CLIENT " (%s -> %s)", local, remote);
  return 1;
}

/* --- connect ------------------------------------------------------------------- */

#define LX_MAXADDR 16

typedef struct lx_targets {
  int n, hasbind;
  dx_addr a[LX_MAXADDR];
  dx_addr bind;
} lx_targets;

/* Apply what the options ask of a connected socket. */
static int connected(lua_State *L, lx_client *c) {
  if (lx_opt_bool(L, 3, "nodelay", 0) && !c->isunix)
    dx_setopt(c->s.w.fd, IPPROTO_TCP, TCP_NODELAY, 1);
  lua_settop(L, 5);
  return 1;
}

/* Stack: 1 host, 2 port, 3 opts, 4 targets, 5 client, 6 deadline,
 * 7 next address index, 8 last error code. */
static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  lx_state *S = lx_state_of(L);
  lx_targets *t = (lx_targets *)lua_touserdata(L, 4);
  lx_client *c = (lx_client *)lua_touserdata(L, 5);
  double deadline = lua_tonumber(L, 6);
  int i = (int)lua_tointeger(L, 7), last = (int)lua_tointeger(L, 8), rc;
  (void)status;
  (void)ctx;
  for (;;) {
    if (c->s.w.fd >= 0) {              /* an attempt is under way */
      if (dx_wait_fd(c->s.w.fd, DX_WRITE, 0) == 0) {
        lua_pushinteger(L, i);
        lua_replace(L, 7);
        rc = lx_wait(L, S, &c->s, DX_WRITE, deadline, 0, connect_k);
        if (rc == 0) continue;
      } else {
        rc = dx_connect_result(c->s.w.fd);
        if (rc == 0) {
          lx_done(S, L);
          return connected(L, c);
        }
      }
      lx_done(S, L);
      lx_sock_close(S, &c->s);
      last = rc;
      if (rc == -ETIMEDOUT || rc == -EAGAIN) break;   /* the deadline is shared */
      i++;
    }
    if (i >= t->n) break;
    set_peer(c, &t->a[i]);
    rc = dx_connect_start(&t->a[i], t->hasbind ? &t->bind : NULL, &c->s.w.fd);
    if (rc == 0) return connected(L, c);
    if (rc != -EINPROGRESS) {
      last = rc;
      i++;
    }
  }
  lua_settop(L, 5);
  return cfail(L, c, "connect", last);
}

static const char *const connect_opts[] = {"timeout", "nodelay", "bind", NULL};

static int m_connect(lua_State *L) {
  lx_targets *t;
  double timeout = -1;
  int n;
  lua_settop(L, 3);
  lx_check_opts(L, 3, connect_opts);
  if (!lua_isnil(L, 3)) {
    lua_getfield(L, 3, "timeout");
    if (!lua_isnil(L, -1)) {
      timeout = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || !(timeout >= 0))
        luaL_argerror(L, 3, "option 'timeout' must be a non-negative number");
    }
    lua_pop(L, 1);
    lx_opt_bool(L, 3, "nodelay", 0);
  }
  t = lua_newuserdatauv(L, sizeof(lx_targets), 0);          /* 4 */
  t->hasbind = 0;
  if (!lua_isnil(L, 3)) {
    lua_getfield(L, 3, "bind");
    if (!lua_isnil(L, -1)) {
      int top = lua_gettop(L);
      if (lua_istable(L, -1)) {
        lua_rawgeti(L, top, 1);
        lua_rawgeti(L, top, 2);
        if (lua_isnil(L, -1)) lua_pushinteger(L, 0), lua_replace(L, -2);
      } else {
        luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 3, "option 'bind' must be a host or {host, port}");
        lua_pushvalue(L, top);
        lua_pushinteger(L, 0);
      }
      if (lua_type(L, -2) != LUA_TSTRING) luaL_argerror(L, 3, "option 'bind' needs a host");
      n = lx_resolve(L, top + 1, top + 2, 1, &t->bind, 1);
      if (n < 0) {
        lua_pushfstring(L, "bind %s", lua_tostring(L, top + 1));
        return lx_fail(L, lua_tostring(L, -1), NULL, n);
      }
      t->hasbind = 1;
      lua_settop(L, top);
    }
    lua_pop(L, 1);
  }
  n = lx_resolve(L, 1, 2, 0, t->a, LX_MAXADDR);
  if (n < 0) return lx_fail(L, "connect", lua_tostring(L, 1), n);
  t->n = n;
  lx_client_new(L);                                         /* 5 */
  lua_pushnumber(L, lx_deadline(timeout));                  /* 6 */
  lua_pushinteger(L, 0);                                    /* 7 */
  lua_pushinteger(L, -ECONNREFUSED);                        /* 8 */
  return connect_k(L, LUA_OK, 0);
}

static const luaL_Reg methods[] = {
  {"read", c_read},
  {"readuntil", c_readuntil},
  {"readsome", c_readsome},
  {"write", c_write},
  {"shutdown", c_shutdown},
  {"settimeout", c_settimeout},
  {"getpeername", c_getpeername},
  {"getsockname", c_getsockname},
  {"setoption", c_setoption},
  {"getoption", c_getoption},
  {"fileno", c_fileno},
  {"close", c_close},
  {NULL, NULL}
};

static const luaL_Reg metamethods[] = {
  {"__gc", c_gc},
  {"__close", c_gc},
  {"__tostring", c_tostring},
  {NULL, NULL}
};

/* Stack on entry: module, state. Adds connect and client_methods. */
void lx_open_client(lua_State *L) {
  lx_state *S = (lx_state *)lua_touserdata(L, -1);
  S->client_mt = lx_newclass(L, LX_CLIENT, methods, metamethods, "client_methods");
  lua_setiuservalue(L, -2, 4);              /* for lx_client_new */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, m_connect, 1);
  lua_setfield(L, -3, "connect");
}
