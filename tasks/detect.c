// SSDLite: the head on a backbone's stride-16 and stride-32 features plus extra layers, SSD default
// boxes, matching and encoding, the multibox loss with hard negative mining (one op with its own
// backward), decoding with per-class NMS, and detection checkpoints.
#include "tasks/detect.h"

#include "layers/json_fields.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float var_c = 0.1f, var_s = 0.2f;   // box-encoding variances (centre, size)

void ib_ssd_cfg_default(ib_ssd_cfg *c, int classes) {
    memset(c, 0, sizeof *c);
    c->classes = classes;
    c->min_scale = 0.2f, c->max_scale = 0.95f;
    c->n_ratios = 3;
    c->ratios[0] = 1, c->ratios[1] = 2, c->ratios[2] = 0.5f;
    c->n_extra = 4;
    c->extra_out[0] = 512, c->extra_out[1] = 256, c->extra_out[2] = 256, c->extra_out[3] = 128;
    c->match_iou = 0.5f;
    c->neg_ratio = 3;
    c->nms_iou = 0.6f;
    c->score_thr = 0.01f;
    c->max_dets = 100;
    c->tap_expansion = 1;
    c->focal = 0;
    c->focal_alpha = 0.25f, c->focal_gamma = 2;
}

char *ib_ssd_cfg_to_json(const ib_ssd_cfg *c) {
    json_t *o = json_object(), *r = json_array(), *e = json_array();
    for (int i = 0; i < c->n_ratios; i++) json_array_append_new(r, json_real(c->ratios[i]));
    for (int i = 0; i < c->n_extra; i++) json_array_append_new(e, json_integer(c->extra_out[i]));
    json_object_set_new(o, "format", json_string("ibnas-ssdlite"));
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "classes", json_integer(c->classes));
    json_object_set_new(o, "min_scale", json_real(c->min_scale));
    json_object_set_new(o, "max_scale", json_real(c->max_scale));
    json_object_set_new(o, "ratios", r);
    json_object_set_new(o, "extra", e);
    json_object_set_new(o, "match_iou", json_real(c->match_iou));
    json_object_set_new(o, "neg_ratio", json_real(c->neg_ratio));
    json_object_set_new(o, "nms_iou", json_real(c->nms_iou));
    json_object_set_new(o, "score_thr", json_real(c->score_thr));
    json_object_set_new(o, "max_dets", json_integer(c->max_dets));
    json_object_set_new(o, "tap16", json_string(c->tap_expansion ? "expansion" : "block"));
    if (c->focal) {   // absent: softmax cross-entropy with hard negatives (what checkpoints before it hold)
        json_t *fl = json_array();
        json_array_append_new(fl, json_real(c->focal_alpha));
        json_array_append_new(fl, json_real(c->focal_gamma));
        json_object_set_new(o, "focal", fl);
    }
    char *s = json_dumps(o, JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

ib_status ib_ssd_cfg_parse(ib_ssd_cfg *c, const char *text, const char *source) {
    json_error_t je;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!o) return ib_fail(IB_ERR_FORMAT, "%s:%d:%d: %s", source, je.line, je.column, je.text);
    ib_json_where w = {source, ""};
    ib_ssd_cfg_default(c, 0);
    ib_status s = IB_OK;
    json_t *f = json_object_get(o, "format"), *r = json_object_get(o, "ratios"), *e = json_object_get(o, "extra"),
           *tap = json_object_get(o, "tap16"), *fl = json_object_get(o, "focal");
    c->tap_expansion = 0;   // absent: the block output
    if (tap && (!json_is_string(tap) || (strcmp(json_string_value(tap), "expansion") && strcmp(json_string_value(tap), "block"))))
        s = ib_json_bad(&w, "tap16", "must be \"expansion\" or \"block\"");
    else if (tap)
        c->tap_expansion = !strcmp(json_string_value(tap), "expansion");
    if (!s && (!json_is_string(f) || strcmp(json_string_value(f), "ibnas-ssdlite"))) s = ib_json_bad(&w, "format", "must be \"ibnas-ssdlite\"");
    int version = 0;
    if (!s) s = ib_json_get_int(&w, o, "version", &version, 1, 1, 1);
    if (!s) s = ib_json_get_int(&w, o, "classes", &c->classes, 1, 1, 100000);
    if (!s) s = ib_json_get_float(&w, o, "min_scale", &c->min_scale, 1e-4f, 1);
    if (!s) s = ib_json_get_float(&w, o, "max_scale", &c->max_scale, 1e-4f, 1);
    if (!s) s = ib_json_get_float(&w, o, "match_iou", &c->match_iou, 0, 1);
    if (!s) s = ib_json_get_float(&w, o, "neg_ratio", &c->neg_ratio, 0, 1000);
    if (!s) s = ib_json_get_float(&w, o, "nms_iou", &c->nms_iou, 0, 1);
    if (!s) s = ib_json_get_float(&w, o, "score_thr", &c->score_thr, 0, 1);
    if (!s) s = ib_json_get_int(&w, o, "max_dets", &c->max_dets, 0, 1, 100000);
    if (!s && (!json_is_array(r) || json_array_size(r) < 1 || json_array_size(r) > IB_SSD_MAX_RATIOS))
        s = ib_json_bad(&w, "ratios", "must be a list of 1..8 numbers");
    if (!s && fl) {
        json_t *fa = json_array_get(fl, 0), *fg = json_array_get(fl, 1);
        if (!json_is_array(fl) || json_array_size(fl) != 2 || !json_is_number(fa) || !json_is_number(fg) ||
            !(json_number_value(fa) >= 0 && json_number_value(fa) <= 1) || !(json_number_value(fg) >= 0))
            s = ib_json_bad(&w, "focal", "must be [alpha, gamma] with alpha in [0, 1] and gamma >= 0");
        else
            c->focal = 1, c->focal_alpha = (float)json_number_value(fa), c->focal_gamma = (float)json_number_value(fg);
    }
    if (!s && (!json_is_array(e) || json_array_size(e) > 4)) s = ib_json_bad(&w, "extra", "must be a list of at most 4 widths");
    if (!s) {
        c->n_ratios = (int)json_array_size(r);
        for (int i = 0; i < c->n_ratios && !s; i++) {
            json_t *v = json_array_get(r, (size_t)i);
            if (!json_is_number(v) || !(json_number_value(v) > 0)) s = ib_json_bad(&w, "ratios", "must be positive numbers");
            else c->ratios[i] = (float)json_number_value(v);
        }
        c->n_extra = (int)json_array_size(e);
        for (int i = 0; i < c->n_extra && !s; i++) {
            json_t *v = json_array_get(e, (size_t)i);
            if (!json_is_integer(v) || json_integer_value(v) < 2 || json_integer_value(v) > 8192)
                s = ib_json_bad(&w, "extra", "must be integer widths 2..8192");
            else c->extra_out[i] = (int)json_integer_value(v);
        }
    }
    json_decref(o);
    return s;
}

