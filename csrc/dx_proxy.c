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

/* CRC32C's table: entry i is i's remainder by the reflected polynomial
 * 0x82f63b78 (RFC 4960, appendix B). */
static const unsigned long crc32c_table[256] = {
  0x00000000UL, 0xf26b8303UL, 0xe13b70f7UL, 0x1350f3f4UL, 0xc79a971fUL, 0x35f1141cUL,
  0x26a1e7e8UL, 0xd4ca64ebUL, 0x8ad958cfUL, 0x78b2dbccUL, 0x6be22838UL, 0x9989ab3bUL,
  0x4d43cfd0UL, 0xbf284cd3UL, 0xac78bf27UL, 0x5e133c24UL, 0x105ec76fUL, 0xe235446cUL,
  0xf165b798UL, 0x030e349bUL, 0xd7c45070UL, 0x25afd373UL, 0x36ff2087UL, 0xc494a384UL,
  0x9a879fa0UL, 0x68ec1ca3UL, 0x7bbcef57UL, 0x89d76c54UL, 0x5d1d08bfUL, 0xaf768bbcUL,
  0xbc267848UL, 0x4e4dfb4bUL, 0x20bd8edeUL, 0xd2d60dddUL, 0xc186fe29UL, 0x33ed7d2aUL,
  0xe72719c1UL, 0x154c9ac2UL, 0x061c6936UL, 0xf477ea35UL, 0xaa64d611UL, 0x580f5512UL,
  0x4b5fa6e6UL, 0xb93425e5UL, 0x6dfe410eUL, 0x9f95c20dUL, 0x8cc531f9UL, 0x7eaeb2faUL,
  0x30e349b1UL, 0xc288cab2UL, 0xd1d83946UL, 0x23b3ba45UL, 0xf779deaeUL, 0x05125dadUL,
  0x1642ae59UL, 0xe4292d5aUL, 0xba3a117eUL, 0x4851927dUL, 0x5b016189UL, 0xa96ae28aUL,
  0x7da08661UL, 0x8fcb0562UL, 0x9c9bf696UL, 0x6ef07595UL, 0x417b1dbcUL, 0xb3109ebfUL,
  0xa0406d4bUL, 0x522bee48UL, 0x86e18aa3UL, 0x748a09a0UL, 0x67dafa54UL, 0x95b17957UL,
  0xcba24573UL, 0x39c9c670UL, 0x2a993584UL, 0xd8f2b687UL, 0x0c38d26cUL, 0xfe53516fUL,
  0xed03a29bUL, 0x1f682198UL, 0x5125dad3UL, 0xa34e59d0UL, 0xb01eaa24UL, 0x42752927UL,
  0x96bf4dccUL, 0x64d4cecfUL, 0x77843d3bUL, 0x85efbe38UL, 0xdbfc821cUL, 0x2997011fUL,
  0x3ac7f2ebUL, 0xc8ac71e8UL, 0x1c661503UL, 0xee0d9600UL, 0xfd5d65f4UL, 0x0f36e6f7UL,
  0x61c69362UL, 0x93ad1061UL, 0x80fde395UL, 0x72966096UL, 0xa65c047dUL, 0x5437877eUL,
  0x4767748aUL, 0xb50cf789UL, 0xeb1fcbadUL, 0x197448aeUL, 0x0a24bb5aUL, 0xf84f3859UL,
  0x2c855cb2UL, 0xdeeedfb1UL, 0xcdbe2c45UL, 0x3fd5af46UL, 0x7198540dUL, 0x83f3d70eUL,
  0x90a324faUL, 0x62c8a7f9UL, 0xb602c312UL, 0x44694011UL, 0x5739b3e5UL, 0xa55230e6UL,
  0xfb410cc2UL, 0x092a8fc1UL, 0x1a7a7c35UL, 0xe811ff36UL, 0x3cdb9bddUL, 0xceb018deUL,
  0xdde0eb2aUL, 0x2f8b6829UL, 0x82f63b78UL, 0x709db87bUL, 0x63cd4b8fUL, 0x91a6c88cUL,
  0x456cac67UL, 0xb7072f64UL, 0xa457dc90UL, 0x563c5f93UL, 0x082f63b7UL, 0xfa44e0b4UL,
  0xe9141340UL, 0x1b7f9043UL, 0xcfb5f4a8UL, 0x3dde77abUL, 0x2e8e845fUL, 0xdce5075cUL,
  0x92a8fc17UL, 0x60c37f14UL, 0x73938ce0UL, 0x81f80fe3UL, 0x55326b08UL, 0xa759e80bUL,
  0xb4091bffUL, 0x466298fcUL, 0x1871a4d8UL, 0xea1a27dbUL, 0xf94ad42fUL, 0x0b21572cUL,
  0xdfeb33c7UL, 0x2d80b0c4UL, 0x3ed04330UL, 0xccbbc033UL, 0xa24bb5a6UL, 0x502036a5UL,
  0x4370c551UL, 0xb11b4652UL, 0x65d122b9UL, 0x97baa1baUL, 0x84ea524eUL, 0x7681d14dUL,
  0x2892ed69UL, 0xdaf96e6aUL, 0xc9a99d9eUL, 0x3bc21e9dUL, 0xef087a76UL, 0x1d63f975UL,
  0x0e330a81UL, 0xfc588982UL, 0xb21572c9UL, 0x407ef1caUL, 0x532e023eUL, 0xa145813dUL,
  0x758fe5d6UL, 0x87e466d5UL, 0x94b49521UL, 0x66df1622UL, 0x38cc2a06UL, 0xcaa7a905UL,
  0xd9f75af1UL, 0x2b9cd9f2UL, 0xff56bd19UL, 0x0d3d3e1aUL, 0x1e6dcdeeUL, 0xec064eedUL,
  0xc38d26c4UL, 0x31e6a5c7UL, 0x22b65633UL, 0xd0ddd530UL, 0x0417b1dbUL, 0xf67c32d8UL,
  0xe52cc12cUL, 0x1747422fUL, 0x49547e0bUL, 0xbb3ffd08UL, 0xa86f0efcUL, 0x5a048dffUL,
  0x8ecee914UL, 0x7ca56a17UL, 0x6ff599e3UL, 0x9d9e1ae0UL, 0xd3d3e1abUL, 0x21b862a8UL,
  0x32e8915cUL, 0xc083125fUL, 0x144976b4UL, 0xe622f5b7UL, 0xf5720643UL, 0x07198540UL,
  0x590ab964UL, 0xab613a67UL, 0xb831c993UL, 0x4a5a4a90UL, 0x9e902e7bUL, 0x6cfbad78UL,
  0x7fab5e8cUL, 0x8dc0dd8fUL, 0xe330a81aUL, 0x115b2b19UL, 0x020bd8edUL, 0xf0605beeUL,
  0x24aa3f05UL, 0xd6c1bc06UL, 0xc5914ff2UL, 0x37faccf1UL, 0x69e9f0d5UL, 0x9b8273d6UL,
  0x88d28022UL, 0x7ab90321UL, 0xae7367caUL, 0x5c18e4c9UL, 0x4f48173dUL, 0xbd23943eUL,
  0xf36e6f75UL, 0x0105ec76UL, 0x12551f82UL, 0xe03e9c81UL, 0x34f4f86aUL, 0xc69f7b69UL,
  0xd5cf889dUL, 0x27a40b9eUL, 0x79b737baUL, 0x8bdcb4b9UL, 0x988c474dUL, 0x6ae7c44eUL,
  0xbe2da0a5UL, 0x4c4623a6UL, 0x5f16d052UL, 0xad7d5351UL,
};

unsigned long dx_crc32c(unsigned long crc, const void *p, size_t n) {
  const unsigned char *b = p;
  crc = ~crc & 0xffffffffUL;
  while (n--) crc = crc32c_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
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
  /* an IPv4 peer (or a v4-mapped one, from a dual-stack listener) is
   * matched as both its forms: 10.0.0.0/8 and ::ffff:10.0.0.0/104 alike */
  unsigned char v6[16], *v4 = v6 + 12;
  int is4, i;
  if (a->ss.ss_family == AF_INET) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(v6, mapped, 12);
    memcpy(v4, &((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
    is4 = 1;
  } else if (a->ss.ss_family == AF_INET6) {
    const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    memcpy(v6, in6->s6_addr, 16);
    is4 = IN6_IS_ADDR_V4MAPPED(in6);
  } else {
    return 0;
  }
  for (i = 0; i < n; i++) {
    if (set[i].family == AF_INET6 && prefix_equal(set[i].addr, v6, set[i].bits)) return 1;
    if (set[i].family == AF_INET && is4 && prefix_equal(set[i].addr, v4, set[i].bits)) return 1;
  }
  return 0;
}
