/* test_store.c -- the store's combining commits (dts_store_commit_or_queue)
 * from many threads at once, and the same commits deferred from actor
 * turns on worker threads: every batch is written exactly once, each committer's
 * batches in its order, and a queued batch's message comes back to its
 * actor with the outcome.  Real LevelDB in a temp dir; runs
 * under TSan too (label tsan).
 */
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/sched.h"
#include "storage/store.h"
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
#include <unistd.h>

#define THREADS 4
#define COMMITS 1500

/* The committer's actor: counts its queued batches as they come back and
 * checks they come back in the order they were queued. */
typedef struct committer {
  dts_actor base;
  atomic_long back;     /* queued batches answered */
  atomic_long bad;      /* out of order, or not written */
  atomic_long next_seq; /* the sequence the next answer must carry */
} committer;

typedef struct done_msg {
  dts_msg hdr;
  long seq;
  dts_err result;
} done_msg;

static void behave(dts_actor *self, dts_msg *m) {
  committer *c = (committer *)self;
  done_msg *d = (done_msg *)m;
  long want = atomic_load(&c->next_seq);
  if (d->seq < want || d->result != DTS_OK) atomic_fetch_add(&c->bad, 1);
  atomic_store(&c->next_seq, d->seq + 1);
  atomic_fetch_add(&c->back, 1);
}

static void committer_fini(dts_actor *a) { dts_free(a); }

typedef struct worker_arg {
  dts_store *store;
  committer *c;
  int index;
  long inline_n, queued_n, bad;
} worker_arg;

/* One committer: COMMITS batches of one key each, in order; a batch may
 * be written inline only when none of its earlier ones is still queued. */
static void *commit_main(void *arg) {
  worker_arg *w = arg;
  long queued_out = 0, answered_before = 0;
  for (long i = 0; i < COMMITS; i++) {
    char k[32], v[32];
    int kn = snprintf(k, sizeof(k), "t%d-%06ld", w->index, i);
    int vn = snprintf(v, sizeof(v), "%ld", i);
    dts_batch *b = dts_batch_create();
    dts_batch_put(b, k, (size_t)kn, v, (size_t)vn);
    done_msg *d = (done_msg *)dts_msg_alloc(1, sizeof(done_msg));
    d->seq = i;
    long back = atomic_load(&w->c->back);
    bool earlier_queued = queued_out > back - answered_before;
    dts_err out;
    if (dts_store_commit_or_queue(w->store, b, dts_store_epoch(w->store), earlier_queued, &w->c->base, &d->hdr,
                                  &d->result, &out)) {
      if (out != DTS_OK) w->bad++;
      dts_batch_destroy(b);
      dts_msg_free(&d->hdr);
      w->inline_n++;
      /* the next queued answer must carry a later sequence than this */
      atomic_store(&w->c->next_seq, i + 1);
    } else {
      queued_out++;
      w->queued_n++;
    }
  }
  return NULL;
}

static bool count_key(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)k, (void)klen, (void)v, (void)vlen;
  (*(long *)c)++;
  return true;
}

/* A store in a fresh temp directory (dir gets its path). */
static dts_store *open_temp(char dir[64]) {
  char db[80], err[256];
  strcpy(dir, "/tmp/dtsd-storetest-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(db, sizeof(db), "%s/db", dir);
  dts_store *s;
  assert_int_equal(dts_store_open(db, DTS_DURABILITY_OS, &s, err, sizeof(err)), DTS_OK);
  dts_store_set_min_free(s, 0);
  return s;
}

static void close_temp(dts_store *s, const char *dir) {
  dts_store_close(s);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_combining_commits_from_many_threads(void **state) {
  (void)state;
  char dir[64];
  dts_store *s = open_temp(dir);
  dts_sched *sched = dts_sched_create(2);
  pthread_t t[THREADS];
  worker_arg w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    committer *c = dts_calloc(1, sizeof(*c));
    dts_actor_init(&c->base, sched, behave, committer_fini);
    w[i] = (worker_arg){s, c, i, 0, 0, 0};
    pthread_create(&t[i], NULL, commit_main, &w[i]);
  }
  long inline_total = 0, queued_total = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    inline_total += w[i].inline_n;
    queued_total += w[i].queued_n;
    assert_int_equal(w[i].bad, 0);
  }
  for (int i = 0; i < THREADS; i++) {
    committer *c = w[i].c;
    assert_true(TU_WAIT_UNTIL(atomic_load(&c->back) == w[i].queued_n, 20)); /* every queued one came back */
    assert_int_equal(atomic_load(&c->bad), 0);
  }
  assert_int_equal(inline_total + queued_total, THREADS * COMMITS);
  long keys = 0;
  assert_int_equal(dts_store_scan(s, "t", 1, count_key, &keys), DTS_OK);
  assert_int_equal(keys, THREADS * COMMITS); /* each written once */
  assert_false(dts_store_busy(s));
  print_message("combining commits: %ld inline, %ld queued behind another thread's write\n", inline_total,
                queued_total);
  dts_sched_destroy(sched);
  for (int i = 0; i < THREADS; i++) dts_actor_unref(&w[i].c->base);
  close_temp(s, dir);
}

