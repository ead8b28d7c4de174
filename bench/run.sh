#!/usr/bin/env bash
# duplex benchmark runner: every server on the same loads, server pinned to
# CPU 0 and load generator to CPU 1; prints one table and writes
# out/results.md and the chart out/results.svg (a full run also copies them
# to RESULTS.md and results.svg). See README.md.
#
# Environment:
#   QUICK=1          smoke run: 1 s loads, 256 MiB bulk, 2000 idle conns, REPEAT=1
#   REPEAT=n         repeats per load, median reported (default 3; 1 when QUICK)
#   SERVERS="..."    subset/order of: c duplex duplex_jit luasocket luv cqueues nginx nginx_lua
#                    copas copas_face
#                    (duplex_jit: servers/duplex.lua run by LuaJIT with the LuaJIT build;
#                    copas: Debian's copas on LuaSocket, copas_face: the same copas on
#                    duplex.socket, keep-alive and idle loads only)
#   LOADS="..."      subset/order of: keepalive close pingpong bulk idle forward
#   DURATION=5       seconds per wrk / ping-pong load
#   BULK_BYTES=...   bulk echo size (default 2 GiB)
#   IDLE_CONNS=...   idle connections (default 10000)
#   SERVER_CPU=0 LOAD_CPU=1   CPUs to pin to
#   DUPLEX_BUILD=dir  where duplex/core.so is (default ../build)
#   DUPLEX_JIT_BUILD=dir  where duplex_jit's duplex/core.so is, built by
#                    `make LUA=luajit` (default $DUPLEX_BUILD/luajit)
#   DUPLEX_LUA_DIR=dir  where duplex/*.lua is, for both (default ../lua)
#   LUAJIT=luajit    the interpreter of duplex_jit
#   PUBLISH=0|1      copy the results to RESULTS.md and results.svg (default:
#                    only a full run: QUICK=0 and SERVERS, LOADS unset)
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
. "$HERE/lib.sh"
BIN=$HERE/bin
OUT=$HERE/out
LOGS=$OUT/logs
LUA=${LUA:-lua5.4}
LUAJIT=${LUAJIT:-luajit}

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
# a subset or a smoke run must not overwrite the committed results
if [ "$QUICK" = 0 ] && [ -z "${SERVERS+x}" ] && [ -z "${LOADS+x}" ]; then PUBLISH=${PUBLISH:-1}; fi
PUBLISH=${PUBLISH:-0}
SERVERS=${SERVERS:-"c duplex duplex_jit luasocket luv cqueues nginx nginx_lua copas copas_face"}
LOADS=${LOADS:-"keepalive close pingpong bulk idle forward"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PP_CONNS=64
PP_SIZE=64

mkdir -p "$LOGS"
RAW=$OUT/raw.tsv
FWD_RAW=$OUT/forward.tsv   # forward.sh's figures (its own servers)
: > "$RAW"
: > "$FWD_RAW"

# Enough descriptors for 10k connections on both sides (children inherit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 100)) ]; then
  echo "warning: ulimit -n is $(ulimit -n), below the $IDLE_CONNS idle connections" >&2
fi

# Lua module paths: the peers come from Debian, duplex from this tree.
# DUPLEX_BUILD may point at another build of duplex/core.so (e.g. an -O3 one).
# duplex_jit runs the same Lua files with LuaJIT and the module built for it
# (make LUA=luajit: build/luajit), its LUA_CPATH set in server_cmd.
DUPLEX_LUA_DIR=${DUPLEX_LUA_DIR:-$ROOT/lua}
export LUA_PATH="$DUPLEX_LUA_DIR/?.lua;$DUPLEX_LUA_DIR/?/init.lua;;"
export LUA_CPATH="${DUPLEX_BUILD:-$ROOT/build}/?.so;;"
DUPLEX_JIT_BUILD=${DUPLEX_JIT_BUILD:-${DUPLEX_BUILD:-$ROOT/build}/luajit}

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

server_cmd() { # name mode: sets SCMD; on failure, says why on stdout
  case $1 in
    c)         SCMD=("$BIN/c_server" "$2" 0) ;;
    duplex|luasocket|luv|cqueues|copas)
               SCMD=("$LUA" "$HERE/servers/$1.lua" "$2" 0) ;;
    duplex_jit)
      command -v "$LUAJIT" >/dev/null || { echo "$LUAJIT not found (apt-get install luajit2)"; return 1; }
      [ -f "$DUPLEX_JIT_BUILD/duplex/core.so" ] ||
        { echo "no $DUPLEX_JIT_BUILD/duplex/core.so (make LUA=luajit at the top)"; return 1; }
      # env execs LuaJIT: the PID started is the server's
      SCMD=(env "LUA_CPATH=$DUPLEX_JIT_BUILD/?.so;;" "$LUAJIT" "$HERE/servers/duplex.lua" "$2" 0) ;;
    copas_face) SCMD=("$LUA" "$HERE/servers/copas.lua" "$2" 0 face) ;;
    *) echo "unknown server $1"; return 1 ;;
  esac
}

