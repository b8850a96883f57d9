/* jwt.c -- see jwt.h.  The algorithm is never taken on the token's word:
 * an issuer's RSA keys verify RS256 only and its P-256 keys ES256 only;
 * "none", HMAC and everything else are refused before any key is looked
 * at.  Keys come from JWKs (n/e, or x/y on P-256) made into EVP_PKEYs with
 * EVP_PKEY_fromdata; libcurl fetches a JWKS URL. */
#include "server/jwt.h"

#include "runtime/alloc.h"
#include "runtime/log.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SKEW_S 60
#define MAX_KEYS 32
#define MIN_REFETCH_S 30 /* an unknown key id fetches the keys again at most this often */

typedef struct jkey {
  char kid[128];
  bool rsa;        /* else P-256 */
  EVP_PKEY *pkey;
} jkey;

typedef struct issuer {
  char *iss, *jwks_file, *jwks_url, *sub_claim, *roles_claim;
  char **aud;
  size_t naud;
  long refresh_s, refetch_min_s; /* on a schedule; after an unknown key id at most this often */
  pthread_mutex_t fetch_mu;   /* one fetch at a time */
  pthread_rwlock_t mu;        /* the keys */
  jkey keys[MAX_KEYS];
  size_t nkeys;
  time_t fetched, tried;      /* last success; last attempt */
} issuer;

struct dts_jwt {
  issuer *iss;
  size_t niss;
};

/* ---- base64url ------------------------------------------------------------------- */

/* Decodes s[0..n) (base64url, no padding) into a new buffer; NULL when it
 * is not base64url. */
static uint8_t *b64url(const char *s, size_t n, size_t *outlen) {
  if (n % 4 == 1 || n > (1 << 20)) return NULL;
  size_t padded = (n + 3) / 4 * 4;
  char *t = dts_malloc(padded + 1);
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
    else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      dts_free(t);
      return NULL;
    }
    t[i] = c;
  }
  for (size_t i = n; i < padded; i++) t[i] = '=';
  t[padded] = '\0';
  uint8_t *out = dts_malloc(padded / 4 * 3 + 1);
  int got = EVP_DecodeBlock(out, (const unsigned char *)t, (int)padded);
  dts_free(t);
  if (got < 0) {
    dts_free(out);
    return NULL;
  }
  *outlen = (size_t)got - (padded - n); /* EVP_DecodeBlock counts the padding's zero bytes */
  return out;
}

static BIGNUM *b64_bn(const char *s) {
  size_t n;
  uint8_t *b = s ? b64url(s, strlen(s), &n) : NULL;
  BIGNUM *bn = b ? BN_bin2bn(b, (int)n, NULL) : NULL;
  dts_free(b);
  return bn;
}

/* ---- keys ----------------------------------------------------------------------- */

static EVP_PKEY *jwk_rsa(json_t *k) {
  BIGNUM *n = b64_bn(json_string_value(json_object_get(k, "n"))), *e = b64_bn(json_string_value(json_object_get(k, "e")));
  EVP_PKEY *pkey = NULL;
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM *params = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
  if (n && e && BN_num_bits(n) >= 2048 && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) && (params = OSSL_PARAM_BLD_to_param(bld)) && ctx &&
      EVP_PKEY_fromdata_init(ctx) == 1)
    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX_free(ctx);
  BN_free(n);
  BN_free(e);
  return pkey;
}

static EVP_PKEY *jwk_p256(json_t *k) {
  const char *crv = json_string_value(json_object_get(k, "crv"));
  const char *xs = json_string_value(json_object_get(k, "x")), *ys = json_string_value(json_object_get(k, "y"));
  if (crv == NULL || strcmp(crv, "P-256") != 0 || xs == NULL || ys == NULL) return NULL;
  size_t xn, yn;
  uint8_t *x = b64url(xs, strlen(xs), &xn), *y = b64url(ys, strlen(ys), &yn);
  EVP_PKEY *pkey = NULL;
  if (x && y && xn == 32 && yn == 32) {
    uint8_t pub[65];
    pub[0] = 0x04; /* uncompressed point */
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    OSSL_PARAM params[3] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
                            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)),
                            OSSL_PARAM_construct_end()};
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1) EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
  }
  dts_free(x);
  dts_free(y);
  return pkey;
}

