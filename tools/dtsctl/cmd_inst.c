/* cmd_inst.c -- dtsctl's instance commands: instances list, show, history,
 * start, raise, suspend, resume, terminate, restart, rewind, purge.  Each
 * is one TaskHubSidecarService call or a loop of them. */
#include "tools/dtsctl/dtsctl.h"

#include "runtime/alloc.h"

#include <getopt.h>
#include <grpc/status.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SVC "/TaskHubSidecarService/"
#define PAGE 1000

/* ---- shared ---------------------------------------------------------------------- */

/* A JSON payload from the command line: false (usage printed) when not JSON. */
static bool json_arg(const char *opt, const char *v) {
  json_error_t e;
  json_t *j = json_loads(v, JSON_DECODE_ANY, &e);
  if (j == NULL) {
    ctl_usage("%s must be JSON (%s); quote a string: '\"text\"'", opt, e.text);
    return false;
  }
  json_decref(j);
  return true;
}

/* The instance filter of `instances list` and `purge`. */
typedef struct filter {
  int status[8];
  int nstatus;
  const char *prefix;
  int64_t from, to;
} filter;

static bool add_statuses(filter *f, const char *list) {
  char *copy = dts_strdup(list), *save = NULL;
  bool ok = true;
  for (char *s = strtok_r(copy, ",", &save); s != NULL && ok; s = strtok_r(NULL, ",", &save)) {
    int st = parse_status(s);
    if (st < 0) ok = ctl_usage("unknown status '%s' (running, completed, failed, terminated, canceled, pending, suspended)", s) == 0;
    else if (f->nstatus < 8) f->status[f->nstatus++] = st;
  }
  dts_free(copy);
  return ok;
}

enum { O_STATUS = 256, O_PREFIX, O_FROM, O_TO, O_LIMIT, O_ALL, O_PAYLOADS, O_ID, O_INPUT, O_VERSION, O_AT, O_TAG,
       O_WAIT, O_DATA, O_REASON, O_RECURSIVE, O_NEWID, O_DRYRUN, O_YES, O_EXEC, O_OUTPUT };

/* The short spellings: one meaning for each letter in every command. */
static int canon(int v) {
  switch (v) {
  case 's': return O_STATUS;
  case 'p': return O_PREFIX;
  case 'n': return O_LIMIT;
  case 'i': return O_INPUT;
  case 'r': return O_REASON;
  case 'y': return O_YES;
  default: return v;
  }
}

static bool filter_opt(filter *f, int v, const char *arg) {
  switch (canon(v)) {
  case O_STATUS: return add_statuses(f, arg);
  case O_PREFIX: f->prefix = arg; return true;
  case O_FROM:
  case O_TO:
    if (!parse_when(arg, v == O_FROM ? &f->from : &f->to))
      return ctl_usage("%s: expected an RFC 3339 time or a duration ago such as 24h", v == O_FROM ? "--created-from" : "--created-to") == 0;
    return true;
  default: return false;
  }
}

static void filter_query(const filter *f, InstanceQuery *q, Google__Protobuf__Timestamp ts[2],
                         Google__Protobuf__StringValue *pre) {
  q->runtime_status = (OrchestrationStatus *)f->status;
  q->n_runtime_status = (size_t)f->nstatus;
  q->instance_id_prefix = dts_sv(pre, f->prefix);
  q->created_time_from = f->from ? dts_ts_from_ns(&ts[0], f->from) : NULL;
  q->created_time_to = f->to ? dts_ts_from_ns(&ts[1], f->to) : NULL;
}

/* Every page of a query: fn(ctx, state) per instance until it returns false. */
typedef bool (*state_fn)(void *ctx, const OrchestrationState *s);

