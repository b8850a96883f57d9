/* hub.c -- the task hub actor.  See hub.h and docs/orchestrations.md.
 *
 * Everything here runs on the hub's actor turn (one thread at a time), except
 * dts_hub_post/shutdown/get_stats, which only send messages or read atomics.
 *
 * The commit rule.  A handler changes in-memory state and records the same
 * change in the current ticket's batch; `flush()` submits the batch to the
 * storage thread at the end of the handler.  Effects that others can observe
 * -- RPC answers, dispatching work, arming timers -- are attached to the
 * ticket and run only when the ticket comes back (HUB_COMMITTED).  An
 * instance touched by a ticket in flight is not dispatched until that ticket
 * commits (`pending` counts them), so a worker never sees uncommitted state.
 * Tickets come back in submission order, so an answer to a read (which
 * travels as an empty ticket) is sent only after every earlier write.
 */
#include "actors/hub.h"

#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/map.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>

#define ST(x) ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_##x
#define EV(x) HISTORY_EVENT__EVENT_TYPE_##x
#define ACT(x) ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_##x
#define KEYMAX 600
#define DTS_MAX_LOCK_SET 100 /* entities one lock request may name */
#define ARM_MAX_NS (86400ULL * 1000000000ULL) /* a timer further out is looked at again in a day */
#define RETRY_NS 1000000000ULL /* work that waits for the store is tried again this much later */

enum { HUB_RPC = 1, HUB_COMMITTED, HUB_TIMER, HUB_TICK, HUB_SHUTDOWN, HUB_PURGE };

/* A finished instance in its status's purge queue.  Queues are in completion
 * order (instances finish in wall-clock order), so the purger only looks at
 * heads.  Entries are checked on pop: an instance restarted, reused or
 * purged since is skipped (lazy deletion). */
enum { TM_DURABLE = 1, TM_WAKE };

typedef struct stream stream;
typedef struct inst inst;
typedef struct ent ent;

/* Ready queues: an intrusive FIFO per kind of work (orchestrations,
 * activities, entity batches) of items waiting for a stream with room. */
typedef struct rlink {
  struct rlink *next;
  bool queued;
} rlink;

typedef struct readyq {
  rlink *head, *tail;
  atomic_long n; /* any thread may read it (stats) */
} readyq;

#define OWNER(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

/* An encoded HistoryEvent; `seq` is its inbox key (UINT64_MAX: not stored
 * in the inbox, e.g. the OrchestratorStarted made at dispatch). */
typedef struct ev {
  dts_buf b;
  uint64_t seq;
} ev;

typedef struct evvec {
  ev *v;
  size_t n, cap;
} evvec;

typedef struct waiter {
  dts_call *call;
  inst *in;
  char *id;        /* in->id, kept for a reset (hub_reset) */
  bool completion; /* else: start */
  bool io;         /* include inputs and outputs */
  struct waiter *prev, *next;
} waiter;

struct inst {
  char *id;
  char *name;
  char *version, *input, *output, *custom_status; /* NULL = absent */
  dts_buf failure;                                 /* encoded TaskFailureDetails */
  bool has_failure;
  char *exec_id;
  int status;
  int64_t created, updated, completed, sched_start; /* wall ns */
  dts_buf parent;                                   /* encoded ParentInstanceInfo */
  char *parent_id, *parent_exec;
  int32_t parent_task;
  size_t ntags;
  char **tag_k, **tag_v;
  dts_buf trace;
  uint64_t next_inbox_seq;
  evvec hist, inbox, dispatched;
  /* runtime */
  stream *leased_to;
  char token[40];
  /* Its work item went back to the ready queue when its stream closed, with
   * `token` still valid and `dispatched` kept: a completion that carries the
   * token is applied until the next dispatch (a worker that shuts down
   * closes its stream first and sends its completions after). */
  bool returned;
  OrchestratorResponse **chunks; /* partial completions, in order */
  size_t nchunks;
  int pending;           /* tickets in flight that touched this instance */
  void *touched_by;      /* the current ticket, when already in its list */
  bool dirty;            /* record must be rewritten in the current ticket */
  rlink rl; /* in h->rq */
  uint64_t not_before;   /* monotonic ns: abandon redelivery delay */
  bool wake_armed;
  bool purged; /* gone from the map; freed once nothing points at it */
  bool force_turn; /* dispatch once with an empty inbox (after a rewind) */
  bool may_hold_locks; /* it sent a lock request (or holds a lock at load) */
  waiter *waiters;
  /* index entries as last written to the batch (see index_update) */
  bool ix_set;
  int ix_status;
  int64_t ix_created, ix_completed;
  bool evict_listed; /* in h->evict */
  long rec_hist, rec_inbox; /* decoded record: its event counts (-1: unknown) */
  uint64_t last_active;     /* monotonic ns: last change written, or read back (passivation) */
};

typedef struct act {
  char *key;  /* map key: "<id>\x01<exec>\x01<task>" */
  uint64_t serial; /* unique in the hub: effects name it by (key, serial) */
  char *skey; /* store key (binary) */
  size_t klen;
  char *inst_id, *exec_id, *name, *version;
  int32_t task_id;
  dts_buf req; /* encoded ActivityRequest */
  stream *leased_to;
  char token[40]; /* its lease; valid until the next dispatch when returned (see inst) */
  rlink rl; /* in h->aq */
  uint64_t not_before;
} act;

typedef struct dtimer {
  char *key;  /* map key: "<id>\x01<exec>\x01<timer>" */
  uint64_t serial; /* unique in the hub: effects name it by (key, serial) */
  char *skey; /* store key (binary) */
  size_t klen;
  char *inst_id, *exec_id;
  int64_t fire_at; /* wall ns */
  dts_buf event;   /* encoded TimerFired */
} dtimer;

struct stream {
  uint64_t sid; /* unique in the hub: effects name it by this */
  dts_call *call;
  GetWorkItemsRequest *req; /* filters live here */
  int max_orch, max_act, n_orch, n_act, max_ent, n_ent;
  dts_bufq q; /* outbox */
  bool ended, closed, end_after_send;
  bool history;          /* a StreamInstanceHistory call, not a worker */
  bool held;             /* sends wait for a commit (ticket `opens`) */
  bool congested;        /* its reader is behind: no dispatch until DTS_CALL_DRAINED */
  dts_status end_st;     /* status that ends it once drained */
  const char *end_msg;   /* static text */
  uint64_t last_send;
  stream *prev, *next;
};

enum { QM_SIGNAL = 1, QM_CALL, QM_LOCK, QM_UNLOCK };

/* One message in an entity's queue: the encoded HistoryEvent plus what the
 * scheduler needs without decoding it again. */
typedef struct qmsg {
  dts_buf b;
  uint64_t seq;
  int kind;
  char *parent, *parent_exec, *request_id; /* calls and locks: the orchestration */
} qmsg;

struct ent {
  char *id; /* "@name@key" */
  char *state;
  int64_t modified;
  char *locked_by, *lock_cs;
  qmsg *q;
  size_t qn, qcap;
  uint64_t next_seq;
  /* the batch in flight: its messages by queue sequence (indexes move when
   * lock steps take messages off the front) */
  stream *leased_to;
  char token[40]; /* valid until the next dispatch when returned (see inst) */
  bool returned;
  uint64_t *bseq;
  size_t nb;
  size_t *bidx; /* scratch: bseq as indexes, at completion */
  /* commit bookkeeping, as for instances */
  int pending;
  void *touched_by;
  bool dirty, wake_armed;
  bool dead; /* removed (hub wiped); freed once nothing points at it */
  uint64_t not_before;
  rlink rl; /* in h->eq */
};

typedef struct reply {
  dts_call *call;
  dts_status st;
  char *msg;      /* error text when st != OK */
  dts_buf body;   /* OK: the response */
  bool is_waiter; /* answer to a waiter: clear owner data first */
} reply;

/* What a ticket does after its commit names objects that a later handler
 * of the same turn, or a later turn, may free or replace: by an id looked
 * up again after the commit, never by a pointer.  (Instances and entities
 * in `touched`/`etouched` are references instead: each counts in the
 * object's `pending`, and purged ones wait in h->dead until it is 0.) */
typedef struct effect {
  char *key;      /* map key (acts, timers); NULL for streams */
  uint64_t serial; /* the object's serial (streams: its sid) */
} effect;

typedef struct ticket {
  dts_msg hdr;
  inst **touched;
  size_t ntouched, captouched;
  effect *acts; /* new activity work items to make ready */
  size_t nacts, capacts;
  effect *timers; /* durable timers to arm */
  size_t ntimers, captimers;
  reply *replies;
  size_t nreplies, capreplies;
  ent **etouched; /* entities whose record this ticket rewrites */
  size_t netouched, capetouched;
  effect *opens; /* history streams that may start sending */
  size_t nopens, capopens;
  struct gone **gone; /* ids this ticket deletes from the store */
  size_t ngone, capgone;
  bool wipe;          /* this ticket wipes the hub's data */
  bool deletes;       /* ... and deletes the hub (DeleteTaskHub) */
  uint32_t epoch;     /* the store epoch its batch was built in */
  dts_err result;     /* storage thread: the commit's outcome */
} ticket;

/* An instance id whose deletion is in a ticket not yet committed: until it
 * is, the store still holds the old record, so find() must not load it. */
typedef struct gone {
  char *id;
  int n; /* tickets in flight that delete it */
} gone;

typedef struct hub_rpc {
  dts_msg hdr;
  int method;
  dts_call *call;
  ProtobufCMessage *req;
} hub_rpc;

typedef struct hub_timer_msg {
  dts_msg hdr;
  int what;
  char *key; /* TM_DURABLE: the timer key; TM_WAKE: the instance id */
} hub_timer_msg;

typedef struct key {
  char b[KEYMAX];
  size_t n;
} key;

struct dts_hub {
  dts_actor actor; /* first: the hub is its actor */
  dts_hub_config cfg;
  char *name;
  size_t namelen;
  dts_map insts, acts, timers, tokens; /* tokens -> inst*, act* or ent* (by first char) */
  dts_map ents;
  readyq eq; /* entities with deliverable operations */
  long nlocked;           /* entities currently locked */
  readyq rq, aq; /* orchestrations, activity work items */
  stream *streams, *rr;
  ticket *cur;
  dts_batch *batch;
  int64_t ret[5]; /* retention, ns; -1 keep */
  long purged_total;
  key sweep_at;       /* the purger resumes its sweep here (n = 0: from the start) */
  dts_map gone;       /* id -> gone*: deletions not yet committed */
  int wipes_pending;  /* hub wipes not yet committed */
  ticket **done;      /* inline commits: written, on_committed still to run */
  size_t ndone, capdone;
  inst **evict;       /* finished instances to drop from memory once idle */
  size_t nevict, capevict;
  inst **dead; /* purged instances awaiting their last reference */
  size_t ndead, capdead;
  ent **dead_ents;
  size_t ndead_ents, capdead_ents;
  bool deleted; /* DeleteTaskHub: no longer served */
  atomic_int delete_state; /* any thread: 0 not deleted or pending, 1 the deletion committed, -1 it failed */
  uint8_t rnd[4096]; /* random bytes for tokens; rnd_used of them spent */
  size_t rnd_used;
  uint64_t serial; /* last serial given to an act, timer or stream */
  bool shutting_down;
  bool tick_armed;
  /* When the store says no.  `epoch`: the store epoch in which memory last
   * matched the store; batches carry it (store.h, "epochs").  `inflight`:
   * tickets with the storage thread.  A ticket that did not commit leaves
   * memory ahead of the store: `reset_needed` reads everything back at the
   * end of the turn (hub_reset). */
  uint32_t epoch;
  int inflight;
  bool reset_needed;
  bool paused;      /* writes refused: dispatch and internal writes wait */
  /* the first store read that failed in the current handler (find, scans):
   * answered as INTERNAL or DATA_LOSS, never taken for "absent" */
  dts_err rd_code;
  char rd_msg[400];
  bool poisoned;    /* a read failed after the handler changed state */
  long changes;     /* touch() calls and batch operations: "has it changed anything?" */
  long mark;        /* `changes` when the current handler began */
  atomic_long unreadable; /* records start-up (or a reset) could not read; any thread reads */
  dts_ratelimit stale_log;
  atomic_long resets;
  atomic_bool quiesced; /* any thread: shut down, and its last batch is with the store */
  atomic_long st_instances, st_streams, st_dispatched,
      st_completions, st_stale;
};

/* Context for store scans that rebuild state (load, find). */
typedef struct loadctx {
  dts_hub *h;
  dts_err err;
  long n;
  long left;   /* load_event: events still expected (-1: to the end of the prefix) */
  inst *in;    /* load_event: whose events these are */
  size_t plen; /* load_event: the prefix "<hub>\0<H|N><id>\0" */
  const char *why; /* load_event: what was wrong, when err is set */
} loadctx;

static void pump(dts_hub *h);
static bool can_write(dts_hub *h);
static void resume_if_writable(dts_hub *h);
static dts_err load(dts_hub *h, bool again, char *err, size_t errlen);
static void timer_free(struct dtimer *tm);
static void ent_step(dts_hub *h, ent *e);
static bool ent_empty(const ent *e);
static void ent_touch(dts_hub *h, ent *e);
static void put_ent_record(dts_hub *h, ent *e);
static void ent_unlease(dts_hub *h, ent *e, uint64_t delay_ns);
static void ent_return(dts_hub *h, ent *e);
static void ent_enqueue(dts_hub *h, const char *id, int kind, dts_buf b, const char *parent, const char *parent_exec,
                        const char *request_id);
static void release_locks_of(dts_hub *h, inst *holder);
static void route_from_orchestration(dts_hub *h, inst *in, const SendEntityMessageAction *sm);
static int purge_entity(dts_hub *h, const char *id);
static void ticket_drop(dts_msg *m);
static void handle(dts_hub *h, dts_msg *m);
static void ticket_fail(dts_hub *h, ticket *t, dts_err e, const char *why);
static void timer_msg_drop(dts_msg *m);
static void make_ready(dts_hub *h, inst *in);
static void chunks_free(inst *in);
static void orch_end_lease(dts_hub *h, inst *in);
static void act_end_lease(dts_hub *h, act *a);
static void ent_end_lease(dts_hub *h, ent *e);
static inst *find(dts_hub *h, const char *id);
static void check_waiters(dts_hub *h, inst *in);

/* ======================================================================== */
/* small helpers                                                            */

static uint64_t be64(const char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | (uint8_t)p[i];
  return v;
}

static char *xstrdup_or_null(const char *s) { return s != NULL ? dts_strdup(s) : NULL; }

static void set_str(char **dst, const char *s) {
  dts_free(*dst);
  *dst = xstrdup_or_null(s);
}

static bool terminal(int st) {
  return st == ST(COMPLETED) || st == ST(FAILED) || st == ST(TERMINATED) || st == ST(CANCELED);
}

static void ev_push(evvec *v, dts_buf b, uint64_t seq) {
  if (v->n == v->cap) {
    v->cap = v->cap ? v->cap * 2 : 8;
    v->v = dts_realloc(v->v, v->cap * sizeof(ev));
  }
  v->v[v->n++] = (ev){b, seq};
}

static void ev_clear(evvec *v) {
  for (size_t i = 0; i < v->n; i++) dts_buf_free(&v->v[i].b);
  v->n = 0;
}

static void ev_fini(evvec *v) {
  ev_clear(v);
  dts_free(v->v);
  memset(v, 0, sizeof(*v));
}

const char *dts_hub_name_problem(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 64) return "a task hub name has 1 to 64 characters";
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return "a task hub name uses only A-Z a-z 0-9 - _";
  }
  return NULL;
}

static bool printable(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return false;
  return true;
}

const char *dts_short_id_problem(const char *id) {
  size_t n = strlen(id);
  if (n == 0) return "must not be empty";
  if (n > DTS_ID_MAX) return "is longer than 100 characters";
  if (!printable(id, n)) return "must be printable ASCII (0x20..0x7E)";
  return NULL;
}

const char *dts_instance_id_problem(const char *id) {
  size_t n = strlen(id);
  if (n == 0) return "instance id must not be empty";
  if (n > DTS_ID_MAX) return "instance id is longer than 100 characters";
  if (id[0] == '@') return "instance ids starting with '@' are reserved for entities";
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)id[i] < 0x20 || (unsigned char)id[i] > 0x7e)
      return "instance id must be printable ASCII (0x20..0x7E)";
  return NULL;
}

/* ---- keys (docs/storage.md) --------------------------------------------- */


/* Keys are built only from validated strings: instance and entity ids,
 * execution and request ids of at most DTS_ID_MAX characters each (checked
 * where they enter, from the wire or the disk) and the hub name (at most
 * 64), so the longest key is far below KEYMAX.  Outgrowing it means a string
 * reached a key unchecked: an invariant broken, never truncated in silence
 * (two long ids must never merge into one key). */
static void k_need(const key *k, size_t more) {
  DTS_ASSERT(k->n + more <= KEYMAX && "a key outgrew its buffer: a string reached it unvalidated");
}

static void k_start(key *k, const dts_hub *h, char type) {
  k->n = 0;
  k_need(k, h->namelen + 2);
  memcpy(k->b, h->name, h->namelen);
  k->b[h->namelen] = '\0';
  k->b[h->namelen + 1] = type;
  k->n = h->namelen + 2;
}

static void k_str(key *k, const char *s) {
  size_t n = strlen(s);
  k_need(k, n);
  memcpy(k->b + k->n, s, n);
  k->n += n;
}

static void k_sep(key *k) {
  k_need(k, 1);
  k->b[k->n++] = '\0';
}

static void k_u64(key *k, uint64_t v) {
  k_need(k, 8);
  for (int i = 7; i >= 0; i--) k->b[k->n++] = (char)(v >> (i * 8));
}

static void k_u32(key *k, uint32_t v) {
  k_need(k, 4);
  for (int i = 3; i >= 0; i--) k->b[k->n++] = (char)(v >> (i * 8));
}

/* "<hub>\0<type><id>" */
static void key_id(key *k, const dts_hub *h, char type, const char *id) {
  k_start(k, h, type);
  k_str(k, id);
}

/* "<hub>\0<type><id>\0<seq>" */
static void key_seq(key *k, const dts_hub *h, char type, const char *id, uint64_t seq) {
  key_id(k, h, type, id);
  k_sep(k);
  k_u64(k, seq);
}

static void key_inst(key *k, const dts_hub *h, const char *id) { key_id(k, h, 'I', id); }
static void key_hist(key *k, const dts_hub *h, const char *id, uint64_t seq) { key_seq(k, h, 'H', id, seq); }
static void key_inbox(key *k, const dts_hub *h, const char *id, uint64_t seq) { key_seq(k, h, 'N', id, seq); }

/* Secondary indexes, written in the same batch as the record they index:
 *   "<hub>\0S<status:1><created:be64><id>" -> ""        (QueryInstances)
 *   "<hub>\0C<completed:be64><id>"        -> <status:1> (ListInstanceIds,
 *                                                        auto-purge)
 * Times are wall ns (never negative), so byte order is time order. */
static void key_sidx(key *k, const dts_hub *h, int status, int64_t created, const char *id) {
  k_start(k, h, 'S');
  k->b[k->n++] = (char)status;
  k_u64(k, (uint64_t)created);
  k_str(k, id);
}

/*   "<hub>\0U<id>" -> <status:1>  unfinished instances by id (ListInstanceIds
 *                                 pages through them without sorting) */
static void key_uidx(key *k, const dts_hub *h, const char *id) { key_id(k, h, 'U', id); }

/* v2: the U index; a store without this marker is indexed once at start */
static void index_marker_key(key *k, const dts_hub *h) {
  k_start(k, h, 'X');
  k_str(k, "indexes-v2");
}

static void key_cidx(key *k, const dts_hub *h, int64_t completed, const char *id) {
  k_start(k, h, 'C');
  k_u64(k, (uint64_t)completed);
  k_str(k, id);
}

static void key_act(key *k, const dts_hub *h, const char *id, const char *exec, int32_t task) {
  k_start(k, h, 'A');
  k_str(k, id);
  k_sep(k);
  k_str(k, exec);
  k_sep(k);
  k_u32(k, (uint32_t)task);
}

static void key_timer(key *k, const dts_hub *h, const char *id, const char *exec, int32_t tid) {
  k_start(k, h, 'T');
  k_str(k, id);
  k_sep(k);
  k_str(k, exec);
  k_sep(k);
  k_u32(k, (uint32_t)tid);
}

/* Map keys for acts and timers: a C string naming the same work item. */
static char *work_key(const char *id, const char *exec, int32_t num) {
  size_t n = strlen(id) + strlen(exec) + 16;
  char *s = dts_malloc(n);
  snprintf(s, n, "%s\x01%s\x01%" PRId32, id, exec, num);
  return s;
}

static char *raw_copy(const key *k) {
  char *s = dts_malloc(k->n);
  memcpy(s, k->b, k->n);
  return s;
}

/* ---- tickets ---------------------------------------------------------------- */

#define VEC_PUSH(arr, n, cap, x)                                \
  do {                                                          \
    if ((n) == (cap)) {                                         \
      (cap) = (cap) ? (cap) * 2 : 4;                            \
      (arr) = dts_realloc((arr), (cap) * sizeof(*(arr)));       \
    }                                                           \
    (arr)[(n)++] = (x);                                         \
  } while (0)

static ticket *cur(dts_hub *h) {
  if (h->cur == NULL) {
    /* with nothing in flight and nothing lost, memory matches the store,
     * whatever epoch the store is in now */
    if (h->inflight == 0 && !h->reset_needed) h->epoch = dts_store_epoch(h->cfg.store);
    h->cur = (ticket *)dts_msg_alloc(HUB_COMMITTED, sizeof(ticket));
    h->cur->hdr.drop = ticket_drop;
    h->cur->epoch = h->epoch;
    h->batch = dts_batch_create();
  }
  return h->cur;
}

/* How much the hub has changed so far (any handler): touches and batch
 * operations.  Equal before and after a step: the step changed nothing. */
static long changes(const dts_hub *h) { return h->changes + (long)dts_batch_ops(h->batch); }

/* After the current ticket commits: make the act ready / arm the timer /
 * let the history stream send -- if it is still the same object then. */
static void effect_act(dts_hub *h, const act *a) {
  ticket *t = cur(h);
  effect e = {dts_strdup(a->key), a->serial};
  VEC_PUSH(t->acts, t->nacts, t->capacts, e);
}

static void effect_timer(dts_hub *h, const struct dtimer *tm) {
  ticket *t = cur(h);
  effect e = {dts_strdup(tm->key), tm->serial};
  VEC_PUSH(t->timers, t->ntimers, t->captimers, e);
}

static void effect_open(dts_hub *h, const stream *st) {
  ticket *t = cur(h);
  effect e = {NULL, st->sid};
  VEC_PUSH(t->opens, t->nopens, t->capopens, e);
}

static void touch(dts_hub *h, inst *in) {
  ticket *t = cur(h);
  h->changes++;
  in->dirty = true;
  if (in->touched_by == t) return;
  in->touched_by = t;
  in->pending++;
  VEC_PUSH(t->touched, t->ntouched, t->captouched, in);
}

static void answer(dts_hub *h, dts_call *c, dts_buf body) {
  ticket *t = cur(h);
  dts_call_ref(c); /* the reply's own reference */
  reply r = {c, DTS_ST_OK, NULL, body, false};
  VEC_PUSH(t->replies, t->nreplies, t->capreplies, r);
}

static void answer_msg(dts_hub *h, dts_call *c, const ProtobufCMessage *m) {
  answer(h, c, dts_pb_pack(m));
}


static void fail(dts_hub *h, dts_call *c, dts_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(dts_hub *h, dts_call *c, dts_status st, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  ticket *t = cur(h);
  dts_call_ref(c); /* the reply's own reference */
  reply r = {c, st, dts_strdup(msg), {NULL, 0}, false};
  VEC_PUSH(t->replies, t->nreplies, t->capreplies, r);
}

static dts_status status_of(dts_err e) {
  switch (e) {
  case DTS_ELIMIT: return DTS_ST_RESOURCE_EXHAUSTED;
  case DTS_ECORRUPT: return DTS_ST_DATA_LOSS;
  default: return DTS_ST_INTERNAL;
  }
}

/* A store read failed (DTS_EIO) or returned a record that does not decode
 * (DTS_ECORRUPT).  The first of the current handler is kept for its answer
 * (rd_answer); the handler must not take the record for absent. */
static void rd_fail(dts_hub *h, dts_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void rd_fail(dts_hub *h, dts_err code, const char *fmt, ...) {
  if (h->rd_code != DTS_OK) return;
  h->rd_code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->rd_msg, sizeof(h->rd_msg), fmt, ap);
  va_end(ap);
  DTS_ERROR("hub", "[%s] %s", h->name, h->rd_msg);
}

/* Answers `c` with the failed read, if one happened: true when it did. */
static bool rd_answer(dts_hub *h, dts_call *c) {
  if (h->rd_code == DTS_OK) return false;
  fail(h, c, status_of(h->rd_code), "%s", h->rd_msg);
  return true;
}

/* ---- instance records ------------------------------------------------------ */

static bool has_cidx(int status, int64_t completed) { return terminal(status) && completed > 0; }

/* Brings the instance's index entries in the current batch in line with its
 * record: drops the entries it had, writes the ones it has now. */
static void index_update(dts_hub *h, inst *in) {
  key k;
  bool s_same = in->ix_set && in->ix_status == in->status && in->ix_created == in->created;
  if (!s_same) {
    if (in->ix_set) {
      key_sidx(&k, h, in->ix_status, in->ix_created, in->id);
      dts_batch_del(h->batch, k.b, k.n);
    }
    key_sidx(&k, h, in->status, in->created, in->id);
    dts_batch_put(h->batch, k.b, k.n, "", 0);
  }
  bool had_c = in->ix_set && has_cidx(in->ix_status, in->ix_completed);
  bool has_c = has_cidx(in->status, in->completed);
  bool c_same = had_c && has_c && in->ix_completed == in->completed && in->ix_status == in->status;
  if (had_c && !c_same) {
    key_cidx(&k, h, in->ix_completed, in->id);
    dts_batch_del(h->batch, k.b, k.n);
  }
  if (has_c && !c_same) {
    char st = (char)in->status;
    key_cidx(&k, h, in->completed, in->id);
    dts_batch_put(h->batch, k.b, k.n, &st, 1);
  }
  bool had_u = in->ix_set && !terminal(in->ix_status), has_u = !terminal(in->status);
  if (had_u && !has_u) {
    key_uidx(&k, h, in->id);
    dts_batch_del(h->batch, k.b, k.n);
  } else if (has_u && (!had_u || in->ix_status != in->status)) {
    char st = (char)in->status;
    key_uidx(&k, h, in->id);
    dts_batch_put(h->batch, k.b, k.n, &st, 1);
  }
  in->ix_set = true;
  in->ix_status = in->status;
  in->ix_created = in->created;
  in->ix_completed = in->completed;
}

/* Deletes the instance's index entries (purge). */
static void index_drop(dts_hub *h, inst *in) {
  if (!in->ix_set) return;
  key k;
  key_sidx(&k, h, in->ix_status, in->ix_created, in->id);
  dts_batch_del(h->batch, k.b, k.n);
  if (has_cidx(in->ix_status, in->ix_completed)) {
    key_cidx(&k, h, in->ix_completed, in->id);
    dts_batch_del(h->batch, k.b, k.n);
  }
  if (!terminal(in->ix_status)) {
    key_uidx(&k, h, in->id);
    dts_batch_del(h->batch, k.b, k.n);
  }
  in->ix_set = false;
}

static void put_record(dts_hub *h, inst *in) {
  Dtsd__Store__InstanceRecord r = DTSD__STORE__INSTANCE_RECORD__INIT;
  Google__Protobuf__StringValue v, i, o, cs;
  r.instance_id = in->id;
  r.name = in->name;
  r.version = dts_sv(&v, in->version);
  r.status = in->status;
  r.input = dts_sv(&i, in->input);
  r.output = dts_sv(&o, in->output);
  r.custom_status = dts_sv(&cs, in->custom_status);
  r.failure_details.data = in->failure.p;
  r.failure_details.len = in->failure.n;
  r.has_failure = in->has_failure;
  r.execution_id = in->exec_id;
  r.created_ns = in->created;
  r.updated_ns = in->updated;
  r.completed_ns = in->completed;
  r.scheduled_start_ns = in->sched_start;
  r.parent.data = in->parent.p;
  r.parent.len = in->parent.n;
  Dtsd__Store__InstanceRecord__TagsEntry *te = NULL, **tp = NULL;
  if (in->ntags > 0) {
    te = dts_calloc(in->ntags, sizeof(*te));
    tp = dts_calloc(in->ntags, sizeof(*tp));
    for (size_t k = 0; k < in->ntags; k++) {
      dtsd__store__instance_record__tags_entry__init(&te[k]);
      te[k].key = in->tag_k[k];
      te[k].value = in->tag_v[k];
      tp[k] = &te[k];
    }
  }
  r.n_tags = in->ntags;
  r.tags = tp;
  r.next_inbox_seq = in->next_inbox_seq;
  r.history_len = (uint32_t)in->hist.n;
  r.trace_context.data = in->trace.p;
  r.trace_context.len = in->trace.n;
  r.force_turn = in->force_turn;
  r.inbox_count = (uint32_t)(in->inbox.n + in->dispatched.n) + 1; /* both are N keys */
  dts_buf b = dts_pb_pack(&r.base);
  key k;
  key_inst(&k, h, in->id);
  dts_batch_put(h->batch, k.b, k.n, b.p, b.n);
  dts_buf_free(&b);
  dts_free(te);
  dts_free(tp);
  index_update(h, in);
}

/* Submits the current ticket (if any).  Called at the end of every handler. */
static void flush(dts_hub *h) {
  ticket *t = h->cur;
  if (t == NULL) return;
  uint64_t now = t->ntouched > 0 ? dts_now_ns() : 0;
  for (size_t i = 0; i < t->ntouched; i++) {
    inst *in = t->touched[i];
    in->last_active = now; /* passivation counts idle time from its last change */
    if (in->dirty && !in->purged) put_record(h, in); /* a purge later in the turn deleted it for good */
    in->dirty = false;
    in->touched_by = NULL;
  }
  for (size_t i = 0; i < t->netouched; i++) {
    ent *e = t->etouched[i];
    if (e->dirty && !e->dead) put_ent_record(h, e); /* a wipe later in the turn removed it */
    e->dirty = false;
    e->touched_by = NULL;
  }
  dts_batch *b = h->batch;
  h->cur = NULL;
  h->batch = NULL;
  if (atomic_load(&h->quiesced)) {
    /* After shutdown the store may already be closed.  Nothing here was
     * answered yet, so dropping it is what a crash at this point would do. */
    DTS_DEBUG("hub", "[%s] change after shutdown not written (%zu instances)", h->name, t->ntouched);
    dts_batch_destroy(b);
    dts_msg_free(&t->hdr);
    return;
  }
  if (h->poisoned) {
    /* a read failed after this turn had started changing state: what it
     * built may rest on a record taken for absent, so none of it goes */
    h->poisoned = false;
    dts_batch_destroy(b);
    ticket_fail(h, t, h->rd_code == DTS_ECORRUPT ? DTS_ECORRUPT : DTS_EIO, h->rd_msg);
    return;
  }
  if (h->cfg.inline_commit) {
    /* written here and now (LevelDB groups concurrent writers); the effects
     * run at the end of the turn, in commit order (drain_done) */
    dts_err e = dts_batch_empty(b) ? DTS_OK : dts_store_commit(h->cfg.store, b, t->epoch);
    dts_batch_destroy(b);
    if (e != DTS_OK) {
      char why[400];
      dts_store_writable(h->cfg.store, why, sizeof(why));
      ticket_fail(h, t, e, why);
      return;
    }
    VEC_PUSH(h->done, h->ndone, h->capdone, t);
    return;
  }
  h->inflight++;
  dts_store_submit_at(h->cfg.store, b, t->epoch, &h->actor, &t->hdr, &t->result);
}

/* ---- events ------------------------------------------------------------------ */

static dts_buf ev_pack(HistoryEvent *e, int32_t id, int64_t ts) {
  Google__Protobuf__Timestamp t;
  e->event_id = id;
  e->timestamp = dts_ts_from_ns(&t, ts);
  return dts_pb_pack(&e->base);
}

/* Copies map entries between messages whose entry types share the layout
 * {base, key, value} (every map<string,string> in the protocol). */
typedef struct tag_entry {
  ProtobufCMessage base;
  char *key, *value;
} tag_entry;

typedef struct tagset {
  tag_entry *e;
  tag_entry **p;
  size_t n;
} tagset;

static tagset tags_as(const ProtobufCMessageDescriptor *d, void *const *src, size_t n) {
  tagset t = {NULL, NULL, n};
  if (n == 0) return t;
  t.e = dts_calloc(n, sizeof(*t.e));
  t.p = dts_calloc(n, sizeof(*t.p));
  for (size_t i = 0; i < n; i++) {
    const tag_entry *s = src[i];
    t.e[i].base.descriptor = d;
    t.e[i].key = s->key;
    t.e[i].value = s->value;
    t.p[i] = &t.e[i];
  }
  return t;
}

static tagset tags_from_inst(const ProtobufCMessageDescriptor *d, const inst *in) {
  tagset t = {NULL, NULL, in->ntags};
  if (in->ntags == 0) return t;
  t.e = dts_calloc(in->ntags, sizeof(*t.e));
  t.p = dts_calloc(in->ntags, sizeof(*t.p));
  for (size_t i = 0; i < in->ntags; i++) {
    t.e[i].base.descriptor = d;
    t.e[i].key = in->tag_k[i];
    t.e[i].value = in->tag_v[i];
    t.p[i] = &t.e[i];
  }
  return t;
}

static void tags_free(tagset *t) {
  dts_free(t->e);
  dts_free(t->p);
}

static void inst_set_tags(inst *in, void *const *src, size_t n) {
  for (size_t i = 0; i < in->ntags; i++) {
    dts_free(in->tag_k[i]);
    dts_free(in->tag_v[i]);
  }
  dts_free(in->tag_k);
  dts_free(in->tag_v);
  in->ntags = n;
  in->tag_k = n ? dts_calloc(n, sizeof(char *)) : NULL;
  in->tag_v = n ? dts_calloc(n, sizeof(char *)) : NULL;
  for (size_t i = 0; i < n; i++) {
    const tag_entry *s = src[i];
    in->tag_k[i] = dts_strdup(s->key);
    in->tag_v[i] = dts_strdup(s->value);
  }
}

/* Merges entries into the instance's tags (same key: replaced). */
static void inst_merge_tags(inst *in, void *const *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const tag_entry *s = src[i];
    size_t k = 0;
    while (k < in->ntags && strcmp(in->tag_k[k], s->key) != 0) k++;
    if (k < in->ntags) {
      set_str(&in->tag_v[k], s->value);
      continue;
    }
    in->tag_k = dts_realloc(in->tag_k, (in->ntags + 1) * sizeof(char *));
    in->tag_v = dts_realloc(in->tag_v, (in->ntags + 1) * sizeof(char *));
    in->tag_k[in->ntags] = dts_strdup(s->key);
    in->tag_v[in->ntags] = dts_strdup(s->value);
    in->ntags++;
  }
}

