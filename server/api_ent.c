/* api_ent.c -- the data API's entity routes and the workers list
 * (docs/http-api.md). */
#define _GNU_SOURCE /* qsort_r, strncasecmp */
#include "server/api.h"

#include "runtime/alloc.h"
#include "server/pbjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENGINE_PAGE 1000
#define MAX_COUNT 1000
#define MAX_BULK 10000

static bool method_is(api *a, const char *m) { return strcmp(a->r->method, m) == 0; }

static json_t *entity_json(const EntityMetadata *e, bool state) {
  json_t *o = json_object();
  json_object_set_new(o, "instanceId", json_string(e->instance_id));
  /* "@name@key": name and key for lists that show them apart */
  const char *at = e->instance_id[0] == '@' ? strchr(e->instance_id + 1, '@') : NULL;
  if (at != NULL) {
    json_object_set_new(o, "name", json_stringn(e->instance_id + 1, (size_t)(at - e->instance_id - 1)));
    json_object_set_new(o, "key", json_string(at + 1));
  }
  json_object_set_new(o, "lastModifiedTime", pbjson_time_value(dts_ts_to_ns(e->last_modified_time)));
  json_object_set_new(o, "backlogQueueSize", json_integer(e->backlog_queue_size));
  const char *lb = dts_sv_get(e->locked_by);
  json_object_set_new(o, "lockedBy", lb && lb[0] ? json_string(lb) : json_null());
  if (state) {
    const char *s = dts_sv_get(e->serialized_state);
    json_object_set_new(o, "state", s ? json_string(s) : json_null());
  }
  return o;
}

