/* localcall.c -- see localcall.h.
 *
 * The owner (set by the engine for streams and waits) and the caller's
 * release race, as a client hanging up races the engine on a gRPC call:
 * one atomic word settles it, and DTS_CALL_CLOSED is posted at most once.
 * A stream's DTS_CALL_SENT is posted once, after its end (nothing is ever
 * queued: messages are kept as they come).
 */
#include "server/localcall.h"

#include "runtime/alloc.h"
#include "server/callvt.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

struct dts_call {
  const dts_call_ops *vt; /* first (callvt.h) */
  atomic_int refs;
  _Atomic(uintptr_t) owner; /* the owner actor | 1 once the caller released it */
  void *owner_data;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done; /* answered, or the stream ended */
  size_t capitems;
  dts_local ans;
};

static atomic_long live;

static const dts_call_ops local_ops;

dts_call *dts_local_new(void) {
  dts_call *c = dts_calloc(1, sizeof(*c));
  c->vt = &local_ops;
  atomic_init(&c->refs, 1);
  atomic_init(&c->owner, 0);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  atomic_fetch_add(&live, 1);
  return c;
}

long dts_local_live(void) { return atomic_load(&live); }

static void lc_ref(dts_call *c) { atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed); }

dts_call *dts_local_give(dts_call *c) {
  lc_ref(c);
  return c;
}

static void lc_unref(dts_call *c) {
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
  dts_actor *owner = (dts_actor *)(atomic_load(&c->owner) & ~(uintptr_t)1);
  if (owner != NULL) dts_actor_unref(owner); /* the call's reference (set_owner) */
  dts_buf_free(&c->ans.body);
  for (size_t i = 0; i < c->ans.nitems; i++)
    dts_buf_free(&c->ans.items[i]);
  dts_free(c->ans.items);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
  dts_free(c);
  atomic_fetch_sub(&live, 1);
}

static void ev_drop(dts_msg *m) { lc_unref(((dts_call_event *)m)->call); }

static void post_to(dts_call *c, dts_actor *owner, unsigned kind) {
  if (owner == NULL) return;
  dts_call_event *e = (dts_call_event *)dts_msg_alloc(kind, sizeof(*e));
  e->hdr.drop = ev_drop;
  lc_ref(c);
  e->call = c;
  e->ok = true;
  dts_send(owner, &e->hdr);
}

static dts_actor *owner_of(dts_call *c) { return (dts_actor *)(atomic_load(&c->owner) & ~(uintptr_t)1); }

static void lc_set_owner(dts_call *c, dts_actor *owner) {
  dts_actor_ref(owner); /* the call keeps its owner's memory, as the bridge's */
  uintptr_t v = atomic_load(&c->owner);
  while (!atomic_compare_exchange_weak(&c->owner, &v, (uintptr_t)owner | (v & 1))) {
  }
  if ((v & ~(uintptr_t)1) != 0) dts_actor_unref((dts_actor *)(v & ~(uintptr_t)1));
  if ((v & 1) && (v & ~(uintptr_t)1) == 0) post_to(c, owner, DTS_CALL_CLOSED);
}

static bool lc_ended(dts_call *c) { return (atomic_load(&c->owner) & 1) != 0; }
static void lc_set_owner_data(dts_call *c, void *p) { c->owner_data = p; }
static void *lc_owner_data(dts_call *c) { return c->owner_data; }

static void finish(dts_call *c, int st, const char *msg, dts_buf *body) {
  pthread_mutex_lock(&c->mu);
  if (!c->done) {
    c->done = true;
    c->ans.status = st;
    snprintf(c->ans.msg, sizeof(c->ans.msg), "%s", msg ? msg : "");
    if (body != NULL) {
      c->ans.body = *body;
      body->p = NULL;
    }
    pthread_cond_broadcast(&c->cv);
  }
  pthread_mutex_unlock(&c->mu);
  if (body != NULL) dts_buf_free(body); /* a second answer (never expected) */
}

static void lc_reply(dts_call *c, dts_buf resp) { finish(c, DTS_ST_OK, NULL, &resp); }
static void lc_fail(dts_call *c, dts_status st, const char *msg) { finish(c, (int)st, msg, NULL); }
static void lc_stream_open(dts_call *c) { (void)c; }

static void lc_stream_send(dts_call *c, dts_buf msg) {
  pthread_mutex_lock(&c->mu);
  if (!c->done) {
    if (c->ans.nitems == c->capitems) {
      c->capitems = c->capitems ? c->capitems * 2 : 16;
      c->ans.items = dts_realloc(c->ans.items, c->capitems * sizeof(*c->ans.items));
    }
    c->ans.items[c->ans.nitems++] = msg;
    msg.p = NULL;
  }
  pthread_mutex_unlock(&c->mu);
  dts_buf_free(&msg);
}

static void lc_stream_end(dts_call *c, dts_status st, const char *msg) {
  finish(c, (int)st, msg, NULL);
  post_to(c, owner_of(c), DTS_CALL_SENT);
}

static size_t lc_stream_queued(dts_call *c) {
  (void)c;
  return 0;
}

static void lc_stream_watch(dts_call *c, size_t below) {
  (void)below;
  post_to(c, owner_of(c), DTS_CALL_DRAINED);
}

static const char *lc_principal(dts_call *c) {
  (void)c;
  return NULL; /* in-process: the HTTP edge decided */
}

static bool lc_lease_bound(dts_call *c) {
  (void)c;
  return false;
}

static void lc_describe(dts_call *c, char *w, size_t wn, char *a, size_t an) {
  (void)c;
  if (wn) w[0] = '\0';
  if (an) a[0] = '\0';
}

bool dts_local_wait(dts_call *c, long timeout_ms) {
  struct timespec end;
  clock_gettime(CLOCK_REALTIME, &end);
  end.tv_sec += timeout_ms / 1000;
  end.tv_nsec += (timeout_ms % 1000) * 1000000L;
  if (end.tv_nsec >= 1000000000L) {
    end.tv_sec++;
    end.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&c->mu);
  while (!c->done)
    if (pthread_cond_timedwait(&c->cv, &c->mu, &end) == ETIMEDOUT) break;
  bool done = c->done;
  pthread_mutex_unlock(&c->mu);
  return done;
}

const dts_local *dts_local_answer(dts_call *c) { return &c->ans; }

void dts_local_release(dts_call *c) {
  uintptr_t v = atomic_fetch_or(&c->owner, 1);
  if ((v & ~(uintptr_t)1) != 0 && !(v & 1)) post_to(c, (dts_actor *)(v & ~(uintptr_t)1), DTS_CALL_CLOSED);
  lc_unref(c);
}

static const dts_call_ops local_ops = {
    .ref = lc_ref,
    .unref = lc_unref,
    .set_owner = lc_set_owner,
    .ended = lc_ended,
    .set_owner_data = lc_set_owner_data,
    .owner_data = lc_owner_data,
    .reply = lc_reply,
    .fail = lc_fail,
    .stream_open = lc_stream_open,
    .stream_send = lc_stream_send,
    .stream_end = lc_stream_end,
    .stream_queued = lc_stream_queued,
    .stream_watch = lc_stream_watch,
    .describe = lc_describe,
    .principal = lc_principal,
    .lease_bound = lc_lease_bound,
};
