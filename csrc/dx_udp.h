/*
 * dx_udp.h - datagram sockets: bind, connect, send and receive whole
 * datagrams, multicast membership. A datagram larger than the buffer is
 * never cut silently: the receive says -EMSGSIZE (the datagram is gone,
 * as the kernel consumed it). Returns >= 0 or -errno, like dx_net. No Lua.
 */
#ifndef DX_UDP_H
#define DX_UDP_H

#include "dx_prefix.h"
#include "dx_net.h"

/* A datagram socket bound to a (NULL: unbound), with SO_REUSEADDR /
 * SO_REUSEPORT first if asked. An AF_INET6 one is IPv6-only as v6only
 * says, or if v6only < 0 unless it is unbound or bound to "::" (then it
 * also reaches IPv4, at v4-mapped addresses). The fd, or -errno. */
int dx_udp_open(int family, const dx_addr *a, int v6only, int reuseaddr, int reuseport);
/* Set (a) or clear (NULL) the default peer. */
int dx_udp_connect(int fd, const dx_addr *a);
/* Send one datagram, to `to` (NULL: the connected peer). */
long dx_udp_send(int fd, const char *p, size_t n, const dx_addr *to);
/* Receive one datagram into p[0..n); its sender into *from if not NULL.
 * The length; -EMSGSIZE if it did not fit; -EAGAIN. */
long dx_udp_recv(int fd, char *p, size_t n, dx_addr *from);
/* Join (join != 0) or leave a multicast group, on interface ifindex (0:
 * the kernel's choice) or, for IPv4, the interface with address ifaddr. */
int dx_udp_membership(int fd, int join, const dx_addr *group, unsigned ifindex,
                      const dx_addr *ifaddr);

/* The index of a network interface by name ("lo"), or 0. */
unsigned dx_ifindex(const char *name);

#endif
