/* api_sched.c -- the schedules routes of the data API (docs/http-api.md):
 * list, create, delete, pause and resume, answered by the hub's
 * dtsd.admin.Admin schedule methods.  The JSON is the emulator's shape --
 * PascalCase members, the interval as a .NET TimeSpan "d.hh:mm:ss" --
 * with camelCase spellings accepted on input as well. */
#include "server/api.h"
#include "server/pbjson.h"

#include "runtime/alloc.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h> /* isfinite: a macro, no libm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC_NS INT64_C(1000000000)
#define DAY_S INT64_C(86400)

/* ---- intervals ------------------------------------------------------------- */

/* "[d.]hh:mm:ss[.fffffff]" (a .NET TimeSpan) into ns; false when not one. */
static bool parse_timespan(const char *s, int64_t *ns) {
  long long d = 0, hh, mm;
  double ss;
  int used = 0;
  if (sscanf(s, "%lld.%lld:%lld:%lf%n", &d, &hh, &mm, &ss, &used) == 4 && s[used] == '\0') {
  } else if (d = 0, used = 0, sscanf(s, "%lld:%lld:%lf%n", &hh, &mm, &ss, &used) == 3 && s[used] == '\0') {
  } else {
    return false;
  }
  if (d < 0 || d > 3660 || hh < 0 || hh > 23 || mm < 0 || mm > 59 || !(ss >= 0 && ss < 60)) return false;
  *ns = ((d * DAY_S + hh * 3600 + mm * 60) * SEC_NS) + (int64_t)(ss * 1e9 + 0.5);
  return true;
}

/* ISO 8601 "P[nD][T[nH][nM][n[.n]S]]" into ns. */
static bool parse_iso(const char *s, int64_t *ns) {
  if (*s++ != 'P' || *s == '\0') return false;
  double total = 0;
  bool in_time = false, any = false;
  while (*s) {
    if (*s == 'T' && !in_time) {
      in_time = true;
      s++;
      continue;
    }
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0 || !isfinite(v)) return false;
    char u = *end;
    if (u == 'D' && !in_time) total += v * 86400;
    else if (u == 'H' && in_time) total += v * 3600;
    else if (u == 'M' && in_time) total += v * 60;
    else if (u == 'S' && in_time) total += v;
    else return false;
    any = true;
    s = end + 1;
  }
  if (!any || total > 3660.0 * 86400) return false;
  *ns = (int64_t)(total * 1e9 + 0.5);
  return true;
}

/* The Interval member: a TimeSpan string, an ISO 8601 duration or a number
 * of seconds.  false with 400 answered when it is none of them. */
static bool interval_of(api *a, json_t *v, int64_t *ns) {
  *ns = 0;
  bool ok = false;
  if (json_is_number(v)) {
    double secs = json_number_value(v);
    ok = secs >= 0 && secs <= 3660.0 * 86400;
    if (ok) *ns = (int64_t)(secs * 1e9 + 0.5);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    ok = parse_timespan(s, ns) || parse_iso(s, ns);
  }
  if (!ok)
    http_error(a->out, 400,
               "'Interval' must be a time span such as \"00:05:00\" or \"1.00:00:00\", an ISO 8601 duration such as "
               "\"PT5M\", or a number of seconds");
  return ok;
}

static json_t *timespan_json(int64_t ns) {
  int64_t secs = ns / SEC_NS, frac = ns % SEC_NS;
  char buf[64];
  int n = 0;
  if (secs >= DAY_S) n = snprintf(buf, sizeof(buf), "%" PRId64 ".", secs / DAY_S);
  n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%02d:%02d:%02d", (int)(secs % DAY_S / 3600),
                (int)(secs % 3600 / 60), (int)(secs % 60));
  if (frac != 0) snprintf(buf + n, sizeof(buf) - (size_t)n, ".%07" PRId64, frac / 100);
  return json_string(buf);
}

/* ---- JSON ---------------------------------------------------------------------- */

static const char *status_name(int st) {
  switch (st) {
  case DTSD__ADMIN__SCHEDULE_STATUS__SCHEDULE_STATUS_ACTIVE: return "Active";
  case DTSD__ADMIN__SCHEDULE_STATUS__SCHEDULE_STATUS_PAUSED: return "Paused";
  default: return "Ended";
  }
}

static json_t *opt_str(const Google__Protobuf__StringValue *v) {
  return v != NULL ? json_string(v->value) : json_null();
}

