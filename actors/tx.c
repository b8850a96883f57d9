/* tx.c -- an actor's commits: one batch per turn, and what waits for it.
 *
 * The commit rule (docs/engine.md).  A handler changes the actor's memory
 * and records the same change in the turn's batch; answers, messages to
 * other actors and timers are attached to the turn's ticket and happen
 * only once the batch is written.  At the end of the turn the batch is
 * deferred (the worker writes it with the batches of its next few turns,
 * dts_store_commit_or_queue), or handed to the storage thread (group commit, one
 * fsync for many actors); either answer comes back to the actor as
 * M_COMMITTED.  Off a worker it is written from the calling thread, or
 * queued behind the thread writing.  Tickets of one actor come back in
 * order.
 *
 * When the store says no.  A ticket that did not commit leaves the actor's
 * memory ahead of the store: its answers become the error, its messages and
 * timers are dropped, and the actor reads itself back (reset_needed).
 * Batches carry the store epoch in which the actor's memory last matched
 * the store, so nothing is written on top of a change that never landed.
 */
#include "actors/engine.h"

#include "runtime/timer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void ticket_drop(dts_msg *m);

void eng_tx_init(eng_tx *tx) { memset(tx, 0, sizeof(*tx)); }

void eng_tx_fini(eng_tx *tx) {
  if (tx->cur != NULL) dts_msg_free(&tx->cur->hdr);
  if (tx->batch != NULL) dts_batch_destroy(tx->batch);
  dts_free(tx->inq);
  memset(tx, 0, sizeof(*tx));
}

eng_ticket *eng_ticket_cur(eng_actor *a, eng_tx *tx) {
  if (tx->cur == NULL) {
    /* with nothing in flight and nothing lost, memory matches the store,
     * whatever epoch the store is in now */
    if (tx->inflight == 0 && !tx->reset_needed) tx->epoch = dts_store_epoch(a->h->cfg.store);
    tx->cur = (eng_ticket *)dts_msg_alloc(M_COMMITTED, sizeof(eng_ticket));
    tx->cur->hdr.drop = ticket_drop;
    tx->cur->id = ++tx->next_id;
    tx->cur->ops = a->h->ops;
    tx->cur->epoch = tx->epoch;
    tx->batch = dts_batch_create();
  }
  return tx->cur;
}

dts_batch *eng_batch(eng_actor *a, eng_tx *tx) {
  eng_ticket_cur(a, tx);
  return tx->batch;
}

static void push_reply(eng_actor *a, eng_tx *tx, eng_reply r) {
  eng_ticket *t = eng_ticket_cur(a, tx);
  a->h->ops->ref(r.call); /* the reply's own reference */
  VEC_PUSH(t->replies, t->nreplies, t->capreplies, r);
}

void eng_reply_ok(eng_actor *a, eng_tx *tx, dts_call *c, dts_buf body) {
  push_reply(a, tx, (eng_reply){c, DTS_ST_OK, NULL, body, false});
}

void eng_reply_msg(eng_actor *a, eng_tx *tx, dts_call *c, const ProtobufCMessage *m) {
  eng_reply_ok(a, tx, c, dts_pb_pack(m));
}

void eng_reply_fail(eng_actor *a, eng_tx *tx, dts_call *c, dts_status st, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  push_reply(a, tx, (eng_reply){c, st, dts_strdup(msg), {NULL, 0}, false});
}

void eng_post(eng_actor *a, eng_tx *tx, char kind, const char *id, dts_buf event, const char *expect_exec) {
  dts_buf val = eng_msg_pack(event, expect_exec, a->id);
  dts_buf_free(&event);
  eng_post_raw(a, tx, kind, id, val);
}

void eng_post_raw(eng_actor *a, eng_tx *tx, char kind, const char *id, dts_buf val) {
  eng_ticket *t = eng_ticket_cur(a, tx);
  uint64_t seq = eng_seq_next(a->h);
  dts_key k;
  dts_key_seq(&k, &a->h->ks, 'M', id, seq);
  dts_batch_put(tx->batch, k.b, k.n, val.p, val.n);
  tx->changes++;
  eng_out o = {kind, dts_strdup(id), seq, val};
  VEC_PUSH(t->outs, t->nouts, t->capouts, o);
}

