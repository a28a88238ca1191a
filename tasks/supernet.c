// Supernets for classification: training over sampled paths (sandwich rule with in-place distillation,
// or uniform single paths) and scoring a path (BN recalibration, then top-1 / top-5).
//
// The loop is the classification loop's (tasks/classify.c) with a supernet in place of the network: the
// same data pipeline, optimiser, schedule, CSV log, checkpoint every epoch, Ctrl-C and exact resume. A
// step zeroes the gradients once, runs each sampled path forward and backward (its gradients adding up
// in the shared weights), then takes one optimiser step. The paths of step t are drawn from a stream
// seeded by (seed, t), so a resumed run samples what an uninterrupted one would.
#include "tasks/tasks.h"
#include "tasks/detect.h"
#include "tasks/segment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ib_sn_eval_cfg_default(ib_sn_eval_cfg *c) {
    memset(c, 0, sizeof *c);
    c->batch = 100;
    c->workers = 2;
    c->calib_batches = 20;
    c->calib_batch = 64;
}

// The calibration of a path scored with cfg, passes run in `run`.
static void sn_recal_cfg(const ib_supernet *sn, const ib_sn_eval_cfg *cfg, ib_ctx *run, ib_recal_cfg *rc) {
    ib_recal_cfg_default(rc, cfg->res > 0 ? cfg->res : sn->space.input);
    rc->batches = cfg->calib_batches;
    rc->batch = cfg->calib_batch;
    rc->seed = cfg->calib_seed;
    rc->workers = cfg->workers;
    rc->ctx = run;
}

ib_status ib_supernet_eval_classify(ib_supernet *sn, const int *choice, ib_dataset *calib, ib_dataset *eval,
                                    const ib_sn_eval_cfg *cfg, ib_cls_metrics *m) {
    if (m) memset(m, 0, sizeof *m);
    int res = cfg->res > 0 ? cfg->res : sn->space.input;
    ib_ctx *ctx = cfg->ctx ? cfg->ctx : ib_ctx_new();   // holds the path
    ib_ctx *run = ib_ctx_new();                         // the passes over the data
    ib_ctx_reset(ctx);
    ctx->recording = 0;
    ctx->training = 0;
    ib_net path;
    ib_supernet_path(ctx, sn, choice, &path);
    ib_recal_cfg rc;
    sn_recal_cfg(sn, cfg, run, &rc);
    ib_status s = ib_recalibrate_bn(&path, calib, &rc);
    if (!s && eval) {
        ib_eval_cfg ec;
        ib_eval_cfg_default(&ec);
        ec.res = res;
        ec.batch = cfg->batch;
        ec.workers = cfg->workers;
        ec.progress = cfg->progress;
        ec.ctx = run;
        s = ib_eval_classify(&path, eval, &ec, m);
    }
    ib_ctx_free(run);
    if (cfg->ctx) ib_ctx_reset(ctx);
    else ib_ctx_free(ctx);
    return s;
}

ib_status ib_supernet_eval_task(ib_supernet *sn, ib_sn_task *t, const int *choice, ib_dataset *calib, ib_dataset *eval,
                                const ib_sn_eval_cfg *cfg, double m[IB_SN_METRICS]) {
    for (int k = 0; k < IB_SN_METRICS; k++) m[k] = -1;
    ib_status s = ib_supernet_eval_classify(sn, choice, calib, NULL, cfg, NULL);   // the path's BN recalibration
    if (s) return s;
    ib_sn_eval_cfg ec = *cfg;
    ec.res = cfg->res > 0 ? cfg->res : sn->space.input;
    ib_ctx *ctx = ib_ctx_new(), *run = ib_ctx_new();
    ctx->recording = 0;
    ctx->training = 0;
    ib_net path;
    ib_supernet_path(ctx, sn, choice, &path);   // its BN views hold what the recalibration wrote
    ib_recal_cfg rc;
    sn_recal_cfg(sn, cfg, run, &rc);
    s = t->recalibrate(t, &path, calib, &rc);   // then the shared head's, on this path's features
    if (!s && eval) s = t->evaluate(t, &path, eval, &ec, m);
    ib_ctx_free(run);
    ib_ctx_free(ctx);
    return s;
}

