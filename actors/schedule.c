/* schedule.c -- recurring orchestration starts held by the hub actor
 * (dtsd.admin.Admin's schedule methods; docs/schedules.md).
 *
 * Each schedule is a record under the hub's "P<id>" key and, in memory, an
 * entry of hub_state.scheds.  An occurrence is started by one batch that
 * holds both the schedule's advanced record (next run, last run, count) and
 * the new instance's ExecutionStarted as a stored message (eng_post): the
 * instance takes it like a sub-orchestration start.  So a crash either
 * keeps both or neither -- every occurrence starts exactly once -- and the
 * start itself survives like any message between actors.
 *
 * Time is wall-clock time: occurrences fall on start_at + k * interval.  A
 * schedule whose due occurrence is past by a whole interval or more (dtsd
 * was down, the clock jumped forward) missed occurrences; it starts one at
 * once if start_immediately_if_late, else waits for the next, and never
 * starts one per missed interval.  A clock that jumps back only delays the
 * next occurrence: the record says which ones have run.
 */
#include "actors/hubint.h"
#include "runtime/timer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCHED_MAX 10000                        /* schedules per hub */
#define SCHED_ID_MAX 80                        /* leaves room for "-yyyyMMddTHHmmssZ" within DTS_ID_MAX */
#define SCHED_NAME_MAX 256
#define SEC_NS INT64_C(1000000000)
#define INTERVAL_MAX_NS (INT64_C(3660) * 86400 * SEC_NS) /* ten years */
#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

typedef struct sched {
  char *id, *name, *input, *fixed_id, *version; /* input, fixed_id, version: NULL when absent */
  int64_t interval, start_at, end_at;           /* ns; start_at/end_at 0: none */
  bool late_now;                                /* start_immediately_if_late */
  int status;                                   /* DTSD__ADMIN__SCHEDULE_STATUS__* */
  int64_t created, updated, next_run, last_run; /* wall ns; 0: none */
  char *last_id;
  int64_t runs;
} sched;

#define SS(x) DTSD__ADMIN__SCHEDULE_STATUS__SCHEDULE_STATUS_##x

static void sched_free(sched *s) {
  if (s == NULL) return;
  dts_free(s->id);
  dts_free(s->name);
  dts_free(s->input);
  dts_free(s->fixed_id);
  dts_free(s->version);
  dts_free(s->last_id);
  dts_free(s);
}

static char *dup_or_null(const char *p) { return p != NULL ? dts_strdup(p) : NULL; }

/* ---- records ------------------------------------------------------------- */

/* Fills m from s; the timestamps and wrappers live in the caller's storage. */
typedef struct sched_pb {
  Dtsd__Admin__Schedule m;
  Google__Protobuf__StringValue in, fid, ver;
  Google__Protobuf__Duration iv;
  Google__Protobuf__Timestamp ts[6];
} sched_pb;

static Google__Protobuf__Timestamp *ts_or_null(Google__Protobuf__Timestamp *t, int64_t ns) {
  return ns != 0 ? dts_ts_from_ns(t, ns) : NULL;
}

static void to_pb(const sched *s, sched_pb *p) {
  dtsd__admin__schedule__init(&p->m);
  google__protobuf__duration__init(&p->iv);
  p->m.schedule_id = s->id;
  p->m.orchestration_name = s->name;
  p->m.orchestration_input = dts_sv(&p->in, s->input);
  p->m.orchestration_instance_id = dts_sv(&p->fid, s->fixed_id);
  p->m.orchestration_version = dts_sv(&p->ver, s->version);
  p->iv.seconds = s->interval / SEC_NS;
  p->iv.nanos = (int32_t)(s->interval % SEC_NS);
  p->m.interval = &p->iv;
  p->m.start_at = ts_or_null(&p->ts[0], s->start_at);
  p->m.end_at = ts_or_null(&p->ts[1], s->end_at);
  p->m.start_immediately_if_late = s->late_now;
  p->m.status = (Dtsd__Admin__ScheduleStatus)s->status;
  p->m.created_at = ts_or_null(&p->ts[2], s->created);
  p->m.next_run_at = ts_or_null(&p->ts[3], s->next_run);
  p->m.last_run_at = ts_or_null(&p->ts[4], s->last_run);
  p->m.updated_at = ts_or_null(&p->ts[5], s->updated);
  p->m.last_run_instance_id = s->last_id != NULL ? s->last_id : "";
  p->m.run_count = s->runs;
}

