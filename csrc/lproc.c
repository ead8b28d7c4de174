/*
 * lproc.c - what duplex.cluster (lua/duplex/cluster.lua) needs of
 * processes, as functions of duplex.core that are not the public API:
 * (proc_*) spawn a worker that keeps some descriptors, reap one without waiting,
 * signal one, a socket pair to talk to it, and the count of processors.
 * It never waits and never installs a signal handler.
 */
#include "dx_prefix.h"
#include "lproc.h"
#include "lxaux.h"
#include "dx_proc.h"
#include "dx_sig.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* spawn(argv, setenv, keep) -> pid, or nil, msg, code. argv: a list of
 * strings (argv[1] is searched in PATH); setenv: { NAME = value } put in
 * the child's environment (over this process's); keep: a list of
 * descriptors the child keeps. Every array lives in userdata: an error
 * raised while they are built leaks nothing. */
static int k_spawn(lua_State *L) {
  int nargs, nset = 0, nkeep, nenv = 0, i, j, *keep;
  char **argv, **envp;
  pid_t pid;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  nargs = (int)lua_rawlen(L, 1);
  nkeep = (int)lua_rawlen(L, 3);
  luaL_argcheck(L, nargs > 0, 1, "empty argv");
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING, 2,
                  "names and values must be strings");
    nset++;
    lua_pop(L, 1);
  }
  while (environ && environ[nenv]) nenv++;
  argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(nargs + 1), 0);           /* 4 */
  envp = lua_newuserdatauv(L, sizeof(char *) * (size_t)(nenv + nset + 1), 0);     /* 5 */
  keep = lua_newuserdatauv(L, sizeof(int) * (size_t)(nkeep + 1), 0);              /* 6 */
  lua_newtable(L);                                  /* 7: keeps the strings made here */
  for (i = 0; i < nargs; i++) {
    lua_rawgeti(L, 1, i + 1);
    argv[i] = (char *)lx_checkcstring(L, -1, "argv");
    lua_rawseti(L, 7, i + 1);
  }
  argv[nargs] = NULL;
  for (i = 0; i < nkeep; i++) {
    lua_rawgeti(L, 3, i + 1);
    keep[i] = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  j = 0;
  for (i = 0; i < nenv; i++) {          /* this process's, less what is set */
    const char *eq = strchr(environ[i], '=');
    if (eq) {
      lua_pushlstring(L, environ[i], (size_t)(eq - environ[i]));
      lua_rawget(L, 2);
      if (!lua_isnil(L, -1)) {
        lua_pop(L, 1);
        continue;
      }
      lua_pop(L, 1);
    }
    envp[j++] = environ[i];
  }
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
    envp[j++] = (char *)lua_tostring(L, -1);
    lua_rawseti(L, 7, nargs + j);
    lua_pop(L, 1);
  }
  envp[j] = NULL;
  pid = dx_spawn(argv, envp, keep, nkeep);
  if (pid < 0) return lx_fail(L, "spawn", argv[0], (int)pid);
  lua_pushinteger(L, pid);
  return 1;
}

/* reap(pid) -> false while it runs; "exit", status or "signal", name once
 * it has ended (then it is reaped); nil, msg, code. */
static int k_reap(lua_State *L) {
  int how = 0, code = 0;
  int rc = dx_reap((pid_t)luaL_checkinteger(L, 1), &how, &code);
  if (rc < 0) return lx_fail(L, "waitpid", NULL, rc);
  if (rc == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (how == 0) {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, code);
  } else {
    const char *name = dx_signame(code);
    lua_pushliteral(L, "signal");
    if (strcmp(name, "?") != 0) lua_pushstring(L, name);
    else if (code == SIGKILL) lua_pushliteral(L, "KILL");
    else if (code == SIGSEGV) lua_pushliteral(L, "SEGV");
    else if (code == SIGABRT) lua_pushliteral(L, "ABRT");
    else lua_pushinteger(L, code);
  }
  return 2;
}

/* kill(pid, name) -> true, or nil, msg, code */
static int k_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  const char *name = luaL_checkstring(L, 2);
  int signo = strcmp(name, "KILL") == 0 ? SIGKILL : dx_signo(name), rc;   /* (KILL: none to watch) */
  luaL_argcheck(L, signo != 0, 2, "unknown signal");
  luaL_argcheck(L, pid > 0, 1, "pid must be positive");
  rc = dx_kill(pid, signo);
  if (rc < 0) return lx_fail(L, "kill", lua_tostring(L, 2), rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* socketpair() -> fd, fd (close-on-exec, non-blocking), or nil, msg, code */
static int k_socketpair(lua_State *L) {
  int fds[2], rc = dx_socketpair(fds);
  if (rc < 0) return lx_fail(L, "socketpair", NULL, rc);
  lua_pushinteger(L, fds[0]);
  lua_pushinteger(L, fds[1]);
  return 2;
}

static int k_ncpu(lua_State *L) {
  lua_pushinteger(L, dx_ncpu());
  return 1;
}

static int k_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int k_getppid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getppid());
  return 1;
}

static const luaL_Reg funcs[] = {
  {"proc_spawn", k_spawn},
  {"proc_reap", k_reap},
  {"proc_kill", k_kill},
  {"proc_socketpair", k_socketpair},
  {"proc_ncpu", k_ncpu},
  {"proc_getpid", k_getpid},
  {"proc_getppid", k_getppid},
  {NULL, NULL}
};

/* Stack on entry: module, state. */
void lx_open_proc(lua_State *L) {
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
