// Augmentation and batching: boxes and masks stay on their pixels through every transform (checked on
// scenes of coloured rectangles), resizing matches core's torch-exact kernels, the pad-crop follows
// the Tiny ImageNet recipe, and the loader gives the same batches for any worker count.
#include "tests/test.h"
#include "data/loader.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Scenes of rectangles: colour k, box k and mask label k mark the same pixels.

#define N_RECT 5
#define BG_CLASS 9
static const uint8_t rect_rgb[N_RECT][3] = {
    {255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 0}, {0, 255, 255}};

// Rectangles are [x0, x1) x [y0, y1) in pixels, apart by at least 3 px so resampling cannot merge them.
static void make_scene(ib_sample *s, int h, int w, ib_rng *r) {
    memset(s, 0, sizeof *s);
    s->h = h;
    s->w = w;
    s->rgb = calloc((size_t)h * w * 3, 1);
    s->mask = malloc((size_t)h * w);
    memset(s->mask, BG_CLASS, (size_t)h * w);
    s->boxes = calloc(N_RECT, sizeof(ib_box));
    s->label = 3;
    // One rectangle per horizontal band of the image, with random extents inside its band.
    int band = w / N_RECT;
    for (int k = 0; k < N_RECT; k++) {
        int bx0 = k * band + 1, bx1 = (k + 1) * band - 2;
        int x0 = bx0 + (int)ib_rng_below(r, (uint32_t)(bx1 - bx0) / 3);
        int x1 = bx1 - (int)ib_rng_below(r, (uint32_t)(bx1 - bx0) / 3);
        int y0 = 1 + (int)ib_rng_below(r, (uint32_t)h / 3);
        int y1 = h - 1 - (int)ib_rng_below(r, (uint32_t)h / 3);
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                memcpy(s->rgb + ((size_t)y * w + x) * 3, rect_rgb[k], 3);
                s->mask[(size_t)y * w + x] = (uint8_t)k;
            }
        s->boxes[k] = (ib_box){(float)x0, (float)y0, (float)x1, (float)y1, k, 0};
    }
    s->n_boxes = N_RECT;
}

static int colour_of(const uint8_t *p) {
    for (int k = 0; k < N_RECT; k++)
        if (abs(p[0] - rect_rgb[k][0]) <= 24 && abs(p[1] - rect_rgb[k][1]) <= 24 && abs(p[2] - rect_rgb[k][2]) <= 24)
            return k;
    return -1;
}

// Every pixel of colour k and every mask pixel of class k has its centre within box k (to tol_in px;
// resampling blends the outer half pixel, so only nearly pure colours count); the box is no larger
// than its colour's pixels by more than tol (bilinear upscaling by s blurs edges by up to (1 + s)/2); the mask under the box centre is k; a colour
// with no box left has at most a fringe of pixels, unless `dropped_ok` (SSD crops drop boxes whose
// centre left the patch, while part of them stays visible). Returns 0 with a message on a violation.
static int check_aligned(const ib_sample *s, float tol_in, float tol, int dropped_ok, char *msg, size_t n) {
    int box_of[N_RECT];
    for (int k = 0; k < N_RECT; k++) box_of[k] = -1;
    for (int i = 0; i < s->n_boxes; i++) {
        const ib_box *b = &s->boxes[i];
        if (b->label < 0 || b->label >= N_RECT || box_of[b->label] >= 0) {
            snprintf(msg, n, "box %d has label %d (duplicate or out of range)", i, b->label);
            return 0;
        }
        if (!(b->x0 >= 0 && b->y0 >= 0 && b->x1 <= s->w && b->y1 <= s->h && b->x1 > b->x0 && b->y1 > b->y0)) {
            snprintf(msg, n, "box %d (%g %g %g %g) not inside the %dx%d image or empty", i, b->x0, b->y0, b->x1,
                     b->y1, s->w, s->h);
            return 0;
        }
        box_of[b->label] = i;
    }
    int cnt[N_RECT] = {0}, lo_x[N_RECT], lo_y[N_RECT], hi_x[N_RECT], hi_y[N_RECT];
    for (int k = 0; k < N_RECT; k++) lo_x[k] = lo_y[k] = 1 << 30, hi_x[k] = hi_y[k] = -1;
    for (int y = 0; y < s->h; y++)
        for (int x = 0; x < s->w; x++) {
            int k = colour_of(s->rgb + ((size_t)y * s->w + x) * 3);
            int m = s->mask ? s->mask[(size_t)y * s->w + x] : -1;
            for (int pass = 0; pass < 2; pass++) {
                int c = pass == 0 ? k : (m < N_RECT ? m : -1);
                if (c < 0) continue;
                if (box_of[c] < 0) {
                    if (pass == 0) cnt[c]++;
                    if (pass == 1 && !dropped_ok) {
                        snprintf(msg, n, "mask pixel (%d,%d) of class %d but no box %d", x, y, c, c);
                        return 0;
                    }
                    continue;
                }
                const ib_box *b = &s->boxes[box_of[c]];
                float cx = (float)x + 0.5f, cy = (float)y + 0.5f;
                if (cx < b->x0 - tol_in || cx > b->x1 + tol_in || cy < b->y0 - tol_in || cy > b->y1 + tol_in) {
                    snprintf(msg, n, "%s pixel (%d,%d) of class %d outside its box (%g %g %g %g)",
                             pass ? "mask" : "colour", x, y, c, b->x0, b->y0, b->x1, b->y1);
                    return 0;
                }
                if (pass == 0) {
                    cnt[c]++;
                    if (x < lo_x[c]) lo_x[c] = x;
                    if (y < lo_y[c]) lo_y[c] = y;
                    if (x > hi_x[c]) hi_x[c] = x;
                    if (y > hi_y[c]) hi_y[c] = y;
                }
            }
        }
    for (int k = 0; k < N_RECT; k++) {
        if (box_of[k] < 0) {
            if (!dropped_ok && cnt[k] > 2 * (s->w + s->h)) {
                snprintf(msg, n, "%d pixels of colour %d but its box was dropped", cnt[k], k);
                return 0;
            }
            continue;
        }
        const ib_box *b = &s->boxes[box_of[k]];
        // A box that kept at least a pixel's worth of area must have pixels of its colour filling it.
        if ((b->x1 - b->x0) >= 2 * tol + 1 && (b->y1 - b->y0) >= 2 * tol + 1) {
            if (cnt[k] == 0 || lo_x[k] > b->x0 + tol || hi_x[k] + 1 < b->x1 - tol || lo_y[k] > b->y0 + tol ||
                hi_y[k] + 1 < b->y1 - tol) {
                snprintf(msg, n, "box %d (%g %g %g %g) larger than its pixels [%d %d %d %d] (%d px)", k, b->x0,
                         b->y0, b->x1, b->y1, lo_x[k], lo_y[k], hi_x[k] + 1, hi_y[k] + 1, cnt[k]);
                return 0;
            }
            int mx = (int)floorf(0.5f * (b->x0 + b->x1)), my = (int)floorf(0.5f * (b->y0 + b->y1));
            if (s->mask && s->mask[(size_t)my * s->w + mx] != k) {
                snprintf(msg, n, "mask under box %d's centre (%d,%d) is %d", k, mx, my, s->mask[(size_t)my * s->w + mx]);
                return 0;
            }
        }
    }
    return 1;
}

