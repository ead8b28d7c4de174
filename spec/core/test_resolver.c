/*
 * test_resolver.c - unit test of the lookup pool (dx_resolver), without Lua:
 * lookups answered through the pool's pipe, a lookup abandoned while it
 * runs (its thread drops the answer), the bounded queue (-EAGAIN, queued
 * lookups abandoned and freed), and fork: a child of a process whose pool
 * has a thread busy in a lookup makes a pool of its own on first use and
 * gets its answers, gives up the parent's lookups without touching its
 * own lists, while the parent's pool goes on undisturbed; and a
 * burst of lookups gets threads of its own even when one thread is idle.
 *
 * getaddrinfo comes from spec/shim/fakegai.c linked into this program (a
 * definition in the executable takes precedence over libc's), so names
 * under .test answer at once or after FAKEGAI_SLOW seconds.
 * Build and run (also under -fsanitize=address,undefined or valgrind):
 *   cc -std=c99 -O1 -g -Icsrc -o build/test_resolver spec/core/test_resolver.c \
 *      spec/shim/fakegai.c csrc/dx_*.c -pthread -ldl && build/test_resolver
 * (csrc/dx_*.c without the loop backends dx_loop_epoll.c and dx_loop_poll.c,
 * which dx_loop.c includes.) Arguments choose parts: answers abandon queue
 * fork burst.
 * Every wait has a deadline, and alarm() bounds the whole run.
 */
#include "dx_prefix.h"
#include "dx_net.h"
#include "dx_resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int nchecks, nfailed;

static int check_(int ok, const char *file, int line, const char *expr) {
  nchecks++;
  if (!ok) {
    nfailed++;
    printf("[%d] %s:%d: FAILED: %s\n", (int)getpid(), file, line, expr);
    fflush(stdout);
  }
  return ok;
}

static int check_eq_(long long a, long long b, const char *file, int line, const char *ea,
                     const char *eb) {
  nchecks++;
  if (a != b) {
    nfailed++;
    printf("[%d] %s:%d: FAILED: %s == %s (%lld != %lld)\n", (int)getpid(), file, line, ea, eb, a, b);
    fflush(stdout);
  }
  return a == b;
}

#define CHECK(e) check_((e) != 0, __FILE__, __LINE__, #e)
#define CHECK_EQ(a, b) check_eq_((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0) {}
}

/* Wait (at most `secs`) until `want` is collected from r; the lookups
 * collected meanwhile that are not `want` are freed. 1 if it came. */
static int wait_for(dx_resolver *r, dx_lookup *want, double secs) {
  double deadline = now() + secs;
  while (now() < deadline) {
    struct pollfd p;
    dx_lookup *list, *lk, *next;
    int found = 0;
    p.fd = dx_resolver_fd(r);
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, 20) < 0 && errno != EINTR) return 0;
    list = dx_lookup_collect(r);
    for (lk = list; lk; lk = next) {
      next = lk->next;
      if (lk == want) found = 1;
      else dx_lookup_free(lk);
    }
    if (found) return 1;
  }
  return 0;
}

static int is_loopback4(const dx_addr *a, int port) {
  const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;
  return a->ss.ss_family == AF_INET && s->sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
         ntohs(s->sin_port) == port;
}

static void test_answers(dx_resolver **rp) {
  dx_lookup *lk = dx_lookup_new("a.v4.test", 80, 0, AF_UNSPEC, 7);
  dx_lookup *bad = dx_lookup_new("b.fail.test", 80, 0, AF_UNSPEC, 8);
  CHECK(lk != NULL && bad != NULL);
  CHECK(*rp == NULL);
  CHECK_EQ(dx_resolver_fd(*rp), -1);
  CHECK(dx_lookup_collect(*rp) == NULL);
  CHECK_EQ(dx_lookup_start(rp, lk), 0);
  CHECK(*rp != NULL);
  CHECK(dx_resolver_fd(*rp) >= 0);
  CHECK(wait_for(*rp, lk, 5));
  CHECK_EQ(lk->state, DX_LK_COLLECTED);
  CHECK_EQ(lk->owner, 7);
  CHECK_EQ(lk->n, 1);
  CHECK(is_loopback4(&lk->addrs[0], 80));
  dx_lookup_free(lk);
  CHECK_EQ(dx_lookup_start(rp, bad), 0);
  CHECK(wait_for(*rp, bad, 5));
  CHECK(bad->n < 0);
  CHECK(strcmp(dx_errname(bad->n), "EAI_NONAME") == 0);
  dx_lookup_free(bad);
}

