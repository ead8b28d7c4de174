/*
 * lcompat.c - what lcompat.h cannot make inline: on PUC Lua 5.1 a
 * traceback and whether a yield is possible; on 5.2 the latter. Empty on
 * the other versions.
 */
#include "dx_prefix.h"
#include "lcompat.h"

#include <stdarg.h>
#include <string.h>

#if LUA_VERSION_NUM < 504 || defined(LX_NO_YIELDK)
int lx_typeerror(lua_State *L, int arg, const char *tname) {
  const char *got;
  if (luaL_getmetafield(L, arg, "__name") && lua_type(L, -1) == LUA_TSTRING)
    got = lua_tostring(L, -1);
  else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
    got = "light userdata";
  else
    got = luaL_typename(L, arg);
  return luaL_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", tname, got));
}
#endif

#ifdef LX_NO_YIELDK
/* The level of the Lua code that called the running C function: 2 when a
 * wrapper of ldrive.c stands between (its chunk is "=duplex"), else 1. */
static int caller_level(lua_State *L, lua_Debug *ar) {
  if (lua_getstack(L, 1, ar)) {
    lua_getinfo(L, "Sn", ar);
    if (strcmp(ar->source, "=duplex") == 0) return 2;
  }
  return 1;
}

static int raise_at(lua_State *L, int level) {
  luaL_where(L, level);
  lua_insert(L, -2);
  lua_concat(L, 2);
  return lua_error(L);
}

int lx_error(lua_State *L, const char *fmt, ...) {
  lua_Debug ar;
  int level = caller_level(L, &ar);
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return raise_at(L, level);
}

/* A call that left no name (a tail call, a call from C such as pcall):
 * when argument 1 is an object whose methods hold the function at `level`
 * (the wrapper or the C function), the function's name there, counting
 * its arguments from self as a method call does; else NULL. */
