/* harness.c -- see harness.h. */
#define _GNU_SOURCE /* mkdtemp */
#include "tests/fuzz/harness.h"

#include "runtime/alloc.h"
#include "runtime/log.h"
#include "runtime/sched.h"
#include "runtime/timer.h"
#include "server/methods.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 64

typedef struct env {
  dts_sched *sched;
  dts_timers *timers;
  dts_store *store;
  char dir[128];
} env;

static env E;
static char hub_name[32] = "fz0";
static unsigned long hub_seq;

const char *fz_hub_name(void) { return hub_name; }

struct fz_hub {
  dts_hub *hub;
  fz_options o;
  bool deleted; /* DeleteTaskHub was posted: the bridge routes nothing more */
  dts_call **unary;
  size_t nunary, capunary;
  dts_call **owned; /* streams and waiters: they get CLOSED */
  bool *closed;
  size_t nowned, capowned;
  char **tokens; /* completion tokens of the work items seen, in order */
  size_t ntokens, captokens;
  size_t *seen; /* per owned call: stream items already scanned */
};

#define PUSH(arr, n, cap, x)                                  \
  do {                                                        \
    if ((n) == (cap)) {                                       \
      (cap) = (cap) ? (cap) * 2 : 16;                         \
      (arr) = dts_realloc((arr), (cap) * sizeof(*(arr)));     \
    }                                                         \
    (arr)[(n)++] = (x);                                       \
  } while (0)

uint8_t fz_byte(fz_in *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}

uint16_t fz_u16(fz_in *in) {
  uint16_t lo = fz_byte(in);
  return (uint16_t)(lo | (uint16_t)fz_byte(in) << 8);
}

const uint8_t *fz_bytes(fz_in *in, size_t want, size_t *got) {
  *got = want < in->n ? want : in->n;
  const uint8_t *p = in->p;
  in->p += *got;
  in->n -= *got;
  return p;
}

static void env_fini(void) {
  if (E.store == NULL) return;
  dts_store_close(E.store);
  dts_timers_destroy(E.timers);
  dts_sched_destroy(E.sched);
  char cmd[200];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", E.dir);
  if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", E.dir);
}

static void open_store(void) {
  char db[160];
  snprintf(db, sizeof(db), "%s/db", E.dir);
  char err[256];
  dts_store_options so;
  dts_store_options_init(&so);
  so.block_cache = 1u << 20; /* a small heap keeps the per-input leak scans cheap */
  so.write_buffer = 512u << 10;
  so.min_free = 0;
  if (dts_store_open_with(db, &so, &E.store, err, sizeof(err)) != DTS_OK) {
    fprintf(stderr, "fuzz: %s\n", err);
    abort();
  }
}

const char *fz_store_reopen(void) {
  static char db[160];
  fz_store();
  dts_store_close(E.store);
  open_store();
  snprintf(db, sizeof(db), "%s/db", E.dir);
  return db;
}

dts_store *fz_store(void) {
  if (E.store != NULL) return E.store;
  if (getenv("FZ_LOG") == NULL) dts_log_set_level(DTS_LOG_OFF); /* millions of inputs */
  struct stat sb;
  const char *base = stat("/dev/shm", &sb) == 0 ? "/dev/shm" : "/tmp";
  snprintf(E.dir, sizeof(E.dir), "%s/dtsd-fuzz-XXXXXX", base);
  if (mkdtemp(E.dir) == NULL) abort();
  open_store();
  E.sched = dts_sched_create_manual();
  E.timers = dts_timers_create_manual();
  atexit(env_fini);
  return E.store;
}

fz_hub *fz_hub_open(const fz_options *o) {
  fz_store();
  fz_hub *f = dts_calloc(1, sizeof(*f));
  f->o = *o;
  dts_hub_config hc = {.name = hub_name,
                       .call_ops = &fake_call_ops,
                       .sched = E.sched,
                       .timers = E.timers,
                       .store = E.store,
                       .max_payload = o->max_payload ? o->max_payload : 4096,
                       .limits = o->limits,
                       .default_max_orch = 4,
                       .default_max_act = 4,
                       .abandon_delay_ns = 1000000ULL,
                       .ping_interval_ns = 60000000000ULL,
                       .max_entity_batch = o->entity_batch,
                       .inline_commit = !o->storage_thread,
                       .passivate_after_ns = o->passivate ? 1 : 0,
                       .purge_interval_ns = 1000000000ULL};
  if (dts_hub_create(&hc, &f->hub) != DTS_OK) {
    dts_free(f);
    return NULL;
  }
  return f;
}

