/* test_auth.c -- auth.c and audit.c as the edges use them: many threads
 * deciding while the tokens file is reloaded (SIGHUP) and failures pile up
 * from one address, and the audit log written from all of them.  Runs
 * under TSan too. */
#include "server/audit.h"
#include "server/auth.h"

#include "runtime/alloc.h"
#include "tests/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], tokens[128], audit_path[128];
static char reader[80], worker[80];
static dts_auth *A;
static dts_audit *L;
static atomic_bool stop;
static atomic_long wrong;

static struct sockaddr_in loop4 = {.sin_family = AF_INET, .sin_addr = {.s_addr = 0x0100007f}};
static struct sockaddr_in far4 = {.sin_family = AF_INET, .sin_addr = {.s_addr = 0x0200000a}};

static void check(const char *tok, const struct sockaddr_in *peer, int needs, dts_auth_decision *d) {
  char h[120];
  snprintf(h, sizeof(h), "Bearer %s", tok);
  dts_auth_req r = {.peer = (const struct sockaddr *)peer, .authorization = h, .authorization_len = strlen(h),
                    .hub = "default", .needs = needs};
  dts_auth_check(A, &r, d);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/dtsd-authtest-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(tokens, sizeof(tokens), "%s/tokens.json", dir);
  snprintf(audit_path, sizeof(audit_path), "%s/audit.log", dir);
  char why[300];
  const char *gr[1] = {"default=reader"}, *gw[1] = {"default=worker"};
  assert_true(dts_token_create(tokens, "r", NULL, gr, 1, 0, reader, sizeof(reader), why, sizeof(why)));
  assert_true(dts_token_create(tokens, "w", NULL, gw, 1, 0, worker, sizeof(worker), why, sizeof(why)));
  dts_auth_config c = {.on = true, .tokens_file = tokens, .fail_limit = 5};
  assert_non_null(A = dts_auth_create(&c, why, sizeof(why)));
  assert_non_null(L = dts_audit_open(audit_path, why, sizeof(why)));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  dts_audit_close(L);
  dts_auth_destroy(A);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  return 0;
}

static void test_decisions(void **state) {
  (void)state;
  dts_auth_decision d;
  check(reader, &loop4, AUTH_READ, &d);
  assert_int_equal(d.st, DTS_ST_OK);
  assert_string_equal(d.principal, "r");
  check(reader, &loop4, AUTH_WRITE, &d);
  assert_int_equal(d.st, DTS_ST_PERMISSION_DENIED);
  check(worker, &loop4, AUTH_READ, &d);
  assert_int_equal(d.st, DTS_ST_PERMISSION_DENIED);
  check(reader, &far4, AUTH_READ, &d);
  assert_int_equal(d.st, DTS_ST_UNAUTHENTICATED); /* a token over plaintext off loopback */
  assert_non_null(strstr(d.msg, "TLS required"));
  /* five failures from one address: then even a good token waits */
  for (int i = 0; i < 5; i++) {
    check("dtsd_nope", &loop4, AUTH_READ, &d);
    assert_int_equal(d.st, DTS_ST_UNAUTHENTICATED);
  }
  check(reader, &loop4, AUTH_READ, &d);
  assert_int_equal(d.st, DTS_ST_RESOURCE_EXHAUSTED);
  long u, dn;
  dts_auth_counts(A, &u, &dn);
  assert_true(u >= 6 && dn >= 3);
}

/* Readers decide while the main thread rewrites and reloads the file. */
static void *decider(void *arg) {
  const char *tok = arg;
  while (!atomic_load(&stop)) {
    dts_auth_decision d;
    check(tok, &loop4, AUTH_READ, &d);
    if (d.st != DTS_ST_OK) atomic_fetch_add(&wrong, 1);
    dts_audit_event e = {"call", d.principal, "ipv4:127.0.0.1:1", "default", "QueryInstances", NULL};
    dts_audit_log(L, &e);
    dts_audit_event x = {"deny", "someone", "ipv4:127.0.0.1:2", "default", "StartInstance", "missing role"};
    dts_audit_log(L, &x);
  }
  return NULL;
}

static void test_reload_while_deciding(void **state) {
  (void)state;
  pthread_t t[4];
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, decider, reader), 0);
  char why[300], tok[80];
  for (int i = 0; i < 50; i++) { /* the reader's token stays through every rewrite */
    char name[32];
    snprintf(name, sizeof(name), "extra-%d", i);
    const char *g[1] = {"other=contributor"};
    assert_true(dts_token_create(tokens, name, NULL, g, 1, 0, tok, sizeof(tok), why, sizeof(why)));
    assert_true(dts_auth_reload(A, why, sizeof(why)));
    assert_true(dts_audit_reopen(L, why, sizeof(why)));
    dts_audit_flush(L);
  }
  atomic_store(&stop, true);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&wrong), 0);
  /* the audit log: whole lines, and denials collapsed to about one a second */
  FILE *f = fopen(audit_path, "r");
  assert_non_null(f);
  char line[1024];
  long calls = 0, denies = 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    assert_true(line[0] == '{' && strchr(line, '\n') != NULL);
    calls += strstr(line, "\"event\":\"call\"") != NULL;
    denies += strstr(line, "\"event\":\"deny\"") != NULL;
  }
  fclose(f);
  assert_true(calls > 0);
  assert_true(denies < calls);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_decisions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reload_while_deciding, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
