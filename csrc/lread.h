/*
 * lread.h - reading a client (lread.c): read, readuntil, readsome, and the
 * one receive that forward shares.
 */
#ifndef LREAD_H
#define LREAD_H

#include "lclient.h"
#include "ldrive.h"

/* Receive once into c's buffer (TLS: a record): > 0 bytes, 0 end of
 * stream (c->eof set), -EAGAIN, DX_WANT_WRITE or -errno (lread.c).
 * trust: the caller waits if told EAGAIN, so the loop's word that the
 * socket is drained may stand in for the kernel's. */
long lx_client_fill(lx_state *S, lx_client *c, int trust);
/* The trust a receive of call k on c may take (lread.c). */
int lx_client_trusts(lua_State *L, const lx_call *k, const lx_client *c);
/* duplex.socket's methods in C (core.facereceiver, core.facesender):
 * the checks of their fast path, their Lua fallback, the closure. */
#ifndef LX_NO_YIELDK
lx_client *lx_face_client(lua_State *L, lx_state *S);
int lx_face_slow(lua_State *L, int top);
#endif
int lx_face_method(lua_State *L, lua_CFunction f);
void lx_open_read(lua_State *L);

#endif
