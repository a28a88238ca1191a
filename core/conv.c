// Convolution ops: conv2d (groups, stride, padding, dilation) as im2col + GEMM (1x1 stride-1 convs GEMM
// straight on the input), forward and backward, and the fused inference op conv + BN + act. Depthwise
// convs (groups == Cin == Cout) go to core/dw_conv.c. Work buffers come from the arena. Our loops run on
// the library's pool (core/threads.c), GEMMs included (core/simd.h's kernel).
#include "core/simd.h"

#include <string.h>

// Below this many floats of work a loop runs on one thread: a parallel region costs more.
#define PAR_MIN_WORK 32768

typedef struct {
    int stride, pad, dilation, groups;
} conv_args;

static int conv_out_size(int in, int k, int stride, int pad, int dil) {
    int span = in + 2 * pad - dil * (k - 1) - 1;
    IB_ASSERT(span >= 0, "conv: input size %d too small for kernel %d, dilation %d, padding %d", in, k, dil, pad);
    return span / stride + 1;
}

// The outputs o in [0, n_out) whose tap o*stride + off lands inside [0, n_in): returns [*lo, *hi).
// Loops over that range need no bounds checks; the rest is the (zero) border.
static void tap_range(int n_in, int n_out, int stride, int off, int *lo, int *hi) {
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = (n_in - 1 - off) < 0 ? 0 : (n_in - 1 - off) / stride + 1;
    if (l > n_out) l = n_out;
    if (h > n_out) h = n_out;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

// ---------------------------------------------------------------------------------------------
// im2col / col2im

// The spatial part of a convolution, shared by the helpers below.
typedef struct {
    int H, W, K, stride, pad, dil, Ho, Wo;
    int ring_cpg;   // > 0: rows in a centre-first weight's order (below), this many input channels a group
} conv_geom;

// The (channel, tap) of im2col row r, and back. Plain order: rows (c, kh, kw). A centre-first 5x5 weight
// (core.h) reads its rows group by group as [the 9 centre taps of each of the group's channels][their 16 outer
// taps], so its im2col rows come in that order.
static void row_tap(const conv_geom *g, int r, int *c, int *kh, int *kw) {
    int K = g->K, cpg = g->ring_cpg;
    if (!cpg) {
        *c = r / (K * K), *kh = (r / K) % K, *kw = r % K;
        return;
    }
    int grp = r / (cpg * 25), l = r % (cpg * 25), t;
    if (l < cpg * 9) *c = l / 9, t = l % 9;
    else *c = (l - cpg * 9) / 16, t = 9 + (l - cpg * 9) % 16;
    *c += grp * cpg, *kh = ib__ring_plain[t] / 5, *kw = ib__ring_plain[t] % 5;
}

static int tap_row(const conv_geom *g, int c, int kh, int kw) {
    int K = g->K, cpg = g->ring_cpg;
    if (!cpg) return (c * K + kh) * K + kw;
    int t = ib__ring_tap[kh * 5 + kw], grp = c / cpg, cl = c % cpg;
    return grp * cpg * 25 + (t < 9 ? cl * 9 + t : cpg * 9 + cl * 16 + (t - 9));
}

// x: (nb, C, H, W) -> col: (C*K*K, nb*Ho*Wo); row (c, kh, kw), column block i holds image i, zeros where
// a tap falls in the padding. Batching images makes one parallel region feed many GEMMs (see below).
// Items: (row, image) pairs, t = r * nb + i.
typedef struct {
    const float *x;
    float *col;
    int nb, C;
    const conv_geom *g;
} cols_job;

// Copies n floats, or zeroes them: a loop for the short rows of small maps (a 2x2 map's rows are 2 floats,
// where a call to memcpy cost more than the copy), memcpy/memset for the long ones.
static inline void copy_short(float *d, const float *s, int n) {
    if (n > 16) memcpy(d, s, sizeof(float) * (size_t)n);
    else
        for (int k = 0; k < n; k++) d[k] = s[k];
}
static inline void zero_short(float *d, int n) {
    if (n > 16) memset(d, 0, sizeof(float) * (size_t)n);
    else
        for (int k = 0; k < n; k++) d[k] = 0.0f;
}

static void im2col_rows(void *p, int64_t t0, int64_t t1, int worker) {
    const cols_job *j = p;
    const conv_geom *g = j->g;
    int H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo, stride = g->stride, nb = j->nb, C = j->C;
    int64_t P = (int64_t)Ho * Wo, ld = nb * P;
    // The items in order, row by row: a row's tap and column range are worked out once for its images.
    for (int64_t t = t0; t < t1;) {
        int r = (int)(t / nb), i = (int)(t % nb), c, kh, kw;
        row_tap(g, r, &c, &kh, &kw);
        int off_w = kw * g->dil - g->pad, lo, hi;
        tap_range(W, Wo, stride, off_w, &lo, &hi);
        for (; i < nb && t < t1; i++, t++) {
            const float *xc = j->x + ((int64_t)i * C + c) * H * W;
            float *dst = j->col + (int64_t)r * ld + i * P;
            for (int oh = 0; oh < Ho; oh++) {
                float *d = dst + (int64_t)oh * Wo;
                int ih = oh * stride - g->pad + kh * g->dil;
                if (ih < 0 || ih >= H) {
                    zero_short(d, Wo);
                    continue;
                }
                const float *xr = xc + (int64_t)ih * W;
                zero_short(d, lo);
                if (stride == 1) {
                    copy_short(d + lo, xr + lo + off_w, hi - lo);
                } else {
                    for (int ow = lo; ow < hi; ow++) d[ow] = xr[ow * stride + off_w];
                }
                zero_short(d + hi, Wo - hi);
            }
        }
    }
}

static void im2col(const float *restrict x, int nb, int C, const conv_geom *g, float *restrict col) {
    int64_t P = (int64_t)g->Ho * g->Wo;
    cols_job j = {x, col, nb, C, g};
    ib_parallel_range((int64_t)C * g->K * g->K * nb, ib_grain(PAR_MIN_WORK, P), im2col_rows, &j);
}

#define SMALL_PLANE 16   // col2im_planes: planes of at most this many pixels are summed pixel by pixel

// col: (C*K*K, nb*Ho*Wo) -> gx: (nb, C, H, W) += the sum of every tap's gradient. Threaded over (image,
// channel) planes: all rows of a channel add into the same plane, so each plane has one writer and a
// fixed order.
static void col2im_planes(void *p, int64_t t0, int64_t t1, int worker) {
    const cols_job *j = p;
    const conv_geom *g = j->g;
    int K = g->K, H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo, stride = g->stride, C = j->C;
    int64_t P = (int64_t)Ho * Wo, ld = j->nb * P;
    for (int64_t t = t0; t < t1; t++) {
        int i = (int)(t / C), c = (int)(t % C);
        float *gc = j->col + t * H * W;   // the cols_job's col is gx here
        if (H * W <= SMALL_PLANE && K <= 7) {
            // Small planes: each pixel adds its taps' values in a register, in the order the loop below adds
            // them (kh, then kw), so the same numbers; below, every tap re-reads and re-stores the few
            // pixels of the plane, a chain of stores the next tap must wait for.
            const float *src[49];
            for (int kh = 0; kh < K; kh++)
                for (int kw = 0; kw < K; kw++) src[kh * K + kw] = j->x + (int64_t)tap_row(g, c, kh, kw) * ld + i * P;
            for (int ih = 0; ih < H; ih++)
                for (int iw = 0; iw < W; iw++) {
                    float v = gc[ih * W + iw];
                    for (int kh = 0; kh < K; kh++) {
                        int th = ih + g->pad - kh * g->dil;
                        if (th < 0 || th % stride || th / stride >= Ho) continue;
                        const int row = th / stride * Wo;
                        for (int kw = 0; kw < K; kw++) {
                            int tw = iw + g->pad - kw * g->dil;
                            if (tw < 0 || tw % stride || tw / stride >= Wo) continue;
                            v += src[kh * K + kw][row + tw / stride];
                        }
                    }
                    gc[ih * W + iw] = v;
                }
            continue;
        }
        for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) {
                const float *src = j->x + (int64_t)tap_row(g, c, kh, kw) * ld + i * P;
                int off_w = kw * g->dil - g->pad, lo, hi;
                tap_range(W, Wo, stride, off_w, &lo, &hi);
                for (int oh = 0; oh < Ho; oh++) {
                    int ih = oh * stride - g->pad + kh * g->dil;
                    if (ih < 0 || ih >= H) continue;
                    float *gr = gc + (int64_t)ih * W;
                    const float *sr = src + (int64_t)oh * Wo;
                    if (stride == 1) {
#pragma omp simd
                        for (int ow = lo; ow < hi; ow++) gr[ow + off_w] += sr[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++) gr[ow * stride + off_w] += sr[ow];
                    }
                }
            }
    }
}

