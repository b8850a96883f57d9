/* alloc.c -- see alloc.h.
 *
 * Thread caches are plain singly linked free lists in thread-local storage;
 * only their owning thread touches them, so they need no atomics.  A
 * pthread key's destructor returns a thread's cached blocks to malloc when
 * the thread exits, so nothing leaks at shutdown.
 */
#include "runtime/alloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void oom(size_t n) {
  fprintf(stderr, "dtsd: out of memory allocating %zu bytes\n", n);
  abort();
}

void *dts_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) oom(n);
  return p;
}

void *dts_calloc(size_t count, size_t n) {
  void *p = calloc(count ? count : 1, n ? n : 1);
  if (p == NULL) oom(count * n);
  return p;
}

void *dts_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) oom(n);
  return q;
}

char *dts_strdup(const char *s) { return dts_strndup(s, strlen(s)); }

char *dts_strndup(const char *s, size_t n) {
  char *d = dts_malloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

void dts_strlcpy_n(char *dst, const char *s, size_t n, size_t dstlen) {
  if (n > dstlen - 1) n = dstlen - 1;
  memcpy(dst, s, n);
  dst[n] = '\0';
}

void dts_strlcpy(char *dst, const char *s, size_t dstlen) { dts_strlcpy_n(dst, s, strnlen(s, dstlen - 1), dstlen); }

void dts_free(void *p) { free(p); }

/* ------------------------------------------------------------------------ */
/* pools                                                                    */

#define NCLASS 4
#define HDR 16 /* keeps the payload 16-byte aligned */
#define BIG 0xff

static const size_t class_size[NCLASS] = {64, 128, 256, 512};

typedef struct block {
  struct block *next; /* while cached */
} block;

/* A thread's cache.  Its counters are the test hooks' figures: written by
 * the owning thread only (a relaxed load and store, no shared cache line:
 * a global atomic counted here cost every allocation a contended RMW) and
 * summed over the registry by the hooks. */
typedef struct cache {
  block *head[NCLASS];
  int count[NCLASS];
  atomic_long outstanding, hits;
  struct cache *prev, *next; /* the registry, under reg_mu */
} cache;

static _Thread_local cache *tcache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static cache *registry;                        /* under reg_mu */
static long retired_outstanding, retired_hits; /* caches gone, under reg_mu */

static void bump(atomic_long *v, long by) {
  atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + by, memory_order_relaxed);
}

static void cache_destroy(void *arg) {
  cache *c = arg;
  for (int k = 0; k < NCLASS; k++) {
    while (c->head[k] != NULL) {
      block *b = c->head[k];
      c->head[k] = b->next;
      free(b);
    }
  }
  pthread_mutex_lock(&reg_mu);
  retired_outstanding += atomic_load(&c->outstanding);
  retired_hits += atomic_load(&c->hits);
  if (c->prev != NULL) c->prev->next = c->next;
  else registry = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  pthread_mutex_unlock(&reg_mu);
  free(c);
}

static void cache_key_init(void) {
  if (pthread_key_create(&cache_key, cache_destroy) != 0) abort();
}

static cache *my_cache(void) {
  if (tcache == NULL) {
    pthread_once(&cache_once, cache_key_init);
    tcache = dts_calloc(1, sizeof(cache));
    pthread_mutex_lock(&reg_mu);
    tcache->next = registry;
    if (registry != NULL) registry->prev = tcache;
    registry = tcache;
    pthread_mutex_unlock(&reg_mu);
    pthread_setspecific(cache_key, tcache);
  }
  return tcache;
}

void *dts_pool_alloc(size_t n) {
  cache *c = my_cache();
  bump(&c->outstanding, 1);
  int k = 0;
  while (k < NCLASS && class_size[k] < n) k++;
  uint8_t *raw;
  if (k == NCLASS) {
    raw = dts_malloc(HDR + n);
    raw[0] = BIG;
    return raw + HDR;
  }
  if (c->head[k] != NULL) {
    block *b = c->head[k];
    c->head[k] = b->next;
    c->count[k]--;
    raw = (uint8_t *)b;
    bump(&c->hits, 1);
  } else {
    raw = dts_malloc(HDR + class_size[k]);
  }
  raw[0] = (uint8_t)k;
  return raw + HDR;
}

void dts_pool_free(void *p) {
  if (p == NULL) return;
  cache *c = my_cache();
  bump(&c->outstanding, -1);
  uint8_t *raw = (uint8_t *)p - HDR;
  int k = raw[0];
  if (k == BIG) {
    free(raw);
    return;
  }
  if (c->count[k] >= DTS_POOL_CACHE) {
    free(raw);
    return;
  }
  block *b = (block *)raw;
  b->next = c->head[k];
  c->head[k] = b;
  c->count[k]++;
}

void dts_pool_thread_flush(void) {
  if (tcache == NULL) return;
  pthread_setspecific(cache_key, NULL);
  cache_destroy(tcache);
  tcache = NULL;
}

static long sum(bool hits) {
  pthread_mutex_lock(&reg_mu);
  long v = hits ? retired_hits : retired_outstanding;
  for (cache *c = registry; c != NULL; c = c->next) v += atomic_load(hits ? &c->hits : &c->outstanding);
  pthread_mutex_unlock(&reg_mu);
  return v;
}

long dts_pool_outstanding(void) { return sum(false); }
long dts_pool_cache_hits(void) { return sum(true); }
