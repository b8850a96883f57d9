/* fuzz_hub.c -- libFuzzer target: a sequence of requests, any of the
 * methods, decoded as the bridge decodes them and handled by a real hub
 * (tests/fuzz/harness.h).  Requests between two "run" operations land in
 * one hub turn, so interleavings such as complete + purge + wipe in one
 * commit are reached.
 *
 * Input: one options byte (bit 0: commit through the storage thread;
 * bit 1: passivate idle instances; bits 2-3: entity batch size), then the
 * operations of fz_ops (harness.h).
 */
#include "tests/fuzz/harness.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t opt = fz_byte(&in);
  fz_options o = {.storage_thread = opt & 1, .passivate = opt & 2, .entity_batch = (opt >> 2) & 3};
  fz_hub *f = fz_hub_open(&o);
  if (f == NULL) abort(); /* an empty store always loads */
  fz_ops(f, &in, 256);
  fz_hub_close(f);
  return 0;
}
