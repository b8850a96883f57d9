/* turn.c -- applying a worker's orchestrator turn to an instance: the
 * dispatched events enter its history, then its actions run, in order:
 * activity work items and durable timers of its own, messages to other
 * instances and entities (stored in its batch, delivered after the
 * commit), and how the execution ends.  Also the checks made before any of
 * it is applied, and rewinding.
 */
#include "actors/instance.h"

#include "runtime/timer.h"

#include <stdio.h>
#include <string.h>

#define A(in) (&(in)->base)
#define TX(in) (&(in)->tx)

static bool terminal(int st) { return dts_status_terminal(st); }

static char *dup_or_null(const char *s) { return s != NULL ? dts_strdup(s) : NULL; }

static void set_str(char **dst, const char *s) {
  dts_free(*dst);
  *dst = dup_or_null(s);
}

dts_buf inst_started_event(const char *id, const inst_spec *s, const char *exec) {
  int64_t now = (int64_t)dts_wall_ns();
  char gen[33];
  if (exec == NULL) exec = s->exec_id;
  if (exec == NULL || exec[0] == '\0') {
    dts_exec_id(gen);
    exec = gen;
  }
  ExecutionStartedEvent es = EXECUTION_STARTED_EVENT__INIT;
  OrchestrationInstance oi = ORCHESTRATION_INSTANCE__INIT;
  Google__Protobuf__StringValue v1, v2, v3;
  Google__Protobuf__Timestamp st;
  es.name = (char *)s->name;
  es.version = dts_sv(&v1, s->version);
  es.input = dts_sv(&v2, s->input);
  oi.instance_id = (char *)id;
  oi.execution_id = dts_sv(&v3, exec);
  es.orchestration_instance = &oi;
  es.parent_instance = (ParentInstanceInfo *)s->parent;
  if (s->sched_start > now) es.scheduled_start_timestamp = dts_ts_from_ns(&st, s->sched_start);
  es.parent_trace_context = (TraceContext *)s->trace;
  dts_tags tg = dts_tags_as(&execution_started_event__tags_entry__descriptor, s->tags, s->ntags);
  es.n_tags = tg.n;
  es.tags = (ExecutionStartedEvent__TagsEntry **)tg.p;
  HistoryEvent e = HISTORY_EVENT__INIT;
  e.event_type_case = EV(EXECUTION_STARTED);
  e.execution_started = &es;
  dts_buf b = eng_ev_pack(&e, -1, now);
  dts_tags_free(&tg);
  return b;
}

/* ======================================================================== */
/* checks before anything is applied                                        */

/* An entity message action's ids, which become store keys (entity ids,
 * request ids of scheduled signals) or must match later (call request
 * ids): NULL when they are valid, else why not. */
static const char *entity_action_problem(const SendEntityMessageAction *sm, char *buf, size_t len) {
  const char *target = NULL, *rid = NULL, *why = NULL;
  bool need_rid = false;
  switch (sm->entity_message_type_case) {
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_SIGNALED:
    target = dts_sv_get(sm->entity_operation_signaled->target_instance_id);
    rid = sm->entity_operation_signaled->request_id;
    break;
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_CALLED:
    target = dts_sv_get(sm->entity_operation_called->target_instance_id);
    rid = sm->entity_operation_called->request_id;
    need_rid = true;
    break;
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_LOCK_REQUESTED: {
    const EntityLockRequestedEvent *l = sm->entity_lock_requested;
    if (l->n_lock_set == 0 || l->n_lock_set > DTS_MAX_LOCK_SET) {
      snprintf(buf, len, "a lock request names %zu entities (1 to %d)", l->n_lock_set, DTS_MAX_LOCK_SET);
      return buf;
    }
    for (size_t i = 0; i < l->n_lock_set; i++)
      if ((why = dts_entity_id_problem(l->lock_set[i])) != NULL) {
        snprintf(buf, len, "lock set entity '%.120s': %s", l->lock_set[i], why);
        return buf;
      }
    return NULL;
  }
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_UNLOCK_SENT:
    target = dts_sv_get(sm->entity_unlock_sent->target_instance_id);
    break;
  default: return NULL;
  }
  if (target == NULL || (why = dts_entity_id_problem(target)) != NULL) {
    snprintf(buf, len, "entity message target '%.120s': %s", target ? target : "", why ? why : "missing");
    return buf;
  }
  if ((need_rid || (rid != NULL && rid[0] != '\0')) && (why = dts_short_id_problem(rid ? rid : "")) != NULL) {
    snprintf(buf, len, "entity message request id %s", why);
    return buf;
  }
  return NULL;
}

