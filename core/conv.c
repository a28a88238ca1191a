// Convolution ops: conv2d (groups, stride, padding, dilation) as im2col + OpenBLAS SGEMM per image and
// group (1x1 stride-1 convs GEMM straight on the input), and depthwise conv as direct loops over
// zero-padded planes. Forward and backward; work buffers come from the arena. Our loops are
// OpenMP-threaded; BLAS is only called outside them.
#include "core.h"

#include <cblas.h>
#include <omp.h>
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
} conv_geom;

// x: (nb, C, H, W) -> col: (C*K*K, nb*Ho*Wo); row (c, kh, kw), column block i holds image i, zeros where
// a tap falls in the padding. Batching images makes one parallel region feed many GEMMs (see below).
static void im2col(const float *restrict x, int nb, int C, const conv_geom *g, float *restrict col) {
    int K = g->K, H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo, stride = g->stride;
    int rows = C * K * K;
    int64_t P = (int64_t)Ho * Wo, ld = nb * P;
#pragma omp parallel for schedule(static) if ((int64_t)rows * ld > PAR_MIN_WORK)
    for (int t = 0; t < rows * nb; t++) {
        int r = t / nb, i = t % nb;
        int c = r / (K * K), kh = (r / K) % K, kw = r % K;
        const float *xc = x + ((int64_t)i * C + c) * H * W;
        float *dst = col + (int64_t)r * ld + i * P;
        int off_w = kw * g->dil - g->pad, lo, hi;
        tap_range(W, Wo, stride, off_w, &lo, &hi);
        for (int oh = 0; oh < Ho; oh++) {
            float *d = dst + (int64_t)oh * Wo;
            int ih = oh * stride - g->pad + kh * g->dil;
            if (ih < 0 || ih >= H) {
                memset(d, 0, sizeof(float) * (size_t)Wo);
                continue;
            }
            const float *xr = xc + (int64_t)ih * W;
            for (int ow = 0; ow < lo; ow++) d[ow] = 0.0f;
            if (stride == 1) {
                memcpy(d + lo, xr + lo + off_w, sizeof(float) * (size_t)(hi - lo));
            } else {
                for (int ow = lo; ow < hi; ow++) d[ow] = xr[ow * stride + off_w];
            }
            for (int ow = hi; ow < Wo; ow++) d[ow] = 0.0f;
        }
    }
}

// col: (C*K*K, nb*Ho*Wo) -> gx: (nb, C, H, W) += the sum of every tap's gradient. Threaded over (image,
// channel) planes: all rows of a channel add into the same plane, so each plane has one writer and a
// fixed order.
static void col2im_add(const float *restrict col, int nb, int C, const conv_geom *g, float *restrict gx) {
    int K = g->K, H = g->H, W = g->W, Ho = g->Ho, Wo = g->Wo, stride = g->stride;
    int64_t P = (int64_t)Ho * Wo, ld = nb * P;
#pragma omp parallel for schedule(static) if ((int64_t)C * K * K * ld > PAR_MIN_WORK)
    for (int t = 0; t < nb * C; t++) {
        int i = t / C, c = t % C;
        float *gc = gx + (int64_t)t * H * W;
        for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++) {
                const float *src = col + ((int64_t)(c * K + kh) * K + kw) * ld + i * P;
                int off_w = kw * g->dil - g->pad, lo, hi;
                tap_range(W, Wo, stride, off_w, &lo, &hi);
                for (int oh = 0; oh < Ho; oh++) {
                    int ih = oh * stride - g->pad + kh * g->dil;
                    if (ih < 0 || ih >= H) continue;
                    float *gr = gc + (int64_t)ih * W;
                    const float *s = src + (int64_t)oh * Wo;
                    if (stride == 1) {
#pragma omp simd
                        for (int ow = lo; ow < hi; ow++) gr[ow + off_w] += s[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++) gr[ow * stride + off_w] += s[ow];
                    }
                }
            }
    }
}

// y: (C, P) rows set to the bias of their channel, so a GEMM can add onto them. One image at a time on
// the calling thread, right before its GEMMs: it is cheap next to them, and a parallel region just
// before a GEMM leaves OpenMP's threads spinning on the cores OpenBLAS needs (see col_chunk).
static void fill_bias(float *y, int C, int64_t P, const float *b) {
    for (int c = 0; c < C; c++) {
        float *p = y + (int64_t)c * P;
        for (int64_t i = 0; i < P; i++) p[i] = b[c];
    }
}

