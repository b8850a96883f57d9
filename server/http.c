/* http.c -- see http.h.
 *
 * libmicrohttpd calls `on_request` several times for one request: first
 * with the headers (upload size 0), then with each piece of the body, then
 * once more with nothing left (upload size 0), when we answer.  The body is
 * gathered in the connection's record (`hreq`), refused with 413 past
 * max_body; a chunked or lying client cannot grow it further.  One thread
 * per connection (MHD_USE_THREAD_PER_CONNECTION): a handler may wait for
 * the engine without holding up other clients, and the connection limit
 * bounds the threads.
 */
#define _GNU_SOURCE
#include "server/http.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct dts_http {
  dts_http_config cfg;
  atomic_bool stopping;
  http_hubs hubs;                  /* over the bridge, once serving */
  _Atomic(const http_hubs *) live; /* &hubs once serving, NULL before */
  struct MHD_Daemon *api, *health;
};

typedef struct hreq {
  char *body;
  size_t len, cap;
  bool too_big;
} hreq;

static const char *mhd_lookup(const http_req *r, bool header, const char *name) {
  return MHD_lookup_connection_value((struct MHD_Connection *)r->conn, header ? MHD_HEADER_KIND : MHD_GET_ARGUMENT_KIND,
                                     name);
}

static dts_hub *bridge_find(void *ctx, const char *name, dts_status *st, char *why, size_t whylen) {
  return dts_bridge_hub(ctx, name, st, why, whylen);
}

static int bridge_list(void *ctx, dts_hub **out, int max) { return dts_bridge_hubs(ctx, out, max); }

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  http_stream *st = cls;
  long n = st->next(st->ctx, buf, max);
  return n > 0 ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls) {
  http_stream *st = cls;
  st->free(st->ctx);
  dts_free(st);
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, http_resp *r) {
  struct MHD_Response *resp;
  if (r->stream.next != NULL) {
    http_stream *st = dts_malloc(sizeof(*st));
    *st = r->stream;
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
    if (resp == NULL) stream_free(st);
  } else if (r->persistent || r->body == NULL) {
    resp = MHD_create_response_from_buffer(r->len, r->body ? r->body : (void *)"", MHD_RESPMEM_PERSISTENT);
  } else {
    /* MHD frees with free(): our allocator is the process's malloc (alloc.h) */
    resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
  }
  r->body = NULL;
  if (resp == NULL) return MHD_NO;
  if (r->ctype) MHD_add_response_header(resp, "Content-Type", r->ctype);
  MHD_add_response_header(resp, "Cache-Control", r->cache ? r->cache : "no-store");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  if (r->gzip) MHD_add_response_header(resp, "Content-Encoding", "gzip");
  if (r->vary) MHD_add_response_header(resp, "Vary", "Accept-Encoding");
  if (r->etag) MHD_add_response_header(resp, "ETag", r->etag);
  if (r->disposition) MHD_add_response_header(resp, "Content-Disposition", r->disposition);
  if (r->location[0]) MHD_add_response_header(resp, "Location", r->location);
  enum MHD_Result ok = MHD_queue_response(conn, (unsigned)r->status, resp);
  MHD_destroy_response(resp);
  return ok;
}

static void health_handle(const http_req *r, http_resp *out) {
  if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0) {
    http_error(out, 405, "%s is not allowed here; health answers GET", r->method);
  } else if (strcmp(r->path, "/healthz") == 0) {
    out->status = 204;
  } else if (strcmp(r->path, "/readyz") == 0) {
    if (r->hubs != NULL)
      http_text(out, 200, "application/json", "{\"status\":\"ready\"}", 18);
    else
      http_error(out, 503, "start-up recovery is not complete");
  } else if (strcmp(r->path, "/metrics") == 0) {
    metrics_render(r, out);
  } else {
    http_error(out, 404, "no such route: %s (health serves /healthz, /readyz and /metrics)", r->path);
  }
}

typedef struct listener {
  dts_http *h;
  bool health;
} listener;

