/* auth.c -- see auth.h.  Tokens are 32 random bytes (OpenSSL RAND_bytes)
 * written as "dtsd_" + base64url; the file keeps only their SHA-256, and a
 * presented token is hashed and compared with every stored hash in
 * constant time (CRYPTO_memcmp), so neither the file nor the timing gives
 * a token away. */
#include "server/auth.h"

#include "runtime/alloc.h"
#include "server/jwt.h"
#include "server/pbjson.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUB_MAX 64
#define NAME_MAX_LEN 64
#define MAX_GRANTS 64

typedef struct grant {
  char hub[HUB_MAX + 1]; /* "*": every hub */
  int roles;
} grant;

typedef struct tok {
  char name[200];      /* a static token's name (64 at most), or a JWT's subject */
  char *cert;          /* a client certificate's principal, or NULL */
  char *subject;       /* a JWT subject granted in the tokens file, or NULL */
  uint8_t hash[32];
  grant grants[MAX_GRANTS];
  size_t ngrants;
  int64_t expires; /* wall ns; 0: never */
} tok;

typedef struct cidr {
  int family;
  uint8_t addr[16];
  int bits;
} cidr;

struct dts_auth {
  bool on, emulator_mode;
  char *tokens_file;
  pthread_rwlock_t lock; /* the tokens */
  tok *toks;
  size_t ntoks;
  cidr *allow;
  size_t nallow;
  atomic_long n_unauth, n_denied;
  dts_jwt *jwt;             /* NULL: no JWT issuers (under lock: swapped by a reload) */
  char *jwt_file;
  /* verified JWTs by their SHA-256, until they expire: a busy worker's
   * calls do not pay a signature check each (a table that forgets on
   * collision) */
  pthread_mutex_t cmu;
  struct jwt_cached {
    bool used;
    tok t; /* name: the subject; grants: from its roles claim and the tokens file; hash; expires */
  } cache[4096];
  /* failed authentications by address: past fail_limit in a minute, the
   * address waits 1, 2, 4 ... 60 s (a hash table that forgets collisions) */
  int fail_limit;
  pthread_mutex_t fmu;
  struct failslot {
    uint8_t addr[16];
    int fam;
    int64_t since, until; /* the minute counted from; blocked until (wall ns) */
    int fails, level;
  } fails[1024];
};

/* ---- roles and methods -------------------------------------------------------- */

int dts_auth_role_parse(const char *s) {
  if (strcmp(s, "reader") == 0) return AUTH_ROLE_READER;
  if (strcmp(s, "worker") == 0) return AUTH_ROLE_WORKER;
  if (strcmp(s, "contributor") == 0) return AUTH_ROLE_CONTRIBUTOR;
  if (strcmp(s, "admin") == 0) return AUTH_ROLE_ADMIN;
  return 0;
}

const char *dts_auth_role_name(int bits) {
  if ((bits & AUTH_ROLE_ADMIN) == AUTH_ROLE_ADMIN) return "admin";
  if ((bits & AUTH_ROLE_CONTRIBUTOR) == AUTH_ROLE_CONTRIBUTOR) return "contributor";
  if (bits == (AUTH_READ | AUTH_WORK)) return "reader+worker";
  if (bits & AUTH_WORK) return "worker";
  if (bits & AUTH_READ) return "reader";
  return "none";
}

int dts_auth_method_needs(dts_method m) {
  switch (m) {
  case DTS_M_HELLO:
  case DTS_M_ADMIN_LIST_TASK_HUBS: return AUTH_READ | AUTH_WORK; /* any role */
  case DTS_M_GET_INSTANCE:
  case DTS_M_WAIT_START:
  case DTS_M_WAIT_COMPLETION:
  case DTS_M_QUERY_INSTANCES:
  case DTS_M_LIST_INSTANCE_IDS:
  case DTS_M_STREAM_HISTORY: /* a worker's for-work-item read is let through by the bridge */
  case DTS_M_GET_ENTITY:
  case DTS_M_QUERY_ENTITIES:
  case DTS_M_ADMIN_GET_RETENTION:
  case DTS_M_ADMIN_LIST_WORKERS:
  case DTS_M_ADMIN_COUNT_INSTANCES:
  case DTS_M_ADMIN_GET_SCHEDULE:
  case DTS_M_ADMIN_LIST_SCHEDULES: return AUTH_READ;
  case DTS_M_GET_WORK_ITEMS:
  case DTS_M_COMPLETE_ACTIVITY:
  case DTS_M_COMPLETE_ORCHESTRATOR:
  case DTS_M_COMPLETE_ENTITY:
  case DTS_M_ABANDON_ACTIVITY:
  case DTS_M_ABANDON_ORCHESTRATOR:
  case DTS_M_ABANDON_ENTITY: return AUTH_WORK;
  case DTS_M_CREATE_TASK_HUB:
  case DTS_M_DELETE_TASK_HUB: return AUTH_ADMIN;
  default: return AUTH_WRITE; /* every other method changes data */
  }
}

