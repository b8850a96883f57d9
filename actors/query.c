/* query.c -- the hub's queries over the store: QueryInstances,
 * ListInstanceIds, QueryEntities, and the index walks that purges and
 * entity cleaning page through.  Every actor writes its record and index
 * entries in the batch of the change they describe, before anyone hears
 * of the change, so the store is what the queries read: each reads about
 * one page, never the hub, and looks at no more than the scan budget.
 */
#include "actors/hubint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool terminal(int st) { return dts_status_terminal(st); }

static bool status_in(int st, const int *list, size_t n) {
  if (n == 0) return true; /* an empty filter is no filter (RUNNING is 0) */
  for (size_t i = 0; i < n; i++)
    if (list[i] == st) return true;
  return false;
}

/* ---- index scans ---------------------------------------------------------------- */

typedef struct qrow {
  int64_t t; /* created (status index) or completed (completed index) */
  char *id;
} qrow;

typedef struct qscan {
  dts_hub *h;
  size_t want, got; /* rows wanted from this scan / taken so far */
  qrow *rows;
  size_t n, cap;
  int64_t to;       /* inclusive upper bound of t */
  bool has_after;   /* skip rows at or before (after_t, after_id) */
  int64_t after_t;
  const char *after_id;
  const int *status; /* filter on the row's status (ListInstanceIds, id plan) */
  size_t nstatus;
  int64_t from_created, to_created; /* id plan only */
  int64_t span;                     /* newest_first: the time the previous page covered (its token) */
  const char *prefix;
  size_t plen;
  /* Entries a page may look at: a filter that matches little must not walk
   * the whole index for one page.  When it runs out, the page ends at the
   * last entry looked at (cut_t, cut_id) with whatever it found. */
  long budget; /* 0: unlimited */
  bool cut;
  int64_t cut_t;
  char cut_id[DTS_ID_MAX + 1];
} qscan;

static bool qscan_spend(qscan *q, int64_t t, const char *id, size_t n) {
  if (q->budget == 0) return true;
  if (--q->budget > 0) return true;
  q->cut = true;
  q->cut_t = t;
  size_t m = n < DTS_ID_MAX ? n : DTS_ID_MAX;
  memcpy(q->cut_id, id, m);
  q->cut_id[m] = '\0';
  return false;
}

static void qrow_push(qscan *q, int64_t t, const char *id, size_t n) {
  if (q->n == q->cap) {
    q->cap = q->cap ? q->cap * 2 : 16;
    q->rows = dts_realloc(q->rows, q->cap * sizeof(*q->rows));
  }
  q->rows[q->n++] = (qrow){t, dts_strndup(id, n)};
  q->got++;
}

static void qrows_free(qscan *q) {
  for (size_t i = 0; i < q->n; i++) dts_free(q->rows[i].id);
  dts_free(q->rows);
}

static bool after_cursor(const qscan *q, int64_t t, const char *id, size_t n) {
  if (!q->has_after) return true;
  if (t != q->after_t) return t > q->after_t;
  size_t an = strlen(q->after_id);
  int c = memcmp(id, q->after_id, n < an ? n : an);
  return c > 0 || (c == 0 && n > an);
}

/* Counts a visited entry against the budget and keeps it as a row when it
 * matched; false: the scan stops (budget spent or page full). */
static bool qscan_take(qscan *q, int64_t t, const char *id, size_t n, bool keep) {
  bool more = qscan_spend(q, t, id, n);
  if (keep) qrow_push(q, t, id, n);
  return more && q->got < q->want;
}

/* "<hub>\0S<st><created><id>" and "<hub>\0C<completed><id>" */
static bool qscan_time_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  qscan *q = c;
  size_t off = q->h->ks.len + 2 + (k[q->h->ks.len + 1] == 'S' ? 1 : 0);
  if (klen <= off + 8) return true;
  int64_t t = (int64_t)dts_key_be64(k + off);
  if (t > q->to) return false;
  const char *id = k + off + 8;
  size_t n = klen - off - 8;
  if (n > DTS_ID_MAX) return true; /* not an id of ours */
  if (!after_cursor(q, t, id, n) || id[0] == '@') return true;
  return qscan_take(q, t, id, n, q->nstatus == 0 || (vlen >= 1 && status_in((uint8_t)v[0], q->status, q->nstatus)));
}

