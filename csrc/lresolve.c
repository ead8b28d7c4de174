/*
 * lresolve.c - name lookups as a phase of the operation driver, and
 * duplex.resolve(host [, port [, opts]]) as an operation of its own.
 * Inside a task a name goes to the lookup pool (dx_resolver) and the task
 * waits as for a timer, under its call's deadline, while the others run;
 * lx_resolve_collect wakes it. Outside a task getaddrinfo blocks as it
 * always has. Numeric hosts never reach the pool.
 */
#include "dx_prefix.h"
#include "lresolve.h"
#include "lxaux.h"
#include "dx_resolver.h"
#include "dx_udp.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* A lookup on the stack: the pool's lookup while it runs, then the answer;
 * its user value is the host as given (messages). Its __close and __gc
 * abandon a lookup nobody waits for any more (a cancelled task's). */
typedef struct lx_answer {
  dx_lookup *lk;
  lx_state *S;
  int n;
  dx_addr addrs[DX_LOOKUP_MAX];
} lx_answer;

static void forget(lx_answer *a) {
  if (a->lk == NULL) return;
  dx_lookup_abandon(a->S->resolver, a->lk);
  a->lk = NULL;
  if (--a->S->nlookups == 0 && a->S->loop_ok) dx_loop_watch_sys(&a->S->loop, 1, -1);
}

static int answer_gc(lua_State *L) {
  forget((lx_answer *)lua_touserdata(L, 1));
  return 0;
}

/* A new answer for the host at idx, pushed and to be closed. */
static lx_answer *new_answer(lua_State *L, lx_state *S, int idx) {
  lx_answer *a = lua_newuserdatauv(L, sizeof *a, 1);
  a->lk = NULL;
  a->S = S;
  a->n = 0;
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_ANSWER_MT);      /* the answers' metatable */
  lua_setmetatable(L, -2);
  lx_toclose(L, -1);         /* a cancelled task gives its lookup up at once */
  return a;
}

/* Advance a's lookup of host: start it (in the pool inside a task, else
 * blocking), or see whether the pool has answered. */
static int step(lua_State *L, lx_state *S, lx_answer *a, const char *host, int port, int family) {
  int rc;
  if (a->lk == NULL) {
    if (S->running != L || !lua_isyieldable(L)) {       /* outside a task: block */
      a->n = dx_resolve_ex(host, port, 0, family, a->addrs, DX_LOOKUP_MAX);
      return a->n < 0 ? a->n : LX_DONE;
    }
    a->lk = dx_lookup_new(host, port, 0, family, lx_task_id(S, S->slot));
    if (a->lk == NULL) return -ENOMEM;
    rc = dx_lookup_start(&S->resolver, a->lk);
    if (rc < 0) {
      dx_lookup_free(a->lk);
      a->lk = NULL;
      return rc;
    }
    S->nlookups++;
    /* (every time: a fork child's first lookup makes a new pool while
     * lookups of the parent's may still be counted) */
    if ((rc = dx_loop_watch_sys(&S->loop, 1, dx_resolver_fd(S->resolver))) < 0) {
      forget(a);
      return rc;
    }
    return LX_WAIT_TIMER;
  }
  if (a->lk->state != DX_LK_COLLECTED) return LX_WAIT_TIMER;
  a->n = a->lk->n;
  if (a->n > 0) memcpy(a->addrs, a->lk->addrs, sizeof(dx_addr) * (size_t)a->n);
  forget(a);
  return a->n < 0 ? a->n : LX_DONE;
}

/* --- duplex.resolve ---------------------------------------------------------- */

/* Stack: 1 host, 2 port, 3 family (AF_*), 4 the answer. */
static int try_resolve(lua_State *L, lx_call *k) {
  lx_answer *a = (lx_answer *)lua_touserdata(L, 4);
  const char *host = lua_tostring(L, 1);
  int port = (int)lua_tointeger(L, 2), family = (int)lua_tointeger(L, 3);
  if (a->lk == NULL) {                      /* the first try: a number answers */
    a->n = dx_resolve_ex(host, port, DX_NUMERIC, family, a->addrs, DX_LOOKUP_MAX);
    if (a->n != DX_NOT_NUMERIC) return a->n < 0 ? a->n : LX_DONE;
  }
  return step(L, k->S, a, host, port, family);
}

