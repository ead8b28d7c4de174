/*
 * lread.c - reading a client: read (io formats), readuntil, readsome. Each
 * is a try for the operation driver that scans the buffer (dx_scan) and
 * receives more until it can answer or the kernel says EAGAIN, and a push
 * that takes the bytes out of the buffer and copies them into strings.
 *
 * Reads are atomic: nothing is consumed until every format of the call can
 * be answered, so a read that times out or fails leaves every received byte
 * for the next one. The push copies bytes with one lua_pushlstring only,
 * consumed beforehand: that call copies before it can run the collector,
 * and a finalizer run by the collector may close or read this client.
 */
#include "dx_prefix.h"
#include "lread.h"
#include "lxaux.h"
#include "dx_scan.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define LX_READSOME LX_SCRATCH    /* what one receive into the scratch takes */

/* Receive once into the buffer: > 0 bytes, 0 end of stream, or -errno.
 * trust: the caller will wait if told EAGAIN, so the loop's word that the
 * socket is drained may stand in for the kernel's (no recv to hear it). */
long lx_client_fill(lx_state *S, lx_client *c, int trust) {
  size_t ask;
  char *p;
  long n;
  if (trust && !dx_loop_readable(&c->s.w)) return -EAGAIN;
  p = dx_buf_prep(&c->rb, 4096, &S->scratch);
  if (p == NULL) return -ENOMEM;
  ask = dx_buf_space(&c->rb);
  n = dx_stream_recv(&c->st, c->s.w.fd, p, ask);
  if (n > 0) dx_buf_commit(&c->rb, (size_t)n);
  else if (n == 0) c->eof = 1;
  if (c->st.kind == DX_STREAM_SOCKET) {
    if ((n == -EAGAIN || (n > 0 && (size_t)n < ask)) && S->loop_ok)
      dx_loop_drained(&S->loop, &c->s.w);
  } else if (n >= 0) {
    lx_client_moved(S, c);
  }
  return n;
}

/* May a receive of call k on c take the loop's word that c is drained?
 * Only in a task that will wait, and for TCP only: a layered stream (TLS)
 * is not its socket's readiness, and on a Unix socket bytes that carry
 * descriptors end a read early with more behind them and no edge
 * (spec/core/et_short_read.c). */
int lx_client_trusts(lua_State *L, const lx_call *k, const lx_client *c) {
  return k->S->running == L && k->deadline != 0 && !dx_stream_layered(&c->st) && !c->isunix;
}

/* Before a wait or a failure: give the shared scratch back. */
static void stall_read(lua_State *L, lx_call *k) {
  (void)L;
  dx_buf_settle(&((lx_client *)k->sock)->rb);
}

typedef int (*lx_scanner)(lua_State *L, lx_call *k, lx_client *c);

/* The try of every read: receive until scan answers (1), or the kernel
 * says EAGAIN. scan: the op's decision over the buffer, 1 (answered), 0
 * (more needed) or -errno. */
static int receive_until(lua_State *L, lx_call *k, lx_scanner scan) {
  lx_client *c = (lx_client *)k->sock;
  int trust = lx_client_trusts(L, k, c);
  for (;;) {
    int r = scan(L, k, c);
    long n;
    if (r != 0) return r > 0 ? LX_DONE : r;
    n = lx_client_fill(k->S, c, trust);
    if (n == -EAGAIN) return LX_WAIT_READ;
    if (n == DX_WANT_WRITE) return LX_WAIT_WRITE;     /* TLS must write first */
    if (n < 0) {
      k->broke = n != -ENOMEM;            /* no more bytes will come */
      return (int)n;
    }
    k->moved = 1;
  }
}

/* A read that fails leaves every byte buffered for the next one, unless
 * the stream itself broke (a reset, a TLS end without close_notify): no
 * more bytes will come, so the bytes received are handed over with the
 * failure, as a fourth result: nil, msg, code, partial. */
typedef int (*lx_failure)(lua_State *L, lx_sock *s, const char *op, int code);

