/* metrics.c -- GET /metrics in Prometheus text format (version 0.0.4):
 * per hub the engine's counters (dts_hub_get_stats), the store's, and the
 * process's memory and CPU.  Reads counters only: a scrape costs no store
 * scan. */
#include "actors/hub.h"
#include "runtime/alloc.h"
#include "runtime/timer.h"
#include "server/api.h"
#include "server/http.h"

#include <pthread.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct out {
  char *p;
  size_t n, cap;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < o->cap - o->n) {
      o->n += (size_t)k;
      return;
    }
    o->cap = o->cap * 2 + (size_t)(k > 0 ? k : 0);
    o->p = dts_realloc(o->p, o->cap);
  }
}

static void head(out *o, const char *name, const char *type, const char *help) {
  put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

typedef struct hub_fig {
  const char *name;
  dts_hub_stats st;
} hub_fig;

#define PER_HUB(o, figs, n, metric, type, help, field)                                                                 \
  do {                                                                                                                 \
    head(o, metric, type, help);                                                                                       \
    for (int i_ = 0; i_ < (n); i_++)                                                                                   \
      put(o, "%s{hub=\"%s\"} %ld\n", metric, (figs)[i_].name, (figs)[i_].st.field);                                    \
  } while (0)

static void work_metrics(out *o, dts_hub **hubs, int n);

/* Instances by status: counted from the status index through the engine
 * (dtsd.admin CountInstances, a scan budget a call), at most once a minute
 * per hub; scrapes in between answer the last count and its age. */
#define RECOUNT_NS (60ULL * 1000000000ULL)
typedef struct hub_count {
  char name[128];
  int64_t by[8];
  uint64_t at; /* dts_now_ns of the count (0: none) */
} hub_count;
static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static hub_count counts[DTS_MAX_HUBS];

static bool count_hub(const http_req *r, dts_hub *h, int64_t by[8]) {
  api a;
  api_detached(&a, h, dts_hub_name(h), r->cfg->call_timeout_ms);
  char tok[200] = "";
  memset(by, 0, 8 * sizeof(int64_t));
  bool ok = true;
  for (int calls = 0; ok && calls < 100000; calls++) {
    Dtsd__Admin__CountInstancesRequest req = DTSD__ADMIN__COUNT_INSTANCES_REQUEST__INIT;
    Google__Protobuf__StringValue tv;
    if (tok[0]) req.continuation_token = dts_sv(&tv, tok);
    dts_call *c = api_call(&a, DTS_M_ADMIN_COUNT_INSTANCES, &req.base);
    Dtsd__Admin__CountInstancesResponse *resp =
        c ? (Dtsd__Admin__CountInstancesResponse *)api_unpack(&a, c, &dtsd__admin__count_instances_response__descriptor)
          : NULL;
    if (c) dts_local_release(c);
    if (resp == NULL) {
      ok = false;
      break;
    }
    for (size_t i = 0; i < resp->n_by_status && i < 8; i++) by[i] += resp->by_status[i];
    const char *next = dts_sv_get(resp->continuation_token);
    bool more = next && next[0] && strlen(next) < sizeof(tok);
    if (more) snprintf(tok, sizeof(tok), "%s", next);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (!more) break;
  }
  api_detached_done(&a);
  return ok;
}

static void status_metrics(out *o, const http_req *r, dts_hub **hubs, int n) {
  static const char *const NAMES[8] = {"running", "completed", "continued_as_new", "failed",
                                       "canceled", "terminated", "pending", "suspended"};
  pthread_mutex_lock(&count_mu); /* one count at a time; scrapes wait for it */
  uint64_t now = dts_now_ns();
  hub_count got[DTS_MAX_HUBS];
  for (int i = 0; i < n; i++) {
    hub_count *hc = NULL;
    for (int k = 0; k < DTS_MAX_HUBS && hc == NULL; k++)
      if (strcmp(counts[k].name, dts_hub_name(hubs[i])) == 0) hc = &counts[k];
    for (int k = 0; k < DTS_MAX_HUBS && hc == NULL; k++)
      if (counts[k].name[0] == '\0' || counts[k].at + 10 * RECOUNT_NS < now) { /* free, or of a hub long gone */
        hc = &counts[k];
        snprintf(hc->name, sizeof(hc->name), "%s", dts_hub_name(hubs[i]));
        hc->at = 0;
      }
    if (hc != NULL && (hc->at == 0 || now - hc->at > RECOUNT_NS) && count_hub(r, hubs[i], hc->by)) hc->at = dts_now_ns();
    got[i] = hc != NULL ? *hc : (hub_count){0};
  }
  pthread_mutex_unlock(&count_mu);
  head(o, "dtsd_instances", "gauge", "Orchestration instances by status (counted at most once a minute; see the age).");
  for (int i = 0; i < n; i++)
    for (int s = 0; s < 8 && got[i].at != 0; s++)
      if (s != 2) put(o, "dtsd_instances{hub=\"%s\",status=\"%s\"} %lld\n", dts_hub_name(hubs[i]), NAMES[s], (long long)got[i].by[s]);
  head(o, "dtsd_instances_count_age_seconds", "gauge", "How old dtsd_instances is.");
  for (int i = 0; i < n; i++)
    if (got[i].at != 0)
      put(o, "dtsd_instances_count_age_seconds{hub=\"%s\"} %.3f\n", dts_hub_name(hubs[i]), (double)(dts_now_ns() - got[i].at) / 1e9);
}

static void hub_metrics(out *o, const http_req *r, const http_hubs *hs) {
  dts_hub *hubs[DTS_MAX_HUBS];
  int n = hs ? hs->list(hs->ctx, hubs, DTS_MAX_HUBS) : 0;
  hub_fig figs[DTS_MAX_HUBS];
  for (int i = 0; i < n; i++) {
    figs[i].name = dts_hub_name(hubs[i]); /* hub names are letters, digits, '-' and '_': no escaping */
    dts_hub_get_stats(hubs[i], &figs[i].st);
  }
  PER_HUB(o, figs, n, "dtsd_instances_in_memory", "gauge", "Orchestration instances in memory.", instances);
  PER_HUB(o, figs, n, "dtsd_entities_in_memory", "gauge", "Entities in memory.", entities);
  PER_HUB(o, figs, n, "dtsd_actors", "gauge", "Actors in the hub's directory.", actors);
  head(o, "dtsd_ready_work_items", "gauge", "Work items waiting for a worker.");
  for (int i = 0; i < n; i++) {
    put(o, "dtsd_ready_work_items{hub=\"%s\",kind=\"orchestration\"} %ld\n", figs[i].name, figs[i].st.ready_orch);
    put(o, "dtsd_ready_work_items{hub=\"%s\",kind=\"activity\"} %ld\n", figs[i].name, figs[i].st.ready_act);
  }
  PER_HUB(o, figs, n, "dtsd_worker_streams", "gauge", "Connected GetWorkItems streams.", streams);
  PER_HUB(o, figs, n, "dtsd_work_items_dispatched_total", "counter", "Work items sent to workers.", dispatched);
  PER_HUB(o, figs, n, "dtsd_completions_total", "counter", "Work item completions accepted.", completions);
  PER_HUB(o, figs, n, "dtsd_stale_completions_total", "counter", "Completions refused as stale.", stale_completions);
  PER_HUB(o, figs, n, "dtsd_passivated_total", "counter", "Idle actors that left memory.", passivated);
  PER_HUB(o, figs, n, "dtsd_unreadable_records_total", "counter", "Stored records that could not be read.", unreadable);
  PER_HUB(o, figs, n, "dtsd_actor_resets_total", "counter", "Actors that read themselves back after a failed write.",
          resets);
  work_metrics(o, hubs, n);
  status_metrics(o, r, hubs, n);
}

/* One histogram series: cumulative buckets, sum and count. `labels` is
 * "hub=\"x\"" or the like (may be empty). */
static void hist_series(out *o, const char *name, const char *labels, const dts_hist_snap *h) {
  uint64_t cum = 0;
  const char *sep = labels[0] ? "," : "";
  for (int i = 0; i < DTS_HIST_BOUNDS; i++) {
    cum += h->bucket[i];
    put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, dts_hist_bound_s(i), (unsigned long long)cum);
  }
  put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)h->count);
  const char *lb = labels[0] ? "{" : "", *rb = labels[0] ? "}" : "";
  put(o, "%s_sum%s%s%s %.9f\n", name, lb, labels, rb, (double)h->sum_ns / 1e9);
  put(o, "%s_count%s%s%s %llu\n", name, lb, labels, rb, (unsigned long long)h->count);
}

