/* test_pb.c -- the wire checks that run before any request is unpacked
 * (proto/pb.h): framing, nesting depth, strings, times; and the time
 * conversions that must not overflow. */
#include "proto/pb.h"
#include "runtime/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

static dts_buf pack_start(const char *id, size_t idlen, const char *input) {
  /* CreateInstanceRequest{instance_id(1), name(2), input(4) StringValue} by hand:
   * protobuf-c would stop at a NUL in `id` */
  dts_pbw w;
  dts_pbw_init(&w);
  dts_pbw_bytes_field(&w, 1, id, idlen);
  dts_pbw_string_field(&w, 2, "orch");
  if (input != NULL) dts_pbw_sv_field(&w, 4, input);
  return dts_pbw_take(&w);
}

static void test_a_nul_in_a_string_is_refused_naming_the_field(void **state) {
  (void)state;
  char err[512];
  dts_buf b = pack_start("ab\0cd", 5, NULL);
  ProtobufCMessage *m = dts_pb_decode(&create_instance_request__descriptor, b.p, b.n, 64, err, sizeof(err));
  assert_null(m);
  assert_non_null(strstr(err, "CreateInstanceRequest.instance_id"));
  assert_non_null(strstr(err, "NUL"));
  dts_buf_free(&b);
}

static void test_a_nul_inside_a_payload_is_refused_not_truncated(void **state) {
  (void)state;
  char err[512];
  dts_pbw w;
  dts_pbw_init(&w);
  dts_pbw_string_field(&w, 1, "id");
  dts_pbw_string_field(&w, 2, "orch");
  dts_pbw inner;
  dts_pbw_init(&inner);
  dts_pbw_bytes_field(&inner, 1, "{\"a\":\0}", 7);
  dts_buf sv = dts_pbw_take(&inner);
  dts_pbw_bytes_field(&w, 4, sv.p, sv.n);
  dts_buf b = dts_pbw_take(&w);
  assert_null(dts_pb_decode(&create_instance_request__descriptor, b.p, b.n, 64, err, sizeof(err)));
  assert_non_null(strstr(err, "CreateInstanceRequest.input.value"));
  dts_buf_free(&sv);
  dts_buf_free(&b);
}

static void test_strings_must_be_utf8(void **state) {
  (void)state;
  char err[512];
  const char *bad[] = {"\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    dts_buf b = pack_start(bad[i], strlen(bad[i]), NULL);
    assert_null(dts_pb_decode(&create_instance_request__descriptor, b.p, b.n, 64, err, sizeof(err)));
    assert_non_null(strstr(err, "UTF-8"));
    dts_buf_free(&b);
  }
  dts_buf ok = pack_start("caf\xc3\xa9-\xf0\x9f\x98\x80", 10, "\"\xe2\x82\xac\"");
  ProtobufCMessage *m = dts_pb_decode(&create_instance_request__descriptor, ok.p, ok.n, 64, err, sizeof(err));
  assert_non_null(m);
  protobuf_c_message_free_unpacked(m, NULL);
  dts_buf_free(&ok);
}

static void test_timestamps_outside_their_range_are_refused(void **state) {
  (void)state;
  char err[512];
  CreateInstanceRequest r = CREATE_INSTANCE_REQUEST__INIT;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  r.instance_id = "i";
  r.name = "o";
  r.scheduled_start_timestamp = &ts;
  const int64_t secs[] = {253402300800LL, -62135596801LL, INT64_MAX, INT64_MIN};
  for (size_t i = 0; i < 4; i++) {
    ts.seconds = secs[i];
    ts.nanos = 0;
    dts_buf b = dts_pb_pack(&r.base);
    assert_null(dts_pb_decode(&create_instance_request__descriptor, b.p, b.n, 64, err, sizeof(err)));
    assert_non_null(strstr(err, "scheduled_start_timestamp"));
    dts_buf_free(&b);
  }
  ts.seconds = 1;
  ts.nanos = -1;
  dts_buf b = dts_pb_pack(&r.base);
  assert_null(dts_pb_decode(&create_instance_request__descriptor, b.p, b.n, 64, err, sizeof(err)));
  dts_buf_free(&b);
  ts.seconds = 253402300799LL; /* the last second of year 9999 is valid */
  ts.nanos = 999999999;
  b = dts_pb_pack(&r.base);
  ProtobufCMessage *m = dts_pb_decode(&create_instance_request__descriptor, b.p, b.n, 64, err, sizeof(err));
  assert_non_null(m);
  protobuf_c_message_free_unpacked(m, NULL);
  dts_buf_free(&b);
}

