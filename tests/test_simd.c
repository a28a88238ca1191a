// The SIMD kernels (core/simd.h) and the fused ops: depthwise conv in every SIMD version against a direct
// double-precision reference at odd sizes, strides, paddings, dilations and kernels; AVX2 and AVX-512
// bitwise equal; batchnorm bitwise equal across versions; fused BN + activation and conv + BN +
// activation bitwise equal to the separate ops; thread-count independence; the batched 1x1 path; max
// pooling's inference pass in every version.
#include "core/simd.h"
#include "layers/layers.h"
#include "tests/test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const SIMD[] = {"portable", "avx2", "avx512"};
#define N_SIMD 3

static int same_bits(const float *a, const float *b, int64_t n) { return !memcmp(a, b, sizeof(float) * (size_t)n); }

// The x86 versions this CPU lacks ("" when it runs both), then back to the best version. A test whose
// point is comparing versions with each other SKIPs, naming them, where it could not compare them.
static const char *x86_missing(void) {
    int avx2 = ib_simd_select("avx2"), avx512 = ib_simd_select("avx512");
    ib_simd_select("auto");
    return avx2 && avx512 ? "" : avx2 ? "avx512" : avx512 ? "avx2" : "avx2 and avx512";
}

// ---------------------------------------------------------------------------------------------
// Depthwise conv

typedef struct {
    int N, C, H, W, K, s, p, d;
} dw_case;

static const dw_case DW_CASES[] = {
    {3, 5, 7, 9, 3, 1, 1, 1},    {3, 5, 7, 9, 3, 2, 1, 1},   {2, 3, 11, 13, 5, 2, 2, 1},  {2, 3, 13, 11, 7, 1, 3, 1},
    {2, 3, 13, 11, 7, 2, 3, 1},  {4, 3, 9, 10, 3, 1, 2, 2},  {2, 2, 12, 12, 3, 3, 1, 1},  {2, 3, 6, 6, 3, 2, 0, 1},
    {2, 3, 5, 6, 4, 2, 1, 1},    {1, 2, 40, 37, 3, 1, 1, 1}, {1, 2, 40, 37, 3, 2, 1, 1},  {3, 2, 33, 70, 5, 2, 2, 1},
    {2, 2, 35, 35, 3, 2, 3, 1},  {5, 3, 2, 2, 3, 1, 1, 1},   {40, 2, 20, 20, 3, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 0, 1},
    {2, 3, 4, 4, 1, 2, 0, 1},    {2, 2, 9, 9, 3, 1, 4, 1},   {2, 2, 17, 19, 5, 1, 2, 2},  {3, 4, 21, 18, 7, 2, 3, 1},
    {2, 2, 16, 16, 3, 2, 1, 1},  {2, 2, 24, 31, 5, 1, 0, 1}, {2, 3, 16, 16, 3, 1, 1, 1},  {1, 2, 9, 70, 3, 1, 1, 1},
    {2, 2, 10, 131, 3, 2, 1, 1}, {1, 2, 18, 33, 7, 1, 3, 1}, {2, 2, 20, 20, 3, 1, 2, 1},  {2, 2, 20, 20, 5, 1, 1, 1},
    {1, 3, 17, 16, 5, 1, 2, 2},  {1, 2, 3, 40, 3, 1, 1, 1},
    // many channels on small planes: core/dw_conv.c's channels-last path when the layout is by plane size
    {4, 37, 4, 4, 3, 1, 1, 1},   {3, 70, 4, 4, 3, 2, 1, 1},  {2, 20, 7, 7, 5, 1, 2, 1},   {2, 33, 2, 2, 3, 1, 1, 1},
    {3, 24, 8, 8, 3, 2, 1, 1},   {2, 16, 6, 5, 3, 1, 2, 2},  {2, 129, 3, 3, 3, 1, 1, 1},  {1, 9, 14, 14, 3, 2, 1, 1},
};
#define N_DW ((int)(sizeof DW_CASES / sizeof DW_CASES[0]))

static int out_size(int in, int k, int s, int p, int d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

typedef struct {
    float *y, *gx, *gw, *gb;
    int64_t ny, nx, nw, nb;
} dw_result;

static void dw_result_free(dw_result *r) { free(r->y), free(r->gx), free(r->gw), free(r->gb); }

static float *copy_of(const float *p, int64_t n) {
    float *q = malloc(sizeof(float) * (size_t)(n ? n : 1));
    IB_ASSERT(q, "out of memory");
    memcpy(q, p, sizeof(float) * (size_t)n);
    return q;
}

// Forward and backward of case c (inputs from fixed seeds, gy seeded too) with the current SIMD version.
static dw_result dw_run(const dw_case *c) {
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){c->N, c->C, c->H, c->W});
    ib_tensor *w = ib_tensor_new(ctx, 4, (int[]){c->C, 1, c->K, c->K}), *b = ib_tensor_new(ctx, 1, &c->C);
    fill_normal(x, 11, 1), fill_normal(w, 12, 1), fill_normal(b, 13, 1);
    x->requires_grad = w->requires_grad = b->requires_grad = 1;
    ib_tensor *y = ib_dwconv2d(ctx, x, w, b, c->s, c->p, c->d);
    ib_tensor *gy = ib_tensor_like(ctx, y);
    fill_normal(gy, 14, 1);
    ib_backward(ctx, y, gy->data);
    dw_result r = {copy_of(y->data, ib_numel(y)),
                   copy_of(x->grad, ib_numel(x)),
                   copy_of(w->grad, ib_numel(w)),
                   copy_of(b->grad, c->C),
                   ib_numel(y),
                   ib_numel(x),
                   ib_numel(w),
                   c->C};
    ib_ctx_free(ctx);
    return r;
}

