# bench/lib.sh - what the bench scripts (run.sh, tls.sh, forward.sh) share.
# Sourced, not run.

# Is the server $SPID still running (and not a zombie)?
alive() { kill -0 "$SPID" 2>/dev/null && [ -e "/proc/$SPID/stat" ] && ! grep -q '^[^)]*) Z' "/proc/$SPID/stat"; }

# CPU time in ns of process $1, user + system, every thread: the first field
# of /proc/PID/task/*/schedstat, else utime+stime of /proc/PID/stat (clock
# ticks). Prints nothing if the process is gone.
cpu_ns() {
  local total=0 t v
  for t in /proc/"$1"/task/*/schedstat; do
    read -r v _ < "$t" 2>/dev/null || continue
    total=$((total + v))
  done
  if [ "$total" -eq 0 ]; then
    total=$(awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.0f\n", ($12 + $13) * 1e9 / hz }' "/proc/$1/stat" 2>/dev/null)
  fi
  echo "$total"
}

# Resident memory of process $1 in KiB.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# A TCP port on 127.0.0.1 that nothing uses now: random, checked against
# /proc/net/tcp* (nginx and redis cannot be told to take port 0).
free_port() {
  local p _
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    awk -v hex="$(printf ':%04X' "$p")" 'substr($2, length($2) - 4) == hex { f = 1 } END { exit !f }' \
      /proc/net/tcp /proc/net/tcp6 2>/dev/null || { echo "$p"; return 0; }
  done
  return 1
}