/* "<hub>\0U<id>" -> <status:1>: unfinished instances in id order */
static bool qscan_uidx_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  qscan *q = c;
  size_t off = q->h->ks.len + 2;
  const char *id = k + off;
  size_t n = klen - off;
  if (n == 0 || n > DTS_ID_MAX || !after_cursor(q, 0, id, n)) return true;
  return qscan_take(q, 0, id, n, vlen >= 1 && status_in((uint8_t)v[0], q->status, q->nstatus));
}

/* "<hub>\0I<id>" -> record: the id plan filters on the record itself */
static bool qscan_id_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  qscan *q = c;
  size_t off = q->h->ks.len + 2;
  const char *id = k + off;
  size_t n = klen - off;
  if (n < q->plen || memcmp(id, q->prefix, q->plen) != 0) return false;
  if (n > DTS_ID_MAX || !after_cursor(q, 0, id, n) || id[0] == '@') return true;
  Dtsd__Store__InstanceRecord *r = dtsd__store__instance_record__unpack(NULL, vlen, (const uint8_t *)v);
  bool keep = r != NULL && status_in(r->status, q->status, q->nstatus) && r->created_ns >= q->from_created &&
              r->created_ns <= q->to_created; /* a damaged record is left out: GetInstance reports it */
  if (r != NULL) dtsd__store__instance_record__free_unpacked(r, NULL);
  return qscan_take(q, 0, id, n, keep);
}

static int cmp_qrow(const void *x, const void *y) {
  const qrow *a = x, *b = y;
  if (a->t != b->t) return a->t < b->t ? -1 : 1;
  return strcmp(a->id, b->id);
}

/* A store scan whose failure is kept for the answer. */
static bool scan(dts_hub *h, const void *pre, size_t plen, const void *from, size_t flen, dts_scan_fn fn, void *ctx,
                 char *why, size_t whylen) {
  char msg[300];
  dts_err e = dts_store_walk(h->cfg.store, pre, plen, from, flen, fn, ctx, msg, sizeof(msg));
  if (e != DTS_OK && why[0] == '\0') snprintf(why, whylen, "a scan of the store failed: %s", msg);
  return e == DTS_OK;
}

/* Scans the status index for each status in `st` (all when n == 0), rows
 * with created in [from, q->to] after the cursor; sorted by (created, id). */
static bool scan_status_index(dts_hub *h, qscan *q, const int *st, size_t nst, int64_t from, char *why, size_t wl) {
  bool ok = true;
  for (int s = 0; s < 16 && ok; s++) {
    if (nst > 0 && !status_in(s, st, nst)) continue;
    dts_key pre, k;
    dts_key_start(&pre, &h->ks, 'S');
    dts_key_byte(&pre, (char)s);
    k = pre;
    int64_t seek = q->has_after && q->after_t > from ? q->after_t : from;
    dts_key_u64(&k, (uint64_t)(seek > 0 ? seek : 0));
    q->got = 0;
    ok = scan(h, pre.b, pre.n, k.b, k.n, qscan_time_visit, q, why, wl);
  }
  if (q->n > 1) qsort(q->rows, q->n, sizeof(*q->rows), cmp_qrow);
  return ok;
}

/* newest_first: the status index read newest first -- without walking it
 * backwards.  LevelDB hides deleted entries from an iterator by skipping
 * them, and every instance leaves one in PENDING and RUNNING as it moves
 * on (until a compaction drops them): stepping backwards over 100,000 of
 * them took 0.3 s, forwards a tenth of that.  So the index is read in time
 * windows, newest first, each 8 times wider than the one before (1 s, 8 s,
 * ...), every window forwards from its start, until the windows hold the
 * page: only the entries (and tombstones) of the windows the page needs
 * are read.  Within a window each status keeps its newest `want` rows (a
 * ring).  Rows come out sorted (created, id) descending. */
typedef struct rwin {
  qscan *q;
  const char *upper; /* keys at or above this stop the walk (NULL: none) */
  size_t ulen;
  qrow *ring;        /* the newest `want` rows of this status in the window */
  size_t n, head;
} rwin;

