/* hub.h -- a task hub: its orchestration instances, entities, work items,
 * durable timers and worker streams, as a set of actors (docs/engine.md).
 *
 * An actor per orchestration instance and per entity, each owning its state
 * and writing it in one atomic batch per turn; a dispatch actor for the
 * ready work and the worker streams; the hub's own actor for its lifecycle,
 * the directory of live actors and management requests.  Requests enter
 * through dts_hub_post on any thread and go straight to the actor they
 * name.  Everything the outside world may see as a result of a change (an
 * answer, a work item, a message to another actor) waits until the change
 * is written (docs/orchestrations.md).
 */
#ifndef DTS_ACTORS_HUB_H
#define DTS_ACTORS_HUB_H

#include "actors/call.h"
#include "actors/methods.h"
#include "runtime/hist.h"
#include "runtime/sched.h"
#include "runtime/timer.h"
#include "storage/keys.h"
#include "storage/store.h"

typedef struct dts_hub dts_hub;

/* Bounds on the work and memory one request may take; 0 = the default. */
typedef struct dts_hub_limits {
  int purge_chunk;        /* instances one PurgeInstances-by-filter deletes (1000) */
  int max_page;           /* QueryInstances / QueryEntities page size (1000) */
  int max_list_page;      /* ListInstanceIds page size (10000) */
  int scan_budget;        /* index entries one page may look at (100000) */
  int max_chunks;         /* partial orchestrator completions buffered per turn (256) */
  long max_chunk_bytes;   /* their bytes together (256 MiB) */
  int max_stream_items;   /* maxConcurrent*WorkItems a worker may ask for (10000) */
  long max_outbox_bytes;  /* bytes queued on one stream before dispatch waits (64 MiB) */
} dts_hub_limits;

typedef struct dts_hub_config {
  const char *name;
  const dts_call_ops *call_ops; /* how the engine reaches calls (call.h) */
  dts_sched *sched;
  dts_timers *timers;
  dts_store *store;
  size_t max_payload;         /* bytes per payload string */
  int default_max_orch;       /* per stream when the worker sends 0 */
  int default_max_act;
  uint64_t abandon_delay_ns;  /* redelivery delay after Abandon* */
  uint64_t ping_interval_ns;  /* HealthPing on idle streams */
  /* Auto-purge: retention per terminal status, ns; -1 = keep.  Index
   * DTS_RET_DEFAULT applies to statuses without their own value. */
  bool retention_set;         /* the values below come from a flag: persist them */
  int64_t retention_ns[5];
  uint64_t purge_interval_ns; /* how often the purger looks */
  int max_entity_batch;       /* operations per entity work item (default 100) */
  /* Write each actor turn's batch from the actor's own thread (LevelDB
   * merges concurrent writers itself) instead of handing it to the storage
   * thread and waiting for it to come back: two thread hand-offs less per
   * turn.  For --durability=os; fsync keeps the storage thread's group
   * commit. */
  bool inline_commit;
  /* Unfinished instances and entities with nothing to do (no events, no
   * work item out, nothing pending) for this long leave memory and are read
   * back on their next message; 0 = keep them.  Finished instances leave as
   * soon as they are idle.  Checked on the purger's tick. */
  uint64_t passivate_after_ns;
  dts_hub_limits limits;
} dts_hub_config;

enum { DTS_RET_DEFAULT = 0, DTS_RET_COMPLETED, DTS_RET_FAILED, DTS_RET_CANCELED, DTS_RET_TERMINATED };

/* dts_retention_parse (runtime/duration.h) reads a policy in this order. */

/* Creates the hub and loads its state from the store (synchronously: call
 * at start-up, before serving).  The caller holds one reference. */
dts_err dts_hub_create(const dts_hub_config *cfg, dts_hub **out);
const char *dts_hub_name(const dts_hub *h);

/* Hands a decoded request to the actor it names (any thread: the caller's
 * thread looks the actor up and sends).  Takes over `req` (freed with
 * protobuf_c_message_free_unpacked) and one reference to `call`; sets the
 * owner of calls that are streams or waits. */
