/* instance.c -- the orchestration instance actor: its state, reading it
 * back, the messages it accepts, its work items, and leaving memory.
 * Requests are in orchestration.c, a worker's turn in turn.c.
 *
 * One actor per instance id, created by the hub on the first message and
 * read back from the store then (record, history, inbox, activity work
 * items, and messages other actors stored for it).  Its work items go to
 * dispatch after the commit that made them ready; completions come
 * straight here (route.c).  When it has been idle long enough it drops its
 * state (finished ones at once), and once nothing of it is out with a
 * worker it leaves the directory (docs/engine.md, "passivation").
 */
#include "actors/instance.h"

#include "runtime/timer.h"

#include <stdio.h>
#include <string.h>

/* ======================================================================== */
/* events                                                                   */

void ev_push(evvec *v, dts_buf b, uint64_t seq) {
  if (v->n == v->cap) {
    v->cap = v->cap ? v->cap * 2 : 8;
    v->v = dts_realloc(v->v, v->cap * sizeof(ev));
  }
  v->v[v->n++] = (ev){b, seq};
}

void ev_clear(evvec *v) {
  for (size_t i = 0; i < v->n; i++) dts_buf_free(&v->v[i].b);
  v->n = 0;
}

void ev_fini(evvec *v) {
  ev_clear(v);
  dts_free(v->v);
  memset(v, 0, sizeof(*v));
}

static bool terminal(int st) { return dts_status_terminal(st); }

/* ======================================================================== */
/* state                                                                    */

uint64_t inst_serial(inst *in) { return ++in->next_serial; }

dts_batch *inst_batch(inst *in) { return eng_batch(&in->base, &in->tx); }

void inst_touch(inst *in) {
  eng_ticket_cur(&in->base, &in->tx);
  in->dirty = true;
  in->tx.changes++;
}

static void set_loaded(inst *in, bool on) {
  if (in->loaded == on) return;
  in->loaded = on;
  atomic_fetch_add_explicit(&in->base.h->st_instances, on ? 1 : -1, memory_order_relaxed);
}

void inst_chunks_free(inst *in) {
  for (size_t i = 0; i < in->nchunks; i++) orchestrator_response__free_unpacked(in->chunks[i], NULL);
  dts_free(in->chunks);
  in->chunks = NULL;
  in->nchunks = 0;
}

void inst_act_free(act *a) {
  dts_free(a->key);
  dts_free(a->exec_id);
  dts_free(a->name);
  dts_free(a->version);
  dts_buf_free(&a->req);
  dts_free(a);
}

/* Drops the loaded state (record, history, inbox), keeping the activities. */
static void unload(inst *in) {
  ev_fini(&in->hist);
  ev_fini(&in->inbox);
  ev_fini(&in->dispatched);
  inst_chunks_free(in);
  dts_inst_rec_fini(&in->r);
  dts_inst_rec_init(&in->r, in->base.id);
  in->exists = false;
  in->stored_status = -1;
  in->dirty = false;
  in->wkey = false;
  set_loaded(in, false);
}

/* The store-side record of the instance, with its counts. */
static void put_record(inst *in) {
  dts_batch *b = inst_batch(in);
  in->r.history_len = (uint32_t)in->hist.n;
  size_t keys = in->inbox.n;
  for (size_t i = 0; i < in->dispatched.n; i++) keys += in->dispatched.v[i].seq != NOSEQ;
  in->r.inbox_count = (uint32_t)keys + 1;
  in->r.activity_count = (uint32_t)dts_map_len(&in->acts) + 1;
  dts_inst_rec_put(b, &in->base.h->ks, &in->r);
  eng_ticket *t = eng_ticket_cur(&in->base, &in->tx);
  t->changed = true;
  if (!t->has_status) t->st_from = (int8_t)in->stored_status;
  t->has_status = true;
  t->st_to = (int8_t)in->r.status;
  in->stored_status = (int)in->r.status;
  dts_key k;
  dts_key_id(&k, &in->base.h->ks, 'W', in->base.id);
  if (in->r.force_turn && !in->wkey) dts_batch_put(b, k.b, k.n, "", 0);
  if (!in->r.force_turn && in->wkey) dts_batch_del(b, k.b, k.n);
  in->wkey = in->r.force_turn;
}

/* ======================================================================== */
/* reading back                                                             */

typedef struct loadctx {
  inst *in;
  evvec *into;
  size_t plen;   /* the prefix "<hub>\0<type><id>\0" */
  long left;     /* events still expected (-1: to the end of the prefix) */
  bool history;  /* numbered 0, 1, 2... */
  dts_err err;
} loadctx;

static bool load_event(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  loadctx *lc = c;
  if (klen != lc->plen + 8) {
    lc->err = DTS_ECORRUPT;
    return false;
  }
  uint64_t seq = dts_key_be64(k + klen - 8);
  if ((lc->history && seq != lc->into->n) || (!lc->history && seq == NOSEQ)) {
    lc->err = DTS_ECORRUPT;
    return false;
  }
  ev_push(lc->into, dts_buf_copy(v, vlen), lc->history ? NOSEQ : seq);
  return lc->left < 0 || --lc->left > 0;
}

/* Events under "<type><id>\0": `count` of them when known (a scan that
 * stops at the last never walks on into deleted keys), else to the end. */
static dts_err load_events(inst *in, char type, long count, evvec *into) {
  if (count == 0) return DTS_OK;
  dts_key k;
  dts_key_id(&k, &in->base.h->ks, type, in->base.id);
  dts_key_sep(&k);
  loadctx lc = {.in = in, .into = into, .plen = k.n, .left = count, .history = type == 'H'};
  char msg[300];
  dts_err e = dts_store_walk(in->base.h->cfg.store, k.b, k.n, k.b, k.n, load_event, &lc, msg, sizeof(msg));
  if (e == DTS_OK) e = lc.err;
  if (e == DTS_OK && lc.left > 0) e = DTS_ECORRUPT; /* a record that counts more events than there are */
  return e;
}

typedef struct actsctx {
  inst *in;
  long bad;
} actsctx;

