/* jwt.h -- JSON Web Tokens from OpenID Connect issuers (Kubernetes service
 * accounts, Entra ID, Keycloak, ...): signatures checked with OpenSSL
 * against each issuer's JWKS (a file or an https URL, fetched again on an
 * interval and once on an unknown key id), RS256 and ES256 only, and the
 * claims exp, nbf, iss and aud checked with 60 s of clock skew
 * (docs/security.md).  Thread-safe. */
#ifndef DTS_SERVER_JWT_H
#define DTS_SERVER_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dts_jwt dts_jwt;

/* Reads the issuers file:
 *   {"issuers": [{"issuer": "...", "audiences": ["https://durabletask.io"],
 *                 "jwks_file": "..." | "jwks_url": "https://...",
 *                 "subject_claim": "sub", "roles_claim": "...",
 *                 "refresh_seconds": 3600, "refetch_min_seconds": 30}]}
 * and their keys (a URL that cannot be fetched now is tried again later).
 * NULL with why. */
dts_jwt *dts_jwt_create(const char *issuers_file, char *why, size_t whylen);
void dts_jwt_destroy(dts_jwt *j);
/* Fetches the keys whose refresh time has come (call about once a second). */
void dts_jwt_tick(dts_jwt *j);

typedef struct dts_jwt_claims {
  char subject[200];   /* the issuer's subject claim */
  char **roles;        /* the roles claim's strings ("hub=role" or "role"), or NULL */
  size_t nroles;
  int64_t exp;         /* wall ns */
} dts_jwt_claims;

/* Whether token (len bytes) is a JWT this dtsd accepts: true with the
 * claims (dts_jwt_claims_free them), or false with why (for the caller;
 * no secrets in it). */
bool dts_jwt_verify(dts_jwt *j, const char *token, size_t len, dts_jwt_claims *out, char *why, size_t whylen);
void dts_jwt_claims_free(dts_jwt_claims *c);

#endif
