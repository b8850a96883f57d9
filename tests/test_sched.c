/* test_sched.c -- actors on the work-stealing scheduler: exactly-once
 * delivery, per-sender order, never two threads in one actor, stealing,
 * parking and wake-up, stop, leak-free shutdown, and debts (dts_sched_owe). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "runtime/alloc.h"
#include "runtime/sched.h"
#include "tests/testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { K_DATA = 1, K_WORK, K_FAN };

typedef struct tactor {
  dts_actor base;
  int index;
  atomic_int inside;   /* >0 while a behaviour runs: must never exceed 1 */
  int last_seq[8];     /* per external producer: order check */
  long received;
} tactor;

typedef struct tmsg {
  dts_msg base;
  int producer; /* 0..7 external thread, -1 from an actor */
  int seq;
  int ttl;
  long id;
} tmsg;

static atomic_long delivered, finis, violations, order_errors, dup_errors;
static atomic_uchar *seen; /* one flag per message id */
static tactor **actors;
static int nactors;
static unsigned spin_work;

static void reset_counters(void) {
  atomic_store(&delivered, 0);
  atomic_store(&finis, 0);
  atomic_store(&violations, 0);
  atomic_store(&order_errors, 0);
  atomic_store(&dup_errors, 0);
}

static void tactor_fini(dts_actor *a) {
  atomic_fetch_add(&finis, 1);
  dts_free(a);
}

static atomic_long next_id;

static void behave(dts_actor *self, dts_msg *m) {
  tactor *a = (tactor *)self;
  if (atomic_fetch_add(&a->inside, 1) != 0) atomic_fetch_add(&violations, 1);
  tmsg *t = (tmsg *)m;
  if (seen != NULL && atomic_exchange(&seen[t->id], 1) != 0) atomic_fetch_add(&dup_errors, 1);
  if (t->producer >= 0) {
    if (t->seq <= a->last_seq[t->producer]) atomic_fetch_add(&order_errors, 1);
    a->last_seq[t->producer] = t->seq;
  }
  a->received++;
  volatile unsigned x = 0; /* simulated work */
  for (unsigned i = 0; i < spin_work; i++) x += i;
  if (t->ttl > 0) {
    tmsg *f = (tmsg *)dts_msg_alloc(K_DATA, sizeof(tmsg));
    f->producer = -1;
    f->ttl = t->ttl - 1;
    f->id = atomic_fetch_add(&next_id, 1);
    dts_send(&actors[(unsigned)(t->id * 2654435761u) % (unsigned)nactors]->base, &f->base);
  }
  atomic_fetch_sub(&a->inside, 1);
  atomic_fetch_add(&delivered, 1);
}

static void make_actors(dts_sched *s, int n) {
  nactors = n;
  actors = dts_calloc((size_t)n, sizeof(tactor *));
  for (int i = 0; i < n; i++) {
    tactor *a = dts_calloc(1, sizeof(tactor));
    dts_actor_init(&a->base, s, behave, tactor_fini);
    a->index = i;
    for (int p = 0; p < 8; p++) a->last_seq[p] = -1;
    actors[i] = a;
  }
}

static void drop_actors(void) {
  for (int i = 0; i < nactors; i++) dts_actor_unref(&actors[i]->base);
  dts_free(actors);
  actors = NULL;
}

/* ---- stress: 10,000 actors, 4 external producers, forwarding hops ---- */

#define STRESS_ACTORS 10000
#define STRESS_PRODUCERS 4
#define STRESS_PER_PRODUCER 50000
#define STRESS_TTL 2

static void *stress_producer(void *arg) {
  int p = (int)(intptr_t)arg;
  unsigned rng = (unsigned)p * 7919u + 1;
  for (int i = 0; i < STRESS_PER_PRODUCER; i++) {
    tmsg *m = (tmsg *)dts_msg_alloc(K_DATA, sizeof(tmsg));
    m->producer = p;
    m->seq = i;
    m->ttl = STRESS_TTL;
    m->id = atomic_fetch_add(&next_id, 1);
    dts_send(&actors[rand_r(&rng) % STRESS_ACTORS]->base, &m->base);
  }
  dts_pool_thread_flush();
  return NULL;
}

