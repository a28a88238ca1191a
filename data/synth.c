// Synthetic scenes: the embedded default data set. Each scene holds one to four shapes of six classes
// (filled or outlined, rotated, stretched, textured, overlapping) over a textured noisy background, with
// a class label, a box per shape and a per-pixel mask, so one generated set serves all three tasks.
#include "data/data.h"
#include "data/sources.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const synth_names[IB_SYNTH_CLASSES + 1] = {
    "circle", "square", "triangle", "ring", "cross", "star", "background",
};

const char *ib_synth_class_name(int c) {
    IB_ASSERT(c >= 0 && c <= IB_SYNTH_CLASSES, "synth class %d out of range 0..%d", c, IB_SYNTH_CLASSES);
    return synth_names[c];
}

// ---------------------------------------------------------------------------------------------
// Shapes as signed distances in the shape's own frame, in units of its radius (negative inside).
// Distances give both a mask test (d <= 0) and anti-aliased edges, and an outline is just a band.

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

static float sd_box(float u, float v, float bx, float by) {
    float qx = fabsf(u) - bx, qy = fabsf(v) - by;
    float ox = fmaxf(qx, 0.f), oy = fmaxf(qy, 0.f);
    return sqrtf(ox * ox + oy * oy) + fminf(fmaxf(qx, qy), 0.f);
}

// Equilateral triangle with half-side r, centroid at the origin (after Inigo Quilez).
static float sd_triangle(float u, float v, float r) {
    const float k = 1.7320508f;
    u = fabsf(u) - r;
    v = v + r / k;
    if (u + k * v > 0.f) {
        float nu = (u - k * v) * 0.5f, nv = (-k * u - v) * 0.5f;
        u = nu, v = nv;
    }
    u -= clampf(u, -2.f * r, 0.f);
    float len = sqrtf(u * u + v * v);
    return v > 0.f ? -len : v < 0.f ? len : 0.f;
}

// Five-pointed star, outer radius r, inner radius rf * r (after Inigo Quilez).
static float sd_star5(float u, float v, float r, float rf) {
    const float k1x = 0.809016994375f, k1y = -0.587785252292f;
    const float k2x = -k1x, k2y = k1y;
    u = fabsf(u);
    float d = 2.f * fmaxf(k1x * u + k1y * v, 0.f);
    u -= d * k1x, v -= d * k1y;
    d = 2.f * fmaxf(k2x * u + k2y * v, 0.f);
    u -= d * k2x, v -= d * k2y;
    u = fabsf(u);
    v -= r;
    float bax = rf * -k1y, bay = rf * k1x - 1.f;
    float h = clampf((u * bax + v * bay) / (bax * bax + bay * bay), 0.f, r);
    float ex = u - bax * h, ey = v - bay * h;
    float len = sqrtf(ex * ex + ey * ey);
    return (v * bax - u * bay) > 0.f ? len : -len;
}

// The sizes are chosen so the six filled shapes cover similar areas (1.7 .. 3.1 in radius units).
static float shape_sd(int cls, float u, float v) {
    switch (cls) {
    case 0: return sqrtf(u * u + v * v) - 1.f;                                   // circle
    case 1: return sd_box(u, v, 0.82f, 0.82f);                                    // square
    case 2: return sd_triangle(u, v, 1.1f);                                       // triangle
    case 3: return fabsf(sqrtf(u * u + v * v) - 0.72f) - 0.28f;                  // ring
    case 4: return fminf(sd_box(u, v, 1.f, 0.3f), sd_box(u, v, 0.3f, 1.f));     // cross
    default: return sd_star5(u, v, 1.15f, 0.45f);                                 // star
    }
}
#define SHAPE_EXTENT 1.3f   // every shape lies within this radius (the triangle's corners: 1.27)

typedef struct {
    int cls;
    float cx, cy, r;          // centre and radius in pixels
    float cs, sn;             // rotation
    float inv_ax, inv_ay;     // 1 / (radius * axis stretch) per local axis
    float thick;              // outline band width (radius units); 0: filled
    int fill;                 // 0 solid, 1 linear gradient, 2 stripes
    float col[3], col2[3];
    float fdx, fdy, ffreq;    // fill direction (unit) and stripe frequency (radians per pixel)
    int x0, y0, x1, y1;       // pixel bounds to visit, [x0, x1) x [y0, y1), clipped
} synth_shape;

