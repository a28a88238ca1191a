// Detection: COCO evaluation of a detector on a dataset with boxes, and the training loop (the
// classification loop's progress, CSV log, per-epoch atomic checkpoint, Ctrl-C and exact resume).
//
// The backbone and the head are two parameter sets with an optimizer each; the checkpoint carries both
// (/train/optim for the backbone's, /train/optim_head for the head's), so a resumed run is exact.
#include "tasks/detect.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ib_det_eval_cfg_default(ib_det_eval_cfg *c) {
    ib_eval_cfg e;
    ib_eval_cfg_default(&e);
    memset(c, 0, sizeof *c);
    c->res = 320;
    c->batch = 32;
    c->workers = 2;
    memcpy(c->mean, e.mean, sizeof c->mean);
    memcpy(c->std, e.std, sizeof c->std);
}

typedef struct {
    ib_coco_gt *gt;
    int64_t n_gt, cap_gt;
    ib_coco_det *dt;
    int64_t n_dt, cap_dt;
    int64_t *img;
    int64_t n_img, cap_img;
} coco_acc;

static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 1;
    int64_t c = *cap ? *cap * 2 : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return 0;
    *p = q, *cap = c;
    return 1;
}

// The targets of a batch and the loss: every image's boxes (crowd left out) matched to the anchors, then the
// multibox loss (ssd's or focal), whose sum is divided by *npos (the matched anchors, at least 1). Buffers grow
// as needed and are kept across steps.
typedef struct {
    int32_t *labels, *gtl;
    float *loc_t, *gtb;
    int64_t cap_t, cap_g;
} det_bufs;

static void det_bufs_free(det_bufs *u) { free(u->labels), free(u->loc_t), free(u->gtb), free(u->gtl); }

// The loss of outputs loc and conf against the batch's boxes.
static ib_status det_loss_of(ib_ctx *ctx, const ib_detector *d, det_bufs *u, const ib_batch *b, ib_tensor *loc,
                             ib_tensor *conf, ib_tensor **loss, int64_t *npos) {
    int A = d->n_anchors;
    int64_t ct = u->cap_t;
    if (!grow((void **)&u->labels, &u->cap_t, (int64_t)b->n * A, sizeof *u->labels) ||
        (u->cap_t != ct && !(u->loc_t = realloc(u->loc_t, sizeof(float) * 4 * (size_t)u->cap_t))))
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    *npos = 0;
    for (int i = 0; i < b->n; i++) {
        int64_t o = b->box_offsets[i], ng = b->box_offsets[i + 1] - o;
        int64_t cg = u->cap_g;
        if (!grow((void **)&u->gtl, &u->cap_g, ng + 1, sizeof *u->gtl) ||
            (u->cap_g != cg && !(u->gtb = realloc(u->gtb, sizeof(float) * 4 * (size_t)u->cap_g))))
            return ib_fail(IB_ERR_NOMEM, "out of memory");
        int n = 0;
        for (int64_t k = 0; k < ng; k++) {
            const ib_box *bx = &b->boxes[o + k];
            if (bx->iscrowd) continue;   // crowd regions are neither objects nor background to learn
            u->gtb[n * 4] = bx->x0 / (float)b->w, u->gtb[n * 4 + 1] = bx->y0 / (float)b->h;
            u->gtb[n * 4 + 2] = bx->x1 / (float)b->w, u->gtb[n * 4 + 3] = bx->y1 / (float)b->h;
            u->gtl[n++] = bx->label;
        }
        *npos += ib_ssd_match(&d->cfg, d->anchors, A, u->gtb, u->gtl, n, u->labels + (int64_t)i * A,
                              u->loc_t + (int64_t)i * A * 4);
    }
    *loss = d->cfg.focal ? ib_focal_loss(ctx, loc, conf, u->labels, u->loc_t, d->cfg.focal_alpha, d->cfg.focal_gamma)
                         : ib_ssd_loss(ctx, loc, conf, u->labels, u->loc_t, d->cfg.neg_ratio);
    return IB_OK;
}

static ib_status det_batch_loss(ib_ctx *ctx, ib_detector *d, det_bufs *u, const ib_batch *b, ib_tensor *x, ib_tensor **loss,
                                int64_t *npos) {
    ib_tensor *loc, *conf;
    ib_detector_forward(ctx, d, x, &loc, &conf);
    return det_loss_of(ctx, d, u, b, loc, conf, loss, npos);
}

