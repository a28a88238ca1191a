// cli: the `ibnas` command. One file per verb (cli/cmd_<verb>.c) exposing `int cmd_<verb>(argc, argv)`,
// listed in the verb table of cli/main.c. Verbs return the process exit code: 0 success, 1 a failure
// from outside (message already printed), 2 a usage error.
#ifndef IB_CLI_H
#define IB_CLI_H

// The public API only: a verb is written against include/ibnas.h alone (cmd_bench, the one exception,
// includes the internal headers of the ops it times itself).
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
// Progress of a count (ib_synth_progress_fn): on a terminal one line redrawn at most every 0.1 s, into a
// file or pipe a line every 10%, on stderr. Initialise with cli_count_progress_init, pass the struct as user.
typedef struct cli_count_progress {
    const char *verb;
    double t0, last;
    int last_decile, tty;
} cli_count_progress;
void cli_count_progress_init(cli_count_progress *p, const char *verb);
void cli_count_progress_show(int64_t done, int64_t n, void *user);
// Makes the folder and any missing parents (mkdir -p); prints "ibnas <verb>: PATH: ..." and returns 1 on failure.
int cli_mkdirs(const char *verb, const char *path);
// For verbs with positional arguments: returns argv's flags (argv[0] first, then each "-..." argument with its
// value when the table's flag takes one), *nf of them, for cli_parse; *pos gets the other arguments, *np of
// them. One block holds both: free() the result alone. NULL when out of memory (message printed).
char **cli_split_args(const char *verb, int argc, char **argv, const cli_flag *flags, int *nf, char ***pos, int *np);

// The training flags shared by `train` and `supernet train`: cli_train_flags writes them into f (room for
// CLI_TRAIN_FLAGS entries) bound to o and x, and returns how many; after parsing, cli_train_apply moves x's
// values into o; on the ranks other than 0 of an MPI job it sets x's quiet and json (rank 0 alone reports).
#define CLI_TRAIN_FLAGS 32
typedef struct cli_train_extra {
    int no_nesterov, quiet, json, max_steps;
} cli_train_extra;
int cli_train_flags(cli_flag *f, ib_train_opts *o, cli_train_extra *x);
void cli_train_apply(ib_train_opts *o, cli_train_extra *x);
// The detection flags (--det-*) bound to o's det_* fields; room for CLI_DETECT_FLAGS entries.
#define CLI_DETECT_FLAGS 11
int cli_detect_flags(cli_flag *f, ib_train_opts *o);
// The segmentation head's flags (--head, --high-stride, --low-stride, --head-width, --bifpn-repeats) and
// --seg-aug, --class-weights, bound to o's seg_* fields; room for CLI_SEGMENT_FLAGS entries.
#define CLI_SEGMENT_FLAGS 7
int cli_segment_flags(cli_flag *f, ib_train_opts *o);

// The verbs.
int cmd_infer(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_space(int argc, char **argv);
int cmd_supernet(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_latency(int argc, char **argv);
int cmd_miou(int argc, char **argv);
int cmd_coco_eval(int argc, char **argv);

#endif