static void test_stress_every_message_once_in_order_never_concurrent(void **state) {
  (void)state;
  reset_counters();
  long total = (long)STRESS_PRODUCERS * STRESS_PER_PRODUCER * (STRESS_TTL + 1);
  seen = calloc((size_t)total, 1);
  atomic_store(&next_id, 0);
  spin_work = 0;
  dts_sched *s = dts_sched_create(4);
  make_actors(s, STRESS_ACTORS);
  pthread_t th[STRESS_PRODUCERS];
  for (int p = 0; p < STRESS_PRODUCERS; p++) pthread_create(&th[p], NULL, stress_producer, (void *)(intptr_t)p);
  for (int p = 0; p < STRESS_PRODUCERS; p++) pthread_join(th[p], NULL);
  assert_true(TU_WAIT_UNTIL(atomic_load(&delivered) == total, 60));
  assert_int_equal(atomic_load(&next_id), total);
  assert_int_equal(atomic_load(&violations), 0);
  assert_int_equal(atomic_load(&order_errors), 0);
  assert_int_equal(atomic_load(&dup_errors), 0);
  assert_int_equal(dts_actor_overlaps(), 0);
  long sum = 0;
  for (int i = 0; i < STRESS_ACTORS; i++) sum += actors[i]->received;
  assert_int_equal(sum, total);
  dts_sched_destroy(s);
  drop_actors();
  assert_int_equal(atomic_load(&finis), STRESS_ACTORS);
  free(seen);
  seen = NULL;
}

/* ---- skew: one actor fans out to 1,000; others must steal ---- */

static void fan_behave(dts_actor *self, dts_msg *m) {
  (void)self;
  tmsg *t = (tmsg *)m;
  for (int round = 0; round < t->seq; round++) {
    for (int i = 0; i < nactors; i++) {
      tmsg *w = (tmsg *)dts_msg_alloc(K_WORK, sizeof(tmsg));
      w->producer = -1;
      dts_send(&actors[i]->base, &w->base);
    }
  }
}

static void test_skewed_load_is_stolen(void **state) {
  (void)state;
  reset_counters();
  spin_work = 20000;
  dts_sched *s = dts_sched_create(2);
  make_actors(s, 1000);
  tactor *fan = dts_calloc(1, sizeof(tactor));
  dts_actor_init(&fan->base, s, fan_behave, tactor_fini);
  tmsg *go = (tmsg *)dts_msg_alloc(K_FAN, sizeof(tmsg));
  go->seq = 5; /* rounds */
  dts_send(&fan->base, &go->base);
  assert_true(TU_WAIT_UNTIL(atomic_load(&delivered) == 5000, 60));
  dts_sched_stats st;
  dts_sched_get_stats(s, &st);
  assert_true(st.steals > 0);
  assert_int_equal(atomic_load(&violations), 0);
  dts_sched_destroy(s);
  dts_actor_unref(&fan->base);
  drop_actors();
  spin_work = 0;
}

/* ---- bursts separated by idle periods: parking and wake-up ---- */

static void test_bursts_after_idle_are_delivered(void **state) {
  (void)state;
  reset_counters();
  dts_sched *s = dts_sched_create(2);
  make_actors(s, 100);
  long sent = 0;
  for (int burst = 0; burst < 20; burst++) {
    /* wait until every worker sleeps, so this burst must wake them */
    assert_true(TU_WAIT_UNTIL(dts_sched_parked(s) == 2, 10));
    for (int i = 0; i < 100 + burst; i++) {
      tmsg *m = (tmsg *)dts_msg_alloc(K_DATA, sizeof(tmsg));
      m->producer = -1;
      dts_send(&actors[i % 100]->base, &m->base);
      sent++;
    }
    assert_true(TU_WAIT_UNTIL(atomic_load(&delivered) == sent, 10));
  }
  dts_sched_stats st;
  dts_sched_get_stats(s, &st);
  assert_true(st.parks >= 19);
  dts_sched_destroy(s);
  drop_actors();
}

/* ---- stop: later messages are dropped unread ---- */

static atomic_int stop_handled, stop_dropped;

static void stop_drop(dts_msg *m) {
  (void)m;
  atomic_fetch_add(&stop_dropped, 1);
}

static void stopper(dts_actor *self, dts_msg *m) {
  atomic_fetch_add(&stop_handled, 1);
  if (m->kind == 99) dts_actor_stop(self);
}

