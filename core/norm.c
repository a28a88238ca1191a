// Batch normalisation over (N, H, W) per channel, with torch.nn.BatchNorm2d's semantics (biased
// variance to normalise, unbiased variance into the running estimate) and its full backward, optionally
// followed by an activation in the same pass (ib_batchnorm_act: training's BN + ReLU6 without the
// intermediate tensor; its backward recomputes the pre-activation from x with the forward's own float
// operations, so the activation's mask is exact). The loops are core/simd.h's kernels: per-channel
// sums in 16 double lanes combined in a fixed order, so results do not depend on the thread count or
// the processor. gamma/beta may be NULL (no affine, as affine=False) and the running stats NULL in
// training (not tracked).
#include "core/simd.h"

#include <math.h>

// What backward needs: the statistics used to normalise (batch or running), as float like torch, and
// the forward's float affine (mean, scale, shift) to recompute the activation's input.
// sync: the statistics were every rank's (ctx->sync_bn), so backward sums its two reductions over the
// ranks too; count: the values per channel they were taken over (every rank's).
typedef struct {
    float *mean, *invstd;
    float *mf, *scale, *shift;
    int training, act, sync;
    double count;
} bn_saved;

// Splits x into (outer, C, inner): channel c's elements are x[(o * C + c) * inner + i].
static void bn_dims(const ib_tensor *x, int *outer, int *channels, int64_t *inner) {
    IB_ASSERT(x->ndim == 2 || x->ndim == 4, "batchnorm: x must be (N, C) or (N, C, H, W), got ndim %d", x->ndim);
    *outer = x->shape[0];
    *channels = x->shape[1];
    *inner = x->ndim == 4 ? (int64_t)x->shape[2] * x->shape[3] : 1;
}

static void bn_check_vec(const ib_tensor *v, int c, const char *what) {
    if (!v) return;
    IB_ASSERT(ib_numel(v) == c && ib_is_contiguous(v), "batchnorm: %s must have %d contiguous elements, has %lld",
              what, c, (long long)ib_numel(v));
}

// Below this many elements the per-channel loop runs on one thread.
#define PAR_MIN 16384

int ib__bn_path;

// The columns layout applies: planes of at most 8 floats (2x2, 1x1, and (N, C)), which fill half a vector or
// less; from 9 to 16 floats (4x4) the per-channel kernels measured as fast forward and faster backward
// (docs/BENCH.md, "bench_dw"). ib__bn_path 2 takes the columns up to 16 floats (tests); never when the
// statistics are synchronised over ranks.
static int bn_small(int64_t inner, const double *all) {
    return !all && inner >= 1 && ((ib__bn_path == 0 && inner <= 8) || (ib__bn_path == 2 && inner <= 16));
}

typedef struct {
    const bn_saved *sv;
    const ib_tensor *gamma;
    const float *dy, *x;
    float *dx, *dgamma, *dbeta;
    int outer, add;
    int64_t inner, count, stride;
    double n_all;   // the values per channel the statistics were taken over (every rank's when synchronised)
    double *all;    // synchronised: per channel the two sums over every rank (NULL: this rank's, here)
} bn_bwd_job;

// Synchronised backward, first pass: this rank's two sums per channel into all (and into dgamma, dbeta: the
// gradient allreduce adds the other ranks').
static void bn_backward_sums(void *p, int64_t ch, int worker) {
    const bn_bwd_job *j = p;
    const bn_saved *sv = j->sv;
    const int c = (int)ch;
    const ib_epi epi = {1, sv->mf[c], sv->scale[c], sv->shift[c], sv->act};
    const int64_t base = (int64_t)c * j->inner;
    ib_simd()->bn_bwd_sums(j->dy + base, j->x + base, j->outer, j->stride, j->inner, &epi, sv->mean[c], j->all + 2 * c);
    if (j->dgamma) j->dgamma[c] += (float)(j->all[2 * c + 1] * sv->invstd[c]);
    if (j->dbeta) j->dbeta[c] += (float)j->all[2 * c];
}