static void col2im_add(const float *restrict col, int nb, int C, const conv_geom *g, float *restrict gx) {
    int64_t P = (int64_t)g->Ho * g->Wo;
    cols_job j = {col, gx, nb, C, g};
    ib_parallel_range((int64_t)nb * C, ib_grain(PAR_MIN_WORK, (int64_t)g->K * g->K * P), col2im_planes, &j);
}

// gy: (N, C, P) -> gb: (C) += per-channel sums in double, batch in order. Eight partial sums in a fixed
// pattern break the dependency chain (and vectorise) while keeping the result independent of threads.
typedef struct {
    const float *gy;
    int N, C;
    int64_t P;
    float *gb;
} bias_job;

static void bias_grad_channels(void *p, int64_t c0, int64_t c1, int worker) {
    const bias_job *j = p;
    for (int64_t c = c0; c < c1; c++) {
        double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int n = 0; n < j->N; n++) {
            const float *q = j->gy + ((int64_t)n * j->C + c) * j->P;
            int64_t i = 0;
            for (; i + 8 <= j->P; i += 8)
                for (int k = 0; k < 8; k++) part[k] += q[i + k];
            for (int k = 0; i < j->P; i++, k++) part[k] += q[i];
        }
        double s = 0;
        for (int k = 0; k < 8; k++) s += part[k];
        j->gb[c] += (float)s;
    }
}

void ib__bias_grad(const float *gy, int N, int C, int64_t P, float *gb) {
    bias_job j = {gy, N, C, P, gb};
    ib_parallel_range(C, ib_grain(PAR_MIN_WORK, (int64_t)N * P), bias_grad_channels, &j);
}

// ---------------------------------------------------------------------------------------------
// General convolution: im2col + GEMM.