// ---------------------------------------------------------------------------------------------
// NCHW -> NHWC, so each location's predictions are contiguous (the anchors' order: row, column, anchor).

static void nhwc_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *x = n->in[0];
    if (!x->requires_grad) return;
    float *gx = ib_grad(ctx, x);
    const float *gy = n->out->grad;
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    for (int b = 0; b < N; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < H * W; p++)
                gx[((int64_t)b * C + c) * H * W + p] += gy[((int64_t)b * H * W + p) * C + c];
}
static const ib_op op_nhwc = {"to_nhwc", nhwc_backward};

// x: (N, C, H, W) -> (N, H, W, C)
static ib_tensor *to_nhwc(ib_ctx *ctx, ib_tensor *x) {
    IB_ASSERT(x->ndim == 4 && ib_is_contiguous(x), "to_nhwc: a contiguous (N, C, H, W) input");
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){N, H, W, C});
    for (int b = 0; b < N; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < H * W; p++)
                y->data[((int64_t)b * H * W + p) * C + c] = x->data[((int64_t)b * C + c) * H * W + p];
    ib_record(ctx, &op_nhwc, y, 1, &x);
    return y;
}

// ---------------------------------------------------------------------------------------------
// The head

void ib_detector_set_bn_momentum(ib_detector *d, float m) {
    for (int l = 0; l < d->n_levels; l++) {
        ib_ssd_level_mod *v = &d->lv[l];
        v->box_dw.bn.momentum = v->cls_dw.bn.momentum = m;
        for (int k = 0; k < 3; k++) v->extra[k].bn.momentum = m;   // extra levels' (zeroed on levels 0, 1)
    }
}

int ib_detector_anchors_per_loc(const ib_detector *d) { return d->cfg.n_ratios + 1; }

static int conv_out(int s) { return (s + 1) / 2; }   // a stride-2 conv with "same" padding

ib_status ib_ssd_taps(const ib_arch *a, const ib_ssd_cfg *cfg, int res, ib_ssd_taps_info *t) {
    memset(t, 0, sizeof *t);
    if (cfg->classes < 1) return ib_fail(IB_ERR_ARG, "detection: %d classes", cfg->classes);
    if (cfg->n_ratios < 1 || cfg->n_ratios > IB_SSD_MAX_RATIOS) return ib_fail(IB_ERR_ARG, "detection: 1..8 aspect ratios");
    // strides and sizes through the backbone
    int stride = a->stem_stride, size = res;
    for (int k = 1; k < a->stem_stride; k *= 2) size = conv_out(size);
    for (int i = 0; i < a->n_blocks; i++)
        if (a->blocks[i].stride == 2) stride *= 2, size = conv_out(size);
    if (stride != 32)
        return ib_fail(IB_ERR_ARG, "detection: %s has total stride %d; SSDLite needs the stride-16 and stride-32 features",
                       a->name, stride);
    t->tap16 = ib_arch_last_block_at_stride(a, 16);
    if (t->tap16 < -1) return ib_fail(IB_ERR_ARG, "detection: %s has no stride-16 feature", a->name);
    t->c16_in = t->c16 = t->tap16 >= 0 ? a->blocks[t->tap16].out : a->stem_out;
    const ib_block_cfg *nb = t->tap16 + 1 < a->n_blocks ? &a->blocks[t->tap16 + 1] : NULL;
    if (cfg->tap_expansion && nb && nb->op == IB_BLOCK_IBN && nb->expand != 1 && nb->stride == 2) {
        t->tap_exp = 1;
        t->c16 = ib_block_hidden(nb, t->c16_in);
    }
    t->c32 = a->head_out > 0 ? a->head_out : a->blocks[a->n_blocks - 1].out;
    t->size32 = size;
    while (t->n_extra < cfg->n_extra && size > 1) size = conv_out(size), t->n_extra++;
    return IB_OK;
}

