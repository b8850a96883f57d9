/* main.c -- the dtsd executable: flags (each with a DTSD_* environment
 * variable; flags win), start libdtsd, wait for SIGINT/SIGTERM, stop. */
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "server/dtsd.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out) {
  fprintf(out,
          "usage: dtsd [options]\n"
          "  --address HOST:PORT  gRPC listen address (default 0.0.0.0:8080; port 0 = any)  [DTSD_ADDRESS]\n"
          "  --port-file PATH     write the bound port to PATH once serving                [DTSD_PORT_FILE]\n"
          "  --ready-fd N         write the bound port to file descriptor N once serving,\n"
          "                       then close it (a pipe lets a script wait without polling)\n"
          "  --data-dir DIR       LevelDB data directory (default ./dtsd-data)              [DTSD_DATA_DIR]\n"
          "  --ephemeral          use a temporary data directory, removed at exit           [DTSD_EPHEMERAL=1]\n"
          "  --task-hubs A,B      task hubs served (default: default)        [DTSD_TASK_HUBS, DTS_TASK_HUB_NAMES]\n"
          "  --workers N          scheduler threads (default: CPU count)                    [DTSD_WORKERS]\n"
          "  --durability MODE    os (default: survives a process crash) | fsync (power loss) [DTSD_DURABILITY]\n"
          "  --max-message BYTES  largest request accepted (default 67108864 = 64 MiB)      [DTSD_MAX_MESSAGE]\n"
          "  --max-payload BYTES  largest payload string (default 16777216 = 16 MiB)        [DTSD_MAX_PAYLOAD]\n"
          "  --max-nesting N      deepest message nesting accepted (default 64)            [DTSD_MAX_NESTING]\n"
          "  --health-ping MS     HealthPing on idle worker streams every MS (default 30000) [DTSD_HEALTH_PING]\n"
          "  --retention SPEC     auto-purge finished instances, e.g. default=30d,completed=1h,failed=90d\n"
          "                       (statuses: default completed failed canceled terminated; units ms s m h d;\n"
          "                       keep = never; 0 = as soon as possible); persisted per hub  [DTSD_RETENTION]\n"
          "  --purge-interval MS  how often the purger runs (default 1000)                  [DTSD_PURGE_INTERVAL]\n"
          "  --entity-batch N     most operations in one entity work item (default 100)     [DTSD_ENTITY_BATCH]\n"
          "  --passivate-after MS unfinished instances idle this long leave memory; read back\n"
          "                       on their next event (default 30000; 0 = never)            [DTSD_PASSIVATE_AFTER]\n"
          "  --commit-thread      with os durability, commit on the storage thread as fsync does\n"
          "                       (default: each hub writes its own batches)               [DTSD_COMMIT_THREAD=1]\n"
          "  --log-level L        debug|info|warn|error (default info)                     [DTSD_LOG_LEVEL]\n"
          "  --log-format F       text|json (default text)                                 [DTSD_LOG_FORMAT]\n"
          "  --help               this text\n");
}

static bool parse_long(const char *s, long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 0) return false;
  *out = v;
  return true;
}

static const char *env(const char *a, const char *b) {
  const char *v = getenv(a);
  if ((v == NULL || !*v) && b) v = getenv(b);
  return v && *v ? v : NULL;
}

