// Depthwise convolution, forward and backward, on the SIMD tap kernels of core/simd.h.
//
// Every stride is reduced to stride-1 work on "phase planes". The zero-padded input plane is split by
// row and column parity modulo the stride s (s * s phases; one for s = 1), so that output (oh, ow)
// reads tap (kh, kw) at row oh + kh*d/s, column ow + kw*d/s of phase (kh*d % s, kw*d % s): every tap
// of a run of outputs is a run of consecutive floats, whatever the stride. The planes of several images
// of one channel are stacked at a fixed pitch, so a tap is one flat run across all of them: small
// feature maps (2x2, 4x4 at the end of a network) cost a few long vector loops, not thousands of tiny
// ones. Outputs are computed over the whole stacked grid and the valid ones copied out (or, for wide
// rows, computed row by row straight into y).
//
// Backward uses the same planes: dW is a dot product of the gradient plane with each tap's input run;
// dx of each phase is a stride-1 correlation of the padded gradient with that phase's taps, and the
// phases are interleaved back into dx. dW of a channel sums its images in order on one thread, and
// every other output has one writer, so results never depend on the thread count.
#include "core/simd.h"

#include <string.h>

// Below this many multiply-adds a loop runs on one thread: a parallel region costs more.
#define PAR_MIN_WORK 32768
// Per-thread scratch for one group of images (their phase planes and gradient planes): L2-sized.
#define GROUP_BYTES ((int64_t)256 << 10)
// Rows at least this wide are computed row by row into the output; narrower ones as one flat run.
#define ROW_MIN 16
#define DW_MAX_K 31

typedef struct {
    int stride, pad, dilation;
} dw_args;

static int conv_out_size(int in, int k, int stride, int pad, int dil) {
    int span = in + 2 * pad - dil * (k - 1) - 1;
    IB_ASSERT(span >= 0, "dwconv2d: input size %d too small for kernel %d, dilation %d, padding %d", in, k, dil, pad);
    return span / stride + 1;
}

// The planes of one call. Every plane (input phase, gradient) is Hr rows at pitch Wr, S floats per
// image; the margin M (backward only) leaves room above and left of the gradient for the taps' reach.
typedef struct {
    int N, C, H, W, K, s, p, d, Ho, Wo;
    int Hq, Wq;   // rows and columns of a phase that any tap reaches
    int M, Hr, Wr;   // margin, plane rows and pitch: Hq + M, Wq + M
    int64_t S;   // Hr * Wr
    int phases, T;   // s * s, K * K
    int G;   // images per group
    // Per tap, found once per call (dw_taps): the offset of its input run from the phase blocks' start;
    // and the taps grouped by phase (tap t_j for j in [pstart[ph], pstart[ph + 1])) with the offset of
    // their gradient run in the margin-padded gradient plane (backward).
    int64_t *tsrc, *poff;
    int *ptap, *pstart;
} dw_geom;

static dw_geom dw_geom_of(int N, int C, int H, int W, int K, int s, int p, int d, int backward) {
    dw_geom g;
    g.N = N, g.C = C, g.H = H, g.W = W, g.K = K, g.s = s, g.p = p, g.d = d;
    g.Ho = conv_out_size(H, K, s, p, d);
    g.Wo = conv_out_size(W, K, s, p, d);
    int Hp = (g.Ho - 1) * s + (K - 1) * d + 1, Wp = (g.Wo - 1) * s + (K - 1) * d + 1;
    g.Hq = (Hp + s - 1) / s;
    g.Wq = (Wp + s - 1) / s;
    g.M = backward ? (K - 1) * d / s : 0;
    g.Hr = g.Hq + g.M;
    g.Wr = g.Wq + g.M;
    g.S = (int64_t)g.Hr * g.Wr;
    g.phases = s * s;
    g.T = K * K;
    // Forward: phases + output grid; backward: phases + gradient + the phases of dx.
    int64_t per_image = g.S * (backward ? 2 * g.phases + 1 : g.phases + 1) * (int64_t)sizeof(float);
    int64_t G = GROUP_BYTES / (per_image > 0 ? per_image : 1);
    g.G = G < 1 ? 1 : (G > N ? N : (int)G);
    return g;
}

// Tap t = (kh, kw): its phase and its offset inside the phase plane.
static int tap_phase(const dw_geom *g, int t) { return (t / g->K * g->d % g->s) * g->s + t % g->K * g->d % g->s; }
static int64_t tap_offset(const dw_geom *g, int t) {
    return (int64_t)(t / g->K * g->d / g->s) * g->Wr + t % g->K * g->d / g->s;
}

