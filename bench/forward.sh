#!/usr/bin/env bash
# forward.sh: TCP forwarders between redis-benchmark and redis-server, on
# loopback: direct (no forwarder), HAProxy in mode tcp, examples/forward.lua
# (client:forward, in C) and bench/servers/duplex_pump.lua (the Lua
# readsome/write loop it replaced). Runs are interleaved, REPEAT times each.
#
# Appends `server<TAB>metric<TAB>rep<TAB>value` lines to $RAW:
#   fwd_set_rps, fwd_get_rps   redis-benchmark -P 16 -q -t set,get requests/s
#   fwd_cpu                    the forwarder's CPU seconds per 1M requests
# and prints a table (median over the repeats) with % of direct and the
# ratio to HAProxy.
#
# Environment:
#   REPEAT=3            repeats per server (interleaved)
#   N=2000000           requests per redis-benchmark test (QUICK=1: 300000)
#   CLIENTS=50          redis-benchmark connections (-c)
#   HAPROXY_NBTHREAD=   HAProxy's nbthread (empty: its default, one per CPU)
#   PIN=0               1: forwarder on CPU 0, redis and the load on CPU 1
#   RAW=out/forward.tsv (appended to; not truncated)
#   LIMIT=60            seconds any one redis-benchmark may take
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
. "$HERE/lib.sh"
OUT=$HERE/out
LUA=${LUA:-lua5.4}
QUICK=${QUICK:-0}
REPEAT=${REPEAT:-3}
if [ "$QUICK" = 1 ]; then N=${N:-300000}; else N=${N:-2000000}; fi
CLIENTS=${CLIENTS:-50}
HAPROXY_NBTHREAD=${HAPROXY_NBTHREAD:-}
PIN=${PIN:-0}
RAW=${RAW:-$OUT/forward.tsv}
LIMIT=${LIMIT:-60}
SERVERS=${SERVERS:-"direct haproxy duplex_fwd duplex_pump"}

mkdir -p "$OUT" "$(dirname "$RAW")"
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="${DUPLEX_BUILD:-$ROOT/build}/?.so;;"

for c in redis-server redis-benchmark haproxy python3 "$LUA"; do
  command -v "$c" >/dev/null || { echo "forward.sh: $c not found" >&2; exit 1; }
done
[ -f "${DUPLEX_BUILD:-$ROOT/build}/duplex/core.so" ] || { echo "forward.sh: build duplex first (make)" >&2; exit 1; }

PIN_F=(); PIN_L=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_F=(taskset -c 0); PIN_L=(taskset -c 1)
fi

RPID=""; FPID=""
cleanup() {
  [ -n "$FPID" ] && kill "$FPID" 2>/dev/null
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# Wait (at most 10 s) until something accepts on 127.0.0.1:$1.
wait_port() {
  python3 - "$1" <<'PY'
import socket, sys, time
end = time.time() + 10
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RAW"; }

RPORT=$(free_port)
"${PIN_L[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize no --logfile "$OUT/forward-redis.log" &
RPID=$!
wait_port "$RPORT" || { echo "forward.sh: redis-server did not start" >&2; exit 1; }

# Start forwarder $1 towards redis: sets FPID and FPORT (empty for direct).
start() {
  FPID=""; FPORT=$RPORT
  case $1 in
    direct) return 0 ;;
    haproxy)
      FPORT=$(free_port)
      {
        echo "global"
        [ -n "$HAPROXY_NBTHREAD" ] && echo "  nbthread $HAPROXY_NBTHREAD"
        echo "  maxconn 1000"
        echo "defaults"
        echo "  mode tcp"
        echo "  timeout connect 5s"
        echo "  timeout client 60s"
        echo "  timeout server 60s"
        echo "listen fwd"
        echo "  bind 127.0.0.1:$FPORT"
        echo "  server redis 127.0.0.1:$RPORT"
      } > "$OUT/forward-haproxy.cfg"
      "${PIN_F[@]}" haproxy -f "$OUT/forward-haproxy.cfg" -db > "$OUT/forward-haproxy.log" 2>&1 &
      FPID=$! ;;
    duplex_fwd|duplex_pump)
      local script=$ROOT/examples/forward.lua
      [ "$1" = duplex_pump ] && script=$HERE/servers/duplex_pump.lua
      FPORT=$(free_port)
      "${PIN_F[@]}" "$LUA" "$script" "$FPORT" 127.0.0.1 "$RPORT" > "$OUT/forward-$1.log" 2>&1 &
      FPID=$! ;;
  esac
  wait_port "$FPORT"
}

