#!/usr/bin/env bash
# profile.sh: where the servers spend their work, counted instead of timed
# (so a busy shared machine does not blur it), on a reduced load. SUITE=tcp
# (default) takes run.sh's C and duplex servers and loads, SUITE=tls those of
# tls.sh. For each server and load:
#   - callgrind: user-space instructions per operation, split by library
#     (libcrypto, libssl, libc, the Lua interpreter, duplex's core.so, the C
#     server) and the top functions, for the measured phase only
#     (callgrind_control zeroes the counters before it and dumps after it);
#   - strace -c: system calls per operation (the kernel side callgrind
#     cannot see), for the same phase of a run without valgrind;
#   - massif (idle load): heap bytes per idle connection, split by who
#     allocated them (OpenSSL, the Lua heap, duplex's core, the C server).
# Writes out/SUITE_profile/summary.txt (and the raw tool outputs beside it).
#
# Environment: SUITE (tcp | tls), SERVERS, LOADS, IDLE_CONNS (1000),
# SERVER_CPU/LOAD_CPU (0/1), LUA, DUPLEX_BUILD, DUPLEX_LUA_DIR, and as in
# run.sh LUAJIT and DUPLEX_JIT_BUILD; tcp: SERVERS "c duplex duplex_jit"
# (duplex_jit: servers/duplex.lua under LuaJIT, build/luajit), LOADS "pingpong
# keepalive close bulk idle", MESSAGES (20000), DURATION (wrk seconds, 5),
# BULK_BYTES (64 MiB); tls: SERVERS "c duplex duplex_noverify", LOADS
# "handshake small bulk idle", HANDSHAKES (200), MESSAGES (20000),
# BULK_BYTES (64 MiB).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=$HERE/bin
LUA=${LUA:-lua5.4}
LUAJIT=${LUAJIT:-luajit}
SUITE=${SUITE:-tcp}
case $SUITE in
  tcp) SERVERS=${SERVERS:-"c duplex duplex_jit"}
       LOADS=${LOADS:-"pingpong keepalive close bulk idle"}
       NEED=("$BIN/c_server" "$BIN/loadgen"); MAKE_HINT="make" ;;
  tls) SERVERS=${SERVERS:-"c duplex duplex_noverify"}
       LOADS=${LOADS:-"handshake small bulk idle"}
       NEED=("$BIN/c_tls_server" "$BIN/tls_loadgen"); MAKE_HINT="make tls-bin" ;;
  *) echo "SUITE must be tcp or tls" >&2; exit 2 ;;
esac
OUT=$HERE/out/${SUITE}_profile
HANDSHAKES=${HANDSHAKES:-200}
MESSAGES=${MESSAGES:-20000}
DURATION=${DURATION:-5}
BULK_BYTES=${BULK_BYTES:-$((64 << 20))}
IDLE_CONNS=${IDLE_CONNS:-1000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

for t in valgrind callgrind_control strace; do
  command -v $t >/dev/null || { echo "$t not found (apt-get install valgrind strace)" >&2; exit 1; }
done
[ "$SUITE" = tcp ] && { command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }; }
for f in "${NEED[@]}"; do
  [ -x "$f" ] || { echo "missing $f: run '$MAKE_HINT' in bench/" >&2; exit 1; }
done
DUPLEX_LUA_DIR=${DUPLEX_LUA_DIR:-$ROOT/lua}
export LUA_PATH="$DUPLEX_LUA_DIR/?.lua;$DUPLEX_LUA_DIR/?/init.lua;;"
export LUA_CPATH="${DUPLEX_BUILD:-$ROOT/build}/?.so;;"
DUPLEX_JIT_BUILD=${DUPLEX_JIT_BUILD:-${DUPLEX_BUILD:-$ROOT/build}/luajit}
PIN_S=(); PIN_L=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_S=(taskset -c "$SERVER_CPU"); PIN_L=(taskset -c "$LOAD_CPU")
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null

rm -rf "$OUT"; mkdir -p "$OUT"
if [ "$SUITE" = tls ]; then
  "$HERE/tls_pki.sh" "$OUT/pki" || exit 1
  CERT=$OUT/pki/server.crt KEY=$OUT/pki/server.key CA=$OUT/pki/ca.crt
fi
SUM=$OUT/summary.txt
TSV=$OUT/profile.tsv
: > "$SUM"; : > "$TSV"

