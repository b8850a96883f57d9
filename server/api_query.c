/* api_query.c -- POST /orchestrations/query: the emulator's filter, sort
 * and paging over QueryInstances.
 *
 * The engine's query filters by status, creation time and id prefix and
 * pages by continuation token; the rest of the API's filter (name,
 * version, tags, id substring, the other time ranges, text search in
 * custom status, input and output) is applied here, to at most max_scan
 * instances the engine returns (--http-max-scan).  Sorted by creation time
 * alone (the default, newest first), the engine walks its time index in
 * that order (newest_first, dtsd's extension of InstanceQuery), so the
 * rows are right however many instances there are, and with
 * "fetchTotalCount": false the scan stops once the page is full.  Any other
 * sort gathers the matches, sorts them here and answers a page.  Counts
 * (totalCount, trivia) follow the filter over what was looked at; when
 * the scan stopped early the answer says "truncated": true.
 */
#define _GNU_SOURCE /* strcasestr */
#include "server/api.h"

#include "runtime/alloc.h"
#include "runtime/timer.h"
#include "server/pbjson.h"

#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ENGINE_PAGE 1000
#define MAX_COUNT 1000
#define MAX_SEARCH 64 * 1024 /* payload bytes looked at per field by the text search */

typedef struct row {
  char *id, *name, *version, *tags, *exec, *parent;
  json_t *tagmap; /* the tags as answered (NULL: none) */
  int status;
  int64_t created, updated, started, completed;
} row;

typedef struct qfilter {
  int status[16];
  size_t nstatus;
  const char *id, *name, *version, *tags, *search, *prefix;
  int64_t from[4], to[4]; /* createdAt, lastUpdatedAt, startAt, completedAt */
  bool hide_subs;
} qfilter;

typedef struct qsort_key {
  int col;
  bool desc;
} qsort_key;

enum { C_ID, C_NAME, C_VERSION, C_CREATED, C_UPDATED, C_START, C_COMPLETED, C_STATUS, C_TAGS, NCOLS };
static const char *const COLS[NCOLS] = {
    "ORCHESTRATION_ID",     "NAME", "VERSION", "CREATED_AT", "LAST_UPDATED_AT", "START_AT", "COMPLETED_AT",
    "ORCHESTRATION_STATUS", "TAGS"};
static const char *const RANGES[4] = {"createdAt", "lastUpdatedAt", "startAt", "completedAt"};