static bool rwin_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v;
  (void)vlen;
  rwin *w = c;
  qscan *q = w->q;
  if (w->upper != NULL) {
    size_t m = klen < w->ulen ? klen : w->ulen;
    int cmp = memcmp(k, w->upper, m);
    if (cmp > 0 || (cmp == 0 && klen >= w->ulen)) return false;
  }
  size_t off = q->h->ks.len + 3;
  if (klen <= off + 8) return true;
  const char *id = k + off + 8;
  size_t n = klen - off - 8;
  if (n > DTS_ID_MAX || id[0] == '@') return true;
  qrow *slot = &w->ring[(w->head + w->n) % q->want];
  if (w->n == q->want) { /* full: the oldest goes */
    dts_free(w->ring[w->head].id);
    slot = &w->ring[w->head];
    w->head = (w->head + 1) % q->want;
  } else {
    w->n++;
  }
  *slot = (qrow){(int64_t)dts_key_be64(k + off), dts_strndup(id, n)};
  return true;
}

static int cmp_qrow_desc(const void *x, const void *y) { return cmp_qrow(y, x); }

/* One window [lo, upper) of one status: its newest rows into q->rows. */
static bool rwin_walk(dts_hub *h, qscan *q, int status, int64_t lo, const dts_key *upper, char *why, size_t wl) {
  dts_key pre, from;
  dts_key_start(&pre, &h->ks, 'S');
  dts_key_byte(&pre, (char)status);
  from = pre;
  dts_key_u64(&from, (uint64_t)lo);
  rwin w = {.q = q, .upper = upper ? upper->b : NULL, .ulen = upper ? upper->n : 0};
  w.ring = dts_calloc(q->want, sizeof(qrow));
  bool ok = scan(h, pre.b, pre.n, from.b, from.n, rwin_visit, &w, why, wl);
  for (size_t i = 0; i < w.n; i++) {
    qrow *r = &w.ring[(w.head + i) % q->want];
    qrow_push(q, r->t, r->id, strlen(r->id));
    dts_free(r->id);
  }
  dts_free(w.ring);
  return ok;
}

static bool scan_status_rev(dts_hub *h, qscan *q, const int *st, size_t nst, int64_t from, char *why, size_t wl) {
  int64_t top = q->has_after ? q->after_t : q->to < INT64_MAX ? q->to : (int64_t)dts_wall_ns();
  /* the first window: a quarter more than the previous page spanned, or a second */
  int64_t width = q->span > 0 ? q->span + q->span / 4 + 1000000 : 1000000000LL, lo;
  bool ok = true, first = true;
  for (;; first = false) {
    lo = top - width < from ? from : top - width;
    if (lo < 0) lo = 0;
    for (int s = 0; s < 16 && ok; s++) {
      if (nst > 0 && !status_in(s, st, nst)) continue;
      dts_key up;
      dts_key_start(&up, &h->ks, 'S');
      dts_key_byte(&up, (char)s);
      bool bounded = true;
      if (!first) {
        dts_key_u64(&up, (uint64_t)top); /* the previous window began at top */
      } else if (q->has_after) {
        dts_key_u64(&up, (uint64_t)q->after_t);
        dts_key_str(&up, q->after_id);
      } else if (q->to < INT64_MAX) {
        dts_key_u64(&up, (uint64_t)q->to + 1);
      } else {
        bounded = false; /* the newest window reaches the end of the index */
      }
      ok = rwin_walk(h, q, s, lo, bounded ? &up : NULL, why, wl);
    }
    if (!ok || q->n >= q->want || lo <= from || lo == 0) break;
    top = lo;
    width = width > INT64_MAX / 8 ? INT64_MAX : width * 8;
  }
  if (q->n > 1) qsort(q->rows, q->n, sizeof(*q->rows), cmp_qrow_desc);
  while (q->n > q->want) dts_free(q->rows[--q->n].id); /* past what the page needs */
  return ok;
}

/* An instance's stored record: 1 found, 0 absent, -1 unreadable (why). */
static int record_read(dts_hub *h, const char *id, dts_inst_rec *out, char *why, size_t wl, dts_err *code) {
  dts_key k;
  dts_key_id(&k, &h->ks, 'I', id);
  char *v, msg[300];
  size_t vlen;
  dts_err e = dts_store_read(h->cfg.store, k.b, k.n, &v, &vlen, msg, sizeof(msg));
  if (e == DTS_ENOTFOUND) return 0;
  if (e != DTS_OK) {
    snprintf(why, wl, "cannot read orchestration instance '%s' from the store: %s", id, msg);
    *code = e;
    return -1;
  }
  bool ok = dts_inst_rec_unpack(v, vlen, out);
  if (ok && strcmp(out->id, id) != 0) {
    dts_inst_rec_fini(out);
    ok = false;
  }
  dts_free(v);
  if (!ok) {
    snprintf(why, wl, "the stored record of orchestration instance '%s' is damaged", id);
    *code = DTS_ECORRUPT;
    return -1;
  }
  return 1;
}

