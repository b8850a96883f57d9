/* jobs.c -- management requests that many actors answer: PurgeInstances,
 * SkipGracefulOrchestrationTerminations, CleanEntityStorage, and the
 * purger's own purges.  The hub sends each instance or entity concerned a
 * part (M_JOB); each does its part in its own batch and answers after its
 * commit (H_JOB_DONE); the request is answered when every part has.
 * A recursive purge goes on down the tree as parts report the finished
 * sub-orchestrations of finished parents.
 */
#include "actors/hubint.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static hub_state *HS(dts_hub *h) { return h->hs; }

static job *job_new(dts_hub *h, int op, int method, dts_call *c) {
  hub_state *hs = HS(h);
  job *j = dts_calloc(1, sizeof(*j));
  j->id = ++hs->next_job;
  j->op = op;
  j->method = method;
  if (c != NULL) h->ops->ref(c);
  j->call = c;
  dts_map_init(&j->seen);
  char key[24];
  snprintf(key, sizeof(key), "%" PRIu64, j->id);
  j->token = NULL;
  dts_map_put(&hs->jobs, dts_strdup(key), j);
  return j;
}

static void purge_one(dts_hub *h, job *j, const char *id);

static void job_free(dts_hub *h, job *j) {
  char key[24];
  snprintf(key, sizeof(key), "%" PRIu64, j->id);
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&HS(h)->jobs, &it, &k, &v);)
    if (v == j) {
      char *owned = (char *)k;
      dts_map_del(&HS(h)->jobs, k);
      dts_free(owned);
      break;
    }
  for (size_t i = 0; i < j->nids; i++) dts_free(j->ids[i]);
  dts_free(j->ids);
  dts_free(j->done);
  dts_map_fini(&j->seen);
  dts_free(j->msg);
  dts_free(j->token);
  dts_free(j->reason);
  if (j->call != NULL) h->ops->unref(j->call);
  dts_free(j);
}

static void add_id(job *j, const char *id) {
  if (j->nids == j->capids) {
    j->capids = j->capids ? j->capids * 2 : 8;
    j->ids = dts_realloc(j->ids, j->capids * sizeof(char *));
    j->done = dts_realloc(j->done, j->capids * sizeof(bool));
  }
  j->done[j->nids] = false;
  j->ids[j->nids++] = dts_strdup(id);
}

/* One part of the job, to the actor kind+id. */
static void part_before(dts_hub *h, job *j, char kind, const char *id, int64_t before) {
  m_job *m = (m_job *)dts_msg_alloc(M_JOB, sizeof(m_job));
  m->hdr.drop = eng_msg_drop_job;
  m->op = j->op;
  m->job = j->id;
  m->recursive = j->recursive;
  m->reason = j->reason != NULL ? dts_strdup(j->reason) : NULL;
  m->remove_empty = j->remove_empty;
  m->release_orphans = j->release_orphans;
  m->before = before;
  j->outstanding++;
  eng_send(h, kind, id, &m->hdr, NULL);
}

static void part(dts_hub *h, job *j, char kind, const char *id) { part_before(h, j, kind, id, 0); }

/* The answer, once every part has answered. */
static void finish(dts_hub *h, job *j) {
  dts_call *c = j->call;
  if (c == NULL) { /* the purger's */
    if (j->count > 0) {
      HS(h)->purged_total += j->count;
      DTS_INFO("hub", "[%s] auto-purge removed %d finished instance%s (%ld in all)", h->name, j->count,
               j->count == 1 ? "" : "s", HS(h)->purged_total);
    }
  } else if (j->st != DTS_ST_OK) {
    hub_answer_fail(h, c, j->st, "%s", j->msg ? j->msg : "a part of the request failed");
  } else if (j->op == JOB_PURGE) {
    PurgeInstancesResponse resp = PURGE_INSTANCES_RESPONSE__INIT;
    Google__Protobuf__BoolValue bv = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;
    bv.value = j->complete;
    resp.deleted_instance_count = j->count;
    resp.is_complete = &bv;
    hub_answer(h, c, &resp.base);
  } else if (j->op == JOB_SKIP) {
    char **left = dts_calloc(j->nids ? j->nids : 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < j->nids; i++)
      if (!j->done[i]) left[n++] = j->ids[i];
    SkipGracefulOrchestrationTerminationsResponse resp = SKIP_GRACEFUL_ORCHESTRATION_TERMINATIONS_RESPONSE__INIT;
    resp.unterminated_instance_ids = left;
    resp.n_unterminated_instance_ids = n;
    hub_answer(h, c, &resp.base);
    dts_free(left);
  } else {
    CleanEntityStorageResponse resp = CLEAN_ENTITY_STORAGE_RESPONSE__INIT;
    Google__Protobuf__StringValue tok;
    resp.empty_entities_removed = j->count;
    resp.orphaned_locks_released = j->released;
    resp.continuation_token = dts_sv(&tok, j->token);
    hub_answer(h, c, &resp.base);
  }
  job_free(h, j);
}

