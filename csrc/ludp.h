/*
 * ludp.h - duplex.udp (ludp.c): the datagram socket object, which the
 * sending and receiving of datagrams (ldgram.c) work on.
 */
#ifndef LUDP_H
#define LUDP_H

#include "lsock.h"

typedef struct lx_udp {
  lx_sock s;
  int family;
  int dual;                   /* AF_INET6 that reaches IPv4 too (v4-mapped) */
  int bound, connected;
  dx_addr local;              /* where it is bound (for messages, unlink) */
  dx_addr peer;               /* the default peer once connected (messages) */
} lx_udp;

extern const lx_class lx_udp_class;

/* The address of host (arg h) and port (arg h+1) for socket u: the first
 * of its family; for a dual-stack socket the first of either, an IPv4 one
 * in the v4-mapped form. 0 or a code. */
int lx_udp_dest(lua_State *L, lx_udp *u, int h, dx_addr *out);

void lx_open_udp(lua_State *L);

#endif
