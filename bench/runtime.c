/* runtime.c -- bench/runtime: actor runtime throughput against a baseline
 * thread pool (one mutex + condvar task queue) measured in the same run.
 *
 * Workloads (each on both runtimes, same worker count):
 *   ping-pong    two actors bounce one message N times
 *   fan-in       S sender actors each send M messages to one sink, in
 *                batches of 1,000 per turn (the batched case)
 *   fan-out/skew one producer sends to 1,000 actors that each do a little
 *                work per message: the producer's worker queues everything,
 *                so the others must steal
 *   spawn/stop   create an actor, send it one message, it stops itself
 *
 * Baseline: each message is a task {actor, payload} in one global FIFO
 * under a mutex, with a condvar for idle threads; a per-actor mutex keeps
 * actor state single-threaded, as a hand-rolled pool would.
 *
 * Usage: bench_runtime [--workers N] [--scale F]   (scale multiplies sizes)
 */
#include "runtime/alloc.h"
#include "runtime/sched.h"
#include "runtime/timer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int workers = 2;
static double scale = 1.0;

static double secs(void) { return (double)dts_now_ns() / 1e9; }

static void wait_for(atomic_long *counter, long target) {
  while (atomic_load(counter) < target) {
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
}

static inline unsigned work(unsigned n, unsigned seed) {
  unsigned x = seed;
  for (unsigned i = 0; i < n; i++) x = x * 1103515245u + 12345u;
  return x;
}

/* ======================================================================== */
/* dtsd runtime                                                             */

typedef struct bactor {
  dts_actor base;
  struct bactor *peer;
  long count;
  unsigned sink;
} bactor;

typedef struct bmsg {
  dts_msg base;
  long n;
} bmsg;

static atomic_long done;
static dts_sched *S;
static bactor *sink_actor;
static bactor **fan_targets;
static long ping_total, fanin_per_sender, fanout_rounds;
static unsigned fanout_work;

static void bfini(dts_actor *a) { dts_free(a); }

static bactor *bnew(dts_behaviour fn) {
  bactor *a = dts_calloc(1, sizeof(*a));
  dts_actor_init(&a->base, S, fn, bfini);
  return a;
}

static void bsend(bactor *to, uint32_t kind, long n) {
  bmsg *m = (bmsg *)dts_msg_alloc(kind, sizeof(bmsg));
  m->n = n;
  dts_send(&to->base, &m->base);
}

static void ping_fn(dts_actor *self, dts_msg *m) {
  bactor *a = (bactor *)self;
  long n = ((bmsg *)m)->n;
  if (n >= ping_total) {
    atomic_store(&done, n);
    return;
  }
  bsend(a->peer, 0, n + 1);
}

static void sink_fn(dts_actor *self, dts_msg *m) {
  (void)m;
  bactor *a = (bactor *)self;
  if (++a->count % 1024 == 0) atomic_fetch_add(&done, 1024);
}

static void sender_fn(dts_actor *self, dts_msg *m) {
  bactor *a = (bactor *)self;
  long left = ((bmsg *)m)->n;
  long batch = left < 1000 ? left : 1000;
  for (long i = 0; i < batch; i++) bsend(sink_actor, 0, i);
  if (left - batch > 0) bsend(a, 0, left - batch); /* yield, continue later */
}

static void target_fn(dts_actor *self, dts_msg *m) {
  bactor *a = (bactor *)self;
  a->sink = work(fanout_work, a->sink + (unsigned)((bmsg *)m)->n);
  if (++a->count % 100 == 0) atomic_fetch_add_explicit(&done, 100, memory_order_relaxed);
}

static void producer_fn(dts_actor *self, dts_msg *m) {
  (void)self;
  (void)m;
  for (long r = 0; r < fanout_rounds; r++)
    for (int i = 0; i < 1000; i++) bsend(fan_targets[i], 0, r);
}

static void suicide_fn(dts_actor *self, dts_msg *m) {
  (void)m;
  dts_actor_stop(self);
  atomic_fetch_add_explicit(&done, 1, memory_order_relaxed);
}

static double rt_pingpong(long n) {
  ping_total = n;
  atomic_store(&done, 0);
  bactor *a = bnew(ping_fn), *b = bnew(ping_fn);
  a->peer = b;
  b->peer = a;
  double t0 = secs();
  bsend(a, 0, 0);
  wait_for(&done, n);
  double dt = secs() - t0;
  dts_actor_unref(&a->base);
  dts_actor_unref(&b->base);
  return (double)n / dt;
}

static double rt_fanin(int senders, long per) {
  atomic_store(&done, 0);
  fanin_per_sender = per;
  sink_actor = bnew(sink_fn);
  bactor **s = dts_calloc((size_t)senders, sizeof(*s));
  for (int i = 0; i < senders; i++) s[i] = bnew(sender_fn);
  long total = (long)senders * per;
  double t0 = secs();
  for (int i = 0; i < senders; i++) bsend(s[i], 0, per);
  wait_for(&done, total - total % 1024);
  double dt = secs() - t0;
  for (int i = 0; i < senders; i++) dts_actor_unref(&s[i]->base);
  dts_free(s);
  dts_actor_unref(&sink_actor->base);
  return (double)total / dt;
}

static double rt_fanout(long rounds, unsigned w) {
  atomic_store(&done, 0);
  fanout_rounds = rounds;
  fanout_work = w;
  fan_targets = dts_calloc(1000, sizeof(bactor *));
  for (int i = 0; i < 1000; i++) fan_targets[i] = bnew(target_fn);
  bactor *p = bnew(producer_fn);
  double t0 = secs();
  bsend(p, 0, 0);
  wait_for(&done, rounds * 1000);
  double dt = secs() - t0;
  for (int i = 0; i < 1000; i++) dts_actor_unref(&fan_targets[i]->base);
  dts_actor_unref(&p->base);
  dts_free(fan_targets);
  return (double)(rounds * 1000) / dt;
}

static double rt_spawn(long n) {
  atomic_store(&done, 0);
  double t0 = secs();
  for (long i = 0; i < n; i++) {
    bactor *a = bnew(suicide_fn);
    bsend(a, 0, i);
    dts_actor_unref(&a->base); /* the scheduled reference keeps it alive */
  }
  wait_for(&done, n);
  return (double)n / (secs() - t0);
}

/* ======================================================================== */
/* baseline: one mutex + condvar task queue                                 */

typedef struct btask {
  struct btask *next;
  struct bl_actor *to;
  long n;
} btask;

typedef struct bl_actor {
  pthread_mutex_t mu; /* serialises this actor's handler */
  void (*fn)(struct bl_actor *, long);
  struct bl_actor *peer;
  long count;
  unsigned sink;
} bl_actor;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  btask *head, *tail;
  int waiting;
  int stop;
  pthread_t th[64];
} Q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0, {0}};