static ib_status write_dets_json(const char *path, const ib_coco_det *dt, int64_t n) {
    char tmp[4200];
    ib_status s;
    FILE *f = ib_wfile_open(path, tmp, sizeof tmp, &s);
    if (!f) return s;
    fputc('[', f);
    for (int64_t i = 0; i < n; i++)
        fprintf(f, "%s{\"image_id\": %lld, \"category_id\": %lld, \"bbox\": [%.2f, %.2f, %.2f, %.2f], \"score\": %.8g}",
                i ? ",\n " : "", (long long)dt[i].image_id, (long long)dt[i].category_id, dt[i].bbox[0], dt[i].bbox[1],
                dt[i].bbox[2], dt[i].bbox[3], dt[i].score);
    fputs("]\n", f);
    return ib_wfile_commit(f, tmp, path);
}

ib_status ib_detector_eval(ib_detector *d, ib_dataset *ds, const ib_det_eval_cfg *cfg, double stats[IB_COCO_STATS],
                         int64_t *images) {
    if (!ds->has_boxes) return ib_fail(IB_ERR_FORMAT, "%s: has no boxes to evaluate a detector on", ib_dataset_path(ds));
    if (ib_dataset_classes(ds) > d->cfg.classes)
        return ib_fail(IB_ERR_ARG, "%s: %d classes, the detector predicts %d", ib_dataset_path(ds), ib_dataset_classes(ds),
                       d->cfg.classes);
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, cfg->res, cfg->res);
    lo.batch_size = cfg->batch;
    lo.shuffle = 0;
    lo.workers = cfg->workers;
    lo.want_boxes = 1;
    lo.want_masks = 0;
    lo.aug.crop = IB_CROP_NONE;
    memcpy(lo.aug.mean, cfg->mean, sizeof lo.aug.mean);
    memcpy(lo.aug.std, cfg->std, sizeof lo.aug.std);
    ib_loader *l;
    ib_status s = ib_loader_open(&l, ds, &lo);
    if (s) return s;
    ib_ctx *ctx = cfg->ctx ? cfg->ctx : ib_ctx_new();
    ctx->recording = 0;
    ctx->training = 0;
    coco_acc acc;
    memset(&acc, 0, sizeof acc);
    int md = d->cfg.max_dets;
    float *boxes = malloc(sizeof(float) * 4 * (size_t)md), *scores = malloc(sizeof(float) * (size_t)md);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)md);
    if (!boxes || !scores || !labels) s = ib_fail(IB_ERR_NOMEM, "out of memory");
    int64_t batches = ib_loader_batches(l), done = 0;
    double t0 = ib_time_s(), loss_sum = 0;
    int64_t loss_pos = 0;
    det_bufs bufs;
    memset(&bufs, 0, sizeof bufs);
    ib_loader_start_epoch(l, 0);
    const ib_batch *b;
    while (!s && (s = ib_loader_next(l, &b)) == IB_OK && b) {
        ib_ctx_reset(ctx);
        ib_tensor x, *loc, *conf;
        ib_batch_tensor(b, &x);
        ib_detector_forward(ctx, d, &x, &loc, &conf);
        if (cfg->loss) {   // the training loss on these images, weighted as training weighs ranks: by positives
            ib_tensor *lt;
            int64_t np = 0;
            if ((s = det_loss_of(ctx, d, &bufs, b, loc, conf, &lt, &np))) break;
            int64_t w = np > 0 ? np : 1;   // the batch's loss is its sum over max(positives, 1)
            loss_sum += (double)lt->data[0] * (double)w;
            loss_pos += w;
        }
        int A = d->n_anchors, K = d->cfg.classes + 1;
        for (int i = 0; i < b->n && !s; i++) {
            double sx = (double)b->src_w[i], sy = (double)b->src_h[i];
            int n = ib_ssd_postprocess(&d->cfg, d->anchors, A, loc->data + (int64_t)i * A * 4,
                                       conf->data + (int64_t)i * A * K, boxes, scores, labels);
            int64_t ng = b->box_offsets[i + 1] - b->box_offsets[i];
            if (!grow((void **)&acc.dt, &acc.cap_dt, acc.n_dt + n, sizeof *acc.dt) ||
                !grow((void **)&acc.gt, &acc.cap_gt, acc.n_gt + ng, sizeof *acc.gt) ||
                !grow((void **)&acc.img, &acc.cap_img, acc.n_img + 1, sizeof *acc.img)) {
                s = ib_fail(IB_ERR_NOMEM, "out of memory");
                break;
            }
            acc.img[acc.n_img++] = b->image_ids[i];
            for (int k = 0; k < n; k++) {
                ib_coco_det *o = &acc.dt[acc.n_dt++];
                o->image_id = b->image_ids[i];
                o->category_id = labels[k] < ib_dataset_classes(ds) ? ib_dataset_category_id(ds, labels[k]) : labels[k];
                double x0 = boxes[k * 4] * sx, y0 = boxes[k * 4 + 1] * sy;
                o->bbox[0] = x0, o->bbox[1] = y0;
                o->bbox[2] = boxes[k * 4 + 2] * sx - x0, o->bbox[3] = boxes[k * 4 + 3] * sy - y0;
                o->score = scores[k];
            }
            double gx = sx / b->w, gy = sy / b->h;   // output pixels -> the image's own
            for (int64_t k = b->box_offsets[i]; k < b->box_offsets[i + 1]; k++) {
                const ib_box *bx = &b->boxes[k];
                ib_coco_gt *o = &acc.gt[acc.n_gt];
                o->id = ++acc.n_gt;
                o->image_id = b->image_ids[i];
                o->category_id = ib_dataset_category_id(ds, bx->label);
                o->bbox[0] = bx->x0 * gx, o->bbox[1] = bx->y0 * gy;
                o->bbox[2] = (bx->x1 - bx->x0) * gx, o->bbox[3] = (bx->y1 - bx->y0) * gy;
                o->area = o->bbox[2] * o->bbox[3];
                o->iscrowd = bx->iscrowd;
            }
        }
        if (cfg->progress) ib_progress_line("eval", ++done, 0, batches, t0, "");
    }
    if (cfg->progress) fputc('\n', stderr);
    if (cfg->ctx) ib_ctx_reset(ctx);
    else ib_ctx_free(ctx);
    ib_loader_close(l);
    det_bufs_free(&bufs);
    if (cfg->loss) *cfg->loss = loss_pos > 0 ? loss_sum / (double)loss_pos : -1;
    if (!s) {
        int nc = d->cfg.classes;
        int64_t *cats = malloc(sizeof(int64_t) * (size_t)nc);
        if (!cats) s = ib_fail(IB_ERR_NOMEM, "out of memory");
        for (int c = 0; !s && c < nc; c++) cats[c] = c < ib_dataset_classes(ds) ? ib_dataset_category_id(ds, c) : c;
        if (!s) s = ib_coco_evaluate(acc.img, acc.n_img, cats, nc, acc.gt, acc.n_gt, acc.dt, acc.n_dt, stats);
        free(cats);
        if (!s && cfg->dets_out) s = write_dets_json(cfg->dets_out, acc.dt, acc.n_dt);
        if (images) *images = acc.n_img;
    }
    free(acc.gt), free(acc.dt), free(acc.img), free(boxes), free(scores), free(labels);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Training

