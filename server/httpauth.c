/* httpauth.c -- the HTTP side of auth.h: the same decision as for gRPC,
 * made from the client's address and its Authorization header; refusals
 * answered 401 or 403 with JSON and audited. */
#include "server/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

bool http_authorize(const http_req *r, http_resp *out, const char *hub, int needs, dts_auth_decision *d) {
  const char *auth = http_header(r, "authorization");
  char bearer[600];
  size_t plen = strlen(r->path);
  bool header_less = strcmp(r->method, "GET") == 0 &&
                     ((plen >= 5 && strcmp(r->path + plen - 5, "/live") == 0) ||
                      (plen >= 7 && strcmp(r->path + plen - 7, "/export") == 0));
  const char *tok = header_less && auth == NULL ? http_arg(r, "access_token") : NULL;
  if (tok != NULL) {
    snprintf(bearer, sizeof(bearer), "Bearer %s", tok);
    auth = bearer;
  }
  dts_auth_req q = {.peer = r->peer, .tls = r->tls, .authorization = auth, .authorization_len = auth ? strlen(auth) : 0,
                    .hub = hub, .needs = needs, .cert_principal = r->cert_principal};
  dts_auth_check(r->cfg->auth, &q, d);
  if (d->st == DTS_ST_OK && r->cert_required && r->cert_principal == NULL && needs != AUTH_PUBLIC) {
    memset(d, 0, sizeof(*d));
    d->st = DTS_ST_UNAUTHENTICATED;
    snprintf(d->reason, sizeof(d->reason), "no client certificate");
    snprintf(d->msg, sizeof(d->msg), "this dtsd requires a client certificate signed by its client CA (--tls-client-auth require)");
  }
  char method[300];
  snprintf(method, sizeof(method), "%s %.250s", r->method, r->path);
  char peer[80] = "";
  if (r->peer != NULL) {
    char host[64] = "";
    const void *addr = r->peer->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)r->peer)->sin_addr
                                                      : (const void *)&((const struct sockaddr_in6 *)r->peer)->sin6_addr;
    inet_ntop(r->peer->sa_family, addr, host, sizeof(host));
    snprintf(peer, sizeof(peer), "%s:%s", r->peer->sa_family == AF_INET ? "ipv4" : "ipv6", host);
  }
  if (d->st != DTS_ST_OK) {
    dts_audit_event e = {"deny", d->principal, peer, hub ? hub : "", method, d->reason};
    dts_audit_log(r->cfg->audit, &e);
    http_error(out, d->st == DTS_ST_UNAUTHENTICATED ? 401 : d->st == DTS_ST_RESOURCE_EXHAUSTED ? 429 : 403, "%s", d->msg);
    return false;
  }
  if (needs > 0 && (needs & (AUTH_WRITE | AUTH_ADMIN))) {
    dts_audit_event e = {"call", d->principal, peer, hub ? hub : "", method, NULL};
    dts_audit_log(r->cfg->audit, &e);
  }
  return true;
}
