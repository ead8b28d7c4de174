#!/usr/bin/env bash
# make memcheck: the whole spec suite under valgrind, descriptors tracked,
# but for the specs tagged #timing (they bound a duration or a CPU ratio,
# which valgrind's slowdown breaks) or #nomemcheck (descriptor limits, which
# valgrind's own descriptors upset; runs of other programs and builds; the
# same paths again over other transports), to stay within CI's time; every
# other run covers them.
# Fails on a spec failure, any valgrind error (in the interpreter or in a
# child before it execs), a definite leak, or a descriptor the interpreter
# left open at exit that it did not inherit.
set -u
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
BUSTED=${BUSTED:-$(command -v busted)}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
valgrind --error-exitcode=1 --track-fds=yes --leak-check=full --errors-for-leak-kinds=definite \
  --log-file="$logs/vg.%p.log" "$LUA" "$BUSTED" --exclude-tags=timing,nomemcheck -o utfTerminal spec || status=1
for f in "$logs"/vg.*.log; do
  if grep -q "ERROR SUMMARY: [1-9]" "$f"; then
    echo "memcheck: valgrind errors in $(basename "$f"):"; cat "$f"; status=1
  fi
  # Descriptors open at exit, other than those inherited from our parent.
  leaked=$(awk '/Open (file descriptor|AF_)/ { d = $0; getline; if ($0 !~ /inherited from parent/) print d }' "$f")
  if [ -n "$leaked" ] && grep -q "Command: $LUA $BUSTED" "$f" && grep -q "FILE DESCRIPTORS" "$f"; then
    echo "memcheck: descriptors left open at exit in $(basename "$f"):"; echo "$leaked"; status=1
  fi
done
[ "$status" = 0 ] && echo "memcheck: clean (no valgrind errors, no definite leaks, no descriptors left open)"
exit "$status"
