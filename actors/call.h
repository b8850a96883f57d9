/* call.h -- what actors may do with an RPC, without seeing gRPC.
 *
 * The engine reaches calls only through a dts_call_ops table handed in when
 * a hub is created: server/bridge.c implements it over gRPC C core, tests
 * and fuzzers hand in a test double (tests/fakecall.h).  actors/ links
 * nothing of server/.
 *
 * A dts_call is refcounted: whoever holds a pointer holds a reference.  For
 * streams and long polls, exactly one actor owns the call (set_owner): it
 * starts at most one send at a time and learns of its completion through a
 * DTS_CALL_SENT message; the end of the call (client cancelled,
 * disconnected, deadline) arrives as DTS_CALL_CLOSED.
 */
#ifndef DTS_ACTORS_CALL_H
#define DTS_ACTORS_CALL_H

#include "proto/pb.h"
#include "runtime/actor.h"

#include <stdbool.h>
#include <stddef.h>

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

typedef struct dts_call_ops {
  void (*ref)(dts_call *c);
  void (*unref)(dts_call *c);
  /* The actor that gets this call's DTS_CALL_* messages; the call holds a
   * reference on it until the call is freed.  Set by the engine before the
   * actor can see the call; when the call ended before, the owner gets its
   * DTS_CALL_CLOSED now (exactly one CLOSED either way). */
  void (*set_owner)(dts_call *c, dts_actor *owner);
  /* Whether the call has ended on the client's side (its DTS_CALL_CLOSED
   * is on its way, or came before the owner took the call): an owner that
   * keeps a call checks this when it takes it, so the close is never
   * missed (any thread). */
  bool (*ended)(dts_call *c);
  /* The owner's per-call pointer (owner thread only; NULL at first). */
  void (*set_owner_data)(dts_call *c, void *p);
  void *(*owner_data)(dts_call *c);
  /* Unary: the one answer, `resp` consumed, or an error status. */
  void (*reply)(dts_call *c, dts_buf resp);
  void (*fail)(dts_call *c, dts_status st, const char *msg);
  /* Streams (owner only): headers, one message (consumed), the final
   * status; called without waiting, kept in order and sent one at a time.
   * DTS_CALL_SENT comes once, when the final status went out (ok) or when
   * a send failed (the call is dead; later sends are dropped). */
  void (*stream_open)(dts_call *c);
  void (*stream_send)(dts_call *c, dts_buf msg);
  void (*stream_end)(dts_call *c, dts_status st, const char *msg);
  /* Bytes queued on the stream and not yet sent (any thread; a snapshot);
   * one DTS_CALL_DRAINED once they are `below` or less. */
  size_t (*stream_queued)(dts_call *c);
  void (*stream_watch)(dts_call *c, size_t below);
  /* Who the client says it is: its `workerid` and `x-user-agent` headers
   * (empty strings when absent), NUL-terminated and cut to fit (any
   * thread). */
  void (*describe)(dts_call *c, char *workerid, size_t wn, char *agent, size_t an);
  /* Who the call's credentials name (server/auth.h), valid while the call
   * lives; NULL when nobody asked (in-process calls, tests).  A work
   * item's completion must come from the principal whose stream it was
   * sent on (any thread). */
  const char *(*principal)(dts_call *c);
  /* A StreamInstanceHistory a worker may make only for the instance whose
   * orchestrator work item its stream holds (it has no reader role). */
  bool (*lease_bound)(dts_call *c);
} dts_call_ops;

/* Message kinds the call's side posts to its owner actor. */
enum { DTS_CALL_SENT = 0x100, DTS_CALL_CLOSED = 0x101, DTS_CALL_DRAINED = 0x102 };
typedef struct dts_call_event {
  dts_msg hdr;    /* kind: DTS_CALL_SENT, DTS_CALL_CLOSED or DTS_CALL_DRAINED */
  dts_call *call; /* a reference, released by the message's drop */
  bool ok;        /* SENT: the send went out; false: the call is dead */
} dts_call_event;

#endif
