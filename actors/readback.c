/* readback.c -- what an instance or entity reads of itself besides its
 * record: the messages other actors stored for it (its "M" keys), which it
 * takes at start-up and whenever a delivery may have been missed
 * (docs/engine.md, "Reading back").
 */
#include "actors/engine.h"

#include "runtime/alloc.h"
#include "storage/keys.h"

static bool visit(void *c, const char *k, size_t klen, const char *v, size_t vlen) {
  eng_stored *s = c;
  if (klen != s->plen + 8) return true; /* not a message key of this actor's */
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 8;
    s->seqs = dts_realloc(s->seqs, s->cap * sizeof(*s->seqs));
    s->vals = dts_realloc(s->vals, s->cap * sizeof(*s->vals));
  }
  s->seqs[s->n] = dts_key_be64(k + klen - 8);
  s->vals[s->n++] = dts_buf_copy(v, vlen);
  return true;
}

dts_err eng_stored_read(eng_actor *a, eng_stored *out, char *msg, size_t msglen) {
  *out = (eng_stored){0};
  dts_key k;
  dts_key_id(&k, &a->h->ks, 'M', a->id);
  dts_key_sep(&k);
  out->plen = k.n;
  return dts_store_walk(a->h->cfg.store, k.b, k.n, k.b, k.n, visit, out, msg, msglen);
}

void eng_stored_free(eng_stored *s) {
  for (size_t i = 0; i < s->n; i++) dts_buf_free(&s->vals[i]);
  dts_free(s->seqs);
  dts_free(s->vals);
  *s = (eng_stored){0};
}
