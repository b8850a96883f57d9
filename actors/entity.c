/* entity.c -- the durable entity actor (PROTOCOL.md 5): its state, its
 * FIFO operation queue, its lock, and batches of operations for workers.
 *
 * One actor per entity id ("@name@key"), created by the hub on the first
 * message and read back from the store then (its record, queue, and the
 * messages other actors stored for it).  Client signals go straight into
 * its queue; signals, calls and lock steps from orchestrations and other
 * entities arrive as stored messages it accepts.  While locked it serves
 * only the lock holder; a lock is granted only to a holder whose record
 * says it still runs.  Idle entities leave memory like instances do.
 */
#include "actors/engine.h"

#include "runtime/timer.h"

#include <stdio.h>
#include <string.h>

enum { QM_SIGNAL = 1, QM_CALL, QM_LOCK, QM_UNLOCK };

/* One message in the queue: the encoded HistoryEvent plus what the
 * scheduler needs without decoding it again. */
typedef struct qmsg {
  dts_buf b;
  uint64_t seq;
  int kind;
  char *parent, *parent_exec, *request_id; /* calls and locks: the orchestration */
} qmsg;

typedef struct ent {
  eng_actor base;
  eng_tx tx;
  bool loaded;
  bool has_record;     /* its E key is stored */
  dts_ent_rec r;       /* state (NULL: none), modified, lock */
  qmsg *q;
  size_t qn, qcap;
  uint64_t mark;       /* message sequence at the read-back */
  /* the batch out with a worker */
  uint64_t serial;     /* its offer; 0: none */
  char token[TOKEN_LEN + 1];
  uint64_t *bseq;      /* its operations, by queue sequence */
  size_t nb;
  uint64_t next_serial;
  uint64_t not_before; /* monotonic: a failed or abandoned batch waits */
  bool wake_armed;
  bool dirty;
  bool left, stopped, freezing;
  bool mpending;       /* stored messages wait for the store to take writes */
} ent;

#define A(e) (&(e)->base)
#define TX(e) (&(e)->tx)

static void qmsg_free(qmsg *m) {
  dts_buf_free(&m->b);
  dts_free(m->parent);
  dts_free(m->parent_exec);
  dts_free(m->request_id);
}

static char *dup_or_null(const char *s) { return s != NULL ? dts_strdup(s) : NULL; }

static void set_str(char **dst, const char *s) {
  dts_free(*dst);
  *dst = dup_or_null(s);
}

static dts_batch *batch(ent *e) { return eng_batch(A(e), TX(e)); }

static void touch(ent *e) {
  eng_ticket_cur(A(e), TX(e));
  e->dirty = true;
  e->tx.changes++;
}

static void set_loaded(ent *e, bool on) {
  if (e->loaded == on) return;
  e->loaded = on;
  atomic_fetch_add_explicit(&e->base.h->st_entities, on ? 1 : -1, memory_order_relaxed);
}

static void unload(ent *e) {
  for (size_t i = 0; i < e->qn; i++) qmsg_free(&e->q[i]);
  dts_free(e->q);
  e->q = NULL;
  e->qn = e->qcap = 0;
  dts_ent_rec_fini(&e->r);
  e->r.id = dts_strdup(e->base.id);
  e->has_record = false;
  e->dirty = false;
  set_loaded(e, false);
}

static bool locked(const ent *e) { return e->r.locked_by != NULL; }

/* An entity with no state, nothing queued and no lock has no record. */
static void put_record(ent *e) {
  dts_key k;
  dts_key_id(&k, &e->base.h->ks, 'E', e->base.id);
  eng_ticket_cur(&e->base, &e->tx)->changed = true;
  if (e->r.state == NULL && e->qn == 0 && !locked(e)) {
    if (e->has_record) dts_batch_del(batch(e), k.b, k.n);
    e->has_record = false;
    return;
  }
  dts_buf b = dts_ent_rec_pack(&e->r);
  dts_batch_put(batch(e), k.b, k.n, b.p, b.n);
  dts_buf_free(&b);
  e->has_record = true;
}

/* ---- the queue ---------------------------------------------------------------- */

static qmsg *q_append(ent *e) {
  if (e->qn == e->qcap) {
    e->qcap = e->qcap ? e->qcap * 2 : 8;
    e->q = dts_realloc(e->q, e->qcap * sizeof(*e->q));
  }
  qmsg *m = &e->q[e->qn++];
  memset(m, 0, sizeof(*m));
  return m;
}

/* The queue entry for an encoded entity event: its kind and ids, or false
 * when it is not an entity message. */
static bool q_fill(qmsg *m, const uint8_t *p, size_t n) {
  HistoryEvent *he = history_event__unpack(NULL, n, p);
  const char *parent = NULL, *pexec = NULL, *rid = NULL;
  int kind = 0;
  switch (he != NULL ? he->event_type_case : HISTORY_EVENT__EVENT_TYPE__NOT_SET) {
  case EV(ENTITY_OPERATION_SIGNALED):
    kind = QM_SIGNAL;
    rid = he->entity_operation_signaled->request_id;
    break;
  case EV(ENTITY_OPERATION_CALLED):
    kind = QM_CALL;
    parent = dts_sv_get(he->entity_operation_called->parent_instance_id);
    pexec = dts_sv_get(he->entity_operation_called->parent_execution_id);
    rid = he->entity_operation_called->request_id;
    break;
  case EV(ENTITY_LOCK_REQUESTED):
    kind = QM_LOCK;
    parent = dts_sv_get(he->entity_lock_requested->parent_instance_id);
    break;
  case EV(ENTITY_UNLOCK_SENT):
    kind = QM_UNLOCK;
    parent = dts_sv_get(he->entity_unlock_sent->parent_instance_id);
    break;
  default: break;
  }
  if (kind != 0) {
    m->kind = kind;
    /* ids that name instances or keys are checked: they came from the disk or another actor */
    m->parent = parent && dts_instance_id_problem(parent) == NULL ? dts_strdup(parent) : NULL;
    m->parent_exec = dup_or_null(pexec);
    m->request_id = dup_or_null(rid);
  }
  if (he) history_event__free_unpacked(he, NULL);
  return kind != 0;
}

