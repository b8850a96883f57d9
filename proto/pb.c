/* pb.c -- see pb.h. */
#include "proto/pb.h"

#include "runtime/alloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

void dts_buf_free(dts_buf *b) {
  dts_free(b->p);
  b->p = NULL;
  b->n = 0;
}

dts_buf dts_buf_copy(const void *p, size_t n) {
  dts_buf b = {NULL, n};
  if (n > 0) {
    b.p = dts_malloc(n);
    memcpy(b.p, p, n);
  }
  return b;
}

void dts_bufq_push(dts_bufq *q, dts_buf b) {
  if (q->len == q->cap) {
    size_t ncap = q->cap ? q->cap * 2 : 16;
    dts_buf *nv = dts_malloc(ncap * sizeof(*nv));
    for (size_t i = 0; i < q->len; i++) nv[i] = q->v[(q->head + i) % q->cap];
    dts_free(q->v);
    q->v = nv;
    q->cap = ncap;
    q->head = 0;
  }
  q->v[(q->head + q->len++) % q->cap] = b;
}

bool dts_bufq_pop(dts_bufq *q, dts_buf *out) {
  if (q->len == 0) return false;
  *out = q->v[q->head];
  q->head = (q->head + 1) % q->cap;
  q->len--;
  return true;
}

void dts_bufq_clear(dts_bufq *q) {
  dts_buf b;
  while (dts_bufq_pop(q, &b)) dts_buf_free(&b);
}

void dts_bufq_fini(dts_bufq *q) {
  dts_bufq_clear(q);
  dts_free(q->v);
  *q = (dts_bufq){NULL, 0, 0, 0};
}

dts_buf dts_pb_pack(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  dts_buf b = {dts_malloc(n > 0 ? n : 1), n};
  protobuf_c_message_pack(m, b.p);
  return b;
}

/* ------------------------------------------------------------------------ */
/* writer                                                                   */

void dts_pbw_init(dts_pbw *w) { memset(w, 0, sizeof(*w)); }

void dts_pbw_fini(dts_pbw *w) {
  dts_free(w->p);
  memset(w, 0, sizeof(*w));
}

dts_buf dts_pbw_take(dts_pbw *w) {
  dts_buf b = {w->p, w->n};
  memset(w, 0, sizeof(*w));
  return b;
}

static void reserve(dts_pbw *w, size_t more) {
  if (w->n + more <= w->cap) return;
  size_t cap = w->cap ? w->cap : 256;
  while (cap < w->n + more) cap *= 2;
  w->p = dts_realloc(w->p, cap);
  w->cap = cap;
}