// A 1x1 kernel with stride 1 and no padding reads x exactly as its im2col would be: it GEMMs straight on
// x, a GEMM per image (all in one parallel loop), unless the maps are tiny: a 2x2 map is a GEMM 4 columns wide, which runs at a
// fraction of the GEMM rate; then the batch goes through the chunked path below, where one GEMM covers
// every image of a chunk. From 4x4 on, the per-image GEMMs were as fast or faster than gathering the
// batch (measured on MobileNetV2's 1x1 convs at batch 32, one thread).
#define PW_BATCH_P 16
// From this many output pixels an im2col conv's GEMM writes each image's output in place (its tiles of 64
// columns fill the image's row), instead of a chunk's outputs side by side then scattered.
#define WIDE_P 256
// A 1x1 kernel at stride 1 without padding: its im2col is the images' channels side by side (gather_images)
// and its col2im their scatter back, a copy a channel instead of im2col's row-by-row taps (on a 2x2 map, two
// 2-float rows a call: they were most of a 960 -> 160 conv's time).
static int is_pointwise(int K, int stride, int pad) { return K == 1 && stride == 1 && pad == 0; }
static int is_direct(int K, int stride, int pad, int N, int64_t P) {
    return is_pointwise(K, stride, pad) && (P >= PW_BATCH_P || N == 1);
}

// Images per chunk. One parallel loop writes the columns of several images, then one GEMM per group
// covers them all (a loop per image made thousands of small loops a step). The budget bounds the arena
// scratch per call.
#define COL_BUDGET_BYTES ((int64_t)8 << 20)
static int col_chunk(int N, int64_t floats_per_image) {
    int64_t nb = COL_BUDGET_BYTES / (int64_t)sizeof(float) / (floats_per_image > 0 ? floats_per_image : 1);
    if (nb < 1) nb = 1;
    return nb < N ? (int)nb : N;
}

// Moving images between (m, C, P) and (C, m * P), column block i image i; items are channels.
typedef struct {
    const float *src;
    float *dst;
    int m, C, to_images, add;   // add: to_images adds into dst
    int64_t P;
} move_job;

static void move_channels(void *p, int64_t c0, int64_t c1, int worker) {
    const move_job *j = p;
    const ib_simd_kernels *k = ib_simd();
    int64_t P = j->P, C = j->C;
    for (int64_t c = c0; c < c1; c++) {
        if (j->to_images)
            k->copy2d(j->src + c * j->m * P, P, P, j->m, j->dst + c * P, C * P, j->add, 1, 0, 0);
        else
            k->copy2d(j->src + c * P, C * P, P, j->m, j->dst + c * j->m * P, P, 0, 1, 0, 0);
    }
}

static void move_images(const float *src, int m, int C, int64_t P, float *dst, int to_images, int add) {
    move_job j = {src, dst, m, C, to_images, add, P};
    ib_parallel_range(C, ib_grain(PAR_MIN_WORK, (int64_t)m * P), move_channels, &j);
}

// ycol: (C, m * P), column block i image i -> y: (m, C, P) (=, or += when add).
static void scatter_images(const float *ycol, int m, int C, int64_t P, float *y, int add) {
    move_images(ycol, m, C, P, y, 1, add);
}


// Below this many multiply-adds a GEMM runs on one thread.
#define GEMM_PAR_MIN ((int64_t)1 << 18)

// A batch of B GEMMs of one shape, problem b = n * G + g (image n, group g): Y_b (M x N, row pitch ldy) (=, or
// +=) A_b (M x K, a_b[m * ars + k * acs]) @ X_b (K x N, row pitch ldx), with the rows' epilogue, where A_b starts
// at a + g * ag, X_b at x + n * xn + g * xg, Y_b at y + n * yn + g * yg and the epilogue at channel g * M. With
// koff, A_b's column k is at koff[g * koffg + k] instead of k * acs (a ring view's forward, ring_koff).
typedef struct {
    int B, G;
    int64_t ag, xn, xg, yn, yg;
    const int32_t *koff;
    int64_t koffg;
} gemm_batch;

typedef struct {
    int M, N, K, rb, mb, per, kb;   // kb: the sum over k in blocks of kb, each added to y (0: one block)
    const gemm_batch *bt;
    const float *a, *x;
    int64_t ars, acs, ldx, ldy;
    float *y;
    const ib_rows_epi *e;
    int add;
} gemm_job;

static void gemm_tile(void *p, int64_t it, int worker) {
    const gemm_job *j = p;
    const gemm_batch *bt = j->bt;
    int b = (int)(it / j->per), t = (int)(it % j->per), n = b / bt->G, g = b % bt->G;
    int n0 = t / j->mb * 64, m0 = t % j->mb * j->rb;
    int cols = j->N - n0 < 64 ? j->N - n0 : 64, m = j->M - m0 < j->rb ? j->M - m0 : j->rb;
    ib_rows_epi es;
    if (j->e) es = ib_rows_epi_from(j->e, g * j->M + m0);
    const float *a = j->a + g * bt->ag + m0 * j->ars, *x = j->x + n * bt->xn + g * bt->xg + n0;
    float *y = j->y + n * bt->yn + g * bt->yg + m0 * j->ldy + n0;
    if (!j->kb) {
        ib_simd()->gemm(m, cols, j->K, a, j->ars, j->acs, bt->koff ? bt->koff + g * bt->koffg : NULL, x, j->ldx, y,
                        j->ldy, j->e ? &es : NULL, j->add);
        return;
    }
    IB_ASSERT(!bt->koff, "conv2d: a column offset table with k blocks");
    for (int k0 = 0; k0 < j->K; k0 += j->kb)
        ib_simd()->gemm(m, cols, j->K - k0 < j->kb ? j->K - k0 : j->kb, a + k0 * j->acs, j->ars, j->acs, NULL,
                        x + k0 * j->ldx, j->ldx, y, j->ldy, NULL, j->add || k0 > 0);
}

