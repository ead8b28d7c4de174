/*
 * fuzz_proxy.c - fuzz of the PROXY protocol parser (csrc/dx_proxy.c) and
 * the proxy_from matcher, checked against what the parser promises:
 *
 * - an answer holds: once a prefix of the bytes is a header (its length)
 *   or refused, every longer prefix says the same, with the same fields;
 *   a header is never longer than the bytes it was given;
 * - a header's TLVs (and PP2_TYPE_SSL's sub-TLVs) walk to their end
 *   exactly; a v1 TCP4 line is exactly the line its fields print (strict:
 *   no leading zeros, one space);
 * - a v2 header built from the input (mode byte 1: command, family, TLVs
 *   and a CRC32C computed as the specification says) parses back to the
 *   same fields, and with any one byte of its CRC flipped it is refused;
 * - a range parsed from the input contains its own address.
 *
 * Build (libFuzzer):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -Icsrc spec/fuzz/fuzz_proxy.c csrc/dx_proxy.c -o build/fuzz_proxy
 * Build (replay only, any C compiler):
 *   cc -DFUZZ_STANDALONE -g -Icsrc spec/fuzz/fuzz_proxy.c csrc/dx_proxy.c \
 *     -o build/fuzz_proxy_replay && build/fuzz_proxy_replay FILE...
 */
#include "dx_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "fuzz_proxy: " __VA_ARGS__); \
  fprintf(stderr, " (%s:%d)\n", __FILE__, __LINE__); abort(); } } while (0)

static int same_info(const dx_proxy *a, const dx_proxy *b) {
  return a->version == b->version && a->command == b->command && a->family == b->family &&
         a->protocol == b->protocol && a->addressed == b->addressed && a->tlv == b->tlv &&
         a->tlvlen == b->tlvlen &&
         (!a->addressed || (a->src.len == b->src.len && memcmp(&a->src.ss, &b->src.ss, a->src.len) == 0 &&
                            a->dst.len == b->dst.len && memcmp(&a->dst.ss, &b->dst.ss, a->dst.len) == 0));
}

static void check_tlvs(const unsigned char *h, const dx_proxy *in) {
  size_t off = 0, vlen;
  const unsigned char *v;
  int type;
  while (dx_proxy_tlv(h + in->tlv, in->tlvlen, &off, &type, &v, &vlen)) {
    CHECK(v + vlen <= h + in->tlv + in->tlvlen, "a TLV past the header");
    if (type == DX_PP2_SSL) {
      int client, st;
      unsigned long verify;
      size_t subs, svlen;
      const unsigned char *sv;
      dx_proxy_ssl(v, vlen, &client, &verify, &subs);
      CHECK(subs == 5 && vlen >= 5, "an SSL TLV too short");
      while (dx_proxy_tlv(v, vlen, &subs, &st, &sv, &svlen))
        CHECK(sv + svlen <= v + vlen, "an SSL sub-TLV past its TLV");
      CHECK(subs == vlen, "SSL sub-TLVs do not end with their TLV");
    }
    if (type == DX_PP2_UNIQUE_ID) CHECK(vlen <= 128, "a UNIQUE_ID over 128 bytes");
  }
  CHECK(off == in->tlvlen, "TLVs do not end with the header");
}

/* A v1 TCP4 line is exactly what its fields print. */
static void check_v1(const char *p, int r, const dx_proxy *in) {
  char line[128], a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
  const struct sockaddr_in *s = (const struct sockaddr_in *)&in->src.ss;
  const struct sockaddr_in *d = (const struct sockaddr_in *)&in->dst.ss;
  int n;
  CHECK(r <= DX_PROXY_V1_MAX, "a v1 line over 107 bytes");
  if (in->family != AF_INET) return;
  inet_ntop(AF_INET, &s->sin_addr, a, sizeof a);
  inet_ntop(AF_INET, &d->sin_addr, b, sizeof b);
  n = snprintf(line, sizeof line, "PROXY TCP4 %s %s %u %u\r\n", a, b, ntohs(s->sin_port), ntohs(d->sin_port));
  CHECK(n == r && memcmp(line, p, (size_t)n) == 0, "a TCP4 line that is not canonical: %.*s", r, p);
}

static void parse_prefixes(const char *p, size_t len) {
  dx_proxy full, part;
  const char *why, *why2;
  int r = dx_proxy_parse(p, len, &full, &why);
  size_t k;
  CHECK(r <= (int)len, "a header longer than its bytes");
  CHECK(r >= 0 || (r == -EPROTO && why != NULL), "a refusal without a reason");
  if (r > 0) {
    if (full.version == 2) check_tlvs((const unsigned char *)p, &full);
    else check_v1(p, r, &full);
    if (full.addressed) CHECK(full.src.ss.ss_family == full.family, "source of another family");
  }
  for (k = 0; k < len; k = k < 300 ? k + 1 : k + 37) {
    int q = dx_proxy_parse(p, k, &part, &why2);
    if (q > 0) {
      CHECK(q == r && same_info(&part, &full), "a header at %zu bytes that changed at %zu", k, len);
    } else if (q < 0) {
      CHECK(r < 0, "refused at %zu bytes, not at %zu", k, len);
    } else {
      CHECK(r <= 0 || (size_t)r > k, "need-more at %zu bytes though a header of %d was there", k, r);
    }
  }
}

