/*
 * dx_tls.c - TLS with OpenSSL 3 over duplex's non-blocking sockets (see
 * dx_tls.h). The rules a non-blocking core must keep (../shared/TLS.md):
 * clear the error queue before every SSL_* call and read SSL_get_error
 * right after; either operation may want either direction; partial writes
 * and moving write buffers on; close_notify sent once and never awaited;
 * an end without close_notify is reported as a possible truncation unless
 * the context says ignore_eof.
 */
#include "dx_prefix.h"
#include "dx_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct dx_tls_ctx {
  SSL_CTX *ctx;
  int refs, verify, ignore_eof, cert;
  int syspaths;               /* the system store: 1 wanted, 2 loaded */
  unsigned char *alpn;        /* a server's own list, wire format */
  size_t alpnlen;
  char *password;
};

enum { HANDSHAKE, OPEN, FAILED };

struct dx_tls {
  SSL *ssl;
  dx_tls_ctx *ctx;
  int fd, state, code, sent_close, eof, syserr;
  int held;                   /* a write wanted: OpenSSL holds its record */
  int close_held;             /* close_notify wanted to write: not all sent */
  char *ahead;                /* bytes received before TLS began */
  size_t aheadlen, aheadoff;
  char *err;                  /* why it failed, made then: an idle connection
                                 holds no room for a message */
};

static char err_nomem[] = "out of memory";

/* --- the BIO: bytes ahead first, then the socket; MSG_NOSIGNAL ---------- */

static BIO_METHOD *bio_method;     /* made with the first context, freed */
static int nctx;                   /* with the last (connections hold theirs) */

static int bio_read(BIO *b, char *out, size_t n, size_t *got) {
  dx_tls *t = BIO_get_data(b);
  ssize_t r;
  BIO_clear_retry_flags(b);
  if (t->aheadoff < t->aheadlen) {
    size_t k = t->aheadlen - t->aheadoff;
    if (k > n) k = n;
    memcpy(out, t->ahead + t->aheadoff, k);
    t->aheadoff += k;
    *got = k;
    return 1;
  }
  do r = recv(t->fd, out, n, 0); while (r < 0 && errno == EINTR);
  if (r > 0) {
    *got = (size_t)r;
    return 1;
  }
  if (r == 0) t->eof = 1;
  else if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
  else t->syserr = errno;
  return 0;
}

static int bio_write(BIO *b, const char *in, size_t n, size_t *put) {
  dx_tls *t = BIO_get_data(b);
  ssize_t r;
  BIO_clear_retry_flags(b);
  do r = send(t->fd, in, n, MSG_NOSIGNAL); while (r < 0 && errno == EINTR);
  if (r >= 0) {
    *put = (size_t)r;
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
  else t->syserr = errno;
  return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  dx_tls *t = BIO_get_data(b);
  (void)num, (void)ptr;
  switch (cmd) {
  case BIO_CTRL_FLUSH: return 1;
  case BIO_CTRL_EOF: return t && t->eof && t->aheadoff >= t->aheadlen;
  default: return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO_METHOD *method(void) {
  if (bio_method == NULL) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "duplex");
    if (m == NULL) return NULL;
    BIO_meth_set_read_ex(m, bio_read);
    BIO_meth_set_write_ex(m, bio_write);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
  }
  return bio_method;
}

/* --- contexts --------------------------------------------------------------- */

static void reason(char *err, size_t len, const char *what) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  snprintf(err, len, "%s%s%s", what, r ? ": " : "", r ? r : "");
  ERR_clear_error();
}

static int version_of(const char *v, int *out) {
  if (v == NULL) return 1;
  if (strcmp(v, "tls1.2") == 0) *out = TLS1_2_VERSION;
  else if (strcmp(v, "tls1.3") == 0) *out = TLS1_3_VERSION;
  else return 0;
  return 1;
}

static int password_cb(char *buf, int size, int rw, void *u) {
  const char *p = u;
  int n = p ? (int)strlen(p) : 0;
  (void)rw;
  if (n > size) n = size;
  if (n) memcpy(buf, p, (size_t)n);
  return n;
}