static void sample_copy(ib_sample *d, const ib_sample *s) {
    *d = *s;
    d->rgb = malloc((size_t)s->h * s->w * 3);
    memcpy(d->rgb, s->rgb, (size_t)s->h * s->w * 3);
    d->mask = NULL;
    if (s->mask) {
        d->mask = malloc((size_t)s->h * s->w);
        memcpy(d->mask, s->mask, (size_t)s->h * s->w);
    }
    d->boxes = NULL;
    if (s->n_boxes) {
        d->boxes = malloc(sizeof(ib_box) * (size_t)s->n_boxes);
        memcpy(d->boxes, s->boxes, sizeof(ib_box) * (size_t)s->n_boxes);
    }
}

static int samples_equal(const ib_sample *a, const ib_sample *b) {
    if (a->h != b->h || a->w != b->w || a->n_boxes != b->n_boxes || !a->mask != !b->mask) return 0;
    if (memcmp(a->rgb, b->rgb, (size_t)a->h * a->w * 3)) return 0;
    if (a->mask && memcmp(a->mask, b->mask, (size_t)a->h * a->w)) return 0;
    return a->n_boxes == 0 || !memcmp(a->boxes, b->boxes, sizeof(ib_box) * (size_t)a->n_boxes);
}

typedef enum { A_FLIP, A_PADCROP, A_RRC, A_JITTER, A_SSD, A_PIPELINE_SSD, A_PIPELINE_SEG, A_PIPELINE_RRC } aug_kind;

static ib_status apply_kind(aug_kind kind, ib_sample *s, ib_rng *r) {
    static const float scale[2] = {0.08f, 1.0f}, ratio[2] = {3.0f / 4, 4.0f / 3};
    ib_aug_opts o;
    switch (kind) {
    case A_FLIP: ib_aug_hflip(s, r, 0.5f); return IB_OK;
    case A_PADCROP: return ib_aug_pad_crop(s, r, 8, s->h, s->w, 255);
    case A_RRC: return ib_aug_random_resized_crop(s, r, 48, 56, scale, ratio);
    case A_JITTER: return ib_aug_scale_jitter(s, r, 0.6f, 1.7f);
    case A_SSD: return ib_aug_ssd_crop(s, r, 255);
    case A_PIPELINE_SSD:
        ib_aug_opts_default(&o, 50, 60);
        o.crop = IB_CROP_SSD;
        o.hflip_p = 0.5f;
        return ib_aug_apply(&o, s, r);
    case A_PIPELINE_SEG:
        // The segmentation recipe: random scale, then a fixed crop padded where the image ran out.
        ib_aug_opts_default(&o, 64, 80);
        o.crop = IB_CROP_PAD;
        o.pad = 0;
        o.scale_jitter[0] = 0.5f;
        o.scale_jitter[1] = 2.0f;
        o.hflip_p = 0.5f;
        return ib_aug_apply(&o, s, r);
    case A_PIPELINE_RRC:
        ib_aug_opts_default(&o, 64, 64);
        o.crop = IB_CROP_RESIZED;
        o.hflip_p = 0.5f;
        return ib_aug_apply(&o, s, r);
    }
    return IB_OK;
}

// Runs one augmentation on 60 scenes: alignment after each, and the same seed gives the same sample.
static void check_kind(aug_kind kind, float tol_in, float tol, const char *name) {
    int dropped_ok = kind == A_SSD || kind == A_PIPELINE_SSD;
    char msg[512];
    int changed = 0;
    for (int seed = 0; seed < 60; seed++) {
        ib_rng g;
        ib_rng_seed(&g, (uint64_t)seed, 1);
        ib_sample s, t, orig;
        make_scene(&s, 60 + seed % 7 * 5, 100 + seed % 5 * 8, &g);
        sample_copy(&t, &s);
        sample_copy(&orig, &s);
        ib_rng r1, r2;
        ib_rng_seed(&r1, 1000 + (uint64_t)seed, 3);
        ib_rng_seed(&r2, 1000 + (uint64_t)seed, 3);
        CHECK(apply_kind(kind, &s, &r1) == IB_OK, "%s: %s", name, ib_errmsg());
        CHECK(apply_kind(kind, &t, &r2) == IB_OK, "%s: %s", name, ib_errmsg());
        int ok = check_aligned(&s, tol_in, tol, dropped_ok, msg, sizeof msg);
        int same = samples_equal(&s, &t);
        changed += !samples_equal(&s, &orig);
        ib_sample_free(&s);
        ib_sample_free(&t);
        ib_sample_free(&orig);
        CHECK(ok, "%s, seed %d: %s", name, seed, msg);
        CHECK(same, "%s, seed %d: the same seed gave a different sample", name, seed);
    }
    CHECK(changed >= 20, "%s changed only %d of 60 samples", name, changed);
}

TEST(aug_scene_is_aligned_to_start_with) {
    ib_rng g;
    ib_rng_seed(&g, 5, 1);
    ib_sample s;
    make_scene(&s, 40, 80, &g);
    char msg[256];
    int ok = check_aligned(&s, 0.0f, 0.0f, 0, msg, sizeof msg);
    // A box moved by 2 px must be caught by the check (it can fail).
    s.boxes[2].x0 += 2;
    s.boxes[2].x1 += 2;
    int bad = check_aligned(&s, 1.0f, 1.0f, 0, msg, sizeof msg);
    ib_sample_free(&s);
    CHECK(ok, "fresh scene: %s", msg);
    CHECK(!bad, "a shifted box passed the alignment check");
}

