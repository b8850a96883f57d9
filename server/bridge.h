/* bridge.h -- the gRPC C-core edge: accepts calls, decodes requests, hands
 * them to the task hub's engine (dts_hub_post) on the thread that received
 * them, and carries the answers back.  Decides nothing about
 * orchestrations.  Several completion-queue threads.  See docs/engine.md
 * and ../notes on gRPC core pitfalls.
 */
#ifndef DTS_SERVER_BRIDGE_H
#define DTS_SERVER_BRIDGE_H

#include "actors/hub.h"
#include "server/audit.h"
#include "server/auth.h"

typedef struct dts_bridge dts_bridge;

#define DTS_MAX_HUBS 64

/* The served task hubs.  Owned by libdtsd; while the bridge runs, only its
 * completion-queue thread changes it (CreateTaskHub, DeleteTaskHub). */
typedef struct dts_hubset {
  dts_hub *live[DTS_MAX_HUBS]; /* served */
  int nlive;
  dts_hub *retired[DTS_MAX_HUBS]; /* deleted while running: released at stop */
  int nretired;
  dts_hub_config tmpl; /* for hubs created at runtime (name set per hub) */
} dts_hubset;

/* What one client may take (docs/security.md); each 0 means its default. */
typedef struct dts_bridge_limits {
  int streams_per_conn;       /* concurrent HTTP/2 streams on one connection (16384) */
  int max_metadata;           /* bytes of headers a call may send (16384) */
  int handshake_timeout_ms;   /* a connection must finish its handshake within (10000) */
  int min_ping_interval_ms;   /* a client pinging more often than this without data gets a strike (10000) */
  int max_ping_strikes;       /* strikes before the connection is closed (2) */
  int conn_idle_ms;           /* close connections idle this long (0: never) */
  int conn_age_ms;            /* close connections this old, gracefully (0: never) */
  int waits_per_conn;         /* open WaitForInstance* calls on one connection (10000) */
  int worker_streams;         /* open GetWorkItems streams in all (10000) */
  int worker_streams_per_principal; /* ... per principal (1000) */
  int drain_grace_ms;         /* a stream whose credentials went is cut this long after, items done or not (30000) */
} dts_bridge_limits;

typedef struct dts_bridge_config {
  const char *addr;      /* "host:port"; port 0 picks a free port */
  dts_hubset *hubs;      /* borrowed */
  const char *default_hub; /* hub for calls without a `taskhub` header */
  long max_message;      /* bytes; larger requests get RESOURCE_EXHAUSTED */
  int max_depth;         /* message nesting bound checked before decoding */
  int cq_threads;        /* completion-queue threads (>= 1) */
  bool dynamic_hubs;     /* a hub named by a call and not served is created (DTS_USE_DYNAMIC_TASK_HUBS) */
  dts_auth *auth;        /* who may call what (borrowed; required) */
  dts_audit *audit;      /* the audit log (borrowed; NULL: none) */
  void *tls_creds;       /* grpc_server_credentials for TLS (taken over), or NULL: plaintext */
  bool mtls;             /* the credentials ask for client certificates: read their principal */
  dts_bridge_limits limits; /* abuse limits; 0: the default */
} dts_bridge_config;

/* How the engine reaches the bridge's calls (dts_hub_config.call_ops). */
extern const dts_call_ops dts_bridge_call_ops;

/* The served hub `name`; with dynamic hubs on, created when it is not
 * served.  NULL with a status and why when there is none.  Any thread;
 * the hub stays valid until dts_bridge_stop (deleted hubs are released at
 * stop), but may have been deleted meanwhile: its calls then fail. */
dts_hub *dts_bridge_hub(dts_bridge *b, const char *name, dts_status *st, char *why, size_t whylen);
/* The served hubs (at most max), as dts_bridge_hub. */
int dts_bridge_hubs(dts_bridge *b, dts_hub **out, int max);

/* Checks the credentials of every open worker stream again (once a
 * second; tokens revoked or expired since): a stream whose no longer hold
 * gets no new work and ends once its items are done (dts_hub_drain_stream). */
void dts_bridge_recheck(dts_bridge *b);

/* Binds and starts serving.  *port receives the bound port. */
dts_err dts_bridge_start(const dts_bridge_config *cfg, dts_bridge **out, int *port, char *err, size_t errlen);
/* Graceful stop: no new calls, streams end with UNAVAILABLE, calls still
 * open after a 1 s grace are cancelled; returns when every call is
 * released and the server is destroyed. */
void dts_bridge_stop(dts_bridge *b);

#endif
