// Pooling, resize and loss ops (core/pool.c, core/resize.c, core/loss.c): gradient checks at odd
// sizes, parity with PyTorch 1.13 (tests/ref/ops_pool_loss.py), tie and padding rules, the
// all-ignored cross-entropy, inference mode and independence from the thread count.
#include "tests/test.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef enum {
    OP_GAP,
    OP_AVG,
    OP_MAX,
    OP_BILINEAR,
    OP_NEAREST,
    OP_CE,
    OP_KL,
    OP_SL1,
} op_kind;

typedef struct {
    op_kind op;
    int k, stride, pad;      // pooling
    int ho, wo;              // resize
    float eps;               // cross-entropy label smoothing
    int ignore_index;
    const int32_t *targets;
    float beta;              // smooth-L1
    ib_reduce red;
} op_args;

static ib_tensor *run_op(ib_ctx *ctx, ib_tensor **in, void *user) {
    const op_args *a = user;
    switch (a->op) {
    case OP_GAP: return ib_global_avg_pool(ctx, in[0]);
    case OP_AVG: return ib_avg_pool(ctx, in[0], a->k, a->stride, a->pad);
    case OP_MAX: return ib_max_pool(ctx, in[0], a->k, a->stride, a->pad);
    case OP_BILINEAR: return ib_resize_bilinear(ctx, in[0], a->ho, a->wo);
    case OP_NEAREST: return ib_resize_nearest(ctx, in[0], a->ho, a->wo);
    case OP_CE: return ib_cross_entropy(ctx, in[0], a->targets, a->eps, a->ignore_index);
    case OP_KL: return ib_kl_div_softmax(ctx, in[0], in[1]);
    case OP_SL1: return ib_smooth_l1(ctx, in[0], in[1], a->beta, a->red);
    }
    return NULL;
}

// A random permutation of a grid with spacing 0.05: distinct values, further apart than the
// gradcheck step, so no max-pool window changes its winner under a perturbation.
static void fill_distinct(ib_tensor *t, uint64_t seed) {
    int64_t n = ib_numel(t);
    int *perm = malloc(sizeof(int) * (size_t)n);
    for (int64_t i = 0; i < n; i++) perm[i] = (int)i;
    ib_rng r;
    ib_rng_seed(&r, seed, 3);
    ib_rng_shuffle(&r, perm, (int)n);
    for (int64_t i = 0; i < n; i++) t->data[i] = 0.05f * (float)perm[i] - 0.025f * (float)n;
    free(perm);
}

// ---------------------------------------------------------------------------------------------
// Gradient checks

static int check_grads(op_args *a, int n_in, ib_tensor **in, const int *which, char *msg, size_t n) {
    gc_opts o = {0};
    return gradcheck(run_op, a, n_in, in, which, o, msg, n);
}

TEST(gradcheck_pooling) {
    ib_ctx *ctx = ib_ctx_new();
    char msg[512];
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, 9, 7});
    fill_normal(x, 1, 1);
    op_args gap = {.op = OP_GAP};
    CHECK(check_grads(&gap, 1, &x, (int[]){1}, msg, sizeof msg), "global_avg_pool: %s", msg);
    int cfg[][3] = {{3, 2, 1}, {2, 2, 0}, {3, 1, 1}, {5, 2, 2}};
    for (int i = 0; i < 4; i++) {
        op_args avg = {.op = OP_AVG, .k = cfg[i][0], .stride = cfg[i][1], .pad = cfg[i][2]};
        CHECK(check_grads(&avg, 1, &x, (int[]){1}, msg, sizeof msg), "avg_pool k%d s%d p%d: %s", cfg[i][0],
              cfg[i][1], cfg[i][2], msg);
    }
    fill_distinct(x, 2);
    for (int i = 0; i < 4; i++) {
        op_args mx = {.op = OP_MAX, .k = cfg[i][0], .stride = cfg[i][1], .pad = cfg[i][2]};
        CHECK(check_grads(&mx, 1, &x, (int[]){1}, msg, sizeof msg), "max_pool k%d s%d p%d: %s", cfg[i][0],
              cfg[i][1], cfg[i][2], msg);
    }
    ib_ctx_free(ctx);
}