/* The queue grew: the record must be stored (it is what makes the queue
 * read back), but its bytes do not change, so one already stored stays. */
static void touch_queue(ent *e) {
  eng_ticket_cur(A(e), TX(e))->changed = true;
  if (!e->has_record) e->dirty = true;
  e->tx.changes++;
}

/* Stores a filled queue entry (b consumed) under Q key `seq`. */
static void q_store(ent *e, qmsg *m, dts_buf b, uint64_t seq) {
  m->b = b;
  m->seq = seq;
  dts_key k;
  dts_key_seq(&k, &e->base.h->ks, 'Q', e->base.id, seq);
  dts_batch_put(batch(e), k.b, k.n, b.p, b.n);
  touch_queue(e);
}

/* Appends an event (b, consumed) under Q key `seq`. */
static void enqueue(ent *e, dts_buf b, uint64_t seq) {
  qmsg *m = q_append(e);
  if (!q_fill(m, b.p, b.n)) {
    e->qn--;
    dts_buf_free(&b);
    return;
  }
  q_store(e, m, b, seq);
}

/* Appends a signal this actor encoded itself (b, consumed): its kind and
 * request id are known, so it is not decoded again. */
static void enqueue_signal(ent *e, dts_buf b, uint64_t seq, const char *request_id) {
  qmsg *m = q_append(e);
  m->kind = QM_SIGNAL;
  m->request_id = dup_or_null(request_id);
  q_store(e, m, b, seq);
}

static void q_remove(ent *e, size_t i) {
  dts_key k;
  dts_key_seq(&k, &e->base.h->ks, 'Q', e->base.id, e->q[i].seq);
  dts_batch_del(batch(e), k.b, k.n);
  qmsg_free(&e->q[i]);
  memmove(&e->q[i], &e->q[i + 1], (e->qn - i - 1) * sizeof(*e->q));
  e->qn--;
  touch(e);
}

/* ---- reading back --------------------------------------------------------------- */

typedef struct qctx {
  ent *e;
  size_t plen;
  long bad;
} qctx;

static bool load_q(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  qctx *qc = c;
  ent *e = qc->e;
  if (klen != qc->plen + 8) {
    qc->bad++;
    return true;
  }
  qmsg *m = q_append(e);
  if (!q_fill(m, (const uint8_t *)v, vlen)) {
    e->qn--;
    qc->bad++;
    return true;
  }
  m->b = dts_buf_copy(v, vlen);
  m->seq = dts_key_be64(k + klen - 8);
  return true;
}

static void accept(ent *e, uint64_t seq, const uint8_t *val, size_t n);

/* Takes the messages other actors stored for it (at the read-back, and
 * when the store takes writes again after it refused them). */
static dts_err take_messages(ent *e) {
  char why[400];
  if (eng_writable(e->base.h, why, sizeof(why)) != DTS_OK) {
    e->mpending = true;
    return DTS_OK;
  }
  e->mpending = false;
  eng_stored mc;
  char msg[300];
  dts_err err = eng_stored_read(A(e), &mc, msg, sizeof(msg));
  for (size_t i = 0; i < mc.n && err == DTS_OK; i++) {
    if (eng_tx_deleting(TX(e), mc.seqs[i])) continue;
    bool known = false;
    for (size_t j = 0; j < e->qn && !known; j++) known = e->q[j].seq == mc.seqs[i];
    if (!known) accept(e, mc.seqs[i], mc.vals[i].p, mc.vals[i].n);
  }
  eng_stored_free(&mc);
  return err;
}

static bool load(ent *e) {
  if (e->loaded) return true;
  dts_hub *h = e->base.h;
  dts_key k;
  dts_key_id(&k, &h->ks, 'E', e->base.id);
  char *v, msg[300];
  size_t vlen;
  dts_err err = dts_store_read(h->cfg.store, k.b, k.n, &v, &vlen, msg, sizeof(msg));
  if (err != DTS_OK && err != DTS_ENOTFOUND) {
    eng_msgs_unsure(h);
    eng_rd_fail(TX(e), err, "cannot read entity '%s' from the store: %s", e->base.id, msg);
    return false;
  }
  dts_ent_rec_fini(&e->r);
  if (err == DTS_OK) {
    bool ok = dts_ent_rec_unpack(v, vlen, &e->r) && strcmp(e->r.id, e->base.id) == 0;
    dts_free(v);
    if (!ok) {
      dts_ent_rec_fini(&e->r);
      e->r.id = dts_strdup(e->base.id);
      eng_msgs_unsure(h);
      eng_rd_fail(TX(e), DTS_ECORRUPT, "the stored record of entity '%s' is damaged", e->base.id);
      return false;
    }
    e->has_record = true;
  } else {
    e->r.id = dts_strdup(e->base.id);
  }
  /* a queue is stored only with a record (put_record) */
  bool readback = atomic_load(&h->readback_msgs);
  dts_key_id(&k, &h->ks, 'Q', e->base.id);
  dts_key_sep(&k);
  qctx qc = {e, k.n, 0};
  err = DTS_OK;
  if (e->has_record || readback) err = dts_store_walk(h->cfg.store, k.b, k.n, k.b, k.n, load_q, &qc, msg, sizeof(msg));
  if (qc.bad > 0) {
    DTS_ERROR("hub", "[%s] %s: %ld queued messages cannot be read; skipped", h->name, e->base.id, qc.bad);
    atomic_fetch_add(&h->st_unreadable, qc.bad);
  }
  if (err != DTS_OK) {
    eng_msgs_unsure(h);
    eng_rd_fail(TX(e), err, "cannot read the queue of entity '%s' from the store: %s", e->base.id, msg);
    unload(e);
    return false;
  }
  e->mark = 0; /* nothing read back: every delivery is new */
  set_loaded(e, true);
  if (!readback) return true;
  err = take_messages(e);
  e->mark = atomic_load(&h->seq); /* deliveries below it may be among what was just read */
  if (err != DTS_OK) {
    eng_msgs_unsure(h);
    eng_rd_fail(TX(e), err, "cannot read the messages of entity '%s' from the store", e->base.id);
    return false;
  }
  return true;
}

