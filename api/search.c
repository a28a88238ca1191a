// api: ib_search, the search verb's work over the internals. Opens the supernet, the data (its held-out
// part scores, the rest recalibrates BN), the latency tables and the baselines, hands search/ a scoring
// function over tasks' ib_supernet_eval_classify, and maps the result onto the public report.
#include "api/api.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ib_search_opts_default(ib_search_opts *o) {
    ib_search_cfg c;
    ib_search_cfg_default(&c);
    memset(o, 0, sizeof *o);
    o->strategy = "evolution";
    o->population = c.population;
    o->generations = c.generations;
    o->sample = c.sample;
    o->batch = c.batch;
    o->tunas_beta = c.tunas_beta;
    o->calib_batches = 20;
    o->metric = NULL;   // the task's default: top1, detection ap50
    o->progress = 1;
    o->workers = 2;
    o->verify_slack = c.verify_slack;
}

// ---------------------------------------------------------------------------------------------
// The first n images of a dataset, as a dataset (a cap on the held-out images each score reads).

typedef struct {
    ib_dataset *base;
} prefix_impl;

static ib_status prefix_get(ib_dataset *ds, int64_t i, ib_sample *s) {
    return ib_dataset_get(((prefix_impl *)ds->impl)->base, i, s);
}

static void prefix_close(ib_dataset *ds) {
    free(ds->impl);
    ds->impl = NULL;
}

static const ib_dataset_vtable prefix_vt = {"prefix", prefix_get, prefix_close, NULL};

