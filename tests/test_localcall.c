/* test_localcall.c -- in-process calls (server/localcall.h), as the HTTP
 * API makes them, against a real hub on real LevelDB: many threads at
 * once, a server stream, and callers that give up before the answer (the
 * release races the engine choosing the call's owner).  Under TSan in CI. */
#include "actors/hub.h"
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "server/callvt.h"
#include "server/localcall.h"
#include "tests/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fx {
  char dir[64];
  dts_sched *sched;
  dts_timers *timers;
  dts_store *store;
  dts_hub *hub;
} fx;

static int setup(void **state) {
  fx *f = dts_calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/dtsd-localcall-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  char db[96], err[256];
  snprintf(db, sizeof(db), "%s/db", f->dir);
  f->sched = dts_sched_create(2);
  f->timers = dts_timers_create();
  assert_int_equal(dts_store_open(db, DTS_DURABILITY_OS, &f->store, err, sizeof(err)), DTS_OK);
  dts_hub_config hc = {.name = "default",
                       .call_ops = &dts_server_call_ops,
                       .sched = f->sched,
                       .timers = f->timers,
                       .store = f->store,
                       .max_payload = 1 << 20,
                       .default_max_orch = 10,
                       .default_max_act = 10,
                       .abandon_delay_ns = 50000000ULL,
                       .ping_interval_ns = 30000000000ULL,
                       .inline_commit = true};
  assert_int_equal(dts_hub_create(&hc, &f->hub), DTS_OK);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  dts_hub_shutdown(f->hub);
  assert_true(TU_WAIT_UNTIL(dts_hub_quiesced(f->hub), 10));
  assert_true(TU_WAIT_UNTIL(!dts_store_busy(f->store), 10));
  dts_timers_destroy(f->timers);
  dts_sched_destroy(f->sched);
  dts_store_close(f->store);
  dts_hub_release(f->hub);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  dts_free(f);
  dts_pool_thread_flush();
  assert_int_equal(dts_local_live(), 0); /* the hub let go of every call */
  return 0;
}

/* Posts m as a heap message (as decoded from the wire); the caller's call. */
static dts_call *post(dts_hub *h, dts_method meth, const ProtobufCMessage *m) {
  dts_buf b = dts_pb_pack(m);
  ProtobufCMessage *req = protobuf_c_message_unpack(m->descriptor, NULL, b.n, b.p);
  dts_buf_free(&b);
  dts_call *c = dts_local_new();
  dts_hub_post(h, meth, dts_local_give(c), req);
  return c;
}

typedef struct worker_arg {
  dts_hub *h;
  int t, n, failures;
} worker_arg;

static void *starter(void *p) {
  worker_arg *w = p;
  for (int i = 0; i < w->n; i++) {
    char id[64];
    snprintf(id, sizeof(id), "lc-%d-%d", w->t, i);
    CreateInstanceRequest cr = CREATE_INSTANCE_REQUEST__INIT;
    cr.instance_id = id;
    cr.name = "orch";
    dts_call *c = post(w->h, DTS_M_START_INSTANCE, &cr.base);
    if (!dts_local_wait(c, 10000) || dts_local_answer(c)->status != DTS_ST_OK) w->failures++;
    dts_local_release(c);
    GetInstanceRequest g = GET_INSTANCE_REQUEST__INIT;
    g.instance_id = id;
    c = post(w->h, DTS_M_GET_INSTANCE, &g.base);
    if (!dts_local_wait(c, 10000) || dts_local_answer(c)->status != DTS_ST_OK) {
      w->failures++;
    } else {
      const dts_local *a = dts_local_answer(c);
      GetInstanceResponse *r = get_instance_response__unpack(NULL, a->body.n, a->body.p);
      if (r == NULL || !r->exists) w->failures++;
      if (r) get_instance_response__free_unpacked(r, NULL);
    }
    dts_local_release(c);
  }
  return NULL;
}

static void test_many_threads_unary(void **state) {
  fx *f = *state;
  enum { T = 4, N = 150 };
  pthread_t th[T];
  worker_arg wa[T];
  for (int t = 0; t < T; t++) {
    wa[t] = (worker_arg){f->hub, t, N, 0};
    assert_int_equal(pthread_create(&th[t], NULL, starter, &wa[t]), 0);
  }
  for (int t = 0; t < T; t++) {
    pthread_join(th[t], NULL);
    assert_int_equal(wa[t].failures, 0);
  }
}

static void test_stream_and_not_found(void **state) {
  fx *f = *state;
  CreateInstanceRequest cr = CREATE_INSTANCE_REQUEST__INIT;
  cr.instance_id = "lc-stream";
  cr.name = "orch";
  dts_call *c = post(f->hub, DTS_M_START_INSTANCE, &cr.base);
  assert_true(dts_local_wait(c, 10000));
  dts_local_release(c);
  StreamInstanceHistoryRequest sr = STREAM_INSTANCE_HISTORY_REQUEST__INIT;
  sr.instance_id = "lc-stream";
  c = post(f->hub, DTS_M_STREAM_HISTORY, &sr.base);
  assert_true(dts_local_wait(c, 10000)); /* the stream ended */
  assert_int_equal(dts_local_answer(c)->status, DTS_ST_OK);
  dts_local_release(c);
  sr.instance_id = "lc-none";
  c = post(f->hub, DTS_M_STREAM_HISTORY, &sr.base);
  assert_true(dts_local_wait(c, 10000)); /* as over gRPC: no such instance, no events */
  assert_int_equal(dts_local_answer(c)->status, DTS_ST_OK);
  assert_int_equal(dts_local_answer(c)->nitems, 0);
  dts_local_release(c);
}

