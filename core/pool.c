// Pooling ops: global average pooling (the classification head), average pooling and max pooling
// with PyTorch semantics (floor mode; avg counts the padding; max pads with -inf and keeps the first
// maximum). Threaded over (n, c) planes on the library's pool, so every plane is reduced on one thread in
// a fixed order.
#include "core.h"
#include "core/simd.h"

#include <math.h>

// ---------------------------------------------------------------------------------------------
// Global average pooling

typedef struct {
    const float *x;   // the input, or the output's gradient in backward
    float *y;   // the output, or the input's gradient in backward
    int64_t hw;
} gap_job;

// x: (N, C, H, W) -> y: (N, C, 1, 1)
static void gap_fwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const gap_job *j = arg;
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = j->x + p * j->hw;
        double s = 0;
        for (int64_t i = 0; i < j->hw; i++) s += xp[i];
        j->y[p] = (float)(s / (double)j->hw);
    }
}

// gy: (N, C, 1, 1) -> gx: (N, C, H, W), added
static void gap_bwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const gap_job *j = arg;
    for (int64_t p = lo; p < hi; p++) {
        float g = (float)((double)j->x[p] / (double)j->hw);
        float *gp = j->y + p * j->hw;
        for (int64_t i = 0; i < j->hw; i++) gp[i] += g;
    }
}

// Planes in runs of at least PLANE_GRAIN values.
#define PLANE_GRAIN 16384
static void over_planes(int64_t planes, int64_t per_plane, ib_range_fn fn, void *job) {
    ib_parallel_range(planes, ib_grain(PLANE_GRAIN, per_plane), fn, job);
}

static void global_avg_pool_forward(const float *x, float *y, int64_t planes, int64_t hw) {
    gap_job j = {x, y, hw};
    over_planes(planes, hw, gap_fwd_planes, &j);
}

static void global_avg_pool_backward_kernel(const float *gy, float *gx, int64_t planes, int64_t hw) {
    gap_job j = {gy, gx, hw};
    over_planes(planes, hw, gap_bwd_planes, &j);
}

static void global_avg_pool_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *x = n->in[0];
    if (!x->requires_grad) return;
    global_avg_pool_backward_kernel(n->out->grad, ib_grad(ctx, x), (int64_t)x->shape[0] * x->shape[1],
                                    (int64_t)x->shape[2] * x->shape[3]);
}
static const ib_op op_global_avg_pool = {"global_avg_pool", global_avg_pool_backward};

ib_tensor *ib_global_avg_pool(ib_ctx *ctx, ib_tensor *x) {
    char b[64];
    IB_ASSERT(x->ndim == 4, "global_avg_pool: x must be (N, C, H, W), got %s", ib_shape_str(x, b, sizeof b));
    IB_ASSERT(ib_is_contiguous(x), "global_avg_pool: contiguous input");
    IB_ASSERT(x->shape[2] > 0 && x->shape[3] > 0, "global_avg_pool: empty plane %s", ib_shape_str(x, b, sizeof b));
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){x->shape[0], x->shape[1], 1, 1});
    global_avg_pool_forward(x->data, y->data, (int64_t)x->shape[0] * x->shape[1],
                            (int64_t)x->shape[2] * x->shape[3]);
    ib_record(ctx, &op_global_avg_pool, y, 1, &x);
    return y;
}

// ---------------------------------------------------------------------------------------------
// Windowed pooling: shared geometry

typedef struct {
    int h, w, ho, wo, k, stride, pad;
    int64_t planes;
} pool_geom;

static pool_geom pool_setup(const char *what, const ib_tensor *x, int k, int stride, int pad) {
    char b[64];
    IB_ASSERT(x->ndim == 4, "%s: x must be (N, C, H, W), got %s", what, ib_shape_str(x, b, sizeof b));
    IB_ASSERT(ib_is_contiguous(x), "%s: contiguous input", what);
    IB_ASSERT(k >= 1 && stride >= 1 && pad >= 0, "%s: k %d, stride %d, pad %d", what, k, stride, pad);
    // PyTorch's limit; beyond it a window could lie entirely in the padding.
    IB_ASSERT(pad <= k / 2, "%s: pad %d must be at most half the kernel %d", what, pad, k);
    pool_geom g;
    g.h = x->shape[2];
    g.w = x->shape[3];
    g.k = k;
    g.stride = stride;
    g.pad = pad;
    IB_ASSERT(g.h + 2 * pad >= k && g.w + 2 * pad >= k, "%s: kernel %d larger than the padded input %s", what, k,
              ib_shape_str(x, b, sizeof b));
    g.ho = (g.h + 2 * pad - k) / stride + 1;
    g.wo = (g.w + 2 * pad - k) / stride + 1;
    g.planes = (int64_t)x->shape[0] * x->shape[1];
    return g;
}

