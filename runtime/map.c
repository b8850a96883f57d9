/* map.c -- see map.h.  Power-of-two table, linear probing, load <= 0.7. */
#include "runtime/map.h"

#include "runtime/alloc.h"

#include <stdint.h>
#include <string.h>

static const char tomb_mark;
#define TOMB (&tomb_mark)

#define K1 0x9e3779b97f4a7c15ULL
#define K2 0xbf58476d1ce4e5b9ULL
#define K3 0x94d049bb133111ebULL

uint64_t dts_hash_bytes(const void *p, size_t n, uint64_t seed) {
  const unsigned char *b = p;
  uint64_t h = seed ^ (n * K1);
  while (n > 0) {
    size_t take = n < 8 ? n : 8;
    uint64_t w = 0;
    memcpy(&w, b, take); /* unaligned keys: a plain load on x86 and arm64 */
    h = (h ^ w) * K2;
    h ^= h >> 31;
    b += take;
    n -= take;
  }
  /* the finalizer of splitmix64: every input bit reaches the low bits a
   * power-of-two table indexes by */
  h = (h ^ (h >> 30)) * K2;
  h = (h ^ (h >> 27)) * K3;
  return h ^ (h >> 31);
}

static size_t hash_str(const char *s) { return (size_t)dts_hash_bytes(s, strlen(s), K1); }

void dts_map_init(dts_map *m) { memset(m, 0, sizeof(*m)); }

void dts_map_fini(dts_map *m) {
  dts_free(m->slots);
  memset(m, 0, sizeof(*m));
}

static dts_map_slot *find(const dts_map *m, const char *key, size_t h) {
  if (m->cap == 0) return NULL;
  for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    dts_map_slot *s = &m->slots[i];
    if (s->key == NULL) return NULL;
    if (s->key != TOMB && s->hash == h && strcmp(s->key, key) == 0) return s;
  }
}

static void rehash(dts_map *m, size_t cap) {
  dts_map_slot *old = m->slots;
  size_t oldcap = m->cap;
  m->slots = dts_calloc(cap, sizeof(*m->slots));
  m->cap = cap;
  m->used = m->len;
  for (size_t i = 0; i < oldcap; i++) {
    if (old[i].key == NULL || old[i].key == TOMB) continue;
    size_t j = old[i].hash & (cap - 1);
    while (m->slots[j].key != NULL) j = (j + 1) & (cap - 1);
    m->slots[j] = old[i];
  }
  dts_free(old);
}

void *dts_map_get(const dts_map *m, const char *key) {
  dts_map_slot *s = find(m, key, hash_str(key));
  return s ? s->val : NULL;
}

void *dts_map_put(dts_map *m, const char *key, void *val) {
  size_t h = hash_str(key);
  dts_map_slot *s = find(m, key, h);
  if (s != NULL) {
    void *old = s->val;
    s->val = val;
    s->key = key;
    return old;
  }
  if ((m->used + 1) * 10 > m->cap * 7) rehash(m, m->cap ? (m->len * 2 >= m->cap ? m->cap * 2 : m->cap) : 16);
  size_t i = h & (m->cap - 1);
  while (m->slots[i].key != NULL && m->slots[i].key != TOMB) i = (i + 1) & (m->cap - 1);
  if (m->slots[i].key == NULL) m->used++;
  m->slots[i] = (dts_map_slot){key, val, h};
  m->len++;
  return NULL;
}

void *dts_map_del(dts_map *m, const char *key) {
  dts_map_slot *s = find(m, key, hash_str(key));
  if (s == NULL) return NULL;
  void *v = s->val;
  s->key = TOMB;
  s->val = NULL;
  m->len--;
  return v;
}

bool dts_map_next(const dts_map *m, size_t *it, const char **key, void **val) {
  for (; *it < m->cap; (*it)++) {
    dts_map_slot *s = &m->slots[*it];
    if (s->key != NULL && s->key != TOMB) {
      *key = s->key;
      *val = s->val;
      (*it)++;
      return true;
    }
  }
  return false;
}
