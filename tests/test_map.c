/* test_map.c -- the string-keyed map (runtime/map.c) and the hash it shares
 * with the directory: lookups after heavy churn (tombstones, rehashes),
 * deletion while iterating, and a hash whose every input byte counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "runtime/map.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 5000

static char keys[N][48];

static void fill_keys(void) {
  for (int i = 0; i < N; i++) snprintf(keys[i], sizeof(keys[i]), "instance-%d\x01%x", i, (unsigned)(i * 2654435761u));
}

static void test_put_get_replace_del(void **state) {
  (void)state;
  dts_map m;
  dts_map_init(&m);
  assert_null(dts_map_get(&m, "absent"));
  assert_null(dts_map_del(&m, "absent"));
  for (int i = 0; i < N; i++) assert_null(dts_map_put(&m, keys[i], &keys[i]));
  assert_int_equal(dts_map_len(&m), N);
  for (int i = 0; i < N; i++) assert_ptr_equal(dts_map_get(&m, keys[i]), &keys[i]);
  /* a replace returns the old value and keeps the count */
  assert_ptr_equal(dts_map_put(&m, keys[7], &keys[8]), &keys[7]);
  assert_ptr_equal(dts_map_get(&m, keys[7]), &keys[8]);
  assert_int_equal(dts_map_len(&m), N);
  for (int i = 0; i < N; i += 2) assert_non_null(dts_map_del(&m, keys[i]));
  assert_int_equal(dts_map_len(&m), N / 2);
  for (int i = 0; i < N; i++) {
    if (i % 2 == 0) assert_null(dts_map_get(&m, keys[i]));
    else assert_non_null(dts_map_get(&m, keys[i]));
  }
  dts_map_fini(&m);
}

/* A window of live keys slides over many more: every put and delete
 * leaves tombstones behind, which rehashes must clear without losing a
 * live key, and the table must not grow with the churn. */
static void test_churn_keeps_live_keys_and_bounded_table(void **state) {
  (void)state;
  enum { WINDOW = 300, ROUNDS = 20 };
  dts_map m;
  dts_map_init(&m);
  size_t maxcap = 0;
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < N; i++) {
      assert_null(dts_map_put(&m, keys[i], &keys[i]));
      if (i >= WINDOW) assert_ptr_equal(dts_map_del(&m, keys[i - WINDOW]), &keys[i - WINDOW]);
      if (i % 97 == 0)
        for (int j = i >= WINDOW ? i - WINDOW + 1 : 0; j <= i; j++) assert_ptr_equal(dts_map_get(&m, keys[j]), &keys[j]);
      if (m.cap > maxcap) maxcap = m.cap;
    }
    for (int i = N - WINDOW; i < N; i++) assert_non_null(dts_map_del(&m, keys[i]));
    assert_int_equal(dts_map_len(&m), 0);
  }
  assert_true(maxcap <= 1024); /* 300 live keys at load <= 0.7: 512, at most one step more */
  dts_map_fini(&m);
}

static void test_delete_current_while_iterating(void **state) {
  (void)state;
  dts_map m;
  dts_map_init(&m);
  for (int i = 0; i < 1000; i++) dts_map_put(&m, keys[i], &keys[i]);
  int seen = 0;
  const char *k;
  void *v;
  for (size_t it = 0; dts_map_next(&m, &it, &k, &v);) {
    assert_ptr_equal(k, v);
    seen++;
    if (seen % 3 != 0) assert_ptr_equal(dts_map_del(&m, k), v);
  }
  assert_int_equal(seen, 1000);
  assert_int_equal(dts_map_len(&m), 1000 / 3);
  dts_map_fini(&m);
}

/* Every byte of the key counts, wherever it is (the word loop and the
 * tail), NUL bytes included, and so do the length and the seed. */
static void test_hash_every_byte_counts(void **state) {
  (void)state;
  unsigned char buf[40];
  for (size_t len = 1; len <= sizeof(buf); len++) {
    memset(buf, 'a', sizeof(buf));
    uint64_t base = dts_hash_bytes(buf, len, 1);
    for (size_t i = 0; i < len; i++) {
      buf[i] ^= 1;
      assert_true(dts_hash_bytes(buf, len, 1) != base);
      buf[i] ^= 1;
    }
    assert_true(dts_hash_bytes(buf, len, 2) != base);
  }
  unsigned char z[16] = {0};
  for (size_t a = 0; a < sizeof(z); a++)
    for (size_t b = a + 1; b <= sizeof(z); b++) assert_true(dts_hash_bytes(z, a, 0) != dts_hash_bytes(z, b, 0));
  assert_int_equal(dts_hash_bytes("instance-1", 10, 7), dts_hash_bytes("instance-1", 10, 7));
}

/* Sequential ids spread over a power-of-two table's low bits: no bucket
 * of 1,024 gets more than a few times its share of 5,000 keys. */
static void test_hash_low_bits_spread(void **state) {
  (void)state;
  enum { B = 1024 };
  static int count[B];
  memset(count, 0, sizeof(count));
  for (int i = 0; i < N; i++) count[dts_hash_bytes(keys[i], strlen(keys[i]), 0) & (B - 1)]++;
  int max = 0;
  for (int b = 0; b < B; b++)
    if (count[b] > max) max = count[b];
  assert_true(max <= 20); /* mean 4.9; a uniform hash's maximum is about 14 */
}

int main(void) {
  fill_keys();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_put_get_replace_del),
      cmocka_unit_test(test_churn_keeps_live_keys_and_bounded_table),
      cmocka_unit_test(test_delete_current_while_iterating),
      cmocka_unit_test(test_hash_every_byte_counts),
      cmocka_unit_test(test_hash_low_bits_spread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