static float shape_sd_at(const synth_shape *sh, float px, float py) {
    float dx = px - sh->cx, dy = py - sh->cy;
    float u = (sh->cs * dx + sh->sn * dy) * sh->inv_ax;
    float v = (-sh->sn * dx + sh->cs * dy) * sh->inv_ay;
    float d = shape_sd(sh->cls, u, v);
    if (sh->thick > 0.f) d = fmaxf(d, -d - sh->thick);
    return d;
}

static void random_colour(ib_rng *r, float c[3]) {
    for (int k = 0; k < 3; k++) c[k] = 255.f * ib_rng_uniform(r);
}

static void shape_sample(ib_rng *r, synth_shape *sh, int cls, float cx, float cy, float rad, int size) {
    memset(sh, 0, sizeof *sh);
    sh->cls = cls;
    sh->cx = cx, sh->cy = cy, sh->r = rad;
    float ang = 6.2831853f * ib_rng_uniform(r);
    sh->cs = cosf(ang), sh->sn = sinf(ang);
    // Mild stretch on one axis: ellipses and rectangles stay in their class.
    float stretch = 0.75f + 0.25f * ib_rng_uniform(r);
    int which = (int)ib_rng_below(r, 2);
    sh->inv_ax = 1.f / (rad * (which ? stretch : 1.f));
    sh->inv_ay = 1.f / (rad * (which ? 1.f : stretch));
    // A third of the shapes are outlines; at least 1.5 pixels wide so small ones stay visible.
    if (ib_rng_below(r, 4) == 0) sh->thick = fmaxf(0.22f + 0.14f * ib_rng_uniform(r), 1.5f / rad);
    sh->fill = (int)ib_rng_below(r, 6);
    if (sh->fill > 2) sh->fill = 0;   // solid two thirds of the time
    float fa = 6.2831853f * ib_rng_uniform(r);
    sh->fdx = cosf(fa), sh->fdy = sinf(fa);
    sh->ffreq = 6.2831853f / (rad * (0.35f + 0.5f * ib_rng_uniform(r)));
    float ext = SHAPE_EXTENT * rad + 1.f;
    sh->x0 = (int)floorf(cx - ext), sh->x1 = (int)ceilf(cx + ext);
    sh->y0 = (int)floorf(cy - ext), sh->y1 = (int)ceilf(cy + ext);
    if (sh->x0 < 0) sh->x0 = 0;
    if (sh->y0 < 0) sh->y0 = 0;
    if (sh->x1 > size) sh->x1 = size;
    if (sh->y1 > size) sh->y1 = size;
}

// ---------------------------------------------------------------------------------------------
// Backgrounds: two or three random colours blended by a gradient, stripes or smooth value noise.

typedef struct {
    int type;
    float a[3], b[3], c[3];
    float dx, dy, freq, phase, sharp;
    int grid;
    float cells[10 * 10];
} synth_bg;

static void bg_sample(ib_rng *r, synth_bg *bg, int size) {
    memset(bg, 0, sizeof *bg);
    bg->type = (int)ib_rng_below(r, 4);
    random_colour(r, bg->a);
    random_colour(r, bg->b);
    random_colour(r, bg->c);
    // Texture colours half-way to the base colour: textured, yet quieter than the shapes.
    for (int k = 0; k < 3; k++) bg->b[k] = 0.5f * (bg->a[k] + bg->b[k]), bg->c[k] = 0.5f * (bg->a[k] + bg->c[k]);
    float ang = 6.2831853f * ib_rng_uniform(r);
    bg->dx = cosf(ang), bg->dy = sinf(ang);
    bg->freq = 6.2831853f * (1.5f + 5.f * ib_rng_uniform(r)) / (float)size;
    bg->phase = 6.2831853f * ib_rng_uniform(r);
    bg->sharp = 1.f + 4.f * ib_rng_uniform(r);
    bg->grid = 2 + (int)ib_rng_below(r, 6);
    for (int k = 0; k < (bg->grid + 1) * (bg->grid + 1); k++) bg->cells[k] = ib_rng_uniform(r);
}

