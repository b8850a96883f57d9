/* api.c -- the HTTP data API's front: routes a request to its handler,
 * finds the hub `x-taskhub` names, and carries requests to the engine as
 * in-process calls (localcall.h) with the messages gRPC clients send.  The
 * routes are listed in docs/http-api.md. */
#include "server/api.h"

#include "runtime/alloc.h"
#include "runtime/log.h"
#include "server/pbjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SEG 12

int api_http_status(int st) {
  switch (st) {
  case DTS_ST_OK:
    return 200;
  case DTS_ST_INVALID_ARGUMENT:
    return 400;
  case DTS_ST_NOT_FOUND:
    return 404;
  case DTS_ST_ALREADY_EXISTS:
  case DTS_ST_FAILED_PRECONDITION:
  case DTS_ST_ABORTED:
    return 409;
  case DTS_ST_PERMISSION_DENIED:
    return 403;
  case DTS_ST_UNAUTHENTICATED:
    return 401;
  case DTS_ST_RESOURCE_EXHAUSTED:
    return 429;
  case DTS_ST_UNIMPLEMENTED:
    return 501;
  case DTS_ST_UNAVAILABLE:
    return 503;
  case DTS_ST_DEADLINE_EXCEEDED:
    return 504;
  default:
    return 500;
  }
}

void api_json(api *a, int status, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  if (s == NULL) {
    http_error(a->out, 500, "cannot encode the answer");
    return;
  }
  dts_free(a->out->body);
  a->out->status = status;
  a->out->ctype = "application/json";
  a->out->body = s; /* jansson allocates with malloc: MHD frees it */
  a->out->len = strlen(s);
}

json_t *api_body(api *a, bool want_array) {
  json_error_t e;
  json_t *j = json_loadb(a->r->body, a->r->blen, JSON_REJECT_DUPLICATES, &e);
  if (j == NULL) {
    http_error(a->out, 400, "the body is not JSON: %s (line %d, column %d)", e.text, e.line, e.column);
    return NULL;
  }
  if (want_array ? !json_is_array(j) : !json_is_object(j)) {
    json_decref(j);
    http_error(a->out, 400, "the body must be a JSON %s", want_array ? "array" : "object");
    return NULL;
  }
  return j;
}

const char *api_str(json_t *o, const char *key, const char *alt) {
  json_t *v = json_object_get(o, key);
  if (v == NULL && alt != NULL) v = json_object_get(o, alt);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

bool api_time(api *a, json_t *o, const char *key, int64_t *ns) {
  *ns = 0;
  json_t *v = json_object_get(o, key);
  if (v == NULL || json_is_null(v)) return true;
  if (!json_is_string(v) || !pbjson_parse_time(json_string_value(v), ns)) {
    http_error(a->out, 400, "'%s' must be an RFC 3339 time such as 2026-01-31T12:00:00Z", key);
    return false;
  }
  return true;
}

dts_call *api_call(api *a, dts_method m, const ProtobufCMessage *req) {
  dts_buf b = dts_pb_pack(req);
  ProtobufCMessage *msg = protobuf_c_message_unpack(req->descriptor, NULL, b.n, b.p);
  dts_buf_free(&b);
  if (msg == NULL) {
    snprintf(a->err, sizeof(a->err), "cannot build the request");
    http_error(a->out, 500, "%s", a->err);
    return NULL;
  }
  dts_call *c = dts_local_new();
  dts_hub_post(a->h, m, dts_local_give(c), msg);
  if (!dts_local_wait(c, a->timeout_ms)) {
    dts_local_release(c);
    snprintf(a->err, sizeof(a->err), "no answer from task hub '%s' within %ld ms", a->hub, a->timeout_ms);
    http_error(a->out, 504, "%s", a->err);
    return NULL;
  }
  const dts_local *ans = dts_local_answer(c);
  if (ans->status != DTS_ST_OK) {
    snprintf(a->err, sizeof(a->err), "%s", ans->msg[0] ? ans->msg : "the request failed");
    http_error(a->out, api_http_status(ans->status), "%s", a->err);
    dts_local_release(c);
    return NULL;
  }
  return c;
}

void api_detached(api *a, dts_hub *h, const char *hub, long timeout_ms) {
  memset(a, 0, sizeof(*a));
  a->out = &a->own;
  a->h = h;
  a->timeout_ms = timeout_ms;
  snprintf(a->hub, sizeof(a->hub), "%s", hub);
}

void api_detached_done(api *a) {
  dts_free(a->own.body);
  a->own.body = NULL;
}

ProtobufCMessage *api_unpack(api *a, dts_call *c, const ProtobufCMessageDescriptor *d) {
  const dts_local *ans = dts_local_answer(c);
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, ans->body.n, ans->body.p ? ans->body.p : (uint8_t *)"");
  if (m == NULL) http_error(a->out, 500, "the engine's answer does not decode as %s", d->name);
  return m;
}

/* ---- routes without a hub ------------------------------------------------ */

/* The hubs the caller has a role on, each with that role, and who the
 * caller is (the dashboard's sign-in and read-only mode). */
static void list_hubs(api *a) {
  dts_auth_decision d;
  if (!http_authorize(a->r, a->out, NULL, AUTH_ANY_PRINCIPAL, &d)) return;
  dts_hub *hubs[DTS_MAX_HUBS];
  int n = a->r->hubs->list(a->r->hubs->ctx, hubs, DTS_MAX_HUBS);
  json_t *arr = json_array();
  for (int i = 0; i < n; i++) {
    int roles = dts_auth_roles_in(&d, dts_hub_name(hubs[i]));
    if (roles == 0) continue;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(dts_hub_name(hubs[i])));
    json_object_set_new(o, "role", json_string(dts_auth_role_name(roles)));
    json_array_append_new(arr, o);
  }
  json_t *j = json_object();
  json_object_set_new(j, "taskHubs", arr);
  json_object_set_new(j, "principal", json_string(d.principal));
  json_object_set_new(j, "authentication", json_boolean(dts_auth_enabled(a->r->cfg->auth)));
  api_json(a, 200, j);
}

