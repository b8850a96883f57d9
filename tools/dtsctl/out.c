/* out.c -- what dtsctl prints and how it reads times, statuses and
 * durations.  See dtsctl.h. */
#define _GNU_SOURCE /* getopt_long with a leading '+' */
#include "tools/dtsctl/dtsctl.h"

#include "runtime/alloc.h"
#include "runtime/duration.h"
#include "server/pbjson.h"

#include <getopt.h>
#include <grpc/status.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- errors and exit codes ------------------------------------------------------ */

static const char *code_name(int code) {
  static const char *const names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                      "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? names[code] : "UNKNOWN";
}

int ctl_exit_for(int code) {
  switch (code) {
  case GRPC_STATUS_OK: return EX_OK;
  case GRPC_STATUS_NOT_FOUND: return EX_NOTFOUND;
  case GRPC_STATUS_UNAVAILABLE:
  case GRPC_STATUS_DEADLINE_EXCEEDED: return EX_UNREACHABLE;
  case GRPC_STATUS_ALREADY_EXISTS:
  case GRPC_STATUS_FAILED_PRECONDITION: return EX_CONFLICT;
  case GRPC_STATUS_UNAUTHENTICATED:
  case GRPC_STATUS_PERMISSION_DENIED: return EX_DENIED;
  default: return EX_FAILED;
  }
}

int ctl_fail(const rpc_err *e, const char *what) {
  fprintf(stderr, "dtsctl: %s: %s (%s)\n", what, e->msg[0] ? e->msg : "failed", code_name(e->code));
  return ctl_exit_for(e->code);
}

int ctl_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("dtsctl: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (see --help)\n", stderr);
  va_end(ap);
  return EX_USAGE;
}

/* ---- options ------------------------------------------------------------------ */

bool ctl_opts(int argc, char **argv, const char *shorts, const struct option *opts, opt_fn fn, void *ctx,
              int *optind_out) {
  optind = 1;
  opterr = 0;
  char sh[64];
  snprintf(sh, sizeof(sh), ":%s", shorts); /* ':' first: a missing argument is told apart */
  int v;
  while ((v = getopt_long(argc, argv, sh, opts, NULL)) != -1) {
    if (v == '?') {
      if (optopt != 0) ctl_usage("unknown option -%c", optopt);
      else ctl_usage("unknown option %s", argv[optind - 1]);
      return false;
    }
    if (v == ':') {
      ctl_usage("option %s needs a value", argv[optind - 1]);
      return false;
    }
    if (!fn(ctx, v, optarg)) return false;
  }
  *optind_out = optind;
  return true;
}

bool ctl_wants_help(int argc, char **argv, const char *help) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(help, stdout);
      return true;
    }
  }
  return false;
}

bool ctl_begin(int argc, char **argv, const char *help, const char *shorts, const struct option *opts, opt_fn fn,
               void *ctx, int npos, const char *what, int *first, int *rc) {
  *rc = EX_OK;
  if (ctl_wants_help(argc, argv, help)) return false;
  if (!ctl_opts(argc, argv, shorts, opts, fn, ctx, first)) {
    *rc = EX_USAGE;
    return false;
  }
  if (npos >= 0 && argc - *first != npos) {
    *rc = ctl_usage("%s takes %s", argv[0], what);
    return false;
  }
  return true;
}

int out_list_end(int rc, json_t *arr, table *t) {
  if (arr != NULL) {
    if (rc == EX_OK) out_json(arr);
    else json_decref(arr);
  }
  if (t != NULL) {
    if (rc == EX_OK) table_print(t);
    table_free(t);
  }
  return rc;
}

/* ---- tables ------------------------------------------------------------------- */

void table_init(table *t, int ncols, const char *const *headers) {
  memset(t, 0, sizeof(*t));
  t->ncols = ncols;
  table_row(t, headers);
}

void table_row(table *t, const char *const *cells) {
  if (t->n + (size_t)t->ncols > t->cap) {
    t->cap = t->cap ? t->cap * 2 : 64;
    while (t->cap < t->n + (size_t)t->ncols) t->cap *= 2;
    t->cells = dts_realloc(t->cells, t->cap * sizeof(char *));
  }
  for (int i = 0; i < t->ncols; i++) {
    const char *s = cells[i] ? cells[i] : "";
    /* one line per row: control characters shown as '?' */
    char *copy = dts_strdup(s);
    for (char *p = copy; *p; p++)
      if ((unsigned char)*p < 0x20) *p = '?';
    t->cells[t->n++] = copy;
  }
}

void table_print(table *t) {
  size_t *w = dts_calloc((size_t)t->ncols, sizeof(size_t));
  for (size_t i = 0; i < t->n; i++) {
    size_t l = strlen(t->cells[i]);
    if (l > w[i % (size_t)t->ncols]) w[i % (size_t)t->ncols] = l;
  }
  for (size_t i = 0; i < t->n; i++) {
    int col = (int)(i % (size_t)t->ncols);
    bool last = col == t->ncols - 1;
    if (last) printf("%s\n", t->cells[i]);
    else printf("%-*s  ", (int)w[col], t->cells[i]);
  }
  dts_free(w);
}

void table_free(table *t) {
  for (size_t i = 0; i < t->n; i++) dts_free(t->cells[i]);
  dts_free(t->cells);
}

/* ---- JSON ---------------------------------------------------------------------- */

void out_json(json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
  if (s != NULL) printf("%s\n", s);
  free(s);
  json_decref(j);
}

/* every field, defaults too: a script finds each member it looks for */
json_t *out_pbjson(const ProtobufCMessage *m) { return pbjson_all(m); }

/* ---- times, statuses, durations ------------------------------------------------ */

void out_time(int64_t ns, char out[40]) {
  if (ns <= 0) out[0] = '\0';
  else pbjson_time(ns, out);
}

static const char *const STATUS[] = {"RUNNING", "COMPLETED", "CONTINUED_AS_NEW", "FAILED",
                                     "CANCELED", "TERMINATED", "PENDING", "SUSPENDED"};

const char *out_status(int st) { return st >= 0 && st < 8 ? STATUS[st] : "UNKNOWN"; }

int parse_status(const char *s) {
  if (strncasecmp(s, "ORCHESTRATION_STATUS_", 21) == 0) s += 21;
  for (int i = 0; i < 8; i++)
    if (strcasecmp(s, STATUS[i]) == 0) return i;
  if (strcasecmp(s, "CANCELLED") == 0) return 4;
  return -1;
}

bool parse_duration(const char *s, int64_t *ns) {
  char *end;
  double secs = strtod(s, &end);
  if (end != s && *end == '\0' && secs >= 0 && secs < 1e10) { /* a plain number: seconds */
    *ns = (int64_t)(secs * 1e9 + 0.5);
    return true;
  }
  return dts_duration_parse(s, strlen(s), ns) == NULL;
}

bool parse_when(const char *s, int64_t *ns) {
  if (pbjson_parse_time(s, ns)) return true;
  int64_t ago;
  if (dts_duration_parse(s, strlen(s), &ago) != NULL) return false;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  *ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - ago;
  return true;
}
