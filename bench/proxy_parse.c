/*
 * proxy_parse.c - the PROXY parser's own cost (csrc/dx_proxy.c): how long
 * dx_proxy_parse takes over a whole header, in nanoseconds, for the
 * headers a proxy sends: HAProxy's v2 for TCP/IPv4 without TLVs and with
 * ALPN, authority, unique id and SSL ones plus a CRC32C, a v2 TCP/IPv6,
 * and v1 TCP4 and TCP6 lines. proxy.sh runs it.
 *   cc -O2 -I../csrc proxy_parse.c ../csrc/dx_proxy.c -o bin/proxy_parse
 */
#include "dx_proxy.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define V1_4 "PROXY TCP4 203.0.113.7 127.0.0.2 42000 8080\r\n"
#define V1_6 "PROXY TCP6 2001:db8::7 2001:db8::2 42000 8080\r\n"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t tlv(unsigned char *o, int type, const char *v, size_t n) {
  o[0] = (unsigned char)type, o[1] = (unsigned char)(n >> 8), o[2] = (unsigned char)n;
  memcpy(o + 3, v, n);
  return 3 + n;
}

static void bench(const char *name, const unsigned char *h, size_t len) {
  dx_proxy info;
  const char *why;
  volatile int sink = 0;
  long n = 2000000, i;
  double t0, t;
  if (dx_proxy_parse((const char *)h, len, &info, &why) != (int)len) {
    printf("%s: refused (%s)\n", name, why ? why : "needs more");
    return;
  }
  t0 = now();
  for (i = 0; i < n; i++) sink += dx_proxy_parse((const char *)h, len, &info, &why);
  t = now() - t0;
  printf("| %s | %zu | %.0f |\n", name, len, t / (double)n * 1e9);
  (void)sink;
}

int main(void) {
  static const unsigned char sig[12] = {13, 10, 13, 10, 0, 13, 10, 'Q', 'U', 'I', 'T', 10};
  unsigned char h[512], ssl[128];
  size_t n, s;
  unsigned long crc;
  printf("| header | bytes | ns per parse |\n|---|---:|---:|\n");
  /* v2 TCP/IPv4, no TLVs (HAProxy's send-proxy-v2 by default) */
  memcpy(h, sig, 12);
  h[12] = 0x21, h[13] = 0x11, h[14] = 0, h[15] = 12;
  memcpy(h + 16, "\xcb\x00\x71\x07\x7f\x00\x00\x02\xa4\x10\x1f\x90", 12);
  bench("v2 TCP4", h, 28);
  /* v2 TCP/IPv6 */
  h[13] = 0x21, h[15] = 36;
  memset(h + 16, 0x20, 32);
  memcpy(h + 48, "\xa4\x10\x1f\x90", 4);
  bench("v2 TCP6", h, 52);
  /* v2 TCP/IPv4 with TLVs and a CRC32C */
  h[13] = 0x11;
  memcpy(h + 16, "\xcb\x00\x71\x07\x7f\x00\x00\x02\xa4\x10\x1f\x90", 12);
  n = 28;
  n += tlv(h + n, 0x01, "h2", 2);
  n += tlv(h + n, 0x02, "www.example.com", 15);
  n += tlv(h + n, 0x05, "6c1c0a2f-3e2b-4d5a-9f1e-0123456789ab", 36);
  memcpy(ssl, "\x01\x00\x00\x00\x00", 5);
  s = 5;
  s += tlv(ssl + s, 0x21, "TLSv1.3", 7);
  s += tlv(ssl + s, 0x23, "TLS_AES_256_GCM_SHA384", 22);
  n += tlv(h + n, 0x20, (const char *)ssl, s);
  n += tlv(h + n, 0x03, "\0\0\0\0", 4);
  h[14] = (unsigned char)((n - 16) >> 8), h[15] = (unsigned char)(n - 16);
  crc = dx_crc32c(0, h, n);
  h[n - 4] = (unsigned char)(crc >> 24), h[n - 3] = (unsigned char)(crc >> 16);
  h[n - 2] = (unsigned char)(crc >> 8), h[n - 1] = (unsigned char)crc;
  bench("v2 TCP4 + ALPN, authority, unique id, SSL, CRC32C", h, n);
  bench("v1 TCP4", (const unsigned char *)V1_4, strlen(V1_4));
  bench("v1 TCP6", (const unsigned char *)V1_6, strlen(V1_6));
  return 0;
}
