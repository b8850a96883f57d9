/* fuzz_http.c -- libFuzzer target: the HTTP data API's handlers (server/
 * api*.c) with what a client may send: any method, route, x-taskhub
 * header, query arguments and body, against two real hubs on real LevelDB
 * (threaded scheduler: the handlers wait for the engine's answers as they
 * do in dtsd).  libmicrohttpd's parsing is the library's; everything after
 * it is ours and fuzzed here.
 *
 * Checked per request: a status from 100 to 599; a JSON answer parses as
 * JSON.  Per input: every in-process call is let go.  Every 500 inputs the
 * hubs and their store start afresh, so state stays small.
 *
 * Input: a count byte, then per request: method byte, route byte, hub byte,
 * two id strings (length byte, bytes), an argument byte, argument string,
 * u16 body length, body bytes.
 */
#include "actors/hub.h"
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/callvt.h"
#include "server/localcall.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
  char dir[64];
  dts_sched *sched;
  dts_timers *timers;
  dts_store *store;
  dts_hub *hubs[2];
  int inputs;
  dts_http_config cfg, cfg_on; /* without auth, and with tokens (auth.h) */
  char tok_admin[80], tok_reader[80], bearer[120];
} E;

static const char *const HUB_NAMES[2] = {"default", "other"};

static dts_hub *find(void *ctx, const char *name, dts_status *st, char *why, size_t whylen) {
  (void)ctx;
  for (int i = 0; i < 2; i++)
    if (strcmp(name, HUB_NAMES[i]) == 0) return E.hubs[i];
  *st = DTS_ST_NOT_FOUND;
  snprintf(why, whylen, "task hub '%.80s' is not served", name);
  return NULL;
}

static int list(void *ctx, dts_hub **out, int max) {
  (void)ctx;
  int n = max < 2 ? max : 2;
  for (int i = 0; i < n; i++) out[i] = E.hubs[i];
  return n;
}

static const http_hubs HUBS = {find, list, NULL};
static atomic_bool stopping;

static void env_down(void) {
  if (E.store == NULL) return;
  api_jobs_stop(); /* bulk jobs act on the hubs: they go first */
  for (int i = 0; i < 2; i++) dts_hub_shutdown(E.hubs[i]);
  for (int i = 0; i < 2; i++)
    if (!TU_WAIT_UNTIL(dts_hub_quiesced(E.hubs[i]), 10)) abort();
  if (!TU_WAIT_UNTIL(!dts_store_busy(E.store), 10)) abort();
  dts_timers_destroy(E.timers);
  dts_sched_destroy(E.sched);
  dts_store_close(E.store);
  for (int i = 0; i < 2; i++) dts_hub_release(E.hubs[i]);
  dts_auth_destroy(E.cfg.auth);
  dts_auth_destroy(E.cfg_on.auth);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", E.dir);
  if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", E.dir);
  E.store = NULL;
}

static void env_up(void) {
  if (getenv("FZ_LOG") == NULL) dts_log_set_level(DTS_LOG_OFF);
  struct stat sb;
  snprintf(E.dir, sizeof(E.dir), "%s/dtsd-fuzzhttp-XXXXXX", stat("/dev/shm", &sb) == 0 ? "/dev/shm" : "/tmp");
  if (mkdtemp(E.dir) == NULL) abort();
  char db[96], err[256];
  snprintf(db, sizeof(db), "%s/db", E.dir);
  dts_store_options so;
  dts_store_options_init(&so);
  so.block_cache = 1u << 20;
  so.write_buffer = 512u << 10;
  so.min_free = 0;
  if (dts_store_open_with(db, &so, &E.store, err, sizeof(err)) != DTS_OK) abort();
  E.sched = dts_sched_create(2);
  E.timers = dts_timers_create();
  for (int i = 0; i < 2; i++) {
    dts_hub_config hc = {.name = HUB_NAMES[i], .call_ops = &dts_server_call_ops, .sched = E.sched,
                         .timers = E.timers, .store = E.store, .max_payload = 4096, .default_max_orch = 4,
                         .default_max_act = 4, .abandon_delay_ns = 1000000, .ping_interval_ns = 30000000000ULL,
                         .inline_commit = true, .limits = {.max_page = 50, .scan_budget = 500}};
    if (dts_hub_create(&hc, &E.hubs[i]) != DTS_OK) abort();
  }
  E.cfg = (dts_http_config){.max_body = 1 << 16, .call_timeout_ms = 15000, .max_scan = 200};
  E.cfg_on = E.cfg;
  char tokens[128];
  snprintf(tokens, sizeof(tokens), "%s/tokens.json", E.dir);
  const char *admin[1] = {"*=admin"}, *reader[1] = {"default=reader"};
  if (!dts_token_create(tokens, "fz-admin", NULL, admin, 1, 0, E.tok_admin, sizeof(E.tok_admin), err, sizeof(err)) ||
      !dts_token_create(tokens, "fz-reader", NULL, reader, 1, 0, E.tok_reader, sizeof(E.tok_reader), err, sizeof(err)))
    abort();
  dts_auth_config off = {0}, on = {.on = true, .tokens_file = tokens};
  if ((E.cfg.auth = dts_auth_create(&off, err, sizeof(err))) == NULL) abort();
  if ((E.cfg_on.auth = dts_auth_create(&on, err, sizeof(err))) == NULL) abort();
}

