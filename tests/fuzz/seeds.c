/* seeds.c -- writes the seed corpora of the fuzz targets:
 *
 *   fuzz_seeds <dir>     writes the files of <dir>/fuzz_hub, <dir>/fuzz_store
 *                        and <dir>/fuzz_decode
 *
 * The seeds are committed (tests/fuzz/corpus/); rerun this after changing
 * the input formats.  Each hub seed is a scenario in the operation format of
 * fz_ops (harness.h), written so that the fuzzer starts from deep states:
 * work items leased and completed, sub-orchestrations, timers, entities and
 * locks, purges and wipes in the same turn as the changes they undo.
 * Token bytes count the work items a scenario has seen, in order.
 */
#include "server/methods.h"
#include "tests/fuzz/builders.h"
#include "proto/pb.h"
#include "runtime/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST(x) ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_##x
#define ACT(x) ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_##x
#define EV(x) HISTORY_EVENT__EVENT_TYPE_##x
#define NOTOK 0xff

typedef struct sw {
  uint8_t *p;
  size_t n, cap;
} sw;

static void put(sw *w, const void *p, size_t n) {
  if (n == 0) return;
  if (w->n + n > w->cap) {
    w->cap = (w->n + n) * 2 + 64;
    w->p = dts_realloc(w->p, w->cap);
  }
  memcpy(w->p + w->n, p, n);
  w->n += n;
}
static void put8(sw *w, uint8_t b) { put(w, &b, 1); }
static void put16(sw *w, size_t v) {
  put8(w, (uint8_t)v);
  put8(w, (uint8_t)(v >> 8));
}

static void rpc(sw *w, dts_method m, uint8_t tok, const ProtobufCMessage *msg) {
  dts_buf b = dts_pb_pack(msg);
  put8(w, 0);
  put8(w, (uint8_t)m);
  put8(w, tok);
  put16(w, b.n);
  put(w, b.p, b.n);
  dts_buf_free(&b);
}
static void run(sw *w) { put8(w, 4); }
static void closek(sw *w, uint8_t k) {
  put8(w, 5);
  put8(w, k);
}
static void advance(sw *w) { put8(w, 6); }
static void tick(sw *w) { put8(w, 7); }

static const char *outdir;

static void save(const char *target, const char *name, sw *w) {
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", outdir, target);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    perror(path);
    exit(1);
  }
  snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
  FILE *fp = fopen(path, "wb");
  if (fp == NULL || fwrite(w->p, 1, w->n, fp) != w->n || fclose(fp) != 0) {
    perror(path);
    exit(1);
  }
  dts_free(w->p);
  memset(w, 0, sizeof(*w));
}

/* ---- request builders ---------------------------------------------------- */

static void start(sw *w, const char *id, const char *name, const char *input) {
  CreateInstanceRequest r = CREATE_INSTANCE_REQUEST__INIT;
  Google__Protobuf__StringValue in;
  r.instance_id = (char *)id;
  r.name = (char *)name;
  r.input = dts_sv(&in, input);
  rpc(w, DTS_M_START_INSTANCE, NOTOK, &r.base);
}

static void start_at(sw *w, const char *id, int64_t secs) {
  CreateInstanceRequest r = CREATE_INSTANCE_REQUEST__INIT;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  ts.seconds = secs;
  r.instance_id = (char *)id;
  r.name = "o";
  r.scheduled_start_timestamp = &ts;
  rpc(w, DTS_M_START_INSTANCE, NOTOK, &r.base);
}

static void stream(sw *w) {
  GetWorkItemsRequest r = GET_WORK_ITEMS_REQUEST__INIT;
  rpc(w, DTS_M_GET_WORK_ITEMS, NOTOK, &r.base);
}

static void get(sw *w, dts_method m, const char *id) {
  GetInstanceRequest r = GET_INSTANCE_REQUEST__INIT;
  r.instance_id = (char *)id;
  r.get_inputs_and_outputs = true;
  rpc(w, m, NOTOK, &r.base);
}

static void complete(sw *w, uint8_t tok, OrchestratorAction **acts, size_t n) {
  OrchestratorResponse r = ORCHESTRATOR_RESPONSE__INIT;
  r.actions = acts;
  r.n_actions = n;
  rpc(w, DTS_M_COMPLETE_ORCHESTRATOR, tok, &r.base);
}

