/*
 * dx_time.h - the monotonic clock, in seconds as a double. Deadlines are
 * absolute monotonic times; wall-clock changes never move them.
 */
#ifndef DX_TIME_H
#define DX_TIME_H

#include "dx_prefix.h"
#include <time.h>

static inline double dx_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Milliseconds from now until `deadline` for poll/epoll: -1 when there is no
 * deadline (deadline < 0), rounded up so a wait never ends early. */
static inline int dx_ms_until(double deadline) {
  double left;
  if (deadline < 0) return -1;
  left = (deadline - dx_now()) * 1000.0;
  if (left <= 0) return 0;
  if (left > 2147483647.0) return 2147483647;
  return (int)left + 1;
}

/* Block the process for `seconds` (inf: for ever). */
void dx_sleep(double seconds);

#endif
