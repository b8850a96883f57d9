/* loadgen.c -- bench/loadgen: a C load generator that plays both client and
 * worker over gRPC C core, so dtsd is measured without any SDK's overhead.
 *
 * Scenario "signals" (this version): S SignalEntity calls ("add", 1) kept C
 * in flight, to one hot entity (--entities 1) or spread over E entities;
 * the built-in worker answers every entityRequestV2 work item (state = old
 * state + number of operations) with CompleteEntityTask.  At the end the
 * state of the entities is read back with GetEntity and checked against the
 * signals sent, so a fast wrong answer cannot pass.
 *
 * Scenario "hello" (hello-5): O orchestrations, C in flight, each five
 * activities in sequence run by the built-in worker; every output is
 * checked ("5"), and start-to-completed latency is measured.  --activities
 * N changes the five; "--activities 1 --concurrency 1" is the latency probe.
 *
 * Scenarios "fanout" (--fanout N activities scheduled in one turn, summed),
 * "timers" (a 1 s durable timer each; how late it fired is measured at the
 * worker, never early), "events" (an external event raised right after the
 * start) work the same way.  "raw" measures bare unary round trips (Hello)
 * at the same concurrency: the ceiling a call-per-step protocol has here.
 * --pid PID adds dtsd's CPU seconds per 1,000 orchestrations, peak RSS and
 * the serial share: the busiest dtsd thread's CPU over all of dtsd's during
 * the run (from /proc/PID/task/TID/stat).
 *
 * Scenario "mixed" runs orchestrations of three kinds at once (two hello-5
 * in four, one external event, one fan-out of 20) with entity signals to
 * 100 entities alongside (--signals, default twice the orchestrations), and
 * checks both.
 *
 * Scenario "park" starts O orchestrations that wait for an event that never
 * comes (in flight for good); "query" times the management queries over
 * what is stored (first pages by status, by id prefix, by completion time,
 * one finished instance read back) against paging through every finished
 * instance, and checks the counts (--orchestrations finished, --parked
 * running).  Both name instances "<id-prefix><i>" (--id-prefix).
 *
 * Scenario cold: StartInstance of --orchestrations new ids, one at a time,
 * and its latency: each start first looks the id up, which misses every
 * table of a large store (bench/cold.sh compares bloom filters on and off).
 *
 * Usage: loadgen --target HOST:PORT [--scenario signals|hello|fanout|timers|events|raw|park|query|mixed|cold]
 *                [--signals S] [--orchestrations O] [--fanout N] [--concurrency C]
 *                [--entities E] [--taskhub NAME] [--pid DTSD_PID] [--id-prefix P] [--parked N]
 *                [--activities N] [--durability os|fsync] [--streams N (worker streams, 1-64)]
 *                [--channels N (client connections, 1-64; calls and streams go round them)]
 * Prints a table line and one JSON line; exit 1 when the check fails.
 */
#include "proto/pb.h"
#include "storage/store.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <dirent.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *target = "127.0.0.1:8080", *hub = NULL;
static long nsignals = 200000, conc = 512, nents = 1;
#define MAX_CHANNELS 64
static grpc_channel *chs[MAX_CHANNELS]; /* each its own connection; calls go round them */
static int nchannels = 1;
static unsigned next_channel;
static grpc_completion_queue *cq;
static long sent, acked, failed_calls, applied, batches, inflight, unary_calls, write_calls;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- one call record: unary or the work-item stream ---------------------- */

typedef enum { K_SIGNAL, K_COMPLETE, K_GET, K_STREAM_START, K_STREAM_RECV, K_STREAM_STATUS, K_START, K_WAIT, K_RAISE, K_HELLO, K_SYNC } kind;

typedef struct rec {
  kind k;
  grpc_call *call;
  grpc_byte_buffer *send, *recv;
  grpc_metadata_array init_md, trail_md;
  grpc_status_code status;
  grpc_slice details;
  grpc_metadata md;
  long index; /* K_GET: which entity */
} rec;

static grpc_call *new_call(const char *method) {
  gpr_timespec dl = gpr_inf_future(GPR_CLOCK_REALTIME);
  grpc_slice m = grpc_slice_from_static_string(method);
  grpc_channel *ch = chs[next_channel++ % (unsigned)nchannels];
  return grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, dl, NULL);
}

static grpc_byte_buffer *bb_of(dts_buf b) {
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)b.p, b.n);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

static dts_buf read_bb(grpc_byte_buffer *bb) {
  grpc_byte_buffer_reader rd;
  dts_buf out = {NULL, 0};
  if (bb == NULL || !grpc_byte_buffer_reader_init(&rd, bb)) return out;
  grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
  out = dts_buf_copy(GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
  grpc_slice_unref(all);
  grpc_byte_buffer_reader_destroy(&rd);
  return out;
}

static void start_ops(rec *r, grpc_op *ops, size_t n) {
  if (grpc_call_start_batch(r->call, ops, n, r, NULL) != GRPC_CALL_OK) {
    fprintf(stderr, "loadgen: start_batch failed\n");
    exit(2);
  }
}

static size_t md_op(rec *r, grpc_op *op) {
  memset(op, 0, sizeof(*op));
  op->op = GRPC_OP_SEND_INITIAL_METADATA;
  if (hub != NULL) {
    r->md.key = grpc_slice_from_static_string("taskhub");
    r->md.value = grpc_slice_from_static_string(hub);
    op->data.send_initial_metadata.count = 1;
    op->data.send_initial_metadata.metadata = &r->md;
  }
  return 1;
}

/* The client's half of a call: metadata, the one request message, close,
 * and receiving the response headers.  Zeroes all 6 ops; returns 4. */
static size_t request_ops(rec *r, grpc_op *ops) {
  memset(ops, 0, sizeof(grpc_op) * 6);
  size_t n = md_op(r, &ops[0]);
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = r->send;
  ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[n++].data.recv_initial_metadata.recv_initial_metadata = &r->init_md;
  return n;
}

static rec *unary(kind k, const char *method, dts_buf body, long index) {
  rec *r = calloc(1, sizeof(*r));
  r->k = k;
  r->index = index;
  r->call = new_call(method);
  r->send = bb_of(body);
  grpc_metadata_array_init(&r->init_md);
  grpc_metadata_array_init(&r->trail_md);
  grpc_op ops[6];
  size_t n = request_ops(r, ops);
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n++].data.recv_message.recv_message = &r->recv;
  ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[n].data.recv_status_on_client.trailing_metadata = &r->trail_md;
  ops[n].data.recv_status_on_client.status = &r->status;
  ops[n++].data.recv_status_on_client.status_details = &r->details;
  start_ops(r, ops, n);
  inflight++;
  unary_calls++;
  if (k == K_START || k == K_COMPLETE || k == K_RAISE || k == K_SIGNAL) write_calls++; /* each is a commit */
  return r;
}

