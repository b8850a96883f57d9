/* pbjson.c -- see pbjson.h.  Walks protobuf-c's descriptors, so every
 * message type (history events above all) is covered without a line per
 * type. */
#define _GNU_SOURCE /* timegm */
#include "server/pbjson.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void pbjson_time(int64_t ns, char out[40]) {
  time_t secs = (time_t)(ns / 1000000000LL);
  int ms = (int)((ns % 1000000000LL) / 1000000LL);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char day[32];
  strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, 40, "%s.%03dZ", day, ms);
}

json_t *pbjson_time_value(int64_t ns) {
  if (ns <= 0) return json_null();
  char t[40];
  pbjson_time(ns, t);
  return json_string(t);
}

bool pbjson_parse_time(const char *s, int64_t *ns) {
  struct tm tm = {0};
  const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (p == NULL) return false;
  int64_t frac = 0;
  if (*p == '.') {
    int64_t scale = 100000000LL;
    for (p++; isdigit((unsigned char)*p); p++) {
      frac += (*p - '0') * scale;
      scale /= 10;
    }
  }
  int64_t off = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') { /* exactly "+HH:MM" */
    if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) || p[3] != ':' || !isdigit((unsigned char)p[4]) ||
        !isdigit((unsigned char)p[5]))
      return false;
    int hh = (p[1] - '0') * 10 + (p[2] - '0'), mm = (p[4] - '0') * 10 + (p[5] - '0');
    if (hh > 23 || mm > 59) return false;
    off = (hh * 3600LL + mm * 60LL) * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return false;
  }
  if (*p != '\0') return false;
  int64_t secs = (int64_t)timegm(&tm) - off;
  /* nanoseconds since 1970 in 64 bits reach from 1677 to 2262 */
  if (secs < -9223372035LL || secs > 9223372035LL) return false;
  *ns = secs * 1000000000LL + frac;
  return true;
}

/* snake_case -> lowerCamelCase */
static void camel(const char *name, char *out, size_t cap) {
  size_t k = 0;
  bool up = false;
  for (; *name && k + 1 < cap; name++) {
    if (*name == '_') {
      up = true;
      continue;
    }
    out[k++] = up ? (char)toupper((unsigned char)*name) : *name;
    up = false;
  }
  out[k] = '\0';
}

static json_t *b64(const uint8_t *p, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *s = malloc((n + 2) / 3 * 4 + 1);
  if (s == NULL) abort();
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    s[k++] = tbl[v >> 18 & 63];
    s[k++] = tbl[v >> 12 & 63];
    s[k++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
    s[k++] = i + 2 < n ? tbl[v & 63] : '=';
  }
  s[k] = '\0';
  json_t *j = json_string(s);
  free(s);
  return j;
}

static json_t *i64s(int64_t v) {
  char t[32];
  snprintf(t, sizeof(t), "%" PRId64, v);
  return json_string(t);
}

/* Well-known types have JSON forms of their own: NULL when m is not one. */
static json_t *well_known(const ProtobufCMessage *m) {
  const char *n = m->descriptor->name;
  if (strcmp(n, "google.protobuf.Timestamp") == 0) {
    const Google__Protobuf__Timestamp *t = (const Google__Protobuf__Timestamp *)m;
    return pbjson_time_value(t->seconds * 1000000000LL + t->nanos);
  }
  if (strcmp(n, "google.protobuf.Duration") == 0) {
    const Google__Protobuf__Duration *d = (const Google__Protobuf__Duration *)m;
    char t[48];
    int ns = abs(d->nanos); /* proto3 JSON: 0, 3, 6 or 9 fractional digits */
    const char *sign = d->seconds == 0 && d->nanos < 0 ? "-" : "";
    if (ns == 0) snprintf(t, sizeof(t), "%" PRId64 "s", d->seconds);
    else if (ns % 1000000 == 0) snprintf(t, sizeof(t), "%s%" PRId64 ".%03ds", sign, d->seconds, ns / 1000000);
    else if (ns % 1000 == 0) snprintf(t, sizeof(t), "%s%" PRId64 ".%06ds", sign, d->seconds, ns / 1000);
    else snprintf(t, sizeof(t), "%s%" PRId64 ".%09ds", sign, d->seconds, ns);
    return json_string(t);
  }
  if (strcmp(n, "google.protobuf.StringValue") == 0) {
    const char *s = ((const Google__Protobuf__StringValue *)m)->value;
    return json_string(s ? s : "");
  }
  if (strcmp(n, "google.protobuf.Int32Value") == 0)
    return json_integer(((const Google__Protobuf__Int32Value *)m)->value);
  if (strcmp(n, "google.protobuf.BoolValue") == 0) return json_boolean(((const Google__Protobuf__BoolValue *)m)->value);
  return NULL;
}

