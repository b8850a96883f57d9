/* rpc.c -- dtsctl's connection to dtsd and its calls (gRPC C core, one
 * pluck queue per call, synchronous).  See dtsctl.h. */
#include "tools/dtsctl/dtsctl.h"

#include "runtime/alloc.h"

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
#include <strings.h>

/* ---- the connection ---------------------------------------------------------- */

/* "http://h:p", "https://h:p" or "h:p" (a trailing '/' ignored). */
static bool set_endpoint(ctl *c, const char *v, const char *from) {
  static char buf[512];
  c->tls = false;
  if (strncasecmp(v, "https://", 8) == 0) {
    c->tls = true;
    v += 8;
  } else if (strncasecmp(v, "http://", 7) == 0) {
    v += 7;
  }
  size_t n = strlen(v);
  while (n > 0 && v[n - 1] == '/') n--;
  if (n == 0 || n >= sizeof(buf) || memchr(v, '/', n) != NULL) {
    fprintf(stderr, "dtsctl: %s: expected host:port, http://host:port or https://host:port, not '%s'\n", from, v);
    return false;
  }
  memcpy(buf, v, n);
  buf[n] = '\0';
  if (strchr(buf, ':') == NULL) { /* no port: the scheme's */
    snprintf(buf + n, sizeof(buf) - n, ":%s", c->tls ? "443" : "80");
  }
  c->endpoint = buf;
  return true;
}

/* The SDKs' connection string: "Endpoint=...;Authentication=None;TaskHub=..."
 * (keys case-insensitive).  Fills what the flags left unset. */
static bool from_connection_string(ctl *c, const char *cs, bool *have_endpoint) {
  char *copy = dts_strdup(cs), *save = NULL;
  bool ok = true;
  for (char *part = strtok_r(copy, ";", &save); part != NULL && ok; part = strtok_r(NULL, ";", &save)) {
    while (*part == ' ') part++;
    if (*part == '\0') continue;
    char *eq = strchr(part, '=');
    if (eq == NULL) {
      fprintf(stderr, "dtsctl: DTS_CONNECTION_STRING: '%s' is not key=value\n", part);
      ok = false;
      break;
    }
    *eq = '\0';
    const char *v = eq + 1;
    if (strcasecmp(part, "Endpoint") == 0 && !*have_endpoint) {
      ok = set_endpoint(c, v, "DTS_CONNECTION_STRING Endpoint");
      *have_endpoint = ok;
    } else if (strcasecmp(part, "TaskHub") == 0 && c->hub == NULL) {
      c->hub = dts_strdup(v);
    }
    /* Authentication and the rest name Azure credential kinds: dtsctl sends
     * a token only from --token or DTSD_TOKEN */
  }
  dts_free(copy);
  return ok;
}

bool ctl_connect(ctl *c, const char *endpoint_flag) {
  bool have = false;
  if (endpoint_flag != NULL) {
    if (!set_endpoint(c, endpoint_flag, "--endpoint")) return false;
    have = true;
  } else if (getenv("DTSD_ENDPOINT") != NULL && *getenv("DTSD_ENDPOINT")) {
    if (!set_endpoint(c, getenv("DTSD_ENDPOINT"), "DTSD_ENDPOINT")) return false;
    have = true;
  }
  if (c->hub == NULL && getenv("DTSD_TASKHUB") != NULL && *getenv("DTSD_TASKHUB")) c->hub = dts_strdup(getenv("DTSD_TASKHUB"));
  const char *cs = getenv("DTS_CONNECTION_STRING");
  if (cs != NULL && *cs && !from_connection_string(c, cs, &have)) return false;
  if (!have) set_endpoint(c, "localhost:8080", "default");
  if (c->hub == NULL) c->hub = dts_strdup("default");
  if (c->token == NULL && getenv("DTSD_TOKEN") != NULL && *getenv("DTSD_TOKEN")) c->token = dts_strdup(getenv("DTSD_TOKEN"));
  grpc_init();
  grpc_channel_credentials *cr = c->tls ? grpc_ssl_credentials_create(NULL, NULL, NULL, NULL) : grpc_insecure_credentials_create();
  grpc_arg arg = {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = 64 << 20};
  grpc_channel_args args = {.num_args = 1, .args = &arg};
  c->ch = grpc_channel_create(c->endpoint, cr, &args);
  grpc_channel_credentials_release(cr);
  return true;
}