// The head for a backbone of arch a (d->net is the caller's).
static ib_status build_head(ib_detector *d, const ib_arch *a, const ib_ssd_cfg *cfg, int res, uint64_t seed) {
    d->cfg = *cfg;
    ib_params_init(&d->ps);
    ib_ssd_taps_info ti;
    ib_status st = ib_ssd_taps(a, cfg, res, &ti);
    if (st) return st;
    d->tap16 = ti.tap16, d->tap_exp = ti.tap_exp;
    d->cfg.tap_expansion = d->tap_exp;   // what was built
    int ch[IB_SSD_MAX_LEVELS] = {ti.c16, ti.c32};
    int n_extra = ti.n_extra;
    d->cfg.n_extra = n_extra;   // what was built (a checkpoint rebuilds the same)
    d->n_levels = 2 + n_extra;
    char name[96];
    for (int e = 0; e < n_extra; e++) {
        int cin = ch[1 + e], out = cfg->extra_out[e], mid = out / 2;
        snprintf(name, sizeof name, "ssd.extra.%d.0", e);
        ib_cba_init(&d->lv[2 + e].extra[0], &d->ps, name, cin, mid, 1, 1, 1, IB_ACT_RELU6);
        snprintf(name, sizeof name, "ssd.extra.%d.1", e);
        ib_cba_init(&d->lv[2 + e].extra[1], &d->ps, name, mid, mid, 3, 2, mid, IB_ACT_RELU6);
        snprintf(name, sizeof name, "ssd.extra.%d.2", e);
        ib_cba_init(&d->lv[2 + e].extra[2], &d->ps, name, mid, out, 1, 1, 1, IB_ACT_RELU6);
        ch[2 + e] = out;
    }
    int A = ib_detector_anchors_per_loc(d);
    for (int l = 0; l < d->n_levels; l++) {
        snprintf(name, sizeof name, "ssd.box.%d.dw", l);
        ib_cba_init(&d->lv[l].box_dw, &d->ps, name, ch[l], ch[l], 3, 1, ch[l], IB_ACT_RELU6);
        snprintf(name, sizeof name, "ssd.box.%d.pw", l);
        ib_conv_init(&d->lv[l].box_pw, &d->ps, name, ch[l], A * 4, 1, 1, 1, 1);
        snprintf(name, sizeof name, "ssd.cls.%d.dw", l);
        ib_cba_init(&d->lv[l].cls_dw, &d->ps, name, ch[l], ch[l], 3, 1, ch[l], IB_ACT_RELU6);
        snprintf(name, sizeof name, "ssd.cls.%d.pw", l);
        ib_conv_init(&d->lv[l].cls_pw, &d->ps, name, ch[l], A * (cfg->classes + 1), 1, 1, 1, 1);
    }
    ib_status s = ib_params_alloc(&d->ps);
    if (s) return s;
    ib_params_init_default(&d->ps, seed ^ 0x55d);
    // the predictors start small (torchvision's SSDLite: N(0, 0.03)), so the first losses are moderate
    ib_rng r;
    ib_rng_seed(&r, seed, 0x55e);
    for (int l = 0; l < d->n_levels; l++) {
        ib_rng_fill_normal(&r, d->lv[l].box_pw.w->data, ib_numel(d->lv[l].box_pw.w), 0, 0.03f);
        ib_rng_fill_normal(&r, d->lv[l].cls_pw.w->data, ib_numel(d->lv[l].cls_pw.w), 0, 0.03f);
        if (cfg->focal)   // logits (anchor, class): the object classes start at probability 0.01
            for (int an = 0; an < A; an++)
                for (int k = 1; k <= cfg->classes; k++) d->lv[l].cls_pw.b->data[an * (cfg->classes + 1) + k] = IB_FOCAL_PRIOR_BIAS;
    }
    return IB_OK;
}

ib_status ib_detector_build(ib_detector *d, ib_net *net, const ib_ssd_cfg *cfg, int res, uint64_t seed) {
    memset(d, 0, sizeof *d);
    d->net = *net;
    memset(net, 0, sizeof *net);
    return build_head(d, &d->net.arch, cfg, res, seed);
}