/* The signing keys of a JWKS document; false with why when it has none. */
static bool keys_from(json_t *j, jkey *out, size_t *n, char *why, size_t whylen) {
  json_t *arr = json_object_get(j, "keys");
  *n = 0;
  if (!json_is_array(arr)) {
    snprintf(why, whylen, "not a JWKS document (no \"keys\" array)");
    return false;
  }
  size_t i;
  json_t *k;
  json_array_foreach(arr, i, k) {
    const char *kty = json_string_value(json_object_get(k, "kty")), *use = json_string_value(json_object_get(k, "use"));
    if (kty == NULL || *n == MAX_KEYS || (use != NULL && strcmp(use, "sig") != 0)) continue;
    bool rsa = strcmp(kty, "RSA") == 0;
    EVP_PKEY *p = rsa ? jwk_rsa(k) : strcmp(kty, "EC") == 0 ? jwk_p256(k) : NULL;
    if (p == NULL) continue; /* a kind of key dtsd does not take (HMAC "oct", small RSA, other curves) */
    const char *kid = json_string_value(json_object_get(k, "kid"));
    snprintf(out[*n].kid, sizeof(out[*n].kid), "%s", kid ? kid : "");
    out[*n].rsa = rsa;
    out[*n].pkey = p;
    (*n)++;
  }
  if (*n == 0) snprintf(why, whylen, "the JWKS has no RSA (2048 bits or more) or P-256 signing key");
  return *n > 0;
}

typedef struct grow {
  char *p;
  size_t n;
} grow;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud) {
  grow *g = ud;
  size_t add = sz * nm;
  if (g->n + add > (1 << 20)) return 0; /* a JWKS is small: stop */
  g->p = dts_realloc(g->p, g->n + add + 1);
  memcpy(g->p + g->n, p, add);
  g->n += add;
  g->p[g->n] = '\0';
  return add;
}

/* The issuer's JWKS document, from its file or URL; NULL with why. */
static json_t *fetch_jwks(const issuer *is, char *why, size_t whylen) {
  json_error_t e;
  if (is->jwks_file != NULL) {
    json_t *j = json_load_file(is->jwks_file, 0, &e);
    if (j == NULL) snprintf(why, whylen, "%s: %s", is->jwks_file, e.text);
    return j;
  }
  CURL *c = curl_easy_init();
  grow g = {NULL, 0};
  long code = 0;
  CURLcode rc = CURLE_FAILED_INIT;
  if (c != NULL) {
    curl_easy_setopt(c, CURLOPT_URL, is->jwks_url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
  }
  json_t *j = rc == CURLE_OK && code == 200 && g.p != NULL ? json_loadb(g.p, g.n, 0, &e) : NULL;
  if (j == NULL)
    snprintf(why, whylen, "%s: %s", is->jwks_url,
             rc != CURLE_OK ? curl_easy_strerror(rc) : g.p == NULL || code != 200 ? "not answered 200 with a body" : e.text);
  dts_free(g.p);
  return j;
}

/* Fetches and installs the issuer's keys; false (logged) when it could not. */
static bool refresh(issuer *is) {
  pthread_mutex_lock(&is->fetch_mu);
  is->tried = time(NULL);
  char why[400];
  jkey fresh[MAX_KEYS];
  size_t n = 0;
  json_t *doc = fetch_jwks(is, why, sizeof(why));
  bool ok = doc != NULL && keys_from(doc, fresh, &n, why, sizeof(why));
  json_decref(doc);
  if (ok) {
    pthread_rwlock_wrlock(&is->mu);
    for (size_t i = 0; i < is->nkeys; i++) EVP_PKEY_free(is->keys[i].pkey);
    memcpy(is->keys, fresh, n * sizeof(jkey));
    is->nkeys = n;
    is->fetched = time(NULL);
    pthread_rwlock_unlock(&is->mu);
    DTS_INFO("auth", "keys of %s: %zu", is->iss, n);
  } else {
    DTS_ERROR("auth", "cannot get the keys of %s: %s; the old ones stay", is->iss, why);
  }
  pthread_mutex_unlock(&is->fetch_mu);
  return ok;
}

/* ---- issuers ------------------------------------------------------------------------ */

static char *str_or(json_t *o, const char *k, const char *dflt) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? dts_strdup(v) : dflt ? dts_strdup(dflt) : NULL;
}

