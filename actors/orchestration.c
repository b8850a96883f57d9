/* orchestration.c -- what an instance actor does with requests: the client
 * API (start, get, wait, raise, terminate, suspend, resume, rewind,
 * restart, history), a worker's completions and abandons, and the parts
 * of management requests the hub hands it (purge, forced termination).
 */
#include "actors/instance.h"

#include "runtime/timer.h"

#include <stdio.h>
#include <string.h>

static bool terminal(int st) { return dts_status_terminal(st); }

#define A(in) (&(in)->base)
#define TX(in) (&(in)->tx)

static void reply_msg(inst *in, dts_call *c, const ProtobufCMessage *m) { eng_reply_msg(A(in), TX(in), c, m); }

bool inst_payload_ok(inst *in, dts_call *c, const char *what, const char *s) {
  size_t max = in->base.h->cfg.max_payload;
  if (s == NULL || strlen(s) <= max) return true;
  eng_reply_fail(A(in), TX(in), c, DTS_ST_INVALID_ARGUMENT,
                 "%s is %zu bytes, over the payload limit of %zu bytes (--max-payload / DTSD_MAX_PAYLOAD)", what,
                 strlen(s), max);
  return false;
}

static bool must_exist(inst *in, dts_call *c) {
  if (in->exists) return true;
  eng_reply_fail(A(in), TX(in), c, DTS_ST_NOT_FOUND, "no orchestration instance '%.120s' in task hub '%s'",
                 in->base.id, in->base.h->name);
  return false;
}

static void complete_ok(inst *in, dts_call *c) {
  CompleteTaskResponse resp = COMPLETE_TASK_RESPONSE__INIT;
  reply_msg(in, c, &resp.base);
}

/* ======================================================================== */
/* client requests                                                          */

static bool running_like(int st) { return st == ST(RUNNING) || st == ST(PENDING) || st == ST(SUSPENDED); }

static void on_start(inst *in, dts_call *c, CreateInstanceRequest *r) {
  if (r->name[0] == '\0') {
    eng_reply_fail(A(in), TX(in), c, DTS_ST_INVALID_ARGUMENT, "orchestration name must not be empty");
    return;
  }
  if (!inst_payload_ok(in, c, "input", dts_sv_get(r->input))) return;
  const char *exec = dts_sv_get(r->execution_id);
  const char *ewhy = exec != NULL && exec[0] != '\0' ? dts_short_id_problem(exec) : NULL;
  if (ewhy != NULL) {
    eng_reply_fail(A(in), TX(in), c, DTS_ST_INVALID_ARGUMENT, "execution id %s", ewhy);
    return;
  }
  /* the policy is checked whether the id exists or not, as DTS does, and
   * refused with DTS's text (SDK users match on it) */
  const OrchestrationIdReusePolicy *p = r->orchestration_id_reuse_policy;
  bool running_ok = false, terminated_ok = false, here = false;
  for (size_t i = 0; p != NULL && i < p->n_replaceable_status; i++) {
    int s = p->replaceable_status[i];
    if (running_like(s)) running_ok = true;
    if (s == ST(TERMINATED)) terminated_ok = true;
    if (s == in->r.status) here = true;
  }
  if (running_ok && !terminated_ok) {
    eng_reply_fail(A(in), TX(in), c, DTS_ST_INVALID_ARGUMENT,
                   "Invalid reusable statuses: cannot exclude 'Terminated' while also allowing reuse of running "
                   "instances");
    return;
  }
  if (in->exists) {
    bool replace = p != NULL && p->n_replaceable_status > 0 ? here : terminal(in->r.status);
    if (!replace) {
      eng_reply_fail(A(in), TX(in), c, DTS_ST_ALREADY_EXISTS,
                     "an orchestration instance '%.120s' already exists with status %d", in->base.id, in->r.status);
      return;
    }
    /* replacing a running one terminates it: its work is now stale, and
     * locks its old execution held are released */
    if (!terminal(in->r.status)) inst_release_locks(in);
    inst_clear_execution(in);
  }
  inst_spec s = {r->name, dts_sv_get(r->version), dts_sv_get(r->input), exec,
                 dts_ts_to_ns(r->scheduled_start_timestamp), (void *const *)r->tags, r->n_tags, NULL,
                 r->parent_trace_context};
  inst_start_from(in, inst_started_event(in->base.id, &s, NULL), NOSEQ);
  CreateInstanceResponse resp = CREATE_INSTANCE_RESPONSE__INIT;
  resp.instance_id = in->base.id;
  reply_msg(in, c, &resp.base);
}