static void rec_free(rec *r) {
  if (r->send) grpc_byte_buffer_destroy(r->send);
  if (r->recv) grpc_byte_buffer_destroy(r->recv);
  grpc_metadata_array_destroy(&r->init_md);
  grpc_metadata_array_destroy(&r->trail_md);
  grpc_slice_unref(r->details);
  grpc_call_unref(r->call);
  free(r);
}

/* ---- client side: signals ------------------------------------------------- */

static unsigned run_id; /* entity names are unique per run: @bench@<run>e<i> */
static void entity_id(long i, char *out, size_t n) { snprintf(out, n, "@bench@r%xe%ld", run_id, i); }

static void send_signal(void) {
  char id[64];
  entity_id(sent % nents, id, sizeof(id));
  SignalEntityRequest r = SIGNAL_ENTITY_REQUEST__INIT;
  Google__Protobuf__StringValue in;
  r.instance_id = id;
  r.name = "add";
  r.input = dts_sv(&in, "1");
  dts_buf b = dts_pb_pack(&r.base);
  unary(K_SIGNAL, "/TaskHubSidecarService/SignalEntity", b, 0);
  dts_buf_free(&b);
  sent++;
}

/* ---- worker side ----------------------------------------------------------- */

#define MAX_STREAMS 64
static rec *streams[MAX_STREAMS]; /* the worker's GetWorkItems streams */
static int nstreams = 1;
static long *final_state; /* what the worker last stored, per entity */

static void stream_recv(rec *stream) {
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &stream->recv;
  stream->k = K_STREAM_RECV;
  start_ops(stream, &op, 1);
}

static void open_stream(int i) {
  rec *stream = streams[i] = calloc(1, sizeof(*stream));
  stream->call = new_call("/TaskHubSidecarService/GetWorkItems");
  grpc_metadata_array_init(&stream->init_md);
  grpc_metadata_array_init(&stream->trail_md);
  GetWorkItemsRequest req = GET_WORK_ITEMS_REQUEST__INIT;
  req.max_concurrent_entity_work_items = 10000;
  dts_buf b = dts_pb_pack(&req.base);
  stream->send = bb_of(b);
  dts_buf_free(&b);
  grpc_op ops[6];
  size_t n = request_ops(stream, ops);
  stream->k = K_STREAM_START;
  start_ops(stream, ops, n);
}

static long parse_key(const char *id) {
  const char *p = strrchr(id, 'e');
  return p ? atol(p + 1) : 0;
}

static void on_orch_item(WorkItem *w);
static void on_activity_item(WorkItem *w);

static void on_work_item(dts_buf b) {
  WorkItem *w = work_item__unpack(NULL, b.n, b.p);
  if (w != NULL && w->request_case == WORK_ITEM__REQUEST_ORCHESTRATOR_REQUEST) {
    on_orch_item(w);
    work_item__free_unpacked(w, NULL);
    return;
  }
  if (w != NULL && w->request_case == WORK_ITEM__REQUEST_ACTIVITY_REQUEST) {
    on_activity_item(w);
    work_item__free_unpacked(w, NULL);
    return;
  }
  if (w == NULL || w->request_case != WORK_ITEM__REQUEST_ENTITY_REQUEST_V2) {
    if (w) work_item__free_unpacked(w, NULL);
    return;
  }
  EntityRequest *er = w->entity_request_v2;
  long state = er->entity_state ? atol(er->entity_state->value) : 0;
  size_t n = er->n_operation_requests;
  state += (long)n;
  char st[32];
  snprintf(st, sizeof(st), "%ld", state);
  EntityBatchResult res = ENTITY_BATCH_RESULT__INIT;
  OperationResult *rs = calloc(n ? n : 1, sizeof(*rs));
  OperationResultSuccess *ok = calloc(n ? n : 1, sizeof(*ok));
  OperationResult **rp = calloc(n ? n : 1, sizeof(*rp));
  for (size_t i = 0; i < n; i++) {
    operation_result__init(&rs[i]);
    operation_result_success__init(&ok[i]);
    rs[i].result_type_case = OPERATION_RESULT__RESULT_TYPE_SUCCESS;
    rs[i].success = &ok[i];
    rp[i] = &rs[i];
  }
  Google__Protobuf__StringValue sv;
  res.results = rp;
  res.n_results = n;
  res.entity_state = dts_sv(&sv, st);
  res.completion_token = w->completion_token;
  dts_buf out = dts_pb_pack(&res.base);
  unary(K_COMPLETE, "/TaskHubSidecarService/CompleteEntityTask", out, 0);
  dts_buf_free(&out);
  final_state[parse_key(er->instance_id) % nents] = state;
  applied += (long)n;
  batches++;
  free(rs);
  free(ok);
  free(rp);
  work_item__free_unpacked(w, NULL);
}

/* ---- scenario hello-5: five activities in sequence -------------------------- */

enum { S_SIGNALS, S_HELLO, S_FANOUT, S_TIMER, S_EVENT, S_RAW, S_PARK, S_QUERY, S_MIXED, S_COLD };
static int scen;              /* the scenario in use */
static bool hello;            /* an orchestration scenario */
static long norch = 2000, started, finished, wrong, fan_n = 1000, parked_turns, nparked;
static const char *id_prefix = NULL; /* NULL: "h<run>-" */
static long hello_n = 5;              /* activities in sequence (--activities; 1 = the latency probe) */
static double *t_start, *lat_ms, *late_ms;
static long nlate;

#define MIX_FAN 20 /* fan-out width of the mixed scenario's fan-out orchestrations */

/* What orchestration i runs: the scenario's kind, or in the mixed scenario
 * two hello-5 in four, one external event, one fan-out of MIX_FAN. */
static int okind(long i) {
  if (scen != S_MIXED) return scen;
  static const int mix[4] = {S_HELLO, S_HELLO, S_EVENT, S_FANOUT};
  return mix[i % 4];
}

static long fan_of(void) { return scen == S_MIXED ? MIX_FAN : fan_n; }

/* The index i of an instance id "<prefix><i>". */
static long index_of(const char *id) {
  size_t n = strlen(id), k = n;
  while (k > 0 && id[k - 1] >= '0' && id[k - 1] <= '9') k--;
  return atol(id + k);
}

static const char *kind_name(int k) {
  switch (k) {
  case S_HELLO: return "hello5";
  case S_FANOUT: return "fanout";
  case S_TIMER: return "timer";
  case S_EVENT: return "event";
  case S_PARK: return "park";
  default: return "?";
  }
}

static void expected_output(int k, char *out, size_t n) {
  switch (k) {
  case S_HELLO: snprintf(out, n, "%ld", hello_n); break;
  case S_FANOUT: snprintf(out, n, "%ld", fan_of()); break;
  case S_TIMER: snprintf(out, n, "1"); break;
  default: snprintf(out, n, "7"); break;
  }
}

