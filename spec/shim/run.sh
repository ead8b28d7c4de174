#!/bin/sh
# spec/shim/run.sh: build the short-I/O shim and run duplex through it.
#
#   spec/shim/run.sh [BYTES]      (from anywhere; BYTES as 16M, 512K, 1000)
#
# Builds build/duplex/core.so and build/shim/shortio.so (make), then runs
# spec/shim/shortio_check.lua with LD_PRELOAD=build/shim/shortio.so and the module
# taken from this checkout (./lua, ./build, or DUPLEX_CPATH as in
# spec/helpers.lua), bounded by `timeout`. Exits non-zero when a part fails
# or the bound is hit (124: timed out).
#
# Environment: SHORTIO_TIMEOUT (whole-run bound, seconds, default 120),
# SHORTIO_BYTES (size of the bulk transfer, default 16M), SHORTIO_PARTS,
# SHORTIO_OPTIMEOUT, SHORTIO_PARTLIMIT (see shortio_check.lua), and the
# shim's SHORTIO_SEED, SHORTIO_MAX, SHORTIO_EINTR, SHORTIO_STATS.
set -eu

cd "$(dirname "$0")/../.."

LUA=${LUA:-lua5.4}
BOUND=${SHORTIO_TIMEOUT:-120}

make -s all "${DUPLEX_SHIMS:-build/shim}/shortio.so"

cpath=${DUPLEX_CPATH:-./build/?.so}
export LUA_PATH="./lua/?.lua;./lua/?/init.lua;;"
export LUA_CPATH="$cpath;;"
export SHORTIO_STATS="${SHORTIO_STATS:-1}"
# the part limit stays below the bound, so a slow part reports itself
partlimit=$((BOUND - 10))
[ "$partlimit" -ge $((BOUND / 2)) ] || partlimit=$((BOUND / 2))
export SHORTIO_PARTLIMIT="${SHORTIO_PARTLIMIT:-$partlimit}"

status=0
timeout -k 5 "$BOUND" env LD_PRELOAD="$PWD/${DUPLEX_SHIMS:-build/shim}/shortio.so" \
  "$LUA" spec/shim/shortio_check.lua "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "shim check: killed after the ${BOUND}s bound (exit $status)" >&2
fi
exit "$status"