/* ---- addresses ------------------------------------------------------------------ */

bool dts_auth_parse_peer(const char *peer, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  char host[64];
  if (strncmp(peer, "ipv4:", 5) == 0) {
    const char *colon = strrchr(peer + 5, ':');
    size_t n = colon ? (size_t)(colon - peer - 5) : strlen(peer + 5);
    if (n >= sizeof(host)) return false;
    memcpy(host, peer + 5, n);
    host[n] = '\0';
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    return inet_pton(AF_INET, host, &in->sin_addr) == 1;
  }
  if (strncmp(peer, "ipv6:[", 6) == 0) {
    const char *close = strchr(peer + 6, ']');
    if (close == NULL || (size_t)(close - peer - 6) >= sizeof(host)) return false;
    memcpy(host, peer + 6, (size_t)(close - peer - 6));
    host[close - peer - 6] = '\0';
    char *pct = strchr(host, '%'); /* a zone id ("%25eth0") */
    if (pct) *pct = '\0';
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    in6->sin6_family = AF_INET6;
    return inet_pton(AF_INET6, host, &in6->sin6_addr) == 1;
  }
  return false;
}

/* The address's bytes (an IPv4-mapped IPv6 address as IPv4). */
static int addr_bytes(const struct sockaddr *sa, uint8_t out[16]) {
  if (sa->sa_family == AF_INET) {
    memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    return AF_INET;
  }
  if (sa->sa_family == AF_INET6) {
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(b, mapped, 12) == 0) {
      memcpy(out, b + 12, 4);
      return AF_INET;
    }
    memcpy(out, b, 16);
    return AF_INET6;
  }
  return 0;
}

bool dts_auth_is_loopback(const struct sockaddr *sa) {
  uint8_t b[16] = {0};
  int fam = addr_bytes(sa, b);
  if (fam == AF_INET) return b[0] == 127;
  static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return fam == AF_INET6 && memcmp(b, one, 16) == 0;
}

static bool cidr_parse(const char *s, cidr *c) {
  char host[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n == 0 || n >= sizeof(host)) return false;
  memcpy(host, s, n);
  host[n] = '\0';
  memset(c, 0, sizeof(*c));
  if (inet_pton(AF_INET, host, c->addr) == 1) c->family = AF_INET;
  else if (inet_pton(AF_INET6, host, c->addr) == 1) c->family = AF_INET6;
  else return false;
  int maxbits = c->family == AF_INET ? 32 : 128;
  c->bits = maxbits;
  if (slash) {
    char *end;
    long b = strtol(slash + 1, &end, 10);
    if (end == slash + 1 || *end != '\0' || b < 0 || b > maxbits) return false;
    c->bits = (int)b;
  }
  return true;
}

static bool cidr_match(const cidr *c, const struct sockaddr *sa) {
  uint8_t b[16] = {0};
  if (addr_bytes(sa, b) != c->family) return false;
  int full = c->bits / 8, rest = c->bits % 8;
  if (memcmp(b, c->addr, (size_t)full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (b[full] & mask) == (c->addr[full] & mask);
}

/* ---- the tokens file -------------------------------------------------------------- */

static void sha256(const void *p, size_t n, uint8_t out[32]) {
  unsigned len = 32;
  EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

static bool hex32(const char *s, uint8_t out[32]) {
  if (strlen(s) != 64) return false;
  for (int i = 0; i < 32; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return false;
    out[i] = (uint8_t)v;
  }
  return true;
}

static bool name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > NAME_MAX_LEN) return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
          *p == '.' || *p == '@'))
      return false;
  return true;
}

/* "hub=role" into g; NULL or why. */
static const char *grant_parse(const char *s, grant *g) {
  const char *eq = strchr(s, '=');
  if (eq == NULL || eq == s || (size_t)(eq - s) > HUB_MAX) return "a grant is hub=role (hub '*' for every hub)";
  memcpy(g->hub, s, (size_t)(eq - s));
  g->hub[eq - s] = '\0';
  g->roles = dts_auth_role_parse(eq + 1);
  if (g->roles == 0) return "a role is reader, worker, contributor or admin";
  if (g->roles == AUTH_ROLE_ADMIN && strcmp(g->hub, "*") != 0) return "admin is granted on every hub: '*=admin'";
  return NULL;
}

static void toks_free(tok *v, size_t n) {
  for (size_t i = 0; v != NULL && i < n; i++) {
    dts_free(v[i].cert);
    dts_free(v[i].subject);
  }
  if (v) OPENSSL_cleanse(v, n * sizeof(tok));
  dts_free(v);
}