// The same in double with direct loops.
static dw_result dw_reference(const dw_case *c) {
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){c->N, c->C, c->H, c->W});
    ib_tensor *w = ib_tensor_new(ctx, 4, (int[]){c->C, 1, c->K, c->K}), *b = ib_tensor_new(ctx, 1, &c->C);
    fill_normal(x, 11, 1), fill_normal(w, 12, 1), fill_normal(b, 13, 1);
    int Ho = out_size(c->H, c->K, c->s, c->p, c->d), Wo = out_size(c->W, c->K, c->s, c->p, c->d);
    ib_tensor *gy = ib_tensor_new(ctx, 4, (int[]){c->N, c->C, Ho, Wo});
    fill_normal(gy, 14, 1);
    int64_t nx = ib_numel(x), ny = ib_numel(gy), nw = ib_numel(w);
    double *y = calloc((size_t)ny, sizeof(double)), *gx = calloc((size_t)nx, sizeof(double));
    double *gw = calloc((size_t)nw, sizeof(double)), *gb = calloc((size_t)c->C, sizeof(double));
    for (int n = 0; n < c->N; n++)
        for (int ch = 0; ch < c->C; ch++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    int64_t yi = (((int64_t)n * c->C + ch) * Ho + oh) * Wo + ow;
                    double acc = b->data[ch], g = gy->data[yi];
                    gb[ch] += g;
                    for (int kh = 0; kh < c->K; kh++)
                        for (int kw = 0; kw < c->K; kw++) {
                            int ih = oh * c->s - c->p + kh * c->d, iw = ow * c->s - c->p + kw * c->d;
                            if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                            int64_t xi = (((int64_t)n * c->C + ch) * c->H + ih) * c->W + iw;
                            int64_t wi = ((int64_t)ch * c->K + kh) * c->K + kw;
                            acc += (double)w->data[wi] * x->data[xi];
                            gx[xi] += g * w->data[wi];
                            gw[wi] += g * x->data[xi];
                        }
                    y[yi] = acc;
                }
    dw_result r = {malloc(sizeof(float) * (size_t)ny),
                   malloc(sizeof(float) * (size_t)nx),
                   malloc(sizeof(float) * (size_t)nw),
                   malloc(sizeof(float) * (size_t)c->C),
                   ny,
                   nx,
                   nw,
                   c->C};
    for (int64_t i = 0; i < ny; i++) r.y[i] = (float)y[i];
    for (int64_t i = 0; i < nx; i++) r.gx[i] = (float)gx[i];
    for (int64_t i = 0; i < nw; i++) r.gw[i] = (float)gw[i];
    for (int i = 0; i < c->C; i++) r.gb[i] = (float)gb[i];
    free(y), free(gx), free(gw), free(gb);
    ib_ctx_free(ctx);
    return r;
}

static const char *dw_compare(const dw_result *a, const dw_result *b, double tol) {
    if (tol > 0) {
        if (!(rel_err(a->y, b->y, a->ny) <= tol)) return "y";
        if (!(rel_err(a->gx, b->gx, a->nx) <= tol)) return "gx";
        if (!(rel_err(a->gw, b->gw, a->nw) <= tol)) return "gw";
        if (!(rel_err(a->gb, b->gb, a->nb) <= tol)) return "gb";
        return NULL;
    }
    if (!same_bits(a->y, b->y, a->ny)) return "y";
    if (!same_bits(a->gx, b->gx, a->nx)) return "gx";
    if (!same_bits(a->gw, b->gw, a->nw)) return "gw";
    if (!same_bits(a->gb, b->gb, a->nb)) return "gb";
    return NULL;
}

static const char *const DW_PATH[] = {"by plane size", "planes", "channels last"};

// Every case in each layout (ib__dw_path: by plane size, the stacked planes, channels last).
TEST(dwconv_every_simd_version_matches_reference) {
    for (int i = 0; i < 3 * N_DW; i++) {
        ib__dw_path = i / N_DW;
        const dw_case *c = &DW_CASES[i % N_DW];
        dw_result ref = dw_reference(c), got[N_SIMD];
        int have[N_SIMD] = {0};
        const char *bad = NULL;
        int bad_v = 0;
        for (int v = 0; v < N_SIMD; v++) {
            if (!(have[v] = ib_simd_select(SIMD[v]))) continue;
            got[v] = dw_run(c);
            if (!bad && (bad = dw_compare(&got[v], &ref, 2e-6))) bad_v = v;
        }
        int x86_same = !(have[1] && have[2]) || !dw_compare(&got[1], &got[2], 0);
        for (int v = 0; v < N_SIMD; v++)
            if (have[v]) dw_result_free(&got[v]);
        dw_result_free(&ref);
        ib_simd_select("auto");
        if (bad || !x86_same) ib__dw_path = 0;
        CHECK(!bad, "case %d (N%d C%d %dx%d K%d s%d p%d d%d), %s, %s: %s differs from the reference", i % N_DW, c->N,
              c->C, c->H, c->W, c->K, c->s, c->p, c->d, DW_PATH[i / N_DW], SIMD[bad_v], bad);
        CHECK(x86_same, "case %d, %s: avx2 and avx512 differ", i % N_DW, DW_PATH[i / N_DW]);
    }
    ib__dw_path = 0;
    if (x86_missing()[0]) SKIP("every version ran matched the reference, but this CPU lacks %s: not compared", x86_missing());
}

