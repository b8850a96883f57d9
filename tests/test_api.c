/* test_api.c -- the HTTP data API's handlers driven directly (no sockets),
 * against a real hub on real LevelDB: bulk jobs run on threads of their
 * own while other threads read their progress and cancel them, and the
 * event stream reads the hub's change feed while instances change.  Under
 * TSan in CI (label tsan). */
#include "actors/hub.h"
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "server/callvt.h"
#include "server/http.h"
#include "server/localcall.h"
#include "tests/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct {
  char dir[64];
  dts_sched *sched;
  dts_timers *timers;
  dts_store *store;
  dts_hub *hub;
} E;

static dts_hub *find(void *ctx, const char *name, dts_status *st, char *why, size_t whylen) {
  (void)ctx;
  if (strcmp(name, "default") == 0) return E.hub;
  *st = DTS_ST_NOT_FOUND;
  snprintf(why, whylen, "no hub '%s'", name);
  return NULL;
}
static int list(void *ctx, dts_hub **out, int max) {
  (void)ctx;
  if (max > 0) out[0] = E.hub;
  return max > 0;
}
static const http_hubs HUBS = {find, list, NULL};
static atomic_bool stopping;
static dts_http_config CFG = {.max_body = 1 << 20, .call_timeout_ms = 10000, .max_scan = 100000}; /* .auth: setup */
static struct sockaddr_in LOOPBACK = {.sin_family = AF_INET, .sin_addr = {.s_addr = 0x0100007f}}; /* 127.0.0.1 */

static const char *lookup(const http_req *r, bool header, const char *name) {
  (void)r;
  return header && strcasecmp(name, "x-taskhub") == 0 ? "default" : NULL;
}

/* One request; the JSON answer (NULL if none), its status in *status. */
static json_t *req(const char *method, const char *path, const char *body, int *status) {
  http_req r = {.method = method, .path = path, .body = body ? body : "", .blen = body ? strlen(body) : 0,
                .lookup = lookup, .cfg = &CFG, .hubs = &HUBS, .stopping = &stopping,
                .peer = (const struct sockaddr *)&LOOPBACK};
  http_resp out = {.status = 200};
  api_handle(&r, &out);
  *status = out.status;
  json_t *j = out.len > 0 && !out.persistent ? json_loadb(out.body, out.len, 0, NULL) : NULL;
  if (!out.persistent) free(out.body);
  return j;
}

static int setup(void **state) {
  (void)state;
  snprintf(E.dir, sizeof(E.dir), "/tmp/dtsd-apitest-XXXXXX");
  assert_non_null(mkdtemp(E.dir));
  char db[96], err[256];
  snprintf(db, sizeof(db), "%s/db", E.dir);
  E.sched = dts_sched_create(2);
  E.timers = dts_timers_create();
  assert_int_equal(dts_store_open(db, DTS_DURABILITY_OS, &E.store, err, sizeof(err)), DTS_OK);
  dts_hub_config hc = {.name = "default", .call_ops = &dts_server_call_ops, .sched = E.sched, .timers = E.timers,
                       .store = E.store, .max_payload = 1 << 20, .default_max_orch = 10, .default_max_act = 10,
                       .abandon_delay_ns = 50000000ULL, .ping_interval_ns = 30000000000ULL, .inline_commit = true};
  assert_int_equal(dts_hub_create(&hc, &E.hub), DTS_OK);
  dts_auth_config ac = {0}; /* no auth: the loopback client may do anything */
  assert_non_null(CFG.auth = dts_auth_create(&ac, err, sizeof(err)));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  api_jobs_stop();
  dts_hub_shutdown(E.hub);
  assert_true(TU_WAIT_UNTIL(dts_hub_quiesced(E.hub), 10));
  assert_true(TU_WAIT_UNTIL(!dts_store_busy(E.store), 10));
  dts_timers_destroy(E.timers);
  dts_sched_destroy(E.sched);
  dts_store_close(E.store);
  dts_hub_release(E.hub);
  dts_auth_destroy(CFG.auth);
  CFG.auth = NULL;
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", E.dir);
  assert_int_equal(system(cmd), 0);
  dts_pool_thread_flush();
  assert_int_equal(dts_local_live(), 0);
  return 0;
}

