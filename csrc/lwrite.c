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
}