static void put_varint(dts_pbw *w, uint64_t v) {
  reserve(w, 10);
  while (v >= 0x80) {
    w->p[w->n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  w->p[w->n++] = (uint8_t)v;
}

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

void dts_pbw_varint_field(dts_pbw *w, uint32_t field, uint64_t v) {
  put_varint(w, (uint64_t)field << 3);
  put_varint(w, v);
}

void dts_pbw_bytes_field(dts_pbw *w, uint32_t field, const void *p, size_t n) {
  put_varint(w, ((uint64_t)field << 3) | 2);
  put_varint(w, n);
  reserve(w, n);
  if (n > 0) memcpy(w->p + w->n, p, n);
  w->n += n;
}

void dts_pbw_string_field(dts_pbw *w, uint32_t field, const char *s) {
  dts_pbw_bytes_field(w, field, s, strlen(s));
}

void dts_pbw_msg_field(dts_pbw *w, uint32_t field, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  put_varint(w, ((uint64_t)field << 3) | 2);
  put_varint(w, n);
  reserve(w, n);
  protobuf_c_message_pack(m, w->p + w->n);
  w->n += n;
}

void dts_pbw_sv_field(dts_pbw *w, uint32_t field, const char *s) {
  if (s == NULL) return;
  size_t len = strlen(s);
  /* StringValue{value(1)}: an empty string is an empty message. */
  size_t inner = len > 0 ? 1 + varint_len(len) + len : 0;
  put_varint(w, ((uint64_t)field << 3) | 2);
  put_varint(w, inner);
  if (len > 0) dts_pbw_bytes_field(w, 1, s, len);
}

void dts_pbw_ts_field(dts_pbw *w, uint32_t field, int64_t ns) {
  Google__Protobuf__Timestamp ts;
  dts_pbw_msg_field(w, field, &dts_ts_from_ns(&ts, ns)->base);
}

/* ------------------------------------------------------------------------ */
/* validation before unpacking                                              */

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return false;
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

bool dts_utf8_valid(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
    else return false;
    if (n - i < len) return false;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false; /* overlong, range, surrogate */
    i += len;
  }
  return true;
}

/* Timestamp and Duration limits of google/protobuf/{timestamp,duration}.proto:
 * years 0001..9999, and +-10,000 years. */
#define TS_MIN_SECONDS (-62135596800LL)
#define TS_MAX_SECONDS 253402300799LL
#define DUR_MAX_SECONDS 315576000000LL

/* Checks the two varint fields of a Timestamp or Duration in wire form. */
static bool time_fields_ok(bool duration, const uint8_t *p, const uint8_t *end) {
  int64_t secs = 0, nanos = 0;
  while (p < end) {
    uint64_t key, v;
    if (!get_varint(&p, end, &key)) return false;
    if ((key & 7) != 0) return true; /* framing is checked by the walk; other fields are ignored */
    if (!get_varint(&p, end, &v)) return false;
    if ((key >> 3) == 1) secs = (int64_t)v;
    else if ((key >> 3) == 2) nanos = (int32_t)(uint32_t)v; /* int32 on the wire: sign-extended */
  }
  if (!duration) return secs >= TS_MIN_SECONDS && secs <= TS_MAX_SECONDS && nanos >= 0 && nanos <= 999999999;
  if (secs < -DUR_MAX_SECONDS || secs > DUR_MAX_SECONDS || nanos < -999999999 || nanos > 999999999) return false;
  return !((secs > 0 && nanos < 0) || (secs < 0 && nanos > 0));
}

typedef struct walker {
  int max;
  dts_pb_problem *pr;
} walker;

static dts_pb_check found(walker *w, dts_pb_check what, int depth, const ProtobufCMessageDescriptor *d,
                          const ProtobufCFieldDescriptor *f) {
  w->pr->what = what;
  w->pr->depth = depth;
  if (depth - 1 < DTS_PB_PATH_MAX) {
    w->pr->msg[depth - 1] = d;
    w->pr->field[depth - 1] = f;
  }
  return what;
}

/* Records this level's field on the way out of a nested problem. */
static dts_pb_check via(walker *w, dts_pb_check c, int depth, const ProtobufCMessageDescriptor *d,
                        const ProtobufCFieldDescriptor *f) {
  if (depth - 1 < DTS_PB_PATH_MAX) {
    w->pr->msg[depth - 1] = d;
    w->pr->field[depth - 1] = f;
  }
  return c;
}

static dts_pb_check walk(walker *w, const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
                         int depth) {
  if (d == &google__protobuf__timestamp__descriptor || d == &google__protobuf__duration__descriptor) {
    if (!time_fields_ok(d == &google__protobuf__duration__descriptor, p, end))
      return found(w, DTS_PB_BAD_TIME, depth, d, NULL);
  }
  while (p < end) {
    uint64_t key, len;
    if (!get_varint(&p, end, &key)) return found(w, DTS_PB_MALFORMED, depth, d, NULL);
    uint32_t field = (uint32_t)(key >> 3);
    if (field == 0 || key >> 3 > 0x1fffffff) return found(w, DTS_PB_MALFORMED, depth, d, NULL);
    switch (key & 7) {
    case 0:
      if (!get_varint(&p, end, &len)) return found(w, DTS_PB_MALFORMED, depth, d, NULL);
      break;
    case 1:
      if (end - p < 8) return found(w, DTS_PB_MALFORMED, depth, d, NULL);
      p += 8;
      break;
    case 5:
      if (end - p < 4) return found(w, DTS_PB_MALFORMED, depth, d, NULL);
      p += 4;
      break;
    case 2: {
      const ProtobufCFieldDescriptor *f = d != NULL ? protobuf_c_message_descriptor_get_field(d, field) : NULL;
      if (!get_varint(&p, end, &len) || len > (uint64_t)(end - p)) return found(w, DTS_PB_MALFORMED, depth, d, f);
      if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (depth + 1 > w->max) return found(w, DTS_PB_TOO_DEEP, depth, d, f);
        dts_pb_check c = walk(w, f->descriptor, p, p + len, depth + 1);
        if (c != DTS_PB_OK) return via(w, c, depth, d, f);
      } else if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING) {
        /* protobuf-c hands strings over NUL-terminated, so a NUL inside
         * would silently cut the value short; proto3 strings are UTF-8 */
        if (memchr(p, 0, len) != NULL) return found(w, DTS_PB_NUL, depth, d, f);
        if (!dts_utf8_valid(p, len)) return found(w, DTS_PB_BAD_UTF8, depth, d, f);
      }
      p += len;
      break;
    }
    default: /* groups (3, 4) are not used by this protocol; 6, 7 are invalid */
      return found(w, DTS_PB_MALFORMED, depth, d, NULL);
    }
  }
  return DTS_PB_OK;
}