// gy: (N, C, P) -> gb: (C) += per-channel sums in double, batch in order. Eight partial sums in a fixed
// pattern break the dependency chain (and vectorise) while keeping the result independent of threads.
// parallel = 0 next to GEMMs (conv2d), for the reason given at fill_bias.
static void bias_grad(const float *gy, int N, int C, int64_t P, int parallel, float *gb) {
#pragma omp parallel for schedule(static) if (parallel && (int64_t)N * C * P > PAR_MIN_WORK)
    for (int c = 0; c < C; c++) {
        double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int n = 0; n < N; n++) {
            const float *p = gy + ((int64_t)n * C + c) * P;
            int64_t i = 0;
            for (; i + 8 <= P; i += 8)
                for (int j = 0; j < 8; j++) part[j] += p[i + j];
            for (int j = 0; i < P; i++, j++) part[j] += p[i];
        }
        double s = 0;
        for (int j = 0; j < 8; j++) s += part[j];
        gb[c] += (float)s;
    }
}

// ---------------------------------------------------------------------------------------------
// Depthwise convolution: direct loops, one (n, c) plane at a time.
//
// Each plane is first copied into a zero-padded scratch plane (per thread, from the arena): then every
// tap of every output is in bounds, the inner loops need no checks, and the border costs nothing
// extra. Padding taps add w * 0, which leaves a sum exactly as skipping them would. For stride 2 the
// padded rows are stored deinterleaved, even columns then odd ones, so the taps of consecutive
// outputs are consecutive floats and the loads stay contiguous.

// Compiled for AVX-512 and AVX2 too, picked at load time: the Makefile builds for baseline x86-64 (SSE2),
// and these loops are where depthwise conv spends its time. No FMA is formed (-std=c11 keeps
// -ffp-contract=off), so every version rounds alike and results do not depend on the machine.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define DW_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DW_CLONES
#endif

// The padded plane of a depthwise conv: Hp x Wp reaches the last tap of the last output.
typedef struct {
    int Hp, Wp;
    int deinterleave;   // stride 2: rows stored as even columns, then odd ones
    int odd0;           // where the odd columns start in a deinterleaved row
} dw_pad;

static dw_pad dw_pad_of(const conv_geom *g) {
    dw_pad p;
    p.Hp = (g->Ho - 1) * g->stride + (g->K - 1) * g->dil + 1;
    p.Wp = (g->Wo - 1) * g->stride + (g->K - 1) * g->dil + 1;
    p.deinterleave = g->stride == 2;
    p.odd0 = (p.Wp + 1) / 2;
    return p;
}

// Where padded column c + ow * stride sits, as base(c) + ow * step.
static int dw_col_base(const dw_pad *p, int c) { return p->deinterleave ? (c >> 1) + (c & 1) * p->odd0 : c; }

// x: (H, W) -> xp: (Hp, Wp), x surrounded by `pad` zeros (cut where Hp, Wp end).
static void pad_plane(const float *restrict x, int H, int W, int pad, const dw_pad *p, float *restrict xp) {
    int Hp = p->Hp, Wp = p->Wp, odd0 = p->odd0;
    int n = W + pad <= Wp ? W : Wp - pad;   // columns of x that fit
    memset(xp, 0, sizeof(float) * (size_t)Hp * (size_t)Wp);
    for (int h = 0; h < H && h + pad < Hp; h++) {
        const float *xr = x + (int64_t)h * W;
        float *d = xp + (int64_t)(h + pad) * Wp;
        if (!p->deinterleave) {
            memcpy(d + pad, xr, sizeof(float) * (size_t)n);
            continue;
        }
        // Padded column j = i + pad goes to j / 2, or odd0 + j / 2 when odd: x's columns of one parity
        // are every other one, starting at i0.
        for (int parity = 0; parity < 2; parity++) {
            int i0 = ((parity - pad) % 2 + 2) % 2;   // first i with (i + pad) % 2 == parity
            float *dp = d + (parity ? odd0 : 0);
            for (int i = i0; i < n; i += 2) dp[(i + pad) >> 1] = xr[i];
        }
    }
}