SPID="" LPID="" TPID=""
cleanup() {
  for p in $TPID $LPID $SPID; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

server_cmd() { # server (load in $load): sets SCMD, and SENV (its environment)
  local mode=echo
  SENV=()
  case $load in keepalive|close) mode=http ;; esac
  case $SUITE.$1 in
    tcp.c)           SCMD=("$BIN/c_server" "$mode" 0) ;;
    tcp.duplex)      SCMD=("$LUA" "$HERE/servers/duplex.lua" "$mode" 0) ;;
    tcp.duplex_jit)  SCMD=("$LUAJIT" "$HERE/servers/duplex.lua" "$mode" 0)
                     SENV=("LUA_CPATH=$DUPLEX_JIT_BUILD/?.so;;") ;;
    tls.c)           SCMD=("$BIN/c_tls_server" "$CERT" "$KEY" 0) ;;
    tls.duplex)      SCMD=("$LUA" "$HERE/servers/duplex_tls.lua" "$CERT" "$KEY" 0) ;;
    tls.duplex_noverify) SCMD=("$LUA" "$HERE/servers/duplex_tls.lua" "$CERT" "$KEY" 0 noverify) ;;
    *) return 1 ;;
  esac
}

# start TAG TOOL...: the server under TOOL (may be empty); sets SPID, SPORT
start() {
  local tag=$1; shift
  server_cmd "$S" || return 1
  # env, taskset and the tool exec in turn: $! is the server (under the tool)
  env "${SENV[@]}" "${PIN_S[@]}" "$@" "${SCMD[@]}" > "$OUT/$tag.server.out" 2> "$OUT/$tag.server.err" &
  SPID=$!
  for _ in $(seq 1 600); do   # valgrind starts slowly: up to 60 s
    SPORT=$(awk '$1 == "PORT" { print $2; exit }' "$OUT/$tag.server.out" 2>/dev/null)
    [ -n "$SPORT" ] && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "$tag: the server did not start (see $OUT/$tag.server.err)" | tee -a "$SUM"
  stop; return 1
}
stop() {
  [ -n "$SPID" ] || return 0
  kill "$SPID" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; SPID=""
}

wait_line() { # FILE REGEX SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" && return 0
    grep -q '^FAIL' "$1" && return 1
    kill -0 "$LPID" 2>/dev/null || { grep -q "$2" "$1"; return; }
    sleep 0.1
  done
  return 1
}

load_args() { # load -> LARGS, OPS (operations in the measured phase)
  case $1 in
    handshake) LARGS=(handshake "$SPORT" "$CA" -n "$HANDSHAKES" -d 3600); OPS=$HANDSHAKES ;;
    small)     LARGS=(small "$SPORT" "$CA" -c 64 -s 64 -n "$MESSAGES" -d 3600); OPS="" ;;
    bulk)      LARGS=(bulk "$SPORT" "$CA" -b "$BULK_BYTES" -k 16384 -t 3600); OPS=$(awk -v b="$BULK_BYTES" 'BEGIN { print b / 1e6 }') ;;
  esac
}

# measure TAG LOAD ON_READY ON_RESULT: run the load with the hooks around
# its measured phase; sets OPS, the operations in that phase
measure() { if [ "$SUITE" = tls ]; then measure_gated "$@"; else measure_plain "$@"; fi; }

# The plain loads have no setup phase worth leaving out (64 connections
# against thousands of operations): the hooks run just before the load
# starts and just after it ends.
measure_plain() {
  local tag=$1 load=$2 ready=$3 result=$4 out=$OUT/$1.load url="http://127.0.0.1:$SPORT/"
  : > "$out"; OPS=""
  $ready
  case $load in
    pingpong)  "${PIN_L[@]}" "$BIN/loadgen" pingpong "$SPORT" -c 64 -s 64 -n "$MESSAGES" -d 3600 ;;
    keepalive) "${PIN_L[@]}" wrk -t1 -c64 -d"${DURATION}s" --timeout 30s "$url" ;;
    close)     "${PIN_L[@]}" wrk -t1 -c64 -d"${DURATION}s" --timeout 30s -H 'Connection: close' "$url" ;;
    bulk)      "${PIN_L[@]}" "$BIN/loadgen" bulk "$SPORT" -b "$BULK_BYTES" -t 3600 ;;
  esac > "$out" 2>&1
  $result
  case $load in
    pingpong)       grep -q 'errors=0' "$out" && OPS=$(sed -n 's/.* msgs=\([0-9]*\).*/\1/p' "$out") ;;
    keepalive|close) grep -q 'Socket errors\|Non-2xx' "$out" || OPS=$(awk '/requests in/ { print $1; exit }' "$out") ;;
    bulk)           grep -q '^RESULT' "$out" && OPS=$(awk -v b="$BULK_BYTES" 'BEGIN { print b / 1e6 }') ;;
  esac
  [ -n "$OPS" ] && [ "$OPS" != 0 ] && return 0
  echo "$tag: the load failed (see $out)" | tee -a "$SUM"; return 1
}

