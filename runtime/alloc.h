/* alloc.h -- allocation that never returns NULL, and per-thread pools for
 * the small fixed-size objects of the hot path (actor messages).
 *
 * The process allocator is jemalloc (linked by the dtsd executable and the
 * benchmarks; sanitizer builds use the sanitizer's allocator instead).
 * Failure to allocate aborts, so callers never test for NULL.
 *
 * Pools: sizes are rounded up to a class (64, 128, 256, 512 bytes); a freed
 * block goes to the freeing thread's cache for that class (at most
 * DTS_POOL_CACHE blocks, the rest go back to malloc).  Blocks may be freed
 * on any thread.  Larger requests go straight to malloc.  Each block keeps
 * its class in a hidden header, so dts_pool_free needs no size.
 */
#ifndef DTS_RUNTIME_ALLOC_H
#define DTS_RUNTIME_ALLOC_H

#include <stddef.h>

#define DTS_POOL_CACHE 1024

void *dts_malloc(size_t n);
void *dts_calloc(size_t count, size_t n);
void *dts_realloc(void *p, size_t n);
char *dts_strdup(const char *s);
char *dts_strndup(const char *s, size_t n);
/* Copies the n bytes at s (or the string s) into dst of size dstlen > 0,
 * cut to fit and always terminated: snprintf("%.*s") without the
 * format parsing, for copies on the request path. */
void dts_strlcpy_n(char *dst, const char *s, size_t n, size_t dstlen);
void dts_strlcpy(char *dst, const char *s, size_t dstlen);
void dts_free(void *p);

/* Returns an owned block of at least n bytes, not zeroed. */
void *dts_pool_alloc(size_t n);
/* Frees a block from dts_pool_alloc (NULL is ignored). */
void dts_pool_free(void *p);

/* Returns the calling thread's cached blocks to malloc (threads do it
 * automatically at exit; the main thread calls this before returning). */
void dts_pool_thread_flush(void);

/* Test hooks: blocks handed out minus blocks freed (all threads), and
 * blocks served from a thread cache rather than malloc. */
long dts_pool_outstanding(void);
long dts_pool_cache_hits(void);

#endif
