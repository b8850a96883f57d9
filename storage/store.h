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
#include "runtime/hist.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dts_store dts_store;
typedef struct dts_batch dts_batch;

typedef enum { DTS_DURABILITY_OS = 0, DTS_DURABILITY_FSYNC } dts_durability;

typedef struct dts_store_options {
  dts_durability durability;
  size_t block_cache; /* bytes of LevelDB block cache (0: LevelDB's own 8 MiB) */
  int bloom_bits;     /* bloom filter bits per key (0: no filters) */
  uint64_t min_free;  /* writes are refused while the data directory has less free */
  size_t write_buffer; /* LevelDB memtable bytes before a flush to a table (0: 16 MiB) */
} dts_store_options;

/* Defaults: os durability, 64 MiB cache, 10 bloom bits, 64 MiB min free. */
void dts_store_options_init(dts_store_options *o);

/* Opens (creating if missing) the store in `dir`.  Fails with a message in
 * errbuf when the directory is used by another process, is not a dtsd data
 * directory, or is damaged; never starts fresh over existing foreign data.
 * DTS_ELIMIT: the disk is too full for LevelDB to recover its log. */
dts_err dts_store_open_with(const char *dir, const dts_store_options *o, dts_store **out, char *errbuf,
                            size_t errlen);
/* dts_store_open_with with the defaults and durability `d`. */
dts_err dts_store_open(const char *dir, dts_durability d, dts_store **out, char *errbuf,
                       size_t errlen);
/* Commits everything submitted so far, stops the storage thread, closes. */
void dts_store_close(dts_store *s);
const char *dts_store_dir(const dts_store *s);

/* ---- batches ------------------------------------------------------------ */

dts_batch *dts_batch_create(void);
void dts_batch_destroy(dts_batch *b);
void dts_batch_put(dts_batch *b, const void *k, size_t klen, const void *v, size_t vlen);
void dts_batch_del(dts_batch *b, const void *k, size_t klen);
bool dts_batch_empty(const dts_batch *b);
size_t dts_batch_ops(const dts_batch *b); /* puts and deletes so far */
void dts_batch_append(dts_batch *dst, const dts_batch *src); /* src's operations after dst's */

/* ---- writing, and when the disk says no ----------------------------------
 *
 * Writes are refused while the data directory has less than min_free bytes
 * free (DTS_ELIMIT), and after a write failed (DTS_ELIMIT when the disk was
 * full, else DTS_EIO) until the storage thread has reopened the database,
 * which it does by itself once there is room again.  Reads go on.  Nothing
 * exits.
 *
 * Epochs.  Every refusal or failure starts a new epoch.  An actor whose
 * batches build on each other (the hub: one batch's memory state is the
 * next batch's starting point) tags each batch with the epoch it saw when
 * its memory last matched the store; a batch from a past epoch is refused,
 * so nothing is written on top of a change that never reached the disk.
 * After a refusal the actor reads its state back from the store and takes
 * the current epoch. */

uint32_t dts_store_epoch(dts_store *s);

/* DTS_OK when writes are accepted now; else DTS_ELIMIT or DTS_EIO with a
 * sentence for an RPC answer in msg (which names the data directory). */
dts_err dts_store_writable(dts_store *s, char *msg, size_t msglen);

/* Free space below which writes are refused (bytes; 0: never). */
void dts_store_set_min_free(dts_store *s, uint64_t bytes);

/* Hands `b` (may be NULL or empty: an ordering barrier) to the storage
 * thread, which commits it -- unless `epoch` has passed or the store
 * refuses writes -- and then sends `m` to `to`, with the outcome in
 * *result (when not NULL; DTS_OK or why not) written before the send.
 * `b` is consumed.  Messages come back in submission order. */
void dts_store_submit_at(dts_store *s, dts_batch *b, uint32_t epoch, dts_actor *to, dts_msg *m, dts_err *result);
/* dts_store_submit_at in the current epoch, outcome not reported. */
void dts_store_submit(dts_store *s, dts_batch *b, dts_actor *to, dts_msg *m);

/* A combining commit (the actors' commits with --durability=os).
 *
 * From a scheduler thread inside a turn (dts_sched_owe), the commit is
 * deferred: `b` is queued and the thread owes the store a write, which it
 * makes once it has run a few more turns or runs out of work -- its own
 * turns' batches and whatever other threads queued, merged into one
 * LevelDB write -- unless another committing thread wrote them first.
 *
 * Elsewhere, when no other thread is committing this way and
 * `queued_before` is false (the caller has no earlier batch still queued),
 * `b` is written from the calling thread: returns true with the outcome in
 * *out (`b` stays the caller's).  Otherwise it is queued and whoever holds
 * the write also writes what was queued meanwhile, merged into one write,
 * so a committing thread never sleeps waiting for another's write
 * (LevelDB's own writer queue puts it to sleep on a condition variable).
 *
 * Queued or deferred, it returns false: as with dts_store_submit_at, `b`
 * is consumed and `m` comes back to `to` with *result set, in queue order. */
bool dts_store_commit_or_queue(dts_store *s, dts_batch *b, uint32_t epoch, bool queued_before, dts_actor *to,
                               dts_msg *m, dts_err *result, dts_err *out);

/* Most batches merged into one write (default 1024).  1 turns group commit
 * off: one write (and with fsync durability one fsync) per batch.  Set it
 * before the first submit; benchmarks use it for their baseline. */
void dts_store_set_group_max(dts_store *s, int n);

/* Writes `b` synchronously from the calling thread, in any epoch (start-up,
 * tools and tests); refused like any write when the store refuses. */
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
 * found; DTS_ENOTFOUND when absent; DTS_ECORRUPT (the bytes on disk do
 * not check out) or DTS_EIO (the OS failed) when the read failed -- never
 * "absent" for a failed read.  dts_store_read also copies the store's
 * message into msg (when msglen > 0). */
dts_err dts_store_get(dts_store *s, const void *k, size_t klen, char **v, size_t *vlen);
dts_err dts_store_read(dts_store *s, const void *k, size_t klen, char **v, size_t *vlen, char *msg,
                       size_t msglen);
/* dts_store_scan_from that also reports the store's message of a failed
 * scan (DTS_ECORRUPT or DTS_EIO) in msg. */
dts_err dts_store_walk(dts_store *s, const void *prefix, size_t plen, const void *from, size_t flen,
                       dts_scan_fn fn, void *ctx, char *msg, size_t msglen);

/* True while a submitted batch has not been answered yet (its message not
 * yet sent back): tests and fuzzers wait for false.  Any thread. */
bool dts_store_busy(dts_store *s);

/* Figures for logs and benchmarks. */
typedef struct dts_store_stats {
  uint64_t writes;     /* LevelDB writes (groups) */
  uint64_t batches;    /* batches submitted */
  uint64_t free_bytes; /* free space in the data directory, last looked at */
  uint64_t failures;   /* writes that failed */
  bool writable;
} dts_store_stats;
void dts_store_get_stats(dts_store *s, dts_store_stats *out);
/* How long LevelDB writes took (each a group of batches). */
void dts_store_commit_hist(dts_store *s, dts_hist_snap *out);

#endif