dts_pb_check dts_pb_validate(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int max_depth,
                             dts_pb_problem *pr) {
  dts_pb_problem local;
  walker w = {max_depth, pr != NULL ? pr : &local};
  memset(w.pr, 0, sizeof(*w.pr));
  return walk(&w, d, p, p + n, 1);
}

dts_pb_check dts_pb_check_depth(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                                int max_depth) {
  return dts_pb_validate(d, p, n, max_depth, NULL);
}

void dts_pb_problem_path(const dts_pb_problem *pr, char *out, size_t outlen) {
  size_t k = 0;
  out[0] = '\0';
  int n = pr->depth < DTS_PB_PATH_MAX ? pr->depth : DTS_PB_PATH_MAX;
  for (int i = 0; i < n && k + 1 < outlen; i++) {
    const ProtobufCMessageDescriptor *m = pr->msg[i];
    const ProtobufCFieldDescriptor *f = pr->field[i];
    int w;
    if (i == 0) w = snprintf(out + k, outlen - k, "%s", m != NULL ? m->short_name : "?");
    else w = 0;
    if (w > 0) k += (size_t)w < outlen - k ? (size_t)w : outlen - k - 1;
    if (f != NULL && k + 1 < outlen) {
      w = snprintf(out + k, outlen - k, ".%s", f->name);
      if (w > 0) k += (size_t)w < outlen - k ? (size_t)w : outlen - k - 1;
    }
  }
  if (pr->depth > DTS_PB_PATH_MAX && k + 4 < outlen) snprintf(out + k, outlen - k, "...");
}