stop() {
  [ -n "$FPID" ] && { kill "$FPID" 2>/dev/null; wait "$FPID" 2>/dev/null; }
  FPID=""
}

for rep in $(seq 1 "$REPEAT"); do
  for s in $SERVERS; do
    if ! start "$s"; then echo "forward.sh: $s did not start" >&2; stop; continue; fi
    c0=0; [ -n "$FPID" ] && c0=$(cpu_ns "$FPID")
    out=$(timeout "$LIMIT" "${PIN_L[@]}" redis-benchmark -h 127.0.0.1 -p "$FPORT" -c "$CLIENTS" \
          -P 16 -q -t set,get -n "$N" 2>&1 | tr '\r' '\n')
    c1=0; [ -n "$FPID" ] && c1=$(cpu_ns "$FPID")
    stop
    set_rps=$(echo "$out" | awk '/^SET: .* requests per second/ { print $2 }' | tail -1)
    get_rps=$(echo "$out" | awk '/^GET: .* requests per second/ { print $2 }' | tail -1)
    [ -n "$set_rps" ] && record "$s" fwd_set_rps "$rep" "$set_rps"
    [ -n "$get_rps" ] && record "$s" fwd_get_rps "$rep" "$get_rps"
    if [ -n "$FPORT" ] && [ "$s" != direct ] && [ -n "$set_rps$get_rps" ]; then
      record "$s" fwd_cpu "$rep" "$(awk -v a="$c0" -v b="$c1" -v n="$N" \
        'BEGIN { printf "%.3f", (b - a) / 1e9 / (2 * n) * 1e6 }')"
    fi
    echo "rep $rep $s: set ${set_rps:-?} get ${get_rps:-?} req/s" >&2
  done
done

# The table: medians of this run's lines ($RAW may hold older ones: only
# the last REPEAT lines of each server and metric count).
awk -F'\t' -v reps="$REPEAT" -v order="$SERVERS" '
  { k = $1 SUBSEP $2; n[k]++; v[k, n[k]] = $4 }
  function med(k,   m, i, j, t, a, lo) {
    m = n[k]; if (m == 0) return ""
    lo = m - reps + 1; if (lo < 1) lo = 1
    j = 0; for (i = lo; i <= m; i++) a[++j] = v[k, i] + 0
    for (i = 2; i <= j; i++) { t = a[i]; for (m = i - 1; m >= 1 && a[m] > t; m--) a[m + 1] = a[m]; a[m + 1] = t }
    return j % 2 ? a[(j + 1) / 2] : (a[j / 2] + a[j / 2 + 1]) / 2
  }
  END {
    ns = split(order, names, " ")
    print "| forwarder | SET req/s | GET req/s | % of direct (SET/GET) | vs HAProxy (SET/GET) | CPU s / 1M req |"
    print "|---|---:|---:|---:|---:|---:|"
    ds = med("direct" SUBSEP "fwd_set_rps"); dg = med("direct" SUBSEP "fwd_get_rps")
    hs = med("haproxy" SUBSEP "fwd_set_rps"); hg = med("haproxy" SUBSEP "fwd_get_rps")
    for (i = 1; i <= ns; i++) {
      s = names[i]; a = med(s SUBSEP "fwd_set_rps"); b = med(s SUBSEP "fwd_get_rps")
      c = med(s SUBSEP "fwd_cpu")
      pd = (ds > 0 && dg > 0) ? sprintf("%.0f%% / %.0f%%", 100 * a / ds, 100 * b / dg) : "-"
      ph = (hs > 0 && hg > 0) ? sprintf("%.2f / %.2f", a / hs, b / hg) : "-"
      printf "| %s | %.0f | %.0f | %s | %s | %s |\n", s, a, b, pd, ph, c == "" ? "-" : c
    }
  }' "$RAW"