# Which loads a server takes part in: nginx only answers HTTP; copas is
# measured where issue 19 asks (keep-alive, and 10,000 idle connections,
# beyond the 1,024 descriptors of LuaSocket's select).
applies() { # server load
  case $1 in
    nginx|nginx_lua) [ "$2" = keepalive ] || [ "$2" = close ] ;;
    copas|copas_face) [ "$2" = keepalive ] || [ "$2" = idle ] ;;   # issue 19's loads
  esac
}

# (free_port, from lib.sh: nginx cannot take port 0, so start_nginx
# retries if the port is taken meanwhile.)

# The Debian ngx_http_lua module and the NDK it needs, as load_module lines.
nginx_lua_modules() {
  local d m found=""
  for m in ndk_http_module ngx_http_lua_module; do
    for d in /usr/lib/nginx/modules /usr/share/nginx/modules; do
      if [ -f "$d/$m.so" ]; then printf 'load_module %s;\n' "$d/$m.so"; found="$found $m"; break; fi
    done
  done
  [[ $found == *ngx_http_lua_module* ]]
}

# start_nginx NAME LOG: nginx in the foreground, one process (so its PID is
# the one measured), config from servers/nginx.conf.in under out/nginx/NAME.
start_nginx() {
  local name=$1 log=$2 dir=$OUT/nginx/$1 mods="" handler _ try
  : > "$log.out"; : > "$log.err"
  command -v nginx >/dev/null || { echo "nginx not found (apt-get install nginx)" >> "$log.err"; return 1; }
  handler='return 200 "Hello, World!";'
  if [ "$name" = nginx_lua ]; then
    mods=$(nginx_lua_modules) || { echo "no ngx_http_lua_module.so (apt-get install libnginx-mod-http-lua)" >> "$log.err"; return 1; }
    # Content-Length set, as the others send it (else nginx answers chunked)
    handler='content_by_lua_block { ngx.header["Content-Length"] = 13; ngx.print("Hello, World!") }'
  fi
  mkdir -p "$dir"
  for try in 1 2 3 4 5; do
    SPORT=$(free_port) || return 1
    awk -v mods="$mods" -v dir="$dir" -v err="$log.err" -v port="$SPORT" -v handler="$handler" '
      { gsub(/@MODULES@/, mods); gsub(/@DIR@/, dir); gsub(/@ERRLOG@/, err)
        gsub(/@PORT@/, port); gsub(/@HANDLER@/, handler); print }' \
      "$HERE/servers/nginx.conf.in" > "$dir/nginx.conf"
    rm -f "$dir/nginx.pid"
    echo "try $try: port $SPORT" >> "$log.out"
    : > "$log.err"   # a clash is read from this try's log alone
    "${PIN_S[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$log.err" \
      -g 'daemon off; master_process off;' >>"$log.out" 2>>"$log.err" &
    SPID=$!
    for _ in $(seq 1 100); do   # up to 5 s; the pid file is written after bind
      [ -s "$dir/nginx.pid" ] && alive && return 0
      grep -q 'failed (98' "$log.err" && break
      kill -0 "$SPID" 2>/dev/null || break
      sleep 0.05
    done
    stop_server
    grep -q 'failed (98' "$log.err" || return 1   # not a port clash: give up
  done
  return 1
}

# start_server NAME MODE TAG: sets SPID and SPORT; returns 1 if it did not come up.
start_server() {
  local log=$LOGS/$3.server
  case $1 in nginx|nginx_lua) start_nginx "$1" "$log"; return ;; esac
  server_cmd "$1" "$2" > "$log.err" || return 1
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

# end_cpu: after a load, set C1 to the server's CPU time; fail (1) if the
# server died during the load.
end_cpu() {
  alive || return 1
  C1=$(cpu_ns "$SPID")
  [ -n "$C1" ] && [ "$C1" != 0 ] && alive
}