void eng_arm_durable(eng_actor *a, eng_tx *tx, char kind, const char *id, const void *key, size_t klen,
                     int64_t fire_at) {
  eng_ticket *t = eng_ticket_cur(a, tx);
  eng_arm r = {TM_DURABLE, kind, dts_strdup(id), dts_buf_copy(key, klen), fire_at};
  VEC_PUSH(t->arms, t->narms, t->caparms, r);
}

void eng_tx_note_del(eng_actor *a, eng_tx *tx, uint64_t seq) {
  eng_ticket *t = eng_ticket_cur(a, tx);
  VEC_PUSH(t->dels, t->ndels, t->capdels, seq);
}

void eng_job_reply(eng_actor *a, eng_tx *tx, m_job_done *d) {
  eng_ticket *t = eng_ticket_cur(a, tx);
  VEC_PUSH(t->jobs, t->njobs, t->capjobs, d);
}

m_job_done *eng_job_done_new(dts_hub *h, uint64_t job, const char *id) {
  m_job_done *d = (m_job_done *)dts_msg_alloc(H_JOB_DONE, sizeof(m_job_done));
  d->ops = h->ops;
  d->hdr.drop = eng_msg_drop_job_done;
  d->job = job;
  d->id = dts_strdup(id != NULL ? id : "");
  d->st = DTS_ST_OK;
  return d;
}

void eng_tx_note_tdel(eng_actor *a, eng_tx *tx, const void *k, size_t klen) {
  eng_ticket *t = eng_ticket_cur(a, tx);
  VEC_PUSH(t->tdels, t->ntdels, t->captdels, dts_buf_copy(k, klen));
}

static bool has_tdel(const eng_ticket *t, const void *k, size_t klen) {
  for (size_t i = 0; i < t->ntdels; i++)
    if (t->tdels[i].n == klen && memcmp(t->tdels[i].p, k, klen) == 0) return true;
  return false;
}

bool eng_tx_tdeleting(const eng_tx *tx, const void *k, size_t klen) {
  if (tx->cur != NULL && has_tdel(tx->cur, k, klen)) return true;
  for (size_t i = 0; i < tx->ninq; i++)
    if (has_tdel(tx->inq[i], k, klen)) return true;
  return false;
}

static bool has_del(const eng_ticket *t, uint64_t seq) {
  for (size_t i = 0; i < t->ndels; i++)
    if (t->dels[i] == seq) return true;
  return false;
}

bool eng_tx_deleting(const eng_tx *tx, uint64_t seq) {
  if (tx->cur != NULL && has_del(tx->cur, seq)) return true;
  for (size_t i = 0; i < tx->ninq; i++)
    if (has_del(tx->inq[i], seq)) return true;
  return false;
}

void eng_msgs_unsure(dts_hub *h) {
  if (!atomic_exchange(&h->readback_msgs, true))
    DTS_WARN("hub", "[%s] from now on actors read their stored messages back at every load", h->name);
}

void eng_rd_fail(eng_tx *tx, dts_err code, const char *fmt, ...) {
  if (tx->rd_code != DTS_OK) return;
  tx->rd_code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tx->rd_msg, sizeof(tx->rd_msg), fmt, ap);
  va_end(ap);
  DTS_ERROR("hub", "%s", tx->rd_msg);
}

dts_status eng_status_of(dts_err e) {
  switch (e) {
  case DTS_ELIMIT: return DTS_ST_RESOURCE_EXHAUSTED;
  case DTS_ECORRUPT: return DTS_ST_DATA_LOSS;
  case DTS_ENOTFOUND: return DTS_ST_NOT_FOUND;
  case DTS_ECLOSED: return DTS_ST_UNAVAILABLE;
  default: return DTS_ST_INTERNAL;
  }
}

bool eng_rd_answer(eng_actor *a, eng_tx *tx, dts_call *c) {
  if (tx->rd_code == DTS_OK) return false;
  eng_reply_fail(a, tx, c, eng_status_of(tx->rd_code), "%s", tx->rd_msg);
  return true;
}

/* ---- writing ----------------------------------------------------------------- */

bool eng_write_begin(dts_hub *h) {
  atomic_fetch_add(&h->writers, 1);
  if (!atomic_load(&h->stopping)) return true;
  atomic_fetch_sub(&h->writers, 1);
  return false;
}

void eng_write_end(dts_hub *h) { atomic_fetch_sub(&h->writers, 1); }

