#define _GNU_SOURCE /* pthread_setname_np */
/* store.c -- LevelDB store, the storage thread, and what happens when the
 * disk says no.  See store.h and docs/storage.md.
 *
 * The submit queue is a dts_mailbox (MPSC): any actor pushes; only the
 * storage thread pops.  The push that finds the queue idle signals the
 * thread's condvar; the thread marks the queue empty before it sleeps and
 * re-checks, so no submission is missed (same handshake as an actor's
 * scheduling, docs/runtime.md).
 *
 * Write states.  OK; SHORT: the data directory has less free space than
 * min_free, and writes are refused before they reach LevelDB; FAILED: a
 * write failed -- LevelDB's log may now end in a torn record and its
 * background error is sticky, so nothing more is written through this
 * handle, while reads go on; CLOSED: reopening failed, reads fail too.  The
 * storage thread looks at the free space every MONITOR_NS and, from FAILED
 * or CLOSED with enough space, reopens the database (a fresh log; the torn
 * tail of the old one is ignored at recovery, as after a crash).
 *
 * Epochs.  Every refusal or failure starts a new epoch.  A batch carries
 * the epoch it was built in and is refused when that has passed: its
 * builder's memory was changed by an earlier batch that did not commit
 * (store.h, "epochs").
 *
 * `db` is read under dblock (shared) by every reader and writer; only a
 * reopen takes it exclusively.
 */
#include "storage/store.h"

#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/mailbox.h"
#include "runtime/sched.h"
#include "runtime/timer.h"

#include <errno.h>
#include <leveldb/c.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#define FORMAT_KEY "\0format"
#define FORMAT_KEY_LEN 7
#define FORMAT_VALUE "dtsd-store-1"
#define GROUP_MAX 1024             /* batches merged into one write at most */
#define MONITOR_NS 100000000ULL    /* free space looked at this often */
/* A reopen writes the old log's contents as a table (up to the 16 MiB write
 * buffer, compressed): with less free than this it would fail and leave the
 * store closed, reads included, so it waits. */
#define REOPEN_FREE (8ULL << 20)

enum { ST_OK = 0, ST_SHORT, ST_FAILED, ST_CLOSED };

struct dts_batch {
  leveldb_writebatch_t *wb;
  size_t ops;
};

/* What a submitter hands over: the batch, the epoch it was built in, the
 * message to send back once it is written and where the outcome goes. */
typedef struct order {
  dts_batch *batch;
  uint32_t epoch;
  dts_actor *to;
  dts_msg *m;
  dts_err *result;
} order;

typedef struct ticket {
  dts_msg hdr;
  order o;
} ticket;

struct dts_store {
  leveldb_t *db; /* under dblock; NULL while CLOSED */
  pthread_rwlock_t dblock;
  char *dir;
  leveldb_options_t *opt;
  leveldb_writeoptions_t *wopt;
  leveldb_readoptions_t *ropt;
  leveldb_cache_t *cache;          /* NULL: LevelDB's own 8 MiB */
  leveldb_filterpolicy_t *filter;  /* NULL: no bloom filters */
  dts_mailbox q;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int group_max; /* storage thread only (set before use) */
  bool wake;     /* under mu */
  bool stopping; /* under mu */
  atomic_uint_fast64_t writes, batches;
  dts_hist commit_hist; /* LevelDB write latency (dts_store_commit_hist) */
  atomic_long outstanding; /* any thread: submitted, answer not yet sent */
  /* combining commits (dts_store_commit_or_queue): batches queued while
   * another thread writes; only the thread holding `combining` pops cq */
  dts_mailbox cq;
  atomic_bool combining;
  atomic_long queued; /* orders counted into cq and not yet popped */
  /* write state: `state` and `epoch` are read by any thread; changes and
   * `why` are under stmu */
  atomic_int state;
  atomic_uint epoch;
  pthread_mutex_t stmu;
  char why[400];
  atomic_uint_fast64_t min_free, free_bytes;
  uint64_t last_monitor; /* storage thread only */
  atomic_long failures;
};