static void complete_act(sw *w, uint8_t tok, const char *result) {
  ActivityResponse r = ACTIVITY_RESPONSE__INIT;
  Google__Protobuf__StringValue sv;
  r.result = dts_sv(&sv, result);
  rpc(w, DTS_M_COMPLETE_ACTIVITY, tok, &r.base);
}

static void purge(sw *w, const char *id, bool recursive) {
  PurgeInstancesRequest r = PURGE_INSTANCES_REQUEST__INIT;
  r.request_case = PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_ID;
  r.instance_id = (char *)id;
  r.recursive = recursive;
  rpc(w, DTS_M_PURGE_INSTANCES, NOTOK, &r.base);
}

static void purge_filter(sw *w) {
  PurgeInstancesRequest r = PURGE_INSTANCES_REQUEST__INIT;
  PurgeInstanceFilter f = PURGE_INSTANCE_FILTER__INIT;
  r.request_case = PURGE_INSTANCES_REQUEST__REQUEST_PURGE_INSTANCE_FILTER;
  r.purge_instance_filter = &f;
  r.recursive = true;
  rpc(w, DTS_M_PURGE_INSTANCES, NOTOK, &r.base);
}

static void terminate(sw *w, const char *id, bool recursive) {
  TerminateRequest r = TERMINATE_REQUEST__INIT;
  Google__Protobuf__StringValue sv;
  r.instance_id = (char *)id;
  r.output = dts_sv(&sv, "\"bye\"");
  r.recursive = recursive;
  rpc(w, DTS_M_TERMINATE, NOTOK, &r.base);
}

static void raise_ev(sw *w, const char *id) {
  RaiseEventRequest r = RAISE_EVENT_REQUEST__INIT;
  Google__Protobuf__StringValue sv;
  r.instance_id = (char *)id;
  r.name = "ev";
  r.input = dts_sv(&sv, "1");
  rpc(w, DTS_M_RAISE_EVENT, NOTOK, &r.base);
}

static void signal(sw *w, const char *ent, const char *op, const char *rid, int64_t at) {
  SignalEntityRequest r = SIGNAL_ENTITY_REQUEST__INIT;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  Google__Protobuf__StringValue sv;
  r.instance_id = (char *)ent;
  r.name = (char *)op;
  r.request_id = (char *)rid;
  r.input = dts_sv(&sv, "1");
  if (at != 0) {
    ts.seconds = at;
    r.scheduled_time = &ts;
  }
  rpc(w, DTS_M_SIGNAL_ENTITY, NOTOK, &r.base);
}

static void complete_ent(sw *w, uint8_t tok, int nresults, const char *state, bool with_actions) {
  EntityBatchResult r = ENTITY_BATCH_RESULT__INIT;
  OperationResult res[4], *rp[4];
  OperationResultSuccess ok[4];
  Google__Protobuf__StringValue st, out;
  for (int i = 0; i < nresults && i < 4; i++) {
    operation_result__init(&res[i]);
    operation_result_success__init(&ok[i]);
    ok[i].result = dts_sv(&out, "2");
    res[i].result_type_case = OPERATION_RESULT__RESULT_TYPE_SUCCESS;
    res[i].success = &ok[i];
    rp[i] = &res[i];
  }
  r.results = rp;
  r.n_results = (size_t)(nresults < 4 ? nresults : 4);
  r.entity_state = dts_sv(&st, state);
  OperationAction a[2], *ap[2] = {&a[0], &a[1]};
  SendSignalAction ss = SEND_SIGNAL_ACTION__INIT;
  StartNewOrchestrationAction so = START_NEW_ORCHESTRATION_ACTION__INIT;
  if (with_actions) {
    operation_action__init(&a[0]);
    ss.instance_id = "@other@k";
    ss.name = "add";
    a[0].operation_action_type_case = OPERATION_ACTION__OPERATION_ACTION_TYPE_SEND_SIGNAL;
    a[0].send_signal = &ss;
    operation_action__init(&a[1]);
    so.instance_id = "from-entity";
    so.name = "o";
    a[1].operation_action_type_case = OPERATION_ACTION__OPERATION_ACTION_TYPE_START_NEW_ORCHESTRATION;
    a[1].start_new_orchestration = &so;
    r.actions = ap;
    r.n_actions = 2;
  }
  rpc(w, DTS_M_COMPLETE_ENTITY, tok, &r.base);
}

/* ---- hub scenarios -------------------------------------------------------- */

static char longid[700];

