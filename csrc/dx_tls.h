/*
 * dx_tls.h - TLS over a non-blocking socket with OpenSSL 3: contexts, and
 * per connection a handshake, reads, writes and close_notify that never
 * block. Each call answers with bytes, a "want" (wait for that direction,
 * whatever the operation), or a code with OpenSSL's reason kept in the
 * connection. duplex's own BIO reads bytes received before TLS began
 * (STARTTLS) ahead of the socket, and sends with MSG_NOSIGNAL. Pure C (no
 * Lua); built only when OpenSSL is there (DX_TLS).
 */
#ifndef DX_TLS_H
#define DX_TLS_H

#include "dx_prefix.h"
#include "dx_net.h"      /* DX_WANT_*, and DX_ECERT: the peer's certificate
                            did not verify; other TLS failures are -EPROTO */
#include <stddef.h>


typedef struct dx_tls_ctx dx_tls_ctx;
typedef struct dx_tls dx_tls;

/* One context serves clients and servers alike; the role is the
 * connection's. */
typedef struct dx_tls_opts {
  const char *cafile, *capath, *certificate, *key, *password;
  int verify;                 /* -1 the role's default (client: yes, server:
                                 no), 0 no, 1 yes, 2 optional: a server asks
                                 for a certificate, a client accepts any */
  const unsigned char *alpn;  /* wire format (length-prefixed names) */
  size_t alpnlen;
  const char *minversion, *maxversion;   /* "tls1.2", "tls1.3" or NULL */
  const char *ciphers, *ciphersuites;
  int ignore_eof;
  /* session tickets: the 80 bytes (name, HMAC and AES keys) every context
   * given the same ones shares, so that a session resumes on any of them
   * (the workers of duplex.cluster); NULL: a random key of its own */
  const unsigned char *ticket_key;
} dx_tls_opts;

#define DX_TLS_TICKET_KEY 80

/* A context, or NULL with the reason in err. */
dx_tls_ctx *dx_tls_ctx_new(const dx_tls_opts *o, char *err, size_t errlen);
void dx_tls_ctx_ref(dx_tls_ctx *c);
void dx_tls_ctx_unref(dx_tls_ctx *c);
/* Has a certificate (can serve). */
int dx_tls_ctx_can_serve(const dx_tls_ctx *c);

/* A connection over fd, as a server or a client. A client sends SNI
 * `servername` (NULL: none) and checks the peer against `host` (a name,
 * or an IP address) when it verifies. ahead/aheadlen: bytes received
 * before TLS began, to be read first (copied). NULL with the reason in err. */
dx_tls *dx_tls_new(dx_tls_ctx *ctx, int server, int fd, const char *servername,
                   const char *host, const char *ahead, size_t aheadlen,
                   char *err, size_t errlen);
void dx_tls_free(dx_tls *t);

/* 0 once done, DX_WANT_*, or a code. */
int dx_tls_handshake(dx_tls *t);
int dx_tls_done(const dx_tls *t);        /* the handshake is done */
/* Bytes read (handshaking first if needed), 0 at a clean end (the peer's
 * close_notify, or any end with ignore_eof), DX_WANT_*, or a code
 * (-ECONNRESET for an end without close_notify). */
long dx_tls_read(dx_tls *t, char *p, size_t n);
/* Bytes written (one record at most), DX_WANT_*, or a code. A write that
 * wanted something must be retried with the same bytes. */
long dx_tls_write(dx_tls *t, const char *p, size_t n);
/* Did the last write want something, so that OpenSSL holds its record
 * and only the same bytes may follow? */
int dx_tls_write_held(const dx_tls *t);
/* Plaintext or records OpenSSL holds that a read would return without
 * the socket. */
int dx_tls_pending(const dx_tls *t);
/* Send close_notify (after a failure or during the handshake: nothing):
 * 0 once it is sent whole, DX_WANT_WRITE while the socket cannot take the
 * rest (call again when it is writable; a caller that never waits calls
 * once), or a code. Writes fail with EPIPE from the first call on. */
int dx_tls_close_notify(dx_tls *t);
/* The code of the failure that ended the connection (0: none), and its
 * reason ("certificate has expired"). */
int dx_tls_failure(const dx_tls *t);
const char *dx_tls_error(const dx_tls *t);

/* What the handshake agreed on; NULL/0 when unknown. */
const char *dx_tls_version(const dx_tls *t);
const char *dx_tls_cipher(const dx_tls *t);
/* ALPN protocol chosen, in buf; NULL if none. */
const char *dx_tls_alpn(const dx_tls *t, char *buf, size_t len);
const char *dx_tls_servername(const dx_tls *t);
int dx_tls_resumed(const dx_tls *t);
/* The peer's certificate: subject, issuer, notAfter as text into buf
 * (which = 's', 'i', 'n'); 0 if there is none. */
int dx_tls_peer(const dx_tls *t, int which, char *buf, size_t len);
/* Its i-th subjectAltName that names a host (a DNS name, or an IP address
 * of 4 or 16 bytes: malformed and other entries are skipped) into buf; 0
 * past the end. */
int dx_tls_peer_san(const dx_tls *t, int i, char *buf, size_t len);

#endif
