/*
 * lserver.h - duplex.listen and duplex.server (lserver.c).
 */
#ifndef LSERVER_H
#define LSERVER_H

#include "lduplex.h"

void lx_open_server(lua_State *L);

#endif
