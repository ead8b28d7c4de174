/*
 * fuzz_read.c - differential fuzz of duplex's read path: the receive FIFO
 * (csrc/dx_buf.c) and the read formats (csrc/dx_scan.c), driven the way
 * the binding (csrc/lread.c) drives them, against a reference model that
 * shares no code with them (a byte array, an offset, naive loops).
 *
 * Build (libFuzzer):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -Icsrc spec/fuzz/fuzz_read.c csrc/dx_scan.c -o build/fuzz_read
 *   build/fuzz_read -dict=spec/fuzz/read.dict CORPUS_DIR spec/fuzz/corpus/read
 * (csrc/dx_buf.c is #included below, to fail its allocations on demand.)
 * Build (replay only, any C compiler):
 *   cc -DFUZZ_STANDALONE -g -Icsrc spec/fuzz/fuzz_read.c csrc/dx_scan.c \
 *     -o build/fuzz_read_replay && build/fuzz_read_replay FILE...
 * Env: FUZZ_TRACE=1 prints every answer.
 *
 * The input is a program. Byte 0 picks the scratch size. Then each op byte
 * names an op (low 7 bits, modulo the number of ops) and a connection (bit
 * 7: connection 0 or 1; both receive through one shared dx_scratch). A
 * connection is a dx_buf, a simulated kernel queue (bytes sent but not yet
 * received, and whether the peer ended its stream), at most one pending
 * request with its progress (k0, k1, like lx_call.k) and the model.
 *
 *   ARRIVE_RAW  len(&63) bytes...     bytes reach the kernel queue
 *   ARRIVE_ALPHA len(&63) bytes...    same, each byte mapped to ALPHA[b & 15]
 *   ARRIVE_BIG  size mode             (size+1)*37 bytes, ending per mode
 *   PEER_EOF                          the peer half-closes
 *   READ nf fmt...                    read with 1..4 formats (fmt: see
 *                                     decode_format), then one try
 *   READ_L                            read("l"), then one try
 *   READ0                             read(0) alone (lread's op_read0)
 *   UNTIL dlen d... max               readuntil, then one try
 *   SOME max                          readsome(max), then one try
 *   STEP                              the pending request is woken: one try
 *   TIMEOUT                           the pending request fails (ETIMEDOUT)
 *   MAXLINE b                         setoption("maxline", ...)
 *   RLIMIT b                          each recv returns at most b bytes
 *   PREPWANT b                        the `want` passed to dx_buf_prep
 *   RAWFILL                           one receive into the buffer, no settle
 *                                     (the buffer may keep the scratch)
 *   SETTLE                            dx_buf_settle
 *   CLOSE                             dx_buf_free; the connection starts over
 *   RESET                             the next receive fails (ECONNRESET)
 *   FIND dlen d... from               dx_buf_find against a naive search
 *   OOM b                             the (b & 7 + 1)-th next allocation of
 *                                     dx_buf fails
 *
 * (ARRIVE_ALPHA and STEP have two codes each, to come up more often.)
 *
 * A request runs like lread.c's try: scan, and while the scan needs more,
 * receive; when the queue is empty (EAGAIN) it waits (settle, keep k0/k1).
 * The model's decision over the same received bytes (value / need more /
 * EMSGSIZE) is compared with every scan while the buffer holds at most 1024
 * bytes, and always where a try ends; every answer (values, nil, the
 * number of results) and, after every op, the buffered bytes are compared
 * with the model, and the scratch must be lent to one buffer at most and
 * given back by every settle that does not run out of memory. When the input ends, each connection's peer ends its
 * stream, the pending request must complete, and the rest is drained with
 * read("a"). Any difference prints what differed and aborts.
 */
#include "dx_prefix.h"
#include "dx_buf.h"
#include "dx_scan.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dx_buf.c is compiled here, its malloc and realloc routed through
 * fuzz_malloc and fuzz_realloc so that an op can make one of them fail
 * (ENOMEM paths). Nothing else in this file is affected. */
static int oom_countdown;     /* > 0: that many-th next allocation fails */
static void *fuzz_malloc(size_t n);
static void *fuzz_realloc(void *p, size_t n);
#define malloc fuzz_malloc
#define realloc fuzz_realloc
#include "dx_buf.c"
#undef malloc
#undef realloc

static void *fuzz_malloc(size_t n) {
  if (oom_countdown > 0 && --oom_countdown == 0) return NULL;
  return malloc(n);
}

