/*
 * lforward.c - client:forward(dst [, max]): the bytes of one client go to
 * another in C until the source's stream ends, then dst is half-closed.
 * One operation of the driver on two sockets: it holds src's read turn and
 * dst's write turn, and waits on whichever of them the kernel said EAGAIN
 * for.
 *
 * Two paths. Small messages go through src's own receive buffer: one recv
 * and one send each, as a hand-written pump would (and TLS on either side
 * must go this way: splice never sees plaintext). A receive that fills the
 * buffer shows a bulk stream, which then goes through a pipe with
 * splice(2), never copied to user space, until a splice brings little.
 *
 * Nothing is lost: the buffer's bytes go to dst before anything new is
 * received, and what a failed call had taken into the pipe is put back
 * into src's buffer, where the next read or forward finds it first. Only
 * a cancelled task's pipe is dropped with it.
 */
#include "dx_prefix.h"
#include "lforward.h"
#include "lread.h"
#include "lwrite.h"
#include "lxaux.h"
#include "dx_splice.h"
#include "dx_time.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define LX_PIPE_SIZE (256 * 1024)   /* asked for; the kernel may give less */
#define LX_BULK 32768               /* a receive this large: splice next */
#define LX_SMALL 4096               /* a splice this small: the buffer next */
#define LX_TURN (1024 * 1024)       /* bytes a try moves before others run */

typedef struct lx_fwd {
  int pipe[2];                /* -1 until the first splice */
  long cap;                   /* the pipe's size */
  size_t inpipe;              /* bytes in the pipe, not yet in dst */
  lua_Integer count, max;     /* bytes given to dst; where to stop */
  int splice;                 /* 0 never (TLS, off, unsupported), 1 may, 2 now */
  int side;                   /* the failure was dst's (1) or src's (0) */
  int cutoff;                 /* failed: another caller's write to dst was cut */
} lx_fwd;

static int fwd_gc(lua_State *L) {
  lx_fwd *f = (lx_fwd *)lua_touserdata(L, 1);
  dx_pipe_close(f->pipe);
  return 0;
}

/* Send from src's buffer to dst: a count, -EAGAIN, DX_WANT_READ or
 * -errno. A layered dst's send that waited is made again with the same
 * bytes: they stay in src's buffer until sent. */
static long send_some(lx_state *S, lx_client *d, const char *p, size_t n) {
  long r = dx_stream_send(&d->st, d->s.w.fd, p, n);
  if (r >= 0) lx_client_moved(S, d);
  return r;
}

/* The pipe's bytes back into src's buffer (0 or -errno). */
static int unpipe(lx_fwd *f, lx_client *src) {
  while (f->inpipe > 0) {
    char *p = dx_buf_prep(&src->rb, f->inpipe, NULL);
    long n;
    if (p == NULL) return -ENOMEM;
    n = dx_pipe_read(f->pipe[0], p, f->inpipe);
    if (n <= 0) return n < 0 ? (int)n : -EIO;
    dx_buf_commit(&src->rb, (size_t)n);
    f->inpipe -= (size_t)n;
  }
  return 0;
}

static int unsupported(long r) {
  return r == -EINVAL || r == -ENOSYS || r == -EOPNOTSUPP || r == -ESPIPE;
}

/* The end of src's stream: dst's too (TLS: all of close_notify first,
 * which may wait for dst to take it). */
static int end_stream(lx_call *k, lx_fwd *f, lx_client *dst) {
  int rc;
  f->side = 1;
  if (dst->st.kind == DX_STREAM_FILE) return LX_DONE;   /* a pipe or file: close ends it */
  rc = dx_stream_shutdown(&dst->st, dst->s.w.fd, SHUT_WR);
  if (rc == -EAGAIN) {
    k->on = k->sock2;
    return LX_WAIT_WRITE;
  }
  return rc < 0 ? rc : LX_DONE;
}

/* r bytes of src reached dst: src was read, dst written (for serve's
 * graceful close: see m_idle). */