static ib_status dataset_prefix(ib_dataset **out, ib_dataset *base, int64_t n) {
    *out = NULL;
    ib_dataset *ds = calloc(1, sizeof *ds);
    prefix_impl *p = calloc(1, sizeof *p);
    size_t plen = strlen(ib_dataset_path(base)) + 32;
    char *path = malloc(plen);
    if (!ds || !p || !path) {
        free(ds), free(p), free(path);
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    snprintf(path, plen, "%s[:%lld]", ib_dataset_path(base), (long long)n);
    p->base = base;
    ds->vt = &prefix_vt;
    ds->impl = p;
    ds->path = path;
    ds->size = n < ib_dataset_size(base) ? n : ib_dataset_size(base);
    ds->n_classes = 0;   // the names stay with the base; scoring needs only the labels
    ds->ignore_index = base->ignore_index;
    ds->has_labels = base->has_labels, ds->has_boxes = base->has_boxes, ds->has_masks = base->has_masks;
    *out = ds;
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Scoring: top-1 of the path on the held-out images after BN recalibration on the rest.

typedef struct scorer {
    ib_supernet *sn;
    ib_dataset *calib, *eval;
    ib_sn_eval_cfg cfg;
    int by_loss;   // the score is minus the cross-entropy, not top-1
    ib_sn_task *task;   // NULL: classification; else the task's score (detection: AP50, segmentation: mIoU)
    int metric;         // with a task: which of its metrics (0 its score)
} scorer;

static ib_status score_path(void *user, const int *choice, double *score) {
    scorer *sc = user;
    if (sc->task) {
        double m[IB_SN_METRICS];
        ib_status s = ib_supernet_eval_task(sc->sn, sc->task, choice, sc->calib, sc->eval, &sc->cfg, m);
        *score = sc->metric == IB_SN_LOSS ? -m[IB_SN_LOSS] : m[sc->metric];   // the loss: lower is better
        return s;
    }
    ib_cls_metrics m;
    memset(&m, 0, sizeof m);
    ib_status s = ib_supernet_eval_classify(sc->sn, choice, sc->calib, sc->eval, &sc->cfg, &m);
    *score = sc->by_loss ? -m.loss : m.top1;
    ib_cls_metrics_free(&m);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Flags' lists

// Budgets given as networks ("cpu=mobilenetv2:1.0"): each target's, resolved, and their names.
typedef struct budget_refs {
    ib_arch arch[IB_SEARCH_MAX_TARGETS][IB_SEARCH_MAX_BUDGETS];
    char label[IB_SEARCH_MAX_TARGETS][IB_SEARCH_MAX_BUDGETS][96];
} budget_refs;

// "8,12" (or "mobilenetv2:1.0,9") into target t's budgets; IB_ERR_ARG naming `what` for anything but positive
// numbers and networks.
static ib_status parse_budgets(const char *text, size_t len, const char *what, ib_search_cfg *c, int t,
                               budget_refs *refs, int classes) {
    ib_search_target *tg = &c->targets[t];
    tg->n_budgets = 0;
    char buf[512];
    if (len >= sizeof buf) return ib_fail(IB_ERR_ARG, "%s: budget list too long", what);
    memcpy(buf, text, len);
    buf[len] = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = tg->n_budgets;
        if (k == IB_SEARCH_MAX_BUDGETS) return ib_fail(IB_ERR_ARG, "%s: more than %d budgets", what, IB_SEARCH_MAX_BUDGETS);
        char *end;
        double v = strtod(tok, &end);
        if (end != tok && !*end) {
            if (!(v > 0) || !isfinite(v)) return ib_fail(IB_ERR_ARG, "%s: budget '%s' is not a positive number of ms", what, tok);
            tg->budget_ms[k] = v;
        } else {   // a network: its latency is filled in once the tables and the task are known
            ib_status s = ib_arch_resolve(&refs->arch[t][k], tok, classes);
            if (s) {
                char msg[600];
                snprintf(msg, sizeof msg, "%s", ib_errmsg());
                return ib_fail(IB_ERR_ARG, "%s: budget '%s' is neither a number of ms nor a network (%s)", what, tok, msg);
            }
            snprintf(refs->label[t][k], sizeof refs->label[t][k], "%s", tok);
            tg->budget_ref[k] = &refs->arch[t][k];
            tg->budget_label[k] = refs->label[t][k];
            tg->budget_ms[k] = NAN;
        }
        tg->n_budgets++;
    }
    if (!tg->n_budgets) return ib_fail(IB_ERR_ARG, "%s: no budget given", what);
    return IB_OK;
}

// "8,12" for every target, or "cpu=8,12;edgetpu=3,4" (every target named once).
static ib_status assign_budgets(const char *spec, ib_search_cfg *c, budget_refs *refs, int classes) {
    if (!spec || !spec[0]) return ib_fail(IB_ERR_ARG, "search: no latency budget given (--budget-ms)");
    if (!strchr(spec, '=')) {
        for (int t = 0; t < c->n_targets; t++) {
            ib_status s = parse_budgets(spec, strlen(spec), "--budget-ms", c, t, refs, classes);
            if (s) return s;
        }
        return IB_OK;
    }
    for (const char *p = spec; *p;) {
        const char *semi = strchr(p, ';'), *end = semi ? semi : p + strlen(p), *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) return ib_fail(IB_ERR_ARG, "--budget-ms '%s': per target, write NAME=MS[,MS];NAME=MS", spec);
        int t = 0;
        while (t < c->n_targets && (strlen(c->targets[t].name) != (size_t)(eq - p) ||
                                    strncmp(c->targets[t].name, p, (size_t)(eq - p))))
            t++;
        if (t == c->n_targets)
            return ib_fail(IB_ERR_ARG, "--budget-ms: '%.*s' is not one of the targets given by --lut", (int)(eq - p), p);
        if (c->targets[t].n_budgets) return ib_fail(IB_ERR_ARG, "--budget-ms: target '%s' given twice", c->targets[t].name);
        ib_status s = parse_budgets(eq + 1, (size_t)(end - eq - 1), c->targets[t].name, c, t, refs, classes);
        if (s) return s;
        p = semi ? semi + 1 : end;
    }
    for (int t = 0; t < c->n_targets; t++)
        if (!c->targets[t].n_budgets) return ib_fail(IB_ERR_ARG, "--budget-ms: no budget for target '%s'", c->targets[t].name);
    return IB_OK;
}

typedef struct api_search {
    ib_supernet sn;
    int sn_loaded;
    ib_dataset *base, *held, *rest, *eval;
    ib_lut *luts[IB_SEARCH_MAX_TARGETS];
    char names[IB_SEARCH_MAX_TARGETS][64];
    int n_base;
    ib_arch base_arch[16];
    char base_label[16][96];
    ib_search_baseline baselines[16];
    ib_ctx *ctx;
    ib_sn_task *task;   // the supernet's task, NULL for classification
    budget_refs refs;
    int whole;          // latency_of "backbone": the classifier's network, not the task's
    int threads;        // the search's (restored after each timing)
    int lut_threads[IB_SEARCH_MAX_TARGETS];
    ib_lut_clock lut_clock[IB_SEARCH_MAX_TARGETS];
} api_search;

static ib_status load_luts(api_search *a, const char *spec, ib_search_cfg *c) {
    if (!spec || !spec[0]) return ib_fail(IB_ERR_ARG, "search: no latency table given (--lut NAME=FILE.csv)");
    char buf[4096];
    if (strlen(spec) >= sizeof buf) return ib_fail(IB_ERR_ARG, "--lut: list too long");
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (c->n_targets == IB_SEARCH_MAX_TARGETS) return ib_fail(IB_ERR_ARG, "--lut: more than %d targets", IB_SEARCH_MAX_TARGETS);
        int t = c->n_targets;
        ib_status s = ib_lut_load_spec(&a->luts[t], tok, a->names[t], sizeof a->names[t]);
        if (s) return s;
        c->targets[t].name = a->names[t];
        c->targets[t].lut = a->luts[t];
        c->n_targets++;
    }
    return IB_OK;
}