static void *giver_upper(void *p) {
  worker_arg *w = p;
  for (int i = 0; i < w->n; i++) {
    GetInstanceRequest g = GET_INSTANCE_REQUEST__INIT;
    g.instance_id = "lc-waited";
    dts_call *c = post(w->h, DTS_M_WAIT_COMPLETION, &g.base); /* never completes: nothing runs it */
    if (i % 2) dts_local_wait(c, 1);                          /* a timeout, as when HTTP gives up */
    dts_local_release(c);                                     /* races the engine taking the call */
  }
  return NULL;
}

static void test_callers_give_up(void **state) {
  fx *f = *state;
  CreateInstanceRequest cr = CREATE_INSTANCE_REQUEST__INIT;
  cr.instance_id = "lc-waited";
  cr.name = "orch";
  dts_call *c = post(f->hub, DTS_M_START_INSTANCE, &cr.base);
  assert_true(dts_local_wait(c, 10000));
  dts_local_release(c);
  enum { T = 3, N = 100 };
  pthread_t th[T];
  worker_arg wa[T];
  for (int t = 0; t < T; t++) {
    wa[t] = (worker_arg){f->hub, t, N, 0};
    assert_int_equal(pthread_create(&th[t], NULL, giver_upper, &wa[t]), 0);
  }
  for (int t = 0; t < T; t++)
    pthread_join(th[t], NULL);
  /* the instance let go of every abandoned waiter (DTS_CALL_CLOSED): only
   * what is still in flight remains, and that drains */
  assert_true(TU_WAIT_UNTIL(dts_local_live() == 0, 10));
}

typedef struct reader_arg {
  dts_hub *h;
  uint64_t from; /* the change to read after: taken before any start */
  atomic_bool stop;
  int seen[4][64]; /* changes seen per instance "lc-<t>-<i>" */
  bool lost;
} reader_arg;

static void *reader(void *p) {
  reader_arg *r = p;
  uint64_t seq = r->from;
  for (;;) {
    bool stop = atomic_load(&r->stop), lost;
    char *ids[64];
    size_t n = dts_hub_changes(r->h, &seq, ids, 64, &lost);
    r->lost |= lost;
    for (size_t i = 0; i < n; i++) {
      int t, k;
      if (sscanf(ids[i], "lc-%d-%d", &t, &k) == 2 && t >= 0 && t < 4 && k >= 0 && k < 64) r->seen[t][k]++;
      dts_free(ids[i]);
    }
    if (stop && n == 0) return NULL;
  }
}

/* The change feed of live views: every committed start is noted, once the
 * watcher is registered, while readers copy concurrently. */
static void test_change_feed(void **state) {
  fx *f = *state;
  dts_hub_watch(f->hub, true);
  reader_arg ra = {.h = f->hub, .from = dts_hub_change_seq(f->hub)}; /* before the starters, not in the reader */
  atomic_init(&ra.stop, false);
  pthread_t rt;
  assert_int_equal(pthread_create(&rt, NULL, reader, &ra), 0);
  enum { T = 4, N = 40 };
  pthread_t th[T];
  worker_arg wa[T];
  for (int t = 0; t < T; t++) {
    wa[t] = (worker_arg){f->hub, t, N, 0};
    assert_int_equal(pthread_create(&th[t], NULL, starter, &wa[t]), 0);
  }
  for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
  atomic_store(&ra.stop, true);
  pthread_join(rt, NULL);
  dts_hub_watch(f->hub, false);
  assert_false(ra.lost); /* 160 changes fit the ring */
  for (int t = 0; t < T; t++)
    for (int i = 0; i < N; i++)
      if (ra.seen[t][i] < 1) fail_msg("no change noted for lc-%d-%d", t, i);
  /* nobody watches: nothing is kept, and a late reader learns it lost some */
  CreateInstanceRequest cr = CREATE_INSTANCE_REQUEST__INIT;
  cr.instance_id = "lc-unwatched";
  cr.name = "orch";
  uint64_t seq = dts_hub_change_seq(f->hub);
  dts_call *c = post(f->hub, DTS_M_START_INSTANCE, &cr.base);
  assert_true(dts_local_wait(c, 10000));
  dts_local_release(c);
  assert_int_equal(dts_hub_change_seq(f->hub), seq);
}

int main(void) {
  dts_log_set_level(DTS_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_many_threads_unary, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_and_not_found, setup, teardown),
      cmocka_unit_test_setup_teardown(test_callers_give_up, setup, teardown),
      cmocka_unit_test_setup_teardown(test_change_feed, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