/* ------------------------------------------------------------------------ */
/* batches                                                                  */

dts_batch *dts_batch_create(void) {
  dts_batch *b = dts_malloc(sizeof(*b));
  b->wb = leveldb_writebatch_create();
  b->ops = 0;
  return b;
}

void dts_batch_destroy(dts_batch *b) {
  if (b == NULL) return;
  leveldb_writebatch_destroy(b->wb);
  dts_free(b);
}

void dts_batch_put(dts_batch *b, const void *k, size_t klen, const void *v, size_t vlen) {
  leveldb_writebatch_put(b->wb, k, klen, v, vlen);
  b->ops++;
}

void dts_batch_del(dts_batch *b, const void *k, size_t klen) {
  leveldb_writebatch_delete(b->wb, k, klen);
  b->ops++;
}

bool dts_batch_empty(const dts_batch *b) { return b == NULL || b->ops == 0; }

void dts_batch_append(dts_batch *dst, const dts_batch *src) {
  leveldb_writebatch_append(dst->wb, src->wb);
  dst->ops += src->ops;
}
size_t dts_batch_ops(const dts_batch *b) { return b == NULL ? 0 : b->ops; }

/* ------------------------------------------------------------------------ */
/* write state                                                              */

static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

/* Free bytes for us in the data directory (UINT64_MAX when unknown). */
static uint64_t free_space(const dts_store *s) {
  struct statvfs v;
  if (statvfs(s->dir, &v) != 0) return UINT64_MAX;
  return (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
}

/* Enters a refusing state (under stmu): a new epoch begins. */
static void enter(dts_store *s, int st, const char *why) {
  snprintf(s->why, sizeof(s->why), "%s", why);
  atomic_fetch_add(&s->epoch, 1);
  atomic_store(&s->state, st);
}

/* A write failed with LevelDB's `err`: from now on nothing is written
 * through this handle.  Returns DTS_ELIMIT for a full disk, else DTS_EIO. */
static dts_err write_failed(dts_store *s, const char *err) {
  bool full = strstr(err, "No space left") != NULL || strstr(err, "Disk quota exceeded") != NULL;
  char why[400];
  if (full)
    snprintf(why, sizeof(why), "data directory %s is full (%s); writes resume by themselves once space is freed",
             s->dir, err);
  else
    snprintf(why, sizeof(why), "a write to data directory %s failed (%s); writes resume once the store reopens",
             s->dir, err);
  pthread_mutex_lock(&s->stmu);
  if (atomic_load(&s->state) < ST_FAILED) {
    enter(s, ST_FAILED, why);
    DTS_ERROR("store", "%s", why);
  }
  pthread_mutex_unlock(&s->stmu);
  atomic_fetch_add(&s->failures, 1);
  return full ? DTS_ELIMIT : DTS_EIO;
}

static dts_err state_error(int st) { return st == ST_SHORT ? DTS_ELIMIT : DTS_EIO; }

uint32_t dts_store_epoch(dts_store *s) { return atomic_load(&s->epoch); }

dts_err dts_store_writable(dts_store *s, char *msg, size_t msglen) {
  int st = atomic_load(&s->state);
  if (st == ST_OK) return DTS_OK;
  if (msg != NULL && msglen > 0) {
    pthread_mutex_lock(&s->stmu);
    snprintf(msg, msglen, "%s", s->why);
    pthread_mutex_unlock(&s->stmu);
  }
  /* a failed write that is really a full disk is a limit, not a fault */
  if (st == ST_FAILED && strstr(s->why, " is full (") != NULL) return DTS_ELIMIT;
  return state_error(st);
}

void dts_store_set_min_free(dts_store *s, uint64_t bytes) { atomic_store(&s->min_free, bytes); }

static bool reopen(dts_store *s);

/* Storage thread, every MONITOR_NS: free space in, SHORT out (or back),
 * and from FAILED/CLOSED with room again, the reopen. */
static void monitor(dts_store *s) {
  uint64_t now = dts_now_ns();
  if (now - s->last_monitor < MONITOR_NS) return;
  s->last_monitor = now;
  uint64_t fr = free_space(s), need = atomic_load(&s->min_free);
  atomic_store(&s->free_bytes, fr);
  int st = atomic_load(&s->state);
  if (st == ST_OK && fr < need) {
    char why[400];
    snprintf(why, sizeof(why),
             "data directory %s is short of space (%.1f MiB free, --min-free-space is %.1f MiB); writes are refused "
             "until space is freed",
             s->dir, mib(fr), mib(need));
    pthread_mutex_lock(&s->stmu);
    if (atomic_load(&s->state) == ST_OK) {
      enter(s, ST_SHORT, why);
      DTS_ERROR("store", "%s", why);
    }
    pthread_mutex_unlock(&s->stmu);
  } else if (st == ST_SHORT && fr >= need) {
    atomic_store(&s->state, ST_OK);
    DTS_INFO("store", "data directory %s has %.1f MiB free again: writes accepted", s->dir, mib(fr));
  } else if ((st == ST_FAILED || st == ST_CLOSED) && fr >= need && fr >= REOPEN_FREE && reopen(s)) {
    atomic_store(&s->state, ST_OK);
    DTS_INFO("store", "data directory %s reopened after a failed write: writes accepted", s->dir);
  }
}

/* ------------------------------------------------------------------------ */
/* writing                                                                  */

/* Writes `wb` (under dblock shared) unless the state or the epoch refuses
 * it.  msg gets the reason of a refusal or failure. */
static dts_err write_wb(dts_store *s, leveldb_writebatch_t *wb, uint32_t epoch, bool check_epoch) {
  if (atomic_load(&s->state) != ST_OK) return state_error(atomic_load(&s->state));
  if (check_epoch && epoch != atomic_load(&s->epoch)) return DTS_EIO; /* built on a batch that failed */
  char *err = NULL;
  pthread_rwlock_rdlock(&s->dblock);
  if (s->db == NULL) {
    pthread_rwlock_unlock(&s->dblock);
    return DTS_EIO;
  }
  uint64_t t0 = dts_now_ns();
  leveldb_write(s->db, s->wopt, wb, &err);
  dts_hist_add(&s->commit_hist, dts_now_ns() - t0);
  pthread_rwlock_unlock(&s->dblock);
  if (err != NULL) {
    dts_err e = write_failed(s, err);
    leveldb_free(err);
    return e;
  }
  atomic_fetch_add_explicit(&s->writes, 1, memory_order_relaxed);
  return DTS_OK;
}

static void answer(dts_store *s, order *o, dts_err e) {
  if (o->result != NULL) *o->result = e;
  dts_batch_destroy(o->batch);
  dts_send(o->to, o->m);
  dts_actor_unref(o->to);
  atomic_fetch_sub(&s->outstanding, 1);
}

/* One LevelDB write for every batch of the group that may still be
 * written (its epoch is current); the rest are refused.  A failure fails
 * the whole group: none of it is in the store. */
static void flush_group(dts_store *s, order *group, int n) {
  uint32_t ep = atomic_load(&s->epoch);
  int nonempty = 0, last = -1;
  for (int i = 0; i < n; i++)
    if (!dts_batch_empty(group[i].batch) && group[i].epoch == ep) nonempty++, last = i;
  dts_err e = DTS_OK;
  if (nonempty == 1) {
    e = write_wb(s, group[last].batch->wb, ep, true);
  } else if (nonempty > 1) {
    leveldb_writebatch_t *merged = leveldb_writebatch_create();
    for (int i = 0; i < n; i++)
      if (!dts_batch_empty(group[i].batch) && group[i].epoch == ep)
        leveldb_writebatch_append(merged, group[i].batch->wb);
    e = write_wb(s, merged, ep, true);
    leveldb_writebatch_destroy(merged);
  }
  for (int i = 0; i < n; i++) {
    dts_err r = e;
    if (dts_batch_empty(group[i].batch)) r = DTS_OK; /* nothing to write: an ordering barrier */
    else if (group[i].epoch != ep) r = DTS_EIO;
    answer(s, &group[i], r);
  }
}

static void ticket_drop(dts_msg *m) {
  ticket *t = (ticket *)m;
  /* Only reached for tickets never committed (not possible after a clean
   * close, which drains): release what they hold. */
  dts_batch_destroy(t->o.batch);
  if (t->o.m != NULL) dts_msg_free(t->o.m);
  if (t->o.to != NULL) dts_actor_unref(t->o.to);
}

static void *storage_main(void *arg) {
  dts_store *s = arg;
  pthread_setname_np(pthread_self(), "store");
  static _Thread_local order group[GROUP_MAX]; /* 40 KiB: off the stack */
  for (;;) {
    monitor(s);
    int n = 0;
    dts_msg *m;
    while (n < s->group_max && (m = dts_mailbox_pop(&s->q)) != NULL) {
      ticket *t = (ticket *)m;
      /* The popped node stays as the queue's sentinel (its `next` is written
       * by the next push): move the order out, field by field. */
      group[n++] = t->o;
      t->o = (order){NULL, 0, NULL, NULL, NULL};
    }
    if (n > 0) {
      flush_group(s, group, n);
      continue;
    }
    /* Empty: set the empty bit (unless already set) so the next push wakes
     * us; a failed CAS means a push raced in, so look again. */
    if (!dts_mailbox_is_marked(&s->q) && !dts_mailbox_mark_empty(&s->q)) continue;
    pthread_mutex_lock(&s->mu);
    if (!s->wake && !s->stopping) { /* sleep, but wake for the monitor */
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += (long)MONITOR_NS;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    bool stop = s->stopping && !s->wake;
    s->wake = false;
    pthread_mutex_unlock(&s->mu);
    if (stop) break;
  }
  return NULL;
}

static ticket *ticket_new(dts_store *s, dts_batch *b, uint32_t epoch, dts_actor *to, dts_msg *m, dts_err *result) {
  ticket *t = (ticket *)dts_msg_alloc(0, sizeof(ticket));
  t->hdr.drop = ticket_drop;
  t->o = (order){b, epoch, to, m, result};
  dts_actor_ref(to);
  atomic_fetch_add_explicit(&s->batches, 1, memory_order_relaxed);
  atomic_fetch_add(&s->outstanding, 1);
  return t;
}

void dts_store_submit_at(dts_store *s, dts_batch *b, uint32_t epoch, dts_actor *to, dts_msg *m, dts_err *result) {
  ticket *t = ticket_new(s, b, epoch, to, m, result);
  if (dts_mailbox_push(&s->q, &t->hdr)) {
    pthread_mutex_lock(&s->mu);
    s->wake = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
}

/* ---- combining commits ---------------------------------------------------- */

/* Holding `combining`: writes what is queued, a group at a time.  Returns
 * how many it wrote. */
static long drain_queued(dts_store *s) {
  static _Thread_local order group[GROUP_MAX];
  long total = 0;
  for (;;) {
    int n = 0;
    dts_msg *m;
    while (n < GROUP_MAX && (m = dts_mailbox_pop(&s->cq)) != NULL) {
      ticket *t = (ticket *)m;
      group[n++] = t->o; /* the popped node stays as the sentinel: move the order out */
      t->o = (order){NULL, 0, NULL, NULL, NULL};
    }
    if (n == 0) return total;
    atomic_fetch_sub(&s->queued, n);
    flush_group(s, group, n);
    total += n;
  }
}

/* Takes `combining` and drains, until nothing is queued after letting go.
 * A pusher counts its order (`queued`, seq_cst) before it pushes and tries
 * to take `combining` after: either it gets it and drains, or the holder
 * it failed against lets go after that and sees the count.  A count whose
 * order is not linked in yet (its pusher is between the two) yields the
 * CPU to that pusher rather than spinning on it. */
static void combine(dts_store *s) {
  while (!atomic_exchange(&s->combining, true)) {
    long got = drain_queued(s);
    atomic_store(&s->combining, false);
    if (atomic_load(&s->queued) == 0) return;
    if (got == 0) sched_yield();
  }
}

/* Counts an order, then links it into the combining queue (combine()'s
 * order of the two). */
static void enqueue(dts_store *s, dts_batch *b, uint32_t epoch, dts_actor *to, dts_msg *m, dts_err *result) {
  ticket *t = ticket_new(s, b, epoch, to, m, result);
  atomic_fetch_add(&s->queued, 1);
  dts_mailbox_push(&s->cq, &t->hdr);
}

static void pay_deferred(void *arg) { combine(arg); }

bool dts_store_commit_or_queue(dts_store *s, dts_batch *b, uint32_t epoch, bool queued_before, dts_actor *to,
                               dts_msg *m, dts_err *result, dts_err *out) {
  if (dts_sched_owe(pay_deferred, s)) { /* a turn: the thread writes the queue when it pays */
    enqueue(s, b, epoch, to, m, result);
    return false;
  }
  if (!queued_before && !atomic_exchange(&s->combining, true)) {
    atomic_fetch_add_explicit(&s->batches, 1, memory_order_relaxed);
    *out = dts_batch_empty(b) ? DTS_OK : write_wb(s, b->wb, epoch, true);
    drain_queued(s);
    atomic_store(&s->combining, false);
    if (atomic_load(&s->queued) > 0) combine(s);
    return true;
  }
  enqueue(s, b, epoch, to, m, result);
  combine(s);
  return false;
}

void dts_store_submit(dts_store *s, dts_batch *b, dts_actor *to, dts_msg *m) {
  dts_store_submit_at(s, b, dts_store_epoch(s), to, m, NULL);
}

dts_err dts_store_write(dts_store *s, dts_batch *b) { return write_wb(s, b->wb, 0, false); }

/* ------------------------------------------------------------------------ */
/* open / close                                                             */

static bool dir_has_entries(const char *dir, bool *has_current) {
  *has_current = false;
  DIR *d = opendir(dir);
  if (d == NULL) return false;
  bool any = false;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    any = true;
    if (strcmp(e->d_name, "CURRENT") == 0) *has_current = true;
  }
  closedir(d);
  return any;
}

static bool first_key(dts_store *s, char *out, size_t outlen, size_t *klen) {
  leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropt);
  leveldb_iter_seek_to_first(it);
  bool any = leveldb_iter_valid(it);
  if (any) {
    size_t n;
    const char *k = leveldb_iter_key(it, &n);
    *klen = n;
    memcpy(out, k, n < outlen ? n : outlen);
  }
  leveldb_iter_destroy(it);
  return any;
}

static void free_options(dts_store *s) {
  leveldb_writeoptions_destroy(s->wopt);
  leveldb_readoptions_destroy(s->ropt);
  leveldb_options_destroy(s->opt);
  if (s->cache != NULL) leveldb_cache_destroy(s->cache);
  if (s->filter != NULL) leveldb_filterpolicy_destroy(s->filter);
  dts_free(s->dir);
}

/* Closes and opens the database again (storage thread).  True when open. */
static bool reopen(dts_store *s) {
  pthread_rwlock_wrlock(&s->dblock);
  if (s->db != NULL) leveldb_close(s->db);
  char *err = NULL;
  leveldb_options_set_create_if_missing(s->opt, 0);
  s->db = leveldb_open(s->opt, s->dir, &err);
  pthread_rwlock_unlock(&s->dblock);
  if (err == NULL) return true;
  char why[400];
  snprintf(why, sizeof(why), "data directory %s could not be reopened after a failed write (%s); retrying", s->dir,
           err);
  leveldb_free(err);
  pthread_mutex_lock(&s->stmu);
  if (atomic_load(&s->state) != ST_CLOSED) DTS_ERROR("store", "%s", why);
  enter(s, ST_CLOSED, why);
  pthread_mutex_unlock(&s->stmu);
  return false;
}

void dts_store_options_init(dts_store_options *o) {
  memset(o, 0, sizeof(*o));
  o->durability = DTS_DURABILITY_OS;
  o->block_cache = 64u << 20;
  o->bloom_bits = 10;
  o->min_free = 64u << 20;
}

dts_err dts_store_open(const char *dir, dts_durability d, dts_store **out, char *errbuf, size_t errlen) {
  dts_store_options o;
  dts_store_options_init(&o);
  o.durability = d;
  return dts_store_open_with(dir, &o, out, errbuf, errlen);
}

dts_err dts_store_open_with(const char *dir, const dts_store_options *o, dts_store **out, char *errbuf,
                            size_t errlen) {
  *out = NULL;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    snprintf(errbuf, errlen, "cannot create data directory %s: %s", dir, strerror(errno));
    return DTS_EIO;
  }
  bool has_current;
  if (dir_has_entries(dir, &has_current) && !has_current) {
    snprintf(errbuf, errlen,
             "%s is not empty and is not a dtsd data directory (no LevelDB CURRENT file); "
             "refusing to start over it -- choose an empty or dtsd directory with --data-dir",
             dir);
    return DTS_ECORRUPT;
  }

  dts_store *s = dts_calloc(1, sizeof(*s));
  s->dir = dts_strdup(dir);
  s->opt = leveldb_options_create();
  leveldb_options_set_create_if_missing(s->opt, !has_current);
  leveldb_options_set_paranoid_checks(s->opt, 1);
  leveldb_options_set_compression(s->opt, leveldb_snappy_compression);
  leveldb_options_set_write_buffer_size(s->opt, o->write_buffer > 0 ? o->write_buffer : 16u << 20);
  if (o->block_cache > 0) {
    s->cache = leveldb_cache_create_lru(o->block_cache);
    leveldb_options_set_cache(s->opt, s->cache);
  }
  if (o->bloom_bits > 0) {
    /* a point read of a key that is not there (a new instance id) then
     * skips every table whose filter says no, instead of reading a block */
    s->filter = leveldb_filterpolicy_create_bloom(o->bloom_bits);
    leveldb_options_set_filter_policy(s->opt, s->filter);
  }
  s->wopt = leveldb_writeoptions_create();
  leveldb_writeoptions_set_sync(s->wopt, o->durability == DTS_DURABILITY_FSYNC);
  s->ropt = leveldb_readoptions_create();
  leveldb_readoptions_set_verify_checksums(s->ropt, 1);

  char *err = NULL;
  s->db = leveldb_open(s->opt, dir, &err);
  if (err != NULL) {
    if (strstr(err, "lock") != NULL || strstr(err, "LOCK") != NULL)
      snprintf(errbuf, errlen,
               "data directory %s is in use by another dtsd process (LevelDB lock held): %s", dir,
               err);
    else if (strstr(err, "No space left") != NULL)
      snprintf(errbuf, errlen, "data directory %s is full: LevelDB cannot recover its log (%s)", dir, err);
    else
      snprintf(errbuf, errlen, "cannot open data directory %s (damaged?): %s", dir, err);
    dts_err e = strstr(err, "No space left") != NULL ? DTS_ELIMIT : DTS_EIO;
    leveldb_free(err);
    free_options(s);
    dts_free(s);
    return e;
  }

  /* Format marker: present on every store we created; its absence with
   * other keys present means a foreign LevelDB. */
  size_t vlen = 0;
  char *v = leveldb_get(s->db, s->ropt, FORMAT_KEY, FORMAT_KEY_LEN, &vlen, &err);
  dts_err rc = DTS_OK;
  if (err != NULL) {
    snprintf(errbuf, errlen, "cannot read data directory %s (damaged?): %s", dir, err);
    leveldb_free(err);
    rc = DTS_ECORRUPT;
  } else if (v == NULL) {
    char k[16];
    size_t klen;
    if (first_key(s, k, sizeof(k), &klen)) {
      snprintf(errbuf, errlen,
               "%s holds a LevelDB database that dtsd did not create (no format marker); "
               "refusing to use it",
               dir);
      rc = DTS_ECORRUPT;
    } else {
      leveldb_put(s->db, s->wopt, FORMAT_KEY, FORMAT_KEY_LEN, FORMAT_VALUE, strlen(FORMAT_VALUE),
                  &err);
      if (err != NULL) {
        snprintf(errbuf, errlen, "cannot write to data directory %s: %s", dir, err);
        leveldb_free(err);
        rc = DTS_EIO;
      }
    }
  } else {
    if (vlen != strlen(FORMAT_VALUE) || memcmp(v, FORMAT_VALUE, vlen) != 0) {
      snprintf(errbuf, errlen, "%s has store format '%.*s'; this dtsd reads '%s'", dir,
               (int)(vlen < 64 ? vlen : 64), v, FORMAT_VALUE);
      rc = DTS_ECORRUPT;
    }
    leveldb_free(v);
  }
  if (rc != DTS_OK) {
    leveldb_close(s->db);
    free_options(s);
    dts_free(s);
    return rc;
  }

  pthread_rwlock_init(&s->dblock, NULL);
  pthread_mutex_init(&s->stmu, NULL);
  atomic_init(&s->min_free, o->min_free);
  atomic_init(&s->free_bytes, free_space(s));
  atomic_init(&s->epoch, 1);
  if (atomic_load(&s->free_bytes) < o->min_free) {
    char why[400];
    snprintf(why, sizeof(why),
             "data directory %s is short of space (%.1f MiB free, --min-free-space is %.1f MiB); writes are refused "
             "until space is freed",
             dir, mib(atomic_load(&s->free_bytes)), mib(o->min_free));
    enter(s, ST_SHORT, why);
    DTS_ERROR("store", "%s", why);
  }
  s->last_monitor = dts_now_ns();
  dts_mailbox_init(&s->q);
  dts_mailbox_init(&s->cq);
  atomic_init(&s->combining, false);
  atomic_init(&s->queued, 0);
  s->group_max = GROUP_MAX;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  if (pthread_create(&s->thread, NULL, storage_main, s) != 0) {
    DTS_ERROR("store", "cannot start the storage thread");
    abort();
  }
  *out = s;
  return DTS_OK;
}

