/*
 * lxaux.c - helpers every binding file shares, and nothing else: results
 * and errors, argument and option checks, address parsing. Like lauxlib,
 * it knows none of the files that use it.
 */
#include "dx_prefix.h"
#include "lxaux.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* --- results --------------------------------------------------------------- */

int lx_fail(lua_State *L, const char *op, const char *label, int code) {
  luaL_pushfail(L);
  if (label && label[0])
    lua_pushfstring(L, "%s %s: %s", op, label, dx_strerror(code));
  else
    lua_pushfstring(L, "%s: %s", op, dx_strerror(code));
  lua_pushstring(L, dx_errname(code));
  return 3;
}

int lx_push_addr(lua_State *L, const dx_addr *a) {
  char host[112];
  const char *family;
  int port;
  dx_addr_text(a, host, sizeof host, &port, &family);
  lua_pushstring(L, host);
  if (port >= 0) lua_pushinteger(L, port);
  else lua_pushnil(L);
  lua_pushstring(L, family);
  return 3;
}

/* --- arguments --------------------------------------------------------------- */

/* (The message of a non-number is left on the stack; callers raise.) */
const char *lx_timeout_error(lua_State *L, int idx, double *out) {
  double t;
  if (lua_isnoneornil(L, idx)) {
    *out = -1;
    return NULL;
  }
  if (lua_type(L, idx) != LUA_TNUMBER)
    return lua_pushfstring(L, "number expected, got %s", luaL_typename(L, idx));
  t = lua_tonumber(L, idx);
  if (!(t >= 0)) return "timeout must be a non-negative number";   /* NaN too */
  *out = t;
  return NULL;
}

const char *lx_deadline_error(lua_State *L, int idx, double *out) {
  double at;
  *out = -1;
  if (lua_isnoneornil(L, idx) || (lua_isboolean(L, idx) && !lua_toboolean(L, idx))) return NULL;
  if (lua_type(L, idx) != LUA_TNUMBER || !((at = lua_tonumber(L, idx)) >= 0))
    return "deadline must be a duplex.now() time or false";
  *out = at > 0 ? at : DBL_MIN;          /* 0: long past, not "never wait" */
  return NULL;
}

double lx_opt_timeout(lua_State *L, int arg) {
  double t;
  const char *why = lx_timeout_error(L, arg, &t);
  if (why) luaL_argerror(L, arg, why);
  return t;
}

const char *lx_checkcstring(lua_State *L, int arg, const char *what) {
  size_t len;
  const char *s = luaL_checklstring(L, arg, &len);
  if (strlen(s) != len)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s contains a zero byte", what));
  return s;
}

void lx_check_opts(lua_State *L, int arg, const char *const known[]) {
  if (lua_isnoneornil(L, arg)) return;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    size_t len;
    int i, ok = 0;
    const char *key;
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, arg, "option names must be strings");
    key = lua_tolstring(L, -1, &len);
    for (i = 0; known[i] && !ok; i++)
      ok = strlen(known[i]) == len && memcmp(known[i], key, len) == 0;
    if (!ok) luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", key));
  }
}

int lx_opt_bool(lua_State *L, int arg, const char *key, int dflt) {
  int v = dflt;
  if (lua_isnoneornil(L, arg)) return dflt;
  lua_getfield(L, arg, key);
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1))
      luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a boolean", key));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

void lx_check_port(lua_State *L, int portarg) {
  lua_Integer port = luaL_checkinteger(L, portarg);
  luaL_argcheck(L, port >= 0 && port <= 65535, portarg, "port out of range");
}