static void dw_taps(ib_ctx *ctx, dw_geom *g) {
    g->tsrc = ib_arena_alloc(ctx->arena, sizeof(int64_t) * 2 * (size_t)g->T);
    g->poff = g->tsrc + g->T;
    g->ptap = ib_arena_alloc(ctx->arena, sizeof(int) * (size_t)(g->T + g->phases + 1));
    g->pstart = g->ptap + g->T;
    for (int t = 0; t < g->T; t++) g->tsrc[t] = (int64_t)tap_phase(g, t) * g->G * g->S + tap_offset(g, t);
    int j = 0;
    for (int ph = 0; ph < g->phases; ph++) {
        g->pstart[ph] = j;
        for (int t = 0; t < g->T; t++)
            if (tap_phase(g, t) == ph) {
                g->ptap[j] = t;
                g->poff[j++] = (int64_t)(g->M - t / g->K * g->d / g->s) * g->Wr + (g->M - t % g->K * g->d / g->s);
            }
    }
    g->pstart[g->phases] = j;
}

// Phase column range [v0, v1) of phase column parity b that holds image columns; the rest is padding.
static void phase_cols(const dw_geom *g, int b, int *v0, int *v1) {
    int s = g->s, lo = g->p - b > 0 ? (g->p - b + s - 1) / s : 0;
    int hi = g->W - 1 + g->p - b < 0 ? 0 : (g->W - 1 + g->p - b) / s + 1;
    if (hi > g->Wr) hi = g->Wr;
    if (hi < lo) hi = lo;
    *v0 = lo, *v1 = hi;
}

// The scratch planes of a thread are zeroed once per call; packing then writes only the positions that
// hold image (or gradient) values, which are the same for every group, so the padding stays zero.

// x planes of `cnt` images of one channel (image i at x + i * img_stride: (H, W)) -> xq: phases blocks
// of G * S floats, image i at i * S inside each: the zero-padded plane split by phase.
static void pack_x(const dw_geom *g, const ib_simd_kernels *k, const float *x, int64_t img_stride, int cnt, float *xq) {
    const int s = g->s, p = g->p, Wr = g->Wr, W = g->W;
    const int64_t blk = (int64_t)g->G * g->S;
    for (int a = 0; a < s; a++) {
        // Phase rows u of parity a hold x rows r = u * s + a - p: the rows [u0, u1) inside x.
        int u0 = a - p >= 0 ? 0 : (p - a + s - 1) / s;
        int u1 = g->H - 1 + p - a < 0 ? 0 : (g->H - 1 + p - a) / s + 1;
        if (u1 > g->Hr) u1 = g->Hr;
        if (u1 <= u0) continue;
        const int rows = u1 - u0, r0 = u0 * s + a - p;
        const float *xr = x + (int64_t)r0 * W;   // image 0; image i at + i * img_stride
        float *base = xq + (int64_t)(a * s) * blk + (int64_t)u0 * Wr;   // image i at + i * S
        if (s == 1) {
            int v0, v1;
            phase_cols(g, 0, &v0, &v1);
            if (v1 > v0) k->copy2d(xr + (v0 - p), W, v1 - v0, rows, base + v0, Wr, 0, cnt, img_stride, g->S);
        } else if (s == 2) {
            // From x column 2 * e0 - p on, columns alternate: even phase, then odd phase at the same v.
            int e0, e1, o0, o1;
            phase_cols(g, 0, &e0, &e1);
            phase_cols(g, 1, &o0, &o1);
            int j = 2 * e0 - p, n = e1 - e0 + (o1 > e0 ? o1 - e0 : 0);
            if (n > W - j) n = W - j;
            if (n > 0)
                k->deint2(xr + j, (int64_t)s * W, n, rows, base + e0, base + blk + e0, Wr, cnt, img_stride, g->S);
            if (o0 < e0 && o1 > o0)   // odd padding: x column 0 sits at odd-phase column o0
                for (int i = 0; i < cnt; i++)
                    for (int u = 0; u < rows; u++)
                        base[blk + i * g->S + (int64_t)u * Wr + o0] = xr[i * img_stride + (int64_t)u * s * W];
        } else {
            for (int i = 0; i < cnt; i++)
                for (int b = 0; b < s; b++) {
                    int v0, v1;
                    phase_cols(g, b, &v0, &v1);
                    for (int u = 0; u < rows; u++)
                        for (int v = v0; v < v1; v++)
                            base[(int64_t)b * blk + i * g->S + (int64_t)u * Wr + v] =
                                xr[i * img_stride + (int64_t)u * s * W + v * s + b - p];
                }
        }
    }
}

// Requests the planes of `cnt` images (image i at p + i * img_stride, `n` floats each) into cache. A
// group reads one plane per image, a channel's stride apart: small planes defeat the hardware
// prefetcher, so the next channel's planes are requested while this one is computed.
static void prefetch_planes(const float *p, int cnt, int64_t img_stride, int64_t n) {
    if (n > 1024) return;   // long runs stream well on their own
    for (int i = 0; i < cnt; i++)
        for (int64_t j = 0; j < n; j += 16) __builtin_prefetch(p + i * img_stride + j);
}

