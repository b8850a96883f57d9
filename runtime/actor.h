/* actor.h -- an actor: state + behaviour + mailbox, run by a dts_sched.
 *
 * An actor runs on at most one thread at a time, so its state needs no
 * locks.  Embed a dts_actor as the first member of your actor struct.
 *
 * Lifetime: reference counted.  dts_actor_init gives the caller one
 * reference; being scheduled holds one more.  A sender must hold a
 * reference (its own or borrowed from someone who does) for the duration of
 * dts_send.  When the count reaches zero the actor's queued messages are
 * freed and `fini` is called, which frees the containing struct.
 *
 * Messages: dts_send hands the message over; the sender never touches it
 * again.  The behaviour borrows the message for the call; fields it wants
 * to keep it steals (and NULLs).  After the call the runtime runs m->drop
 * and recycles the message.
 */
#ifndef DTS_RUNTIME_ACTOR_H
#define DTS_RUNTIME_ACTOR_H

#include "runtime/mailbox.h"

#include <stdatomic.h>
#include <stdbool.h>

typedef struct dts_actor dts_actor;
typedef struct dts_sched dts_sched;

/* Handles one message; `m` is borrowed. */
typedef void (*dts_behaviour)(dts_actor *self, dts_msg *m);
/* Frees the struct that embeds the actor (refcount reached zero). */
typedef void (*dts_actor_fini_fn)(dts_actor *self);

#define DTS_ACTOR_BATCH 64 /* messages per turn before yielding */

struct dts_actor {
  /* private to actor.c/sched.c: embed, don't touch */
  dts_mailbox mb;
  dts_behaviour fn;          /* immutable after init */
  dts_actor_fini_fn fini;    /* immutable after init */
  void (*turn_end)(dts_actor *self); /* optional; set before the first send */
  dts_sched *sched;          /* immutable after init */
  atomic_int refs;           /* any thread */
  atomic_int running;        /* any thread: 0 idle, 1 in a turn (checked) */
  atomic_uint handoff;       /* sched: release on enqueue, acquire on dequeue */
  bool stopped;              /* the running thread only */
  dts_actor *overflow_next;  /* sched overflow list only, under its lock */
};

/* Initialises an unscheduled actor with one reference (the caller's). */
void dts_actor_init(dts_actor *a, dts_sched *s, dts_behaviour fn, dts_actor_fini_fn fini);

/* Keeps a freshly initialised actor from running: messages sent to it
 * queue up (nobody schedules it) until dts_actor_open.  For an actor whose
 * owner still builds its state on another thread after handing its address
 * out (the hub loads from disk while the timers it arms may fire).  Call
 * before anything can send to the actor. */
void dts_actor_hold(dts_actor *a);
/* Ends dts_actor_hold: schedules the actor with what queued meanwhile.
 * Everything the caller wrote before is visible to the actor's turns. */
void dts_actor_open(dts_actor *a);
/* Optional: called at the end of every turn that handled at least one
 * message, on the running thread -- where an actor flushes work it batched
 * over the turn's messages (the hub submits one commit per turn). */
void dts_actor_set_turn_end(dts_actor *a, void (*fn)(dts_actor *self));

void dts_actor_ref(dts_actor *a);
void dts_actor_unref(dts_actor *a);

/* Hands `m` to `to` and schedules it if it was idle.  Any thread. */
void dts_send(dts_actor *to, dts_msg *m);

/* From the actor's own behaviour: every later message is dropped unread.
 * Does not release any reference. */
void dts_actor_stop(dts_actor *self);

/* Scheduler only: runs one turn of at most DTS_ACTOR_BATCH messages.
 * Returns true if the actor must stay scheduled (more work, or a push is
 * under way); false if it went idle and released its scheduled reference
 * (the actor may already be freed). */
bool dts_actor_run(dts_actor *a);

/* Test hook: turns that found the actor already running (must stay 0). */
long dts_actor_overlaps(void);

#endif