static float value_noise(const synth_bg *bg, float x, float y, int size) {
    float gx = x * (float)bg->grid / (float)size, gy = y * (float)bg->grid / (float)size;
    int ix = (int)gx, iy = (int)gy;
    if (ix >= bg->grid) ix = bg->grid - 1;
    if (iy >= bg->grid) iy = bg->grid - 1;
    float fx = gx - (float)ix, fy = gy - (float)iy;
    fx = fx * fx * (3.f - 2.f * fx), fy = fy * fy * (3.f - 2.f * fy);   // smoothstep: no grid creases
    int g = bg->grid + 1;
    float v00 = bg->cells[iy * g + ix], v01 = bg->cells[iy * g + ix + 1];
    float v10 = bg->cells[(iy + 1) * g + ix], v11 = bg->cells[(iy + 1) * g + ix + 1];
    return (v00 * (1 - fx) + v01 * fx) * (1 - fy) + (v10 * (1 - fx) + v11 * fx) * fy;
}

static void bg_pixel(const synth_bg *bg, float x, float y, int size, float out[3]) {
    float proj = bg->dx * (x - 0.5f * (float)size) + bg->dy * (y - 0.5f * (float)size);
    float t, t2 = 0.f;
    switch (bg->type) {
    case 0: t = clampf(0.5f + proj / (float)size, 0.f, 1.f); break;
    case 1: t = clampf(0.5f + 0.5f * bg->sharp * sinf(bg->freq * proj + bg->phase), 0.f, 1.f); break;
    case 2: t = value_noise(bg, x, y, size); break;
    default:
        t = value_noise(bg, x, y, size);
        t2 = 0.35f * (0.5f + 0.5f * sinf(bg->freq * proj + bg->phase));
        break;
    }
    for (int k = 0; k < 3; k++) out[k] = (bg->a[k] * (1 - t) + bg->b[k] * t) * (1 - t2) + bg->c[k] * t2;
}

// ---------------------------------------------------------------------------------------------
// Layout: the first shape is the labelled one. It must be clearly the largest (by visible pixels,
// also summed per class), and every other shape must keep most of itself visible; distractors that
// break this are dropped, last first, so the label, the mask and the boxes always agree.

#define MAX_SHAPES 4

// Rasterises the shapes' hard coverage (d <= 0) in z-order into ids (-1 for background); counts each
// shape's visible pixels and its pixels when alone.
static void raster_ids(const synth_shape *sh, const int *order, int n, int size, int16_t *ids, int *vis, int *own) {
    for (int p = 0; p < size * size; p++) ids[p] = -1;
    for (int k = 0; k < n; k++) vis[k] = own[k] = 0;
    for (int z = 0; z < n; z++) {
        int k = order[z];
        const synth_shape *s = &sh[k];
        for (int y = s->y0; y < s->y1; y++)
            for (int x = s->x0; x < s->x1; x++)
                if (shape_sd_at(s, (float)x + 0.5f, (float)y + 0.5f) <= 0.f) {
                    ids[y * size + x] = (int16_t)k;
                    own[k]++;
                }
    }
    for (int p = 0; p < size * size; p++)
        if (ids[p] >= 0) vis[ids[p]]++;
}

static int layout_ok(const synth_shape *sh, int n, const int *vis, const int *own, int *bad) {
    int cls_px[IB_SYNTH_CLASSES] = {0};
    for (int k = 0; k < n; k++) cls_px[sh[k].cls] += vis[k];
    *bad = -1;
    if (vis[0] * 10 < own[0] * 6) *bad = n - 1;   // the labelled shape lost over 40% to occluders
    for (int k = 1; k < n && *bad < 0; k++) {
        if (vis[k] * 5 < own[k] * 2 || vis[k] < 6) *bad = k;          // mostly hidden or tiny
        else if (vis[0] * 5 < vis[k] * 6) *bad = k;                    // not clearly smaller
        else if (sh[k].cls != sh[0].cls && cls_px[sh[0].cls] * 5 < cls_px[sh[k].cls] * 6) *bad = n - 1;
    }
    return *bad < 0;
}

// Picks a shape colour that stands out from the background under its centre, so no shape vanishes.
static void contrasting_colour(ib_rng *r, const synth_bg *bg, const synth_shape *s, int size, float c[3]) {
    float under[3];
    bg_pixel(bg, s->cx, s->cy, size, under);
    for (int tries = 0; tries < 16; tries++) {
        random_colour(r, c);
        float d = 0;
        for (int k = 0; k < 3; k++) d += (c[k] - under[k]) * (c[k] - under[k]);
        if (d > 120.f * 120.f) return;
    }
}

