#!/bin/sh
# spec/core/run.sh [plain|debug|asan|valgrind|all] - build and run the unit
# test of the pure-C core (no Lua), once per loop backend: epoll, then poll
# (-DDX_USE_POLL); debug asserts the loop's invariants (-DDX_DEBUG). The
# same as `make test-core` / `test-core-asan` / `test-core-memcheck`. CC
# (default cc) may be set, e.g. CC=clang.
set -eu
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
WARN="-Wall -Wextra -Wshadow -Wundef -Wwrite-strings -Wmissing-prototypes -Wstrict-prototypes"
# every core file but the backends (dx_loop.c includes one) and TLS
SRCS="spec/core/test_core.c $(ls csrc/dx_*.c | grep -v -e dx_loop_ -e dx_tls)"
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
mkdir -p build

run_pair() {   # $1: binary name suffix, $2: extra flags, $3: runner prefix
  $CC -std=c99 -O1 -g $WARN -Icsrc $2 -o "build/test_core$1" $SRCS -pthread
  $CC -std=c99 -O1 -g $WARN -Icsrc $2 -DDX_USE_POLL -o "build/test_core$1_poll" $SRCS -pthread
  $3 "./build/test_core$1"
  $3 "./build/test_core$1_poll"
}

mode=${1:-plain}
case $mode in
  plain)    run_pair "" "" "" ;;
  debug)    run_pair _debug -DDX_DEBUG "" ;;
  asan)     export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
            export UBSAN_OPTIONS=print_stacktrace=1
            run_pair _asan "$SAN" "" ;;
  valgrind) run_pair "" "" "valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all" ;;
  all)      "$0" plain && "$0" debug && "$0" asan && "$0" valgrind ;;
  *)        echo "usage: $0 [plain|debug|asan|valgrind|all]" >&2; exit 2 ;;
esac
