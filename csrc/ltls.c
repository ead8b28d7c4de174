/*
 * ltls.c - TLS in the binding: duplex.tls.context(opts) (a duplex.tlscontext),
 * the `tls` option of connect and listen, and the client methods
 * handshake, starttls and tlsinfo. Reading and writing a TLS client are
 * lread.c's and lwrite.c's, through its dx_stream; every wait is the
 * driver's, in whichever direction OpenSSL asks. The rest of the binding
 * knows TLS only through the functions below (lduplex.h); built without
 * OpenSSL (no DX_TLS), duplex.tls is nil and they refuse a `tls` option.
 */
#include "dx_prefix.h"
#include "ltls.h"
#include "ldrive.h"
#include "lxaux.h"

#ifdef DX_TLS

#include "dx_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#define LX_TLSCONTEXT "duplex.tlscontext"

typedef struct lx_tlsctx {
  dx_tls_ctx *ctx;
  char servername[256];       /* for the clients it makes; "" none */
  int checkname;              /* a client checks the name, not only the chain */
} lx_tlsctx;

static const char *const ctx_opts[] = {
  "cafile", "capath", "certificate", "key", "password", "verify", "servername",
  "alpn", "minversion", "maxversion", "ciphers", "ciphersuites", "ignore_eof", "checkname", "ticket_key", NULL
};

/* A string option of the table at t, or NULL. */
static const char *optstr(lua_State *L, int t, int arg, const char *key) {
  const char *v = NULL;
  lua_getfield(L, t, key);
  if (!lua_isnil(L, -1)) {
    size_t len;
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a string", key));
    v = lua_tolstring(L, -1, &len);
    if (strlen(v) != len)
      luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' contains a zero byte", key));
  }
  lua_pop(L, 1);              /* the table keeps the string alive */
  return v;
}

/* alpn = {"h2", "http/1.1"} in wire format, pushed as a string (or nil). */
static void alpn_wire(lua_State *L, int t, int arg) {
  char wire[1024];
  size_t n = 0;
  int i;
  lua_getfield(L, t, "alpn");
  if (lua_isnil(L, -1)) return;
  if (!lua_istable(L, -1)) luaL_argerror(L, arg, "option 'alpn' must be a list of strings");
  for (i = 1; lua_rawgeti(L, -1, i), !lua_isnil(L, -1); i++) {
    size_t len;
    const char *p = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) != LUA_TSTRING || len == 0 || len > 255 || n + 1 + len > sizeof wire)
      luaL_argerror(L, arg, "option 'alpn' must be a list of protocol names (1 to 255 bytes)");
    wire[n++] = (char)len;
    memcpy(wire + n, p, len);
    n += len;
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  lua_pushlstring(L, wire, n);
}

/* A context from the options table at t; pushes the userdata. */
static lx_tlsctx *new_context(lua_State *L, int t, int arg) {
  dx_tls_opts o;
  lx_tlsctx *x;
  const char *sn;
  char err[256];
  int top;
  memset(&o, 0, sizeof o);
  lx_check_opts(L, t, ctx_opts);
  o.cafile = optstr(L, t, arg, "cafile");
  o.capath = optstr(L, t, arg, "capath");
  o.certificate = optstr(L, t, arg, "certificate");
  o.key = optstr(L, t, arg, "key");
  o.password = optstr(L, t, arg, "password");
  o.minversion = optstr(L, t, arg, "minversion");
  o.maxversion = optstr(L, t, arg, "maxversion");
  o.ciphers = optstr(L, t, arg, "ciphers");
  o.ciphersuites = optstr(L, t, arg, "ciphersuites");
  sn = optstr(L, t, arg, "servername");
  o.ignore_eof = lx_opt_bool(L, t, "ignore_eof", 0);
  lua_getfield(L, t, "ticket_key");       /* (the table keeps the string) */
  if (!lua_isnil(L, -1)) {
    size_t len = 0;
    if (lua_type(L, -1) != LUA_TSTRING || (lua_tolstring(L, -1, &len), len != DX_TLS_TICKET_KEY))
      luaL_argerror(L, arg, "option 'ticket_key' must be a string of 80 bytes");
    o.ticket_key = (const unsigned char *)lua_tostring(L, -1);
  }
  lua_pop(L, 1);
  o.verify = -1;
  lua_getfield(L, t, "verify");
  if (lua_isboolean(L, -1)) o.verify = lua_toboolean(L, -1);
  else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "optional") == 0) o.verify = 2;
  else if (!lua_isnil(L, -1)) luaL_argerror(L, arg, "option 'verify' must be true, false or \"optional\"");
  lua_pop(L, 1);
  top = lua_gettop(L);
  alpn_wire(L, t, arg);
  if (!lua_isnil(L, -1)) o.alpn = (const unsigned char *)lua_tolstring(L, -1, &o.alpnlen);
  x = lua_newuserdatauv(L, sizeof *x, 0);
  x->ctx = NULL;
  x->servername[0] = '\0';
  x->checkname = lx_opt_bool(L, t, "checkname", 1);
  lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_TLSCTX_MT);
  lua_setmetatable(L, -2);
  x->ctx = dx_tls_ctx_new(&o, err, sizeof err);
  if (x->ctx == NULL) luaL_error(L, "duplex.tls.context: %s", err);
  if (sn) snprintf(x->servername, sizeof x->servername, "%s", sn);
  lua_replace(L, top + 1);                  /* where the alpn string was */
  return x;
}

