// The supernet task for segmentation (Autoseg-EdgeTPU's search): one head (DeepLabv3+-lite or BiFPN, as
// ibnas train --task segment builds it) on every path's features, trained with the pixel-wise cross-entropy
// of tasks/segment.c, and a path scored by the mIoU of ib_eval_segment_net. Every path of a space has the
// same block indices and stage widths, so the head is built once over the largest path's arch; a path runs
// only up to the head's high-stride block.
#include "tasks/segment.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ib_sn_task t;
    ib_seg_head_cfg cfg;      // as asked (a file's settings replace it in attach); with a space's seg_head
                              // choices the shared head is the largest, and cfg the head of archs without one
    char aug[16];             // "flip", "scale", "none"
    char weights_kind[16];    // "none", "median"
    int data_classes;         // the training data's (ib_seg_dataset_classes); 0 before it is opened
    int ignore;               // the training data's ignore index
    ib_params ps;             // the head's tensors
    ib_seg_head head;
    int attached;
    ib_optim *opt;            // the head's (NULL when scoring only)
    float *weights;           // class weights (median frequency) or NULL
} seg_task;

static ib_status st_open(ib_sn_task *t, ib_dataset **ds, const char *path, ib_ds_format fmt, const char *split) {
    seg_task *k = t->state;
    ib_status s = ib_seg_open_data(ds, path, fmt, split);
    if (!s && !k->data_classes && !strcmp(split, "train")) {
        k->data_classes = ib_seg_dataset_classes(*ds);
        k->ignore = ib_dataset_ignore_index(*ds);
    }
    return s;
}

// The root attribute "segment": {"classes": N, "aug": "flip", "class_weights": "none", "head": {seg_head JSON}}.
static char *settings_json(const seg_task *k) {
    char *h = ib_seg_head_cfg_to_json(&k->cfg);   // as asked: a searched head's largest size comes from the space
    json_t *head = h ? json_loads(h, 0, NULL) : NULL;
    free(h);
    if (!head) return NULL;
    json_t *o = json_pack("{s:i, s:s, s:s, s:o}", "classes", k->head.classes, "aug", k->aug, "class_weights",
                          k->weights_kind, "head", head);
    char *j = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return j;
}

static ib_status settings_parse(seg_task *k, const char *text, const char *src, ib_seg_head_cfg *cfg, int *classes) {
    json_error_t e;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (!o) return ib_fail(IB_ERR_FORMAT, "%s: segment attribute: %s", src, e.text);
    json_t *c = json_object_get(o, "classes"), *a = json_object_get(o, "aug"), *w = json_object_get(o, "class_weights");
    char *h = json_dumps(json_object_get(o, "head"), 0);
    ib_status s = IB_OK;
    if (!json_is_integer(c) || json_integer_value(c) < 2 || json_integer_value(c) > 4096 || !json_is_string(a) ||
        !json_is_string(w) || !h)
        s = ib_fail(IB_ERR_FORMAT, "%s: segment attribute: wants classes (2..4096), aug, class_weights and head", src);
    if (!s) s = ib_seg_head_cfg_parse(cfg, h, src);
    if (!s) {
        *classes = (int)json_integer_value(c);
        snprintf(k->aug, sizeof k->aug, "%s", json_string_value(a));
        snprintf(k->weights_kind, sizeof k->weights_kind, "%s", json_string_value(w));
    }
    free(h);
    json_decref(o);
    return s;
}

static ib_status st_attach(ib_sn_task *t, const ib_supernet *sn, const ib_train_cfg *c, int classes, const char *from) {
    seg_task *k = t->state;
    ib_seg_head_cfg cfg = k->cfg;
    int hc = classes > k->data_classes ? classes : k->data_classes;
    ib_h5 *f = NULL;
    ib_status s = IB_OK;
    if (from) {   // the head and its settings as the file has them
        char *j = NULL, src[600];
        if ((s = ib_h5_open(&f, from))) return s;
        snprintf(src, sizeof src, "%s (segment attribute)", from);
        if (ib_h5_attr_str(f, "/", "segment", &j)) s = ib_fail(IB_ERR_FORMAT, "%s: no segmentation head (segment attribute)", from);
        else s = settings_parse(k, j, src, &cfg, &hc);
        free(j);
        if (!s && k->data_classes > hc)
            s = ib_fail(IB_ERR_ARG, "%s: a head of %d classes, the data %d", from, hc, k->data_classes);
    } else if (c) cfg.in_h = cfg.in_w = c->res;
    k->cfg = cfg;   // the head of archs without a searched one (a baseline's); a space's seg_head sizes the shared one
    if (!s && ib_space_head_choices(&sn->space) && strcmp(cfg.kind, "bifpn"))
        s = ib_fail(IB_ERR_ARG, "space %s searches a BiFPN head (its seg_head choices), not a %s head: --head bifpn",
                    sn->space.name, cfg.kind);
    ib_arch arch;
    memset(&arch, 0, sizeof arch);
    int *choice = NULL;
    if (!s && !(choice = malloc(sizeof(int) * (size_t)ib_space_genes(&sn->space))))
        s = ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!s) {
        ib_space_sample(&sn->space, IB_SAMPLE_LARGEST, NULL, choice);
        s = ib_space_arch(&sn->space, choice, sn->base.classes, &arch);
    }
    ib_params_init(&k->ps);
    k->attached = 1;
    if (!s) s = ib_seg_head_register(&k->head, &k->ps, &arch, hc, &cfg);
    if (!s) s = ib_params_alloc(&k->ps);
    if (!s) ib_params_init_default(&k->ps, (c ? c->seed : 0) ^ 0x5e6);
    if (!s && f) s = ib_params_read(f, &k->ps);
    if (!s && c && !(k->opt = ib_optim_new(&c->optim, &k->ps))) s = ib_fail(IB_ERR_ARG, "%s", ib_errmsg());
    if (!s && c && f) s = ib_optim_load(k->opt, f, "train/optim_head");
    if (f) ib_h5_close(f);
    ib_arch_free(&arch);
    free(choice);
    return s;
}

