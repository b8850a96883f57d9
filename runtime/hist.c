/* hist.c -- see hist.h. */
#include "runtime/hist.h"

void dts_hist_add(dts_hist *h, uint64_t ns) {
  uint64_t us = ns / 1000;
  int i = 0;
  while (i < DTS_HIST_BOUNDS && us > (1ULL << i)) i++; /* the first bound >= the sample */
  atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

double dts_hist_bound_s(int i) { return (double)(1ULL << i) / 1e6; }

void dts_hist_read(dts_hist *h, dts_hist_snap *out) {
  out->count = 0;
  for (int i = 0; i <= DTS_HIST_BOUNDS; i++) {
    out->bucket[i] = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    out->count += out->bucket[i];
  }
  out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}
