/*
 * lselect.c - core.poll(rfds, wfds [, timeout]): which of many descriptors
 * are readable (rfds) or writable (wfds), for duplex.socket's select
 * (LuaSocket's face). Descriptors are numbers: the face gives those of its
 * sockets, or of any object with a getfd; -1 is skipped. poll(2) has no
 * ceiling on descriptor numbers (select(2)'s FD_SETSIZE).
 *
 * Outside duplex.run the poll blocks, as LuaSocket's select does. Inside a
 * task it must not: the descriptors then go into an epoll instance of the
 * call's own (level-triggered), which becomes readable when one of them is
 * ready, and the task waits for that descriptor through the operation
 * driver like any socket, so the other tasks run meanwhile. Without epoll
 * the task looks again every 10 ms instead. It never touches the loop's
 * own registrations: the same descriptor may be in both epoll instances.
 */
#include "dx_prefix.h"
#include "lselect.h"
#include "lclient.h"
#include "ldrive.h"
#include "lsock.h"
#include "lxaux.h"
#include "dx_time.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif

typedef struct lx_select {
  lx_sock s;                  /* s.w: the call's epoll instance (-1: none) */
  int nr, n;                  /* pfd[0..nr) want reading, pfd[nr..n) writing */
  struct pollfd pfd[1];
} lx_select;

static void sel_label(lx_sock *s, char *out, size_t n) {
  (void)s;
  snprintf(out, n, "%s", "descriptors");
}

static void sel_release(lx_state *S, lx_sock *s) {
  lx_sock_close(S, s);
}

static const lx_class select_class = {
  .name = "duplex.poll", .type = {"poll", "closed poll"}, .index = 0,
  .label = sel_label, .release = sel_release,
};

/* One poll that never waits: how many are ready, or -errno. */
static int poll_now(lx_select *p, int ms) {
  int r;
  do r = poll(p->pfd, (nfds_t)p->n, ms);
  while (r < 0 && errno == EINTR && ms == 0);
  return r < 0 ? -errno : r;
}

/* A poll until the deadline (< 0: none) to the microsecond: the loop's
 * millisecond waits round up, and copas's timer wheel, driven by select's
 * timeout, then misses its slot. */
static int poll_until(lx_select *p, double deadline) {
  struct timespec ts;
  double left;
  if (deadline < 0) return poll(p->pfd, (nfds_t)p->n, -1);
  left = deadline - dx_now();
  if (left < 0) left = 0;
  ts.tv_sec = (time_t)left;
  ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
  return ppoll(p->pfd, (nfds_t)p->n, &ts, NULL);
}

/* rready, wready: the indices (1-based) of the ready entries of each list.
 * A descriptor in error or hung up counts as ready, as select(2) says. */
static int push_ready(lua_State *L, lx_select *p) {
  int i, k;
  lua_newtable(L);
  for (i = 0, k = 0; i < p->nr; i++)
    if (p->pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) {
      lua_pushinteger(L, i + 1);
      lua_rawseti(L, -2, ++k);
    }
  lua_newtable(L);
  for (i = p->nr, k = 0; i < p->n; i++)
    if (p->pfd[i].revents & (POLLOUT | POLLERR | POLLHUP)) {
      lua_pushinteger(L, i - p->nr + 1);
      lua_rawseti(L, -2, ++k);
    }
  return 2;
}

/* The wait of a task: stack 1 the lx_select. */
static int try_poll(lua_State *L, lx_call *k) {
  lx_select *p = (lx_select *)lua_touserdata(L, 1);
  int r = poll_now(p, 0);
  if (r != 0) return r < 0 ? r : LX_DONE;
  if (p->s.w.fd >= 0) return LX_WAIT_READ;
  k->wake_at = dx_now() + 0.01;                 /* no epoll: look again */
  return LX_WAIT_TIMER;
}

static int push_poll(lua_State *L, lx_call *k) {
  lx_select *p = (lx_select *)lua_touserdata(L, 1);
  lx_sock_close(k->S, &p->s);
  return push_ready(L, p);
}

/* A timeout is no failure: nothing was ready (and what else went wrong
 * is the face's to say). */
static int fail_poll(lua_State *L, lx_call *k, int code) {
  lx_select *p = (lx_select *)lua_touserdata(L, 1);
  int i;
  lx_sock_close(k->S, &p->s);
  if (code != -ETIMEDOUT && code != -EAGAIN) return lx_fail(L, "poll", "descriptors", code);
  for (i = 0; i < p->n; i++) p->pfd[i].revents = 0;
  return push_ready(L, p);
}

static const lx_op op_poll = {
  .name = "poll", .dir = LX_NOQUEUE, .sockarg = 1, .try = try_poll,
  .push = push_poll, .fail = fail_poll,
};

/* The call's epoll instance, with every descriptor in it (a descriptor in
 * both lists once, for both), or -1 when there is none to be had. */