static int query_each(ctl *c, const filter *f, bool payloads, long limit, state_fn fn, void *ctx) {
  char *token = NULL;
  long seen = 0;
  for (;;) {
    QueryInstancesRequest req = QUERY_INSTANCES_REQUEST__INIT;
    InstanceQuery q = INSTANCE_QUERY__INIT;
    Google__Protobuf__Timestamp ts[2];
    Google__Protobuf__StringValue pre, tok;
    filter_query(f, &q, ts, &pre);
    long want = limit > 0 && limit - seen < PAGE ? limit - seen : PAGE;
    q.max_instance_count = (int32_t)want;
    q.fetch_inputs_and_outputs = payloads;
    q.newest_first = true;
    q.continuation_token = dts_sv(&tok, token);
    req.query = &q;
    rpc_err e;
    QueryInstancesResponse *r = (QueryInstancesResponse *)ctl_unary(c, SVC "QueryInstances", &req.base,
                                                                    &query_instances_response__descriptor, &e);
    dts_free(token);
    token = NULL;
    if (r == NULL) return ctl_fail(&e, "query");
    bool more = true;
    for (size_t i = 0; i < r->n_orchestration_state && more; i++) {
      more = fn(ctx, r->orchestration_state[i]);
      if (limit > 0 && ++seen >= limit) more = false;
    }
    if (more && r->continuation_token != NULL) token = dts_strdup(r->continuation_token->value);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (token == NULL) return EX_OK;
  }
}

/* ---- instances list ---------------------------------------------------------------- */

typedef struct listing {
  ctl *c;
  table t;
  json_t *arr;
} listing;

static bool list_one(void *ctx, const OrchestrationState *s) {
  listing *l = ctx;
  if (l->c->json) {
    json_array_append_new(l->arr, out_pbjson(&s->base));
    return true;
  }
  char cr[40], up[40];
  out_time(dts_ts_to_ns(s->created_timestamp), cr);
  out_time(dts_ts_to_ns(s->last_updated_timestamp), up);
  const char *row[5] = {s->instance_id, s->name, out_status(s->orchestration_status), cr, up};
  table_row(&l->t, row);
  return true;
}

typedef struct list_opts {
  filter f;
  long limit;
  bool payloads;
} list_opts;

static bool list_opt(void *ctx, int v, const char *arg) {
  list_opts *o = ctx;
  v = canon(v);
  if (v == O_LIMIT) {
    char *end;
    o->limit = strtol(arg, &end, 10);
    if (*end != '\0' || o->limit < 1) return ctl_usage("--limit must be a positive number") == 0;
    return true;
  }
  if (v == O_ALL) {
    o->limit = 0;
    return true;
  }
  if (v == O_PAYLOADS) {
    o->payloads = true;
    return true;
  }
  return filter_opt(&o->f, v, arg);
}

static const char LIST_HELP[] =
    "usage: dtsctl instances list [options]\n"
    "  Lists orchestration instances, newest first.\n"
    "  -s, --status LIST        only these statuses (running,completed,failed,terminated,canceled,\n"
    "                           pending,suspended; repeat or separate with commas)\n"
    "  -p, --prefix P           instance ids starting with P\n"
    "      --created-from T     created at or after T (RFC 3339, or a duration ago: 24h)\n"
    "      --created-to T       created at or before T\n"
    "  -n, --limit N            at most N (default 100)\n"
    "      --all                every match\n"
    "      --payloads           include inputs and outputs (JSON output)\n";

int cmd_instances(ctl *c, int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "list") != 0) {
    if (ctl_wants_help(argc, argv, LIST_HELP)) return EX_OK;
    return ctl_usage("instances: the subcommand is 'list'");
  }
  argc--, argv++;
  if (ctl_wants_help(argc, argv, LIST_HELP)) return EX_OK;
  static const struct option opts[] = {{"status", required_argument, 0, 's'}, {"prefix", required_argument, 0, 'p'},
                                       {"created-from", required_argument, 0, O_FROM}, {"created-to", required_argument, 0, O_TO},
                                       {"limit", required_argument, 0, 'n'}, {"all", no_argument, 0, O_ALL},
                                       {"payloads", no_argument, 0, O_PAYLOADS}, {0, 0, 0, 0}};
  list_opts o = {.limit = 100};
  int first;
  if (!ctl_opts(argc, argv, "s:p:n:", opts, list_opt, &o, &first)) return EX_USAGE;
  if (first < argc) return ctl_usage("instances list takes no arguments ('%s')", argv[first]);
  listing l = {.c = c};
  static const char *const head[5] = {"INSTANCE ID", "NAME", "STATUS", "CREATED", "LAST UPDATED"};
  if (c->json) l.arr = json_array();
  else table_init(&l.t, 5, head);
  int rc = query_each(c, &o.f, o.payloads, o.limit, list_one, &l);
  return out_list_end(rc, l.arr, c->json ? NULL : &l.t);
}

