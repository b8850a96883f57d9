/* dispatch.c -- the dispatch actor: ready work items, worker streams,
 * leases and completion tokens of one task hub.  It decodes nothing and
 * touches no disk.
 *
 * Instances and entities offer work items after the commit that made them
 * ready (D_OFFER: the encoded item, its owner, a serial the owner chose,
 * and a token).  Dispatch queues them per kind and hands each to a stream
 * with room that accepts it (filters), round-robin, the moment both exist:
 * push, never poll.  At the lease it publishes the token in the token map,
 * which any thread reads to route a completion straight to its owner.
 *
 * The owner ends a lease (D_DONE) when it applied a completion, or took the
 * item back; a stream that closes gives its items back to their queues
 * with their tokens still valid, so a worker that shuts down gracefully
 * may still complete them; leased again, such an item gets a new token
 * (the owner learns it in an M_LEASED, sent before the item goes out) and
 * the old one is stale.
 */
#include "actors/engine.h"

#include "runtime/timer.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct rlink {
  struct rlink *next;
  bool queued;
} rlink;

typedef struct readyq {
  rlink *head, *tail;
  atomic_long *stat; /* the hub's figure for this queue, or NULL */
} readyq;

typedef struct stream stream;

/* A token in the map: freed a grace period after it leaves. */
typedef struct tokent {
  dts_dir_entry de;
  char token[TOKEN_LEN + 1];
  char kind;
  dts_actor *actor; /* the owner, referenced: completions go straight to it */
  char *owner;
  char *principal; /* of the stream it was sent on; NULL: nobody asked */
} tokent;

typedef struct offer {
  char *okey;         /* "<kind><owner>\x01<serial>": the offers map's key */
  char kind;          /* 'o', 'a', 'e' */
  char *owner;        /* instance or entity id */
  dts_actor *actor;   /* the owner, referenced */
  uint64_t serial;
  char token[TOKEN_LEN + 1];
  tokent *tk;         /* its entry in the token map, once leased */
  char *name, *version;
  dts_buf body;       /* the WorkItem without its token */
  stream *leased_to;
  bool returned;      /* back in its queue, its token still valid */
  uint64_t ready_ns, sent_ns; /* when it was queued, when it was last sent (metrics) */
  rlink rl;
} offer;

struct stream {
  dts_call *call;
  GetWorkItemsRequest *req; /* filters live here */
  int max_orch, max_act, max_ent, n_orch, n_act, n_ent;
  bool ended, closed, congested;
  bool draining;          /* its credentials went: nothing new, it ends once empty */
  char drain_why[200];
  uint64_t last_send;
  uint64_t number;        /* in connection order (ListWorkers) */
  char workerid[128];     /* the client's workerid header ("" when none) */
  char agent[160];        /* its x-user-agent */
  int64_t connected_wall; /* wall-clock ns */
  stream *prev, *next;
};

struct eng_dispatch {
  eng_actor base;
  dts_dir *tokens;   /* token -> owner; written here, read by any thread */
  dts_map offers;    /* okey -> offer */
  readyq rq, aq, eq; /* orchestrations, activities, entity batches */
  stream *streams, *rr;
  uint64_t streams_seen;
  bool shutting_down, deleted;
  atomic_bool paused; /* the store refused writes: nothing is leased (the hub's tick looks) */
  bool poll_armed;
};

#define OWNER(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

/* ---- ready queues ------------------------------------------------------------ */

static void rq_push(readyq *q, rlink *l) {
  if (l->queued) return;
  l->queued = true;
  l->next = NULL;
  if (q->tail) q->tail->next = l;
  else q->head = l;
  q->tail = l;
  if (q->stat) atomic_fetch_add_explicit(q->stat, 1, memory_order_relaxed);
}

static rlink *rq_pop(readyq *q) {
  rlink *l = q->head;
  if (l == NULL) return NULL;
  q->head = l->next;
  if (q->head == NULL) q->tail = NULL;
  l->queued = false;
  if (q->stat) atomic_fetch_sub_explicit(q->stat, 1, memory_order_relaxed);
  return l;
}