dts_err eng_writable(dts_hub *h, char *why, size_t len) {
  if (atomic_load(&h->deleted)) {
    snprintf(why, len, "task hub '%s' was deleted", h->name);
    return DTS_ENOTFOUND;
  }
  if (atomic_load(&h->stopping)) {
    snprintf(why, len, "dtsd is shutting down");
    return DTS_ECLOSED;
  }
  dts_err e = dts_store_writable(h->cfg.store, why, len);
  if (e != DTS_OK && why[0] == '\0') snprintf(why, len, "the store refuses writes");
  return e;
}

eng_ticket *eng_tx_flush(eng_actor *a, eng_tx *tx) {
  eng_ticket *t = tx->cur;
  if (t == NULL) return NULL;
  dts_batch *b = tx->batch;
  tx->cur = NULL;
  tx->batch = NULL;
  tx->changes = 0;
  dts_hub *h = a->h;
  if (!eng_write_begin(h)) {
    /* after shutdown the store may be closed: nothing of this was answered
     * yet, so dropping it is what a crash at this point would do */
    dts_batch_destroy(b);
    t->result = DTS_ECLOSED;
    return t;
  }
  if (dts_batch_empty(b) && tx->inflight == 0) { /* nothing to write, nothing to wait for */
    eng_write_end(h);
    dts_batch_destroy(b);
    t->result = DTS_OK;
    return t;
  }
  /* deferred (written with other turns' batches once this worker has run
   * a few more turns or has nothing else to do), written now (off a worker,
   * no other thread writing and nothing of ours queued), or queued: a
   * deferred or queued ticket's M_COMMITTED comes back to this actor, which
   * reads its mailbox only after this turn, so the ticket is filed after */
  dts_err r;
  if (h->cfg.inline_commit &&
      dts_store_commit_or_queue(h->cfg.store, b, t->epoch, tx->inflight > 0, &a->a, &t->hdr, &t->result, &r)) {
    t->result = r;
    eng_write_end(h);
    dts_batch_destroy(b);
    return t;
  }
  if (!h->cfg.inline_commit) dts_store_submit_at(h->cfg.store, b, t->epoch, &a->a, &t->hdr, &t->result);
  tx->inflight++;
  VEC_PUSH(tx->inq, tx->ninq, tx->capinq, t);
  eng_write_end(h);
  return NULL;
}

static void send_reply(dts_hub *h, eng_reply *r) {
  if (r->waiter) h->ops->set_owner_data(r->call, NULL);
  if (r->st == DTS_ST_OK) {
    h->ops->reply(r->call, r->body);
  } else {
    h->ops->fail(r->call, r->st, r->msg);
    dts_free(r->msg);
  }
  h->ops->unref(r->call);
  r->call = NULL;
}

static void deliver(dts_hub *h, eng_out *o) {
  m_deliver *d = (m_deliver *)dts_msg_alloc(M_DELIVER, sizeof(m_deliver));
  d->hdr.drop = eng_msg_drop_deliver;
  d->seq = o->seq;
  d->val = o->val;
  o->val = (dts_buf){NULL, 0};
  eng_send(h, o->kind, o->id, &d->hdr, NULL);
}

