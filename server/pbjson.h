/* pbjson.h -- protobuf messages as proto3 JSON (jansson values), for the
 * HTTP API: lowerCamelCase names, 64-bit integers as strings, enums by
 * name, Timestamp as RFC 3339 text, wrappers as their value, maps as
 * objects; fields at their default value left out. */
#ifndef DTS_SERVER_PBJSON_H
#define DTS_SERVER_PBJSON_H

#include "proto/pb.h"

#include <jansson.h>

/* A new JSON value for m (never NULL). */
json_t *pbjson(const ProtobufCMessage *m);
/* The same, with m's own scalar fields written even at their default
 * (a history event's eventId 0 is an id, not an absence). */
json_t *pbjson_all(const ProtobufCMessage *m);
/* RFC 3339 UTC text with milliseconds ("2026-11-29T17:12:11.123Z") of a
 * wall-clock time in ns since the epoch. */
void pbjson_time(int64_t ns, char out[40]);
/* A JSON string of that text, or null for ns <= 0. */
json_t *pbjson_time_value(int64_t ns);
/* Parses RFC 3339 text (as above, or with an offset, any fraction) into
 * ns; false when it is not one. */
bool pbjson_parse_time(const char *s, int64_t *ns);

#endif
