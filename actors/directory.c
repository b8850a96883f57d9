/* directory.c -- see directory.h.
 *
 * One process-wide epoch: every thread that reads any directory registers
 * one record with it, on its first read (thread-local; given back for reuse
 * when the thread exits).  Each directory has its own record for its
 * writer, through which removed entries and outgrown tables are deferred.
 * ck_hs calls its allocator without context, so the writer's directory is
 * named in a thread-local for the duration of each write call.
 */
#include "actors/directory.h"

#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/map.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct dts_dir {
  ck_hs_t hs;
  ck_epoch_record_t *rec; /* the writer's */
  unsigned long removed;  /* removals since the table was last rebuilt */
  unsigned long rebuilds;
};

static ck_epoch_t g_epoch;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_key;
static _Thread_local ck_epoch_record_t *tl_rec;
static _Thread_local dts_dir *tl_writer; /* the directory being written by this thread */

static void thread_gone(void *p) { ck_epoch_unregister(p); }

static void global_init(void) {
  ck_epoch_init(&g_epoch);
  if (pthread_key_create(&g_key, thread_gone) != 0) abort();
}

static ck_epoch_record_t *new_record(void) {
  ck_epoch_record_t *r = ck_epoch_recycle(&g_epoch, NULL);
  if (r != NULL) return r;
  void *mem = NULL;
  if (posix_memalign(&mem, 64, sizeof(*r)) != 0) abort();
  r = mem;
  memset(r, 0, sizeof(*r));
  ck_epoch_register(&g_epoch, r, NULL); /* never freed: records are reused */
  return r;
}

static ck_epoch_record_t *reader(void) {
  if (tl_rec == NULL) {
    pthread_once(&g_once, global_init);
    tl_rec = new_record();
    pthread_setspecific(g_key, tl_rec);
  }
  return tl_rec;
}

/* ---- what ThreadSanitizer cannot see --------------------------------------- */

/* ck_epoch orders a reader's section before the grace period that frees
 * what it read with fences inside libck, which TSan does not model: a
 * deferred free would be reported as racing the reader's last read.  In
 * TSan builds only, every section's end is a release RMW on one counter
 * and every deferred function first acquire-loads it, which states the
 * same order where TSan sees it (one shared line: the TSan build pays). */
#if defined(__SANITIZE_THREAD__)
static atomic_ulong tsan_sections;
static void tsan_section_ended(void) { atomic_fetch_add_explicit(&tsan_sections, 1, memory_order_release); }
static void tsan_grace_passed(void) { (void)atomic_load_explicit(&tsan_sections, memory_order_acquire); }

typedef struct tsan_deferred {
  ck_epoch_entry_t ep;
  ck_epoch_entry_t *user;
  ck_epoch_cb_t *fn;
} tsan_deferred;

static void tsan_trampoline(ck_epoch_entry_t *ep) {
  tsan_deferred *t = (tsan_deferred *)ep;
  tsan_grace_passed();
  t->fn(t->user);
  dts_free(t);
}
#else
static void tsan_section_ended(void) {}
static void tsan_grace_passed(void) {}
#endif

/* ---- the table allocator ------------------------------------------------- */

typedef struct deferred_block {
  ck_epoch_entry_t ep;
  size_t size;
  max_align_t data[]; /* what ck_hs sees */
} deferred_block;

static void block_free_now(ck_epoch_entry_t *ep) {
  tsan_grace_passed();
  dts_free((char *)ep - offsetof(deferred_block, ep));
}

static void *hs_malloc(size_t n) {
  deferred_block *b = dts_malloc(sizeof(*b) + n);
  b->size = n;
  return b->data;
}

static void hs_free(void *p, size_t n, bool defer) {
  (void)n;
  if (p == NULL) return;
  deferred_block *b = (deferred_block *)(void *)((char *)p - offsetof(deferred_block, data));
  if (defer && tl_writer != NULL) ck_epoch_call(tl_writer->rec, &b->ep, block_free_now);
  else dts_free(b);
}

static struct ck_malloc hs_alloc = {.malloc = hs_malloc, .realloc = NULL, .free = hs_free};

static unsigned long hs_hash(const void *obj, unsigned long seed) {
  const dts_dir_entry *e = obj;
  return (unsigned long)dts_hash_bytes(e->key, e->klen, seed);
}

static bool hs_compare(const void *a, const void *b) {
  const dts_dir_entry *x = a, *y = b;
  /* the stored entry may have been published by another thread just now:
   * its release store pairs with this acquire (dts_dir_put), which ck's
   * own fences already give but the C11 model and TSan do not see */
  (void)atomic_load_explicit(&x->published, memory_order_acquire);
  (void)atomic_load_explicit(&y->published, memory_order_acquire);
  return x->klen == y->klen && memcmp(x->key, y->key, x->klen) == 0;
}