static ib_status load_baselines(api_search *a, const char *spec, int classes, ib_search_cfg *c) {
    if (!spec || !spec[0]) return IB_OK;
    char buf[2048];
    if (strlen(spec) >= sizeof buf) return ib_fail(IB_ERR_ARG, "--baselines: list too long");
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (a->n_base == 16) return ib_fail(IB_ERR_ARG, "--baselines: more than 16");
        int k = a->n_base;
        double score = NAN;
        char *eq = strchr(tok, '=');
        if (eq) {
            char *end;
            *eq = 0;
            score = strtod(eq + 1, &end);
            if (end == eq + 1 || *end || !isfinite(score))
                return ib_fail(IB_ERR_ARG, "--baselines: '%s' is not a score (ARCH=SCORE)", eq + 1);
        }
        ib_status s = ib_arch_resolve(&a->base_arch[k], tok, classes);
        if (s) return s;
        a->n_base++;
        snprintf(a->base_label[k], sizeof a->base_label[k], "%s", tok);
        a->baselines[k] = (ib_search_baseline){a->base_label[k], &a->base_arch[k], score};
    }
    c->n_baselines = a->n_base;
    c->baselines = a->baselines;
    return IB_OK;
}

// Two spellings of one path (relative and absolute, through links), or the same text.
static int same_file(const char *a, const char *b) {
    if (!strcmp(a, b)) return 1;
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    int same = ra && rb && !strcmp(ra, rb);
    free(ra), free(rb);
    return same;
}

