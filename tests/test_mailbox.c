/* test_mailbox.c -- the MPSC mailbox: FIFO, no loss under producers, and
 * exactly one scheduling push per empty->non-empty transition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "runtime/alloc.h"
#include "runtime/mailbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct tmsg {
  dts_msg base;
  int producer;
  int seq;
} tmsg;

static tmsg *mk(int producer, int seq) {
  tmsg *m = (tmsg *)dts_msg_alloc(1, sizeof(tmsg));
  m->producer = producer;
  m->seq = seq;
  return m;
}

static void test_new_mailbox_is_empty_and_first_push_schedules(void **state) {
  (void)state;
  dts_mailbox q;
  dts_mailbox_init(&q);
  assert_null(dts_mailbox_pop(&q));
  assert_true(dts_mailbox_push(&q, &mk(0, 1)->base));
  assert_false(dts_mailbox_push(&q, &mk(0, 2)->base));
  dts_mailbox_fini(&q);
}

static void test_fifo_single_producer(void **state) {
  (void)state;
  dts_mailbox q;
  dts_mailbox_init(&q);
  for (int i = 0; i < 1000; i++) dts_mailbox_push(&q, &mk(0, i)->base);
  for (int i = 0; i < 1000; i++) {
    tmsg *m = (tmsg *)dts_mailbox_pop(&q);
    assert_non_null(m);
    assert_int_equal(m->seq, i);
  }
  assert_null(dts_mailbox_pop(&q));
  assert_true(dts_mailbox_mark_empty(&q));
  assert_true(dts_mailbox_push(&q, &mk(0, 7)->base)); /* empty again: schedules */
  dts_mailbox_fini(&q);
}

static void test_mark_empty_fails_when_message_raced_in(void **state) {
  (void)state;
  dts_mailbox q;
  dts_mailbox_init(&q);
  dts_mailbox_push(&q, &mk(0, 1)->base);
  assert_non_null(dts_mailbox_pop(&q));
  dts_mailbox_push(&q, &mk(0, 2)->base); /* arrives before mark_empty */
  assert_false(dts_mailbox_mark_empty(&q));
  assert_non_null(dts_mailbox_pop(&q));
  assert_true(dts_mailbox_mark_empty(&q));
  dts_mailbox_fini(&q);
}

static void test_is_marked_follows_the_empty_bit(void **state) {
  (void)state;
  dts_mailbox q;
  dts_mailbox_init(&q);
  assert_true(dts_mailbox_is_marked(&q)); /* starts empty and unscheduled */
  assert_true(dts_mailbox_push(&q, &mk(0, 1)->base));
  assert_false(dts_mailbox_is_marked(&q));
  assert_non_null(dts_mailbox_pop(&q));
  assert_false(dts_mailbox_is_marked(&q)); /* popped, not yet marked */
  assert_true(dts_mailbox_mark_empty(&q));
  assert_true(dts_mailbox_is_marked(&q));
  assert_false(dts_mailbox_mark_empty(&q)); /* marking twice fails: is_marked tells why */
  dts_mailbox_fini(&q);
}


static int drops;

static void count_drop(dts_msg *m) {
  (void)m;
  drops++;
}

static void test_fini_frees_queued_messages_and_runs_drop(void **state) {
  (void)state;
  long before = dts_pool_outstanding();
  drops = 0;
  dts_mailbox q;
  dts_mailbox_init(&q);
  for (int i = 0; i < 10; i++) {
    tmsg *m = mk(0, i);
    m->base.drop = count_drop;
    dts_mailbox_push(&q, &m->base);
  }
  dts_mailbox_fini(&q);
  assert_int_equal(drops, 10);
  assert_int_equal(dts_pool_outstanding(), before);
}

/* ---- 4 producers x 100,000, consumer concurrent ---- */

#define NPROD 4
#define PER_PROD 100000

typedef struct shared {
  dts_mailbox q;
  atomic_int schedules; /* pushes that returned true */
} shared;

typedef struct prod_arg {
  shared *sh;
  int id;
} prod_arg;

