/* builders.c -- see builders.h. */
#include "tests/fuzz/builders.h"

#define ST(x) ORCHESTRATION_STATUS__ORCHESTRATION_STATUS_##x
#define ACT(x) ORCHESTRATOR_ACTION__ORCHESTRATOR_ACTION_TYPE_##x

OrchestratorAction *a_task(OrchestratorAction *a, ScheduleTaskAction *s, int id, const char *name) {
  orchestrator_action__init(a);
  schedule_task_action__init(s);
  s->name = (char *)name;
  a->id = id;
  a->orchestrator_action_type_case = ACT(SCHEDULE_TASK);
  a->schedule_task = s;
  return a;
}

OrchestratorAction *a_timer(OrchestratorAction *a, CreateTimerAction *t, Google__Protobuf__Timestamp *ts,
                                   int id, int64_t secs) {
  orchestrator_action__init(a);
  create_timer_action__init(t);
  google__protobuf__timestamp__init(ts);
  ts->seconds = secs;
  t->fire_at = ts;
  a->id = id;
  a->orchestrator_action_type_case = ACT(CREATE_TIMER);
  a->create_timer = t;
  return a;
}

OrchestratorAction *a_sub(OrchestratorAction *a, CreateSubOrchestrationAction *c, int id, const char *child) {
  orchestrator_action__init(a);
  create_sub_orchestration_action__init(c);
  c->instance_id = (char *)child;
  c->name = "child";
  a->id = id;
  a->orchestrator_action_type_case = ACT(CREATE_SUB_ORCHESTRATION);
  a->create_sub_orchestration = c;
  return a;
}

OrchestratorAction *a_send(OrchestratorAction *a, SendEventAction *s, OrchestrationInstance *oi, int id,
                                  const char *to) {
  orchestrator_action__init(a);
  send_event_action__init(s);
  orchestration_instance__init(oi);
  oi->instance_id = (char *)to;
  s->instance = oi;
  s->name = "ev";
  a->id = id;
  a->orchestrator_action_type_case = ACT(SEND_EVENT);
  a->send_event = s;
  return a;
}

OrchestratorAction *a_done(OrchestratorAction *a, CompleteOrchestrationAction *c,
                                  Google__Protobuf__StringValue *sv, int status, const char *result) {
  orchestrator_action__init(a);
  complete_orchestration_action__init(c);
  c->orchestration_status = status;
  c->result = dts_sv(sv, result);
  a->id = 99;
  a->orchestrator_action_type_case = ACT(COMPLETE_ORCHESTRATION);
  a->complete_orchestration = c;
  return a;
}

OrchestratorAction *a_terminate(OrchestratorAction *a, TerminateOrchestrationAction *t, int id,
                                       const char *target) {
  orchestrator_action__init(a);
  terminate_orchestration_action__init(t);
  t->instance_id = (char *)target;
  t->recurse = true;
  a->id = id;
  a->orchestrator_action_type_case = ACT(TERMINATE_ORCHESTRATION);
  a->terminate_orchestration = t;
  return a;
}

OrchestratorAction *a_entity(OrchestratorAction *a, SendEntityMessageAction *sm, int id, int kind,
                                    EntityOperationSignaledEvent *sig, EntityOperationCalledEvent *call,
                                    EntityLockRequestedEvent *lock, EntityUnlockSentEvent *unlock,
                                    Google__Protobuf__StringValue *target, char **lockset, size_t nlock) {
  orchestrator_action__init(a);
  send_entity_message_action__init(sm);
  a->id = id;
  a->orchestrator_action_type_case = ACT(SEND_ENTITY_MESSAGE);
  a->send_entity_message = sm;
  switch (kind) {
  case 0:
    entity_operation_signaled_event__init(sig);
    sig->request_id = "11111111-1111-1111-1111-111111111111";
    sig->operation = "add";
    sig->target_instance_id = target;
    sm->entity_message_type_case = SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_SIGNALED;
    sm->entity_operation_signaled = sig;
    break;
  case 1:
    entity_operation_called_event__init(call);
    call->request_id = "22222222-2222-2222-2222-222222222222";
    call->operation = "get";
    call->target_instance_id = target;
    sm->entity_message_type_case = SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_OPERATION_CALLED;
    sm->entity_operation_called = call;
    break;
  case 2:
    entity_lock_requested_event__init(lock);
    lock->critical_section_id = "33333333-3333-3333-3333-333333333333";
    lock->lock_set = lockset;
    lock->n_lock_set = nlock;
    sm->entity_message_type_case = SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_LOCK_REQUESTED;
    sm->entity_lock_requested = lock;
    break;
  default:
    entity_unlock_sent_event__init(unlock);
    unlock->critical_section_id = "33333333-3333-3333-3333-333333333333";
    unlock->target_instance_id = target;
    sm->entity_message_type_case = SEND_ENTITY_MESSAGE_ACTION__ENTITY_MESSAGE_TYPE_ENTITY_UNLOCK_SENT;
    sm->entity_unlock_sent = unlock;
    break;
  }
  return a;
}