void ib_sn_head_step(ib_sn_task *t, ib_optim *opt, float lr, float clip) {
    if (clip > 0) ib_clip_grad_norm(t->head, clip);
    ib_optim_step(opt, lr);
}

// settings is taken (freed here); NULL means it could not be made.
ib_status ib_sn_head_save(ib_sn_task *t, ib_h5 *f, const ib_optim *opt, char *settings) {
    ib_status s = ib_params_write(f, t->head);
    if (!s) s = ib_h5_set_attr_str(f, "/", "task", t->name);
    if (!s) s = settings ? ib_h5_set_attr_str(f, "/", t->name, settings) : ib_fail(IB_ERR_NOMEM, "out of memory");
    free(settings);
    if (!s && opt) s = ib_optim_save(opt, f, "train/optim_head");
    return s;
}

ib_status ib_sn_recalibrate_head(ib_net *path, const ib_recal_pass *head, ib_dataset *calib, const ib_recal_cfg *rc) {
    // Momentum 0 leaves a running statistic exactly as it was ((1 - 0) r + 0 m, in double), while the
    // path still normalises by batch statistics in training mode, as it did when it was recalibrated.
    ib_net_set_bn_momentum(path, 0.0f);
    ib_status s = ib_recalibrate_pass(head, calib, rc);
    ib_net_set_bn_momentum(path, 0.1f);
    return s;
}

ib_status ib_sn_task_open(ib_sn_task **t, const ib_supernet *sn, const char *path) {
    *t = NULL;
    ib_h5 *f;
    ib_status s = ib_h5_open(&f, path);
    if (s) return s;
    char *task = NULL;
    int has = !ib_h5_attr_str(f, "/", "task", &task);
    ib_h5_close(f);
    if (!has || !strcmp(task, "classify")) {
        free(task);
        return IB_OK;
    }
    if (!strcmp(task, "detect")) {   // the head's settings come from the file (attach)
        ib_ssd_cfg ssd;
        ib_ssd_cfg_default(&ssd, 0);
        s = ib_sn_task_detect(t, &ssd);
    } else if (!strcmp(task, "segment")) {
        ib_seg_head_cfg hc;
        ib_seg_head_cfg_default(&hc);
        s = ib_sn_task_segment(t, &hc, NULL, NULL);
    } else s = ib_fail(IB_ERR_FORMAT, "%s: a supernet of task '%s', which this build does not know", path, task);
    free(task);
    if (s) return s;
    if ((s = (*t)->attach(*t, sn, NULL, sn->base.classes, path))) {
        (*t)->free(*t);
        *t = NULL;
    }
    return s;
}

ib_status ib_supernet_calib_data(const ib_supernet *sn, ib_sn_task *t, ib_dataset **base, ib_dataset **calib) {
    *base = *calib = NULL;
    if (!sn->train_data) return IB_OK;
    ib_status s = t ? t->open(t, base, sn->train_data, IB_DS_AUTO, "train")
                    : ib_open_labelled(base, sn->train_data, IB_DS_AUTO, "train");
    if (s) return ib_fail(s, "the supernet's training data (for BN recalibration; pass --calib): %s", ib_errmsg());
    if (sn->holdout <= 0) {
        *calib = *base;
        return IB_OK;
    }
    s = ib_dataset_split(calib, *base, sn->holdout, 1, sn->split_seed);
    if (s) {
        ib_dataset_close(*base);
        *base = NULL;
    }
    return s;
}

// ---------------------------------------------------------------------------------------------
// Training

const char *ib_sn_sampling_name(int sampling) {
    return sampling == IB_SN_SANDWICH ? "sandwich" : sampling == IB_SN_UNIFORM ? "uniform" : sampling == IB_SN_FAIR ? "fair" : "?";
}