/* The tokens in j into *out (toks_free it); false with why. */
static bool toks_from_json(json_t *j, tok **out, size_t *n, char *why, size_t whylen) {
  json_t *arr = json_object_get(j, "tokens");
  *out = NULL;
  *n = 0;
  if (!json_is_array(arr)) {
    snprintf(why, whylen, "expected {\"tokens\": [...]}");
    return false;
  }
  tok *v = dts_calloc(json_array_size(arr) + 1, sizeof(tok));
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) {
    tok *t = &v[i];
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *h = json_string_value(json_object_get(e, "sha256"));
    const char *cert = json_string_value(json_object_get(e, "certificate"));
    const char *subj = json_string_value(json_object_get(e, "subject"));
    json_t *gs = json_object_get(e, "grants"), *exp = json_object_get(e, "expires");
    const char *bad = NULL;
    if (name == NULL || !name_ok(name)) bad = "a name of 1-64 letters, digits, '-', '_', '.', '@'";
    else if (cert == NULL && subj == NULL && (h == NULL || !hex32(h, t->hash)))
      bad = "sha256: 64 hex digits (or a certificate principal, or a JWT subject)";
    else if (subj != NULL && (subj[0] == '\0' || strlen(subj) >= 200)) bad = "subject: 1-199 characters";
    else if (cert != NULL && (cert[0] == '\0' || strlen(cert) > 512)) bad = "certificate: 1-512 characters";
    else if (!json_is_array(gs) || json_array_size(gs) == 0 || json_array_size(gs) > MAX_GRANTS) bad = "grants: 1-64 of them";
    else if (exp != NULL && !json_is_null(exp) && (!json_is_string(exp) || !pbjson_parse_time(json_string_value(exp), &t->expires)))
      bad = "expires: an RFC 3339 time or null";
    for (size_t k = 0; bad == NULL && k < json_array_size(gs); k++) {
      const char *gstr = json_string_value(json_array_get(gs, k));
      bad = gstr ? grant_parse(gstr, &t->grants[k]) : "a grant is a string hub=role";
    }
    if (bad != NULL) {
      snprintf(why, whylen, "token %zu%s%s: %s", i + 1, name ? " " : "", name ? name : "", bad);
      toks_free(v, i);
      return false;
    }
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->cert = cert ? dts_strdup(cert) : NULL;
    t->subject = subj ? dts_strdup(subj) : NULL;
    t->ngrants = json_array_size(gs);
  }
  *out = v;
  *n = json_array_size(arr);
  return true;
}

static json_t *load_file(const char *file, bool missing_ok, char *why, size_t whylen) {
  json_error_t e;
  if (missing_ok && access(file, F_OK) != 0) return json_pack("{s:[]}", "tokens");
  json_t *j = json_load_file(file, JSON_REJECT_DUPLICATES, &e);
  if (j == NULL) snprintf(why, whylen, "%s: %s (line %d)", file, e.text, e.line);
  return j;
}

static bool load_toks(const char *file, tok **out, size_t *n, char *why, size_t whylen) {
  json_t *j = load_file(file, false, why, whylen);
  if (j == NULL) return false;
  char w[300];
  bool ok = toks_from_json(j, out, n, w, sizeof(w));
  if (!ok) snprintf(why, whylen, "%s: %s", file, w);
  json_decref(j);
  return ok;
}

/* Writes j to file atomically, readable by its owner only. */
static bool save_file(const char *file, json_t *j, char *why, size_t whylen) {
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", file);
  mode_t old = umask(077);
  int rc = json_dump_file(j, tmp, JSON_INDENT(2));
  umask(old);
  struct stat st; /* a file made readable for dtsd's user stays so */
  if (rc == 0 && stat(file, &st) == 0) {
    if (chown(tmp, st.st_uid, st.st_gid) != 0) { /* not root: the file stays ours */
    }
    chmod(tmp, st.st_mode & 0640);
  }
  if (rc != 0 || rename(tmp, file) != 0) {
    snprintf(why, whylen, "cannot write %s", file);
    unlink(tmp);
    return false;
  }
  return true;
}