const char *turn_problem(inst *in, const OrchestratorResponse *r, char *msg, size_t len) {
  size_t max = in->base.h->cfg.max_payload;
  const char *big = NULL;
  if (r->custom_status && strlen(r->custom_status->value) > max) big = "custom status";
  for (size_t i = 0; i < r->n_actions && big == NULL; i++) {
    const OrchestratorAction *a = r->actions[i];
    const char *p = NULL;
    switch (a->orchestrator_action_type_case) {
    case ACT(SCHEDULE_TASK): p = dts_sv_get(a->schedule_task->input); break;
    case ACT(CREATE_SUB_ORCHESTRATION): p = dts_sv_get(a->create_sub_orchestration->input); break;
    case ACT(SEND_EVENT): p = dts_sv_get(a->send_event->data); break;
    case ACT(COMPLETE_ORCHESTRATION): p = dts_sv_get(a->complete_orchestration->result); break;
    case ACT(SEND_ENTITY_MESSAGE): {
      char why[300];
      const char *bad = entity_action_problem(a->send_entity_message, why, sizeof(why));
      if (bad != NULL) {
        snprintf(msg, len, "action %d: %s", a->id, bad);
        return "InvalidEntityMessage";
      }
      break;
    }
    default: break;
    }
    if (p != NULL && strlen(p) > max) big = "an action's payload";
  }
  if (big == NULL) return NULL;
  eng_payload_too_big(msg, len, big, max);
  return "PayloadTooLarge";
}

bool turn_rewind_pending(const inst *in) {
  for (size_t i = 0; i < in->dispatched.n; i++) {
    HistoryEvent *e = history_event__unpack(NULL, in->dispatched.v[i].b.n, in->dispatched.v[i].b.p);
    bool rw = e != NULL && e->event_type_case == EV(EXECUTION_REWOUND);
    if (e) history_event__free_unpacked(e, NULL);
    if (rw) return true;
  }
  return false;
}

/* ======================================================================== */
/* rewinding (PROTOCOL.md 4.7)                                              */

void inst_rewind(inst *in, const char *reason, const char *parent_exec) {
  int64_t now = (int64_t)dts_wall_ns();
  in->r.status = ST(RUNNING);
  set_str(&in->r.output, NULL);
  dts_buf_free(&in->r.failure);
  in->r.has_failure = false;
  in->r.completed = 0;
  in->r.updated = now;
  HistoryEvent e = HISTORY_EVENT__INIT;
  ExecutionRewoundEvent er = EXECUTION_REWOUND_EVENT__INIT;
  Google__Protobuf__StringValue rs, pe, id;
  er.reason = dts_sv(&rs, reason);
  if (parent_exec != NULL) {
    er.parent_execution_id = dts_sv(&pe, parent_exec);
    er.instance_id = dts_sv(&id, in->base.id);
  }
  e.event_type_case = EV(EXECUTION_REWOUND);
  e.execution_rewound = &er;
  inst_touch(in);
  inst_inbox_add(in, eng_ev_pack(&e, -1, now));
}

/* This instance as the parent of a sub-orchestration created by task `task_id`. */
typedef struct parent_info {
  ParentInstanceInfo pi;
  OrchestrationInstance poi;
  Google__Protobuf__StringValue name, version, exec;
} parent_info;

static ParentInstanceInfo *parent_of(inst *in, int32_t task_id, parent_info *p) {
  parent_instance_info__init(&p->pi);
  orchestration_instance__init(&p->poi);
  p->pi.task_scheduled_id = task_id;
  p->pi.name = dts_sv(&p->name, in->r.name);
  p->pi.version = dts_sv(&p->version, in->r.version);
  p->poi.instance_id = in->base.id;
  p->poi.execution_id = dts_sv(&p->exec, in->r.exec_id);
  p->pi.orchestration_instance = &p->poi;
  return &p->pi;
}

/* A failed sub-orchestration of a rewound parent runs again: a message that
 * rewinds it, carrying its start should it have been purged. */