static int make_epoll(lx_select *p) {
#ifdef __linux__
  int ep = epoll_create1(EPOLL_CLOEXEC), i;
  if (ep < 0) return -1;
  for (i = 0; i < p->n; i++) {
    struct epoll_event ev;
    if (p->pfd[i].fd < 0) continue;
    memset(&ev, 0, sizeof ev);
    ev.events = i < p->nr ? EPOLLIN : EPOLLOUT;
    ev.data.fd = p->pfd[i].fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p->pfd[i].fd, &ev) == 0) continue;
    if (errno == EEXIST) {
      ev.events = EPOLLIN | EPOLLOUT;
      if (epoll_ctl(ep, EPOLL_CTL_MOD, p->pfd[i].fd, &ev) == 0) continue;
    }
    close(ep);                /* a descriptor epoll refuses: look again instead */
    return -1;
  }
  return ep;
#else
  (void)p;
  return -1;
#endif
}

/* Fill n entries from the array at idx, for events ev. */
static void fill(lua_State *L, int idx, struct pollfd *pfd, int n, short ev) {
  int i;
  for (i = 0; i < n; i++) {
    lua_Integer fd;
    lua_rawgeti(L, idx, i + 1);
    if (!lua_isinteger(L, -1)) luaL_argerror(L, idx, "descriptors must be integers");
    fd = lua_tointeger(L, -1);
    lua_pop(L, 1);
    pfd[i].fd = fd < 0 || fd > 0x7fffffff ? -1 : (int)fd;
    pfd[i].events = ev;
    pfd[i].revents = 0;
  }
}

/* poll(rfds, wfds [, timeout]) -> rready, wready: arrays of indices into
 * rfds and wfds (both empty when the timeout passed); nil, msg, code when
 * poll failed. timeout nil: for ever. */
static int k_poll(lua_State *L) {
  lx_state *S = lx_state_of(L);
  double timeout = lx_opt_timeout(L, 3), deadline;
  int nr, nw, r;
  lx_select *p;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  nr = (int)lua_rawlen(L, 1);
  nw = (int)lua_rawlen(L, 2);
  p = lua_newuserdatauv(L, sizeof *p + (size_t)(nr + nw) * sizeof(struct pollfd), 0);
  memset(p, 0, sizeof *p);
  dx_watch_init(&p->s.w, -1);
  p->s.timeout = p->s.idle = p->s.deadline = -1;
  p->s.cls = &select_class;
  p->nr = nr;
  p->n = nr + nw;
  lua_pushvalue(L, lua_upvalueindex(2));      /* __gc closes its epoll */
  lua_setmetatable(L, -2);
  fill(L, 1, p->pfd, nr, POLLIN);
  fill(L, 2, p->pfd + nr, nw, POLLOUT);
  lua_replace(L, 1);
  lua_settop(L, 1);
  r = poll_now(p, 0);
  if (r < 0) return lx_fail(L, "poll", "descriptors", r);
  if (r > 0 || timeout == 0) return push_ready(L, p);
  deadline = lx_deadline(timeout);
  if (S->running == L && lua_isyieldable(L)) {
    int ep = make_epoll(p);
    if (ep >= 0) dx_watch_init(&p->s.w, ep);
    return lx_drive_on(L, S, &p->s, &op_poll, deadline);
  }
  if (S->running != NULL || S->in_run) return lx_cannot_wait(L);
  for (;;) {                  /* outside duplex.run: block, as LuaSocket does */
    r = poll_until(p, deadline);
    if (r >= 0) break;
    if (errno != EINTR) return lx_fail(L, "poll", "descriptors", -errno);
  }
  if (r == 0) {
    int i;
    for (i = 0; i < p->n; i++) p->pfd[i].revents = 0;
  }
  return push_ready(L, p);
}

static int sel_gc(lua_State *L) {
  lx_select *p = (lx_select *)lua_touserdata(L, 1);
  lx_sock_close(lx_state_of(L), &p->s);
  return 0;
}

/* fdlimit() -> how many descriptors this process may have open (its soft
 * RLIMIT_NOFILE; math.huge when unlimited): select's only ceiling. */
static int k_fdlimit(lua_State *L) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    lua_pushnumber(L, HUGE_VAL);
  else
    lua_pushinteger(L, (lua_Integer)rl.rlim_cur);
  return 1;
}

/* fdinfo(sock) -> its descriptor (-1 once closed) and how many bytes its
 * receive buffer holds (0 but for a client): what select asks of every
 * socket it is given, in one call instead of fileno and buffered. */
static int k_fdinfo(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_sock *s = lx_tosock(L, S, 1, NULL);
  size_t n = 0;
  if (s == NULL) return luaL_typeerror(L, 1, "duplex socket");
  if (s->cls == &lx_client_class && s->w.fd >= 0) n = dx_buf_len(&((lx_client *)s)->rb);
  lua_pushinteger(L, s->w.fd);
  lua_pushinteger(L, (lua_Integer)n);
  return 2;
}

/* Stack on entry: module, state. */
void lx_open_select(lua_State *L) {
  lua_pushvalue(L, -1);                       /* upvalue 1: the state */
  lua_createtable(L, 0, 2);                   /* upvalue 2: the poll's metatable */
  lua_pushvalue(L, -3);
  lua_pushcclosure(L, sel_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "duplex.poll");
  lua_setfield(L, -2, "__name");
  lua_pushcclosure(L, k_poll, 2);
  lua_setfield(L, -3, "poll");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, k_fdlimit, 1);
  lua_setfield(L, -3, "fdlimit");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, k_fdinfo, 1);
  lua_setfield(L, -3, "fdinfo");
}