/* ---- messages from other actors ------------------------------------------------- */

static void accept(ent *e, uint64_t seq, const uint8_t *val, size_t n) {
  dts_key k;
  dts_key_seq(&k, &e->base.h->ks, 'M', e->base.id, seq);
  dts_batch_del(batch(e), k.b, k.n);
  eng_tx_note_del(A(e), TX(e), seq);
  e->tx.changes++;
  Dtsd__Store__Message *m = dtsd__store__message__unpack(NULL, n, val);
  if (m == NULL) {
    DTS_ERROR("hub", "[%s] %s: a stored message does not decode; dropped", e->base.h->name, e->base.id);
    atomic_fetch_add(&e->base.h->st_unreadable, 1);
    return;
  }
  enqueue(e, dts_buf_copy(m->event.data, m->event.len), seq);
  dtsd__store__message__free_unpacked(m, NULL);
}

static void on_deliver(ent *e, m_deliver *d) {
  if (!load(e)) return; /* it stays in the store: the next read-back takes it */
  char why[400];
  if (eng_writable(e->base.h, why, sizeof(why)) != DTS_OK) {
    e->mpending = true;
    return;
  }
  if (d->seq < e->mark) {
    for (size_t i = 0; i < e->qn; i++)
      if (e->q[i].seq == d->seq) return;
    if (eng_tx_deleting(TX(e), d->seq)) return;
    dts_key k;
    dts_key_seq(&k, &e->base.h->ks, 'M', e->base.id, d->seq);
    char *v, msg[300];
    size_t vlen;
    if (dts_store_read(e->base.h->cfg.store, k.b, k.n, &v, &vlen, msg, sizeof(msg)) != DTS_OK) return;
    dts_free(v);
  }
  accept(e, d->seq, d->val.p, d->val.n);
}

/* ---- locks ----------------------------------------------------------------------- */

/* Whether the orchestration `id` still runs, by its committed record:
 * 1 yes, 0 no (finished or absent), -1 the record cannot be read. */
static int holder_runs(ent *e, const char *id) {
  dts_key k;
  dts_key_id(&k, &e->base.h->ks, 'I', id);
  char *v, msg[300];
  size_t vlen;
  dts_err err = dts_store_read(e->base.h->cfg.store, k.b, k.n, &v, &vlen, msg, sizeof(msg));
  if (err == DTS_ENOTFOUND) return 0;
  if (err != DTS_OK) return -1;
  Dtsd__Store__InstanceRecord *r = dtsd__store__instance_record__unpack(NULL, vlen, (const uint8_t *)v);
  dts_free(v);
  if (r == NULL) return -1;
  int runs = !dts_status_terminal(r->status);
  dtsd__store__instance_record__free_unpacked(r, NULL);
  return runs;
}

static void unlock(ent *e) {
  set_str(&e->r.locked_by, NULL);
  set_str(&e->r.lock_cs, NULL);
  touch(e);
}

static void arm_wake(ent *e, uint64_t at) {
  if (e->wake_armed || e->stopped) return;
  e->wake_armed = true;
  eng_post_timer(e->base.h, at, TM_WAKE, 'e', e->base.id, NULL, 0, 0);
}

/* The lock request at the front: granted (and passed on along the lock
 * set, or to the orchestration when this was the last entity of it).
 * False when it must wait (the holder's record cannot be read now). */
static bool grant(ent *e) {
  qmsg *m = &e->q[0];
  HistoryEvent *he = history_event__unpack(NULL, m->b.n, m->b.p);
  if (he == NULL || he->event_type_case != EV(ENTITY_LOCK_REQUESTED)) {
    if (he) history_event__free_unpacked(he, NULL);
    q_remove(e, 0);
    return true;
  }
  EntityLockRequestedEvent *lr = he->entity_lock_requested;
  const char *parent = m->parent;
  int runs = parent != NULL ? holder_runs(e, parent) : 0;
  if (runs < 0) { /* whether the holder still runs cannot be read: try again later */
    history_event__free_unpacked(he, NULL);
    e->not_before = dts_now_ns() + RETRY_NS;
    arm_wake(e, e->not_before);
    return false;
  }
  int64_t now = (int64_t)dts_wall_ns();
  if (runs > 0) { /* a holder that already finished would never unlock */
    set_str(&e->r.locked_by, parent);
    set_str(&e->r.lock_cs, lr->critical_section_id);
    touch(e);
  }
  if ((size_t)lr->position + 1 < lr->n_lock_set) { /* on to the next entity of the set */
    lr->position++;
    HistoryEvent fw = HISTORY_EVENT__INIT;
    fw.event_type_case = EV(ENTITY_LOCK_REQUESTED);
    fw.entity_lock_requested = lr;
    if (dts_entity_id_problem(lr->lock_set[lr->position]) == NULL) /* checked when sent; this one came from the disk */
      eng_post(A(e), TX(e), 'e', lr->lock_set[lr->position], eng_ev_pack(&fw, -1, now), NULL);
    else
      DTS_ERROR("hub", "[%s] %s: a queued lock request names an invalid entity; the lock chain stops",
                e->base.h->name, e->base.id);
  } else if (parent != NULL && runs > 0) { /* the last lock: tell the orchestration */
    HistoryEvent g = HISTORY_EVENT__INIT;
    EntityLockGrantedEvent lg = ENTITY_LOCK_GRANTED_EVENT__INIT;
    lg.critical_section_id = lr->critical_section_id;
    g.event_type_case = EV(ENTITY_LOCK_GRANTED);
    g.entity_lock_granted = &lg;
    eng_post(A(e), TX(e), 'o', parent, eng_ev_pack(&g, -1, now), NULL);
  }
  history_event__free_unpacked(he, NULL);
  q_remove(e, 0);
  return true;
}