// The training data and its two parts: the held-out one that training left out (scored on), the rest
// (BN recalibration).
static ib_status open_data(api_search *a, const ib_search_opts *o) {
    ib_supernet *sn = &a->sn;
    const char *path = o->data ? o->data : sn->train_data;
    if (!path) return ib_fail(IB_ERR_ARG, "%s records no training data: give it (--data)", o->supernet);
    int own = sn->train_data && sn->holdout > 0 && same_file(path, sn->train_data);
    double holdout = own ? sn->holdout : o->holdout > 0 ? o->holdout : 0.1;
    uint64_t seed = own ? sn->split_seed : o->seed;
    if (own && o->holdout > 0 && fabs(o->holdout - sn->holdout) > 1e-6)   // a float flag's 0.1 is 0.1
        return ib_fail(IB_ERR_ARG,
                       "%s held out %g of %s from training; scoring on a --holdout of %g would score on images it "
                       "trained on (leave --holdout out)",
                       o->supernet, sn->holdout, path, o->holdout);
    if (!(holdout > 0 && holdout < 1)) return ib_fail(IB_ERR_ARG, "--holdout %g must lie in (0, 1)", holdout);
    ib_status s = a->task ? a->task->open(a->task, &a->base, path, IB_DS_AUTO, "train")
                          : ib_open_labelled(&a->base, path, IB_DS_AUTO, "train");
    if (s) return s;
    if (ib_dataset_classes(a->base) != sn->base.classes)
        return ib_fail(IB_ERR_ARG, "%s: %d classes, the supernet %s has %d", path, ib_dataset_classes(a->base), o->supernet,
                       sn->base.classes);
    if ((s = ib_dataset_split(&a->held, a->base, 0, holdout, seed)) ||
        (s = ib_dataset_split(&a->rest, a->base, holdout, 1, seed)))
        return s;
    if (o->eval_images > 0 && o->eval_images < ib_dataset_size(a->held))
        return dataset_prefix(&a->eval, a->held, o->eval_images);
    a->eval = a->held;
    return IB_OK;
}

static void api_search_free(api_search *a) {
    if (a->eval != a->held) ib_dataset_close(a->eval);
    ib_dataset_close(a->held);
    ib_dataset_close(a->rest);
    ib_dataset_close(a->base);
    for (int t = 0; t < IB_SEARCH_MAX_TARGETS; t++) ib_lut_free(a->luts[t]);
    for (int k = 0; k < a->n_base; k++) ib_arch_free(&a->base_arch[k]);
    for (int t = 0; t < IB_SEARCH_MAX_TARGETS; t++)
        for (int k = 0; k < IB_SEARCH_MAX_BUDGETS; k++) ib_arch_free(&a->refs.arch[t][k]);
    if (a->sn_loaded) ib_supernet_free(&a->sn);
    if (a->ctx) ib_ctx_free(a->ctx);
    if (a->task) a->task->free(a->task);
    free(a);
}

// Latency of the task's network (a segmenter: the backbone up to the head's stride, then the head's row).
static ib_status task_lut(void *user, const ib_arch *a, int res, ib_lut_task *out) {
    ib_sn_task *t = user;
    return t->lut_task(t, a, res, out);
}

// Budgets given as networks: each one's latency as the table predicts the search's archs (the task's network).
static ib_status predict_refs(ib_search_cfg *c) {
    for (int t = 0; t < c->n_targets; t++)
        for (int k = 0; k < c->targets[t].n_budgets; k++) {
            const ib_arch *ref = c->targets[t].budget_ref[k];
            if (!ref) continue;
            ib_lut_task bt;
            ib_status s = c->lut_task ? c->lut_task(c->lut_task_user, ref, c->res, &bt) : IB_OK;
            if (!s) s = ib_lut_predict_task(c->targets[t].lut, ref, c->res, c->lut_task ? &bt : NULL, &c->targets[t].budget_ms[k]);
            if (s) {
                char msg[600];
                snprintf(msg, sizeof msg, "%s", ib_errmsg());
                return ib_fail(s, "--budget-ms: %s on %s at %d px: %s", c->targets[t].budget_label[k], c->targets[t].name, c->res, msg);
            }
        }
    return IB_OK;
}

