/* api.h -- private to the HTTP data API (api.c, api_orch.c, api_ent.c):
 * one request being answered, and the helpers its routes share.  See
 * docs/http-api.md for the routes. */
#ifndef DTS_SERVER_API_H
#define DTS_SERVER_API_H

#include "actors/hub.h"
#include "server/http.h"
#include "server/localcall.h"

#include <jansson.h>

typedef struct api {
  const http_req *r; /* NULL for a detached api */
  http_resp *out;
  dts_hub *h;       /* the hub x-taskhub names */
  char hub[128];
  char err[600];    /* the last failed engine call's message (api_call) */
  long timeout_ms;  /* for the engine's answer */
  http_resp own;    /* a detached api's answer (errors only) */
} api;

/* An api for engine calls made outside a request -- a bulk job, the export,
 * metrics: failures leave their message in a->err.  api_detached_done frees
 * what they wrote. */
void api_detached(api *a, dts_hub *h, const char *hub, long timeout_ms);
void api_detached_done(api *a);

/* The actions on one instance that bulk routes and jobs share. */
enum { API_SUSPEND, API_RESUME, API_TERMINATE, API_REWIND, API_PURGE, API_NACTIONS };
/* Does `action` to instance id: 200, or the HTTP status of the refusal with
 * why in a->err (a purge of nothing is 404).  reason: the reason, or the
 * terminated instance's output; recursive: terminate or purge the
 * sub-orchestrations too. */
int api_act(api *a, int action, const char *id, const char *reason, bool recursive);

/* Sends req to the hub as method m and waits for the answer: the call
 * (dts_local_release it) when it came with status OK, else NULL with the
 * error answer set (gRPC status mapped to HTTP).  req is packed and
 * decoded again, as the bridge decodes a gRPC request. */
dts_call *api_call(api *a, dts_method m, const ProtobufCMessage *req);
/* The unary answer of a call from api_call, decoded (NULL: the error
 * answer is set); free with protobuf_c_message_free_unpacked. */
ProtobufCMessage *api_unpack(api *a, dts_call *c, const ProtobufCMessageDescriptor *d);
/* Answers j (taken over) with status. */
void api_json(api *a, int status, json_t *j);
/* The request body as a JSON object or array (NULL: 400 answered). */
json_t *api_body(api *a, bool want_array);
/* gRPC status -> HTTP status. */
int api_http_status(int grpc_status);
/* A string member (NULL when absent or not a string); `alt` is another
 * spelling accepted (e.g. "InstanceIds" beside "instanceIds"). */
const char *api_str(json_t *o, const char *key, const char *alt);
/* A time member: an RFC 3339 string; false with 400 answered when it is
 * there and is not one; *ns 0 when absent. */
bool api_time(api *a, json_t *o, const char *key, int64_t *ns);

/* routes: each returns false when the path is not one of its own */
bool api_orch_route(api *a, char **seg, int nseg);
bool api_ent_route(api *a, char **seg, int nseg);
bool api_sched_route(api *a, char **seg, int nseg);
/* the orchestrations query (api_query.c) */
void api_orch_query(api *a);
/* The ids of every orchestration the query filter matches (as the query
 * route filters; in the engine's order), at most max_scan looked at and
 * `limit` kept (0: no limit).  Returns how many (dts_free each and the
 * array), or (size_t)-1 with the error answered. */
size_t api_query_ids(api *a, json_t *filter, long limit, char ***ids, bool *truncated);
/* An orchestration as the API answers it (api_orch.c); `hide_reserved`
 * leaves out tags whose keys start "durabletask." (lists do). */
json_t *api_state_json(const OrchestrationState *s, bool hide_reserved);
/* The query's filter, parsed once and applied page by page (the export). */
typedef struct api_filter api_filter;
api_filter *api_filter_new(api *a, json_t *filter); /* NULL: 400 answered */
void api_filter_free(api_filter *f);
bool api_filter_match(const api_filter *f, const OrchestrationState *s);
/* Sets the engine's part of the filter on iq (newest first unless by prefix). */
void api_filter_query(const api_filter *f, InstanceQuery *iq, Google__Protobuf__Timestamp *cf,
                      Google__Protobuf__Timestamp *ct, Google__Protobuf__StringValue *pv);
/* GET /orchestrations/export (api_export.c) */
void api_orch_export(api *a);
/* bulk jobs (api_jobs.c) */
bool api_jobs_route(api *a, char **seg, int nseg);
void api_orch_bulk(api *a);

#endif