void ib_synth_render(uint64_t seed, int64_t i, int size, ib_sample *s) {
    IB_ASSERT(size >= 8 && size <= 4096, "synth size %d outside 8..4096", size);
    IB_ASSERT(i >= 0, "synth index %lld", (long long)i);
    ib_rng rr, *r = &rr;
    // Mix seed and index so neighbouring (seed, i) pairs start far apart, and use i as the stream.
    uint64_t mix = seed * 0x9E3779B97F4A7C15ULL + (uint64_t)i;
    mix = (mix ^ (mix >> 30)) * 0xBF58476D1CE4E5B9ULL;
    mix = (mix ^ (mix >> 27)) * 0x94D049BB133111EBULL;
    ib_rng_seed(r, mix ^ (mix >> 31), (uint64_t)i);

    const float S = (float)size;
    synth_bg bg;
    bg_sample(r, &bg, size);

    synth_shape sh[MAX_SHAPES];
    int n = 1 + (int)ib_rng_below(r, MAX_SHAPES);
    float r0 = S * (0.24f + 0.12f * ib_rng_uniform(r));
    float c0x = S * (0.3f + 0.4f * ib_rng_uniform(r)), c0y = S * (0.3f + 0.4f * ib_rng_uniform(r));
    shape_sample(r, &sh[0], (int)ib_rng_below(r, IB_SYNTH_CLASSES), c0x, c0y, r0, size);
    for (int k = 1; k < n; k++) {
        float rad = r0 * (0.25f + 0.25f * ib_rng_uniform(r));
        float cx = S * (0.08f + 0.84f * ib_rng_uniform(r)), cy = S * (0.08f + 0.84f * ib_rng_uniform(r));
        shape_sample(r, &sh[k], (int)ib_rng_below(r, IB_SYNTH_CLASSES), cx, cy, rad, size);
    }
    for (int k = 0; k < n; k++) {
        contrasting_colour(r, &bg, &sh[k], size, sh[k].col);
        float other[3];
        random_colour(r, other);
        for (int c = 0; c < 3; c++) sh[k].col2[c] = 0.55f * sh[k].col[c] + 0.45f * other[c];
    }
    // The labelled shape goes anywhere in the stack, so it is sometimes partly covered.
    int zpos = (int)ib_rng_below(r, (uint32_t)n);
    int order[MAX_SHAPES];

    int npx = size * size;
    int16_t *ids = malloc((size_t)npx * sizeof *ids);
    IB_ASSERT(ids, "synth: out of memory");
    int vis[MAX_SHAPES], own[MAX_SHAPES], bad;
    for (;;) {
        int zp = zpos < n ? zpos : n - 1;
        for (int z = 0, k = 1; z < n; z++) order[z] = z == zp ? 0 : k++;
        raster_ids(sh, order, n, size, ids, vis, own);
        if (n == 1 || layout_ok(sh, n, vis, own, &bad)) break;
        if (bad < n - 1) sh[bad] = sh[n - 1];   // keep the order of what stays deterministic
        n--;
    }

    // Clutter: up to two thin lines in the background (not shapes: they stay background in the mask).
    int n_lines = (int)ib_rng_below(r, 2);
    float lines[2][8];
    for (int l = 0; l < n_lines; l++) {
        for (int k = 0; k < 4; k++) lines[l][k] = S * ib_rng_uniform(r);
        lines[l][4] = 0.6f + 0.8f * ib_rng_uniform(r);   // half width in pixels
        random_colour(r, &lines[l][5]);
    }
    float noise_amp = (2.f + 8.f * ib_rng_uniform(r)) * 2.449f;   // triangular noise of std 2..10

    s->h = s->w = size;
    s->rgb = malloc((size_t)npx * 3);
    s->mask = malloc((size_t)npx);
    s->boxes = malloc((size_t)n * sizeof *s->boxes);
    IB_ASSERT(s->rgb && s->mask && s->boxes, "synth: out of memory");
    s->label = sh[0].cls;
    s->image_id = i;

    float *img = malloc((size_t)npx * 3 * sizeof *img);
    IB_ASSERT(img, "synth: out of memory");
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) bg_pixel(&bg, (float)x + 0.5f, (float)y + 0.5f, size, &img[(y * size + x) * 3]);
    for (int l = 0; l < n_lines; l++) {
        const float *L = lines[l];
        float ex = L[2] - L[0], ey = L[3] - L[1], len2 = ex * ex + ey * ey + 1e-6f;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++) {
                float px = (float)x + 0.5f - L[0], py = (float)y + 0.5f - L[1];
                float t = clampf((px * ex + py * ey) / len2, 0.f, 1.f);
                float qx = px - t * ex, qy = py - t * ey;
                float a = clampf(L[4] + 0.5f - sqrtf(qx * qx + qy * qy), 0.f, 1.f);
                if (a > 0.f)
                    for (int c = 0; c < 3; c++) img[(y * size + x) * 3 + c] += a * (L[5 + c] - img[(y * size + x) * 3 + c]);
            }
    }
    for (int z = 0; z < n; z++) {
        const synth_shape *sp = &sh[order[z]];
        for (int y = sp->y0; y < sp->y1; y++)
            for (int x = sp->x0; x < sp->x1; x++) {
                float px = (float)x + 0.5f, py = (float)y + 0.5f;
                float d = shape_sd_at(sp, px, py) * sp->r;   // ~pixels
                float a = clampf(0.5f - d, 0.f, 1.f);
                if (a <= 0.f) continue;
                float t = 0.f;
                float proj = sp->fdx * (px - sp->cx) + sp->fdy * (py - sp->cy);
                if (sp->fill == 1) t = clampf(0.5f + proj / (2.f * sp->r), 0.f, 1.f);
                else if (sp->fill == 2) t = sinf(sp->ffreq * proj) > 0.f ? 1.f : 0.f;
                float *o = &img[(y * size + x) * 3];
                for (int c = 0; c < 3; c++) o[c] += a * (sp->col[c] + t * (sp->col2[c] - sp->col[c]) - o[c]);
            }
    }
    // Pixel noise from 16-bit halves of one draw: the sum of two uniform bytes is triangular, cheap.
    for (int p = 0; p < npx * 3; p += 2) {
        uint32_t u = ib_rng_u32(r);
        for (int h = 0; h < 2 && p + h < npx * 3; h++) {
            uint32_t b = u >> (16 * h);
            float nz = ((float)(b & 255u) + (float)((b >> 8) & 255u) - 255.f) * (1.f / 255.f);
            float v = img[p + h] + noise_amp * nz;
            s->rgb[p + h] = (uint8_t)(v <= 0.f ? 0 : v >= 255.f ? 255 : (int)(v + 0.5f));
        }
    }
    free(img);

    // Mask and boxes from the hard coverage: a box is the tight box of the shape's visible pixels.
    int bx0[MAX_SHAPES], by0[MAX_SHAPES], bx1[MAX_SHAPES], by1[MAX_SHAPES];
    for (int k = 0; k < n; k++) bx0[k] = by0[k] = size, bx1[k] = by1[k] = -1;
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            int k = ids[y * size + x];
            s->mask[y * size + x] = (uint8_t)(k < 0 ? IB_SYNTH_CLASSES : sh[k].cls);
            if (k < 0) continue;
            if (x < bx0[k]) bx0[k] = x;
            if (x > bx1[k]) bx1[k] = x;
            if (y < by0[k]) by0[k] = y;
            if (y > by1[k]) by1[k] = y;
        }
    s->n_boxes = 0;
    for (int k = 0; k < n; k++) {
        if (bx1[k] < 0) continue;   // cannot happen after the layout check; kept for safety
        ib_box *b = &s->boxes[s->n_boxes++];
        b->x0 = (float)bx0[k], b->y0 = (float)by0[k];
        b->x1 = (float)(bx1[k] + 1), b->y1 = (float)(by1[k] + 1);
        b->label = sh[k].cls;
        b->iscrowd = 0;
    }
    free(ids);
}