static void bl_send(bl_actor *to, long n) {
  btask *t = malloc(sizeof(*t));
  t->next = NULL;
  t->to = to;
  t->n = n;
  pthread_mutex_lock(&Q.mu);
  if (Q.tail) Q.tail->next = t;
  else Q.head = t;
  Q.tail = t;
  if (Q.waiting) pthread_cond_signal(&Q.cv);
  pthread_mutex_unlock(&Q.mu);
}

static void *bl_worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&Q.mu);
    while (Q.head == NULL && !Q.stop) {
      Q.waiting++;
      pthread_cond_wait(&Q.cv, &Q.mu);
      Q.waiting--;
    }
    if (Q.stop) {
      pthread_mutex_unlock(&Q.mu);
      return NULL;
    }
    btask *t = Q.head;
    Q.head = t->next;
    if (!Q.head) Q.tail = NULL;
    pthread_mutex_unlock(&Q.mu);
    bl_actor *a = t->to;
    pthread_mutex_lock(&a->mu);
    a->fn(a, t->n);
    pthread_mutex_unlock(&a->mu);
    free(t);
  }
}

static bl_actor *bl_new(void (*fn)(bl_actor *, long)) {
  bl_actor *a = calloc(1, sizeof(*a));
  pthread_mutex_init(&a->mu, NULL);
  a->fn = fn;
  return a;
}

