/* audit.h -- the audit log (--audit-log FILE, docs/security.md): JSON
 * lines apart from the debug log, one per denial, mutating call, worker
 * stream opened or closed, and reload; with who (principal), from where
 * (peer), the hub, the method, the decision and why -- never a token or a
 * payload.  Identical denials within a second collapse into one line with
 * a count.  Reopened on SIGHUP (for logrotate).  Thread-safe. */
#ifndef DTS_SERVER_AUDIT_H
#define DTS_SERVER_AUDIT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dts_audit dts_audit;

typedef struct dts_audit_event {
  const char *event;     /* "call", "deny", "stream-open", "stream-close", "reload" */
  const char *principal; /* "" unknown */
  const char *peer;      /* "ipv4:10.0.0.7:51234" */
  const char *hub;
  const char *method;
  const char *reason;    /* a denial's, or NULL */
} dts_audit_event;

/* NULL path: no audit log (every call below accepts NULL). */
dts_audit *dts_audit_open(const char *path, char *why, size_t whylen);
void dts_audit_close(dts_audit *a);
/* Reopens the file (after a rotation). */
bool dts_audit_reopen(dts_audit *a, char *why, size_t whylen);
void dts_audit_log(dts_audit *a, const dts_audit_event *e);
/* Writes the counts of denials collapsed in the last second (call it about
 * once a second). */
void dts_audit_flush(dts_audit *a);

#endif