static json_t *opt_time(const Google__Protobuf__Timestamp *t) {
  return t != NULL ? pbjson_time_value(dts_ts_to_ns(t)) : json_null();
}

static json_t *sched_json(const Dtsd__Admin__Schedule *s) {
  json_t *o = json_object();
  json_object_set_new(o, "ScheduleId", json_string(s->schedule_id));
  json_object_set_new(o, "OrchestrationName", json_string(s->orchestration_name));
  json_object_set_new(o, "OrchestrationInput", opt_str(s->orchestration_input));
  json_object_set_new(o, "OrchestrationInstanceId", opt_str(s->orchestration_instance_id));
  json_object_set_new(o, "OrchestrationVersion", opt_str(s->orchestration_version));
  int64_t iv = s->interval ? s->interval->seconds * SEC_NS + s->interval->nanos : 0;
  json_object_set_new(o, "Interval", timespan_json(iv));
  json_object_set_new(o, "StartAt", opt_time(s->start_at));
  json_object_set_new(o, "EndAt", opt_time(s->end_at));
  json_object_set_new(o, "StartImmediatelyIfLate", json_boolean(s->start_immediately_if_late));
  json_object_set_new(o, "Status", json_string(status_name(s->status)));
  json_object_set_new(o, "CreatedAt", opt_time(s->created_at));
  json_object_set_new(o, "LastModifiedAt", opt_time(s->updated_at));
  json_object_set_new(o, "NextRunAt", opt_time(s->next_run_at));
  json_object_set_new(o, "LastRunAt", opt_time(s->last_run_at));
  json_object_set_new(o, "LastRunInstanceId",
                      s->last_run_instance_id[0] ? json_string(s->last_run_instance_id) : json_null());
  json_object_set_new(o, "RunCount", json_integer(s->run_count));
  return o;
}

/* The spelling of a member present in o: PascalCase, else camelCase (in
 * camel[64]). */
static const char *spelling(json_t *o, const char *pascal, char *camel) {
  if (json_object_get(o, pascal) != NULL) return pascal;
  snprintf(camel, 64, "%s", pascal);
  camel[0] = (char)tolower((unsigned char)camel[0]);
  return camel;
}

static json_t *member(json_t *o, const char *pascal) {
  char camel[64];
  return json_object_get(o, spelling(o, pascal, camel));
}

/* A string member (absent or null: NULL); false with 400 when it is
 * something else. */
static bool str_member(api *a, json_t *o, const char *key, const char **out) {
  json_t *v = member(o, key);
  *out = NULL;
  if (v == NULL || json_is_null(v)) return true;
  if (!json_is_string(v)) {
    http_error(a->out, 400, "'%s' must be a string", key);
    return false;
  }
  *out = json_string_value(v);
  return true;
}

static bool time_member(api *a, json_t *o, const char *key, int64_t *ns) {
  char camel[64];
  return api_time(a, o, spelling(o, key, camel), ns);
}

/* ---- the routes ------------------------------------------------------------------- */

static void answer_schedule(api *a, dts_call *c, int status) {
  Dtsd__Admin__Schedule *s = (Dtsd__Admin__Schedule *)api_unpack(a, c, &dtsd__admin__schedule__descriptor);
  dts_local_release(c);
  if (s == NULL) return;
  api_json(a, status, sched_json(s));
  protobuf_c_message_free_unpacked(&s->base, NULL);
}