/* Appends an event to an instance's inbox (and the batch), unless the
 * instance is finished: events to finished instances are dropped. */
static bool inbox_add(dts_hub *h, inst *in, dts_buf b) {
  if (terminal(in->status)) {
    dts_buf_free(&b);
    return false;
  }
  uint64_t seq = in->next_inbox_seq++;
  key k;
  key_inbox(&k, h, in->id, seq);
  cur(h);
  dts_batch_put(h->batch, k.b, k.n, b.p, b.n);
  ev_push(&in->inbox, b, seq);
  touch(h, in);
  return true;
}

static void hist_add(dts_hub *h, inst *in, dts_buf b) {
  key k;
  key_hist(&k, h, in->id, in->hist.n);
  cur(h);
  dts_batch_put(h->batch, k.b, k.n, b.p, b.n);
  ev_push(&in->hist, b, UINT64_MAX);
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

/* ======================================================================== */
/* instances                                                                */

static void inst_free(inst *in);

/* Puts an instance into memory (the map and the count) / takes it out. */
static void inst_adopt(dts_hub *h, inst *in) {
  dts_map_put(&h->insts, in->id, in);
  atomic_fetch_add_explicit(&h->st_instances, 1, memory_order_relaxed);
}

static void inst_drop(dts_hub *h, inst *in) {
  dts_map_del(&h->insts, in->id);
  atomic_fetch_sub_explicit(&h->st_instances, 1, memory_order_relaxed);
  inst_free(in);
}

static inst *inst_new(dts_hub *h, const char *id) {
  inst *in = dts_calloc(1, sizeof(*in));
  in->id = dts_strdup(id);
  in->name = dts_strdup("");
  in->exec_id = dts_strdup("");
  inst_adopt(h, in);
  return in;
}

/* Clears an instance's execution state (history, inbox, outputs) in memory
 * and in the batch, keeping its id and waiters.  Used when an id is reused
 * and on continue-as-new (which keeps what it needs first). */
static void inst_clear_execution(dts_hub *h, inst *in) {
  key k;
  for (size_t i = 0; i < in->hist.n; i++) {
    key_hist(&k, h, in->id, i);
    dts_batch_del(h->batch, k.b, k.n);
  }
  ev_clear(&in->hist);
  for (size_t i = 0; i < in->inbox.n; i++) {
    key_inbox(&k, h, in->id, in->inbox.v[i].seq);
    dts_batch_del(h->batch, k.b, k.n);
  }
  ev_clear(&in->inbox);
  for (size_t i = 0; i < in->dispatched.n; i++) {
    if (in->dispatched.v[i].seq == UINT64_MAX) continue;
    key_inbox(&k, h, in->id, in->dispatched.v[i].seq);
    dts_batch_del(h->batch, k.b, k.n);
  }
  ev_clear(&in->dispatched);
  orch_end_lease(h, in); /* its work item is now stale */
  chunks_free(in);
}

static inst *inst_decode(dts_hub *h, const char *v, size_t vlen);


static void inst_free(inst *in) {
  dts_free(in->id);
  dts_free(in->name);
  dts_free(in->version);
  dts_free(in->input);
  dts_free(in->output);
  dts_free(in->custom_status);
  dts_buf_free(&in->failure);
  dts_free(in->exec_id);
  dts_buf_free(&in->parent);
  dts_free(in->parent_id);
  dts_free(in->parent_exec);
  for (size_t i = 0; i < in->ntags; i++) {
    dts_free(in->tag_k[i]);
    dts_free(in->tag_v[i]);
  }
  dts_free(in->tag_k);
  dts_free(in->tag_v);
  dts_buf_free(&in->trace);
  ev_fini(&in->hist);
  ev_fini(&in->inbox);
  ev_fini(&in->dispatched);
  for (size_t i = 0; i < in->nchunks; i++)
    orchestrator_response__free_unpacked(in->chunks[i], NULL);
  dts_free(in->chunks);
  dts_free(in);
}

static void inst_set_parent(inst *in, const ParentInstanceInfo *p);
static void inst_set_tags(inst *in, void *const *entries, size_t n);

/* A stored record as an instance that is not in the map (queries read
 * finished instances this way without keeping them).  NULL if damaged. */
static inst *inst_decode(dts_hub *h, const char *v, size_t vlen) {
  Dtsd__Store__InstanceRecord *r = dtsd__store__instance_record__unpack(NULL, vlen, (const uint8_t *)v);
  /* what dtsd could have written: its ids name keys */
  bool ok = r != NULL && dts_instance_id_problem(r->instance_id) == NULL &&
            (r->execution_id[0] == '\0' || dts_short_id_problem(r->execution_id) == NULL) && r->status >= 0 &&
            r->status <= 15 && (r->inbox_count == 0 || r->inbox_count - 1 <= (uint32_t)INT32_MAX);
  if (!ok) {
    DTS_ERROR("hub", "[%s] damaged instance record in the store", h->name);
    if (r != NULL) dtsd__store__instance_record__free_unpacked(r, NULL);
    return NULL;
  }
  inst *in = dts_calloc(1, sizeof(*in));
  in->id = dts_strdup(r->instance_id);
  in->name = dts_strdup(r->name ? r->name : "");
  set_str(&in->version, dts_sv_get(r->version));
  set_str(&in->input, dts_sv_get(r->input));
  set_str(&in->output, dts_sv_get(r->output));
  set_str(&in->custom_status, dts_sv_get(r->custom_status));
  in->failure = dts_buf_copy(r->failure_details.data, r->failure_details.len);
  in->has_failure = r->has_failure;
  in->exec_id = dts_strdup(r->execution_id ? r->execution_id : "");
  in->status = r->status;
  in->created = r->created_ns;
  in->updated = r->updated_ns;
  in->completed = r->completed_ns;
  in->sched_start = r->scheduled_start_ns;
  if (r->parent.len > 0) {
    ParentInstanceInfo *p = parent_instance_info__unpack(NULL, r->parent.len, r->parent.data);
    if (p != NULL) {
      inst_set_parent(in, p);
      parent_instance_info__free_unpacked(p, NULL);
    }
  }
  inst_set_tags(in, (void *const *)r->tags, r->n_tags);
  in->trace = dts_buf_copy(r->trace_context.data, r->trace_context.len);
  in->next_inbox_seq = r->next_inbox_seq;
  in->force_turn = r->force_turn;
  in->rec_hist = r->inbox_count > 0 ? (long)r->history_len : -1;
  in->rec_inbox = r->inbox_count > 0 ? (long)r->inbox_count - 1 : -1;
  /* what the store's index entries say (put_record wrote both together) */
  in->ix_set = true;
  in->ix_status = in->status;
  in->ix_created = in->created;
  in->ix_completed = in->completed;
  dtsd__store__instance_record__free_unpacked(r, NULL);
  return in;
}

static void inst_set_parent(inst *in, const ParentInstanceInfo *p) {
  dts_buf_free(&in->parent);
  set_str(&in->parent_id, NULL);
  set_str(&in->parent_exec, NULL);
  in->parent_task = 0;
  if (p == NULL) return;
  in->parent = dts_pb_pack(&p->base);
  if (p->orchestration_instance != NULL) {
    set_str(&in->parent_id, p->orchestration_instance->instance_id);
    set_str(&in->parent_exec, dts_sv_get(p->orchestration_instance->execution_id));
  }
  in->parent_task = p->task_scheduled_id;
}

typedef struct start_spec {
  const char *name, *version, *input, *exec_id;
  int64_t sched_start;
  void *const *tags;
  size_t ntags;
  const ParentInstanceInfo *parent;
  const TraceContext *trace;
} start_spec;

/* (Re)starts `in` as a new execution: status PENDING, inbox =
 * [ExecutionStarted].  The caller has cleared any previous execution. */
static void inst_start(dts_hub *h, inst *in, const start_spec *s) {
  int64_t now = (int64_t)dts_wall_ns();
  char uuid[37];
  if (s->exec_id == NULL || s->exec_id[0] == '\0') dts_uuid(uuid);
  set_str(&in->exec_id, s->exec_id && s->exec_id[0] ? s->exec_id : uuid);
  set_str(&in->name, s->name);
  set_str(&in->version, s->version);
  set_str(&in->input, s->input);
  set_str(&in->output, NULL);
  set_str(&in->custom_status, NULL);
  dts_buf_free(&in->failure);
  in->has_failure = false;
  in->status = ST(PENDING);
  in->created = now;
  in->updated = now;
  in->completed = 0;
  in->sched_start = s->sched_start > now ? s->sched_start : 0;
  inst_set_tags(in, s->tags, s->ntags);
  inst_set_parent(in, s->parent);
  dts_buf_free(&in->trace);

  ExecutionStartedEvent es = EXECUTION_STARTED_EVENT__INIT;
  OrchestrationInstance oi = ORCHESTRATION_INSTANCE__INIT;
  Google__Protobuf__StringValue v1, v2, v3;
  Google__Protobuf__Timestamp st;
  es.name = in->name;
  es.version = dts_sv(&v1, in->version);
  es.input = dts_sv(&v2, in->input);
  oi.instance_id = in->id;
  oi.execution_id = dts_sv(&v3, in->exec_id);
  es.orchestration_instance = &oi;
  es.parent_instance = (ParentInstanceInfo *)s->parent;
  if (in->sched_start) es.scheduled_start_timestamp = dts_ts_from_ns(&st, in->sched_start);
  es.parent_trace_context = (TraceContext *)s->trace;
  tagset ts = tags_from_inst(&execution_started_event__tags_entry__descriptor, in);
  es.n_tags = ts.n;
  es.tags = (ExecutionStartedEvent__TagsEntry **)ts.p;
  HistoryEvent e = HISTORY_EVENT__INIT;
  e.event_type_case = EV(EXECUTION_STARTED);
  e.execution_started = &es;
  dts_buf b = ev_pack(&e, -1, now);
  tags_free(&ts);
  touch(h, in);
  inbox_add(h, in, b);
}

static bool running_like(int st) { return st == ST(RUNNING) || st == ST(PENDING) || st == ST(SUSPENDED); }

/* ---- OrchestrationState --------------------------------------------------- */

typedef struct state_buf {
  OrchestrationState s;
  Google__Protobuf__StringValue v, i, o, cs, ex, pid;
  Google__Protobuf__Timestamp ss, ct, lu, co;
  TaskFailureDetails *fd;
  tagset tags;
} state_buf;

static void state_fill(state_buf *b, const inst *in, bool io) {
  orchestration_state__init(&b->s);
  b->s.instance_id = in->id;
  b->s.name = in->name;
  b->s.version = dts_sv(&b->v, in->version);
  b->s.orchestration_status = in->status;
  if (in->sched_start) b->s.scheduled_start_timestamp = dts_ts_from_ns(&b->ss, in->sched_start);
  b->s.created_timestamp = dts_ts_from_ns(&b->ct, in->created);
  b->s.last_updated_timestamp = dts_ts_from_ns(&b->lu, in->updated);
  if (io) {
    b->s.input = dts_sv(&b->i, in->input);
    b->s.output = dts_sv(&b->o, in->output);
    b->s.custom_status = dts_sv(&b->cs, in->custom_status);
  }
  b->fd = NULL;
  if (in->has_failure) {
    b->fd = task_failure_details__unpack(NULL, in->failure.n, in->failure.p);
    b->s.failure_details = b->fd;
  }
  b->s.execution_id = dts_sv(&b->ex, in->exec_id);
  if (in->completed) b->s.completed_timestamp = dts_ts_from_ns(&b->co, in->completed);
  b->s.parent_instance_id = dts_sv(&b->pid, in->parent_id);
  b->tags = tags_from_inst(&orchestration_state__tags_entry__descriptor, in);
  b->s.n_tags = b->tags.n;
  b->s.tags = (OrchestrationState__TagsEntry **)b->tags.p;
}

static void state_done(state_buf *b) {
  if (b->fd) task_failure_details__free_unpacked(b->fd, NULL);
  tags_free(&b->tags);
}

static dts_buf instance_response(const inst *in, bool io) {
  GetInstanceResponse r = GET_INSTANCE_RESPONSE__INIT;
  state_buf sb;
  if (in == NULL) return dts_pb_pack(&r.base);
  r.exists = true;
  state_fill(&sb, in, io);
  r.orchestration_state = &sb.s;
  dts_buf b = dts_pb_pack(&r.base);
  state_done(&sb);
  return b;
}

/* ---- waiters ------------------------------------------------------------------ */

static void waiter_free(waiter *w) {
  dts_free(w->id);
  dts_free(w);
}

static void waiter_unlink(waiter *w) {
  if (w->prev) w->prev->next = w->next;
  else w->in->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
}

static void check_waiters(dts_hub *h, inst *in) {
  (void)h;
  waiter *w = in->waiters;
  while (w != NULL) {
    waiter *next = w->next;
    bool done = w->completion ? terminal(in->status) : in->status != ST(PENDING);
    if (done) {
      waiter_unlink(w);
      dts_call_set_owner_data(w->call, NULL);
      dts_call_reply(w->call, instance_response(in, w->io));
      dts_call_unref(w->call);
      waiter_free(w);
    }
    w = next;
  }
}

/* ======================================================================== */
/* streams and dispatch                                                     */

static void rq_push(readyq *q, rlink *l) {
  if (l->queued) return;
  l->queued = true;
  l->next = NULL;
  if (q->tail) q->tail->next = l;
  else q->head = l;
  q->tail = l;
  atomic_fetch_add_explicit(&q->n, 1, memory_order_relaxed);
}

static rlink *rq_pop(readyq *q) {
  rlink *l = q->head;
  if (l == NULL) return NULL;
  q->head = l->next;
  if (q->head == NULL) q->tail = NULL;
  l->queued = false;
  atomic_fetch_sub_explicit(&q->n, 1, memory_order_relaxed);
  return l;
}

/* O(queue length): for the rare removal of one item (purge). */
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
    atomic_fetch_sub_explicit(&q->n, 1, memory_order_relaxed);
  }
  l->queued = false;
}

static void rq_clear(readyq *q) {
  while (rq_pop(q) != NULL) {
  }
}

typedef enum { TRY_SENT, TRY_DROP, TRY_SKIP, TRY_FULL } try_result;

/* Offers every queued item once to `try`, in order.  SENT and DROP take it
 * out of the queue; SKIP (no stream accepts it now) keeps it, in its place;
 * FULL (no stream has room at all) keeps it and stops. */
static void rq_drain(dts_hub *h, readyq *q, try_result (*try)(dts_hub *h, rlink *l)) {
  readyq kept = {NULL, NULL, 0};
  rlink *l;
  while ((l = rq_pop(q)) != NULL) {
    try_result r = try(h, l);
    if (r == TRY_SENT || r == TRY_DROP) continue;
    rq_push(&kept, l);
    if (r == TRY_FULL) break;
  }
  /* what was kept goes back in front, in order */
  if (kept.head != NULL) {
    kept.tail->next = q->head;
    if (q->head == NULL) q->tail = kept.tail;
    q->head = kept.head;
    atomic_fetch_add_explicit(&q->n, atomic_load(&kept.n), memory_order_relaxed);
  }
}

/* Posts a TM_WAKE for `id` (an instance id, entity id or activity key) at
 * a monotonic time: the item is looked at again then. */
static void post_wake(dts_hub *h, const char *id, uint64_t at_mono) {
  if (h->shutting_down) return;
  hub_timer_msg *m = (hub_timer_msg *)dts_msg_alloc(HUB_TIMER, sizeof(hub_timer_msg));
  m->hdr.drop = timer_msg_drop;
  m->what = TM_WAKE;
  m->key = dts_strdup(id);
  dts_timer_post(h->cfg.timers, at_mono, &h->actor, &m->hdr);
}

/* Hands what is queued to the bridge, which sends it in order, one message
 * at a time, without coming back here between messages. */
static void stream_flush(dts_hub *h, stream *s) {
  (void)h;
  if (s->ended || s->closed || s->held) return;
  dts_buf b;
  while (dts_bufq_pop(&s->q, &b)) {
    s->last_send = dts_now_ns();
    dts_call_stream_send(s->call, b);
  }
  if (s->end_after_send) {
    s->ended = true;
    dts_call_stream_end(s->call, s->end_st, s->end_msg);
  }
}

/* Flow control: a worker stream whose reader lets more than
 * max_outbox_bytes pile up on the call gets nothing more until half of
 * that has gone out (DTS_CALL_DRAINED), so a slow reader is never
 * buffered without end. */
static void stream_enqueue(dts_hub *h, stream *s, dts_buf b) {
  dts_bufq_push(&s->q, b);
  stream_flush(h, s);
  if (!s->history && !s->congested && dts_call_stream_queued(s->call) > (size_t)h->cfg.limits.max_outbox_bytes) {
    s->congested = true;
    DTS_DEBUG("hub", "[%s] worker stream congested: dispatch to it waits", h->name);
    dts_call_stream_watch(s->call, (size_t)h->cfg.limits.max_outbox_bytes / 2);
  }
}

static bool filter_versions(char **versions, size_t n, const char *v) {
  if (n == 0) return true;
  for (size_t i = 0; i < n; i++)
    if (strcmp(versions[i], v ? v : "") == 0) return true;
  return false;
}

static bool accepts_orch(const stream *s, const inst *in) {
  const WorkItemFilters *f = s->req->work_item_filters;
  if (f == NULL) return true;
  for (size_t i = 0; i < f->n_orchestrations; i++)
    if (strcmp(f->orchestrations[i]->name, in->name) == 0 &&
        filter_versions(f->orchestrations[i]->versions, f->orchestrations[i]->n_versions, in->version))
      return true;
  return false;
}

static bool accepts_act(const stream *s, const act *a) {
  const WorkItemFilters *f = s->req->work_item_filters;
  if (f == NULL) return true;
  for (size_t i = 0; i < f->n_activities; i++)
    if (strcmp(f->activities[i]->name, a->name) == 0 &&
        filter_versions(f->activities[i]->versions, f->activities[i]->n_versions, a->version))
      return true;
  return false;
}

static bool usable(const stream *s) {
  return !s->history && !s->ended && !s->closed && !s->end_after_send && !s->congested;
}

/* Picks a stream for an item, round-robin; NULL if none has room. */
typedef enum { W_ORCH, W_ACT, W_ENT } wkind;

static bool accepts_ent(const stream *s, const ent *e);

/* Picks a stream with room for a work item of `kind`, round-robin, that
 * accepts it (filters); NULL if none.  *any_room says whether any stream
 * had room at all (false: stop offering items of this kind). */
static stream *pick(dts_hub *h, wkind kind, const void *item, bool *any_room) {
  *any_room = false;
  if (h->streams == NULL) return NULL;
  stream *start = h->rr != NULL ? h->rr : h->streams;
  stream *s = start;
  do {
    bool room = usable(s) && (kind == W_ORCH ? s->n_orch < s->max_orch
                              : kind == W_ACT ? s->n_act < s->max_act
                                              : s->n_ent < s->max_ent);
    if (room) {
      *any_room = true;
      bool ok = kind == W_ORCH ? accepts_orch(s, item) : kind == W_ACT ? accepts_act(s, item) : accepts_ent(s, item);
      if (ok) {
        h->rr = s->next != NULL ? s->next : h->streams;
        return s;
      }
    }
    s = s->next != NULL ? s->next : h->streams;
  } while (s != start);
  return NULL;
}

/* A completion token: the kind of work ('o', 'a', 'e') and 128 random bits
 * as hex, so nobody completes work leased to another worker by guessing.
 * The bits come from getrandom(2) a page at a time. */
static void new_token(dts_hub *h, char kind, char out[40]) {
  if (h->rnd_used + 16 > sizeof(h->rnd)) {
    size_t got = 0;
    while (got < sizeof(h->rnd)) {
      ssize_t n = getrandom(h->rnd + got, sizeof(h->rnd) - got, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        DTS_ERROR("hub", "getrandom failed (%s): no safe completion tokens", strerror(errno));
        abort();
      }
      got += (size_t)n;
    }
    h->rnd_used = 0;
  }
  static const char hex[] = "0123456789abcdef";
  out[0] = kind;
  for (int i = 0; i < 16; i++) {
    uint8_t b = h->rnd[h->rnd_used + (size_t)i];
    out[1 + 2 * i] = hex[b >> 4];
    out[2 + 2 * i] = hex[b & 15];
  }
  out[33] = '\0';
  memset(h->rnd + h->rnd_used, 0, 16); /* used once */
  h->rnd_used += 16;
}

static bool has_work(const inst *in) { return in->returned || in->inbox.n > 0 || in->force_turn; }

static bool dispatchable(const inst *in, int64_t wall, uint64_t mono) {
  if (!has_work(in) || in->leased_to != NULL || in->pending > 0 || terminal(in->status)) return false;
  if (mono < in->not_before) return false;
  if (in->sched_start > wall && !inbox_has_terminate(in)) return false;
  return true;
}

static void arm_wake(dts_hub *h, inst *in, uint64_t at_mono) {
  if (in->wake_armed || h->shutting_down) return;
  in->wake_armed = true;
  post_wake(h, in->id, at_mono);
}

static void make_ready(dts_hub *h, inst *in) {
  if (in->rl.queued) return;
  int64_t wall = (int64_t)dts_wall_ns();
  uint64_t mono = dts_now_ns();
  if (!dispatchable(in, wall, mono)) {
    /* Not yet: wake up when the delay or the scheduled start has passed. */
    if (has_work(in) && in->leased_to == NULL && in->pending == 0 && !terminal(in->status)) {
      if (mono < in->not_before) arm_wake(h, in, in->not_before);
      else if (in->sched_start > wall) arm_wake(h, in, mono + (uint64_t)(in->sched_start - wall));
    }
    return;
  }
  rq_push(&h->rq, &in->rl);
}

static void act_ready(dts_hub *h, act *a) {
  if (a->rl.queued || a->leased_to != NULL) return;
  if (dts_now_ns() < a->not_before) {
    post_wake(h, a->key, a->not_before); /* an act key holds \x01: never an instance id */
    return;
  }
  rq_push(&h->aq, &a->rl);
}

static dts_buf orch_work_item(dts_hub *h, inst *in) {
  dts_pbw r;
  dts_pbw_init(&r);
  dts_pbw_string_field(&r, 1, in->id);
  dts_pbw_sv_field(&r, 2, in->exec_id);
  for (size_t i = 0; i < in->hist.n; i++)
    dts_pbw_bytes_field(&r, 3, in->hist.v[i].b.p, in->hist.v[i].b.n);
  for (size_t i = 0; i < in->dispatched.n; i++)
    dts_pbw_bytes_field(&r, 4, in->dispatched.v[i].b.p, in->dispatched.v[i].b.n);
  /* entityParameters is always set: .NET dereferences it (PROTOCOL.md 4.2) */
  OrchestratorEntityParameters ep = ORCHESTRATOR_ENTITY_PARAMETERS__INIT;
  Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
  d.seconds = 30;
  ep.entity_message_reorder_window = &d;
  dts_pbw_msg_field(&r, 5, &ep.base);
  if (in->trace.n > 0) dts_pbw_bytes_field(&r, 8, in->trace.p, in->trace.n);
  dts_buf req = dts_pbw_take(&r);

  dts_pbw w;
  dts_pbw_init(&w);
  dts_pbw_bytes_field(&w, 1, req.p, req.n);
  dts_pbw_string_field(&w, 10, in->token);
  dts_buf_free(&req);
  (void)h;
  return dts_pbw_take(&w);
}

/* Frees an instance's buffered partial completions. */
static void chunks_free(inst *in) {
  for (size_t i = 0; i < in->nchunks; i++) orchestrator_response__free_unpacked(in->chunks[i], NULL);
  dts_free(in->chunks);
  in->chunks = NULL;
  in->nchunks = 0;
}

/* Ends the lease of an instance's work item, leased or returned: its token
 * is no longer valid.  Its events stay where they are. */
static void orch_end_lease(dts_hub *h, inst *in) {
  if (in->leased_to != NULL) in->leased_to->n_orch--;
  in->leased_to = NULL;
  in->returned = false;
  if (in->token[0] != '\0' && dts_map_get(&h->tokens, in->token) == in) dts_map_del(&h->tokens, in->token);
  in->token[0] = '\0';
}

/* The dispatched events go back to the head of the inbox (they are still
 * in the store's inbox; only OrchestratorStarted, made at dispatch, goes),
 * and the lease ends.  A forced turn is owed again. */
static void orch_take_back(dts_hub *h, inst *in) {
  orch_end_lease(h, in);
  evvec back = {0};
  for (size_t i = 0; i < in->dispatched.n; i++) {
    if (in->dispatched.v[i].seq == UINT64_MAX) dts_buf_free(&in->dispatched.v[i].b);
    else ev_push(&back, in->dispatched.v[i].b, in->dispatched.v[i].seq);
  }
  bool was_forced = in->dispatched.n > 0 && back.n == 0;
  in->dispatched.n = 0;
  for (size_t i = 0; i < in->inbox.n; i++) ev_push(&back, in->inbox.v[i].b, in->inbox.v[i].seq);
  dts_free(in->inbox.v);
  in->inbox = back;
  if (was_forced) in->force_turn = true;
  chunks_free(in);
}

static void dispatch_orch(dts_hub *h, inst *in, stream *s) {
  if (in->returned) orch_take_back(h, in); /* leased anew: the old token ends */
  DTS_DEBUG("hub", "[%s] dispatch orchestration %s (%zu new events)", h->name, in->id, in->inbox.n + 1);
  /* newEvents = [OrchestratorStarted(now)] + the whole inbox */
  HistoryEvent e = HISTORY_EVENT__INIT;
  OrchestratorStartedEvent os = ORCHESTRATOR_STARTED_EVENT__INIT;
  e.event_type_case = EV(ORCHESTRATOR_STARTED);
  e.orchestrator_started = &os;
  ev_push(&in->dispatched, ev_pack(&e, -1, (int64_t)dts_wall_ns()), UINT64_MAX);
  in->force_turn = false;
  for (size_t i = 0; i < in->inbox.n; i++) ev_push(&in->dispatched, in->inbox.v[i].b, in->inbox.v[i].seq);
  in->inbox.n = 0;
  new_token(h, 'o', in->token);
  dts_map_put(&h->tokens, in->token, in);
  in->leased_to = s;
  s->n_orch++;
  atomic_fetch_add_explicit(&h->st_dispatched, 1, memory_order_relaxed);
  stream_enqueue(h, s, orch_work_item(h, in));
}

static void dispatch_act(dts_hub *h, act *a, stream *s) {
  DTS_DEBUG("hub", "[%s] dispatch activity %s #%d", h->name, a->inst_id, a->task_id);
  act_end_lease(h, a); /* a returned item's old token ends here */
  new_token(h, 'a', a->token);
  dts_map_put(&h->tokens, a->token, a);
  a->leased_to = s;
  s->n_act++;
  dts_pbw w;
  dts_pbw_init(&w);
  dts_pbw_bytes_field(&w, 2, a->req.p, a->req.n);
  dts_pbw_string_field(&w, 10, a->token);
  atomic_fetch_add_explicit(&h->st_dispatched, 1, memory_order_relaxed);
  stream_enqueue(h, s, dts_pbw_take(&w));
}

static try_result try_orch(dts_hub *h, rlink *l) {
  inst *in = OWNER(l, inst, rl);
  if (!dispatchable(in, (int64_t)dts_wall_ns(), dts_now_ns())) {
    make_ready(h, in); /* re-arms a wake-up if it is only early */
    return TRY_DROP;
  }
  bool room;
  stream *s = pick(h, W_ORCH, in, &room);
  if (s == NULL) return room ? TRY_SKIP : TRY_FULL;
  dispatch_orch(h, in, s);
  return TRY_SENT;
}

static try_result try_act(dts_hub *h, rlink *l) {
  act *a = OWNER(l, act, rl);
  bool room;
  stream *s = pick(h, W_ACT, a, &room);
  if (s == NULL) return room ? TRY_SKIP : TRY_FULL;
  dispatch_act(h, a, s);
  return TRY_SENT;
}

static try_result try_ent(dts_hub *h, rlink *l);

/* Hands ready work to streams with room, until either runs out. */
static void pump(dts_hub *h) {
  if (h->streams == NULL || h->shutting_down) return;
  if (!can_write(h)) { /* results could not be stored: dispatch waits */
    h->paused = true;
    return;
  }
  rq_drain(h, &h->rq, try_orch);
  rq_drain(h, &h->aq, try_act);
  rq_drain(h, &h->eq, try_ent);
}

/* Gives an orchestration work item back (Abandon): its events return to the
 * head of the inbox, and it is dispatched again after `delay_ns`. */
static void orch_unlease(dts_hub *h, inst *in, uint64_t delay_ns) {
  orch_take_back(h, in);
  in->not_before = delay_ns ? dts_now_ns() + delay_ns : 0;
  make_ready(h, in);
}

/* Its stream closed (or its completion could not be stored): the item goes
 * back to the ready queue as it is, its token still valid (inst.returned). */
static void orch_return(dts_hub *h, inst *in) {
  if (in->leased_to != NULL) in->leased_to->n_orch--;
  in->leased_to = NULL;
  in->returned = true;
  make_ready(h, in);
}

static void act_end_lease(dts_hub *h, act *a) {
  if (a->leased_to != NULL) a->leased_to->n_act--;
  a->leased_to = NULL;
  if (a->token[0] != '\0' && dts_map_get(&h->tokens, a->token) == a) dts_map_del(&h->tokens, a->token);
  a->token[0] = '\0';
}

