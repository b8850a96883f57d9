/* token_cmd.h -- `dtsd token create|list|revoke`: the static tokens file
 * (auth.h, docs/security.md) managed from the command line. */
#ifndef DTS_SERVER_TOKEN_CMD_H
#define DTS_SERVER_TOKEN_CMD_H

/* argv[0] is "token"; returns the exit code. */
int dtsd_token_main(int argc, char **argv);

#endif
