/* dtsd.c -- libdtsd: composes runtime, store, hubs and the gRPC bridge.
 *
 * Start order: scheduler, timers, store, hubs (each loads its state),
 * bridge.  Stop order is the reverse, and each step waits for the previous
 * to let go: the bridge returns once every call record is released (the
 * hubs answered or dropped theirs); the timer thread stops before the
 * scheduler so that no timer posts to a stopped actor; the store drains its
 * queue; the scheduler joins its workers; the hubs are freed last.
 */
#define _GNU_SOURCE /* nftw, mkdtemp */
#include "server/dtsd.h"

#include "actors/hub.h"
#include "runtime/alloc.h"
#include "runtime/duration.h"
#include "runtime/log.h"
#include "server/bridge.h"
#include "server/callvt.h"
#include "server/http.h"
#include "server/tls.h"
#include "storage/store.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


struct dtsd {
  dts_sched *sched;
  dts_timers *timers;
  dts_store *store;
  dts_hubset hubs;
  dts_bridge *bridge;
  dts_http *http;
  int port, http_port, health_port;
  char *dir;
  bool ephemeral;
  dts_auth *auth;
  dts_audit *audit;
  dts_tls *tls;
  time_t tls_checked;
  char *client_ca;
};

void dtsd_options_init(dtsd_options *o) {
  memset(o, 0, sizeof(*o));
  o->address = "0.0.0.0:8080";
  o->http_address = "0.0.0.0:8082";
  o->health_address = "0.0.0.0:8081";
  o->http_max_conns = 256;
  o->http_max_scan = 100000;
  o->data_dir = "./dtsd-data";
  o->task_hubs = "default";
  o->max_message = 64L << 20;
  o->max_payload = 16L << 20;
  o->max_nesting = 64;
  o->health_ping_ms = 30000;
  o->purge_interval_ms = 1000;
  o->entity_batch = 100;
  o->passivate_ms = 30000;
  o->min_free_space = 64L << 20;
  o->block_cache = 64L << 20;
  o->bloom_bits = 10;
  o->purge_batch = 1000;
  o->max_page = 1000;
  o->max_list_page = 10000;
  o->scan_budget = 100000;
  o->max_chunks = 256;
  o->max_chunk_bytes = 256L << 20;
  o->max_stream_items = 10000;
  o->max_outbox = 64L << 20;
}

/* Adds (and loads) a hub unless it is already served. */
static bool add_hub(dtsd *d, const char *name, bool persist_retention, const int64_t *ret) {
  for (int i = 0; i < d->hubs.nlive; i++)
    if (strcmp(dts_hub_name(d->hubs.live[i]), name) == 0) return true;
  if (d->hubs.nlive == DTS_MAX_HUBS) return false;
  dts_hub_config hc = d->hubs.tmpl;
  hc.name = name;
  hc.retention_set = persist_retention;
  if (persist_retention) memcpy(hc.retention_ns, ret, sizeof(hc.retention_ns));
  if (dts_hub_create(&hc, &d->hubs.live[d->hubs.nlive]) != DTS_OK) return false;
  d->hubs.nlive++;
  return true;
}

typedef struct marker_load {
  dtsd *d;
  bool ok;
  char failed[80];
} marker_load;

static void load_marker(void *ctx, const char *name) {
  marker_load *m = ctx;
  if (!m->ok || dts_hub_name_problem(name) != NULL) return;
  if (!add_hub(m->d, name, false, NULL)) {
    m->ok = false;
    snprintf(m->failed, sizeof(m->failed), "%s", name);
  }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* One completion-queue thread for every two cores.  Measured on two cores
 * (bench/compare.sh): a second one cost 20-30% of entity signal throughput
 * and 0.1 ms of idle latency -- gRPC 1.51 wakes pollers of one completion
 * queue in turn, and the workers need the cores more (docs/operations.md). */
static int default_cq_threads(void) {
  int n = online_cpus() / 2;
  return n > 0 ? n : 1;
}

static void teardown(dtsd *d) {
  if (d->http) dts_http_stop(d->http); /* its handlers wait on hubs: first */
  if (d->bridge) dts_bridge_stop(d->bridge);
  for (int r = 0; r < 2; r++) {
    dts_hub **v = r ? d->hubs.retired : d->hubs.live;
    int n = r ? d->hubs.nretired : d->hubs.nlive;
    for (int i = 0; i < n; i++) {
      dts_hub_shutdown(v[i]); /* idempotent */
      while (!dts_hub_quiesced(v[i])) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
      }
    }
  }
  /* Quiesced: no write starts any more.  Once the last commits are answered,
   * the timer thread and then the workers stop -- after that no actor runs,
   * so none reads the store while it closes. */
  while (d->store && dts_store_busy(d->store)) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  if (d->timers) dts_timers_destroy(d->timers);
  if (d->sched) dts_sched_destroy(d->sched);
  if (d->store) dts_store_close(d->store);
  for (int i = 0; i < d->hubs.nlive; i++) dts_hub_release(d->hubs.live[i]);
  for (int i = 0; i < d->hubs.nretired; i++) dts_hub_release(d->hubs.retired[i]);
  if (d->ephemeral && d->dir) nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  dts_auth_destroy(d->auth);
  dts_audit_close(d->audit);
  dts_tls_destroy(d->tls);
  dts_free(d->client_ca);
  dts_free(d->dir);
  dts_free(d);
  dts_pool_thread_flush();
}