void dts_store_close(dts_store *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  dts_mailbox_fini(&s->q);
  dts_mailbox_fini(&s->cq);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  if (s->db != NULL) leveldb_close(s->db);
  pthread_rwlock_destroy(&s->dblock);
  pthread_mutex_destroy(&s->stmu);
  free_options(s);
  dts_free(s);
}

/* ------------------------------------------------------------------------ */
/* reads                                                                    */

dts_err dts_store_scan(dts_store *s, const void *prefix, size_t plen, dts_scan_fn fn, void *ctx) {
  return dts_store_scan_from(s, prefix, plen, prefix, plen, fn, ctx);
}

/* LevelDB's message says what failed: "Corruption: ..." for bytes that do
 * not check out, "IO error: ..." for the OS. */
static dts_err read_error(char *err, char *msg, size_t msglen) {
  dts_err e = strncmp(err, "Corruption", 10) == 0 ? DTS_ECORRUPT : DTS_EIO;
  if (msg != NULL && msglen > 0) snprintf(msg, msglen, "%s", err);
  leveldb_free(err);
  return e;
}

static dts_err closed(char *msg, size_t msglen) {
  if (msg != NULL && msglen > 0) snprintf(msg, msglen, "the store is closed after a failed write; reopening");
  return DTS_EIO;
}

