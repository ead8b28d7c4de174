/*
 * lsignal.c - signals for duplex.onsignal: start or stop watching one
 * (dx_sig), whose arrival the dispatcher hands to the signal hook.
 */
#include "dx_prefix.h"
#include "lsignal.h"
#include "lsched.h"
#include "lxaux.h"

#include <string.h>

/* sigwatch(name, on) -> true, or nil, msg, code: start or stop receiving
 * a signal through the signal hook; an unknown name is nil, nil, "EINVAL". */
static int k_sigwatch(lua_State *L) {
  lx_state *S = lx_state_of(L);
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  int signo = strlen(name) == len ? dx_signo(name) : 0, rc;
  if (signo == 0) {
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushliteral(L, "EINVAL");
    return 3;
  }
  lx_need_loop(L, S);
  lx_own_process(L, S);
  rc = lua_toboolean(L, 2) ? dx_sig_watch(&S->sigs, signo) : dx_sig_unwatch(&S->sigs, signo);
  if (rc == 0) rc = dx_loop_watch_sys(&S->loop, 0, dx_sig_any(&S->sigs) ? S->sigs.fd : -1);
  if (rc < 0) return lx_fail(L, "onsignal", name, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* Stack on entry: module, state. */
void lx_open_signal(lua_State *L) {
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, k_sigwatch, 1);
  lua_setfield(L, -3, "sigwatch");
}
