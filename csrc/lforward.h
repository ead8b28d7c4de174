/*
 * lforward.h - client:forward (lforward.c).
 */
#ifndef LFORWARD_H
#define LFORWARD_H

#include "lduplex.h"

void lx_open_forward(lua_State *L);

#endif
