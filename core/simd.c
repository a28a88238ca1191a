// The SIMD kernels of core/simd.h (depthwise taps, stride-2 (de)interleaving, batchnorm) in portable
// C, AVX2+FMA and AVX-512, and the choice between them. The x86 versions are compiled with target
// attributes on each function, so the library still builds for baseline x86-64 (and for ARM, where
// only the portable C exists) and picks the best version the processor has at run time.
#include "core/simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Scalar element functions, the same operations as core/elementwise.c's activations (torch 1.13's
// values and kink conventions), so fused passes equal the separate ops bit for bit.

static inline float clamp06(float v) { return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); }

static inline float act_f(float x, int act) {
    switch (act) {
    case IB_FUSE_RELU: return x > 0.0f ? x : (x == x ? 0.0f : x);
    case IB_FUSE_RELU6: return clamp06(x);
    case IB_FUSE_HSWISH: return x * clamp06(x + 3.0f) / 6.0f;
    default: return x;
    }
}

// dL/dz from dL/dy at pre-activation z.
static inline float act_g(float g, float z, int act) {
    switch (act) {
    case IB_FUSE_RELU: return z > 0.0f ? g : 0.0f;
    case IB_FUSE_RELU6: return ((z > 0.0f) & (z < 6.0f)) ? g : 0.0f;
    case IB_FUSE_HSWISH: return z < -3.0f ? 0.0f : (z < 3.0f ? g * (z / 3.0f + 0.5f) : g);
    default: return g;
    }
}

