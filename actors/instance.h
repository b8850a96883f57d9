/* instance.h -- private to the instance actor's files: instance.c (the
 * actor: state, read-back, messages, work items, leaving memory),
 * orchestration.c (its requests) and turn.c (applying a worker's turn).
 *
 * An instance is loaded (its record, history and inbox in memory) or not;
 * one that is not may still hold activity work items that are out with
 * workers (unloaded, state on disk), so that their tokens stay known.  The actor leaves the
 * directory once it is idle with nothing out.
 */
#ifndef DTS_ACTORS_INSTANCE_H
#define DTS_ACTORS_INSTANCE_H

#include "actors/engine.h"

/* An encoded HistoryEvent; seq: its N key (NOSEQ: not stored on its own,
 * e.g. the OrchestratorStarted made at dispatch). */
typedef struct ev {
  dts_buf b;
  uint64_t seq;
} ev;

typedef struct evvec {
  ev *v;
  size_t n, cap;
} evvec;

/* An activity work item: stored under A<id>\0<exec>\0<task>. */
typedef struct act {
  char *key;        /* map key "<exec>\x01<task>" */
  char *exec_id;
  int32_t task_id;
  char *name, *version;
  dts_buf req;      /* encoded ActivityRequest */
  uint64_t serial;  /* its offer to dispatch; 0: not offered */
  char token[TOKEN_LEN + 1];
  uint64_t not_before; /* monotonic: an abandoned one waits */
  uint64_t ticket;  /* the ticket that wrote it: offered once that commits */
} act;

typedef struct waiter {
  dts_call *call;
  bool completion; /* else: start */
  bool io;
  struct waiter *prev, *next;
} waiter;

/* A StreamInstanceHistory call: its chunks wait for the commit of what
 * came before the read. */
typedef struct hstream {
  dts_call *call;
  dts_bufq q;
  bool held, ended;
  dts_status end_st;
  struct hstream *next;
} hstream;

typedef struct inst {
  eng_actor base;
  eng_tx tx;
  bool loaded;
  bool exists;          /* a record (loaded: in r) */
  dts_inst_rec r;
  evvec hist, inbox, dispatched;
  uint64_t mark;        /* message sequence at the read-back: deliveries below it may be known */
  /* the orchestration work item */
  uint64_t oserial;     /* its offer; 0: none out */
  char otoken[TOKEN_LEN + 1];
  OrchestratorResponse **chunks;
  size_t nchunks;
  uint64_t not_before;  /* monotonic: an abandoned turn waits */
  bool wake_armed;
  bool dirty;           /* the record is rewritten at the end of the turn */
  int stored_status;    /* the record's status in the store as this actor last wrote or read it (-1: none) */
  bool wkey;            /* its W (forced turn) key is stored */
  dts_map acts;         /* key -> act; kept while unloaded */
  dts_map act_tokens;   /* token -> act, for the acts out with a token (a completion names its token) */
  act **unoffered;      /* acts to offer, in the order they were made */
  size_t nunoffered, capunoffered;
  uint64_t next_serial;
  waiter *waiters;
  hstream *hstreams;
  bool left;            /* it asked the hub to leave (H_LEAVE) */
  bool freezing;        /* M_FREEZE came while tickets were in flight */
  bool stopped;         /* M_SHUTDOWN */
} inst;

/* What a new execution starts with. */
typedef struct inst_spec {
  const char *name, *version, *input;
  const char *exec_id; /* NULL: a new one */
  int64_t sched_start;
  void *const *tags;   /* map entries {base, key, value} */
  size_t ntags;
  const ParentInstanceInfo *parent;
  const TraceContext *trace;
} inst_spec;

/* ---- instance.c --------------------------------------------------------------- */

/* Reads the instance back when it is not loaded: false when a read failed
 * (tx.rd_code says why; the caller answers). */
bool inst_load(inst *in);
void inst_touch(inst *in);
dts_batch *inst_batch(inst *in);
/* Appends an event to the inbox under a new N key (dropped when the
 * instance is finished); `b` consumed. */
bool inst_inbox_add(inst *in, dts_buf b);
void inst_hist_add(inst *in, dts_buf b);
/* Deletes the execution's history and inbox keys and forgets them; ends
 * the work item's lease.  Activities and timers stay (stale). */
void inst_clear_execution(inst *in);
void inst_end_lease(inst *in);
void inst_chunks_free(inst *in);
/* A new execution from an ExecutionStarted event (`b`, consumed; stored
 * under N key `seq`, or a new one when seq is NOSEQ). */
void inst_start_from(inst *in, dts_buf b, uint64_t seq);
/* The instance reached a terminal state. */
void inst_became_terminal(inst *in, int64_t now);
/* An event to the inbox that ends the execution (terminate), with its
 * recursion to the sub-orchestrations. */
void inst_propagate_terminate(inst *in, const char *output);
void inst_check_waiters(inst *in);
uint64_t inst_serial(inst *in);
/* Adds an activity work item (written in this turn). */
void inst_act_add(inst *in, act *a);
/* It is to be offered (again): after those already waiting. */
void inst_act_unoffered(inst *in, act *a);
void inst_act_free(act *a);
/* The act out under `token`, or NULL. */
act *inst_act_by_token(inst *in, const char *token);
/* Gives `a` the token `tok` ("" for none), keeping act_tokens in step. */
void inst_act_set_token(inst *in, act *a, const char *tok);
/* Removes an activity: its offer withdrawn, its key deleted when del. */
void inst_act_drop(inst *in, act *a, bool del);
/* Rewinds a FAILED instance: RUNNING with [ExecutionRewound] as news. */
void inst_rewind(inst *in, const char *reason, const char *parent_exec);
/* Sends a lock release to every entity in the lock set. */
void inst_release_locks(inst *in);

/* ---- orchestration.c ------------------------------------------------------------ */

void inst_on_rpc(inst *in, m_rpc *r);
void inst_on_job(inst *in, m_job *j);
/* Whether an id's payload is within the limit; else answers c. */
bool inst_payload_ok(inst *in, dts_call *c, const char *what, const char *s);

/* ---- turn.c ---------------------------------------------------------------------- */

/* Applies one completed turn: the dispatched events enter history, the
 * actions run.  `actions` is the merged list of every chunk. */
void turn_apply(inst *in, const Google__Protobuf__StringValue *custom_status, const OrchestrationTraceContext *trace,
                OrchestratorAction **actions, size_t nactions, int32_t nprocessed);
/* Checks what a completion would store before anything of it is applied:
 * NULL when fine, else the failure's error type with the sentence in msg. */
const char *turn_problem(inst *in, const OrchestratorResponse *r, char *msg, size_t len);
/* A rewind was dispatched and not answered yet. */
bool turn_rewind_pending(const inst *in);
/* Fails the execution with a failure of its own making (a completion that
 * could not be applied). */
void turn_fail(inst *in, const char *etype, const char *msg);

/* The ExecutionStarted event of a new execution of `id` (turn.c). */
dts_buf inst_started_event(const char *id, const inst_spec *s, const char *exec);

/* ---- events ------------------------------------------------------------------------ */

void ev_push(evvec *v, dts_buf b, uint64_t seq);
void ev_clear(evvec *v);
void ev_fini(evvec *v);

#endif