typedef struct {
    ib_train_state *ts;
    ib_optim *opt_head;
} det_state;

static ib_status det_state_save(ib_h5 *f, void *user) {
    det_state *st = user;
    ib_status s = ib_train_state_save(f, st->ts);
    if (!s) s = ib_optim_save(st->opt_head, f, "train/optim_head");
    return s;
}

static ib_status open_boxes(ib_dataset **ds, const char *path, ib_ds_format fmt, const char *split) {
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = fmt;
    o.split = split;
    o.ignore_index = 255;
    ib_status s = ib_dataset_open(ds, path, &o);
    if (s) return s;
    if (!(*ds)->has_boxes) {
        s = ib_fail(IB_ERR_FORMAT, "%s: has no boxes to train a detector on (a pack from `ibnas synth` or `ibnas pack` "
                    "of COCO or YOLO data has them)", path);
        ib_dataset_close(*ds);
        *ds = NULL;
    }
    return s;
}

// The classification loop's loader and schedule (ib_train_loader_open_with: under mpirun this rank's share of
// every batch), with boxes: the whole image resized, a random horizontal flip (aug != none), SSD's random crop
// first (aug rrc).
static ib_status det_loader_open(const ib_train_cfg *cfg, ib_dataset *train, ib_loader **loader, long *spe_out,
                                 ib_schedule *schedule) {
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, cfg->res, cfg->res);
    lo.batch_size = cfg->batch;
    lo.shuffle = 1;
    lo.drop_last = 1;
    lo.workers = cfg->workers;
    lo.seed = cfg->seed;
    lo.want_boxes = 1;
    lo.want_masks = 0;
    lo.aug.crop = cfg->aug == IB_AUG_RRC ? IB_CROP_SSD : IB_CROP_NONE;
    lo.aug.hflip_p = cfg->aug == IB_AUG_NONE ? 0.0f : 0.5f;
    memcpy(lo.aug.mean, cfg->mean, sizeof lo.aug.mean);
    memcpy(lo.aug.std, cfg->std, sizeof lo.aug.std);
    return ib_train_loader_open_with(cfg, train, &lo, loader, spe_out, schedule);
}