// Exact transforms (flip, crops) to the pixel; resampling ones within half a pixel inside and 2 px
// of edge blur.
TEST(aug_flip_keeps_alignment) { check_kind(A_FLIP, 0.0f, 0.0f, "flip"); }
TEST(aug_pad_crop_keeps_alignment) { check_kind(A_PADCROP, 0.0f, 0.0f, "pad-crop"); }
TEST(aug_random_resized_crop_keeps_alignment) { check_kind(A_RRC, 0.5f, 2.0f, "random resized crop"); }
TEST(aug_scale_jitter_keeps_alignment) { check_kind(A_JITTER, 0.5f, 2.0f, "scale jitter"); }
TEST(aug_ssd_crop_keeps_alignment) { check_kind(A_SSD, 0.0f, 0.0f, "ssd crop"); }
TEST(aug_pipelines_keep_alignment) {
    check_kind(A_PIPELINE_SSD, 0.5f, 2.0f, "ssd+flip+resize");
    if (ib_test_failed()) return;
    check_kind(A_PIPELINE_SEG, 0.5f, 2.0f, "jitter+crop+flip");
    if (ib_test_failed()) return;
    check_kind(A_PIPELINE_RRC, 0.5f, 2.0f, "rrc+flip");
}

TEST(aug_flip_exact) {
    ib_rng g;
    ib_rng_seed(&g, 9, 1);
    ib_sample s, t;
    make_scene(&s, 20, 50, &g);
    sample_copy(&t, &s);
    ib_sample_hflip(&t);
    int ok = 1;
    for (int y = 0; y < 20 && ok; y++)
        for (int x = 0; x < 50 && ok; x++) {
            ok = !memcmp(t.rgb + (y * 50 + x) * 3, s.rgb + (y * 50 + 49 - x) * 3, 3) &&
                 t.mask[y * 50 + x] == s.mask[y * 50 + 49 - x];
        }
    float bx0 = t.boxes[1].x0, bx1 = t.boxes[1].x1, sx0 = s.boxes[1].x0, sx1 = s.boxes[1].x1;
    ib_sample_hflip(&t);
    int twice = samples_equal(&s, &t);
    ib_sample_free(&s);
    ib_sample_free(&t);
    CHECK(ok, "flipped pixels do not mirror");
    CHECK(bx0 == 50 - sx1 && bx1 == 50 - sx0, "flipped box %g..%g from %g..%g", bx0, bx1, sx0, sx1);
    CHECK(twice, "two flips are not the identity");
    // ib_aug_hflip: p = 0 never flips, p = 1 always, p = 0.5 about half the time.
    make_scene(&s, 20, 50, &g);
    ib_sample flipped;
    sample_copy(&flipped, &s);
    ib_sample_hflip(&flipped);
    const float ps[3] = {0.0f, 1.0f, 0.5f};
    int flips[3] = {0}, neither = 0;
    ib_rng r;
    ib_rng_seed(&r, 1, 1);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 400; i++) {
            sample_copy(&t, &s);
            ib_aug_hflip(&t, &r, ps[k]);
            int f = samples_equal(&t, &flipped);
            flips[k] += f;
            neither += !f && !samples_equal(&t, &s);
            ib_sample_free(&t);
        }
    ib_sample_free(&s);
    ib_sample_free(&flipped);
    CHECK(!neither, "%d augmented samples are neither the original nor its mirror", neither);
    CHECK(flips[0] == 0, "p 0 flipped %d of 400", flips[0]);
    CHECK(flips[1] == 400, "p 1 flipped %d of 400", flips[1]);
    CHECK(flips[2] > 160 && flips[2] < 240, "p 0.5 flipped %d of 400", flips[2]);
}

// The recipe: p = zeros(72, 72, 3); p[4:68, 4:68] = a; y, x = rng.integers(0, 9, 2); c = p[y:y+64, x:x+64].
TEST(aug_pad_crop_matches_recipe) {
    const int H = 64, W = 64, P = 4;
    uint8_t *padded = calloc((H + 2 * P) * (W + 2 * P) * 3, 1);
    ib_sample base;
    memset(&base, 0, sizeof base);
    base.h = H;
    base.w = W;
    base.rgb = malloc(H * W * 3);
    base.mask = malloc(H * W);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t v[3] = {(uint8_t)(x * 3 + 1), (uint8_t)(y * 3 + 2), (uint8_t)((x * 7 + y * 13) % 250 + 3)};
            memcpy(base.rgb + (y * W + x) * 3, v, 3);
            memcpy(padded + ((y + P) * (W + 2 * P) + x + P) * 3, v, 3);
            base.mask[y * W + x] = (uint8_t)((x + y) % 11);
        }
    base.n_boxes = 1;
    base.boxes = malloc(sizeof(ib_box));
    base.boxes[0] = (ib_box){10, 20, 30, 40, 2, 0};
    int seen_y[9] = {0}, seen_x[9] = {0};
    int fail_seed = -1, fail_why = 0;
    for (int seed = 0; seed < 300 && fail_seed < 0; seed++) {
        ib_sample s;
        sample_copy(&s, &base);
        ib_rng r, q;
        ib_rng_seed(&r, (uint64_t)seed, 7);
        ib_rng_seed(&q, (uint64_t)seed, 7);
        ib_aug_pad_crop(&s, &r, P, H, W, 11);
        // The offsets the crop must have drawn, in the recipe's order: y first, then x.
        int oy = (int)ib_rng_below(&q, 9), ox = (int)ib_rng_below(&q, 9);
        seen_y[oy]++;
        seen_x[ox]++;
        int ok = s.h == H && s.w == W;
        for (int y = 0; y < H && ok; y++)
            for (int x = 0; x < W && ok; x++) {
                ok = !memcmp(s.rgb + (y * W + x) * 3, padded + ((y + oy) * (W + 2 * P) + x + ox) * 3, 3);
                int sy = y + oy - P, sx = x + ox - P;
                int want = sy < 0 || sx < 0 || sy >= H || sx >= W ? 11 : base.mask[sy * W + sx];
                ok = ok && s.mask[y * W + x] == want;
            }
        if (!ok) fail_why = 1;
        else if (s.n_boxes != 1 || s.boxes[0].x0 != 10 + P - ox || s.boxes[0].y1 != 40 + P - oy) fail_why = 2;
        if (fail_why) fail_seed = seed;
        ib_sample_free(&s);
    }
    ib_sample_free(&base);
    free(padded);
    CHECK(fail_seed < 0, "seed %d: %s", fail_seed, fail_why == 1 ? "pixels or mask differ from p[y:y+64, x:x+64]" : "box not shifted");
    for (int k = 0; k < 9; k++) CHECK(seen_y[k] > 10 && seen_x[k] > 10, "offset %d drawn %d / %d times in 300", k, seen_y[k], seen_x[k]);
}