// The fixed combination of 16 lanes: halves added pairwise, 8 + 4 + 2 + 1.
static double fold16d(double *l) {
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

static double fold16f(const float *lf) {
    double l[16];
    for (int j = 0; j < 16; j++) l[j] = lf[j];
    return fold16d(l);
}

// Row m's epilogue as an ib_epi (bias excluded: the sums start from it).
static inline ib_epi row_epi(const ib_rows_epi *e, int m) {
    ib_epi r = {0, 0.0f, 1.0f, 0.0f, IB_FUSE_NONE};
    if (!e) return r;
    r.act = e->act;
    if (e->mf) r.bn = 1, r.mf = e->mf[m], r.scale = e->scale[m], r.shift = e->shift[m];
    return r;
}

static inline float row_init(const ib_rows_epi *e, int m) { return e && e->bias ? e->bias[m] : 0.0f; }

#define DOT_BLOCK 4096   // tapdot folds its float lanes into double this often (a multiple of 16)

// ---------------------------------------------------------------------------------------------
// Portable C. `omp simd` vectorises the element loops (GCC's -O2 cost model alone often will not);
// none of them is a reduction, so the results are those of the scalar loops. The activation's switch
// sits outside the loops.

// v[j] = epi(v[j]) for a block.
static void epi_block(float *v, int n, const ib_epi *e) {
    if (e->bn) {
        const float mf = e->mf, sc = e->scale, sh = e->shift;
#pragma omp simd
        for (int j = 0; j < n; j++) v[j] = (v[j] - mf) * sc + sh;
    }
    switch (e->act) {
    case IB_FUSE_RELU:
#pragma omp simd
        for (int j = 0; j < n; j++) v[j] = act_f(v[j], IB_FUSE_RELU);
        break;
    case IB_FUSE_RELU6:
#pragma omp simd
        for (int j = 0; j < n; j++) v[j] = act_f(v[j], IB_FUSE_RELU6);
        break;
    case IB_FUSE_HSWISH:
#pragma omp simd
        for (int j = 0; j < n; j++) v[j] = act_f(v[j], IB_FUSE_HSWISH);
        break;
    default: break;
    }
}

// g[j] = act'(dy[j]) at z = (x[j] - mf) * scale + shift, for a block.
static void grad_block(const float *dy, const float *x, int n, const ib_epi *e, float *g) {
    const float mf = e->mf, sc = e->scale, sh = e->shift;
    switch (e->act) {
    case IB_FUSE_RELU:
#pragma omp simd
        for (int j = 0; j < n; j++) g[j] = act_g(dy[j], (x[j] - mf) * sc + sh, IB_FUSE_RELU);
        break;
    case IB_FUSE_RELU6:
#pragma omp simd
        for (int j = 0; j < n; j++) g[j] = act_g(dy[j], (x[j] - mf) * sc + sh, IB_FUSE_RELU6);
        break;
    case IB_FUSE_HSWISH:
#pragma omp simd
        for (int j = 0; j < n; j++) g[j] = act_g(dy[j], (x[j] - mf) * sc + sh, IB_FUSE_HSWISH);
        break;
    default:
        for (int j = 0; j < n; j++) g[j] = dy[j];
        break;
    }
}

#define BLK 64

static void gemm_portable(int M, int N, int K, const float *a, int64_t ars, int64_t acs, const int32_t *koff,
                          const float *x, int64_t ldx, float *y, int64_t ldy, const ib_rows_epi *e, int add) {
    float acc[BLK];
    for (int64_t n0 = 0; n0 < N; n0 += BLK) {
        int n = N - n0 < BLK ? (int)(N - n0) : BLK;
        for (int m = 0; m < M; m++) {
            const float *am = a + m * ars;
            const float init = row_init(e, m);
            for (int j = 0; j < n; j++) acc[j] = init;
            for (int k = 0; k < K; k++) {
                const float w = am[koff ? koff[k] : k * acs], *xr = x + k * ldx + n0;
#pragma omp simd
                for (int j = 0; j < n; j++) acc[j] += w * xr[j];
            }
            const ib_epi ep = row_epi(e, m);
            epi_block(acc, n, &ep);
            float *d = y + m * ldy + n0;
            if (add) {
#pragma omp simd
                for (int j = 0; j < n; j++) d[j] += acc[j];
            } else {
                for (int j = 0; j < n; j++) d[j] = acc[j];
            }
        }
    }
}

static void tapsum_portable(float *dst, int64_t ldd, int rows, int64_t L, int T, const float *const *src, int64_t off,
                            int64_t lds, const float *wt, float init, const ib_epi *epi, int add) {
    float acc[BLK];
    for (int r = 0; r < rows; r++)
        for (int64_t o0 = 0; o0 < L; o0 += BLK) {
            int n = L - o0 < BLK ? (int)(L - o0) : BLK;
            for (int j = 0; j < n; j++) acc[j] = init;
            for (int t = 0; t < T; t++) {
                const float *sp = src[t] + off + r * lds + o0;
                const float w = wt[t];
#pragma omp simd
                for (int j = 0; j < n; j++) acc[j] += w * sp[j];
            }
            epi_block(acc, n, epi);
            float *d = dst + r * ldd + o0;
            if (add) {
#pragma omp simd
                for (int j = 0; j < n; j++) d[j] += acc[j];
            } else {
                for (int j = 0; j < n; j++) d[j] = acc[j];
            }
        }
}

static void tapmax_portable(float *dst, int32_t *arg, int64_t ldd, int rows, int64_t L, int T, const float *const *src,
                            int64_t off, int64_t lds) {
    float best[BLK], nan[BLK];
    for (int r = 0; r < rows; r++)
        for (int64_t o0 = 0; o0 < L; o0 += BLK) {
            int n = L - o0 < BLK ? (int)(L - o0) : BLK;
            float *d = dst + r * ldd + o0;
            if (arg) {   // the winner's tap: a compare and a select per value
                int32_t *ar = arg + r * ldd + o0;
                for (int j = 0; j < n; j++) {
                    float m = -INFINITY;
                    int32_t at = -1;
                    for (int t = 0; t < T; t++) {
                        float v = src[t][off + r * lds + o0 + j];
                        int take = (v > m) | ((v != v) & (m == m));
                        m = take ? v : m;
                        at = take ? t : at;
                    }
                    d[j] = m;
                    ar[j] = at;
                }
                continue;
            }
            for (int j = 0; j < n; j++) best[j] = -INFINITY, nan[j] = 0;
            for (int t = 0; t < T; t++) {
                const float *sp = src[t] + off + r * lds + o0;
#pragma omp simd
                for (int j = 0; j < n; j++) {
                    best[j] = sp[j] > best[j] ? sp[j] : best[j];
                    nan[j] += sp[j] != sp[j] ? 1.0f : 0.0f;
                }
            }
            for (int j = 0; j < n; j++) d[j] = nan[j] != 0 ? NAN : best[j];
        }
}

static void tapdot_portable(const float *g, int64_t L, int T, const float *const *src, double *acc) {
    for (int t = 0; t < T; t++)
        for (int64_t ob = 0; ob < L; ob += DOT_BLOCK) {
            int64_t oe = L - ob < DOT_BLOCK ? L : ob + DOT_BLOCK;
            float lane[16] = {0};
            const float *sp = src[t];
            int64_t o = ob;
            for (; o + 16 <= oe; o += 16) {
#pragma omp simd
                for (int j = 0; j < 16; j++) lane[j] += g[o + j] * sp[o + j];
            }
            for (int j = 0; o < oe; o++, j++) lane[j] += g[o] * sp[o];
            acc[t] += fold16f(lane);
        }
}

static void deint2_2d_portable(const float *src, int64_t lds, int64_t n, int rows, float *even, float *odd,
                               int64_t ldd) {
    for (int r = 0; r < rows; r++) {
        const float *sr = src + r * lds;
        float *e = even + r * ldd, *o = odd + r * ldd;
        for (int64_t j = 0; 2 * j < n; j++) e[j] = sr[2 * j];
        for (int64_t j = 0; 2 * j + 1 < n; j++) o[j] = sr[2 * j + 1];
    }
}

static void int2_2d_portable(const float *even, const float *odd, int64_t lds, int64_t n, int rows, float *dst,
                             int64_t ldd, int add) {
    for (int r = 0; r < rows; r++) {
        const float *e = even + r * lds, *o = odd + r * lds;
        float *d = dst + r * ldd;
        if (add) {
            for (int64_t j = 0; 2 * j < n; j++) d[2 * j] += e[j];
            for (int64_t j = 0; 2 * j + 1 < n; j++) d[2 * j + 1] += o[j];
        } else {
            for (int64_t j = 0; 2 * j < n; j++) d[2 * j] = e[j];
            for (int64_t j = 0; 2 * j + 1 < n; j++) d[2 * j + 1] = o[j];
        }
    }
}

static void copy2d_2d_portable(const float *src, int64_t lds, int64_t n, int rows, float *dst, int64_t ldd, int add) {
    for (int r = 0; r < rows; r++) {
        const float *sr = src + r * lds;
        float *d = dst + r * ldd;
        if (add) {
#pragma omp simd
            for (int64_t j = 0; j < n; j++) d[j] += sr[j];
        } else {
            memcpy(d, sr, sizeof(float) * (size_t)n);
        }
    }
}

static double bn_sum_portable(const float *p, int outer, int64_t stride, int64_t inner) {
    double l[16] = {0};
    for (int o = 0; o < outer; o++) {
        const float *r = p + o * stride;
        int64_t i = 0;
        for (; i + 16 <= inner; i += 16) {
#pragma omp simd
            for (int j = 0; j < 16; j++) l[j] += r[i + j];
        }
        for (int j = 0; i < inner; i++, j++) l[j] += r[i];
    }
    return fold16d(l);
}

static double bn_sumsq_portable(const float *p, int outer, int64_t stride, int64_t inner, double m) {
    double l[16] = {0};
    for (int o = 0; o < outer; o++) {
        const float *r = p + o * stride;
        int64_t i = 0;
        for (; i + 16 <= inner; i += 16) {
#pragma omp simd
            for (int j = 0; j < 16; j++) {
                double d = (double)r[i + j] - m;
                l[j] += d * d;
            }
        }
        for (int j = 0; i < inner; i++, j++) {
            double d = (double)r[i] - m;
            l[j] += d * d;
        }
    }
    return fold16d(l);
}

static void bn_apply_portable(const float *x, float *y, int outer, int64_t stride, int64_t inner, const ib_epi *epi) {
    float v[BLK];
    for (int o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i += BLK) {
            int n = inner - i < BLK ? (int)(inner - i) : BLK;
            const float *r = x + o * stride + i;
            for (int j = 0; j < n; j++) v[j] = r[j];
            epi_block(v, n, epi);
            float *w = y + o * stride + i;
            for (int j = 0; j < n; j++) w[j] = v[j];
        }
}

static void bn_bwd_sums_portable(const float *dy, const float *x, int outer, int64_t stride, int64_t inner,
                                 const ib_epi *epi, double mean, double out[2]) {
    double s[16] = {0}, t[16] = {0};
    float g[BLK];
    for (int o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i += BLK) {   // BLK is a multiple of 16: lane = (i + q + j) % 16 = j
            int n = inner - i < BLK ? (int)(inner - i) : BLK;
            const float *xr = x + o * stride + i;
            grad_block(dy + o * stride + i, xr, n, epi, g);
            for (int q = 0; q < n; q += 16) {
                int m = n - q < 16 ? n - q : 16;
#pragma omp simd
                for (int j = 0; j < m; j++) {
                    double gd = g[q + j];
                    s[j] += gd;
                    t[j] += gd * ((double)xr[q + j] - mean);
                }
            }
        }
    out[0] += fold16d(s);
    out[1] += fold16d(t);
}

static void bn_bwd_dx_portable(const float *dy, const float *x, float *dx, int outer, int64_t stride, int64_t inner,
                               const ib_epi *epi, double mean, double invstd, double k, double a, double b, int add) {
    float g[BLK];
    for (int o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i += BLK) {
            int n = inner - i < BLK ? (int)(inner - i) : BLK;
            const float *xr = x + o * stride + i;
            float *d = dx + o * stride + i;
            grad_block(dy + o * stride + i, xr, n, epi, g);
#pragma omp simd
            for (int j = 0; j < n; j++) {
                double xhat = ((double)xr[j] - mean) * invstd;
                float v = (float)(k * (((double)g[j] - a) - xhat * b));
                d[j] = add ? d[j] + v : v;
            }
        }
}

// Batchnorm on planes of at most 16 floats (core/norm.c takes them for 2x2 and smaller), a block of n
// columns at a time: column j of image o is x[o * stride + j], the planes of neighbouring channels side by
// side. A column's double sum runs over the images in order, as lane j % inner of bn_sum's 16 lanes does
// for a plane of inner <= 16 floats, and ib__bn_fold combines a channel's columns as bn_sum combines its
// lanes; every element's operations are the per-channel kernels' (epi_block, grad_block, bn_bwd_dx) in the
// same order. So the numbers are the per-channel kernels' bit for bit. One C body compiled per instruction set (the loops
// vectorised by the compiler; no contraction into FMA under -std=c11), so every version gives the same.
double ib__bn_fold(const double *acc, int inner) {
    double l[16] = {0};
    for (int i = 0; i < inner; i++) l[i] = acc[i];
    return fold16d(l);
}

#define OMP_SIMD _Pragma("omp simd")
// act(z) (fwd) or act'(dy) at z (bwd) for the n columns of one image, z = (x - mf) * scale + shift.
#define BN_COLS_ACT_LOOP(EXPR_OF)                                                                              \
    switch (c->act) {                                                                                          \
    case IB_FUSE_RELU: OMP_SIMD for (int j = 0; j < n; j++) EXPR_OF(IB_FUSE_RELU); break;                      \
    case IB_FUSE_RELU6: OMP_SIMD for (int j = 0; j < n; j++) EXPR_OF(IB_FUSE_RELU6); break;                    \
    case IB_FUSE_HSWISH: OMP_SIMD for (int j = 0; j < n; j++) EXPR_OF(IB_FUSE_HSWISH); break;                  \
    default: OMP_SIMD for (int j = 0; j < n; j++) EXPR_OF(IB_FUSE_NONE); break;                                \
    }
#define BN_COLS_Z(j) ((x[j] - c->mf[j]) * c->scale[j] + c->shift[j])
#define BN_COLS_FWD(A) w[j] = act_f(BN_COLS_Z(j), A)
#define BN_COLS_BWD(A) g[j] = (A) == IB_FUSE_NONE ? dy[j] : act_g(dy[j], BN_COLS_Z(j), A)

#define BN_COLS_KERNELS(SFX, ATTR)                                                                             \
    ATTR static void bn_cols_sum_##SFX(const float *x, int outer, int64_t stride, int n, double *acc) {        \
        for (int j = 0; j < n; j++) acc[j] = 0;                                                                \
        for (int o = 0; o < outer; o++) {                                                                      \
            const float *r = x + o * stride;                                                                   \
            OMP_SIMD for (int j = 0; j < n; j++) acc[j] += r[j];                                               \
        }                                                                                                      \
    }                                                                                                          \
    ATTR static void bn_cols_sumsq_##SFX(const float *x, int outer, int64_t stride, int n, const double *m,     \
                                         double *acc) {                                                        \
        for (int j = 0; j < n; j++) acc[j] = 0;                                                                \
        for (int o = 0; o < outer; o++) {                                                                      \
            const float *r = x + o * stride;                                                                   \
            OMP_SIMD for (int j = 0; j < n; j++) {                                                             \
                double d = (double)r[j] - m[j];                                                                \
                acc[j] += d * d;                                                                               \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    ATTR static void bn_cols_apply_##SFX(const float *x0, float *y, int outer, int64_t stride, int n,          \
                                         const ib_bn_cols *c) {                                                \
        for (int o = 0; o < outer; o++) {                                                                      \
            const float *x = x0 + o * stride;                                                                  \
            float *w = y + o * stride;                                                                         \
            BN_COLS_ACT_LOOP(BN_COLS_FWD)                                                                      \
        }                                                                                                      \
    }                                                                                                          \
    ATTR static void bn_cols_bwd_sums_##SFX(const float *dy0, const float *x0, int outer, int64_t stride, int n, \
                                            const ib_bn_cols *c, double *s, double *t) {                       \
        float g[IB_BN_COLS];                                                                                   \
        const double *mean = c->mean;                                                                          \
        for (int j = 0; j < n; j++) s[j] = t[j] = 0;                                                           \
        for (int o = 0; o < outer; o++) {                                                                      \
            const float *x = x0 + o * stride, *dy = dy0 + o * stride;                                          \
            bn_cols_grad_##SFX(dy, x, n, c, g);                                                                \
            OMP_SIMD for (int j = 0; j < n; j++) {                                                             \
                double gd = g[j];                                                                              \
                s[j] += gd;                                                                                    \
                t[j] += gd * ((double)x[j] - mean[j]);                                                         \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    ATTR static void bn_cols_bwd_dx_##SFX(const float *dy0, const float *x0, float *dx, int outer,             \
                                          int64_t stride, int n, const ib_bn_cols *c, int add) {               \
        float g[IB_BN_COLS];                                                                                   \
        const double *mean = c->mean, *invstd = c->invstd, *k = c->k, *a = c->a, *b = c->b;                    \
        for (int o = 0; o < outer; o++) {                                                                      \
            const float *x = x0 + o * stride, *dy = dy0 + o * stride;                                          \
            float *d = dx + o * stride;                                                                        \
            bn_cols_grad_##SFX(dy, x, n, c, g);                                                                \
            OMP_SIMD for (int j = 0; j < n; j++) {                                                             \
                double xhat = ((double)x[j] - mean[j]) * invstd[j];                                            \
                float v = (float)(k[j] * (((double)g[j] - a[j]) - xhat * b[j]));                               \
                d[j] = add ? d[j] + v : v;                                                                     \
            }                                                                                                  \
        }                                                                                                      \
    }

// g = act'(dy) at the forward's pre-activation for n columns of one image.
#define BN_COLS_GRAD(SFX, ATTR)                                                                                \
    ATTR static void bn_cols_grad_##SFX(const float *dy, const float *x, int n, const ib_bn_cols *c, float *g) { \
        BN_COLS_ACT_LOOP(BN_COLS_BWD)                                                                          \
    }

BN_COLS_GRAD(portable, inline)
BN_COLS_KERNELS(portable, )

// Over `imgs` images: image i's rows start at src + i * sis and dst + i * dis.
static void copy2d_portable(const float *src, int64_t lds, int64_t n, int rows, float *dst, int64_t ldd, int add,
                            int imgs, int64_t sis, int64_t dis) {
    for (int i = 0; i < imgs; i++) copy2d_2d_portable(src + i * sis, lds, n, rows, dst + i * dis, ldd, add);
}
static void deint2_portable(const float *src, int64_t lds, int64_t n, int rows, float *even, float *odd, int64_t ldd,
                            int imgs, int64_t sis, int64_t dis) {
    for (int i = 0; i < imgs; i++) deint2_2d_portable(src + i * sis, lds, n, rows, even + i * dis, odd + i * dis, ldd);
}
static void int2_portable(const float *even, const float *odd, int64_t lds, int64_t n, int rows, float *dst,
                          int64_t ldd, int add, int imgs, int64_t sis, int64_t dis) {
    for (int i = 0; i < imgs; i++)
        int2_2d_portable(even + i * sis, odd + i * sis, lds, n, rows, dst + i * dis, ldd, add);
}

static void transpose_portable(const float *src, int64_t lds, int rows, int64_t n, float *dst, int64_t ldd) {
    for (int r = 0; r < rows; r++)
        for (int64_t c = 0; c < n; c++) dst[c * ldd + r] = src[r * lds + c];
}

// v[j] = epi_j(v[j]) for channels [0, n): a GEMM row's epilogue with channel j as row j (bias excluded).
static void epi_chans(float *v, int n, const ib_rows_epi *e) {
    if (!e) return;
    if (e->mf) {
        const float *mf = e->mf, *sc = e->scale, *sh = e->shift;
#pragma omp simd
        for (int j = 0; j < n; j++) v[j] = (v[j] - mf[j]) * sc[j] + sh[j];
    }
    const ib_epi act = {0, 0.0f, 1.0f, 0.0f, e->act};
    epi_block(v, n, &act);
}

static void chsum_portable(float *dst, int n, int T, const float *const *src, const float *wt, int64_t ldw,
                           const ib_rows_epi *e) {
    for (int j0 = 0; j0 < n; j0 += BLK) {
        const int m = n - j0 < BLK ? n - j0 : BLK;
        float *acc = dst + j0;
        for (int j = 0; j < m; j++) acc[j] = e && e->bias ? e->bias[j0 + j] : 0.0f;
        for (int t = 0; t < T; t++) {
            if (!src[t]) continue;
            const float *sp = src[t] + j0, *w = wt + t * ldw + j0;
#pragma omp simd
            for (int j = 0; j < m; j++) acc[j] += w[j] * sp[j];
        }
        if (e) {
            const ib_rows_epi ej = ib_rows_epi_from(e, j0);
            epi_chans(acc, m, &ej);
        }
    }
}

static void chdot_portable(const float *g, int n, int T, const float *const *src, float *acc, int64_t lda) {
    for (int t = 0; t < T; t++) {
        if (!src[t]) continue;
        const float *sp = src[t];
        float *a = acc + t * lda;
#pragma omp simd
        for (int j = 0; j < n; j++) a[j] += g[j] * sp[j];
    }
}

static const ib_simd_kernels K_PORTABLE = {
    "portable",      gemm_portable,   tapsum_portable,   tapmax_portable, tapdot_portable,   deint2_portable,      int2_portable,
    copy2d_portable, transpose_portable, bn_sum_portable, bn_sumsq_portable, bn_apply_portable, bn_bwd_sums_portable,
    bn_bwd_dx_portable, chsum_portable, chdot_portable, bn_cols_sum_portable, bn_cols_sumsq_portable,
    bn_cols_apply_portable, bn_cols_bwd_sums_portable, bn_cols_bwd_dx_portable,
};

// ---------------------------------------------------------------------------------------------
// x86: AVX2 + FMA and AVX-512

#if defined(__x86_64__) && defined(__GNUC__) && !defined(IB_PORTABLE_ONLY)
#include <immintrin.h>
#define IB_HAVE_X86 1

#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_AVX512 __attribute__((target("avx512f,avx2,fma")))

// ---- AVX2: 8 lanes

T_AVX2 static inline __m256i mask8(int64_t n) {   // lanes [0, n) set (n clamped to [0, 8])
    int c = n < 0 ? 0 : (n > 8 ? 8 : (int)n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

T_AVX2 static inline __m128i mask4(int64_t n) {
    int c = n < 0 ? 0 : (n > 4 ? 4 : (int)n);
    return _mm_cmpgt_epi32(_mm_set1_epi32(c), _mm_setr_epi32(0, 1, 2, 3));
}

T_AVX2 static inline __m256 clamp06_8(__m256 v) {
    return _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(_mm256_setzero_ps(), v));
}

T_AVX2 static inline __m256 act_8(__m256 x, int act) {
    switch (act) {
    case IB_FUSE_RELU: return _mm256_add_ps(_mm256_max_ps(_mm256_setzero_ps(), x), _mm256_setzero_ps());
    case IB_FUSE_RELU6: return clamp06_8(x);
    case IB_FUSE_HSWISH:
        return _mm256_div_ps(_mm256_mul_ps(x, clamp06_8(_mm256_add_ps(x, _mm256_set1_ps(3.0f)))), _mm256_set1_ps(6.0f));
    default: return x;
    }
}

T_AVX2 static inline __m256 act_g8(__m256 g, __m256 z, int act) {
    __m256 zero = _mm256_setzero_ps();
    switch (act) {
    case IB_FUSE_RELU: return _mm256_and_ps(_mm256_cmp_ps(z, zero, _CMP_GT_OQ), g);
    case IB_FUSE_RELU6:
        return _mm256_and_ps(
            _mm256_and_ps(_mm256_cmp_ps(z, zero, _CMP_GT_OQ), _mm256_cmp_ps(z, _mm256_set1_ps(6.0f), _CMP_LT_OQ)), g);
    case IB_FUSE_HSWISH: {
        __m256 t = _mm256_mul_ps(g, _mm256_add_ps(_mm256_div_ps(z, _mm256_set1_ps(3.0f)), _mm256_set1_ps(0.5f)));
        __m256 r = _mm256_blendv_ps(g, t, _mm256_cmp_ps(z, _mm256_set1_ps(3.0f), _CMP_LT_OQ));
        return _mm256_andnot_ps(_mm256_cmp_ps(z, _mm256_set1_ps(-3.0f), _CMP_LT_OQ), r);
    }
    default: return g;
    }
}

T_AVX2 static inline __m256 epi_8(__m256 v, const ib_epi *e) {
    if (e->bn)
        v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, _mm256_set1_ps(e->mf)), _mm256_set1_ps(e->scale)),
                          _mm256_set1_ps(e->shift));
    return act_8(v, e->act);
}