# tls_loadgen runs gated (-w): the hooks run at READY (before the measured
# phase) and at RESULT (after it)
measure_gated() {
  local tag=$1 load=$2 ready=$3 result=$4 out=$OUT/$1.load
  load_args "$load"
  : > "$out"
  "${PIN_L[@]}" "$BIN/tls_loadgen" "${LARGS[@]}" -w -H 3600 > "$out" 2>&1 &
  LPID=$!
  if ! wait_line "$out" '^READY' 600; then echo "$tag: no READY (see $out)" | tee -a "$SUM"; return 1; fi
  sleep 0.5; $ready
  kill -USR1 "$LPID"
  if ! wait_line "$out" '^RESULT' 3600; then echo "$tag: no RESULT (see $out)" | tee -a "$SUM"; return 1; fi
  sleep 0.5; $result
  kill -USR1 "$LPID"; wait "$LPID" 2>/dev/null; LPID=""
  if [ -z "$OPS" ]; then OPS=$(sed -n 's/.* msgs=\([0-9]*\).*/\1/p' "$out"); fi
  return 0
}

cg_zero() { callgrind_control -z "$SPID" > /dev/null 2>&1; }
cg_dump() { callgrind_control -d "$SPID" > /dev/null 2>&1; sleep 1; }
st_start() { strace -c -f -o "$STRACE_OUT" -p "$SPID" 2> /dev/null & TPID=$!; sleep 1; }
st_stop() { kill -INT "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null; TPID=""; }
nothing() { :; }

unit() {
  case $1 in
    bulk) echo "MB (1e6 bytes each way)" ;; small|pingpong) echo "message" ;; keepalive) echo "request" ;;
    close) echo "connection with one request" ;; *) echo "handshake" ;;
  esac
}

# a few operations before the counters are zeroed (the first ones load code)
warmup() {
  case $SUITE.$load in
    tls.*)                "$BIN/tls_loadgen" handshake "$SPORT" "$CA" -n 5 ;;
    tcp.keepalive|tcp.close) wrk -t1 -c4 -d1s "http://127.0.0.1:$SPORT/" ;;
    tcp.*)                "$BIN/loadgen" pingpong "$SPORT" -c 4 -n 200 -d 60 ;;
  esac > /dev/null 2>&1
}

# the idle load's connections, held until killed; run in the background,
# it execs, so that $! is the load generator itself
idle_load() {
  if [ "$SUITE" = tls ]; then exec "${PIN_L[@]}" "$BIN/tls_loadgen" idle "$SPORT" "$CA" -c "$IDLE_CONNS" -w -H 3600
  else exec "${PIN_L[@]}" "$BIN/loadgen" idle "$SPORT" -c "$IDLE_CONNS" -t 600 -H 3600; fi
}

