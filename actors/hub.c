/* hub.c -- the task hub actor: a hub's lifecycle (start-up, shutdown,
 * deletion), the directory of its live actors, and the requests nobody
 * else serves.  Management requests are in jobs.c, query.c, retention.c.
 *
 * The directory.  Only this actor writes it; any thread reads it (route.c).
 * A message for an actor that is not in it comes here (H_MISS): the hub
 * creates the actor -- which reads itself back from the store on its first
 * message -- sends it the message, and only then publishes it, so a
 * sender's later messages cannot overtake the first.  Many misses for one
 * id race harmlessly: they queue here and the second finds the actor.
 *
 * Leaving memory (docs/engine.md).  An idle actor asks to go (H_LEAVE).
 * The hub takes it out of the directory; once every read section that may
 * have seen it has ended (the directory's grace period), nothing can send
 * to it any more, and the hub sends M_FINAL, which it therefore gets after
 * every message sent to it.  It answers H_GONE (it freed its state) or
 * H_STAY (something came meanwhile: it goes back into the directory).
 * Messages for its id that reach the hub in between are held, and follow
 * it (or its successor) in order.
 */
#include "actors/hubint.h"

#include "runtime/timer.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define POLL_NS 1000000ULL /* the directory's grace periods are looked at this often while some are pending */

static hub_state *HS(dts_hub *h) { return h->hs; }

/* ======================================================================== */
/* answers                                                                  */

void hub_answer_fail(dts_hub *h, dts_call *c, dts_status st, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  eng_reply_fail(&h->base, &HS(h)->tx, c, st, "%s", msg);
}

void hub_answer(dts_hub *h, dts_call *c, const ProtobufCMessage *m) { eng_reply_msg(&h->base, &HS(h)->tx, c, m); }

bool hub_refused(dts_hub *h, dts_call *c) {
  char why[400] = "";
  dts_err e = eng_writable(h, why, sizeof(why));
  if (e == DTS_OK) return false;
  hub_answer_fail(h, c, eng_status_of(e), "%s", why);
  return true;
}

/* ======================================================================== */
/* the directory                                                            */

static void set_call_owner(dts_hub *h, dts_msg *m, eng_actor *a) {
  if (m->kind != M_RPC) return;
  m_rpc *r = (m_rpc *)m;
  if (r->call != NULL && eng_owned_method(r->method)) h->ops->set_owner(r->call, &a->a);
}

static void send_to(dts_hub *h, eng_actor *a, dts_msg *m) {
  set_call_owner(h, m, a);
  dts_send(&a->a, m);
}

/* A new actor for kind+id, sent `first` (may be NULL) before it is
 * published: the directory holds the reference its creation gave. */
static eng_actor *create(dts_hub *h, char kind, const char *id, dts_msg **first, size_t nfirst) {
  eng_actor *a = kind == 'e' ? eng_entity_new(h, id) : eng_instance_new(h, id);
  for (size_t i = 0; i < nfirst; i++) send_to(h, a, first[i]);
  a->where = W_LIVE;
  dts_dir_put(h->dir, &a->de);
  return a;
}

static void arm_poll(dts_hub *h) {
  if (HS(h)->poll_armed || atomic_load(&h->stopping)) return;
  HS(h)->poll_armed = true;
  dts_timer_post(h->cfg.timers, dts_now_ns() + POLL_NS, &h->base.a, dts_msg_alloc(H_POLL, sizeof(dts_msg)));
}

/* The grace period after an actor left the directory has passed: nothing
 * sends to it any more.  It gets M_FINAL (or M_FREEZE during a wipe). */
static void final_cb(ck_epoch_entry_t *ep) {
  eng_actor *a = (eng_actor *)(void *)((char *)ep - offsetof(eng_actor, final_ep));
  dts_hub *h = a->h;
  int kind = HS(h)->wiping ? M_FREEZE : M_FINAL;
  a->where = W_FINAL;
  dts_send(&a->a, dts_msg_alloc((uint32_t)kind, sizeof(dts_msg)));
}

/* Takes a live actor out of the directory; it learns so after the grace
 * period.  The directory's reference moves to the leaving map. */
static void withdraw(dts_hub *h, eng_actor *a) {
  dts_dir_entry *e = dts_dir_del(h->dir, a->dkey, a->dklen);
  DTS_ASSERT(e == &a->de);
  a->where = W_LEAVING;
  dts_map_put(&HS(h)->leaving, a->dkey, a);
  dts_dir_defer(h->dir, &a->final_ep, final_cb);
  arm_poll(h);
}

static void on_miss(dts_hub *h, m_miss *x) {
  hub_state *hs = HS(h);
  if (hs->wiping) { /* after the wipe: the actors read back what is left */
    m_miss *kept = (m_miss *)dts_msg_alloc(H_MISS, sizeof(m_miss));
    kept->hdr.drop = eng_msg_drop_miss;
    kept->kind = x->kind;
    kept->id = x->id;
    kept->inner = x->inner;
    x->id = NULL;
    x->inner = NULL;
    VEC_PUSH(hs->queued, hs->nqueued, hs->capqueued, &kept->hdr);
    return;
  }
  dts_msg *inner = x->inner;
  x->inner = NULL;
  char key[DTS_ID_MAX + 2];
  size_t n = strlen(x->id);
  key[0] = x->kind;
  memcpy(key + 1, x->id, n);
  dts_dir_entry *e = dts_dir_find(h->dir, key, n + 1);
  if (e != NULL) { /* created since the sender looked */
    send_to(h, (eng_actor *)(void *)((char *)e - offsetof(eng_actor, de)), inner);
    return;
  }
  key[n + 1] = '\0';
  eng_actor *a = dts_map_get(&hs->leaving, key);
  if (a != NULL) { /* held until it went or stayed */
    VEC_PUSH(a->held, a->nheld, a->capheld, inner);
    return;
  }
  if (atomic_load(&h->stopping)) { /* nothing new starts after shutdown */
    dts_msg_free(inner);
    return;
  }
  create(h, x->kind, x->id, &inner, 1);
}

