#define _GNU_SOURCE /* pthread_setname_np */
/* bridge.c -- gRPC C-core server for TaskHubSidecarService.  See bridge.h.
 *
 * Ownership of a call record (struct dts_call): references are counted in
 * `refs`.  The arrival holds one until routing is done; every batch started
 * on the call holds one until its completion is handled (counted *before*
 * grpc_call_start_batch, since the completion may beat its return); every
 * message that carries the call to an actor holds one.  The record is freed
 * when the count reaches zero, never elsewhere.
 *
 * Threads: several completion-queue threads, each with its own queue and
 * its own armed calls; every event of a call arrives on the thread whose
 * queue requested it.  A CQ thread starts RECV_CLOSE_ON_SERVER, answers
 * what it can alone (Hello, errors, UNIMPLEMENTED), and hands the decoded
 * request to dts_hub_post, which sends it straight to the actor it names.
 * Actors answer through bridge_ops (the engine's dts_call_ops); for
 * streams, the owner is the only thread that queues sends.  The call's
 * owner and its end race (the engine may pick the owner after the client
 * went away): one atomic word settles it, and DTS_CALL_CLOSED is posted
 * exactly once.  The set of served hubs is shared by the CQ threads under
 * a read-write lock (created and deleted hubs are rare).
 */
#include "server/bridge.h"

#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/map.h"
#include "server/callvt.h"
#include "server/methods.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define ARMED_PER_METHOD 8
#define M_GENERIC DTS_M_COUNT

typedef enum { TAG_REQUEST, TAG_SEND, TAG_CLOSE, TAG_SHUTDOWN } tag_kind;

typedef struct btag {
  tag_kind kind;
  struct dts_call *call;
} btag;

/* One completion-queue thread. */
typedef struct cqt {
  dts_bridge *b;
  grpc_completion_queue *cq;
  pthread_t thread;
  int idx;
  bool cq_shut; /* its thread only */
} cqt;

struct dts_call {
  const dts_call_ops *vt; /* first: dts_bridge_call_ops (callvt.h) */
  dts_bridge *b;
  cqt *q;     /* the queue that requested it: all its events come there */
  int method; /* dts_method, or M_GENERIC */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details;
  grpc_byte_buffer *req;
  grpc_byte_buffer *out; /* the one SEND_MESSAGE in flight */
  int cancelled;
  atomic_int refs;
  bool md_sent;            /* the sending thread only */
  /* the owner actor | 1 once the call ended (RECV_CLOSE completed): the
   * engine sets the owner, the CQ thread the bit; whichever comes second
   * posts DTS_CALL_CLOSED (any thread) */
  _Atomic(uintptr_t) owner;
  void *owner_data;        /* owner only */
  btag t_request, t_send, t_close;
  /* Streams: the outbox.  The owner queues messages (and the final status)
   * without waiting; one send is in flight at a time, and the CQ thread
   * starts the next as soon as one completes, with no trip to the owner. */
  pthread_mutex_t omu;
  dts_bufq oq;
  bool o_busy;     /* a send is in flight */
  bool o_end;      /* the final status is queued behind the messages */
  bool o_end_sent; /* ... and went out */
  bool o_dead;     /* a send failed: the call is gone, drop what comes */
  dts_status o_end_st;
  char *o_end_msg;
  size_t o_inflight; /* size of the message being sent */
  bool o_watch;      /* the owner wants DTS_CALL_DRAINED at o_below */
  size_t o_below;
  atomic_size_t o_queued; /* bytes queued or being sent (any thread reads) */
  char *principal;         /* who called (auth.h), for the audit log of a stream's end */
  char *peer;              /* grpc_call_get_peer's, kept while the call lives */
  bool lease_bound;        /* a worker's history read: only of the instance whose work item it holds */
  bool counted_wait;       /* holds one of its connection's WaitFor* places */
  bool counted_stream;     /* holds a worker-stream place (in all and its principal's) */
  /* a worker stream, checked again every second (dts_bridge_recheck):
   * its credentials, hub, and place in the bridge's list */
  char *authz, *certp, *hubname;
  dts_hub *hub;
  bool drained, listed, cut;
  gpr_timespec drained_at; /* when it was told to drain: cut off after the grace */
  struct dts_call *wprev, *wnext;
};

/* Open calls counted by a key (a connection, a principal), for limits. */
typedef struct counted {
  char *key;
  long n;
} counted;

typedef struct counter_set {
  pthread_mutex_t mu;
  dts_map m; /* key -> counted */
} counter_set;

struct dts_bridge {
  dts_bridge_config cfg;
  grpc_server *srv;
  cqt *cqs;
  int ncq;
  void *mh[DTS_M_COUNT];
  atomic_int stop;     /* any thread: stop requested */
  atomic_long live;    /* call records alive */
  atomic_bool shutting_down, cancelled_all, notified; /* CQ threads */
  pthread_mutex_t shut_mu; /* begins the shutdown once */
  /* the served hubs (cfg.hubs) and the creations waiting for a deletion:
   * read by every CQ thread, changed under the write lock */
  pthread_rwlock_t hubs_lock;
  struct {
    dts_call *call;
    char name[80];
  } pending[DTS_MAX_HUBS];
  int npending;
  gpr_timespec cancel_at;
  btag t_shutdown;
  bool tls;  /* the port serves TLS */
  bool mtls; /* ... and asks clients for certificates */
  dts_bridge_limits lim; /* with the defaults filled in */
  counter_set waits, streams; /* per connection, per principal */
  atomic_long streams_all;
  pthread_mutex_t wmu; /* the worker streams' list */
  dts_call *workers;
};