static uint8_t byte(const uint8_t **p, const uint8_t *end) { return *p < end ? *(*p)++ : 0; }

static void str(const uint8_t **p, const uint8_t *end, char *out, size_t cap, size_t n) {
  size_t k = 0;
  while (k < n && k + 1 < cap && *p < end) out[k++] = (char)*(*p)++;
  out[k] = '\0';
}

static const char *const ROUTES[] = {
    "/api/v1/taskhubs/orchestrations", "/api/v1/taskhubs/orchestrations/query",
    "/api/v1/taskhubs/orchestrations/{i}", "/api/v1/taskhubs/orchestrations/{i}/payloads",
    "/api/v1/taskhubs/orchestrations/{i}/restart", "/api/v1/taskhubs/orchestrations/{i}/history",
    "/api/v1/taskhubs/orchestrations/{i}/executions/{j}/history", "/api/v1/taskhubs/orchestrations/addhistoryevents",
    "/api/v1/taskhubs/orchestrations/forceterminate", "/api/v1/taskhubs/orchestrations/purge",
    "/api/v1/taskhubs/entities/query", "/api/v1/taskhubs/entities/{i}", "/api/v1/taskhubs/entities/{i}/state",
    "/api/v1/taskhubs/entities/delete", "/api/v1/taskhubs/workers", "/api/v1/taskhubs/ping",
    "/api/v1/taskhubs/schedules/{i}", "/api/v1/taskhubs", "/v1/taskhubs/orchestrations/{i}", "/", "{i}/{j}", "/metrics",
    "/api/v1/taskhubs/live", "/assets/{i}", "/assets/app-0.js", "/api/v1/taskhubs/entities/{i}/signal",
    "/api/v1/taskhubs/entities/clean", "/api/v1/taskhubs/orchestrations/bulk", "/api/v1/taskhubs/jobs",
    "/api/v1/taskhubs/jobs/{i}", "/api/v1/taskhubs/orchestrations/export", "/api/v1/taskhubs/schedules",
    "/api/v1/taskhubs/schedules/{i}/pause", "/api/v1/taskhubs/schedules/{i}/resume",
};
#define NROUTES (sizeof(ROUTES) / sizeof(ROUTES[0]))
static const char *const METHODS[] = {"GET", "POST", "DELETE", "PUT"};
static const char *const ARGS[] = {"startIndex", "count", "format", "recursive", "taskhub", "q"};

typedef struct fz_req {
  http_req r;
  const char *hub;
  int arg;
  const char *argval;
} fz_req;

static const char *lookup(const http_req *r, bool header, const char *name) {
  const fz_req *q = (const fz_req *)r;
  if (header && strcasecmp(name, "authorization") == 0) return q->r.cfg == &E.cfg_on ? E.bearer : NULL;
  if (header) return strcasecmp(name, "x-taskhub") == 0 ? q->hub : strcasecmp(name, "if-none-match") == 0 ? q->argval : NULL;
  return q->arg >= 0 && strcmp(name, ARGS[q->arg]) == 0 ? q->argval : NULL;
}

