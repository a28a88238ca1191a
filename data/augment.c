// Augmentation of one sample: crops, resizes, flips and colour changes that move the image, its boxes
// and its mask together, so detection and segmentation targets stay aligned with their pixels. The
// random versions draw only from the ib_rng they are handed: a seed fixes the result.
#include "data/loader.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }
static uint8_t to_u8(float v) { return (uint8_t)lrintf(clampf(v, 0.0f, 255.0f)); }

// Maps every box through x' = (x - x0) * sx, y' = (y - y0) * sy, clips it to w x h and drops those
// left without area (in place).
static void map_boxes(ib_sample *s, float x0, float y0, float sx, float sy, int w, int h) {
    int k = 0;
    for (int i = 0; i < s->n_boxes; i++) {
        ib_box b = s->boxes[i];
        b.x0 = clampf((b.x0 - x0) * sx, 0.0f, (float)w);
        b.x1 = clampf((b.x1 - x0) * sx, 0.0f, (float)w);
        b.y0 = clampf((b.y0 - y0) * sy, 0.0f, (float)h);
        b.y1 = clampf((b.y1 - y0) * sy, 0.0f, (float)h);
        if (b.x1 > b.x0 && b.y1 > b.y0) s->boxes[k++] = b;
    }
    s->n_boxes = k;
    if (k == 0) {
        free(s->boxes);
        s->boxes = NULL;
    }
}

// Swaps in new image and mask buffers (the mask only when the sample has one).
static void replace_buffers(ib_sample *s, uint8_t *rgb, uint8_t *mask, int h, int w) {
    free(s->rgb);
    free(s->mask);
    s->rgb = rgb;
    s->mask = mask;
    s->h = h;
    s->w = w;
}

ib_status ib_sample_crop(ib_sample *s, int y0, int x0, int h, int w, int mask_fill) {
    // rgb: (s->h, s->w, 3) -> (h, w, 3), zero outside the source; mask likewise with mask_fill
    IB_ASSERT(h > 0 && w > 0, "ib_sample_crop: empty window %dx%d", h, w);
    uint8_t *rgb = calloc((size_t)h * w * 3, 1);
    uint8_t *mask = s->mask ? malloc((size_t)h * w) : NULL;
    if (!rgb || (s->mask && !mask)) {
        free(rgb);
        free(mask);
        return ib_fail(IB_ERR_NOMEM, "ib_sample_crop: out of memory for a %dx%d crop", h, w);
    }
    if (mask) memset(mask, mask_fill, (size_t)h * w);
    int ya = y0 > 0 ? y0 : 0, yb = y0 + h < s->h ? y0 + h : s->h;
    int xa = x0 > 0 ? x0 : 0, xb = x0 + w < s->w ? x0 + w : s->w;
    for (int y = ya; y < yb && xa < xb; y++) {
        memcpy(rgb + ((size_t)(y - y0) * w + (xa - x0)) * 3, s->rgb + ((size_t)y * s->w + xa) * 3,
               (size_t)(xb - xa) * 3);
        if (mask)
            memcpy(mask + (size_t)(y - y0) * w + (xa - x0), s->mask + (size_t)y * s->w + xa, (size_t)(xb - xa));
    }
    replace_buffers(s, rgb, mask, h, w);
    map_boxes(s, (float)x0, (float)y0, 1.0f, 1.0f, w, h);
    return IB_OK;
}

// Source index pairs and weights for one axis of a bilinear resize, computed as torch does in float
// (align_corners=False): src = (dst + 0.5) * in / out - 0.5, clamped at 0, so the sampled positions
// and weights equal PyTorch's (and core/resize.c's) bit for bit.
static void bilinear_axis(int in, int out, int *i0, int *i1, float *l0, float *l1) {
    float scale = (float)in / (float)out;
    for (int d = 0; d < out; d++) {
        float src = ((float)d + 0.5f) * scale - 0.5f;
        if (src < 0) src = 0;
        int i = (int)src;
        float lambda = src - (float)i;
        if (lambda > 1) lambda = 1;
        i0[d] = i;
        i1[d] = i + (i < in - 1 ? 1 : 0);
        l1[d] = lambda;
        l0[d] = 1.0f - lambda;
    }
}

