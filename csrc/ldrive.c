/*
 * ldrive.c - the operation driver: the one place where an operation takes
 * its turn, waits and ends (see lduplex.h). Operations only decide (try)
 * and report (push); every rule about waiting is written once, here:
 *
 * - The turn: a task operates when nobody is ahead of it in the socket's
 *   FIFO for that direction, else it queues. An operation on two sockets
 *   (a forward) needs both turns and, once it waits, stands in both FIFOs,
 *   always taking the first socket's turn before the second's. Code that is not a task (a
 *   coroutine a task created, an onerror handler) may operate only when
 *   nobody is queued, because it cannot queue.
 * - A wait follows only what try said, and try says "wait" only after the
 *   kernel said EAGAIN: a short read or write proves nothing. The task
 *   waits for the direction try asked for (a TLS read may have to write)
 *   while it keeps its place in its own direction's FIFO.
 * - One deadline per call, fixed when the call starts; and, with an
 *   idle timeout, a second one that every byte moved pushes back.
 * - The push runs after the driver has left the FIFO and the timer: pushing
 *   a string may run the garbage collector and with it any finalizer, which
 *   may use this socket or another one.
 * - A call that takes host names (lx_drive_hosts, lresolve.c) first looks
 *   them up as an operation of its own, which waits as a timer does and
 *   whose push starts the call's operation under the same deadline: this
 *   file's yield is the only place where a task is suspended.
 *
 * Stack of a call: 1..base the operation's arguments; once the call has
 * yielded, the driver's slots follow: base+1 the op (light userdata) and,
 * unless the call has no deadline and no progress to keep (most reads and
 * writes: one push per wait), base+2 the deadline, base+3 the idle
 * deadline, base+4 and base+5 the op's progress k[0], k[1]. A call that
 * never waits pushes nothing.
 */
#include "dx_prefix.h"
#include "ldrive.h"
#include "lxaux.h"
#include "dx_time.h"

#include <errno.h>
#include <math.h>

#define NSLOTS 5

int lx_push_self(lua_State *L, lx_call *c) {
  (void)c;
  lua_pushvalue(L, 1);
  return 1;
}

double lx_deadline(double timeout) {
  if (timeout < 0 || timeout == HUGE_VAL) return -1;
  if (timeout == 0) return 0;
  return dx_now() + timeout;
}

lua_Integer lx_who(lua_State *L, const lx_state *S) {
  (void)L;
  return S->running ? lx_task_id(S, S->slot) : -1;
}

int lx_cannot_wait(lua_State *L) {
#if LUA_VERSION_NUM == 501 && !defined(LX_LUAJIT)
  if (lx_state_of(L)->running == L)
    return luaL_error(L, "duplex: a task cannot wait here: Lua 5.1 cannot yield "
                         "across pcall, a metamethod or a for-in iterator (LuaJIT "
                         "and Lua 5.2 on can): wait outside them, and take failures "
                         "from the nil, msg, code results instead of pcall");
#endif
  return luaL_error(L, "duplex: cannot wait here: inside duplex.run, only a "
                       "task's own coroutine can wait (not a coroutine it "
                       "created, an onerror or <close> handler run for an "
                       "ended task, nor a C function such as table.sort)");
}

static int drive_k(lua_State *L, int status, lua_KContext ctx);

#define PASS_CTX ((lua_KContext)-1)     /* a turn given up, not a wait */

#ifdef LX_NO_YIELDK
/* Without C continuations (LuaJIT and Lua 5.1, which cannot resume a C
 * function; -DLX_NO_YIELDK builds it anywhere): a wait yields the call's
 * whole stack, after a mark and before its ctx. The task's next resume
 * gives those values back as this C call's results (lsched.c), and the
 * Lua wrapper that lx_open_resume puts around every function that may
 * wait passes them to continue, which goes on as drive_k would. */
static char resume_mark;

static int suspend_call(lua_State *L, lua_KContext ctx) {
  lua_pushinteger(L, (lua_Integer)ctx);
  lua_pushlightuserdata(L, &resume_mark);
  lua_insert(L, 1);
  return lua_yield(L, lua_gettop(L));
}