/* Abandon: dispatched again after `delay_ns`, under a new token. */
static void act_unlease(dts_hub *h, act *a, uint64_t delay_ns) {
  act_end_lease(h, a);
  a->not_before = delay_ns ? dts_now_ns() + delay_ns : 0;
  act_ready(h, a);
}

/* Stream closed: ready again, its token valid until the next dispatch. */
static void act_return(dts_hub *h, act *a) {
  if (a->leased_to != NULL) a->leased_to->n_act--;
  a->leased_to = NULL;
  act_ready(h, a);
}

static void stream_release(dts_hub *h, stream *s) {
  /* every item leased to this stream goes back to its queue at once */
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&h->tokens, &it, &k, &v);) {
    if (k[0] == 'o') {
      inst *in = v;
      if (in->leased_to == s) orch_return(h, in);
    } else if (k[0] == 'e') {
      ent *e = v;
      if (e->leased_to == s) ent_return(h, e);
    } else {
      act *a = v;
      if (a->leased_to == s) act_return(h, a);
    }
  }
  if (s->prev) s->prev->next = s->next;
  else h->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  if (h->rr == s) h->rr = NULL;
  dts_bufq_fini(&s->q);
  if (s->req != NULL) get_work_items_request__free_unpacked(s->req, NULL);
  dts_call_set_owner_data(s->call, NULL);
  dts_call_unref(s->call);
  dts_free(s);
  atomic_fetch_sub_explicit(&h->st_streams, 1, memory_order_relaxed);
}

/* ======================================================================== */
/* orchestration turns                                                      */

static void act_free(act *a) {
  dts_free(a->key);
  dts_free(a->skey);
  dts_free(a->inst_id);
  dts_free(a->exec_id);
  dts_free(a->name);
  dts_free(a->version);
  dts_buf_free(&a->req);
  dts_free(a);
}

/* Takes an activity work item out of everything that points at it -- its
 * ready queue, its lease and token, the map (when it is the one there) --
 * and frees it; with del_store its record goes from the current batch. */
static void act_discard(dts_hub *h, act *a, bool del_store) {
  rq_unlink(&h->aq, &a->rl);
  if (a->leased_to != NULL) a->leased_to->n_act--;
  if (a->token[0] != '\0' && dts_map_get(&h->tokens, a->token) == a) dts_map_del(&h->tokens, a->token);
  if (dts_map_get(&h->acts, a->key) == a) dts_map_del(&h->acts, a->key);
  if (del_store) {
    cur(h);
    dts_batch_del(h->batch, a->skey, a->klen);
  }
  act_free(a);
}

static dts_buf failure_copy(const TaskFailureDetails *fd) {
  return fd != NULL ? dts_pb_pack(&fd->base) : (dts_buf){NULL, 0};
}

static bool terminate_inst(dts_hub *h, inst *in, const char *output, bool recurse);

/* Creates or replaces a sub-orchestration; false if the id is taken by a
 * running instance or invalid (the parent then gets a failure). */
static bool start_child(dts_hub *h, inst *parent, const OrchestratorAction *a,
                        const CreateSubOrchestrationAction *c) {
  if (dts_instance_id_problem(c->instance_id) != NULL) return false;
  inst *ch = find(h, c->instance_id);
  if (ch != NULL && !terminal(ch->status)) return false;
  if (ch == NULL) ch = inst_new(h, c->instance_id);
  else inst_clear_execution(h, ch);
  ParentInstanceInfo pi = PARENT_INSTANCE_INFO__INIT;
  OrchestrationInstance poi = ORCHESTRATION_INSTANCE__INIT;
  Google__Protobuf__StringValue n, v, e;
  pi.task_scheduled_id = a->id;
  pi.name = dts_sv(&n, parent->name);
  pi.version = dts_sv(&v, parent->version);
  poi.instance_id = parent->id;
  poi.execution_id = dts_sv(&e, parent->exec_id);
  pi.orchestration_instance = &poi;
  start_spec s = {c->name,     dts_sv_get(c->version), dts_sv_get(c->input), NULL, 0,
                  (void *const *)c->tags, c->n_tags, &pi, c->parent_trace_context};
  inst_start(h, ch, &s);
  return true;
}

static void fail_event(HistoryEvent *e, int32_t task, TaskFailureDetails *fd,
                       SubOrchestrationInstanceFailedEvent *sf) {
  sub_orchestration_instance_failed_event__init(sf);
  sf->task_scheduled_id = task;
  sf->failure_details = fd;
  e->event_type_case = EV(SUB_ORCHESTRATION_INSTANCE_FAILED);
  e->sub_orchestration_instance_failed = sf;
}

/* ---- auto-purge ---------------------------------------------------------- */

static int tq_index(int st) {
  switch (st) {
  case ST(COMPLETED): return 0;
  case ST(FAILED): return 1;
  case ST(CANCELED): return 2;
  case ST(TERMINATED): return 3;
  default: return -1;
  }
}

static void notify_parent(dts_hub *h, inst *in, int64_t now);
static void evict_later(dts_hub *h, inst *in);

/* The instance just reached a terminal state. */
static void became_terminal(dts_hub *h, inst *in, int64_t now) {
  evict_later(h, in);
  release_locks_of(h, in);
  notify_parent(h, in, now);
}

/* The instance reached a terminal state: tell its parent. */
static void notify_parent(dts_hub *h, inst *in, int64_t now) {
  if (in->parent_id == NULL) return;
  inst *p = find(h, in->parent_id);
  if (p == NULL || terminal(p->status)) return;
  if (in->parent_exec != NULL && strcmp(in->parent_exec, p->exec_id) != 0) return;
  HistoryEvent e = HISTORY_EVENT__INIT;
  if (in->status == ST(COMPLETED)) {
    SubOrchestrationInstanceCompletedEvent sc = SUB_ORCHESTRATION_INSTANCE_COMPLETED_EVENT__INIT;
    Google__Protobuf__StringValue r;
    sc.task_scheduled_id = in->parent_task;
    sc.result = dts_sv(&r, in->output);
    e.event_type_case = EV(SUB_ORCHESTRATION_INSTANCE_COMPLETED);
    e.sub_orchestration_instance_completed = &sc;
    inbox_add(h, p, ev_pack(&e, -1, now));
    return;
  }
  TaskFailureDetails *fd = in->has_failure ? task_failure_details__unpack(NULL, in->failure.n, in->failure.p) : NULL;
  TaskFailureDetails made = TASK_FAILURE_DETAILS__INIT;
  char msg[300];
  if (fd == NULL) {
    snprintf(msg, sizeof(msg), "sub-orchestration '%s' ended with status %s", in->id,
             in->status == ST(TERMINATED) ? "TERMINATED" : "FAILED");
    made.error_type = in->status == ST(TERMINATED) ? "TerminatedException" : "OrchestrationFailed";
    made.error_message = msg;
  }
  SubOrchestrationInstanceFailedEvent sf;
  fail_event(&e, in->parent_task, fd ? fd : &made, &sf);
  inbox_add(h, p, ev_pack(&e, -1, now));
  if (fd) task_failure_details__free_unpacked(fd, NULL);
}


/* ---- rewind (PROTOCOL.md 4.7) -------------------------------------------- */

/* A failed instance becomes RUNNING with [ExecutionRewound] as its only
 * news; the worker answers with a rewindOrchestration action (apply_rewind).
 * parent_exec: set when a parent's rewind rewinds this sub-orchestration. */
static void rewind_inst(dts_hub *h, inst *in, const char *reason, const char *parent_exec) {
  int64_t now = (int64_t)dts_wall_ns();
  cur(h);
  in->status = ST(RUNNING);
  set_str(&in->output, NULL);
  dts_buf_free(&in->failure);
  in->has_failure = false;
  in->completed = 0;
  in->updated = now;
  HistoryEvent e = HISTORY_EVENT__INIT;
  ExecutionRewoundEvent er = EXECUTION_REWOUND_EVENT__INIT;
  Google__Protobuf__StringValue rs, pe, id;
  er.reason = dts_sv(&rs, reason);
  if (parent_exec != NULL) {
    er.parent_execution_id = dts_sv(&pe, parent_exec);
    er.instance_id = dts_sv(&id, in->id);
  }
  e.event_type_case = EV(EXECUTION_REWOUND);
  e.execution_rewound = &er;
  touch(h, in);
  inbox_add(h, in, ev_pack(&e, -1, now));
}

static bool start_child(dts_hub *h, inst *parent, const OrchestratorAction *a,
                        const CreateSubOrchestrationAction *c);

/* The worker's rewindOrchestration: the history is replaced by the cleaned
 * one it computed (which already ends with the OrchestratorStarted and
 * ExecutionRewound just dispatched), failed sub-orchestrations are rewound
 * (or re-created if purged), and one more turn is owed with newEvents =
 * [OrchestratorStarted] only. */
static void apply_rewind(dts_hub *h, inst *in, const RewindOrchestrationAction *ra) {
  key k;
  int64_t now = (int64_t)dts_wall_ns();
  for (size_t i = 0; i < in->dispatched.n; i++) {
    if (in->dispatched.v[i].seq != UINT64_MAX) {
      key_inbox(&k, h, in->id, in->dispatched.v[i].seq);
      dts_batch_del(h->batch, k.b, k.n);
    }
    dts_buf_free(&in->dispatched.v[i].b);
  }
  in->dispatched.n = 0;
  for (size_t i = 0; i < in->hist.n; i++) {
    key_hist(&k, h, in->id, i);
    dts_batch_del(h->batch, k.b, k.n);
  }
  ev_clear(&in->hist);
  const char *reason = NULL;
  for (size_t i = 0; i < ra->n_new_history; i++) {
    const HistoryEvent *e = ra->new_history[i];
    hist_add(h, in, dts_pb_pack(&e->base));
    const char *ex = e->event_type_case == EV(EXECUTION_STARTED) && e->execution_started->orchestration_instance
                         ? dts_sv_get(e->execution_started->orchestration_instance->execution_id)
                         : NULL;
    if (ex != NULL && ex[0] != '\0') {
      /* it names the execution's keys: only a valid id is taken */
      if (dts_short_id_problem(ex) == NULL) set_str(&in->exec_id, ex);
      else DTS_WARN("hub", "[%s] %s: rewound history names an invalid execution id; kept the current one", h->name,
                    in->id);
    }
    if (e->event_type_case == EV(EXECUTION_REWOUND)) reason = dts_sv_get(e->execution_rewound->reason);
  }
  in->status = ST(RUNNING);
  in->updated = now;
  in->force_turn = true;
  touch(h, in);
  /* sub-orchestrations created and not completed are the failed ones */
  for (size_t i = 0; i < ra->n_new_history; i++) {
    const HistoryEvent *e = ra->new_history[i];
    if (e->event_type_case != EV(SUB_ORCHESTRATION_INSTANCE_CREATED)) continue;
    bool done = false;
    for (size_t j = 0; j < ra->n_new_history && !done; j++)
      done = ra->new_history[j]->event_type_case == EV(SUB_ORCHESTRATION_INSTANCE_COMPLETED) &&
             ra->new_history[j]->sub_orchestration_instance_completed->task_scheduled_id == e->event_id;
    if (done) continue;
    const SubOrchestrationInstanceCreatedEvent *sc = e->sub_orchestration_instance_created;
    inst *ch = find(h, sc->instance_id);
    if (ch == NULL) { /* purged: run it again from scratch */
      CreateSubOrchestrationAction ca = CREATE_SUB_ORCHESTRATION_ACTION__INIT;
      ca.instance_id = sc->instance_id;
      ca.name = sc->name;
      ca.version = sc->version;
      ca.input = sc->input;
      ca.parent_trace_context = sc->parent_trace_context;
      OrchestratorAction oa = ORCHESTRATOR_ACTION__INIT;
      oa.id = e->event_id;
      start_child(h, in, &oa, &ca);
    } else if (ch->status == ST(FAILED)) {
      /* its parent runs in a new execution now */
      ParentInstanceInfo *pi = ch->parent.n ? parent_instance_info__unpack(NULL, ch->parent.n, ch->parent.p) : NULL;
      if (pi != NULL && pi->orchestration_instance != NULL) {
        Google__Protobuf__StringValue ex;
        ParentInstanceInfo copy = *pi; /* shallow: only the execution id differs */
        OrchestrationInstance oi = *pi->orchestration_instance;
        oi.execution_id = dts_sv(&ex, in->exec_id);
        copy.orchestration_instance = &oi;
        inst_set_parent(ch, &copy);
      }
      if (pi) parent_instance_info__free_unpacked(pi, NULL);
      rewind_inst(h, ch, reason, in->exec_id);
    }
  }
}

/* Applies one committed completion.  `actions` is the merged action list. */
static void apply_turn(dts_hub *h, inst *in, const Google__Protobuf__StringValue *custom_status,
                       const OrchestrationTraceContext *trace, OrchestratorAction **actions,
                       size_t nactions, int32_t nprocessed) {
  int64_t now = (int64_t)dts_wall_ns();
  key k;
  cur(h);
  touch(h, in);
  for (size_t i = 0; i < nactions; i++)
    if (actions[i]->orchestrator_action_type_case == ACT(REWIND_ORCHESTRATION)) {
      apply_rewind(h, in, actions[i]->rewind_orchestration);
      return;
    }

  /* 1. the dispatched events enter history (all, or the first nprocessed) */
  size_t n = in->dispatched.n;
  if (nprocessed >= 0 && (size_t)nprocessed < n) n = (size_t)nprocessed;
  if (n == 0 && in->dispatched.n > 0) n = 1; /* OrchestratorStarted always */
  bool suspended = in->status == ST(SUSPENDED);
  evvec back = {0}; /* unprocessed events, which go back before newer ones */
  for (size_t i = 0; i < in->dispatched.n; i++) {
    ev *d = &in->dispatched.v[i];
    if (i < n) {
      HistoryEvent *e = history_event__unpack(NULL, d->b.n, d->b.p);
      if (e != NULL) {
        if (e->event_type_case == EV(EXECUTION_SUSPENDED)) suspended = true;
        if (e->event_type_case == EV(EXECUTION_RESUMED)) suspended = false;
        history_event__free_unpacked(e, NULL);
      }
      if (d->seq != UINT64_MAX) {
        key_inbox(&k, h, in->id, d->seq);
        dts_batch_del(h->batch, k.b, k.n);
      }
      hist_add(h, in, d->b);
    } else if (d->seq != UINT64_MAX) {
      ev_push(&back, d->b, d->seq);
    } else {
      dts_buf_free(&d->b);
    }
  }
  in->dispatched.n = 0;
  for (size_t i = 0; i < in->inbox.n; i++) ev_push(&back, in->inbox.v[i].b, in->inbox.v[i].seq);
  dts_free(in->inbox.v);
  in->inbox = back;

  if (in->status == ST(PENDING)) in->status = ST(RUNNING);
  if (in->status == ST(RUNNING) && suspended) in->status = ST(SUSPENDED);
  if (in->status == ST(SUSPENDED) && !suspended) in->status = ST(RUNNING);
  if (custom_status != NULL) set_str(&in->custom_status, custom_status->value);
  if (trace != NULL) {
    dts_buf_free(&in->trace);
    in->trace = dts_pb_pack(&trace->base);
  }
  in->updated = now;

  /* 2. actions, in order */
  const CompleteOrchestrationAction *done = NULL;
  for (size_t i = 0; i < nactions; i++) {
    const OrchestratorAction *a = actions[i];
    HistoryEvent e = HISTORY_EVENT__INIT;
    switch (a->orchestrator_action_type_case) {
    case ACT(SCHEDULE_TASK): {
      const ScheduleTaskAction *st = a->schedule_task;
      TaskScheduledEvent ts = TASK_SCHEDULED_EVENT__INIT;
      ts.name = st->name;
      ts.version = st->version;
      ts.input = st->input;
      ts.parent_trace_context = st->parent_trace_context;
      tagset tg = tags_as(&task_scheduled_event__tags_entry__descriptor, (void *const *)st->tags, st->n_tags);
      ts.n_tags = tg.n;
      ts.tags = (TaskScheduledEvent__TagsEntry **)tg.p;
      e.event_type_case = EV(TASK_SCHEDULED);
      e.task_scheduled = &ts;
      hist_add(h, in, ev_pack(&e, a->id, now));
      tags_free(&tg);

      ActivityRequest ar = ACTIVITY_REQUEST__INIT;
      OrchestrationInstance oi = ORCHESTRATION_INSTANCE__INIT;
      Google__Protobuf__StringValue ex;
      ar.name = st->name;
      ar.version = st->version;
      ar.input = st->input;
      oi.instance_id = in->id;
      oi.execution_id = dts_sv(&ex, in->exec_id);
      ar.orchestration_instance = &oi;
      ar.task_id = a->id;
      ar.parent_trace_context = st->parent_trace_context;
      tagset tg2 = tags_as(&activity_request__tags_entry__descriptor, (void *const *)st->tags, st->n_tags);
      ar.n_tags = tg2.n;
      ar.tags = (ActivityRequest__TagsEntry **)tg2.p;
      key_act(&k, h, in->id, in->exec_id, a->id);
      act *w = dts_calloc(1, sizeof(*w));
      w->key = work_key(in->id, in->exec_id, a->id);
      w->skey = raw_copy(&k);
      w->klen = k.n;
      w->inst_id = dts_strdup(in->id);
      w->exec_id = dts_strdup(in->exec_id);
      w->name = dts_strdup(st->name);
      w->version = xstrdup_or_null(dts_sv_get(st->version));
      w->task_id = a->id;
      w->req = dts_pb_pack(&ar.base);
      tags_free(&tg2);
      dts_batch_put(h->batch, k.b, k.n, w->req.p, w->req.n);
      w->serial = ++h->serial;
      act *old = dts_map_put(&h->acts, w->key, w);
      if (old != NULL) { /* the same task id again: the newer one stands (same store key) */
        DTS_WARN("hub", "%s: task %d scheduled twice in one execution; the later one replaces the first", in->id,
                 a->id);
        act_discard(h, old, false);
      }
      effect_act(h, w);
      break;
    }
    case ACT(CREATE_TIMER): {
      TimerCreatedEvent tc = TIMER_CREATED_EVENT__INIT;
      tc.fire_at = a->create_timer->fire_at;
      e.event_type_case = EV(TIMER_CREATED);
      e.timer_created = &tc;
      hist_add(h, in, ev_pack(&e, a->id, now));
      int64_t fire = dts_ts_to_ns(a->create_timer->fire_at);
      HistoryEvent f = HISTORY_EVENT__INIT;
      TimerFiredEvent tf = TIMER_FIRED_EVENT__INIT;
      tf.fire_at = a->create_timer->fire_at;
      tf.timer_id = a->id;
      f.event_type_case = EV(TIMER_FIRED);
      f.timer_fired = &tf;
      dtimer *tm = dts_calloc(1, sizeof(*tm));
      key_timer(&k, h, in->id, in->exec_id, a->id);
      tm->key = work_key(in->id, in->exec_id, a->id);
      tm->skey = raw_copy(&k);
      tm->klen = k.n;
      tm->inst_id = dts_strdup(in->id);
      tm->exec_id = dts_strdup(in->exec_id);
      tm->fire_at = fire;
      tm->event = ev_pack(&f, -1, fire > now ? fire : now);
      dts_batch_put(h->batch, k.b, k.n, tm->event.p, tm->event.n);
      tm->serial = ++h->serial;
      dtimer *oldt = dts_map_put(&h->timers, tm->key, tm);
      if (oldt != NULL) timer_free(oldt); /* the same timer id again: the newer one stands */
      effect_timer(h, tm);
      break;
    }
    case ACT(CREATE_SUB_ORCHESTRATION): {
      const CreateSubOrchestrationAction *c = a->create_sub_orchestration;
      SubOrchestrationInstanceCreatedEvent sc = SUB_ORCHESTRATION_INSTANCE_CREATED_EVENT__INIT;
      sc.instance_id = c->instance_id;
      sc.name = c->name;
      sc.version = c->version;
      sc.input = c->input;
      sc.parent_trace_context = c->parent_trace_context;
      tagset tg = tags_as(&sub_orchestration_instance_created_event__tags_entry__descriptor,
                          (void *const *)c->tags, c->n_tags);
      sc.n_tags = tg.n;
      sc.tags = (SubOrchestrationInstanceCreatedEvent__TagsEntry **)tg.p;
      e.event_type_case = EV(SUB_ORCHESTRATION_INSTANCE_CREATED);
      e.sub_orchestration_instance_created = &sc;
      hist_add(h, in, ev_pack(&e, a->id, now));
      tags_free(&tg);
      if (!start_child(h, in, a, c)) {
        HistoryEvent fe = HISTORY_EVENT__INIT;
        TaskFailureDetails fd = TASK_FAILURE_DETAILS__INIT;
        char msg[300];
        const char *why = dts_instance_id_problem(c->instance_id);
        snprintf(msg, sizeof(msg), "cannot create sub-orchestration '%.120s': %s", c->instance_id,
                 why ? why : "an instance with this id is still running");
        fd.error_type = why ? "InvalidArgument" : "OrchestrationAlreadyExists";
        fd.error_message = msg;
        SubOrchestrationInstanceFailedEvent sf;
        fail_event(&fe, a->id, &fd, &sf);
        /* into our own inbox: it is the next turn's news */
        uint64_t seq = in->next_inbox_seq++;
        dts_buf b = ev_pack(&fe, -1, now);
        key_inbox(&k, h, in->id, seq);
        dts_batch_put(h->batch, k.b, k.n, b.p, b.n);
        ev_push(&in->inbox, b, seq);
      }
      break;
    }
    case ACT(SEND_EVENT): {
      const SendEventAction *se = a->send_event;
      EventSentEvent es = EVENT_SENT_EVENT__INIT;
      const char *target = se->instance ? se->instance->instance_id : "";
      es.instance_id = (char *)target;
      es.name = se->name;
      es.input = se->data;
      e.event_type_case = EV(EVENT_SENT);
      e.event_sent = &es;
      hist_add(h, in, ev_pack(&e, a->id, now));
      inst *to = find(h, target);
      if (to != NULL) {
        HistoryEvent re = HISTORY_EVENT__INIT;
        EventRaisedEvent er = EVENT_RAISED_EVENT__INIT;
        er.name = se->name;
        er.input = se->data;
        re.event_type_case = EV(EVENT_RAISED);
        re.event_raised = &er;
        if (to == in) { /* to ourselves: lands in our inbox for the next turn */
          uint64_t seq = in->next_inbox_seq++;
          dts_buf b = ev_pack(&re, -1, now);
          key_inbox(&k, h, in->id, seq);
          dts_batch_put(h->batch, k.b, k.n, b.p, b.n);
          ev_push(&in->inbox, b, seq);
        } else {
          inbox_add(h, to, ev_pack(&re, -1, now));
        }
      }
      break;
    }
    case ACT(TERMINATE_ORCHESTRATION): {
      const TerminateOrchestrationAction *ta = a->terminate_orchestration;
      inst *to = find(h, ta->instance_id);
      if (to != NULL && to != in) terminate_inst(h, to, dts_sv_get(ta->reason), ta->recurse);
      break;
    }
    case ACT(COMPLETE_ORCHESTRATION):
      done = a->complete_orchestration;
      break;
    case ACT(SEND_ENTITY_MESSAGE): {
      /* Recorded in history (replay matches it by the action id) and
       * routed to the entity. */
      const SendEntityMessageAction *sm = a->send_entity_message;
      switch (sm->entity_message_type_case) {
      case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_SIGNALED:
        e.event_type_case = EV(ENTITY_OPERATION_SIGNALED);
        e.entity_operation_signaled = sm->entity_operation_signaled;
        break;
      case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_CALLED:
        e.event_type_case = EV(ENTITY_OPERATION_CALLED);
        e.entity_operation_called = sm->entity_operation_called;
        break;
      case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_LOCK_REQUESTED:
        e.event_type_case = EV(ENTITY_LOCK_REQUESTED);
        e.entity_lock_requested = sm->entity_lock_requested;
        break;
      case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_UNLOCK_SENT:
        e.event_type_case = EV(ENTITY_UNLOCK_SENT);
        e.entity_unlock_sent = sm->entity_unlock_sent;
        break;
      default:
        break;
      }
      if (e.event_type_case != HISTORY_EVENT__EVENT_TYPE__NOT_SET) hist_add(h, in, ev_pack(&e, a->id, now));
      route_from_orchestration(h, in, sm);
      break;
    }
    default:
      DTS_WARN("hub", "%s: action %d of kind %d ignored", in->id, a->id,
               (int)a->orchestrator_action_type_case);
      break;
    }
  }

  /* 3. the turn's end marker, then the completion */
  {
    HistoryEvent e = HISTORY_EVENT__INIT;
    OrchestratorCompletedEvent oc = ORCHESTRATOR_COMPLETED_EVENT__INIT;
    e.event_type_case = EV(ORCHESTRATOR_COMPLETED);
    e.orchestrator_completed = &oc;
    hist_add(h, in, ev_pack(&e, -1, now));
  }
  if (done != NULL && done->orchestration_status == ST(CONTINUED_AS_NEW)) {
    /* restart in place: new execution, carry-over events first, then what
     * arrived during the turn */
    char *input = xstrdup_or_null(dts_sv_get(done->result));
    char *version = xstrdup_or_null(done->new_version ? done->new_version->value : in->version);
    char *name = dts_strdup(in->name);
    int64_t created = in->created;
    ParentInstanceInfo *pi = in->parent.n ? parent_instance_info__unpack(NULL, in->parent.n, in->parent.p) : NULL;
    evvec arrived = in->inbox;
    memset(&in->inbox, 0, sizeof(in->inbox));
    for (size_t i = 0; i < arrived.n; i++) { /* re-keyed below */
      key_inbox(&k, h, in->id, arrived.v[i].seq);
      dts_batch_del(h->batch, k.b, k.n);
    }
    tagset keep = tags_from_inst(&execution_started_event__tags_entry__descriptor, in);
    inst_clear_execution(h, in);
    start_spec s = {name, version, input, NULL, 0, (void *const *)keep.p, keep.n, pi, NULL};
    /* inst_set_tags inside inst_start copies from `keep`, which points at
     * the strings it is about to free: copy them first */
    char **kk = keep.n ? dts_calloc(keep.n, sizeof(char *)) : NULL;
    char **vv = keep.n ? dts_calloc(keep.n, sizeof(char *)) : NULL;
    for (size_t i = 0; i < keep.n; i++) {
      kk[i] = dts_strdup(keep.e[i].key);
      vv[i] = dts_strdup(keep.e[i].value);
      keep.e[i].key = kk[i];
      keep.e[i].value = vv[i];
    }
    inst_start(h, in, &s);
    for (size_t i = 0; i < keep.n; i++) {
      dts_free(kk[i]);
      dts_free(vv[i]);
    }
    dts_free(kk);
    dts_free(vv);
    tags_free(&keep);
    in->status = ST(RUNNING); /* never report CONTINUED_AS_NEW */
    in->created = created;
    for (size_t i = 0; i < done->n_carryover_events; i++)
      inbox_add(h, in, dts_pb_pack(&done->carryover_events[i]->base));
    for (size_t i = 0; i < arrived.n; i++) inbox_add(h, in, arrived.v[i].b);
    dts_free(arrived.v);
    dts_free(input);
    dts_free(version);
    dts_free(name);
    if (pi) parent_instance_info__free_unpacked(pi, NULL);
  } else if (done != NULL) {
    int st = done->orchestration_status;
    if (!terminal(st)) st = ST(FAILED);
    in->status = st;
    set_str(&in->output, dts_sv_get(done->result));
    dts_buf_free(&in->failure);
    in->failure = failure_copy(done->failure_details);
    in->has_failure = done->failure_details != NULL;
    inst_merge_tags(in, (void *const *)done->tags, done->n_tags);
    in->completed = now;
    HistoryEvent e = HISTORY_EVENT__INIT;
    ExecutionCompletedEvent ec = EXECUTION_COMPLETED_EVENT__INIT;
    ec.orchestration_status = st;
    ec.result = done->result;
    ec.failure_details = done->failure_details;
    e.event_type_case = EV(EXECUTION_COMPLETED);
    e.execution_completed = &ec;
    hist_add(h, in, ev_pack(&e, -1, now));
    /* events that arrived during the turn are dropped with the instance */
    for (size_t i = 0; i < in->inbox.n; i++) {
      key_inbox(&k, h, in->id, in->inbox.v[i].seq);
      dts_batch_del(h->batch, k.b, k.n);
    }
    ev_clear(&in->inbox);
    became_terminal(h, in, now);
    touch(h, in); /* waiters are answered when this commits */
  }
}

/* ---- sub-orchestration trees -------------------------------------------- */

typedef struct tree {
  inst **v;
  size_t n, cap;
  dts_map seen; /* ids already in v */
} tree;

static void tree_add(tree *t, inst *in) {
  dts_map_put(&t->seen, in->id, in);
  VEC_PUSH(t->v, t->n, t->cap, in);
}

static void tree_free(tree *t) {
  dts_free(t->v);
  dts_map_fini(&t->seen);
}

/* The instances of root's tree, root first, each once however the ids
 * loop.  For terminate (`finished` false): the unfinished ones, reached
 * through unfinished parents, whose record names that parent.  For purge:
 * the finished ones, reached through finished parents.  Iterative: no tree
 * depth can exhaust the stack.  Instances not in memory are read back;
 * false when such a read fails (rd_fail says which).  The caller calls
 * tree_free either way. */
static bool tree_gather(dts_hub *h, inst *root, bool finished, tree *t) {
  memset(t, 0, sizeof(*t));
  dts_map_init(&t->seen);
  if (terminal(root->status) != finished) return true;
  tree_add(t, root);
  for (size_t i = 0; i < t->n; i++) {
    inst *node = t->v[i];
    for (size_t j = 0; j < node->hist.n; j++) {
      HistoryEvent *he = history_event__unpack(NULL, node->hist.v[j].b.n, node->hist.v[j].b.p);
      if (he == NULL) continue;
      if (he->event_type_case == EV(SUB_ORCHESTRATION_INSTANCE_CREATED)) {
        const char *cid = he->sub_orchestration_instance_created->instance_id;
        inst *ch = dts_map_get(&t->seen, cid) != NULL ? NULL : find(h, cid);
        bool take = ch != NULL && terminal(ch->status) == finished &&
                    (finished || (ch->parent_id != NULL && strcmp(ch->parent_id, node->id) == 0));
        if (take) tree_add(t, ch);
      }
      history_event__free_unpacked(he, NULL);
      if (h->rd_code != DTS_OK) return false;
    }
  }
  return true;
}

/* ExecutionTerminated into one instance's inbox. */
static void terminate_one(dts_hub *h, inst *in, const char *output, bool recurse) {
  if (terminal(in->status)) return;
  int64_t now = (int64_t)dts_wall_ns();
  HistoryEvent e = HISTORY_EVENT__INIT;
  ExecutionTerminatedEvent et = EXECUTION_TERMINATED_EVENT__INIT;
  Google__Protobuf__StringValue o;
  et.input = dts_sv(&o, output);
  et.recurse = recurse;
  e.event_type_case = EV(EXECUTION_TERMINATED);
  e.execution_terminated = &et;
  inbox_add(h, in, ev_pack(&e, -1, now));
}

/* TerminateInstance and the terminate action; with recurse, every running
 * sub-orchestration too.  False, with nothing changed, when a read fails. */
static bool terminate_inst(dts_hub *h, inst *in, const char *output, bool recurse) {
  if (!recurse) {
    terminate_one(h, in, output, false);
    return true;
  }
  tree t;
  bool ok = tree_gather(h, in, false, &t);
  for (size_t i = 0; ok && i < t.n; i++) terminate_one(h, t.v[i], output, true);
  tree_free(&t);
  return ok;
}

/* ======================================================================== */
/* RPC handlers                                                             */

static bool payload_ok(dts_hub *h, dts_call *c, const char *what, const char *s) {
  if (s == NULL || strlen(s) <= h->cfg.max_payload) return true;
  fail(h, c, DTS_ST_INVALID_ARGUMENT,
       "%s is %zu bytes, over the payload limit of %zu bytes (--max-payload / DTSD_MAX_PAYLOAD)", what,
       strlen(s), h->cfg.max_payload);
  return false;
}

/* ---- finished instances live on disk ----------------------------------- */
/*
 * Memory holds every instance that is not finished, and finished ones only
 * while something uses them: once an instance is terminal, its last change
 * committed and nothing points at it, evict_idle drops it; find() reads it
 * back from the store when it is asked for.  The store is current for it
 * (nothing pending), so the copy read back equals the one dropped.
 */