/* A server picks the first of its own protocols that the client offers. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  dx_tls_ctx *c = arg;
  unsigned char *o;
  (void)ssl;
  if (SSL_select_next_proto(&o, outlen, c->alpn, (unsigned)c->alpnlen, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = o;
  return SSL_TLSEXT_ERR_OK;
}

dx_tls_ctx *dx_tls_ctx_new(const dx_tls_opts *o, char *err, size_t errlen) {
  dx_tls_ctx *c = calloc(1, sizeof *c);
  int minv = TLS1_2_VERSION, maxv = 0;
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->refs = 1;
  nctx++;
  c->verify = o->verify;
  c->ignore_eof = o->ignore_eof;
  c->cert = o->certificate != NULL;
  ERR_clear_error();
  if (!version_of(o->minversion, &minv) || !version_of(o->maxversion, &maxv)) {
    snprintf(err, errlen, "versions are \"tls1.2\" or \"tls1.3\"");
    goto fail;
  }
  c->ctx = SSL_CTX_new(TLS_method());
  if (c->ctx == NULL) {
    reason(err, errlen, "SSL_CTX_new");
    goto fail;
  }
  SSL_CTX_set_min_proto_version(c->ctx, minv);
  if (maxv) SSL_CTX_set_max_proto_version(c->ctx, maxv);
  SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                           SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (o->ignore_eof) SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (o->ticket_key &&
      SSL_CTX_set_tlsext_ticket_keys(c->ctx, (void *)o->ticket_key, DX_TLS_TICKET_KEY) != 1) {
    reason(err, errlen, "ticket_key");
    goto fail;
  }
  if (o->ciphers && !SSL_CTX_set_cipher_list(c->ctx, o->ciphers)) {
    reason(err, errlen, "ciphers");
    goto fail;
  }
  if (o->ciphersuites && !SSL_CTX_set_ciphersuites(c->ctx, o->ciphersuites)) {
    reason(err, errlen, "ciphersuites");
    goto fail;
  }
  /* always a callback: without a password a locked key fails at once,
   * instead of OpenSSL asking on the terminal */
  if (o->password) c->password = strdup(o->password);
  SSL_CTX_set_default_passwd_cb(c->ctx, password_cb);
  SSL_CTX_set_default_passwd_cb_userdata(c->ctx, c->password);
  if (o->certificate && SSL_CTX_use_certificate_chain_file(c->ctx, o->certificate) != 1) {
    reason(err, errlen, o->certificate);
    goto fail;
  }
  if (o->key || o->certificate) {
    if (SSL_CTX_use_PrivateKey_file(c->ctx, o->key ? o->key : o->certificate, SSL_FILETYPE_PEM) != 1) {
      reason(err, errlen, o->key ? o->key : o->certificate);
      goto fail;
    }
    if (SSL_CTX_check_private_key(c->ctx) != 1) {
      reason(err, errlen, "key does not match the certificate");
      goto fail;
    }
  }
  if (o->cafile || o->capath) {
    STACK_OF(X509_NAME) *names;
    if (SSL_CTX_load_verify_locations(c->ctx, o->cafile, o->capath) != 1) {
      reason(err, errlen, o->cafile ? o->cafile : o->capath);
      goto fail;
    }
    /* the CAs a server names when it asks for a client certificate */
    if (o->cafile && (names = SSL_load_client_CA_file(o->cafile)) != NULL)
      SSL_CTX_set_client_CA_list(c->ctx, names);
  } else if (o->verify != 0) {
    c->syspaths = 1;          /* loaded by the first connection that verifies */
  }
  if (o->alpn && o->alpnlen) {
    /* offered as a client; as a server, the list to pick from */
    c->alpn = malloc(o->alpnlen);
    if (c->alpn == NULL) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
    memcpy(c->alpn, o->alpn, o->alpnlen);
    c->alpnlen = o->alpnlen;
    SSL_CTX_set_alpn_select_cb(c->ctx, select_alpn, c);
    if (SSL_CTX_set_alpn_protos(c->ctx, o->alpn, (unsigned)o->alpnlen) != 0) {
      reason(err, errlen, "alpn");
      goto fail;
    }
  }
  return c;
