/* retention.c -- auto-purge: how long finished instances are kept per
 * status (a flag, or dtsd.admin.Admin/SetRetention, stored under the hub's
 * "R" key), and the purger that removes those past it.  The purger walks
 * the completed-time index ("C", oldest first) in bounded steps, resuming
 * where the last step stopped, and hands what is due to the instances
 * themselves (jobs.c): each purges itself only if it is still the
 * instance that finished then.
 */
#include "actors/hubint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PURGE_BUDGET 1000 /* index entries per purger pass: bounded work per turn */

static int tq_index(int st) {
  switch (st) {
  case ST(COMPLETED): return 0;
  case ST(FAILED): return 1;
  case ST(CANCELED): return 2;
  case ST(TERMINATED): return 3;
  default: return -1;
  }
}

static int64_t effective(const hub_state *hs, int q) { return hs->ret[1 + q] >= 0 ? hs->ret[1 + q] : hs->ret[0]; }

static void ret_to_duration(int64_t ns, Google__Protobuf__Duration *d, Google__Protobuf__Duration **out) {
  if (ns < 0) {
    *out = NULL;
    return;
  }
  google__protobuf__duration__init(d);
  d->seconds = ns / 1000000000LL;
  d->nanos = (int32_t)(ns % 1000000000LL);
  *out = d;
}

static dts_buf retention_pack(const int64_t ret[5]) {
  Dtsd__Admin__RetentionPolicy p = DTSD__ADMIN__RETENTION_POLICY__INIT;
  Google__Protobuf__Duration d[5];
  ret_to_duration(ret[0], &d[0], &p.default_retention);
  ret_to_duration(ret[1], &d[1], &p.completed);
  ret_to_duration(ret[2], &d[2], &p.failed);
  ret_to_duration(ret[3], &d[3], &p.canceled);
  ret_to_duration(ret[4], &d[4], &p.terminated);
  return dts_pb_pack(&p.base);
}

static bool ret_from_policy(const Dtsd__Admin__RetentionPolicy *p, int64_t out[5]) {
  const Google__Protobuf__Duration *d[5] = {p->default_retention, p->completed, p->failed, p->canceled, p->terminated};
  for (int i = 0; i < 5; i++) {
    if (d[i] == NULL) {
      out[i] = -1;
      continue;
    }
    if (d[i]->seconds < 0 || d[i]->nanos < 0 || d[i]->seconds > 100000LL * 86400) return false;
    out[i] = d[i]->seconds * 1000000000LL + d[i]->nanos;
  }
  return true;
}

void retention_on_set(dts_hub *h, dts_call *c, Dtsd__Admin__RetentionPolicy *p) {
  hub_state *hs = h->hs;
  int64_t v[5];
  if (!ret_from_policy(p, v)) {
    hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "retention durations must be between 0 and 100000 days");
    return;
  }
  memcpy(hs->ret, v, sizeof(v));
  dts_buf b = retention_pack(v);
  dts_key k;
  dts_key_start(&k, &h->ks, 'R');
  dts_batch_put(eng_batch(&h->base, &hs->tx), k.b, k.n, b.p, b.n);
  int64_t secs[5];
  for (int i = 0; i < 5; i++) secs[i] = v[i] < 0 ? -1 : v[i] / (int64_t)1000000000;
  DTS_INFO("hub",
           "[%s] retention set (seconds, -1 = keep): default %" PRId64 ", completed %" PRId64 ", failed %" PRId64
           ", canceled %" PRId64 ", terminated %" PRId64,
           h->name, secs[0], secs[1], secs[2], secs[3], secs[4]);
  eng_reply_ok(&h->base, &hs->tx, c, b);
}

void retention_on_get(dts_hub *h, dts_call *c) {
  eng_reply_ok(&h->base, &h->hs->tx, c, retention_pack(h->hs->ret));
}

static bool load_visit(void *ctx, const char *k, size_t klen, const char *v, size_t vlen) {
  dts_hub *h = ctx;
  (void)k;
  if (klen != h->ks.len + 2) return false; /* exactly "<hub>\0R" */
  Dtsd__Admin__RetentionPolicy *p = dtsd__admin__retention_policy__unpack(NULL, vlen, (const uint8_t *)v);
  if (p != NULL) {
    ret_from_policy(p, h->hs->ret);
    dtsd__admin__retention_policy__free_unpacked(p, NULL);
  }
  return false;
}

