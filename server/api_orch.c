/* api_orch.c -- the data API's orchestration routes (docs/http-api.md):
 * one orchestration, its payloads and history, start, restart, the
 * actions posted as history events, force-terminate and purge.  The query
 * is api_query.c's. */
#include "server/api.h"

#include "runtime/alloc.h"
#include "server/pbjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BULK 10000 /* ids one bulk request may name */

static bool method_is(api *a, const char *m) { return strcmp(a->r->method, m) == 0; }

json_t *api_state_json(const OrchestrationState *s, bool hide_reserved) {
  json_t *o = json_object();
  json_object_set_new(o, "instanceId", json_string(s->instance_id));
  json_object_set_new(o, "executionId", json_string(dts_sv_get(s->execution_id) ? dts_sv_get(s->execution_id) : ""));
  json_object_set_new(o, "name", json_string(s->name));
  json_object_set_new(o, "version", json_string(dts_sv_get(s->version) ? dts_sv_get(s->version) : ""));
  json_object_set_new(o, "createdAt", pbjson_time_value(dts_ts_to_ns(s->created_timestamp)));
  json_object_set_new(o, "lastUpdatedAt", pbjson_time_value(dts_ts_to_ns(s->last_updated_timestamp)));
  json_object_set_new(o, "completedAt", pbjson_time_value(dts_ts_to_ns(s->completed_timestamp)));
  json_object_set_new(o, "scheduledStartAt", pbjson_time_value(dts_ts_to_ns(s->scheduled_start_timestamp)));
  const ProtobufCEnumValue *ev =
      protobuf_c_enum_descriptor_get_value(&orchestration_status__descriptor, (int)s->orchestration_status);
  json_object_set_new(o, "orchestrationStatus", json_string(ev ? ev->name : "ORCHESTRATION_STATUS_UNKNOWN"));
  const char *pid = dts_sv_get(s->parent_instance_id);
  json_object_set_new(o, "parentInstanceId", pid && pid[0] ? json_string(pid) : json_null());
  json_t *tags = json_object();
  for (size_t i = 0; i < s->n_tags; i++) {
    if (hide_reserved && strncmp(s->tags[i]->key, "durabletask.", 12) == 0) continue;
    json_object_set_new(tags, s->tags[i]->key, json_string(s->tags[i]->value ? s->tags[i]->value : ""));
  }
  json_object_set_new(o, "tags", tags);
  return o;
}

static json_t *failure_json(const TaskFailureDetails *f) {
  if (f == NULL) return json_null();
  json_t *o = json_object();
  json_object_set_new(o, "errorType", json_string(f->error_type));
  json_object_set_new(o, "errorMessage", json_string(f->error_message));
  const char *st = dts_sv_get(f->stack_trace);
  json_object_set_new(o, "stackTrace", st ? json_string(st) : json_null());
  json_object_set_new(o, "innerFailure", failure_json(f->inner_failure));
  json_object_set_new(o, "isNonRetriable", json_boolean(f->is_non_retriable));
  return o;
}

static json_t *sv_json(const Google__Protobuf__StringValue *v) {
  const char *s = dts_sv_get(v);
  return s ? json_string(s) : json_null();
}

/* GetInstance: the state, or NULL with 404 (or the error) answered. */
static GetInstanceResponse *get_instance(api *a, const char *id, bool io) {
  GetInstanceRequest req = GET_INSTANCE_REQUEST__INIT;
  req.instance_id = (char *)id;
  req.get_inputs_and_outputs = io;
  dts_call *c = api_call(a, DTS_M_GET_INSTANCE, &req.base);
  if (c == NULL) return NULL;
  GetInstanceResponse *r = (GetInstanceResponse *)api_unpack(a, c, &get_instance_response__descriptor);
  dts_local_release(c);
  if (r != NULL && (!r->exists || r->orchestration_state == NULL)) {
    protobuf_c_message_free_unpacked(&r->base, NULL);
    http_error(a->out, 404, "orchestration '%s' not found", id);
    return NULL;
  }
  return r;
}

static void get_one(api *a, const char *id, bool payloads) {
  GetInstanceResponse *r = get_instance(a, id, payloads);
  if (r == NULL) return;
  const OrchestrationState *s = r->orchestration_state;
  json_t *j;
  if (payloads) {
    j = json_object();
    json_object_set_new(j, "input", sv_json(s->input));
    json_object_set_new(j, "output", sv_json(s->output));
    json_object_set_new(j, "customStatus", sv_json(s->custom_status));
    json_object_set_new(j, "failureDetails", failure_json(s->failure_details));
  } else {
    j = api_state_json(s, false);
  }
  protobuf_c_message_free_unpacked(&r->base, NULL);
  api_json(a, 200, j);
}