static void bl_free(bl_actor *a) {
  pthread_mutex_destroy(&a->mu);
  free(a);
}

static bl_actor *bl_sink;
static bl_actor **bl_targets;

static void bl_ping(bl_actor *a, long n) {
  if (n >= ping_total) {
    atomic_store(&done, n);
    return;
  }
  bl_send(a->peer, n + 1);
}
static void bl_sink_fn(bl_actor *a, long n) {
  (void)n;
  if (++a->count % 1024 == 0) atomic_fetch_add(&done, 1024);
}
static void bl_sender(bl_actor *a, long left) {
  long batch = left < 1000 ? left : 1000;
  for (long i = 0; i < batch; i++) bl_send(bl_sink, i);
  if (left - batch > 0) bl_send(a, left - batch);
}
static void bl_target(bl_actor *a, long n) {
  a->sink = work(fanout_work, a->sink + (unsigned)n);
  if (++a->count % 100 == 0) atomic_fetch_add_explicit(&done, 100, memory_order_relaxed);
}
static void bl_producer(bl_actor *a, long n) {
  (void)a;
  (void)n;
  for (long r = 0; r < fanout_rounds; r++)
    for (int i = 0; i < 1000; i++) bl_send(bl_targets[i], r);
}
static void bl_suicide(bl_actor *a, long n) {
  (void)n;
  (void)a; /* freed by the spawner once counted: the handler holds a->mu */
  atomic_fetch_add_explicit(&done, 1, memory_order_relaxed);
}

static double bl_pingpong(long n) {
  ping_total = n;
  atomic_store(&done, 0);
  bl_actor *a = bl_new(bl_ping), *b = bl_new(bl_ping);
  a->peer = b;
  b->peer = a;
  double t0 = secs();
  bl_send(a, 0);
  wait_for(&done, n);
  double dt = secs() - t0;
  bl_free(a);
  bl_free(b);
  return (double)n / dt;
}

static double bl_fanin(int senders, long per) {
  atomic_store(&done, 0);
  bl_sink = bl_new(bl_sink_fn);
  bl_actor **s = calloc((size_t)senders, sizeof(*s));
  for (int i = 0; i < senders; i++) s[i] = bl_new(bl_sender);
  long total = (long)senders * per;
  double t0 = secs();
  for (int i = 0; i < senders; i++) bl_send(s[i], per);
  wait_for(&done, total - total % 1024);
  double dt = secs() - t0;
  /* the last partial batch may still be running: wait for the queue */
  for (;;) {
    pthread_mutex_lock(&Q.mu);
    int empty = Q.head == NULL && Q.waiting == workers;
    pthread_mutex_unlock(&Q.mu);
    if (empty) break;
  }
  for (int i = 0; i < senders; i++) bl_free(s[i]);
  free(s);
  bl_free(bl_sink);
  return (double)total / dt;
}

static double bl_fanout(long rounds, unsigned w) {
  atomic_store(&done, 0);
  fanout_rounds = rounds;
  fanout_work = w;
  bl_targets = calloc(1000, sizeof(bl_actor *));
  for (int i = 0; i < 1000; i++) bl_targets[i] = bl_new(bl_target);
  bl_actor *p = bl_new(bl_producer);
  double t0 = secs();
  bl_send(p, 0);
  wait_for(&done, rounds * 1000);
  double dt = secs() - t0;
  for (;;) {
    pthread_mutex_lock(&Q.mu);
    int idle = Q.head == NULL && Q.waiting == workers;
    pthread_mutex_unlock(&Q.mu);
    if (idle) break;
  }
  for (int i = 0; i < 1000; i++) bl_free(bl_targets[i]);
  bl_free(p);
  free(bl_targets);
  return (double)(rounds * 1000) / dt;
}