static const char *const KINDS[3] = {"orchestrator", "activity", "entity"};

static void work_metrics(out *o, dts_hub **hubs, int n) {
  dts_hub_figures *f = dts_calloc(n ? (size_t)n : 1, sizeof(*f));
  for (int i = 0; i < n; i++) dts_hub_get_figures(hubs[i], &f[i]);
  head(o, "dtsd_work_items_total", "counter",
       "Work items by kind and outcome: sent to a worker, completed, returned to their queue (abandoned or stream gone).");
  for (int i = 0; i < n; i++)
    for (int k = 0; k < 3; k++) {
      const char *hn = dts_hub_name(hubs[i]);
      put(o, "dtsd_work_items_total{hub=\"%s\",kind=\"%s\",outcome=\"dispatched\"} %ld\n", hn, KINDS[k], f[i].sent[k]);
      put(o, "dtsd_work_items_total{hub=\"%s\",kind=\"%s\",outcome=\"completed\"} %ld\n", hn, KINDS[k], f[i].done[k]);
      put(o, "dtsd_work_items_total{hub=\"%s\",kind=\"%s\",outcome=\"returned\"} %ld\n", hn, KINDS[k], f[i].back[k]);
    }
  head(o, "dtsd_orchestrations_started_total", "counter", "Orchestrations started (new, or restarted).");
  for (int i = 0; i < n; i++) put(o, "dtsd_orchestrations_started_total{hub=\"%s\"} %ld\n", dts_hub_name(hubs[i]), f[i].started);
  head(o, "dtsd_orchestrations_finished_total", "counter", "Orchestrations that finished, by status.");
  static const struct {
    int st;
    const char *name;
  } fin[] = {{1, "completed"}, {3, "failed"}, {4, "canceled"}, {5, "terminated"}};
  for (int i = 0; i < n; i++)
    for (size_t k = 0; k < sizeof(fin) / sizeof(fin[0]); k++)
      put(o, "dtsd_orchestrations_finished_total{hub=\"%s\",status=\"%s\"} %ld\n", dts_hub_name(hubs[i]), fin[k].name,
          f[i].finished[fin[k].st]);
  head(o, "dtsd_entity_operations_total", "counter", "Entity operations completed.");
  for (int i = 0; i < n; i++) put(o, "dtsd_entity_operations_total{hub=\"%s\"} %ld\n", dts_hub_name(hubs[i]), f[i].entity_ops);
  char labels[200];
  head(o, "dtsd_dispatch_latency_seconds", "histogram", "From a work item being ready to its sending to a worker.");
  for (int i = 0; i < n; i++) {
    snprintf(labels, sizeof(labels), "hub=\"%s\"", dts_hub_name(hubs[i]));
    hist_series(o, "dtsd_dispatch_latency_seconds", labels, &f[i].dispatch);
  }
  head(o, "dtsd_work_item_seconds", "histogram",
       "From a work item's sending to its completion: the worker's turn, activity or entity batch and the network.");
  for (int i = 0; i < n; i++)
    for (int k = 0; k < 3; k++) {
      snprintf(labels, sizeof(labels), "hub=\"%s\",kind=\"%s\"", dts_hub_name(hubs[i]), KINDS[k]);
      hist_series(o, "dtsd_work_item_seconds", labels, &f[i].work[k]);
    }
  dts_free(f);
}

