/* main.c -- dtsctl's front: global options (anywhere on the line), the
 * command table, help, and the bash completion script.  See dtsctl.h. */
#include "tools/dtsctl/dtsctl.h"

#include "runtime/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: dtsctl [global options] COMMAND [options] [arguments]\n"
    "\n"
    "dtsctl talks to dtsd over its gRPC API (as the Durable Task SDKs do).\n"
    "\n"
    "Commands:\n"
    "  hubs list|create|delete         task hubs\n"
    "  instances list                  orchestration instances, with filters\n"
    "  show ID                         one instance\n"
    "  history ID                      an instance's history\n"
    "  start NAME                      start an orchestration\n"
    "  raise ID EVENT                  raise an event\n"
    "  suspend|resume ID               pause or continue an instance\n"
    "  terminate ID                    end an instance\n"
    "  restart ID                      run a finished instance again\n"
    "  rewind ID                       re-run a failed instance from its failures\n"
    "  purge ID | purge --status ...   remove finished instances\n"
    "  entities list|show|signal|clean durable entities\n"
    "  schedules list|show|create|pause|resume|delete   recurring starts\n"
    "  retention get|set               auto-purge of finished instances\n"
    "  completion bash                 the bash completion script\n"
    "\n"
    "Global options:\n"
    "  -e, --endpoint URL     dtsd's gRPC endpoint: host:port, http://host:port or https://host:port\n"
    "                         (default: DTSD_ENDPOINT, else DTS_CONNECTION_STRING's Endpoint,\n"
    "                         else localhost:8080)\n"
    "  -H, --taskhub NAME     the task hub (default: DTSD_TASKHUB, else DTS_CONNECTION_STRING's\n"
    "                         TaskHub, else 'default')\n"
    "      --token TOKEN      a bearer token to send (default: DTSD_TOKEN)\n"
    "  -o, --output FORMAT    table (default) or json\n"
    "      --timeout SECONDS  per call (default 30)\n"
    "  -h, --help             help; COMMAND --help for a command's\n"
    "      --version          dtsctl's version\n"
    "\n"
    "DTS_CONNECTION_STRING is the SDKs' format: \"Endpoint=http://localhost:8080;Authentication=None;TaskHub=default\".\n"
    "\n"
    "Exit codes: 0 done; 1 the server refused or failed the request; 2 bad command line;\n"
    "3 not found; 4 dtsd unreachable or no answer in time; 5 already exists or wrong state;\n"
    "6 no, a bad or an expired token, or not allowed.\n";

static const char COMPLETION[] =
    "# bash completion for dtsctl (dtsctl completion bash)\n"
    "_dtsctl() {\n"
    "  local cur prev words cword\n"
    "  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
    "  prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
    "  local global=\"--endpoint --taskhub --token --output --timeout --help --version\"\n"
    "  case \"$prev\" in\n"
    "    -o|--output) COMPREPLY=($(compgen -W \"table json\" -- \"$cur\")); return;;\n"
    "    -s|--status) COMPREPLY=($(compgen -W \"running completed failed terminated canceled pending suspended\" -- \"$cur\")); return;;\n"
    "    -e|--endpoint|-H|--taskhub|--token|--timeout|--input|-i|--data|--reason|-r|--id|--version|--at|--tag|--prefix|-p|"
    "--created-from|--created-to|--limit|-n|--execution|--result|--orchestration|--interval|--instance-id|--start-at|--end-at)"
    " return;;\n"
    "  esac\n"
    "  local cmd=\"\" sub=\"\" i\n"
    "  for ((i=1; i<COMP_CWORD; i++)); do\n"
    "    case \"${COMP_WORDS[i]}\" in\n"
    "      -e|--endpoint|-H|--taskhub|--token|-o|--output|--timeout) ((i++));;\n"
    "      -*) ;;\n"
    "      *) if [ -z \"$cmd\" ]; then cmd=\"${COMP_WORDS[i]}\"; elif [ -z \"$sub\" ]; then sub=\"${COMP_WORDS[i]}\"; fi;;\n"
    "    esac\n"
    "  done\n"
    "  local words=\"\"\n"
    "  case \"$cmd\" in\n"
    "    \"\") words=\"hubs instances show history start raise suspend resume terminate restart rewind purge entities schedules retention completion\";;\n"
    "    hubs) [ -z \"$sub\" ] && words=\"list create delete\" || words=\"--yes\";;\n"
    "    instances) [ -z \"$sub\" ] && words=\"list\" || words=\"--status --prefix --created-from --created-to --limit --all --payloads\";;\n"
    "    entities) [ -z \"$sub\" ] && words=\"list show signal clean\" || words=\"--prefix --state --limit --all --input --at --remove-empty --release-orphans\";;\n"
    "    schedules) [ -z \"$sub\" ] && words=\"list show create pause resume delete\" || words=\"--orchestration --interval --input --instance-id --version --start-at --end-at --start-immediately-if-late\";;\n"
    "    retention) [ -z \"$sub\" ] && words=\"get set\";;\n"
    "    completion) words=\"bash\";;\n"
    "    start) words=\"--id --input --version --at --tag --wait\";;\n"
    "    raise) words=\"--data\";;\n"
    "    terminate) words=\"--reason --result --recursive\";;\n"
    "    suspend|resume|rewind) words=\"--reason\";;\n"
    "    restart) words=\"--new-id\";;\n"
    "    history) words=\"--execution\";;\n"
    "    purge) words=\"--recursive --status --prefix --created-from --created-to --dry-run --yes\";;\n"
    "  esac\n"
    "  if [[ \"$cur\" == -* ]]; then words=\"$words $global\"; fi\n"
    "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
    "}\n"
    "complete -F _dtsctl dtsctl\n";