ib_status ib_detector_build_head(ib_detector *d, const ib_arch *a, const ib_ssd_cfg *cfg, int res, uint64_t seed) {
    memset(d, 0, sizeof *d);
    return build_head(d, a, cfg, res, seed);
}

void ib_detector_free(ib_detector *d) {
    if (d->net.blocks) ib_net_free(&d->net);
    ib_params_free(&d->ps);
    free(d->anchors);
    memset(d, 0, sizeof *d);
}

int ib_ssd_anchors(const ib_ssd_cfg *c, int n, const int *sizes, float *out) {
    int A = c->n_ratios + 1, k = 0;
    for (int l = 0; l < n; l++) {
        double s = n > 1 ? c->min_scale + (c->max_scale - c->min_scale) * l / (n - 1) : c->min_scale;
        double s1 = l + 1 < n ? c->min_scale + (c->max_scale - c->min_scale) * (l + 1) / (n - 1) : 1.0;
        int f = sizes[l];
        for (int i = 0; i < f; i++)
            for (int j = 0; j < f; j++)
                for (int a = 0; a < A; a++) {
                    double w, h;
                    if (a < c->n_ratios) w = s * sqrt(c->ratios[a]), h = s / sqrt(c->ratios[a]);
                    else w = h = sqrt(s * s1);
                    if (out) {
                        float *o = out + (int64_t)k * 4;
                        o[0] = (float)((j + 0.5) / f), o[1] = (float)((i + 0.5) / f), o[2] = (float)w, o[3] = (float)h;
                    }
                    k++;
                }
    }
    return k;
}

void ib_detector_forward(ib_ctx *ctx, ib_detector *d, ib_tensor *x, ib_tensor **loc, ib_tensor **conf) {
    ib_tensor *t16 = NULL;
    int after = d->tap16;
    ib_tensor *h = ib_net_features_taps(ctx, &d->net, x, 1, &after, &t16);
    ib_detector_head_forward(ctx, d, t16, h, d->tap_exp ? &d->net.blocks[d->tap16 + 1].stages[0] : NULL, loc, conf);
}

void ib_detector_head_forward(ib_ctx *ctx, ib_detector *d, ib_tensor *t16, ib_tensor *h, const ib_cba *exp,
                              ib_tensor **loc, ib_tensor **conf) {
    ib_tensor *feats[IB_SSD_MAX_LEVELS];
    // the first stride-32 block's expansion, run again on its input (the block ran it too: one 1x1 conv
    // at stride 16 computed twice, gradients from both uses summed)
    if (exp) t16 = ib_cba_forward(ctx, exp, t16);
    feats[0] = t16, feats[1] = h;
    for (int e = 0; e + 2 < d->n_levels; e++) {
        for (int k = 0; k < 3; k++) h = ib_cba_forward(ctx, &d->lv[2 + e].extra[k], h);
        feats[2 + e] = h;
    }
    int N = h->shape[0], A = ib_detector_anchors_per_loc(d), K = d->cfg.classes + 1;
    ib_tensor *bl[IB_SSD_MAX_LEVELS], *cl[IB_SSD_MAX_LEVELS];
    int sizes[IB_SSD_MAX_LEVELS], changed = 0;
    for (int l = 0; l < d->n_levels; l++) {
        IB_ASSERT(feats[l]->shape[2] == feats[l]->shape[3], "detection: square inputs only");
        sizes[l] = feats[l]->shape[2];
        changed |= sizes[l] != d->anchor_sizes[l];
        int hw = feats[l]->shape[2] * feats[l]->shape[3];
        ib_tensor *b = ib_conv_forward(ctx, &d->lv[l].box_pw, ib_cba_forward(ctx, &d->lv[l].box_dw, feats[l]));
        ib_tensor *c = ib_conv_forward(ctx, &d->lv[l].cls_pw, ib_cba_forward(ctx, &d->lv[l].cls_dw, feats[l]));
        bl[l] = ib_reshape(ctx, to_nhwc(ctx, b), 4, (int[]){N, hw * A, 4, 1});
        cl[l] = ib_reshape(ctx, to_nhwc(ctx, c), 4, (int[]){N, hw * A, K, 1});
    }
    *loc = ib_concat(ctx, d->n_levels, bl);
    *conf = ib_concat(ctx, d->n_levels, cl);
    if (changed || !d->anchors) {
        int n = ib_ssd_anchors(&d->cfg, d->n_levels, sizes, NULL);
        float *an = malloc(sizeof(float) * 4 * (size_t)n);
        IB_ASSERT(an, "out of memory for %d anchors", n);
        ib_ssd_anchors(&d->cfg, d->n_levels, sizes, an);
        free(d->anchors);
        d->anchors = an;
        d->n_anchors = n;
        memcpy(d->anchor_sizes, sizes, sizeof sizes);
    }
    IB_ASSERT((*loc)->shape[1] == d->n_anchors, "detection: %d predictions for %d anchors", (*loc)->shape[1], d->n_anchors);
}

// ---------------------------------------------------------------------------------------------
// Matching and encoding