static unsigned long long dir_bytes(const char *dir) {
  DIR *d = dir ? opendir(dir) : NULL;
  if (d == NULL) return 0;
  unsigned long long sum = 0;
  struct dirent *e;
  char path[4096];
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) sum += (unsigned long long)st.st_size;
  }
  closedir(d);
  return sum;
}

static void store_metrics(out *o, const dts_http_config *cfg) {
  if (cfg->store == NULL) return;
  dts_store_stats st;
  dts_store_get_stats(cfg->store, &st);
  head(o, "dtsd_store_writes_total", "counter", "LevelDB writes (group commits).");
  put(o, "dtsd_store_writes_total %llu\n", (unsigned long long)st.writes);
  head(o, "dtsd_store_batches_total", "counter", "Batches submitted to the store.");
  put(o, "dtsd_store_batches_total %llu\n", (unsigned long long)st.batches);
  head(o, "dtsd_store_write_failures_total", "counter", "Store writes that failed.");
  put(o, "dtsd_store_write_failures_total %llu\n", (unsigned long long)st.failures);
  head(o, "dtsd_store_writable", "gauge", "1 while the store takes writes.");
  put(o, "dtsd_store_writable %d\n", st.writable ? 1 : 0);
  head(o, "dtsd_store_free_bytes", "gauge", "Free space in the data directory.");
  put(o, "dtsd_store_free_bytes %llu\n", (unsigned long long)st.free_bytes);
  dts_hist_snap ch;
  dts_store_commit_hist(cfg->store, &ch);
  head(o, "dtsd_store_commit_seconds", "histogram",
       "LevelDB writes (each a group of batches; mean batches per write = batches_total / writes_total).");
  hist_series(o, "dtsd_store_commit_seconds", "", &ch);
  head(o, "dtsd_store_size_bytes", "gauge", "Bytes of the data directory's files.");
  put(o, "dtsd_store_size_bytes %llu\n", dir_bytes(cfg->data_dir));
}