// core/simd.h's register-tiled GEMM, no packing, on the pool, in ONE parallel loop for the whole batch: a
// training step of mobilenetv2 ran its 1x1 convs image by image, and a region per image made thousands
// of them a step. Tiles of 64 columns (and of 48 rows when the tiles are few) are the items; every output
// is computed whole, its sum over k in order, by one thread, so the numbers do not depend on the threads
// or the tiling. Forward and dX of convolutions use it: on MobileNet shapes (K from 16 to 960, N from 49
// to 12544) it ran 1.7 to 2x OpenBLAS's sgemm, which packs both operands on every call.
static void gemm_par_blocked(int M, int N, int K, int kb, const gemm_batch *bt, const float *a, int64_t ars,
                             int64_t acs, const float *x, int64_t ldx, float *y, int64_t ldy, const ib_rows_epi *e,
                             int add) {
    if (M <= 0 || N <= 0 || bt->B <= 0) return;
    const int nb = (N + 63) / 64, threads = ib_pool_threads();
    const int rb = (int64_t)bt->B * nb >= 4 * threads ? M : 48, mb = (M + rb - 1) / rb;
    gemm_job j = {M, N, K, rb, mb, nb * mb, kb, bt, a, x, ars, acs, ldx, ldy, y, e, add};
    int64_t items = (int64_t)bt->B * j.per;
    if ((int64_t)bt->B * M * N * K <= GEMM_PAR_MIN) {
        for (int64_t it = 0; it < items; it++) gemm_tile(&j, it, 0);
        return;
    }
    ib_parallel_for(items, gemm_tile, &j);
}

static void gemm_par_batch(int M, int N, int K, const gemm_batch *bt, const float *a, int64_t ars, int64_t acs,
                           const float *x, int64_t ldx, float *y, int64_t ldy, const ib_rows_epi *e, int add) {
    gemm_par_blocked(M, N, K, 0, bt, a, ars, acs, x, ldx, y, ldy, e, add);
}

// dst: (C, m * P) <- src: (m, C, P) (the inverse of scatter_images, for gradients).
static void gather_images(const float *src, int m, int C, int64_t P, float *dst) {
    move_images(src, m, C, P, dst, 0, 0);
}

// dst_b (C x R) = src_b (R x C)^T for b < B, in 32 x 32 tiles; items are (b, 32 rows of src).
typedef struct {
    const float *src;
    float *dst;
    int R, C, rblocks;
} transpose_job;

static void transpose_tiles(void *p, int64_t lo, int64_t hi, int worker) {
    const transpose_job *j = p;
    const ib_simd_kernels *k = ib_simd();
    for (int64_t it = lo; it < hi; it++) {
        int64_t b = it / j->rblocks;
        int r0 = (int)(it % j->rblocks) * 32, r1 = r0 + 32 < j->R ? r0 + 32 : j->R;
        const float *s = j->src + b * j->R * j->C + (int64_t)r0 * j->C;
        float *d = j->dst + b * j->R * j->C + r0;
        for (int c0 = 0; c0 < j->C; c0 += 32)
            k->transpose(s + c0, j->C, r1 - r0, j->C - c0 < 32 ? j->C - c0 : 32, d + (int64_t)c0 * j->R, j->R);
    }
}

static void transpose_batch(const float *src, int B, int R, int C, float *dst) {
    transpose_job j = {src, dst, R, C, (R + 31) / 32};
    ib_parallel_range((int64_t)B * j.rblocks, ib_grain(PAR_MIN_WORK, 32 * (int64_t)C), transpose_tiles, &j);
}

// Each output channel's Cin/groups x K x K weights contiguous, the channels at any pitch (stride[0]); a
// group-block view (ib_view_group_blocks) only as the weight of as many groups as it has blocks.
static int rows_contiguous(const ib_tensor *w, int groups) {
    return w->stride[3] == 1 && w->stride[2] == w->shape[3] && w->stride[1] == (int64_t)w->shape[2] * w->shape[3] &&
           w->stride[0] >= (int64_t)w->shape[1] * w->shape[2] * w->shape[3] && (w->blocks <= 1 || w->blocks == groups);
}

// Where group g's weights start: g * this after w->data.
static int64_t group_stride(const ib_tensor *w, int opg) {
    return w->blocks > 1 ? w->block_stride : opg * w->stride[0];
}

// A ring view (a centre-first 5x5 weight, core.h) the conv reads in place: its centre taps' rows contiguous.
static int ring_in_place(const ib_tensor *w, int groups) {
    return w->ring && w->shape[2] == 5 && w->stride[3] == 1 && w->stride[2] == 3 && w->stride[1] == 9 &&
           (w->blocks <= 1 || w->blocks == groups);
}

// A group's weight rows as the GEMMs read them: one segment (plain rows), or a ring view's two (its centre taps,
// then its outer taps, each contiguous). Segment i: rows' columns [col, col + len) of the group's im2col rows, at
// w->data + off + g * gstride for group g, rows w->stride[0] apart.
typedef struct {
    int64_t off, gstride;
    int col, len;
} wseg;