static void on_wait(inst *in, dts_call *c, GetInstanceRequest *r, bool completion) {
  bool done = !in->exists || (completion ? terminal(in->r.status) : in->r.status != ST(PENDING));
  if (in->stopped && !done) {
    eng_reply_fail(A(in), TX(in), c, DTS_ST_UNAVAILABLE, "dtsd is shutting down");
    return;
  }
  if (in->base.h->ops->ended(c)) return; /* the client went away: nobody waits */
  if (done) {
    eng_reply_ok(A(in), TX(in), c, eng_instance_response(in->exists ? &in->r : NULL, r->get_inputs_and_outputs));
    return;
  }
  waiter *w = dts_calloc(1, sizeof(*w));
  in->base.h->ops->ref(c);
  w->call = c;
  w->completion = completion;
  w->io = r->get_inputs_and_outputs;
  w->next = in->waiters;
  if (in->waiters) in->waiters->prev = w;
  in->waiters = w;
  in->base.h->ops->set_owner_data(c, w);
}

static void on_raise(inst *in, dts_call *c, RaiseEventRequest *r) {
  if (!inst_payload_ok(in, c, "event data", dts_sv_get(r->input)) || !must_exist(in, c)) return;
  inst_inbox_add(in, eng_ev_raised(r->name, r->input, (int64_t)dts_wall_ns()));
  RaiseEventResponse resp = RAISE_EVENT_RESPONSE__INIT;
  reply_msg(in, c, &resp.base);
}

static void on_terminate(inst *in, dts_call *c, TerminateRequest *r) {
  if (!inst_payload_ok(in, c, "output", dts_sv_get(r->output)) || !must_exist(in, c)) return;
  if (!terminal(in->r.status)) {
    HistoryEvent e = HISTORY_EVENT__INIT;
    ExecutionTerminatedEvent et = EXECUTION_TERMINATED_EVENT__INIT;
    Google__Protobuf__StringValue o;
    et.input = dts_sv(&o, dts_sv_get(r->output));
    et.recurse = r->recursive;
    e.event_type_case = EV(EXECUTION_TERMINATED);
    e.execution_terminated = &et;
    inst_inbox_add(in, eng_ev_pack(&e, -1, (int64_t)dts_wall_ns()));
    if (r->recursive) inst_propagate_terminate(in, dts_sv_get(r->output));
  }
  TerminateResponse resp = TERMINATE_RESPONSE__INIT;
  reply_msg(in, c, &resp.base);
}

static void on_suspend_resume(inst *in, dts_call *c, const char *reason, bool suspend) {
  if (!must_exist(in, c)) return;
  int st = in->r.status;
  bool noop = terminal(st) || (suspend && st == ST(SUSPENDED)) ||
              (!suspend && st != ST(SUSPENDED) && st != ST(PENDING) && st != ST(RUNNING));
  if (!noop) {
    HistoryEvent e = HISTORY_EVENT__INIT;
    Google__Protobuf__StringValue rs;
    ExecutionSuspendedEvent es = EXECUTION_SUSPENDED_EVENT__INIT;
    ExecutionResumedEvent er = EXECUTION_RESUMED_EVENT__INIT;
    if (suspend) {
      es.input = dts_sv(&rs, reason);
      e.event_type_case = EV(EXECUTION_SUSPENDED);
      e.execution_suspended = &es;
    } else {
      er.input = dts_sv(&rs, reason);
      e.event_type_case = EV(EXECUTION_RESUMED);
      e.execution_resumed = &er;
    }
    inst_inbox_add(in, eng_ev_pack(&e, -1, (int64_t)dts_wall_ns()));
  }
  if (suspend) {
    SuspendResponse resp = SUSPEND_RESPONSE__INIT;
    reply_msg(in, c, &resp.base);
  } else {
    ResumeResponse resp = RESUME_RESPONSE__INIT;
    reply_msg(in, c, &resp.base);
  }
}