static void process_metrics(out *o) {
  long page = sysconf(_SC_PAGESIZE), tck = sysconf(_SC_CLK_TCK);
  unsigned long long vsz = 0, rss = 0, ut = 0, st = 0, start = 0;
  FILE *f = fopen("/proc/self/stat", "r");
  if (f != NULL) {
    char buf[2048];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    const char *p = strrchr(buf, ')'); /* after the command name, which may hold spaces */
    /* fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
     * priority nice threads itrealvalue starttime vsize rss */
    if (p != NULL)
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %llu", &ut,
             &st, &start, &vsz, &rss);
  }
  head(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  put(o, "process_resident_memory_bytes %llu\n", rss * (unsigned long long)page);
  head(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  put(o, "process_virtual_memory_bytes %llu\n", vsz);
  head(o, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.");
  put(o, "process_cpu_seconds_total %.2f\n", (double)(ut + st) / (double)(tck > 0 ? tck : 100));
}

void metrics_render(const http_req *r, http_resp *resp) {
  if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
    http_error(resp, 405, "metrics answer GET");
    return;
  }
  dts_auth_decision d; /* every hub's figures: a grant on every hub ('*=reader') */
  if (!http_authorize(r, resp, NULL, AUTH_READ, &d)) return;
  out o = {dts_malloc(8192), 0, 8192};
  head(&o, "dtsd_ready", "gauge", "1 once start-up recovery is complete and dtsd serves.");
  put(&o, "dtsd_ready %d\n", r->hubs != NULL);
  hub_metrics(&o, r, r->hubs);
  store_metrics(&o, r->cfg);
  process_metrics(&o);
  long unauth, denied;
  dts_auth_counts(r->cfg->auth, &unauth, &denied);
  head(&o, "dtsd_auth_failures_total", "counter", "Callers refused for no, a bad or an expired token (gRPC and HTTP).");
  put(&o, "dtsd_auth_failures_total %ld\n", unauth);
  head(&o, "dtsd_auth_denials_total", "counter", "Callers refused by the allow list, protected mode or a missing role.");
  put(&o, "dtsd_auth_denials_total %ld\n", denied);
  dts_free(resp->body);
  resp->status = 200;
  resp->ctype = "text/plain; version=0.0.4; charset=utf-8";
  resp->body = o.p;
  resp->len = o.n;
}