static void on_leave(dts_hub *h, eng_actor *a) {
  if (a->where != W_LIVE || HS(h)->wiping || HS(h)->shutting_down) return;
  withdraw(h, a);
}

static void on_gone(dts_hub *h, eng_actor *a, bool stay) {
  hub_state *hs = HS(h);
  if (a->where != W_FINAL) return;
  dts_map_del(&hs->leaving, a->dkey);
  dts_msg **held = a->held;
  size_t nheld = a->nheld;
  a->held = NULL;
  a->nheld = a->capheld = 0;
  if (stay) {
    a->where = W_LIVE;
    for (size_t i = 0; i < nheld; i++) send_to(h, a, held[i]);
    dts_dir_put(h->dir, &a->de);
  } else {
    a->where = W_OUT;
    if (nheld > 0 && !atomic_load(&h->stopping)) create(h, a->kind, a->id, held, nheld);
    else
      for (size_t i = 0; i < nheld; i++) dts_msg_free(held[i]);
    dts_actor_unref(&a->a); /* the directory's reference */
  }
  dts_free(held);
}

/* ======================================================================== */
/* timers and ticks                                                         */

static void arm_tick(dts_hub *h, int kind, uint64_t in_ns) {
  if (atomic_load(&h->stopping)) return;
  dts_timer_post(h->cfg.timers, dts_now_ns() + in_ns, &h->base.a, dts_msg_alloc((uint32_t)kind, sizeof(dts_msg)));
}

static void on_timer(dts_hub *h, m_timer *t) {
  if (atomic_load(&h->stopping) || HS(h)->wiping) return;
  m_timer *m = (m_timer *)eng_msg_move(h, &t->hdr);
  m->hdr.kind = M_TIMER;
  eng_send(h, m->kind, m->id, &m->hdr, NULL);
}

/* Idle instances and entities leave memory: those idle for the configured
 * time are asked (M_PASSIVATE); they go once nothing of them is out. */
#define PASSIVATE_BUDGET 20000 /* asked per tick at most */

static void sweep_idle(dts_hub *h) {
  uint64_t after = h->cfg.passivate_after_ns;
  if (after == 0) return;
  uint64_t now = dts_now_ns();
  dts_dir_iter it = DTS_DIR_ITER_INIT;
  dts_dir_entry *e;
  int asked = 0;
  while ((e = dts_dir_next(h->dir, &it)) != NULL && asked < PASSIVATE_BUDGET) {
    eng_actor *a = (eng_actor *)(void *)((char *)e - offsetof(eng_actor, de));
    uint64_t since = atomic_load_explicit(&a->idle_since, memory_order_relaxed);
    if (since == 0 || now - since < after || atomic_load(&a->asked)) continue;
    atomic_store(&a->asked, true);
    dts_send(&a->a, dts_msg_alloc(M_PASSIVATE, sizeof(dts_msg)));
    asked++;
  }
}

static void on_tick(dts_hub *h) {
  if (atomic_load(&h->stopping)) return;
  if (eng_dispatch_paused(h) && !HS(h)->wiping && dts_store_writable(h->cfg.store, NULL, 0) == DTS_OK &&
      !atomic_load(&h->deleted)) {
    DTS_INFO("hub", "[%s] the store takes writes again: resuming dispatch", h->name);
    dts_send(eng_dispatch_actor(h), dts_msg_alloc(D_RESUME, sizeof(dts_msg)));
  }
  sweep_idle(h);
  if (!HS(h)->wiping) retention_sweep(h);
  sched_due(h, false); /* also catches a wall clock that jumped forward */
  arm_tick(h, H_TICK, h->cfg.purge_interval_ns);
}

/* ======================================================================== */
/* wiping the hub's data                                                    */

static bool wipe_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v, (void)vlen;
  dts_batch_del(c, k, klen);
  return true;
}

/* Every actor has dropped its state: the hub's keys go in one batch. */
static void wipe_write(dts_hub *h) {
  hub_state *hs = HS(h);
  dts_key k;
  dts_key_start(&k, &h->ks, '\0');
  k.n--; /* the prefix "<hub>\0" */
  dts_batch *dels = dts_batch_create();
  char msg[300];
  dts_err we = dts_store_walk(h->cfg.store, k.b, k.n, k.b, k.n, wipe_visit, dels, msg, sizeof(msg));
  dts_batch *b = eng_batch(&h->base, &hs->tx);
  if (we == DTS_OK) {
    dts_batch_append(b, dels);
    dts_key_marker(&k, &h->ks, "indexes-v2");
    dts_batch_put(b, k.b, k.n, "1", 1);
    if (hs->wipe_method == DTS_M_DELETE_TASK_HUB) {
      dts_key_hub_marker(&k, h->name, strlen(h->name));
      dts_batch_del(b, k.b, k.n);
    }
  }
  dts_batch_destroy(dels);
  retention_clear(h);
  if (we == DTS_OK) sched_clear(h);
  if (we != DTS_OK) {
    hub_answer_fail(h, hs->wipe_call, eng_status_of(we), "cannot read the task hub's data to remove it: %s", msg);
  } else if (hs->wipe_method == DTS_M_DELETE_TASK_HUB) {
    DTS_INFO("hub", "[%s] deleted: all its data removed", h->name);
    DeleteTaskHubResponse resp = DELETE_TASK_HUB_RESPONSE__INIT;
    hub_answer(h, hs->wipe_call, &resp.base);
  } else {
    DTS_INFO("hub", "[%s] recreated: all its data removed", h->name);
    CreateTaskHubResponse resp = CREATE_TASK_HUB_RESPONSE__INIT;
    hub_answer(h, hs->wipe_call, &resp.base);
  }
  h->ops->unref(hs->wipe_call);
  hs->wipe_call = NULL;
  eng_ticket_cur(&h->base, &hs->tx)->opens = true; /* marks the wipe's ticket (hub_ticket_done) */
}