// The detector to train: resumed, fine-tuned from a detection checkpoint, a backbone from a classification
// checkpoint (its classifier unused) with a fresh head, or all fresh.
static ib_status det_network(const ib_det_train_cfg *dc, int classes, ib_detector *d) {
    const ib_train_cfg *cfg = &dc->base;
    ib_status s;
    ib_ssd_cfg sc = dc->ssd;
    sc.classes = classes;
    if (cfg->resume) return ib_detector_load(d, cfg->resume);
    ib_net net;
    memset(&net, 0, sizeof net);
    if (cfg->init) {
        char task[32];
        if ((s = ib_ckpt_task(cfg->init, task, sizeof task))) return s;
        if (!strcmp(task, "detect")) {
            if ((s = ib_detector_load(d, cfg->init))) return s;
            if (d->cfg.classes != classes) {
                s = ib_fail(IB_ERR_ARG, "%s: the detector has %d classes, the data %d", cfg->init, d->cfg.classes, classes);
                ib_detector_free(d);
            }
            d->net.arch.input = cfg->res;
            return s;
        }
        if ((s = ib_ckpt_load(&net, cfg->init))) return s;
    } else {
        ib_arch arch;
        if ((s = ib_arch_resolve(&arch, cfg->arch, classes))) return s;
        s = ib_net_build(&net, &arch);
        ib_arch_free(&arch);
        if (s) {
            if (net.blocks) ib_net_free(&net);
            return s;
        }
        ib_net_init_weights(&net, cfg->seed);
    }
    net.arch.input = cfg->res;
    ib_rng_seed(&net.dropout_rng, cfg->seed, 0xd0);
    s = ib_detector_build(d, &net, &sc, cfg->res, cfg->seed);
    if (s) ib_detector_free(d);
    return s;
}

