// core/simd.h (private to core/): the hot loops of convolution (the 1x1 and im2col GEMM, depthwise
// taps) and batchnorm, in three versions chosen once at run time: AVX-512, AVX2+FMA and portable C
// (every other processor, ARM included). IBNAS_SIMD=portable|avx2|avx512 in the environment, or
// ib_simd_select(), forces one; building with -DIB_PORTABLE_ONLY leaves the x86 versions out (the ARM
// build, tested on x86).
//
// What is equal across versions, bit for bit:
// - the batchnorm kernels: every version sums in the same 16 double "lanes" (element i of a run goes
//   to lane i % 16), combines them in one fixed tree and computes each element with the same IEEE
//   operations (no FMA), so batchnorm gives the same numbers on every machine;
// - AVX2 and AVX-512 tap and GEMM kernels: each output is a chain of FMAs in tap (k) order, and dot
//   products keep 16 float lanes (AVX2 runs two 8-lane halves), so the two x86 versions agree exactly.
// The portable tap and GEMM kernels round each product before adding (no FMA), so they differ from the
// x86 ones by float rounding only. No version depends on the thread count: callers split work by
// output or by channel and reduce in a fixed order.
#ifndef IB_CORE_SIMD_H
#define IB_CORE_SIMD_H

#include "core/core.h"

typedef enum { IB_SIMD_PORTABLE = 0, IB_SIMD_AVX2 = 1, IB_SIMD_AVX512 = 2 } ib_simd_level;

// Activations fused into a kernel's store (values as ib_fuse_act in core.h).
// Elementwise epilogue of a convolution's output: v -> act((v - mf) * scale + shift) when bn, else
// act(v). The same float operations as ib_batchnorm's eval pass and the activation ops, so a fused
// pass equals the separate ops bit for bit.
typedef struct {
    int bn;
    float mf, scale, shift;
    int act;
} ib_epi;

// Per-row epilogue of a GEMM (row m = output channel m): v = bias[m] + the sum, then, with mf set,
// (v - mf[m]) * scale[m] + shift[m], then the activation. NULL arrays are absent.
typedef struct {
    const float *bias, *mf, *scale, *shift;
    int act;
} ib_rows_epi;

// The same epilogue for the rows (channels) from c0 on.
static inline ib_rows_epi ib_rows_epi_from(const ib_rows_epi *e, int c0) {
    ib_rows_epi r = *e;
    if (r.bias) r.bias += c0;
    if (r.mf) r.mf += c0, r.scale += c0, r.shift += c0;
    return r;
}

// Per-column parameters of the small-plane batchnorm kernels (bn_cols_*), at most IB_BN_COLS columns.
#define IB_BN_COLS 256
typedef struct {
    int act;
    const float *mf, *scale, *shift;            // the forward's affine (the activation's input)
    const double *mean, *invstd, *k, *a, *b;    // backward: as bn_bwd_dx's arguments
} ib_bn_cols;

