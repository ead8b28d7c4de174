/*
 * lserve.c - what serve (lua/duplex/serve.lua) needs of the binding
 * beyond the public API: whether a client is between two requests, for
 * its graceful close.
 */
#include "dx_prefix.h"
#include "lserve.h"
#include "lclient.h"

#define check_client(L, S) ((lx_client *)lx_checksock(L, S, &lx_client_class))

/* idle(client) -> true when the connection is between two requests: a
 * task waits to read it, nothing of a next request has arrived, and it
 * has read nothing since it last wrote (a handler waiting for the rest of
 * a request is not idle). serve's graceful close ends these at once. */
static int m_idle(lua_State *L) {
  lx_state *S = lx_state_of(L);
  lx_client *c = check_client(L, S);
  lua_pushboolean(L, c->s.w.fd >= 0 && S->loop_ok && !c->unanswered &&
                     dx_buf_len(&c->rb) == 0 && dx_loop_head_waits(&S->loop, &c->s.w, 0));
  return 1;
}

/* Stack on entry: module, state. */
void lx_open_serve(lua_State *L) {
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, m_idle, 1);
  lua_setfield(L, -3, "idle");
}