static void on_rewind(inst *in, dts_call *c, RewindInstanceRequest *r) {
  if (!must_exist(in, c)) return;
  if (in->r.status != ST(FAILED)) {
    eng_reply_fail(A(in), TX(in), c, DTS_ST_FAILED_PRECONDITION,
                   "instance '%.120s' has status %d; only FAILED instances can be rewound", in->base.id, in->r.status);
    return;
  }
  inst_rewind(in, dts_sv_get(r->reason), NULL);
  RewindInstanceResponse resp = REWIND_INSTANCE_RESPONSE__INIT;
  reply_msg(in, c, &resp.base);
}

static void on_restart(inst *in, dts_call *c, RestartInstanceRequest *r) {
  if (!must_exist(in, c)) return;
  if (!r->restart_with_new_instance_id && !terminal(in->r.status)) {
    eng_reply_fail(A(in), TX(in), c, DTS_ST_FAILED_PRECONDITION,
                   "instance '%.120s' is still running; only finished instances restart with the same id",
                   in->base.id);
    return;
  }
  dts_tags keep = dts_tags_of(&execution_started_event__tags_entry__descriptor, &in->r);
  inst_spec s = {in->r.name, in->r.version, in->r.input, NULL, 0, keep.p, keep.n, NULL, NULL};
  RestartInstanceResponse resp = RESTART_INSTANCE_RESPONSE__INIT;
  char gen[37];
  if (r->restart_with_new_instance_id) { /* the new instance starts from a message to it */
    dts_uuid(gen);
    eng_post(A(in), TX(in), 'o', gen, inst_started_event(gen, &s, NULL), NULL);
    resp.instance_id = gen;
    dts_tags_free(&keep);
  } else {
    dts_buf sev = inst_started_event(in->base.id, &s, NULL); /* built before the record it reads is cleared */
    dts_tags_free(&keep);
    inst_clear_execution(in);
    inst_start_from(in, sev, NOSEQ);
    resp.instance_id = in->base.id;
  }
  reply_msg(in, c, &resp.base);
}

/* The history of the current execution, in chunks of at most 256 events or
 * about 1 MiB, sent once everything before this read is committed.  An
 * unknown instance or another execution: an empty stream (as DTS does). */
/* Whether the caller's worker stream holds this instance's orchestrator
 * work item (its principal is the lease's). */
static bool holds_lease(inst *in, dts_call *c) {
  dts_hub *h = in->base.h;
  char kind, owner[DTS_ID_MAX + 1], holder[128];
  const char *who = h->ops->principal(c);
  return in->oserial != 0 && who != NULL &&
         eng_token_owner(h, in->otoken, &kind, owner, sizeof(owner), holder, sizeof(holder)) && strcmp(holder, who) == 0;
}

static void on_stream_history(inst *in, dts_call *c, StreamInstanceHistoryRequest *r) {
  if (in->base.h->ops->ended(c)) { /* the client went away already */
    in->base.h->ops->stream_end(c, DTS_ST_CANCELLED, "the call ended");
    return;
  }
  if (in->base.h->ops->lease_bound(c) && !holds_lease(in, c)) {
    in->base.h->ops->stream_end(c, DTS_ST_PERMISSION_DENIED,
                                "a worker reads the history of the instance whose work item its stream holds, only");
    return;
  }
  hstream *s = dts_calloc(1, sizeof(*s));
  in->base.h->ops->ref(c);
  s->call = c;
  s->held = true;
  const char *exec = dts_sv_get(r->execution_id);
  if (in->exists && (exec == NULL || exec[0] == '\0' || strcmp(exec, in->r.exec_id) == 0)) {
    size_t i = 0;
    while (i < in->hist.n) {
      dts_pbw w;
      dts_pbw_init(&w);
      size_t k = 0;
      while (i < in->hist.n && k < 256 && (k == 0 || w.n + in->hist.v[i].b.n < (1u << 20))) {
        dts_pbw_bytes_field(&w, 1, in->hist.v[i].b.p, in->hist.v[i].b.n);
        i++;
        k++;
      }
      dts_bufq_push(&s->q, dts_pbw_take(&w));
    }
  }
  s->next = in->hstreams;
  in->hstreams = s;
  in->base.h->ops->set_owner_data(c, s);
  eng_ticket_cur(A(in), TX(in))->opens = true;
}

