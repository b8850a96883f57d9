/* methods.h -- the wire side of the methods: each method's path, request
 * type and whether it streams.  Used by the bridge (routing, decoding) and
 * by the tests and fuzzers that decode requests as the bridge does. */
#ifndef DTS_SERVER_METHODS_H
#define DTS_SERVER_METHODS_H

#include "actors/methods.h"
#include "proto/pb.h"

#include <stdbool.h>

typedef struct dts_method_info {
  const char *path;                        /* "/TaskHubSidecarService/Hello" */
  const char *name;                        /* "Hello", for logs */
  const ProtobufCMessageDescriptor *req;   /* request type */
  bool server_streaming;
} dts_method_info;

extern const dts_method_info dts_methods[DTS_M_COUNT];

#endif