/* After the wipe's ticket: the hub serves again (or stays deleted). */
static void wipe_done(dts_hub *h, bool ok) {
  hub_state *hs = HS(h);
  bool deleting = hs->wipe_method == DTS_M_DELETE_TASK_HUB;
  hs->wiping = false;
  atomic_store(&h->freezing, false);
  if (deleting && ok) {
    atomic_store(&h->delete_state, 1); /* its name may be served anew now */
    dts_send(eng_dispatch_actor(h), dts_msg_alloc(D_DELETED, sizeof(dts_msg)));
  } else if (deleting) { /* the hub was not deleted after all: it goes on serving what it has */
    atomic_store(&h->deleted, false);
    atomic_store(&h->delete_state, -1);
  }
  dts_msg **q = hs->queued;
  size_t n = hs->nqueued;
  hs->queued = NULL;
  hs->nqueued = hs->capqueued = 0;
  for (size_t i = 0; i < n; i++) dts_send(&h->base.a, q[i]); /* the misses, in order, again */
  dts_free(q);
}

static dts_msg *wrap_miss(char kind, const char *id, dts_msg *inner) {
  m_miss *x = (m_miss *)dts_msg_alloc(H_MISS, sizeof(m_miss));
  x->hdr.drop = eng_msg_drop_miss;
  x->kind = kind;
  x->id = dts_strdup(id);
  x->inner = inner;
  return &x->hdr;
}

static void freeze_one(dts_hub *h, eng_actor *a) {
  hub_state *hs = HS(h);
  hs->freeze_left++;
  if (a->where == W_LIVE) withdraw(h, a); /* M_FREEZE after the grace period (final_cb) */
  /* W_LEAVING: final_cb sends M_FREEZE; W_FINAL: its GONE or STAY counts (on_gone_during_wipe) */
}

static void on_wipe(dts_hub *h, dts_call *c, int method) {
  hub_state *hs = HS(h);
  if (hs->wiping) {
    hub_answer_fail(h, c, DTS_ST_UNAVAILABLE, "the task hub's data is being removed; try again");
    return;
  }
  hs->wiping = true;
  h->ops->ref(c);
  hs->wipe_call = c;
  hs->wipe_method = method;
  atomic_store(&h->freezing, true);
  if (method == DTS_M_DELETE_TASK_HUB) atomic_store(&h->deleted, true); /* nothing more is written */
  dts_send(eng_dispatch_actor(h), dts_msg_alloc(D_CLEAR, sizeof(dts_msg)));
  eng_actor **all = NULL;
  size_t n = 0, cap = 0;
  dts_dir_iter it = DTS_DIR_ITER_INIT;
  dts_dir_entry *e;
  while ((e = dts_dir_next(h->dir, &it)) != NULL) VEC_PUSH(all, n, cap, (eng_actor *)(void *)((char *)e - offsetof(eng_actor, de)));
  const char *k;
  void *v;
  for (size_t i2 = 0; dts_map_next(&hs->leaving, &i2, &k, &v);) VEC_PUSH(all, n, cap, (eng_actor *)v);
  for (size_t i = 0; i < n; i++) freeze_one(h, all[i]);
  dts_free(all);
  if (hs->freeze_left == 0) wipe_write(h);
}

static void on_frozen(dts_hub *h, eng_actor *a) {
  hub_state *hs = HS(h);
  if (a->where == W_FINAL || a->where == W_LEAVING) {
    dts_map_del(&hs->leaving, a->dkey);
    for (size_t i = 0; i < a->nheld; i++)
      VEC_PUSH(hs->queued, hs->nqueued, hs->capqueued, wrap_miss(a->kind, a->id, a->held[i]));
    a->nheld = 0;
    a->where = W_OUT;
    dts_actor_unref(&a->a);
  }
  if (hs->wiping && --hs->freeze_left == 0) wipe_write(h);
}

/* During a wipe, an actor that answers M_FINAL (sent before the wipe began)
 * counts as frozen when it went; one that stays is frozen now. */
static void on_gone_during_wipe(dts_hub *h, eng_actor *a, bool stay) {
  if (a->where != W_FINAL) return;
  if (stay) {
    dts_send(&a->a, dts_msg_alloc(M_FREEZE, sizeof(dts_msg)));
    return;
  }
  on_frozen(h, a);
}

/* ======================================================================== */
/* requests nobody else serves                                              */

/* A request whose id cannot name an actor, or whose token is not current:
 * answered as for an instance or entity that does not exist. */
