#!/usr/bin/env bash
# duplex TLS benchmark runner: the duplex TLS echo server (servers/duplex_tls.lua)
# beside a plain C OpenSSL epoll echo server (c_tls_server.c), driven by
# tls_loadgen.c. Server pinned to CPU 0, load generator to CPU 1; writes
# out/tls_results.md (and out/tls_raw.tsv, out/tls_logs/). See README.md, "TLS".
#
# Environment:
#   QUICK=1          smoke run (~1 min): 1 s loads, 256 MiB bulk, 1000 idle conns, REPEAT=1
#   REPEAT=n         repeats per load, medians reported (default 3; 1 when QUICK)
#   SERVERS="..."    subset/order of: c duplex duplex_noverify (default: all three;
#                    duplex_noverify = the same server with verify = false spelled out)
#   LOADS="..."      subset/order of: handshake bulk small idle
#   DURATION=5       seconds of the handshake and small-message loads
#   BULK_BYTES=...   bulk echo size, each way (default 1 GiB)
#   IDLE_CONNS=1000  idle connections
#   SERVER_CPU=0 LOAD_CPU=1   CPUs to pin to
#   DUPLEX_BUILD=dir  where duplex/core.so is (default ../build)
#   QUIET_WAIT=60    before each load, wait up to this long for other processes
#                    to leave the server's CPU mostly idle (0: do not wait)
#   MAX_OTHERS=10 RETRIES=2   a load during which other processes took more
#                    than MAX_OTHERS% of the server's CPU runs again, at most
#                    RETRIES times; the least disturbed run counts
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
. "$HERE/lib.sh"
BIN=$HERE/bin
OUT=$HERE/out
LOGS=$OUT/tls_logs
PKI=$OUT/tls_pki
LUA=${LUA:-lua5.4}

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  REPEAT=${REPEAT:-1}
  DURATION=${DURATION:-1}
  BULK_BYTES=${BULK_BYTES:-$((256 << 20))}
else
  REPEAT=${REPEAT:-3}
  DURATION=${DURATION:-5}
  BULK_BYTES=${BULK_BYTES:-$((1 << 30))}
fi
IDLE_CONNS=${IDLE_CONNS:-1000}
SERVERS=${SERVERS:-"c duplex duplex_noverify"}
LOADS=${LOADS:-"handshake bulk small idle"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
QUIET_WAIT=${QUIET_WAIT:-60}
MAX_OTHERS=${MAX_OTHERS:-10}
RETRIES=${RETRIES:-2}
SM_CONNS=64
SM_SIZE=64

mkdir -p "$LOGS"
RAW=$OUT/tls_raw.tsv
: > "$RAW"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null

export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="${DUPLEX_BUILD:-$ROOT/build}/?.so;;"

for f in "$BIN/c_tls_server" "$BIN/tls_loadgen"; do
  [ -x "$f" ] || { echo "missing $f: run 'make tls-bin' in bench/" >&2; exit 1; }
done
command -v openssl >/dev/null || { echo "openssl not found (apt-get install openssl)" >&2; exit 1; }
NCPU=$(nproc)
PIN_S=(); PIN_L=()
if command -v taskset >/dev/null && [ "$NCPU" -ge 2 ]; then
  PIN_S=(taskset -c "$SERVER_CPU"); PIN_L=(taskset -c "$LOAD_CPU")
  # this shell polls the load generator's output: keep it off the server's CPU
  taskset -pc "$LOAD_CPU" $$ >/dev/null 2>&1
else
  echo "warning: not pinning (no taskset or fewer than 2 CPUs)" >&2
fi

# a throwaway PKI, made fresh on every run (tls_pki.sh)
"$HERE/tls_pki.sh" "$PKI" || exit 1
CERT=$PKI/server.crt KEY=$PKI/server.key CA=$PKI/ca.crt

SPID=""   # the server we started
LPID=""   # the load generator we started
cleanup() {
  [ -n "$LPID" ] && kill "$LPID" 2>/dev/null
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  [ -n "$SPID$LPID" ] && wait 2>/dev/null
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

server_cmd() { # name: sets SCMD
  case $1 in
    c)      SCMD=("$BIN/c_tls_server" "$CERT" "$KEY" 0) ;;
    duplex) SCMD=("$LUA" "$HERE/servers/duplex_tls.lua" "$CERT" "$KEY" 0) ;;
    duplex_noverify)
            SCMD=("$LUA" "$HERE/servers/duplex_tls.lua" "$CERT" "$KEY" 0 noverify) ;;
    *) return 1 ;;
  esac
}

