/*
 * linger.c - an LD_PRELOAD library whose destructor keeps the process alive
 * for LINGER_MS milliseconds (default 1000) after main() has returned, that
 * is after the Lua interpreter's lua_close unloaded the C modules. A thread
 * still running inside an unloaded module then crashes the process instead
 * of being killed by exit first: spec/51 uses it to show that duplex's
 * lookup threads outlive duplex/core.so.
 * Build: make shims (build/shim/linger.so)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <time.h>

__attribute__((destructor)) static void linger(void) {
  const char *s = getenv("LINGER_MS");
  long ms = s ? atol(s) : 1000;
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0) {}
}