// gxp: (Hp, Wp) padded gradient -> gx: (H, W) += its interior (the padding's gradient is dropped).
static void unpad_plane_add(const float *restrict gxp, const dw_pad *p, int pad, int H, int W, float *restrict gx) {
    for (int h = 0; h < H && h + pad < p->Hp; h++) {
        const float *sr = gxp + (int64_t)(h + pad) * p->Wp;
        float *d = gx + (int64_t)h * W;
        int n = W + pad <= p->Wp ? W : p->Wp - pad;
        if (!p->deinterleave) {
            for (int i = 0; i < n; i++) d[i] += sr[i + pad];
        } else {
            for (int i = 0; i < n; i++) {
                int j = i + pad;
                d[i] += sr[(j >> 1) + (j & 1) * p->odd0];
            }
        }
    }
}

// One output row from a padded plane, vectorised over ow with the taps summed in a register in
// (kh, kw) order. cb[kw]: the column base of tap kw. K and s are constants at each call site, so the
// tap loops unroll.
__attribute__((always_inline)) static inline void dw_row(const float *restrict xp, int Wp, const int *cb,
                                                         const float *restrict w, float bias, const int K, const int s,
                                                         int dil, int oh, int Wo, const int add, float *restrict yr) {
    const float *x0 = xp + (int64_t)oh * s * Wp;
    const int step = s == 2 ? 1 : s;   // a deinterleaved row has stride-2 taps side by side
#pragma omp simd
    for (int ow = 0; ow < Wo; ow++) {
        float acc = bias;
#pragma GCC unroll 16
        for (int kh = 0; kh < K; kh++) {
            const float *xr = x0 + (int64_t)kh * dil * Wp;
#pragma GCC unroll 16
            for (int kw = 0; kw < K; kw++) acc += w[kh * K + kw] * xr[cb[kw] + ow * step];
        }
        if (add) yr[ow] += acc;
        else yr[ow] = acc;
    }
}

#define DW_MAX_K 31

// xp: (Hp, Wp) padded plane, w: (K, K), bias -> y: (Ho, Wo); add: y += the convolution, bias ignored.
DW_CLONES static void dw_plane_conv(const float *restrict xp, const dw_pad *p, const float *restrict w, float bias,
                                    const conv_geom *g, int add, float *restrict y) {
    int K = g->K, s = g->stride, d = g->dil, Wo = g->Wo, Wp = p->Wp;
    int cb[DW_MAX_K];
    for (int kw = 0; kw < K; kw++) cb[kw] = dw_col_base(p, kw * d);
    if (add) bias = 0.0f;
    for (int oh = 0; oh < g->Ho; oh++) {
        float *yr = y + (int64_t)oh * Wo;
        if (add && K == 3 && s == 1) dw_row(xp, Wp, cb, w, bias, 3, 1, d, oh, Wo, 1, yr);
        else if (add && K == 5 && s == 1) dw_row(xp, Wp, cb, w, bias, 5, 1, d, oh, Wo, 1, yr);
        else if (add && K == 7 && s == 1) dw_row(xp, Wp, cb, w, bias, 7, 1, d, oh, Wo, 1, yr);
        else if (add) dw_row(xp, Wp, cb, w, bias, K, s, d, oh, Wo, 1, yr);
        else if (K == 3 && s == 1) dw_row(xp, Wp, cb, w, bias, 3, 1, d, oh, Wo, 0, yr);
        else if (K == 3 && s == 2) dw_row(xp, Wp, cb, w, bias, 3, 2, d, oh, Wo, 0, yr);
        else if (K == 5 && s == 1) dw_row(xp, Wp, cb, w, bias, 5, 1, d, oh, Wo, 0, yr);
        else if (K == 5 && s == 2) dw_row(xp, Wp, cb, w, bias, 5, 2, d, oh, Wo, 0, yr);
        else if (K == 7 && s == 1) dw_row(xp, Wp, cb, w, bias, 7, 1, d, oh, Wo, 0, yr);
        else if (K == 7 && s == 2) dw_row(xp, Wp, cb, w, bias, 7, 2, d, oh, Wo, 0, yr);
        else dw_row(xp, Wp, cb, w, bias, K, s, d, oh, Wo, 0, yr);
    }
}