start_server() { # name tag: sets SPID and SPORT; 1 if it did not come up
  local log
  server_cmd "$1" || return 1
  log=$LOGS/$2.server
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

stop_load() {
  if [ -n "$LPID" ]; then
    kill "$LPID" 2>/dev/null
    wait "$LPID" 2>/dev/null
    LPID=""
  fi
}

# Busy time of CPU $1 in ns (everything but idle and iowait), from /proc/stat.
cpu_busy_ns() {
  awk -v c="cpu$1" -v hz="$(getconf CLK_TCK)" '$1 == c { printf "%.0f\n", ($2 + $3 + $4 + $7 + $8 + $9) * 1e9 / hz }' /proc/stat
}
now_ns() { date +%s%N; }

# The machine is shared: before a load, wait (at most QUIET_WAIT seconds)
# until other processes leave the server's CPU at least 80% idle over half
# a second. Returns the share of that CPU others used in the last sample.
wait_quiet() {
  local t_end=$(( $(date +%s) + QUIET_WAIT )) b0 b1 w0 w1 pct
  while :; do
    b0=$(cpu_busy_ns "$SERVER_CPU"); w0=$(now_ns)
    sleep 0.5
    b1=$(cpu_busy_ns "$SERVER_CPU"); w1=$(now_ns)
    pct=$(( (b1 - b0) * 100 / (w1 - w0) ))
    if [ "$pct" -le 20 ] || [ "$(date +%s)" -ge "$t_end" ]; then break; fi
  done
  QUIET_PCT=$pct
}

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$ATT"; }   # this attempt's figures
fail() { local s=$1 r=$2; shift 2; for m in "$@"; do record "$s" "$m" "$r" fail; done; }
na()   { local s=$1 r=$2; shift 2; for m in "$@"; do record "$s" "$m" "$r" na; done; }

metrics_of() {
  case $1 in
    handshake) echo "hs_rate hs_cpu hs_others" ;;
    bulk)      echo "bulk_gbps bulk_cpu bulk_others" ;;
    small)     echo "sm_rate sm_p50 sm_p99 sm_cpu sm_others" ;;
    idle)      echo "idle_rss idle_cpu idle_others" ;;
  esac
}

