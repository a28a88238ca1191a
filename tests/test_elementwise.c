// Batchnorm and the elementwise ops (activations, add, per-channel scale, weighted fusion, concat): gradient
// checks for every input, parity with PyTorch 1.13 (tests/ref/ops_elementwise.py), thread-count independence.
#include "tests/test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PARITY_TOL 1e-5

// ---------------------------------------------------------------------------------------------
// Gradient checks

typedef struct {
    ib_tensor *running_mean, *running_var;   // buffers the op may update; never checked
    int training;
} bn_args;

static ib_tensor *fwd_bn(ib_ctx *ctx, ib_tensor **in, void *user) {
    bn_args *a = user;
    return ib_batchnorm(ctx, in[0], in[1], in[2], a->running_mean, a->running_var, a->training, 0.1f, 1e-5f);
}

// x of `shape`, gamma and beta of its channel count; running stats made up for eval mode.
static int gradcheck_bn(int ndim, const int *shape, int training, char *msg, size_t msgn) {
    ib_ctx *ctx = ib_ctx_new();
    int c = shape[1];
    ib_tensor *x = ib_tensor_new(ctx, ndim, shape);
    ib_tensor *gamma = ib_tensor_new(ctx, 1, &c), *beta = ib_tensor_new(ctx, 1, &c);
    ib_tensor *rm = ib_tensor_new(ctx, 1, &c), *rv = ib_tensor_new(ctx, 1, &c);
    fill_normal(x, 1, 1.5f);
    fill_uniform(gamma, 2, 0.5f, 1.5f);
    fill_normal(beta, 3, 0.5f);
    fill_normal(rm, 4, 0.3f);
    fill_uniform(rv, 5, 0.5f, 1.5f);
    bn_args a = {rm, rv, training};
    ib_tensor *in[3] = {x, gamma, beta};
    int ok = gradcheck(fwd_bn, &a, 3, in, (int[]){1, 1, 1}, (gc_opts){0}, msg, msgn);
    ib_ctx_free(ctx);
    return ok;
}

TEST(gradcheck_batchnorm_train_4d) {
    char msg[512];
    CHECK(gradcheck_bn(4, (int[]){3, 4, 3, 3}, 1, msg, sizeof msg), "%s", msg);
}

TEST(gradcheck_batchnorm_train_2d) {
    char msg[512];
    CHECK(gradcheck_bn(2, (int[]){8, 5}, 1, msg, sizeof msg), "%s", msg);
}

TEST(gradcheck_batchnorm_eval) {
    char msg[512];
    CHECK(gradcheck_bn(4, (int[]){2, 3, 3, 3}, 0, msg, sizeof msg), "%s", msg);
    CHECK(gradcheck_bn(2, (int[]){4, 6}, 0, msg, sizeof msg), "2-d: %s", msg);
}

typedef ib_tensor *(*unary_fn)(ib_ctx *, ib_tensor *);
static ib_tensor *fwd_unary(ib_ctx *ctx, ib_tensor **in, void *user) { return ((unary_fn *)user)[0](ctx, in[0]); }

// Moves every value at least `margin` away from each kink, so central differences never straddle one.
static void keep_off_kinks(ib_tensor *t, float margin) {
    static const float kinks[] = {-3.0f, 0.0f, 3.0f, 6.0f};
    for (int64_t i = 0; i < ib_numel(t); i++)
        for (int k = 0; k < 4; k++) {
            float d = t->data[i] - kinks[k];
            if (fabsf(d) < margin) t->data[i] = kinks[k] + (d >= 0 ? margin : -margin);
        }
}