/* ---- QueryInstances ---------------------------------------------------------------- */

/* With a status filter or a created-time range (and no id prefix) it walks
 * the status index in (created, id) order, cursor "t:<created>:<id>";
 * otherwise the records in id order from the prefix, cursor "<id>". */
void query_instances(dts_hub *h, dts_call *c, QueryInstancesRequest *r) {
  InstanceQuery empty = INSTANCE_QUERY__INIT;
  InstanceQuery *q = r->query ? r->query : &empty;
  size_t page = q->max_instance_count > 0 ? (size_t)q->max_instance_count : 100;
  if (page > (size_t)h->cfg.limits.max_page) page = (size_t)h->cfg.limits.max_page;
  const char *prefix = dts_sv_get(q->instance_id_prefix);
  if (prefix == NULL) prefix = "";
  const char *after = dts_sv_get(q->continuation_token);
  if (after != NULL && after[0] == '\0') after = NULL;
  if (strlen(prefix) > DTS_ID_MAX) {
    hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "instanceIdPrefix is longer than an instance id can be (100 characters)");
    return;
  }
  if (after != NULL && strlen(after) > DTS_ID_MAX + 32) {
    hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "continuationToken was not made by this server");
    return;
  }
  int64_t from = q->created_time_from ? dts_ts_to_ns(q->created_time_from) : 0;
  int64_t to = q->created_time_to ? dts_ts_to_ns(q->created_time_to) : INT64_MAX;
  bool by_status = prefix[0] == '\0' && (q->n_runtime_status > 0 || q->created_time_from || q->created_time_to);
  bool rev = prefix[0] == '\0' && q->newest_first;
  qscan s = {.h = h, .want = page + 1, .to = to};
  char why[400] = "";
  bool ok;
  if (rev) {
    if (after != NULL) {
      /* "r:<created>:<span>:<id>": span, the time the previous page covered, sizes the first window */
      char *colon = NULL, *colon2 = NULL;
      if (strncmp(after, "r:", 2) == 0) s.after_t = strtoll(after + 2, &colon, 10);
      if (colon != NULL && *colon == ':') s.span = strtoll(colon + 1, &colon2, 10);
      if (colon2 == NULL || *colon2 != ':' || s.span < 0) {
        hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "continuationToken '%.80s' does not belong to this query", after);
        return;
      }
      s.has_after = true;
      s.after_id = colon2 + 1;
    }
    ok = scan_status_rev(h, &s, (const int *)q->runtime_status, q->n_runtime_status, from, why, sizeof(why));
  } else if (by_status) {
    if (after != NULL) {
      char *colon;
      if (strncmp(after, "t:", 2) != 0 || (s.after_t = strtoll(after + 2, &colon, 10), *colon != ':')) {
        hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "continuationToken '%.80s' does not belong to this query", after);
        return;
      }
      s.has_after = true;
      s.after_id = colon + 1;
    }
    ok = scan_status_index(h, &s, (const int *)q->runtime_status, q->n_runtime_status, from, why, sizeof(why));
  } else {
    s.status = (const int *)q->runtime_status;
    s.nstatus = q->n_runtime_status;
    s.from_created = from;
    s.to_created = to;
    s.prefix = prefix;
    s.plen = strlen(prefix);
    s.budget = h->cfg.limits.scan_budget;
    dts_key pre, k;
    dts_key_id(&pre, &h->ks, 'I', prefix);
    k = pre;
    if (after != NULL && strcmp(after, prefix) > 0) {
      s.has_after = true;
      s.after_id = after;
      dts_key_id(&k, &h->ks, 'I', after);
    }
    ok = scan(h, pre.b, pre.n, k.b, k.n, qscan_id_visit, &s, why, sizeof(why));
  }
  size_t k = s.n < page ? s.n : page;
  eng_state_buf *sb = dts_calloc(k ? k : 1, sizeof(*sb));
  OrchestrationState **sp = dts_calloc(k ? k : 1, sizeof(*sp));
  dts_inst_rec *recs = dts_calloc(k ? k : 1, sizeof(*recs));
  size_t m = 0;
  dts_err code = DTS_EIO;
  for (size_t i = 0; ok && i < k; i++) {
    int got = record_read(h, s.rows[i].id, &recs[m], why, sizeof(why), &code);
    if (got < 0) ok = false; /* a record that cannot be read fails the page */
    if (got <= 0) continue;
    if (!status_in(recs[m].status, (const int *)q->runtime_status, q->n_runtime_status)) { /* changed since */
      dts_inst_rec_fini(&recs[m]);
      continue;
    }
    eng_state_fill(&sb[m], &recs[m], q->fetch_inputs_and_outputs);
    sp[m] = &sb[m].s;
    m++;
  }
  QueryInstancesResponse resp = QUERY_INSTANCES_RESPONSE__INIT;
  Google__Protobuf__StringValue tok;
  char tokbuf[DTS_ID_MAX + 64];
  resp.orchestration_state = sp;
  resp.n_orchestration_state = m;
  if (s.n > k) {
    if (rev)
      snprintf(tokbuf, sizeof(tokbuf), "r:%" PRId64 ":%" PRId64 ":%s", s.rows[k - 1].t, s.rows[0].t - s.rows[k - 1].t,
               s.rows[k - 1].id);
    else if (by_status) snprintf(tokbuf, sizeof(tokbuf), "t:%" PRId64 ":%s", s.rows[k - 1].t, s.rows[k - 1].id);
    else snprintf(tokbuf, sizeof(tokbuf), "%s", s.rows[k - 1].id);
    resp.continuation_token = dts_sv(&tok, tokbuf);
  } else if (s.cut) { /* out of budget (id plan): go on from the last record looked at */
    snprintf(tokbuf, sizeof(tokbuf), "%s", s.cut_id);
    resp.continuation_token = dts_sv(&tok, tokbuf);
  }
  if (ok) hub_answer(h, c, &resp.base);
  else hub_answer_fail(h, c, eng_status_of(code), "%s", why);
  for (size_t i = 0; i < m; i++) {
    eng_state_done(&sb[i]);
    dts_inst_rec_fini(&recs[i]);
  }
  dts_free(recs);
  dts_free(sb);
  dts_free(sp);
  qrows_free(&s);
}

