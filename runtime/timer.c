#define _GNU_SOURCE /* pthread_setname_np */
/* timer.c -- see timer.h.
 *
 * Slots hold the timers; the heap holds slot indices and each slot knows its
 * heap position, so cancel can remove from the middle.  A handle is
 * (generation << 32 | slot); a slot's generation changes whenever it is
 * freed, which makes stale handles harmless.  Everything below is under
 * `mu`; fired messages are sent after the lock is dropped.
 */
#include "runtime/timer.h"

#include "runtime/alloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define FIRE_BATCH 1024

typedef struct slot {
  uint64_t deadline;
  uint64_t seq;
  dts_actor *actor; /* NULL when the slot is free */
  dts_msg *msg;
  uint32_t pos;  /* index in heap while pending */
  uint32_t gen;
  uint32_t next_free;
} slot;

struct dts_timers {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC */
  pthread_t thread;
  slot *slots;
  uint32_t nslots, cap;
  uint32_t free_head; /* UINT32_MAX: none */
  uint32_t *heap;
  size_t nheap;
  uint64_t seq;
  bool stop;
  bool manual; /* no thread: dts_timers_fire_due fires */
};

uint64_t dts_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t wall_shift; /* written once before the threads start */

void dts_wall_shift(int64_t ns) { wall_shift = ns; }

uint64_t dts_wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + (uint64_t)wall_shift;
}

/* ------------------------------------------------------------------------ */
/* heap                                                                     */

static bool before(const dts_timers *t, uint32_t a, uint32_t b) {
  const slot *x = &t->slots[a], *y = &t->slots[b];
  return x->deadline < y->deadline || (x->deadline == y->deadline && x->seq < y->seq);
}

static void place(dts_timers *t, size_t i, uint32_t s) {
  t->heap[i] = s;
  t->slots[s].pos = (uint32_t)i;
}

static void sift_up(dts_timers *t, size_t i) {
  uint32_t s = t->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(t, s, t->heap[p])) break;
    place(t, i, t->heap[p]);
    i = p;
  }
  place(t, i, s);
}

static void sift_down(dts_timers *t, size_t i) {
  uint32_t s = t->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= t->nheap) break;
    if (c + 1 < t->nheap && before(t, t->heap[c + 1], t->heap[c])) c++;
    if (!before(t, t->heap[c], s)) break;
    place(t, i, t->heap[c]);
    i = c;
  }
  place(t, i, s);
}

static void heap_remove(dts_timers *t, size_t i) {
  t->nheap--;
  if (i == t->nheap) return;
  uint32_t moved = t->heap[t->nheap];
  place(t, i, moved);
  sift_down(t, i);
  sift_up(t, t->slots[moved].pos);
}

static void slot_free(dts_timers *t, uint32_t s) {
  t->slots[s].actor = NULL;
  t->slots[s].msg = NULL;
  t->slots[s].gen++;
  t->slots[s].next_free = t->free_head;
  t->free_head = s;
}

/* ------------------------------------------------------------------------ */
/* thread                                                                   */

static void *timer_main(void *arg) {
  dts_timers *t = arg;
  pthread_setname_np(pthread_self(), "timer");
  dts_actor *fa[FIRE_BATCH];
  dts_msg *fm[FIRE_BATCH];
  pthread_mutex_lock(&t->mu);
  while (!t->stop) {
    if (t->nheap == 0) {
      pthread_cond_wait(&t->cv, &t->mu);
      continue;
    }
    uint64_t now = dts_now_ns();
    int n = 0;
    while (n < FIRE_BATCH && t->nheap > 0 && t->slots[t->heap[0]].deadline <= now) {
      uint32_t s = t->heap[0];
      fa[n] = t->slots[s].actor;
      fm[n] = t->slots[s].msg;
      n++;
      heap_remove(t, 0);
      slot_free(t, s);
    }
    if (n > 0) {
      pthread_mutex_unlock(&t->mu);
      for (int i = 0; i < n; i++) {
        dts_send(fa[i], fm[i]);
        dts_actor_unref(fa[i]);
      }
      pthread_mutex_lock(&t->mu);
      continue;
    }
    uint64_t d = t->slots[t->heap[0]].deadline;
    struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
    pthread_cond_timedwait(&t->cv, &t->mu, &ts);
  }
  pthread_mutex_unlock(&t->mu);
  dts_pool_thread_flush();
  return NULL;
}

static dts_timers *create(bool manual) {
  dts_timers *t = dts_calloc(1, sizeof(*t));
  pthread_mutex_init(&t->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->cv, &ca);
  pthread_condattr_destroy(&ca);
  t->free_head = UINT32_MAX;
  t->manual = manual;
  if (!manual && pthread_create(&t->thread, NULL, timer_main, t) != 0) abort();
  return t;
}

