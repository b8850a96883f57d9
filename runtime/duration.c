/* duration.c -- see duration.h. */
#include "runtime/duration.h"

#include <stdlib.h>
#include <string.h>

#define DUR_MAX_MS (100000LL * 86400 * 1000)

const char *dts_duration_parse(const char *s, size_t len, int64_t *ns) {
  static const char *const why = "a duration is a non-negative number with a unit: ms, s, m, h or d";
  char buf[32];
  if (len == 0 || len >= sizeof(buf)) return why;
  memcpy(buf, s, len);
  buf[len] = '\0';
  if (buf[0] < '0' || buf[0] > '9') return why;
  char *end;
  long long n = strtoll(buf, &end, 10);
  size_t ul = strlen(end);
  int64_t ms_per;
  if (ul == 0 && n == 0) ms_per = 0;
  else if (ul == 2 && strcmp(end, "ms") == 0) ms_per = 1;
  else if (ul == 1 && *end == 's') ms_per = 1000;
  else if (ul == 1 && *end == 'm') ms_per = 60000;
  else if (ul == 1 && *end == 'h') ms_per = 3600000;
  else if (ul == 1 && *end == 'd') ms_per = 86400000;
  else return why;
  if (ms_per != 0 && n > DUR_MAX_MS / ms_per) return "duration too long (at most 100000 days)";
  *ns = (int64_t)n * ms_per * 1000000;
  return NULL;
}

const char *dts_retention_parse(const char *spec, int64_t out[5]) {
  for (int i = 0; i < 5; i++) out[i] = -1;
  static const char *names[5] = {"default", "completed", "failed", "canceled", "terminated"};
  const char *p = spec;
  while (*p) {
    const char *eq = strchr(p, '=');
    if (eq == NULL) return "expected status=duration, e.g. default=30d,completed=1h";
    size_t nl = (size_t)(eq - p);
    int which = -1;
    for (int i = 0; i < 5; i++)
      if (strlen(names[i]) == nl && strncmp(p, names[i], nl) == 0) which = i;
    if (which < 0) return "unknown status: use default, completed, failed, canceled or terminated";
    const char *v = eq + 1;
    const char *end = strchr(v, ',');
    size_t vl = end ? (size_t)(end - v) : strlen(v);
    if (vl == 4 && strncmp(v, "keep", 4) == 0) {
      out[which] = -1;
    } else {
      const char *why = dts_duration_parse(v, vl, &out[which]);
      if (why != NULL) return why;
    }
    if (!end) break;
    p = end + 1;
  }
  return NULL;
}