ib_status ib_train_detect(const ib_det_train_cfg *dc, ib_det_train_result *dres) {
    const ib_train_cfg *cfg = &dc->base;
    ib_train_result *res = &dres->base;
    memset(dres, 0, sizeof *dres);
    res->val_top1 = res->val_top5 = -1;
    for (int i = 0; i < IB_COCO_STATS; i++) dres->stats[i] = -1;
    ib_set_threads(cfg->threads);
    ib_dataset *train = NULL, *val = NULL;
    ib_loader *loader = NULL;
    ib_ctx *ctx = NULL;
    FILE *log = NULL;
    ib_detector d;
    memset(&d, 0, sizeof d);
    ib_train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.seed = cfg->seed;
    ts.cfg = cfg;
    ib_optim *opt_head = NULL;
    det_state dst = {&ts, NULL};
    det_bufs bufs;
    memset(&bufs, 0, sizeof bufs);
    struct sigaction old_sa;
    int handler = 0;
    ib_status s;
    ib_dp dp;   // data parallelism under mpirun (one rank: every ib_dp call is a no-op)

    if (cfg->epochs < 1 || cfg->batch < 1 || cfg->res < 32 || !(cfg->lr > 0))
        return ib_fail(IB_ERR_ARG, "epochs, batch, res and lr must be positive (res at least 32)");
    if ((s = ib_dp_begin(&dp, cfg))) return s;
    const int progress = cfg->progress && dp.rank == 0;
    if ((s = ib_train_out_check(cfg->out, "checkpoint"))) return s;
    if (cfg->ema > 0) return ib_fail(IB_ERR_ARG, "detection: weight EMA is not built for detection yet (--ema 0)");
    if ((s = ib_optim_cfg_check(&cfg->optim))) return s;
    if ((s = open_boxes(&train, cfg->data, cfg->data_format, "train"))) goto done;
    if (cfg->val && (s = open_boxes(&val, cfg->val, cfg->data_format, "val"))) goto done;
    int classes = dc->ssd.classes > 0 ? dc->ssd.classes : cfg->classes > 0 ? cfg->classes : ib_dataset_classes(train);
    if (classes < 1 || classes < ib_dataset_classes(train)) {
        s = ib_fail(IB_ERR_ARG, "%s: %d classes in the data, but %d asked for", cfg->data, ib_dataset_classes(train), classes);
        goto done;
    }
    if ((s = det_network(dc, classes, &d))) goto done;
    if ((s = ib_train_class_names(&d.net, train, classes))) goto done;
    ts.dropout_rng = &d.net.dropout_rng;
    if (!(ts.opt = ib_optim_new(&cfg->optim, &d.net.ps)) || !(opt_head = ib_optim_new(&cfg->optim, &d.ps))) {
        s = ib_fail(IB_ERR_ARG, "%s", ib_errmsg());
        goto done;
    }
    dst.opt_head = opt_head;
    if (cfg->resume) {
        if ((s = ib_train_state_resume(cfg->resume, &ts))) goto done;
        ib_h5 *f;
        if ((s = ib_h5_open(&f, cfg->resume))) goto done;
        s = ib_optim_load(opt_head, f, "train/optim_head");
        ib_h5_close(f);
        if (s) goto done;
    }
    ib_dp_bcast(&dp, &d.net.ps, ts.opt, NULL);
    ib_dp_bcast(&dp, &d.ps, opt_head, NULL);
    if ((s = ib_train_room_check(cfg->out, ib_train_ckpt_bytes(&d.net.ps, ts.opt, NULL) +
                                               ib_train_ckpt_bytes(&d.ps, opt_head, NULL))))
        goto done;

    long spe = 0;
    ib_schedule sch;
    if ((s = det_loader_open(cfg, train, &loader, &spe, &sch))) goto done;
    if (dp.rank == 0 &&
        (s = ib_train_log_open(cfg, ts.epoch, "epoch,step,lr,train_loss,val_AP,val_AP50,val_AP75,epoch_s,img_per_s", &log)))
        goto done;
    ib_sigint_catch(&old_sa);
    handler = 1;
    ctx = ib_ctx_new();
    double t_run = ib_time_s();
    long steps_run = 0;
    if (progress)
        fprintf(stderr, "train (detect): %s + SSDLite (%d levels), %lld + %lld parameters, %lld images, %d classes, %ld steps an epoch%s\n",
                d.net.arch.name, d.n_levels, (long long)ib_net_param_count(&d.net), (long long)d.ps.numel_params,
                (long long)ib_dataset_size(train), classes, spe, cfg->resume ? " (resumed)" : "");
    if (progress && dp.size > 1)
        fprintf(stderr, "train: %d ranks, %d images each of every batch of %d%s\n", dp.size, cfg->batch / dp.size,
                cfg->batch, dp.sync_bn ? ", batchnorm synchronised" : "");
    for (int64_t e = ts.epoch; e < cfg->epochs; e++) {
        ts.epoch = e;
        ib_loader_start_epoch(loader, e);
        const ib_batch *b;
        for (int64_t k = 0; k < ts.batch_in_epoch; k++)
            if ((s = ib_loader_next(loader, &b)) || !b) goto done;
        double t_epoch = ib_time_s();
        int64_t images_run = 0, batch0 = ts.batch_in_epoch;
        while ((s = ib_loader_next(loader, &b)) == IB_OK && b) {
            float lr = ib_lr_at(&sch, ts.step);
            ib_ctx_reset(ctx);
            ctx->training = 1;
            ctx->recording = 1;
            ctx->release_grads = 1;
            ctx->sync_bn = dp.sync_bn;
            ib_tensor x;
            ib_batch_tensor(b, &x);
            ib_tensor *loss;
            int64_t npos;
            if ((s = det_batch_loss(ctx, &d, &bufs, b, &x, &loss, &npos))) goto done;
            // Several ranks: the loss is a sum over this rank's images divided by its matched anchors (at least 1),
            // one process's by the whole batch's: each rank's gradient is of its sum, divided by the batch's count.
            float seed = (float)ib_dp_seed(&dp, (double)npos, 1);
            ib_params_zero_grad(&d.net.ps);
            ib_params_zero_grad(&d.ps);
            ib_backward(ctx, loss, &seed);
            ctx->sync_bn = 0;
            double loss_sum = (double)loss->data[0] * b->n;
            int64_t n_img = b->n;
            int stop = ib_sigint_seen();
            if ((s = ib_dp_step(&dp, &d.net.ps, &d.ps, (double)npos, 1, &loss_sum, &n_img, &stop))) goto done;
            if (cfg->clip > 0) ib_clip_grad_norm(&d.net.ps, cfg->clip), ib_clip_grad_norm(&d.ps, cfg->clip);
            ib_optim_step(ts.opt, lr);
            ib_optim_step(opt_head, lr);
            if ((s = ib_train_loss_check(&ts, (float)(loss_sum / (double)n_img)))) goto done;
            ts.epoch_loss += loss_sum;
            ts.epoch_images += n_img;
            ts.step++, ts.batch_in_epoch++, steps_run++;
            images_run += n_img;
            res->steps = ts.step;
            if (progress) {
                char extra[128], what[32];
                snprintf(extra, sizeof extra, "loss %.4f lr %.4f %.0f img/s", ts.epoch_loss / (double)ts.epoch_images, lr,
                         (double)images_run / (ib_time_s() - t_epoch));
                snprintf(what, sizeof what, "epoch %lld/%d", (long long)e + 1, cfg->epochs);
                ib_progress_line(what, ts.batch_in_epoch, batch0, spe, t_epoch - 1e-9, extra);
            }
            if (stop || (cfg->max_steps > 0 && steps_run >= cfg->max_steps)) {
                int intr = stop;
                if (progress) fputc('\n', stderr);
                res->wall_s = ib_time_s() - t_run;
                res->last_loss = ts.epoch_loss / (double)(ts.epoch_images ? ts.epoch_images : 1);   // the epoch so far
                if ((s = ib_train_saved(&ts, ib_dp_saved(&dp, dp.rank ? IB_OK : ib_detector_save(&d, cfg->out, det_state_save,
                                                                                                  &dst)))))
                    goto done;
                res->interrupted = intr;
                if (progress || (intr && dp.rank == 0))
                    fprintf(stderr, "train: %s at epoch %lld, batch %lld; saved %s, which resumes from here\n",
                            intr ? "interrupted" : "stopped", (long long)e + 1, (long long)ts.batch_in_epoch, cfg->out);
                s = intr ? ib_fail(IB_ERR_INTERRUPTED, "interrupted; state saved in %s", cfg->out) : IB_OK;
                goto done;
            }
        }
        if (s) goto done;
        if (progress) fputc('\n', stderr);
        double epoch_s = ib_time_s() - t_epoch;
        res->last_loss = ts.epoch_loss / (double)(ts.epoch_images ? ts.epoch_images : 1);
        res->img_per_s = (double)images_run / epoch_s;
        if (val) {   // every rank evaluates (the same numbers)
            ib_det_eval_cfg ec;
            ib_det_eval_cfg_default(&ec);
            ec.res = cfg->res;
            ec.workers = cfg->workers;
            ec.ctx = ctx;
            memcpy(ec.mean, cfg->mean, sizeof ec.mean);
            memcpy(ec.std, cfg->std, sizeof ec.std);
            if ((s = ib_detector_eval(&d, val, &ec, dres->stats, NULL))) goto done;
            res->val_top1 = dres->stats[1], res->val_top5 = dres->stats[0];
        }
        if (log) fprintf(log, "%lld,%ld,%.6g,%.6f,%.6f,%.6f,%.6f,%.2f,%.1f\n", (long long)e + 1, ts.step,
                         ib_lr_at(&sch, ts.step), res->last_loss, val ? dres->stats[0] : -1.0, val ? dres->stats[1] : -1.0,
                         val ? dres->stats[2] : -1.0, epoch_s, res->img_per_s);
        if (log && (s = ib_train_log_flush(cfg, log))) goto done;
        if (progress) {
            fprintf(stderr, "epoch %lld: loss %.4f", (long long)e + 1, res->last_loss);
            if (val) fprintf(stderr, " val AP %.4f AP50 %.4f AP75 %.4f", dres->stats[0], dres->stats[1], dres->stats[2]);
            fputc('\n', stderr);
        }
        ts.epoch = e + 1;
        ts.batch_in_epoch = 0;
        ts.epoch_loss = 0;
        ts.epoch_images = 0;
        res->epochs_done = (int)(e + 1);
        if ((s = ib_train_saved(&ts, ib_dp_saved(&dp, dp.rank ? IB_OK : ib_detector_save(&d, cfg->out, det_state_save,
                                                                                          &dst)))))
            goto done;
        if (ib_sigint_seen() && dp.size < 2) {   // several ranks: the next step's allreduce carries it to all
            res->interrupted = 1;
            s = ib_fail(IB_ERR_INTERRUPTED, "interrupted; state saved in %s", cfg->out);
            goto done;
        }
    }
    res->wall_s = ib_time_s() - t_run;
    s = IB_OK;
done:
    if (handler) sigaction(SIGINT, &old_sa, NULL);
    if (log) fclose(log);
    ib_dp_end(&dp);
    ib_ctx_free(ctx);
    ib_loader_close(loader);
    ib_optim_free(opt_head);
    ib_optim_free(ts.opt);
    ib_detector_free(&d);
    ib_dataset_close(val);
    ib_dataset_close(train);
    det_bufs_free(&bufs);
    return s;
}