// Our uint8 resize equals core's torch-exact F.interpolate (bilinear, nearest for the mask), rounded.
TEST(aug_resize_matches_core_interpolate) {
    const int sizes[4][4] = {{37, 53, 64, 64}, {64, 64, 23, 41}, {30, 30, 90, 45}, {17, 80, 17, 33}};
    ib_ctx *ctx = ib_ctx_new();
    for (int t = 0; t < 4; t++) {
        int h = sizes[t][0], w = sizes[t][1], oh = sizes[t][2], ow = sizes[t][3];
        ib_rng r;
        ib_rng_seed(&r, (uint64_t)t, 2);
        ib_sample s;
        memset(&s, 0, sizeof s);
        s.h = h;
        s.w = w;
        s.rgb = malloc((size_t)h * w * 3);
        s.mask = malloc((size_t)h * w);
        for (int i = 0; i < h * w * 3; i++) s.rgb[i] = (uint8_t)ib_rng_below(&r, 256);
        for (int i = 0; i < h * w; i++) s.mask[i] = (uint8_t)ib_rng_below(&r, 12);
        ib_ctx_reset(ctx);
        ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){1, 3, h, w});
        ib_tensor *m = ib_tensor_new(ctx, 4, (int[]){1, 1, h, w});
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < h * w; i++) x->data[c * h * w + i] = s.rgb[i * 3 + c];
        for (int i = 0; i < h * w; i++) m->data[i] = s.mask[i];
        ib_tensor *y = ib_resize_bilinear(ctx, x, oh, ow);
        ib_tensor *ym = ib_resize_nearest(ctx, m, oh, ow);
        CHECK(ib_sample_resize(&s, oh, ow) == IB_OK, "resize");
        int bad = 0, bad_mask = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < oh * ow; i++) {
                float v = y->data[c * oh * ow + i];
                bad += s.rgb[i * 3 + c] != (uint8_t)lrintf(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        for (int i = 0; i < oh * ow; i++) bad_mask += s.mask[i] != (uint8_t)ym->data[i];
        ib_sample_free(&s);
        CHECK(bad == 0 && bad_mask == 0, "%dx%d -> %dx%d: %d pixels and %d mask values differ from core", h, w, oh,
              ow, bad, bad_mask);
    }
    ib_ctx_free(ctx);
}

TEST(aug_rrc_window_follows_torchvision) {
    static const float scale[2] = {0.08f, 1.0f}, ratio[2] = {3.0f / 4, 4.0f / 3};
    ib_rng r;
    ib_rng_seed(&r, 3, 3);
    double min_area = 1, max_area = 0;
    int fallbacks = 0;
    for (int i = 0; i < 2000; i++) {
        int y0, x0, ch, cw;
        ib_aug_rrc_window(&r, 100, 150, scale, ratio, &y0, &x0, &ch, &cw);
        CHECK(y0 >= 0 && x0 >= 0 && y0 + ch <= 100 && x0 + cw <= 150 && ch > 0 && cw > 0, "window outside");
        double a = (double)ch * cw / 15000.0, ar = (double)cw / ch;
        if (ch == 100 && cw == 133 && y0 == 0 && x0 == 8) {
            fallbacks++;
            continue;
        }
        // Rounding each side moves area and ratio a little off the drawn values.
        CHECK(a > 0.07 && a < 1.0001 && ar > 0.7 && ar < 1.4, "area %g ratio %g", a, ar);
        if (a < min_area) min_area = a;
        if (a > max_area) max_area = a;
    }
    // On a 3:2 image with ratio <= 4/3 a window holds at most 8/9 of the area.
    CHECK(min_area < 0.12 && max_area > 0.85 && max_area <= 8.0 / 9 + 0.01, "areas span only %g..%g", min_area, max_area);
    CHECK(fallbacks < 20, "%d centre-crop fallbacks on a 100x150 image", fallbacks);
    // A 10x200 strip cannot hold any window of 8% area with ratio <= 4/3: the fallback is the central
    // 10 x round(10 * 4/3) window.
    int y0, x0, ch, cw;
    ib_aug_rrc_window(&r, 10, 200, scale, ratio, &y0, &x0, &ch, &cw);
    CHECK(y0 == 0 && ch == 10 && cw == 13 && x0 == 93, "fallback %d,%d %dx%d", y0, x0, ch, cw);
    ib_aug_rrc_window(&r, 300, 20, scale, ratio, &y0, &x0, &ch, &cw);
    CHECK(x0 == 0 && cw == 20 && ch == 27 && y0 == 136, "tall fallback %d,%d %dx%d", y0, x0, ch, cw);
}

static float patch_iou(int left, int top, int pw, int ph, const ib_box *b) {
    float ix = fminf(b->x1, (float)(left + pw)) - fmaxf(b->x0, (float)left);
    float iy = fminf(b->y1, (float)(top + ph)) - fmaxf(b->y0, (float)top);
    if (ix <= 0 || iy <= 0) return 0;
    return ix * iy / ((b->x1 - b->x0) * (b->y1 - b->y0) + (float)(pw * ph) - ix * iy);
}

TEST(aug_ssd_crop_honours_iou) {
    // One 60x50 box in a 120x100 image whose pixels encode their coordinates (R = x, G = y), so the
    // patch's position can be read off its first pixel. The minimum-IoU choices must make high-IoU
    // patches far more common than among unconstrained patches holding the box centre (about 18%
    // reach 0.5 there, 40% with SSD's choices).
    const ib_box box = {30, 25, 90, 75, 1, 0};
    int cropped = 0, kept = 0, iou_hi = 0;
    for (int seed = 0; seed < 400; seed++) {
        ib_sample s;
        memset(&s, 0, sizeof s);
        s.h = 100;
        s.w = 120;
        s.rgb = calloc(100 * 120 * 3, 1);
        for (int y = 0; y < 100; y++)
            for (int x = 0; x < 120; x++) s.rgb[(y * 120 + x) * 3] = (uint8_t)x, s.rgb[(y * 120 + x) * 3 + 1] = (uint8_t)y;
        s.boxes = malloc(sizeof(ib_box));
        s.n_boxes = 1;
        s.boxes[0] = box;
        ib_rng r;
        ib_rng_seed(&r, (uint64_t)seed, 11);
        CHECK(ib_aug_ssd_crop(&s, &r, 255) == IB_OK, "ssd crop");
        int left = s.rgb[0], top = s.rgb[1], pw = s.w, ph = s.h;
        int n_boxes = s.n_boxes;
        ib_box got = n_boxes ? s.boxes[0] : box;
        ib_sample_free(&s);
        if (ph == 100 && pw == 120) {
            kept++;
            continue;
        }
        cropped++;
        CHECK(n_boxes == 1 && ph >= 30 && pw >= 36 && pw <= 2 * ph && ph <= 2 * pw,
              "seed %d: box lost or patch %dx%d out of range", seed, pw, ph);
        CHECK(left < 60 && 60 < left + pw && top < 50 && 50 < top + ph, "seed %d: box centre outside the patch", seed);
        iou_hi += patch_iou(left, top, pw, ph, &box) >= 0.5f;
        CHECK(got.x0 == fmaxf(0, 30.0f - left) && got.x1 == fminf((float)pw, 90.0f - left) &&
                  got.y0 == fmaxf(0, 25.0f - top) && got.y1 == fminf((float)ph, 75.0f - top),
              "seed %d: box not moved with the patch", seed);
    }
    // The same patch distribution without an IoU constraint.
    ib_rng r;
    ib_rng_seed(&r, 1, 1);
    int n_free = 0, free_hi = 0;
    while (n_free < 2000) {
        int nw = (int)(120 * (0.3f + 0.7f * ib_rng_uniform(&r))), nh = (int)(100 * (0.3f + 0.7f * ib_rng_uniform(&r)));
        if ((float)nw / (float)nh < 0.5f || (float)nw / (float)nh > 2.0f) continue;
        int left = (int)((float)(120 - nw) * ib_rng_uniform(&r)), top = (int)((float)(100 - nh) * ib_rng_uniform(&r));
        if (!(left < 60 && 60 < left + nw && top < 50 && 50 < top + nh)) continue;
        n_free++;
        free_hi += patch_iou(left, top, nw, nh, &box) >= 0.5f;
    }
    double frac = (double)iou_hi / cropped, frac_free = (double)free_hi / n_free;
    CHECK(kept > 30 && kept < 100 && cropped > 300, "kept %d cropped %d of 400", kept, cropped);
    CHECK(frac > 1.5 * frac_free, "IoU >= 0.5 in %.2f of SSD patches, %.2f of unconstrained ones", frac, frac_free);
}