/* One more call for key, unless max are open: false then. */
static bool count_up(counter_set *s, const char *key, long max) {
  pthread_mutex_lock(&s->mu);
  counted *c = dts_map_get(&s->m, key);
  bool ok = c == NULL || c->n < max;
  if (ok && c == NULL) {
    c = dts_calloc(1, sizeof(*c));
    c->key = dts_strdup(key);
    dts_map_put(&s->m, c->key, c);
  }
  if (ok) c->n++;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

static void counters_fini(counter_set *s) {
  const char *k;
  void *v;
  for (size_t i = 0; dts_map_next(&s->m, &i, &k, &v);) { /* none once every call is freed */
    dts_free(((counted *)v)->key);
    dts_free(v);
  }
  dts_map_fini(&s->m);
  pthread_mutex_destroy(&s->mu);
}

static void count_down(counter_set *s, const char *key) {
  pthread_mutex_lock(&s->mu);
  counted *c = dts_map_get(&s->m, key);
  if (c != NULL && --c->n == 0) {
    dts_map_del(&s->m, key);
    dts_free(c->key);
    dts_free(c);
  }
  pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------------ */
/* call records                                                             */

static void call_free(dts_call *c) {
  dts_bridge *b = c->b;
  dts_actor *owner = (dts_actor *)(atomic_load(&c->owner) & ~(uintptr_t)1);
  if (owner != NULL) dts_actor_unref(owner); /* the call's reference (set_owner) */
  if (c->call != NULL) grpc_call_unref(c->call);
  if (c->req != NULL) grpc_byte_buffer_destroy(c->req);
  if (c->out != NULL) grpc_byte_buffer_destroy(c->out);
  grpc_metadata_array_destroy(&c->md);
  if (c->method == M_GENERIC) grpc_call_details_destroy(&c->details);
  dts_bufq_fini(&c->oq);
  dts_free(c->o_end_msg);
  if (c->counted_wait) count_down(&b->waits, c->peer);
  if (c->counted_stream) {
    count_down(&b->streams, c->principal);
    atomic_fetch_sub(&b->streams_all, 1);
  }
  if (c->listed) {
    pthread_mutex_lock(&b->wmu);
    if (c->wprev) c->wprev->wnext = c->wnext;
    else b->workers = c->wnext;
    if (c->wnext) c->wnext->wprev = c->wprev;
    pthread_mutex_unlock(&b->wmu);
  }
  dts_free(c->authz);
  dts_free(c->certp);
  dts_free(c->hubname);
  dts_free(c->principal);
  if (c->peer) gpr_free(c->peer);
  pthread_mutex_destroy(&c->omu);
  dts_free(c);
  atomic_fetch_sub(&b->live, 1);
}

static void call_ref(dts_call *c) { atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed); }

static void call_unref(dts_call *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) call_free(c);
}

static void set_owner_data(dts_call *c, void *p) { c->owner_data = p; }
static void *owner_data(dts_call *c) { return c->owner_data; }

static void arm(cqt *q, int m) {
  dts_bridge *b = q->b;
  dts_call *c = dts_calloc(1, sizeof(*c));
  c->vt = &dts_bridge_call_ops;
  c->b = b;
  c->q = q;
  c->method = m;
  atomic_init(&c->refs, 1); /* the arrival's reference */
  c->t_request = (btag){TAG_REQUEST, c};
  c->t_send = (btag){TAG_SEND, c};
  c->t_close = (btag){TAG_CLOSE, c};
  pthread_mutex_init(&c->omu, NULL);
  grpc_metadata_array_init(&c->md);
  grpc_call_error e;
  if (m == M_GENERIC) {
    grpc_call_details_init(&c->details);
    e = grpc_server_request_call(b->srv, &c->call, &c->details, &c->md, q->cq, q->cq, &c->t_request);
  } else {
    e = grpc_server_request_registered_call(b->srv, b->mh[m], &c->call, &c->deadline, &c->md, &c->req, q->cq,
                                            q->cq, &c->t_request);
  }
  atomic_fetch_add(&b->live, 1);
  if (e != GRPC_CALL_OK) {
    DTS_ERROR("grpc", "arming method %d failed: %d", m, (int)e);
    call_free(c);
  }
}

/* A rejected batch means a bug on our side (two sends in flight...); no
 * completion will come, so give back the reference taken for it. */
static void start(dts_call *c, const grpc_op *ops, size_t n, btag *t) {
  call_ref(c);
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
  if (e != GRPC_CALL_OK) {
    DTS_ERROR("grpc", "grpc_call_start_batch failed: %d (method %d)", (int)e, c->method);
    call_unref(c);
  }
}

static size_t op_md(dts_call *c, grpc_op *op) {
  if (c->md_sent) return 0;
  memset(op, 0, sizeof(*op));
  op->op = GRPC_OP_SEND_INITIAL_METADATA;
  c->md_sent = true;
  return 1;
}

static void free_buf(void *p) { dts_free(p); }

static grpc_byte_buffer *to_bb(dts_buf body) {
  grpc_slice sl;
  if (body.n > 0) {
    sl = grpc_slice_new(body.p, body.n, free_buf);
  } else {
    dts_free(body.p);
    sl = grpc_empty_slice();
  }
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  return bb;
}

/* One send batch: initial metadata (once per call), then a message when
 * `body` is given (consumed), then the status when `end`. */
static void send_batch(dts_call *c, dts_buf *body, bool end, grpc_status_code st, const char *msg) {
  grpc_op ops[3];
  grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
  size_t n = op_md(c, &ops[0]);
  if (body != NULL) {
    c->out = to_bb(*body);
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->out;
  }
  if (end) {
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = st;
    if (msg != NULL) ops[n].data.send_status_from_server.status_details = &details;
    n++;
  }
  if (n > 0) start(c, ops, n, &c->t_send);
  grpc_slice_unref(details); /* not retained past start_batch */
}

static void call_reply(dts_call *c, dts_buf body) { send_batch(c, &body, true, GRPC_STATUS_OK, NULL); }
static void call_fail(dts_call *c, dts_status st, const char *msg) { send_batch(c, NULL, true, (grpc_status_code)st, msg); }
/* Streams: starts the send at once when none is in flight, else queues it
 * (messages in order, the final status after them). */
static void stream_push(dts_call *c, dts_buf *body, bool end, dts_status st, const char *msg) {
  pthread_mutex_lock(&c->omu);
  if (c->o_dead || c->o_end) { /* gone, or already ended */
    pthread_mutex_unlock(&c->omu);
    if (body != NULL) dts_buf_free(body);
    return;
  }
  if (c->o_busy) {
    if (end) {
      c->o_end = true;
      c->o_end_st = st;
      c->o_end_msg = dts_strdup(msg ? msg : "");
    } else if (body != NULL) {
      atomic_fetch_add(&c->o_queued, body->n);
      dts_bufq_push(&c->oq, *body);
    }
    pthread_mutex_unlock(&c->omu);
    return;
  }
  if (body != NULL) atomic_fetch_add(&c->o_queued, body->n);
  c->o_busy = true;
  if (end) c->o_end = c->o_end_sent = true;
  c->o_inflight = body != NULL ? body->n : 0;
  pthread_mutex_unlock(&c->omu);
  send_batch(c, body, end, (grpc_status_code)st, end ? msg : NULL);
}

static size_t stream_queued(dts_call *c) { return atomic_load(&c->o_queued); }

static void post_event(dts_call *c, unsigned kind, bool ok);

static void stream_watch(dts_call *c, size_t below) {
  pthread_mutex_lock(&c->omu);
  bool now = !c->o_dead && atomic_load(&c->o_queued) <= below;
  if (!now && !c->o_dead) {
    c->o_watch = true;
    c->o_below = below;
  }
  pthread_mutex_unlock(&c->omu);
  if (now) {
    call_ref(c); /* the event's reference */
    post_event(c, DTS_CALL_DRAINED, true);
  }
}