static void test_stopped_actor_drops_later_messages(void **state) {
  (void)state;
  reset_counters();
  atomic_store(&stop_handled, 0);
  atomic_store(&stop_dropped, 0);
  dts_sched *s = dts_sched_create(1);
  tactor *a = dts_calloc(1, sizeof(tactor));
  dts_actor_init(&a->base, s, stopper, tactor_fini);
  dts_msg *m = dts_msg_alloc(99, sizeof(dts_msg));
  m->drop = stop_drop;
  dts_send(&a->base, m);
  for (int i = 0; i < 10; i++) {
    dts_msg *x = dts_msg_alloc(1, sizeof(dts_msg));
    x->drop = stop_drop;
    dts_send(&a->base, x);
  }
  assert_true(TU_WAIT_UNTIL(atomic_load(&stop_dropped) == 11, 10));
  assert_int_equal(atomic_load(&stop_handled), 1);
  dts_actor_unref(&a->base);
  assert_true(TU_WAIT_UNTIL(atomic_load(&finis) == 1, 10));
  dts_sched_destroy(s);
}

/* ---- the turn-end hook runs once per turn, after its messages ---- */

static atomic_int te_msgs, te_turns, te_max, te_ended; /* te_ended: messages whose turn ended */
static int te_in_turn; /* the actor's own: no atomics needed */

static void te_fn(dts_actor *self, dts_msg *m) {
  (void)self;
  (void)m;
  te_in_turn++;
  atomic_fetch_add(&te_msgs, 1);
}

static void te_end(dts_actor *self) {
  (void)self;
  assert_true(te_in_turn > 0 && te_in_turn <= DTS_ACTOR_BATCH);
  if (te_in_turn > atomic_load(&te_max)) atomic_store(&te_max, te_in_turn);
  atomic_fetch_add(&te_ended, te_in_turn);
  te_in_turn = 0;
  atomic_fetch_add(&te_turns, 1);
}

static void test_turn_end_runs_once_per_turn(void **state) {
  (void)state;
  reset_counters();
  dts_sched *s = dts_sched_create(2);
  tactor *a = dts_calloc(1, sizeof(tactor));
  dts_actor_init(&a->base, s, te_fn, tactor_fini);
  dts_actor_set_turn_end(&a->base, te_end);
  for (int i = 0; i < 1000; i++) dts_send(&a->base, dts_msg_alloc(1, sizeof(dts_msg)));
  assert_true(TU_WAIT_UNTIL(atomic_load(&te_msgs) == 1000, 10));
  assert_true(TU_WAIT_UNTIL(atomic_load(&te_ended) == 1000, 10)); /* every message's turn ended */
  assert_true(atomic_load(&te_turns) >= 1000 / DTS_ACTOR_BATCH);
  assert_true(atomic_load(&te_turns) <= 1000);
  dts_actor_unref(&a->base);
  assert_true(TU_WAIT_UNTIL(atomic_load(&finis) == 1, 10));
  dts_sched_destroy(s);
}

/* ---- a held actor runs nothing until opened, then sees the setup ---- */

static int held_setup; /* plain: written before open, read in turns */
static atomic_long held_bad;

static void held_fn(dts_actor *self, dts_msg *m) {
  (void)self;
  if (m->kind != K_DATA || held_setup != 42) atomic_fetch_add(&held_bad, 1);
  atomic_fetch_add(&delivered, 1);
}

static void *held_sender(void *arg) {
  for (int i = 0; i < 1000; i++) dts_send(arg, dts_msg_alloc(K_DATA, sizeof(tmsg)));
  dts_pool_thread_flush();
  return NULL;
}

static void test_held_actor_runs_nothing_until_opened(void **state) {
  (void)state;
  reset_counters();
  atomic_store(&held_bad, 0);
  held_setup = 0;
  dts_sched *s = dts_sched_create(2);
  tactor *a = dts_calloc(1, sizeof(tactor));
  dts_actor_init(&a->base, s, held_fn, tactor_fini);
  dts_actor_hold(&a->base);
  pthread_t t;
  pthread_create(&t, NULL, held_sender, &a->base); /* sends race with the setup below */
  held_setup = 42;
  pthread_join(t, NULL);
  dts_sched_stats st;
  dts_sched_get_stats(s, &st);
  assert_int_equal(st.turns, 0); /* no send scheduled it */
  assert_int_equal(atomic_load(&delivered), 0);
  dts_actor_open(&a->base);
  assert_true(TU_WAIT_UNTIL(atomic_load(&delivered) == 1000, 10));
  assert_int_equal(atomic_load(&held_bad), 0); /* the hold never reached the behaviour */
  dts_actor_unref(&a->base);
  assert_true(TU_WAIT_UNTIL(atomic_load(&finis) == 1, 10));
  dts_sched_destroy(s);
}

/* ---- shutdown with messages in flight frees everything ---- */

