/*
 * dx_buf.c - the receive FIFO (see dx_buf.h). Memory grows by doubling and
 * is released as soon as the buffer is drained.
 */
#include "dx_prefix.h"
#include "dx_buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void dx_buf_init(dx_buf *b) {
  b->data = NULL;
  b->start = b->end = b->cap = 0;
  b->borrowed = 0;
}

static void release(dx_buf *b) {
  if (!b->borrowed) free(b->data);
  dx_buf_init(b);
}

void dx_buf_free(dx_buf *b) { release(b); }

void dx_buf_borrow(dx_buf *b, char *scratch, size_t cap) {
  b->data = scratch;
  b->start = b->end = 0;
  b->cap = cap;
  b->borrowed = 1;
}

/* Move the contents into owned memory of at least `cap` bytes. */
static int own(dx_buf *b, size_t cap) {
  size_t len = dx_buf_len(b);
  char *p = malloc(cap);
  if (p == NULL) return -ENOMEM;
  if (len) memcpy(p, dx_buf_peek(b), len);
  release(b);
  b->data = p;
  b->end = len;
  b->cap = cap;
  return 0;
}

int dx_buf_settle(dx_buf *b) {
  size_t len = dx_buf_len(b);
  if (len == 0) {
    if (b->data) release(b);
    return 0;
  }
  if (!b->borrowed) return 0;
  return own(b, len < 512 ? 512 : len);
}

char *dx_buf_prep(dx_buf *b, size_t want) {
  size_t len = dx_buf_len(b);
  if (b->cap - b->end >= want) return b->data + b->end;
  if (b->start > 0 && b->cap - len >= want && !b->borrowed) {
    memmove(b->data, b->data + b->start, len);     /* compact */
    b->start = 0;
    b->end = len;
    return b->data + b->end;
  }
  {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - len < want) {
      if (cap > ((size_t)-1) / 2) return NULL;
      cap *= 2;
    }
    if (b->borrowed || b->start > 0) {
      if (own(b, cap) < 0) return NULL;
    } else {
      char *p = realloc(b->data, cap);
      if (p == NULL) return NULL;
      b->data = p;
      b->cap = cap;
    }
  }
  return b->data + b->end;
}

void dx_buf_consume(dx_buf *b, size_t n) {
  b->start += n;
  if (b->start >= b->end) {
    if (b->borrowed) b->start = b->end = 0;   /* scratch stays lent until settled */
    else release(b);
  }
}

long dx_buf_find(const dx_buf *b, size_t from, const char *d, size_t dlen) {
  const char *base = dx_buf_peek(b), *p = base + from, *end = base + dx_buf_len(b);
  if (dlen == 0) return (long)from;
  while ((size_t)(end - p) >= dlen) {
    p = memchr(p, d[0], (size_t)(end - p) - dlen + 1);
    if (p == NULL) return -1;
    if (memcmp(p, d, dlen) == 0) return (long)(p - base);
    p++;
  }
  return -1;
}