static ib_status st_loader(ib_sn_task *t, const ib_train_cfg *c, ib_dataset *train, ib_loader **l, long *spe, ib_schedule *sch) {
    seg_task *k = t->state;
    if (strcmp(k->aug, "flip") && strcmp(k->aug, "scale") && strcmp(k->aug, "none"))
        return ib_fail(IB_ERR_ARG, "segmentation aug '%s' is not one of flip, scale, none", k->aug);
    if (!strcmp(k->weights_kind, "median")) {
        if (!k->weights && !(k->weights = malloc(sizeof(float) * (size_t)k->head.classes)))
            return ib_fail(IB_ERR_NOMEM, "out of memory");
        ib_status s = ib_seg_median_freq_weights(train, k->head.classes, 0, k->weights);
        if (s) return s;
    } else if (strcmp(k->weights_kind, "none"))
        return ib_fail(IB_ERR_ARG, "class weights '%s' is not one of none, median", k->weights_kind);
    ib_loader_opts lo;
    ib_seg_loader_opts(c, c->res, c->res, k->aug, &lo);
    return ib_train_loader_open_with(c, train, &lo, l, spe, sch);
}

// The path up to the head's high-stride block: the blocks after it, the head conv and the classifier serve
// classification only.
static ib_net cut_path(const seg_task *k, const ib_net *path) {
    ib_net p = *path;
    p.arch.n_blocks = k->head.high_block + 1;
    p.has_head = 0;
    return p;
}

static ib_net st_ran(ib_sn_task *t, const ib_net *path) { return cut_path(t->state, path); }

// The head a path runs: the shared head itself, or, when the space searches it, the path's BiFPN (the arch's
// seg_repeats layers of seg_width channels, levels from seg_low_stride) as views of the shared one: its first
// layers and channels, its levels from that stride on (the shared head has the finest levels any path takes;
// a node keeps its place in the pyramid, so its inputs are the same), in ctx's arena. Gradients and BN
// statistics land in the shared tensors, as a path's backbone views do.
static ib_seg_head path_head(ib_ctx *ctx, const seg_task *k, const ib_net *path) {
    const ib_seg_head *f = &k->head;
    ib_seg_head h = *f;
    int w = path->arch.seg_width, R = path->arch.seg_repeats;
    int lo = path->arch.seg_low_stride > 0 ? path->arch.seg_low_stride : f->cfg.low_stride, off = 0;
    if (R <= 0 || (w == f->cfg.width && R == f->cfg.repeats && lo == f->cfg.low_stride)) return h;
    while ((f->cfg.low_stride << off) < lo) off++;
    const int L = f->levels - off;
    IB_ASSERT(f->levels > 0 && R <= f->cfg.repeats && w <= f->cfg.width && (f->cfg.low_stride << off) == lo && L >= 2,
              "path head %d x %d from stride %d of %d x %d from %d", R, w, lo, f->cfg.repeats, f->cfg.width, f->cfg.low_stride);
    h.cfg.width = w, h.cfg.repeats = R, h.cfg.low_stride = lo;
    h.levels = L;
    memset(h.lateral, 0, sizeof h.lateral);
    memset(h.bifpn, 0, sizeof h.bifpn);
    for (int l = 0; l < L; l++) {
        h.level_block[l] = f->level_block[l + off];
        h.lateral[l] = ib_supernet_cba_view(ctx, &f->lateral[l + off], f->lateral[l + off].conv.cin, w);
    }
    h.low_block = h.level_block[0];
    for (int r = 0; r < R; r++)
        for (int l = 0; l < L; l++) {
            ib_seg_bifpn_node *n[2] = {&h.bifpn[r].td[l], &h.bifpn[r].up[l]};
            const ib_seg_bifpn_node *m[2] = {&f->bifpn[r].td[l + off], &f->bifpn[r].up[l + off]};
            int built[2] = {l < L - 1, l > 0};   // top-down nodes but the coarsest level's, bottom-up but the finest's
            for (int j = 0; j < 2; j++) {
                if (!built[j]) continue;
                n[j]->fuse = m[j]->fuse;
                n[j]->dw = ib_supernet_cba_view(ctx, &m[j]->dw, w, w);
                n[j]->pw = ib_supernet_cba_view(ctx, &m[j]->pw, w, w);
            }
        }
    h.merge = off ? ib_view_range(ctx, f->merge, 0, off, L) : f->merge;
    h.cls = ib_supernet_conv_view(ctx, &f->cls, (ib_conv_shape){w, f->cls.cout, 1, 1, 1});
    return h;
}