static void test_shutdown_with_messages_in_flight_leaks_nothing(void **state) {
  (void)state;
  reset_counters();
  long pool_before = dts_pool_outstanding();
  spin_work = 2000;
  dts_sched *s = dts_sched_create(2);
  make_actors(s, 500);
  for (int i = 0; i < 50000; i++) {
    tmsg *m = (tmsg *)dts_msg_alloc(K_DATA, sizeof(tmsg));
    m->producer = -1;
    dts_send(&actors[i % 500]->base, &m->base);
  }
  dts_sched_destroy(s); /* while most messages are still queued */
  assert_true(atomic_load(&delivered) < 50000);
  drop_actors();
  assert_int_equal(atomic_load(&finis), 500);
  dts_pool_thread_flush();
  assert_int_equal(dts_pool_outstanding(), pool_before);
  spin_work = 0;
}

/* ---- the inject ring overflows to the list without loss ---- */

static atomic_int gate_open;

static void gate_behave(dts_actor *self, dts_msg *m) {
  (void)self;
  (void)m;
  while (!atomic_load(&gate_open)) sched_yield(); /* holds the only worker */
}

static void test_inject_overflow_spills_and_delivers(void **state) {
  (void)state;
  reset_counters();
  atomic_store(&gate_open, 0);
  spin_work = 0;
  dts_sched *s = dts_sched_create(1);
  tactor *gate = dts_calloc(1, sizeof(tactor));
  dts_actor_init(&gate->base, s, gate_behave, tactor_fini);
  dts_send(&gate->base, dts_msg_alloc(1, sizeof(tmsg)));
  /* more idle actors become runnable than the inject ring holds */
  make_actors(s, 100000);
  for (int i = 0; i < 100000; i++) {
    tmsg *m = (tmsg *)dts_msg_alloc(K_DATA, sizeof(tmsg));
    m->producer = -1;
    dts_send(&actors[i]->base, &m->base);
  }
  dts_sched_stats st;
  dts_sched_get_stats(s, &st);
  assert_true(st.spills > 0);
  atomic_store(&gate_open, 1);
  assert_true(TU_WAIT_UNTIL(atomic_load(&delivered) == 100000, 60));
  dts_sched_destroy(s);
  dts_actor_unref(&gate->base);
  drop_actors();
}

/* ---- debts: paid on the owing thread, outside turns, soon ---- */

enum { K_OWE = 50, K_OWE_TWO };

static _Thread_local bool in_behaviour, owes_here;
static atomic_long paid, paid_in_turn, paid_elsewhere, owed_false, first_paid_at, chain_at;
static tactor *pair[2];

static void pay_fn(void *arg) {
  (void)arg;
  if (in_behaviour) atomic_fetch_add(&paid_in_turn, 1);
  if (!owes_here) atomic_fetch_add(&paid_elsewhere, 1); /* a thread that did not owe */
  owes_here = false;
  long at = atomic_load(&chain_at), none = -1;
  atomic_compare_exchange_strong(&first_paid_at, &none, at);
  atomic_fetch_add(&paid, 1);
}

static atomic_long other_paid, other_paid_in_turn;
static void other_fn(void *arg) {
  (void)arg;
  if (in_behaviour) atomic_fetch_add(&other_paid_in_turn, 1);
  atomic_fetch_add(&other_paid, 1);
}

/* K_OWE with ttl t: owes pay_fn, then sends t - 1 to the other actor of
 * the pair (which is idle, so every message is a turn of its own and the
 * one worker never runs out of work until the chain ends).  K_OWE_TWO:
 * owes other_fn, then pay_fn (a second creditor). */
static void owe_fn(dts_actor *self, dts_msg *m) {
  in_behaviour = true;
  tmsg *t = (tmsg *)m;
  if (m->kind == K_OWE_TWO && !dts_sched_owe(other_fn, NULL)) atomic_fetch_add(&owed_false, 1);
  if (dts_sched_owe(pay_fn, NULL)) owes_here = true;
  else atomic_fetch_add(&owed_false, 1);
  atomic_fetch_add(&chain_at, 1);
  if (m->kind == K_OWE && t->ttl > 1) {
    tmsg *n = (tmsg *)dts_msg_alloc(K_OWE, sizeof(tmsg));
    n->ttl = t->ttl - 1;
    dts_send(&pair[self == &pair[0]->base]->base, &n->base);
  }
  in_behaviour = false;
}

static void make_pair(dts_sched *s) {
  for (int i = 0; i < 2; i++) {
    pair[i] = dts_calloc(1, sizeof(tactor));
    dts_actor_init(&pair[i]->base, s, owe_fn, tactor_fini);
  }
}