/* Lock requests and releases at the front of the queue are the server's
 * part of the entity scheduler.  Runs when nothing of the entity is out. */
static void step(ent *e) {
  if (e->serial != 0 || !e->loaded) return;
  char why[400];
  if (eng_writable(e->base.h, why, sizeof(why)) != DTS_OK) return; /* lock steps are writes: they wait */
  for (;;) {
    if (locked(e)) { /* only the holder's messages count, in order */
      size_t i = 0;
      while (i < e->qn && !(e->q[i].parent && strcmp(e->q[i].parent, e->r.locked_by) == 0)) i++;
      if (i == e->qn) return;
      if (e->q[i].kind == QM_UNLOCK) {
        DTS_DEBUG("hub", "[%s] %s unlocked by %s", e->base.h->name, e->base.id, e->r.locked_by);
        unlock(e);
        q_remove(e, i);
        continue;
      }
      if (e->q[i].kind == QM_LOCK) { /* a second lock request from the holder: grant again */
        q_remove(e, i);
        continue;
      }
      return;
    }
    if (e->qn == 0) return;
    if (e->q[0].kind == QM_UNLOCK) { /* not locked: a duplicate release */
      q_remove(e, 0);
      continue;
    }
    if (e->q[0].kind == QM_LOCK) {
      if (!grant(e)) return;
      continue;
    }
    return;
  }
}

/* ---- work items ------------------------------------------------------------------ */

static void end_lease(ent *e) {
  if (e->serial != 0) eng_offer_done(e->base.h, 'e', e->base.id, e->serial);
  e->serial = 0;
  e->token[0] = '\0';
  e->nb = 0;
}

/* The next batch (up to max_entity_batch deliverable operations) as an
 * entityRequestV2 work item. */
static void offer(ent *e) {
  if (e->serial != 0 || !e->loaded || e->qn == 0 || e->stopped) return;
  uint64_t now = dts_now_ns();
  if (now < e->not_before) {
    arm_wake(e, e->not_before);
    return;
  }
  size_t max = (size_t)e->base.h->cfg.max_entity_batch;
  e->bseq = dts_realloc(e->bseq, (max ? max : 1) * sizeof(uint64_t));
  size_t *idx = dts_malloc((max ? max : 1) * sizeof(size_t));
  e->nb = 0;
  for (size_t i = 0; i < e->qn && e->nb < max; i++) {
    qmsg *m = &e->q[i];
    if (locked(e)) {
      if (!(m->parent && strcmp(m->parent, e->r.locked_by) == 0)) continue;
      if (m->kind != QM_SIGNAL && m->kind != QM_CALL) break;
    } else if (m->kind != QM_SIGNAL && m->kind != QM_CALL) {
      break;
    }
    idx[e->nb] = i;
    e->bseq[e->nb++] = m->seq;
  }
  if (e->nb == 0) {
    dts_free(idx);
    return;
  }
  dts_pbw r;
  dts_pbw_init(&r);
  dts_pbw_string_field(&r, 1, e->base.id);
  dts_pbw_sv_field(&r, 3, e->r.state);
  for (size_t i = 0; i < e->nb; i++) dts_pbw_bytes_field(&r, 4, e->q[idx[i]].b.p, e->q[idx[i]].b.n);
  dts_free(idx);
  dts_buf req = dts_pbw_take(&r);
  dts_pbw w;
  dts_pbw_init(&w);
  dts_pbw_bytes_field(&w, 5, req.p, req.n);
  dts_buf_free(&req);
  e->serial = ++e->next_serial;
  eng_new_token('e', e->token);
  DTS_DEBUG("hub", "[%s] offer entity %s (%zu operations)", e->base.h->name, e->base.id, e->nb);
  eng_offer(&e->base, 'e', e->serial, e->token, NULL, NULL, dts_pbw_take(&w));
}

/* The batch's operations as queue indexes, in order; false if one of them
 * is no longer queued. */
static bool batch_indexes(ent *e, size_t *idx) {
  size_t j = 0;
  for (size_t i = 0; i < e->nb; i++) {
    while (j < e->qn && e->q[j].seq != e->bseq[i]) j++;
    if (j == e->qn) return false;
    idx[i] = j++;
  }
  return true;
}

/* ---- requests -------------------------------------------------------------------- */

static void complete_ok(ent *e, dts_call *c) { eng_reply_ok(A(e), TX(e), c, eng_empty_answer(DTS_M_COMPLETE_ENTITY)); }