fail:
  dx_tls_ctx_unref(c);
  return NULL;
}

void dx_tls_ctx_ref(dx_tls_ctx *c) { c->refs++; }

void dx_tls_ctx_unref(dx_tls_ctx *c) {
  if (c == NULL || --c->refs > 0) return;
  SSL_CTX_free(c->ctx);
  free(c->alpn);
  free(c->password);
  free(c);
  if (--nctx == 0 && bio_method) {
    BIO_meth_free(bio_method);
    bio_method = NULL;
  }
}

int dx_tls_ctx_can_serve(const dx_tls_ctx *c) { return c->cert; }

/* --- connections -------------------------------------------------------------- */

/* Does this side check its peer's certificate? (verify: see dx_tls_opts) */
static int verifies_peer(const dx_tls_ctx *ctx, int server) {
  return server ? ctx->verify == 1 || ctx->verify == 2 : ctx->verify == -1 || ctx->verify == 1;
}

/* Only a side that verifies its peer needs the system store, and loads it
 * at its first connection: a server that asks for no client certificate
 * would otherwise look its own chain up in it on every handshake
 * (OpenSSL's auto chain: +20% CPU measured). 0, or -1 with the reason. */
static int need_syspaths(dx_tls_ctx *ctx, int server, char *err, size_t errlen) {
  if (ctx->syspaths != 1 || !verifies_peer(ctx, server)) return 0;
  ERR_clear_error();
  if (SSL_CTX_set_default_verify_paths(ctx->ctx) != 1) {
    reason(err, errlen, "the system's certificates");
    return -1;
  }
  ctx->syspaths = 2;
  return 0;
}

