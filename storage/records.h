/* records.h -- what dtsd stores about an orchestration instance and an
 * entity, and the indexes kept beside the instance records
 * (docs/storage.md).  The codecs validate what they read: a record from the
 * disk is input too, and one whose ids break the rules (keys.h) does not
 * decode.
 */
#ifndef DTS_STORAGE_RECORDS_H
#define DTS_STORAGE_RECORDS_H

#include "proto/pb.h"
#include "storage/keys.h"
#include "storage/store.h"

/* An instance's metadata: the InstanceRecord, unpacked.  Strings are
 * dts_malloc'd and owned; NULL = absent where the protocol has a wrapper. */
typedef struct dts_inst_rec {
  char *id;
  char *name;
  char *version, *input, *output, *custom_status;
  dts_buf failure; /* encoded TaskFailureDetails */
  bool has_failure;
  char *exec_id;
  int status;
  int64_t created, updated, completed, sched_start; /* wall ns; 0 = none */
  dts_buf parent;                                   /* encoded ParentInstanceInfo */
  char *parent_id, *parent_exec;                    /* from `parent` */
  int32_t parent_task;
  size_t ntags;
  char **tag_k, **tag_v;
  dts_buf trace;      /* last OrchestrationTraceContext */
  bool force_turn;    /* one turn owed with an empty inbox (rewind) */
  uint32_t history_len;
  uint32_t inbox_count; /* inbox events + 1 as last written; 0: not known */
  uint32_t activity_count; /* activity work items + 1 as last written; 0: not known */
  size_t nlocks;      /* entities it asked to lock and has not released */
  char **locks;
  /* index entries as last written (dts_index_update) */
  bool ix_set;
  int ix_status;
  int64_t ix_created, ix_completed;
} dts_inst_rec;

void dts_inst_rec_init(dts_inst_rec *r, const char *id);
void dts_inst_rec_fini(dts_inst_rec *r);
/* Decodes a stored record; false when it does not decode or breaks the id
 * rules.  The index fields say what the store's index entries are (they
 * are written with the record). */
bool dts_inst_rec_unpack(const void *v, size_t n, dts_inst_rec *out);
dts_buf dts_inst_rec_pack(const dts_inst_rec *r);

void dts_inst_rec_set_parent(dts_inst_rec *r, const ParentInstanceInfo *p);
/* Replaces / merges tags from map entries shaped {base, key, value} (every
 * map<string,string> of the protocol). */
void dts_inst_rec_set_tags(dts_inst_rec *r, void *const *entries, size_t n);
void dts_inst_rec_merge_tags(dts_inst_rec *r, void *const *entries, size_t n);
void dts_inst_rec_set_locks(dts_inst_rec *r, char *const *ids, size_t n);

/* The record, its index entries and the U entry for `r`, into `b`: the
 * entries it had are deleted and the ones it has now written (the record's
 * ix_* fields track them). */
void dts_inst_rec_put(dts_batch *b, const dts_keyspace *ks, dts_inst_rec *r);
/* Deletes the record's index entries (purge). */
void dts_index_drop(dts_batch *b, const dts_keyspace *ks, dts_inst_rec *r);
/* Writes the index entries of a record as if it had none (reindexing). */
void dts_index_update(dts_batch *b, const dts_keyspace *ks, dts_inst_rec *r);

bool dts_status_terminal(int status);

/* Map entries {base, key, value} as an array of message pointers of type
 * `d`, pointing at the record's strings (borrowed): for building events
 * and states.  dts_tags_free frees the arrays only. */
typedef struct dts_tags {
  struct dts_tag_entry *e;
  void **p;
  size_t n;
} dts_tags;
dts_tags dts_tags_of(const ProtobufCMessageDescriptor *d, const dts_inst_rec *r);
dts_tags dts_tags_as(const ProtobufCMessageDescriptor *d, void *const *src, size_t n);
void dts_tags_free(dts_tags *t);

/* ---- entities ------------------------------------------------------------ */

typedef struct dts_ent_rec {
  char *id;
  char *state; /* NULL: no state */
  int64_t modified;
  char *locked_by, *lock_cs; /* NULL: not locked */
} dts_ent_rec;

bool dts_ent_rec_unpack(const void *v, size_t n, dts_ent_rec *out);
dts_buf dts_ent_rec_pack(const dts_ent_rec *r);
void dts_ent_rec_fini(dts_ent_rec *r);

#endif