/* ======================================================================== */
/* a worker's completions                                                   */

/* Returns true when `r` was kept (buffered as a chunk). */
static bool on_complete_orch(inst *in, dts_call *c, OrchestratorResponse *r) {
  dts_hub *h = in->base.h;
  bool mine = in->oserial != 0 && (r->completion_token[0] == '\0' || strcmp(r->completion_token, in->otoken) == 0);
  if (!mine || (r->instance_id[0] != '\0' && strcmp(r->instance_id, in->base.id) != 0)) {
    eng_log_stale(h, "stale orchestrator completion for '%.120s' (token '%.40s'): ignored", r->instance_id,
                  r->completion_token);
    atomic_fetch_add_explicit(&h->st_stale, 1, memory_order_relaxed);
    complete_ok(in, c);
    return false;
  }
  /* what the turn would store is checked first: a payload over the limit,
   * an action naming an invalid entity or request id, a rewind nobody asked
   * for, too many chunks fail the orchestration (a retry would only produce
   * the same again) */
  char msg[400];
  dts_status est = DTS_ST_INVALID_ARGUMENT;
  const char *etype = turn_problem(in, r, msg, sizeof(msg));
  for (size_t i = 0; etype == NULL && i < r->n_actions; i++)
    if (r->actions[i]->orchestrator_action_type_case == ACT(REWIND_ORCHESTRATION) && !turn_rewind_pending(in)) {
      snprintf(msg, sizeof(msg), "action %d: a rewindOrchestration action answers a rewind, and none is pending",
               r->actions[i]->id);
      etype = "InvalidAction";
    }
  if (etype == NULL && r->is_partial) {
    size_t bytes = protobuf_c_message_get_packed_size(&r->base);
    for (size_t i = 0; i < in->nchunks; i++) bytes += protobuf_c_message_get_packed_size(&in->chunks[i]->base);
    if (in->nchunks + 1 > (size_t)h->cfg.limits.max_chunks || bytes > (size_t)h->cfg.limits.max_chunk_bytes) {
      snprintf(msg, sizeof(msg),
               "a partial completion beyond %d chunks or %ld bytes in one turn (--max-chunks, --max-chunk-bytes)",
               h->cfg.limits.max_chunks, h->cfg.limits.max_chunk_bytes);
      etype = "ResponseTooLarge";
      est = DTS_ST_RESOURCE_EXHAUSTED;
    }
  }
  if (etype != NULL) {
    eng_reply_fail(A(in), TX(in), c, est, "%s", msg);
    inst_end_lease(in);
    inst_chunks_free(in);
    turn_fail(in, etype, msg);
    return false;
  }
  if (r->is_partial) { /* deprecated chunking: buffered until the last chunk */
    in->chunks = dts_realloc(in->chunks, (in->nchunks + 1) * sizeof(*in->chunks));
    in->chunks[in->nchunks++] = r;
    complete_ok(in, c);
    return true;
  }
  size_t nact = r->n_actions;
  for (size_t i = 0; i < in->nchunks; i++) nact += in->chunks[i]->n_actions;
  OrchestratorAction **all = dts_malloc((nact ? nact : 1) * sizeof(*all));
  size_t k = 0;
  int32_t nprocessed = -1;
  OrchestratorResponse *first = in->nchunks > 0 ? in->chunks[0] : r;
  if (first->num_events_processed != NULL) nprocessed = first->num_events_processed->value;
  for (size_t i = 0; i < in->nchunks; i++)
    for (size_t j = 0; j < in->chunks[i]->n_actions; j++) all[k++] = in->chunks[i]->actions[j];
  for (size_t j = 0; j < r->n_actions; j++) all[k++] = r->actions[j];
  inst_end_lease(in);
  turn_apply(in, r->custom_status ? r->custom_status : first->custom_status, first->orchestration_trace_context, all,
             nact, nprocessed);
  dts_free(all);
  inst_chunks_free(in);
  atomic_fetch_add_explicit(&h->st_completions, 1, memory_order_relaxed);
  complete_ok(in, c);
  return false;
}