static void hub_seeds(void) {
  sw w = {0};
  OrchestratorAction a[8], *ap[8];
  ScheduleTaskAction st[4];
  CreateTimerAction ct[4];
  Google__Protobuf__Timestamp ts[4];
  CreateSubOrchestrationAction cs[4];
  CompleteOrchestrationAction co;
  Google__Protobuf__StringValue sv;
  for (int i = 0; i < 8; i++) ap[i] = &a[i];

  /* an activity round trip, queried, listed, purged */
  put8(&w, 0);
  start(&w, "a", "o", "1");
  stream(&w);
  run(&w);
  a_task(&a[0], &st[0], 1, "act");
  complete(&w, 0, ap, 1);
  run(&w);
  complete_act(&w, 1, "\"r\"");
  run(&w);
  a_done(&a[0], &co, &sv, ST(COMPLETED), "\"done\"");
  complete(&w, 2, ap, 1);
  run(&w);
  get(&w, DTS_M_GET_INSTANCE, "a");
  QueryInstancesRequest q = QUERY_INSTANCES_REQUEST__INIT;
  rpc(&w, DTS_M_QUERY_INSTANCES, NOTOK, &q.base);
  ListInstanceIdsRequest l = LIST_INSTANCE_IDS_REQUEST__INIT;
  rpc(&w, DTS_M_LIST_INSTANCE_IDS, NOTOK, &l.base);
  run(&w);
  purge(&w, "a", true);
  run(&w);
  save("fuzz_hub", "activity-round-trip", &w);

  /* the same through the storage thread, with passivation */
  put8(&w, 3);
  start(&w, "a", "o", "1");
  stream(&w);
  run(&w);
  a_task(&a[0], &st[0], 1, "act");
  a_timer(&a[1], &ct[0], &ts[0], 2, 1);
  complete(&w, 0, ap, 2);
  run(&w);
  tick(&w);
  complete_act(&w, 1, "\"r\"");
  run(&w);
  save("fuzz_hub", "storage-thread-passivate", &w);

  /* two scheduled signals with one request id, in one turn */
  put8(&w, 0);
  signal(&w, "@c@1", "add", "r1", 4000000000LL);
  signal(&w, "@c@1", "add", "r1", 4000000000LL);
  run(&w);
  signal(&w, "@c@1", "add", "r1", 1);
  run(&w);
  save("fuzz_hub", "duplicate-scheduled-signal", &w);

  /* two timers with one id in one completion */
  put8(&w, 0);
  start(&w, "t", "o", NULL);
  stream(&w);
  run(&w);
  a_timer(&a[0], &ct[0], &ts[0], 1, 4000000000LL);
  a_timer(&a[1], &ct[1], &ts[1], 1, 4000000000LL);
  a_timer(&a[2], &ct[2], &ts[2], 2, 1);
  complete(&w, 0, ap, 3);
  run(&w);
  advance(&w);
  save("fuzz_hub", "duplicate-timer", &w);

  /* the same task id twice in one completion */
  put8(&w, 0);
  start(&w, "d", "o", NULL);
  stream(&w);
  run(&w);
  a_task(&a[0], &st[0], 1, "x");
  a_task(&a[1], &st[1], 1, "y");
  complete(&w, 0, ap, 2);
  run(&w);
  save("fuzz_hub", "duplicate-task", &w);

  /* purge in the turn that finishes it and schedules work */
  put8(&w, 0);
  start(&w, "p", "o", NULL);
  stream(&w);
  run(&w);
  a_task(&a[0], &st[0], 1, "x");
  a_timer(&a[1], &ct[0], &ts[0], 2, 4000000000LL);
  a_done(&a[2], &co, &sv, ST(COMPLETED), "1");
  complete(&w, 0, ap, 3);
  purge(&w, "p", true);
  run(&w);
  save("fuzz_hub", "purge-same-turn", &w);

  /* the same with the storage thread (tickets in flight across turns) */
  put8(&w, 1);
  start(&w, "p", "o", NULL);
  stream(&w);
  run(&w);
  a_task(&a[0], &st[0], 1, "x");
  a_done(&a[1], &co, &sv, ST(COMPLETED), "1");
  complete(&w, 0, ap, 2);
  purge(&w, "p", true);
  purge_filter(&w);
  run(&w);
  save("fuzz_hub", "purge-in-flight", &w);

  /* wipe (recreate) and delete in the turn of a completion */
  put8(&w, 0);
  start(&w, "w", "o", NULL);
  signal(&w, "@c@1", "add", "r1", 4000000000LL);
  stream(&w);
  run(&w);
  a_task(&a[0], &st[0], 1, "x");
  a_timer(&a[1], &ct[0], &ts[0], 2, 4000000000LL);
  complete(&w, 0, ap, 2);
  CreateTaskHubRequest ch = CREATE_TASK_HUB_REQUEST__INIT;
  ch.recreate_if_exists = true;
  rpc(&w, DTS_M_CREATE_TASK_HUB, NOTOK, &ch.base);
  run(&w);
  start(&w, "w", "o", NULL);
  DeleteTaskHubRequest dh = DELETE_TASK_HUB_REQUEST__INIT;
  rpc(&w, DTS_M_DELETE_TASK_HUB, NOTOK, &dh.base);
  run(&w);
  save("fuzz_hub", "wipe-same-turn", &w);

  /* sub-orchestrations, recursive terminate, recursive purge */
  put8(&w, 0);
  start(&w, "parent", "o", NULL);
  stream(&w);
  run(&w);
  a_sub(&a[0], &cs[0], 1, "child1");
  a_sub(&a[1], &cs[1], 2, "child2");
  complete(&w, 0, ap, 2);
  run(&w);
  a_sub(&a[0], &cs[0], 1, "grandchild");
  complete(&w, 1, ap, 1);
  run(&w);
  terminate(&w, "parent", true);
  run(&w);
  advance(&w);
  purge(&w, "parent", true);
  run(&w);
  save("fuzz_hub", "sub-orchestration-tree", &w);

  /* a sub-orchestration cycle: a child that creates its parent's id */
  put8(&w, 0);
  start(&w, "A", "o", NULL);
  stream(&w);
  run(&w);
  a_sub(&a[0], &cs[0], 1, "B");
  complete(&w, 0, ap, 1);
  run(&w);
  a_done(&a[0], &co, &sv, ST(COMPLETED), "1");
  complete(&w, 1, ap, 1);
  run(&w);
  a_sub(&a[0], &cs[0], 1, "A");
  complete(&w, 2, ap, 1);
  run(&w);
  purge(&w, "A", true);
  terminate(&w, "A", true);
  run(&w);
  save("fuzz_hub", "sub-orchestration-cycle", &w);

  /* events, suspend, resume, send event, terminate action, continue-as-new */
  put8(&w, 0);
  start(&w, "e", "o", NULL);
  start(&w, "f", "o", NULL);
  stream(&w);
  run(&w);
  raise_ev(&w, "e");
  SuspendRequest su = SUSPEND_REQUEST__INIT;
  su.instance_id = "e";
  rpc(&w, DTS_M_SUSPEND, NOTOK, &su.base);
  ResumeRequest re = RESUME_REQUEST__INIT;
  re.instance_id = "e";
  rpc(&w, DTS_M_RESUME, NOTOK, &re.base);
  OrchestrationInstance oi;
  SendEventAction se;
  a_send(&a[0], &se, &oi, 1, "f");
  TerminateOrchestrationAction ta;
  a_terminate(&a[1], &ta, 2, "f");
  CompleteOrchestrationAction can;
  Google__Protobuf__StringValue csv;
  a_done(&a[2], &can, &csv, ST(CONTINUED_AS_NEW), "2");
  complete(&w, 0, ap, 3);
  run(&w);
  get(&w, DTS_M_WAIT_COMPLETION, "e");
  run(&w);
  terminate(&w, "e", false);
  run(&w);
  save("fuzz_hub", "events-continue-as-new", &w);

  /* entities: signals, a batch with actions, queries, clean storage */
  put8(&w, 4);
  signal(&w, "@counter@1", "add", "", 0);
  signal(&w, "@counter@1", "add", "", 0);
  stream(&w);
  run(&w);
  complete_ent(&w, 0, 2, "5", true);
  run(&w);
  GetEntityRequest ge = GET_ENTITY_REQUEST__INIT;
  ge.instance_id = "@counter@1";
  ge.include_state = true;
  rpc(&w, DTS_M_GET_ENTITY, NOTOK, &ge.base);
  QueryEntitiesRequest qe = QUERY_ENTITIES_REQUEST__INIT;
  rpc(&w, DTS_M_QUERY_ENTITIES, NOTOK, &qe.base);
  complete_ent(&w, 1, 1, NULL, false);
  run(&w);
  CleanEntityStorageRequest ce = CLEAN_ENTITY_STORAGE_REQUEST__INIT;
  ce.remove_empty_entities = true;
  ce.release_orphaned_locks = true;
  rpc(&w, DTS_M_CLEAN_ENTITY_STORAGE, NOTOK, &ce.base);
  run(&w);
  save("fuzz_hub", "entities", &w);

  /* an orchestration locks two entities, calls one, unlocks, finishes */
  put8(&w, 0);
  start(&w, "locker", "o", NULL);
  stream(&w);
  run(&w);
  SendEntityMessageAction sm[4];
  EntityOperationSignaledEvent sig;
  EntityOperationCalledEvent cal;
  EntityLockRequestedEvent lk;
  EntityUnlockSentEvent ul;
  Google__Protobuf__StringValue tg;
  char *lockset[2] = {"@a@1", "@b@1"};
  dts_sv(&tg, "@a@1");
  a_entity(&a[0], &sm[0], 1, 2, &sig, &cal, &lk, &ul, &tg, lockset, 2);
  complete(&w, 0, ap, 1);
  run(&w);
  a_entity(&a[0], &sm[0], 2, 1, &sig, &cal, &lk, &ul, &tg, lockset, 2);
  a_entity(&a[1], &sm[1], 3, 0, &sig, &cal, &lk, &ul, &tg, lockset, 2);
  complete(&w, 1, ap, 2);
  run(&w);
  complete_ent(&w, 2, 1, "1", false);
  run(&w);
  a_entity(&a[0], &sm[0], 4, 3, &sig, &cal, &lk, &ul, &tg, lockset, 2);
  a_done(&a[1], &co, &sv, ST(COMPLETED), "1");
  complete(&w, 3, ap, 2);
  run(&w);
  save("fuzz_hub", "entity-locks", &w);

  /* ids, request ids and lock-set members longer than any key */
  put8(&w, 0);
  memset(longid, 'x', sizeof(longid) - 1);
  longid[0] = '@';
  longid[2] = '@';
  signal(&w, "@c@1", "add", longid + 3, 4000000000LL);
  signal(&w, longid, "add", "r", 0);
  start(&w, longid + 3, "o", NULL);
  start(&w, "L", "o", NULL);
  stream(&w);
  run(&w);
  char *biglock[2] = {"@a@1", longid};
  a_entity(&a[0], &sm[0], 1, 2, &sig, &cal, &lk, &ul, &tg, biglock, 2);
  complete(&w, 0, ap, 1);
  run(&w);
  save("fuzz_hub", "long-ids", &w);

  /* rewind: fail, rewind, the worker's rewind action (an execution id of
   * its own), the forced turn */
  put8(&w, 0);
  start(&w, "r", "o", NULL);
  stream(&w);
  run(&w);
  a_done(&a[0], &co, &sv, ST(FAILED), NULL);
  TaskFailureDetails fd = TASK_FAILURE_DETAILS__INIT;
  fd.error_type = "E";
  fd.error_message = "boom";
  co.failure_details = &fd;
  complete(&w, 0, ap, 1);
  run(&w);
  RewindInstanceRequest rw = REWIND_INSTANCE_REQUEST__INIT;
  rw.instance_id = "r";
  rpc(&w, DTS_M_REWIND_INSTANCE, NOTOK, &rw.base);
  run(&w);
  RewindOrchestrationAction ra = REWIND_ORCHESTRATION_ACTION__INIT;
  HistoryEvent he[2], *hep[2] = {&he[0], &he[1]};
  ExecutionStartedEvent es = EXECUTION_STARTED_EVENT__INIT;
  OrchestrationInstance eoi = ORCHESTRATION_INSTANCE__INIT;
  Google__Protobuf__StringValue exv;
  eoi.instance_id = "r";
  eoi.execution_id = dts_sv(&exv, longid + 3);
  es.name = "o";
  es.orchestration_instance = &eoi;
  history_event__init(&he[0]);
  he[0].event_type_case = EV(EXECUTION_STARTED);
  he[0].execution_started = &es;
  ExecutionRewoundEvent er = EXECUTION_REWOUND_EVENT__INIT;
  history_event__init(&he[1]);
  he[1].event_type_case = EV(EXECUTION_REWOUND);
  he[1].execution_rewound = &er;
  ra.new_history = hep;
  ra.n_new_history = 2;
  orchestrator_action__init(&a[0]);
  a[0].id = 1;
  a[0].orchestrator_action_type_case = ACT(REWIND_ORCHESTRATION);
  a[0].rewind_orchestration = &ra;
  complete(&w, 1, ap, 1);
  run(&w);
  a_task(&a[0], &st[0], 1, "x");
  a_timer(&a[1], &ct[0], &ts[0], 2, 4000000000LL);
  complete(&w, 2, ap, 2);
  run(&w);
  save("fuzz_hub", "rewind", &w);

  /* restart, skip-graceful terminations, abandons, a stream closed with
   * items leased, history streams, retention */
  put8(&w, 0);
  start(&w, "s1", "o", NULL);
  start_at(&w, "s2", 4000000000LL);
  start_at(&w, "s3", 253402300799LL);
  stream(&w);
  stream(&w);
  run(&w);
  a_task(&a[0], &st[0], 1, "x");
  complete(&w, 0, ap, 1);
  run(&w);
  closek(&w, 0);
  run(&w);
  complete_act(&w, 1, "1");
  AbandonOrchestrationTaskRequest ab = ABANDON_ORCHESTRATION_TASK_REQUEST__INIT;
  rpc(&w, DTS_M_ABANDON_ORCHESTRATOR, 0, &ab.base);
  AbandonActivityTaskRequest aa = ABANDON_ACTIVITY_TASK_REQUEST__INIT;
  rpc(&w, DTS_M_ABANDON_ACTIVITY, 1, &aa.base);
  run(&w);
  SkipGracefulOrchestrationTerminationsRequest sk = SKIP_GRACEFUL_ORCHESTRATION_TERMINATIONS_REQUEST__INIT;
  InstanceBatch ib = INSTANCE_BATCH__INIT;
  char *ids[3] = {"s1", "s2", "nope"};
  ib.instance_ids = ids;
  ib.n_instance_ids = 3;
  sk.instance_batch = &ib;
  rpc(&w, DTS_M_SKIP_GRACEFUL_TERMINATIONS, NOTOK, &sk.base);
  run(&w);
  RestartInstanceRequest rs = RESTART_INSTANCE_REQUEST__INIT;
  rs.instance_id = "s1";
  rpc(&w, DTS_M_RESTART_INSTANCE, NOTOK, &rs.base);
  rs.restart_with_new_instance_id = true;
  rpc(&w, DTS_M_RESTART_INSTANCE, NOTOK, &rs.base);
  StreamInstanceHistoryRequest sh = STREAM_INSTANCE_HISTORY_REQUEST__INIT;
  sh.instance_id = "s1";
  rpc(&w, DTS_M_STREAM_HISTORY, NOTOK, &sh.base);
  Dtsd__Admin__RetentionPolicy rp = DTSD__ADMIN__RETENTION_POLICY__INIT;
  Google__Protobuf__Duration zero = GOOGLE__PROTOBUF__DURATION__INIT;
  rp.default_retention = &zero;
  rpc(&w, DTS_M_ADMIN_SET_RETENTION, NOTOK, &rp.base);
  run(&w);
  tick(&w);
  save("fuzz_hub", "management", &w);

  /* chunked (partial) completions */
  put8(&w, 0);
  start(&w, "c", "o", NULL);
  stream(&w);
  run(&w);
  OrchestratorResponse pr = ORCHESTRATOR_RESPONSE__INIT;
  a_task(&a[0], &st[0], 1, "x");
  pr.actions = ap;
  pr.n_actions = 1;
  pr.is_partial = true;
  rpc(&w, DTS_M_COMPLETE_ORCHESTRATOR, 0, &pr.base);
  rpc(&w, DTS_M_COMPLETE_ORCHESTRATOR, 0, &pr.base);
  run(&w);
  pr.is_partial = false;
  rpc(&w, DTS_M_COMPLETE_ORCHESTRATOR, 0, &pr.base);
  run(&w);
  save("fuzz_hub", "chunked", &w);
}

