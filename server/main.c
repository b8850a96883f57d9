/* main.c -- the dtsd executable: flags (each with a DTSD_* environment
 * variable; flags win), start libdtsd, wait for SIGINT/SIGTERM, stop.
 *
 * Flags are a table: each names its variable, where its value goes, and --
 * for numbers -- the range it accepts; --help prints the same table. */
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/timer.h"
#include "server/dtsd.h"
#include "server/token_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifdef DTS_WITH_JEMALLOC
/* jemalloc reads its options from this symbol when it starts.  With a
 * background thread it gives freed pages back to the kernel by itself;
 * without one it purges them only when the process allocates again, so the
 * memory of actors that left memory stayed resident while dtsd was idle
 * (100,000 passivated entities: 200 MiB resident after, 43 MiB with it).
 * MALLOC_CONF in the environment still adds to or overrides this. */
const char *malloc_conf = "background_thread:true";
#endif
#include <unistd.h>

typedef enum { F_STR, F_BOOL, F_INT, F_LONG } ftype;

typedef struct flag {
  const char *name; /* --name */
  const char *var;  /* DTSD_* (NULL: none) */
  ftype type;
  void *dst;        /* const char **, bool *, int *, long * */
  long min, max;    /* numbers */
  const char *arg;  /* what the value is, for --help ("BYTES", "MS", ...) */
  const char *help;
} flag;

static dtsd_options o;
static const char *lvl, *fmt, *port_file, *dur, *config, *auth_mode;
static long ready_fd = -1, ports_fd = -1;

#define MIB (1024L * 1024L)
#define GIB (1024L * MIB)

