#!/usr/bin/env python3
"""ttl_probe.py - what TTL (IPv4) or hop limit (IPv6) datagrams arrive with,
for spec/50: proof that setoption("ttl") reaches the packets a dual-stack
socket sends to either family.

Usage: ttl_probe.py HOST COUNT
Binds HOST (127.0.0.1 or ::1) on port 0, prints "listening PORT", then for
each of COUNT datagrams prints "DATA TTL" and exits. Loopback only; gives up
after 10 s without a datagram (exit 1).
"""
import socket
import sys

# (Linux's values, for Pythons that lack the names)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)


def main():
    host, count = sys.argv[1], int(sys.argv[2])
    six = ":" in host
    s = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_DGRAM)
    if six:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        want = (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        want = (socket.IPPROTO_IP, socket.IP_TTL)
    s.bind((host, 0))
    s.settimeout(10)
    print("listening", s.getsockname()[1], flush=True)
    for _ in range(count):
        try:
            data, anc, _, _ = s.recvmsg(2048, socket.CMSG_SPACE(4))
        except socket.timeout:
            return 1
        ttl = None
        for level, kind, value in anc:
            if (level, kind) == want:
                ttl = int.from_bytes(value[:4], sys.byteorder)
        print(data.decode("ascii", "replace"), ttl, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
