// Batch normalisation over (N, H, W) per channel, with torch.nn.BatchNorm2d's semantics (biased
// variance to normalise, unbiased variance into the running estimate) and its full backward.
// Every per-channel reduction runs on one thread in double, so results do not depend on thread count.
// gamma/beta may be NULL (no affine, as affine=False) and the running stats NULL in training (not tracked).
#include "core.h"

#include <math.h>

// What backward needs: the statistics used to normalise (batch or running), as float like torch.
typedef struct {
    float *mean;
    float *invstd;
    int training;
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

// Per-channel sums in double along one contiguous run. Four accumulators in a fixed pattern break the
// add latency chain; the combination order depends only on n, never on the thread count.
static double sum_run(const float *p, int64_t n) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a0 += p[i];
        a1 += p[i + 1];
        a2 += p[i + 2];
        a3 += p[i + 3];
    }
    for (; i < n; i++) a0 += p[i];
    return (a0 + a1) + (a2 + a3);
}

static double sum_sq_dev_run(const float *p, int64_t n, double m) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        double d0 = p[i] - m, d1 = p[i + 1] - m, d2 = p[i + 2] - m, d3 = p[i + 3] - m;
        a0 += d0 * d0;
        a1 += d1 * d1;
        a2 += d2 * d2;
        a3 += d3 * d3;
    }
    for (; i < n; i++) {
        double d = p[i] - m;
        a0 += d * d;
    }
    return (a0 + a1) + (a2 + a3);
}

// sum(g) and sum(g * (x - m)) along one run.
static void sum_dy_run(const float *g, const float *x, int64_t n, double m, double *sum_g, double *sum_gx) {
    double s0 = 0, s1 = 0, t0 = 0, t1 = 0;
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        s0 += g[i];
        s1 += g[i + 1];
        t0 += (double)g[i] * (x[i] - m);
        t1 += (double)g[i + 1] * (x[i + 1] - m);
    }
    for (; i < n; i++) {
        s0 += g[i];
        t0 += (double)g[i] * (x[i] - m);
    }
    *sum_g += s0 + s1;
    *sum_gx += t0 + t1;
}

static void batchnorm_backward(ib_ctx *ctx, ib_node *node) {
    // x: (N, C, H, W) or (N, C), dy like x -> dx like x, dgamma, dbeta: (C)
    ib_tensor *x = node->in[0], *gamma = node->in[1], *beta = node->in[2];
    const bn_saved *sv = node->saved;
    const float *dy = node->out->grad;
    int outer, channels;
    int64_t inner;
    bn_dims(x, &outer, &channels, &inner);
    const int64_t count = (int64_t)outer * inner;
    float *dx = x->requires_grad ? ib_grad(ctx, x) : NULL;
    float *dgamma = gamma && gamma->requires_grad ? ib_grad(ctx, gamma) : NULL;
    float *dbeta = beta && beta->requires_grad ? ib_grad(ctx, beta) : NULL;
    const float *xd = x->data;

#pragma omp parallel for schedule(static) if (count * channels >= 16384)
    for (int c = 0; c < channels; c++) {
        const double mean = sv->mean[c], invstd = sv->invstd[c];
        double sum_dy = 0, sum_dy_xc = 0;
        for (int o = 0; o < outer; o++) {
            const int64_t base = ((int64_t)o * channels + c) * inner;
            sum_dy_run(dy + base, xd + base, inner, mean, &sum_dy, &sum_dy_xc);
        }
        const double sum_dy_xhat = sum_dy_xc * invstd;
        if (dgamma) dgamma[c] += (float)sum_dy_xhat;
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (!dx) continue;
        const double scale = (gamma ? gamma->data[c] : 1.0) * invstd;
        // Training: the batch statistics depend on x, which subtracts the mean of dy and the
        // projection of dy on xhat; eval: a fixed affine map.
        const double mean_dy = sv->training ? sum_dy / (double)count : 0.0;
        const double mean_dy_xhat = sv->training ? sum_dy_xhat / (double)count : 0.0;
        for (int o = 0; o < outer; o++) {
            const int64_t base = ((int64_t)o * channels + c) * inner;
#pragma omp simd
            for (int64_t i = 0; i < inner; i++) {
                double xhat = (xd[base + i] - mean) * invstd;
                dx[base + i] += (float)(scale * (dy[base + i] - mean_dy - xhat * mean_dy_xhat));
            }
        }
    }
}
static const ib_op op_batchnorm = {"batchnorm", batchnorm_backward};

ib_tensor *ib_batchnorm(ib_ctx *ctx, ib_tensor *x, ib_tensor *gamma, ib_tensor *beta,
                        ib_tensor *running_mean, ib_tensor *running_var,
                        int training, float momentum, float eps) {
    // x: (N, C, H, W) or (N, C), gamma, beta, running_mean, running_var: (C) -> y like x
    IB_ASSERT(ib_is_contiguous(x), "batchnorm: contiguous input");
    int outer, channels;
    int64_t inner;
    bn_dims(x, &outer, &channels, &inner);
    bn_check_vec(gamma, channels, "gamma");
    bn_check_vec(beta, channels, "beta");
    bn_check_vec(running_mean, channels, "running_mean");
    bn_check_vec(running_var, channels, "running_var");
    const int64_t count = (int64_t)outer * inner;
    IB_ASSERT(!training || count > 1, "batchnorm: training needs more than one value per channel, got %lld",
              (long long)count);
    IB_ASSERT(training || (running_mean && running_var), "batchnorm: eval mode needs running statistics");

    ib_tensor *y = ib_tensor_like(ctx, x);
    float *mean = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)channels);
    float *invstd = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)channels);
    const float *xd = x->data;
    float *yd = y->data;

#pragma omp parallel for schedule(static) if (count * channels >= 16384)
    for (int c = 0; c < channels; c++) {
        double m, var;
        if (training) {
            // Two passes (mean, then squared deviations) keep the variance exact when |mean| >> std.
            double s = 0;
            for (int o = 0; o < outer; o++) s += sum_run(xd + ((int64_t)o * channels + c) * inner, inner);
            m = s / (double)count;
            double ss = 0;
            for (int o = 0; o < outer; o++) ss += sum_sq_dev_run(xd + ((int64_t)o * channels + c) * inner, inner, m);
            var = ss / (double)count;
            if (running_mean)
                running_mean->data[c] = (float)((1.0 - momentum) * running_mean->data[c] + (double)momentum * m);
            if (running_var)
                running_var->data[c] = (float)((1.0 - momentum) * running_var->data[c] +
                                               (double)momentum * ss / (double)(count - 1));
        } else {
            m = running_mean->data[c];
            var = running_var->data[c];
        }
        const double is = 1.0 / sqrt(var + (double)eps);
        mean[c] = (float)m;
        invstd[c] = (float)is;
        const double g = gamma ? gamma->data[c] : 1.0, b = beta ? beta->data[c] : 0.0;
        const float scale = (float)(g * is), shift = (float)b, mf = (float)m;
        for (int o = 0; o < outer; o++) {
            const int64_t base = ((int64_t)o * channels + c) * inner;
#pragma omp simd
            for (int64_t i = 0; i < inner; i++) yd[base + i] = (xd[base + i] - mf) * scale + shift;
        }
    }

    ib_node *node = ib_record(ctx, &op_batchnorm, y, 3, (ib_tensor *[]){x, gamma, beta});
    if (node) {
        bn_saved *sv = ib_arena_alloc(ctx->arena, sizeof *sv);
        sv->mean = mean;
        sv->invstd = invstd;
        sv->training = training;
        node->saved = sv;
    }
    return y;
}
