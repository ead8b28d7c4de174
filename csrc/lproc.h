/*
 * lproc.h - processes for duplex.cluster (lproc.c).
 */
#ifndef LPROC_H
#define LPROC_H

#include "lduplex.h"

void lx_open_proc(lua_State *L);

#endif
