// cli: the `ibnas` command. One file per verb (cli/cmd_<verb>.c) exposing `int cmd_<verb>(argc, argv)`,
// listed in the verb table of cli/main.c. Verbs return the process exit code: 0 success, 1 a failure
// from outside (message already printed), 2 a usage error.
#ifndef IB_CLI_H
#define IB_CLI_H

#include "core/core.h"

// Prints "ibnas <verb>: <message>" for the last library error and returns 1.
int cli_report(const char *verb, ib_status s);
// Flag parsing helpers: "--name value" and "--name=value". Return 1 when argv[*i] is the flag, with
// *i advanced past its value; a missing or malformed value prints an error and sets *bad.
int cli_flag_str(int argc, char **argv, int *i, const char *name, const char **out, int *bad);
int cli_flag_int(int argc, char **argv, int *i, const char *name, int *out, int *bad);
int cli_flag_float(int argc, char **argv, int *i, const char *name, float *out, int *bad);

// The verbs.
int cmd_infer(int argc, char **argv);

#endif