static int64_t dur_ns(const Google__Protobuf__Duration *d) {
  if (d == NULL || d->seconds < 0 || d->nanos < 0 || d->seconds > INTERVAL_MAX_NS / SEC_NS) return -1;
  return d->seconds * SEC_NS + d->nanos;
}

/* What a request or a record says, unchecked (sched_problem checks it). */
static sched *from_pb(const Dtsd__Admin__Schedule *m) {
  sched *s = dts_calloc(1, sizeof(*s));
  s->id = dts_strdup(m->schedule_id);
  s->name = dts_strdup(m->orchestration_name);
  s->input = dup_or_null(dts_sv_get(m->orchestration_input));
  s->fixed_id = dup_or_null(dts_sv_get(m->orchestration_instance_id));
  s->version = dup_or_null(dts_sv_get(m->orchestration_version));
  s->interval = dur_ns(m->interval);
  s->start_at = dts_ts_to_ns(m->start_at);
  s->end_at = dts_ts_to_ns(m->end_at);
  s->late_now = m->start_immediately_if_late;
  s->status = (int)m->status;
  s->created = dts_ts_to_ns(m->created_at);
  s->updated = dts_ts_to_ns(m->updated_at);
  s->next_run = dts_ts_to_ns(m->next_run_at);
  s->last_run = dts_ts_to_ns(m->last_run_at);
  s->last_id = m->last_run_instance_id[0] != '\0' ? dts_strdup(m->last_run_instance_id) : NULL;
  s->runs = m->run_count;
  return s;
}

static const char *sched_problem(const sched *s, size_t max_payload, char *buf, size_t len) {
  const char *p;
  if (s->id[0] == '\0') return "scheduleId is required";
  if ((p = dts_instance_id_problem(s->id)) != NULL) {
    snprintf(buf, len, "scheduleId: %s", p);
    return buf;
  }
  if (strlen(s->id) > SCHED_ID_MAX) return "scheduleId is longer than 80 characters";
  if (s->name[0] == '\0') return "orchestrationName is required";
  if (strlen(s->name) > SCHED_NAME_MAX) return "orchestrationName is longer than 256 characters";
  if (s->fixed_id != NULL && (p = dts_instance_id_problem(s->fixed_id)) != NULL) {
    snprintf(buf, len, "orchestrationInstanceId: %s", p);
    return buf;
  }
  if (s->version != NULL && strlen(s->version) > SCHED_NAME_MAX) return "orchestrationVersion is longer than 256 characters";
  if (s->input != NULL && strlen(s->input) > max_payload) {
    snprintf(buf, len, "orchestrationInput is larger than %zu bytes", max_payload);
    return buf;
  }
  if (s->interval < SEC_NS) return "interval is required and must be at least one second (and at most ten years)";
  if (s->start_at < 0 || s->end_at < 0) return "startAt and endAt must be after 1970";
  if (s->end_at != 0 && s->start_at != 0 && s->end_at <= s->start_at) return "endAt must be after startAt";
  return NULL;
}

static void sched_key(dts_hub *h, const char *id, dts_key *k) { dts_key_id(k, &h->ks, 'P', id); }

static void sched_write(dts_hub *h, const sched *s) {
  sched_pb p;
  to_pb(s, &p);
  dts_buf b = dts_pb_pack(&p.m.base);
  dts_key k;
  sched_key(h, s->id, &k);
  dts_batch_put(eng_batch(&h->base, &h->hs->tx), k.b, k.n, b.p, b.n);
  dts_buf_free(&b);
}

/* ---- time ----------------------------------------------------------------- */

static int64_t anchor(const sched *s) { return s->start_at != 0 ? s->start_at : s->created; }

/* The first occurrence strictly after t. */
static int64_t boundary_after(const sched *s, int64_t t) {
  int64_t a = anchor(s);
  if (t < a) return a;
  int64_t k = (t - a) / s->interval + 1;
  if (k > (INT64_MAX - a) / s->interval) return INT64_MAX;
  return a + k * s->interval;
}

/* Sets next_run (or ends the schedule) for a schedule that becomes active
 * at `now` without catching up: the first occurrence at or after now. */
static void plan_from(sched *s, int64_t now, bool catch_up) {
  int64_t a = anchor(s);
  if (a >= now) s->next_run = a;
  else if (catch_up && s->late_now && s->runs == 0) s->next_run = now; /* created late: starts at once */
  else s->next_run = boundary_after(s, now - 1);
  if (s->end_at != 0 && s->next_run > s->end_at) {
    s->next_run = 0;
    s->status = SS(ENDED);
  }
}