// ---------------------------------------------------------------------------------------------
// The supernet task: the head is one ib_detector whose net is each path in turn (never owned).

typedef struct {
    ib_sn_task t;
    ib_ssd_cfg ssd;          // as asked (classes 0: the data's)
    ib_detector d;
    int attached;
    ib_optim *opt;           // the head's (NULL when scoring only)
    det_bufs bufs;
} det_task;

static ib_status dt_open(ib_sn_task *t, ib_dataset **ds, const char *path, ib_ds_format fmt, const char *split) {
    return open_boxes(ds, path, fmt, split);
}

static ib_status dt_attach(ib_sn_task *t, const ib_supernet *sn, const ib_train_cfg *c, int classes, const char *from) {
    det_task *k = t->state;
    ib_ssd_cfg cfg = k->ssd;
    ib_h5 *f = NULL;
    ib_status s = IB_OK;
    if (from) {   // the head and its settings as the file has them
        char *j = NULL;
        if ((s = ib_h5_open(&f, from))) return s;
        if (ib_h5_attr_str(f, "/", "detect", &j)) s = ib_fail(IB_ERR_FORMAT, "%s: no detection head (detect attribute)", from);
        else {
            char src[600];
            snprintf(src, sizeof src, "%s (detect attribute)", from);
            s = ib_ssd_cfg_parse(&cfg, j, src);
        }
        free(j);
    } else cfg.classes = cfg.classes > 0 ? cfg.classes : classes;
    cfg.tap_expansion = 0;
    if (!s && cfg.classes != classes)
        s = ib_fail(IB_ERR_ARG, "%s: a head of %d classes, the data %d", from ? from : "detection", cfg.classes, classes);
    // the widths of every path are the largest path's at stride 16 (a stage's output) and 32 (the head conv)
    ib_arch arch;
    memset(&arch, 0, sizeof arch);
    int *choice = NULL;
    if (!s && !(choice = malloc(sizeof(int) * (size_t)ib_space_genes(&sn->space))))
        s = ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!s) {
        ib_space_sample(&sn->space, IB_SAMPLE_LARGEST, NULL, choice);
        s = ib_space_arch(&sn->space, choice, classes, &arch);
    }
    int res = c ? c->res : sn->space.input;
    if (!s) s = ib_detector_build_head(&k->d, &arch, &cfg, res, c ? c->seed : 0);
    k->attached = !s;
    if (!s && f) s = ib_params_read(f, &k->d.ps);
    if (!s && c && !(k->opt = ib_optim_new(&c->optim, &k->d.ps))) s = ib_fail(IB_ERR_ARG, "%s", ib_errmsg());
    if (!s && c && f) s = ib_optim_load(k->opt, f, "train/optim_head");
    if (f) ib_h5_close(f);
    ib_arch_free(&arch);
    free(choice);
    return s;
}