static float iou_corners(const float *a, const float *b) {
    float w = fminf(a[2], b[2]) - fmaxf(a[0], b[0]), h = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    if (w <= 0 || h <= 0) return 0;
    float i = w * h, u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i;
    return u > 0 ? i / u : 0;
}

void ib_ssd_encode(const float *an, const float *box, float *out) {
    float cx = 0.5f * (box[0] + box[2]), cy = 0.5f * (box[1] + box[3]);
    float w = fmaxf(box[2] - box[0], 1e-6f), h = fmaxf(box[3] - box[1], 1e-6f);
    out[0] = (cx - an[0]) / (an[2] * var_c);
    out[1] = (cy - an[1]) / (an[3] * var_c);
    out[2] = logf(w / an[2]) / var_s;
    out[3] = logf(h / an[3]) / var_s;
}

void ib_ssd_decode(const float *an, const float *code, float *box) {
    float cx = an[0] + code[0] * var_c * an[2], cy = an[1] + code[1] * var_c * an[3];
    // exp of a wild offset stays finite
    float w = an[2] * expf(fminf(code[2] * var_s, 10.f)), h = an[3] * expf(fminf(code[3] * var_s, 10.f));
    box[0] = cx - 0.5f * w, box[1] = cy - 0.5f * h, box[2] = cx + 0.5f * w, box[3] = cy + 0.5f * h;
}

int ib_ssd_match(const ib_ssd_cfg *c, const float *anchors, int n_anchors, const float *gt, const int32_t *gt_labels,
                 int n_gt, int32_t *labels, float *loc_t) {
    float *best = malloc(sizeof(float) * (size_t)(n_anchors + 1));
    int *who = malloc(sizeof(int) * (size_t)(n_anchors + 1));
    IB_ASSERT(best && who, "out of memory matching %d anchors", n_anchors);
    int *forced = malloc(sizeof(int) * (size_t)(n_gt + 1));
    IB_ASSERT(forced, "out of memory matching %d boxes", n_gt);
    for (int a = 0; a < n_anchors; a++) best[a] = -1, who[a] = -1;
    for (int g = 0; g < n_gt; g++) {
        float gbest = -1;
        forced[g] = -1;
        for (int a = 0; a < n_anchors; a++) {
            const float *an = anchors + (int64_t)a * 4;
            float corners[4] = {an[0] - 0.5f * an[2], an[1] - 0.5f * an[3], an[0] + 0.5f * an[2], an[1] + 0.5f * an[3]};
            float iou = iou_corners(corners, gt + g * 4);
            if (iou > best[a]) best[a] = iou, who[a] = g;
            if (iou > gbest) gbest = iou, forced[g] = a;
        }
    }
    // each box's best anchor is forced to it (a later box wins a shared anchor)
    for (int g = 0; g < n_gt; g++)
        if (forced[g] >= 0) best[forced[g]] = 2, who[forced[g]] = g;
    free(forced);
    int npos = 0;
    for (int a = 0; a < n_anchors; a++) {
        float *lt = loc_t + (int64_t)a * 4;
        if (who[a] >= 0 && best[a] >= c->match_iou) {
            labels[a] = gt_labels[who[a]] + 1;
            ib_ssd_encode(anchors + (int64_t)a * 4, gt + who[a] * 4, lt);
            npos++;
        } else {
            labels[a] = 0;
            lt[0] = lt[1] = lt[2] = lt[3] = 0;
        }
    }
    free(best), free(who);
    return npos;
}

// ---------------------------------------------------------------------------------------------
// The multibox loss

// Smooth-L1 (beta 1) of one anchor's four offsets against their targets, and its gradient times g added to gl.
static double smooth_l1_box(const float *l, const float *t) {
    double v = 0;
    for (int j = 0; j < 4; j++) {
        double dd = fabs((double)l[j] - t[j]);
        v += dd < 1 ? 0.5 * dd * dd : dd - 0.5;
    }
    return v;
}
static void smooth_l1_box_grad(const float *l, const float *t, double g, float *gl) {
    for (int j = 0; j < 4; j++) {
        double dd = (double)l[j] - t[j];
        gl[j] += (float)(g * (fabs(dd) < 1 ? dd : dd > 0 ? 1 : -1));
    }
}

typedef struct {
    uint8_t *sel;          // N*A: 1 positive, 2 a chosen negative, 0 unused
    const int32_t *labels;
    const float *loc_t;
    double denom;
} ssd_saved;

typedef struct {
    float loss;
    int a;
} ranked;
static int cmp_ranked(const void *x, const void *y) {
    const ranked *p = x, *q = y;
    if (p->loss != q->loss) return p->loss > q->loss ? -1 : 1;
    return p->a - q->a;
}

static double lse_row(const float *z, int k) {
    float m = z[0];
    for (int j = 1; j < k; j++) m = z[j] > m ? z[j] : m;
    double s = 0;
    for (int j = 0; j < k; j++) s += exp((double)z[j] - m);
    return log(s) + m;
}