T_AVX2 static inline void store_8(float *d, __m256 v, int add, const ib_epi *e) {
    v = epi_8(v, e);
    if (add) v = _mm256_add_ps(_mm256_loadu_ps(d), v);
    _mm256_storeu_ps(d, v);
}

T_AVX2 static inline void store_m8(float *d, __m256 v, __m256i m, int add, const ib_epi *e) {
    v = epi_8(v, e);
    if (add) v = _mm256_add_ps(_mm256_maskload_ps(d, m), v);
    _mm256_maskstore_ps(d, m, v);
}

// One row in tiles of 32 outputs (four vectors, masked at the row's end).
__attribute__((always_inline)) T_AVX2 static inline void tapsum_row_avx2(float *dst, int64_t L, int T,
                                                                         const float *const *src, int64_t off,
                                                                         const float *wt, float init, const ib_epi *epi,
                                                                         int add) {
    const __m256 vi = _mm256_set1_ps(init);
    for (int64_t o = 0; o < L; o += 32) {
        __m256 a0 = vi, a1 = vi, a2 = vi, a3 = vi;
        if (L - o >= 32) {
            for (int t = 0; t < T; t++) {
                const float *sp = src[t] + off + o;
                const __m256 w = _mm256_set1_ps(wt[t]);
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(sp), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(sp + 8), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(sp + 16), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(sp + 24), a3);
            }
            store_8(dst + o, a0, add, epi);
            store_8(dst + o + 8, a1, add, epi);
            store_8(dst + o + 16, a2, add, epi);
            store_8(dst + o + 24, a3, add, epi);
        } else {
            const __m256i m0 = mask8(L - o), m1 = mask8(L - o - 8), m2 = mask8(L - o - 16), m3 = mask8(L - o - 24);
            for (int t = 0; t < T; t++) {
                const float *sp = src[t] + off + o;
                const __m256 w = _mm256_set1_ps(wt[t]);
                a0 = _mm256_fmadd_ps(w, _mm256_maskload_ps(sp, m0), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_maskload_ps(sp + 8, m1), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_maskload_ps(sp + 16, m2), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_maskload_ps(sp + 24, m3), a3);
            }
            store_m8(dst + o, a0, m0, add, epi);
            if (L - o > 8) store_m8(dst + o + 8, a1, m1, add, epi);
            if (L - o > 16) store_m8(dst + o + 16, a2, m2, add, epi);
            if (L - o > 24) store_m8(dst + o + 24, a3, m3, add, epi);
        }
    }
}

T_AVX2 static void tapsum_avx2(float *dst, int64_t ldd, int rows, int64_t L, int T, const float *const *src,
                               int64_t off, int64_t lds, const float *wt, float init, const ib_epi *epi, int add) {
    int r = 0;
    if (L <= 16) {   // narrow rows: tiles of 4 rows x 8 columns share each tap's broadcast
        const __m256 vi = _mm256_set1_ps(init);
        for (; r + 4 <= rows; r += 4)
            for (int64_t o = 0; o < L; o += 8) {
                __m256 a0 = vi, a1 = vi, a2 = vi, a3 = vi;
                float *d = dst + r * ldd + o;
                if (L - o >= 8) {   // plain loads: masked ones cost more on some cores
                    for (int t = 0; t < T; t++) {
                        const float *sp = src[t] + off + r * lds + o;
                        const __m256 w = _mm256_set1_ps(wt[t]);
                        a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(sp), a0);
                        a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(sp + lds), a1);
                        a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(sp + 2 * lds), a2);
                        a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(sp + 3 * lds), a3);
                    }
                    store_8(d, a0, add, epi);
                    store_8(d + ldd, a1, add, epi);
                    store_8(d + 2 * ldd, a2, add, epi);
                    store_8(d + 3 * ldd, a3, add, epi);
                    continue;
                }
                __m256i m = mask8(L - o);
                for (int t = 0; t < T; t++) {
                    const float *sp = src[t] + off + r * lds + o;
                    const __m256 w = _mm256_set1_ps(wt[t]);
                    a0 = _mm256_fmadd_ps(w, _mm256_maskload_ps(sp, m), a0);
                    a1 = _mm256_fmadd_ps(w, _mm256_maskload_ps(sp + lds, m), a1);
                    a2 = _mm256_fmadd_ps(w, _mm256_maskload_ps(sp + 2 * lds, m), a2);
                    a3 = _mm256_fmadd_ps(w, _mm256_maskload_ps(sp + 3 * lds, m), a3);
                }
                store_m8(d, a0, m, add, epi);
                store_m8(d + ldd, a1, m, add, epi);
                store_m8(d + 2 * ldd, a2, m, add, epi);
                store_m8(d + 3 * ldd, a3, m, add, epi);
            }
    }
    for (; r < rows; r++) tapsum_row_avx2(dst + r * ldd, L, T, src, off + r * lds, wt, init, epi, add);
}

// 16 outputs of a row at a time (two vectors, masked at the row's end). Without arg, NaNs are flagged
// aside, as MAXPS returns its second operand when either is NaN; with it, each value is taken when it is
// greater, or a NaN over a number, and its tap (as a float, exact) taken with it.
__attribute__((always_inline)) T_AVX2 static inline void tapmax_vec_avx2(__m256 v, __m256 tv, __m256 *a, __m256 *u,
                                                                         __m256 *ti, int want_arg) {
    if (!want_arg) {
        *a = _mm256_max_ps(v, *a);
        *u = _mm256_or_ps(*u, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        return;
    }
    __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, *a, _CMP_GT_OQ),
                               _mm256_andnot_ps(_mm256_cmp_ps(*a, *a, _CMP_UNORD_Q), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    *a = _mm256_blendv_ps(*a, v, take);
    *ti = _mm256_blendv_ps(*ti, tv, take);
}

__attribute__((always_inline)) T_AVX2 static inline void tapmax_rows_avx2(float *dst, int32_t *arg, int64_t ldd, int rows,
                                                                          int64_t L, int T, const float *const *src,
                                                                          int64_t off, int64_t lds, int want_arg) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY), qnan = _mm256_set1_ps(NAN), none = _mm256_set1_ps(-1);
    for (int r = 0; r < rows; r++)
        for (int64_t o = 0; o < L; o += 16) {
            __m256 a0 = ninf, a1 = ninf, u0 = _mm256_setzero_ps(), u1 = u0, t0 = none, t1 = none;
            const __m256i m0 = mask8(L - o), m1 = mask8(L - o - 8);
            const int full = L - o >= 16;
            for (int t = 0; t < T; t++) {
                const float *sp = src[t] + off + r * lds + o;
                const __m256 tv = _mm256_set1_ps((float)t);
                tapmax_vec_avx2(full ? _mm256_loadu_ps(sp) : _mm256_maskload_ps(sp, m0), tv, &a0, &u0, &t0, want_arg);
                tapmax_vec_avx2(full ? _mm256_loadu_ps(sp + 8) : _mm256_maskload_ps(sp + 8, m1), tv, &a1, &u1, &t1,
                                want_arg);
            }
            float *d = dst + r * ldd + o;
            if (want_arg) {
                int32_t *ar = arg + r * ldd + o;
                _mm256_maskstore_ps(d, m0, a0);
                _mm256_maskstore_epi32(ar, m0, _mm256_cvttps_epi32(t0));
                if (L - o > 8) {
                    _mm256_maskstore_ps(d + 8, m1, a1);
                    _mm256_maskstore_epi32(ar + 8, m1, _mm256_cvttps_epi32(t1));
                }
                continue;
            }
            _mm256_maskstore_ps(d, m0, _mm256_blendv_ps(a0, qnan, u0));
            if (L - o > 8) _mm256_maskstore_ps(d + 8, m1, _mm256_blendv_ps(a1, qnan, u1));
        }
}