TEST(dwconv_bitwise_across_thread_counts) {
    const dw_case cases[] = {{40, 6, 20, 20, 3, 1, 1, 1}, {33, 8, 4, 4, 3, 2, 1, 1}, {3, 5, 37, 37, 5, 2, 2, 1},
                             {33, 150, 4, 4, 3, 1, 1, 1}, {9, 200, 7, 7, 3, 2, 1, 1}};   // the last two channels last
    for (int v = 0; v < N_SIMD; v++) {
        if (!ib_simd_select(SIMD[v])) continue;
        for (int i = 0; i < 5; i++) {
            ib_set_threads(1);
            dw_result one = dw_run(&cases[i]);
            ib_set_threads(2);
            dw_result two = dw_run(&cases[i]);
            const char *bad = dw_compare(&one, &two, 0);
            dw_result_free(&one), dw_result_free(&two);
            if (bad) ib_simd_select("auto");
            CHECK(!bad, "%s, case %d: %s differs between 1 and 2 threads", SIMD[v], i, bad);
        }
    }
    ib_simd_select("auto");
}

// The transpose kernel (the weight gradients' Xt): every float where it belongs, nothing else touched, at
// shapes with and without whole 8 x 8 blocks and with row pitches wider than the rows.
TEST(transpose_every_simd_version) {
    static const int shapes[][2] = {{1, 1}, {8, 8}, {7, 9}, {9, 7}, {32, 32}, {13, 40}, {40, 13}, {33, 65}, {16, 3}};
    float src[80 * 80], dst[80 * 80];
    for (int v = 0; v < N_SIMD; v++) {
        if (!ib_simd_select(SIMD[v])) continue;
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            int rows = shapes[k][0], n = shapes[k][1];
            int64_t lds = n + 3, ldd = rows + 5;
            for (int i = 0; i < 80 * 80; i++) src[i] = (float)i * 0.5f + 1, dst[i] = -7;
            ib_simd()->transpose(src, lds, rows, n, dst, ldd);
            for (int i = 0; i < 80 * 80; i++) {
                int64_t c = i / ldd, r = i % ldd;
                float want = c < n && r < rows ? src[r * lds + c] : -7;
                if (dst[i] != want) {
                    ib_simd_select("auto");
                    CHECK(0, "%s: %d x %d: dst[%lld][%lld] = %g, want %g", SIMD[v], rows, n, (long long)c, (long long)r,
                          dst[i], want);
                }
            }
        }
    }
    ib_simd_select("auto");
}

// Max pooling (a padded, phase-split copy and the tapmax kernel; the scan beyond its stride and kernel
// limits) in every SIMD version against a direct reference: the window's largest in-range value, NaN
// when it holds one; in training, the gradient goes to the first maximum (the first NaN). Ties, -inf and
// NaN inputs; rows narrower and wider than a vector.
// The window's value and *at, the position its gradient goes to: the first NaN, else the first maximum,
// else (every in-range value -inf) the first in-range position.
static float ref_window_max(const float *x, int H, int W, int oy, int ox, int k, int s, int p, int *at) {
    float best = -INFINITY;
    int nan = -1, first = -1;
    *at = -1;
    for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++) {
            int iy = oy * s - p + ky, ix = ox * s - p + kx;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            float v = x[iy * W + ix];
            if (first < 0) first = iy * W + ix;
            if (isnan(v)) {
                if (nan < 0) nan = iy * W + ix;
            } else if (v > best) best = v, *at = iy * W + ix;
        }
    *at = nan >= 0 ? nan : *at >= 0 ? *at : first;
    return nan >= 0 ? NAN : best;
}

