/* api_live.c -- GET /api/v1/taskhubs/live: a hub's live updates as
 * server-sent events, for views that would otherwise poll.
 *
 *   event: changes   data: {"ids":["order-7","@counter@a"],"lost":false}
 *   event: stats     data: {"t":..., "instances":..., "completions":..., ...}
 *
 * Changes come from the hub's change feed (dts_hub_watch: ids whose records
 * committed turns changed) and are coalesced here: at most one "changes"
 * event every 500 ms, each id once, at most 200 ids ("lost": true instead
 * of more, or when the feed dropped some: look at everything again).
 * "stats" (the hub's counters, no store scan) come once a second, with
 * the median and 99th percentile of the dispatch and work-item latencies
 * of that second (-1: nothing happened), from the hubs' histograms.  A
 * comment line every 15 s keeps proxies from closing an idle stream and
 * finds out when the client went away.  EventSource cannot send headers:
 * the hub may be named by ?taskhub= instead of x-taskhub.
 */
#include "runtime/alloc.h"
#include "runtime/timer.h"
#include "server/http.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define TICK_MS 100
#define COALESCE_MS 500
#define STATS_MS 1000
#define KEEPALIVE_MS 15000
#define MAX_IDS 200

typedef struct live {
  dts_hub *h;
  const atomic_bool *stopping;
  uint64_t seq;
  char *ids[MAX_IDS];
  size_t nids;
  bool lost;
  uint64_t last_changes, last_stats, last_out;
  char *out; /* written, not yet handed to the connection */
  size_t olen, ocap, opos;
  dts_hub_figures prev; /* the figures at the last stats event: latencies are of what happened since */
} live;

static uint64_t now_ms(void) { return dts_now_ns() / 1000000ULL; }

static void out_add(live *l, const char *s, size_t n) {
  if (l->olen + n + 1 > l->ocap) {
    l->ocap = (l->olen + n + 1) * 2;
    l->out = dts_realloc(l->out, l->ocap);
  }
  memcpy(l->out + l->olen, s, n);
  l->olen += n;
}

static void out_str(live *l, const char *s) { out_add(l, s, strlen(s)); }

/* Ids are printable ASCII (storage/keys.c's rules): only '"' and '\\'
 * need escaping in JSON. */
static void out_id(live *l, const char *id) {
  out_str(l, "\"");
  for (const char *p = id; *p; p++) {
    if (*p == '"' || *p == '\\') out_str(l, "\\");
    out_add(l, p, 1);
  }
  out_str(l, "\"");
}

static void take_changes(live *l) {
  char *got[256];
  if (l->lost) { /* the next event says "look at everything" anyway: skip the ids */
    bool lost;
    dts_hub_changes(l->h, &l->seq, NULL, 0, &lost);
    return;
  }
  for (;;) {
    bool lost;
    size_t n = dts_hub_changes(l->h, &l->seq, got, 256, &lost);
    l->lost |= lost;
    for (size_t i = 0; i < n; i++) {
      bool dup = l->lost;
      for (size_t j = 0; j < l->nids && !dup; j++) dup = strcmp(l->ids[j], got[i]) == 0;
      if (!dup && l->nids == MAX_IDS) l->lost = dup = true;
      if (dup) dts_free(got[i]);
      else l->ids[l->nids++] = got[i];
    }
    if (n < 256) return;
  }
}

static void emit_changes(live *l) {
  out_str(l, "event: changes\ndata: {\"ids\":[");
  for (size_t i = 0; i < l->nids; i++) {
    if (i) out_str(l, ",");
    out_id(l, l->ids[i]);
    dts_free(l->ids[i]);
  }
  out_str(l, l->lost ? "],\"lost\":true}\n\n" : "],\"lost\":false}\n\n");
  l->nids = 0;
  l->lost = false;
}

/* The q-quantile (0..1) of the samples a histogram gained since `before`,
 * as the upper bound of its bucket, in ms; -1 when there were none. */