T_AVX2 static void tapmax_avx2(float *dst, int32_t *arg, int64_t ldd, int rows, int64_t L, int T, const float *const *src,
                               int64_t off, int64_t lds) {
    if (arg) tapmax_rows_avx2(dst, arg, ldd, rows, L, T, src, off, lds, 1);
    else tapmax_rows_avx2(dst, NULL, ldd, rows, L, T, src, off, lds, 0);
}

T_AVX2 static void copy2d_2d_avx2(const float *src, int64_t lds, int64_t n, int rows, float *dst, int64_t ldd,
                                  int add) {
    for (int r = 0; r < rows; r++) {
        const float *sr = src + r * lds;
        float *d = dst + r * ldd;
        int64_t j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 v = _mm256_loadu_ps(sr + j);
            if (add) v = _mm256_add_ps(_mm256_loadu_ps(d + j), v);
            _mm256_storeu_ps(d + j, v);
        }
        if (j < n) {
            __m256i m = mask8(n - j);
            __m256 v = _mm256_maskload_ps(sr + j, m);
            if (add) v = _mm256_add_ps(_mm256_maskload_ps(d + j, m), v);
            _mm256_maskstore_ps(d + j, m, v);
        }
    }
}

// GEMM tile: MR rows x NV vectors of 8 columns, the last one partial (masked) when PART. MR, NV and PART
// are constants at each call, so the accumulators stay in registers.
__attribute__((always_inline)) T_AVX2 static inline void gemm_tile_avx2(int K, const float *a, int64_t ars, int64_t acs,
                                                                        const int32_t *koff, const float *x,
                                                                        int64_t ldx, float *y, int64_t ldy,
                                                                        const ib_rows_epi *e, int m0, int add,
                                                                        __m256i last, const int MR, const int NV,
                                                                        const int PART) {
    __m256 c[6][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        __m256 init = _mm256_set1_ps(row_init(e, m0 + r));
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) c[r][v] = init;
    }
    const float *ar = a + m0 * ars;
    for (int k = 0; k < K; k++) {
        const float *xr = x + k * ldx;
        const int64_t ak = koff ? koff[k] : k * acs;
        __m256 xv[2];
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
            xv[v] = PART && v == NV - 1 ? _mm256_maskload_ps(xr + 8 * v, last) : _mm256_loadu_ps(xr + 8 * v);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256 b = _mm256_set1_ps(ar[r * ars + ak]);
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++) c[r][v] = _mm256_fmadd_ps(b, xv[v], c[r][v]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        const ib_epi ep = row_epi(e, m0 + r);
        float *yr = y + r * ldy;
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            if (PART && v == NV - 1)
                store_m8(yr + 8 * v, c[r][v], last, add, &ep);
            else
                store_8(yr + 8 * v, c[r][v], add, &ep);
        }
    }
}

#define GEMM_TILES_AVX2(MR)                                                                                \
    do {                                                                                                   \
        if (nv == 2 && !part)                                                                              \
            gemm_tile_avx2(K, a, ars, acs, koff, x + n0, ldx, y + m * ldy + n0, ldy, e, m, add, last, MR, 2, 0); \
        else if (nv == 2)                                                                                  \
            gemm_tile_avx2(K, a, ars, acs, koff, x + n0, ldx, y + m * ldy + n0, ldy, e, m, add, last, MR, 2, 1); \
        else if (!part)                                                                                    \
            gemm_tile_avx2(K, a, ars, acs, koff, x + n0, ldx, y + m * ldy + n0, ldy, e, m, add, last, MR, 1, 0); \
        else                                                                                               \
            gemm_tile_avx2(K, a, ars, acs, koff, x + n0, ldx, y + m * ldy + n0, ldy, e, m, add, last, MR, 1, 1); \
    } while (0)

T_AVX2 static void gemm_avx2(int M, int N, int K, const float *a, int64_t ars, int64_t acs, const int32_t *koff,
                             const float *x, int64_t ldx, float *y, int64_t ldy, const ib_rows_epi *e, int add) {
    for (int n0 = 0; n0 < N; n0 += 16) {
        int rem = N - n0, nv = rem >= 16 ? 2 : (rem + 7) / 8, part = rem < 16 && rem % 8 != 0;
        __m256i last = mask8(rem - 8 * (nv - 1));
        int m = 0;
        for (; m + 6 <= M; m += 6) GEMM_TILES_AVX2(6);
        for (; m < M; m++) GEMM_TILES_AVX2(1);
    }
}

// TN taps of a dot product, 16 lanes as two 8-lane halves; TN is a constant at each call.
__attribute__((always_inline)) T_AVX2 static inline void tapdot_group_avx2(const float *g, int64_t L,
                                                                           const float *const *src, double *acc,
                                                                           const int TN) {
    for (int64_t ob = 0; ob < L; ob += DOT_BLOCK) {
        int64_t oe = L - ob < DOT_BLOCK ? L : ob + DOT_BLOCK;
        __m256 lo[6], hi[6];
#pragma GCC unroll 12
        for (int k = 0; k < TN; k++) lo[k] = hi[k] = _mm256_setzero_ps();
        int64_t o = ob;
        for (; o + 16 <= oe; o += 16) {
            __m256 g0 = _mm256_loadu_ps(g + o), g1 = _mm256_loadu_ps(g + o + 8);
#pragma GCC unroll 12
            for (int k = 0; k < TN; k++) {
                lo[k] = _mm256_fmadd_ps(g0, _mm256_loadu_ps(src[k] + o), lo[k]);
                hi[k] = _mm256_fmadd_ps(g1, _mm256_loadu_ps(src[k] + o + 8), hi[k]);
            }
        }
        if (o < oe) {
            __m256i m0 = mask8(oe - o), m1 = mask8(oe - o - 8);
            __m256 g0 = _mm256_maskload_ps(g + o, m0), g1 = _mm256_maskload_ps(g + o + 8, m1);
#pragma GCC unroll 12
            for (int k = 0; k < TN; k++) {
                lo[k] = _mm256_fmadd_ps(g0, _mm256_maskload_ps(src[k] + o, m0), lo[k]);
                hi[k] = _mm256_fmadd_ps(g1, _mm256_maskload_ps(src[k] + o + 8, m1), hi[k]);
            }
        }
#pragma GCC unroll 12
        for (int k = 0; k < TN; k++) {
            float l[16];
            _mm256_storeu_ps(l, lo[k]);
            _mm256_storeu_ps(l + 8, hi[k]);
            acc[k] += fold16f(l);
        }
    }
}

T_AVX2 static void tapdot_avx2(const float *g, int64_t L, int T, const float *const *src, double *acc) {
    for (int t = 0; t < T; t += 6) {
        switch (T - t < 6 ? T - t : 6) {
        case 1: tapdot_group_avx2(g, L, src + t, acc + t, 1); break;
        case 2: tapdot_group_avx2(g, L, src + t, acc + t, 2); break;
        case 3: tapdot_group_avx2(g, L, src + t, acc + t, 3); break;
        case 4: tapdot_group_avx2(g, L, src + t, acc + t, 4); break;
        case 5: tapdot_group_avx2(g, L, src + t, acc + t, 5); break;
        default: tapdot_group_avx2(g, L, src + t, acc + t, 6); break;
        }
    }
}

__attribute__((always_inline)) T_AVX2 static inline void deint2_row_avx2(const float *src, int64_t n, float *even,
                                                                         float *odd) {
    int64_t j = 0;
    for (; 2 * j + 16 <= n; j += 8) {
        __m256 a = _mm256_loadu_ps(src + 2 * j), b = _mm256_loadu_ps(src + 2 * j + 8);
        __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));   // a0 a2 b0 b2 | a4 a6 b4 b6
        __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        _mm256_storeu_ps(even + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8)));
        _mm256_storeu_ps(odd + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xd8)));
    }
    // The rest (under 16 floats: a whole row of the small maps) 8 at a time, the last ones masked.
    for (; 2 * j < n; j += 4) {
        int64_t r = n - 2 * j;
        __m128 a = _mm_maskload_ps(src + 2 * j, mask4(r)), b = _mm_maskload_ps(src + 2 * j + 4, mask4(r - 4));
        _mm_maskstore_ps(even + j, mask4((r + 1) / 2), _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm_maskstore_ps(odd + j, mask4(r / 2), _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    }
}

T_AVX2 static void deint2_2d_avx2(const float *src, int64_t lds, int64_t n, int rows, float *even, float *odd,
                                  int64_t ldd) {
    for (int r = 0; r < rows; r++) deint2_row_avx2(src + r * lds, n, even + r * ldd, odd + r * ldd);
}

__attribute__((always_inline)) T_AVX2 static inline void int2_row_avx2(const float *even, const float *odd, int64_t n,
                                                                       float *dst, int add) {
    int64_t j = 0;
    for (; 2 * j + 16 <= n; j += 8) {
        __m256 e = _mm256_loadu_ps(even + j), o = _mm256_loadu_ps(odd + j);
        __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);   // e0 o0 e1 o1 | e4 o4 e5 o5
        __m256 d0 = _mm256_permute2f128_ps(lo, hi, 0x20), d1 = _mm256_permute2f128_ps(lo, hi, 0x31);
        if (add) {
            d0 = _mm256_add_ps(_mm256_loadu_ps(dst + 2 * j), d0);
            d1 = _mm256_add_ps(_mm256_loadu_ps(dst + 2 * j + 8), d1);
        }
        _mm256_storeu_ps(dst + 2 * j, d0);
        _mm256_storeu_ps(dst + 2 * j + 8, d1);
    }
    for (; 2 * j < n; j += 4) {   // the rest 8 at a time, the last ones masked
        int64_t r = n - 2 * j;
        __m128i m0 = mask4(r), m1 = mask4(r - 4);
        __m128 e = _mm_maskload_ps(even + j, mask4((r + 1) / 2)), o = _mm_maskload_ps(odd + j, mask4(r / 2));
        __m128 d0 = _mm_unpacklo_ps(e, o), d1 = _mm_unpackhi_ps(e, o);   // e0 o0 e1 o1, e2 o2 e3 o3
        if (add) {
            d0 = _mm_add_ps(_mm_maskload_ps(dst + 2 * j, m0), d0);
            d1 = _mm_add_ps(_mm_maskload_ps(dst + 2 * j + 4, m1), d1);
        }
        _mm_maskstore_ps(dst + 2 * j, m0, d0);
        _mm_maskstore_ps(dst + 2 * j + 4, m1, d1);
    }
}