// Which targets this machine can time: a table measured on this CPU ("# target: cpu", its "# device:"), timed
// at its threads and clock. Others are noted and left to their predictions.
static void timed_targets(api_search *a, ib_search_cfg *c, int progress) {
    char here[256];
    ib_lut_device_name(here, sizeof here);
    for (int t = 0; t < c->n_targets; t++) {
        const ib_lut *lut = c->targets[t].lut;
        const char *dev = ib_lut_meta(lut, "device"), *th = ib_lut_meta(lut, "threads"), *clk = ib_lut_meta(lut, "clock");
        c->targets[t].timed = !strcmp(ib_lut_target(lut), "cpu") && dev && !strcmp(dev, here);
        a->lut_threads[t] = th && atoi(th) > 0 ? atoi(th) : 1;
        if (!clk || !ib_lut_clock_parse(clk, &a->lut_clock[t])) a->lut_clock[t] = IB_LUT_WALL;
        if (c->targets[t].timed || !progress) continue;
        if (strcmp(ib_lut_target(lut), "cpu"))
            fprintf(stderr, "search: %s is a modelled target (%s): its picks are the table's, not timed\n", c->targets[t].name,
                    ib_lut_target(lut));
        else
            fprintf(stderr, "search: %s's table was measured on %s, this machine is %s: its picks are the table's, not timed\n",
                    c->targets[t].name, dev ? dev : "an unnamed device", here);
    }
}

// One end-to-end latency on target t, as `ibnas latency measure` times a network (3 warm-up passes, the median
// of 15 or more until 100 ms are timed), at the table's threads; the caller runs the rounds.
static ib_status time_arch(void *user, int t, const ib_arch *arch, int res, double *ms) {
    api_search *a = user;
    ib_lut_timing tm = {.warmup = 3, .repeats = 15, .stat = IB_LUT_MEDIAN, .clock = a->lut_clock[t], .min_ms = 100};
    ib_set_threads(a->lut_threads[t]);
    ib_status s = a->task && a->task->time_task && !a->whole ? a->task->time_task(a->task, arch, res, &tm, ms)
                                                             : ib_lut_time_arch(arch, res, &tm, ms);
    ib_set_threads(a->threads);
    return s;
}

