/* lookup.c -- bench_lookup: what bloom filters and a block cache buy a
 * lookup of an id that is not stored -- every StartInstance of a new id
 * makes one -- in a store of a million instance records.
 *
 * One store is written (N records of ~300 bytes under random ids, with
 * bloom filters in its tables), then read in two runs on the same data:
 *   baseline  no filter policy (the tables' filters are ignored), LevelDB's
 *             own 8 MiB block cache -- dtsd before the hardening issue
 *   bloom     10 bits a key and a 64 MiB block cache -- dtsd's defaults
 * Each run times L lookups of absent ids that fall between stored ones (so
 * every level has a table whose key range covers them) and L of present
 * ids, after dropping the kernel's page cache when asked (--drop-caches,
 * root), and prints per-lookup p50/p99/mean and the ratio.
 *
 * Usage: bench_lookup [--records N] [--lookups L] [--drop-caches] [--dir PATH]
 */
#include "runtime/log.h"
#include "storage/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* "hub\0I" + 32 hex digits from a counter through a mixing function: ids
 * spread over the key space like the SDKs' random ones.  `absent` ids end
 * in 'z', which no stored id does, and sort right after a stored one. */
static size_t key_of(char *k, unsigned long i, bool absent) {
  unsigned long long x = (unsigned long long)i * 0x9e3779b97f4a7c15ULL;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 32;
  memcpy(k, "hub\0I", 5);
  int n = snprintf(k + 5, 64, "%016llx%016llx%s", x, x * 31, absent ? "z" : "");
  return 5 + (size_t)n;
}

typedef struct stats {
  double p50, p99, mean;
} stats;

static stats time_lookups(dts_store *s, long records, long n, bool absent) {
  double *t = malloc((size_t)n * sizeof(double)), sum = 0;
  char k[80];
  for (long i = 0; i < n; i++) {
    size_t kl = key_of(k, (unsigned long)(i * 7919) % (unsigned long)records, absent);
    char *v;
    size_t vl;
    double t0 = now_us();
    dts_err e = dts_store_get(s, k, kl, &v, &vl);
    t[i] = now_us() - t0;
    sum += t[i];
    if (e == DTS_OK) free(v);
    if ((e == DTS_OK) == absent) {
      fprintf(stderr, "bench_lookup: key %ld %s\n", i, absent ? "found" : "missing");
      exit(1);
    }
  }
  qsort(t, (size_t)n, sizeof(double), cmp_d);
  stats st = {t[n / 2], t[(size_t)((double)n * 0.99)], sum / (double)n};
  free(t);
  return st;
}

static void drop_caches(void) {
  FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
  if (f == NULL || fputs("3\n", f) < 0 || fclose(f) != 0) fprintf(stderr, "bench_lookup: cannot drop caches\n");
}

int main(int argc, char **argv) {
  long records = 1000000, lookups = 20000;
  bool drop = false;
  const char *root = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--records") == 0 && i + 1 < argc) records = atol(argv[++i]);
    else if (strcmp(argv[i], "--lookups") == 0 && i + 1 < argc) lookups = atol(argv[++i]);
    else if (strcmp(argv[i], "--drop-caches") == 0) drop = true;
    else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) root = argv[++i];
    else {
      fprintf(stderr, "usage: bench_lookup [--records N] [--lookups L] [--drop-caches] [--dir PATH]\n");
      return 2;
    }
  }
  if (records < 1000 || records > 1000000 || lookups < 100) {
    fprintf(stderr, "bench_lookup: --records 1000..1000000, --lookups >= 100\n");
    return 2;
  }
  dts_log_set_level(DTS_LOG_WARN);
  char tmp[] = "/tmp/dtsd-bench-lookup-XXXXXX", dir[600], err[512];
  if (root == NULL) root = mkdtemp(tmp);
  snprintf(dir, sizeof(dir), "%s/db", root);
  dts_store_options o;
  dts_store_options_init(&o);
  o.min_free = 0;
  dts_store *s;
  if (dts_store_open_with(dir, &o, &s, err, sizeof(err)) != DTS_OK) {
    fprintf(stderr, "bench_lookup: %s\n", err);
    return 1;
  }
  char k[80], v[300];
  memset(v, 'r', sizeof(v));
  for (long i = 0; i < records;) {
    dts_batch *b = dts_batch_create();
    for (int j = 0; j < 1000 && i < records; j++, i++) {
      size_t kl = key_of(k, (unsigned long)i, false);
      dts_batch_put(b, k, kl, v, sizeof(v));
    }
    if (dts_store_write(s, b) != DTS_OK) return 1;
    dts_batch_destroy(b);
  }
  dts_store_close(s); /* the next open turns the log into a table too */

  const struct {
    const char *name;
    int bloom;
    size_t cache;
  } modes[2] = {{"baseline: no bloom, 8 MiB cache", 0, 0}, {"bloom 10 bits, 64 MiB cache", 10, 64u << 20}};
  stats absent[2], present[2];
  for (int m = 0; m < 2; m++) {
    o.bloom_bits = modes[m].bloom;
    o.block_cache = modes[m].cache;
    if (drop) drop_caches();
    if (dts_store_open_with(dir, &o, &s, err, sizeof(err)) != DTS_OK) {
      fprintf(stderr, "bench_lookup: %s\n", err);
      return 1;
    }
    absent[m] = time_lookups(s, records, lookups, true);
    present[m] = time_lookups(s, records, lookups, false);
    dts_store_close(s);
  }
  printf("bench_lookup: %ld records, %ld lookups each%s\n", records, lookups, drop ? ", page cache dropped" : "");
  printf("%-34s %28s %28s\n", "mode", "absent id p50/p99/mean us", "present id p50/p99/mean us");
  for (int m = 0; m < 2; m++)
    printf("%-34s %9.2f %8.2f %9.2f %9.2f %8.2f %9.2f\n", modes[m].name, absent[m].p50, absent[m].p99,
           absent[m].mean, present[m].p50, present[m].p99, present[m].mean);
  printf("absent-id lookup, baseline / bloom: p50 %.1fx, mean %.1fx\n", absent[0].p50 / absent[1].p50,
         absent[0].mean / absent[1].mean);
  printf("{\"bench\":\"lookup\",\"records\":%ld,\"lookups\":%ld,\"dropped\":%s,\"base_absent_p50_us\":%.2f,"
         "\"base_absent_mean_us\":%.2f,\"bloom_absent_p50_us\":%.2f,\"bloom_absent_mean_us\":%.2f}\n",
         records, lookups, drop ? "true" : "false", absent[0].p50, absent[0].mean, absent[1].p50, absent[1].mean);
  char cmd[700];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "bench_lookup: could not remove %s\n", root);
  return 0;
}