static act *act_by_task(inst *in, int32_t task) {
  char mk[DTS_ID_MAX + 16];
  snprintf(mk, sizeof(mk), "%s\x01%d", in->r.exec_id, (int)task);
  act *a = dts_map_get(&in->acts, mk);
  return a != NULL && a->serial != 0 ? a : NULL;
}

static void on_complete_act(inst *in, dts_call *c, ActivityResponse *r) {
  dts_hub *h = in->base.h;
  act *a = r->completion_token[0] != '\0' ? inst_act_by_token(in, r->completion_token) : act_by_task(in, r->task_id);
  if (a == NULL) {
    eng_log_stale(h, "stale activity completion for '%.120s' task %d: ignored", r->instance_id, r->task_id);
    atomic_fetch_add_explicit(&h->st_stale, 1, memory_order_relaxed);
    complete_ok(in, c);
    return;
  }
  /* an oversized result becomes the activity's failure, so the
   * orchestration hears about it instead of waiting forever */
  TaskFailureDetails big = TASK_FAILURE_DETAILS__INIT;
  char bigmsg[200];
  bool too_big = r->failure_details == NULL && !inst_payload_ok(in, c, "activity result", dts_sv_get(r->result));
  if (too_big) {
    snprintf(bigmsg, sizeof(bigmsg), "activity result is over the payload limit of %zu bytes", h->cfg.max_payload);
    big.error_type = "PayloadTooLarge";
    big.error_message = bigmsg;
    r->failure_details = &big;
  }
  if (in->exists && strcmp(in->r.exec_id, a->exec_id) == 0) {
    HistoryEvent e = HISTORY_EVENT__INIT;
    TaskCompletedEvent tc = TASK_COMPLETED_EVENT__INIT;
    TaskFailedEvent tf = TASK_FAILED_EVENT__INIT;
    if (r->failure_details != NULL) {
      tf.task_scheduled_id = a->task_id;
      tf.failure_details = r->failure_details;
      e.event_type_case = EV(TASK_FAILED);
      e.task_failed = &tf;
    } else {
      tc.task_scheduled_id = a->task_id;
      tc.result = r->result;
      e.event_type_case = EV(TASK_COMPLETED);
      e.task_completed = &tc;
    }
    inst_inbox_add(in, eng_ev_pack(&e, -1, (int64_t)dts_wall_ns()));
  }
  inst_act_drop(in, a, true);
  atomic_fetch_add_explicit(&h->st_completions, 1, memory_order_relaxed);
  if (too_big) {
    r->failure_details = NULL; /* not ours to free; the failure answer is already queued */
    return;
  }
  complete_ok(in, c);
}

static void on_abandon(inst *in, dts_call *c, int method, const char *token) {
  dts_hub *h = in->base.h;
  uint64_t later = dts_now_ns() + h->cfg.abandon_delay_ns;
  if (method == DTS_M_ABANDON_ORCHESTRATOR && in->oserial != 0 && strcmp(token, in->otoken) == 0) {
    /* its events go back to the head of the inbox (OrchestratorStarted,
     * made at dispatch, goes), and it runs again after the delay */
    inst_end_lease(in);
    evvec back = {0};
    bool forced = true;
    for (size_t i = 0; i < in->dispatched.n; i++) {
      if (in->dispatched.v[i].seq == NOSEQ) {
        dts_buf_free(&in->dispatched.v[i].b);
      } else {
        ev_push(&back, in->dispatched.v[i].b, in->dispatched.v[i].seq);
        forced = false;
      }
    }
    if (in->dispatched.n > 0 && forced) in->r.force_turn = true;
    in->dispatched.n = 0;
    for (size_t i = 0; i < in->inbox.n; i++) ev_push(&back, in->inbox.v[i].b, in->inbox.v[i].seq);
    dts_free(in->inbox.v);
    in->inbox = back;
    inst_chunks_free(in);
    in->not_before = h->cfg.abandon_delay_ns ? later : 0;
  } else if (method == DTS_M_ABANDON_ACTIVITY && inst_act_by_token(in, token) != NULL) {
    act *a = inst_act_by_token(in, token);
    eng_offer_done(h, 'a', in->base.id, a->serial);
    a->serial = 0;
    inst_act_set_token(in, a, "");
    a->not_before = h->cfg.abandon_delay_ns ? later : 0;
    inst_act_unoffered(in, a);
  } else {
    eng_log_stale(h, "abandon with unknown or stale token '%.40s': ignored", token);
  }
  eng_reply_ok(A(in), TX(in), c, eng_empty_answer(method));
}