/* O(queue length): for the rarer removal of a queued item. */
static void rq_unlink(readyq *q, rlink *l) {
  if (!l->queued) return;
  rlink **pp = &q->head, *prev = NULL;
  while (*pp != NULL && *pp != l) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (*pp == l) {
    *pp = l->next;
    if (q->tail == l) q->tail = prev;
    if (q->stat) atomic_fetch_sub_explicit(q->stat, 1, memory_order_relaxed);
  }
  l->queued = false;
}

static readyq *queue_of(eng_dispatch *d, char kind) {
  return kind == 'o' ? &d->rq : kind == 'a' ? &d->aq : &d->eq;
}

/* ---- tokens -------------------------------------------------------------------- */

static void tokent_free(ck_epoch_entry_t *ep) {
  tokent *t = (tokent *)(void *)((char *)ep - offsetof(tokent, de.ep));
  dts_actor_unref(t->actor);
  dts_free(t->owner);
  dts_free(t->principal);
  dts_free(t);
}

static void token_publish(eng_dispatch *d, offer *o, dts_call *to) {
  if (o->tk != NULL) return;
  tokent *t = dts_calloc(1, sizeof(*t));
  memcpy(t->token, o->token, sizeof(t->token));
  t->kind = o->kind;
  t->actor = o->actor;
  dts_actor_ref(t->actor);
  t->owner = dts_strdup(o->owner);
  const char *p = d->base.h->ops->principal(to);
  t->principal = p != NULL ? dts_strdup(p) : NULL;
  dts_dir_entry_init(&t->de, t->token, TOKEN_LEN);
  dts_dir_put(d->tokens, &t->de);
  o->tk = t;
}

static void token_withdraw(eng_dispatch *d, offer *o) {
  if (o->tk == NULL) return;
  dts_dir_entry *e = dts_dir_del(d->tokens, o->tk->token, TOKEN_LEN);
  DTS_ASSERT(e == &o->tk->de);
  dts_dir_defer(d->tokens, &o->tk->de.ep, tokent_free); /* a reader may still hold it */
  o->tk = NULL;
}

bool eng_token_owner(dts_hub *h, const char *token, char *kind, char *id, size_t idlen, char *principal, size_t plen) {
  bool found = false;
  dts_dir_read_begin();
  dts_dir_entry *e = dts_dir_get(h->disp->tokens, token, TOKEN_LEN);
  if (e != NULL) {
    tokent *t = (tokent *)(void *)e;
    *kind = t->kind;
    dts_strlcpy(id, t->owner, idlen);
    dts_strlcpy(principal, t->principal ? t->principal : "", plen);
    found = true;
  }
  dts_dir_read_end();
  return found;
}

int eng_token_send(dts_hub *h, const char *token, const char *who, dts_call *owned, dts_msg *m) {
  int r = TOKEN_UNKNOWN;
  dts_dir_read_begin();
  dts_dir_entry *e = dts_dir_get(h->disp->tokens, token, TOKEN_LEN);
  if (e != NULL) {
    tokent *t = (tokent *)(void *)e;
    if (who != NULL && t->principal != NULL && t->principal[0] != '\0' && strcmp(t->principal, who) != 0) {
      r = TOKEN_DENIED;
    } else {
      if (owned != NULL) h->ops->set_owner(owned, t->actor);
      dts_send(t->actor, m); /* the token's reference holds until the section ends */
      r = TOKEN_SENT;
    }
  }
  dts_dir_read_end();
  return r;
}

/* ---- offers ---------------------------------------------------------------------- */

/* "<kind><owner>\x01<serial in hex>" */
static char *okey_of(char kind, const char *owner, uint64_t serial) {
  size_t ol = strlen(owner);
  char *k = dts_malloc(ol + 20), *p = k;
  *p++ = kind;
  memcpy(p, owner, ol);
  p += ol;
  *p++ = '\x01';
  char digits[16];
  int n = 0;
  do {
    digits[n++] = "0123456789abcdef"[serial & 15];
    serial >>= 4;
  } while (serial != 0);
  while (n > 0) *p++ = digits[--n];
  *p = '\0';
  return k;
}

