// The latency of a task's network (docs/LATENCY.md, "Segmenters and detectors"): its head as one latency-table
// row (ib_seg_lut_task, ib_det_lut_task), that row timed on this CPU, and the whole network timed end to end.
// A segmenter runs its backbone up to the last block at the head's high stride, then the head up to the logits
// upsampled to the input, so its prediction is the stem, the blocks up to that one and the head's row: blocks
// after the cut and the classifier head never run, and a segmentation search budgeted on classifier latency
// counts them. A detector runs the whole backbone and the head conv, then SSDLite instead of the pool and
// the classifier.
#include "search/search.h"
#include "tasks/detect.h"
#include "tasks/segment.h"

#include <stdlib.h>
#include <string.h>

static int down(int h, int stride) { return (h + stride - 1) / stride; }

// The feature size after block b (-1: the stem) of an arch at res x res ("same" padding, as ib_arch_macs).
static int size_after(const ib_arch *a, int res, int b) {
    int h = down(res, a->stem_stride);
    for (int i = 0; i <= b; i++) h = down(h, a->blocks[i].stride);
    return h;
}

static int width_after(const ib_arch *a, int b) { return b < 0 ? a->stem_out : a->blocks[b].out; }

// A random (1, c, h, h) feature in *t over a malloc'd buffer (returned; NULL when out of memory).
static float *random_feature(ib_rng *rng, int c, int h, ib_tensor *t) {
    float *buf = malloc(sizeof(float) * (size_t)c * (size_t)h * (size_t)h);
    if (!buf) return NULL;
    ib_rng_fill_normal(rng, buf, (int64_t)c * h * h, 0, 1);
    ib_tensor_init(t, buf, 4, (int[]){1, c, h, h});
    return buf;
}

ib_status ib_seg_lut_task(const ib_arch *backbone, int classes, const ib_seg_head_cfg *cfg, int res, ib_lut_task *out) {
    memset(out, 0, sizeof *out);
    if (res < 8) return ib_fail(IB_ERR_ARG, "segmenter latency at res %d: at least 8", res);
    // The head's taps as ib_seg_head_register finds them (its errors name what is missing).
    ib_seg_head head;
    ib_params ps;
    ib_params_init(&ps);
    ib_status s = ib_seg_head_register(&head, &ps, backbone, classes, cfg);
    ib_params_free(&ps);
    if (s) return s;
    ib_lut_key *k = &out->head;
    int bifpn = head.levels > 0;
    int hi = bifpn ? head.level_block[head.levels - 1] : head.high_block;
    int lo = bifpn ? head.level_block[0] : head.low_block;
    out->cut = hi + 1;
    k->op = bifpn ? IB_LUT_BIFPN : IB_LUT_DEEPLAB;
    k->cin = width_after(backbone, hi), k->cout = classes, k->h = k->w = res;
    k->stride = cfg->high_stride, k->kernel = head.cfg.low_stride, k->expand = width_after(backbone, lo);
    if (bifpn) {
        int mid = 0;
        for (int l = 1; l + 1 < head.levels; l++) mid += width_after(backbone, head.level_block[l]);
        k->groups = head.cfg.width, k->r_in = (float)head.cfg.repeats, k->r_out = (float)mid;   // the arch's when searched
    } else {
        k->groups = cfg->aspp, k->r_in = (float)cfg->decoder, k->r_out = (float)cfg->low;
    }
    return IB_OK;
}

// The head on random features of its taps' shapes.
typedef struct head_run {
    ib_seg_head head;
    ib_tensor feats[IB_SEG_BIFPN_MAX_LEVELS];   // deeplab: [0] low, [1] high; bifpn: every level, finest first
    ib_tensor *fp[IB_SEG_BIFPN_MAX_LEVELS];
    int res;
} head_run;

static ib_tensor *head_fwd(void *user, ib_ctx *ctx, ib_tensor *x) {
    (void)x;
    head_run *r = user;
    if (r->head.levels > 0) return ib_seg_bifpn_forward(ctx, &r->head, r->fp, r->res, r->res);
    return ib_seg_head_forward(ctx, &r->head, r->fp[0], r->fp[1], r->res, r->res);
}

ib_status ib_seg_time_head(const ib_arch *backbone, int classes, const ib_seg_head_cfg *cfg, int res,
                           const ib_lut_timing *tm, double *ms) {
    head_run r;
    memset(&r, 0, sizeof r);
    r.res = res;
    ib_params ps;
    ib_params_init(&ps);
    ib_status s = ib_seg_head_register(&r.head, &ps, backbone, classes, cfg);
    if (!s) s = ib_params_alloc(&ps);
    if (s) {
        ib_params_free(&ps);
        return s;
    }
    ib_params_init_default(&ps, 0);
    int n = r.head.levels > 0 ? r.head.levels : 2;
    const int *blocks = r.head.levels > 0 ? r.head.level_block : (int[]){r.head.low_block, r.head.high_block};
    float *buf[IB_SEG_BIFPN_MAX_LEVELS] = {NULL};
    ib_rng rng;
    ib_rng_seed(&rng, 1, 0x5e9);
    for (int l = 0; l < n && !s; l++) {
        int c = width_after(backbone, blocks[l]), h = size_after(backbone, res, blocks[l]);
        if (!(buf[l] = random_feature(&rng, c, h, &r.feats[l]))) {
            s = ib_fail(IB_ERR_NOMEM, "out of memory for a %dx%dx%d feature", c, h, h);
            break;
        }
        r.fp[l] = &r.feats[l];
    }
    if (!s) s = ib_lut_time_forward(head_fwd, &r, 1, 1, 1, tm, (const ib_params *[]){&ps, NULL}, ms);
    for (int l = 0; l < n; l++) free(buf[l]);
    ib_params_free(&ps);
    return s;
}