typedef struct {
    const char *name;
    // y[m * ldy + n] (=, or += when add) epi_m(sum_k a[m * ars + k * acs] * x[k * ldx + n]) for m < M,
    // n < N: the 1x1 convolution (and im2col) GEMM, register-tiled with no packing, the sum over k in
    // order from bias[m] (or 0), so any split of rows or columns gives the same numbers. epi may be NULL.
    // koff (NULL: none) replaces k * acs by koff[k]: a row's K weights at any offsets (a centre-first 5x5
    // weight's ring view read in the plain tap order, core/conv.c).
    void (*gemm)(int M, int N, int K, const float *a, int64_t ars, int64_t acs, const int32_t *koff, const float *x,
                 int64_t ldx, float *y, int64_t ldy, const ib_rows_epi *epi, int add);
    // Row r in [0, rows), o in [0, L): dst[r * ldd + o] (=, or += when add)
    //     epi(init + sum_t wt[t] * src[t][off + r * lds + o]), taps summed in order t = 0 .. T-1.
    // Only those outputs and inputs are touched.
    void (*tapsum)(float *dst, int64_t ldd, int rows, int64_t L, int T, const float *const *src, int64_t off,
                   int64_t lds, const float *wt, float init, const ib_epi *epi, int add);
    // Row r in [0, rows), o in [0, L): dst[r * ldd + o] = max_t src[t][off + r * lds + o], NaN when any
    // of them is NaN (max pooling). With arg, arg[r * ldd + o] = the winning t: the first maximum in t
    // order, the first NaN over everything; -1 when no tap exceeds -inf. Exact, so every version gives the
    // same floats and taps (a NaN's payload aside).
    void (*tapmax)(float *dst, int32_t *arg, int64_t ldd, int rows, int64_t L, int T, const float *const *src,
                   int64_t off, int64_t lds);
    // acc[t] += sum_o g[o] * src[t][o], o in [0, L). 16 float lanes (output o in lane o % 16), folded
    // into acc every 4096 outputs in a fixed order.
    void (*tapdot)(const float *g, int64_t L, int T, const float *const *src, double *acc);
    // The next three work on `imgs` images of `rows` rows: row r of image i starts at src + i * sis + r * lds
    // and dst + i * dis + r * ldd (even/odd likewise).
    // even[j] = src[2j], odd[j] = src[2j + 1] for the n source floats of each row (even gets (n + 1) / 2).
    void (*deint2)(const float *src, int64_t lds, int64_t n, int rows, float *even, float *odd, int64_t ldd, int imgs,
                   int64_t sis, int64_t dis);
    // dst[2j] (=, or +=) even[j], dst[2j + 1] (=, or +=) odd[j], for the n destination floats of each row.
    void (*int2)(const float *even, const float *odd, int64_t lds, int64_t n, int rows, float *dst, int64_t ldd,
                 int add, int imgs, int64_t sis, int64_t dis);
    // dst[j] (=, or +=) src[j] for j in [0, n) of each row.
    void (*copy2d)(const float *src, int64_t lds, int64_t n, int rows, float *dst, int64_t ldd, int add, int imgs,
                   int64_t sis, int64_t dis);
    // dst[c * ldd + r] = src[r * lds + c] for r < rows, c < n: a copy, so every version gives the same floats.
    void (*transpose)(const float *src, int64_t lds, int rows, int64_t n, float *dst, int64_t ldd);

    // Batchnorm over one channel: `outer` runs of `inner` floats, run o at p + o * stride.
    // sum x, and sum (x - m)^2, in double.
    double (*bn_sum)(const float *p, int outer, int64_t stride, int64_t inner);
    double (*bn_sumsq)(const float *p, int outer, int64_t stride, int64_t inner, double m);
    // y = act((x - mf) * scale + shift), y laid out as x.
    void (*bn_apply)(const float *x, float *y, int outer, int64_t stride, int64_t inner, const ib_epi *epi);
    // With g = act'(dy) at z = (x - mf) * scale + shift (epi->act; g = dy when none):
    // out[0] += sum g, out[1] += sum g * (x - mean), in double.
    void (*bn_bwd_sums)(const float *dy, const float *x, int outer, int64_t stride, int64_t inner, const ib_epi *epi,
                        double mean, double out[2]);
    // dx (=, or += when add) (float)(k * (g - a - (x - mean) * invstd * b)) with g as above, in double.
    void (*bn_bwd_dx)(const float *dy, const float *x, float *dx, int outer, int64_t stride, int64_t inner,
                      const ib_epi *epi, double mean, double invstd, double k, double a, double b, int add);

    // Channels-last depthwise taps (core/dw_conv.c's small planes), for channel j in [0, n):
    //   dst[j] = epi_j(bias[j] + sum_t wt[t * ldw + j] * src[t][j]), taps in order t = 0 .. T-1, a NULL src[t]
    //   skipped (padding); epi as a GEMM row's (ib_rows_epi, channel j = row j; NULL: none, no bias: from 0).
    void (*chsum)(float *dst, int n, int T, const float *const *src, const float *wt, int64_t ldw,
                  const ib_rows_epi *epi);
    // acc[t * lda + j] += g[j] * src[t][j] for t < T, j < n, a NULL src[t] skipped: one output's share of the
    // weight gradient's sums (an FMA per term on x86, a product then a sum in portable C).
    void (*chdot)(const float *g, int n, int T, const float *const *src, float *acc, int64_t lda);

    // Batchnorm on planes of at most 16 floats, n <= IB_BN_COLS columns of the channels' planes side by side,
    // column j of image o at x[o * stride + j] (core/norm.c): per column, bn_sum's and bn_sumsq's lane sums
    // (acc), bn_apply, bn_bwd_sums' two lane sums (s, t) and bn_bwd_dx, with the parameters per column.
    void (*bn_cols_sum)(const float *x, int outer, int64_t stride, int n, double *acc);
    void (*bn_cols_sumsq)(const float *x, int outer, int64_t stride, int n, const double *m, double *acc);
    void (*bn_cols_apply)(const float *x, float *y, int outer, int64_t stride, int n, const ib_bn_cols *c);
    void (*bn_cols_bwd_sums)(const float *dy, const float *x, int outer, int64_t stride, int n, const ib_bn_cols *c,
                             double *s, double *t);
    void (*bn_cols_bwd_dx)(const float *dy, const float *x, float *dx, int outer, int64_t stride, int n,
                           const ib_bn_cols *c, int add);
} ib_simd_kernels;