TEST(gradcheck_resize) {
    ib_ctx *ctx = ib_ctx_new();
    char msg[512];
    // Up, down, mixed (non-integer ratios everywhere), and down to a single pixel.
    int cfg[][4] = {{5, 7, 11, 13}, {13, 11, 5, 4}, {7, 9, 10, 4}, {3, 4, 1, 1}};
    for (int i = 0; i < 4; i++) {
        ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, cfg[i][0], cfg[i][1]});
        fill_normal(x, 10 + (uint64_t)i, 1);
        op_args bl = {.op = OP_BILINEAR, .ho = cfg[i][2], .wo = cfg[i][3]};
        CHECK(check_grads(&bl, 1, &x, (int[]){1}, msg, sizeof msg), "bilinear %dx%d -> %dx%d: %s", cfg[i][0],
              cfg[i][1], cfg[i][2], cfg[i][3], msg);
        op_args nn = {.op = OP_NEAREST, .ho = cfg[i][2], .wo = cfg[i][3]};
        CHECK(check_grads(&nn, 1, &x, (int[]){1}, msg, sizeof msg), "nearest %dx%d -> %dx%d: %s", cfg[i][0],
              cfg[i][1], cfg[i][2], cfg[i][3], msg);
    }
    ib_ctx_free(ctx);
}

TEST(gradcheck_cross_entropy) {
    ib_ctx *ctx = ib_ctx_new();
    char msg[512];
    ib_tensor *x2 = ib_tensor_new(ctx, 2, (int[]){7, 5});
    fill_normal(x2, 20, 2);
    int32_t t2[7] = {0, 4, -1, 2, 3, -1, 1};
    for (int e = 0; e < 2; e++) {
        op_args a = {.op = OP_CE, .eps = e ? 0.1f : 0.0f, .ignore_index = -1, .targets = t2};
        CHECK(check_grads(&a, 1, &x2, (int[]){1}, msg, sizeof msg), "CE (N, C) eps %g: %s", (double)a.eps, msg);
    }
    ib_tensor *x4 = ib_tensor_new(ctx, 4, (int[]){2, 5, 3, 3});
    fill_normal(x4, 21, 2);
    int32_t t4[18];
    ib_rng r;
    ib_rng_seed(&r, 22, 0);
    for (int i = 0; i < 18; i++) t4[i] = (int32_t)ib_rng_below(&r, 5);
    t4[3] = t4[11] = t4[17] = 255;
    op_args a4 = {.op = OP_CE, .eps = 0.2f, .ignore_index = 255, .targets = t4};
    CHECK(check_grads(&a4, 1, &x4, (int[]){1}, msg, sizeof msg), "CE (N, C, H, W): %s", msg);
    ib_ctx_free(ctx);
}

TEST(gradcheck_kl_and_smooth_l1) {
    ib_ctx *ctx = ib_ctx_new();
    char msg[512];
    ib_tensor *kl[2] = {ib_tensor_new(ctx, 2, (int[]){5, 7}), ib_tensor_new(ctx, 2, (int[]){5, 7})};
    fill_normal(kl[0], 30, 2);
    fill_normal(kl[1], 31, 2);
    op_args a = {.op = OP_KL};
    CHECK(check_grads(&a, 2, kl, (int[]){1, 1}, msg, sizeof msg), "KL both inputs: %s", msg);
    CHECK(check_grads(&a, 2, kl, (int[]){1, 0}, msg, sizeof msg), "KL student only: %s", msg);

    // Differences on both sides of beta = 0.5, at least 0.05 from |d| = beta (the step is 0.01).
    ib_tensor *sl[2] = {ib_tensor_new(ctx, 3, (int[]){3, 5, 3}), ib_tensor_new(ctx, 3, (int[]){3, 5, 3})};
    fill_normal(sl[1], 32, 1);
    static const float d[] = {-1.7f, -0.8f, -0.45f, -0.2f, -0.05f, 0.1f, 0.3f, 0.44f, 0.6f, 1.2f, 2.5f};
    for (int i = 0; i < 45; i++) sl[0]->data[i] = sl[1]->data[i] + d[i % 11];
    for (int red = 0; red < 2; red++) {
        op_args s = {.op = OP_SL1, .beta = 0.5f, .red = red ? IB_REDUCE_SUM : IB_REDUCE_MEAN};
        CHECK(check_grads(&s, 2, sl, (int[]){1, 1}, msg, sizeof msg), "smooth-L1 %s: %s", red ? "sum" : "mean", msg);
    }
    ib_ctx_free(ctx);
}