// Channel c's gradients of gamma and beta from its two sums (sum dy, sum dy * (x - mean), dy taken through
// the activation), and dx's coefficients k, a, b (bn_bwd_dx's).
static void bn_backward_coefs(const bn_bwd_job *j, int c, const double sums[2], double *k, double *a, double *b) {
    const bn_saved *sv = j->sv;
    const double invstd = sv->invstd[c];
    const double sum_dy = sums[0], sum_dy_xhat = sums[1] * invstd;
    if (j->dgamma && !j->all) j->dgamma[c] += (float)sum_dy_xhat;
    if (j->dbeta && !j->all) j->dbeta[c] += (float)sum_dy;
    *k = (j->gamma ? j->gamma->data[c] : 1.0) * invstd;
    // Training: the batch statistics depend on x, which subtracts the mean of dy and the projection of dy
    // on xhat; eval: a fixed affine map.
    *a = sv->training ? sum_dy / j->n_all : 0.0;
    *b = sv->training ? sum_dy_xhat / j->n_all : 0.0;
}

static void bn_backward_channel(void *p, int64_t ch, int worker) {
    const bn_bwd_job *j = p;
    const bn_saved *sv = j->sv;
    const int c = (int)ch;
    const double mean = sv->mean[c], invstd = sv->invstd[c];
    const ib_epi epi = {1, sv->mf[c], sv->scale[c], sv->shift[c], sv->act};
    const int64_t base = (int64_t)c * j->inner;
    double sums[2] = {0, 0};
    if (j->all) {
        sums[0] = j->all[2 * c], sums[1] = j->all[2 * c + 1];
    } else {
        ib_simd()->bn_bwd_sums(j->dy + base, j->x + base, j->outer, j->stride, j->inner, &epi, mean, sums);
    }
    double k, a, b;
    bn_backward_coefs(j, c, sums, &k, &a, &b);
    if (!j->dx) return;
    ib_simd()->bn_bwd_dx(j->dy + base, j->x + base, j->dx + base, j->outer, j->stride, j->inner, &epi, mean, invstd, k, a,
                         b, j->add);
}

// Small planes, channels [c0, c1) in blocks, as bn_forward_small (bit for bit
// bn_backward_channel's numbers).
static void bn_backward_small(void *p, int64_t c0, int64_t c1, int worker) {
    const bn_bwd_job *j = p;
    const bn_saved *sv = j->sv;
    const int inner = (int)j->inner, per = IB_BN_COLS / inner;
    double s[IB_BN_COLS], t[IB_BN_COLS], mean[IB_BN_COLS], invstd[IB_BN_COLS], k[IB_BN_COLS], a[IB_BN_COLS],
        b[IB_BN_COLS];
    float mf[IB_BN_COLS], sc[IB_BN_COLS], sh[IB_BN_COLS];
    const ib_bn_cols cols = {sv->act, mf, sc, sh, mean, invstd, k, a, b};
    for (int64_t b0 = c0; b0 < c1; b0 += per) {
        const int nc = (int)(c1 - b0 < per ? c1 - b0 : per), n = nc * inner;
        const int64_t off = b0 * inner;
        for (int c = 0; c < nc; c++)
            for (int i = 0, ch = (int)b0 + c; i < inner; i++) {
                const int q = c * inner + i;
                mf[q] = sv->mf[ch], sc[q] = sv->scale[ch], sh[q] = sv->shift[ch];
                mean[q] = sv->mean[ch], invstd[q] = sv->invstd[ch];
            }
        ib_simd()->bn_cols_bwd_sums(j->dy + off, j->x + off, j->outer, j->stride, n, &cols, s, t);
        for (int c = 0; c < nc; c++) {
            const double sums[2] = {ib__bn_fold(s + c * inner, inner), ib__bn_fold(t + c * inner, inner)};
            double kc, ac, bc;
            bn_backward_coefs(j, (int)b0 + c, sums, &kc, &ac, &bc);
            for (int i = 0; i < inner; i++) k[c * inner + i] = kc, a[c * inner + i] = ac, b[c * inner + i] = bc;
        }
        if (j->dx) ib_simd()->bn_cols_bwd_dx(j->dy + off, j->x + off, j->dx + off, j->outer, j->stride, n, &cols, j->add);
    }
}

