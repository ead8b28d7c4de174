/*
 * dx_time.c - sleeping without a scheduler: the whole process waits on the
 * monotonic clock, again after every signal, for any length, even forever.
 */
#include "dx_prefix.h"
#include "dx_time.h"

#include <math.h>

void dx_sleep(double seconds) {
  double deadline = dx_now() + seconds;
  for (;;) {
    double left = deadline - dx_now();
    struct timespec ts;
    if (!(left > 0)) return;
    if (left > 86400) left = 86400;      /* time_t holds this everywhere */
    ts.tv_sec = (time_t)left;
    ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec > 999999999) ts.tv_nsec = 999999999;
    nanosleep(&ts, NULL);
  }
}
