/* test_hub.c -- the task hub actor's orchestration state machine, without
 * a network: a fake dts_call records answers and stream items; the real
 * runtime, storage thread and LevelDB (in a temp dir) run underneath.
 * Runs under TSan too (hub actor, storage thread and timer thread race). */
#define _GNU_SOURCE /* memmem */
#include "actors/hub.h"
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "tests/fakecall.h"
#include "tests/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST(x) ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_##x
#define EV(x) HISTORY_EVENT__EVENT_TYPE_##x

/* ======================================================================== */
/* fake calls (tests/fakecall.h)                                            */

static bool answered(dts_call *c) { return fake_answered(c); }
static int nitems(dts_call *c) { return fake_nitems(c); }
static void sent(dts_call *c, unsigned kind) {
  DTS_ASSERT(kind == DTS_CALL_CLOSED);
  fake_close(c);
}
static dts_call *call_new(dts_actor *owner) { return fake_call_new(owner); }

/* ======================================================================== */
/* fixture                                                                  */

/* Which commit path the hubs use: the storage thread (first run of every
 * test) or inline, from the hub's own thread (second run). */
static bool inline_commit;
static uint64_t passivate_ns; /* 0: the fixture's hubs keep idle instances */

typedef struct fx {
  char dir[64];
  dts_sched *sched;
  dts_timers *timers;
  dts_store *store;
  dts_hub *hub;
} fx;

static void open_all(fx *f) {
  char err[256];
  f->sched = dts_sched_create(2);
  f->timers = dts_timers_create();
  assert_int_equal(dts_store_open(f->dir, DTS_DURABILITY_OS, &f->store, err, sizeof(err)), DTS_OK);
  dts_hub_config hc = {.name = "default", .call_ops = &fake_call_ops, .sched = f->sched, .timers = f->timers, .store = f->store,
                       .max_payload = 1 << 20, .default_max_orch = 10, .default_max_act = 10,
                       .abandon_delay_ns = 50000000ULL, .ping_interval_ns = 30000000000ULL,
                       .inline_commit = inline_commit, .passivate_after_ns = passivate_ns,
                       .purge_interval_ns = passivate_ns ? 20000000ULL : 0};
  assert_int_equal(dts_hub_create(&hc, &f->hub), DTS_OK);
}

static void close_all(fx *f) {
  dts_hub_shutdown(f->hub);
  assert_true(TU_WAIT_UNTIL(dts_hub_quiesced(f->hub), 10));
  /* as dtsd does: the last commits answered, then no actor runs while the
   * store closes (server/dtsd.c, teardown) */
  assert_true(TU_WAIT_UNTIL(!dts_store_busy(f->store), 10));
  dts_timers_destroy(f->timers);
  dts_sched_destroy(f->sched);
  dts_store_close(f->store);
  dts_hub_release(f->hub);
}

static int setup(void **state) {
  fx *f = dts_calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/dtsd-hubtest-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  strcat(f->dir, "/db");
  open_all(f);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  close_all(f);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strlen(f->dir) - 3), f->dir);
  assert_int_equal(system(cmd), 0);
  dts_free(f);
  dts_pool_thread_flush();
  assert_int_equal(atomic_load(&fake_live_calls), 0); /* the hub let go of every call */
  return 0;
}

/* Reopens the hub with idle instances and entities leaving memory after
 * 1 ms (the test sets passivate_ns back to 0 at its end). */
static void reopen_passivating(fx *f) {
  close_all(f);
  passivate_ns = 1000000;
  open_all(f);
}

/* Packs and unpacks `m`, so the hub gets a heap message, as from the wire. */
static dts_call *post(fx *f, dts_method meth, const ProtobufCMessage *m) {
  dts_buf b = dts_pb_pack(m);
  ProtobufCMessage *req = protobuf_c_message_unpack(m->descriptor, NULL, b.n, b.p);
  dts_buf_free(&b);
  dts_call *c = call_new(dts_hub_actor(f->hub));
  dts_call_ref(c); /* the hub's */
  dts_hub_post(f->hub, meth, c, req);
  return c;
}

static dts_call *rpc(fx *f, dts_method meth, const ProtobufCMessage *m, int want_status) {
  dts_call *c = post(f, meth, m);
  assert_true(TU_WAIT_UNTIL(answered(c), 10));
  if (c->status != want_status) fail_msg("status %d (%s), wanted %d", c->status, c->msg, want_status);
  return c;
}

static char *start(fx *f, const char *id, const char *name) {
  CreateInstanceRequest r = CREATE_INSTANCE_REQUEST__INIT;
  r.instance_id = (char *)id;
  r.name = (char *)name;
  dts_call *c = rpc(f, DTS_M_START_INSTANCE, &r.base, 0);
  CreateInstanceResponse *resp = create_instance_response__unpack(NULL, c->body.n, c->body.p);
  char *out = dts_strdup(resp->instance_id);
  create_instance_response__free_unpacked(resp, NULL);
  dts_call_unref(c);
  return out;
}

static OrchestrationState *get(fx *f, const char *id) {
  GetInstanceRequest r = GET_INSTANCE_REQUEST__INIT;
  r.instance_id = (char *)id;
  r.get_inputs_and_outputs = true;
  dts_call *c = rpc(f, DTS_M_GET_INSTANCE, &r.base, 0);
  GetInstanceResponse *resp = get_instance_response__unpack(NULL, c->body.n, c->body.p);
  dts_call_unref(c);
  OrchestrationState *st = NULL;
  if (resp->exists) {
    st = resp->orchestration_state;
    resp->orchestration_state = NULL;
  }
  get_instance_response__free_unpacked(resp, NULL);
  return st;
}

static dts_call *open_stream(fx *f) {
  GetWorkItemsRequest r = GET_WORK_ITEMS_REQUEST__INIT;
  return post(f, DTS_M_GET_WORK_ITEMS, &r.base);
}

/* A stream that may hold `n` orchestration work items at once. */
static dts_call *open_wide_stream(fx *f, int n) {
  GetWorkItemsRequest r = GET_WORK_ITEMS_REQUEST__INIT;
  r.max_concurrent_orchestration_work_items = n;
  return post(f, DTS_M_GET_WORK_ITEMS, &r.base);
}

static void close_stream(fx *f, dts_call *s) {
  (void)f;
  sent(s, DTS_CALL_CLOSED);
}

/* The i-th item sent on stream s (waits for it). */
static WorkItem *item(dts_call *s, int i) {
  if (!TU_WAIT_UNTIL(nitems(s) > i, 10)) fail_msg("no work item #%d (have %d)", i, nitems(s));
  pthread_mutex_lock(&s->mu);
  WorkItem *w = work_item__unpack(NULL, s->items[i].n, s->items[i].p);
  pthread_mutex_unlock(&s->mu);
  assert_non_null(w);
  return w;
}

static void complete_orch(fx *f, WorkItem *w, OrchestratorAction **acts, size_t n) {
  OrchestratorResponse r = ORCHESTRATOR_RESPONSE__INIT;
  r.instance_id = w->orchestrator_request->instance_id;
  r.completion_token = w->completion_token;
  r.actions = acts;
  r.n_actions = n;
  dts_call_unref(rpc(f, DTS_M_COMPLETE_ORCHESTRATOR, &r.base, 0));
}

static OrchestratorAction *act_schedule(int id, const char *name, ScheduleTaskAction *st, OrchestratorAction *a) {
  schedule_task_action__init(st);
  st->name = (char *)name;
  orchestrator_action__init(a);
  a->id = id;
  a->orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_SCHEDULE_TASK;
  a->schedule_task = st;
  return a;
}

static OrchestratorAction *act_complete(const char *result, int status, CompleteOrchestrationAction *ca,
                                        Google__Protobuf__StringValue *sv, OrchestratorAction *a) {
  complete_orchestration_action__init(ca);
  ca->orchestration_status = status;
  ca->result = dts_sv(sv, result);
  orchestrator_action__init(a);
  a->id = 99;
  a->orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_COMPLETE_ORCHESTRATION;
  a->complete_orchestration = ca;
  return a;
}