/* A lookup abandoned while its thread runs it: the answer is dropped (the
 * thread frees it), and nothing is announced for it. */
static void test_abandon_running(dx_resolver **rp) {
  dx_lookup *slow = dx_lookup_new("c.slow.test", 1, 0, AF_UNSPEC, 9);
  dx_lookup *fast;
  CHECK_EQ(dx_lookup_start(rp, slow), 0);
  sleep_ms(50);                        /* a thread has taken it by now */
  CHECK_EQ(slow->state, DX_LK_RUNNING);
  dx_lookup_abandon(*rp, slow);        /* the thread frees it when done */
  fast = dx_lookup_new("d.v4.test", 2, 0, AF_UNSPEC, 10);
  CHECK_EQ(dx_lookup_start(rp, fast), 0);   /* another thread answers at once */
  CHECK(wait_for(*rp, fast, 5));
  CHECK_EQ(fast->n, 1);
  dx_lookup_free(fast);
  sleep_ms(400);                       /* the slow one ends: nothing to collect */
  CHECK(dx_lookup_collect(*rp) == NULL);
}

/* At most 4 threads and 256 queued lookups: then -EAGAIN. Queued lookups
 * abandoned are freed at once. */
static void test_queue_bound(dx_resolver **rp) {
  enum { N = 270 };
  dx_lookup *lk[N];
  int i, accepted = 0, refused = 0, first_refused = -1;
  for (i = 0; i < N; i++) {
    int rc;
    lk[i] = dx_lookup_new("q.slow.test", i, 0, AF_UNSPEC, 100 + i);
    rc = dx_lookup_start(rp, lk[i]);
    if (rc == 0) {
      accepted++;
    } else {
      CHECK_EQ(rc, -EAGAIN);
      if (first_refused < 0) first_refused = i;
      refused++;
      dx_lookup_free(lk[i]);
      lk[i] = NULL;
    }
  }
  /* 256 queued, plus the 0 to 4 that threads took off the queue already */
  CHECK(accepted >= 256 && accepted <= 260);
  CHECK_EQ(accepted + refused, N);
  CHECK(first_refused >= 256 && first_refused <= 260);
  printf("queue bound: %d accepted, the first refused was number %d\n", accepted, first_refused + 1);
  for (i = 0; i < N; i++)
    if (lk[i]) dx_lookup_abandon(*rp, lk[i]);
  /* the queue is empty again: a new lookup is accepted */
  lk[0] = dx_lookup_new("e.v4.test", 3, 0, AF_UNSPEC, 11);
  CHECK_EQ(dx_lookup_start(rp, lk[0]), 0);
  CHECK(wait_for(*rp, lk[0], 5));       /* after the 4 running slow ones */
  CHECK_EQ(lk[0]->n, 1);
  dx_lookup_free(lk[0]);
}

/* Lookups started back to back while one thread is idle: the pool grows
 * to one thread per lookup (up to 4) rather than leaving them queued
 * behind the idle one, which has not even woken up yet. */
static void test_burst(void) {
  dx_resolver *r = NULL;
  dx_lookup *warm = dx_lookup_new("w.v4.test", 1, 0, AF_UNSPEC, 20), *lk[4];
  int i, running = 0;
  CHECK_EQ(dx_lookup_start(&r, warm), 0);
  CHECK(wait_for(r, warm, 5));              /* one thread, idle now */
  dx_lookup_free(warm);
  sleep_ms(20);
  for (i = 0; i < 4; i++) {
    lk[i] = dx_lookup_new("burst.slow.test", i, 0, AF_UNSPEC, 21 + i);
    CHECK_EQ(dx_lookup_start(&r, lk[i]), 0);
  }
  sleep_ms(100);                            /* well inside the 0.3 s lookups */
  for (i = 0; i < 4; i++) running += lk[i]->state == DX_LK_RUNNING;
  printf("burst: 4 slow lookups started back to back with 1 idle thread: %d running after 100 ms\n",
         running);
  CHECK_EQ(running, 4);
  for (i = 0; i < 4; i++) dx_lookup_abandon(r, lk[i]);
  dx_resolver_close(r);
}

