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

typedef struct cache {
  block *head[NCLASS];
  int count[NCLASS];
} cache;

static _Thread_local cache *tcache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static atomic_long outstanding; /* any thread; test hook only */
static atomic_long cache_hits;  /* any thread; test hook only */

static void cache_destroy(void *arg) {
  cache *c = arg;
  for (int k = 0; k < NCLASS; k++) {
    while (c->head[k] != NULL) {
      block *b = c->head[k];
      c->head[k] = b->next;
      free(b);
    }
  }
  free(c);
}

static void cache_key_init(void) {
  if (pthread_key_create(&cache_key, cache_destroy) != 0) abort();
}

static cache *my_cache(void) {
  if (tcache == NULL) {
    pthread_once(&cache_once, cache_key_init);
    tcache = dts_calloc(1, sizeof(cache));
    pthread_setspecific(cache_key, tcache);
  }
  return tcache;
}

void *dts_pool_alloc(size_t n) {
  atomic_fetch_add_explicit(&outstanding, 1, memory_order_relaxed);
  int k = 0;
  while (k < NCLASS && class_size[k] < n) k++;
  uint8_t *raw;
  if (k == NCLASS) {
    raw = dts_malloc(HDR + n);
    raw[0] = BIG;
    return raw + HDR;
  }
  cache *c = my_cache();
  if (c->head[k] != NULL) {
    block *b = c->head[k];
    c->head[k] = b->next;
    c->count[k]--;
    raw = (uint8_t *)b;
    atomic_fetch_add_explicit(&cache_hits, 1, memory_order_relaxed);
  } else {
    raw = dts_malloc(HDR + class_size[k]);
  }
  raw[0] = (uint8_t)k;
  return raw + HDR;
}

void dts_pool_free(void *p) {
  if (p == NULL) return;
  atomic_fetch_sub_explicit(&outstanding, 1, memory_order_relaxed);
  uint8_t *raw = (uint8_t *)p - HDR;
  int k = raw[0];
  if (k == BIG) {
    free(raw);
    return;
  }
  cache *c = my_cache();
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

long dts_pool_outstanding(void) { return atomic_load(&outstanding); }
long dts_pool_cache_hits(void) { return atomic_load(&cache_hits); }
