// Spatial resizing with the semantics of torch 1.13's F.interpolate(size=...): bilinear with
// align_corners=False and (legacy) nearest. Source indices and weights are computed once per output
// row and column, in float as PyTorch does, so the sampled positions match it bit for bit.
#include "core.h"

#include <math.h>
#include <string.h>

// One axis of a resize: for output index i, the two source indices and their weights.
typedef struct {
    int32_t *i0, *i1;
    float *l0, *l1;
} axis_table;

typedef struct {
    int h, w, ho, wo;
    int64_t planes;
    axis_table ty, tx;      // bilinear
    int32_t *ny, *nx;       // nearest
} resize_saved;

// torch's compute_source_index_and_lambda (align_corners=False, no scale factor given).
static axis_table bilinear_axis(ib_ctx *ctx, int in, int out) {
    axis_table t;
    t.i0 = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)out);
    t.i1 = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)out);
    t.l0 = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)out);
    t.l1 = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)out);
    float scale = (float)in / (float)out;
    for (int i = 0; i < out; i++) {
        if (in == out) {
            t.i0[i] = t.i1[i] = i;
            t.l0[i] = 1.0f;
            t.l1[i] = 0.0f;
            continue;
        }
        float src = scale * ((float)i + 0.5f) - 0.5f;
        if (src < 0) src = 0;   // half-pixel centres before the first pixel clamp to it
        int i0 = (int)src;
        float l1 = src - (float)i0;
        if (l1 < 0) l1 = 0;
        if (l1 > 1) l1 = 1;
        t.i0[i] = i0;
        t.i1[i] = i0 + (i0 < in - 1 ? 1 : 0);
        t.l1[i] = l1;
        t.l0[i] = 1.0f - l1;
    }
    return t;
}

// torch's nearest_idx: src = min(floor(dst * (in / out)), in - 1), with its two exact shortcuts.
static int32_t *nearest_axis(ib_ctx *ctx, int in, int out) {
    int32_t *t = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)out);
    float scale = (float)in / (float)out;
    for (int i = 0; i < out; i++) {
        int64_t s;
        if (out == in) s = i;
        else if (out == 2 * in) s = i >> 1;
        else s = (int64_t)floorf((float)i * scale);
        t[i] = (int32_t)(s < in - 1 ? s : in - 1);
    }
    return t;
}

static resize_saved *resize_setup(ib_ctx *ctx, const char *what, const ib_tensor *x, int ho, int wo) {
    char b[64];
    IB_ASSERT(x->ndim == 4, "%s: x must be (N, C, H, W), got %s", what, ib_shape_str(x, b, sizeof b));
    IB_ASSERT(ib_is_contiguous(x), "%s: contiguous input", what);
    IB_ASSERT(ho > 0 && wo > 0, "%s: output size %d x %d", what, ho, wo);
    IB_ASSERT(x->shape[2] > 0 && x->shape[3] > 0, "%s: empty input %s", what, ib_shape_str(x, b, sizeof b));
    resize_saved *s = ib_arena_calloc(ctx->arena, sizeof *s);
    s->h = x->shape[2];
    s->w = x->shape[3];
    s->ho = ho;
    s->wo = wo;
    s->planes = (int64_t)x->shape[0] * x->shape[1];
    return s;
}

// A resize loop over planes [lo, hi) on the library's pool: x the input (or the output's gradient), y the
// output (or the input's gradient). Each plane is done whole on one thread, in a fixed order.
typedef struct {
    const float *x;
    float *y;
    const resize_saved *s;
    float *scratch;   // bilinear: per worker, two interpolated rows (forward), source rows' sums (backward)
} resize_job;

static void over_planes(const resize_saved *s, ib_range_fn fn, const float *x, float *y, float *scratch) {
    resize_job j = {x, y, s, scratch};
    ib_parallel_range(s->planes, ib_grain(16384, (int64_t)s->ho * s->wo), fn, &j);
}

// ---------------------------------------------------------------------------------------------
// Bilinear