TEST(aug_color_jitter_moves_colours_not_geometry) {
    ib_rng g;
    ib_rng_seed(&g, 4, 1);
    ib_sample s, t;
    make_scene(&s, 40, 60, &g);
    for (int i = 0; i < 40 * 60 * 3; i++) s.rgb[i] = (uint8_t)(s.rgb[i] / 2 + 40);   // room to move both ways
    sample_copy(&t, &s);
    ib_rng r;
    ib_rng_seed(&r, 8, 8);
    ib_aug_color_jitter(&t, &r, 0.4f, 0.4f, 0.4f);
    int changed = memcmp(s.rgb, t.rgb, 40 * 60 * 3) != 0;
    int same_geom = t.h == s.h && t.n_boxes == s.n_boxes && !memcmp(t.boxes, s.boxes, sizeof(ib_box) * N_RECT) &&
                    !memcmp(t.mask, s.mask, 40 * 60);
    // Brightness alone scales every value by one factor in [0.6, 1.4].
    ib_sample_free(&t);
    sample_copy(&t, &s);
    ib_aug_color_jitter(&t, &r, 0.4f, 0, 0);
    double num = 0, den = 0;
    int worst = 0;
    for (int i = 0; i < 40 * 60 * 3; i++) {
        num += (double)t.rgb[i] * s.rgb[i];
        den += (double)s.rgb[i] * s.rgb[i];
    }
    double f = num / den;
    for (int i = 0; i < 40 * 60 * 3; i++) {
        int d = abs((int)t.rgb[i] - (int)lrint(f * s.rgb[i]));
        if (d > worst) worst = d;
    }
    // Saturation blends with each pixel's gray: a gray image stays gray.
    ib_sample_free(&t);
    sample_copy(&t, &s);
    for (int i = 0; i < 40 * 60; i++) t.rgb[i * 3 + 1] = t.rgb[i * 3 + 2] = t.rgb[i * 3];
    ib_aug_color_jitter(&t, &r, 0, 0, 0.9f);
    int gray = 1;
    for (int i = 0; i < 40 * 60; i++) gray &= abs(t.rgb[i * 3] - t.rgb[i * 3 + 1]) <= 1 && abs(t.rgb[i * 3] - t.rgb[i * 3 + 2]) <= 1;
    ib_sample_free(&s);
    ib_sample_free(&t);
    CHECK(changed, "colour jitter changed nothing");
    CHECK(same_geom, "colour jitter moved boxes or mask");
    CHECK(f >= 0.6 && f <= 1.4 && worst <= 1, "brightness: factor %g, worst %d", f, worst);
    CHECK(gray, "saturation changed a gray image");
}

TEST(aug_normalize_to_chw) {
    ib_sample s;
    memset(&s, 0, sizeof s);
    s.h = 2;
    s.w = 3;
    s.rgb = malloc(18);
    for (int i = 0; i < 18; i++) s.rgb[i] = (uint8_t)(i * 10);
    const float mean[3] = {123.675f, 116.28f, 103.53f}, std[3] = {58.395f, 57.12f, 57.375f};
    float out[18];
    ib_sample_normalize(&s, mean, std, out);
    int ok = 1;
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 6; p++) ok &= out[c * 6 + p] == ((float)(p * 3 + c) * 10 - mean[c]) / std[c];
    ib_sample_free(&s);
    CHECK(ok, "normalised values differ from (x - mean) / std in CHW order");
}

// ---------------------------------------------------------------------------------------------
// The loader over an in-memory dataset: sample i is a 16x16 image whose every pixel encodes i,
// (i % 4) boxes, a mask with label i % 5 and a border of the ignore index.

typedef struct mem_ds {
    ib_dataset pub;   // a hand-built source: pub.bad stays NULL (no skip_bad)
    int fail_at;       // index whose read fails (-1: none); read by worker threads
} mem_ds;

static ib_status mem_get(ib_dataset *ds, int64_t i, ib_sample *s) {
    mem_ds *m = (mem_ds *)ds;
    if (i == __atomic_load_n(&m->fail_at, __ATOMIC_RELAXED)) return ib_fail(IB_ERR_FORMAT, "mem/%lld.jpg: truncated JPEG data", (long long)i);
    memset(s, 0, sizeof *s);
    s->h = s->w = 16;
    s->rgb = malloc(16 * 16 * 3);
    s->mask = malloc(16 * 16);
    for (int p = 0; p < 256; p++) {
        s->rgb[p * 3] = (uint8_t)(i & 255);
        s->rgb[p * 3 + 1] = (uint8_t)(i >> 8);
        s->rgb[p * 3 + 2] = 100;
        int y = p / 16, x = p % 16;
        s->mask[p] = (uint8_t)(y == 0 || x == 0 ? 11 : i % 5);
    }
    s->label = (int32_t)(i % 7);
    s->image_id = 1000 + i;
    s->n_boxes = (int)(i % 4);
    if (s->n_boxes) s->boxes = malloc(sizeof(ib_box) * (size_t)s->n_boxes);
    for (int k = 0; k < s->n_boxes; k++) s->boxes[k] = (ib_box){2.0f + k, 3, 12, 13.0f - k, (int32_t)k, 0};
    return IB_OK;
}

static const ib_dataset_vtable mem_vt = {"mem", mem_get, NULL, NULL};