static void get_entity(api *a, const char *id, bool state) {
  GetEntityRequest req = GET_ENTITY_REQUEST__INIT;
  req.instance_id = (char *)id;
  req.include_state = state;
  dts_call *c = api_call(a, DTS_M_GET_ENTITY, &req.base);
  if (c == NULL) return;
  GetEntityResponse *r = (GetEntityResponse *)api_unpack(a, c, &get_entity_response__descriptor);
  dts_local_release(c);
  if (r == NULL) return;
  if (!r->exists || r->entity == NULL) {
    http_error(a->out, 404, "entity '%s' not found", id);
  } else if (state) {
    const char *s = dts_sv_get(r->entity->serialized_state);
    json_t *j = json_object();
    json_object_set_new(j, "instanceId", json_string(id));
    json_object_set_new(j, "state", s ? json_string(s) : json_null());
    api_json(a, 200, j);
  } else {
    api_json(a, 200, entity_json(r->entity, false));
  }
  protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Deleting an entity is the SDKs' implicit "delete" operation, signalled:
 * a worker that hosts the entity clears its state when it runs it. */
static int delete_one(api *a, const char *id) {
  SignalEntityRequest req = SIGNAL_ENTITY_REQUEST__INIT;
  char rid[37];
  dts_uuid(rid);
  req.instance_id = (char *)id;
  req.name = "delete";
  req.request_id = rid;
  dts_call *c = api_call(a, DTS_M_SIGNAL_ENTITY, &req.base);
  if (c == NULL) return a->out->status;
  dts_local_release(c);
  return 202;
}

static void delete_entity(api *a, const char *id) {
  if (delete_one(a, id) != 202) return;
  json_t *j = json_object();
  json_object_set_new(j, "instanceId", json_string(id));
  json_object_set_new(j, "operation", json_string("delete"));
  api_json(a, 202, j);
}

static void delete_many(api *a) {
  json_t *b = api_body(a, true);
  if (b == NULL) return;
  if (json_array_size(b) > MAX_BULK) {
    http_error(a->out, 400, "at most %d entity ids", MAX_BULK);
    json_decref(b);
    return;
  }
  json_t *failed = json_array();
  long done = 0;
  for (size_t i = 0; i < json_array_size(b); i++) {
    const char *id = json_string_value(json_array_get(b, i));
    if (id != NULL && delete_one(a, id) == 202) {
      done++;
      continue;
    }
    json_t *o = json_object();
    json_object_set_new(o, "instanceId", id ? json_string(id) : json_null());
    json_object_set_new(o, "error", json_string(id ? a->err : "not a string"));
    json_array_append_new(failed, o);
  }
  json_decref(b);
  json_t *j = json_object();
  json_object_set_new(j, "signalledCount", json_integer(done));
  json_object_set_new(j, "failedInstanceIds", failed);
  api_json(a, 202, j);
}

/* POST /entities/{id}/signal {name, input}: one operation, queued. */
static void signal_entity(api *a, const char *id) {
  json_t *b = api_body(a, false);
  if (b == NULL) return;
  const char *name = api_str(b, "name", "operation");
  json_t *input = json_object_get(b, "input");
  if (name == NULL || name[0] == '\0') {
    http_error(a->out, 400, "'name' (the operation) is required");
  } else if (input != NULL && !json_is_string(input) && !json_is_null(input)) {
    http_error(a->out, 400, "'input' must be a string (the serialized input) or null");
  } else {
    SignalEntityRequest req = SIGNAL_ENTITY_REQUEST__INIT;
    Google__Protobuf__StringValue in;
    char rid[37];
    dts_uuid(rid);
    req.instance_id = (char *)id;
    req.name = (char *)name;
    req.request_id = rid;
    if (json_is_string(input)) req.input = dts_sv(&in, json_string_value(input));
    dts_call *c = api_call(a, DTS_M_SIGNAL_ENTITY, &req.base);
    if (c != NULL) {
      dts_local_release(c);
      json_t *j = json_object();
      json_object_set_new(j, "instanceId", json_string(id));
      json_object_set_new(j, "requestId", json_string(rid));
      api_json(a, 202, j);
    }
  }
  json_decref(b);
}

/* POST /entities/clean: CleanEntityStorage, every page of it. */
static void clean(api *a) {
  json_t *b = a->r->blen ? api_body(a, false) : json_object();
  if (b == NULL) return;
  bool empty = !json_is_false(json_object_get(b, "removeEmptyEntities"));
  bool orphans = !json_is_false(json_object_get(b, "releaseOrphanedLocks"));
  json_decref(b);
  char cont[512] = "";
  long removed = 0, released = 0;
  for (int pages = 0; pages < 100000; pages++) {
    CleanEntityStorageRequest req = CLEAN_ENTITY_STORAGE_REQUEST__INIT;
    Google__Protobuf__StringValue cv;
    req.remove_empty_entities = empty;
    req.release_orphaned_locks = orphans;
    if (cont[0]) req.continuation_token = dts_sv(&cv, cont);
    dts_call *c = api_call(a, DTS_M_CLEAN_ENTITY_STORAGE, &req.base);
    if (c == NULL) return;
    CleanEntityStorageResponse *r =
        (CleanEntityStorageResponse *)api_unpack(a, c, &clean_entity_storage_response__descriptor);
    dts_local_release(c);
    if (r == NULL) return;
    removed += r->empty_entities_removed;
    released += r->orphaned_locks_released;
    const char *next = dts_sv_get(r->continuation_token);
    bool more = next && next[0] && strlen(next) < sizeof(cont);
    if (more) snprintf(cont, sizeof(cont), "%s", next);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (!more) break;
  }
  json_t *j = json_object();
  json_object_set_new(j, "emptyEntitiesRemoved", json_integer(removed));
  json_object_set_new(j, "orphanedLocksReleased", json_integer(released));
  api_json(a, 200, j);
}

/* ---- query ---------------------------------------------------------------- */

typedef struct efilter {
  const char *key, *name, *starts;
  json_t *exclude; /* array of prefixes */
  int64_t from, to;
} efilter;

static bool ent_match(const efilter *f, const char *id) {
  const char *at = id[0] == '@' ? strchr(id + 1, '@') : NULL;
  size_t nl = at ? (size_t)(at - id - 1) : strlen(id);
  const char *name = id + (id[0] == '@'), *key = at ? at + 1 : "";
  if (f->name && (strlen(f->name) != nl || strncasecmp(name, f->name, nl) != 0)) return false;
  if (f->starts && (strlen(f->starts) > nl || strncasecmp(name, f->starts, strlen(f->starts)) != 0)) return false;
  if (f->key && strstr(key, f->key) == NULL) return false;
  for (size_t i = 0; i < json_array_size(f->exclude); i++) {
    const char *p = json_string_value(json_array_get(f->exclude, i));
    if (p && strlen(p) <= nl && strncasecmp(name, p, strlen(p)) == 0) return false;
  }
  return true;
}

typedef struct erow {
  json_t *j;
  char *id;
  int64_t t;
} erow;

static int cmp_erow(const void *x, const void *y, void *ctx) {
  const erow *p = x, *r = y;
  const int *col = ctx; /* 0 name, 1 key, 2 last modified; negative: descending */
  int c = abs(*col) == 3 ? (p->t < r->t ? -1 : p->t > r->t) : strcmp(p->id, r->id);
  if (abs(*col) == 2) { /* by key: after the second @ */
    const char *pk = strchr(p->id + 1, '@'), *rk = strchr(r->id + 1, '@');
    c = strcmp(pk ? pk : "", rk ? rk : "");
  }
  return *col < 0 ? -c : c;
}

static bool ent_filter(api *a, json_t *b, efilter *f, int *col) {
  memset(f, 0, sizeof(*f));
  json_t *fl = json_object_get(b, "filter");
  if (json_is_object(fl)) {
    f->key = api_str(fl, "key", NULL);
    f->name = api_str(fl, "name", NULL);
    f->starts = api_str(fl, "nameStartsWith", NULL);
    f->exclude = json_object_get(fl, "excludeNameStartsWith");
    json_t *lm = json_object_get(fl, "lastModifiedAt");
    if (json_is_object(lm) && (!api_time(a, lm, "start", &f->from) || !api_time(a, lm, "end", &f->to))) return false;
  }
  *col = -3; /* newest first */
  json_t *s = json_object_get(b, "sort");
  json_t *k = json_is_array(s) ? json_array_get(s, 0) : s;
  if (json_is_object(k)) {
    const char *c = api_str(k, "column", NULL), *d = api_str(k, "direction", NULL);
    int n = c == NULL                            ? 0
            : strcmp(c, "NAME") == 0             ? 1
            : strcmp(c, "KEY") == 0              ? 2
            : strcmp(c, "LAST_MODIFIED_AT") == 0 ? 3
                                                 : 0;
    if (n == 0) {
      http_error(a->out, 400, "entity sort columns are NAME, KEY and LAST_MODIFIED_AT");
      return false;
    }
    *col = d && strcmp(d, "DESCENDING_SORT") == 0 ? -n : n;
  }
  return true;
}

static void query(api *a) {
  json_t *b = a->r->blen ? api_body(a, false) : json_object();
  if (b == NULL) return;
  efilter f;
  int col;
  long start = 0, count = 100;
  json_t *pg = json_object_get(b, "pagination");
  if (json_is_integer(json_object_get(pg, "startIndex")))
    start = (long)json_integer_value(json_object_get(pg, "startIndex"));
  if (json_is_integer(json_object_get(pg, "count"))) count = (long)json_integer_value(json_object_get(pg, "count"));
  if (start < 0 || count < 1 || count > MAX_COUNT) {
    http_error(a->out, 400, "pagination: startIndex >= 0 and count from 1 to %d", MAX_COUNT);
    json_decref(b);
    return;
  }
  if (!ent_filter(a, b, &f, &col)) {
    json_decref(b);
    return;
  }
  erow *rows = NULL;
  size_t n = 0, cap = 0, seen = 0;
  char cont[512] = "";
  bool ok = true, truncated = false;
  for (;;) {
    QueryEntitiesRequest req = QUERY_ENTITIES_REQUEST__INIT;
    EntityQuery q = ENTITY_QUERY__INIT;
    Google__Protobuf__Int32Value ps = GOOGLE__PROTOBUF__INT32_VALUE__INIT;
    Google__Protobuf__StringValue cv;
    Google__Protobuf__Timestamp tf, tt;
    req.query = &q;
    ps.value = ENGINE_PAGE;
    q.page_size = &ps;
    if (f.from > 0) q.last_modified_from = dts_ts_from_ns(&tf, f.from);
    if (f.to > 0) q.last_modified_to = dts_ts_from_ns(&tt, f.to);
    if (cont[0]) q.continuation_token = dts_sv(&cv, cont);
    dts_call *c = api_call(a, DTS_M_QUERY_ENTITIES, &req.base);
    QueryEntitiesResponse *r =
        c ? (QueryEntitiesResponse *)api_unpack(a, c, &query_entities_response__descriptor) : NULL;
    if (c) dts_local_release(c);
    if (r == NULL) {
      ok = false;
      break;
    }
    for (size_t i = 0; i < r->n_entities; i++, seen++) {
      if (!ent_match(&f, r->entities[i]->instance_id)) continue;
      if (n == cap) rows = dts_realloc(rows, (cap = cap ? cap * 2 : 64) * sizeof(*rows));
      rows[n++] = (erow){entity_json(r->entities[i], false), dts_strdup(r->entities[i]->instance_id),
                         dts_ts_to_ns(r->entities[i]->last_modified_time)};
    }
    const char *next = dts_sv_get(r->continuation_token);
    bool more = next && next[0] && strlen(next) < sizeof(cont);
    if (more) snprintf(cont, sizeof(cont), "%s", next);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (!more) break;
    if ((long)seen >= a->r->cfg->max_scan) {
      truncated = true;
      break;
    }
  }
  if (ok) {
    if (n > 1) qsort_r(rows, n, sizeof(*rows), cmp_erow, &col);
    json_t *list = json_array();
    for (long i = start; i < (long)n && i < start + count; i++)
      json_array_append(list, rows[i].j);
    json_t *j = json_object();
    json_object_set_new(j, "entities", list);
    json_object_set_new(j, "totalCount", json_integer((json_int_t)n));
    json_object_set_new(j, "truncated", json_boolean(truncated));
    api_json(a, 200, j);
  }
  for (size_t i = 0; i < n; i++) {
    json_decref(rows[i].j);
    dts_free(rows[i].id);
  }
  dts_free(rows);
  json_decref(b);
}

/* ---- workers ---------------------------------------------------------------- */

static void workers(api *a) {
  Dtsd__Admin__ListWorkersRequest req = DTSD__ADMIN__LIST_WORKERS_REQUEST__INIT;
  dts_call *c = api_call(a, DTS_M_ADMIN_LIST_WORKERS, &req.base);
  if (c == NULL) return;
  Dtsd__Admin__ListWorkersResponse *r =
      (Dtsd__Admin__ListWorkersResponse *)api_unpack(a, c, &dtsd__admin__list_workers_response__descriptor);
  dts_local_release(c);
  if (r == NULL) return;
  json_t *list = json_array();
  for (size_t i = 0; i < r->n_workers; i++) {
    const Dtsd__Admin__WorkerInfo *w = r->workers[i];
    json_t *o = json_object();
    json_object_set_new(o, "workerId", json_string(w->worker_id));
    json_object_set_new(o, "streamId", json_string(w->stream_id));
    json_object_set_new(o, "userAgent", json_string(w->user_agent));
    json_object_set_new(o, "activeOrchestrationsCount", json_integer(w->active_orchestrations));
    json_object_set_new(o, "maxOrchestrationsCount", json_integer(w->max_orchestrations));
    json_object_set_new(o, "activeActivitiesCount", json_integer(w->active_activities));
    json_object_set_new(o, "maxActivitiesCount", json_integer(w->max_activities));
    json_object_set_new(o, "activeEntitiesCount", json_integer(w->active_entities));
    json_object_set_new(o, "maxEntitiesCount", json_integer(w->max_entities));
    json_object_set_new(o, "connectedAt", pbjson_time_value(dts_ts_to_ns(w->connected_at)));
    json_object_set_new(o, "lastActivityAt", pbjson_time_value(dts_ts_to_ns(w->last_send)));
    json_array_append_new(list, o);
  }
  protobuf_c_message_free_unpacked(&r->base, NULL);
  json_t *j = json_object();
  json_object_set_new(j, "workers", list);
  api_json(a, 200, j);
}

bool api_ent_route(api *a, char **seg, int nseg) {
  if (strcmp(seg[0], "workers") == 0) {
    if (nseg != 1 || !method_is(a, "GET")) return false;
    workers(a);
    return true;
  }
  seg++;
  nseg--;
  if (nseg == 1 && strcmp(seg[0], "query") == 0 && method_is(a, "POST"))
    query(a);
  else if (nseg == 1 && strcmp(seg[0], "delete") == 0 && method_is(a, "DELETE"))
    delete_many(a);
  else if (nseg == 1 && strcmp(seg[0], "clean") == 0 && method_is(a, "POST"))
    clean(a);
  else if (nseg == 2 && strcmp(seg[1], "signal") == 0 && method_is(a, "POST"))
    signal_entity(a, seg[0]);
  else if (nseg == 1 && method_is(a, "GET"))
    get_entity(a, seg[0], false);
  else if (nseg == 1 && method_is(a, "DELETE"))
    delete_entity(a, seg[0]);
  else if (nseg == 2 && strcmp(seg[1], "state") == 0 && method_is(a, "GET"))
    get_entity(a, seg[0], true);
  else
    return false;
  return true;
}
