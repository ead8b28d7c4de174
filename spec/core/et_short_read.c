/*
 * et_short_read.c - does this kernel keep the promise that duplex's read
 * readiness relies on? Under edge-triggered epoll, a recv that returns
 * fewer bytes than asked is trusted to mean "drained": the reader waits
 * for the next edge instead of calling recv again to hear EAGAIN. That is
 * safe only if (1) a short read leaves nothing behind and (2) every byte
 * that arrives after it raises a new edge.
 *
 * A writer thread sends bursts of random sizes at random moments; the
 * reader trusts every short read. If the reader ever waits two seconds
 * while the socket still holds bytes (FIONREAD), the kernel broke the
 * promise and this prints the case and exits 1. Then the two exceptions
 * are shown on purpose, the cases a reader must watch for itself:
 * - the peer's end: bytes and FIN that arrived before the wait come as one
 *   edge (EPOLLIN|EPOLLRDHUP); the read that takes the bytes is short, and
 *   the end of stream is still to be read, with no edge to come;
 * - TCP urgent data (EPOLLPRI) stops a read at the mark;
 * - on a Unix stream socket, descriptors passed with some bytes end the
 *   read that takes those bytes, with no sign in the edge.
 *
 *   cc -O2 -pthread -o et_short_read et_short_read.c && ./et_short_read [MiB]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ASK 65536

typedef struct { int fd; long total; unsigned seed; } burst_args;

static void die(const char *what) { perror(what); exit(2); }

static void *writer(void *p) {
  burst_args *a = p;
  static char buf[200000];
  long sent = 0;
  memset(buf, 'x', sizeof buf);
  while (sent < a->total) {
    long n = 1 + rand_r(&a->seed) % (rand_r(&a->seed) % 4 ? 3000 : (int)sizeof buf);
    if (n > a->total - sent) n = a->total - sent;
    while (n > 0) {
      ssize_t w = send(a->fd, buf, (size_t)n, MSG_NOSIGNAL);
      if (w < 0) die("send");
      sent += w, n -= w;
    }
    if (rand_r(&a->seed) % 8 == 0) {
      struct timespec ts = {0, (rand_r(&a->seed) % 50) * 1000};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

/* Read `total` bytes from fd trusting short reads; 0 ok, 1 stranded. */
static int trust_reader(const char *name, int fd, long total) {
  static char buf[ASK];
  struct epoll_event ev;
  long got = 0, shorts = 0, edges = 0;
  int ep = epoll_create1(0);
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll");
  while (got < total) {
    int n = epoll_wait(ep, &ev, 1, 2000);
    if (n == 0) {
      ssize_t queued = recv(fd, buf, ASK, MSG_PEEK | MSG_DONTWAIT);
      printf("%s: STRANDED after %ld of %ld bytes: no edge for 2 s while %zd bytes wait\n",
             name, got, total, queued);
      return 1;
    }
    if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
    edges++;
    if (edges % 16 == 0) usleep(edges % 64);   /* let bytes pile up meanwhile */
    for (;;) {
      ssize_t r = recv(fd, buf, ASK, 0);
      if (r < 0 && errno == EAGAIN) break;     /* the edge raced a drain */
      if (r <= 0) die("recv");
      got += r;
      if (r < ASK) { shorts++; break; }        /* trusted: drained */
    }
  }
  printf("%s: %ld bytes, %ld edges, %ld short reads trusted, none stranded\n",
         name, got, edges, shorts);
  close(ep);
  return 0;
}

