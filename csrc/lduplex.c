/*
 * lduplex.c - the module's entry (luaopen_duplex_core): its state and
 * table, and the module functions that belong to no object: type, now.
 * Every load makes an instance of its own, metatables included, so
 * loading the module again never changes objects of an earlier load.
 */
#include "dx_prefix.h"
#include "lconnect.h"
#include "ldrive.h"
#include "ldgram.h"
#include "lforward.h"
#include "lread.h"
#include "lresolve.h"
#include "lsched.h"
#include "lselect.h"
#include "lserve.h"
#include "lproxy.h"
#include "lserver.h"
#include "lproc.h"
#include "lsignal.h"
#include "ltls.h"
#include "ludp.h"
#include "lwait.h"
#include "lwrite.h"
#include "dx_resolver.h"
#include "dx_time.h"

#include <stdlib.h>
#include <string.h>

static int m_type(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_sock *s;
  luaL_checkany(L, 1);
  if ((s = lx_tosock(L, S, 1, NULL)) != NULL) {
    lua_pushstring(L, s->cls->type[s->w.fd < 0]);
    return 1;
  }
  if (lua_touserdata(L, 1) && lua_getmetatable(L, 1)) {
    if (lua_topointer(L, -1) == S->tlsctx_mt) {
      lua_pushliteral(L, "tlscontext");
      return 1;
    }
  }
  luaL_pushfail(L);
  return 1;
}

static int m_now(lua_State *L) {
  lua_pushnumber(L, dx_now());
  return 1;
}

static int state_gc(lua_State *L) {
  lx_state *S = lua_touserdata(L, 1);
  if (S->loop_ok) dx_loop_free(&S->loop);
  S->loop_ok = 0;
  dx_sigs_free(&S->sigs);                  /* the signals as they were */
  dx_resolver_close(S->resolver);
  S->resolver = NULL;
  free(S->detached);
  S->detached = NULL;
  S->ndetached = 0;
  return 0;
}

static const luaL_Reg funcs[] = {
  {"type", m_type},
  {"now", m_now},
  {NULL, NULL}
};

#if defined(__GNUC__)
#define LX_EXPORT __attribute__((visibility("default")))
#else
#define LX_EXPORT
#endif

LX_EXPORT int luaopen_duplex_core(lua_State *L);

LX_EXPORT int luaopen_duplex_core(lua_State *L) {
  /* The state lives in a userdata created first, so that at lua_close it is
   * finalised after every socket that still needs its loop. Its
   * uservalues: LX_UV_* (lduplex.h). */
  lx_state *S = lua_newuserdatauv(L, sizeof(lx_state), LX_NUV);
  memset(S, 0, sizeof *S);
  dx_sigs_init(&S->sigs);
  S->scratch.mem = S->scratch_mem;
  S->scratch.cap = LX_SCRATCH;
  lua_newtable(L);
  lua_setiuservalue(L, -2, LX_UV_TASKS);
  lua_newtable(L);
  lua_setiuservalue(L, -2, LX_UV_GUARDS);
  lua_newtable(L);
  lua_setiuservalue(L, -2, LX_UV_HELD);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, state_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);

  lua_newtable(L);                         /* the module */
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pushliteral(L, "duplex " LX_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_insert(L, -2);                       /* module, state */
  lx_open_client(L);                       /* first: the others add methods */
  lx_open_read(L);
  lx_open_write(L);
  lx_open_forward(L);
  lx_open_tls(L);
  lx_open_connect(L);
  lx_open_proxy(L);
  lx_open_server(L);
  lx_open_udp(L);
  lx_open_dgram(L);
  lx_open_resolve(L);
  lx_open_sched(L);
  lx_open_wait(L);
  lx_open_select(L);
  lx_open_signal(L);
  lx_open_proc(L);
  lx_open_serve(L);
  lx_open_resume(L);                       /* last: it wraps what the others made */
  lua_pop(L, 1);
  return 1;
}
