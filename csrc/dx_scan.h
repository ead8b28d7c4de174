/*
 * dx_scan.h - what a read format answers over received bytes: the io
 * formats ("l", "L", "a", a count), a delimiter (readuntil) and "what has
 * arrived" (readsome). A scan only decides: it says how long the value is
 * and how many bytes it consumes, and copies nothing, so the caller can
 * finish its bookkeeping before it builds strings. `from` carries how far a
 * search got, so a line that arrives in pieces is searched once in all.
 * Pure C: no Lua, no syscalls.
 */
#ifndef DX_SCAN_H
#define DX_SCAN_H

#include "dx_prefix.h"
#include <stddef.h>

enum { DX_FMT_LINE = 'l', DX_FMT_LINEEND = 'L', DX_FMT_ALL = 'a', DX_FMT_COUNT = 'n' };

/* Results; or -EMSGSIZE when a line or delimited value exceeds its limit
 * (nothing consumed: the bytes stay for the next read). */
enum {
  DX_SCAN_MORE = 0,          /* not answerable yet: receive more */
  DX_SCAN_VALUE = 1,         /* a value: the first vlen bytes; consume used */
  DX_SCAN_END = 2            /* end of stream and nothing left: nil */
};

typedef struct dx_scan {
  size_t vlen, used;
  size_t from;               /* bytes already searched in vain: set it to 0
                                for a new search, keep it between tries */
} dx_scan;

/* One io format over p[0..len); eof: the stream has ended. A line ("l"
 * drops "\n" and a "\r" before it, "L" keeps its end) whose bytes before
 * the "\n" (a "\r" counts) exceed maxline is -EMSGSIZE; at end of stream
 * an unterminated rest is the last line and a count returns what is left.
 * "a" answers only at end of stream. */
int dx_scan_format(int fmt, size_t count, const char *p, size_t len, int eof,
                   size_t maxline, dx_scan *s);
/* The bytes before delimiter d (dlen >= 1; consumed with it); -EMSGSIZE
 * once no delimiter can start within max bytes; END at end of stream
 * without one (the unterminated rest is left). */
int dx_scan_until(const char *p, size_t len, const char *d, size_t dlen,
                  size_t max, int eof, dx_scan *s);
/* 1 to max bytes of what has arrived. */
int dx_scan_some(size_t len, size_t max, int eof, dx_scan *s);

#endif