/* ---- stored-record scenarios ---------------------------------------------- */

static void rec(sw *w, char type, const void *k, size_t klen, const ProtobufCMessage *v) {
  static const char types[] = "IHNATEQSCRXP";
  put8(w, (uint8_t)(strchr(types, type) - types + (type == 'I' ? 12 : 0)));
  put16(w, klen);
  put(w, k, klen);
  dts_buf b = v != NULL ? dts_pb_pack(v) : (dts_buf){NULL, 0};
  put16(w, b.n);
  put(w, b.p, b.n);
  dts_buf_free(&b);
}

static size_t seqkey(char *out, const char *id, uint64_t seq) {
  size_t n = strlen(id);
  memcpy(out, id, n);
  out[n] = '\0';
  for (int i = 0; i < 8; i++) out[n + 1 + i] = (char)(seq >> (56 - 8 * i));
  return n + 9;
}

static size_t workkey(char *out, const char *id, const char *exec, uint32_t num) {
  size_t a = strlen(id), b = strlen(exec);
  memcpy(out, id, a);
  out[a] = '\0';
  memcpy(out + a + 1, exec, b);
  out[a + 1 + b] = '\0';
  for (int i = 0; i < 4; i++) out[a + 2 + b + i] = (char)(num >> (24 - 8 * i));
  return a + b + 6;
}