/* The `tls` option at idx: true (the default client context), a table
 * (a context for this call) or a tlscontext. Replaces it with the context
 * userdata and returns it. */
static lx_tlsctx *tls_option(lua_State *L, int idx, int arg) {
  lx_state *S = lx_state_of(L);
  lx_tlsctx *x = NULL;
  if (lua_isuserdata(L, idx) && lua_getmetatable(L, idx)) {
    int ok = lua_topointer(L, -1) == S->tlsctx_mt;
    lua_pop(L, 1);
    if (ok) return (lx_tlsctx *)lua_touserdata(L, idx);
  }
  if (lua_toboolean(L, idx) && lua_isboolean(L, idx)) {
    lua_getiuservalue(L, lua_upvalueindex(1), LX_UV_TLS_DEFAULT);  /* made once */
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
      x = new_context(L, lua_gettop(L), arg);
      lua_remove(L, -2);
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, lua_upvalueindex(1), LX_UV_TLS_DEFAULT);
    }
  } else if (lua_istable(L, idx)) {
    x = new_context(L, idx, arg);
  } else {
    luaL_argerror(L, arg, "option 'tls' must be true, a table or a duplex.tlscontext");
  }
  lua_replace(L, idx);
  return x ? x : (lx_tlsctx *)lua_touserdata(L, idx);
}

void lx_tls_option(lua_State *L, int idx, int arg, int server) {
  lx_tlsctx *x = tls_option(L, idx, arg);
  if (server && !dx_tls_ctx_can_serve(x->ctx))
    luaL_argerror(L, arg, "option 'tls': a server's context needs a certificate and a key");
}

dx_tls_ctx *lx_tls_ref(lua_State *L, int idx) {
  dx_tls_ctx *ctx = ((lx_tlsctx *)lua_touserdata(L, idx))->ctx;
  dx_tls_ctx_ref(ctx);
  return ctx;
}

void lx_tls_unref(dx_tls_ctx *ctx) { dx_tls_ctx_unref(ctx); }

/* Start TLS on client c as a client (server 0) or server. NULL or the
 * reason. ahead: bytes already received, fed to TLS first. checkname 0:
 * a client checks the chain only (no name). */
static const char *start(lx_client *c, dx_tls_ctx *ctx, int server, const char *servername,
                         const char *host, int checkname, const char *ahead, size_t aheadlen,
                         char *err, size_t errlen) {
  unsigned char ip[16];
  const char *sni = servername;
  dx_tls *t;
  if (sni == NULL && host && inet_pton(AF_INET, host, ip) != 1 && inet_pton(AF_INET6, host, ip) != 1)
    sni = host;                             /* SNI for names, never for IPs */
  t = dx_tls_new(ctx, server, c->s.w.fd, sni, !checkname ? NULL : servername ? servername : host,
                 ahead, aheadlen, err, errlen);
  if (t == NULL) return err;
  dx_stream_starttls(&c->st, t);
  return NULL;
}

void lx_tls_connect(lua_State *L, lx_client *c, int idx, const char *host) {
  lx_tlsctx *x = lua_touserdata(L, idx);
  char err[256];
  if (start(c, x->ctx, 0, x->servername[0] ? x->servername : NULL, host, x->checkname, NULL, 0,
            err, sizeof err))
    luaL_error(L, "connect: %s", err);
}

