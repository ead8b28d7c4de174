#!/usr/bin/env bash
# duplex benchmark runner: every server on the same loads, server pinned to
# CPU 0 and load generator to CPU 1; prints one table and writes
# out/results.md. See README.md.
#
# Environment:
#   QUICK=1          smoke run: 1 s loads, 256 MiB bulk, 2000 idle conns, REPEAT=1
#   REPEAT=n         repeats per load, median reported (default 3; 1 when QUICK)
#   SERVERS="..."    subset/order of: c duplex luasocket luv cqueues
#   LOADS="..."      subset/order of: keepalive close pingpong bulk idle
#   DURATION=5       seconds per wrk / ping-pong load
#   BULK_BYTES=...   bulk echo size (default 2 GiB)
#   IDLE_CONNS=...   idle connections (default 10000)
#   SERVER_CPU=0 LOAD_CPU=1   CPUs to pin to
#   DUPLEX_BUILD=dir  where duplex/core.so is (default ../build)
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BIN=$HERE/bin
OUT=$HERE/out
LOGS=$OUT/logs
LUA=${LUA:-lua5.4}

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  REPEAT=${REPEAT:-1}
  DURATION=${DURATION:-1}
  BULK_BYTES=${BULK_BYTES:-$((256 << 20))}
  IDLE_CONNS=${IDLE_CONNS:-2000}
else
  REPEAT=${REPEAT:-3}
  DURATION=${DURATION:-5}
  BULK_BYTES=${BULK_BYTES:-$((2 << 30))}
  IDLE_CONNS=${IDLE_CONNS:-10000}
fi
SERVERS=${SERVERS:-"c duplex luasocket luv cqueues"}
LOADS=${LOADS:-"keepalive close pingpong bulk idle"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PP_CONNS=64
PP_SIZE=64

mkdir -p "$LOGS"
RAW=$OUT/raw.tsv
: > "$RAW"

# Enough descriptors for 10k connections on both sides (children inherit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 100)) ]; then
  echo "warning: ulimit -n is $(ulimit -n), below the $IDLE_CONNS idle connections" >&2
fi

# Lua module paths: the peers come from Debian, duplex from this tree.
# DUPLEX_BUILD may point at another build of duplex/core.so (e.g. an -O3 one).
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="${DUPLEX_BUILD:-$ROOT/build}/?.so;;"

for f in "$BIN/c_server" "$BIN/loadgen"; do
  [ -x "$f" ] || { echo "missing $f: run 'make' in bench/" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
PIN_S=(); PIN_L=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_S=(taskset -c "$SERVER_CPU"); PIN_L=(taskset -c "$LOAD_CPU")
else
  echo "warning: not pinning (no taskset or fewer than 2 CPUs)" >&2
fi

SPID=""   # the server we started
LPID=""   # the background load generator we started
cleanup() {
  [ -n "$LPID" ] && kill "$LPID" 2>/dev/null
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  [ -n "$SPID$LPID" ] && wait 2>/dev/null
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

server_cmd() { # name mode: sets SCMD
  case $1 in
    c)         SCMD=("$BIN/c_server" "$2" 0) ;;
    duplex|luasocket|luv|cqueues)
               SCMD=("$LUA" "$HERE/servers/$1.lua" "$2" 0) ;;
    *) return 1 ;;
  esac
}

# start_server NAME MODE TAG: sets SPID and SPORT; returns 1 if it did not come up.
start_server() {
  local log
  server_cmd "$1" "$2" || return 1
  log=$LOGS/$3.server
  "${PIN_S[@]}" "${SCMD[@]}" >"$log.out" 2>"$log.err" &
  SPID=$!
  SPORT=""
  for _ in $(seq 1 100); do   # up to 5 s
    SPORT=$(awk '$1 == "PORT" { print $2; exit }' "$log.out" 2>/dev/null)
    [ -n "$SPORT" ] && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  stop_server
  return 1
}

stop_server() {
  if [ -n "$SPID" ]; then
    kill "$SPID" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=""
  fi
}

alive() { kill -0 "$SPID" 2>/dev/null && [ -e "/proc/$SPID/stat" ] && ! grep -q '^[^)]*) Z' "/proc/$SPID/stat"; }

