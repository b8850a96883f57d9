/* api_export.c -- GET /orchestrations/export?format=csv|jsonl&q=<query>:
 * every orchestration a query's filter matches, newest first, written as
 * it is read -- one engine page (1,000) at a time into the connection, so
 * dtsd holds one page, however large the result.  `q` is the JSON body of
 * the query route (its "filter" is used); the hub may be ?taskhub= so a
 * plain link downloads it.  No scan bound: an export is meant to be whole.
 */
#include "server/api.h"

#include "runtime/alloc.h"
#include "server/pbjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 1000

typedef struct exporter {
  api_filter *f;
  dts_hub *h;
  char hub[128];
  dts_http_config cfg;
  const atomic_bool *stopping;
  bool csv, done;
  char cont[512];
  char *out;
  size_t olen, ocap, opos;
} exporter;

static void put(exporter *x, const char *s, size_t n) {
  if (x->olen + n > x->ocap) {
    x->ocap = (x->olen + n) * 2;
    x->out = dts_realloc(x->out, x->ocap);
  }
  memcpy(x->out + x->olen, s, n);
  x->olen += n;
}

/* A CSV field: quoted, quotes doubled. */
static void csv_field(exporter *x, const char *s, bool last) {
  put(x, "\"", 1);
  for (const char *p = s ? s : ""; *p; p++) {
    if (*p == '"') put(x, "\"", 1); /* a quote is written twice */
    put(x, p, 1);
  }
  put(x, last ? "\"\n" : "\",", 2);
}

static void csv_row(exporter *x, const OrchestrationState *s) {
  char t[3][40];
  int64_t ts[3] = {dts_ts_to_ns(s->created_timestamp), dts_ts_to_ns(s->last_updated_timestamp),
                   dts_ts_to_ns(s->completed_timestamp)};
  for (int i = 0; i < 3; i++) {
    if (ts[i] > 0) pbjson_time(ts[i], t[i]);
    else t[i][0] = '\0';
  }
  const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(&orchestration_status__descriptor, (int)s->orchestration_status);
  csv_field(x, s->instance_id, false);
  csv_field(x, s->name, false);
  csv_field(x, ev ? ev->name : "", false);
  csv_field(x, t[0], false);
  csv_field(x, t[1], false);
  csv_field(x, t[2], false);
  csv_field(x, dts_sv_get(s->execution_id), false);
  csv_field(x, dts_sv_get(s->version), false);
  csv_field(x, dts_sv_get(s->parent_instance_id), true);
}

/* One engine page into the buffer; false when it failed (the stream ends). */
static bool next_page(exporter *x) {
  api a;
  api_detached(&a, x->h, x->hub, x->cfg.call_timeout_ms);
  QueryInstancesRequest req = QUERY_INSTANCES_REQUEST__INIT;
  InstanceQuery iq = INSTANCE_QUERY__INIT;
  Google__Protobuf__Timestamp cf, ct;
  Google__Protobuf__StringValue pv, cv;
  req.query = &iq;
  api_filter_query(x->f, &iq, &cf, &ct, &pv);
  iq.max_instance_count = PAGE;
  if (x->cont[0]) iq.continuation_token = dts_sv(&cv, x->cont);
  dts_call *c = api_call(&a, DTS_M_QUERY_INSTANCES, &req.base);
  QueryInstancesResponse *qr = c ? (QueryInstancesResponse *)api_unpack(&a, c, &query_instances_response__descriptor) : NULL;
  if (c) dts_local_release(c);
  api_detached_done(&a);
  if (qr == NULL) return false;
  for (size_t i = 0; i < qr->n_orchestration_state; i++) {
    const OrchestrationState *s = qr->orchestration_state[i];
    if (!api_filter_match(x->f, s)) continue;
    if (x->csv) {
      csv_row(x, s);
    } else {
      json_t *j = api_state_json(s, false);
      char *line = json_dumps(j, JSON_COMPACT);
      json_decref(j);
      if (line != NULL) {
        put(x, line, strlen(line));
        put(x, "\n", 1);
        free(line);
      }
    }
  }
  const char *next = dts_sv_get(qr->continuation_token);
  x->done = next == NULL || next[0] == '\0' || strlen(next) >= sizeof(x->cont);
  if (!x->done) snprintf(x->cont, sizeof(x->cont), "%s", next);
  protobuf_c_message_free_unpacked(&qr->base, NULL);
  return true;
}

static long ex_next(void *ctx, char *buf, size_t max) {
  exporter *x = ctx;
  while (x->opos == x->olen) {
    x->opos = x->olen = 0;
    if (x->done || atomic_load(x->stopping) || !next_page(x)) return -1;
  }
  return http_stream_copy(buf, max, x->out, &x->opos, x->olen);
}

static void ex_free(void *ctx) {
  exporter *x = ctx;
  api_filter_free(x->f);
  dts_free(x->out);
  dts_free(x);
}

void api_orch_export(api *a) {
  const char *fmt = http_arg(a->r, "format");
  const char *q = http_arg(a->r, "q");
  bool csv = fmt == NULL || strcmp(fmt, "csv") == 0;
  if (!csv && strcmp(fmt, "jsonl") != 0) {
    http_error(a->out, 400, "format is csv or jsonl");
    return;
  }
  json_error_t e;
  json_t *body = q && q[0] ? json_loads(q, 0, &e) : json_object();
  if (body == NULL || !json_is_object(body)) {
    if (body) json_decref(body);
    http_error(a->out, 400, "q must be the JSON body of a query (its filter is used)");
    return;
  }
  api_filter *f = api_filter_new(a, json_object_get(body, "filter"));
  json_decref(body);
  if (f == NULL) return;
  exporter *x = dts_calloc(1, sizeof(*x));
  x->f = f;
  x->h = a->h;
  snprintf(x->hub, sizeof(x->hub), "%s", a->hub);
  x->cfg = *a->r->cfg;
  x->stopping = a->r->stopping;
  x->csv = csv;
  if (csv) {
    const char *hdr = "instanceId,name,orchestrationStatus,createdAt,lastUpdatedAt,completedAt,executionId,version,"
                      "parentInstanceId\n";
    put(x, hdr, strlen(hdr));
  }
  a->out->status = 200;
  a->out->ctype = csv ? "text/csv; charset=utf-8" : "application/x-ndjson";
  a->out->disposition = csv ? "attachment; filename=\"orchestrations.csv\"" : "attachment; filename=\"orchestrations.jsonl\"";
  a->out->stream = (http_stream){ex_next, ex_free, x};
}
