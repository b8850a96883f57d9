/* dtsd.h -- dtsd as a library (libdtsd): start a complete server inside a
 * process, read its bound port, stop it.  The dtsd executable is a thin
 * main() over this.
 *
 *   dtsd_options o;
 *   dtsd_options_init(&o);
 *   o.address = "127.0.0.1:0";     // port 0 picks a free port
 *   o.ephemeral = true;            // temp data dir, removed at stop
 *   dtsd *d;
 *   char err[512];
 *   if (dtsd_start(&o, &d, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); ... }
 *   int port = dtsd_port(d);
 *   ...
 *   dtsd_stop(d);
 */
#ifndef DTSD_H
#define DTSD_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dtsd dtsd;

typedef struct dtsd_options {
  const char *address;   /* gRPC "host:port" (default "0.0.0.0:8080") */
  const char *http_address;   /* data API, metrics, dashboard (default "0.0.0.0:8082"; "off": none) */
  const char *health_address; /* /healthz, /readyz, /metrics (default "0.0.0.0:8081"; "off": none) */
  int http_max_conns;    /* HTTP connections per listener (default 256) */
  int http_max_scan;     /* instances one HTTP query looks at (default 100000) */
  const char *data_dir;  /* default "./dtsd-data" */
  bool ephemeral;        /* use a fresh temporary data dir, removed at stop */
  const char *task_hubs; /* comma-separated names (default "default") */
  int workers;           /* scheduler threads; 0 = number of cores */
  int cq_threads;        /* gRPC completion-queue threads; 0 = one per two cores */
  long max_message;      /* request size limit, bytes (default 64 MiB) */
  long max_payload;      /* per payload string, bytes (default 16 MiB) */
  int max_nesting;       /* message nesting bound (default 64) */
  bool fsync;            /* durability: fsync every group commit (default: os) */
  int health_ping_ms;    /* HealthPing on idle worker streams (default 30000) */
  const char *retention; /* auto-purge, e.g. "default=30d,failed=90d" (NULL: as persisted) */
  int purge_interval_ms; /* how often the purger runs (default 1000) */
  int entity_batch;      /* most operations per entity work item (default 100) */
  bool dynamic_hubs;     /* create a hub a call names on first use (DTS_USE_DYNAMIC_TASK_HUBS) */
  bool commit_thread;    /* os durability: commit on the storage thread too (the fsync path) */
  long passivate_ms;     /* idle unfinished instances and entities leave memory after this (default 30000; 0 = never) */
  /* the store */
  long min_free_space;   /* writes are refused below this many free bytes (default 64 MiB; 0 = never) */
  long block_cache;      /* LevelDB block cache, bytes (default 64 MiB) */
  int bloom_bits;        /* bloom filter bits per key (default 10; 0 = none) */
  /* bounds on one request's work and memory (0 = the default) */
  int purge_batch;       /* instances one purge-by-filter call deletes (1000) */
  int max_page;          /* QueryInstances / QueryEntities page (1000) */
  int max_list_page;     /* ListInstanceIds page (10000) */
  int scan_budget;       /* index entries one page looks at (100000) */
  int max_chunks;        /* partial completions per orchestrator turn (256) */
  long max_chunk_bytes;  /* their bytes together (256 MiB) */
  int max_stream_items;  /* maxConcurrent*WorkItems a worker may ask for (10000) */
  long max_outbox;       /* bytes queued on a worker stream before dispatch to it waits (64 MiB) */
  /* security (docs/security.md) */
  bool auth;             /* callers must present a token (default: no auth, loopback clients only) */
  bool emulator_mode;    /* without auth, serve every address (the emulator's way) */
  const char *tokens_file; /* static tokens' hashes (dtsd token create); NULL: none */
  const char *jwt_issuers; /* OpenID Connect issuers whose JWTs are accepted (docs/security.md); NULL: none */
  const char *allow;     /* allow list: "10.0.0.0/8,::1" (NULL: every address) */
  const char *audit_log; /* JSON-lines audit log file (NULL: none) */
  const char *tls_cert, *tls_key; /* PEM chain and key: TLS on the gRPC port (NULL: plaintext) */
  const char *tls_client_ca;      /* CAs of client certificates (mTLS) */
  const char *tls_client_auth;    /* none (default) | optional | require */
  int auth_fail_limit;   /* failed authentications from one address in a minute before it backs off (20) */
  /* abuse limits of the gRPC port (0: the default; server/bridge.h) */
  int max_streams_per_conn, max_metadata, handshake_timeout_ms, min_ping_interval_ms, max_ping_strikes;
  int conn_idle_ms, conn_age_ms, max_waits_per_conn, max_worker_streams, max_worker_streams_per_principal;
  int drain_grace_ms;
} dtsd_options;

void dtsd_options_init(dtsd_options *o);
/* Starts the server.  Returns 0; -1 with a message in err; or -2 when the
 * data directory is too full for the store to open (the caller may wait
 * for space and try again). */
int dtsd_start(const dtsd_options *o, dtsd **out, char *err, unsigned errlen);
int dtsd_port(const dtsd *d);
/* The bound HTTP ports (0: that listener is off). */
int dtsd_http_port(const dtsd *d);
int dtsd_health_port(const dtsd *d);
const char *dtsd_data_dir(const dtsd *d);
/* SIGHUP: reads the tokens file again, reopens the audit log, looks at
 * the certificate files.  Logs what it did; a bad tokens file keeps the
 * old tokens. */
void dtsd_reload(dtsd *d);
/* Once a second or so: the audit log's collapsed denials, certificate
 * expiry warnings. */
void dtsd_tick(dtsd *d);
/* Graceful stop (streams end with UNAVAILABLE), then frees everything. */
void dtsd_stop(dtsd *d);

#ifdef __cplusplus
}
#endif

#endif
