/* pb.c -- see pb.h. */
#include "proto/pb.h"

#include "runtime/alloc.h"

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
/* depth check                                                              */

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

static dts_pb_check walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
                         int depth, int max) {
  while (p < end) {
    uint64_t key, len;
    if (!get_varint(&p, end, &key)) return DTS_PB_MALFORMED;
    uint32_t field = (uint32_t)(key >> 3);
    if (field == 0) return DTS_PB_MALFORMED;
    switch (key & 7) {
    case 0:
      if (!get_varint(&p, end, &len)) return DTS_PB_MALFORMED;
      break;
    case 1:
      if (end - p < 8) return DTS_PB_MALFORMED;
      p += 8;
      break;
    case 5:
      if (end - p < 4) return DTS_PB_MALFORMED;
      p += 4;
      break;
    case 2: {
      if (!get_varint(&p, end, &len) || len > (uint64_t)(end - p)) return DTS_PB_MALFORMED;
      const ProtobufCFieldDescriptor *f =
          d != NULL ? protobuf_c_message_descriptor_get_field(d, field) : NULL;
      if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (depth + 1 > max) return DTS_PB_TOO_DEEP;
        dts_pb_check c = walk(f->descriptor, p, p + len, depth + 1, max);
        if (c != DTS_PB_OK) return c;
      }
      p += len;
      break;
    }
    default: /* groups (3, 4) are not used by this protocol; 6, 7 are invalid */
      return DTS_PB_MALFORMED;
    }
  }
  return DTS_PB_OK;
}

dts_pb_check dts_pb_check_depth(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                                int max_depth) {
  return walk(d, p, p + n, 1, max_depth);
}

/* ------------------------------------------------------------------------ */
/* time, wrappers, ids                                                      */

int64_t dts_ts_to_ns(const Google__Protobuf__Timestamp *ts) {
  if (ts == NULL) return 0;
  return ts->seconds * 1000000000LL + ts->nanos;
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

void dts_uuid(char out[37]) {
  uint8_t b[16];
  if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
    /* No entropy source: fall back to a counter mixed with the clock.
     * Uniqueness within the process is what ids need. */
    static atomic_ulong ctr;
    uint64_t c = atomic_fetch_add(&ctr, 1) + 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 16; i++) b[i] = (uint8_t)((c >> ((i % 8) * 8)) ^ (uint64_t)i * 131);
  }
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}