static bool load_act(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  actsctx *ac = c;
  inst *in = ac->in;
  char id[DTS_ID_MAX + 2], exec[DTS_ID_MAX + 2];
  int32_t task;
  ActivityRequest *ar = NULL;
  if (!dts_key_split_work(&in->base.h->ks, k, klen, id, exec, &task) || strcmp(id, in->base.id) != 0 ||
      (ar = activity_request__unpack(NULL, vlen, (const uint8_t *)v)) == NULL) {
    ac->bad++;
    return true;
  }
  char mk[DTS_ID_MAX + 16];
  snprintf(mk, sizeof(mk), "%s\x01%d", exec, (int)task);
  if (dts_map_get(&in->acts, mk) == NULL) { /* one kept in memory stays as it is */
    act *a = dts_calloc(1, sizeof(*a));
    a->key = dts_strdup(mk);
    a->exec_id = dts_strdup(exec);
    a->task_id = task;
    a->name = dts_strdup(ar->name);
    a->version = dts_sv_get(ar->version) ? dts_strdup(dts_sv_get(ar->version)) : NULL;
    a->req = dts_buf_copy(v, vlen);
    dts_map_put(&in->acts, a->key, a);
    inst_act_unoffered(in, a);
  }
  activity_request__free_unpacked(ar, NULL);
  return true;
}

static void accept(inst *in, uint64_t seq, const uint8_t *val, size_t n);

static bool load_fail(inst *in, dts_err e, const char *what) {
  eng_msgs_unsure(in->base.h);
  eng_rd_fail(&in->tx, e, "cannot read %s of orchestration instance '%s' from the store", what, in->base.id);
  unload(in);
  return false;
}

bool inst_load(inst *in) {
  if (in->loaded) return true;
  dts_hub *h = in->base.h;
  dts_key k;
  dts_key_id(&k, &h->ks, 'I', in->base.id);
  char *v, msg[300];
  size_t vlen;
  dts_err e = dts_store_read(h->cfg.store, k.b, k.n, &v, &vlen, msg, sizeof(msg));
  if (e != DTS_OK && e != DTS_ENOTFOUND) {
    eng_msgs_unsure(h);
    eng_rd_fail(&in->tx, e, "cannot read orchestration instance '%s' from the store: %s", in->base.id, msg);
    return false;
  }
  dts_inst_rec_fini(&in->r);
  if (e == DTS_OK) {
    bool ok = dts_inst_rec_unpack(v, vlen, &in->r) && strcmp(in->r.id, in->base.id) == 0;
    dts_free(v);
    if (!ok) {
      dts_inst_rec_fini(&in->r);
      dts_inst_rec_init(&in->r, in->base.id);
      eng_msgs_unsure(h);
      eng_rd_fail(&in->tx, DTS_ECORRUPT, "the stored record of orchestration instance '%s' is damaged", in->base.id);
      return false;
    }
    in->exists = true;
    in->stored_status = (int)in->r.status;
    in->wkey = in->r.force_turn;
    if ((e = load_events(in, 'H', in->r.history_len, &in->hist)) != DTS_OK) return load_fail(in, e, "the history");
    long nin = in->r.inbox_count > 0 ? (long)in->r.inbox_count - 1 : -1;
    if ((e = load_events(in, 'N', nin, &in->inbox)) != DTS_OK) return load_fail(in, e, "the inbox");
  } else {
    dts_inst_rec_init(&in->r, in->base.id);
    in->exists = false;
    in->stored_status = -1;
  }
  /* activity work items (when its record says there are some, or does not
   * say), and the messages other actors stored for it */
  actsctx ac = {in, 0};
  if (in->exists && in->r.activity_count != 1) {
    dts_key_id(&k, &h->ks, 'A', in->base.id);
    dts_key_sep(&k);
    e = dts_store_walk(h->cfg.store, k.b, k.n, k.b, k.n, load_act, &ac, msg, sizeof(msg));
    if (e != DTS_OK) return load_fail(in, e, "the activity work items");
  }
  if (ac.bad > 0) {
    DTS_ERROR("hub", "[%s] %s: %ld activity work items cannot be read; skipped", h->name, in->base.id, ac.bad);
    atomic_fetch_add(&h->st_unreadable, ac.bad);
  }
  eng_stored mc = {0};
  e = DTS_OK;
  in->mark = 0; /* nothing read back: every delivery is new */
  if (atomic_load(&h->readback_msgs)) {
    e = eng_stored_read(&in->base, &mc, msg, sizeof(msg));
    /* deliveries below the mark may be among what was just read */
    in->mark = atomic_load(&h->seq);
  }
  set_loaded(in, true);
  for (size_t i = 0; i < mc.n && e == DTS_OK; i++) accept(in, mc.seqs[i], mc.vals[i].p, mc.vals[i].n);
  eng_stored_free(&mc);
  if (e != DTS_OK) return load_fail(in, e, "the messages");
  return true;
}

/* ======================================================================== */
/* inbox and history                                                        */

static void inbox_put(inst *in, dts_buf b, uint64_t seq) {
  dts_key k;
  dts_key_seq(&k, &in->base.h->ks, 'N', in->base.id, seq);
  dts_batch_put(inst_batch(in), k.b, k.n, b.p, b.n);
  ev_push(&in->inbox, b, seq);
  inst_touch(in);
}

bool inst_inbox_add(inst *in, dts_buf b) {
  if (!in->exists || terminal(in->r.status)) {
    dts_buf_free(&b);
    return false;
  }
  inbox_put(in, b, eng_seq_next(in->base.h));
  return true;
}

void inst_hist_add(inst *in, dts_buf b) {
  dts_key k;
  dts_key_seq(&k, &in->base.h->ks, 'H', in->base.id, in->hist.n);
  dts_batch_put(inst_batch(in), k.b, k.n, b.p, b.n);
  ev_push(&in->hist, b, NOSEQ);
}

static bool inbox_has_terminate(const inst *in) {
  for (size_t i = 0; i < in->inbox.n; i++) {
    HistoryEvent *e = history_event__unpack(NULL, in->inbox.v[i].b.n, in->inbox.v[i].b.p);
    bool t = e != NULL && e->event_type_case == EV(EXECUTION_TERMINATED);
    if (e) history_event__free_unpacked(e, NULL);
    if (t) return true;
  }
  return false;
}

void inst_end_lease(inst *in) {
  if (in->oserial != 0) eng_offer_done(in->base.h, 'o', in->base.id, in->oserial);
  in->oserial = 0;
  in->otoken[0] = '\0';
}