/* ---- show ------------------------------------------------------------------------ */

static void kv(const char *k, const char *v) {
  if (v != NULL && v[0] != '\0') printf("%-16s %s\n", k, v);
}

static void show_text(const OrchestrationState *s) {
  char t[3][40];
  out_time(dts_ts_to_ns(s->created_timestamp), t[0]);
  out_time(dts_ts_to_ns(s->last_updated_timestamp), t[1]);
  out_time(dts_ts_to_ns(s->completed_timestamp), t[2]);
  kv("Instance ID:", s->instance_id);
  kv("Execution ID:", dts_sv_get(s->execution_id));
  kv("Name:", s->name);
  kv("Version:", dts_sv_get(s->version));
  kv("Status:", out_status(s->orchestration_status));
  kv("Created:", t[0]);
  kv("Last updated:", t[1]);
  kv("Completed:", t[2]);
  kv("Parent:", dts_sv_get(s->parent_instance_id));
  for (size_t i = 0; i < s->n_tags; i++) {
    char tag[600];
    snprintf(tag, sizeof(tag), "%s=%s", s->tags[i]->key, s->tags[i]->value);
    kv("Tag:", tag);
  }
  kv("Input:", dts_sv_get(s->input));
  kv("Output:", dts_sv_get(s->output));
  kv("Custom status:", dts_sv_get(s->custom_status));
  for (const TaskFailureDetails *f = s->failure_details; f != NULL; f = f->inner_failure) {
    char fail[1200];
    snprintf(fail, sizeof(fail), "%s: %s", f->error_type, f->error_message);
    kv(f == s->failure_details ? "Failure:" : "Caused by:", fail);
  }
}

static const char SHOW_HELP[] = "usage: dtsctl show INSTANCE_ID\n  One orchestration instance: its status, times, input, output and failure.\n";

/* GetInstance: the state, or NULL with the exit code in *rc. */
static GetInstanceResponse *get_instance(ctl *c, const char *id, int *rc) {
  GetInstanceRequest req = GET_INSTANCE_REQUEST__INIT;
  req.instance_id = (char *)id;
  req.get_inputs_and_outputs = true;
  rpc_err e;
  GetInstanceResponse *r = (GetInstanceResponse *)ctl_unary(c, SVC "GetInstance", &req.base, &get_instance_response__descriptor, &e);
  if (r == NULL) {
    *rc = ctl_fail(&e, id);
    return NULL;
  }
  if (!r->exists || r->orchestration_state == NULL) {
    fprintf(stderr, "dtsctl: no orchestration instance '%s' in task hub '%s' (NOT_FOUND)\n", id, c->hub);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    *rc = EX_NOTFOUND;
    return NULL;
  }
  return r;
}

int cmd_show(ctl *c, int argc, char **argv) {
  if (ctl_wants_help(argc, argv, SHOW_HELP)) return EX_OK;
  if (argc != 2) return ctl_usage("show takes one instance id");
  int rc = EX_OK;
  GetInstanceResponse *r = get_instance(c, argv[1], &rc);
  if (r == NULL) return rc;
  if (c->json) out_json(out_pbjson(&r->orchestration_state->base));
  else show_text(r->orchestration_state);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  return EX_OK;
}

/* ---- history ---------------------------------------------------------------------- */

typedef struct hist {
  ctl *c;
  table t;
  json_t *arr;
} hist;