// gy planes of `cnt` images (image i at gy + i * img_stride: (Ho, Wo)) -> gp: G * S floats, gy at
// rows [M, M + Ho), columns [M, M + Wo), zeros around.
static void pack_gy(const dw_geom *g, const ib_simd_kernels *k, const float *gy, int64_t img_stride, int cnt,
                    float *gp) {
    k->copy2d(gy, g->Wo, g->Wo, g->Ho, gp + (int64_t)g->M * g->Wr + g->M, g->Wr, 0, cnt, img_stride, g->S);
}

// The taps' input runs for image 0 of a group: src[t] = the tap's phase block + its offset.
static void tap_sources(const dw_geom *g, const float *xq, const float **src) {
    for (int t = 0; t < g->T; t++) src[t] = xq + g->tsrc[t];
}

// Outputs of `cnt` images of channel c (image i at y + i * img_stride), with the epilogue.
static void forward_group(const dw_geom *g, const ib_simd_kernels *k, const float *xq, const float *wc, float bias,
                          const ib_epi *epi, int cnt, float *y, int64_t img_stride, float *grid) {
    const float *src[DW_MAX_K * DW_MAX_K];
    tap_sources(g, xq, src);
    if (g->Wo >= ROW_MIN) {
        for (int i = 0; i < cnt; i++)
            k->tapsum(y + i * img_stride, g->Wo, g->Ho, g->Wo, g->T, src, i * g->S, g->Wr, wc, bias, epi, 0);
        return;
    }
    int64_t L = (int64_t)(cnt - 1) * g->S + (int64_t)(g->Ho - 1) * g->Wr + g->Wo;
    k->tapsum(grid, 0, 1, L, g->T, src, 0, 0, wc, bias, epi, 0);
    k->copy2d(grid, g->Wr, g->Wo, g->Ho, y, g->Wo, 0, cnt, g->S, img_stride);
}

// Forward of the whole tensor. x: (N, C, H, W), w: (C, 1, K, K), bias (C) or NULL; bn: per-channel
// (mean, scale, shift) or NULL; act -> y: (N, C, Ho, Wo). Items: (image group, channel), channels inner so
// consecutive items read neighbouring planes and memory streams; each worker its own scratch, zeroed once
// (pack_x writes the same cells every time and leaves the border zero).
typedef struct {
    const dw_geom *g;
    const float *x, *w, *bias, *bn_m, *bn_scale, *bn_shift;
    int act;
    float *y, *scratch;
    int64_t per_thread;
} dw_fwd_job;

static void dw_forward_item(void *p, int64_t it, int worker) {
    const dw_fwd_job *j = p;
    const dw_geom *g = j->g;
    const int64_t HW = (int64_t)g->H * g->W, P = (int64_t)g->Ho * g->Wo;
    float *xq = j->scratch + j->per_thread * worker, *grid = xq + (int64_t)g->phases * g->G * g->S;
    int c = (int)(it % g->C), n0 = (int)(it / g->C) * g->G, cnt = g->N - n0 < g->G ? g->N - n0 : g->G;
    ib_epi epi = {j->bn_m != NULL, j->bn_m ? j->bn_m[c] : 0.0f, j->bn_m ? j->bn_scale[c] : 1.0f,
                  j->bn_m ? j->bn_shift[c] : 0.0f, j->act};
    if (c + 1 < g->C) prefetch_planes(j->x + ((int64_t)n0 * g->C + c + 1) * HW, cnt, g->C * HW, HW);
    pack_x(g, ib_simd(), j->x + ((int64_t)n0 * g->C + c) * HW, g->C * HW, cnt, xq);
    forward_group(g, ib_simd(), xq, j->w + (int64_t)c * g->T, j->bias ? j->bias[c] : 0.0f, &epi, cnt,
                  j->y + ((int64_t)n0 * g->C + c) * P, g->C * P, grid);
}

// Runs of neighbouring items on the pool.
static void dw_forward_items(void *p, int64_t i0, int64_t i1, int worker) {
    for (int64_t it = i0; it < i1; it++) dw_forward_item(p, it, worker);
}

static void dw_forward(ib_ctx *ctx, const dw_geom *g, const float *x, const float *w, const float *bias,
                       const float *bn_m, const float *bn_scale, const float *bn_shift, int act, float *y) {
    const int64_t P = (int64_t)g->Ho * g->Wo;
    const int groups = (g->N + g->G - 1) / g->G, items = g->C * groups;
    const int par = (int64_t)g->N * g->C * P * g->T > PAR_MIN_WORK, threads = par ? ib_pool_threads() : 1;
    const int64_t per_thread = (int64_t)g->G * g->S * (g->phases + 1);
    float *scratch = ib_arena_calloc(ctx->arena, sizeof(float) * (size_t)(per_thread * threads));
    dw_fwd_job j = {g, x, w, bias, bn_m, bn_scale, bn_shift, act, y, scratch, per_thread};
    ib_parallel_range(items, par ? 1 : items, dw_forward_items, &j);
}

