/* test_directory.c -- the lock-free directory under churn (actors/directory.h):
 * one writer puts and removes keys fast enough to rebuild the table many
 * times while readers look up keys that never leave; every lookup of those
 * finds its own entry, and no removed entry is freed while a reader may
 * hold it.  Runs under ThreadSanitizer (tsan label). */
#include "actors/directory.h"
#include "runtime/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define STABLE 64     /* keys that stay in the map the whole time */
#define CHURN 200000  /* puts and removes of short-lived keys */
#define READERS 3

typedef struct item {
  dts_dir_entry de; /* first: the directory hands this back */
  char key[32];
  int id;
  atomic_int freed; /* set by the deferred free: a reader must never see it */
} item;

typedef struct world {
  dts_dir *d;
  item stable[STABLE];
  atomic_bool done;
  atomic_long lookups, wrong;
} world;

static item *item_new(const char *prefix, int id) {
  item *it = dts_calloc(1, sizeof(*it));
  snprintf(it->key, sizeof(it->key), "%s%d", prefix, id);
  it->id = id;
  dts_dir_entry_init(&it->de, it->key, strlen(it->key));
  return it;
}

static void item_free_deferred(ck_epoch_entry_t *ep) {
  item *it = (item *)((char *)ep - offsetof(item, de.ep));
  atomic_store(&it->freed, 1);
  dts_free(it);
}

static void *reader(void *arg) {
  world *w = arg;
  char key[32];
  unsigned i = 0;
  while (!atomic_load(&w->done)) {
    int id = (int)(i++ % STABLE);
    snprintf(key, sizeof(key), "stable-%d", id);
    dts_dir_read_begin();
    item *it = (item *)(void *)dts_dir_get(w->d, key, strlen(key));
    if (it == NULL || it->id != id || atomic_load(&it->freed)) atomic_fetch_add(&w->wrong, 1);
    /* a churned key may or may not be there; if it is, it is whole */
    snprintf(key, sizeof(key), "churn-%u", i % 4096);
    item *c = (item *)(void *)dts_dir_get(w->d, key, strlen(key));
    if (c != NULL && (atomic_load(&c->freed) || strcmp(c->key, key) != 0)) atomic_fetch_add(&w->wrong, 1);
    dts_dir_read_end();
    atomic_fetch_add(&w->lookups, 1);
  }
  return NULL;
}

static void test_lookups_stay_right_while_churn_rebuilds_the_table(void **state) {
  (void)state;
  world *w = dts_calloc(1, sizeof(*w));
  w->d = dts_dir_create();
  for (int i = 0; i < STABLE; i++) {
    snprintf(w->stable[i].key, sizeof(w->stable[i].key), "stable-%d", i);
    w->stable[i].id = i;
    dts_dir_entry_init(&w->stable[i].de, w->stable[i].key, strlen(w->stable[i].key));
    dts_dir_put(w->d, &w->stable[i].de);
  }
  pthread_t th[READERS];
  for (int i = 0; i < READERS; i++) assert_int_equal(pthread_create(&th[i], NULL, reader, w), 0);
  /* the writer: a window of 4096 live churn keys, the oldest removed as
   * each new one goes in -- the shape of dispatch's tokens */
  item *live[4096] = {0};
  for (int n = 0; n < CHURN; n++) {
    int slot = n % 4096;
    if (live[slot] != NULL) {
      dts_dir_entry *e = dts_dir_del(w->d, live[slot]->key, strlen(live[slot]->key));
      assert_ptr_equal(e, &live[slot]->de);
      dts_dir_defer(w->d, &live[slot]->de.ep, item_free_deferred);
    }
    live[slot] = item_new("churn-", slot);
    dts_dir_put(w->d, &live[slot]->de);
    if (n % 1024 == 0) dts_dir_poll(w->d);
  }
  atomic_store(&w->done, true);
  for (int i = 0; i < READERS; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&w->wrong), 0);
  assert_true(atomic_load(&w->lookups) > 0);
  assert_true(dts_dir_rebuilds(w->d) >= 10); /* ~196,000 removals over ~4,160 live keys */
  /* every key still there is found by the writer, and only those */
  assert_int_equal(dts_dir_count(w->d), STABLE + 4096);
  for (int i = 0; i < STABLE; i++)
    assert_ptr_equal(dts_dir_find(w->d, w->stable[i].key, strlen(w->stable[i].key)), &w->stable[i].de);
  for (int s = 0; s < 4096; s++) {
    assert_ptr_equal(dts_dir_find(w->d, live[s]->key, strlen(live[s]->key)), &live[s]->de);
    dts_dir_del(w->d, live[s]->key, strlen(live[s]->key));
    dts_dir_defer(w->d, &live[s]->de.ep, item_free_deferred);
  }
  assert_null(dts_dir_find(w->d, "churn-1", 7));
  dts_dir_destroy(w->d); /* runs what is deferred */
  dts_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lookups_stay_right_while_churn_rebuilds_the_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