/* Actions as DTS counts them: a start is 1, an activity 2, a timer or an
 * event 1. */
static long actions_of(int k) {
  switch (k) {
  case S_HELLO: return 1 + hello_n * 2;
  case S_FANOUT: return 1 + fan_of() * 2;
  default: return 2;
  }
}

static double actions_per_orch(void) {
  if (scen != S_MIXED) return (double)actions_of(scen);
  double sum = 0;
  for (int i = 0; i < 4; i++) sum += (double)actions_of(okind(i));
  return sum / 4;
}

static void orch_id(long i, char *out, size_t n) {
  if (id_prefix != NULL) snprintf(out, n, "%s%ld", id_prefix, i);
  else snprintf(out, n, "h%x-%ld", run_id, i);
}

static void start_orch(void) {
  char id[64];
  orch_id(started, id, sizeof(id));
  t_start[started] = now_s();
  CreateInstanceRequest r = CREATE_INSTANCE_REQUEST__INIT;
  Google__Protobuf__StringValue in;
  r.instance_id = id;
  r.name = (char *)kind_name(okind(started));
  r.input = dts_sv(&in, "\"x\"");
  dts_buf b = dts_pb_pack(&r.base);
  unary(K_START, "/TaskHubSidecarService/StartInstance", b, started);
  dts_buf_free(&b);
  started++;
}

static void wait_orch(long i) {
  char id[64];
  orch_id(i, id, sizeof(id));
  GetInstanceRequest g = GET_INSTANCE_REQUEST__INIT;
  g.instance_id = id;
  g.get_inputs_and_outputs = true;
  dts_buf b = dts_pb_pack(&g.base);
  unary(K_WAIT, "/TaskHubSidecarService/WaitForInstanceCompletion", b, i);
  dts_buf_free(&b);
}

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The worker's orchestrators, one per scenario: they read the history they
 * are given and return the next actions, as an SDK would. */
static void on_orch_item(WorkItem *w) {
  OrchestratorRequest *o = w->orchestrator_request;
  long done = 0, sum = 0, scheduled = 0, timers = 0, fired = 0;
  const char *event = NULL;
  int64_t fire_at = 0, started_ts = 0;
  for (int pass = 0; pass < 2; pass++) {
    HistoryEvent **ev = pass ? o->new_events : o->past_events;
    size_t n = pass ? o->n_new_events : o->n_past_events;
    for (size_t i = 0; i < n; i++) {
      switch (ev[i]->event_type_case) {
      case HISTORY_EVENT__EVENT_TYPE_TASK_COMPLETED:
        done++;
        sum += ev[i]->task_completed->result ? atol(ev[i]->task_completed->result->value) : 0;
        break;
      case HISTORY_EVENT__EVENT_TYPE_TASK_SCHEDULED: scheduled++; break;
      case HISTORY_EVENT__EVENT_TYPE_TIMER_CREATED: timers++; break;
      case HISTORY_EVENT__EVENT_TYPE_TIMER_FIRED:
        fired++;
        fire_at = dts_ts_to_ns(ev[i]->timer_fired->fire_at);
        if (pass == 1 && nlate < norch) late_ms[nlate++] = (double)(wall_ns() - fire_at) / 1e6;
        break;
      case HISTORY_EVENT__EVENT_TYPE_EVENT_RAISED:
        event = ev[i]->event_raised->input ? ev[i]->event_raised->input->value : "";
        break;
      case HISTORY_EVENT__EVENT_TYPE_ORCHESTRATOR_STARTED:
        if (pass == 1 && i == 0) started_ts = dts_ts_to_ns(ev[i]->timestamp);
        break;
      default: break;
      }
    }
  }
  OrchestratorResponse r = ORCHESTRATOR_RESPONSE__INIT;
  OrchestratorAction one = ORCHESTRATOR_ACTION__INIT, *onep = &one, **many = NULL;
  ScheduleTaskAction st = SCHEDULE_TASK_ACTION__INIT;
  CompleteOrchestrationAction ca = COMPLETE_ORCHESTRATION_ACTION__INIT;
  CreateTimerAction ct = CREATE_TIMER_ACTION__INIT;
  Google__Protobuf__Timestamp fts;
  Google__Protobuf__StringValue res, in;
  char buf[32];
  r.instance_id = o->instance_id;
  r.completion_token = w->completion_token;
  bool complete = false;
  long fan = fan_of();
  switch (okind(index_of(o->instance_id))) {
  case S_HELLO:
    if (done >= hello_n) {
      snprintf(buf, sizeof(buf), "%ld", sum);
      complete = true;
    } else if (scheduled == done) {
      st.name = "act";
      st.input = dts_sv(&in, "1");
      one.id = (int32_t)done + 1;
      one.orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_SCHEDULE_TASK;
      one.schedule_task = &st;
      r.actions = &onep;
      r.n_actions = 1;
    }
    break;
  case S_FANOUT:
    if (done >= fan) {
      snprintf(buf, sizeof(buf), "%ld", sum);
      complete = true;
    } else if (scheduled == 0) { /* all of them in the first turn */
      many = calloc((size_t)fan, sizeof(*many));
      OrchestratorAction *acts = calloc((size_t)fan, sizeof(*acts));
      st.name = "act";
      st.input = dts_sv(&in, "1");
      for (long i = 0; i < fan; i++) {
        orchestrator_action__init(&acts[i]);
        acts[i].id = (int32_t)i + 1;
        acts[i].orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_SCHEDULE_TASK;
        acts[i].schedule_task = &st;
        many[i] = &acts[i];
      }
      r.actions = many;
      r.n_actions = (size_t)fan;
    }
    break;
  case S_TIMER:
    if (fired > 0) {
      snprintf(buf, sizeof(buf), "1");
      complete = true;
    } else if (timers == 0) {
      ct.fire_at = dts_ts_from_ns(&fts, (started_ts ? started_ts : wall_ns()) + 1000000000LL);
      one.id = 1;
      one.orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_CREATE_TIMER;
      one.create_timer = &ct;
      r.actions = &onep;
      r.n_actions = 1;
    }
    break;
  case S_PARK: /* waits for an event that never comes */
    parked_turns++;
    break;
  case S_EVENT:
    if (event != NULL) {
      snprintf(buf, sizeof(buf), "%s", event);
      complete = true;
    }
    break;
  }
  if (complete) {
    ca.orchestration_status = ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED;
    ca.result = dts_sv(&res, buf);
    one.id = 1000000;
    one.orchestrator_action_type_case = ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_COMPLETE_ORCHESTRATION;
    one.complete_orchestration = &ca;
    r.actions = &onep;
    r.n_actions = 1;
  }
  dts_buf out = dts_pb_pack(&r.base);
  unary(K_COMPLETE, "/TaskHubSidecarService/CompleteOrchestratorTask", out, 0);
  dts_buf_free(&out);
  if (many != NULL) {
    free(many[0]);
    free(many);
  }
}

