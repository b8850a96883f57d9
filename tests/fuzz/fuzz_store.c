/* fuzz_store.c -- libFuzzer target: what comes back from LevelDB is input
 * too.  The input writes arbitrary records under a hub's prefix (instance
 * records, history and inbox events, activity work items, timers, entity
 * records and queues, indexes, retention, schedules), then a hub loads them at start
 * and is asked about them: reads, queries, a worker stream (dispatch builds
 * work items from stored events), purges, terminations.
 *
 * Input: records until a zero type byte (at most 64):
 *   type byte (its key's type letter is "IHNATEQSCRXP"[type % 12]),
 *   u16 key length, key bytes after the type letter, u16 value length,
 *   value bytes
 * then an options byte and the operations of fz_ops (harness.h).
 */
#include "tests/fuzz/harness.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char types[] = "IHNATEQSCRXP";
  fz_in in = {data, size};
  for (int nrec = 0; nrec < 64; nrec++) {
    uint8_t t = fz_byte(&in);
    if (t == 0) break;
    uint8_t key[600];
    key[0] = (uint8_t)types[t % 12];
    size_t got, vgot;
    const uint8_t *k = fz_bytes(&in, fz_u16(&in) % 512, &got);
    memcpy(key + 1, k, got);
    const uint8_t *v = fz_bytes(&in, fz_u16(&in), &vgot);
    fz_put_raw(key, got + 1, v, vgot);
  }
  uint8_t opt = fz_byte(&in);
  fz_options o = {.storage_thread = opt & 1, .passivate = opt & 2, .entity_batch = (opt >> 2) & 3};
  fz_hub *f = fz_hub_open(&o);
  if (f == NULL) { /* a store the hub refuses to load: a clean refusal */
    fz_wipe();
    return 0;
  }
  fz_ops(f, &in, 128);
  fz_hub_close(f);
  return 0;
}