/* fork while a thread of the parent's pool is inside a slow lookup. */
static void test_fork(dx_resolver **rp) {
  dx_lookup *busy = dx_lookup_new("f.slow.test", 4, 0, AF_UNSPEC, 12), *mine;
  dx_lookup *done = dx_lookup_new("j.v4.test", 8, 0, AF_UNSPEC, 16);
  int st = -1, parent_fd;
  pid_t pid;
  struct pollfd p;
  CHECK_EQ(dx_lookup_start(rp, busy), 0);
  sleep_ms(50);
  CHECK_EQ(busy->state, DX_LK_RUNNING);
  parent_fd = dx_resolver_fd(*rp);
  /* and one done but not collected: announced, not yet taken */
  CHECK_EQ(dx_lookup_start(rp, done), 0);
  p.fd = parent_fd;
  p.events = POLLIN;
  p.revents = 0;
  CHECK_EQ(poll(&p, 1, 5000), 1);
  CHECK_EQ(done->state, DX_LK_DONE);
  fflush(stdout);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    dx_resolver *old = *rp;
    double t0;
    nchecks = nfailed = 0;
    /* the parent's pool answers nothing here, and touching it is harmless */
    CHECK(dx_lookup_collect(old) == NULL);
    dx_lookup_abandon(old, busy);      /* the child's copy: just freed */
    mine = dx_lookup_new("g.slow.test", 5, 0, AF_UNSPEC, 13);
    t0 = now();
    CHECK_EQ(dx_lookup_start(rp, mine), 0);    /* a new pool, with a thread */
    CHECK(*rp != NULL);
    dx_lookup_abandon(*rp, done);      /* the parent's pool's, given up in the new one: freed */
    CHECK(dx_resolver_fd(*rp) >= 0);
    CHECK(wait_for(*rp, mine, 5));
    CHECK_EQ(mine->n, 1);
    CHECK(is_loopback4(&mine->addrs[0], 5));
    printf("fork child: a slow lookup answered in %.3f s by the child's own pool\n", now() - t0);
    dx_lookup_free(mine);
    mine = dx_lookup_new("h.v4.test", 6, 0, AF_UNSPEC, 14);
    CHECK_EQ(dx_lookup_start(rp, mine), 0);
    CHECK(wait_for(*rp, mine, 5));
    CHECK_EQ(mine->n, 1);
    dx_lookup_free(mine);
    dx_resolver_close(*rp);
    sleep_ms(100);                     /* let the threads leave (leak check) */
    printf("fork child: %d checks, %d failed\n", nchecks, nfailed);
    fflush(stdout);
    /* End through exec rather than exit: valgrind, which does not follow
     * the exec, then does not count as the child's leaks the memory it
     * inherited from the parent (the parent's pool and the lookups its
     * threads held), which the child cannot free. */
    execl("/bin/sh", "sh", "-c", nfailed ? "exit 1" : "exit 0", (char *)NULL);
    _exit(nfailed ? 1 : 0);
  }
  CHECK(waitpid(pid, &st, 0) == pid);
  if (!CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0))
    printf("fork child: wait status %#x\n", st);
  /* the parent's pool is intact: its busy lookup still arrives */
  CHECK_EQ(dx_resolver_fd(*rp), parent_fd);
  CHECK(wait_for(*rp, busy, 5));
  CHECK_EQ(busy->n, 1);
  CHECK(is_loopback4(&busy->addrs[0], 4));
  dx_lookup_free(busy);
  mine = dx_lookup_new("i.v4.test", 7, 0, AF_UNSPEC, 15);
  CHECK_EQ(dx_lookup_start(rp, mine), 0);
  CHECK(wait_for(*rp, mine, 5));
  CHECK_EQ(mine->n, 1);
  dx_lookup_free(mine);
}

/* Arguments name the parts to run (answers abandon queue fork burst);
 * none: all of them. */
static int wanted(int argc, char **argv, const char *part) {
  int i;
  if (argc < 2) return 1;
  for (i = 1; i < argc; i++)
    if (strcmp(argv[i], part) == 0) return 1;
  return 0;
}

int main(int argc, char **argv) {
  dx_resolver *r = NULL;
  alarm(60);
  setenv("FAKEGAI_SLOW", "0.3", 1);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (wanted(argc, argv, "answers")) test_answers(&r);
  if (wanted(argc, argv, "abandon")) test_abandon_running(&r);
  if (wanted(argc, argv, "queue")) test_queue_bound(&r);
  if (wanted(argc, argv, "fork")) test_fork(&r);
  dx_resolver_close(r);
  if (wanted(argc, argv, "burst")) test_burst();
  sleep_ms(400);                       /* threads leave and free the pools */
  printf("test_resolver: %d checks, %d failed\n", nchecks, nfailed);
  return nfailed ? 1 : 0;
}