static void delivered(lx_call *k, lx_fwd *f, lx_client *src, lx_client *dst, long r) {
  f->count += r;
  k->moved = 1;
  src->unanswered = 1;
  dst->unanswered = 0;
}

/* Stack: 1 src, 2 dst, 3 max, 4 the call's state (lx_fwd). */
static int try_forward(lua_State *L, lx_call *k) {
  lx_client *src = (lx_client *)k->sock, *dst = (lx_client *)k->sock2;
  lx_fwd *f = (lx_fwd *)lua_touserdata(L, 4);
  lua_Integer turn = f->count + LX_TURN;
  /* as reads do: the loop's word that src is drained saves a recv (TCP) */
  int trust = lx_client_trusts(L, k, src);
  if (lx_cut_by_other(L, k->S, dst)) {
    f->side = f->cutoff = 1;                /* nothing may follow a cut message */
    return -EPIPE;
  }
  for (;;) {
    size_t left = (size_t)(f->max - f->count) - f->inpipe;
    long r;
    if (f->count >= turn) {                 /* let the others run */
      k->wake_at = dx_now();
      return LX_WAIT_TIMER;
    }
    if (f->inpipe > 0) {                    /* pipe -> dst */
      dx_pipeguard g;
      dx_pipeguard_hold(&g);
      r = dx_splice_out(f->pipe[0], dst->s.w.fd, f->inpipe);
      dx_pipeguard_release(&g, r == -EPIPE);
      if (r > 0) {
        f->inpipe -= (size_t)r;
        delivered(k, f, src, dst, r);
        continue;
      }
      if (unsupported(r)) {                 /* dst cannot take splices */
        f->splice = 0;
        if ((r = unpipe(f, src)) == 0) continue;   /* and src's readiness is the wait */
      }
      k->on = k->sock2;
      if (r == -EAGAIN) return LX_WAIT_WRITE;
      f->side = 1;
      return (int)r;
    }
    if (left == 0) return LX_DONE;          /* max moved: no half-close */
    if (dx_buf_len(&src->rb) > 0) {         /* src's buffer -> dst */
      size_t n = dx_buf_len(&src->rb);
      r = send_some(k->S, dst, dx_buf_peek(&src->rb), n < left ? n : left);
      if (r > 0) {
        dx_buf_take(&src->rb, (size_t)r);
        delivered(k, f, src, dst, r);
        dst->cut = 0;                       /* ours (see above), and mended */
        continue;
      }
      k->on = k->sock2;
      if (r == -EAGAIN) return LX_WAIT_WRITE;
      if (r == DX_WANT_READ) return LX_WAIT_READ;     /* TLS must read first */
      f->side = 1;
      return (int)r;
    }
    if (src->eof) return end_stream(k, f, dst);
    if (f->splice == 2) {                   /* src -> pipe */
      if (f->pipe[0] < 0) {
        r = dx_pipe_open(f->pipe, LX_PIPE_SIZE);
        if (r < 0) {
          f->splice = 0;                    /* no pipe: copy instead */
          continue;
        }
        f->cap = r;
      }
      r = dx_splice_in(src->s.w.fd, f->pipe[1], left < (size_t)f->cap ? left : (size_t)f->cap);
      if (r > 0) {
        f->inpipe = (size_t)r;
        if (r < LX_SMALL) f->splice = 1;   /* small again: the buffer next */
        continue;
      }
      if (r == 0) {
        src->eof = 1;
        continue;
      }
      if (r == -EAGAIN) return LX_WAIT_READ;
      if (!unsupported(r)) return (int)r;
      f->splice = 0;                        /* then receive as usual */
    }
    r = lx_client_fill(k->S, src, trust);          /* src -> its buffer */
    if (r > 0) {
      if (r >= LX_BULK && f->splice == 1) f->splice = 2;
      continue;
    }
    if (r == 0) continue;                   /* eof set */
    if (r == -EAGAIN) return LX_WAIT_READ;
    if (r == DX_WANT_WRITE) return LX_WAIT_WRITE;     /* TLS must write first */
    return (int)r;
  }
}