static void mem_init(mem_ds *m, int64_t n) {
    memset(m, 0, sizeof *m);
    m->pub.vt = &mem_vt;
    m->pub.path = "mem://test";
    m->pub.size = n;
    m->pub.n_classes = 7;
    m->pub.ignore_index = 11;
    m->pub.has_labels = m->pub.has_boxes = m->pub.has_masks = 1;
    m->fail_at = -1;
}

static void loader_opts(ib_loader_opts *o, int workers, int bs) {
    ib_loader_opts_default(o, 16, 16);
    o->batch_size = bs;
    o->workers = workers;
    o->seed = 77;
    o->aug.crop = IB_CROP_PAD;
    o->aug.pad = 3;
    o->aug.hflip_p = 0.5f;
    o->aug.brightness = 0.2f;   // a per-sample draw that shows up in x
    for (int c = 0; c < 3; c++) o->aug.mean[c] = 0, o->aug.std[c] = 1;
}

// One epoch's batches flattened: x, labels, indices, boxes (with offsets), masks.
typedef struct epoch_dump {
    float *x;
    int32_t *labels, *masks;
    int64_t *indices, *offsets;
    ib_box *boxes;
    int64_t n, n_boxes, n_batches;
    int sizes[16];
} epoch_dump;

static void dump_free(epoch_dump *d) {
    free(d->x);
    free(d->labels);
    free(d->masks);
    free(d->indices);
    free(d->offsets);
    free(d->boxes);
    memset(d, 0, sizeof *d);
}

static ib_status run_epoch(ib_loader *l, int64_t epoch, int64_t total, epoch_dump *d) {
    memset(d, 0, sizeof *d);
    d->x = malloc(sizeof(float) * (size_t)total * 3 * 256);
    d->labels = malloc(sizeof(int32_t) * (size_t)total);
    d->masks = malloc(sizeof(int32_t) * (size_t)total * 256);
    d->indices = malloc(sizeof(int64_t) * (size_t)total);
    d->offsets = malloc(sizeof(int64_t) * (size_t)(total + 1));
    d->boxes = malloc(sizeof(ib_box) * (size_t)total * 4);
    ib_loader_start_epoch(l, epoch);
    const ib_batch *b;
    ib_status st;
    while ((st = ib_loader_next(l, &b)) == IB_OK && b) {
        IB_ASSERT(d->n + b->n <= total && b->h == 16 && b->w == 16, "batch overflow");
        if (d->n_batches < 16) d->sizes[d->n_batches] = b->n;
        memcpy(d->x + d->n * 768, b->x, sizeof(float) * (size_t)b->n * 768);
        memcpy(d->labels + d->n, b->labels, sizeof(int32_t) * (size_t)b->n);
        memcpy(d->masks + d->n * 256, b->masks, sizeof(int32_t) * (size_t)b->n * 256);
        memcpy(d->indices + d->n, b->indices, sizeof(int64_t) * (size_t)b->n);
        for (int i = 0; i < b->n; i++) d->offsets[d->n + i] = d->n_boxes + b->box_offsets[i];
        memcpy(d->boxes + d->n_boxes, b->boxes, sizeof(ib_box) * (size_t)b->box_offsets[b->n]);
        d->n_boxes += b->box_offsets[b->n];
        d->n += b->n;
        d->n_batches++;
        d->offsets[d->n] = d->n_boxes;
    }
    return st;
}

static int dumps_equal(const epoch_dump *a, const epoch_dump *b) {
    return a->n == b->n && a->n_boxes == b->n_boxes && a->n_batches == b->n_batches &&
           !memcmp(a->x, b->x, sizeof(float) * (size_t)a->n * 768) &&
           !memcmp(a->labels, b->labels, sizeof(int32_t) * (size_t)a->n) &&
           !memcmp(a->masks, b->masks, sizeof(int32_t) * (size_t)a->n * 256) &&
           !memcmp(a->indices, b->indices, sizeof(int64_t) * (size_t)a->n) &&
           !memcmp(a->offsets, b->offsets, sizeof(int64_t) * (size_t)(a->n + 1)) &&
           !memcmp(a->boxes, b->boxes, sizeof(ib_box) * (size_t)a->n_boxes);
}

TEST(loader_epoch_sees_every_sample_once) {
    mem_ds m;
    mem_init(&m, 50);
    ib_loader_opts o;
    loader_opts(&o, 2, 16);
    ib_loader *l;
    CHECK(ib_loader_open(&l, &m.pub, &o) == IB_OK, "open: %s", ib_errmsg());
    CHECK(ib_loader_batches(l) == 4, "batches %lld", (long long)ib_loader_batches(l));
    epoch_dump d;
    ib_status st = run_epoch(l, 0, 50, &d);
    int seen[50] = {0}, bad_label = 0, bad_pixel = 0, bad_mask = 0, bad_box = 0, in_order = 1;
    for (int64_t i = 0; i < d.n; i++) {
        int64_t idx = d.indices[i];
        if (idx < 0 || idx >= 50) continue;
        seen[idx]++;
        in_order &= idx == i;
        bad_label += d.labels[i] != idx % 7;
        // Pad 3 of a 16 image, crop 16: pixel (8, 8) is always from the image (brightness aside: the
        // green channel is 0 for these indices and the blue one carries the factor).
        float red = d.x[i * 768 + 8 * 16 + 8], blue = d.x[i * 768 + 512 + 8 * 16 + 8];
        bad_pixel += fabsf(red - (float)lrintf((float)idx * blue / 100.0f)) > 1.0f || blue < 78 || blue > 122;
        int32_t mc = d.masks[i * 256 + 8 * 16 + 8];
        bad_mask += mc != idx % 5;
        int nb = (int)(d.offsets[i + 1] - d.offsets[i]);
        bad_box += nb != idx % 4;
        for (int k = 0; k < nb; k++) bad_box += d.boxes[d.offsets[i] + k].label != k;
    }
    // The padding shows up in masks as the dataset's ignore index, never as another class.
    int ignore = 0, other = 0;
    for (int64_t p = 0; p < d.n * 256; p++) {
        ignore += d.masks[p] == 11;
        other += d.masks[p] != 11 && (d.masks[p] < 0 || d.masks[p] > 4);
    }
    ib_tensor t;
    ib_loader_start_epoch(l, 1);
    const ib_batch *b;
    CHECK(ib_loader_next(l, &b) == IB_OK && b, "first batch");
    ib_batch_tensor(b, &t);
    CHECK(t.ndim == 4 && t.shape[0] == 16 && t.shape[1] == 3 && t.shape[2] == 16 && t.shape[3] == 16 && t.data == b->x,
          "batch tensor shape");
    ib_loader_close(l);   // mid-epoch: workers stop, nothing leaks
    int64_t n = d.n, nb = d.n_batches;
    int last = d.sizes[3];
    dump_free(&d);
    CHECK(st == IB_OK, "epoch: %s", ib_errmsg());
    CHECK(n == 50 && nb == 4 && last == 2, "epoch gave %lld samples in %lld batches (last %d)", (long long)n,
          (long long)nb, last);
    for (int i = 0; i < 50; i++) CHECK(seen[i] == 1, "sample %d seen %d times", i, seen[i]);
    CHECK(!in_order, "shuffle left the order as it was");
    CHECK(!bad_label && !bad_pixel && !bad_mask && !bad_box, "mismatches: labels %d pixels %d masks %d boxes %d",
          bad_label, bad_pixel, bad_mask, bad_box);
    CHECK(ignore > 0 && other == 0, "mask values: %d ignore, %d out of range", ignore, other);
}