/* A purge an instance began by its id: its tree, and the answer. */
static void purge_tree(dts_hub *h, m_job_done *d) {
  dts_call *c = d->call;
  if (d->st != DTS_ST_OK) {
    hub_answer_fail(h, c, d->st, "%s", d->msg ? d->msg : "the purge failed");
    return;
  }
  job *j = job_new(h, JOB_PURGE, DTS_M_PURGE_INSTANCES, c);
  j->recursive = d->recursive;
  j->complete = true;
  j->count = d->count;
  add_id(j, d->id);
  dts_map_put(&j->seen, j->ids[j->nids - 1], j);
  j->outstanding = 1;
  for (size_t i = 0; i < d->nchildren; i++) purge_one(h, j, d->children[i]);
  if (--j->outstanding == 0) finish(h, j);
}

void jobs_on_done(dts_hub *h, m_job_done *d) {
  if (d->job == 0) {
    if (d->call != NULL) purge_tree(h, d);
    return;
  }
  char key[24];
  snprintf(key, sizeof(key), "%" PRIu64, d->job);
  job *j = dts_map_get(&HS(h)->jobs, key);
  if (j == NULL) return;
  if (d->st != DTS_ST_OK && j->st == DTS_ST_OK) {
    j->st = d->st;
    j->msg = d->msg ? dts_strdup(d->msg) : NULL;
  }
  j->count += d->count;
  j->released += d->released;
  if (j->op == JOB_SKIP) { /* the first unanswered occurrence of its id */
    for (size_t i = 0; i < j->nids; i++)
      if (!j->done[i] && strcmp(j->ids[i], d->id) == 0 && d->count > 0) {
        j->done[i] = true;
        break;
      }
  }
  if (j->op == JOB_PURGE && j->recursive && d->st == DTS_ST_OK)
    for (size_t i = 0; i < d->nchildren; i++) {
      const char *cid = d->children[i];
      if (dts_map_get(&j->seen, cid) != NULL) continue; /* however the ids loop, each once */
      add_id(j, cid);
      dts_map_put(&j->seen, j->ids[j->nids - 1], j);
      part(h, j, 'o', cid);
    }
  if (--j->outstanding == 0) finish(h, j);
}

/* ---- PurgeInstances -------------------------------------------------------------- */

static void purge_one(dts_hub *h, job *j, const char *id) {
  if (id[0] == '@') {
    if (dts_entity_id_problem(id) == NULL) part(h, j, 'e', id);
    return;
  }
  if (dts_instance_id_problem(id) != NULL || dts_map_get(&j->seen, id) != NULL) return;
  add_id(j, id);
  dts_map_put(&j->seen, j->ids[j->nids - 1], j);
  part(h, j, 'o', id);
}

void jobs_on_purge(dts_hub *h, dts_call *c, PurgeInstancesRequest *r) {
  switch (r->request_case) {
  case PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_ID:
  case PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_BATCH: {
    size_t n = 1;
    char **ids = &r->instance_id;
    if (r->request_case == PURGE_INSTANCES_REQUEST__REQUEST_INSTANCE_BATCH) {
      n = r->instance_batch->n_instance_ids;
      ids = r->instance_batch->instance_ids;
      if (n > 500) {
        hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "a purge batch holds at most 500 instance ids, not %zu", n);
        return;
      }
    }
    job *j = job_new(h, JOB_PURGE, DTS_M_PURGE_INSTANCES, c);
    j->recursive = r->recursive;
    j->complete = true;
    j->outstanding = 1; /* held while the parts go out */
    for (size_t i = 0; i < n; i++) purge_one(h, j, ids[i]);
    if (--j->outstanding == 0) finish(h, j);
    return;
  }
  case PURGE_INSTANCES_REQUEST__REQUEST_PURGE_INSTANCE_FILTER: {
    /* in chunks of at most purge_chunk instances per call (isComplete says
     * whether more remain; the SDKs call again) */
    const PurgeInstanceFilter *f = r->purge_instance_filter;
    static const int fin[4] = {ST(COMPLETED), ST(FAILED), ST(CANCELED), ST(TERMINATED)};
    int st[4];
    size_t nst = 0;
    for (int i = 0; i < 4; i++) {
      bool take = f->n_runtime_status == 0;
      for (size_t k = 0; k < f->n_runtime_status; k++) take |= (int)f->runtime_status[k] == fin[i];
      if (take) st[nst++] = fin[i];
    }
    size_t chunk = (size_t)h->cfg.limits.purge_chunk;
    char **ids = NULL, why[400];
    size_t n = 0;
    if (nst > 0 && !query_finished(h, st, nst, f->created_time_from ? dts_ts_to_ns(f->created_time_from) : 0,
                                   f->created_time_to ? dts_ts_to_ns(f->created_time_to) : INT64_MAX, chunk + 1, &ids,
                                   &n, why, sizeof(why))) {
      hub_answer_fail(h, c, DTS_ST_INTERNAL, "%s", why);
      return;
    }
    job *j = job_new(h, JOB_PURGE, DTS_M_PURGE_INSTANCES, c);
    j->recursive = r->recursive;
    j->complete = n <= chunk;
    j->outstanding = 1;
    for (size_t i = 0; i < n && i < chunk; i++) purge_one(h, j, ids[i]);
    for (size_t i = 0; i < n; i++) dts_free(ids[i]);
    dts_free(ids);
    if (--j->outstanding == 0) finish(h, j);
    return;
  }
  default: hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "PurgeInstances needs an instance id, a filter or a batch"); return;
  }
}