static listener L_API, L_HEALTH; /* set per server in dts_http_start; pointers passed to MHD */

/* The verified client certificate's principal: its SPIFFE id, else its
 * first subject alternative name, else its common name (as gRPC's). */
static bool client_principal(struct MHD_Connection *conn, char *out, size_t len) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  gnutls_session_t s = ci ? (gnutls_session_t)ci->tls_session : NULL;
  unsigned status = 1, n = 0;
  if (s == NULL || gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS || status != 0) return false;
  const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
  gnutls_x509_crt_t crt;
  if (certs == NULL || n == 0 || gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS) return false;
  bool found = false;
  if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS) {
    char first[520] = "";
    for (unsigned i = 0; !found; i++) {
      size_t sz = sizeof(first);
      char san[520];
      sz = sizeof(san) - 1;
      int type = gnutls_x509_crt_get_subject_alt_name(crt, i, san, &sz, NULL);
      if (type < 0) break;
      san[sz < sizeof(san) ? sz : sizeof(san) - 1] = '\0';
      if (type == GNUTLS_SAN_URI && strncmp(san, "spiffe://", 9) == 0) {
        snprintf(out, len, "%s", san);
        found = true;
      } else if (first[0] == '\0') {
        snprintf(first, sizeof(first), "%s", san);
      }
    }
    size_t sz = len;
    if (!found && first[0] != '\0') {
      snprintf(out, len, "%s", first);
      found = true;
    } else if (!found && gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, out, &sz) == GNUTLS_E_SUCCESS) {
      found = true;
    }
  }
  gnutls_x509_crt_deinit(crt);
  return found;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)version;
  listener *l = cls;
  hreq *q = *con_cls;
  if (q == NULL) { /* the headers: nothing to answer yet */
    q = dts_calloc(1, sizeof(*q));
    *con_cls = q;
    return MHD_YES;
  }
  if (*upload_size > 0) { /* a piece of the body */
    size_t n = *upload_size;
    *upload_size = 0;
    if (q->too_big || q->len + n > (size_t)l->h->cfg.max_body) {
      q->too_big = true;
      return MHD_YES;
    }
    if (q->len + n + 1 > q->cap) {
      q->cap = (q->len + n + 1) * 2;
      q->body = dts_realloc(q->body, q->cap);
    }
    memcpy(q->body + q->len, upload, n);
    q->len += n;
    return MHD_YES;
  }
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  http_req r = {.method = method,
                .path = url,
                .body = q->body ? q->body : "",
                .blen = q->len,
                .conn = conn,
                .cfg = &l->h->cfg, .lookup = mhd_lookup, .hubs = atomic_load(&l->h->live),
                .stopping = &l->h->stopping,
                .peer = ci != NULL ? ci->client_addr : NULL,
                .tls = l->h->cfg.tls_cert_cb != NULL,
                .cert_required = l->h->cfg.client_ca != NULL && l->h->cfg.client_auth == 2 /* DTS_MTLS_REQUIRE */};
  char certp[520];
  if (l->h->cfg.client_ca != NULL && client_principal(conn, certp, sizeof(certp))) r.cert_principal = certp;
  if (q->body) q->body[q->len] = '\0';
  http_resp out = {.status = 200};
  if (q->too_big)
    http_error(&out, 413, "the request body is larger than %ld bytes", l->h->cfg.max_body);
  else if (l->health)
    health_handle(&r, &out);
  else
    api_handle(&r, &out);
  return send_resp(conn, &out);
}

static void on_done(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)conn;
  (void)toe;
  hreq *q = *con_cls;
  if (q == NULL) return;
  dts_free(q->body);
  dts_free(q);
  *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char line[512];
  vsnprintf(line, sizeof(line), fmt, ap);
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = '\0';
  /* what a client's bad request makes libmicrohttpd say (431, 414, a reset):
   * debug, so a client cannot fill the log; dtsd's own failures to listen
   * are reported by dts_http_start */
  DTS_DEBUG("http", "%s", line);
}