static void stream_open(dts_call *c) { stream_push(c, NULL, false, DTS_ST_OK, NULL); }
static void stream_send(dts_call *c, dts_buf msg) { stream_push(c, &msg, false, DTS_ST_OK, NULL); }
static void stream_end(dts_call *c, dts_status st, const char *msg) { stream_push(c, NULL, true, st, msg); }

/* A metadata value copied out (empty when the key is absent). */
static void md_value(const grpc_metadata_array *md, const char *key, char *out, size_t n) {
  if (n == 0) return;
  out[0] = '\0';
  size_t kl = strlen(key);
  for (size_t i = 0; i < md->count; i++) {
    grpc_slice k = md->metadata[i].key, v = md->metadata[i].value;
    if (GRPC_SLICE_LENGTH(k) != kl || memcmp(GRPC_SLICE_START_PTR(k), key, kl) != 0) continue;
    size_t m = GRPC_SLICE_LENGTH(v) < n - 1 ? GRPC_SLICE_LENGTH(v) : n - 1;
    for (size_t j = 0; j < m; j++) { /* printable ASCII only: it is shown and logged */
      char ch = (char)GRPC_SLICE_START_PTR(v)[j];
      out[j] = ch >= 0x20 && ch < 0x7f ? ch : '?';
    }
    out[m] = '\0';
    return;
  }
}

/* The metadata arrived with the call, before any actor saw it, and does
 * not change: any thread may read it. */
static const char *call_principal(dts_call *c) { return c->principal; }
static bool call_lease_bound(dts_call *c) { return c->lease_bound; }

static void call_describe(dts_call *c, char *w, size_t wn, char *a, size_t an) {
  md_value(&c->md, "workerid", w, wn);
  md_value(&c->md, "x-user-agent", a, an);
  if (an > 0 && a[0] == '\0') md_value(&c->md, "user-agent", a, an);
}

static dts_actor *owner_of(dts_call *c) { return (dts_actor *)(atomic_load(&c->owner) & ~(uintptr_t)1); }

static bool call_ended(dts_call *c) { return (atomic_load(&c->owner) & 1) != 0; }

static void event_drop(dts_msg *m);

static void post_to(dts_call *c, dts_actor *to, unsigned kind, bool ok) {
  /* carries a reference the caller took (or the completed batch's) */
  dts_call_event *e = (dts_call_event *)dts_msg_alloc(kind, sizeof(dts_call_event));
  e->hdr.drop = event_drop;
  e->call = c;
  e->ok = ok;
  dts_send(to, &e->hdr);
}

/* The engine chose the actor that owns the call.  When the call already
 * ended, the owner hears it now (it would not otherwise).  The call holds
 * a reference on its owner: an actor may leave memory before the client
 * hangs up, and the event must not reach freed memory. */
static void set_owner(dts_call *c, dts_actor *owner) {
  dts_actor_ref(owner);
  uintptr_t v = atomic_load(&c->owner);
  while (!atomic_compare_exchange_weak(&c->owner, &v, (uintptr_t)owner | (v & 1))) {
  }
  dts_actor *old = (dts_actor *)(v & ~(uintptr_t)1);
  if (old != NULL) dts_actor_unref(old);
  if ((v & 1) && (v & ~(uintptr_t)1) == 0) {
    call_ref(c);
    post_to(c, owner, DTS_CALL_CLOSED, true);
  }
}

const dts_call_ops dts_bridge_call_ops = {
    .ref = call_ref,
    .unref = call_unref,
    .set_owner = set_owner,
    .ended = call_ended,
    .set_owner_data = set_owner_data,
    .owner_data = owner_data,
    .reply = call_reply,
    .fail = call_fail,
    .stream_open = stream_open,
    .stream_send = stream_send,
    .stream_end = stream_end,
    .stream_queued = stream_queued,
    .stream_watch = stream_watch,
    .describe = call_describe,
    .principal = call_principal,
    .lease_bound = call_lease_bound,
};

/* ------------------------------------------------------------------------ */
/* routing                                                                  */

static bool slice_eq(grpc_slice s, const char *z) {
  size_t n = strlen(z);
  return GRPC_SLICE_LENGTH(s) == n && memcmp(GRPC_SLICE_START_PTR(s), z, n) == 0;
}

/* Under hubs_lock (read or write). */
static dts_hub *find_named(dts_bridge *b, const char *want, size_t wl) {
  dts_hubset *hs = b->cfg.hubs;
  for (int i = 0; i < hs->nlive; i++) {
    const char *hn = dts_hub_name(hs->live[i]);
    if (strlen(hn) == wl && memcmp(hn, want, wl) == 0) return hs->live[i];
  }
  return NULL;
}

/* A header's value (not NUL-terminated), or NULL. */
static const char *header(dts_call *c, const char *key, size_t *len) {
  for (size_t i = 0; i < c->md.count; i++)
    if (slice_eq(c->md.metadata[i].key, key)) {
      *len = GRPC_SLICE_LENGTH(c->md.metadata[i].value);
      return (const char *)GRPC_SLICE_START_PTR(c->md.metadata[i].value);
    }
  return NULL;
}

/* The hub the call's `taskhub` header names (under hubs_lock). */
static dts_hub *find_hub(dts_bridge *b, dts_call *c, char *name, size_t namelen) {
  size_t wl;
  const char *want = header(c, "taskhub", &wl);
  if (want == NULL) {
    want = b->cfg.default_hub;
    wl = strlen(want);
  }
  dts_strlcpy_n(name, want, wl < 200 ? wl : 200, namelen);
  return find_named(b, want, wl);
}

static void hub_names(dts_bridge *b, char *out, size_t n) {
  out[0] = '\0';
  size_t k = 0;
  dts_hubset *hs = b->cfg.hubs;
  for (int i = 0; i < hs->nlive && k + 1 < n; i++)
    k += (size_t)snprintf(out + k, n - k, "%s%s", i ? ", " : "", dts_hub_name(hs->live[i]));
}

/* A DeleteTaskHub that failed (the store refused its wipe) leaves the hub
 * with its data: it is served again.  Under the write lock. */
static void revive_failed_deletions(dts_bridge *b) {
  dts_hubset *hs = b->cfg.hubs;
  for (int i = 0; i < hs->nretired; i++) {
    dts_hub *h = hs->retired[i];
    if (dts_hub_delete_state(h) >= 0 || hs->nlive == DTS_MAX_HUBS) continue;
    bool taken = false;
    for (int j = 0; j < hs->nlive; j++) taken |= strcmp(dts_hub_name(hs->live[j]), dts_hub_name(h)) == 0;
    if (taken) continue;
    dts_hub_undelete(h);
    hs->live[hs->nlive++] = h;
    hs->retired[i--] = hs->retired[--hs->nretired];
    DTS_WARN("grpc", "task hub '%s': its deletion failed; it is served again with its data", dts_hub_name(h));
  }
}