TEST(gradcheck_activations) {
    static const struct { const char *name; unary_fn fn; } acts[] = {
        {"relu", ib_relu}, {"relu6", ib_relu6}, {"hswish", ib_hswish}, {"hsigmoid", ib_hsigmoid},
        {"sigmoid", ib_sigmoid},
    };
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, 5, 5});
    fill_uniform(x, 9, -8.0f, 8.0f);
    keep_off_kinks(x, 0.05f);   // > 2h with h = 1e-2
    for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
        char msg[512];
        unary_fn fn = acts[k].fn;
        int ok = gradcheck(fwd_unary, &fn, 1, &x, (int[]){1}, (gc_opts){0}, msg, sizeof msg);
        CHECK(ok, "%s: %s", acts[k].name, msg);
    }
    ib_ctx_free(ctx);
}

static ib_tensor *fwd_add(ib_ctx *ctx, ib_tensor **in, void *user) { return ib_add(ctx, in[0], in[1]); }
static ib_tensor *fwd_add_self(ib_ctx *ctx, ib_tensor **in, void *user) { return ib_add(ctx, in[0], in[0]); }
static ib_tensor *fwd_mul_channel(ib_ctx *ctx, ib_tensor **in, void *user) {
    return ib_mul_channel(ctx, in[0], in[1]);
}
static ib_tensor *fwd_concat(ib_ctx *ctx, ib_tensor **in, void *user) { return ib_concat(ctx, 3, in); }

TEST(gradcheck_add_mul_channel_concat) {
    ib_ctx *ctx = ib_ctx_new();
    char msg[512];
    ib_tensor *a = ib_tensor_new(ctx, 4, (int[]){2, 3, 4, 4}), *b = ib_tensor_new(ctx, 4, (int[]){2, 3, 4, 4});
    fill_normal(a, 11, 1);
    fill_normal(b, 12, 1);
    CHECK(gradcheck(fwd_add, NULL, 2, (ib_tensor *[]){a, b}, (int[]){1, 1}, (gc_opts){0}, msg, sizeof msg), "add: %s",
          msg);
    CHECK(gradcheck(fwd_add_self, NULL, 1, &a, (int[]){1}, (gc_opts){0}, msg, sizeof msg), "x + x: %s", msg);

    ib_tensor *s = ib_tensor_new(ctx, 4, (int[]){2, 3, 1, 1});
    fill_normal(s, 13, 1);
    CHECK(gradcheck(fwd_mul_channel, NULL, 2, (ib_tensor *[]){a, s}, (int[]){1, 1}, (gc_opts){0}, msg, sizeof msg),
          "mul_channel: %s", msg);

    ib_tensor *xs[3] = {ib_tensor_new(ctx, 4, (int[]){2, 2, 3, 3}), ib_tensor_new(ctx, 4, (int[]){2, 3, 3, 3}),
                        ib_tensor_new(ctx, 4, (int[]){2, 1, 3, 3})};
    for (int k = 0; k < 3; k++) fill_normal(xs[k], 20 + (uint64_t)k, 1);
    CHECK(gradcheck(fwd_concat, NULL, 3, xs, (int[]){1, 1, 1}, (gc_opts){0}, msg, sizeof msg), "concat: %s", msg);
    // Only some inputs taking a gradient.
    CHECK(gradcheck(fwd_concat, NULL, 3, xs, (int[]){0, 1, 0}, (gc_opts){0}, msg, sizeof msg), "concat middle: %s",
          msg);
    ib_ctx_free(ctx);
}

// BiFPN's fast normalised fusion: the value by hand, then finite differences for the features and the
// weights (weights kept away from relu's kink at 0; one negative weight takes no gradient).
static ib_tensor *fwd_weighted_sum(ib_ctx *ctx, ib_tensor **in, void *user) {
    return ib_weighted_sum(ctx, 3, in, in[3], 1e-4f);
}