/* What every hub of this dtsd is created with. */
static dts_hub_config hub_template(const dtsd *d, const dtsd_options *o) {
  return (dts_hub_config){.call_ops = &dts_server_call_ops,
                          .sched = d->sched,
                          .timers = d->timers,
                          .store = d->store,
                          .max_payload = (size_t)o->max_payload,
                          .default_max_orch = 1000,
                          .default_max_act = 1000,
                          .abandon_delay_ns = 1000000000ULL,
                          .ping_interval_ns = (uint64_t)(o->health_ping_ms > 0 ? o->health_ping_ms : 30000) * 1000000ULL,
                          .max_entity_batch = o->entity_batch > 0 ? o->entity_batch : 100,
                          .inline_commit = !o->fsync && !o->commit_thread,
                          .passivate_after_ns = (uint64_t)(o->passivate_ms > 0 ? o->passivate_ms : 0) * 1000000ULL,
                          .limits = {.purge_chunk = o->purge_batch,
                                     .max_page = o->max_page,
                                     .max_list_page = o->max_list_page,
                                     .scan_budget = o->scan_budget,
                                     .max_chunks = o->max_chunks,
                                     .max_chunk_bytes = o->max_chunk_bytes,
                                     .max_stream_items = o->max_stream_items,
                                     .max_outbox_bytes = o->max_outbox},
                          .purge_interval_ns = (uint64_t)(o->purge_interval_ms > 0 ? o->purge_interval_ms : 1000) * 1000000ULL};
}

/* Serves the hubs of --task-hubs ("A,B"; none: "default"). */
static bool add_listed_hubs(dtsd *d, const char *list, bool ret_set, const int64_t *ret, char *err, unsigned errlen) {
  const char *p = list && list[0] ? list : "default";
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    while (n > 0 && *p == ' ') p++, n--;
    while (n > 0 && p[n - 1] == ' ') n--;
    if (n > 0) {
      char *name = dts_strndup(p, n);
      const char *why = dts_hub_name_problem(name);
      if (why != NULL) {
        snprintf(err, errlen, "invalid task hub name '%.80s': %s", name, why);
        dts_free(name);
        return false;
      }
      bool ok = add_hub(d, name, ret_set, ret);
      if (!ok) snprintf(err, errlen, "cannot serve task hub '%s' (more than %d hubs, or its data in %s is damaged)", name, DTS_MAX_HUBS, d->dir);
      dts_free(name);
      if (!ok) return false;
    }
    if (!e) break;
    p = e + 1;
  }
  return true;
}