/* {value: "..."} or a bare string. */
static const char *valued(json_t *f, const char *key) {
  json_t *v = json_object_get(f, key);
  if (json_is_object(v)) v = json_object_get(v, "value");
  return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

static bool parse_status(api *a, json_t *f, qfilter *q) {
  json_t *s = json_object_get(f, "orchestrationStatus");
  if (json_is_object(s)) s = json_object_get(s, "status");
  if (s == NULL || json_is_null(s)) return true;
  if (!json_is_array(s) || json_array_size(s) > 16) {
    http_error(a->out, 400, "orchestrationStatus.status must be an array of statuses");
    return false;
  }
  for (size_t i = 0; i < json_array_size(s); i++) {
    const char *n = json_string_value(json_array_get(s, i));
    const ProtobufCEnumValue *v =
        n ? protobuf_c_enum_descriptor_get_value_by_name(&orchestration_status__descriptor, n) : NULL;
    if (v == NULL) {
      http_error(a->out, 400, "unknown status '%s' (statuses are spelled ORCHESTRATION_STATUS_RUNNING, ...)",
                 n ? n : "?");
      return false;
    }
    q->status[q->nstatus++] = v->value;
  }
  return true;
}

static bool parse_filter(api *a, json_t *f, qfilter *q) {
  memset(q, 0, sizeof(*q));
  q->hide_subs = false;
  if (f == NULL || json_is_null(f)) return true;
  if (!json_is_object(f)) {
    http_error(a->out, 400, "'filter' must be an object");
    return false;
  }
  q->id = valued(f, "orchestrationId");
  q->prefix = valued(f, "orchestrationIdPrefix");
  q->name = valued(f, "name");
  q->version = valued(f, "version");
  q->tags = valued(f, "tags");
  q->search = valued(f, "search");
  q->hide_subs = json_is_true(json_object_get(f, "hideSubOrchestrations"));
  if (q->search && strlen(q->search) > 256) {
    http_error(a->out, 400, "search text is longer than 256 bytes");
    return false;
  }
  for (int i = 0; i < 4; i++) {
    json_t *r = json_object_get(f, RANGES[i]);
    if (r == NULL || json_is_null(r)) continue;
    if (!json_is_object(r) || !api_time(a, r, "start", &q->from[i]) || !api_time(a, r, "end", &q->to[i])) {
      if (!json_is_object(r)) http_error(a->out, 400, "'%s' must be {start, end}", RANGES[i]);
      return false;
    }
  }
  return parse_status(a, f, q);
}

static bool in_range(int64_t t, int64_t from, int64_t to) {
  if (from > 0 && t < from) return false;
  if (to > 0 && (t == 0 || t > to)) return false;
  return true;
}

static bool contains(const char *hay, const char *needle) {
  if (hay == NULL) return false;
  size_t n = strnlen(hay, MAX_SEARCH);
  if (n == MAX_SEARCH) { /* a bounded look at a large payload */
    char *cut = dts_strndup(hay, MAX_SEARCH);
    bool m = strcasestr(cut, needle) != NULL;
    dts_free(cut);
    return m;
  }
  return strcasestr(hay, needle) != NULL;
}

static char *tags_text(const OrchestrationState *s) {
  size_t n = 1;
  for (size_t i = 0; i < s->n_tags; i++)
    n += strlen(s->tags[i]->key) + strlen(s->tags[i]->value) + 2;
  char *t = dts_malloc(n);
  size_t k = 0;
  for (size_t i = 0; i < s->n_tags; i++)
    k += (size_t)snprintf(t + k, n - k, "%s=%s;", s->tags[i]->key, s->tags[i]->value);
  t[k] = '\0';
  return t;
}

static bool matches(const qfilter *q, const OrchestrationState *s, const char *tags) {
  const char *ver = dts_sv_get(s->version) ? dts_sv_get(s->version) : "";
  const char *pid = dts_sv_get(s->parent_instance_id);
  if (q->hide_subs && pid && pid[0]) return false;
  if (q->id && !contains(s->instance_id, q->id)) return false;
  if (q->name && !contains(s->name, q->name)) return false;
  if (q->version && !contains(ver, q->version)) return false;
  if (q->tags && !contains(tags, q->tags)) return false;
  int64_t t[4] = {dts_ts_to_ns(s->created_timestamp), dts_ts_to_ns(s->last_updated_timestamp),
                  dts_ts_to_ns(s->scheduled_start_timestamp), dts_ts_to_ns(s->completed_timestamp)};
  for (int i = 0; i < 4; i++)
    if (!in_range(t[i], q->from[i], q->to[i])) return false;
  if (q->search && !contains(dts_sv_get(s->custom_status), q->search) && !contains(dts_sv_get(s->input), q->search) &&
      !contains(dts_sv_get(s->output), q->search))
    return false;
  return true;
}

typedef struct sort_by {
  const qsort_key *keys;
  int n;
} sort_by;

static int cmp_i64(int64_t x, int64_t y) { return x < y ? -1 : x > y; }

static int cmp_rows(const void *x, const void *y, void *ctx) {
  const row *p = x, *r = y;
  const sort_by *sb = ctx;
  for (int i = 0; i < sb->n; i++) {
    int c = 0;
    switch (sb->keys[i].col) {
    case C_ID:
      c = strcmp(p->id, r->id);
      break;
    case C_NAME:
      c = strcmp(p->name, r->name);
      break;
    case C_VERSION:
      c = strcmp(p->version, r->version);
      break;
    case C_CREATED:
      c = cmp_i64(p->created, r->created);
      break;
    case C_UPDATED:
      c = cmp_i64(p->updated, r->updated);
      break;
    case C_START:
      c = cmp_i64(p->started, r->started);
      break;
    case C_COMPLETED:
      c = cmp_i64(p->completed, r->completed);
      break;
    case C_STATUS:
      c = p->status - r->status;
      break;
    case C_TAGS:
      c = strcmp(p->tags, r->tags);
      break;
    }
    if (c != 0) return sb->keys[i].desc ? -c : c;
  }
  return strcmp(p->id, r->id);
}

static bool parse_sort(api *a, json_t *s, qsort_key *keys, int *n) {
  *n = 0;
  if (s == NULL || json_is_null(s)) {
    keys[(*n)++] = (qsort_key){C_CREATED, true};
    return true;
  }
  if (!json_is_array(s) || json_array_size(s) > 4) {
    http_error(a->out, 400, "'sort' must be an array of at most 4 {column, direction}");
    return false;
  }
  for (size_t i = 0; i < json_array_size(s); i++) {
    json_t *k = json_array_get(s, i);
    const char *col = api_str(k, "column", NULL), *dir = api_str(k, "direction", NULL);
    int c = -1;
    for (int j = 0; col && j < NCOLS; j++)
      if (strcmp(col, COLS[j]) == 0) c = j;
    if (c < 0 || (dir && strcmp(dir, "ASCENDING_SORT") != 0 && strcmp(dir, "DESCENDING_SORT") != 0)) {
      http_error(a->out, 400, "unknown sort column '%s' or direction '%s'", col ? col : "?", dir ? dir : "?");
      return false;
    }
    keys[(*n)++] = (qsort_key){c, dir && strcmp(dir, "DESCENDING_SORT") == 0};
  }
  return true;
}

typedef struct scan {
  row *rows;
  size_t n, cap, seen;
  bool count_only; /* matches are counted, not kept */
  long matched;
  bool truncated;
  long counts[8]; /* by status */
  int64_t earliest, latest;
} scan;

static char *dup_sv(const Google__Protobuf__StringValue *v) { return dts_strdup(dts_sv_get(v) ? dts_sv_get(v) : ""); }

/* A match, kept small: its JSON is built only if it lands on the page. */
static void keep(scan *sc, const OrchestrationState *s, char *tags) {
  int st = (int)s->orchestration_status;
  int64_t created = dts_ts_to_ns(s->created_timestamp);
  sc->matched++;
  if (st >= 0 && st < 8) sc->counts[st]++;
  if (created > 0 && (sc->earliest == 0 || created < sc->earliest)) sc->earliest = created;
  if (created > sc->latest) sc->latest = created;
  if (sc->count_only) {
    dts_free(tags);
    return;
  }
  if (sc->n == sc->cap) {
    sc->cap = sc->cap ? sc->cap * 2 : 256;
    sc->rows = dts_realloc(sc->rows, sc->cap * sizeof(*sc->rows));
  }
  row *r = &sc->rows[sc->n++];
  r->id = dts_strdup(s->instance_id);
  r->name = dts_strdup(s->name);
  r->version = dup_sv(s->version);
  r->exec = dup_sv(s->execution_id);
  r->parent = dup_sv(s->parent_instance_id);
  r->tags = tags;
  r->tagmap = NULL;
  for (size_t i = 0; i < s->n_tags; i++) {
    if (strncmp(s->tags[i]->key, "durabletask.", 12) == 0) continue; /* reserved: hidden from lists */
    if (r->tagmap == NULL) r->tagmap = json_object();
    json_object_set_new(r->tagmap, s->tags[i]->key, json_string(s->tags[i]->value ? s->tags[i]->value : ""));
  }
  r->status = (int)s->orchestration_status;
  r->created = dts_ts_to_ns(s->created_timestamp);
  r->updated = dts_ts_to_ns(s->last_updated_timestamp);
  r->started = dts_ts_to_ns(s->scheduled_start_timestamp);
  r->completed = dts_ts_to_ns(s->completed_timestamp);
}

/* The row as api_state_json answers an orchestration. */
static json_t *row_json(const row *r) {
  json_t *o = json_object();
  json_object_set_new(o, "instanceId", json_string(r->id));
  json_object_set_new(o, "executionId", json_string(r->exec));
  json_object_set_new(o, "name", json_string(r->name));
  json_object_set_new(o, "version", json_string(r->version));
  json_object_set_new(o, "createdAt", pbjson_time_value(r->created));
  json_object_set_new(o, "lastUpdatedAt", pbjson_time_value(r->updated));
  json_object_set_new(o, "completedAt", pbjson_time_value(r->completed));
  json_object_set_new(o, "scheduledStartAt", pbjson_time_value(r->started));
  const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(&orchestration_status__descriptor, r->status);
  json_object_set_new(o, "orchestrationStatus", json_string(ev ? ev->name : "ORCHESTRATION_STATUS_UNKNOWN"));
  json_object_set_new(o, "parentInstanceId", r->parent[0] ? json_string(r->parent) : json_null());
  json_object_set_new(o, "tags", r->tagmap ? json_incref(r->tagmap) : json_object());
  return o;
}

/* How the engine is asked to walk: newest first or oldest first (rows
 * come in the order a creation-time sort wants, so a page can be answered
 * before the end), or in its own order (everything is sorted here). */
enum { PLAN_ANY, PLAN_NEWEST, PLAN_OLDEST };

/* Pages through the engine's QueryInstances; false: the error answered.
 * `enough` (> 0, ordered plans only): stop once that many matched. */
static bool run_scan(api *a, const qfilter *q, int plan, size_t enough, scan *sc) {
  char cont[512] = "";
  long limit = a->r->cfg->max_scan;
  for (;;) {
    QueryInstancesRequest req = QUERY_INSTANCES_REQUEST__INIT;
    InstanceQuery iq = INSTANCE_QUERY__INIT;
    Google__Protobuf__Timestamp cf, ct;
    Google__Protobuf__StringValue cv, pv;
    req.query = &iq;
    iq.runtime_status = (OrchestrationStatus *)q->status;
    iq.n_runtime_status = q->nstatus;
    int64_t from = q->from[0] > 0 ? q->from[0] : plan == PLAN_OLDEST ? 1 : 0; /* a range: the time-ordered index */
    if (from > 0) iq.created_time_from = dts_ts_from_ns(&cf, from);
    if (q->to[0] > 0) iq.created_time_to = dts_ts_from_ns(&ct, q->to[0]);
    if (q->prefix) iq.instance_id_prefix = dts_sv(&pv, q->prefix);
    if (cont[0]) iq.continuation_token = dts_sv(&cv, cont);
    /* a page that stops early asks about what it still needs (filters here may drop some) */
    size_t need = enough > sc->n ? enough - sc->n + 16 : ENGINE_PAGE;
    iq.max_instance_count = (int32_t)(need < ENGINE_PAGE ? need : ENGINE_PAGE);
    iq.fetch_inputs_and_outputs = q->search != NULL;
    iq.newest_first = plan == PLAN_NEWEST;
    dts_call *c = api_call(a, DTS_M_QUERY_INSTANCES, &req.base);
    if (c == NULL) return false;
    QueryInstancesResponse *r = (QueryInstancesResponse *)api_unpack(a, c, &query_instances_response__descriptor);
    dts_local_release(c);
    if (r == NULL) return false;
    for (size_t i = 0; i < r->n_orchestration_state; i++) {
      const OrchestrationState *s = r->orchestration_state[i];
      char *tags = tags_text(s);
      sc->seen++;
      if (matches(q, s, tags))
        keep(sc, s, tags);
      else
        dts_free(tags);
    }
    const char *next = dts_sv_get(r->continuation_token);
    bool more = next != NULL && next[0] != '\0' && strlen(next) < sizeof(cont);
    if (more) snprintf(cont, sizeof(cont), "%s", next);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (!more) return true;
    if ((long)sc->seen >= limit || (enough > 0 && (size_t)sc->matched >= enough)) {
      sc->truncated = true;
      return true;
    }
  }
}

static void scan_free(scan *sc) {
  for (size_t i = 0; i < sc->n; i++) {
    if (sc->rows[i].tagmap) json_decref(sc->rows[i].tagmap);
    dts_free(sc->rows[i].exec);
    dts_free(sc->rows[i].parent);
    dts_free(sc->rows[i].id);
    dts_free(sc->rows[i].name);
    dts_free(sc->rows[i].version);
    dts_free(sc->rows[i].tags);
  }
  dts_free(sc->rows);
}

/* The page from `sc`'s rows, the counts from `cnt` (the same scan, or a
 * counting scan of its own). */
static void answer(api *a, scan *sc, const scan *cnt, const qsort_key *keys, int nkeys, bool ordered, long start,
                   long count) {
  sort_by sb = {keys, nkeys};
  if (!ordered && sc->n > 1) qsort_r(sc->rows, sc->n, sizeof(*sc->rows), cmp_rows, &sb);
  json_t *list = json_array();
  for (long i = start; i < (long)sc->n && i < start + count; i++)
    json_array_append_new(list, row_json(&sc->rows[i]));
  json_t *trivia = json_object();
  json_object_set_new(trivia, "earliestTimestamp", pbjson_time_value(cnt->earliest));
  json_object_set_new(trivia, "latestTimestamp", pbjson_time_value(cnt->latest));
  json_object_set_new(trivia, "totalCount", json_integer(cnt->matched));
  json_object_set_new(trivia, "completedCount", json_integer(cnt->counts[1]));
  json_object_set_new(trivia, "runningCount", json_integer(cnt->counts[0]));
  json_object_set_new(trivia, "failedCount", json_integer(cnt->counts[3]));
  json_object_set_new(trivia, "pendingCount", json_integer(cnt->counts[6]));
  json_object_set_new(trivia, "suspendedCount", json_integer(cnt->counts[7]));
  json_object_set_new(trivia, "terminatedCount", json_integer(cnt->counts[5]));
  json_t *j = json_object();
  json_object_set_new(j, "orchestrations", list);
  json_object_set_new(j, "totalCount", json_integer(cnt->matched));
  json_object_set_new(j, "trivia", trivia);
  json_object_set_new(j, "truncated", json_boolean(cnt->truncated));
  json_object_set_new(j, "scanned", json_integer((json_int_t)(cnt->seen > sc->seen ? cnt->seen : sc->seen)));
  api_json(a, 200, j);
}

/* Counts of a filter, shared by the requests that accept counts up to
 * "maxCountAgeMs" old (dtsd's extension; the dashboard sends 10 s): ten
 * dashboards open on one hub cost one count, not ten.  Without it a query
 * counts afresh.  Keyed by the hub and the filter's JSON (keys sorted). */
#define COUNTS_MAX_AGE_MS 60000
#define COUNTS_CACHE 16
typedef struct counts_entry {
  char *key;
  uint64_t at;
  scan c; /* counts only: no rows */
} counts_entry;
static pthread_mutex_t counts_mu = PTHREAD_MUTEX_INITIALIZER;
static counts_entry counts_cache[COUNTS_CACHE];

static char *counts_key(api *a, json_t *filter) {
  char *f = filter ? json_dumps(filter, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
  size_t n = strlen(a->hub) + (f ? strlen(f) : 0) + 2;
  char *k = dts_malloc(n);
  snprintf(k, n, "%s\n%s", a->hub, f ? f : "");
  free(f);
  return k;
}

static bool counts_cached(const char *key, long max_age_ms, scan *out) {
  bool hit = false;
  uint64_t now = dts_now_ns();
  if (max_age_ms <= 0) return false;
  if (max_age_ms > COUNTS_MAX_AGE_MS) max_age_ms = COUNTS_MAX_AGE_MS;
  pthread_mutex_lock(&counts_mu);
  for (int i = 0; i < COUNTS_CACHE && !hit; i++) {
    counts_entry *e = &counts_cache[i];
    if (e->key != NULL && now - e->at < (uint64_t)max_age_ms * 1000000ULL && strcmp(e->key, key) == 0) {
      *out = e->c;
      hit = true;
    }
  }
  pthread_mutex_unlock(&counts_mu);
  return hit;
}

static void counts_keep(const char *key, const scan *c) {
  pthread_mutex_lock(&counts_mu);
  counts_entry *e = &counts_cache[0];
  for (int i = 0; i < COUNTS_CACHE; i++) { /* the same key, else the oldest */
    if (counts_cache[i].key != NULL && strcmp(counts_cache[i].key, key) == 0) {
      e = &counts_cache[i];
      break;
    }
    if (counts_cache[i].at < e->at) e = &counts_cache[i];
  }
  dts_free(e->key);
  e->key = dts_strdup(key);
  e->at = dts_now_ns();
  e->c = *c;
  e->c.rows = NULL;
  e->c.n = e->c.cap = 0;
  pthread_mutex_unlock(&counts_mu);
}

void api_orch_query(api *a) {
  json_t *b = a->r->blen ? api_body(a, false) : json_object();
  if (b == NULL) return;
  qfilter q;
  qsort_key keys[4];
  int nkeys;
  long start = 0, count = 100;
  json_t *pg = json_object_get(b, "pagination");
  if (json_is_object(pg)) {
    json_t *s = json_object_get(pg, "startIndex"), *c = json_object_get(pg, "count");
    if (json_is_integer(s)) start = (long)json_integer_value(s);
    if (json_is_integer(c)) count = (long)json_integer_value(c);
  }
  if (start < 0 || count < 1 || count > MAX_COUNT) {
    http_error(a->out, 400, "pagination: startIndex >= 0 and count from 1 to %d", MAX_COUNT);
  } else if (parse_filter(a, json_object_get(b, "filter"), &q) &&
             parse_sort(a, json_object_get(b, "sort"), keys, &nkeys)) {
    /* one sort key on the creation time: the engine walks in that order */
    int plan = nkeys == 1 && keys[0].col == C_CREATED && q.prefix == NULL ? (keys[0].desc ? PLAN_NEWEST : PLAN_OLDEST)
                                                                         : PLAN_ANY;
    bool counts = !json_is_false(json_object_get(b, "fetchTotalCount"));
    scan sc = {0}, cnt = {.count_only = true};
    if (plan == PLAN_ANY) { /* one scan: gather, count, sort */
      if (run_scan(a, &q, plan, 0, &sc)) answer(a, &sc, &sc, keys, nkeys, false, start, count);
    } else if (run_scan(a, &q, plan, (size_t)(start + count + 1), &sc)) {
      /* the rows in order, stopping when the page is full; the counts (when
       * asked) from a scan of the engine's cheapest order -- an ordered walk
       * backwards in time rereads the deleted index entries of every status
       * an instance passed through for each page (docs/http-api.md) */
      char *ck = counts ? counts_key(a, json_object_get(b, "filter")) : NULL;
      if (!counts) answer(a, &sc, &sc, keys, nkeys, true, start, count);
      else if (counts_cached(ck, (long)json_integer_value(json_object_get(b, "maxCountAgeMs")), &cnt))
        answer(a, &sc, &cnt, keys, nkeys, true, start, count);
      else if (run_scan(a, &q, PLAN_ANY, 0, &cnt)) {
        counts_keep(ck, &cnt);
        answer(a, &sc, &cnt, keys, nkeys, true, start, count);
      }
      dts_free(ck);
    }
    scan_free(&sc);
    scan_free(&cnt);
  }
  json_decref(b);
}

size_t api_query_ids(api *a, json_t *filter, long limit, char ***ids, bool *truncated) {
  *ids = NULL;
  *truncated = false;
  qfilter q;
  if (!parse_filter(a, filter, &q)) return (size_t)-1;
  scan sc = {0};
  size_t n = (size_t)-1;
  if (run_scan(a, &q, PLAN_ANY, limit > 0 ? (size_t)limit : 0, &sc)) {
    n = sc.n;
    *truncated = sc.truncated;
    *ids = dts_calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
      (*ids)[i] = sc.rows[i].id;
      sc.rows[i].id = NULL; /* taken */
    }
  }
  scan_free(&sc);
  return n;
}

/* ---- the filter for the export (api_export.c) ------------------------------ */

struct api_filter {
  json_t *json; /* holds the strings q points into */
  qfilter q;
};

api_filter *api_filter_new(api *a, json_t *filter) {
  api_filter *f = dts_calloc(1, sizeof(*f));
  f->json = filter ? json_incref(filter) : NULL;
  if (!parse_filter(a, f->json, &f->q)) {
    api_filter_free(f);
    return NULL;
  }
  return f;
}

void api_filter_free(api_filter *f) {
  if (f == NULL) return;
  if (f->json) json_decref(f->json);
  dts_free(f);
}

bool api_filter_match(const api_filter *f, const OrchestrationState *s) {
  char *tags = tags_text(s);
  bool m = matches(&f->q, s, tags);
  dts_free(tags);
  return m;
}

void api_filter_query(const api_filter *f, InstanceQuery *iq, Google__Protobuf__Timestamp *cf,
                      Google__Protobuf__Timestamp *ct, Google__Protobuf__StringValue *pv) {
  const qfilter *q = &f->q;
  iq->runtime_status = (OrchestrationStatus *)q->status;
  iq->n_runtime_status = q->nstatus;
  if (q->from[0] > 0) iq->created_time_from = dts_ts_from_ns(cf, q->from[0]);
  if (q->to[0] > 0) iq->created_time_to = dts_ts_from_ns(ct, q->to[0]);
  if (q->prefix) iq->instance_id_prefix = dts_sv(pv, q->prefix);
  iq->fetch_inputs_and_outputs = q->search != NULL;
  iq->newest_first = q->prefix == NULL;
}