static void rewind_child(inst *in, const HistoryEvent *created, const char *reason) {
  const SubOrchestrationInstanceCreatedEvent *sc = created->sub_orchestration_instance_created;
  if (dts_instance_id_problem(sc->instance_id) != NULL) return;
  parent_info p;
  ParentInstanceInfo *pi = parent_of(in, created->event_id, &p);
  inst_spec s = {sc->name, dts_sv_get(sc->version), dts_sv_get(sc->input), NULL, 0, (void *const *)sc->tags,
                 sc->n_tags, pi, sc->parent_trace_context};
  dts_buf start = inst_started_event(sc->instance_id, &s, NULL);
  HistoryEvent e = HISTORY_EVENT__INIT;
  ExecutionRewoundEvent er = EXECUTION_REWOUND_EVENT__INIT;
  Google__Protobuf__StringValue rs, pe, id;
  er.reason = dts_sv(&rs, reason);
  er.parent_execution_id = dts_sv(&pe, in->r.exec_id);
  er.instance_id = dts_sv(&id, sc->instance_id);
  e.event_type_case = EV(EXECUTION_REWOUND);
  e.execution_rewound = &er;
  eng_post_ex(A(in), TX(in), 'o', sc->instance_id, eng_ev_pack(&e, -1, (int64_t)dts_wall_ns()), NULL, false, start);
}

/* The worker's rewindOrchestration: the history is replaced by the cleaned
 * one it computed (which already ends with the OrchestratorStarted and
 * ExecutionRewound just dispatched), failed sub-orchestrations are rewound
 * (or started anew if purged), and one more turn is owed with newEvents =
 * [OrchestratorStarted] only. */
static void apply_rewind(inst *in, const RewindOrchestrationAction *ra) {
  dts_key k;
  dts_batch *b = inst_batch(in);
  int64_t now = (int64_t)dts_wall_ns();
  for (size_t i = 0; i < in->dispatched.n; i++) {
    if (in->dispatched.v[i].seq != NOSEQ) {
      dts_key_seq(&k, &in->base.h->ks, 'N', in->base.id, in->dispatched.v[i].seq);
      dts_batch_del(b, k.b, k.n);
    }
    dts_buf_free(&in->dispatched.v[i].b);
  }
  in->dispatched.n = 0;
  for (size_t i = 0; i < in->hist.n; i++) {
    dts_key_seq(&k, &in->base.h->ks, 'H', in->base.id, i);
    dts_batch_del(b, k.b, k.n);
  }
  ev_clear(&in->hist);
  const char *reason = NULL;
  for (size_t i = 0; i < ra->n_new_history; i++) {
    const HistoryEvent *e = ra->new_history[i];
    inst_hist_add(in, dts_pb_pack(&e->base));
    const char *ex = e->event_type_case == EV(EXECUTION_STARTED) && e->execution_started->orchestration_instance
                         ? dts_sv_get(e->execution_started->orchestration_instance->execution_id)
                         : NULL;
    if (ex != NULL && ex[0] != '\0') {
      /* it names the execution's keys: only a valid id is taken */
      if (dts_short_id_problem(ex) == NULL) set_str(&in->r.exec_id, ex);
      else
        DTS_WARN("hub", "[%s] %s: rewound history names an invalid execution id; kept the current one",
                 in->base.h->name, in->base.id);
    }
    if (e->event_type_case == EV(EXECUTION_REWOUND)) reason = dts_sv_get(e->execution_rewound->reason);
  }
  in->r.status = ST(RUNNING);
  in->r.updated = now;
  in->r.force_turn = true;
  inst_touch(in);
  /* sub-orchestrations created and not completed are the failed ones */
  for (size_t i = 0; i < ra->n_new_history; i++) {
    const HistoryEvent *e = ra->new_history[i];
    if (e->event_type_case != EV(SUB_ORCHESTRATION_INSTANCE_CREATED)) continue;
    bool done = false;
    for (size_t j = 0; j < ra->n_new_history && !done; j++)
      done = ra->new_history[j]->event_type_case == EV(SUB_ORCHESTRATION_INSTANCE_COMPLETED) &&
             ra->new_history[j]->sub_orchestration_instance_completed->task_scheduled_id == e->event_id;
    if (!done) rewind_child(in, e, reason);
  }
}

/* ======================================================================== */
/* actions                                                                  */