/* Before a wait or a failure: give the shared scratch back; and while
 * dst's stream holds a record of src's bytes (TLS), dst is cut (a stream has
 * no message to cut otherwise): only this task, forwarding the same bytes
 * again, may write to it. Marked now, so that a cancel finds it marked. */
static void stall_forward(lua_State *L, lx_call *k) {
  dx_buf_settle(&((lx_client *)k->sock)->rb);
  lx_cut_mark(L, k->S, (lx_client *)k->sock2, 0);
}

static int push_forward(lua_State *L, lx_call *k) {
  lx_fwd *f = (lx_fwd *)lua_touserdata(L, 4);
  dx_buf_settle(&((lx_client *)k->sock)->rb);
  lua_pushinteger(L, f->count);
  return 1;
}

/* nil, msg, code, count: the message names the socket that failed. */
static int fail_forward(lua_State *L, lx_call *k, int code) {
  lx_fwd *f = (lx_fwd *)lua_touserdata(L, 4);
  lx_client *src = (lx_client *)k->sock;
  if (f->inpipe > 0 && src->s.w.fd >= 0) unpipe(f, src);
  dx_buf_settle(&src->rb);
  if (f->cutoff) lx_cut_fail(L, (lx_client *)k->sock2, "forward");
  else lx_sockfail(L, f->side ? k->sock2 : k->sock, "forward", code);
  lua_pushinteger(L, f->count);
  return 4;
}

static const lx_op op_forward = {
  .name = "forward", .dir = LX_READERS, .sockarg = 1, .try = try_forward,
  .push = push_forward, .fail = fail_forward, .stall = stall_forward, .sockarg2 = 2,
  .dir2 = LX_WRITERS,
};

static int c_forward(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *src = (lx_client *)lx_checksock(L, S, &lx_client_class);
  lx_client *dst = (lx_client *)lx_tosock(L, S, 2, &lx_client_class);
  lua_Integer max = LUA_MAXINTEGER;
  lx_fwd *f;
  if (dst == NULL) luaL_typeerror(L, 2, lx_client_class.name);
  if (!lua_isnoneornil(L, 3)) {
    max = luaL_checkinteger(L, 3);
    luaL_argcheck(L, max >= 0, 3, "maximum must be non-negative");
  }
  if (src->s.w.fd < 0 || dst->s.w.fd < 0) {     /* nil, msg, "EBADF", 0 */
    lx_closed(L, src->s.w.fd < 0 ? &src->s : &dst->s, "forward");
    lua_pushinteger(L, 0);
    return 4;
  }
  lua_settop(L, 2);
  lua_pushinteger(L, max);                                  /* 3 */
  f = (lx_fwd *)lua_newuserdatauv(L, sizeof(lx_fwd), 0);    /* 4 */
  f->pipe[0] = f->pipe[1] = -1;
  f->cap = 0;
  f->inpipe = 0;
  f->count = 0;
  f->max = max;
  f->side = f->cutoff = 0;
  f->splice = dx_splice_mode();
  if (dx_stream_layered(&src->st) || dx_stream_layered(&dst->st)) f->splice = 0;
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setmetatable(L, 4);
  lx_toclose(L, 4);          /* a cancelled task's pipe closes at once */
  /* a stream: timeout 0 moves what is ready; any other limits idleness */
  return lx_drive(L, &op_forward, src->s.timeout == 0 ? 0 : -1);
}

/* Stack on entry: module, state. Adds forward to the client's methods. */
void lx_open_forward(lua_State *L) {
  lua_getfield(L, -2, "client_methods");
  lua_pushvalue(L, -2);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, fwd_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, fwd_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, fwd_gc);
  lua_setfield(L, -2, "__cancel");     /* LX_CANCEL_BY_STACK */
  lua_pushcclosure(L, c_forward, 2);
  lua_setfield(L, -2, "forward");
  lua_pop(L, 1);
}