typedef struct {
    const float *x;   // the input, or the output's gradient in backward
    float *y;   // the output, or the input's gradient in backward
    int32_t *argmax;
    pool_geom g;
    float *scratch;   // max pooling: a padded plane per worker
} pool_job;

// ---------------------------------------------------------------------------------------------
// Average pooling

// x: (N, C, H, W) -> y: (N, C, Ho, Wo); divisor is the window size clipped to the padded input
// (count_include_pad), which in floor mode is always k*k.
static void avg_fwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const pool_job *j = arg;
    const pool_geom g = j->g;
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = j->x + p * g.h * g.w;
        float *yp = j->y + p * g.ho * g.wo;
        for (int oy = 0; oy < g.ho; oy++) {
            int y0 = oy * g.stride - g.pad, y1 = y0 + g.k;
            if (y1 > g.h + g.pad) y1 = g.h + g.pad;
            for (int ox = 0; ox < g.wo; ox++) {
                int x0 = ox * g.stride - g.pad, x1 = x0 + g.k;
                if (x1 > g.w + g.pad) x1 = g.w + g.pad;
                int count = (y1 - y0) * (x1 - x0);
                double s = 0;
                for (int iy = y0 < 0 ? 0 : y0; iy < (y1 < g.h ? y1 : g.h); iy++)
                    for (int ix = x0 < 0 ? 0 : x0; ix < (x1 < g.w ? x1 : g.w); ix++) s += xp[iy * g.w + ix];
                yp[oy * g.wo + ox] = (float)(s / count);
            }
        }
    }
}

static void avg_pool_forward(const float *x, float *y, pool_geom g) {
    pool_job j = {x, y, NULL, g, NULL};
    over_planes(g.planes, (int64_t)g.h * g.w, avg_fwd_planes, &j);
}

// gy: (N, C, Ho, Wo) -> gx: (N, C, H, W), added
static void avg_bwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const pool_job *j = arg;
    const pool_geom g = j->g;
    for (int64_t p = lo; p < hi; p++) {
        float *gp = j->y + p * g.h * g.w;
        const float *gyp = j->x + p * g.ho * g.wo;
        for (int oy = 0; oy < g.ho; oy++) {
            int y0 = oy * g.stride - g.pad, y1 = y0 + g.k;
            if (y1 > g.h + g.pad) y1 = g.h + g.pad;
            for (int ox = 0; ox < g.wo; ox++) {
                int x0 = ox * g.stride - g.pad, x1 = x0 + g.k;
                if (x1 > g.w + g.pad) x1 = g.w + g.pad;
                float v = gyp[oy * g.wo + ox] / (float)((y1 - y0) * (x1 - x0));
                for (int iy = y0 < 0 ? 0 : y0; iy < (y1 < g.h ? y1 : g.h); iy++)
                    for (int ix = x0 < 0 ? 0 : x0; ix < (x1 < g.w ? x1 : g.w); ix++) gp[iy * g.w + ix] += v;
            }
        }
    }
}

static void avg_pool_backward_kernel(const float *gy, float *gx, pool_geom g) {
    pool_job j = {gy, gx, NULL, g, NULL};
    over_planes(g.planes, (int64_t)g.h * g.w, avg_bwd_planes, &j);
}

static void avg_pool_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *x = n->in[0];
    if (!x->requires_grad) return;
    const pool_geom *g = n->saved;
    avg_pool_backward_kernel(n->out->grad, ib_grad(ctx, x), *g);
}
static const ib_op op_avg_pool = {"avg_pool", avg_pool_backward};

ib_tensor *ib_avg_pool(ib_ctx *ctx, ib_tensor *x, int k, int stride, int pad) {
    pool_geom g = pool_setup("avg_pool", x, k, stride, pad);
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){x->shape[0], x->shape[1], g.ho, g.wo});
    avg_pool_forward(x->data, y->data, g);
    ib_node *n = ib_record(ctx, &op_avg_pool, y, 1, &x);
    if (n) {
        pool_geom *s = ib_arena_alloc(ctx->arena, sizeof *s);
        *s = g;
        n->saved = s;
    }
    return y;
}

