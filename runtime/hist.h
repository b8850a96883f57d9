/* hist.h -- a latency histogram any thread may add to: fixed buckets with
 * upper bounds of 1 us * 2^i (1 us .. about 8.4 s) and one past them,
 * counted with relaxed atomics (a sample costs one atomic add and a sum).
 * Read as Prometheus cumulative buckets. */
#ifndef DTS_RUNTIME_HIST_H
#define DTS_RUNTIME_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define DTS_HIST_BOUNDS 24 /* finite bucket bounds; bucket DTS_HIST_BOUNDS is +Inf */

typedef struct dts_hist {
  atomic_ullong bucket[DTS_HIST_BOUNDS + 1];
  atomic_ullong sum_ns;
} dts_hist;

void dts_hist_add(dts_hist *h, uint64_t ns);
/* Upper bound of bucket i in seconds (i < DTS_HIST_BOUNDS). */
double dts_hist_bound_s(int i);
/* A snapshot: per-bucket counts (not cumulative), their sum and count. */
typedef struct dts_hist_snap {
  uint64_t bucket[DTS_HIST_BOUNDS + 1];
  uint64_t sum_ns, count;
} dts_hist_snap;
void dts_hist_read(dts_hist *h, dts_hist_snap *out);

#endif
