/*
 * lproxy.c - the PROXY protocol in the binding: listen's options proxy,
 * proxy_from and proxy_timeout; for a client such a listener accepts, its
 * header read as an operation of the driver before anything else (TLS
 * starts after it, with the bytes that followed it), the original client
 * kept for getpeername and messages, and client:proxyinfo(). The parsing
 * is dx_proxy.c's; nothing here guesses from the bytes.
 *
 * Who may send a header is decided at accept, from the connection's own
 * peer: a peer outside proxy_from is closed before a byte is read (a
 * header from it would let anybody claim any address). server:accept()
 * reads the header before it returns the client; serve reads it in the
 * connection's task (core.proxy_wait), so that a slow proxy holds up
 * nobody else's accept.
 */
#include "dx_prefix.h"
#include "lproxy.h"
#include "ldrive.h"
#include "lread.h"
#include "ltls.h"
#include "lxaux.h"
#ifdef DX_TLS
#include "dx_tls.h"
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LX_PROXY_TIMEOUT 5.0    /* seconds for a header; the specification
                                   asks for at least 3 (a TCP retransmit) */

const char lx_proxy_later = 0;

#define check_client(L) ((lx_client *)lx_checksock(L, lx_state_of(L), &lx_client_class))

/* --- listen's options --------------------------------------------------------- */

/* The ranges trusted when proxy_from is not given: this host only. */
static const char *const loopback[] = {"127.0.0.0/8", "::1", NULL};

/* One entry of proxy_from (the value on top) into *out, or raise. */
static void from_entry(lua_State *L, int arg, dx_cidr *out) {
  const char *why, *s;
  size_t len;
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, arg, "option 'proxy_from' must be an address or a list of addresses");
  s = lua_tolstring(L, -1, &len);
  if (strlen(s) != len || dx_cidr_parse(s, out, &why) < 0) {
    if (strlen(s) != len) why = "contains a zero byte";
    luaL_argerror(L, arg, lua_pushfstring(L, "option 'proxy_from': '%s': %s", s, why));
  }
}

lx_proxy_cfg *lx_proxy_options(lua_State *L, int opts, int arg) {
  double timeout = LX_PROXY_TIMEOUT;
  int on, n = 0, i, top = lua_gettop(L);
  dx_cidr *from;
  lx_proxy_cfg *cfg;
  if (lua_isnil(L, opts)) return NULL;
  lua_getfield(L, opts, "proxy");                       /* top+1 */
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_argerror(L, arg, "option 'proxy' must be a boolean");
  on = lua_toboolean(L, -1);
  lua_getfield(L, opts, "proxy_from");                  /* top+2 */
  lua_getfield(L, opts, "proxy_timeout");               /* top+3 */
  if (!on) {
    if (!lua_isnil(L, top + 2)) luaL_argerror(L, arg, "option 'proxy_from' needs proxy = true");
    if (!lua_isnil(L, top + 3)) luaL_argerror(L, arg, "option 'proxy_timeout' needs proxy = true");
    lua_settop(L, top);
    return NULL;
  }
  if (!lua_isnil(L, top + 3)) {
    timeout = lua_tonumber(L, top + 3);
    if (lua_type(L, top + 3) != LUA_TNUMBER || !(timeout > 0))
      luaL_argerror(L, arg, "option 'proxy_timeout' must be a positive number");
  }
  if (lua_istable(L, top + 2)) n = (int)lua_rawlen(L, top + 2);
  else if (lua_isnil(L, top + 2)) n = 2;
  else n = 1;
  if (n == 0) luaL_argerror(L, arg, "option 'proxy_from' must list at least one address");
  from = lua_newuserdatauv(L, (size_t)n * sizeof *from, 0);   /* top+4, collected */
  for (i = 0; i < n; i++) {
    if (lua_istable(L, top + 2)) lua_rawgeti(L, top + 2, i + 1);
    else if (lua_isnil(L, top + 2)) lua_pushstring(L, loopback[i]);
    else lua_pushvalue(L, top + 2);
    from_entry(L, arg, &from[i]);
    lua_pop(L, 1);
  }
  cfg = malloc(sizeof *cfg + (size_t)n * sizeof *from);       /* nothing raises after */
  if (cfg == NULL) luaL_error(L, "listen: not enough memory");
  cfg->timeout = timeout;
  cfg->n = n;
  memcpy(cfg->from, from, (size_t)n * sizeof *from);
  lua_settop(L, top);
  return cfg;
}

