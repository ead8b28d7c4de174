/*
 * lwrite.c - client:write(...): every argument goes out with as few
 * sendmsg calls as the kernel allows (IOV_MAX pieces each), no
 * concatenation in Lua. A cursor (argument, offset) keeps the progress, so
 * a write of many pieces is linear however the kernel cuts it.
 *
 * Each write goes out whole, or fails part-way: a write that ends with
 * part of its bytes sent (timeout, cancel, error) leaves the stream cut in
 * the middle of a message. Until the same task completes a write, writes
 * from any other caller fail with EPIPE instead of landing inside the cut
 * message; the cut of a task that is gone stays for good.
 */
#include "dx_prefix.h"
#include "lwrite.h"
#include "lread.h"
#include "ldrive.h"
#include "lxaux.h"

#include <errno.h>
#include <limits.h>
#include <sys/uio.h>

#if defined(IOV_MAX) && IOV_MAX < 1024
#define LX_IOV IOV_MAX
#else
#define LX_IOV 1024
#endif

/* Stack: 1 self, 2..base the pieces. Progress: k[0] the piece being sent
 * (0 before the first try), k[1] the bytes of it already sent. */
static int try_write(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  int i = (int)k->k[0];
  size_t off = (size_t)k->k[1];
  if (i == 0) {
    if (lx_cut_by_other(L, k->S, c)) {
      k->ended = 1;                       /* tell fail_write why */
      return -EPIPE;
    }
    i = 2;
  }
  for (;;) {
    struct iovec iov[LX_IOV];
    int n = 0, j, most = dx_stream_layered(&c->st) ? 1 : LX_IOV;   /* a layer: one piece */
    long r;
    for (j = i; j <= k->base && j < i + LX_IOV && n < most; j++) {
      size_t len, skip = j == i ? off : 0;
      const char *s = lua_tolstring(L, j, &len);
      if (len == skip) continue;
      iov[n].iov_base = (void *)(s + skip);
      iov[n].iov_len = len - skip;
      n++;
    }
    if (n == 0) {
      c->cut = 0;                         /* the message is whole */
      return LX_DONE;
    }
    r = dx_stream_sendv(&c->st, c->s.w.fd, iov, n);
    if (r < 0) {
      k->k[0] = i;
      k->k[1] = (lua_Integer)off;
      if (r == DX_WANT_READ) return LX_WAIT_READ;      /* TLS must read first */
      return r == -EAGAIN ? LX_WAIT_WRITE : (int)r;
    }
    lx_client_moved(k->S, c);
    k->moved = 1;
    c->unanswered = 0;
    while (i <= k->base) {                /* move the cursor past r bytes */
      size_t left = lua_rawlen(L, i) - off;
      if ((size_t)r < left) {
        off += (size_t)r;
        break;
      }
      r -= (long)left;
      i++;
      off = 0;
    }
  }
}

/* Bytes sent so far by this call. */
static size_t written(lua_State *L, const lx_call *k) {
  size_t n = (size_t)k->k[1];
  int i;
  for (i = 2; i < k->k[0]; i++) n += lua_rawlen(L, i);
  return n;
}

int lx_cut_by_other(lua_State *L, const lx_state *S, const lx_client *c) {
  return c->cut != 0 && c->cut != lx_who(L, S);
}

void lx_cut_mark(lua_State *L, const lx_state *S, lx_client *c, size_t sent) {
  /* a record held for another caller's cut message stays that caller's */
  if ((sent > 0 || dx_stream_held(&c->st)) && !lx_cut_by_other(L, S, c)) c->cut = lx_who(L, S);
}

int lx_cut_fail(lua_State *L, lx_client *c, const char *op) {
  char where[128];
  lx_client_label(c, where, sizeof where);
  luaL_pushfail(L);
  lua_pushfstring(L, "%s %s: an earlier write was cut off mid-message", op, where);
  lua_pushliteral(L, "EPIPE");
  return 3;
}

static void stall_write(lua_State *L, lx_call *k) {
  lx_cut_mark(L, k->S, (lx_client *)k->sock, written(L, k));
}

static int fail_write(lua_State *L, lx_call *k, int code) {
  if (k->ended) {
    lx_cut_fail(L, (lx_client *)k->sock, "write");
  } else {
    lx_sockfail(L, k->sock, "write", code);
  }
  lua_pushinteger(L, (lua_Integer)written(L, k));
  return 4;
}

static const lx_op op_write = {
  .name = "write", .dir = LX_WRITERS, .sockarg = 1, .try = try_write, .push = lx_push_self,
  .fail = fail_write, .stall = stall_write,
};

/* A layered stream (TLS): runs of small pieces become one piece of at
 * most a record each, so that they go out as one record instead of one
 * each. */
static void coalesce(lua_State *L) {
  int top = lua_gettop(L), i, out = 2;
  for (i = 2; i <= top;) {
    size_t len;
    lua_tolstring(L, i, &len);
    if (len >= DX_STREAM_RECORD || i == top) {
      lua_pushvalue(L, i++);
    } else {
      luaL_Buffer b;
      size_t run = 0;
      luaL_buffinit(L, &b);
      while (i <= top && run + lua_rawlen(L, i) <= DX_STREAM_RECORD) {
        size_t n;
        const char *p = lua_tolstring(L, i++, &n);
        luaL_addlstring(&b, p, n);
        run += n;
      }
      luaL_pushresult(&b);
    }
    lua_replace(L, out++);      /* out <= i: nothing unread is overwritten */
  }
  lua_settop(L, out - 1);
}