dts_hub *fz_hub_get(fz_hub *f) { return f->hub; }

static bool owned_method(int m) {
  return dts_methods[m].server_streaming || m == DTS_M_WAIT_START || m == DTS_M_WAIT_COMPLETION;
}

static dts_call *post_decoded(fz_hub *f, int m, ProtobufCMessage *req) {
  bool owned = owned_method(m);
  dts_call *c = fake_call_new(owned ? dts_hub_actor(f->hub) : NULL);
  dts_call_ref(c); /* the hub's */
  if (owned) {
    PUSH(f->owned, f->nowned, f->capowned, c);
    f->closed = dts_realloc(f->closed, f->capowned * sizeof(bool));
    f->seen = dts_realloc(f->seen, f->capowned * sizeof(size_t));
    f->closed[f->nowned - 1] = false;
    f->seen[f->nowned - 1] = 0;
  } else {
    PUSH(f->unary, f->nunary, f->capunary, c);
  }
  dts_hub_post(f->hub, (dts_method)m, c, req);
  return c;
}

dts_call *fz_owned(fz_hub *f, size_t i) { return i < f->nowned ? f->owned[i] : NULL; }

bool fz_post_raw(fz_hub *f, int m, const uint8_t *body, size_t n, uint8_t tok) {
  if (m < 0 || m >= DTS_M_COUNT || m == DTS_M_HELLO || f->deleted) return false;
  char err[512];
  ProtobufCMessage *req = dts_pb_decode(dts_methods[m].req, body, n, MAX_DEPTH, err, sizeof(err));
  if (req == NULL) return false;
  if (tok != 0xff && f->ntokens > 0) {
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(req->descriptor,
                                                                                          "completion_token");
    if (fd != NULL && fd->type == PROTOBUF_C_TYPE_STRING && fd->label != PROTOBUF_C_LABEL_REPEATED) {
      char **slot = (char **)(void *)((char *)req + fd->offset);
      /* protobuf-c's default allocator is malloc: the field is freed with it */
      if (*slot != NULL && *slot != (char *)fd->default_value) free(*slot);
      *slot = strdup(f->tokens[tok % f->ntokens]);
    }
  }
  if (m == DTS_M_DELETE_TASK_HUB) f->deleted = true;
  post_decoded(f, m, req);
  return true;
}

dts_call *fz_post(fz_hub *f, int m, const ProtobufCMessage *req) {
  dts_buf b = dts_pb_pack(req);
  char err[512];
  ProtobufCMessage *copy = dts_pb_decode(req->descriptor, b.p, b.n, MAX_DEPTH, err, sizeof(err));
  dts_buf_free(&b);
  if (copy == NULL) {
    fprintf(stderr, "fuzz: a built request does not decode: %s\n", err);
    abort();
  }
  if (m == DTS_M_DELETE_TASK_HUB) f->deleted = true;
  return post_decoded(f, m, copy);
}

/* New stream items: remember their completion tokens. */
static void scan_items(fz_hub *f) {
  for (size_t i = 0; i < f->nowned; i++) {
    dts_buf b;
    while (fake_item(f->owned[i], (int)f->seen[i], &b)) {
      f->seen[i]++;
      WorkItem *w = work_item__unpack(NULL, b.n, b.p);
      dts_buf_free(&b);
      if (w == NULL) continue; /* a history chunk */
      if (w->completion_token != NULL && w->completion_token[0] != '\0')
        PUSH(f->tokens, f->ntokens, f->captokens, dts_strdup(w->completion_token));
      work_item__free_unpacked(w, NULL);
    }
  }
}

/* Runs turns until no actor is queued and the storage thread is idle. */
static void drain(void) {
  for (;;) {
    size_t n = dts_sched_run_manual(E.sched, 100000);
    if (dts_store_busy(E.store)) {
      while (dts_store_busy(E.store)) sched_yield(); /* the storage thread answers in microseconds */
      continue;
    }
    if (n == 0) return;
  }
}

void fz_run(fz_hub *f, uint64_t advance_ns) {
  /* timers far ahead fire once; then a few rounds of what is due by now
   * (a timer set in the past is armed when its turn commits) -- the hub's
   * periodic timers re-arm in the future, so this ends */
  dts_timers_fire_due(E.timers, dts_now_ns() + advance_ns);
  drain();
  for (int round = 0; round < 8 && dts_timers_fire_due(E.timers, dts_now_ns()) > 0; round++) drain();
  if (f != NULL) scan_items(f);
}