static void schedule_task(inst *in, const OrchestratorAction *a, int64_t now) {
  const ScheduleTaskAction *st = a->schedule_task;
  HistoryEvent e = HISTORY_EVENT__INIT;
  TaskScheduledEvent ts = TASK_SCHEDULED_EVENT__INIT;
  ts.name = st->name;
  ts.version = st->version;
  ts.input = st->input;
  ts.parent_trace_context = st->parent_trace_context;
  dts_tags tg = dts_tags_as(&task_scheduled_event__tags_entry__descriptor, (void *const *)st->tags, st->n_tags);
  ts.n_tags = tg.n;
  ts.tags = (TaskScheduledEvent__TagsEntry **)tg.p;
  e.event_type_case = EV(TASK_SCHEDULED);
  e.task_scheduled = &ts;
  inst_hist_add(in, eng_ev_pack(&e, a->id, now));
  dts_tags_free(&tg);

  ActivityRequest ar = ACTIVITY_REQUEST__INIT;
  OrchestrationInstance oi = ORCHESTRATION_INSTANCE__INIT;
  Google__Protobuf__StringValue ex;
  ar.name = st->name;
  ar.version = st->version;
  ar.input = st->input;
  oi.instance_id = in->base.id;
  oi.execution_id = dts_sv(&ex, in->r.exec_id);
  ar.orchestration_instance = &oi;
  ar.task_id = a->id;
  ar.parent_trace_context = st->parent_trace_context;
  dts_tags tg2 = dts_tags_as(&activity_request__tags_entry__descriptor, (void *const *)st->tags, st->n_tags);
  ar.n_tags = tg2.n;
  ar.tags = (ActivityRequest__TagsEntry **)tg2.p;
  act *w = dts_calloc(1, sizeof(*w));
  char mk[DTS_ID_MAX + 16];
  snprintf(mk, sizeof(mk), "%s\x01%d", in->r.exec_id, (int)a->id);
  w->key = dts_strdup(mk);
  w->exec_id = dts_strdup(in->r.exec_id);
  w->task_id = a->id;
  w->name = dts_strdup(st->name);
  w->version = dup_or_null(dts_sv_get(st->version));
  w->req = dts_pb_pack(&ar.base);
  dts_tags_free(&tg2);
  dts_key k;
  dts_key_work(&k, &in->base.h->ks, 'A', in->base.id, in->r.exec_id, a->id);
  dts_batch_put(inst_batch(in), k.b, k.n, w->req.p, w->req.n);
  inst_act_add(in, w);
}

static void create_timer(inst *in, const OrchestratorAction *a, int64_t now) {
  HistoryEvent e = HISTORY_EVENT__INIT;
  TimerCreatedEvent tc = TIMER_CREATED_EVENT__INIT;
  tc.fire_at = a->create_timer->fire_at;
  e.event_type_case = EV(TIMER_CREATED);
  e.timer_created = &tc;
  inst_hist_add(in, eng_ev_pack(&e, a->id, now));
  int64_t fire = dts_ts_to_ns(a->create_timer->fire_at);
  HistoryEvent f = HISTORY_EVENT__INIT;
  TimerFiredEvent tf = TIMER_FIRED_EVENT__INIT;
  tf.fire_at = a->create_timer->fire_at;
  tf.timer_id = a->id;
  f.event_type_case = EV(TIMER_FIRED);
  f.timer_fired = &tf;
  dts_buf fev = eng_ev_pack(&f, -1, fire > now ? fire : now);
  dts_key k;
  dts_key_work(&k, &in->base.h->ks, 'T', in->base.id, in->r.exec_id, a->id);
  dts_batch_put(inst_batch(in), k.b, k.n, fev.p, fev.n);
  dts_buf_free(&fev);
  eng_arm_durable(A(in), TX(in), 'o', in->base.id, k.b, k.n, fire);
}

