/* storage.c -- bench/storage: what group commit buys with fsync durability.
 *
 * A actors (default 64) each commit B batches (default 200) in a row, as a
 * hub actor does: submit a batch, wait for its commit message, submit the
 * next.  Every batch is ~4 puts of ~200 bytes (an orchestration turn's
 * history, inbox delete, record).  Three runs in one process, each on a
 * fresh LevelDB directory:
 *   fsync + group commit   (--durability=fsync, dtsd's default grouping)
 *   fsync, one per batch   (the baseline: group size 1)
 *   os   + group commit    (--durability=os, for reference)
 * Prints batches/s, LevelDB writes (= fsyncs) and the ratio.
 *
 * Usage: bench_storage [--actors A] [--batches B] [--dir PATH]
 */
#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/sched.h"
#include "runtime/timer.h"
#include "storage/store.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int nactors = 64, nbatches = 200;
static dts_store *store;
static atomic_long done;

typedef struct committer {
  dts_actor a;
  int id, left;
} committer;

static void step(dts_actor *self, dts_msg *m) {
  (void)m;
  committer *c = (committer *)self;
  if (c->left == 0) {
    atomic_fetch_add(&done, 1);
    return;
  }
  dts_batch *b = dts_batch_create();
  char k[64], v[200];
  memset(v, 'v', sizeof(v));
  for (int i = 0; i < 4; i++) {
    int n = snprintf(k, sizeof(k), "bench\x01%06d\x01%06d\x01%d", c->id, c->left, i);
    dts_batch_put(b, k, (size_t)n, v, sizeof(v));
  }
  c->left--;
  dts_store_submit(store, b, self, dts_msg_alloc(1, sizeof(dts_msg)));
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct result {
  double rate;
  uint64_t writes;
} result;

static result run(const char *root, const char *tag, dts_durability d, int group) {
  char dir[512], err[512];
  snprintf(dir, sizeof(dir), "%s/%s", root, tag);
  if (dts_store_open(dir, d, &store, err, sizeof(err)) != DTS_OK) {
    fprintf(stderr, "bench_storage: %s\n", err);
    exit(1);
  }
  dts_store_set_group_max(store, group);
  dts_sched *s = dts_sched_create(0);
  committer *cs = dts_calloc((size_t)nactors, sizeof(*cs));
  atomic_store(&done, 0);
  double t0 = now();
  for (int i = 0; i < nactors; i++) {
    dts_actor_init(&cs[i].a, s, step, NULL);
    cs[i].id = i;
    cs[i].left = nbatches;
    dts_send(&cs[i].a, dts_msg_alloc(1, sizeof(dts_msg)));
  }
  while (atomic_load(&done) < nactors) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL); /* polling the finish line, not waiting for an effect */
  }
  double dt = now() - t0;
  dts_store_stats st;
  dts_store_get_stats(store, &st);
  dts_store_close(store);
  dts_sched_destroy(s);
  for (int i = 0; i < nactors; i++) dts_actor_unref(&cs[i].a);
  dts_free(cs);
  return (result){(double)nactors * nbatches / dt, st.writes};
}

int main(int argc, char **argv) {
  const char *root = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--actors") == 0 && i + 1 < argc) nactors = atoi(argv[++i]);
    else if (strcmp(argv[i], "--batches") == 0 && i + 1 < argc) nbatches = atoi(argv[++i]);
    else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) root = argv[++i];
    else {
      fprintf(stderr, "usage: bench_storage [--actors A] [--batches B] [--dir PATH]\n");
      return 2;
    }
  }
  char tmp[] = "/tmp/dtsd-bench-storage-XXXXXX";
  if (root == NULL) root = mkdtemp(tmp);
  dts_log_set_level(DTS_LOG_WARN);
  result g = run(root, "fsync-group", DTS_DURABILITY_FSYNC, 1024);
  result one = run(root, "fsync-single", DTS_DURABILITY_FSYNC, 1);
  result os = run(root, "os-group", DTS_DURABILITY_OS, 1024);
  long total = (long)nactors * nbatches;
  printf("bench_storage: %d actors x %d batches (4 puts of 200 B each), dir %s\n", nactors, nbatches, root);
  printf("%-28s %12s %10s %14s\n", "mode", "batches/s", "writes", "batches/write");
  printf("%-28s %12.0f %10llu %14.1f\n", "fsync + group commit", g.rate, (unsigned long long)g.writes, (double)total / (double)g.writes);
  printf("%-28s %12.0f %10llu %14.1f\n", "fsync, one per batch (base)", one.rate, (unsigned long long)one.writes, (double)total / (double)one.writes);
  printf("%-28s %12.0f %10llu %14.1f\n", "os + group commit", os.rate, (unsigned long long)os.writes, (double)total / (double)os.writes);
  printf("group commit / one fsync per batch: %.1fx\n", g.rate / one.rate);
  printf("{\"bench\":\"storage\",\"actors\":%d,\"batches\":%d,\"fsync_group\":%.0f,\"fsync_single\":%.0f,\"os_group\":%.0f,\"ratio\":%.2f}\n",
         nactors, nbatches, g.rate, one.rate, os.rate, g.rate / one.rate);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "bench_storage: could not remove %s\n", root);
  return 0;
}
