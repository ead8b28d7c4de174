/*
 * dx_stream.c - what a stream does beyond a plain descriptor's calls (see
 * dx_stream.h): TLS's reads, writes and end through dx_tls, whose wants
 * become the stream's, and the ends of every kind. Only this file and
 * dx_tls.c know TLS is there; built without OpenSSL, the TLS side below is
 * a set of stand-ins that no stream reaches.
 */
#include "dx_prefix.h"
#include "dx_stream.h"

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

#ifdef DX_TLS

#include "dx_tls.h"

void dx_stream_starttls(dx_stream *st, dx_tls *t) {
  st->kind = DX_STREAM_TLS;
  st->tls = t;
}

long dx_stream_layer_recv(dx_stream *st, char *p, size_t n) {
  long r = dx_tls_read(st->tls, p, n);
  return r == DX_WANT_READ ? -EAGAIN : r;
}

long dx_stream_layer_send(dx_stream *st, const char *p, size_t n) {
  long r = dx_tls_write(st->tls, p, n);
  return r == DX_WANT_WRITE ? -EAGAIN : r;
}

/* All of close_notify (-EAGAIN while the socket is full), then nothing:
 * the socket's shutdown follows. */
static int tls_end(dx_stream *st) {
  int r = dx_tls_close_notify(st->tls);
  return r == DX_WANT_WRITE ? -EAGAIN : r;
}

static void tls_close(dx_stream *st, int fd) {
  if (fd >= 0) dx_tls_close_notify(st->tls);     /* once: never waits */
  dx_tls_free(st->tls);
}

static int tls_handshake(dx_stream *st) { return dx_tls_handshake(st->tls); }

static int tls_held(const dx_stream *st) { return dx_tls_write_held(st->tls); }

static const char *tls_reason(const dx_stream *st, int code) {
  return dx_tls_failure(st->tls) == code ? dx_tls_error(st->tls) : NULL;
}

#else

/* No TLS without OpenSSL: no stream has the kind that reaches these. */
long dx_stream_layer_recv(dx_stream *st, char *p, size_t n) {
  (void)st, (void)p, (void)n;
  return -EPROTO;
}

long dx_stream_layer_send(dx_stream *st, const char *p, size_t n) {
  (void)st, (void)p, (void)n;
  return -EPROTO;
}

static int tls_end(dx_stream *st) { (void)st; return -EPROTO; }
static void tls_close(dx_stream *st, int fd) { (void)st, (void)fd; }
static int tls_handshake(dx_stream *st) { (void)st; return -EPROTO; }
static int tls_held(const dx_stream *st) { (void)st; return 0; }
static const char *tls_reason(const dx_stream *st, int code) { (void)st, (void)code; return NULL; }

#endif

void dx_stream_init(dx_stream *st, int kind) {
  st->kind = (unsigned char)kind;
  st->tls = NULL;
}

int dx_stream_shutdown(dx_stream *st, int fd, int how) {
  if (dx_stream_layered(st) && how != SHUT_RD) {
    int r = tls_end(st);
    if (r < 0) return r;
  }
  return dx_shutdown(fd, how);
}

void dx_stream_close(dx_stream *st, int fd) {
  if (!dx_stream_layered(st)) return;
  tls_close(st, fd);
  dx_stream_init(st, DX_STREAM_SOCKET);
}

int dx_stream_handshake(dx_stream *st) {
  return dx_stream_layered(st) ? tls_handshake(st) : 0;
}

int dx_stream_held(const dx_stream *st) {
  return dx_stream_layered(st) && tls_held(st);
}

const char *dx_stream_reason(const dx_stream *st, int code) {
  return dx_stream_layered(st) ? tls_reason(st, code) : NULL;
}