/* ---- ListInstanceIds --------------------------------------------------------------- */

/* Ordered by (completed time, id); the key is "<ns>:<id>".  Unfinished
 * instances (no completion time) come first, through the U index in id
 * order, and only when no completed-time range is asked for; then the
 * completed index. */
void query_list_ids(dts_hub *h, dts_call *c, ListInstanceIdsRequest *r) {
  int64_t after_ns = 0;
  const char *after_id = NULL;
  const char *last = dts_sv_get(r->last_instance_key);
  if (last && last[0]) {
    char *colon = strchr(last, ':');
    if (colon == NULL || strlen(colon + 1) > DTS_ID_MAX) {
      hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "lastInstanceKey '%.80s' was not made by this server", last);
      return;
    }
    after_ns = strtoll(last, NULL, 10);
    after_id = colon + 1;
  }
  size_t page = r->page_size > 0 ? (size_t)r->page_size : 100;
  if (page > (size_t)h->cfg.limits.max_list_page) page = (size_t)h->cfg.limits.max_list_page;
  const int *st = (const int *)r->runtime_status;
  size_t nst = r->n_runtime_status;
  bool ranged = r->completed_time_from != NULL || r->completed_time_to != NULL;
  qscan s = {.h = h, .want = page + 1, .to = r->completed_time_to ? dts_ts_to_ns(r->completed_time_to) : INT64_MAX,
             .status = st, .nstatus = nst, .budget = h->cfg.limits.scan_budget};
  char why[400] = "";
  bool ok = true;
  if (!ranged && after_ns == 0) {
    bool any_live = false;
    for (int i = 0; i < 16; i++) any_live |= !terminal(i) && status_in(i, st, nst);
    if (any_live) {
      dts_key pre, k;
      dts_key_id(&pre, &h->ks, 'U', "");
      k = pre;
      if (after_id != NULL && after_id[0] != '\0') {
        s.has_after = true;
        s.after_t = 0;
        s.after_id = after_id;
        dts_key_str(&k, after_id);
      }
      ok = scan(h, pre.b, pre.n, k.b, k.n, qscan_uidx_visit, &s, why, sizeof(why));
      s.has_after = false;
    }
    after_id = NULL; /* the completed ones start from their beginning */
  }
  if (ok && s.n < page + 1 && !s.cut) {
    s.want = page + 1 - s.n;
    s.got = 0;
    s.has_after = after_ns > 0;
    s.after_t = after_ns;
    s.after_id = after_id;
    int64_t from = r->completed_time_from ? dts_ts_to_ns(r->completed_time_from) : 0;
    if (after_ns > from) from = after_ns;
    dts_key pre, k;
    dts_key_start(&pre, &h->ks, 'C');
    k = pre;
    dts_key_u64(&k, (uint64_t)(from > 0 ? from : 0));
    ok = scan(h, pre.b, pre.n, k.b, k.n, qscan_time_visit, &s, why, sizeof(why));
  }
  size_t k = s.n < page ? s.n : page;
  char **ids = dts_calloc(k ? k : 1, sizeof(char *));
  for (size_t i = 0; i < k; i++) ids[i] = s.rows[i].id;
  ListInstanceIdsResponse resp = LIST_INSTANCE_IDS_RESPONSE__INIT;
  resp.instance_ids = ids;
  resp.n_instance_ids = k;
  char keybuf[DTS_ID_MAX + 32];
  Google__Protobuf__StringValue lk;
  if (s.n > k) {
    snprintf(keybuf, sizeof(keybuf), "%" PRId64 ":%s", s.rows[k - 1].t, s.rows[k - 1].id);
    resp.last_instance_key = dts_sv(&lk, keybuf);
  } else if (s.cut) { /* out of budget: go on from the last entry looked at */
    snprintf(keybuf, sizeof(keybuf), "%" PRId64 ":%s", s.cut_t, s.cut_id);
    resp.last_instance_key = dts_sv(&lk, keybuf);
  }
  if (ok) hub_answer(h, c, &resp.base);
  else hub_answer_fail(h, c, DTS_ST_INTERNAL, "%s", why);
  dts_free(ids);
  qrows_free(&s);
}

