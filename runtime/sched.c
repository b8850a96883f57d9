#define _GNU_SOURCE /* pthread_setname_np */
/* sched.c -- work-stealing scheduler over ck_ring.  See sched.h and
 * docs/runtime.md.
 *
 * Queues, by who may touch them:
 *   worker ring  (ck_ring SPMC)  enqueue: owner only; dequeue: anyone
 *   inject ring  (ck_ring SPMC)  enqueue: any thread, under inject_mu;
 *                                dequeue: any worker, lock-free
 *   overflow     (list + mutex)  any thread, under overflow_mu
 *
 * Parking without lost wake-ups (a Dekker handshake on `parked`): a worker
 * increments `parked` (seq_cst) and then re-checks every queue under
 * park_mu before waiting; a producer enqueues, issues a seq_cst fence and
 * then reads `parked`.  Either the worker's re-check sees the new item or
 * the producer sees the parked worker and signals it under park_mu (which
 * the worker holds until it is inside pthread_cond_wait).
 *
 * Why the inject ring's producers take a mutex: ck's multi-producer enqueue
 * makes each producer wait, spinning, for every earlier one to publish its
 * slot.  A producer preempted between its claim and its publish then holds
 * every other producer spinning for its whole time slice; with more
 * threads than cores (completion-queue threads, workers, the timer) that
 * became a convoy in which dtsd made almost no progress.  Under the mutex
 * a waiting producer sleeps instead, and the one-producer enqueue does not
 * wait at all.  Consumers stay lock-free.
 */
#include "runtime/sched.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <ck_ring.h>
#include <pthread.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOCAL_RING 4096   /* per-worker ring slots (power of two) */
#define INJECT_RING 65536 /* shared inject ring slots (power of two) */
#define INJECT_EVERY 61   /* a busy worker still looks at shared queues */
#define SPIN_ROUNDS 64    /* steal attempts before parking */
#define OWE_TURNS 16      /* turns a thread runs before it pays what it owes */

typedef struct worker {
  /* the owner's hot fields first; thieves only touch `ring` through ck */
  ck_ring_t ring;
  ck_ring_buffer_t *buf;
  dts_sched *sched;
  int index;
  uint64_t tick;
  unsigned rng;
  pthread_t thread;
  /* counters: written by the owner, read racily by stats (atomics) */
  _Atomic uint64_t turns, steals, parks;
  char pad[64];
} worker;

struct dts_sched {
  int nworkers; /* 0: manual, turns run by dts_sched_run_manual */
  worker *workers;
  ck_ring_t inject;
  ck_ring_buffer_t *inject_buf;
  pthread_mutex_t inject_mu; /* one producer at a time (the file comment) */

  pthread_mutex_t overflow_mu;
  dts_actor *overflow_head, *overflow_tail; /* under overflow_mu */
  _Alignas(64) atomic_long overflow_count;  /* any thread */
  _Atomic uint64_t spills;

  pthread_mutex_t park_mu;
  pthread_cond_t park_cv;
  _Alignas(64) atomic_int parked; /* any thread: workers inside park() */
  atomic_int stopping;            /* any thread */
};

static _Thread_local worker *current;

/* What the running thread owes (dts_sched_owe): at most one creditor. */
static _Thread_local struct {
  void (*fn)(void *);
  void *arg;
  int turns; /* run since the debt began */
  bool able; /* this thread runs turns and pays: a worker, or inside run_manual */
} debt;

bool dts_sched_owe(void (*fn)(void *), void *arg) {
  if (!debt.able) return false;
  if (debt.fn != NULL && (debt.fn != fn || debt.arg != arg)) {
    void (*f)(void *) = debt.fn;
    debt.fn = NULL;
    f(debt.arg); /* a second creditor: the first is paid at once */
  }
  if (debt.fn == NULL) debt.turns = 0;
  debt.fn = fn;
  debt.arg = arg;
  return true;
}

/* Pays what the thread owes.  Paying runs no turn, so it cannot owe again
 * meanwhile. */
static void pay(void) {
  void (*f)(void *) = debt.fn;
  if (f == NULL) return;
  debt.fn = NULL;
  f(debt.arg);
}

/* After a turn: pays once the debt has waited OWE_TURNS turns. */
static void turn_ran(void) {
  if (debt.fn != NULL && ++debt.turns >= OWE_TURNS) pay();
}

/* ------------------------------------------------------------------------ */
/* queues                                                                   */

static void overflow_push(dts_sched *s, dts_actor *a) {
  pthread_mutex_lock(&s->overflow_mu);
  a->overflow_next = NULL;
  if (s->overflow_tail != NULL) s->overflow_tail->overflow_next = a;
  else s->overflow_head = a;
  s->overflow_tail = a;
  atomic_fetch_add(&s->overflow_count, 1);
  pthread_mutex_unlock(&s->overflow_mu);
  atomic_fetch_add_explicit(&s->spills, 1, memory_order_relaxed);
}