/* The event's kind (its oneof member) and a detail worth a column. */
static void describe(json_t *ev, const char **kind, char *detail, size_t len) {
  const char *k;
  json_t *v;
  *kind = "?";
  detail[0] = '\0';
  json_object_foreach(ev, k, v) {
    if (strcmp(k, "eventId") == 0 || strcmp(k, "timestamp") == 0 || !json_is_object(v)) continue;
    *kind = k;
    const char *name = json_string_value(json_object_get(v, "name"));
    json_t *sid = json_object_get(v, "taskScheduledId");
    json_t *tid = json_object_get(v, "timerId");
    if (name != NULL) snprintf(detail, len, "%s", name);
    else if (json_is_integer(sid)) snprintf(detail, len, "task %lld", (long long)json_integer_value(sid));
    else if (json_is_integer(tid)) snprintf(detail, len, "timer %lld", (long long)json_integer_value(tid));
  }
}

static bool hist_chunk(void *ctx, ProtobufCMessage *m) {
  hist *h = ctx;
  HistoryChunk *ch = (HistoryChunk *)m;
  for (size_t i = 0; i < ch->n_events; i++) {
    json_t *ev = out_pbjson(&ch->events[i]->base);
    if (h->c->json) {
      json_array_append_new(h->arr, ev);
      continue;
    }
    const char *kind;
    char detail[300], id[24], when[40];
    describe(ev, &kind, detail, sizeof(detail));
    snprintf(id, sizeof(id), "%d", ch->events[i]->event_id);
    out_time(dts_ts_to_ns(ch->events[i]->timestamp), when);
    const char *row[4] = {id, when, kind, detail};
    table_row(&h->t, row);
    json_decref(ev);
  }
  protobuf_c_message_free_unpacked(m, NULL);
  return true;
}

static const char HISTORY_HELP[] =
    "usage: dtsctl history INSTANCE_ID [--execution EXECUTION_ID]\n"
    "  The history of an instance's current (or the given) execution, oldest first.\n";

static bool exec_opt(void *ctx, int v, const char *arg) {
  if (v != O_EXEC) return false;
  *(const char **)ctx = arg;
  return true;
}

int cmd_history(ctl *c, int argc, char **argv) {
  static const struct option opts[] = {{"execution", required_argument, 0, O_EXEC}, {0, 0, 0, 0}};
  const char *exec = NULL;
  int first, rc;
  if (!ctl_begin(argc, argv, HISTORY_HELP, "", opts, exec_opt, &exec, 1, "one instance id", &first, &rc)) return rc;
  const char *id = argv[first];
  GetInstanceResponse *gr = get_instance(c, id, &rc); /* an unknown id streams nothing: say so */
  if (gr == NULL) return rc;
  protobuf_c_message_free_unpacked(&gr->base, NULL);
  StreamInstanceHistoryRequest req = STREAM_INSTANCE_HISTORY_REQUEST__INIT;
  Google__Protobuf__StringValue ex;
  req.instance_id = (char *)id;
  req.execution_id = dts_sv(&ex, exec);
  hist h = {.c = c};
  static const char *const head[4] = {"ID", "TIME", "EVENT", "DETAIL"};
  if (c->json) h.arr = json_array();
  else table_init(&h.t, 4, head);
  rpc_err e;
  ctl_stream(c, SVC "StreamInstanceHistory", &req.base, &history_chunk__descriptor, hist_chunk, &h, &e);
  if (e.code != GRPC_STATUS_OK) rc = ctl_fail(&e, id);
  return out_list_end(rc, h.arr, c->json ? NULL : &h.t);
}

/* An instance id a command made: the line, or {"instanceId": ...}. */
static void print_id(ctl *c, const char *id) {
  if (c->json) out_json(json_pack("{s:s}", "instanceId", id));
  else printf("%s\n", id);
}

/* ---- start --------------------------------------------------------------------------- */

typedef struct start_opts {
  const char *id, *input, *version;
  int64_t at;
  bool wait;
  char *tagk[64], *tagv[64];
  int ntags;
} start_opts;

