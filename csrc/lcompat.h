/*
 * lcompat.h - the Lua C API as 5.4 has it, on Lua 5.1, LuaJIT 2.1, 5.2 and
 * 5.3: the binding is written against 5.4 and includes this after lua.h
 * and lauxlib.h (lduplex.h). What a version lacks is made here from what
 * it has; nothing here is compiled on 5.4.
 *
 * - Several user values per userdata: one table as the only user value
 *   (5.3's uservalue, 5.1's environment), its slots the user values.
 * - Where a C function cannot be resumed after a yield (before 5.3: no
 *   lua_yieldk with a context), LX_NO_YIELDK: the driver hands a waiting
 *   call's stack back to a Lua wrapper (ldrive.c).
 * - Integers: before 5.3 every number is a double; an integer argument
 *   must still have an integer value, as on 5.3 and 5.4.
 */
#ifndef LCOMPAT_H
#define LCOMPAT_H

#include "lua.h"
#include "lauxlib.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if LUA_VERSION_NUM == 501 && defined(LUA_OK)
#define LX_LUAJIT 1             /* PUC 5.1 has no LUA_OK; LuaJIT 2.1 has */
#endif

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM < 503 && !defined(LX_NO_YIELDK)
#define LX_NO_YIELDK
#endif

#ifdef LX_NO_YIELDK
/* Every function that may wait is called through a Lua wrapper (ldrive.c),
 * so the library's argument errors would name the wrapper's call: number
 * a method's arguments from self and point at "duplex:1:". These name the
 * caller's call instead, as on 5.4; the checks below raise through them. */
int lx_argerror(lua_State *L, int arg, const char *extramsg);
int lx_error(lua_State *L, const char *fmt, ...);
#define luaL_argerror lx_argerror
#define luaL_error lx_error
#define luaL_typerror lx_typeerror
#define luaL_checktype(L, arg, t) \
  ((void)(lua_type(L, (arg)) != (t) ? lx_typeerror(L, (arg), lua_typename(L, (t))) : 0))
#define luaL_checkany(L, arg) \
  ((void)(lua_type(L, (arg)) == LUA_TNONE ? luaL_argerror(L, (arg), "value expected") : 0))
lua_Number lx_checknumber(lua_State *L, int arg);
const char *lx_checklstring(lua_State *L, int arg, size_t *len);
int lx_checkoption(lua_State *L, int arg, const char *def, const char *const list[]);
void *lx_checkudata(lua_State *L, int arg, const char *tname);
#define luaL_checknumber lx_checknumber
#define luaL_checklstring lx_checklstring
#define luaL_checkoption lx_checkoption
#define luaL_checkudata lx_checkudata
int lx_typeerror(lua_State *L, int arg, const char *tname);
#endif

#if LUA_VERSION_NUM < 504

/* User values: a table of them, made with the userdata. */
static inline int lx_absindex(lua_State *L, int idx) {
  return idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
}

static inline void *lx_newuserdatauv(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdata(L, size);
  if (nuv > 0) {
    lua_createtable(L, nuv, 0);
#if LUA_VERSION_NUM >= 502
    lua_setuservalue(L, -2);
#else
    lua_setfenv(L, -2);
#endif
  }
  return p;
}