void jobs_purge_ids(dts_hub *h, char **ids, const int64_t *before, size_t n) {
  if (n == 0) return;
  job *j = job_new(h, JOB_PURGE, DTS_M_PURGE_INSTANCES, NULL);
  j->outstanding = 1;
  for (size_t i = 0; i < n; i++)
    if (dts_instance_id_problem(ids[i]) == NULL) part_before(h, j, 'o', ids[i], before[i]);
  if (--j->outstanding == 0) finish(h, j);
}

/* ---- SkipGracefulOrchestrationTerminations ----------------------------------------- */

void jobs_on_skip(dts_hub *h, dts_call *c, SkipGracefulOrchestrationTerminationsRequest *r) {
  size_t n = r->instance_batch ? r->instance_batch->n_instance_ids : 0;
  if (n > 500) {
    hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "at most 500 instance ids per call, not %zu", n);
    return;
  }
  job *j = job_new(h, JOB_SKIP, DTS_M_SKIP_GRACEFUL_TERMINATIONS, c);
  const char *reason = dts_sv_get(r->reason);
  j->reason = reason != NULL ? dts_strdup(reason) : NULL;
  j->outstanding = 1;
  for (size_t i = 0; i < n; i++) {
    const char *id = r->instance_batch->instance_ids[i];
    add_id(j, id);
    if (dts_instance_id_problem(id) == NULL) part(h, j, 'o', id); /* entity ids and invalid ones stay unterminated */
  }
  if (--j->outstanding == 0) finish(h, j);
}

/* ---- CleanEntityStorage ------------------------------------------------------------ */

/* A page of entities per call (the SDKs call again while a continuation
 * token comes back). */
void jobs_on_clean(dts_hub *h, dts_call *c, CleanEntityStorageRequest *r) {
  const char *after = dts_sv_get(r->continuation_token);
  if (after == NULL) after = "";
  if (strlen(after) > DTS_ID_MAX) {
    hub_answer_fail(h, c, DTS_ST_INVALID_ARGUMENT, "continuationToken was not made by this server");
    return;
  }
  char **ids = NULL, last[DTS_ID_MAX + 1] = "", why[400];
  size_t n = 0;
  bool more = false;
  if (!query_entity_ids(h, after[0] ? after : NULL, (size_t)h->cfg.limits.purge_chunk, &ids, &n, &more, last, why,
                        sizeof(why))) {
    hub_answer_fail(h, c, DTS_ST_INTERNAL, "%s", why);
    return;
  }
  job *j = job_new(h, JOB_CLEAN, DTS_M_CLEAN_ENTITY_STORAGE, c);
  j->remove_empty = r->remove_empty_entities;
  j->release_orphans = r->release_orphaned_locks;
  if (more) j->token = dts_strdup(last);
  j->outstanding = 1;
  for (size_t i = 0; i < n; i++) {
    part(h, j, 'e', ids[i]);
    dts_free(ids[i]);
  }
  dts_free(ids);
  if (--j->outstanding == 0) finish(h, j);
}

void jobs_fini(dts_hub *h) {
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&HS(h)->jobs, &it, &k, &v);) {
    job *j = v;
    if (j->call != NULL) {
      h->ops->fail(j->call, DTS_ST_UNAVAILABLE, "dtsd is shutting down");
      h->ops->unref(j->call);
      j->call = NULL;
    }
    job_free(h, j);
  }
}