/* The hub of that name deleted last, if it is not yet gone from the store. */
static dts_hub *being_deleted(dts_bridge *b, const char *name) {
  dts_hubset *hs = b->cfg.hubs;
  for (int i = hs->nretired - 1; i >= 0; i--)
    if (strcmp(dts_hub_name(hs->retired[i]), name) == 0)
      return dts_hub_delete_state(hs->retired[i]) == 0 ? hs->retired[i] : NULL;
  return NULL;
}

/* Creates and serves hub `name`, which is not served and not being deleted,
 * and records its marker so it is served after a restart (under the write
 * lock).  NULL, with the status and why, when it cannot be. */
static dts_hub *new_hub(dts_bridge *b, const char *name, dts_status *st, char *why, size_t whylen) {
  dts_hubset *hs = b->cfg.hubs;
  if (hs->nlive == DTS_MAX_HUBS || hs->nretired == DTS_MAX_HUBS) {
    *st = DTS_ST_RESOURCE_EXHAUSTED;
    snprintf(why, whylen, "too many task hubs");
    return NULL;
  }
  dts_hub_config hc = hs->tmpl;
  hc.name = name;
  hc.retention_set = false;
  dts_hub *nh;
  if (dts_hub_create(&hc, &nh) != DTS_OK) {
    *st = DTS_ST_INTERNAL;
    snprintf(why, whylen, "cannot create the task hub: its data cannot be read (see the log)");
    return NULL;
  }
  if (dts_hub_persist_marker(nh) != DTS_OK) {
    dts_err e = dts_store_writable(hs->tmpl.store, why, whylen);
    dts_hub_shutdown(nh);
    hs->retired[hs->nretired++] = nh; /* released at stop, with the others */
    *st = e == DTS_ELIMIT ? DTS_ST_RESOURCE_EXHAUSTED : DTS_ST_INTERNAL;
    if (e == DTS_OK) snprintf(why, whylen, "cannot create the task hub: the store refused it");
    return NULL;
  }
  hs->live[hs->nlive++] = nh;
  DTS_INFO("grpc", "task hub '%s' created", name);
  return nh;
}

/* A hub named by a call and not served, with dynamic task hubs on (the
 * emulator's DTS_USE_DYNAMIC_TASK_HUBS): the hub is created on first use.
 * NULL, with the status and why, when it cannot be. */
static dts_hub *create_named(dts_bridge *b, const char *name, dts_status *st, char *why, size_t whylen) {
  pthread_rwlock_wrlock(&b->hubs_lock);
  dts_hub *h = find_named(b, name, strlen(name)); /* another call may have created it meanwhile */
  *st = DTS_ST_OK;
  const char *problem = h == NULL ? dts_hub_name_problem(name) : NULL;
  if (h == NULL && problem != NULL) {
    *st = DTS_ST_INVALID_ARGUMENT;
    snprintf(why, whylen, "cannot create task hub '%.80s': %s", name, problem);
  } else if (h == NULL && being_deleted(b, name) != NULL) {
    *st = DTS_ST_UNAVAILABLE;
    snprintf(why, whylen, "task hub '%.80s' is being deleted; try again", name);
  } else if (h == NULL) {
    revive_failed_deletions(b);
    h = find_named(b, name, strlen(name));
    if (h == NULL) h = new_hub(b, name, st, why, whylen);
  }
  pthread_rwlock_unlock(&b->hubs_lock);
  return h;
}

static dts_hub *create_on_use(dts_bridge *b, dts_call *c) {
  char name[256], why[400];
  pthread_rwlock_rdlock(&b->hubs_lock);
  find_hub(b, c, name, sizeof(name));
  pthread_rwlock_unlock(&b->hubs_lock);
  dts_status st;
  dts_hub *h = create_named(b, name, &st, why, sizeof(why));
  if (h == NULL) call_fail(c, st, why);
  return h;
}

dts_hub *dts_bridge_hub(dts_bridge *b, const char *name, dts_status *st, char *why, size_t whylen) {
  pthread_rwlock_rdlock(&b->hubs_lock);
  dts_hub *h = find_named(b, name, strlen(name));
  pthread_rwlock_unlock(&b->hubs_lock);
  if (h != NULL) return h;
  if (b->cfg.dynamic_hubs) return create_named(b, name, st, why, whylen);
  *st = DTS_ST_NOT_FOUND;
  snprintf(why, whylen, "task hub '%.80s' is not served", name);
  return NULL;
}

int dts_bridge_hubs(dts_bridge *b, dts_hub **out, int max) {
  pthread_rwlock_rdlock(&b->hubs_lock);
  dts_hubset *hs = b->cfg.hubs;
  int n = hs->nlive < max ? hs->nlive : max;
  for (int i = 0; i < n; i++) out[i] = hs->live[i];
  pthread_rwlock_unlock(&b->hubs_lock);
  return n;
}

/* CreateTaskHub of a name not served (under the write lock).  While a hub
 * of that name is still being deleted (its wipe not committed), the
 * creation waits (tick() looks again): a new hub must not load the old
 * one's data, nor have its marker removed by the old one's wipe.  A
 * deletion that failed brings the old hub back instead. */
static void create_hub(dts_bridge *b, dts_call *c, const char *name) {
  dts_hubset *hs = b->cfg.hubs;
  if (being_deleted(b, name) != NULL) {
    if (b->npending == DTS_MAX_HUBS) {
      call_fail(c, DTS_ST_UNAVAILABLE, "task hub deletions still in progress; try again");
      return;
    }
    call_ref(c);
    b->pending[b->npending].call = c;
    snprintf(b->pending[b->npending].name, sizeof(b->pending[0].name), "%s", name);
    b->npending++;
    return;
  }
  revive_failed_deletions(b);
  for (int i = 0; i < hs->nlive; i++)
    if (strcmp(dts_hub_name(hs->live[i]), name) == 0) { /* its deletion failed: it is back, data and all */
      CreateTaskHubResponse resp = CREATE_TASK_HUB_RESPONSE__INIT;
      call_reply(c, dts_pb_pack(&resp.base));
      return;
    }
  char why[400];
  dts_status st;
  if (new_hub(b, name, &st, why, sizeof(why)) == NULL) {
    call_fail(c, st, why);
    return;
  }
  CreateTaskHubResponse resp = CREATE_TASK_HUB_RESPONSE__INIT;
  call_reply(c, dts_pb_pack(&resp.base));
}

/* Creations that waited for a deletion (under the write lock). */
static void create_pending(dts_bridge *b) {
  for (int i = 0; i < b->npending;) {
    bool shutting = atomic_load(&b->shutting_down);
    if (!shutting && being_deleted(b, b->pending[i].name) != NULL) {
      i++;
      continue;
    }
    dts_call *c = b->pending[i].call;
    char name[80];
    snprintf(name, sizeof(name), "%s", b->pending[i].name);
    b->pending[i] = b->pending[--b->npending];
    if (shutting) call_fail(c, DTS_ST_UNAVAILABLE, "dtsd is shutting down");
    else create_hub(b, c, name);
    call_unref(c);
  }
}