/* continue(args..., slots..., ctx): the call's stack as it yielded. */
static int k_continue(lua_State *L) {
  lua_KContext ctx = (lua_KContext)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (ctx != PASS_CTX) return drive_k(L, LUA_YIELD, ctx);
  lua_settop(L, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* Every function that may wait, wrapped: a result that starts with the
 * mark is a wait's stack, handed to continue until a real result comes.
 * Each wrapper calls its function by the function's own name, which is
 * then what an argument error names; but such an error is placed at
 * "duplex:1:", and a method's arguments count self (c:read(x): #2). */
static const char resume_chunk[] =
  "local core, mark, continue = ...\n"
  "local function finish(first, ...)\n"
  "  if first ~= mark then return first, ... end\n"
  "  return finish(continue(...))\n"
  "end\n"
  "local load = loadstring or load\n"
  "local function wrap(t, k)\n"
  "  local src = 'local finish, %s = ...; return function(...) return finish(%s(...)) end'\n"
  "  t[k] = load(src:format(k, k), '=duplex')(finish, t[k])\n"
  "end\n"
  "local waits = {\n"
  "  [core] = { 'connect', 'listen', 'udp', 'resolve', 'sleep', 'suspend', 'poll',\n"
  "                'socketline', 'proxy_wait' },\n"
  "  [core.client_methods] = { 'read', 'readuntil', 'readsome', 'write', 'forward',\n"
  "                            'shutdown', 'handshake', 'starttls' },\n"
  "  [core.server_methods] = { 'accept' },\n"
  "  [core.udp_methods] = { 'sendto', 'send', 'recvfrom', 'recv', 'connect', 'setoption' },\n"
  "}\n"
  "for t, names in pairs(waits) do\n"
  "  for _, k in ipairs(names) do if t[k] then wrap(t, k) end end\n"
  "end\n";

void lx_open_resume(lua_State *L) {
  if (luaL_loadbuffer(L, resume_chunk, sizeof resume_chunk - 1, "=duplex.resume") != 0)
    lua_error(L);
  lua_pushvalue(L, -3);                     /* module */
  lua_pushlightuserdata(L, &resume_mark);
  lua_pushvalue(L, -4);                     /* state */
  lua_pushcclosure(L, k_continue, 1);
  lua_call(L, 3, 0);
}
#else
static int pass_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L, (void)status, (void)ctx;
  lua_pushboolean(L, 1);
  return 1;
}

void lx_open_resume(lua_State *L) { (void)L; }
#endif

void lx_hold(lua_State *L, int idx) {
  lx_state *S = lx_state_of(L);
  if (S->running != L) return;
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_HELD);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, S->slot);
  lua_pop(L, 1);
  S->detached[S->slot] |= LX_HELD;
}

int lx_can_pass(lua_State *L, const lx_state *S) {
  return S->running == L && lua_isyieldable(L);
}

int lx_pass(lua_State *L, lx_state *S) {
  dx_loop_ready(&S->loop, S->slot);       /* back of the queue */
  S->waited = 1;
#ifdef LX_NO_YIELDK
  return suspend_call(L, PASS_CTX);
#else
  return lua_yieldk(L, 0, 0, pass_k);
#endif
}

/* Before a yield: the call's state goes onto the stack (c->saved: how
 * many of the driver's slots are there), the first time in full unless
 * the op alone says it all, later only the progress. */
static void save(lua_State *L, const lx_op *op, lx_call *c) {
  int plain = c->deadline < 0 && c->idle_at < 0 && c->k[0] == 0 && c->k[1] == 0;
  if (c->saved == 0) {
    lua_pushlightuserdata(L, (void *)op);
    c->saved = 1;
    if (plain) return;
  }
  if (c->saved == 1) {
    if (plain) return;
    lua_pushnumber(L, c->deadline);
    lua_pushnumber(L, c->idle_at);
    lua_pushinteger(L, c->k[0]);
    lua_pushinteger(L, c->k[1]);
    c->saved = NSLOTS;
    return;
  }
  lua_pushnumber(L, c->idle_at);
  lua_replace(L, c->base + 3);
  lua_pushinteger(L, c->k[0]);
  lua_replace(L, c->base + 4);
  lua_pushinteger(L, c->k[1]);
  lua_replace(L, c->base + 5);
}

/* Yield for a wait; ctx = base << 2 | (the slots are all there) << 1 |
 * (a suspension, not a forced turn). */
