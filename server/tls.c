/* tls.c -- see tls.h.  gRPC calls the fetcher for every new connection,
 * under its own lock: it only compares the files' modification times, at
 * most once a second, and reads them again when they changed.  OpenSSL
 * checks what was read (the chain parses, the key matches the certificate,
 * the client CAs parse) before gRPC is handed anything. */
#define _GNU_SOURCE /* timegm */
#include "server/tls.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <grpc/grpc_security.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define WARN_DAYS 14

typedef struct pem_set {
  char *cert, *key, *ca;      /* file contents */
  struct timespec mt[3];      /* their modification times when read */
  time_t not_after;           /* the certificate's expiry */
} pem_set;

/* The certificate as GnuTLS holds it, for the HTTP listeners; every
 * generation is kept until dtsd stops (a handshake may still use one). */
typedef struct gnutls_gen {
  gnutls_pcert_st pcert[8];
  unsigned npcert;
  gnutls_privkey_t key;
  struct gnutls_gen *older;
} gnutls_gen;

struct dts_tls {
  dts_tls_config cfg;         /* strings owned */
  pthread_mutex_t mu;
  pem_set cur;                /* what is served */
  unsigned long gen;          /* cur's generation: +1 at every reload */
  gnutls_gen *gnu;            /* GnuTLS's copy of cur, made for generation gnu_gen */
  unsigned long gnu_gen;
  bool fresh;                 /* cur not yet handed to gRPC */
  time_t checked;             /* last look at the files (s) */
  struct timespec bad_mt[3];  /* a rejected version: not logged again */
  time_t warned;              /* last expiry warning (s) */
};

static char *read_file(const char *path, struct timespec *mt, char *why, size_t whylen) {
  FILE *f = fopen(path, "rb");
  struct stat st;
  if (f == NULL || fstat(fileno(f), &st) != 0 || st.st_size > (1 << 20)) {
    snprintf(why, whylen, "cannot read %s%s", path, f != NULL ? " (or it is larger than 1 MiB)" : "");
    if (f) fclose(f);
    return NULL;
  }
  char *buf = dts_malloc((size_t)st.st_size + 1);
  size_t n = fread(buf, 1, (size_t)st.st_size, f);
  fclose(f);
  buf[n] = '\0';
  *mt = st.st_mtim;
  return buf;
}

static void pem_free(pem_set *p) {
  if (p->key) OPENSSL_cleanse(p->key, strlen(p->key));
  dts_free(p->cert);
  dts_free(p->key);
  dts_free(p->ca);
  memset(p, 0, sizeof(*p));
}

static void ssl_error(const char *what, char *why, size_t whylen) {
  char e[200];
  ERR_error_string_n(ERR_get_error(), e, sizeof(e));
  ERR_clear_error();
  snprintf(why, whylen, "%s (%s)", what, e);
}

/* The chain parses, the key is the certificate's, the CAs parse. */
static bool pem_check(const dts_tls_config *cfg, pem_set *p, char *why, size_t whylen) {
  bool ok = false;
  BIO *cb = BIO_new_mem_buf(p->cert, -1), *kb = BIO_new_mem_buf(p->key, -1);
  X509 *leaf = PEM_read_bio_X509(cb, NULL, NULL, NULL);
  EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
  if (leaf == NULL) ssl_error("the certificate file holds no PEM certificate", why, whylen);
  else if (key == NULL) ssl_error("the key file holds no PEM private key (an encrypted key is not supported)", why, whylen);
  else if (X509_check_private_key(leaf, key) != 1) ssl_error("the key does not belong to the certificate", why, whylen);
  else ok = true;
  struct tm tm;
  if (ok && ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) == 1) {
    p->not_after = timegm(&tm);
    if (p->not_after <= time(NULL)) {
      snprintf(why, whylen, "the certificate expired on %04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
      ok = false;
    }
  }
  if (ok && p->ca != NULL) {
    BIO *ab = BIO_new_mem_buf(p->ca, -1);
    X509 *ca = PEM_read_bio_X509(ab, NULL, NULL, NULL);
    if (ca == NULL) {
      ssl_error("the client CA file holds no PEM certificate", why, whylen);
      ok = false;
    }
    X509_free(ca);
    BIO_free(ab);
  }
  (void)cfg;
  X509_free(leaf);
  EVP_PKEY_free(key);
  BIO_free(cb);
  BIO_free(kb);
  return ok;
}