static ib_status dt_loader(ib_sn_task *t, const ib_train_cfg *c, ib_dataset *train, ib_loader **l, long *spe, ib_schedule *sch) {
    return det_loader_open(c, train, l, spe, sch);
}

static ib_status dt_loss(ib_sn_task *t, ib_ctx *ctx, ib_net *path, const ib_batch *b, ib_tensor **loss, double *weight) {
    det_task *k = t->state;
    ib_tensor *x = ib_arena_alloc(ctx->arena, sizeof *x);   // the tape keeps it until backward
    ib_batch_tensor(b, x);
    k->d.net = *path;
    int64_t npos = 0;
    ib_status s = det_batch_loss(ctx, &k->d, &k->bufs, b, x, loss, &npos);
    memset(&k->d.net, 0, sizeof k->d.net);
    *weight = (double)npos;
    return s;
}

static void dt_zero_grad(ib_sn_task *t) { ib_params_zero_grad(&((det_task *)t->state)->d.ps); }

static void dt_step(ib_sn_task *t, float lr, float clip) { ib_sn_head_step(t, ((det_task *)t->state)->opt, lr, clip); }

static ib_status dt_save(ib_sn_task *t, ib_h5 *f) {
    det_task *k = t->state;
    return ib_sn_head_save(t, f, k->opt, ib_ssd_cfg_to_json(&k->d.cfg));
}

static ib_status dt_evaluate(ib_sn_task *t, ib_net *path, ib_dataset *eval, const ib_sn_eval_cfg *cfg,
                             double m[IB_SN_METRICS]) {
    det_task *k = t->state;
    ib_det_eval_cfg ec;
    ib_det_eval_cfg_default(&ec);
    ec.res = cfg->res;
    ec.workers = cfg->workers;
    ec.progress = cfg->progress;
    double st[IB_COCO_STATS], loss = -1;
    ec.loss = &loss;
    k->d.net = *path;
    ib_status s = ib_detector_eval(&k->d, eval, &ec, st, NULL);
    memset(&k->d.net, 0, sizeof k->d.net);
    m[0] = st[1], m[1] = st[0], m[2] = st[2], m[IB_SN_LOSS] = loss;
    return s;
}

