/* log.h -- levelled logging to stderr, plain text or JSON lines.
 *
 * Any thread may log.  Each record is formatted into one buffer and written
 * with a single write(2), so lines from different threads never interleave.
 * Level and format are process-wide and set once at start-up (they are
 * atomics, so changing them later is safe but not ordered with other logs).
 */
#ifndef DTS_RUNTIME_LOG_H
#define DTS_RUNTIME_LOG_H

#include <stdbool.h>

typedef enum {
  DTS_LOG_DEBUG = 0,
  DTS_LOG_INFO,
  DTS_LOG_WARN,
  DTS_LOG_ERROR,
  DTS_LOG_OFF
} dts_log_level;

typedef enum { DTS_LOG_TEXT = 0, DTS_LOG_JSON } dts_log_format;

void dts_log_set_level(dts_log_level lvl);
void dts_log_set_format(dts_log_format fmt);
dts_log_level dts_log_get_level(void);

/* Parses "debug|info|warn|error|off" / "text|json"; false if unknown. */
bool dts_log_parse_level(const char *s, dts_log_level *out);
bool dts_log_parse_format(const char *s, dts_log_format *out);

/* `module` is a short static tag ("sched", "grpc", "hub"). */
void dts_log(dts_log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define DTS_DEBUG(mod, ...)                                                    \
  do {                                                                         \
    if (dts_log_get_level() <= DTS_LOG_DEBUG) dts_log(DTS_LOG_DEBUG, mod, __VA_ARGS__); \
  } while (0)
#define DTS_INFO(mod, ...) dts_log(DTS_LOG_INFO, mod, __VA_ARGS__)
#define DTS_WARN(mod, ...) dts_log(DTS_LOG_WARN, mod, __VA_ARGS__)
#define DTS_ERROR(mod, ...) dts_log(DTS_LOG_ERROR, mod, __VA_ARGS__)

/* Rate limiting for lines that a peer can cause at will (stale completions
 * from a misbehaving worker): at most `burst` lines per `window_ns`.  The
 * first line let through after some were held back says how many.  Owned
 * by one thread (an actor). */
typedef struct dts_ratelimit {
  unsigned long long window_start; /* monotonic ns */
  int used;
  long suppressed;
} dts_ratelimit;

/* True when a line may be logged now; *held gets the number held back
 * since the last line that was (0 most of the time). */
bool dts_ratelimit_allow(dts_ratelimit *r, int burst, unsigned long long window_ns, long *held);

/* Invariant check: prints file/line and aborts.  Never for wire or disk
 * input, which is validated and answered instead. */
#define DTS_ASSERT(cond)                                                       \
  do {                                                                         \
    if (!(cond)) dts_assert_fail(#cond, __FILE__, __LINE__);                   \
  } while (0)
_Noreturn void dts_assert_fail(const char *what, const char *file, int line);

#endif