/* A signal, now or (a durable timer of ours) at its scheduled time. */
static void route_signal(ent *e, const char *target, const char *op, const char *input, const char *request_id,
                         int64_t scheduled, bool local) {
  char gen[37];
  if (request_id == NULL || request_id[0] == '\0') {
    dts_uuid(gen);
    request_id = gen;
  }
  int64_t now = (int64_t)dts_wall_ns();
  HistoryEvent he = HISTORY_EVENT__INIT;
  EntityOperationSignaledEvent s = ENTITY_OPERATION_SIGNALED_EVENT__INIT;
  Google__Protobuf__StringValue in;
  Google__Protobuf__Timestamp ts;
  s.request_id = (char *)request_id;
  s.operation = (char *)op;
  s.input = dts_sv(&in, input);
  if (scheduled > 0) s.scheduled_time = dts_ts_from_ns(&ts, scheduled);
  he.event_type_case = EV(ENTITY_OPERATION_SIGNALED);
  he.entity_operation_signaled = &s;
  dts_buf b = eng_ev_pack(&he, -1, now);
  if (scheduled > now) { /* held until its time: a durable timer of the target's */
    dts_key k;
    dts_key_work(&k, &e->base.h->ks, 'T', target, request_id, 0);
    dts_batch_put(batch(e), k.b, k.n, b.p, b.n);
    dts_buf_free(&b);
    e->tx.changes++;
    eng_arm_durable(A(e), TX(e), 'e', target, k.b, k.n, scheduled);
    return;
  }
  if (local) enqueue_signal(e, b, eng_seq_next(e->base.h), request_id);
  else eng_post(A(e), TX(e), 'e', target, b, NULL);
}

static void on_signal(ent *e, dts_call *c, SignalEntityRequest *r) {
  const char *why;
  size_t max = e->base.h->cfg.max_payload;
  if (r->name[0] == '\0') {
    eng_reply_fail(A(e), TX(e), c, DTS_ST_INVALID_ARGUMENT, "the operation name must not be empty");
    return;
  }
  const char *input = dts_sv_get(r->input);
  if (input != NULL && strlen(input) > max) {
    eng_reply_fail(A(e), TX(e), c, DTS_ST_INVALID_ARGUMENT,
                   "operation input is %zu bytes, over the payload limit of %zu bytes (--max-payload / "
                   "DTSD_MAX_PAYLOAD)",
                   strlen(input), max);
    return;
  }
  if (r->request_id[0] != '\0' && (why = dts_short_id_problem(r->request_id)) != NULL) {
    eng_reply_fail(A(e), TX(e), c, DTS_ST_INVALID_ARGUMENT, "request id %s", why);
    return;
  }
  route_signal(e, e->base.id, r->name, input, r->request_id, dts_ts_to_ns(r->scheduled_time), true);
  SignalEntityResponse resp = SIGNAL_ENTITY_RESPONSE__INIT;
  eng_reply_msg(A(e), TX(e), c, &resp.base);
}

static void on_get(ent *e, dts_call *c, GetEntityRequest *r) {
  GetEntityResponse resp = GET_ENTITY_RESPONSE__INIT;
  EntityMetadata m = ENTITY_METADATA__INIT;
  Google__Protobuf__Timestamp ts;
  Google__Protobuf__StringValue lb, st;
  if (e->r.state != NULL) {
    resp.exists = true;
    m.instance_id = e->base.id;
    m.last_modified_time = dts_ts_from_ns(&ts, e->r.modified);
    m.backlog_queue_size = (int32_t)e->qn;
    m.locked_by = dts_sv(&lb, e->r.locked_by);
    if (r->include_state) m.serialized_state = dts_sv(&st, e->r.state);
    resp.entity = &m;
  }
  eng_reply_msg(A(e), TX(e), c, &resp.base);
}

/* The results of calls in a completed batch go to their orchestrations. */
static void post_results(ent *e, const EntityBatchResult *r, const size_t *idx, size_t n, int64_t now) {
  for (size_t i = 0; i < n; i++) {
    qmsg *m = &e->q[idx[i]];
    if (m->kind != QM_CALL || m->parent == NULL) continue;
    OperationResult *res = r->results[i];
    HistoryEvent he = HISTORY_EVENT__INIT;
    EntityOperationCompletedEvent oc = ENTITY_OPERATION_COMPLETED_EVENT__INIT;
    EntityOperationFailedEvent of = ENTITY_OPERATION_FAILED_EVENT__INIT;
    if (res->result_type_case == OPERATION_RESULT__RESULT_TYPE_FAILURE) {
      of.request_id = m->request_id ? m->request_id : "";
      of.failure_details = res->failure ? res->failure->failure_details : NULL;
      he.event_type_case = EV(ENTITY_OPERATION_FAILED);
      he.entity_operation_failed = &of;
    } else {
      oc.request_id = m->request_id ? m->request_id : "";
      oc.output = res->success ? res->success->result : NULL;
      he.event_type_case = EV(ENTITY_OPERATION_COMPLETED);
      he.entity_operation_completed = &oc;
    }
    eng_post(A(e), TX(e), 'o', m->parent, eng_ev_pack(&he, -1, now), m->parent_exec);
  }
}

/* The processed operations leave the queue, in one compaction pass. */
static void drop_processed(ent *e, const size_t *idx, size_t n) {
  dts_key k;
  size_t out = 0, bi = 0;
  for (size_t i = 0; i < e->qn; i++) {
    if (bi < n && idx[bi] == i) {
      dts_key_seq(&k, &e->base.h->ks, 'Q', e->base.id, e->q[i].seq);
      dts_batch_del(batch(e), k.b, k.n);
      qmsg_free(&e->q[i]);
      bi++;
      continue;
    }
    e->q[out++] = e->q[i];
  }
  e->qn = out;
}