TEST(weighted_sum_value_and_gradcheck) {
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *in[4];
    for (int k = 0; k < 3; k++) {
        in[k] = ib_tensor_new(ctx, 4, (int[]){2, 3, 4, 5});
        fill_normal(in[k], 40 + (uint64_t)k, 1);
    }
    in[3] = ib_tensor_new(ctx, 1, (int[]){3});
    in[3]->data[0] = 0.7f, in[3]->data[1] = 1.6f, in[3]->data[2] = 0.4f;
    ib_tensor *y = ib_weighted_sum(ctx, 3, in, in[3], 1e-4f);
    double den = 1e-4 + 0.7 + 1.6 + 0.4, worst = 0;
    for (int64_t i = 0; i < ib_numel(y); i++) {
        double want = (0.7 * in[0]->data[i] + 1.6 * in[1]->data[i] + 0.4 * in[2]->data[i]) / den;
        worst = fmax(worst, fabs(y->data[i] - want));
    }
    CHECK(worst < 1e-6, "value off by %g", worst);
    char msg[512];
    CHECK(gradcheck(fwd_weighted_sum, NULL, 4, in, (int[]){1, 1, 1, 1}, (gc_opts){0}, msg, sizeof msg), "%s", msg);
    in[3]->data[2] = -0.5f;   // relu(w) = 0: that input drops out, and its weight gets no gradient
    y = ib_weighted_sum(ctx, 3, in, in[3], 1e-4f);
    CHECK(fabsf(y->data[5] - (0.7f * in[0]->data[5] + 1.6f * in[1]->data[5]) / (float)(1e-4 + 2.3)) < 1e-6f,
          "a negative weight still counts");
    CHECK(gradcheck(fwd_weighted_sum, NULL, 4, in, (int[]){1, 1, 1, 1}, (gc_opts){0}, msg, sizeof msg), "%s", msg);
    ib_ctx_free(ctx);
}

// More inputs than a tape node holds: values land in order and gradients split back exactly.
static ib_tensor *fwd_sum(ib_ctx *ctx, ib_tensor **in, void *user) { return ib_sum(ctx, in[0]); }

TEST(sum_value_and_gradcheck) {
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, 5, 7});
    fill_normal(x, 14, 3);
    double want = 0;
    for (int64_t i = 0; i < ib_numel(x); i++) want += x->data[i];
    ib_tensor *y = ib_sum(ctx, x);
    CHECK(y->ndim == 1 && y->shape[0] == 1 && y->data[0] == (float)want, "sum %.9g, want %.9g", y->data[0], want);
    char msg[512];
    int ok = gradcheck(fwd_sum, NULL, 1, &x, (int[]){1}, (gc_opts){0}, msg, sizeof msg);
    ib_ctx_free(ctx);
    CHECK(ok, "%s", msg);
}

TEST(concat_many_inputs) {
    ib_ctx *ctx = ib_ctx_new();
    enum { K = 9 };
    ib_tensor *xs[K];
    int total = 0;
    for (int k = 0; k < K; k++) {
        xs[k] = ib_tensor_new(ctx, 4, (int[]){2, 1 + k % 3, 2, 2});
        for (int64_t i = 0; i < ib_numel(xs[k]); i++) xs[k]->data[i] = (float)(k * 1000 + i);
        xs[k]->requires_grad = 1;
        total += xs[k]->shape[1];
    }
    ib_tensor *y = ib_concat(ctx, K, xs);
    CHECK(y->shape[0] == 2 && y->shape[1] == total && y->shape[2] == 2 && y->shape[3] == 2, "shape");
    float *seed = malloc(sizeof(float) * (size_t)ib_numel(y));
    for (int64_t i = 0; i < ib_numel(y); i++) seed[i] = (float)i;
    ib_backward(ctx, y, seed);
    free(seed);
    int off = 0;
    for (int k = 0; k < K; k++) {
        int ck = xs[k]->shape[1];
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < ck; c++)
                for (int p = 0; p < 4; p++) {
                    int64_t yi = ((int64_t)n * total + off + c) * 4 + p, xi = ((int64_t)n * ck + c) * 4 + p;
                    CHECK(y->data[yi] == xs[k]->data[xi], "input %d value at %lld", k, (long long)xi);
                    CHECK(xs[k]->grad[xi] == (float)yi, "input %d grad at %lld: %g", k, (long long)xi,
                          xs[k]->grad[xi]);
                }
        off += ck;
    }
    ib_ctx_free(ctx);
}