# wait_line FILE REGEX SECONDS: 0 once a line matches; 1 on FAIL, on the
# load generator's exit, or on timeout.
wait_line() {
  local i n=$(( $3 * 20 ))
  for ((i = 0; i < n; i++)); do
    grep -q "$2" "$1" && return 0
    grep -q '^FAIL' "$1" && return 1
    kill -0 "$LPID" 2>/dev/null || { grep -q "$2" "$1"; return; }
    sleep 0.05
  done
  echo "runner: no '$2' within $3 s" >> "$1"
  return 1
}

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# run_attempt LOAD SERVER REP ATTEMPT: one run of a load on a fresh server;
# its figures go to $ATT
run_attempt() {
  local load=$1 s=$2 r=$3 tag out line c0 c1 m0 m1 b0 b1 w0 w1 setup_to run_to
  tag=$load.$s.$r
  [ "$4" -gt 0 ] && tag=$tag.again$4
  out=$LOGS/$tag.load
  # shellcheck disable=SC2046
  if ! start_server "$s" "$tag"; then
    na "$s" "$r" $(metrics_of "$load")
    printf '  %-9s %-15s rep %s: n/a (server did not start; see %s)\n' "$load" "$s" "$r" "out/tls_logs/$tag.server.err"
    return
  fi
  local args=()
  case $load in
    handshake) args=(handshake "$SPORT" "$CA" -d "$DURATION"); run_to=$((DURATION + 30)) ;;
    bulk)      run_to=$((60 + BULK_BYTES / 20000000)); [ "$run_to" -gt 300 ] && run_to=300
               args=(bulk "$SPORT" "$CA" -b "$BULK_BYTES" -k 16384 -t "$run_to"); run_to=$((run_to + 10)) ;;
    small)     args=(small "$SPORT" "$CA" -c "$SM_CONNS" -s "$SM_SIZE" -d "$DURATION"); run_to=$((DURATION + 30)) ;;
    idle)      args=(idle "$SPORT" "$CA" -c "$IDLE_CONNS"); run_to=30 ;;
  esac
  setup_to=$((30 + IDLE_CONNS / 20))
  # let the fresh server settle before the baselines, and others leave its CPU
  if [ "$QUIET_WAIT" -gt 0 ]; then wait_quiet; else sleep 0.2; fi
  m0=$(rss_kb "$SPID"); c0=$(cpu_ns "$SPID"); b0=$(cpu_busy_ns "$SERVER_CPU"); w0=$(now_ns)
  : > "$out"                     # there before the load generator writes to it
  "${PIN_L[@]}" "$BIN/tls_loadgen" "${args[@]}" -w -H 600 > "$out" 2>&1 &
  LPID=$!
  local ok=1
  if ! wait_line "$out" '^READY' "$setup_to" || ! alive; then ok=0; fi
  if [ $ok = 1 ]; then
    if [ "$load" = idle ]; then
      sleep 0.5                  # every connection has been served: let the server go idle
      m1=$(rss_kb "$SPID"); c1=$(cpu_ns "$SPID"); b1=$(cpu_busy_ns "$SERVER_CPU"); w1=$(now_ns)
      [ -n "$m1" ] && alive || ok=0
      kill -USR1 "$LPID" 2>/dev/null
      wait_line "$out" '^RESULT' 10 || ok=0
    else
      sleep 0.2                  # the setup's last records are handled
      c0=$(cpu_ns "$SPID"); b0=$(cpu_busy_ns "$SERVER_CPU"); w0=$(now_ns)
      kill -USR1 "$LPID" 2>/dev/null
      wait_line "$out" '^RESULT' "$run_to" || ok=0
      c1=$(cpu_ns "$SPID"); b1=$(cpu_busy_ns "$SERVER_CPU"); w1=$(now_ns)
      alive || ok=0
    fi
  fi
  kill -USR1 "$LPID" 2>/dev/null   # teardown
  for _ in $(seq 1 100); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.05; done
  stop_load
  line=$(grep '^RESULT' "$out")
  if [ $ok = 0 ] || [ -z "$line" ] || ! grep -q 'errors=0' <<<"$line"; then
    alive || echo "runner: the server died" >> "$out"
    # shellcheck disable=SC2046
    fail "$s" "$r" $(metrics_of "$load")
  else
    case $load in
      handshake)
        record "$s" hs_rate "$r" "$(kv rate "$line")"
        record "$s" hs_cpu "$r" "$(awk -v a="$c0" -v b="$c1" -v n="$(kv handshakes "$line")" 'BEGIN { printf "%.2f", (b - a) / 1000 / n }')" ;;
      bulk)
        record "$s" bulk_gbps "$r" "$(kv gbps "$line")"
        record "$s" bulk_cpu "$r" "$(awk -v a="$c0" -v b="$c1" -v n="$BULK_BYTES" 'BEGIN { printf "%.4f", (b - a) / 1e9 / (n / 1e9) }')" ;;
      small)
        record "$s" sm_rate "$r" "$(kv rate "$line")"
        record "$s" sm_p50 "$r" "$(kv p50_us "$line")"
        record "$s" sm_p99 "$r" "$(kv p99_us "$line")"
        record "$s" sm_cpu "$r" "$(awk -v a="$c0" -v b="$c1" -v n="$(kv msgs "$line")" 'BEGIN { printf "%.3f", (b - a) / 1000 / n }')" ;;
      idle)
        record "$s" idle_rss "$r" "$(awk -v a="$m0" -v b="$m1" -v n="$IDLE_CONNS" 'BEGIN { printf "%.3f", (b - a) / n }')"
        record "$s" idle_cpu "$r" "$(awk -v a="$c0" -v b="$c1" -v n="$IDLE_CONNS" 'BEGIN { printf "%.1f", (b - a) / 1000 / n }')"
        echo "runner: rss_before_kb=$m0 rss_after_kb=$m1" >> "$out" ;;
    esac
    # how much of the server's CPU other processes took while it was measured
    record "$s" "$(metrics_of "$load" | cut -d' ' -f1 | cut -d_ -f1)_others" "$r" \
      "$(awk -v b0="$b0" -v b1="$b1" -v c0="$c0" -v c1="$c1" -v w0="$w0" -v w1="$w1" \
          'BEGIN { v = ((b1 - b0) - (c1 - c0)) * 100 / (w1 - w0); printf "%.0f", v < 0 ? 0 : v }')"
    echo "runner: quiet_wait_last_sample=${QUIET_PCT:-?}% (others' use of CPU $SERVER_CPU before the load)" >> "$out"
  fi
  stop_server
  printf '  %-9s %-15s rep %s: %s\n' "$load" "$s" "$r" "$(awk -F'\t' '{ printf "%s=%s ", $2, $4 }' "$ATT")"
}