/* One action of a completed batch: a signal to an entity, a new orchestration. */
static void run_action(ent *e, const OperationAction *a, int64_t now) {
  dts_hub *h = e->base.h;
  if (a->operation_action_type_case == OPERATION_ACTION__OPERATION_ACTION_TYPE_SEND_SIGNAL) {
    const SendSignalAction *s = a->send_signal;
    if (dts_entity_id_problem(s->instance_id) == NULL)
      route_signal(e, s->instance_id, s->name, dts_sv_get(s->input), NULL, dts_ts_to_ns(s->scheduled_time),
                   strcmp(s->instance_id, e->base.id) == 0);
  } else if (a->operation_action_type_case == OPERATION_ACTION__OPERATION_ACTION_TYPE_START_NEW_ORCHESTRATION) {
    const StartNewOrchestrationAction *so = a->start_new_orchestration;
    char gen[37];
    const char *id = so->instance_id;
    if (id[0] == '\0') {
      dts_uuid(gen);
      id = gen;
    }
    if (dts_instance_id_problem(id) != NULL) {
      DTS_WARN("hub", "[%s] %s: cannot start orchestration '%.120s'", h->name, e->base.id, id);
      return;
    }
    ExecutionStartedEvent es = EXECUTION_STARTED_EVENT__INIT;
    OrchestrationInstance oi = ORCHESTRATION_INSTANCE__INIT;
    Google__Protobuf__StringValue ex;
    char exec[33];
    dts_exec_id(exec);
    es.name = so->name;
    es.version = so->version;
    es.input = so->input;
    oi.instance_id = (char *)id;
    oi.execution_id = dts_sv(&ex, exec);
    es.orchestration_instance = &oi;
    es.scheduled_start_timestamp = so->scheduled_time;
    es.parent_trace_context = so->parent_trace_context;
    HistoryEvent he = HISTORY_EVENT__INIT;
    he.event_type_case = EV(EXECUTION_STARTED);
    he.execution_started = &es;
    eng_post(A(e), TX(e), 'o', id, eng_ev_pack(&he, -1, now), NULL);
  }
}

static void on_complete(ent *e, dts_call *c, EntityBatchResult *r) {
  dts_hub *h = e->base.h;
  if (e->serial == 0 || strcmp(r->completion_token, e->token) != 0) {
    eng_log_stale(h, "stale entity completion (token '%.40s'): ignored", r->completion_token);
    atomic_fetch_add_explicit(&h->st_stale, 1, memory_order_relaxed);
    complete_ok(e, c);
    return;
  }
  uint64_t delay = h->cfg.abandon_delay_ns;
  size_t *idx = dts_malloc((e->nb ? e->nb : 1) * sizeof(size_t));
  if (!batch_indexes(e, idx)) {
    DTS_WARN("hub", "[%s] %s: completion for operations no longer queued: ignored", h->name, e->base.id);
    end_lease(e);
    dts_free(idx);
    complete_ok(e, c);
    return;
  }
  if (r->failure_details != NULL || (r->entity_state && strlen(r->entity_state->value) > h->cfg.max_payload)) {
    end_lease(e); /* delivered again later, under a new token */
    e->not_before = delay ? dts_now_ns() + delay : 0;
    dts_free(idx);
    if (r->failure_details != NULL) {
      DTS_WARN("hub", "[%s] %s: batch failed (%.200s); retrying", h->name, e->base.id, r->failure_details->error_message);
      complete_ok(e, c);
    } else {
      eng_reply_fail(A(e), TX(e), c, DTS_ST_INVALID_ARGUMENT, "entity state is over the payload limit of %zu bytes",
                     h->cfg.max_payload);
    }
    return;
  }
  int64_t now = (int64_t)dts_wall_ns();
  size_t n = r->n_results < e->nb ? r->n_results : e->nb;
  eng_ticket_cur(&e->base, &e->tx)->entity_ops += (uint32_t)n;
  post_results(e, r, idx, n, now);
  if (n > 0) drop_processed(e, idx, n);
  dts_free(idx);
  set_str(&e->r.state, dts_sv_get(r->entity_state));
  e->r.modified = now;
  touch(e);
  for (size_t i = 0; i < r->n_actions; i++) run_action(e, r->actions[i], now);
  end_lease(e);
  atomic_fetch_add_explicit(&h->st_completions, 1, memory_order_relaxed);
  complete_ok(e, c);
}

static void on_abandon(ent *e, dts_call *c, const char *token) {
  if (e->serial != 0 && strcmp(token, e->token) == 0) {
    end_lease(e);
    uint64_t delay = e->base.h->cfg.abandon_delay_ns;
    e->not_before = delay ? dts_now_ns() + delay : 0;
  }
  eng_reply_ok(A(e), TX(e), c, eng_empty_answer(DTS_M_ABANDON_ENTITY));
}

static void on_rpc(ent *e, m_rpc *r) {
  dts_call *c = r->call;
  if (r->method == DTS_M_SIGNAL_ENTITY || r->method == DTS_M_COMPLETE_ENTITY) {
    char why[400] = "";
    dts_err we = eng_writable(e->base.h, why, sizeof(why));
    if (we != DTS_OK) {
      if (r->method == DTS_M_COMPLETE_ENTITY && e->serial != 0 &&
          strcmp(((EntityBatchResult *)r->req)->completion_token, e->token) == 0)
        eng_offer_return(e->base.h, 'e', e->base.id, e->serial);
      eng_reply_fail(A(e), TX(e), c, eng_status_of(we), "%s", why);
      return;
    }
  }
  if (!load(e)) {
    eng_rd_answer(A(e), TX(e), c);
    return;
  }
  switch (r->method) {
  case DTS_M_SIGNAL_ENTITY: on_signal(e, c, (SignalEntityRequest *)r->req); break;
  case DTS_M_GET_ENTITY: on_get(e, c, (GetEntityRequest *)r->req); break;
  case DTS_M_COMPLETE_ENTITY: on_complete(e, c, (EntityBatchResult *)r->req); break;
  case DTS_M_ABANDON_ENTITY: on_abandon(e, c, ((AbandonEntityTaskRequest *)r->req)->completion_token); break;
  default: eng_reply_fail(A(e), TX(e), c, DTS_ST_INTERNAL, "method %d reached an entity", r->method); break;
  }
}

