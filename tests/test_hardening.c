/* test_hardening.c -- the task hub against requests built to hurt it, one
 * regression test per class the fuzzers and the hardening issue named.
 *
 * The hub runs on the fuzz harness (tests/fuzz/harness.h): a manual
 * scheduler and timer facility, so every request posted between two runs
 * lands in one hub turn -- the interleavings that used to free what a
 * turn's effects still pointed at are reached every time, not by luck.
 * Real LevelDB underneath.  Under ASan+UBSan (the sanitizer build) a
 * use-after-free, leak or overflow fails the test.
 */
#define _GNU_SOURCE /* memmem */
#include "actors/hub.h"
#include "runtime/alloc.h"
#include "tests/fuzz/builders.h"
#include "tests/fuzz/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>

#define ST(x) ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_##x
#define EV(x) HISTORY_EVENT__EVENT_TYPE_##x
#define FUTURE 4000000000LL /* 2096: a timer that never fires in a test */

/* ---- helpers ------------------------------------------------------------- */

static fz_hub *open_hub(void) {
  fz_options o = {0};
  fz_hub *f = fz_hub_open(&o);
  assert_non_null(f);
  return f;
}

static void want_status(dts_call *c, int st) {
  assert_true(fake_answered(c));
  if (c->status != st) fail_msg("status %d (%s), wanted %d", c->status, c->msg, st);
}

static dts_call *start_at(fz_hub *f, const char *id, int64_t secs) {
  CreateInstanceRequest r = CREATE_INSTANCE_REQUEST__INIT;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  r.instance_id = (char *)id;
  r.name = "orch";
  if (secs != 0) {
    ts.seconds = secs;
    r.scheduled_start_timestamp = &ts;
  }
  return fz_post(f, DTS_M_START_INSTANCE, &r.base);
}

static dts_call *start(fz_hub *f, const char *id) { return start_at(f, id, 0); }

static dts_call *stream(fz_hub *f) {
  GetWorkItemsRequest r = GET_WORK_ITEMS_REQUEST__INIT;
  fz_post(f, DTS_M_GET_WORK_ITEMS, &r.base);
  for (size_t i = 0;; i++)
    if (fz_owned(f, i + 1) == NULL) return fz_owned(f, i);
}

/* The i-th message sent on a stream, decoded (work_item__free_unpacked). */
static WorkItem *item(dts_call *s, int i) {
  dts_buf b;
  if (!fake_item(s, i, &b)) fail_msg("no work item #%d (have %d)", i, fake_nitems(s));
  WorkItem *w = work_item__unpack(NULL, b.n, b.p);
  dts_buf_free(&b);
  assert_non_null(w);
  return w;
}

/* Starts `id`, opens a worker stream and returns its first work item (the
 * instance's first turn); *s is the stream. */
static WorkItem *first_turn(fz_hub *f, const char *id, dts_call **s) {
  start(f, id);
  *s = stream(f);
  fz_run(f, 0);
  return item(*s, 0);
}

static dts_call *complete(fz_hub *f, const char *token, OrchestratorAction **acts, size_t n) {
  OrchestratorResponse r = ORCHESTRATOR_RESPONSE__INIT;
  r.completion_token = (char *)token;
  r.actions = acts;
  r.n_actions = n;
  return fz_post(f, DTS_M_COMPLETE_ORCHESTRATOR, &r.base);
}

static dts_call *complete_act(fz_hub *f, const char *token, const char *result) {
  ActivityResponse r = ACTIVITY_RESPONSE__INIT;
  Google__Protobuf__StringValue sv;
  r.completion_token = (char *)token;
  r.result = dts_sv(&sv, result);
  return fz_post(f, DTS_M_COMPLETE_ACTIVITY, &r.base);
}

static OrchestrationState *get(fz_hub *f, const char *id) {
  GetInstanceRequest r = GET_INSTANCE_REQUEST__INIT;
  r.instance_id = (char *)id;
  r.get_inputs_and_outputs = true;
  dts_call *c = fz_post(f, DTS_M_GET_INSTANCE, &r.base);
  fz_run(f, 0);
  want_status(c, 0);
  GetInstanceResponse *resp = get_instance_response__unpack(NULL, c->body.n, c->body.p);
  OrchestrationState *st = NULL;
  if (resp->exists) {
    st = resp->orchestration_state;
    resp->orchestration_state = NULL;
  }
  get_instance_response__free_unpacked(resp, NULL);
  return st;
}

static int status_of(fz_hub *f, const char *id) {
  OrchestrationState *st = get(f, id);
  if (st == NULL) return -1;
  int s = st->orchestration_status;
  orchestration_state__free_unpacked(st, NULL);
  return s;
}