static void *fuzz_realloc(void *p, size_t n) {
  if (oom_countdown > 0 && --oom_countdown == 0) return NULL;
  return realloc(p, n);
}

/* --- input --------------------------------------------------------------- */

typedef struct { const uint8_t *p; size_t n, i; } input;

static int more(const input *in) { return in->i < in->n; }
static unsigned next(input *in) { return in->i < in->n ? in->p[in->i++] : 0; }

static const char ALPHA[16] = {'a', 'b', 'c', '\n', '\n', '\r', '\r', '\0',
                               '-', '-', '|', ':', 'x', 'y', ' ', '\t'};

/* The model and the checks are not the code under test: no coverage
 * feedback from their loops (which would dominate the run time). */
#if defined(__clang__) && __clang_major__ >= 13
#define NOCOV __attribute__((no_sanitize("coverage")))
#else
#define NOCOV
#endif

/* --- reference model: the stream a connection has received -------------- */

enum { M_MORE = 0, M_VALUE = 1, M_MSGSIZE = 2 };

typedef struct {
  unsigned char *m;     /* every byte received since the connection began */
  size_t len, pos, cap; /* pos: bytes consumed */
} model;

typedef struct {
  int code;             /* M_MORE, M_VALUE, M_MSGSIZE */
  int nv;               /* values, each at m[pos + off[i]], len[i] bytes */
  size_t off[4], len[4];
  int ended;            /* a nil follows the values */
  size_t used;
} mres;

NOCOV static void model_append(model *md, const unsigned char *p, size_t n) {
  size_t i;
  if (md->len + n > md->cap) {
    size_t cap = md->cap;
    while (cap < md->len + n) cap *= 2;
    md->m = realloc(md->m, cap);
    if (md->m == NULL) abort();
    md->cap = cap;
  }
  for (i = 0; i < n; i++) md->m[md->len + i] = p[i];
  md->len += n;
}

static void mvalue(mres *r, size_t off, size_t len) {
  r->off[r->nv] = off;
  r->len[r->nv] = len;
  r->nv++;
}

/* A read format, as the README and lread.c describe it. fmt is 'l', 'L',
 * 'a' or 'n' (count). */
typedef struct { int fmt; size_t count; } format;

NOCOV static void model_read(const model *md, int eof, size_t maxline,
                       const format *f, int nf, mres *r) {
  const unsigned char *x = md->m + md->pos;
  size_t avail = md->len - md->pos, off = 0;
  int i;
  memset(r, 0, sizeof *r);
  for (i = 0; i < nf; i++) {
    size_t rem = avail - off;
    if (f[i].fmt == 'l' || f[i].fmt == 'L') {
      size_t j = 0;
      int found = 0;
      while (j < rem) {
        if (x[off + j] == '\n') { found = 1; break; }
        j++;
      }
      if (found) {
        size_t vl = j + 1;              /* "L": as received */
        if (j > maxline) { r->code = M_MSGSIZE; return; }
        if (f[i].fmt == 'l') {
          vl = j;
          if (j >= 1 && x[off + j - 1] == '\r') vl = j - 1;
        }
        mvalue(r, off, vl);
        off += j + 1;
      } else {
        if (rem > maxline) { r->code = M_MSGSIZE; return; }
        if (!eof) { r->code = M_MORE; return; }
        if (rem == 0) { r->ended = 1; break; }
        mvalue(r, off, rem);
        off += rem;
      }
    } else if (f[i].fmt == 'a') {
      if (!eof) { r->code = M_MORE; return; }
      mvalue(r, off, rem);
      off += rem;
    } else {
      size_t n = f[i].count;
      if (eof && rem == 0) { r->ended = 1; break; }
      if (rem >= n) {
        mvalue(r, off, n);
        off += n;
      } else if (eof) {
        mvalue(r, off, rem);
        off += rem;
      } else {
        r->code = M_MORE;
        return;
      }
    }
  }
  r->code = M_VALUE;
  r->used = off;
}

NOCOV static void model_until(const model *md, int eof, const unsigned char *d,
                        size_t dlen, size_t max, mres *r) {
  const unsigned char *x = md->m + md->pos;
  size_t avail = md->len - md->pos, i, j;
  memset(r, 0, sizeof *r);
  for (i = 0; i + dlen <= avail; i++) {
    for (j = 0; j < dlen; j++)
      if (x[i + j] != d[j]) break;
    if (j == dlen) {
      if (i > max) { r->code = M_MSGSIZE; return; }
      mvalue(r, 0, i);
      r->used = i + dlen;
      r->code = M_VALUE;
      return;
    }
  }
  /* no delimiter yet: too late once every start <= max has been seen */
  if (avail >= max + dlen) { r->code = M_MSGSIZE; return; }
  if (!eof) { r->code = M_MORE; return; }
  r->ended = 1;
  r->code = M_VALUE;
}