int lx_proxy_accept(lx_client *c, const lx_proxy_cfg *cfg, const dx_addr *peer,
                    struct dx_tls_ctx *tls) {
  lx_proxy *p = calloc(1, sizeof *p);
  if (p == NULL) return -ENOMEM;
  p->timeout = cfg->timeout;
  /* a Unix socket's peers are whom its file lets in */
  p->refused = peer->ss.ss_family != AF_UNIX && !dx_cidr_match(cfg->from, cfg->n, peer);
#ifdef DX_TLS
  if (tls) {
    dx_tls_ctx_ref(tls);
    p->tls = tls;
  }
#else
  (void)tls;
#endif
  c->proxy = p;
  return 0;
}

/* --- the header --------------------------------------------------------------- */

/* The header is the first hlen bytes of c's buffer, info what it said:
 * keep both, drop it from the buffer, and start TLS if the listener has
 * it, with the bytes that followed. */
static int header_done(lx_client *c, const dx_proxy *info, size_t hlen) {
  lx_proxy *p = realloc(c->proxy, sizeof *c->proxy + hlen);
  if (p == NULL) return -ENOMEM;
  c->proxy = p;
  memcpy(p->hdr, dx_buf_peek(&c->rb), hlen);
  p->hlen = hlen;
  p->info = *info;
  p->done = 1;
  dx_buf_take(&c->rb, hlen);
  if (info->addressed && (info->family == AF_INET || info->family == AF_INET6)) {
    memset(&c->peer, 0, sizeof c->peer);           /* messages name the client */
    memcpy(&c->peer, &info->src.ss, info->src.len);
  }
  if (p->tls) {
    struct dx_tls_ctx *tls = p->tls;
    p->tls = NULL;
    if (lx_tls_accept(c, tls) < 0) {
      lx_tls_unref(tls);
      return -ENOMEM;
    }
    lx_tls_unref(tls);                             /* the connection holds it */
  }
  dx_buf_settle(&c->rb);
  return LX_DONE;
}

/* Stack: 1 the client. Receive until the parser answers. */
static int try_header(lua_State *L, lx_call *k) {
  lx_client *c = (lx_client *)k->sock;
  lx_proxy *p = c->proxy;
  int trust = lx_client_trusts(L, k, c);
  if (p->refused) return -EACCES;
  for (;;) {
    dx_proxy info;
    const char *why;
    long n;
    int r = dx_proxy_parse(dx_buf_peek(&c->rb), dx_buf_len(&c->rb), &info, &why);
    if (r > 0) return header_done(c, &info, (size_t)r);
    if (r < 0) {
      p->why = why;
      return -EPROTO;
    }
    n = lx_client_fill(k->S, c, trust);
    if (n == -EAGAIN) return LX_WAIT_READ;
    if (n == 0) {
      p->why = "the connection ended before a whole header";
      return -EPROTO;
    }
    if (n < 0) return (int)n;
    k->moved = 1;
  }
}

static void stall_header(lua_State *L, lx_call *k) {
  (void)L;
  dx_buf_settle(&((lx_client *)k->sock)->rb);
}

static int push_header(lua_State *L, lx_call *k) {
  (void)k;
  lua_pushvalue(L, 1);
  return 1;
}

/* nil, "proxy header <peer>: <reason>", code; the client is closed: a
 * connection whose header failed is of no use. */
