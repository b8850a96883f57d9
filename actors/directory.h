/* directory.h -- a string-keyed map that any thread may read without a lock
 * while one actor writes it: the task hub's directory of live actors
 * ("o<instance id>", "e<entity id>") and dispatch's completion tokens.
 *
 * A concurrencykit hash set (ck_hs, SPMC) with epoch-based reclamation
 * (ck_epoch).  Readers bracket every lookup and every use of what it
 * returned in dts_dir_read_begin/end (nestable, cheap: a few loads and one
 * store on the calling thread's own epoch record, created on first use).
 * The writer -- one actor's turns, so one thread at a time -- puts and
 * removes entries; whatever a removed entry still needs done (freeing it,
 * telling its actor) waits for dts_dir_defer's grace period: until every
 * read section that might have seen it has ended.  The map's own tables
 * are freed the same way when it grows.
 *
 * An entry is a struct of the caller's with a dts_dir_entry first; the
 * map borrows the key, which must live as long as the entry is in it.
 */
#ifndef DTS_ACTORS_DIRECTORY_H
#define DTS_ACTORS_DIRECTORY_H

#include <ck_epoch.h>
#include <ck_hs.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct dts_dir dts_dir;

typedef struct dts_dir_entry {
  const char *key; /* borrowed */
  size_t klen;
  unsigned long hash;
  /* release-stored by the writer before the entry becomes visible and
   * acquire-loaded by readers: makes the hand-over visible to
   * ThreadSanitizer, which does not see inside libck */
  atomic_int published;
  ck_epoch_entry_t ep; /* dts_dir_defer */
} dts_dir_entry;

dts_dir *dts_dir_create(void);
/* Frees the map (not its entries), after running what is deferred.  No
 * reader may be inside a section that uses this map. */
void dts_dir_destroy(dts_dir *d);

/* Sets an entry's key (and hash) before it is put or used as a probe. */
void dts_dir_entry_init(dts_dir_entry *e, const char *key, size_t klen);

/* ---- readers: any thread ------------------------------------------------ */
void dts_dir_read_begin(void);
void dts_dir_read_end(void);
/* The entry under key, or NULL.  Valid until the section ends. */
dts_dir_entry *dts_dir_get(dts_dir *d, const char *key, size_t klen);

/* ---- the writer: one thread at a time ----------------------------------- */
/* Puts e (its key must not be in the map yet). */
void dts_dir_put(dts_dir *d, dts_dir_entry *e);
/* Removes the entry under key and returns it (NULL: none).  Readers may
 * still hold it until a grace period has passed (dts_dir_defer). */
dts_dir_entry *dts_dir_del(dts_dir *d, const char *key, size_t klen);
/* The writer's own lookup (no section needed). */
dts_dir_entry *dts_dir_find(dts_dir *d, const char *key, size_t klen);
size_t dts_dir_count(dts_dir *d);
/* Times the table was rebuilt to clear the tombstones removals leave
 * (after twice as many removals as live keys). */
unsigned long dts_dir_rebuilds(const dts_dir *d);
/* Iteration by the writer:
 *   dts_dir_iter it = DTS_DIR_ITER_INIT;
 *   while ((e = dts_dir_next(d, &it)) != NULL) ...
 * Do not put or remove while iterating. */
typedef struct dts_dir_iter {
  ck_hs_iterator_t it;
} dts_dir_iter;
#define DTS_DIR_ITER_INIT {CK_HS_ITERATOR_INITIALIZER}
dts_dir_entry *dts_dir_next(dts_dir *d, dts_dir_iter *it);
/* Runs fn(entry) once every read section that began before this call has
 * ended; fn runs on the writer's thread, inside dts_dir_poll. */
void dts_dir_defer(dts_dir *d, ck_epoch_entry_t *ep, ck_epoch_cb_t *fn);
/* Runs the deferred work whose grace period has passed.  Returns how many
 * are still waiting (poll again later). */
unsigned dts_dir_poll(dts_dir *d);
/* Waits for every deferred function to run (teardown only: it spins until
 * the readers' sections end). */
void dts_dir_barrier(dts_dir *d);

#endif