// torch's nearest source index: min(floor(dst * (in / out)), in - 1), with its exact shortcuts.
static int nearest_src(int d, int in, int out) {
    int64_t s;
    if (out == in) s = d;
    else if (out == 2 * in) s = d >> 1;
    else s = (int64_t)floorf((float)d * ((float)in / (float)out));
    return (int)(s < in - 1 ? s : in - 1);
}

ib_status ib_sample_resized_crop(ib_sample *s, int y0, int x0, int ch, int cw, int oh, int ow) {
    // rgb: window (ch, cw, 3) of (s->h, s->w, 3) -> (oh, ow, 3) bilinear; mask nearest
    IB_ASSERT(ch > 0 && cw > 0 && oh > 0 && ow > 0, "ib_sample_resized_crop: empty size");
    IB_ASSERT(y0 >= 0 && x0 >= 0 && y0 + ch <= s->h && x0 + cw <= s->w,
              "ib_sample_resized_crop: window %d,%d %dx%d outside the %dx%d image", y0, x0, ch, cw, s->h, s->w);
    if (ch == oh && cw == ow) return ib_sample_crop(s, y0, x0, ch, cw, 0);
    uint8_t *rgb = malloc((size_t)oh * ow * 3);
    uint8_t *mask = s->mask ? malloc((size_t)oh * ow) : NULL;
    int *xi = malloc(sizeof(int) * 2 * (size_t)(ow + oh));
    float *xl = malloc(sizeof(float) * 2 * (size_t)(ow + oh));
    if (!rgb || (s->mask && !mask) || !xi || !xl) {
        free(rgb);
        free(mask);
        free(xi);
        free(xl);
        return ib_fail(IB_ERR_NOMEM, "ib_sample_resized_crop: out of memory for %dx%d", oh, ow);
    }
    int *xi0 = xi, *xi1 = xi + ow, *yi0 = xi + 2 * ow, *yi1 = yi0 + oh;
    float *xl0 = xl, *xl1 = xl + ow, *yl0 = xl + 2 * ow, *yl1 = yl0 + oh;
    bilinear_axis(cw, ow, xi0, xi1, xl0, xl1);
    bilinear_axis(ch, oh, yi0, yi1, yl0, yl1);
    const uint8_t *src = s->rgb;
    int sw = s->w;
    for (int y = 0; y < oh; y++) {
        const uint8_t *r0 = src + ((size_t)(y0 + yi0[y]) * sw + x0) * 3;
        const uint8_t *r1 = src + ((size_t)(y0 + yi1[y]) * sw + x0) * 3;
        float h0 = yl0[y], h1 = yl1[y];
        uint8_t *o = rgb + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++) {
            int a = xi0[x] * 3, b = xi1[x] * 3;
            float w0 = xl0[x], w1 = xl1[x];
            for (int c = 0; c < 3; c++)
                o[x * 3 + c] = to_u8(h0 * (w0 * (float)r0[a + c] + w1 * (float)r0[b + c]) +
                                     h1 * (w0 * (float)r1[a + c] + w1 * (float)r1[b + c]));
        }
    }
    if (mask) {
        for (int x = 0; x < ow; x++) xi0[x] = nearest_src(x, cw, ow);
        for (int y = 0; y < oh; y++) {
            const uint8_t *mr = s->mask + (size_t)(y0 + nearest_src(y, ch, oh)) * sw + x0;
            for (int x = 0; x < ow; x++) mask[(size_t)y * ow + x] = mr[xi0[x]];
        }
    }
    free(xi);
    free(xl);
    replace_buffers(s, rgb, mask, oh, ow);
    map_boxes(s, (float)x0, (float)y0, (float)ow / (float)cw, (float)oh / (float)ch, ow, oh);
    return IB_OK;
}

ib_status ib_sample_resize(ib_sample *s, int oh, int ow) { return ib_sample_resized_crop(s, 0, 0, s->h, s->w, oh, ow); }