static void evict_later(dts_hub *h, inst *in) {
  if (in->evict_listed) return;
  in->evict_listed = true;
  VEC_PUSH(h->evict, h->nevict, h->capevict, in);
}

static void evict_forget(dts_hub *h, inst *in) {
  if (!in->evict_listed) return;
  for (size_t i = 0; i < h->nevict; i++)
    if (h->evict[i] == in) {
      h->evict[i] = h->evict[--h->nevict];
      break;
    }
  in->evict_listed = false;
}

/* Nothing points at it and nothing about it is in flight: it may leave
 * memory (its record in the store is current). */
static bool unused(const inst *in) {
  return !in->purged && in->pending == 0 && in->waiters == NULL && in->leased_to == NULL && !in->returned &&
         in->token[0] == '\0' && !in->rl.queued && in->nchunks == 0 && !in->wake_armed && !in->dirty &&
         in->touched_by == NULL;
}

static bool idle_finished(const inst *in) { return terminal(in->status) && unused(in); }

/* Unfinished, with nothing to do and nothing pointing at it, for the
 * configured time: it can leave memory (find() reads it back on its next
 * event, timer, completion or request).  One that may hold entity locks
 * stays: that flag lives only in memory. */
static bool idle_running(const dts_hub *h, const inst *in, uint64_t now) {
  return !terminal(in->status) && unused(in) && in->inbox.n == 0 && in->dispatched.n == 0 && !in->force_turn &&
         !in->may_hold_locks && in->not_before <= now && now - in->last_active >= h->cfg.passivate_after_ns;
}

#define PASSIVATE_BUDGET 20000 /* instances dropped per purger tick at most */

/* The purger's tick: drops idle unfinished instances (passivation). */
static void passivate_idle(dts_hub *h) {
  if (h->cfg.passivate_after_ns == 0) return;
  uint64_t now = dts_now_ns();
  const char *k;
  void *v;
  size_t n = 0, cap = 0;
  inst **idle = NULL;
  for (size_t it = 0; dts_map_next(&h->insts, &it, &k, &v) && n < PASSIVATE_BUDGET;)
    if (idle_running(h, v, now)) VEC_PUSH(idle, n, cap, (inst *)v);
  for (size_t i = 0; i < n; i++) inst_drop(h, idle[i]);
  dts_free(idle);
  if (n > 0) DTS_DEBUG("hub", "[%s] %zu idle instances left memory", h->name, n);
}

/* End of a turn: drop finished instances nothing uses any more. */
static void evict_idle(dts_hub *h) {
  for (size_t i = 0; i < h->nevict;) {
    inst *in = h->evict[i];
    if (!terminal(in->status) || in->purged) { /* running again, or purged (freed via h->dead) */
      in->evict_listed = false;
      h->evict[i] = h->evict[--h->nevict];
    } else if (idle_finished(in)) {
      h->evict[i] = h->evict[--h->nevict];
      inst_drop(h, in);
    } else {
      i++;
    }
  }
}

/* Deletion of `id` is in the current ticket: until it commits, find() must
 * not read the old record back. */
static void gone_add(dts_hub *h, const char *id) {
  ticket *t = cur(h);
  gone *g = dts_map_get(&h->gone, id);
  if (g == NULL) {
    g = dts_calloc(1, sizeof(*g));
    g->id = dts_strdup(id);
    dts_map_put(&h->gone, g->id, g);
  }
  g->n++;
  VEC_PUSH(t->gone, t->ngone, t->capgone, g);
}

static void gone_committed(dts_hub *h, ticket *t) {
  for (size_t i = 0; i < t->ngone; i++) {
    gone *g = t->gone[i];
    if (--g->n > 0) continue;
    dts_map_del(&h->gone, g->id);
    dts_free(g->id);
    dts_free(g);
  }
  t->ngone = 0;
  if (t->wipe) h->wipes_pending--;
}

static bool load_event(void *c, const char *k, size_t klen, const char *v, size_t vlen);

/* An instance's history and inbox, from the store.  `counted`: read as many
 * events as its record counts (a scan that stops at the last one never
 * walks on into other instances' deleted keys); else, or for a record
 * without counts, to the end of the prefix (start-up, unfinished ones). */
static dts_err load_events(dts_hub *h, inst *in, bool counted) {
  dts_err e = DTS_OK;
  const struct {
    char type;
    long n;
  } parts[2] = {{'H', counted ? in->rec_hist : -1}, {'N', counted ? in->rec_inbox : -1}};
  for (int i = 0; i < 2 && e == DTS_OK; i++) {
    if (parts[i].n == 0) continue;
    key k;
    key_id(&k, h, parts[i].type, in->id);
    k_sep(&k);
    loadctx lc = {.h = h, .left = parts[i].n, .in = in, .plen = k.n};
    e = dts_store_scan(h->cfg.store, k.b, k.n, load_event, &lc);
    if (e == DTS_OK) e = lc.err;
    /* a record that counts more events than there are is damaged too */
    if (e == DTS_OK && lc.left > 0) e = DTS_ECORRUPT;
  }
  return e;
}

/* The stored record of an instance that is not in memory, decoded (not
 * added to the map), or NULL: none, its deletion is not committed yet, or
 * it cannot be read (then rd_fail says why). */
static inst *record_get(dts_hub *h, const char *id) {
  if (id == NULL || dts_instance_id_problem(id) != NULL) return NULL; /* no such id can be stored */
  if (h->wipes_pending > 0 || (dts_map_len(&h->gone) > 0 && dts_map_get(&h->gone, id) != NULL)) return NULL;
  key k;
  key_inst(&k, h, id);
  char *v, msg[300];
  size_t vlen;
  dts_err e = dts_store_read(h->cfg.store, k.b, k.n, &v, &vlen, msg, sizeof(msg));
  if (e == DTS_ENOTFOUND) return NULL;
  if (e != DTS_OK) {
    rd_fail(h, e, "cannot read orchestration instance '%s' from the store: %s", id, msg);
    return NULL;
  }
  inst *in = inst_decode(h, v, vlen);
  dts_free(v);
  if (in != NULL && strcmp(in->id, id) != 0) { /* a record under another id's key */
    inst_free(in);
    in = NULL;
  }
  if (in == NULL) rd_fail(h, DTS_ECORRUPT, "the stored record of orchestration instance '%s' is damaged", id);
  return in;
}

/* The instance with this id: in memory, or read back from the store, or
 * NULL: none, or it cannot be read (rd_fail says why; never "absent"). */
static inst *find(dts_hub *h, const char *id) {
  inst *in = dts_map_get(&h->insts, id);
  if (in != NULL) return in;
  if ((in = record_get(h, id)) == NULL) return NULL;
  /* it left memory idle with everything committed, and nothing reached it
   * since (that would have read it back first): the counts are exact */
  dts_err e = load_events(h, in, true);
  if (e != DTS_OK) { /* half a history is never used, or written over */
    rd_fail(h, e, "cannot read the history of orchestration instance '%s' from the store", id);
    inst_free(in);
    return NULL;
  }
  inst_adopt(h, in);
  in->last_active = dts_now_ns();
  if (terminal(in->status)) evict_later(h, in);
  return in;
}

/* find() for a caller that has changed nothing since it began and simply
 * tries again later when the read fails: the failure is logged and not
 * kept for an answer.  *failed says whether it happened. */
static inst *find_quiet(dts_hub *h, const char *id, bool *failed) {
  dts_err saved = h->rd_code;
  inst *in = find(h, id);
  *failed = saved == DTS_OK && h->rd_code != DTS_OK;
  if (*failed) h->rd_code = DTS_OK;
  return in;
}

static inst *find_or_fail(dts_hub *h, dts_call *c, const char *id) {
  inst *in = find(h, id);
  if (in == NULL && rd_answer(h, c)) return NULL;
  if (in == NULL) fail(h, c, DTS_ST_NOT_FOUND, "no orchestration instance '%.120s' in task hub '%s'", id, h->name);
  return in;
}

static void on_start(dts_hub *h, dts_call *c, CreateInstanceRequest *r) {
  char gen[37];
  const char *id = r->instance_id;
  if (id[0] == '\0') {
    dts_uuid(gen);
    id = gen;
  }
  const char *why = dts_instance_id_problem(id);
  if (why != NULL) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "invalid instance id '%.120s': %s", id, why);
    return;
  }
  if (r->name[0] == '\0') {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "orchestration name must not be empty");
    return;
  }
  if (!payload_ok(h, c, "input", dts_sv_get(r->input))) return;
  const char *exec = dts_sv_get(r->execution_id);
  const char *ewhy = exec != NULL && exec[0] != '\0' ? dts_short_id_problem(exec) : NULL;
  if (ewhy != NULL) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "execution id %s", ewhy);
    return;
  }
  inst *in = find(h, id);
  if (in == NULL && rd_answer(h, c)) return; /* never created over a record that cannot be read */
  if (in != NULL) {
    const OrchestrationIdReusePolicy *p = r->orchestration_id_reuse_policy;
    bool replace;
    if (p != NULL && p->n_replaceable_status > 0) {
      bool running_ok = false, terminated_ok = false, here = false;
      for (size_t i = 0; i < p->n_replaceable_status; i++) {
        int s = p->replaceable_status[i];
        if (running_like(s)) running_ok = true;
        if (s == ST(TERMINATED)) terminated_ok = true;
        if (s == in->status) here = true;
      }
      if (running_ok && !terminated_ok) {
        fail(h, c, DTS_ST_INVALID_ARGUMENT,
             "invalid reusable statuses: cannot exclude TERMINATED while also allowing reuse of running instances");
        return;
      }
      replace = here;
    } else {
      replace = terminal(in->status);
    }
    if (!replace) {
      fail(h, c, DTS_ST_ALREADY_EXISTS, "an orchestration instance '%.120s' already exists with status %d", id,
           in->status);
      return;
    }
    /* replacing a running one terminates it: its work is now stale, and
     * locks its old execution held are released */
    cur(h);
    if (!terminal(in->status)) release_locks_of(h, in);
    inst_clear_execution(h, in);
  } else {
    cur(h);
    in = inst_new(h, id);
  }
  start_spec s = {r->name, dts_sv_get(r->version), dts_sv_get(r->input), exec,
                  dts_ts_to_ns(r->scheduled_start_timestamp), (void *const *)r->tags, r->n_tags, NULL,
                  r->parent_trace_context};
  inst_start(h, in, &s);
  CreateInstanceResponse resp = CREATE_INSTANCE_RESPONSE__INIT;
  resp.instance_id = in->id;
  answer_msg(h, c, &resp.base);
}

static void on_get(dts_hub *h, dts_call *c, GetInstanceRequest *r) {
  inst *in = find(h, r->instance_id);
  if (in == NULL && rd_answer(h, c)) return;
  answer(h, c, instance_response(in, r->get_inputs_and_outputs));
}

static void on_wait(dts_hub *h, dts_call *c, GetInstanceRequest *r, bool completion) {
  inst *in = find(h, r->instance_id);
  if (in == NULL && rd_answer(h, c)) return;
  if (in == NULL || (completion ? terminal(in->status) : in->status != ST(PENDING)) || h->shutting_down) {
    if (h->shutting_down && in != NULL) fail(h, c, DTS_ST_UNAVAILABLE, "dtsd is shutting down");
    else answer(h, c, instance_response(in, r->get_inputs_and_outputs));
    return;
  }
  waiter *w = dts_calloc(1, sizeof(*w));
  dts_call_ref(c);
  w->call = c;
  w->in = in;
  w->id = dts_strdup(in->id);
  w->completion = completion;
  w->io = r->get_inputs_and_outputs;
  w->next = in->waiters;
  if (in->waiters) in->waiters->prev = w;
  in->waiters = w;
  dts_call_set_owner_data(c, w);
}

static void on_raise(dts_hub *h, dts_call *c, RaiseEventRequest *r) {
  if (!payload_ok(h, c, "event data", dts_sv_get(r->input))) return;
  inst *in = find_or_fail(h, c, r->instance_id);
  if (in == NULL) return;
  HistoryEvent e = HISTORY_EVENT__INIT;
  EventRaisedEvent er = EVENT_RAISED_EVENT__INIT;
  er.name = r->name;
  er.input = r->input;
  e.event_type_case = EV(EVENT_RAISED);
  e.event_raised = &er;
  cur(h);
  inbox_add(h, in, ev_pack(&e, -1, (int64_t)dts_wall_ns()));
  RaiseEventResponse resp = RAISE_EVENT_RESPONSE__INIT;
  answer_msg(h, c, &resp.base);
}

static void on_terminate(dts_hub *h, dts_call *c, TerminateRequest *r) {
  if (!payload_ok(h, c, "output", dts_sv_get(r->output))) return;
  inst *in = find_or_fail(h, c, r->instance_id);
  if (in == NULL) return;
  cur(h);
  if (!terminate_inst(h, in, dts_sv_get(r->output), r->recursive)) { /* nothing changed */
    rd_answer(h, c);
    return;
  }
  TerminateResponse resp = TERMINATE_RESPONSE__INIT;
  answer_msg(h, c, &resp.base);
}

static void on_suspend_resume(dts_hub *h, dts_call *c, const char *id, const char *reason, bool suspend) {
  inst *in = find_or_fail(h, c, id);
  if (in == NULL) return;
  bool noop = terminal(in->status) || (suspend && in->status == ST(SUSPENDED)) ||
              (!suspend && in->status != ST(SUSPENDED) && in->status != ST(PENDING) && in->status != ST(RUNNING));
  if (!noop) {
    HistoryEvent e = HISTORY_EVENT__INIT;
    Google__Protobuf__StringValue rs;
    ExecutionSuspendedEvent es = EXECUTION_SUSPENDED_EVENT__INIT;
    ExecutionResumedEvent er = EXECUTION_RESUMED_EVENT__INIT;
    if (suspend) {
      es.input = dts_sv(&rs, reason);
      e.event_type_case = EV(EXECUTION_SUSPENDED);
      e.execution_suspended = &es;
    } else {
      er.input = dts_sv(&rs, reason);
      e.event_type_case = EV(EXECUTION_RESUMED);
      e.execution_resumed = &er;
    }
    cur(h);
    inbox_add(h, in, ev_pack(&e, -1, (int64_t)dts_wall_ns()));
  }
  if (suspend) {
    SuspendResponse resp = SUSPEND_RESPONSE__INIT;
    answer_msg(h, c, &resp.base);
  } else {
    ResumeResponse resp = RESUME_RESPONSE__INIT;
    answer_msg(h, c, &resp.base);
  }
}

/* Stale completions are a worker's doing, and a worker can send many: at
 * most 10 lines a minute per hub, then one saying how many were held back. */
static void log_stale(dts_hub *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_stale(dts_hub *h, const char *fmt, ...) {
  long held;
  if (!dts_ratelimit_allow(&h->stale_log, 10, 60000000000ULL, &held)) return;
  char line[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (held > 0) DTS_INFO("hub", "[%s] %s (%ld more such lines held back)", h->name, line, held);
  else DTS_INFO("hub", "[%s] %s", h->name, line);
}

static void complete_ok(dts_hub *h, dts_call *c) {
  CompleteTaskResponse resp = COMPLETE_TASK_RESPONSE__INIT;
  answer_msg(h, c, &resp.base);
}

/* An entity message action's ids, which become store keys (entity ids,
 * request ids of scheduled signals) or must match later (call request
 * ids): NULL when they are valid, else why not. */
static const char *entity_action_problem(const SendEntityMessageAction *sm, char *buf, size_t len) {
  const char *target = NULL, *rid = NULL, *why = NULL;
  bool need_rid = false;
  switch (sm->entity_message_type_case) {
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_SIGNALED:
    target = dts_sv_get(sm->entity_operation_signaled->target_instance_id);
    rid = sm->entity_operation_signaled->request_id;
    break;
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_CALLED:
    target = dts_sv_get(sm->entity_operation_called->target_instance_id);
    rid = sm->entity_operation_called->request_id;
    need_rid = true;
    break;
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_LOCK_REQUESTED: {
    const EntityLockRequestedEvent *l = sm->entity_lock_requested;
    if (l->n_lock_set == 0 || l->n_lock_set > DTS_MAX_LOCK_SET) {
      snprintf(buf, len, "a lock request names %zu entities (1 to %d)", l->n_lock_set, DTS_MAX_LOCK_SET);
      return buf;
    }
    for (size_t i = 0; i < l->n_lock_set; i++)
      if ((why = dts_entity_id_problem(l->lock_set[i])) != NULL) {
        snprintf(buf, len, "lock set entity '%.120s': %s", l->lock_set[i], why);
        return buf;
      }
    return NULL;
  }
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_UNLOCK_SENT:
    target = dts_sv_get(sm->entity_unlock_sent->target_instance_id);
    break;
  default:
    return NULL;
  }
  if (target == NULL || (why = dts_entity_id_problem(target)) != NULL) {
    snprintf(buf, len, "entity message target '%.120s': %s", target ? target : "", why ? why : "missing");
    return buf;
  }
  if ((need_rid || (rid != NULL && rid[0] != '\0')) && (why = dts_short_id_problem(rid ? rid : "")) != NULL) {
    snprintf(buf, len, "entity message request id %s", why);
    return buf;
  }
  return NULL;
}

/* Checks what a completion would store before anything of it is applied.
 * NULL when it is fine; else the failure's error type, with the sentence
 * in msg. */
static const char *turn_problem(dts_hub *h, const OrchestratorResponse *r, char *msg, size_t len) {
  const char *big = NULL;
  if (r->custom_status && strlen(r->custom_status->value) > h->cfg.max_payload) big = "custom status";
  for (size_t i = 0; i < r->n_actions && big == NULL; i++) {
    const OrchestratorAction *a = r->actions[i];
    const char *p = NULL;
    switch (a->orchestrator_action_type_case) {
    case ACT(SCHEDULE_TASK): p = dts_sv_get(a->schedule_task->input); break;
    case ACT(CREATE_SUB_ORCHESTRATION): p = dts_sv_get(a->create_sub_orchestration->input); break;
    case ACT(SEND_EVENT): p = dts_sv_get(a->send_event->data); break;
    case ACT(COMPLETE_ORCHESTRATION): p = dts_sv_get(a->complete_orchestration->result); break;
    case ACT(SEND_ENTITY_MESSAGE): {
      char why[300];
      const char *bad = entity_action_problem(a->send_entity_message, why, sizeof(why));
      if (bad != NULL) {
        snprintf(msg, len, "action %d: %s", a->id, bad);
        return "InvalidEntityMessage";
      }
      break;
    }
    default: break;
    }
    if (p != NULL && strlen(p) > h->cfg.max_payload) big = "an action's payload";
  }
  if (big == NULL) return NULL;
  snprintf(msg, len, "%s is over the payload limit of %zu bytes (--max-payload / DTSD_MAX_PAYLOAD)", big,
           h->cfg.max_payload);
  return "PayloadTooLarge";
}

/* A rewind was dispatched and not answered yet: the work item's news hold
 * the ExecutionRewound event. */
static bool rewind_pending(const inst *in) {
  for (size_t i = 0; i < in->dispatched.n; i++) {
    HistoryEvent *e = history_event__unpack(NULL, in->dispatched.v[i].b.n, in->dispatched.v[i].b.p);
    bool rw = e != NULL && e->event_type_case == EV(EXECUTION_REWOUND);
    if (e) history_event__free_unpacked(e, NULL);
    if (rw) return true;
  }
  return false;
}

/* Reads back every instance a turn will touch -- the parent it reports to,
 * sub-orchestration ids, event and terminate targets (with the trees of
 * recursive terminations), rewound children -- before anything of it is
 * applied.  False when a read failed (rd_fail says which). */
static bool turn_prefetch(dts_hub *h, inst *in, OrchestratorAction **acts, size_t n) {
  if (in->parent_id != NULL) find(h, in->parent_id);
  for (size_t i = 0; i < n && h->rd_code == DTS_OK; i++) {
    const OrchestratorAction *a = acts[i];
    switch (a->orchestrator_action_type_case) {
    case ACT(CREATE_SUB_ORCHESTRATION): find(h, a->create_sub_orchestration->instance_id); break;
    case ACT(SEND_EVENT):
      if (a->send_event->instance != NULL) find(h, a->send_event->instance->instance_id);
      break;
    case ACT(TERMINATE_ORCHESTRATION): {
      inst *to = find(h, a->terminate_orchestration->instance_id);
      if (to != NULL && a->terminate_orchestration->recurse) {
        tree t;
        tree_gather(h, to, false, &t);
        tree_free(&t);
      }
      break;
    }
    case ACT(REWIND_ORCHESTRATION): {
      const RewindOrchestrationAction *ra = a->rewind_orchestration;
      for (size_t j = 0; j < ra->n_new_history; j++)
        if (ra->new_history[j]->event_type_case == EV(SUB_ORCHESTRATION_INSTANCE_CREATED))
          find(h, ra->new_history[j]->sub_orchestration_instance_created->instance_id);
      break;
    }
    default: break;
    }
  }
  return h->rd_code == DTS_OK;
}

/* Returns true when `r` was kept (buffered as a chunk). */
static bool on_complete_orch(dts_hub *h, dts_call *c, OrchestratorResponse *r) {
  inst *in = NULL;
  if (r->completion_token[0] != '\0') {
    void *v = dts_map_get(&h->tokens, r->completion_token);
    if (v != NULL && r->completion_token[0] == 'o') in = v;
  } else { /* old workers send no token: match the instance's lease */
    inst *x = dts_map_get(&h->insts, r->instance_id);
    if (x != NULL && x->leased_to != NULL) in = x;
  }
  if (in != NULL && in->returned) { /* back in the queue, not leased again: still its item */
    rq_unlink(&h->rq, &in->rl);
    in->returned = false;
  }
  if (in == NULL || (r->instance_id[0] != '\0' && strcmp(r->instance_id, in->id) != 0)) {
    log_stale(h, "stale orchestrator completion for '%.120s' (token '%.40s'): ignored", r->instance_id,
              r->completion_token);
    atomic_fetch_add_explicit(&h->st_stale, 1, memory_order_relaxed);
    complete_ok(h, c);
    return false;
  }
  /* what the turn would store is checked first: a payload over the limit,
   * an action naming an invalid entity or request id, a rewind nobody asked
   * for, too many chunks fail the orchestration (a retry would only produce
   * the same again) */
  char msg[400];
  dts_status est = DTS_ST_INVALID_ARGUMENT;
  const char *etype = turn_problem(h, r, msg, sizeof(msg));
  for (size_t i = 0; etype == NULL && i < r->n_actions; i++)
    if (r->actions[i]->orchestrator_action_type_case == ACT(REWIND_ORCHESTRATION) && !rewind_pending(in)) {
      snprintf(msg, sizeof(msg), "action %d: a rewindOrchestration action answers a rewind, and none is pending",
               r->actions[i]->id);
      etype = "InvalidAction";
    }
  if (etype == NULL && r->is_partial) {
    size_t bytes = protobuf_c_message_get_packed_size(&r->base);
    for (size_t i = 0; i < in->nchunks; i++) bytes += protobuf_c_message_get_packed_size(&in->chunks[i]->base);
    if (in->nchunks + 1 > (size_t)h->cfg.limits.max_chunks || bytes > (size_t)h->cfg.limits.max_chunk_bytes) {
      snprintf(msg, sizeof(msg),
               "a partial completion beyond %d chunks or %ld bytes in one turn (--max-chunks, --max-chunk-bytes)",
               h->cfg.limits.max_chunks, h->cfg.limits.max_chunk_bytes);
      etype = "ResponseTooLarge";
      est = DTS_ST_RESOURCE_EXHAUSTED;
    }
  }
  if (etype != NULL && !turn_prefetch(h, in, NULL, 0)) {
    rd_answer(h, c);
    orch_return(h, in);
    return false;
  }
  if (etype != NULL) {
    fail(h, c, est, "%s", msg);
    TaskFailureDetails fd = TASK_FAILURE_DETAILS__INIT;
    fd.error_type = (char *)etype;
    fd.error_message = msg;
    CompleteOrchestrationAction ca = COMPLETE_ORCHESTRATION_ACTION__INIT;
    ca.orchestration_status = ST(FAILED);
    ca.failure_details = &fd;
    OrchestratorAction oa = ORCHESTRATOR_ACTION__INIT;
    oa.id = -1;
    oa.orchestrator_action_type_case = ACT(COMPLETE_ORCHESTRATION);
    oa.complete_orchestration = &ca;
    OrchestratorAction *one = &oa;
    orch_end_lease(h, in);
    chunks_free(in);
    apply_turn(h, in, NULL, NULL, &one, 1, -1);
    return false;
  }
  if (r->is_partial) { /* deprecated chunking: buffer until the last chunk */
    in->chunks = dts_realloc(in->chunks, (in->nchunks + 1) * sizeof(*in->chunks));
    in->chunks[in->nchunks++] = r;
    complete_ok(h, c);
    return true;
  }
  size_t nact = r->n_actions;
  for (size_t i = 0; i < in->nchunks; i++) nact += in->chunks[i]->n_actions;
  OrchestratorAction **all = dts_malloc((nact ? nact : 1) * sizeof(*all));
  size_t k = 0;
  int32_t nprocessed = -1;
  OrchestratorResponse *first = in->nchunks > 0 ? in->chunks[0] : r;
  if (first->num_events_processed != NULL) nprocessed = first->num_events_processed->value;
  for (size_t i = 0; i < in->nchunks; i++)
    for (size_t j = 0; j < in->chunks[i]->n_actions; j++) all[k++] = in->chunks[i]->actions[j];
  for (size_t j = 0; j < r->n_actions; j++) all[k++] = r->actions[j];
  if (!turn_prefetch(h, in, all, nact)) { /* nothing applied; the item stays this worker's to retry */
    dts_free(all);
    rd_answer(h, c);
    orch_return(h, in);
    return false;
  }
  orch_end_lease(h, in);
  apply_turn(h, in, r->custom_status ? r->custom_status : first->custom_status,
             first->orchestration_trace_context, all, nact, nprocessed);
  dts_free(all);
  chunks_free(in);
  atomic_fetch_add_explicit(&h->st_completions, 1, memory_order_relaxed);
  complete_ok(h, c);
  return false;
}

static void on_complete_act(dts_hub *h, dts_call *c, ActivityResponse *r) {
  act *a = NULL;
  if (r->completion_token[0] != '\0') {
    void *v = dts_map_get(&h->tokens, r->completion_token);
    if (v != NULL && r->completion_token[0] == 'a') a = v;
  } else {
    inst *in = find(h, r->instance_id);
    if (in == NULL && rd_answer(h, c)) return;
    if (in != NULL) {
      char *mk = work_key(in->id, in->exec_id, r->task_id);
      act *x = dts_map_get(&h->acts, mk);
      dts_free(mk);
      if (x != NULL && x->leased_to != NULL) a = x;
    }
  }
  if (a == NULL) {
    log_stale(h, "stale activity completion for '%.120s' task %d: ignored", r->instance_id, r->task_id);
    atomic_fetch_add_explicit(&h->st_stale, 1, memory_order_relaxed);
    complete_ok(h, c);
    return;
  }
  inst *in = find(h, a->inst_id);
  if (in == NULL && h->rd_code != DTS_OK) { /* nothing applied: the item is retried later */
    rd_answer(h, c);
    if (a->leased_to != NULL) act_return(h, a);
    return;
  }
  if (a->leased_to == NULL) rq_unlink(&h->aq, &a->rl); /* returned, not leased again */
  /* an oversized result becomes the activity's failure, so the
   * orchestration hears about it instead of waiting forever */
  TaskFailureDetails big = TASK_FAILURE_DETAILS__INIT;
  char bigmsg[200];
  bool too_big = r->failure_details == NULL && !payload_ok(h, c, "activity result", dts_sv_get(r->result));
  if (too_big) {
    snprintf(bigmsg, sizeof(bigmsg), "activity result is over the payload limit of %zu bytes",
             h->cfg.max_payload);
    big.error_type = "PayloadTooLarge";
    big.error_message = bigmsg;
    r->failure_details = &big;
  }
  cur(h);
  if (in != NULL && strcmp(in->exec_id, a->exec_id) == 0) {
    HistoryEvent e = HISTORY_EVENT__INIT;
    TaskCompletedEvent tc = TASK_COMPLETED_EVENT__INIT;
    TaskFailedEvent tf = TASK_FAILED_EVENT__INIT;
    if (r->failure_details != NULL) {
      tf.task_scheduled_id = a->task_id;
      tf.failure_details = r->failure_details;
      e.event_type_case = EV(TASK_FAILED);
      e.task_failed = &tf;
    } else {
      tc.task_scheduled_id = a->task_id;
      tc.result = r->result;
      e.event_type_case = EV(TASK_COMPLETED);
      e.task_completed = &tc;
    }
    inbox_add(h, in, ev_pack(&e, -1, (int64_t)dts_wall_ns()));
  }
  act_discard(h, a, true);
  atomic_fetch_add_explicit(&h->st_completions, 1, memory_order_relaxed);
  if (too_big) {
    r->failure_details = NULL; /* not ours to free */
    return;                    /* the failure answer is already queued */
  }
  complete_ok(h, c);
}

static void on_abandon(dts_hub *h, dts_call *c, const char *token, bool orch) {
  void *v = token[0] != '\0' ? dts_map_get(&h->tokens, token) : NULL;
  if (v != NULL && orch && token[0] == 'o') orch_unlease(h, v, h->cfg.abandon_delay_ns);
  else if (v != NULL && !orch && token[0] == 'a') act_unlease(h, v, h->cfg.abandon_delay_ns);
  else log_stale(h, "abandon with unknown or stale token '%.40s': ignored", token);
  if (orch) {
    AbandonOrchestrationTaskResponse resp = ABANDON_ORCHESTRATION_TASK_RESPONSE__INIT;
    answer_msg(h, c, &resp.base);
  } else {
    AbandonActivityTaskResponse resp = ABANDON_ACTIVITY_TASK_RESPONSE__INIT;
    answer_msg(h, c, &resp.base);
  }
}

static void on_get_work_items(dts_hub *h, dts_call *c, GetWorkItemsRequest *r) {
  if (h->shutting_down) {
    dts_call_stream_end(c, DTS_ST_UNAVAILABLE, "dtsd is shutting down; reconnect");
    get_work_items_request__free_unpacked(r, NULL);
    return;
  }
  const struct {
    const char *name;
    int32_t v;
  } asked[3] = {{"maxConcurrentOrchestrationWorkItems", r->max_concurrent_orchestration_work_items},
                {"maxConcurrentActivityWorkItems", r->max_concurrent_activity_work_items},
                {"maxConcurrentEntityWorkItems", r->max_concurrent_entity_work_items}};
  for (int i = 0; i < 3; i++) {
    if (asked[i].v >= 0 && asked[i].v <= h->cfg.limits.max_stream_items) continue;
    char msg[300];
    snprintf(msg, sizeof(msg), "%s is %d; a worker stream holds 0 (the default) to %d items of a kind "
             "(--max-stream-items / DTSD_MAX_STREAM_ITEMS)", asked[i].name, asked[i].v, h->cfg.limits.max_stream_items);
    dts_call_stream_end(c, DTS_ST_INVALID_ARGUMENT, msg);
    get_work_items_request__free_unpacked(r, NULL);
    return;
  }
  stream *s = dts_calloc(1, sizeof(*s));
  s->sid = ++h->serial;
  dts_call_ref(c);
  s->call = c;
  s->req = r;
  s->max_orch = r->max_concurrent_orchestration_work_items > 0 ? r->max_concurrent_orchestration_work_items
                                                               : h->cfg.default_max_orch;
  s->max_act = r->max_concurrent_activity_work_items > 0 ? r->max_concurrent_activity_work_items
                                                         : h->cfg.default_max_act;
  s->max_ent = r->max_concurrent_entity_work_items > 0 ? r->max_concurrent_entity_work_items : h->cfg.default_max_act;
  s->next = h->streams;
  if (h->streams) h->streams->prev = s;
  h->streams = s;
  s->end_st = DTS_ST_UNAVAILABLE;
  s->end_msg = "dtsd is shutting down; reconnect";
  s->last_send = dts_now_ns();
  dts_call_set_owner_data(c, s);
  dts_call_stream_open(c);
  atomic_fetch_add_explicit(&h->st_streams, 1, memory_order_relaxed);
  DTS_INFO("hub", "[%s] worker stream opened (max %d orchestrations, %d activities%s)", h->name, s->max_orch,
           s->max_act, r->work_item_filters ? ", filtered" : "");
  pump(h);
}

/* ======================================================================== */
/* management: history, queries, purge, restart, forced termination         */

static void on_stream_history(dts_hub *h, dts_call *c, StreamInstanceHistoryRequest *r) {
  inst *in = find(h, r->instance_id);
  if (in == NULL && h->rd_code != DTS_OK) {
    dts_call_stream_end(c, status_of(h->rd_code), h->rd_msg);
    return;
  }
  stream *s = dts_calloc(1, sizeof(*s));
  s->sid = ++h->serial;
  dts_call_ref(c);
  s->call = c;
  s->history = true;
  s->held = true; /* sends start once everything before this read is committed */
  s->end_after_send = true;
  s->end_st = DTS_ST_OK;
  s->end_msg = "";
  const char *exec = dts_sv_get(r->execution_id);
  /* unknown instance, or another execution: an empty stream (as DTS does) */
  if (in != NULL && (exec == NULL || exec[0] == '\0' || strcmp(exec, in->exec_id) == 0)) {
    /* chunks of at most 256 events or about 1 MiB */
    size_t i = 0;
    while (i < in->hist.n) {
      dts_pbw w;
      dts_pbw_init(&w);
      size_t k = 0;
      while (i < in->hist.n && k < 256 && (k == 0 || w.n + in->hist.v[i].b.n < (1u << 20))) {
        dts_pbw_bytes_field(&w, 1, in->hist.v[i].b.p, in->hist.v[i].b.n);
        i++;
        k++;
      }
      stream_enqueue(h, s, dts_pbw_take(&w));
    }
  }
  s->next = h->streams;
  if (h->streams) h->streams->prev = s;
  h->streams = s;
  dts_call_set_owner_data(c, s);
  effect_open(h, s);
}

static bool status_in(int st, const int *list, size_t n) {
  if (n == 0) return true; /* an empty filter is no filter (RUNNING is 0) */
  for (size_t i = 0; i < n; i++)
    if (list[i] == st) return true;
  return false;
}

/* ---- queries: range scans over the indexes ------------------------------- */

typedef struct qrow {
  int64_t t; /* created (status index) or completed (completed index) */
  char *id;
} qrow;

typedef struct qscan {
  dts_hub *h;
  size_t want, got; /* rows wanted from this scan / taken so far */
  qrow *rows;
  size_t n, cap;
  int64_t to;                 /* inclusive upper bound of t */
  bool has_after;             /* skip rows at or before (after_t, after_id) */
  int64_t after_t;
  const char *after_id;
  const int *status; /* filter on the row's status (ListInstanceIds, id plan) */
  size_t nstatus;
  int64_t from_created, to_created; /* id plan only */
  const char *prefix;
  size_t plen;
  /* Entries a page may look at: a filter that matches little must not walk
   * the whole index for one page.  When it runs out, the page ends at the
   * last entry looked at (cut_t, cut_id) with whatever it found. */
  long budget; /* 0: unlimited */
  bool cut;
  int64_t cut_t;
  char cut_id[DTS_ID_MAX + 1];
} qscan;

/* Counts one visited entry against the budget; false when it ran out: this
 * entry is still looked at, and the page ends after it. */
static bool qscan_spend(qscan *q, int64_t t, const char *id, size_t n) {
  if (q->budget == 0) return true;
  if (--q->budget > 0) return true;
  q->cut = true;
  q->cut_t = t;
  size_t m = n < DTS_ID_MAX ? n : DTS_ID_MAX;
  memcpy(q->cut_id, id, m);
  q->cut_id[m] = '\0';
  return false;
}

static void qrow_push(qscan *q, int64_t t, const char *id, size_t n) {
  if (q->n == q->cap) {
    q->cap = q->cap ? q->cap * 2 : 16;
    q->rows = dts_realloc(q->rows, q->cap * sizeof(*q->rows));
  }
  char *s = dts_malloc(n + 1);
  memcpy(s, id, n);
  s[n] = '\0';
  q->rows[q->n++] = (qrow){t, s};
  q->got++;
}

static void qrows_free(qscan *q) {
  for (size_t i = 0; i < q->n; i++) dts_free(q->rows[i].id);
  dts_free(q->rows);
}

static bool after_cursor(const qscan *q, int64_t t, const char *id, size_t n) {
  if (!q->has_after) return true;
  if (t != q->after_t) return t > q->after_t;
  size_t an = strlen(q->after_id);
  int c = memcmp(id, q->after_id, n < an ? n : an);
  return c > 0 || (c == 0 && n > an);
}

/* Counts a visited entry against the budget and keeps it as a row when it
 * matched; false: the scan stops (budget spent or page full). */
static bool qscan_take(qscan *q, int64_t t, const char *id, size_t n, bool keep) {
  bool more = qscan_spend(q, t, id, n);
  if (keep) qrow_push(q, t, id, n);
  return more && q->got < q->want;
}

/* "<hub>\0S<st><created><id>" and "<hub>\0C<completed><id>" */
static bool qscan_time_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  qscan *q = c;
  size_t off = q->h->namelen + 2 + (k[q->h->namelen + 1] == 'S' ? 1 : 0);
  if (klen <= off + 8) return true;
  int64_t t = (int64_t)be64(k + off);
  if (t > q->to) return false;
  const char *id = k + off + 8;
  size_t n = klen - off - 8;
  if (n > DTS_ID_MAX) return true; /* not an id of ours */
  if (!after_cursor(q, t, id, n) || id[0] == '@') return true;
  return qscan_take(q, t, id, n, q->nstatus == 0 || (vlen >= 1 && status_in((uint8_t)v[0], q->status, q->nstatus)));
}

/* "<hub>\0U<id>" -> <status:1>: unfinished instances in id order */
static bool qscan_uidx_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  qscan *q = c;
  size_t off = q->h->namelen + 2;
  const char *id = k + off;
  size_t n = klen - off;
  if (n == 0 || n > DTS_ID_MAX || !after_cursor(q, 0, id, n)) return true;
  return qscan_take(q, 0, id, n, vlen >= 1 && status_in((uint8_t)v[0], q->status, q->nstatus));
}