void inst_clear_execution(inst *in) {
  dts_batch *b = inst_batch(in);
  dts_key k;
  for (size_t i = 0; i < in->hist.n; i++) {
    dts_key_seq(&k, &in->base.h->ks, 'H', in->base.id, i);
    dts_batch_del(b, k.b, k.n);
  }
  ev_clear(&in->hist);
  evvec *vs[2] = {&in->inbox, &in->dispatched};
  for (int j = 0; j < 2; j++) {
    for (size_t i = 0; i < vs[j]->n; i++) {
      if (vs[j]->v[i].seq == NOSEQ) continue;
      dts_key_seq(&k, &in->base.h->ks, 'N', in->base.id, vs[j]->v[i].seq);
      dts_batch_del(b, k.b, k.n);
    }
    ev_clear(vs[j]);
  }
  inst_end_lease(in); /* its work item is now stale */
  inst_chunks_free(in);
  in->r.force_turn = false;
  inst_touch(in);
}

void inst_release_locks(inst *in) {
  if (in->r.nlocks == 0) return;
  int64_t now = (int64_t)dts_wall_ns();
  for (size_t i = 0; i < in->r.nlocks; i++) {
    HistoryEvent e = HISTORY_EVENT__INIT;
    EntityUnlockSentEvent u = ENTITY_UNLOCK_SENT_EVENT__INIT;
    Google__Protobuf__StringValue pid;
    u.parent_instance_id = dts_sv(&pid, in->base.id);
    e.event_type_case = EV(ENTITY_UNLOCK_SENT);
    e.entity_unlock_sent = &u;
    eng_post(&in->base, &in->tx, 'e', in->r.locks[i], eng_ev_pack(&e, -1, now), NULL);
  }
  dts_inst_rec_set_locks(&in->r, NULL, 0);
  inst_touch(in);
}

/* The instance reached a terminal state: tell its parent, release its locks. */
void inst_became_terminal(inst *in, int64_t now) {
  inst_release_locks(in);
  if (in->r.parent_id == NULL) return;
  HistoryEvent e = HISTORY_EVENT__INIT;
  if (in->r.status == ST(COMPLETED)) {
    SubOrchestrationInstanceCompletedEvent sc = SUB_ORCHESTRATION_INSTANCE_COMPLETED_EVENT__INIT;
    Google__Protobuf__StringValue r;
    sc.task_scheduled_id = in->r.parent_task;
    sc.result = dts_sv(&r, in->r.output);
    e.event_type_case = EV(SUB_ORCHESTRATION_INSTANCE_COMPLETED);
    e.sub_orchestration_instance_completed = &sc;
    eng_post(&in->base, &in->tx, 'o', in->r.parent_id, eng_ev_pack(&e, -1, now), in->r.parent_exec);
    return;
  }
  TaskFailureDetails *fd =
      in->r.has_failure ? task_failure_details__unpack(NULL, in->r.failure.n, in->r.failure.p) : NULL;
  TaskFailureDetails made = TASK_FAILURE_DETAILS__INIT;
  char msg[300];
  if (fd == NULL) {
    snprintf(msg, sizeof(msg), "sub-orchestration '%s' ended with status %s", in->base.id,
             in->r.status == ST(TERMINATED) ? "TERMINATED" : "FAILED");
    made.error_type = in->r.status == ST(TERMINATED) ? "TerminatedException" : "OrchestrationFailed";
    made.error_message = msg;
  }
  SubOrchestrationInstanceFailedEvent sf = SUB_ORCHESTRATION_INSTANCE_FAILED_EVENT__INIT;
  sf.task_scheduled_id = in->r.parent_task;
  sf.failure_details = fd ? fd : &made;
  e.event_type_case = EV(SUB_ORCHESTRATION_INSTANCE_FAILED);
  e.sub_orchestration_instance_failed = &sf;
  eng_post(&in->base, &in->tx, 'o', in->r.parent_id, eng_ev_pack(&e, -1, now), in->r.parent_exec);
  if (fd) task_failure_details__free_unpacked(fd, NULL);
}

/* ExecutionTerminated{recurse} reached the inbox: every sub-orchestration
 * of this execution gets one too (each that is running and names this
 * instance as its parent takes it). */
void inst_propagate_terminate(inst *in, const char *output) {
  int64_t now = (int64_t)dts_wall_ns();
  for (size_t j = 0; j < in->hist.n; j++) {
    HistoryEvent *he = history_event__unpack(NULL, in->hist.v[j].b.n, in->hist.v[j].b.p);
    if (he == NULL) continue;
    if (he->event_type_case == EV(SUB_ORCHESTRATION_INSTANCE_CREATED) &&
        dts_instance_id_problem(he->sub_orchestration_instance_created->instance_id) == NULL) {
      HistoryEvent e = HISTORY_EVENT__INIT;
      ExecutionTerminatedEvent et = EXECUTION_TERMINATED_EVENT__INIT;
      Google__Protobuf__StringValue o;
      et.input = dts_sv(&o, output);
      et.recurse = true;
      e.event_type_case = EV(EXECUTION_TERMINATED);
      e.execution_terminated = &et;
      eng_post_ex(&in->base, &in->tx, 'o', he->sub_orchestration_instance_created->instance_id,
                  eng_ev_pack(&e, -1, now), NULL, true, (dts_buf){NULL, 0});
    }
    history_event__free_unpacked(he, NULL);
  }
}

/* ======================================================================== */
/* starting an execution                                                    */

/* A new execution from its ExecutionStarted event: the record takes what
 * the event says; the event is the inbox's first. */