/* Frees an offer that is in none of dispatch's structures. */
static void offer_free_bare(offer *o) {
  dts_actor_unref(o->actor);
  dts_free(o->okey);
  dts_free(o->owner);
  dts_free(o->name);
  dts_free(o->version);
  dts_buf_free(&o->body);
  dts_free(o);
}

static void offer_free(eng_dispatch *d, offer *o) {
  token_withdraw(d, o);
  offer_free_bare(o);
}

static void end_lease(offer *o) {
  stream *s = o->leased_to;
  if (s == NULL) return;
  if (o->kind == 'o') s->n_orch--;
  else if (o->kind == 'a') s->n_act--;
  else s->n_ent--;
  o->leased_to = NULL;
}

#define KIND_IX(k) ((k) == 'o' ? 0 : (k) == 'a' ? 1 : 2)

/* A leased item goes back to its queue (abandoned, its stream gone). */
static void requeue(eng_dispatch *d, offer *o) {
  atomic_fetch_add_explicit(&d->base.h->st_back[KIND_IX(o->kind)], 1, memory_order_relaxed);
  o->ready_ns = dts_now_ns();
  rq_push(queue_of(d, o->kind), &o->rl);
}

/* Takes the offer out of everything and frees it. */
static void offer_drop(eng_dispatch *d, offer *o) {
  end_lease(o);
  rq_unlink(queue_of(d, o->kind), &o->rl);
  dts_map_del(&d->offers, o->okey);
  offer_free(d, o);
}

typedef struct m_offer {
  dts_msg hdr;
  offer *o;
} m_offer;

typedef struct m_done {
  dts_msg hdr;
  char *okey;
} m_done;

static void drop_offer_msg(dts_msg *m) {
  offer *o = ((m_offer *)m)->o;
  if (o != NULL) offer_free_bare(o);
}

static void drop_done_msg(dts_msg *m) { dts_free(((m_done *)m)->okey); }

static char *dup_or_null(const char *s) { return s != NULL ? dts_strdup(s) : NULL; }

void eng_offer(eng_actor *owner, char kind, uint64_t serial, const char *token, const char *name, const char *version,
               dts_buf body) {
  dts_hub *h = owner->h;
  offer *o = dts_calloc(1, sizeof(*o));
  o->okey = okey_of(kind, owner->id, serial);
  o->kind = kind;
  o->owner = dts_strdup(owner->id);
  o->actor = &owner->a;
  dts_actor_ref(o->actor);
  o->serial = serial;
  dts_strlcpy(o->token, token, sizeof(o->token));
  o->name = dup_or_null(name);
  o->version = dup_or_null(version);
  o->body = body;
  m_offer *m = (m_offer *)dts_msg_alloc(D_OFFER, sizeof(m_offer));
  m->hdr.drop = drop_offer_msg;
  m->o = o;
  dts_send(&h->disp->base.a, &m->hdr);
}

static void send_done(dts_hub *h, int what, char kind, const char *owner, uint64_t serial) {
  m_done *m = (m_done *)dts_msg_alloc((uint32_t)what, sizeof(m_done));
  m->hdr.drop = drop_done_msg;
  m->okey = okey_of(kind, owner, serial);
  dts_send(&h->disp->base.a, &m->hdr);
}

void eng_offer_done(dts_hub *h, char kind, const char *owner, uint64_t serial) {
  send_done(h, D_DONE, kind, owner, serial);
}

void eng_offer_return(dts_hub *h, char kind, const char *owner, uint64_t serial) {
  send_done(h, D_RETURN, kind, owner, serial);
}

/* ---- streams -------------------------------------------------------------------- */

static bool filter_versions(char **versions, size_t n, const char *v) {
  if (n == 0) return true;
  for (size_t i = 0; i < n; i++)
    if (strcmp(versions[i], v ? v : "") == 0) return true;
  return false;
}