void fz_close_one(fz_hub *f, uint8_t which) {
  size_t open = 0;
  for (size_t i = 0; i < f->nowned; i++) open += !f->closed[i];
  if (open == 0) return;
  size_t k = which % open;
  for (size_t i = 0; i < f->nowned; i++) {
    if (f->closed[i]) continue;
    if (k-- == 0) {
      f->closed[i] = true;
      fake_close(f->owned[i]);
      return;
    }
  }
}

static bool wipe_visit(void *ctx, const char *k, size_t klen, const char *v, size_t vlen) {
  (void)v;
  (void)vlen;
  dts_batch_del(ctx, k, klen);
  return true;
}

void fz_wipe(void) {
  fz_store();
  char pre[40], marker[40];
  size_t plen = strlen(hub_name) + 1, mlen = 5 + strlen(hub_name);
  memcpy(pre, hub_name, plen); /* with its NUL */
  memcpy(marker, "\0hub\0", 5);
  memcpy(marker + 5, hub_name, strlen(hub_name));
  dts_batch *b = dts_batch_create();
  dts_store_scan(E.store, pre, plen, wipe_visit, b);
  dts_batch_del(b, marker, mlen);
  if (!dts_batch_empty(b) && dts_store_write(E.store, b) != DTS_OK) abort();
  dts_batch_destroy(b);
  snprintf(hub_name, sizeof(hub_name), "fz%lu", ++hub_seq);
}

static void hub_close(fz_hub *f, bool wipe);

void fz_hub_close(fz_hub *f) { hub_close(f, true); }
void fz_hub_close_keep(fz_hub *f) { hub_close(f, false); }

static void hub_close(fz_hub *f, bool wipe) {
  fz_run(f, 0);
  dts_hub_shutdown(f->hub);
  fz_run(f, 0);
  for (size_t i = 0; i < f->nowned; i++)
    if (!f->closed[i]) fake_close(f->owned[i]);
  fz_run(f, 0);
  if (!dts_hub_quiesced(f->hub)) {
    fprintf(stderr, "fuzz: the hub did not quiesce after its shutdown\n");
    abort();
  }
  for (size_t i = 0; i < f->nunary; i++) {
    dts_call *c = f->unary[i];
    if (c->answers != 1) {
      fprintf(stderr, "fuzz: unary call #%zu (of %zu) answered %d times\n", i, f->nunary, c->answers);
      abort();
    }
    dts_call_unref(c);
  }
  for (size_t i = 0; i < f->nowned; i++) dts_call_unref(f->owned[i]);
  dts_timers_cancel_actor(E.timers, dts_hub_actor(f->hub));
  dts_hub_release(f->hub);
  fz_run(NULL, 0);
  if (atomic_load(&fake_live_calls) != 0) {
    fprintf(stderr, "fuzz: %ld calls still held after the hub was freed\n", atomic_load(&fake_live_calls));
    abort();
  }
  for (size_t i = 0; i < f->ntokens; i++) dts_free(f->tokens[i]);
  dts_free(f->tokens);
  dts_free(f->unary);
  dts_free(f->owned);
  dts_free(f->closed);
  dts_free(f->seen);
  dts_free(f);
  if (wipe) fz_wipe();
  dts_pool_thread_flush();
}

void fz_put_raw(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen) {
  fz_store();
  char key[1024];
  size_t pre = strlen(hub_name) + 1; /* with its NUL */
  if (klen > sizeof(key) - pre) klen = sizeof(key) - pre;
  memcpy(key, hub_name, pre);
  memcpy(key + pre, k, klen);
  dts_batch *b = dts_batch_create();
  dts_batch_put(b, key, pre + klen, v, vlen);
  if (dts_store_write(E.store, b) != DTS_OK) abort();
  dts_batch_destroy(b);
}

void fz_ops(fz_hub *f, fz_in *in, int max_ops) {
  for (int ops = 0; in->n > 0 && ops < max_ops; ops++) {
    uint8_t op = fz_byte(in);
    switch (op & 7) {
    case 4: fz_run(f, 0); break;
    case 5: fz_close_one(f, fz_byte(in)); break;
    case 6: fz_run(f, 3600ULL * 1000000000ULL); break;
    case 7: fz_run(f, 2000000000ULL); break;
    default: {
      int m = fz_byte(in) % DTS_M_COUNT;
      uint8_t tok = fz_byte(in);
      size_t len = fz_u16(in), got;
      const uint8_t *body = fz_bytes(in, len, &got);
      fz_post_raw(f, m, body, got, tok);
      break;
    }
    }
  }
}