// ---------------------------------------------------------------------------------------------
// Small planes, channels last. When a plane has few outputs (4x4, 2x2 at the end of a network) its rows are
// too short for the tap kernels: a 4-float row fills a quarter of a vector and each call, copy and pack
// spends most of its time on the border. There the channels take the vector lanes instead: a block of CL_CB
// channels of one image is transposed to (H * W, CB), each output pixel sums its taps over the block
// (chsum), and the block is transposed back. Backward, items are (image, block) too: dx from the same taps
// read from the gradient's side, and dW's sums of the image in float (chdot), kept apart per image and added
// to the double sums in image order at the end, so nothing depends on the thread count.
#define CL_CB 64
// Used for planes of at most CL_MAX_P outputs and CL_MAX_HW inputs: bench/bench_dw.c --path (docs/BENCH.md).
#define CL_MAX_P 64
#define CL_MAX_HW 196

int ib__dw_path;

static int use_channels_last(const dw_geom *g) {
    return ib__dw_path ? ib__dw_path == 2
                       : (int64_t)g->Ho * g->Wo <= CL_MAX_P && (int64_t)g->H * g->W <= CL_MAX_HW && g->C >= 8;
}

// The taps of output pixel (oh, ow) in a (H * W, cb) block: src[t], NULL where the tap reads padding.
static void cl_out_taps(const dw_geom *g, const float *xt, int cb, int oh, int ow, const float **src) {
    for (int kh = 0, t = 0; kh < g->K; kh++)
        for (int kw = 0; kw < g->K; kw++, t++) {
            int ih = oh * g->s - g->p + kh * g->d, iw = ow * g->s - g->p + kw * g->d;
            src[t] = ih >= 0 && ih < g->H && iw >= 0 && iw < g->W ? xt + ((int64_t)ih * g->W + iw) * cb : NULL;
        }
}

// The taps that reach input pixel (ih, iw) from a (Ho * Wo, cb) gradient block, NULL where none.
static void cl_in_taps(const dw_geom *g, const float *gt, int cb, int ih, int iw, const float **src) {
    for (int kh = 0, t = 0; kh < g->K; kh++)
        for (int kw = 0; kw < g->K; kw++, t++) {
            int a = ih + g->p - kh * g->d, b = iw + g->p - kw * g->d;
            int ok = a >= 0 && b >= 0 && a % g->s == 0 && b % g->s == 0 && a / g->s < g->Ho && b / g->s < g->Wo;
            src[t] = ok ? gt + ((int64_t)(a / g->s) * g->Wo + b / g->s) * cb : NULL;
        }
}

typedef struct {
    const dw_geom *g;
    const float *x, *wt, *gy;   // wt: (T, C), the weight tap-major
    const ib_rows_epi *epi;     // forward: bias and epilogue over all C channels, or NULL
    float *y, *gx, *scratch;
    double *acc;                // backward: dW sums (C, T), or NULL
    float *pw;                  // backward: each image's dW sums in float, (N, T, C), or NULL
    int64_t per_thread;
    int add;
} cl_job;

// Item (image, channel block).
static void cl_forward_items(void *p, int64_t i0, int64_t i1, int worker) {
    const cl_job *j = p;
    const dw_geom *g = j->g;
    const ib_simd_kernels *k = ib_simd();
    const int64_t HW = (int64_t)g->H * g->W, P = (int64_t)g->Ho * g->Wo;
    float *xt = j->scratch + j->per_thread * worker, *yt = xt + HW * CL_CB;
    const float *src[DW_MAX_K * DW_MAX_K];
    const int nb = (g->C + CL_CB - 1) / CL_CB;
    for (int64_t it = i0; it < i1; it++) {
        const int n = (int)(it / nb), c0 = (int)(it % nb) * CL_CB;
        const int cb = g->C - c0 < CL_CB ? g->C - c0 : CL_CB;
        ib_rows_epi e, *ep = NULL;
        if (j->epi) e = ib_rows_epi_from(j->epi, c0), ep = &e;
        k->transpose(j->x + ((int64_t)n * g->C + c0) * HW, HW, cb, HW, xt, cb);
        for (int oh = 0; oh < g->Ho; oh++)
            for (int ow = 0; ow < g->Wo; ow++) {
                cl_out_taps(g, xt, cb, oh, ow, src);
                k->chsum(yt + ((int64_t)oh * g->Wo + ow) * cb, cb, g->T, src, j->wt + c0, g->C, ep);
            }
        k->transpose(yt, cb, (int)P, cb, j->y + ((int64_t)n * g->C + c0) * P, P);
    }
}

