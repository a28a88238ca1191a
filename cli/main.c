// ibnas: the command. Dispatches to one verb per file; `ibnas --help` lists them.
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    const char *distributed;   // under mpirun: "" every rank runs the verb as one job, "SUB" only `VERB SUB`;
                               // NULL: rank 0 alone runs it (one_process_only)
} verb;

static const verb verbs[] = {
    {"train", cmd_train, "train a network (classification, detection or segmentation; progress, CSV log, resumable)",
     ""},
    {"eval", cmd_eval, "top-1 / top-5, COCO AP (--task detect) or mIoU (--task segment) of a checkpoint on a dataset", NULL},
    {"miou", cmd_miou, "mIoU, pixel accuracy and per-class IoU of two folders of label PNGs", NULL},
    {"bench", cmd_bench, "training throughput or inference latency on random data", NULL},
    {"infer", cmd_infer, "run a checkpoint's network on a batch (HDF5 in, logits out)", NULL},
    {"predict", cmd_predict, "a checkpoint on image files: top-5 classes, boxes drawn, or masks overlaid (PNG, JSON)", NULL},
    {"export", cmd_export, "write a checkpoint as an ONNX model (BN folded) for ONNX Runtime and converters", NULL},
    {"pack", cmd_pack, "convert a dataset (folders, COCO, YOLO, masks, synth) into an HDF5 pack", NULL},
    {"synth", cmd_synth, "write a pack of synthetic scenes (labels, boxes and masks)", NULL},
    {"space", cmd_space, "count a search space's subnets, sample one as an arch, or check an arch is in it", NULL},
    {"supernet", cmd_supernet, "train a weight-sharing supernet over a search space, or score an arch in it", "train"},
    {"extract", cmd_extract, "write an arch of a supernet as a standalone checkpoint (BN recalibrated)", NULL},
    {"search", cmd_search, "search a supernet's space for the best arch under latency budgets per target", ""},
    {"latency", cmd_latency, "latency tables per target: profile (cpu), model (edgetpu, dsp), predict, measure, validate", NULL},
    {"coco-eval", cmd_coco_eval, "COCO bbox AP/AR of detections against COCO ground truth (pycocotools' numbers)", NULL},
    {NULL, NULL, NULL, NULL},
};

static void usage(FILE *out) {
    fprintf(out,
            "ibnas %s: hardware-aware architecture search for mobile vision networks, in C\n\n"
            "usage: ibnas <verb> [flags]     ibnas <verb> --help for a verb's flags\n\n"
            "verbs:\n",
            IBNAS_VERSION_STRING);
    for (const verb *v = verbs; v->name; v++) fprintf(out, "  %-10s %s\n", v->name, v->summary);
    fprintf(out, "\nglobal flags:\n  --version  print the version and exit\n  --help     this text\n");
}

int cli_report(const char *verb_name, ib_status s) {
    fprintf(stderr, "ibnas %s: %s: %s\n", verb_name, ib_strerror(s), ib_errmsg());
    return 1;
}

static const char *flag_value(int argc, char **argv, int *i, const char *name, int *bad) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "ibnas: %s needs a value\n", name);
        *bad = 1;
        return NULL;
    }
    return argv[++*i];
}

static int cli_flag_str(int argc, char **argv, int *i, const char *name, const char **out, int *bad) {
    int b = 0;
    const char *v = flag_value(argc, argv, i, name, &b);
    if (b) *bad = 1;
    if (!v) return b;
    *out = v;
    return 1;
}

static int cli_flag_int(int argc, char **argv, int *i, const char *name, int *out, int *bad) {
    int b = 0;
    const char *v = flag_value(argc, argv, i, name, &b);
    if (b) *bad = 1;
    if (!v) return b;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*v == 0 || *end != 0) {
        fprintf(stderr, "ibnas: %s wants an integer, got '%s'\n", name, v);
        *bad = 1;
    } else if (errno == ERANGE || x > INT_MAX || x < 0) {   // every integer flag is a count, a size or an index
        fprintf(stderr, "ibnas: %s wants an integer from 0 to %d, got '%s'\n", name, INT_MAX, v);
        *bad = 1;
    } else *out = (int)x;
    return 1;
}

static int cli_flag_float(int argc, char **argv, int *i, const char *name, float *out, int *bad) {
    int b = 0;
    const char *v = flag_value(argc, argv, i, name, &b);
    if (b) *bad = 1;
    if (!v) return b;
    char *end;
    float x = strtof(v, &end);
    if (*v == 0 || *end != 0) {
        fprintf(stderr, "ibnas: %s wants a number, got '%s'\n", name, v);
        *bad = 1;
    } else *out = x;
    return 1;
}

static void print_flags(FILE *out, const char *usage, const cli_flag *flags) {
    fprintf(out, "%s\n", usage);
    for (const cli_flag *f = flags; f->name; f++) {
        const char *v = f->kind == F_BOOL ? "" : f->kind == F_STR ? " S" : f->kind == F_FLOAT ? " X" : " N";
        char lhs[64];
        snprintf(lhs, sizeof lhs, "%s%s", f->name, v);
        fprintf(out, "  %-22s %s\n", lhs, f->help);
    }
}