NOCOV static void model_some(const model *md, int eof, size_t max, mres *r) {
  size_t avail = md->len - md->pos;
  memset(r, 0, sizeof *r);
  if (avail > 0) {
    mvalue(r, 0, avail < max ? avail : max);
    r->used = r->len[0];
    r->code = M_VALUE;
  } else if (eof) {
    r->ended = 1;
    r->code = M_VALUE;
  } else {
    r->code = M_MORE;
  }
}

/* read(0) alone, after its one receive: "" unless nothing is left and the
 * stream has ended. */
NOCOV static void model_read0(const model *md, int eof, mres *r) {
  memset(r, 0, sizeof *r);
  r->code = M_VALUE;
  if (md->len == md->pos && eof) r->ended = 1;
  else mvalue(r, 0, 0);
}

/* --- connections ------------------------------------------------------------ */

enum { R_NONE, R_READ, R_READ0, R_UNTIL, R_SOME };

typedef struct {
  int kind;
  int nf;
  format f[4];
  unsigned char d[4];
  size_t dlen, max;
  long long k0, k1;     /* progress kept across waits (lx_call.k) */
} request;

typedef struct {
  dx_buf b;
  int eof;              /* lx_client.eof: a receive returned 0 */
  size_t maxline;
  /* the simulated kernel */
  unsigned char *q;
  size_t qhead, qlen, qcap;
  int shut;             /* the peer ended its stream */
  int reset;            /* the next receive fails */
  size_t rlimit, want;
  request r;
  model md;
  int id;
  int settle_failed;    /* the last dx_buf_settle said -ENOMEM */
} conn;

static dx_scratch scratch;
static conn conns[2];
static unsigned long long nops;
static int trace;             /* env FUZZ_TRACE: print every answer */

static void put_bytes(const unsigned char *p, size_t n) {
  size_t i;
  fputc('"', stderr);
  for (i = 0; i < n && i < 80; i++)
    fprintf(stderr, (p[i] >= 32 && p[i] < 127 && p[i] != '"') ? "%c" : "\\x%02x", p[i]);
  fprintf(stderr, n > 80 ? "\"...(%zu bytes)" : "\"", n);
}

static void fail(const conn *c, const char *what) {
  size_t i, len = dx_buf_len(&c->b);
  fprintf(stderr, "fuzz_read: MISMATCH on connection %d after %llu ops: %s\n",
          c->id, nops, what);
  fprintf(stderr, "  request %s", c->r.kind == R_READ ? "read(" : c->r.kind == R_READ0 ?
          "read(0" : c->r.kind == R_UNTIL ? "readuntil(" : c->r.kind == R_SOME ? "readsome(" : "none(");
  if (c->r.kind == R_READ)
    for (i = 0; i < (size_t)c->r.nf; i++) {
      if (c->r.f[i].fmt == 'n') fprintf(stderr, "%s%zu", i ? ", " : "", c->r.f[i].count);
      else fprintf(stderr, "%s\"%c\"", i ? ", " : "", c->r.f[i].fmt);
    }
  if (c->r.kind == R_UNTIL) {
    put_bytes(c->r.d, c->r.dlen);
    fprintf(stderr, ", %zu", c->r.max);
  }
  if (c->r.kind == R_SOME) fprintf(stderr, "%zu", c->r.max);
  fprintf(stderr, ") k0 %lld k1 %lld; maxline %zu eof %d shut %d\n",
          c->r.k0, c->r.k1, c->maxline, c->eof, c->shut);
  fprintf(stderr, "  buffer %zu bytes, model %zu bytes (received %zu)\n",
          len, c->md.len - c->md.pos, c->md.len);
  fprintf(stderr, "  model rest: ");
  put_bytes(c->md.m + c->md.pos, c->md.len - c->md.pos);
  fprintf(stderr, "\n");
  abort();
}