static int weight_segs(const ib_tensor *w, int opg, int cpg, int K, wseg seg[2]) {
    if (!w->ring) {
        seg[0] = (wseg){0, group_stride(w, opg), 0, cpg * K * K};
        return 1;
    }
    int64_t rows = opg * w->stride[0];
    seg[0] = (wseg){0, w->blocks > 1 ? w->block_stride : rows, 0, cpg * 9};
    seg[1] = (wseg){w->ring, w->blocks > 1 ? w->ring_block_stride : rows, cpg * 9, cpg * 16};
    return 2;
}

// A weight given as a view (a supernet path's slice of a shared weight, docs/SEARCH.md). Rows contiguous
// (a channel slice, a centre-first weight's 3x3 centre): read in place at the row pitch, the gradient lands in
// place. A ring view (a centre-first weight's 5x5): read in place too, the backward by its two segments a row
// (weight_segs), the forward through a table of each plain column's offset (ring_koff), so that each output
// sums its taps in the order the extracted network's conv does; its gradient lands in place. Otherwise (a
// plain kernel's centre): the forward and the backward each copy it into their own
// scratch, gone when they return, and the backward adds the copy's gradient into the view's; a step holds
// no copy between them. Depthwise
// weights (small) are copied with ib_contiguous, taped just before the conv, so the copy's gradient goes
// back right after the conv's backward.
static ib_tensor *scratch_copy(ib_ctx *ctx, const ib_tensor *w, ib_tensor *wc) {
    ib_tensor_init(wc, ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)ib_numel(w)), w->ndim, w->shape);
    ib_tensor_read(w, wc->data);
    return wc;
}

// gW (M x R, row pitch ldw) += gY (M x L, row pitch L) @ Xt (L x R, row pitch ldx): the weight gradient's long reduction
// over a chunk's columns, with our GEMM (OpenBLAS is not safe to call from several threads at once in its
// OpenMP build; two concurrent calls gave wrong sums), summed in blocks of WGRAD_KB columns each added to
// gW: one float sum over 32,768 columns drifted 3e-6 from the per-image sums.
#define WGRAD_KB 256
static void weight_grad(int M, int R, int L, const float *gy, const float *xt, int64_t ldx, float *gw, int64_t ldw) {
    const gemm_batch one = {1, 1, 0, 0, 0, 0, 0, NULL, 0};
    gemm_par_blocked(M, R, L, WGRAD_KB, &one, gy, L, 1, xt, ldx, gw, ldw, NULL, 1);
}

