/*
 * dx_udp.c - datagram sockets (see dx_udp.h). recvmsg rather than
 * recvfrom, so that MSG_TRUNC in the flags tells a datagram that was cut.
 */
#include "dx_prefix.h"
#include "dx_udp.h"

#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int neg_errno(void) {
  return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

int dx_udp_open(int family, const dx_addr *a, int v6only, int reuseaddr, int reuseport) {
  int fd = dx_socket(family, SOCK_DGRAM), one = 1, rc = 0;
  if (fd < 0) return fd;
  if (reuseaddr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) rc = neg_errno();
#ifdef SO_REUSEPORT
  if (rc == 0 && reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
    rc = neg_errno();
#else
  (void)reuseport;
#endif
  if (rc == 0 && family == AF_INET6) {
    int v6 = v6only;
    if (v6 < 0 && a == NULL) v6 = 0;   /* unbound or "::" ("*"): dual-stack */
    else if (v6 < 0)
      v6 = !IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6) < 0) rc = neg_errno();
  }
  if (rc == 0 && a != NULL && bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) rc = neg_errno();
  if (rc < 0) {
    close(fd);
    return rc;
  }
  return fd;
}

int dx_udp_connect(int fd, const dx_addr *a) {
  struct sockaddr unspec;
  if (a != NULL) return connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ? neg_errno() : 0;
  memset(&unspec, 0, sizeof unspec);
  unspec.sa_family = AF_UNSPEC;
  if (connect(fd, &unspec, sizeof unspec) < 0 && errno != EAFNOSUPPORT) return neg_errno();
  return 0;
}

long dx_udp_send(int fd, const char *p, size_t n, const dx_addr *to) {
  for (;;) {
    ssize_t r = to ? sendto(fd, p, n, MSG_NOSIGNAL, (const struct sockaddr *)&to->ss, to->len)
                   : send(fd, p, n, MSG_NOSIGNAL);
    if (r >= 0) return (long)r;
    if (errno != EINTR) return neg_errno();
  }
}

long dx_udp_recv(int fd, char *p, size_t n, dx_addr *from) {
  struct msghdr m;
  struct iovec iov;
  iov.iov_base = p;
  iov.iov_len = n;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (from) {
    memset(from, 0, sizeof *from);
    m.msg_name = &from->ss;
    m.msg_namelen = sizeof from->ss;
  }
  for (;;) {
    ssize_t r = recvmsg(fd, &m, 0);
    if (r >= 0) {
      if (from) from->len = m.msg_namelen;
      return (m.msg_flags & MSG_TRUNC) ? -EMSGSIZE : (long)r;
    }
    if (errno != EINTR) return neg_errno();
  }
}

int dx_udp_membership(int fd, int join, const dx_addr *group, unsigned ifindex,
                      const dx_addr *ifaddr) {
  int rc;
  if (group->ss.ss_family == AF_INET) {
    struct ip_mreqn mr;
    memset(&mr, 0, sizeof mr);
    mr.imr_multiaddr = ((const struct sockaddr_in *)&group->ss)->sin_addr;
    if (ifaddr && ifaddr->ss.ss_family == AF_INET)
      mr.imr_address = ((const struct sockaddr_in *)&ifaddr->ss)->sin_addr;
    mr.imr_ifindex = (int)ifindex;
    rc = setsockopt(fd, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &mr, sizeof mr);
  } else if (group->ss.ss_family == AF_INET6) {
    struct ipv6_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.ipv6mr_multiaddr = ((const struct sockaddr_in6 *)&group->ss)->sin6_addr;
    mr.ipv6mr_interface = ifindex;
    rc = setsockopt(fd, IPPROTO_IPV6, join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP, &mr, sizeof mr);
  } else {
    return -EAFNOSUPPORT;
  }
  return rc < 0 ? neg_errno() : 0;
}

unsigned dx_ifindex(const char *name) {
  return if_nametoindex(name);
}