static bool issuer_from(json_t *o, issuer *is, char *why, size_t whylen) {
  is->iss = str_or(o, "issuer", NULL);
  is->jwks_file = str_or(o, "jwks_file", NULL);
  is->jwks_url = str_or(o, "jwks_url", NULL);
  is->sub_claim = str_or(o, "subject_claim", "sub");
  is->roles_claim = str_or(o, "roles_claim", NULL);
  json_t *r = json_object_get(o, "refresh_seconds");
  is->refresh_s = json_is_integer(r) ? (long)json_integer_value(r) : 3600;
  json_t *rm = json_object_get(o, "refetch_min_seconds");
  is->refetch_min_s = json_is_integer(rm) && json_integer_value(rm) >= 0 ? (long)json_integer_value(rm) : MIN_REFETCH_S;
  json_t *aud = json_object_get(o, "audiences");
  size_t na = json_is_array(aud) ? json_array_size(aud) : 0;
  is->aud = dts_calloc(na ? na : 1, sizeof(char *));
  for (size_t i = 0; i < na; i++) {
    const char *a = json_string_value(json_array_get(aud, i));
    if (a) is->aud[is->naud++] = dts_strdup(a);
  }
  if (is->naud == 0) is->aud[is->naud++] = dts_strdup("https://durabletask.io"); /* the scope every SDK asks for */
  pthread_mutex_init(&is->fetch_mu, NULL);
  pthread_rwlock_init(&is->mu, NULL);
  if (is->iss == NULL) snprintf(why, whylen, "an issuer needs \"issuer\"");
  else if ((is->jwks_file == NULL) == (is->jwks_url == NULL)) snprintf(why, whylen, "%s: give jwks_file or jwks_url", is->iss);
  else if (is->refresh_s < 60) snprintf(why, whylen, "%s: refresh_seconds is at least 60", is->iss);
  else return true;
  return false;
}

static void issuer_free(issuer *is) {
  for (size_t i = 0; i < is->nkeys; i++) EVP_PKEY_free(is->keys[i].pkey);
  for (size_t i = 0; i < is->naud; i++) dts_free(is->aud[i]);
  dts_free(is->aud);
  dts_free(is->iss);
  dts_free(is->jwks_file);
  dts_free(is->jwks_url);
  dts_free(is->sub_claim);
  dts_free(is->roles_claim);
  pthread_mutex_destroy(&is->fetch_mu);
  pthread_rwlock_destroy(&is->mu);
}

