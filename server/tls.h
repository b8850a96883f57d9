/* tls.h -- dtsd's certificate for the gRPC port (docs/security.md): a
 * chain and key file, an optional client CA (mTLS none|optional|require),
 * read again from disk when the files change -- new connections get the
 * new certificate, open ones keep theirs -- and a bad new file keeps the
 * old certificate (logged).  A certificate close to expiry is warned of. */
#ifndef DTS_SERVER_TLS_H
#define DTS_SERVER_TLS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dts_tls dts_tls;

enum { DTS_MTLS_NONE = 0, DTS_MTLS_OPTIONAL, DTS_MTLS_REQUIRE };

typedef struct dts_tls_config {
  const char *cert;      /* PEM chain, the server's certificate first */
  const char *key;       /* PEM private key */
  const char *client_ca; /* PEM CAs that sign client certificates, or NULL */
  int client_auth;       /* DTS_MTLS_* (needs client_ca unless NONE) */
} dts_tls_config;

/* Reads and checks the files now (a bad one fails the start); NULL with why. */
dts_tls *dts_tls_create(const dts_tls_config *cfg, char *why, size_t whylen);
void dts_tls_destroy(dts_tls *t);
/* gRPC server credentials that ask dtsd for the certificate at every new
 * connection (struct grpc_server_credentials *; the caller releases it). */
void *dts_tls_grpc_credentials(dts_tls *t);
/* Looks at the files again now (the fetcher does it at most once a
 * second); logs a warning while the certificate expires within 14 days. */
void dts_tls_check(dts_tls *t);
/* The same certificate for the HTTP listeners: a GnuTLS certificate
 * callback (gnutls_certificate_retrieve_function2 *) for libmicrohttpd's
 * MHD_OPTION_HTTPS_CERT_CALLBACK, reading the files again as for gRPC.
 * One per process (the callback has no user pointer). */
void *dts_tls_http_callback(dts_tls *t);
/* The client CA file's contents as read at start (dts_free it), and the
 * mTLS mode; NULL when none. */
char *dts_tls_client_ca(dts_tls *t, int *mode);

#endif
