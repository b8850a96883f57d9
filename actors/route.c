/* route.c -- where a request or a message goes: straight to the actor it
 * names.  Runs on whatever thread hands it in (a completion-queue thread,
 * a worker running another actor); decides nothing but the address.
 *
 *   instance requests        the instance's actor, by id
 *   completions, abandons    the owner of the completion token (dispatch's
 *                            token map), or by instance id without one
 *   entity requests          the entity's actor, by id
 *   GetWorkItems             dispatch
 *   everything else          the hub's actor (management, and requests
 *                            whose id cannot name an actor: answered there)
 *
 * A lookup that misses goes to the hub's actor, which creates the actor,
 * reading it back from the store, exactly once however many race.
 */
#include "actors/engine.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* ---- messages -------------------------------------------------------------- */

typedef struct rpc_full {
  m_rpc m;
  const dts_call_ops *ops;
} rpc_full;

void eng_msg_drop_rpc(dts_msg *m) {
  rpc_full *r = (rpc_full *)m;
  if (r->m.req != NULL) protobuf_c_message_free_unpacked(r->m.req, NULL);
  if (r->m.call != NULL) r->ops->unref(r->m.call);
}

static m_rpc *rpc_new(dts_hub *h, int kind, int method, dts_call *call, ProtobufCMessage *req) {
  rpc_full *r = (rpc_full *)dts_msg_alloc((uint32_t)kind, sizeof(rpc_full));
  r->m.hdr.drop = eng_msg_drop_rpc;
  r->m.method = method;
  r->m.call = call;
  r->m.req = req;
  r->ops = h->ops;
  return &r->m;
}

void eng_msg_drop_deliver(dts_msg *m) { dts_buf_free(&((m_deliver *)m)->val); }

void eng_msg_drop_timer(dts_msg *m) {
  m_timer *t = (m_timer *)m;
  dts_free(t->id);
  dts_buf_free(&t->key);
}

void eng_msg_drop_miss(dts_msg *m) {
  m_miss *x = (m_miss *)m;
  dts_free(x->id);
  if (x->inner != NULL) dts_msg_free(x->inner);
}

void eng_msg_drop_actor(dts_msg *m) {
  m_actor *x = (m_actor *)m;
  if (x->a != NULL) dts_actor_unref(&x->a->a);
}

void eng_msg_drop_job(dts_msg *m) { dts_free(((m_job *)m)->reason); }

void eng_msg_drop_job_done(dts_msg *m) {
  m_job_done *d = (m_job_done *)m;
  if (d->call != NULL) d->ops->unref(d->call);
  dts_free(d->msg);
  dts_free(d->id);
  for (size_t i = 0; i < d->nchildren; i++) dts_free(d->children[i]);
  dts_free(d->children);
}

/* A copy of message `m` of `size` bytes in a fresh envelope: the mailbox's
 * link in the header is its own (atomic) and is not copied. */
static dts_msg *copy_msg(const dts_msg *m, size_t size) {
  dts_msg *c = dts_msg_alloc(m->kind, size);
  c->drop = m->drop;
  c->flags = m->flags;
  memcpy((char *)c + sizeof(dts_msg), (const char *)m + sizeof(dts_msg), size - sizeof(dts_msg));
  return c;
}

dts_msg *eng_msg_move(dts_hub *h, dts_msg *m) {
  switch (m->kind) {
  case M_RPC:
  case H_RPC: {
    m_rpc *r = (m_rpc *)m;
    m_rpc *c = rpc_new(h, (int)m->kind, r->method, r->call, r->req);
    r->call = NULL;
    r->req = NULL;
    return &c->hdr;
  }
  case M_DELIVER: {
    m_deliver *d = (m_deliver *)m, *c = (m_deliver *)dts_msg_alloc(M_DELIVER, sizeof(m_deliver));
    c->hdr.drop = eng_msg_drop_deliver;
    c->seq = d->seq;
    c->val = d->val;
    d->val = (dts_buf){NULL, 0};
    return &c->hdr;
  }
  case M_TIMER:
  case H_TIMER: {
    m_timer *t = (m_timer *)m, *c = (m_timer *)copy_msg(m, sizeof(m_timer));
    t->id = NULL;
    t->key = (dts_buf){NULL, 0};
    return &c->hdr;
  }
  case M_JOB: {
    m_job *j = (m_job *)m, *c = (m_job *)copy_msg(m, sizeof(m_job));
    j->reason = NULL;
    return &c->hdr;
  }
  case M_LEASED: return copy_msg(m, sizeof(m_leased));
  case M_KICK: return dts_msg_alloc(M_KICK, sizeof(dts_msg));
  default: return NULL;
  }
}

