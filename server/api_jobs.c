/* api_jobs.c -- bulk actions over a whole query, as background jobs:
 *
 *   POST /orchestrations/bulk {"action":"terminate","filter":{...},"reason":"...","dryRun":true}
 *     -> 200 {"count":N,"truncated":false}                 (dry run: how many it would touch)
 *     -> 202 {"jobId":"...","total":N}  Location: jobs/<id>  (the job started)
 *   GET /jobs, GET /jobs/{id}  -> {"jobId","action","state","total","done","failedCount","failed":[...]}
 *   DELETE /jobs/{id}          -> 202: cancelled (it stops between two instances)
 *
 * The ids are gathered first (the query's filter, up to --http-max-scan
 * looked at), then acted on one by one with the requests a client would
 * send (terminate, purge, suspend, resume), each an in-process call, on a
 * thread of the job's own.  Jobs live in memory: a restart forgets them
 * (what they did stays done).  At most MAX_RUNNING run at once; the last
 * MAX_JOBS are kept for reading.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "server/api.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_JOBS 32
#define MAX_RUNNING 4
#define MAX_FAILED 1000 /* failures kept with their ids (all are counted) */

enum { NACTIONS = 4 };
static const char *const ACTIONS[NACTIONS] = {"terminate", "purge", "suspend", "resume"};
static const int ACT[NACTIONS] = {API_TERMINATE, API_PURGE, API_SUSPEND, API_RESUME}; /* api_act's */
enum { J_RUNNING, J_DONE, J_CANCELLED };
static const char *const STATES[] = {"running", "done", "cancelled"};

typedef struct job {
  char id[37];
  int action;
  char *reason;
  dts_hub *h;
  char hub[128];
  dts_http_config cfg;
  char **ids;
  size_t total;
  atomic_size_t done;
  atomic_int state;
  atomic_bool cancel;
  pthread_mutex_t mu; /* failed */
  json_t *failed;
  long nfailed;
  pthread_t thread;
  bool joined;
} job;

static pthread_mutex_t jobs_mu = PTHREAD_MUTEX_INITIALIZER;
static job *jobs[MAX_JOBS]; /* oldest first */
static int njobs;

static void job_free(job *j) {
  for (size_t i = 0; i < j->total; i++) dts_free(j->ids[i]);
  dts_free(j->ids);
  dts_free(j->reason);
  json_decref(j->failed);
  pthread_mutex_destroy(&j->mu);
  dts_free(j);
}

static void *job_main(void *arg) {
  job *j = arg;
  pthread_setname_np(pthread_self(), "http-job");
  for (size_t i = 0; i < j->total && !atomic_load(&j->cancel); i++) {
    api a;
    api_detached(&a, j->h, j->hub, j->cfg.call_timeout_ms);
    if (api_act(&a, ACT[j->action], j->ids[i], j->reason && j->reason[0] ? j->reason : NULL, false) != 200) {
      pthread_mutex_lock(&j->mu);
      if (j->nfailed++ < MAX_FAILED) {
        json_t *o = json_object();
        json_object_set_new(o, "instanceId", json_string(j->ids[i]));
        json_object_set_new(o, "error", json_string(a.err));
        json_array_append_new(j->failed, o);
      }
      pthread_mutex_unlock(&j->mu);
    }
    api_detached_done(&a);
    atomic_fetch_add(&j->done, 1);
  }
  atomic_store(&j->state, atomic_load(&j->cancel) ? J_CANCELLED : J_DONE);
  return NULL;
}

static json_t *job_json(job *j) {
  json_t *o = json_object();
  json_object_set_new(o, "jobId", json_string(j->id));
  json_object_set_new(o, "taskHub", json_string(j->hub));
  json_object_set_new(o, "action", json_string(ACTIONS[j->action]));
  json_object_set_new(o, "state", json_string(STATES[atomic_load(&j->state)]));
  json_object_set_new(o, "total", json_integer((json_int_t)j->total));
  json_object_set_new(o, "done", json_integer((json_int_t)atomic_load(&j->done)));
  pthread_mutex_lock(&j->mu);
  json_object_set_new(o, "failedCount", json_integer(j->nfailed));
  json_object_set_new(o, "failed", json_deep_copy(j->failed));
  pthread_mutex_unlock(&j->mu);
  return o;
}

/* Under jobs_mu: room for one more, dropping the oldest finished job. */
static bool make_room(void) {
  int running = 0;
  for (int i = 0; i < njobs; i++) running += atomic_load(&jobs[i]->state) == J_RUNNING;
  if (running >= MAX_RUNNING) return false;
  if (njobs < MAX_JOBS) return true;
  for (int i = 0; i < njobs; i++) {
    if (atomic_load(&jobs[i]->state) == J_RUNNING) continue;
    pthread_join(jobs[i]->thread, NULL);
    job_free(jobs[i]);
    memmove(&jobs[i], &jobs[i + 1], (size_t)(njobs - i - 1) * sizeof(jobs[0]));
    njobs--;
    return true;
  }
  return false;
}