const char *ib_sn_path_grads_name(int rule) { return rule == IB_SN_MEAN ? "mean" : rule == IB_SN_SUM ? "sum" : "?"; }

void ib_sn_train_cfg_default(ib_sn_train_cfg *c) {
    memset(c, 0, sizeof *c);
    ib_train_cfg_default(&c->base);
    c->base.arch = NULL;
    c->sampling = IB_SN_FAIR;
    c->n_random = 2;
    c->path_grads = -1;
    c->kd = 1;
    c->holdout = 0.1;
    c->calib_batches = 10;
}

// Top-1 of the largest and the smallest path after recalibration, in a context of its own.
static ib_status eval_extremes(ib_supernet *sn, ib_dataset *calib, ib_dataset *val, const ib_sn_train_cfg *cfg,
                               int *choice, double top1[2], double *top5_largest, double *loss_largest) {
    // with a task: top1 its score, top5 its second metric
    ib_sn_eval_cfg ec;
    ib_sn_eval_cfg_default(&ec);
    ec.res = cfg->base.res;
    ec.workers = cfg->base.workers;
    ec.calib_batches = cfg->calib_batches;
    ec.calib_batch = cfg->base.batch;
    ec.calib_seed = cfg->base.seed;
    for (int k = 0; k < 2; k++) {
        ib_space_sample(&sn->space, k == 0 ? IB_SAMPLE_LARGEST : IB_SAMPLE_SMALLEST, NULL, choice);
        if (cfg->task) {
            double m[IB_SN_METRICS];
            ib_status s = ib_supernet_eval_task(sn, cfg->task, choice, calib, val, &ec, m);
            if (s) return s;
            top1[k] = m[0];
            if (k == 0) *top5_largest = m[1], *loss_largest = -1;
            continue;
        }
        ib_cls_metrics m;
        ib_status s = ib_supernet_eval_classify(sn, choice, calib, val, &ec, &m);
        if (s) return s;
        top1[k] = m.top1;
        if (k == 0) *top5_largest = m.top5, *loss_largest = m.loss;
        ib_cls_metrics_free(&m);
    }
    return IB_OK;
}

// What a supernet checkpoint carries besides the weights: the training state, and a task's head.
typedef struct {
    ib_train_state *ts;
    ib_sn_task *task;
} sn_extra;

static ib_status sn_save_extra(ib_h5 *f, void *user) {
    sn_extra *x = user;
    ib_status s = ib_train_state_save(f, x->ts);
    if (!s && x->task) s = x->task->save(x->task, f);
    return s;
}

// --init: the weights (and BN statistics) of another supernet of the same space, tensor by tensor where name and
// shape match, over the fresh initialisation: a classification supernet's backbone starting a detection or
// segmentation one (its classifier, of other classes, does not match and starts fresh), as ibnas train --init
// starts a detector from a classifier.
static ib_status init_from(ib_supernet *sn, const char *path, int progress) {
    ib_supernet src;
    ib_status s = ib_supernet_load(&src, path);
    if (s) return s;
    if (strcmp(src.space.name, sn->space.name) || src.space.n_layers != sn->space.n_layers)
        s = ib_fail(IB_ERR_ARG, "%s: a supernet of space %s (%d layers), not %s (%d layers)", path, src.space.name,
                    src.space.n_layers, sn->space.name, sn->space.n_layers);
    int copied = s ? 0 : ib_params_copy_matching(&sn->ps, &src.ps);
    if (!s && !copied) s = ib_fail(IB_ERR_ARG, "%s: no tensor matches the supernet being trained", path);
    if (!s && progress)   // parameters and BN statistics (recalibrated before any score anyway)
        fprintf(stderr, "supernet train: %d of %d tensors from %s%s\n", copied, sn->ps.n, path,
                copied < sn->ps.n ? ", the rest initialised" : "");
    ib_supernet_free(&src);
    return s;
}

