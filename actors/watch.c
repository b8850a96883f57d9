/* watch.c -- the change feed of live views (hub.h, dts_hub_watch): a ring
 * of the ids whose records committed turns changed, kept only while a
 * watcher is registered.
 *
 * Writers are the actors, after their commit (eng_tx_done): one relaxed
 * load when nobody watches; a short critical section when someone does.
 * Readers (the HTTP API's event streams) copy what is new since their last
 * look.  Nothing here reads the store.
 */
#include "actors/engine.h"

#include <pthread.h>
#include <string.h>

#define RING 4096

struct eng_watch {
  atomic_int watchers;
  pthread_mutex_t mu;
  uint64_t seq;          /* the last change noted (0: none) */
  uint64_t since;        /* changes before this were not kept (no watcher) */
  char *ids[RING];       /* ids[s % RING]: change s */
};

eng_watch *eng_watch_new(void) {
  eng_watch *w = dts_calloc(1, sizeof(*w));
  pthread_mutex_init(&w->mu, NULL);
  atomic_init(&w->watchers, 0);
  return w;
}

void eng_watch_free(eng_watch *w) {
  if (w == NULL) return;
  for (size_t i = 0; i < RING; i++) dts_free(w->ids[i]);
  pthread_mutex_destroy(&w->mu);
  dts_free(w);
}

void eng_note_change(dts_hub *h, const char *id) {
  eng_watch *w = h->watch;
  if (id == NULL || atomic_load_explicit(&w->watchers, memory_order_relaxed) == 0) return;
  char *copy = dts_strdup(id);
  pthread_mutex_lock(&w->mu);
  uint64_t s = ++w->seq;
  char *old = w->ids[s % RING];
  w->ids[s % RING] = copy;
  pthread_mutex_unlock(&w->mu);
  dts_free(old);
}

void dts_hub_watch(dts_hub *h, bool on) {
  eng_watch *w = h->watch;
  pthread_mutex_lock(&w->mu);
  if (on && atomic_fetch_add(&w->watchers, 1) == 0) w->since = w->seq + 1; /* nothing before is kept */
  if (!on) atomic_fetch_sub(&w->watchers, 1);
  pthread_mutex_unlock(&w->mu);
}

uint64_t dts_hub_change_seq(dts_hub *h) {
  eng_watch *w = h->watch;
  pthread_mutex_lock(&w->mu);
  uint64_t s = w->seq;
  pthread_mutex_unlock(&w->mu);
  return s;
}

size_t dts_hub_changes(dts_hub *h, uint64_t *seq, char **ids, size_t max, bool *lost) {
  eng_watch *w = h->watch;
  size_t n = 0;
  *lost = false;
  pthread_mutex_lock(&w->mu);
  uint64_t from = *seq + 1;
  if (w->seq >= RING && from <= w->seq - RING) *lost = true; /* overwritten */
  if (from < w->since) *lost = true;                         /* not kept */
  if (*lost || max == 0) { /* max 0: only move past what is there */
    *seq = w->seq;
  } else {
    for (uint64_t s = from; s <= w->seq && n < max; s++) ids[n++] = dts_strdup(w->ids[s % RING]);
    *seq = from + n - 1;
  }
  pthread_mutex_unlock(&w->mu);
  return n;
}
