/* http.h -- dtsd's HTTP listeners on libmicrohttpd: the data API, metrics
 * and (later) the dashboard on one address (default 0.0.0.0:8082), health
 * on another (default 0.0.0.0:8081).  One thread per connection, with a
 * bound on connections, header memory, body size and idle time; every
 * answer the API gives is JSON (errors too).  The handlers (api.c) talk
 * to the engine with the messages gRPC calls use (localcall.h). */
#ifndef DTS_SERVER_HTTP_H
#define DTS_SERVER_HTTP_H

#include "runtime/err.h"
#include "server/bridge.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct dts_http dts_http;

typedef struct dts_http_config {
  const char *api_addr;    /* "host:port" (port 0: any); NULL or "" or "off": none */
  const char *health_addr; /* the same */
  const char *data_dir;    /* for the store-size figure */
  dts_store *store;        /* for its figures (borrowed) */
  int max_conns;           /* connections per listener (default 256) */
  long max_body;           /* request body bytes (default 16 MiB) */
  int idle_timeout_s;      /* a connection idle this long is closed (default 60) */
  long call_timeout_ms;    /* longest wait for the engine's answer (default 60000) */
  int max_scan;            /* instances one query or bulk action looks at (default 100000) */
  dts_auth *auth;          /* who may call what (borrowed; required) */
  dts_audit *audit;        /* the audit log (borrowed; NULL: none) */
  void *tls_cert_cb;       /* HTTPS on both listeners: a GnuTLS certificate callback (tls.h), or NULL */
  const char *client_ca;   /* with HTTPS: CAs of client certificates (PEM), or NULL */
  int client_auth;         /* DTS_MTLS_OPTIONAL or DTS_MTLS_REQUIRE (tls.h) with client_ca */
} dts_http_config;

/* Binds and starts both listeners; their bound ports in *api_port and
 * *health_port (0 when off). */
dts_err dts_http_start(const dts_http_config *cfg, dts_http **out, int *api_port, int *health_port, char *err,
                       size_t errlen);
/* Start-up recovery is complete and the hubs are served through b
 * (borrowed; it outlives the listeners): /readyz answers 200 from now on
 * and the API serves (before, it answers 503). */
void dts_http_serve(dts_http *h, dts_bridge *b);
/* Stops both: no new connections, open ones closed; returns once every
 * handler returned. */
void dts_http_stop(dts_http *h);

/* ---- what the listeners hand to the handlers (api.c, metrics.c) ---- */

/* Where the handlers find hubs: the bridge's served set (http.c), or a
 * fuzzer's. */
typedef struct http_hubs {
  /* The hub `name` (created when dynamic hubs are on), or NULL with why. */
  dts_hub *(*find)(void *ctx, const char *name, dts_status *st, char *why, size_t whylen);
  int (*list)(void *ctx, dts_hub **out, int max);
  void *ctx;
} http_hubs;

typedef struct http_req {
  const char *method; /* "GET", ... */
  const char *path;   /* without the query string */
  const char *body;   /* NUL-terminated */
  size_t blen;
  /* a request header (header) or URL query argument, NULL when absent */
  const char *(*lookup)(const struct http_req *r, bool header, const char *name);
  void *conn;            /* lookup's: the MHD connection */
  const http_hubs *hubs; /* NULL while dtsd starts */
  const atomic_bool *stopping; /* set when the listeners stop: streams end */
  const dts_http_config *cfg;
  const struct sockaddr *peer; /* the client's address (NULL: unknown) */
  bool tls;                    /* the connection is TLS */
  const char *cert_principal;  /* a verified client certificate's principal (as for gRPC), or NULL */
  bool cert_required;          /* mTLS require: no verified certificate, no answer */
} http_req;

/* An answer written as it comes (server-sent events).  next() writes up to
 * max bytes into buf and returns how many (> 0), or -1 at the end; it may
 * wait, a second or so at most, but never returns 0.  free() once done. */
typedef struct http_stream {
  long (*next)(void *ctx, char *buf, size_t max);
  void (*free)(void *ctx);
  void *ctx;
} http_stream;

typedef struct http_resp {
  int status;
  const char *ctype; /* static */
  char *body;        /* dts_malloc'ed (NULL: empty) */
  size_t len;
  char location[600]; /* a Location header when not empty */
  const char *cache;  /* a Cache-Control header, static (NULL: no-store) */
  bool gzip;          /* body is gzip-compressed (Content-Encoding) */
  bool persistent;    /* body is static memory: not freed */
  const char *etag;   /* an ETag header, static (NULL: none) */
  const char *disposition; /* a Content-Disposition header, static (NULL: none) */
  bool vary;          /* Vary: Accept-Encoding */
  http_stream stream; /* next != NULL: the body comes from it (body unused) */
} http_resp;

/* A request header or URL query argument (NULL when absent). */
const char *http_header(const http_req *r, const char *name);
const char *http_arg(const http_req *r, const char *name);

/* Whether the request may do what `needs` says (auth.h: role bits,
 * AUTH_ANY_PRINCIPAL, AUTH_PUBLIC) on `hub` (NULL: no hub -- only grants
 * on every hub count): true, or false with a 401/403 JSON answer set and
 * the denial audited (httpauth.c).  The token is the Authorization
 * header's; for GET of an event stream or an export (which browsers fetch
 * without headers) also the access_token argument. */
bool http_authorize(const http_req *r, http_resp *out, const char *hub, int needs, dts_auth_decision *d);

/* An http_stream's next(): copies what is left of out[*opos..olen) into
 * buf, up to max bytes; returns how many. */
long http_stream_copy(char *buf, size_t max, const char *out, size_t *opos, size_t olen);

/* Sets a JSON error answer: {"error": {"code": status, "message": ...}}. */
void http_error(http_resp *out, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Sets a text answer (body copied). */
void http_text(http_resp *out, int status, const char *ctype, const char *text, size_t len);

/* The data API, the dashboard's files and metrics (api.c): fills out. */
void api_handle(const http_req *r, http_resp *out);
/* The dashboard's files (dashboard.c): GET of any path that is not the
 * API's; unknown paths answer the app, which routes them itself. */
void dashboard_serve(const http_req *r, http_resp *out);
/* GET /api/v1/taskhubs/live: server-sent events of one hub (api_live.c). */
void api_live(const http_req *r, http_resp *out, dts_hub *h);
/* Cancels the bulk jobs and waits for their threads (api_jobs.c): before
 * the hubs stop. */
void api_jobs_stop(void);
/* Prometheus text for every served hub and the process (metrics.c). */
void metrics_render(const http_req *r, http_resp *out);

#endif
