/* workitem.c -- protocol shapes the actors share: events, the messages
 * between actors, instance states for answers, completion tokens.
 */
#include "actors/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dts_buf eng_ev_pack(HistoryEvent *e, int32_t id, int64_t ts) {
  Google__Protobuf__Timestamp t;
  e->event_id = id;
  e->timestamp = dts_ts_from_ns(&t, ts);
  return dts_pb_pack(&e->base);
}

dts_buf eng_ev_raised(const char *name, Google__Protobuf__StringValue *input, int64_t ts) {
  HistoryEvent e = HISTORY_EVENT__INIT;
  EventRaisedEvent er = EVENT_RAISED_EVENT__INIT;
  er.name = (char *)name;
  er.input = input;
  e.event_type_case = HISTORY_EVENT__EVENT_TYPE_EVENT_RAISED;
  e.event_raised = &er;
  return eng_ev_pack(&e, -1, ts);
}

static dts_buf msg_pack(dts_buf event, const char *expect_exec, const char *sender, bool from_parent, dts_buf start) {
  Dtsd__Store__Message m = DTSD__STORE__MESSAGE__INIT;
  m.event.data = event.p;
  m.event.len = event.n;
  m.expect_exec = (char *)(expect_exec ? expect_exec : "");
  m.sender = (char *)(sender ? sender : "");
  m.from_parent = from_parent;
  m.start.data = start.p;
  m.start.len = start.n;
  return dts_pb_pack(&m.base);
}

dts_buf eng_msg_pack(dts_buf event, const char *expect_exec, const char *sender) {
  return msg_pack(event, expect_exec, sender, false, (dts_buf){NULL, 0});
}

void eng_post_ex(eng_actor *a, eng_tx *tx, char kind, const char *id, dts_buf event, const char *expect_exec,
                 bool from_parent, dts_buf start) {
  dts_buf val = msg_pack(event, expect_exec, a->id, from_parent, start);
  dts_buf_free(&event);
  dts_buf_free(&start);
  eng_post_raw(a, tx, kind, id, val);
}

void eng_payload_too_big(char *msg, size_t len, const char *what, size_t limit) {
  snprintf(msg, len, "%s is over the payload limit of %zu bytes (--max-payload / DTSD_MAX_PAYLOAD)", what, limit);
}

/* ---- OrchestrationState ---------------------------------------------------- */

void eng_state_fill(eng_state_buf *b, const dts_inst_rec *r, bool io) {
  orchestration_state__init(&b->s);
  b->s.instance_id = r->id;
  b->s.name = r->name;
  b->s.version = dts_sv(&b->v, r->version);
  b->s.orchestration_status = r->status;
  if (r->sched_start) b->s.scheduled_start_timestamp = dts_ts_from_ns(&b->ss, r->sched_start);
  b->s.created_timestamp = dts_ts_from_ns(&b->ct, r->created);
  b->s.last_updated_timestamp = dts_ts_from_ns(&b->lu, r->updated);
  if (io) {
    b->s.input = dts_sv(&b->i, r->input);
    b->s.output = dts_sv(&b->o, r->output);
    b->s.custom_status = dts_sv(&b->cs, r->custom_status);
  }
  b->fd = NULL;
  if (r->has_failure) {
    b->fd = task_failure_details__unpack(NULL, r->failure.n, r->failure.p);
    b->s.failure_details = b->fd;
  }
  b->s.execution_id = dts_sv(&b->ex, r->exec_id);
  if (r->completed) b->s.completed_timestamp = dts_ts_from_ns(&b->co, r->completed);
  b->s.parent_instance_id = dts_sv(&b->pid, r->parent_id);
  b->tags = dts_tags_of(&orchestration_state__tags_entry__descriptor, r);
  b->s.n_tags = b->tags.n;
  b->s.tags = (OrchestrationState__TagsEntry **)b->tags.p;
}

void eng_state_done(eng_state_buf *b) {
  if (b->fd) task_failure_details__free_unpacked(b->fd, NULL);
  dts_tags_free(&b->tags);
}

dts_buf eng_instance_response(const dts_inst_rec *r, bool io) {
  GetInstanceResponse resp = GET_INSTANCE_RESPONSE__INIT;
  if (r == NULL) return dts_pb_pack(&resp.base);
  eng_state_buf sb;
  resp.exists = true;
  eng_state_fill(&sb, r, io);
  resp.orchestration_state = &sb.s;
  dts_buf b = dts_pb_pack(&resp.base);
  eng_state_done(&sb);
  return b;
}

dts_buf eng_empty_answer(int method) {
  switch (method) {
  case DTS_M_ABANDON_ORCHESTRATOR: {
    AbandonOrchestrationTaskResponse r = ABANDON_ORCHESTRATION_TASK_RESPONSE__INIT;
    return dts_pb_pack(&r.base);
  }
  case DTS_M_ABANDON_ACTIVITY: {
    AbandonActivityTaskResponse r = ABANDON_ACTIVITY_TASK_RESPONSE__INIT;
    return dts_pb_pack(&r.base);
  }
  case DTS_M_ABANDON_ENTITY: {
    AbandonEntityTaskResponse r = ABANDON_ENTITY_TASK_RESPONSE__INIT;
    return dts_pb_pack(&r.base);
  }
  default: {
    CompleteTaskResponse r = COMPLETE_TASK_RESPONSE__INIT;
    return dts_pb_pack(&r.base);
  }
  }
}

/* ---- logs ---------------------------------------------------------------------- */

static pthread_mutex_t stale_mu = PTHREAD_MUTEX_INITIALIZER;
static dts_ratelimit stale_rl;

void eng_log_stale(dts_hub *h, const char *fmt, ...) {
  long held;
  pthread_mutex_lock(&stale_mu);
  bool ok = dts_ratelimit_allow(&stale_rl, 10, 60000000000ULL, &held);
  pthread_mutex_unlock(&stale_mu);
  if (!ok) return;
  char line[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (held > 0) DTS_INFO("hub", "[%s] %s (%ld more such lines held back)", h->name, line, held);
  else DTS_INFO("hub", "[%s] %s", h->name, line);
}

/* ---- completion tokens ---------------------------------------------------------- */

/* The kind of work ('o', 'a', 'e') and 128 random bits as hex, so nobody
 * completes work leased to another worker by guessing: without entropy
 * there are no safe tokens, and dtsd stops. */
void eng_new_token(char kind, char out[TOKEN_LEN + 1]) {
  uint8_t b[16];
  if (!dts_random16(b)) {
    DTS_ERROR("hub", "getrandom failed (%s): no safe completion tokens", strerror(errno));
    abort();
  }
  out[0] = kind;
  *dts_hex(out + 1, b, 16) = '\0';
  memset(b, 0, sizeof(b));
}
