/* mailbox.c -- per-actor mailbox: an intrusive MPSC queue with a sentinel node.
 *
 * Any thread may push; only the worker running the actor pops.  The low bit
 * of `head` means "empty and unscheduled": the push that clears it returns
 * true, and that caller schedules the actor.  See docs/runtime.md.
 *
 * Memory order: a push exchanges `head` (acq_rel) and then publishes the
 * link with a release store of prev->next; pop reads `next` with acquire,
 * so the message body is visible to the consumer.  mark_empty's CAS is a
 * release that the next scheduling push acquires.
 */
#include "runtime/mailbox.h"

#include "runtime/alloc.h"

#include <string.h>

dts_msg *dts_msg_alloc(uint32_t kind, uint32_t size) {
  dts_msg *m = dts_pool_alloc(size);
  memset(m, 0, size);
  m->kind = kind;
  return m;
}

void dts_msg_free(dts_msg *m) {
  if (m == NULL) return;
  if (m->drop != NULL) m->drop(m);
  dts_pool_free(m);
}

void dts_mailbox_init(dts_mailbox *q) {
  dts_msg *sentinel = dts_msg_alloc(0, sizeof(dts_msg));
  atomic_init(&sentinel->next, NULL);
  q->tail = sentinel;
  atomic_init(&q->head, (uintptr_t)sentinel | 1);
}

void dts_mailbox_fini(dts_mailbox *q) {
  dts_msg *m = q->tail;
  /* The sentinel was already handled (or is the initial blank); free it bare. */
  dts_msg *next = atomic_load_explicit(&m->next, memory_order_acquire);
  m->drop = NULL;
  dts_msg_free(m);
  while (next != NULL) {
    m = next;
    next = atomic_load_explicit(&m->next, memory_order_acquire);
    dts_msg_free(m);
  }
  q->tail = NULL;
}

bool dts_mailbox_push(dts_mailbox *q, dts_msg *m) {
  atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
  uintptr_t prev = atomic_exchange_explicit(&q->head, (uintptr_t)m, memory_order_acq_rel);
  bool was_empty = (prev & 1) != 0;
  dts_msg *p = (dts_msg *)(prev & ~(uintptr_t)1);
  atomic_store_explicit(&p->next, m, memory_order_release);
  return was_empty;
}

dts_msg *dts_mailbox_pop(dts_mailbox *q) {
  dts_msg *tail = q->tail;
  dts_msg *next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (next == NULL) return NULL;
  q->tail = next;
  /* The old sentinel was handled by the previous pop's caller (or is blank):
   * its drop already ran if the receiver wanted it, so free it bare. */
  tail->drop = NULL;
  dts_msg_free(tail);
  return next;
}

bool dts_mailbox_mark_empty(dts_mailbox *q) {
  dts_msg *tail = q->tail;
  uintptr_t expect = (uintptr_t)tail;
  if (atomic_load_explicit(&q->head, memory_order_acquire) != expect) return false;
  return atomic_compare_exchange_strong_explicit(&q->head, &expect, expect | 1, memory_order_acq_rel,
                                                 memory_order_relaxed);
}

bool dts_mailbox_is_marked(dts_mailbox *q) {
  return (atomic_load_explicit(&q->head, memory_order_acquire) & 1) != 0;
}