static dts_call *signal_at(fz_hub *f, const char *ent, const char *rid, int64_t secs) {
  SignalEntityRequest r = SIGNAL_ENTITY_REQUEST__INIT;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  r.instance_id = (char *)ent;
  r.name = "add";
  r.request_id = (char *)rid;
  if (secs != 0) {
    ts.seconds = secs;
    r.scheduled_time = &ts;
  }
  return fz_post(f, DTS_M_SIGNAL_ENTITY, &r.base);
}

static dts_call *purge(fz_hub *f, const char *id) {
  PurgeInstancesRequest r = PURGE_INSTANCES_REQUEST__INIT;
  r.request_case = PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_ID;
  r.instance_id = (char *)id;
  r.recursive = true;
  return fz_post(f, DTS_M_PURGE_INSTANCES, &r.base);
}

/* Counts the keys under the hub's prefix that start with `type`. */
typedef struct counter {
  size_t n;
} counter;

static bool count_visit(void *ctx, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)k, (void)klen, (void)v, (void)vlen;
  ((counter *)ctx)->n++;
  return true;
}

static size_t keys_of(char type) {
  char pre[64];
  size_t n = strlen(fz_hub_name());
  memcpy(pre, fz_hub_name(), n);
  pre[n] = '\0';
  pre[n + 1] = type;
  counter c = {0};
  assert_int_equal(dts_store_scan(fz_store(), pre, n + 2, count_visit, &c), DTS_OK);
  return c.n;
}

/* ---- effects that cannot dangle ------------------------------------------ */

/* Two scheduled signals with one request id in one turn: the second
 * replaces the first's durable timer while the first's commit effect
 * still named it (a use-after-free before effects named timers by id). */
static void test_two_scheduled_signals_with_one_request_id_in_one_turn(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  dts_call *a = signal_at(f, "@counter@1", "r1", FUTURE);
  dts_call *b = signal_at(f, "@counter@1", "r1", FUTURE);
  fz_run(f, 0);
  want_status(a, 0);
  want_status(b, 0);
  assert_int_equal(keys_of('T'), 1); /* one request id, one signal held */
  fz_hub_close(f);
}

/* Two CreateTimer actions with one id in one completion, and a third due at
 * once: one timer per id stands and the due one fires. */
static void test_two_timers_with_one_id_in_one_completion(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  dts_call *s;
  WorkItem *w = first_turn(f, "t", &s);
  OrchestratorAction a[3], *ap[3] = {&a[0], &a[1], &a[2]};
  CreateTimerAction ct[3];
  Google__Protobuf__Timestamp ts[3];
  a_timer(&a[0], &ct[0], &ts[0], 1, FUTURE);
  a_timer(&a[1], &ct[1], &ts[1], 1, FUTURE);
  a_timer(&a[2], &ct[2], &ts[2], 2, 1);
  dts_call *c = complete(f, w->completion_token, ap, 3);
  work_item__free_unpacked(w, NULL);
  fz_run(f, 0);
  want_status(c, 0);
  assert_int_equal(keys_of('T'), 1); /* timer 2 fired; timer 1 once */
  w = item(s, 1);                    /* the next turn: TimerFired for 2 */
  assert_non_null(w->orchestrator_request);
  bool fired = false;
  for (size_t i = 0; i < w->orchestrator_request->n_new_events; i++)
    fired |= w->orchestrator_request->new_events[i]->event_type_case == EV(TIMER_FIRED) &&
             w->orchestrator_request->new_events[i]->timer_fired->timer_id == 2;
  assert_true(fired);
  work_item__free_unpacked(w, NULL);
  fz_hub_close(f);
}

/* A purge in the turn that completes the instance (and schedules work for
 * it): the activity and timer the commit would have made ready were freed
 * by the purge (a use-after-free before). */
static void test_purge_in_the_turn_that_finishes_it(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  dts_call *s;
  WorkItem *w = first_turn(f, "p", &s);
  OrchestratorAction a[3], *ap[3] = {&a[0], &a[1], &a[2]};
  ScheduleTaskAction st;
  CreateTimerAction ct;
  Google__Protobuf__Timestamp ts;
  CompleteOrchestrationAction co;
  Google__Protobuf__StringValue sv;
  a_task(&a[0], &st, 1, "act");
  a_timer(&a[1], &ct, &ts, 2, FUTURE);
  a_done(&a[2], &co, &sv, ST(COMPLETED), "1");
  dts_call *c = complete(f, w->completion_token, ap, 3);
  work_item__free_unpacked(w, NULL);
  dts_call *pc = purge(f, "p");
  fz_run(f, 0);
  want_status(c, 0);
  want_status(pc, 0);
  PurgeInstancesResponse *pr = purge_instances_response__unpack(NULL, pc->body.n, pc->body.p);
  assert_int_equal(pr->deleted_instance_count, 1);
  purge_instances_response__free_unpacked(pr, NULL);
  assert_int_equal(status_of(f, "p"), -1);
  assert_int_equal(fake_nitems(s), 1); /* the purged activity was never dispatched */
  assert_int_equal(keys_of('A') + keys_of('T') + keys_of('I') + keys_of('H'), 0);
  fz_hub_close(f);
}