/* ---- jobs ------------------------------------------------------------------------ */

/* Deletes the entity's record in this turn's batch (a purge, a clean). */
static void drop_record(ent *e) {
  dts_key k;
  dts_key_id(&k, &e->base.h->ks, 'E', e->base.id);
  dts_batch_del(batch(e), k.b, k.n);
  eng_ticket_cur(&e->base, &e->tx)->changed = true;
  e->has_record = false;
  e->dirty = false;
  e->tx.changes++;
}

/* PurgeInstances with an entity id: its state, queue and record go. */
static void job_purge(ent *e, m_job_done *d) {
  if (e->serial != 0 || (e->r.state == NULL && e->qn == 0 && !locked(e) && !e->has_record)) return;
  dts_key k;
  for (size_t i = 0; i < e->qn; i++) {
    dts_key_seq(&k, &e->base.h->ks, 'Q', e->base.id, e->q[i].seq);
    dts_batch_del(batch(e), k.b, k.n);
    qmsg_free(&e->q[i]);
  }
  e->qn = 0;
  set_str(&e->r.state, NULL);
  set_str(&e->r.locked_by, NULL);
  set_str(&e->r.lock_cs, NULL);
  drop_record(e);
  d->count = 1;
}

/* CleanEntityStorage, one entity: an orphaned lock released, an empty
 * entity's record removed. */
static void job_clean(ent *e, m_job *j, m_job_done *d) {
  if (j->release_orphans && locked(e)) {
    int runs = holder_runs(e, e->r.locked_by);
    if (runs == 0) { /* a holder that cannot be read is not orphaned */
      unlock(e);
      d->released = 1;
    }
  }
  if (j->remove_empty && e->r.state == NULL && e->qn == 0 && !locked(e) && e->serial == 0 && e->has_record) {
    drop_record(e);
    d->count = 1;
  }
}

static void on_job(ent *e, m_job *j) {
  m_job_done *d = eng_job_done_new(e->base.h, j->job, e->base.id);
  char why[400] = "";
  dts_err we = eng_writable(e->base.h, why, sizeof(why));
  if (we != DTS_OK) {
    d->st = eng_status_of(we);
    d->msg = dts_strdup(why);
  } else if (!load(e)) {
    d->st = eng_status_of(e->tx.rd_code);
    d->msg = dts_strdup(e->tx.rd_msg);
  } else if (j->op == JOB_PURGE) {
    job_purge(e, d);
  } else if (j->op == JOB_CLEAN) {
    job_clean(e, j, d);
  }
  eng_job_reply(A(e), TX(e), d);
}

/* ---- timers ---------------------------------------------------------------------- */

/* A scheduled signal came due: into the queue, once, never early. */
static void on_timer(ent *e, m_timer *t) {
  if (t->what == TM_WAKE) {
    e->wake_armed = false;
    load(e);
    return;
  }
  dts_hub *h = e->base.h;
  if (eng_tx_tdeleting(TX(e), t->key.p, t->key.n)) return;
  char why[400];
  if (eng_writable(h, why, sizeof(why)) != DTS_OK) {
    if (!atomic_load(&h->stopping))
      eng_post_timer(h, dts_now_ns() + RETRY_NS, TM_DURABLE, 'e', e->base.id, t->key.p, t->key.n, t->fire_at);
    return;
  }
  char *v, msg[300];
  size_t vlen;
  dts_err err = dts_store_read(h->cfg.store, t->key.p, t->key.n, &v, &vlen, msg, sizeof(msg));
  if (err == DTS_ENOTFOUND) return;
  if (err != DTS_OK || !load(e)) {
    if (err == DTS_OK) dts_free(v);
    eng_post_timer(h, dts_now_ns() + RETRY_NS, TM_DURABLE, 'e', e->base.id, t->key.p, t->key.n, t->fire_at);
    return;
  }
  HistoryEvent *he = history_event__unpack(NULL, vlen, (const uint8_t *)v);
  int64_t at = he != NULL && he->event_type_case == EV(ENTITY_OPERATION_SIGNALED)
                   ? dts_ts_to_ns(he->entity_operation_signaled->scheduled_time)
                   : 0;
  if (he) history_event__free_unpacked(he, NULL);
  if (at > (int64_t)dts_wall_ns()) {
    dts_free(v);
    eng_post_timer(h, eng_mono_for(at), TM_DURABLE, 'e', e->base.id, t->key.p, t->key.n, at);
    return;
  }
  dts_batch_del(batch(e), t->key.p, t->key.n);
  eng_tx_note_tdel(A(e), TX(e), t->key.p, t->key.n);
  e->tx.changes++;
  enqueue(e, dts_buf_copy(v, vlen), eng_seq_next(h));
  dts_free(v);
}

/* ---- leaving memory ---------------------------------------------------------------- */

static bool busy(const ent *e) {
  return e->tx.cur != NULL || e->tx.inflight > 0 || e->tx.reset_needed || e->serial != 0 || e->qn > 0 ||
         e->freezing || e->mpending;
}

static void settle_idle(ent *e) {
  eng_actor *a = A(e);
  if (e->stopped || a->gone) return;
  if (busy(e)) {
    atomic_store_explicit(&a->idle_since, 0, memory_order_relaxed);
    return;
  }
  if (e->loaded && e->r.state == NULL && !locked(e)) unload(e); /* nothing to keep */
  if (!e->loaded) {
    if (!e->left) {
      e->left = true;
      eng_tell_hub(a, H_LEAVE);
    }
    return;
  }
  if (atomic_load_explicit(&a->idle_since, memory_order_relaxed) == 0)
    atomic_store_explicit(&a->idle_since, dts_now_ns(), memory_order_relaxed);
}

