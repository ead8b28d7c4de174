/*
 * dx_proxy.c - the PROXY protocol's receiving side (dx_proxy.h): the
 * header of versions 1 and 2 parsed strictly, as the specification says
 * (HAProxy's doc/proxy-protocol.txt), and the ranges of trusted proxies.
 * Nothing here reads a socket: the caller hands over what it received.
 * No Lua, no syscalls.
 *
 * Strict means: the first bytes decide the version, and anything that does
 * not match it exactly is refused; a v1 line must end with CRLF within 107
 * bytes, with exactly one space between fields, no leading zeros, and
 * addresses of the family it names; a v2 header must have version 2, a
 * known command, family and protocol, an address block as long as its
 * family's, and TLVs that fill the rest exactly. Each check is made as
 * soon as its bytes are there, so a stranger is refused at once, and an
 * answer, once given, holds whatever follows.
 */
#include "dx_prefix.h"
#include "dx_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

static const char v2sig[12] = {'\r', '\n', '\r', '\n', '\0', '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};

static int refuse(const char **why, const char *reason) {
  *why = reason;
  return -EPROTO;
}

/* Does p[0..len) begin like s (as far as it goes)? */
static int starts_like(const char *p, size_t len, const char *s, size_t slen) {
  return memcmp(p, s, len < slen ? len : slen) == 0;
}

/* --- version 1 ---------------------------------------------------------------- */

/* A decimal number without leading zeros, at most max: its value, or -1. */
static long decimal(const char *p, size_t n, long max) {
  long v = 0;
  size_t i;
  if (n == 0 || n > 5 || (n > 1 && p[0] == '0')) return -1;
  for (i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v <= max ? v : -1;
}

/* Exactly four decimals 0..255, no leading zeros, one dot between each. */
static int ipv4(const char *p, size_t n, unsigned char out[4]) {
  size_t i = 0, start;
  int part;
  for (part = 0; part < 4; part++) {
    long v;
    start = i;
    while (i < n && p[i] != '.') i++;
    v = decimal(p + start, i - start, 255);
    if (v < 0 || i - start > 3) return -1;
    out[part] = (unsigned char)v;
    if (part < 3) {
      if (i >= n) return -1;
      i++;                                  /* the dot */
    }
  }
  return i == n ? 0 : -1;
}

static int ipv6(const char *p, size_t n, unsigned char out[16]) {
  char buf[48];
  size_t i;
  if (n == 0 || n >= sizeof buf) return -1;
  for (i = 0; i < n; i++) {
    char ch = p[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
          ch == ':' || ch == '.'))
      return -1;
  }
  memcpy(buf, p, n);
  buf[n] = '\0';
  return inet_pton(AF_INET6, buf, out) == 1 ? 0 : -1;
}

static void set_inet(dx_addr *a, int family, const unsigned char *addr, unsigned port) {
  memset(a, 0, sizeof *a);
  if (family == AF_INET) {
    struct sockaddr_in *s = (struct sockaddr_in *)&a->ss;
    s->sin_family = AF_INET;
    memcpy(&s->sin_addr, addr, 4);
    s->sin_port = htons((unsigned short)port);
    a->len = sizeof *s;
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a->ss;
    s->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, addr, 16);
    s->sin6_port = htons((unsigned short)port);
    a->len = sizeof *s;
  }
}