/* ======================================================================== */
/* tests                                                                    */

static void test_activity_round_trip_builds_history(void **state) {
  fx *f = *state;
  char *id = start(f, "i1", "orch");
  OrchestrationState *st = get(f, id);
  assert_int_equal(st->orchestration_status, ST(PENDING));
  orchestration_state__free_unpacked(st, NULL);

  dts_call *s = open_stream(f);
  WorkItem *w = item(s, 0);
  assert_int_equal(w->request_case, WORK_ITEM__REQUEST_ORCHESTRATOR_REQUEST);
  OrchestratorRequest *or = w->orchestrator_request;
  assert_int_equal(or->n_past_events, 0);
  assert_int_equal(or->n_new_events, 2);
  assert_int_equal(or->new_events[0]->event_type_case, EV(ORCHESTRATOR_STARTED));
  assert_int_equal(or->new_events[1]->event_type_case, EV(EXECUTION_STARTED));
  assert_int_equal(or->new_events[1]->event_id, -1);
  assert_non_null(or->entity_parameters); /* always set */
  assert_non_null(or->execution_id);
  assert_int_equal(strlen(or->execution_id->value), 32); /* as DTS: 32 lowercase hex digits */
  assert_int_equal(strspn(or->execution_id->value, "0123456789abcdef"), 32);

  ScheduleTaskAction sta;
  OrchestratorAction a1, *acts[1] = {act_schedule(1, "act", &sta, &a1)};
  complete_orch(f, w, acts, 1);
  work_item__free_unpacked(w, NULL);

  w = item(s, 1);
  assert_int_equal(w->request_case, WORK_ITEM__REQUEST_ACTIVITY_REQUEST);
  assert_int_equal(w->activity_request->task_id, 1);
  assert_string_equal(w->activity_request->name, "act");
  ActivityResponse ar = ACTIVITY_RESPONSE__INIT;
  Google__Protobuf__StringValue res;
  ar.instance_id = (char *)id;
  ar.task_id = 1;
  ar.result = dts_sv(&res, "\"r1\"");
  ar.completion_token = w->completion_token;
  dts_call_unref(rpc(f, DTS_M_COMPLETE_ACTIVITY, &ar.base, 0));
  /* a duplicate of the same completion changes nothing and still gets OK */
  dts_call_unref(rpc(f, DTS_M_COMPLETE_ACTIVITY, &ar.base, 0));
  work_item__free_unpacked(w, NULL);

  w = item(s, 2);
  or = w->orchestrator_request;
  assert_int_equal(or->n_past_events, 3); /* OS, ES, TaskScheduled: no OrchestratorCompleted, as DTS */
  assert_int_equal(or->past_events[2]->event_type_case, EV(TASK_SCHEDULED));
  assert_int_equal(or->past_events[2]->event_id, 1);
  assert_int_equal(or->n_new_events, 2);
  assert_int_equal(or->new_events[0]->event_type_case, EV(ORCHESTRATOR_STARTED));
  assert_int_equal(or->new_events[1]->event_type_case, EV(TASK_COMPLETED));
  assert_int_equal(or->new_events[1]->task_completed->task_scheduled_id, 1);
  assert_string_equal(or->new_events[1]->task_completed->result->value, "\"r1\"");

  CompleteOrchestrationAction ca;
  Google__Protobuf__StringValue sv;
  OrchestratorAction a2, *acts2[1] = {act_complete("\"done\"", ST(COMPLETED), &ca, &sv, &a2)};
  complete_orch(f, w, acts2, 1);
  /* the same completion again: stale token, OK, no change */
  complete_orch(f, w, acts2, 1);
  work_item__free_unpacked(w, NULL);

  st = get(f, id);
  assert_int_equal(st->orchestration_status, ST(COMPLETED));
  assert_string_equal(st->output->value, "\"done\"");
  assert_non_null(st->completed_timestamp);
  orchestration_state__free_unpacked(st, NULL);
  dts_hub_stats hs;
  dts_hub_get_stats(f->hub, &hs);
  assert_int_equal(hs.stale_completions, 2);
  assert_int_equal(nitems(s), 3); /* nothing more was dispatched */
  close_stream(f, s);
  dts_call_unref(s);
  dts_free(id);
}

static void test_one_outstanding_item_per_instance(void **state) {
  fx *f = *state;
  char *id = start(f, "i2", "orch");
  dts_call *s = open_stream(f);
  WorkItem *w = item(s, 0);
  RaiseEventRequest re = RAISE_EVENT_REQUEST__INIT;
  re.instance_id = id;
  re.name = "e";
  dts_call_unref(rpc(f, DTS_M_RAISE_EVENT, &re.base, 0));
  dts_call_unref(rpc(f, DTS_M_RAISE_EVENT, &re.base, 0));
  /* leased: no second item for the same instance until the first completes */
  OrchestrationState *st = get(f, id); /* a read after the raises: ordered after their commits */
  orchestration_state__free_unpacked(st, NULL);
  assert_int_equal(nitems(s), 1);
  complete_orch(f, w, NULL, 0);
  work_item__free_unpacked(w, NULL);
  w = item(s, 1);
  assert_int_equal(w->orchestrator_request->n_new_events, 3); /* OS + 2 events */
  assert_int_equal(w->orchestrator_request->new_events[1]->event_type_case, EV(EVENT_RAISED));
  work_item__free_unpacked(w, NULL);
  close_stream(f, s);
  dts_call_unref(s);
  dts_free(id);
}

static void test_stream_end_returns_leased_items(void **state) {
  fx *f = *state;
  char *id = start(f, "i3", "orch");
  dts_call *s1 = open_stream(f);
  WorkItem *w = item(s1, 0);
  work_item__free_unpacked(w, NULL);
  close_stream(f, s1);
  dts_call *s2 = open_stream(f);
  w = item(s2, 0); /* the same turn again, to the new stream */
  assert_string_equal(w->orchestrator_request->instance_id, id);
  assert_int_equal(w->orchestrator_request->n_new_events, 2);
  /* the first stream's token is now stale */
  work_item__free_unpacked(w, NULL);
  close_stream(f, s2);
  dts_call_unref(s1);
  dts_call_unref(s2);
  dts_free(id);
}

static void test_abandon_redelivers_after_delay(void **state) {
  fx *f = *state;
  char *id = start(f, "i4", "orch");
  dts_call *s = open_stream(f);
  WorkItem *w = item(s, 0);
  AbandonOrchestrationTaskRequest ab = ABANDON_ORCHESTRATION_TASK_REQUEST__INIT;
  ab.completion_token = w->completion_token;
  double t0 = tu_now();
  dts_call_unref(rpc(f, DTS_M_ABANDON_ORCHESTRATOR, &ab.base, 0));
  work_item__free_unpacked(w, NULL);
  w = item(s, 1);
  assert_true(tu_now() - t0 >= 0.045); /* not before the 50 ms delay */
  assert_int_equal(w->orchestrator_request->n_new_events, 2);
  work_item__free_unpacked(w, NULL);
  close_stream(f, s);
  dts_call_unref(s);
  dts_free(id);
}