/* "<hub>\0I<id>" -> record: the id plan filters on the record itself */
static bool qscan_id_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  qscan *q = c;
  size_t off = q->h->namelen + 2;
  const char *id = k + off;
  size_t n = klen - off;
  if (n < q->plen || memcmp(id, q->prefix, q->plen) != 0) return false;
  if (n > DTS_ID_MAX || !after_cursor(q, 0, id, n) || id[0] == '@') return true;
  Dtsd__Store__InstanceRecord *r = dtsd__store__instance_record__unpack(NULL, vlen, (const uint8_t *)v);
  bool keep = r != NULL && status_in(r->status, q->status, q->nstatus) && r->created_ns >= q->from_created &&
              r->created_ns <= q->to_created; /* a damaged record is left out: GetInstance reports it */
  if (r != NULL) dtsd__store__instance_record__free_unpacked(r, NULL);
  return qscan_take(q, 0, id, n, keep);
}

static int cmp_qrow(const void *x, const void *y) {
  const qrow *a = x, *b = y;
  if (a->t != b->t) return a->t < b->t ? -1 : 1;
  return strcmp(a->id, b->id);
}

/* A store scan whose failure is kept for the handler's answer (rd_fail). */
static void scan(dts_hub *h, const void *pre, size_t plen, const void *from, size_t flen, dts_scan_fn fn, void *ctx) {
  char msg[300];
  dts_err e = dts_store_walk(h->cfg.store, pre, plen, from, flen, fn, ctx, msg, sizeof(msg));
  if (e != DTS_OK) rd_fail(h, e, "a scan of the store failed: %s", msg);
}

/* Scans the status index for each status in `st` (all when n == 0), rows
 * with created in [from, q->to] after the cursor; sorted by (created, id). */
static void scan_status_index(dts_hub *h, qscan *q, const int *st, size_t nst, int64_t from) {
  for (int s = 0; s < 16; s++) {
    if (nst > 0 && !status_in(s, st, nst)) continue;
    key pre, k;
    k_start(&pre, h, 'S');
    pre.b[pre.n++] = (char)s;
    k = pre;
    int64_t seek = q->has_after && q->after_t > from ? q->after_t : from;
    k_u64(&k, (uint64_t)(seek > 0 ? seek : 0));
    q->got = 0;
    scan(h, pre.b, pre.n, k.b, k.n, qscan_time_visit, q);
  }
  if (q->n > 1) qsort(q->rows, q->n, sizeof(*q->rows), cmp_qrow);
}

/* The state of an instance for a query answer: the live one when in memory,
 * else decoded from its record.  *tmp is set when the caller must free it. */
static inst *query_view(dts_hub *h, const char *id, inst **tmp) {
  inst *in = dts_map_get(&h->insts, id);
  *tmp = in == NULL ? record_get(h, id) : NULL;
  return in != NULL ? in : *tmp;
}

/* QueryInstances.  With a status filter or a created-time range (and no id
 * prefix) it walks the status index in (created, id) order, cursor
 * "t:<created>:<id>"; otherwise the records in id order from the prefix,
 * cursor "<id>".  Either way it reads about one page, never the hub. */
static void on_query(dts_hub *h, dts_call *c, QueryInstancesRequest *r) {
  InstanceQuery empty = INSTANCE_QUERY__INIT;
  InstanceQuery *q = r->query ? r->query : &empty;
  size_t page = q->max_instance_count > 0 ? (size_t)q->max_instance_count : 100;
  if (page > (size_t)h->cfg.limits.max_page) page = (size_t)h->cfg.limits.max_page;
  const char *prefix = dts_sv_get(q->instance_id_prefix);
  if (prefix == NULL) prefix = "";
  const char *after = dts_sv_get(q->continuation_token);
  if (after != NULL && after[0] == '\0') after = NULL;
  if (strlen(prefix) > DTS_ID_MAX) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "instanceIdPrefix is longer than an instance id can be (100 characters)");
    return;
  }
  if (after != NULL && strlen(after) > DTS_ID_MAX + 32) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "continuationToken was not made by this server");
    return;
  }
  int64_t from = q->created_time_from ? dts_ts_to_ns(q->created_time_from) : 0;
  int64_t to = q->created_time_to ? dts_ts_to_ns(q->created_time_to) : INT64_MAX;
  bool by_status = prefix[0] == '\0' && (q->n_runtime_status > 0 || q->created_time_from || q->created_time_to);
  qscan s = {.h = h, .want = page + 1, .to = to};
  char *after_copy = NULL;
  if (by_status) {
    if (after != NULL) {
      char *colon;
      if (strncmp(after, "t:", 2) != 0 || (s.after_t = strtoll(after + 2, &colon, 10), *colon != ':')) {
        fail(h, c, DTS_ST_INVALID_ARGUMENT, "continuationToken '%.80s' does not belong to this query", after);
        return;
      }
      s.has_after = true;
      s.after_id = colon + 1;
    }
    scan_status_index(h, &s, (const int *)q->runtime_status, q->n_runtime_status, from);
  } else {
    s.status = (const int *)q->runtime_status;
    s.nstatus = q->n_runtime_status;
    s.from_created = from;
    s.to_created = to;
    s.prefix = prefix;
    s.plen = strlen(prefix);
    s.budget = h->cfg.limits.scan_budget;
    key pre, k;
    key_id(&pre, h, 'I', prefix);
    k = pre;
    if (after != NULL && strcmp(after, prefix) > 0) {
      after_copy = dts_strdup(after);
      s.has_after = true;
      s.after_id = after_copy;
      key_id(&k, h, 'I', after);
    }
    scan(h, pre.b, pre.n, k.b, k.n, qscan_id_visit, &s);
  }
  size_t k = s.n < page ? s.n : page;
  state_buf *sb = dts_calloc(k ? k : 1, sizeof(*sb));
  OrchestrationState **sp = dts_calloc(k ? k : 1, sizeof(*sp));
  inst **tmps = dts_calloc(k ? k : 1, sizeof(*tmps));
  size_t m = 0;
  for (size_t i = 0; i < k; i++) {
    inst *in = query_view(h, s.rows[i].id, &tmps[m]);
    /* the live state wins; one that no longer matches is left out */
    if (in == NULL || !status_in(in->status, (const int *)q->runtime_status, q->n_runtime_status)) {
      if (tmps[m] != NULL) inst_free(tmps[m]);
      tmps[m] = NULL;
      continue;
    }
    state_fill(&sb[m], in, q->fetch_inputs_and_outputs);
    sp[m] = &sb[m].s;
    m++;
  }
  QueryInstancesResponse resp = QUERY_INSTANCES_RESPONSE__INIT;
  Google__Protobuf__StringValue tok;
  char tokbuf[KEYMAX + 32];
  resp.orchestration_state = sp;
  resp.n_orchestration_state = m;
  if (s.n > k) {
    if (by_status) snprintf(tokbuf, sizeof(tokbuf), "t:%" PRId64 ":%s", s.rows[k - 1].t, s.rows[k - 1].id);
    else snprintf(tokbuf, sizeof(tokbuf), "%s", s.rows[k - 1].id);
    resp.continuation_token = dts_sv(&tok, tokbuf);
  } else if (s.cut) { /* out of budget (id plan): go on from the last record looked at */
    snprintf(tokbuf, sizeof(tokbuf), "%s", s.cut_id);
    resp.continuation_token = dts_sv(&tok, tokbuf);
  }
  if (!rd_answer(h, c)) answer_msg(h, c, &resp.base); /* a record that could not be read fails the page */
  for (size_t i = 0; i < m; i++) {
    state_done(&sb[i]);
    if (tmps[i] != NULL) inst_free(tmps[i]);
  }
  dts_free(tmps);
  dts_free(sb);
  dts_free(sp);
  qrows_free(&s);
  dts_free(after_copy);
}


/* ListInstanceIds orders by (completed time, id); the key is "<ns>:<id>".
 * Unfinished instances (no completion time) come first, through the U
 * index in id order, and only when no completed-time range is asked for;
 * then the completed index.  A page looks at no more than scan_budget
 * entries: a status filter that matches little returns a short page with a
 * key to go on from. */
static void on_list_ids(dts_hub *h, dts_call *c, ListInstanceIdsRequest *r) {
  int64_t after_ns = 0;
  const char *after_id = NULL;
  const char *last = dts_sv_get(r->last_instance_key);
  if (last && last[0]) {
    char *colon = strchr(last, ':');
    if (colon == NULL || strlen(colon + 1) > DTS_ID_MAX) {
      fail(h, c, DTS_ST_INVALID_ARGUMENT, "lastInstanceKey '%.80s' was not made by this server", last);
      return;
    }
    after_ns = strtoll(last, NULL, 10);
    after_id = colon + 1;
  }
  size_t page = r->page_size > 0 ? (size_t)r->page_size : 100;
  if (page > (size_t)h->cfg.limits.max_list_page) page = (size_t)h->cfg.limits.max_list_page;
  const int *st = (const int *)r->runtime_status;
  size_t nst = r->n_runtime_status;
  bool ranged = r->completed_time_from != NULL || r->completed_time_to != NULL;
  qscan s = {.h = h, .want = page + 1, .to = r->completed_time_to ? dts_ts_to_ns(r->completed_time_to) : INT64_MAX,
             .status = st, .nstatus = nst, .budget = h->cfg.limits.scan_budget};
  if (!ranged && after_ns == 0) {
    bool any_live = false;
    for (int i = 0; i < 16; i++) any_live |= !terminal(i) && status_in(i, st, nst);
    if (any_live) {
      key pre, k;
      key_id(&pre, h, 'U', "");
      k = pre;
      if (after_id != NULL && after_id[0] != '\0') {
        s.has_after = true;
        s.after_t = 0;
        s.after_id = after_id;
        k_str(&k, after_id);
      }
      scan(h, pre.b, pre.n, k.b, k.n, qscan_uidx_visit, &s);
      s.has_after = false;
    }
    after_id = NULL; /* the completed ones start from their beginning */
  }
  if (s.n < page + 1 && !s.cut) {
    s.want = page + 1 - s.n;
    s.got = 0;
    s.has_after = after_ns > 0;
    s.after_t = after_ns;
    s.after_id = after_id;
    int64_t from = r->completed_time_from ? dts_ts_to_ns(r->completed_time_from) : 0;
    if (after_ns > from) from = after_ns;
    key pre, k;
    k_start(&pre, h, 'C');
    k = pre;
    k_u64(&k, (uint64_t)(from > 0 ? from : 0));
    scan(h, pre.b, pre.n, k.b, k.n, qscan_time_visit, &s);
  }
  size_t k = s.n < page ? s.n : page;
  char **ids = dts_calloc(k ? k : 1, sizeof(char *));
  for (size_t i = 0; i < k; i++) ids[i] = s.rows[i].id;
  ListInstanceIdsResponse resp = LIST_INSTANCE_IDS_RESPONSE__INIT;
  resp.instance_ids = ids;
  resp.n_instance_ids = k;
  char keybuf[DTS_ID_MAX + 32];
  Google__Protobuf__StringValue lk;
  if (s.n > k) {
    snprintf(keybuf, sizeof(keybuf), "%" PRId64 ":%s", s.rows[k - 1].t, s.rows[k - 1].id);
    resp.last_instance_key = dts_sv(&lk, keybuf);
  } else if (s.cut) { /* out of budget: go on from the last entry looked at */
    snprintf(keybuf, sizeof(keybuf), "%" PRId64 ":%s", s.cut_t, s.cut_id);
    resp.last_instance_key = dts_sv(&lk, keybuf);
  }
  if (!rd_answer(h, c)) answer_msg(h, c, &resp.base);
  dts_free(ids);
  qrows_free(&s);
}

/* Deletes every trace of a finished instance: record, history, inbox,
 * its activity work items and timers; answers its waiters "not found". */
static void purge_inst(dts_hub *h, inst *in) {
  key k;
  cur(h);
  inst_clear_execution(h, in);
  key_inst(&k, h, in->id);
  dts_batch_del(h->batch, k.b, k.n);
  index_drop(h, in);
  gone_add(h, in->id);
  evict_forget(h, in);
  const char *mk;
  void *v;
  size_t idlen = strlen(in->id);
  for (size_t it = 0; dts_map_next(&h->acts, &it, &mk, &v);) {
    act *a = v;
    if (strcmp(a->inst_id, in->id) == 0) act_discard(h, a, true);
  }
  for (size_t it = 0; dts_map_next(&h->timers, &it, &mk, &v);) {
    dtimer *tm = v;
    if (strncmp(tm->key, in->id, idlen) != 0 || tm->key[idlen] != '\x01') continue;
    dts_batch_del(h->batch, tm->skey, tm->klen);
    dts_map_del(&h->timers, tm->key);
    timer_free(tm);
  }
  /* ready-queue entries and pending tickets may still point at `in`:
   * keep the struct as a tombstone-free, dead instance until they pass */
  in->purged = true;
  dts_map_del(&h->insts, in->id);
  atomic_fetch_sub_explicit(&h->st_instances, 1, memory_order_relaxed);
  VEC_PUSH(h->dead, h->ndead, h->capdead, in);
}

/* Purges a finished instance and, with recursive, its finished
 * sub-orchestrations.  Returns how many went, or -1 (nothing changed) when
 * a read failed. */
static int purge_tree(dts_hub *h, inst *in, bool recursive) {
  if (!terminal(in->status)) return 0;
  if (!recursive) {
    purge_inst(h, in);
    return 1;
  }
  tree t;
  bool ok = tree_gather(h, in, true, &t);
  int n = ok ? (int)t.n : -1;
  for (size_t i = 0; ok && i < t.n; i++) purge_inst(h, t.v[i]);
  tree_free(&t);
  return n;
}

/* Reads every tree a purge is going to delete before it deletes any of
 * them: a read that fails fails the request with nothing deleted. */
static bool purge_prefetch(dts_hub *h, char **ids, size_t n, bool recursive) {
  for (size_t i = 0; i < n && h->rd_code == DTS_OK; i++) {
    if (ids[i][0] == '@') continue;
    inst *in = find(h, ids[i]);
    if (in != NULL && recursive) {
      tree t;
      tree_gather(h, in, true, &t);
      tree_free(&t);
    }
  }
  return h->rd_code == DTS_OK;
}

static void on_purge(dts_hub *h, dts_call *c, PurgeInstancesRequest *r) {
  int deleted = 0;
  bool complete = true;
  switch (r->request_case) {
  case PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_ID: {
    if (r->instance_id[0] == '@') {
      deleted = purge_entity(h, r->instance_id);
      break;
    }
    if (!purge_prefetch(h, &r->instance_id, 1, r->recursive)) {
      rd_answer(h, c);
      return;
    }
    inst *in = find(h, r->instance_id);
    if (in != NULL) deleted = purge_tree(h, in, r->recursive);
    break;
  }
  case PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_BATCH: {
    InstanceBatch *b = r->instance_batch;
    if (b->n_instance_ids > 500) {
      fail(h, c, DTS_ST_INVALID_ARGUMENT, "a purge batch holds at most 500 instance ids, not %zu", b->n_instance_ids);
      return;
    }
    if (!purge_prefetch(h, b->instance_ids, b->n_instance_ids, r->recursive)) {
      rd_answer(h, c);
      return;
    }
    for (size_t i = 0; i < b->n_instance_ids; i++) {
      if (b->instance_ids[i][0] == '@') {
        deleted += purge_entity(h, b->instance_ids[i]);
        continue;
      }
      inst *in = find(h, b->instance_ids[i]);
      if (in != NULL) deleted += purge_tree(h, in, r->recursive);
    }
    break;
  }
  case PURGE_INSTANCES_REQUEST__REQUEST_PURGE_INSTANCE_FILTER: {
    /* in chunks of at most purge_chunk instances per call (isComplete says
     * whether more remain; the SDKs call again), so one request never
     * holds the hub for the whole store */
    const PurgeInstanceFilter *f = r->purge_instance_filter;
    uint64_t deadline = 0;
    if (f->timeout && (f->timeout->seconds > 0 || f->timeout->nanos > 0))
      deadline = dts_now_ns() + (uint64_t)dts_secs_to_ns(f->timeout->seconds, f->timeout->nanos);
    /* finished instances through the status index, terminal statuses only */
    int fin[4] = {ST(COMPLETED), ST(FAILED), ST(CANCELED), ST(TERMINATED)}, st[4];
    size_t nst = 0;
    for (int i = 0; i < 4; i++)
      if (status_in(fin[i], (const int *)f->runtime_status, f->n_runtime_status)) st[nst++] = fin[i];
    size_t chunk = (size_t)h->cfg.limits.purge_chunk;
    qscan s = {.h = h, .want = chunk + 1, .to = f->created_time_to ? dts_ts_to_ns(f->created_time_to) : INT64_MAX};
    if (nst > 0)
      scan_status_index(h, &s, st, nst, f->created_time_from ? dts_ts_to_ns(f->created_time_from) : 0);
    size_t take = s.n < chunk ? s.n : chunk;
    char **ids = dts_calloc(take ? take : 1, sizeof(char *));
    for (size_t i = 0; i < take; i++) ids[i] = s.rows[i].id;
    bool readable = h->rd_code == DTS_OK && purge_prefetch(h, ids, take, r->recursive);
    dts_free(ids);
    if (!readable) {
      qrows_free(&s);
      rd_answer(h, c);
      return;
    }
    complete = s.n <= chunk;
    for (size_t i = 0; i < take; i++) {
      if (deadline && dts_now_ns() > deadline) {
        complete = false;
        break;
      }
      inst *in = find(h, s.rows[i].id); /* NULL: gone with a parent */
      if (in != NULL && terminal(in->status)) deleted += purge_tree(h, in, r->recursive);
    }
    qrows_free(&s);
    break;
  }
  default:
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "PurgeInstances needs an instance id, a filter or a batch");
    return;
  }
  PurgeInstancesResponse resp = PURGE_INSTANCES_RESPONSE__INIT;
  Google__Protobuf__BoolValue bv = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;
  bv.value = complete;
  resp.deleted_instance_count = deleted;
  resp.is_complete = &bv;
  answer_msg(h, c, &resp.base);
}

static void on_rewind(dts_hub *h, dts_call *c, RewindInstanceRequest *r) {
  inst *in = find_or_fail(h, c, r->instance_id);
  if (in == NULL) return;
  if (in->status != ST(FAILED)) {
    fail(h, c, DTS_ST_FAILED_PRECONDITION, "instance '%.120s' has status %d; only FAILED instances can be rewound",
         in->id, in->status);
    return;
  }
  rewind_inst(h, in, dts_sv_get(r->reason), NULL);
  RewindInstanceResponse resp = REWIND_INSTANCE_RESPONSE__INIT;
  answer_msg(h, c, &resp.base);
}

static void on_restart(dts_hub *h, dts_call *c, RestartInstanceRequest *r) {
  inst *in = find_or_fail(h, c, r->instance_id);
  if (in == NULL) return;
  if (!r->restart_with_new_instance_id && !terminal(in->status)) {
    fail(h, c, DTS_ST_FAILED_PRECONDITION, "instance '%.120s' is still running; only finished instances restart with the same id", in->id);
    return;
  }
  char gen[37];
  inst *to = in;
  char *name = dts_strdup(in->name), *version = xstrdup_or_null(in->version), *input = xstrdup_or_null(in->input);
  tagset keep = tags_from_inst(&execution_started_event__tags_entry__descriptor, in);
  char **kk = keep.n ? dts_calloc(keep.n, sizeof(char *)) : NULL, **vv = keep.n ? dts_calloc(keep.n, sizeof(char *)) : NULL;
  for (size_t i = 0; i < keep.n; i++) {
    kk[i] = keep.e[i].key = dts_strdup(keep.e[i].key);
    vv[i] = keep.e[i].value = dts_strdup(keep.e[i].value);
  }
  cur(h);
  if (r->restart_with_new_instance_id) {
    dts_uuid(gen);
    to = inst_new(h, gen);
  } else {
    inst_clear_execution(h, in);
  }
  start_spec s = {name, version, input, NULL, 0, (void *const *)keep.p, keep.n, NULL, NULL};
  inst_start(h, to, &s);
  RestartInstanceResponse resp = RESTART_INSTANCE_RESPONSE__INIT;
  resp.instance_id = to->id;
  answer_msg(h, c, &resp.base);
  for (size_t i = 0; i < keep.n; i++) {
    dts_free(kk[i]);
    dts_free(vv[i]);
  }
  dts_free(kk);
  dts_free(vv);
  tags_free(&keep);
  dts_free(name);
  dts_free(version);
  dts_free(input);
}

static void on_skip_graceful(dts_hub *h, dts_call *c, SkipGracefulOrchestrationTerminationsRequest *r) {
  size_t n = r->instance_batch ? r->instance_batch->n_instance_ids : 0;
  if (n > 500) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "at most 500 instance ids per call, not %zu", n);
    return;
  }
  for (size_t i = 0; i < n; i++) { /* every read first: one that fails changes nothing */
    inst *in = find(h, r->instance_batch->instance_ids[i]);
    if (in != NULL && in->parent_id != NULL) find(h, in->parent_id);
  }
  if (rd_answer(h, c)) return;
  char **left = dts_calloc(n ? n : 1, sizeof(char *));
  size_t nleft = 0;
  int64_t now = (int64_t)dts_wall_ns();
  const char *reason = dts_sv_get(r->reason);
  for (size_t i = 0; i < n; i++) {
    char *id = r->instance_batch->instance_ids[i];
    inst *in = id[0] == '@' ? NULL : find(h, id);
    if (in == NULL || terminal(in->status)) {
      left[nleft++] = id;
      continue;
    }
    /* straight to TERMINATED: no worker turn */
    cur(h);
    key k;
    if (in->leased_to != NULL || in->returned) { /* its work item is stale now */
      orch_end_lease(h, in);
      for (size_t j = 0; j < in->dispatched.n; j++) ev_push(&in->inbox, in->dispatched.v[j].b, in->dispatched.v[j].seq);
      in->dispatched.n = 0;
      chunks_free(in);
    }
    for (size_t j = 0; j < in->inbox.n; j++) {
      if (in->inbox.v[j].seq == UINT64_MAX) continue;
      key_inbox(&k, h, in->id, in->inbox.v[j].seq);
      dts_batch_del(h->batch, k.b, k.n);
    }
    ev_clear(&in->inbox);
    touch(h, in);
    in->status = ST(TERMINATED);
    set_str(&in->output, reason);
    in->completed = now;
    in->updated = now;
    HistoryEvent e = HISTORY_EVENT__INIT;
    ExecutionCompletedEvent ec = EXECUTION_COMPLETED_EVENT__INIT;
    Google__Protobuf__StringValue rs;
    ec.orchestration_status = ST(TERMINATED);
    ec.result = dts_sv(&rs, reason);
    e.event_type_case = EV(EXECUTION_COMPLETED);
    e.execution_completed = &ec;
    hist_add(h, in, ev_pack(&e, -1, now));
    became_terminal(h, in, now);
  }
  SkipGracefulOrchestrationTerminationsResponse resp = SKIP_GRACEFUL_ORCHESTRATION_TERMINATIONS_RESPONSE__INIT;
  resp.unterminated_instance_ids = left;
  resp.n_unterminated_instance_ids = nleft;
  answer_msg(h, c, &resp.base);
  dts_free(left);
}

/* ======================================================================== */
/* auto-purge retention                                                     */

#define PURGE_BUDGET 1000 /* instances per purger pass: bounded work per turn */

const char *dts_retention_parse(const char *spec, int64_t out[5]) {
  for (int i = 0; i < 5; i++) out[i] = -1;
  static const char *names[5] = {"default", "completed", "failed", "canceled", "terminated"};
  const char *p = spec;
  while (*p) {
    const char *eq = strchr(p, '=');
    if (eq == NULL) return "expected status=duration, e.g. default=30d,completed=1h";
    size_t nl = (size_t)(eq - p);
    int which = -1;
    for (int i = 0; i < 5; i++)
      if (strlen(names[i]) == nl && strncmp(p, names[i], nl) == 0) which = i;
    if (which < 0) return "unknown status: use default, completed, failed, canceled or terminated";
    const char *v = eq + 1;
    const char *end = strchr(v, ',');
    size_t vl = end ? (size_t)(end - v) : strlen(v);
    if (vl == 4 && strncmp(v, "keep", 4) == 0) {
      out[which] = -1;
    } else {
      char *num_end;
      long long n = strtoll(v, &num_end, 10);
      if (num_end == v || n < 0) return "a duration is a non-negative number with a unit: ms, s, m, h or d";
      size_t ul = vl - (size_t)(num_end - v);
      int64_t mul;
      if (ul == 0 && n == 0) mul = 0;
      else if (ul == 2 && strncmp(num_end, "ms", 2) == 0) mul = 1000000LL;
      else if (ul == 1 && *num_end == 's') mul = 1000000000LL;
      else if (ul == 1 && *num_end == 'm') mul = 60000000000LL;
      else if (ul == 1 && *num_end == 'h') mul = 3600000000000LL;
      else if (ul == 1 && *num_end == 'd') mul = 86400000000000LL;
      else return "a duration is a non-negative number with a unit: ms, s, m, h or d";
      if (n > 100000LL * 86400 * 1000 / (mul ? mul / 1000000 : 1)) return "duration too long";
      out[which] = (int64_t)n * mul;
    }
    if (!end) break;
    p = end + 1;
  }
  return NULL;
}

static int64_t effective_retention(const dts_hub *h, int q) {
  return h->ret[1 + q] >= 0 ? h->ret[1 + q] : h->ret[DTS_RET_DEFAULT];
}

static void arm_purge(dts_hub *h) {
  if (h->shutting_down) return;
  dts_msg *m = dts_msg_alloc(HUB_PURGE, sizeof(dts_msg));
  dts_timer_post(h->cfg.timers, dts_now_ns() + h->cfg.purge_interval_ns, &h->actor, m);
}

/* The purger sweeps the completed-time index ("C", oldest first) in bounded
 * steps, resuming where the last step stopped; it starts over from the
 * oldest entry once it reaches entries no retention can have expired. */
typedef struct sweep {
  dts_hub *h;
  int64_t now, cutoff; /* entries completed after cutoff cannot be due */
  int budget;
  bool done; /* reached the end or the cutoff */
  char **ids;
  size_t nids, capids;
  key last;
} sweep;

