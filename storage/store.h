/* store.h -- dtsd's state store over LevelDB, and its commit pipeline.
 *
 * One database holds every task hub (keys in docs/storage.md).  Writes go
 * through a dedicated storage thread: actors submit a batch with a message;
 * the thread merges every batch waiting into one LevelDB write (group
 * commit; with DTS_DURABILITY_FSYNC one fsync covers the group) and then
 * sends each message back to its actor, in submission order.  So an actor
 * learns that its batch is durable by receiving its own message, and never
 * blocks a scheduler worker on the disk.
 *
 * Only this folder includes <leveldb/c.h>.
 */
#ifndef DTS_STORAGE_STORE_H
#define DTS_STORAGE_STORE_H

#include "runtime/actor.h"
#include "runtime/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dts_store dts_store;
typedef struct dts_batch dts_batch;

typedef enum { DTS_DURABILITY_OS = 0, DTS_DURABILITY_FSYNC } dts_durability;

/* Opens (creating if missing) the store in `dir`.  Fails with a message in
 * errbuf when the directory is used by another process, is not a dtsd data
 * directory, or is damaged; never starts fresh over existing foreign data. */
dts_err dts_store_open(const char *dir, dts_durability d, dts_store **out, char *errbuf,
                       size_t errlen);
/* Commits everything submitted so far, stops the storage thread, closes. */
void dts_store_close(dts_store *s);

/* ---- batches ------------------------------------------------------------ */

dts_batch *dts_batch_create(void);
void dts_batch_destroy(dts_batch *b);
void dts_batch_put(dts_batch *b, const void *k, size_t klen, const void *v, size_t vlen);
void dts_batch_del(dts_batch *b, const void *k, size_t klen);
bool dts_batch_empty(const dts_batch *b);

/* Hands `b` (may be NULL: an ordering barrier) to the storage thread, which
 * commits it and then sends `m` to `to`.  `b` is consumed.  Messages come
 * back in submission order.  A failed write is fatal (the process exits
 * with a log line): the disk holds the last committed state, and a restart
 * recovers from it. */
void dts_store_submit(dts_store *s, dts_batch *b, dts_actor *to, dts_msg *m);

/* Most batches merged into one write (default 1024).  1 turns group commit
 * off: one write (and with fsync durability one fsync) per batch.  Set it
 * before the first submit; benchmarks use it for their baseline. */
void dts_store_set_group_max(dts_store *s, int n);

/* Writes `b` synchronously from the calling thread (start-up and tests). */
dts_err dts_store_write(dts_store *s, dts_batch *b);

/* ---- reads (start-up recovery, tools) ----------------------------------- */

/* Calls fn for every key starting with prefix, in key order; fn returns
 * false to stop.  Key and value are borrowed for the call. */
typedef bool (*dts_scan_fn)(void *ctx, const char *k, size_t klen, const char *v, size_t vlen);
dts_err dts_store_scan(dts_store *s, const void *prefix, size_t plen, dts_scan_fn fn, void *ctx);

/* Like dts_store_scan, but starts at the first key >= `from` (which should
 * itself start with prefix). */
dts_err dts_store_scan_from(dts_store *s, const void *prefix, size_t plen, const void *from, size_t flen,
                            dts_scan_fn fn, void *ctx);

/* Reads one key.  DTS_OK with *v (caller dts_frees) and *vlen set when
 * found; DTS_ENOTFOUND when absent. */
dts_err dts_store_get(dts_store *s, const void *k, size_t klen, char **v, size_t *vlen);

/* True while a submitted batch has not been answered yet (its message not
 * yet sent back): tests and fuzzers wait for false.  Any thread. */
bool dts_store_busy(dts_store *s);

/* Figures for logs and benchmarks. */
typedef struct dts_store_stats {
  uint64_t writes;  /* LevelDB writes (groups) */
  uint64_t batches; /* batches submitted */
} dts_store_stats;
void dts_store_get_stats(dts_store *s, dts_store_stats *out);

#endif