bool dts_token_create(const char *file, const char *name, const char *certificate, const char *const *grants,
                      size_t ngrants, int64_t expires_ns, char *out, size_t outlen, char *why, size_t whylen) {
  if (!name_ok(name)) {
    snprintf(why, whylen, "--name: 1-64 letters, digits, '-', '_', '.', '@'");
    return false;
  }
  if (ngrants == 0 || ngrants > MAX_GRANTS) {
    snprintf(why, whylen, "give 1 to 64 grants (--hub H --role R, or --grant hub=role)");
    return false;
  }
  json_t *gs = json_array();
  for (size_t i = 0; i < ngrants; i++) {
    grant g;
    const char *bad = grant_parse(grants[i], &g);
    if (bad != NULL) {
      snprintf(why, whylen, "'%s': %s", grants[i], bad);
      json_decref(gs);
      return false;
    }
    json_array_append_new(gs, json_string(grants[i]));
  }
  json_t *j = load_file(file, true, why, whylen);
  json_t *arr = j ? json_object_get(j, "tokens") : NULL;
  if (j == NULL || !json_is_array(arr)) {
    if (j != NULL) snprintf(why, whylen, "%s: expected {\"tokens\": [...]}", file);
    json_decref(j);
    json_decref(gs);
    return false;
  }
  size_t i;
  json_t *e;
  json_array_foreach(arr, i, e) {
    const char *n = json_string_value(json_object_get(e, "name"));
    if (n != NULL && strcmp(n, name) == 0) {
      snprintf(why, whylen, "a token named '%s' exists: revoke it first", name);
      json_decref(j);
      json_decref(gs);
      return false;
    }
  }
  char now[40], exp[40];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  pbjson_time((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, now);
  if (expires_ns) pbjson_time(expires_ns, exp);
  if (certificate != NULL) { /* a client certificate's principal or a JWT subject: no secret */
    if (outlen) out[0] = '\0';
    bool is_subject = strncmp(certificate, "subject:", 8) == 0;
    json_array_append_new(arr, json_pack("{s:s,s:s,s:o,s:s,s:o}", "name", name, is_subject ? "subject" : "certificate",
                                         is_subject ? certificate + 8 : certificate, "grants", gs, "created", now, "expires",
                                         expires_ns ? json_string(exp) : json_null()));
    bool ok = save_file(file, j, why, whylen);
    json_decref(j);
    return ok;
  }
  uint8_t raw[32], hash[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    snprintf(why, whylen, "no random bytes from OpenSSL");
    json_decref(j);
    json_decref(gs);
    return false;
  }
  char b64[64];
  EVP_EncodeBlock((unsigned char *)b64, raw, sizeof(raw)); /* then made URL-safe, without padding */
  for (char *p = b64; *p; p++) *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
  char *pad = strchr(b64, '=');
  if (pad) *pad = '\0';
  snprintf(out, outlen, "dtsd_%s", b64);
  sha256(out, strlen(out), hash);
  char hex[65];
  for (int k = 0; k < 32; k++) snprintf(hex + 2 * k, 3, "%02x", hash[k]);
  json_array_append_new(arr, json_pack("{s:s,s:s,s:o,s:s,s:o}", "name", name, "sha256", hex, "grants", gs, "created", now,
                                       "expires", expires_ns ? json_string(exp) : json_null()));
  bool ok = save_file(file, j, why, whylen);
  json_decref(j);
  OPENSSL_cleanse(raw, sizeof(raw));
  return ok;
}

bool dts_token_grant_subject(const char *file, const char *name, const char *subject, const char *const *grants,
                             size_t ngrants, int64_t expires_ns, char *why, size_t whylen) {
  char tagged[256], none[1];
  snprintf(tagged, sizeof(tagged), "subject:%s", subject);
  return dts_token_create(file, name, tagged, grants, ngrants, expires_ns, none, sizeof(none), why, whylen);
}

bool dts_token_revoke(const char *file, const char *name, char *why, size_t whylen) {
  json_t *j = load_file(file, false, why, whylen);
  if (j == NULL) return false;
  json_t *arr = json_object_get(j, "tokens");
  bool found = false;
  for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++) {
    const char *n = json_string_value(json_object_get(json_array_get(arr, i), "name"));
    if (n != NULL && strcmp(n, name) == 0) {
      json_array_remove(arr, i);
      found = true;
      break;
    }
  }
  bool ok = found && save_file(file, j, why, whylen);
  if (!found) snprintf(why, whylen, "no token named '%s' in %s", name, file);
  json_decref(j);
  return ok;
}

bool dts_token_list(const char *file, char *why, size_t whylen) {
  json_t *j = load_file(file, false, why, whylen);
  if (j == NULL) return false;
  tok *v;
  size_t n;
  char w[300];
  if (!toks_from_json(j, &v, &n, w, sizeof(w))) {
    snprintf(why, whylen, "%s: %s", file, w);
    json_decref(j);
    return false;
  }
  printf("%-24s %-40s %-26s %s\n", "NAME", "GRANTS", "EXPIRES", "CERTIFICATE");
  json_t *arr = json_object_get(j, "tokens");
  for (size_t i = 0; i < n; i++) {
    char gs[512] = "", exp[40] = "never";
    json_t *g = json_object_get(json_array_get(arr, i), "grants");
    for (size_t k = 0; k < json_array_size(g); k++)
      snprintf(gs + strlen(gs), sizeof(gs) - strlen(gs), "%s%s", k ? "," : "", json_string_value(json_array_get(g, k)));
    if (v[i].expires) pbjson_time(v[i].expires, exp);
    printf("%-24s %-40s %-26s %s%s\n", v[i].name, gs, exp, v[i].subject ? "subject " : "",
           v[i].cert ? v[i].cert : v[i].subject ? v[i].subject : "");
  }
  toks_free(v, n);
  json_decref(j);
  return true;
}