static bool start_opt(void *ctx, int v, const char *arg) {
  start_opts *o = ctx;
  switch (canon(v)) {
  case O_ID: o->id = arg; return true;
  case O_INPUT: o->input = arg; return json_arg("--input", arg);
  case O_VERSION: o->version = arg; return true;
  case O_AT:
    if (!parse_when(arg, &o->at)) return ctl_usage("--at: expected an RFC 3339 time") == 0;
    return true;
  case O_WAIT: o->wait = true; return true;
  case O_TAG: {
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg) return ctl_usage("--tag: expected key=value") == 0;
    if (o->ntags == 64) return ctl_usage("at most 64 tags") == 0;
    o->tagk[o->ntags] = dts_strndup(arg, (size_t)(eq - arg));
    o->tagv[o->ntags++] = dts_strdup(eq + 1);
    return true;
  }
  default: return false;
  }
}

static const char START_HELP[] =
    "usage: dtsctl start ORCHESTRATION_NAME [options]\n"
    "  Starts an orchestration and prints its instance id.\n"
    "      --id ID          the instance id (default: a new one)\n"
    "  -i, --input JSON     the input, as JSON ('\"text\"', '{\"a\":1}')\n"
    "      --version V      the orchestration version\n"
    "      --at TIME        start at this RFC 3339 time instead of now\n"
    "      --tag KEY=VALUE  a tag (repeatable)\n"
    "      --wait           wait for it to finish; exit 0 only if it completed\n";

static int wait_done(ctl *c, const char *id) {
  GetInstanceRequest req = GET_INSTANCE_REQUEST__INIT;
  req.instance_id = (char *)id;
  req.get_inputs_and_outputs = true;
  int saved = c->timeout_s;
  c->timeout_s = saved > 3600 ? saved : 3600; /* the wait is the point */
  rpc_err e;
  GetInstanceResponse *r = (GetInstanceResponse *)ctl_unary(c, SVC "WaitForInstanceCompletion", &req.base,
                                                            &get_instance_response__descriptor, &e);
  c->timeout_s = saved;
  if (r == NULL) return ctl_fail(&e, id);
  int rc = EX_FAILED;
  if (r->orchestration_state != NULL) {
    if (c->json) out_json(out_pbjson(&r->orchestration_state->base));
    else show_text(r->orchestration_state);
    if (r->orchestration_state->orchestration_status == ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED) rc = EX_OK;
  }
  protobuf_c_message_free_unpacked(&r->base, NULL);
  return rc;
}

int cmd_start(ctl *c, int argc, char **argv) {
  if (ctl_wants_help(argc, argv, START_HELP)) return EX_OK;
  static const struct option opts[] = {{"id", required_argument, 0, O_ID}, {"input", required_argument, 0, 'i'},
                                       {"version", required_argument, 0, O_VERSION}, {"at", required_argument, 0, O_AT},
                                       {"tag", required_argument, 0, O_TAG}, {"wait", no_argument, 0, O_WAIT}, {0, 0, 0, 0}};
  start_opts o = {0};
  int first, rc = EX_OK;
  if (!ctl_opts(argc, argv, "i:", opts, start_opt, &o, &first)) rc = EX_USAGE;
  else if (argc - first != 1) rc = ctl_usage("start takes the orchestration's name");
  if (rc == EX_OK) {
    CreateInstanceRequest req = CREATE_INSTANCE_REQUEST__INIT;
    Google__Protobuf__StringValue in, ver;
    Google__Protobuf__Timestamp ts;
    CreateInstanceRequest__TagsEntry te[64], *tp[64];
    req.name = argv[first];
    req.instance_id = (char *)(o.id ? o.id : "");
    req.input = dts_sv(&in, o.input);
    req.version = dts_sv(&ver, o.version);
    req.scheduled_start_timestamp = o.at ? dts_ts_from_ns(&ts, o.at) : NULL;
    for (int i = 0; i < o.ntags; i++) {
      create_instance_request__tags_entry__init(&te[i]);
      te[i].key = o.tagk[i];
      te[i].value = o.tagv[i];
      tp[i] = &te[i];
    }
    req.tags = tp;
    req.n_tags = (size_t)o.ntags;
    rpc_err e;
    CreateInstanceResponse *r = (CreateInstanceResponse *)ctl_unary(c, SVC "StartInstance", &req.base,
                                                                    &create_instance_response__descriptor, &e);
    if (r == NULL) {
      rc = ctl_fail(&e, "start");
    } else {
      if (!o.wait) print_id(c, r->instance_id);
      if (o.wait) rc = wait_done(c, r->instance_id);
      protobuf_c_message_free_unpacked(&r->base, NULL);
    }
  }
  for (int i = 0; i < o.ntags; i++) {
    dts_free(o.tagk[i]);
    dts_free(o.tagv[i]);
  }
  return rc;
}