static void test_waiters_are_answered_and_freed(void **state) {
  fx *f = *state;
  char *id = start(f, "i5", "orch");
  GetInstanceRequest g = GET_INSTANCE_REQUEST__INIT;
  g.instance_id = id;
  dts_call *wc = post(f, DTS_M_WAIT_COMPLETION, &g.base);
  dts_call *gone = post(f, DTS_M_WAIT_COMPLETION, &g.base);
  dts_call *ws = post(f, DTS_M_WAIT_START, &g.base);
  sent(gone, DTS_CALL_CLOSED); /* that client went away */
  dts_call *s = open_stream(f);
  WorkItem *w = item(s, 0);
  assert_false(answered(wc));
  complete_orch(f, w, NULL, 0); /* now RUNNING */
  assert_true(TU_WAIT_UNTIL(answered(ws), 10));
  assert_false(answered(wc));
  work_item__free_unpacked(w, NULL);
  TerminateRequest tr = TERMINATE_REQUEST__INIT;
  tr.instance_id = id;
  dts_call_unref(rpc(f, DTS_M_TERMINATE, &tr.base, 0));
  w = item(s, 1);
  assert_int_equal(w->orchestrator_request->new_events[1]->event_type_case, EV(EXECUTION_TERMINATED));
  CompleteOrchestrationAction ca;
  Google__Protobuf__StringValue sv;
  OrchestratorAction a, *acts[1] = {act_complete("null", ST(TERMINATED), &ca, &sv, &a)};
  complete_orch(f, w, acts, 1);
  work_item__free_unpacked(w, NULL);
  assert_true(TU_WAIT_UNTIL(answered(wc), 10));
  GetInstanceResponse *r = get_instance_response__unpack(NULL, wc->body.n, wc->body.p);
  assert_int_equal(r->orchestration_state->orchestration_status, ST(TERMINATED));
  get_instance_response__free_unpacked(r, NULL);
  assert_false(answered(gone));
  close_stream(f, s);
  dts_call_unref(s);
  dts_call_unref(wc);
  dts_call_unref(ws);
  dts_call_unref(gone);
  dts_free(id);
}

static void test_continue_as_new_starts_a_new_execution(void **state) {
  fx *f = *state;
  char *id = start(f, "i6", "orch");
  dts_call *s = open_stream(f);
  WorkItem *w = item(s, 0);
  char *exec1 = dts_strdup(w->orchestrator_request->execution_id->value);
  /* carry one event over */
  HistoryEvent carry = HISTORY_EVENT__INIT;
  EventRaisedEvent er = EVENT_RAISED_EVENT__INIT;
  er.name = "kept";
  carry.event_id = -1;
  carry.event_type_case = EV(EVENT_RAISED);
  carry.event_raised = &er;
  HistoryEvent *carried[1] = {&carry};
  CompleteOrchestrationAction ca;
  Google__Protobuf__StringValue sv;
  OrchestratorAction a, *acts[1] = {act_complete("7", ST(CONTINUED_AS_NEW), &ca, &sv, &a)};
  ca.carryover_events = carried;
  ca.n_carryover_events = 1;
  complete_orch(f, w, acts, 1);
  work_item__free_unpacked(w, NULL);
  w = item(s, 1);
  OrchestratorRequest *or = w->orchestrator_request;
  assert_string_not_equal(or->execution_id->value, exec1);
  assert_int_equal(or->n_past_events, 0);
  assert_int_equal(or->n_new_events, 3);
  assert_int_equal(or->new_events[1]->event_type_case, EV(EXECUTION_STARTED));
  assert_string_equal(or->new_events[1]->execution_started->input->value, "7");
  assert_int_equal(or->new_events[2]->event_type_case, EV(EVENT_RAISED));
  OrchestrationState *st = get(f, id);
  assert_int_equal(st->orchestration_status, ST(RUNNING)); /* never CONTINUED_AS_NEW */
  orchestration_state__free_unpacked(st, NULL);
  work_item__free_unpacked(w, NULL);
  dts_free(exec1);
  close_stream(f, s);
  dts_call_unref(s);
  dts_free(id);
}

static void test_restart_resumes_activities_and_timers(void **state) {
  fx *f = *state;
  char *id = start(f, "i7", "orch");
  dts_call *s = open_stream(f);
  WorkItem *w = item(s, 0);
  /* schedule an activity and a timer 300 ms out */
  ScheduleTaskAction sta;
  OrchestratorAction a1;
  act_schedule(1, "act", &sta, &a1);
  CreateTimerAction ct = CREATE_TIMER_ACTION__INIT;
  Google__Protobuf__Timestamp fire;
  int64_t fire_ns = (int64_t)dts_wall_ns() + 300000000LL;
  ct.fire_at = dts_ts_from_ns(&fire, fire_ns);
  OrchestratorAction a2 = ORCHESTRATOR_ACTION__INIT;
  a2.id = 2;
  a2.orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_CREATE_TIMER;
  a2.create_timer = &ct;
  OrchestratorAction *acts[2] = {&a1, &a2};
  complete_orch(f, w, acts, 2);
  work_item__free_unpacked(w, NULL);
  w = item(s, 1); /* the activity, leased but never completed */
  assert_int_equal(w->request_case, WORK_ITEM__REQUEST_ACTIVITY_REQUEST);
  work_item__free_unpacked(w, NULL);

  /* stop everything and start again over the same store */
  close_stream(f, s);
  dts_call_unref(s);
  close_all(f);
  open_all(f);
  s = open_stream(f);
  bool saw_act = false, saw_timer = false;
  for (int i = 0; i < 2; i++) {
    w = item(s, i);
    if (w->request_case == WORK_ITEM__REQUEST_ACTIVITY_REQUEST) {
      saw_act = true;
      assert_int_equal(w->activity_request->task_id, 1);
    } else {
      OrchestratorRequest *or = w->orchestrator_request;
      assert_int_equal(or->new_events[1]->event_type_case, EV(TIMER_FIRED));
      assert_int_equal(or->new_events[1]->timer_fired->timer_id, 2);
      assert_true((int64_t)dts_wall_ns() >= fire_ns); /* not early */
      assert_int_equal(or->n_past_events, 4);        /* OS ES TS TC (no OrchestratorCompleted, as DTS) */
      saw_timer = true;
    }
    work_item__free_unpacked(w, NULL);
  }
  assert_true(saw_act && saw_timer);
  close_stream(f, s);
  dts_call_unref(s);
  dts_free(id);
}

/* Timers already due when the hub loads fire while load() is still building
 * state on this thread: the hub must not run them until it has finished
 * (TSan reports the overlap; the counts below catch a lost timer). */
static void test_timers_due_at_load_fire_after_load(void **state) {
  fx *f = *state;
  enum { N = 200 };
  dts_call *s = open_wide_stream(f, N);
  char name[32];
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "due-%03d", i);
    dts_free(start(f, name, "orch"));
  }
  /* due soon after the last completion; any that fire before the restart
   * are in the inbox and still come back as TimerFired after it */
  int64_t fire_ns = (int64_t)dts_wall_ns() + 300000000LL;
  for (int i = 0; i < N; i++) {
    WorkItem *w = item(s, i);
    CreateTimerAction ct = CREATE_TIMER_ACTION__INIT;
    Google__Protobuf__Timestamp fire;
    ct.fire_at = dts_ts_from_ns(&fire, fire_ns);
    OrchestratorAction a = ORCHESTRATOR_ACTION__INIT;
    a.id = 1;
    a.orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_CREATE_TIMER;
    a.create_timer = &ct;
    OrchestratorAction *acts[1] = {&a};
    complete_orch(f, w, acts, 1);
    work_item__free_unpacked(w, NULL);
  }
  close_stream(f, s);
  dts_call_unref(s);
  close_all(f);
  assert_true(TU_WAIT_UNTIL((int64_t)dts_wall_ns() > fire_ns, 5));
  open_all(f);
  s = open_wide_stream(f, N);
  int fired = 0;
  for (int i = 0; i < N; i++) {
    WorkItem *w = item(s, i);
    OrchestratorRequest *or = w->orchestrator_request;
    for (size_t k = 0; k < or->n_new_events; k++)
      if (or->new_events[k]->event_type_case == EV(TIMER_FIRED)) fired++;
    work_item__free_unpacked(w, NULL);
  }
  assert_int_equal(fired, N);
  close_stream(f, s);
  dts_call_unref(s);
}

/* ---- finished instances leave memory and come back from the store ---- */

static long mem_instances(fx *f) {
  dts_hub_stats st;
  dts_hub_get_stats(f->hub, &st);
  return st.instances;
}