/* The caller checks: tokens, allow list, audit log, certificate. */
static bool security_start(dtsd *d, const dtsd_options *o, char *err, unsigned errlen) {
  dts_auth_config ac = {.on = o->auth, .emulator_mode = o->emulator_mode, .tokens_file = o->tokens_file, .allow = o->allow,
                        .fail_limit = o->auth_fail_limit, .jwt_issuers = o->jwt_issuers};
  if (o->auth && o->emulator_mode) {
    snprintf(err, errlen, "--emulator-mode serves without authentication: it cannot go with --auth on");
    return false;
  }
  if ((d->auth = dts_auth_create(&ac, err, errlen)) == NULL) return false;
  if (o->audit_log != NULL && o->audit_log[0] != '\0' && (d->audit = dts_audit_open(o->audit_log, err, errlen)) == NULL)
    return false;
  bool want_tls = (o->tls_cert && o->tls_cert[0]) || (o->tls_key && o->tls_key[0]);
  if (want_tls) {
    int ca = DTS_MTLS_NONE;
    const char *mode = o->tls_client_auth ? o->tls_client_auth : "none";
    if (strcmp(mode, "optional") == 0) ca = DTS_MTLS_OPTIONAL;
    else if (strcmp(mode, "require") == 0) ca = DTS_MTLS_REQUIRE;
    else if (strcmp(mode, "none") != 0) {
      snprintf(err, errlen, "--tls-client-auth is none, optional or require, not '%s'", mode);
      return false;
    }
    if (!o->tls_cert || !o->tls_cert[0] || !o->tls_key || !o->tls_key[0]) {
      snprintf(err, errlen, "TLS needs both --tls-cert and --tls-key");
      return false;
    }
    dts_tls_config tc = {.cert = o->tls_cert, .key = o->tls_key,
                         .client_ca = o->tls_client_ca && o->tls_client_ca[0] ? o->tls_client_ca : NULL, .client_auth = ca};
    if ((d->tls = dts_tls_create(&tc, err, errlen)) == NULL) return false;
    dts_tls_check(d->tls);
  }
  if (o->emulator_mode)
    DTS_WARN("main", "emulator mode: no authentication, and every address is served -- anyone who reaches the ports "
                     "can read, start and delete anything");
  return true;
}