TEST(max_pool_every_simd_version_matches_reference) {
    static const int cfg[][3] = {{3, 2, 1}, {3, 1, 1}, {2, 2, 0}, {5, 2, 2}, {3, 3, 1}, {1, 1, 0}, {4, 3, 2}, {3, 9, 0}, {9, 2, 4}};
    static const int shapes[][2] = {{7, 9}, {24, 24}, {5, 41}, {12, 3}, {33, 70}};
    ib_ctx *ctx = ib_ctx_new();
    for (int v = 0; v < N_SIMD; v++) {
        if (!ib_simd_select(SIMD[v])) continue;
        for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++)
            for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
                for (int train = 0; train < 2; train++) {
                    const int k = cfg[c][0], st = cfg[c][1], p = cfg[c][2], H = shapes[sh][0], W = shapes[sh][1];
                    if (H + 2 * p < k || W + 2 * p < k) continue;
                    ib_ctx_reset(ctx);
                    ctx->recording = train;
                    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, H, W});
                    fill_normal(x, 100 + (uint64_t)(c * 10 + sh), 1);
                    for (int64_t i = 0; i < ib_numel(x); i++) {   // ties, -inf and a few NaNs
                        x->data[i] = roundf(x->data[i] * 2) / 2;
                        if (i % 37 == 5) x->data[i] = -INFINITY;
                        if (i % 101 == 7) x->data[i] = NAN;
                        if (i / (H * W) == 2) x->data[i] = -INFINITY;   // a plane of -inf: no window has a maximum
                    }
                    x->requires_grad = train;
                    ib_tensor *y = ib_max_pool(ctx, x, k, st, p);
                    const int Ho = y->shape[2], Wo = y->shape[3];
                    float *gwant = calloc((size_t)ib_numel(x), sizeof(float));
                    for (int pl = 0; pl < 6; pl++)
                        for (int oy = 0; oy < Ho; oy++)
                            for (int ox = 0; ox < Wo; ox++) {
                                int at;
                                float want = ref_window_max(x->data + pl * H * W, H, W, oy, ox, k, st, p, &at);
                                float got = y->data[(pl * Ho + oy) * Wo + ox];
                                gwant[pl * H * W + at] += (float)(1 + (oy * Wo + ox) % 3);
                                if (!(got == want || (isnan(got) && isnan(want)))) {
                                    ib_simd_select("auto");
                                    ib_ctx_free(ctx);
                                    free(gwant);
                                    CHECK(0, "%s %s: k%d s%d p%d %dx%d: y[%d][%d][%d] = %g, want %g", SIMD[v],
                                          train ? "training" : "inference", k, st, p, H, W, pl, oy, ox, got, want);
                                }
                            }
                    if (train) {   // the gradient lands where the scan's argmax is (seeds 1, 2, 3 tell outputs apart)
                        float *seed = malloc(sizeof(float) * (size_t)ib_numel(y));
                        for (int64_t i = 0; i < ib_numel(y); i++) seed[i] = (float)(1 + (i % (Ho * Wo)) % 3);
                        ib_backward(ctx, y, seed);
                        free(seed);
                        int64_t bad = -1;
                        for (int64_t i = 0; i < ib_numel(x) && bad < 0; i++)
                            if (x->grad[i] != gwant[i]) bad = i;
                        float g = bad >= 0 ? x->grad[bad] : 0, gw = bad >= 0 ? gwant[bad] : 0;
                        free(gwant);
                        if (bad >= 0) {
                            ib_simd_select("auto");
                            ib_ctx_free(ctx);
                            CHECK(0, "%s: k%d s%d p%d %dx%d: grad[%lld] = %g, want %g (the argmax)", SIMD[v], k, st, p,
                                  H, W, (long long)bad, g, gw);
                        }
                    } else {
                        free(gwant);
                    }
                }
    }
    ib_simd_select("auto");
    ib_ctx_free(ctx);
}

TEST(simd_select_names) {
    CHECK(ib_simd_select("portable") && !strcmp(ib_simd_name(), "portable"), "portable must always be available");
    CHECK(!ib_simd_select("sse9"), "an unknown name must be refused");
    CHECK(!strcmp(ib_simd_name(), "portable"), "a refused name must not change the choice");
    CHECK(ib_simd_select("auto"), "auto must always succeed");
}

// ---------------------------------------------------------------------------------------------
// Batchnorm + activation

typedef struct {
    float *y, *rm, *rv, *gx, *gg, *gb;
    int64_t n, c;
} bn_result;

static void bn_result_free(bn_result *r) {
    free(r->y), free(r->rm), free(r->rv), free(r->gx), free(r->gg), free(r->gb);
}

// fused: ib_batchnorm_act; else ib_batchnorm then the activation op.
static bn_result bn_run(int ndim, const int *shape, int training, int act, int fused) {
    ib_ctx *ctx = ib_ctx_new();
    int C = shape[1];
    ib_tensor *x = ib_tensor_new(ctx, ndim, shape), *g = ib_tensor_new(ctx, 1, &C), *b = ib_tensor_new(ctx, 1, &C);
    ib_tensor *rm = ib_tensor_new(ctx, 1, &C), *rv = ib_tensor_new(ctx, 1, &C);
    fill_normal(x, 21, 2.0f);
    for (int64_t i = 0; i < ib_numel(x); i++) x->data[i] += 3.0f;
    fill_uniform(g, 22, 0.5f, 3.0f), fill_normal(b, 23, 2.0f);
    fill_normal(rm, 24, 1.0f), fill_uniform(rv, 25, 0.5f, 2.0f);
    x->requires_grad = g->requires_grad = b->requires_grad = 1;
    ib_tensor *y;
    if (fused) {
        y = ib_batchnorm_act(ctx, x, g, b, rm, rv, training, 0.1f, 1e-5f, (ib_fuse_act)act);
    } else {
        y = ib_batchnorm(ctx, x, g, b, rm, rv, training, 0.1f, 1e-5f);
        y = ib_act_apply(ctx, (ib_act)act, y);
    }
    ib_tensor *gy = ib_tensor_like(ctx, y);
    fill_normal(gy, 26, 1.0f);
    ib_backward(ctx, y, gy->data);
    bn_result r = {
        copy_of(y->data, ib_numel(y)), copy_of(rm->data, C), copy_of(rv->data, C), copy_of(x->grad, ib_numel(x)),
        copy_of(g->grad, C),           copy_of(b->grad, C),  ib_numel(x),          C};
    ib_ctx_free(ctx);
    return r;
}

