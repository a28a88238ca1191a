// ibnas latency: latency lookup tables per target (docs/LATENCY.md), through the public API alone:
// profile (measure this CPU), model (edgetpu, dsp), predict, measure (end to end) and validate.
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: ibnas latency profile  --space S --target cpu --res R --threads T --out LUT.csv [--repeats N]\n"
    "                              [--classes C] [--calibrate N] [--calibrate-per-op] [--arch A[,B]]\n"
    "                              [HEAD --head-classes C]\n"
    "       ibnas latency model    --space S --target edgetpu|dsp|FILE.target.json --res R --out LUT.csv\n"
    "                              [--arch A[,B]] [HEAD --head-classes C]\n"
    "       ibnas latency predict  --lut [NAME=]LUT.csv --arch A [--res R] [HEAD --classes C] [--verbose] [--json]\n"
    "       ibnas latency measure  --arch A --res R --threads T [--repeats N] [HEAD --classes C] [--json]\n"
    "       ibnas latency validate --lut LUT.csv --space S --samples N --threads T [--res R] [--seed K]\n"
    "                              [--json] [--out DIR]\n\n"
    "A latency table (CSV, docs/FORMATS.md) has one row per block configuration and input shape; a subnet's\n"
    "predicted latency is the sum of its rows. A is mobilenetv2[:WIDTH], an *.arch.json or JSON text.\n"
    "HEAD: --task segment [--head deeplab|bifpn --high-stride 16 --low-stride 4 --head-width 64\n"
    "--bifpn-repeats 2]: the latency of a segmenter (the backbone up to the head's stride, then the head), as\n"
    "train --task segment builds it; --task detect [--det-tap-block]: of an SSDLite detector; profile and model\n"
    "add the head's rows. Default: the classifier.\n";

// The network a latency is of (ib_latency_head): the classifier, or a segmenter with train's head flags.
#define HEAD_FLAGS(h)                                                                                              \
    {"--task", F_STR, &(h).task, "classify (default), segment or detect: the task's network (docs/LATENCY.md)"},    \
    {"--head", F_STR, &(h).seg_head, "segment: deeplab (default) or bifpn"},                                       \
    {"--high-stride", F_INT, &(h).seg_high_stride, "segment: the head's high stride, 16 or 32 (default 16)"},     \
    {"--low-stride", F_INT, &(h).seg_low_stride, "segment: its low stride, 4 or 8 (default 4)"},                  \
    {"--head-width", F_INT, &(h).seg_head_width, "segment: ASPP and decoder (bifpn: level) width (default 64)"},  \
    {"--bifpn-repeats", F_INT, &(h).seg_repeats, "segment: BiFPN layers (default 2)"},                            \
    {"--det-tap-block", F_BOOL, &(h).det_tap_block, "detect: SSDLite taps the stride-16 block output, as supernets do"}

static int usage_error(const char *msg) {
    fprintf(stderr, "ibnas latency: %s\n(ibnas latency --help)\n", msg);
    return 2;
}

