// api/predict: one image in, the answer of the model's task out (include/ibnas.h, "Prediction"), the PNG
// writers and the drawing `ibnas predict` uses. Each task prepares the image as its evaluation does
// (classify: ib_eval's centre crop; detect: ib_eval_detect's whole-image resize and post-processing;
// segment: ib_eval_segment's resize and bilinear upsampling before the argmax), so a prediction is what the
// evaluation scored.
#include "api/api.h"
#include "tasks/detect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ib_status ib_image_read(const char *path, uint8_t **rgb, int *h, int *w) {
    if (!path || !rgb || !h || !w) return ib_fail(IB_ERR_ARG, "ib_image_read: a path and outputs are needed");
    return ib_decode_file(path, rgb, h, w);
}

// ib_png_write_rgb is data/encode.c's own (data/data.h declares it too).

ib_status ib_png_write_labels(const char *path, const uint8_t *labels, int h, int w, int classes) {
    if (classes == 0) return ib_png_write_indexed(path, labels, h, w, NULL, 0);
    return ib_png_write_classes(path, labels, h, w, classes);
}

void ib_class_color(int c, uint8_t rgb[3]) { ib_class_colour(c, rgb); }

void ib_predict_opts_default(ib_predict_opts *o) {
    memset(o, 0, sizeof *o);
    o->score_thresh = 0.3f;
}

void ib_prediction_free(ib_prediction *p) {
    if (!p) return;
    free(p->dets);
    free(p->labels);
    memset(p, 0, sizeof *p);
}

// A copy of the image as a sample, prepared by ib_api_sample_input into x (oh x ow).
static ib_status image_input(const uint8_t *rgb, int h, int w, ib_crop_mode crop, int oh, int ow, float *x) {
    ib_sample s;
    memset(&s, 0, sizeof s);
    s.h = h, s.w = w, s.label = -1;
    if (!(s.rgb = malloc((size_t)h * w * 3))) return ib_fail(IB_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
    memcpy(s.rgb, rgb, (size_t)h * w * 3);
    return ib_api_sample_input(&s, crop, oh, ow, x);
}

static ib_status predict_classify(ib_model *m, const float *x, int res, ib_prediction *p) {
    int k = m->net.arch.classes;
    float *logits = malloc(sizeof(float) * (size_t)k);
    if (!logits) return ib_fail(IB_ERR_NOMEM, "out of memory");
    ib_status s = ib_model_forward(m, x, 1, res, res, logits);
    if (!s) {
        // softmax in double; the top classes by selection, the lower index first among equals
        double mx = logits[0], sum = 0;
        for (int c = 1; c < k; c++) mx = logits[c] > mx ? logits[c] : mx;
        for (int c = 0; c < k; c++) sum += exp((double)logits[c] - mx);
        p->n_top = k < IB_PREDICT_TOP ? k : IB_PREDICT_TOP;
        for (int t = 0; t < p->n_top; t++) {
            int best = -1;
            for (int c = 0; c < k; c++) {
                int taken = 0;
                for (int u = 0; u < t; u++) taken |= p->top_class[u] == c;
                if (!taken && (best < 0 || logits[c] > logits[best])) best = c;
            }
            p->top_class[t] = best;
            p->top_prob[t] = (float)(exp((double)logits[best] - mx) / sum);
        }
    }
    free(logits);
    return s;
}

static ib_status predict_detect(ib_model *m, const float *x, int res, float thresh, ib_prediction *p) {
    ib_detector *d = m->det;
    ib_ctx *ctx = m->ctx;
    ib_tensor xt, *loc, *conf;
    ib_tensor_init(&xt, (float *)x, 4, (int[]){1, 3, res, res});
    ib_detector_forward(ctx, d, &xt, &loc, &conf);
    int md = d->cfg.max_dets;
    float *boxes = malloc(sizeof(float) * 4 * (size_t)md), *scores = malloc(sizeof(float) * (size_t)md);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)md);
    p->dets = malloc(sizeof(ib_detection) * (size_t)md);
    if (!boxes || !scores || !labels || !p->dets) {
        free(boxes), free(scores), free(labels);
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    int n = ib_ssd_postprocess(&d->cfg, d->anchors, d->n_anchors, loc->data, conf->data, boxes, scores, labels);
    // boxes in [0, 1] of the resized image -> the image's own pixels, as ib_eval_detect maps them
    for (int k = 0; k < n; k++) {
        if (!(scores[k] >= thresh)) continue;
        ib_detection *o = &p->dets[p->n_dets++];
        o->x0 = (float)(boxes[4 * k] * (double)p->width), o->y0 = (float)(boxes[4 * k + 1] * (double)p->height);
        o->x1 = (float)(boxes[4 * k + 2] * (double)p->width), o->y1 = (float)(boxes[4 * k + 3] * (double)p->height);
        o->score = scores[k];
        o->label = labels[k];
    }
    free(boxes), free(scores), free(labels);
    return IB_OK;
}

