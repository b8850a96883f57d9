/* hub.h -- the task hub actor: every orchestration instance, activity work
 * item, durable timer and worker stream of one task hub.
 *
 * One actor per hub, so the hub's state needs no locks.  Its state lives in
 * memory and in the store; each message it handles that changes state ends
 * in one atomic batch submitted to the storage thread, and everything the
 * outside world may see as a result (RPC answers, work items, timers) waits
 * until that batch comes back committed (docs/orchestrations.md).
 */
#ifndef DTS_ACTORS_HUB_H
#define DTS_ACTORS_HUB_H

#include "actors/call.h"
#include "actors/methods.h"
#include "runtime/sched.h"
#include "runtime/timer.h"
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
  /* Write each turn's batch from the hub's own thread (LevelDB merges
   * concurrent writers itself) instead of handing it to the storage thread
   * and waiting for it to come back: two thread hand-offs less per turn.
   * For --durability=os; fsync keeps the storage thread's group commit. */
  bool inline_commit;
  /* Unfinished instances with nothing to do (no events, no work item out,
   * nothing pending) for this long are dropped from memory and read back
   * on their next event; 0 = keep them.  Checked on the purger's tick. */
  uint64_t passivate_after_ns;
  dts_hub_limits limits;
} dts_hub_config;

enum { DTS_RET_DEFAULT = 0, DTS_RET_COMPLETED, DTS_RET_FAILED, DTS_RET_CANCELED, DTS_RET_TERMINATED };

/* Parses "default=30d,completed=1h,failed=0" (units ms s m h d; "keep"
 * unsets) into ns values (-1 = keep).  Returns NULL or a static error. */
const char *dts_retention_parse(const char *spec, int64_t out[5]);

/* Creates the hub and loads its state from the store (synchronously: call
 * at start-up, before serving).  The caller holds one reference. */
dts_err dts_hub_create(const dts_hub_config *cfg, dts_hub **out);
const char *dts_hub_name(const dts_hub *h);

/* Hands a decoded request to the hub.  Takes over `req` (freed with
 * protobuf_c_message_free_unpacked) and one reference to `call`. */
void dts_hub_post(dts_hub *h, dts_method m, dts_call *call, ProtobufCMessage *req);
/* The actor to which call events (DTS_CALL_SENT/CLOSED) for calls the hub
 * owns are posted. */
dts_actor *dts_hub_actor(dts_hub *h);

/* Asks the hub to end its streams (UNAVAILABLE) and waiters and to release
 * every call it holds.  Asynchronous. */
void dts_hub_shutdown(dts_hub *h);
/* True once the hub has handled the shutdown: from then on it arms no
 * timers and submits nothing more to the store. */
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
/* Drops the creator's reference; the hub is freed when its actor is idle. */
void dts_hub_release(dts_hub *h);

/* Figures for tests and logs (any thread; approximate while running). */
typedef struct dts_hub_stats {
  long instances, ready_orch, ready_act, streams, dispatched, completions, stale_completions;
  long unreadable; /* records start-up could not read (logged with their keys) */
  long resets;     /* times memory was read back after a change did not reach the store */
} dts_hub_stats;
void dts_hub_get_stats(dts_hub *h, dts_hub_stats *out);

/* Every id that becomes part of a store key is at most this long. */
#define DTS_ID_MAX 100

/* Id rules shared with the bridge: 1..100 printable ASCII, no leading '@'.
 * Returns NULL when valid, else a static explanation. */
const char *dts_instance_id_problem(const char *id);
/* Task hub names: 1..64 of A-Z a-z 0-9 - _.  NULL when valid. */
const char *dts_hub_name_problem(const char *name);
/* Entity ids: "@name@key", at most 100 printable ASCII characters. */
const char *dts_entity_id_problem(const char *id);
/* Execution ids and request ids: 1..100 printable ASCII.  NULL when valid,
 * else the end of a sentence ("is longer than 100 characters"). */
const char *dts_short_id_problem(const char *id);

#endif
