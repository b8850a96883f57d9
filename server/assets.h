/* assets.h -- the dashboard's files, embedded in dtsd at build time
 * (dashboard/build.mjs writes the table from the bundled app). */
#ifndef DTS_SERVER_ASSETS_H
#define DTS_SERVER_ASSETS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dts_asset {
  const char *path;  /* "/index.html", "/assets/app-<hash>.js", ... */
  const char *ctype;
  const unsigned char *raw;
  size_t rawlen;
  const unsigned char *gz; /* the same, gzip-compressed */
  size_t gzlen;
  const char *etag;  /* a quoted content hash */
  bool immutable;    /* named by its content: cached for a year */
} dts_asset;

extern const dts_asset dts_assets[];
extern const int dts_nassets;
extern const long dts_assets_gzip_bytes;

#endif
