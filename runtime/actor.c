/* actor.c -- actor turns, sends and reference counting.  See actor.h.
 *
 * Happens-before between turns on different threads comes from `running`:
 * a turn starts with an acquire RMW on it and ends with a release RMW, so
 * whatever the previous turn wrote is visible to the next one whichever
 * queue (ck rings included) carried the actor between threads.
 */
#include "runtime/actor.h"

#include "runtime/log.h"
#include "runtime/sched.h"

#include <stddef.h>
#include <stdint.h>

static atomic_long overlaps; /* any thread; test hook */

void dts_actor_init(dts_actor *a, dts_sched *s, dts_behaviour fn, dts_actor_fini_fn fini) {
  dts_mailbox_init(&a->mb);
  a->fn = fn;
  a->fini = fini;
  a->sched = s;
  atomic_init(&a->refs, 1);
  atomic_init(&a->running, 0);
  atomic_init(&a->handoff, 0);
  a->stopped = false;
  a->overflow_next = NULL;
  a->turn_end = NULL;
}

void dts_actor_set_turn_end(dts_actor *a, void (*fn)(dts_actor *self)) { a->turn_end = fn; }

/* The hold is a message of this kind at the head of the mailbox: while it is
 * there every push finds the mailbox non-empty, so no sender schedules. */
#define GATE_KIND UINT32_MAX

void dts_actor_hold(dts_actor *a) {
  bool first = dts_mailbox_push(&a->mb, dts_msg_alloc(GATE_KIND, sizeof(dts_msg)));
  DTS_ASSERT(first && "dts_actor_hold on an actor that already has messages");
  (void)first;
}

void dts_actor_open(dts_actor *a) {
  dts_actor_ref(a); /* the scheduled reference */
  dts_sched_add(a->sched, a);
}

void dts_actor_ref(dts_actor *a) { atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed); }

void dts_actor_unref(dts_actor *a) {
  if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1) return;
  dts_mailbox_fini(&a->mb);
  if (a->fini != NULL) a->fini(a);
}

void dts_send(dts_actor *to, dts_msg *m) {
  if (dts_mailbox_push(&to->mb, m)) {
    dts_actor_ref(to); /* the scheduled reference */
    dts_sched_add(to->sched, to);
  }
}

void dts_actor_stop(dts_actor *self) { self->stopped = true; }

bool dts_actor_run(dts_actor *a) {
  if (atomic_fetch_add_explicit(&a->running, 1, memory_order_acquire) != 0) {
    atomic_fetch_add(&overlaps, 1);
    DTS_ASSERT(!"actor scheduled on two threads");
  }
  int n = 0;
  dts_msg *m;
  while (n < DTS_ACTOR_BATCH && (m = dts_mailbox_pop(&a->mb)) != NULL) {
    if (!a->stopped && m->kind != GATE_KIND) a->fn(a, m);
    if (m->drop != NULL) {
      m->drop(m);
      m->drop = NULL; /* m stays as the sentinel; freed bare on the next pop */
    }
    n++;
  }
  if (n > 0 && a->turn_end != NULL && !a->stopped) a->turn_end(a);
  atomic_fetch_sub_explicit(&a->running, 1, memory_order_release);
  if (n == DTS_ACTOR_BATCH || !dts_mailbox_mark_empty(&a->mb)) return true;
  dts_actor_unref(a); /* idle: drop the scheduled reference */
  return false;
}

long dts_actor_overlaps(void) { return atomic_load(&overlaps); }
