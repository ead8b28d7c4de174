/*
 * lduplex.h - what the binding files share: the module state (upvalue 1 of
 * every C function), the common head of server and client handles, the
 * operation driver (ldrive.c: the one place that decides to wait) and the
 * helpers for arguments, options and results (lxaux.c). The binding makes
 * no syscall itself and reaches tasks only through dx_loop's functions.
 */
#ifndef LDUPLEX_H
#define LDUPLEX_H

#include "dx_prefix.h"
#include "dx_buf.h"
#include "dx_fd.h"
#include "dx_loop.h"
#include "dx_net.h"
#include "dx_sig.h"
#include "dx_stream.h"

#include <netinet/in.h>

#include "lua.h"
#include "lauxlib.h"

/* The version of duplex, written here only: the module's _VERSION is
 * "duplex " LX_VERSION, and make check-version (in make test) fails when
 * README.md, CHANGELOG.md or a release rockspec says another. */
#define LX_VERSION "0.1.0"

#define LX_SERVER "duplex.server"
#define LX_CLIENT "duplex.client"
#define LX_UDP "duplex.udp"
#define LX_SCRATCH 262144     /* receive scratch lent to empty buffers: as
                                 much as a loopback socket holds at once */
#define LX_DGRAM_MAX 65536    /* the default max of a datagram receive */
#define LX_BUDGET 64          /* operations a task may complete per turn */

enum { LX_CLS_SERVER, LX_CLS_CLIENT, LX_CLS_UDP, LX_NCLS };

typedef struct lx_state {
  dx_loop loop;
  int loop_ok;                /* loop initialised (backend created) */
  int in_run;                 /* inside duplex.run: only tasks may wait */
  lua_State *running;         /* the task being resumed, or NULL */
  int slot;                   /* its slot */
  int budget;                 /* operations left before a forced yield */
  int waited;                 /* the last yield was ours, not a bare one */
  const void *mt[LX_NCLS];    /* metatable identities, for type checks */
  unsigned char *detached;    /* per task slot: nobody wants its results */
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

/* Common head of servers and clients. */
typedef struct lx_sock {
  dx_watch w;                 /* w.fd < 0: closed */
  double timeout;             /* seconds for a whole call; < 0 none */
  double idle;                /* seconds without progress; < 0 none */
  double deadline;            /* every call ends by then (monotonic); < 0 none */
  int cls;                    /* LX_CLS_* */
} lx_sock;

#define lx_state_of(L) ((lx_state *)lua_touserdata(L, lua_upvalueindex(1)))

/* --- the operation driver (ldrive.c) ------------------------------------
 * An operation that may wait supplies a try that only decides and a push
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

typedef struct lx_op {
  const char *name;           /* for messages: "read", "accept" */
  int dir;                    /* FIFO it queues in: 0 readers, 1 writers */
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

/* An operation that takes host names (connect, listen, udp, sendto, ...)
 * runs through lx_drive_hosts: its lookup phase (lresolve.c) comes before
 * its first try, under the call's one deadline. A host that is a name (not
 * a number, "*" or "unix:") is looked up, in the pool inside a task (which
 * waits as for a timer) and by blocking elsewhere, and replaced on the
 * stack by the answer, which lx_resolve reads and lx_host_label names. Its
 * try thus meets numeric addresses only; a failed lookup ends the call with
 * nil, "<what> <host>: reason", code. An op whose hosts are all numeric
 * goes to lx_drive at once. */
typedef struct lx_hosts {
  const lx_op *op;
  int n;                      /* 1 or 2, looked up in this order */
  struct {
    int host;                 /* its stack index; no string: not looked up */
    const char *what;         /* its failures' prefix ("bind"); NULL: op's name */
    int iface;                /* an interface's address: a string naming an
                                 interface is no host, and a name the
                                 resolver does not know is ENODEV */
  } arg[2];
} lx_hosts;
int lx_drive_hosts(lua_State *L, const lx_hosts *h, double deadline);
/* The host at idx as the caller gave it, for messages, also once the
 * lookup phase has put its answer there. */
const char *lx_host_label(lua_State *L, int idx);

/* Deadline for an operation starting now: -1 none, 0 never wait. */
double lx_deadline(double timeout);
/* Yield one turn inside a task (then return `true`); false elsewhere. */
int lx_pass(lua_State *L, lx_state *S);
/* Who is calling, for ownership: the running task's id (also from a
 * coroutine it created), or -1 outside tasks. */
lua_Integer lx_who(lua_State *L, const lx_state *S);
/* A task id: gen << 24 | slot, so an id outlives its slot harmlessly. */
#define LX_SLOT_BITS 24
#define lx_task_id(S, slot) ((lua_Integer)dx_loop_gen(&(S)->loop, slot) << LX_SLOT_BITS | (slot))
/* Raise: a wait is impossible here. */
int lx_cannot_wait(lua_State *L);

/* --- sockets (lsock.c) --------------------------------------------------- */

/* Argument 1 as a socket of class cls (open or closed), else raise as
 * luaL_checkudata does (a pointer comparison, no registry lookup). */
lx_sock *lx_checksock(lua_State *L, const lx_state *S, int cls);
/* What a method of a closed socket returns: nil, "<op> <where>: socket
 * is closed", "EBADF" (3 results). A closed socket is the normal case in
 * concurrent code (another task closed it), not a programming error. */
int lx_closed(lua_State *L, lx_sock *s, const char *op);
/* The value at idx as a socket of class cls, or NULL (never raises). */
lx_sock *lx_tosock(lua_State *L, const lx_state *S, int idx, int cls);
/* Close the descriptor, waking every task that waits on it. */
void lx_sock_close(lx_state *S, lx_sock *s);
/* nil, "<op> <where>: <strerror>", code (3 results) for socket s. */
int lx_sockfail(lua_State *L, lx_sock *s, const char *op, int code);
/* setoption/getoption for socket-level names (self at 1, name at 2, value
 * at 3). Raises for names not in `allowed`; a closed socket's results
 * (lx_closed) for the others; -1 for an allowed name that is not a socket
 * option (the caller's own, like maxline). */
int lx_sockopt(lua_State *L, lx_sock *s, int set, const char *const allowed[]);
/* With module and state on the stack: a metatable `name` (pushed) whose
 * __index is a table of `methods` plus the shared ones (settimeout,
 * fileno, getsockname), also stored as module[field]; every function gets
 * the state as upvalue 1. Returns the metatable's identity. */
const void *lx_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                        const luaL_Reg *metamethods, const char *field, int cls);
/* Where a server listens, or a datagram socket is bound, for messages
 * (lserver.c, ludp.c). */