/* { {host=, port=, family=}, ... } */
static int push_resolve(lua_State *L, lx_call *k) {
  lx_answer *a = (lx_answer *)lua_touserdata(L, 4);
  int i;
  (void)k;
  lua_createtable(L, a->n, 0);
  for (i = 0; i < a->n; i++) {
    lua_createtable(L, 0, 3);
    lx_push_addr(L, &a->addrs[i]);
    lua_setfield(L, -4, "family");
    lua_setfield(L, -3, "port");
    lua_setfield(L, -2, "host");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int fail_resolve(lua_State *L, lx_call *k, int code) {
  (void)k;
  forget((lx_answer *)lua_touserdata(L, 4));       /* a timeout, say */
  return lx_fail(L, "resolve", lua_tostring(L, 1), code);
}

static const lx_op op_resolve = {
  .name = "resolve", .dir = LX_NOQUEUE, .try = try_resolve, .push = push_resolve,
  .fail = fail_resolve,
};

static const char *const resolve_opts[] = {"family", "timeout", NULL};

/* resolve(host [, port [, opts]]) -> { {host=, port=, family=}, ... } */
static int m_resolve(lua_State *L) {
  lua_Integer port = 0;
  int family = AF_UNSPEC;
  double timeout = -1;
  lx_checkcstring(L, 1, "host");
  if (!lua_isnoneornil(L, 2)) {
    port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  }
  lua_settop(L, 3);
  lx_check_opts(L, 3, resolve_opts);
  if (!lua_isnil(L, 3)) {
    const char *why;
    lua_getfield(L, 3, "family");
    if (!lua_isnil(L, -1)) {
      const char *f = lua_tostring(L, -1);
      if (f && strcmp(f, "inet") == 0) family = AF_INET;
      else if (f && strcmp(f, "inet6") == 0) family = AF_INET6;
      else luaL_argerror(L, 3, "option 'family' must be \"inet\" or \"inet6\"");
    }
    lua_getfield(L, 3, "timeout");
    why = lx_timeout_error(L, -1, &timeout);
    if (why) luaL_argerror(L, 3, lua_pushfstring(L, "option 'timeout': %s", why));
    lua_settop(L, 3);
  }
  if (strncmp(lua_tostring(L, 1), "unix:", 5) == 0) {
    dx_addr u;
    int rc = dx_addr_unix(lua_tostring(L, 1) + 5, &u);
    if (rc < 0) return lx_fail(L, "resolve", lua_tostring(L, 1), rc);
    lua_createtable(L, 1, 0);
    lua_createtable(L, 0, 3);
    lx_push_addr(L, &u);
    lua_setfield(L, -4, "family");
    lua_setfield(L, -3, "port");
    lua_setfield(L, -2, "host");
    lua_rawseti(L, -2, 1);
    return 1;
  }
  lua_pushinteger(L, port);
  lua_replace(L, 2);
  lua_pushinteger(L, family);
  lua_replace(L, 3);
  new_answer(L, lx_state_of(L), 1);                  /* 4 */
  return lx_drive(L, &op_resolve, lx_deadline(timeout));
}

int lx_answer_addrs(lua_State *L, int idx, int port, dx_addr *out, int max) {
  lx_state *S = lx_state_of(L);
  lx_answer *a = lua_touserdata(L, idx);
  int i, n = 0;
  if (a == NULL || !lua_getmetatable(L, idx)) return -1;
  if (lua_topointer(L, -1) != S->answer_mt) n = -1;
  lua_pop(L, 1);
  for (i = 0; n >= 0 && i < a->n && n < max; i++) {
    out[n] = a->addrs[i];
    dx_addr_set_port(&out[n++], port);
  }
  return n;
}

/* --- addresses ---------------------------------------------------------------------- */

void lx_check_host(lua_State *L, int hostarg, int portarg) {
  const char *host = lx_checkcstring(L, hostarg, "host");
  if (strncmp(host, "unix:", 5) == 0) luaL_argcheck(L, host[5] != '\0', hostarg, "empty unix socket path");
  else lx_check_port(L, portarg);
}

int lx_resolve(lua_State *L, int hostarg, int portarg, int passive,
               dx_addr *out, int max) {
  const char *host;
  if (lua_type(L, hostarg) == LUA_TUSERDATA) {
    int n;
    lx_check_port(L, portarg);
    if ((n = lx_answer_addrs(L, hostarg, (int)lua_tointeger(L, portarg), out, max)) >= 0) return n;
  }
  host = lx_checkcstring(L, hostarg, "host");
  if (strncmp(host, "unix:", 5) == 0) {
    int rc = dx_addr_unix(host + 5, out);
    if (rc == -EINVAL) luaL_argerror(L, hostarg, "empty unix socket path");
    return rc < 0 ? rc : 1;
  }
  lx_check_port(L, portarg);
  return dx_resolve(host, (int)lua_tointeger(L, portarg), passive, out, max);
}

/* --- the lookup phase of an operation's call --------------------------------- */

/* Stack of the phase: the call's arguments; an answer for each of h's
 * hosts that is a name (nil for the others); h (base). Progress: k[0] the
 * host being looked up. */
static int try_hosts(lua_State *L, lx_call *c) {
  const lx_hosts *h = (const lx_hosts *)lua_touserdata(L, c->base);
  int first = c->base - h->n;
  for (; c->k[0] < h->n; c->k[0]++) {
    int i = (int)c->k[0], r;
    lx_answer *a = (lx_answer *)lua_touserdata(L, first + i);
    if (a == NULL) continue;
    r = step(L, c->S, a, lua_tostring(L, h->arg[i].host), 0, AF_UNSPEC);
    if (r != LX_DONE) return r;
  }
  return LX_DONE;
}

/* Every name answered: the answers take the names' places, and the
 * operation itself starts, under what is left of the same deadline. */
static int push_hosts(lua_State *L, lx_call *c) {
  const lx_hosts *h = (const lx_hosts *)lua_touserdata(L, c->base);
  int i, first = c->base - h->n;
  for (i = 0; i < h->n; i++)
    if (!lua_isnil(L, first + i)) lua_copy(L, first + i, h->arg[i].host);
  return lx_drive(L, h->op, c->deadline);
}

/* nil, "<what> <host>: reason", code for the host being looked up. */
static int fail_hosts(lua_State *L, lx_call *c, int code) {
  const lx_hosts *h = (const lx_hosts *)lua_touserdata(L, c->base);
  int i = (int)c->k[0], j;
  for (j = 0; j < h->n; j++) {
    lx_answer *a = (lx_answer *)lua_touserdata(L, c->base - h->n + j);
    if (a) forget(a);                                /* a timeout, say */
  }
  if (h->arg[i].iface && DX_ISEAI(code)) code = -ENODEV;   /* no such device */
  return lx_fail(L, h->arg[i].what ? h->arg[i].what : h->op->name,
                 lua_tostring(L, h->arg[i].host), code);
}

static const lx_op op_hosts = {
  .name = "resolve", .dir = LX_NOQUEUE, .try = try_hosts, .push = push_hosts,
  .fail = fail_hosts,
};

/* Does host i of h need the resolver? (A string with a zero byte does
 * not: the operation's own check raises for it.) */
static int is_name(lua_State *L, const lx_hosts *h, int i) {
  size_t len;
  const char *host;
  if (lua_type(L, h->arg[i].host) != LUA_TSTRING) return 0;
  host = lua_tolstring(L, h->arg[i].host, &len);
  if (strlen(host) != len || strncmp(host, "unix:", 5) == 0 || !dx_is_name(host)) return 0;
  return !h->arg[i].iface || dx_ifindex(host) == 0;
}

int lx_drive_hosts(lua_State *L, const lx_hosts *h, double deadline) {
  lx_state *S = lx_state_of(L);
  lx_sock *sock;
  int i, names = 0;
  for (i = 0; i < h->n; i++)
    if (is_name(L, h, i)) names |= 1 << i;
  if (names == 0) return lx_drive(L, h->op, deadline);
  /* the answers, h, the driver's slots twice (the phase's, the op's), and
   * what the op pushes */
  luaL_checkstack(L, h->n + 20, NULL);
  for (i = 0; i < h->n; i++) {
    if (names >> i & 1) new_answer(L, S, h->arg[i].host);
    else lua_pushnil(L);
  }
  lua_pushlightuserdata(L, (void *)h);
  sock = h->op->sockarg ? (lx_sock *)lua_touserdata(L, h->op->sockarg) : NULL;
  if (sock) deadline = lx_deadline_by(deadline, sock->deadline);
  return lx_drive_on(L, S, NULL, &op_hosts, deadline);
}

const char *lx_host_label(lua_State *L, int idx) {
  const char *s;
  if (lua_type(L, idx) != LUA_TUSERDATA) return lua_tostring(L, idx);
  lua_getiuservalue(L, idx, 1);
  s = lua_tostring(L, -1);             /* (the answer keeps the string) */
  lua_pop(L, 1);
  return s;
}

void lx_resolve_collect(lx_state *S) {
  dx_lookup *lk = dx_lookup_collect(S->resolver);
  for (; lk; lk = lk->next) {
    int slot = (int)(lk->owner & ((1 << LX_SLOT_BITS) - 1));
    if (dx_loop_alive(&S->loop, slot) && lx_task_id(S, slot) == lk->owner &&
        dx_loop_sleeping(&S->loop, slot))
      dx_loop_ready(&S->loop, slot);
  }
}

/* Stack on entry: module, state. Adds resolve. */
void lx_open_resolve(lua_State *L) {
  lx_state *S = (lx_state *)lua_touserdata(L, -1);
  lua_createtable(L, 0, 2);                 /* the answers' metatable */
  lua_pushcfunction(L, answer_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, answer_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, answer_gc);
  lua_setfield(L, -2, "__cancel");     /* LX_CANCEL_BY_STACK */
  S->answer_mt = lua_topointer(L, -1);
  lua_setiuservalue(L, -2, LX_UV_ANSWER_MT);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, m_resolve, 1);
  lua_setfield(L, -3, "resolve");
}