static ib_status predict_segment(ib_model *m, const float *x, int H, int W, ib_prediction *p) {
    ib_ctx *ctx = m->ctx;
    int64_t n = (int64_t)p->height * p->width;
    if (!(p->labels = malloc((size_t)n))) return ib_fail(IB_ERR_NOMEM, "out of memory for the label map");
    ib_tensor xt;
    ib_tensor_init(&xt, (float *)x, 4, (int[]){1, 3, H, W});
    ib_tensor *z = ib_seg_forward(ctx, &m->net, m->seg, &xt, 0);
    z = ib_resize_bilinear(ctx, z, p->height, p->width);
    int32_t *pred = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)n);
    ib_seg_argmax(z, pred);
    for (int64_t i = 0; i < n; i++) p->labels[i] = (uint8_t)pred[i];
    return IB_OK;
}

ib_status ib_predict(ib_model *m, const uint8_t *rgb, int h, int w, const ib_predict_opts *opts, ib_prediction *p) {
    if (!p) return ib_fail(IB_ERR_ARG, "ib_predict: no prediction given");
    memset(p, 0, sizeof *p);
    if (!m || !rgb || h < 1 || w < 1) return ib_fail(IB_ERR_ARG, "ib_predict: a model and an image of at least 1x1 are needed");
    ib_predict_opts d;
    if (!opts) ib_predict_opts_default(&d), opts = &d;
    int min_res = m->det ? 32 : 16;   // as ib_eval_detect / ib_eval_segment take them
    if (opts->res < 0 || (opts->res > 0 && opts->res < min_res))
        return ib_fail(IB_ERR_ARG, "ib_predict: res %d (0, or at least %d for a %s model)", opts->res, min_res,
                       ib_model_task(m));
    p->task = ib_model_task(m);
    p->height = h, p->width = w;
    p->classes = ib_model_classes(m);
    if (m->seg && p->classes > 256)
        return ib_fail(IB_ERR_ARG, "ib_predict: %s has %d classes; label maps hold at most 256", ib_model_name(m), p->classes);
    // the network's input size, as each task's evaluation chooses it
    int H = ib_model_input_size(m), W = H;
    if (m->seg && m->seg->cfg.in_h > 0) H = m->seg->cfg.in_h, W = m->seg->cfg.in_w;
    if (opts->res > 0) H = W = opts->res;
    float *x = malloc(sizeof(float) * 3 * (size_t)H * W);
    if (!x) return ib_fail(IB_ERR_NOMEM, "out of memory for a %dx%d input", W, H);
    ib_status s = image_input(rgb, h, w, m->det || m->seg ? IB_CROP_NONE : IB_CROP_CENTER, H, W, x);
    if (!s && !m->det && !m->seg) s = predict_classify(m, x, H, p);
    else if (!s) {
        if (!m->ctx) m->ctx = ib_ctx_new();
        ib_ctx_reset(m->ctx);
        m->ctx->recording = 0;
        m->ctx->training = 0;
        s = m->det ? predict_detect(m, x, H, opts->score_thresh, p) : predict_segment(m, x, H, W, p);
        ib_ctx_reset(m->ctx);
    }
    free(x);
    return s;
}

void ib_draw_detections(uint8_t *rgb, int h, int w, const ib_detection *d, int n) {
    ib_draw_detections_named(rgb, h, w, d, n, NULL);
}

void ib_draw_detections_named(uint8_t *rgb, int h, int w, const ib_detection *d, int n, const ib_model *m) {
    int side = h < w ? h : w;
    int thick = side >= 320 ? 2 : 1, scale = side >= 320 ? 2 : 1;
    // lowest score first, so the best boxes and labels end on top
    for (int k = n - 1; k >= 0; k--) {
        uint8_t c[3];
        ib_class_colour(d[k].label, c);
        ib_draw_rect(rgb, h, w, d[k].x0, d[k].y0, d[k].x1, d[k].y1, thick, c);
    }
    for (int k = n - 1; k >= 0; k--) {
        uint8_t c[3];
        ib_class_colour(d[k].label, c);
        char text[48];
        const char *name = ib_model_class_name(m, d[k].label);
        if (name)
            snprintf(text, sizeof text, "%.24s %.2f", name, (double)d[k].score);
        else
            snprintf(text, sizeof text, "%d %.2f", d[k].label, (double)d[k].score);
        int x = (int)floorf(d[k].x0), y = (int)floorf(d[k].y0) - 7 * scale;
        ib_draw_label(rgb, h, w, x, y < 0 ? (int)floorf(d[k].y0) : y, text, scale, c);
    }
}

void ib_draw_segmentation(uint8_t *rgb, int h, int w, const uint8_t *labels, float alpha, int skip) {
    ib_draw_overlay(rgb, h, w, labels, alpha, skip);
}
