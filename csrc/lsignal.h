/*
 * lsignal.h - watching signals (lsignal.c).
 */
#ifndef LSIGNAL_H
#define LSIGNAL_H

#include "lduplex.h"

void lx_open_signal(lua_State *L);

#endif
