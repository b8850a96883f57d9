/* engine.h -- private to actors/: the actors of one task hub, the messages
 * between them, and what they share.  See docs/engine.md.
 *
 *   hub        (hub.c, jobs.c, query.c, retention.c)  the hub's lifecycle,
 *              the directory of live actors, management requests
 *   dispatch   (dispatch.c)  ready queues, worker streams, leases, tokens
 *   instance   (instance.c, turn.c)  one orchestration instance
 *   entity     (entity.c)  one durable entity
 *
 * Threads.  Any thread routes a request or a message (route.c): it looks
 * the target up in the directory, a lock-free map the hub actor alone
 * writes, and sends to it; a miss goes to the hub actor, which creates the
 * actor (exactly once) and forwards.  Each actor's state is its own; what
 * they share is below, and every shared field says who may touch it.
 */
#ifndef DTS_ACTORS_ENGINE_H
#define DTS_ACTORS_ENGINE_H

#include "actors/call.h"
#include "actors/directory.h"
#include "actors/hub.h"
#include "runtime/alloc.h"
#include "runtime/hist.h"
#include "runtime/log.h"
#include "runtime/map.h"
#include "storage/keys.h"
#include "storage/records.h"

#include <stdatomic.h>
#include <stdint.h>

#define ST(x) ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_##x
#define EV(x) HISTORY_EVENT__EVENT_TYPE_##x
#define ACT(x) ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_##x

#define TOKEN_LEN 33                                /* kind + 32 hex digits */
#define DTS_MAX_LOCK_SET 100                        /* entities one lock request may name */
#define ARM_MAX_NS (86400ULL * 1000000000ULL)       /* a timer further out is looked at again in a day */
#define RETRY_NS 1000000000ULL                      /* work that waits for the store is tried again this much later */
#define NOSEQ UINT64_MAX                            /* an event that is not stored under its own key */

#define VEC_PUSH(arr, n, cap, x)                          \
  do {                                                    \
    if ((n) == (cap)) {                                   \
      (cap) = (cap) ? (cap) * 2 : 4;                      \
      (arr) = dts_realloc((arr), (cap) * sizeof(*(arr))); \
    }                                                     \
    (arr)[(n)++] = (x);                                   \
  } while (0)

/* ======================================================================== */
/* message kinds                                                            */

enum {
  /* to instances and entities */
  M_RPC = 1,    /* m_rpc */
  M_DELIVER,    /* m_deliver: a message another actor stored for it */
  M_TIMER,      /* m_timer: a durable timer or a wake-up came due */
  M_LEASED,     /* m_leased: a returned work item was leased again, under a new token */
  M_COMMITTED,  /* eng_ticket: its batch is written */
  M_JOB,        /* m_job: a part of a management request */
  M_PASSIVATE,  /* the hub: idle long enough, leave memory if still idle */
  M_FINAL,      /* the hub: out of the directory, nothing more can reach it */
  M_FREEZE,     /* the hub: drop everything (the hub's data is being wiped) */
  M_SHUTDOWN,   /* the hub: dtsd stops */
  M_KICK,       /* start-up: offer what is ready */
  /* to the hub */
  H_RPC,        /* m_rpc: management, or a request nobody else can serve */
  H_MISS,       /* m_miss: a message for an actor not in the directory */
  H_LEAVE,      /* m_actor: the actor is idle and may go */
  H_GONE,       /* m_actor: after M_FINAL, it went */
  H_STAY,       /* m_actor: after M_FINAL, it had work after all */
  H_FROZEN,     /* m_actor: it dropped everything (M_FREEZE) */
  H_TIMER,      /* m_timer: route to its owner */
  H_TICK,       /* purge, passivation and retention sweep */
  H_SCHED,      /* a schedule's occurrence may be due (schedule.c) */
  H_PING_TICK,  /* health pings: forwarded to dispatch */
  H_POLL,       /* grace periods of the directory */
  H_SHUTDOWN,
  H_JOB_DONE,   /* m_job_done */
  /* to dispatch */
  D_OFFER,      /* m_offer */
  D_DONE,       /* m_done: the owner completed or withdrew the item */
  D_RETURN,     /* m_done: the item goes back to its queue, its token still valid */
  D_RPC,        /* m_rpc: GetWorkItems */
  D_TICK,       /* health pings */
  D_RESUME,     /* the store takes writes again */
  D_SHUTDOWN,
  D_CLEAR,      /* the hub's data was wiped: every offer goes */
  D_DELETED,    /* the hub was deleted: streams end NOT_FOUND */
  D_DRAIN,      /* m_drain: a stream's credentials went: nothing new to it, then it ends */
};