# Server CPU time in ns: on-CPU time of every thread (/proc/PID/task/*/schedstat),
# falling back to utime+stime from /proc/PID/stat (clock ticks).
# Prints nothing if the process is gone.
cpu_ns() {
  local total=0 t v
  for t in /proc/"$1"/task/*/schedstat; do
    read -r v _ < "$t" 2>/dev/null || continue
    total=$((total + v))
  done
  if [ "$total" -eq 0 ]; then
    total=$(awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print int(($12 + $13) * 1e9 / hz) }' "/proc/$1/stat" 2>/dev/null)
  fi
  echo "$total"
}

# end_cpu: after a load, set C1 to the server's CPU time; fail (1) if the
# server died during the load.
end_cpu() {
  alive || return 1
  C1=$(cpu_ns "$SPID")
  [ -n "$C1" ] && [ "$C1" != 0 ] && alive
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

record() { # server metric rep value
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RAW"
}
fail() { # server rep metrics... : record a failure for each metric
  local s=$1 r=$2; shift 2
  for m in "$@"; do record "$s" "$m" "$r" fail; done
}
na() {
  local s=$1 r=$2; shift 2
  for m in "$@"; do record "$s" "$m" "$r" na; done
}

metrics_of() {
  case $1 in
    keepalive) echo "ka_rps ka_cpu" ;;
    close)     echo "cl_rps cl_cpu" ;;
    pingpong)  echo "pp_rate pp_p50 pp_p99 pp_cpu" ;;
    bulk)      echo "bulk_gbps bulk_secs bulk_cpu" ;;
    idle)      echo "idle_rss idle_cpu" ;;
  esac
}

# --- loads ---------------------------------------------------------------

load_wrk() { # server rep tag prefix [extra wrk args]
  local s=$1 r=$2 tag=$3 p=$4; shift 4
  local c0 c1 out reqs rps errs
  c0=$(cpu_ns "$SPID")
  out=$LOGS/$tag.load
  timeout $((DURATION + 20)) "${PIN_L[@]}" wrk -t1 -c64 -d"${DURATION}s" --timeout 2s "$@" \
    "http://127.0.0.1:$SPORT/" > "$out" 2>&1
  if ! end_cpu; then echo "server died" >> "$out"; fail "$s" "$r" "${p}_rps" "${p}_cpu"; return; fi
  c1=$C1
  reqs=$(awk '/requests in/ { print $1; exit }' "$out")
  rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
  # wrong answers or socket errors on more than 1% of the requests: a failure
  errs=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
              /Non-2xx or 3xx/ { n += $NF } END { print n + 0 }' "$out")
  if [ -z "$reqs" ] || [ "$reqs" -eq 0 ] || [ -z "$rps" ] || [ $((errs * 100)) -gt "$reqs" ]; then
    echo "requests=${reqs:-0} errors=$errs: counted as a failure" >> "$out"
    fail "$s" "$r" "${p}_rps" "${p}_cpu"; return
  fi
  record "$s" "${p}_rps" "$r" "$rps"
  record "$s" "${p}_cpu" "$r" "$(awk -v a="$c0" -v b="$c1" -v n="$reqs" 'BEGIN { printf "%.3f", (b - a) / 1000 / n }')"
}

load_pingpong() {
  local s=$1 r=$2 tag=$3 c0 c1 out line
  c0=$(cpu_ns "$SPID")
  out=$LOGS/$tag.load
  timeout $((DURATION + 30)) "${PIN_L[@]}" "$BIN/loadgen" pingpong "$SPORT" -c $PP_CONNS -s $PP_SIZE -d "$DURATION" > "$out" 2>&1
  line=$(grep '^RESULT' "$out")
  if ! end_cpu || [ -z "$line" ] || grep -q 'errors=[1-9]' <<<"$line"; then
    fail "$s" "$r" pp_rate pp_p50 pp_p99 pp_cpu; return
  fi
  c1=$C1
  kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  record "$s" pp_rate "$r" "$(kv rate)"
  record "$s" pp_p50 "$r" "$(kv p50_us)"
  record "$s" pp_p99 "$r" "$(kv p99_us)"
  record "$s" pp_cpu "$r" "$(awk -v a="$c0" -v b="$c1" -v n="$(kv msgs)" 'BEGIN { printf "%.3f", (b - a) / 1000 / n }')"
}

load_bulk() {
  local s=$1 r=$2 tag=$3 c0 c1 out line limit
  limit=$((60 + BULK_BYTES / 20000000)) # generous: 20 MB/s worst case
  [ "$limit" -gt 300 ] && limit=300
  c0=$(cpu_ns "$SPID")
  out=$LOGS/$tag.load
  timeout $((limit + 10)) "${PIN_L[@]}" "$BIN/loadgen" bulk "$SPORT" -b "$BULK_BYTES" -t "$limit" > "$out" 2>&1
  line=$(grep '^RESULT' "$out")
  if ! end_cpu || [ -z "$line" ]; then fail "$s" "$r" bulk_gbps bulk_secs bulk_cpu; return; fi
  c1=$C1
  kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  record "$s" bulk_gbps "$r" "$(kv gbps)"
  record "$s" bulk_secs "$r" "$(kv secs)"
  record "$s" bulk_cpu "$r" "$(awk -v a="$c0" -v b="$c1" -v n="$BULK_BYTES" 'BEGIN { printf "%.4f", (b - a) / 1e9 / (n / 1e9) }')"
}

load_idle() {
  local s=$1 r=$2 tag=$3 c0 c1 m0 m1 out st=fail
  sleep 0.2   # let the fresh server settle before the baseline
  m0=$(rss_kb "$SPID"); c0=$(cpu_ns "$SPID")
  out=$LOGS/$tag.load
  "${PIN_L[@]}" "$BIN/loadgen" idle "$SPORT" -c "$IDLE_CONNS" -t 60 -H 180 > "$out" 2>&1 &
  LPID=$!
  for _ in $(seq 1 1500); do   # up to ~150 s (connect + verify have 60 s each)
    if grep -q '^READY' "$out"; then st=ready; break; fi
    grep -q '^FAIL' "$out" && break
    kill -0 "$LPID" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$st" = ready ] && alive; then
    sleep 0.5  # every connection has been served; let the server go idle
    m1=$(rss_kb "$SPID" 2>/dev/null)
    if end_cpu && [ -n "$m1" ]; then c1=$C1; else st=fail; fi
  else
    st=fail
  fi
  kill "$LPID" 2>/dev/null
  wait "$LPID" 2>/dev/null
  LPID=""
  if [ "$st" != ready ]; then fail "$s" "$r" idle_rss idle_cpu; return; fi
  record "$s" idle_rss "$r" "$(awk -v a="$m0" -v b="$m1" -v n="$IDLE_CONNS" 'BEGIN { printf "%.3f", (b - a) / n }')"
  record "$s" idle_cpu "$r" "$(awk -v a="$c0" -v b="$c1" -v n="$IDLE_CONNS" 'BEGIN { printf "%.3f", (b - a) / 1000 / n }')"
  echo "rss_before_kb=$m0 rss_after_kb=$m1" >> "$out"
}

run_load() { # load server rep
  local load=$1 s=$2 r=$3 mode=echo tag
  case $load in keepalive|close) mode=http ;; esac
  tag=$load.$s.$r
  if ! start_server "$s" "$mode" "$tag"; then
    # shellcheck disable=SC2046
    na "$s" "$r" $(metrics_of "$load")
    printf '  %-9s %-9s rep %s: n/a (server did not start; see %s)\n' "$load" "$s" "$r" "out/logs/$tag.server.err"
    return
  fi
  case $load in
    keepalive) load_wrk "$s" "$r" "$tag" ka ;;
    close)     load_wrk "$s" "$r" "$tag" cl -H "Connection: close" ;;
    pingpong)  load_pingpong "$s" "$r" "$tag" ;;
    bulk)      load_bulk "$s" "$r" "$tag" ;;
    idle)      load_idle "$s" "$r" "$tag" ;;
  esac
  stop_server
  printf '  %-9s %-9s rep %s: %s\n' "$load" "$s" "$r" \
    "$(awk -F'\t' -v s="$s" -v r="$r" -v m=" $(metrics_of "$load") " \
        '$1 == s && $3 == r && index(m, " " $2 " ") { printf "%s=%s ", $2, $4 }' "$RAW")"
}

echo "duplex bench: servers [$SERVERS], loads [$LOADS], repeat $REPEAT, ${DURATION}s loads," \
     "bulk $BULK_BYTES B, idle $IDLE_CONNS conns (QUICK=$QUICK)"
START=$(date +%s)
LOADAVG0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$REPEAT"); do
  for load in $LOADS; do
    for s in $SERVERS; do
      run_load "$load" "$s" "$r"
      sleep 0.2
    done
  done
done
LOADAVG1=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "# duplex benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')."
  echo "Server on CPU $SERVER_CPU, load on CPU $LOAD_CPU; median of $REPEAT run(s); ${DURATION}s wrk/ping-pong loads," \
       "bulk $BULK_BYTES bytes, $IDLE_CONNS idle connections; QUICK=$QUICK." \
       "Load average before/after: $LOADAVG0 / $LOADAVG1; took $(( $(date +%s) - START ))s." \
       "duplex: ${DUPLEX_BUILD:-$ROOT/build}/duplex/core.so."
  echo
} > "$OUT/results.md"
$LUA "$HERE/report.lua" "$RAW" "$SERVERS" "$LOADS" >> "$OUT/results.md"
echo
cat "$OUT/results.md"