void lx_server_label(lx_sock *s, char *out, size_t n);
void lx_udp_label(lx_sock *s, char *out, size_t n);

/* --- arguments and results (lxaux.c) -------------------------------------- */

/* nil, "<op> <label>: <strerror>", code  (3 results) */
int lx_fail(lua_State *L, const char *op, const char *label, int code);
/* Push host, port, family (3 results). */
int lx_push_addr(lua_State *L, const dx_addr *a);
/* A timeout argument: nil -> -1 (none); else a number >= 0 (math.huge:
 * none). NaN, negatives and non-numbers raise. */
double lx_opt_timeout(lua_State *L, int arg);
/* The same check for a value at idx; NULL if good, else why not. */
const char *lx_timeout_error(lua_State *L, int idx, double *out);
/* A deadline at idx: a duplex.now() time (>= 0), or nil/false for none
 * (-1). NULL if good, else why not. */
const char *lx_deadline_error(lua_State *L, int idx, double *out);
/* The earlier of a call's deadline d (lx_deadline's: -1 none, 0 never
 * wait, which stays) and an absolute deadline at (< 0: none). */
double lx_deadline_by(double d, double at);
/* A string argument without embedded zero bytes ("what contains a zero
 * byte" otherwise). */
const char *lx_checkcstring(lua_State *L, int arg, const char *what);
/* Raise "unknown option" for keys of table `arg` not in `known`. */
void lx_check_opts(lua_State *L, int arg, const char *const known[]);
int lx_opt_bool(lua_State *L, int arg, const char *key, int dflt);
/* Check a host and its port as lx_resolve reads them, so that it cannot
 * raise later: a string without zero bytes, "unix:" and a path (no port),
 * or a port 0..65535. */
void lx_check_host(lua_State *L, int hostarg, int portarg);
/* Parse host (+ port) into addresses; "unix:..." gives one; a lookup's
 * answer (lx_drive_hosts put it there) gives its addresses. Count or code. */
int lx_resolve(lua_State *L, int hostarg, int portarg, int passive,
               dx_addr *out, int max);

void lx_open_server(lua_State *L);
void lx_open_client(lua_State *L);
void lx_open_read(lua_State *L);
void lx_open_write(lua_State *L);
void lx_open_forward(lua_State *L);
void lx_open_udp(lua_State *L);
void lx_open_resolve(lua_State *L);
void lx_open_tls(lua_State *L);
/* Wake the tasks whose lookups finished (lresolve.c). */
void lx_resolve_collect(lx_state *S);
/* The addresses of a lookup's answer at idx, with this port: a count, or
 * -1 if idx is no answer. */
