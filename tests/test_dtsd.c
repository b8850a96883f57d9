/* test_dtsd.c -- libdtsd as an embedding program uses it: start on port 0
 * with an ephemeral data dir, talk to it over real gRPC (a C-core client)
 * and over HTTP (a plain socket), stop; and the start-up refusals. */
#include "server/dtsd.h"

#include "server/localcall.h"

#include "proto/pb.h"
#include "runtime/alloc.h"
#include "runtime/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct reply {
  grpc_status_code status;
  char details[512];
  dts_buf body;
} reply;

/* One unary call, synchronously, on a pluck queue. */
static reply unary(grpc_channel *ch, const char *method, const char *hub, const ProtobufCMessage *req) {
  reply r;
  memset(&r, 0, sizeof(r));
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(10, GPR_TIMESPAN));
  grpc_slice m = grpc_slice_from_static_string(method);
  grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, dl, NULL);
  dts_buf b = req ? dts_pb_pack(req) : (dts_buf){NULL, 0};
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)b.p, b.n);
  dts_buf_free(&b);
  grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  grpc_metadata md;
  memset(&md, 0, sizeof(md));
  md.key = grpc_slice_from_static_string("taskhub");
  md.value = grpc_slice_from_copied_string(hub ? hub : "");
  grpc_metadata_array init_md, trail_md;
  grpc_metadata_array_init(&init_md);
  grpc_metadata_array_init(&trail_md);
  grpc_byte_buffer *recv = NULL;
  grpc_slice details;
  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = hub ? 1 : 0;
  ops[0].data.send_initial_metadata.metadata = &md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
  ops[5].data.recv_status_on_client.status = &r.status;
  ops[5].data.recv_status_on_client.status_details = &details;
  int tag;
  assert_int_equal(grpc_call_start_batch(call, ops, 6, &tag, NULL), GRPC_CALL_OK);
  grpc_event ev = grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  assert_int_equal(ev.type, GRPC_OP_COMPLETE);
  char *d = grpc_slice_to_c_string(details);
  snprintf(r.details, sizeof(r.details), "%s", d);
  gpr_free(d);
  grpc_slice_unref(details);
  if (recv != NULL) {
    grpc_byte_buffer_reader rd;
    assert_true(grpc_byte_buffer_reader_init(&rd, recv));
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    r.body = dts_buf_copy(GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
    grpc_slice_unref(all);
    grpc_byte_buffer_reader_destroy(&rd);
    grpc_byte_buffer_destroy(recv);
  }
  grpc_byte_buffer_destroy(send);
  grpc_slice_unref(md.value);
  grpc_metadata_array_destroy(&init_md);
  grpc_metadata_array_destroy(&trail_md);
  grpc_call_unref(call);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  return r;
}

/* One HTTP/1.0 exchange with 127.0.0.1:port: the whole answer (status
 * line, headers, body), NUL-terminated, in out. */
static void http_exchange(int port, const char *request, char *out, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  size_t n = strlen(request);
  assert_int_equal(write(fd, request, n), (ssize_t)n);
  size_t k = 0;
  ssize_t r;
  while (k + 1 < cap && (r = read(fd, out + k, cap - 1 - k)) > 0) k += (size_t)r;
  out[k] = '\0';
  close(fd);
}