/* ======================================================================== */
/* actors                                                                   */

/* What every actor of a hub starts with. */
typedef struct eng_actor {
  dts_actor a; /* first */
  /* `a` ends with fields every send and turn writes (refs, running,
   * handoff); the directory entry and its key are read by every thread
   * that routes to this actor.  The padding keeps them on lines of their
   * own (as the mailbox pads its head) without aligned allocation: a lookup
   * then reads lines no other core keeps writing. */
  char pad_a[64];
  dts_dir_entry de;     /* in the hub's directory under dkey */
  char dkey_inline[40]; /* dkey when it fits: read with the entry */
  dts_hub *h;           /* each actor holds a reference on the hub's actor */
  char kind;            /* 'o' instance, 'e' entity, 'd' dispatch, 'h' hub */
  char *id;             /* the instance or entity id (NUL-terminated) */
  char *dkey;           /* kind, then id: the directory key */
  size_t dklen;
  char pad_de[64];      /* what follows is written by the actor and the hub */
  /* Passivation.  idle_since: the monotonic time at which the actor became
   * idle, 0 while it has work (the actor writes it at the end of its
   * turns; the hub's sweep reads it).  asked: the hub sent M_PASSIVATE and
   * the actor has not handled it yet (the hub sets, the actor clears). */
  atomic_ullong idle_since;
  atomic_bool asked;
  /* Owned by the hub actor: where the actor is, and messages held for it
   * while it leaves (forwarded once it went or stayed). */
  int where;         /* W_LIVE, W_LEAVING, W_FINAL, W_OUT */
  dts_msg **held;
  size_t nheld, capheld;
  ck_epoch_entry_t final_ep; /* the grace period before M_FINAL */
  /* Owned by the actor: it went (M_FINAL, M_FREEZE), so whatever still
   * reaches it goes back to the hub. */
  bool gone;
} eng_actor;

enum { W_LIVE = 1, W_LEAVING, W_FINAL, W_OUT };

typedef struct eng_dispatch eng_dispatch;
typedef struct eng_watch eng_watch;

/* A task hub.  The hub actor's own state is in hub.c's struct hub_state;
 * what all of a hub's actors read is here. */
struct dts_hub {
  eng_actor base;               /* the hub actor; kind 'h' */
  dts_hub_config cfg;           /* immutable after create */
  char *name;
  dts_keyspace ks;              /* "<name>\0" */
  const dts_call_ops *ops;
  dts_dir *dir;                 /* live actors: the hub actor writes, anyone reads */
  eng_dispatch *disp;           /* immutable after create */
  struct hub_state *hs;         /* hub actor only */
  atomic_ullong seq;            /* the message sequence: the next number to hand out */
  /* Stopping.  Any actor about to write increments `writers`, then checks
   * `stopping`; the hub sets `stopping`, then waits for writers == 0: no
   * write starts after shutdown has been seen (docs/engine.md). */
  atomic_bool stopping;
  atomic_int writers;
  atomic_bool shutdown_seen;
  atomic_bool deleted;          /* DeleteTaskHub committed or under way: nothing more is written */
  atomic_bool freezing;         /* a wipe is under way: actors hold their writes */
  atomic_int delete_state;
  /* Whether a loading actor reads back the messages stored for it (M keys).
   * Every message stored at run time is also delivered after its commit,
   * so a load need not look -- a seek over a tombstone-dense range costs
   * more than the rest of a turn -- except while the hub starts (what was
   * stored before a restart) and, from then on, once a message may have
   * been stored and not taken: a failed read-back or a failed commit. */
  atomic_bool readback_msgs;
  eng_watch *watch;             /* the change feed of live views (watch.c); immutable pointer */
  /* statistics, any thread */
  atomic_long st_instances, st_entities, st_streams, st_dispatched, st_completions, st_stale, st_unreadable,
      st_resets, st_ready_orch, st_ready_act, st_actors, st_passivated;
  /* work items by kind (0 orchestrator, 1 activity, 2 entity): sent to a
   * worker, completed, returned to their queue (abandoned, stream gone) */
  atomic_long st_sent[3], st_done[3], st_back[3];
  /* instances that started (a record written PENDING) and finished, by
   * status; entity operations completed -- counted as their turns commit */
  atomic_long st_started, st_finished[8], st_entity_ops;
  dts_hist h_dispatch;  /* ready -> sent to a worker */
  dts_hist h_work[3];   /* sent -> completed, by kind */
};