// ---------------------------------------------------------------------------------------------
// Max pooling

typedef struct {
    pool_geom g;
    int32_t *argmax;   // (N, C, Ho, Wo): index into the input plane (iy * W + ix)
} max_pool_saved;

// x: (N, C, H, W) -> y: (N, C, Ho, Wo), argmax: (N, C, Ho, Wo) or NULL. Only in-range elements are
// scanned, which is what -inf padding amounts to (pad <= k/2 keeps every window non-empty); a NaN
// wins, as in PyTorch, so it propagates. The pass for strides and kernels beyond MAX_STRIDE, MAX_TAPS.
static void max_fwd_scan_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const pool_job *j = arg;
    const pool_geom g = j->g;
    int32_t *argmax = j->argmax;
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = j->x + p * g.h * g.w;
        float *yp = j->y + p * g.ho * g.wo;
        for (int oy = 0; oy < g.ho; oy++) {
            int y0 = oy * g.stride - g.pad, y1 = y0 + g.k;
            if (y0 < 0) y0 = 0;
            if (y1 > g.h) y1 = g.h;
            for (int ox = 0; ox < g.wo; ox++) {
                int x0 = ox * g.stride - g.pad, x1 = x0 + g.k;
                if (x0 < 0) x0 = 0;
                if (x1 > g.w) x1 = g.w;
                float best = -INFINITY;
                int32_t at = y0 * g.w + x0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++) {
                        float v = xp[iy * g.w + ix];
                        if (v > best || isnan(v)) {
                            best = v;
                            at = iy * g.w + ix;
                            if (isnan(v)) goto found;
                        }
                    }
            found:
                yp[oy * g.wo + ox] = best;
                if (argmax) argmax[p * g.ho * g.wo + oy * g.wo + ox] = at;
            }
        }
    }
}

// The usual pass: each plane is copied into the worker's scratch with -inf padding and its columns split
// by phase (column c to phase c % stride, at c / stride), so every tap of a row of outputs is a contiguous
// run, and the kernels' tapmax takes the maximum of each run of outputs over the taps (and, for training,
// the winning tap), as the depthwise convolution sums them. A BiFPN's 3x3 stride-2 pool of 64 x 24 x 24
// on one AVX2 thread: 28 us against the scan's 116, with the argmax 47 against 111.
typedef struct {
    int hp, pw;       // padded rows; columns per phase (ceil(padded columns / stride))
    int64_t row;      // a padded row, its phases one after the other
} max_scratch;

static max_scratch max_scratch_geom(pool_geom g) {
    max_scratch m = {g.h + 2 * g.pad, (g.w + 2 * g.pad + g.stride - 1) / g.stride, 0};
    m.row = (int64_t)g.stride * m.pw;
    return m;
}