static int fail_with(lua_State *L, lx_call *k, int code, lx_failure push) {
  lx_client *c = (lx_client *)k->sock;
  size_t n = dx_buf_len(&c->rb);
  if (!k->broke) return push(L, k->sock, k->op->name, code);
  /* the bytes are taken before a string is made: making one may run a
   * finalizer that reads this client */
  lx_client_push(L, c, n, n);
  push(L, k->sock, k->op->name, code);
  lua_rotate(L, -4, -1);
  return 4;
}

static int fail_read(lua_State *L, lx_call *k, int code) {
  return fail_with(L, k, code, lx_sockfail);
}

/* Take what try found and settle; push the value (or nil): 1 result. */
static int push_one(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  if (k->used) c->unanswered = 1;
  if (k->ended) {
    luaL_pushfail(L);
    dx_buf_settle(&c->rb);
  } else {
    lx_client_push(L, c, k->used, k->vlen);
  }
  return 1;
}

/* --- read(fmt, ...) ------------------------------------------------------- */

/* Format at stack index i (normalised by check_format: a count n >= 0,
 * or -'l', -'L', -'a') over p[0..len). */
static int scan_format(lua_State *L, int i, const char *p, size_t len, int eof,
                       size_t maxline, dx_scan *s) {
  lua_Integer f = lua_tointeger(L, i);
  if (f >= 0) return dx_scan_format(DX_FMT_COUNT, (size_t)f, p, len, eof, maxline, s);
  return dx_scan_format((int)-f, 0, p, len, eof, maxline, s);
}

/* Every format of the call over the buffer: 1, 0 or -EMSGSIZE. The format
 * that needs more bytes keeps how far its search got in k[0] (its index)
 * and k[1]. */
static int scan_formats(lua_State *L, lx_call *k, lx_client *c) {
  const char *p = dx_buf_peek(&c->rb);
  size_t len = dx_buf_len(&c->rb), off = 0;
  int i;
  for (i = 2; i <= k->base; i++) {
    dx_scan s;
    int r;
    s.from = i - 2 == k->k[0] ? (size_t)k->k[1] : 0;
    r = scan_format(L, i, p + off, len - off, c->eof, c->maxline, &s);
    if (r == DX_SCAN_MORE) {
      k->k[0] = i - 2;
      k->k[1] = (lua_Integer)s.from;
      return 0;
    }
    if (r < 0) return r;
    if (r == DX_SCAN_END) {
      k->ended = 1;
      break;
    }
    k->vlen = s.vlen;
    off += s.used;
  }
  k->used = off;
  /* For the values cut again from the copy in push_read: the end counts
   * only if no byte is left after the consumed ones (a 0 count that comes
   * last is "" while bytes remain, nil once nothing does). */
  k->eof = c->eof && off == len;
  return 1;
}

static int try_read(lua_State *L, lx_call *k) {
  return receive_until(L, k, scan_formats);
}

/* Several formats: the bytes of all go into one string first, and the
 * values are cut from that string, which no finalizer can touch. */
static int push_read(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  const char *all;
  size_t len, off = 0;
  int i, top;
  if (k->base == 2) return push_one(L, k);
  if (k->used) c->unanswered = 1;
  lx_client_push(L, c, k->used, k->used);
  top = lua_gettop(L);
  all = lua_tolstring(L, top, &len);
  for (i = 2; i <= k->base; i++) {
    dx_scan s;
    s.from = 0;
    /* the same bytes and end give the same answers (no limit: try passed it) */
    if (scan_format(L, i, all + off, len - off, k->eof, SIZE_MAX, &s) != DX_SCAN_VALUE) {
      luaL_pushfail(L);
      break;
    }
    lua_pushlstring(L, all + off, s.vlen);
    off += s.used;
  }
  lua_remove(L, top);
  return lua_gettop(L) - top + 1;
}

static const lx_op op_read = {
  .name = "read", .dir = LX_READERS, .sockarg = 1, .try = try_read, .push = push_read,
  .fail = fail_read, .stall = stall_read,
};

/* read(0) alone never waits for data: "" unless the stream has ended,
 * which only a receive can tell when nothing is buffered. */