/* ?startIndex=&count= over the events (default: all of them). */
static bool page_args(api *a, size_t *start, size_t *count) {
  *start = 0;
  *count = SIZE_MAX;
  const char *s = http_arg(a->r, "startIndex"), *n = http_arg(a->r, "count");
  char *end;
  if (s != NULL) {
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0) {
      http_error(a->out, 400, "startIndex must be a number >= 0");
      return false;
    }
    *start = (size_t)v;
  }
  if (n != NULL) {
    long v = strtol(n, &end, 10);
    if (*n == '\0' || *end != '\0' || v < 1) {
      http_error(a->out, 400, "count must be a number >= 1");
      return false;
    }
    *count = (size_t)v;
  }
  return true;
}

static void history(api *a, const char *id, const char *exec) {
  size_t start, count;
  if (!page_args(a, &start, &count)) return;
  StreamInstanceHistoryRequest req = STREAM_INSTANCE_HISTORY_REQUEST__INIT;
  Google__Protobuf__StringValue ex;
  req.instance_id = (char *)id;
  if (exec[0] != '\0' && strcmp(exec, "latest") != 0) req.execution_id = dts_sv(&ex, exec);
  dts_call *c = api_call(a, DTS_M_STREAM_HISTORY, &req.base);
  if (c == NULL) return;
  const dts_local *ans = dts_local_answer(c);
  json_t *events = json_array();
  size_t seen = 0;
  for (size_t i = 0; i < ans->nitems; i++) {
    HistoryChunk *ch = history_chunk__unpack(NULL, ans->items[i].n, ans->items[i].p);
    if (ch == NULL) continue;
    for (size_t k = 0; k < ch->n_events; k++, seen++)
      if (seen >= start && seen - start < count) json_array_append_new(events, pbjson_all(&ch->events[k]->base));
    history_chunk__free_unpacked(ch, NULL);
  }
  dts_local_release(c);
  if (seen == 0) { /* no events: an instance not started yet, or none at all */
    GetInstanceResponse *gi = get_instance(a, id, false);
    if (gi == NULL) {
      json_decref(events);
      return; /* 404 answered */
    }
    protobuf_c_message_free_unpacked(&gi->base, NULL);
  }
  bool array = http_arg(a->r, "format") != NULL && strcmp(http_arg(a->r, "format"), "array") == 0;
  if (array) {
    api_json(a, 200, events);
    return;
  }
  json_t *j = json_object();
  json_object_set_new(j, "history", events);
  json_object_set_new(j, "totalCount", json_integer((json_int_t)seen));
  if (count != SIZE_MAX && start + count < seen)
    json_object_set_new(j, "nextStartIndex", json_integer((json_int_t)(start + count)));
  api_json(a, 200, j);
}

/* The tags of a start request: a string map of at most 1,000 bytes. */
static bool start_tags(api *a, json_t *tags, CreateInstanceRequest *req, CreateInstanceRequest__TagsEntry *ents,
                       CreateInstanceRequest__TagsEntry **ptrs, size_t max) {
  if (tags == NULL || json_is_null(tags)) return true;
  if (!json_is_object(tags) || json_object_size(tags) > max) {
    http_error(a->out, 400, "tags must be an object of at most %zu strings", max);
    return false;
  }
  size_t bytes = 0, n = 0;
  const char *k;
  json_t *v;
  json_object_foreach(tags, k, v) {
    if (!json_is_string(v)) {
      http_error(a->out, 400, "tag '%s' must be a string", k);
      return false;
    }
    bytes += strlen(k) + json_string_length(v);
    ents[n] = (CreateInstanceRequest__TagsEntry)CREATE_INSTANCE_REQUEST__TAGS_ENTRY__INIT;
    ents[n].key = (char *)k;
    ents[n].value = (char *)json_string_value(v);
    ptrs[n] = &ents[n];
    n++;
  }
  if (bytes > 1000) {
    http_error(a->out, 400, "tags take %zu bytes; at most 1000 are allowed", bytes);
    return false;
  }
  req->n_tags = n;
  req->tags = ptrs;
  return true;
}