// The head's BN recalibration (ib_sn_recalibrate_head): path + head forward, as training runs them.
typedef struct {
    det_task *k;
    ib_net *path;
} dt_recal;

static void dt_recal_momentum(void *user, float m) { ib_detector_set_bn_momentum(&((dt_recal *)user)->k->d, m); }

static void dt_recal_forward(ib_ctx *ctx, void *user, ib_tensor *x) {
    dt_recal *r = user;
    ib_tensor *loc, *conf;
    r->k->d.net = *r->path;
    ib_detector_forward(ctx, &r->k->d, x, &loc, &conf);
    memset(&r->k->d.net, 0, sizeof r->k->d.net);
}

static ib_status dt_recalibrate(ib_sn_task *t, ib_net *path, ib_dataset *calib, const ib_recal_cfg *rc) {
    dt_recal r = {t->state, path};
    ib_recal_pass p = {.momentum = dt_recal_momentum, .forward = dt_recal_forward, .user = &r};
    return ib_sn_recalibrate_head(path, &p, calib, rc);
}

static void dt_free(ib_sn_task *t) {
    if (!t) return;
    det_task *k = t->state;
    memset(&k->d.net, 0, sizeof k->d.net);
    if (k->attached) ib_detector_free(&k->d);
    ib_optim_free(k->opt);
    det_bufs_free(&k->bufs);
    free(k);
}

// The path's detector as latency tables see it: the head as built (cfg.tap_expansion 0: the stride-16 block's
// output, the same for every path), on the path's arch, with as many extra levels as fit at res up to the
// default's (what `train --task detect` builds at that size: a search scored at the supernet's size may
// budget the detector at another, ib_search_opts.latency_res; at the supernet's own size, the levels built).
static ib_status dt_lut_task(ib_sn_task *t, const ib_arch *a, int res, ib_lut_task *out) {
    det_task *k = t->state;
    if (!k->attached) return ib_fail(IB_ERR_ARG, "detection supernet task: its head is not attached yet");
    ib_ssd_cfg c = k->d.cfg, def;
    ib_ssd_cfg_default(&def, c.classes);
    c.n_extra = def.n_extra;
    return ib_det_lut_task(a, &c, res, out);
}

// The detector the arch deploys as: dt_lut_task's with MobileDets' expansion tap where the block after stride
// 16 allows it (`train --task detect`'s default).
static ib_status dt_time_task(ib_sn_task *t, const ib_arch *a, int res, const struct ib_lut_timing *tm, double *ms) {
    det_task *k = t->state;
    if (!k->attached) return ib_fail(IB_ERR_ARG, "detection supernet task: its head is not attached yet");
    ib_ssd_cfg c = k->d.cfg, def;
    ib_ssd_cfg_default(&def, c.classes);
    c.n_extra = def.n_extra, c.tap_expansion = def.tap_expansion;
    return ib_det_time_whole(a, &c, res, tm, ms);
}

static ib_status dt_save_net(ib_sn_task *t, const ib_net *net, int res, const char *path) {
    det_task *k = t->state;
    if (!k->attached) return ib_fail(IB_ERR_ARG, "detection supernet task: its head is not attached yet");
    ib_net n;
    ib_status s = ib_net_build(&n, &net->arch);
    if (s) return s;
    ib_params_copy_matching(&n.ps, &net->ps);
    ib_detector d;
    if (!(s = ib_detector_build(&d, &n, &k->d.cfg, res, 0))) {   // the head as built: the stride-16 block output
        ib_params_copy_matching(&d.ps, &k->d.ps);                 // its weights and recalibrated statistics
        s = ib_detector_save(&d, path, NULL, NULL);
    }
    ib_detector_free(&d);
    return s;
}

ib_status ib_sn_task_detect(ib_sn_task **t, const ib_ssd_cfg *ssd) {
    det_task *k = calloc(1, sizeof *k);
    if (!k) return ib_fail(IB_ERR_NOMEM, "out of memory");
    k->ssd = *ssd;
    k->t = (ib_sn_task){.name = "detect", .metrics = "AP50,AP,AP75", .open = dt_open, .attach = dt_attach,
                        .loader = dt_loader, .loss = dt_loss, .min_weight = 1, .zero_grad = dt_zero_grad,
                        .step = dt_step, .save = dt_save, .evaluate = dt_evaluate, .recalibrate = dt_recalibrate, .free = dt_free,
                        .lut_task = dt_lut_task, .time_task = dt_time_task, .save_net = dt_save_net, .head = &k->d.ps, .state = k};
    *t = &k->t;
    return IB_OK;
}