static int do_profile(int argc, char **argv) {
    ib_latency_profile_opts o;
    ib_latency_profile_opts_default(&o);
    const char *target = "cpu";
    int quiet = 0, json = 0;
    float min_ms = (float)o.min_ms;
    const cli_flag flags[] = {
        {"--space", F_STR, &o.space, "*.space.json (required)"},
        {"--target", F_STR, &target, "cpu (measured here; modelled targets: latency model)"},
        {"--res", F_INT, &o.res, "input resolution (default: the space's)"},
        {"--threads", F_INT, &o.threads, "threads (default 1)"},
        {"--out", F_STR, &o.out, "the table: missing rows are added, so a stopped run resumes (required)"},
        {"--repeats", F_INT, &o.repeats, "timed runs per row, the median is kept (default 15)"},
        {"--warmup", F_INT, &o.warmup, "untimed runs first (default 3)"},
        {"--min-ms", F_FLOAT, &min_ms, "short rows run on past --repeats until this much is timed (default 30)"},
        {"--stat", F_STR, &o.stat, "median (default) or min of the repeats (min: for a busy machine)"},
        {"--clock", F_STR, &o.clock, "wall (default) or cpu: the thread's CPU time (1 thread; a busy machine)"},
        {"--rounds", F_INT, &o.rounds, "rounds over the rows and the calibration's subnets, each keeping its fastest "
                                       "(default 1; 4-8 on a machine with slow spells, docs/LATENCY.md)"},
        {"--warm-weights", F_BOOL, &o.warm_weights, "leave each row's weights in the caches (default: flushed "
                                                   "before every run, docs/LATENCY.md)"},
        {"--classes", F_INT, &o.classes, "the head row's classes (default: the space's)"},
        {"--calibrate", F_INT, &o.calibrate, "subnets timed whole to fit the table's correction (default 10; 0: none)"},
        {"--calibrate-per-op", F_BOOL, &o.calibrate_per_op, "the correction also scales each block op (docs/LATENCY.md)"},
        {"--save-every", F_INT, &o.save_every, "rows between rewrites of the table (default 20)"},
        {"--arch", F_STR, &o.archs, "A[,B]: these networks' rows too, e.g. mobilenetv2:1.0 for search --budget-ms "
                                    "cpu=mobilenetv2:1.0"},
        HEAD_FLAGS(o.head),
        {"--head-classes", F_INT, &o.head.classes, "the task head's classes (default: --classes)"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {"--quiet", F_BOOL, &quiet, "no progress bar"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("latency profile", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (strcmp(target, "cpu")) return usage_error("profile measures --target cpu; edgetpu and dsp are modelled (latency model)");
    if (!o.space || !o.out) return usage_error("profile needs --space and --out");
    if (o.threads < 1 || o.repeats < 1 || o.warmup < 0 || o.save_every < 1 || o.calibrate < 0 || o.rounds < 1)
        return usage_error("--threads, --repeats, --rounds and --save-every must be positive, --warmup and --calibrate "
                           "not negative");
    o.progress = !quiet && !json;
    o.min_ms = min_ms;
    ib_latency_profile_report rep;
    ib_status s = ib_latency_profile(&o, &rep);
    if (s) return cli_report("latency profile", s);
    if (json)
        printf("{\"out\": \"%s\", \"rows\": %d, \"added\": %d, \"wall_s\": %.1f}\n", o.out, rep.rows, rep.added,
               rep.wall_s);
    else
        printf("%s: %d rows for the space, %d timed now (%.1f s)\n", o.out, rep.rows, rep.added, rep.wall_s);
    return 0;
}

static int do_model(int argc, char **argv) {
    const char *space = NULL, *target = NULL, *out = NULL, *archs = NULL;
    int res = 0, classes = 0, json = 0;
    ib_latency_head head;
    memset(&head, 0, sizeof head);
    const cli_flag flags[] = {
        {"--space", F_STR, &space, "*.space.json (required)"},
        {"--target", F_STR, &target, "edgetpu, dsp, or a *.target.json parameter file (required)"},
        {"--res", F_INT, &res, "input resolution (default: the space's)"},
        {"--out", F_STR, &out, "the table to write (required)"},
        {"--classes", F_INT, &classes, "the head row's classes (default: the space's)"},
        {"--arch", F_STR, &archs, "A[,B]: these networks' rows too, e.g. mobilenetv2:1.0 for search --budget-ms "
                                  "edgetpu=mobilenetv2:1.0"},
        HEAD_FLAGS(head),
        {"--head-classes", F_INT, &head.classes, "the task head's classes (default: --classes)"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("latency model", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!space || !target || !out) return usage_error("model needs --space, --target and --out");
    if (!strcmp(target, "cpu")) return usage_error("cpu is measured, not modelled: ibnas latency profile");
    int rows = 0;
    ib_status s = ib_latency_model_archs(space, target, res, classes, &head, archs, out, &rows);
    if (s) return cli_report("latency model", s);
    if (json) printf("{\"out\": \"%s\", \"target\": \"%s\", \"rows\": %d}\n", out, target, rows);
    else printf("%s: %d modelled rows (%s)\n", out, rows, target);
    return 0;
}

static int do_predict(int argc, char **argv) {
    const char *lut = NULL, *arch = NULL;
    int res = 0, verbose = 0, json = 0;
    ib_latency_head head;
    memset(&head, 0, sizeof head);
    const cli_flag flags[] = {
        {"--lut", F_STR, &lut, "[NAME=]LUT.csv (required)"},
        {"--arch", F_STR, &arch, "mobilenetv2[:WIDTH], *.arch.json or JSON text (required)"},
        {"--res", F_INT, &res, "input resolution (default: the table's, else the arch's)"},
        HEAD_FLAGS(head),
        {"--classes", F_INT, &head.classes, "segment: the segmenter's classes (default: the arch's)"},
        {"--verbose", F_BOOL, &verbose, "print every row"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("latency predict", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!lut || !arch) return usage_error("predict needs --lut and --arch");
    ib_lut *t;
    char name[64];
    ib_status s = ib_lut_load_spec(&t, lut, name, sizeof name);
    if (s) return cli_report("latency predict", s);
    ib_latency_prediction p;
    s = ib_lut_predict_detail_head(t, arch, &head, res, &p);
    ib_lut_free(t);
    if (s) return cli_report("latency predict", s);
    if (json) {
        printf("{\"target\": \"%s\", \"res\": %d, \"ms\": %.4f, \"sum_ms\": %.4f, \"corrected\": %s", name, p.res, p.ms,
               p.sum, p.corrected ? "true" : "false");
        if (verbose) {
            printf(", \"rows\": [");
            for (int i = 0; i < p.n_rows; i++)
                printf("%s{\"block\": %d, \"row\": \"%s\", \"ms\": %.4f}", i ? ", " : "", p.rows[i].block, p.rows[i].key,
                       p.rows[i].ms);
            printf("]");
            if (p.corrected) {
                printf(", \"correction\": {\"a\": %.6g, \"b\": %.6g, \"c\": %.6g, \"terms\": [", p.a, p.b, p.c);
                for (int i = 0; i < p.n_terms; i++)
                    printf("%s{\"op\": \"%s\", \"kind\": \"%c\", \"coef\": %.6g, \"x\": %.6g}", i ? ", " : "",
                           p.terms[i].op, p.terms[i].kind, p.terms[i].coef, p.terms[i].x);
                printf("]}");
            }
        }
        printf("}\n");
    } else {
        if (verbose) {
            printf("%-8s %-48s %10s\n", "part", "row (op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out)", "ms");
            for (int i = 0; i < p.n_rows; i++) {
                char part[16];
                if (p.rows[i].block < 0) snprintf(part, sizeof part, "stem");
                else if (i == p.n_rows - 1) snprintf(part, sizeof part, "%s", head.task && strcmp(head.task, "classify") ? "task head" : "head");
                else snprintf(part, sizeof part, "%d", p.rows[i].block);
                printf("%-8s %-48s %10.4f\n", part, p.rows[i].key, p.rows[i].ms);
            }
            printf("sum of %d rows: %.4f ms\n", p.n_rows, p.sum);
            if (p.corrected) {
                printf("correction at res %d: %.4g * sum + %.4g * rows + %.4g", p.res, p.a, p.b, p.c);
                for (int i = 0; i < p.n_terms; i++)
                    printf(" %s %.4g * %s %s (%g)", p.terms[i].coef < 0 ? "-" : "+", fabs(p.terms[i].coef),
                           p.terms[i].op, p.terms[i].kind == 'a' ? "ms" : !strcmp(p.terms[i].op, "skip") ? "layers" : "rows",
                           p.terms[i].x);
                printf("\n");
            }
        }
        printf("%s: %.3f ms (res %d)\n", name, p.ms, p.res);
    }
    ib_latency_prediction_free(&p);
    return 0;
}

static int do_measure(int argc, char **argv) {
    const char *arch = NULL;
    int res = 0, threads = 1, repeats = 15, json = 0;
    ib_latency_head head;
    memset(&head, 0, sizeof head);
    const cli_flag flags[] = {
        {"--arch", F_STR, &arch, "mobilenetv2[:WIDTH], *.arch.json or JSON text (required)"},
        {"--res", F_INT, &res, "input resolution (default: the arch's)"},
        {"--threads", F_INT, &threads, "threads (default 1)"},
        {"--repeats", F_INT, &repeats, "timed passes, at least (on until 100 ms are timed, at most 8x); the median of the faster of 2 rounds is reported (default 15)"},
        HEAD_FLAGS(head),
        {"--classes", F_INT, &head.classes, "segment: the segmenter's classes (default: the arch's)"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("latency measure", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!arch) return usage_error("measure needs --arch");
    if (threads < 1 || repeats < 1 || res < 0) return usage_error("--threads and --repeats must be positive");
    double ms;
    ib_status s = ib_latency_measure_head(arch, &head, res, threads, repeats, &ms);
    if (s) return cli_report("latency measure", s);
    if (json) printf("{\"arch\": \"%s\", \"res\": %d, \"threads\": %d, \"repeats\": %d, \"ms\": %.4f}\n",
                     arch[0] == '{' ? "(json)" : arch, res, threads, repeats, ms);
    else printf("%s: %.3f ms (batch 1, %d thread%s, median of %d)\n", arch[0] == '{' ? "arch" : arch, ms, threads,
                threads > 1 ? "s" : "", repeats);
    return 0;
}

static int do_validate(int argc, char **argv) {
    ib_latency_validate_opts o;
    ib_latency_validate_opts_default(&o);
    int json = 0, quiet = 0;
    float vmin_ms = (float)o.min_ms;
    const cli_flag flags[] = {
        {"--lut", F_STR, &o.lut, "the cpu table to check (required)"},
        {"--space", F_STR, &o.space, "*.space.json whose subnets are sampled (required)"},
        {"--samples", F_INT, &o.samples, "random subnets (default 50)"},
        {"--threads", F_INT, &o.threads, "threads, as the table was measured with (default 1)"},
        {"--res", F_INT, &o.res, "input resolution (default: the table's)"},
        {"--seed", F_U64, &o.seed, "which subnets (default 1)"},
        {"--repeats", F_INT, &o.repeats, "timed passes per subnet (default 9)"},
        {"--min-ms", F_FLOAT, &vmin_ms, "small subnets run on past --repeats until this much is timed (default 100)"},
        {"--rounds", F_INT, &o.rounds, "passes over the subnets, each keeping its fastest (default: the table's "
                                       "rounds, else 2)"},
        {"--recalibrate", F_INT, &o.recalibrate, "also time N calibration subnets in the same rounds and report "
                                                 "the errors of a correction refitted on them (default 0: no)"},
        {"--classes", F_INT, &o.classes, "classes of the subnets (default: the space's)"},
        {"--out", F_STR, &o.out_dir, "folder for validate.csv and validate.svg"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {"--quiet", F_BOOL, &quiet, "no progress bar"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("latency validate", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!o.lut || !o.space) return usage_error("validate needs --lut and --space");
    if (o.samples < 2 || o.threads < 1 || o.repeats < 1 || o.rounds < 0 || o.recalibrate < 0)
        return usage_error("--samples >= 2, --threads and --repeats >= 1, --rounds and --recalibrate >= 0");
    o.progress = !quiet && !json;
    o.min_ms = vmin_ms;
    ib_latency_validate_report rep;
    ib_status s = ib_latency_validate(&o, &rep);
    if (s) return cli_report("latency validate", s);
    if (json) {
        printf("{\"samples\": %d, \"res\": %d, \"threads\": %d, \"mean_abs_pct_err\": %.3f, \"max_abs_pct_err\": %.3f, "
               "\"spearman\": %.4f, ",
               rep.samples, rep.res, o.threads, rep.mean_abs_pct_err, rep.max_abs_pct_err, rep.spearman);
        if (o.recalibrate)
            printf("\"recalibrated\": {\"subnets\": %d, \"a\": %.6g, \"b\": %.6g, \"mean_abs_pct_err\": %.3f, "
                   "\"max_abs_pct_err\": %.3f, \"spearman\": %.4f}, ",
                   o.recalibrate, rep.recal_a, rep.recal_b, rep.recal_mean_abs_pct_err, rep.recal_max_abs_pct_err,
                   rep.recal_spearman);
        printf("\"wall_s\": %.1f}\n", rep.wall_s);
    } else {
        printf("%d subnets at res %d, %d thread%s: mean abs error %.2f%%, max %.2f%%, Spearman %.4f (%.0f s)\n",
               rep.samples, rep.res, o.threads, o.threads > 1 ? "s" : "", rep.mean_abs_pct_err, rep.max_abs_pct_err,
               rep.spearman, rep.wall_s);
        if (o.recalibrate)
            printf("with the correction refitted on %d calibration subnets timed beside them (%.4g * sum + %.4g * rows): "
                   "mean abs error %.2f%%, max %.2f%%, Spearman %.4f\n",
                   o.recalibrate, rep.recal_a, rep.recal_b, rep.recal_mean_abs_pct_err, rep.recal_max_abs_pct_err,
                   rep.recal_spearman);
    }
    ib_latency_validate_report_free(&rep);
    return 0;
}

int cmd_latency(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            printf("%s", usage_text);
            return 0;
        }
        fprintf(stderr, "%s", usage_text);
        return 2;
    }
    static const struct { const char *name; int (*run)(int, char **); } subs[] = {
        {"profile", do_profile}, {"model", do_model}, {"predict", do_predict},
        {"measure", do_measure}, {"validate", do_validate},
    };
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        if (!strcmp(argv[1], subs[i].name)) return subs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ibnas latency: '%s' is not profile, model, predict, measure or validate\n", argv[1]);
    return 2;
}