// ---------------------------------------------------------------------------------------------
// PyTorch parity

static ib_h5 *open_ref(void) {
    ib_h5 *f = NULL;
    if (ib_h5_open(&f, ref_path("ops_pool_loss.h5")) != IB_OK) return NULL;
    return f;
}

// Runs one reference case: reads its inputs (those with a stored gradient require grad), compares the
// output, runs backward with the stored upstream gradient and compares every input gradient.
static int ref_case(ib_h5 *f, const char *name, op_args *a, int n_in, char *msg, size_t n) {
    ib_ctx *ctx = ib_ctx_new();
    char path[256];
    int ok = 0;
    ib_tensor *in[IB_MAX_INPUTS];
    int want_grad[IB_MAX_INPUTS];
    for (int i = 0; i < n_in; i++) {
        snprintf(path, sizeof path, "%s/x%d", name, i);
        if (ib_h5_read(f, path, ctx, &in[i]) != IB_OK) {
            snprintf(msg, n, "%s", ib_errmsg());
            goto done;
        }
        snprintf(path, sizeof path, "%s/g%d", name, i);
        want_grad[i] = ib_h5_exists(f, path);
        in[i]->requires_grad = want_grad[i];
    }
    ib_tensor *out = run_op(ctx, in, a);
    snprintf(path, sizeof path, "%s/out", name);
    if (!ref_compare(f, path, out, 1e-5, msg, n)) goto done;
    ib_tensor *gout;
    snprintf(path, sizeof path, "%s/gout", name);
    if (ib_h5_read(f, path, ctx, &gout) != IB_OK || ib_numel(gout) != ib_numel(out)) {
        snprintf(msg, n, "%s: bad gout (%s)", name, ib_errmsg());
        goto done;
    }
    ib_backward(ctx, out, gout->data);
    for (int i = 0; i < n_in; i++) {
        if (!want_grad[i]) continue;
        if (!in[i]->grad) {
            snprintf(msg, n, "%s: input %d received no gradient", name, i);
            goto done;
        }
        ib_tensor g;
        ib_tensor_init(&g, in[i]->grad, in[i]->ndim, in[i]->shape);
        snprintf(path, sizeof path, "%s/g%d", name, i);
        if (!ref_compare(f, path, &g, 1e-5, msg, n)) goto done;
    }
    ok = 1;
done:
    ib_ctx_free(ctx);
    return ok;
}

static int64_t attr_int(ib_h5 *f, const char *obj, const char *attr) {
    int64_t v = 0;
    IB_ASSERT(ib_h5_attr_i64(f, obj, attr, &v) == IB_OK, "%s", ib_errmsg());
    return v;
}

static double attr_f64(ib_h5 *f, const char *obj, const char *attr) {
    double v = 0;
    IB_ASSERT(ib_h5_attr_f64(f, obj, attr, &v) == IB_OK, "%s", ib_errmsg());
    return v;
}

TEST(parity_pooling) {
    ib_h5 *f = open_ref();
    CHECK(f, "cannot open the reference: %s", ib_errmsg());
    char msg[512], name[64];
    op_args gap = {.op = OP_GAP};
    CHECK(ref_case(f, "global_avg_pool", &gap, 1, msg, sizeof msg), "%s", msg);
    int cfg[][3] = {{3, 2, 1}, {2, 2, 0}, {3, 1, 1}};
    for (int i = 0; i < 3; i++) {
        for (int m = 0; m < 2; m++) {
            snprintf(name, sizeof name, "%s_pool_k%ds%dp%d", m ? "max" : "avg", cfg[i][0], cfg[i][1], cfg[i][2]);
            op_args a = {.op = m ? OP_MAX : OP_AVG, .k = (int)attr_int(f, name, "k"),
                         .stride = (int)attr_int(f, name, "stride"), .pad = (int)attr_int(f, name, "pad")};
            CHECK(ref_case(f, name, &a, 1, msg, sizeof msg), "%s", msg);
        }
    }
    ib_h5_close(f);
}