static void on_activity_item(WorkItem *w) {
  ActivityRequest *a = w->activity_request;
  ActivityResponse r = ACTIVITY_RESPONSE__INIT;
  Google__Protobuf__StringValue res;
  r.instance_id = a->orchestration_instance ? a->orchestration_instance->instance_id : "";
  r.task_id = a->task_id;
  r.result = dts_sv(&res, "1");
  r.completion_token = w->completion_token;
  dts_buf out = dts_pb_pack(&r.base);
  unary(K_COMPLETE, "/TaskHubSidecarService/CompleteActivityTask", out, 0);
  dts_buf_free(&out);
}

/* ---- main loop ------------------------------------------------------------ */

static long checked_ok, checked_bad;

static void drain_until(bool (*done)(void)) {
  while (!done()) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(30, GPR_TIMESPAN)), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
      fprintf(stderr, "loadgen: no progress for 30 s (sent %ld, acked %ld, applied %ld)\n", sent, acked, applied);
      exit(1);
    }
    rec *r = ev.tag;
    switch (r->k) {
    case K_SIGNAL:
      inflight--;
      if (r->status == GRPC_STATUS_OK) acked++;
      else failed_calls++;
      rec_free(r);
      if (sent < nsignals) send_signal();
      break;
    case K_COMPLETE:
      inflight--;
      if (r->status != GRPC_STATUS_OK) failed_calls++;
      rec_free(r);
      break;
    case K_GET: {
      inflight--;
      dts_buf b = read_bb(r->recv);
      GetEntityResponse *g = get_entity_response__unpack(NULL, b.n, b.p);
      long want = nsignals / nents + (r->index < nsignals % nents ? 1 : 0);
      long got = g && g->exists && g->entity && g->entity->serialized_state ? atol(g->entity->serialized_state->value) : -1;
      if (got == want) checked_ok++;
      else {
        checked_bad++;
        fprintf(stderr, "loadgen: entity e%ld holds %ld, expected %ld\n", r->index, got, want);
      }
      if (g) get_entity_response__free_unpacked(g, NULL);
      dts_buf_free(&b);
      rec_free(r);
      break;
    }
    case K_START:
      inflight--;
      if (r->status != GRPC_STATUS_OK) failed_calls++;
      else if (scen == S_PARK) {
        finished++; /* started; its first turn is counted by the worker */
        if (started < norch) start_orch();
      } else if (okind(r->index) == S_EVENT) { /* raise at once: it may land before the wait starts */
        char id[64];
        orch_id(r->index, id, sizeof(id));
        RaiseEventRequest re = RAISE_EVENT_REQUEST__INIT;
        Google__Protobuf__StringValue in;
        re.instance_id = id;
        re.name = "go";
        re.input = dts_sv(&in, "7");
        dts_buf b = dts_pb_pack(&re.base);
        unary(K_RAISE, "/TaskHubSidecarService/RaiseEvent", b, r->index);
        dts_buf_free(&b);
      } else {
        wait_orch(r->index);
      }
      rec_free(r);
      break;
    case K_RAISE:
      inflight--;
      if (r->status != GRPC_STATUS_OK) failed_calls++;
      else wait_orch(r->index);
      rec_free(r);
      break;
    case K_HELLO:
      inflight--;
      if (r->status != GRPC_STATUS_OK) failed_calls++;
      acked++;
      rec_free(r);
      if (sent < nsignals) {
        sent++;
        unary(K_HELLO, "/TaskHubSidecarService/Hello", (dts_buf){NULL, 0}, 0);
      }
      break;
    case K_WAIT: {
      inflight--;
      char want_out[32];
      expected_output(okind(r->index), want_out, sizeof(want_out));
      dts_buf b = read_bb(r->recv);
      GetInstanceResponse *g = get_instance_response__unpack(NULL, b.n, b.p);
      bool ok = r->status == GRPC_STATUS_OK && g && g->exists && g->orchestration_state &&
                g->orchestration_state->orchestration_status == ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED &&
                g->orchestration_state->output && strcmp(g->orchestration_state->output->value, want_out) == 0;
      if (!ok) wrong++;
      lat_ms[finished] = (now_s() - t_start[r->index]) * 1000.0;
      finished++;
      if (g) get_instance_response__free_unpacked(g, NULL);
      dts_buf_free(&b);
      rec_free(r);
      if (started < norch) start_orch();
      break;
    }
    case K_STREAM_START:
      stream_recv(r);
      break;
    case K_STREAM_RECV: {
      if (r->recv == NULL) { /* the stream ended */
        fprintf(stderr, "loadgen: work-item stream ended\n");
        exit(1);
      }
      dts_buf b = read_bb(r->recv);
      grpc_byte_buffer_destroy(r->recv);
      r->recv = NULL;
      on_work_item(b);
      dts_buf_free(&b);
      stream_recv(r);
      break;
    }
    default:
      break;
    }
  }
}

static int dtsd_pid;

typedef struct proc_sample {
  double cpu_s, rss_mib;
} proc_sample;

/* CPU seconds and peak RSS of a process, from /proc (0 when no pid). */
static proc_sample sample(int pid) {
  proc_sample ps = {0, 0};
  if (pid <= 0) return ps;
  char path[64], buf[2048];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f != NULL) {
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, stt = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) == 2)
      ps.cpu_s = (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
  }
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  f = fopen(path, "r");
  if (f != NULL) {
    while (fgets(buf, sizeof(buf), f))
      if (strncmp(buf, "VmHWM:", 6) == 0) ps.rss_mib = atof(buf + 6) / 1024.0;
    fclose(f);
  }
  return ps;
}

/* ---- serial share: the busiest dtsd thread's CPU over all of dtsd's --- */

#define MAX_THREADS 512

typedef struct thread_sample {
  int n;
  int tid[MAX_THREADS];
  unsigned long ticks[MAX_THREADS];
  char name[MAX_THREADS][20];
} thread_sample;

/* Every thread's user+system ticks, from /proc/<pid>/task/<tid>/stat. */
static void sample_threads(int pid, thread_sample *ts) {
  ts->n = 0;
  if (pid <= 0) return;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (d == NULL) return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL && ts->n < MAX_THREADS) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    char sp[300], buf[1024];
    snprintf(sp, sizeof(sp), "/proc/%d/task/%s/stat", pid, de->d_name);
    FILE *f = fopen(sp, "r");
    if (f == NULL) continue;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (open == NULL || close == NULL ||
        sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
      continue;
    int i = ts->n++;
    ts->tid[i] = atoi(de->d_name);
    ts->ticks[i] = ut + st;
    size_t nl = (size_t)(close - open - 1) < sizeof(ts->name[i]) - 1 ? (size_t)(close - open - 1) : sizeof(ts->name[i]) - 1;
    memcpy(ts->name[i], open + 1, nl);
    ts->name[i][nl] = '\0';
  }
  closedir(d);
}