// The whole segmenter: backbone up to the cut and head, logits at the input size.
typedef struct seg_run {
    ib_net net;
    ib_seg_head head;
} seg_run;

static ib_tensor *seg_fwd(void *user, ib_ctx *ctx, ib_tensor *x) {
    seg_run *r = user;
    return ib_seg_forward(ctx, &r->net, &r->head, x, 1);
}

ib_status ib_seg_time_whole(const ib_arch *backbone, int classes, const ib_seg_head_cfg *cfg, int res,
                            const ib_lut_timing *tm, double *ms) {
    if (res < 8) return ib_fail(IB_ERR_ARG, "timing a segmenter at res %d: at least 8", res);
    seg_run r;
    memset(&r, 0, sizeof r);
    ib_status s = ib_seg_build(&r.net, &r.head, backbone, classes, cfg);
    if (!s) {
        ib_net_init_weights(&r.net, 0);
        s = ib_lut_time_forward(seg_fwd, &r, 3, res, res, tm, NULL, ms);
    }
    ib_net_free(&r.net);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Detectors

ib_status ib_det_lut_task(const ib_arch *a, const ib_ssd_cfg *cfg, int res, ib_lut_task *out) {
    memset(out, 0, sizeof *out);
    if (res < 8) return ib_fail(IB_ERR_ARG, "detector latency at res %d: at least 8", res);
    ib_ssd_taps_info ti;
    ib_status s = ib_ssd_taps(a, cfg, res, &ti);
    if (s) return s;
    out->cut = a->n_blocks;
    if (a->head_out > 0) {   // the head conv alone: a "head" row with cout 0
        out->has_conv = 1;
        out->conv = ib_lut_key_head(a, a->blocks[a->n_blocks - 1].out, ti.size32, ti.size32);
        out->conv.cout = 0;
    }
    ib_lut_key *k = &out->head;
    k->op = IB_LUT_SSDLITE;
    k->cin = ti.c16, k->cout = cfg->classes, k->h = k->w = res, k->stride = ti.n_extra, k->kernel = cfg->n_ratios + 1;
    k->expand = ti.tap_exp ? ti.c16_in : 0, k->groups = ti.c32;
    int rest = 0;
    for (int e = 1; e < ti.n_extra; e++) rest += cfg->extra_out[e];
    k->r_in = ti.n_extra > 0 ? (float)cfg->extra_out[0] : 0, k->r_out = (float)rest;
    return IB_OK;
}

// The head on random features of its taps' shapes.
typedef struct det_run {
    ib_detector d;
    ib_cba exp;           // the expansion run again at stride 16 (when tapped)
    ib_tensor t16, h;
} det_run;

static ib_tensor *det_head_fwd(void *user, ib_ctx *ctx, ib_tensor *x) {
    (void)x;
    det_run *r = user;
    ib_tensor *loc, *conf;
    ib_detector_head_forward(ctx, &r->d, &r->t16, &r->h, r->d.tap_exp ? &r->exp : NULL, &loc, &conf);
    return conf;
}

ib_status ib_det_time_head(const ib_arch *a, const ib_ssd_cfg *cfg, int res, const ib_lut_timing *tm, double *ms) {
    det_run r;
    memset(&r, 0, sizeof r);
    ib_ssd_taps_info ti;
    ib_status s = ib_ssd_taps(a, cfg, res, &ti);
    if (!s) s = ib_detector_build_head(&r.d, a, cfg, res, 0);
    if (s) {
        ib_detector_free(&r.d);
        return s;
    }
    ib_params ps;
    ib_params_init(&ps);
    if (ti.tap_exp) ib_cba_init(&r.exp, &ps, "expansion", ti.c16_in, ti.c16, 1, 1, 1, a->act);
    float *b16 = NULL, *b32 = NULL;
    int s16 = (res + 15) / 16;
    if (!(s = ib_params_alloc(&ps))) {
        ib_params_init_default(&ps, 0);
        ib_rng rng;
        ib_rng_seed(&rng, 1, 0xde7);
        b16 = random_feature(&rng, ti.c16_in, s16, &r.t16);
        b32 = random_feature(&rng, ti.c32, ti.size32, &r.h);
        if (!b16 || !b32) s = ib_fail(IB_ERR_NOMEM, "out of memory for a detector's features");
    }
    if (!s) s = ib_lut_time_forward(det_head_fwd, &r, 1, 1, 1, tm, (const ib_params *[]){&ps, &r.d.ps, NULL}, ms);
    free(b16), free(b32);
    ib_params_free(&ps);
    ib_detector_free(&r.d);
    return s;
}

static ib_tensor *det_fwd(void *user, ib_ctx *ctx, ib_tensor *x) {
    ib_tensor *loc, *conf;
    ib_detector_forward(ctx, user, x, &loc, &conf);
    return conf;
}

ib_status ib_det_time_whole(const ib_arch *a, const ib_ssd_cfg *cfg, int res, const ib_lut_timing *tm, double *ms) {
    if (res < 8) return ib_fail(IB_ERR_ARG, "timing a detector at res %d: at least 8", res);
    ib_net net;
    ib_detector d;
    memset(&d, 0, sizeof d);
    ib_status s = ib_net_build(&net, a);
    if (s) return s;
    ib_net_init_weights(&net, 0);
    if (!(s = ib_detector_build(&d, &net, cfg, res, 0))) s = ib_lut_time_forward(det_fwd, &d, 3, res, res, tm, NULL, ms);
    ib_detector_free(&d);   // the net too: the detector took it over
    return s;
}