static void expand(const char *route, const char *i, const char *j, char *out, size_t cap) {
  size_t k = 0;
  for (const char *p = route; *p && k + 1 < cap; p++) {
    const char *put = NULL;
    if (p[0] == '{' && (p[1] == 'i' || p[1] == 'j') && p[2] == '}') {
      put = p[1] == 'i' ? i : j;
      p += 2;
    }
    if (put == NULL) {
      out[k++] = *p;
      continue;
    }
    for (; *put && k + 1 < cap; put++) out[k++] = *put;
  }
  out[k] = '\0';
}

static void one(const uint8_t **p, const uint8_t *end) {
  char id1[64], id2[64], hubname[32], argval[32], path[300];
  const char *method = METHODS[byte(p, end) % 4];
  const char *route = ROUTES[byte(p, end) % NROUTES];
  uint8_t hb = byte(p, end);
  str(p, end, id1, sizeof(id1), byte(p, end) % 40);
  str(p, end, id2, sizeof(id2), byte(p, end) % 40);
  str(p, end, hubname, sizeof(hubname), hb >> 3);
  uint8_t ab = byte(p, end);
  str(p, end, argval, sizeof(argval), ab >> 3);
  size_t blen = (size_t)byte(p, end) << 8;
  blen = (blen | byte(p, end)) % 4096;
  char *body = dts_malloc(blen + 1);
  size_t got = 0;
  while (got < blen && *p < end) body[got++] = (char)*(*p)++;
  body[got] = '\0';
  expand(route, id1, id2, path, sizeof(path));
  /* hub byte bit 2: auth on, the token chosen by the argument's first
   * letter (A admin, R reader, else the argument itself); N: from a
   * non-loopback address */
  static struct sockaddr_in loop = {.sin_family = AF_INET, .sin_addr = {.s_addr = 0x0100007f}};
  static struct sockaddr_in far = {.sin_family = AF_INET, .sin_addr = {.s_addr = 0x0100000a}};
  bool on = (hb & 4) != 0;
  snprintf(E.bearer, sizeof(E.bearer), "Bearer %s", argval[0] == 'A' ? E.tok_admin : argval[0] == 'R' ? E.tok_reader : argval);
  fz_req q = {.r = {.method = method, .path = path, .body = body, .blen = got, .lookup = lookup,
                    .cfg = on ? &E.cfg_on : &E.cfg, .hubs = &HUBS,
                    .peer = (const struct sockaddr *)(argval[0] == 'N' ? &far : &loop)},
              .hub = (hb & 3) == 0 ? NULL : (hb & 3) == 1 ? "default" : (hb & 3) == 2 ? "other" : hubname,
              .arg = (ab & 7) < 6 ? ab & 7 : -1,
              .argval = argval};
  http_resp out = {.status = 200};
  q.r.stopping = &stopping;
  api_handle(&q.r, &out);
  if (out.stream.next != NULL) { /* an event stream: its first events, then the client goes */
    char buf[256];
    if (out.stream.next(out.stream.ctx, buf, sizeof(buf)) <= 0) abort();
    out.stream.free(out.stream.ctx);
  }
  if (out.status < 100 || out.status > 599) abort();
  if (out.ctype && strcmp(out.ctype, "application/json") == 0 && out.len > 0) {
    json_error_t e;
    json_t *j = json_loadb(out.body, out.len, JSON_DECODE_ANY, &e);
    if (j == NULL) {
      fprintf(stderr, "not JSON: %s\n", out.body);
      abort();
    }
    json_decref(j);
  }
  if (!out.persistent) free(out.body);
  dts_free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (E.store == NULL) {
    env_up();
    atexit(env_down);
  } else if (++E.inputs % 500 == 0) {
    env_down();
    env_up();
  }
  const uint8_t *p = data, *end = data + size;
  int n = 1 + byte(&p, end) % 12;
  for (int i = 0; i < n && p < end; i++) one(&p, end);
  /* every call let go (a stream's owner drops its reference just after) */
  if (!TU_WAIT_UNTIL(dts_local_live() == 0, 2)) {
    fprintf(stderr, "fuzz_http: %ld in-process calls never let go\n", dts_local_live());
    abort();
  }
  return 0;
}