static void test_time_conversions_saturate(void **state) {
  (void)state;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  ts.seconds = 253402300799LL; /* past 2262: does not fit int64 ns */
  assert_true(dts_ts_to_ns(&ts) == INT64_MAX);
  ts.seconds = -62135596800LL;
  assert_true(dts_ts_to_ns(&ts) == INT64_MIN);
  ts.seconds = 1700000000;
  ts.nanos = 5;
  assert_true(dts_ts_to_ns(&ts) == 1700000000000000005LL);
  assert_true(dts_ts_to_ns(NULL) == 0);
  assert_true(dts_secs_to_ns(INT64_MAX, 999999999) == INT64_MAX);
}

static void test_nesting_deeper_than_the_bound_names_the_path(void **state) {
  (void)state;
  /* TaskFailureDetails.inner_failure(5), 10 levels */
  TaskFailureDetails fd[10];
  for (int i = 0; i < 10; i++) {
    task_failure_details__init(&fd[i]);
    fd[i].error_message = "x";
    if (i > 0) fd[i - 1].inner_failure = &fd[i];
  }
  dts_buf b = dts_pb_pack(&fd[0].base);
  char err[512];
  assert_null(dts_pb_decode(&task_failure_details__descriptor, b.p, b.n, 5, err, sizeof(err)));
  assert_non_null(strstr(err, "deeper than 5"));
  assert_non_null(strstr(err, "TaskFailureDetails.inner_failure.inner_failure"));
  ProtobufCMessage *m = dts_pb_decode(&task_failure_details__descriptor, b.p, b.n, 64, err, sizeof(err));
  assert_non_null(m);
  protobuf_c_message_free_unpacked(m, NULL);
  dts_buf_free(&b);
}

static void test_truncated_framing_is_malformed(void **state) {
  (void)state;
  char err[512];
  const uint8_t bad[][3] = {{0x0a, 0x10, 0x41}, {0x0b, 0, 0}, {0xff, 0xff, 0xff}};
  for (int i = 0; i < 3; i++) {
    assert_null(dts_pb_decode(&create_instance_request__descriptor, bad[i], 3, 64, err, sizeof(err)));
    assert_non_null(strstr(err, "malformed"));
  }
}

/* Ids drawn from the per-thread random pool: the formats the SDKs parse,
 * and no two alike over more draws than one pool holds. */
static void test_generated_ids_have_their_formats_and_differ(void **state) {
  (void)state;
  char seen[100][37];
  for (int i = 0; i < 100; i++) {
    dts_uuid(seen[i]);
    assert_int_equal(strlen(seen[i]), 36);
    for (int j = 0; j < 36; j++) {
      char ch = seen[i][j];
      if (j == 8 || j == 13 || j == 18 || j == 23) assert_int_equal(ch, '-');
      else assert_true((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'));
    }
    assert_int_equal(seen[i][14], '4'); /* version 4 */
    assert_non_null(strchr("89ab", seen[i][19])); /* RFC 4122 variant */
    for (int k = 0; k < i; k++) assert_string_not_equal(seen[i], seen[k]);
  }
  char ex[33], ex2[33];
  dts_exec_id(ex);
  dts_exec_id(ex2);
  assert_int_equal(strlen(ex), 32);
  assert_int_equal(strspn(ex, "0123456789abcdef"), 32);
  assert_string_not_equal(ex, ex2);
}

static void test_bounded_copies_cut_and_terminate(void **state) {
  (void)state;
  char d[5];
  dts_strlcpy(d, "abc", sizeof(d));
  assert_string_equal(d, "abc");
  dts_strlcpy(d, "abcdefgh", sizeof(d));
  assert_string_equal(d, "abcd");
  dts_strlcpy_n(d, "xyz-not-this", 3, sizeof(d));
  assert_string_equal(d, "xyz");
  dts_strlcpy_n(d, "0123456789", 10, sizeof(d));
  assert_string_equal(d, "0123");
  dts_strlcpy(d, "", sizeof(d));
  assert_string_equal(d, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_nul_in_a_string_is_refused_naming_the_field),
      cmocka_unit_test(test_a_nul_inside_a_payload_is_refused_not_truncated),
      cmocka_unit_test(test_strings_must_be_utf8),
      cmocka_unit_test(test_timestamps_outside_their_range_are_refused),
      cmocka_unit_test(test_time_conversions_saturate),
      cmocka_unit_test(test_nesting_deeper_than_the_bound_names_the_path),
      cmocka_unit_test(test_truncated_framing_is_malformed),
      cmocka_unit_test(test_generated_ids_have_their_formats_and_differ),
      cmocka_unit_test(test_bounded_copies_cut_and_terminate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