static void create(api *a) {
  json_t *b = api_body(a, false);
  if (b == NULL) return;
  Dtsd__Admin__Schedule req = DTSD__ADMIN__SCHEDULE__INIT;
  Google__Protobuf__StringValue in, fid, ver;
  Google__Protobuf__Duration iv = GOOGLE__PROTOBUF__DURATION__INIT;
  Google__Protobuf__Timestamp ts[2];
  const char *id, *name, *input, *fixed, *version;
  int64_t interval, start_at, end_at;
  json_t *late = member(b, "StartImmediatelyIfLate");
  if (!str_member(a, b, "ScheduleId", &id) || !str_member(a, b, "OrchestrationName", &name) ||
      !str_member(a, b, "OrchestrationInput", &input) || !str_member(a, b, "OrchestrationInstanceId", &fixed) ||
      !str_member(a, b, "OrchestrationVersion", &version) || !time_member(a, b, "StartAt", &start_at) ||
      !time_member(a, b, "EndAt", &end_at) || !interval_of(a, member(b, "Interval"), &interval)) {
    json_decref(b);
    return;
  }
  if (late != NULL && !json_is_boolean(late) && !json_is_null(late)) {
    http_error(a->out, 400, "'StartImmediatelyIfLate' must be true or false");
    json_decref(b);
    return;
  }
  req.schedule_id = (char *)(id ? id : "");
  req.orchestration_name = (char *)(name ? name : "");
  req.orchestration_input = dts_sv(&in, input);
  req.orchestration_instance_id = dts_sv(&fid, fixed);
  req.orchestration_version = dts_sv(&ver, version);
  iv.seconds = interval / SEC_NS;
  iv.nanos = (int32_t)(interval % SEC_NS);
  req.interval = &iv;
  req.start_at = start_at ? dts_ts_from_ns(&ts[0], start_at) : NULL;
  req.end_at = end_at ? dts_ts_from_ns(&ts[1], end_at) : NULL;
  req.start_immediately_if_late = json_is_true(late);
  dts_call *c = api_call(a, DTS_M_ADMIN_CREATE_SCHEDULE, &req.base);
  json_decref(b);
  if (c != NULL) answer_schedule(a, c, 201);
}

static void list(api *a) {
  Dtsd__Admin__ListSchedulesRequest req = DTSD__ADMIN__LIST_SCHEDULES_REQUEST__INIT;
  Google__Protobuf__StringValue tok;
  const char *t = http_arg(a->r, "continuationToken");
  const char *ps = http_arg(a->r, "pageSize");
  if (t != NULL && t[0] != '\0') req.continuation_token = dts_sv(&tok, t);
  if (ps != NULL) {
    char *end;
    long n = strtol(ps, &end, 10);
    if (end == ps || *end != '\0' || n < 1 || n > 1000) {
      http_error(a->out, 400, "pageSize must be a number from 1 to 1000");
      return;
    }
    req.page_size = (int32_t)n;
  }
  dts_call *c = api_call(a, DTS_M_ADMIN_LIST_SCHEDULES, &req.base);
  if (c == NULL) return;
  Dtsd__Admin__ListSchedulesResponse *r =
      (Dtsd__Admin__ListSchedulesResponse *)api_unpack(a, c, &dtsd__admin__list_schedules_response__descriptor);
  dts_local_release(c);
  if (r == NULL) return;
  json_t *arr = json_array();
  for (size_t i = 0; i < r->n_schedules; i++) json_array_append_new(arr, sched_json(r->schedules[i]));
  json_t *j = json_object();
  json_object_set_new(j, "schedules", arr);
  json_object_set_new(j, "continuationToken", opt_str(r->continuation_token));
  protobuf_c_message_free_unpacked(&r->base, NULL);
  api_json(a, 200, j);
}

static void one(api *a, dts_method m, const char *id) {
  Dtsd__Admin__ScheduleRequest req = DTSD__ADMIN__SCHEDULE_REQUEST__INIT;
  req.schedule_id = (char *)id;
  dts_call *c = api_call(a, m, &req.base);
  if (c == NULL) return;
  if (m != DTS_M_ADMIN_DELETE_SCHEDULE) {
    answer_schedule(a, c, 200);
    return;
  }
  dts_local_release(c);
  a->out->status = 204;
}

static bool is(api *a, const char *m) { return strcmp(a->r->method, m) == 0; }

bool api_sched_route(api *a, char **seg, int nseg) {
  if (nseg == 0 && is(a, "GET")) list(a);
  else if (nseg == 0 && is(a, "POST")) create(a);
  else if (nseg == 1 && is(a, "GET")) one(a, DTS_M_ADMIN_GET_SCHEDULE, seg[0]);
  else if (nseg == 1 && is(a, "DELETE")) one(a, DTS_M_ADMIN_DELETE_SCHEDULE, seg[0]);
  else if (nseg == 2 && strcmp(seg[1], "pause") == 0 && is(a, "POST")) one(a, DTS_M_ADMIN_PAUSE_SCHEDULE, seg[0]);
  else if (nseg == 2 && strcmp(seg[1], "resume") == 0 && is(a, "POST")) one(a, DTS_M_ADMIN_RESUME_SCHEDULE, seg[0]);
  else return false;
  return true;
}