// gy: (Ho, Wo), w: (K, K) -> gxp: (Hp, Wp) padded plane, set to the transposed convolution of gy (the
// scatter form, for strides > 1). Tap by tap: within one tap distinct outputs hit distinct columns, so each inner loop vectorises.
DW_CLONES static void dw_plane_backward_x(const float *restrict gy, const float *restrict w, const conv_geom *g,
                                          const dw_pad *p, float *restrict gxp) {
    int K = g->K, s = g->stride, d = g->dil, Wo = g->Wo;
    const int step = s == 2 ? 1 : s;
    memset(gxp, 0, sizeof(float) * (size_t)p->Hp * (size_t)p->Wp);
    for (int kh = 0; kh < K; kh++)
        for (int kw = 0; kw < K; kw++) {
            float wv = w[kh * K + kw];
            int base = dw_col_base(p, kw * d);
            for (int oh = 0; oh < g->Ho; oh++) {
                const float *gr = gy + (int64_t)oh * Wo;
                float *xr = gxp + (int64_t)(oh * s + kh * d) * p->Wp + base;
                if (step == 1) {
#pragma omp simd
                    for (int ow = 0; ow < Wo; ow++) xr[ow] += wv * gr[ow];
                } else {
                    for (int ow = 0; ow < Wo; ow++) xr[ow * step] += wv * gr[ow];
                }
            }
        }
}

// gy: (Ho, Wo), xp: (Hp, Wp) padded plane -> acc: (K*K, Wo) += gy * x per tap and output column. The
// column sums are taken later: one partial sum per column lets the loop vectorise without
// reassociating a reduction, and keeps the order fixed.
DW_CLONES static void dw_plane_backward_w(const float *restrict gy, const float *restrict xp, const conv_geom *g,
                                          const dw_pad *p, float *restrict acc) {
    int K = g->K, s = g->stride, d = g->dil, Wo = g->Wo;
    const int step = s == 2 ? 1 : s;
    for (int oh = 0; oh < g->Ho; oh++) {
        const float *gr = gy + (int64_t)oh * Wo;
        for (int kh = 0; kh < K; kh++) {
            const float *xr = xp + (int64_t)(oh * s + kh * d) * p->Wp;
            for (int kw = 0; kw < K; kw++) {
                float *ar = acc + (int64_t)(kh * K + kw) * Wo;
                const float *xt = xr + dw_col_base(p, kw * d);
                if (step == 1) {
#pragma omp simd
                    for (int ow = 0; ow < Wo; ow++) ar[ow] += gr[ow] * xt[ow];
                } else {
#pragma omp simd
                    for (int ow = 0; ow < Wo; ow++) ar[ow] += gr[ow] * xt[ow * step];
                }
            }
        }
    }
}

static void dwconv_backward(ib_ctx *ctx, ib_node *node) {
    ib_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const conv_args *a = node->saved;
    int N = x->shape[0], C = x->shape[1], K = w->shape[2];
    conv_geom geom = {x->shape[2], x->shape[3], K, a->stride, a->pad, a->dilation, node->out->shape[2],
                      node->out->shape[3]};
    dw_pad pd = dw_pad_of(&geom);
    int64_t HW = (int64_t)geom.H * geom.W, P = (int64_t)geom.Ho * geom.Wo, plane_p = (int64_t)pd.Hp * pd.Wp;
    const float *gy = node->out->grad;
    int64_t work = (int64_t)N * C * P * K * K;
    if (P == 0) return;
    int n_thr = omp_get_max_threads();
    float *scratch = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)n_thr * (size_t)plane_p);

    if (b && b->requires_grad) bias_grad(gy, N, C, P, 1, ib_grad(ctx, b));

    if (w->requires_grad) {
        float *gw = ib_grad(ctx, w);
        int64_t acc_n = (int64_t)K * K * geom.Wo;
        float *acc = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)C * (size_t)acc_n);
        // Per channel, the batch in order: the sums do not depend on the thread count.
