/* keys.c -- see keys.h. */
#include "storage/keys.h"

#include "runtime/log.h"

#include <stdio.h>
#include <string.h>

static void need(const dts_key *k, size_t more) {
  DTS_ASSERT(k->n + more <= DTS_KEYMAX && "a key outgrew its buffer: a string reached it unvalidated");
}

void dts_key_start(dts_key *k, const dts_keyspace *ks, char type) {
  k->n = 0;
  need(k, ks->len + 2);
  memcpy(k->b, ks->name, ks->len);
  k->b[ks->len] = '\0';
  k->b[ks->len + 1] = type;
  k->n = ks->len + 2;
}

void dts_key_bytes(dts_key *k, const void *p, size_t n) {
  need(k, n);
  memcpy(k->b + k->n, p, n);
  k->n += n;
}

void dts_key_str(dts_key *k, const char *s) { dts_key_bytes(k, s, strlen(s)); }

void dts_key_byte(dts_key *k, char c) {
  need(k, 1);
  k->b[k->n++] = c;
}

void dts_key_sep(dts_key *k) { dts_key_byte(k, '\0'); }

void dts_key_u64(dts_key *k, uint64_t v) {
  need(k, 8);
  for (int i = 7; i >= 0; i--) k->b[k->n++] = (char)(v >> (i * 8));
}

void dts_key_u32(dts_key *k, uint32_t v) {
  need(k, 4);
  for (int i = 3; i >= 0; i--) k->b[k->n++] = (char)(v >> (i * 8));
}

void dts_key_id(dts_key *k, const dts_keyspace *ks, char type, const char *id) {
  dts_key_start(k, ks, type);
  dts_key_str(k, id);
}

void dts_key_seq(dts_key *k, const dts_keyspace *ks, char type, const char *id, uint64_t seq) {
  dts_key_id(k, ks, type, id);
  dts_key_sep(k);
  dts_key_u64(k, seq);
}

void dts_key_work(dts_key *k, const dts_keyspace *ks, char type, const char *id, const char *exec, int32_t num) {
  dts_key_id(k, ks, type, id);
  dts_key_sep(k);
  dts_key_str(k, exec);
  dts_key_sep(k);
  dts_key_u32(k, (uint32_t)num);
}

/* Times are wall ns (never negative in an index), so byte order is time order. */
void dts_key_sidx(dts_key *k, const dts_keyspace *ks, int status, int64_t created, const char *id) {
  dts_key_start(k, ks, 'S');
  dts_key_byte(k, (char)status);
  dts_key_u64(k, (uint64_t)(created > 0 ? created : 0));
  dts_key_str(k, id);
}

void dts_key_cidx(dts_key *k, const dts_keyspace *ks, int64_t completed, const char *id) {
  dts_key_start(k, ks, 'C');
  dts_key_u64(k, (uint64_t)(completed > 0 ? completed : 0));
  dts_key_str(k, id);
}

void dts_key_marker(dts_key *k, const dts_keyspace *ks, const char *what) {
  dts_key_start(k, ks, 'X');
  dts_key_str(k, what);
}

void dts_key_hub_marker(dts_key *k, const char *name, size_t len) {
  k->n = 0;
  dts_key_bytes(k, "\0hub\0", 5);
  dts_key_bytes(k, name, len);
}

uint64_t dts_key_be64(const char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | (uint8_t)p[i];
  return v;
}

bool dts_key_split_work(const dts_keyspace *ks, const char *k, size_t klen, char *id, char *exec, int32_t *num) {
  size_t off = ks->len + 2, i = 0;
  while (off < klen && k[off] != '\0' && i < DTS_ID_MAX + 1) id[i++] = k[off++];
  id[i] = '\0';
  if (off >= klen || k[off] != '\0') return false;
  off++;
  i = 0;
  while (off < klen && k[off] != '\0' && i < DTS_ID_MAX + 1) exec[i++] = k[off++];
  exec[i] = '\0';
  if (off + 5 != klen || k[off] != '\0') return false;
  off++;
  uint32_t v = 0;
  for (int b = 0; b < 4; b++) v = (v << 8) | (uint8_t)k[off + b];
  *num = (int32_t)v;
  return (dts_instance_id_problem(id) == NULL || dts_entity_id_problem(id) == NULL) &&
         dts_short_id_problem(exec) == NULL;
}

bool dts_key_id_of(const dts_keyspace *ks, const char *k, size_t klen, char *id, size_t *idlen) {
  size_t off = ks->len + 2, n = 0;
  while (off + n < klen && k[off + n] != '\0' && n <= DTS_ID_MAX) n++;
  if (n == 0 || n > DTS_ID_MAX) return false;
  memcpy(id, k + off, n);
  id[n] = '\0';
  *idlen = n;
  return true;
}

void dts_key_text(const dts_keyspace *ks, const char *k, size_t klen, char *out, size_t outlen) {
  size_t o, i = klen > ks->len + 1 ? ks->len + 1 : 0;
  int w = snprintf(out, outlen, "%.*s:", (int)ks->len, ks->name);
  o = w > 0 ? (size_t)w : 0;
  for (; i < klen && o + 5 < outlen; i++) {
    unsigned char ch = (unsigned char)k[i];
    if (ch >= 0x20 && ch < 0x7f && ch != '\\') out[o++] = (char)ch;
    else o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
  }
  if (i < klen && o + 4 < outlen) o += (size_t)snprintf(out + o, outlen - o, "...");
  out[o < outlen ? o : outlen - 1] = '\0';
}

/* ---- the id rules ------------------------------------------------------------ */

static bool printable(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return false;
  return true;
}

const char *dts_short_id_problem(const char *id) {
  size_t n = strlen(id);
  if (n == 0) return "must not be empty";
  if (n > DTS_ID_MAX) return "is longer than 100 characters";
  if (!printable(id, n)) return "must be printable ASCII (0x20..0x7E)";
  return NULL;
}

const char *dts_instance_id_problem(const char *id) {
  size_t n = strlen(id);
  if (n == 0) return "instance id must not be empty";
  if (n > DTS_ID_MAX) return "instance id is longer than 100 characters";
  if (id[0] == '@') return "instance ids starting with '@' are reserved for entities";
  if (!printable(id, n)) return "instance id must be printable ASCII (0x20..0x7E)";
  return NULL;
}

const char *dts_entity_id_problem(const char *id) {
  size_t n = strlen(id);
  if (n < 3 || id[0] != '@') return "entity ids have the form @name@key";
  const char *at = strchr(id + 1, '@');
  if (at == NULL || at == id + 1) return "entity ids have the form @name@key, with a non-empty name";
  if (n > DTS_ID_MAX) return "entity id is longer than 100 characters";
  if (!printable(id, n)) return "entity id must be printable ASCII";
  return NULL;
}

const char *dts_hub_name_problem(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 64) return "a task hub name has 1 to 64 characters";
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return "a task hub name uses only A-Z a-z 0-9 - _";
  }
  return NULL;
}