static int fail_header(lua_State *L, lx_call *k, int code) {
  lx_client *c = (lx_client *)k->sock;
  char where[128];
  const char *why = NULL;
  lx_client_label(c, where, sizeof where);
  if (c->proxy && code == -EPROTO) why = c->proxy->why;
  if (code == -EACCES) why = "not a trusted proxy (proxy_from)";
  lx_client_release(k->S, c);
  luaL_pushfail(L);
  lua_pushfstring(L, "%s %s: %s", k->op->name, where, why ? why : dx_strerror(code));
  lua_pushstring(L, dx_errname(code));
  return 3;
}

static const lx_op op_header = {
  .name = "proxy header", .dir = LX_READERS, .sockarg = 1, .try = try_header,
  .push = push_header, .fail = fail_header, .stall = stall_header,
};

int lx_proxy_read(lua_State *L, int idx) {
  lx_client *c = (lx_client *)lua_touserdata(L, idx);
  lua_pushvalue(L, idx);
  lua_replace(L, 1);
  lua_settop(L, 1);
  return lx_drive(L, &op_header, lx_deadline(c->proxy->timeout));
}

/* proxy_wait(client) -> client, or nil, msg, code (closed): serve's read
 * of the header, in the connection's task. */
static int k_proxy_wait(lua_State *L) {
  lx_client *c = check_client(L);
  lua_settop(L, 1);
  if (c->s.w.fd < 0) return lx_closed(L, &c->s, "proxy header");
  if (c->proxy == NULL || c->proxy->done) return 1;
  return lx_proxy_read(L, 1);
}

/* proxy_pending(client) -> whether its header is yet to be read. */
static int k_proxy_pending(lua_State *L) {
  lx_client *c = check_client(L);
  lua_pushboolean(L, c->s.w.fd >= 0 && c->proxy && !c->proxy->done);
  return 1;
}

/* --- proxyinfo ---------------------------------------------------------------- */