static bool accepts(const stream *s, const offer *o) {
  const WorkItemFilters *f = s->req->work_item_filters;
  if (f == NULL) return true;
  if (o->kind == 'o') {
    for (size_t i = 0; i < f->n_orchestrations; i++)
      if (strcmp(f->orchestrations[i]->name, o->name) == 0 &&
          filter_versions(f->orchestrations[i]->versions, f->orchestrations[i]->n_versions, o->version))
        return true;
    return false;
  }
  if (o->kind == 'a') {
    for (size_t i = 0; i < f->n_activities; i++)
      if (strcmp(f->activities[i]->name, o->name) == 0 &&
          filter_versions(f->activities[i]->versions, f->activities[i]->n_versions, o->version))
        return true;
    return false;
  }
  const char *name = o->owner + 1, *at = strchr(name, '@');
  size_t nl = at ? (size_t)(at - name) : strlen(name);
  for (size_t i = 0; i < f->n_entities; i++)
    if (strlen(f->entities[i]->name) == nl && strncasecmp(f->entities[i]->name, name, nl) == 0) return true;
  return false;
}

static bool usable(const stream *s) { return !s->ended && !s->closed && !s->congested && !s->draining; }

/* A draining stream that holds nothing more ends (the worker reconnects). */
static void finish_drain(eng_dispatch *d, stream *s) {
  if (s == NULL || !s->draining || s->ended || s->closed || s->n_orch + s->n_act + s->n_ent > 0) return;
  s->ended = true;
  DTS_INFO("dispatch", "[%s] worker stream ended: %s", d->base.h->name, s->drain_why);
  d->base.h->ops->stream_end(s->call, DTS_ST_OK, s->drain_why);
}

static bool has_room(const stream *s, char kind) {
  return kind == 'o' ? s->n_orch < s->max_orch : kind == 'a' ? s->n_act < s->max_act : s->n_ent < s->max_ent;
}

/* A stream with room that accepts o, round-robin; NULL if none.  *any_room:
 * whether any stream had room for this kind at all. */
static stream *pick(eng_dispatch *d, const offer *o, bool *any_room) {
  *any_room = false;
  if (d->streams == NULL) return NULL;
  stream *start = d->rr != NULL ? d->rr : d->streams, *s = start;
  do {
    if (usable(s) && has_room(s, o->kind)) {
      *any_room = true;
      if (accepts(s, o)) {
        d->rr = s->next != NULL ? s->next : d->streams;
        return s;
      }
    }
    s = s->next != NULL ? s->next : d->streams;
  } while (s != start);
  return NULL;
}

/* Flow control: a stream whose reader lets more than max_outbox_bytes pile
 * up gets nothing more until half of that has gone (DTS_CALL_DRAINED). */
static void stream_send(eng_dispatch *d, stream *s, dts_buf b) {
  dts_hub *h = d->base.h;
  s->last_send = dts_now_ns();
  h->ops->stream_send(s->call, b);
  if (!s->congested && h->ops->stream_queued(s->call) > (size_t)h->cfg.limits.max_outbox_bytes) {
    s->congested = true;
    DTS_DEBUG("dispatch", "[%s] worker stream congested: dispatch to it waits", h->name);
    h->ops->stream_watch(s->call, (size_t)h->cfg.limits.max_outbox_bytes / 2);
  }
}

