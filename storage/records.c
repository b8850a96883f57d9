/* records.c -- see records.h. */
#include "storage/records.h"

#include "runtime/alloc.h"

#include <string.h>

#define ST(x) ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_##x

bool dts_status_terminal(int st) {
  return st == ST(COMPLETED) || st == ST(FAILED) || st == ST(TERMINATED) || st == ST(CANCELED);
}

static char *dup_or_null(const char *s) { return s != NULL ? dts_strdup(s) : NULL; }

static void set_str(char **dst, const char *s) {
  dts_free(*dst);
  *dst = dup_or_null(s);
}

void dts_inst_rec_init(dts_inst_rec *r, const char *id) {
  memset(r, 0, sizeof(*r));
  r->id = dts_strdup(id);
  r->name = dts_strdup("");
  r->exec_id = dts_strdup("");
}

static void free_strs(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) dts_free(v[i]);
  dts_free(v);
}

void dts_inst_rec_fini(dts_inst_rec *r) {
  dts_free(r->id);
  dts_free(r->name);
  dts_free(r->version);
  dts_free(r->input);
  dts_free(r->output);
  dts_free(r->custom_status);
  dts_buf_free(&r->failure);
  dts_free(r->exec_id);
  dts_buf_free(&r->parent);
  dts_free(r->parent_id);
  dts_free(r->parent_exec);
  free_strs(r->tag_k, r->ntags);
  free_strs(r->tag_v, r->ntags);
  dts_buf_free(&r->trace);
  free_strs(r->locks, r->nlocks);
  memset(r, 0, sizeof(*r));
}

/* ---- tags -------------------------------------------------------------------- */

typedef struct dts_tag_entry {
  ProtobufCMessage base;
  char *key, *value;
} tag_entry;

dts_tags dts_tags_as(const ProtobufCMessageDescriptor *d, void *const *src, size_t n) {
  dts_tags t = {NULL, NULL, n};
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

dts_tags dts_tags_of(const ProtobufCMessageDescriptor *d, const dts_inst_rec *r) {
  dts_tags t = {NULL, NULL, r->ntags};
  if (r->ntags == 0) return t;
  t.e = dts_calloc(r->ntags, sizeof(*t.e));
  t.p = dts_calloc(r->ntags, sizeof(*t.p));
  for (size_t i = 0; i < r->ntags; i++) {
    t.e[i].base.descriptor = d;
    t.e[i].key = r->tag_k[i];
    t.e[i].value = r->tag_v[i];
    t.p[i] = &t.e[i];
  }
  return t;
}

void dts_tags_free(dts_tags *t) {
  dts_free(t->e);
  dts_free(t->p);
  t->e = NULL;
  t->p = NULL;
}

void dts_inst_rec_set_tags(dts_inst_rec *r, void *const *src, size_t n) {
  /* copy first: `src` may point at the strings about to be freed */
  char **k = n ? dts_calloc(n, sizeof(char *)) : NULL, **v = n ? dts_calloc(n, sizeof(char *)) : NULL;
  for (size_t i = 0; i < n; i++) {
    const tag_entry *s = src[i];
    k[i] = dts_strdup(s->key);
    v[i] = dts_strdup(s->value);
  }
  free_strs(r->tag_k, r->ntags);
  free_strs(r->tag_v, r->ntags);
  r->ntags = n;
  r->tag_k = k;
  r->tag_v = v;
}

void dts_inst_rec_merge_tags(dts_inst_rec *r, void *const *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const tag_entry *s = src[i];
    size_t k = 0;
    while (k < r->ntags && strcmp(r->tag_k[k], s->key) != 0) k++;
    if (k < r->ntags) {
      set_str(&r->tag_v[k], s->value);
      continue;
    }
    r->tag_k = dts_realloc(r->tag_k, (r->ntags + 1) * sizeof(char *));
    r->tag_v = dts_realloc(r->tag_v, (r->ntags + 1) * sizeof(char *));
    r->tag_k[r->ntags] = dts_strdup(s->key);
    r->tag_v[r->ntags] = dts_strdup(s->value);
    r->ntags++;
  }
}

void dts_inst_rec_set_locks(dts_inst_rec *r, char *const *ids, size_t n) {
  char **v = n ? dts_calloc(n, sizeof(char *)) : NULL;
  for (size_t i = 0; i < n; i++) v[i] = dts_strdup(ids[i]);
  free_strs(r->locks, r->nlocks);
  r->locks = v;
  r->nlocks = n;
}