static void conv_backward_rows(ib_ctx *ctx, ib_node *node, ib_tensor *w) {
    ib_tensor *x = node->in[0], *b = node->in[2];
    const conv_args *a = node->saved;
    int N = x->shape[0], Cin = x->shape[1], Cout = w->shape[0], K = w->shape[2], G = a->groups;
    int cpg = Cin / G, opg = Cout / G, rows = cpg * K * K;
    conv_geom geom = {x->shape[2], x->shape[3], K, a->stride, a->pad, a->dilation, node->out->shape[2],
                      node->out->shape[3], w->ring ? cpg : 0};
    wseg seg[2];
    int nseg = weight_segs(w, opg, cpg, K, seg);
    int64_t HW = (int64_t)geom.H * geom.W, P = (int64_t)geom.Ho * geom.Wo, ws = w->stride[0], wg = group_stride(w, opg);
    const float *gy = node->out->grad;
    int direct = is_direct(K, a->stride, a->pad, N, P);

    if (b && b->requires_grad) ib__bias_grad(gy, N, Cout, P, ib_grad(ctx, b));
    int need_w = w->requires_grad, need_x = x->requires_grad;
    if ((!need_w && !need_x) || P == 0 || opg == 0 || rows == 0) return;
    float *gw = need_w ? ib_grad(ctx, w) : NULL;
    int add = 1;
    float *gx = need_x ? (direct ? ib__grad_to_fill(ctx, x, &add) : ib_grad(ctx, x)) : NULL;

    if (direct) {
        IB_ASSERT(nseg == 1, "conv2d: a ring view of a 1x1 kernel");
        // Images in order, so dW sums the batch in a fixed order.
        if (need_w && G == 1 && Cout > Cin && Cin < 64) {
            // A narrow input (an expansion: Cin 16 to 32 against 6x as many outputs): the same sums with the
            // output channels as the GEMM's columns, gW^T (Cin, Cout) += Xc (Cin, m P) @ gYt (m P, Cout), so a
            // tile's vectors are full. gW^T starts as gW transposed and goes back by assignment: every block
            // of the sum is added to the same float in the same order as below, bit for bit.
            int nb = col_chunk(N, ((int64_t)Cin + Cout) * P);
            float *xc = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)Cin * (size_t)(nb * P));
            float *gyt = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)Cout * (size_t)(nb * P));
            float *gwt = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)Cin * (size_t)Cout);
            ib_simd()->transpose(gw, ws, Cout, Cin, gwt, Cout);
            for (int n0 = 0; n0 < N; n0 += nb) {
                int m = N - n0 < nb ? N - n0 : nb;
                gather_images(x->data + (int64_t)n0 * Cin * HW, m, Cin, P, xc);
                transpose_batch(gy + (int64_t)n0 * Cout * P, m, Cout, (int)P, gyt);
                weight_grad(Cin, Cout, (int)((int64_t)m * P), xc, gyt, Cout, gwt, Cout);
            }
            ib_simd()->transpose(gwt, Cout, Cin, Cout, gw, ws);
        } else if (need_w) {
            // gW_g (opg, rows) += gYc_g (opg, m P) @ Xt_g (m P, rows): chunks of images side by side, so
            // one GEMM reduces over a chunk instead of one per image (P columns, as few as 16); Xt is the
            // chunk's x with channels last
            int nb = col_chunk(N, ((int64_t)Cin + Cout) * P);
            float *xt = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)Cin * (size_t)(nb * P));
            float *gyc = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)Cout * (size_t)(nb * P));
            for (int n0 = 0; n0 < N; n0 += nb) {
                int m = N - n0 < nb ? N - n0 : nb;
                int64_t ld = (int64_t)m * P;
                gather_images(gy + (int64_t)n0 * Cout * P, m, Cout, P, gyc);
                transpose_batch(x->data + (int64_t)n0 * Cin * HW, m, Cin, (int)P, xt);
                for (int g = 0; g < G; g++)
                    weight_grad(opg, rows, (int)ld, gyc + (int64_t)g * opg * ld, xt + (int64_t)g * rows, Cin,
                                gw + g * wg, ws);
            }
        }
        if (need_x) {
            // gX_ng (rows, P) (+)= W_g^T (rows, opg) @ gY_ng (opg, P), every image and group in one region
            const gemm_batch bt = {N * G, G, wg, (int64_t)Cout * P, (int64_t)opg * P, (int64_t)Cin * HW,
                                   (int64_t)cpg * HW, NULL, 0};
            gemm_par_batch(rows, (int)P, opg, &bt, w->data, 1, ws, gy, P, gx, P, NULL, add);
        }
        return;
    }
    // Chunks of images, in order: per chunk and group one GEMM with the chunk's columns side by side.
    int nb = col_chunk(N, ((int64_t)Cin * K * K + Cout) * P);
    size_t col_bytes = sizeof(float) * (size_t)Cin * (size_t)(K * K) * (size_t)(nb * P);
    float *col = need_w ? ib_arena_alloc(ctx->arena, col_bytes) : NULL;
    float *colt = need_w ? ib_arena_alloc(ctx->arena, col_bytes) : NULL;   // col with its rows last
    float *dcol = need_x ? ib_arena_alloc(ctx->arena, col_bytes) : NULL;
    float *gyc = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)Cout * (size_t)(nb * P));
    for (int n0 = 0; n0 < N; n0 += nb) {
        int m = N - n0 < nb ? N - n0 : nb;
        int64_t ld = (int64_t)m * P;   // columns of this chunk's (d)col and gyc blocks
        gather_images(gy + (int64_t)n0 * Cout * P, m, Cout, P, gyc);
        if (col) {
            if (is_pointwise(K, geom.stride, geom.pad)) gather_images(x->data + (int64_t)n0 * Cin * HW, m, Cin, P, col);
            else im2col(x->data + (int64_t)n0 * Cin * HW, m, Cin, &geom, col);
            transpose_batch(col, 1, G * rows, (int)ld, colt);
        }
        // gW_g (opg, rows) += gYc_g (opg, m P) @ colt_g (m P, rows), segment by segment
        for (int g = 0; need_w && g < G; g++)
            for (int i = 0; i < nseg; i++)
                weight_grad(opg, seg[i].len, (int)ld, gyc + (int64_t)g * opg * ld, colt + (int64_t)g * rows + seg[i].col,
                            (int64_t)G * rows, gw + seg[i].off + g * seg[i].gstride, ws);
        if (dcol) {
            // dcol_g (rows, m P) = W_g^T (rows, opg) @ gYc_g (opg, m P), every group in one region a segment
            for (int i = 0; i < nseg; i++) {
                const gemm_batch bt = {G, G, seg[i].gstride, 0, (int64_t)opg * ld, 0, (int64_t)rows * ld, NULL, 0};
                gemm_par_batch(seg[i].len, (int)ld, opg, &bt, w->data + seg[i].off, 1, ws, gyc, ld,
                               dcol + seg[i].col * ld, ld, NULL, 0);
            }
            if (is_pointwise(K, geom.stride, geom.pad)) scatter_images(dcol, m, Cin, P, gx + (int64_t)n0 * Cin * HW, 1);
            else col2im_add(dcol, m, Cin, &geom, gx + (int64_t)n0 * Cin * HW);
        }
    }
}
// The weight may be a view (see scratch_copy): a kernel's centre is copied for this backward alone.
static void conv_backward(ib_ctx *ctx, ib_node *node) {
    ib_tensor *w = node->in[1];
    int groups = ((const conv_args *)node->saved)->groups;
    if (ring_in_place(w, groups) || rows_contiguous(w, groups)) {
        conv_backward_rows(ctx, node, w);
        return;
    }
    ib_tensor wc;
    scratch_copy(ctx, w, &wc);
    wc.requires_grad = w->requires_grad;
    if (wc.requires_grad) wc.grad = ib_arena_calloc(ctx->arena, sizeof(float) * (size_t)ib_numel(w));
    conv_backward_rows(ctx, node, &wc);
    if (wc.grad) ib__view_grad_add(w, wc.grad);
}
static const ib_op op_conv2d = {"conv2d", conv_backward};

