/* audit.c -- see audit.h.  Denials are collapsed per (principal, peer,
 * hub, method, reason) in a small table: the first of a second is written,
 * the rest counted, and the count written by the next one after the second
 * or by dts_audit_flush. */
#include "server/audit.h"

#include "runtime/alloc.h"
#include "server/pbjson.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SLOTS 64

typedef struct slot {
  uint64_t key;     /* hash of the denial's fields; 0: free */
  int64_t since;    /* when its line was written (wall ns) */
  long suppressed;  /* identical denials since, not written */
  char line[600];   /* the fields again, for the count's line */
} slot;

struct dts_audit {
  char *path;
  FILE *f;
  pthread_mutex_t mu;
  slot slots[SLOTS];
};

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

dts_audit *dts_audit_open(const char *path, char *why, size_t whylen) {
  if (path == NULL || path[0] == '\0') return NULL;
  FILE *f = fopen(path, "a");
  if (f == NULL) {
    snprintf(why, whylen, "cannot open the audit log %s", path);
    return NULL;
  }
  dts_audit *a = dts_calloc(1, sizeof(*a));
  a->path = dts_strdup(path);
  a->f = f;
  pthread_mutex_init(&a->mu, NULL);
  return a;
}

void dts_audit_close(dts_audit *a) {
  if (a == NULL) return;
  dts_audit_flush(a);
  fclose(a->f);
  pthread_mutex_destroy(&a->mu);
  dts_free(a->path);
  dts_free(a);
}

bool dts_audit_reopen(dts_audit *a, char *why, size_t whylen) {
  if (a == NULL) return true;
  FILE *f = fopen(a->path, "a");
  if (f == NULL) {
    snprintf(why, whylen, "cannot reopen the audit log %s; writing on to the old file", a->path);
    return false;
  }
  pthread_mutex_lock(&a->mu);
  fclose(a->f);
  a->f = f;
  pthread_mutex_unlock(&a->mu);
  return true;
}

static json_t *fields(const dts_audit_event *e, int64_t t) {
  char when[40];
  pbjson_time(t, when);
  json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "time", when, "event", e->event, "principal",
                        e->principal ? e->principal : "", "peer", e->peer ? e->peer : "", "hub", e->hub ? e->hub : "",
                        "method", e->method ? e->method : "", "decision", strcmp(e->event, "deny") == 0 ? "deny" : "allow");
  if (e->reason != NULL) json_object_set_new(j, "reason", json_string(e->reason));
  return j;
}

static void put(dts_audit *a, json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  if (s != NULL) {
    fputs(s, a->f);
    fputc('\n', a->f);
    fflush(a->f);
  }
  free(s);
  json_decref(j);
}

static uint64_t hash(const dts_audit_event *e) {
  uint64_t h = 1469598103934665603ULL;
  const char *parts[5] = {e->principal, e->peer, e->hub, e->method, e->reason};
  for (int i = 0; i < 5; i++) {
    for (const char *p = parts[i] ? parts[i] : ""; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
  }
  return h ? h : 1;
}

/* The count of a slot's suppressed denials, as a line of its own. */
static void put_count(dts_audit *a, slot *s, int64_t t) {
  if (s->suppressed == 0) return;
  json_error_t err;
  json_t *j = json_loads(s->line, 0, &err);
  if (j != NULL) {
    char when[40];
    pbjson_time(t, when);
    json_object_set_new(j, "time", json_string(when));
    json_object_set_new(j, "count", json_integer(s->suppressed));
    put(a, j);
  }
  s->suppressed = 0;
}

void dts_audit_log(dts_audit *a, const dts_audit_event *e) {
  if (a == NULL) return;
  int64_t t = now_ns();
  json_t *j = fields(e, t);
  pthread_mutex_lock(&a->mu);
  if (strcmp(e->event, "deny") == 0) {
    uint64_t k = hash(e);
    slot *s = &a->slots[k % SLOTS];
    if (s->key == k && t - s->since < 1000000000) { /* the same denial within its second: counted */
      s->suppressed++;
      pthread_mutex_unlock(&a->mu);
      json_decref(j);
      return;
    }
    if (s->key != 0) put_count(a, s, t);
    s->key = k;
    s->since = t;
    char *line = json_dumps(j, JSON_COMPACT);
    snprintf(s->line, sizeof(s->line), "%s", line ? line : "{}");
    free(line);
  }
  put(a, j);
  pthread_mutex_unlock(&a->mu);
}

void dts_audit_flush(dts_audit *a) {
  if (a == NULL) return;
  int64_t t = now_ns();
  pthread_mutex_lock(&a->mu);
  for (int i = 0; i < SLOTS; i++)
    if (a->slots[i].key != 0 && t - a->slots[i].since >= 1000000000) {
      put_count(a, &a->slots[i], t);
      a->slots[i].key = 0;
    }
  pthread_mutex_unlock(&a->mu);
}
