/* fuzz_auth.c -- libFuzzer target: what auth.c and jwt.c read from the
 * wire and the disk.  The first byte picks:
 *   0  the rest is a tokens file (dts_auth_create reads it);
 *   1  the rest is a JWKS document (an issuer's jwks_file);
 *   2  the rest is an issuers file;
 *   else  the rest is an Authorization header's value, checked by an auth
 *      object with static tokens and a JWT issuer whose JWKS holds an RSA
 *      and a P-256 key made at start; the byte's bits pick the peer
 *      (loopback or not), TLS, and the role needed.
 * Checked: no crash, no leak, and a decision is one of the statuses auth.h
 * names. */
#include "server/auth.h"
#include "server/jwt.h"

#include "runtime/log.h"

#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static dts_auth *A;

static void path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void write_file(const char *name, const uint8_t *p, size_t n) {
  char f[128];
  path(f, sizeof(f), name);
  FILE *fp = fopen(f, "wb");
  if (fp == NULL) abort();
  fwrite(p, 1, n, fp);
  fclose(fp);
}

/* A JWK of a fresh key (the public half), as the issuer would publish it. */
static json_t *jwk_of(EVP_PKEY *k, const char *kid) {
  json_t *j = json_object();
  json_object_set_new(j, "kid", json_string(kid));
  BIGNUM *n = NULL, *e = NULL;
  if (EVP_PKEY_get_bn_param(k, "n", &n) == 1 && EVP_PKEY_get_bn_param(k, "e", &e) == 1) {
    unsigned char buf[600], b64[900];
    int len = BN_bn2bin(n, buf);
    EVP_EncodeBlock(b64, buf, len);
    json_object_set_new(j, "kty", json_string("RSA"));
    json_object_set_new(j, "n", json_string((char *)b64)); /* base64, not base64url: parsers must cope */
    len = BN_bn2bin(e, buf);
    EVP_EncodeBlock(b64, buf, len);
    json_object_set_new(j, "e", json_string((char *)b64));
  } else {
    json_object_set_new(j, "kty", json_string("EC"));
    json_object_set_new(j, "crv", json_string("P-256"));
    json_object_set_new(j, "x", json_string("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"));
    json_object_set_new(j, "y", json_string("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"));
  }
  BN_free(n);
  BN_free(e);
  return j;
}

static void setup(void) {
  if (A != NULL) return;
  if (getenv("FZ_LOG") == NULL) dts_log_set_level(DTS_LOG_OFF);
  snprintf(dir, sizeof(dir), "/tmp/dtsd-fuzzauth-XXXXXX");
  if (mkdtemp(dir) == NULL) abort();
  EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  json_t *keys = json_array();
  json_array_append_new(keys, jwk_of(rsa, "r1"));
  json_array_append_new(keys, jwk_of(ec, "e1"));
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(ec);
  char f[128], tokens[128], out[80], why[300];
  path(f, sizeof(f), "jwks.json");
  json_t *jwks = json_pack("{s:o}", "keys", keys);
  json_dump_file(jwks, f, 0);
  json_decref(jwks);
  path(f, sizeof(f), "issuers.json");
  char jw[128];
  path(jw, sizeof(jw), "jwks.json");
  json_t *iss = json_pack("{s:[{s:s,s:s,s:s}]}", "issuers", "issuer", "https://idp.test", "jwks_file", jw, "roles_claim", "roles");
  json_dump_file(iss, f, 0);
  json_decref(iss);
  path(tokens, sizeof(tokens), "tokens.json");
  const char *g[2] = {"default=reader", "*=worker"};
  if (!dts_token_create(tokens, "fz", NULL, g, 2, 0, out, sizeof(out), why, sizeof(why))) abort();
  dts_auth_config c = {.on = true, .tokens_file = tokens, .jwt_issuers = f, .allow = "127.0.0.0/8,10.0.0.0/8,::1"};
  if ((A = dts_auth_create(&c, why, sizeof(why))) == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  if (size == 0) return 0;
  uint8_t pick = data[0];
  data++, size--;
  char why[300], f[128], jw[128];
  if (pick == 0) {
    write_file("fz-tokens.json", data, size);
    path(f, sizeof(f), "fz-tokens.json");
    dts_auth_config c = {.on = true, .tokens_file = f};
    dts_auth_destroy(dts_auth_create(&c, why, sizeof(why)));
  } else if (pick == 1 || pick == 2) {
    write_file(pick == 1 ? "fz-jwks.json" : "fz-issuers.json", data, size);
    path(jw, sizeof(jw), "fz-jwks.json");
    path(f, sizeof(f), "fz-issuers.json");
    if (pick == 1) {
      json_t *iss = json_pack("{s:[{s:s,s:s}]}", "issuers", "issuer", "https://x.test", "jwks_file", jw);
      json_dump_file(iss, f, 0);
      json_decref(iss);
    }
    dts_jwt_destroy(dts_jwt_create(f, why, sizeof(why)));
  } else {
    static struct sockaddr_in loop = {.sin_family = AF_INET, .sin_addr = {.s_addr = 0x0100007f}};
    static struct sockaddr_in far = {.sin_family = AF_INET, .sin_addr = {.s_addr = 0x0100000a}};
    static const int needs[4] = {AUTH_READ, AUTH_WORK, AUTH_WRITE, AUTH_ANY_PRINCIPAL};
    dts_auth_req r = {.peer = (const struct sockaddr *)(pick & 4 ? &far : &loop), .tls = (pick & 8) != 0,
                      .authorization = (const char *)data, .authorization_len = size, .hub = "default",
                      .needs = needs[(pick >> 4) & 3], .cert_principal = (pick & 64) ? "spiffe://x/y" : NULL};
    dts_auth_decision d;
    dts_auth_check(A, &r, &d);
    if (d.st != DTS_ST_OK && d.st != DTS_ST_UNAUTHENTICATED && d.st != DTS_ST_PERMISSION_DENIED &&
        d.st != DTS_ST_RESOURCE_EXHAUSTED)
      abort();
  }
  return 0;
}