static const flag flags[] = {
    {"config", "DTSD_CONFIG", F_STR, &config, 0, 0, "FILE",
     "settings file: one 'name = value' per line, names as these flags' (flags and DTSD_* beat it)"},
    {"address", "DTSD_ADDRESS", F_STR, &o.address, 0, 0, "HOST:PORT", "gRPC listen address (default 0.0.0.0:8080; port 0 = any)"},
    {"http-address", "DTSD_HTTP_ADDRESS", F_STR, &o.http_address, 0, 0, "HOST:PORT",
     "HTTP data API, metrics and dashboard (default 0.0.0.0:8082; off = none)"},
    {"health-address", "DTSD_HEALTH_ADDRESS", F_STR, &o.health_address, 0, 0, "HOST:PORT",
     "HTTP health: /healthz, /readyz, /metrics (default 0.0.0.0:8081; off = none)"},
    {"http-max-connections", "DTSD_HTTP_MAX_CONNECTIONS", F_INT, &o.http_max_conns, 1, 100000, "N",
     "open HTTP connections per listener (default 256)"},
    {"http-max-scan", "DTSD_HTTP_MAX_SCAN", F_INT, &o.http_max_scan, 100, 100000000, "N",
     "instances or entities one HTTP query looks at; beyond, the answer says truncated (default 100000)"},
    {"ports-fd", NULL, F_LONG, &ports_fd, 0, 65535, "N",
     "write \"GRPC HTTP HEALTH\" ports to file descriptor N once serving, then close it"},
    {"port-file", "DTSD_PORT_FILE", F_STR, &port_file, 0, 0, "PATH", "write the bound port to PATH once serving"},
    {"ready-fd", NULL, F_LONG, &ready_fd, 0, 65535, "N",
     "write the bound port to file descriptor N once serving, then close it"},
    {"data-dir", "DTSD_DATA_DIR", F_STR, &o.data_dir, 0, 0, "DIR", "LevelDB data directory (default ./dtsd-data)"},
    {"ephemeral", "DTSD_EPHEMERAL", F_BOOL, &o.ephemeral, 0, 0, NULL, "use a temporary data directory, removed at exit"},
    {"task-hubs", "DTSD_TASK_HUBS", F_STR, &o.task_hubs, 0, 0, "A,B",
     "task hubs served (default: default; DTS_TASK_HUB_NAMES works too)"},
    {"dynamic-task-hubs", "DTSD_DYNAMIC_TASK_HUBS", F_BOOL, &o.dynamic_hubs, 0, 0, NULL,
     "a task hub a call names and that is not served is created on first use (DTS_USE_DYNAMIC_TASK_HUBS=true works too)"},
    {"workers", "DTSD_WORKERS", F_INT, &o.workers, 0, 1024, "N", "scheduler threads (default: CPU count)"},
    {"cq-threads", "DTSD_CQ_THREADS", F_INT, &o.cq_threads, 0, 1024, "N",
     "gRPC completion-queue threads receiving requests (default: one per two CPUs)"},
    {"durability", "DTSD_DURABILITY", F_STR, &dur, 0, 0, "MODE",
     "os (default: survives a process crash) | fsync (survives power loss)"},
    {"max-message", "DTSD_MAX_MESSAGE", F_LONG, &o.max_message, 1024, 2 * GIB - 1, "BYTES",
     "largest request accepted (default 64 MiB)"},
    {"max-payload", "DTSD_MAX_PAYLOAD", F_LONG, &o.max_payload, 1, 2 * GIB - 1, "BYTES",
     "largest payload string (default 16 MiB)"},
    {"max-nesting", "DTSD_MAX_NESTING", F_INT, &o.max_nesting, 8, 10000, "N", "deepest message nesting accepted (default 64)"},
    {"health-ping", "DTSD_HEALTH_PING", F_INT, &o.health_ping_ms, 100, 3600000, "MS",
     "HealthPing on idle worker streams every MS (default 30000)"},
    {"retention", "DTSD_RETENTION", F_STR, &o.retention, 0, 0, "SPEC",
     "auto-purge finished instances, e.g. default=30d,completed=1h,failed=90d (statuses: default completed "
     "failed canceled terminated; units ms s m h d; keep = never; 0 = as soon as possible); persisted per hub"},
    {"purge-interval", "DTSD_PURGE_INTERVAL", F_INT, &o.purge_interval_ms, 10, 3600000, "MS",
     "how often the purger runs (default 1000)"},
    {"entity-batch", "DTSD_ENTITY_BATCH", F_INT, &o.entity_batch, 1, 10000, "N",
     "most operations in one entity work item (default 100)"},
    {"passivate-after", "DTSD_PASSIVATE_AFTER", F_LONG, &o.passivate_ms, 0, 86400000L * 365, "MS",
     "unfinished instances and entities idle this long leave memory; read back on their next message (default 30000; "
     "0 = never)"},
    {"commit-thread", "DTSD_COMMIT_THREAD", F_BOOL, &o.commit_thread, 0, 0, NULL,
     "with os durability, commit on the storage thread as fsync does (default: each actor writes its own batches)"},
    {"min-free-space", "DTSD_MIN_FREE_SPACE", F_LONG, &o.min_free_space, 0, 1L << 50, "BYTES",
     "refuse writes (RESOURCE_EXHAUSTED) while the data directory has less free space; reads go on, writes "
     "resume by themselves (default 64 MiB; 0 = only when the disk is full)"},
    {"block-cache", "DTSD_BLOCK_CACHE", F_LONG, &o.block_cache, 0, 1L << 40, "BYTES",
     "LevelDB block cache (default 64 MiB; 0 = LevelDB's 8 MiB)"},
    {"bloom-bits", "DTSD_BLOOM_BITS", F_INT, &o.bloom_bits, 0, 64, "N",
     "bloom filter bits per key: reads of ids that do not exist skip the disk (default 10; 0 = off)"},
    {"purge-batch", "DTSD_PURGE_BATCH", F_INT, &o.purge_batch, 1, 1000000, "N",
     "most instances one purge-by-filter call deletes; isComplete=false until done (default 1000)"},
    {"max-page", "DTSD_MAX_PAGE", F_INT, &o.max_page, 1, 1000000, "N",
     "largest QueryInstances / QueryEntities page; larger asks get this many and a continuation (default 1000)"},
    {"max-list-page", "DTSD_MAX_LIST_PAGE", F_INT, &o.max_list_page, 1, 10000000, "N",
     "largest ListInstanceIds page (default 10000)"},
    {"scan-budget", "DTSD_SCAN_BUDGET", F_INT, &o.scan_budget, 100, 100000000, "N",
     "index entries one query page looks at before it returns what it has (default 100000)"},
    {"max-chunks", "DTSD_MAX_CHUNKS", F_INT, &o.max_chunks, 1, 1000000, "N",
     "partial (chunked) completions one orchestrator turn may send (default 256)"},
    {"max-chunk-bytes", "DTSD_MAX_CHUNK_BYTES", F_LONG, &o.max_chunk_bytes, 1024, 1L << 40, "BYTES",
     "their bytes together (default 256 MiB)"},
    {"max-stream-items", "DTSD_MAX_STREAM_ITEMS", F_INT, &o.max_stream_items, 1, 100000000, "N",
     "largest maxConcurrent*WorkItems a worker may ask for (default 10000)"},
    {"max-outbox", "DTSD_MAX_OUTBOX", F_LONG, &o.max_outbox, 1024, 1L << 40, "BYTES",
     "bytes queued on a worker stream before dispatch to it waits for its reader (default 64 MiB)"},
    {"auth", "DTSD_AUTH", F_STR, &auth_mode, 0, 0, "MODE",
     "none (default: no tokens asked, and only loopback clients are served) | on (every caller presents a token; "
     "docs/security.md)"},
    {"emulator-mode", "DTSD_EMULATOR_MODE", F_BOOL, &o.emulator_mode, 0, 0, NULL,
     "with --auth none, serve every address as the DTS emulator does (anyone who reaches the ports can do anything)"},
    {"tokens-file", "DTSD_TOKENS_FILE", F_STR, &o.tokens_file, 0, 0, "FILE",
     "static tokens (their SHA-256 and grants), made by 'dtsd token create'; read again on SIGHUP"},
    {"jwt-issuers", "DTSD_JWT_ISSUERS", F_STR, &o.jwt_issuers, 0, 0, "FILE",
     "OpenID Connect issuers whose JWTs are accepted (issuer, audiences, JWKS file or URL, claims; docs/security.md)"},
    {"allow", "DTSD_ALLOW", F_STR, &o.allow, 0, 0, "CIDRS",
     "serve only these addresses, e.g. 10.0.0.0/8,fd00::/8,127.0.0.1 (gRPC and HTTP; default: every address)"},
    {"audit-log", "DTSD_AUDIT_LOG", F_STR, &o.audit_log, 0, 0, "FILE",
     "JSON lines: denials, changing calls, worker streams, reloads (reopened on SIGHUP)"},
    {"tls-cert", "DTSD_TLS_CERT", F_STR, &o.tls_cert, 0, 0, "FILE",
     "PEM certificate chain: TLS on the gRPC port (read again when the file changes)"},
    {"tls-key", "DTSD_TLS_KEY", F_STR, &o.tls_key, 0, 0, "FILE", "PEM private key of --tls-cert"},
    {"tls-client-ca", "DTSD_TLS_CLIENT_CA", F_STR, &o.tls_client_ca, 0, 0, "FILE", "PEM CAs of client certificates (mTLS)"},
    {"tls-client-auth", "DTSD_TLS_CLIENT_AUTH", F_STR, &o.tls_client_auth, 0, 0, "MODE",
     "none (default) | optional | require: client certificates checked against --tls-client-ca"},
    {"auth-fail-limit", "DTSD_AUTH_FAIL_LIMIT", F_INT, &o.auth_fail_limit, 1, 1000000, "N",
     "failed authentications from one address within a minute before it must wait 1, 2, 4 ... 60 s (default 20)"},
    {"max-streams-per-connection", "DTSD_MAX_STREAMS_PER_CONNECTION", F_INT, &o.max_streams_per_conn, 1, 1000000, "N",
     "concurrent gRPC calls on one connection (default 16384)"},
    {"max-metadata", "DTSD_MAX_METADATA", F_INT, &o.max_metadata, 1024, 1 << 20, "BYTES",
     "headers one gRPC call may send (default 16384)"},
    {"handshake-timeout", "DTSD_HANDSHAKE_TIMEOUT", F_INT, &o.handshake_timeout_ms, 100, 600000, "MS",
     "a connection's TLS and HTTP/2 handshake must finish within (default 10000)"},
    {"min-ping-interval", "DTSD_MIN_PING_INTERVAL", F_INT, &o.min_ping_interval_ms, 1, 3600000, "MS",
     "a client pinging more often without data gets a strike (default 10000)"},
    {"max-ping-strikes", "DTSD_MAX_PING_STRIKES", F_INT, &o.max_ping_strikes, 1, 1000, "N",
     "strikes before the connection is closed (default 2)"},
    {"connection-idle", "DTSD_CONNECTION_IDLE", F_INT, &o.conn_idle_ms, 0, 0x7fffffff, "MS",
     "close gRPC connections idle this long (default 0: never)"},
    {"connection-age", "DTSD_CONNECTION_AGE", F_INT, &o.conn_age_ms, 0, 0x7fffffff, "MS",
     "close gRPC connections this old, gracefully; clients reconnect (default 0: never)"},
    {"max-waits-per-connection", "DTSD_MAX_WAITS_PER_CONNECTION", F_INT, &o.max_waits_per_conn, 1, 10000000, "N",
     "open WaitForInstanceStart/Completion calls on one connection (default 10000; below the streams per connection, so "
     "the calls that end them still get through)"},
    {"max-worker-streams", "DTSD_MAX_WORKER_STREAMS", F_INT, &o.max_worker_streams, 1, 10000000, "N",
     "open GetWorkItems streams in all (default 10000)"},
    {"max-worker-streams-per-principal", "DTSD_MAX_WORKER_STREAMS_PER_PRINCIPAL", F_INT, &o.max_worker_streams_per_principal,
     1, 10000000, "N", "open GetWorkItems streams of one token (default 1000)"},
    {"drain-grace", "DTSD_DRAIN_GRACE", F_INT, &o.drain_grace_ms, 1, 86400000, "MS",
     "a worker stream whose token was revoked or expired gets no new work and ends once its items are done; "
     "after this long it is cut and its items go to other workers (default 30000)"},
    {"log-level", "DTSD_LOG_LEVEL", F_STR, &lvl, 0, 0, "L", "debug|info|warn|error (default info)"},
    {"log-format", "DTSD_LOG_FORMAT", F_STR, &fmt, 0, 0, "F", "text|json (default text)"},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

static void usage(FILE *out) {
  fprintf(out, "usage: dtsd [options]\n"
               "A Durable Task Scheduler backend: gRPC for the Durable Task SDKs on --address, the dashboard and\n"
               "its HTTP API on --http-address, health on --health-address, state in LevelDB under --data-dir.\n"
               "Each setting comes from the flag, else its DTSD_* variable, else the --config file, else the\n"
               "default.\n\n");
  for (size_t i = 0; i < NFLAGS; i++) {
    const flag *f = &flags[i];
    char lhs[64];
    snprintf(lhs, sizeof(lhs), "--%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
    char text[600];
    if (f->var) snprintf(text, sizeof(text), "%s  [%s%s]", f->help, f->var, f->type == F_BOOL ? "=1" : "");
    else snprintf(text, sizeof(text), "%s", f->help);
    /* the text wrapped at about 100 columns, under its first line */
    fprintf(out, "  %-24s ", lhs);
    const char *p = text;
    while (*p) {
      size_t n = strlen(p);
      if (n > 72) {
        n = 72;
        while (n > 0 && p[n] != ' ') n--;
        if (n == 0) n = 72;
      }
      size_t shown = n;
      while (shown > 0 && p[shown - 1] == ' ') shown--;
      fprintf(out, "%.*s\n", (int)shown, p);
      p += n;
      while (*p == ' ') p++;
      if (*p) fprintf(out, "%27s", "");
    }
  }
  fprintf(out, "  %-24s %s\n", "--help", "this text");
  fprintf(out, "  %-24s %s\n", "--version", "dtsd's version");
}

/* Stores `val` into the flag's destination; false (with a message) when it
 * is not a value the flag takes. */
static bool set(const flag *f, const char *val, const char *from) {
  char *end;
  long v;
  switch (f->type) {
  case F_STR: *(const char **)f->dst = val; return true;
  case F_BOOL: *(bool *)f->dst = val == NULL || strcmp(val, "0") != 0; return true;
  case F_INT:
  case F_LONG:
    v = strtol(val, &end, 10);
    if (*val == '\0' || *end != '\0' || v < f->min || v > f->max) {
      fprintf(stderr, "dtsd: %s wants %s from %ld to %ld, not '%s'\n", from, f->arg, f->min, f->max, val);
      return false;
    }
    if (f->type == F_INT) *(int *)f->dst = (int)v;
    else *(long *)f->dst = v;
    return true;
  }
  return false;
}

/* SIGINT/SIGTERM within `ms`: true (stop). */
static bool stop_requested(const sigset_t *set, long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  int sig = sigtimedwait(set, NULL, &ts);
  return sig == SIGINT || sig == SIGTERM;
}

/* A settings file (--config): "name = value" lines, names as the flags'
 * without "--", '#' comments; booleans true/false (yes/no, on/off, 1/0).
 * Values are kept for the process's life. */
static bool load_config(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "dtsd: cannot read the settings file %s: %s\n", path, strerror(errno));
    return false;
  }
  char line[4096];
  bool ok = true;
  for (int ln = 1; ok && fgets(line, sizeof(line), f) != NULL; ln++) {
    char *p = line, *eq, *end;
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0') continue;
    char where[600];
    snprintf(where, sizeof(where), "%s:%d", path, ln);
    if (strchr(line, '\n') == NULL && !feof(f)) {
      fprintf(stderr, "dtsd: %s: line longer than %zu bytes\n", where, sizeof(line) - 2);
      ok = false;
      break;
    }
    if ((eq = strchr(p, '=')) == NULL) {
      fprintf(stderr, "dtsd: %s: expected 'name = value'\n", where);
      ok = false;
      break;
    }
    for (end = eq; end > p && (end[-1] == ' ' || end[-1] == '\t'); end--) {
    }
    *end = '\0';
    char *val = eq + 1;
    while (*val == ' ' || *val == '\t') val++;
    size_t vl = strlen(val);
    while (vl > 0 && (val[vl - 1] == '\n' || val[vl - 1] == '\r' || val[vl - 1] == ' ' || val[vl - 1] == '\t')) val[--vl] = '\0';
    const flag *fl = NULL;
    for (size_t i = 0; i < NFLAGS; i++)
      if (strcmp(flags[i].name, p) == 0) fl = &flags[i];
    if (fl == NULL || fl->var == NULL) { /* fds and --config itself are not settings */
      fprintf(stderr, "dtsd: %s: unknown setting '%s' (the names are dtsd --help's flags without --)\n", where, p);
      ok = false;
    } else if (fl->type == F_BOOL) {
      bool t = strcasecmp(val, "true") == 0 || strcasecmp(val, "yes") == 0 || strcasecmp(val, "on") == 0 || strcmp(val, "1") == 0;
      bool n = strcasecmp(val, "false") == 0 || strcasecmp(val, "no") == 0 || strcasecmp(val, "off") == 0 || strcmp(val, "0") == 0;
      if (!t && !n) {
        fprintf(stderr, "dtsd: %s: %s is true or false, not '%s'\n", where, p, val);
        ok = false;
      } else {
        *(bool *)fl->dst = t;
      }
    } else {
      /* a string setting points into cfg_vals, kept (and reachable) for the process's life */
      static char *cfg_vals[NFLAGS];
      size_t k = (size_t)(fl - flags);
      if (fl->type == F_STR) {
        dts_free(cfg_vals[k]);
        cfg_vals[k] = dts_strdup(val);
      }
      ok = set(fl, fl->type == F_STR ? cfg_vals[k] : val, where);
    }
  }
  fclose(f);
  return ok;
}