NOCOV static void check_buffer(conn *c) {
  size_t len = dx_buf_len(&c->b), i;
  const unsigned char *p;
  if (c->b.start > c->b.end || c->b.end > c->b.cap) fail(c, "buffer indices out of order");
  if (len != c->md.len - c->md.pos) fail(c, "buffered length differs");
  if (len == 0) return;
  p = (const unsigned char *)dx_buf_peek(&c->b);
  if (memcmp(p, c->md.m + c->md.pos, len) != 0) {
    for (i = 0; p[i] == c->md.m[c->md.pos + i]; i++) {}
    fprintf(stderr, "first difference at byte %zu\n", i);
    fail(c, "buffered bytes differ");
  }
}

static void settle(conn *c) {
  int r = dx_buf_settle(&c->b);
  if (r != 0 && r != -ENOMEM) fail(c, "dx_buf_settle returned neither 0 nor -ENOMEM");
  c->settle_failed = r != 0;
  if (trace && r != 0) fprintf(stderr, "[%d] op %llu: settle: ENOMEM, keeps the scratch\n", c->id, nops);
  if (r != 0 && c->b.lender == NULL) fail(c, "settle failed on a buffer without the scratch");
}

/* After a settle (a wait, a failure, a push) the buffer owns its bytes or
 * has no memory: it never keeps the scratch, unless the settle ran out of
 * memory. */
static void check_settled(conn *c) {
  check_buffer(c);
  if (c->b.lender != NULL && !c->settle_failed) fail(c, "settled buffer still holds the scratch");
  if (dx_buf_len(&c->b) == 0 && c->b.data != NULL) fail(c, "settled empty buffer keeps memory");
}

static void conn_init(conn *c, int id) {
  memset(c, 0, sizeof *c);
  dx_buf_init(&c->b);
  c->maxline = 1048576;
  c->rlimit = (size_t)-1;
  c->want = 4096;
  c->id = id;
  c->md.m = malloc(64);                 /* never NULL: x = m + pos is defined */
  c->md.cap = 64;
  if (c->md.m == NULL) abort();
}

static void conn_free(conn *c) {
  dx_buf_free(&c->b);
  free(c->q);
  free(c->md.m);
}

static void enqueue(conn *c, const unsigned char *p, size_t n) {
  if (c->shut || n == 0) return;        /* nothing after the end */
  if (c->qhead > 0 && c->qhead == c->qlen) c->qhead = c->qlen = 0;
  if (c->qlen + n > c->qcap) {
    size_t cap = c->qcap ? c->qcap : 256;
    while (cap < c->qlen + n) cap *= 2;
    c->q = realloc(c->q, cap);
    if (c->q == NULL) abort();
    c->qcap = cap;
  }
  memcpy(c->q + c->qlen, p, n);
  c->qlen += n;
}

/* lread.c's fill: receive once into the buffer: > 0 bytes, 0 end of
 * stream, or -errno. The model sees the same bytes arrive. */
static long fill(conn *c) {
  char *p = dx_buf_prep(&c->b, c->want, &scratch);
  size_t avail = c->qlen - c->qhead, n;
  if (p == NULL) return -ENOMEM;
  if (dx_buf_space(&c->b) < c->want) fail(c, "prep gave less space than asked");
  if (c->reset) {
    c->reset = 0;
    return -ECONNRESET;
  }
  if (avail == 0) {
    if (!c->shut) return -EAGAIN;
    c->eof = 1;
    return 0;
  }
  n = dx_buf_space(&c->b);
  if (n > avail) n = avail;
  if (n > c->rlimit) n = c->rlimit;
  memcpy(p, c->q + c->qhead, n);
  model_append(&c->md, c->q + c->qhead, n);
  c->qhead += n;
  dx_buf_commit(&c->b, n);
  return (long)n;
}

/* --- the binding's read path (mirrors lread.c) ------------------------------- */

enum { DONE = 1, WAIT = 2 };

typedef struct {
  request *r;
  size_t vlen, used;
  int eof, ended;
} call;

typedef struct {
  int nv;               /* values, then nil when ended */
  const char *v[4];
  size_t len[4];
  int ended;
} answer;

static int scan_format(const format *f, const char *p, size_t len, int eof,
                       size_t maxline, dx_scan *s) {
  if (f->fmt == 'n') return dx_scan_format(DX_FMT_COUNT, f->count, p, len, eof, maxline, s);
  return dx_scan_format(f->fmt, 0, p, len, eof, maxline, s);
}