static void job_purge(inst *in, m_job *j, m_job_done *d);

/* PurgeInstances by this instance's id: it purges itself in this turn (so
 * after whatever reached it before); with recursive, the hub goes on down
 * its tree once this commits, and answers. */
static void on_purge(inst *in, dts_call *c, PurgeInstancesRequest *r) {
  m_job_done *d = eng_job_done_new(in->base.h, 0, in->base.id);
  m_job j = {.op = JOB_PURGE, .recursive = r->recursive};
  job_purge(in, &j, d);
  if (d->st != DTS_ST_OK) {
    eng_reply_fail(A(in), TX(in), c, d->st, "%s", d->msg ? d->msg : "the purge failed");
    dts_msg_free(&d->hdr);
    return;
  }
  if (d->nchildren == 0) {
    PurgeInstancesResponse resp = PURGE_INSTANCES_RESPONSE__INIT;
    Google__Protobuf__BoolValue bv = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;
    bv.value = true;
    resp.deleted_instance_count = d->count;
    resp.is_complete = &bv;
    reply_msg(in, c, &resp.base);
    dts_msg_free(&d->hdr);
    return;
  }
  in->base.h->ops->ref(c);
  d->call = c;
  d->recursive = true;
  eng_job_reply(A(in), TX(in), d);
}

/* ======================================================================== */
/* refusals                                                                 */

static bool writes(int method) {
  switch (method) {
  case DTS_M_START_INSTANCE:
  case DTS_M_RAISE_EVENT:
  case DTS_M_TERMINATE:
  case DTS_M_SUSPEND:
  case DTS_M_RESUME:
  case DTS_M_RESTART_INSTANCE:
  case DTS_M_REWIND_INSTANCE:
  case DTS_M_COMPLETE_ORCHESTRATOR:
  case DTS_M_COMPLETE_ACTIVITY:
  case DTS_M_PURGE_INSTANCES: return true;
  default: return false;
  }
}

/* A change request while the store refuses writes is answered at once with
 * the store's reason, before it changes anything.  A completion's work item
 * goes back to its queue with its token still valid: the same completion
 * sent again once the store takes writes is applied; else it runs again. */
static bool refused(inst *in, m_rpc *r) {
  char why[400] = "";
  dts_err e = eng_writable(in->base.h, why, sizeof(why));
  if (e == DTS_OK) return false;
  dts_hub *h = in->base.h;
  if (r->method == DTS_M_COMPLETE_ORCHESTRATOR) {
    OrchestratorResponse *o = (OrchestratorResponse *)r->req;
    if (in->oserial != 0 && strcmp(o->completion_token, in->otoken) == 0)
      eng_offer_return(h, 'o', in->base.id, in->oserial);
  } else if (r->method == DTS_M_COMPLETE_ACTIVITY) {
    act *a = inst_act_by_token(in, ((ActivityResponse *)r->req)->completion_token);
    if (a != NULL) eng_offer_return(h, 'a', in->base.id, a->serial);
  }
  eng_reply_fail(A(in), TX(in), r->call, eng_status_of(e), "%s", why);
  return true;
}