/* What a route of a hub needs: reading for GET and the POSTs that only
 * query, contributing for the rest. */
static int route_needs(const api *a, char **seg, int nseg) {
  if (strcmp(a->r->method, "GET") == 0 || strcmp(a->r->method, "HEAD") == 0) return AUTH_READ;
  if (strcmp(a->r->method, "POST") == 0 && nseg == 2 && strcmp(seg[1], "query") == 0) return AUTH_READ;
  return AUTH_WRITE;
}

/* ---- the front ------------------------------------------------------------- */

static int split(char *path, char **seg) {
  int n = 0;
  char *save = NULL;
  for (char *p = strtok_r(path, "/", &save); p != NULL && n < MAX_SEG; p = strtok_r(NULL, "/", &save))
    seg[n++] = p;
  return n;
}

static bool find_hub(api *a) {
  const char *name = http_header(a->r, "x-taskhub");
  if (name == NULL || name[0] == '\0') name = http_arg(a->r, "taskhub"); /* EventSource sends no headers */
  if (name == NULL || name[0] == '\0') name = "default";
  snprintf(a->hub, sizeof(a->hub), "%s", name);
  if (strlen(name) >= sizeof(a->hub)) {
    http_error(a->out, 400, "the x-taskhub header is longer than %zu bytes", sizeof(a->hub) - 1);
    return false;
  }
  dts_status st;
  char why[400];
  a->h = a->r->hubs->find(a->r->hubs->ctx, a->hub, &st, why, sizeof(why));
  if (a->h == NULL) http_error(a->out, api_http_status(st), "%s", why);
  return a->h != NULL;
}

static void hub_route(api *a, char **seg, int nseg) {
  const char *name = http_header(a->r, "x-taskhub");
  if (name == NULL || name[0] == '\0') name = http_arg(a->r, "taskhub");
  dts_auth_decision d; /* before the hub is looked up: a refusal says nothing of whether it exists */
  if (!http_authorize(a->r, a->out, name && name[0] ? name : "default", route_needs(a, seg, nseg), &d)) return;
  if (!find_hub(a)) return;
  if (nseg == 1 && strcmp(seg[0], "ping") == 0) {
    if (strcmp(a->r->method, "GET") != 0)
      http_error(a->out, 405, "ping answers GET");
    else
      a->out->status = 204;
    return;
  }
  if (nseg == 1 && strcmp(seg[0], "live") == 0) {
    api_live(a->r, a->out, a->h);
    return;
  }
  if (nseg >= 1 && strcmp(seg[0], "schedules") == 0 && api_sched_route(a, seg + 1, nseg - 1)) return;
  if (nseg >= 1 && strcmp(seg[0], "orchestrations") == 0 && api_orch_route(a, seg + 1, nseg - 1)) return;
  if (nseg >= 1 && strcmp(seg[0], "jobs") == 0 && api_jobs_route(a, seg + 1, nseg - 1)) return;
  if (nseg >= 1 && (strcmp(seg[0], "entities") == 0 || strcmp(seg[0], "workers") == 0) && api_ent_route(a, seg, nseg))
    return;
  http_error(a->out, 404, "no such route: %s %s", a->r->method, a->r->path);
}

void api_handle(const http_req *r, http_resp *out) {
  api a = {.r = r, .out = out, .timeout_ms = r->cfg->call_timeout_ms};
  size_t pl = strlen(r->path);
  if (pl > 4096) {
    http_error(out, 414, "the path is longer than 4096 bytes");
    return;
  }
  char *path = dts_strdup(r->path);
  char *seg[MAX_SEG];
  int nseg = split(path, seg);
  int skip = -1; /* segments before the hub's routes */
  if (nseg >= 3 && strcmp(seg[0], "api") == 0 && strcmp(seg[1], "v1") == 0 && strcmp(seg[2], "taskhubs") == 0)
    skip = 3;
  else if (nseg >= 2 && strcmp(seg[0], "v1") == 0 && strcmp(seg[1], "taskhubs") == 0)
    skip = 2;
  if (skip > 0 && r->hubs == NULL) {
    http_error(out, 503, "dtsd is starting: its task hubs are being read back from the store");
  } else if (skip > 0 && nseg == skip) {
    if (strcmp(r->method, "GET") == 0)
      list_hubs(&a);
    else
      http_error(out, 405, "%s is not allowed on the list of task hubs", r->method);
  } else if (skip > 0) {
    hub_route(&a, seg + skip, nseg - skip);
  } else if (strcmp(r->path, "/metrics") == 0) {
    metrics_render(r, out);
  } else if (strcmp(r->path, "/healthz") == 0) {
    out->status = 204;
  } else if (nseg >= 1 && strcmp(seg[0], "api") == 0) {
    http_error(out, 404, "no such route: %s (the data API is under /api/v1/taskhubs)", r->path);
  } else if (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0) {
    dts_auth_decision d; /* the app's files are public; the allow list and protected mode still apply */
    if (http_authorize(r, out, NULL, AUTH_PUBLIC, &d)) dashboard_serve(r, out);
  } else {
    http_error(out, 405, "%s is not allowed on %s", r->method, r->path);
  }
  dts_free(path);
}