static void store_seeds(void) {
  sw w = {0};
  char k[256];
  Dtsd__Store__InstanceRecord r = DTSD__STORE__INSTANCE_RECORD__INIT;
  r.instance_id = "i1";
  r.name = "o";
  r.execution_id = "e1";
  r.status = ST(RUNNING);
  r.created_ns = 1000;
  r.history_len = 1;
  r.inbox_count = 2;
  r.next_inbox_seq = 1;
  HistoryEvent ev = HISTORY_EVENT__INIT;
  ExecutionStartedEvent es = EXECUTION_STARTED_EVENT__INIT;
  es.name = "o";
  ev.event_type_case = EV(EXECUTION_STARTED);
  ev.execution_started = &es;
  HistoryEvent tf = HISTORY_EVENT__INIT;
  TimerFiredEvent tfe = TIMER_FIRED_EVENT__INIT;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  ts.seconds = 1;
  tfe.fire_at = &ts;
  tfe.timer_id = 1;
  tf.event_type_case = EV(TIMER_FIRED);
  tf.timer_fired = &tfe;
  ActivityRequest ar = ACTIVITY_REQUEST__INIT;
  ar.name = "act";
  ar.task_id = 1;
  Dtsd__Store__EntityRecord er = DTSD__STORE__ENTITY_RECORD__INIT;
  Google__Protobuf__StringValue st;
  er.instance_id = "@c@1";
  er.state = dts_sv(&st, "5");
  er.locked_by = "i1";
  er.next_seq = 1;
  HistoryEvent sig = HISTORY_EVENT__INIT;
  EntityOperationSignaledEvent se = ENTITY_OPERATION_SIGNALED_EVENT__INIT;
  se.request_id = "r";
  se.operation = "add";
  se.scheduled_time = &ts;
  sig.event_type_case = EV(ENTITY_OPERATION_SIGNALED);
  sig.entity_operation_signaled = &se;

  rec(&w, 'I', "i1", 2, &r.base);
  {
    char sk[64];
    sk[0] = (char)ST(RUNNING);
    for (int i = 0; i < 8; i++) sk[1 + i] = (char)(i == 7 ? 0xe8 : i == 6 ? 0x03 : 0);
    memcpy(sk + 9, "i1", 2);
    rec(&w, 'S', sk, 11, NULL);
  }
  rec(&w, 'H', k, seqkey(k, "i1", 0), &ev.base);
  rec(&w, 'N', k, seqkey(k, "i1", 0), &tf.base);
  rec(&w, 'A', k, workkey(k, "i1", "e1", 1), &ar.base);
  rec(&w, 'T', k, workkey(k, "i1", "e1", 1), &tf.base);
  rec(&w, 'E', "@c@1", 4, &er.base);
  rec(&w, 'Q', k, seqkey(k, "@c@1", 0), &sig.base);
  rec(&w, 'T', k, workkey(k, "@c@1", "r", 0), &sig.base);
  Dtsd__Admin__Schedule sc = DTSD__ADMIN__SCHEDULE__INIT;
  Google__Protobuf__Duration iv = GOOGLE__PROTOBUF__DURATION__INIT;
  iv.seconds = 1;
  sc.schedule_id = "s1";
  sc.orchestration_name = "o";
  sc.interval = &iv;
  sc.start_at = &ts;
  sc.next_run_at = &ts; /* long due: a late schedule */
  sc.start_immediately_if_late = true;
  rec(&w, 'P', "s1", 2, &sc.base);
  put8(&w, 0); /* end of records */
  put8(&w, 0); /* options */
  stream(&w);
  run(&w);
  get(&w, DTS_M_GET_INSTANCE, "i1");
  QueryInstancesRequest q = QUERY_INSTANCES_REQUEST__INIT;
  rpc(&w, DTS_M_QUERY_INSTANCES, NOTOK, &q.base);
  QueryEntitiesRequest qe = QUERY_ENTITIES_REQUEST__INIT;
  rpc(&w, DTS_M_QUERY_ENTITIES, NOTOK, &qe.base);
  terminate(&w, "i1", true);
  run(&w);
  advance(&w);
  purge(&w, "i1", true);
  run(&w);
  save("fuzz_store", "live-instance-and-entity", &w);

  /* a finished instance read back on demand, with a damaged parent */
  r.status = ST(COMPLETED);
  r.completed_ns = 2000;
  r.parent.data = (uint8_t *)"\x0a\x03zzz";
  r.parent.len = 5;
  rec(&w, 'I', "f1", 2, &r.base);
  rec(&w, 'H', k, seqkey(k, "f1", 0), &ev.base);
  rec(&w, 'C', "\0\0\0\0\0\0\x07\xd0" "f1", 10, NULL);
  put8(&w, 0);
  put8(&w, 0);
  get(&w, DTS_M_GET_INSTANCE, "f1");
  ListInstanceIdsRequest l = LIST_INSTANCE_IDS_REQUEST__INIT;
  rpc(&w, DTS_M_LIST_INSTANCE_IDS, NOTOK, &l.base);
  StreamInstanceHistoryRequest sh = STREAM_INSTANCE_HISTORY_REQUEST__INIT;
  sh.instance_id = "f1";
  rpc(&w, DTS_M_STREAM_HISTORY, NOTOK, &sh.base);
  start(&w, "f1", "o", NULL);
  run(&w);
  save("fuzz_store", "finished-read-back", &w);
}

