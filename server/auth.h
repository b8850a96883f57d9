/* auth.h -- who a caller is and what it may do (docs/security.md).
 *
 * A caller is identified by the bearer token it sends (static tokens kept
 * as SHA-256 hashes in the tokens file, --tokens-file) and checked against
 * DTS's roles per task hub: reader, worker, contributor, and admin (every
 * hub plus creating and deleting hubs).  With --auth none nothing is asked
 * of a caller, but only loopback peers are served unless --emulator-mode
 * opens the server to everyone knowingly (Redis's protected mode).  An IP
 * allow list (--allow CIDR,...) applies in every mode.
 *
 * Thread-safe: gRPC completion-queue threads and HTTP threads decide
 * concurrently; dts_auth_reload (SIGHUP) swaps the tokens under a lock.
 */
#ifndef DTS_SERVER_AUTH_H
#define DTS_SERVER_AUTH_H

#include "actors/call.h"
#include "actors/methods.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Role bits; a role is a set of them. */
enum {
  AUTH_READ = 1,   /* reader: list and read orchestrations, entities, history */
  AUTH_WORK = 2,   /* worker: take and complete work items */
  AUTH_WRITE = 4,  /* contributor (with READ and WORK): start, raise, terminate, purge, signal, ... */
  AUTH_ADMIN = 8,  /* admin (with all): every hub, create and delete hubs, retention */
};
#define AUTH_ROLE_READER AUTH_READ
#define AUTH_ROLE_WORKER AUTH_WORK
#define AUTH_ROLE_CONTRIBUTOR (AUTH_READ | AUTH_WORK | AUTH_WRITE)
#define AUTH_ROLE_ADMIN (AUTH_READ | AUTH_WORK | AUTH_WRITE | AUTH_ADMIN)
/* dts_auth_req.needs beyond role bits: any authenticated caller (what it
 * sees is filtered by its roles); anyone the allow list and protected mode
 * let through, without a token (the dashboard's files). */
#define AUTH_ANY_PRINCIPAL 0
#define AUTH_PUBLIC (-1)

/* "reader", "worker", "contributor", "admin" -> its bits; 0 when unknown. */
int dts_auth_role_parse(const char *s);
const char *dts_auth_role_name(int bits);

/* The bit a method needs (AUTH_READ | AUTH_WORK for "any role": Hello). */
int dts_auth_method_needs(dts_method m);

typedef struct dts_auth_config {
  bool on;              /* --auth on */
  bool emulator_mode;   /* --auth none and serve non-loopback peers too */
  const char *tokens_file; /* NULL: no static tokens */
  const char *allow;    /* "10.0.0.0/8,::1/128" or NULL: every address */
  int fail_limit;       /* failed authentications from one address in a minute before it must wait (0: 20) */
  const char *jwt_issuers; /* OpenID Connect issuers whose JWTs are accepted (jwt.h), or NULL */
} dts_auth_config;

typedef struct dts_auth dts_auth;

/* Loads the tokens file and the allow list; NULL with why. */
dts_auth *dts_auth_create(const dts_auth_config *cfg, char *why, size_t whylen);
void dts_auth_destroy(dts_auth *a);
/* Reads the tokens file again (SIGHUP): on a bad file the old tokens stay
 * and false is returned with why. */
bool dts_auth_reload(dts_auth *a, char *why, size_t whylen);
bool dts_auth_enabled(const dts_auth *a);

/* One request as the edge sees it. */
typedef struct dts_auth_req {
  const struct sockaddr *peer; /* NULL: unknown (refused unless auth is none and emulator mode) */
  bool tls;                    /* the connection is TLS */
  const char *authorization;   /* the header's value, or NULL */
  size_t authorization_len;
  const char *cert_principal;  /* a verified client certificate's SPIFFE id, else first SAN, else CN; NULL: none */
  const char *hub;             /* the task hub it names */
  int needs;                   /* dts_auth_method_needs, or an HTTP route's */
  bool quiet;                  /* a re-check of an open stream: no counters, no back-off */
} dts_auth_req;

typedef struct dts_auth_decision {
  dts_status st;        /* OK, UNAUTHENTICATED, PERMISSION_DENIED, or RESOURCE_EXHAUSTED (backing off) */
  char msg[300];        /* for the caller */
  char reason[120];     /* for the audit log: why, without secrets */
  char principal[200];  /* the token's name, the JWT's subject, the certificate's principal; "anonymous" without auth */
  int roles;            /* the principal's role bits on this hub */
  bool quiet;           /* (from the request) */
  /* the principal's grants on every hub, for listing hubs (dts_auth_roles_in) */
  bool all_hubs;        /* no auth: everything everywhere */
  char grant_hub[16][65];
  int grant_roles[16];
  int ngrants;
} dts_auth_decision;

/* Decides; never touches the network or the disk.  Any thread. */
void dts_auth_check(dts_auth *a, const dts_auth_req *r, dts_auth_decision *d);
/* Callers refused so far: unauthenticated (no, bad or expired token) and
 * denied (protected mode, allow list, missing role), for /metrics. */
void dts_auth_counts(dts_auth *a, long *unauthenticated, long *denied);
/* The role bits a decision's principal has on hub (0: none) -- for
 * listing the hubs it may see. */
int dts_auth_roles_in(const dts_auth_decision *d, const char *hub);

/* "ipv4:1.2.3.4:5", "ipv6:[::1]:5" (gRPC's peer form) into ss; false when
 * it is not one. */
bool dts_auth_parse_peer(const char *peer, struct sockaddr_storage *ss);
bool dts_auth_is_loopback(const struct sockaddr *sa);

/* ---- the tokens file (dtsd token ...) ---- */

/* Creates a token for name with grants "hub=role" (hub "*": every hub) and
 * an expiry (0: none), stores its hash in the file (made if absent), and
 * writes the token itself to out (once: it is not stored).  With
 * `certificate` set, no token is made: the grants go to clients whose
 * verified certificate names that principal (out is left empty). */
bool dts_token_create(const char *file, const char *name, const char *certificate, const char *const *grants,
                      size_t ngrants, int64_t expires_ns, char *out, size_t outlen, char *why, size_t whylen);
/* Grants for the JWTs whose subject claim is `subject` (no token made). */
bool dts_token_grant_subject(const char *file, const char *name, const char *subject, const char *const *grants,
                             size_t ngrants, int64_t expires_ns, char *why, size_t whylen);
/* Refetches JWKS whose time has come (once a second or so). */
void dts_auth_tick(dts_auth *a);
bool dts_token_revoke(const char *file, const char *name, char *why, size_t whylen);
/* Lines "name  grants  expires" to stdout. */
bool dts_token_list(const char *file, char *why, size_t whylen);

#endif