bool eng_owned_method(int method) {
  return method == DTS_M_WAIT_START || method == DTS_M_WAIT_COMPLETION || method == DTS_M_STREAM_HISTORY ||
         method == DTS_M_GET_WORK_ITEMS;
}

/* ---- actors ------------------------------------------------------------------ */

void eng_actor_init(eng_actor *a, dts_hub *h, char kind, const char *id, dts_behaviour fn, dts_actor_fini_fn fini) {
  dts_actor_init(&a->a, h->cfg.sched, fn, fini);
  a->h = h;
  a->kind = kind;
  size_t n = id != NULL ? strlen(id) : 0;
  a->id = id != NULL ? dts_strdup(id) : NULL;
  a->dkey = n + 2 <= sizeof(a->dkey_inline) ? a->dkey_inline : dts_malloc(n + 2);
  a->dkey[0] = kind;
  if (n > 0) memcpy(a->dkey + 1, id, n);
  a->dkey[n + 1] = '\0';
  a->dklen = n + 1;
  dts_dir_entry_init(&a->de, a->dkey, a->dklen);
  atomic_init(&a->idle_since, 0);
  atomic_init(&a->asked, false);
  if (kind != 'h') dts_actor_ref(&h->base.a); /* the hub outlives its actors */
}

void eng_actor_fini(eng_actor *a) {
  for (size_t i = 0; i < a->nheld; i++) dts_msg_free(a->held[i]);
  dts_free(a->held);
  dts_free(a->id);
  if (a->dkey != a->dkey_inline) dts_free(a->dkey);
  if (a->kind != 'h') dts_actor_unref(&a->h->base.a);
}

void eng_tell_hub(eng_actor *a, int kind) {
  m_actor *m = (m_actor *)dts_msg_alloc((uint32_t)kind, sizeof(m_actor));
  m->hdr.drop = eng_msg_drop_actor;
  dts_actor_ref(&a->a);
  m->a = a;
  dts_send(&a->h->base.a, &m->hdr);
}

static void miss(dts_hub *h, char kind, const char *id, dts_msg *m) {
  m_miss *x = (m_miss *)dts_msg_alloc(H_MISS, sizeof(m_miss));
  x->hdr.drop = eng_msg_drop_miss;
  x->kind = kind;
  x->id = dts_strdup(id);
  x->inner = m;
  dts_send(&h->base.a, &x->hdr);
}

void eng_forward_to_hub(eng_actor *a, dts_msg *m) { miss(a->h, a->kind, a->id, m); }

/* ---- sending ------------------------------------------------------------------ */

void eng_send(dts_hub *h, char kind, const char *id, dts_msg *m, dts_call *call) {
  char key[DTS_ID_MAX + 2];
  size_t n = strlen(id);
  DTS_ASSERT(n <= DTS_ID_MAX && "an unvalidated id reached the router");
  key[0] = kind;
  memcpy(key + 1, id, n);
  dts_dir_read_begin();
  dts_dir_entry *e = dts_dir_get(h->dir, key, n + 1);
  if (e != NULL) {
    eng_actor *a = (eng_actor *)(void *)((char *)e - offsetof(eng_actor, de));
    if (call != NULL) h->ops->set_owner(call, &a->a);
    dts_send(&a->a, m); /* the directory's reference keeps it alive until the section ends */
    dts_dir_read_end();
    return;
  }
  dts_dir_read_end();
  miss(h, kind, id, m);
}