/* ---- decoder seeds ------------------------------------------------------------ */

static void decode_seed(const char *name, int which, const ProtobufCMessage *m) {
  sw w = {0};
  put8(&w, (uint8_t)which);
  put8(&w, 63);
  dts_buf b = dts_pb_pack(m);
  put(&w, b.p, b.n);
  dts_buf_free(&b);
  save("fuzz_decode", name, &w);
}

static void decode_seeds(void) {
  CreateInstanceRequest c = CREATE_INSTANCE_REQUEST__INIT;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  Google__Protobuf__StringValue sv;
  c.instance_id = "id";
  c.name = "o";
  c.input = dts_sv(&sv, "{\"a\":1}");
  ts.seconds = 1;
  c.scheduled_start_timestamp = &ts;
  decode_seed("start", DTS_M_START_INSTANCE, &c.base);
  OrchestratorResponse r = ORCHESTRATOR_RESPONSE__INIT;
  OrchestratorAction a[3], *ap[3] = {&a[0], &a[1], &a[2]};
  ScheduleTaskAction st;
  CreateTimerAction ct;
  Google__Protobuf__Timestamp t2;
  CompleteOrchestrationAction co;
  TaskFailureDetails fd = TASK_FAILURE_DETAILS__INIT, inner = TASK_FAILURE_DETAILS__INIT;
  a_task(&a[0], &st, 1, "x");
  a_timer(&a[1], &ct, &t2, 2, 5);
  a_done(&a[2], &co, &sv, ST(FAILED), "r");
  fd.error_message = "outer";
  inner.error_message = "inner";
  fd.inner_failure = &inner;
  co.failure_details = &fd;
  r.instance_id = "id";
  r.actions = ap;
  r.n_actions = 3;
  decode_seed("complete", DTS_M_COMPLETE_ORCHESTRATOR, &r.base);
  EntityBatchResult eb = ENTITY_BATCH_RESULT__INIT;
  eb.entity_state = dts_sv(&sv, "3");
  decode_seed("entity", DTS_M_COMPLETE_ENTITY, &eb.base);
  Dtsd__Store__InstanceRecord ir = DTSD__STORE__INSTANCE_RECORD__INIT;
  ir.instance_id = "id";
  ir.status = 1;
  decode_seed("record", DTS_M_COUNT, &ir.base);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuzz_seeds <corpus dir>\n");
    return 2;
  }
  outdir = argv[1];
  if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
    perror(outdir);
    return 1;
  }
  hub_seeds();
  store_seeds();
  decode_seeds();
  return 0;
}