// The channels on the pool in runs of neighbouring channels (the planes of an image lie side by side, and
// the memory streams); a loop of fewer than PAR_MIN values on the caller.
typedef struct {
    ib_par_fn fn;
    void *job;
} bn_run;

static void bn_channel_run(void *p, int64_t c0, int64_t c1, int worker) {
    const bn_run *r = p;
    for (int64_t c = c0; c < c1; c++) r->fn(r->job, c, worker);
}

static void bn_channels(int channels, int64_t count, ib_par_fn fn, void *job) {
    bn_run r = {fn, job};
    ib_parallel_range(channels, count * channels >= PAR_MIN ? 1 : channels, bn_channel_run, &r);
}

static void bn_backward(ib_ctx *ctx, ib_node *node) {
    // x: (N, C, H, W) or (N, C), dy like x -> dx like x, dgamma, dbeta: (C)
    ib_tensor *x = node->in[0], *gamma = node->in[1], *beta = node->in[2];
    int outer, channels;
    int64_t inner;
    bn_dims(x, &outer, &channels, &inner);
    int add = 1;
    float *dx = x->requires_grad ? ib__grad_to_fill(ctx, x, &add) : NULL;
    const bn_saved *sv = node->saved;
    const int64_t count = (int64_t)outer * inner;
    bn_bwd_job j = {sv, gamma, node->out->grad, x->data, dx,
                    gamma && gamma->requires_grad ? ib_grad(ctx, gamma) : NULL,
                    beta && beta->requires_grad ? ib_grad(ctx, beta) : NULL, outer, add, inner, count,
                    (int64_t)channels * inner, sv->sync ? sv->count : (double)count, NULL};
    // Synchronised: every rank's two sums per channel go into dx, which needs the means of dy and dy * xhat
    // over the whole batch.
    if (sv->training && sv->sync) {
        j.all = ib_arena_calloc(ctx->arena, sizeof(double) * 2 * (size_t)channels);   // bn_bwd_sums adds into it
        bn_channels(channels, count, bn_backward_sums, &j);
        ib_dist_allreduce_f64(j.all, 2 * (int64_t)channels);
    }
    if (bn_small(inner, j.all))
        ib_parallel_range(channels, count * channels >= PAR_MIN ? 1 : channels, bn_backward_small, &j);
    else
        bn_channels(channels, count, bn_backward_channel, &j);
}
static const ib_op op_batchnorm = {"batchnorm", bn_backward};
static const ib_op op_batchnorm_act = {"batchnorm_act", bn_backward};

void ib__bn_eval_affine(const ib_tensor *gamma, const ib_tensor *beta, const ib_tensor *running_mean,
                        const ib_tensor *running_var, float eps, int C, float *mf, float *scale, float *shift) {
    bn_check_vec(gamma, C, "gamma");
    bn_check_vec(beta, C, "beta");
    bn_check_vec(running_mean, C, "running_mean");
    bn_check_vec(running_var, C, "running_var");
    IB_ASSERT(running_mean && running_var, "batchnorm: eval mode needs running statistics");
    for (int c = 0; c < C; c++) {
        // As ib_batchnorm's eval pass, operation for operation.
        const double m = running_mean->data[c], var = running_var->data[c];
        const double is = 1.0 / sqrt(var + (double)eps);
        const double g = gamma ? gamma->data[c] : 1.0, b = beta ? beta->data[c] : 0.0;
        mf[c] = (float)m;
        scale[c] = (float)(g * is);
        shift[c] = (float)b;
    }
}

typedef struct {
    const float *x;
    float *y;
    const ib_tensor *gamma, *beta, *running_mean, *running_var;
    float *mean, *invstd, *mfs, *scales, *shifts;
    int outer, training, act;
    float momentum, eps;
    int64_t inner, count, stride;
    double n_all;   // the values per channel the statistics are taken over (every rank's when synchronised)
    double *all;    // synchronised: per channel the mean, then the squared deviations, over every rank
} bn_fwd_job;

// Synchronised forward: this rank's sum per channel, then (after the means are known) its squared
// deviations, into all.
static void bn_forward_sum(void *p, int64_t ch, int worker) {
    const bn_fwd_job *j = p;
    j->all[ch] = ib_simd()->bn_sum(j->x + ch * j->inner, j->outer, j->stride, j->inner);
}