/* The --config path, before the flags are read: the flag, else DTSD_CONFIG. */
static const char *config_path(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) return argv[i + 1];
    if (strncmp(argv[i], "--config=", 9) == 0) return argv[i] + 9;
  }
  const char *e = getenv("DTSD_CONFIG");
  return e != NULL && *e ? e : NULL;
}

/* Defaults, then the settings file, then the environment, then the flags:
 * -1 to go on, or the exit code. */
static int configure(int argc, char **argv) {
  dtsd_options_init(&o);
  const char *cfg = config_path(argc, argv);
  if (cfg != NULL && !load_config(cfg)) return 2;
  for (size_t i = 0; i < NFLAGS; i++) {
    const char *v = flags[i].var ? getenv(flags[i].var) : NULL;
    if (v == NULL && strcmp(flags[i].name, "task-hubs") == 0) v = getenv("DTS_TASK_HUB_NAMES");
    if (v == NULL && strcmp(flags[i].name, "dynamic-task-hubs") == 0 && getenv("DTS_USE_DYNAMIC_TASK_HUBS") != NULL)
      v = strcasecmp(getenv("DTS_USE_DYNAMIC_TASK_HUBS"), "true") == 0 ? "1" : "0"; /* the emulator's: true|false */
    if (v != NULL && *v != '\0' && !set(&flags[i], v, flags[i].var)) return 2;
  }
  const char *shift = getenv("DTSD_TEST_CLOCK_SHIFT_S");
  if (shift != NULL && *shift != '\0') {
    char *end;
    long long s = strtoll(shift, &end, 10);
    if (*end != '\0' || s < -10LL * 365 * 86400 || s > 10LL * 365 * 86400) {
      fprintf(stderr, "dtsd: DTSD_TEST_CLOCK_SHIFT_S must be a number of seconds within ten years\n");
      return 2;
    }
    dts_wall_shift((int64_t)s * 1000000000LL);
    DTS_WARN("main", "the wall clock is shifted by %lld s (DTSD_TEST_CLOCK_SHIFT_S): for tests only", s);
  }
  struct option opts[NFLAGS + 3];
  for (size_t i = 0; i < NFLAGS; i++)
    opts[i] = (struct option){flags[i].name, flags[i].type == F_BOOL ? no_argument : required_argument, 0, (int)i + 256};
  opts[NFLAGS] = (struct option){"help", no_argument, 0, 'h'};
  opts[NFLAGS + 1] = (struct option){"version", no_argument, 0, 'V'};
  opts[NFLAGS + 2] = (struct option){0, 0, 0, 0};
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'h') {
      usage(stdout);
      return 0;
    }
    if (c == 'V') {
      printf("dtsd %s\n", DTSD_VERSION);
      return 0;
    }
    if (c < 256 || c >= 256 + (int)NFLAGS) {
      usage(stderr);
      return 2;
    }
    const flag *f = &flags[c - 256];
    char from[64];
    snprintf(from, sizeof(from), "--%s", f->name);
    if (!set(f, optarg, from)) return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "dtsd: unexpected argument '%s' (see --help)\n", argv[optind]);
    return 2;
  }
  if (dur) {
    if (strcmp(dur, "os") == 0) o.fsync = false;
    else if (strcmp(dur, "fsync") == 0) o.fsync = true;
    else { fprintf(stderr, "dtsd: --durability wants os or fsync, not '%s'\n", dur); return 2; }
  }
  if (auth_mode) {
    if (strcmp(auth_mode, "on") == 0) o.auth = true;
    else if (strcmp(auth_mode, "none") == 0) o.auth = false;
    else { fprintf(stderr, "dtsd: --auth wants none or on, not '%s'\n", auth_mode); return 2; }
  }
  dts_log_level L;
  dts_log_format F;
  if (lvl && !dts_log_parse_level(lvl, &L)) { fprintf(stderr, "dtsd: unknown log level '%s'\n", lvl); return 2; }
  if (fmt && !dts_log_parse_format(fmt, &F)) { fprintf(stderr, "dtsd: unknown log format '%s'\n", fmt); return 2; }
  if (lvl) dts_log_set_level(L);
  if (fmt) dts_log_set_format(F);

  return -1;
}