// ---------------------------------------------------------------------------------------------
// A pack of scenes: groups rendered in parallel, written in order, so the file does not depend on the
// thread count.

#define SYNTH_GROUP 64

ib_status ib_synth_write_pack(const char *path, int64_t n, int size, uint64_t seed, int annotations,
                              ib_synth_progress_fn progress, void *user, int64_t *boxes) {
    if (n <= 0 || size < 8 || size > 4096)
        return ib_fail(IB_ERR_ARG, "synth: %lld scenes of size %d (need n > 0 and size within 8..4096)", (long long)n, size);
    const char *names[IB_SYNTH_CLASSES];
    for (int c = 0; c < IB_SYNTH_CLASSES; c++) names[c] = synth_names[c];
    ib_pack_writer *pw;
    ib_status st = ib_pack_writer_open(&pw, path, size, size, annotations, annotations, IB_SYNTH_CLASSES, names, 255);
    if (st) return st;
    ib_sample *group = calloc(SYNTH_GROUP, sizeof *group);
    if (!group) st = ib_fail(IB_ERR_NOMEM, "synth: out of memory");
    int64_t total_boxes = 0;
    for (int64_t g0 = 0; st == IB_OK && g0 < n; g0 += SYNTH_GROUP) {
        int ng = n - g0 < SYNTH_GROUP ? (int)(n - g0) : SYNTH_GROUP;
#pragma omp parallel for schedule(dynamic, 4)
        for (int k = 0; k < ng; k++) ib_synth_render(seed, g0 + k, size, &group[k]);
        for (int k = 0; k < ng; k++) {
            total_boxes += group[k].n_boxes;
            if (st == IB_OK) st = ib_pack_writer_add(pw, &group[k]);
            ib_sample_free(&group[k]);
        }
        if (st == IB_OK && progress) progress(g0 + ng, n, user);
    }
    free(group);
    if (st == IB_OK) st = ib_pack_writer_close(pw);
    else ib_pack_writer_abort(pw);
    if (st == IB_OK && boxes) *boxes = total_boxes;
    return st;
}