T_AVX2 static void int2_2d_avx2(const float *even, const float *odd, int64_t lds, int64_t n, int rows, float *dst,
                                int64_t ldd, int add) {
    for (int r = 0; r < rows; r++) int2_row_avx2(even + r * lds, odd + r * lds, n, dst + r * ldd, add);
}

// Batchnorm: 16 double lanes as four 4-lane quarters. Element i of a run goes to quarter (i % 16) / 4.
T_AVX2 static inline void load16d_avx2(const float *r, int64_t cnt, __m256d q[4]) {
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_cvtps_pd(cnt >= 16 ? _mm_loadu_ps(r + 4 * k) : _mm_maskload_ps(r + 4 * k, mask4(cnt - 4 * k)));
}

T_AVX2 static inline __m256d qmask_avx2(int64_t cnt, int k) {   // quarter k's lanes below cnt, as a double mask
    return _mm256_castsi256_pd(_mm256_cvtepi32_epi64(mask4(cnt - 4 * k)));
}

T_AVX2 static inline double fold4x4_avx2(const __m256d q[4]) {
    double l[16];
    for (int k = 0; k < 4; k++) _mm256_storeu_pd(l + 4 * k, q[k]);
    return fold16d(l);
}

T_AVX2 static double bn_sum_avx2(const float *p, int outer, int64_t stride, int64_t inner) {
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (int o = 0; o < outer; o++) {
        const float *r = p + o * stride;
        for (int64_t i = 0; i < inner; i += 16) {
            __m256d q[4];
            load16d_avx2(r + i, inner - i, q);
            for (int k = 0; k < 4; k++) a[k] = _mm256_add_pd(a[k], q[k]);
        }
    }
    return fold4x4_avx2(a);
}

T_AVX2 static double bn_sumsq_avx2(const float *p, int outer, int64_t stride, int64_t inner, double m) {
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    const __m256d vm = _mm256_set1_pd(m);
    for (int o = 0; o < outer; o++) {
        const float *r = p + o * stride;
        for (int64_t i = 0; i < inner; i += 16) {
            __m256d q[4];
            load16d_avx2(r + i, inner - i, q);
            for (int k = 0; k < 4; k++) {
                __m256d d = _mm256_sub_pd(q[k], vm);
                d = _mm256_mul_pd(d, d);
                if (inner - i < 16) d = _mm256_and_pd(d, qmask_avx2(inner - i, k));
                a[k] = _mm256_add_pd(a[k], d);
            }
        }
    }
    return fold4x4_avx2(a);
}

T_AVX2 static void bn_apply_avx2(const float *x, float *y, int outer, int64_t stride, int64_t inner,
                                 const ib_epi *epi) {
    for (int o = 0; o < outer; o++) {
        const float *r = x + o * stride;
        float *w = y + o * stride;
        int64_t i = 0;
        for (; i + 8 <= inner; i += 8) _mm256_storeu_ps(w + i, epi_8(_mm256_loadu_ps(r + i), epi));
        if (i < inner) {
            __m256i m = mask8(inner - i);
            _mm256_maskstore_ps(w + i, m, epi_8(_mm256_maskload_ps(r + i, m), epi));
        }
    }
}

// g of 8 elements (dy through the activation at z recomputed from x); masked lanes give 0.
T_AVX2 static inline __m256 bn_g8(const float *dy, const float *x, __m256i m, int full, const ib_epi *e, __m256 *xv) {
    __m256 g = full ? _mm256_loadu_ps(dy) : _mm256_maskload_ps(dy, m);
    *xv = full ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, m);
    if (e->act == IB_FUSE_NONE) return g;
    __m256 z = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(*xv, _mm256_set1_ps(e->mf)), _mm256_set1_ps(e->scale)),
                             _mm256_set1_ps(e->shift));
    g = act_g8(g, z, e->act);
    return full ? g : _mm256_and_ps(g, _mm256_castsi256_ps(m));
}

T_AVX2 static void bn_bwd_sums_avx2(const float *dy, const float *x, int outer, int64_t stride, int64_t inner,
                                    const ib_epi *epi, double mean, double out[2]) {
    __m256d s[4], t[4];
    for (int k = 0; k < 4; k++) s[k] = t[k] = _mm256_setzero_pd();
    const __m256d vm = _mm256_set1_pd(mean);
    for (int o = 0; o < outer; o++) {
        const float *gr = dy + o * stride, *xr = x + o * stride;
        for (int64_t i = 0; i < inner; i += 16) {
            int64_t cnt = inner - i;
            for (int h = 0; h < 2; h++) {   // two 8-float halves: quarters 2h, 2h + 1
                __m256i m = mask8(cnt - 8 * h);
                __m256 xv, g = bn_g8(gr + i + 8 * h, xr + i + 8 * h, m, cnt >= 16, epi, &xv);
                __m256d g0 = _mm256_cvtps_pd(_mm256_castps256_ps128(g)),
                        g1 = _mm256_cvtps_pd(_mm256_extractf128_ps(g, 1));
                __m256d x0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), vm);
                __m256d x1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), vm);
                __m256d p0 = _mm256_mul_pd(g0, x0), p1 = _mm256_mul_pd(g1, x1);
                if (cnt < 16) {   // masked lanes: g is 0, but 0 * (0 - mean) may be -0; keep them exact
                    p0 = _mm256_and_pd(p0, qmask_avx2(cnt - 8 * h, 0));
                    p1 = _mm256_and_pd(p1, qmask_avx2(cnt - 8 * h, 1));
                }
                s[2 * h] = _mm256_add_pd(s[2 * h], g0);
                s[2 * h + 1] = _mm256_add_pd(s[2 * h + 1], g1);
                t[2 * h] = _mm256_add_pd(t[2 * h], p0);
                t[2 * h + 1] = _mm256_add_pd(t[2 * h + 1], p1);
            }
        }
    }
    out[0] += fold4x4_avx2(s);
    out[1] += fold4x4_avx2(t);
}

T_AVX2 static void bn_bwd_dx_avx2(const float *dy, const float *x, float *dx, int outer, int64_t stride, int64_t inner,
                                  const ib_epi *epi, double mean, double invstd, double k, double a, double b,
                                  int add) {
    const __m256d vm = _mm256_set1_pd(mean), vi = _mm256_set1_pd(invstd), vk = _mm256_set1_pd(k),
                  va = _mm256_set1_pd(a), vb = _mm256_set1_pd(b);
    for (int o = 0; o < outer; o++) {
        const float *gr = dy + o * stride, *xr = x + o * stride;
        float *d = dx + o * stride;
        for (int64_t i = 0; i < inner; i += 8) {
            int full = inner - i >= 8;
            __m256i m = mask8(inner - i);
            __m256 xv, g = bn_g8(gr + i, xr + i, m, full, epi, &xv);
            __m128 r[2];
            for (int h = 0; h < 2; h++) {
                __m256d gd = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(g, 1) : _mm256_castps256_ps128(g));
                __m256d xd = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(xv, 1) : _mm256_castps256_ps128(xv));
                __m256d xhat = _mm256_mul_pd(_mm256_sub_pd(xd, vm), vi);
                r[h] =
                    _mm256_cvtpd_ps(_mm256_mul_pd(vk, _mm256_sub_pd(_mm256_sub_pd(gd, va), _mm256_mul_pd(xhat, vb))));
            }
            __m256 v = _mm256_set_m128(r[1], r[0]);
            if (full) {
                if (add) v = _mm256_add_ps(_mm256_loadu_ps(d + i), v);
                _mm256_storeu_ps(d + i, v);
            } else {
                if (add) v = _mm256_add_ps(_mm256_maskload_ps(d + i, m), v);
                _mm256_maskstore_ps(d + i, m, v);
            }
        }
    }
}

// Over `imgs` images: image i's rows start at src + i * sis and dst + i * dis.
T_AVX2 static void copy2d_avx2(const float *src, int64_t lds, int64_t n, int rows, float *dst, int64_t ldd, int add,
                               int imgs, int64_t sis, int64_t dis) {
    for (int i = 0; i < imgs; i++) copy2d_2d_avx2(src + i * sis, lds, n, rows, dst + i * dis, ldd, add);
}
T_AVX2 static void deint2_avx2(const float *src, int64_t lds, int64_t n, int rows, float *even, float *odd, int64_t ldd,
                               int imgs, int64_t sis, int64_t dis) {
    for (int i = 0; i < imgs; i++) deint2_2d_avx2(src + i * sis, lds, n, rows, even + i * dis, odd + i * dis, ldd);
}
T_AVX2 static void int2_avx2(const float *even, const float *odd, int64_t lds, int64_t n, int rows, float *dst,
                             int64_t ldd, int add, int imgs, int64_t sis, int64_t dis) {
    for (int i = 0; i < imgs; i++) int2_2d_avx2(even + i * sis, odd + i * sis, lds, n, rows, dst + i * dis, ldd, add);
}

// 8 x 8 blocks transposed in registers (unpack, shuffle, then swap 128-bit halves); the edges one float at a time.
T_AVX2 static void transpose_avx2(const float *src, int64_t lds, int rows, int64_t n, float *dst, int64_t ldd) {
    int r = 0;
    for (; r + 8 <= rows; r += 8) {
        int64_t c = 0;
        for (; c + 8 <= n; c += 8) {
            const float *s = src + r * lds + c;
            __m256 t0 = _mm256_unpacklo_ps(_mm256_loadu_ps(s), _mm256_loadu_ps(s + lds));
            __m256 t1 = _mm256_unpackhi_ps(_mm256_loadu_ps(s), _mm256_loadu_ps(s + lds));
            __m256 t2 = _mm256_unpacklo_ps(_mm256_loadu_ps(s + 2 * lds), _mm256_loadu_ps(s + 3 * lds));
            __m256 t3 = _mm256_unpackhi_ps(_mm256_loadu_ps(s + 2 * lds), _mm256_loadu_ps(s + 3 * lds));
            __m256 t4 = _mm256_unpacklo_ps(_mm256_loadu_ps(s + 4 * lds), _mm256_loadu_ps(s + 5 * lds));
            __m256 t5 = _mm256_unpackhi_ps(_mm256_loadu_ps(s + 4 * lds), _mm256_loadu_ps(s + 5 * lds));
            __m256 t6 = _mm256_unpacklo_ps(_mm256_loadu_ps(s + 6 * lds), _mm256_loadu_ps(s + 7 * lds));
            __m256 t7 = _mm256_unpackhi_ps(_mm256_loadu_ps(s + 6 * lds), _mm256_loadu_ps(s + 7 * lds));
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + c * ldd + r;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; c < n; c++)
            for (int i = 0; i < 8; i++) dst[c * ldd + r + i] = src[(r + i) * lds + c];
    }
    for (; r < rows; r++)
        for (int64_t c = 0; c < n; c++) dst[c * ldd + r] = src[r * lds + c];
}

// Channels-last depthwise taps: each lane its own channel, taps in order (an FMA each), so every channel's
// output is the same chain of operations in both x86 versions.
T_AVX2 static inline __m256 epi_c8(__m256 v, const ib_rows_epi *e, int64_t j, __m256i m) {
    if (e->mf)
        v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, _mm256_maskload_ps(e->mf + j, m)),
                                        _mm256_maskload_ps(e->scale + j, m)),
                          _mm256_maskload_ps(e->shift + j, m));
    return act_8(v, e->act);
}