// Item (image, channel block): dx of the block, and the image's dW sums in float into its own slice of pw.
static void cl_backward_items(void *p, int64_t i0, int64_t i1, int worker) {
    const cl_job *j = p;
    const dw_geom *g = j->g;
    const ib_simd_kernels *k = ib_simd();
    const int64_t HW = (int64_t)g->H * g->W, P = (int64_t)g->Ho * g->Wo;
    float *xt = j->scratch + j->per_thread * worker, *gt = xt + HW * CL_CB, *dxt = gt + P * CL_CB;
    float *tmp = dxt + HW * CL_CB;
    const float *src[DW_MAX_K * DW_MAX_K];
    const int nb = (g->C + CL_CB - 1) / CL_CB;
    for (int64_t it = i0; it < i1; it++) {
        const int n = (int)(it / nb), c0 = (int)(it % nb) * CL_CB;
        const int cb = g->C - c0 < CL_CB ? g->C - c0 : CL_CB;
        k->transpose(j->gy + ((int64_t)n * g->C + c0) * P, P, cb, P, gt, cb);
        if (j->pw) {
            float *af = j->pw + (int64_t)n * g->T * g->C + c0;   // (T, C) of image n
            k->transpose(j->x + ((int64_t)n * g->C + c0) * HW, HW, cb, HW, xt, cb);
            for (int t = 0; t < g->T; t++) memset(af + (int64_t)t * g->C, 0, sizeof(float) * (size_t)cb);
            for (int oh = 0; oh < g->Ho; oh++)
                for (int ow = 0; ow < g->Wo; ow++) {
                    cl_out_taps(g, xt, cb, oh, ow, src);
                    k->chdot(gt + ((int64_t)oh * g->Wo + ow) * cb, cb, g->T, src, af, g->C);
                }
        }
        if (j->gx) {
            for (int ih = 0; ih < g->H; ih++)
                for (int iw = 0; iw < g->W; iw++) {
                    cl_in_taps(g, gt, cb, ih, iw, src);
                    k->chsum(dxt + ((int64_t)ih * g->W + iw) * cb, cb, g->T, src, j->wt + c0, g->C, NULL);
                }
            float *d = j->gx + ((int64_t)n * g->C + c0) * HW;
            if (j->add) {
                k->transpose(dxt, cb, (int)HW, cb, tmp, HW);
                k->copy2d(tmp, HW, HW, cb, d, HW, 1, 1, 0, 0);
            } else {
                k->transpose(dxt, cb, (int)HW, cb, d, HW);
            }
        }
    }
}

// dW's double sums of channels [c0, c1): the images' float sums added in image order.
static void cl_fold_dw(void *p, int64_t c0, int64_t c1, int worker) {
    const cl_job *j = p;
    const dw_geom *g = j->g;
    for (int64_t c = c0; c < c1; c++)
        for (int t = 0; t < g->T; t++) {
            double sum = j->acc[c * g->T + t];
            for (int n = 0; n < g->N; n++) sum += j->pw[((int64_t)n * g->T + t) * g->C + c];
            j->acc[c * g->T + t] = sum;
        }
}

// The weight (C, 1, K, K) tap-major: (T, C).
static float *cl_weight(ib_ctx *ctx, const dw_geom *g, const float *w) {
    float *wt = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)g->T * (size_t)g->C);
    ib_simd()->transpose(w, g->T, g->C, g->T, wt, g->C);
    return wt;
}

static void cl_forward(ib_ctx *ctx, const dw_geom *g, const float *x, const float *w, const float *bias,
                       const float *bn_m, const float *bn_scale, const float *bn_shift, int act, float *y) {
    const int64_t HW = (int64_t)g->H * g->W, P = (int64_t)g->Ho * g->Wo;
    const int64_t items = (int64_t)g->N * ((g->C + CL_CB - 1) / CL_CB);
    const int par = (int64_t)g->N * g->C * P * g->T > PAR_MIN_WORK, threads = par ? ib_pool_threads() : 1;
    const int64_t per_thread = (HW + P) * CL_CB;
    ib_rows_epi e = {bias, bn_m, bn_scale, bn_shift, act};
    cl_job j = {g, x, cl_weight(ctx, g, w), NULL, &e, y, NULL,
                ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)(per_thread * threads)), NULL, NULL, per_thread, 0};
    ib_parallel_range(items, par ? 1 : items, cl_forward_items, &j);
}