for load in $LOADS; do
  for S in $SERVERS; do
    tag=$S.$load
    echo "== $tag" | tee -a "$SUM"
    if [ "$load" = idle ]; then
      # heap: the server alone, then with IDLE_CONNS idle connections (last snapshot of each)
      # LuaJIT's heap is its own allocator's mmap'ed memory, which massif
      # sees only as pages (so duplex_jit's figure counts whole pages)
      PAGES=(); [ "$S" = duplex_jit ] && PAGES=(--pages-as-heap=yes)
      start "$tag.base" valgrind --tool=massif "${PAGES[@]}" --detailed-freq=1 --threshold=0.1 --depth=40 \
        --massif-out-file="$OUT/$tag.base.massif" || continue
      sleep 1; stop
      start "$tag" valgrind --tool=massif "${PAGES[@]}" --detailed-freq=1 --threshold=0.1 --depth=40 \
        --massif-out-file="$OUT/$tag.massif" || continue
      : > "$OUT/$tag.load"
      idle_load > "$OUT/$tag.load" 2>&1 &
      LPID=$!
      if wait_line "$OUT/$tag.load" '^READY' 600; then
        sleep 2; stop
        $LUA "$HERE/heapsum.lua" "$OUT/$tag.base.massif" "$OUT/$tag.massif" "$IDLE_CONNS" | tee -a "$SUM" |
          sed -n "s/^heap per idle connection: \([-0-9]*\) B.*/$S\t$load\theap\t\1/p" >> "$TSV"
        [ "$S" = duplex_jit ] && echo "  (massif --pages-as-heap: LuaJIT's allocator maps memory of its own, counted in whole pages)" | tee -a "$SUM"
        # a Lua server's floor: its coroutine per connection, measured alone
        case $S in
          c) ;;
          duplex_jit) $LUAJIT "$HERE/floor.lua" "$IDLE_CONNS" | sed 's/^/  of which at least: /' | tee -a "$SUM" ;;
          *) $LUA "$HERE/floor.lua" "$IDLE_CONNS" | sed 's/^/  of which at least: /' | tee -a "$SUM" ;;
        esac
      else
        echo "$tag: no READY (see $OUT/$tag.load)" | tee -a "$SUM"; stop
      fi
      kill -USR1 "$LPID" 2>/dev/null; sleep 0.2; kill -USR1 "$LPID" 2>/dev/null
      kill "$LPID" 2>/dev/null; wait "$LPID" 2>/dev/null; LPID=""
      continue
    fi
    # instructions (callgrind), after a warm-up
    start "$tag" valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$OUT/$tag.callgrind" || continue
    warmup
    if measure "$tag" "$load" cg_zero cg_dump; then
      stop
      $LUA "$HERE/cgsum.lua" "$OUT/$tag.callgrind.1" "$OPS" 15 | sed "s|^$OUT/||" | tee -a "$SUM" |
        awk -v s="$S" -v l="$load" '/^PEROP/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); printf "%s\t%s\t%s\t%s\n", s, l, kv[1], kv[2] } }' >> "$TSV"
      echo "  (operation = one $(unit "$load"))" | tee -a "$SUM"
    else
      stop
    fi
    # system calls (strace -c), same load, no valgrind
    start "$tag.strace" || continue
    warmup
    STRACE_OUT=$OUT/$tag.strace
    if measure "$tag.strace" "$load" st_start st_stop; then
      # strace -c columns: % time, seconds, usecs/call, calls, [errors,] syscall
      awk -v n="$OPS" '$NF == "total" { printf "  system calls per operation: %.2f\n", $4 / n }
           $1 ~ /^[0-9.]+$/ && $NF != "total" { printf "    %-14s %.2f\n", $NF, $4 / n }' \
        "$STRACE_OUT" | tee -a "$SUM" |
        awk -v s="$S" -v l="$load" '/system calls per operation/ { printf "%s\t%s\tsyscalls\t%s\n", s, l, $NF }' >> "$TSV"
    fi
    stop
  done
done
# the table: one row per load and figure, one column per server, then each
# server against C
{
  echo
  echo "Counted per operation (see each load's unit above; idle: per connection):"
  echo "instructions in thousands (callgrind: total, then OpenSSL / libc / Lua / duplex core),"
  echo "system calls (strace -c), heap bytes per idle connection (massif)."
  echo
  awk -F'\t' -v servers="$SERVERS" -v loads="$LOADS" '
    { v[$1 SUBSEP $2 SUBSEP $3] = $4 }
    END {
      ns = split(servers, S, " "); nl = split(loads, L, " ")
      nm = split("total openssl libc lua duplex syscalls heap", M, " ")
      printf "| load | figure |"; for (i = 1; i <= ns; i++) printf " %s |", S[i]
      for (i = 1; i <= ns; i++) if (S[i] != "c") printf " %s vs c |", S[i]
      printf "\n|---|---|"; for (i = 1; i <= ns; i++) printf "---|"; for (i = 1; i <= ns; i++) if (S[i] != "c") printf "---|"
      printf "\n"
      for (l = 1; l <= nl; l++) for (m = 1; m <= nm; m++) {   # a row of zeros (OpenSSL in plain TCP) is left out
        row = ""; any = 0
        for (i = 1; i <= ns; i++) { k = S[i] SUBSEP L[l] SUBSEP M[m]; if (k in v) { row = row sprintf(" %s |", v[k]); if (v[k] + 0 != 0) any = 1 } else row = row " |" }
        if (!any) continue
        c = (("c" SUBSEP L[l] SUBSEP M[m]) in v) ? v["c" SUBSEP L[l] SUBSEP M[m]] : ""
        for (i = 1; i <= ns; i++) if (S[i] != "c") {
          k = S[i] SUBSEP L[l] SUBSEP M[m]
          if (!(k in v) || c == "") row = row " |"
          else if (M[m] == "heap") row = row sprintf(" %+d B |", v[k] - c)
          else if (c + 0 == 0) row = row " |"
          else row = row sprintf(" %.3fx |", v[k] / c)
        }
        printf "| %s | %s |%s\n", L[l], M[m], row
      }
    }' "$TSV"
} | tee -a "$SUM"
echo; echo "written: $SUM"