static int try_read0(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  (void)L;
  if (dx_buf_len(&c->rb) == 0 && !c->eof) {
    long n = lx_client_fill(k->S, c, 0);
    if (n == DX_WANT_WRITE) return LX_WAIT_WRITE;
    if (n < 0 && n != -EAGAIN) {
      k->broke = n != -ENOMEM;
      return (int)n;
    }
  }
  k->ended = dx_buf_len(&c->rb) == 0 && c->eof;
  return LX_DONE;
}

static const lx_op op_read0 = {
  .name = "read", .dir = LX_READERS, .sockarg = 1, .try = try_read0, .push = push_one,
  .fail = fail_read, .stall = stall_read,
};

/* Formats become integers: a count n as n, "l" (or "*l") as -'l', and so
 * on, so that a try reads each with one lua_tointeger. */
static void check_format(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TNUMBER) {
    int isint;
    lua_Integer n = lua_tointegerx(L, i, &isint);
    luaL_argcheck(L, isint, i, "byte count must be an integer");
    luaL_argcheck(L, n >= 0, i, "byte count must be non-negative");
    lua_pushinteger(L, n);
  } else {
    size_t len;
    const char *f = luaL_checklstring(L, i, &len), *g = f;
    if (*g == '*') g++;                   /* skip optional '*' (for compatibility) */
    if (strlen(f) != len)
      luaL_argerror(L, i, "invalid format (contains a zero byte)");
    if (!((g[0] == 'l' || g[0] == 'L' || g[0] == 'a') && g[1] == '\0'))
      luaL_argerror(L, i, lua_pushfstring(L, "invalid format '%s'", f));
    lua_pushinteger(L, -(lua_Integer)g[0]);
  }
  lua_replace(L, i);
}

static int c_read(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = (lx_client *)lx_checksock(L, S, &lx_client_class);
  int top = lua_gettop(L), i;
  if (top == 1) {
    lua_pushliteral(L, "l");
    top = 2;
  }
  luaL_checkstack(L, top + 16, "too many formats");
  for (i = 2; i <= top; i++) check_format(L, i);
  if (top == 2 && lua_tointeger(L, 2) == 0)
    return lx_drive_on(L, S, &c->s, &op_read0, lx_deadline(c->s.timeout));
  return lx_drive_on(L, S, &c->s, &op_read, lx_deadline(c->s.timeout));
}

/* --- readuntil(delim [, max]) ------------------------------------------------ */

/* Stack: 1 self, 2 delim, 3 max. */
static int scan_until(lua_State *L, lx_call *k, lx_client *c) {
  size_t dlen;
  const char *d;
  dx_scan s;
  int r;
  if (dx_buf_len(&c->rb) == 0 && !c->eof) return 0;   /* the wait's first and last look */
  d = lua_tolstring(L, 2, &dlen);
  s.vlen = s.used = 0;
  s.from = (size_t)k->k[1];
  r = dx_scan_until(dx_buf_peek(&c->rb), dx_buf_len(&c->rb), d, dlen,
                    (size_t)lua_tointeger(L, 3), c->eof, &s);
  if (r == DX_SCAN_MORE) {
    k->k[1] = (lua_Integer)s.from;
    return 0;
  }
  if (r < 0) return r;
  k->ended = r == DX_SCAN_END;     /* the unterminated rest stays buffered */
  k->vlen = s.vlen;
  k->used = s.used;
  return 1;
}

static int try_until(lua_State *L, lx_call *k) {
  return receive_until(L, k, scan_until);
}

static const lx_op op_until = {
  .name = "readuntil", .dir = LX_READERS, .sockarg = 1, .try = try_until,
  .push = push_one, .fail = fail_read, .stall = stall_read,
};

static int c_readuntil(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = (lx_client *)lx_checksock(L, S, &lx_client_class);
  size_t dlen;
  lua_Integer max;
  luaL_checklstring(L, 2, &dlen);
  luaL_argcheck(L, dlen > 0, 2, "empty delimiter");
  max = luaL_optinteger(L, 3, (lua_Integer)c->maxline);
  luaL_argcheck(L, max >= 0, 3, "maximum must be non-negative");
  lua_settop(L, 3);
  lua_pushinteger(L, max);
  lua_replace(L, 3);
  return lx_drive_on(L, S, &c->s, &op_until, lx_deadline(c->s.timeout));
}