static bool off(const char *addr) { return addr == NULL || addr[0] == '\0' || strcmp(addr, "off") == 0; }

/* "host:port" or "[v6]:port" into a socket address. */
static bool resolve(const char *addr, struct sockaddr_storage *ss, socklen_t *sl, char *err, size_t errlen) {
  char host[256];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(host)) {
    snprintf(err, errlen, "'%s' is not HOST:PORT", addr);
    return false;
  }
  size_t hl = (size_t)(colon - addr);
  const char *hp = addr;
  if (hp[0] == '[' && hl >= 2 && hp[hl - 1] == ']') {
    hp++;
    hl -= 2;
  }
  memcpy(host, hp, hl);
  host[hl] = '\0';
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
  if (rc != 0 || res == NULL) {
    snprintf(err, errlen, "cannot resolve '%s': %s", addr, gai_strerror(rc));
    return false;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *sl = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

static struct MHD_Daemon *listen_on(dts_http *h, listener *l, const char *addr, int *port, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  socklen_t sl;
  if (!resolve(addr, &ss, &sl, err, errlen)) return NULL;
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  if (h->cfg.tls_cert_cb != NULL) flags |= MHD_USE_TLS;
  struct MHD_OptionItem tlsopts[3] = {{MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
  if (h->cfg.tls_cert_cb != NULL) {
    tlsopts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, h->cfg.tls_cert_cb};
    if (h->cfg.client_ca != NULL) /* asks clients for a certificate; checked per request */
      tlsopts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, (void *)h->cfg.client_ca};
  }
  struct MHD_Daemon *d = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, l, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, as MHD asks */
      MHD_OPTION_ARRAY, tlsopts,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)h->cfg.max_conns,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)h->cfg.idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)(64 * 1024), MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)h->cfg.max_conns, MHD_OPTION_NOTIFY_COMPLETED,
      on_done, NULL, MHD_OPTION_END);
  if (d == NULL) {
    snprintf(err, errlen, "cannot listen on %s (in use, or not an address of this machine)", addr);
    return NULL;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  *port = di ? (int)di->port : 0;
  return d;
}

dts_err dts_http_start(const dts_http_config *cfg, dts_http **out, int *api_port, int *health_port, char *err,
                       size_t errlen) {
  dts_http *h = dts_calloc(1, sizeof(*h));
  h->cfg = *cfg;
  if (h->cfg.max_conns <= 0) h->cfg.max_conns = 256;
  if (h->cfg.max_body <= 0) h->cfg.max_body = 16L << 20;
  if (h->cfg.idle_timeout_s <= 0) h->cfg.idle_timeout_s = 60;
  if (h->cfg.call_timeout_ms <= 0) h->cfg.call_timeout_ms = 60000;
  if (h->cfg.max_scan <= 0) h->cfg.max_scan = 100000;
  *api_port = *health_port = 0;
  L_API = (listener){h, false};
  L_HEALTH = (listener){h, true};
  if (!off(cfg->api_addr) && (h->api = listen_on(h, &L_API, cfg->api_addr, api_port, err, errlen)) == NULL) {
    dts_http_stop(h);
    return DTS_EIO;
  }
  if (!off(cfg->health_addr) &&
      (h->health = listen_on(h, &L_HEALTH, cfg->health_addr, health_port, err, errlen)) == NULL) {
    dts_http_stop(h);
    return DTS_EIO;
  }
  *out = h;
  return DTS_OK;
}

void dts_http_serve(dts_http *h, dts_bridge *b) {
  h->hubs = (http_hubs){bridge_find, bridge_list, b};
  atomic_store(&h->live, &h->hubs);
}

void dts_http_stop(dts_http *h) {
  if (h == NULL) return;
  atomic_store(&h->stopping, true); /* event streams end within their next tick */
  api_jobs_stop();
  if (h->api) MHD_stop_daemon(h->api);
  if (h->health) MHD_stop_daemon(h->health);
  dts_free(h);
}