void eng_tx_done(eng_actor *a, eng_tx *tx, eng_ticket *t) {
  dts_hub *h = a->h;
  if (tx->ninq > 0 && tx->inq[0] == t) { /* came back from the storage thread, in order */
    tx->inflight--;
    memmove(tx->inq, tx->inq + 1, (tx->ninq - 1) * sizeof(*tx->inq));
    tx->ninq--;
  }
  if (t->result == DTS_OK) {
    if (t->changed) eng_note_change(h, a->id);
    if (t->has_status && t->st_from != t->st_to) {
      if (t->st_to == ST(PENDING)) atomic_fetch_add_explicit(&h->st_started, 1, memory_order_relaxed);
      if (dts_status_terminal(t->st_to) && t->st_to >= 0 && t->st_to < 8)
        atomic_fetch_add_explicit(&h->st_finished[t->st_to], 1, memory_order_relaxed);
    }
    if (t->entity_ops > 0) atomic_fetch_add_explicit(&h->st_entity_ops, t->entity_ops, memory_order_relaxed);
    /* messages to other actors first: a client that acts on the answer
     * (waits on the instance a restart made) reaches that actor after them */
    for (size_t i = 0; i < t->nouts; i++) deliver(h, &t->outs[i]);
    for (size_t i = 0; i < t->nreplies; i++) send_reply(h, &t->replies[i]);
    for (size_t i = 0; i < t->narms; i++) {
      eng_arm *r = &t->arms[i];
      eng_post_timer(h, eng_mono_for(r->fire_at), r->what, r->kind, r->id, r->key.p, r->key.n, r->fire_at);
    }
    for (size_t i = 0; i < t->njobs; i++) dts_send(&h->base.a, &t->jobs[i]->hdr);
    t->njobs = 0;
    return;
  }
  char why[400] = "";
  dts_status st;
  if (t->result == DTS_ECLOSED) {
    st = DTS_ST_UNAVAILABLE;
    snprintf(why, sizeof(why), "dtsd is shutting down");
  } else {
    st = eng_status_of(t->result);
    if (dts_store_writable(h->cfg.store, why, sizeof(why)) == DTS_OK)
      snprintf(why, sizeof(why), "the change was refused: an earlier one in the same stream of changes failed");
    if (t->epoch == tx->epoch) tx->reset_needed = true;
    DTS_WARN("hub", "[%s] %s: a change was not written (%s): %zu answers fail with status %d", h->name,
             a->id ? a->id : a->dkey, why, t->nreplies, (int)st);
  }
  for (size_t i = 0; i < t->nreplies; i++) {
    eng_reply *r = &t->replies[i];
    dts_free(r->msg);
    dts_buf_free(&r->body);
    r->st = st;
    r->msg = dts_strdup(why);
    send_reply(h, r);
  }
  for (size_t i = 0; i < t->njobs; i++) { /* the part failed: nothing of it happened */
    m_job_done *d = t->jobs[i];
    d->st = st;
    dts_free(d->msg);
    d->msg = dts_strdup(why);
    d->count = d->released = 0;
    for (size_t c = 0; c < d->nchildren; c++) dts_free(d->children[c]);
    d->nchildren = 0;
    dts_send(&h->base.a, &d->hdr);
  }
  t->njobs = 0;
}

void eng_ticket_free(eng_ticket *t) { dts_msg_free(&t->hdr); }

static void ticket_drop(dts_msg *m) {
  eng_ticket *t = (eng_ticket *)m;
  for (size_t i = 0; i < t->nreplies; i++) {
    eng_reply *r = &t->replies[i];
    if (r->call == NULL) continue;
    dts_free(r->msg);
    dts_buf_free(&r->body);
    /* a reply that never went: only possible at teardown; the call's own
     * side ends it */
    t->ops->unref(r->call);
    r->call = NULL;
  }
  dts_free(t->replies);
  for (size_t i = 0; i < t->nouts; i++) {
    dts_free(t->outs[i].id);
    dts_buf_free(&t->outs[i].val);
  }
  dts_free(t->outs);
  for (size_t i = 0; i < t->narms; i++) {
    dts_free(t->arms[i].id);
    dts_buf_free(&t->arms[i].key);
  }
  dts_free(t->arms);
  dts_free(t->dels);
  for (size_t i = 0; i < t->njobs; i++) dts_msg_free(&t->jobs[i]->hdr);
  dts_free(t->jobs);
  for (size_t i = 0; i < t->ntdels; i++) dts_buf_free(&t->tdels[i]);
  dts_free(t->tdels);
}

/* ---- timers ------------------------------------------------------------------ */

uint64_t eng_mono_for(int64_t wall) {
  int64_t now_wall = (int64_t)dts_wall_ns();
  uint64_t now = dts_now_ns();
  if (wall <= now_wall) return now;
  uint64_t d = (uint64_t)wall - (uint64_t)now_wall; /* no overflow: both int64, wall > now */
  return now + (d < ARM_MAX_NS ? d : ARM_MAX_NS);
}

void eng_post_timer(dts_hub *h, uint64_t at, int what, char kind, const char *id, const void *key, size_t klen,
                    int64_t fire_at) {
  if (atomic_load(&h->stopping)) return; /* durable ones stay in the store for the next start */
  m_timer *m = (m_timer *)dts_msg_alloc(H_TIMER, sizeof(m_timer));
  m->hdr.drop = eng_msg_drop_timer;
  m->what = what;
  m->kind = kind;
  m->id = dts_strdup(id);
  m->key = dts_buf_copy(key, klen);
  m->fire_at = fire_at;
  dts_timer_post(h->cfg.timers, at, &h->base.a, &m->hdr);
}

uint64_t eng_seq_next(dts_hub *h) { return atomic_fetch_add_explicit(&h->seq, 1, memory_order_relaxed); }