/* CreateTaskHub{recreateIfExists} in the turn of a completion that
 * scheduled work: the wipe frees what the commit named. */
static void test_wipe_in_the_turn_of_a_completion(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  start(f, "w");
  signal_at(f, "@counter@1", "r1", FUTURE);
  dts_call *s = stream(f);
  fz_run(f, 0);
  WorkItem *w = item(s, 0);
  OrchestratorAction a[2], *ap[2] = {&a[0], &a[1]};
  ScheduleTaskAction st;
  CreateTimerAction ct;
  Google__Protobuf__Timestamp ts;
  a_task(&a[0], &st, 1, "act");
  a_timer(&a[1], &ct, &ts, 2, FUTURE);
  dts_call *c = complete(f, w->completion_token, ap, 2);
  work_item__free_unpacked(w, NULL);
  CreateTaskHubRequest ch = CREATE_TASK_HUB_REQUEST__INIT;
  ch.recreate_if_exists = true;
  dts_call *wc = fz_post(f, DTS_M_CREATE_TASK_HUB, &ch.base);
  fz_run(f, 0);
  want_status(c, 0);
  want_status(wc, 0);
  assert_int_equal(status_of(f, "w"), -1);
  assert_int_equal(fake_nitems(s), 1);
  assert_int_equal(keys_of('A') + keys_of('T') + keys_of('I') + keys_of('E'), 0);
  fz_hub_close(f);
}

/* The same task id twice in one completion: the later one stands, and the
 * earlier one is freed (it leaked before), never dispatched. */
static void test_duplicate_task_id_leaves_one_work_item(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  dts_call *s;
  WorkItem *w = first_turn(f, "d", &s);
  OrchestratorAction a[2], *ap[2] = {&a[0], &a[1]};
  ScheduleTaskAction st[2];
  a_task(&a[0], &st[0], 1, "first");
  a_task(&a[1], &st[1], 1, "second");
  complete(f, w->completion_token, ap, 2);
  work_item__free_unpacked(w, NULL);
  fz_run(f, 0);
  assert_int_equal(fake_nitems(s), 2);
  w = item(s, 1);
  assert_non_null(w->activity_request);
  assert_string_equal(w->activity_request->name, "second");
  work_item__free_unpacked(w, NULL);
  assert_int_equal(keys_of('A'), 1);
  fz_hub_close(f);
}

/* ---- strings that become keys --------------------------------------------- */

static void test_ids_longer_than_a_key_are_refused_not_truncated(void **state) {
  (void)state;
  char big[700];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  fz_hub *f = open_hub();
  dts_call *a = signal_at(f, "@counter@1", big, FUTURE); /* a request id in a timer key */
  big[0] = '@';
  big[2] = '@';
  dts_call *b = signal_at(f, big, "", 0);
  QueryInstancesRequest q = QUERY_INSTANCES_REQUEST__INIT;
  InstanceQuery iq = INSTANCE_QUERY__INIT;
  Google__Protobuf__StringValue pre;
  iq.instance_id_prefix = dts_sv(&pre, big + 3);
  q.query = &iq;
  dts_call *qc = fz_post(f, DTS_M_QUERY_INSTANCES, &q.base);
  fz_run(f, 0);
  want_status(a, DTS_ST_INVALID_ARGUMENT);
  assert_non_null(strstr(a->msg, "request id"));
  want_status(b, DTS_ST_INVALID_ARGUMENT);
  want_status(qc, DTS_ST_INVALID_ARGUMENT);

  /* a lock set naming an entity id longer than a key fails the orchestration */
  dts_call *s;
  WorkItem *w = first_turn(f, "L", &s);
  OrchestratorAction act, *ap = &act;
  SendEntityMessageAction sm;
  EntityOperationSignaledEvent sig;
  EntityOperationCalledEvent cal;
  EntityLockRequestedEvent lk;
  EntityUnlockSentEvent ul;
  Google__Protobuf__StringValue tg;
  char *lockset[2] = {"@a@1", big};
  dts_sv(&tg, "@a@1");
  a_entity(&act, &sm, 1, 2, &sig, &cal, &lk, &ul, &tg, lockset, 2);
  dts_call *c = complete(f, w->completion_token, &ap, 1);
  work_item__free_unpacked(w, NULL);
  fz_run(f, 0);
  want_status(c, DTS_ST_INVALID_ARGUMENT);
  assert_non_null(strstr(c->msg, "lock set"));
  OrchestrationState *st = get(f, "L");
  assert_int_equal(st->orchestration_status, ST(FAILED));
  assert_string_equal(st->failure_details->error_type, "InvalidEntityMessage");
  orchestration_state__free_unpacked(st, NULL);
  fz_hub_close(f);
}

/* The rewound history's execution id names keys (activities, timers): one
 * longer than 100 characters is not taken (it overflowed the key before). */