static void ssd_loss_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *loc = n->in[0], *conf = n->in[1];
    const ssd_saved *sv = n->saved;
    int N = loc->shape[0], A = loc->shape[1], K = conf->shape[2];
    double g = (double)n->out->grad[0] / sv->denom;
    float *gl = loc->requires_grad ? ib_grad(ctx, loc) : NULL;
    float *gc = conf->requires_grad ? ib_grad(ctx, conf) : NULL;
    for (int64_t i = 0; i < (int64_t)N * A; i++) {
        if (!sv->sel[i]) continue;
        if (gc) {
            const float *z = conf->data + i * K;
            double l = lse_row(z, K);
            for (int j = 0; j < K; j++) gc[i * K + j] += (float)(g * (exp((double)z[j] - l) - (j == sv->labels[i])));
        }
        if (gl && sv->sel[i] == 1) smooth_l1_box_grad(loc->data + i * 4, sv->loc_t + i * 4, g, gl + i * 4);
    }
}
static const ib_op op_ssd_loss = {"ssd_loss", ssd_loss_backward};

ib_tensor *ib_ssd_loss(ib_ctx *ctx, ib_tensor *loc, ib_tensor *conf, const int32_t *labels, const float *loc_t,
                       float neg_ratio) {
    IB_ASSERT(loc->ndim == 4 && conf->ndim == 4 && loc->shape[0] == conf->shape[0] && loc->shape[1] == conf->shape[1] &&
                  loc->shape[2] == 4 && ib_is_contiguous(loc) && ib_is_contiguous(conf),
              "ssd_loss: loc (N, A, 4, 1) and conf (N, A, K, 1)");
    int N = loc->shape[0], A = loc->shape[1], K = conf->shape[2];
    int64_t NA = (int64_t)N * A;
    ssd_saved *sv = ib_arena_alloc(ctx->arena, sizeof *sv);
    sv->sel = ib_arena_calloc(ctx->arena, (size_t)NA);
    int32_t *lab = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)NA);
    float *lt = ib_arena_alloc(ctx->arena, sizeof(float) * 4 * (size_t)NA);
    memcpy(lab, labels, sizeof(int32_t) * (size_t)NA);
    memcpy(lt, loc_t, sizeof(float) * 4 * (size_t)NA);
    sv->labels = lab, sv->loc_t = lt;
    ranked *rk = ib_arena_alloc(ctx->arena, sizeof(ranked) * (size_t)A);
    double total = 0;
    int64_t npos_all = 0;
    for (int b = 0; b < N; b++) {
        int npos = 0, nneg = 0;
        for (int a = 0; a < A; a++) {
            int64_t i = (int64_t)b * A + a;
            const float *z = conf->data + i * K;
            IB_ASSERT(lab[i] >= 0 && lab[i] < K, "ssd_loss: label %d of %d classes", lab[i], K);
            double l = lse_row(z, K);
            if (lab[i] > 0) {
                sv->sel[i] = 1, npos++;
                total += l - z[lab[i]] + smooth_l1_box(loc->data + i * 4, lt + i * 4);
            } else
                rk[nneg++] = (ranked){(float)(l - z[0]), a};
        }
        int take = (int)fmin((double)nneg, floor(neg_ratio * npos));
        if (take > 0) {
            qsort(rk, (size_t)nneg, sizeof *rk, cmp_ranked);
            for (int k = 0; k < take; k++) {
                int64_t i = (int64_t)b * A + rk[k].a;
                sv->sel[i] = 2;
                total += lse_row(conf->data + i * K, K) - conf->data[i * K];
            }
        }
        npos_all += npos;
    }
    sv->denom = npos_all > 0 ? (double)npos_all : 1.0;
    ib_tensor *y = ib_tensor_new(ctx, 1, (int[]){1});
    y->data[0] = (float)(total / sv->denom);
    ib_tensor *in[2] = {loc, conf};
    ib_node *n = ib_record(ctx, &op_ssd_loss, y, 2, in);
    if (n) n->saved = sv;
    return y;
}

// ---------------------------------------------------------------------------------------------
// The focal variant (RetinaNet): every anchor and every object class an independent sigmoid.

typedef struct {
    const int32_t *labels;
    const float *loc_t;
    double denom, alpha, gamma;
} focal_saved;

// log sigmoid(z) and log(1 - sigmoid(z)) without overflow
static double log_sigmoid(double z) { return z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z)); }

// FL(z, t) and its derivative in z (see detect.h)
static double focal_term(double z, int t, double alpha, double gamma, double *dz) {
    double lp = log_sigmoid(z), lq = log_sigmoid(-z), p = exp(lp), q = exp(lq);
    if (t) {   // -alpha q^gamma log p;  d/dz = alpha q^gamma (gamma p log p - q)
        double qg = gamma > 0 ? pow(q, gamma) : 1;
        *dz = alpha * qg * (gamma * p * lp - q);
        return -alpha * qg * lp;
    }
    double pg = gamma > 0 ? pow(p, gamma) : 1;   // -(1-alpha) p^gamma log q;  d/dz = (1-alpha) p^gamma (p - gamma q log q)
    *dz = (1 - alpha) * pg * (p - gamma * q * lq);
    return -(1 - alpha) * pg * lq;
}