void dts_hub_post(dts_hub *h, dts_method m, dts_call *call, ProtobufCMessage *req);
/* The hub's own actor (timers aimed at the hub target it). */
dts_actor *dts_hub_actor(dts_hub *h);

/* Asks the hub's actors to end their streams (UNAVAILABLE) and waiters and
 * to release every call they hold.  Asynchronous. */
void dts_hub_shutdown(dts_hub *h);
/* A GetWorkItems stream whose credentials expired or were revoked: it gets
 * no new work items; once those it holds are completed or returned, it
 * ends (status OK, `why` as the message) so the worker reconnects with
 * fresh ones.  Any thread; takes its own reference on c. */
void dts_hub_drain_stream(dts_hub *h, dts_call *c, const char *why);
/* True once the hub has handled the shutdown and no actor of it is writing:
 * from then on none arms a timer or submits anything to the store. */
bool dts_hub_quiesced(dts_hub *h);
/* After DeleteTaskHub: 0 while its wipe is not committed, 1 once it is (a
 * hub of the same name may then be created), -1 when it failed (the hub
 * still holds its data).  Any thread. */
int dts_hub_delete_state(dts_hub *h);
/* The bridge serves a hub whose deletion failed again: back to 0.  The
 * hub's own `deleted` flag was already cleared when the deletion failed. */
void dts_hub_undelete(dts_hub *h);
/* Records in the store that this hub was created at runtime (CreateTaskHub),
 * so that it is served again after a restart.  Synchronous: call it from
 * the thread that creates the hub, before announcing it. */
dts_err dts_hub_persist_marker(dts_hub *h);
/* Scans the store for hubs created at runtime; calls fn for each name. */
dts_err dts_hub_list_markers(dts_store *store, void (*fn)(void *ctx, const char *name), void *ctx);
/* After the shutdown: lets go of every actor and drops the creator's
 * reference; the hub is freed once its last actor is. */
void dts_hub_release(dts_hub *h);

/* The change feed of live views (the HTTP API's event streams): while at
 * least one watcher is registered, the ids of instances and entities whose
 * records a committed turn changed (started, progressed, finished, purged;
 * an entity's state or lock) are kept, the last 4096.  Any thread; reads
 * no store. */
void dts_hub_watch(dts_hub *h, bool on);
/* The number of the last change noted: a new watcher starts from it. */
uint64_t dts_hub_change_seq(dts_hub *h);
/* Copies the ids noted after *seq (at most max; dts_free each) and moves
 * *seq past them (max 0: past every one, copying none).  *lost: some were not kept (the ring wrapped, or nobody
 * watched then): look at everything again. */
size_t dts_hub_changes(dts_hub *h, uint64_t *seq, char **ids, size_t max, bool *lost);

/* Figures for tests and logs (any thread; approximate while running). */
typedef struct dts_hub_stats {
  long instances, ready_orch, ready_act, streams, dispatched, completions, stale_completions;
  long unreadable; /* records that could not be read (logged with their keys) */
  long resets;     /* times an actor read itself back after a change did not reach the store */
  long entities;   /* entities in memory */
  long actors;     /* actors in the directory */
  long passivated; /* idle unfinished instances and entities that dropped their state so far */
} dts_hub_stats;
void dts_hub_get_stats(dts_hub *h, dts_hub_stats *out);
/* Work items by kind (0 orchestrator, 1 activity, 2 entity) and latency
 * histograms, for metrics (any thread). */
typedef struct dts_hub_figures {
  long sent[3], done[3], back[3];
  long started;     /* orchestrations that started (new, restarted) */
  long finished[8]; /* ... that finished, by status (completed, failed, canceled, terminated) */
  long entity_ops;  /* entity operations completed */
  dts_hist_snap dispatch; /* ready -> sent to a worker */
  dts_hist_snap work[3];  /* sent -> completed */
} dts_hub_figures;
void dts_hub_get_figures(dts_hub *h, dts_hub_figures *out);

/* The id rules (dts_instance_id_problem and the others) are storage's:
 * storage/keys.h, included above. */

#endif
