/*
 * ludp.c - duplex.udp: datagram sockets (IPv4, IPv6, Unix) and
 * duplex.udp(). sendto/recvfrom, and send/recv once connected, are
 * operations of the driver: they wait (yield in a task) only after EAGAIN,
 * several tasks take turns per direction, and a datagram too large for
 * the caller's max is an error, never a silent cut.
 *
 * A datagram is received into the state's buffer (or a buffer of the
 * call's own for a max above 64 KiB) and copied into a string by one
 * lua_pushlstring after the driver has left the FIFO.
 */
#include "dx_prefix.h"
#include "lduplex.h"
#include "dx_udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>


typedef struct lx_udp {
  lx_sock s;
  int family;
  int dual;                   /* AF_INET6 that reaches IPv4 too (v4-mapped) */
  int bound, connected;
  dx_addr local;              /* where it is bound (for messages, unlink) */
  dx_addr peer;               /* the default peer once connected (messages) */
} lx_udp;

#define check_udp(L) ((lx_udp *)lx_checksock(L, lx_state_of(L), LX_CLS_UDP))

/* For messages: a connected socket's peer, else where it is bound. */
void lx_udp_label(lx_sock *s, char *out, size_t n) {
  lx_udp *u = (lx_udp *)s;
  if (u->connected) dx_addr_label(&u->peer, out, n);
  else if (u->bound) dx_addr_label(&u->local, out, n);
  else out[0] = '\0';
}

/* The address of host (arg h) and port (arg h+1) for this socket: the
 * first of its family; for a dual-stack socket the first of either, an
 * IPv4 one in the v4-mapped form. */
static int dest(lua_State *L, lx_udp *u, int h, dx_addr *out) {
  dx_addr a[16];
  int n = lx_resolve(L, h, h + 1, 0, a, 16), i;
  if (n < 0) return n;
  for (i = 0; i < n; i++) {
    if (a[i].ss.ss_family == u->family || (u->dual && a[i].ss.ss_family == AF_INET)) {
      *out = a[i];
      if (u->dual) dx_addr_map4(out);
      return 0;
    }
  }
  return -EAFNOSUPPORT;
}

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
    int rc = dest(L, (lx_udp *)k->sock, 3, to);
    if (rc < 0) return rc;
    k->k[0] = 1;
  }
  return send_to(L, k, to);
}

static int push_self(lua_State *L, lx_call *k) {
  (void)k;
  lua_pushvalue(L, 1);
  return 1;
}

/* A failed sendto names where it sent, or the host as given when that
 * has no address for this socket (a closed socket's call looks now). */
static int fail_sendto(lua_State *L, lx_call *k, int code) {
  dx_addr *to = (dx_addr *)lua_touserdata(L, 5);
  char where[128];
  if (k->k[0] == 0 && dest(L, (lx_udp *)k->sock, 3, to) < 0)
    return lx_fail(L, "sendto", lx_host_label(L, 3), code);
  dx_addr_label(to, where, sizeof where);
  return lx_fail(L, "sendto", where, code);
}

static const lx_op op_sendto = {"sendto", 1, 1, 0, try_sendto, push_self, fail_sendto, NULL, 0, 0};
static const lx_op op_send = {"send", 1, 1, 0, try_send, push_self, NULL, NULL, 0, 0};
static const lx_hosts sendto_hosts = {&op_sendto, 1, {{3, NULL, 0}}};

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

static const lx_op op_recvfrom = {"recvfrom", 0, 1, 0, try_recv, push_recvfrom, fail_recvfrom, NULL, 0, 0};
static const lx_op op_recv = {"recv", 0, 1, 0, try_recv, push_recv, NULL, NULL, 0, 0};

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

/* --- the rest ------------------------------------------------------------------- */