static unsigned char *put16(unsigned char *o, unsigned v) {
  o[0] = (unsigned char)(v >> 8);
  o[1] = (unsigned char)v;
  return o + 2;
}

/* A valid v2 header from the input, with a CRC32C; it must parse back. */
static void built_v2(const uint8_t *d, size_t n) {
  static unsigned char h[16 + 216 + 4096 + 7];
  static const unsigned char sig[12] = {13, 10, 13, 10, 0, 13, 10, 'Q', 'U', 'I', 'T', 10};
  static const int fams[] = {0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32};
  size_t block, len, crcat, i;
  int cmd, fam, r;
  unsigned long crc;
  dx_proxy in;
  const char *why;
  unsigned char *o;
  if (n < 2) return;
  cmd = d[0] & 1;
  fam = fams[d[1] % 7];
  d += 2, n -= 2;
  block = (fam >> 4) == 1 ? 12 : (fam >> 4) == 2 ? 36 : (fam >> 4) == 3 ? 216 : 0;
  if (n < block) return;
  memcpy(h, sig, 12);
  h[12] = (unsigned char)(0x20 | cmd);
  h[13] = (unsigned char)fam;
  memcpy(h + 16, d, block);
  d += block, n -= block;
  o = h + 16 + block;
  /* TLVs: type byte, length byte (mod 64), value; never a CRC32C */
  while (n >= 2 && (size_t)(o - h) + 3 + 64 + 7 < sizeof h) {
    int type = d[0] == DX_PP2_CRC32C ? DX_PP2_NOOP : d[0];
    size_t vl = d[1] % 64;
    if (vl > n - 2) vl = n - 2;
    if (type == DX_PP2_SSL && vl < 5) type = DX_PP2_NOOP;
    if (type == DX_PP2_SSL) vl = 5;         /* no sub-TLVs: they would need their own shape */
    *o++ = (unsigned char)type;
    o = put16(o, (unsigned)vl);
    memcpy(o, d + 2, vl);
    o += vl;
    d += 2 + vl, n -= 2 + vl;
  }
  *o++ = DX_PP2_CRC32C;
  o = put16(o, 4);
  crcat = (size_t)(o - h);
  memset(o, 0, 4);
  o += 4;
  len = (size_t)(o - h);
  put16(h + 14, (unsigned)(len - 16));
  crc = dx_crc32c(0, h, len);
  h[crcat] = (unsigned char)(crc >> 24), h[crcat + 1] = (unsigned char)(crc >> 16);
  h[crcat + 2] = (unsigned char)(crc >> 8), h[crcat + 3] = (unsigned char)crc;
  r = dx_proxy_parse((const char *)h, len, &in, &why);
  CHECK(r == (int)len, "a built header refused: %s", why ? why : "(needs more)");
  CHECK(in.version == 2 && in.command == cmd && in.protocol == (fam & 15), "fields differ");
  CHECK(in.addressed == (cmd == 1 && fam != 0), "addressed differs");
  CHECK(in.tlv == 16 + block && in.tlvlen == len - 16 - block, "TLVs differ");
  check_tlvs(h, &in);
  parse_prefixes((const char *)h, len);
  for (i = 0; i < 4; i++) {
    h[crcat + i] ^= 0x5a;
    CHECK(dx_proxy_parse((const char *)h, len, &in, &why) < 0, "a wrong CRC32C accepted");
    h[crcat + i] ^= 0x5a;
  }
}

static void cidr(const uint8_t *d, size_t n) {
  char s[72];
  dx_cidr c;
  dx_addr a;
  const char *why;
  if (n >= sizeof s) n = sizeof s - 1;
  memcpy(s, d, n);
  s[n] = '\0';
  if (dx_cidr_parse(s, &c, &why) < 0) {
    CHECK(why != NULL, "a refused range without a reason");
    return;
  }
  memset(&a, 0, sizeof a);
  if (c.family == AF_INET) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a.ss;
    v4->sin_family = AF_INET;
    memcpy(&v4->sin_addr, c.addr, 4);
    a.len = sizeof *v4;
  } else {
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a.ss;
    v6->sin6_family = AF_INET6;
    memcpy(&v6->sin6_addr, c.addr, 16);
    a.len = sizeof *v6;
  }
  CHECK(dx_cidr_match(&c, 1, &a), "a range without its own address: %s", s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  switch (data[0] % 4) {
  case 0: case 3: parse_prefixes((const char *)data + 1, size - 1); break;
  case 1: built_v2(data + 1, size - 1); break;
  default: cidr(data + 1, size - 1); break;
  }
  return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv) {
  int i;
  for (i = 1; i < argc; i++) {
    static uint8_t buf[1 << 20];
    FILE *f = fopen(argv[i], "rb");
    size_t n;
    if (!f) { perror(argv[i]); return 1; }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
  }
  return 0;
}
#endif