static void bn_forward_sumsq(void *p, int64_t ch, int worker) {
    const bn_fwd_job *j = p;
    int64_t C = j->stride / (j->inner > 0 ? j->inner : 1);
    j->all[C + ch] = ib_simd()->bn_sumsq(j->x + ch * j->inner, j->outer, j->stride, j->inner, j->all[ch]);
}

// Channel c's statistics from its mean m and squared deviations ss (training) or the running ones: the
// running estimates updated, and what normalising and backward use.
static void bn_forward_stats(const bn_fwd_job *j, int c, double m, double ss) {
    double var;
    if (j->training) {
        var = ss / j->n_all;
        if (j->running_mean)
            j->running_mean->data[c] =
                (float)((1.0 - j->momentum) * j->running_mean->data[c] + (double)j->momentum * m);
        if (j->running_var)
            j->running_var->data[c] = (float)((1.0 - j->momentum) * j->running_var->data[c] +
                                              (double)j->momentum * ss / (j->n_all - 1));
    } else {
        m = j->running_mean->data[c];
        var = j->running_var->data[c];
    }
    const double is = 1.0 / sqrt(var + (double)j->eps);
    j->mean[c] = (float)m;
    j->invstd[c] = (float)is;
    const double g = j->gamma ? j->gamma->data[c] : 1.0, b = j->beta ? j->beta->data[c] : 0.0;
    j->mfs[c] = (float)m;
    j->scales[c] = (float)(g * is);
    j->shifts[c] = (float)b;
}

static void bn_forward_channel(void *p, int64_t ch, int worker) {
    const bn_fwd_job *j = p;
    const ib_simd_kernels *k = ib_simd();
    const int c = (int)ch;
    const int64_t base = (int64_t)c * j->inner;
    double m = 0, ss = 0;
    if (j->training) {
        // Two passes (mean, then squared deviations) keep the variance exact when |mean| >> std.
        int64_t C = j->stride / (j->inner > 0 ? j->inner : 1);
        m = j->all ? j->all[c] : k->bn_sum(j->x + base, j->outer, j->stride, j->inner) / j->n_all;
        ss = j->all ? j->all[C + c] : k->bn_sumsq(j->x + base, j->outer, j->stride, j->inner, m);
    }
    bn_forward_stats(j, c, m, ss);
    const ib_epi epi = {1, j->mfs[c], j->scales[c], j->shifts[c], j->act};
    k->bn_apply(j->x + base, j->y + base, j->outer, j->stride, j->inner, &epi);
}

// Small planes (bn_small), the channels [c0, c1) in blocks of whole channels: the
// planes of neighbouring channels lie side by side, so a block of an image is one run of floats and the
// kernels stream columns across channels, where the per-channel loop would call its kernels for runs of
// 1 to 16 floats. The same numbers as bn_forward_channel's, bit for bit (core/simd.c). A block's images
// stay in the cache through its three passes.
static void bn_forward_small(void *p, int64_t c0, int64_t c1, int worker) {
    const bn_fwd_job *j = p;
    const int inner = (int)j->inner, per = IB_BN_COLS / inner;
    double acc[IB_BN_COLS], m[IB_BN_COLS];
    float mf[IB_BN_COLS], sc[IB_BN_COLS], sh[IB_BN_COLS];
    const ib_bn_cols cols = {j->act, mf, sc, sh, NULL, NULL, NULL, NULL, NULL};
    for (int64_t b0 = c0; b0 < c1; b0 += per) {
        const int nc = (int)(c1 - b0 < per ? c1 - b0 : per), n = nc * inner;
        const float *x = j->x + b0 * inner;
        if (j->training) {
            ib_simd()->bn_cols_sum(x, j->outer, j->stride, n, acc);
            for (int c = 0; c < nc; c++) {
                const double mc = ib__bn_fold(acc + c * inner, inner) / j->n_all;
                for (int i = 0; i < inner; i++) m[c * inner + i] = mc;
            }
            ib_simd()->bn_cols_sumsq(x, j->outer, j->stride, n, m, acc);
        }
        for (int c = 0; c < nc; c++) {
            const int ch = (int)b0 + c;
            bn_forward_stats(j, ch, j->training ? m[c * inner] : 0, j->training ? ib__bn_fold(acc + c * inner, inner) : 0);
            for (int i = 0; i < inner; i++)
                mf[c * inner + i] = j->mfs[ch], sc[c * inner + i] = j->scales[ch], sh[c * inner + i] = j->shifts[ch];
        }
        ib_simd()->bn_cols_apply(x, j->y + b0 * inner, j->outer, j->stride, n, &cols);
    }
}