/* Stack: 1 self, 2 host (or its answer), 3 port. */
static int try_uconnect(lua_State *L, lx_call *k) {
  lx_udp *u = (lx_udp *)k->sock;
  dx_addr a;
  int rc = dest(L, u, 2, &a);
  if (rc == 0) {
    rc = dx_udp_connect(u->s.w.fd, &a);
    if (rc == -EAFNOSUPPORT && u->dual && !u->bound) {
      /* Linux keeps the IPv4 source of a first connect, which no IPv6 peer
       * can have: forget it (and the port the kernel chose) first */
      dx_udp_connect(u->s.w.fd, NULL);
      rc = dx_udp_connect(u->s.w.fd, &a);
    }
    /* the kernel's peer now (a failed connect may leave the old one) */
    u->connected = dx_sockname(u->s.w.fd, 1, &u->peer) == 0;
  }
  return rc < 0 ? rc : LX_DONE;
}

static int fail_uconnect(lua_State *L, lx_call *k, int code) {
  if (code == DX_ECLOSED) return lx_closed(L, k->sock, "connect");
  return lx_fail(L, "connect", lx_host_label(L, 2), code);
}

static const lx_op op_uconnect = {"connect", -1, 1, 0, try_uconnect, push_self, fail_uconnect, NULL, 0, 0};
static const lx_hosts uconnect_hosts = {&op_uconnect, 1, {{2, NULL, 0}}};

/* connect(host, port) -> self: the default peer of send/recv, which
 * their failures name. */
static int u_connect(lua_State *L) {
  lx_udp *u = check_udp(L);
  lua_settop(L, 3);
  lx_check_host(L, 2, 3);
  return lx_drive_hosts(L, &uconnect_hosts, lx_deadline(u->s.timeout));
}

static int u_getpeername(lua_State *L) {
  lx_udp *u = check_udp(L);
  dx_addr a;
  int rc;
  if (u->s.w.fd < 0) return lx_closed(L, &u->s, "getpeername");
  rc = dx_sockname(u->s.w.fd, 1, &a);
  if (rc < 0) return lx_sockfail(L, &u->s, "getpeername", rc);
  return lx_push_addr(L, &a);
}

static const char *const udp_opts[] = {
  "broadcast", "reuseaddr", "reuseport", "rcvbuf", "sndbuf", "ttl",
  "multicast_ttl", "multicast_loop", "join", "leave", "deadline", NULL
};

/* Options that depend on the family: {name, IPv4 level/opt, IPv6 level/opt, kind} */
static const struct {
  const char *name;
  int opt4, opt6;
  char kind;                 /* 'i' integer, 'b' boolean */
} ipopts[] = {
  {"ttl", IP_TTL, IPV6_UNICAST_HOPS, 'i'},
  {"multicast_ttl", IP_MULTICAST_TTL, IPV6_MULTICAST_HOPS, 'i'},
  {"multicast_loop", IP_MULTICAST_LOOP, IPV6_MULTICAST_LOOP, 'b'},
  {NULL, 0, 0, 0}
};

/* The addresses of the host at idx: a lookup's answer, or looked up here. */
static int addrs_of(lua_State *L, int idx, dx_addr *out, int max) {
  if (lua_type(L, idx) == LUA_TUSERDATA) return lx_answer_addrs(L, idx, 0, out, max);
  return dx_resolve(lua_tostring(L, idx), 0, 0, out, max);
}

/* join/leave: setoption("join", group [, interface]) with the interface a
 * name ("lo"), an index, or for IPv4 an address. Stack: 1 self, 2 "join"
 * or "leave", 3 group, 4 interface (an answer, once a name was looked up:
 * the lookup phase knows an interface's name from a host's). k[1]: 1
 * when the interface is to blame. */
