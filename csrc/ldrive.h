/*
 * ldrive.h - the operation driver (ldrive.c): the one place where an
 * operation takes its turn, waits and ends, and the one place in the
 * binding that suspends a task (lua_yieldk).
 */
#ifndef LDRIVE_H
#define LDRIVE_H

#include "lsock.h"

/* An operation that may wait supplies a try that only decides and a push
 * of its results; the driver owns the rest: the closed check, the turn in
 * the socket's FIFO, the deadline, the wait (a yield inside a task, poll
 * outside), leaving the FIFO, and only then the push. Per-call state lives
 * in C while the call runs and goes onto the Lua stack when it yields, so
 * that the continuation finds it again. */

/* What try answers: done, wait (for the socket's direction, or for a
 * timer or an explicit wake), or a negative error code. */
enum { LX_DONE = 0, LX_WAIT_READ = 1, LX_WAIT_WRITE = 2, LX_WAIT_TIMER = 3 };

typedef struct lx_call {
  lx_state *S;
  const struct lx_op *op;     /* the operation */
  lx_sock *sock;              /* what the operation works on; NULL: timers */
  lx_sock *sock2;             /* its second socket (a forward's destination) */
  lx_sock *on;                /* try: wait on this one's readiness (NULL: sock) */
  int base;                   /* last argument; the driver's slots follow */
  double deadline;            /* -1 none, 0 never wait, else monotonic time */
  double idle;                /* seconds without progress allowed; <= 0 none */
  double idle_at;             /* idle deadline: -1 none, 0 not started yet */
  int moved;                  /* try moved bytes: the idle deadline moves */
  double wake_at;             /* try: also wake then (-1 none), no timeout */
  lua_Integer k[2];           /* the operation's progress, kept across waits */
  int fired;                  /* the last wait ended by the deadline */
  int saved;                  /* how many of the driver's slots are on the stack */
  size_t vlen, used;          /* what try found, for push: */
  int eof, ended;             /* ...the stream had ended; a nil result */
  int broke;                  /* the stream itself failed (a receive's error) */
} lx_call;

/* The FIFO of its socket an operation queues in (always given). */
enum { LX_NOQUEUE = -1, LX_READERS = 0, LX_WRITERS = 1 };

/* An operation, written with designated initializers; what is left out
 * is 0 or NULL. */
typedef struct lx_op {
  const char *name;           /* for messages: "read", "accept" */
  int dir;                    /* LX_READERS, LX_WRITERS or LX_NOQUEUE */
  int sockarg;                /* stack index of the socket; 0: none */
  int opens;                  /* the operation opens its socket (connect) */
  int (*try)(lua_State *L, lx_call *c);
  int (*push)(lua_State *L, lx_call *c);            /* after LX_DONE */
  /* optional: */
  int (*fail)(lua_State *L, lx_call *c, int code);  /* default nil, msg, code */
  void (*stall)(lua_State *L, lx_call *c);          /* before a wait or a failure */
  /* optional, for an operation on two sockets: a stream from one to the
   * other, which lasts as long as the stream does; its socket's timeout
   * then limits each time without progress, not the whole call. */
  int sockarg2;               /* the second socket, whose FIFO dir2 it also */
  int dir2;                   /* holds (a forward's destination); 0: none */
} lx_op;

/* Run op on the arguments 1..top with this deadline (lx_deadline); returns
 * (or, inside a task, yields and later returns) op's results. */
int lx_drive(lua_State *L, const lx_op *op, double deadline);
/* The same, for a caller that has the state and op's socket (the one at
 * op->sockarg) at hand: the reads and writes. */
int lx_drive_on(lua_State *L, lx_state *S, lx_sock *sock, const lx_op *op, double deadline);

/* A push for operations that return their socket (argument 1). */
int lx_push_self(lua_State *L, lx_call *c);
/* Deadline for an operation starting now: -1 none, 0 never wait. */
double lx_deadline(double timeout);
/* Can this call give up its turn (a task's own coroutine)? Then lx_pass
 * yields one turn (and the call returns `true`). */
int lx_can_pass(lua_State *L, const lx_state *S);
int lx_pass(lua_State *L, lx_state *S);
/* Where a C function cannot be resumed (LX_NO_YIELDK: LuaJIT, Lua 5.1),
 * wrap every function of the module that may wait (see ldrive.c); with
 * module and state on the stack. Nothing elsewhere. */
void lx_open_resume(lua_State *L);
/* What a waiting call holds that must end with its task (a lookup, the
 * attempts of a connect, a forward's pipe) is to-be-closed where a waiting
 * C call stays on the stack until it returns (5.4 with continuations).
 * Where it returns at its wait (LX_NO_YIELDK) or there is no lua_toclose
 * (before 5.4: LX_NO_TOCLOSE), the task holds it instead: lx_hold makes
 * the value at idx the running task's held value (one per task, replaced
 * by the next; nothing outside a task), and a cancel calls its
 * metatable's __cancel (lsched.c). core.hold(v) is the same for Lua. */
void lx_hold(lua_State *L, int idx);
#if LUA_VERSION_NUM >= 504 && !defined(LX_NO_YIELDK)
#define lx_toclose(L, idx) lua_toclose(L, idx)
#else
#define LX_NO_TOCLOSE
#define lx_toclose(L, idx) lx_hold(L, idx)
#endif
/* Who is calling, for ownership: the running task's id (also from a
 * coroutine it created), or -1 outside tasks. */
lua_Integer lx_who(lua_State *L, const lx_state *S);
/* The earlier of a call's deadline d (lx_deadline's: -1 none, 0 never
 * wait, which stays) and an absolute deadline at (< 0: none). */
static inline double lx_deadline_by(double d, double at) {
  if (at < 0 || d == 0) return d;
  return d < 0 || at < d ? at : d;
}
/* Raise: a wait is impossible here. */
int lx_cannot_wait(lua_State *L);

#endif