static void on_unroutable(dts_hub *h, m_rpc *r) {
  dts_call *c = r->call;
  switch (r->method) {
  case DTS_M_START_INSTANCE: {
    const char *id = ((CreateInstanceRequest *)r->req)->instance_id;
    hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "invalid instance id '%.120s': %s", id, dts_instance_id_problem(id));
    return;
  }
  case DTS_M_GET_INSTANCE:
  case DTS_M_WAIT_START:
  case DTS_M_WAIT_COMPLETION: eng_reply_ok(&h->base, &HS(h)->tx, c, eng_instance_response(NULL, false)); return;
  case DTS_M_STREAM_HISTORY: h->ops->stream_end(c, DTS_ST_OK, ""); return;
  case DTS_M_SIGNAL_ENTITY: {
    const char *id = ((SignalEntityRequest *)r->req)->instance_id;
    hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "invalid entity id '%.120s': %s", id, dts_entity_id_problem(id));
    return;
  }
  case DTS_M_GET_ENTITY: {
    GetEntityResponse resp = GET_ENTITY_RESPONSE__INIT;
    hub_answer(h, c, &resp.base);
    return;
  }
  case DTS_M_COMPLETE_ORCHESTRATOR:
  case DTS_M_COMPLETE_ACTIVITY:
  case DTS_M_COMPLETE_ENTITY:
    eng_log_stale(h, "stale completion (unknown or stale token): ignored");
    atomic_fetch_add_explicit(&h->st_stale, 1, memory_order_relaxed);
    eng_reply_ok(&h->base, &HS(h)->tx, c, eng_empty_answer(r->method));
    return;
  case DTS_M_ABANDON_ORCHESTRATOR:
  case DTS_M_ABANDON_ACTIVITY:
  case DTS_M_ABANDON_ENTITY:
    eng_log_stale(h, "abandon with unknown or stale token: ignored");
    eng_reply_ok(&h->base, &HS(h)->tx, c, eng_empty_answer(r->method));
    return;
  default: {
    const char *id = "";
    switch (r->method) {
    case DTS_M_RAISE_EVENT: id = ((RaiseEventRequest *)r->req)->instance_id; break;
    case DTS_M_TERMINATE: id = ((TerminateRequest *)r->req)->instance_id; break;
    case DTS_M_SUSPEND: id = ((SuspendRequest *)r->req)->instance_id; break;
    case DTS_M_RESUME: id = ((ResumeRequest *)r->req)->instance_id; break;
    case DTS_M_REWIND_INSTANCE: id = ((RewindInstanceRequest *)r->req)->instance_id; break;
    case DTS_M_RESTART_INSTANCE: id = ((RestartInstanceRequest *)r->req)->instance_id; break;
    default:
      hub_answer_fail(h, c, DTS_ST_INTERNAL, "method %d reached the task hub, which does not serve it", r->method);
      return;
    }
    hub_answer_fail(h, c, DTS_ST_NOT_FOUND, "no orchestration instance '%.120s' in task hub '%s'", id, h->name);
    return;
  }
  }
}

static void on_rpc(dts_hub *h, m_rpc *r) {
  dts_call *c = r->call;
  if (HS(h)->shutting_down && r->method != DTS_M_QUERY_INSTANCES && r->method != DTS_M_LIST_INSTANCE_IDS) {
    hub_answer_fail(h, c, DTS_ST_UNAVAILABLE, "dtsd is shutting down");
    return;
  }
  switch (r->method) {
  case DTS_M_QUERY_INSTANCES: query_instances(h, c, (QueryInstancesRequest *)r->req); break;
  case DTS_M_LIST_INSTANCE_IDS: query_list_ids(h, c, (ListInstanceIdsRequest *)r->req); break;
  case DTS_M_QUERY_ENTITIES: query_entities(h, c, (QueryEntitiesRequest *)r->req); break;
  case DTS_M_PURGE_INSTANCES:
    if (!hub_refused(h, c)) jobs_on_purge(h, c, (PurgeInstancesRequest *)r->req);
    break;
  case DTS_M_SKIP_GRACEFUL_TERMINATIONS:
    if (!hub_refused(h, c)) jobs_on_skip(h, c, (SkipGracefulOrchestrationTerminationsRequest *)r->req);
    break;
  case DTS_M_CLEAN_ENTITY_STORAGE:
    if (!hub_refused(h, c)) jobs_on_clean(h, c, (CleanEntityStorageRequest *)r->req);
    break;
  case DTS_M_CREATE_TASK_HUB:
    if (hub_refused(h, c)) break;
    if (((CreateTaskHubRequest *)r->req)->recreate_if_exists) {
      on_wipe(h, c, DTS_M_CREATE_TASK_HUB);
    } else {
      CreateTaskHubResponse resp = CREATE_TASK_HUB_RESPONSE__INIT;
      hub_answer(h, c, &resp.base);
    }
    break;
  case DTS_M_DELETE_TASK_HUB: {
    char why[400] = "";
    dts_err e = eng_writable(h, why, sizeof(why));
    if (e != DTS_OK) {
      atomic_store(&h->delete_state, -1); /* the bridge serves it again */
      hub_answer_fail(h, c, eng_status_of(e), "%s", why);
      break;
    }
    on_wipe(h, c, DTS_M_DELETE_TASK_HUB);
    break;
  }
  case DTS_M_ADMIN_SET_RETENTION:
    if (!hub_refused(h, c)) retention_on_set(h, c, (Dtsd__Admin__RetentionPolicy *)r->req);
    break;
  case DTS_M_ADMIN_GET_RETENTION: retention_on_get(h, c); break;
  case DTS_M_ADMIN_CREATE_SCHEDULE:
  case DTS_M_ADMIN_GET_SCHEDULE:
  case DTS_M_ADMIN_LIST_SCHEDULES:
  case DTS_M_ADMIN_DELETE_SCHEDULE:
  case DTS_M_ADMIN_PAUSE_SCHEDULE:
  case DTS_M_ADMIN_RESUME_SCHEDULE: sched_on_rpc(h, c, r->method, r->req); break;
  case DTS_M_ADMIN_COUNT_INSTANCES: query_count(h, c, (Dtsd__Admin__CountInstancesRequest *)r->req); break;
  default: on_unroutable(h, r); break;
  }
}