void inst_on_rpc(inst *in, m_rpc *r) {
  dts_call *c = r->call;
  if (writes(r->method) && refused(in, r)) return;
  if (!inst_load(in)) {
    eng_rd_answer(A(in), TX(in), c);
    return;
  }
  switch (r->method) {
  case DTS_M_START_INSTANCE: on_start(in, c, (CreateInstanceRequest *)r->req); break;
  case DTS_M_GET_INSTANCE: {
    GetInstanceRequest *q = (GetInstanceRequest *)r->req;
    eng_reply_ok(A(in), TX(in), c, eng_instance_response(in->exists ? &in->r : NULL, q->get_inputs_and_outputs));
    break;
  }
  case DTS_M_WAIT_START: on_wait(in, c, (GetInstanceRequest *)r->req, false); break;
  case DTS_M_WAIT_COMPLETION: on_wait(in, c, (GetInstanceRequest *)r->req, true); break;
  case DTS_M_RAISE_EVENT: on_raise(in, c, (RaiseEventRequest *)r->req); break;
  case DTS_M_TERMINATE: on_terminate(in, c, (TerminateRequest *)r->req); break;
  case DTS_M_SUSPEND: on_suspend_resume(in, c, dts_sv_get(((SuspendRequest *)r->req)->reason), true); break;
  case DTS_M_RESUME: on_suspend_resume(in, c, dts_sv_get(((ResumeRequest *)r->req)->reason), false); break;
  case DTS_M_REWIND_INSTANCE: on_rewind(in, c, (RewindInstanceRequest *)r->req); break;
  case DTS_M_RESTART_INSTANCE: on_restart(in, c, (RestartInstanceRequest *)r->req); break;
  case DTS_M_STREAM_HISTORY: on_stream_history(in, c, (StreamInstanceHistoryRequest *)r->req); break;
  case DTS_M_PURGE_INSTANCES: on_purge(in, c, (PurgeInstancesRequest *)r->req); break;
  case DTS_M_COMPLETE_ORCHESTRATOR:
    if (on_complete_orch(in, c, (OrchestratorResponse *)r->req)) r->req = NULL; /* kept as a chunk */
    break;
  case DTS_M_COMPLETE_ACTIVITY: on_complete_act(in, c, (ActivityResponse *)r->req); break;
  case DTS_M_ABANDON_ORCHESTRATOR:
    on_abandon(in, c, r->method, ((AbandonOrchestrationTaskRequest *)r->req)->completion_token);
    break;
  case DTS_M_ABANDON_ACTIVITY:
    on_abandon(in, c, r->method, ((AbandonActivityTaskRequest *)r->req)->completion_token);
    break;
  default:
    eng_reply_fail(A(in), TX(in), c, DTS_ST_INTERNAL, "method %d reached an orchestration instance", r->method);
    break;
  }
}

/* ======================================================================== */
/* parts of management requests                                             */

/* Deletes every key of a prefix "<type><id>\0" in the batch.  False when
 * the store cannot be read (nothing is deleted then). */
typedef struct delctx {
  dts_batch *b;
} delctx;

static bool del_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v, (void)vlen;
  dts_batch_del(((delctx *)c)->b, k, klen);
  return true;
}

static bool del_prefix(inst *in, char type, dts_batch *into) {
  dts_key k;
  dts_key_id(&k, &in->base.h->ks, type, in->base.id);
  dts_key_sep(&k);
  delctx dc = {into};
  char msg[300];
  dts_err e = dts_store_walk(in->base.h->cfg.store, k.b, k.n, k.b, k.n, del_visit, &dc, msg, sizeof(msg));
  if (e != DTS_OK) eng_rd_fail(TX(in), e, "cannot read the keys of instance '%s' to purge them: %s", in->base.id, msg);
  return e == DTS_OK;
}

/* Purge: a finished instance goes, every key of it.  With recursive, its
 * sub-orchestrations are named in the answer (the hub purges them next). */