typedef struct serial_share {
  double share, busiest_s, total_s;
  char busiest[20];
} serial_share;

/* The busiest thread's CPU between two samples over all threads' CPU. */
static serial_share serial_of(const thread_sample *a, const thread_sample *b) {
  serial_share r = {0, 0, 0, ""};
  unsigned long total = 0, best = 0;
  for (int i = 0; i < b->n; i++) {
    unsigned long before = 0;
    for (int j = 0; j < a->n; j++)
      if (a->tid[j] == b->tid[i]) before = a->ticks[j];
    unsigned long d = b->ticks[i] - before;
    total += d;
    if (d > best) {
      best = d;
      snprintf(r.busiest, sizeof(r.busiest), "%s", b->name[i]);
    }
  }
  double hz = (double)sysconf(_SC_CLK_TCK);
  r.busiest_s = (double)best / hz;
  r.total_s = (double)total / hz;
  r.share = total > 0 ? (double)best / (double)total : 0;
  return r;
}

static void print_serial(const serial_share *s) {
  printf("dtsd: serial share %.3f (busiest thread '%s' %.2f CPU-s of %.2f)\n", s->share, s->busiest, s->busiest_s,
         s->total_s);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static bool all_hellos(void) { return acked >= nsignals && inflight == 0; }
static bool all_finished(void) { return finished >= norch && inflight == 0; }
static bool all_parked(void) { return finished >= norch && parked_turns >= norch && inflight == 0; }

/* ---- scenario query: management queries over what is stored ------------- */

/* One call, waited for (nothing else is in flight in this scenario).
 * Returns the response body; *ms is the round trip. */
static dts_buf call_sync(const char *method, const ProtobufCMessage *m, double *ms) {
  dts_buf b = dts_pb_pack(m);
  double t0 = now_s();
  rec *r = unary(K_SYNC, method, b, 0);
  dts_buf_free(&b);
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_OP_COMPLETE && ev.tag == r) break;
  }
  *ms = (now_s() - t0) * 1000.0;
  inflight--;
  if (r->status != GRPC_STATUS_OK) {
    char *d = grpc_slice_to_c_string(r->details);
    fprintf(stderr, "loadgen: %s failed: status %d: %s\n", method, r->status, d);
    gpr_free(d);
    exit(1);
  }
  dts_buf out = read_bb(r->recv);
  rec_free(r);
  return out;
}

/* A QueryInstances page: returns how many rows; copies the token (or ""). */
static size_t query_page(int status, const char *prefix, size_t page, const char *after, char *tok, size_t toklen,
                         double *ms) {
  QueryInstancesRequest qr = QUERY_INSTANCES_REQUEST__INIT;
  InstanceQuery q = INSTANCE_QUERY__INIT;
  OrchestrationStatus st = (OrchestrationStatus)status;
  Google__Protobuf__StringValue pv, av;
  if (status >= 0) {
    q.runtime_status = &st;
    q.n_runtime_status = 1;
  }
  q.instance_id_prefix = dts_sv(&pv, prefix);
  q.continuation_token = dts_sv(&av, after);
  q.max_instance_count = (int32_t)page;
  qr.query = &q;
  dts_buf b = call_sync("/TaskHubSidecarService/QueryInstances", &qr.base, ms);
  QueryInstancesResponse *resp = query_instances_response__unpack(NULL, b.n, b.p);
  size_t n = resp ? resp->n_orchestration_state : 0;
  snprintf(tok, toklen, "%s", resp && resp->continuation_token ? resp->continuation_token->value : "");
  if (resp) query_instances_response__free_unpacked(resp, NULL);
  dts_buf_free(&b);
  return n;
}

/* Pages through every instance with `status` (1,000 a page); returns the
 * count and the total time in *ms. */
static long count_all(int status, double *ms) {
  char tok[512] = "";
  long n = 0;
  *ms = 0;
  do {
    double one;
    char next[512];
    n += (long)query_page(status, NULL, 1000, tok[0] ? tok : NULL, next, sizeof(next), &one);
    *ms += one;
    memcpy(tok, next, sizeof(tok));
  } while (tok[0] != '\0');
  return n;
}

static double median_ms(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_d);
  return v[n / 2];
}

/* ---- scenario cold: starts of ids never seen -------------------------------- */

static int run_cold(void) {
  double *ms = calloc((size_t)norch, sizeof(double)), sum = 0;
  char id[128];
  for (long i = 0; i < norch; i++) {
    CreateInstanceRequest r = CREATE_INSTANCE_REQUEST__INIT;
    /* "<prefix><digit>x...": between the ids "<prefix><digits>" already stored, so
     * the lookup falls inside a table's key range on every level */
    snprintf(id, sizeof(id), "%s%ldx%08x-%ld", id_prefix ? id_prefix : "", i % 10, run_id, i);
    r.instance_id = id;
    r.name = "cold";
    dts_buf b = call_sync("/TaskHubSidecarService/StartInstance", &r.base, &ms[i]);
    dts_buf_free(&b);
    sum += ms[i];
  }
  qsort(ms, (size_t)norch, sizeof(double), cmp_d);
  double p50 = ms[norch / 2], p99 = ms[(size_t)((double)norch * 0.99)], mean = sum / (double)norch;
  printf("loadgen cold: %ld starts of new ids, one at a time: p50 %.3f ms, p99 %.3f ms, mean %.3f ms\n", norch, p50,
         p99, mean);
  printf("{\"bench\":\"loadgen\",\"scenario\":\"cold\",\"starts\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"mean_ms\":%.3f}\n",
         norch, p50, p99, mean);
  free(ms);
  return 0;
}