typedef struct keycount {
  const char *needle; /* count keys containing it (NULL: all) */
  long n;
} keycount;

static bool count_key(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v;
  (void)vlen;
  keycount *kc = c;
  if (kc->needle == NULL || memmem(k, klen, kc->needle, strlen(kc->needle)) != NULL) kc->n++;
  return true;
}

static bool strip_key(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v;
  (void)vlen;
  dts_batch_del(c, k, klen);
  return true;
}

/* Keys of type `type` in hub "default" ("default\0<type>..."), containing `needle`. */
static long store_keys(fx *f, char type, const char *needle) {
  char pre[9] = "default";
  pre[8] = type;
  keycount kc = {needle, 0};
  assert_int_equal(dts_store_scan(f->store, pre, 9, count_key, &kc), DTS_OK);
  return kc.n;
}

/* Runs one orchestration on stream s from item `*next` on: with an
 * activity first when `with_activity`, then completes with `out`. */
static void run_one(fx *f, dts_call *s, int *next, bool with_activity, const char *out) {
  WorkItem *w = item(s, (*next)++);
  if (with_activity) {
    ScheduleTaskAction sta;
    OrchestratorAction a1, *acts[1] = {act_schedule(1, "act", &sta, &a1)};
    complete_orch(f, w, acts, 1);
    work_item__free_unpacked(w, NULL);
    w = item(s, (*next)++);
    ActivityResponse ar = ACTIVITY_RESPONSE__INIT;
    ar.instance_id = w->activity_request->orchestration_instance->instance_id;
    ar.task_id = 1;
    ar.completion_token = w->completion_token;
    dts_call_unref(rpc(f, DTS_M_COMPLETE_ACTIVITY, &ar.base, 0));
    work_item__free_unpacked(w, NULL);
    w = item(s, (*next)++);
  }
  CompleteOrchestrationAction ca;
  Google__Protobuf__StringValue sv;
  OrchestratorAction a2, *fin[1] = {act_complete(out, ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED, &ca, &sv, &a2)};
  complete_orch(f, w, fin, 1);
  work_item__free_unpacked(w, NULL);
}

static void test_finished_instances_leave_memory_and_come_back(void **state) {
  fx *f = *state;
  dts_call *s = open_stream(f);
  int next = 0;
  dts_free(start(f, "p1", "orch"));
  run_one(f, s, &next, true, "\"v1\"");
  assert_true(TU_WAIT_UNTIL(mem_instances(f) == 0, 10)); /* evicted once idle */
  long n1 = store_keys(f, 'H', "p1");
  assert_true(n1 >= 6);
  OrchestrationState *st = get(f, "p1"); /* read back from the store */
  assert_non_null(st);
  assert_int_equal(st->orchestration_status, ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED);
  assert_string_equal(st->output->value, "\"v1\"");
  orchestration_state__free_unpacked(st, NULL);
  assert_true(TU_WAIT_UNTIL(mem_instances(f) == 0, 10));

  /* reusing the id of an evicted instance replaces all of its history */
  dts_free(start(f, "p1", "orch"));
  run_one(f, s, &next, false, "\"v2\"");
  dts_free(start(f, "p2", "orch"));
  run_one(f, s, &next, false, "\"v2\"");
  assert_true(TU_WAIT_UNTIL(mem_instances(f) == 0, 10));
  assert_int_equal(store_keys(f, 'H', "p1"), store_keys(f, 'H', "p2"));
  assert_true(store_keys(f, 'H', "p1") < n1);
  assert_int_equal(store_keys(f, 'S', "p1"), 1); /* one index entry each */
  assert_int_equal(store_keys(f, 'C', "p1"), 1);

  /* a restart loads no finished instance; queries still find them */
  close_stream(f, s);
  dts_call_unref(s);
  close_all(f);
  open_all(f);
  assert_int_equal(mem_instances(f), 0);
  QueryInstancesRequest qr = QUERY_INSTANCES_REQUEST__INIT;
  InstanceQuery q = INSTANCE_QUERY__INIT;
  OrchestrationStatus want = ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED;
  q.runtime_status = &want;
  q.n_runtime_status = 1;
  q.max_instance_count = 1;
  qr.query = &q;
  dts_call *c = rpc(f, DTS_M_QUERY_INSTANCES, &qr.base, 0);
  QueryInstancesResponse *resp = query_instances_response__unpack(NULL, c->body.n, c->body.p);
  assert_int_equal(resp->n_orchestration_state, 1);
  assert_string_equal(resp->orchestration_state[0]->instance_id, "p1"); /* created first */
  assert_non_null(resp->continuation_token);
  Google__Protobuf__StringValue tok;
  q.continuation_token = dts_sv(&tok, resp->continuation_token->value);
  dts_call *c2 = rpc(f, DTS_M_QUERY_INSTANCES, &qr.base, 0);
  QueryInstancesResponse *resp2 = query_instances_response__unpack(NULL, c2->body.n, c2->body.p);
  assert_int_equal(resp2->n_orchestration_state, 1);
  assert_string_equal(resp2->orchestration_state[0]->instance_id, "p2");
  assert_null(resp2->continuation_token);
  query_instances_response__free_unpacked(resp, NULL);
  query_instances_response__free_unpacked(resp2, NULL);
  dts_call_unref(c);
  dts_call_unref(c2);

  /* purge of an evicted instance removes every key it had */
  PurgeInstancesRequest pr = PURGE_INSTANCES_REQUEST__INIT;
  pr.request_case = PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_ID;
  pr.instance_id = "p1";
  c = rpc(f, DTS_M_PURGE_INSTANCES, &pr.base, 0);
  PurgeInstancesResponse *presp = purge_instances_response__unpack(NULL, c->body.n, c->body.p);
  assert_int_equal(presp->deleted_instance_count, 1);
  purge_instances_response__free_unpacked(presp, NULL);
  dts_call_unref(c);
  assert_null(get(f, "p1"));
  for (const char *t = "IHNSC"; *t; t++) assert_int_equal(store_keys(f, *t, "p1"), 0);
  assert_non_null((st = get(f, "p2")));
  orchestration_state__free_unpacked(st, NULL);
}

/* Unfinished instances with nothing to do leave memory and come back on
 * their next event: an activity result, a raised event. */
