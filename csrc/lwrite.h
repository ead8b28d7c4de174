/*
 * lwrite.h - writing a client (lwrite.c): write, and the cut-write rule
 * that forward shares.
 */
#ifndef LWRITE_H
#define LWRITE_H

#include "lclient.h"

/* The cut-write rule, for write and forward: is c cut by
 * another caller than this one? Before a wait or a failure, mark c cut by
 * this caller if it sent part of a message, or if its stream holds a
 * send's bytes (a TLS record: only the same bytes may finish it). The failure of a call that
 * met another's cut: nil, "<op> <c>: an earlier write was cut off
 * mid-message", "EPIPE" (3 results). */
int lx_cut_by_other(lua_State *L, const lx_state *S, const lx_client *c);
void lx_cut_mark(lua_State *L, const lx_state *S, lx_client *c, size_t sent);
int lx_cut_fail(lua_State *L, lx_client *c, const char *op);

void lx_open_write(lua_State *L);

#endif