static double bl_spawn(long n) {
  atomic_store(&done, 0);
  bl_actor **all = malloc((size_t)n * sizeof(*all));
  double t0 = secs();
  for (long i = 0; i < n; i++) {
    all[i] = bl_new(bl_suicide);
    bl_send(all[i], i);
  }
  wait_for(&done, n);
  double dt = secs() - t0;
  for (;;) {
    pthread_mutex_lock(&Q.mu);
    int idle = Q.head == NULL && Q.waiting == workers;
    pthread_mutex_unlock(&Q.mu);
    if (idle) break;
  }
  for (long i = 0; i < n; i++) bl_free(all[i]);
  free(all);
  return (double)n / dt;
}

/* ======================================================================== */

static void row(const char *name, double ours, double base) {
  printf("%-28s %14.0f %14.0f %8.2fx\n", name, ours, base, ours / base);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) workers = atoi(argv[++i]);
    else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) scale = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_runtime [--workers N] [--scale F]\n");
      return 2;
    }
  }
  long ping = (long)(1000000 * scale);
  long fanin = (long)(2000000 * scale);
  long rounds = (long)(1000 * scale);
  long spawn = (long)(500000 * scale);
  if (ping < 1000) ping = 1000;
  rounds = (rounds + 99) / 100 * 100; /* targets report every 100 messages */
  if (spawn < 1000) spawn = 1000;

  S = dts_sched_create(workers);
  double r_ping = rt_pingpong(ping);
  double r_fanin = rt_fanin(8, fanin / 8);
  double r_fanout = rt_fanout(rounds, 100);
  double r_spawn = rt_spawn(spawn);
  dts_sched_stats st;
  dts_sched_get_stats(S, &st);
  dts_sched_destroy(S);

  for (int i = 0; i < workers; i++) pthread_create(&Q.th[i], NULL, bl_worker, NULL);
  double b_ping = bl_pingpong(ping);
  double b_fanin = bl_fanin(8, fanin / 8);
  double b_fanout = bl_fanout(rounds, 100);
  double b_spawn = bl_spawn(spawn);
  pthread_mutex_lock(&Q.mu);
  Q.stop = 1;
  pthread_cond_broadcast(&Q.cv);
  pthread_mutex_unlock(&Q.mu);
  for (int i = 0; i < workers; i++) pthread_join(Q.th[i], NULL);

  printf("bench_runtime: %d workers, scale %.2f\n", workers, scale);
  printf("%-28s %14s %14s %9s\n", "workload", "dtsd msg/s", "baseline/s", "ratio");
  row("ping-pong (2 actors)", r_ping, b_ping);
  row("fan-in batched (8 -> 1)", r_fanin, b_fanin);
  row("fan-out skewed (1 -> 1000)", r_fanout, b_fanout);
  row("spawn+stop (actors/s)", r_spawn, b_spawn);
  printf("scheduler: %llu turns, %llu steals, %llu parks, %llu spills\n", (unsigned long long)st.turns,
         (unsigned long long)st.steals, (unsigned long long)st.parks, (unsigned long long)st.spills);
  printf("{\"bench\":\"runtime\",\"workers\":%d,\"pingpong\":%.0f,\"pingpong_base\":%.0f,\"fanin\":%.0f,"
         "\"fanin_base\":%.0f,\"fanout\":%.0f,\"fanout_base\":%.0f,\"spawn\":%.0f,\"spawn_base\":%.0f}\n",
         workers, r_ping, b_ping, r_fanin, b_fanin, r_fanout, b_fanout, r_spawn, b_spawn);
  dts_pool_thread_flush();
  return 0;
}