// ---------------------------------------------------------------------------------------------
// The synthetic source: scenes rendered on demand, so any number of threads may read it at once.

typedef struct {
    uint64_t seed;
    int size;
} synth_source;

static ib_status synth_get(ib_dataset *ds, int64_t i, ib_sample *s) {
    const synth_source *src = ds->impl;
    IB_ASSERT(i >= 0 && i < ds->size, "synth: sample %lld of %lld", (long long)i, (long long)ds->size);
    memset(s, 0, sizeof *s);
    ib_synth_render(src->seed, i, src->size, s);
    return IB_OK;
}

static void synth_close(ib_dataset *ds) {
    free(ds->impl);
    ds->impl = NULL;
}

static const ib_dataset_vtable synth_vtable = {"synth", synth_get, synth_close, NULL};

ib_status ib_synth_source_open(ib_dataset *ds, const ib_ds_opts *opts) {
    int n = opts && opts->synth_n > 0 ? opts->synth_n : 10000;
    int size = opts && opts->synth_size > 0 ? opts->synth_size : 64;
    if (size < 8 || size > 4096)
        return ib_fail(IB_ERR_ARG, "synth: image size %d is outside 8..4096", size);
    synth_source *src = calloc(1, sizeof *src);
    char **names = calloc(IB_SYNTH_CLASSES, sizeof *names);
    if (!src || !names) {
        free(src), free(names);
        return ib_fail(IB_ERR_NOMEM, "synth: out of memory");
    }
    for (int c = 0; c < IB_SYNTH_CLASSES; c++) {
        names[c] = strdup(synth_names[c]);
        if (!names[c]) {
            for (int k = 0; k < c; k++) free(names[k]);
            free(names), free(src);
            return ib_fail(IB_ERR_NOMEM, "synth: out of memory");
        }
    }
    src->seed = opts ? opts->synth_seed : 0;
    src->size = size;
    ds->vt = &synth_vtable;
    ds->impl = src;
    ds->size = n;
    ds->n_classes = IB_SYNTH_CLASSES;
    ds->class_names = names;
    ds->ignore_index = 255;   // no pixel is unlabelled: background has its own id, IB_SYNTH_CLASSES
    ds->has_labels = ds->has_boxes = ds->has_masks = 1;
    return IB_OK;
}

ib_status ib_synth_write_images(const char *dir, int64_t n, int size, uint64_t seed) {
    ib_status st = IB_OK;
    for (int64_t i = 0; i < n && !st; i++) {
        ib_sample s;
        ib_synth_render(seed, i, size, &s);
        char path[4200];
        snprintf(path, sizeof path, "%s/%06lld.png", dir, (long long)i);
        st = ib_png_write_rgb(path, s.rgb, s.h, s.w);
        snprintf(path, sizeof path, "%s/%06lld.mask.png", dir, (long long)i);
        if (!st) st = ib_png_write_indexed(path, s.mask, s.h, s.w, NULL, 0);
        ib_sample_free(&s);
    }
    return st;
}