bool query_finished(dts_hub *h, const int *st, size_t nst, int64_t from, int64_t to, size_t want, char ***ids,
                    size_t *n, char *why, size_t whylen) {
  qscan s = {.h = h, .want = want, .to = to};
  why[0] = '\0';
  bool ok = scan_status_index(h, &s, st, nst, from, why, whylen);
  size_t k = s.n < want ? s.n : want;
  *ids = dts_calloc(k ? k : 1, sizeof(char *));
  for (size_t i = 0; i < s.n; i++) {
    if (i < k) (*ids)[i] = s.rows[i].id;
    else dts_free(s.rows[i].id);
  }
  dts_free(s.rows);
  *n = k;
  return ok;
}

/* ---- entities ---------------------------------------------------------------------- */

/* Entities in id order, a page at a time, from their records
 * ("<hub>\0E<id>"): at most `want` with `prefix`, after `after`, looking at
 * no more than the budget. */
typedef struct ent_walk {
  dts_hub *h;
  const char *prefix;
  size_t plen;
  const char *after;
  size_t want, budget;
  bool (*keep)(struct ent_walk *w, const char *id, dts_ent_rec *r);
  void *ctx;
  char **ids;
  dts_ent_rec *recs; /* when keep is set: the records kept */
  long *backlog;
  size_t n;
  bool more;
  char last[DTS_ID_MAX + 1];
  char why[400];
} ent_walk;

static bool ent_walk_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  ent_walk *w = c;
  size_t off = w->h->ks.len + 2, n = klen - off;
  if (n < w->plen || memcmp(k + off, w->prefix, w->plen) != 0) return false;
  if (n > DTS_ID_MAX) return true;
  char id[DTS_ID_MAX + 1];
  memcpy(id, k + off, n);
  id[n] = '\0';
  if (w->after != NULL && strcmp(id, w->after) <= 0) return true;
  if (w->n == w->want || w->budget == 0) {
    w->more = true;
    return false;
  }
  w->budget--;
  memcpy(w->last, id, n + 1);
  if (dts_entity_id_problem(id) != NULL) return true;
  if (w->keep != NULL) {
    dts_ent_rec r;
    if (!dts_ent_rec_unpack(v, vlen, &r)) return true; /* GetEntity reports a damaged one */
    if (!w->keep(w, id, &r)) {
      dts_ent_rec_fini(&r);
      return true;
    }
    w->recs[w->n] = r;
  }
  w->ids[w->n++] = dts_strdup(id);
  return true;
}