/* Bytes c has received already (after a PROXY header) are TLS's. */
int lx_tls_accept(lx_client *c, dx_tls_ctx *ctx) {
  char err[256];
  if (start(c, ctx, 1, NULL, NULL, 1, dx_buf_peek(&c->rb), dx_buf_len(&c->rb), err, sizeof err))
    return -ENOMEM;
  dx_buf_free(&c->rb);
  return 0;
}

/* --- handshake, starttls, tlsinfo ----------------------------------------------- */

#define check_client(L) ((lx_client *)lx_checksock(L, lx_state_of(L), &lx_client_class))

/* k[0]: what the handshake last waited for (1 read, 2 write), for a
 * handshake that stops there (handshake_fail). */
static int try_handshake(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  int r = dx_stream_handshake(&c->st);
  (void)L;
  k->k[0] = r == DX_WANT_READ ? 1 : r == DX_WANT_WRITE ? 2 : 0;
  if (r == DX_WANT_READ) return LX_WAIT_READ;
  if (r == DX_WANT_WRITE) return LX_WAIT_WRITE;
  if (r == 0) lx_client_moved(k->S, c);
  return r;
}

/* A handshake that cannot go on at timeout 0 (EAGAIN) says which way it
 * waits, as a fourth result: "read" or "write", for a caller that waits
 * with its own poll (LuaSec's dohandshake, as copas drives it). */
static int handshake_fail(lua_State *L, lx_call *k, int code) {
  int n = lx_sockfail(L, k->sock, k->op->name, code);
  if (code == -EAGAIN && k->k[0] != 0) {
    lua_pushstring(L, k->k[0] == 2 ? "write" : "read");
    n++;
  }
  return n;
}

static const lx_op op_handshake = {
  .name = "tls handshake", .dir = LX_READERS, .sockarg = 1, .try = try_handshake,
  .push = lx_push_self, .fail = handshake_fail,
};

/* handshake([timeout]) -> self, or nil, msg, code [, "read" | "write"] */
static int c_handshake(lua_State *L) {
  lx_client *c = (lx_client *)lx_checksock(L, lx_state_of(L), &lx_client_class);
  double timeout = lua_isnoneornil(L, 2) ? c->s.timeout : lx_opt_timeout(L, 2);
  if (c->s.w.fd >= 0 && dx_stream_tls(&c->st) == NULL) return luaL_error(L, "handshake: not a TLS client");
  lua_settop(L, 1);
  return lx_drive(L, &op_handshake, lx_deadline(timeout));
}

/* starttls(ctx_or_opts [, timeout [, ahead]]) -> self, or nil, msg, code
 * [, "read" | "write"]. Bytes already received go to TLS as ciphertext,
 * never back to the program; ahead (a string: bytes the program read and
 * gives back, a ClientHello it looked at) goes before them. */
static int c_starttls(lua_State *L) {
  lx_client *c = check_client(L);
  double timeout = lua_isnoneornil(L, 3) ? c->s.timeout : lx_opt_timeout(L, 3);
  lx_tlsctx *x;
  int server = c->accepted;   /* the side that accepted is TLS's server */
  char err[256], host[112];
  const char *why, *ahead;
  size_t aheadlen;
  if (dx_stream_tls(&c->st)) return luaL_error(L, "starttls: already a TLS client");
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TSTRING);
  lua_settop(L, 4);
  x = tls_option(L, 2, 1);
  if (c->s.w.fd < 0) return lx_closed(L, &c->s, "starttls");
  if (server && !dx_tls_ctx_can_serve(x->ctx))
    return luaL_argerror(L, 1, "a server's starttls needs a context with a certificate");
  host[0] = '\0';
  if (!server) {
    int port;
    const char *family;
    dx_addr a;
    if (c->peer.sin6_family != 0) {
      memset(&a, 0, sizeof a);
      memcpy(&a.ss, &c->peer, sizeof c->peer);
      a.len = sizeof c->peer;
      dx_addr_text(&a, host, sizeof host, &port, &family);
    }
  }
  ahead = dx_buf_peek(&c->rb);
  aheadlen = dx_buf_len(&c->rb);
  if (lua_isstring(L, 4)) {                  /* the program's bytes, then the buffer's */
    lua_pushvalue(L, 4);
    lua_pushlstring(L, ahead, aheadlen);
    lua_concat(L, 2);
    ahead = lua_tolstring(L, -1, &aheadlen);
  }
  why = start(c, x->ctx, server, x->servername[0] ? x->servername : NULL,
              host[0] ? host : NULL, x->checkname, ahead, aheadlen, err, sizeof err);
  if (why) return luaL_error(L, "starttls: %s", why);
  dx_buf_free(&c->rb);                       /* those bytes were TLS's */
  lua_settop(L, 1);
  return lx_drive(L, &op_handshake, lx_deadline(timeout));
}