static void conv_check(const ib_tensor *x, const ib_tensor *w, const ib_tensor *b, int stride, int pad, int dilation,
                       int groups) {
    char sx[64], sw[64];
    IB_ASSERT(!w->centre_first, "conv2d: %s is centre-first: read it through ib_view_centre_first", w->name);
    IB_ASSERT(x->ndim == 4 && w->ndim == 4 && w->shape[2] == w->shape[3], "conv2d: x %s, w %s: need 4-d, square kernel",
              ib_shape_str(x, sx, sizeof sx), ib_shape_str(w, sw, sizeof sw));
    IB_ASSERT(groups >= 1 && x->shape[1] % groups == 0 && w->shape[0] % groups == 0 &&
                  w->shape[1] * groups == x->shape[1],
              "conv2d: x %s, w %s do not fit %d groups", ib_shape_str(x, sx, sizeof sx), ib_shape_str(w, sw, sizeof sw),
              groups);
    IB_ASSERT(!b || (b->ndim == 1 && b->shape[0] == w->shape[0]), "conv2d: bias %s for %d output channels",
              ib_shape_str(b, sx, sizeof sx), w->shape[0]);
    IB_ASSERT(stride >= 1 && pad >= 0 && dilation >= 1, "conv2d: stride %d, pad %d, dilation %d", stride, pad,
              dilation);
}

static int is_depthwise(const ib_tensor *x, const ib_tensor *w, int groups) {
    return groups == x->shape[1] && groups == w->shape[0];
}

// A ring view's forward reads it in place in the plain tap order: koff[g * cpg * 25 + k], the offset of group
// g's plain column k = (c, kh, kw) from the group's first weight (its centre taps' segment; the outer taps'
// segment of a group-block view sits at another distance for each group). Summing in the plain order gives
// the numbers of the extracted network's conv (summing the centre taps first differs by rounding, and a
// ReLU's kink turns rounding into different gradients).
static int32_t *ring_koff(ib_ctx *ctx, const ib_tensor *w, int G, int opg, int cpg) {
    wseg seg[2];
    IB_ASSERT(weight_segs(w, opg, cpg, 5, seg) == 2, "conv2d: not a ring view");
    const conv_geom ring = {.K = 5, .ring_cpg = cpg};
    int32_t *koff = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)G * (size_t)cpg * 25);
    for (int g = 0; g < G; g++) {
        int64_t outer = seg[1].off + g * (seg[1].gstride - seg[0].gstride) - cpg * 9;
        IB_ASSERT(outer + cpg * 25 <= INT32_MAX && outer + cpg * 9 >= INT32_MIN, "conv2d: a ring view beyond 2^31");
        for (int c = 0; c < cpg; c++)
            for (int t = 0; t < 25; t++) {
                int r = tap_row(&ring, c, t / 5, t % 5);
                koff[(int64_t)g * cpg * 25 + c * 25 + t] = (int32_t)(r < cpg * 9 ? r : outer + r);
            }
    }
    return koff;
}

// y = the forward of a (non-depthwise) conv2d, nothing recorded; w's rows contiguous, or a ring view
// (ring_koff). epi: the output channels' bias, BN and activation, applied by the GEMM as it stores (NULL:
// none, and no bias). Per image straight on x for 1x1 convs, else (and for tiny maps) in chunks of images
// through im2col.
static void conv_forward_into(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, int stride, int pad, int dilation, int groups,
                              const ib_rows_epi *epi, ib_tensor *y) {
    int ring = ring_in_place(w, groups);
    IB_ASSERT(ib_is_contiguous(x) && (ring || rows_contiguous(w, groups)), "conv2d: contiguous inputs");
    int N = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int Cout = w->shape[0], K = w->shape[2], G = groups;
    conv_geom geom = {H, W, K, stride, pad, dilation, y->shape[2], y->shape[3], 0};
    int cpg = Cin / G, opg = Cout / G, rows = cpg * K * K;
    int64_t HW = (int64_t)H * W, P = (int64_t)geom.Ho * geom.Wo, ws = w->stride[0], wg = group_stride(w, opg);
    if (P == 0 || opg == 0) return;
    const int32_t *koff = ring && rows ? ring_koff(ctx, w, G, opg, cpg) : NULL;
    if (rows == 0 || is_direct(K, stride, pad, N, P)) {   // rows == 0: no input channels, the epilogue alone
        // Y_ng (opg, P) = epi(W_g (opg, cpg) @ X_ng (cpg, P)), every image and group in one region
        const gemm_batch bt = {N * G, G, wg, (int64_t)Cin * HW, (int64_t)cpg * HW, (int64_t)Cout * P,
                               (int64_t)opg * P, koff, rows};
        gemm_par_batch(opg, (int)P, rows, &bt, w->data, ws, 1, x->data, P, y->data, P, epi, 0);
        return;
    }
    int nb = col_chunk(N, ((int64_t)Cin * K * K + (P >= WIDE_P ? 0 : Cout)) * P);
    float *col = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)Cin * (size_t)(K * K) * (size_t)(nb * P));
    float *ycol = P >= WIDE_P ? NULL : ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)Cout * (size_t)(nb * P));
    for (int n0 = 0; n0 < N; n0 += nb) {
        int m = N - n0 < nb ? N - n0 : nb;
        int64_t ld = (int64_t)m * P;
        if (is_pointwise(K, stride, pad)) gather_images(x->data + (int64_t)n0 * Cin * HW, m, Cin, P, col);
        else im2col(x->data + (int64_t)n0 * Cin * HW, m, Cin, &geom, col);
        if (P >= WIDE_P) {
            // Y_ng (opg, P) = epi(W_g (opg, rows) @ col_g's column block n): each image's GEMM writes its own
            // output, every image and group in one region; no scatter (the same sums: a column's sum does
            // not depend on the tiling)
            const gemm_batch bt = {m * G, G, wg, P, (int64_t)rows * ld, (int64_t)Cout * P, (int64_t)opg * P, koff,
                                   rows};
            float *yn = y->data + (int64_t)n0 * Cout * P;
            gemm_par_batch(opg, (int)P, rows, &bt, w->data, ws, 1, col, ld, yn, P, epi, 0);
            continue;
        }
        // Yc_g (opg, m P) = epi(W_g (opg, rows) @ col_g (rows, m P)), every group in one region
        const gemm_batch bt = {G, G, wg, 0, (int64_t)rows * ld, 0, (int64_t)opg * ld, koff, rows};
        gemm_par_batch(opg, (int)ld, rows, &bt, w->data, ws, 1, col, ld, ycol, ld, epi, 0);
        scatter_images(ycol, m, Cout, P, y->data + (int64_t)n0 * Cout * P, 0);
    }
}

