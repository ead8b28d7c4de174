/*
 * dx_stream.h - one byte stream over a descriptor, whatever carries it: a
 * socket (recv/send), any other descriptor (read/write: a pipe, a tty, a
 * file), or TLS over a socket (dx_tls), as cqueues' socket layer chooses.
 * Its users need not know which: every call answers with bytes, -EAGAIN
 * (wait for the call's own direction), DX_WANT_READ or DX_WANT_WRITE (wait
 * for the other one: TLS may need either), or a code; and a stream says
 * what its users may assume of it (dx_stream_layered). The descriptor is
 * passed in and stays the caller's: a stream never closes it. Pure C (no
 * Lua); built without OpenSSL (no DX_TLS), no stream is ever TLS.
 */
#ifndef DX_STREAM_H
#define DX_STREAM_H

#include "dx_prefix.h"
#include "dx_fd.h"
#include "dx_net.h"
#include <stddef.h>
#include <sys/uio.h>

enum { DX_STREAM_SOCKET, DX_STREAM_FILE, DX_STREAM_TLS };

typedef struct dx_stream {
  unsigned char kind;          /* DX_STREAM_* */
  struct dx_tls *tls;          /* DX_STREAM_TLS: the connection */
} dx_stream;

/* A plain stream: DX_STREAM_SOCKET or DX_STREAM_FILE. */
void dx_stream_init(dx_stream *st, int kind);

/* Is a protocol layered over the descriptor (TLS)? Then its bytes are not
 * the descriptor's: the descriptor's readiness is not the stream's (a
 * read may find a record half in, or bytes the layer holds), splice(2)
 * never sees them, a move in one direction may be what the other waits
 * for, and its end is bytes to send (close_notify). */
#define dx_stream_layered(st) ((st)->kind == DX_STREAM_TLS)
/* A layered stream writes one piece at a time, at most this much in one
 * unit (a TLS record's plaintext): small pieces are best joined first. */
#define DX_STREAM_RECORD 16384

/* The layer's side of the calls below (dx_stream.c). */
long dx_stream_layer_recv(dx_stream *st, char *p, size_t n);
long dx_stream_layer_send(dx_stream *st, const char *p, size_t n);

/* Receive once: > 0 bytes, 0 at the end of the stream (TLS: the peer's
 * close_notify), -EAGAIN, DX_WANT_WRITE or a code. */
static inline long dx_stream_recv(dx_stream *st, int fd, char *p, size_t n) {
  switch (st->kind) {
  case DX_STREAM_SOCKET: return dx_recv(fd, p, n);
  case DX_STREAM_FILE: return dx_read(fd, p, n);
  default: return dx_stream_layer_recv(st, p, n);
  }
}

/* Send from n pieces (a layered stream: from the first only): bytes sent,
 * -EAGAIN, DX_WANT_READ or a code. A layered send that waited must be
 * made again with the same bytes (see dx_stream_held). */
static inline long dx_stream_sendv(dx_stream *st, int fd, struct iovec *iov, int n) {
  switch (st->kind) {
  case DX_STREAM_SOCKET: return dx_sendv(fd, iov, n);
  case DX_STREAM_FILE: return dx_writev(fd, iov, n);
  default: return dx_stream_layer_send(st, (const char *)iov[0].iov_base, iov[0].iov_len);
  }
}

static inline long dx_stream_send(dx_stream *st, int fd, const char *p, size_t n) {
  struct iovec iov;
  iov.iov_base = (void *)p;
  iov.iov_len = n;
  return dx_stream_sendv(st, fd, &iov, 1);
}

/* End a direction (SHUT_RD, SHUT_WR, SHUT_RDWR): 0 or a code. TLS ends
 * writing with close_notify first, all of it, and answers -EAGAIN while
 * the socket cannot take the rest (call again once it is writable); sends
 * fail with EPIPE from the first call on, as a socket's do. */
int dx_stream_shutdown(dx_stream *st, int fd, int how);
/* Before the descriptor is closed (fd >= 0), or after (fd < 0): TLS sends
 * close_notify once, never waiting, and frees its state; the stream is a
 * plain socket's then. */
void dx_stream_close(dx_stream *st, int fd);
/* 0 once the stream is open (a plain one always is), DX_WANT_READ or
 * DX_WANT_WRITE while TLS's handshake waits, or a code. */
int dx_stream_handshake(dx_stream *st);
/* Does the layer hold a send's bytes, so that only the same bytes may be
 * sent next (a TLS record that waited)? */
int dx_stream_held(const dx_stream *st);
/* The stream's own reason for the failure `code` (TLS: OpenSSL's, "certificate
 * has expired"), or NULL when dx_strerror's is the one. */
const char *dx_stream_reason(const dx_stream *st, int code);

/* TLS from now on, through t, which the stream owns (dx_stream_close frees
 * it): built with OpenSSL only. And the connection, for what the
 * handshake agreed (NULL: a plain stream). */
void dx_stream_starttls(dx_stream *st, struct dx_tls *t);
#define dx_stream_tls(st) ((st)->tls)

#endif