/* CreateTaskHub and DeleteTaskHub change the set of hubs: true when the
 * request was answered here (the write lock is held for it). */
static bool route_hub_change(dts_bridge *b, dts_call *c, dts_hub **out) {
  char name[256], msg[900];
  pthread_rwlock_wrlock(&b->hubs_lock);
  dts_hub *h = find_hub(b, c, name, sizeof(name));
  bool done = false;
  if (h == NULL && c->method == DTS_M_CREATE_TASK_HUB) { /* a new hub, created here */
    const char *why = dts_hub_name_problem(name);
    if (why != NULL) {
      snprintf(msg, sizeof(msg), "cannot create task hub '%s': %s", name, why);
      call_fail(c, DTS_ST_INVALID_ARGUMENT, msg);
    } else {
      create_hub(b, c, name);
    }
    done = true;
  } else if (h != NULL && c->method == DTS_M_DELETE_TASK_HUB) { /* no new calls reach it from now on */
    dts_hubset *hs = b->cfg.hubs;
    if (hs->nretired == DTS_MAX_HUBS) {
      call_fail(c, DTS_ST_RESOURCE_EXHAUSTED, "too many task hubs deleted since start; restart dtsd");
      done = true;
    } else {
      for (int i = 0; i < hs->nlive; i++)
        if (hs->live[i] == h) {
          hs->live[i] = hs->live[--hs->nlive];
          break;
        }
      hs->retired[hs->nretired++] = h;
    }
  }
  pthread_rwlock_unlock(&b->hubs_lock);
  *out = h;
  return done;
}

/* ListTaskHubs: the served hubs the caller has a role on, by name. */
static void list_hubs(dts_bridge *b, dts_call *c, const dts_auth_decision *d) {
  char *names[DTS_MAX_HUBS];
  Dtsd__Admin__ListTaskHubsResponse resp = DTSD__ADMIN__LIST_TASK_HUBS_RESPONSE__INIT;
  pthread_rwlock_rdlock(&b->hubs_lock);
  dts_hubset *hs = b->cfg.hubs;
  for (int i = 0; i < hs->nlive; i++) /* hubs outlive the bridge */
    if (dts_auth_roles_in(d, dts_hub_name(hs->live[i])) != 0)
      names[resp.n_names++] = (char *)dts_hub_name(hs->live[i]);
  resp.names = names;
  dts_buf body = dts_pb_pack(&resp.base);
  pthread_rwlock_unlock(&b->hubs_lock);
  call_reply(c, body);
}

/* The verified client certificate's principal: its SPIFFE id, else its
 * first subject alternative name, else its common name. */
static bool cert_principal(dts_call *c, char *out, size_t len) {
  grpc_auth_context *ctx = grpc_call_auth_context(c->call);
  if (ctx == NULL) return false;
  static const char *const props[3] = {GRPC_PEER_SPIFFE_ID_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME, GRPC_X509_CN_PROPERTY_NAME};
  bool found = false;
  for (int i = 0; i < 3 && !found; i++) {
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, props[i]);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    if (p != NULL && p->value_length > 0 && p->value_length < len) {
      memcpy(out, p->value, p->value_length);
      out[p->value_length] = '\0';
      found = true;
    }
  }
  grpc_auth_context_release(ctx);
  return found;
}

/* Who the caller is and whether it may call this method on the hub it
 * names (auth.h) -- decided before the hub is looked up, so a refusal
 * says nothing of whether the hub exists.  false: refused (answered and
 * audited). */
static bool authorize(dts_bridge *b, dts_call *c, dts_auth_decision *d) {
  c->peer = grpc_call_get_peer(c->call);
  struct sockaddr_storage ss;
  bool have = c->peer != NULL && dts_auth_parse_peer(c->peer, &ss);
  size_t hl, al;
  const char *h = header(c, "taskhub", &hl), *auth = header(c, "authorization", &al);
  char hub[128];
  if (h != NULL) dts_strlcpy_n(hub, h, hl < 100 ? hl : 100, sizeof(hub));
  else dts_strlcpy(hub, b->cfg.default_hub, sizeof(hub));
  int needs = dts_auth_method_needs((dts_method)c->method);
  if (c->method == DTS_M_STREAM_HISTORY) needs = AUTH_READ | AUTH_WORK; /* narrowed once decoded (route) */
  char certp[520];
  dts_auth_req r = {.peer = have ? (const struct sockaddr *)&ss : NULL, .tls = b->tls, .authorization = auth,
                    .authorization_len = auth ? al : 0, .hub = hub, .needs = needs,
                    .cert_principal = b->mtls && cert_principal(c, certp, sizeof(certp)) ? certp : NULL};
  dts_auth_check(b->cfg.auth, &r, d);
  const char *mname = dts_methods[c->method].name;
  if (d->st != DTS_ST_OK) {
    dts_audit_event e = {"deny", d->principal, c->peer, hub, mname, d->reason};
    dts_audit_log(b->cfg.audit, &e);
    call_fail(c, d->st, d->msg);
    return false;
  }
  c->principal = dts_strdup(d->principal);
  if (c->method == DTS_M_GET_WORK_ITEMS) { /* checked again while the stream lives */
    c->authz = auth ? dts_strndup(auth, al) : NULL;
    c->certp = r.cert_principal ? dts_strdup(r.cert_principal) : NULL;
    c->hubname = dts_strdup(hub);
  }
  if ((needs & (AUTH_WRITE | AUTH_ADMIN)) || c->method == DTS_M_GET_WORK_ITEMS) {
    dts_audit_event e = {c->method == DTS_M_GET_WORK_ITEMS ? "stream-open" : "call", d->principal, c->peer, hub, mname, NULL};
    dts_audit_log(b->cfg.audit, &e);
  }
  return true;
}

/* Open WaitFor* calls per connection, worker streams in all and per
 * principal: false when over (answered RESOURCE_EXHAUSTED). */
static bool within_limits(dts_bridge *b, dts_call *c) {
  char msg[300];
  if ((c->method == DTS_M_WAIT_START || c->method == DTS_M_WAIT_COMPLETION) && c->peer != NULL) {
    if (!count_up(&b->waits, c->peer, b->lim.waits_per_conn)) {
      snprintf(msg, sizeof(msg), "this connection has %d WaitForInstance calls open already (--max-waits-per-connection)",
               b->lim.waits_per_conn);
      call_fail(c, DTS_ST_RESOURCE_EXHAUSTED, msg);
      return false;
    }
    c->counted_wait = true;
  }
  if (c->method == DTS_M_GET_WORK_ITEMS) {
    if (atomic_fetch_add(&b->streams_all, 1) >= b->lim.worker_streams) {
      atomic_fetch_sub(&b->streams_all, 1);
      snprintf(msg, sizeof(msg), "dtsd has %d worker streams open already (--max-worker-streams)", b->lim.worker_streams);
      call_fail(c, DTS_ST_RESOURCE_EXHAUSTED, msg);
      return false;
    }
    if (!count_up(&b->streams, c->principal, b->lim.worker_streams_per_principal)) {
      atomic_fetch_sub(&b->streams_all, 1);
      snprintf(msg, sizeof(msg), "'%s' has %d worker streams open already (--max-worker-streams-per-principal)",
               c->principal, b->lim.worker_streams_per_principal);
      call_fail(c, DTS_ST_RESOURCE_EXHAUSTED, msg);
      return false;
    }
    c->counted_stream = true;
  }
  return true;
}