static void cl_backward(ib_ctx *ctx, const dw_geom *g, const float *x, const float *w, const float *gy, float *gx,
                        int add, double *acc) {
    const int64_t HW = (int64_t)g->H * g->W, P = (int64_t)g->Ho * g->Wo;
    const int64_t items = (int64_t)g->N * ((g->C + CL_CB - 1) / CL_CB);
    const int par = (int64_t)g->N * g->C * P * g->T > PAR_MIN_WORK, threads = par ? ib_pool_threads() : 1;
    const int64_t per_thread = (3 * HW + P) * CL_CB;
    float *pw = acc ? ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)g->N * (size_t)g->T * (size_t)g->C) : NULL;
    cl_job j = {g, x, cl_weight(ctx, g, w), gy, NULL, NULL, gx,
                ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)(per_thread * threads)), acc, pw, per_thread, add};
    ib_parallel_range(items, par ? 1 : items, cl_backward_items, &j);
    if (acc) ib_parallel_range(g->C, par ? 16 : g->C, cl_fold_dw, &j);
}

float *ib__grad_to_fill(ib_ctx *ctx, ib_tensor *t, int *add) {
    // A grad nothing has added to yet is taken from the arena's reused blocks like every other one, but
    // left uninitialised: the caller writes every element (a memset first was a whole extra pass over
    // memory, 3% of a training step of mobilenetv2).
    *add = t->grad != NULL || t->base != NULL;
    if (*add) return ib_grad(ctx, t);
    IB_ASSERT(ib_is_contiguous(t), "lazily allocated grads are contiguous");
    return t->grad = ib_arena_alloc_reuse(ctx->arena, sizeof(float) * (size_t)ib_numel(t));
}

// Zeroes the columns [from, W) of `rows` rows of a plane (pitch W) when the backward writes, not adds.
static void zero_cols(float *d, int rows, int W, int from) {
    if (from < 0) from = 0;
    if (from >= W) return;
    for (int r = 0; r < rows; r++) memset(d + (int64_t)r * W + from, 0, sizeof(float) * (size_t)(W - from));
}

// dx of `cnt` images of one channel from the gradient planes gp: each phase a stride-1 correlation
// with its taps, then the phases interleaved into dx (image i at gx + i * img_stride). Pixels no tap
// reaches (past the last output's taps) get no gradient.
static void backward_x_group(const dw_geom *g, const ib_simd_kernels *k, const float *gp, const float *wc, int cnt,
                             float *gq, float *gx, int64_t img_stride, int add) {
    const int s = g->s, p = g->p, Wr = g->Wr, H = g->H, W = g->W;
    const int64_t blk = (int64_t)g->G * g->S;
    const ib_epi none = {0, 0.0f, 1.0f, 0.0f, IB_FUSE_NONE};
    const float *src[DW_MAX_K * DW_MAX_K];
    float wt[DW_MAX_K * DW_MAX_K];
    for (int ph = 0; ph < g->phases; ph++) {
        int T = 0;
        for (int j = g->pstart[ph]; j < g->pstart[ph + 1]; j++, T++) {
            wt[T] = wc[g->ptap[j]];
            src[T] = gp + g->poff[j];
        }
        if (s == 1 && W >= ROW_MIN) {
            // Wide rows at stride 1: straight into gx. Row ih is phase row ih + p.
            int rows = g->Hq - p < H ? g->Hq - p : H, n = g->Wq - p < W ? g->Wq - p : W;
            for (int i = 0; i < cnt; i++) {
                float *d = gx + i * img_stride;
                if (rows > 0 && n > 0)
                    k->tapsum(d, W, rows, n, T, src, i * g->S + (int64_t)p * Wr + p, Wr, wt, 0.0f, &none, add);
                if (!add) {
                    zero_cols(d, rows > 0 ? rows : 0, W, n);
                    if (rows < H) zero_cols(d + (int64_t)(rows > 0 ? rows : 0) * W, H - (rows > 0 ? rows : 0), W, 0);
                }
            }
            return;
        }
        float *out = gq + (int64_t)ph * blk;
        int64_t L = (int64_t)(cnt - 1) * g->S + (int64_t)(g->Hq - 1) * Wr + g->Wq;
        if (T > 0)
            k->tapsum(out, 0, 1, L, T, src, 0, 0, wt, 0.0f, &none, 0);
        else
            memset(out, 0, sizeof(float) * (size_t)L);
    }
    // Interleave: x row ih is padded row ih + p: phase row (ih + p) / s of row parity (ih + p) % s.
    for (int a = 0; a < s; a++) {
        int ih0 = ((a - p) % s + s) % s;   // the first x row of parity a
        int rows = 0;   // x rows ih0, ih0 + s, ... that a phase row covers
        while (ih0 + rows * s < H && (ih0 + rows * s + p) / s < g->Hq) rows++;
        int u0 = (ih0 + p) / s;
        float *d = gx + (int64_t)ih0 * W;   // image i at + i * img_stride
        const float *base = gq + (int64_t)(a * s) * blk + (int64_t)u0 * Wr;   // image i at + i * S
        const int64_t ldd = (int64_t)s * W;
        int done = 0;   // columns written (from 0) in each of these rows
        if (rows > 0 && s == 1) {
            done = g->Wq - p < W ? g->Wq - p : W;
            if (done > 0) k->copy2d(base + p, Wr, done, rows, d, ldd, add, cnt, g->S, img_stride);
        } else if (rows > 0 && s == 2) {
            // x column iw sits at padded column iw + p: phase (iw + p) % 2, column (iw + p) / 2.
            done = 2 * g->Wq - p < W ? 2 * g->Wq - p : W;
            const float *ph0 = base, *ph1 = base + blk;
            if (p % 2 == 0) {
                if (done > 0) k->int2(ph0 + p / 2, ph1 + p / 2, Wr, done, rows, d, ldd, add, cnt, g->S, img_stride);
            } else if (done > 0) {
                for (int i = 0; i < cnt; i++)
                    for (int r = 0; r < rows; r++) {
                        float v = ph1[i * g->S + (int64_t)r * Wr + (p - 1) / 2];
                        float *dr = d + i * img_stride + r * ldd;
                        dr[0] = add ? dr[0] + v : v;
                    }
                if (done > 1)
                    k->int2(ph0 + (p + 1) / 2, ph1 + (p + 1) / 2, Wr, done - 1, rows, d + 1, ldd, add, cnt, g->S,
                            img_stride);
            }
        } else if (rows > 0) {
            done = (g->Wq * s - p) < W ? g->Wq * s - p : W;
            for (int i = 0; i < cnt; i++)
                for (int r = 0; r < rows; r++)
                    for (int iw = 0; iw < done; iw++) {
                        int c = iw + p;
                        float v = base[(int64_t)(c % s) * blk + i * g->S + (int64_t)r * Wr + c / s];
                        float *dr = d + i * img_stride + r * ldd;
                        dr[iw] = add ? dr[iw] + v : v;
                    }
        }
        if (!add)
            for (int i = 0; i < cnt; i++) {
                if (done < 0) done = 0;
                for (int r = 0; r < rows; r++) zero_cols(d + i * img_stride + r * ldd, 1, W, done);
                for (int ih = ih0 + rows * s; ih < H; ih += s)
                    zero_cols(gx + i * img_stride + (int64_t)ih * W, 1, W, 0);
            }
    }
}