static void test_idle_running_instances_leave_memory_and_resume(void **state) {
  fx *f = *state;
  reopen_passivating(f);
  dts_call *s = open_wide_stream(f, 100);
  dts_free(start(f, "idle-1", "orch"));
  WorkItem *w = item(s, 0);
  ScheduleTaskAction sta;
  OrchestratorAction a1, *acts[1] = {act_schedule(1, "act", &sta, &a1)};
  complete_orch(f, w, acts, 1);
  work_item__free_unpacked(w, NULL);
  WorkItem *act = item(s, 1); /* the activity stays out while the instance is idle */
  assert_true(TU_WAIT_UNTIL(mem_instances(f) == 0, 10));

  ActivityResponse ar = ACTIVITY_RESPONSE__INIT;
  Google__Protobuf__StringValue res;
  ar.instance_id = "idle-1";
  ar.task_id = 1;
  ar.result = dts_sv(&res, "\"r\"");
  ar.completion_token = act->completion_token;
  dts_call_unref(rpc(f, DTS_M_COMPLETE_ACTIVITY, &ar.base, 0));
  work_item__free_unpacked(act, NULL);
  w = item(s, 2); /* read back: the whole history, then the result */
  OrchestratorRequest *or = w->orchestrator_request;
  assert_string_equal(or->instance_id, "idle-1");
  assert_int_equal(or->n_past_events, 3); /* OS ES TaskScheduled */
  assert_int_equal(or->past_events[2]->event_type_case, EV(TASK_SCHEDULED));
  assert_int_equal(or->new_events[1]->event_type_case, EV(TASK_COMPLETED));
  CompleteOrchestrationAction ca;
  Google__Protobuf__StringValue sv;
  OrchestratorAction a2, *fin[1] = {act_complete("\"done\"", ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED, &ca, &sv, &a2)};
  complete_orch(f, w, fin, 1);
  work_item__free_unpacked(w, NULL);

  /* waiting on an event: listed while out of memory, resumed by the event */
  dts_free(start(f, "idle-2", "orch"));
  w = item(s, 3);
  complete_orch(f, w, NULL, 0);
  work_item__free_unpacked(w, NULL);
  assert_true(TU_WAIT_UNTIL(mem_instances(f) == 0, 10));
  ListInstanceIdsRequest lr = LIST_INSTANCE_IDS_REQUEST__INIT;
  dts_call *c = rpc(f, DTS_M_LIST_INSTANCE_IDS, &lr.base, 0);
  ListInstanceIdsResponse *lresp = list_instance_ids_response__unpack(NULL, c->body.n, c->body.p);
  assert_int_equal(lresp->n_instance_ids, 2);
  assert_string_equal(lresp->instance_ids[0], "idle-2"); /* unfinished first */
  assert_string_equal(lresp->instance_ids[1], "idle-1");
  list_instance_ids_response__free_unpacked(lresp, NULL);
  dts_call_unref(c);
  RaiseEventRequest re = RAISE_EVENT_REQUEST__INIT;
  Google__Protobuf__StringValue in;
  re.instance_id = "idle-2";
  re.name = "go";
  re.input = dts_sv(&in, "7");
  dts_call_unref(rpc(f, DTS_M_RAISE_EVENT, &re.base, 0));
  w = item(s, 4);
  or = w->orchestrator_request;
  assert_string_equal(or->instance_id, "idle-2");
  assert_int_equal(or->n_past_events, 2); /* OS ES */
  assert_int_equal(or->new_events[1]->event_type_case, EV(EVENT_RAISED));
  OrchestratorAction a3, *fin2[1] = {act_complete("7", ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED, &ca, &sv, &a3)};
  complete_orch(f, w, fin2, 1);
  work_item__free_unpacked(w, NULL);
  OrchestrationState *st = get(f, "idle-2");
  assert_int_equal(st->orchestration_status, ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED);
  assert_string_equal(st->output->value, "7");
  orchestration_state__free_unpacked(st, NULL);
  st = get(f, "idle-1");
  assert_string_equal(st->output->value, "\"done\"");
  orchestration_state__free_unpacked(st, NULL);
  close_stream(f, s);
  dts_call_unref(s);
  passivate_ns = 0; /* teardown reopens nothing; later tests keep instances */
}

/* Data written before the indexes existed is indexed once at start. */
static void test_indexes_are_rebuilt_for_old_data(void **state) {
  fx *f = *state;
  dts_call *s = open_stream(f);
  int next = 0;
  dts_free(start(f, "old-1", "orch"));
  run_one(f, s, &next, false, "1");
  close_stream(f, s);
  dts_call_unref(s);
  close_all(f);
  /* strip the indexes and their marker, as an older dtsd left the store */
  char err[256];
  assert_int_equal(dts_store_open(f->dir, DTS_DURABILITY_OS, &f->store, err, sizeof(err)), DTS_OK);
  assert_int_equal(store_keys(f, 'S', "old-1"), 1);
  dts_batch *b = dts_batch_create();
  for (const char *t = "SCX"; *t; t++) {
    char pre[9] = "default";
    pre[8] = *t;
    assert_int_equal(dts_store_scan(f->store, pre, 9, strip_key, b), DTS_OK);
  }
  assert_int_equal(dts_store_write(f->store, b), DTS_OK);
  dts_batch_destroy(b);
  assert_int_equal(store_keys(f, 'S', "old-1"), 0);
  dts_store_close(f->store);
  open_all(f);
  assert_int_equal(store_keys(f, 'S', "old-1"), 1);
  assert_int_equal(store_keys(f, 'C', "old-1"), 1);
  ListInstanceIdsRequest lr = LIST_INSTANCE_IDS_REQUEST__INIT;
  Google__Protobuf__Timestamp from;
  lr.completed_time_from = dts_ts_from_ns(&from, 1);
  dts_call *c = rpc(f, DTS_M_LIST_INSTANCE_IDS, &lr.base, 0);
  ListInstanceIdsResponse *resp = list_instance_ids_response__unpack(NULL, c->body.n, c->body.p);
  assert_int_equal(resp->n_instance_ids, 1);
  assert_string_equal(resp->instance_ids[0], "old-1");
  list_instance_ids_response__free_unpacked(resp, NULL);
  dts_call_unref(c);
}

static void test_chunked_completion_and_partial_processing(void **state) {
  fx *f = *state;
  char *id = start(f, "c1", "orch");
  dts_call *s = open_stream(f);
  WorkItem *w = item(s, 0);
  /* chunk 0 (partial) schedules task 1; chunk 1 (last) schedules task 2 */
  ScheduleTaskAction st1, st2;
  OrchestratorAction a1, a2, *c0[1] = {act_schedule(1, "one", &st1, &a1)}, *c1[1] = {act_schedule(2, "two", &st2, &a2)};
  OrchestratorResponse r = ORCHESTRATOR_RESPONSE__INIT;
  Google__Protobuf__Int32Value idx = GOOGLE__PROTOBUF__INT32_VALUE__INIT;
  r.instance_id = id;
  r.completion_token = w->completion_token;
  r.actions = c0;
  r.n_actions = 1;
  r.is_partial = true;
  r.chunk_index = &idx;
  dts_call_unref(rpc(f, DTS_M_COMPLETE_ORCHESTRATOR, &r.base, 0));
  OrchestrationState *stt = get(f, id); /* barrier */
  orchestration_state__free_unpacked(stt, NULL);
  assert_int_equal(nitems(s), 1); /* nothing applied before the last chunk */
  idx.value = 1;
  r.actions = c1;
  r.is_partial = false;
  dts_call_unref(rpc(f, DTS_M_COMPLETE_ORCHESTRATOR, &r.base, 0));
  work_item__free_unpacked(w, NULL);
  WorkItem *x = item(s, 1), *y = item(s, 2);
  assert_int_equal(x->activity_request->task_id, 1);
  assert_int_equal(y->activity_request->task_id, 2);
  work_item__free_unpacked(x, NULL);
  work_item__free_unpacked(y, NULL);

  /* numEventsProcessed: of [OS, EventRaised a, EventRaised b] only 2 are
   * processed; b comes back in the next work item */
  RaiseEventRequest re = RAISE_EVENT_REQUEST__INIT;
  re.instance_id = id;
  re.name = "x"; /* dispatched alone; a and b queue up behind its lease */
  dts_call_unref(rpc(f, DTS_M_RAISE_EVENT, &re.base, 0));
  w = item(s, 3);
  re.name = "a";
  dts_call_unref(rpc(f, DTS_M_RAISE_EVENT, &re.base, 0));
  re.name = "b";
  dts_call_unref(rpc(f, DTS_M_RAISE_EVENT, &re.base, 0));
  complete_orch(f, w, NULL, 0);
  work_item__free_unpacked(w, NULL);
  w = item(s, 4);
  assert_int_equal(w->orchestrator_request->n_new_events, 3);
  OrchestratorResponse r2 = ORCHESTRATOR_RESPONSE__INIT;
  Google__Protobuf__Int32Value np = GOOGLE__PROTOBUF__INT32_VALUE__INIT;
  np.value = 2;
  r2.instance_id = id;
  r2.completion_token = w->completion_token;
  r2.num_events_processed = &np;
  dts_call_unref(rpc(f, DTS_M_COMPLETE_ORCHESTRATOR, &r2.base, 0));
  work_item__free_unpacked(w, NULL);
  w = item(s, 5);
  OrchestratorRequest *or = w->orchestrator_request;
  assert_int_equal(or->n_new_events, 2);
  assert_string_equal(or->new_events[1]->event_raised->name, "b");
  assert_string_equal(or->past_events[or->n_past_events - 1]->event_raised->name, "a"); /* the last: no OrchestratorCompleted after it */
  work_item__free_unpacked(w, NULL);
  close_stream(f, s);
  dts_call_unref(s);
  dts_free(id);
}

