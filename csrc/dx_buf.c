/*
 * dx_buf.c - the receive FIFO (see dx_buf.h). Memory grows by doubling and
 * is released when the buffer is settled empty. Taking never frees: a
 * pointer returned by dx_buf_take stays good until the owner settles, so a
 * caller can copy the bytes out after it has finished its bookkeeping.
 */
#include "dx_prefix.h"
#include "dx_buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void dx_buf_init(dx_buf *b) {
  b->data = NULL;
  b->start = b->end = b->cap = 0;
  b->lender = NULL;
}

void dx_buf_free(dx_buf *b) {
  if (b->lender) b->lender->holder = NULL;
  else free(b->data);
  dx_buf_init(b);
}

/* Move the contents into owned memory of `cap` bytes (cap >= len). */
static int own(dx_buf *b, size_t cap) {
  size_t len = dx_buf_len(b);
  char *p = malloc(cap);
  if (p == NULL) return -ENOMEM;
  if (len) memcpy(p, dx_buf_peek(b), len);
  dx_buf_free(b);
  b->data = p;
  b->end = len;
  b->cap = cap;
  return 0;
}

int dx_buf_settle(dx_buf *b) {
  size_t len = dx_buf_len(b);
  if (len == 0) {
    if (b->data) dx_buf_free(b);
    return 0;
  }
  if (b->lender == NULL) return 0;
  return own(b, len < 512 ? 512 : len);
}

char *dx_buf_prep(dx_buf *b, size_t want, dx_scratch *s) {
  size_t len = dx_buf_len(b), cap;
  if (len == 0) b->start = b->end = 0;        /* drained: start over */
  if (b->data == NULL && s != NULL && s->holder == NULL && s->cap >= want) {
    b->data = s->mem;
    b->start = b->end = 0;
    b->cap = s->cap;
    b->lender = s;
    s->holder = b;
    return b->data;
  }
  if (b->cap - b->end >= want) return b->data + b->end;
  if (b->start > 0 && b->cap - len >= want && b->lender == NULL) {
    memmove(b->data, b->data + b->start, len);     /* compact */
    b->start = 0;
    b->end = len;
    return b->data + b->end;
  }
  cap = b->cap ? b->cap : 4096;
  while (cap - len < want) {
    if (cap > ((size_t)-1) / 2) return NULL;
    cap *= 2;
  }
  if (b->lender || b->start > 0) {
    if (own(b, cap) < 0) return NULL;
  } else {
    char *p = realloc(b->data, cap);
    if (p == NULL) return NULL;
    b->data = p;
    b->cap = cap;
  }
  return b->data + b->end;
}

const char *dx_buf_take(dx_buf *b, size_t n) {
  const char *p = dx_buf_peek(b);
  b->start += n;
  return p;
}

long dx_buf_find(const dx_buf *b, size_t from, const char *d, size_t dlen) {
  const char *base = dx_buf_peek(b), *p, *end = base + dx_buf_len(b);
  if (from > dx_buf_len(b)) return -1;
  if (dlen == 0) return (long)from;
  p = base + from;
  while ((size_t)(end - p) >= dlen) {
    p = memchr(p, d[0], (size_t)(end - p) - dlen + 1);
    if (p == NULL) return -1;
    if (memcmp(p, d, dlen) == 0) return (long)(p - base);
    p++;
  }
  return -1;
}
