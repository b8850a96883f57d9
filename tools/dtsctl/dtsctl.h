/* dtsctl.h -- dtsctl, the command-line tool for dtsd, over its public gRPC
 * API (TaskHubSidecarService and dtsd.admin.Admin).  See docs/dtsctl.md.
 *
 *   main.c       arguments, help, dispatch, bash completion
 *   rpc.c        the connection (flags, DTSD_ENDPOINT, DTS_CONNECTION_STRING)
 *                and calls: unary and server streaming
 *   out.c        tables, JSON, times, statuses, exit codes
 *   cmd_inst.c   instances: list, show, history, start, raise, suspend,
 *                resume, terminate, restart, rewind, purge
 *   cmd_admin.c  hubs, entities, schedules, retention
 */
#ifndef DTS_TOOLS_DTSCTL_H
#define DTS_TOOLS_DTSCTL_H

#include "proto/pb.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Exit codes a script can rely on (docs/dtsctl.md). */
enum {
  EX_OK = 0,
  EX_FAILED = 1,      /* the server refused or failed the request */
  EX_USAGE = 2,       /* bad command line */
  EX_NOTFOUND = 3,    /* no such instance, entity, schedule or hub */
  EX_UNREACHABLE = 4, /* dtsd could not be reached, or did not answer in time */
  EX_CONFLICT = 5,    /* already exists, or not in a state that allows it */
  EX_DENIED = 6,      /* no, a bad or an expired token; or not allowed (UNAUTHENTICATED, PERMISSION_DENIED) */
};

typedef struct ctl {
  const char *endpoint; /* host:port */
  bool tls;
  char *hub;
  char *token;
  bool json;            /* --output json */
  int timeout_s;
  struct grpc_channel *ch;
} ctl;

/* ---- rpc.c ---- */
/* Fills endpoint, hub and token from flags already set, DTSD_ENDPOINT,
 * DTSD_TASKHUB, DTSD_TOKEN and DTS_CONNECTION_STRING; false with a message
 * on stderr when they do not parse. */
bool ctl_connect(ctl *c, const char *endpoint_flag);
void ctl_close(ctl *c);

typedef struct rpc_err {
  int code;         /* gRPC status; 0 OK */
  char msg[600];
} rpc_err;

/* One unary call: the decoded answer (free with
 * protobuf_c_message_free_unpacked), or NULL with e set. */
ProtobufCMessage *ctl_unary(ctl *c, const char *method, const ProtobufCMessage *req,
                            const ProtobufCMessageDescriptor *resp, rpc_err *e);
/* A call whose answer is empty: EX_OK, or the failure printed (about
 * `what`) and its exit code. */
int ctl_act(ctl *c, const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp,
            const char *what);
/* A server-streaming call: each message decoded and handed to fn (which
 * frees it); false from fn stops reading.  e set when the call failed. */
typedef bool (*ctl_each_fn)(void *ctx, ProtobufCMessage *m);
void ctl_stream(ctl *c, const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp,
                ctl_each_fn fn, void *ctx, rpc_err *e);

/* ---- out.c ---- */
/* Prints "dtsctl: <what>: <message>" to stderr; returns the exit code for
 * the status. */
int ctl_fail(const rpc_err *e, const char *what);
/* Prints a usage error; returns EX_USAGE. */
int ctl_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ctl_exit_for(int grpc_code);

/* A table: add rows of `ncols` strings, then print with aligned columns. */
typedef struct table {
  int ncols;
  char **cells;
  size_t n, cap;
} table;
void table_init(table *t, int ncols, const char *const *headers);
void table_row(table *t, const char *const *cells);
void table_print(table *t);
void table_free(table *t);

/* JSON of a message (proto3 JSON names), printed with a newline. */
void out_json(json_t *j); /* takes j */
json_t *out_pbjson(const ProtobufCMessage *m);

/* "2026-11-29T20:09:04.653Z" (or "" for 0) into out[40]. */
void out_time(int64_t ns, char out[40]);
/* "RUNNING", "COMPLETED", ...; and back (case-insensitive, with or without
 * the ORCHESTRATION_STATUS_ prefix): -1 when unknown. */
const char *out_status(int st);
int parse_status(const char *s);
/* A time: RFC 3339, or a duration ("90s", "15m", "24h", "7d") meaning
 * that long ago.  false when it is neither. */
bool parse_when(const char *s, int64_t *ns);
/* A duration "500ms", "30s", "15m", "24h", "7d", or a number of seconds. */
bool parse_duration(const char *s, int64_t *ns);

/* ---- commands: each returns an exit code ---- */
int cmd_instances(ctl *c, int argc, char **argv);
int cmd_show(ctl *c, int argc, char **argv);
int cmd_history(ctl *c, int argc, char **argv);
int cmd_start(ctl *c, int argc, char **argv);
int cmd_raise(ctl *c, int argc, char **argv);
int cmd_simple(ctl *c, const char *verb, int argc, char **argv); /* suspend resume terminate rewind */
int cmd_restart(ctl *c, int argc, char **argv);
int cmd_purge(ctl *c, int argc, char **argv);
int cmd_hubs(ctl *c, int argc, char **argv);
int cmd_entities(ctl *c, int argc, char **argv);
int cmd_schedules(ctl *c, int argc, char **argv);
int cmd_retention(ctl *c, int argc, char **argv);

/* Parses a command's options with getopt_long (`opts` ends with a zeroed
 * entry; val is the short letter or a number >= 256): calls fn for each,
 * which returns false for an invalid value (after printing why).  On
 * return *optind_out is the first positional argument.  false: usage
 * error printed. */
struct option;
typedef bool (*opt_fn)(void *ctx, int val, const char *arg);
bool ctl_opts(int argc, char **argv, const char *shorts, const struct option *opts, opt_fn fn, void *ctx,
              int *optind_out);
/* The help text of a command, printed to stdout when it has --help. */
bool ctl_wants_help(int argc, char **argv, const char *help);
/* A command's start: --help (printed, *rc EX_OK), its options, then
 * `npos` positional arguments (-1: any number; `what` says which for the
 * usage error).  true to go on with argv[*first...]; false with *rc set. */
bool ctl_begin(int argc, char **argv, const char *help, const char *shorts, const struct option *opts, opt_fn fn,
               void *ctx, int npos, const char *what, int *first, int *rc);
/* A listing's end: the JSON array or the table printed when rc is EX_OK,
 * and freed; returns rc.  The one not in use is NULL. */
int out_list_end(int rc, json_t *arr, table *t);

#endif