#define MAX_STRIDE 8   // beyond these, the scan (max_fwd_scan_planes)
#define MAX_TAPS 64
static void max_fwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const pool_job *j = arg;
    const pool_geom g = j->g;
    const max_scratch m = max_scratch_geom(g);
    const ib_simd_kernels *K = ib_simd();
    float *buf = j->scratch + worker * (int64_t)m.hp * m.row;
    for (int64_t i = 0; i < m.hp * m.row; i++) buf[i] = -INFINITY;
    int qa[MAX_STRIDE], qb[MAX_STRIDE];   // per phase, the q whose column q * stride + ph - pad is in the input
    for (int ph = 0; ph < g.stride; ph++) {
        qa[ph] = ph >= g.pad ? 0 : (g.pad - ph + g.stride - 1) / g.stride;
        qb[ph] = g.w - 1 + g.pad - ph >= 0 ? (g.w - 1 + g.pad - ph) / g.stride + 1 : 0;
        if (qb[ph] < qa[ph]) qb[ph] = qa[ph];
    }
    const float *tap[MAX_TAPS];
    int32_t tap_at[MAX_TAPS];   // tap t's input position from its window's corner
    for (int ky = 0, t = 0; ky < g.k; ky++)
        for (int kx = 0; kx < g.k; kx++, t++) {
            tap[t] = buf + ky * m.row + (kx % g.stride) * m.pw + kx / g.stride;
            tap_at[t] = ky * g.w + kx;
        }
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = j->x + p * g.h * g.w;
        float *top = buf + g.pad * m.row;   // input column ix: phase (ix + pad) % stride, at (ix + pad) / stride
        if (g.stride == 1)
            K->copy2d(xp, g.w, g.w, g.h, top + g.pad, m.row, 0, 1, 0, 0);
        else if (g.stride == 2)
            K->deint2(xp, g.w, g.w, g.h, top + (g.pad % 2) * m.pw + g.pad / 2,
                      top + ((g.pad + 1) % 2) * m.pw + (g.pad + 1) / 2, m.row, 1, 0, 0);
        else
            for (int iy = 0; iy < g.h; iy++)
                for (int ph = 0; ph < g.stride; ph++) {
                    float *d = top + iy * m.row + ph * m.pw;
                    const float *sr = xp + iy * g.w + ph - g.pad;
                    for (int q = qa[ph]; q < qb[ph]; q++) d[q] = sr[q * g.stride];
                }
        float *yp = j->y + p * g.ho * g.wo;
        int32_t *ap = j->argmax ? j->argmax + p * g.ho * g.wo : NULL;
        K->tapmax(yp, ap, g.wo, g.ho, g.wo, g.k * g.k, tap, 0, g.stride * m.row);
        if (!ap) continue;
        // Winning taps to input positions. A padded value (-inf) never wins (it must be greater than the
        // maximum so far, which starts at -inf), so every winner is in range; a window whose in-range
        // values are all -inf has none (-1) and points at its first in-range value, as the scan does.
        for (int oy = 0; oy < g.ho; oy++)
            for (int ox = 0; ox < g.wo; ox++) {
                int32_t *a = ap + oy * g.wo + ox, t = *a;
                int y0 = oy * g.stride - g.pad, x0 = ox * g.stride - g.pad;
                *a = t >= 0 ? y0 * g.w + x0 + tap_at[t] : (y0 > 0 ? y0 : 0) * g.w + (x0 > 0 ? x0 : 0);
            }
    }
}

static void max_pool_forward(ib_ctx *ctx, const float *x, float *y, int32_t *argmax, pool_geom g) {
    pool_job j = {x, y, argmax, g, NULL};
    if (g.stride > MAX_STRIDE || g.k * g.k > MAX_TAPS) {
        over_planes(g.planes, (int64_t)g.h * g.w, max_fwd_scan_planes, &j);
        return;
    }
    max_scratch m = max_scratch_geom(g);
    j.scratch = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)(m.hp * m.row * ib_pool_threads()));
    over_planes(g.planes, (int64_t)g.h * g.w, max_fwd_planes, &j);
}

// gy: (N, C, Ho, Wo), argmax -> gx: (N, C, H, W), added
static void max_bwd_planes(void *arg, int64_t lo, int64_t hi, int worker) {
    const pool_job *j = arg;
    const pool_geom g = j->g;
    for (int64_t p = lo; p < hi; p++) {
        float *gp = j->y + p * g.h * g.w;
        const float *gyp = j->x + p * g.ho * g.wo;
        const int32_t *ap = j->argmax + p * g.ho * g.wo;
        for (int i = 0; i < g.ho * g.wo; i++) gp[ap[i]] += gyp[i];
    }
}

static void max_pool_backward_kernel(const float *gy, const int32_t *argmax, float *gx, pool_geom g) {
    pool_job j = {gy, gx, (int32_t *)argmax, g, NULL};
    over_planes(g.planes, (int64_t)g.h * g.w, max_bwd_planes, &j);
}

static void max_pool_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *x = n->in[0];
    if (!x->requires_grad) return;
    const max_pool_saved *s = n->saved;
    max_pool_backward_kernel(n->out->grad, s->argmax, ib_grad(ctx, x), s->g);
}
static const ib_op op_max_pool = {"max_pool", max_pool_backward};

ib_tensor *ib_max_pool(ib_ctx *ctx, ib_tensor *x, int k, int stride, int pad) {
    pool_geom g = pool_setup("max_pool", x, k, stride, pad);
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){x->shape[0], x->shape[1], g.ho, g.wo});
    // Recorded first so the argmax indices are only kept when backward will need them.
    ib_node *n = ib_record(ctx, &op_max_pool, y, 1, &x);
    int32_t *argmax = NULL;
    if (n) {
        max_pool_saved *s = ib_arena_alloc(ctx->arena, sizeof *s);
        s->g = g;
        s->argmax = argmax = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)ib_numel(y));
        n->saved = s;
    }
    max_pool_forward(ctx, x->data, y->data, argmax, g);
    return y;
}