#pragma omp parallel for schedule(static) if (work > PAR_MIN_WORK)
        for (int c = 0; c < C; c++) {
            float *xp = scratch + (int64_t)omp_get_thread_num() * plane_p;
            float *ac = acc + (int64_t)c * acc_n;
            memset(ac, 0, sizeof(float) * (size_t)acc_n);
            for (int n = 0; n < N; n++) {
                int64_t nc = (int64_t)n * C + c;
                pad_plane(x->data + nc * HW, geom.H, geom.W, geom.pad, &pd, xp);
                dw_plane_backward_w(gy + nc * P, xp, &geom, &pd, ac);
            }
            for (int k = 0; k < K * K; k++) {
                double s = 0;
                for (int ow = 0; ow < geom.Wo; ow++) s += ac[(int64_t)k * geom.Wo + ow];
                gw[(int64_t)c * K * K + k] += (float)s;
            }
        }
    }

    if (x->requires_grad) {
        float *gx = ib_grad(ctx, x);
        // Stride 1 (padding within the kernel's reach): dx is a stride-1 convolution of gy, padded by
        // q = (K-1)*dil - pad, with the flipped kernel, which runs as fast as the forward. Otherwise
        // scatter each tap into a padded plane.
        int q = (K - 1) * geom.dil - geom.pad;
        int gather = geom.stride == 1 && q >= 0;
        conv_geom gg = {geom.Ho, geom.Wo, K, 1, q, geom.dil, geom.H, geom.W};
        dw_pad pg = dw_pad_of(&gg);
        int64_t plane_g = gather ? (int64_t)pg.Hp * pg.Wp : plane_p;
        float *gscratch = gather && plane_g > plane_p
                              ? ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)n_thr * (size_t)plane_g)
                              : scratch;
#pragma omp parallel for schedule(static) if (work > PAR_MIN_WORK)
        for (int nc = 0; nc < N * C; nc++) {
            const float *wc = w->data + (int64_t)(nc % C) * K * K;
            float *buf = gscratch + (int64_t)omp_get_thread_num() * plane_g;
            if (gather) {
                float wf[DW_MAX_K * DW_MAX_K];
                for (int k = 0; k < K * K; k++) wf[k] = wc[K * K - 1 - k];
                pad_plane(gy + (int64_t)nc * P, geom.Ho, geom.Wo, q, &pg, buf);
                dw_plane_conv(buf, &pg, wf, 0.0f, &gg, 1, gx + (int64_t)nc * HW);
            } else {
                dw_plane_backward_x(gy + (int64_t)nc * P, wc, &geom, &pd, buf);
                unpad_plane_add(buf, &pd, geom.pad, geom.H, geom.W, gx + (int64_t)nc * HW);
            }
        }
    }
}
static const ib_op op_dwconv2d = {"dwconv2d", dwconv_backward};

// x: (N, C, H, W), w: (C, 1, K, K), b: (C) or NULL -> y: (N, C, Ho, Wo)
ib_tensor *ib_dwconv2d(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b, int stride, int pad, int dilation) {
    char sx[64], sw[64];
    IB_ASSERT(x->ndim == 4 && w->ndim == 4 && w->shape[0] == x->shape[1] && w->shape[1] == 1 &&
                  w->shape[2] == w->shape[3],
              "dwconv2d: x %s and w %s do not fit (w must be (C, 1, K, K))", ib_shape_str(x, sx, sizeof sx),
              ib_shape_str(w, sw, sizeof sw));
    IB_ASSERT(!b || (b->ndim == 1 && b->shape[0] == x->shape[1]), "dwconv2d: bias %s for %d channels",
              ib_shape_str(b, sx, sizeof sx), x->shape[1]);
    IB_ASSERT(stride >= 1 && pad >= 0 && dilation >= 1, "dwconv2d: stride %d, pad %d, dilation %d", stride, pad,
              dilation);
    IB_ASSERT(ib_is_contiguous(x) && ib_is_contiguous(w) && (!b || ib_is_contiguous(b)),
              "dwconv2d: contiguous inputs");
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], K = w->shape[2];
    IB_ASSERT(K <= DW_MAX_K, "dwconv2d: kernel %d larger than %d", K, DW_MAX_K);
    conv_geom geom = {H, W, K, stride, pad, dilation, conv_out_size(H, K, stride, pad, dilation),
                      conv_out_size(W, K, stride, pad, dilation)};
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){N, C, geom.Ho, geom.Wo});
    int64_t HW = (int64_t)H * W, P = (int64_t)geom.Ho * geom.Wo;
    if (P > 0 && K > 0) {
        dw_pad pd = dw_pad_of(&geom);
        int64_t plane_p = (int64_t)pd.Hp * pd.Wp;
        float *scratch = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)omp_get_max_threads() * (size_t)plane_p);
        const float *xd = x->data, *wd = w->data, *bd = b ? b->data : NULL;
        float *yd = y->data;