/* --- readsome([max]) ---------------------------------------------------------- */

static int scan_some(lua_State *L, lx_call *k, lx_client *c) {
  dx_scan s = {0, 0, 0};
  int r;
  if (dx_buf_len(&c->rb) == 0 && !c->eof) return 0;   /* the wait's first and last look */
  r = dx_scan_some(dx_buf_len(&c->rb), (size_t)lua_tointeger(L, 2), c->eof, &s);
  if (r == DX_SCAN_MORE) return 0;
  k->ended = r == DX_SCAN_END;
  k->vlen = s.vlen;
  k->used = s.used;
  return 1;
}

static int try_some(lua_State *L, lx_call *k) {
  return receive_until(L, k, scan_some);
}

static const lx_op op_some = {
  .name = "readsome", .dir = LX_READERS, .sockarg = 1, .try = try_some, .push = push_one,
  .fail = fail_read, .stall = stall_read,
};

static int c_readsome(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = (lx_client *)lx_checksock(L, S, &lx_client_class);
  lua_Integer max = luaL_optinteger(L, 2, LX_READSOME);
  luaL_argcheck(L, max > 0, 2, "maximum must be positive");
  lua_settop(L, 1);
  lua_pushinteger(L, max);
  return lx_drive_on(L, S, &c->s, &op_some, lx_deadline(c->s.timeout));
}

/* --- core.socketline(client): LuaSocket's "*l" ---------------------------------- */

/* For duplex.socket (LuaSocket's face), whose receive("*l") this is: the
 * line up to "\n" with every "\r" in it dropped, and how many bytes it
 * took; an unterminated rest at the end of the stream stays buffered and
 * the result is nil; failures as read's, but a timeout's partial line is
 * handed over (nil, "timeout", code, partial). Done here because the same in
 * Lua (a read("L"), then find and sub) cost three times the read. */
static int scan_sline(lua_State *L, lx_call *k, lx_client *c) {
  const char *p = dx_buf_peek(&c->rb), *nl;
  size_t len = dx_buf_len(&c->rb), from = (size_t)k->k[1];
  (void)L;
  if (from < len && (nl = memchr(p + from, '\n', len - from)) != NULL) {
    k->vlen = (size_t)(nl - p);
    k->used = k->vlen + 1;
    return 1;
  }
  if (c->eof) {
    k->ended = 1;
    return 1;
  }
  if (len > c->maxline) return -EMSGSIZE;
  k->k[1] = (lua_Integer)len;
  return 0;
}

static int try_sline(lua_State *L, lx_call *k) {
  return receive_until(L, k, scan_sline);
}

static int push_sline(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  const char *p = dx_buf_peek(&c->rb), *cr;
  size_t n = k->vlen, used = k->used;
  if (k->ended) return push_one(L, k);
  c->unanswered = 1;
  cr = memchr(p, '\r', n);
  if (cr == NULL || cr == p + n - 1) {          /* none, or one before "\n" */
    lx_client_push(L, c, used, cr ? n - 1 : n);
  } else {
    luaL_Buffer b;
    size_t i;
    const char *s;
    lx_client_push(L, c, used, n);              /* taken out before any copy */
    s = lua_tostring(L, -1);
    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++)
      if (s[i] != '\r') luaL_addchar(&b, s[i]);
    luaL_pushresult(&b);
    lua_remove(L, -2);
  }
  lua_pushinteger(L, (lua_Integer)used);
  return 2;
}

/* nil, reason, code: no place in the message, as duplex.socket shows
 * LuaSocket's strings for codes ("timeout" for a would-block poll, which
 * copas makes before every wait: formatting a place was most of its cost). */
static int bare_failure(lua_State *L, lx_sock *s, const char *op, int code) {
  const char *why = s->cls->reason ? s->cls->reason(s, code) : NULL;
  (void)op;
  luaL_pushfail(L);
  if (why) lua_pushstring(L, why);
  else if (code == -EAGAIN || code == -ETIMEDOUT) lua_pushliteral(L, "timeout");
  else lua_pushstring(L, dx_strerror(code));
  lua_pushstring(L, dx_errname(code));
  return 3;
}