static void route(dts_bridge *b, dts_call *c) {
  if (c->method == M_GENERIC) {
    char msg[300];
    snprintf(msg, sizeof(msg), "method %.*s is not served by dtsd", (int)GRPC_SLICE_LENGTH(c->details.method),
             (const char *)GRPC_SLICE_START_PTR(c->details.method));
    call_fail(c, DTS_ST_UNIMPLEMENTED, msg);
    return;
  }
  dts_auth_decision ad;
  if (!authorize(b, c, &ad) || !within_limits(b, c)) return;
  if (c->method == DTS_M_ADMIN_LIST_TASK_HUBS) {
    list_hubs(b, c, &ad);
    return;
  }
  const dts_method_info *mi = &dts_methods[c->method];
  char name[256], names[512], msg[900];
  dts_hub *h;
  if (c->method == DTS_M_CREATE_TASK_HUB || c->method == DTS_M_DELETE_TASK_HUB) {
    if (route_hub_change(b, c, &h)) return;
    find_hub(b, c, name, sizeof(name)); /* its name, for the message below */
  } else {
    pthread_rwlock_rdlock(&b->hubs_lock);
    h = find_hub(b, c, name, sizeof(name)); /* hubs are never freed while the bridge runs */
    if (h == NULL) hub_names(b, names, sizeof(names));
    pthread_rwlock_unlock(&b->hubs_lock);
    if (h == NULL && b->cfg.dynamic_hubs && (h = create_on_use(b, c)) == NULL) return;
  }
  if (h == NULL) {
    if (c->method == DTS_M_DELETE_TASK_HUB) {
      pthread_rwlock_rdlock(&b->hubs_lock);
      hub_names(b, names, sizeof(names));
      pthread_rwlock_unlock(&b->hubs_lock);
    }
    snprintf(msg, sizeof(msg), "task hub '%s' not found; this dtsd serves: %s (--task-hubs / DTS_TASK_HUB_NAMES)",
             name, names);
    call_fail(c, DTS_ST_NOT_FOUND, msg);
    return;
  }
  if (c->req == NULL) {
    call_fail(c, DTS_ST_INVALID_ARGUMENT, "request message missing");
    return;
  }
  grpc_byte_buffer_reader rd;
  if (!grpc_byte_buffer_reader_init(&rd, c->req)) {
    call_fail(c, DTS_ST_INVALID_ARGUMENT, "cannot read the request message");
    return;
  }
  grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  const uint8_t *p = GRPC_SLICE_START_PTR(all);
  size_t n = GRPC_SLICE_LENGTH(all);
  ProtobufCMessage *req = dts_pb_decode(mi->req, p, n, b->cfg.max_depth, msg, sizeof(msg));
  grpc_slice_unref(all);
  if (req == NULL) {
    call_fail(c, DTS_ST_INVALID_ARGUMENT, msg);
    return;
  }
  if (c->method == DTS_M_HELLO) {
    protobuf_c_message_free_unpacked(req, NULL);
    call_reply(c, (dts_buf){NULL, 0});
    return;
  }
  if (c->method == DTS_M_STREAM_HISTORY && !(ad.roles & AUTH_READ))
    c->lease_bound = true; /* a worker reads the history of its own work item only (orchestration.c) */
  if (c->method == DTS_M_STREAM_HISTORY && !(ad.roles & AUTH_READ) &&
      !((StreamInstanceHistoryRequest *)req)->for_work_item_processing) { /* a worker reads history for its work only */
    protobuf_c_message_free_unpacked(req, NULL);
    snprintf(msg, sizeof(msg), "'%s' may not read histories on task hub '%s': it needs the reader role there",
             ad.principal, name);
    dts_audit_event e = {"deny", ad.principal, c->peer, name, mi->name, "missing role"};
    dts_audit_log(b->cfg.audit, &e);
    call_fail(c, DTS_ST_PERMISSION_DENIED, msg);
    return;
  }
  if (c->method == DTS_M_GET_WORK_ITEMS) {
    c->hub = h;
    pthread_mutex_lock(&b->wmu);
    c->wnext = b->workers;
    if (b->workers) b->workers->wprev = c;
    b->workers = c;
    c->listed = true;
    pthread_mutex_unlock(&b->wmu);
  }
  call_ref(c); /* the engine's reference */
  dts_hub_post(h, (dts_method)c->method, c, req);
}

/* ------------------------------------------------------------------------ */
/* completions                                                              */

static void event_drop(dts_msg *m) { call_unref(((dts_call_event *)m)->call); }

/* An event for the call's owner, carrying the completed batch's reference
 * (or one the caller took). */
static void post_event(dts_call *c, unsigned kind, bool ok) { post_to(c, owner_of(c), kind, ok); }

static void on_request(dts_bridge *b, dts_call *c, bool ok) {
  if (!ok) { /* shutdown dropped this armed request */
    call_free(c);
    return;
  }
  if (!atomic_load(&b->shutting_down)) arm(c->q, c->method);
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->cancelled;
  start(c, &op, 1, &c->t_close);
  route(b, c);
  call_unref(c); /* the arrival's reference */
}

/* A stream's send completed: start the next one queued, or tell the owner
 * the stream is finished (its final status went out) or dead. */
static void on_stream_sent(dts_call *c, bool ok) {
  pthread_mutex_lock(&c->omu);
  atomic_fetch_sub(&c->o_queued, c->o_inflight);
  c->o_inflight = 0;
  if (!ok) {
    c->o_dead = true;
    c->o_busy = false;
    c->o_watch = false;
    pthread_mutex_unlock(&c->omu);
    post_event(c, DTS_CALL_SENT, false);
    return;
  }
  bool drained = c->o_watch && atomic_load(&c->o_queued) <= c->o_below;
  if (drained) c->o_watch = false;
  dts_buf b;
  if (dts_bufq_pop(&c->oq, &b)) {
    c->o_inflight = b.n;
    pthread_mutex_unlock(&c->omu);
    if (drained) {
      call_ref(c);
      post_event(c, DTS_CALL_DRAINED, true);
    }
    send_batch(c, &b, false, GRPC_STATUS_OK, NULL);
    call_unref(c); /* the completed batch's reference; send_batch took its own */
    return;
  }
  if (drained) {
    call_ref(c);
    post_event(c, DTS_CALL_DRAINED, true);
  }
  if (c->o_end && !c->o_end_sent) {
    c->o_end_sent = true;
    char *msg = c->o_end_msg;
    c->o_end_msg = NULL;
    pthread_mutex_unlock(&c->omu);
    send_batch(c, NULL, true, (grpc_status_code)c->o_end_st, msg);
    dts_free(msg);
    call_unref(c);
    return;
  }
  c->o_busy = false;
  bool finished = c->o_end_sent;
  pthread_mutex_unlock(&c->omu);
  if (finished) post_event(c, DTS_CALL_SENT, true);
  else call_unref(c);
}