static void create_sub(inst *in, const OrchestratorAction *a, int64_t now) {
  const CreateSubOrchestrationAction *c = a->create_sub_orchestration;
  HistoryEvent e = HISTORY_EVENT__INIT;
  SubOrchestrationInstanceCreatedEvent sc = SUB_ORCHESTRATION_INSTANCE_CREATED_EVENT__INIT;
  sc.instance_id = c->instance_id;
  sc.name = c->name;
  sc.version = c->version;
  sc.input = c->input;
  sc.parent_trace_context = c->parent_trace_context;
  dts_tags tg = dts_tags_as(&sub_orchestration_instance_created_event__tags_entry__descriptor,
                            (void *const *)c->tags, c->n_tags);
  sc.n_tags = tg.n;
  sc.tags = (SubOrchestrationInstanceCreatedEvent__TagsEntry **)tg.p;
  e.event_type_case = EV(SUB_ORCHESTRATION_INSTANCE_CREATED);
  e.sub_orchestration_instance_created = &sc;
  inst_hist_add(in, eng_ev_pack(&e, a->id, now));
  dts_tags_free(&tg);
  const char *why = dts_instance_id_problem(c->instance_id);
  if (why != NULL) { /* into our own inbox: it is the next turn's news */
    HistoryEvent fe = HISTORY_EVENT__INIT;
    TaskFailureDetails fd = TASK_FAILURE_DETAILS__INIT;
    char msg[300];
    snprintf(msg, sizeof(msg), "cannot create sub-orchestration '%.120s': %s", c->instance_id, why);
    fd.error_type = "InvalidArgument";
    fd.error_message = msg;
    SubOrchestrationInstanceFailedEvent sf = SUB_ORCHESTRATION_INSTANCE_FAILED_EVENT__INIT;
    sf.task_scheduled_id = a->id;
    sf.failure_details = &fd;
    fe.event_type_case = EV(SUB_ORCHESTRATION_INSTANCE_FAILED);
    fe.sub_orchestration_instance_failed = &sf;
    inst_inbox_add(in, eng_ev_pack(&fe, -1, now));
    return;
  }
  /* the child starts from a message to it; one that runs already answers
   * with SubOrchestrationInstanceFailed */
  parent_info p;
  ParentInstanceInfo *pi = parent_of(in, a->id, &p);
  inst_spec s = {c->name, dts_sv_get(c->version), dts_sv_get(c->input), NULL, 0, (void *const *)c->tags, c->n_tags,
                 pi, c->parent_trace_context};
  eng_post(A(in), TX(in), 'o', c->instance_id, inst_started_event(c->instance_id, &s, NULL), NULL);
}

static void send_event(inst *in, const OrchestratorAction *a, int64_t now) {
  const SendEventAction *se = a->send_event;
  HistoryEvent e = HISTORY_EVENT__INIT;
  EventSentEvent es = EVENT_SENT_EVENT__INIT;
  const char *target = se->instance ? se->instance->instance_id : "";
  es.instance_id = (char *)target;
  es.name = se->name;
  es.input = se->data;
  e.event_type_case = EV(EVENT_SENT);
  e.event_sent = &es;
  inst_hist_add(in, eng_ev_pack(&e, a->id, now));
  if (dts_instance_id_problem(target) != NULL) return; /* no such instance can exist */
  dts_buf b = eng_ev_raised(se->name, se->data, now);
  if (strcmp(target, in->base.id) == 0) inst_inbox_add(in, b); /* to ourselves: the next turn's news */
  else eng_post(A(in), TX(in), 'o', target, b, NULL);
}

static void terminate_other(inst *in, const OrchestratorAction *a, int64_t now) {
  const TerminateOrchestrationAction *ta = a->terminate_orchestration;
  if (dts_instance_id_problem(ta->instance_id) != NULL || strcmp(ta->instance_id, in->base.id) == 0) return;
  HistoryEvent e = HISTORY_EVENT__INIT;
  ExecutionTerminatedEvent et = EXECUTION_TERMINATED_EVENT__INIT;
  et.input = ta->reason;
  et.recurse = ta->recurse;
  e.event_type_case = EV(EXECUTION_TERMINATED);
  e.execution_terminated = &et;
  eng_post(A(in), TX(in), 'o', ta->instance_id, eng_ev_pack(&e, -1, now), NULL);
}

/* An entity signal held until its time: a durable timer of the entity's. */
static void schedule_signal(inst *in, const char *target, dts_buf sig, const char *rid, int64_t at) {
  dts_key k;
  dts_key_work(&k, &in->base.h->ks, 'T', target, rid, 0);
  dts_batch_put(inst_batch(in), k.b, k.n, sig.p, sig.n);
  dts_buf_free(&sig);
  eng_arm_durable(A(in), TX(in), 'e', target, k.b, k.n, at);
}

static void remove_lock(inst *in, const char *entity) {
  for (size_t i = 0; i < in->r.nlocks; i++) {
    if (strcmp(in->r.locks[i], entity) != 0) continue;
    dts_free(in->r.locks[i]);
    memmove(&in->r.locks[i], &in->r.locks[i + 1], (in->r.nlocks - i - 1) * sizeof(char *));
    in->r.nlocks--;
    return;
  }
}

