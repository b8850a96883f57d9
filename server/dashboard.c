/* dashboard.c -- serves the dashboard's embedded files (assets.h): the
 * compressed copy to clients that accept gzip, ETags for revalidation,
 * hashed asset names cached for a year, the page itself never cached (it
 * names the current assets).  Any other GET path gets the page: the app
 * routes /taskhubs/..., the emulator's deep links and the rest itself. */
#include "server/assets.h"
#include "server/http.h"

#include <string.h>
#include <strings.h>

static const dts_asset *find(const char *path) {
  for (int i = 0; i < dts_nassets; i++)
    if (strcmp(dts_assets[i].path, path) == 0) return &dts_assets[i];
  return NULL;
}

static bool accepts_gzip(const http_req *r) {
  const char *ae = http_header(r, "Accept-Encoding");
  return ae != NULL && strstr(ae, "gzip") != NULL;
}

void dashboard_serve(const http_req *r, http_resp *out) {
  const dts_asset *a = find(r->path);
  if (a == NULL && strncmp(r->path, "/assets/", 8) == 0) {
    http_error(out, 404, "no such file: %s", r->path);
    return;
  }
  if (a == NULL || strcmp(r->path, "/index.html") == 0) a = find("/index.html");
  if (a == NULL) {
    http_error(out, 500, "the dashboard was not built into this dtsd");
    return;
  }
  out->etag = a->etag;
  out->vary = true;
  out->cache = a->immutable ? "public, max-age=31536000, immutable" : "no-cache";
  out->ctype = a->ctype;
  const char *inm = http_header(r, "If-None-Match");
  if (inm != NULL && strcmp(inm, a->etag) == 0) {
    out->status = 304;
    return;
  }
  out->status = 200;
  out->persistent = true;
  bool gz = accepts_gzip(r);
  out->gzip = gz;
  out->body = (char *)(gz ? a->gz : a->raw);
  out->len = gz ? a->gzlen : a->rawlen;
}