TEST(loader_same_batches_for_any_worker_count) {
    mem_ds m;
    mem_init(&m, 70);
    epoch_dump d[3];
    const int workers[3] = {1, 3, 0};
    for (int k = 0; k < 3; k++) {
        ib_loader_opts o;
        loader_opts(&o, workers[k], 8);
        o.prefetch = 2 + k;
        ib_loader *l;
        CHECK(ib_loader_open(&l, &m.pub, &o) == IB_OK, "open: %s", ib_errmsg());
        ib_status st = run_epoch(l, 5, 70, &d[k]);
        ib_loader_close(l);
        CHECK(st == IB_OK, "epoch: %s", ib_errmsg());
    }
    int same13 = dumps_equal(&d[0], &d[1]), same10 = dumps_equal(&d[0], &d[2]);
    int64_t n = d[0].n;
    for (int k = 0; k < 3; k++) dump_free(&d[k]);
    CHECK(n == 70, "%lld samples", (long long)n);
    CHECK(same13, "1 and 3 workers gave different batches");
    CHECK(same10, "1 worker and no worker gave different batches");
}

TEST(loader_epochs_are_seeded_and_resumable) {
    mem_ds m;
    mem_init(&m, 40);
    ib_loader_opts o;
    loader_opts(&o, 2, 10);
    ib_loader *a, *b;
    CHECK(ib_loader_open(&a, &m.pub, &o) == IB_OK, "open: %s", ib_errmsg());
    CHECK(ib_loader_open(&b, &m.pub, &o) == IB_OK, "open: %s", ib_errmsg());
    epoch_dump e0, e1, e2, r2;
    run_epoch(a, 0, 40, &e0);
    run_epoch(a, 1, 40, &e1);
    run_epoch(a, 2, 40, &e2);
    // A resumed run starts directly at epoch 2, after abandoning half an epoch 0.
    const ib_batch *bt;
    ib_loader_start_epoch(b, 0);
    ib_loader_next(b, &bt);
    ib_loader_next(b, &bt);
    ib_status st = run_epoch(b, 2, 40, &r2);
    int resumed = dumps_equal(&e2, &r2);
    int orders_differ = memcmp(e0.indices, e1.indices, sizeof(int64_t) * 40) != 0;
    ib_loader_close(a);
    ib_loader_close(b);
    // Another seed, another order.
    o.seed = 78;
    CHECK(ib_loader_open(&a, &m.pub, &o) == IB_OK, "open: %s", ib_errmsg());
    epoch_dump s0;
    run_epoch(a, 0, 40, &s0);
    ib_loader_close(a);
    int seed_differs = memcmp(e0.indices, s0.indices, sizeof(int64_t) * 40) != 0;
    // Without shuffle, the dataset's order.
    o.shuffle = 0;
    CHECK(ib_loader_open(&a, &m.pub, &o) == IB_OK, "open: %s", ib_errmsg());
    epoch_dump u;
    run_epoch(a, 3, 40, &u);
    ib_loader_close(a);
    int in_order = 1;
    for (int i = 0; i < 40; i++) in_order &= u.indices[i] == i;
    dump_free(&e0);
    dump_free(&e1);
    dump_free(&e2);
    dump_free(&r2);
    dump_free(&s0);
    dump_free(&u);
    CHECK(st == IB_OK, "resumed epoch: %s", ib_errmsg());
    CHECK(resumed, "epoch 2 after a restart differs from epoch 2 of an uninterrupted run");
    CHECK(orders_differ, "epochs 0 and 1 have the same order");
    CHECK(seed_differs, "seeds 77 and 78 gave the same order");
    CHECK(in_order, "shuffle off did not keep the dataset's order");
}

TEST(loader_drop_last) {
    mem_ds m;
    mem_init(&m, 50);
    ib_loader_opts o;
    loader_opts(&o, 2, 16);
    o.drop_last = 1;
    ib_loader *l;
    CHECK(ib_loader_open(&l, &m.pub, &o) == IB_OK, "open: %s", ib_errmsg());
    epoch_dump d;
    ib_status st = run_epoch(l, 0, 50, &d);
    int64_t batches = ib_loader_batches(l);
    ib_loader_close(l);
    int64_t n = d.n, nb = d.n_batches;
    int distinct = 1;
    for (int64_t i = 0; i < d.n; i++)
        for (int64_t j = 0; j < i; j++) distinct &= d.indices[i] != d.indices[j];
    dump_free(&d);
    CHECK(st == IB_OK, "%s", ib_errmsg());
    CHECK(batches == 3 && nb == 3 && n == 48 && distinct, "drop_last: %lld batches, %lld samples", (long long)nb,
          (long long)n);
}

TEST(loader_passes_read_errors_up) {
    mem_ds m;
    mem_init(&m, 60);
    m.fail_at = 33;
    for (int workers = 0; workers <= 2; workers += 2) {
        ib_loader_opts o;
        loader_opts(&o, workers, 8);
        ib_loader *l;
        CHECK(ib_loader_open(&l, &m.pub, &o) == IB_OK, "open: %s", ib_errmsg());
        ib_loader_start_epoch(l, 0);
        const ib_batch *b;
        ib_status st;
        int good = 0;
        while ((st = ib_loader_next(l, &b)) == IB_OK && b) good += b->n;
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ib_errmsg());
        const ib_batch *after = (const ib_batch *)1;
        ib_status st2 = ib_loader_next(l, &after);
        // The loader can start over after an error (here without the bad sample's failure). Workers
        // may still be reading when the error comes up: the flag changes atomically.
        __atomic_store_n(&m.fail_at, -1, __ATOMIC_RELAXED);
        epoch_dump d;
        ib_status st3 = run_epoch(l, 1, 60, &d);
        int64_t n = d.n;
        dump_free(&d);
        __atomic_store_n(&m.fail_at, 33, __ATOMIC_RELAXED);
        ib_loader_close(l);
        CHECK(st == IB_ERR_FORMAT && strstr(msg, "mem/33.jpg") && strstr(msg, "truncated"),
              "workers %d: status %s, message '%s'", workers, ib_status_name(st), msg);
        CHECK(good < 60, "workers %d: %d samples before the error", workers, good);
        CHECK(st2 == IB_OK && after == NULL, "workers %d: the epoch went on after the error", workers);
        CHECK(st3 == IB_OK && n == 60, "workers %d: restart after the error gave %lld samples", workers, (long long)n);
    }
}