/* ======================================================================== */
/* shutdown                                                                 */

static void broadcast(dts_hub *h, int kind) {
  dts_dir_iter it = DTS_DIR_ITER_INIT;
  dts_dir_entry *e;
  while ((e = dts_dir_next(h->dir, &it)) != NULL)
    dts_send(&((eng_actor *)(void *)((char *)e - offsetof(eng_actor, de)))->a, dts_msg_alloc((uint32_t)kind, sizeof(dts_msg)));
  const char *k;
  void *v;
  for (size_t i = 0; dts_map_next(&HS(h)->leaving, &i, &k, &v);)
    dts_send(&((eng_actor *)v)->a, dts_msg_alloc((uint32_t)kind, sizeof(dts_msg)));
}

static void on_shutdown(dts_hub *h) {
  hub_state *hs = HS(h);
  if (hs->shutting_down) return;
  hs->shutting_down = true;
  /* no write starts after this (eng_write_begin); quiesced once the
   * writers that already began are done */
  atomic_store(&h->stopping, true);
  broadcast(h, M_SHUTDOWN);
  dts_send(eng_dispatch_actor(h), dts_msg_alloc(D_SHUTDOWN, sizeof(dts_msg)));
  if (hs->wipe_call != NULL) {
    h->ops->fail(hs->wipe_call, DTS_ST_UNAVAILABLE, "dtsd is shutting down");
    h->ops->unref(hs->wipe_call);
    hs->wipe_call = NULL;
  }
  atomic_store(&h->shutdown_seen, true);
}

/* ======================================================================== */
/* the behaviour                                                            */

static void hub_ticket_done(dts_hub *h, eng_ticket *t) {
  eng_tx_done(&h->base, &HS(h)->tx, t);
  if (t->result != DTS_OK) sched_failed(h);
  if (t->opens) wipe_done(h, t->result == DTS_OK);
  HS(h)->tx.reset_needed = false; /* the hub keeps nothing of its own that could be ahead of the store */
}

static void behaviour(dts_actor *self, dts_msg *m) {
  dts_hub *h = (dts_hub *)self;
  hub_state *hs = HS(h);
  switch (m->kind) {
  case H_RPC: on_rpc(h, (m_rpc *)m); break;
  case H_MISS: on_miss(h, (m_miss *)m); break;
  case H_LEAVE: on_leave(h, ((m_actor *)m)->a); break;
  case H_GONE:
  case H_STAY:
    if (hs->wiping) on_gone_during_wipe(h, ((m_actor *)m)->a, m->kind == H_STAY);
    else on_gone(h, ((m_actor *)m)->a, m->kind == H_STAY);
    break;
  case H_FROZEN: on_frozen(h, ((m_actor *)m)->a); break;
  case H_TIMER: on_timer(h, (m_timer *)m); break;
  case H_TICK: on_tick(h); break;
  case H_SCHED: sched_due(h, true); break;
  case H_PING_TICK:
    if (!atomic_load(&h->stopping)) {
      dts_send(eng_dispatch_actor(h), dts_msg_alloc(D_TICK, sizeof(dts_msg)));
      arm_tick(h, H_PING_TICK, h->cfg.ping_interval_ns / 3 + 1);
    }
    break;
  case H_POLL: hs->poll_armed = false; break;
  case H_SHUTDOWN: on_shutdown(h); break;
  case H_JOB_DONE: jobs_on_done(h, (m_job_done *)m); break;
  case M_COMMITTED: hub_ticket_done(h, (eng_ticket *)m); break;
  case DTS_CALL_SENT:
  case DTS_CALL_CLOSED:
  case DTS_CALL_DRAINED: break; /* calls the hub answered at once */
  default: DTS_WARN("hub", "[%s] unknown message kind %u", h->name, m->kind); break;
  }
}

static void turn_end(dts_actor *self) {
  dts_hub *h = (dts_hub *)self;
  hub_state *hs = HS(h);
  eng_ticket *t = eng_tx_flush(&h->base, &hs->tx);
  if (t != NULL) {
    hub_ticket_done(h, t);
    eng_ticket_free(t);
  }
  if (dts_dir_poll(h->dir) > 0) arm_poll(h);
}

/* ======================================================================== */
/* start-up                                                                 */

/* Ids with something to do, found by the start-up scans. */
typedef struct startup {
  dts_hub *h;
  dts_map insts, ents; /* id -> id (owned) */
  uint64_t max_seq;
  long timers;
  char type;
} startup;

static void unreadable(dts_hub *h, const char *k, size_t klen, const char *why) {
  char kt[300];
  dts_key_text(&h->ks, k, klen, kt, sizeof(kt));
  DTS_ERROR("hub", "[%s] unreadable record %s: %s; skipped", h->name, kt, why);
  atomic_fetch_add(&h->st_unreadable, 1);
}

static void want(dts_map *m, const char *id) {
  if (dts_map_get(m, id) != NULL) return;
  char *s = dts_strdup(id);
  dts_map_put(m, s, s);
}