void inst_start_from(inst *in, dts_buf b, uint64_t seq) {
  HistoryEvent *e = history_event__unpack(NULL, b.n, b.p);
  DTS_ASSERT(e != NULL && e->event_type_case == EV(EXECUTION_STARTED));
  const ExecutionStartedEvent *es = e->execution_started;
  int64_t now = (int64_t)dts_wall_ns();
  dts_inst_rec *r = &in->r;
  const char *exec = es->orchestration_instance ? dts_sv_get(es->orchestration_instance->execution_id) : NULL;
  char gen[33];
  if (exec == NULL || dts_short_id_problem(exec) != NULL) {
    dts_exec_id(gen);
    exec = gen;
  }
  dts_free(r->exec_id);
  r->exec_id = dts_strdup(exec);
  dts_free(r->name);
  r->name = dts_strdup(es->name);
  const char *vals[3] = {dts_sv_get(es->version), dts_sv_get(es->input), NULL};
  char **dst[3] = {&r->version, &r->input, &r->output};
  for (int i = 0; i < 3; i++) {
    dts_free(*dst[i]);
    *dst[i] = vals[i] ? dts_strdup(vals[i]) : NULL;
  }
  dts_free(r->custom_status);
  r->custom_status = NULL;
  dts_buf_free(&r->failure);
  r->has_failure = false;
  r->status = ST(PENDING);
  r->created = now;
  r->updated = now;
  r->completed = 0;
  int64_t ss = dts_ts_to_ns(es->scheduled_start_timestamp);
  r->sched_start = ss > now ? ss : 0;
  dts_inst_rec_set_tags(r, (void *const *)es->tags, es->n_tags);
  dts_inst_rec_set_parent(r, es->parent_instance);
  dts_buf_free(&r->trace);
  r->force_turn = false;
  history_event__free_unpacked(e, NULL);
  in->exists = true;
  in->not_before = 0;
  inbox_put(in, b, seq != NOSEQ ? seq : eng_seq_next(in->base.h));
}

/* ======================================================================== */
/* messages from other actors                                               */

static bool known_seq(const inst *in, uint64_t seq) {
  const evvec *vs[2] = {&in->inbox, &in->dispatched};
  for (int j = 0; j < 2; j++)
    for (size_t i = 0; i < vs[j]->n; i++)
      if (vs[j]->v[i].seq == seq) return true;
  return false;
}

/* A sub-orchestration start for an id that runs: the parent hears it failed. */
static void reject_start(inst *in, const ExecutionStartedEvent *es) {
  const ParentInstanceInfo *p = es->parent_instance;
  if (p == NULL || p->orchestration_instance == NULL ||
      dts_instance_id_problem(p->orchestration_instance->instance_id) != NULL) {
    DTS_WARN("hub", "[%s] cannot start orchestration '%s': an instance with this id is still running",
             in->base.h->name, in->base.id);
    return;
  }
  char msg[300];
  snprintf(msg, sizeof(msg), "cannot create sub-orchestration '%.120s': an instance with this id is still running",
           in->base.id);
  TaskFailureDetails fd = TASK_FAILURE_DETAILS__INIT;
  fd.error_type = "OrchestrationAlreadyExists";
  fd.error_message = msg;
  HistoryEvent e = HISTORY_EVENT__INIT;
  SubOrchestrationInstanceFailedEvent sf = SUB_ORCHESTRATION_INSTANCE_FAILED_EVENT__INIT;
  sf.task_scheduled_id = p->task_scheduled_id;
  sf.failure_details = &fd;
  e.event_type_case = EV(SUB_ORCHESTRATION_INSTANCE_FAILED);
  e.sub_orchestration_instance_failed = &sf;
  eng_post(&in->base, &in->tx, 'o', p->orchestration_instance->instance_id,
           eng_ev_pack(&e, -1, (int64_t)dts_wall_ns()), dts_sv_get(p->orchestration_instance->execution_id));
}

static bool start_request(inst *in, const HistoryEvent *e, const uint8_t *p, size_t n, uint64_t seq) {
  if (in->exists && !terminal(in->r.status)) {
    reject_start(in, e->execution_started);
    return false;
  }
  if (in->exists) inst_clear_execution(in);
  inst_start_from(in, dts_buf_copy(p, n), seq);
  return true;
}

/* A parent's rewind reached a failed sub-orchestration: it runs again, now
 * for the parent's current execution (or starts anew when it was purged). */
static void rewind_request(inst *in, const HistoryEvent *e, const Dtsd__Store__Message *m) {
  const ExecutionRewoundEvent *er = e->execution_rewound;
  const char *pexec = dts_sv_get(er->parent_execution_id);
  if (!in->exists) {
    HistoryEvent *s = m->start.len > 0 ? history_event__unpack(NULL, m->start.len, m->start.data) : NULL;
    if (s != NULL && s->event_type_case == EV(EXECUTION_STARTED)) inst_start_from(in, dts_buf_copy(m->start.data, m->start.len), NOSEQ);
    if (s != NULL) history_event__free_unpacked(s, NULL);
    return;
  }
  if (in->r.status != ST(FAILED)) return;
  if (pexec != NULL && in->r.parent.n > 0) {
    ParentInstanceInfo *pi = parent_instance_info__unpack(NULL, in->r.parent.n, in->r.parent.p);
    if (pi != NULL && pi->orchestration_instance != NULL) {
      Google__Protobuf__StringValue ex;
      ParentInstanceInfo copy = *pi; /* shallow: only the execution id differs */
      OrchestrationInstance oi = *pi->orchestration_instance;
      oi.execution_id = dts_sv(&ex, pexec);
      copy.orchestration_instance = &oi;
      dts_inst_rec_set_parent(&in->r, &copy);
    }
    if (pi) parent_instance_info__free_unpacked(pi, NULL);
  }
  inst_rewind(in, dts_sv_get(er->reason), pexec);
}

/* A message another actor stored under our M key `seq`: taken into the
 * inbox, or dropped.  Either way the M key goes in this turn's batch. */
static void accept(inst *in, uint64_t seq, const uint8_t *val, size_t n) {
  dts_key k;
  dts_key_seq(&k, &in->base.h->ks, 'M', in->base.id, seq);
  dts_batch_del(inst_batch(in), k.b, k.n);
  eng_tx_note_del(&in->base, &in->tx, seq);
  in->tx.changes++;
  Dtsd__Store__Message *m = dtsd__store__message__unpack(NULL, n, val);
  HistoryEvent *e = m != NULL ? history_event__unpack(NULL, m->event.len, m->event.data) : NULL;
  if (e == NULL) {
    DTS_ERROR("hub", "[%s] %s: a stored message does not decode; dropped", in->base.h->name, in->base.id);
    atomic_fetch_add(&in->base.h->st_unreadable, 1);
    if (m != NULL) dtsd__store__message__free_unpacked(m, NULL);
    return;
  }
  switch (e->event_type_case) {
  case EV(EXECUTION_STARTED): start_request(in, e, m->event.data, m->event.len, seq); break;
  case EV(EXECUTION_REWOUND): rewind_request(in, e, m); break;
  default: {
    bool take = in->exists && !terminal(in->r.status);
    if (take && m->expect_exec[0] != '\0') take = strcmp(m->expect_exec, in->r.exec_id) == 0;
    bool term = e->event_type_case == EV(EXECUTION_TERMINATED);
    if (take && term && m->from_parent) take = in->r.parent_id != NULL && strcmp(in->r.parent_id, m->sender) == 0;
    if (!take) break;
    inbox_put(in, dts_buf_copy(m->event.data, m->event.len), seq);
    if (term && e->execution_terminated->recurse) inst_propagate_terminate(in, dts_sv_get(e->execution_terminated->input));
    break;
  }
  }
  history_event__free_unpacked(e, NULL);
  dtsd__store__message__free_unpacked(m, NULL);
}