static int scan_formats(call *k, conn *c) {
  const char *p = dx_buf_peek(&c->b);
  size_t len = dx_buf_len(&c->b), off = 0;
  int i;
  for (i = 0; i < k->r->nf; i++) {
    dx_scan s;
    int r;
    s.from = i == k->r->k0 ? (size_t)k->r->k1 : 0;
    r = scan_format(&k->r->f[i], p + off, len - off, c->eof, c->maxline, &s);
    if (r == DX_SCAN_MORE) {
      k->r->k0 = i;
      k->r->k1 = (long long)s.from;
      return 0;
    }
    if (r < 0) return r;
    if (r == DX_SCAN_END) {
      k->ended = 1;
      break;
    }
    k->vlen = s.vlen;
    off += s.used;
  }
  k->used = off;
  k->eof = c->eof && off == len;         /* as lread.c */
  return 1;
}

static int scan_until(call *k, conn *c) {
  dx_scan s;
  int r;
  s.from = (size_t)k->r->k1;
  r = dx_scan_until(dx_buf_peek(&c->b), dx_buf_len(&c->b), (const char *)k->r->d,
                    k->r->dlen, k->r->max, c->eof, &s);
  if (r == DX_SCAN_MORE) {
    k->r->k1 = (long long)s.from;
    return 0;
  }
  if (r < 0) return r;
  k->ended = r == DX_SCAN_END;
  k->vlen = s.vlen;
  k->used = s.used;
  return 1;
}

static int scan_some(call *k, conn *c) {
  dx_scan s;
  int r = dx_scan_some(dx_buf_len(&c->b), k->r->max, c->eof, &s);
  if (r == DX_SCAN_MORE) return 0;
  k->ended = r == DX_SCAN_END;
  k->vlen = s.vlen;
  k->used = s.used;
  return 1;
}

/* The model's decision over the same bytes. */
NOCOV static void model_decide(conn *c, mres *m) {
  request *r = &c->r;
  switch (r->kind) {
  case R_READ: model_read(&c->md, c->eof, c->maxline, r->f, r->nf, m); break;
  case R_UNTIL: model_until(&c->md, c->eof, r->d, r->dlen, r->max, m); break;
  case R_SOME: model_some(&c->md, c->eof, r->max, m); break;
  default: model_read0(&c->md, c->eof, m); break;
  }
}

static void compare_decision(conn *c, int real, const mres *m) {
  int want = m->code == M_MORE ? 0 : m->code == M_VALUE ? 1 : -EMSGSIZE;
  char msg[128];
  if (real != want) {
    snprintf(msg, sizeof msg, "scan decided %d, model %d", real, want);
    fail(c, msg);
  }
}

static int receive_until(call *k, conn *c) {
  for (;;) {
    int r;
    long n;
    mres m;
    switch (c->r.kind) {
    case R_READ: r = scan_formats(k, c); break;
    case R_UNTIL: r = scan_until(k, c); break;
    default: r = scan_some(k, c); break;
    }
    /* the model rescans everything: compare every scan while the buffer
     * is small, and always where the try ends */
    if (r != 0 || dx_buf_len(&c->b) <= 1024) {
      model_decide(c, &m);
      compare_decision(c, r, &m);
    }
    if (r != 0) return r > 0 ? DONE : r;
    n = fill(c);
    if (n < 0 && dx_buf_len(&c->b) > 1024) {   /* the last scan said "more" */
      model_decide(c, &m);
      compare_decision(c, 0, &m);
    }
    if (n == -EAGAIN) return WAIT;
    if (n < 0) return (int)n;
  }
}

static int try_read0(call *k, conn *c) {
  if (dx_buf_len(&c->b) == 0 && !c->eof) {
    long n = fill(c);
    if (n < 0 && n != -EAGAIN) return (int)n;
  }
  k->ended = dx_buf_len(&c->b) == 0 && c->eof;
  return DONE;
}

/* The copies a push makes (lua_pushlstring), freed after the comparison. */
static char *copy(const char *p, size_t n) {
  char *s = malloc(n ? n : 1);
  if (s == NULL) abort();
  if (n) memcpy(s, p, n);
  return s;
}

static void push_one(call *k, conn *c, answer *a) {
  if (k->ended) {
    a->ended = 1;                       /* takes nothing (k->used is not set) */
  } else {
    a->v[0] = copy(dx_buf_take(&c->b, k->used), k->vlen);
    a->len[0] = k->vlen;
    a->nv = 1;
  }
  settle(c);
}