// The forward into a new output, in a scratch scope (unless one is open): its im2col buffers and a kernel
// centre's copy go back to the arena when it returns; only the output stays.
static ib_tensor *conv_forward(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, int stride, int pad, int dilation, int groups,
                               const ib_rows_epi *epi) {
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){x->shape[0], w->shape[0],
                                                 conv_out_size(x->shape[2], w->shape[2], stride, pad, dilation),
                                                 conv_out_size(x->shape[3], w->shape[3], stride, pad, dilation)});
    int scope = !ib_arena_scope_open(ctx->arena);
    if (scope) ib_arena_scope_begin(ctx->arena);
    ib_tensor wc;
    int in_place = rows_contiguous(w, groups) || ring_in_place(w, groups);
    conv_forward_into(ctx, x, in_place ? w : scratch_copy(ctx, w, &wc), stride, pad, dilation, groups, epi, y);
    if (scope) ib_arena_scope_end(ctx->arena);
    return y;
}

// x: (N, Cin, H, W), w: (Cout, Cin/groups, K, K), b: (Cout) or NULL -> y: (N, Cout, Ho, Wo)
ib_tensor *ib_conv2d(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b, int stride, int pad, int dilation,
                     int groups) {
    conv_check(x, w, b, stride, pad, dilation, groups);
    if (is_depthwise(x, w, groups)) return ib_dwconv2d(ctx, x, ib_contiguous(ctx, w), b, stride, pad, dilation);
    IB_ASSERT(!b || ib_is_contiguous(b), "conv2d: contiguous inputs");
    const ib_rows_epi epi = {b ? b->data : NULL, NULL, NULL, NULL, IB_FUSE_NONE};
    ib_tensor *y = conv_forward(ctx, x, w, stride, pad, dilation, groups, b ? &epi : NULL);
    ib_node *node = ib_record(ctx, &op_conv2d, y, 3, (ib_tensor *[]){x, w, b});
    if (node) {
        conv_args *a = ib_arena_alloc(ctx->arena, sizeof *a);
        *a = (conv_args){stride, pad, dilation, groups};
        node->saved = a;
    }
    return y;
}

// Never recorded (it runs the separate ops when gradients are needed); the op gives the profiler a name.
static void conv_bn_act_backward(ib_ctx *ctx, ib_node *node) {
    IB_ASSERT(0, "conv2d_bn_act has no backward: it is an inference op");
}
static const ib_op op_conv2d_bn_act = {"conv2d_bn_act", conv_bn_act_backward};

ib_tensor *ib_conv2d_bn_act(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b, int stride, int pad, int dilation,
                            int groups, ib_tensor *gamma, ib_tensor *beta, ib_tensor *running_mean,
                            ib_tensor *running_var, float eps, ib_fuse_act act) {
    conv_check(x, w, b, stride, pad, dilation, groups);
    int grads = 0;
    ib_tensor *const in[5] = {x, w, b, gamma, beta};
    for (int i = 0; i < 5; i++) grads |= in[i] && in[i]->requires_grad;
    if (ctx->recording && grads)
        return ib_batchnorm_act(ctx, ib_conv2d(ctx, x, w, b, stride, pad, dilation, groups), gamma, beta, running_mean,
                                running_var, 0, 0.0f, eps, act);
    if (is_depthwise(x, w, groups)) w = ib_contiguous(ctx, w);
    int C = w->shape[0];
    float *aff = ib_arena_alloc(ctx->arena, sizeof(float) * 3 * (size_t)C);
    ib__bn_eval_affine(gamma, beta, running_mean, running_var, eps, C, aff, aff + C, aff + 2 * C);
    ib_tensor *y;
    if (is_depthwise(x, w, groups)) {
        y = ib__dwconv2d_epi(ctx, x, w, b, stride, pad, dilation, aff, aff + C, aff + 2 * C, act);
    } else {
        IB_ASSERT(!b || ib_is_contiguous(b), "conv2d: contiguous inputs");
        const ib_rows_epi epi = {b ? b->data : NULL, aff, aff + C, aff + 2 * C, act};
        y = conv_forward(ctx, x, w, stride, pad, dilation, groups, &epi);
    }
    ib_record(ctx, &op_conv2d_bn_act, y, 3, (ib_tensor *[]){x, w, b});
    return y;
}