static void set_lstr(lua_State *L, const char *k, const unsigned char *v, size_t n) {
  lua_pushlstring(L, (const char *)v, n);
  lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* t.<k> = value, unless a TLV before it said it (the first one counts). */
static void set_first(lua_State *L, const char *k, int type, const unsigned char *v, size_t n) {
  if (k) lua_getfield(L, -1, k);
  else lua_rawgeti(L, -1, type);
  if (lua_isnil(L, -1)) {
    lua_pushlstring(L, (const char *)v, n);
    if (k) lua_setfield(L, -3, k);
    else lua_rawseti(L, -3, type);
  }
  lua_pop(L, 1);
}

static void push_endpoint(lua_State *L, const dx_addr *a, const char *host, const char *port) {
  char text[112];
  const char *family;
  int p;
  dx_addr_text(a, text, sizeof text, &p, &family);
  lua_pushstring(L, text);
  lua_setfield(L, -2, host);
  if (p >= 0) set_int(L, port, p);
}

static void push_ssl(lua_State *L, const unsigned char *v, size_t n) {
  static const char *const sub[] = {"version", "cn", "cipher", "sig_alg", "key_alg"};
  const unsigned char *sv;
  unsigned long verify;
  size_t subs, svlen;
  int client, type;
  dx_proxy_ssl(v, n, &client, &verify, &subs);
  lua_createtable(L, 0, 10);
  set_int(L, "client", client);
  set_int(L, "verify", (lua_Integer)verify);
  lua_pushboolean(L, (client & DX_PP2_CLIENT_SSL) != 0);
  lua_setfield(L, -2, "client_ssl");
  lua_pushboolean(L, (client & DX_PP2_CLIENT_CERT_CONN) != 0);
  lua_setfield(L, -2, "cert_conn");
  lua_pushboolean(L, (client & DX_PP2_CLIENT_CERT_SESS) != 0);
  lua_setfield(L, -2, "cert_sess");
  /* verify is 0 also when no certificate came: verified needs one */
  lua_pushboolean(L, verify == 0 && (client & (DX_PP2_CLIENT_CERT_CONN | DX_PP2_CLIENT_CERT_SESS)));
  lua_setfield(L, -2, "verified");
  while (dx_proxy_tlv(v, n, &subs, &type, &sv, &svlen)) {
    if (type >= DX_PP2_SSL_VERSION && type <= DX_PP2_SSL_KEY_ALG)
      set_first(L, sub[type - DX_PP2_SSL_VERSION], type, sv, svlen);
    else
      set_first(L, NULL, type, sv, svlen);
  }
}

static void push_tlvs(lua_State *L, const lx_proxy *p) {
  const unsigned char *tlv = p->hdr + p->info.tlv, *v;
  size_t off = 0, n;
  int type;
  lua_newtable(L);
  while (dx_proxy_tlv(tlv, p->info.tlvlen, &off, &type, &v, &n)) {
    switch (type) {
    case DX_PP2_ALPN: set_first(L, "alpn", type, v, n); break;
    case DX_PP2_AUTHORITY: set_first(L, "authority", type, v, n); break;
    case DX_PP2_UNIQUE_ID: set_first(L, "unique_id", type, v, n); break;
    case DX_PP2_NETNS: set_first(L, "netns", type, v, n); break;
    case DX_PP2_NOOP: break;
    case DX_PP2_CRC32C:                       /* verified by the parser */
      set_int(L, "crc32c", (lua_Integer)((unsigned long)v[0] << 24 | (unsigned long)v[1] << 16 |
                                         (unsigned long)v[2] << 8 | v[3]));
      break;
    case DX_PP2_SSL:
      lua_getfield(L, -1, "ssl");
      if (lua_isnil(L, -1)) {
        push_ssl(L, v, n);
        lua_setfield(L, -3, "ssl");
      }
      lua_pop(L, 1);
      break;
    default: set_first(L, NULL, type, v, n); break;
    }
  }
  lua_setfield(L, -2, "tlvs");
}

/* proxyinfo() -> { version, command, family, protocol, source,
 * source_port, destination, destination_port, tlvs = {...}, header }, or
 * nil when the client's listener has no proxy option. */
static int c_proxyinfo(lua_State *L) {
  lx_client *c = check_client(L);
  const lx_proxy *p = c->proxy;
  const dx_proxy *i;
  static const char *const protocols[] = {"unspec", "stream", "dgram"};
  if (c->s.w.fd < 0) return lx_closed(L, &c->s, "proxyinfo");
  if (p == NULL || !p->done) {
    luaL_pushfail(L);
    return 1;
  }
  i = &p->info;
  lua_createtable(L, 0, 11);
  set_int(L, "version", i->version);
  lua_pushstring(L, i->command == DX_PROXY_LOCAL ? "LOCAL" : "PROXY");
  lua_setfield(L, -2, "command");
  lua_pushstring(L, i->family == AF_INET ? "inet" : i->family == AF_INET6 ? "inet6"
                    : i->family == AF_UNIX ? "unix" : "unspec");
  lua_setfield(L, -2, "family");
  lua_pushstring(L, protocols[i->protocol]);
  lua_setfield(L, -2, "protocol");
  if (i->addressed) {
    push_endpoint(L, &i->src, "source", "source_port");
    push_endpoint(L, &i->dst, "destination", "destination_port");
  }
  if (i->version == 2) push_tlvs(L, p);
  set_lstr(L, "header", p->hdr, p->hlen);
  return 1;
}

static const luaL_Reg methods[] = {
  {"proxyinfo", c_proxyinfo},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"proxy_wait", k_proxy_wait},
  {"proxy_pending", k_proxy_pending},
  {NULL, NULL}
};

/* Stack on entry: module, state. Adds client:proxyinfo and serve's
 * core.proxy_wait, core.proxy_pending and core.proxy_later. */
void lx_open_proxy(lua_State *L) {
  lua_getfield(L, -2, "client_methods");
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);
  lua_pop(L, 1);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pushlightuserdata(L, (void *)&lx_proxy_later);
  lua_setfield(L, -2, "proxy_later");
  lua_pop(L, 1);
}