TEST(parity_resize) {
    ib_h5 *f = open_ref();
    CHECK(f, "cannot open the reference: %s", ib_errmsg());
    char msg[512], name[64];
    int cfg[][4] = {{5, 7, 11, 13}, {13, 11, 5, 4}, {7, 9, 10, 4}, {6, 5, 6, 5}, {5, 7, 10, 14}, {3, 4, 1, 1}};
    for (int i = 0; i < 6; i++) {
        for (int m = 0; m < 2; m++) {
            snprintf(name, sizeof name, "resize_%s_%dx%d_to_%dx%d", m ? "nearest" : "bilinear", cfg[i][0], cfg[i][1],
                     cfg[i][2], cfg[i][3]);
            op_args a = {.op = m ? OP_NEAREST : OP_BILINEAR, .ho = (int)attr_int(f, name, "ho"),
                         .wo = (int)attr_int(f, name, "wo")};
            CHECK(ref_case(f, name, &a, 1, msg, sizeof msg), "%s", msg);
        }
    }
    ib_h5_close(f);
}

TEST(parity_cross_entropy) {
    ib_h5 *f = open_ref();
    CHECK(f, "cannot open the reference: %s", ib_errmsg());
    char msg[512], path[96];
    const char *names[] = {"ce_2d_eps0.0", "ce_2d_eps0.1", "ce_4d_eps0.0", "ce_4d_eps0.2"};
    for (int i = 0; i < 4; i++) {
        int32_t targets[64];
        int nd;
        int64_t shape[8];
        snprintf(path, sizeof path, "%s/targets", names[i]);
        CHECK(ib_h5_shape(f, path, &nd, shape) == IB_OK && nd == 1 && shape[0] <= 64, "%s: %s", path, ib_errmsg());
        CHECK(ib_h5_read_i32(f, path, targets, shape[0]) == IB_OK, "%s", ib_errmsg());
        op_args a = {.op = OP_CE, .eps = (float)attr_f64(f, names[i], "eps"),
                     .ignore_index = (int)attr_int(f, names[i], "ignore_index"), .targets = targets};
        int ignored = 0;
        for (int j = 0; j < shape[0]; j++) ignored += targets[j] == a.ignore_index;
        CHECK(ignored >= 2, "%s: the reference should ignore some targets (%d)", names[i], ignored);
        CHECK(ref_case(f, names[i], &a, 1, msg, sizeof msg), "%s", msg);
    }
    ib_h5_close(f);
}

TEST(parity_kl_and_smooth_l1) {
    ib_h5 *f = open_ref();
    CHECK(f, "cannot open the reference: %s", ib_errmsg());
    char msg[512];
    op_args kl = {.op = OP_KL};
    CHECK(ref_case(f, "kl_div_softmax", &kl, 2, msg, sizeof msg), "%s", msg);
    op_args mean = {.op = OP_SL1, .beta = (float)attr_f64(f, "smooth_l1_mean", "beta"), .red = IB_REDUCE_MEAN};
    CHECK(ref_case(f, "smooth_l1_mean", &mean, 2, msg, sizeof msg), "%s", msg);
    op_args sum = {.op = OP_SL1, .beta = (float)attr_f64(f, "smooth_l1_sum", "beta"), .red = IB_REDUCE_SUM};
    CHECK(ref_case(f, "smooth_l1_sum", &sum, 2, msg, sizeof msg), "%s", msg);
    ib_h5_close(f);
}

// ---------------------------------------------------------------------------------------------
// Rules PyTorch follows that random inputs rarely exercise

TEST(max_pool_ties_and_padding) {
    ib_ctx *ctx = ib_ctx_new();
    // One plane, 3x3, all equal but a later copy of the maximum: the first in scan order wins.
    float xd[9] = {1, 5, 2, 5, 0, 5, 3, 1, 5};
    ib_tensor x;
    ib_tensor_init(&x, xd, 4, (int[]){1, 1, 3, 3});
    float xg[9] = {0};
    x.grad = xg;
    x.requires_grad = 1;
    ib_tensor *y = ib_max_pool(ctx, &x, 3, 1, 0);
    CHECK(y->shape[2] == 1 && y->shape[3] == 1 && y->data[0] == 5.0f, "max %g", y->data[0]);
    ib_backward(ctx, y, NULL);
    for (int i = 0; i < 9; i++) CHECK(xg[i] == (i == 1 ? 1.0f : 0.0f), "tie: grad[%d] = %g", i, xg[i]);
    // Negative inputs with padding: the padding is -inf, never 0, so no output is 0.
    ib_ctx_reset(ctx);
    float nd[9] = {-9, -8, -7, -6, -5, -4, -3, -2, -1};
    ib_tensor xn;
    ib_tensor_init(&xn, nd, 4, (int[]){1, 1, 3, 3});
    ib_tensor *yn = ib_max_pool(ctx, &xn, 3, 2, 1);
    CHECK(yn->shape[2] == 2 && yn->shape[3] == 2, "shape");
    float want[4] = {-5, -4, -2, -1};
    for (int i = 0; i < 4; i++) CHECK(yn->data[i] == want[i], "padded max[%d] = %g, want %g", i, yn->data[i], want[i]);
    // Average pooling counts the padding: the corner window of a ones plane holds 4 of 9.
    ib_tensor *ones = ib_tensor_new(ctx, 4, (int[]){1, 1, 3, 3});
    for (int i = 0; i < 9; i++) ones->data[i] = 1;
    ib_tensor *ya = ib_avg_pool(ctx, ones, 3, 2, 1);
    CHECK(fabsf(ya->data[0] - 4.0f / 9.0f) < 1e-7f, "count_include_pad: %g", ya->data[0]);
    ib_ctx_free(ctx);
}