void ib_sample_hflip(ib_sample *s) {
    // rgb: (h, w, 3) in place, columns reversed; mask likewise; x -> w - x for boxes
    int w = s->w;
    for (int y = 0; y < s->h; y++) {
        uint8_t *row = s->rgb + (size_t)y * w * 3;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[a * 3 + c];
                row[a * 3 + c] = row[b * 3 + c];
                row[b * 3 + c] = t;
            }
        if (s->mask) {
            uint8_t *m = s->mask + (size_t)y * w;
            for (int a = 0, b = w - 1; a < b; a++, b--) {
                uint8_t t = m[a];
                m[a] = m[b];
                m[b] = t;
            }
        }
    }
    for (int i = 0; i < s->n_boxes; i++) {
        float x0 = s->boxes[i].x0;
        s->boxes[i].x0 = (float)w - s->boxes[i].x1;
        s->boxes[i].x1 = (float)w - x0;
    }
}

void ib_sample_normalize(const ib_sample *s, const float mean[3], const float std[3], float *out) {
    // image: (h, w, 3) uint8 -> out: (3, h, w) float
    int64_t hw = (int64_t)s->h * s->w;
    for (int c = 0; c < 3; c++) {
        float m = mean[c], sd = std[c];
        float *o = out + c * hw;
        const uint8_t *p = s->rgb + c;
        // Division, not a multiply by 1/std: the same float result as torch's (x - mean) / std.
        for (int64_t i = 0; i < hw; i++) o[i] = ((float)p[i * 3] - m) / sd;
    }
}

// ---------------------------------------------------------------------------------------------
// Random augmentations

static float uniform_in(ib_rng *r, float lo, float hi) { return lo + (hi - lo) * ib_rng_uniform(r); }

void ib_aug_rrc_window(ib_rng *r, int height, int width, const float scale[2], const float ratio[2], int *y0,
                       int *x0, int *ch, int *cw) {
    // torchvision.transforms.RandomResizedCrop.get_params
    double area = (double)height * width;
    double log_lo = log(ratio[0]), log_hi = log(ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * uniform_in(r, scale[0], scale[1]);
        double aspect = exp(log_lo + (log_hi - log_lo) * ib_rng_uniform(r));
        // rint rounds half to even, as Python's round().
        int w = (int)rint(sqrt(target_area * aspect));
        int h = (int)rint(sqrt(target_area / aspect));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            *y0 = (int)ib_rng_below(r, (uint32_t)(height - h + 1));
            *x0 = (int)ib_rng_below(r, (uint32_t)(width - w + 1));
            *ch = h;
            *cw = w;
            return;
        }
    }
    double in_ratio = (double)width / height;
    int w = width, h = height;
    if (in_ratio < ratio[0]) h = (int)rint(w / ratio[0]);
    else if (in_ratio > ratio[1]) w = (int)rint(h * ratio[1]);
    *ch = clampi(h, 1, height);
    *cw = clampi(w, 1, width);
    *y0 = (height - *ch) / 2;
    *x0 = (width - *cw) / 2;
}

ib_status ib_aug_random_resized_crop(ib_sample *s, ib_rng *r, int oh, int ow, const float scale[2],
                                     const float ratio[2]) {
    int y0, x0, ch, cw;
    ib_aug_rrc_window(r, s->h, s->w, scale, ratio, &y0, &x0, &ch, &cw);
    return ib_sample_resized_crop(s, y0, x0, ch, cw, oh, ow);
}

// One axis of the pad-crop: the window's start in image coordinates.
static int pad_crop_offset(ib_rng *r, int n, int pad, int c) {
    if (n + 2 * pad >= c) return (int)ib_rng_below(r, (uint32_t)(n + 2 * pad - c + 1)) - pad;
    return -(int)ib_rng_below(r, (uint32_t)(c - n + 1));   // the window holds the whole image
}

ib_status ib_aug_pad_crop(ib_sample *s, ib_rng *r, int pad, int ch, int cw, int mask_fill) {
    IB_ASSERT(pad >= 0 && ch > 0 && cw > 0, "ib_aug_pad_crop: pad %d, crop %dx%d", pad, ch, cw);
    int y = pad_crop_offset(r, s->h, pad, ch);
    int x = pad_crop_offset(r, s->w, pad, cw);
    return ib_sample_crop(s, y, x, ch, cw, mask_fill);
}

