/*
 * lselect.h - a poll over many descriptors (lselect.c), for
 * duplex.socket's select: no descriptor ceiling, and inside a task a wait
 * through the scheduler instead of blocking the loop.
 */
#ifndef LSELECT_H
#define LSELECT_H

#include "lduplex.h"

void lx_open_select(lua_State *L);

#endif
