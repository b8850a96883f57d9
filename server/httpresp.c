/* httpresp.c -- the handlers' side of a request and its answer (http.h),
 * apart from libmicrohttpd: the fuzzer drives the handlers without it. */
#include "server/http.h"

#include "proto/pb.h"
#include "runtime/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *http_header(const http_req *r, const char *name) { return r->lookup(r, true, name); }
const char *http_arg(const http_req *r, const char *name) { return r->lookup(r, false, name); }

void http_text(http_resp *out, int status, const char *ctype, const char *text, size_t len) {
  dts_free(out->body);
  out->status = status;
  out->ctype = ctype;
  out->body = dts_malloc(len + 1);
  memcpy(out->body, text, len);
  out->body[len] = '\0';
  out->len = len;
}

/* The length of the well-formed UTF-8 sequence at s, or 0. */
static size_t utf8_seq(const char *s) {
  unsigned char c = (unsigned char)s[0];
  size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  for (size_t i = 1; i < n; i++)
    if (s[i] == '\0') return 0; /* cut short */
  return n && dts_utf8_valid((const uint8_t *)s, n) ? n : 0;
}

/* s as the inside of a JSON string: quotes, backslashes and control bytes
 * escaped, well-formed UTF-8 kept, any other byte (a client's bytes echoed
 * in a message, a sequence cut by truncation) as U+FFFD. */
static size_t json_quote(char *dst, size_t cap, const char *s) {
  size_t k = 0;
  while (*s && k + 8 < cap) {
    unsigned char ch = (unsigned char)*s;
    size_t n;
    if (ch == '"' || ch == '\\') {
      dst[k++] = '\\';
      dst[k++] = (char)ch;
      s++;
    } else if (ch < 0x20) {
      k += (size_t)snprintf(dst + k, cap - k, "\\u%04x", ch);
      s++;
    } else if (ch < 0x80) {
      dst[k++] = (char)ch;
      s++;
    } else if ((n = utf8_seq(s)) > 0) {
      memcpy(dst + k, s, n);
      k += n;
      s += n;
    } else {
      k += (size_t)snprintf(dst + k, cap - k, "\\ufffd");
      s++;
    }
  }
  dst[k] = '\0';
  return k;
}

void http_error(http_resp *out, int status, const char *fmt, ...) {
  char msg[1024], q[2200], body[2400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  json_quote(q, sizeof(q), msg);
  int n = snprintf(body, sizeof(body), "{\"error\":{\"code\":%d,\"message\":\"%s\"}}", status, q);
  http_text(out, status, "application/json", body, (size_t)n);
}


long http_stream_copy(char *buf, size_t max, const char *out, size_t *opos, size_t olen) {
  size_t n = olen - *opos < max ? olen - *opos : max;
  memcpy(buf, out + *opos, n);
  *opos += n;
  return (long)n;
}
