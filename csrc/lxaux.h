/*
 * lxaux.h - helpers every binding file shares, like lauxlib's: results and
 * errors, and checks of arguments and options. It calls into no other
 * binding file.
 */
#ifndef LXAUX_H
#define LXAUX_H

#include "lduplex.h"

/* nil, "<op> <label>: <strerror>", code  (3 results) */
int lx_fail(lua_State *L, const char *op, const char *label, int code);
/* Push host, port, family (3 results). */
int lx_push_addr(lua_State *L, const dx_addr *a);
/* A timeout argument: nil -> -1 (none); else a number >= 0 (math.huge:
 * none). NaN, negatives and non-numbers raise. */
double lx_opt_timeout(lua_State *L, int arg);
/* The same check for a value at idx; NULL if good, else why not. */
const char *lx_timeout_error(lua_State *L, int idx, double *out);
/* A deadline at idx: a duplex.now() time (>= 0), or nil/false for none
 * (-1). NULL if good, else why not. */
const char *lx_deadline_error(lua_State *L, int idx, double *out);
/* A string argument without embedded zero bytes ("what contains a zero
 * byte" otherwise). */
const char *lx_checkcstring(lua_State *L, int arg, const char *what);
/* Raise "unknown option" for keys of table `arg` not in `known`. */
void lx_check_opts(lua_State *L, int arg, const char *const known[]);
int lx_opt_bool(lua_State *L, int arg, const char *key, int dflt);
/* Check a port argument: an integer 0..65535. */
void lx_check_port(lua_State *L, int portarg);

#endif