static int c_write(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = (lx_client *)lx_checksock(L, S, &lx_client_class);
  int top = lua_gettop(L), i;
  for (i = 2; i <= top; i++) luaL_checklstring(L, i, NULL);
  if (dx_stream_layered(&c->st) && top > 2) coalesce(L);
  return lx_drive_on(L, S, &c->s, &op_write, lx_deadline(c->s.timeout));
}

/* --- core.facesender(mt, slow, module, strings): send in C ------------------ */

#ifndef LX_NO_YIELDK
/* duplex.socket's tcp{client} send for its common case (one string of at
 * most LX_FACE_SLICE bytes, whole, timeouts applied, no _DEBUG), with
 * LuaSocket's results; anything else goes to the Lua method (upvalue 3),
 * as core.facereceiver does for receive. Stack of the op: 1 the duplex
 * client, 2 the data, 3 the face's object (its `sent`). Progress: k[1]
 * bytes sent. */
#define LX_FACE_SLICE 524288        /* socket_tcp.lua's SLICE */

static int try_facesend(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  size_t len, off = (size_t)k->k[1];
  const char *s = lua_tolstring(L, 2, &len);
  if (off == 0 && k->k[0] == 0) {
    k->k[0] = 1;
    if (lx_cut_by_other(L, k->S, c)) {
      k->ended = 1;
      return -EPIPE;
    }
  }
  while (off < len) {
    struct iovec iov;
    long r;
    iov.iov_base = (void *)(s + off);
    iov.iov_len = len - off;
    r = dx_stream_sendv(&c->st, c->s.w.fd, &iov, 1);
    if (r < 0) {
      k->k[1] = (lua_Integer)off;
      if (r == DX_WANT_READ) return LX_WAIT_READ;
      return r == -EAGAIN ? LX_WAIT_WRITE : (int)r;
    }
    lx_client_moved(k->S, c);
    k->moved = 1;
    c->unanswered = 0;
    off += (size_t)r;
  }
  k->k[1] = (lua_Integer)off;
  c->cut = 0;
  return LX_DONE;
}

static void count_sent(lua_State *L, size_t n) {
  lua_getfield(L, 3, "sent");
  lua_pushnumber(L, lua_tonumber(L, -1) + (lua_Number)n);
  lua_setfield(L, 3, "sent");
  lua_pop(L, 1);
}

static void stall_facesend(lua_State *L, lx_call *k) {
  lx_cut_mark(L, k->S, (lx_client *)k->sock, (size_t)k->k[1]);
}

/* the last index sent */
static int push_facesend(lua_State *L, lx_call *k) {
  count_sent(L, (size_t)k->k[1]);
  lua_pushnumber(L, (lua_Number)k->k[1]);
  return 1;
}

/* nil, LuaSocket's string, the last index sent */
static int fail_facesend(lua_State *L, lx_call *k, int code) {
  lx_sock *s = k->sock;
  const char *why = s->cls->reason ? s->cls->reason(s, code) : NULL;
  count_sent(L, (size_t)k->k[1]);
  luaL_pushfail(L);
  lua_getfield(L, lua_upvalueindex(5), k->ended ? "EPIPE" : dx_errname(code));
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushstring(L, why ? why : dx_strerror(code));
  }
  lua_pushnumber(L, (lua_Number)k->k[1]);
  return 3;
}

static const lx_op op_facesend = {
  .name = "send", .dir = LX_WRITERS, .sockarg = 1, .try = try_facesend,
  .push = push_facesend, .fail = fail_facesend, .stall = stall_facesend,
};

static int face_send(lua_State *L) {
  lx_state *S = lx_state_of(L);
  int top = lua_gettop(L), fast;
  lx_client *c = NULL;
  size_t len;
  fast = top <= 4 && lua_type(L, 2) == LUA_TSTRING     /* copas: send(data, 1, nil) */
      && (lua_isnoneornil(L, 3) || (lua_isinteger(L, 3) && lua_tointeger(L, 3) == 1))
      && lua_isnoneornil(L, 4);
  if (fast) {
    len = lua_rawlen(L, 2);
    fast = len > 0 && len <= LX_FACE_SLICE;
  }
  if (fast) c = lx_face_client(L, S);
  if (c == NULL) return lx_face_slow(L, top);
  lua_insert(L, 1);                    /* 1 the client (from the top) */
  lua_settop(L, 3);                    /* 2 the object, 3 the data */
  lua_rotate(L, 2, 1);                 /* 2 the data, 3 the object */
  return lx_drive_on(L, S, &c->s, &op_facesend, lx_deadline(c->s.timeout));
}
#endif

static int c_facesender(lua_State *L) {
#ifndef LX_NO_YIELDK
  return lx_face_method(L, face_send);
#else
  return lx_face_method(L, NULL);
#endif
}

static const luaL_Reg methods[] = {
  {"write", c_write},
  {NULL, NULL}
};

/* Stack on entry: module, state. Adds write to the client's methods. */
void lx_open_write(lua_State *L) {
  lua_getfield(L, -2, "client_methods");
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, c_facesender, 1);
  lua_setfield(L, -3, "facesender");
}