/* "<id>-yyyyMMddTHHmmssZ" of time t. */
static void occurrence_id(const sched *s, int64_t t, char *out, size_t len) {
  if (s->fixed_id != NULL) {
    snprintf(out, len, "%s", s->fixed_id);
    return;
  }
  time_t secs = (time_t)(t / SEC_NS);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
  snprintf(out, len, "%s-%s", s->id, stamp);
}

/* ---- starting an occurrence ----------------------------------------------- */

static void post_start(dts_hub *h, const sched *s, const char *iid, int64_t now) {
  ExecutionStartedEvent es = EXECUTION_STARTED_EVENT__INIT;
  OrchestrationInstance oi = ORCHESTRATION_INSTANCE__INIT;
  Google__Protobuf__StringValue ex, in, ver;
  char exec[33];
  dts_exec_id(exec);
  es.name = s->name;
  es.version = dts_sv(&ver, s->version);
  es.input = dts_sv(&in, s->input);
  oi.instance_id = (char *)iid;
  oi.execution_id = dts_sv(&ex, exec);
  es.orchestration_instance = &oi;
  HistoryEvent he = HISTORY_EVENT__INIT;
  he.event_type_case = EV(EXECUTION_STARTED);
  he.execution_started = &es;
  eng_post(&h->base, &h->hs->tx, 'o', iid, eng_ev_pack(&he, -1, now), NULL);
}

/* A due schedule: starts its occurrence (or skips what it missed) and
 * plans the next, all in this turn's batch. */
static void fire(dts_hub *h, sched *s, int64_t now) {
  int64_t occ = s->next_run, after = boundary_after(s, occ);
  bool late = now >= after; /* a whole interval or more behind: occurrences were missed */
  bool past_end = s->end_at != 0 && now > s->end_at;
  bool run = !late || (s->late_now && !past_end);
  int64_t t = late ? now : occ;
  if (run) {
    char iid[DTS_ID_MAX + 1];
    occurrence_id(s, t, iid, sizeof(iid));
    post_start(h, s, iid, now);
    dts_free(s->last_id);
    s->last_id = dts_strdup(iid);
    s->last_run = t;
    s->runs++;
    DTS_INFO("hub", "[%s] schedule '%s': started '%s'%s", h->name, s->id, iid, late ? " (late: missed occurrences)" : "");
  } else {
    DTS_INFO("hub", "[%s] schedule '%s': missed its occurrences up to now; waiting for the next", h->name, s->id);
  }
  int64_t next = boundary_after(s, now);
  s->next_run = next;
  if (s->end_at != 0 && next > s->end_at) {
    s->next_run = 0;
    s->status = SS(ENDED);
    DTS_INFO("hub", "[%s] schedule '%s' ended (past its endAt)", h->name, s->id);
  }
  s->updated = now;
  sched_write(h, s);
}

static void arm(dts_hub *h, int64_t next_wall) {
  hub_state *hs = h->hs;
  if (next_wall == 0 || atomic_load(&h->stopping)) return;
  uint64_t at = eng_mono_for(next_wall);
  if (hs->sched_wake != 0 && hs->sched_wake <= at) return; /* an earlier wake-up is on its way */
  hs->sched_wake = at;
  dts_timer_post(h->cfg.timers, at, &h->base.a, dts_msg_alloc(H_SCHED, sizeof(dts_msg)));
}

static void reload_if_stale(dts_hub *h);

void sched_due(dts_hub *h, bool woken) {
  hub_state *hs = h->hs;
  if (woken) hs->sched_wake = 0;
  if (dts_map_len(&hs->scheds) == 0 || hs->wiping || atomic_load(&h->stopping) || atomic_load(&h->deleted)) return;
  reload_if_stale(h);
  if (dts_store_writable(h->cfg.store, NULL, 0) != DTS_OK) return; /* the next tick tries again */
  int64_t now = (int64_t)dts_wall_ns(), earliest = 0;
  const char *k;
  void *v;
  for (size_t i = 0; dts_map_next(&hs->scheds, &i, &k, &v);) {
    sched *s = v;
    if (s->status != SS(ACTIVE) || s->next_run == 0) continue;
    if (s->next_run <= now) fire(h, s, now);
    if (s->next_run != 0 && (earliest == 0 || s->next_run < earliest)) earliest = s->next_run;
  }
  arm(h, earliest);
}

/* ---- loading -------------------------------------------------------------- */