// ---------------------------------------------------------------------------------------------
// PyTorch parity

typedef struct {
    ib_h5 *f;
    ib_ctx *ctx;
    char msg[512];
} ref_file;

static int ref_open(ref_file *r) {
    r->ctx = ib_ctx_new();
    r->msg[0] = 0;
    if (ib_h5_open(&r->f, ref_path("ops_elementwise.h5"))) {
        snprintf(r->msg, sizeof r->msg, "%s", ib_errmsg());
        ib_ctx_free(r->ctx);
        return 0;
    }
    return 1;
}

static void ref_close(ref_file *r) {
    ib_h5_close(r->f);
    ib_ctx_free(r->ctx);
}

static ib_tensor *ref_read(ref_file *r, const char *group, const char *name, int requires_grad) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", group, name);
    ib_tensor *t = NULL;
    IB_ASSERT(ib_h5_read(r->f, path, r->ctx, &t) == IB_OK, "reading reference: %s", ib_errmsg());
    t->requires_grad = requires_grad;
    return t;
}

static int ref_check(ref_file *r, const char *group, const char *name, const ib_tensor *t) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", group, name);
    if (!t) {
        snprintf(r->msg, sizeof r->msg, "%s: no gradient was computed", path);
        return 0;
    }
    return ref_compare(r->f, path, t, PARITY_TOL, r->msg, sizeof r->msg);
}

// Gradient i of the case: a tensor header over in->grad for ref_compare.
static ib_tensor *grad_of(ref_file *r, const ib_tensor *in) {
    if (!in->grad) return NULL;
    ib_tensor *g = ib_arena_alloc(r->ctx->arena, sizeof *g);
    ib_tensor_init(g, in->grad, in->ndim, in->shape);
    return g;
}

// Runs the forward, seeds backward with the case's gout, compares out and the gradients g0..g{n-1}.
typedef ib_tensor *(*case_fn)(ib_ctx *ctx, ib_tensor **in, int n_in);

static int parity_case(ref_file *r, const char *group, int n_in, case_fn fn) {
    ib_ctx_reset(r->ctx);
    ib_tensor *in[IB_MAX_INPUTS];
    char name[16];
    for (int i = 0; i < n_in; i++) {
        snprintf(name, sizeof name, "x%d", i);
        in[i] = ref_read(r, group, name, 1);
    }
    ib_tensor *gout = ref_read(r, group, "gout", 0);
    ib_tensor *out = fn(r->ctx, in, n_in);
    if (!ref_check(r, group, "out", out)) return 0;
    IB_ASSERT(ib_numel(gout) == ib_numel(out), "gout size");
    ib_backward(r->ctx, out, gout->data);
    for (int i = 0; i < n_in; i++) {
        snprintf(name, sizeof name, "g%d", i);
        if (!ref_check(r, group, name, grad_of(r, in[i]))) return 0;
    }
    return 1;
}

static ib_tensor *case_relu(ib_ctx *ctx, ib_tensor **in, int n) { return ib_relu(ctx, in[0]); }
static ib_tensor *case_relu6(ib_ctx *ctx, ib_tensor **in, int n) { return ib_relu6(ctx, in[0]); }
static ib_tensor *case_hswish(ib_ctx *ctx, ib_tensor **in, int n) { return ib_hswish(ctx, in[0]); }
static ib_tensor *case_hsigmoid(ib_ctx *ctx, ib_tensor **in, int n) { return ib_hsigmoid(ctx, in[0]); }
static ib_tensor *case_sigmoid(ib_ctx *ctx, ib_tensor **in, int n) { return ib_sigmoid(ctx, in[0]); }
static ib_tensor *case_add(ib_ctx *ctx, ib_tensor **in, int n) { return ib_add(ctx, in[0], in[1]); }
static ib_tensor *case_mul_channel(ib_ctx *ctx, ib_tensor **in, int n) { return ib_mul_channel(ctx, in[0], in[1]); }
static ib_tensor *case_concat(ib_ctx *ctx, ib_tensor **in, int n) { return ib_concat(ctx, n, in); }