int dtsd_start(const dtsd_options *o, dtsd **out, char *err, unsigned errlen) {
  dtsd *d = dts_calloc(1, sizeof(*d));
  *out = NULL;
  d->ephemeral = o->ephemeral;
  if (o->ephemeral) {
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    size_t n = strlen(tmp) + 32;
    d->dir = dts_malloc(n);
    snprintf(d->dir, n, "%s/dtsd-XXXXXX", tmp);
    if (mkdtemp(d->dir) == NULL) {
      snprintf(err, errlen, "cannot create a temporary data directory under %s", tmp);
      dts_free(d->dir);
      d->dir = NULL;
      teardown(d);
      return -1;
    }
  } else {
    d->dir = dts_strdup(o->data_dir);
  }

  if (!security_start(d, o, err, errlen)) {
    teardown(d);
    return -1;
  }
  d->sched = dts_sched_create(o->workers);
  d->timers = dts_timers_create();
  dts_store_options so;
  dts_store_options_init(&so);
  so.durability = o->fsync ? DTS_DURABILITY_FSYNC : DTS_DURABILITY_OS;
  so.block_cache = (size_t)o->block_cache;
  so.bloom_bits = o->bloom_bits;
  so.min_free = (uint64_t)o->min_free_space;
  dts_err se = dts_store_open_with(d->dir, &so, &d->store, err, errlen);
  if (se != DTS_OK) {
    teardown(d);
    return se == DTS_ELIMIT ? -2 : -1;
  }

  /* health answers while the hubs are read back (/readyz: 503 until served) */
  dts_http_config hc = {.api_addr = o->http_address,
                        .health_addr = o->health_address,
                        .data_dir = d->dir,
                        .store = d->store,
                        .max_conns = o->http_max_conns,
                        .max_scan = o->http_max_scan,
                        .auth = d->auth,
                        .audit = d->audit,
                        .tls_cert_cb = d->tls ? dts_tls_http_callback(d->tls) : NULL};
  d->client_ca = d->tls ? dts_tls_client_ca(d->tls, &hc.client_auth) : NULL; /* kept while the listeners run */
  hc.client_ca = d->client_ca;
  if (d->tls && hc.tls_cert_cb == NULL) {
    snprintf(err, errlen, "TLS: the certificate cannot be used for HTTPS (logged above)");
    teardown(d);
    return -1;
  }
  if (dts_http_start(&hc, &d->http, &d->http_port, &d->health_port, err, errlen) != DTS_OK) {
    d->http = NULL;
    teardown(d);
    return -1;
  }

  int64_t ret[5];
  bool ret_set = o->retention != NULL && o->retention[0] != '\0';
  if (ret_set) {
    const char *why = dts_retention_parse(o->retention, ret);
    if (why != NULL) {
      snprintf(err, errlen, "invalid --retention '%s': %s", o->retention, why);
      teardown(d);
      return -1;
    }
  }
  d->hubs.tmpl = hub_template(d, o);
  if (!add_listed_hubs(d, o->task_hubs, ret_set, ret, err, errlen)) {
    teardown(d);
    return -1;
  }
  /* and the hubs created at runtime by CreateTaskHub */
  marker_load ml = {d, true, ""};
  dts_hub_list_markers(d->store, load_marker, &ml);
  if (!ml.ok) {
    snprintf(err, errlen, "cannot serve task hub '%s' (more than %d hubs, or its data in %s is damaged)", ml.failed, DTS_MAX_HUBS, d->dir);
    teardown(d);
    return -1;
  }
  if (d->hubs.nlive == 0) {
    snprintf(err, errlen, "no task hub configured");
    teardown(d);
    return -1;
  }

  dts_bridge_config bc = {.addr = o->address,
                          .hubs = &d->hubs,
                          .default_hub = "default",
                          .max_message = o->max_message,
                          .max_depth = o->max_nesting > 0 ? o->max_nesting : 64,
                          .cq_threads = o->cq_threads > 0 ? o->cq_threads : default_cq_threads(),
                          .dynamic_hubs = o->dynamic_hubs,
                          .auth = d->auth,
                          .audit = d->audit,
                          .tls_creds = d->tls ? dts_tls_grpc_credentials(d->tls) : NULL,
                          .mtls = d->tls != NULL && o->tls_client_auth != NULL && strcmp(o->tls_client_auth, "none") != 0,
                          .limits = {.streams_per_conn = o->max_streams_per_conn, .max_metadata = o->max_metadata,
                                     .handshake_timeout_ms = o->handshake_timeout_ms,
                                     .min_ping_interval_ms = o->min_ping_interval_ms, .max_ping_strikes = o->max_ping_strikes,
                                     .conn_idle_ms = o->conn_idle_ms, .conn_age_ms = o->conn_age_ms,
                                     .waits_per_conn = o->max_waits_per_conn, .worker_streams = o->max_worker_streams,
                                     .worker_streams_per_principal = o->max_worker_streams_per_principal,
                                     .drain_grace_ms = o->drain_grace_ms}};
  if (dts_bridge_start(&bc, &d->bridge, &d->port, err, errlen) != DTS_OK) {
    d->bridge = NULL;
    teardown(d);
    return -1;
  }
  dts_http_serve(d->http, d->bridge);
  const char *mode = d->tls ? "TLS" : "plaintext";
  DTS_INFO("main", "listening: gRPC on %s (port %d, %s), HTTP API on %s (port %d, %s), health on %s (port %d, "
                   "%s); authentication: %s%s%s%s%s%s",
           o->address, d->port, mode, o->http_address, d->http_port, mode, o->health_address, d->health_port, mode, o->auth ? "tokens" : o->emulator_mode ? "none (emulator mode: every address)" : "none (loopback only)",
           o->auth && o->tokens_file ? " from " : "", o->auth && o->tokens_file ? o->tokens_file : "",
           o->auth && o->jwt_issuers ? ", JWTs of the issuers in " : "", o->auth && o->jwt_issuers ? o->jwt_issuers : "",
           o->allow && o->allow[0] ? "; allow list on" : "");
  *out = d;
  return 0;
}

void dtsd_reload(dtsd *d) {
  char why[600];
  if (dts_auth_reload(d->auth, why, sizeof(why))) DTS_INFO("main", "reload: tokens read again");
  else DTS_ERROR("main", "reload: %s; the old tokens stay", why);
  if (!dts_audit_reopen(d->audit, why, sizeof(why))) DTS_ERROR("main", "reload: %s", why);
  if (d->tls) dts_tls_check(d->tls);
  dts_audit_event e = {"reload", "", "", "", "SIGHUP", NULL};
  dts_audit_log(d->audit, &e);
}

void dtsd_tick(dtsd *d) {
  dts_audit_flush(d->audit);
  dts_auth_tick(d->auth);
  if (d->bridge) dts_bridge_recheck(d->bridge);
  time_t now = time(NULL);
  if (d->tls && now - d->tls_checked >= 10) {
    d->tls_checked = now;
    dts_tls_check(d->tls);
  }
}

int dtsd_port(const dtsd *d) { return d->port; }
int dtsd_http_port(const dtsd *d) { return d->http_port; }
int dtsd_health_port(const dtsd *d) { return d->health_port; }
const char *dtsd_data_dir(const dtsd *d) { return d->dir; }
void dtsd_stop(dtsd *d) {
  if (d != NULL) teardown(d);
}