/* ---- raise, suspend, resume, terminate, rewind, restart ------------------------------ */

typedef struct act_opts {
  const char *data, *reason, *output;
  bool recursive, new_id;
} act_opts;

static bool act_opt(void *ctx, int v, const char *arg) {
  act_opts *o = ctx;
  switch (canon(v)) {
  case O_DATA: o->data = arg; return json_arg("--data", arg);
  case O_REASON: o->reason = arg; return true;
  case O_OUTPUT: o->output = arg; return json_arg("--result", arg);
  case O_RECURSIVE: o->recursive = true; return true;
  case O_NEWID: o->new_id = true; return true;
  default: return false;
  }
}


static const char RAISE_HELP[] =
    "usage: dtsctl raise INSTANCE_ID EVENT_NAME [--data JSON]\n  Raises an event on an orchestration instance.\n";

int cmd_raise(ctl *c, int argc, char **argv) {
  static const struct option opts[] = {{"data", required_argument, 0, O_DATA}, {0, 0, 0, 0}};
  act_opts o = {0};
  int first, rc;
  if (!ctl_begin(argc, argv, RAISE_HELP, "", opts, act_opt, &o, 2, "an instance id and an event name", &first, &rc))
    return rc;
  RaiseEventRequest req = RAISE_EVENT_REQUEST__INIT;
  Google__Protobuf__StringValue in;
  req.instance_id = argv[first];
  req.name = argv[first + 1];
  req.input = dts_sv(&in, o.data);
  return ctl_act(c, SVC "RaiseEvent", &req.base, &raise_event_response__descriptor, argv[first]);
}

static const char SIMPLE_HELP[] =
    "usage: dtsctl suspend|resume|rewind INSTANCE_ID [--reason TEXT]\n"
    "       dtsctl terminate INSTANCE_ID [--reason TEXT | --result JSON] [--recursive]\n"
    "  suspend: pauses the instance; resume: continues it; rewind: re-runs a failed one from its\n"
    "  failures; terminate: ends it (--recursive: its sub-orchestrations too; the reason becomes\n"
    "  its output; --result sets the output as JSON).\n";

int cmd_simple(ctl *c, const char *verb, int argc, char **argv) {
  bool term = strcmp(verb, "terminate") == 0;
  static const struct option opts[] = {{"reason", required_argument, 0, 'r'}, {"result", required_argument, 0, O_OUTPUT},
                                       {"recursive", no_argument, 0, O_RECURSIVE}, {0, 0, 0, 0}};
  act_opts o = {0};
  int first, rc;
  if (!ctl_begin(argc, argv, SIMPLE_HELP, "r:", opts, act_opt, &o, 1, "one instance id", &first, &rc)) return rc;
  if (!term && (o.output || o.recursive)) return ctl_usage("--result and --recursive are for terminate");
  if (o.output && o.reason) return ctl_usage("give --reason or --result, not both");
  char *id = argv[first];
  Google__Protobuf__StringValue rs;
  if (term) {
    TerminateRequest req = TERMINATE_REQUEST__INIT;
    json_t *js = o.reason ? json_string(o.reason) : NULL; /* the output is JSON */
    char *enc = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
    req.instance_id = id;
    req.output = dts_sv(&rs, o.output ? o.output : enc);
    req.recursive = o.recursive;
    rc = ctl_act(c, SVC "TerminateInstance", &req.base, &terminate_response__descriptor, id);
    free(enc);
    json_decref(js);
    return rc;
  }
  if (strcmp(verb, "suspend") == 0) {
    SuspendRequest req = SUSPEND_REQUEST__INIT;
    req.instance_id = id;
    req.reason = dts_sv(&rs, o.reason);
    return ctl_act(c, SVC "SuspendInstance", &req.base, &suspend_response__descriptor, id);
  }
  if (strcmp(verb, "resume") == 0) {
    ResumeRequest req = RESUME_REQUEST__INIT;
    req.instance_id = id;
    req.reason = dts_sv(&rs, o.reason);
    return ctl_act(c, SVC "ResumeInstance", &req.base, &resume_response__descriptor, id);
  }
  RewindInstanceRequest req = REWIND_INSTANCE_REQUEST__INIT;
  req.instance_id = id;
  req.reason = dts_sv(&rs, o.reason);
  return ctl_act(c, SVC "RewindInstance", &req.base, &rewind_instance_response__descriptor, id);
}

