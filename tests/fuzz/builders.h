/* builders.h -- orchestrator actions built in place, for the fuzzers' seed
 * writer and the hardening tests.  Each fills the caller's structs (no
 * allocation) and returns `a`. */
#ifndef DTS_TESTS_FUZZ_BUILDERS_H
#define DTS_TESTS_FUZZ_BUILDERS_H

#include "proto/pb.h"

OrchestratorAction *a_task(OrchestratorAction *a, ScheduleTaskAction *s, int id, const char *name);
/* A timer firing at `secs` since the epoch. */
OrchestratorAction *a_timer(OrchestratorAction *a, CreateTimerAction *t, Google__Protobuf__Timestamp *ts, int id,
                            int64_t secs);
OrchestratorAction *a_sub(OrchestratorAction *a, CreateSubOrchestrationAction *c, int id, const char *child);
OrchestratorAction *a_send(OrchestratorAction *a, SendEventAction *s, OrchestrationInstance *oi, int id,
                           const char *to);
OrchestratorAction *a_done(OrchestratorAction *a, CompleteOrchestrationAction *c, Google__Protobuf__StringValue *sv,
                           int status, const char *result);
OrchestratorAction *a_terminate(OrchestratorAction *a, TerminateOrchestrationAction *t, int id, const char *target);
/* An entity message: kind 0 signal, 1 call, 2 lock (lockset), 3 unlock. */
OrchestratorAction *a_entity(OrchestratorAction *a, SendEntityMessageAction *sm, int id, int kind,
                             EntityOperationSignaledEvent *sig, EntityOperationCalledEvent *call,
                             EntityLockRequestedEvent *lock, EntityUnlockSentEvent *unlock,
                             Google__Protobuf__StringValue *target, char **lockset, size_t nlock);

#endif