// x: (N, C, H, W) -> y: (N, C, Ho, Wo). Separable: a source row interpolated along x once
// (t = w0 * r[a] + w1 * r[c]) serves every output row that reads it, and the output row is
// h0 * t0 + h1 * t1 over whole rows, which vectorises; the same float operations in the same order as
// h0 * (w0 * r0[a] + w1 * r0[c]) + h1 * (w0 * r1[a] + w1 * r1[c]) per output, so the same numbers.
static void interp_row(const resize_saved *s, const float *r, float *d) {
    for (int ox = 0; ox < s->wo; ox++) d[ox] = s->tx.l0[ox] * r[s->tx.i0[ox]] + s->tx.l1[ox] * r[s->tx.i1[ox]];
}

static void bilinear_fwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const resize_job *j = arg;
    const resize_saved *s = j->s;
    float *slot[2] = {j->scratch + (int64_t)worker * 2 * s->wo, j->scratch + ((int64_t)worker * 2 + 1) * s->wo};
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = j->x + p * s->h * s->w;
        float *yp = j->y + p * s->ho * s->wo;
        // Source row r is kept in slot r % 2: an output's rows are i0 and i0 + 1 (or i0 twice), never
        // the same slot, and rows only move down as oy grows.
        int held[2] = {-1, -1};
        for (int oy = 0; oy < s->ho; oy++) {
            const int rows[2] = {s->ty.i0[oy], s->ty.i1[oy]};
            for (int k = 0; k < 2; k++)
                if (held[rows[k] & 1] != rows[k]) {
                    interp_row(s, xp + (int64_t)rows[k] * s->w, slot[rows[k] & 1]);
                    held[rows[k] & 1] = rows[k];
                }
            const float h0 = s->ty.l0[oy], h1 = s->ty.l1[oy], *t0 = slot[rows[0] & 1], *t1 = slot[rows[1] & 1];
            float *yr = yp + (int64_t)oy * s->wo;
#pragma omp simd
            for (int ox = 0; ox < s->wo; ox++) yr[ox] = h0 * t0[ox] + h1 * t1[ox];
        }
    }
}

static void bilinear_forward(ib_ctx *ctx, const float *x, float *y, const resize_saved *s) {
    float *scratch = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)(2 * s->wo * ib_pool_threads()));
    over_planes(s, bilinear_fwd_planes, x, y, scratch);
}

// gy: (N, C, Ho, Wo) -> gx: (N, C, H, W), added. Separable, as the forward: each output row's gradient is
// added, weighted, into the rows (of the output's width) of its two source rows, over whole rows; then each
// source row is scattered along x once, instead of four scattered adds per output. Each plane is done on
// one thread in a fixed order, so the sums do not depend on the thread count.
static void bilinear_bwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const resize_job *j = arg;
    const resize_saved *s = j->s;
    const int64_t per = (int64_t)s->h * s->wo + s->h;
    float *acc = j->scratch + worker * per, *touched = acc + (int64_t)s->h * s->wo;
    for (int64_t p = lo; p < hi; p++) {
        float *gp = j->y + p * s->h * s->w;
        const float *gyp = j->x + p * s->ho * s->wo;
        memset(acc, 0, sizeof(float) * (size_t)per);
        for (int oy = 0; oy < s->ho; oy++) {
            const float *g = gyp + (int64_t)oy * s->wo, h0 = s->ty.l0[oy], h1 = s->ty.l1[oy];
            float *a0 = acc + (int64_t)s->ty.i0[oy] * s->wo, *a1 = acc + (int64_t)s->ty.i1[oy] * s->wo;
#pragma omp simd
            for (int ox = 0; ox < s->wo; ox++) a0[ox] += h0 * g[ox];
#pragma omp simd
            for (int ox = 0; ox < s->wo; ox++) a1[ox] += h1 * g[ox];
            touched[s->ty.i0[oy]] = touched[s->ty.i1[oy]] = 1;
        }
        for (int iy = 0; iy < s->h; iy++) {
            if (touched[iy] == 0) continue;
            const float *ar = acc + (int64_t)iy * s->wo;
            float *r = gp + (int64_t)iy * s->w;
            for (int ox = 0; ox < s->wo; ox++) {
                r[s->tx.i0[ox]] += s->tx.l0[ox] * ar[ox];
                r[s->tx.i1[ox]] += s->tx.l1[ox] * ar[ox];
            }
        }
    }
}

