/* mailbox.h -- per-actor mailbox: an unbounded intrusive MPSC queue.
 *
 * Any thread may push; only the thread running the actor pops.  The low bit
 * of `head` means "empty and not scheduled".  The push that clears it
 * returns true, and that caller (alone) schedules the actor, so an actor is
 * never scheduled twice and no wake-up is lost.  See docs/runtime.md.
 *
 * Messages are intrusive: every message starts with a dts_msg.  The queue
 * keeps its last popped message as the sentinel node, so a popped message stays
 * owned by the mailbox; dts_mailbox_pop frees the previous one.
 */
#ifndef DTS_RUNTIME_MAILBOX_H
#define DTS_RUNTIME_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct dts_msg dts_msg;

/* Called when a message is freed, to release what it still points to. */
typedef void (*dts_msg_drop_fn)(dts_msg *m);

struct dts_msg {
  _Atomic(dts_msg *) next; /* private to mailbox.c */
  dts_msg_drop_fn drop;    /* may be NULL */
  uint32_t kind;           /* the receiver's message kind */
  uint32_t flags;          /* free for the receiver's use */
};

/* Allocates a zeroed message of `size` bytes (>= sizeof(dts_msg)) from the
 * message pool.  Owned by the caller until sent. */
dts_msg *dts_msg_alloc(uint32_t kind, uint32_t size);
/* Runs m->drop (if set) and returns m to the pool. */
void dts_msg_free(dts_msg *m);

typedef struct dts_mailbox {
  /* private to mailbox.c: embed, don't touch.  `head` sits 64 bytes away
   * from everything else, so producers' exchanges never invalidate the
   * cache line of the consumer's fields (the actor's state) -- without
   * needing aligned allocation of the embedding struct. */
  dts_msg *tail;            /* consumer only: the sentinel */
  char pad_before[56];
  _Atomic(uintptr_t) head;  /* any thread: producers exchange it */
  char pad_after[56];
} dts_mailbox;

/* Starts empty and unscheduled. */
void dts_mailbox_init(dts_mailbox *q);
/* Frees every message still queued, and the sentinel.  No concurrent push. */
void dts_mailbox_fini(dts_mailbox *q);

/* Hands `m` to the queue.  Returns true when the mailbox was empty and
 * unscheduled: the caller must then schedule the owner. */
bool dts_mailbox_push(dts_mailbox *q, dts_msg *m);

/* Consumer only.  Returns the next message (borrowed: valid until the next
 * pop or fini), or NULL if none is visible yet. */
dts_msg *dts_mailbox_pop(dts_mailbox *q);

/* Consumer only.  Tries to mark the queue empty and unscheduled; returns
 * false if a message is present or a push is under way (the caller keeps
 * the actor scheduled). */
bool dts_mailbox_mark_empty(dts_mailbox *q);

/* Consumer only: true while the empty bit is set (no push since the last
 * successful mark_empty). */
bool dts_mailbox_is_marked(dts_mailbox *q);

#endif