static bool sweep_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  sweep *w = c;
  dts_hub *h = w->h;
  size_t off = h->namelen + 2;
  if (klen < off + 8) return true;
  int64_t completed = (int64_t)be64(k + off);
  if (completed > w->cutoff) {
    w->done = true;
    return false;
  }
  if (w->budget-- <= 0) return false;
  memcpy(w->last.b, k, klen < KEYMAX ? klen : KEYMAX);
  w->last.n = klen < KEYMAX ? klen : KEYMAX;
  int q = vlen > 0 ? tq_index((uint8_t)v[0]) : -1;
  int64_t r = q >= 0 ? effective_retention(h, q) : -1;
  if (r >= 0 && completed + r <= w->now) {
    size_t n = klen - off - 8;
    char *id = dts_malloc(n + 1);
    memcpy(id, k + off + 8, n);
    id[n] = '\0';
    VEC_PUSH(w->ids, w->nids, w->capids, id);
  }
  return true;
}

/* One bounded pass: purge finished instances whose retention has passed. */
static void on_purge_tick(dts_hub *h) {
  if (h->shutting_down) return;
  resume_if_writable(h);
  passivate_idle(h);
  if (!can_write(h)) {
    arm_purge(h);
    return;
  }
  int64_t now = (int64_t)dts_wall_ns(), minr = -1;
  for (int q = 0; q < 4; q++) {
    int64_t r = effective_retention(h, q);
    if (r >= 0 && (minr < 0 || r < minr)) minr = r;
  }
  int n = 0;
  if (minr >= 0) {
    sweep w = {.h = h, .now = now, .cutoff = now - minr, .budget = PURGE_BUDGET};
    key start;
    k_start(&start, h, 'C');
    const key *from = h->sweep_at.n > 0 ? &h->sweep_at : &start;
    char msg[300];
    if (dts_store_walk(h->cfg.store, start.b, start.n, from->b, from->n, sweep_visit, &w, msg, sizeof(msg)) != DTS_OK)
      DTS_ERROR("hub", "[%s] auto-purge: the completed-time index cannot be read (%s); trying again later", h->name,
                msg);
    if (w.done || w.last.n == 0) {
      h->sweep_at.n = 0; /* start over next time */
    } else {
      h->sweep_at = w.last;
      h->sweep_at.b[h->sweep_at.n++] = '\0'; /* just after the last key seen */
    }
    for (size_t i = 0; i < w.nids; i++) {
      bool failed; /* one that cannot be read is left for a later sweep */
      inst *in = find_quiet(h, w.ids[i], &failed);
      int q = in != NULL ? tq_index(in->status) : -1;
      int64_t r = q >= 0 ? effective_retention(h, q) : -1;
      /* re-checked on the live instance; one with a commit in flight waits
       * for the next sweep */
      if (in != NULL && r >= 0 && in->completed + r <= now && in->pending == 0) {
        purge_inst(h, in);
        n++;
      }
      dts_free(w.ids[i]);
    }
    dts_free(w.ids);
  }
  if (n > 0) {
    h->purged_total += n;
    DTS_INFO("hub", "[%s] auto-purge removed %d finished instance%s (%ld in all)", h->name, n, n == 1 ? "" : "s",
             h->purged_total);
    flush(h);
  }
  arm_purge(h);
}

static void ret_to_duration(int64_t ns, Google__Protobuf__Duration *d, Google__Protobuf__Duration **out) {
  if (ns < 0) {
    *out = NULL;
    return;
  }
  google__protobuf__duration__init(d);
  d->seconds = ns / 1000000000LL;
  d->nanos = (int32_t)(ns % 1000000000LL);
  *out = d;
}

static dts_buf retention_pack(const dts_hub *h) {
  Dtsd__Admin__RetentionPolicy p = DTSD__ADMIN__RETENTION_POLICY__INIT;
  Google__Protobuf__Duration d[5];
  ret_to_duration(h->ret[0], &d[0], &p.default_retention);
  ret_to_duration(h->ret[1], &d[1], &p.completed);
  ret_to_duration(h->ret[2], &d[2], &p.failed);
  ret_to_duration(h->ret[3], &d[3], &p.canceled);
  ret_to_duration(h->ret[4], &d[4], &p.terminated);
  return dts_pb_pack(&p.base);
}

static bool ret_from_policy(const Dtsd__Admin__RetentionPolicy *p, int64_t out[5]) {
  const Google__Protobuf__Duration *d[5] = {p->default_retention, p->completed, p->failed, p->canceled, p->terminated};
  for (int i = 0; i < 5; i++) {
    if (d[i] == NULL) {
      out[i] = -1;
      continue;
    }
    if (d[i]->seconds < 0 || d[i]->nanos < 0 || d[i]->seconds > 100000LL * 86400) return false;
    out[i] = d[i]->seconds * 1000000000LL + d[i]->nanos;
  }
  return true;
}

static void retention_key(key *k, const dts_hub *h) { k_start(k, h, 'R'); }

static void on_set_retention(dts_hub *h, dts_call *c, Dtsd__Admin__RetentionPolicy *p) {
  int64_t v[5];
  if (!ret_from_policy(p, v)) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "retention durations must be between 0 and 100000 days");
    return;
  }
  memcpy(h->ret, v, sizeof(v));
  dts_buf b = retention_pack(h);
  key k;
  retention_key(&k, h);
  cur(h);
  dts_batch_put(h->batch, k.b, k.n, b.p, b.n);
  int64_t secs[5];
  for (int i = 0; i < 5; i++) secs[i] = v[i] < 0 ? -1 : v[i] / (int64_t)1000000000;
  DTS_INFO("hub", "[%s] retention set (seconds, -1 = keep): default %" PRId64 ", completed %" PRId64
                  ", failed %" PRId64 ", canceled %" PRId64 ", terminated %" PRId64,
           h->name, secs[0], secs[1], secs[2], secs[3], secs[4]);
  answer(h, c, b);
}

static void on_get_retention(dts_hub *h, dts_call *c) { answer(h, c, retention_pack(h)); }

static bool load_retention(void *ctx, const char *k, size_t klen, const char *v, size_t vlen) {
  dts_hub *h = ctx;
  (void)k;
  if (klen != h->namelen + 2) return false; /* exactly "<hub>\0R" */
  Dtsd__Admin__RetentionPolicy *p = dtsd__admin__retention_policy__unpack(NULL, vlen, (const uint8_t *)v);
  if (p != NULL) {
    ret_from_policy(p, h->ret);
    dtsd__admin__retention_policy__free_unpacked(p, NULL);
  }
  return false;
}

/* ======================================================================== */
/* durable entities (PROTOCOL.md 5)                                         */

static void qmsg_free(qmsg *m) {
  dts_buf_free(&m->b);
  dts_free(m->parent);
  dts_free(m->parent_exec);
  dts_free(m->request_id);
}

static void ent_free(ent *e) {
  dts_free(e->id);
  dts_free(e->state);
  dts_free(e->locked_by);
  dts_free(e->lock_cs);
  for (size_t i = 0; i < e->qn; i++) qmsg_free(&e->q[i]);
  dts_free(e->q);
  dts_free(e->bidx);
  dts_free(e->bseq);
  dts_free(e);
}

const char *dts_entity_id_problem(const char *id) {
  size_t n = strlen(id);
  if (n < 3 || id[0] != '@') return "entity ids have the form @name@key";
  const char *at = strchr(id + 1, '@');
  if (at == NULL || at == id + 1) return "entity ids have the form @name@key, with a non-empty name";
  if (n > DTS_ID_MAX) return "entity id is longer than 100 characters";
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)id[i] < 0x20 || (unsigned char)id[i] > 0x7e) return "entity id must be printable ASCII";
  return NULL;
}

static void key_ent(key *k, const dts_hub *h, const char *id) { key_id(k, h, 'E', id); }
static void key_entq(key *k, const dts_hub *h, const char *id, uint64_t seq) { key_seq(k, h, 'Q', id, seq); }

static ent *ent_get(dts_hub *h, const char *id, bool create) {
  ent *e = dts_map_get(&h->ents, id);
  if (e == NULL && create) {
    e = dts_calloc(1, sizeof(*e));
    e->id = dts_strdup(id);
    dts_map_put(&h->ents, e->id, e);
  }
  return e;
}

static void ent_touch(dts_hub *h, ent *e) {
  ticket *t = cur(h);
  h->changes++;
  e->dirty = true;
  if (e->touched_by == t) return;
  e->touched_by = t;
  e->pending++;
  VEC_PUSH(t->etouched, t->netouched, t->capetouched, e);
}

static void put_ent_record(dts_hub *h, ent *e) {
  key k;
  key_ent(&k, h, e->id);
  if (e->state == NULL && e->qn == 0 && e->locked_by == NULL) { /* nothing left: no record */
    dts_batch_del(h->batch, k.b, k.n);
    return;
  }
  Dtsd__Store__EntityRecord r = DTSD__STORE__ENTITY_RECORD__INIT;
  Google__Protobuf__StringValue sv;
  r.instance_id = e->id;
  r.state = dts_sv(&sv, e->state);
  r.modified_ns = e->modified;
  r.locked_by = e->locked_by ? e->locked_by : "";
  r.lock_cs = e->lock_cs ? e->lock_cs : "";
  r.next_seq = e->next_seq;
  dts_buf b = dts_pb_pack(&r.base);
  dts_batch_put(h->batch, k.b, k.n, b.p, b.n);
  dts_buf_free(&b);
}

/* Appends a message (its encoded HistoryEvent `b`, consumed) to an entity's
 * queue, creating the entity if needed (a lock or call may make it exist
 * "transiently", without state). */
static void ent_enqueue(dts_hub *h, const char *id, int kind, dts_buf b, const char *parent,
                        const char *parent_exec, const char *request_id) {
  ent *e = ent_get(h, id, true);
  if (e->qn == e->qcap) {
    e->qcap = e->qcap ? e->qcap * 2 : 8;
    e->q = dts_realloc(e->q, e->qcap * sizeof(*e->q));
  }
  qmsg *m = &e->q[e->qn++];
  memset(m, 0, sizeof(*m));
  m->b = b;
  m->seq = e->next_seq++;
  m->kind = kind;
  m->parent = xstrdup_or_null(parent);
  m->parent_exec = xstrdup_or_null(parent_exec);
  m->request_id = xstrdup_or_null(request_id);
  key k;
  key_entq(&k, h, id, m->seq);
  cur(h);
  dts_batch_put(h->batch, k.b, k.n, m->b.p, m->b.n);
  ent_touch(h, e);
}

/* Removes queue message i (and its key). */
static void ent_qremove(dts_hub *h, ent *e, size_t i) {
  key k;
  key_entq(&k, h, e->id, e->q[i].seq);
  cur(h);
  dts_batch_del(h->batch, k.b, k.n);
  qmsg_free(&e->q[i]);
  memmove(&e->q[i], &e->q[i + 1], (e->qn - i - 1) * sizeof(*e->q));
  e->qn--;
  ent_touch(h, e);
}

/* Builds a queue message from an entity event and routes it. */
static void route_signal(dts_hub *h, const char *target, const char *op, const char *input, const char *request_id,
                         int64_t scheduled) {
  char gen[37];
  if (request_id == NULL || request_id[0] == '\0') {
    dts_uuid(gen);
    request_id = gen;
  }
  int64_t now = (int64_t)dts_wall_ns();
  HistoryEvent e = HISTORY_EVENT__INIT;
  EntityOperationSignaledEvent s = ENTITY_OPERATION_SIGNALED_EVENT__INIT;
  Google__Protobuf__StringValue in;
  Google__Protobuf__Timestamp ts;
  s.request_id = (char *)request_id;
  s.operation = (char *)op;
  s.input = dts_sv(&in, input);
  if (scheduled > 0) s.scheduled_time = dts_ts_from_ns(&ts, scheduled);
  e.event_type_case = EV(ENTITY_OPERATION_SIGNALED);
  e.entity_operation_signaled = &s;
  dts_buf b = ev_pack(&e, -1, now);
  if (scheduled > now) { /* held until its time: a durable timer */
    key k;
    key_timer(&k, h, target, request_id, 0);
    dtimer *tm = dts_calloc(1, sizeof(*tm));
    tm->key = work_key(target, request_id, 0);
    tm->skey = raw_copy(&k);
    tm->klen = k.n;
    tm->inst_id = dts_strdup(target);
    tm->exec_id = dts_strdup(request_id);
    tm->fire_at = scheduled;
    tm->event = b;
    cur(h);
    dts_batch_put(h->batch, k.b, k.n, b.p, b.n);
    tm->serial = ++h->serial;
    dtimer *old = dts_map_put(&h->timers, tm->key, tm);
    if (old != NULL) timer_free(old); /* a retry of the same signal: one stands */
    effect_timer(h, tm);
    return;
  }
  ent_enqueue(h, target, QM_SIGNAL, b, NULL, NULL, request_id);
}

static void ent_make_ready(dts_hub *h, ent *e);

/* Server-side part of the entity scheduler: lock requests and releases at
 * the front of the queue.  Runs when nothing of the entity is in flight. */
static void ent_step(dts_hub *h, ent *e) {
  if (e->dead || e->pending > 0 || e->leased_to != NULL) return;
  if (!can_write(h)) { /* lock steps are writes: they wait (resume_if_writable) */
    h->paused = true;
    return;
  }
  for (;;) {
    if (e->locked_by != NULL) {
      /* only the holder's messages count, in order */
      size_t i = 0;
      while (i < e->qn && !(e->q[i].parent && strcmp(e->q[i].parent, e->locked_by) == 0)) i++;
      if (i == e->qn) return;
      if (e->q[i].kind == QM_UNLOCK) {
        DTS_DEBUG("hub", "[%s] %s unlocked by %s", h->name, e->id, e->locked_by);
        set_str(&e->locked_by, NULL);
        set_str(&e->lock_cs, NULL);
        h->nlocked--;
        ent_qremove(h, e, i);
        continue;
      }
      if (e->q[i].kind == QM_LOCK) { /* a second lock request from the holder: grant again */
        ent_qremove(h, e, i);
        continue;
      }
      ent_make_ready(h, e);
      return;
    }
    if (e->qn == 0) return;
    qmsg *m = &e->q[0];
    if (m->kind == QM_UNLOCK) { /* not locked: a duplicate release */
      ent_qremove(h, e, 0);
      continue;
    }
    if (m->kind == QM_LOCK) {
      HistoryEvent *he = history_event__unpack(NULL, m->b.n, m->b.p);
      if (he == NULL || he->event_type_case != EV(ENTITY_LOCK_REQUESTED)) {
        if (he) history_event__free_unpacked(he, NULL);
        ent_qremove(h, e, 0);
        continue;
      }
      EntityLockRequestedEvent *lr = he->entity_lock_requested;
      const char *parent = dts_sv_get(lr->parent_instance_id);
      bool failed = false;
      inst *holder = parent ? find_quiet(h, parent, &failed) : NULL;
      if (failed) { /* whether the holder still runs cannot be read: try again later */
        history_event__free_unpacked(he, NULL);
        e->not_before = dts_now_ns() + RETRY_NS;
        if (!e->wake_armed && !h->shutting_down) {
          e->wake_armed = true;
          post_wake(h, e->id, e->not_before);
        }
        return;
      }
      set_str(&e->locked_by, parent ? parent : "");
      set_str(&e->lock_cs, lr->critical_section_id);
      h->nlocked++;
      int64_t now = (int64_t)dts_wall_ns();
      if ((size_t)lr->position + 1 < lr->n_lock_set) { /* on to the next entity of the set */
        lr->position++;
        HistoryEvent fw = HISTORY_EVENT__INIT;
        fw.event_type_case = EV(ENTITY_LOCK_REQUESTED);
        fw.entity_lock_requested = lr;
        if (dts_entity_id_problem(lr->lock_set[lr->position]) == NULL) /* validated when sent; this one was read from disk */
          ent_enqueue(h, lr->lock_set[lr->position], QM_LOCK, ev_pack(&fw, -1, now), parent, NULL, NULL);
        else
          DTS_ERROR("hub", "[%s] %s: a queued lock request names an invalid entity; the lock chain stops", h->name, e->id);
      } else if (parent != NULL) { /* the last lock: tell the orchestration */
        inst *o = holder;
        if (o != NULL) {
          HistoryEvent g = HISTORY_EVENT__INIT;
          EntityLockGrantedEvent lg = ENTITY_LOCK_GRANTED_EVENT__INIT;
          lg.critical_section_id = lr->critical_section_id;
          g.event_type_case = EV(ENTITY_LOCK_GRANTED);
          g.entity_lock_granted = &lg;
          inbox_add(h, o, ev_pack(&g, -1, now));
        }
      }
      /* a holder that already finished would never unlock */
      if (holder != NULL) holder->may_hold_locks = true;
      if (holder == NULL || terminal(holder->status)) {
        set_str(&e->locked_by, NULL);
        set_str(&e->lock_cs, NULL);
        h->nlocked--;
      }
      history_event__free_unpacked(he, NULL); /* `parent` pointed into it */
      ent_qremove(h, e, 0);
      continue;
    }
    ent_make_ready(h, e);
    return;
  }
}

static void ent_make_ready(dts_hub *h, ent *e) {
  if (e->rl.queued || e->leased_to != NULL || e->pending > 0) return;
  if (dts_now_ns() < e->not_before) {
    if (e->wake_armed || h->shutting_down) return;
    e->wake_armed = true;
    post_wake(h, e->id, e->not_before);
    return;
  }
  rq_push(&h->eq, &e->rl);
}

static bool accepts_ent(const stream *s, const ent *e) {
  const WorkItemFilters *f = s->req ? s->req->work_item_filters : NULL;
  if (f == NULL) return true;
  const char *name = e->id + 1, *at = strchr(name, '@');
  size_t nl = at ? (size_t)(at - name) : strlen(name);
  for (size_t i = 0; i < f->n_entities; i++)
    if (strlen(f->entities[i]->name) == nl && strncasecmp(f->entities[i]->name, name, nl) == 0) return true;
  return false;
}

/* Picks the batch (up to max_entity_batch deliverable operations) and sends
 * it as an entityRequestV2 work item.  False if nothing is deliverable. */
static void ent_end_lease(dts_hub *h, ent *e) {
  if (e->leased_to != NULL) e->leased_to->n_ent--;
  e->leased_to = NULL;
  e->returned = false;
  if (e->token[0] != '\0' && dts_map_get(&h->tokens, e->token) == e) dts_map_del(&h->tokens, e->token);
  e->token[0] = '\0';
  e->nb = 0;
}

static bool dispatch_ent(dts_hub *h, ent *e, stream *s) {
  size_t max = (size_t)h->cfg.max_entity_batch;
  ent_end_lease(h, e); /* a returned batch's old token ends here */
  e->bidx = dts_realloc(e->bidx, (max ? max : 1) * sizeof(size_t));
  e->bseq = dts_realloc(e->bseq, (max ? max : 1) * sizeof(uint64_t));
  for (size_t i = 0; i < e->qn && e->nb < max; i++) {
    qmsg *m = &e->q[i];
    if (e->locked_by != NULL) {
      if (!(m->parent && strcmp(m->parent, e->locked_by) == 0)) continue;
      if (m->kind != QM_SIGNAL && m->kind != QM_CALL) break;
    } else if (m->kind != QM_SIGNAL && m->kind != QM_CALL) {
      break;
    }
    e->bseq[e->nb] = m->seq;
    e->bidx[e->nb++] = i;
  }
  if (e->nb == 0) return false;
  dts_pbw r;
  dts_pbw_init(&r);
  dts_pbw_string_field(&r, 1, e->id);
  dts_pbw_sv_field(&r, 3, e->state);
  for (size_t i = 0; i < e->nb; i++) dts_pbw_bytes_field(&r, 4, e->q[e->bidx[i]].b.p, e->q[e->bidx[i]].b.n);
  dts_buf req = dts_pbw_take(&r);
  new_token(h, 'e', e->token);
  dts_map_put(&h->tokens, e->token, e);
  e->leased_to = s;
  s->n_ent++;
  dts_pbw w;
  dts_pbw_init(&w);
  dts_pbw_bytes_field(&w, 5, req.p, req.n);
  dts_pbw_string_field(&w, 10, e->token);
  dts_buf_free(&req);
  DTS_DEBUG("hub", "[%s] dispatch entity %s (%zu operations)", h->name, e->id, e->nb);
  atomic_fetch_add_explicit(&h->st_dispatched, 1, memory_order_relaxed);
  stream_enqueue(h, s, dts_pbw_take(&w));
  return true;
}

static try_result try_ent(dts_hub *h, rlink *l) {
  ent *e = OWNER(l, ent, rl);
  if (e->leased_to != NULL || e->pending > 0) return TRY_DROP;
  bool room;
  stream *s = pick(h, W_ENT, e, &room);
  if (s == NULL) return room ? TRY_SKIP : TRY_FULL;
  dispatch_ent(h, e, s);
  return TRY_SENT;
}

/* Abandon, or a failed batch: the operations are delivered again after
 * `delay_ns`, under a new token. */
static void ent_unlease(dts_hub *h, ent *e, uint64_t delay_ns) {
  ent_end_lease(h, e);
  e->not_before = delay_ns ? dts_now_ns() + delay_ns : 0;
  ent_step(h, e);
}

/* Stream closed: ready again; the batch and its token stay valid until the
 * next dispatch (inst.returned). */
static void ent_return(dts_hub *h, ent *e) {
  if (e->leased_to != NULL) e->leased_to->n_ent--;
  e->leased_to = NULL;
  e->returned = true;
  ent_step(h, e);
}

/* The batch's messages as queue indexes (in e->bidx), in order; false if
 * one of them is no longer queued. */
static bool ent_batch_indexes(ent *e) {
  size_t j = 0;
  for (size_t i = 0; i < e->nb; i++) {
    while (j < e->qn && e->q[j].seq != e->bseq[i]) j++;
    if (j == e->qn) return false;
    e->bidx[i] = j++;
  }
  return true;
}

/* The orchestration is finished: locks it still holds are released. */
static void release_locks_of(dts_hub *h, inst *holder) {
  /* only orchestrations that asked for locks scan the entities */
  if (!holder->may_hold_locks || h->nlocked <= 0) return;
  holder->may_hold_locks = false;
  const char *orch = holder->id;
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&h->ents, &it, &k, &v);) {
    ent *e = v;
    if (e->locked_by == NULL || strcmp(e->locked_by, orch) != 0) continue;
    DTS_INFO("hub", "[%s] %s: lock released, its holder %s finished", h->name, e->id, orch);
    set_str(&e->locked_by, NULL);
    set_str(&e->lock_cs, NULL);
    h->nlocked--;
    ent_touch(h, e);
  }
}

/* An orchestration's sendEntityMessage action: route it. */
static void route_from_orchestration(dts_hub *h, inst *in, const SendEntityMessageAction *sm) {
  int64_t now = (int64_t)dts_wall_ns();
  HistoryEvent e = HISTORY_EVENT__INIT;
  switch (sm->entity_message_type_case) {
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_SIGNALED: {
    const EntityOperationSignaledEvent *s = sm->entity_operation_signaled;
    const char *target = dts_sv_get(s->target_instance_id);
    if (target == NULL || dts_entity_id_problem(target)) break;
    route_signal(h, target, s->operation, dts_sv_get(s->input), s->request_id, dts_ts_to_ns(s->scheduled_time));
    break;
  }
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_CALLED: {
    EntityOperationCalledEvent c = *sm->entity_operation_called; /* shallow: message form */
    const char *target = dts_sv_get(c.target_instance_id);
    if (target == NULL || dts_entity_id_problem(target)) break;
    Google__Protobuf__StringValue pid, pex;
    c.parent_instance_id = dts_sv(&pid, in->id);
    c.parent_execution_id = dts_sv(&pex, in->exec_id);
    c.target_instance_id = NULL;
    e.event_type_case = EV(ENTITY_OPERATION_CALLED);
    e.entity_operation_called = &c;
    ent_enqueue(h, target, QM_CALL, ev_pack(&e, -1, now), in->id, in->exec_id, c.request_id);
    break;
  }
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_LOCK_REQUESTED: {
    EntityLockRequestedEvent l = *sm->entity_lock_requested;
    if (l.n_lock_set == 0 || dts_entity_id_problem(l.lock_set[0])) break;
    Google__Protobuf__StringValue pid;
    l.parent_instance_id = dts_sv(&pid, in->id);
    l.position = 0;
    in->may_hold_locks = true;
    e.event_type_case = EV(ENTITY_LOCK_REQUESTED);
    e.entity_lock_requested = &l;
    ent_enqueue(h, l.lock_set[0], QM_LOCK, ev_pack(&e, -1, now), in->id, NULL, NULL);
    break;
  }
  case SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_UNLOCK_SENT: {
    EntityUnlockSentEvent u = *sm->entity_unlock_sent;
    const char *target = dts_sv_get(u.target_instance_id);
    if (target == NULL || dts_entity_id_problem(target)) break;
    Google__Protobuf__StringValue pid;
    u.parent_instance_id = dts_sv(&pid, in->id);
    u.target_instance_id = NULL;
    e.event_type_case = EV(ENTITY_UNLOCK_SENT);
    e.entity_unlock_sent = &u;
    ent_enqueue(h, target, QM_UNLOCK, ev_pack(&e, -1, now), in->id, NULL, NULL);
    break;
  }
  default:
    break;
  }
}

/* ---- entity RPCs ------------------------------------------------------------ */

static void on_signal_entity(dts_hub *h, dts_call *c, SignalEntityRequest *r) {
  const char *why = dts_entity_id_problem(r->instance_id);
  if (why != NULL) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "invalid entity id '%.120s': %s", r->instance_id, why);
    return;
  }
  if (r->name[0] == '\0') {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "the operation name must not be empty");
    return;
  }
  if (!payload_ok(h, c, "operation input", dts_sv_get(r->input))) return;
  if (r->request_id[0] != '\0' && (why = dts_short_id_problem(r->request_id)) != NULL) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "request id %s", why);
    return;
  }
  route_signal(h, r->instance_id, r->name, dts_sv_get(r->input), r->request_id, dts_ts_to_ns(r->scheduled_time));
  SignalEntityResponse resp = SIGNAL_ENTITY_RESPONSE__INIT;
  answer_msg(h, c, &resp.base);
}

typedef struct ent_meta_buf {
  EntityMetadata m;
  Google__Protobuf__Timestamp ts;
  Google__Protobuf__StringValue lb, st;
} ent_meta_buf;

static void ent_meta(ent_meta_buf *b, const ent *e, bool with_state) {
  entity_metadata__init(&b->m);
  b->m.instance_id = e->id;
  b->m.last_modified_time = dts_ts_from_ns(&b->ts, e->modified);
  b->m.backlog_queue_size = (int32_t)e->qn;
  b->m.locked_by = dts_sv(&b->lb, e->locked_by);
  if (with_state) b->m.serialized_state = dts_sv(&b->st, e->state);
}

static void on_get_entity(dts_hub *h, dts_call *c, GetEntityRequest *r) {
  ent *e = dts_map_get(&h->ents, r->instance_id);
  GetEntityResponse resp = GET_ENTITY_RESPONSE__INIT;
  ent_meta_buf b;
  if (e != NULL && e->state != NULL) {
    resp.exists = true;
    ent_meta(&b, e, r->include_state);
    resp.entity = &b.m;
  }
  answer_msg(h, c, &resp.base);
}

/* Entities in id order, a page at a time: the store's entity records
 * ("<hub>\0E<id>", written in the same batch as every change) give the
 * order, the live entity in memory gives the state.  At most `want` ids
 * with `prefix`, after `after`, looking at no more than the scan budget;
 * *more says whether the walk stopped before the end. */
typedef struct ent_walk {
  dts_hub *h;
  const char *prefix;
  size_t plen;
  const char *after;
  size_t want, budget;
  ent **v;
  size_t n;
  bool more;
  bool (*keep)(const ent *e, void *ctx);
  void *ctx;
  char last[DTS_ID_MAX + 1]; /* the last id looked at */
} ent_walk;

static bool ent_walk_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v;
  (void)vlen;
  ent_walk *w = c;
  size_t off = w->h->namelen + 2, n = klen - off;
  if (n < w->plen || memcmp(k + off, w->prefix, w->plen) != 0) return false;
  if (n > DTS_ID_MAX) return true;
  char id[DTS_ID_MAX + 1];
  memcpy(id, k + off, n);
  id[n] = '\0';
  if (w->after != NULL && strcmp(id, w->after) <= 0) return true;
  if (w->n == w->want || w->budget == 0) {
    w->more = true;
    return false;
  }
  w->budget--;
  memcpy(w->last, id, n + 1);
  ent *e = dts_map_get(&w->h->ents, id);
  if (e != NULL && !e->dead && (w->keep == NULL || w->keep(e, w->ctx))) w->v[w->n++] = e;
  return true;
}

static void ent_walk_run(ent_walk *w) {
  dts_hub *h = w->h;
  w->v = dts_calloc(w->want ? w->want : 1, sizeof(ent *));
  key pre, k;
  key_id(&pre, h, 'E', w->prefix);
  k = pre;
  if (w->after != NULL && strcmp(w->after, w->prefix) > 0) key_id(&k, h, 'E', w->after);
  scan(h, pre.b, pre.n, k.b, k.n, ent_walk_visit, w);
}

typedef struct ent_filter {
  const EntityQuery *q;
} ent_filter;

static bool ent_query_keep(const ent *e, void *ctx) {
  const EntityQuery *q = ((ent_filter *)ctx)->q;
  bool transient = e->state == NULL;
  if (transient && (!q->include_transient || (e->qn == 0 && e->locked_by == NULL))) return false;
  if (q->last_modified_from && e->modified < dts_ts_to_ns(q->last_modified_from)) return false;
  if (q->last_modified_to && e->modified > dts_ts_to_ns(q->last_modified_to)) return false;
  return true;
}

static void on_query_entities(dts_hub *h, dts_call *c, QueryEntitiesRequest *r) {
  EntityQuery empty = ENTITY_QUERY__INIT;
  EntityQuery *q = r->query ? r->query : &empty;
  const char *prefix = dts_sv_get(q->instance_id_starts_with), *after = dts_sv_get(q->continuation_token);
  if ((prefix && strlen(prefix) > DTS_ID_MAX) || (after && strlen(after) > DTS_ID_MAX)) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "instanceIdStartsWith and continuationToken are at most 100 characters");
    return;
  }
  size_t page = q->page_size && q->page_size->value > 0 ? (size_t)q->page_size->value : 100;
  if (page > (size_t)h->cfg.limits.max_page) page = (size_t)h->cfg.limits.max_page;
  ent_filter ef = {q};
  ent_walk w = {.h = h, .prefix = prefix ? prefix : "", .plen = prefix ? strlen(prefix) : 0,
                .after = after && after[0] ? after : NULL, .want = page,
                .budget = (size_t)h->cfg.limits.scan_budget, .keep = ent_query_keep, .ctx = &ef};
  ent_walk_run(&w);
  ent_meta_buf *mb = dts_calloc(w.n ? w.n : 1, sizeof(*mb));
  EntityMetadata **mp = dts_calloc(w.n ? w.n : 1, sizeof(*mp));
  for (size_t i = 0; i < w.n; i++) {
    ent_meta(&mb[i], w.v[i], q->include_state);
    mp[i] = &mb[i].m;
  }
  QueryEntitiesResponse resp = QUERY_ENTITIES_RESPONSE__INIT;
  Google__Protobuf__StringValue tok;
  resp.entities = mp;
  resp.n_entities = w.n;
  if (w.more) resp.continuation_token = dts_sv(&tok, w.last);
  if (!rd_answer(h, c)) answer_msg(h, c, &resp.base);
  dts_free(mb);
  dts_free(mp);
  dts_free(w.v);
}

static bool ent_empty(const ent *e) {
  return e->state == NULL && e->qn == 0 && e->locked_by == NULL && e->leased_to == NULL && !e->returned &&
         e->pending == 0 && !e->rl.queued && !e->dead;
}

/* CleanEntityStorage, a page of entities per call (the SDKs call again
 * while a continuation token comes back). */