static int run_queries(void) {
  enum { REPS = 21 };
  const int COMPLETED = ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_COMPLETED,
            RUNNING = ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_RUNNING;
  const char *pre = id_prefix ? id_prefix : "";
  double t[REPS], first_done, first_run, by_prefix, by_completed, get_one;
  char tok[512], want_prefix[128];
  size_t rows = 0;
  for (int i = 0; i < REPS; i++) rows = query_page(COMPLETED, NULL, 100, NULL, tok, sizeof(tok), &t[i]);
  first_done = median_ms(t, REPS);
  bool ok = rows == (size_t)(norch < 100 ? norch : 100);
  for (int i = 0; i < REPS; i++) query_page(RUNNING, NULL, 100, NULL, tok, sizeof(tok), &t[i]);
  first_run = median_ms(t, REPS);
  /* "<prefix><norch/2>" matches that id and the ids that extend it */
  snprintf(want_prefix, sizeof(want_prefix), "%s%ld", pre, norch / 2);
  for (int i = 0; i < REPS; i++) rows = query_page(-1, want_prefix, 100, NULL, tok, sizeof(tok), &t[i]);
  by_prefix = median_ms(t, REPS);
  ok = ok && rows >= 1;
  ListInstanceIdsRequest lr = LIST_INSTANCE_IDS_REQUEST__INIT;
  Google__Protobuf__Timestamp from;
  lr.completed_time_from = dts_ts_from_ns(&from, 1);
  lr.page_size = 100;
  for (int i = 0; i < REPS; i++) {
    dts_buf b = call_sync("/TaskHubSidecarService/ListInstanceIds", &lr.base, &t[i]);
    dts_buf_free(&b);
  }
  by_completed = median_ms(t, REPS);
  char id[128];
  for (int i = 0; i < REPS; i++) {
    orch_id((norch / REPS) * i, id, sizeof(id));
    GetInstanceRequest g = GET_INSTANCE_REQUEST__INIT;
    g.instance_id = id;
    g.get_inputs_and_outputs = true;
    dts_buf b = call_sync("/TaskHubSidecarService/GetInstance", &g.base, &t[i]);
    GetInstanceResponse *gr = get_instance_response__unpack(NULL, b.n, b.p);
    ok = ok && gr && gr->exists;
    if (gr) get_instance_response__free_unpacked(gr, NULL);
    dts_buf_free(&b);
  }
  get_one = median_ms(t, REPS);
  double all_done_ms, all_run_ms;
  long ndone = count_all(COMPLETED, &all_done_ms), nrun = count_all(RUNNING, &all_run_ms);
  ok = ok && ndone == norch && nrun == nparked;
  printf("loadgen query: %ld finished + %ld running stored; first page (100) by status: finished %.2f ms, running "
         "%.2f ms; by id prefix %.2f ms; by completion time %.2f ms; one finished instance %.2f ms\n",
         ndone, nrun, first_done, first_run, by_prefix, by_completed, get_one);
  printf("loadgen query: baseline, every finished instance paged through (1,000 a page): %.0f ms = %.0fx the first page\n",
         all_done_ms, all_done_ms / first_done);
  printf("{\"bench\":\"loadgen\",\"scenario\":\"query\",\"finished\":%ld,\"running\":%ld,\"first_page_status_ms\":%.3f,"
         "\"first_page_running_ms\":%.3f,\"prefix_ms\":%.3f,\"list_ids_ms\":%.3f,\"get_ms\":%.3f,\"all_pages_ms\":%.0f,"
         "\"check\":%s}\n",
         ndone, nrun, first_done, first_run, by_prefix, by_completed, get_one, all_done_ms, ok ? "true" : "false");
  if (!ok) fprintf(stderr, "loadgen query: counts wrong (want %ld finished, %ld running)\n", norch, nparked);
  return ok ? 0 : 1;
}
static bool all_applied(void) { return applied >= nsignals && acked + failed_calls >= nsignals && inflight == 0; }
static bool all_checked(void) { return inflight == 0; }
static bool all_mixed(void) { return all_finished() && applied >= nsignals && acked + failed_calls >= nsignals; }

/* Reads the entities back (hot: the one entity; spread: up to 200 of them)
 * and checks their state against the signals sent. */
static void check_entities(void) {
  long step = nents > 200 ? nents / 200 : 1;
  for (long i = 0; i < nents; i += step) {
    char id[64];
    entity_id(i, id, sizeof(id));
    GetEntityRequest g = GET_ENTITY_REQUEST__INIT;
    g.instance_id = id;
    g.include_state = true;
    dts_buf b = dts_pb_pack(&g.base);
    unary(K_GET, "/TaskHubSidecarService/GetEntity", b, i);
    dts_buf_free(&b);
  }
  drain_until(all_checked);
}

/* ---- the limits, measured in the same run -------------------------------- */

static bool durability_fsync;

/* Bare unary round trips (Hello) at the scenario's concurrency, for about
 * `n` calls: the ceiling of a call-per-step protocol on this machine. */
static double unary_ceiling(long n) {
  long sent0 = sent, acked0 = acked, nsig0 = nsignals;
  sent = 0;
  acked = 0;
  nsignals = n;
  double t0 = now_s();
  for (long i = 0; i < conc && sent < nsignals; i++) {
    sent++;
    unary(K_HELLO, "/TaskHubSidecarService/Hello", (dts_buf){NULL, 0}, 0);
  }
  drain_until(all_hellos);
  double rate = (double)n / (now_s() - t0);
  sent = sent0;
  acked = acked0;
  nsignals = nsig0;
  return rate;
}

/* LevelDB on this disk, written the way the storage thread writes: batches
 * shaped like one orchestration step (a record, two events, an inbox
 * delete) merged 64 to a write, in the durability mode given; batches/s. */
static double store_ceiling(double seconds) {
  char dir[] = "/tmp/loadgen-store-XXXXXX", err[256];
  if (mkdtemp(dir) == NULL) return 0;
  char db[64];
  snprintf(db, sizeof(db), "%s/db", dir);
  dts_store *st;
  if (dts_store_open(db, durability_fsync ? DTS_DURABILITY_FSYNC : DTS_DURABILITY_OS, &st, err, sizeof(err)) != DTS_OK) {
    fprintf(stderr, "loadgen: %s\n", err);
    return 0;
  }
  char val[300], key[64];
  memset(val, 'v', sizeof(val));
  long nb = 0;
  double t0 = now_s(), dt;
  do {
    dts_batch *b = dts_batch_create();
    for (int g = 0; g < 64; g++, nb++) {
      snprintf(key, sizeof(key), "hub%cI%ld", 0, nb);
      dts_batch_put(b, key, 12, val, sizeof(val));
      for (int e = 0; e < 2; e++) {
        snprintf(key, sizeof(key), "hub%cH%ld-%d", 0, nb, e);
        dts_batch_put(b, key, 16, val, 80);
      }
      snprintf(key, sizeof(key), "hub%cN%ld", 0, nb - 1);
      dts_batch_del(b, key, 12);
    }
    dts_store_write(st, b);
    dts_batch_destroy(b);
    dt = now_s() - t0;
  } while (dt < seconds);
  dts_store_close(st);
  char cmd[96];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "loadgen: could not remove %s\n", dir);
  return (double)nb / dt;
}