static void lease(eng_dispatch *d, offer *o, stream *s) {
  dts_hub *h = d->base.h;
  if (o->returned) { /* leased anew: the old token ends, the owner learns the new one first */
    token_withdraw(d, o);
    eng_new_token(o->kind, o->token);
    m_leased *m = (m_leased *)dts_msg_alloc(M_LEASED, sizeof(m_leased));
    m->serial = o->serial;
    memcpy(m->token, o->token, sizeof(m->token));
    eng_send(h, o->kind == 'e' ? 'e' : 'o', o->owner, &m->hdr, NULL);
    o->returned = false;
  }
  token_publish(d, o, s->call);
  o->leased_to = s;
  if (o->kind == 'o') s->n_orch++;
  else if (o->kind == 'a') s->n_act++;
  else s->n_ent++;
  /* the WorkItem: the owner's fields, then completionToken (field 10) */
  dts_buf w = {dts_malloc(o->body.n + 2 + TOKEN_LEN), o->body.n + 2 + TOKEN_LEN};
  if (o->body.n > 0) memcpy(w.p, o->body.p, o->body.n);
  w.p[o->body.n] = (10 << 3) | 2;
  w.p[o->body.n + 1] = TOKEN_LEN;
  memcpy(w.p + o->body.n + 2, o->token, TOKEN_LEN);
  atomic_fetch_add_explicit(&h->st_dispatched, 1, memory_order_relaxed);
  uint64_t now = dts_now_ns();
  int kind = KIND_IX(o->kind);
  atomic_fetch_add_explicit(&h->st_sent[kind], 1, memory_order_relaxed);
  dts_hist_add(&h->h_dispatch, now - o->ready_ns);
  o->sent_ns = now;
  stream_send(d, s, w);
}

typedef enum { TRY_SENT, TRY_SKIP, TRY_FULL } try_result;

/* Offers every queued item of q once, in order: sent ones leave the queue,
 * skipped ones (no stream accepts them now) keep their place, and the walk
 * stops when no stream has room for the kind at all. */
static void drain(eng_dispatch *d, readyq *q) {
  readyq kept = {NULL, NULL, NULL};
  rlink *l;
  long kept_n = 0;
  while ((l = rq_pop(q)) != NULL) {
    offer *o = OWNER(l, offer, rl);
    bool room;
    stream *s = pick(d, o, &room);
    if (s != NULL) {
      lease(d, o, s);
      continue;
    }
    rq_push(&kept, l);
    kept_n++;
    if (!room) break;
  }
  if (kept.head != NULL) { /* what was kept goes back in front, in order */
    kept.tail->next = q->head;
    if (q->head == NULL) q->tail = kept.tail;
    q->head = kept.head;
    if (q->stat) atomic_fetch_add_explicit(q->stat, kept_n, memory_order_relaxed);
  }
}

static void pump(eng_dispatch *d) {
  if (d->streams == NULL || d->shutting_down || d->deleted) return;
  dts_hub *h = d->base.h;
  if (dts_store_writable(h->cfg.store, NULL, 0) != DTS_OK || atomic_load(&h->freezing)) {
    atomic_store(&d->paused, true); /* results could not be stored: dispatch waits (the hub's tick resumes it) */
    return;
  }
  drain(d, &d->rq);
  drain(d, &d->aq);
  drain(d, &d->eq);
}

/* Every item leased to s goes back to its queue, its token still valid. */
static void stream_release(eng_dispatch *d, stream *s) {
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&d->offers, &it, &k, &v);) {
    offer *o = v;
    if (o->leased_to != s) continue;
    end_lease(o);
    o->returned = true;
    requeue(d, o);
  }
  if (s->prev) s->prev->next = s->next;
  else d->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  if (d->rr == s) d->rr = NULL;
  if (s->req != NULL) get_work_items_request__free_unpacked(s->req, NULL);
  dts_hub *h = d->base.h;
  h->ops->set_owner_data(s->call, NULL);
  h->ops->unref(s->call);
  dts_free(s);
  atomic_fetch_sub_explicit(&h->st_streams, 1, memory_order_relaxed);
}

static void end_streams(eng_dispatch *d, dts_status st, const char *msg) {
  for (stream *s = d->streams; s != NULL; s = s->next) {
    if (s->ended || s->closed) continue;
    s->ended = true;
    d->base.h->ops->stream_end(s->call, st, msg);
  }
}

static void clear_offers(eng_dispatch *d) {
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&d->offers, &it, &k, &v);) offer_drop(d, v);
}

/* ---- handlers ----------------------------------------------------------------- */

