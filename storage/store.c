/* store.c -- LevelDB store and the storage thread.  See store.h.
 *
 * The submit queue is a dts_mailbox (MPSC): any actor pushes; only the
 * storage thread pops.  The push that finds the queue idle signals the
 * thread's condvar; the thread marks the queue empty before it sleeps and
 * re-checks, so no submission is missed (same handshake as an actor's
 * scheduling, docs/runtime.md).
 */
#include "storage/store.h"

#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/mailbox.h"

#include <errno.h>
#include <leveldb/c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#define FORMAT_KEY "\0format"
#define FORMAT_KEY_LEN 7
#define FORMAT_VALUE "dtsd-store-1"
#define GROUP_MAX 1024 /* batches merged into one write at most */

struct dts_batch {
  leveldb_writebatch_t *wb;
  size_t ops;
};

/* What a submitter hands over: the batch, and the message to send back once
 * it is written. */
typedef struct order {
  dts_batch *batch;
  dts_actor *to;
  dts_msg *m;
} order;

typedef struct ticket {
  dts_msg hdr;
  order o;
} ticket;

struct dts_store {
  leveldb_t *db;
  leveldb_options_t *opt;
  leveldb_writeoptions_t *wopt;
  leveldb_readoptions_t *ropt;
  dts_mailbox q;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int group_max; /* storage thread only (set before use) */
  bool wake;     /* under mu */
  bool stopping; /* under mu */
  atomic_uint_fast64_t writes, batches;
  atomic_long outstanding; /* any thread: submitted, answer not yet sent */
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

/* ------------------------------------------------------------------------ */
/* storage thread                                                           */

static void write_or_die(dts_store *s, leveldb_writebatch_t *wb) {
  char *err = NULL;
  leveldb_write(s->db, s->wopt, wb, &err);
  if (err != NULL) {
    DTS_ERROR("store", "write failed: %s; exiting so that a restart recovers the last committed state",
              err);
    leveldb_free(err);
    _exit(70);
  }
  atomic_fetch_add_explicit(&s->writes, 1, memory_order_relaxed);
}

static void flush_group(dts_store *s, order *group, int n) {
  leveldb_writebatch_t *merged = NULL;
  int nonempty = 0;
  for (int i = 0; i < n; i++)
    if (!dts_batch_empty(group[i].batch)) nonempty++;
  if (nonempty == 1) {
    for (int i = 0; i < n; i++)
      if (!dts_batch_empty(group[i].batch)) write_or_die(s, group[i].batch->wb);
  } else if (nonempty > 1) {
    merged = leveldb_writebatch_create();
    for (int i = 0; i < n; i++)
      if (!dts_batch_empty(group[i].batch)) leveldb_writebatch_append(merged, group[i].batch->wb);
    write_or_die(s, merged);
    leveldb_writebatch_destroy(merged);
  }
  for (int i = 0; i < n; i++) {
    dts_batch_destroy(group[i].batch);
    dts_send(group[i].to, group[i].m);
    dts_actor_unref(group[i].to);
    atomic_fetch_sub(&s->outstanding, 1);
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
  static _Thread_local order group[GROUP_MAX]; /* 24 KiB: off the stack */
  for (;;) {
    int n = 0;
    dts_msg *m;
    while (n < s->group_max && (m = dts_mailbox_pop(&s->q)) != NULL) {
      ticket *t = (ticket *)m;
      /* The popped node stays as the queue's sentinel (its `next` is written
       * by the next push): move the order out, field by field. */
      group[n++] = t->o;
      t->o = (order){NULL, NULL, NULL};
    }
    if (n > 0) {
      flush_group(s, group, n);
      continue;
    }
    /* Empty: set the empty bit (unless already set) so the next push wakes
     * us; a failed CAS means a push raced in, so look again. */
    if (!dts_mailbox_is_marked(&s->q) && !dts_mailbox_mark_empty(&s->q)) continue;
    pthread_mutex_lock(&s->mu);
    while (!s->wake && !s->stopping) pthread_cond_wait(&s->cv, &s->mu);
    bool stop = s->stopping && !s->wake;
    s->wake = false;
    pthread_mutex_unlock(&s->mu);
    if (stop) break;
  }
  return NULL;
}

void dts_store_submit(dts_store *s, dts_batch *b, dts_actor *to, dts_msg *m) {
  ticket *t = (ticket *)dts_msg_alloc(0, sizeof(ticket));
  t->hdr.drop = ticket_drop;
  t->o = (order){b, to, m};
  dts_actor_ref(to);
  atomic_fetch_add_explicit(&s->batches, 1, memory_order_relaxed);
  atomic_fetch_add(&s->outstanding, 1);
  if (dts_mailbox_push(&s->q, &t->hdr)) {
    pthread_mutex_lock(&s->mu);
    s->wake = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
}

dts_err dts_store_write(dts_store *s, dts_batch *b) {
  char *err = NULL;
  leveldb_write(s->db, s->wopt, b->wb, &err);
  if (err != NULL) {
    DTS_ERROR("store", "write failed: %s", err);
    leveldb_free(err);
    return DTS_EIO;
  }
  return DTS_OK;
}

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

dts_err dts_store_open(const char *dir, dts_durability d, dts_store **out, char *errbuf,
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
  s->opt = leveldb_options_create();
  leveldb_options_set_create_if_missing(s->opt, !has_current);
  leveldb_options_set_paranoid_checks(s->opt, 1);
  leveldb_options_set_compression(s->opt, leveldb_snappy_compression);
  leveldb_options_set_write_buffer_size(s->opt, 16u << 20);
  s->wopt = leveldb_writeoptions_create();
  leveldb_writeoptions_set_sync(s->wopt, d == DTS_DURABILITY_FSYNC);
  s->ropt = leveldb_readoptions_create();
  leveldb_readoptions_set_verify_checksums(s->ropt, 1);

  char *err = NULL;
  s->db = leveldb_open(s->opt, dir, &err);
  if (err != NULL) {
    if (strstr(err, "lock") != NULL || strstr(err, "LOCK") != NULL)
      snprintf(errbuf, errlen,
               "data directory %s is in use by another dtsd process (LevelDB lock held): %s", dir,
               err);
    else
      snprintf(errbuf, errlen, "cannot open data directory %s (damaged?): %s", dir, err);
    leveldb_free(err);
    leveldb_writeoptions_destroy(s->wopt);
    leveldb_readoptions_destroy(s->ropt);
    leveldb_options_destroy(s->opt);
    dts_free(s);
    return DTS_EIO;
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
    leveldb_writeoptions_destroy(s->wopt);
    leveldb_readoptions_destroy(s->ropt);
    leveldb_options_destroy(s->opt);
    dts_free(s);
    return rc;
  }

  dts_mailbox_init(&s->q);
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
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  leveldb_close(s->db);
  leveldb_writeoptions_destroy(s->wopt);
  leveldb_readoptions_destroy(s->ropt);
  leveldb_options_destroy(s->opt);
  dts_free(s);
}

/* ------------------------------------------------------------------------ */
/* reads                                                                    */

dts_err dts_store_scan(dts_store *s, const void *prefix, size_t plen, dts_scan_fn fn, void *ctx) {
  return dts_store_scan_from(s, prefix, plen, prefix, plen, fn, ctx);
}

dts_err dts_store_get(dts_store *s, const void *k, size_t klen, char **out, size_t *outlen) {
  char *err = NULL;
  size_t vlen = 0;
  char *v = leveldb_get(s->db, s->ropt, k, klen, &vlen, &err);
  if (err != NULL) {
    DTS_ERROR("store", "read failed: %s", err);
    leveldb_free(err);
    return DTS_ECORRUPT;
  }
  if (v == NULL) return DTS_ENOTFOUND;
  *out = dts_malloc(vlen + 1);
  memcpy(*out, v, vlen);
  (*out)[vlen] = '\0';
  *outlen = vlen;
  leveldb_free(v);
  return DTS_OK;
}

dts_err dts_store_scan_from(dts_store *s, const void *prefix, size_t plen, const void *from, size_t flen,
                            dts_scan_fn fn, void *ctx) {
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
  if (err != NULL) {
    DTS_ERROR("store", "scan failed: %s", err);
    leveldb_free(err);
    return DTS_ECORRUPT;
  }
  return DTS_OK;
}

void dts_store_set_group_max(dts_store *s, int n) { s->group_max = n < 1 ? 1 : n > GROUP_MAX ? GROUP_MAX : n; }

bool dts_store_busy(dts_store *s) { return atomic_load(&s->outstanding) > 0; }

void dts_store_get_stats(dts_store *s, dts_store_stats *out) {
  out->writes = atomic_load(&s->writes);
  out->batches = atomic_load(&s->batches);
}