static void test_rewound_execution_id_is_validated(void **state) {
  (void)state;
  char big[400];
  memset(big, 'e', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  fz_hub *f = open_hub();
  dts_call *s;
  WorkItem *w = first_turn(f, "r", &s);
  OrchestratorAction act, *ap = &act;
  CompleteOrchestrationAction co;
  Google__Protobuf__StringValue sv;
  TaskFailureDetails fd = TASK_FAILURE_DETAILS__INIT;
  fd.error_type = "E";
  fd.error_message = "boom";
  a_done(&act, &co, &sv, ST(FAILED), NULL);
  co.failure_details = &fd;
  complete(f, w->completion_token, &ap, 1);
  work_item__free_unpacked(w, NULL);
  fz_run(f, 0);
  OrchestrationState *st = get(f, "r");
  char *exec = dts_strdup(st->execution_id->value);
  orchestration_state__free_unpacked(st, NULL);
  RewindInstanceRequest rw = REWIND_INSTANCE_REQUEST__INIT;
  rw.instance_id = "r";
  dts_call *rc = fz_post(f, DTS_M_REWIND_INSTANCE, &rw.base);
  fz_run(f, 0);
  want_status(rc, 0);
  w = item(s, 1);
  RewindOrchestrationAction ra = REWIND_ORCHESTRATION_ACTION__INIT;
  HistoryEvent he = HISTORY_EVENT__INIT, *hep = &he;
  ExecutionStartedEvent es = EXECUTION_STARTED_EVENT__INIT;
  OrchestrationInstance oi = ORCHESTRATION_INSTANCE__INIT;
  Google__Protobuf__StringValue ex;
  oi.instance_id = "r";
  oi.execution_id = dts_sv(&ex, big);
  es.name = "orch";
  es.orchestration_instance = &oi;
  he.event_type_case = EV(EXECUTION_STARTED);
  he.execution_started = &es;
  ra.new_history = &hep;
  ra.n_new_history = 1;
  orchestrator_action__init(&act);
  act.id = 1;
  act.orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_REWIND_ORCHESTRATION;
  act.rewind_orchestration = &ra;
  dts_call *c = complete(f, w->completion_token, &ap, 1);
  work_item__free_unpacked(w, NULL);
  fz_run(f, 0);
  want_status(c, 0);
  st = get(f, "r");
  assert_string_equal(st->execution_id->value, exec); /* kept */
  orchestration_state__free_unpacked(st, NULL);
  dts_free(exec);
  /* and the forced turn schedules work under keys that fit */
  w = item(s, 2);
  ScheduleTaskAction sta;
  a_task(&act, &sta, 1, "act");
  complete(f, w->completion_token, &ap, 1);
  work_item__free_unpacked(w, NULL);
  fz_run(f, 0);
  assert_int_equal(keys_of('A'), 1);
  fz_hub_close(f);
}

/* A rewindOrchestration action nobody asked for would replace the history:
 * refused, and the orchestration fails. */
static void test_rewind_action_without_a_pending_rewind_is_refused(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  dts_call *s;
  WorkItem *w = first_turn(f, "x", &s);
  OrchestratorAction act, *ap = &act;
  RewindOrchestrationAction ra = REWIND_ORCHESTRATION_ACTION__INIT;
  orchestrator_action__init(&act);
  act.id = 1;
  act.orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_REWIND_ORCHESTRATION;
  act.rewind_orchestration = &ra;
  dts_call *c = complete(f, w->completion_token, &ap, 1);
  work_item__free_unpacked(w, NULL);
  fz_run(f, 0);
  want_status(c, DTS_ST_INVALID_ARGUMENT);
  assert_non_null(strstr(c->msg, "rewind"));
  assert_int_equal(status_of(f, "x"), ST(FAILED));
  fz_hub_close(f);
}

/* ---- times ----------------------------------------------------------------- */

/* Year 9999 is a valid Timestamp; in ns it does not fit an int64 and used
 * to wrap negative: the timer fired and the instance started at once. */
static void test_far_future_times_do_not_fire_at_once(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  dts_call *sc = start_at(f, "later", 253402300799LL);
  start(f, "t");
  dts_call *s = stream(f);
  fz_run(f, 0);
  want_status(sc, 0);
  assert_int_equal(status_of(f, "later"), ST(PENDING));
  assert_int_equal(fake_nitems(s), 1); /* only "t" */
  WorkItem *w = item(s, 0);
  assert_string_equal(w->orchestrator_request->instance_id, "t");
  OrchestratorAction act, *ap = &act;
  CreateTimerAction ct;
  Google__Protobuf__Timestamp ts;
  a_timer(&act, &ct, &ts, 1, 253402300799LL);
  complete(f, w->completion_token, &ap, 1);
  work_item__free_unpacked(w, NULL);
  fz_run(f, 3600ULL * 1000000000ULL); /* every timer an hour ahead fires now: the hub re-arms */
  fz_run(f, 0);
  assert_int_equal(fake_nitems(s), 1);
  assert_int_equal(keys_of('T'), 1);
  assert_int_equal(status_of(f, "later"), ST(PENDING));
  fz_hub_close(f);
}

/* ---- a worker that shuts down gracefully ----------------------------------- */

/* SDK workers close their stream first and send completions after: one
 * whose item went back to the queue, not leased again, is applied; the
 * item leaves the queue and runs nowhere else. */
static void test_completions_after_the_stream_closed_are_applied(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  start(f, "g");
  signal_at(f, "@counter@g", "", 0);
  dts_call *s1 = stream(f);
  fz_run(f, 0);
  assert_int_equal(fake_nitems(s1), 2); /* the orchestration and the entity batch */
  WorkItem *wo = item(s1, 0), *we = item(s1, 1);
  if (wo->orchestrator_request == NULL) {
    WorkItem *t = wo;
    wo = we;
    we = t;
  }
  fake_close(s1);
  fz_run(f, 0);
  /* orchestration: the turn schedules an activity */
  OrchestratorAction act, *ap = &act;
  ScheduleTaskAction sta;
  a_task(&act, &sta, 1, "act");
  dts_call *c1 = complete(f, wo->completion_token, &ap, 1);
  EntityBatchResult er = ENTITY_BATCH_RESULT__INIT;
  OperationResult res = OPERATION_RESULT__INIT, *resp = &res;
  OperationResultSuccess ok = OPERATION_RESULT_SUCCESS__INIT;
  Google__Protobuf__StringValue state_sv;
  res.result_type_case = OPERATION_RESULT__RESULT_TYPE_SUCCESS;
  res.success = &ok;
  er.results = &resp;
  er.n_results = 1;
  er.entity_state = dts_sv(&state_sv, "1");
  er.completion_token = we->completion_token;
  dts_call *c2 = fz_post(f, DTS_M_COMPLETE_ENTITY, &er.base);
  fz_run(f, 0);
  want_status(c1, 0);
  want_status(c2, 0);
  dts_call *s2 = stream(f);
  fz_run(f, 0);
  assert_int_equal(fake_nitems(s2), 1); /* only the new activity: neither item runs again */
  WorkItem *wa = item(s2, 0);
  assert_non_null(wa->activity_request);
  fake_close(s2);
  fz_run(f, 0);
  dts_call *c3 = complete_act(f, wa->completion_token, "\"r\"");
  fz_run(f, 0);
  want_status(c3, 0);
  dts_call *s3 = stream(f);
  fz_run(f, 0);
  assert_int_equal(fake_nitems(s3), 1); /* the orchestration's next turn, with the activity's result */
  WorkItem *next = item(s3, 0);
  assert_non_null(next->orchestrator_request);
  bool done = false;
  for (size_t i = 0; i < next->orchestrator_request->n_new_events; i++)
    done |= next->orchestrator_request->new_events[i]->event_type_case == EV(TASK_COMPLETED);
  assert_true(done);
  GetEntityRequest ge = GET_ENTITY_REQUEST__INIT;
  ge.instance_id = "@counter@g";
  ge.include_state = true;
  dts_call *gc = fz_post(f, DTS_M_GET_ENTITY, &ge.base);
  fz_run(f, 0);
  GetEntityResponse *gr = get_entity_response__unpack(NULL, gc->body.n, gc->body.p);
  assert_true(gr->exists);
  assert_string_equal(gr->entity->serialized_state->value, "1");
  get_entity_response__free_unpacked(gr, NULL);
  work_item__free_unpacked(next, NULL);
  work_item__free_unpacked(wa, NULL);
  work_item__free_unpacked(wo, NULL);
  work_item__free_unpacked(we, NULL);
  fz_hub_close(f);
}

/* Once another stream leased the item, the late completion is stale. */
static void test_a_late_completion_after_the_item_was_leased_again_is_stale(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  start(f, "g2");
  dts_call *s1 = stream(f);
  fz_run(f, 0);
  WorkItem *w1 = item(s1, 0);
  fake_close(s1);
  fz_run(f, 0);
  dts_call *s2 = stream(f);
  fz_run(f, 0);
  assert_int_equal(fake_nitems(s2), 1); /* leased again */
  OrchestratorAction act, *ap = &act;
  CompleteOrchestrationAction co;
  Google__Protobuf__StringValue sv;
  a_done(&act, &co, &sv, ST(COMPLETED), "\"old\"");
  dts_call *c = complete(f, w1->completion_token, &ap, 1);
  fz_run(f, 0);
  want_status(c, 0); /* stale: OK, no effect */
  assert_int_equal(status_of(f, "g2"), ST(PENDING)); /* its first turn was never applied */
  work_item__free_unpacked(w1, NULL);
  fz_hub_close(f);
}

/* ---- bounded work ---------------------------------------------------------- */

static void test_purge_by_filter_goes_in_chunks(void **state) {
  (void)state;
  fz_options o = {.limits = {.purge_chunk = 10}};
  fz_hub *f = fz_hub_open(&o);
  SkipGracefulOrchestrationTerminationsRequest sk = SKIP_GRACEFUL_ORCHESTRATION_TERMINATIONS_REQUEST__INIT;
  InstanceBatch ib = INSTANCE_BATCH__INIT;
  char *ids[25], names[25][8];
  for (int i = 0; i < 25; i++) {
    snprintf(names[i], sizeof(names[i]), "i%02d", i);
    ids[i] = names[i];
    start(f, names[i]);
  }
  fz_run(f, 0);
  ib.instance_ids = ids;
  ib.n_instance_ids = 25;
  sk.instance_batch = &ib;
  fz_post(f, DTS_M_SKIP_GRACEFUL_TERMINATIONS, &sk.base); /* all finished now */
  fz_run(f, 0);
  int total = 0;
  bool done = false;
  for (int call = 0; call < 5 && !done; call++) {
    PurgeInstancesRequest r = PURGE_INSTANCES_REQUEST__INIT;
    PurgeInstanceFilter pf = PURGE_INSTANCE_FILTER__INIT;
    r.request_case = PURGE_INSTANCES_REQUEST__REQUEST_PURGE_INSTANCE_FILTER;
    r.purge_instance_filter = &pf;
    dts_call *c = fz_post(f, DTS_M_PURGE_INSTANCES, &r.base);
    fz_run(f, 0);
    want_status(c, 0);
    PurgeInstancesResponse *pr = purge_instances_response__unpack(NULL, c->body.n, c->body.p);
    assert_true(pr->deleted_instance_count <= 10);
    total += pr->deleted_instance_count;
    done = pr->is_complete->value;
    assert_true(done == (total == 25));
    purge_instances_response__free_unpacked(pr, NULL);
  }
  assert_true(done);
  assert_int_equal(total, 25);
  fz_hub_close(f);
}

/* A status filter that matches little, over many unfinished instances:
 * each page looks at no more than the scan budget, returns what it found
 * and a key to go on from; together the pages find them all. */
static void test_list_ids_pages_stay_within_the_scan_budget(void **state) {
  (void)state;
  fz_options o = {.limits = {.scan_budget = 100}};
  fz_hub *f = fz_hub_open(&o);
  start(f, "zz-running"); /* the only RUNNING one, last in id order */
  dts_call *s = stream(f);
  fz_run(f, 0);
  WorkItem *w = item(s, 0);
  complete(f, w->completion_token, NULL, 0);
  work_item__free_unpacked(w, NULL);
  fz_run(f, 0);
  char id[16];
  for (int i = 0; i < 400; i++) { /* PENDING: their first turn is not dispatched (the stream is closed) */
    snprintf(id, sizeof(id), "pend%03d", i);
    start_at(f, id, FUTURE);
  }
  fz_run(f, 0);
  int pages = 0, found = 0;
  char *last = NULL;
  for (;;) {
    ListInstanceIdsRequest r = LIST_INSTANCE_IDS_REQUEST__INIT;
    OrchestrationStatus running = ST(RUNNING);
    Google__Protobuf__StringValue lk;
    r.runtime_status = &running;
    r.n_runtime_status = 1;
    r.page_size = 10;
    r.last_instance_key = dts_sv(&lk, last);
    dts_call *c = fz_post(f, DTS_M_LIST_INSTANCE_IDS, &r.base);
    fz_run(f, 0);
    want_status(c, 0);
    ListInstanceIdsResponse *resp = list_instance_ids_response__unpack(NULL, c->body.n, c->body.p);
    pages++;
    found += (int)resp->n_instance_ids;
    dts_free(last);
    last = resp->last_instance_key ? dts_strdup(resp->last_instance_key->value) : NULL;
    list_instance_ids_response__free_unpacked(resp, NULL);
    if (last == NULL || pages > 100) break;
  }
  assert_int_equal(found, 1);
  assert_true(pages >= 4); /* 401 entries at 100 a page */
  fz_hub_close(f);
}

static void test_work_item_limits_are_refused_with_their_flag(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  GetWorkItemsRequest r = GET_WORK_ITEMS_REQUEST__INIT;
  r.max_concurrent_activity_work_items = 1000000;
  fz_post(f, DTS_M_GET_WORK_ITEMS, &r.base);
  dts_call *s = fz_owned(f, 0);
  fz_run(f, 0);
  assert_true(s->ended);
  assert_int_equal(s->status, DTS_ST_INVALID_ARGUMENT);
  assert_non_null(strstr(s->msg, "--max-stream-items"));
  fz_hub_close(f);
}

static void test_partial_completions_are_capped(void **state) {
  (void)state;
  fz_options o = {.limits = {.max_chunks = 3}};
  fz_hub *f = fz_hub_open(&o);
  dts_call *s;
  WorkItem *w = first_turn(f, "c", &s);
  dts_call *last = NULL;
  for (int i = 0; i < 4; i++) {
    OrchestratorResponse r = ORCHESTRATOR_RESPONSE__INIT;
    r.completion_token = w->completion_token;
    r.is_partial = true;
    last = fz_post(f, DTS_M_COMPLETE_ORCHESTRATOR, &r.base);
    fz_run(f, 0);
  }
  want_status(last, DTS_ST_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(last->msg, "--max-chunks"));
  assert_int_equal(status_of(f, "c"), ST(FAILED));
  work_item__free_unpacked(w, NULL);
  fz_hub_close(f);
}

/* A reader that does not read: once max_outbox_bytes wait on its stream,
 * nothing more is dispatched to it until it catches up. */
static void test_a_slow_reader_is_flow_controlled(void **state) {
  (void)state;
  fz_options o = {.limits = {.max_outbox_bytes = 2048}};
  fz_hub *f = fz_hub_open(&o);
  GetWorkItemsRequest r = GET_WORK_ITEMS_REQUEST__INIT;
  r.max_concurrent_orchestration_work_items = 1000;
  fz_post(f, DTS_M_GET_WORK_ITEMS, &r.base);
  dts_call *s = fz_owned(f, 0);
  s->slow = true;
  char id[16];
  for (int i = 0; i < 100; i++) {
    snprintf(id, sizeof(id), "slow%03d", i);
    start(f, id);
  }
  fz_run(f, 0);
  int first = fake_nitems(s);
  assert_true(first > 0 && first < 100);
  fake_deliver(s);
  fz_run(f, 0);
  assert_true(fake_nitems(s) > first);
  while (fake_nitems(s) < 100) {
    int before = fake_nitems(s);
    fake_deliver(s);
    fz_run(f, 0);
    assert_true(fake_nitems(s) > before);
  }
  fz_hub_close(f);
}

/* ---- tokens ------------------------------------------------------------------ */

static void test_completion_tokens_carry_128_random_bits(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  start(f, "k1");
  start(f, "k2");
  dts_call *s = stream(f);
  fz_run(f, 0);
  WorkItem *a = item(s, 0), *b = item(s, 1);
  assert_int_equal(strlen(a->completion_token), 33);
  for (int i = 1; i < 33; i++) assert_non_null(strchr("0123456789abcdef", a->completion_token[i]));
  assert_string_not_equal(a->completion_token + 1, b->completion_token + 1);
  work_item__free_unpacked(a, NULL);
  work_item__free_unpacked(b, NULL);
  fz_hub_close(f);
}

/* ---- recovery ---------------------------------------------------------------- */

/* A signal scheduled for later survives a restart and fires at its time
 * (start-up dropped it as a "damaged timer record" before). */
static void test_a_scheduled_signal_survives_a_restart(void **state) {
  (void)state;
  fz_hub *f = open_hub();
  int64_t soon = (int64_t)(dts_wall_ns() / 1000000000ULL) + 2;
  dts_call *sc = signal_at(f, "@counter@later", "r9", soon);
  fz_run(f, 0);
  want_status(sc, 0);
  fz_hub_close_keep(f);
  f = open_hub();
  dts_hub_stats st;
  dts_hub_get_stats(fz_hub_get(f), &st);
  assert_int_equal(st.unreadable, 0);
  dts_call *s = stream(f);
  fz_run(f, 0);
  assert_int_equal(fake_nitems(s), 0); /* not yet */
  /* the timer fires once it is due: wait for the wall clock, then run */
  while ((int64_t)(dts_wall_ns() / 1000000000ULL) <= soon) {
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL); /* the signal's time is in wall-clock seconds */
  }
  fz_run(f, 10ULL * 1000000000ULL);
  assert_int_equal(fake_nitems(s), 1);
  WorkItem *w = item(s, 0);
  assert_non_null(w->entity_request_v2);
  assert_string_equal(w->entity_request_v2->instance_id, "@counter@later");
  work_item__free_unpacked(w, NULL);
  fz_hub_close(f);
}