static void start(api *a) {
  json_t *b = api_body(a, false);
  if (b == NULL) return;
  CreateInstanceRequest req = CREATE_INSTANCE_REQUEST__INIT;
  Google__Protobuf__StringValue ver, in;
  Google__Protobuf__Timestamp ts;
  CreateInstanceRequest__TagsEntry ents[64], *ptrs[64];
  const char *name = api_str(b, "name", "orchestrationName");
  int64_t at;
  json_t *input = json_object_get(b, "input");
  if (name == NULL || name[0] == '\0') {
    http_error(a->out, 400, "'name' (the orchestration's name) is required");
  } else if (input != NULL && !json_is_string(input) && !json_is_null(input)) {
    http_error(a->out, 400, "'input' must be a string (the serialized input) or null");
  } else if (api_time(a, b, "scheduledStartTimestamp", &at) &&
             start_tags(a, json_object_get(b, "tags"), &req, ents, ptrs, 64)) {
    req.name = (char *)name;
    const char *id = api_str(b, "instanceId", "orchestrationId");
    req.instance_id = (char *)(id ? id : "");
    if (api_str(b, "version", NULL)) req.version = dts_sv(&ver, api_str(b, "version", NULL));
    if (json_is_string(input)) req.input = dts_sv(&in, json_string_value(input));
    if (at > 0) req.scheduled_start_timestamp = dts_ts_from_ns(&ts, at);
    dts_call *c = api_call(a, DTS_M_START_INSTANCE, &req.base);
    if (c != NULL) {
      CreateInstanceResponse *r = (CreateInstanceResponse *)api_unpack(a, c, &create_instance_response__descriptor);
      if (r != NULL) {
        json_t *j = json_object();
        json_object_set_new(j, "instanceId", json_string(r->instance_id));
        snprintf(a->out->location, sizeof(a->out->location), "orchestrations/%.500s", r->instance_id);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        api_json(a, 201, j);
      }
      dts_local_release(c);
    }
  }
  json_decref(b);
}

static void restart(api *a, const char *id) {
  json_t *b = a->r->blen ? api_body(a, false) : json_object();
  if (b == NULL) return;
  RestartInstanceRequest req = RESTART_INSTANCE_REQUEST__INIT;
  req.instance_id = (char *)id;
  req.restart_with_new_instance_id = json_is_true(json_object_get(b, "restartWithNewInstanceId"));
  json_decref(b);
  dts_call *c = api_call(a, DTS_M_RESTART_INSTANCE, &req.base);
  if (c == NULL) return;
  RestartInstanceResponse *r = (RestartInstanceResponse *)api_unpack(a, c, &restart_instance_response__descriptor);
  if (r != NULL) {
    json_t *j = json_object();
    json_object_set_new(j, "instanceId", json_string(r->instance_id));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    api_json(a, 200, j);
  }
  dts_local_release(c);
}

int api_act(api *a, int action, const char *id, const char *reason, bool recursive) {
  Google__Protobuf__StringValue rv;
  Google__Protobuf__StringValue *r = reason ? dts_sv(&rv, reason) : NULL;
  SuspendRequest s = SUSPEND_REQUEST__INIT;
  ResumeRequest u = RESUME_REQUEST__INIT;
  TerminateRequest t = TERMINATE_REQUEST__INIT;
  RewindInstanceRequest w = REWIND_INSTANCE_REQUEST__INIT;
  PurgeInstancesRequest p = PURGE_INSTANCES_REQUEST__INIT;
  s.instance_id = u.instance_id = t.instance_id = w.instance_id = p.instance_id = (char *)id;
  s.reason = u.reason = w.reason = t.output = r;
  t.recursive = p.recursive = recursive;
  p.request_case = PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_ID;
  static const dts_method methods[API_NACTIONS] = {DTS_M_SUSPEND, DTS_M_RESUME, DTS_M_TERMINATE,
                                                   DTS_M_REWIND_INSTANCE, DTS_M_PURGE_INSTANCES};
  const ProtobufCMessage *req[API_NACTIONS] = {&s.base, &u.base, &t.base, &w.base, &p.base};
  dts_call *c = api_call(a, methods[action], req[action]);
  if (c == NULL) return a->out->status;
  int st = 200;
  if (action == API_PURGE) {
    PurgeInstancesResponse *pr = (PurgeInstancesResponse *)api_unpack(a, c, &purge_instances_response__descriptor);
    if (pr == NULL) {
      snprintf(a->err, sizeof(a->err), "the engine's answer does not decode");
      st = 500;
    } else if (pr->deleted_instance_count == 0) {
      snprintf(a->err, sizeof(a->err), "orchestration '%.500s' not found (or not finished)", id);
      http_error(a->out, 404, "%s", a->err);
      st = 404;
    }
    if (pr != NULL) protobuf_c_message_free_unpacked(&pr->base, NULL);
  }
  dts_local_release(c);
  return st;
}