static ib_status st_loss(ib_sn_task *t, ib_ctx *ctx, ib_net *path, const ib_batch *b, ib_tensor **loss, double *weight) {
    seg_task *k = t->state;
    int64_t P = (int64_t)b->n * b->h * b->w;
    int64_t bad = ib_seg_check_targets(b->masks, P, k->head.classes, k->ignore);
    if (bad >= 0)
        return ib_fail(IB_ERR_FORMAT, "image %lld has mask value %d; classes are 0..%d, ignore %d",
                       (long long)b->indices[bad / ((int64_t)b->h * b->w)], b->masks[bad], k->head.classes - 1, k->ignore);
    ib_tensor *x = ib_arena_alloc(ctx->arena, sizeof *x);   // the tape keeps it until backward
    ib_batch_tensor(b, x);
    ib_net p = cut_path(k, path);
    ib_seg_head h = path_head(ctx, k, path);
    ib_tensor *z = ib_seg_forward(ctx, &p, &h, x, 1);
    *loss = ib_seg_cross_entropy(ctx, z, b->masks, k->weights, k->ignore);
    *weight = ib_seg_loss_weight(b->masks, P, k->weights, k->ignore);
    return IB_OK;
}

static void st_zero_grad(ib_sn_task *t) { ib_params_zero_grad(&((seg_task *)t->state)->ps); }

static void st_step(ib_sn_task *t, float lr, float clip) { ib_sn_head_step(t, ((seg_task *)t->state)->opt, lr, clip); }

static ib_status st_save(ib_sn_task *t, ib_h5 *f) {
    seg_task *k = t->state;
    return ib_sn_head_save(t, f, k->opt, settings_json(k));
}

static ib_status st_evaluate(ib_sn_task *t, ib_net *path, ib_dataset *eval, const ib_sn_eval_cfg *cfg, double m[IB_SN_METRICS]) {
    seg_task *k = t->state;
    ib_seg_eval_cfg ec;
    ib_seg_eval_cfg_default(&ec);
    ec.h = ec.w = cfg->res;
    ec.batch = cfg->batch;
    ec.workers = cfg->workers;
    ec.progress = cfg->progress;
    ib_net p = cut_path(k, path);
    ib_ctx *vc = ib_ctx_new();   // the path head's views (eval mode: weights read, nothing recorded)
    if (!vc) return ib_fail(IB_ERR_NOMEM, "out of memory");
    vc->recording = 0;
    ib_seg_head h = path_head(vc, k, path);
    ib_seg_metrics mt;
    ib_status s = ib_eval_segment_net(&p, &h, eval, &ec, &mt);
    m[0] = s ? -1 : mt.miou, m[1] = s ? -1 : mt.pixel_acc, m[2] = m[IB_SN_LOSS] = s ? -1 : mt.loss;
    ib_seg_metrics_free(&mt);
    ib_ctx_free(vc);
    return s;
}

// The head's BN recalibration (ib_sn_recalibrate_head): path + head forward, as training runs them (the
// logits left at the low stride: the upsampling comes after the last BN).
typedef struct {
    seg_task *k;
    ib_net *path;
} st_recal;

static void st_recal_momentum(void *user, float m) { ib_seg_head_set_bn_momentum(&((st_recal *)user)->k->head, m); }

static void st_recal_forward(ib_ctx *ctx, void *user, ib_tensor *x) {
    st_recal *r = user;
    ib_net p = cut_path(r->k, r->path);
    ib_seg_head h = path_head(ctx, r->k, r->path);   // after the momentum is set: views copy it
    ib_seg_forward(ctx, &p, &h, x, 0);
}