static void setstr(lua_State *L, const char *k, const char *v) {
  if (v == NULL) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* tlsinfo() -> { version=, cipher=, alpn=, servername=, resumed=, peer = {
 * subject=, issuer=, notafter=, san = {...} } }, or nil for plaintext */
static int c_tlsinfo(lua_State *L) {
  lx_client *c = check_client(L);
  dx_tls *t = dx_stream_tls(&c->st);
  char buf[512];
  int i;
  if (c->s.w.fd < 0) return lx_closed(L, &c->s, "tlsinfo");
  if (t == NULL) {
    luaL_pushfail(L);
    return 1;
  }
  lua_createtable(L, 0, 6);
  if (dx_tls_done(t)) {
    setstr(L, "version", dx_tls_version(t));
    setstr(L, "cipher", dx_tls_cipher(t));
    setstr(L, "alpn", dx_tls_alpn(t, buf, sizeof buf));
    lua_pushboolean(L, dx_tls_resumed(t));
    lua_setfield(L, -2, "resumed");
  }
  setstr(L, "servername", dx_tls_servername(t));
  if (dx_tls_peer(t, 's', buf, sizeof buf)) {
    lua_createtable(L, 0, 4);
    setstr(L, "subject", buf);
    if (dx_tls_peer(t, 'i', buf, sizeof buf)) setstr(L, "issuer", buf);
    if (dx_tls_peer(t, 'n', buf, sizeof buf)) setstr(L, "notafter", buf);
    lua_newtable(L);
    for (i = 0; dx_tls_peer_san(t, i, buf, sizeof buf); i++) {
      lua_pushstring(L, buf);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "san");
    lua_setfield(L, -2, "peer");
  }
  return 1;
}

/* --- contexts ---------------------------------------------------------------------- */

/* duplex.tls.context(opts) -> a duplex.tlscontext */
static int t_context(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  new_context(L, 1, 1);
  return 1;
}

static int ctx_gc(lua_State *L) {
  lx_tlsctx *x = lua_touserdata(L, 1);
  dx_tls_ctx_unref(x->ctx);
  x->ctx = NULL;
  return 0;
}

static int ctx_tostring(lua_State *L) {
  lua_pushliteral(L, LX_TLSCONTEXT);
  return 1;
}

static const luaL_Reg methods[] = {
  {"handshake", c_handshake},
  {"starttls", c_starttls},
  {"tlsinfo", c_tlsinfo},
  {NULL, NULL}
};

/* Stack on entry: module, state. Adds duplex.tls and the client's TLS
 * methods. */
void lx_open_tls(lua_State *L) {
  lx_state *S = (lx_state *)lua_touserdata(L, -1);
  lua_getfield(L, -2, "client_methods");
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);
  lua_pop(L, 1);
  lua_createtable(L, 0, 3);                 /* the context metatable */
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, ctx_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, LX_TLSCONTEXT);
  lua_setfield(L, -2, "__name");
  S->tlsctx_mt = lua_topointer(L, -1);
  lua_setiuservalue(L, -2, LX_UV_TLSCTX_MT);
  lua_createtable(L, 0, 1);                 /* duplex.tls */
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, t_context, 1);
  lua_setfield(L, -2, "context");
  lua_setfield(L, -3, "tls");
}

#else

#include <errno.h>

void lx_tls_option(lua_State *L, int idx, int arg, int server) {
  (void)idx, (void)server;
  luaL_argerror(L, arg, "option 'tls': duplex was built without TLS");
}

struct dx_tls_ctx *lx_tls_ref(lua_State *L, int idx) {
  (void)L, (void)idx;
  return NULL;
}

void lx_tls_unref(struct dx_tls_ctx *ctx) { (void)ctx; }

void lx_tls_connect(lua_State *L, lx_client *c, int idx, const char *host) {
  (void)c, (void)idx, (void)host;
  luaL_error(L, "connect: duplex was built without TLS");
}

int lx_tls_accept(lx_client *c, struct dx_tls_ctx *ctx) {
  (void)c, (void)ctx;
  return -EPROTO;
}

void lx_open_tls(lua_State *L) { (void)L; }

#endif
