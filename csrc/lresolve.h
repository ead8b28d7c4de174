/*
 * lresolve.h - addresses from hosts (lresolve.c): duplex.resolve, and name
 * lookup as a phase of the driver for the operations that take hosts.
 */
#ifndef LRESOLVE_H
#define LRESOLVE_H

#include "ldrive.h"

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

/* Check a host and its port as lx_resolve reads them, so that it cannot
 * raise later: a string without zero bytes, "unix:" and a path (no port),
 * or a port 0..65535. */
void lx_check_host(lua_State *L, int hostarg, int portarg);
/* Parse host (+ port) into addresses; "unix:..." gives one; a lookup's
 * answer (lx_drive_hosts put it there) gives its addresses. Count or code. */
int lx_resolve(lua_State *L, int hostarg, int portarg, int passive,
               dx_addr *out, int max);
/* The addresses of a lookup's answer at idx, with this port: a count, or
 * -1 if idx is no answer. */
int lx_answer_addrs(lua_State *L, int idx, int port, dx_addr *out, int max);
/* Wake the tasks whose lookups finished. */
void lx_resolve_collect(lx_state *S);
void lx_open_resolve(lua_State *L);

#endif
