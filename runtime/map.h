/* map.h -- string-keyed hash map (open addressing, linear probing).
 *
 * Keys are borrowed: the caller keeps each key alive while it is in the map
 * (typically the key is a field of the value).  Not thread-safe: a map is
 * owned by one actor.  Iteration order is unspecified.
 */
#ifndef DTS_RUNTIME_MAP_H
#define DTS_RUNTIME_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A 64-bit hash of n bytes, eight at a time (a multiply and a fold per
 * word, then a final mix), for the map below and the directory.  Not a
 * defence against chosen keys; the tables' load limits bound the damage. */
uint64_t dts_hash_bytes(const void *p, size_t n, uint64_t seed);

typedef struct dts_map_slot {
  const char *key; /* NULL: empty; DTS_MAP_TOMB: deleted */
  void *val;
  size_t hash;
} dts_map_slot;

typedef struct dts_map {
  dts_map_slot *slots;
  size_t cap, len, used; /* used = len + tombstones */
} dts_map;

void dts_map_init(dts_map *m);
void dts_map_fini(dts_map *m); /* frees the table, not keys or values */
/* Returns the value for key, or NULL. */
void *dts_map_get(const dts_map *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. */
void *dts_map_put(dts_map *m, const char *key, void *val);
/* Removes key; returns its value or NULL. */
void *dts_map_del(dts_map *m, const char *key);
static inline size_t dts_map_len(const dts_map *m) { return m->len; }
/* Iteration: for (size_t i = 0; dts_map_next(m, &i, &k, &v);) ...
 * Do not insert while iterating; deleting the current key is allowed. */
bool dts_map_next(const dts_map *m, size_t *it, const char **key, void **val);

#endif