static int yield(lua_State *L, const lx_op *op, lx_call *c, int suspended) {
  lua_KContext ctx;
  save(L, op, c);
  ctx = (lua_KContext)c->base << 2 | (c->saved == NSLOTS) << 1 | suspended;
  c->S->waited = 1;
#ifdef LX_NO_YIELDK
  return suspend_call(L, ctx);
#else
  return lua_yieldk(L, 0, ctx, drive_k);
#endif
}

/* The earlier of two deadlines (< 0: none). */
static double earlier(double a, double b) {
  if (a < 0) return b;
  if (b < 0) return a;
  return a < b ? a : b;
}

/* The call ended: leave FIFO and timer, then push its results. */
static int finish(lua_State *L, const lx_op *op, lx_call *c, int code) {
  lx_state *S = c->S;
  if (code != 0 && op->stall) op->stall(L, c);
  if (S->running == L) dx_loop_leave(&S->loop, S->slot);
  if (code == 0) return op->push(L, c);
  if (op->fail) return op->fail(L, c, code);
  return lx_sockfail(L, c->sock, op->name, code);
}

/* The loop of every call: turn, try, wait, until done or failed. */
static int drive(lua_State *L, const lx_op *op, lx_call *c) {
  lx_state *S = c->S;
  int r = LX_WAIT_READ;
  for (;;) {
    int turn = 1, dir;
    double until;
    lx_sock *on = c->sock;
    if (c->sock && c->sock->w.fd < 0 && !op->opens)
      return finish(L, op, c, -ECANCELED);    /* closed while we waited */
    if (c->sock2 && c->sock2->w.fd < 0) return finish(L, op, c, -ECANCELED);
    if (c->sock && op->dir >= 0) {
      if (S->running == L) turn = dx_loop_myturn(&c->sock->w, op->dir, S->slot);
      else if (dx_loop_busy(&c->sock->w, op->dir)) return lx_cannot_wait(L);
    }
    if (c->sock2) {
      if (S->running != L) {
        if (dx_loop_busy(&c->sock2->w, op->dir2)) return lx_cannot_wait(L);
      } else if (turn && !dx_loop_myturn(&c->sock2->w, op->dir2, S->slot)) {
        turn = 0;
        on = c->sock2;                    /* wait for the second turn */
      }
    }
    if (turn) {
      c->wake_at = -1;
      c->on = NULL;
      r = op->try(L, c);
      if (r <= 0) return finish(L, op, c, r);
      dir = r == LX_WAIT_WRITE ? 1 : 0;
      if (c->on) on = c->on;
    } else {
      dir = on == c->sock ? op->dir : op->dir2;    /* wait for our turn */
    }
    if (c->deadline == 0) return finish(L, op, c, -EAGAIN);
    if (c->idle_at >= 0 && (c->moved || c->idle_at == 0)) {
      c->idle_at = dx_now() + c->idle;   /* bytes moved: idle time restarts */
      c->moved = 0;
    }
    until = earlier(c->deadline, c->idle_at);
    if (until > 0 && dx_now() >= until) return finish(L, op, c, -ETIMEDOUT);
    if (op->stall) op->stall(L, c);
    if (turn) until = earlier(until, c->wake_at);
    if (S->running == L && lua_isyieldable(L) && c->sock2) {
      int rc;
      dx_loop_join(&S->loop, S->slot, &c->sock->w, op->dir);   /* in this order */
      dx_loop_join(&S->loop, S->slot, &c->sock2->w, op->dir2);
      rc = dx_loop_suspend_on(&S->loop, S->slot, r == LX_WAIT_TIMER ? NULL : &on->w, dir, until);
      if (rc < 0) return finish(L, op, c, rc);
      return yield(L, op, c, 1);
    }
    if (S->running == L && lua_isyieldable(L)) {
      dx_watch *w = r == LX_WAIT_TIMER || c->sock == NULL ? NULL : &c->sock->w;
      /* queued in the op's own FIFO, waiting for what try asked for */
      int rc = dx_loop_suspend_for(&S->loop, S->slot, w, op->dir < 0 ? dir : op->dir, dir, until);
      if (rc < 0) return finish(L, op, c, rc);
      return yield(L, op, c, 1);
    }
    if (S->running == L) dx_loop_leave(&S->loop, S->slot);   /* no place kept */
    if (S->running != NULL || S->in_run) return lx_cannot_wait(L);
    if (c->sock == NULL || r == LX_WAIT_TIMER) {
      dx_sleep(until < 0 ? HUGE_VAL : until - dx_now());
      c->fired = 1;
    } else {
      int rc = dx_wait_fd(on->w.fd, dir == 1 ? DX_WRITE : DX_READ,
                          dx_ms_until(until));
      if (rc < 0) return finish(L, op, c, rc);
    }
  }
}

