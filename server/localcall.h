/* localcall.h -- a call made inside dtsd (the HTTP API's requests): posted
 * to a hub with dts_hub_post like a gRPC call, answered through the same
 * dts_call_ops, and waited for by the thread that made it.
 *
 *   dts_call *c = dts_local_new();
 *   dts_hub_post(h, DTS_M_GET_INSTANCE, dts_local_give(c), req);
 *   if (dts_local_wait(c, 30000)) { const dts_local *r = dts_local_answer(c); ... }
 *   dts_local_release(c);
 *
 * Unary answers land in `status`, `msg` and `body`; a server stream's
 * messages in `items`, its final status in `status` and `msg`.  Once
 * dts_local_wait returned true, nothing writes the answer any more.
 */
#ifndef DTS_SERVER_LOCALCALL_H
#define DTS_SERVER_LOCALCALL_H

#include "actors/call.h"

#include <stdbool.h>

typedef struct dts_local {
  int status; /* dts_status */
  char msg[512];
  dts_buf body;
  dts_buf *items;
  size_t nitems;
} dts_local;

/* A new call, with the caller's reference. */
dts_call *dts_local_new(void);
/* Another reference, for the hub (dts_hub_post takes one over). */
dts_call *dts_local_give(dts_call *c);
/* Waits for the answer (or the stream's end): false after timeout_ms. */
bool dts_local_wait(dts_call *c, long timeout_ms);
/* The answer; valid after dts_local_wait returned true, until release. */
const dts_local *dts_local_answer(dts_call *c);
/* The caller is done with the call (answered or not: an unanswered one is
 * closed, so its owner lets go of it); drops the caller's reference. */
void dts_local_release(dts_call *c);
/* Local calls alive (tests: 0 once everything let go). */
long dts_local_live(void);

#endif
