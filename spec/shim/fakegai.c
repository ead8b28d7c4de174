/*
 * fakegai.c - an LD_PRELOAD getaddrinfo for the resolver specs: names under
 * the .test domain answer from here, everything else goes to the real one.
 *   NAME.slow.test     sleeps FAKEGAI_SLOW seconds (default 2), then 127.0.0.1
 *   NAME.v4.test       127.0.0.1
 *   NAME.v6first.test  FAKEGAI_V6 (default ::1) then 127.0.0.1, in that order
 *   NAME.fail.test     EAI_NONAME
 *   a name with a "group" label (m.group.test, m.group.slow.test) answers
 *   239.255.0.1, a multicast group, where the others answer 127.0.0.1;
 *   one with a "lo2" label (b.lo2.slow.test) answers 127.0.0.2, a local
 *   address that is not the default source (for connect's bind)
 * Build: make shims (build/shim/fakegai.so)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
typedef void (*free_fn)(struct addrinfo *);

static int ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), m = strlen(tail);
  return n >= m && strcmp(s + n - m, tail) == 0;
}

/* Our lists are one calloc'd block per entry, marked by ai_canonname. */
static char MARK[] = "fakegai";

static struct addrinfo *entry(int family, const char *text, int socktype) {
  struct addrinfo *ai = calloc(1, sizeof *ai + sizeof(struct sockaddr_in6));
  struct sockaddr *sa = (struct sockaddr *)(ai + 1);
  if (ai == NULL) return NULL;
  ai->ai_family = family;
  ai->ai_socktype = socktype ? socktype : SOCK_STREAM;
  ai->ai_addr = sa;
  ai->ai_canonname = MARK;
  if (family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, text, &s4->sin_addr);
    ai->ai_addrlen = sizeof *s4;
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &s6->sin6_addr);
    ai->ai_addrlen = sizeof *s6;
  }
  return ai;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
  static gai_fn real;
  int want = hints ? hints->ai_family : AF_UNSPEC, st = hints ? hints->ai_socktype : 0;
  struct addrinfo *v4 = NULL, *v6 = NULL;
  if (real == NULL) real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  if (node == NULL || !ends_with(node, ".test") || (hints && (hints->ai_flags & AI_NUMERICHOST)))
    return real(node, service, hints, res);
  if (ends_with(node, ".fail.test")) return EAI_NONAME;
  if (ends_with(node, ".slow.test")) {
    const char *s = getenv("FAKEGAI_SLOW");
    double secs = s ? atof(s) : 2.0;
    struct timespec ts;
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0) {}
  }
  if (want != AF_INET6)
    v4 = entry(AF_INET, strstr(node, ".group.") ? "239.255.0.1"
                        : strstr(node, ".lo2.") ? "127.0.0.2" : "127.0.0.1", st);
  if (ends_with(node, ".v6first.test") && want != AF_INET) {
    const char *a = getenv("FAKEGAI_V6");
    v6 = entry(AF_INET6, a ? a : "::1", st);
  }
  if (v6) {
    v6->ai_next = v4;
    *res = v6;
  } else {
    *res = v4;
  }
  return *res ? 0 : EAI_NONAME;
}

void freeaddrinfo(struct addrinfo *ai) {
  static free_fn real;
  if (real == NULL) real = (free_fn)dlsym(RTLD_NEXT, "freeaddrinfo");
  if (ai && ai->ai_canonname == MARK) {
    while (ai) {
      struct addrinfo *next = ai->ai_next;
      free(ai);
      ai = next;
    }
    return;
  }
  real(ai);
}