/* ---- the decision ------------------------------------------------------------------- */

dts_auth *dts_auth_create(const dts_auth_config *cfg, char *why, size_t whylen) {
  dts_auth *a = dts_calloc(1, sizeof(*a));
  a->on = cfg->on;
  a->emulator_mode = cfg->emulator_mode;
  a->fail_limit = cfg->fail_limit > 0 ? cfg->fail_limit : 20;
  pthread_rwlock_init(&a->lock, NULL);
  pthread_mutex_init(&a->fmu, NULL);
  pthread_mutex_init(&a->cmu, NULL);
  if (cfg->tokens_file != NULL) {
    a->tokens_file = dts_strdup(cfg->tokens_file);
    if (!load_toks(a->tokens_file, &a->toks, &a->ntoks, why, whylen)) {
      dts_auth_destroy(a);
      return NULL;
    }
  }
  if (cfg->jwt_issuers != NULL && cfg->jwt_issuers[0] != '\0') {
    a->jwt_file = dts_strdup(cfg->jwt_issuers);
    if ((a->jwt = dts_jwt_create(cfg->jwt_issuers, why, whylen)) == NULL) {
      dts_auth_destroy(a);
      return NULL;
    }
  }
  if (cfg->allow != NULL && cfg->allow[0] != '\0') {
    char *copy = dts_strdup(cfg->allow), *save = NULL;
    for (char *s = strtok_r(copy, ", ", &save); s != NULL; s = strtok_r(NULL, ", ", &save)) {
      a->allow = dts_realloc(a->allow, (a->nallow + 1) * sizeof(cidr));
      if (!cidr_parse(s, &a->allow[a->nallow])) {
        snprintf(why, whylen, "--allow: '%s' is not an address or CIDR block (10.0.0.0/8, fd00::/8, 127.0.0.1)", s);
        dts_free(copy);
        dts_auth_destroy(a);
        return NULL;
      }
      a->nallow++;
    }
    dts_free(copy);
  }
  return a;
}

void dts_auth_destroy(dts_auth *a) {
  if (a == NULL) return;
  pthread_rwlock_destroy(&a->lock);
  pthread_mutex_destroy(&a->fmu);
  pthread_mutex_destroy(&a->cmu);
  dts_jwt_destroy(a->jwt);
  dts_free(a->jwt_file);
  toks_free(a->toks, a->ntoks);
  dts_free(a->allow);
  dts_free(a->tokens_file);
  dts_free(a);
}

bool dts_auth_reload(dts_auth *a, char *why, size_t whylen) {
  tok *v = NULL;
  size_t n = 0;
  if (a->tokens_file != NULL && !load_toks(a->tokens_file, &v, &n, why, whylen)) return false;
  dts_jwt *jw = NULL;
  if (a->jwt_file != NULL && (jw = dts_jwt_create(a->jwt_file, why, whylen)) == NULL) {
    toks_free(v, n);
    return false;
  }
  pthread_rwlock_wrlock(&a->lock);
  tok *old = a->toks;
  size_t nold = a->ntoks;
  dts_jwt *oldj = a->jwt;
  if (a->tokens_file != NULL) {
    a->toks = v;
    a->ntoks = n;
  } else {
    old = NULL, nold = 0;
  }
  if (jw != NULL) a->jwt = jw;
  else oldj = NULL;
  pthread_rwlock_unlock(&a->lock);
  toks_free(old, nold);
  dts_jwt_destroy(oldj);
  pthread_mutex_lock(&a->cmu); /* cached JWTs carry grants from the old file */
  for (size_t i = 0; i < 4096; i++) a->cache[i].used = false;
  pthread_mutex_unlock(&a->cmu);
  return true;
}

bool dts_auth_enabled(const dts_auth *a) { return a->on; }

static int roles_of(const tok *t, const char *hub) {
  int r = 0;
  for (size_t i = 0; i < t->ngrants; i++)
    if (strcmp(t->grants[i].hub, "*") == 0 || (hub != NULL && strcmp(t->grants[i].hub, hub) == 0)) r |= t->grants[i].roles;
  return r;
}