static void push_read(call *k, conn *c, answer *a) {
  char *all;
  size_t len = k->used, off = 0;
  int i;
  if (k->r->nf == 1) {
    push_one(k, c, a);
    return;
  }
  all = copy(dx_buf_take(&c->b, k->used), k->used);
  settle(c);
  for (i = 0; i < k->r->nf; i++) {
    dx_scan s;
    s.from = 0;
    if (scan_format(&k->r->f[i], all + off, len - off, k->eof, SIZE_MAX, &s) != DX_SCAN_VALUE) {
      a->ended = 1;
      break;
    }
    a->v[a->nv] = copy(all + off, s.vlen);
    a->len[a->nv] = s.vlen;
    a->nv++;
    off += s.used;
  }
  free(all);
}


static void compare_answer(conn *c, const answer *a, const mres *m) {
  int i;
  size_t j;
  char msg[160];
  if (a->nv != m->nv || a->ended != m->ended) {
    snprintf(msg, sizeof msg, "answer has %d values%s, model %d values%s",
             a->nv, a->ended ? " then nil" : "", m->nv, m->ended ? " then nil" : "");
    fail(c, msg);
  }
  for (i = 0; i < a->nv; i++) {
    if (a->len[i] != m->len[i]) {
      snprintf(msg, sizeof msg, "value %d has %zu bytes, model %zu", i + 1, a->len[i], m->len[i]);
      fail(c, msg);
    }
    for (j = 0; j < a->len[i]; j++)
      if ((unsigned char)a->v[i][j] != c->md.m[c->md.pos + m->off[i] + j]) {
        snprintf(msg, sizeof msg, "value %d differs at byte %zu", i + 1, j);
        fail(c, msg);
      }
  }
}

static void free_answer(answer *a) {
  int i;
  for (i = 0; i < a->nv; i++) free((void *)a->v[i]);
}

/* The pending request ends (a failure): lread's finish stalls, which
 * settles; nothing is consumed. */
static void fail_request(conn *c) {
  settle(c);
  c->r.kind = R_NONE;
  check_settled(c);
}

/* One try of the pending request, as the driver runs it: DONE (the
 * request ended), or WAIT (it stays pending, with its progress). */
static int step(conn *c) {
  call k;
  int r;
  answer a;
  mres m;
  if (c->r.kind == R_NONE) return DONE;
  memset(&k, 0, sizeof k);
  k.r = &c->r;
  r = c->r.kind == R_READ0 ? try_read0(&k, c) : receive_until(&k, c);
  if (r == WAIT) {                     /* stall before the wait */
    if (trace) fprintf(stderr, "[%d] op %llu: request %d waits\n", c->id, nops, c->r.kind);
    settle(c);
    check_settled(c);
    return WAIT;
  }
  if (r < 0) {                         /* EMSGSIZE or a receive error */
    if (trace) fprintf(stderr, "[%d] op %llu: request %d fails: %s\n", c->id, nops,
                       c->r.kind, r == -EMSGSIZE ? "EMSGSIZE" : r == -ENOMEM ? "ENOMEM" : "ECONNRESET");
    fail_request(c);
    return DONE;
  }
  model_decide(c, &m);                 /* the answer the model expects */
  if (m.code != M_VALUE) fail(c, "request answered, the model has no answer");
  memset(&a, 0, sizeof a);
  if (c->r.kind == R_READ) push_read(&k, c, &a);
  else push_one(&k, c, &a);
  compare_answer(c, &a, &m);
  if (trace) {
    int i;
    fprintf(stderr, "[%d] op %llu: request %d answers", c->id, nops, c->r.kind);
    for (i = 0; i < a.nv; i++) {
      fputc(' ', stderr);
      put_bytes((const unsigned char *)a.v[i], a.len[i]);
    }
    fprintf(stderr, "%s\n", a.ended ? " nil" : "");
  }
  free_answer(&a);
  c->md.pos += m.used;
  c->r.kind = R_NONE;
  check_settled(c);
  return DONE;
}

static void start(conn *c, const request *r) {
  if (c->r.kind != R_NONE) fail_request(c);   /* the earlier one timed out */
  c->r = *r;
  c->r.k0 = c->r.k1 = 0;
  step(c);
}

/* --- decoding --------------------------------------------------------------- */

static void decode_format(input *in, format *f) {
  unsigned b = next(in);
  switch (b % 8) {
  case 0: case 1: f->fmt = 'l'; break;
  case 2: f->fmt = 'L'; break;
  case 3: f->fmt = 'a'; break;
  case 4: f->fmt = 'n'; f->count = 0; break;
  case 5: f->fmt = 'n'; f->count = next(in) & 15; break;
  case 6: f->fmt = 'n'; f->count = next(in); break;
  default: f->fmt = 'n'; f->count = (size_t)next(in) * 97; break;
  }
}