// Backward, one item per channel: the groups of images in order, so dW's per-channel sums take them in
// order whatever the threads.
typedef struct {
    const dw_geom *g;
    const float *x, *w, *gy;
    float *gx;
    double *acc;
    float *scratch;
    int64_t per_thread;
    int add;
} dw_bwd_job;

static void dw_backward_channel(void *p, int64_t ch, int worker) {
    const dw_bwd_job *j = p;
    const dw_geom *g = j->g;
    const ib_simd_kernels *k = ib_simd();
    const int64_t HW = (int64_t)g->H * g->W, P = (int64_t)g->Ho * g->Wo, blk = (int64_t)g->G * g->S;
    const int c = (int)ch;
    float *xq = j->scratch + j->per_thread * worker, *gp = xq + g->phases * blk, *gq = gp + blk;
    const float *src[DW_MAX_K * DW_MAX_K];
    for (int n0 = 0; n0 < g->N; n0 += g->G) {
        int cnt = g->N - n0 < g->G ? g->N - n0 : g->G;
        int64_t xo = ((int64_t)n0 * g->C + c) * HW, yo = ((int64_t)n0 * g->C + c) * P;
        if (n0 + g->G < g->N) {   // the next group's planes of this channel
            prefetch_planes(j->gy + yo + (int64_t)g->G * g->C * P, g->N - n0 - g->G < g->G ? g->N - n0 - g->G : g->G,
                            g->C * P, P);
            prefetch_planes(j->x + xo + (int64_t)g->G * g->C * HW, g->N - n0 - g->G < g->G ? g->N - n0 - g->G : g->G,
                            g->C * HW, HW);
        }
        pack_gy(g, k, j->gy + yo, g->C * P, cnt, gp);
        if (j->acc) {
            pack_x(g, k, j->x + xo, g->C * HW, cnt, xq);
            tap_sources(g, xq, src);
            int64_t L = (int64_t)(cnt - 1) * g->S + (int64_t)(g->Ho - 1) * g->Wr + g->Wo;
            k->tapdot(gp + (int64_t)g->M * g->Wr + g->M, L, g->T, src, j->acc + (int64_t)c * g->T);
        }
        if (j->gx) backward_x_group(g, k, gp, j->w + (int64_t)c * g->T, cnt, gq, j->gx + xo, g->C * HW, j->add);
    }
}

static void dw_backward_channels(void *p, int64_t c0, int64_t c1, int worker) {
    for (int64_t c = c0; c < c1; c++) dw_backward_channel(p, c, worker);
}