/* One action given as a history event ({executionSuspended:{reason}}, ...).
 * Returns the HTTP status (200 when done) with why in msg. */
static int apply_event(api *a, const char *id, json_t *ev, char *msg, size_t msglen) {
  static const char *const kinds[] = {"executionSuspended", "executionResumed", "executionTerminated",
                                      "executionRewound", "eventRaised"};
  int k = -1;
  json_t *body = NULL;
  for (int i = 0; i < 5 && json_is_object(ev); i++)
    if ((body = json_object_get(ev, kinds[i])) != NULL) {
      k = i;
      break;
    }
  if (k < 0 || !json_is_object(body)) {
    snprintf(msg, msglen,
             "the event must be one of executionSuspended, executionResumed, executionTerminated, "
             "executionRewound, eventRaised, each an object");
    return 400;
  }
  if (k < 4) { /* kinds[k] is action k (API_SUSPEND .. API_REWIND) */
    int st = api_act(a, k, id, api_str(body, "reason", NULL), json_is_true(json_object_get(body, "recursive")));
    if (st != 200) snprintf(msg, msglen, "%s", a->err);
    return st;
  }
  RaiseEventRequest e = RAISE_EVENT_REQUEST__INIT;
  Google__Protobuf__StringValue in;
  e.instance_id = (char *)id;
  const char *name = api_str(body, "name", NULL);
  json_t *input = json_object_get(body, "input");
  if (name == NULL || name[0] == '\0') {
    snprintf(msg, msglen, "eventRaised needs a 'name'");
    return 400;
  }
  e.name = (char *)name;
  if (json_is_string(input)) {
    e.input = dts_sv(&in, json_string_value(input));
  } else if (input != NULL && !json_is_null(input)) {
    snprintf(msg, msglen, "eventRaised's 'input' must be a string (the serialized input) or null");
    return 400;
  }
  dts_call *c = api_call(a, DTS_M_RAISE_EVENT, &e.base);
  if (c == NULL) {
    snprintf(msg, msglen, "%s", a->err);
    return a->out->status;
  }
  dts_local_release(c);
  return 200;
}

static void post_event(api *a, const char *id) {
  json_t *b = api_body(a, false);
  if (b == NULL) return;
  char msg[2600];
  int st = apply_event(a, id, b, msg, sizeof(msg));
  json_decref(b);
  if (st == 200)
    api_json(a, 200, json_object());
  else if (st == 400)
    http_error(a->out, 400, "%s", msg);
  /* else: api_call answered the error */
}

/* Answers a bulk action: the ids that failed, with why. */
static void bulk_answer(api *a, json_t *failed, long done) {
  json_t *j = json_object();
  json_object_set_new(j, "succeededCount", json_integer(done));
  json_object_set_new(j, "failedInstanceIds", failed);
  api_json(a, 200, j);
}

static void fail_one(json_t *failed, const char *id, api *a, const char *why) {
  json_t *o = json_object();
  json_object_set_new(o, "instanceId", json_string(id));
  json_object_set_new(o, "status", json_integer(a->out->status));
  json_object_set_new(o, "error", json_string(why));
  json_array_append_new(failed, o);
}

static void add_events(api *a) {
  json_t *b = api_body(a, false);
  if (b == NULL) return;
  json_t *evs = json_object_get(b, "events");
  if (!json_is_object(evs) || json_object_size(evs) > MAX_BULK) {
    http_error(a->out, 400, "'events' must be an object of instance id -> event, at most %d", MAX_BULK);
    json_decref(b);
    return;
  }
  json_t *failed = json_array();
  long done = 0;
  const char *id;
  json_t *ev;
  json_object_foreach(evs, id, ev) {
    char msg[2600];
    a->out->status = 200;
    int st = apply_event(a, id, ev, msg, sizeof(msg));
    a->out->status = st;
    if (st == 200)
      done++;
    else
      fail_one(failed, id, a, msg);
  }
  json_decref(b);
  bulk_answer(a, failed, done);
}