static void focal_loss_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *loc = n->in[0], *conf = n->in[1];
    const focal_saved *sv = n->saved;
    int N = loc->shape[0], A = loc->shape[1], K = conf->shape[2];
    double g = (double)n->out->grad[0] / sv->denom;
    float *gl = loc->requires_grad ? ib_grad(ctx, loc) : NULL;
    float *gc = conf->requires_grad ? ib_grad(ctx, conf) : NULL;
    for (int64_t i = 0; i < (int64_t)N * A; i++) {
        if (gc)
            for (int j = 1; j < K; j++) {
                double dz;
                focal_term(conf->data[i * K + j], sv->labels[i] == j, sv->alpha, sv->gamma, &dz);
                gc[i * K + j] += (float)(g * dz);
            }
        if (gl && sv->labels[i] > 0) smooth_l1_box_grad(loc->data + i * 4, sv->loc_t + i * 4, g, gl + i * 4);
    }
}
static const ib_op op_focal_loss = {"focal_loss", focal_loss_backward};

ib_tensor *ib_focal_loss(ib_ctx *ctx, ib_tensor *loc, ib_tensor *conf, const int32_t *labels, const float *loc_t,
                         float alpha, float gamma) {
    IB_ASSERT(loc->ndim == 4 && conf->ndim == 4 && loc->shape[0] == conf->shape[0] && loc->shape[1] == conf->shape[1] &&
                  loc->shape[2] == 4 && ib_is_contiguous(loc) && ib_is_contiguous(conf),
              "focal_loss: loc (N, A, 4, 1) and conf (N, A, K, 1)");
    IB_ASSERT(alpha >= 0 && alpha <= 1 && gamma >= 0, "focal_loss: alpha %g, gamma %g", (double)alpha, (double)gamma);
    int N = loc->shape[0], A = loc->shape[1], K = conf->shape[2];
    int64_t NA = (int64_t)N * A;
    focal_saved *sv = ib_arena_alloc(ctx->arena, sizeof *sv);
    int32_t *lab = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)NA);
    float *lt = ib_arena_alloc(ctx->arena, sizeof(float) * 4 * (size_t)NA);
    memcpy(lab, labels, sizeof(int32_t) * (size_t)NA);
    memcpy(lt, loc_t, sizeof(float) * 4 * (size_t)NA);
    sv->labels = lab, sv->loc_t = lt, sv->alpha = alpha, sv->gamma = gamma;
    double total = 0;
    int64_t npos = 0;
    for (int64_t i = 0; i < NA; i++) {
        IB_ASSERT(lab[i] >= 0 && lab[i] < K, "focal_loss: label %d of %d classes", lab[i], K);
        for (int j = 1; j < K; j++) {
            double dz;
            total += focal_term(conf->data[i * K + j], lab[i] == j, alpha, gamma, &dz);
        }
        if (lab[i] > 0) npos++, total += smooth_l1_box(loc->data + i * 4, lt + i * 4);
    }
    sv->denom = npos > 0 ? (double)npos : 1.0;
    ib_tensor *y = ib_tensor_new(ctx, 1, (int[]){1});
    y->data[0] = (float)(total / sv->denom);
    ib_tensor *in[2] = {loc, conf};
    ib_node *n = ib_record(ctx, &op_focal_loss, y, 2, in);
    if (n) n->saved = sv;
    return y;
}

// ---------------------------------------------------------------------------------------------
// Post-processing

typedef struct {
    float score;
    int i;
} cand;
static int cmp_cand(const void *x, const void *y) {
    const cand *p = x, *q = y;
    if (p->score != q->score) return p->score > q->score ? -1 : 1;
    return p->i - q->i;
}

enum { PRE_NMS = 200 };

