/*
 * lsock.h - what every socket class shares: the common head of servers,
 * clients and datagram sockets (lx_sock), the class descriptor through
 * which shared code reaches what differs, type and closed checks,
 * closing, failure results, and socket options.
 */
#ifndef LSOCK_H
#define LSOCK_H

#include "lduplex.h"

typedef struct lx_sock lx_sock;

/* A socket class: what shared code (failures, closing, tasks that guard
 * a socket) needs to know of it, without calling into its file. */
typedef struct lx_class {
  const char *name;           /* its metatable's __name: "duplex.client" */
  const char *type[2];        /* what duplex.type says: open, closed */
  int index;                  /* its metatable: lx_state's mt[index] */
  int connection;             /* a connection: close may leave its epoll
                                 registration for the kernel to drop (no
                                 forked worker shares it) */
  /* where it is, for messages ("127.0.0.1:8080"), also once closed */
  void (*label)(lx_sock *s, char *out, size_t n);
  /* the reason its stream keeps for failure code (TLS's), or NULL */
  const char *(*reason)(lx_sock *s, int code);
  /* close it and free what it holds (close, __close, __gc): idempotent */
  void (*release)(lx_state *S, lx_sock *s);
} lx_class;

/* The common head. */
struct lx_sock {
  dx_watch w;                 /* w.fd < 0: closed */
  double timeout;             /* seconds for a whole call; < 0 none */
  double idle;                /* seconds without progress; < 0 none */
  double deadline;            /* every call ends by then (monotonic); < 0 none */
  const lx_class *cls;
};

/* A new closed socket of class cls, size bytes (its head first), on the
 * stack with its metatable. */
void *lx_newsock(lua_State *L, const lx_class *cls, size_t size);
/* Argument 1 as a socket of class cls (open or closed), else raise as
 * luaL_checkudata does (a pointer comparison, no registry lookup). */
lx_sock *lx_checksock(lua_State *L, const lx_state *S, const lx_class *cls);
/* The value at idx as a socket of class cls (NULL: of any class), or
 * NULL (never raises). */
lx_sock *lx_tosock(lua_State *L, const lx_state *S, int idx, const lx_class *cls);
/* What a method of a closed socket returns: nil, "<op> <where>: socket
 * is closed", "EBADF" (3 results). A closed socket is the normal case in
 * concurrent code (another task closed it), not a programming error. */
int lx_closed(lua_State *L, lx_sock *s, const char *op);
/* Close the descriptor, waking every task that waits on it. */
void lx_sock_close(lx_state *S, lx_sock *s);
/* nil, "<op> <where>: <reason>", code (3 results) for socket s. */
int lx_sockfail(lua_State *L, lx_sock *s, const char *op, int code);
/* setoption/getoption for the names every class may share (self at 1,
 * name at 2, value at 3). Raises for names not in `allowed`; a closed
 * socket's results (lx_closed) for the others; -1 for an allowed name
 * that is not shared (the class's own, like maxline). */
int lx_sockopt(lua_State *L, lx_sock *s, int set, const char *const allowed[]);
/* With module and state on the stack: the metatable of class cls (pushed)
 * whose __index is a table of `methods` plus the shared ones (settimeout,
 * fileno, getsockname), also stored as module[field]; every function gets
 * the state as upvalue 1. */
void lx_newclass(lua_State *L, const lx_class *cls, const luaL_Reg *methods,
                 const luaL_Reg *metamethods, const char *field);

#endif