static void on_deliver(inst *in, m_deliver *d) {
  if (!inst_load(in)) return; /* it stays in the store: the next read-back takes it */
  if (d->seq < in->mark) {    /* the read-back may have taken it already */
    if (known_seq(in, d->seq) || eng_tx_deleting(&in->tx, d->seq)) return;
    dts_key k;
    dts_key_seq(&k, &in->base.h->ks, 'M', in->base.id, d->seq);
    char *v, msg[300];
    size_t vlen;
    dts_err e = dts_store_read(in->base.h->cfg.store, k.b, k.n, &v, &vlen, msg, sizeof(msg));
    if (e != DTS_OK) {
      if (e != DTS_ENOTFOUND)
        DTS_ERROR("hub", "[%s] %s: cannot read a message back (%s); it waits for the next read-back",
                  in->base.h->name, in->base.id, msg);
      return; /* gone: it was taken */
    }
    dts_free(v);
  }
  accept(in, d->seq, d->val.p, d->val.n);
}

/* ======================================================================== */
/* timers                                                                   */

static void arm_wake(inst *in, uint64_t at) {
  if (in->wake_armed || in->stopped) return;
  in->wake_armed = true;
  eng_post_timer(in->base.h, at, TM_WAKE, 'o', in->base.id, NULL, 0, 0);
}

static void retry_timer(inst *in, m_timer *t) {
  eng_post_timer(in->base.h, dts_now_ns() + RETRY_NS, TM_DURABLE, 'o', in->base.id, t->key.p, t->key.n, t->fire_at);
}

/* A durable timer came due: its TimerFired goes to the inbox, once, and
 * never early (the clocks may disagree: then it is armed again). */
static void on_durable(inst *in, m_timer *t) {
  dts_hub *h = in->base.h;
  if (eng_tx_tdeleting(&in->tx, t->key.p, t->key.n)) return;
  char why[400];
  if (eng_writable(h, why, sizeof(why)) != DTS_OK) { /* what it would write could not be stored: later */
    if (!atomic_load(&h->stopping)) retry_timer(in, t);
    return;
  }
  char *v, msg[300];
  size_t vlen;
  dts_err e = dts_store_read(h->cfg.store, t->key.p, t->key.n, &v, &vlen, msg, sizeof(msg));
  if (e == DTS_ENOTFOUND) return; /* fired already */
  if (e != DTS_OK) {
    retry_timer(in, t);
    return;
  }
  HistoryEvent *fe = history_event__unpack(NULL, vlen, (const uint8_t *)v);
  int64_t fire_at = fe != NULL && fe->event_type_case == EV(TIMER_FIRED) ? dts_ts_to_ns(fe->timer_fired->fire_at) : 0;
  if (fe) history_event__free_unpacked(fe, NULL);
  if (fire_at > (int64_t)dts_wall_ns()) {
    dts_free(v);
    eng_post_timer(h, eng_mono_for(fire_at), TM_DURABLE, 'o', in->base.id, t->key.p, t->key.n, fire_at);
    return;
  }
  if (!inst_load(in)) {
    dts_free(v);
    retry_timer(in, t);
    return;
  }
  char id[DTS_ID_MAX + 2], exec[DTS_ID_MAX + 2];
  int32_t tid;
  bool mine = dts_key_split_work(&h->ks, (const char *)t->key.p, t->key.n, id, exec, &tid);
  dts_batch_del(inst_batch(in), t->key.p, t->key.n);
  eng_tx_note_tdel(&in->base, &in->tx, t->key.p, t->key.n);
  in->tx.changes++;
  if (mine && in->exists && strcmp(exec, in->r.exec_id) == 0) inst_inbox_add(in, dts_buf_copy(v, vlen));
  dts_free(v);
}

/* ======================================================================== */
/* work items                                                               */

static dts_buf orchestrator_item(inst *in) {
  dts_pbw r;
  dts_pbw_init(&r);
  dts_pbw_string_field(&r, 1, in->base.id);
  dts_pbw_sv_field(&r, 2, in->r.exec_id);
  for (size_t i = 0; i < in->hist.n; i++) dts_pbw_bytes_field(&r, 3, in->hist.v[i].b.p, in->hist.v[i].b.n);
  for (size_t i = 0; i < in->dispatched.n; i++)
    dts_pbw_bytes_field(&r, 4, in->dispatched.v[i].b.p, in->dispatched.v[i].b.n);
  /* entityParameters is always set: .NET dereferences it (PROTOCOL.md 4.2) */
  OrchestratorEntityParameters ep = ORCHESTRATOR_ENTITY_PARAMETERS__INIT;
  Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
  d.seconds = 30;
  ep.entity_message_reorder_window = &d;
  dts_pbw_msg_field(&r, 5, &ep.base);
  if (in->r.trace.n > 0) dts_pbw_bytes_field(&r, 8, in->r.trace.p, in->r.trace.n);
  dts_buf req = dts_pbw_take(&r);
  dts_pbw w;
  dts_pbw_init(&w);
  dts_pbw_bytes_field(&w, 1, req.p, req.n);
  dts_buf_free(&req);
  return dts_pbw_take(&w);
}

