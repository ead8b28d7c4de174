/*
 * ltls.h - TLS in the binding (ltls.c): duplex.tls.context, the `tls`
 * option of connect and listen, and starting TLS on a client. Built
 * without OpenSSL, duplex.tls is nil and these raise where a `tls` option
 * would be used.
 */
#ifndef LTLS_H
#define LTLS_H

#include "lclient.h"

struct dx_tls_ctx;
/* Check the `tls` option at idx (true, a table, a tlscontext) and replace
 * it with the context userdata; arg names it in errors. A server's must
 * be able to serve (a certificate and a key). */
void lx_tls_option(lua_State *L, int idx, int arg, int server);
/* The context of the option at idx, with a reference the caller keeps
 * until lx_tls_unref (NULL: nothing). */
struct dx_tls_ctx *lx_tls_ref(lua_State *L, int idx);
void lx_tls_unref(struct dx_tls_ctx *ctx);
/* Start TLS on c as the client of host (a name, or an address's text),
 * with the option at idx: SNI and the name checked are the context's
 * servername, else host. Raises "connect: <why>" when it cannot. */
void lx_tls_connect(lua_State *L, lx_client *c, int idx, const char *host);
/* Start TLS on c, accepted by a server of ctx (the handshake runs on
 * first use): 0, or a code. What c has received already (the bytes after
 * a PROXY header) goes to TLS first. */
int lx_tls_accept(lx_client *c, struct dx_tls_ctx *ctx);

void lx_open_tls(lua_State *L);

#endif
