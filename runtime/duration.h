/* duration.h -- durations as people write them on a command line or in a
 * configuration: "500ms", "30s", "15m", "24h", "7d" (and "0"). */
#ifndef DTS_RUNTIME_DURATION_H
#define DTS_RUNTIME_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parses the `len` bytes at s: NULL with *ns set, or a static reason.  At
 * most 100,000 days. */
const char *dts_duration_parse(const char *s, size_t len, int64_t *ns);

/* A retention policy: "default=30d,completed=1h,failed=0" (statuses
 * default, completed, failed, canceled, terminated; "keep" unsets) into
 * out[5] in that order (-1 = keep).  NULL or a static reason. */
const char *dts_retention_parse(const char *spec, int64_t out[5]);

#endif