static void on_get_work_items(eng_dispatch *d, m_rpc *r) {
  dts_hub *h = d->base.h;
  GetWorkItemsRequest *q = (GetWorkItemsRequest *)r->req;
  if (d->shutting_down || d->deleted) {
    h->ops->stream_end(r->call, d->deleted ? DTS_ST_NOT_FOUND : DTS_ST_UNAVAILABLE,
                       d->deleted ? "task hub deleted" : "dtsd is shutting down; reconnect");
    return;
  }
  if (h->ops->ended(r->call)) return; /* the worker went away before its stream began */
  const struct {
    const char *name;
    int32_t v;
  } asked[3] = {{"maxConcurrentOrchestrationWorkItems", q->max_concurrent_orchestration_work_items},
                {"maxConcurrentActivityWorkItems", q->max_concurrent_activity_work_items},
                {"maxConcurrentEntityWorkItems", q->max_concurrent_entity_work_items}};
  for (int i = 0; i < 3; i++) {
    if (asked[i].v >= 0 && asked[i].v <= h->cfg.limits.max_stream_items) continue;
    char msg[300];
    snprintf(msg, sizeof(msg),
             "%s is %d; a worker stream holds 0 (the default) to %d items of a kind "
             "(--max-stream-items / DTSD_MAX_STREAM_ITEMS)",
             asked[i].name, asked[i].v, h->cfg.limits.max_stream_items);
    h->ops->stream_end(r->call, DTS_ST_INVALID_ARGUMENT, msg);
    return;
  }
  stream *s = dts_calloc(1, sizeof(*s));
  h->ops->ref(r->call);
  s->call = r->call;
  s->req = q;
  r->req = NULL; /* kept: its filters */
  s->max_orch = q->max_concurrent_orchestration_work_items > 0 ? q->max_concurrent_orchestration_work_items
                                                               : h->cfg.default_max_orch;
  s->max_act = q->max_concurrent_activity_work_items > 0 ? q->max_concurrent_activity_work_items
                                                         : h->cfg.default_max_act;
  s->max_ent = q->max_concurrent_entity_work_items > 0 ? q->max_concurrent_entity_work_items : h->cfg.default_max_act;
  s->next = d->streams;
  if (d->streams) d->streams->prev = s;
  d->streams = s;
  s->last_send = dts_now_ns();
  s->number = ++d->streams_seen;
  h->ops->describe(s->call, s->workerid, sizeof(s->workerid), s->agent, sizeof(s->agent));
  s->connected_wall = (int64_t)dts_wall_ns();
  h->ops->set_owner_data(s->call, s);
  h->ops->stream_open(s->call);
  atomic_fetch_add_explicit(&h->st_streams, 1, memory_order_relaxed);
  DTS_INFO("dispatch", "[%s] worker stream opened (max %d orchestrations, %d activities%s)", h->name, s->max_orch,
           s->max_act, q->work_item_filters ? ", filtered" : "");
}

static void on_done_offer(eng_dispatch *d, offer *o, bool keep);

static stream *stream_of(eng_dispatch *d, void *od) {
  for (stream *s = d->streams; s != NULL; s = s->next)
    if (s == od) return s;
  return NULL;
}

static void on_call_event(eng_dispatch *d, dts_call_event *e) {
  stream *s = stream_of(d, d->base.h->ops->owner_data(e->call));
  if (s == NULL) return; /* already released */
  if (e->hdr.kind == DTS_CALL_CLOSED) {
    s->closed = true;
    DTS_INFO("dispatch", "[%s] worker stream closed", d->base.h->name);
    stream_release(d, s);
  } else if (e->hdr.kind == DTS_CALL_DRAINED) {
    s->congested = false;
  } else if (!e->ok) { /* a send failed: the call is dead; CLOSED follows */
    s->ended = true;
  }
}

static void on_tick(eng_dispatch *d) {
  if (d->shutting_down) return;
  dts_hub *h = d->base.h;
  uint64_t now = dts_now_ns();
  for (stream *s = d->streams; s != NULL; s = s->next) {
    if (!usable(s) || now - s->last_send < h->cfg.ping_interval_ns) continue;
    WorkItem wi = WORK_ITEM__INIT;
    HealthPing hp = HEALTH_PING__INIT;
    wi.request_case = WORK_ITEM__REQUEST_HEALTH_PING;
    wi.health_ping = &hp;
    stream_send(d, s, dts_pb_pack(&wi.base));
  }
}