/* The orchestration's next turn, if it has one and may run now. */
static void offer_turn(inst *in) {
  if (!in->loaded || !in->exists || in->oserial != 0 || terminal(in->r.status)) return;
  if (in->inbox.n == 0 && !in->r.force_turn) return;
  uint64_t mono = dts_now_ns();
  int64_t wall = (int64_t)dts_wall_ns();
  if (mono < in->not_before) {
    arm_wake(in, in->not_before);
    return;
  }
  if (in->r.sched_start > wall && !inbox_has_terminate(in)) {
    arm_wake(in, eng_mono_for(in->r.sched_start));
    return;
  }
  /* newEvents = [OrchestratorStarted(now)] + the whole inbox */
  HistoryEvent e = HISTORY_EVENT__INIT;
  OrchestratorStartedEvent os = ORCHESTRATOR_STARTED_EVENT__INIT;
  e.event_type_case = EV(ORCHESTRATOR_STARTED);
  e.orchestrator_started = &os;
  ev_push(&in->dispatched, eng_ev_pack(&e, -1, wall), NOSEQ);
  in->r.force_turn = false;
  for (size_t i = 0; i < in->inbox.n; i++) ev_push(&in->dispatched, in->inbox.v[i].b, in->inbox.v[i].seq);
  in->inbox.n = 0;
  in->oserial = inst_serial(in);
  eng_new_token('o', in->otoken);
  DTS_DEBUG("hub", "[%s] offer orchestration %s (%zu new events)", in->base.h->name, in->base.id, in->dispatched.n);
  eng_offer(&in->base, 'o', in->oserial, in->otoken, in->r.name, in->r.version, orchestrator_item(in));
}

act *inst_act_by_token(inst *in, const char *token) {
  act *a = token[0] != '\0' ? dts_map_get(&in->act_tokens, token) : NULL;
  return a != NULL && a->serial != 0 ? a : NULL;
}

void inst_act_set_token(inst *in, act *a, const char *tok) {
  if (a->token[0] != '\0' && dts_map_get(&in->act_tokens, a->token) == a) dts_map_del(&in->act_tokens, a->token);
  dts_strlcpy(a->token, tok, sizeof(a->token));
  if (a->token[0] != '\0') dts_map_put(&in->act_tokens, a->token, a);
}

/* Every act freed (unload for a wipe, the actor's end): the index goes with them. */
static void acts_free_all(inst *in) {
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&in->acts, &it, &k, &v);) inst_act_free(v);
  dts_map_fini(&in->acts);
  dts_map_init(&in->acts);
  dts_map_fini(&in->act_tokens);
  dts_map_init(&in->act_tokens);
}

void inst_act_unoffered(inst *in, act *a) {
  VEC_PUSH(in->unoffered, in->nunoffered, in->capunoffered, a);
}

static void forget_unoffered(inst *in, act *a) {
  for (size_t i = 0; i < in->nunoffered; i++)
    if (in->unoffered[i] == a) {
      memmove(&in->unoffered[i], &in->unoffered[i + 1], (in->nunoffered - i - 1) * sizeof(act *));
      in->nunoffered--;
      return;
    }
}

/* The activities not out yet, in the order they were made. */
static void offer_acts(inst *in) {
  uint64_t now = dts_now_ns(), soonest = 0;
  size_t keep = 0;
  for (size_t i = 0; i < in->nunoffered; i++) {
    act *a = in->unoffered[i];
    if (a->serial != 0) continue;
    if (now < a->not_before) {
      if (soonest == 0 || a->not_before < soonest) soonest = a->not_before;
      in->unoffered[keep++] = a;
      continue;
    }
    a->serial = inst_serial(in);
    char tok[TOKEN_LEN + 1];
    eng_new_token('a', tok);
    inst_act_set_token(in, a, tok);
    dts_pbw w;
    dts_pbw_init(&w);
    dts_pbw_bytes_field(&w, 2, a->req.p, a->req.n);
    /* an activity scheduled without a version is filtered as of its
     * orchestration's version (docs/orchestrations.md, "Work-item filters") */
    const char *v = a->version != NULL && a->version[0] != '\0' ? a->version : in->r.version;
    eng_offer(&in->base, 'a', a->serial, a->token, a->name, v, dts_pbw_take(&w));
  }
  in->nunoffered = keep;
  if (soonest != 0) arm_wake(in, soonest);
}

void inst_act_add(inst *in, act *a) {
  act *old = dts_map_put(&in->acts, a->key, a);
  if (old != NULL) { /* the same task id again: the newer one stands (same store key) */
    DTS_WARN("hub", "%s: task %d scheduled twice in one execution; the later one replaces the first", in->base.id,
             a->task_id);
    if (old->serial != 0) eng_offer_done(in->base.h, 'a', in->base.id, old->serial);
    inst_act_set_token(in, old, "");
    forget_unoffered(in, old);
    inst_act_free(old);
  }
  inst_act_unoffered(in, a);
}

void inst_act_drop(inst *in, act *a, bool del) {
  if (a->serial != 0) eng_offer_done(in->base.h, 'a', in->base.id, a->serial);
  if (del) {
    dts_key k;
    dts_key_work(&k, &in->base.h->ks, 'A', in->base.id, a->exec_id, a->task_id);
    dts_batch_del(inst_batch(in), k.b, k.n);
    in->tx.changes++;
  }
  if (dts_map_get(&in->acts, a->key) == a) dts_map_del(&in->acts, a->key);
  inst_act_set_token(in, a, "");
  forget_unoffered(in, a);
  inst_act_free(a);
}

static void on_leased(inst *in, m_leased *m) {
  if (m->serial == in->oserial && in->oserial != 0) {
    memcpy(in->otoken, m->token, sizeof(in->otoken));
    return;
  }
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&in->acts, &it, &k, &v);) {
    act *a = v;
    if (a->serial == m->serial) {
      inst_act_set_token(in, a, m->token);
      return;
    }
  }
}

/* ======================================================================== */
/* waiters and history streams                                              */

static void waiter_unlink(inst *in, waiter *w) {
  if (w->prev) w->prev->next = w->next;
  else in->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
}

void inst_check_waiters(inst *in) {
  dts_hub *h = in->base.h;
  for (waiter *w = in->waiters, *next; w != NULL; w = next) {
    next = w->next;
    bool done = !in->exists || (w->completion ? terminal(in->r.status) : in->r.status != ST(PENDING));
    if (!done) continue;
    waiter_unlink(in, w);
    h->ops->set_owner_data(w->call, NULL);
    h->ops->reply(w->call, eng_instance_response(in->exists ? &in->r : NULL, w->io));
    h->ops->unref(w->call);
    dts_free(w);
  }
}