/* ======================================================================== */
/* messages                                                                 */

typedef struct m_rpc {
  dts_msg hdr;
  int method;
  dts_call *call; /* a reference */
  ProtobufCMessage *req;
} m_rpc;

/* A message another actor stored under the receiver's "M" keys. */
typedef struct m_deliver {
  dts_msg hdr;
  uint64_t seq;
  dts_buf val; /* the stored dtsd.store.Message */
} m_deliver;

enum { TM_DURABLE = 1, TM_WAKE, TM_SIGNAL };

typedef struct m_timer {
  dts_msg hdr;
  int what;      /* TM_DURABLE: key names the store key; TM_WAKE: look again */
  char kind;     /* the owner's kind */
  char *id;      /* the owner */
  dts_buf key;   /* the durable timer's store key */
  int64_t fire_at;
} m_timer;

typedef struct m_leased {
  dts_msg hdr;
  uint64_t serial;
  char token[TOKEN_LEN + 1];
} m_leased;

/* A message for an actor the router did not find. */
typedef struct m_miss {
  dts_msg hdr;
  char kind;
  char *id;
  dts_msg *inner;
} m_miss;

typedef struct m_actor {
  dts_msg hdr;
  eng_actor *a; /* a reference */
} m_actor;

enum { JOB_PURGE = 1, JOB_SKIP, JOB_CLEAN };

typedef struct m_job {
  dts_msg hdr;
  int op;
  uint64_t job;
  bool recursive;   /* purge: report finished sub-orchestrations */
  int64_t before;   /* purge: only if it finished at or before this (wall ns; 0: any time) */
  char *reason;     /* skip: the output */
  bool release_orphans, remove_empty; /* clean */
} m_job;

typedef struct m_drain {
  dts_msg hdr;
  dts_call *call; /* a reference */
  const dts_call_ops *hub_ops; /* to release it */
  char why[200];
} m_drain;

typedef struct m_job_done {
  dts_msg hdr;
  uint64_t job;
  int count;             /* purged (0/1), terminated (0/1), removed (0/1) */
  int released;          /* clean: locks released */
  dts_status st;         /* not OK: the part failed */
  char *msg;
  char **children;       /* purge with recursive: finished sub-orchestrations */
  size_t nchildren;
  char *id;              /* whose answer */
  /* job 0: a PurgeInstances an instance began (by its id) and the hub
   * finishes: `call` (a reference) is answered once the children named
   * are purged too; `count` and `recursive` carry on */
  dts_call *call;
  const dts_call_ops *ops; /* to release `call` */
  bool recursive;
} m_job_done;

/* ======================================================================== */
/* the directory and routing (route.c)                                     */

/* Sends m to the actor kind+id: straight to it when it is in the
 * directory, else through the hub (which creates it).  Any thread.
 * `call`, when not NULL, is a call the actor will own (a waiter, a history
 * stream): its owner is set before the actor can see the message. */
void eng_send(dts_hub *h, char kind, const char *id, dts_msg *m, dts_call *call);
/* Builds an m_rpc (kind M_RPC, H_RPC or D_RPC); takes over call and req. */
m_rpc *eng_rpc_new(dts_hub *h, int kind, int method, dts_call *call, ProtobufCMessage *req);
void eng_msg_drop_rpc(dts_msg *m);
void eng_msg_drop_deliver(dts_msg *m);
void eng_msg_drop_timer(dts_msg *m);
void eng_msg_drop_miss(dts_msg *m);
void eng_msg_drop_actor(dts_msg *m);
void eng_msg_drop_job(dts_msg *m);
void eng_msg_drop_job_done(dts_msg *m);
/* A copy of m that owns what m owned (m is left empty, for the runtime to
 * free): to pass on a message the behaviour only borrows.  NULL for kinds
 * that are not passed on. */