static void test_unreadable_records_are_counted_not_skipped_quietly(void **state) {
  (void)state;
  fz_store();
  fz_put_raw((const uint8_t *)"T@c@1\0r\0\0\0\0\0", 13, (const uint8_t *)"\xff\xff", 2); /* not an event */
  fz_put_raw((const uint8_t *)"Ebad", 4, (const uint8_t *)"\x0a\x01x", 3);              /* names another id */
  fz_put_raw((const uint8_t *)"Axx", 3, (const uint8_t *)"", 0);                         /* not a work item key */
  fz_hub *f = open_hub();
  dts_hub_stats st;
  dts_hub_get_stats(fz_hub_get(f), &st);
  assert_int_equal(st.unreadable, 3);
  fz_hub_close(f);
}

/* ---- storage faults ------------------------------------------------------- */

/* Flips a byte where `marker` is stored in one of the store's table files
 * (LevelDB then reports the block's checksum as broken).  True if found. */
static bool corrupt_table(const char *dir, const char *marker) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *e;
  bool done = false;
  while (!done && (e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 4, ".ldb") != 0) continue;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    char *buf = dts_malloc((size_t)len);
    fseek(fp, 0, SEEK_SET);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    char *at = memmem(buf, (size_t)len, marker, strlen(marker));
    if (at != NULL) {
      fseek(fp, (long)(at - buf) + 4, SEEK_SET);
      fputc(at[4] ^ 0x55, fp);
      done = true;
    }
    fclose(fp);
    dts_free(buf);
  }
  closedir(d);
  return done;
}

