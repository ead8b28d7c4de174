/*
 * lproxy.h - the PROXY protocol in the binding (lproxy.c): listen's
 * options, what accept does for a listener that has them, the header read
 * as an operation of the driver, and client:proxyinfo().
 */
#ifndef LPROXY_H
#define LPROXY_H

#include "lclient.h"

struct dx_tls_ctx;

/* A listener's PROXY settings: who may send a header, and how long it
 * may take. Owned by the server (free). */
typedef struct lx_proxy_cfg {
  double timeout;
  int n;
  dx_cidr from[];
} lx_proxy_cfg;

/* listen's options proxy, proxy_from and proxy_timeout in the table at
 * opts (argument arg, for errors; raises for bad ones): NULL when proxy
 * is not on, else the settings in memory the caller owns (raises for
 * out of memory, nothing held). */
lx_proxy_cfg *lx_proxy_options(lua_State *L, int opts, int arg);
/* A client just accepted by a listener with cfg, from peer: its PROXY
 * state, pending (TLS with tls, a reference taken, starts after the
 * header). 0, or -ENOMEM. */
int lx_proxy_accept(lx_client *c, const lx_proxy_cfg *cfg, const dx_addr *peer,
                    struct dx_tls_ctx *tls);
/* Read the header of the client at idx (the driver may wait): the rest
 * of the stack is dropped, and the call returns the client, or nil, msg,
 * code with the client closed (a peer that is no trusted proxy: EACCES;
 * a header that is not one: EPROTO; none in time: ETIMEDOUT). */
int lx_proxy_read(lua_State *L, int idx);
/* What serve passes accept as its third argument: the header is read
 * later, in the connection's task (core.proxy_wait). */
extern const char lx_proxy_later;

void lx_open_proxy(lua_State *L);

#endif