/* "<type><id>\0<seq:8>": N (inbox), Q (queue), M (messages) */
static bool scan_seq(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v, (void)vlen;
  startup *s = c;
  char id[DTS_ID_MAX + 1];
  size_t n;
  bool ok = dts_key_id_of(&s->h->ks, k, klen, id, &n) && klen == s->h->ks.len + 2 + n + 1 + 8;
  bool inst = ok && dts_instance_id_problem(id) == NULL, ent = ok && dts_entity_id_problem(id) == NULL;
  if ((s->type == 'N' && !inst) || (s->type == 'Q' && !ent) || (s->type == 'M' && !inst && !ent)) {
    unreadable(s->h, k, klen, "not a key of this type");
    return true;
  }
  uint64_t seq = dts_key_be64(k + klen - 8);
  if (seq != NOSEQ && seq > s->max_seq) s->max_seq = seq;
  want(ent ? &s->ents : &s->insts, id);
  return true;
}

/* "A<id>\0<exec>\0<task>" and "W<id>": instances with work out or owed */
static bool scan_owner(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v, (void)vlen;
  startup *s = c;
  char id[DTS_ID_MAX + 2], exec[DTS_ID_MAX + 2];
  int32_t task;
  size_t n;
  bool ok = s->type == 'A' ? dts_key_split_work(&s->h->ks, k, klen, id, exec, &task)
                           : dts_key_id_of(&s->h->ks, k, klen, id, &n) && klen == s->h->ks.len + 2 + n;
  if (!ok || dts_instance_id_problem(id) != NULL) {
    unreadable(s->h, k, klen, s->type == 'A' ? "not an activity work item key" : "not a key of this type");
    return true;
  }
  want(&s->insts, id);
  return true;
}

/* Durable timers: an orchestration's TimerFired ("<id>\0<exec>\0<timer id>"),
 * or an entity signal held until its time ("@name@key\0<request id>\0<0>"). */
static bool scan_timer(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  startup *s = c;
  char id[DTS_ID_MAX + 2], exec[DTS_ID_MAX + 2];
  int32_t tid;
  if (!dts_key_split_work(&s->h->ks, k, klen, id, exec, &tid)) {
    unreadable(s->h, k, klen, "not a timer key");
    return true;
  }
  HistoryEvent *e = history_event__unpack(NULL, vlen, (const uint8_t *)v);
  int64_t at;
  if (e != NULL && id[0] != '@' && e->event_type_case == EV(TIMER_FIRED)) {
    at = dts_ts_to_ns(e->timer_fired->fire_at);
  } else if (e != NULL && id[0] == '@' && e->event_type_case == EV(ENTITY_OPERATION_SIGNALED)) {
    at = dts_ts_to_ns(e->entity_operation_signaled->scheduled_time);
  } else {
    unreadable(s->h, k, klen, e == NULL ? "the timer does not decode" : "the timer holds an event of the wrong kind");
    if (e) history_event__free_unpacked(e, NULL);
    return true;
  }
  history_event__free_unpacked(e, NULL);
  eng_post_timer(s->h, eng_mono_for(at), TM_DURABLE, id[0] == '@' ? 'e' : 'o', id, k, klen, at);
  s->timers++;
  return true;
}

static bool scan_ent(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  startup *s = c;
  dts_ent_rec r;
  size_t off = s->h->ks.len + 2;
  if (!dts_ent_rec_unpack(v, vlen, &r)) {
    unreadable(s->h, k, klen, "the entity record does not decode");
    return true;
  }
  if (strlen(r.id) != klen - off || memcmp(r.id, k + off, klen - off) != 0)
    unreadable(s->h, k, klen, "the entity record names another id");
  dts_ent_rec_fini(&r);
  return true;
}

static void walk(dts_hub *h, char type, dts_scan_fn fn, startup *s) {
  dts_key k;
  dts_key_start(&k, &h->ks, type);
  s->type = type;
  char msg[300];
  if (dts_store_walk(h->cfg.store, k.b, k.n, k.b, k.n, fn, s, msg, sizeof(msg)) != DTS_OK)
    unreadable(h, k.b, k.n, msg); /* the rest of this scan is out of reach */
}

/* Data written before the indexes existed: index every record once. */
typedef struct reindex {
  dts_hub *h;
  dts_batch *b;
  long n;
  dts_err err;
} reindex;

static bool reindex_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  reindex *r = c;
  dts_inst_rec rec;
  if (!dts_inst_rec_unpack(v, vlen, &rec)) {
    unreadable(r->h, k, klen, "the instance record does not decode (not indexed)");
    return true;
  }
  rec.ix_set = false;
  dts_index_update(r->b, &r->h->ks, &rec);
  dts_inst_rec_fini(&rec);
  if (++r->n % 10000 == 0) {
    r->err = dts_store_write(r->h->cfg.store, r->b);
    dts_batch_destroy(r->b);
    r->b = dts_batch_create();
    if (r->err != DTS_OK) return false;
  }
  return true;
}

static dts_err ensure_indexes(dts_hub *h, char *err, size_t errlen) {
  dts_key k;
  dts_key_marker(&k, &h->ks, "indexes-v2");
  char *v;
  size_t vlen;
  dts_err e = dts_store_read(h->cfg.store, k.b, k.n, &v, &vlen, err, errlen);
  if (e == DTS_OK) {
    dts_free(v);
    return DTS_OK;
  }
  if (e != DTS_ENOTFOUND) return e;
  reindex r = {h, dts_batch_create(), 0, DTS_OK};
  dts_key_start(&k, &h->ks, 'I');
  e = dts_store_walk(h->cfg.store, k.b, k.n, k.b, k.n, reindex_visit, &r, err, errlen);
  if (e == DTS_OK) e = r.err;
  dts_key_marker(&k, &h->ks, "indexes-v2");
  dts_batch_put(r.b, k.b, k.n, "1", 1);
  if (e == DTS_OK) e = dts_store_write(h->cfg.store, r.b);
  if (e != DTS_OK && err[0] == '\0') dts_store_writable(h->cfg.store, err, errlen);
  dts_batch_destroy(r.b);
  if (r.n > 0) DTS_INFO("hub", "[%s] indexed %ld instances written before indexes existed", h->name, r.n);
  return e;
}

