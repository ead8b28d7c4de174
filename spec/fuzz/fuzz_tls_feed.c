/*
 * fuzz_tls_feed.c - libFuzzer target for what duplex's TLS reads before
 * OpenSSL parses it: the bytes received before TLS began (STARTTLS's
 * "ahead" bytes, which the BIO serves first) and then the socket. The input
 * is split in two at its first byte: ahead bytes, then socket bytes written
 * into a socketpair in pieces. A server-side connection handshakes and
 * reads until OpenSSL wants more or fails. What must hold: no crash, no
 * sanitizer report, every answer a want, a byte count or a code the binding
 * knows, and a failure that stays failed.
 *
 * Build (make fuzz): clang -fsanitize=fuzzer,address,undefined -Icsrc
 *   spec/fuzz/fuzz_tls_feed.c csrc/dx_tls.c csrc/dx_net.c -lssl -lcrypto
 * It needs FUZZ_TLS_CERT and FUZZ_TLS_KEY (a PEM certificate and key),
 * which make fuzz generates with the openssl CLI.
 */
#include "dx_prefix.h"
#include "dx_tls.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static dx_tls_ctx *ctx;

static void setup(void) {
  dx_tls_opts o = {0};
  char err[256];
  o.certificate = getenv("FUZZ_TLS_CERT");
  o.key = getenv("FUZZ_TLS_KEY");
  o.verify = -1;
  if (o.certificate == NULL || o.key == NULL) {
    fprintf(stderr, "fuzz_tls_feed: set FUZZ_TLS_CERT and FUZZ_TLS_KEY\n");
    abort();
  }
  ctx = dx_tls_ctx_new(&o, err, sizeof err);
  if (ctx == NULL) {
    fprintf(stderr, "fuzz_tls_feed: %s\n", err);
    abort();
  }
}

/* An answer the binding can handle. */
static void check(long r, dx_tls *t) {
  if (r >= 0 || r == DX_WANT_READ || r == DX_WANT_WRITE) return;
  if (r == DX_ECERT || r == -EPROTO || r == -ECONNRESET || r == -EPIPE || r == -ENOMEM) {
    if (dx_tls_failure(t) != (int)r && r != -ENOMEM) abort();   /* it must stay failed */
    return;
  }
  fprintf(stderr, "fuzz_tls_feed: unexpected answer %ld\n", r);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int sv[2], i;
  size_t ahead, off;
  char err[256], buf[4096];
  dx_tls *t;
  if (ctx == NULL) setup();
  if (size == 0) return 0;
  ahead = data[0] < size - 1 ? data[0] : size - 1;
  data++, size--;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) abort();
  t = dx_tls_new(ctx, 1, sv[0], NULL, NULL, (const char *)data, ahead, err, sizeof err);
  if (t == NULL) abort();
  off = ahead;
  for (i = 0; i < 64; i++) {
    long r;
    size_t piece = size - off < 512 ? size - off : 512;
    if (piece > 0 && write(sv[1], data + off, piece) > 0) off += piece;
    else if (piece == 0 && i > 0) shutdown(sv[1], SHUT_WR);     /* then the end */
    r = dx_tls_read(t, buf, sizeof buf);
    check(r, t);
    if (r == 0 || (r < 0 && r != DX_WANT_READ && r != DX_WANT_WRITE)) break;
    if (r > 0) continue;
    while (read(sv[1], buf, sizeof buf) > 0) {}   /* drain what it answered */
    if (piece == 0 && r == DX_WANT_READ && i > 2) break;
  }
  check(dx_tls_close_notify(t), t);
  dx_tls_free(t);
  close(sv[0]);
  close(sv[1]);
  return 0;
}