/* A timeout hands over what was received of the line (consumed), as
 * LuaSocket's receive does, so that the face need not ask for it. */
static int fail_sline(lua_State *L, lx_call *k, int code) {
  if (code == -EAGAIN || code == -ETIMEDOUT) k->broke = 1;
  return fail_with(L, k, code, bare_failure);
}

static const lx_op op_sline = {
  .name = "receive", .dir = LX_READERS, .sockarg = 1, .try = try_sline,
  .push = push_sline, .fail = fail_sline, .stall = stall_read,
};

static int c_socketline(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = (lx_client *)lx_checksock(L, S, &lx_client_class);
  lua_settop(L, 1);
  return lx_drive_on(L, S, &c->s, &op_sline, lx_deadline(c->s.timeout));
}

/* --- core.facereceiver(mt, slow, module, strings): receive in C ----------------- */

#ifndef LX_NO_YIELDK
/* duplex.socket's tcp{client} receive, for its common case (a line, no
 * prefix, timeouts applied, no _DEBUG) done whole here with LuaSocket's
 * results: the same through a Lua method cost more than the read itself,
 * and copas calls it four times a request. Anything else goes to the Lua
 * method (upvalue 3). Upvalues: 1 the state, 2 tcp{client}'s metatable,
 * 3 the Lua receive, 4 the socket module (its _DEBUG), 5 LuaSocket's
 * strings by duplex's codes. Stack of the op: 1 the duplex client, 2 the
 * face's object (its `recvd` counts the bytes taken). */

/* Take used bytes out of c's buffer and push them without any CR. */
static void push_nocr(lua_State *L, lx_client *c, size_t used) {
  const char *s;
  size_t i;
  luaL_Buffer b;
  lx_client_push(L, c, used, used);
  s = lua_tostring(L, -1);
  if (memchr(s, '\r', used) == NULL) return;
  luaL_buffinit(L, &b);
  for (i = 0; i < used; i++)
    if (s[i] != '\r') luaL_addchar(&b, s[i]);
  luaL_pushresult(&b);
  lua_remove(L, -2);
}

static void count_recvd(lua_State *L, size_t n) {
  lua_getfield(L, 2, "recvd");
  lua_pushnumber(L, lua_tonumber(L, -1) + (lua_Number)n);
  lua_setfield(L, 2, "recvd");
  lua_pop(L, 1);
}

/* nil, "closed", the rest: the stream ended inside a line. */
static int push_faceline(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  size_t n = k->vlen;
  if (k->ended) {
    size_t rest = dx_buf_len(&c->rb);
    count_recvd(L, rest);
    luaL_pushfail(L);
    lua_pushliteral(L, "closed");
    push_nocr(L, c, rest);
    return 3;
  }
  count_recvd(L, k->used);
  c->unanswered = 1;
  {
    const char *p = dx_buf_peek(&c->rb), *cr = memchr(p, '\r', n);
    if (cr == NULL || cr == p + n - 1) {
      lx_client_push(L, c, k->used, cr ? n - 1 : n);
      return 1;
    }
  }
  push_nocr(L, c, k->used);
  lua_pushlstring(L, lua_tostring(L, -1), lua_rawlen(L, -1) - 1);   /* less the LF */
  lua_remove(L, -2);
  return 1;
}

/* nil, LuaSocket's string, the partial line (consumed; a timeout's and a
 * broken stream's, as LuaSocket hands them over). */
static int fail_faceline(lua_State *L, lx_call *k, int code) {
  lx_client *c = (lx_client *)k->sock;
  size_t n = (code == -EAGAIN || code == -ETIMEDOUT || k->broke) ? dx_buf_len(&c->rb) : 0;
  const char *why = c->s.cls->reason ? c->s.cls->reason(&c->s, code) : NULL;
  count_recvd(L, n);
  luaL_pushfail(L);
  lua_getfield(L, lua_upvalueindex(5), dx_errname(code));
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushstring(L, why ? why : dx_strerror(code));
  }
  push_nocr(L, c, n);
  return 3;
}

