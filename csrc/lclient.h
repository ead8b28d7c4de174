/*
 * lclient.h - duplex.client (lclient.c): a connected stream with a receive
 * buffer in C, made closed (no error can leak a descriptor), its options
 * and its end. Reading, writing, forwarding, TLS and connecting are the
 * files above it.
 */
#ifndef LCLIENT_H
#define LCLIENT_H

#include "dx_proxy.h"
#include "dx_stream.h"
#include "lsock.h"

#include <netinet/in.h>

/* What a client of a listener with the `proxy` option knows of its PROXY
 * header (lproxy.c reads it; the client owns this, and close frees it). */
typedef struct lx_proxy {
  struct dx_tls_ctx *tls;     /* TLS starts after the header (a reference) */
  double timeout;             /* seconds the header may take */
  unsigned char done;         /* the header was read */
  unsigned char refused;      /* the peer is no trusted proxy */
  const char *why;            /* the parser's reason for a refused header */
  dx_proxy info;              /* what it said (once done) */
  size_t hlen;                /* the header as received: */
  unsigned char hdr[];
} lx_proxy;

typedef struct lx_client {
  lx_sock s;
  dx_buf rb;
  size_t maxline;
  lua_Integer cut;            /* who cut a write short (lx_who), 0: nobody */
  unsigned char eof;          /* the peer ended its stream */
  unsigned char isunix;       /* a Unix domain socket */
  unsigned char adopted;      /* duplex.stream: restore oldflags on close */
  unsigned char keepfd;       /* ...and leave the descriptor open */
  unsigned char accepted;     /* came from accept: the server side */
  unsigned char unanswered;   /* read bytes since it last wrote: in the
                                 middle of a request, not between two */
  unsigned char pushing;      /* a read copies out of rb (lx_client_push):
                                 a close meanwhile leaves rb to it */
  int oldflags;               /* duplex.stream: the flags close restores */
  int streamfd;               /* duplex.stream of a descriptor that is no
                                 socket: its number, for messages (also once
                                 closed); -1 otherwise */
  dx_stream st;               /* how its bytes move: recv/send, read/write, TLS */
  lx_proxy *proxy;            /* its listener speaks PROXY; else NULL */
  struct sockaddr_in6 peer;   /* an inet/inet6 peer for messages (kept after
                                 close); family 0 for Unix sockets */
} lx_client;

extern const lx_class lx_client_class;

/* Push len bytes of the used ones taken out of c's buffer (used >= len),
 * and settle it. Before 5.3 (and on LuaJIT) making a string may run the
 * collector, and a finalizer close this client, BEFORE the bytes are
 * copied: its buffer is then freed only after the copy. */
void lx_client_push(lua_State *L, lx_client *c, size_t used, size_t len);
/* A new closed client on the stack. */
lx_client *lx_client_new(lua_State *L);
/* Close c (TLS: close_notify, never waiting) and free what it holds: what
 * close, __close and __gc do. Idempotent. */
void lx_client_release(lx_state *S, lx_client *c);
/* c's descriptor, and its peer (NULL: unknown): a socket it owns now. */
void lx_client_set(lx_client *c, int fd, const dx_addr *peer);
/* The peer its messages name (an inet one; a Unix peer is found by name). */
void lx_client_peer(lx_client *c, const dx_addr *a);
/* Free c's PROXY state (close does). */
void lx_client_proxy_free(lx_client *c);
/* Where the client talks to, for messages. */
void lx_client_label(lx_client *c, char *out, size_t n);

/* c's stream moved bytes (or finished its handshake): if it is layered,
 * that may be what a task waiting on its other direction needed (a TLS
 * record taken in), which readiness will not tell: those waiters retry. */
#define lx_client_moved(S, c) \
  do { if (dx_stream_layered(&(c)->st) && (S)->loop_ok) dx_loop_poke(&(S)->loop, &(c)->s.w); } while (0)

void lx_open_client(lua_State *L);

#endif