int cli_parse(const char *verb_name, int argc, char **argv, const cli_flag *flags, const char *usage) {
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_flags(stdout, usage, flags);
            return -1;
        }
        const cli_flag *f = flags;
        for (; f->name; f++) {
            int hit = 0;
            switch (f->kind) {
            case F_STR: hit = cli_flag_str(argc, argv, &i, f->name, (const char **)f->dst, &bad); break;
            case F_INT: hit = cli_flag_int(argc, argv, &i, f->name, (int *)f->dst, &bad); break;
            case F_FLOAT: hit = cli_flag_float(argc, argv, &i, f->name, (float *)f->dst, &bad); break;
            case F_BOOL:
                if ((hit = !strcmp(argv[i], f->name))) *(int *)f->dst = 1;
                break;
            case F_U64: {
                const char *v = NULL;
                hit = cli_flag_str(argc, argv, &i, f->name, &v, &bad);
                if (v) {
                    char *end;
                    unsigned long long x = strtoull(v, &end, 10);
                    if (!*v || *end) {
                        fprintf(stderr, "ibnas %s: %s wants a non-negative integer, got '%s'\n", verb_name, f->name, v);
                        bad = 1;
                    } else *(uint64_t *)f->dst = x;
                }
                break;
            }
            }
            if (hit) break;
        }
        if (!f->name) {
            fprintf(stderr, "ibnas %s: unknown flag '%s'\n", verb_name, argv[i]);
            bad = 1;
        }
    }
    if (bad) {
        fprintf(stderr, "(ibnas %s --help lists the flags)\n", verb_name);
        return 2;
    }
    return 0;
}

void cli_count_progress_init(cli_count_progress *p, const char *verb_name) {
    p->verb = verb_name;
    p->t0 = ib_time_s(), p->last = 0;
    p->last_decile = 0, p->tty = isatty(2);
}

void cli_count_progress_show(int64_t done, int64_t n, void *user) {
    cli_count_progress *p = user;
    double now = ib_time_s(), rate = (double)done / (now - p->t0 + 1e-9), eta = (double)(n - done) / (rate + 1e-9);
    int decile = n > 0 ? (int)(10 * done / n) : 10;
    if ((p->tty && (now - p->last > 0.1 || done == n)) || (!p->tty && decile > p->last_decile)) {
        p->last = now, p->last_decile = decile;
        fprintf(stderr, p->tty ? "\r%s %lld/%lld  %.0f img/s  ETA %d:%02d " : "%s: %lld/%lld  %.0f img/s  ETA %d:%02d\n",
                p->verb, (long long)done, (long long)n, rate, (int)eta / 60, (int)eta % 60);
        if (p->tty && done == n) fputc('\n', stderr);
    }
}

int cli_mkdirs(const char *verb_name, const char *path) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *q = p + 1;; q++)
        if (*q == '/' || !*q) {
            char c = *q;
            *q = 0;
            if (mkdir(p, 0777) && errno != EEXIST) {
                fprintf(stderr, "ibnas %s: %s: cannot create the folder: %s\n", verb_name, p, strerror(errno));
                return 1;
            }
            if (!(*q = c)) return 0;
        }
}

char **cli_split_args(const char *verb_name, int argc, char **argv, const cli_flag *flags, int *nf, char ***posp, int *np) {
    char **fargv = malloc(sizeof(char *) * 2 * (size_t)(argc + 1)), **pos = fargv + argc + 1;
    *nf = *np = 0;
    *posp = NULL;
    if (!fargv) {
        fprintf(stderr, "ibnas %s: out of memory\n", verb_name);
        return NULL;
    }
    *posp = pos;
    fargv[(*nf)++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == 0) {
            pos[(*np)++] = argv[i];
            continue;
        }
        fargv[(*nf)++] = argv[i];
        const cli_flag *f = flags;
        while (f->name && strcmp(a, f->name)) f++;
        if (f->name && f->kind != F_BOOL && i + 1 < argc) fargv[(*nf)++] = argv[++i];
    }
    return fargv;
}

// Under mpirun (docs/SCALE.md) only data-parallel training and search run on every rank. Any other verb is
// one process's work: were every rank to run it, they would write the same files at once (a pack, an ONNX
// model, a latency table, --dets-out) and print the same report N times. So rank 0 runs it alone, saying so,
// and the other ranks leave at once (1: this rank does nothing). A run without a launcher never starts MPI.
static int one_process_only(const verb *v, int argc, char **argv) {
    if (v->distributed && (!v->distributed[0] || (argc > 2 && !strcmp(argv[2], v->distributed)))) return 0;
    int n = ib_dist_size();
    if (n < 2) return 0;
    if (ib_dist_rank() > 0) return 1;
    fprintf(stderr, "ibnas %s: not distributed: rank 0 runs it as one process, the other %d rank%s do nothing (under "
            "mpirun only train, supernet train and search run on every rank)\n", v->name, n - 1, n > 2 ? "s" : "");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *v = argv[1];
    if (!strcmp(v, "--version") || !strcmp(v, "version")) {
        // MPI is named but not started: the version is the same under mpirun and without it.
        printf("ibnas %s\nMPI: %s\n", IBNAS_VERSION_STRING,
               ib_dist_built() ? "on (mpirun -np N runs data-parallel training and distributed search; docs/SCALE.md)"
                               : "off (built without it: one process)");
        return 0;
    }
    if (!strcmp(v, "--help") || !strcmp(v, "-h") || !strcmp(v, "help")) {
        usage(stdout);
        return 0;
    }
    for (const verb *e = verbs; e->name; e++)
        if (!strcmp(e->name, v)) {
            // Under mpirun a rank that fails aborts the job, so the others do not wait for it in a collective;
            // a Ctrl-C stop (130) is agreed by every rank (docs/SCALE.md), which then finish together.
            int rc = one_process_only(e, argc, argv) ? 0 : e->run(argc - 1, argv + 1);
            ib_dist_finish(rc == 130 ? 0 : rc);
            return rc;
        }
    fprintf(stderr, "ibnas: unknown verb '%s' (ibnas --help lists them)\n", v);
    return 2;
}