/* The socket the op works on, from its argument (NULL: none). */
static lx_sock *op_sock(lua_State *L, const lx_op *op) {
  return op->sockarg ? (lx_sock *)lua_touserdata(L, op->sockarg) : NULL;
}

static inline void init_call(lua_State *L, lx_call *c, lx_state *S, const lx_op *op,
                             lx_sock *sock, int base, double deadline) {
  c->S = S;
  c->op = op;
  c->sock = sock;
  c->sock2 = op->sockarg2 ? (lx_sock *)lua_touserdata(L, op->sockarg2) : NULL;
  c->on = NULL;
  c->base = base;
  c->deadline = deadline;
  c->idle = sock ? sock->idle : -1;
  if (op->sockarg2 && sock && sock->timeout > 0 && sock->timeout != HUGE_VAL &&
      (c->idle <= 0 || sock->timeout < c->idle))
    c->idle = sock->timeout;                 /* a stream: no progress for that long */
  c->idle_at = c->idle > 0 ? 0 : -1;         /* 0: from the first wait */
  c->wake_at = -1;
  c->moved = 0;
  c->k[0] = c->k[1] = 0;
  c->fired = 0;
  c->saved = 0;
  c->vlen = c->used = 0;
  c->eof = c->ended = c->broke = 0;
}

/* After a yield (ctx: see yield). */
static int drive_k(lua_State *L, int status, lua_KContext ctx) {
  lx_state *S = lx_state_of(L);
  int base = (int)(ctx >> 2), full = (int)(ctx >> 1 & 1);
  const lx_op *op;
  lx_call c;
  (void)status;
  if (S->running != L)
    return luaL_error(L, "duplex: a task was resumed from outside the scheduler");
  lua_settop(L, base + (full ? NSLOTS : 1));   /* drop anything a stray resume passed */
  op = (const lx_op *)lua_touserdata(L, base + 1);
  init_call(L, &c, S, op, op_sock(L, op), base, full ? lua_tonumber(L, base + 2) : -1);
  if (full) {
    c.idle_at = lua_tonumber(L, base + 3);
    c.k[0] = lua_tointeger(L, base + 4);
    c.k[1] = lua_tointeger(L, base + 5);
  } else {
    c.idle_at = -1;       /* began without one: an idletimeout set since waits for the next call */
  }
  c.saved = full ? NSLOTS : 1;
  c.fired = (ctx & 1) && dx_loop_fired(&S->loop, S->slot);
  return drive(L, op, &c);
}

int lx_drive(lua_State *L, const lx_op *op, double deadline) {
  return lx_drive_on(L, lx_state_of(L), op_sock(L, op), op, deadline);
}

/* A call's deadline with its socket's (setoption "deadline"). Taken when
 * the call starts: a deadline set meanwhile is for the next call, as a
 * timeout is. */
static inline double with_deadline_of(const lx_sock *s, double d) {
  return s && s->deadline >= 0 ? lx_deadline_by(d, s->deadline) : d;
}

int lx_drive_on(lua_State *L, lx_state *S, lx_sock *sock, const lx_op *op, double deadline) {
  lx_call c;
  init_call(L, &c, S, op, sock, lua_gettop(L), deadline);
  c.deadline = with_deadline_of(c.sock2, with_deadline_of(sock, c.deadline));
  if (sock && !op->opens && sock->w.fd < 0)      /* closed before the call */
    return finish(L, op, &c, DX_ECLOSED);
  /* A task that always finds its data ready yields now and then, so that
   * it cannot starve the others. */
  if (S->running == L && --S->budget < 0 && lua_isyieldable(L)) {
    dx_loop_ready(&S->loop, S->slot);
    return yield(L, op, &c, 0);
  }
  return drive(L, op, &c);
}
