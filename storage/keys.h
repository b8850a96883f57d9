/* keys.h -- the LevelDB key schema of a task hub (docs/storage.md).
 *
 * Every key of a hub starts with "<hub>\0" and a one-letter record type.
 * Keys are built only from validated strings -- instance, entity,
 * execution and request ids of at most DTS_ID_MAX characters of printable
 * ASCII, and the hub name (at most 64) -- so the longest key is far below
 * DTS_KEYMAX; outgrowing it would mean a string reached a key unchecked,
 * and the builder asserts instead of truncating (two long ids must never
 * merge into one key).
 */
#ifndef DTS_STORAGE_KEYS_H
#define DTS_STORAGE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DTS_KEYMAX 600
#define DTS_ID_MAX 100 /* every id that becomes part of a key is at most this long */

typedef struct dts_key {
  char b[DTS_KEYMAX];
  size_t n;
} dts_key;

/* A hub's key prefix, "<name>\0". */
typedef struct dts_keyspace {
  const char *name;
  size_t len;
} dts_keyspace;

/* "<hub>\0<type>" */
void dts_key_start(dts_key *k, const dts_keyspace *ks, char type);
void dts_key_str(dts_key *k, const char *s);
void dts_key_bytes(dts_key *k, const void *p, size_t n);
void dts_key_byte(dts_key *k, char c);
void dts_key_sep(dts_key *k);
void dts_key_u64(dts_key *k, uint64_t v);
void dts_key_u32(dts_key *k, uint32_t v);

/* ---- the shapes ------------------------------------------------------------
 * I<id>                         instance record
 * H<id>\0<seq:8>                history event (seq 0, 1, 2, ...)
 * N<id>\0<seq:8>                inbox event (seq from the hub's message sequence)
 * A<id>\0<exec>\0<task:4>       activity work item
 * T<id>\0<exec|request>\0<n:4>  durable timer (orchestration timer, or an
 *                               entity signal held until its time)
 * S<status:1><created:8><id>    status index
 * C<completed:8><id>            completion index -> status
 * U<id>                         unfinished instances by id -> status
 * E<id>                         entity record
 * Q<id>\0<seq:8>                entity queue message (the message sequence)
 * R                             retention policy
 * Xindexes-v2                   the indexes are complete
 * Mseq                          the message sequence's reservation
 * and outside every hub: "\0hub\0<name>", a hub created at runtime. */
void dts_key_id(dts_key *k, const dts_keyspace *ks, char type, const char *id);
void dts_key_seq(dts_key *k, const dts_keyspace *ks, char type, const char *id, uint64_t seq);
void dts_key_work(dts_key *k, const dts_keyspace *ks, char type, const char *id, const char *exec, int32_t num);
void dts_key_sidx(dts_key *k, const dts_keyspace *ks, int status, int64_t created, const char *id);
void dts_key_cidx(dts_key *k, const dts_keyspace *ks, int64_t completed, const char *id);
void dts_key_marker(dts_key *k, const dts_keyspace *ks, const char *what);
void dts_key_hub_marker(dts_key *k, const char *name, size_t len);

/* Big-endian 8 bytes at p. */
uint64_t dts_key_be64(const char *p);

/* Splits "<hub>\0<type><id>\0<exec>\0<u32>": false unless the key has that
 * shape with ids dtsd could have written (id an instance or entity id,
 * exec an execution or request id).  id and exec hold DTS_ID_MAX + 2. */
bool dts_key_split_work(const dts_keyspace *ks, const char *k, size_t klen, char *id, char *exec, int32_t *num);

/* The id in "<hub>\0<type><id>\0..." (up to the NUL or the end): false when
 * it is empty or longer than DTS_ID_MAX.  id holds DTS_ID_MAX + 1. */
bool dts_key_id_of(const dts_keyspace *ks, const char *k, size_t klen, char *id, size_t *idlen);

/* ---- the id rules ---------------------------------------------------------
 * What may become part of a key.  Each returns NULL when valid, else a
 * static explanation for an INVALID_ARGUMENT answer. */

/* Instance ids: 1..100 printable ASCII (0x20..0x7E), no leading '@'. */
const char *dts_instance_id_problem(const char *id);
/* Entity ids: "@name@key", at most 100 printable ASCII characters. */
const char *dts_entity_id_problem(const char *id);
/* Execution ids and request ids: 1..100 printable ASCII; the text is the
 * end of a sentence ("is longer than 100 characters"). */
const char *dts_short_id_problem(const char *id);
/* Task hub names: 1..64 of A-Z a-z 0-9 - _. */
const char *dts_hub_name_problem(const char *name);

/* A key as text for a log line: the hub's name, then the type letter and the
 * rest with every byte that is not printable as \xNN. */
void dts_key_text(const dts_keyspace *ks, const char *k, size_t klen, char *out, size_t outlen);

#endif
