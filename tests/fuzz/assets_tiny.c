/* assets_tiny.c -- a two-file asset table for fuzz_http and test_api
 * (they do not bundle the dashboard): the serving logic is the same. */
#include "server/assets.h"

static const unsigned char page[] = "<!doctype html><title>dtsd</title>";
const dts_asset dts_assets[] = {
    {"/index.html", "text/html; charset=utf-8", page, sizeof(page) - 1, page, sizeof(page) - 1, "\"tiny\"", false},
    {"/assets/app-0.js", "text/javascript; charset=utf-8", page, sizeof(page) - 1, page, sizeof(page) - 1, "\"js\"", true},
};
const int dts_nassets = 2;
const long dts_assets_gzip_bytes = sizeof(page) - 1;