dts_err dts_store_read(dts_store *s, const void *k, size_t klen, char **out, size_t *outlen, char *msg,
                       size_t msglen) {
  char *err = NULL;
  size_t vlen = 0;
  pthread_rwlock_rdlock(&s->dblock);
  if (s->db == NULL) {
    pthread_rwlock_unlock(&s->dblock);
    return closed(msg, msglen);
  }
  char *v = leveldb_get(s->db, s->ropt, k, klen, &vlen, &err);
  pthread_rwlock_unlock(&s->dblock);
  if (err != NULL) {
    DTS_ERROR("store", "read failed: %s", err);
    return read_error(err, msg, msglen);
  }
  if (v == NULL) return DTS_ENOTFOUND;
  *out = dts_malloc(vlen + 1);
  memcpy(*out, v, vlen);
  (*out)[vlen] = '\0';
  *outlen = vlen;
  leveldb_free(v);
  return DTS_OK;
}

dts_err dts_store_get(dts_store *s, const void *k, size_t klen, char **out, size_t *outlen) {
  return dts_store_read(s, k, klen, out, outlen, NULL, 0);
}

dts_err dts_store_walk(dts_store *s, const void *prefix, size_t plen, const void *from, size_t flen,
                       dts_scan_fn fn, void *ctx, char *msg, size_t msglen) {
  pthread_rwlock_rdlock(&s->dblock);
  if (s->db == NULL) {
    pthread_rwlock_unlock(&s->dblock);
    return closed(msg, msglen);
  }
  leveldb_iterator_t *it = leveldb_create_iterator(s->db, s->ropt);
  leveldb_iter_seek(it, from, flen);
  for (; leveldb_iter_valid(it); leveldb_iter_next(it)) {
    size_t klen, vlen;
    const char *k = leveldb_iter_key(it, &klen);
    if (klen < plen || memcmp(k, prefix, plen) != 0) break;
    const char *v = leveldb_iter_value(it, &vlen);
    if (!fn(ctx, k, klen, v, vlen)) break;
  }
  char *err = NULL;
  leveldb_iter_get_error(it, &err);
  leveldb_iter_destroy(it);
  pthread_rwlock_unlock(&s->dblock);
  if (err != NULL) {
    DTS_ERROR("store", "scan failed: %s", err);
    return read_error(err, msg, msglen);
  }
  return DTS_OK;
}

dts_err dts_store_scan_from(dts_store *s, const void *prefix, size_t plen, const void *from, size_t flen,
                            dts_scan_fn fn, void *ctx) {
  return dts_store_walk(s, prefix, plen, from, flen, fn, ctx, NULL, 0);
}

void dts_store_set_group_max(dts_store *s, int n) { s->group_max = n < 1 ? 1 : n > GROUP_MAX ? GROUP_MAX : n; }

bool dts_store_busy(dts_store *s) { return atomic_load(&s->outstanding) > 0; }

const char *dts_store_dir(const dts_store *s) { return s->dir; }

void dts_store_commit_hist(dts_store *s, dts_hist_snap *out) { dts_hist_read(&s->commit_hist, out); }

void dts_store_get_stats(dts_store *s, dts_store_stats *out) {
  out->writes = atomic_load(&s->writes);
  out->batches = atomic_load(&s->batches);
  out->free_bytes = atomic_load(&s->free_bytes);
  out->failures = (uint64_t)atomic_load(&s->failures);
  out->writable = atomic_load(&s->state) == ST_OK;
}
