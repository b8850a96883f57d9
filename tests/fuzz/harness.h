/* harness.h -- runs a task hub deterministically for the fuzzers.
 *
 * No scheduler or timer threads: a manual scheduler runs the hub's turns
 * and a manual timer facility fires only when told, both on the fuzzer's
 * thread, so every message posted between two runs lands in one hub turn.
 * The store is real LevelDB in a temporary directory (on /dev/shm when it
 * exists), shared by every input; each input gets a fresh hub whose data is
 * wiped when the input ends.  Calls are the test double of tests/fakecall.h.
 *
 * An input's invariants, checked at its end (a violation aborts, which the
 * fuzzer reports as a crash): every unary call was answered exactly once,
 * and the hub let go of every call.
 */
#ifndef DTS_TESTS_FUZZ_HARNESS_H
#define DTS_TESTS_FUZZ_HARNESS_H

#include "actors/hub.h"
#include "tests/fakecall.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fz_hub fz_hub;

typedef struct fz_options {
  bool storage_thread;   /* commit through the storage thread (fsync's path) */
  bool passivate;        /* drop idle instances at every purge tick */
  int entity_batch;      /* 0: the default */
  dts_hub_limits limits; /* zeros: the defaults */
  size_t max_payload;    /* 0: 4096 */
} fz_options;

/* Reads bytes from an input; past the end everything reads as 0. */
typedef struct fz_in {
  const uint8_t *p;
  size_t n;
} fz_in;

uint8_t fz_byte(fz_in *in);
uint16_t fz_u16(fz_in *in);
/* The next `want` bytes (fewer at the end of the input). */
const uint8_t *fz_bytes(fz_in *in, size_t want, size_t *got);

/* The shared store, opened at the first call. */
dts_store *fz_store(void);
/* The name of the next (or current) fuzzed hub; keys live under
 * "<name>\0".  Each input gets a new name: deleting a hub's keys leaves
 * tombstones that a later scan of the same prefix would have to walk. */
const char *fz_hub_name(void);

/* A fresh hub over whatever the store holds under FZ_HUB_NAME (its load
 * runs now, synchronously). */
fz_hub *fz_hub_open(const fz_options *o);
dts_hub *fz_hub_get(fz_hub *f);

/* Decodes `body` as `m`'s request type, as the bridge does, and posts it.
 * `tok` (0xff: none) replaces the request's completion token with that of
 * the tok-th work item received so far.  Returns false when the bridge
 * would have answered itself (bad bytes, Hello, a deleted hub). */
bool fz_post_raw(fz_hub *f, int m, const uint8_t *body, size_t n, uint8_t tok);
/* Posts an already built request (packed and decoded again first).  The
 * call is the harness's (freed at fz_hub_close): read it, do not unref. */
dts_call *fz_post(fz_hub *f, int m, const ProtobufCMessage *req);
/* The calls that have an owner (streams, waits), in the order posted. */
dts_call *fz_owned(fz_hub *f, size_t i);
/* Runs turns until nothing is left to do: queued messages, batches with the
 * storage thread, timers due by now.  `advance_ns` fires timers that far
 * ahead of now as well (durable timers are never fired early by the hub:
 * it re-arms them). */
void fz_run(fz_hub *f, uint64_t advance_ns);
/* Ends the call-th call that has an owner (streams and waiters) not yet
 * closed, counted modulo their number. */
void fz_close_one(fz_hub *f, uint8_t which);
/* Shuts the hub down, checks the invariants, frees it and wipes its data. */
void fz_hub_close(fz_hub *f);
/* The same, but the data stays: the next fz_hub_open reads it back (a
 * restart). */
void fz_hub_close_keep(fz_hub *f);

/* Runs the operations of an input until it ends or `max_ops` ran:
 *   op & 7 in 0..3  request: method byte, token byte (0xff: keep the
 *                   request's own completion token; else use the token of
 *                   that work item seen so far), u16 length, the bytes
 *   4               run
 *   5               the client closes a stream or gives up a wait (one byte)
 *   6               run with timers fired up to an hour early (the hub must
 *                   re-arm durable timers that are not due)
 *   7               run with timers two seconds ahead (purge ticks) */
void fz_ops(fz_hub *f, fz_in *in, int max_ops);

/* Deletes everything under the hub's prefix; the next hub gets a new name. */
void fz_wipe(void);

/* Closes and opens the shared store again (no hub may be open): what was
 * in LevelDB's log is in a table file afterwards.  Returns its directory. */
const char *fz_store_reopen(void);

/* Writes one raw key/value under the hub's prefix ("<hub>\0" + key). */
void fz_put_raw(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen);

#endif