ib_status ib_search(const ib_search_opts *o, ib_search_report *r) {
    if (!r) return ib_fail(IB_ERR_ARG, "ib_search: no report given");
    memset(r, 0, sizeof *r);
    if (!o || !o->supernet || !o->out) return ib_fail(IB_ERR_ARG, "ib_search: a supernet and an output folder are needed");
    ib_search_cfg c;
    ib_search_cfg_default(&c);
    if (!ib_search_strategy_parse(o->strategy ? o->strategy : "evolution", &c.strategy))
        return ib_fail(IB_ERR_ARG, "strategy '%s' is not one of evolution, random, tunas", o->strategy);
    if (o->ops) {   // "ibn,skip": op names, each once
        for (const char *p = o->ops, *e; ; p = e + 1) {
            e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            int found = -1;
            for (int op = 0; op <= IB_BLOCK_SKIP; op++)
                if (strlen(ib_block_op_name((ib_block_op)op)) == n && !strncmp(p, ib_block_op_name((ib_block_op)op), n)) found = op;
            if (found < 0 || (c.ops >> found & 1u))
                return ib_fail(IB_ERR_ARG, "ops '%s': '%.*s' is %s (ibn, fused, tucker, gcibn, skip, comma-separated)", o->ops,
                               (int)(n < 40 ? n : 40), p, found < 0 ? "not an op" : "given twice");
            c.ops |= 1u << found;
            if (!e) break;
        }
    }
    if (o->res < 0 || (o->res > 0 && o->res < 8) || o->latency_res < 0 || (o->latency_res > 0 && o->latency_res < 8) ||
        o->calib_batches < 1 || o->eval_images < 0 || o->verify < 0 || !(o->verify_slack >= 0 && o->verify_slack <= 1))
        return ib_fail(IB_ERR_ARG, "ib_search: res %d and latency_res %d (0 or >= 8), calib_batches %d (>= 1), eval_images %d "
                       "(>= 0), verify %d (>= 0), verify_slack %g (0 to 1)",
                       o->res, o->latency_res, o->calib_batches, o->eval_images, o->verify, o->verify_slack);
    static const char *const latency_of[] = {"task", "backbone"}, *const tasks[] = {"classify", "detect", "segment"};
    int pick;
    ib_status st;
    if ((o->latency_of && (st = ib_api_choose("latency_of", o->latency_of, latency_of, 2, &pick))) ||
        (o->task && (st = ib_api_choose("task", o->task, tasks, 3, &pick))))
        return st;
    ib_set_threads(o->threads);
    api_search *a = calloc(1, sizeof *a);
    if (!a) return ib_fail(IB_ERR_NOMEM, "out of memory");
    ib_status s = ib_supernet_load(&a->sn, o->supernet);
    a->sn_loaded = !s;
    if (!s) s = ib_sn_task_open(&a->task, &a->sn, o->supernet);
    const char *task = a->task ? a->task->name : "classify";
    if (!s && o->task && strcmp(o->task, task))
        s = ib_fail(IB_ERR_ARG, "%s: a supernet trained for %s, not %s (ibnas supernet train --task %s)", o->supernet, task,
                    o->task, o->task);
    // the metric: classification's top1 (default) or loss; a task's first (default) or another of its metrics
    // (loss: minus the task's training loss on the held-out images, m[IB_SN_LOSS]; on real data at low accuracy the loss
    // ranks paths better than top-1 did, docs/SEARCH.md)
    static const struct {
        const char *task, *flag[IB_SN_METRICS], *name[IB_SN_METRICS], *list;
    } task_metrics[] = {{"detect", {"ap50", "ap", "ap75", "loss"}, {"AP50", "AP", "AP75", "-loss"}, "ap50, ap, ap75, loss"},
                        {"segment", {"miou", "pixel_acc", NULL, "loss"}, {"mIoU", "pixel_acc", NULL, "-loss"},
                         "miou, pixel_acc, loss"}};
    int tm = -1, task_metric = -1;
    for (int k = 0; a->task && k < 2; k++)
        if (!strcmp(task, task_metrics[k].task)) tm = k;
    if (!s && a->task && tm < 0) s = ib_fail(IB_ERR_ARG, "%s: no search metric for task %s", o->supernet, task);
    const char *metric = o->metric ? o->metric : tm >= 0 ? task_metrics[tm].flag[0] : "top1";
    for (int k = 0; tm >= 0 && k < IB_SN_METRICS; k++)
        if (task_metrics[tm].flag[k] && !strcmp(metric, task_metrics[tm].flag[k])) task_metric = k;
    if (!s && !a->task && strcmp(metric, "top1") && strcmp(metric, "loss"))
        s = ib_fail(IB_ERR_ARG, "metric '%s' is not one of top1, loss (a classification supernet)", metric);
    if (!s && tm >= 0 && task_metric < 0)
        s = ib_fail(IB_ERR_ARG, "metric '%s' is not one of %s (a %s supernet)", metric, task_metrics[tm].list, task);
    int res = o->res > 0 ? o->res : a->sn.space.input;
    if (!s && ib_space_head_choices(&a->sn.space) && o->latency_of && !strcmp(o->latency_of, "backbone"))
        s = ib_fail(IB_ERR_ARG, "%s: its space searches the segmentation head, whose cost --latency-of backbone leaves out "
                    "(use --latency-of task)", o->supernet);
    if (!s) s = load_luts(a, o->luts, &c);
    if (!s) s = assign_budgets(o->budgets, &c, &a->refs, a->sn.base.classes);
    if (!s) s = load_baselines(a, o->baselines, a->sn.base.classes, &c);
    if (!s) s = open_data(a, o);
    if (!s && !(a->ctx = ib_ctx_new())) s = ib_fail(IB_ERR_NOMEM, "out of memory");
    if (s) {
        api_search_free(a);
        return s;
    }
    scorer sc;
    sc.sn = &a->sn;
    sc.calib = a->rest;
    sc.eval = a->eval;
    ib_sn_eval_cfg_default(&sc.cfg);
    sc.cfg.res = res;
    sc.cfg.workers = o->workers;
    sc.cfg.calib_batches = o->calib_batches;
    sc.cfg.calib_seed = o->seed;   // the same calibration images for every subnet
    sc.cfg.ctx = a->ctx;

    c.space = &a->sn.space;
    c.classes = a->sn.base.classes;
    c.res = o->latency_res > 0 ? o->latency_res : res;
    c.population = o->population;
    c.sample = o->sample;
    c.generations = o->generations;
    c.batch = o->batch;
    c.tunas_beta = o->tunas_beta;
    c.seed = o->seed;
    sc.by_loss = !strcmp(metric, "loss");
    sc.task = a->task;
    sc.metric = task_metric < 0 ? 0 : task_metric;
    c.score = score_path;
    c.user = &sc;
    int whole = o->latency_of && !strcmp(o->latency_of, "backbone");
    if (a->task && a->task->lut_task && !whole) c.lut_task = task_lut, c.lut_task_user = a->task;   // the task's network
    a->whole = whole;
    a->threads = ib_get_threads();
    if ((s = predict_refs(&c))) {
        api_search_free(a);
        return s;
    }
    c.verify = o->verify;
    c.verify_slack = o->verify_slack;
    c.time_arch = time_arch;
    c.time_user = a;
    if (o->verify > 0) timed_targets(a, &c, o->progress && ib_dist_rank() == 0);
    char task_label[64];
    if (a->task) snprintf(task_label, sizeof task_label, "%s on the held-out training images", task_metrics[tm].name[sc.metric]);
    c.score_label = a->task      ? task_label
                    : sc.by_loss ? "minus the cross-entropy on the held-out training images"
                                 : "top-1 on the held-out training images";
    c.out = o->out;
    c.resume = o->resume;
    c.progress = o->progress && ib_dist_rank() == 0;   // under mpirun rank 0 alone reports
    c.max_generations = o->max_generations;
    c.handle_sigint = 1;
    if (c.progress)
        fprintf(stderr, "search: %s, %lld held-out images scored (of %lld), %lld for BN recalibration, %dx%d; latency at %dx%d\n",
                o->supernet, (long long)ib_dataset_size(a->eval), (long long)ib_dataset_size(a->held),
                (long long)ib_dataset_size(a->rest), res, res, c.res, c.res);
    snprintf(r->score_name, sizeof r->score_name, "%s", a->task ? task_metrics[tm].name[sc.metric] : sc.by_loss ? "-loss" : "top-1");
    ib_search_result res_;
    s = ib_search_run(&c, &res_);
    r->generations_done = res_.generations_done;
    r->subnets_scored = res_.scored;
    r->finished = res_.finished;
    r->interrupted = res_.interrupted;
    r->wall_s = res_.wall_s;
    r->n_results = res_.n_picks < IB_SEARCH_MAX_RESULTS ? res_.n_picks : IB_SEARCH_MAX_RESULTS;
    for (int i = 0; i < r->n_results; i++) {
        const ib_search_pick *p = &res_.picks[i];
        ib_search_arch *q = &r->results[i];
        snprintf(q->target, sizeof q->target, "%s", c.targets[p->target].name);
        q->budget_ms = p->budget_ms;
        q->found = p->found;
        q->score = p->score;
        q->ms = p->ms;
        q->macs = p->macs;
        memcpy(q->arch_file, p->arch_file, sizeof q->arch_file);
        const char *of = c.targets[p->target].budget_label[p->budget];   // the budget's network, when it was one
        if (of) snprintf(q->budget_of, sizeof q->budget_of, "%s", of);
        q->verified = p->verified;
        q->measured_ms = p->measured_ms;
        q->budget_measured_ms = p->budget_measured_ms;
    }
    api_search_free(a);
    return s;
}