dts_jwt *dts_jwt_create(const char *file, char *why, size_t whylen) {
  json_error_t e;
  json_t *j = json_load_file(file, JSON_REJECT_DUPLICATES, &e);
  json_t *arr = j ? json_object_get(j, "issuers") : NULL;
  if (!json_is_array(arr) || json_array_size(arr) == 0) {
    snprintf(why, whylen, "%s: %s", file, j ? "expected {\"issuers\": [...]} with at least one" : e.text);
    json_decref(j);
    return NULL;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  dts_jwt *jw = dts_calloc(1, sizeof(*jw));
  jw->iss = dts_calloc(json_array_size(arr), sizeof(issuer));
  for (size_t i = 0; i < json_array_size(arr); i++) {
    char w[300];
    bool ok = issuer_from(json_array_get(arr, i), &jw->iss[i], w, sizeof(w));
    jw->niss++;
    if (!ok) {
      snprintf(why, whylen, "%s: %s", file, w);
      json_decref(j);
      dts_jwt_destroy(jw);
      return NULL;
    }
    /* a file must be good now; a URL may be down now and come up later */
    if (!refresh(&jw->iss[i]) && jw->iss[i].jwks_file != NULL) {
      snprintf(why, whylen, "%s: the keys of %s cannot be read (logged above)", file, jw->iss[i].iss);
      json_decref(j);
      dts_jwt_destroy(jw);
      return NULL;
    }
  }
  json_decref(j);
  return jw;
}

void dts_jwt_destroy(dts_jwt *j) {
  if (j == NULL) return;
  for (size_t i = 0; i < j->niss; i++) issuer_free(&j->iss[i]);
  dts_free(j->iss);
  dts_free(j);
  curl_global_cleanup();
}

void dts_jwt_tick(dts_jwt *j) {
  time_t now = time(NULL);
  for (size_t i = 0; j != NULL && i < j->niss; i++) {
    issuer *is = &j->iss[i];
    bool due = is->fetched == 0 ? now - is->tried >= MIN_REFETCH_S : now - is->fetched >= is->refresh_s;
    if (due && now - is->tried >= MIN_REFETCH_S / 3) refresh(is);
  }
}

/* ---- verifying --------------------------------------------------------------------- */

/* ES256 signatures are r||s; OpenSSL wants DER. */
static uint8_t *es256_der(const uint8_t *sig, size_t n, size_t *dn) {
  if (n != 64) return NULL;
  ECDSA_SIG *s = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
  uint8_t *der = NULL;
  if (s && r && ss && ECDSA_SIG_set0(s, r, ss) == 1) {
    r = ss = NULL; /* owned by s */
    int len = i2d_ECDSA_SIG(s, NULL);
    if (len > 0) {
      der = dts_malloc((size_t)len);
      uint8_t *p = der;
      i2d_ECDSA_SIG(s, &p);
      *dn = (size_t)len;
    }
  }
  BN_free(r);
  BN_free(ss);
  ECDSA_SIG_free(s);
  return der;
}

static bool verify_sig(EVP_PKEY *k, bool rsa, const char *signed_part, size_t sn, const uint8_t *sig, size_t n) {
  size_t dn = 0;
  uint8_t *der = rsa ? NULL : es256_der(sig, n, &dn);
  if (!rsa && der == NULL) return false;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) == 1 &&
            EVP_DigestVerify(ctx, rsa ? sig : der, rsa ? n : dn, (const unsigned char *)signed_part, sn) == 1;
  EVP_MD_CTX_free(ctx);
  dts_free(der);
  return ok;
}

/* Whether the payload's aud names one of the issuer's audiences. */
static bool aud_ok(const issuer *is, json_t *aud) {
  for (size_t i = 0; i < is->naud; i++) {
    if (json_is_string(aud) && strcmp(json_string_value(aud), is->aud[i]) == 0) return true;
    for (size_t k = 0; json_is_array(aud) && k < json_array_size(aud); k++)
      if (json_is_string(json_array_get(aud, k)) && strcmp(json_string_value(json_array_get(aud, k)), is->aud[i]) == 0)
        return true;
  }
  return false;
}

