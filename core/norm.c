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

static void bn_backward(ib_ctx *ctx, ib_node *node) {
    // x: (N, C, H, W) or (N, C), dy like x -> dx like x, dgamma, dbeta: (C)
    ib_tensor *x = node->in[0], *gamma = node->in[1], *beta = node->in[2];
    const bn_saved *sv = node->saved;
    const ib_simd_kernels *k = ib_simd();
    const float *dy = node->out->grad;
    int outer, channels;
    int64_t inner;
    bn_dims(x, &outer, &channels, &inner);
    const int64_t count = (int64_t)outer * inner, stride = (int64_t)channels * inner;
    int add = 1;
    float *dx = x->requires_grad ? ib__grad_to_fill(ctx, x, &add) : NULL;
    float *dgamma = gamma && gamma->requires_grad ? ib_grad(ctx, gamma) : NULL;
    float *dbeta = beta && beta->requires_grad ? ib_grad(ctx, beta) : NULL;
    const float *xd = x->data;
    const double n_all = sv->sync ? sv->count : (double)count;
    // Synchronised: this rank's two sums per channel into dgamma and dbeta (the gradient allreduce adds the
    // other ranks'), every rank's into dx, which needs the means of dy and dy * xhat over the whole batch.
    double *all = NULL;
    if (sv->training && sv->sync) {
        all = ib_arena_calloc(ctx->arena, sizeof(double) * 2 * (size_t)channels);   // bn_bwd_sums adds into it
#pragma omp parallel for schedule(static) if (count * channels >= PAR_MIN)
        for (int c = 0; c < channels; c++) {
            const ib_epi epi = {1, sv->mf[c], sv->scale[c], sv->shift[c], sv->act};
            const int64_t base = (int64_t)c * inner;
            k->bn_bwd_sums(dy + base, xd + base, outer, stride, inner, &epi, sv->mean[c], all + 2 * c);
            if (dgamma) dgamma[c] += (float)(all[2 * c + 1] * sv->invstd[c]);
            if (dbeta) dbeta[c] += (float)all[2 * c];
        }
        ib_dist_allreduce_f64(all, 2 * (int64_t)channels);
    }

#pragma omp parallel for schedule(static) if (count * channels >= PAR_MIN)
    for (int c = 0; c < channels; c++) {
        const double mean = sv->mean[c], invstd = sv->invstd[c];
        const ib_epi epi = {1, sv->mf[c], sv->scale[c], sv->shift[c], sv->act};
        const int64_t base = (int64_t)c * inner;
        double sums[2] = {0, 0};   // sum dy, sum dy * (x - mean), dy taken through the activation
        if (all) sums[0] = all[2 * c], sums[1] = all[2 * c + 1];
        else k->bn_bwd_sums(dy + base, xd + base, outer, stride, inner, &epi, mean, sums);
        const double sum_dy = sums[0], sum_dy_xhat = sums[1] * invstd;
        if (dgamma && !all) dgamma[c] += (float)sum_dy_xhat;
        if (dbeta && !all) dbeta[c] += (float)sum_dy;
        if (!dx) continue;
        const double scale = (gamma ? gamma->data[c] : 1.0) * invstd;
        // Training: the batch statistics depend on x, which subtracts the mean of dy and the
        // projection of dy on xhat; eval: a fixed affine map.
        const double mean_dy = sv->training ? sum_dy / n_all : 0.0;
        const double mean_dy_xhat = sv->training ? sum_dy_xhat / n_all : 0.0;
        k->bn_bwd_dx(dy + base, xd + base, dx + base, outer, stride, inner, &epi, mean, invstd, scale, mean_dy,
                     mean_dy_xhat, add);
    }
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

    const ib_simd_kernels *k = ib_simd();
    ib_tensor *y = ib_tensor_like(ctx, x);
    float *stats = ib_arena_alloc(ctx->arena, sizeof(float) * 5 * (size_t)channels);
    float *mean = stats, *invstd = stats + channels, *mfs = stats + 2 * channels, *scales = stats + 3 * channels,
          *shifts = stats + 4 * channels;
    const float *xd = x->data;
    float *yd = y->data;
    // Synchronised (training under ctx->sync_bn): the same two passes, each channel's sums added over the
    // ranks (with the counts) before they are used, so every rank normalises by the whole batch's statistics.
    int sync = training && ctx->sync_bn && ib_dist_size() > 1;
    double n_all = (double)count, *all = NULL;   // sync: per channel the mean, then the squared deviations
    if (sync) {
        all = ib_arena_alloc(ctx->arena, sizeof(double) * (2 * (size_t)channels + 1));
#pragma omp parallel for schedule(static) if (count * channels >= PAR_MIN)
        for (int c = 0; c < channels; c++) all[c] = k->bn_sum(xd + (int64_t)c * inner, outer, stride, inner);
        all[channels] = (double)count;
        ib_dist_allreduce_f64(all, channels + 1);
        n_all = all[channels];
        for (int c = 0; c < channels; c++) all[c] /= n_all;
#pragma omp parallel for schedule(static) if (count * channels >= PAR_MIN)
        for (int c = 0; c < channels; c++)
            all[channels + c] = k->bn_sumsq(xd + (int64_t)c * inner, outer, stride, inner, all[c]);
        ib_dist_allreduce_f64(all + channels, channels);
    }

#pragma omp parallel for schedule(static) if (count * channels >= PAR_MIN)
    for (int c = 0; c < channels; c++) {
        const int64_t base = (int64_t)c * inner;
        double m, var;
        if (training) {
            // Two passes (mean, then squared deviations) keep the variance exact when |mean| >> std.
            m = all ? all[c] : k->bn_sum(xd + base, outer, stride, inner) / n_all;
            double ss = all ? all[channels + c] : k->bn_sumsq(xd + base, outer, stride, inner, m);
            var = ss / n_all;
            if (running_mean)
                running_mean->data[c] = (float)((1.0 - momentum) * running_mean->data[c] + (double)momentum * m);
            if (running_var)
                running_var->data[c] = (float)((1.0 - momentum) * running_var->data[c] +
                                               (double)momentum * ss / (n_all - 1));
        } else {
            m = running_mean->data[c];
            var = running_var->data[c];
        }
        const double is = 1.0 / sqrt(var + (double)eps);
        mean[c] = (float)m;
        invstd[c] = (float)is;
        const double g = gamma ? gamma->data[c] : 1.0, b = beta ? beta->data[c] : 0.0;
        mfs[c] = (float)m;
        scales[c] = (float)(g * is);
        shifts[c] = (float)b;
        const ib_epi epi = {1, mfs[c], scales[c], shifts[c], act};
        k->bn_apply(xd + base, yd + base, outer, stride, inner, &epi);
    }

    ib_node *node = ib_record(ctx, act == IB_FUSE_NONE ? &op_batchnorm : &op_batchnorm_act, y, 3,
                              (ib_tensor *[]){x, gamma, beta});
    if (node) {
        bn_saved *sv = ib_arena_alloc(ctx->arena, sizeof *sv);
        *sv = (bn_saved){mean, invstd, mfs, scales, shifts, training, act, sync, n_all};
        node->saved = sv;
    }
    return y;
}

ib_tensor *ib_batchnorm(ib_ctx *ctx, ib_tensor *x, ib_tensor *gamma, ib_tensor *beta, ib_tensor *running_mean,
                        ib_tensor *running_var, int training, float momentum, float eps) {
    return ib_batchnorm_act(ctx, x, gamma, beta, running_mean, running_var, training, momentum, eps, IB_FUSE_NONE);
}