/* Until SIGINT or SIGTERM: SIGHUP reloads (tokens, audit log,
 * certificates), and once a second the housekeeping runs. */
static int serve_until_stopped(dtsd *d, const sigset_t *set) {
  for (;;) {
    struct timespec ts = {1, 0};
    int sig = sigtimedwait(set, NULL, &ts);
    if (sig == SIGHUP) {
      DTS_INFO("main", "SIGHUP: reloading");
      dtsd_reload(d);
    } else if (sig == SIGINT || sig == SIGTERM) {
      return sig;
    } else {
      dtsd_tick(d);
    }
  }
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "token") == 0) return dtsd_token_main(argc - 1, argv + 1);
  int rc = configure(argc, argv);
  if (rc >= 0) return rc;
  sigset_t set_;
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  sigaddset(&set_, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set_, NULL); /* threads inherit: only sigtimedwait sees them */

  dtsd *d;
  char err[1024];
  /* a disk too full for the store to open: wait for space, never a crash
   * loop (a supervisor restarting us would find the same disk) */
  for (int tries = 0; (rc = dtsd_start(&o, &d, err, sizeof(err))) == -2; tries++) {
    if (tries % 30 == 0) DTS_ERROR("main", "cannot start yet: %s; waiting for free space", err);
    if (stop_requested(&set_, 1000)) {
      DTS_INFO("main", "signal: giving up waiting for space");
      return 0;
    }
  }
  if (rc != 0) {
    DTS_ERROR("main", "cannot start: %s", err);
    return 1;
  }
  DTS_INFO("main", "dtsd serving gRPC on port %d, HTTP API on %d, health on %d (task hubs: %s; data: %s; durability: %s)",
           dtsd_port(d), dtsd_http_port(d), dtsd_health_port(d), o.task_hubs, dtsd_data_dir(d), o.fsync ? "fsync" : "os");
  if (port_file != NULL) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%d\n", dtsd_port(d)) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0)
      DTS_ERROR("main", "cannot write the port file %s", port_file);
  }
  if (ready_fd >= 0) {
    if (dprintf((int)ready_fd, "%d\n", dtsd_port(d)) < 0) DTS_ERROR("main", "cannot write to --ready-fd %ld", ready_fd);
    close((int)ready_fd);
  }
  if (ports_fd >= 0) {
    if (dprintf((int)ports_fd, "%d %d %d\n", dtsd_port(d), dtsd_http_port(d), dtsd_health_port(d)) < 0)
      DTS_ERROR("main", "cannot write to --ports-fd %ld", ports_fd);
    close((int)ports_fd);
  }
  int sig = serve_until_stopped(d, &set_);
  DTS_INFO("main", "signal %d: shutting down", sig);
  dtsd_stop(d);
  DTS_INFO("main", "clean exit");
  return 0;
}