/* An orchestration's sendEntityMessage action: to the entity's queue. */
static void entity_message(inst *in, const SendEntityMessageAction *sm, int64_t now) {
  HistoryEvent e = HISTORY_EVENT__INIT;
  switch (sm->entity_message_type_case) {
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_SIGNALED: {
    EntityOperationSignaledEvent s = *sm->entity_operation_signaled; /* shallow */
    const char *target = dts_sv_get(s.target_instance_id);
    char gen[37];
    if (s.request_id == NULL || s.request_id[0] == '\0') {
      dts_uuid(gen);
      s.request_id = gen;
    }
    int64_t at = dts_ts_to_ns(s.scheduled_time);
    s.target_instance_id = NULL;
    e.event_type_case = EV(ENTITY_OPERATION_SIGNALED);
    e.entity_operation_signaled = &s;
    dts_buf b = eng_ev_pack(&e, -1, now);
    if (at > now) schedule_signal(in, target, b, s.request_id, at);
    else eng_post(A(in), TX(in), 'e', target, b, NULL);
    break;
  }
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_CALLED: {
    EntityOperationCalledEvent c = *sm->entity_operation_called; /* shallow: message form */
    const char *target = dts_sv_get(c.target_instance_id);
    Google__Protobuf__StringValue pid, pex;
    c.parent_instance_id = dts_sv(&pid, in->base.id);
    c.parent_execution_id = dts_sv(&pex, in->r.exec_id);
    c.target_instance_id = NULL;
    e.event_type_case = EV(ENTITY_OPERATION_CALLED);
    e.entity_operation_called = &c;
    eng_post(A(in), TX(in), 'e', target, eng_ev_pack(&e, -1, now), NULL);
    break;
  }
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_LOCK_REQUESTED: {
    EntityLockRequestedEvent l = *sm->entity_lock_requested;
    Google__Protobuf__StringValue pid;
    l.parent_instance_id = dts_sv(&pid, in->base.id);
    l.position = 0;
    e.event_type_case = EV(ENTITY_LOCK_REQUESTED);
    e.entity_lock_requested = &l;
    /* the set is released when the instance finishes, whatever happens */
    dts_inst_rec_set_locks(&in->r, l.lock_set, l.n_lock_set);
    inst_touch(in);
    eng_post(A(in), TX(in), 'e', l.lock_set[0], eng_ev_pack(&e, -1, now), NULL);
    break;
  }
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_UNLOCK_SENT: {
    EntityUnlockSentEvent u = *sm->entity_unlock_sent;
    const char *target = dts_sv_get(u.target_instance_id);
    Google__Protobuf__StringValue pid;
    u.parent_instance_id = dts_sv(&pid, in->base.id);
    u.target_instance_id = NULL;
    e.event_type_case = EV(ENTITY_UNLOCK_SENT);
    e.entity_unlock_sent = &u;
    remove_lock(in, target);
    inst_touch(in);
    eng_post(A(in), TX(in), 'e', target, eng_ev_pack(&e, -1, now), NULL);
    break;
  }
  default: break;
  }
}

static void record_entity_message(inst *in, const OrchestratorAction *a, int64_t now) {
  /* recorded in history (replay matches it by the action id), then sent */
  const SendEntityMessageAction *sm = a->send_entity_message;
  HistoryEvent e = HISTORY_EVENT__INIT;
  switch (sm->entity_message_type_case) {
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_SIGNALED:
    e.event_type_case = EV(ENTITY_OPERATION_SIGNALED);
    e.entity_operation_signaled = sm->entity_operation_signaled;
    break;
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_CALLED:
    e.event_type_case = EV(ENTITY_OPERATION_CALLED);
    e.entity_operation_called = sm->entity_operation_called;
    break;
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_LOCK_REQUESTED:
    e.event_type_case = EV(ENTITY_LOCK_REQUESTED);
    e.entity_lock_requested = sm->entity_lock_requested;
    break;
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_UNLOCK_SENT:
    e.event_type_case = EV(ENTITY_UNLOCK_SENT);
    e.entity_unlock_sent = sm->entity_unlock_sent;
    break;
  default: break;
  }
  if (e.event_type_case != HISTORY_EVENT__EVENT_TYPE__NOT_SET) inst_hist_add(in, eng_ev_pack(&e, a->id, now));
  entity_message(in, sm, now);
}

