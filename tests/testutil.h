/* testutil.h -- helpers shared by the cmocka tests: condition waits with a
 * deadline (never fixed sleeps). */
#ifndef DTS_TESTS_TESTUTIL_H
#define DTS_TESTS_TESTUTIL_H

#include <sched.h>
#include <stdbool.h>
#include <time.h>

static inline double tu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Polls `cond` (an expression) until true or `secs` pass; yields between
 * polls.  Evaluates to the final value of cond. */
#define TU_WAIT_UNTIL(cond, secs)                                              \
  ({                                                                           \
    double tu_deadline_ = tu_now() + (secs);                                   \
    bool tu_ok_ = (cond);                                                      \
    while (!tu_ok_ && tu_now() < tu_deadline_) {                               \
      struct timespec tu_ts_ = {0, 200000};                                    \
      nanosleep(&tu_ts_, NULL); /* poll interval, not a wait for an effect */  \
      tu_ok_ = (cond);                                                         \
    }                                                                          \
    tu_ok_;                                                                    \
  })

#endif