typedef struct reader {
  const char *job;
  atomic_bool stop;
  int reads;
} reader;

static void *read_job(void *p) {
  reader *r = p;
  char path[128];
  snprintf(path, sizeof(path), "/api/v1/taskhubs/jobs/%s", r->job);
  while (!atomic_load(&r->stop)) {
    int st;
    json_t *j = req("GET", path, NULL, &st);
    if (st == 200) r->reads++;
    json_decref(j);
  }
  return NULL;
}

/* A job's state ("running", "done", "cancelled"; "" when it cannot be read). */
static const char *job_state(const char *path) {
  static char state[32];
  int st;
  json_t *j = req("GET", path, NULL, &st);
  snprintf(state, sizeof(state), "%s", json_string_value(json_object_get(j, "state")) ? json_string_value(json_object_get(j, "state")) : "");
  json_decref(j);
  return state;
}

static void test_bulk_jobs_with_readers(void **state) {
  (void)state;
  int st;
  for (int i = 0; i < 200; i++) {
    char body[128];
    snprintf(body, sizeof(body), "{\"name\":\"orch\",\"instanceId\":\"bj-%03d\"}", i);
    json_decref(req("POST", "/api/v1/taskhubs/orchestrations", body, &st));
    assert_int_equal(st, 201);
  }
  const char *bulk = "{\"action\":\"terminate\",\"filter\":{\"orchestrationId\":{\"value\":\"bj-\"}},\"reason\":\"r\"}";
  json_t *dry = req("POST", "/api/v1/taskhubs/orchestrations/bulk",
                    "{\"action\":\"terminate\",\"filter\":{\"orchestrationId\":{\"value\":\"bj-\"}},\"dryRun\":true}", &st);
  assert_int_equal(st, 200);
  assert_int_equal(json_integer_value(json_object_get(dry, "count")), 200);
  json_decref(dry);
  json_t *job = req("POST", "/api/v1/taskhubs/orchestrations/bulk", bulk, &st);
  assert_int_equal(st, 202);
  reader rd[2] = {{.job = json_string_value(json_object_get(job, "jobId"))}, {.job = json_string_value(json_object_get(job, "jobId"))}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, read_job, &rd[i]);
  char path[128];
  snprintf(path, sizeof(path), "/api/v1/taskhubs/jobs/%s", rd[0].job);
  assert_true(TU_WAIT_UNTIL(strcmp(job_state(path), "running") != 0, 20)); /* readers race it meanwhile */
  json_t *s = req("GET", path, NULL, &st);
  for (int i = 0; i < 2; i++) {
    atomic_store(&rd[i].stop, true);
    pthread_join(th[i], NULL);
  }
  assert_string_equal(json_string_value(json_object_get(s, "state")), "done");
  assert_int_equal(json_integer_value(json_object_get(s, "done")), 200);
  json_decref(s);
  /* a second job, cancelled while readers look: it ends, done or cancelled */
  json_t *job2 = req("POST", "/api/v1/taskhubs/orchestrations/bulk",
                     "{\"action\":\"purge\",\"filter\":{\"orchestrationId\":{\"value\":\"bj-\"}}}", &st);
  assert_int_equal(st, 202);
  snprintf(path, sizeof(path), "/api/v1/taskhubs/jobs/%s", json_string_value(json_object_get(job2, "jobId")));
  json_decref(req("DELETE", path, NULL, &st));
  assert_int_equal(st, 202);
  assert_true(TU_WAIT_UNTIL(strcmp(job_state(path), "running") != 0, 20));
  assert_true(strcmp(job_state(path), "cancelled") == 0 || strcmp(job_state(path), "done") == 0);
  json_decref(job2);
  json_decref(job);
  /* teardown stops what still runs (api_jobs_stop) before the hub goes */
}

int main(void) {
  dts_log_set_level(DTS_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_bulk_jobs_with_readers, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
