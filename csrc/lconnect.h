/*
 * lconnect.h - duplex.connect and Happy Eyeballs (lconnect.c).
 */
#ifndef LCONNECT_H
#define LCONNECT_H

#include "lduplex.h"

void lx_open_connect(lua_State *L);

#endif