static void on_passivate(ent *e) {
  atomic_store(&e->base.asked, false);
  if (busy(e) || e->stopped || e->base.gone) return;
  unload(e);
  atomic_fetch_add_explicit(&e->base.h->st_passivated, 1, memory_order_relaxed);
  atomic_store_explicit(&e->base.idle_since, 0, memory_order_relaxed);
  if (!e->left) {
    e->left = true;
    eng_tell_hub(A(e), H_LEAVE);
  }
}

static void on_final(ent *e) {
  e->left = false;
  if (busy(e) || e->loaded || e->stopped) {
    eng_tell_hub(A(e), H_STAY);
    return;
  }
  e->base.gone = true;
  eng_tell_hub(A(e), H_GONE);
}

static void freeze_now(ent *e) {
  e->freezing = false;
  e->serial = 0;
  unload(e);
  e->base.gone = true;
  eng_tell_hub(A(e), H_FROZEN);
}

static void reset(ent *e) {
  e->tx.reset_needed = false;
  eng_msgs_unsure(e->base.h);
  atomic_fetch_add(&e->base.h->st_resets, 1);
  DTS_ERROR("hub", "[%s] %s: a change was not stored: reading the entity back from the store", e->base.h->name,
            e->base.id);
  end_lease(e);
  unload(e);
  e->tx.epoch = dts_store_epoch(e->base.h->cfg.store);
}

/* ---- the behaviour ----------------------------------------------------------------- */

static void settle(ent *e) {
  if (e->tx.reset_needed && !e->stopped) reset(e);
  if (e->freezing && e->tx.inflight == 0) freeze_now(e);
  if (e->base.gone) return;
  if (e->tx.cur == NULL && e->tx.inflight == 0 && e->loaded && !e->stopped) {
    if (e->mpending) take_messages(e);
    step(e);
    if (e->tx.cur == NULL) offer(e); /* lock steps are written first */
  }
  if (e->mpending && !e->stopped) arm_wake(e, dts_now_ns() + RETRY_NS);
  settle_idle(e);
}

static void flush(ent *e) {
  if (e->dirty) put_record(e);
  e->dirty = false;
  eng_ticket *t = eng_tx_flush(A(e), TX(e));
  if (t != NULL) {
    eng_tx_done(A(e), TX(e), t);
    eng_ticket_free(t);
  }
}

static void turn_end(dts_actor *self) {
  ent *e = (ent *)self;
  if (e->base.gone) return;
  flush(e);
  settle(e);
  if (e->tx.cur != NULL) { /* what the lock steps wrote */
    flush(e);
    settle(e);
  }
}

static void behaviour(dts_actor *self, dts_msg *m) {
  ent *e = (ent *)self;
  if (e->base.gone) {
    dts_msg *mv = eng_msg_move(e->base.h, m);
    if (mv != NULL) eng_forward_to_hub(A(e), mv);
    return;
  }
  e->tx.rd_code = DTS_OK;
  switch (m->kind) {
  case M_RPC: on_rpc(e, (m_rpc *)m); break;
  case M_DELIVER: on_deliver(e, (m_deliver *)m); break;
  case M_TIMER: on_timer(e, (m_timer *)m); break;
  case M_LEASED:
    if (((m_leased *)m)->serial == e->serial && e->serial != 0)
      memcpy(e->token, ((m_leased *)m)->token, sizeof(e->token));
    break;
  case M_COMMITTED: eng_tx_done(A(e), TX(e), (eng_ticket *)m); break;
  case M_JOB: on_job(e, (m_job *)m); break;
  case M_PASSIVATE: on_passivate(e); break;
  case M_FINAL: on_final(e); break;
  case M_FREEZE:
    if (e->tx.cur != NULL) {
      eng_ticket *t = eng_tx_flush(A(e), TX(e));
      if (t != NULL) {
        t->result = DTS_ENOTFOUND;
        eng_tx_done(A(e), TX(e), t);
        eng_ticket_free(t);
      }
    }
    if (e->tx.inflight > 0) e->freezing = true;
    else freeze_now(e);
    break;
  case M_SHUTDOWN: e->stopped = true; break;
  case M_KICK: load(e); break;
  default: DTS_WARN("hub", "entity %s: unknown message kind %u", e->base.id, m->kind); break;
  }
  e->tx.rd_code = DTS_OK;
}

static void fini(dts_actor *self) {
  ent *e = (ent *)self;
  unload(e);
  dts_ent_rec_fini(&e->r);
  dts_free(e->bseq);
  eng_tx_fini(&e->tx);
  atomic_fetch_sub_explicit(&e->base.h->st_actors, 1, memory_order_relaxed);
  eng_actor_fini(&e->base);
  dts_free(e);
}

eng_actor *eng_entity_new(dts_hub *h, const char *id) {
  ent *e = dts_calloc(1, sizeof(*e));
  eng_actor_init(&e->base, h, 'e', id, behaviour, fini);
  dts_actor_set_turn_end(&e->base.a, turn_end);
  eng_tx_init(&e->tx);
  e->r.id = dts_strdup(id);
  atomic_fetch_add_explicit(&h->st_actors, 1, memory_order_relaxed);
  return &e->base;
}

void eng_entity_load_now(eng_actor *a) {
  ent *e = (ent *)a;
  if (!load(e)) atomic_fetch_add(&a->h->st_unreadable, 1);
  e->tx.rd_code = DTS_OK;
}
