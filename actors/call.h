/* call.h -- what actors may do with an RPC, without seeing gRPC.
 *
 * server/bridge.c implements these over gRPC C core; unit tests link their
 * own implementation.  A dts_call is refcounted: whoever holds a pointer
 * holds a reference.  For streams, exactly one actor owns the call's send
 * side: it starts at most one send at a time and learns of its completion
 * through a DTS_CALL_SENT message; the end of the call (client cancelled,
 * disconnected, deadline) arrives as DTS_CALL_CLOSED.
 */
#ifndef DTS_ACTORS_CALL_H
#define DTS_ACTORS_CALL_H

#include "proto/pb.h"
#include "runtime/mailbox.h"

#include <stdbool.h>

typedef struct dts_call dts_call;

/* gRPC status codes, by their wire values (actors do not include grpc). */
typedef enum {
  DTS_ST_OK = 0,
  DTS_ST_CANCELLED = 1,
  DTS_ST_UNKNOWN = 2,
  DTS_ST_INVALID_ARGUMENT = 3,
  DTS_ST_DEADLINE_EXCEEDED = 4,
  DTS_ST_NOT_FOUND = 5,
  DTS_ST_ALREADY_EXISTS = 6,
  DTS_ST_PERMISSION_DENIED = 7,
  DTS_ST_RESOURCE_EXHAUSTED = 8,
  DTS_ST_FAILED_PRECONDITION = 9,
  DTS_ST_ABORTED = 10,
  DTS_ST_UNIMPLEMENTED = 12,
  DTS_ST_INTERNAL = 13,
  DTS_ST_UNAVAILABLE = 14,
  DTS_ST_DATA_LOSS = 15,
  DTS_ST_UNAUTHENTICATED = 16,
} dts_status;

void dts_call_ref(dts_call *c);
void dts_call_unref(dts_call *c);

/* The owner's per-call pointer (owner thread only; NULL at first). */
void dts_call_set_owner_data(dts_call *c, void *p);
void *dts_call_owner_data(dts_call *c);

/* Unary: answers with `resp` (consumed) and OK, or with an error status.
 * Exactly one answer per unary call. */
void dts_call_reply(dts_call *c, dts_buf resp);
void dts_call_fail(dts_call *c, dts_status st, const char *msg);

/* Streams (owner only).  open sends the response headers; send sends one
 * message (consumed); end sends the final status.  Call them without
 * waiting: the bridge keeps them in order and sends one at a time.
 * DTS_CALL_SENT comes once, when the final status went out (ok) or when a
 * send failed (the call is dead; later sends are dropped). */
void dts_call_stream_open(dts_call *c);
void dts_call_stream_send(dts_call *c, dts_buf msg);
void dts_call_stream_end(dts_call *c, dts_status st, const char *msg);

/* Streams: bytes queued on the call and not yet sent (any thread; a
 * snapshot).  A reader that does not read makes this grow: the owner stops
 * adding (flow control) instead of buffering without end. */
size_t dts_call_stream_queued(dts_call *c);
/* Streams (owner): asks for one DTS_CALL_DRAINED once the queued bytes are
 * `below` or less -- at once if they already are.  Not sent if the call
 * dies first (DTS_CALL_SENT with ok false comes instead). */
void dts_call_stream_watch(dts_call *c, size_t below);

/* Message kinds the bridge posts to a call's owner actor. */
enum { DTS_CALL_SENT = 0x100, DTS_CALL_CLOSED = 0x101, DTS_CALL_DRAINED = 0x102 };
typedef struct dts_call_event {
  dts_msg hdr;    /* kind: DTS_CALL_SENT or DTS_CALL_CLOSED */
  dts_call *call; /* a reference, released by the message's drop */
  bool ok;        /* SENT: the send went out; false: the call is dead */
} dts_call_event;

#endif