static void start_actors(dts_hub *h, dts_map *ids, char kind) {
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(ids, &it, &k, &v);) {
    eng_actor *a = kind == 'e' ? eng_entity_new(h, k) : eng_instance_new(h, k);
    if (kind == 'e') eng_entity_load_now(a);
    else eng_instance_load_now(a);
    a->where = W_LIVE;
    dts_dir_put(h->dir, &a->de);
    dts_send(&a->a, dts_msg_alloc(M_KICK, sizeof(dts_msg))); /* offers what is ready */
    dts_free(v);
  }
  dts_map_fini(ids);
}

/* Builds the hub from the store: only what has something to do is read
 * (instances and entities with events, messages, work items out or a
 * turn owed; durable timers are armed); finished instances and idle ones
 * stay on disk until asked for. */
static dts_err load(dts_hub *h, char *err, size_t errlen) {
  err[0] = '\0';
  dts_err ie = ensure_indexes(h, err, errlen);
  if (ie != DTS_OK) return ie;
  long before = atomic_load(&h->st_unreadable);
  atomic_store(&h->readback_msgs, true); /* what was stored before the restart */
  startup s = {.h = h};
  dts_map_init(&s.insts);
  dts_map_init(&s.ents);
  walk(h, 'N', scan_seq, &s);
  walk(h, 'Q', scan_seq, &s);
  walk(h, 'M', scan_seq, &s);
  walk(h, 'A', scan_owner, &s);
  walk(h, 'W', scan_owner, &s);
  walk(h, 'T', scan_timer, &s);
  walk(h, 'E', scan_ent, &s);
  /* new message numbers follow every one stored */
  atomic_store(&h->seq, s.max_seq + 1);
  size_t ni = dts_map_len(&s.insts), ne = dts_map_len(&s.ents);
  start_actors(h, &s.insts, 'o');
  start_actors(h, &s.ents, 'e');
  retention_load(h);
  sched_load(h);
  DTS_INFO("hub", "[%s] loaded %zu instances and %zu entities with work to do, %ld timers", h->name, ni, ne,
           s.timers);
  long bad = atomic_load(&h->st_unreadable) - before;
  if (bad == 0) atomic_store(&h->readback_msgs, false); /* else a message may not have been taken */
  if (bad > 0)
    DTS_ERROR("hub", "[%s] %ld records could not be read and were skipped (each is logged above with its key)",
              h->name, bad);
  return DTS_OK;
}

/* ======================================================================== */
/* lifecycle and API                                                        */

static void hub_fini(dts_actor *self) {
  dts_hub *h = (dts_hub *)self;
  hub_state *hs = HS(h);
  jobs_fini(h);
  dts_map_fini(&hs->jobs);
  sched_fini(h);
  dts_map_fini(&hs->leaving);
  for (size_t i = 0; i < hs->nqueued; i++) dts_msg_free(hs->queued[i]);
  dts_free(hs->queued);
  if (hs->wipe_call != NULL) h->ops->unref(hs->wipe_call);
  eng_tx_fini(&hs->tx);
  dts_dir_destroy(h->dir);
  eng_watch_free(h->watch);
  dts_free(hs);
  eng_actor_fini(&h->base);
  dts_free(h->name);
  dts_free(h);
}

dts_err dts_hub_create(const dts_hub_config *cfg, dts_hub **out) {
  dts_hub *h = dts_calloc(1, sizeof(*h));
  h->cfg = *cfg;
  h->name = dts_strdup(cfg->name);
  h->cfg.name = h->name;
  h->ks = (dts_keyspace){h->name, strlen(h->name)};
  h->ops = cfg->call_ops;
  DTS_ASSERT(h->ops != NULL && "dts_hub_config.call_ops is required");
  eng_actor_init(&h->base, h, 'h', NULL, behaviour, hub_fini);
  dts_actor_set_turn_end(&h->base.a, turn_end);
  /* start-up arms timers that may be due at once: nothing runs on the hub's
   * actor until it has finished building its state on this thread */
  dts_actor_hold(&h->base.a);
  h->hs = dts_calloc(1, sizeof(hub_state));
  eng_tx_init(&h->hs->tx);
  dts_map_init(&h->hs->leaving);
  dts_map_init(&h->hs->jobs);
  dts_map_init(&h->hs->scheds);
  h->dir = dts_dir_create();
  h->watch = eng_watch_new();
  atomic_init(&h->seq, 1);
  if (h->cfg.max_entity_batch <= 0) h->cfg.max_entity_batch = 100;
  if (h->cfg.purge_interval_ns == 0) h->cfg.purge_interval_ns = 1000000000ULL;
  if (h->cfg.ping_interval_ns == 0) h->cfg.ping_interval_ns = 30000000000ULL;
  dts_hub_limits *l = &h->cfg.limits;
  if (l->purge_chunk <= 0) l->purge_chunk = 1000;
  if (l->max_page <= 0) l->max_page = 1000;
  if (l->max_list_page <= 0) l->max_list_page = 10000;
  if (l->scan_budget <= 0) l->scan_budget = 100000;
  if (l->max_chunks <= 0) l->max_chunks = 256;
  if (l->max_chunk_bytes <= 0) l->max_chunk_bytes = 256L << 20;
  if (l->max_stream_items <= 0) l->max_stream_items = 10000;
  if (l->max_outbox_bytes <= 0) l->max_outbox_bytes = 64L << 20;
  eng_dispatch_create(h);
  char why[400];
  dts_err e = load(h, why, sizeof(why));
  if (e != DTS_OK) {
    DTS_ERROR("hub", "[%s] cannot load: %s (%s)", h->name, why[0] ? why : "the store refused", dts_strerror(e));
    atomic_store(&h->stopping, true);
    atomic_store(&h->shutdown_seen, true);
    dts_actor_open(&h->base.a);
    dts_hub_release(h);
    return e;
  }
  arm_tick(h, H_TICK, h->cfg.purge_interval_ns);
  arm_tick(h, H_PING_TICK, h->cfg.ping_interval_ns / 3 + 1);
  dts_actor_open(&h->base.a);
  *out = h;
  return DTS_OK;
}