static void dwconv_backward(ib_ctx *ctx, ib_node *node) {
    ib_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const dw_args *a = node->saved;
    dw_geom g =
        dw_geom_of(x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[2], a->stride, a->pad, a->dilation, 1);
    const int64_t P = (int64_t)g.Ho * g.Wo;
    const float *gy = node->out->grad;
    if (b && b->requires_grad) ib__bias_grad(gy, g.N, g.C, P, ib_grad(ctx, b));
    int need_w = w->requires_grad, need_x = x->requires_grad;
    if ((!need_w && !need_x) || P == 0) return;
    float *gw = need_w ? ib_grad(ctx, w) : NULL;
    int add = 1;
    float *gx = need_x ? ib__grad_to_fill(ctx, x, &add) : NULL;
    double *acc = gw ? ib_arena_calloc(ctx->arena, sizeof(double) * (size_t)g.C * (size_t)g.T) : NULL;
    if (use_channels_last(&g)) {
        cl_backward(ctx, &g, x->data, w->data, gy, gx, add, acc);
    } else {
        dw_taps(ctx, &g);
        const int64_t blk = (int64_t)g.G * g.S, per_thread = blk * (2 * g.phases + 1);
        const int par = (int64_t)g.N * g.C * P * g.T > PAR_MIN_WORK, threads = par ? ib_pool_threads() : 1;
        // zeroed once: packing writes the same cells every time, and gq is written before it is read
        float *scratch = ib_arena_calloc(ctx->arena, sizeof(float) * (size_t)(per_thread * threads));
        dw_bwd_job j = {&g, x->data, w->data, gy, gx, acc, scratch, per_thread, add};
        ib_parallel_range(g.C, par ? 1 : g.C, dw_backward_channels, &j);
    }
    if (gw)
        for (int64_t i = 0; i < (int64_t)g.C * g.T; i++) gw[i] += (float)acc[i];
}
static const ib_op op_dwconv2d = {"dwconv2d", dwconv_backward};

static void dw_check(const ib_tensor *x, const ib_tensor *w, const ib_tensor *b, int stride, int pad, int dilation) {
    char sx[64], sw[64];
    IB_ASSERT(
        x->ndim == 4 && w->ndim == 4 && w->shape[0] == x->shape[1] && w->shape[1] == 1 && w->shape[2] == w->shape[3],
        "dwconv2d: x %s and w %s do not fit (w must be (C, 1, K, K))", ib_shape_str(x, sx, sizeof sx),
        ib_shape_str(w, sw, sizeof sw));
    IB_ASSERT(!b || (b->ndim == 1 && b->shape[0] == x->shape[1]), "dwconv2d: bias %s for %d channels",
              ib_shape_str(b, sx, sizeof sx), x->shape[1]);
    IB_ASSERT(stride >= 1 && pad >= 0 && dilation >= 1, "dwconv2d: stride %d, pad %d, dilation %d", stride, pad,
              dilation);
    IB_ASSERT(ib_is_contiguous(x) && ib_is_contiguous(w) && (!b || ib_is_contiguous(b)), "dwconv2d: contiguous inputs");
    IB_ASSERT(w->shape[2] <= DW_MAX_K, "dwconv2d: kernel %d larger than %d", w->shape[2], DW_MAX_K);
}

ib_tensor *ib__dwconv2d_epi(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b, int stride, int pad, int dilation,
                            const float *bn_m, const float *bn_scale, const float *bn_shift, int act) {
    dw_check(x, w, b, stride, pad, dilation);
    dw_geom g = dw_geom_of(x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[2], stride, pad, dilation, 0);
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){g.N, g.C, g.Ho, g.Wo});
    if (ib_numel(y) > 0 && g.K > 0 && use_channels_last(&g)) {
        cl_forward(ctx, &g, x->data, w->data, b ? b->data : NULL, bn_m, bn_scale, bn_shift, act, y->data);
    } else if (ib_numel(y) > 0 && g.K > 0) {
        dw_taps(ctx, &g);
        dw_forward(ctx, &g, x->data, w->data, b ? b->data : NULL, bn_m, bn_scale, bn_shift, act, y->data);
    }
    return y;
}

// x: (N, C, H, W), w: (C, 1, K, K), b: (C) or NULL -> y: (N, C, Ho, Wo)
ib_tensor *ib_dwconv2d(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b, int stride, int pad, int dilation) {
    ib_tensor *y = ib__dwconv2d_epi(ctx, x, w, b, stride, pad, dilation, NULL, NULL, NULL, IB_FUSE_NONE);
    ib_node *n = ib_record(ctx, &op_dwconv2d, y, 3, (ib_tensor *[]){x, w, b});
    if (n) {
        dw_args *a = ib_arena_alloc(ctx->arena, sizeof *a);
        *a = (dw_args){stride, pad, dilation};
        n->saved = a;
    }
    return y;
}
