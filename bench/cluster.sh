#!/usr/bin/env bash
# duplex.cluster on this machine (issue 20): per-core efficiency and a
# reload under load. Writes out/cluster.md (and prints it).
#
#  1. Server CPU per request (master + every worker, summed) and requests/s
#     with 1 worker and with 2, on keep-alive (wrk -c64) and on churn (a
#     new connection per request: "Connection: close"), for both ways of
#     sharing the port (one inherited listener; reuseport). The ratio
#     2 workers / 1 worker of CPU per request is the per-core efficiency
#     (target <= 1.05). This machine has 2 cores and wrk shares them with
#     the server: nothing is pinned, so 2 workers cannot double the
#     throughput here; the CPU per request is the figure that holds.
#  2. A reload under a steady wrk load (2 workers): wrk runs for RELOAD_SECS
#     and the master gets SIGHUP every second from the 1st on; errors (socket
#     errors + non-2xx) and p99 latency, against the same run without HUP.
#
# Environment: DURATION (seconds per load, default 5; QUICK=1: 2), REPEAT
# (default 3; QUICK=1: 1; the median is reported), LUA (lua5.4),
# DUPLEX_BUILD (../build), DUPLEX_LUA_DIR (../lua).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
OUT=$HERE/out
LOGS=$OUT/logs/cluster
mkdir -p "$LOGS"
LUA=${LUA:-lua5.4}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then DURATION=${DURATION:-2}; REPEAT=${REPEAT:-1}
else DURATION=${DURATION:-5}; REPEAT=${REPEAT:-3}; fi
RELOAD_SECS=${RELOAD_SECS:-$((DURATION + 1))}
DUPLEX_BUILD=${DUPLEX_BUILD:-$HERE/../build}
DUPLEX_LUA_DIR=${DUPLEX_LUA_DIR:-$HERE/../lua}
export LUA_PATH="$DUPLEX_LUA_DIR/?.lua;$DUPLEX_LUA_DIR/?/init.lua;;"
export LUA_CPATH="$DUPLEX_BUILD/?.so;;"
command -v wrk >/dev/null || { echo "cluster.sh needs wrk"; exit 1; }

SPID=""
# start WORKERS [reuseport]: sets SPID (the master) and SPORT
start() {
  local log=$LOGS/server.$1.${2:-shared}
  : > "$log.out"   # (truncated here, not in the background job: a stale PORT line)
  "$LUA" "$HERE/servers/duplex_cluster.lua" http 0 "$1" "${2:-}" >"$log.out" 2>"$log.err" &
  SPID=$!
  SPORT=""
  for _ in $(seq 1 100); do
    SPORT=$(awk '$1 == "PORT" { print $2; exit }' "$log.out" 2>/dev/null)
    [ -n "$SPORT" ] && [ "$(grep -c '^WORKER' "$log.out")" -ge "$1" ] && return 0
    sleep 0.05
  done
  return 1
}
stop() {
  [ -n "$SPID" ] || return
  kill "$SPID" 2>/dev/null
  for _ in $(seq 1 200); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}
# CPU of the master and its workers (the processes whose parent it is)
tree_cpu() {
  local total pid
  total=$(cpu_ns "$SPID")
  for pid in $(pgrep -P "$SPID"); do total=$((total + $(cpu_ns "$pid"))); done
  echo "$total"
}
errors_of() { awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
                  /Non-2xx or 3xx/ { n += $NF } END { print n + 0 }' "$1"; }
p99_of() { awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
                  else if (v ~ /ms$/) sub(/ms$/, "", v); else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
                  printf "%.2f", v }' "$1"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "-" }'; }