static bool load_visit(void *ctx, const char *k, size_t klen, const char *v, size_t vlen) {
  dts_hub *h = ctx;
  Dtsd__Admin__Schedule *m = dtsd__admin__schedule__unpack(NULL, vlen, (const uint8_t *)v);
  sched *s = m != NULL ? from_pb(m) : NULL;
  char why[200];
  const char *p = s != NULL ? sched_problem(s, SIZE_MAX, why, sizeof(why)) : "does not decode";
  if (m != NULL) dtsd__admin__schedule__free_unpacked(m, NULL);
  if (p == NULL && (s->status < SS(ACTIVE) || s->status > SS(ENDED))) p = "unknown status";
  if (p != NULL) {
    char kt[300];
    dts_key_text(&h->ks, k, klen, kt, sizeof(kt));
    DTS_ERROR("hub", "[%s] unreadable schedule %s: %s; skipped", h->name, kt, p);
    atomic_fetch_add(&h->st_unreadable, 1);
    sched_free(s);
    return true;
  }
  sched_free(dts_map_put(&h->hs->scheds, s->id, s));
  return true;
}

void sched_clear(dts_hub *h) {
  const char *k;
  void *v;
  for (size_t i = 0; dts_map_next(&h->hs->scheds, &i, &k, &v);) {
    dts_map_del(&h->hs->scheds, k);
    sched_free(v);
  }
}

/* The schedules as stored (start-up; after a failed write). */
void sched_load(dts_hub *h) {
  sched_clear(h);
  dts_key k;
  dts_key_start(&k, &h->ks, 'P');
  dts_store_scan(h->cfg.store, k.b, k.n, load_visit, h);
  h->hs->sched_stale = false;
  if (dts_map_len(&h->hs->scheds) > 0) {
    DTS_INFO("hub", "[%s] %zu schedules", h->name, dts_map_len(&h->hs->scheds));
    arm(h, (int64_t)dts_wall_ns());
  }
}

/* A hub write failed: memory may say more than the store; read the
 * schedules again once no write of the hub is still out. */
void sched_failed(dts_hub *h) { h->hs->sched_stale = true; }

static void reload_if_stale(dts_hub *h) {
  if (h->hs->sched_stale && h->hs->tx.inflight == 0) sched_load(h);
}

/* ---- the methods ---------------------------------------------------------- */

static void answer(dts_hub *h, dts_call *c, const sched *s) {
  sched_pb p;
  to_pb(s, &p);
  hub_answer(h, c, &p.m.base);
}

static sched *find(dts_hub *h, dts_call *c, const char *id) {
  sched *s = dts_map_get(&h->hs->scheds, id);
  if (s == NULL) hub_answer_fail(h, c, DTS_ST_NOT_FOUND, "schedule '%.100s' not found", id);
  return s;
}