static const char *bn_compare(const bn_result *a, const bn_result *b) {
    if (!same_bits(a->y, b->y, a->n)) return "y";
    if (!same_bits(a->rm, b->rm, a->c) || !same_bits(a->rv, b->rv, a->c)) return "running stats";
    if (!same_bits(a->gx, b->gx, a->n)) return "dx";
    if (!same_bits(a->gg, b->gg, a->c)) return "dgamma";
    if (!same_bits(a->gb, b->gb, a->c)) return "dbeta";
    return NULL;
}

static const int BN_SHAPES[][4] = {{3, 5, 7, 9}, {37, 4, 0, 0}, {4, 3, 33, 33}, {2, 6, 1, 3}, {5, 2, 4, 4}};

TEST(batchnorm_act_equals_separate_ops_bitwise) {
    for (int v = 0; v < N_SIMD; v++) {
        if (!ib_simd_select(SIMD[v])) continue;
        for (int si = 0; si < 5; si++)
            for (int training = 0; training < 2; training++)
                for (int act = 0; act < 4; act++) {
                    int ndim = BN_SHAPES[si][2] ? 4 : 2;
                    bn_result f = bn_run(ndim, BN_SHAPES[si], training, act, 1);
                    bn_result u = bn_run(ndim, BN_SHAPES[si], training, act, 0);
                    const char *bad = bn_compare(&f, &u);
                    bn_result_free(&f), bn_result_free(&u);
                    if (bad) ib_simd_select("auto");
                    CHECK(!bad, "%s, shape %d, %s, act %d: fused %s differs from BN then activation", SIMD[v], si,
                          training ? "training" : "eval", act, bad);
                }
    }
    ib_simd_select("auto");
}

TEST(batchnorm_bitwise_across_simd_versions) {
    for (int si = 0; si < 5; si++)
        for (int training = 0; training < 2; training++)
            for (int act = 0; act < 4; act++) {
                int ndim = BN_SHAPES[si][2] ? 4 : 2;
                ib_simd_select("portable");
                bn_result ref = bn_run(ndim, BN_SHAPES[si], training, act, 1);
                for (int v = 1; v < N_SIMD; v++) {
                    if (!ib_simd_select(SIMD[v])) continue;
                    bn_result r = bn_run(ndim, BN_SHAPES[si], training, act, 1);
                    const char *bad = bn_compare(&r, &ref);
                    bn_result_free(&r);
                    if (bad) bn_result_free(&ref), ib_simd_select("auto");
                    CHECK(!bad, "shape %d, %s, act %d: %s's %s differs from portable", si,
                          training ? "training" : "eval", act, SIMD[v], bad);
                }
                bn_result_free(&ref);
            }
    ib_simd_select("auto");
    if (x86_missing()[0]) SKIP("this CPU lacks %s: not compared with portable", x86_missing());
}

// Small planes go through the columns layout (core/norm.c, bn_forward_small; 2x2 and smaller by default,
// 4x4 too with ib__bn_path 2): the same numbers as the per-channel kernels bit for bit, on every SIMD version
// and thread count, blocks of channels cut at IB_BN_COLS columns included (300 channels of 2x2: five blocks;
// 40 of 3x5: 17 a block).
TEST(batchnorm_small_planes_equal_per_channel_bitwise) {
    static const int shapes[][4] = {{6, 300, 2, 2}, {4, 70, 4, 4}, {3, 40, 3, 5}, {5, 700, 0, 0}, {2, 9, 1, 1},
                                     {7, 33, 4, 4}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]), threads0 = ib_get_threads();
    for (int v = 0; v < N_SIMD; v++) {
        if (!ib_simd_select(SIMD[v])) continue;
        for (int si = 0; si < n_shapes; si++)
            for (int training = 0; training < 2; training++)
                for (int act = 0; act < 4; act++) {
                    int ndim = shapes[si][2] ? 4 : 2;
                    ib__bn_path = 1;
                    bn_result ref = bn_run(ndim, shapes[si], training, act, 1);
                    const char *bad = NULL;
                    int th = 1;
                    for (; th <= 4 && !bad; th++) {   // layouts 0 and 2, each on 1 and 2 threads
                        ib__bn_path = th <= 2 ? 0 : 2;
                        ib_set_threads(1 + (th - 1) % 2);
                        bn_result r = bn_run(ndim, shapes[si], training, act, 1);
                        bad = bn_compare(&r, &ref);
                        bn_result_free(&r);
                    }
                    bn_result_free(&ref);
                    ib__bn_path = 0;
                    if (bad) ib_simd_select("auto"), ib_set_threads(threads0);
                    CHECK(!bad, "%s, shape %dx%dx%dx%d, %s, act %d, layout %d, %d threads: the %s differs from the "
                          "per-channel kernels'", SIMD[v], shapes[si][0], shapes[si][1], shapes[si][2], shapes[si][3],
                          training ? "training" : "eval", act, th - 1 <= 2 ? 0 : 2, 1 + (th - 2) % 2, bad);
                }
    }
    ib_simd_select("auto");
    ib_set_threads(threads0);
}

// BN + activation gradient check, training and eval mode, every activation. Per channel the normalised
// values sit in one region of the activation (inside, below, above), clear of its kinks, so central
// differences apply.
typedef struct {
    int act, training;
    ib_tensor *rm, *rv;   // eval mode's running statistics
} bn_gc;