TEST(cross_entropy_all_ignored_is_zero) {
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){1, 3, 2, 2});
    fill_normal(x, 40, 1);
    x->requires_grad = 1;
    int32_t t[4] = {255, 255, 255, 255};
    ib_tensor *loss = ib_cross_entropy(ctx, x, t, 0.1f, 255);
    CHECK(loss->ndim == 1 && loss->shape[0] == 1 && loss->data[0] == 0.0f, "loss %g, want 0", loss->data[0]);
    ib_backward(ctx, loss, NULL);
    for (int i = 0; i < 12; i++) CHECK(!x->grad || x->grad[i] == 0.0f, "grad[%d] = %g", i, x->grad[i]);
    // A uniform prediction costs log(C) whatever the smoothing.
    ib_ctx_reset(ctx);
    ib_tensor *u = ib_tensor_zeros(ctx, 2, (int[]){2, 4});
    ib_tensor *lu = ib_cross_entropy(ctx, u, (int32_t[]){1, 3}, 0.3f, -1);
    CHECK(fabs(lu->data[0] - log(4.0)) < 1e-6, "uniform: %g, want %g", lu->data[0], log(4.0));
    // Large logits do not overflow (the max is subtracted).
    ib_tensor *big = ib_tensor_new(ctx, 2, (int[]){1, 3});
    big->data[0] = 1000;
    big->data[1] = 999;
    big->data[2] = -1000;
    ib_tensor *lb = ib_cross_entropy(ctx, big, (int32_t[]){1}, 0.0f, -1);
    CHECK(fabs(lb->data[0] - (1.0 + log1p(exp(-1.0)))) < 1e-5, "stable: %g", lb->data[0]);
    ib_ctx_free(ctx);
}

TEST(cross_entropy_bad_target_asserts) {
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        ib_ctx *ctx = ib_ctx_new();
        ib_tensor *x = ib_tensor_zeros(ctx, 2, (int[]){2, 3});
        ib_cross_entropy(ctx, x, (int32_t[]){1, 3}, 0.0f, -1);   // 3 is outside [0, 3)
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "target 3 of 3 classes did not abort (status %d)", st);
}

// The separable bilinear forward (rows interpolated along x once, then blended) equals the per-output
// formula h0 * (w0 * a + w1 * c) + h1 * (w0 * b + w1 * d) bit for bit, up and down, with torch's source
// indices and weights (align_corners=False, computed in float).
static void ref_axis(int in, int out, int *i0, int *i1, float *l0, float *l1) {
    float scale = (float)in / (float)out;
    for (int i = 0; i < out; i++) {
        if (in == out) {
            i0[i] = i1[i] = i, l0[i] = 1, l1[i] = 0;
            continue;
        }
        float src = scale * ((float)i + 0.5f) - 0.5f;
        if (src < 0) src = 0;
        i0[i] = (int)src;
        l1[i] = fminf(fmaxf(src - (float)i0[i], 0), 1);
        l0[i] = 1.0f - l1[i];
        i1[i] = i0[i] + (i0[i] < in - 1 ? 1 : 0);
    }
}

