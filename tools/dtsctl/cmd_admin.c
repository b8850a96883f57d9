/* cmd_admin.c -- dtsctl's hubs, entities, schedules and retention
 * commands (TaskHubSidecarService and dtsd.admin.Admin). */
#include "tools/dtsctl/dtsctl.h"

#include "runtime/alloc.h"
#include "runtime/duration.h"

#include <getopt.h>
#include <grpc/status.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SVC "/TaskHubSidecarService/"
#define ADM "/dtsd.admin.Admin/"

enum { O_PREFIX = 256, O_STATE, O_LIMIT, O_ALL, O_INPUT, O_AT, O_EMPTY, O_ORPHANS, O_YES, O_ORCH, O_INTERVAL,
       O_INSTID, O_VERSION, O_START, O_END, O_LATE };

typedef struct aopts {
  const char *prefix, *input, *orch, *interval_s, *instid, *version;
  bool state, empty, orphans, yes, late;
  long limit;
  int64_t at, start, end, interval;
} aopts;

static bool aopt(void *ctx, int v, const char *arg) {
  aopts *o = ctx;
  json_error_t je;
  json_t *j;
  switch (v) {
  case 'p':
  case O_PREFIX: o->prefix = arg; return true;
  case O_STATE: o->state = true; return true;
  case 'n':
  case O_LIMIT: {
    char *end;
    o->limit = strtol(arg, &end, 10);
    if (*end != '\0' || o->limit < 1) return ctl_usage("--limit must be a positive number") == 0;
    return true;
  }
  case O_ALL: o->limit = 0; return true;
  case 'i':
  case O_INPUT:
    if ((j = json_loads(arg, JSON_DECODE_ANY, &je)) == NULL)
      return ctl_usage("--input must be JSON (%s); quote a string: '\"text\"'", je.text) == 0;
    json_decref(j);
    o->input = arg;
    return true;
  case O_AT:
  case O_START:
  case O_END:
    if (!parse_when(arg, v == O_AT ? &o->at : v == O_START ? &o->start : &o->end))
      return ctl_usage("expected an RFC 3339 time such as 2026-12-01T02:00:00Z, not '%s'", arg) == 0;
    return true;
  case O_EMPTY: o->empty = true; return true;
  case O_ORPHANS: o->orphans = true; return true;
  case 'y':
  case O_YES: o->yes = true; return true;
  case O_ORCH: o->orch = arg; return true;
  case O_INTERVAL:
    if (!parse_duration(arg, &o->interval)) return ctl_usage("--interval: expected a duration such as 30s, 15m, 1h, 1d") == 0;
    o->interval_s = arg;
    return true;
  case O_INSTID: o->instid = arg; return true;
  case O_VERSION: o->version = arg; return true;
  case O_LATE: o->late = true; return true;
  default: return false;
  }
}

static const struct option AOPTS[] = {
    {"prefix", required_argument, 0, 'p'},      {"state", no_argument, 0, O_STATE},
    {"limit", required_argument, 0, 'n'},       {"all", no_argument, 0, O_ALL},
    {"input", required_argument, 0, 'i'},       {"at", required_argument, 0, O_AT},
    {"remove-empty", no_argument, 0, O_EMPTY},  {"release-orphans", no_argument, 0, O_ORPHANS},
    {"yes", no_argument, 0, 'y'},               {"orchestration", required_argument, 0, O_ORCH},
    {"interval", required_argument, 0, O_INTERVAL}, {"instance-id", required_argument, 0, O_INSTID},
    {"version", required_argument, 0, O_VERSION}, {"start-at", required_argument, 0, O_START},
    {"end-at", required_argument, 0, O_END},    {"start-immediately-if-late", no_argument, 0, O_LATE},
    {0, 0, 0, 0}};

/* A command with subcommands: --help (printed), the subcommand (`which`
 * lists them for the usage error), then the options after it.  true with
 * *sub, the options and *npos positionals from argv[*first]; false with
 * *rc set. */