static void on_offer(eng_dispatch *d, m_offer *m) {
  offer *o = m->o;
  m->o = NULL;
  if (d->deleted) { /* the hub is gone: nothing more runs */
    offer_free(d, o);
    return;
  }
  offer *old = dts_map_put(&d->offers, o->okey, o);
  if (old != NULL) { /* cannot happen: serials are unique per owner */
    end_lease(old);
    rq_unlink(queue_of(d, old->kind), &old->rl);
    offer_free(d, old);
  }
  o->ready_ns = dts_now_ns();
  rq_push(queue_of(d, o->kind), &o->rl);
}

static void on_done(eng_dispatch *d, m_done *m, bool keep) {
  offer *o = dts_map_get(&d->offers, m->okey);
  if (o == NULL) return;
  stream *held_by = o->leased_to;
  on_done_offer(d, o, keep);
  if (held_by != NULL && stream_of(d, held_by) != NULL) finish_drain(d, held_by);
}

static void on_done_offer(eng_dispatch *d, offer *o, bool keep) {
  if (!keep) {
    if (o->leased_to != NULL) { /* completed (or withdrawn) while leased */
      dts_hub *h = d->base.h;
      atomic_fetch_add_explicit(&h->st_done[KIND_IX(o->kind)], 1, memory_order_relaxed);
      dts_hist_add(&h->h_work[KIND_IX(o->kind)], dts_now_ns() - o->sent_ns);
    }
    offer_drop(d, o);
    return;
  }
  if (o->leased_to == NULL) return; /* already back */
  end_lease(o);
  o->returned = true;
  requeue(d, o);
}

/* ListWorkers: the connected streams, newest first. */
static void list_workers(eng_dispatch *d, m_rpc *r) {
  dts_hub *h = d->base.h;
  size_t n = 0;
  for (stream *s = d->streams; s != NULL; s = s->next) n += !(s->ended || s->closed);
  Dtsd__Admin__WorkerInfo *w = dts_calloc(n ? n : 1, sizeof(*w));
  Dtsd__Admin__WorkerInfo **pw = dts_calloc(n ? n : 1, sizeof(*pw));
  Google__Protobuf__Timestamp *ts = dts_calloc(n ? 2 * n : 1, sizeof(*ts));
  char(*ids)[32] = dts_calloc(n ? n : 1, sizeof(*ids));
  size_t i = 0;
  int64_t wall = (int64_t)dts_wall_ns(), mono = (int64_t)dts_now_ns();
  for (stream *s = d->streams; s != NULL; s = s->next) {
    if (s->ended || s->closed) continue;
    w[i] = (Dtsd__Admin__WorkerInfo)DTSD__ADMIN__WORKER_INFO__INIT;
    snprintf(ids[i], sizeof(ids[i]), "stream-%llu", (unsigned long long)s->number);
    w[i].stream_id = ids[i];
    w[i].worker_id = s->workerid[0] ? s->workerid : ids[i];
    w[i].user_agent = s->agent;
    w[i].active_orchestrations = s->n_orch;
    w[i].max_orchestrations = s->max_orch;
    w[i].active_activities = s->n_act;
    w[i].max_activities = s->max_act;
    w[i].active_entities = s->n_ent;
    w[i].max_entities = s->max_ent;
    w[i].connected_at = dts_ts_from_ns(&ts[2 * i], s->connected_wall);
    w[i].last_send = dts_ts_from_ns(&ts[2 * i + 1], wall - (mono - (int64_t)s->last_send));
    pw[i] = &w[i];
    i++;
  }
  Dtsd__Admin__ListWorkersResponse resp = DTSD__ADMIN__LIST_WORKERS_RESPONSE__INIT;
  resp.n_workers = i;
  resp.workers = pw;
  h->ops->reply(r->call, dts_pb_pack(&resp.base));
  dts_free(w);
  dts_free(pw);
  dts_free(ts);
  dts_free(ids);
}