int dts_auth_roles_in(const dts_auth_decision *d, const char *hub) {
  if (d->all_hubs) return AUTH_ROLE_ADMIN;
  int r = 0;
  for (int i = 0; i < d->ngrants; i++)
    if (strcmp(d->grant_hub[i], "*") == 0 || strcmp(d->grant_hub[i], hub) == 0) r |= d->grant_roles[i];
  return r;
}

/* t names the caller: its name, its roles on r's hub and all its grants go
 * into d; returns when t expires (0: never).  Under the tokens' lock when t
 * is one of them. */
static int64_t take_principal(dts_auth_decision *d, const tok *t, const char *hub) {
  snprintf(d->principal, sizeof(d->principal), "%s", t->name);
  d->roles = roles_of(t, hub);
  for (size_t i = 0; i < t->ngrants && d->ngrants < 16; i++) {
    snprintf(d->grant_hub[d->ngrants], sizeof(d->grant_hub[0]), "%s", t->grants[i].hub);
    d->grant_roles[d->ngrants++] = t->grants[i].roles;
  }
  return t->expires;
}

void dts_auth_counts(dts_auth *a, long *unauthenticated, long *denied) {
  *unauthenticated = atomic_load_explicit(&a->n_unauth, memory_order_relaxed);
  *denied = atomic_load_explicit(&a->n_denied, memory_order_relaxed);
}

static void deny(dts_auth *a, dts_auth_decision *d, dts_status st, const char *reason, const char *msg) {
  if (!d->quiet) atomic_fetch_add_explicit(st == DTS_ST_UNAUTHENTICATED ? &a->n_unauth : &a->n_denied, 1, memory_order_relaxed);
  /* (a back-off, RESOURCE_EXHAUSTED, counts as a denial) */
  d->st = st;
  snprintf(d->reason, sizeof(d->reason), "%.119s", reason);
  snprintf(d->msg, sizeof(d->msg), "%s", msg);
}

/* The token in "Bearer <token>" (case-insensitive scheme), or NULL. */
static const char *bearer_value(const dts_auth_req *r, size_t *len) {
  const char *v = r->authorization;
  size_t n = r->authorization_len;
  if (v == NULL || n < 8 || strncasecmp(v, "Bearer ", 7) != 0) return NULL;
  v += 7;
  n -= 7;
  while (n > 0 && *v == ' ') v++, n--;
  *len = n;
  return n > 0 ? v : NULL;
}

/* The bearer token's hash; false when there is none. */
static bool bearer_hash(const dts_auth_req *r, uint8_t hash[32]) {
  size_t n;
  const char *v = bearer_value(r, &n);
  if (v == NULL) return false;
  sha256(v, n, hash);
  return true;
}

static int64_t wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The address's slot (under fmu); NULL without an address. */
static struct failslot *fail_slot(dts_auth *a, const struct sockaddr *peer) {
  uint8_t b[16] = {0};
  int fam = peer ? addr_bytes(peer, b) : 0;
  if (fam == 0) return NULL;
  uint32_t h = 2166136261u;
  for (int i = 0; i < 16; i++) h = (h ^ b[i]) * 16777619u;
  struct failslot *f = &a->fails[h % 1024];
  if (f->fam != fam || memcmp(f->addr, b, 16) != 0) { /* a new address takes the slot */
    memset(f, 0, sizeof(*f));
    f->fam = fam;
    memcpy(f->addr, b, 16);
  }
  return f;
}

/* Seconds the address must still wait before its next try (0: none). */
static long backing_off(dts_auth *a, const struct sockaddr *peer) {
  pthread_mutex_lock(&a->fmu);
  struct failslot *f = fail_slot(a, peer);
  int64_t now = wall_now();
  long wait = f && f->until > now ? (long)((f->until - now) / 1000000000 + 1) : 0;
  pthread_mutex_unlock(&a->fmu);
  return wait;
}

/* An authentication from peer failed (ok false) or succeeded. */
static void note_auth(dts_auth *a, const struct sockaddr *peer, bool ok) {
  pthread_mutex_lock(&a->fmu);
  struct failslot *f = fail_slot(a, peer);
  int64_t now = wall_now();
  if (f != NULL && ok) {
    f->fails = 0;
    f->level = 0;
  } else if (f != NULL) {
    if (now - f->since > 60000000000LL) {
      f->since = now;
      f->fails = 0;
    }
    if (++f->fails >= a->fail_limit) {
      int secs = f->level < 6 ? 1 << f->level : 60;
      f->until = now + (int64_t)secs * 1000000000;
      f->level++;
      f->fails = 0;
    }
  }
  pthread_mutex_unlock(&a->fmu);
}

static void check_token(dts_auth *a, const dts_auth_req *r, dts_auth_decision *d, bool loop);
static void check_roles(dts_auth *a, const dts_auth_req *r, dts_auth_decision *d);