void ctl_close(ctl *c) {
  if (c->ch != NULL) {
    grpc_channel_destroy(c->ch);
    grpc_shutdown();
  }
  dts_free(c->hub);
  dts_free(c->token);
}

/* ---- calls ------------------------------------------------------------------ */

typedef struct callctx {
  grpc_completion_queue *cq;
  grpc_call *call;
  grpc_metadata md[3];
  size_t nmd;
  char auth[2100];
} callctx;

static bool begin(ctl *c, callctx *x, const char *method) {
  x->cq = grpc_completion_queue_create_for_pluck(NULL);
  gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(c->timeout_s, GPR_TIMESPAN));
  grpc_slice m = grpc_slice_from_static_string(method);
  x->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, x->cq, m, NULL, dl, NULL);
  x->nmd = 0;
  x->md[x->nmd].key = grpc_slice_from_static_string("taskhub");
  x->md[x->nmd++].value = grpc_slice_from_copied_string(c->hub);
  x->md[x->nmd].key = grpc_slice_from_static_string("x-user-agent");
  x->md[x->nmd++].value = grpc_slice_from_static_string("dtsctl/" DTSD_VERSION);
  if (c->token != NULL) {
    snprintf(x->auth, sizeof(x->auth), "Bearer %s", c->token);
    x->md[x->nmd].key = grpc_slice_from_static_string("authorization");
    x->md[x->nmd++].value = grpc_slice_from_copied_string(x->auth);
  }
  return x->call != NULL;
}

