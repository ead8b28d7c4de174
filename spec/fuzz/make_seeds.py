#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_read.c into spec/fuzz/corpus/read/.
Run from the repository root: python3 spec/fuzz/make_seeds.py
The op numbers follow the enum in fuzz_read.c (bit 7: connection 1)."""
import os

(ARRIVE_RAW, ARRIVE_ALPHA, ARRIVE_ALPHA2, ARRIVE_BIG, PEER_EOF, READ, READ_L,
 READ0, UNTIL, SOME, STEP, STEP2, TIMEOUT, MAXLINE, RLIMIT, PREPWANT, RAWFILL,
 SETTLE, CLOSE, RESET, FIND, OOM) = range(22)
C1 = 0x80
L, LL, A = 0, 2, 3                 # format bytes: 'l', 'L', 'a'
def cnt(n):                        # a count format
    return [5, n] if n < 16 else [6, n]
def arrive(data, conn=0):
    out = []
    for i in range(0, len(data), 63):
        piece = data[i:i + 63]
        out += [ARRIVE_RAW | conn, len(piece)] + list(piece)
    return out
def read(*fmts, conn=0):
    body = []
    for f in fmts:
        body += f if isinstance(f, list) else [f]
    return [READ | conn, len(fmts) - 1] + body
def until(delim, mx=255, conn=0):  # raw delimiter bytes need bit 7 set
    alpha = {'a': 0, 'b': 1, 'c': 2, '\n': 3, '\r': 5, '\0': 7, '-': 8,
             '|': 10, ':': 11, 'x': 12, 'y': 13, ' ': 14, '\t': 15}
    return [UNTIL | conn, len(delim) - 1] + [alpha[ch] for ch in delim] + [mx]

seeds = {
    "lines": [0] + arrive(b"one\ntwo\r\nthree\rfour\r\nfive\r\r\n\n") +
             [READ_L] * 5 + [PEER_EOF, READ_L, READ_L],
    "cr_split": [0] + arrive(b"ab\r") + [READ_L] + arrive(b"\ncd\n") + [STEP, READ_L],
    "maxline": [0, MAXLINE, 8] + arrive(b"0123456789abcdef") + [READ_L] +
               arrive(b"\nnext\n") + [MAXLINE, 0, READ_L, READ_L],
    "multi_formats": [0] + arrive(b"line1\nline2\r\n12345rest") + [PEER_EOF] +
                     read(L, LL, cnt(5), A),
    "until_split": [0] + until("--|", 40) + arrive(b"part1-") + [STEP] +
                   arrive(b"-") + [STEP] + arrive(b"|tail") + [STEP, PEER_EOF] +
                   until("--|") + read(A),
    "readsome_rlimit": [0, RLIMIT, 3] + arrive(b"hello world") +
                       [SOME, 5, SOME, 5, SOME, 0, PEER_EOF, SOME, 5, SOME, 5],
    "two_buffers": [0] + arrive(b"held in the scratch") + [RAWFILL] +
                   arrive(b"other\n", C1) + [READ_L | C1, SETTLE] +
                   arrive(b"x\n") + [READ_L, CLOSE | C1] + arrive(b"again\n", C1) +
                   [READ_L | C1],
    "big_line": [3, MAXLINE, 200, ARRIVE_BIG, 100, 1, READ_L, MAXLINE, 0,
                 READ_L, ARRIVE_BIG, 200, 2, PREPWANT, 1, READ_L],
    "read0_eof": [0] + arrive(b"xy") + [READ, 0, 5, 1, READ0, READ, 0, 5, 1,
                 PEER_EOF, READ0, READ, 0, 4],
    "timeout_reset": [0] + [READ, 1, 6, 20, L] + arrive(b"0123456789") + [STEP, TIMEOUT] +
                     [RESET, READ_L] + arrive(b"0123456789\nmore\n") + [STEP] +
                     [READ, 1, 6, 20, L],
    "binary_until": [1] + arrive(b"\0a\0\n\0\r\nb\0cx\0\0yz") +
                    [READ_L, READ, 0, LL, READ, 0, 5, 3, UNTIL, 1, 7, 7, 255,
                     SOME, 1, PEER_EOF, READ, 0, A],
    "eof_nil_list": [0] + arrive(b"only\n") + [PEER_EOF] + read(L, L) +
                    read(A, L) + read(cnt(3), A, A),
    "alpha_mix": [2, ARRIVE_ALPHA2, 40] + list(range(40)) + [READ, 3, L, LL, 5, 2, 4] +
                 [UNTIL, 0, 3, 30, STEP, MAXLINE, 3, READ_L, PEER_EOF, STEP2],
    # The settle after read(1) cannot move "bc" out of the scratch (no
    # memory): the buffer keeps the scratch, connection 1 must not use it.
    "oom_settle": [0] + arrive(b"abc\n") + [OOM, 0] + read(cnt(1)) +
                  arrive(b"zz\n", C1) + [READ_L | C1, READ_L, OOM, 1] +
                  arrive(b"more\n") + [READ_L],
    "find": [0] + arrive(b"ab--cd\r\n--") + [RAWFILL, FIND, 2, 8, 9, 0, FIND, 2, 8, 9, 4,
             FIND, 0, 3, FIND, 1, 5, 3, FIND, 0, 99] + read(cnt(3)) +
            [FIND, 1, 8, 0, FIND, 4, 8, 8, 8, 8, 0],
    # Bug found by this fuzzer (lread.c push_read): after the end of stream
    # has been seen with bytes still buffered, read("l", 0) gives "a", nil
    # and read(0, 0) gives nil; both should give "" for the 0 (bytes remain).
    "bug_read0_trailing": [0] + arrive(b"a\nb") + [PEER_EOF] + until("|") +
                          read(L, [4]) + read([4], [4]),
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "read")
os.makedirs(out, exist_ok=True)
for name, prog in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes(prog))
print(len(seeds), "seeds in", out)