/* A record that cannot be read is not "absent": GetInstance answers
 * DATA_LOSS with the store's message, and StartInstance does not create a
 * new instance over it.  The rest of the hub is served. */
static void test_an_unreadable_record_is_reported_not_taken_for_absent(void **state) {
  (void)state;
  fz_options o = {.max_payload = 1 << 20};
  fz_hub *f = fz_hub_open(&o);
  char *input = dts_malloc(20001);
  unsigned x = 12345;
  memcpy(input, "\"VICTIM-MARKER-", 15);
  for (int i = 15; i < 19999; i++) { /* incompressible: stored as it is, in blocks of its own */
    x = x * 1103515245u + 12345u;
    input[i] = (char)('a' + (x >> 16) % 26);
  }
  input[19999] = '"';
  input[20000] = '\0';
  CreateInstanceRequest r = CREATE_INSTANCE_REQUEST__INIT;
  Google__Protobuf__StringValue in;
  r.instance_id = "victim";
  r.name = "orch";
  r.input = dts_sv(&in, input);
  dts_call *a = fz_post(f, DTS_M_START_INSTANCE, &r.base);
  dts_call *b = start(f, "zfine"); /* after "victim" in key order: in a block of its own */
  fz_run(f, 0);
  want_status(a, 0);
  want_status(b, 0);
  dts_free(input);
  fz_hub_close_keep(f);
  const char *dir = fz_store_reopen(); /* the log becomes a table file */
  assert_true(corrupt_table(dir, "VICTIM-MARKER-"));
  fz_store_reopen();
  f = fz_hub_open(&o); /* start-up cannot read it: counted, and the hub serves */
  dts_hub_stats hs;
  dts_hub_get_stats(fz_hub_get(f), &hs);
  assert_true(hs.unreadable >= 1);
  assert_int_equal(status_of(f, "zfine"), ST(PENDING));
  GetInstanceRequest g = GET_INSTANCE_REQUEST__INIT;
  g.instance_id = "victim";
  dts_call *gc = fz_post(f, DTS_M_GET_INSTANCE, &g.base);
  dts_call *sc = start(f, "victim");
  fz_run(f, 0);
  want_status(gc, DTS_ST_DATA_LOSS);
  assert_non_null(strstr(gc->msg, "victim"));
  assert_non_null(strstr(gc->msg, "orruption"));
  want_status(sc, DTS_ST_DATA_LOSS); /* never created over it */
  fz_hub_close(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_two_scheduled_signals_with_one_request_id_in_one_turn),
      cmocka_unit_test(test_two_timers_with_one_id_in_one_completion),
      cmocka_unit_test(test_purge_in_the_turn_that_finishes_it),
      cmocka_unit_test(test_wipe_in_the_turn_of_a_completion),
      cmocka_unit_test(test_duplicate_task_id_leaves_one_work_item),
      cmocka_unit_test(test_ids_longer_than_a_key_are_refused_not_truncated),
      cmocka_unit_test(test_rewound_execution_id_is_validated),
      cmocka_unit_test(test_rewind_action_without_a_pending_rewind_is_refused),
      cmocka_unit_test(test_far_future_times_do_not_fire_at_once),
      cmocka_unit_test(test_completions_after_the_stream_closed_are_applied),
      cmocka_unit_test(test_a_late_completion_after_the_item_was_leased_again_is_stale),
      cmocka_unit_test(test_purge_by_filter_goes_in_chunks),
      cmocka_unit_test(test_list_ids_pages_stay_within_the_scan_budget),
      cmocka_unit_test(test_work_item_limits_are_refused_with_their_flag),
      cmocka_unit_test(test_partial_completions_are_capped),
      cmocka_unit_test(test_a_slow_reader_is_flow_controlled),
      cmocka_unit_test(test_completion_tokens_carry_128_random_bits),
      cmocka_unit_test(test_a_scheduled_signal_survives_a_restart),
      cmocka_unit_test(test_unreadable_records_are_counted_not_skipped_quietly),
      cmocka_unit_test(test_an_unreadable_record_is_reported_not_taken_for_absent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
