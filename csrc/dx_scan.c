/*
 * dx_scan.c - read formats over received bytes (see dx_scan.h). The rules
 * follow Lua's io library, except that "l" also drops a "\r" before the
 * "\n" (network protocols end lines with CRLF) and lines are bounded.
 */
#include "dx_prefix.h"
#include "dx_scan.h"

#include <errno.h>
#include <string.h>

static int value(dx_scan *s, size_t vlen, size_t used) {
  s->vlen = vlen;
  s->used = used;
  return DX_SCAN_VALUE;
}

/* At end of stream: what is left is the value, or there is none. */
static int rest(dx_scan *s, size_t len) {
  return len == 0 ? DX_SCAN_END : value(s, len, len);
}

static int scan_line(int keep, const char *p, size_t len, int eof,
                     size_t maxline, dx_scan *s) {
  const char *nl = NULL;
  if (s->from < len) nl = memchr(p + s->from, '\n', len - s->from);
  if (nl != NULL) {
    size_t n = (size_t)(nl - p);                 /* bytes before '\n' */
    if (n > maxline) return -EMSGSIZE;
    if (keep) return value(s, n + 1, n + 1);
    return value(s, (n > 0 && p[n - 1] == '\r') ? n - 1 : n, n + 1);
  }
  s->from = len;
  if (len > maxline) return -EMSGSIZE;
  return eof ? rest(s, len) : DX_SCAN_MORE;
}

int dx_scan_format(int fmt, size_t count, const char *p, size_t len, int eof,
                   size_t maxline, dx_scan *s) {
  switch (fmt) {
  case DX_FMT_LINE:
  case DX_FMT_LINEEND:
    return scan_line(fmt == DX_FMT_LINEEND, p, len, eof, maxline, s);
  case DX_FMT_ALL:
    return eof ? value(s, len, len) : DX_SCAN_MORE;
  default:                                       /* DX_FMT_COUNT */
    if (len >= count && (count > 0 || len > 0 || !eof)) return value(s, count, count);
    return eof ? rest(s, len) : DX_SCAN_MORE;
  }
}

int dx_scan_until(const char *p, size_t len, const char *d, size_t dlen,
                  size_t max, int eof, dx_scan *s) {
  const char *q = p + s->from, *end = p + len;
  while (s->from < len && (size_t)(end - q) >= dlen) {
    q = memchr(q, d[0], (size_t)(end - q) - dlen + 1);
    if (q == NULL) break;
    if (memcmp(q, d, dlen) == 0) {
      size_t pos = (size_t)(q - p);
      return pos > max ? -EMSGSIZE : value(s, pos, pos + dlen);
    }
    q++;
  }
  /* No delimiter starts before len - dlen + 1: search on from there. */
  s->from = len >= dlen ? len - dlen + 1 : 0;
  if (len >= max + dlen) return -EMSGSIZE;
  return eof ? DX_SCAN_END : DX_SCAN_MORE;
}

int dx_scan_some(size_t len, size_t max, int eof, dx_scan *s) {
  if (len > 0) return value(s, len < max ? len : max, len < max ? len : max);
  return eof ? DX_SCAN_END : DX_SCAN_MORE;
}