void dts_inst_rec_set_parent(dts_inst_rec *r, const ParentInstanceInfo *p) {
  dts_buf_free(&r->parent);
  set_str(&r->parent_id, NULL);
  set_str(&r->parent_exec, NULL);
  r->parent_task = 0;
  if (p == NULL) return;
  r->parent = dts_pb_pack(&p->base);
  if (p->orchestration_instance != NULL) {
    set_str(&r->parent_id, p->orchestration_instance->instance_id);
    set_str(&r->parent_exec, dts_sv_get(p->orchestration_instance->execution_id));
  }
  r->parent_task = p->task_scheduled_id;
}

/* ---- the record ------------------------------------------------------------- */

bool dts_inst_rec_unpack(const void *v, size_t n, dts_inst_rec *out) {
  Dtsd__Store__InstanceRecord *r = dtsd__store__instance_record__unpack(NULL, n, (const uint8_t *)v);
  /* what dtsd could have written: its ids name keys */
  bool ok = r != NULL && dts_instance_id_problem(r->instance_id) == NULL &&
            (r->execution_id[0] == '\0' || dts_short_id_problem(r->execution_id) == NULL) && r->status >= 0 &&
            r->status <= 15 && r->n_lock_set <= 100;
  for (size_t i = 0; ok && i < r->n_lock_set; i++) ok = dts_entity_id_problem(r->lock_set[i]) == NULL;
  if (!ok) {
    if (r != NULL) dtsd__store__instance_record__free_unpacked(r, NULL);
    return false;
  }
  dts_inst_rec_init(out, r->instance_id);
  set_str(&out->name, r->name ? r->name : "");
  set_str(&out->version, dts_sv_get(r->version));
  set_str(&out->input, dts_sv_get(r->input));
  set_str(&out->output, dts_sv_get(r->output));
  set_str(&out->custom_status, dts_sv_get(r->custom_status));
  out->failure = dts_buf_copy(r->failure_details.data, r->failure_details.len);
  out->has_failure = r->has_failure;
  set_str(&out->exec_id, r->execution_id ? r->execution_id : "");
  out->status = r->status;
  out->created = r->created_ns;
  out->updated = r->updated_ns;
  out->completed = r->completed_ns;
  out->sched_start = r->scheduled_start_ns;
  if (r->parent.len > 0) {
    ParentInstanceInfo *p = parent_instance_info__unpack(NULL, r->parent.len, r->parent.data);
    if (p != NULL) {
      dts_inst_rec_set_parent(out, p);
      parent_instance_info__free_unpacked(p, NULL);
    }
  }
  dts_inst_rec_set_tags(out, (void *const *)r->tags, r->n_tags);
  out->trace = dts_buf_copy(r->trace_context.data, r->trace_context.len);
  out->force_turn = r->force_turn;
  out->history_len = r->history_len;
  out->inbox_count = r->inbox_count;
  out->activity_count = r->activity_count;
  dts_inst_rec_set_locks(out, r->lock_set, r->n_lock_set);
  out->ix_set = true; /* written together with the record */
  out->ix_status = out->status;
  out->ix_created = out->created;
  out->ix_completed = out->completed;
  dtsd__store__instance_record__free_unpacked(r, NULL);
  return true;
}

dts_buf dts_inst_rec_pack(const dts_inst_rec *in) {
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
  r.history_len = in->history_len;
  r.inbox_count = in->inbox_count;
  r.activity_count = in->activity_count;
  r.trace_context.data = in->trace.p;
  r.trace_context.len = in->trace.n;
  r.force_turn = in->force_turn;
  r.n_lock_set = in->nlocks;
  r.lock_set = in->locks;
  dts_buf b = dts_pb_pack(&r.base);
  dts_free(te);
  dts_free(tp);
  return b;
}

/* ---- indexes ----------------------------------------------------------------
 * Written in the same batch as the record they index:
 *   S<status:1><created:8><id> -> ""        QueryInstances
 *   C<completed:8><id>        -> <status:1> ListInstanceIds, auto-purge
 *   U<id>                     -> <status:1> unfinished instances by id */

static bool has_cidx(int status, int64_t completed) { return dts_status_terminal(status) && completed > 0; }

