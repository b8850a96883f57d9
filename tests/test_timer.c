/* test_timer.c -- timers fire in order, never early; cancel works; a
 * million pending timers fit; destroy frees what is pending. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "runtime/alloc.h"
#include "runtime/sched.h"
#include "runtime/timer.h"
#include "tests/testutil.h"

#include <stdatomic.h>
#include <stdlib.h>

typedef struct fire_msg {
  dts_msg base;
  uint64_t deadline;
  int index;
} fire_msg;

typedef struct rec_actor {
  dts_actor base;
  uint64_t last_deadline;
  int early, out_of_order;
  atomic_int fired;
} rec_actor;

static atomic_int drops;

static void count_drop(dts_msg *m) {
  (void)m;
  atomic_fetch_add(&drops, 1);
}

static void rec_behave(dts_actor *self, dts_msg *m) {
  rec_actor *a = (rec_actor *)self;
  fire_msg *f = (fire_msg *)m;
  uint64_t now = dts_now_ns();
  if (now < f->deadline) a->early++;
  if (f->deadline < a->last_deadline) a->out_of_order++;
  a->last_deadline = f->deadline;
  atomic_fetch_add(&a->fired, 1);
}

static void rec_fini(dts_actor *a) { dts_free(a); }

typedef struct fixture {
  dts_sched *sched;
  dts_timers *timers;
  rec_actor *actor;
} fixture;

static int setup(void **state) {
  fixture *f = dts_calloc(1, sizeof(*f));
  f->sched = dts_sched_create(1); /* one worker: delivery order = fire order */
  f->timers = dts_timers_create();
  f->actor = dts_calloc(1, sizeof(rec_actor));
  dts_actor_init(&f->actor->base, f->sched, rec_behave, rec_fini);
  atomic_store(&drops, 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  dts_timers_destroy(f->timers);
  dts_sched_destroy(f->sched);
  dts_actor_unref(&f->actor->base);
  dts_free(f);
  return 0;
}

static fire_msg *mk(uint64_t deadline) {
  fire_msg *m = (fire_msg *)dts_msg_alloc(1, sizeof(fire_msg));
  m->deadline = deadline;
  m->base.drop = count_drop;
  return m;
}

static void test_timers_fire_in_order_and_never_early(void **state) {
  fixture *f = *state;
  unsigned rng = 42;
  /* all deadlines lie beyond the time posting takes, so a late post can
   * never be due before an earlier-posted, later-deadline timer fired */
  uint64_t base = dts_now_ns() + 300000000u;
  for (int i = 0; i < 2000; i++) {
    uint64_t d = base + (uint64_t)(rand_r(&rng) % 200) * 1000000u; /* +0..200 ms */
    dts_timer_post(f->timers, d, &f->actor->base, &mk(d)->base);
  }
  assert_true(TU_WAIT_UNTIL(atomic_load(&f->actor->fired) == 2000, 10));
  assert_int_equal(f->actor->early, 0);
  assert_int_equal(f->actor->out_of_order, 0);
  assert_int_equal(dts_timers_pending(f->timers), 0);
}

static void test_past_deadline_fires_at_once(void **state) {
  fixture *f = *state;
  dts_timer_post(f->timers, 0, &f->actor->base, &mk(0)->base);
  assert_true(TU_WAIT_UNTIL(atomic_load(&f->actor->fired) == 1, 5));
}

static void test_cancel_before_fire_frees_and_never_delivers(void **state) {
  fixture *f = *state;
  uint64_t d = dts_now_ns() + 100000000u; /* 100 ms */
  uint64_t h = dts_timer_post(f->timers, d, &f->actor->base, &mk(d)->base);
  uint64_t d2 = dts_now_ns() + 150000000u;
  dts_timer_post(f->timers, d2, &f->actor->base, &mk(d2)->base);
  assert_true(dts_timer_cancel(f->timers, h));
  assert_false(dts_timer_cancel(f->timers, h)); /* twice: no effect */
  assert_int_equal(atomic_load(&drops), 1);
  /* the later timer fires; the cancelled one never does */
  assert_true(TU_WAIT_UNTIL(atomic_load(&f->actor->fired) == 1, 5));
  assert_int_equal(f->actor->last_deadline, d2);
}

static void test_cancel_after_fire_returns_false(void **state) {
  fixture *f = *state;
  uint64_t h = dts_timer_post(f->timers, 0, &f->actor->base, &mk(0)->base);
  assert_true(TU_WAIT_UNTIL(atomic_load(&f->actor->fired) == 1, 5));
  assert_false(dts_timer_cancel(f->timers, h));
  /* the slot is reused by a new timer; the old handle must not cancel it */
  uint64_t d = dts_now_ns() + 3600ull * 1000000000u;
  uint64_t h2 = dts_timer_post(f->timers, d, &f->actor->base, &mk(d)->base);
  assert_false(dts_timer_cancel(f->timers, h));
  assert_true(dts_timer_cancel(f->timers, h2));
}

#define MILLION 1000000

static void test_million_pending_timers_fit_and_free(void **state) {
  fixture *f = *state;
  uint64_t base = dts_now_ns() + 3600ull * 1000000000u; /* an hour out */
  uint64_t *h = dts_malloc(MILLION * sizeof(uint64_t));
  for (int i = 0; i < MILLION; i++)
    h[i] = dts_timer_post(f->timers, base + ((uint64_t)i * 7919u % MILLION), &f->actor->base, &mk(0)->base);
  assert_int_equal(dts_timers_pending(f->timers), MILLION);
  for (int i = 0; i < MILLION; i += 2) assert_true(dts_timer_cancel(f->timers, h[i]));
  assert_int_equal(dts_timers_pending(f->timers), MILLION / 2);
  assert_int_equal(atomic_load(&drops), MILLION / 2);
  /* one due now still fires promptly in front of half a million */
  dts_timer_post(f->timers, 0, &f->actor->base, &mk(0)->base);
  assert_true(TU_WAIT_UNTIL(atomic_load(&f->actor->fired) == 1, 5));
  dts_free(h);
  /* teardown destroys the rest: their drops run, nothing leaks */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_timers_fire_in_order_and_never_early, setup, teardown),
      cmocka_unit_test_setup_teardown(test_past_deadline_fires_at_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_before_fire_frees_and_never_delivers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_after_fire_returns_false, setup, teardown),
      cmocka_unit_test_setup_teardown(test_million_pending_timers_fit_and_free, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  dts_pool_thread_flush();
  return rc;
}