static ib_tensor *bn_gc_fwd(ib_ctx *ctx, ib_tensor **in, void *user) {
    const bn_gc *a = user;
    return ib_batchnorm_act(ctx, in[0], in[1], in[2], a->training ? NULL : a->rm, a->training ? NULL : a->rv,
                            a->training, 0.1f, 1e-5f, (ib_fuse_act)a->act);
}

TEST(batchnorm_act_gradcheck) {
    // z = beta + gamma * xhat with |xhat| < 2.5: relu (and none) > 0, < 0; relu6 regions (0, 6), < 0, > 6;
    // h-swish (-3, 3), < -3, > 3.
    const float beta[4][3] = {{3.0f, -4.0f, 10.0f}, {3.0f, -4.0f, 10.0f}, {3.0f, -4.0f, 10.0f}, {0.0f, -7.0f, 7.0f}};
    for (int t = 0; t < 8 * N_SIMD; t++) {
        int act = t % 4, training = t / 4 % 2, v = t / 8;
        if (!ib_simd_select(SIMD[v])) continue;
        ib_ctx *ctx = ib_ctx_new();
        int C = 3;
        ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){4, C, 3, 3});
        ib_tensor *g = ib_tensor_new(ctx, 1, &C), *b = ib_tensor_new(ctx, 1, &C);
        bn_gc user = {act, training, ib_tensor_zeros(ctx, 1, &C), ib_tensor_new(ctx, 1, &C)};
        fill_uniform(x, 31, -1.0f, 1.0f);
        for (int c = 0; c < C; c++) g->data[c] = 0.6f, b->data[c] = beta[act][c], user.rv->data[c] = 0.5f;
        char msg[256];
        int ok = gradcheck(bn_gc_fwd, &user, 3, (ib_tensor *[]){x, g, b}, (int[]){1, 1, 1},
                           (gc_opts){.h = 1e-2, .tol = 1e-3}, msg, sizeof msg);
        ib_ctx_free(ctx);
        if (!ok) ib_simd_select("auto");
        CHECK(ok, "%s, act %d, %s: %s", SIMD[v], act, training ? "training" : "eval", msg);
    }
    ib_simd_select("auto");
}

// ---------------------------------------------------------------------------------------------
// conv + BN + activation (inference)

typedef struct {
    int N, Cin, Cout, H, W, K, s, p, groups, bias;
} conv_case;

static const conv_case CONV_CASES[] = {
    {1, 8, 8, 11, 13, 3, 1, 1, 8, 0},   {2, 8, 8, 11, 13, 3, 2, 1, 8, 1},  {1, 6, 6, 40, 33, 5, 2, 2, 6, 0},
    {1, 16, 24, 20, 20, 1, 1, 0, 1, 0}, {3, 16, 24, 3, 5, 1, 1, 0, 1, 1},  {2, 6, 10, 9, 9, 3, 2, 1, 1, 0},
    {2, 8, 12, 9, 7, 3, 1, 1, 2, 1},    {1, 3, 16, 30, 30, 3, 2, 1, 1, 0},
};
#define N_CONV ((int)(sizeof CONV_CASES / sizeof CONV_CASES[0]))

// The output of case c with activation act: fused, or conv then BN then activation.
static float *conv_bn_run(const conv_case *c, int act, int fused, int affine, int64_t *n) {
    ib_ctx *ctx = ib_ctx_new();
    ctx->recording = 0;
    int C = c->Cout;
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){c->N, c->Cin, c->H, c->W});
    ib_tensor *w = ib_tensor_new(ctx, 4, (int[]){C, c->Cin / c->groups, c->K, c->K});
    ib_tensor *b = c->bias ? ib_tensor_new(ctx, 1, &C) : NULL;
    ib_tensor *g = ib_tensor_new(ctx, 1, &C), *be = ib_tensor_new(ctx, 1, &C);
    ib_tensor *rm = ib_tensor_new(ctx, 1, &C), *rv = ib_tensor_new(ctx, 1, &C);
    fill_normal(x, 41, 1), fill_normal(w, 42, 1), fill_normal(g, 44, 1), fill_normal(be, 45, 2);
    if (b) fill_normal(b, 43, 1);
    fill_normal(rm, 46, 1), fill_uniform(rv, 47, 0.5f, 3.0f);
    ib_tensor *gg = affine ? g : NULL, *bb = affine ? be : NULL;
    ib_tensor *y;
    if (fused)
        y = ib_conv2d_bn_act(ctx, x, w, b, c->s, c->p, 1, c->groups, gg, bb, rm, rv, 1e-5f, (ib_fuse_act)act);
    else
        y = ib_batchnorm_act(ctx, ib_conv2d(ctx, x, w, b, c->s, c->p, 1, c->groups), gg, bb, rm, rv, 0, 0.1f, 1e-5f,
                             (ib_fuse_act)act);
    *n = ib_numel(y);
    float *out = copy_of(y->data, *n);
    ib_ctx_free(ctx);
    return out;
}