TEST(parity_activations_at_kinks) {
    // The reference inputs include -3, 0, 3 and 6 exactly: this pins torch's gradient choice there.
    ref_file r;
    if (!ref_open(&r)) CHECK(0, "%s", r.msg);
    static const struct { const char *name; case_fn fn; } cases[] = {
        {"relu", case_relu}, {"relu6", case_relu6}, {"hswish", case_hswish}, {"hsigmoid", case_hsigmoid},
        {"sigmoid", case_sigmoid},
    };
    int ok = 1;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0] && ok; k++) ok = parity_case(&r, cases[k].name, 1, cases[k].fn);
    ref_close(&r);
    CHECK(ok, "%s", r.msg);
}

TEST(parity_add_mul_channel_concat) {
    ref_file r;
    if (!ref_open(&r)) CHECK(0, "%s", r.msg);
    int ok = parity_case(&r, "add", 2, case_add);
    if (ok) ok = parity_case(&r, "mul_channel", 2, case_mul_channel);
    if (ok) ok = parity_case(&r, "concat", 3, case_concat);
    ref_close(&r);
    CHECK(ok, "%s", r.msg);
}

// One batchnorm case: forward, running statistics after the step, backward into x, gamma, beta.
static int parity_bn(ref_file *r, const char *group) {
    ib_ctx_reset(r->ctx);
    double momentum = 0, eps = 0;
    int64_t training = -1;
    IB_ASSERT(ib_h5_attr_f64(r->f, group, "momentum", &momentum) == IB_OK, "%s", ib_errmsg());
    IB_ASSERT(ib_h5_attr_f64(r->f, group, "eps", &eps) == IB_OK, "%s", ib_errmsg());
    IB_ASSERT(ib_h5_attr_i64(r->f, group, "training", &training) == IB_OK, "%s", ib_errmsg());
    ib_tensor *x = ref_read(r, group, "x0", 1), *gamma = ref_read(r, group, "x1", 1);
    ib_tensor *beta = ref_read(r, group, "x2", 1), *gout = ref_read(r, group, "gout", 0);
    ib_tensor *rm = ref_read(r, group, "running_mean_in", 0), *rv = ref_read(r, group, "running_var_in", 0);
    ib_tensor *out = ib_batchnorm(r->ctx, x, gamma, beta, rm, rv, (int)training, (float)momentum, (float)eps);
    if (!ref_check(r, group, "out", out)) return 0;
    if (!ref_check(r, group, "running_mean_out", rm)) return 0;
    if (!ref_check(r, group, "running_var_out", rv)) return 0;
    ib_backward(r->ctx, out, gout->data);
    return ref_check(r, group, "g0", grad_of(r, x)) && ref_check(r, group, "g1", grad_of(r, gamma)) &&
           ref_check(r, group, "g2", grad_of(r, beta));
}

TEST(parity_batchnorm) {
    ref_file r;
    if (!ref_open(&r)) CHECK(0, "%s", r.msg);
    int ok = parity_bn(&r, "bn4d_train") && parity_bn(&r, "bn2d_train") && parity_bn(&r, "bn4d_eval");
    ref_close(&r);
    CHECK(ok, "%s", r.msg);
}

// ---------------------------------------------------------------------------------------------
// Determinism and inference mode