#pragma omp parallel for schedule(static) if ((int64_t)N * C * P * K * K > PAR_MIN_WORK)
        for (int nc = 0; nc < N * C; nc++) {
            int c = nc % C;
            float *xp = scratch + (int64_t)omp_get_thread_num() * plane_p;
            pad_plane(xd + (int64_t)nc * HW, H, W, pad, &pd, xp);
            dw_plane_conv(xp, &pd, wd + (int64_t)c * K * K, bd ? bd[c] : 0.0f, &geom, 0, yd + (int64_t)nc * P);
        }
    }
    ib_node *n = ib_record(ctx, &op_dwconv2d, y, 3, (ib_tensor *[]){x, w, b});
    if (n) {
        conv_args *a = ib_arena_alloc(ctx->arena, sizeof *a);
        *a = (conv_args){stride, pad, dilation, C};
        n->saved = a;
    }
    return y;
}

// ---------------------------------------------------------------------------------------------
// General convolution: im2col + GEMM.

// A 1x1 kernel with stride 1 and no padding reads x exactly as its im2col would be: skip the copy.
static int is_pointwise(int K, int stride, int pad) { return K == 1 && stride == 1 && pad == 0; }

// Images per im2col chunk. One parallel region writes the columns of several images, then their GEMMs
// run back to back: OpenMP's threads spin for a while after a region, and with a pthread OpenBLAS they
// then fight BLAS's threads for the cores (on 2 cores, switching on every image made a conv 5-10x
// slower). The budget bounds the arena scratch per call.
#define COL_BUDGET_BYTES ((int64_t)8 << 20)
static int col_chunk(int N, int64_t floats_per_image) {
    int64_t nb = COL_BUDGET_BYTES / (int64_t)sizeof(float) / (floats_per_image > 0 ? floats_per_image : 1);
    if (nb < 1) nb = 1;
    return nb < N ? (int)nb : N;
}

static void conv_backward(ib_ctx *ctx, ib_node *node) {
    ib_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const conv_args *a = node->saved;
    int N = x->shape[0], Cin = x->shape[1], Cout = w->shape[0], K = w->shape[2], G = a->groups;
    conv_geom geom = {x->shape[2], x->shape[3], K, a->stride, a->pad, a->dilation, node->out->shape[2],
                      node->out->shape[3]};
    int cpg = Cin / G, opg = Cout / G, rows = cpg * K * K;
    int64_t HW = (int64_t)geom.H * geom.W, P = (int64_t)geom.Ho * geom.Wo;
    const float *gy = node->out->grad;
    int direct = is_pointwise(K, a->stride, a->pad);

    if (b && b->requires_grad) bias_grad(gy, N, Cout, P, 0, ib_grad(ctx, b));
    int need_w = w->requires_grad, need_x = x->requires_grad;
    if ((!need_w && !need_x) || P == 0 || opg == 0 || rows == 0) return;
    float *gw = need_w ? ib_grad(ctx, w) : NULL;
    float *gx = need_x ? ib_grad(ctx, x) : NULL;
    int nb = col_chunk(N, (int64_t)Cin * K * K * P);
    size_t col_bytes = sizeof(float) * (size_t)Cin * (size_t)(K * K) * (size_t)(nb * P);
    float *col = (!direct && need_w) ? ib_arena_alloc(ctx->arena, col_bytes) : NULL;
    float *dcol = (!direct && need_x) ? ib_arena_alloc(ctx->arena, col_bytes) : NULL;

    // Images in order, so dW sums the batch in a fixed order.
    for (int n0 = 0; n0 < N; n0 += nb) {
        int m = N - n0 < nb ? N - n0 : nb;
        int64_t ld = direct ? P : m * P;   // leading dimension of the (d)col blocks
        if (col) im2col(x->data + (int64_t)n0 * Cin * HW, m, Cin, &geom, col);
        for (int i = 0; i < m; i++) {
            int n = n0 + i;
            for (int g = 0; g < G; g++) {
                const float *gyg = gy + ((int64_t)n * Cout + (int64_t)g * opg) * P;
                const float *wg = w->data + (int64_t)g * opg * rows;
                float *gxg = need_x ? gx + ((int64_t)n * Cin + (int64_t)g * cpg) * HW : NULL;
                if (need_w) {
                    // gW_g (opg, rows) += gY_g (opg, P) @ col_g^T (P, rows)
                    const float *cg = direct ? x->data + ((int64_t)n * Cin + (int64_t)g * cpg) * HW
                                             : col + (int64_t)g * rows * ld + i * P;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, opg, rows, (int)P, 1.0f, gyg, (int)P, cg,
                                (int)ld, 1.0f, gw + (int64_t)g * opg * rows, rows);
                }
                if (need_x) {
                    // dcol_g (rows, P) = W_g^T (rows, opg) @ gY_g (opg, P); a 1x1 conv's dcol is gx itself.
                    if (direct)
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, (int)P, opg, 1.0f, wg, rows, gyg,
                                    (int)P, 1.0f, gxg, (int)P);
                    else
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, (int)P, opg, 1.0f, wg, rows, gyg,
                                    (int)P, 0.0f, dcol + (int64_t)g * rows * ld + i * P, (int)ld);
                }
            }
        }
        if (dcol) col2im_add(dcol, m, Cin, &geom, gx + (int64_t)n0 * Cin * HW);
    }
}
static const ib_op op_conv2d = {"conv2d", conv_backward};