/* A global option at argv[*i] (consumed, with its value): true when it was
 * one; *rc set on a bad one. */
static bool global_opt(ctl *c, int argc, char **argv, int *i, const char **endpoint, int *rc) {
  static const struct {
    const char *lng, *shrt;
  } G[] = {{"--endpoint", "-e"}, {"--taskhub", "-H"}, {"--token", NULL}, {"--output", "-o"}, {"--timeout", NULL}};
  const char *a = argv[*i], *val = NULL;
  int which = -1;
  for (int g = 0; g < 5 && which < 0; g++) {
    size_t ll = strlen(G[g].lng);
    if (strcmp(a, G[g].lng) == 0 || (G[g].shrt && strcmp(a, G[g].shrt) == 0)) {
      which = g;
      if (*i + 1 >= argc) {
        *rc = ctl_usage("%s needs a value", a);
        return true;
      }
      val = argv[++*i];
    } else if (strncmp(a, G[g].lng, ll) == 0 && a[ll] == '=') {
      which = g;
      val = a + ll + 1;
    }
  }
  if (which < 0) return false;
  switch (which) {
  case 0: *endpoint = val; break;
  case 1:
    dts_free(c->hub);
    c->hub = dts_strdup(val);
    break;
  case 2:
    dts_free(c->token);
    c->token = dts_strdup(val);
    break;
  case 3:
    if (strcmp(val, "json") == 0) c->json = true;
    else if (strcmp(val, "table") == 0) c->json = false;
    else *rc = ctl_usage("--output is table or json, not '%s'", val);
    break;
  default: {
    char *end;
    long t = strtol(val, &end, 10);
    if (*end != '\0' || t < 1 || t > 86400) *rc = ctl_usage("--timeout is a number of seconds from 1 to 86400");
    else c->timeout_s = (int)t;
  }
  }
  return true;
}

static int dispatch(ctl *c, int argc, char **argv) {
  const char *cmd = argv[0];
  if (strcmp(cmd, "hubs") == 0) return cmd_hubs(c, argc, argv);
  if (strcmp(cmd, "instances") == 0) return cmd_instances(c, argc, argv);
  if (strcmp(cmd, "show") == 0) return cmd_show(c, argc, argv);
  if (strcmp(cmd, "history") == 0) return cmd_history(c, argc, argv);
  if (strcmp(cmd, "start") == 0) return cmd_start(c, argc, argv);
  if (strcmp(cmd, "raise") == 0) return cmd_raise(c, argc, argv);
  if (strcmp(cmd, "suspend") == 0 || strcmp(cmd, "resume") == 0 || strcmp(cmd, "terminate") == 0 ||
      strcmp(cmd, "rewind") == 0)
    return cmd_simple(c, cmd, argc, argv);
  if (strcmp(cmd, "restart") == 0) return cmd_restart(c, argc, argv);
  if (strcmp(cmd, "purge") == 0) return cmd_purge(c, argc, argv);
  if (strcmp(cmd, "entities") == 0) return cmd_entities(c, argc, argv);
  if (strcmp(cmd, "schedules") == 0) return cmd_schedules(c, argc, argv);
  if (strcmp(cmd, "retention") == 0) return cmd_retention(c, argc, argv);
  return ctl_usage("unknown command '%s'", cmd);
}

int main(int argc, char **argv) {
  ctl c = {.timeout_s = 30};
  const char *endpoint = NULL;
  char **rest = dts_malloc((size_t)(argc + 1) * sizeof(char *));
  int n = 0, rc = EX_OK;
  bool help = false, dashdash = false;
  for (int i = 1; i < argc && rc == EX_OK; i++) {
    if (dashdash || !global_opt(&c, argc, argv, &i, &endpoint, &rc)) {
      if (strcmp(argv[i], "--") == 0) dashdash = true;
      if (!dashdash && n == 0 && strcmp(argv[i], "--version") == 0) {
        printf("dtsctl %s\n", DTSD_VERSION);
        goto out;
      }
      if (n == 0 && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) help = true;
      else rest[n++] = argv[i];
    }
  }
  rest[n] = NULL;
  if (rc != EX_OK) goto out;
  if (help || n == 0) {
    fputs(HELP, help ? stdout : stderr);
    rc = help ? EX_OK : EX_USAGE;
    goto out;
  }
  if (strcmp(rest[0], "completion") == 0) {
    if (n == 2 && strcmp(rest[1], "bash") == 0) fputs(COMPLETION, stdout);
    else rc = ctl_usage("completion: the shell is 'bash'");
    goto out;
  }
  if (!ctl_connect(&c, endpoint)) {
    rc = EX_USAGE;
    goto out;
  }
  rc = dispatch(&c, n, rest);
out:
  ctl_close(&c);
  dts_free(rest);
  return rc;
}