/* A policy given at start wins (and is persisted); otherwise the one
 * persisted by an earlier start or SetRetention. */
void retention_load(dts_hub *h) {
  hub_state *hs = h->hs;
  dts_key rk;
  dts_key_start(&rk, &h->ks, 'R');
  for (int i = 0; i < 5; i++) hs->ret[i] = -1;
  if (!h->cfg.retention_set) {
    dts_store_scan(h->cfg.store, rk.b, rk.n, load_visit, h);
    return;
  }
  memcpy(hs->ret, h->cfg.retention_ns, sizeof(hs->ret));
  dts_buf b = retention_pack(hs->ret);
  dts_batch *bt = dts_batch_create();
  dts_batch_put(bt, rk.b, rk.n, b.p, b.n);
  dts_err we = dts_store_write(h->cfg.store, bt);
  dts_batch_destroy(bt);
  dts_buf_free(&b);
  if (we != DTS_OK) /* it applies now; the next start persists it */
    DTS_ERROR("hub", "[%s] the retention policy from the flags could not be stored; it applies until dtsd stops",
              h->name);
}

void retention_clear(dts_hub *h) {
  for (int i = 0; i < 5; i++) h->hs->ret[i] = -1;
  h->hs->sweep_at.n = 0;
}

typedef struct sweep {
  dts_hub *h;
  int64_t now, cutoff; /* entries completed after cutoff cannot be due */
  int budget;
  bool done;           /* reached the end or the cutoff */
  char **ids;
  int64_t *before;
  size_t nids, capids;
  dts_key last;
} sweep;

static bool sweep_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  sweep *w = c;
  dts_hub *h = w->h;
  size_t off = h->ks.len + 2;
  if (klen < off + 8) return true;
  int64_t completed = (int64_t)dts_key_be64(k + off);
  if (completed > w->cutoff) {
    w->done = true;
    return false;
  }
  if (w->budget-- <= 0) return false;
  memcpy(w->last.b, k, klen < DTS_KEYMAX ? klen : DTS_KEYMAX);
  w->last.n = klen < DTS_KEYMAX ? klen : DTS_KEYMAX;
  int q = vlen > 0 ? tq_index((uint8_t)v[0]) : -1;
  int64_t r = q >= 0 ? effective(h->hs, q) : -1;
  size_t n = klen - off - 8;
  if (r >= 0 && completed + r <= w->now && n > 0 && n <= DTS_ID_MAX) {
    if (w->nids == w->capids) {
      w->capids = w->capids ? w->capids * 2 : 16;
      w->ids = dts_realloc(w->ids, w->capids * sizeof(char *));
      w->before = dts_realloc(w->before, w->capids * sizeof(int64_t));
    }
    w->before[w->nids] = completed;
    w->ids[w->nids++] = dts_strndup(k + off + 8, n);
  }
  return true;
}

void retention_sweep(dts_hub *h) {
  hub_state *hs = h->hs;
  if (dts_store_writable(h->cfg.store, NULL, 0) != DTS_OK || atomic_load(&h->deleted)) return;
  int64_t now = (int64_t)dts_wall_ns(), minr = -1;
  for (int q = 0; q < 4; q++) {
    int64_t r = effective(hs, q);
    if (r >= 0 && (minr < 0 || r < minr)) minr = r;
  }
  if (minr < 0) return;
  sweep w = {.h = h, .now = now, .cutoff = now - minr, .budget = PURGE_BUDGET};
  dts_key start;
  dts_key_start(&start, &h->ks, 'C');
  const dts_key *from = hs->sweep_at.n > 0 ? &hs->sweep_at : &start;
  char msg[300];
  if (dts_store_walk(h->cfg.store, start.b, start.n, from->b, from->n, sweep_visit, &w, msg, sizeof(msg)) != DTS_OK)
    DTS_ERROR("hub", "[%s] auto-purge: the completed-time index cannot be read (%s); trying again later", h->name, msg);
  if (w.done || w.last.n == 0) {
    hs->sweep_at.n = 0; /* start over next time */
  } else {
    hs->sweep_at = w.last;
    if (hs->sweep_at.n < DTS_KEYMAX) hs->sweep_at.b[hs->sweep_at.n++] = '\0'; /* just after the last key seen */
  }
  jobs_purge_ids(h, w.ids, w.before, w.nids);
  for (size_t i = 0; i < w.nids; i++) dts_free(w.ids[i]);
  dts_free(w.ids);
  dts_free(w.before);
}