static void *producer(void *arg) {
  prod_arg *pa = arg;
  for (int i = 0; i < PER_PROD; i++) {
    if (dts_mailbox_push(&pa->sh->q, &mk(pa->id, i)->base)) atomic_fetch_add(&pa->sh->schedules, 1);
  }
  dts_pool_thread_flush();
  return NULL;
}

static void test_four_producers_lose_nothing_and_keep_order(void **state) {
  (void)state;
  shared sh;
  dts_mailbox_init(&sh.q);
  atomic_init(&sh.schedules, 0);
  pthread_t th[NPROD];
  prod_arg args[NPROD];
  for (int i = 0; i < NPROD; i++) {
    args[i] = (prod_arg){&sh, i};
    pthread_create(&th[i], NULL, producer, &args[i]);
  }
  int next[NPROD] = {0};
  long got = 0;
  int marks = 0; /* successful mark_empty calls = schedules owed after */
  while (got < (long)NPROD * PER_PROD) {
    tmsg *m = (tmsg *)dts_mailbox_pop(&sh.q);
    if (m == NULL) {
      if (dts_mailbox_mark_empty(&sh.q)) marks++;
      continue;
    }
    assert_true(m->producer >= 0 && m->producer < NPROD);
    assert_int_equal(m->seq, next[m->producer]); /* FIFO per producer, no dup */
    next[m->producer]++;
    got++;
  }
  for (int i = 0; i < NPROD; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < NPROD; i++) assert_int_equal(next[i], PER_PROD);
  assert_null(dts_mailbox_pop(&sh.q));
  /* Every empty mark (plus the initial empty state) was answered by exactly
   * one scheduling push. */
  int sched = atomic_load(&sh.schedules);
  assert_int_equal(sched, marks + 1);
  dts_mailbox_fini(&sh.q);
}

/* ---- racing pushes onto an empty mailbox: exactly one schedules ---- */

#define RACERS 4
#define ROUNDS 2000

typedef struct race {
  dts_mailbox q;
  atomic_int go;     /* round number released to racers */
  atomic_int done;   /* racers finished with the current round */
  atomic_int winners;
} race;

static race R;

static void *racer(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int r = 1; r <= ROUNDS; r++) {
    while (atomic_load(&R.go) < r) sched_yield();
    if (dts_mailbox_push(&R.q, &mk(id, r)->base)) atomic_fetch_add(&R.winners, 1);
    atomic_fetch_add(&R.done, 1);
  }
  dts_pool_thread_flush();
  return NULL;
}

static void test_racing_pushes_schedule_exactly_once(void **state) {
  (void)state;
  dts_mailbox_init(&R.q);
  atomic_init(&R.go, 0);
  atomic_init(&R.done, 0);
  atomic_init(&R.winners, 0);
  pthread_t th[RACERS];
  for (int i = 0; i < RACERS; i++) pthread_create(&th[i], NULL, racer, (void *)(intptr_t)i);
  for (int r = 1; r <= ROUNDS; r++) {
    atomic_store(&R.winners, 0);
    atomic_store(&R.done, 0);
    atomic_store(&R.go, r);
    while (atomic_load(&R.done) < RACERS) sched_yield();
    assert_int_equal(atomic_load(&R.winners), 1);
    int n = 0;
    while (dts_mailbox_pop(&R.q) != NULL) n++;
    assert_int_equal(n, RACERS);
    assert_true(dts_mailbox_mark_empty(&R.q));
  }
  for (int i = 0; i < RACERS; i++) pthread_join(th[i], NULL);
  dts_mailbox_fini(&R.q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_mailbox_is_empty_and_first_push_schedules),
      cmocka_unit_test(test_fifo_single_producer),
      cmocka_unit_test(test_mark_empty_fails_when_message_raced_in),
      cmocka_unit_test(test_is_marked_follows_the_empty_bit),
      cmocka_unit_test(test_fini_frees_queued_messages_and_runs_drop),
      cmocka_unit_test(test_four_producers_lose_nothing_and_keep_order),
      cmocka_unit_test(test_racing_pushes_schedule_exactly_once),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  dts_pool_thread_flush();
  return rc;
}