dts_msg *eng_msg_move(dts_hub *h, dts_msg *m);
/* The methods whose call is owned by the actor that serves it. */
bool eng_owned_method(int method);

/* Common actor set-up: directory key, a reference on the hub. */
void eng_actor_init(eng_actor *a, dts_hub *h, char kind, const char *id, dts_behaviour fn, dts_actor_fini_fn fini);
void eng_actor_fini(eng_actor *a);
/* The actor went: a message that still reaches it goes back to the hub. */
void eng_forward_to_hub(eng_actor *a, dts_msg *m);
/* Sends the hub an m_actor message about `a` (takes a reference). */
void eng_tell_hub(eng_actor *a, int kind);

/* ======================================================================== */
/* the message sequence and cross-actor messages                           */

/* The next message sequence number: unique in the hub, increasing. */
uint64_t eng_seq_next(dts_hub *h);

/* ======================================================================== */
/* commits (tx.c)                                                           */

typedef struct eng_reply {
  dts_call *call;
  dts_status st;
  char *msg;
  dts_buf body;
  bool waiter; /* clear the call's owner data first */
} eng_reply;

typedef struct eng_out {
  char kind;
  char *id;
  uint64_t seq;
  dts_buf val;
} eng_out;

typedef struct eng_arm {
  int what;
  char kind;
  char *id;
  dts_buf key;
  int64_t fire_at;  /* wall ns (TM_DURABLE); for TM_WAKE the monotonic deadline */
} eng_arm;

/* One turn's writes and what waits for them. */
typedef struct eng_ticket {
  dts_msg hdr; /* M_COMMITTED */
  uint64_t id;
  const dts_call_ops *ops;
  eng_reply *replies;
  size_t nreplies, capreplies;
  eng_out *outs;           /* messages to other actors */
  size_t nouts, capouts;
  eng_arm *arms;           /* timers */
  size_t narms, caparms;
  uint64_t *dels;          /* M keys of this actor the batch deletes (by seq) */
  size_t ndels, capdels;
  bool opens;              /* history streams may send once this commits */
  bool changed;            /* the actor's record changed: noted for live views once this commits */
  bool has_status;         /* an instance record is written: its status went st_from -> st_to */
  int8_t st_from, st_to;   /* (-1: no record before) counted once this commits */
  uint32_t entity_ops;     /* entity operations this turn took results of */
  m_job_done **jobs;       /* answers to job parts, sent to the hub once this commits */
  size_t njobs, capjobs;
  dts_buf *tdels;          /* timer keys this batch deletes */
  size_t ntdels, captdels;
  uint32_t epoch;
  dts_err result;
} eng_ticket;

typedef struct eng_tx {
  dts_batch *batch;   /* the current turn's writes (NULL: none yet) */
  eng_ticket *cur;    /* the current turn's effects */
  uint64_t next_id;   /* ticket ids */
  uint32_t epoch;     /* store epoch in which memory last matched the store */
  int inflight;       /* tickets with the storage thread */
  eng_ticket **inq;   /* ... in submission order (their dels still pending) */
  size_t ninq, capinq;
  bool reset_needed;  /* a ticket did not commit: memory is ahead of the store */
  /* the first failed read of the current handler, for its answer */
  dts_err rd_code;
  char rd_msg[400];
  long changes;       /* how much the turn changed so far (touches) */
} eng_tx;

