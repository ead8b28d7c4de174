/*
 * lduplex.h - what the binding files share: the module state (upvalue 1 of
 * every C function), the common head of server and client handles, and the
 * one place where an operation waits (lx_wait): it yields to the scheduler
 * inside a task and polls the descriptor outside one. The binding never
 * makes socket syscalls itself; the core (dx_*) does.
 */
#ifndef LDUPLEX_H
#define LDUPLEX_H

#include "dx_prefix.h"
#include "dx_buf.h"
#include "dx_loop.h"
#include "dx_net.h"

#include "lua.h"
#include "lauxlib.h"

#define LX_SERVER "duplex.server"
#define LX_CLIENT "duplex.client"
#define LX_SCRATCH 65536      /* receive scratch lent to empty buffers */
#define LX_BUDGET 64          /* operations a task may complete per turn */

typedef struct lx_state {
  dx_loop loop;
  int loop_ok;                /* loop initialised (backend created) */
  lua_State *running;         /* the task being resumed, or NULL */
  int slot;                   /* its slot */
  int budget;                 /* operations left before a forced yield */
  int waited;                 /* the last yield was ours, not a bare one */
  const void *client_mt, *server_mt;   /* metatable identities, for checks */
  int npool;                  /* idle coroutines in uservalue 3 */
  char scratch[LX_SCRATCH];
} lx_state;

/* Common head of servers and clients. */
typedef struct lx_sock {
  dx_watch w;                 /* w.fd < 0: closed */
  double timeout;             /* seconds; < 0 waits forever */
} lx_sock;

#define lx_state_of(L) ((lx_state *)lua_touserdata(L, lua_upvalueindex(1)))

/* Deadline for an operation starting now: -1 none, 0 never wait. */
double lx_deadline(double timeout);
/* Wait for `dir` (DX_READ or DX_WRITE) on s until `deadline`. Inside a
 * task this yields and continues in k(ctx) (it does not return); outside
 * it polls and returns 0 for "try again", or a negative code (-EAGAIN,
 * -ETIMEDOUT, ...). Raises where a wait is impossible (a coroutine of a
 * task, a non-yieldable C call). */
int lx_wait(lua_State *L, lx_state *S, lx_sock *s, int dir, double deadline,
            lua_KContext ctx, lua_KFunction k);
/* Called once an operation that may have waited is over: leave the FIFO
 * and the timer so the next task in line gets its turn. */
static inline void lx_done(lx_state *S, lua_State *L) {
  if (S->running == L) {
    const dx_task *t = &S->loop.tasks[S->slot];
    if (t->watch != NULL || t->heap >= 0) dx_loop_leave(&S->loop, S->slot);
  }
}
/* Start of an operation: has this task used up its turn? Then the caller
 * saves its state on the stack and lets the others run with lx_yield,
 * which continues in k(ctx). This keeps a task that always finds data
 * ready from starving the rest. */
int lx_spent(lua_State *L, lx_state *S);
int lx_yield(lua_State *L, lx_state *S, lua_KContext ctx, lua_KFunction k);
/* Argument 1 as a userdata of the metatable `mt`, else raise as
 * luaL_checkudata does (a pointer comparison, no registry lookup). */
void *lx_checkself(lua_State *L, const void *mt, const char *tname);

/* May this task use direction `d` (0 read, 1 write) now, or must it queue
 * behind others? */
int lx_myturn(lua_State *L, lx_state *S, lx_sock *s, int d);

/* nil, "<op> <label>: <strerror>", code  (3 results) */
int lx_fail(lua_State *L, const char *op, const char *label, int code);
/* Close the descriptor, waking every task that waits on it. */
void lx_sock_close(lx_state *S, lx_sock *s);
/* Push host, port, family (3 results). */
int lx_push_addr(lua_State *L, const dx_addr *a);
double lx_opt_timeout(lua_State *L, int arg);
/* Raise "unknown option" for keys of table `arg` not in `known`. */
void lx_check_opts(lua_State *L, int arg, const char *const known[]);
int lx_opt_bool(lua_State *L, int arg, const char *key, int dflt);
/* Parse host (+ port) into addresses; "unix:..." gives one. Count or code. */
int lx_resolve(lua_State *L, int hostarg, int portarg, int passive,
               dx_addr *out, int max);

/* setoption/getoption for socket-level names (self at 1, name at 2, value
 * at 3). Raises for names not in `allowed`; -1 for an allowed name that is
 * not a socket option (the caller's own, like maxline). */
int lx_sockopt(lua_State *L, lx_sock *s, int set, const char *const allowed[]);

/* With module and state on the stack: a metatable `name` (pushed) whose
 * __index is a table of `methods`, also stored as module[field]; every
 * function gets the state as upvalue 1. Returns the metatable's identity. */
const void *lx_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                        const luaL_Reg *metamethods, const char *field);

void lx_open_server(lua_State *L);
void lx_open_client(lua_State *L);
void lx_open_sched(lua_State *L);
/* From lclient.c: wrap an fd (connected) into a new client on the stack. */
struct lx_client;
struct lx_client *lx_client_new(lua_State *L);
void lx_client_set(struct lx_client *c, int fd, const dx_addr *peer);

#endif
