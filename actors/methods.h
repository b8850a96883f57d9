/* methods.h -- the 29 methods of TaskHubSidecarService, their request
 * types, and who serves them.  Shared by the bridge (routing, decoding) and
 * the hub actor (dispatch). */
#ifndef DTS_ACTORS_METHODS_H
#define DTS_ACTORS_METHODS_H

#include "proto/pb.h"

#include <stdbool.h>

typedef enum {
  DTS_M_HELLO,
  DTS_M_START_INSTANCE,
  DTS_M_GET_INSTANCE,
  DTS_M_REWIND_INSTANCE,
  DTS_M_RESTART_INSTANCE,
  DTS_M_WAIT_START,
  DTS_M_WAIT_COMPLETION,
  DTS_M_RAISE_EVENT,
  DTS_M_TERMINATE,
  DTS_M_SUSPEND,
  DTS_M_RESUME,
  DTS_M_QUERY_INSTANCES,
  DTS_M_LIST_INSTANCE_IDS,
  DTS_M_PURGE_INSTANCES,
  DTS_M_GET_WORK_ITEMS,
  DTS_M_COMPLETE_ACTIVITY,
  DTS_M_COMPLETE_ORCHESTRATOR,
  DTS_M_COMPLETE_ENTITY,
  DTS_M_STREAM_HISTORY,
  DTS_M_CREATE_TASK_HUB,
  DTS_M_DELETE_TASK_HUB,
  DTS_M_SIGNAL_ENTITY,
  DTS_M_GET_ENTITY,
  DTS_M_QUERY_ENTITIES,
  DTS_M_CLEAN_ENTITY_STORAGE,
  DTS_M_ABANDON_ACTIVITY,
  DTS_M_ABANDON_ORCHESTRATOR,
  DTS_M_ABANDON_ENTITY,
  DTS_M_SKIP_GRACEFUL_TERMINATIONS,
  DTS_M_ADMIN_SET_RETENTION, /* dtsd.admin.Admin, ours */
  DTS_M_ADMIN_GET_RETENTION,
  DTS_M_COUNT
} dts_method;

typedef struct dts_method_info {
  const char *path;                        /* "/TaskHubSidecarService/Hello" */
  const char *name;                        /* "Hello", for logs */
  const ProtobufCMessageDescriptor *req;   /* request type */
  bool server_streaming;
} dts_method_info;

extern const dts_method_info dts_methods[DTS_M_COUNT];

#endif