dts_timers *dts_timers_create(void) { return create(false); }
dts_timers *dts_timers_create_manual(void) { return create(true); }

size_t dts_timers_fire_due(dts_timers *t, uint64_t now) {
  size_t fired = 0;
  for (;;) {
    pthread_mutex_lock(&t->mu);
    if (t->nheap == 0 || t->slots[t->heap[0]].deadline > now) {
      pthread_mutex_unlock(&t->mu);
      return fired;
    }
    uint32_t s = t->heap[0];
    dts_actor *a = t->slots[s].actor;
    dts_msg *m = t->slots[s].msg;
    heap_remove(t, 0);
    slot_free(t, s);
    pthread_mutex_unlock(&t->mu);
    dts_send(a, m);
    dts_actor_unref(a);
    fired++;
  }
}

size_t dts_timers_cancel_actor(dts_timers *t, dts_actor *a) {
  pthread_mutex_lock(&t->mu);
  size_t n = 0;
  uint32_t *hit = NULL;
  for (size_t i = 0; i < t->nheap; i++)
    if (t->slots[t->heap[i]].actor == a) n++;
  if (n > 0) {
    hit = dts_malloc(n * sizeof(*hit));
    size_t k = 0;
    for (size_t i = 0; i < t->nheap; i++)
      if (t->slots[t->heap[i]].actor == a) hit[k++] = t->heap[i];
  }
  dts_msg **msgs = n > 0 ? dts_malloc(n * sizeof(*msgs)) : NULL;
  for (size_t k = 0; k < n; k++) { /* slots know their heap position */
    msgs[k] = t->slots[hit[k]].msg;
    heap_remove(t, t->slots[hit[k]].pos);
    slot_free(t, hit[k]);
  }
  pthread_mutex_unlock(&t->mu);
  for (size_t k = 0; k < n; k++) {
    dts_msg_free(msgs[k]);
    dts_actor_unref(a); /* the reference its timer held */
  }
  dts_free(hit);
  dts_free(msgs);
  return n;
}

void dts_timers_destroy(dts_timers *t) {
  if (t == NULL) return;
  pthread_mutex_lock(&t->mu);
  t->stop = true;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  if (!t->manual) pthread_join(t->thread, NULL);
  for (size_t i = 0; i < t->nheap; i++) {
    slot *s = &t->slots[t->heap[i]];
    dts_msg_free(s->msg);
    dts_actor_unref(s->actor);
  }
  dts_free(t->slots);
  dts_free(t->heap);
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
  dts_free(t);
}

uint64_t dts_timer_post(dts_timers *t, uint64_t deadline_ns, dts_actor *a, dts_msg *m) {
  dts_actor_ref(a);
  pthread_mutex_lock(&t->mu);
  uint32_t s;
  if (t->free_head != UINT32_MAX) {
    s = t->free_head;
    t->free_head = t->slots[s].next_free;
  } else {
    if (t->nslots == t->cap) {
      t->cap = t->cap ? t->cap * 2 : 1024;
      t->slots = dts_realloc(t->slots, t->cap * sizeof(slot));
      t->heap = dts_realloc(t->heap, t->cap * sizeof(uint32_t));
    }
    s = t->nslots++;
    t->slots[s].gen = 1;
  }
  slot *sl = &t->slots[s];
  sl->deadline = deadline_ns;
  sl->seq = t->seq++;
  sl->actor = a;
  sl->msg = m;
  t->heap[t->nheap] = s;
  sl->pos = (uint32_t)t->nheap;
  t->nheap++;
  sift_up(t, t->nheap - 1);
  if (t->heap[0] == s) pthread_cond_signal(&t->cv); /* new earliest deadline */
  uint64_t handle = (uint64_t)sl->gen << 32 | s;
  pthread_mutex_unlock(&t->mu);
  return handle;
}

bool dts_timer_cancel(dts_timers *t, uint64_t handle) {
  uint32_t s = (uint32_t)handle, gen = (uint32_t)(handle >> 32);
  pthread_mutex_lock(&t->mu);
  if (s >= t->nslots || t->slots[s].gen != gen || t->slots[s].actor == NULL) {
    pthread_mutex_unlock(&t->mu);
    return false;
  }
  dts_actor *a = t->slots[s].actor;
  dts_msg *m = t->slots[s].msg;
  heap_remove(t, t->slots[s].pos);
  slot_free(t, s);
  pthread_mutex_unlock(&t->mu);
  dts_msg_free(m);
  dts_actor_unref(a);
  return true;
}

size_t dts_timers_pending(dts_timers *t) {
  pthread_mutex_lock(&t->mu);
  size_t n = t->nheap;
  pthread_mutex_unlock(&t->mu);
  return n;
}