static void behaviour(dts_actor *self, dts_msg *m) {
  eng_dispatch *d = (eng_dispatch *)self;
  switch (m->kind) {
  case D_OFFER: on_offer(d, (m_offer *)m); break;
  case D_DONE: on_done(d, (m_done *)m, false); break;
  case D_RETURN: on_done(d, (m_done *)m, true); break;
  case D_RPC:
    if (((m_rpc *)m)->method == DTS_M_ADMIN_LIST_WORKERS) list_workers(d, (m_rpc *)m);
    else on_get_work_items(d, (m_rpc *)m);
    break;
  case D_TICK: on_tick(d); break;
  case D_RESUME: atomic_store(&d->paused, false); break;
  case D_SHUTDOWN:
    d->shutting_down = true;
    end_streams(d, DTS_ST_UNAVAILABLE, "dtsd is shutting down; reconnect");
    break;
  case D_CLEAR: clear_offers(d); break;
  case D_DRAIN: {
    m_drain *x = (m_drain *)m;
    stream *s = stream_of(d, d->base.h->ops->owner_data(x->call));
    if (s != NULL && !s->draining) {
      s->draining = true;
      snprintf(s->drain_why, sizeof(s->drain_why), "%s", x->why);
      DTS_INFO("dispatch", "[%s] worker stream draining: %s", d->base.h->name, x->why);
      finish_drain(d, s);
    }
    break;
  }
  case D_DELETED:
    d->deleted = true;
    clear_offers(d);
    end_streams(d, DTS_ST_NOT_FOUND, "task hub deleted");
    break;
  case DTS_CALL_SENT:
  case DTS_CALL_CLOSED:
  case DTS_CALL_DRAINED: on_call_event(d, (dts_call_event *)m); break;
  default: DTS_WARN("dispatch", "unknown message kind %u", m->kind); break;
  }
}

static void turn_end(dts_actor *self) {
  eng_dispatch *d = (eng_dispatch *)self;
  if (!atomic_load(&d->paused)) pump(d);
  dts_dir_poll(d->tokens); /* frees tokens whose grace period passed */
}

static void fini(dts_actor *self) {
  eng_dispatch *d = (eng_dispatch *)self;
  while (d->streams != NULL) stream_release(d, d->streams);
  clear_offers(d);
  dts_map_fini(&d->offers);
  dts_dir_destroy(d->tokens);
  eng_actor_fini(&d->base);
  dts_free(d);
}

dts_err eng_dispatch_create(dts_hub *h) {
  eng_dispatch *d = dts_calloc(1, sizeof(*d));
  eng_actor_init(&d->base, h, 'd', NULL, behaviour, fini);
  dts_actor_set_turn_end(&d->base.a, turn_end);
  d->tokens = dts_dir_create();
  dts_map_init(&d->offers);
  d->rq.stat = &h->st_ready_orch;
  d->aq.stat = &h->st_ready_act;
  atomic_init(&d->paused, false);
  h->disp = d;
  return DTS_OK;
}

dts_actor *eng_dispatch_actor(dts_hub *h) { return &h->disp->base.a; }

bool eng_dispatch_paused(dts_hub *h) { return atomic_load(&h->disp->paused); }

static void drain_drop(dts_msg *m) {
  m_drain *x = (m_drain *)m;
  if (x->call != NULL) x->hub_ops->unref(x->call);
}

void dts_hub_drain_stream(dts_hub *h, dts_call *c, const char *why) {
  m_drain *x = (m_drain *)dts_msg_alloc(D_DRAIN, sizeof(m_drain));
  x->hdr.drop = drain_drop;
  h->ops->ref(c);
  x->call = c;
  x->hub_ops = h->ops;
  snprintf(x->why, sizeof(x->why), "%s", why);
  dts_send(eng_dispatch_actor(h), &x->hdr);
}