static int try_membership(lua_State *L, lx_call *k) {
  dx_addr group, ifaddr[16];
  unsigned ifindex = 0;
  int rc, n, i = 0, byaddr;
  n = addrs_of(L, 3, &group, 1);
  if (n < 0) return n;
  if (lua_type(L, 4) == LUA_TNUMBER) ifindex = (unsigned)lua_tointeger(L, 4);
  else if (lua_type(L, 4) == LUA_TSTRING) ifindex = dx_ifindex(lua_tostring(L, 4));
  /* not an interface's name (nor index): an IPv4 interface's address */
  byaddr = ifindex == 0 && !lua_isnil(L, 4) && lua_type(L, 4) != LUA_TNUMBER;
  if (byaddr) {
    k->k[1] = 1;
    if (group.ss.ss_family != AF_INET) return -ENODEV;
    n = addrs_of(L, 4, ifaddr, 16);
    while (i < n && ifaddr[i].ss.ss_family != AF_INET) i++;
    if (i >= n) return -ENODEV;
    k->k[1] = 0;
  }
  rc = dx_udp_membership(k->sock->w.fd, k->op->name[0] == 'j', &group, ifindex,
                         byaddr ? &ifaddr[i] : NULL);
  return rc < 0 ? rc : LX_DONE;
}

static int fail_membership(lua_State *L, lx_call *k, int code) {
  if (code == DX_ECLOSED) return lx_closed(L, k->sock, "setoption");
  return lx_fail(L, k->op->name, lx_host_label(L, k->k[1] ? 4 : 3), code);
}

static const lx_op op_join = {"join", -1, 1, 0, try_membership, push_self, fail_membership, NULL, 0, 0};
static const lx_op op_leave = {"leave", -1, 1, 0, try_membership, push_self, fail_membership, NULL, 0, 0};
static const lx_hosts join_hosts = {&op_join, 2, {{3, NULL, 0}, {4, NULL, 1}}};
static const lx_hosts leave_hosts = {&op_leave, 2, {{3, NULL, 0}, {4, NULL, 1}}};

static int membership(lua_State *L, const lx_udp *u) {
  int join = lua_tostring(L, 2)[0] == 'j';
  lx_checkcstring(L, 3, "group");
  lua_settop(L, 4);
  if (lua_type(L, 4) == LUA_TNUMBER) {
    lua_Integer x = luaL_checkinteger(L, 4);
    luaL_argcheck(L, x >= 0 && x <= 0x7fffffff, 4, "interface index out of range");
  } else if (!lua_isnil(L, 4)) {
    lx_checkcstring(L, 4, "interface");
  }
  return lx_drive_hosts(L, join ? &join_hosts : &leave_hosts, lx_deadline(u->s.timeout));
}

/* ttl and the multicast options: a dual-stack socket has them twice, for
 * its IPv6 traffic and for its IPv4 traffic, and sets both (reading the
 * IPv6 one). */
static int ipopt(lua_State *L, lx_udp *u, int set, const char *name) {
  int i, rc, v = 0, level, opt;
  for (i = 0; ipopts[i].name && strcmp(ipopts[i].name, name) != 0; i++) {}
  if (u->family != AF_INET && u->family != AF_INET6)
    return lx_fail(L, set ? "setoption" : "getoption", name, -ENOPROTOOPT);
  level = u->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
  opt = u->family == AF_INET ? ipopts[i].opt4 : ipopts[i].opt6;
  if (!set) {
    rc = dx_getopt(u->s.w.fd, level, opt, &v);
    if (rc < 0) return lx_fail(L, "getoption", name, rc);
    if (ipopts[i].kind == 'b') lua_pushboolean(L, v != 0);
    else lua_pushinteger(L, v);
    return 1;
  }
  if (ipopts[i].kind == 'b') {
    luaL_checktype(L, 3, LUA_TBOOLEAN);
    v = lua_toboolean(L, 3);
  } else {
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0 && n <= 255, 3, "hop count out of range");
    v = (int)n;
  }
  rc = dx_setopt(u->s.w.fd, level, opt, v);
  if (rc == 0 && u->dual) rc = dx_setopt(u->s.w.fd, IPPROTO_IP, ipopts[i].opt4, v);
  if (rc < 0) return lx_fail(L, "setoption", name, rc);
  lua_settop(L, 1);
  return 1;
}

