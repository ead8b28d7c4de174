/*
 * lduplex.h - the module's state, which every binding file reaches as
 * upvalue 1 of its C functions, and the names of its uservalues. The
 * binding is in layers, each file with a header of its own for what
 * others use (make check-layers: a file calls only into files below it):
 *
 *   lxaux     arguments, options and results
 *   lsock     what every socket class shares (lx_sock, lx_class)
 *   ldrive    the operation driver: the one place that waits
 *   lresolve  addresses, and name lookup as a phase of the driver
 *   lclient   the client object (duplex.client), its options and end
 *   lread, lwrite, lforward    reading, writing, forwarding a client
 *   ltls      TLS: contexts and the client's TLS methods
 *   lconnect  duplex.connect and Happy Eyeballs
 *   lserver, ludp              duplex.listen and servers, duplex.udp
 *   lsched    the dispatcher under duplex.run: tasks
 *   lserve    what serve needs of tasks and clients
 *   lduplex   the module's entry
 *
 * The binding makes no syscall itself and reaches tasks only through
 * dx_loop's functions.
 */
#ifndef LDUPLEX_H
#define LDUPLEX_H

#include "dx_prefix.h"
#include "dx_buf.h"
#include "dx_loop.h"
#include "dx_net.h"
#include "dx_sig.h"

#include "lua.h"
#include "lauxlib.h"
#include "lcompat.h"

/* The version of duplex, written here only: the module's _VERSION is
 * "duplex " LX_VERSION, and make check-version (in make test) fails when
 * README.md, CHANGELOG.md or a release rockspec says another. */
#define LX_VERSION "0.1.0"

#define LX_SCRATCH 262144     /* receive scratch lent to empty buffers: as
                                 much as a loopback socket holds at once */
#define LX_DGRAM_MAX 65536    /* the default max of a datagram receive */
#define LX_BUDGET 64          /* operations a task may complete per turn */
#define LX_NCLASSES 3         /* socket classes: server, client, udp */

/* The state's uservalues. */
enum {
  LX_UV_TASKS = 1,            /* the coroutine of each task, by slot */
  LX_UV_DONE,                 /* done(id, ok, ...): a task ended */
  LX_UV_REPORT,               /* report(err, traceback): an error nothing else reports */
  LX_UV_SIGNAL,               /* signal(name): a watched signal arrived */
  LX_UV_GUARDS,               /* each guarded task's end function and guard (lsched.c) */
  LX_UV_HELD,                 /* what each task's wait holds, by slot (lx_hold) */
  LX_UV_ANSWER_MT,            /* the metatable of lookup answers (lresolve.c) */
  LX_UV_TLSCTX_MT,            /* the metatable of duplex.tlscontext (ltls.c) */
  LX_UV_TLS_DEFAULT,          /* the default client TLS context, made once */
  LX_UV_CLASS_MT,             /* the metatables of the socket classes, by index */
  LX_NUV = LX_UV_CLASS_MT + LX_NCLASSES - 1
};

typedef struct lx_state {
  dx_loop loop;
  int loop_ok;                /* loop initialised (backend created) */
  int in_run;                 /* inside duplex.run: only tasks may wait */
  lua_State *running;         /* the task being resumed, or NULL */
  int slot;                   /* its slot */
  int budget;                 /* operations left before a forced yield */
  int waited;                 /* the last yield was ours, not a bare one */
  const void *mt[LX_NCLASSES];  /* metatable identities, for type checks */
  unsigned char *detached;    /* per task slot: its kind (LX_TASK_*, lsched.h), */
#define LX_HELD 0x80          /* and whether it holds a value (lx_hold) */
  int ndetached;
  dx_sigs sigs;               /* signals the program asked for (onsignal) */
  struct dx_resolver *resolver;   /* the lookup pool, once a task needed it */
  int nlookups;               /* lookups of tasks in the pool */
  const void *answer_mt;      /* identity of lookup answers (lresolve.c) */
  const void *tlsctx_mt;      /* identity of duplex.tlscontext (ltls.c) */
  dx_scratch scratch;         /* lent to one empty receive buffer at a time */
  char scratch_mem[LX_SCRATCH];
  dx_addr dgram_from;         /* a datagram's sender, from try to push */
  char dgram[LX_DGRAM_MAX];   /* a datagram received, from try to push */
} lx_state;

#define lx_state_of(L) ((lx_state *)lua_touserdata(L, lua_upvalueindex(1)))

/* A task id: gen << 24 | slot, so an id outlives its slot harmlessly. */
#define LX_SLOT_BITS 24
#define lx_task_id(S, slot) ((lua_Integer)dx_loop_gen(&(S)->loop, slot) << LX_SLOT_BITS | (slot))

#endif