static void tcp_pair(int sv[2]) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (l < 0 || bind(l, (void *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
      getsockname(l, (void *)&a, &len) < 0) die("listen");
  sv[1] = socket(AF_INET, SOCK_STREAM, 0);
  if (sv[1] < 0 || connect(sv[1], (void *)&a, sizeof a) < 0) die("connect");
  sv[0] = accept4(l, NULL, NULL, SOCK_NONBLOCK);
  if (sv[0] < 0) die("accept");
  setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  close(l);
}

static int run(const char *name, int sv[2], long total, unsigned seed) {
  pthread_t t;
  burst_args a = {sv[1], total, seed};
  int rc;
  if (pthread_create(&t, NULL, writer, &a)) die("pthread_create");
  rc = trust_reader(name, sv[0], total);
  if (rc) { shutdown(sv[0], SHUT_RDWR); }
  pthread_join(t, NULL);
  close(sv[0]), close(sv[1]);
  return rc;
}

/* Bytes, then the peer's FIN, before the reader waits. */
static void fin_case(void) {
  static char buf[ASK];
  struct epoll_event ev;
  int sv[2], ep = epoll_create1(0), n;
  ssize_t r;
  tcp_pair(sv);
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
  send(sv[1], "bye\n", 4, 0);
  shutdown(sv[1], SHUT_WR);
  usleep(100000);
  n = epoll_wait(ep, &ev, 1, 1000);
  printf("end of stream: edge %s%s; ", n > 0 && (ev.events & EPOLLIN) ? "EPOLLIN" : "none",
         n > 0 && (ev.events & EPOLLRDHUP) ? "|EPOLLRDHUP" : "");
  r = recv(sv[0], buf, ASK, 0);
  n = epoll_wait(ep, &ev, 1, 300);
  printf("first read %zd bytes (short), next edge %s, next read %zd (the end)\n",
         r, n > 0 ? "came" : "never came", recv(sv[0], buf, ASK, 0));
  close(ep), close(sv[0]), close(sv[1]);
}

/* The exception: bytes before TCP urgent data end a read at the mark,
 * and the rest raises no new edge. */
static void urgent_case(void) {
  static char buf[ASK];
  struct epoll_event ev;
  int sv[2], ep = epoll_create1(0), queued;
  ssize_t r;
  tcp_pair(sv);
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
  send(sv[1], "hello", 5, 0);
  send(sv[1], "!", 1, MSG_OOB);
  send(sv[1], "world", 5, 0);
  usleep(100000);
  epoll_wait(ep, &ev, 1, 1000);
  r = recv(sv[0], buf, ASK, 0);
  queued = (int)recv(sv[0], buf, ASK, MSG_PEEK | MSG_DONTWAIT);
  printf("urgent data: first read %zd bytes (short), %d still queued, next edge %s\n",
         r, queued, epoll_wait(ep, &ev, 1, 300) > 0 ? "came" : "never came");
  close(ep), close(sv[0]), close(sv[1]);
}

/* Bytes that carry a descriptor, then more bytes, before the reader waits. */
static void fds_case(void) {
  static char buf[ASK];
  union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } u;
  struct epoll_event ev;
  struct msghdr m;
  char ab[2] = {'a', 'b'};
  struct iovec v = {ab, 2};
  int sv[2], ep = epoll_create1(0), zero = 0, queued;
  ssize_t r;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) die("socketpair");
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLPRI | EPOLLET;
  epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
  memset(&m, 0, sizeof m);
  memset(&u, 0, sizeof u);
  m.msg_iov = &v, m.msg_iovlen = 1;
  m.msg_control = u.space, m.msg_controllen = sizeof u.space;
  u.h.cmsg_level = SOL_SOCKET, u.h.cmsg_type = SCM_RIGHTS;
  u.h.cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(&u.h), &zero, sizeof zero);
  if (sendmsg(sv[1], &m, 0) < 0) die("sendmsg");
  send(sv[1], "cd", 2, 0);
  epoll_wait(ep, &ev, 1, 1000);
  r = recv(sv[0], buf, ASK, 0);   /* no control buffer: the descriptor is dropped */
  queued = (int)recv(sv[0], buf, ASK, MSG_PEEK | MSG_DONTWAIT);
  printf("passed descriptor: first read %zd bytes (short), %d still queued, next edge %s\n",
         r, queued, epoll_wait(ep, &ev, 1, 300) > 0 ? "came" : "never came");
  close(ep), close(sv[0]), close(sv[1]);
}

int main(int argc, char **argv) {
  long total = (argc > 1 ? atol(argv[1]) : 256) << 20;
  int sv[2], bad = 0, i;
  for (i = 0; i < 3; i++) {
    tcp_pair(sv);
    bad |= run("tcp loopback", sv, total, 1 + i);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) die("socketpair");
    {
      int fl = 0;   /* the writer blocks, the reader does not */
      ioctl(sv[1], FIONBIO, &fl);
    }
    bad |= run("unix stream", sv, total, 100 + i);
  }
  fin_case();
  urgent_case();
  fds_case();
  return bad;
}
