// ibnas search: the best arch of a supernet's space under latency budgets on each target, through the
// public API (ib_search).
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: ibnas search --supernet S.h5 --lut cpu=LUT.csv[,edgetpu=LUT2.csv] --budget-ms X[,Y] --out DIR [flags]\n\n"
    "Searches the supernet's space for the best-scored arch under each latency budget on each target.\n"
    "A subnet's score is its inherited top-1 on the held-out part of the training data (the part the\n"
    "supernet left out of training) after BN recalibration on the rest; its latency is predicted from each\n"
    "target's table. Strategies: evolution (regularised evolution, default), random (the baseline), tunas\n"
    "(REINFORCE with the absolute reward top-1 + beta * |latency / budget - 1|). Budgets per target:\n"
    "--budget-ms 'cpu=8,12;edgetpu=3,4'. Writes DIR/TARGET/{pareto.csv,pareto.svg,archs.svg,\n"
    "best-<budget>ms.arch.json}, DIR/summary.json, DIR/archs.svg and DIR/curve_<strategy>.csv; the state is\n"
    "saved every generation: Ctrl-C stops cleanly, --resume goes on (docs/SEARCH.md). A supernet trained\n"
    "with --task detect scores each subnet by the AP50 of its path with the supernet's SSDLite head on the\n"
    "held-out images, after BN recalibration on the rest (MobileDets' search); one trained with --task segment\n"
    "by the mIoU of its path with the supernet's segmentation head there (Autoseg-EdgeTPU's search).\n"
    "A budget may be a network (--budget-ms cpu=mobilenetv2:1.0): its latency as the table predicts the\n"
    "search's archs. --verify N measures the picks on this machine when the search finishes: on each table\n"
    "measured on this CPU, the N best-scored archs predicted within the budget (+ --verify-slack) are timed\n"
    "end to end beside the budget's network in interleaved rounds, and the pick is the best-scored one that\n"
    "runs within it (DIR/TARGET/verify-<budget>ms.csv; docs/SEARCH.md, \"Measured picks\").\n";

// The whole file on stdout (the summary for --json); 0 on success.
static int print_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
    fclose(f);
    return 0;
}