int main(int argc, char **argv) {
  dtsd_options o;
  dtsd_options_init(&o);
  const char *lvl = env("DTSD_LOG_LEVEL", NULL), *fmt = env("DTSD_LOG_FORMAT", NULL);
  const char *port_file = env("DTSD_PORT_FILE", NULL);
  long ready_fd = -1;
  const char *workers = env("DTSD_WORKERS", NULL), *dur = env("DTSD_DURABILITY", NULL);
  const char *maxmsg = env("DTSD_MAX_MESSAGE", NULL), *maxpl = env("DTSD_MAX_PAYLOAD", NULL);
  const char *maxnest = env("DTSD_MAX_NESTING", NULL), *ping = env("DTSD_HEALTH_PING", NULL);
  const char *purge_iv = env("DTSD_PURGE_INTERVAL", NULL), *ebatch = env("DTSD_ENTITY_BATCH", NULL);
  const char *passivate = env("DTSD_PASSIVATE_AFTER", NULL);
  if (env("DTSD_RETENTION", NULL)) o.retention = env("DTSD_RETENTION", NULL);
  if (env("DTSD_ADDRESS", NULL)) o.address = env("DTSD_ADDRESS", NULL);
  if (env("DTSD_DATA_DIR", NULL)) o.data_dir = env("DTSD_DATA_DIR", NULL);
  if (env("DTSD_TASK_HUBS", "DTS_TASK_HUB_NAMES")) o.task_hubs = env("DTSD_TASK_HUBS", "DTS_TASK_HUB_NAMES");
  if (env("DTSD_EPHEMERAL", NULL)) o.ephemeral = strcmp(env("DTSD_EPHEMERAL", NULL), "0") != 0;
  if (env("DTSD_COMMIT_THREAD", NULL)) o.commit_thread = strcmp(env("DTSD_COMMIT_THREAD", NULL), "0") != 0;

  static const struct option opts[] = {{"address", required_argument, 0, 'a'},
                                       {"port-file", required_argument, 0, 'P'},
                                       {"ready-fd", required_argument, 0, 'r'},
                                       {"data-dir", required_argument, 0, 'd'},
                                       {"ephemeral", no_argument, 0, 'e'},
                                       {"task-hubs", required_argument, 0, 't'},
                                       {"workers", required_argument, 0, 'w'},
                                       {"durability", required_argument, 0, 'D'},
                                       {"max-message", required_argument, 0, 'm'},
                                       {"max-payload", required_argument, 0, 'p'},
                                       {"max-nesting", required_argument, 0, 'n'},
                                       {"health-ping", required_argument, 0, 'H'},
                                       {"retention", required_argument, 0, 'R'},
                                       {"purge-interval", required_argument, 0, 'I'},
                                       {"entity-batch", required_argument, 0, 'B'},
                                       {"commit-thread", no_argument, 0, 'C'},
                                       {"passivate-after", required_argument, 0, 'A'},
                                       {"log-level", required_argument, 0, 'l'},
                                       {"log-format", required_argument, 0, 'f'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'a': o.address = optarg; break;
    case 'P': port_file = optarg; break;
    case 'r':
      if (!parse_long(optarg, &ready_fd) || ready_fd < 0) {
        fprintf(stderr, "dtsd: --ready-fd wants a file descriptor number, not '%s'\n", optarg);
        return 2;
      }
      break;
    case 'd': o.data_dir = optarg; break;
    case 'e': o.ephemeral = true; break;
    case 't': o.task_hubs = optarg; break;
    case 'w': workers = optarg; break;
    case 'D': dur = optarg; break;
    case 'm': maxmsg = optarg; break;
    case 'p': maxpl = optarg; break;
    case 'n': maxnest = optarg; break;
    case 'H': ping = optarg; break;
    case 'R': o.retention = optarg; break;
    case 'I': purge_iv = optarg; break;
    case 'C': o.commit_thread = true; break;
    case 'A': passivate = optarg; break;
    case 'B': ebatch = optarg; break;
    case 'l': lvl = optarg; break;
    case 'f': fmt = optarg; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "dtsd: unexpected argument '%s' (see --help)\n", argv[optind]);
    return 2;
  }
  long v;
  if (workers) {
    if (!parse_long(workers, &v) || v > 1024) { fprintf(stderr, "dtsd: --workers wants 0..1024, not '%s'\n", workers); return 2; }
    o.workers = (int)v;
  }
  if (maxmsg) {
    if (!parse_long(maxmsg, &v) || v < 1024) { fprintf(stderr, "dtsd: --max-message wants bytes >= 1024, not '%s'\n", maxmsg); return 2; }
    o.max_message = v;
  }
  if (maxpl) {
    if (!parse_long(maxpl, &v) || v < 1) { fprintf(stderr, "dtsd: --max-payload wants bytes >= 1, not '%s'\n", maxpl); return 2; }
    o.max_payload = v;
  }
  if (maxnest) {
    if (!parse_long(maxnest, &v) || v < 8 || v > 10000) { fprintf(stderr, "dtsd: --max-nesting wants 8..10000, not '%s'\n", maxnest); return 2; }
    o.max_nesting = (int)v;
  }
  if (ping) {
    if (!parse_long(ping, &v) || v < 100 || v > 3600000) { fprintf(stderr, "dtsd: --health-ping wants 100..3600000 ms, not '%s'\n", ping); return 2; }
    o.health_ping_ms = (int)v;
  }
  if (purge_iv) {
    if (!parse_long(purge_iv, &v) || v < 10 || v > 3600000) { fprintf(stderr, "dtsd: --purge-interval wants 10..3600000 ms, not '%s'\n", purge_iv); return 2; }
    o.purge_interval_ms = (int)v;
  }
  if (ebatch) {
    if (!parse_long(ebatch, &v) || v < 1 || v > 10000) { fprintf(stderr, "dtsd: --entity-batch wants 1..10000, not '%s'\n", ebatch); return 2; }
    o.entity_batch = (int)v;
  }
  if (passivate) {
    if (!parse_long(passivate, &v) || v < 0) { fprintf(stderr, "dtsd: --passivate-after wants milliseconds >= 0, not '%s'\n", passivate); return 2; }
    o.passivate_ms = v;
  }
  if (dur) {
    if (strcmp(dur, "os") == 0) o.fsync = false;
    else if (strcmp(dur, "fsync") == 0) o.fsync = true;
    else { fprintf(stderr, "dtsd: --durability wants os or fsync, not '%s'\n", dur); return 2; }
  }
  dts_log_level L;
  dts_log_format F;
  if (lvl && !dts_log_parse_level(lvl, &L)) { fprintf(stderr, "dtsd: unknown log level '%s'\n", lvl); return 2; }
  if (fmt && !dts_log_parse_format(fmt, &F)) { fprintf(stderr, "dtsd: unknown log format '%s'\n", fmt); return 2; }
  if (lvl) dts_log_set_level(L);
  if (fmt) dts_log_set_format(F);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* threads inherit: only sigwait sees them */

  dtsd *d;
  char err[1024];
  if (dtsd_start(&o, &d, err, sizeof(err)) != 0) {
    DTS_ERROR("main", "cannot start: %s", err);
    return 1;
  }
  DTS_INFO("main", "dtsd serving gRPC on port %d (task hubs: %s; data: %s; durability: %s)", dtsd_port(d),
           o.task_hubs, dtsd_data_dir(d), o.fsync ? "fsync" : "os");
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
  int sig = 0;
  sigwait(&set, &sig);
  DTS_INFO("main", "signal %d: shutting down", sig);
  dtsd_stop(d);
  DTS_INFO("main", "clean exit");
  return 0;
}
