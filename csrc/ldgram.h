/*
 * ldgram.h - sending and receiving datagrams (ldgram.c).
 */
#ifndef LDGRAM_H
#define LDGRAM_H

#include "lduplex.h"

void lx_open_dgram(lua_State *L);

#endif