/* ---- requests ------------------------------------------------------------------ */

/* A request message (built for an actor or not) to the hub instead. */
static void rpc_to_hub(dts_hub *h, m_rpc *r) {
  r->hdr.kind = H_RPC;
  if (eng_owned_method(r->method)) h->ops->set_owner(r->call, &h->base.a);
  dts_send(&h->base.a, &r->hdr);
}

static void to_hub(dts_hub *h, dts_method m, dts_call *call, ProtobufCMessage *req) {
  rpc_to_hub(h, rpc_new(h, H_RPC, (int)m, call, req));
}

static void to_actor(dts_hub *h, char kind, const char *id, dts_method m, dts_call *call, ProtobufCMessage *req) {
  eng_send(h, kind, id, &rpc_new(h, M_RPC, (int)m, call, req)->hdr, eng_owned_method((int)m) ? call : NULL);
}

/* The instance id a request names, or NULL when it has none. */
static const char *instance_of(dts_method m, ProtobufCMessage *req) {
  switch (m) {
  case DTS_M_START_INSTANCE: return ((CreateInstanceRequest *)req)->instance_id;
  case DTS_M_GET_INSTANCE:
  case DTS_M_WAIT_START:
  case DTS_M_WAIT_COMPLETION: return ((GetInstanceRequest *)req)->instance_id;
  case DTS_M_RAISE_EVENT: return ((RaiseEventRequest *)req)->instance_id;
  case DTS_M_TERMINATE: return ((TerminateRequest *)req)->instance_id;
  case DTS_M_SUSPEND: return ((SuspendRequest *)req)->instance_id;
  case DTS_M_RESUME: return ((ResumeRequest *)req)->instance_id;
  case DTS_M_REWIND_INSTANCE: return ((RewindInstanceRequest *)req)->instance_id;
  case DTS_M_RESTART_INSTANCE: return ((RestartInstanceRequest *)req)->instance_id;
  case DTS_M_STREAM_HISTORY: return ((StreamInstanceHistoryRequest *)req)->instance_id;
  default: return NULL;
  }
}

static const char *token_of(dts_method m, ProtobufCMessage *req) {
  switch (m) {
  case DTS_M_COMPLETE_ORCHESTRATOR: return ((OrchestratorResponse *)req)->completion_token;
  case DTS_M_COMPLETE_ACTIVITY: return ((ActivityResponse *)req)->completion_token;
  case DTS_M_COMPLETE_ENTITY: return ((EntityBatchResult *)req)->completion_token;
  case DTS_M_ABANDON_ORCHESTRATOR: return ((AbandonOrchestrationTaskRequest *)req)->completion_token;
  case DTS_M_ABANDON_ACTIVITY: return ((AbandonActivityTaskRequest *)req)->completion_token;
  case DTS_M_ABANDON_ENTITY: return ((AbandonEntityTaskRequest *)req)->completion_token;
  default: return NULL;
  }
}

/* A completion or abandon: to the token's owner; without a token (older
 * workers), to the instance it names.  Unknown: the hub answers (stale). */
static void route_completion(dts_hub *h, dts_method m, dts_call *call, ProtobufCMessage *req) {
  const char *tok = token_of(m, req);
  if (tok != NULL && tok[0] != '\0') {
    const char *who = h->ops->principal(call);
    m_rpc *r = rpc_new(h, M_RPC, (int)m, call, req);
    int got = strlen(tok) == TOKEN_LEN ? eng_token_send(h, tok, who, eng_owned_method((int)m) ? call : NULL, &r->hdr)
                                       : TOKEN_UNKNOWN;
    if (got == TOKEN_SENT) return;
    if (got == TOKEN_DENIED) { /* not the lease's principal */
      char msg[300];
      snprintf(msg, sizeof(msg), "'%.80s' may not complete or abandon a work item leased to another principal's stream", who);
      h->ops->fail(call, DTS_ST_PERMISSION_DENIED, msg);
      dts_msg_free(&r->hdr); /* its call reference and request go with it */
      return;
    }
    rpc_to_hub(h, r); /* not current: the hub answers (stale) */
    return;
  }
  const char *id = NULL;
  if (m == DTS_M_COMPLETE_ORCHESTRATOR) id = ((OrchestratorResponse *)req)->instance_id;
  if (m == DTS_M_COMPLETE_ACTIVITY) id = ((ActivityResponse *)req)->instance_id;
  if (id != NULL && dts_instance_id_problem(id) == NULL) to_actor(h, 'o', id, m, call, req);
  else to_hub(h, m, call, req);
}

