/*
 * dx_proxy.h - the PROXY protocol (HAProxy's proxy-protocol.txt), versions
 * 1 and 2, as a receiver: an incremental parser over the bytes received so
 * far, which never guesses (the bytes either are a valid header, or need
 * more, or are refused with a reason), and the address matcher for the
 * proxies trusted to send one. Pure C: no Lua, no syscalls.
 */
#ifndef DX_PROXY_H
#define DX_PROXY_H

#include "dx_prefix.h"
#include "dx_net.h"
#include <stddef.h>

/* Longest header of each version: v1's line with its CRLF (107), v2's
 * 16 bytes and a 16-bit length. */
#define DX_PROXY_V1_MAX 107
#define DX_PROXY_V2_MAX (16 + 65535)

enum { DX_PROXY_LOCAL = 0, DX_PROXY_PROXY = 1 };              /* command */
enum { DX_PROXY_UNSPEC = 0, DX_PROXY_STREAM = 1, DX_PROXY_DGRAM = 2 };  /* protocol */

/* The registered TLV types (v2). */
enum {
  DX_PP2_ALPN = 0x01, DX_PP2_AUTHORITY = 0x02, DX_PP2_CRC32C = 0x03,
  DX_PP2_NOOP = 0x04, DX_PP2_UNIQUE_ID = 0x05, DX_PP2_SSL = 0x20,
  DX_PP2_SSL_VERSION = 0x21, DX_PP2_SSL_CN = 0x22, DX_PP2_SSL_CIPHER = 0x23,
  DX_PP2_SSL_SIG_ALG = 0x24, DX_PP2_SSL_KEY_ALG = 0x25, DX_PP2_NETNS = 0x30
};
/* PP2_TYPE_SSL's client bits. */
enum { DX_PP2_CLIENT_SSL = 0x01, DX_PP2_CLIENT_CERT_CONN = 0x02, DX_PP2_CLIENT_CERT_SESS = 0x04 };

typedef struct dx_proxy {
  int version;                /* 1 or 2 */
  int command;                /* DX_PROXY_LOCAL (v2 only) or DX_PROXY_PROXY */
  int family;                 /* AF_UNSPEC (v1 UNKNOWN, v2 UNSPEC), AF_INET,
                                 AF_INET6, AF_UNIX */
  int protocol;               /* DX_PROXY_STREAM, _DGRAM or _UNSPEC */
  int addressed;              /* src and dst are the original endpoints: a
                                 PROXY command with a family; otherwise the
                                 connection's own endpoints stand */
  dx_addr src, dst;           /* when addressed */
  size_t tlv, tlvlen;         /* v2: the TLVs, at header[tlv...]; all
                                 well-formed (dx_proxy_tlv walks them) */
} dx_proxy;

/* Parse the header at the start of p[0..len), the bytes received so far.
 * Returns its length (> 0: the bytes after it are the connection's), 0
 * when it is a valid beginning that needs more bytes, or -EPROTO with a
 * reason in *why (a static string) when these bytes can be no valid
 * header however they go on. An answer other than 0 never changes as
 * more bytes arrive. v2's CRC32C, when present, is verified. */
int dx_proxy_parse(const char *p, size_t len, dx_proxy *out, const char **why);

/* The next TLV of a well-formed list at tlv[*off...len): 1 with its type
 * and value (and *off moved past it), or 0 at the end. */
int dx_proxy_tlv(const unsigned char *tlv, size_t len, size_t *off, int *type,
                 const unsigned char **val, size_t *vlen);
/* PP2_TYPE_SSL's value (checked by the parser): the client bits, the
 * verify result (0: a certificate was presented and verified) and where
 * its sub-TLVs are within it (walk them with dx_proxy_tlv). */
void dx_proxy_ssl(const unsigned char *val, size_t vlen, int *client,
                  unsigned long *verify, size_t *subs);

/* CRC32C (Castagnoli) of p[0..n), continuing from crc (start with 0). */
unsigned long dx_crc32c(unsigned long crc, const void *p, size_t n);

/* An address range: "10.0.0.0/8", "::1", "127.0.0.1" (a plain address is
 * a /32 or /128). */
typedef struct dx_cidr {
  int family;                 /* AF_INET or AF_INET6 */
  int bits;                   /* the prefix length */
  unsigned char addr[16];
} dx_cidr;

/* Parse s into *out: 0, or -EINVAL with a reason in *why (host bits set
 * beyond the prefix are refused: "10.0.0.1/8" is a typo, not a range). */
int dx_cidr_parse(const char *s, dx_cidr *out, const char **why);
/* Is a (an inet or inet6 address) in one of the n ranges? An IPv4
 * address and its v4-mapped IPv6 form (::ffff:a.b.c.d, a dual-stack
 * listener's IPv4 peers) are the same address to either kind of range. */
int dx_cidr_match(const dx_cidr *set, int n, const dx_addr *a);

#endif