dx_tls *dx_tls_new(dx_tls_ctx *ctx, int server, int fd, const char *servername,
                   const char *host, const char *ahead, size_t aheadlen,
                   char *err, size_t errlen) {
  dx_tls *t = calloc(1, sizeof *t);
  BIO *bio;
  BIO_METHOD *m = method();
  if (t == NULL || m == NULL) {
    free(t);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (need_syspaths(ctx, server, err, errlen) < 0) {
    free(t);
    return NULL;
  }
  t->fd = fd;
  t->ctx = ctx;
  if (aheadlen) {
    t->ahead = malloc(aheadlen);
    if (t->ahead == NULL) goto nomem;
    memcpy(t->ahead, ahead, aheadlen);
    t->aheadlen = aheadlen;
  }
  ERR_clear_error();
  t->ssl = SSL_new(ctx->ctx);
  bio = BIO_new(m);
  if (t->ssl == NULL || bio == NULL) {
    BIO_free(bio);
    goto nomem;
  }
  BIO_set_data(bio, t);
  SSL_set_bio(t->ssl, bio, bio);
  if (server) {
    SSL_set_verify(t->ssl, ctx->verify == 1 ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                         : ctx->verify == 2 ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    SSL_set_accept_state(t->ssl);
  } else {
    unsigned char ip[16];
    int isip = host && (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1);
    int verify = verifies_peer(ctx, 0);
    SSL_set_verify(t->ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (servername && SSL_set_tlsext_host_name(t->ssl, servername) != 1) goto nomem;
    if (host && verify) {
      int ok = isip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host)
                    : SSL_set1_host(t->ssl, host);
      if (ok != 1) goto nomem;
    }
    SSL_set_connect_state(t->ssl);
  }
  dx_tls_ctx_ref(ctx);
  return t;
nomem:
  reason(err, errlen, "cannot make a TLS connection");
  SSL_free(t->ssl);
  free(t->ahead);
  free(t);
  return NULL;
}

void dx_tls_free(dx_tls *t) {
  if (t == NULL) return;
  if (t->err != err_nomem) free(t->err);
  SSL_free(t->ssl);
  dx_tls_ctx_unref(t->ctx);
  free(t->ahead);
  free(t);
}

/* A failure: remember code and reason; every later call answers the same. */
static int failed(dx_tls *t, int code, const char *why) {
  size_t n;
  if (why == NULL) why = "TLS error";       /* a reason OpenSSL has no text for */
  n = strlen(why);
  t->state = FAILED;
  t->code = code;
  if (t->err != err_nomem) free(t->err);
  t->err = malloc(n + 1);
  if (t->err != NULL) memcpy(t->err, why, n + 1);
  else t->err = err_nomem;
  ERR_clear_error();
  return code;
}

/* A verification failure: OpenSSL's reason, and for a name or address
 * that the certificate does not cover, the one that was wanted. */
static int cert_failed(dx_tls *t) {
  long v = SSL_get_verify_result(t->ssl);
  const char *why = X509_verify_cert_error_string(v);
  X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
  char *ip = NULL, msg[512], text[INET6_ADDRSTRLEN];
  unsigned char bin[16];
  const char *wanted = NULL;
  if (v == X509_V_ERR_HOSTNAME_MISMATCH) wanted = X509_VERIFY_PARAM_get0_host(param, 0);
  else if (v == X509_V_ERR_IP_ADDRESS_MISMATCH) wanted = ip = X509_VERIFY_PARAM_get1_ip_asc(param);
  if (wanted == NULL) return failed(t, DX_ECERT, why);
  if (ip && inet_pton(AF_INET6, ip, bin) == 1)    /* OpenSSL spells ::1 in full */
    wanted = inet_ntop(AF_INET6, bin, text, sizeof text);
  snprintf(msg, sizeof msg, "%s: the certificate is not for %s", why, wanted);
  OPENSSL_free(ip);
  return failed(t, DX_ECERT, msg);
}

/* After an SSL_* call returned r <= 0: a want, a clean end (0), or a code. */
static int outcome(dx_tls *t, int r) {
  int e = SSL_get_error(t->ssl, r);
  unsigned long q;
  switch (e) {
  case SSL_ERROR_WANT_READ: return DX_WANT_READ;
  case SSL_ERROR_WANT_WRITE: return DX_WANT_WRITE;
  case SSL_ERROR_ZERO_RETURN: return 0;
  case SSL_ERROR_SYSCALL:
    if (t->syserr) return failed(t, -t->syserr, strerror(t->syserr));
    return failed(t, -ECONNRESET, "TLS connection closed without close_notify (possible truncation)");
  default:
    q = ERR_peek_error();
    if (ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      return failed(t, -ECONNRESET, "TLS connection closed without close_notify (possible truncation)");
    if (ERR_GET_REASON(q) == SSL_R_CERTIFICATE_VERIFY_FAILED) return cert_failed(t);
    if (t->syserr) return failed(t, -t->syserr, strerror(t->syserr));
    return failed(t, -EPROTO, q ? ERR_reason_error_string(q) : "TLS error");
  }
}

int dx_tls_handshake(dx_tls *t) {
  int r;
  if (t->state == FAILED) return t->code;
  if (t->state == OPEN) return 0;
  ERR_clear_error();
  r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->state = OPEN;
    return 0;
  }
  r = outcome(t, r);
  return r == 0 ? failed(t, -ECONNRESET, "connection closed during the TLS handshake") : r;
}

int dx_tls_done(const dx_tls *t) { return t->state == OPEN; }

long dx_tls_read(dx_tls *t, char *p, size_t n) {
  size_t got = 0;
  int r;
  if (t->state != OPEN && (r = dx_tls_handshake(t)) != 0) return r;
  ERR_clear_error();
  if (SSL_read_ex(t->ssl, p, n, &got) == 1) return (long)got;
  return outcome(t, 0);
}

long dx_tls_write(dx_tls *t, const char *p, size_t n) {
  size_t put = 0;
  int r;
  if (t->state != OPEN && (r = dx_tls_handshake(t)) != 0) return r;
  if (t->sent_close) return -EPIPE;      /* after shutdown("w"), as plaintext */
  if (n == 0) return 0;
  ERR_clear_error();
  t->held = SSL_write_ex(t->ssl, p, n, &put) != 1;
  if (!t->held) return (long)put;
  r = outcome(t, 0);
  return r == 0 ? failed(t, -EPIPE, "the peer closed the TLS connection") : r;
}

int dx_tls_write_held(const dx_tls *t) { return t->state == OPEN && t->held; }

int dx_tls_pending(const dx_tls *t) {
  return t->state == OPEN && SSL_has_pending(t->ssl);
}

int dx_tls_close_notify(dx_tls *t) {
  int r, e;
  if (t->state != OPEN || (t->sent_close && !t->close_held)) return 0;
  t->sent_close = 1;
  ERR_clear_error();
  /* The first call queues close_notify and sends what the socket takes; a
   * later one sends the rest. Neither reads: a call after the alert went
   * out whole would wait for the peer's, so none is made. */
  r = SSL_shutdown(t->ssl);
  e = r < 0 ? SSL_get_error(t->ssl, r) : SSL_ERROR_NONE;
  ERR_clear_error();
  /* a retry that sent nothing returns 0, not -1 (OpenSSL tests the
   * alert's write for -1; a BIO_write_ex BIO answers 0): ask whether it
   * still wants to write */
  t->close_held = r < 0 ? e == SSL_ERROR_WANT_WRITE : SSL_want_write(t->ssl);
  if (t->close_held) return DX_WANT_WRITE;
  return r < 0 && t->syserr ? -t->syserr : 0;
}

int dx_tls_failure(const dx_tls *t) { return t->state == FAILED ? t->code : 0; }

const char *dx_tls_error(const dx_tls *t) { return t->err ? t->err : ""; }

/* --- what was agreed ------------------------------------------------------------ */

const char *dx_tls_version(const dx_tls *t) { return SSL_get_version(t->ssl); }

const char *dx_tls_cipher(const dx_tls *t) { return SSL_get_cipher_name(t->ssl); }

const char *dx_tls_alpn(const dx_tls *t, char *buf, size_t len) {
  const unsigned char *p;
  unsigned n;
  SSL_get0_alpn_selected(t->ssl, &p, &n);
  if (n == 0 || len == 0) return NULL;
  if (n >= len) n = (unsigned)len - 1;
  memcpy(buf, p, n);
  buf[n] = '\0';
  return buf;
}

const char *dx_tls_servername(const dx_tls *t) {
  return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

int dx_tls_resumed(const dx_tls *t) { return SSL_session_reused(t->ssl); }

int dx_tls_peer(const dx_tls *t, int which, char *buf, size_t len) {
  X509 *x = SSL_get0_peer_certificate(t->ssl);
  if (x == NULL || len == 0) return 0;
  buf[0] = '\0';
  if (which == 'n') {
    BIO *m = BIO_new(BIO_s_mem());
    int n;
    if (m == NULL) return 0;
    ASN1_TIME_print(m, X509_get0_notAfter(x));
    n = BIO_read(m, buf, (int)len - 1);
    buf[n > 0 ? n : 0] = '\0';
    BIO_free(m);
    return 1;
  }
  X509_NAME_oneline(which == 's' ? X509_get_subject_name(x) : X509_get_issuer_name(x),
                    buf, (int)len);
  return 1;
}

/* The text of a subjectAltName entry that names a host: a DNS name, or an
 * IP address of 4 or 16 bytes (any other length is malformed, and is
 * never read); NULL for every other entry. */
static const char *san_text(const GENERAL_NAME *g, char *buf, size_t len) {
  if (g->type == GEN_DNS) {
    snprintf(buf, len, "%.*s", ASN1_STRING_length(g->d.dNSName),
             (const char *)ASN1_STRING_get0_data(g->d.dNSName));
    return buf;
  }
  if (g->type == GEN_IPADD) {
    int n = ASN1_STRING_length(g->d.iPAddress);
    if (n != 4 && n != 16) return NULL;
    return inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.iPAddress),
                     buf, (socklen_t)len);
  }
  return NULL;
}

int dx_tls_peer_san(const dx_tls *t, int i, char *buf, size_t len) {
  X509 *x = SSL_get0_peer_certificate(t->ssl);
  GENERAL_NAMES *names;
  int j, found = 0;
  if (x == NULL || len == 0) return 0;
  names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  if (names == NULL) return 0;
  for (j = 0; j < sk_GENERAL_NAME_num(names) && !found; j++)
    if (san_text(sk_GENERAL_NAME_value(names, j), buf, len) && i-- == 0) found = 1;
  GENERAL_NAMES_free(names);
  return found;
}