void api_orch_bulk(api *a) {
  json_t *b = api_body(a, false);
  if (b == NULL) return;
  const char *action = api_str(b, "action", NULL);
  int act = -1;
  for (int i = 0; action && i < NACTIONS; i++)
    if (strcmp(action, ACTIONS[i]) == 0) act = i;
  char **ids = NULL;
  bool truncated = false;
  size_t n = 0;
  if (act < 0) {
    http_error(a->out, 400, "'action' must be terminate, purge, suspend or resume");
  } else if ((n = api_query_ids(a, json_object_get(b, "filter"), 0, &ids, &truncated)) == (size_t)-1) {
    /* answered */
  } else if (json_is_true(json_object_get(b, "dryRun"))) {
    json_t *j = json_object();
    json_object_set_new(j, "count", json_integer((json_int_t)n));
    json_object_set_new(j, "truncated", json_boolean(truncated));
    api_json(a, 200, j);
  } else {
    pthread_mutex_lock(&jobs_mu);
    if (!make_room()) {
      pthread_mutex_unlock(&jobs_mu);
      http_error(a->out, 429, "%d bulk jobs are running already; wait for one to end", MAX_RUNNING);
    } else {
      job *j = dts_calloc(1, sizeof(*j));
      dts_uuid(j->id);
      j->action = act;
      const char *reason = api_str(b, "reason", NULL);
      j->reason = reason ? dts_strdup(reason) : NULL;
      j->h = a->h;
      snprintf(j->hub, sizeof(j->hub), "%s", a->hub);
      j->cfg = *a->r->cfg;
      j->ids = ids;
      j->total = n;
      ids = NULL;
      j->failed = json_array();
      pthread_mutex_init(&j->mu, NULL);
      atomic_init(&j->state, J_RUNNING);
      jobs[njobs++] = j;
      pthread_create(&j->thread, NULL, job_main, j);
      json_t *o = json_object();
      json_object_set_new(o, "jobId", json_string(j->id));
      json_object_set_new(o, "total", json_integer((json_int_t)n));
      json_object_set_new(o, "truncated", json_boolean(truncated));
      snprintf(a->out->location, sizeof(a->out->location), "jobs/%s", j->id);
      pthread_mutex_unlock(&jobs_mu);
      api_json(a, 202, o);
      n = 0;
    }
  }
  if (ids != NULL) {
    for (size_t i = 0; i < n && n != (size_t)-1; i++) dts_free(ids[i]);
    dts_free(ids);
  }
  json_decref(b);
}

bool api_jobs_route(api *a, char **seg, int nseg) {
  bool get = strcmp(a->r->method, "GET") == 0, del = strcmp(a->r->method, "DELETE") == 0;
  if (!(nseg == 0 && get) && !(nseg == 1 && (get || del))) return false;
  pthread_mutex_lock(&jobs_mu);
  if (nseg == 0) {
    json_t *list = json_array();
    for (int i = njobs - 1; i >= 0; i--) /* newest first */
      if (strcmp(jobs[i]->hub, a->hub) == 0) json_array_append_new(list, job_json(jobs[i]));
    json_t *o = json_object();
    json_object_set_new(o, "jobs", list);
    api_json(a, 200, o);
  } else {
    job *j = NULL;
    for (int i = 0; i < njobs && j == NULL; i++)
      if (strcmp(jobs[i]->id, seg[0]) == 0 && strcmp(jobs[i]->hub, a->hub) == 0) j = jobs[i];
    if (j == NULL) {
      http_error(a->out, 404, "no bulk job '%.40s' in task hub '%s' (jobs are kept in memory until dtsd restarts)",
                 seg[0], a->hub);
    } else if (del) {
      atomic_store(&j->cancel, true);
      api_json(a, 202, job_json(j));
    } else {
      api_json(a, 200, job_json(j));
    }
  }
  pthread_mutex_unlock(&jobs_mu);
  return true;
}

void api_jobs_stop(void) {
  pthread_mutex_lock(&jobs_mu);
  for (int i = 0; i < njobs; i++) atomic_store(&jobs[i]->cancel, true);
  for (int i = 0; i < njobs; i++) {
    pthread_join(jobs[i]->thread, NULL);
    job_free(jobs[i]);
  }
  njobs = 0;
  pthread_mutex_unlock(&jobs_mu);
}