T_AVX2 static void chsum_avx2(float *dst, int n, int T, const float *const *src, const float *wt, int64_t ldw,
                              const ib_rows_epi *e) {
    const __m256i all = mask8(8);
    int j = 0;
    for (; j + 32 <= n; j += 32) {
        __m256 a[4];
        for (int v = 0; v < 4; v++) a[v] = e && e->bias ? _mm256_loadu_ps(e->bias + j + 8 * v) : _mm256_setzero_ps();
        for (int t = 0; t < T; t++) {
            if (!src[t]) continue;
            const float *sp = src[t] + j, *w = wt + t * ldw + j;
            for (int v = 0; v < 4; v++)
                a[v] = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * v), _mm256_loadu_ps(sp + 8 * v), a[v]);
        }
        for (int v = 0; v < 4; v++) _mm256_storeu_ps(dst + j + 8 * v, e ? epi_c8(a[v], e, j + 8 * v, all) : a[v]);
    }
    for (; j < n; j += 8) {
        const __m256i m = mask8(n - j);
        __m256 a = e && e->bias ? _mm256_maskload_ps(e->bias + j, m) : _mm256_setzero_ps();
        for (int t = 0; t < T; t++)
            if (src[t])
                a = _mm256_fmadd_ps(_mm256_maskload_ps(wt + t * ldw + j, m), _mm256_maskload_ps(src[t] + j, m), a);
        _mm256_maskstore_ps(dst + j, m, e ? epi_c8(a, e, j, m) : a);
    }
}

T_AVX2 static void chdot_avx2(const float *g, int n, int T, const float *const *src, float *acc, int64_t lda) {
    for (int t = 0; t < T; t++) {
        if (!src[t]) continue;
        const float *sp = src[t];
        float *a = acc + t * lda;
        int j = 0;
        for (; j + 8 <= n; j += 8)
            _mm256_storeu_ps(a + j, _mm256_fmadd_ps(_mm256_loadu_ps(g + j), _mm256_loadu_ps(sp + j), _mm256_loadu_ps(a + j)));
        if (j < n) {
            const __m256i m = mask8(n - j);
            _mm256_maskstore_ps(a + j, m, _mm256_fmadd_ps(_mm256_maskload_ps(g + j, m), _mm256_maskload_ps(sp + j, m),
                                                          _mm256_maskload_ps(a + j, m)));
        }
    }
}

BN_COLS_GRAD(avx2, T_AVX2 inline)
BN_COLS_KERNELS(avx2, T_AVX2)

static const ib_simd_kernels K_AVX2 = {
    "avx2",      gemm_avx2,   tapsum_avx2,   tapmax_avx2, tapdot_avx2,   deint2_avx2,      int2_avx2,
    copy2d_avx2, transpose_avx2, bn_sum_avx2, bn_sumsq_avx2, bn_apply_avx2, bn_bwd_sums_avx2, bn_bwd_dx_avx2,
    chsum_avx2,  chdot_avx2, bn_cols_sum_avx2, bn_cols_sumsq_avx2, bn_cols_apply_avx2, bn_cols_bwd_sums_avx2,
    bn_cols_bwd_dx_avx2,
};

// ---- AVX-512: 16 lanes

T_AVX512 static inline __mmask16 mask16(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : (n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1));
}

T_AVX512 static inline __m512 clamp06_16(__m512 v) {
    return _mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(_mm512_setzero_ps(), v));
}

T_AVX512 static inline __m512 act_16(__m512 x, int act) {
    switch (act) {
    case IB_FUSE_RELU: return _mm512_add_ps(_mm512_max_ps(_mm512_setzero_ps(), x), _mm512_setzero_ps());
    case IB_FUSE_RELU6: return clamp06_16(x);
    case IB_FUSE_HSWISH:
        return _mm512_div_ps(_mm512_mul_ps(x, clamp06_16(_mm512_add_ps(x, _mm512_set1_ps(3.0f)))),
                             _mm512_set1_ps(6.0f));
    default: return x;
    }
}

T_AVX512 static inline __m512 act_g16(__m512 g, __m512 z, int act) {
    __m512 zero = _mm512_setzero_ps();
    switch (act) {
    case IB_FUSE_RELU: return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(z, zero, _CMP_GT_OQ), g);
    case IB_FUSE_RELU6:
        return _mm512_maskz_mov_ps(
            _mm512_cmp_ps_mask(z, zero, _CMP_GT_OQ) & _mm512_cmp_ps_mask(z, _mm512_set1_ps(6.0f), _CMP_LT_OQ), g);
    case IB_FUSE_HSWISH: {
        __m512 t = _mm512_mul_ps(g, _mm512_add_ps(_mm512_div_ps(z, _mm512_set1_ps(3.0f)), _mm512_set1_ps(0.5f)));
        __m512 r = _mm512_mask_mov_ps(g, _mm512_cmp_ps_mask(z, _mm512_set1_ps(3.0f), _CMP_LT_OQ), t);
        return _mm512_maskz_mov_ps(~_mm512_cmp_ps_mask(z, _mm512_set1_ps(-3.0f), _CMP_LT_OQ), r);
    }
    default: return g;
    }
}

T_AVX512 static inline __m512 epi_16(__m512 v, const ib_epi *e) {
    if (e->bn)
        v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, _mm512_set1_ps(e->mf)), _mm512_set1_ps(e->scale)),
                          _mm512_set1_ps(e->shift));
    return act_16(v, e->act);
}

T_AVX512 static inline void store_16(float *d, __m512 v, __mmask16 m, int add, const ib_epi *e) {
    v = epi_16(v, e);
    if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v);
    _mm512_mask_storeu_ps(d, m, v);
}

// Tap-sum tile: R rows x NV vectors of 16 outputs, the last vector partial (masked) when PART; each
// tap's weight broadcast and input pointer serve R * NV FMAs. R, NV, PART are constants at each call.
// (A masked load costs about twice a plain one on recent AMD cores, so full vectors use plain ones.)
__attribute__((always_inline)) T_AVX512 static inline void tapsum_tile_avx512(
    float *dst, int64_t ldd, int T, const float *const *src, int64_t off, int64_t lds, const float *wt, float init,
    const ib_epi *epi, int add, __mmask16 last, const int R, const int NV, const int PART) {
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) a[r][v] = _mm512_set1_ps(init);
    for (int t = 0; t < T; t++) {
        const float *sp = src[t] + off;
        const __m512 w = _mm512_set1_ps(wt[t]);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                const float *q = sp + r * lds + 16 * v;
                __m512 xv = PART && v == NV - 1 ? _mm512_maskz_loadu_ps(last, q) : _mm512_loadu_ps(q);
                a[r][v] = _mm512_fmadd_ps(w, xv, a[r][v]);
            }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            store_16(dst + r * ldd + 16 * v, a[r][v], PART && v == NV - 1 ? last : (__mmask16)0xffff, add, epi);
}

#define TAPSUM_TILE_512(R, NV, PART) \
    tapsum_tile_avx512(dst + r * ldd + o, ldd, T, src, off + r * lds + o, lds, wt, init, epi, add, last, R, NV, PART)

T_AVX512 static void tapsum_avx512(float *dst, int64_t ldd, int rows, int64_t L, int T, const float *const *src,
                                   int64_t off, int64_t lds, const float *wt, float init, const ib_epi *epi, int add) {
    // Narrow rows (up to 32 outputs) in tiles of 4 rows; otherwise row by row in tiles of 64 outputs.
    int r = 0;
    if (L <= 32 && rows >= 4) {
        const int nv = (int)(L + 15) / 16, part = L % 16 != 0;
        const int64_t o = 0;
        const __mmask16 last = mask16(L - 16 * (nv - 1));
        for (; r + 4 <= rows; r += 4) {
            if (nv == 2 && part)
                TAPSUM_TILE_512(4, 2, 1);
            else if (nv == 2)
                TAPSUM_TILE_512(4, 2, 0);
            else if (part)
                TAPSUM_TILE_512(4, 1, 1);
            else
                TAPSUM_TILE_512(4, 1, 0);
        }
    }
    for (; r < rows; r++)
        for (int64_t o = 0; o < L; o += 64) {
            const int64_t rem = L - o;
            const int nv = rem >= 64 ? 4 : (int)(rem + 15) / 16, part = rem < 64 && rem % 16 != 0;
            const __mmask16 last = mask16(rem - 16 * (nv - 1));
            switch (nv * 2 + part) {
            case 8: TAPSUM_TILE_512(1, 4, 0); break;
            case 9: TAPSUM_TILE_512(1, 4, 1); break;
            case 6: TAPSUM_TILE_512(1, 3, 0); break;
            case 7: TAPSUM_TILE_512(1, 3, 1); break;
            case 4: TAPSUM_TILE_512(1, 2, 0); break;
            case 5: TAPSUM_TILE_512(1, 2, 1); break;
            case 2: TAPSUM_TILE_512(1, 1, 0); break;
            default: TAPSUM_TILE_512(1, 1, 1); break;
            }
        }
}

T_AVX512 static void copy2d_2d_avx512(const float *src, int64_t lds, int64_t n, int rows, float *dst, int64_t ldd,
                                      int add) {
    for (int r = 0; r < rows; r++) {
        const float *sr = src + r * lds;
        float *d = dst + r * ldd;
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) {
            __m512 v = _mm512_loadu_ps(sr + j);
            if (add) v = _mm512_add_ps(_mm512_loadu_ps(d + j), v);
            _mm512_storeu_ps(d + j, v);
        }
        if (j < n) {
            __mmask16 m = mask16(n - j);
            __m512 v = _mm512_maskz_loadu_ps(m, sr + j);
            if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + j), v);
            _mm512_mask_storeu_ps(d + j, m, v);
        }
    }
}

// GEMM tile: MR rows x NV vectors of 16 columns, the last one partial (masked) when PART (a masked load
// costs twice a plain one here, so only the row's end pays it).
__attribute__((always_inline)) T_AVX512 static inline void gemm_tile_avx512(
    int K, const float *a, int64_t ars, int64_t acs, const int32_t *koff, const float *x, int64_t ldx, float *y,
    int64_t ldy, const ib_rows_epi *e, int m0, int add, __mmask16 last, const int MR, const int NV, const int PART) {
    __m512 c[6][4];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        __m512 init = _mm512_set1_ps(row_init(e, m0 + r));
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) c[r][v] = init;
    }
    const float *ar = a + m0 * ars;
    for (int k = 0; k < K; k++) {
        const float *xr = x + k * ldx;
        const int64_t ak = koff ? koff[k] : k * acs;
        __m512 xv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            xv[v] = PART && v == NV - 1 ? _mm512_maskz_loadu_ps(last, xr + 16 * v) : _mm512_loadu_ps(xr + 16 * v);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m512 b = _mm512_set1_ps(ar[r * ars + ak]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) c[r][v] = _mm512_fmadd_ps(b, xv[v], c[r][v]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        const ib_epi ep = row_epi(e, m0 + r);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            store_16(y + r * ldy + 16 * v, c[r][v], PART && v == NV - 1 ? last : (__mmask16)0xffff, add, &ep);
    }
}

