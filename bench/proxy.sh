#!/usr/bin/env bash
# proxy.sh: what the PROXY protocol costs a duplex server per connection.
# HAProxy (mode tcp) in front of bench/servers/duplex_proxy.lua, once with
# send-proxy-v2 to a listener with proxy = true and once without a header
# to one without; wrk sends "Connection: close" requests, so every request
# is a new connection through HAProxy and a new header at the server. Runs
# are interleaved, REPEAT times each. Then bin/proxy_parse: the parser
# alone, in ns per header.
#
# Prints a table (medians): requests/s, the duplex server's CPU µs per
# request (= per connection), and the difference with the header.
#
# Environment:
#   REPEAT=3        repeats per side (interleaved)
#   DURATION=5      seconds of wrk per run (QUICK=1: 2)
#   CONNS=32        wrk connections
#   LUA=lua5.4
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
. "$HERE/lib.sh"
OUT=$HERE/out
BIN=$HERE/bin
LUA=${LUA:-lua5.4}
QUICK=${QUICK:-0}
REPEAT=${REPEAT:-3}
if [ "$QUICK" = 1 ]; then DURATION=${DURATION:-2}; else DURATION=${DURATION:-5}; fi
CONNS=${CONNS:-32}

mkdir -p "$OUT" "$BIN"
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="${DUPLEX_BUILD:-$ROOT/build}/?.so;;"

for c in haproxy wrk "$LUA"; do
  command -v "$c" >/dev/null || { echo "proxy.sh: $c not found" >&2; exit 1; }
done
[ -f "${DUPLEX_BUILD:-$ROOT/build}/duplex/core.so" ] || { echo "proxy.sh: build duplex first (make)" >&2; exit 1; }

SPID=""; HPID=""
cleanup() {
  [ -n "$HPID" ] && kill "$HPID" 2>/dev/null
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# Start the duplex server (PROXY=$1) and HAProxy in front of it (header
# $1: 1 send-proxy-v2, 0 none): sets SPID, HPID and FPORT.
start() {
  local log=$OUT/proxy-server-$1 sport="" hport
  PROXY=$1 "$LUA" "$HERE/servers/duplex_proxy.lua" http 0 > "$log.out" 2> "$log.err" &
  SPID=$!
  for _ in $(seq 1 100); do
    sport=$(awk '$1 == "PORT" { print $2; exit }' "$log.out" 2>/dev/null)
    [ -n "$sport" ] && break
    sleep 0.05
  done
  [ -n "$sport" ] || return 1
  hport=$(free_port)
  {
    echo "global"
    echo "  maxconn 4000"
    echo "  nbthread 1"
    echo "defaults"
    echo "  mode tcp"
    echo "  timeout connect 5s"
    echo "  timeout client 30s"
    echo "  timeout server 30s"
    echo "listen fe"
    echo "  bind 127.0.0.1:$hport"
    if [ "$1" = 1 ]; then echo "  server s 127.0.0.1:$sport send-proxy-v2"
    else echo "  server s 127.0.0.1:$sport"; fi
  } > "$OUT/proxy-haproxy-$1.cfg"
  haproxy -f "$OUT/proxy-haproxy-$1.cfg" -db > "$OUT/proxy-haproxy-$1.log" 2>&1 &
  HPID=$!
  FPORT=$hport
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

stop() {
  [ -n "$HPID" ] && { kill "$HPID" 2>/dev/null; wait "$HPID" 2>/dev/null; }
  [ -n "$SPID" ] && { kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; }
  HPID=""; SPID=""
}

ROWS=$OUT/proxy.tsv
: > "$ROWS"
for rep in $(seq 1 "$REPEAT"); do
  for side in 0 1; do
    if ! start "$side"; then echo "proxy.sh: side $side did not start" >&2; stop; continue; fi
    c0=$(cpu_ns "$SPID")
    out=$(timeout $((DURATION + 20)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 2s \
          -H "Connection: close" "http://127.0.0.1:$FPORT/" 2>&1)
    c1=$(cpu_ns "$SPID")
    stop
    reqs=$(echo "$out" | awk '/requests in/ { print $1; exit }')
    rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2; exit }')
    errs=$(echo "$out" | awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
                              /Non-2xx or 3xx/ { n += $NF } END { print n + 0 }')
    if [ -z "$reqs" ] || [ "$reqs" -eq 0 ]; then echo "proxy.sh: side $side: no requests" >&2; continue; fi
    cpu=$(awk -v a="$c0" -v b="$c1" -v n="$reqs" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }')
    printf '%s\t%s\t%s\t%s\n' "$side" "$rps" "$cpu" "$errs" >> "$ROWS"
    echo "rep $rep $([ "$side" = 1 ] && echo "PROXY v2" || echo "no header"): $rps req/s, $cpu µs CPU per request, $errs errors" >&2
  done
done

awk -F'\t' '
  { n[$1]++; r[$1, n[$1]] = $2; c[$1, n[$1]] = $3 }
  function med(side, arr,   m, i, j, t, a) {
    m = n[side]; if (m == 0) return 0
    for (i = 1; i <= m; i++) a[i] = (arr == "r" ? r[side, i] : c[side, i]) + 0
    for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    print "| through HAProxy | requests/s | duplex CPU µs / request |"
    print "|---|---:|---:|"
    printf "| no header | %.0f | %.2f |\n", med(0, "r"), med(0, "c")
    printf "| send-proxy-v2, proxy = true | %.0f | %.2f |\n", med(1, "r"), med(1, "c")
    printf "\nthe header costs duplex %+.2f µs of CPU per connection (%+.1f%%), requests/s %+.1f%%\n",
      med(1, "c") - med(0, "c"), 100 * (med(1, "c") - med(0, "c")) / med(0, "c"),
      100 * (med(1, "r") - med(0, "r")) / med(0, "r")
  }' "$ROWS"

echo
"${CC:-cc}" -O2 -I"$ROOT/csrc" "$HERE/proxy_parse.c" "$ROOT/csrc/dx_proxy.c" -o "$BIN/proxy_parse" && "$BIN/proxy_parse"