static bool ent_walk_run(ent_walk *w) {
  dts_hub *h = w->h;
  w->ids = dts_calloc(w->want ? w->want : 1, sizeof(char *));
  if (w->keep != NULL) {
    w->recs = dts_calloc(w->want ? w->want : 1, sizeof(*w->recs));
    w->backlog = dts_calloc(w->want ? w->want : 1, sizeof(long));
  }
  dts_key pre, k;
  dts_key_id(&pre, &h->ks, 'E', w->prefix);
  k = pre;
  if (w->after != NULL && strcmp(w->after, w->prefix) > 0) dts_key_id(&k, &h->ks, 'E', w->after);
  return scan(h, pre.b, pre.n, k.b, k.n, ent_walk_visit, w, w->why, sizeof(w->why));
}

bool query_entity_ids(dts_hub *h, const char *after, size_t want, char ***ids, size_t *n, bool *more, char *last,
                      char *why, size_t whylen) {
  ent_walk w = {.h = h, .prefix = "", .after = after, .want = want, .budget = (size_t)h->cfg.limits.scan_budget};
  bool ok = ent_walk_run(&w);
  snprintf(why, whylen, "%s", w.why);
  *ids = w.ids;
  *n = w.n;
  *more = w.more;
  memcpy(last, w.last, sizeof(w.last));
  return ok;
}

static bool count_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)k, (void)klen, (void)v, (void)vlen;
  (*(long *)c)++;
  return true;
}

/* Its queued operations: Q keys (the queue is written with every change). */
static long backlog_of(dts_hub *h, const char *id) {
  dts_key k;
  dts_key_id(&k, &h->ks, 'Q', id);
  dts_key_sep(&k);
  long n = 0;
  dts_store_scan(h->cfg.store, k.b, k.n, count_visit, &n);
  return n;
}

static bool ent_query_keep(ent_walk *w, const char *id, dts_ent_rec *r) {
  const EntityQuery *q = w->ctx;
  if (r->state == NULL) { /* transient: no state, only a queue or a lock */
    if (!q->include_transient) return false;
    if (r->locked_by == NULL && backlog_of(w->h, id) == 0) return false;
  }
  if (q->last_modified_from && r->modified < dts_ts_to_ns(q->last_modified_from)) return false;
  if (q->last_modified_to && r->modified > dts_ts_to_ns(q->last_modified_to)) return false;
  return true;
}

void query_entities(dts_hub *h, dts_call *c, QueryEntitiesRequest *r) {
  EntityQuery empty = ENTITY_QUERY__INIT;
  EntityQuery *q = r->query ? r->query : &empty;
  const char *prefix = dts_sv_get(q->instance_id_starts_with), *after = dts_sv_get(q->continuation_token);
  if ((prefix && strlen(prefix) > DTS_ID_MAX) || (after && strlen(after) > DTS_ID_MAX)) {
    hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT,
                    "instanceIdStartsWith and continuationToken are at most 100 characters");
    return;
  }
  size_t page = q->page_size && q->page_size->value > 0 ? (size_t)q->page_size->value : 100;
  if (page > (size_t)h->cfg.limits.max_page) page = (size_t)h->cfg.limits.max_page;
  ent_walk w = {.h = h, .prefix = prefix ? prefix : "", .plen = prefix ? strlen(prefix) : 0,
                .after = after && after[0] ? after : NULL, .want = page,
                .budget = (size_t)h->cfg.limits.scan_budget, .keep = ent_query_keep, .ctx = q};
  bool ok = ent_walk_run(&w);
  EntityMetadata *mb = dts_calloc(w.n ? w.n : 1, sizeof(*mb));
  EntityMetadata **mp = dts_calloc(w.n ? w.n : 1, sizeof(*mp));
  Google__Protobuf__Timestamp *ts = dts_calloc(w.n ? w.n : 1, sizeof(*ts));
  Google__Protobuf__StringValue *lb = dts_calloc(w.n ? w.n : 1, sizeof(*lb));
  Google__Protobuf__StringValue *st = dts_calloc(w.n ? w.n : 1, sizeof(*st));
  for (size_t i = 0; i < w.n; i++) {
    entity_metadata__init(&mb[i]);
    mb[i].instance_id = w.ids[i];
    mb[i].last_modified_time = dts_ts_from_ns(&ts[i], w.recs[i].modified);
    mb[i].backlog_queue_size = (int32_t)backlog_of(h, w.ids[i]);
    mb[i].locked_by = dts_sv(&lb[i], w.recs[i].locked_by);
    if (q->include_state) mb[i].serialized_state = dts_sv(&st[i], w.recs[i].state);
    mp[i] = &mb[i];
  }
  QueryEntitiesResponse resp = QUERY_ENTITIES_RESPONSE__INIT;
  Google__Protobuf__StringValue tok;
  resp.entities = mp;
  resp.n_entities = w.n;
  if (w.more) resp.continuation_token = dts_sv(&tok, w.last);
  if (ok) hub_answer(h, c, &resp.base);
  else hub_answer_fail(h, c, DTS_ST_INTERNAL, "%s", w.why);
  for (size_t i = 0; i < w.n; i++) {
    dts_free(w.ids[i]);
    dts_ent_rec_fini(&w.recs[i]);
  }
  dts_free(w.ids);
  dts_free(w.recs);
  dts_free(w.backlog);
  dts_free(mb);
  dts_free(mp);
  dts_free(ts);
  dts_free(lb);
  dts_free(st);
}