static void test_filters_and_per_stream_limits(void **state) {
  fx *f = *state;
  /* stream A: only orchestrations named "other", one at a time */
  OrchestrationFilter of = ORCHESTRATION_FILTER__INIT;
  of.name = "other";
  OrchestrationFilter *ofs[1] = {&of};
  WorkItemFilters wf = WORK_ITEM_FILTERS__INIT;
  wf.orchestrations = ofs;
  wf.n_orchestrations = 1;
  GetWorkItemsRequest ra = GET_WORK_ITEMS_REQUEST__INIT;
  ra.max_concurrent_orchestration_work_items = 1;
  ra.work_item_filters = &wf;
  dts_call *a = post(f, DTS_M_GET_WORK_ITEMS, &ra.base);
  char *i1 = start(f, "f1", "orch"), *i2 = start(f, "f2", "other"), *i3 = start(f, "f3", "other");
  OrchestrationState *st = get(f, i3); /* barrier: dispatches of earlier commits are done */
  orchestration_state__free_unpacked(st, NULL);
  assert_int_equal(nitems(a), 1);
  WorkItem *w = item(a, 0);
  assert_string_equal(w->orchestrator_request->instance_id, "f2");
  work_item__free_unpacked(w, NULL);
  /* stream B takes everything else, including what A may not take */
  dts_call *b = open_stream(f);
  WorkItem *w0 = item(b, 0), *w1 = item(b, 1);
  const char *x = w0->orchestrator_request->instance_id, *y = w1->orchestrator_request->instance_id;
  assert_true((strcmp(x, "f1") == 0 && strcmp(y, "f3") == 0) || (strcmp(x, "f3") == 0 && strcmp(y, "f1") == 0));
  work_item__free_unpacked(w0, NULL);
  work_item__free_unpacked(w1, NULL);
  assert_int_equal(nitems(a), 1);
  close_stream(f, a);
  close_stream(f, b);
  dts_call_unref(a);
  dts_call_unref(b);
  dts_free(i1);
  dts_free(i2);
  dts_free(i3);
}

static void test_clean_storage_releases_an_orphaned_lock(void **state) {
  fx *f = *state;
  /* a lock whose holder does not exist, as left by an older dtsd or a
   * crash of another kind: written straight into the store */
  close_all(f);
  char err[256];
  dts_store *st;
  assert_int_equal(dts_store_open(f->dir, DTS_DURABILITY_OS, &st, err, sizeof(err)), DTS_OK);
  Dtsd__Store__EntityRecord r = DTSD__STORE__ENTITY_RECORD__INIT;
  Google__Protobuf__StringValue sv;
  r.instance_id = "@counter@orphan";
  r.state = dts_sv(&sv, "5");
  r.locked_by = "ghost-orchestration";
  r.lock_cs = "cs-1";
  dts_buf b = dts_pb_pack(&r.base);
  dts_batch *bt = dts_batch_create();
  const char k[] = "default\0E@counter@orphan";
  dts_batch_put(bt, k, sizeof(k) - 1, b.p, b.n);
  assert_int_equal(dts_store_write(st, bt), DTS_OK);
  dts_batch_destroy(bt);
  dts_buf_free(&b);
  dts_store_close(st);
  open_all(f);

  GetEntityRequest g = GET_ENTITY_REQUEST__INIT;
  g.instance_id = "@counter@orphan";
  dts_call *c = rpc(f, DTS_M_GET_ENTITY, &g.base, 0);
  GetEntityResponse *gr = get_entity_response__unpack(NULL, c->body.n, c->body.p);
  assert_true(gr->exists);
  assert_string_equal(gr->entity->locked_by->value, "ghost-orchestration");
  get_entity_response__free_unpacked(gr, NULL);
  dts_call_unref(c);

  CleanEntityStorageRequest cr = CLEAN_ENTITY_STORAGE_REQUEST__INIT;
  cr.release_orphaned_locks = true;
  cr.remove_empty_entities = true;
  c = rpc(f, DTS_M_CLEAN_ENTITY_STORAGE, &cr.base, 0);
  CleanEntityStorageResponse *res = clean_entity_storage_response__unpack(NULL, c->body.n, c->body.p);
  assert_int_equal(res->orphaned_locks_released, 1);
  assert_int_equal(res->empty_entities_removed, 0); /* it has state */
  clean_entity_storage_response__free_unpacked(res, NULL);
  dts_call_unref(c);

  c = rpc(f, DTS_M_GET_ENTITY, &g.base, 0);
  gr = get_entity_response__unpack(NULL, c->body.n, c->body.p);
  assert_null(gr->entity->locked_by);
  get_entity_response__free_unpacked(gr, NULL);
  dts_call_unref(c);
}

/* ======================================================================== */
/* the engine's directory, read-back and passivation                       */

typedef struct racer {
  fx *f;
  int index, rounds, bad;
  const char *kind; /* "get": GetInstance of finished ones; "getw": of the waiting one; "raise": events to it */
} racer;

static void *race_main(void *arg) {
  racer *r = arg;
  for (int i = 0; i < r->rounds; i++) {
    if (strcmp(r->kind, "get") == 0 || strcmp(r->kind, "getw") == 0) {
      bool fin = strcmp(r->kind, "get") == 0;
      char id[16];
      if (fin) snprintf(id, sizeof(id), "fin-%d", (r->index + i) % 10);
      else snprintf(id, sizeof(id), "waiting");
      GetInstanceRequest g = GET_INSTANCE_REQUEST__INIT;
      g.instance_id = id;
      dts_call *c = post(r->f, DTS_M_GET_INSTANCE, &g.base);
      if (!TU_WAIT_UNTIL(answered(c), 20) || c->status != 0) {
        r->bad++;
      } else {
        GetInstanceResponse *resp = get_instance_response__unpack(NULL, c->body.n, c->body.p);
        int want = fin ? ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED
                       : ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_RUNNING;
        if (resp == NULL || !resp->exists || (int)resp->orchestration_state->orchestration_status != want) r->bad++;
        if (resp) get_instance_response__free_unpacked(resp, NULL);
      }
      dts_call_unref(c);
    } else {
      char name[32];
      snprintf(name, sizeof(name), "ev-%d-%d", r->index, i);
      RaiseEventRequest re = RAISE_EVENT_REQUEST__INIT;
      re.instance_id = "waiting";
      re.name = name;
      dts_call *c = post(r->f, DTS_M_RAISE_EVENT, &re.base);
      if (!TU_WAIT_UNTIL(answered(c), 20) || c->status != 0) r->bad++;
      dts_call_unref(c);
    }
  }
  return NULL;
}

static int run_racers(fx *f, const char *kind, int threads, int rounds) {
  pthread_t t[8];
  racer r[8];
  for (int i = 0; i < threads; i++) {
    r[i] = (racer){f, i, rounds, 0, kind};
    pthread_create(&t[i], NULL, race_main, &r[i]);
  }
  int bad = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(t[i], NULL);
    bad += r[i].bad;
  }
  return bad;
}

/* Finished instances leave the directory after every turn that read them;
 * requests from four threads keep arriving while they leave: every one is
 * answered from the store, none is lost or answered twice. */
static void test_messages_race_leaving_actors(void **state) {
  fx *f = *state;
  dts_call *s = open_wide_stream(f, 20);
  int next = 0;
  for (int i = 0; i < 10; i++) {
    char id[16];
    snprintf(id, sizeof(id), "fin-%d", i);
    dts_free(start(f, id, "orch"));
    run_one(f, s, &next, false, "\"ok\"");
  }
  assert_true(TU_WAIT_UNTIL(mem_instances(f) == 0, 10));
  assert_int_equal(run_racers(f, "get", 4, 300), 0);
  assert_true(TU_WAIT_UNTIL(mem_instances(f) == 0, 10)); /* and they all left again */
  close_stream(f, s);
  dts_call_unref(s);
}

