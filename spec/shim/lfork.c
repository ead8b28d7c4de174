/*
 * lfork.c - fork() for the resolver specs (Lua itself cannot fork): a Lua
 * module with
 *   lfork.fork()        -> 0 in the child, the child's pid in the parent
 *                          (or nil, errno text)
 *   lfork.wait(pid)     -> "exit", code | "signal", signo (waitpid, blocking)
 *   lfork._exit(code)   ends the process at once (no atexit, no lua_close)
 * Build: make shims (build/shim/lfork.so)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>

static int l_fork(lua_State *L) {
  pid_t pid;
  fflush(NULL);
  pid = fork();
  if (pid < 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

static int l_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int st;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) {
      lua_pushnil(L);
      lua_pushstring(L, strerror(errno));
      return 2;
    }
  }
  if (WIFEXITED(st)) {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(st));
  } else {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WIFSIGNALED(st) ? WTERMSIG(st) : -1);
  }
  return 2;
}

static int l_exit(lua_State *L) {
  fflush(NULL);
  _exit((int)luaL_optinteger(L, 1, 0));
  return 0;
}

int luaopen_lfork(lua_State *L);
int luaopen_lfork(lua_State *L) {
  static const luaL_Reg fns[] = {{"fork", l_fork}, {"wait", l_wait}, {"_exit", l_exit}, {NULL, NULL}};
  const luaL_Reg *f;
  lua_newtable(L);                  /* every Lua from 5.1 on */
  for (f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
  return 1;
}