static void bilinear_backward_kernel(ib_ctx *ctx, const float *gy, float *gx, const resize_saved *s) {
    const int64_t per = (int64_t)s->h * s->wo + s->h;
    float *scratch = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)(per * ib_pool_threads()));
    over_planes(s, bilinear_bwd_planes, gy, gx, scratch);
}

static void bilinear_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *x = n->in[0];
    if (!x->requires_grad) return;
    bilinear_backward_kernel(ctx, n->out->grad, ib_grad(ctx, x), n->saved);
}
static const ib_op op_resize_bilinear = {"resize_bilinear", bilinear_backward};

ib_tensor *ib_resize_bilinear(ib_ctx *ctx, ib_tensor *x, int ho, int wo) {
    resize_saved *s = resize_setup(ctx, "resize_bilinear", x, ho, wo);
    s->ty = bilinear_axis(ctx, s->h, ho);
    s->tx = bilinear_axis(ctx, s->w, wo);
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){x->shape[0], x->shape[1], ho, wo});
    bilinear_forward(ctx, x->data, y->data, s);
    ib_node *n = ib_record(ctx, &op_resize_bilinear, y, 1, &x);
    if (n) n->saved = s;
    return y;
}

// ---------------------------------------------------------------------------------------------
// Nearest

// x: (N, C, H, W) -> y: (N, C, Ho, Wo)
static void nearest_fwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const resize_job *j = arg;
    const float *x = j->x;
    float *y = j->y;
    const resize_saved *s = j->s;
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = x + p * s->h * s->w;
        float *yp = y + p * s->ho * s->wo;
        for (int oy = 0; oy < s->ho; oy++) {
            float *yr = yp + (int64_t)oy * s->wo;
            if (oy > 0 && s->ny[oy] == s->ny[oy - 1]) {   // the row above read the same source row
                memcpy(yr, yr - s->wo, sizeof(float) * (size_t)s->wo);
                continue;
            }
            const float *row = xp + (int64_t)s->ny[oy] * s->w;
            for (int ox = 0; ox < s->wo; ox++) yr[ox] = row[s->nx[ox]];
        }
    }
}

static void nearest_forward(const float *x, float *y, const resize_saved *s) { over_planes(s, nearest_fwd_planes, x, y, NULL); }

// gy: (N, C, Ho, Wo) -> gx: (N, C, H, W), added; per plane, sequential (deterministic).
static void nearest_bwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const resize_job *j = arg;
    const float *gy = j->x;
    float *gx = j->y;
    const resize_saved *s = j->s;
    for (int64_t p = lo; p < hi; p++) {
        float *gp = gx + p * s->h * s->w;
        const float *gyp = gy + p * s->ho * s->wo;
        for (int oy = 0; oy < s->ho; oy++) {
            float *row = gp + (int64_t)s->ny[oy] * s->w;
            for (int ox = 0; ox < s->wo; ox++) row[s->nx[ox]] += gyp[oy * s->wo + ox];
        }
    }
}

static void nearest_backward_kernel(const float *gy, float *gx, const resize_saved *s) { over_planes(s, nearest_bwd_planes, gy, gx, NULL); }

static void nearest_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *x = n->in[0];
    if (!x->requires_grad) return;
    nearest_backward_kernel(n->out->grad, ib_grad(ctx, x), n->saved);
}
static const ib_op op_resize_nearest = {"resize_nearest", nearest_backward};

ib_tensor *ib_resize_nearest(ib_ctx *ctx, ib_tensor *x, int ho, int wo) {
    resize_saved *s = resize_setup(ctx, "resize_nearest", x, ho, wo);
    s->ny = nearest_axis(ctx, s->h, ho);
    s->nx = nearest_axis(ctx, s->w, wo);
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){x->shape[0], x->shape[1], ho, wo});
    nearest_forward(x->data, y->data, s);
    ib_node *n = ib_record(ctx, &op_resize_nearest, y, 1, &x);
    if (n) n->saved = s;
    return y;
}