static void inject_push(dts_sched *s, dts_actor *a) {
  pthread_mutex_lock(&s->inject_mu);
  bool ok = ck_ring_enqueue_spmc(&s->inject, s->inject_buf, a);
  pthread_mutex_unlock(&s->inject_mu);
  if (!ok) overflow_push(s, a);
}

static dts_actor *overflow_pop(dts_sched *s) {
  if (atomic_load_explicit(&s->overflow_count, memory_order_relaxed) == 0) return NULL;
  pthread_mutex_lock(&s->overflow_mu);
  dts_actor *a = s->overflow_head;
  if (a != NULL) {
    s->overflow_head = a->overflow_next;
    if (s->overflow_head == NULL) s->overflow_tail = NULL;
    atomic_fetch_sub(&s->overflow_count, 1);
  }
  pthread_mutex_unlock(&s->overflow_mu);
  return a;
}

static dts_actor *inject_pop(dts_sched *s) {
  dts_actor *a;
  if (ck_ring_trydequeue_mpmc(&s->inject, s->inject_buf, &a)) return a;
  return overflow_pop(s);
}

static bool any_work(dts_sched *s) {
  if (ck_ring_size(&s->inject) > 0) return true;
  if (atomic_load(&s->overflow_count) > 0) return true;
  for (int i = 0; i < s->nworkers; i++)
    if (ck_ring_size(&s->workers[i].ring) > 0) return true;
  return false;
}

static void wake_one(dts_sched *s) {
#if defined(__SANITIZE_THREAD__)
  /* TSan does not model fences; a seq_cst RMW on `parked` gives the same
   * guarantee (it is ordered with the worker's increment) at the cost of a
   * shared cache line, which only the TSan build pays. */
  if (atomic_fetch_add(&s->parked, 0) == 0) return;
#else
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&s->parked, memory_order_relaxed) == 0) return;
#endif
  pthread_mutex_lock(&s->park_mu);
  pthread_cond_signal(&s->park_cv);
  pthread_mutex_unlock(&s->park_mu);
}

void dts_sched_add(dts_sched *s, dts_actor *a) {
  worker *w = current;
  /* ck rings order their slots with fences the C11 model (and TSan) cannot
   * see; this release pairs with the acquire in handed_over() so that all the
   * enqueuer wrote before the hand-off is formally visible to the dequeuer.
   * On x86 both are plain moves. */
  atomic_store_explicit(&a->handoff, 1, memory_order_release);
  if (w != NULL && w->sched == s) {
    if (!ck_ring_enqueue_spmc(&w->ring, w->buf, a)) inject_push(s, a);
  } else {
    inject_push(s, a);
  }
  wake_one(s);
}

/* ------------------------------------------------------------------------ */
/* workers                                                                  */

static dts_actor *steal(worker *w) {
  dts_sched *s = w->sched;
  int n = s->nworkers;
  int start = (int)(rand_r(&w->rng) % (unsigned)n);
  for (int k = 0; k < n; k++) {
    worker *v = &s->workers[(start + k) % n];
    if (v == w) continue;
    dts_actor *a;
    if (ck_ring_trydequeue_spmc(&v->ring, v->buf, &a)) {
      atomic_fetch_add_explicit(&w->steals, 1, memory_order_relaxed);
      return a;
    }
  }
  return NULL;
}

static dts_actor *find_work(worker *w) {
  dts_sched *s = w->sched;
  dts_actor *a;
  if (++w->tick % INJECT_EVERY == 0 && (a = inject_pop(s)) != NULL) return a;
  if (ck_ring_trydequeue_spmc(&w->ring, w->buf, &a)) return a;
  if ((a = inject_pop(s)) != NULL) return a;
  return steal(w);
}

static void park(worker *w) {
  dts_sched *s = w->sched;
  pthread_mutex_lock(&s->park_mu);
  atomic_fetch_add(&s->parked, 1); /* seq_cst: see the file comment */
  if (!atomic_load(&s->stopping) && !any_work(s)) {
    atomic_fetch_add_explicit(&w->parks, 1, memory_order_relaxed);
    pthread_cond_wait(&s->park_cv, &s->park_mu);
  }
  atomic_fetch_sub(&s->parked, 1);
  pthread_mutex_unlock(&s->park_mu);
}