/* ---- deferred commits (commits from turns) ------------------------------ */

#define DEFER_ACTORS 4
#define DEFER_COMMITS 2000

enum { K_COMMIT = 10, K_DONE };

typedef struct deferrer {
  dts_actor base;
  dts_store *store;
  int index;
  long next_sent, next_back; /* the actor's own (one thread at a time) */
  atomic_long back, bad, inlined;
} deferrer;

static void defer_behave(dts_actor *self, dts_msg *m) {
  deferrer *d = (deferrer *)self;
  if (m->kind == K_DONE) { /* answers come back in the order of the commits */
    done_msg *r = (done_msg *)m;
    if (r->seq != d->next_back++ || r->result != DTS_OK) atomic_fetch_add(&d->bad, 1);
    atomic_fetch_add(&d->back, 1);
    return;
  }
  char k[32], v[32];
  long i = d->next_sent++;
  int kn = snprintf(k, sizeof(k), "d%d-%06ld", d->index, i);
  int vn = snprintf(v, sizeof(v), "%ld", i);
  dts_batch *b = dts_batch_create();
  dts_batch_put(b, k, (size_t)kn, v, (size_t)vn);
  done_msg *r = (done_msg *)dts_msg_alloc(K_DONE, sizeof(done_msg));
  r->seq = i;
  dts_err out;
  if (dts_store_commit_or_queue(d->store, b, dts_store_epoch(d->store), false, self, &r->hdr, &r->result, &out)) {
    atomic_fetch_add(&d->inlined, 1); /* in a turn it must defer, never write at once */
    dts_batch_destroy(b);
    dts_msg_free(&r->hdr);
  }
}

/* Turns on worker threads defer their commits: every batch is written once,
 * each actor's answers come back in order, and the batches of many turns
 * share LevelDB writes.  Off a worker, nothing is deferred. */
static void test_deferred_commits_share_writes(void **state) {
  (void)state;
  char dir[64];
  dts_store *s = open_temp(dir);
  dts_batch *b = dts_batch_create();
  dts_batch_put(b, "x", 1, "y", 1);
  dts_err out = DTS_EIO;
  /* not a worker, nobody else writing: written at once, and still ours */
  assert_true(dts_store_commit_or_queue(s, b, dts_store_epoch(s), false, NULL, NULL, NULL, &out));
  assert_int_equal(out, DTS_OK);
  dts_batch_destroy(b);
  dts_store_stats before;
  dts_store_get_stats(s, &before);
  dts_sched *sched = dts_sched_create(2);
  deferrer *d[DEFER_ACTORS];
  for (int i = 0; i < DEFER_ACTORS; i++) {
    d[i] = dts_calloc(1, sizeof(deferrer));
    dts_actor_init(&d[i]->base, sched, defer_behave, committer_fini);
    d[i]->store = s;
    d[i]->index = i;
  }
  for (int n = 0; n < DEFER_COMMITS; n++)
    for (int i = 0; i < DEFER_ACTORS; i++) dts_send(&d[i]->base, dts_msg_alloc(K_COMMIT, sizeof(dts_msg)));
  for (int i = 0; i < DEFER_ACTORS; i++) {
    assert_true(TU_WAIT_UNTIL(atomic_load(&d[i]->back) == DEFER_COMMITS, 20));
    assert_int_equal(atomic_load(&d[i]->bad), 0);
    assert_int_equal(atomic_load(&d[i]->inlined), 0);
  }
  assert_false(dts_store_busy(s));
  dts_store_stats after;
  dts_store_get_stats(s, &after);
  long keys = 0;
  assert_int_equal(dts_store_scan(s, "d", 1, count_key, &keys), DTS_OK);
  assert_int_equal(keys, DEFER_ACTORS * DEFER_COMMITS); /* each written once */
  uint64_t writes = after.writes - before.writes;
  print_message("deferred commits: %d batches in %llu LevelDB writes\n", DEFER_ACTORS * DEFER_COMMITS,
                (unsigned long long)writes);
  assert_true(writes * 4 <= (uint64_t)(DEFER_ACTORS * DEFER_COMMITS)); /* at least four batches a write */
  dts_sched_destroy(sched);
  for (int i = 0; i < DEFER_ACTORS; i++) dts_actor_unref(&d[i]->base);
  close_temp(s, dir);
}

int main(void) {
  dts_log_set_level(DTS_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_combining_commits_from_many_threads),
      cmocka_unit_test(test_deferred_commits_share_writes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
