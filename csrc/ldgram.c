/*
 * ldgram.c - datagrams of duplex.udp: sendto/recvfrom, and send/recv once
 * connected, as operations of the driver: they wait (yield in a task)
 * only after EAGAIN, several tasks take turns per direction, and a
 * datagram too large for the caller's max is an error, never a silent
 * cut.
 *
 * A datagram is received into the state's buffer (or a buffer of the
 * call's own for a max above 64 KiB) and copied into a string by one
 * lua_pushlstring after the driver has left the FIFO.
 */
#include "dx_prefix.h"
#include "ldgram.h"
#include "ludp.h"
#include "lresolve.h"
#include "lxaux.h"
#include "dx_udp.h"

#include <errno.h>

#define check_udp(L) ((lx_udp *)lx_checksock(L, lx_state_of(L), &lx_udp_class))

/* --- sending ---------------------------------------------------------------- */

/* Send the datagram at 2 to `to` (NULL: the connected peer). */
static int send_to(lua_State *L, lx_call *k, const dx_addr *to) {
  size_t len;
  const char *p = lua_tolstring(L, 2, &len);
  long r = dx_udp_send(k->sock->w.fd, p, len, to);
  if (r == -EAGAIN) return LX_WAIT_WRITE;
  return r < 0 ? (int)r : LX_DONE;
}

/* Stack: 1 self, 2 data. */
static int try_send(lua_State *L, lx_call *k) { return send_to(L, k, NULL); }

/* Stack: 1 self, 2 data, 3 host (or its answer), 4 port, 5 the
 * destination (a dx_addr), found by the first try (k[0]: 1 once it is). */
static int try_sendto(lua_State *L, lx_call *k) {
  dx_addr *to = (dx_addr *)lua_touserdata(L, 5);
  if (k->k[0] == 0) {
    int rc = lx_udp_dest(L, (lx_udp *)k->sock, 3, to);
    if (rc < 0) return rc;
    k->k[0] = 1;
  }
  return send_to(L, k, to);
}

/* A failed sendto names where it sent, or the host as given when that
 * has no address for this socket (a closed socket's call looks now). */
static int fail_sendto(lua_State *L, lx_call *k, int code) {
  dx_addr *to = (dx_addr *)lua_touserdata(L, 5);
  char where[128];
  if (k->k[0] == 0 && lx_udp_dest(L, (lx_udp *)k->sock, 3, to) < 0)
    return lx_fail(L, "sendto", lx_host_label(L, 3), code);
  dx_addr_label(to, where, sizeof where);
  return lx_fail(L, "sendto", where, code);
}

static const lx_op op_sendto = {
  .name = "sendto", .dir = LX_WRITERS, .sockarg = 1, .try = try_sendto,
  .push = lx_push_self, .fail = fail_sendto,
};
static const lx_op op_send = {
  .name = "send", .dir = LX_WRITERS, .sockarg = 1, .try = try_send, .push = lx_push_self,
};
static const lx_hosts sendto_hosts = {.op = &op_sendto, .n = 1, .arg = {{.host = 3}}};

/* sendto(data, host, port) -> self, or nil, msg, code */
static int u_sendto(lua_State *L) {
  lx_udp *u = check_udp(L);
  luaL_checkstring(L, 2);
  lua_settop(L, 4);
  lx_check_host(L, 3, 4);
  lua_newuserdatauv(L, sizeof(dx_addr), 0);          /* 5 */
  return lx_drive_hosts(L, &sendto_hosts, lx_deadline(u->s.timeout));
}

/* send(data) -> self, or nil, msg, code (connected sockets) */
static int u_send(lua_State *L) {
  lx_udp *u = check_udp(L);
  luaL_checkstring(L, 2);
  lua_settop(L, 2);
  return lx_drive(L, &op_send, lx_deadline(u->s.timeout));
}

/* --- receiving ---------------------------------------------------------------- */

/* Stack: 1 self, 2 max, [3 a buffer for a max above LX_DGRAM_MAX]. */
static char *recv_buffer(lua_State *L, lx_state *S) {
  return lua_type(L, 3) == LUA_TUSERDATA ? (char *)lua_touserdata(L, 3) : S->dgram;
}

static int try_recv(lua_State *L, lx_call *k) {
  lx_state *S = k->S;
  long r = dx_udp_recv(k->sock->w.fd, recv_buffer(L, S), (size_t)lua_tointeger(L, 2),
                       &S->dgram_from);
  if (r == -EAGAIN) return LX_WAIT_READ;
  if (r < 0) return (int)r;
  k->vlen = (size_t)r;
  return LX_DONE;
}

/* A sender: host, port; a Unix one: path, nil; an unnamed one: "", nil. */
static int push_sender(lua_State *L, const dx_addr *from) {
  if (from->len == 0) {
    lua_pushliteral(L, "");
    lua_pushnil(L);
    return 2;
  }
  lx_push_addr(L, from);
  lua_pop(L, 1);                          /* host, port */
  return 2;
}

/* The datagram is copied first: a finalizer run meanwhile may receive
 * into the same buffer, and into dgram_from. */
static int push_recvfrom(lua_State *L, lx_call *k) {
  dx_addr from = k->S->dgram_from;
  lua_pushlstring(L, recv_buffer(L, k->S), k->vlen);
  return 1 + push_sender(L, &from);
}

/* A datagram too big for max is gone, but its sender is known: nil, msg,
 * "EMSGSIZE", host, port, so that a server can still answer it. */
static int fail_recvfrom(lua_State *L, lx_call *k, int code) {
  dx_addr from = k->S->dgram_from;
  int n = lx_sockfail(L, k->sock, "recvfrom", code);
  return code == -EMSGSIZE ? n + push_sender(L, &from) : n;
}

static int push_recv(lua_State *L, lx_call *k) {
  lua_pushlstring(L, recv_buffer(L, k->S), k->vlen);
  return 1;
}

static const lx_op op_recvfrom = {
  .name = "recvfrom", .dir = LX_READERS, .sockarg = 1, .try = try_recv,
  .push = push_recvfrom, .fail = fail_recvfrom,
};
static const lx_op op_recv = {
  .name = "recv", .dir = LX_READERS, .sockarg = 1, .try = try_recv, .push = push_recv,
};

static int receive(lua_State *L, const lx_op *op) {
  lx_udp *u = check_udp(L);
  lua_Integer max = luaL_optinteger(L, 2, LX_DGRAM_MAX);
  luaL_argcheck(L, max > 0 && max <= 0x7fffffff, 2, "maximum must be positive");
  lua_settop(L, 1);
  lua_pushinteger(L, max);
  if (max > LX_DGRAM_MAX) lua_newuserdatauv(L, (size_t)max, 0);
  return lx_drive(L, op, lx_deadline(u->s.timeout));
}

/* recvfrom([max]) -> data, host, port (path, nil for Unix); too big:
 * nil, msg, "EMSGSIZE", host, port */
static int u_recvfrom(lua_State *L) { return receive(L, &op_recvfrom); }
/* recv([max]) -> data */
static int u_recv(lua_State *L) { return receive(L, &op_recv); }

static const luaL_Reg methods[] = {
  {"sendto", u_sendto},
  {"send", u_send},
  {"recvfrom", u_recvfrom},
  {"recv", u_recv},
  {NULL, NULL}
};

/* Stack on entry: module, state. Adds the datagram methods to udp's. */
void lx_open_dgram(lua_State *L) {
  lua_getfield(L, -2, "udp_methods");
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);
  lua_pop(L, 1);
}