static void on_clean_entities(dts_hub *h, dts_call *c, CleanEntityStorageRequest *r) {
  int removed = 0, released = 0;
  const char *after = dts_sv_get(r->continuation_token);
  if (after == NULL) after = "";
  if (strlen(after) > DTS_ID_MAX) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "continuationToken was not made by this server");
    return;
  }
  ent_walk w = {.h = h, .prefix = "", .after = after[0] ? after : NULL, .want = (size_t)h->cfg.limits.purge_chunk,
                .budget = (size_t)h->cfg.limits.scan_budget};
  ent_walk_run(&w);
  if (rd_answer(h, c)) {
    dts_free(w.v);
    return;
  }
  for (size_t i = 0; i < w.n; i++) {
    ent *e = w.v[i];
    if (r->release_orphaned_locks && e->locked_by != NULL) {
      bool failed;
      inst *o = find_quiet(h, e->locked_by, &failed);
      if (!failed && (o == NULL || terminal(o->status))) { /* a holder that cannot be read is not orphaned */
        set_str(&e->locked_by, NULL);
        set_str(&e->lock_cs, NULL);
        h->nlocked--;
        ent_touch(h, e);
        released++;
      }
    }
    if (r->remove_empty_entities && ent_empty(e)) {
      key kk;
      key_ent(&kk, h, e->id);
      cur(h);
      dts_batch_del(h->batch, kk.b, kk.n);
      dts_map_del(&h->ents, e->id);
      ent_free(e);
      removed++;
    }
  }
  CleanEntityStorageResponse resp = CLEAN_ENTITY_STORAGE_RESPONSE__INIT;
  resp.empty_entities_removed = removed;
  resp.orphaned_locks_released = released;
  Google__Protobuf__StringValue tok;
  if (w.more) resp.continuation_token = dts_sv(&tok, w.last);
  answer_msg(h, c, &resp.base);
  dts_free(w.v);
}

/* PurgeInstances with an entity id: its state, queue and record go. */
static int purge_entity(dts_hub *h, const char *id) {
  ent *e = dts_map_get(&h->ents, id);
  if (e == NULL || e->leased_to != NULL || e->returned || e->pending > 0 || e->rl.queued) return 0;
  key k;
  cur(h);
  for (size_t i = 0; i < e->qn; i++) {
    key_entq(&k, h, e->id, e->q[i].seq);
    dts_batch_del(h->batch, k.b, k.n);
  }
  key_ent(&k, h, e->id);
  dts_batch_del(h->batch, k.b, k.n);
  if (e->locked_by != NULL) h->nlocked--;
  dts_map_del(&h->ents, e->id);
  ent_free(e);
  return 1;
}

static void on_complete_entity(dts_hub *h, dts_call *c, EntityBatchResult *r) {
  void *v = r->completion_token[0] == 'e' ? dts_map_get(&h->tokens, r->completion_token) : NULL;
  if (v == NULL) {
    log_stale(h, "stale entity completion (token '%.40s'): ignored", r->completion_token);
    atomic_fetch_add_explicit(&h->st_stale, 1, memory_order_relaxed);
    complete_ok(h, c);
    return;
  }
  ent *e = v;
  if (e->returned) { /* back in the queue, not leased again: still its batch */
    rq_unlink(&h->eq, &e->rl);
    e->returned = false;
  }
  if (!ent_batch_indexes(e)) {
    DTS_WARN("hub", "[%s] %s: completion for operations no longer queued: ignored", h->name, e->id);
    ent_end_lease(h, e);
    ent_step(h, e);
    complete_ok(h, c);
    return;
  }
  if (r->failure_details != NULL) { /* the batch as a whole failed: try again later */
    DTS_WARN("hub", "[%s] %s: batch failed (%.200s); retrying", h->name, e->id, r->failure_details->error_message);
    ent_unlease(h, e, h->cfg.abandon_delay_ns);
    complete_ok(h, c);
    return;
  }
  if (r->entity_state && strlen(r->entity_state->value) > h->cfg.max_payload) {
    fail(h, c, DTS_ST_INVALID_ARGUMENT, "entity state is over the payload limit of %zu bytes", h->cfg.max_payload);
    ent_unlease(h, e, h->cfg.abandon_delay_ns);
    return;
  }
  int64_t now = (int64_t)dts_wall_ns();
  size_t n = r->n_results < e->nb ? r->n_results : e->nb;
  /* every read first (the callers its results go to, the orchestrations it
   * starts): one that fails changes nothing, and the batch is retried */
  for (size_t i = 0; i < n; i++)
    if (e->q[e->bidx[i]].kind == QM_CALL && e->q[e->bidx[i]].parent != NULL) find(h, e->q[e->bidx[i]].parent);
  for (size_t i = 0; i < r->n_actions; i++)
    if (r->actions[i]->operation_action_type_case == OPERATION_ACTION__OPERATION_ACTION_TYPE_START_NEW_ORCHESTRATION)
      find(h, r->actions[i]->start_new_orchestration->instance_id);
  if (rd_answer(h, c)) {
    ent_return(h, e);
    return;
  }
  cur(h);
  /* results of calls go to their orchestrations */
  for (size_t i = 0; i < n; i++) {
    qmsg *m = &e->q[e->bidx[i]];
    if (m->kind != QM_CALL || m->parent == NULL) continue;
    inst *o = find(h, m->parent);
    if (o == NULL || (m->parent_exec && strcmp(m->parent_exec, o->exec_id) != 0)) continue;
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
    inbox_add(h, o, ev_pack(&he, -1, now));
  }
  /* the processed operations leave the queue: one compaction pass (the
   * batch's indexes are increasing), not one memmove per operation */
  if (n > 0) {
    key k;
    size_t out = 0, bi = 0;
    for (size_t i = 0; i < e->qn; i++) {
      if (bi < n && e->bidx[bi] == i) {
        key_entq(&k, h, e->id, e->q[i].seq);
        dts_batch_del(h->batch, k.b, k.n);
        qmsg_free(&e->q[i]);
        bi++;
        continue;
      }
      e->q[out++] = e->q[i];
    }
    e->qn = out;
    ent_touch(h, e);
  }
  set_str(&e->state, dts_sv_get(r->entity_state));
  e->modified = now;
  /* actions: signals to entities, new orchestrations */
  for (size_t i = 0; i < r->n_actions; i++) {
    const OperationAction *a = r->actions[i];
    if (a->operation_action_type_case == OPERATION_ACTION__OPERATION_ACTION_TYPE_SEND_SIGNAL) {
      const SendSignalAction *s = a->send_signal;
      if (dts_entity_id_problem(s->instance_id) == NULL)
        route_signal(h, s->instance_id, s->name, dts_sv_get(s->input), NULL, dts_ts_to_ns(s->scheduled_time));
    } else if (a->operation_action_type_case == OPERATION_ACTION__OPERATION_ACTION_TYPE_START_NEW_ORCHESTRATION) {
      const StartNewOrchestrationAction *so = a->start_new_orchestration;
      char gen[37];
      const char *id = so->instance_id;
      if (id[0] == '\0') {
        dts_uuid(gen);
        id = gen;
      }
      inst *o = find(h, id);
      if (dts_instance_id_problem(id) != NULL || (o != NULL && !terminal(o->status))) {
        DTS_WARN("hub", "[%s] %s: cannot start orchestration '%.120s'", h->name, e->id, id);
        continue;
      }
      if (o == NULL) o = inst_new(h, id);
      else inst_clear_execution(h, o);
      start_spec sp = {so->name, dts_sv_get(so->version), dts_sv_get(so->input), NULL, dts_ts_to_ns(so->scheduled_time),
                       NULL, 0, NULL, so->parent_trace_context};
      inst_start(h, o, &sp);
    }
  }
  ent_end_lease(h, e);
  ent_touch(h, e);
  atomic_fetch_add_explicit(&h->st_completions, 1, memory_order_relaxed);
  complete_ok(h, c);
}

/* ======================================================================== */
/* task hub administration: wipe                                            */

/* Removes every trace of the hub's data (instances, history, inboxes,
 * activities, timers, entities, retention), in memory and in the current
 * batch.  Used by CreateTaskHub{recreateIfExists} and DeleteTaskHub. */
static bool wipe_visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v;
  (void)vlen;
  dts_batch_del(c, k, klen);
  return true;
}

/* False, with nothing changed, when the store cannot be read through. */
static bool hub_wipe(dts_hub *h) {
  key k;
  /* on disk: every key under the hub's prefix (finished instances are not
   * all in memory); find() reads nothing back until this commits */
  k_start(&k, h, '\0');
  k.n--; /* the prefix "<hub>\0" */
  dts_batch *dels = dts_batch_create();
  char msg[300];
  dts_err we = dts_store_walk(h->cfg.store, k.b, k.n, k.b, k.n, wipe_visit, dels, msg, sizeof(msg));
  if (we != DTS_OK) {
    dts_batch_destroy(dels);
    rd_fail(h, we, "cannot read the task hub's data to remove it: %s", msg);
    return false;
  }
  ticket *t = cur(h);
  dts_batch_append(h->batch, dels);
  dts_batch_destroy(dels);
  index_marker_key(&k, h);
  dts_batch_put(h->batch, k.b, k.n, "1", 1);
  if (!t->wipe) {
    t->wipe = true;
    h->wipes_pending++;
  }
  for (size_t i = 0; i < h->nevict; i++) h->evict[i]->evict_listed = false;
  h->nevict = 0;
  /* ready queues first, so nothing queued points at freed memory */
  rq_clear(&h->rq);
  rq_clear(&h->aq);
  rq_clear(&h->eq);
  const char *mk;
  void *v;
  for (size_t it = 0; dts_map_next(&h->acts, &it, &mk, &v);) act_discard(h, v, true);
  for (size_t it = 0; dts_map_next(&h->timers, &it, &mk, &v);) {
    dtimer *tm = v;
    dts_batch_del(h->batch, tm->skey, tm->klen);
    dts_map_del(&h->timers, tm->key);
    timer_free(tm);
  }
  for (size_t it = 0; dts_map_next(&h->insts, &it, &mk, &v);) {
    inst *in = v;
    while (in->waiters != NULL) { /* the instance is gone */
      waiter *w = in->waiters;
      waiter_unlink(w);
      dts_call_set_owner_data(w->call, NULL);
      dts_call_reply(w->call, instance_response(NULL, false));
      dts_call_unref(w->call);
      waiter_free(w);
    }
    inst_clear_execution(h, in); /* also drops a lease */
    key_inst(&k, h, in->id);
    dts_batch_del(h->batch, k.b, k.n);
    in->purged = true;
    dts_map_del(&h->insts, in->id);
    VEC_PUSH(h->dead, h->ndead, h->capdead, in);
  }
  atomic_store(&h->st_instances, 0);
  for (size_t it = 0; dts_map_next(&h->ents, &it, &mk, &v);) {
    ent *e = v;
    ent_end_lease(h, e);
    for (size_t i = 0; i < e->qn; i++) {
      key_entq(&k, h, e->id, e->q[i].seq);
      dts_batch_del(h->batch, k.b, k.n);
      qmsg_free(&e->q[i]);
    }
    e->qn = 0;
    key_ent(&k, h, e->id);
    dts_batch_del(h->batch, k.b, k.n);
    dts_map_del(&h->ents, e->id);
    e->dead = true;
    VEC_PUSH(h->dead_ents, h->ndead_ents, h->capdead_ents, e);
  }
  h->nlocked = 0;
  h->sweep_at.n = 0;
  retention_key(&k, h);
  dts_batch_del(h->batch, k.b, k.n);
  for (int i = 0; i < 5; i++) h->ret[i] = -1;
  return true;
}

static void hub_marker_key(key *k, const dts_hub *h) {
  /* "\0hub\0<name>": outside every hub's prefix */
  memcpy(k->b, "\0hub\0", 5);
  memcpy(k->b + 5, h->name, h->namelen);
  k->n = 5 + h->namelen;
}

static void on_create_hub(dts_hub *h, dts_call *c, CreateTaskHubRequest *r) {
  if (r->recreate_if_exists) {
    if (!hub_wipe(h)) {
      rd_answer(h, c);
      return;
    }
    DTS_INFO("hub", "[%s] recreated: all its data removed", h->name);
  }
  CreateTaskHubResponse resp = CREATE_TASK_HUB_RESPONSE__INIT;
  answer_msg(h, c, &resp.base);
}

static void on_delete_hub(dts_hub *h, dts_call *c) {
  if (!hub_wipe(h)) {
    rd_answer(h, c);
    return;
  }
  DTS_INFO("hub", "[%s] deleted: all its data removed", h->name);
  key k;
  hub_marker_key(&k, h);
  dts_batch_del(h->batch, k.b, k.n);
  for (stream *s = h->streams; s != NULL; s = s->next) { /* its workers go elsewhere */
    if (s->ended || s->closed) continue;
    dts_bufq_clear(&s->q);
    s->end_after_send = true;
    s->held = false;
    s->end_st = DTS_ST_NOT_FOUND;
    s->end_msg = "task hub deleted";
    stream_flush(h, s);
  }
  h->deleted = true;
  cur(h)->deletes = true;
  DeleteTaskHubResponse resp = DELETE_TASK_HUB_RESPONSE__INIT;
  answer_msg(h, c, &resp.base);
}

/* ======================================================================== */
/* when the store says no                                                   */

/* Whether changes can be written now.  While not, write requests are
 * refused, dispatch waits (results could not be stored) and internal
 * writers (timers, the purger, lock steps) try again later. */
static bool can_write(dts_hub *h) {
  if (h->reset_needed || h->deleted) return false; /* a deleted hub writes nothing more: its name may be reused */
  return dts_store_writable(h->cfg.store, NULL, 0) == DTS_OK;
}

/* A change did not reach the store, so memory is ahead of it: everything
 * in memory goes and is read back from the store, as at start-up.  Worker
 * streams stay connected; the items they hold are stale (their completions
 * are ignored, the items run again).  Waiters are carried over by id.
 * Tickets still in flight point at instances and entities that wait in the
 * dead lists until they come back. */
static void hub_reset(dts_hub *h) {
  h->reset_needed = false;
  h->resets++;
  DTS_ERROR("hub", "[%s] a change was not stored: reading the hub back from the store", h->name);
  rq_clear(&h->rq);
  rq_clear(&h->aq);
  rq_clear(&h->eq);
  for (size_t i = 0; i < h->nevict; i++) h->evict[i]->evict_listed = false;
  h->nevict = 0;
  const char *mk;
  void *v;
  for (size_t it = 0; dts_map_next(&h->acts, &it, &mk, &v);) act_discard(h, v, false);
  for (size_t it = 0; dts_map_next(&h->timers, &it, &mk, &v);) {
    dts_map_del(&h->timers, mk);
    timer_free(v);
  }
  waiter *carried = NULL;
  for (size_t it = 0; dts_map_next(&h->insts, &it, &mk, &v);) {
    inst *in = v;
    while (in->waiters != NULL) {
      waiter *w = in->waiters;
      waiter_unlink(w);
      w->in = NULL;
      w->prev = NULL;
      w->next = carried;
      carried = w;
    }
    orch_end_lease(h, in);
    in->purged = true;
    dts_map_del(&h->insts, mk);
    VEC_PUSH(h->dead, h->ndead, h->capdead, in);
  }
  atomic_store(&h->st_instances, 0);
  for (size_t it = 0; dts_map_next(&h->ents, &it, &mk, &v);) {
    ent *e = v;
    ent_end_lease(h, e);
    e->dead = true;
    dts_map_del(&h->ents, mk);
    VEC_PUSH(h->dead_ents, h->ndead_ents, h->capdead_ents, e);
  }
  h->nlocked = 0;
  for (stream *s = h->streams; s != NULL; s = s->next) {
    s->n_orch = s->n_act = s->n_ent = 0;
    if (s->history && s->held && !s->ended) { /* it would show what was not stored */
      s->held = false;
      s->end_st = DTS_ST_UNAVAILABLE;
      s->end_msg = "the task hub was reloaded from the store; read the history again";
      dts_bufq_clear(&s->q);
      stream_flush(h, s);
    }
  }
  DTS_ASSERT(dts_map_len(&h->tokens) == 0);
  h->epoch = dts_store_epoch(h->cfg.store);
  char why[400];
  if (load(h, true, why, sizeof(why)) != DTS_OK)
    DTS_ERROR("hub", "[%s] reading the hub back failed: %s", h->name, why);
  while (carried != NULL) {
    waiter *w = carried;
    carried = w->next;
    h->rd_code = DTS_OK;
    inst *in = find(h, w->id);
    if (in == NULL) {
      dts_call_set_owner_data(w->call, NULL);
      if (h->rd_code != DTS_OK) dts_call_fail(w->call, status_of(h->rd_code), h->rd_msg);
      else dts_call_reply(w->call, instance_response(NULL, false));
      dts_call_unref(w->call);
      waiter_free(w);
      continue;
    }
    w->in = in;
    w->prev = NULL;
    w->next = in->waiters;
    if (in->waiters) in->waiters->prev = w;
    in->waiters = w;
    check_waiters(h, in);
  }
  h->rd_code = DTS_OK;
  h->paused = true; /* resumed by the purger's tick once the store takes writes */
}

/* The purger's tick: when the store takes writes again after refusing
 * them, what waited resumes -- lock steps, ready work, dispatch. */
static void resume_if_writable(dts_hub *h) {
  if (!h->paused || !can_write(h)) return;
  h->paused = false;
  DTS_INFO("hub", "[%s] the store takes writes again: resuming", h->name);
  const char *mk;
  void *v;
  for (size_t it = 0; dts_map_next(&h->ents, &it, &mk, &v);) ent_step(h, v);
  for (size_t it = 0; dts_map_next(&h->insts, &it, &mk, &v);) make_ready(h, v);
}

/* ======================================================================== */
/* commits, timers, the behaviour                                           */


static void post_durable(dts_hub *h, dtimer *tm, uint64_t at);

/* Arms a durable timer for its wall-clock time, seen on the monotonic
 * clock: at most a day ahead (far-future times and clock jumps are looked
 * at again then; a timer is never fired early, see on_durable_timer). */
static void arm_durable(dts_hub *h, dtimer *tm) {
  if (h->shutting_down) return; /* it stays in the store for the next start */
  int64_t wall = (int64_t)dts_wall_ns();
  uint64_t in = 0;
  if (tm->fire_at > wall) {
    uint64_t d = (uint64_t)tm->fire_at - (uint64_t)wall; /* no overflow: both are int64 and fire_at > wall */
    in = d < ARM_MAX_NS ? d : ARM_MAX_NS;
  }
  post_durable(h, tm, dts_now_ns() + in);
}

static void post_durable(dts_hub *h, dtimer *tm, uint64_t at) {
  hub_timer_msg *m = (hub_timer_msg *)dts_msg_alloc(HUB_TIMER, sizeof(hub_timer_msg));
  m->hdr.drop = timer_msg_drop;
  m->what = TM_DURABLE;
  m->key = dts_strdup(tm->key);
  dts_timer_post(h->cfg.timers, at, &h->actor, &m->hdr);
}

static void send_reply(reply *r) {
  if (r->is_waiter) dts_call_set_owner_data(r->call, NULL);
  if (r->st == DTS_ST_OK) {
    dts_call_reply(r->call, r->body);
  } else {
    dts_call_fail(r->call, r->st, r->msg);
    dts_free(r->msg);
  }
  dts_call_unref(r->call);
}

/* A ticket that did not commit: its answers become the error, its effects
 * are dropped, what it touched is no longer pending on it, and memory --
 * now ahead of the store -- is read back at the end of the turn (unless a
 * reset since already did).  The caller frees the ticket. */
static void ticket_undo(dts_hub *h, ticket *t, dts_err e, const char *why) {
  dts_status st = status_of(e);
  DTS_WARN("hub", "[%s] a change was not written (%s): %zu answers fail with status %d", h->name, why, t->nreplies,
           (int)st);
  for (size_t i = 0; i < t->nreplies; i++) {
    reply *r = &t->replies[i];
    if (r->call == NULL) continue;
    if (r->is_waiter) dts_call_set_owner_data(r->call, NULL);
    dts_call_fail(r->call, st, why);
    dts_free(r->msg);
    dts_buf_free(&r->body);
    dts_call_unref(r->call);
    r->call = NULL;
  }
  for (size_t i = 0; i < t->ntouched; i++) t->touched[i]->pending--;
  for (size_t i = 0; i < t->netouched; i++) t->etouched[i]->pending--;
  gone_committed(h, t); /* the deletions did not happen: the records are still there */
  for (size_t i = 0; i < t->nopens; i++)
    for (stream *s = h->streams; s != NULL; s = s->next)
      if (s->sid == t->opens[i].serial && !s->ended) {
        dts_bufq_clear(&s->q);
        s->held = false;
        s->end_st = st;
        s->end_msg = "the history could not be read consistently; try again";
        stream_flush(h, s);
      }
  if (t->deletes) { /* the hub was not deleted after all: it goes on serving what it has */
    h->deleted = false;
    atomic_store(&h->delete_state, -1);
  }
  if (t->epoch == h->epoch) h->reset_needed = true;
}

static void ticket_fail(dts_hub *h, ticket *t, dts_err e, const char *why) {
  ticket_undo(h, t, e, why);
  dts_msg_free(&t->hdr);
}

static void on_committed(dts_hub *h, ticket *t) {
  DTS_DEBUG("hub", "[%s] committed: %zu answers, %zu instances", h->name, t->nreplies, t->ntouched);
  if (!h->cfg.inline_commit) h->inflight--;
  if (t->result != DTS_OK) { /* the storage thread refused or failed it */
    char why[400];
    if (dts_store_writable(h->cfg.store, why, sizeof(why)) == DTS_OK)
      snprintf(why, sizeof(why), "the change was refused: an earlier one in the same stream of changes failed");
    ticket_undo(h, t, t->result, why);
    return;
  }
  gone_committed(h, t);
  if (t->deletes) atomic_store(&h->delete_state, 1); /* its name may be served anew now */
  for (size_t i = 0; i < t->nreplies; i++) {
    send_reply(&t->replies[i]);
    t->replies[i].call = NULL;
  }
  for (size_t i = 0; i < t->ntouched; i++) {
    inst *in = t->touched[i];
    in->pending--;
    check_waiters(h, in);
    make_ready(h, in);
  }
  for (size_t i = 0; i < t->netouched; i++) {
    ent *e = t->etouched[i];
    e->pending--;
    ent_step(h, e);
    if (ent_empty(e)) { /* no state, nothing queued or locked: its record went in this batch, and it goes too */
      dts_map_del(&h->ents, e->id);
      ent_free(e);
    }
  }
  for (size_t i = 0; i < t->nacts; i++) {
    /* still wanted? (a later handler may have completed, replaced or
     * purged it) */
    act *a = dts_map_get(&h->acts, t->acts[i].key);
    if (a != NULL && a->serial == t->acts[i].serial) act_ready(h, a);
  }
  for (size_t i = 0; i < t->ntimers; i++) {
    dtimer *tm = dts_map_get(&h->timers, t->timers[i].key);
    if (tm != NULL && tm->serial == t->timers[i].serial) arm_durable(h, tm);
  }
  for (size_t i = 0; i < h->ndead_ents;) {
    ent *e = h->dead_ents[i];
    if (e->pending == 0 && !e->rl.queued) {
      ent_free(e);
      h->dead_ents[i] = h->dead_ents[--h->ndead_ents];
    } else {
      i++;
    }
  }
  for (size_t i = 0; i < h->ndead;) { /* free purged instances nobody points at */
    inst *in = h->dead[i];
    if (in->pending == 0 && !in->rl.queued) {
      inst_free(in);
      h->dead[i] = h->dead[--h->ndead];
    } else {
      i++;
    }
  }
  for (size_t i = 0; i < t->nopens; i++) {
    for (stream *s = h->streams; s != NULL; s = s->next) /* still open? */
      if (s->sid == t->opens[i].serial) {
        s->held = false;
        stream_flush(h, s);
        break;
      }
  }
  flush(h); /* entity lock steps may have changed state */
  pump(h);
}

static void ticket_drop(dts_msg *m) {
  ticket *t = (ticket *)m;
  for (size_t i = 0; i < t->nreplies; i++) {
    if (t->replies[i].call == NULL) continue;
    dts_free(t->replies[i].msg);
    dts_buf_free(&t->replies[i].body);
    dts_call_unref(t->replies[i].call);
  }
  dts_free(t->replies);
  dts_free(t->touched);
  for (size_t i = 0; i < t->nacts; i++) dts_free(t->acts[i].key);
  for (size_t i = 0; i < t->ntimers; i++) dts_free(t->timers[i].key);
  dts_free(t->acts);
  dts_free(t->timers);
  dts_free(t->opens);
  dts_free(t->etouched);
  dts_free(t->gone); /* the gone records themselves belong to h->gone */
}

static void timer_free(dtimer *tm) {
  dts_free(tm->key);
  dts_free(tm->skey);
  dts_free(tm->inst_id);
  dts_free(tm->exec_id);
  dts_buf_free(&tm->event);
  dts_free(tm);
}

static void on_durable_timer(dts_hub *h, const char *mkey) {
  if (h->shutting_down) return;
  dtimer *tm = dts_map_get(&h->timers, mkey);
  if (tm == NULL) return;
  int64_t wall = (int64_t)dts_wall_ns();
  if (tm->fire_at > wall) { /* the clocks disagree: never fire early */
    arm_durable(h, tm);
    return;
  }
  if (!can_write(h)) { /* what it would write could not be stored: later */
    h->paused = true;
    post_durable(h, tm, dts_now_ns() + RETRY_NS);
    return;
  }
  inst *in = NULL;
  if (tm->inst_id[0] != '@') {
    bool failed;
    in = find_quiet(h, tm->inst_id, &failed);
    if (failed) { /* its instance cannot be read now: never guess, try again */
      post_durable(h, tm, dts_now_ns() + RETRY_NS);
      return;
    }
  }
  dts_map_del(&h->timers, tm->key);
  cur(h);
  dts_batch_del(h->batch, tm->skey, tm->klen);
  if (tm->inst_id[0] == '@') { /* a scheduled entity signal; exec_id holds its request id */
    ent_enqueue(h, tm->inst_id, QM_SIGNAL, tm->event, NULL, NULL, tm->exec_id);
    tm->event = (dts_buf){NULL, 0};
    timer_free(tm);
    flush(h);
    return;
  }
  if (in != NULL && strcmp(in->exec_id, tm->exec_id) == 0) {
    inbox_add(h, in, tm->event);
    tm->event = (dts_buf){NULL, 0};
  }
  timer_free(tm);
  flush(h);
}

static void on_wake(dts_hub *h, const char *id) {
  if (h->shutting_down) return;
  inst *in = dts_map_get(&h->insts, id);
  if (in != NULL) {
    in->wake_armed = false;
    make_ready(h, in);
  } else if (id[0] == '@') {
    ent *e = dts_map_get(&h->ents, id);
    if (e != NULL) {
      e->wake_armed = false;
      ent_step(h, e);
    }
  } else {
    act *a = dts_map_get(&h->acts, id);
    if (a != NULL) act_ready(h, a);
  }
  flush(h);
  pump(h);
}

static void arm_tick(dts_hub *h) {
  if (h->shutting_down) return;
  dts_msg *m = dts_msg_alloc(HUB_TICK, sizeof(dts_msg));
  dts_timer_post(h->cfg.timers, dts_now_ns() + h->cfg.ping_interval_ns / 3 + 1, &h->actor, m);
}

/* Periodic: HealthPing on streams idle for the ping interval. */
static void on_tick(dts_hub *h) {
  if (h->shutting_down) {
    h->tick_armed = false;
    return;
  }
  uint64_t now = dts_now_ns();
  for (stream *s = h->streams; s != NULL; s = s->next) {
    if (s->q.len > 0 || !usable(s) || now - s->last_send < h->cfg.ping_interval_ns) continue;
    WorkItem wi = WORK_ITEM__INIT;
    HealthPing hp = HEALTH_PING__INIT;
    wi.request_case = WORK_ITEM__REQUEST_HEALTH_PING;
    wi.health_ping = &hp;
    stream_enqueue(h, s, dts_pb_pack(&wi.base));
  }
  arm_tick(h);
}

static void on_shutdown(dts_hub *h) {
  h->shutting_down = true;
  for (stream *s = h->streams; s != NULL; s = s->next) {
    if (s->ended || s->closed) continue;
    dts_bufq_clear(&s->q);
    s->end_after_send = true;
    s->held = false;
    s->end_st = DTS_ST_UNAVAILABLE;
    s->end_msg = "dtsd is shutting down; reconnect";
    stream_flush(h, s);
  }
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&h->insts, &it, &k, &v);) {
    inst *in = v;
    while (in->waiters != NULL) {
      waiter *w = in->waiters;
      waiter_unlink(w);
      dts_call_set_owner_data(w->call, NULL);
      dts_call_fail(w->call, DTS_ST_UNAVAILABLE, "dtsd is shutting down");
      dts_call_unref(w->call);
      waiter_free(w);
    }
  }
  /* quiesced is set by hub_turn_end, after this turn's last batch went to
   * the store: teardown closes the store once it sees the flag. */
}

static void on_call_event(dts_hub *h, dts_call_event *e) {
  void *od = dts_call_owner_data(e->call);
  if (od == NULL) return; /* already released */
  if (e->hdr.kind == DTS_CALL_CLOSED) {
    /* the owner data is a stream (if in the stream list) or a waiter */
    for (stream *s = h->streams; s != NULL; s = s->next) {
      if (s == od) {
        s->closed = true;
        DTS_INFO("hub", "[%s] worker stream closed", h->name);
        stream_release(h, s);
        pump(h);
        return;
      }
    }
    waiter *w = od;
    waiter_unlink(w);
    dts_call_set_owner_data(w->call, NULL);
    dts_call_unref(w->call);
    waiter_free(w);
    return;
  }
  if (e->hdr.kind == DTS_CALL_DRAINED) {
    for (stream *s = h->streams; s != NULL; s = s->next)
      if (s == od) {
        s->congested = false;
        pump(h);
        return;
      }
    return;
  }
  /* DTS_CALL_SENT: a stream's final status went out, or a send failed */
  for (stream *s = h->streams; s != NULL; s = s->next) {
    if (s != od) continue;
    if (!e->ok) s->ended = true; /* dead: wait for CLOSED */
    return;
  }
}

/* The methods that change state (the rest only read or lease). */
static const bool writes[DTS_M_COUNT] = {
    [DTS_M_START_INSTANCE] = true,      [DTS_M_RAISE_EVENT] = true,        [DTS_M_TERMINATE] = true,
    [DTS_M_SUSPEND] = true,             [DTS_M_RESUME] = true,             [DTS_M_PURGE_INSTANCES] = true,
    [DTS_M_RESTART_INSTANCE] = true,    [DTS_M_REWIND_INSTANCE] = true,    [DTS_M_SKIP_GRACEFUL_TERMINATIONS] = true,
    [DTS_M_COMPLETE_ORCHESTRATOR] = true, [DTS_M_COMPLETE_ACTIVITY] = true, [DTS_M_COMPLETE_ENTITY] = true,
    [DTS_M_SIGNAL_ENTITY] = true,       [DTS_M_CLEAN_ENTITY_STORAGE] = true, [DTS_M_CREATE_TASK_HUB] = true,
    [DTS_M_DELETE_TASK_HUB] = true,     [DTS_M_ADMIN_SET_RETENTION] = true,
};

/* A change request while the store refuses writes is answered at once, with
 * the store's reason (RESOURCE_EXHAUSTED for a full disk, else INTERNAL),
 * before it changes anything.  A completion's work item goes back to its
 * queue with its token still valid: the same completion sent again once the
 * store takes writes is applied; else the item runs again. */
static bool refused(dts_hub *h, dts_call *c, int method, ProtobufCMessage *req) {
  char why[400] = "";
  if (h->deleted) {
    fail(h, c, DTS_ST_NOT_FOUND, "task hub '%s' was deleted", h->name);
    return true;
  }
  dts_err e = h->reset_needed ? DTS_EIO : dts_store_writable(h->cfg.store, why, sizeof(why));
  if (e == DTS_OK) return false;
  if (why[0] == '\0') snprintf(why, sizeof(why), "the task hub is reloading from the store after a failed write");
  h->paused = true;
  const char *tok = NULL;
  if (method == DTS_M_COMPLETE_ORCHESTRATOR) tok = ((OrchestratorResponse *)req)->completion_token;
  if (method == DTS_M_COMPLETE_ACTIVITY) tok = ((ActivityResponse *)req)->completion_token;
  if (method == DTS_M_COMPLETE_ENTITY) tok = ((EntityBatchResult *)req)->completion_token;
  void *held = tok != NULL && tok[0] != '\0' ? dts_map_get(&h->tokens, tok) : NULL;
  if (held != NULL && tok[0] == 'o' && ((inst *)held)->leased_to != NULL) orch_return(h, held);
  if (held != NULL && tok[0] == 'a' && ((act *)held)->leased_to != NULL) act_return(h, held);
  if (held != NULL && tok[0] == 'e' && ((ent *)held)->leased_to != NULL) ent_return(h, held);
  if (method == DTS_M_DELETE_TASK_HUB) atomic_store(&h->delete_state, -1); /* the bridge serves it again */
  fail(h, c, status_of(e), "%s", why);
  return true;
}