static ib_status st_recalibrate(ib_sn_task *t, ib_net *path, ib_dataset *calib, const ib_recal_cfg *rc) {
    st_recal r = {t->state, path};
    ib_recal_pass p = {.momentum = st_recal_momentum, .forward = st_recal_forward, .user = &r};
    return ib_sn_recalibrate_head(path, &p, calib, rc);
}

static ib_status st_lut_task(ib_sn_task *t, const ib_arch *a, int res, ib_lut_task *out) {
    seg_task *k = t->state;
    if (!k->attached) return ib_fail(IB_ERR_ARG, "segmentation supernet task: its head is not attached yet");
    return ib_seg_lut_task(a, k->head.classes, &k->cfg, res, out);
}

static ib_status st_time_task(ib_sn_task *t, const ib_arch *a, int res, const ib_lut_timing *tm, double *ms) {
    seg_task *k = t->state;
    if (!k->attached) return ib_fail(IB_ERR_ARG, "segmentation supernet task: its head is not attached yet");
    ib_seg_head_cfg cfg = k->cfg;
    cfg.in_h = cfg.in_w = res;   // as st_save_net builds it
    return ib_seg_time_whole(a, k->head.classes, &cfg, res, tm, ms);
}

static ib_status st_save_net(ib_sn_task *t, const ib_net *net, int res, const char *path) {
    seg_task *k = t->state;
    if (!k->attached) return ib_fail(IB_ERR_ARG, "segmentation supernet task: its head is not attached yet");
    ib_seg_head_cfg cfg = k->cfg;
    cfg.in_h = cfg.in_w = res;
    ib_net sn;
    ib_seg_head head;
    ib_status s = ib_seg_build(&sn, &head, &net->arch, k->head.classes, &cfg);
    if (s) return s;
    // the backbone up to the cut from the path, the head (BN statistics as recalibrated for it) from the task:
    // a searched head's from its views of the shared one
    ib_params_copy_matching(&sn.ps, &net->ps);
    if (net->arch.seg_repeats > 0) {
        ib_ctx *vc = ib_ctx_new();
        if (!vc) s = ib_fail(IB_ERR_NOMEM, "out of memory");
        else {
            vc->recording = 0;
            ib_seg_head v = path_head(vc, k, net);
            for (int l = 0; l < head.levels; l++) ib_supernet_copy_cba(&head.lateral[l], &v.lateral[l]);
            for (int r = 0; r < head.cfg.repeats; r++)
                for (int l = 0; l < head.levels; l++) {
                    ib_seg_bifpn_node *d[2] = {&head.bifpn[r].td[l], &head.bifpn[r].up[l]};
                    const ib_seg_bifpn_node *e[2] = {&v.bifpn[r].td[l], &v.bifpn[r].up[l]};
                    for (int j = 0; j < 2; j++) {
                        if (!d[j]->fuse) continue;
                        ib_supernet_copy_tensor(d[j]->fuse, e[j]->fuse);
                        ib_supernet_copy_cba(&d[j]->dw, &e[j]->dw), ib_supernet_copy_cba(&d[j]->pw, &e[j]->pw);
                    }
                }
            ib_supernet_copy_tensor(head.merge, v.merge);
            ib_supernet_copy_tensor(head.cls.w, v.cls.w);
            ib_supernet_copy_tensor(head.cls.b, v.cls.b);
            ib_ctx_free(vc);
        }
    } else ib_params_copy_matching(&sn.ps, &k->ps);
    if (!s) s = ib_seg_save(&sn, &head, path, NULL, NULL);
    ib_net_free(&sn);
    return s;
}

static void st_free(ib_sn_task *t) {
    if (!t) return;
    seg_task *k = t->state;
    if (k->attached) ib_params_free(&k->ps);
    ib_optim_free(k->opt);
    free(k->weights);
    free(k);
}

ib_status ib_sn_task_segment(ib_sn_task **t, const ib_seg_head_cfg *head, const char *aug, const char *class_weights) {
    seg_task *k = calloc(1, sizeof *k);
    if (!k) return ib_fail(IB_ERR_NOMEM, "out of memory");
    k->cfg = *head;
    snprintf(k->aug, sizeof k->aug, "%s", aug ? aug : "flip");
    snprintf(k->weights_kind, sizeof k->weights_kind, "%s", class_weights ? class_weights : "none");
    k->t = (ib_sn_task){.name = "segment", .metrics = "mIoU,pixel_acc,loss", .open = st_open, .attach = st_attach,
                        .loader = st_loader, .loss = st_loss, .ran = st_ran, .min_weight = IB_SEG_MIN_WEIGHT, .zero_grad = st_zero_grad,
                        .step = st_step, .save = st_save, .evaluate = st_evaluate, .recalibrate = st_recalibrate, .free = st_free,
                        .lut_task = st_lut_task, .time_task = st_time_task, .save_net = st_save_net, .head = &k->ps, .state = k};
    *t = &k->t;
    return IB_OK;
}
