/* fakecall.c -- see fakecall.h. */
#include "tests/fakecall.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <stdio.h>
#include <stdlib.h>

atomic_long fake_live_calls;

dts_call *fake_call_new(dts_actor *owner) {
  dts_call *c = dts_calloc(1, sizeof(*c));
  atomic_init(&c->refs, 1);
  c->owner = owner;
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  atomic_fetch_add(&fake_live_calls, 1);
  return c;
}

void dts_call_ref(dts_call *c) { atomic_fetch_add(&c->refs, 1); }

void dts_call_unref(dts_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1) return;
  dts_buf_free(&c->body);
  for (int i = 0; i < c->nitems; i++) dts_buf_free(&c->items[i]);
  dts_free(c->items);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  dts_free(c);
  atomic_fetch_sub(&fake_live_calls, 1);
}

void dts_call_set_owner_data(dts_call *c, void *p) { c->owner_data = p; }
void *dts_call_owner_data(dts_call *c) { return c->owner_data; }

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

void dts_call_reply(dts_call *c, dts_buf resp) { finish(c, 0, "", resp); }
void dts_call_fail(dts_call *c, dts_status st, const char *msg) { finish(c, (int)st, msg, (dts_buf){NULL, 0}); }

static void ev_drop(dts_msg *m) { dts_call_unref(((dts_call_event *)m)->call); }

static void post(dts_call *c, unsigned kind) {
  DTS_ASSERT(c->owner != NULL);
  dts_call_event *e = (dts_call_event *)dts_msg_alloc(kind, sizeof(*e));
  e->hdr.drop = ev_drop;
  dts_call_ref(c);
  e->call = c;
  e->ok = true;
  dts_send(c->owner, &e->hdr);
}

void dts_call_stream_open(dts_call *c) { post(c, DTS_CALL_SENT); }

void dts_call_stream_send(dts_call *c, dts_buf msg) {
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

size_t dts_call_stream_queued(dts_call *c) {
  pthread_mutex_lock(&c->mu);
  size_t q = c->queued;
  pthread_mutex_unlock(&c->mu);
  return q;
}

void dts_call_stream_watch(dts_call *c, size_t below) {
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

void dts_call_stream_end(dts_call *c, dts_status st, const char *msg) {
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

void fake_close(dts_call *c) { post(c, DTS_CALL_CLOSED); }