static dts_actor *handed_over(dts_actor *a) {
  if (a != NULL) (void)atomic_load_explicit(&a->handoff, memory_order_acquire);
  return a;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  dts_sched *s = w->sched;
  current = w;
  char name[16]; /* `top -H` tells the threads apart */
  snprintf(name, sizeof(name), "worker-%d", w->index);
  pthread_setname_np(pthread_self(), name);
  int idle = 0;
  debt.able = true;
  while (!atomic_load_explicit(&s->stopping, memory_order_acquire)) {
    dts_actor *a = handed_over(find_work(w));
    if (a == NULL) {
      if (debt.fn != NULL) { /* nothing to do: what waited on the debt can go */
        pay();
        continue;
      }
      if (++idle < SPIN_ROUNDS) {
        if (idle % 8 == 0) sched_yield();
        continue;
      }
      park(w);
      idle = 0;
      continue;
    }
    idle = 0;
    atomic_fetch_add_explicit(&w->turns, 1, memory_order_relaxed);
    if (dts_actor_run(a)) dts_sched_add(s, a);
    turn_ran();
  }
  pay();
  debt.able = false;
  current = NULL;
  dts_pool_thread_flush();
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* lifecycle                                                                */

static dts_sched *create(int workers) {
  dts_sched *s = dts_calloc(1, sizeof(*s));
  s->nworkers = workers;
  s->inject_buf = dts_calloc(INJECT_RING, sizeof(ck_ring_buffer_t));
  ck_ring_init(&s->inject, INJECT_RING);
  pthread_mutex_init(&s->overflow_mu, NULL);
  pthread_mutex_init(&s->inject_mu, NULL);
  pthread_mutex_init(&s->park_mu, NULL);
  pthread_cond_init(&s->park_cv, NULL);
  s->workers = dts_calloc((size_t)workers, sizeof(worker));
  for (int i = 0; i < workers; i++) {
    worker *w = &s->workers[i];
    w->buf = dts_calloc(LOCAL_RING, sizeof(ck_ring_buffer_t));
    ck_ring_init(&w->ring, LOCAL_RING);
    w->sched = s;
    w->index = i;
    w->rng = 0x9e3779b9u * (unsigned)(i + 1);
  }
  return s;
}

dts_sched *dts_sched_create(int workers) {
  if (workers <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    workers = n > 0 ? (int)n : 1;
  }
  dts_sched *s = create(workers);
  for (int i = 0; i < workers; i++) {
    if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
      DTS_ERROR("sched", "cannot start worker thread %d", i);
      abort();
    }
  }
  return s;
}

dts_sched *dts_sched_create_manual(void) { return create(0); }

size_t dts_sched_run_manual(dts_sched *s, size_t max_turns) {
  DTS_ASSERT(s->nworkers == 0);
  size_t n = 0;
  debt.able = true;
  for (;;) {
    dts_actor *a = n < max_turns ? handed_over(inject_pop(s)) : NULL;
    if (a == NULL) { /* out of work or of turns: pay, and go on if that made work */
      if (debt.fn == NULL) break;
      pay();
      continue;
    }
    n++;
    if (dts_actor_run(a)) dts_sched_add(s, a);
    turn_ran();
  }
  debt.able = false;
  return n;
}

void dts_sched_destroy(dts_sched *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->park_mu);
  atomic_store(&s->stopping, 1);
  pthread_cond_broadcast(&s->park_cv);
  pthread_mutex_unlock(&s->park_mu);
  for (int i = 0; i < s->nworkers; i++) pthread_join(s->workers[i].thread, NULL);

  /* Every worker has stopped: release what is still queued. */
  dts_actor *a;
  for (int i = 0; i < s->nworkers; i++) {
    worker *w = &s->workers[i];
    while (ck_ring_trydequeue_spmc(&w->ring, w->buf, &a)) dts_actor_unref(handed_over(a));
  }
  while ((a = handed_over(inject_pop(s))) != NULL) dts_actor_unref(a);

  for (int i = 0; i < s->nworkers; i++) dts_free(s->workers[i].buf);
  dts_free(s->workers);
  dts_free(s->inject_buf);
  pthread_mutex_destroy(&s->overflow_mu);
  pthread_mutex_destroy(&s->inject_mu);
  pthread_mutex_destroy(&s->park_mu);
  pthread_cond_destroy(&s->park_cv);
  dts_free(s);
}

int dts_sched_parked(dts_sched *s) { return atomic_load(&s->parked); }

int dts_sched_workers(const dts_sched *s) { return s->nworkers; }

int dts_sched_current_worker(const dts_sched *s) {
  return current != NULL && current->sched == s ? current->index : -1;
}

void dts_sched_get_stats(dts_sched *s, dts_sched_stats *out) {
  memset(out, 0, sizeof(*out));
  for (int i = 0; i < s->nworkers; i++) {
    out->turns += atomic_load(&s->workers[i].turns);
    out->steals += atomic_load(&s->workers[i].steals);
    out->parks += atomic_load(&s->workers[i].parks);
  }
  out->spills = atomic_load(&s->spills);
}
