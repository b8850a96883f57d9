/* sched.h -- the work-stealing scheduler that runs actors.
 *
 * N worker threads.  Each owns a bounded ck_ring run queue that only it
 * feeds (SPMC: it and thieves dequeue).  Threads that are not workers of
 * this scheduler push to one inject ring, one at a time under a mutex
 * (consumers do not lock).  A full ring spills to an overflow list under a
 * mutex: nothing is dropped and nobody spins.  Idle
 * workers steal with trydequeue, then park on a condition variable; every
 * schedule that sees a parked worker wakes one.  See docs/runtime.md.
 */
#ifndef DTS_RUNTIME_SCHED_H
#define DTS_RUNTIME_SCHED_H

#include "runtime/actor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dts_sched_stats {
  uint64_t turns;   /* actor turns run */
  uint64_t steals;  /* actors taken from another worker's ring */
  uint64_t parks;   /* times a worker went to sleep */
  uint64_t spills;  /* schedules that went to the overflow list */
} dts_sched_stats;

/* Starts `workers` threads (<= 0: one per online CPU).  Owned: destroy it. */
dts_sched *dts_sched_create(int workers);

/* A scheduler without threads, for deterministic tests and fuzzing: sends
 * queue actors (any thread may send), and dts_sched_run_manual runs their
 * turns on the calling thread.  Destroy it like any other. */
dts_sched *dts_sched_create_manual(void);

/* Manual schedulers only: runs queued actor turns, in queue order, on the
 * calling thread until none is queued or `max_turns` ran.  Returns the
 * number of turns run.  One thread at a time. */
size_t dts_sched_run_manual(dts_sched *s, size_t max_turns);

/* Stops every worker after its current turn, joins them, then releases the
 * scheduled reference of every actor still queued.  Actors whose last
 * reference that was are freed with their messages; the rest are freed when
 * their owners unref them.  No dts_send to this scheduler's actors may
 * begin after this call starts. */
void dts_sched_destroy(dts_sched *s);

int dts_sched_workers(const dts_sched *s);

/* Queues a scheduled actor (the caller transfers the scheduled reference).
 * Called by dts_send; any thread. */
void dts_sched_add(dts_sched *s, dts_actor *a);

/* Sums the per-worker counters (approximate while running). */
void dts_sched_get_stats(dts_sched *s, dts_sched_stats *out);

/* Workers currently parked or about to park (test and metrics hook). */
int dts_sched_parked(dts_sched *s);

/* A debt: work that many turns share and that may wait a little, such as
 * the store's deferred commits.  From inside a turn: fn(arg) will run on
 * this thread, outside any turn, once OWE_TURNS (sched.c) more turns ran
 * or the thread finds no work, and in any case before it sleeps or its
 * dts_sched_run_manual returns.  One creditor at a time: owing a second
 * pays the first at once; owing the same again adds nothing.  Returns
 * false on a thread that runs no turns (do the work now instead). */
bool dts_sched_owe(void (*fn)(void *), void *arg);

/* Index of the calling thread among s's workers, or -1. */
int dts_sched_current_worker(const dts_sched *s);

#endif
