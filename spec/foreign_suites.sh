#!/usr/bin/env bash
# LuaSocket's own test pair (test/testsrvr.lua + test/testclnt.lua) and
# copas's tests, each run on real LuaSocket and on duplex.socket (the
# face), on this machine, with counts printed side by side. Fetches
# nothing: SRC holds copies of the public repositories, made beforehand
# and never committed:
#
#   SRC/luasocket    (lunarmodules/luasocket)
#   SRC/copas        (lunarmodules/copas)
#   SRC/timerwheel   (Tieske/timerwheel.lua)
#
#   bash spec/foreign_suites.sh SRC [pair|copas|all [real|face|both]]   (from the repo root)
#
# testclnt needs a LuaSocket built with LUASOCKET_DEBUG (send and receive
# then return the time they took); Debian's is not, so the real side is
# SRC/luasocket's C core built here, into build/luasocket-debug, beside
# Debian's Lua modules (lua-socket), which both sides load. The face runs
# under the same Lua modules with duplex.socket as socket.core, and for
# copas with duplex.ssl as `ssl` (LuaSec's face: copas's TLS tests,
# tls-sni.lua and largetransfer.lua's second half, run on duplex's TLS;
# the real side runs them on LuaSec). Left out:
# testclnt's connect_timeout (it dials 10.0.0.1) and the copas tests that
# dial the Internet (request.lua, httpredirect.lua, connecttwice.lua).
# Needs: lua5.4, lua-socket, lua-coxpcall, lua-binaryheap (and lua-sec
# for copas's tls-sni.lua), make and a C compiler.
set -u
SRC=${1:?usage: foreign_suites.sh SRC [pair|copas|all]}
WHAT=${2:-all}
SIDES=${3:-both}
SRC=$(cd "$SRC" && pwd)
ROOT=$(pwd)
LUA=${LUA:-lua5.4}
V=${LUA#lua}
OUT=$ROOT/build/foreign
mkdir -p "$OUT"
TIMEOUT=${SUITE_TIMEOUT:-240}

# The real side: LuaSocket's C core with LUASOCKET_DEBUG.
REAL=$ROOT/build/luasocket-debug
if [ ! -f "$REAL/socket/core.so" ]; then
  rm -rf "$OUT/luasocket-build" && cp -r "$SRC/luasocket" "$OUT/luasocket-build"
  make -s -C "$OUT/luasocket-build/src" linux LUAV="$V" DEBUG=DEBUG >"$OUT/luasocket-build.log" 2>&1 \
    || { echo "building LuaSocket failed: $OUT/luasocket-build.log"; exit 1; }
  mkdir -p "$REAL/socket" "$REAL/mime"
  cp "$OUT"/luasocket-build/src/socket-*.so "$REAL/socket/core.so"
  cp "$OUT"/luasocket-build/src/mime-*.so "$REAL/mime/core.so"
fi

# What each side loads first (LUA_INIT): the face installs duplex.socket.
DUPLEX_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua"
COPAS_PATH="$SRC/copas/src/?.lua;$SRC/timerwheel/src/?.lua;$SRC/timerwheel/src/?/init.lua;/usr/share/lua/5.3/?.lua"
init_real() {
  echo "package.cpath='$REAL/?.so;'..package.cpath; package.path='$1'..package.path"
}
init_face() {
  echo "package.cpath='$ROOT/build/?.so;'..package.cpath; package.path='$DUPLEX_PATH;$1'..package.path; require('duplex.socket').install()$2"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# testclnt.lua as it is, but for counting: pass and fail count (fail
# raises instead of os.exit), each top-level call runs protected (an
# assert counts as a failure), connect_timeout is left out.
make_counted_client() {
  lua5.4 - "$SRC/luasocket/test/testclnt.lua" "$OUT/testclnt_counted.lua" <<'EOF'
local src = assert(io.open(arg[1])):read("a")
src = src:gsub("function pass%(%.%.%.%)",
  "function pass(...) PASSES = PASSES + 1; printf(...); io.stderr:write('\\n') end\nfunction __pass(...)", 1)
src = src:gsub("function fail%(%.%.%.%)",
  "function fail(...) FAILS = FAILS + 1; io.stderr:write('ERROR: '); printf(...); io.stderr:write('!\\n'); error('__fail__', 0) end\nfunction __fail(...)", 1)
local out = { "PASSES, FAILS = 0, 0" }
for line in (src .. "\n"):gmatch("(.-)\n") do
  if line:match("^connect_timeout%(%)") then
    out[#out + 1] = "-- connect_timeout() left out: it dials 10.0.0.1"
  elseif line:match("^[%a_][%w_]*%b()%s*$") and not line:match("^function") then
    out[#out + 1] = "do local ok, e = pcall(function() " .. line .. " end) if not ok and e ~= '__fail__' then FAILS = FAILS + 1; io.stderr:write('ERROR (raised): ', tostring(e), '\\n') end end"
  else
    out[#out + 1] = line
  end
end
out[#out + 1] = "print(('testclnt: %d passed, %d failed'):format(PASSES, FAILS))"
assert(io.open(arg[2], "w")):write(table.concat(out, "\n"))
EOF
}

run_pair() {   # side init
  local side=$1 init=$2 port spid
  port=$(free_port)
  ( cd "$SRC/luasocket/test" && LUA_INIT="$init" exec $LUA -e "host='127.0.0.1' port='$port'" testsrvr.lua ) \
    >"$OUT/pair-$side-server.log" 2>&1 &
  spid=$!
  for _ in $(seq 100); do
    (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
  done
  ( cd "$SRC/luasocket/test" && LUA_INIT="$init" timeout "$TIMEOUT" $LUA -e "host='127.0.0.1' port='$port'" "$OUT/testclnt_counted.lua" ) \
    >"$OUT/pair-$side.out" 2>"$OUT/pair-$side.log"
  kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
  local counts
  counts=$(grep -o 'testclnt: [0-9]* passed, [0-9]* failed' "$OUT/pair-$side.out" || echo "testclnt: did not finish (see $OUT/pair-$side.log)")
  echo "$side: $counts"
  grep -E '^ERROR' "$OUT/pair-$side.log" | sed "s/^/  $side /"
}

COPAS_TESTS="cancelall close errhandlers exit exittest future http-timeout largetransfer lock
  loop_starter no_luasocket pause queue removeserver removethread semaphore starve tcptimeout
  timeout_errors timer tls-sni udptimeout"

run_copas() {   # side init
  local side=$1 init=$2 n=0 ok=0 failed=""
  for t in $COPAS_TESTS; do
    [ -f "$SRC/copas/tests/$t.lua" ] || continue
    n=$((n + 1))
    if ( cd "$SRC/copas" && LUA_INIT="$init" timeout "$TIMEOUT" $LUA "tests/$t.lua" ) \
         >"$OUT/copas-$side-$t.log" 2>&1; then
      ok=$((ok + 1))
    else
      failed="$failed $t"
    fi
  done
  echo "$side: copas tests: $ok passed, $((n - ok)) failed${failed:+ (failed:$failed)}"
}

if [ "$WHAT" = pair ] || [ "$WHAT" = all ]; then
  make_counted_client
  echo "== LuaSocket's test pair (testsrvr.lua + testclnt.lua, without connect_timeout)"
  [ "$SIDES" = face ] || run_pair real "$(init_real "")"
  [ "$SIDES" = real ] || run_pair face "$(init_face "" "._DEBUG = true")"
fi
if [ "$WHAT" = copas ] || [ "$WHAT" = all ]; then
  [ -f "$SRC/copas/tests/certs/clientA.pem" ] || make -s -C "$SRC/copas" certs >/dev/null 2>&1
  echo "== copas's tests (those that stay on this machine)"
  [ "$SIDES" = face ] || run_copas real "$(init_real "$COPAS_PATH;")"
  [ "$SIDES" = real ] || run_copas face "$(init_face "$COPAS_PATH;" "; require('duplex.ssl').install()")"
fi