static size_t decode_maxline(unsigned b) {
  if (b == 0) return 1048576;
  if (b < 128) return b;
  return (size_t)(b - 127) * 64;
}

enum {
  OP_ARRIVE_RAW, OP_ARRIVE_ALPHA, OP_ARRIVE_ALPHA2, OP_ARRIVE_BIG, OP_PEER_EOF,
  OP_READ, OP_READ_L, OP_READ0, OP_UNTIL, OP_SOME, OP_STEP, OP_STEP2,
  OP_TIMEOUT, OP_MAXLINE, OP_RLIMIT, OP_PREPWANT, OP_RAWFILL, OP_SETTLE,
  OP_CLOSE, OP_RESET, OP_FIND, OP_OOM, NOPS
};

NOCOV static long model_find(const model *md, size_t from, const unsigned char *d, size_t dlen) {
  size_t avail = md->len - md->pos, i, j;
  if (from > avail) return -1;
  for (i = from; i + dlen <= avail; i++) {
    for (j = 0; j < dlen; j++)
      if (md->m[md->pos + i + j] != d[j]) break;
    if (j == dlen) return (long)i;
  }
  return -1;
}

static void run_op(input *in) {
  unsigned op = next(in);
  conn *c = &conns[op >> 7];
  unsigned char tmp[64] = {0};
  request r;
  size_t i, n;
  memset(&r, 0, sizeof r);
  nops++;
  switch ((op & 0x7f) % NOPS) {
  case OP_ARRIVE_RAW:
    n = next(in) & 63;
    for (i = 0; i < n; i++) tmp[i] = (unsigned char)next(in);
    enqueue(c, tmp, n);
    break;
  case OP_ARRIVE_ALPHA:
  case OP_ARRIVE_ALPHA2:
    n = next(in) & 63;
    for (i = 0; i < n; i++) tmp[i] = (unsigned char)ALPHA[next(in) & 15];
    enqueue(c, tmp, n);
    break;
  case OP_ARRIVE_BIG: {
    size_t size = ((size_t)next(in) + 1) * 37;
    unsigned mode = next(in);
    unsigned char *big = malloc(size);
    unsigned x = mode;
    if (big == NULL) abort();
    for (i = 0; i < size; i++) {
      if ((mode & 3) == 3) {
        x = x * 1103515245u + 12345u;
        big[i] = (unsigned char)ALPHA[(x >> 16) & 15];
      } else {
        big[i] = 'x';
      }
    }
    if ((mode & 3) == 1) big[size - 1] = '\n';
    if ((mode & 3) == 2 && size >= 2) { big[size - 2] = '\r'; big[size - 1] = '\n'; }
    enqueue(c, big, size);
    free(big);
    break;
  }
  case OP_PEER_EOF:
    c->shut = 1;
    break;
  case OP_READ:
    r.kind = R_READ;
    r.nf = 1 + (int)(next(in) & 3);
    for (i = 0; i < (size_t)r.nf; i++) decode_format(in, &r.f[i]);
    if (r.nf == 1 && r.f[0].fmt == 'n' && r.f[0].count == 0)
      r.kind = R_READ0;                 /* c_read sends read(0) to op_read0 */
    start(c, &r);
    break;
  case OP_READ_L:
    r.kind = R_READ;
    r.nf = 1;
    r.f[0].fmt = 'l';
    start(c, &r);
    break;
  case OP_READ0:
    r.kind = R_READ0;
    start(c, &r);
    break;
  case OP_UNTIL: {
    unsigned m;
    r.kind = R_UNTIL;
    r.dlen = 1 + (next(in) & 3);
    for (i = 0; i < r.dlen; i++) {
      unsigned b = next(in);
      r.d[i] = (unsigned char)(b & 0x80 ? b : (unsigned char)ALPHA[b & 15]);
    }
    m = next(in);
    r.max = m == 255 ? c->maxline : m >= 200 ? (size_t)(m - 200) * 100 : m;
    start(c, &r);
    break;
  }
  case OP_SOME: {
    unsigned m = next(in);
    r.kind = R_SOME;
    r.max = m == 0 ? 65536 : m;
    start(c, &r);
    break;
  }
  case OP_STEP:
  case OP_STEP2:
    step(c);
    break;
  case OP_TIMEOUT:
    if (c->r.kind != R_NONE) fail_request(c);
    break;
  case OP_MAXLINE:
    c->maxline = decode_maxline(next(in));
    break;
  case OP_RLIMIT: {
    unsigned b = next(in);
    c->rlimit = b == 0 ? (size_t)-1 : b;
    break;
  }
  case OP_PREPWANT: {
    static const size_t wants[8] = {4096, 1, 16, 512, 4096, 8192, 65536, 100000};
    c->want = wants[next(in) & 7];
    break;
  }
  case OP_RAWFILL:
    fill(c);
    break;
  case OP_SETTLE:
    settle(c);
    break;
  case OP_CLOSE: {
    int id = c->id;
    if (c->r.kind != R_NONE) fail_request(c);
    conn_free(c);
    conn_init(c, id);
    break;
  }
  case OP_RESET:
    c->reset = 1;
    break;
  case OP_FIND: {
    size_t dlen = next(in) % 5, from;
    long got, want;
    for (i = 0; i < dlen; i++) {
      unsigned b = next(in);
      tmp[i] = (unsigned char)(b & 0x80 ? b : (unsigned char)ALPHA[b & 15]);
    }
    from = next(in);
    got = dx_buf_find(&c->b, from, (const char *)tmp, dlen);
    want = model_find(&c->md, from, tmp, dlen);
    if (trace) fprintf(stderr, "[%d] op %llu: find gives %ld\n", c->id, nops, got);
    if (got != want) {
      char msg[96];
      snprintf(msg, sizeof msg, "dx_buf_find(from %zu, %zu bytes) gave %ld, model %ld",
               from, dlen, got, want);
      fail(c, msg);
    }
    break;
  }
  default: /* OP_OOM */
    oom_countdown = 1 + (int)(next(in) & 7);
    break;
  }
  check_buffer(c);
}