static void on_create(dts_hub *h, dts_call *c, const Dtsd__Admin__Schedule *m) {
  sched *s = from_pb(m);
  char why[200];
  const char *p = sched_problem(s, h->cfg.max_payload, why, sizeof(why));
  if (p != NULL) {
    hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "%s", p);
  } else if (dts_map_get(&h->hs->scheds, s->id) != NULL) {
    hub_answer_fail(h, c, DTS_ST_ALREADY_EXISTS, "schedule '%s' already exists", s->id);
  } else if (dts_map_len(&h->hs->scheds) >= SCHED_MAX) {
    hub_answer_fail(h, c, DTS_ST_RESOURCE_EXHAUSTED, "a task hub holds at most %d schedules", SCHED_MAX);
  } else {
    int64_t now = (int64_t)dts_wall_ns();
    s->status = SS(ACTIVE);
    s->created = s->updated = now;
    s->last_run = s->runs = 0;
    dts_free(s->last_id);
    s->last_id = NULL;
    plan_from(s, now, true);
    dts_map_put(&h->hs->scheds, s->id, s);
    sched_write(h, s);
    answer(h, c, s);
    DTS_INFO("hub", "[%s] schedule '%s' created: '%s' every %" PRId64 " s", h->name, s->id, s->name,
             (int64_t)(s->interval / SEC_NS));
    arm(h, s->next_run);
    return;
  }
  sched_free(s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void on_list(dts_hub *h, dts_call *c, const Dtsd__Admin__ListSchedulesRequest *r) {
  size_t want = r->page_size <= 0 ? PAGE_DEFAULT : (size_t)r->page_size;
  if (want > PAGE_MAX) want = PAGE_MAX;
  const char *after = dts_sv_get(r->continuation_token);
  size_t n = dts_map_len(&h->hs->scheds), m = 0;
  char **ids = dts_malloc((n ? n : 1) * sizeof(char *));
  const char *k;
  void *v;
  for (size_t i = 0; dts_map_next(&h->hs->scheds, &i, &k, &v);)
    if (after == NULL || strcmp(k, after) > 0) ids[m++] = (char *)k;
  qsort(ids, m, sizeof(char *), cmp_str);
  size_t take = m < want ? m : want;
  Dtsd__Admin__ListSchedulesResponse resp = DTSD__ADMIN__LIST_SCHEDULES_RESPONSE__INIT;
  sched_pb *pbs = dts_malloc((take ? take : 1) * sizeof(sched_pb));
  Dtsd__Admin__Schedule **rows = dts_malloc((take ? take : 1) * sizeof(*rows));
  for (size_t i = 0; i < take; i++) {
    to_pb(dts_map_get(&h->hs->scheds, ids[i]), &pbs[i]);
    rows[i] = &pbs[i].m;
  }
  resp.schedules = rows;
  resp.n_schedules = take;
  Google__Protobuf__StringValue tok;
  if (take < m) resp.continuation_token = dts_sv(&tok, ids[take - 1]);
  hub_answer(h, c, &resp.base);
  dts_free(rows);
  dts_free(pbs);
  dts_free(ids);
}

static void on_delete(dts_hub *h, dts_call *c, const char *id) {
  sched *s = find(h, c, id);
  if (s == NULL) return;
  dts_key k;
  sched_key(h, s->id, &k);
  dts_batch_del(eng_batch(&h->base, &h->hs->tx), k.b, k.n);
  DTS_INFO("hub", "[%s] schedule '%s' deleted", h->name, s->id);
  dts_map_del(&h->hs->scheds, id);
  sched_free(s);
  Dtsd__Admin__DeleteScheduleResponse resp = DTSD__ADMIN__DELETE_SCHEDULE_RESPONSE__INIT;
  hub_answer(h, c, &resp.base);
}

static void on_pause_resume(dts_hub *h, dts_call *c, const char *id, bool pause) {
  sched *s = find(h, c, id);
  if (s == NULL) return;
  if (s->status == SS(ENDED)) {
    hub_answer_fail(h, c, DTS_ST_FAILED_PRECONDITION, "schedule '%s' has ended (past its endAt)", s->id);
    return;
  }
  int want = pause ? SS(PAUSED) : SS(ACTIVE);
  if (s->status != want) {
    int64_t now = (int64_t)dts_wall_ns();
    s->status = want;
    s->updated = now;
    if (pause) s->next_run = 0;
    else plan_from(s, now, false);
    sched_write(h, s);
    DTS_INFO("hub", "[%s] schedule '%s' %s", h->name, s->id, pause ? "paused" : "resumed");
    if (!pause) arm(h, s->next_run);
  }
  answer(h, c, s);
}

void sched_on_rpc(dts_hub *h, dts_call *c, int method, ProtobufCMessage *req) {
  reload_if_stale(h);
  bool writes = method != DTS_M_ADMIN_GET_SCHEDULE && method != DTS_M_ADMIN_LIST_SCHEDULES;
  if (writes && hub_refused(h, c)) return;
  const char *id = NULL;
  if (method != DTS_M_ADMIN_CREATE_SCHEDULE && method != DTS_M_ADMIN_LIST_SCHEDULES) {
    id = ((Dtsd__Admin__ScheduleRequest *)req)->schedule_id;
    if (id[0] == '\0') {
      hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "scheduleId is required");
      return;
    }
  }
  switch (method) {
  case DTS_M_ADMIN_CREATE_SCHEDULE: on_create(h, c, (Dtsd__Admin__Schedule *)req); break;
  case DTS_M_ADMIN_GET_SCHEDULE: {
    sched *s = find(h, c, id);
    if (s != NULL) answer(h, c, s);
    break;
  }
  case DTS_M_ADMIN_LIST_SCHEDULES: on_list(h, c, (Dtsd__Admin__ListSchedulesRequest *)req); break;
  case DTS_M_ADMIN_DELETE_SCHEDULE: on_delete(h, c, id); break;
  case DTS_M_ADMIN_PAUSE_SCHEDULE: on_pause_resume(h, c, id, true); break;
  case DTS_M_ADMIN_RESUME_SCHEDULE: on_pause_resume(h, c, id, false); break;
  default: break;
  }
}

void sched_fini(dts_hub *h) {
  sched_clear(h);
  dts_map_fini(&h->hs->scheds);
}