int ib_ssd_postprocess(const ib_ssd_cfg *c, const float *anchors, int n_anchors, const float *loc, const float *conf,
                       float *boxes, float *scores, int32_t *labels) {
    int K = c->classes + 1;
    float *prob = malloc(sizeof(float) * (size_t)n_anchors * (size_t)K);
    cand *cs = malloc(sizeof(cand) * (size_t)n_anchors);
    int cap = c->classes * PRE_NMS + 1;
    float *kb = malloc(sizeof(float) * 4 * (size_t)cap), *ks = malloc(sizeof(float) * (size_t)cap);
    int32_t *kl = malloc(sizeof(int32_t) * (size_t)cap);
    cand *all = malloc(sizeof(cand) * (size_t)cap);
    float *cb = malloc(sizeof(float) * 4 * PRE_NMS);
    IB_ASSERT(prob && cs && kb && ks && kl && all && cb, "out of memory in detection post-processing");
    for (int a = 0; a < n_anchors; a++) {
        const float *z = conf + (int64_t)a * K;
        if (c->focal) {   // independent sigmoids; column 0 unused
            prob[(int64_t)a * K] = 0;
            for (int j = 1; j < K; j++) prob[(int64_t)a * K + j] = (float)exp(log_sigmoid(z[j]));
            continue;
        }
        double l = lse_row(z, K);
        for (int j = 0; j < K; j++) prob[(int64_t)a * K + j] = (float)exp((double)z[j] - l);
    }
    int nk = 0;
    for (int cl = 1; cl < K; cl++) {
        int nc = 0;
        for (int a = 0; a < n_anchors; a++) {
            float p = prob[(int64_t)a * K + cl];
            if (p > c->score_thr) cs[nc++] = (cand){p, a};
        }
        qsort(cs, (size_t)nc, sizeof *cs, cmp_cand);
        if (nc > PRE_NMS) nc = PRE_NMS;
        unsigned char keep[PRE_NMS];
        for (int i = 0; i < nc; i++) {
            float *bx = cb + i * 4;
            ib_ssd_decode(anchors + (int64_t)cs[i].i * 4, loc + (int64_t)cs[i].i * 4, bx);
            for (int j = 0; j < 4; j++) bx[j] = fminf(fmaxf(bx[j], 0.f), 1.f);
            keep[i] = bx[2] > bx[0] && bx[3] > bx[1];
        }
        for (int i = 0; i < nc; i++) {
            if (!keep[i]) continue;
            for (int j = i + 1; j < nc; j++)
                if (keep[j] && iou_corners(cb + i * 4, cb + j * 4) > c->nms_iou) keep[j] = 0;
            memcpy(kb + nk * 4, cb + i * 4, sizeof(float) * 4);
            ks[nk] = cs[i].score, kl[nk] = cl - 1;
            all[nk] = (cand){cs[i].score, nk};
            nk++;
        }
    }
    qsort(all, (size_t)nk, sizeof *all, cmp_cand);
    int n = nk < c->max_dets ? nk : c->max_dets;
    for (int i = 0; i < n; i++) {
        memcpy(boxes + i * 4, kb + all[i].i * 4, sizeof(float) * 4);
        scores[i] = ks[all[i].i], labels[i] = kl[all[i].i];
    }
    free(prob), free(cs), free(kb), free(ks), free(kl), free(all), free(cb);
    return n;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

typedef struct {
    const ib_detector *d;
    ib_status (*extra)(ib_h5 *f, void *user);
    void *user;
} save_ctx;

static ib_status save_head(ib_h5 *f, void *user) {
    save_ctx *sc = user;
    ib_status s = ib_params_write(f, &sc->d->ps);
    if (!s) s = ib_h5_set_attr_str(f, "/", "task", "detect");
    if (!s) {
        char *j = ib_ssd_cfg_to_json(&sc->d->cfg);
        s = j ? ib_h5_set_attr_str(f, "/", "detect", j) : ib_fail(IB_ERR_NOMEM, "out of memory");
        free(j);
    }
    if (!s && sc->extra) s = sc->extra(f, sc->user);
    return s;
}

ib_status ib_detector_save(const ib_detector *d, const char *path, ib_status (*extra)(ib_h5 *f, void *user), void *user) {
    save_ctx sc = {d, extra, user};
    return ib_ckpt_save(&d->net, path, save_head, &sc);
}

ib_status ib_ckpt_task(const char *path, char *buf, size_t n) {
    ib_h5 *f;
    ib_status s = ib_h5_open(&f, path);
    if (s) return s;
    char *t = NULL;
    if (ib_h5_attr_str(f, "/", "task", &t)) snprintf(buf, n, "classify");
    else snprintf(buf, n, "%s", t);
    free(t);
    ib_h5_close(f);
    return IB_OK;
}

ib_status ib_detector_load(ib_detector *d, const char *path) {
    memset(d, 0, sizeof *d);
    ib_h5 *f;
    ib_status s = ib_h5_open(&f, path);
    if (s) return s;
    char *t = NULL, *j = NULL;
    ib_ssd_cfg cfg;
    if (ib_h5_attr_str(f, "/", "task", &t) || strcmp(t, "detect") || ib_h5_attr_str(f, "/", "detect", &j))
        s = ib_fail(IB_ERR_FORMAT, "%s: not a detection checkpoint (no task = \"detect\" and detect attributes)", path);
    if (!s) {
        char src[600];
        snprintf(src, sizeof src, "%s (detect attribute)", path);
        s = ib_ssd_cfg_parse(&cfg, j, src);
    }
    free(t), free(j);
    ib_net net;
    memset(&net, 0, sizeof net);
    if (!s) s = ib_ckpt_load(&net, path);
    if (!s) {
        int res = net.arch.input > 0 ? net.arch.input : 320;
        s = ib_detector_build(d, &net, &cfg, res, 0);
        if (!s && d->cfg.n_extra != cfg.n_extra)
            s = ib_fail(IB_ERR_FORMAT, "%s: %d extra levels recorded, %d fit the input %d", path, cfg.n_extra, d->cfg.n_extra, res);
        if (!s) s = ib_params_read(f, &d->ps);
        if (s) ib_detector_free(d);
    }
    ib_h5_close(f);
    return s;
}