/* Values of the history keys of `id` that contain `needle`. */
typedef struct valcount {
  const char *id, *needle;
  long n;
} valcount;

static bool count_val(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  valcount *vc = c;
  if (memmem(k, klen, vc->id, strlen(vc->id)) != NULL && memmem(v, vlen, vc->needle, strlen(vc->needle)) != NULL)
    vc->n++;
  return true;
}

static long history_with(fx *f, const char *id, const char *needle) {
  valcount vc = {id, needle, 0};
  assert_int_equal(dts_store_scan(f->store, "default\0H", 9, count_val, &vc), DTS_OK);
  return vc.n;
}

/* A waiting instance is read from four threads while it is passivated
 * again and again; then, out of memory, it gets events from eight threads
 * at once: the hub creates its actor once, every event lands once. */
static void test_many_messages_race_an_actors_creation(void **state) {
  fx *f = *state;
  reopen_passivating(f);
  dts_call *s = open_stream(f);
  dts_free(start(f, "waiting", "orch"));
  WorkItem *w = item(s, 0);
  complete_orch(f, w, NULL, 0); /* it waits for events */
  work_item__free_unpacked(w, NULL);
  close_stream(f, s); /* no worker: the events stay in its inbox */
  dts_call_unref(s);
  assert_true(TU_WAIT_UNTIL(mem_instances(f) == 0, 10));
  /* reads bring it back and it is passivated again (idle 1 ms, swept every
   * 20 ms) while the next reads arrive: each is answered from a live actor */
  dts_hub_stats st0, st1;
  dts_hub_get_stats(f->hub, &st0);
  st1 = st0;
  double until = tu_now() + 20;
  while (st1.passivated - st0.passivated < 3 && tu_now() < until) { /* reads until it has left 3 times */
    assert_int_equal(run_racers(f, "getw", 4, 50), 0);
    dts_hub_get_stats(f->hub, &st1);
  }
  assert_true(st1.passivated - st0.passivated >= 3); /* it did leave between reads */
  assert_true(TU_WAIT_UNTIL(mem_instances(f) == 0, 10));
  assert_int_equal(run_racers(f, "raise", 8, 25), 0);
  assert_int_equal(store_keys(f, 'N', "waiting"), 200);
  assert_true(mem_instances(f) <= 1);
  /* a worker gets all 200 over its next turns (a turn takes a bounded
   * number of new events), each once */
  s = open_stream(f);
  int raised = 0;
  for (int turn = 0; raised < 200; turn++) {
    w = item(s, turn);
    for (size_t i = 0; i < w->orchestrator_request->n_new_events; i++)
      if (w->orchestrator_request->new_events[i]->event_type_case == EV(EVENT_RAISED)) raised++;
    complete_orch(f, w, NULL, 0);
    work_item__free_unpacked(w, NULL);
  }
  assert_int_equal(raised, 200);
  assert_true(TU_WAIT_UNTIL(store_keys(f, 'N', "waiting") == 0, 10));
  assert_int_equal(history_with(f, "waiting", "ev-7-24"), 1);
  close_stream(f, s);
  dts_call_unref(s);
  passivate_ns = 0;
}

/* A message stored by its sender whose delivery never happened (a crash
 * between the commit and the delivery): the restart reads it back and
 * applies it once; it is gone from the store after, and a second restart
 * does not apply it again. */
static void test_stored_message_applied_once_across_restarts(void **state) {
  fx *f = *state;
  dts_call *s = open_stream(f);
  dts_free(start(f, "target", "orch"));
  WorkItem *w = item(s, 0);
  complete_orch(f, w, NULL, 0); /* waits for an event */
  work_item__free_unpacked(w, NULL);
  close_stream(f, s);
  dts_call_unref(s);
  close_all(f);

  /* "default\0Mtarget\0<seq>" holding an EventRaised, as a sender writes it */
  HistoryEvent ev = HISTORY_EVENT__INIT;
  EventRaisedEvent er = EVENT_RAISED_EVENT__INIT;
  er.name = "stored-once";
  ev.event_id = -1;
  ev.event_type_case = EV(EVENT_RAISED);
  ev.event_raised = &er;
  dts_buf eb = dts_pb_pack(&ev.base);
  Dtsd__Store__Message m = DTSD__STORE__MESSAGE__INIT;
  m.event.data = eb.p;
  m.event.len = eb.n;
  m.sender = "someone";
  dts_buf mb = dts_pb_pack(&m.base);
  char err[256], k[64];
  dts_store *st;
  assert_int_equal(dts_store_open(f->dir, DTS_DURABILITY_OS, &st, err, sizeof(err)), DTS_OK);
  const char pre[] = "default\0Mtarget\0";
  memcpy(k, pre, sizeof(pre) - 1);
  size_t kn = sizeof(pre) - 1;
  uint64_t seq = 1u << 20;
  for (int i = 7; i >= 0; i--) k[kn++] = (char)(seq >> (i * 8));
  dts_batch *b = dts_batch_create();
  dts_batch_put(b, k, kn, mb.p, mb.n);
  assert_int_equal(dts_store_write(st, b), DTS_OK);
  dts_batch_destroy(b);
  dts_store_close(st);
  dts_buf_free(&eb);
  dts_buf_free(&mb);

  open_all(f);
  s = open_stream(f);
  w = item(s, 0);
  assert_string_equal(w->orchestrator_request->instance_id, "target");
  int raised = 0;
  for (size_t i = 0; i < w->orchestrator_request->n_new_events; i++)
    if (w->orchestrator_request->new_events[i]->event_type_case == EV(EVENT_RAISED)) raised++;
  assert_int_equal(raised, 1);
  assert_int_equal(store_keys(f, 'M', "target"), 0);
  complete_orch(f, w, NULL, 0);
  work_item__free_unpacked(w, NULL);
  assert_true(TU_WAIT_UNTIL(history_with(f, "target", "stored-once") == 1, 10));
  close_stream(f, s);
  dts_call_unref(s);

  close_all(f); /* again: nothing is read back twice */
  open_all(f);
  assert_int_equal(history_with(f, "target", "stored-once"), 1);
  assert_int_equal(store_keys(f, 'N', "target"), 0);
  OrchestrationState *os = get(f, "target");
  assert_int_equal(os->orchestration_status, ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_RUNNING);
  orchestration_state__free_unpacked(os, NULL);
  s = open_stream(f);
  dts_free(start(f, "probe", "orch")); /* the stream's first item is the probe's, not a redelivery */
  w = item(s, 0);
  assert_string_equal(w->orchestrator_request->instance_id, "probe");
  work_item__free_unpacked(w, NULL);
  close_stream(f, s);
  dts_call_unref(s);
}

static void signal_ok(fx *f, const char *id) {
  SignalEntityRequest r = SIGNAL_ENTITY_REQUEST__INIT;
  r.instance_id = (char *)id;
  r.name = "add";
  dts_call_unref(rpc(f, DTS_M_SIGNAL_ENTITY, &r.base, 0));
}

/* Completes entity work item `w` with state `state`, one success per operation. */
static void complete_entity(fx *f, WorkItem *w, const char *state_json) {
  EntityRequest *er = w->entity_request_v2;
  assert_non_null(er);
  size_t n = er->n_operation_requests;
  OperationResult *res = dts_calloc(n, sizeof(*res)), **rp = dts_calloc(n, sizeof(*rp));
  OperationResultSuccess ok = OPERATION_RESULT_SUCCESS__INIT;
  for (size_t i = 0; i < n; i++) {
    operation_result__init(&res[i]);
    res[i].result_type_case = OPERATION_RESULT__RESULT_TYPE_SUCCESS;
    res[i].success = &ok;
    rp[i] = &res[i];
  }
  EntityBatchResult br = ENTITY_BATCH_RESULT__INIT;
  Google__Protobuf__StringValue sv;
  br.results = rp;
  br.n_results = n;
  br.entity_state = dts_sv(&sv, state_json);
  br.completion_token = w->completion_token;
  dts_call_unref(rpc(f, DTS_M_COMPLETE_ENTITY, &br.base, 0));
  dts_free(res);
  dts_free(rp);
}