# run_load LOAD SERVER REP: the machine is shared, so a run during which
# other processes took more than MAX_OTHERS% of the server's CPU is made
# again (at most RETRIES times); the least disturbed run is kept.
run_load() {
  local a o best="" best_o=""
  for ((a = 0; a <= RETRIES; a++)); do
    ATT=$OUT/tls_attempt.$a.tsv
    : > "$ATT"
    run_attempt "$1" "$2" "$3" "$a"
    o=$(awk -F'\t' '$2 ~ /_others$/ { print $4 }' "$ATT")
    if [ -z "$o" ]; then [ -n "$best" ] || best=$ATT; break; fi   # failed: keep a better run if any
    if [ -z "$best_o" ] || [ "$o" -lt "$best_o" ]; then best=$ATT; best_o=$o; fi
    [ "$o" -le "$MAX_OTHERS" ] && break
    [ "$a" -lt "$RETRIES" ] && echo "    (other processes took ${o}% of CPU $SERVER_CPU: again)"
  done
  cat "$best" >> "$RAW"
  rm -f "$OUT"/tls_attempt.*.tsv
}

echo "duplex TLS bench: servers [$SERVERS], loads [$LOADS], repeat $REPEAT, ${DURATION}s loads," \
     "bulk $BULK_BYTES B each way, $IDLE_CONNS idle conns (QUICK=$QUICK)"
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

CIPHER=$(grep -ho 'cipher=[^ ]*' "$LOGS"/*.load 2>/dev/null | sort | uniq -c | sort -rn | awk 'NR == 1 { sub(/cipher=/, "", $2); print $2 }')
{
  echo "# duplex TLS benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $NCPU CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(openssl version | cut -d' ' -f1-2)."
  echo "Server on CPU $SERVER_CPU, load on CPU $LOAD_CPU; median of $REPEAT run(s) [range]; ${DURATION}s handshake/small-message loads," \
       "bulk $BULK_BYTES bytes each way, $IDLE_CONNS idle connections; TLS 1.3, ECDSA P-256 certificate, X25519, ${CIPHER:-?}; QUICK=$QUICK." \
       "Load average before/after: $LOADAVG0 / $LOADAVG1; took $(( $(date +%s) - START ))s." \
       "duplex: ${DUPLEX_BUILD:-$ROOT/build}/duplex/core.so."
  echo
} > "$OUT/tls_results.md"
$LUA "$HERE/tls_report.lua" "$RAW" "$SERVERS" "$LOADS" >> "$OUT/tls_results.md"
echo
cat "$OUT/tls_results.md"