/* Every waiter and history stream ends: `st` (OK: the waiters get "not
 * found", the instance being gone). */
static void end_calls(inst *in, dts_status st, const char *msg) {
  dts_hub *h = in->base.h;
  while (in->waiters != NULL) {
    waiter *w = in->waiters;
    waiter_unlink(in, w);
    h->ops->set_owner_data(w->call, NULL);
    if (st == DTS_ST_OK) h->ops->reply(w->call, eng_instance_response(NULL, false));
    else h->ops->fail(w->call, st, msg);
    h->ops->unref(w->call);
    dts_free(w);
  }
  for (hstream *s = in->hstreams; s != NULL; s = s->next) {
    if (s->ended) continue;
    dts_bufq_clear(&s->q);
    s->ended = true;
    s->held = false;
    h->ops->stream_end(s->call, st == DTS_ST_OK ? DTS_ST_UNAVAILABLE : st, msg);
  }
}

static void hstream_free(inst *in, hstream *s) {
  hstream **pp = &in->hstreams;
  while (*pp != s) pp = &(*pp)->next;
  *pp = s->next;
  dts_bufq_fini(&s->q);
  in->base.h->ops->set_owner_data(s->call, NULL);
  in->base.h->ops->unref(s->call);
  dts_free(s);
}

/* The turn that a history read waited for committed (or not). */
static void open_hstreams(inst *in, bool ok) {
  dts_hub *h = in->base.h;
  for (hstream *s = in->hstreams; s != NULL; s = s->next) {
    if (!s->held || s->ended) continue;
    s->held = false;
    s->ended = true;
    if (!ok) {
      dts_bufq_clear(&s->q);
      h->ops->stream_end(s->call, DTS_ST_UNAVAILABLE, "the history could not be read consistently; try again");
      continue;
    }
    dts_buf b;
    while (dts_bufq_pop(&s->q, &b)) h->ops->stream_send(s->call, b);
    h->ops->stream_end(s->call, DTS_ST_OK, "");
  }
}

static void on_call_event(inst *in, dts_call_event *e) {
  void *od = in->base.h->ops->owner_data(e->call);
  if (od == NULL) return;
  for (hstream *s = in->hstreams; s != NULL; s = s->next) {
    if (s != od) continue;
    if (e->hdr.kind == DTS_CALL_CLOSED) hstream_free(in, s);
    else if (e->hdr.kind == DTS_CALL_SENT && !e->ok) s->ended = true;
    return;
  }
  if (e->hdr.kind != DTS_CALL_CLOSED) return;
  waiter *w = od; /* the client gave up waiting */
  waiter_unlink(in, w);
  in->base.h->ops->set_owner_data(w->call, NULL);
  in->base.h->ops->unref(w->call);
  dts_free(w);
}

/* ======================================================================== */
/* leaving memory                                                           */

/* Something of it is in flight or held: it may not drop its state. */
static bool busy(const inst *in) {
  return in->tx.cur != NULL || in->tx.inflight > 0 || in->tx.reset_needed || in->waiters != NULL ||
         in->hstreams != NULL || in->oserial != 0 || in->nchunks > 0 || in->inbox.n > 0 || in->dispatched.n > 0 ||
         (in->loaded && in->r.force_turn) || in->freezing;
}

/* At the end of a turn: how idle it is, for the hub's sweep; finished and
 * absent instances drop their state at once, and go once nothing is out. */
static void settle_idle(inst *in) {
  eng_actor *a = &in->base;
  if (in->stopped || a->gone) return;
  if (busy(in)) {
    atomic_store_explicit(&a->idle_since, 0, memory_order_relaxed);
    return;
  }
  if (in->loaded && (!in->exists || terminal(in->r.status))) unload(in);
  if (!in->loaded && dts_map_len(&in->acts) == 0) {
    if (!in->left) {
      in->left = true;
      eng_tell_hub(a, H_LEAVE);
    }
    return;
  }
  /* loaded and running: the hub's sweep asks it to leave when it has
   * been idle long enough (0: not loaded, nothing to drop) */
  if (!in->loaded) atomic_store_explicit(&a->idle_since, 0, memory_order_relaxed);
  else if (atomic_load_explicit(&a->idle_since, memory_order_relaxed) == 0)
    atomic_store_explicit(&a->idle_since, dts_now_ns(), memory_order_relaxed);
}

static void on_passivate(inst *in) {
  atomic_store(&in->base.asked, false);
  if (busy(in) || in->stopped || in->base.gone) return;
  unload(in);
  atomic_fetch_add_explicit(&in->base.h->st_passivated, 1, memory_order_relaxed);
  atomic_store_explicit(&in->base.idle_since, 0, memory_order_relaxed);
}

static void on_final(inst *in) {
  in->left = false;
  if (busy(in) || in->loaded || dts_map_len(&in->acts) > 0 || in->stopped) {
    eng_tell_hub(&in->base, H_STAY);
    return;
  }
  in->base.gone = true;
  eng_tell_hub(&in->base, H_GONE);
}

/* The hub's data is being wiped: everything goes, nothing is written. */
static void freeze_now(inst *in) {
  in->freezing = false;
  acts_free_all(in);
  in->nunoffered = 0;
  in->oserial = 0;
  unload(in);
  in->base.gone = true;
  eng_tell_hub(&in->base, H_FROZEN);
}

static void on_freeze(inst *in) {
  end_calls(in, DTS_ST_OK, "");
  if (in->tx.cur != NULL) { /* nothing of this turn goes */
    eng_ticket *t = eng_tx_flush(&in->base, &in->tx);
    if (t != NULL) {
      t->result = DTS_ENOTFOUND;
      eng_tx_done(&in->base, &in->tx, t);
      eng_ticket_free(t);
    }
  }
  if (in->tx.inflight > 0) in->freezing = true;
  else freeze_now(in);
}

/* A change did not reach the store: memory is ahead of it, so it goes and
 * is read back.  What is out with workers is stale; waiters stay. */