/* ======================================================================== */
/* how the execution ends                                                   */

static void continue_as_new(inst *in, const CompleteOrchestrationAction *done) {
  /* restart in place: new execution, carry-over events first, then what
   * arrived during the turn */
  char *input = dup_or_null(dts_sv_get(done->result));
  char *version = dup_or_null(done->new_version ? done->new_version->value : in->r.version);
  char *name = dts_strdup(in->r.name);
  int64_t created = in->r.created;
  ParentInstanceInfo *pi = in->r.parent.n ? parent_instance_info__unpack(NULL, in->r.parent.n, in->r.parent.p) : NULL;
  evvec arrived = in->inbox;
  memset(&in->inbox, 0, sizeof(in->inbox));
  dts_key k;
  for (size_t i = 0; i < arrived.n; i++) { /* re-keyed below */
    dts_key_seq(&k, &in->base.h->ks, 'N', in->base.id, arrived.v[i].seq);
    dts_batch_del(inst_batch(in), k.b, k.n);
  }
  dts_tags keep = dts_tags_of(&execution_started_event__tags_entry__descriptor, &in->r);
  inst_spec s = {name, version, input, NULL, 0, keep.p, keep.n, pi, NULL};
  dts_buf sev = inst_started_event(in->base.id, &s, NULL); /* before the record it reads from is cleared */
  dts_tags_free(&keep);
  inst_clear_execution(in);
  inst_start_from(in, sev, NOSEQ);
  in->r.status = ST(RUNNING); /* never report CONTINUED_AS_NEW */
  in->r.created = created;
  for (size_t i = 0; i < done->n_carryover_events; i++)
    inst_inbox_add(in, dts_pb_pack(&done->carryover_events[i]->base));
  for (size_t i = 0; i < arrived.n; i++) inst_inbox_add(in, arrived.v[i].b);
  dts_free(arrived.v);
  dts_free(input);
  dts_free(version);
  dts_free(name);
  if (pi) parent_instance_info__free_unpacked(pi, NULL);
}

static void complete(inst *in, const CompleteOrchestrationAction *done, int64_t now) {
  int st = done->orchestration_status;
  if (!terminal(st)) st = ST(FAILED);
  in->r.status = st;
  set_str(&in->r.output, dts_sv_get(done->result));
  dts_buf_free(&in->r.failure);
  in->r.failure = done->failure_details != NULL ? dts_pb_pack(&done->failure_details->base) : (dts_buf){NULL, 0};
  in->r.has_failure = done->failure_details != NULL;
  dts_inst_rec_merge_tags(&in->r, (void *const *)done->tags, done->n_tags);
  in->r.completed = now;
  HistoryEvent e = HISTORY_EVENT__INIT;
  ExecutionCompletedEvent ec = EXECUTION_COMPLETED_EVENT__INIT;
  ec.orchestration_status = st;
  ec.result = done->result;
  ec.failure_details = done->failure_details;
  e.event_type_case = EV(EXECUTION_COMPLETED);
  e.execution_completed = &ec;
  inst_hist_add(in, eng_ev_pack(&e, -1, now));
  /* events that arrived during the turn are dropped with the execution */
  dts_key k;
  for (size_t i = 0; i < in->inbox.n; i++) {
    dts_key_seq(&k, &in->base.h->ks, 'N', in->base.id, in->inbox.v[i].seq);
    dts_batch_del(inst_batch(in), k.b, k.n);
  }
  ev_clear(&in->inbox);
  inst_became_terminal(in, now);
  inst_touch(in); /* waiters are answered when this commits */
}

/* ======================================================================== */
/* a turn                                                                   */

/* The dispatched events enter history (all, or the first nprocessed); the
 * unprocessed ones go back before newer ones.  Returns whether the turn
 * ends suspended. */