TEST(loader_rejects_bad_options) {
    mem_ds m;
    mem_init(&m, 10);
    ib_loader_opts o;
    loader_opts(&o, 1, 0);
    ib_loader *l = (ib_loader *)1;
    CHECK(ib_loader_open(&l, &m.pub, &o) == IB_ERR_ARG && l == NULL, "batch size 0 accepted");
    CHECK(strstr(ib_errmsg(), "mem://test") != NULL, "message does not name the dataset: %s", ib_errmsg());
}

// Rebuilds batch sample i by hand (read, augment with its stream, normalise) and compares bit for bit.
static int batch_sample_matches(ib_dataset *ds, const ib_loader_opts *o, const ib_batch *b, int i, char *msg, size_t n) {
    ib_sample s;
    if (ib_dataset_get(ds, b->indices[i], &s)) {
        snprintf(msg, n, "read: %s", ib_errmsg());
        return 0;
    }
    ib_rng r;
    ib_loader_sample_rng(o->seed, b->epoch, b->indices[i], &r);
    ib_aug_apply(&o->aug, &s, &r);
    int64_t hw = (int64_t)b->h * b->w;
    float *x = malloc(sizeof(float) * (size_t)(3 * hw));
    ib_sample_normalize(&s, o->aug.mean, o->aug.std, x);
    int ok = !memcmp(x, b->x + i * 3 * hw, sizeof(float) * (size_t)(3 * hw)) && b->labels[i] == s.label;
    if (!ok) snprintf(msg, n, "sample %d (index %lld) differs from its reconstruction", i, (long long)b->indices[i]);
    if (ok && b->box_offsets) {
        int nb = (int)(b->box_offsets[i + 1] - b->box_offsets[i]);
        ok = nb == s.n_boxes && (!nb || !memcmp(b->boxes + b->box_offsets[i], s.boxes, sizeof(ib_box) * (size_t)nb));
        if (!ok) snprintf(msg, n, "sample %d: boxes differ (%d vs %d)", i, nb, s.n_boxes);
    }
    if (ok && b->masks) {
        for (int64_t k = 0; k < hw && ok; k++) ok = b->masks[i * hw + k] == (s.mask ? s.mask[k] : ds->ignore_index);
        if (!ok) snprintf(msg, n, "sample %d: mask differs", i);
    }
    free(x);
    ib_sample_free(&s);
    return ok;
}

TEST(loader_tinyimagenet_recipe_batches) {
    const char *sh = shared_dir();
    if (!sh) SKIP("no ../shared (Tiny ImageNet)");
    char path[4096];
    snprintf(path, sizeof path, "%s/data/tiny-imagenet-200", sh);
    ib_dataset *ds;
    ib_ds_opts dopts = {.format = IB_DS_TINYIMAGENET, .split = "train"};
    if (ib_dataset_open(&ds, path, &dopts)) SKIP("cannot open %s: %s", path, ib_errmsg());
    ib_loader_opts o;
    ib_loader_opts_default(&o, 64, 64);
    o.batch_size = 32;
    o.workers = 2;
    o.seed = 3;
    o.aug.crop = IB_CROP_PAD;
    o.aug.pad = 4;
    o.aug.hflip_p = 0.5f;
    ib_loader *l;
    CHECK(ib_loader_open(&l, ds, &o) == IB_OK, "open: %s", ib_errmsg());
    ib_loader_start_epoch(l, 4);
    const ib_batch *b;
    char msg[512] = "";
    int ok = 1, n_batches = 0;
    int64_t first = -1;
    for (int k = 0; k < 3 && ok; k++) {
        CHECK(ib_loader_next(l, &b) == IB_OK && b && b->n == 32 && b->h == 64, "batch %d: %s", k, ib_errmsg());
        if (k == 0) first = b->indices[0];
        for (int i = 0; i < b->n && ok; i++) ok = batch_sample_matches(ds, &o, b, i, msg, sizeof msg);
        n_batches++;
    }
    ib_loader_close(l);
    ib_dataset_close(ds);
    CHECK(ok, "%s", msg);
    CHECK(n_batches == 3 && first > 0, "batches %d, first index %lld (shuffled)", n_batches, (long long)first);
}

TEST(loader_synth_detection_and_masks) {
    ib_dataset *ds;
    ib_ds_opts dopts = {.format = IB_DS_SYNTH, .synth_n = 40, .synth_size = 48, .synth_seed = 5};
    if (ib_dataset_open(&ds, "synth", &dopts)) SKIP("synthetic scenes: %s", ib_errmsg());
    if (!ds->has_boxes || !ds->has_masks) {
        ib_dataset_close(ds);
        SKIP("synthetic scenes without boxes or masks");
    }
    ib_loader_opts o;
    ib_loader_opts_default(&o, 40, 40);
    o.batch_size = 8;
    o.workers = 2;
    o.aug.crop = IB_CROP_SSD;
    o.aug.hflip_p = 0.5f;
    ib_loader *l;
    CHECK(ib_loader_open(&l, ds, &o) == IB_OK, "open: %s", ib_errmsg());
    ib_loader_start_epoch(l, 1);
    const ib_batch *b;
    char msg[512] = "";
    int ok = 1, n = 0, boxes = 0;
    ib_status st;
    while (ok && (st = ib_loader_next(l, &b)) == IB_OK && b) {
        CHECK(b->box_offsets && b->masks, "no boxes or masks in the batch");
        for (int i = 0; i < b->n && ok; i++) ok = batch_sample_matches(ds, &o, b, i, msg, sizeof msg);
        boxes += (int)b->box_offsets[b->n];
        for (int64_t k = 0; k < b->box_offsets[b->n] && ok; k++) {
            const ib_box *x = &b->boxes[k];
            ok = x->x0 >= 0 && x->x1 <= 40 && x->y0 >= 0 && x->y1 <= 40 && x->x1 > x->x0 && x->y1 > x->y0;
            if (!ok) snprintf(msg, sizeof msg, "box %lld outside the 40x40 image", (long long)k);
        }
        n += b->n;
    }
    ib_loader_close(l);
    ib_dataset_close(ds);
    CHECK(ok, "%s", msg);
    CHECK(n == 40 && boxes > 0, "%d samples, %d boxes", n, boxes);
}