static const char *method_name(lua_State *L, int level) {
  lua_Debug ar;
  const char *name = NULL;
  int top = lua_gettop(L);
  if (lua_type(L, 1) != LUA_TUSERDATA || !luaL_getmetafield(L, 1, "__index")) return NULL;
  if (lua_istable(L, -1) && lua_getstack(L, level, &ar) && lua_getinfo(L, "f", &ar)) {
    lua_pushnil(L);
    while (lua_next(L, -3)) {
      if (lua_rawequal(L, -1, -3) && lua_type(L, -2) == LUA_TSTRING) {
        name = lua_tostring(L, -2);      /* a key of a table still referenced */
        break;
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
  return name;
}

/* Was the function at level - 1 called by a C function (pcall)? */
static int called_from_c(lua_State *L, int level) {
  lua_Debug ar;
  if (!lua_getstack(L, level, &ar)) return 1;
  lua_getinfo(L, "S", &ar);
  return strcmp(ar.what, "C") == 0;
}

/* As 5.4 names a function called without a name: where a loaded module
 * holds it ("duplex.core.resolve"); else NULL. */
static const char *module_name(lua_State *L, int level) {
  lua_Debug ar;
  const char *name = NULL;
  int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1) && lua_getstack(L, level, &ar) && lua_getinfo(L, "f", &ar)) {
    lua_pushnil(L);                                  /* loaded, f, module name */
    while (name == NULL && lua_next(L, -3)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
          if (lua_rawequal(L, -1, top + 2) && lua_type(L, -2) == LUA_TSTRING) {
            name = lua_pushfstring(L, "%s.%s", lua_tostring(L, -4), lua_tostring(L, -2));
            lua_replace(L, top + 1);                 /* kept until the error */
            break;
          }
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, name ? top + 1 : top);
  return name;
}

int lx_argerror(lua_State *L, int arg, const char *extramsg) {
  lua_Debug ar;
  int level = caller_level(L, &ar);
  if (level == 1) {                      /* not wrapped: the call itself */
    if (!lua_getstack(L, 0, &ar)) {
      lua_pushfstring(L, "bad argument #%d (%s)", arg, extramsg);
      return lua_error(L);
    }
    lua_getinfo(L, "n", &ar);
  }
  if (ar.name == NULL && !called_from_c(L, level) &&
      (ar.name = method_name(L, level - 1)) != NULL)
    ar.namewhat = "method";              /* a tail call: most are c:m(...) */
  else if (ar.name == NULL)
    ar.name = module_name(L, level - 1);  /* pcall(c.m, c, ...): as 5.4 counts */
  if (ar.namewhat != NULL && strcmp(ar.namewhat, "method") == 0) {
    arg--;
    if (arg == 0) {
      lua_pushfstring(L, "calling '%s' on bad self (%s)", ar.name, extramsg);
      return raise_at(L, level);
    }
  }
  lua_pushfstring(L, "bad argument #%d to '%s' (%s)", arg, ar.name ? ar.name : "?", extramsg);
  return raise_at(L, level);
}

lua_Number lx_checknumber(lua_State *L, int arg) {
  if (!lua_isnumber(L, arg)) lx_typeerror(L, arg, "number");
  return lua_tonumber(L, arg);
}

const char *lx_checklstring(lua_State *L, int arg, size_t *len) {
  const char *s = lua_tolstring(L, arg, len);
  if (s == NULL) lx_typeerror(L, arg, "string");
  return s;
}

int lx_checkoption(lua_State *L, int arg, const char *def, const char *const list[]) {
  const char *name = def && lua_isnoneornil(L, arg) ? def : lx_checklstring(L, arg, NULL);
  int i;
  for (i = 0; list[i]; i++)
    if (strcmp(list[i], name) == 0) return i;
  return luaL_argerror(L, arg, lua_pushfstring(L, "invalid option '%s'", name));
}

void *lx_checkudata(lua_State *L, int arg, const char *tname) {
  void *p = lua_touserdata(L, arg);
  if (p != NULL && lua_getmetatable(L, arg)) {
    int same;
    lua_getfield(L, LUA_REGISTRYINDEX, tname);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return p;
  }
  lx_typeerror(L, arg, tname);
  return NULL;
}
#endif

#if LUA_VERSION_NUM < 503 && !defined(LX_LUAJIT)

/* The main thread cannot yield. */
static int is_main(lua_State *L) {
  int main = lua_pushthread(L);
  lua_pop(L, 1);
  return main;
}

#if LUA_VERSION_NUM == 501
/* The head of PUC 5.1's lua_State (lstate.h), final since 5.1.5: a yield
 * raises "attempt to yield across metamethod/C-call boundary" when
 * nCcalls > baseCcalls, which the API does not expose. Asked here before
 * the driver commits to a wait, so that the wait is refused cleanly. */
struct lx_state51 {
  void *next;
  unsigned char tt, marked, status;
  void *top, *base, *l_G, *ci;
  const void *savedpc;
  void *stack_last, *stack, *end_ci, *base_ci;
  int stacksize, size_ci;
  unsigned short nCcalls, baseCcalls;
};

int lx_isyieldable(lua_State *L) {
  const struct lx_state51 *s = (const struct lx_state51 *)(const void *)L;
  return !is_main(L) && s->nCcalls <= s->baseCcalls;
}

/* luaL_traceback as 5.2 writes it, from the debug interface. */
void lx_traceback(lua_State *L, lua_State *co, const char *msg, int level) {
  lua_Debug ar;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (msg) {
    luaL_addstring(&b, msg);
    luaL_addchar(&b, '\n');
  }
  luaL_addstring(&b, "stack traceback:");
  while (lua_getstack(co, level++, &ar)) {
    lua_getinfo(co, "Sln", &ar);
    lua_pushfstring(L, "\n\t%s:", ar.short_src);
    luaL_addvalue(&b);
    if (ar.currentline > 0) {
      lua_pushfstring(L, "%d:", ar.currentline);
      luaL_addvalue(&b);
    }
    if (*ar.namewhat != '\0') lua_pushfstring(L, " in function '%s'", ar.name);
    else if (*ar.what == 'm') lua_pushliteral(L, " in main chunk");
    else if (*ar.what == 'C') lua_pushliteral(L, " in ?");
    else lua_pushfstring(L, " in function <%s:%d>", ar.short_src, ar.linedefined);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
}
#else
int lx_isyieldable(lua_State *L) { return !is_main(L); }
#endif

#endif

typedef int lx_compat_unused;    /* ISO C: no empty translation unit */