static void reset(inst *in) {
  in->tx.reset_needed = false;
  eng_msgs_unsure(in->base.h);
  atomic_fetch_add(&in->base.h->st_resets, 1);
  DTS_ERROR("hub", "[%s] %s: a change was not stored: reading the instance back from the store", in->base.h->name,
            in->base.id);
  inst_end_lease(in);
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&in->acts, &it, &k, &v);) inst_act_drop(in, v, false);
  for (hstream *s = in->hstreams; s != NULL; s = s->next)
    if (s->held && !s->ended) {
      s->held = false;
      s->ended = true;
      dts_bufq_clear(&s->q);
      in->base.h->ops->stream_end(s->call, DTS_ST_UNAVAILABLE,
                                  "the instance was reloaded from the store; read the history again");
    }
  unload(in);
  in->tx.epoch = dts_store_epoch(in->base.h->cfg.store);
  in->tx.rd_code = DTS_OK;
  if (in->waiters != NULL || in->base.h->cfg.passivate_after_ns == 0) inst_load(in);
  in->tx.rd_code = DTS_OK;
  if (in->tx.cur != NULL && dts_batch_empty(in->tx.batch)) { /* the read-back took nothing: nothing to write */
    eng_ticket *t = eng_tx_flush(&in->base, &in->tx);
    if (t != NULL) {
      eng_tx_done(&in->base, &in->tx, t);
      eng_ticket_free(t);
    }
  }
}

/* ======================================================================== */
/* the behaviour                                                            */

static void ticket_done(inst *in, eng_ticket *t) {
  eng_tx_done(&in->base, &in->tx, t);
  if (t->opens) open_hstreams(in, t->result == DTS_OK);
}

/* After the writes of a turn: read back if one failed, then -- when memory
 * is the store's -- waiters, work items, leaving. */
static void settle(inst *in) {
  if (in->tx.reset_needed && !in->stopped) reset(in);
  if (in->freezing && in->tx.inflight == 0) freeze_now(in);
  if (in->base.gone) return;
  if (in->tx.cur == NULL && in->tx.inflight == 0 && in->loaded && !in->stopped) {
    inst_check_waiters(in);
    offer_turn(in);
    offer_acts(in);
  }
  settle_idle(in);
}

static void turn_end(dts_actor *self) {
  inst *in = (inst *)self;
  if (in->base.gone) return;
  if (in->dirty && in->exists) put_record(in);
  in->dirty = false;
  eng_ticket *t = eng_tx_flush(&in->base, &in->tx);
  if (t != NULL) {
    ticket_done(in, t);
    eng_ticket_free(t);
  }
  settle(in);
}

static void on_shutdown(inst *in) {
  in->stopped = true;
  end_calls(in, DTS_ST_UNAVAILABLE, "dtsd is shutting down");
}

static void on_timer(inst *in, m_timer *t) {
  if (t->what == TM_WAKE) {
    in->wake_armed = false;
    if (!in->loaded) inst_load(in);
    in->tx.rd_code = DTS_OK;
    return; /* settle looks at what is ready */
  }
  on_durable(in, t);
  in->tx.rd_code = DTS_OK;
}

static void behaviour(dts_actor *self, dts_msg *m) {
  inst *in = (inst *)self;
  if (in->base.gone) { /* it went: the hub routes this to whoever has the id now */
    if (m->kind == DTS_CALL_SENT || m->kind == DTS_CALL_CLOSED || m->kind == DTS_CALL_DRAINED) {
      on_call_event(in, (dts_call_event *)m); /* its calls are still its own */
      return;
    }
    dts_msg *mv = eng_msg_move(in->base.h, m);
    if (mv != NULL) eng_forward_to_hub(&in->base, mv);
    return;
  }
  in->tx.rd_code = DTS_OK;
  switch (m->kind) {
  case M_RPC: inst_on_rpc(in, (m_rpc *)m); break;
  case M_DELIVER:
    on_deliver(in, (m_deliver *)m);
    in->tx.rd_code = DTS_OK;
    break;
  case M_TIMER: on_timer(in, (m_timer *)m); break;
  case M_LEASED: on_leased(in, (m_leased *)m); break;
  case M_COMMITTED: ticket_done(in, (eng_ticket *)m); break;
  case M_JOB: inst_on_job(in, (m_job *)m); break;
  case M_PASSIVATE: on_passivate(in); break;
  case M_FINAL: on_final(in); break;
  case M_FREEZE: on_freeze(in); break;
  case M_SHUTDOWN: on_shutdown(in); break;
  case M_KICK:
    inst_load(in);
    in->tx.rd_code = DTS_OK;
    break;
  case DTS_CALL_SENT:
  case DTS_CALL_CLOSED:
  case DTS_CALL_DRAINED: on_call_event(in, (dts_call_event *)m); break;
  default: DTS_WARN("hub", "instance %s: unknown message kind %u", in->base.id, m->kind); break;
  }
}

static void fini(dts_actor *self) {
  inst *in = (inst *)self;
  dts_hub *h = in->base.h;
  while (in->waiters != NULL) {
    waiter *w = in->waiters;
    waiter_unlink(in, w);
    h->ops->unref(w->call);
    dts_free(w);
  }
  while (in->hstreams != NULL) hstream_free(in, in->hstreams);
  acts_free_all(in); /* leaves both maps empty, with no table */
  dts_free(in->unoffered);
  unload(in);
  dts_inst_rec_fini(&in->r);
  eng_tx_fini(&in->tx);
  atomic_fetch_sub_explicit(&h->st_actors, 1, memory_order_relaxed);
  eng_actor_fini(&in->base);
  dts_free(in);
}

eng_actor *eng_instance_new(dts_hub *h, const char *id) {
  inst *in = dts_calloc(1, sizeof(*in));
  in->stored_status = -1; /* no record known yet */
  eng_actor_init(&in->base, h, 'o', id, behaviour, fini);
  dts_actor_set_turn_end(&in->base.a, turn_end);
  eng_tx_init(&in->tx);
  dts_inst_rec_init(&in->r, id);
  dts_map_init(&in->acts);
  dts_map_init(&in->act_tokens);
  atomic_fetch_add_explicit(&h->st_actors, 1, memory_order_relaxed);
  return &in->base;
}

void eng_instance_load_now(eng_actor *a) {
  inst *in = (inst *)a;
  if (!inst_load(in)) atomic_fetch_add(&a->h->st_unreadable, 1);
  in->tx.rd_code = DTS_OK;
}