int main(int argc, char **argv) {
  const char *scenario = "signals";
  bool signals_given = false, entities_given = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) target = argv[++i];
    else if (strcmp(argv[i], "--taskhub") == 0 && i + 1 < argc) hub = argv[++i];
    else if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc) scenario = argv[++i];
    else if (strcmp(argv[i], "--signals") == 0 && i + 1 < argc) nsignals = atol(argv[++i]), signals_given = true;
    else if (strcmp(argv[i], "--concurrency") == 0 && i + 1 < argc) conc = atol(argv[++i]);
    else if (strcmp(argv[i], "--entities") == 0 && i + 1 < argc) nents = atol(argv[++i]), entities_given = true;
    else if (strcmp(argv[i], "--orchestrations") == 0 && i + 1 < argc) norch = atol(argv[++i]);
    else if (strcmp(argv[i], "--fanout") == 0 && i + 1 < argc) fan_n = atol(argv[++i]);
    else if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc) dtsd_pid = atoi(argv[++i]);
    else if (strcmp(argv[i], "--id-prefix") == 0 && i + 1 < argc) id_prefix = argv[++i];
    else if (strcmp(argv[i], "--parked") == 0 && i + 1 < argc) nparked = atol(argv[++i]);
    else if (strcmp(argv[i], "--activities") == 0 && i + 1 < argc) hello_n = atol(argv[++i]);
    else if (strcmp(argv[i], "--streams") == 0 && i + 1 < argc) nstreams = atoi(argv[++i]);
    else if (strcmp(argv[i], "--channels") == 0 && i + 1 < argc) nchannels = atoi(argv[++i]);
    else if (strcmp(argv[i], "--durability") == 0 && i + 1 < argc) durability_fsync = strcmp(argv[++i], "fsync") == 0;
    else {
      fprintf(stderr, "usage: loadgen --target HOST:PORT [--scenario signals] [--signals S] [--concurrency C] "
                      "[--entities E] [--taskhub NAME]\n");
      return 2;
    }
  }
  static const char *names[] = {"signals", "hello", "fanout", "timers", "events", "raw", "park", "query", "mixed", "cold"};
  scen = -1;
  for (int i = 0; i < 10; i++)
    if (strcmp(scenario, names[i]) == 0) scen = i;
  hello = scen == S_HELLO || scen == S_FANOUT || scen == S_TIMER || scen == S_EVENT || scen == S_PARK || scen == S_MIXED;
  if (scen == S_MIXED && !signals_given) nsignals = norch * 2;
  if (scen == S_MIXED && !entities_given) nents = 100;
  if (scen < 0 || nsignals <= 0 || conc <= 0 || nents <= 0 || norch <= 0 || fan_n <= 0 || fan_n > 100000 || hello_n <= 0 ||
      nstreams < 1 || nstreams > MAX_STREAMS || nchannels < 1 || nchannels > MAX_CHANNELS) {
    fprintf(stderr, "loadgen: scenarios are signals, hello, fanout, timers, events, raw, park, query, mixed, cold; counts "
                    "must be positive\n");
    return 2;
  }
  run_id = (unsigned)(time(NULL) ^ (getpid() << 8));
  grpc_init();
  grpc_channel_credentials *cr = grpc_insecure_credentials_create();
  /* a pool of its own per channel: separate connections, not one shared */
  grpc_arg own_pool = {.type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1};
  grpc_channel_args cargs = {1, &own_pool};
  for (int i = 0; i < nchannels; i++) chs[i] = grpc_channel_create(target, cr, &cargs);
  grpc_channel_credentials_release(cr);
  cq = grpc_completion_queue_create_for_next(NULL);
  final_state = calloc((size_t)nents, sizeof(long));
  if (scen == S_QUERY || scen == S_COLD) {
    int rc = scen == S_QUERY ? run_queries() : run_cold();
    fflush(stdout);
    _exit(rc);
  }

  for (int i = 0; i < nstreams; i++) open_stream(i);
  if (scen == S_RAW) { /* the ceiling: bare unary round trips at the same concurrency */
    double r0 = now_s();
    for (long i = 0; i < conc && sent < nsignals; i++) {
      sent++;
      unary(K_HELLO, "/TaskHubSidecarService/Hello", (dts_buf){NULL, 0}, 0);
    }
    drain_until(all_hellos);
    double rate = (double)nsignals / (now_s() - r0);
    printf("loadgen raw: %ld unary Hello calls, %ld in flight: %.0f calls/s (the gRPC ceiling for a unary call)\n",
           nsignals, conc, rate);
    printf("{\"bench\":\"loadgen\",\"scenario\":\"raw\",\"calls\":%ld,\"concurrency\":%ld,\"calls_per_s\":%.0f}\n",
           nsignals, conc, rate);
    fflush(stdout);
    _exit(failed_calls == 0 ? 0 : 1);
  }
  if (hello) {
    t_start = calloc((size_t)norch, sizeof(double));
    lat_ms = calloc((size_t)norch, sizeof(double));
    late_ms = calloc((size_t)norch, sizeof(double));
    double ceil_unary = 0, ceil_store = 0;
    if (scen != S_PARK) {
      ceil_unary = unary_ceiling(conc * 40 > 20000 ? conc * 40 : 20000);
      ceil_store = store_ceiling(1.0);
    }
    proc_sample cpu0 = sample(dtsd_pid);
    static thread_sample th0, th1;
    sample_threads(dtsd_pid, &th0);
    long calls0 = unary_calls, writes0 = write_calls;
    double h0 = now_s();
    for (long i = 0; i < conc && started < norch; i++) start_orch();
    if (scen == S_MIXED) /* entity signals alongside, a quarter of the concurrency */
      for (long i = 0; i < (conc + 3) / 4 && sent < nsignals; i++) send_signal();
    drain_until(scen == S_PARK ? all_parked : scen == S_MIXED ? all_mixed : all_finished);
    double hdt = now_s() - h0;
    if (scen == S_MIXED) {
      check_entities();
      printf("loadgen mixed: %ld entity signals to %ld entities alongside: %.0f signals/s, check %ld ok %ld bad\n",
             nsignals, nents, (double)nsignals / hdt, checked_ok, checked_bad);
      if (checked_bad > 0) wrong += checked_bad;
    }
    proc_sample cpu1 = sample(dtsd_pid);
    sample_threads(dtsd_pid, &th1);
    serial_share ser = serial_of(&th0, &th1);
    double call_rate = (double)(unary_calls - calls0) / hdt;
    qsort(lat_ms, (size_t)finished, sizeof(double), cmp_d);
    double rate = (double)norch / hdt;
    double p50 = lat_ms[finished / 2], p99 = lat_ms[(size_t)((double)finished * 0.99)],
           p999 = lat_ms[(size_t)((double)finished * 0.999)];
    printf("loadgen %s: %ld orchestrations, %ld in flight: %.0f orchestrations/s = %.0f actions/s, "
           "latency p50 %.2f ms p99 %.2f ms p99.9 %.2f ms, %ld wrong, %ld failed calls, %.0f client calls/s\n",
           scenario, norch, conc, rate, rate * (double)actions_per_orch(), p50, p99, p999, wrong, failed_calls, call_rate);
    if (scen == S_TIMER && nlate > 0) {
      qsort(late_ms, (size_t)nlate, sizeof(double), cmp_d);
      printf("loadgen timers: fired late by p50 %.2f ms, p99 %.2f ms, at the worst %.2f ms (never early: min %.2f ms)\n",
             late_ms[nlate / 2], late_ms[(size_t)((double)nlate * 0.99)], late_ms[nlate - 1], late_ms[0]);
    }
    if (dtsd_pid > 0)
      printf("dtsd: %.3f CPU-s per 1,000 orchestrations, peak RSS %.1f MiB\n",
             (cpu1.cpu_s - cpu0.cpu_s) / (double)norch * 1000.0, cpu1.rss_mib);
    if (dtsd_pid > 0) print_serial(&ser);
    double cpo = (double)(unary_calls - calls0) / (double)norch, wpo = (double)(write_calls - writes0) / (double)norch;
    double lim_unary = ceil_unary > 0 ? ceil_unary / cpo : 0, lim_store = ceil_store > 0 ? ceil_store / wpo : 0;
    if (ceil_unary > 0)
      printf("limits: bare unary round trips %.0f calls/s at %ld in flight; this pattern makes %.1f calls per "
             "orchestration, so at most %.0f orchestrations/s (%.0f actions/s): achieved %.0f%%\n"
             "limits: LevelDB group commit %.0f batches/s (64 per write, durability %s); %.1f commits per "
             "orchestration, so at most %.0f orchestrations/s: achieved %.0f%%\n",
             ceil_unary, conc, cpo, lim_unary, lim_unary * actions_per_orch(), 100.0 * rate / lim_unary, ceil_store,
             durability_fsync ? "fsync" : "os", wpo, lim_store, 100.0 * rate / lim_store);
    printf("{\"bench\":\"loadgen\",\"scenario\":\"%s\",\"orchestrations\":%ld,\"concurrency\":%ld,"
           "\"orchestrations_per_s\":%.0f,\"actions_per_s\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
           "\"wrong\":%ld,\"calls_per_s\":%.0f,\"timer_late_p50_ms\":%.3f,\"timer_late_p99_ms\":%.3f,"
           "\"dtsd_cpu_s_per_1000\":%.3f,\"dtsd_peak_rss_mib\":%.1f,\"unary_ceiling_calls_per_s\":%.0f,"
           "\"unary_limit_orch_per_s\":%.0f,\"store_ceiling_batches_per_s\":%.0f,\"store_limit_orch_per_s\":%.0f,"
           "\"durability\":\"%s\",\"serial_share\":%.3f}\n",
           scenario, norch, conc, rate, rate * (double)actions_per_orch(), p50, p99, p999, wrong, call_rate,
           nlate ? late_ms[nlate / 2] : 0.0, nlate ? late_ms[(size_t)((double)nlate * 0.99)] : 0.0,
           dtsd_pid > 0 ? (cpu1.cpu_s - cpu0.cpu_s) / (double)norch * 1000.0 : 0.0, cpu1.rss_mib, ceil_unary, lim_unary,
           ceil_store, lim_store, durability_fsync ? "fsync" : "os", ser.share);
    fflush(stdout);
    for (int i = 0; i < nstreams; i++) grpc_call_cancel(streams[i]->call, NULL);
    _exit(wrong == 0 && failed_calls == 0 && (scen != S_TIMER || late_ms[0] >= 0) ? 0 : 1);
  }
  /* the ceiling, as for orchestrations: bare round trips over the unary
   * calls one signal makes (its SignalEntity, and its share of a
   * CompleteEntityTask); the work items on the stream are not counted, so
   * it is a bound no engine reaches */
  double ceil_unary = unary_ceiling(conc * 40 > 20000 ? conc * 40 : 20000);
  static thread_sample th0, th1;
  sample_threads(dtsd_pid, &th0);
  proc_sample cpu0 = sample(dtsd_pid);
  long calls0 = unary_calls;
  double t0 = now_s();
  for (long i = 0; i < conc && sent < nsignals; i++) send_signal();
  drain_until(all_applied);
  double dt = now_s() - t0;
  proc_sample cpu1 = sample(dtsd_pid);
  sample_threads(dtsd_pid, &th1);
  serial_share ser = serial_of(&th0, &th1);
  check_entities();
  double cps = (double)(unary_calls - calls0) / (double)nsignals, lim_unary = ceil_unary > 0 ? ceil_unary / cps : 0;
  double cpu_k = dtsd_pid > 0 ? (cpu1.cpu_s - cpu0.cpu_s) / (double)nsignals * 1000.0 : 0.0; /* per 1,000 signals */

  double rate = (double)nsignals / dt;
  printf("loadgen signals: %ld signals to %ld entit%s, %ld in flight: %.0f signals/s, %.1f operations per work item, "
         "%ld failed calls, check %ld ok %ld bad\n",
         nsignals, nents, nents == 1 ? "y" : "ies", conc, rate, (double)applied / (double)(batches ? batches : 1),
         failed_calls, checked_ok, checked_bad);
  if (dtsd_pid > 0) {
    printf("dtsd: %.3f CPU-s per 1,000 signals, peak RSS %.1f MiB\n", cpu_k, cpu1.rss_mib);
    print_serial(&ser);
  }
  if (ceil_unary > 0)
    printf("limits: bare unary round trips %.0f calls/s at %ld in flight; %.2f unary calls per signal, so at most "
           "%.0f signals/s even with no work behind the calls and no work items: achieved %.0f%%\n",
           ceil_unary, conc, cps, lim_unary, 100.0 * rate / lim_unary);
  printf("{\"bench\":\"loadgen\",\"scenario\":\"signals\",\"signals\":%ld,\"entities\":%ld,\"concurrency\":%ld,"
         "\"signals_per_s\":%.0f,\"ops_per_batch\":%.1f,\"failed\":%ld,\"check_bad\":%ld,\"serial_share\":%.3f,"
         "\"dtsd_cpu_s_per_1000\":%.3f,\"unary_ceiling_calls_per_s\":%.0f,\"unary_limit_signals_per_s\":%.0f}\n",
         nsignals, nents, conc, rate, (double)applied / (double)(batches ? batches : 1), failed_calls, checked_bad,
         ser.share, cpu_k, ceil_unary, lim_unary);
  for (int i = 0; i < nstreams; i++) grpc_call_cancel(streams[i]->call, NULL);
  int rc = (checked_bad == 0 && failed_calls == 0) ? 0 : 1;
  fflush(stdout);
  _exit(rc); /* the stream and channel die with the process */
}