TEST(conv_bn_act_equals_separate_ops_bitwise) {
    for (int v = 0; v < N_SIMD; v++) {
        if (!ib_simd_select(SIMD[v])) continue;
        for (int i = 0; i < N_CONV; i++)
            for (int act = 0; act < 4; act++)
                for (int affine = 0; affine < 2; affine++) {
                    int64_t n1, n2;
                    float *f = conv_bn_run(&CONV_CASES[i], act, 1, affine, &n1);
                    float *u = conv_bn_run(&CONV_CASES[i], act, 0, affine, &n2);
                    int same = n1 == n2 && same_bits(f, u, n1);
                    free(f), free(u);
                    if (!same) ib_simd_select("auto");
                    CHECK(same, "%s, case %d, act %d, affine %d: conv2d_bn_act differs from the separate ops", SIMD[v],
                          i, act, affine);
                }
    }
    ib_simd_select("auto");
}

// With the tape recording and inputs requiring grad the fused op runs the separate ops, recorded.
TEST(conv_bn_act_records_when_gradients_are_needed) {
    ib_ctx *ctx = ib_ctx_new();
    int C = 4;
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, C, 5, 5}), *w = ib_tensor_new(ctx, 4, (int[]){C, 1, 3, 3});
    ib_tensor *rm = ib_tensor_zeros(ctx, 1, &C), *rv = ib_tensor_new(ctx, 1, &C);
    fill_normal(x, 1, 1), fill_normal(w, 2, 1);
    for (int c = 0; c < C; c++) rv->data[c] = 1.0f;
    x->requires_grad = 1;
    ib_tensor *y = ib_conv2d_bn_act(ctx, x, w, NULL, 1, 1, 1, C, NULL, NULL, rm, rv, 1e-5f, IB_FUSE_RELU6);
    int taped = ctx->tape_len;
    ib_backward(ctx, y, NULL);
    int got_grad = x->grad != NULL;
    ib_ctx_free(ctx);
    CHECK(taped == 2 && got_grad, "taped %d nodes (want conv and BN), x grad %s", taped, got_grad ? "set" : "missing");
}

// The fused op's own gradient (it runs the separate ops when the tape records): x, w, b, gamma, beta.
typedef struct {
    ib_tensor *rm, *rv;
} conv_bn_gc;

static ib_tensor *conv_bn_gc_fwd(ib_ctx *ctx, ib_tensor **in, void *user) {
    const conv_bn_gc *u = user;
    return ib_conv2d_bn_act(ctx, in[0], in[1], in[2], 2, 1, 1, 2, in[3], in[4], u->rm, u->rv, 1e-5f, IB_FUSE_NONE);
}

TEST(conv_bn_act_gradcheck) {
    ib_ctx *ctx = ib_ctx_new();
    int C = 6;
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 4, 7, 6}), *w = ib_tensor_new(ctx, 4, (int[]){C, 2, 3, 3});
    ib_tensor *b = ib_tensor_new(ctx, 1, &C), *g = ib_tensor_new(ctx, 1, &C), *be = ib_tensor_new(ctx, 1, &C);
    conv_bn_gc u = {ib_tensor_new(ctx, 1, &C), ib_tensor_new(ctx, 1, &C)};
    fill_normal(x, 71, 1), fill_normal(w, 72, 1), fill_normal(b, 73, 1), fill_normal(g, 74, 1), fill_normal(be, 75, 1);
    fill_normal(u.rm, 76, 1), fill_uniform(u.rv, 77, 0.5f, 2.0f);
    char msg[256];
    int ok = gradcheck(conv_bn_gc_fwd, &u, 5, (ib_tensor *[]){x, w, b, g, be}, (int[]){1, 1, 1, 1, 1}, (gc_opts){0},
                       msg, sizeof msg);
    ib_ctx_free(ctx);
    CHECK(ok, "%s", msg);
}

// A whole network in eval mode: the fused inference path against the separate ops (taken when the tape
// records; the parameters require grad).
TEST(mobilenetv2_fused_inference_equals_separate_ops) {
    ib_arch arch;
    CHECK(ib_arch_resolve(&arch, "mobilenetv2:0.5", 10) == IB_OK, "%s", ib_errmsg());
    ib_net net;
    ib_status st = ib_net_build(&net, &arch);
    ib_arch_free(&arch);
    CHECK(st == IB_OK, "%s", ib_errmsg());
    ib_net_init_weights(&net, 3);
    // Non-trivial running statistics, so the BN is no identity.
    ib_rng r;
    ib_rng_seed(&r, 5, 0);
    for (int i = 0; i < net.ps.n; i++)
        if (net.ps.is_buffer[i]) {
            ib_tensor *t = net.ps.t[i];
            int var = strstr(t->name, "running_var") != NULL;
            for (int64_t j = 0; j < ib_numel(t); j++)
                t->data[j] = var ? 0.5f + ib_rng_uniform(&r) : 0.2f * ib_rng_normal(&r);
        }
    float *out[2];
    int64_t n = 0;
    for (int fused = 0; fused < 2; fused++) {
        ib_ctx *ctx = ib_ctx_new();
        ctx->training = 0;
        ctx->recording = !fused;
        ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, 48, 40});
        fill_normal(x, 7, 1);
        ib_tensor *y = ib_net_forward(ctx, &net, x);
        n = ib_numel(y);
        out[fused] = copy_of(y->data, n);
        ib_ctx_free(ctx);
    }
    int same = same_bits(out[0], out[1], n);
    double e = rel_err(out[1], out[0], n);
    free(out[0]), free(out[1]);
    ib_net_free(&net);
    CHECK(same, "fused and separate logits differ (rel err %.3g)", e);
}

// ---------------------------------------------------------------------------------------------
// 1x1 conv on small maps: the batch goes through one GEMM per chunk; equal (to rounding) to per image.

