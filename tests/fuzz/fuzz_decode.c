/* fuzz_decode.c -- libFuzzer target: the request decoders of every method
 * (the bridge's path: dts_pb_decode) and of the records dtsd stores, and
 * the validator under them (framing, nesting depth, strings, times).
 *
 * Input: a type byte (which message type), a depth byte (the nesting bound,
 * 1..64), then the message bytes.  Properties checked beyond "no crash":
 * a message that decodes packs again into bytes that decode and validate,
 * at the same size.
 */
#include "server/methods.h"
#include "proto/pb.h"
#include "runtime/alloc.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const stored[] = {
    &dtsd__store__instance_record__descriptor, &dtsd__store__entity_record__descriptor,
    &history_event__descriptor,                &activity_request__descriptor,
    &parent_instance_info__descriptor,         &task_failure_details__descriptor,
    &dtsd__admin__retention_policy__descriptor, &work_item__descriptor,
    &orchestrator_request__descriptor,         &dtsd__admin__schedule__descriptor,
};
#define NSTORED (sizeof(stored) / sizeof(stored[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t which = data[0] % (DTS_M_COUNT + NSTORED);
  const ProtobufCMessageDescriptor *d = which < DTS_M_COUNT ? dts_methods[which].req : stored[which - DTS_M_COUNT];
  int depth = 1 + data[1] % 64;
  const uint8_t *p = data + 2;
  size_t n = size - 2;
  char err[512];
  ProtobufCMessage *m = dts_pb_decode(d, p, n, depth, err, sizeof(err));
  if (m == NULL) return 0;
  dts_buf b = dts_pb_pack(m);
  ProtobufCMessage *again = dts_pb_decode(d, b.p, b.n, 64, err, sizeof(err));
  if (again == NULL) {
    fprintf(stderr, "a decoded %s packs into bytes that do not decode: %s\n", d->name, err);
    abort();
  }
  if (protobuf_c_message_get_packed_size(again) != b.n) {
    fprintf(stderr, "%s: packed size changed across a round trip\n", d->name);
    abort();
  }
  protobuf_c_message_free_unpacked(again, NULL);
  protobuf_c_message_free_unpacked(m, NULL);
  dts_buf_free(&b);
  return 0;
}
