/*
 * ludp.c - duplex.udp: datagram sockets (IPv4, IPv6, Unix), made by
 * duplex.udp([host, port [, opts]]), their default peer (connect), their
 * options and multicast membership. Sending and receiving datagrams are
 * ldgram.c's.
 */
#include "dx_prefix.h"
#include "ludp.h"
#include "ldrive.h"
#include "lresolve.h"
#include "lxaux.h"
#include "dx_udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>



/* For messages: a connected socket's peer, else where it is bound. */
static void udp_label(lx_sock *s, char *out, size_t n) {
  lx_udp *u = (lx_udp *)s;
  if (u->connected) dx_addr_label(&u->peer, out, n);
  else if (u->bound) dx_addr_label(&u->local, out, n);
  else out[0] = '\0';
}

/* What close, __close and __gc do: idempotent. */
static void udp_release(lx_state *S, lx_sock *s) {
  lx_udp *u = (lx_udp *)s;
  if (u->s.w.fd < 0) return;
  lx_sock_close(S, &u->s);
  if (u->bound) dx_unlink_unix(&u->local);     /* we made the path */
}

const lx_class lx_udp_class = {
  .name = "duplex.udp", .type = {"udp", "closed udp"}, .index = 2,
  .label = udp_label, .release = udp_release,
};

#define check_udp(L) ((lx_udp *)lx_checksock(L, lx_state_of(L), &lx_udp_class))

int lx_udp_dest(lua_State *L, lx_udp *u, int h, dx_addr *out) {
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

/* --- the rest ------------------------------------------------------------------- */

/* Stack: 1 self, 2 host (or its answer), 3 port. */
static int try_uconnect(lua_State *L, lx_call *k) {
  lx_udp *u = (lx_udp *)k->sock;
  dx_addr a;
  int rc = lx_udp_dest(L, u, 2, &a);
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

static const lx_op op_uconnect = {
  .name = "connect", .dir = LX_NOQUEUE, .sockarg = 1, .try = try_uconnect,
  .push = lx_push_self, .fail = fail_uconnect,
};
static const lx_hosts uconnect_hosts = {.op = &op_uconnect, .n = 1, .arg = {{.host = 2}}};

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

static const lx_op op_join = {
  .name = "join", .dir = LX_NOQUEUE, .sockarg = 1, .try = try_membership,
  .push = lx_push_self, .fail = fail_membership,
};
static const lx_op op_leave = {
  .name = "leave", .dir = LX_NOQUEUE, .sockarg = 1, .try = try_membership,
  .push = lx_push_self, .fail = fail_membership,
};
static const lx_hosts join_hosts = {
  .op = &op_join, .n = 2, .arg = {{.host = 3}, {.host = 4, .iface = 1}},
};
static const lx_hosts leave_hosts = {
  .op = &op_leave, .n = 2, .arg = {{.host = 3}, {.host = 4, .iface = 1}},
};

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

/* The options every class shares (lsock.c), and join and leave. */
static int u_setoption(lua_State *L) {
  lx_udp *u = check_udp(L);
  int r = lx_sockopt(L, &u->s, 1, udp_opts);
  return r >= 0 ? r : membership(L, u);
}

static int u_getoption(lua_State *L) {
  lx_udp *u = check_udp(L);
  int r = lx_sockopt(L, &u->s, 0, udp_opts);       /* join, leave: */
  return r >= 0 ? r : luaL_argerror(L, 2, lua_pushfstring(L, "option '%s' is write-only",
                                                           lua_tostring(L, 2)));
}

static int u_close(lua_State *L) {
  udp_release(lx_state_of(L), &check_udp(L)->s);
  lua_pushboolean(L, 1);
  return 1;
}

static int u_tostring(lua_State *L) {
  lx_udp *u = check_udp(L);
  char where[128];
  if (u->s.w.fd < 0) {
    lua_pushliteral(L, "duplex.udp (closed)");
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
  lua_pushfstring(L, "duplex.udp (%s)", where[0] ? where : "unbound");
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

static const lx_op op_udp = {
  .name = "udp", .dir = LX_NOQUEUE, .try = try_udp, .push = push_udp, .fail = fail_udp,
};
static const lx_hosts udp_hosts = {.op = &op_udp, .n = 1, .arg = {{.host = 1}}};

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
  u = lx_newsock(L, &lx_udp_class, sizeof(lx_udp));   /* 4: closed until it has an fd */
  u->family = family;
  lua_pushinteger(L, reuseaddr | reuseport << 1);   /* 5 */
  return lx_drive_hosts(L, &udp_hosts, -1);
}

static const luaL_Reg methods[] = {
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
  lx_newclass(L, &lx_udp_class, methods, metamethods, "udp_methods");
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, m_udp, 1);
  lua_setfield(L, -3, "udp");
}