/* Push the table of user values of the userdata at idx, or nil. */
static inline int lx_pushuvtable(lua_State *L, int idx) {
#if LUA_VERSION_NUM >= 502
  lua_getuservalue(L, idx);
#else
  lua_getfenv(L, idx);
#endif
  if (lua_type(L, -1) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  return 0;
}

static inline int lx_getiuservalue(lua_State *L, int idx, int n) {
  if (!lx_pushuvtable(L, lx_absindex(L, idx))) {
    lua_pushnil(L);
    return LUA_TNONE;
  }
  lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

static inline int lx_setiuservalue(lua_State *L, int idx, int n) {
  if (!lx_pushuvtable(L, lx_absindex(L, idx))) {
    lua_pop(L, 1);
    return 0;
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  return 1;
}

#define lua_newuserdatauv lx_newuserdatauv
#define lua_getiuservalue lx_getiuservalue
#define lua_setiuservalue lx_setiuservalue

#define luaL_pushfail(L) lua_pushnil(L)
/* Nothing of a task's stack is to be closed before 5.4. */
#define lua_closethread(co, from) ((void)(co), (void)(from), LUA_OK)

/* lua_resume with 5.4's arguments: *nres the values it yielded or returned. */
static inline int lx_resume(lua_State *co, lua_State *from, int nargs, int *nres) {
#if LUA_VERSION_NUM >= 502
  int status = lua_resume(co, from, nargs);
#else
  int status;
  (void)from;
  status = lua_resume(co, nargs);
#endif
  *nres = lua_gettop(co);
  return status;
}
#define lua_resume lx_resume

int lx_typeerror(lua_State *L, int arg, const char *tname);
#define luaL_typeerror lx_typeerror

#elif LUA_VERSION_RELEASE_NUM < 50406
#define lua_closethread(co, from) ((void)(from), lua_resetthread(co))
#endif /* LUA_VERSION_NUM < 504 */

#if LUA_VERSION_NUM < 502
#define lua_absindex lx_absindex
#endif

#if LUA_VERSION_NUM < 503

/* A metatable made by name is named (__name) from 5.3 on. */
static inline int lx_newmetatable(lua_State *L, const char *tname) {
  if (!luaL_newmetatable(L, tname)) return 0;
  lua_pushstring(L, tname);
  lua_setfield(L, -2, "__name");
  return 1;
}
#define luaL_newmetatable lx_newmetatable

typedef intptr_t lua_KContext;
#define LUA_MAXINTEGER PTRDIFF_MAX

/* A number with an integer value; a string is not one (5.3 converts it,
 * but no integer argument of duplex takes a string). */
static inline int lx_isinteger(lua_State *L, int idx) {
  lua_Number n;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  n = lua_tonumber(L, idx);
  return n == floor(n) && n >= -9007199254740992.0 && n <= 9007199254740992.0;
}
#define lua_isinteger lx_isinteger

static inline lua_Integer lx_checkinteger(lua_State *L, int arg) {
  if (!lx_isinteger(L, arg)) {
    if (lua_isnumber(L, arg))
      luaL_argerror(L, arg, "number has no integer representation");
    else
      lx_typeerror(L, arg, "number");
  }
  return (lua_Integer)lua_tonumber(L, arg);
}
#define luaL_checkinteger lx_checkinteger

static inline lua_Integer lx_optinteger(lua_State *L, int arg, lua_Integer def) {
  return lua_isnoneornil(L, arg) ? def : lx_checkinteger(L, arg);
}
#define luaL_optinteger lx_optinteger

/* The rotations the binding uses: n > 0 toward the top, n < 0 away. */
static inline void lx_rotate(lua_State *L, int idx, int n) {
  idx = lx_absindex(L, idx);
  for (; n > 0; n--) lua_insert(L, idx);
  for (; n < 0; n++) {
    lua_pushvalue(L, idx);
    lua_remove(L, idx);
  }
}
#define lua_rotate lx_rotate

/* 5.2's and LuaJIT's own say that any number is one. */
static inline lua_Integer lx_tointegerx(lua_State *L, int idx, int *isnum) {
  int ok = lx_isinteger(L, idx);
  if (isnum) *isnum = ok;
  return ok ? (lua_Integer)lua_tonumber(L, idx) : 0;
}
#define lua_tointegerx lx_tointegerx

#if LUA_VERSION_NUM == 501
#define lua_rawlen(L, idx) lua_objlen(L, idx)
#endif

#if LUA_VERSION_NUM == 501 && !defined(LX_LUAJIT)

static inline void lx_copy(lua_State *L, int from, int to) {
  to = lx_absindex(L, to);
  lua_pushvalue(L, from);
  lua_replace(L, to);
}
#define lua_copy lx_copy

static inline void lx_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  int i;
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name != NULL; l++) {
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#define luaL_setfuncs lx_setfuncs

void lx_traceback(lua_State *L, lua_State *co, const char *msg, int level);
#define luaL_traceback lx_traceback
#endif /* PUC 5.1 */

/* Can the running coroutine yield from this C function? LuaJIT says so
 * itself; 5.2 yields across everything but C without a continuation
 * (where lua_yield itself then says so); PUC 5.1 counts the C calls that a
 * yield cannot cross (pcall, metamethods, for-in iterators). */
#if !defined(LX_LUAJIT)
int lx_isyieldable(lua_State *L);
#define lua_isyieldable lx_isyieldable
#endif

#endif /* LUA_VERSION_NUM < 503 */

#endif