/* Characters a line of that keyword may hold before its CR. */
static int v1_char_ok(int tcp6, char ch) {
  if ((ch >= '0' && ch <= '9') || ch == '.' || ch == ' ') return 1;
  return tcp6 && ((ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') || ch == ':');
}

/* "PROXY " has been seen (or its beginning). */
static int parse_v1(const char *p, size_t len, dx_proxy *o, const char **why) {
  size_t lim = len < DX_PROXY_V1_MAX ? len : DX_PROXY_V1_MAX, i, end = 0;
  const char *f, *fields[4];
  size_t flen[4], n, k;
  int unknown, tcp6, family;
  unsigned char src[16], dst[16];
  long sport, dport;
  /* the keyword, as far as it has come */
  if (len > 6) {
    const char *kw = p + 6;
    size_t kn = len - 6;
    if (!starts_like(kw, kn, "TCP4 ", 5) && !starts_like(kw, kn, "TCP6 ", 5) &&
        !starts_like(kw, kn, "UNKNOWN", 7))
      return refuse(why, "v1: not TCP4, TCP6 or UNKNOWN");
  }
  unknown = len > 6 && p[6] == 'U';
  tcp6 = len > 9 && p[9] == '6';
  /* the end of the line: CRLF, and neither a CR nor a LF alone before it */
  for (i = 6; i < lim; i++) {
    if (p[i] == '\n') return refuse(why, "v1: a LF without CR");
    if (p[i] == '\r') {
      if (i + 1 >= lim) break;
      if (p[i + 1] != '\n') return refuse(why, "v1: a CR without LF");
      end = i + 2;
      break;
    }
    if (!unknown && len > 11 && i >= 11 && !v1_char_ok(tcp6, p[i]))
      return refuse(why, "v1: a character that is no part of an address or port");
  }
  if (end == 0) {
    if (len >= DX_PROXY_V1_MAX) return refuse(why, "v1: no CRLF within 107 bytes");
    return 0;
  }
  memset(o, 0, sizeof *o);
  o->version = 1;
  o->command = DX_PROXY_PROXY;
  if (unknown) {                       /* whatever follows UNKNOWN is ignored */
    if (end - 2 > 13 && p[13] != ' ') return refuse(why, "v1: not TCP4, TCP6 or UNKNOWN");
    o->family = AF_UNSPEC;
    o->protocol = DX_PROXY_UNSPEC;
    return (int)end;
  }
  if (end - 2 < 11) return refuse(why, "v1: not TCP4, TCP6 or UNKNOWN");
  /* four fields, one space between each */
  f = p + 11;
  n = end - 2 - 11;
  for (k = 0; k < 4; k++) {
    const char *sp = memchr(f, ' ', n);
    size_t m = sp ? (size_t)(sp - f) : n;
    if (m == 0) return refuse(why, "v1: fields not separated by exactly one space");
    fields[k] = f;
    flen[k] = m;
    if (k < 3) {
      if (sp == NULL) return refuse(why, "v1: fewer than four fields");
      f = sp + 1;
      n -= m + 1;
    } else if (sp != NULL) {
      return refuse(why, "v1: more than four fields");
    }
  }
  family = tcp6 ? AF_INET6 : AF_INET;
  if (family == AF_INET ? ipv4(fields[0], flen[0], src) : ipv6(fields[0], flen[0], src))
    return refuse(why, tcp6 ? "v1: a source address that is no IPv6 address"
                            : "v1: a source address that is no IPv4 address");
  if (family == AF_INET ? ipv4(fields[1], flen[1], dst) : ipv6(fields[1], flen[1], dst))
    return refuse(why, tcp6 ? "v1: a destination address that is no IPv6 address"
                            : "v1: a destination address that is no IPv4 address");
  sport = decimal(fields[2], flen[2], 65535);
  dport = decimal(fields[3], flen[3], 65535);
  if (sport < 0 || dport < 0) return refuse(why, "v1: a port that is not 0..65535 without leading zeros");
  o->family = family;
  o->protocol = DX_PROXY_STREAM;
  o->addressed = 1;
  set_inet(&o->src, family, src, (unsigned)sport);
  set_inet(&o->dst, family, dst, (unsigned)dport);
  return (int)end;
}

/* --- version 2 ---------------------------------------------------------------- */

static unsigned be16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

static unsigned long be32(const unsigned char *p) {
  return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

unsigned long dx_crc32c(unsigned long crc, const void *p, size_t n) {
  const unsigned char *b = p;
  crc = ~crc & 0xffffffffUL;
  while (n--) {
    int k;
    crc ^= *b++;
    for (k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78UL : crc >> 1;
  }
  return ~crc & 0xffffffffUL;
}

/* Is tlv[0..len) a list of whole TLVs? */
static int tlvs_whole(const unsigned char *tlv, size_t len) {
  size_t off = 0;
  while (off < len) {
    size_t vlen;
    if (len - off < 3) return 0;
    vlen = be16(tlv + off + 1);
    if (vlen > len - off - 3) return 0;
    off += 3 + vlen;
  }
  return 1;
}

int dx_proxy_tlv(const unsigned char *tlv, size_t len, size_t *off, int *type,
                 const unsigned char **val, size_t *vlen) {
  size_t o = *off;
  if (o + 3 > len) return 0;
  *type = tlv[o];
  *vlen = be16(tlv + o + 1);
  if (*vlen > len - o - 3) return 0;            /* never, once parsed */
  *val = tlv + o + 3;
  *off = o + 3 + *vlen;
  return 1;
}

void dx_proxy_ssl(const unsigned char *val, size_t vlen, int *client,
                  unsigned long *verify, size_t *subs) {
  *client = vlen >= 1 ? val[0] : 0;
  *verify = vlen >= 5 ? be32(val + 1) : 0;
  *subs = vlen >= 5 ? 5 : vlen;
}

/* Check the TLVs of header h (total bytes) at h[tlv...total): NULL, or
 * why not. */
static const char *check_tlvs(const unsigned char *h, size_t total, size_t tlv) {
  size_t off = tlv;
  while (off < total) {
    size_t vlen;
    const unsigned char *v;
    int type;
    if (total - off < 3) return "v2: a TLV cut short";
    type = h[off];
    vlen = be16(h + off + 1);
    if (vlen > total - off - 3) return "v2: a TLV longer than the header";
    v = h + off + 3;
    switch (type) {
    case DX_PP2_CRC32C: {
      unsigned long crc;
      static const unsigned char zero[4] = {0, 0, 0, 0};
      if (vlen != 4) return "v2: a CRC32C TLV that is not 4 bytes";
      crc = dx_crc32c(0, h, (size_t)(v - h));
      crc = dx_crc32c(crc, zero, 4);
      crc = dx_crc32c(crc, v + 4, total - (size_t)(v + 4 - h));
      if (crc != be32(v)) return "v2: the CRC32C does not match";
      break;
    }
    case DX_PP2_UNIQUE_ID:
      if (vlen > 128) return "v2: a UNIQUE_ID longer than 128 bytes";
      break;
    case DX_PP2_SSL:
      if (vlen < 5) return "v2: an SSL TLV shorter than 5 bytes";
      if (!tlvs_whole(v + 5, vlen - 5)) return "v2: an SSL TLV whose sub-TLVs are cut short";
      break;
    default:
      break;
    }
    off += 3 + vlen;
  }
  return NULL;
}

static void set_unix(dx_addr *a, const unsigned char *path) {
  struct sockaddr_un *s = (struct sockaddr_un *)&a->ss;
  size_t n;
  memset(a, 0, sizeof *a);
  s->sun_family = AF_UNIX;
  memcpy(s->sun_path, path, 108);
  if (path[0] != 0) {
    n = strnlen(s->sun_path, 108);
  } else {                                  /* abstract: up to its last byte not 0 */
    for (n = 108; n > 1 && path[n - 1] == 0; n--) {}
  }
  a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

static int parse_v2(const unsigned char *h, size_t len, dx_proxy *o, const char **why) {
  int command, fam, proto;
  size_t total, block;
  const char *bad;
  if (len >= 13) {
    if (h[12] >> 4 != 2) return refuse(why, "v2: a version other than 2");
    if ((h[12] & 15) > 1) return refuse(why, "v2: a command other than LOCAL or PROXY");
  }
  if (len >= 14 && ((h[13] >> 4) > 3 || (h[13] & 15) > 2))
    return refuse(why, "v2: an unknown address family or protocol");
  if (len < 16) return 0;
  command = h[12] & 15;
  fam = h[13] >> 4;
  proto = h[13] & 15;
  total = 16 + (size_t)be16(h + 14);
  if (command == DX_PROXY_PROXY && (fam == 0) != (proto == 0))
    return refuse(why, "v2: an address family without a protocol, or the reverse");
  block = fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0;
  if (command == DX_PROXY_PROXY && total - 16 < block)
    return refuse(why, "v2: an address block shorter than its family's");
  if (len < total) return 0;
  memset(o, 0, sizeof *o);
  o->version = 2;
  o->command = command;
  o->family = fam == 1 ? AF_INET : fam == 2 ? AF_INET6 : fam == 3 ? AF_UNIX : AF_UNSPEC;
  o->protocol = proto;
  if (total - 16 < block) return (int)total;     /* LOCAL: all of it ignored */
  bad = check_tlvs(h, total, 16 + block);
  if (bad) {
    /* LOCAL ignores its block, TLVs too; but a wrong checksum is a
     * corrupt header whatever its command */
    if (command == DX_PROXY_PROXY || strcmp(bad, "v2: the CRC32C does not match") == 0)
      return refuse(why, bad);
    return (int)total;
  }
  o->tlv = 16 + block;
  o->tlvlen = total - o->tlv;
  if (command == DX_PROXY_LOCAL || fam == 0) return (int)total;
  o->addressed = 1;
  if (fam == 1) {
    set_inet(&o->src, AF_INET, h + 16, be16(h + 24));
    set_inet(&o->dst, AF_INET, h + 20, be16(h + 26));
  } else if (fam == 2) {
    set_inet(&o->src, AF_INET6, h + 16, be16(h + 48));
    set_inet(&o->dst, AF_INET6, h + 32, be16(h + 50));
  } else {
    set_unix(&o->src, h + 16);
    set_unix(&o->dst, h + 124);
  }
  return (int)total;
}

int dx_proxy_parse(const char *p, size_t len, dx_proxy *out, const char **why) {
  *why = NULL;
  if (len == 0) return 0;
  if (p[0] == 'P') {
    if (!starts_like(p, len, "PROXY ", 6)) return refuse(why, "not a PROXY header");
    return parse_v1(p, len, out, why);
  }
  if (!starts_like(p, len, v2sig, sizeof v2sig)) return refuse(why, "not a PROXY header");
  return parse_v2((const unsigned char *)p, len, out, why);
}

/* --- trusted proxies ---------------------------------------------------------- */

int dx_cidr_parse(const char *s, dx_cidr *out, const char **why) {
  char buf[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  int max, i;
  memset(out, 0, sizeof *out);
  *why = NULL;
  if (n == 0 || n >= sizeof buf) {
    *why = "not an address";
    return -EINVAL;
  }
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (inet_pton(AF_INET, buf, out->addr) == 1) out->family = AF_INET;
  else if (inet_pton(AF_INET6, buf, out->addr) == 1) out->family = AF_INET6;
  else {
    *why = "not an IPv4 or IPv6 address";
    return -EINVAL;
  }
  max = out->family == AF_INET ? 32 : 128;
  out->bits = max;
  if (slash) {
    long b = decimal(slash + 1, strlen(slash + 1), max);
    if (b < 0) {
      *why = "a prefix length out of range";
      return -EINVAL;
    }
    out->bits = (int)b;
  }
  for (i = out->bits; i < max; i++) {
    if (out->addr[i / 8] & (0x80 >> (i % 8))) {
      *why = "bits set beyond the prefix length";
      return -EINVAL;
    }
  }
  return 0;
}

static int prefix_equal(const unsigned char *a, const unsigned char *b, int bits) {
  int whole = bits / 8, rest = bits % 8;
  if (memcmp(a, b, (size_t)whole) != 0) return 0;
  if (rest == 0) return 1;
  return ((a[whole] ^ b[whole]) & (0xff00 >> rest) & 0xff) == 0;
}

int dx_cidr_match(const dx_cidr *set, int n, const dx_addr *a) {
  unsigned char addr[16];
  int family, i;
  if (a->ss.ss_family == AF_INET) {
    family = AF_INET;
    memcpy(addr, &((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
  } else if (a->ss.ss_family == AF_INET6) {
    const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(in6)) {
      family = AF_INET;
      memcpy(addr, in6->s6_addr + 12, 4);
    } else {
      family = AF_INET6;
      memcpy(addr, in6->s6_addr, 16);
    }
  } else {
    return 0;
  }
  for (i = 0; i < n; i++)
    if (set[i].family == family && prefix_equal(set[i].addr, addr, set[i].bits)) return 1;
  return 0;
}
