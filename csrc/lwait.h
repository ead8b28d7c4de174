/*
 * lwait.h - sleep, suspend and wake (lwait.c).
 */
#ifndef LWAIT_H
#define LWAIT_H

#include "lduplex.h"

void lx_open_wait(lua_State *L);

#endif