void ib_aug_hflip(ib_sample *s, ib_rng *r, float p) {
    if (ib_rng_uniform(r) < p) ib_sample_hflip(s);
}

ib_status ib_aug_scale_jitter(ib_sample *s, ib_rng *r, float lo, float hi) {
    IB_ASSERT(lo > 0 && hi >= lo, "ib_aug_scale_jitter: range [%g, %g]", lo, hi);
    float f = uniform_in(r, lo, hi);
    int oh = (int)lrintf((float)s->h * f), ow = (int)lrintf((float)s->w * f);
    if (oh < 1) oh = 1;
    if (ow < 1) ow = 1;
    if (oh == s->h && ow == s->w) return IB_OK;
    return ib_sample_resize(s, oh, ow);
}

static float gray_of(const uint8_t *p) { return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]; }

void ib_aug_color_jitter(ib_sample *s, ib_rng *r, float brightness, float contrast, float saturation) {
    // rgb: (h, w, 3) in place
    int order[3] = {0, 1, 2};
    ib_rng_shuffle(r, order, 3);
    const float strength[3] = {brightness, contrast, saturation};
    int64_t n = (int64_t)s->h * s->w;
    uint8_t *p = s->rgb;
    for (int k = 0; k < 3; k++) {
        int op = order[k];
        if (strength[op] <= 0) continue;
        float lo = 1.0f - strength[op];
        float f = uniform_in(r, lo < 0 ? 0 : lo, 1.0f + strength[op]);
        if (op == 0) {
            for (int64_t i = 0; i < n * 3; i++) p[i] = to_u8(f * (float)p[i]);
        } else if (op == 1) {
            // Contrast blends towards the image's mean gray (summed in double: image-size independent).
            double sum = 0;
            for (int64_t i = 0; i < n; i++) sum += gray_of(p + i * 3);
            float mean = n > 0 ? (float)(sum / (double)n) : 0.0f;
            for (int64_t i = 0; i < n * 3; i++) p[i] = to_u8(f * (float)p[i] + (1.0f - f) * mean);
        } else {
            for (int64_t i = 0; i < n; i++) {
                float g = gray_of(p + i * 3);
                for (int c = 0; c < 3; c++) p[i * 3 + c] = to_u8(f * (float)p[i * 3 + c] + (1.0f - f) * g);
            }
        }
    }
}

static float box_iou(const ib_box *b, float x0, float y0, float x1, float y1) {
    float iw = fminf(b->x1, x1) - fmaxf(b->x0, x0), ih = fminf(b->y1, y1) - fmaxf(b->y0, y0);
    if (iw <= 0 || ih <= 0) return 0.0f;
    float inter = iw * ih;
    float uni = (b->x1 - b->x0) * (b->y1 - b->y0) + (x1 - x0) * (y1 - y0) - inter;
    return uni > 0 ? inter / uni : 0.0f;
}

static int centre_inside(const ib_box *b, int left, int top, int right, int bottom) {
    float cx = 0.5f * (b->x0 + b->x1), cy = 0.5f * (b->y0 + b->y1);
    return (float)left < cx && cx < (float)right && (float)top < cy && cy < (float)bottom;
}