static json_t *part_json(const char *s, size_t n) {
  size_t len;
  uint8_t *b = b64url(s, n, &len);
  json_t *j = b ? json_loadb((const char *)b, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
  dts_free(b);
  return json_is_object(j) ? j : (json_decref(j), NULL);
}

/* Finds the key for kid among the issuer's of the right kind; NULL if none. */
static EVP_PKEY *find_key(issuer *is, const char *kid, bool rsa) {
  EVP_PKEY *k = NULL;
  pthread_rwlock_rdlock(&is->mu);
  for (size_t i = 0; i < is->nkeys && k == NULL; i++)
    if (is->keys[i].rsa == rsa && (kid == NULL ? is->nkeys == 1 : strcmp(is->keys[i].kid, kid) == 0)) {
      k = is->keys[i].pkey;
      EVP_PKEY_up_ref(k);
    }
  pthread_rwlock_unlock(&is->mu);
  return k;
}

static bool claims_ok(issuer *is, json_t *p, dts_jwt_claims *out, char *why, size_t whylen) {
  int64_t now = (int64_t)time(NULL);
  json_t *exp = json_object_get(p, "exp"), *nbf = json_object_get(p, "nbf");
  const char *sub = json_string_value(json_object_get(p, is->sub_claim));
  if (!json_is_integer(exp) || json_integer_value(exp) + SKEW_S < now) snprintf(why, whylen, "the token has expired (exp)");
  else if (nbf != NULL && (!json_is_integer(nbf) || json_integer_value(nbf) - SKEW_S > now))
    snprintf(why, whylen, "the token is not valid yet (nbf)");
  else if (!aud_ok(is, json_object_get(p, "aud"))) snprintf(why, whylen, "the token is not for this audience (aud)");
  else if (sub == NULL || sub[0] == '\0' || strlen(sub) >= sizeof(out->subject))
    snprintf(why, whylen, "the token has no usable '%s' claim", is->sub_claim);
  else {
    snprintf(out->subject, sizeof(out->subject), "%s", sub);
    out->exp = (int64_t)json_integer_value(exp) * 1000000000;
    json_t *roles = is->roles_claim ? json_object_get(p, is->roles_claim) : NULL;
    if (json_is_string(roles)) { /* one role, or several separated by spaces or commas */
      char *copy = dts_strdup(json_string_value(roles)), *save = NULL;
      for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        out->roles = dts_realloc(out->roles, (out->nroles + 1) * sizeof(char *));
        out->roles[out->nroles++] = dts_strdup(t);
      }
      dts_free(copy);
    }
    for (size_t i = 0; json_is_array(roles) && i < json_array_size(roles) && i < 64; i++)
      if (json_is_string(json_array_get(roles, i))) {
        out->roles = dts_realloc(out->roles, (out->nroles + 1) * sizeof(char *));
        out->roles[out->nroles++] = dts_strdup(json_string_value(json_array_get(roles, i)));
      }
    return true;
  }
  return false;
}

bool dts_jwt_verify(dts_jwt *j, const char *token, size_t len, dts_jwt_claims *out, char *why, size_t whylen) {
  memset(out, 0, sizeof(*out));
  const char *d1 = memchr(token, '.', len), *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
  if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL) {
    snprintf(why, whylen, "not a JSON Web Token");
    return false;
  }
  json_t *h = part_json(token, (size_t)(d1 - token)), *p = part_json(d1 + 1, (size_t)(d2 - d1 - 1));
  size_t sn = 0;
  uint8_t *sig = b64url(d2 + 1, len - (size_t)(d2 + 1 - token), &sn);
  bool ok = false;
  const char *alg = h ? json_string_value(json_object_get(h, "alg")) : NULL;
  const char *iss = p ? json_string_value(json_object_get(p, "iss")) : NULL;
  issuer *is = NULL;
  for (size_t i = 0; iss != NULL && i < j->niss && is == NULL; i++)
    if (strcmp(j->iss[i].iss, iss) == 0) is = &j->iss[i];
  if (h == NULL || p == NULL || sig == NULL) {
    snprintf(why, whylen, "not a JSON Web Token (its parts do not decode)");
  } else if (alg == NULL || (strcmp(alg, "RS256") != 0 && strcmp(alg, "ES256") != 0)) {
    snprintf(why, whylen, "the token's algorithm is not RS256 or ES256");
  } else if (is == NULL) {
    snprintf(why, whylen, "the token's issuer is not one this dtsd trusts");
  } else {
    bool rsa = strcmp(alg, "RS256") == 0;
    const char *kid = json_string_value(json_object_get(h, "kid"));
    EVP_PKEY *k = find_key(is, kid, rsa);
    if (k == NULL && time(NULL) - is->tried >= is->refetch_min_s && refresh(is)) k = find_key(is, kid, rsa); /* rotated? */
    if (k == NULL) snprintf(why, whylen, "no key of the issuer matches the token (kid)");
    else if (!verify_sig(k, rsa, token, (size_t)(d2 - token), sig, sn)) snprintf(why, whylen, "the token's signature does not verify");
    else ok = claims_ok(is, p, out, why, whylen);
    EVP_PKEY_free(k);
  }
  json_decref(h);
  json_decref(p);
  dts_free(sig);
  if (!ok) dts_jwt_claims_free(out);
  return ok;
}

void dts_jwt_claims_free(dts_jwt_claims *c) {
  for (size_t i = 0; i < c->nroles; i++) dts_free(c->roles[i]);
  dts_free(c->roles);
  c->roles = NULL;
  c->nroles = 0;
}