/* A verified JWT as a tok: its subject, its roles claim's grants ("hub=role",
 * or a bare role for every hub) and those the tokens file gives the
 * subject; NULL with why when it does not verify. */
static bool jwt_tok(dts_auth *a, const char *tv, size_t tlen, tok *t, char *why, size_t whylen) {
  dts_jwt_claims cl;
  pthread_rwlock_rdlock(&a->lock); /* the issuers and the subjects' grants, as of one file */
  if (!dts_jwt_verify(a->jwt, tv, tlen, &cl, why, whylen)) {
    pthread_rwlock_unlock(&a->lock);
    return false;
  }
  memset(t, 0, sizeof(*t));
  snprintf(t->name, sizeof(t->name), "%s", cl.subject);
  t->expires = cl.exp;
  for (size_t i = 0; i < cl.nroles && t->ngrants < MAX_GRANTS; i++) {
    char spec[128];
    if (strchr(cl.roles[i], '=') != NULL) snprintf(spec, sizeof(spec), "%s", cl.roles[i]);
    else snprintf(spec, sizeof(spec), "*=%s", cl.roles[i]);
    if (grant_parse(spec, &t->grants[t->ngrants]) == NULL) t->ngrants++; /* roles dtsd does not know are ignored */
  }
  int64_t now = wall_now();
  for (size_t i = 0; i < a->ntoks; i++) {
    const tok *g = &a->toks[i];
    if (g->subject == NULL || strcmp(g->subject, cl.subject) != 0 || (g->expires != 0 && g->expires <= now)) continue;
    for (size_t k = 0; k < g->ngrants && t->ngrants < MAX_GRANTS; k++) t->grants[t->ngrants++] = g->grants[k];
  }
  pthread_rwlock_unlock(&a->lock);
  dts_jwt_claims_free(&cl);
  return true;
}

static void check_jwt(dts_auth *a, const dts_auth_req *r, dts_auth_decision *d, const uint8_t h[32], const char *tv,
                      size_t tlen) {
  struct jwt_cached *c = &a->cache[(h[0] | h[1] << 8) % 4096];
  int64_t now = wall_now();
  tok t;
  bool hit = false;
  pthread_mutex_lock(&a->cmu);
  if (c->used && memcmp(c->t.hash, h, 32) == 0 && c->t.expires > now) {
    t = c->t;
    hit = true;
  }
  pthread_mutex_unlock(&a->cmu);
  char why[200];
  if (!hit && !jwt_tok(a, tv, tlen, &t, why, sizeof(why))) {
    char msg[300];
    snprintf(msg, sizeof(msg), "the JWT is refused: %s", why);
    deny(a, d, DTS_ST_UNAUTHENTICATED, why, msg);
    return;
  }
  if (!hit) {
    memcpy(t.hash, h, 32);
    pthread_mutex_lock(&a->cmu);
    c->t = t;
    c->used = true;
    pthread_mutex_unlock(&a->cmu);
  }
  take_principal(d, &t, r->hub);
  check_roles(a, r, d);
}

/* A verified client certificate's principal, granted in the tokens file. */
static void check_cert(dts_auth *a, const dts_auth_req *r, dts_auth_decision *d) {
  pthread_rwlock_rdlock(&a->lock);
  const tok *found = NULL;
  for (size_t i = 0; i < a->ntoks && found == NULL; i++)
    if (a->toks[i].cert != NULL && strcmp(a->toks[i].cert, r->cert_principal) == 0) found = &a->toks[i];
  int64_t exp = found ? take_principal(d, found, r->hub) : 0;
  pthread_rwlock_unlock(&a->lock);
  if (found == NULL) {
    char msg[300];
    snprintf(msg, sizeof(msg), "the client certificate of '%.200s' has no grants here (dtsd token create --certificate)",
             r->cert_principal);
    deny(a, d, DTS_ST_UNAUTHENTICATED, "unknown certificate", msg);
  } else if (exp != 0 && exp <= wall_now()) {
    deny(a, d, DTS_ST_UNAUTHENTICATED, "grant expired", "the grants of this client certificate expired");
  } else {
    check_roles(a, r, d);
  }
}