static void reset_debts(void) {
  atomic_store(&paid, 0);
  atomic_store(&paid_in_turn, 0);
  atomic_store(&paid_elsewhere, 0);
  atomic_store(&owed_false, 0);
  atomic_store(&first_paid_at, -1);
  atomic_store(&chain_at, 0);
  atomic_store(&other_paid, 0);
  atomic_store(&other_paid_in_turn, 0);
}

static void send_owe(dts_actor *a, uint32_t kind, int ttl) {
  tmsg *m = (tmsg *)dts_msg_alloc(kind, sizeof(tmsg));
  m->ttl = ttl;
  dts_send(a, &m->base);
}

static void test_debt_paid_on_the_owing_thread_outside_turns(void **state) {
  (void)state;
  reset_counters();
  reset_debts();
  assert_false(dts_sched_owe(pay_fn, NULL)); /* this thread runs no turns */
  dts_sched *s = dts_sched_create(1);
  make_pair(s);
  /* one turn, then nothing to do: paid at once, not left for later */
  send_owe(&pair[0]->base, K_OWE, 1);
  assert_true(TU_WAIT_UNTIL(atomic_load(&paid) == 1, 10));
  /* a chain of 2,000 turns that never leaves the worker idle: paid as it
   * goes, every few turns, not only when the chain ends */
  reset_debts();
  send_owe(&pair[0]->base, K_OWE, 2000);
  assert_true(TU_WAIT_UNTIL(atomic_load(&chain_at) == 2000, 10));
  assert_true(TU_WAIT_UNTIL(atomic_load(&paid) >= 2000 / 64, 10));
  assert_true(atomic_load(&first_paid_at) >= 1 && atomic_load(&first_paid_at) <= 64);
  assert_int_equal(atomic_load(&paid_in_turn), 0);
  assert_int_equal(atomic_load(&paid_elsewhere), 0);
  assert_int_equal(atomic_load(&owed_false), 0);
  /* a second creditor: the first is paid at once (in the turn), the second later */
  reset_debts();
  send_owe(&pair[0]->base, K_OWE_TWO, 1);
  assert_true(TU_WAIT_UNTIL(atomic_load(&paid) == 1, 10));
  assert_int_equal(atomic_load(&other_paid), 1);
  assert_int_equal(atomic_load(&other_paid_in_turn), 1);
  assert_int_equal(atomic_load(&paid_in_turn), 0);
  for (int i = 0; i < 2; i++) dts_actor_unref(&pair[i]->base);
  assert_true(TU_WAIT_UNTIL(atomic_load(&finis) == 2, 10));
  dts_sched_destroy(s);
}

/* A manual scheduler pays before dts_sched_run_manual returns. */
static void test_manual_run_pays_before_returning(void **state) {
  (void)state;
  reset_counters();
  reset_debts();
  dts_sched *s = dts_sched_create_manual();
  make_pair(s);
  send_owe(&pair[0]->base, K_OWE, 40);
  size_t turns = 0, n;
  while ((n = dts_sched_run_manual(s, 10)) > 0) {
    turns += n;
    assert_true(atomic_load(&paid) >= (long)(turns / 16)); /* every 16 turns */
    assert_true(atomic_load(&paid) >= 1); /* and never returns owing */
  }
  assert_int_equal(turns, 40);
  assert_int_equal(atomic_load(&paid_in_turn), 0);
  assert_int_equal(atomic_load(&paid_elsewhere), 0);
  assert_int_equal(atomic_load(&owed_false), 0);
  assert_false(dts_sched_owe(pay_fn, NULL)); /* outside run_manual: no */
  for (int i = 0; i < 2; i++) dts_actor_unref(&pair[i]->base);
  assert_int_equal(atomic_load(&finis), 2);
  dts_sched_destroy(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress_every_message_once_in_order_never_concurrent),
      cmocka_unit_test(test_skewed_load_is_stolen),
      cmocka_unit_test(test_bursts_after_idle_are_delivered),
      cmocka_unit_test(test_stopped_actor_drops_later_messages),
      cmocka_unit_test(test_turn_end_runs_once_per_turn),
      cmocka_unit_test(test_held_actor_runs_nothing_until_opened),
      cmocka_unit_test(test_shutdown_with_messages_in_flight_leaks_nothing),
      cmocka_unit_test(test_inject_overflow_spills_and_delivers),
      cmocka_unit_test(test_debt_paid_on_the_owing_thread_outside_turns),
      cmocka_unit_test(test_manual_run_pays_before_returning),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  dts_pool_thread_flush();
  return rc;
}