static double quantile_ms(const dts_hist_snap *now, const dts_hist_snap *before, double q) {
  uint64_t total = now->count - before->count, cum = 0;
  if (total == 0) return -1;
  for (int i = 0; i < DTS_HIST_BOUNDS; i++) {
    cum += now->bucket[i] - before->bucket[i];
    if ((double)cum >= q * (double)total) return dts_hist_bound_s(i) * 1000.0;
  }
  return dts_hist_bound_s(DTS_HIST_BOUNDS - 1) * 2000.0; /* past the last bound */
}

static void emit_stats(live *l) {
  dts_hub_stats st;
  dts_hub_get_stats(l->h, &st);
  dts_hub_figures f;
  dts_hub_get_figures(l->h, &f);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char buf[1024];
  int n = snprintf(buf, sizeof(buf),
                   "event: stats\ndata: {\"t\":%lld,\"instances\":%ld,\"entities\":%ld,\"actors\":%ld,\"streams\":%ld,"
                   "\"dispatched\":%ld,\"completions\":%ld,\"readyOrchestrations\":%ld,\"readyActivities\":%ld,"
                   "\"dispatchP50Ms\":%g,\"dispatchP99Ms\":%g,\"orchestratorP50Ms\":%g,\"activityP50Ms\":%g,"
                   "\"activityP99Ms\":%g}\n\n",
                   (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, st.instances, st.entities, st.actors, st.streams,
                   st.dispatched, st.completions, st.ready_orch, st.ready_act,
                   quantile_ms(&f.dispatch, &l->prev.dispatch, 0.5), quantile_ms(&f.dispatch, &l->prev.dispatch, 0.99),
                   quantile_ms(&f.work[0], &l->prev.work[0], 0.5), quantile_ms(&f.work[1], &l->prev.work[1], 0.5),
                   quantile_ms(&f.work[1], &l->prev.work[1], 0.99));
  l->prev = f;
  out_add(l, buf, (size_t)n);
}

static long live_next(void *ctx, char *buf, size_t max) {
  live *l = ctx;
  while (l->opos == l->olen) {
    l->opos = l->olen = 0;
    if (atomic_load(l->stopping)) return -1;
    uint64_t t = now_ms();
    take_changes(l);
    if ((l->nids > 0 || l->lost) && t - l->last_changes >= COALESCE_MS) {
      emit_changes(l);
      l->last_changes = t;
    }
    if (t - l->last_stats >= STATS_MS) {
      emit_stats(l);
      l->last_stats = t;
    }
    if (l->olen == 0 && t - l->last_out >= KEEPALIVE_MS) out_str(l, ": keep-alive\n\n");
    if (l->olen == 0) {
      struct timespec ts = {0, TICK_MS * 1000000L};
      nanosleep(&ts, NULL); /* the feed has no wake-up: a tick coalesces anyway */
    } else {
      l->last_out = t;
    }
  }
  return http_stream_copy(buf, max, l->out, &l->opos, l->olen);
}

static void live_free(void *ctx) {
  live *l = ctx;
  dts_hub_watch(l->h, false);
  for (size_t i = 0; i < l->nids; i++) dts_free(l->ids[i]);
  dts_free(l->out);
  dts_free(l);
}

void api_live(const http_req *r, http_resp *out, dts_hub *h) {
  if (strcmp(r->method, "GET") != 0) {
    http_error(out, 405, "live updates answer GET (an EventSource)");
    return;
  }
  live *l = dts_calloc(1, sizeof(*l));
  l->h = h;
  l->stopping = r->stopping;
  dts_hub_watch(h, true);
  l->seq = dts_hub_change_seq(h);
  dts_hub_get_figures(h, &l->prev);
  out_str(l, "retry: 2000\n\n");
  emit_stats(l);
  l->last_stats = l->last_out = now_ms();
  out->status = 200;
  out->ctype = "text/event-stream";
  out->stream = (http_stream){live_next, live_free, l};
}