// x: (N, Cin, H, W), w: (Cout, Cin/groups, K, K), b: (Cout) or NULL -> y: (N, Cout, Ho, Wo)
ib_tensor *ib_conv2d(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b, int stride, int pad, int dilation,
                     int groups) {
    char sx[64], sw[64];
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
    if (groups == x->shape[1] && groups == w->shape[0])
        return ib_dwconv2d(ctx, x, w, b, stride, pad, dilation);
    IB_ASSERT(ib_is_contiguous(x) && ib_is_contiguous(w) && (!b || ib_is_contiguous(b)), "conv2d: contiguous inputs");

    int N = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int Cout = w->shape[0], K = w->shape[2], G = groups;
    conv_geom geom = {H, W, K, stride, pad, dilation, conv_out_size(H, K, stride, pad, dilation),
                      conv_out_size(W, K, stride, pad, dilation)};
    int cpg = Cin / G, opg = Cout / G, rows = cpg * K * K;
    int64_t HW = (int64_t)H * W, P = (int64_t)geom.Ho * geom.Wo;
    ib_tensor *y = ib_tensor_new(ctx, 4, (int[]){N, Cout, geom.Ho, geom.Wo});
    int direct = is_pointwise(K, stride, pad);
    int nb = col_chunk(N, (int64_t)Cin * K * K * P);
    float *col = direct ? NULL
                        : ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)Cin * (size_t)(K * K) * (size_t)(nb * P));

    if (rows == 0)   // no input channels: the output is the bias alone
        for (int n = 0; n < N; n++) {
            float *yn = y->data + (int64_t)n * Cout * P;
            if (b) fill_bias(yn, Cout, P, b->data);
            else memset(yn, 0, sizeof(float) * (size_t)Cout * (size_t)P);
        }
    else if (P > 0 && opg > 0)
        for (int n0 = 0; n0 < N; n0 += nb) {
            int m = N - n0 < nb ? N - n0 : nb;
            int64_t ld = direct ? P : m * P;
            if (col) im2col(x->data + (int64_t)n0 * Cin * HW, m, Cin, &geom, col);
            for (int i = 0; i < m; i++) {
                int n = n0 + i;
                float *yn = y->data + (int64_t)n * Cout * P;
                if (b) fill_bias(yn, Cout, P, b->data);
                for (int g = 0; g < G; g++) {
                    // Y_g (opg, P) = [bias +] W_g (opg, rows) @ col_g (rows, P)
                    const float *cg = direct ? x->data + ((int64_t)n * Cin + (int64_t)g * cpg) * HW
                                             : col + (int64_t)g * rows * ld + i * P;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, opg, (int)P, rows, 1.0f,
                                w->data + (int64_t)g * opg * rows, rows, cg, (int)ld, b ? 1.0f : 0.0f,
                                yn + (int64_t)g * opg * P, (int)P);
                }
            }
        }

    ib_node *node = ib_record(ctx, &op_conv2d, y, 3, (ib_tensor *[]){x, w, b});
    if (node) {
        conv_args *a = ib_arena_alloc(ctx->arena, sizeof *a);
        *a = (conv_args){stride, pad, dilation, groups};
        node->saved = a;
    }
    return y;
}