// Forward, running stats and backward of one training step with `threads` threads, into out[0..4].
static void bn_step(int threads, float **out, int64_t *n) {
    ib_set_threads(threads);
    ib_ctx *ctx = ib_ctx_new();
    int c = 32;
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){8, c, 16, 16});
    ib_tensor *gamma = ib_tensor_new(ctx, 1, &c), *beta = ib_tensor_new(ctx, 1, &c);
    ib_tensor *rm = ib_tensor_zeros(ctx, 1, &c), *rv = ib_tensor_new(ctx, 1, &c);
    fill_normal(x, 31, 3.0f);
    for (int64_t i = 0; i < ib_numel(x); i++) x->data[i] += 5.0f;   // |mean| >> 0: rounding matters
    fill_uniform(gamma, 32, 0.5f, 1.5f);
    fill_normal(beta, 33, 1.0f);
    for (int i = 0; i < c; i++) rv->data[i] = 1.0f;
    x->requires_grad = gamma->requires_grad = beta->requires_grad = 1;
    ib_tensor *y = ib_batchnorm(ctx, x, gamma, beta, rm, rv, 1, 0.1f, 1e-5f);
    ib_tensor *gy = ib_tensor_like(ctx, y);
    fill_normal(gy, 34, 1.0f);
    ib_backward(ctx, y, gy->data);
    const float *src[6] = {y->data, rm->data, rv->data, x->grad, gamma->grad, beta->grad};
    const int64_t len[6] = {ib_numel(y), c, c, ib_numel(x), c, c};
    for (int k = 0; k < 6; k++) {
        n[k] = len[k];
        out[k] = malloc(sizeof(float) * (size_t)len[k]);
        memcpy(out[k], src[k], sizeof(float) * (size_t)len[k]);
    }
    ib_ctx_free(ctx);
}

TEST(batchnorm_bitwise_across_threads) {
    static const char *what[6] = {"output", "running_mean", "running_var", "dx", "dgamma", "dbeta"};
    float *one[6], *two[6];
    int64_t n[6];
    bn_step(1, one, n);
    bn_step(2, two, n);
    ib_set_threads(2);   // the harness's setting
    int same = 1, k;
    for (k = 0; k < 6 && same; k++) same = memcmp(one[k], two[k], sizeof(float) * (size_t)n[k]) == 0;
    // The update did happen and the output is normalised (mean ~ beta), so the comparison is not vacuous.
    double rm0 = one[1][0];
    for (int i = 0; i < 6; i++) {
        free(one[i]);
        free(two[i]);
    }
    CHECK(same, "%s differs between 1 and 2 threads", what[k - 1]);
    CHECK(fabs(rm0 - 0.5) < 0.05, "running_mean[0] = %g after one step from 0 with batch mean ~5", rm0);
}

TEST(ops_without_recording) {
    ib_ctx *ctx = ib_ctx_new();
    ctx->recording = 0;
    int c = 3;
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, c, 2, 2});
    ib_tensor *s = ib_tensor_new(ctx, 4, (int[]){2, c, 1, 1});
    ib_tensor *g = ib_tensor_new(ctx, 1, &c), *b = ib_tensor_zeros(ctx, 1, &c);
    ib_tensor *rm = ib_tensor_zeros(ctx, 1, &c), *rv = ib_tensor_new(ctx, 1, &c);
    fill_normal(x, 41, 1);
    fill_normal(s, 42, 1);
    for (int i = 0; i < c; i++) g->data[i] = rv->data[i] = 1.0f;
    x->requires_grad = s->requires_grad = g->requires_grad = 1;
    ib_tensor *y = ib_batchnorm(ctx, x, g, b, rm, rv, 0, 0.1f, 0.0f);
    for (int64_t i = 0; i < ib_numel(x); i++) CHECK(y->data[i] == x->data[i], "eval BN with unit stats is identity");
    y = ib_relu6(ctx, ib_hswish(ctx, ib_add(ctx, y, ib_mul_channel(ctx, x, ib_sigmoid(ctx, s)))));
    y = ib_concat(ctx, 2, (ib_tensor *[]){ib_relu(ctx, y), ib_hsigmoid(ctx, x)});
    CHECK(ctx->tape_len == 0 && !y->requires_grad, "recording off taped %d nodes", ctx->tape_len);
    CHECK(y->shape[1] == 2 * c, "concat shape");
    ib_ctx_free(ctx);
}