// The kernels in use (resolved on first call from IBNAS_SIMD and the CPU).
const ib_simd_kernels *ib_simd(void);

// Between core/ files (not API): the depthwise forward with a per-channel epilogue (bn_m NULL: none),
// nothing recorded (core/dw_conv.c); eval batchnorm's per-channel (mean, scale, shift) as floats,
// exactly as ib_batchnorm computes them (core/norm.c).
ib_tensor *ib__dwconv2d_epi(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b, int stride, int pad, int dilation,
                            const float *bn_m, const float *bn_scale, const float *bn_shift, int act);
// The depthwise kernels' layout (core/dw_conv.c): 0 (default) by plane size, 1 the stacked planes always,
// 2 channels last always (tests and bench/bench_dw.c compare the two).
extern int ib__dw_path;
// The grad of t for a backward to fill: *add = 0 when t had none yet (and is no view); the buffer is then
// uninitialised and the backward must write every element (core/dw_conv.c).
float *ib__grad_to_fill(ib_ctx *ctx, ib_tensor *t, int *add);
// view's grad (at the view's strides) += src (contiguous, the view's numel) (core/tensor.c).
void ib__view_grad_add(const ib_tensor *view, const float *src);
// gy: (N, C, P) -> gb: (C) += per-channel sums, the conv and depthwise bias grad (core/conv.c).
void ib__bias_grad(const float *gy, int N, int C, int64_t P, float *gb);
// Batchnorm on small planes (core/norm.c; core/simd.c says how the numbers equal the per-channel kernels'):
// ib_simd_kernels' bn_cols_* take at most IB_BN_COLS columns a call, each column's parameters given per column;
// ib__bn_fold combines a channel's `inner` column sums as bn_sum combines its lanes.
double ib__bn_fold(const double *acc, int inner);
// The batchnorm kernels' layout (core/norm.c): 0 (default) columns on planes of at most 8 floats, 1 per channel
// always, 2 columns on planes of at most 16 floats (tests and bench/bench_dw.c compare them).
extern int ib__bn_path;
void ib__bn_eval_affine(const ib_tensor *gamma, const ib_tensor *beta, const ib_tensor *running_mean,
                        const ib_tensor *running_var, float eps, int C, float *mf, float *scale, float *shift);

#endif
