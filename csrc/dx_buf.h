/*
 * dx_buf.h - a byte FIFO for received data: prep/commit to fill, peek/find
 * and take to drain. It owns its memory and releases it once settled empty,
 * so an idle connection holds no buffer. While it has no memory it may
 * borrow a shared scratch (dx_scratch), lent to one buffer at a time, so
 * that a receive consumed at once never allocates; dx_buf_settle makes
 * leftovers its own and gives the scratch back. Pure C: no Lua, no syscalls.
 */
#ifndef DX_BUF_H
#define DX_BUF_H

#include "dx_prefix.h"
#include <stddef.h>

struct dx_buf;

typedef struct dx_scratch {
  char *mem;
  size_t cap;
  struct dx_buf *holder;     /* the buffer it is lent to, or NULL */
} dx_scratch;

typedef struct dx_buf {
  char *data;
  size_t start, end, cap;
  dx_scratch *lender;        /* data is that scratch's memory, or NULL */
} dx_buf;

#define dx_buf_len(b)   ((b)->end - (b)->start)
/* The unread bytes (never NULL, so that p + 0 is defined C). */
#define dx_buf_peek(b)  ((b)->data ? (b)->data + (b)->start : (char *)"")
#define dx_buf_space(b) ((b)->cap - (b)->end)
#define dx_buf_commit(b, n) ((b)->end += (n))

void dx_buf_init(dx_buf *b);
/* Release the memory (or give the scratch back); the buffer is empty. */
void dx_buf_free(dx_buf *b);
/* At least `want` writable bytes at the end, borrowing `s` (may be NULL)
 * when the buffer has no memory and nobody holds it; NULL if out of memory. */
char *dx_buf_prep(dx_buf *b, size_t want, dx_scratch *s);
/* Consume the first n bytes (n <= len) and return where they are. They
 * stay where they are until the next prep, settle or free. */
const char *dx_buf_take(dx_buf *b, size_t n);
/* An empty buffer drops its memory; leftovers in a scratch move to owned
 * memory and the scratch is given back. 0, or -ENOMEM (the scratch stays
 * lent, so nothing is lost and nobody else writes into it). */
int dx_buf_settle(dx_buf *b);
/* Offset (from the start) of the first `d` at or after `from`, or -1. */
long dx_buf_find(const dx_buf *b, size_t from, const char *d, size_t dlen);

#endif
