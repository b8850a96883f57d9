/* hubint.h -- private to the hub actor's files: hub.c (lifecycle, the
 * directory, routing misses, leaving memory, wiping), jobs.c (management
 * requests that many actors answer), query.c (queries over the store) and
 * retention.c (auto-purge) and schedule.c (recurring starts).
 */
#ifndef DTS_ACTORS_HUBINT_H
#define DTS_ACTORS_HUBINT_H

#include "actors/engine.h"

/* A management request that actors answer in parts (H_JOB_DONE). */
typedef struct job {
  uint64_t id;
  int op;              /* JOB_PURGE, JOB_SKIP, JOB_CLEAN */
  int method;
  dts_call *call;      /* NULL: the purger's own */
  int outstanding;     /* parts not answered yet */
  int count, released;
  dts_status st;       /* the first part that failed */
  char *msg;
  bool recursive;
  dts_map seen;        /* purge: ids already asked (trees that loop) */
  char **ids;          /* skip: the ids in request order; purge: the ids asked */
  bool *done;          /* skip: terminated */
  size_t nids, capids;
  bool complete;       /* purge by filter: nothing left */
  char *token;         /* clean: where the next page starts */
  char *reason;        /* skip */
  bool remove_empty, release_orphans;
} job;

typedef struct hub_state {
  eng_tx tx;                /* the hub's own writes: retention, wipes */
  dts_map leaving;          /* dkey -> eng_actor: out of the directory, not gone yet */
  dts_map jobs;             /* id (decimal) -> job */
  uint64_t next_job;
  int64_t ret[5];           /* retention, ns; -1 keep */
  dts_key sweep_at;         /* the purger resumes its sweep here (n = 0: from the start) */
  long purged_total;
  dts_map scheds;           /* schedule id -> schedule (schedule.c) */
  uint64_t sched_wake;      /* monotonic time of the H_SCHED on its way (0: none) */
  bool sched_stale;         /* a hub write failed: read the schedules again */
  bool shutting_down;
  bool poll_armed;
  /* a wipe (CreateTaskHub{recreate}, DeleteTaskHub): every actor drops its
   * state first (M_FREEZE), then the hub's keys go in one batch */
  bool wiping;
  int freeze_left;          /* actors that have not dropped their state yet */
  dts_call *wipe_call;
  int wipe_method;
  dts_msg **queued;         /* misses that came during the wipe */
  size_t nqueued, capqueued;
} hub_state;

/* hub.c */
void hub_answer_fail(dts_hub *h, dts_call *c, dts_status st, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void hub_answer(dts_hub *h, dts_call *c, const ProtobufCMessage *m);
/* Management writes while the store refuses them: answered at once. */
bool hub_refused(dts_hub *h, dts_call *c);

/* jobs.c */
void jobs_on_purge(dts_hub *h, dts_call *c, PurgeInstancesRequest *r);
void jobs_on_skip(dts_hub *h, dts_call *c, SkipGracefulOrchestrationTerminationsRequest *r);
void jobs_on_clean(dts_hub *h, dts_call *c, CleanEntityStorageRequest *r);
void jobs_on_done(dts_hub *h, m_job_done *d);
/* The purger: purges these instances if they finished at or before
 * before[i] (no answer). */
void jobs_purge_ids(dts_hub *h, char **ids, const int64_t *before, size_t n);
/* Fails every job still open (shutdown). */
void jobs_fini(dts_hub *h);

/* query.c */
void query_instances(dts_hub *h, dts_call *c, QueryInstancesRequest *r);
void query_list_ids(dts_hub *h, dts_call *c, ListInstanceIdsRequest *r);
void query_count(dts_hub *h, dts_call *c, Dtsd__Admin__CountInstancesRequest *r);
void query_entities(dts_hub *h, dts_call *c, QueryEntitiesRequest *r);
/* Finished instances by status index: at most `want` ids (dts_free each
 * and the array) of the given terminal statuses created in [from, to];
 * false with the reason in why when the index cannot be read. */
bool query_finished(dts_hub *h, const int *st, size_t nst, int64_t from, int64_t to, size_t want, char ***ids,
                    size_t *n, char *why, size_t whylen);
/* Entity ids in id order after `after`, at most `want`, for a page of
 * CleanEntityStorage; *more when the walk stopped early, *last the last
 * id looked at (DTS_ID_MAX + 1). */
bool query_entity_ids(dts_hub *h, const char *after, size_t want, char ***ids, size_t *n, bool *more, char *last,
                      char *why, size_t whylen);

/* retention.c */
void retention_load(dts_hub *h);
void retention_on_set(dts_hub *h, dts_call *c, Dtsd__Admin__RetentionPolicy *p);
void retention_on_get(dts_hub *h, dts_call *c);
/* One bounded pass of the purger. */
void retention_sweep(dts_hub *h);
void retention_clear(dts_hub *h);

/* schedule.c */
void sched_load(dts_hub *h);
void sched_on_rpc(dts_hub *h, dts_call *c, int method, ProtobufCMessage *req);
/* Starts the occurrences that are due (H_TICK; H_SCHED with woken). */
void sched_due(dts_hub *h, bool woken);
/* The hub's data was wiped: no schedules. */
void sched_clear(dts_hub *h);
/* A write of the hub's failed. */
void sched_failed(dts_hub *h);
void sched_fini(dts_hub *h);

#endif