/* ---- CountInstances (dtsd.admin) -------------------------------------------- */

/* "<hub>\0S<st><created><id>": counted by status, the scan budget a call;
 * the token "<st>:<created>:<id>" names the last entry counted. */
typedef struct scount {
  dts_hub *h;
  long budget;
  int64_t by[16];
  const char *skip; /* the token's entry: counted by the call before */
  size_t skiplen;
  bool cut;
  char last[DTS_ID_MAX + 48];
} scount;

static bool scount_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v;
  (void)vlen;
  scount *s = c;
  size_t off = s->h->ks.len + 2;
  if (klen <= off + 9) return true;
  if (s->skip != NULL && klen == s->skiplen && memcmp(k, s->skip, klen) == 0) return true;
  const char *id = k + off + 9;
  size_t n = klen - off - 9;
  if (n > DTS_ID_MAX) return true;
  if (id[0] != '@') s->by[(uint8_t)k[off] & 15]++;
  if (--s->budget > 0) return true;
  s->cut = true;
  snprintf(s->last, sizeof(s->last), "%d:%" PRId64 ":%.*s", (uint8_t)k[off], (int64_t)dts_key_be64(k + off + 1), (int)n, id);
  return false;
}

void query_count(dts_hub *h, dts_call *c, Dtsd__Admin__CountInstancesRequest *r) {
  scount s = {.h = h, .budget = h->cfg.limits.scan_budget};
  dts_key pre, from;
  dts_key_start(&pre, &h->ks, 'S');
  from = pre;
  const char *tok = dts_sv_get(r->continuation_token);
  if (tok != NULL && tok[0] != '\0') {
    char *p1, *p2;
    long st = strtol(tok, &p1, 10);
    int64_t t = *p1 == ':' ? strtoll(p1 + 1, &p2, 10) : -1;
    if (*p1 != ':' || t < 0 || *p2 != ':' || st < 0 || st > 15 || strlen(p2 + 1) > DTS_ID_MAX) {
      hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "continuationToken '%.80s' was not made by CountInstances", tok);
      return;
    }
    dts_key_byte(&from, (char)st);
    dts_key_u64(&from, (uint64_t)t);
    dts_key_str(&from, p2 + 1);
    s.skip = (const char *)from.b;
    s.skiplen = from.n;
  }
  char why[400] = "";
  if (!scan(h, pre.b, pre.n, from.b, from.n, scount_visit, &s, why, sizeof(why))) {
    hub_answer_fail(h, c, DTS_ST_INTERNAL, "%s", why);
    return;
  }
  Dtsd__Admin__CountInstancesResponse resp = DTSD__ADMIN__COUNT_INSTANCES_RESPONSE__INIT;
  resp.by_status = s.by;
  resp.n_by_status = 8;
  Google__Protobuf__StringValue tv;
  if (s.cut) resp.continuation_token = dts_sv(&tv, s.last);
  hub_answer(h, c, &resp.base);
}