static const lx_op op_faceline = {
  .name = "receive", .dir = LX_READERS, .sockarg = 1, .try = try_sline,
  .push = push_faceline, .fail = fail_faceline, .stall = stall_read,
};

static int slow_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  return lua_gettop(L);
}

/* The face's method's fast path, its arguments checked: self (1) of the
 * class (upvalue 2), timeouts applied, no fdover, no _DEBUG (upvalue 4).
 * Its duplex client, left on top of the stack, or NULL. */
lx_client *lx_face_client(lua_State *L, lx_state *S) {
  lx_client *c;
  int ok;
  if (!lua_getmetatable(L, 1)) return NULL;
  ok = lua_rawequal(L, -1, lua_upvalueindex(2));
  lua_pop(L, 1);
  if (!ok) return NULL;
  lua_getfield(L, lua_upvalueindex(4), "_DEBUG");
  lua_getfield(L, 1, "applied");
  lua_getfield(L, 1, "fdover");
  lua_getfield(L, 1, "d");
  c = (lx_client *)lx_tosock(L, S, -1, &lx_client_class);
  if (!c || lua_toboolean(L, -4) || !lua_toboolean(L, -3) || !lua_isnil(L, -2)) return NULL;
  lua_replace(L, -4);
  lua_pop(L, 2);
  return c;
}

/* Anything else: the Lua method (upvalue 3) on the top arguments. */
int lx_face_slow(lua_State *L, int top) {
  lua_settop(L, top);
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_insert(L, 1);
  lua_callk(L, top, LUA_MULTRET, 0, slow_k);
  return lua_gettop(L);
}
#endif

/* core.facereceiver / facesender (mt, slow, module, strings): method f
 * with those as upvalues 2..5; the Lua one (slow) without continuations. */
int lx_face_method(lua_State *L, lua_CFunction f) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
#ifdef LX_NO_YIELDK
  (void)f;
  lua_settop(L, 2);
  return 1;
#else
  lua_settop(L, 4);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_pushcclosure(L, f, 5);
  return 1;
#endif
}

#ifndef LX_NO_YIELDK

static int face_receive(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int top = lua_gettop(L), fast = 0;
  lx_client *c = NULL;
  if (top <= 3) {
    size_t len;
    const char *pat = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len) : NULL;
    fast = (lua_isnoneornil(L, 2) || (pat && len == 2 && pat[0] == '*' && pat[1] == 'l'))
        && (lua_isnoneornil(L, 3) || (lua_type(L, 3) == LUA_TSTRING && lua_rawlen(L, 3) == 0));
  }
  if (fast) c = lx_face_client(L, S);
  if (c == NULL) return lx_face_slow(L, top);
  lua_insert(L, 1);                    /* 1 the client (from the top), 2 the object */
  lua_settop(L, 2);
  return lx_drive_on(L, S, &c->s, &op_faceline, lx_deadline(c->s.timeout));
}
#endif

static int c_facereceiver(lua_State *L) {
#ifndef LX_NO_YIELDK
  return lx_face_method(L, face_receive);
#else
  return lx_face_method(L, NULL);
#endif
}

/* buffered() -> how many bytes were received and not read yet (0 once
 * closed): what LuaSocket's dirty() asks (duplex.socket). */
static int c_buffered(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = (lx_client *)lx_checksock(L, S, &lx_client_class);
  lua_pushinteger(L, c->s.w.fd < 0 ? 0 : (lua_Integer)dx_buf_len(&c->rb));
  return 1;
}

static const luaL_Reg methods[] = {
  {"read", c_read},
  {"buffered", c_buffered},
  {"readuntil", c_readuntil},
  {"readsome", c_readsome},
  {NULL, NULL}
};

/* Stack on entry: module, state. Adds the reading methods to the client's. */
void lx_open_read(lua_State *L) {
  lua_getfield(L, -2, "client_methods");
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, c_socketline, 1);
  lua_setfield(L, -3, "socketline");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, c_facereceiver, 1);
  lua_setfield(L, -3, "facereceiver");
}
