/*
 * dx_buf.h - a byte FIFO for received data: prep/commit to fill, peek/find/
 * consume to drain. It owns its memory and releases it when it becomes empty,
 * so an idle connection holds no buffer. While empty it may borrow a shared
 * scratch area (dx_buf_borrow) so that a receive consumed at once never
 * allocates; dx_buf_settle makes leftovers its own before the scratch is
 * reused. Pure C: no Lua, no syscalls.
 */
#ifndef DX_BUF_H
#define DX_BUF_H

#include "dx_prefix.h"
#include <stddef.h>

typedef struct dx_buf {
  char *data;
  size_t start, end, cap;
  int borrowed;            /* data points into someone else's scratch */
} dx_buf;

#define dx_buf_len(b)  ((b)->end - (b)->start)
#define dx_buf_peek(b) ((b)->data + (b)->start)

void dx_buf_init(dx_buf *b);
void dx_buf_free(dx_buf *b);
/* Lend `scratch` (cap bytes) to an empty buffer that has no memory. */
void dx_buf_borrow(dx_buf *b, char *scratch, size_t cap);
/* Leftovers in borrowed memory are copied into owned memory; an empty
 * buffer drops its memory. Returns 0, or -ENOMEM (data kept borrowed). */
int dx_buf_settle(dx_buf *b);
/* At least `want` writable bytes at the end; NULL if out of memory. */
char *dx_buf_prep(dx_buf *b, size_t want);
#define dx_buf_space(b) ((b)->cap - (b)->end)
#define dx_buf_commit(b, n) ((b)->end += (n))
void dx_buf_consume(dx_buf *b, size_t n);
/* Offset (from the start) of the first `d` at or after `from`, or -1. */
long dx_buf_find(const dx_buf *b, size_t from, const char *d, size_t dlen);

#endif