/* Instance and entity actors allocated (in the directory or on their way out). */
static long actors_alive(fx *f) {
  dts_hub_stats st;
  dts_hub_get_stats(f->hub, &st);
  return st.actors;
}

static long mem_entities(fx *f) {
  dts_hub_stats st;
  dts_hub_get_stats(f->hub, &st);
  return st.entities;
}

/* Entities leave memory when idle (state on disk) and come back with it on
 * the next signal or read. */
static void test_entities_leave_memory_and_come_back(void **state) {
  fx *f = *state;
  reopen_passivating(f);
  dts_call *s = open_wide_stream(f, 100);
  for (int i = 0; i < 20; i++) {
    char id[32];
    snprintf(id, sizeof(id), "@counter@e%d", i);
    signal_ok(f, id);
  }
  for (int i = 0; i < 20; i++) {
    WorkItem *w = item(s, i);
    char st[32];
    snprintf(st, sizeof(st), "\"%s\"", w->entity_request_v2->instance_id);
    complete_entity(f, w, st);
    work_item__free_unpacked(w, NULL);
  }
  assert_true(TU_WAIT_UNTIL(mem_entities(f) == 0, 10)); /* all passivated */
  assert_true(TU_WAIT_UNTIL(actors_alive(f) == 0, 10)); /* and their actors freed */
  GetEntityRequest g = GET_ENTITY_REQUEST__INIT;
  g.instance_id = "@counter@e7";
  g.include_state = true;
  dts_call *c = rpc(f, DTS_M_GET_ENTITY, &g.base, 0);
  GetEntityResponse *gr = get_entity_response__unpack(NULL, c->body.n, c->body.p);
  assert_true(gr->exists);
  assert_string_equal(gr->entity->serialized_state->value, "\"@counter@e7\"");
  get_entity_response__free_unpacked(gr, NULL);
  dts_call_unref(c);
  /* a signal brings one back with its state, and it leaves again */
  signal_ok(f, "@counter@e3");
  WorkItem *w = item(s, 20);
  assert_string_equal(w->entity_request_v2->instance_id, "@counter@e3");
  assert_non_null(w->entity_request_v2->entity_state);
  assert_string_equal(w->entity_request_v2->entity_state->value, "\"@counter@e3\"");
  complete_entity(f, w, "\"again\"");
  work_item__free_unpacked(w, NULL);
  assert_true(TU_WAIT_UNTIL(mem_entities(f) == 0, 10));
  close_stream(f, s);
  dts_call_unref(s);
  passivate_ns = 0;
}

static void test_bad_requests_get_clear_errors(void **state) {
  fx *f = *state;
  CreateInstanceRequest r = CREATE_INSTANCE_REQUEST__INIT;
  r.instance_id = "@entity";
  r.name = "o";
  dts_call_unref(rpc(f, DTS_M_START_INSTANCE, &r.base, DTS_ST_INVALID_ARGUMENT));
  r.instance_id = "ok";
  r.name = "";
  dts_call_unref(rpc(f, DTS_M_START_INSTANCE, &r.base, DTS_ST_INVALID_ARGUMENT));
  r.name = "o";
  dts_call_unref(rpc(f, DTS_M_START_INSTANCE, &r.base, 0));
  dts_call_unref(rpc(f, DTS_M_START_INSTANCE, &r.base, DTS_ST_ALREADY_EXISTS));
  RaiseEventRequest re = RAISE_EVENT_REQUEST__INIT;
  re.instance_id = "missing";
  re.name = "e";
  dts_call_unref(rpc(f, DTS_M_RAISE_EVENT, &re.base, DTS_ST_NOT_FOUND));
}

/* newest_first (dtsd's extension): the status index walked backwards,
 * page after page by continuation token, every instance once, newest first;
 * with a status filter and an upper creation bound too. */
static void test_query_newest_first(void **state) {
  fx *f = *state;
  char id[16];
  for (int i = 0; i < 23; i++) {
    snprintf(id, sizeof(id), "nf-%02d", i);
    dts_free(start(f, id, "orch"));
  }
  dts_hub_figures fg;
  dts_hub_get_figures(f->hub, &fg);
  assert_int_equal(fg.started, 23); /* each start counted once, at its commit */
  assert_int_equal(fg.finished[ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED], 0);
  OrchestrationStatus pending = ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_PENDING;
  for (int variant = 0; variant < 3; variant++) {
    QueryInstancesRequest qr = QUERY_INSTANCES_REQUEST__INIT;
    InstanceQuery q = INSTANCE_QUERY__INIT;
    Google__Protobuf__StringValue tok;
    Google__Protobuf__Timestamp to;
    char tokbuf[200];
    qr.query = &q;
    q.newest_first = true;
    q.max_instance_count = 5;
    int expect = 22;
    if (variant == 1) {
      q.runtime_status = &pending;
      q.n_runtime_status = 1;
    }
    if (variant == 2) { /* created at or before nf-10 */
      OrchestrationState *st = get(f, "nf-10");
      q.created_time_to = dts_ts_from_ns(&to, dts_ts_to_ns(st->created_timestamp));
      orchestration_state__free_unpacked(st, NULL);
      expect = 10;
    }
    for (int pages = 0; pages < 10; pages++) {
      dts_call *c = rpc(f, DTS_M_QUERY_INSTANCES, &qr.base, 0);
      QueryInstancesResponse *r = query_instances_response__unpack(NULL, c->body.n, c->body.p);
      for (size_t k = 0; k < r->n_orchestration_state; k++, expect--) {
        snprintf(id, sizeof(id), "nf-%02d", expect);
        assert_string_equal(r->orchestration_state[k]->instance_id, id);
      }
      bool more = r->continuation_token != NULL;
      if (more) snprintf(tokbuf, sizeof(tokbuf), "%s", r->continuation_token->value);
      query_instances_response__free_unpacked(r, NULL);
      dts_call_unref(c);
      if (!more) break;
      q.continuation_token = dts_sv(&tok, tokbuf);
    }
    assert_int_equal(expect, -1); /* every one, once */
  }
}

int main(void) {
  dts_log_set_level(DTS_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_activity_round_trip_builds_history, setup, teardown),
      cmocka_unit_test_setup_teardown(test_query_newest_first, setup, teardown),
      cmocka_unit_test_setup_teardown(test_one_outstanding_item_per_instance, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_end_returns_leased_items, setup, teardown),
      cmocka_unit_test_setup_teardown(test_abandon_redelivers_after_delay, setup, teardown),
      cmocka_unit_test_setup_teardown(test_waiters_are_answered_and_freed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_continue_as_new_starts_a_new_execution, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart_resumes_activities_and_timers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timers_due_at_load_fire_after_load, setup, teardown),
      cmocka_unit_test_setup_teardown(test_finished_instances_leave_memory_and_come_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_indexes_are_rebuilt_for_old_data, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idle_running_instances_leave_memory_and_resume, setup, teardown),
      cmocka_unit_test_setup_teardown(test_chunked_completion_and_partial_processing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_filters_and_per_stream_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_clean_storage_releases_an_orphaned_lock, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_requests_get_clear_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_messages_race_leaving_actors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_messages_race_an_actors_creation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stored_message_applied_once_across_restarts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_entities_leave_memory_and_come_back, setup, teardown),
  };
  int failed = cmocka_run_group_tests_name("storage-thread commits", tests, NULL, NULL);
  inline_commit = true;
  failed += cmocka_run_group_tests_name("inline commits", tests, NULL, NULL);
  return failed;
}