/* The ids of a bulk body: an array, or {key: [...]} (NULL: 400 answered). */
static json_t *bulk_ids(api *a, json_t *b, const char *key, const char *alt) {
  json_t *ids = json_is_array(b) ? b : json_object_get(b, key);
  if (ids == NULL && alt) ids = json_object_get(b, alt);
  if (!json_is_array(ids) || json_array_size(ids) > MAX_BULK) {
    http_error(a->out, 400, "'%s' must be an array of at most %d instance ids", key, MAX_BULK);
    return NULL;
  }
  for (size_t i = 0; i < json_array_size(ids); i++)
    if (!json_is_string(json_array_get(ids, i))) {
      http_error(a->out, 400, "'%s' must hold strings (instance ids)", key);
      return NULL;
    }
  return ids;
}

static void force_terminate(api *a) {
  json_t *b = api_body(a, false);
  if (b == NULL) return;
  json_t *ids = bulk_ids(a, b, "InstanceIds", "instanceIds");
  if (ids != NULL) {
    const char *reason = api_str(b, "Reason", "reason");
    json_t *failed = json_array();
    long done = 0;
    for (size_t i = 0; i < json_array_size(ids); i++) {
      const char *id = json_string_value(json_array_get(ids, i));
      if (api_act(a, API_TERMINATE, id, reason, false) == 200) done++;
      else fail_one(failed, id, a, a->err);
    }
    bulk_answer(a, failed, done);
  }
  json_decref(b);
}

/* Purges one instance (?recursive=true: its finished sub-orchestrations
 * too): 200, or the error answered. */
static int purge_one(api *a, const char *id) {
  const char *rec = http_arg(a->r, "recursive");
  return api_act(a, API_PURGE, id, NULL, rec != NULL && strcmp(rec, "true") == 0);
}

static void purge(api *a, const char *id) {
  if (purge_one(a, id) != 200) return;
  json_t *j = json_object();
  json_object_set_new(j, "deletedInstanceCount", json_integer(1));
  api_json(a, 200, j);
}

static void purge_many(api *a) {
  json_t *b = api_body(a, true);
  if (b == NULL) return;
  json_t *ids = bulk_ids(a, b, "instanceIds", NULL);
  if (ids != NULL) {
    json_t *failed = json_array();
    long done = 0;
    for (size_t i = 0; i < json_array_size(ids); i++) {
      const char *id = json_string_value(json_array_get(ids, i));
      if (purge_one(a, id) == 200)
        done++;
      else
        fail_one(failed, id, a, a->err);
    }
    json_t *j = json_object();
    json_object_set_new(j, "deletedInstanceCount", json_integer(done));
    json_object_set_new(j, "failedInstanceIds", failed);
    api_json(a, 200, j);
  }
  json_decref(b);
}

bool api_orch_route(api *a, char **seg, int nseg) {
  if (nseg == 0 && method_is(a, "POST"))
    start(a);
  else if (nseg == 1 && strcmp(seg[0], "query") == 0 && method_is(a, "POST"))
    api_orch_query(a);
  else if (nseg == 1 && strcmp(seg[0], "addhistoryevents") == 0 && method_is(a, "POST"))
    add_events(a);
  else if (nseg == 1 && strcmp(seg[0], "forceterminate") == 0 && method_is(a, "POST"))
    force_terminate(a);
  else if (nseg == 1 && strcmp(seg[0], "purge") == 0 && method_is(a, "DELETE"))
    purge_many(a);
  else if (nseg == 1 && strcmp(seg[0], "bulk") == 0 && method_is(a, "POST"))
    api_orch_bulk(a);
  else if (nseg == 1 && strcmp(seg[0], "export") == 0 && method_is(a, "GET"))
    api_orch_export(a);
  else if (nseg == 1 && method_is(a, "GET"))
    get_one(a, seg[0], false);
  else if (nseg == 1 && method_is(a, "DELETE"))
    purge(a, seg[0]);
  else if (nseg == 2 && strcmp(seg[1], "payloads") == 0 && method_is(a, "GET"))
    get_one(a, seg[0], true);
  else if (nseg == 2 && strcmp(seg[1], "restart") == 0 && method_is(a, "POST"))
    restart(a, seg[0]);
  else if (nseg == 2 && strcmp(seg[1], "history") == 0 && method_is(a, "POST"))
    post_event(a, seg[0]);
  else if (nseg == 2 && strcmp(seg[1], "history") == 0 && method_is(a, "GET"))
    history(a, seg[0], "");
  else if (nseg == 4 && strcmp(seg[1], "executions") == 0 && strcmp(seg[3], "history") == 0 && method_is(a, "GET"))
    history(a, seg[0], seg[2]);
  else
    return false;
  return true;
}