/* The peer ends its stream: the pending request must end, and read("a")
 * must give back exactly the rest. */
static void finish_conn(conn *c) {
  request r;
  int rounds;
  c->shut = 1;
  c->reset = 0;
  oom_countdown = 0;
  c->rlimit = (size_t)-1;
  for (rounds = 0; c->r.kind != R_NONE; rounds++) {
    if (rounds > 2) fail(c, "request still pending after the end of stream");
    step(c);
  }
  memset(&r, 0, sizeof r);
  r.kind = R_READ;
  r.nf = 1;
  r.f[0].fmt = 'a';
  c->maxline = 1048576;
  start(c, &r);
  if (c->r.kind != R_NONE) fail(c, "read(\"a\") pending after the end of stream");
  if (dx_buf_len(&c->b) != 0) fail(c, "bytes left after read(\"a\")");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const size_t caps[4] = {65536, 4096, 512, 16};
  input in = {data, size, 0};
  int i;
  trace = getenv("FUZZ_TRACE") != NULL;
  oom_countdown = 0;
  nops = 0;
  scratch.cap = caps[next(&in) & 3];
  scratch.mem = malloc(scratch.cap);
  scratch.holder = NULL;
  if (scratch.mem == NULL) abort();
  conn_init(&conns[0], 0);
  conn_init(&conns[1], 1);
  while (more(&in)) {
    run_op(&in);
    /* between calls the binding has settled: nobody holds the scratch,
     * unless a RAWFILL left bytes in it on purpose */
    for (i = 0; i < 2; i++)
      if (conns[i].b.lender != NULL && scratch.holder != &conns[i].b)
        fail(&conns[i], "buffer uses the scratch, which is lent to another");
  }
  for (i = 0; i < 2; i++) finish_conn(&conns[i]);
  for (i = 0; i < 2; i++) conn_free(&conns[i]);
  if (scratch.holder != NULL) fail(&conns[0], "scratch still lent after every buffer was freed");
  free(scratch.mem);
  return 0;
}

#ifdef FUZZ_STANDALONE
/* Replay inputs without libFuzzer: fuzz_read_replay FILE... */
int main(int argc, char **argv) {
  int i;
  for (i = 1; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0, got;
    if (f == NULL) { perror(argv[i]); return 2; }
    for (;;) {
      if (n == cap) {
        cap = cap ? cap * 2 : 4096;
        buf = realloc(buf, cap);
        if (buf == NULL) return 2;
      }
      got = fread(buf + n, 1, cap - n, f);
      if (got == 0) break;
      n += got;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    printf("ok %s\n", argv[i]);
  }
  return 0;
}
#endif