static json_t *scalar(const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    return json_integer(*(const int32_t *)p);
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    return json_integer(*(const uint32_t *)p);
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    return i64s(*(const int64_t *)p);
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: {
    char t[32];
    snprintf(t, sizeof(t), "%" PRIu64, *(const uint64_t *)p);
    return json_string(t);
  }
  case PROTOBUF_C_TYPE_FLOAT:
    return json_real(*(const float *)p);
  case PROTOBUF_C_TYPE_DOUBLE:
    return json_real(*(const double *)p);
  case PROTOBUF_C_TYPE_BOOL:
    return json_boolean(*(const protobuf_c_boolean *)p);
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
    return v ? json_string(v->name) : json_integer(*(const int *)p);
  }
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return json_string(s ? s : "");
  }
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *b = p;
    return b64(b->data, b->len);
  }
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
    return m ? pbjson(m) : json_null();
  }
  }
  return json_null();
}

static size_t elem_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_DOUBLE:
    return 8;
  case PROTOBUF_C_TYPE_BOOL:
    return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(void *);
  case PROTOBUF_C_TYPE_BYTES:
    return sizeof(ProtobufCBinaryData);
  default:
    return 4;
  }
}

/* A map field: repeated entries with `key` and `value` fields. */
static bool is_map(const ProtobufCFieldDescriptor *f) {
  if (f->type != PROTOBUF_C_TYPE_MESSAGE) return false;
  const ProtobufCMessageDescriptor *d = f->descriptor;
  size_t n = strlen(d->name);
  return n > 5 && strcmp(d->name + n - 5, "Entry") == 0 && d->n_fields == 2 && strcmp(d->fields[0].name, "key") == 0 &&
         strcmp(d->fields[1].name, "value") == 0;
}

static json_t *repeated(const ProtobufCFieldDescriptor *f, const char *base, size_t n) {
  const char *arr = *(char *const *)(base + f->offset);
  if (is_map(f)) {
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++) {
      const ProtobufCMessage *e = ((ProtobufCMessage *const *)(const void *)arr)[i];
      const ProtobufCFieldDescriptor *kd = &e->descriptor->fields[0], *vd = &e->descriptor->fields[1];
      const char *k = *(char *const *)((const char *)e + kd->offset);
      if (kd->type == PROTOBUF_C_TYPE_STRING && k != NULL)
        json_object_set_new(o, k, scalar(vd, (const char *)e + vd->offset));
    }
    return o;
  }
  json_t *a = json_array();
  size_t sz = elem_size(f->type);
  for (size_t i = 0; i < n; i++)
    json_array_append_new(a, scalar(f, arr + i * sz));
  return a;
}

/* Whether a singular proto3 field holds its default (left out). */
static bool is_default(const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return s == NULL || s[0] == '\0';
  }
  case PROTOBUF_C_TYPE_MESSAGE:
    return *(void *const *)p == NULL;
  case PROTOBUF_C_TYPE_BYTES:
    return ((const ProtobufCBinaryData *)p)->len == 0;
  case PROTOBUF_C_TYPE_BOOL:
    return !*(const protobuf_c_boolean *)p;
  default: {
    size_t sz = elem_size(f->type);
    static const char zero[8];
    return memcmp(p, zero, sz) == 0;
  }
  }
}

static json_t *convert(const ProtobufCMessage *m, bool defaults);

json_t *pbjson(const ProtobufCMessage *m) { return convert(m, false); }
json_t *pbjson_all(const ProtobufCMessage *m) { return convert(m, true); }

static json_t *convert(const ProtobufCMessage *m, bool defaults) {
  json_t *wk = well_known(m);
  if (wk != NULL) return wk;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *base = (const char *)m;
  json_t *o = json_object();
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    char name[128];
    camel(f->name, name, sizeof(name));
    const void *p = base + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset);
      if (n > 0) json_object_set_new(o, name, repeated(f, base, n));
      continue;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) continue;
      json_object_set_new(o, name, scalar(f, p));
      continue;
    }
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 && f->type != PROTOBUF_C_TYPE_MESSAGE &&
        f->type != PROTOBUF_C_TYPE_STRING) {
      if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset)) continue;
    } else if (is_default(f, p) && !(defaults && f->type != PROTOBUF_C_TYPE_MESSAGE)) {
      continue;
    }
    json_object_set_new(o, name, scalar(f, p));
  }
  return o;
}