int lx_answer_addrs(lua_State *L, int idx, int port, dx_addr *out, int max);
void lx_open_sched(lua_State *L);

/* --- clients (lclient.c) --------------------------------------------------- */

typedef struct lx_client {
  lx_sock s;
  dx_buf rb;
  size_t maxline;
  lua_Integer cut;            /* who cut a write short (lx_who), 0: nobody */
  unsigned char eof;          /* the peer ended its stream */
  unsigned char isunix;       /* a Unix domain socket */
  unsigned char adopted;      /* duplex.stream: restore oldflags on close */
  unsigned char keepfd;       /* ...and leave the descriptor open */
  unsigned char accepted;     /* came from accept: the server side */
  unsigned char unanswered;   /* read bytes since it last wrote: in the
                                 middle of a request, not between two */
  int oldflags;               /* duplex.stream: the flags close restores */
  int streamfd;               /* duplex.stream of a descriptor that is no
                                 socket: its number, for messages (also once
                                 closed); -1 otherwise */
  dx_stream st;               /* how its bytes move: recv/send, read/write, TLS */
  struct sockaddr_in6 peer;   /* an inet/inet6 peer for messages (kept after
                                 close); family 0 for Unix sockets */
} lx_client;

/* A new closed client on the stack. */
lx_client *lx_client_new(lua_State *L);
/* Close c (TLS: close_notify, never waiting) and free what it holds: what
 * close, __close and __gc do. Idempotent. */
void lx_client_release(lx_state *S, lx_client *c);
void lx_client_set(lx_client *c, int fd, const dx_addr *peer);
/* Receive once into c's buffer (TLS: a record): > 0 bytes, 0 end of
 * stream (c->eof set), -EAGAIN, DX_WANT_WRITE or -errno (lread.c).
 * trust: the caller waits if told EAGAIN, so the loop's word that the
 * socket is drained may stand in for the kernel's. */
long lx_client_fill(lx_state *S, lx_client *c, int trust);
/* The trust a receive of call k on c may take (lread.c). */
int lx_client_trusts(lua_State *L, const lx_call *k, const lx_client *c);
/* Where the client talks to, for messages. */
void lx_client_label(lx_client *c, char *out, size_t n);
/* The cut-write rule (lwrite.c), for write and forward: is c cut by
 * another caller than this one? Before a wait or a failure, mark c cut by
 * this caller if it sent part of a message, or if its stream holds a
 * send's bytes (a TLS record: only the same bytes may finish it). The failure of a call that
 * met another's cut: nil, "<op> <c>: an earlier write was cut off
 * mid-message", "EPIPE" (3 results). */
int lx_cut_by_other(lua_State *L, const lx_state *S, const lx_client *c);
void lx_cut_mark(lua_State *L, const lx_state *S, lx_client *c, size_t sent);
int lx_cut_fail(lua_State *L, lx_client *c, const char *op);

/* c's stream moved bytes (or finished its handshake): if it is layered,
 * that may be what a task waiting on its other direction needed (a TLS
 * record taken in), which readiness will not tell: those waiters retry. */
#define lx_client_moved(S, c) \
  do { if (dx_stream_layered(&(c)->st) && (S)->loop_ok) dx_loop_poke(&(S)->loop, &(c)->s.w); } while (0)

/* --- TLS (ltls.c; built without OpenSSL, duplex.tls is nil and these
 * raise where a `tls` option would be used) -------------------------------- */

struct dx_tls_ctx;
/* Check the `tls` option at idx (true, a table, a tlscontext) and replace
 * it with the context userdata; arg names it in errors. A server's must
 * be able to serve (a certificate and a key). */
void lx_tls_option(lua_State *L, int idx, int arg, int server);
/* The context of the option at idx, with a reference the caller keeps
 * until lx_tls_unref (NULL: nothing). */
struct dx_tls_ctx *lx_tls_ref(lua_State *L, int idx);
void lx_tls_unref(struct dx_tls_ctx *ctx);
/* Start TLS on c as the client of host (a name, or an address's text),
 * with the option at idx: SNI and the name checked are the context's
 * servername, else host. Raises "connect: <why>" when it cannot. */
void lx_tls_connect(lua_State *L, lx_client *c, int idx, const char *host);
/* Start TLS on c, accepted by a server of ctx (the handshake runs on
 * first use): 0, or a code. */
int lx_tls_accept(lx_client *c, struct dx_tls_ctx *ctx);

#endif