#define SEED 0x9e3779b97f4a7c15UL

dts_dir *dts_dir_create(void) {
  pthread_once(&g_once, global_init);
  dts_dir *d = dts_calloc(1, sizeof(*d));
  d->rec = new_record();
  if (!ck_hs_init(&d->hs, CK_HS_MODE_SPMC | CK_HS_MODE_OBJECT, hs_hash, hs_compare, &hs_alloc, 64, SEED)) abort();
  return d;
}

void dts_dir_destroy(dts_dir *d) {
  if (d == NULL) return;
  dts_dir_barrier(d);
  tl_writer = NULL; /* the last tables go at once: nobody reads them now */
  ck_hs_destroy(&d->hs);
  ck_epoch_unregister(d->rec);
  dts_free(d);
}

void dts_dir_entry_init(dts_dir_entry *e, const char *key, size_t klen) {
  e->key = key;
  e->klen = klen;
  e->hash = (unsigned long)dts_hash_bytes(key, klen, SEED);
  atomic_init(&e->published, 0);
}

void dts_dir_read_begin(void) { ck_epoch_begin(reader(), NULL); }
void dts_dir_read_end(void) {
  tsan_section_ended();
  ck_epoch_end(reader(), NULL);
}

dts_dir_entry *dts_dir_get(dts_dir *d, const char *key, size_t klen) {
  dts_dir_entry probe;
  dts_dir_entry_init(&probe, key, klen);
  dts_dir_entry *e = ck_hs_get(&d->hs, probe.hash, &probe);
  if (e != NULL) (void)atomic_load_explicit(&e->published, memory_order_acquire);
  return e;
}

dts_dir_entry *dts_dir_find(dts_dir *d, const char *key, size_t klen) {
  dts_dir_entry probe;
  dts_dir_entry_init(&probe, key, klen);
  return ck_hs_get(&d->hs, probe.hash, &probe);
}

void dts_dir_put(dts_dir *d, dts_dir_entry *e) {
  atomic_store_explicit(&e->published, 1, memory_order_release);
  tl_writer = d;
  bool ok = ck_hs_put_unique(&d->hs, e->hash, e);
  tl_writer = NULL;
  DTS_ASSERT(ok && "a key put twice into a directory");
}

dts_dir_entry *dts_dir_del(dts_dir *d, const char *key, size_t klen) {
  dts_dir_entry probe;
  dts_dir_entry_init(&probe, key, klen);
  tl_writer = d;
  dts_dir_entry *e = ck_hs_remove(&d->hs, probe.hash, &probe);
  /* A removed slot becomes a tombstone; inserts reuse them, but a lookup
   * of a missing key probes through them to the longest probe the table
   * ever needed, so under churn (a token per work item, actors leaving)
   * lookups grow long.  A rebuild (a new table, readers move over as on a
   * grow, the old one freed after the grace period) starts clean; done
   * after as many removals as twice the live keys, its cost is amortized. */
  if (e != NULL && ++d->removed > 2 * (unsigned long)ck_hs_count(&d->hs) + 1024) {
    d->removed = 0;
    d->rebuilds++;
    if (!ck_hs_rebuild(&d->hs)) DTS_WARN("dir", "a directory rebuild failed (out of memory?): lookups stay slower");
  }
  tl_writer = NULL;
  return e;
}

size_t dts_dir_count(dts_dir *d) { return (size_t)ck_hs_count(&d->hs); }

unsigned long dts_dir_rebuilds(const dts_dir *d) { return d->rebuilds; }

dts_dir_entry *dts_dir_next(dts_dir *d, dts_dir_iter *it) {
  void *obj;
  return ck_hs_next(&d->hs, &it->it, &obj) ? obj : NULL;
}

void dts_dir_defer(dts_dir *d, ck_epoch_entry_t *ep, ck_epoch_cb_t *fn) {
#if defined(__SANITIZE_THREAD__)
  tsan_deferred *t = dts_malloc(sizeof(*t));
  t->user = ep;
  t->fn = fn;
  ck_epoch_call(d->rec, &t->ep, tsan_trampoline);
#else
  ck_epoch_call(d->rec, ep, fn);
#endif
}

unsigned dts_dir_poll(dts_dir *d) {
  if (d->rec->n_pending == 0) return 0;
  ck_epoch_poll(d->rec);
  return d->rec->n_pending;
}

void dts_dir_barrier(dts_dir *d) {
  if (d->rec->n_pending > 0) ck_epoch_barrier(d->rec);
}
