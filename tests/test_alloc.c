/* test_alloc.c -- pools recycle blocks per thread and account for them;
 * logging parses its flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "runtime/alloc.h"
#include "runtime/err.h"
#include "runtime/log.h"

#include <string.h>

static void test_pool_reuses_freed_blocks(void **state) {
  (void)state;
  long hits = dts_pool_cache_hits();
  void *a = dts_pool_alloc(40);
  memset(a, 0xab, 40);
  dts_pool_free(a);
  void *b = dts_pool_alloc(48); /* same class */
  assert_ptr_equal(a, b);
  assert_true(dts_pool_cache_hits() > hits);
  dts_pool_free(b);
}

static void test_pool_large_blocks_and_accounting(void **state) {
  (void)state;
  long before = dts_pool_outstanding();
  void *big = dts_pool_alloc(100000);
  memset(big, 1, 100000);
  void *small[2000];
  for (int i = 0; i < 2000; i++) small[i] = dts_pool_alloc((size_t)(i % 500) + 1);
  assert_int_equal(dts_pool_outstanding(), before + 2001);
  for (int i = 0; i < 2000; i++) dts_pool_free(small[i]); /* more than the cache keeps */
  dts_pool_free(big);
  dts_pool_free(NULL);
  assert_int_equal(dts_pool_outstanding(), before);
}

static void test_pool_blocks_are_aligned(void **state) {
  (void)state;
  for (size_t n = 1; n < 2000; n += 97) {
    void *p = dts_pool_alloc(n);
    assert_int_equal((uintptr_t)p % 16, 0);
    dts_pool_free(p);
  }
}

static void test_log_parses_levels_and_formats(void **state) {
  (void)state;
  dts_log_level l;
  dts_log_format f;
  assert_true(dts_log_parse_level("WARN", &l));
  assert_int_equal(l, DTS_LOG_WARN);
  assert_false(dts_log_parse_level("loud", &l));
  assert_true(dts_log_parse_format("json", &f));
  assert_int_equal(f, DTS_LOG_JSON);
  assert_false(dts_log_parse_format("xml", &f));
  assert_string_equal(dts_strerror(DTS_ENOTFOUND), "not found");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_reuses_freed_blocks),
      cmocka_unit_test(test_pool_large_blocks_and_accounting),
      cmocka_unit_test(test_pool_blocks_are_aligned),
      cmocka_unit_test(test_log_parses_levels_and_formats),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  dts_pool_thread_flush();
  return rc;
}
