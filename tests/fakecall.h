/* fakecall.h -- the test double of a dts_call (actors/call.h) for tests and
 * fuzzers that run the hub without a network: hand fake_call_ops to the
 * hub (dts_hub_config.call_ops).
 *
 * A fake call records what the hub does with it: the one answer of a unary
 * call (status, message, body), or every message sent on a stream.  The
 * owner actor (set by the engine) gets DTS_CALL_SENT after every send, as
 * from the bridge, and DTS_CALL_CLOSED when the test ends the call
 * (fake_close) -- exactly once, even when the close comes before the
 * engine has chosen the owner.  Every field is read under `mu`: actors
 * answer from their own threads.
 */
#ifndef DTS_TESTS_FAKECALL_H
#define DTS_TESTS_FAKECALL_H

#include "actors/call.h"
#include "runtime/actor.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct dts_call {
  atomic_int refs;
  void *owner_data;
  _Atomic(uintptr_t) owner; /* the owner actor | 1 once closed (any thread) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int answers;     /* unary: answers given (must end at exactly 1) */
  bool answered, ended;
  int status;
  char msg[512];
  dts_buf body;
  dts_buf *items; /* stream messages, in order */
  int nitems, capitems;
  /* a slow reader: sends stay "queued" until fake_deliver */
  bool slow;
  size_t queued;
  bool watching;
  size_t below;
};

/* Calls alive (created, not yet freed): 0 once the hub let go of all. */
extern atomic_long fake_live_calls;

extern const dts_call_ops fake_call_ops;

/* A new call with one reference (the caller's).  `owner` is ignored (the
 * engine sets it); kept so call sites read as before. */
dts_call *fake_call_new(dts_actor *owner);
/* The test's own references. */
void dts_call_ref(dts_call *c);
void dts_call_unref(dts_call *c);
bool fake_answered(dts_call *c);
int fake_nitems(dts_call *c);
/* The i-th stream message, copied (dts_buf_free it); false if none yet. */
bool fake_item(dts_call *c, int i, dts_buf *out);
/* The client ends the call: DTS_CALL_CLOSED to its owner. */
void fake_close(dts_call *c);
/* A slow reader catches up: nothing is queued any more (DTS_CALL_DRAINED
 * to the owner if it watches). */
void fake_deliver(dts_call *c);

#endif