#define GEMM_TILE_512(MR, NV, PART) \
    gemm_tile_avx512(K, a, ars, acs, koff, x + n0, ldx, y + m * ldy + n0, ldy, e, m, add, last, MR, NV, PART)
#define GEMM_TILES_AVX512(MR)                    \
    do {                                         \
        switch (nv * 2 + part) {                 \
        case 8: GEMM_TILE_512(MR, 4, 0); break;  \
        case 9: GEMM_TILE_512(MR, 4, 1); break;  \
        case 6: GEMM_TILE_512(MR, 3, 0); break;  \
        case 7: GEMM_TILE_512(MR, 3, 1); break;  \
        case 4: GEMM_TILE_512(MR, 2, 0); break;  \
        case 5: GEMM_TILE_512(MR, 2, 1); break;  \
        case 2: GEMM_TILE_512(MR, 1, 0); break;  \
        default: GEMM_TILE_512(MR, 1, 1); break; \
        }                                        \
    } while (0)

T_AVX512 static void gemm_avx512(int M, int N, int K, const float *a, int64_t ars, int64_t acs, const int32_t *koff,
                                 const float *x, int64_t ldx, float *y, int64_t ldy, const ib_rows_epi *e, int add) {
    for (int n0 = 0; n0 < N; n0 += 64) {
        int rem = N - n0, nv = rem >= 64 ? 4 : (rem + 15) / 16, part = rem < 64 && rem % 16 != 0;
        __mmask16 last = mask16(rem - 16 * (nv - 1));
        int m = 0;
        for (; m + 6 <= M; m += 6) GEMM_TILES_AVX512(6);
        for (; m < M; m++) GEMM_TILES_AVX512(1);
    }
}

__attribute__((always_inline)) T_AVX512 static inline void tapdot_group_avx512(const float *g, int64_t L,
                                                                               const float *const *src, double *acc,
                                                                               const int TN) {
    for (int64_t ob = 0; ob < L; ob += DOT_BLOCK) {
        int64_t oe = L - ob < DOT_BLOCK ? L : ob + DOT_BLOCK;
        __m512 a[12];
#pragma GCC unroll 12
        for (int k = 0; k < TN; k++) a[k] = _mm512_setzero_ps();
        int64_t o = ob;
        for (; o + 16 <= oe; o += 16) {
            __m512 gv = _mm512_loadu_ps(g + o);
#pragma GCC unroll 12
            for (int k = 0; k < TN; k++) a[k] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(src[k] + o), a[k]);
        }
        if (o < oe) {
            __mmask16 m = mask16(oe - o);
            __m512 gv = _mm512_maskz_loadu_ps(m, g + o);
#pragma GCC unroll 12
            for (int k = 0; k < TN; k++) a[k] = _mm512_fmadd_ps(gv, _mm512_maskz_loadu_ps(m, src[k] + o), a[k]);
        }
#pragma GCC unroll 12
        for (int k = 0; k < TN; k++) {
            float l[16];
            _mm512_storeu_ps(l, a[k]);
            acc[k] += fold16f(l);
        }
    }
}

T_AVX512 static void tapdot_avx512(const float *g, int64_t L, int T, const float *const *src, double *acc) {
    for (int t = 0; t < T;) {
        int n = T - t;
        // K = 3: one group of 9; K = 5: 12 + 12 + 1; otherwise groups of 12, 9, ...
        switch (n >= 12 ? 12 : n) {
        case 12: tapdot_group_avx512(g, L, src + t, acc + t, 12), t += 12; break;
        case 11: tapdot_group_avx512(g, L, src + t, acc + t, 11), t += 11; break;
        case 10: tapdot_group_avx512(g, L, src + t, acc + t, 10), t += 10; break;
        case 9: tapdot_group_avx512(g, L, src + t, acc + t, 9), t += 9; break;
        case 8: tapdot_group_avx512(g, L, src + t, acc + t, 8), t += 8; break;
        case 7: tapdot_group_avx512(g, L, src + t, acc + t, 7), t += 7; break;
        case 6: tapdot_group_avx512(g, L, src + t, acc + t, 6), t += 6; break;
        case 5: tapdot_group_avx512(g, L, src + t, acc + t, 5), t += 5; break;
        case 4: tapdot_group_avx512(g, L, src + t, acc + t, 4), t += 4; break;
        case 3: tapdot_group_avx512(g, L, src + t, acc + t, 3), t += 3; break;
        case 2: tapdot_group_avx512(g, L, src + t, acc + t, 2), t += 2; break;
        default: tapdot_group_avx512(g, L, src + t, acc + t, 1), t += 1; break;
        }
    }
}

__attribute__((always_inline)) T_AVX512 static inline void deint2_row_avx512(const float *src, int64_t n, float *even,
                                                                             float *odd) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t j = 0; 2 * j < n; j += 16) {
        int64_t r = n - 2 * j;   // source floats left
        __m512 a, b;
        if (r >= 32) {
            a = _mm512_loadu_ps(src + 2 * j);
            b = _mm512_loadu_ps(src + 2 * j + 16);
        } else {
            a = _mm512_maskz_loadu_ps(mask16(r), src + 2 * j);
            b = _mm512_maskz_loadu_ps(mask16(r - 16), src + 2 * j + 16);
        }
        _mm512_mask_storeu_ps(even + j, mask16((r + 1) / 2), _mm512_permutex2var_ps(a, ie, b));
        _mm512_mask_storeu_ps(odd + j, mask16(r / 2), _mm512_permutex2var_ps(a, io, b));
    }
}

T_AVX512 static void deint2_2d_avx512(const float *src, int64_t lds, int64_t n, int rows, float *even, float *odd,
                                      int64_t ldd) {
    for (int r = 0; r < rows; r++) deint2_row_avx512(src + r * lds, n, even + r * ldd, odd + r * ldd);
}

__attribute__((always_inline)) T_AVX512 static inline void int2_row_avx512(const float *even, const float *odd,
                                                                           int64_t n, float *dst, int add) {
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    int64_t j = 0;
    for (; 2 * j + 32 <= n; j += 16) {
        __m512 e = _mm512_loadu_ps(even + j), o = _mm512_loadu_ps(odd + j);
        __m512 d0 = _mm512_permutex2var_ps(e, il, o), d1 = _mm512_permutex2var_ps(e, ih, o);
        if (add) {
            d0 = _mm512_add_ps(_mm512_loadu_ps(dst + 2 * j), d0);
            d1 = _mm512_add_ps(_mm512_loadu_ps(dst + 2 * j + 16), d1);
        }
        _mm512_storeu_ps(dst + 2 * j, d0);
        _mm512_storeu_ps(dst + 2 * j + 16, d1);
    }
    for (; 2 * j < n; j += 16) {
        int64_t r = n - 2 * j;   // destination floats left
        __mmask16 m0 = mask16(r), m1 = mask16(r - 16);
        __m512 e = _mm512_maskz_loadu_ps(mask16((r + 1) / 2), even + j);
        __m512 o = _mm512_maskz_loadu_ps(mask16(r / 2), odd + j);
        __m512 d0 = _mm512_permutex2var_ps(e, il, o), d1 = _mm512_permutex2var_ps(e, ih, o);
        if (add) {
            d0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, dst + 2 * j), d0);
            d1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, dst + 2 * j + 16), d1);
        }
        _mm512_mask_storeu_ps(dst + 2 * j, m0, d0);
        _mm512_mask_storeu_ps(dst + 2 * j + 16, m1, d1);
    }
}

T_AVX512 static void int2_2d_avx512(const float *even, const float *odd, int64_t lds, int64_t n, int rows, float *dst,
                                    int64_t ldd, int add) {
    for (int r = 0; r < rows; r++) int2_row_avx512(even + r * lds, odd + r * lds, n, dst + r * ldd, add);
}

// Batchnorm walks a channel as `outer` runs far apart in memory; short runs (small maps) defeat the
// hardware prefetcher, so the run a few ahead is requested by hand.
#define BN_PREFETCH_AHEAD 4
T_AVX512 static inline void prefetch_run(const float *r, int64_t inner) {
    if (inner > 256) return;
    for (int64_t j = 0; j < inner; j += 16) _mm_prefetch((const char *)(r + j), _MM_HINT_T0);
}

// Batchnorm: 16 double lanes as two 8-lane halves.
T_AVX512 static inline __m512d lo8d(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
T_AVX512 static inline __m512d hi8d(__m512 v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

T_AVX512 static inline double fold2x8_avx512(__m512d a, __m512d b) {
    double l[16];
    _mm512_storeu_pd(l, a);
    _mm512_storeu_pd(l + 8, b);
    return fold16d(l);
}

T_AVX512 static double bn_sum_avx512(const float *p, int outer, int64_t stride, int64_t inner) {
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    for (int o = 0; o < outer; o++) {
        const float *r = p + o * stride;
        if (o + BN_PREFETCH_AHEAD < outer) prefetch_run(r + BN_PREFETCH_AHEAD * stride, inner);
        int64_t i = 0;
        for (; i + 16 <= inner; i += 16) {
            __m512 v = _mm512_loadu_ps(r + i);
            a0 = _mm512_add_pd(a0, lo8d(v));
            a1 = _mm512_add_pd(a1, hi8d(v));
        }
        if (i < inner) {   // masked lanes read 0, and x + 0 = x for these sums (which are never -0)
            __m512 v = _mm512_maskz_loadu_ps(mask16(inner - i), r + i);
            a0 = _mm512_add_pd(a0, lo8d(v));
            a1 = _mm512_add_pd(a1, hi8d(v));
        }
    }
    return fold2x8_avx512(a0, a1);
}

T_AVX512 static double bn_sumsq_avx512(const float *p, int outer, int64_t stride, int64_t inner, double m) {
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    const __m512d vm = _mm512_set1_pd(m);
    for (int o = 0; o < outer; o++) {
        const float *r = p + o * stride;
        int64_t i = 0;
        for (; i + 16 <= inner; i += 16) {
            __m512 v = _mm512_loadu_ps(r + i);
            __m512d d0 = _mm512_sub_pd(lo8d(v), vm), d1 = _mm512_sub_pd(hi8d(v), vm);
            a0 = _mm512_add_pd(a0, _mm512_mul_pd(d0, d0));
            a1 = _mm512_add_pd(a1, _mm512_mul_pd(d1, d1));
        }
        if (i < inner) {
            __mmask16 k = mask16(inner - i);
            __m512 v = _mm512_maskz_loadu_ps(k, r + i);
            __m512d d0 = _mm512_sub_pd(lo8d(v), vm), d1 = _mm512_sub_pd(hi8d(v), vm);
            a0 = _mm512_mask_add_pd(a0, (__mmask8)k, a0, _mm512_mul_pd(d0, d0));
            a1 = _mm512_mask_add_pd(a1, (__mmask8)(k >> 8), a1, _mm512_mul_pd(d1, d1));
        }
    }
    return fold2x8_avx512(a0, a1);
}

T_AVX512 static void bn_apply_avx512(const float *x, float *y, int outer, int64_t stride, int64_t inner,
                                     const ib_epi *epi) {
    for (int o = 0; o < outer; o++) {
        const float *r = x + o * stride;
        float *w = y + o * stride;
        int64_t i = 0;
        for (; i + 16 <= inner; i += 16) _mm512_storeu_ps(w + i, epi_16(_mm512_loadu_ps(r + i), epi));
        if (i < inner) {
            __mmask16 m = mask16(inner - i);
            _mm512_mask_storeu_ps(w + i, m, epi_16(_mm512_maskz_loadu_ps(m, r + i), epi));
        }
    }
}

T_AVX512 static inline __m512 bn_g16(const float *dy, const float *x, __mmask16 m, const ib_epi *e, __m512 *xv) {
    const int full = m == (__mmask16)0xffff;
    __m512 g = full ? _mm512_loadu_ps(dy) : _mm512_maskz_loadu_ps(m, dy);
    *xv = full ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps(m, x);
    if (e->act == IB_FUSE_NONE) return g;
    __m512 z = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(*xv, _mm512_set1_ps(e->mf)), _mm512_set1_ps(e->scale)),
                             _mm512_set1_ps(e->shift));
    g = act_g16(g, z, e->act);
    return full ? g : _mm512_maskz_mov_ps(m, g);
}