void dts_hub_post(dts_hub *h, dts_method m, dts_call *call, ProtobufCMessage *req) {
  switch (m) {
  case DTS_M_START_INSTANCE: {
    CreateInstanceRequest *r = (CreateInstanceRequest *)req;
    if (r->instance_id[0] == '\0') { /* a new id, chosen here so the request can be routed */
      char gen[37];
      dts_uuid(gen);
      if (r->instance_id != protobuf_c_empty_string) free(r->instance_id); /* protobuf-c allocated it */
      r->instance_id = strdup(gen);
      if (r->instance_id == NULL) abort();
    }
  } /* fall through */
  case DTS_M_GET_INSTANCE:
  case DTS_M_WAIT_START:
  case DTS_M_WAIT_COMPLETION:
  case DTS_M_RAISE_EVENT:
  case DTS_M_TERMINATE:
  case DTS_M_SUSPEND:
  case DTS_M_RESUME:
  case DTS_M_REWIND_INSTANCE:
  case DTS_M_RESTART_INSTANCE:
  case DTS_M_STREAM_HISTORY: {
    const char *id = instance_of(m, req);
    if (dts_instance_id_problem(id) == NULL) to_actor(h, 'o', id, m, call, req);
    else to_hub(h, m, call, req); /* no such instance can exist: the hub answers */
    return;
  }
  case DTS_M_COMPLETE_ORCHESTRATOR:
  case DTS_M_COMPLETE_ACTIVITY:
  case DTS_M_COMPLETE_ENTITY:
  case DTS_M_ABANDON_ORCHESTRATOR:
  case DTS_M_ABANDON_ACTIVITY:
  case DTS_M_ABANDON_ENTITY: route_completion(h, m, call, req); return;
  case DTS_M_PURGE_INSTANCES: { /* one instance: its own actor, so it is ordered after its other requests */
    PurgeInstancesRequest *r = (PurgeInstancesRequest *)req;
    if (r->request_case == PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_ID &&
        dts_instance_id_problem(r->instance_id) == NULL)
      to_actor(h, 'o', r->instance_id, m, call, req);
    else
      to_hub(h, m, call, req);
    return;
  }
  case DTS_M_SIGNAL_ENTITY:
  case DTS_M_GET_ENTITY: {
    const char *id = m == DTS_M_SIGNAL_ENTITY ? ((SignalEntityRequest *)req)->instance_id
                                              : ((GetEntityRequest *)req)->instance_id;
    if (dts_entity_id_problem(id) == NULL) to_actor(h, 'e', id, m, call, req);
    else to_hub(h, m, call, req);
    return;
  }
  case DTS_M_ADMIN_LIST_WORKERS:
    dts_send(eng_dispatch_actor(h), &rpc_new(h, D_RPC, (int)m, call, req)->hdr);
    return;
  case DTS_M_GET_WORK_ITEMS:
    h->ops->set_owner(call, eng_dispatch_actor(h));
    dts_send(eng_dispatch_actor(h), &rpc_new(h, D_RPC, (int)m, call, req)->hdr);
    return;
  default: to_hub(h, m, call, req); return;
  }
}

m_rpc *eng_rpc_new(dts_hub *h, int kind, int method, dts_call *call, ProtobufCMessage *req) {
  return rpc_new(h, kind, method, call, req);
}