static bool take_dispatched(inst *in, int32_t nprocessed) {
  size_t n = in->dispatched.n;
  if (nprocessed >= 0 && (size_t)nprocessed < n) n = (size_t)nprocessed;
  if (n == 0 && in->dispatched.n > 0) n = 1; /* OrchestratorStarted always */
  bool suspended = in->r.status == ST(SUSPENDED);
  evvec back = {0};
  dts_key k;
  for (size_t i = 0; i < in->dispatched.n; i++) {
    ev *d = &in->dispatched.v[i];
    if (i < n) {
      HistoryEvent *e = history_event__unpack(NULL, d->b.n, d->b.p);
      if (e != NULL) {
        if (e->event_type_case == EV(EXECUTION_SUSPENDED)) suspended = true;
        if (e->event_type_case == EV(EXECUTION_RESUMED)) suspended = false;
        history_event__free_unpacked(e, NULL);
      }
      if (d->seq != NOSEQ) {
        dts_key_seq(&k, &in->base.h->ks, 'N', in->base.id, d->seq);
        dts_batch_del(inst_batch(in), k.b, k.n);
      }
      inst_hist_add(in, d->b);
    } else if (d->seq != NOSEQ) {
      ev_push(&back, d->b, d->seq);
    } else {
      dts_buf_free(&d->b);
    }
  }
  in->dispatched.n = 0;
  for (size_t i = 0; i < in->inbox.n; i++) ev_push(&back, in->inbox.v[i].b, in->inbox.v[i].seq);
  dts_free(in->inbox.v);
  in->inbox = back;
  return suspended;
}

void turn_apply(inst *in, const Google__Protobuf__StringValue *custom_status, const OrchestrationTraceContext *trace,
                OrchestratorAction **actions, size_t nactions, int32_t nprocessed) {
  int64_t now = (int64_t)dts_wall_ns();
  inst_touch(in);
  for (size_t i = 0; i < nactions; i++)
    if (actions[i]->orchestrator_action_type_case == ACT(REWIND_ORCHESTRATION)) {
      apply_rewind(in, actions[i]->rewind_orchestration);
      return;
    }
  bool suspended = take_dispatched(in, nprocessed);
  if (in->r.status == ST(PENDING)) in->r.status = ST(RUNNING);
  if (in->r.status == ST(RUNNING) && suspended) in->r.status = ST(SUSPENDED);
  if (in->r.status == ST(SUSPENDED) && !suspended) in->r.status = ST(RUNNING);
  if (custom_status != NULL) set_str(&in->r.custom_status, custom_status->value);
  if (trace != NULL) {
    dts_buf_free(&in->r.trace);
    in->r.trace = dts_pb_pack(&trace->base);
  }
  in->r.updated = now;

  const CompleteOrchestrationAction *done = NULL;
  for (size_t i = 0; i < nactions; i++) {
    const OrchestratorAction *a = actions[i];
    switch (a->orchestrator_action_type_case) {
    case ACT(SCHEDULE_TASK): schedule_task(in, a, now); break;
    case ACT(CREATE_TIMER): create_timer(in, a, now); break;
    case ACT(CREATE_SUB_ORCHESTRATION): create_sub(in, a, now); break;
    case ACT(SEND_EVENT): send_event(in, a, now); break;
    case ACT(TERMINATE_ORCHESTRATION): terminate_other(in, a, now); break;
    case ACT(COMPLETE_ORCHESTRATION): done = a->complete_orchestration; break;
    case ACT(SEND_ENTITY_MESSAGE): record_entity_message(in, a, now); break;
    default:
      DTS_WARN("hub", "%s: action %d of kind %d ignored", in->base.id, a->id, (int)a->orchestrator_action_type_case);
      break;
    }
  }
  /* no OrchestratorCompleted marker: DTS does not record one (histories
   * stored before this keep theirs and stay readable) */
  if (done != NULL && done->orchestration_status == ST(CONTINUED_AS_NEW)) continue_as_new(in, done);
  else if (done != NULL) complete(in, done, now);
}

void turn_fail(inst *in, const char *etype, const char *msg) {
  TaskFailureDetails fd = TASK_FAILURE_DETAILS__INIT;
  fd.error_type = (char *)etype;
  fd.error_message = (char *)msg;
  CompleteOrchestrationAction ca = COMPLETE_ORCHESTRATION_ACTION__INIT;
  ca.orchestration_status = ST(FAILED);
  ca.failure_details = &fd;
  OrchestratorAction oa = ORCHESTRATOR_ACTION__INIT;
  oa.id = -1;
  oa.orchestrator_action_type_case = ACT(COMPLETE_ORCHESTRATION);
  oa.complete_orchestration = &ca;
  OrchestratorAction *one = &oa;
  turn_apply(in, NULL, NULL, &one, 1, -1);
}