int cmd_search(int argc, char **argv) {
    ib_search_opts o;
    ib_search_opts_default(&o);
    float holdout = 0, beta = (float)o.tunas_beta, slack = (float)o.verify_slack;
    int json = 0, quiet = 0;
    const cli_flag flags[] = {
        {"--supernet", F_STR, &o.supernet, "the supernet (ibnas supernet train; required)"},
        {"--data", F_STR, &o.data, "training data (default: the data the supernet records)"},
        {"--holdout", F_FLOAT, &holdout, "held-out fraction scored on (default: the supernet's; else 0.1)"},
        {"--lut", F_STR, &o.luts, "latency tables, NAME=FILE.csv[,NAME=FILE.csv] (required)"},
        {"--budget-ms", F_STR, &o.budgets, "budgets in ms or networks, X[,Y] or per target 'cpu=X,mobilenetv2:1.0;edgetpu=Z' "
                                           "(required)"},
        {"--strategy", F_STR, &o.strategy, "evolution (default), random or tunas"},
        {"--ops", F_STR, &o.ops, "the op types the search may pick, e.g. ibn,skip (a part of the supernet's space; "
                                 "MobileDets searched IBN alone for mobile CPUs; default: all)"},
        {"--population", F_INT, &o.population, "evolution's population, random's first samples (32)"},
        {"--generations", F_INT, &o.generations, "generations after the first population; tunas: steps (20)"},
        {"--sample", F_INT, &o.sample, "evolution's tournament size (8)"},
        {"--batch", F_INT, &o.batch, "per generation and budget: children / samples / policy samples (16)"},
        {"--beta", F_FLOAT, &beta, "tunas: the latency term's weight, negative (-0.5)"},
        {"--seed", F_U64, &o.seed, "seed of the search and of the calibration images (0)"},
        {"--res", F_INT, &o.res, "resolution of scoring and latency (default: the space's input)"},
        {"--latency-res", F_INT, &o.latency_res, "resolution of latency alone (tables, budgets, the picks' input): a "
                                                 "supernet scored small searched at its deployment's size (default: --res)"},
        {"--calib-batches", F_INT, &o.calib_batches, "BN recalibration batches of 64 per subnet (20)"},
        {"--eval-images", F_INT, &o.eval_images, "at most this many held-out images per score (default: all)"},
        {"--task", F_STR, &o.task, "classify, detect or segment: must be the supernet's (default: the supernet's)"},
        {"--metric", F_STR, &o.metric, "the score: top1 (default) or loss (minus the held-out cross-entropy); detect: ap50 (default), ap, ap75, loss (minus the held-out multibox loss); segment: miou (default), pixel_acc, loss"},
        {"--baselines", F_STR, &o.baselines, "drawn on the plots: mobilenetv2:0.35[=TOP1],A.arch.json; archs of the space are also scored and seed evolution"},
        {"--out", F_STR, &o.out, "output folder (required)"},
        {"--resume", F_BOOL, &o.resume, "continue the search saved in --out"},
        {"--max-generations", F_INT, &o.max_generations, "stop after this many generations in this run (resumable)"},
        {"--verify", F_INT, &o.verify, "time the N best-scored archs near each budget on this CPU and pick the best that "
                                       "runs within it (0: the table's pick)"},
        {"--verify-slack", F_FLOAT, &slack, "--verify: archs predicted up to this fraction over the budget are timed too (0.05)"},
        {"--latency-of", F_STR, &o.latency_of, "task (default: a detector's or segmenter's latency) or backbone (the whole classifier)"},
        {"--threads", F_INT, &o.threads, "threads (default: all cores)"},
        {"--workers", F_INT, &o.workers, "data loading threads (2)"},
        {"--json", F_BOOL, &json, "print the summary (summary.json) on stdout"},
        {"--quiet", F_BOOL, &quiet, "no progress output"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("search", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!o.supernet || !o.luts || !o.budgets || !o.out) {
        fprintf(stderr, "ibnas search: --supernet, --lut, --budget-ms and --out are required (ibnas search --help)\n");
        return 2;
    }
    o.holdout = holdout;
    o.tunas_beta = beta;
    o.verify_slack = slack;
    o.progress = !quiet;
    ib_search_report rep;
    ib_status s = ib_search(&o, &rep);
    if (s == IB_ERR_INTERRUPTED) {
        fprintf(stderr, "ibnas search: %s (continue with --resume --out %s)\n", ib_errmsg(), o.out);
        return 130;
    }
    if (s) return cli_report("search", s);
    if (ib_dist_rank() > 0) return 0;   // under mpirun rank 0 alone reports (and wrote the outputs)
    if (json) {
        size_t n = strlen(o.out) + 32;
        char *path = malloc(n);
        if (!path) return 1;
        snprintf(path, n, "%s/summary.json", o.out);
        int bad = print_file(path);
        if (bad) fprintf(stderr, "ibnas search: cannot read %s\n", path);
        free(path);
        return bad;
    }
    if (!quiet) {
        for (int i = 0; i < rep.n_results; i++) {
            const ib_search_arch *a = &rep.results[i];
            char of[128] = "", meas[128] = "";
            if (a->budget_of[0]) snprintf(of, sizeof of, " (%s)", a->budget_of);
            if (a->verified >= 0 && a->found)
                snprintf(meas, sizeof meas, "; measured %.3f ms against %.3f%s", a->measured_ms, a->budget_measured_ms,
                         a->verified ? "" : " (unverified: none timed ran within)");
            if (a->found)
                printf("%-10s <= %6g ms%s: %s %.4f, %.3f ms, %.1f M MACs%s  %s\n", a->target, a->budget_ms, of, rep.score_name,
                       a->score, a->ms, (double)a->macs / 1e6, meas, a->arch_file);
            else printf("%-10s <= %6g ms%s: no scored arch within the budget\n", a->target, a->budget_ms, of);
        }
        printf("%lld subnets scored in %d generations%s; %s/summary.json\n", (long long)rep.subnets_scored,
               rep.generations_done, rep.finished ? "" : " (stopped early: --resume goes on)", o.out);
    }
    return 0;
}
