#!/usr/bin/env python3
"""dns_responder.py - a tiny DNS server over UDP for spec/53 (examples/dns_query.lua).

Binds 127.0.0.1 on a port (default 0: any), prints "listening 127.0.0.1 PORT"
and answers A queries, a name per case:
  example.test        A 192.0.2.1 (ttl 300), the answer's name compressed
  multi.example.test  A 192.0.2.1 and A 192.0.2.2
  alias.example.test  CNAME example.test, then A 192.0.2.1
  empty.example.test  no records (NOERROR)
  anything else       NXDOMAIN
A query that is not a standard one (flags, counts, trailing bytes) gets
FORMERR.
Options: --drop N ignores the first N queries (a lost datagram: the client
must send again); --count N exits after answering N queries; --stray first
sends the client a datagram with another query id (to be ignored).
Loopback only; stops on SIGTERM or after --count.
"""
import socket
import struct
import sys

A, CNAME, IN = 1, 5, 1


def name_bytes(name):
    out = b""
    for label in name.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def parse_question(p):
    pos, labels = 12, []
    while True:
        n = p[pos]
        if n == 0:
            pos += 1
            break
        labels.append(p[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype, qclass = struct.unpack(">HH", p[pos:pos + 4])
    return ".".join(labels).lower(), qtype, qclass, p[12:pos + 4]


def rr(name_field, rtype, ttl, rdata):
    return name_field + struct.pack(">HHIH", rtype, IN, ttl, len(rdata)) + rdata


def well_formed(p, question):
    """A standard query: QR 0, opcode 0, one question, no other records,
    nothing after the question."""
    flags, qd, an, ns, ar = struct.unpack(">HHHHH", p[2:12])
    return (flags & 0xF800) == 0 and qd == 1 and an == ns == ar == 0 and len(p) == 12 + len(question)


def answer(p):
    qid, flags = struct.unpack(">HH", p[:4])
    name, qtype, qclass, question = parse_question(p)
    if not well_formed(p, question):
        return struct.pack(">HHHHHH", qid, 0x8000 | 1, 0, 0, 0, 0)   # FORMERR
    ptr = struct.pack(">H", 0xC00C)      # the name in the question, at offset 12
    rd = flags & 0x0100
    records, rcode = [], 0
    if qtype != A or qclass != IN:
        rcode = 4                       # NOTIMP
    elif name == "example.test":
        records = [rr(ptr, A, 300, bytes([192, 0, 2, 1]))]
    elif name == "multi.example.test":
        records = [rr(ptr, A, 60, bytes([192, 0, 2, 1])), rr(ptr, A, 60, bytes([192, 0, 2, 2]))]
    elif name == "alias.example.test":
        target = name_bytes("example.test")
        # the CNAME target starts 12 + 2 + 10 bytes into the answer section
        tpos = 12 + len(question) + 2 + 10
        records = [rr(ptr, CNAME, 30, target),
                   rr(struct.pack(">H", 0xC000 | tpos), A, 300, bytes([192, 0, 2, 1]))]
    elif name == "empty.example.test":
        records = []
    else:
        rcode = 3                       # NXDOMAIN
    head = struct.pack(">HHHHHH", qid, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1, len(records), 0, 0)
    return head + question + b"".join(records)


def main():
    args = sys.argv[1:]
    drop = count = 0
    stray = False
    port = 0
    while args:
        a = args.pop(0)
        if a == "--drop":
            drop = int(args.pop(0))
        elif a == "--count":
            count = int(args.pop(0))
        elif a == "--stray":
            stray = True
        else:
            port = int(a)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    print("listening 127.0.0.1 %d" % s.getsockname()[1], flush=True)
    answered = 0
    while not count or answered < count:
        p, peer = s.recvfrom(65536)
        if drop > 0:
            drop -= 1
            print("dropped a query", flush=True)
            continue
        try:
            reply = answer(p)
        except (IndexError, struct.error, UnicodeError):
            continue
        if stray:
            bad = bytearray(reply)
            bad[0] ^= 0xFF              # another id: not an answer to this query
            s.sendto(bytes(bad), peer)
        s.sendto(reply, peer)
        answered += 1
        print("answered %s" % parse_question(p)[0], flush=True)


if __name__ == "__main__":
    main()