static const char RESTART_HELP[] =
    "usage: dtsctl restart INSTANCE_ID [--new-id]\n"
    "  Starts a finished instance again with its input; prints the instance id.\n";

int cmd_restart(ctl *c, int argc, char **argv) {
  static const struct option opts[] = {{"new-id", no_argument, 0, O_NEWID}, {0, 0, 0, 0}};
  act_opts o = {0};
  int first, rc;
  if (!ctl_begin(argc, argv, RESTART_HELP, "", opts, act_opt, &o, 1, "one instance id", &first, &rc)) return rc;
  RestartInstanceRequest req = RESTART_INSTANCE_REQUEST__INIT;
  req.instance_id = argv[first];
  req.restart_with_new_instance_id = o.new_id;
  rpc_err e;
  RestartInstanceResponse *r = (RestartInstanceResponse *)ctl_unary(c, SVC "RestartInstance", &req.base,
                                                                    &restart_instance_response__descriptor, &e);
  if (r == NULL) return ctl_fail(&e, argv[first]);
  print_id(c, r->instance_id);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  return EX_OK;
}

/* ---- purge ----------------------------------------------------------------------------- */

typedef struct purge_opts {
  filter f;
  bool recursive, dry, yes, filtered;
} purge_opts;

static bool purge_opt(void *ctx, int v, const char *arg) {
  purge_opts *o = ctx;
  v = canon(v);
  if (v == O_RECURSIVE) o->recursive = true;
  else if (v == O_DRYRUN) o->dry = true;
  else if (v == O_YES) o->yes = true;
  else {
    o->filtered = true;
    return filter_opt(&o->f, v, arg);
  }
  return true;
}

typedef struct idlist {
  char **ids;
  size_t n, cap;
} idlist;

static bool collect(void *ctx, const OrchestrationState *s) {
  idlist *l = ctx;
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 256;
    l->ids = dts_realloc(l->ids, l->cap * sizeof(char *));
  }
  l->ids[l->n++] = dts_strdup(s->instance_id);
  return true;
}

static void progress(size_t done, size_t total) {
  if (!isatty(2) || total == 0) return;
  int w = 30, fill = (int)(done * (size_t)w / total);
  fprintf(stderr, "\rpurging [%.*s%*s] %zu/%zu", fill, "##############################", w - fill, "", done, total);
  if (done == total) fputc('\n', stderr);
}

/* Purges the ids 100 at a time: the number purged, or -1 (printed). */
static long purge_ids(ctl *c, idlist *l, bool recursive, int *rc) {
  long purged = 0;
  for (size_t i = 0; i < l->n; i += 100) {
    size_t n = l->n - i < 100 ? l->n - i : 100;
    PurgeInstancesRequest req = PURGE_INSTANCES_REQUEST__INIT;
    InstanceBatch b = INSTANCE_BATCH__INIT;
    b.instance_ids = l->ids + i;
    b.n_instance_ids = n;
    req.request_case = PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_BATCH;
    req.instance_batch = &b;
    req.recursive = recursive;
    rpc_err e;
    PurgeInstancesResponse *r = (PurgeInstancesResponse *)ctl_unary(c, SVC "PurgeInstances", &req.base,
                                                                    &purge_instances_response__descriptor, &e);
    if (r == NULL) {
      if (isatty(2)) fputc('\n', stderr);
      *rc = ctl_fail(&e, "purge");
      return -1;
    }
    purged += r->deleted_instance_count;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    progress(i + n, l->n);
  }
  return purged;
}