static bool sub_begin(int argc, char **argv, const char *help, const char *which, const char **sub, aopts *o, int *first,
                      int *npos, int *rc) {
  *rc = EX_OK;
  if (ctl_wants_help(argc, argv, help)) return false;
  if (argc < 2) {
    *rc = ctl_usage("%s: %s", argv[0], which);
    return false;
  }
  *sub = argv[1];
  memset(o, 0, sizeof(*o));
  o->limit = 100;
  if (!ctl_opts(argc - 1, argv + 1, "p:n:i:y", AOPTS, aopt, o, first)) {
    *rc = EX_USAGE;
    return false;
  }
  (*first)++; /* relative to argv */
  *npos = argc - *first;
  return true;
}


/* ---- hubs ------------------------------------------------------------------------- */

static const char HUBS_HELP[] =
    "usage: dtsctl hubs list\n"
    "       dtsctl hubs create NAME\n"
    "       dtsctl hubs delete NAME --yes\n"
    "  The task hubs this dtsd serves; create one (as CreateTaskHub, also done on first use with\n"
    "  --dynamic-task-hubs); delete one with all its data.\n";

int cmd_hubs(ctl *c, int argc, char **argv) {
  const char *sub;
  aopts o;
  int first, npos, rc;
  if (!sub_begin(argc, argv, HUBS_HELP, "list, create or delete", &sub, &o, &first, &npos, &rc)) return rc;
  rpc_err e;
  if (strcmp(sub, "list") == 0) {
    if (npos != 0) return ctl_usage("hubs list takes no arguments");
    Dtsd__Admin__ListTaskHubsRequest req = DTSD__ADMIN__LIST_TASK_HUBS_REQUEST__INIT;
    Dtsd__Admin__ListTaskHubsResponse *r = (Dtsd__Admin__ListTaskHubsResponse *)ctl_unary(
        c, ADM "ListTaskHubs", &req.base, &dtsd__admin__list_task_hubs_response__descriptor, &e);
    if (r == NULL) return ctl_fail(&e, "hubs list");
    if (c->json) {
      json_t *arr = json_array();
      for (size_t i = 0; i < r->n_names; i++) json_array_append_new(arr, json_string(r->names[i]));
      out_json(arr);
    } else {
      for (size_t i = 0; i < r->n_names; i++) printf("%s\n", r->names[i]);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EX_OK;
  }
  if (strcmp(sub, "create") != 0 && strcmp(sub, "delete") != 0) return ctl_usage("hubs: unknown subcommand '%s'", sub);
  if (npos != 1) return ctl_usage("hubs %s takes one hub name", sub);
  dts_free(c->hub);
  c->hub = dts_strdup(argv[first]); /* the taskhub header names the hub */
  if (strcmp(sub, "create") == 0) {
    CreateTaskHubRequest req = CREATE_TASK_HUB_REQUEST__INIT;
    return ctl_act(c, SVC "CreateTaskHub", &req.base, &create_task_hub_response__descriptor, c->hub);
  }
  if (!o.yes) return ctl_usage("hubs delete removes every instance, entity and schedule of '%s' for good: add --yes", c->hub);
  DeleteTaskHubRequest req = DELETE_TASK_HUB_REQUEST__INIT;
  return ctl_act(c, SVC "DeleteTaskHub", &req.base, &delete_task_hub_response__descriptor, c->hub);
}

/* ---- entities ----------------------------------------------------------------------- */

static void entity_row(table *t, const EntityMetadata *m) {
  char when[40], backlog[16];
  out_time(dts_ts_to_ns(m->last_modified_time), when);
  snprintf(backlog, sizeof(backlog), "%d", m->backlog_queue_size);
  const char *row[5] = {m->instance_id, when, backlog, dts_sv_get(m->locked_by), dts_sv_get(m->serialized_state)};
  table_row(t, row);
}

static int entities_list(ctl *c, const aopts *o) {
  char *token = NULL;
  long seen = 0;
  table t;
  json_t *arr = c->json ? json_array() : NULL;
  static const char *const head[5] = {"ENTITY ID", "LAST MODIFIED", "BACKLOG", "LOCKED BY", "STATE"};
  if (!c->json) table_init(&t, o->state ? 5 : 4, head);
  int rc = EX_OK;
  for (;;) {
    QueryEntitiesRequest req = QUERY_ENTITIES_REQUEST__INIT;
    EntityQuery q = ENTITY_QUERY__INIT;
    Google__Protobuf__StringValue pre, tok;
    Google__Protobuf__Int32Value ps = GOOGLE__PROTOBUF__INT32_VALUE__INIT;
    long want = o->limit > 0 && o->limit - seen < 1000 ? o->limit - seen : 1000;
    ps.value = (int32_t)want;
    q.page_size = &ps;
    q.instance_id_starts_with = dts_sv(&pre, o->prefix);
    q.include_state = o->state;
    q.continuation_token = dts_sv(&tok, token);
    req.query = &q;
    rpc_err e;
    QueryEntitiesResponse *r = (QueryEntitiesResponse *)ctl_unary(c, SVC "QueryEntities", &req.base,
                                                                  &query_entities_response__descriptor, &e);
    dts_free(token);
    token = NULL;
    if (r == NULL) {
      rc = ctl_fail(&e, "entities list");
      break;
    }
    for (size_t i = 0; i < r->n_entities && (o->limit == 0 || seen < o->limit); i++, seen++) {
      if (c->json) json_array_append_new(arr, out_pbjson(&r->entities[i]->base));
      else entity_row(&t, r->entities[i]);
    }
    if ((o->limit == 0 || seen < o->limit) && r->continuation_token != NULL) token = dts_strdup(r->continuation_token->value);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (token == NULL) break;
  }
  return out_list_end(rc, arr, c->json ? NULL : &t);
}

static int entity_show(ctl *c, const char *id) {
  GetEntityRequest req = GET_ENTITY_REQUEST__INIT;
  req.instance_id = (char *)id;
  req.include_state = true;
  rpc_err e;
  GetEntityResponse *r = (GetEntityResponse *)ctl_unary(c, SVC "GetEntity", &req.base, &get_entity_response__descriptor, &e);
  if (r == NULL) return ctl_fail(&e, id);
  int rc = EX_OK;
  if (!r->exists || r->entity == NULL) {
    fprintf(stderr, "dtsctl: no entity '%s' in task hub '%s' (NOT_FOUND)\n", id, c->hub);
    rc = EX_NOTFOUND;
  } else if (c->json) {
    out_json(out_pbjson(&r->entity->base));
  } else {
    char when[40];
    out_time(dts_ts_to_ns(r->entity->last_modified_time), when);
    printf("%-15s %s\n%-15s %s\n%-15s %d\n", "Entity ID:", r->entity->instance_id, "Last modified:", when, "Backlog:",
           r->entity->backlog_queue_size);
    if (r->entity->locked_by) printf("%-15s %s\n", "Locked by:", r->entity->locked_by->value);
    if (r->entity->serialized_state) printf("%-15s %s\n", "State:", r->entity->serialized_state->value);
  }
  protobuf_c_message_free_unpacked(&r->base, NULL);
  return rc;
}

static int entity_signal(ctl *c, const char *id, const char *op, const aopts *o) {
  SignalEntityRequest req = SIGNAL_ENTITY_REQUEST__INIT;
  Google__Protobuf__StringValue in;
  Google__Protobuf__Timestamp ts;
  char rid[37];
  dts_uuid(rid);
  req.instance_id = (char *)id;
  req.name = (char *)op;
  req.input = dts_sv(&in, o->input);
  req.request_id = rid;
  req.scheduled_time = o->at ? dts_ts_from_ns(&ts, o->at) : NULL;
  return ctl_act(c, SVC "SignalEntity", &req.base, &signal_entity_response__descriptor, id);
}

static int entity_clean(ctl *c, const aopts *o) {
  char *token = NULL;
  long removed = 0, released = 0;
  for (;;) {
    CleanEntityStorageRequest req = CLEAN_ENTITY_STORAGE_REQUEST__INIT;
    Google__Protobuf__StringValue tok;
    req.continuation_token = dts_sv(&tok, token);
    req.remove_empty_entities = o->empty;
    req.release_orphaned_locks = o->orphans;
    rpc_err e;
    CleanEntityStorageResponse *r = (CleanEntityStorageResponse *)ctl_unary(
        c, SVC "CleanEntityStorage", &req.base, &clean_entity_storage_response__descriptor, &e);
    dts_free(token);
    token = NULL;
    if (r == NULL) return ctl_fail(&e, "entities clean");
    removed += r->empty_entities_removed;
    released += r->orphaned_locks_released;
    if (r->continuation_token != NULL) token = dts_strdup(r->continuation_token->value);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (token == NULL) break;
  }
  if (c->json) out_json(json_pack("{s:I,s:I}", "emptyEntitiesRemoved", (json_int_t)removed, "orphanedLocksReleased", (json_int_t)released));
  else printf("removed %ld empty entities, released %ld orphaned locks\n", removed, released);
  return EX_OK;
}

static const char ENTITIES_HELP[] =
    "usage: dtsctl entities list [--prefix @name@] [--state] [--limit N | --all]\n"
    "       dtsctl entities show ENTITY_ID\n"
    "       dtsctl entities signal ENTITY_ID OPERATION [--input JSON] [--at TIME]\n"
    "       dtsctl entities clean [--remove-empty] [--release-orphans]\n"
    "  Entity ids are '@name@key'.  clean with neither flag does both.\n";

int cmd_entities(ctl *c, int argc, char **argv) {
  const char *sub;
  aopts o;
  int first, npos, rc;
  if (!sub_begin(argc, argv, ENTITIES_HELP, "list, show, signal or clean", &sub, &o, &first, &npos, &rc)) return rc;
  if (strcmp(sub, "list") == 0 && npos == 0) return entities_list(c, &o);
  if (strcmp(sub, "show") == 0 && npos == 1) return entity_show(c, argv[first]);
  if (strcmp(sub, "signal") == 0 && npos == 2) return entity_signal(c, argv[first], argv[first + 1], &o);
  if (strcmp(sub, "clean") == 0 && npos == 0) {
    if (!o.empty && !o.orphans) o.empty = o.orphans = true;
    return entity_clean(c, &o);
  }
  return ctl_usage("entities %s: wrong arguments", sub);
}

/* ---- schedules ------------------------------------------------------------------------ */

static void interval_text(const Google__Protobuf__Duration *d, char *out, size_t len) {
  int64_t s = d ? d->seconds : 0;
  if (s % 86400 == 0 && s > 0) snprintf(out, len, "%" PRId64 "d", s / 86400);
  else if (s % 3600 == 0 && s > 0) snprintf(out, len, "%" PRId64 "h", s / 3600);
  else if (s % 60 == 0 && s > 0) snprintf(out, len, "%" PRId64 "m", s / 60);
  else snprintf(out, len, "%" PRId64 "s", s);
}

static const char *sched_status(int st) {
  return st == DTSD__ADMIN__SCHEDULE_STATUS__SCHEDULE_STATUS_ACTIVE   ? "ACTIVE"
         : st == DTSD__ADMIN__SCHEDULE_STATUS__SCHEDULE_STATUS_PAUSED ? "PAUSED"
                                                                       : "ENDED";
}

static void sched_row(table *t, const Dtsd__Admin__Schedule *s) {
  char iv[32], next[40], last[40], runs[24];
  interval_text(s->interval, iv, sizeof(iv));
  out_time(dts_ts_to_ns(s->next_run_at), next);
  out_time(dts_ts_to_ns(s->last_run_at), last);
  snprintf(runs, sizeof(runs), "%" PRId64, s->run_count);
  const char *row[7] = {s->schedule_id, s->orchestration_name, iv, sched_status(s->status), next, last, runs};
  table_row(t, row);
}

static const char *const SCHED_HEAD[7] = {"SCHEDULE ID", "ORCHESTRATION", "EVERY", "STATUS", "NEXT RUN", "LAST RUN", "RUNS"};

static int sched_print_one(ctl *c, Dtsd__Admin__Schedule *s, rpc_err *e, const char *id) {
  if (s == NULL) return ctl_fail(e, id);
  if (c->json) {
    out_json(out_pbjson(&s->base));
  } else {
    table t;
    table_init(&t, 7, SCHED_HEAD);
    sched_row(&t, s);
    table_print(&t);
    table_free(&t);
  }
  protobuf_c_message_free_unpacked(&s->base, NULL);
  return EX_OK;
}

static int sched_list(ctl *c) {
  char *token = NULL;
  table t;
  json_t *arr = c->json ? json_array() : NULL;
  if (!c->json) table_init(&t, 7, SCHED_HEAD);
  int rc = EX_OK;
  for (;;) {
    Dtsd__Admin__ListSchedulesRequest req = DTSD__ADMIN__LIST_SCHEDULES_REQUEST__INIT;
    Google__Protobuf__StringValue tok;
    req.page_size = 1000;
    req.continuation_token = dts_sv(&tok, token);
    rpc_err e;
    Dtsd__Admin__ListSchedulesResponse *r = (Dtsd__Admin__ListSchedulesResponse *)ctl_unary(
        c, ADM "ListSchedules", &req.base, &dtsd__admin__list_schedules_response__descriptor, &e);
    dts_free(token);
    token = NULL;
    if (r == NULL) {
      rc = ctl_fail(&e, "schedules list");
      break;
    }
    for (size_t i = 0; i < r->n_schedules; i++) {
      if (c->json) json_array_append_new(arr, out_pbjson(&r->schedules[i]->base));
      else sched_row(&t, r->schedules[i]);
    }
    if (r->continuation_token != NULL) token = dts_strdup(r->continuation_token->value);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (token == NULL) break;
  }
  return out_list_end(rc, arr, c->json ? NULL : &t);
}

static int sched_create(ctl *c, const char *id, const aopts *o) {
  if (o->orch == NULL || o->interval_s == NULL) return ctl_usage("schedules create needs --orchestration and --interval");
  Dtsd__Admin__Schedule s = DTSD__ADMIN__SCHEDULE__INIT;
  Google__Protobuf__StringValue in, fid, ver;
  Google__Protobuf__Duration iv = GOOGLE__PROTOBUF__DURATION__INIT;
  Google__Protobuf__Timestamp ts[2];
  s.schedule_id = (char *)id;
  s.orchestration_name = (char *)o->orch;
  s.orchestration_input = dts_sv(&in, o->input);
  s.orchestration_instance_id = dts_sv(&fid, o->instid);
  s.orchestration_version = dts_sv(&ver, o->version);
  iv.seconds = o->interval / 1000000000;
  iv.nanos = (int32_t)(o->interval % 1000000000);
  s.interval = &iv;
  s.start_at = o->start ? dts_ts_from_ns(&ts[0], o->start) : NULL;
  s.end_at = o->end ? dts_ts_from_ns(&ts[1], o->end) : NULL;
  s.start_immediately_if_late = o->late;
  rpc_err e;
  ProtobufCMessage *r = ctl_unary(c, ADM "CreateSchedule", &s.base, &dtsd__admin__schedule__descriptor, &e);
  return sched_print_one(c, (Dtsd__Admin__Schedule *)r, &e, id);
}

static const char SCHEDULES_HELP[] =
    "usage: dtsctl schedules list\n"
    "       dtsctl schedules show|pause|resume|delete SCHEDULE_ID\n"
    "       dtsctl schedules create SCHEDULE_ID --orchestration NAME --interval DURATION [options]\n"
    "  Recurring orchestration starts held by dtsd (docs/schedules.md).\n"
    "  create options:\n"
    "      --input JSON                    the orchestration's input\n"
    "      --instance-id ID                the same instance id for every run (default: <id>-<time>)\n"
    "      --version V                     the orchestration version\n"
    "      --start-at TIME, --end-at TIME  RFC 3339 times (default: from now, no end)\n"
    "      --start-immediately-if-late     after missed occurrences, run once at once\n";

int cmd_schedules(ctl *c, int argc, char **argv) {
  const char *sub;
  aopts o;
  int first, npos, rc;
  if (!sub_begin(argc, argv, SCHEDULES_HELP, "list, show, create, pause, resume or delete", &sub, &o, &first, &npos, &rc))
    return rc;
  if (strcmp(sub, "list") == 0 && npos == 0) return sched_list(c);
  if (npos != 1) return ctl_usage("schedules %s: takes one schedule id", sub);
  const char *id = argv[first];
  if (strcmp(sub, "create") == 0) return sched_create(c, id, &o);
  Dtsd__Admin__ScheduleRequest req = DTSD__ADMIN__SCHEDULE_REQUEST__INIT;
  req.schedule_id = (char *)id;
  rpc_err e;
  if (strcmp(sub, "delete") == 0)
    return ctl_act(c, ADM "DeleteSchedule", &req.base, &dtsd__admin__delete_schedule_response__descriptor, id);
  const char *m = strcmp(sub, "show") == 0 ? ADM "GetSchedule"
                  : strcmp(sub, "pause") == 0 ? ADM "PauseSchedule"
                  : strcmp(sub, "resume") == 0 ? ADM "ResumeSchedule"
                                               : NULL;
  if (m == NULL) return ctl_usage("schedules: unknown subcommand '%s'", sub);
  ProtobufCMessage *r = ctl_unary(c, m, &req.base, &dtsd__admin__schedule__descriptor, &e);
  return sched_print_one(c, (Dtsd__Admin__Schedule *)r, &e, id);
}

/* ---- retention ---------------------------------------------------------------------------- */

static const char RETENTION_HELP[] =
    "usage: dtsctl retention get\n"
    "       dtsctl retention set POLICY\n"
    "  Auto-purge of finished instances, per status.  POLICY as dtsd's --retention:\n"
    "  default=30d,completed=1h,failed=90d (units ms s m h d; 'keep' never purges).\n";

static void dur_cell(const Google__Protobuf__Duration *d, char *out, size_t len) {
  if (d == NULL) snprintf(out, len, "keep");
  else interval_text(d, out, len);
}

static int retention_print(ctl *c, Dtsd__Admin__RetentionPolicy *p, rpc_err *e) {
  if (p == NULL) return ctl_fail(e, "retention");
  if (c->json) {
    out_json(out_pbjson(&p->base));
  } else {
    const Google__Protobuf__Duration *d[5] = {p->default_retention, p->completed, p->failed, p->canceled, p->terminated};
    static const char *const names[5] = {"default", "completed", "failed", "canceled", "terminated"};
    table t;
    static const char *const head[2] = {"STATUS", "KEPT FOR"};
    table_init(&t, 2, head);
    for (int i = 0; i < 5; i++) {
      char cell[32];
      dur_cell(d[i], cell, sizeof(cell));
      if (i > 0 && d[i] == NULL) snprintf(cell, sizeof(cell), "(default)");
      const char *row[2] = {names[i], cell};
      table_row(&t, row);
    }
    table_print(&t);
    table_free(&t);
  }
  protobuf_c_message_free_unpacked(&p->base, NULL);
  return EX_OK;
}

int cmd_retention(ctl *c, int argc, char **argv) {
  if (ctl_wants_help(argc, argv, RETENTION_HELP)) return EX_OK;
  rpc_err e;
  if (argc == 2 && strcmp(argv[1], "get") == 0) {
    Dtsd__Admin__GetRetentionRequest req = DTSD__ADMIN__GET_RETENTION_REQUEST__INIT;
    return retention_print(c, (Dtsd__Admin__RetentionPolicy *)ctl_unary(c, ADM "GetRetention", &req.base,
                                                                         &dtsd__admin__retention_policy__descriptor, &e), &e);
  }
  if (argc != 3 || strcmp(argv[1], "set") != 0) return ctl_usage("retention: get, or set POLICY");
  int64_t v[5];
  const char *why = dts_retention_parse(argv[2], v);
  if (why != NULL) return ctl_usage("retention set: %s", why);
  Dtsd__Admin__RetentionPolicy p = DTSD__ADMIN__RETENTION_POLICY__INIT;
  Google__Protobuf__Duration d[5];
  Google__Protobuf__Duration **slot[5] = {&p.default_retention, &p.completed, &p.failed, &p.canceled, &p.terminated};
  for (int i = 0; i < 5; i++) {
    if (v[i] < 0) continue;
    google__protobuf__duration__init(&d[i]);
    d[i].seconds = v[i] / 1000000000;
    d[i].nanos = (int32_t)(v[i] % 1000000000);
    *slot[i] = &d[i];
  }
  return retention_print(c, (Dtsd__Admin__RetentionPolicy *)ctl_unary(c, ADM "SetRetention", &p.base,
                                                                       &dtsd__admin__retention_policy__descriptor, &e), &e);
}
