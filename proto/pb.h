/* pb.h -- helpers over protobuf-c for the wire types: owned byte buffers, a
 * small protobuf writer for messages we assemble from stored, still-encoded
 * parts (an OrchestratorRequest is its history's bytes concatenated), a
 * nesting-depth check that runs before any unpack, and time conversions.
 *
 * The generated headers (history.pb-c.h, ...) come from the build tree.
 */
#ifndef DTS_PROTO_PB_H
#define DTS_PROTO_PB_H

#include "client.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "history.pb-c.h"
#include "service.pb-c.h"
#include "store.pb-c.h"
#include "admin.pb-c.h"
#include "worker.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An owned byte string (dts_malloc'd; p may be NULL when n == 0). */
typedef struct dts_buf {
  uint8_t *p;
  size_t n;
} dts_buf;

void dts_buf_free(dts_buf *b);
dts_buf dts_buf_copy(const void *p, size_t n);

/* A FIFO of owned buffers (a growing ring); zero-initialised is empty.
 * Not thread-safe: its owner guards it. */
typedef struct dts_bufq {
  dts_buf *v;
  size_t head, len, cap;
} dts_bufq;

void dts_bufq_push(dts_bufq *q, dts_buf b); /* takes b over */
bool dts_bufq_pop(dts_bufq *q, dts_buf *out); /* false when empty */
void dts_bufq_clear(dts_bufq *q);             /* frees the buffers, keeps the ring */
void dts_bufq_fini(dts_bufq *q);              /* frees everything */

/* Packs `m` into a new owned buffer. */
dts_buf dts_pb_pack(const ProtobufCMessage *m);

/* ---- writer ------------------------------------------------------------- */

typedef struct dts_pbw {
  uint8_t *p;
  size_t n, cap;
} dts_pbw;

void dts_pbw_init(dts_pbw *w);
/* Hands the written bytes over as an owned buffer and resets the writer. */
dts_buf dts_pbw_take(dts_pbw *w);
void dts_pbw_fini(dts_pbw *w);

void dts_pbw_varint_field(dts_pbw *w, uint32_t field, uint64_t v);
/* Length-delimited field with raw contents (a string, bytes or an encoded
 * message). */
void dts_pbw_bytes_field(dts_pbw *w, uint32_t field, const void *p, size_t n);
void dts_pbw_string_field(dts_pbw *w, uint32_t field, const char *s);
/* A packed sub-message. */
void dts_pbw_msg_field(dts_pbw *w, uint32_t field, const ProtobufCMessage *m);
/* google.protobuf.StringValue; nothing when s is NULL. */
void dts_pbw_sv_field(dts_pbw *w, uint32_t field, const char *s);
/* google.protobuf.Timestamp from ns since the Unix epoch. */
void dts_pbw_ts_field(dts_pbw *w, uint32_t field, int64_t ns);

/* ---- validation ------------------------------------------------------------ */

typedef enum {
  DTS_PB_OK = 0,
  DTS_PB_MALFORMED, /* framing: truncated, bad wire type or field number */
  DTS_PB_TOO_DEEP,  /* nests deeper than the bound */
  DTS_PB_NUL,       /* a string field holds a NUL byte */
  DTS_PB_BAD_UTF8,  /* a string field is not UTF-8 */
  DTS_PB_BAD_TIME   /* a Timestamp or Duration outside the range its .proto defines */
} dts_pb_check;

#define DTS_PB_PATH_MAX 16
/* Where a check failed: the field at each level, outermost first. */
typedef struct dts_pb_problem {
  dts_pb_check what;
  int depth;
  const ProtobufCMessageDescriptor *msg[DTS_PB_PATH_MAX];
  const ProtobufCFieldDescriptor *field[DTS_PB_PATH_MAX]; /* NULL: the message itself */
} dts_pb_problem;

/* Walks the wire bytes of a message of type `d` without unpacking it:
 * framing, nesting no deeper than `max_depth` messages, string fields
 * without NUL bytes and in UTF-8, Timestamps and Durations in their range.
 * Linear in n; its own recursion is bounded by max_depth, which protects
 * protobuf-c's unpacker (it recurses per level).  `pr` (may be NULL) says
 * where the first problem is. */
dts_pb_check dts_pb_validate(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int max_depth,
                             dts_pb_problem *pr);
/* dts_pb_validate without the location. */
dts_pb_check dts_pb_check_depth(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                                int max_depth);
/* "CreateInstanceRequest.instance_id" for a problem. */
void dts_pb_problem_path(const dts_pb_problem *pr, char *out, size_t outlen);

/* Validates and unpacks: the message (free it with
 * protobuf_c_message_free_unpacked), or NULL with a sentence for the
 * caller's INVALID_ARGUMENT in err. */
ProtobufCMessage *dts_pb_decode(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int max_depth,
                                char *err, size_t errlen);

/* True when p[0..n) is well-formed UTF-8 (no overlongs, surrogates or
 * code points past U+10FFFF). */
bool dts_utf8_valid(const uint8_t *p, size_t n);

/* ---- time and wrappers --------------------------------------------------------- */

/* Timestamp to ns since the epoch, saturating at INT64_MIN/INT64_MAX (about
 * years 1677 and 2262); NULL -> 0. */
int64_t dts_ts_to_ns(const Google__Protobuf__Timestamp *ts);
int64_t dts_secs_to_ns(int64_t secs, int32_t nanos);
/* Fills *ts from ns; returns ts. */
Google__Protobuf__Timestamp *dts_ts_from_ns(Google__Protobuf__Timestamp *ts, int64_t ns);
/* Fills *sv to point at s (borrowed); returns NULL when s is NULL. */
Google__Protobuf__StringValue *dts_sv(Google__Protobuf__StringValue *sv, const char *s);
/* The string inside a StringValue, or NULL when absent (borrowed). */
static inline const char *dts_sv_get(const Google__Protobuf__StringValue *sv) {
  return sv != NULL ? sv->value : NULL;
}

/* 16 bytes from getrandom(2) through a per-thread pool; false when the
 * system has no entropy to give (the caller decides what that means). */
bool dts_random16(uint8_t b[16]);
/* n bytes as 2n lowercase hex digits, not terminated; returns the end. */
char *dts_hex(char *out, const uint8_t *b, size_t n);
/* A new random (v4) UUID in lower-case 8-4-4-4-12 form, written to out[37]. */
void dts_uuid(char out[37]);
/* A new execution id as DTS makes them: 32 lowercase hex digits, random,
 * no dashes (SDKs derive sub-orchestration ids "<executionId>:<n>"). */
void dts_exec_id(char out[33]);

#endif
