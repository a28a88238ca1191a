// cli: the `ibnas` command. One file per verb (cli/cmd_<verb>.c) exposing `int cmd_<verb>(argc, argv)`,
// listed in the verb table of cli/main.c. Verbs return the process exit code: 0 success, 1 a failure
// from outside (message already printed), 2 a usage error.
#ifndef IB_CLI_H
#define IB_CLI_H

// The public API only: verbs that need internals include their headers themselves (cmd_train, cmd_bench,
// cmd_pack, cmd_synth), so a verb written against include/ibnas.h alone (infer, eval) cannot reach them.
#include "ibnas.h"

#include <stdio.h>

// Prints "ibnas <verb>: <message>" for the last library error and returns 1.
int cli_report(const char *verb, ib_status s);
// A declarative flag table: cli_parse fills each flag's destination from "--name value" or
// "--name=value" (F_BOOL flags take no value), prints `usage` and the table for --help.
// Returns 0 to go on, -1 when --help was printed (exit 0), 2 on a usage error (message printed).
typedef enum { F_STR, F_INT, F_FLOAT, F_BOOL, F_U64 } cli_flag_kind;
typedef struct cli_flag {
    const char *name;
    cli_flag_kind kind;
    void *dst;
    const char *help;
} cli_flag;
int cli_parse(const char *verb, int argc, char **argv, const cli_flag *flags, const char *usage);

// The verbs.
int cmd_infer(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_synth(int argc, char **argv);

#endif