void eng_tx_init(eng_tx *tx);
void eng_tx_fini(eng_tx *tx);
/* The current turn's batch and ticket (started on first use). */
dts_batch *eng_batch(eng_actor *a, eng_tx *tx);
eng_ticket *eng_ticket_cur(eng_actor *a, eng_tx *tx);
/* Answers after the commit. */
void eng_reply_ok(eng_actor *a, eng_tx *tx, dts_call *c, dts_buf body);
void eng_reply_msg(eng_actor *a, eng_tx *tx, dts_call *c, const ProtobufCMessage *m);
void eng_reply_fail(eng_actor *a, eng_tx *tx, dts_call *c, dts_status st, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Stores `event` under the "M" key of actor kind+id (in this turn's batch)
 * and delivers it after the commit.  expect_exec: only for that execution
 * of the target (NULL: any). */
void eng_post(eng_actor *a, eng_tx *tx, char kind, const char *id, dts_buf event, const char *expect_exec);
/* eng_post of an already packed Message. */
void eng_post_raw(eng_actor *a, eng_tx *tx, char kind, const char *id, dts_buf val);
/* Arms a timer after the commit (routed through the hub to kind+id). */
void eng_arm_durable(eng_actor *a, eng_tx *tx, char kind, const char *id, const void *key, size_t klen,
                     int64_t fire_at);
/* Answers a job part once the turn commits (with the failure if not). */
void eng_job_reply(eng_actor *a, eng_tx *tx, m_job_done *d);
m_job_done *eng_job_done_new(dts_hub *h, uint64_t job, const char *id);
/* Timer keys: deleted by a batch not yet committed? */
void eng_tx_note_tdel(eng_actor *a, eng_tx *tx, const void *k, size_t klen);
bool eng_tx_tdeleting(const eng_tx *tx, const void *k, size_t klen);
/* Whether the actor's M key `seq` is deleted by a batch not yet committed. */
bool eng_tx_deleting(const eng_tx *tx, uint64_t seq);
void eng_tx_note_del(eng_actor *a, eng_tx *tx, uint64_t seq);
/* A read failed: kept for the current handler's answer. */
void eng_rd_fail(eng_tx *tx, dts_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The messages stored for an actor (its M keys), in sequence order
 * (readback.c).  eng_stored_read fills `out` even when the walk fails part
 * way: free it either way. */
typedef struct eng_stored {
  uint64_t *seqs;
  dts_buf *vals;
  size_t n, cap, plen;
} eng_stored;
dts_err eng_stored_read(eng_actor *a, eng_stored *out, char *msg, size_t msglen);
void eng_stored_free(eng_stored *s);
/* A message may wait on disk with no delivery on its way: every load from
 * now on reads messages back (engine.h, dts_hub.readback_msgs). */
void eng_msgs_unsure(dts_hub *h);
/* Answers c with the failed read, if there was one: true when so. */
bool eng_rd_answer(eng_actor *a, eng_tx *tx, dts_call *c);
dts_status eng_status_of(dts_err e);

/* Ends the turn: writes the batch (inline) or hands it to the storage
 * thread.  Returns the ticket when it is done now (committed or failed:
 * t->result), for the caller to finish with eng_tx_done; NULL when it went
 * to the storage thread (it comes back as M_COMMITTED) or there was
 * nothing. */
eng_ticket *eng_tx_flush(eng_actor *a, eng_tx *tx);
/* The generic half of a finished ticket: answers, outgoing messages and
 * timers when it committed; error answers when not (and reset_needed).
 * Frees nothing: the caller frees it after its own part (eng_ticket_free). */
void eng_tx_done(eng_actor *a, eng_tx *tx, eng_ticket *t);
void eng_ticket_free(eng_ticket *t);
/* Whether writes may be made now; else *why says why (for an answer). */
dts_err eng_writable(dts_hub *h, char *why, size_t len);
/* Brackets a write to the store (see dts_hub.writers). */
bool eng_write_begin(dts_hub *h);
void eng_write_end(dts_hub *h);
/* Posts a timer message for the hub to route at monotonic time `at`. */
void eng_post_timer(dts_hub *h, uint64_t at, int what, char kind, const char *id, const void *key, size_t klen,
                    int64_t fire_at);
/* The monotonic deadline for a wall-clock time (at most a day ahead). */
uint64_t eng_mono_for(int64_t wall);

/* ======================================================================== */
/* the change feed (watch.c)                                                */

eng_watch *eng_watch_new(void);
void eng_watch_free(eng_watch *w);
/* A committed turn changed the record of instance or entity `id` (any
 * thread; nothing happens while nobody watches). */
void eng_note_change(dts_hub *h, const char *id);

/* ======================================================================== */
/* dispatch (dispatch.c)                                                    */

dts_err eng_dispatch_create(dts_hub *h);
dts_actor *eng_dispatch_actor(dts_hub *h);
/* Owners offer work items, and take them back.  body: the WorkItem's
 * fields except the completion token (consumed).  name/version: for the
 * streams' filters (entities: NULL, the name is in the id). */
void eng_offer(eng_actor *owner, char kind, uint64_t serial, const char *token, const char *name, const char *version,
               dts_buf body);
void eng_offer_done(dts_hub *h, char kind, const char *owner, uint64_t serial);
void eng_offer_return(dts_hub *h, char kind, const char *owner, uint64_t serial);
/* The owner of a completion token: kind and id copied out; false when the
 * token is not current.  Any thread. */
/* principal: of the stream the item was sent on ("" when nobody asked). */
bool eng_token_owner(dts_hub *h, const char *token, char *kind, char *id, size_t idlen, char *principal, size_t plen);
/* Sends m to the actor that offered the work item leased under `token`
 * (first making it the owner of `owned`, when given): one lookup routes a
 * completion, since the token holds a reference on its owner, and the send
 * happens inside the read section that keeps the token (and so the actor)
 * alive, with no reference taken on the actor's contended line.  An owner
 * that left memory meanwhile forwards what it gets to the hub, as any
 * actor a send races with its leaving does.  TOKEN_UNKNOWN: the token is
 * not current; TOKEN_DENIED: the lease's stream belongs to another
 * principal than `who` (NULL: not checked).  m stays the caller's unless
 * TOKEN_SENT.  Any thread. */
enum { TOKEN_SENT, TOKEN_UNKNOWN, TOKEN_DENIED };
int eng_token_send(dts_hub *h, const char *token, const char *who, dts_call *owned, dts_msg *m);
/* Whether dispatch waits for the store to take writes again. */
bool eng_dispatch_paused(dts_hub *h);
/* A fresh token: the kind and 128 random bits as hex.  Any thread. */
void eng_new_token(char kind, char out[TOKEN_LEN + 1]);

/* ======================================================================== */
/* instances and entities                                                   */

eng_actor *eng_instance_new(dts_hub *h, const char *id);
eng_actor *eng_entity_new(dts_hub *h, const char *id);
/* Start-up: reads the actor's state now, on the calling thread, before
 * the actor runs (counts what cannot be read). */
void eng_instance_load_now(eng_actor *a);
void eng_entity_load_now(eng_actor *a);

/* The hub's side (hub.c): an answer to a job part. */
void eng_job_done(dts_hub *h, uint64_t job, const char *id, int count, int released, dts_status st,
                  const char *msg, char **children, size_t nchildren);

/* ======================================================================== */
/* shared protocol helpers (workitem.c)                                     */

/* Encodes e with event_id and timestamp set. */
dts_buf eng_ev_pack(HistoryEvent *e, int32_t id, int64_t ts);
/* An EventRaised event, packed (a client's RaiseEvent, an orchestration's SendEvent). */
dts_buf eng_ev_raised(const char *name, Google__Protobuf__StringValue *input, int64_t ts);
/* The dtsd.store.Message around an event. */
dts_buf eng_msg_pack(dts_buf event, const char *expect_exec, const char *sender);
/* eng_post with the Message's other fields. */
void eng_post_ex(eng_actor *a, eng_tx *tx, char kind, const char *id, dts_buf event, const char *expect_exec,
                 bool from_parent, dts_buf start);
/* A failure details message for a sub-orchestration that could not run. */
void eng_payload_too_big(char *msg, size_t len, const char *what, size_t limit);
/* OrchestrationState of a record (answers). */
typedef struct eng_state_buf {
  OrchestrationState s;
  Google__Protobuf__StringValue v, i, o, cs, ex, pid;
  Google__Protobuf__Timestamp ss, ct, lu, co;
  TaskFailureDetails *fd;
  dts_tags tags;
} eng_state_buf;
void eng_state_fill(eng_state_buf *b, const dts_inst_rec *r, bool io);
void eng_state_done(eng_state_buf *b);
/* GetInstanceResponse for r (NULL: not found). */
dts_buf eng_instance_response(const dts_inst_rec *r, bool io);
/* Stale completions are a worker's doing: at most 10 lines a minute (the
 * caller counts them). */
void eng_log_stale(dts_hub *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The CompleteTaskResponse (and the other empty answers). */
dts_buf eng_empty_answer(int method);

#endif