static bool pem_load(const dts_tls_config *cfg, pem_set *p, char *why, size_t whylen) {
  memset(p, 0, sizeof(*p));
  p->cert = read_file(cfg->cert, &p->mt[0], why, whylen);
  p->key = p->cert ? read_file(cfg->key, &p->mt[1], why, whylen) : NULL;
  if (p->key != NULL && cfg->client_ca != NULL) p->ca = read_file(cfg->client_ca, &p->mt[2], why, whylen);
  bool ok = p->cert != NULL && p->key != NULL && (cfg->client_ca == NULL || p->ca != NULL) && pem_check(cfg, p, why, whylen);
  if (!ok) pem_free(p);
  return ok;
}

dts_tls *dts_tls_create(const dts_tls_config *cfg, char *why, size_t whylen) {
  if (cfg->client_auth != DTS_MTLS_NONE && cfg->client_ca == NULL) {
    snprintf(why, whylen, "--tls-client-auth %s needs --tls-client-ca", cfg->client_auth == DTS_MTLS_REQUIRE ? "require" : "optional");
    return NULL;
  }
  dts_tls *t = dts_calloc(1, sizeof(*t));
  t->cfg.cert = dts_strdup(cfg->cert);
  t->cfg.key = dts_strdup(cfg->key);
  t->cfg.client_ca = cfg->client_ca ? dts_strdup(cfg->client_ca) : NULL;
  t->cfg.client_auth = cfg->client_auth;
  pthread_mutex_init(&t->mu, NULL);
  char w[400];
  if (!pem_load(&t->cfg, &t->cur, w, sizeof(w))) {
    snprintf(why, whylen, "TLS: %s", w);
    dts_tls_destroy(t);
    return NULL;
  }
  t->fresh = true;
  t->checked = time(NULL);
  return t;
}

static dts_tls *http_tls; /* the one whose certificate the HTTP listeners serve */

void dts_tls_destroy(dts_tls *t) {
  if (t == NULL) return;
  if (http_tls == t) http_tls = NULL;
  for (gnutls_gen *g = t->gnu, *older; g != NULL; g = older) {
    older = g->older;
    for (unsigned i = 0; i < g->npcert; i++) gnutls_pcert_deinit(&g->pcert[i]);
    gnutls_privkey_deinit(g->key);
    dts_free(g);
  }
  pem_free(&t->cur);
  pthread_mutex_destroy(&t->mu);
  dts_free((char *)t->cfg.cert);
  dts_free((char *)t->cfg.key);
  dts_free((char *)t->cfg.client_ca);
  dts_free(t);
}