TEST(conv1x1_small_maps_batched_matches_per_image) {
    int N = 5, Cin = 12, Cout = 20, H = 3, W = 5;
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){N, Cin, H, W}), *w = ib_tensor_new(ctx, 4, (int[]){Cout, Cin, 1, 1});
    ib_tensor *b = ib_tensor_new(ctx, 1, &Cout);
    fill_normal(x, 51, 1), fill_normal(w, 52, 1), fill_normal(b, 53, 1);
    x->requires_grad = w->requires_grad = b->requires_grad = 1;
    ib_tensor *y = ib_conv2d(ctx, x, w, b, 1, 0, 1, 1);
    ib_tensor *gy = ib_tensor_like(ctx, y);
    fill_normal(gy, 54, 1);
    ib_backward(ctx, y, gy->data);
    int64_t per_y = (int64_t)Cout * H * W, per_x = (int64_t)Cin * H * W;
    float *gw_all = copy_of(w->grad, ib_numel(w)), *gb_all = copy_of(b->grad, Cout);
    double ey = 0, ex = 0;
    memset(w->grad, 0, sizeof(float) * (size_t)ib_numel(w));
    memset(b->grad, 0, sizeof(float) * (size_t)Cout);
    for (int n = 0; n < N; n++) {
        ib_ctx *c1 = ib_ctx_new();
        ib_tensor *xn = ib_tensor_new(c1, 4, (int[]){1, Cin, H, W});
        memcpy(xn->data, x->data + n * per_x, sizeof(float) * (size_t)per_x);
        xn->requires_grad = 1;
        ib_tensor *yn = ib_conv2d(c1, xn, w, b, 1, 0, 1, 1);
        double e = rel_err(yn->data, y->data + n * per_y, per_y);
        if (!(e <= ey)) ey = e;
        ib_backward(c1, yn, gy->data + n * per_y);
        e = rel_err(xn->grad, x->grad + n * per_x, per_x);
        if (!(e <= ex)) ex = e;
        ib_ctx_free(c1);
    }
    double ew = rel_err(gw_all, w->grad, ib_numel(w)), eb = rel_err(gb_all, b->grad, Cout);
    free(gw_all), free(gb_all);
    ib_ctx_free(ctx);
    CHECK(ey <= 1e-6 && ex <= 1e-6 && ew <= 1e-6 && eb <= 1e-6,
          "batched vs per image: y %.3g, gx %.3g, gw %.3g, gb %.3g", ey, ex, ew, eb);
}

// The conv GEMM (forward and dX; dW is OpenBLAS's): AVX2 and AVX-512 bitwise equal, portable within
// rounding, at shapes with row and column tails (1x1 direct, tiny-map chunks, 3x3 through im2col).
TEST(conv_gemm_simd_versions_agree) {
    const int shapes[][7] = {{3, 13, 21, 5, 7, 1, 1}, {2, 40, 33, 9, 11, 1, 1}, {1, 96, 70, 14, 14, 1, 1},
                             {5, 16, 24, 3, 5, 1, 1}, {4, 8, 12, 9, 7, 3, 1},   {2, 8, 12, 9, 7, 3, 2},
                             {2, 8, 12, 10, 12, 3, 2}, {2, 6, 9, 11, 9, 5, 1}};
    for (int s = 0; s < 8; s++) {
        const int *sh = shapes[s];
        float *y[N_SIMD] = {0}, *gx[N_SIMD] = {0};
        int64_t ny = 0, nx = 0;
        for (int v = 0; v < N_SIMD; v++) {
            if (!ib_simd_select(SIMD[v])) continue;
            ib_ctx *ctx = ib_ctx_new();
            ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){sh[0], sh[1], sh[3], sh[4]});
            ib_tensor *w = ib_tensor_new(ctx, 4, (int[]){sh[2], sh[1] / sh[6], sh[5], sh[5]});
            fill_normal(x, 61, 1), fill_normal(w, 62, 1);
            x->requires_grad = 1;
            ib_tensor *out = ib_conv2d(ctx, x, w, NULL, 1, sh[5] / 2, 1, sh[6]);
            ib_tensor *gy = ib_tensor_like(ctx, out);
            fill_normal(gy, 63, 1);
            ib_backward(ctx, out, gy->data);
            ny = ib_numel(out), nx = ib_numel(x);
            y[v] = copy_of(out->data, ny), gx[v] = copy_of(x->grad, nx);
            ib_ctx_free(ctx);
        }
        ib_simd_select("auto");
        int x86_same = !y[1] || !y[2] || (same_bits(y[1], y[2], ny) && same_bits(gx[1], gx[2], nx));
        double e = 0;
        for (int v = 1; v < N_SIMD; v++)
            if (y[v]) {
                double ey = rel_err(y[v], y[0], ny), ex = rel_err(gx[v], gx[0], nx);
                if (!(ey <= e)) e = ey;
                if (!(ex <= e)) e = ex;
            }
        for (int v = 0; v < N_SIMD; v++) free(y[v]), free(gx[v]);
        CHECK(x86_same, "shape %d: avx2 and avx512 differ", s);
        CHECK(e <= 1e-6, "shape %d: x86 vs portable rel err %.3g", s, e);
    }
    if (x86_missing()[0]) SKIP("this CPU lacks %s: not compared", x86_missing());
}