static void test_start_on_port_zero_serve_and_stop(void **state) {
  (void)state;
  dtsd_options o;
  dtsd_options_init(&o);
  o.address = "127.0.0.1:0";
  o.http_address = "127.0.0.1:0";
  o.health_address = "127.0.0.1:0";
  o.ephemeral = true;
  o.task_hubs = "default,other";
  o.workers = 2;
  dtsd *d;
  char err[512];
  assert_int_equal(dtsd_start(&o, &d, err, sizeof(err)), 0);
  int port = dtsd_port(d);
  assert_true(port > 0);
  char *dir = dts_strdup(dtsd_data_dir(d));
  struct stat sb;
  assert_int_equal(stat(dir, &sb), 0);

  grpc_init();
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  grpc_channel_credentials *cr = grpc_insecure_credentials_create();
  grpc_channel *ch = grpc_channel_create(target, cr, NULL);
  grpc_channel_credentials_release(cr);

  reply r = unary(ch, "/TaskHubSidecarService/Hello", NULL, NULL);
  assert_int_equal(r.status, GRPC_STATUS_OK);
  dts_buf_free(&r.body);

  CreateInstanceRequest cr1 = CREATE_INSTANCE_REQUEST__INIT;
  cr1.instance_id = "lib-1";
  cr1.name = "orch";
  r = unary(ch, "/TaskHubSidecarService/StartInstance", "other", &cr1.base);
  assert_int_equal(r.status, GRPC_STATUS_OK);
  dts_buf_free(&r.body);

  GetInstanceRequest g = GET_INSTANCE_REQUEST__INIT;
  g.instance_id = "lib-1";
  r = unary(ch, "/TaskHubSidecarService/GetInstance", "other", &g.base);
  assert_int_equal(r.status, GRPC_STATUS_OK);
  GetInstanceResponse *gr = get_instance_response__unpack(NULL, r.body.n, r.body.p);
  assert_true(gr->exists);
  assert_int_equal(gr->orchestration_state->orchestration_status, ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_PENDING);
  get_instance_response__free_unpacked(gr, NULL);
  dts_buf_free(&r.body);

  r = unary(ch, "/TaskHubSidecarService/GetInstance", "default", &g.base); /* other hub: not there */
  assert_int_equal(r.status, GRPC_STATUS_OK);
  gr = get_instance_response__unpack(NULL, r.body.n, r.body.p);
  assert_false(gr->exists);
  get_instance_response__free_unpacked(gr, NULL);
  dts_buf_free(&r.body);

  r = unary(ch, "/TaskHubSidecarService/GetInstance", "missing", &g.base);
  assert_int_equal(r.status, GRPC_STATUS_NOT_FOUND);
  assert_non_null(strstr(r.details, "default, other"));
  dts_buf_free(&r.body);

  /* the same instance through the HTTP API: an in-process call to the hub */
  char ans[8192];
  http_exchange(dtsd_http_port(d), "GET /api/v1/taskhubs/orchestrations/lib-1 HTTP/1.0\r\nx-taskhub: other\r\n\r\n",
                ans, sizeof(ans));
  assert_non_null(strstr(ans, "200 OK"));
  assert_non_null(strstr(ans, "\"orchestrationStatus\":\"ORCHESTRATION_STATUS_PENDING\""));
  http_exchange(dtsd_http_port(d), "GET /api/v1/taskhubs/orchestrations/lib-1 HTTP/1.0\r\n\r\n", ans, sizeof(ans));
  assert_non_null(strstr(ans, "404 Not Found")); /* no header: the default hub, which does not have it */
  http_exchange(dtsd_health_port(d), "GET /healthz HTTP/1.0\r\n\r\n", ans, sizeof(ans));
  assert_non_null(strstr(ans, "204 No Content"));
  http_exchange(dtsd_health_port(d), "GET /readyz HTTP/1.0\r\n\r\n", ans, sizeof(ans));
  assert_non_null(strstr(ans, "200 OK"));

  grpc_channel_destroy(ch);
  grpc_shutdown();
  dtsd_stop(d);
  assert_int_equal(dts_local_live(), 0); /* every in-process call was let go */
  assert_int_not_equal(stat(dir, &sb), 0); /* the ephemeral directory is gone */
  dts_free(dir);
}

static void test_refusals(void **state) {
  (void)state;
  dtsd_options o;
  dtsd_options_init(&o);
  o.address = "127.0.0.1:0";
  o.http_address = "127.0.0.1:0";
  o.health_address = "off";
  o.ephemeral = true;
  dtsd *d, *d2;
  char err[512];
  o.task_hubs = "bad name!";
  assert_int_equal(dtsd_start(&o, &d, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "invalid task hub name"));
  o.task_hubs = "default";
  assert_int_equal(dtsd_start(&o, &d, err, sizeof(err)), 0);
  dtsd_options o2 = o;
  o2.ephemeral = false;
  o2.data_dir = dtsd_data_dir(d);
  assert_int_equal(dtsd_start(&o2, &d2, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "in use by another dtsd process"));
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", dtsd_port(d));
  o2 = o;
  o2.address = addr; /* port taken */
  assert_int_equal(dtsd_start(&o2, &d2, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "cannot listen"));
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", dtsd_http_port(d));
  o2 = o;
  o2.http_address = addr; /* the HTTP port taken */
  assert_int_equal(dtsd_start(&o2, &d2, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "cannot listen on 127.0.0.1:"));
  o2.http_address = "nonsense";
  assert_int_equal(dtsd_start(&o2, &d2, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "is not HOST:PORT"));
  dtsd_stop(d);
}

int main(void) {
  dts_log_set_level(DTS_LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_start_on_port_zero_serve_and_stop),
      cmocka_unit_test(test_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