ib_tensor *ib_batchnorm_act(ib_ctx *ctx, ib_tensor *x, ib_tensor *gamma, ib_tensor *beta, ib_tensor *running_mean,
                            ib_tensor *running_var, int training, float momentum, float eps, ib_fuse_act act) {
    // x: (N, C, H, W) or (N, C), gamma, beta, running_mean, running_var: (C) -> y like x
    IB_ASSERT(ib_is_contiguous(x), "batchnorm: contiguous input");
    IB_ASSERT(act >= IB_FUSE_NONE && act <= IB_FUSE_HSWISH, "batchnorm: unknown activation %d", (int)act);
    int outer, channels;
    int64_t inner;
    bn_dims(x, &outer, &channels, &inner);
    bn_check_vec(gamma, channels, "gamma");
    bn_check_vec(beta, channels, "beta");
    bn_check_vec(running_mean, channels, "running_mean");
    bn_check_vec(running_var, channels, "running_var");
    const int64_t count = (int64_t)outer * inner, stride = (int64_t)channels * inner;
    IB_ASSERT(!training || count > 1, "batchnorm: training needs more than one value per channel, got %lld",
              (long long)count);
    IB_ASSERT(training || (running_mean && running_var), "batchnorm: eval mode needs running statistics");

    ib_tensor *y = ib_tensor_like(ctx, x);
    float *stats = ib_arena_alloc(ctx->arena, sizeof(float) * 5 * (size_t)channels);
    float *mean = stats, *invstd = stats + channels, *mfs = stats + 2 * channels, *scales = stats + 3 * channels,
          *shifts = stats + 4 * channels;
    bn_fwd_job j = {x->data, y->data, gamma, beta, running_mean, running_var, mean, invstd, mfs, scales, shifts,
                    outer, training, act, momentum, eps, inner, count, stride, (double)count, NULL};
    // Synchronised (training under ctx->sync_bn): the same two passes, each channel's sums added over the
    // ranks (with the counts) before they are used, so every rank normalises by the whole batch's statistics.
    const int sync = training && ctx->sync_bn && ib_dist_size() > 1;
    if (sync) {
        j.all = ib_arena_alloc(ctx->arena, sizeof(double) * (2 * (size_t)channels + 1));
        bn_channels(channels, count, bn_forward_sum, &j);
        j.all[channels] = (double)count;
        ib_dist_allreduce_f64(j.all, channels + 1);
        j.n_all = j.all[channels];
        for (int c = 0; c < channels; c++) j.all[c] /= j.n_all;
        bn_channels(channels, count, bn_forward_sumsq, &j);
        ib_dist_allreduce_f64(j.all + channels, channels);
    }
    if (bn_small(inner, j.all))
        ib_parallel_range(channels, count * channels >= PAR_MIN ? 1 : channels, bn_forward_small, &j);
    else
        bn_channels(channels, count, bn_forward_channel, &j);

    ib_node *node = ib_record(ctx, act == IB_FUSE_NONE ? &op_batchnorm : &op_batchnorm_act, y, 3,
                              (ib_tensor *[]){x, gamma, beta});
    if (node) {
        bn_saved *sv = ib_arena_alloc(ctx->arena, sizeof *sv);
        *sv = (bn_saved){mean, invstd, mfs, scales, shifts, training, act, sync, j.n_all};
        node->saved = sv;
    }
    return y;
}

ib_tensor *ib_batchnorm(ib_ctx *ctx, ib_tensor *x, ib_tensor *gamma, ib_tensor *beta, ib_tensor *running_mean,
                        ib_tensor *running_var, int training, float momentum, float eps) {
    return ib_batchnorm_act(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps, IB_FUSE_NONE);
}