static int u_setoption(lua_State *L) {
  lx_udp *u = check_udp(L);
  int r = lx_sockopt(L, &u->s, 1, udp_opts);
  const char *name;
  if (r >= 0) return r;
  name = lua_tostring(L, 2);
  if (strcmp(name, "join") == 0 || strcmp(name, "leave") == 0)
    return membership(L, u);
  return ipopt(L, u, 1, name);
}

static int u_getoption(lua_State *L) {
  lx_udp *u = check_udp(L);
  int r = lx_sockopt(L, &u->s, 0, udp_opts);
  const char *name;
  if (r >= 0) return r;
  name = lua_tostring(L, 2);
  if (strcmp(name, "join") == 0 || strcmp(name, "leave") == 0)
    return luaL_argerror(L, 2, lua_pushfstring(L, "option '%s' is write-only", name));
  return ipopt(L, u, 0, name);
}

static int u_close(lua_State *L) {
  lx_udp *u = check_udp(L);
  if (u->s.w.fd >= 0) {
    lx_sock_close(lx_state_of(L), &u->s);
    if (u->bound) dx_unlink_unix(&u->local);     /* we made the path */
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int u_tostring(lua_State *L) {
  lx_udp *u = check_udp(L);
  char where[128];
  if (u->s.w.fd < 0) {
    lua_pushliteral(L, LX_UDP " (closed)");
    return 1;
  }
  where[0] = '\0';
  if (u->bound) dx_addr_label(&u->local, where, sizeof where);
  else if (u->family != AF_UNIX) {
    /* the kernel binds an inet socket at its connect or first sendto */
    dx_addr a;
    char host[64];
    int port = 0;
    const char *family;
    if (dx_sockname(u->s.w.fd, 0, &a) == 0) {
      dx_addr_text(&a, host, sizeof host, &port, &family);
      if (port > 0) dx_addr_label(&a, where, sizeof where);
    }
  }
  lua_pushfstring(L, LX_UDP " (%s)", where[0] ? where : "unbound");
  return 1;
}

/* --- duplex.udp([host, port [, opts]]) ------------------------------------------ */

static const char *const new_opts[] = {"family", "reuseaddr", "reuseport", NULL};

/* Stack: 1 host (or its answer) or nil, 2 port, 3 opts, 4 the socket
 * (closed until it has a descriptor), 5 reuseaddr | reuseport << 1. An
 * unbound socket is for both families where the system has IPv6 (a
 * dual-stack AF_INET6 one), else IPv4; with opts.family only that one
 * ("inet6": IPv6-only). k[0]: the addresses found (a failure then names
 * the last one tried). */
static int try_udp(lua_State *L, lx_call *k) {
  dx_addr addrs[16];
  lx_udp *u = (lx_udp *)lua_touserdata(L, 4);
  int n = 0, i, fd = -EAFNOSUPPORT, v6only = 1, family = u->family;
  int reuseaddr = (int)lua_tointeger(L, 5) & 1, reuseport = (int)lua_tointeger(L, 5) >> 1;
  if (!lua_isnil(L, 1) && (n = lx_resolve(L, 1, 2, 1, addrs, 16)) < 0) return n;
  k->k[0] = n;
  if (n == 0 && family == AF_UNSPEC) {
    u->family = AF_INET6;
    fd = dx_udp_open(AF_INET6, NULL, 0, reuseaddr, reuseport);
    if (fd == -EAFNOSUPPORT) {                  /* no IPv6 here */
      u->family = AF_INET;
      fd = dx_udp_open(AF_INET, NULL, -1, reuseaddr, reuseport);
    }
  } else if (n == 0) {
    fd = dx_udp_open(family, NULL, 1, reuseaddr, reuseport);
  } else {
    /* as listen: only a family the host lacks moves on to the next address */
    for (i = 0; i < n; i++) {
      u->local = addrs[i];
      u->family = addrs[i].ss.ss_family;
      fd = dx_udp_open(u->family, &addrs[i], -1, reuseaddr, reuseport);
      if (fd >= 0 || (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL)) break;
    }
  }
  if (fd < 0) return fd;
  dx_watch_init(&u->s.w, fd);
  if (u->family == AF_INET6)
    u->dual = dx_getopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only) == 0 && v6only == 0;
  if (n > 0) {
    u->bound = 1;
    dx_sockname(fd, 0, &u->local);       /* the port the kernel chose */
  }
  return LX_DONE;
}

static int push_udp(lua_State *L, lx_call *k) {
  (void)k;
  lua_pushvalue(L, 4);
  return 1;
}

/* The host as given (a Unix path too), else the last address tried. */
static int fail_udp(lua_State *L, lx_call *k, int code) {
  lx_udp *u = (lx_udp *)lua_touserdata(L, 4);
  char where[128];
  if (k->k[0] == 0 || u->family == AF_UNIX) return lx_fail(L, "udp", lx_host_label(L, 1), code);
  dx_addr_label(&u->local, where, sizeof where);
  return lx_fail(L, "udp", where, code);
}

static const lx_op op_udp = {"udp", -1, 0, 0, try_udp, push_udp, fail_udp, NULL, 0, 0};
static const lx_hosts udp_hosts = {&op_udp, 1, {{1, NULL, 0}}};

static int m_udp(lua_State *L) {
  static const char *const families[] = {"inet", "inet6", "unix", NULL};
  static const int family_of[] = {AF_INET, AF_INET6, AF_UNIX};
  lx_udp *u;
  int i, family = AF_UNSPEC, reuseaddr, reuseport;
  lua_settop(L, 3);
  lx_check_opts(L, 3, new_opts);
  reuseaddr = lx_opt_bool(L, 3, "reuseaddr", 0);
  reuseport = lx_opt_bool(L, 3, "reuseport", 0);
  if (!lua_isnil(L, 3)) {
    lua_getfield(L, 3, "family");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, 3, "option 'family' must be a string");
      for (i = 0; families[i] && strcmp(families[i], lua_tostring(L, -1)) != 0; i++) {}
      if (!families[i]) luaL_argerror(L, 3, "option 'family' must be \"inet\", \"inet6\" or \"unix\"");
      family = family_of[i];
    }
    lua_pop(L, 1);
  }
  if (!lua_isnil(L, 1)) {
    if (lua_type(L, 2) == LUA_TNIL && strncmp(luaL_checkstring(L, 1), "unix:", 5) != 0)
      luaL_argerror(L, 2, "port expected");
    lx_check_host(L, 1, 2);
  }
  u = lua_newuserdatauv(L, sizeof(lx_udp), 0);      /* 4: closed until it has an fd */
  dx_watch_init(&u->s.w, -1);
  u->s.timeout = -1;
  u->s.idle = -1;
  u->s.deadline = -1;
  u->s.cls = LX_CLS_UDP;
  u->bound = u->connected = u->dual = 0;
  u->family = family;
  lua_getiuservalue(L, lua_upvalueindex(1), 7);
  lua_setmetatable(L, -2);
  lua_pushinteger(L, reuseaddr | reuseport << 1);   /* 5 */
  return lx_drive_hosts(L, &udp_hosts, -1);
}

static const luaL_Reg methods[] = {
  {"sendto", u_sendto},
  {"send", u_send},
  {"recvfrom", u_recvfrom},
  {"recv", u_recv},
  {"connect", u_connect},
  {"getpeername", u_getpeername},
  {"setoption", u_setoption},
  {"getoption", u_getoption},
  {"close", u_close},
  {NULL, NULL}
};

static const luaL_Reg metamethods[] = {
  {"__gc", u_close},
  {"__close", u_close},
  {"__tostring", u_tostring},
  {NULL, NULL}
};

/* Stack on entry: module, state. Adds udp and udp_methods. */
void lx_open_udp(lua_State *L) {
  lx_state *S = (lx_state *)lua_touserdata(L, -1);
  S->mt[LX_CLS_UDP] = lx_newclass(L, LX_UDP, methods, metamethods, "udp_methods", LX_CLS_UDP);
  lua_setiuservalue(L, -2, 7);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, m_udp, 1);
  lua_setfield(L, -3, "udp");
}