const char *dts_hub_name(const dts_hub *h) { return h->name; }
dts_actor *dts_hub_actor(dts_hub *h) { return &h->base.a; }

void dts_hub_shutdown(dts_hub *h) { dts_send(&h->base.a, dts_msg_alloc(H_SHUTDOWN, sizeof(dts_msg))); }

bool dts_hub_quiesced(dts_hub *h) { return atomic_load(&h->shutdown_seen) && atomic_load(&h->writers) == 0; }

int dts_hub_delete_state(dts_hub *h) { return atomic_load(&h->delete_state); }

void dts_hub_undelete(dts_hub *h) { atomic_store(&h->delete_state, 0); }

dts_err dts_hub_persist_marker(dts_hub *h) {
  dts_key k;
  dts_key_hub_marker(&k, h->name, strlen(h->name));
  dts_batch *b = dts_batch_create();
  dts_batch_put(b, k.b, k.n, "", 0);
  dts_err e = dts_store_write(h->cfg.store, b);
  dts_batch_destroy(b);
  return e;
}

/* After the shutdown, with nothing running the hub's actors concurrently
 * (teardown, or a manual scheduler between runs): every actor lets go. */
void dts_hub_release(dts_hub *h) {
  hub_state *hs = HS(h);
  dts_dir_barrier(h->dir); /* deferred M_FINALs go out now */
  eng_actor **all = NULL;
  size_t n = 0, cap = 0;
  dts_dir_iter it = DTS_DIR_ITER_INIT;
  dts_dir_entry *e;
  while ((e = dts_dir_next(h->dir, &it)) != NULL) VEC_PUSH(all, n, cap, (eng_actor *)(void *)((char *)e - offsetof(eng_actor, de)));
  for (size_t i = 0; i < n; i++) {
    dts_dir_del(h->dir, all[i]->dkey, all[i]->dklen);
    all[i]->where = W_OUT;
    dts_actor_unref(&all[i]->a);
  }
  dts_free(all);
  const char *k;
  void *v;
  for (size_t i = 0; dts_map_next(&hs->leaving, &i, &k, &v);) {
    eng_actor *a = v;
    dts_map_del(&hs->leaving, k);
    a->where = W_OUT;
    dts_actor_unref(&a->a);
  }
  dts_dir_barrier(h->dir);
  dts_actor_unref(eng_dispatch_actor(h));
  dts_actor_unref(&h->base.a);
}

void dts_hub_get_figures(dts_hub *h, dts_hub_figures *out) {
  for (int k = 0; k < 3; k++) {
    out->sent[k] = atomic_load(&h->st_sent[k]);
    out->done[k] = atomic_load(&h->st_done[k]);
    out->back[k] = atomic_load(&h->st_back[k]);
    dts_hist_read(&h->h_work[k], &out->work[k]);
  }
  dts_hist_read(&h->h_dispatch, &out->dispatch);
  out->started = atomic_load(&h->st_started);
  for (int s = 0; s < 8; s++) out->finished[s] = atomic_load(&h->st_finished[s]);
  out->entity_ops = atomic_load(&h->st_entity_ops);
}

void dts_hub_get_stats(dts_hub *h, dts_hub_stats *o) {
  o->instances = atomic_load(&h->st_instances);
  o->ready_orch = atomic_load(&h->st_ready_orch);
  o->ready_act = atomic_load(&h->st_ready_act);
  o->streams = atomic_load(&h->st_streams);
  o->dispatched = atomic_load(&h->st_dispatched);
  o->completions = atomic_load(&h->st_completions);
  o->stale_completions = atomic_load(&h->st_stale);
  o->unreadable = atomic_load(&h->st_unreadable);
  o->resets = atomic_load(&h->st_resets);
  o->entities = atomic_load(&h->st_entities);
  o->actors = atomic_load(&h->st_actors);
  o->passivated = atomic_load(&h->st_passivated);
}

typedef struct marker_ctx {
  void (*fn)(void *ctx, const char *name);
  void *ctx;
} marker_ctx;

static bool on_marker(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v, (void)vlen;
  marker_ctx *m = c;
  char name[128];
  size_t n = klen - 5 < sizeof(name) - 1 ? klen - 5 : sizeof(name) - 1;
  memcpy(name, k + 5, n);
  name[n] = '\0';
  m->fn(m->ctx, name);
  return true;
}

dts_err dts_hub_list_markers(dts_store *store, void (*fn)(void *ctx, const char *name), void *ctx) {
  marker_ctx m = {fn, ctx};
  return dts_store_scan(store, "\0hub\0", 5, on_marker, &m);
}
