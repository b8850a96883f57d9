/* callvt.h -- two kinds of call reach the engine from server/: gRPC calls
 * (bridge.c) and in-process calls made by the HTTP API (localcall.c).  A
 * hub is given one dts_call_ops table (actors/call.h); this one forwards
 * each operation to the table the call record starts with.
 *
 * Every call record of server/ begins with `const dts_call_ops *vt`.
 */
#ifndef DTS_SERVER_CALLVT_H
#define DTS_SERVER_CALLVT_H

#include "actors/call.h"

/* The first member of every server/ call record. */
typedef struct dts_call_head {
  const dts_call_ops *vt;
} dts_call_head;

/* What hubs are created with (dts_hub_config.call_ops). */
extern const dts_call_ops dts_server_call_ops;

#endif