ProtobufCMessage *dts_pb_decode(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int max_depth,
                                char *err, size_t errlen) {
  dts_pb_problem pr;
  dts_pb_check c = dts_pb_validate(d, p, n, max_depth, &pr);
  if (c == DTS_PB_OK) {
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, p);
    if (m != NULL) return m;
    snprintf(err, errlen, "malformed %s message", d->short_name);
    return NULL;
  }
  char path[256];
  dts_pb_problem_path(&pr, path, sizeof(path));
  switch (c) {
  case DTS_PB_TOO_DEEP:
    snprintf(err, errlen,
             "%s nests messages deeper than %d levels (at %s); limit set by --max-nesting / DTSD_MAX_NESTING",
             d->short_name, max_depth, path);
    break;
  case DTS_PB_NUL: snprintf(err, errlen, "%s contains a NUL byte, which dtsd does not accept in strings", path); break;
  case DTS_PB_BAD_UTF8: snprintf(err, errlen, "%s is not valid UTF-8", path); break;
  case DTS_PB_BAD_TIME:
    snprintf(err, errlen, "%s is not a valid %s (seconds and nanos out of range)", path,
             pr.depth > 0 && pr.depth <= DTS_PB_PATH_MAX && pr.msg[pr.depth - 1] == &google__protobuf__duration__descriptor
                 ? "google.protobuf.Duration"
                 : "google.protobuf.Timestamp (years 1 to 9999)");
    break;
  default: snprintf(err, errlen, "malformed %s message (at %s)", d->short_name, path); break;
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* time, wrappers, ids                                                      */

int64_t dts_ts_to_ns(const Google__Protobuf__Timestamp *ts) {
  if (ts == NULL) return 0;
  return dts_secs_to_ns(ts->seconds, ts->nanos);
}

int64_t dts_secs_to_ns(int64_t secs, int32_t nanos) {
  /* saturates: a time past year 2262 is "never", one before 1677 "long ago" */
  if (secs > INT64_MAX / 1000000000LL - 1) return INT64_MAX;
  if (secs < INT64_MIN / 1000000000LL + 1) return INT64_MIN;
  return secs * 1000000000LL + nanos;
}

Google__Protobuf__Timestamp *dts_ts_from_ns(Google__Protobuf__Timestamp *ts, int64_t ns) {
  google__protobuf__timestamp__init(ts);
  int64_t s = ns / 1000000000LL, r = ns % 1000000000LL;
  if (r < 0) {
    s -= 1;
    r += 1000000000LL;
  }
  ts->seconds = s;
  ts->nanos = (int32_t)r;
  return ts;
}

Google__Protobuf__StringValue *dts_sv(Google__Protobuf__StringValue *sv, const char *s) {
  if (s == NULL) return NULL;
  google__protobuf__string_value__init(sv);
  sv->value = (char *)s; /* protobuf-c's field is not const; we only read it */
  return sv;
}

/* The per-thread pool: getrandom(2) a page at a time, a byte handed out
 * wiped from it, so one system call serves 256 draws. */
bool dts_random16(uint8_t b[16]) {
  static _Thread_local uint8_t pool[4096];
  static _Thread_local size_t used = sizeof(pool);
  if (used + 16 > sizeof(pool)) {
    size_t got = 0;
    while (got < sizeof(pool)) {
      ssize_t n = getrandom(pool + got, sizeof(pool) - got, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return false;
      got += (size_t)n;
    }
    used = 0;
  }
  memcpy(b, pool + used, 16);
  memset(pool + used, 0, 16);
  used += 16;
  return true;
}

char *dts_hex(char *out, const uint8_t *b, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    *out++ = digits[b[i] >> 4];
    *out++ = digits[b[i] & 15];
  }
  return out;
}

/* Random bytes for ids, which need only be unique within the process:
 * without an entropy source, a counter. */
static void random16(uint8_t b[16]) {
  if (dts_random16(b)) return;
  static atomic_ulong ctr;
  uint64_t c = atomic_fetch_add(&ctr, 1) + 0x9e3779b97f4a7c15ULL;
  for (int i = 0; i < 16; i++) b[i] = (uint8_t)((c >> ((i % 8) * 8)) ^ (uint64_t)i * 131);
}

void dts_exec_id(char out[33]) {
  uint8_t b[16];
  random16(b);
  *dts_hex(out, b, 16) = '\0';
}

void dts_uuid(char out[37]) {
  uint8_t b[16];
  random16(b);
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
  char *o = dts_hex(out, b, 4); /* 8-4-4-4-12 */
  *o++ = '-';
  o = dts_hex(o, b + 4, 2);
  *o++ = '-';
  o = dts_hex(o, b + 6, 2);
  *o++ = '-';
  o = dts_hex(o, b + 8, 2);
  *o++ = '-';
  *dts_hex(o, b + 10, 6) = '\0';
}
