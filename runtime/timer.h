/* timer.h -- post a message to an actor at a deadline.
 *
 * One thread per dts_timers owns a binary min-heap of pending timers keyed by
 * (deadline, post order), so timers with one deadline fire in the order they
 * were posted.  A timer never fires before its deadline (CLOCK_MONOTONIC).
 * Cancel is O(log n) under the heap's mutex.  Handles carry a generation, so
 * cancelling a timer that already fired is safe and returns false.  A
 * million pending timers cost about 48 MB.
 */
#ifndef DTS_RUNTIME_TIMER_H
#define DTS_RUNTIME_TIMER_H

#include "runtime/actor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dts_timers dts_timers;

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t dts_now_ns(void);
/* Nanoseconds since the Unix epoch (CLOCK_REALTIME), plus the shift below. */
uint64_t dts_wall_ns(void);
/* Shifts dts_wall_ns by `ns` (0 at start): lets tests see what a clock
 * that jumped does (dtsd: DTSD_TEST_CLOCK_SHIFT_S).  Set before any thread
 * reads the clock. */
void dts_wall_shift(int64_t ns);

/* Starts the timer thread.  Owned: destroy it. */
dts_timers *dts_timers_create(void);
/* Stops the thread; pending timers are cancelled (messages freed, actor
 * references released). */
void dts_timers_destroy(dts_timers *t);

/* Sends `m` to `a` at `deadline_ns` (dts_now_ns clock; a past deadline fires
 * at once).  Takes ownership of `m` and a reference on `a` until the timer
 * fires or is cancelled.  Returns a handle for dts_timer_cancel.  Any
 * thread. */
uint64_t dts_timer_post(dts_timers *t, uint64_t deadline_ns, dts_actor *a, dts_msg *m);

/* Cancels a pending timer: true if it had not fired (its message is freed);
 * false if it already fired or was cancelled.  Any thread. */
bool dts_timer_cancel(dts_timers *t, uint64_t handle);

size_t dts_timers_pending(dts_timers *t);

/* A timer facility without a thread, for deterministic tests and fuzzing:
 * timers fire only when dts_timers_fire_due is called. */
dts_timers *dts_timers_create_manual(void);
/* Manual facilities only: sends, on the calling thread, every timer whose
 * deadline is <= now, in deadline order.  Returns how many fired. */
size_t dts_timers_fire_due(dts_timers *t, uint64_t now);

/* Cancels every pending timer that targets `a` (its messages are freed and
 * the references they held released): for an actor that goes away while
 * it still has timers far in the future.  O(pending).  Any thread. */
size_t dts_timers_cancel_actor(dts_timers *t, dts_actor *a);

#endif