TEST(bilinear_separable_equals_per_output_formula) {
    static const int cfg[][4] = {{24, 24, 96, 96}, {3, 5, 12, 9}, {9, 11, 4, 6}, {6, 6, 6, 6}, {1, 7, 5, 7}, {13, 2, 40, 1}};
    ib_ctx *ctx = ib_ctx_new();
    int i0y[128], i1y[128], i0x[128], i1x[128];
    float l0y[128], l1y[128], l0x[128], l1x[128];
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        const int H = cfg[c][0], W = cfg[c][1], Ho = cfg[c][2], Wo = cfg[c][3];
        ib_ctx_reset(ctx);
        ctx->recording = 0;
        ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, H, W});
        fill_normal(x, 70 + c, 1);
        ib_tensor *y = ib_resize_bilinear(ctx, x, Ho, Wo);
        ref_axis(H, Ho, i0y, i1y, l0y, l1y);
        ref_axis(W, Wo, i0x, i1x, l0x, l1x);
        for (int p = 0; p < 6; p++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    const float *r0 = x->data + (p * H + i0y[oy]) * W, *r1 = x->data + (p * H + i1y[oy]) * W;
                    float t0 = l0x[ox] * r0[i0x[ox]] + l1x[ox] * r0[i1x[ox]];
                    float t1 = l0x[ox] * r1[i0x[ox]] + l1x[ox] * r1[i1x[ox]];
                    float want = l0y[oy] * t0 + l1y[oy] * t1, got = y->data[(p * Ho + oy) * Wo + ox];
                    if (got != want) {
                        ib_ctx_free(ctx);
                        CHECK(0, "%dx%d -> %dx%d: y[%d][%d][%d] = %.9g, want %.9g", H, W, Ho, Wo, p, oy, ox, got, want);
                    }
                }
    }
    ib_ctx_free(ctx);
}

TEST(inference_mode_records_nothing) {
    ib_ctx *ctx = ib_ctx_new();
    ctx->recording = 0;
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){1, 2, 5, 5});
    fill_normal(x, 50, 1);
    x->requires_grad = 1;
    ib_tensor *a = ib_max_pool(ctx, x, 3, 2, 1);
    ib_tensor *b = ib_resize_bilinear(ctx, a, 7, 7);
    ib_tensor *c = ib_avg_pool(ctx, b, 2, 2, 0);
    ib_tensor *d = ib_resize_nearest(ctx, c, 4, 5);
    ib_tensor *e = ib_global_avg_pool(ctx, d);
    CHECK(ctx->tape_len == 0 && !e->requires_grad, "recorded %d nodes with recording off", ctx->tape_len);
    CHECK(e->shape[0] == 1 && e->shape[1] == 2 && e->shape[2] == 1 && isfinite(e->data[0]), "output");
    ib_ctx_free(ctx);
}

// The same inputs give bit-identical outputs and gradients on 1 and 2 threads.
static void run_all(int threads, float *out, int nout, float *grads, int ngrad) {
    ib_set_threads(threads);
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){3, 4, 9, 11});
    fill_normal(x, 60, 2);
    x->requires_grad = 1;
    ib_tensor *u = ib_resize_bilinear(ctx, x, 13, 17);
    ib_tensor *p = ib_max_pool(ctx, u, 3, 2, 1);
    ib_tensor *q = ib_resize_nearest(ctx, p, 5, 6);
    ib_tensor *s = ib_avg_pool(ctx, q, 3, 1, 1);
    int32_t t[3 * 5 * 6];
    for (int i = 0; i < 90; i++) t[i] = i % 7 == 0 ? -1 : i % 4;
    ib_tensor *ce = ib_cross_entropy(ctx, s, t, 0.1f, -1);
    ib_backward(ctx, ce, NULL);
    IB_ASSERT(nout == 1 && ngrad == 3 * 4 * 9 * 11, "sizes");
    out[0] = ce->data[0];
    memcpy(grads, x->grad, sizeof(float) * (size_t)ngrad);
    ib_ctx_free(ctx);
}

TEST(deterministic_across_threads) {
    enum { NG = 3 * 4 * 9 * 11 };
    static float g1[NG], g2[NG];
    float o1, o2;
    run_all(1, &o1, 1, g1, NG);
    run_all(2, &o2, 1, g2, NG);
    ib_set_threads(2);
    CHECK(o1 == o2, "loss %.9g vs %.9g", o1, o2);
    CHECK(memcmp(g1, g2, sizeof g1) == 0, "gradients differ between 1 and 2 threads");
    double n = 0;
    for (int i = 0; i < NG; i++) n += fabs(g1[i]);
    CHECK(n > 0, "no gradient reached the input");
}