static void job_purge(inst *in, m_job *j, m_job_done *d) {
  if (!in->exists || !terminal(in->r.status)) return;
  if (j->before != 0 && in->r.completed > j->before) return; /* it finished again since the purger looked */
  dts_batch *extra = dts_batch_create(); /* every read first: one that fails changes nothing */
  bool ok = del_prefix(in, 'A', extra) && del_prefix(in, 'T', extra);
  if (!ok) {
    dts_batch_destroy(extra);
    d->st = eng_status_of(in->tx.rd_code);
    d->msg = dts_strdup(in->tx.rd_msg);
    return;
  }
  if (j->recursive) {
    for (size_t i = 0; i < in->hist.n; i++) {
      HistoryEvent *he = history_event__unpack(NULL, in->hist.v[i].b.n, in->hist.v[i].b.p);
      if (he == NULL) continue;
      if (he->event_type_case == EV(SUB_ORCHESTRATION_INSTANCE_CREATED) &&
          dts_instance_id_problem(he->sub_orchestration_instance_created->instance_id) == NULL) {
        d->children = dts_realloc(d->children, (d->nchildren + 1) * sizeof(char *));
        d->children[d->nchildren++] = dts_strdup(he->sub_orchestration_instance_created->instance_id);
      }
      history_event__free_unpacked(he, NULL);
    }
  }
  dts_batch *b = inst_batch(in);
  dts_batch_append(b, extra);
  dts_batch_destroy(extra);
  inst_clear_execution(in);
  dts_key k;
  dts_key_id(&k, &in->base.h->ks, 'I', in->base.id);
  dts_batch_del(b, k.b, k.n);
  eng_ticket_cur(A(in), TX(in))->changed = true;
  dts_key_id(&k, &in->base.h->ks, 'W', in->base.id);
  dts_batch_del(b, k.b, k.n);
  dts_index_drop(b, &in->base.h->ks, &in->r);
  const char *mk;
  void *v;
  for (size_t it = 0; dts_map_next(&in->acts, &it, &mk, &v);) inst_act_drop(in, v, true);
  /* timers made earlier in this turn: not in the store yet, nor armed */
  eng_ticket *t = eng_ticket_cur(A(in), TX(in));
  size_t keep = 0;
  for (size_t i = 0; i < t->narms; i++) {
    eng_arm *ar = &t->arms[i];
    if (ar->kind == 'o' && strcmp(ar->id, in->base.id) == 0) {
      dts_batch_del(b, ar->key.p, ar->key.n);
      dts_free(ar->id);
      dts_buf_free(&ar->key);
      continue;
    }
    t->arms[keep++] = *ar;
  }
  t->narms = keep;
  dts_inst_rec_fini(&in->r);
  dts_inst_rec_init(&in->r, in->base.id);
  in->exists = false;
  in->stored_status = -1;
  in->dirty = false;
  in->wkey = false;
  d->count = 1;
}

/* SkipGracefulOrchestrationTerminations: straight to TERMINATED, no worker turn. */
static void job_skip(inst *in, m_job *j, m_job_done *d) {
  if (!in->exists || terminal(in->r.status)) return;
  int64_t now = (int64_t)dts_wall_ns();
  inst_end_lease(in);
  for (size_t i = 0; i < in->dispatched.n; i++) ev_push(&in->inbox, in->dispatched.v[i].b, in->dispatched.v[i].seq);
  in->dispatched.n = 0;
  inst_chunks_free(in);
  dts_key k;
  dts_batch *b = inst_batch(in);
  for (size_t i = 0; i < in->inbox.n; i++) {
    if (in->inbox.v[i].seq == NOSEQ) continue;
    dts_key_seq(&k, &in->base.h->ks, 'N', in->base.id, in->inbox.v[i].seq);
    dts_batch_del(b, k.b, k.n);
  }
  ev_clear(&in->inbox);
  inst_touch(in);
  in->r.status = ST(TERMINATED);
  dts_free(in->r.output);
  in->r.output = j->reason ? dts_strdup(j->reason) : NULL;
  in->r.completed = now;
  in->r.updated = now;
  in->r.force_turn = false;
  HistoryEvent e = HISTORY_EVENT__INIT;
  ExecutionCompletedEvent ec = EXECUTION_COMPLETED_EVENT__INIT;
  Google__Protobuf__StringValue rs;
  ec.orchestration_status = ST(TERMINATED);
  ec.result = dts_sv(&rs, j->reason);
  e.event_type_case = EV(EXECUTION_COMPLETED);
  e.execution_completed = &ec;
  inst_hist_add(in, eng_ev_pack(&e, -1, now));
  inst_became_terminal(in, now);
  d->count = 1;
}

void inst_on_job(inst *in, m_job *j) {
  m_job_done *d = eng_job_done_new(in->base.h, j->job, in->base.id);
  char why[400] = "";
  dts_err we = eng_writable(in->base.h, why, sizeof(why));
  if (we != DTS_OK) {
    d->st = eng_status_of(we);
    d->msg = dts_strdup(why);
  } else if (!inst_load(in)) {
    d->st = eng_status_of(in->tx.rd_code);
    d->msg = dts_strdup(in->tx.rd_msg);
  } else if (j->op == JOB_PURGE) {
    job_purge(in, j, d);
  } else if (j->op == JOB_SKIP) {
    job_skip(in, j, d);
  }
  eng_job_reply(A(in), TX(in), d);
}