static void on_send(dts_call *c, bool ok) {
  if (c->out != NULL) {
    grpc_byte_buffer_destroy(c->out);
    c->out = NULL;
  }
  if (owner_of(c) != NULL && dts_methods[c->method].server_streaming) {
    on_stream_sent(c, ok);
    return;
  }
  call_unref(c);
}

/* The call ended.  Its owner hears it -- now, or when the engine sets it. */
static void on_close(dts_call *c) {
  if (c->method == DTS_M_GET_WORK_ITEMS && c->principal != NULL) {
    dts_audit_event e = {"stream-close", c->principal, c->peer, "", dts_methods[c->method].name, NULL};
    dts_audit_log(c->b->cfg.audit, &e);
  }
  uintptr_t v = atomic_fetch_or(&c->owner, 1);
  dts_actor *owner = (dts_actor *)(v & ~(uintptr_t)1);
  if (owner != NULL && !(v & 1)) {
    post_to(c, owner, DTS_CALL_CLOSED, true); /* carries the close batch's reference */
    return;
  }
  call_unref(c);
}

static void begin_shutdown(dts_bridge *b) {
  pthread_mutex_lock(&b->shut_mu);
  bool first = !atomic_load(&b->shutting_down);
  if (first) {
    b->cancel_at = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(1000, GPR_TIMESPAN));
    atomic_store(&b->shutting_down, true);
    grpc_server_shutdown_and_notify(b->srv, b->cqs[0].cq, &b->t_shutdown);
    pthread_rwlock_rdlock(&b->hubs_lock);
    for (int i = 0; i < b->cfg.hubs->nlive; i++) dts_hub_shutdown(b->cfg.hubs->live[i]);
    for (int i = 0; i < b->cfg.hubs->nretired; i++) dts_hub_shutdown(b->cfg.hubs->retired[i]);
    pthread_rwlock_unlock(&b->hubs_lock);
  }
  pthread_mutex_unlock(&b->shut_mu);
}

static void tick(cqt *q) {
  dts_bridge *b = q->b;
  if (atomic_load(&b->stop) && !atomic_load(&b->shutting_down)) begin_shutdown(b);
  if (q->idx == 0 && (b->npending > 0 || b->cfg.hubs->nretired > 0)) {
    pthread_rwlock_wrlock(&b->hubs_lock);
    if (b->npending > 0) create_pending(b);
    if (!atomic_load(&b->shutting_down)) revive_failed_deletions(b);
    pthread_rwlock_unlock(&b->hubs_lock);
  }
  if (atomic_load(&b->shutting_down) && q->idx == 0 && !atomic_load(&b->cancelled_all) &&
      gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), b->cancel_at) >= 0) {
    grpc_server_cancel_all_calls(b->srv);
    atomic_store(&b->cancelled_all, true);
  }
  if (atomic_load(&b->notified) && !q->cq_shut && atomic_load(&b->live) == 0) {
    grpc_completion_queue_shutdown(q->cq);
    q->cq_shut = true;
  }
}