void dts_auth_check(dts_auth *a, const dts_auth_req *r, dts_auth_decision *d) {
  /* the grant table (1 KiB) is read only up to ngrants: left as it is */
  memset(d, 0, offsetof(dts_auth_decision, grant_hub));
  d->ngrants = 0;
  d->quiet = r->quiet;
  bool loop = r->peer != NULL && dts_auth_is_loopback(r->peer);
  if (a->nallow > 0) {
    bool in = false;
    for (size_t i = 0; r->peer != NULL && i < a->nallow && !in; i++) in = cidr_match(&a->allow[i], r->peer);
    if (!in) {
      deny(a, d, DTS_ST_PERMISSION_DENIED, "address not in the allow list", "your address is not in dtsd's allow list (--allow)");
      return;
    }
  }
  if (!a->on || r->needs == AUTH_PUBLIC) {
    if (loop || a->emulator_mode || (a->on && r->needs == AUTH_PUBLIC)) {
      dts_strlcpy(d->principal, "anonymous", sizeof(d->principal));
      d->roles = a->on ? 0 : AUTH_ROLE_ADMIN;
      d->all_hubs = !a->on;
      return;
    }
    deny(a, d, DTS_ST_PERMISSION_DENIED, "protected mode: not loopback",
         "dtsd runs without authentication and serves only loopback clients: start it with --auth on and give "
         "clients tokens (dtsd token create), or with --emulator-mode to serve everyone without authentication "
         "(docs/security.md)");
    return;
  }
  long wait = r->quiet ? 0 : backing_off(a, r->peer);
  if (wait > 0) {
    char msg[200];
    snprintf(msg, sizeof(msg), "too many failed authentications from your address: try again in %ld s", wait);
    deny(a, d, DTS_ST_RESOURCE_EXHAUSTED, "backing off after failed authentications", msg);
    return;
  }
  check_token(a, r, d, loop);
  if (!r->quiet && (d->st == DTS_ST_UNAUTHENTICATED || d->st == DTS_ST_OK)) note_auth(a, r->peer, d->st == DTS_ST_OK);
}

/* With auth on: the bearer token, who it names, and that one's roles. */
static void check_token(dts_auth *a, const dts_auth_req *r, dts_auth_decision *d, bool loop) {
  uint8_t h[32];
  bool bearer = bearer_hash(r, h);
  if (!bearer && r->cert_principal != NULL) { /* mTLS: the certificate names the caller */
    check_cert(a, r, d);
    return;
  }
  if (!bearer) {
    deny(a, d, DTS_ST_UNAUTHENTICATED, "no token",
         "this dtsd requires a token: send 'authorization: Bearer <token>' (dtsd token create)");
    return;
  }
  if (!r->tls && !loop) {
    deny(a, d, DTS_ST_UNAUTHENTICATED, "token over plaintext",
         "TLS required: a token is accepted only over TLS from a non-loopback address");
    return;
  }
  size_t tlen = 0;
  const char *tv = bearer_value(r, &tlen);
  if (a->jwt_file != NULL && !(tlen > 5 && memcmp(tv, "dtsd_", 5) == 0) && memchr(tv, '.', tlen) != NULL) {
    check_jwt(a, r, d, h, tv, tlen);
    OPENSSL_cleanse(h, sizeof(h));
    return;
  }
  pthread_rwlock_rdlock(&a->lock);
  const tok *found = NULL;
  for (size_t i = 0; i < a->ntoks; i++) /* every one compared: the time says nothing of which */
    if (a->toks[i].cert == NULL && a->toks[i].subject == NULL && CRYPTO_memcmp(a->toks[i].hash, h, 32) == 0)
      found = &a->toks[i];
  int64_t exp = found ? take_principal(d, found, r->hub) : 0;
  pthread_rwlock_unlock(&a->lock);
  OPENSSL_cleanse(h, sizeof(h));
  if (found == NULL) {
    deny(a, d, DTS_ST_UNAUTHENTICATED, "unknown token", "the token is not known to this dtsd (revoked, or from elsewhere)");
    return;
  }
  if (exp != 0 && exp <= wall_now()) {
    char when[40], msg[300];
    pbjson_time(exp, when);
    snprintf(msg, sizeof(msg), "the token '%.64s' expired at %s", d->principal, when);
    deny(a, d, DTS_ST_UNAUTHENTICATED, "token expired", msg);
    return;
  }
  check_roles(a, r, d);
}

/* The principal in d is known: whether its roles cover what r needs. */
static void check_roles(dts_auth *a, const dts_auth_req *r, dts_auth_decision *d) {
  if (r->needs != AUTH_ANY_PRINCIPAL && (d->roles & r->needs) == 0) {
    const char *need = r->needs & AUTH_ADMIN   ? "admin"
                       : r->needs & AUTH_WRITE ? "contributor"
                       : r->needs == AUTH_WORK ? "worker"
                       : r->needs == AUTH_READ ? "reader"
                                               : "any role";
    char msg[300];
    snprintf(msg, sizeof(msg), "'%s' may not do this on task hub '%.64s': it needs the %s role there", d->principal,
             r->hub ? r->hub : "", need);
    deny(a, d, DTS_ST_PERMISSION_DENIED, "missing role", msg);
  }
}

void dts_auth_tick(dts_auth *a) {
  pthread_rwlock_rdlock(&a->lock);
  dts_jwt_tick(a->jwt);
  pthread_rwlock_unlock(&a->lock);
}
