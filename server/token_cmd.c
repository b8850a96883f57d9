/* token_cmd.c -- see token_cmd.h.  The file is rewritten atomically; a
 * running dtsd reads it again on SIGHUP. */
#include "server/token_cmd.h"

#include "runtime/duration.h"
#include "server/auth.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: dtsd token create --tokens-file FILE --name NAME (--hub HUB --role ROLE | --grant HUB=ROLE)... "
    "[--expires DURATION] [--certificate PRINCIPAL | --subject SUBJECT]\n"
    "       dtsd token list --tokens-file FILE\n"
    "       dtsd token revoke --tokens-file FILE --name NAME\n"
    "  create prints a new random token once (only its SHA-256 is kept); roles: reader, worker, contributor,\n"
    "  admin (admin only with --hub '*'); HUB '*' is every hub.  --expires: 30d, 12h, ...\n"
    "  --certificate: no token; the grants go to clients whose verified certificate names PRINCIPAL (its\n"
    "  SPIFFE id, else its first subject alternative name, else its common name).\n"
    "  --subject: no token; the grants go to JWTs (--jwt-issuers) whose subject claim is SUBJECT.\n"
    "  The file may also come from DTSD_TOKENS_FILE.  Send SIGHUP to a running dtsd to apply changes.\n";

int dtsd_token_main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(USAGE, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *verb = argv[1], *file = getenv("DTSD_TOKENS_FILE"), *name = NULL, *hub = NULL, *expires = NULL,
             *cert = NULL, *subject = NULL;
  char *grants[64];
  size_t ng = 0;
  static const struct option opts[] = {{"tokens-file", required_argument, 0, 'f'}, {"name", required_argument, 0, 'n'},
                                       {"hub", required_argument, 0, 'H'},        {"role", required_argument, 0, 'r'},
                                       {"grant", required_argument, 0, 'g'},      {"expires", required_argument, 0, 'e'},
                                       {"certificate", required_argument, 0, 'c'}, {"subject", required_argument, 0, 's'},
                                       {0, 0, 0, 0}};
  optind = 2;
  int c, rc = 0;
  while (rc == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 'f') file = optarg;
    else if (c == 'n') name = optarg;
    else if (c == 'H') hub = optarg;
    else if (c == 'e') expires = optarg;
    else if (c == 'c') cert = optarg;
    else if (c == 's') subject = optarg;
    else if ((c == 'r' || c == 'g') && ng < 64) {
      if (c == 'r' && hub == NULL) {
        fprintf(stderr, "dtsd token: --role comes after its --hub\n");
        rc = 2;
        break;
      }
      size_t n = strlen(optarg) + (c == 'r' ? strlen(hub) + 2 : 1);
      grants[ng] = malloc(n);
      if (c == 'r') snprintf(grants[ng], n, "%s=%s", hub, optarg);
      else snprintf(grants[ng], n, "%s", optarg);
      ng++;
    } else {
      fputs(USAGE, stderr);
      rc = 2;
    }
  }
  char why[600], token[80];
  if (rc == 0 && (file == NULL || optind < argc)) {
    fprintf(stderr, "dtsd token: %s\n", file == NULL ? "--tokens-file is required" : "unexpected argument");
    rc = 2;
  }
  int64_t exp = 0;
  if (rc == 0 && expires != NULL) {
    int64_t d;
    const char *bad = dts_duration_parse(expires, strlen(expires), &d);
    if (bad != NULL) {
      fprintf(stderr, "dtsd token: --expires: %s\n", bad);
      rc = 2;
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      exp = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + d;
    }
  }
  if (rc == 0 && strcmp(verb, "create") == 0) {
    if (name == NULL) {
      fprintf(stderr, "dtsd token create: --name is required\n");
      rc = 2;
    } else if (cert != NULL && subject != NULL) {
      fprintf(stderr, "dtsd token create: --certificate or --subject, not both\n");
      rc = 2;
    } else if (subject != NULL ? !dts_token_grant_subject(file, name, subject, (const char *const *)grants, ng, exp, why, sizeof(why))
                               : !dts_token_create(file, name, cert, (const char *const *)grants, ng, exp, token, sizeof(token),
                                                   why, sizeof(why))) {
      fprintf(stderr, "dtsd token create: %s\n", why);
      rc = 1;
    } else if (cert != NULL || subject != NULL) {
      fprintf(stderr, "grants for the %s '%s' stored in %s as '%s'\n", cert ? "client certificate" : "JWT subject",
              cert ? cert : subject, file, name);
    } else {
      printf("%s\n", token);
      fprintf(stderr, "token '%s' stored in %s (only its hash); it is shown this once\n", name, file);
    }
  } else if (rc == 0 && strcmp(verb, "list") == 0) {
    if (!dts_token_list(file, why, sizeof(why))) {
      fprintf(stderr, "dtsd token list: %s\n", why);
      rc = 1;
    }
  } else if (rc == 0 && strcmp(verb, "revoke") == 0) {
    if (name == NULL || !dts_token_revoke(file, name, why, sizeof(why))) {
      fprintf(stderr, "dtsd token revoke: %s\n", name == NULL ? "--name is required" : why);
      rc = name == NULL ? 2 : 1;
    }
  } else if (rc == 0) {
    fprintf(stderr, "dtsd token: unknown command '%s'\n%s", verb, USAGE);
    rc = 2;
  }
  for (size_t i = 0; i < ng; i++) free(grants[i]);
  return rc;
}