RAW=$OUT/cluster.tsv
: > "$RAW"
# load NAME WORKERS MODE REP [wrk args]
load() {
  local name=$1 w=$2 mode=$3 r=$4 out c0 c1 reqs rps; shift 4
  out=$LOGS/$name.$mode.$w.$r.load
  start "$w" "$([ "$mode" = reuseport ] && echo reuseport)" || { echo "server did not start"; stop; return; }
  c0=$(tree_cpu)
  timeout $((DURATION + 20)) wrk -t1 -c64 -d"${DURATION}s" --timeout 2s "$@" "http://127.0.0.1:$SPORT/" > "$out" 2>&1
  c1=$(tree_cpu)
  stop
  reqs=$(awk '/requests in/ { print $1; exit }' "$out")
  rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
  [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || return
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$mode" "$w" "$rps" \
    "$(awk -v a="$c0" -v b="$c1" -v n="$reqs" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }')" "$(errors_of "$out")" >> "$RAW"
}

for r in $(seq 1 "$REPEAT"); do
  for mode in shared reuseport; do
    for w in 1 2; do
      load keepalive "$w" "$mode" "$r"
      load churn "$w" "$mode" "$r" -H "Connection: close"
    done
  done
done

# reload: steady run, then the same with a HUP every second
RRAW=$OUT/cluster_reload.tsv
: > "$RRAW"
reload_run() { # mode hup rep [wrk args]
  local mode=$1 hup=$2 r=$3 out name=$4; shift 4
  out=$LOGS/reload.$name.$mode.$hup.$r.load
  start 2 "$([ "$mode" = reuseport ] && echo reuseport)" || { echo "server did not start"; stop; return; }
  timeout $((RELOAD_SECS + 20)) wrk -t1 -c64 -d"${RELOAD_SECS}s" --timeout 2s --latency "$@" "http://127.0.0.1:$SPORT/" > "$out" 2>&1 &
  local wpid=$! n=0
  if [ "$hup" = hup ]; then
    sleep 1
    while kill -0 "$wpid" 2>/dev/null && [ $n -lt $((RELOAD_SECS - 1)) ]; do
      kill -HUP "$SPID"; n=$((n + 1)); sleep 1
    done
  fi
  wait "$wpid"
  stop
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$mode" "$hup" "$n" \
    "$(awk '/requests in/ { print $1; exit }' "$out")" "$(errors_of "$out")" "$(p99_of "$out")" >> "$RRAW"
}
for r in $(seq 1 "$REPEAT"); do
  for mode in shared reuseport; do
    for name in keepalive churn; do
      extra=(); [ "$name" = churn ] && extra=(-H "Connection: close")
      reload_run "$mode" steady "$r" "$name" "${extra[@]}"
      reload_run "$mode" hup "$r" "$name" "${extra[@]}"
    done
  done
done

{
  echo "## duplex.cluster (bench/cluster.sh; $(nproc) cores, wrk on the same cores, nothing pinned; median of $REPEAT)"
  echo
  echo "| load | sharing | req/s 1 worker | req/s 2 workers | CPU µs/req 1 | CPU µs/req 2 | ratio 2/1 |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for name in keepalive churn; do
    for mode in shared reuseport; do
      get() { awk -F'\t' -v n="$name" -v m="$mode" -v w="$1" -v c="$2" '$1 == n && $2 == m && $3 == w { print $c }' "$RAW" | median; }
      r1=$(get 1 4); r2=$(get 2 4); c1=$(get 1 5); c2=$(get 2 5)
      ratio=$(awk -v a="$c1" -v b="$c2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }')
      echo "| $name | $mode | $r1 | $r2 | $c1 | $c2 | $ratio |"
    done
  done
  echo
  echo "Reload under load (2 workers, wrk -c64 for ${RELOAD_SECS} s; \"hup\": SIGHUP every second from the 1st on):"
  echo
  echo "| load | sharing | run | reloads | requests | errors | p99 ms |"
  echo "|---|---|---|---:|---:|---:|---:|"
  sort -t$'\t' -k1,1 -k2,2 -k3,3r "$RRAW" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }'
} > "$OUT/cluster.md"
cat "$OUT/cluster.md"
