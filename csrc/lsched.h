/*
 * lsched.h - the dispatcher under duplex.run (lsched.c): task slots,
 * resuming, and the Lua functions of the scheduler.
 */
#ifndef LSCHED_H
#define LSCHED_H

#include "lduplex.h"

void lx_open_sched(lua_State *L);

#endif