static void pluck(callctx *x, void *tag) {
  grpc_event ev = grpc_completion_queue_pluck(x->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  (void)ev; /* a failed op shows in the status the call ends with */
}

static void end(callctx *x) {
  for (size_t i = 0; i < x->nmd; i++) grpc_slice_unref(x->md[i].value);
  grpc_call_unref(x->call);
  grpc_completion_queue_shutdown(x->cq);
  while (grpc_completion_queue_pluck(x->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(x->cq);
}

static grpc_byte_buffer *pack(const ProtobufCMessage *req) {
  dts_buf b = dts_pb_pack(req);
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)b.p, b.n);
  dts_buf_free(&b);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

/* The first four ops of every call: headers, the one request, the end of
 * sending, the answer's headers. */
static void request_ops(grpc_op ops[4], callctx *x, grpc_byte_buffer *send, grpc_metadata_array *init_md) {
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = x->nmd;
  ops[0].data.send_initial_metadata.metadata = x->md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = init_md;
}

static ProtobufCMessage *unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d, rpc_err *e) {
  grpc_byte_buffer_reader rd;
  ProtobufCMessage *m = NULL;
  if (grpc_byte_buffer_reader_init(&rd, bb)) {
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    grpc_byte_buffer_reader_destroy(&rd);
  }
  grpc_byte_buffer_destroy(bb);
  if (m == NULL) {
    e->code = GRPC_STATUS_INTERNAL;
    snprintf(e->msg, sizeof(e->msg), "the answer does not decode as %s", d->name);
  }
  return m;
}

static void set_status(rpc_err *e, grpc_status_code st, grpc_slice details) {
  e->code = (int)st;
  char *d = grpc_slice_to_c_string(details);
  snprintf(e->msg, sizeof(e->msg), "%s", d);
  gpr_free(d);
  grpc_slice_unref(details);
}

ProtobufCMessage *ctl_unary(ctl *c, const char *method, const ProtobufCMessage *req,
                            const ProtobufCMessageDescriptor *resp, rpc_err *e) {
  memset(e, 0, sizeof(*e));
  callctx x;
  begin(c, &x, method);
  grpc_byte_buffer *send = pack(req), *recv = NULL;
  grpc_metadata_array init_md, trail_md;
  grpc_metadata_array_init(&init_md);
  grpc_metadata_array_init(&trail_md);
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  request_ops(ops, &x, send, &init_md);
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
  ops[5].data.recv_status_on_client.status = &st;
  ops[5].data.recv_status_on_client.status_details = &details;
  int tag;
  ProtobufCMessage *out = NULL;
  if (grpc_call_start_batch(x.call, ops, 6, &tag, NULL) == GRPC_CALL_OK) {
    pluck(&x, &tag);
    set_status(e, st, details);
    if (st == GRPC_STATUS_OK && recv != NULL) out = unpack(recv, resp, e);
    else if (recv != NULL) grpc_byte_buffer_destroy(recv);
    if (st == GRPC_STATUS_OK && recv == NULL) {
      e->code = GRPC_STATUS_INTERNAL;
      snprintf(e->msg, sizeof(e->msg), "no answer message");
    }
  } else {
    grpc_slice_unref(details);
    e->code = GRPC_STATUS_INTERNAL;
    snprintf(e->msg, sizeof(e->msg), "cannot start the call");
  }
  grpc_byte_buffer_destroy(send);
  grpc_metadata_array_destroy(&init_md);
  grpc_metadata_array_destroy(&trail_md);
  end(&x);
  return out;
}

void ctl_stream(ctl *c, const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp,
                ctl_each_fn fn, void *ctx, rpc_err *e) {
  memset(e, 0, sizeof(*e));
  callctx x;
  begin(c, &x, method);
  grpc_byte_buffer *send = pack(req);
  grpc_metadata_array init_md, trail_md;
  grpc_metadata_array_init(&init_md);
  grpc_metadata_array_init(&trail_md);
  grpc_op ops[4];
  memset(ops, 0, sizeof(ops));
  request_ops(ops, &x, send, &init_md);
  int tag;
  bool going = grpc_call_start_batch(x.call, ops, 4, &tag, NULL) == GRPC_CALL_OK, stopped = false;
  if (going) pluck(&x, &tag);
  while (going) {
    grpc_byte_buffer *recv = NULL;
    grpc_op r;
    memset(&r, 0, sizeof(r));
    r.op = GRPC_OP_RECV_MESSAGE;
    r.data.recv_message.recv_message = &recv;
    if (grpc_call_start_batch(x.call, &r, 1, &tag, NULL) != GRPC_CALL_OK) break;
    pluck(&x, &tag);
    if (recv == NULL) break; /* the stream ended */
    ProtobufCMessage *m = unpack(recv, resp, e);
    if (m == NULL || !fn(ctx, m)) {
      stopped = m != NULL; /* the caller has what it wanted */
      grpc_call_cancel(x.call, NULL);
      break;
    }
  }
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op s;
  memset(&s, 0, sizeof(s));
  s.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  s.data.recv_status_on_client.trailing_metadata = &trail_md;
  s.data.recv_status_on_client.status = &st;
  s.data.recv_status_on_client.status_details = &details;
  if (grpc_call_start_batch(x.call, &s, 1, &tag, NULL) == GRPC_CALL_OK) pluck(&x, &tag);
  if (e->code == 0 && !stopped) set_status(e, st, details);
  else grpc_slice_unref(details);
  grpc_byte_buffer_destroy(send);
  grpc_metadata_array_destroy(&init_md);
  grpc_metadata_array_destroy(&trail_md);
  end(&x);
}

int ctl_act(ctl *c, const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp,
            const char *what) {
  rpc_err e;
  ProtobufCMessage *r = ctl_unary(c, method, req, resp, &e);
  if (r == NULL) return ctl_fail(&e, what);
  protobuf_c_message_free_unpacked(r, NULL);
  return EX_OK;
}
