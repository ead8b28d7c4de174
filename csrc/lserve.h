/*
 * lserve.h - what serve needs of tasks and clients (lserve.c).
 */
#ifndef LSERVE_H
#define LSERVE_H

#include "lduplex.h"

void lx_open_serve(lua_State *L);

#endif