ib_status ib_aug_ssd_crop(ib_sample *s, ib_rng *r, int mask_fill) {
    // -1: keep the whole image; 0: any patch holding a box centre; else the minimum IoU.
    static const float choices[7] = {-1.0f, 0.0f, 0.1f, 0.3f, 0.5f, 0.7f, 0.9f};
    if (s->n_boxes == 0) return IB_OK;
    int W = s->w, H = s->h;
    // torchvision loops until a choice succeeds; a bound keeps a sample with tiny boxes from spinning.
    for (int outer = 0; outer < 50; outer++) {
        float min_iou = choices[ib_rng_below(r, 7)];
        if (min_iou < 0) return IB_OK;
        for (int trial = 0; trial < 40; trial++) {
            int nw = (int)((float)W * uniform_in(r, 0.3f, 1.0f));
            int nh = (int)((float)H * uniform_in(r, 0.3f, 1.0f));
            if (nw < 1 || nh < 1) continue;
            float aspect = (float)nw / (float)nh;
            if (aspect < 0.5f || aspect > 2.0f) continue;
            int left = (int)((float)(W - nw) * ib_rng_uniform(r));
            int top = (int)((float)(H - nh) * ib_rng_uniform(r));
            int right = left + nw, bottom = top + nh;
            int any = 0;
            float best = 0;
            for (int i = 0; i < s->n_boxes; i++) {
                if (!centre_inside(&s->boxes[i], left, top, right, bottom)) continue;
                any = 1;
                float iou = box_iou(&s->boxes[i], (float)left, (float)top, (float)right, (float)bottom);
                if (iou > best) best = iou;
            }
            if (!any || best < min_iou) continue;
            // Keep the boxes whose centre is inside; crop clips them (they cannot lose all area).
            int k = 0;
            for (int i = 0; i < s->n_boxes; i++)
                if (centre_inside(&s->boxes[i], left, top, right, bottom)) s->boxes[k++] = s->boxes[i];
            s->n_boxes = k;
            return ib_sample_crop(s, top, left, nh, nw, mask_fill);
        }
    }
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// The pipeline

void ib_aug_opts_default(ib_aug_opts *o, int out_h, int out_w) {
    memset(o, 0, sizeof *o);
    o->out_h = out_h;
    o->out_w = out_w;
    o->crop = IB_CROP_NONE;
    o->pad = 4;
    o->rrc_scale[0] = 0.08f;
    o->rrc_scale[1] = 1.0f;
    o->rrc_ratio[0] = 3.0f / 4.0f;
    o->rrc_ratio[1] = 4.0f / 3.0f;
    const float mean[3] = {0.485f * 255, 0.456f * 255, 0.406f * 255};
    const float std[3] = {0.229f * 255, 0.224f * 255, 0.225f * 255};
    memcpy(o->mean, mean, sizeof mean);
    memcpy(o->std, std, sizeof std);
    o->mask_fill = 255;
}

ib_status ib_aug_apply(const ib_aug_opts *o, ib_sample *s, ib_rng *r) {
    IB_ASSERT(o->out_h > 0 && o->out_w > 0, "ib_aug_apply: output size %dx%d", o->out_h, o->out_w);
    ib_status st = IB_OK;
    if (o->scale_jitter[1] > 0 && (st = ib_aug_scale_jitter(s, r, o->scale_jitter[0], o->scale_jitter[1]))) return st;
    switch (o->crop) {
    case IB_CROP_NONE: break;
    case IB_CROP_CENTER: {
        // The largest central window with the output's aspect ratio.
        int ch = s->h, cw = s->w;
        if ((int64_t)s->w * o->out_h > (int64_t)s->h * o->out_w)
            cw = clampi((int)lrint((double)s->h * o->out_w / o->out_h), 1, s->w);
        else
            ch = clampi((int)lrint((double)s->w * o->out_h / o->out_w), 1, s->h);
        st = ib_sample_resized_crop(s, (s->h - ch) / 2, (s->w - cw) / 2, ch, cw, o->out_h, o->out_w);
        break;
    }
    case IB_CROP_PAD: st = ib_aug_pad_crop(s, r, o->pad, o->out_h, o->out_w, o->mask_fill); break;
    case IB_CROP_RESIZED: st = ib_aug_random_resized_crop(s, r, o->out_h, o->out_w, o->rrc_scale, o->rrc_ratio); break;
    case IB_CROP_SSD: st = ib_aug_ssd_crop(s, r, o->mask_fill); break;
    }
    if (st) return st;
    if (o->hflip_p > 0) ib_aug_hflip(s, r, o->hflip_p);
    if (o->brightness > 0 || o->contrast > 0 || o->saturation > 0)
        ib_aug_color_jitter(s, r, o->brightness, o->contrast, o->saturation);
    if (s->h != o->out_h || s->w != o->out_w) st = ib_sample_resize(s, o->out_h, o->out_w);
    return st;
}
