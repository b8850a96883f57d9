/* fakecall.c -- see fakecall.h. */
#include "tests/fakecall.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <stdlib.h>

atomic_long fake_live_calls;

dts_call *fake_call_new(dts_actor *owner) {
  (void)owner;
  dts_call *c = dts_calloc(1, sizeof(*c));
  atomic_init(&c->refs, 1);
  atomic_init(&c->owner, 0);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  atomic_fetch_add(&fake_live_calls, 1);
  return c;
}

static void fc_ref(dts_call *c) { atomic_fetch_add(&c->refs, 1); }

static void fc_unref(dts_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1) return;
  dts_actor *owner = (dts_actor *)(atomic_load(&c->owner) & ~(uintptr_t)1);
  if (owner != NULL) dts_actor_unref(owner); /* the call's reference (fc_set_owner) */
  dts_buf_free(&c->body);
  for (int i = 0; i < c->nitems; i++) dts_buf_free(&c->items[i]);
  dts_free(c->items);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  dts_free(c);
  atomic_fetch_sub(&fake_live_calls, 1);
}

static void fc_set_owner_data(dts_call *c, void *p) { c->owner_data = p; }
static void *fc_owner_data(dts_call *c) { return c->owner_data; }

static void finish(dts_call *c, int st, const char *msg, dts_buf body) {
  pthread_mutex_lock(&c->mu);
  /* exactly one answer per unary call: a second one is a hub bug */
  DTS_ASSERT(c->answers == 0 && "a unary call was answered twice");
  c->answers++;
  c->answered = true;
  c->status = st;
  snprintf(c->msg, sizeof(c->msg), "%s", msg);
  c->body = body;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static void fc_reply(dts_call *c, dts_buf resp) { finish(c, 0, "", resp); }
static void fc_fail(dts_call *c, dts_status st, const char *msg) { finish(c, (int)st, msg, (dts_buf){NULL, 0}); }

static void ev_drop(dts_msg *m) { fc_unref(((dts_call_event *)m)->call); }

static void post_to(dts_call *c, dts_actor *owner, unsigned kind) {
  DTS_ASSERT(owner != NULL && "an event for a call without an owner");
  dts_call_event *e = (dts_call_event *)dts_msg_alloc(kind, sizeof(*e));
  e->hdr.drop = ev_drop;
  fc_ref(c);
  e->call = c;
  e->ok = true;
  dts_send(owner, &e->hdr);
}

static void post(dts_call *c, unsigned kind) { post_to(c, (dts_actor *)(atomic_load(&c->owner) & ~(uintptr_t)1), kind); }

/* The owner and the close race: whichever comes second posts CLOSED. */
static void fc_set_owner(dts_call *c, dts_actor *owner) {
  dts_actor_ref(owner); /* as the bridge: the call keeps its owner's memory */
  uintptr_t v = atomic_load(&c->owner);
  for (;;) {
    uintptr_t nv = (uintptr_t)owner | (v & 1);
    if (atomic_compare_exchange_weak(&c->owner, &v, nv)) break;
  }
  if ((v & ~(uintptr_t)1) != 0) dts_actor_unref((dts_actor *)(v & ~(uintptr_t)1));
  if ((v & 1) && (v & ~(uintptr_t)1) == 0) post_to(c, owner, DTS_CALL_CLOSED);
}

static bool fc_ended(dts_call *c) { return (atomic_load(&c->owner) & 1) != 0; }

static void fc_stream_open(dts_call *c) { post(c, DTS_CALL_SENT); }

static void fc_stream_send(dts_call *c, dts_buf msg) {
  pthread_mutex_lock(&c->mu);
  if (c->nitems == c->capitems) {
    c->capitems = c->capitems ? c->capitems * 2 : 16;
    c->items = dts_realloc(c->items, (size_t)c->capitems * sizeof(*c->items));
  }
  c->items[c->nitems++] = msg;
  if (c->slow) c->queued += msg.n;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  post(c, DTS_CALL_SENT);
}

static size_t fc_stream_queued(dts_call *c) {
  pthread_mutex_lock(&c->mu);
  size_t q = c->queued;
  pthread_mutex_unlock(&c->mu);
  return q;
}

static void fc_stream_watch(dts_call *c, size_t below) {
  pthread_mutex_lock(&c->mu);
  bool now = c->queued <= below;
  if (!now) {
    c->watching = true;
    c->below = below;
  }
  pthread_mutex_unlock(&c->mu);
  if (now) post(c, DTS_CALL_DRAINED);
}

void fake_deliver(dts_call *c) {
  pthread_mutex_lock(&c->mu);
  c->queued = 0;
  bool drained = c->watching;
  c->watching = false;
  pthread_mutex_unlock(&c->mu);
  if (drained) post(c, DTS_CALL_DRAINED);
}

static void fc_stream_end(dts_call *c, dts_status st, const char *msg) {
  pthread_mutex_lock(&c->mu);
  c->ended = true;
  c->status = (int)st;
  snprintf(c->msg, sizeof(c->msg), "%s", msg ? msg : "");
  pthread_mutex_unlock(&c->mu);
  post(c, DTS_CALL_SENT);
}

bool fake_answered(dts_call *c) {
  pthread_mutex_lock(&c->mu);
  bool a = c->answered;
  pthread_mutex_unlock(&c->mu);
  return a;
}

int fake_nitems(dts_call *c) {
  pthread_mutex_lock(&c->mu);
  int n = c->nitems;
  pthread_mutex_unlock(&c->mu);
  return n;
}

bool fake_item(dts_call *c, int i, dts_buf *out) {
  pthread_mutex_lock(&c->mu);
  bool ok = i >= 0 && i < c->nitems;
  if (ok) *out = dts_buf_copy(c->items[i].p, c->items[i].n);
  pthread_mutex_unlock(&c->mu);
  return ok;
}

void fake_close(dts_call *c) {
  uintptr_t v = atomic_fetch_or(&c->owner, 1);
  if ((v & ~(uintptr_t)1) != 0 && !(v & 1)) post_to(c, (dts_actor *)v, DTS_CALL_CLOSED);
}

static const char *fc_principal(dts_call *c) {
  (void)c;
  return NULL;
}

static bool fc_lease_bound(dts_call *c) {
  (void)c;
  return false;
}

static void fc_describe(dts_call *c, char *w, size_t wn, char *a, size_t an) {
  (void)c;
  snprintf(w, wn, "fake-worker");
  snprintf(a, an, "fakecall");
}

void dts_call_ref(dts_call *c) { fc_ref(c); }
void dts_call_unref(dts_call *c) { fc_unref(c); }

const dts_call_ops fake_call_ops = {
    .ref = fc_ref,
    .unref = fc_unref,
    .set_owner = fc_set_owner,
    .ended = fc_ended,
    .set_owner_data = fc_set_owner_data,
    .owner_data = fc_owner_data,
    .reply = fc_reply,
    .fail = fc_fail,
    .stream_open = fc_stream_open,
    .stream_send = fc_stream_send,
    .stream_end = fc_stream_end,
    .stream_queued = fc_stream_queued,
    .stream_watch = fc_stream_watch,
    .describe = fc_describe,
    .principal = fc_principal,
    .lease_bound = fc_lease_bound,
};