static void behaviour(dts_actor *self, dts_msg *m) {
  dts_hub *h = (dts_hub *)self;
  /* a read that fails is answered by the handler that made it; if the
   * handler changed state anyway, nothing of this turn is written (flush) */
  h->rd_code = DTS_OK;
  h->mark = changes(h);
  handle(h, m);
  if (h->rd_code != DTS_OK && changes(h) != h->mark) h->poisoned = true;
}

static void handle(dts_hub *h, dts_msg *m) {
  switch (m->kind) {
  case HUB_RPC: {
    hub_rpc *r = (hub_rpc *)m;
    DTS_DEBUG("hub", "[%s] %s", h->name, dts_methods[r->method].name);
    bool keep = false;
    if (writes[r->method] && refused(h, r->call, r->method, r->req)) break;
    switch (r->method) {
    case DTS_M_START_INSTANCE: on_start(h, r->call, (CreateInstanceRequest *)r->req); break;
    case DTS_M_GET_INSTANCE: on_get(h, r->call, (GetInstanceRequest *)r->req); break;
    case DTS_M_WAIT_START: on_wait(h, r->call, (GetInstanceRequest *)r->req, false); break;
    case DTS_M_WAIT_COMPLETION: on_wait(h, r->call, (GetInstanceRequest *)r->req, true); break;
    case DTS_M_RAISE_EVENT: on_raise(h, r->call, (RaiseEventRequest *)r->req); break;
    case DTS_M_TERMINATE: on_terminate(h, r->call, (TerminateRequest *)r->req); break;
    case DTS_M_SUSPEND: {
      SuspendRequest *q = (SuspendRequest *)r->req;
      on_suspend_resume(h, r->call, q->instance_id, dts_sv_get(q->reason), true);
      break;
    }
    case DTS_M_RESUME: {
      ResumeRequest *q = (ResumeRequest *)r->req;
      on_suspend_resume(h, r->call, q->instance_id, dts_sv_get(q->reason), false);
      break;
    }
    case DTS_M_GET_WORK_ITEMS:
      on_get_work_items(h, r->call, (GetWorkItemsRequest *)r->req);
      keep = true;
      break;
    case DTS_M_ADMIN_SET_RETENTION: on_set_retention(h, r->call, (Dtsd__Admin__RetentionPolicy *)r->req); break;
    case DTS_M_ADMIN_GET_RETENTION: on_get_retention(h, r->call); break;
    case DTS_M_STREAM_HISTORY: on_stream_history(h, r->call, (StreamInstanceHistoryRequest *)r->req); break;
    case DTS_M_QUERY_INSTANCES: on_query(h, r->call, (QueryInstancesRequest *)r->req); break;
    case DTS_M_LIST_INSTANCE_IDS: on_list_ids(h, r->call, (ListInstanceIdsRequest *)r->req); break;
    case DTS_M_PURGE_INSTANCES: on_purge(h, r->call, (PurgeInstancesRequest *)r->req); break;
    case DTS_M_CREATE_TASK_HUB: on_create_hub(h, r->call, (CreateTaskHubRequest *)r->req); break;
    case DTS_M_DELETE_TASK_HUB: on_delete_hub(h, r->call); break;
    case DTS_M_SIGNAL_ENTITY: on_signal_entity(h, r->call, (SignalEntityRequest *)r->req); break;
    case DTS_M_GET_ENTITY: on_get_entity(h, r->call, (GetEntityRequest *)r->req); break;
    case DTS_M_QUERY_ENTITIES: on_query_entities(h, r->call, (QueryEntitiesRequest *)r->req); break;
    case DTS_M_CLEAN_ENTITY_STORAGE: on_clean_entities(h, r->call, (CleanEntityStorageRequest *)r->req); break;
    case DTS_M_COMPLETE_ENTITY: on_complete_entity(h, r->call, (EntityBatchResult *)r->req); break;
    case DTS_M_ABANDON_ENTITY: {
      const char *tok = ((AbandonEntityTaskRequest *)r->req)->completion_token;
      void *held = tok[0] == 'e' ? dts_map_get(&h->tokens, tok) : NULL;
      if (held != NULL) ent_unlease(h, held, h->cfg.abandon_delay_ns);
      AbandonEntityTaskResponse ar = ABANDON_ENTITY_TASK_RESPONSE__INIT;
      answer_msg(h, r->call, &ar.base);
      break;
    }
    case DTS_M_REWIND_INSTANCE: on_rewind(h, r->call, (RewindInstanceRequest *)r->req); break;
    case DTS_M_RESTART_INSTANCE: on_restart(h, r->call, (RestartInstanceRequest *)r->req); break;
    case DTS_M_SKIP_GRACEFUL_TERMINATIONS:
      on_skip_graceful(h, r->call, (SkipGracefulOrchestrationTerminationsRequest *)r->req);
      break;
    case DTS_M_COMPLETE_ORCHESTRATOR:
      keep = on_complete_orch(h, r->call, (OrchestratorResponse *)r->req);
      break;
    case DTS_M_COMPLETE_ACTIVITY: on_complete_act(h, r->call, (ActivityResponse *)r->req); break;
    case DTS_M_ABANDON_ORCHESTRATOR:
      on_abandon(h, r->call, ((AbandonOrchestrationTaskRequest *)r->req)->completion_token, true);
      break;
    case DTS_M_ABANDON_ACTIVITY:
      on_abandon(h, r->call, ((AbandonActivityTaskRequest *)r->req)->completion_token, false);
      break;
    default:
      fail(h, r->call, DTS_ST_INTERNAL, "%s reached the task hub, which does not serve it", dts_methods[r->method].path);
      break;
    }
    if (keep) r->req = NULL;
    /* flushed at the end of the turn (hub_turn_end): one commit carries
     * every request of the turn */
    break;
  }
  case HUB_COMMITTED:
    on_committed(h, (ticket *)m);
    break;
  case HUB_TIMER: {
    hub_timer_msg *t = (hub_timer_msg *)m;
    if (t->what == TM_DURABLE) on_durable_timer(h, t->key);
    else on_wake(h, t->key);
    break;
  }
  case HUB_TICK:
    on_tick(h);
    break;
  case HUB_PURGE:
    on_purge_tick(h);
    break;
  case HUB_SHUTDOWN:
    on_shutdown(h);
    break;
  case DTS_CALL_SENT:
  case DTS_CALL_CLOSED:
  case DTS_CALL_DRAINED:
    on_call_event(h, (dts_call_event *)m);
    break;
  default:
    DTS_WARN("hub", "unknown message kind %u", m->kind);
    break;
  }
}

/* Inline commits: runs each written ticket's effects, oldest first; their
 * own flushes append to the list and are run by the same loop. */
static void drain_done(dts_hub *h) {
  for (size_t i = 0; i < h->ndone; i++) {
    ticket *t = h->done[i];
    on_committed(h, t);
    dts_msg_free(&t->hdr);
  }
  h->ndone = 0;
}

/* End of a turn: commit what the turn's messages changed, then dispatch. */
static void hub_turn_end(dts_actor *self) {
  dts_hub *h = (dts_hub *)self;
  flush(h);
  drain_done(h);
  if (h->reset_needed && !h->shutting_down) hub_reset(h);
  pump(h);
  if (h->cur != NULL) { /* what dispatching changed */
    flush(h);
    drain_done(h);
  }
  if (h->nevict > 0) evict_idle(h);
  if (h->shutting_down && !atomic_load(&h->quiesced)) {
    flush(h); /* anything pump wrote */
    drain_done(h);
    atomic_store(&h->quiesced, true);
  }
}

static void rpc_drop(dts_msg *m) {
  hub_rpc *r = (hub_rpc *)m;
  if (r->req != NULL) protobuf_c_message_free_unpacked(r->req, NULL);
  if (r->call != NULL) dts_call_unref(r->call);
}

static void timer_msg_drop(dts_msg *m) { dts_free(((hub_timer_msg *)m)->key); }

/* ======================================================================== */
/* recovery: rebuild the hub from the store                                 */


/* "<hub>\0<H|N><id>\0<seq:be64>" -> an encoded HistoryEvent.  History
 * events are numbered 0, 1, 2... without gaps (their number is their place);
 * inbox events by their arrival sequence. */
static bool load_event(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  loadctx *lc = c;
  inst *in = lc->in;
  if (klen != lc->plen + 8) {
    lc->err = DTS_ECORRUPT;
    return false;
  }
  uint64_t seq = be64(k + klen - 8);
  if (k[lc->h->namelen + 1] == 'H') {
    if (seq != in->hist.n) {
      lc->err = DTS_ECORRUPT;
      return false;
    }
    ev_push(&in->hist, dts_buf_copy(v, vlen), UINT64_MAX);
  } else {
    if (seq == UINT64_MAX) {
      lc->err = DTS_ECORRUPT;
      return false;
    }
    ev_push(&in->inbox, dts_buf_copy(v, vlen), seq);
    if (seq >= in->next_inbox_seq) in->next_inbox_seq = seq + 1;
  }
  return lc->left < 0 || --lc->left > 0;
}

/* A key as text for a log line: the hub's name, then the type letter and
 * the rest with every byte that is not printable as \xNN. */
static void key_text(const dts_hub *h, const char *k, size_t klen, char *out, size_t outlen) {
  size_t o = 0, i = klen > h->namelen + 1 ? h->namelen + 1 : 0;
  int w = snprintf(out, outlen, "%s:", h->name);
  o = w > 0 ? (size_t)w : 0;
  for (; i < klen && o + 5 < outlen; i++) {
    unsigned char ch = (unsigned char)k[i];
    if (ch >= 0x20 && ch < 0x7f && ch != '\\') out[o++] = (char)ch;
    else o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
  }
  if (i < klen && o + 4 < outlen) o += (size_t)snprintf(out + o, outlen - o, "...");
  out[o < outlen ? o : outlen - 1] = '\0';
}

/* A record start-up cannot read: never skipped quietly.  It stays in the
 * store (a later dtsd may read it); it is logged with its key, counted, and
 * the count is reported when the load ends (and in the hub's stats). */
static void unreadable(dts_hub *h, const char *k, size_t klen, const char *why) {
  char kt[300];
  key_text(h, k, klen, kt, sizeof(kt));
  DTS_ERROR("hub", "[%s] unreadable record %s: %s; skipped", h->name, kt, why);
  h->unreadable++;
}

/* "<id>\0<exec>\0<u32>" after the type byte; false unless the key has that
 * shape with an id and an execution (or request) id dtsd could have written. */
static bool split_work_key(const dts_hub *h, const char *k, size_t klen, char *id, char *exec, int32_t *num) {
  size_t off = h->namelen + 2, i = 0;
  while (off < klen && k[off] != '\0' && i < DTS_ID_MAX + 1) id[i++] = k[off++];
  id[i] = '\0';
  if (off >= klen || k[off] != '\0') return false;
  off++;
  i = 0;
  while (off < klen && k[off] != '\0' && i < DTS_ID_MAX + 1) exec[i++] = k[off++];
  exec[i] = '\0';
  if (off + 5 != klen || k[off] != '\0') return false;
  off++;
  uint32_t v = 0;
  for (int b = 0; b < 4; b++) v = (v << 8) | (uint8_t)k[off + b];
  *num = (int32_t)v;
  return (dts_instance_id_problem(id) == NULL || dts_entity_id_problem(id) == NULL) &&
         dts_short_id_problem(exec) == NULL;
}

static bool load_act(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  loadctx *lc = c;
  dts_hub *h = lc->h;
  char id[DTS_ID_MAX + 2], exec[DTS_ID_MAX + 2];
  int32_t task;
  if (!split_work_key(h, k, klen, id, exec, &task) || id[0] == '@') {
    unreadable(h, k, klen, "not an activity work item key");
    return true;
  }
  ActivityRequest *ar = activity_request__unpack(NULL, vlen, (const uint8_t *)v);
  if (ar == NULL) {
    unreadable(h, k, klen, "the activity work item does not decode");
    return true;
  }
  act *a = dts_calloc(1, sizeof(*a));
  a->key = work_key(id, exec, task);
  a->skey = dts_malloc(klen);
  memcpy(a->skey, k, klen);
  a->klen = klen;
  a->inst_id = dts_strdup(id);
  a->exec_id = dts_strdup(exec);
  a->name = dts_strdup(ar->name);
  a->version = xstrdup_or_null(dts_sv_get(ar->version));
  a->task_id = task;
  a->req = dts_buf_copy(v, vlen);
  a->serial = ++h->serial;
  activity_request__free_unpacked(ar, NULL);
  act *old = dts_map_put(&h->acts, a->key, a);
  if (old != NULL) act_free(old); /* cannot happen: one key, one record */
  return true;
}

/* Durable timers: an orchestration's TimerFired ("<id>\0<exec>\0<timer id>"),
 * or an entity signal held until its scheduled time ("@name@key\0<request
 * id>\0<0>", an EntityOperationSignaled). */
static bool load_timer(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  loadctx *lc = c;
  dts_hub *h = lc->h;
  char id[DTS_ID_MAX + 2], exec[DTS_ID_MAX + 2];
  int32_t tid;
  if (!split_work_key(h, k, klen, id, exec, &tid)) {
    unreadable(h, k, klen, "not a timer key");
    return true;
  }
  HistoryEvent *e = history_event__unpack(NULL, vlen, (const uint8_t *)v);
  int64_t fire_at;
  if (e != NULL && id[0] != '@' && e->event_type_case == EV(TIMER_FIRED)) {
    fire_at = dts_ts_to_ns(e->timer_fired->fire_at);
  } else if (e != NULL && id[0] == '@' && e->event_type_case == EV(ENTITY_OPERATION_SIGNALED)) {
    fire_at = dts_ts_to_ns(e->entity_operation_signaled->scheduled_time);
  } else {
    unreadable(h, k, klen, e == NULL ? "the timer does not decode" : "the timer holds an event of the wrong kind");
    if (e) history_event__free_unpacked(e, NULL);
    return true;
  }
  dtimer *tm = dts_calloc(1, sizeof(*tm));
  tm->key = work_key(id, exec, tid);
  tm->skey = dts_malloc(klen);
  memcpy(tm->skey, k, klen);
  tm->klen = klen;
  tm->inst_id = dts_strdup(id);
  tm->exec_id = dts_strdup(exec);
  tm->fire_at = fire_at;
  tm->event = dts_buf_copy(v, vlen);
  tm->serial = ++h->serial;
  history_event__free_unpacked(e, NULL);
  dtimer *old = dts_map_put(&h->timers, tm->key, tm);
  if (old != NULL) timer_free(old);
  return true;
}

/* ---- loading ------------------------------------------------------------------ */

static bool load_ent(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  loadctx *lc = c;
  dts_hub *h = lc->h;
  Dtsd__Store__EntityRecord *r = dtsd__store__entity_record__unpack(NULL, vlen, (const uint8_t *)v);
  size_t off = h->namelen + 2;
  if (r == NULL || dts_entity_id_problem(r->instance_id) != NULL || strlen(r->instance_id) != klen - off ||
      memcmp(r->instance_id, k + off, klen - off) != 0) {
    unreadable(h, k, klen, r == NULL ? "the entity record does not decode" : "the entity record names another id");
    if (r) dtsd__store__entity_record__free_unpacked(r, NULL);
    return true;
  }
  ent *e = ent_get(h, r->instance_id, true);
  set_str(&e->state, dts_sv_get(r->state));
  e->modified = r->modified_ns;
  if (r->locked_by[0] && dts_instance_id_problem(r->locked_by) != NULL) {
    unreadable(h, k, klen, "the entity's lock holder is not an instance id: the lock is dropped");
  } else if (r->locked_by[0]) {
    bool failed;
    inst *holder = find_quiet(h, r->locked_by, &failed);
    if (holder != NULL) holder->may_hold_locks = true;
    set_str(&e->locked_by, r->locked_by);
    set_str(&e->lock_cs, r->lock_cs);
    h->nlocked++;
  }
  if (r->next_seq > e->next_seq) e->next_seq = r->next_seq;
  dtsd__store__entity_record__free_unpacked(r, NULL);
  return true;
}

static bool load_entq(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  loadctx *lc = c;
  dts_hub *h = lc->h;
  size_t off = h->namelen + 2, n = 0;
  while (off + n < klen && k[off + n] != '\0' && n <= DTS_ID_MAX) n++;
  char idbuf[DTS_ID_MAX + 2];
  memcpy(idbuf, k + off, n);
  idbuf[n] = '\0';
  if (klen != off + n + 1 + 8 || k[off + n] != '\0' || dts_entity_id_problem(idbuf) != NULL) {
    unreadable(h, k, klen, "not an entity queue key");
    return true;
  }
  HistoryEvent *he = history_event__unpack(NULL, vlen, (const uint8_t *)v);
  int kind = 0;
  const char *parent = NULL, *pexec = NULL, *rid = NULL;
  switch (he != NULL ? he->event_type_case : HISTORY_EVENT__EVENT_TYPE__NOT_SET) {
  case EV(ENTITY_OPERATION_SIGNALED): kind = QM_SIGNAL; rid = he->entity_operation_signaled->request_id; break;
  case EV(ENTITY_OPERATION_CALLED):
    kind = QM_CALL;
    parent = dts_sv_get(he->entity_operation_called->parent_instance_id);
    pexec = dts_sv_get(he->entity_operation_called->parent_execution_id);
    rid = he->entity_operation_called->request_id;
    break;
  case EV(ENTITY_LOCK_REQUESTED): kind = QM_LOCK; parent = dts_sv_get(he->entity_lock_requested->parent_instance_id); break;
  case EV(ENTITY_UNLOCK_SENT): kind = QM_UNLOCK; parent = dts_sv_get(he->entity_unlock_sent->parent_instance_id); break;
  default: break;
  }
  if (kind == 0) {
    unreadable(h, k, klen, he == NULL ? "the queued entity message does not decode" : "not an entity message");
    if (he) history_event__free_unpacked(he, NULL);
    return true;
  }
  ent *e = ent_get(h, idbuf, true);
  if (e->qn == e->qcap) {
    e->qcap = e->qcap ? e->qcap * 2 : 8;
    e->q = dts_realloc(e->q, e->qcap * sizeof(*e->q));
  }
  qmsg *m = &e->q[e->qn++];
  memset(m, 0, sizeof(*m));
  m->b = dts_buf_copy(v, vlen);
  m->seq = be64(k + klen - 8);
  m->kind = kind;
  m->parent = xstrdup_or_null(parent);
  m->parent_exec = xstrdup_or_null(pexec);
  m->request_id = xstrdup_or_null(rid);
  if (m->seq >= e->next_seq) e->next_seq = m->seq + 1;
  history_event__free_unpacked(he, NULL);
  return true;
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
  inst *in = inst_decode(r->h, v, vlen);
  if (in == NULL) {
    unreadable(r->h, k, klen, "the instance record does not decode (not indexed)");
    return true;
  }
  dts_batch *saved = r->h->batch;
  r->h->batch = r->b;
  in->ix_set = false;
  index_update(r->h, in);
  r->h->batch = saved;
  inst_free(in);
  if (++r->n % 10000 == 0) {
    r->err = dts_store_write(r->h->cfg.store, r->b);
    dts_batch_destroy(r->b);
    r->b = dts_batch_create();
    if (r->err != DTS_OK) return false;
  }
  return true;
}


static dts_err ensure_indexes(dts_hub *h, char *err, size_t errlen) {
  key k;
  index_marker_key(&k, h);
  char *v;
  size_t vlen;
  dts_err e = dts_store_read(h->cfg.store, k.b, k.n, &v, &vlen, err, errlen);
  if (e == DTS_OK) {
    dts_free(v);
    return DTS_OK;
  }
  if (e != DTS_ENOTFOUND) return e;
  reindex r = {h, dts_batch_create(), 0, DTS_OK};
  k_start(&k, h, 'I');
  e = dts_store_walk(h->cfg.store, k.b, k.n, k.b, k.n, reindex_visit, &r, err, errlen);
  if (e == DTS_OK) e = r.err;
  index_marker_key(&k, h);
  dts_batch_put(r.b, k.b, k.n, "1", 1);
  if (e == DTS_OK) e = dts_store_write(h->cfg.store, r.b);
  if (e != DTS_OK && err[0] == '\0') dts_store_writable(h->cfg.store, err, errlen);
  dts_batch_destroy(r.b);
  if (r.n > 0) DTS_INFO("hub", "[%s] indexed %ld instances written before indexes existed", h->name, r.n);
  return e;
}

/* Non-terminal instances, found through the status index, with their
 * history and inbox.  Finished ones stay on disk until asked for. */
static bool load_live(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  loadctx *lc = c;
  dts_hub *h = lc->h;
  (void)v;
  (void)vlen;
  size_t off = h->namelen + 3 + 8;
  char id[DTS_ID_MAX + 2];
  size_t n = klen > off ? klen - off : 0;
  if (n == 0 || n > DTS_ID_MAX) {
    unreadable(h, k, klen, "not a status index key");
    return true;
  }
  memcpy(id, k + off, n);
  id[n] = '\0';
  if (dts_instance_id_problem(id) != NULL || dts_map_get(&h->insts, id) != NULL) {
    unreadable(h, k, klen, "not a status index key");
    return true;
  }
  key ik;
  key_inst(&ik, h, id);
  char *rec, msg[300];
  size_t rlen;
  dts_err e = dts_store_read(h->cfg.store, ik.b, ik.n, &rec, &rlen, msg, sizeof(msg));
  if (e == DTS_ENOTFOUND) {
    DTS_WARN("hub", "[%s] index entry without an instance record ('%s'): skipped", h->name, id);
    return true;
  }
  if (e != DTS_OK) {
    unreadable(h, ik.b, ik.n, msg);
    return true;
  }
  inst *in = inst_decode(h, rec, rlen);
  dts_free(rec);
  if (in == NULL || strcmp(in->id, id) != 0) {
    unreadable(h, ik.b, ik.n, "the instance record does not decode");
    if (in) inst_free(in);
    return true;
  }
  if (load_events(h, in, false) != DTS_OK) {
    unreadable(h, ik.b, ik.n, "its history or inbox cannot be read");
    inst_free(in);
    return true;
  }
  inst_adopt(h, in);
  lc->n++;
  return true;
}

/* Builds the hub's memory from the store: start-up, and after a reset
 * (`again`: nothing is written then -- no index rebuild, no retention
 * from the flags, lock steps only when the store takes writes).  Failing
 * reads of single records are counted (`unreadable`), not fatal. */
static dts_err load(dts_hub *h, bool again, char *err, size_t errlen) {
  loadctx lc = {.h = h};
  key k;
  long unreadable_before = h->unreadable;
  err[0] = '\0';
  if (!again) {
    dts_err ie = ensure_indexes(h, err, errlen);
    if (ie != DTS_OK) return ie;
  }
  for (int st = 0; st < 16; st++) {
    if (terminal(st)) continue;
    k_start(&k, h, 'S');
    k.b[k.n++] = (char)st;
    char msg[300];
    if (dts_store_walk(h->cfg.store, k.b, k.n, k.b, k.n, load_live, &lc, msg, sizeof(msg)) != DTS_OK)
      unreadable(h, k.b, k.n, msg); /* the rest of this scan is out of reach */
  }
  const struct {
    char type;
    dts_scan_fn fn;
  } passes[] = {{'A', load_act}, {'T', load_timer}, {'E', load_ent}, {'Q', load_entq}};
  for (size_t i = 0; i < sizeof(passes) / sizeof(passes[0]); i++) {
    k_start(&k, h, passes[i].type);
    char msg[300];
    if (dts_store_walk(h->cfg.store, k.b, k.n, k.b, k.n, passes[i].fn, &lc, msg, sizeof(msg)) != DTS_OK)
      unreadable(h, k.b, k.n, msg);
  }
  /* resume: ready instances, activities, timers */
  const char *mk;
  void *v;
  long ready = 0, acts = 0, timers = 0;
  for (size_t it = 0; dts_map_next(&h->insts, &it, &mk, &v);) {
    make_ready(h, v);
    ready += ((inst *)v)->inbox.n > 0;
  }
  for (size_t it = 0; dts_map_next(&h->acts, &it, &mk, &v);) {
    act_ready(h, v);
    acts++;
  }
  for (size_t it = 0; dts_map_next(&h->timers, &it, &mk, &v);) {
    arm_durable(h, v);
    timers++;
  }
  /* retention: a flag given at start wins (and is persisted); otherwise the
   * policy persisted by an earlier start or SetRetention */
  key rk;
  retention_key(&rk, h);
  if (again) {
    /* kept as it was */
  } else if (h->cfg.retention_set) {
    memcpy(h->ret, h->cfg.retention_ns, sizeof(h->ret));
    dts_buf b = retention_pack(h);
    dts_batch *bt = dts_batch_create();
    dts_batch_put(bt, rk.b, rk.n, b.p, b.n);
    dts_err we = dts_store_write(h->cfg.store, bt);
    dts_batch_destroy(bt);
    dts_buf_free(&b);
    if (we != DTS_OK) /* it applies now; the next start persists it */
      DTS_ERROR("hub", "[%s] the retention policy from the flags could not be stored; it applies until dtsd stops",
                h->name);
  } else {
    for (int i = 0; i < 5; i++) h->ret[i] = -1;
    dts_store_scan(h->cfg.store, rk.b, rk.n, load_retention, h);
  }
  if (can_write(h)) {
    for (size_t it = 0; dts_map_next(&h->ents, &it, &mk, &v);) ent_step(h, v);
    flush(h); /* lock steps taken at load */
  }
  DTS_INFO("hub", "[%s] loaded %zu entities", h->name, dts_map_len(&h->ents));
  DTS_INFO("hub", "[%s] loaded %ld instances (%ld with pending events), %ld activity work items, %ld timers",
           h->name, lc.n, ready, acts, timers);
  if (h->unreadable > unreadable_before)
    DTS_ERROR("hub", "[%s] %ld records could not be read and were skipped (each is logged above with its key)",
              h->name, h->unreadable - unreadable_before);
  return DTS_OK;
}

/* ======================================================================== */
/* lifecycle and API                                                        */

static void hub_fini(dts_actor *a) {
  dts_hub *h = (dts_hub *)a;
  const char *k;
  void *v;
  while (h->streams != NULL) stream_release(h, h->streams);
  for (size_t it = 0; dts_map_next(&h->insts, &it, &k, &v);) {
    inst *in = v;
    while (in->waiters != NULL) {
      waiter *w = in->waiters;
      waiter_unlink(w);
      dts_call_unref(w->call);
      waiter_free(w);
    }
    inst_free(in);
  }
  for (size_t it = 0; dts_map_next(&h->acts, &it, &k, &v);) act_free(v);
  for (size_t it = 0; dts_map_next(&h->timers, &it, &k, &v);) timer_free(v);
  for (size_t i = 0; i < h->ndead; i++) inst_free(h->dead[i]);
  for (size_t it = 0; dts_map_next(&h->gone, &it, &k, &v);) {
    dts_free(((gone *)v)->id);
    dts_free(v);
  }
  dts_map_fini(&h->gone);
  dts_free(h->evict);
  for (size_t i = 0; i < h->ndone; i++) dts_msg_free(&h->done[i]->hdr);
  dts_free(h->done);
  for (size_t it = 0; dts_map_next(&h->ents, &it, &k, &v);) ent_free(v);
  dts_map_fini(&h->ents);
  dts_free(h->dead);
  for (size_t i = 0; i < h->ndead_ents; i++) ent_free(h->dead_ents[i]);
  dts_free(h->dead_ents);
  dts_map_fini(&h->insts);
  dts_map_fini(&h->acts);
  dts_map_fini(&h->timers);
  dts_map_fini(&h->tokens);
  if (h->cur != NULL) dts_msg_free(&h->cur->hdr);
  dts_batch_destroy(h->batch);
  dts_free(h->name);
  dts_free(h);
}

dts_err dts_hub_create(const dts_hub_config *cfg, dts_hub **out) {
  dts_hub *h = dts_calloc(1, sizeof(*h));
  dts_actor_init(&h->actor, cfg->sched, behaviour, hub_fini);
  dts_actor_set_turn_end(&h->actor, hub_turn_end);
  /* load() arms timers that may be due at once: nothing runs on the actor
   * until load has finished building its state on this thread */
  dts_actor_hold(&h->actor);
  h->cfg = *cfg;
  h->name = dts_strdup(cfg->name);
  h->cfg.name = h->name;
  h->namelen = strlen(h->name);
  dts_map_init(&h->insts);
  dts_map_init(&h->acts);
  dts_map_init(&h->timers);
  dts_map_init(&h->tokens);
  dts_map_init(&h->ents);
  dts_map_init(&h->gone);
  if (h->cfg.max_entity_batch <= 0) h->cfg.max_entity_batch = 100;
  dts_hub_limits *l = &h->cfg.limits;
  if (l->purge_chunk <= 0) l->purge_chunk = 1000;
  if (l->max_page <= 0) l->max_page = 1000;
  if (l->max_list_page <= 0) l->max_list_page = 10000;
  if (l->scan_budget <= 0) l->scan_budget = 100000;
  if (l->max_chunks <= 0) l->max_chunks = 256;
  if (l->max_chunk_bytes <= 0) l->max_chunk_bytes = 256L << 20;
  if (l->max_stream_items <= 0) l->max_stream_items = 10000;
  if (l->max_outbox_bytes <= 0) l->max_outbox_bytes = 64L << 20;
  h->rnd_used = sizeof(h->rnd); /* empty: filled at the first token */
  char why[400];
  dts_err e = load(h, false, why, sizeof(why));
  if (e != DTS_OK) {
    DTS_ERROR("hub", "[%s] cannot load: %s (%s)", h->name, why[0] ? why : "the store refused", dts_strerror(e));
    dts_actor_unref(&h->actor);
    return e;
  }
  arm_tick(h);
  if (h->cfg.purge_interval_ns == 0) h->cfg.purge_interval_ns = 1000000000ULL;
  arm_purge(h);
  dts_actor_open(&h->actor);
  *out = h;
  return DTS_OK;
}

const char *dts_hub_name(const dts_hub *h) { return h->name; }
dts_actor *dts_hub_actor(dts_hub *h) { return &h->actor; }

void dts_hub_post(dts_hub *h, dts_method m, dts_call *call, ProtobufCMessage *req) {
  hub_rpc *r = (hub_rpc *)dts_msg_alloc(HUB_RPC, sizeof(hub_rpc));
  r->hdr.drop = rpc_drop;
  r->method = (int)m;
  r->call = call;
  r->req = req;
  dts_send(&h->actor, &r->hdr);
}

void dts_hub_shutdown(dts_hub *h) { dts_send(&h->actor, dts_msg_alloc(HUB_SHUTDOWN, sizeof(dts_msg))); }

dts_err dts_hub_persist_marker(dts_hub *h) {
  key k;
  hub_marker_key(&k, h);
  dts_batch *b = dts_batch_create();
  dts_batch_put(b, k.b, k.n, "", 0);
  dts_err e = dts_store_write(h->cfg.store, b);
  dts_batch_destroy(b);
  return e;
}

bool dts_hub_quiesced(dts_hub *h) { return atomic_load(&h->quiesced); }

int dts_hub_delete_state(dts_hub *h) { return atomic_load(&h->delete_state); }

void dts_hub_undelete(dts_hub *h) { atomic_store(&h->delete_state, 0); }

void dts_hub_release(dts_hub *h) { dts_actor_unref(&h->actor); }

void dts_hub_get_stats(dts_hub *h, dts_hub_stats *o) {
  o->instances = atomic_load(&h->st_instances);
  o->ready_orch = atomic_load(&h->rq.n);
  o->ready_act = atomic_load(&h->aq.n);
  o->streams = atomic_load(&h->st_streams);
  o->dispatched = atomic_load(&h->st_dispatched);
  o->completions = atomic_load(&h->st_completions);
  o->stale_completions = atomic_load(&h->st_stale);
  o->unreadable = atomic_load(&h->unreadable);
  o->resets = atomic_load(&h->resets);
}

typedef struct marker_ctx {
  void (*fn)(void *ctx, const char *name);
  void *ctx;
} marker_ctx;

static bool on_marker(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v;
  (void)vlen;
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