static void *cq_main(void *arg) {
  cqt *q = arg;
  char tname[16];
  snprintf(tname, sizeof(tname), "cq-%d", q->idx);
  pthread_setname_np(pthread_self(), tname);
  for (;;) {
    gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(100, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(q->cq, dl, NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type == GRPC_OP_COMPLETE) {
      btag *t = ev.tag;
      switch (t->kind) {
      case TAG_REQUEST: on_request(q->b, t->call, ev.success); break;
      case TAG_SEND: on_send(t->call, ev.success); break;
      case TAG_CLOSE: on_close(t->call); break;
      case TAG_SHUTDOWN: atomic_store(&q->b->notified, true); break;
      }
    }
    tick(q); /* also on busy queues, which never time out */
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* start / stop                                                             */

static void destroy_queues(dts_bridge *b) {
  for (int i = 0; i < b->ncq; i++) {
    if (b->cqs[i].cq == NULL) continue;
    grpc_completion_queue_shutdown(b->cqs[i].cq);
    while (grpc_completion_queue_next(b->cqs[i].cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(b->cqs[i].cq);
  }
}

dts_err dts_bridge_start(const dts_bridge_config *cfg, dts_bridge **out, int *port, char *err, size_t errlen) {
  dts_bridge *b = dts_calloc(1, sizeof(*b));
  b->cfg = *cfg;
  b->t_shutdown = (btag){TAG_SHUTDOWN, NULL};
  pthread_rwlock_init(&b->hubs_lock, NULL);
  pthread_mutex_init(&b->shut_mu, NULL);
  b->ncq = cfg->cq_threads > 0 ? cfg->cq_threads : 1;
  b->cqs = dts_calloc((size_t)b->ncq, sizeof(cqt));
  grpc_init();
  dts_bridge_limits *l = &b->lim;
  *l = cfg->limits;
  /* above the waits' limit: a connection full of waits must still carry the
   * completions that end them (clients share one connection per target) */
  if (l->streams_per_conn <= 0) l->streams_per_conn = 16384;
  if (l->max_metadata <= 0) l->max_metadata = 16384;
  if (l->handshake_timeout_ms <= 0) l->handshake_timeout_ms = 10000;
  if (l->min_ping_interval_ms <= 0) l->min_ping_interval_ms = 10000;
  if (l->max_ping_strikes <= 0) l->max_ping_strikes = 2;
  if (l->waits_per_conn <= 0) l->waits_per_conn = 10000;
  if (l->worker_streams <= 0) l->worker_streams = 10000;
  if (l->worker_streams_per_principal <= 0) l->worker_streams_per_principal = 1000;
  if (l->drain_grace_ms <= 0) l->drain_grace_ms = 30000;
  pthread_mutex_init(&b->wmu, NULL);
  pthread_mutex_init(&b->waits.mu, NULL);
  pthread_mutex_init(&b->streams.mu, NULL);
  dts_map_init(&b->waits.m);
  dts_map_init(&b->streams.m);
  grpc_arg args[12];
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[0].value.integer = (int)(cfg->max_message > 0x7fffffffL ? 0x7fffffff : cfg->max_message);
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
  args[1].value.integer = -1;
  /* gRPC sets SO_REUSEPORT by default, which would let a second dtsd bind
   * the same port silently; a busy port must be an error. */
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
  args[2].value.integer = 0;
  /* Keepalive pings find workers that vanished without closing their
   * connection (power loss, a cut cable): the stream then ends and its
   * leased work items go back to their queues. */
  args[3].type = GRPC_ARG_INTEGER;
  args[3].key = GRPC_ARG_KEEPALIVE_TIME_MS;
  args[3].value.integer = 60000;
  args[4].type = GRPC_ARG_INTEGER;
  args[4].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
  args[4].value.integer = 20000;
  const struct {
    const char *key;
    int v;
  } lims[] = {{GRPC_ARG_MAX_CONCURRENT_STREAMS, l->streams_per_conn},
              {GRPC_ARG_MAX_METADATA_SIZE, l->max_metadata},
              {GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, l->handshake_timeout_ms},
              {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, l->min_ping_interval_ms},
              {GRPC_ARG_HTTP2_MAX_PING_STRIKES, l->max_ping_strikes},
              {GRPC_ARG_MAX_CONNECTION_IDLE_MS, l->conn_idle_ms > 0 ? l->conn_idle_ms : 0x7fffffff},
              {GRPC_ARG_MAX_CONNECTION_AGE_MS, l->conn_age_ms > 0 ? l->conn_age_ms : 0x7fffffff}};
  size_t na = 5;
  for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++, na++)
    args[na] = (grpc_arg){.type = GRPC_ARG_INTEGER, .key = (char *)lims[i].key, .value.integer = lims[i].v};
  grpc_channel_args ca = {na, args};
  b->srv = grpc_server_create(&ca, NULL);
  for (int i = 0; i < b->ncq; i++) {
    b->cqs[i] = (cqt){.b = b, .idx = i, .cq = grpc_completion_queue_create_for_next(NULL)};
    grpc_server_register_completion_queue(b->srv, b->cqs[i].cq, NULL);
  }
  for (int m = 0; m < DTS_M_COUNT; m++)
    b->mh[m] = grpc_server_register_method(b->srv, dts_methods[m].path, NULL,
                                           GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  b->tls = cfg->tls_creds != NULL;
  b->mtls = b->tls && cfg->mtls;
  grpc_server_credentials *creds = b->tls ? cfg->tls_creds : grpc_insecure_server_credentials_create();
  int p = grpc_server_add_http2_port(b->srv, cfg->addr, creds);
  grpc_server_credentials_release(creds);
  if (p == 0) {
    snprintf(err, errlen, "cannot listen on %s (address in use or invalid?)", cfg->addr);
    grpc_server_destroy(b->srv);
    destroy_queues(b);
    grpc_shutdown();
    pthread_rwlock_destroy(&b->hubs_lock);
    pthread_mutex_destroy(&b->shut_mu);
    pthread_mutex_destroy(&b->wmu);
    counters_fini(&b->waits);
    counters_fini(&b->streams);
    dts_free(b->cqs);
    dts_free(b);
    return DTS_EIO;
  }
  grpc_server_start(b->srv);
  for (int i = 0; i < b->ncq; i++)
    for (int m = 0; m <= M_GENERIC; m++)
      for (int k = 0; k < ARMED_PER_METHOD; k++) arm(&b->cqs[i], m);
  for (int i = 0; i < b->ncq; i++)
    if (pthread_create(&b->cqs[i].thread, NULL, cq_main, &b->cqs[i]) != 0) abort();
  *port = p;
  *out = b;
  return DTS_OK;
}

void dts_bridge_stop(dts_bridge *b) {
  if (b == NULL) return;
  atomic_store(&b->stop, 1);
  for (int i = 0; i < b->ncq; i++) pthread_join(b->cqs[i].thread, NULL);
  grpc_server_destroy(b->srv);
  for (int i = 0; i < b->ncq; i++) grpc_completion_queue_destroy(b->cqs[i].cq);
  grpc_shutdown();
  pthread_rwlock_destroy(&b->hubs_lock);
  pthread_mutex_destroy(&b->shut_mu);
  pthread_mutex_destroy(&b->wmu);
  counters_fini(&b->waits);
  counters_fini(&b->streams);
  dts_free(b->cqs);
  dts_free(b);
}

/* A reference on c unless it is already on its way out (refs 0). */
static bool try_ref(dts_call *c) {
  int r = atomic_load(&c->refs);
  while (r > 0 && !atomic_compare_exchange_weak(&c->refs, &r, r + 1)) {
  }
  return r > 0;
}

void dts_bridge_recheck(dts_bridge *b) {
  if (!dts_auth_enabled(b->cfg.auth)) return;
  enum { BATCH = 64 };
  dts_call *go[BATCH];
  char why[BATCH][200];
  int n = 0;
  pthread_mutex_lock(&b->wmu);
  gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  gpr_timespec grace = gpr_time_from_millis(b->lim.drain_grace_ms, GPR_TIMESPAN);
  for (dts_call *c = b->workers; c != NULL && n < BATCH; c = c->wnext) {
    if (c->drained && !c->cut && gpr_time_cmp(gpr_time_sub(now, c->drained_at), grace) > 0) {
      /* its items were not finished in time (a revoked token cannot complete them): the stream is cut,
       * and what it held goes back to the queue for other workers */
      c->cut = true;
      grpc_call_cancel_with_status(c->call, GRPC_STATUS_UNAUTHENTICATED,
                                   "the stream's credentials no longer hold, and its work items were not finished in time",
                                   NULL);
      continue;
    }
    if (c->drained || c->hub == NULL) continue;
    struct sockaddr_storage ss;
    bool have = c->peer != NULL && dts_auth_parse_peer(c->peer, &ss);
    dts_auth_req r = {.peer = have ? (const struct sockaddr *)&ss : NULL, .tls = b->tls, .authorization = c->authz,
                      .authorization_len = c->authz ? strlen(c->authz) : 0, .cert_principal = c->certp,
                      .hub = c->hubname, .needs = AUTH_WORK, .quiet = true};
    dts_auth_decision d;
    dts_auth_check(b->cfg.auth, &r, &d);
    if (d.st == DTS_ST_OK || !try_ref(c)) continue;
    c->drained = true;
    c->drained_at = now;
    snprintf(why[n], sizeof(why[n]), "the stream's credentials no longer hold (%s): reconnect with fresh ones", d.reason);
    go[n++] = c;
  }
  pthread_mutex_unlock(&b->wmu);
  for (int i = 0; i < n; i++) {
    dts_audit_event e = {"stream-drain", go[i]->principal, go[i]->peer, go[i]->hubname, dts_methods[go[i]->method].name, why[i]};
    dts_audit_log(b->cfg.audit, &e);
    dts_hub_drain_stream(go[i]->hub, go[i], why[i]);
    call_unref(go[i]);
  }
}