static const char PURGE_HELP[] =
    "usage: dtsctl purge INSTANCE_ID [--recursive]\n"
    "       dtsctl purge --status LIST [--created-from T] [--created-to T] [--prefix P] [--dry-run | --yes]\n"
    "  Removes finished instances and their history for good.  By filter: the matching instances are\n"
    "  listed, counted (--dry-run stops there), then purged 100 at a time with a progress bar;\n"
    "  --yes is required.  Only completed, failed, terminated and canceled instances are purged.\n";

int cmd_purge(ctl *c, int argc, char **argv) {
  if (ctl_wants_help(argc, argv, PURGE_HELP)) return EX_OK;
  static const struct option opts[] = {{"recursive", no_argument, 0, O_RECURSIVE}, {"dry-run", no_argument, 0, O_DRYRUN},
                                       {"yes", no_argument, 0, 'y'}, {"status", required_argument, 0, 's'},
                                       {"prefix", required_argument, 0, 'p'}, {"created-from", required_argument, 0, O_FROM},
                                       {"created-to", required_argument, 0, O_TO}, {0, 0, 0, 0}};
  purge_opts o = {0};
  int first, rc = EX_OK;
  if (!ctl_opts(argc, argv, "ys:p:", opts, purge_opt, &o, &first)) return EX_USAGE;
  if (!o.filtered) {
    if (argc - first != 1) return ctl_usage("purge takes one instance id, or a filter (--status ...)");
    idlist one = {.ids = &argv[first], .n = 1};
    long n = purge_ids(c, &one, o.recursive, &rc);
    if (n < 0) return rc;
    if (n == 0) {
      fprintf(stderr, "dtsctl: %s: nothing purged (no such instance, or it has not finished) (NOT_FOUND)\n", argv[first]);
      return EX_NOTFOUND;
    }
    if (c->json) out_json(json_pack("{s:I}", "purged", (json_int_t)n));
    else printf("purged %ld instance%s\n", n, n == 1 ? "" : "s");
    return EX_OK;
  }
  if (first < argc) return ctl_usage("purge by filter takes no instance id ('%s')", argv[first]);
  if (o.f.nstatus == 0) return ctl_usage("purge by filter needs --status (completed, failed, terminated, canceled)");
  for (int i = 0; i < o.f.nstatus; i++) {
    int st = o.f.status[i];
    if (st != ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED && st != ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_FAILED &&
        st != ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_TERMINATED && st != ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_CANCELED)
      return ctl_usage("only finished instances are purged: %s is not a final status", out_status(st));
  }
  if (!o.dry && !o.yes) return ctl_usage("purge by filter removes data for good: add --yes (or --dry-run to count)");
  idlist l = {0};
  rc = query_each(c, &o.f, false, 0, collect, &l);
  if (rc == EX_OK && o.dry) {
    if (c->json) out_json(json_pack("{s:I}", "matching", (json_int_t)l.n));
    else printf("%zu instance%s would be purged\n", l.n, l.n == 1 ? "" : "s");
  } else if (rc == EX_OK) {
    long n = purge_ids(c, &l, o.recursive, &rc);
    if (n >= 0) {
      if (c->json) out_json(json_pack("{s:I,s:I}", "matching", (json_int_t)l.n, "purged", (json_int_t)n));
      else printf("purged %ld of %zu matching instance%s\n", n, l.n, l.n == 1 ? "" : "s");
    }
  }
  for (size_t i = 0; i < l.n; i++) dts_free(l.ids[i]);
  dts_free(l.ids);
  return rc;
}