static bool same_time(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Under mu: reads the files again if they changed; true when cur is new. */
static bool refresh(dts_tls *t) {
  const char *paths[3] = {t->cfg.cert, t->cfg.key, t->cfg.client_ca};
  struct timespec mt[3] = {{0, 0}, {0, 0}, {0, 0}};
  bool changed = false;
  for (int i = 0; i < 3; i++) {
    struct stat st;
    if (paths[i] == NULL || stat(paths[i], &st) != 0) continue;
    mt[i] = st.st_mtim;
    changed |= !same_time(&mt[i], &t->cur.mt[i]);
  }
  if (!changed) return false;
  bool seen_bad = true;
  for (int i = 0; i < 3; i++) seen_bad &= same_time(&mt[i], &t->bad_mt[i]);
  if (seen_bad) return false;
  pem_set next;
  char why[400];
  if (!pem_load(&t->cfg, &next, why, sizeof(why))) {
    DTS_ERROR("tls", "the changed certificate files cannot be used: %s; serving the old certificate", why);
    memcpy(t->bad_mt, mt, sizeof(mt));
    return false;
  }
  pem_free(&t->cur);
  t->cur = next;
  t->gen++;
  DTS_INFO("tls", "certificate reloaded from %s (expires in %ld days); new connections use it", t->cfg.cert,
           (long)((t->cur.not_after - time(NULL)) / 86400));
  return true;
}

static grpc_ssl_certificate_config_reload_status fetch(void *ud, grpc_ssl_server_certificate_config **config) {
  dts_tls *t = ud;
  pthread_mutex_lock(&t->mu);
  time_t now = time(NULL);
  bool give = t->fresh;
  if (!give && now != t->checked) {
    t->checked = now;
    give = refresh(t);
  }
  if (give) {
    grpc_ssl_pem_key_cert_pair pair = {t->cur.key, t->cur.cert};
    /* gRPC 1.51 asserts that a fetched config has root certificates, even
     * when no client certificate is asked for (ssl_security_connector.cc):
     * without a client CA, the server's own chain stands in, unused */
    *config = grpc_ssl_server_certificate_config_create(t->cur.ca ? t->cur.ca : t->cur.cert, &pair, 1);
    t->fresh = false;
  }
  pthread_mutex_unlock(&t->mu);
  return give ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
}

void *dts_tls_grpc_credentials(dts_tls *t) {
  grpc_ssl_client_certificate_request_type req =
      t->cfg.client_auth == DTS_MTLS_REQUIRE    ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
      : t->cfg.client_auth == DTS_MTLS_OPTIONAL ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                                                : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  grpc_ssl_server_credentials_options *o = grpc_ssl_server_credentials_create_options_using_config_fetcher(req, fetch, t);
  return grpc_ssl_server_credentials_create_with_options(o);
}

void dts_tls_check(dts_tls *t) {
  pthread_mutex_lock(&t->mu);
  t->checked = time(NULL);
  if (refresh(t)) t->fresh = true;
  time_t now = time(NULL);
  long days = (long)((t->cur.not_after - now) / 86400);
  bool warn = days < WARN_DAYS && now - t->warned >= 3600;
  if (warn) t->warned = now;
  pthread_mutex_unlock(&t->mu);
  if (warn) DTS_WARN("tls", "the certificate %s expires in %ld days: replace the file (it is read again without a restart)", t->cfg.cert, days);
}


/* ---- the HTTP listeners (GnuTLS, through libmicrohttpd) -------------------- */

/* Under mu: GnuTLS's copy of the current certificate, made when the
 * generation changed; NULL when it does not import (logged). */
static gnutls_gen *gnutls_current(dts_tls *t) {
  if (t->gnu != NULL && t->gnu_gen == t->gen) return t->gnu;
  gnutls_gen *g = dts_calloc(1, sizeof(*g));
  gnutls_datum_t cd = {(unsigned char *)t->cur.cert, (unsigned)strlen(t->cur.cert)};
  gnutls_datum_t kd = {(unsigned char *)t->cur.key, (unsigned)strlen(t->cur.key)};
  g->npcert = 8;
  int rc = gnutls_pcert_list_import_x509_raw(g->pcert, &g->npcert, &cd, GNUTLS_X509_FMT_PEM, 0);
  if (rc >= 0) rc = gnutls_privkey_init(&g->key);
  if (rc >= 0) rc = gnutls_privkey_import_x509_raw(g->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
  if (rc < 0) {
    DTS_ERROR("tls", "the certificate cannot be used for HTTPS: %s", gnutls_strerror(rc));
    for (unsigned i = 0; i < g->npcert && g->key != NULL; i++) gnutls_pcert_deinit(&g->pcert[i]);
    if (g->key) gnutls_privkey_deinit(g->key);
    dts_free(g);
    return t->gnu; /* the older one, if any */
  }
  g->older = t->gnu;
  t->gnu = g;
  t->gnu_gen = t->gen;
  return g;
}

static int http_cert(gnutls_session_t s, const gnutls_datum_t *req_ca, int nreq, const gnutls_pk_algorithm_t *algos,
                     int nalgos, gnutls_pcert_st **pcert, unsigned int *npcert, gnutls_privkey_t *key) {
  (void)s, (void)req_ca, (void)nreq, (void)algos, (void)nalgos;
  dts_tls *t = http_tls;
  if (t == NULL) return -1;
  pthread_mutex_lock(&t->mu);
  time_t now = time(NULL);
  if (now != t->checked) { /* the files, at most once a second, as for gRPC */
    t->checked = now;
    if (refresh(t)) t->fresh = true;
  }
  gnutls_gen *g = gnutls_current(t);
  if (g != NULL) {
    *pcert = g->pcert;
    *npcert = g->npcert;
    *key = g->key;
  }
  pthread_mutex_unlock(&t->mu);
  return g != NULL ? 0 : -1;
}

void *dts_tls_http_callback(dts_tls *t) {
  http_tls = t;
  pthread_mutex_lock(&t->mu);
  gnutls_current(t); /* checked now: a certificate GnuTLS cannot read fails the start */
  bool ok = t->gnu != NULL;
  pthread_mutex_unlock(&t->mu);
  return ok ? (void *)http_cert : NULL;
}

char *dts_tls_client_ca(dts_tls *t, int *mode) {
  pthread_mutex_lock(&t->mu);
  char *ca = t->cur.ca != NULL && t->cfg.client_auth != DTS_MTLS_NONE ? dts_strdup(t->cur.ca) : NULL;
  pthread_mutex_unlock(&t->mu);
  *mode = t->cfg.client_auth;
  return ca;
}
