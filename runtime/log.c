/* log.c -- see log.h.  One write(2) per record keeps lines whole. */
#include "runtime/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = DTS_LOG_INFO;
static atomic_int log_format = DTS_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void dts_log_set_level(dts_log_level lvl) { atomic_store(&log_level, (int)lvl); }
void dts_log_set_format(dts_log_format fmt) { atomic_store(&log_format, (int)fmt); }
dts_log_level dts_log_get_level(void) {
  return (dts_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

bool dts_log_parse_level(const char *s, dts_log_level *out) {
  for (int i = 0; i <= DTS_LOG_OFF; i++) {
    if (strcasecmp(s, level_names[i]) == 0) {
      *out = (dts_log_level)i;
      return true;
    }
  }
  return false;
}

bool dts_log_parse_format(const char *s, dts_log_format *out) {
  if (strcasecmp(s, "text") == 0) *out = DTS_LOG_TEXT;
  else if (strcasecmp(s, "json") == 0) *out = DTS_LOG_JSON;
  else return false;
  return true;
}

/* Appends `s` JSON-escaped to buf[*n..cap); truncates silently. */
static void json_escape(char *buf, size_t cap, size_t *n, const char *s) {
  for (; *s != '\0' && *n + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      buf[(*n)++] = '\\';
      buf[(*n)++] = (char)c;
    } else if (c < 0x20) {
      *n += (size_t)snprintf(buf + *n, cap - *n, "\\u%04x", c);
    } else {
      buf[(*n)++] = (char)c;
    }
  }
}

void dts_log(dts_log_level lvl, const char *module, const char *fmt, ...) {
  if ((int)lvl < atomic_load_explicit(&log_level, memory_order_relaxed)) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);

  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  size_t w = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + w, sizeof(when) - w, ".%06ldZ", ts.tv_nsec / 1000);

  char line[2600];
  size_t n;
  if (atomic_load_explicit(&log_format, memory_order_relaxed) == DTS_LOG_JSON) {
    n = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"%s\",\"msg\":\"",
                         when, level_names[lvl], module);
    json_escape(line, sizeof(line) - 3, &n, msg);
    memcpy(line + n, "\"}\n", 3);
    n += 3;
  } else {
    n = (size_t)snprintf(line, sizeof(line), "%s %-5s [%s] %s\n", when, level_names[lvl], module, msg);
    if (n >= sizeof(line)) {
      n = sizeof(line) - 1;
      line[n - 1] = '\n';
    }
  }
  ssize_t r = write(STDERR_FILENO, line, n);
  (void)r; /* nowhere left to report a failed log write */
}

void dts_assert_fail(const char *what, const char *file, int line) {
  fprintf(stderr, "dtsd: assertion failed: %s (%s:%d)\n", what, file, line);
  abort();
}

bool dts_ratelimit_allow(dts_ratelimit *r, int burst, unsigned long long window_ns, long *held) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  unsigned long long now = (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
  if (now - r->window_start >= window_ns) {
    r->window_start = now;
    r->used = 0;
  }
  *held = 0;
  if (r->used >= burst) {
    r->suppressed++;
    return false;
  }
  r->used++;
  *held = r->suppressed;
  r->suppressed = 0;
  return true;
}