void dts_index_update(dts_batch *b, const dts_keyspace *ks, dts_inst_rec *in) {
  dts_key k;
  bool s_same = in->ix_set && in->ix_status == in->status && in->ix_created == in->created;
  if (!s_same) {
    if (in->ix_set) {
      dts_key_sidx(&k, ks, in->ix_status, in->ix_created, in->id);
      dts_batch_del(b, k.b, k.n);
    }
    dts_key_sidx(&k, ks, in->status, in->created, in->id);
    dts_batch_put(b, k.b, k.n, "", 0);
  }
  bool had_c = in->ix_set && has_cidx(in->ix_status, in->ix_completed);
  bool has_c = has_cidx(in->status, in->completed);
  bool c_same = had_c && has_c && in->ix_completed == in->completed && in->ix_status == in->status;
  char st = (char)in->status;
  if (had_c && !c_same) {
    dts_key_cidx(&k, ks, in->ix_completed, in->id);
    dts_batch_del(b, k.b, k.n);
  }
  if (has_c && !c_same) {
    dts_key_cidx(&k, ks, in->completed, in->id);
    dts_batch_put(b, k.b, k.n, &st, 1);
  }
  bool had_u = in->ix_set && !dts_status_terminal(in->ix_status), has_u = !dts_status_terminal(in->status);
  if (had_u && !has_u) {
    dts_key_id(&k, ks, 'U', in->id);
    dts_batch_del(b, k.b, k.n);
  } else if (has_u && (!had_u || in->ix_status != in->status)) {
    dts_key_id(&k, ks, 'U', in->id);
    dts_batch_put(b, k.b, k.n, &st, 1);
  }
  in->ix_set = true;
  in->ix_status = in->status;
  in->ix_created = in->created;
  in->ix_completed = in->completed;
}

void dts_index_drop(dts_batch *b, const dts_keyspace *ks, dts_inst_rec *in) {
  if (!in->ix_set) return;
  dts_key k;
  dts_key_sidx(&k, ks, in->ix_status, in->ix_created, in->id);
  dts_batch_del(b, k.b, k.n);
  if (has_cidx(in->ix_status, in->ix_completed)) {
    dts_key_cidx(&k, ks, in->ix_completed, in->id);
    dts_batch_del(b, k.b, k.n);
  }
  if (!dts_status_terminal(in->ix_status)) {
    dts_key_id(&k, ks, 'U', in->id);
    dts_batch_del(b, k.b, k.n);
  }
  in->ix_set = false;
}

void dts_inst_rec_put(dts_batch *b, const dts_keyspace *ks, dts_inst_rec *r) {
  dts_buf v = dts_inst_rec_pack(r);
  dts_key k;
  dts_key_id(&k, ks, 'I', r->id);
  dts_batch_put(b, k.b, k.n, v.p, v.n);
  dts_buf_free(&v);
  dts_index_update(b, ks, r);
}

/* ---- entities ---------------------------------------------------------------- */

bool dts_ent_rec_unpack(const void *v, size_t n, dts_ent_rec *out) {
  Dtsd__Store__EntityRecord *r = dtsd__store__entity_record__unpack(NULL, n, (const uint8_t *)v);
  bool ok = r != NULL && dts_entity_id_problem(r->instance_id) == NULL &&
            (r->locked_by[0] == '\0' || dts_instance_id_problem(r->locked_by) == NULL);
  if (!ok) {
    if (r != NULL) dtsd__store__entity_record__free_unpacked(r, NULL);
    return false;
  }
  memset(out, 0, sizeof(*out));
  out->id = dts_strdup(r->instance_id);
  out->state = dup_or_null(dts_sv_get(r->state));
  out->modified = r->modified_ns;
  if (r->locked_by[0] != '\0') {
    out->locked_by = dts_strdup(r->locked_by);
    out->lock_cs = dts_strdup(r->lock_cs);
  }
  dtsd__store__entity_record__free_unpacked(r, NULL);
  return true;
}

dts_buf dts_ent_rec_pack(const dts_ent_rec *e) {
  Dtsd__Store__EntityRecord r = DTSD__STORE__ENTITY_RECORD__INIT;
  Google__Protobuf__StringValue sv;
  r.instance_id = e->id;
  r.state = dts_sv(&sv, e->state);
  r.modified_ns = e->modified;
  r.locked_by = e->locked_by ? e->locked_by : "";
  r.lock_cs = e->lock_cs ? e->lock_cs : "";
  return dts_pb_pack(&r.base);
}

void dts_ent_rec_fini(dts_ent_rec *r) {
  dts_free(r->id);
  dts_free(r->state);
  dts_free(r->locked_by);
  dts_free(r->lock_cs);
  memset(r, 0, sizeof(*r));
}