ib_status ib_train_supernet_classify(const ib_sn_train_cfg *cfg, ib_sn_train_result *out) {
    const ib_train_cfg *c = &cfg->base;
    memset(out, 0, sizeof *out);
    ib_train_result *res = &out->base;
    res->val_top1 = res->val_top5 = out->smallest_top1 = -1;
    ib_set_threads(c->threads);
    ib_dataset *data = NULL, *train = NULL, *val = NULL;
    ib_loader *loader = NULL;
    ib_ctx *ctx = NULL;
    FILE *log = NULL;
    ib_supernet sn;
    memset(&sn, 0, sizeof sn);
    ib_train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.seed = c->seed;
    ts.cfg = c;
    ib_sn_task *task = cfg->task;
    sn_extra saved = {&ts, task};
    int *choice = NULL;
    float *teacher = NULL;
    uint8_t *active = NULL, *elem = NULL, *uses = NULL;   // the weights a step's paths ran (ib_supernet_active_*), how often
    struct sigaction old_sa;
    int handler = 0;
    ib_status s;
    ib_dp dp;   // data parallelism under mpirun: paths are drawn from (seed, step), the same on every rank

    if (c->epochs < 1 || c->batch < 2 || c->res < 8 || !(c->lr > 0))
        return ib_fail(IB_ERR_ARG, "epochs, lr must be positive, batch at least 2 and res at least 8");
    if ((s = ib_dp_begin(&dp, c))) return s;
    const int progress = c->progress && dp.rank == 0;
    if ((s = ib_train_out_check(c->out, "supernet"))) return s;
    if (!c->resume && !cfg->space) return ib_fail(IB_ERR_ARG, "a search space is needed (--space)");
    if (!(cfg->holdout >= 0 && cfg->holdout < 1)) return ib_fail(IB_ERR_ARG, "holdout %g must be in [0, 1)", cfg->holdout);
    if (cfg->n_random < 0 || !(cfg->kd >= 0)) return ib_fail(IB_ERR_ARG, "paths and kd must not be negative");
    if ((s = ib_optim_cfg_check(&c->optim))) return s;
    if ((s = task ? task->open(task, &data, c->data, c->data_format, "train")
                  : ib_open_labelled(&data, c->data, c->data_format, "train")))
        goto done;
    if (c->val && (s = task ? task->open(task, &val, c->val, c->data_format, "val")
                            : ib_open_labelled(&val, c->val, c->data_format, "val")))
        goto done;
    int classes = c->classes > 0 ? c->classes : ib_dataset_classes(data);
    if (classes < (task ? 1 : 2) || classes < ib_dataset_classes(data)) {   // a detector may have one class
        s = ib_fail(IB_ERR_ARG, "%s: %d classes in the data, %d asked for", c->data, ib_dataset_classes(data), classes);
        goto done;
    }

    if (c->resume) {
        if ((s = ib_supernet_load(&sn, c->resume))) goto done;
        if (sn.file_version < IB_SUPERNET_VERSION) {   // its optimizer state is in the old layout
            s = ib_fail(IB_ERR_FORMAT, "%s: written by an older ibnas (supernet version %d, 5x5 kernels in the plain "
                        "layout): resume it with that version, or start a new run from its weights with --init",
                        c->resume, sn.file_version);
            goto done;
        }
        if (sn.base.classes != classes) {
            s = ib_fail(IB_ERR_ARG, "%s: the supernet has %d classes, the data %d", c->resume, sn.base.classes, classes);
            goto done;
        }
        if (fabs(sn.holdout - cfg->holdout) > 1e-12) {
            s = ib_fail(IB_ERR_ARG, "%s: was trained with --holdout %g; resume with the same", c->resume, sn.holdout);
            goto done;
        }
        if (sn.sampling[0] && strcmp(sn.sampling, ib_sn_sampling_name(cfg->sampling))) {
            s = ib_fail(IB_ERR_ARG, "%s: was trained with --sampling %s, not %s; resume with the same", c->resume,
                        sn.sampling, ib_sn_sampling_name(cfg->sampling));
            goto done;
        }
        // files from before path_grads was recorded were trained with the sum
        const char *was = sn.path_grads[0] ? sn.path_grads : cfg->sampling == IB_SN_FAIR ? "sum" : "";
        if (cfg->path_grads >= 0 && strcmp(was, ib_sn_path_grads_name(cfg->path_grads))) {
            s = ib_fail(IB_ERR_ARG, "%s: was trained with --path-grads %s, not %s; resume with the same", c->resume, was,
                        ib_sn_path_grads_name(cfg->path_grads));
            goto done;
        }
        if (!sn.path_grads[0]) snprintf(sn.path_grads, sizeof sn.path_grads, "%s", was);
    } else {
        ib_space sp;
        if ((s = ib_space_load(&sp, cfg->space))) goto done;
        s = ib_supernet_build(&sn, &sp, classes);
        ib_space_free(&sp);
        if (s) goto done;
        ib_supernet_init_weights(&sn, c->seed);
        if (c->init && (s = init_from(&sn, c->init, progress))) goto done;
        sn.holdout = cfg->holdout;
        sn.split_seed = c->seed;
        snprintf(sn.sampling, sizeof sn.sampling, "%s", ib_sn_sampling_name(cfg->sampling));
        if (cfg->sampling == IB_SN_FAIR)
            snprintf(sn.path_grads, sizeof sn.path_grads, "%s", ib_sn_path_grads_name(cfg->path_grads >= 0 ? cfg->path_grads : IB_SN_SUM));
    }
    if (ib_space_head_choices(&sn.space) && (!task || strcmp(task->name, "segment"))) {
        s = ib_fail(IB_ERR_ARG, "%s: space %s has seg_head choices (a searched segmentation head): train it with --task "
                    "segment --head bifpn", c->resume ? c->resume : cfg->space, sn.space.name);
        goto done;
    }
    free(sn.train_data);
    if (!(sn.train_data = strdup(c->data))) {
        s = ib_fail(IB_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (cfg->holdout > 0) {
        if ((s = ib_dataset_split(&train, data, cfg->holdout, 1, sn.split_seed))) goto done;
    } else train = data;

    ts.dropout_rng = &sn.dropout_rng;
    if (!(ts.opt = ib_optim_new(&c->optim, &sn.ps))) {
        s = ib_fail(IB_ERR_ARG, "%s", ib_errmsg());
        goto done;
    }
    if (c->resume && (s = ib_train_state_resume(c->resume, &ts))) goto done;
    ib_dp_bcast(&dp, &sn.ps, ts.opt, NULL);
    if (task && (s = task->attach(task, &sn, c, classes, c->resume))) goto done;
    if (task) ib_dp_bcast(&dp, task->head, NULL, NULL);   // the head's optimizer state comes from the same file
    if ((s = ib_train_room_check(c->out, ib_train_ckpt_bytes(&sn.ps, ts.opt, ts.ema)))) goto done;

    long spe;
    ib_schedule sch;
    if ((s = task ? task->loader(task, c, train, &loader, &spe, &sch) : ib_train_loader_open(c, train, &loader, &spe, &sch)))
        goto done;

    char header[256];
    if (task) {   // the largest path's first two metrics, the smallest's first
        char m[3][32] = {"", "", ""};
        sscanf(task->metrics, "%31[^,],%31[^,],%31s", m[0], m[1], m[2]);
        snprintf(header, sizeof header, "epoch,step,lr,train_loss,largest_%s,largest_%s,smallest_%s,epoch_s,img_per_s", m[0],
                 m[1], m[0]);
    } else snprintf(header, sizeof header, "epoch,step,lr,train_loss,largest_top1,largest_top5,smallest_top1,epoch_s,img_per_s");
    if (dp.rank == 0 && (s = ib_train_log_open(c, ts.epoch, header, &log))) goto done;

    int L = ib_space_genes(&sn.space);   // a choice vector's entries
    int n_paths = cfg->sampling == IB_SN_SANDWICH ? 2 + cfg->n_random
                  : cfg->sampling == IB_SN_FAIR   ? ib_space_fair_paths(&sn.space)
                                                  : 1;
    choice = malloc(sizeof(int) * (size_t)(L ? L : 1) * (size_t)n_paths);
    teacher = malloc(sizeof(float) * (size_t)c->batch * (size_t)classes);
    active = calloc((size_t)(sn.ps.n ? sn.ps.n : 1), 1);
    elem = calloc((size_t)(sn.ps.numel_params ? sn.ps.numel_params : 1), 1);
    int mean = n_paths > 1 && !strcmp(sn.path_grads, "mean");   // --path-grads mean: per weight, over the paths that ran it
    if (mean) uses = calloc((size_t)(sn.ps.numel_params ? sn.ps.numel_params : 1), 1);
    if (!choice || !teacher || !active || !elem || (mean && !uses)) {
        s = ib_fail(IB_ERR_NOMEM, "out of memory");
        goto done;
    }
    ib_sigint_catch(&old_sa);
    handler = 1;
    ctx = ib_ctx_new();
    double t_run = ib_time_s();
    long steps_run = 0;
    if (progress) {
        char count[128];
        double lg;
        ib_space_count(&sn.space, count, sizeof count, &lg);
        char ramp[96] = "";
        if (cfg->op_ramp > 0) snprintf(ramp, sizeof ramp, ", op types chained, the chain loosening over %g epochs", cfg->op_ramp);
        fprintf(stderr, "supernet: space %s (%d layers, %s subnets), %lld parameters, %lld training images (%g held out), "
                "%d classes, %ld steps an epoch, %d path%s a step (%s%s)%s\n", sn.space.name, sn.space.n_layers, count,
                (long long)sn.ps.numel_params, (long long)ib_dataset_size(train), cfg->holdout, classes, spe, n_paths,
                n_paths > 1 ? "s" : "", ib_sn_sampling_name(cfg->sampling), ramp, c->resume ? " (resumed)" : "");
        if (dp.size > 1)
            fprintf(stderr, "supernet: %d ranks, %d images each of every batch of %d%s\n", dp.size, c->batch / dp.size,
                    c->batch, dp.sync_bn ? ", batchnorm synchronised" : "");
    }
    for (int64_t e = ts.epoch; e < c->epochs; e++) {
        ts.epoch = e;
        ib_loader_start_epoch(loader, e);
        const ib_batch *b;
        for (int64_t k = 0; k < ts.batch_in_epoch; k++)
            if ((s = ib_loader_next(loader, &b)) || !b) goto done;
        double t_epoch = ib_time_s();
        int64_t images_run = 0, batch0 = ts.batch_in_epoch;
        while ((s = ib_loader_next(loader, &b)) == IB_OK && b) {
            float lr = ib_lr_at(&sch, ts.step);
            ib_rng pr;
            ib_rng_seed(&pr, c->seed, 0x5e4c0000ull + (uint64_t)ts.step);
            ib_tensor x;
            ib_batch_tensor(b, &x);
            // Only the weights a step's paths ran get a gradient, and the step zeroes those as it updates them, so
            // only the first step clears the whole supernet's gradient block (164 MB for mobiledets), not every step
            // for paths a tenth of its size. Every rank draws the same paths.
            if (steps_run == 0) ib_params_zero_grad(&sn.ps);
            if (task) task->zero_grad(task);
            ib_supernet_active_clear(&sn, active, elem);
            double step_loss = 0, weight = 0;   // a task's loss weight: the batch's, the same for every path
            if (cfg->sampling == IB_SN_FAIR) ib_space_sample_fair(&sn.space, &pr, n_paths, choice);
            for (int p = 0; p < n_paths; p++) {
                int *path_choice = choice;
                if (cfg->sampling == IB_SN_FAIR) path_choice = choice + (size_t)p * (size_t)L;
                else {
                    int sw = cfg->sampling == IB_SN_SANDWICH;
                    ib_sample_kind kind = !sw ? IB_SAMPLE_RANDOM : p == 0 ? IB_SAMPLE_LARGEST :
                                          p == 1 ? IB_SAMPLE_SMALLEST : IB_SAMPLE_RANDOM;
                    if (kind == IB_SAMPLE_RANDOM && cfg->op_ramp > 0) {
                        double q = (double)ts.step / ((double)cfg->op_ramp * (double)spe);
                        ib_space_sample_chained(&sn.space, &pr, q < 1 ? (float)q : 1.0f, choice);
                    } else
                        ib_space_sample(&sn.space, kind, &pr, choice);
                }
                ib_ctx_reset(ctx);
                ctx->training = 1;
                ctx->recording = 1;
                ctx->release_grads = 1;
                ctx->sync_bn = dp.sync_bn;
                ib_net path;
                ib_supernet_path(ctx, &sn, path_choice, &path);
                ib_net ran = task && task->ran ? task->ran(task, &path) : path;   // what the loss runs of it
                ib_supernet_active_add(&sn, &ran, active, elem);
                if (mean) ib_supernet_uses_add(&sn, &ran, uses);
                if (task) ib_supernet_active_top(&sn, ran.has_head, active);
                ib_tensor *loss;
                float w = 1;
                if (task) {   // the task's head on the path; every path from the labels (sandwich: no distillation)
                    if ((s = task->loss(task, ctx, &path, b, &loss, &weight))) goto done;
                    step_loss += loss->data[0] / n_paths;
                    if ((s = ib_train_loss_check(&ts, loss->data[0]))) goto done;
                    w = (float)ib_dp_seed(&dp, weight, task->min_weight);   // several ranks: the gradient of its sum
                    ib_backward(ctx, loss, &w);
                    continue;
                }
                ib_tensor *z = ib_net_forward(ctx, &path, &x);
                sn.dropout_rng = path.dropout_rng;
                if (cfg->sampling == IB_SN_FAIR) {   // every path from the labels; the log shows their mean
                    loss = ib_cross_entropy(ctx, z, b->labels, c->label_smoothing, -1);
                    step_loss += loss->data[0] / n_paths;
                } else if (p == 0) {   // the largest (sandwich) or the one path (uniform): the labels
                    loss = ib_cross_entropy(ctx, z, b->labels, c->label_smoothing, -1);
                    step_loss = loss->data[0];
                    if (cfg->sampling == IB_SN_SANDWICH) memcpy(teacher, z->data, sizeof(float) * (size_t)ib_numel(z));
                } else {        // in-place distillation from the largest path's soft targets
                    ib_tensor *t = ib_tensor_new(ctx, 2, z->shape);
                    memcpy(t->data, teacher, sizeof(float) * (size_t)ib_numel(z));
                    loss = ib_kl_div_softmax(ctx, z, t);
                    w = cfg->kd;
                }
                if ((s = ib_train_loss_check(&ts, loss->data[0]))) goto done;
                ib_backward(ctx, loss, &w);
            }
            ctx->sync_bn = 0;
            double loss_sum = step_loss * b->n;
            int64_t n_img = b->n;
            int stop = ib_sigint_seen();
            if ((s = ib_dp_step(&dp, &sn.ps, task ? task->head : NULL, weight, task ? task->min_weight : 0, &loss_sum,
                                &n_img, &stop)))
                goto done;
            if (mean) {   // every path ran the task's head
                ib_supernet_grad_mean(&sn, n_paths, active, uses);
                if (task)
                    for (int64_t j = 0; j < task->head->numel_params; j++) task->head->grad[j] /= (float)n_paths;
            }
            if (c->clip > 0) ib_clip_grad_norm(&sn.ps, c->clip);
            ib_optim_step_active(ts.opt, lr, active, elem, 1);
            if (task) task->step(task, lr, c->clip);
            ts.epoch_loss += loss_sum;
            ts.epoch_images += n_img;
            ts.step++, ts.batch_in_epoch++, steps_run++;
            images_run += n_img;
            res->steps = ts.step;
            if (progress) {
                char extra[128], what[32];
                snprintf(extra, sizeof extra, "loss %.4f lr %.4f %.0f img/s", ts.epoch_loss / (double)ts.epoch_images, lr,
                         (double)images_run / (ib_time_s() - t_epoch));
                snprintf(what, sizeof what, "epoch %lld/%d", (long long)e + 1, c->epochs);
                ib_progress_line(what, ts.batch_in_epoch, batch0, spe, t_epoch - 1e-9, extra);
            }
            if (stop || (c->max_steps > 0 && steps_run >= c->max_steps)) {
                if (progress) fputc('\n', stderr);
                res->wall_s = ib_time_s() - t_run;
                if ((s = ib_train_saved(&ts, ib_dp_saved(&dp, dp.rank ? IB_OK : ib_supernet_save(&sn, c->out, sn_save_extra,
                                                                                                  &saved)))))
                    goto done;
                int intr = stop;
                res->interrupted = intr;
                if (progress || (intr && dp.rank == 0))
                    fprintf(stderr, "supernet: %s at epoch %lld, batch %lld; saved %s, which resumes from here\n",
                            intr ? "interrupted" : "stopped", (long long)e + 1, (long long)ts.batch_in_epoch, c->out);
                s = intr ? ib_fail(IB_ERR_INTERRUPTED, "interrupted; state saved in %s", c->out) : IB_OK;
                goto done;
            }
        }
        if (s) goto done;
        if (progress) fputc('\n', stderr);
        double epoch_s = ib_time_s() - t_epoch;
        res->last_loss = ts.epoch_loss / (double)(ts.epoch_images ? ts.epoch_images : 1);
        res->img_per_s = (double)images_run / epoch_s;
        double top1[2] = {-1, -1}, top5 = -1, vloss = -1;
        if (val) {   // every rank evaluates (the same numbers): the recalibrated buffers stay the same everywhere
            if ((s = eval_extremes(&sn, train, val, cfg, choice, top1, &top5, &vloss))) goto done;
            res->val_top1 = top1[0], res->val_top5 = top5, out->smallest_top1 = top1[1];
        }
        if (log) fprintf(log, "%lld,%ld,%.6g,%.6f,%.6f,%.6f,%.6f,%.2f,%.1f\n", (long long)e + 1, ts.step,
                         ib_lr_at(&sch, ts.step), res->last_loss, top1[0], top5, top1[1], epoch_s, res->img_per_s);
        if (log && (s = ib_train_log_flush(c, log))) goto done;
        if (progress) {
            fprintf(stderr, "epoch %lld: loss %.4f", (long long)e + 1, res->last_loss);
            if (val) fprintf(stderr, " val %s largest %.4f smallest %.4f", task ? "score" : "top1", top1[0], top1[1]);
            fputc('\n', stderr);
        }
        ts.epoch = e + 1;
        ts.batch_in_epoch = 0;
        ts.epoch_loss = 0;
        ts.epoch_images = 0;
        res->epochs_done = (int)(e + 1);
        if ((s = ib_train_saved(&ts, ib_dp_saved(&dp, dp.rank ? IB_OK : ib_supernet_save(&sn, c->out, sn_save_extra,
                                                                                          &saved)))))
            goto done;
        if (ib_sigint_seen() && dp.size < 2) {   // several ranks: the next step's allreduce carries it to all
            res->interrupted = 1;
            s = ib_fail(IB_ERR_INTERRUPTED, "interrupted; state saved in %s", c->out);
            goto done;
        }
    }
    res->wall_s = ib_time_s() - t_run;
    s = IB_OK;
done:
    if (handler) sigaction(SIGINT, &old_sa, NULL);
    if (log) fclose(log);
    ib_dp_end(&dp);
    free(choice);
    free(teacher);
    free(active);
    free(elem);
    free(uses);
    ib_ctx_free(ctx);
    ib_loader_close(loader);
    ib_optim_free(ts.opt);
    if (sn.layers) ib_supernet_free(&sn);
    if (train != data) ib_dataset_close(train);
    ib_dataset_close(data);
    ib_dataset_close(val);
    return s;
}