record() { # server metric rep value
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RAW"
}
fail() { # server rep metrics... : record a failure for each metric
  local s=$1 r=$2; shift 2
  for m in "$@"; do record "$s" "$m" "$r" fail; done
}
na() { # the server did not start
  local s=$1 r=$2; shift 2
  for m in "$@"; do record "$s" "$m" "$r" na; done
}
skip() { # the load does not apply to the server
  local s=$1 r=$2; shift 2
  for m in "$@"; do record "$s" "$m" "$r" skip; done
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
  : > "$out"   # there before the loop below reads it
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
  if ! applies "$s" "$load"; then
    # shellcheck disable=SC2046
    skip "$s" "$r" $(metrics_of "$load")
    return
  fi
  if ! start_server "$s" "$mode" "$tag"; then
    # shellcheck disable=SC2046
    na "$s" "$r" $(metrics_of "$load")
    printf '  %-9s %-9s rep %s: did not start (see %s)\n' "$load" "$s" "$r" "out/logs/$tag.server.err"
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

# duplex as built: the commit of the tree its build directory is in
DUPLEX_DIR=${DUPLEX_BUILD:-$ROOT/build}
DUPLEX_REV=$(git -C "$DUPLEX_DIR/.." describe --always --dirty 2>/dev/null || echo "unknown")
has_load() { [[ " $LOADS " == *" $1 "* ]]; }

echo "duplex bench: servers [$SERVERS], loads [$LOADS], repeat $REPEAT, ${DURATION}s loads," \
     "bulk $BULK_BYTES B, idle $IDLE_CONNS conns (QUICK=$QUICK)"
START=$(date +%s)
LOADAVG0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$REPEAT"); do
  for load in $LOADS; do
    [ "$load" = forward ] && continue   # forward.sh, below
    for s in $SERVERS; do
      run_load "$load" "$s" "$r"
      applies "$s" "$load" && sleep 0.2
    done
  done
done

# The forward load has its own servers (redis, HAProxy, duplex forwarders)
# and repeats; it appends to FWD_RAW in the same four-column format.
if has_load forward; then
  if [ -f "$HERE/forward.sh" ]; then
    echo "forward: bash forward.sh (figures in out/forward.tsv)"
    export QUICK REPEAT DURATION SERVER_CPU LOAD_CPU LUA
    [ -n "${DUPLEX_BUILD:-}" ] && export DUPLEX_BUILD
    RAW=$FWD_RAW timeout -k 10 3600 bash "$HERE/forward.sh" || echo "forward: forward.sh failed (exit $?)" >&2
  else
    echo "forward: skipped (bench/forward.sh not there)"
  fi
fi
LOADAVG1=$(cut -d' ' -f1-3 /proc/loadavg)

mem_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
{
  echo "# Measured results"
  echo
  echo "Written by \`make bench\` (bench/run.sh); bench/README.md says how each figure is made."
  echo
  echo "- **When:** $(date -u '+%Y-%m-%d %H:%M UTC'); the run took $(( $(date +%s) - START )) s."
  echo "- **Machine:** $(uname -sr), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $mem_gib GiB."
  echo "- **Settings:** server on CPU $SERVER_CPU, load on CPU $LOAD_CPU; median of $REPEAT repeat(s);" \
       "${DURATION} s wrk and ping-pong loads, $BULK_BYTES bytes of bulk echo, $IDLE_CONNS idle connections; QUICK=$QUICK."
  echo "- **Load average** before / after: $LOADAVG0 / $LOADAVG1 (other work on the machine makes the figures noisy)."
  echo "- **duplex:** \`$DUPLEX_REV\` (\`git describe --always --dirty\`), built in $DUPLEX_DIR."
  if [[ " $SERVERS " == *" duplex_jit "* ]]; then
    echo "- **duplex on LuaJIT:** $($LUAJIT -v 2>&1 | head -n 1 | cut -d' ' -f1-2)" \
         "($(dpkg-query -W -f='luajit2 ${Version}' luajit2 2>/dev/null || command -v "$LUAJIT")), module built in $DUPLEX_JIT_BUILD."
  fi
  [ "$DUPLEX_LUA_DIR" = "$ROOT/lua" ] ||
    echo "- **duplex's Lua files** from $DUPLEX_LUA_DIR (not this tree's lua/)."
  if [[ " $SERVERS " == *" nginx"* ]] && command -v nginx >/dev/null; then
    echo "- **Peers:** $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(dpkg-query -W -f='libnginx-mod-http-lua ${Version}' libnginx-mod-http-lua 2>/dev/null || echo 'no lua module')."
  fi
  echo
  echo "![server CPU per operation, ratio to the C epoll server](results.svg)"
  echo
} > "$OUT/results.md"
$LUA "$HERE/report.lua" "$RAW" "$SERVERS" "$LOADS" "$FWD_RAW" >> "$OUT/results.md"
$LUA "$HERE/chart.lua" "$RAW" "$FWD_RAW" "$OUT/results.svg" "$SERVERS" \
  "$(date -u '+%Y-%m-%d'), duplex $DUPLEX_REV, median of $REPEAT, QUICK=$QUICK" \
  || echo "chart.lua failed" >&2
echo
cat "$OUT/results.md"
if [ "$PUBLISH" = 1 ]; then
  cp "$OUT/results.md" "$HERE/RESULTS.md"
  [ -s "$OUT/results.svg" ] && cp "$OUT/results.svg" "$HERE/results.svg"
  echo "wrote bench/RESULTS.md and bench/results.svg"
else
  echo "not a full run: bench/RESULTS.md and results.svg left as they are (out/results.md, out/results.svg; PUBLISH=1 to copy)"
fi