T_AVX512 static void bn_bwd_sums_avx512(const float *dy, const float *x, int outer, int64_t stride, int64_t inner,
                                        const ib_epi *epi, double mean, double out[2]) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd(), t0 = _mm512_setzero_pd(), t1 = _mm512_setzero_pd();
    const __m512d vm = _mm512_set1_pd(mean);
    for (int o = 0; o < outer; o++) {
        const float *gr = dy + o * stride, *xr = x + o * stride;
        if (o + BN_PREFETCH_AHEAD < outer) {
            prefetch_run(gr + BN_PREFETCH_AHEAD * stride, inner);
            prefetch_run(xr + BN_PREFETCH_AHEAD * stride, inner);
        }
        for (int64_t i = 0; i < inner; i += 16) {
            __mmask16 k = mask16(inner - i);
            __m512 xv, g = bn_g16(gr + i, xr + i, k, epi, &xv);
            __m512d g0 = lo8d(g), g1 = hi8d(g);
            s0 = _mm512_add_pd(s0, g0);
            s1 = _mm512_add_pd(s1, g1);
            t0 = _mm512_mask_add_pd(t0, (__mmask8)k, t0, _mm512_mul_pd(g0, _mm512_sub_pd(lo8d(xv), vm)));
            t1 = _mm512_mask_add_pd(t1, (__mmask8)(k >> 8), t1, _mm512_mul_pd(g1, _mm512_sub_pd(hi8d(xv), vm)));
        }
    }
    out[0] += fold2x8_avx512(s0, s1);
    out[1] += fold2x8_avx512(t0, t1);
}

T_AVX512 static void bn_bwd_dx_avx512(const float *dy, const float *x, float *dx, int outer, int64_t stride,
                                      int64_t inner, const ib_epi *epi, double mean, double invstd, double k, double a,
                                      double b, int add) {
    const __m512d vm = _mm512_set1_pd(mean), vi = _mm512_set1_pd(invstd), vk = _mm512_set1_pd(k),
                  va = _mm512_set1_pd(a), vb = _mm512_set1_pd(b);
    for (int o = 0; o < outer; o++) {
        const float *gr = dy + o * stride, *xr = x + o * stride;
        float *d = dx + o * stride;
        for (int64_t i = 0; i < inner; i += 16) {
            __mmask16 m = mask16(inner - i);
            __m512 xv, g = bn_g16(gr + i, xr + i, m, epi, &xv);
            __m512d x0 = _mm512_mul_pd(_mm512_sub_pd(lo8d(xv), vm), vi);
            __m512d x1 = _mm512_mul_pd(_mm512_sub_pd(hi8d(xv), vm), vi);
            __m256 r0 =
                _mm512_cvtpd_ps(_mm512_mul_pd(vk, _mm512_sub_pd(_mm512_sub_pd(lo8d(g), va), _mm512_mul_pd(x0, vb))));
            __m256 r1 =
                _mm512_cvtpd_ps(_mm512_mul_pd(vk, _mm512_sub_pd(_mm512_sub_pd(hi8d(g), va), _mm512_mul_pd(x1, vb))));
            __m512 v = _mm512_castpd_ps(
                _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(r0)), _mm256_castps_pd(r1), 1));
            if (m == (__mmask16)0xffff) {
                if (add) v = _mm512_add_ps(_mm512_loadu_ps(d + i), v);
                _mm512_storeu_ps(d + i, v);
            } else {
                if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + i), v);
                _mm512_mask_storeu_ps(d + i, m, v);
            }
        }
    }
}

// Over `imgs` images: image i's rows start at src + i * sis and dst + i * dis.
T_AVX512 static void copy2d_avx512(const float *src, int64_t lds, int64_t n, int rows, float *dst, int64_t ldd, int add,
                                   int imgs, int64_t sis, int64_t dis) {
    for (int i = 0; i < imgs; i++) copy2d_2d_avx512(src + i * sis, lds, n, rows, dst + i * dis, ldd, add);
}
T_AVX512 static void deint2_avx512(const float *src, int64_t lds, int64_t n, int rows, float *even, float *odd,
                                   int64_t ldd, int imgs, int64_t sis, int64_t dis) {
    for (int i = 0; i < imgs; i++) deint2_2d_avx512(src + i * sis, lds, n, rows, even + i * dis, odd + i * dis, ldd);
}
T_AVX512 static void int2_avx512(const float *even, const float *odd, int64_t lds, int64_t n, int rows, float *dst,
                                 int64_t ldd, int add, int imgs, int64_t sis, int64_t dis) {
    for (int i = 0; i < imgs; i++) int2_2d_avx512(even + i * sis, odd + i * sis, lds, n, rows, dst + i * dis, ldd, add);
}

T_AVX512 static inline __m512 epi_c16(__m512 v, const ib_rows_epi *e, int64_t j, __mmask16 m) {
    if (e->mf)
        v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, _mm512_maskz_loadu_ps(m, e->mf + j)),
                                        _mm512_maskz_loadu_ps(m, e->scale + j)),
                          _mm512_maskz_loadu_ps(m, e->shift + j));
    return act_16(v, e->act);
}

T_AVX512 static void chsum_avx512(float *dst, int n, int T, const float *const *src, const float *wt, int64_t ldw,
                                  const ib_rows_epi *e) {
    int j = 0;
    for (; j + 64 <= n; j += 64) {
        __m512 a[4];
        for (int v = 0; v < 4; v++) a[v] = e && e->bias ? _mm512_loadu_ps(e->bias + j + 16 * v) : _mm512_setzero_ps();
        for (int t = 0; t < T; t++) {
            if (!src[t]) continue;
            const float *sp = src[t] + j, *w = wt + t * ldw + j;
            for (int v = 0; v < 4; v++)
                a[v] = _mm512_fmadd_ps(_mm512_loadu_ps(w + 16 * v), _mm512_loadu_ps(sp + 16 * v), a[v]);
        }
        for (int v = 0; v < 4; v++)
            _mm512_storeu_ps(dst + j + 16 * v, e ? epi_c16(a[v], e, j + 16 * v, (__mmask16)0xFFFF) : a[v]);
    }
    for (; j < n; j += 16) {
        const __mmask16 m = mask16(n - j);
        __m512 a = e && e->bias ? _mm512_maskz_loadu_ps(m, e->bias + j) : _mm512_setzero_ps();
        for (int t = 0; t < T; t++)
            if (src[t])
                a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, wt + t * ldw + j), _mm512_maskz_loadu_ps(m, src[t] + j), a);
        _mm512_mask_storeu_ps(dst + j, m, e ? epi_c16(a, e, j, m) : a);
    }
}

T_AVX512 static void chdot_avx512(const float *g, int n, int T, const float *const *src, float *acc, int64_t lda) {
    for (int t = 0; t < T; t++) {
        if (!src[t]) continue;
        const float *sp = src[t];
        float *a = acc + t * lda;
        int j = 0;
        for (; j + 16 <= n; j += 16)
            _mm512_storeu_ps(a + j, _mm512_fmadd_ps(_mm512_loadu_ps(g + j), _mm512_loadu_ps(sp + j), _mm512_loadu_ps(a + j)));
        if (j < n) {
            const __mmask16 m = mask16(n - j);
            _mm512_mask_storeu_ps(a + j, m, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, g + j),
                                                           _mm512_maskz_loadu_ps(m, sp + j),
                                                           _mm512_maskz_loadu_ps(m, a + j)));
        }
    }
}

BN_COLS_GRAD(avx512, T_AVX512 inline)
BN_COLS_KERNELS(avx512, T_AVX512)

static const ib_simd_kernels K_AVX512 = {
    "avx512",      gemm_avx512,   tapsum_avx512,   tapmax_avx2, tapdot_avx512,   deint2_avx512,      int2_avx512,
    copy2d_avx512, transpose_avx2, bn_sum_avx512, bn_sumsq_avx512, bn_apply_avx512, bn_bwd_sums_avx512,
    bn_bwd_dx_avx512, chsum_avx512, chdot_avx512, bn_cols_sum_avx512, bn_cols_sumsq_avx512, bn_cols_apply_avx512,
    bn_cols_bwd_sums_avx512, bn_cols_bwd_dx_avx512,   // the AVX2 tapmax and transpose: max pooling's planes are
                                                    // narrow, and a copy
};
#endif

// ---------------------------------------------------------------------------------------------
// Choice

static const ib_simd_kernels *chosen;

static int cpu_has(ib_simd_level l) {
#ifdef IB_HAVE_X86
    __builtin_cpu_init();
    if (l == IB_SIMD_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (l == IB_SIMD_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return l == IB_SIMD_PORTABLE;
}

static const ib_simd_kernels *kernels_of(ib_simd_level l) {
#ifdef IB_HAVE_X86
    if (l == IB_SIMD_AVX512) return &K_AVX512;
    if (l == IB_SIMD_AVX2) return &K_AVX2;
#endif
    return &K_PORTABLE;
}

static ib_simd_level best_level(void) {
    return cpu_has(IB_SIMD_AVX512) ? IB_SIMD_AVX512 : cpu_has(IB_SIMD_AVX2) ? IB_SIMD_AVX2 : IB_SIMD_PORTABLE;
}

int ib_simd_select(const char *name) {
    ib_simd_level l;
    if (!name || !*name || !strcmp(name, "auto"))
        l = best_level();
    else if (!strcmp(name, "avx512"))
        l = IB_SIMD_AVX512;
    else if (!strcmp(name, "avx2"))
        l = IB_SIMD_AVX2;
    else if (!strcmp(name, "portable"))
        l = IB_SIMD_PORTABLE;
    else
        return 0;
    if (!cpu_has(l)) return 0;
    __atomic_store_n(&chosen, kernels_of(l), __ATOMIC_RELEASE);
    return 1;
}

const ib_simd_kernels *ib_simd(void) {
    const ib_simd_kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (k) return k;
    // First use: IBNAS_SIMD if it names a version this CPU runs, else the best one. Racing threads
    // compute the same answer.
    if (!ib_simd_select(getenv("IBNAS_SIMD"))) ib_simd_select("auto");
    return __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
}

const char *ib_simd_name(void) { return ib_simd()->name; }
