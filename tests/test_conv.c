// conv2d, depthwise conv, matmul and linear: gradient checks, parity with PyTorch (tests/ref/ops_conv.py),
// inference mode, groups == C against the depthwise kernel, and thread-count independence.
#include "tests/test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_CONV, K_DW, K_MATMUL, K_LINEAR } op_kind;

// The cases of tests/ref/ops_conv.py; each op's arguments are read from the file's attributes.
static const char *const CASES[] = {
    "conv1x1",      "conv1x1_s2",     "conv3x3_s1", "conv3x3_s1_p1", "conv3x3_s2_p1", "conv3x3_d2_p2",
    "conv3x3_nobias", "conv3x3_g2",   "conv3x3_g4_s2", "conv5x5_p2", "conv7x7_s2_p3", "dw3x3_s1",
    "dw3x3_s1_p0",  "dw3x3_s2",       "dw5x5_s1",   "dw5x5_s2",      "dw3x3_d2",      "dw3x3_nobias",
    "dw3x3_s1_p3",  "dw3x3_s3",       "dw4x4_s2_p1", "dw7x7_s2_p3",  "dw7x7_s1_p3",   "dw1x1",
    "matmul",       "linear",         "linear_nobias",
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

typedef struct {
    const char *name;
    op_kind kind;
    int n_in;
    ib_tensor *in[3];
    int stride, pad, dilation, groups;
} ref_case;

static op_kind kind_of(const char *name) {
    if (!strncmp(name, "conv", 4)) return K_CONV;
    if (!strncmp(name, "dw", 2)) return K_DW;
    if (!strncmp(name, "matmul", 6)) return K_MATMUL;
    return K_LINEAR;
}

// Reads case `name`'s inputs into ctx. Returns 0 with a message on failure.
static int load_case(ib_h5 *f, ib_ctx *ctx, const char *name, ref_case *c, char *msg, size_t msgn) {
    memset(c, 0, sizeof *c);
    c->name = name;
    c->kind = kind_of(name);
    char path[128];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/x%d", name, i);
        if (!ib_h5_exists(f, path)) break;
        if (ib_h5_read(f, path, ctx, &c->in[i])) {
            snprintf(msg, msgn, "%s", ib_errmsg());
            return 0;
        }
        c->n_in = i + 1;
    }
    if (c->kind == K_CONV || c->kind == K_DW) {
        int64_t v[4];
        const char *keys[4] = {"stride", "pad", "dilation", "groups"};
        for (int k = 0; k < 4; k++)
            if (ib_h5_attr_i64(f, name, keys[k], &v[k])) {
                snprintf(msg, msgn, "%s", ib_errmsg());
                return 0;
            }
        c->stride = (int)v[0];
        c->pad = (int)v[1];
        c->dilation = (int)v[2];
        c->groups = (int)v[3];
    }
    return 1;
}

static ib_tensor *apply(ib_ctx *ctx, const ref_case *c, ib_tensor **in) {
    ib_tensor *b = c->n_in > 2 ? in[2] : NULL;
    switch (c->kind) {
    case K_CONV: return ib_conv2d(ctx, in[0], in[1], b, c->stride, c->pad, c->dilation, c->groups);
    case K_DW: return ib_dwconv2d(ctx, in[0], in[1], b, c->stride, c->pad, c->dilation);
    case K_MATMUL: return ib_matmul(ctx, in[0], in[1]);
    case K_LINEAR: return ib_linear(ctx, in[0], in[1], b);
    }
    return NULL;
}

static ib_tensor *gc_apply(ib_ctx *ctx, ib_tensor **in, void *user) { return apply(ctx, user, in); }

static ib_h5 *open_ref_file(void) {
    ib_h5 *f = NULL;
    if (ib_h5_open(&f, ref_path("ops_conv.h5"))) return NULL;
    return f;
}

// Gradient check of every input of every case whose name starts with `prefix`.
static void gradcheck_prefix(const char *prefix) {
    ib_h5 *f = open_ref_file();
    CHECK(f, "%s", ib_errmsg());
    ib_ctx *ctx = ib_ctx_new();
    int checked = 0;
    for (int i = 0; i < N_CASES; i++) {
        if (strncmp(CASES[i], prefix, strlen(prefix))) continue;
        ref_case c;
        char msg[512];
        int ok = load_case(f, ctx, CASES[i], &c, msg, sizeof msg);
        if (ok) {
            int check[3] = {1, 1, 1};
            ok = gradcheck(gc_apply, &c, c.n_in, c.in, check, (gc_opts){.h = 1e-2, .tol = 1e-3}, msg, sizeof msg);
        }
        if (!ok) {
            ib_ctx_free(ctx);
            ib_h5_close(f);
            CHECK(0, "%s: %s", CASES[i], msg);
        }
        checked++;
    }
    ib_ctx_free(ctx);
    ib_h5_close(f);
    CHECK(checked > 0, "no case starts with %s", prefix);
}

TEST(conv2d_gradcheck) { gradcheck_prefix("conv"); }
TEST(dwconv2d_gradcheck) { gradcheck_prefix("dw"); }
TEST(matmul_gradcheck) { gradcheck_prefix("matmul"); }
TEST(linear_gradcheck) { gradcheck_prefix("linear"); }

// Forward and every gradient against PyTorch; with recording off, the forward alone and no tape.
// as_conv: run a depthwise case through ib_conv2d(groups = C), which must dispatch to the same kernel.
static int parity_case(ib_h5 *f, const char *name, int recording, int as_conv, char *msg, size_t msgn) {
    ib_ctx *ctx = ib_ctx_new();
    ref_case c;
    int ok = load_case(f, ctx, name, &c, msg, msgn);
    if (!ok) goto done;
    if (as_conv) c.kind = K_CONV;
    ctx->recording = recording;
    for (int i = 0; i < c.n_in; i++) c.in[i]->requires_grad = 1;
    ib_tensor *out = apply(ctx, &c, c.in);
    char path[128];
    snprintf(path, sizeof path, "%s/out", name);
    if (!(ok = ref_compare(f, path, out, 1e-5, msg, msgn))) goto done;
    if (!recording) {
        if (ctx->tape_len != 0 || out->requires_grad) {
            snprintf(msg, msgn, "%s: recording off but the op taped a node", name);
            ok = 0;
        }
        goto done;
    }
    ib_tensor *gout;
    snprintf(path, sizeof path, "%s/gout", name);
    if (ib_h5_read(f, path, ctx, &gout)) {
        snprintf(msg, msgn, "%s", ib_errmsg());
        ok = 0;
        goto done;
    }
    ib_backward(ctx, out, gout->data);
    for (int i = 0; i < c.n_in && ok; i++) {
        if (!c.in[i]->grad) {
            snprintf(msg, msgn, "%s: input %d got no gradient", name, i);
            ok = 0;
            break;
        }
        ib_tensor g = *c.in[i];
        g.data = g.grad;
        snprintf(path, sizeof path, "%s/g%d", name, i);
        ok = ref_compare(f, path, &g, 1e-5, msg, msgn);
    }
done:
    ib_ctx_free(ctx);
    return ok;
}

TEST(ops_match_torch) {
    ib_h5 *f = open_ref_file();
    CHECK(f, "%s", ib_errmsg());
    char msg[512];
    for (int i = 0; i < N_CASES; i++) {
        int ok = parity_case(f, CASES[i], 1, 0, msg, sizeof msg);
        if (ok && kind_of(CASES[i]) == K_DW) ok = parity_case(f, CASES[i], 1, 1, msg, sizeof msg);
        if (!ok) ib_h5_close(f);
        CHECK(ok, "%s: %s", CASES[i], msg);
    }
    ib_h5_close(f);
}

TEST(ops_inference_mode_match_torch) {
    ib_h5 *f = open_ref_file();
    CHECK(f, "%s", ib_errmsg());
    char msg[512];
    for (int i = 0; i < N_CASES; i++) {
        int ok = parity_case(f, CASES[i], 0, 0, msg, sizeof msg);
        if (!ok) ib_h5_close(f);
        CHECK(ok, "%s (no recording): %s", CASES[i], msg);
    }
    ib_h5_close(f);
}

// Output and gradients of one op run on copies of `src`, seeded with `seed`; grads land in g[i]. Give
// each run its own ctx: ib_backward replays the whole tape, and an earlier run's nodes would add again.
typedef struct {
    ib_tensor *out;
    float *g[3];
} run_result;

static run_result run_op(ib_ctx *ctx, ib_tensor *const *src, int n_in, ib_tensor *(*op)(ib_ctx *, ib_tensor **, void *),
                         void *user, const float *seed) {
    ib_tensor *in[3];
    for (int i = 0; i < n_in; i++) {
        in[i] = ib_tensor_like(ctx, src[i]);
        memcpy(in[i]->data, src[i]->data, sizeof(float) * (size_t)ib_numel(src[i]));
        in[i]->requires_grad = 1;
    }
    run_result r = {op(ctx, in, user), {0}};
    ib_backward(ctx, r.out, seed);
    for (int i = 0; i < n_in; i++) r.g[i] = in[i]->grad;
    return r;
}

typedef struct {
    int stride, pad, dilation;
} dw_args;

static ib_tensor *op_conv_groups_c(ib_ctx *ctx, ib_tensor **in, void *user) {
    const dw_args *a = user;
    return ib_conv2d(ctx, in[0], in[1], in[2], a->stride, a->pad, a->dilation, in[0]->shape[1]);
}
static ib_tensor *op_dw(ib_ctx *ctx, ib_tensor **in, void *user) {
    const dw_args *a = user;
    return ib_dwconv2d(ctx, in[0], in[1], in[2], a->stride, a->pad, a->dilation);
}

// Depthwise as C separate single-channel convs (groups 1, the im2col path), one image at a time.
static ib_tensor *op_dw_by_plain_convs(ib_ctx *ctx, ib_tensor **in, void *user) {
    const dw_args *a = user;
    ib_tensor *x = in[0], *w = in[1], *b = in[2];
    int N = x->shape[0], C = x->shape[1];
    ib_tensor *y = NULL;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            ib_tensor *xc = ib_view_range(ctx, ib_view_range(ctx, x, 0, n, 1), 1, c, 1);
            ib_tensor *wc = ib_view_range(ctx, w, 0, c, 1);
            ib_tensor *bc = ib_view_range(ctx, b, 0, c, 1);
            ib_tensor *yc = ib_conv2d(ctx, xc, wc, bc, a->stride, a->pad, a->dilation, 1);
            if (!y) y = ib_tensor_new(ctx, 4, (int[]){N, C, yc->shape[2], yc->shape[3]});
            int64_t P = ib_numel(yc);
            memcpy(y->data + ((int64_t)n * C + c) * P, yc->data, sizeof(float) * (size_t)P);
        }
    return y;
}

TEST(conv2d_groups_eq_channels_is_depthwise) {
    const dw_args cases[] = {{1, 1, 1}, {2, 1, 1}, {1, 2, 2}, {2, 0, 1}};
    const int ks[] = {3, 5, 3, 3};
    for (int t = 0; t < 4; t++) {
        ib_ctx *ctx = ib_ctx_new();
        int N = 2, C = 6, H = 9, W = 8, K = ks[t];
        ib_tensor *src[3] = {ib_tensor_new(ctx, 4, (int[]){N, C, H, W}), ib_tensor_new(ctx, 4, (int[]){C, 1, K, K}),
                             ib_tensor_new(ctx, 1, (int[]){C})};
        for (int i = 0; i < 3; i++) fill_normal(src[i], 100 + (uint64_t)i, 1.0f);
        int Ho = (H + 2 * cases[t].pad - cases[t].dilation * (K - 1) - 1) / cases[t].stride + 1;
        int Wo = (W + 2 * cases[t].pad - cases[t].dilation * (K - 1) - 1) / cases[t].stride + 1;
        int64_t n_out = (int64_t)N * C * Ho * Wo;
        float *seed = malloc(sizeof(float) * (size_t)n_out);
        for (int64_t j = 0; j < n_out; j++) seed[j] = (float)((j * 37) % 11) - 5.0f;
        ib_ctx *ctx_dw = ib_ctx_new(), *ctx_gc = ib_ctx_new();
        run_result dw = run_op(ctx_dw, src, 3, op_dw, (void *)&cases[t], seed);
        run_result gc = run_op(ctx_gc, src, 3, op_conv_groups_c, (void *)&cases[t], seed);
        ctx->recording = 0;   // the emulation copies planes outside any op: compare its forward only
        ib_tensor *py = op_dw_by_plain_convs(ctx, src, (void *)&cases[t]);
        ctx->recording = 1;
        double e_plain = rel_err(py->data, dw.out->data, n_out);
        int same = ib_same_shape(gc.out, dw.out) && !memcmp(gc.out->data, dw.out->data, sizeof(float) * (size_t)n_out);
        for (int i = 0; i < 3 && same; i++)
            same = !memcmp(gc.g[i], dw.g[i], sizeof(float) * (size_t)ib_numel(src[i]));
        free(seed);
        ib_ctx_free(ctx);
        ib_ctx_free(ctx_dw);
        ib_ctx_free(ctx_gc);
        CHECK(same, "case %d: conv2d(groups=C) differs from dwconv2d", t);
        CHECK(e_plain <= 1e-6, "case %d: dwconv2d vs per-channel conv2d: rel err %.3g", t, e_plain);
    }
}

typedef struct {
    int conv;   // 1: conv2d 3x3 groups 1, 0: dwconv2d 5x5 stride 2
} det_args;

static ib_tensor *op_det(ib_ctx *ctx, ib_tensor **in, void *user) {
    const det_args *a = user;
    if (a->conv) return ib_conv2d(ctx, in[0], in[1], in[2], 1, 1, 1, 1);
    return ib_dwconv2d(ctx, in[0], in[1], in[2], 2, 2, 1);
}

// Compares two runs' output and grads: bitwise, or (tol > 0) within relative error tol. Returns the
// first that differs (-1 output, 0 dx, 1 dw, 2 db) or -2 when all agree.
static int first_difference(const run_result *r1, const run_result *r2, ib_tensor *const *src, double tol) {
    for (int i = -1; i < 3; i++) {
        const float *p = i < 0 ? r1->out->data : r1->g[i], *q = i < 0 ? r2->out->data : r2->g[i];
        int64_t n = i < 0 ? ib_numel(r1->out) : ib_numel(src[i]);
        int differ = tol > 0 ? !(rel_err(p, q, n) <= tol) : memcmp(p, q, sizeof(float) * (size_t)n) != 0;
        if (differ) return i;
    }
    return -2;
}

static const char *const PART[] = {"output", "dx", "dw", "db"};

// Our reductions have a fixed order, so the depthwise op is bitwise independent of the thread count.
// conv2d goes through OpenBLAS, whose summation order may change with its thread count (small-matrix
// kernels on one thread): there it must be bitwise reproducible at a fixed count, and close across counts.
TEST(results_independent_of_thread_count) {
    for (int conv = 0; conv < 2; conv++) {
        det_args a = {conv};
        int N = 6, C = 24, H = 20, W = 20, K = conv ? 3 : 5;
        ib_ctx *ctx = ib_ctx_new(), *c1 = ib_ctx_new(), *c2 = ib_ctx_new(), *c3 = ib_ctx_new();
        ib_tensor *src[3] = {ib_tensor_new(ctx, 4, (int[]){N, C, H, W}),
                             ib_tensor_new(ctx, 4, (int[]){C, conv ? C : 1, K, K}), ib_tensor_new(ctx, 1, (int[]){C})};
        for (int i = 0; i < 3; i++) fill_normal(src[i], 200 + (uint64_t)i, 1.0f);
        ib_set_threads(1);
        run_result r1 = run_op(c1, src, 3, op_det, &a, NULL);
        ib_set_threads(2);
        run_result r2 = run_op(c2, src, 3, op_det, &a, NULL);
        run_result r3 = run_op(c3, src, 3, op_det, &a, NULL);
        int across = first_difference(&r1, &r2, src, conv ? 1e-6 : 0);
        int again = first_difference(&r2, &r3, src, 0);
        ib_ctx_free(ctx);
        ib_ctx_free(c1);
        ib_ctx_free(c2);
        ib_ctx_free(c3);
        const char *op = conv ? "conv2d" : "dwconv2d";
        CHECK(again == -2, "%s: two runs on 2 threads differ (%s)", op, PART[again + 1]);
        CHECK(across == -2, "%s: 1 and 2 threads differ (%s)", op, PART[across + 1]);
    }
}

// Large images make conv2d split the batch into im2col chunks (2 images, then 1 here): the result
// must equal convolving each image on its own.
TEST(conv2d_chunked_batch_matches_per_image) {
    int N = 3, Cin = 4, Cout = 4, H = 158, W = 158, K = 3, G = 2;
    int64_t nx = (int64_t)N * Cin * H * W, nw = (int64_t)Cout * (Cin / G) * K * K, ny = (int64_t)N * Cout * H * W;
    float *mem = calloc((size_t)(2 * nx + 2 * nw + 2 * Cout), sizeof(float));
    float *seed = malloc(sizeof(float) * (size_t)ny);
    CHECK(mem && seed, "out of memory");
    ib_tensor x, w, b, r;
    ib_tensor_init(&x, mem, 4, (int[]){N, Cin, H, W});
    ib_tensor_init(&w, mem + 2 * nx, 4, (int[]){Cout, Cin / G, K, K});
    ib_tensor_init(&b, mem + 2 * nx + nw, 1, (int[]){Cout});
    ib_tensor_init(&r, seed, 1, (int[]){(int)ny});
    // Memory: x, gx, w, b, gw, gb: gw and gb adjacent, so one copy saves both.
    x.grad = mem + nx;
    w.grad = mem + 2 * nx + nw + Cout;
    b.grad = w.grad + nw;
    x.requires_grad = w.requires_grad = b.requires_grad = 1;
    fill_normal(&x, 31, 1);
    fill_normal(&w, 32, 1);
    fill_normal(&b, 33, 1);
    fill_normal(&r, 34, 1);

    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *y = ib_conv2d(ctx, &x, &w, &b, 1, 1, 1, G);
    float *want_y = malloc(sizeof(float) * (size_t)ny), *want_g = malloc(sizeof(float) * (size_t)(nx + nw + Cout));
    CHECK(want_y && want_g, "out of memory");
    memcpy(want_y, y->data, sizeof(float) * (size_t)ny);
    ib_backward(ctx, y, seed);
    memcpy(want_g, x.grad, sizeof(float) * (size_t)nx);
    memcpy(want_g + nx, w.grad, sizeof(float) * (size_t)(nw + Cout));
    ib_ctx_free(ctx);

    memset(x.grad, 0, sizeof(float) * (size_t)nx);
    memset(w.grad, 0, sizeof(float) * (size_t)(nw + Cout));
    double ey = 0;
    int64_t per = ny / N;
    for (int n = 0; n < N; n++) {
        ib_ctx *c1 = ib_ctx_new();   // one ctx per image: each backward replays only its own node
        ib_tensor *yn = ib_conv2d(c1, ib_view_range(c1, &x, 0, n, 1), &w, &b, 1, 1, 1, G);
        double e = rel_err(yn->data, want_y + n * per, per);
        if (!(e <= ey)) ey = e;
        ib_backward(c1, yn, seed + n * per);
        ib_ctx_free(c1);
    }
    double ex = rel_err(x.grad, want_g, nx), ew = rel_err(w.grad, want_g + nx, nw),
           eb = rel_err(b.grad, want_g + nx + nw, Cout);
    free(mem);
    free(seed);
    free(want_y);
    free(want_g);
    CHECK(ey <= 1e-6 && ex <= 1e-6 && ew <= 1e-6 && eb <= 1e-6, "chunked vs per image: y %.3g, gx %.3g, gw %.3g, gb %.3g",
          ey, ex, ew, eb);
}

// The KxK convolution's gradients on planes of 16 pixels and fewer (im2col's short rows, col2im's pixel by
// pixel sums: core/conv.c), against a double-precision reference: every kernel, stride, dilation, padding
// and group count that fits the plane, the batched path (N > 1) as training runs it.
static void conv_ref_grads(const float *x, const float *w, const float *gy, int N, int Cin, int H, int W, int Cout,
                           int K, int s, int p, int d, int G, int Ho, int Wo, double *gx, double *gw) {
    int cpg = Cin / G, opg = Cout / G;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < Cout; o++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    double g = gy[(((int64_t)n * Cout + o) * Ho + oh) * Wo + ow];
                    for (int cl = 0; cl < cpg; cl++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int ih = oh * s - p + kh * d, iw = ow * s - p + kw * d, c = o / opg * cpg + cl;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                int64_t xi = (((int64_t)n * Cin + c) * H + ih) * W + iw,
                                        wi = (((int64_t)o * cpg + cl) * K + kh) * K + kw;
                                gx[xi] += g * w[wi];
                                gw[wi] += g * x[xi];
                            }
                }
}

TEST(conv2d_small_planes_grads_match_reference) {
    static const int planes[][2] = {{2, 2}, {1, 3}, {3, 3}, {4, 4}, {2, 5}};
    int cases = 0;
    for (int pl = 0; pl < 5; pl++)
        for (int K = 3; K <= 5; K += 2)
            for (int s = 1; s <= 2; s++)
                for (int d = 1; d <= 2; d++)
                    for (int G = 1; G <= 2; G++) {
                        const int N = 3, Cin = 4, Cout = 6, H = planes[pl][0], W = planes[pl][1], p = d * (K / 2);
                        const int Ho = (H + 2 * p - d * (K - 1) - 1) / s + 1;
                        const int Wo = (W + 2 * p - d * (K - 1) - 1) / s + 1;
                        if (Ho < 1 || Wo < 1) continue;
                        ib_ctx *ctx = ib_ctx_new();
                        ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){N, Cin, H, W});
                        ib_tensor *w = ib_tensor_new(ctx, 4, (int[]){Cout, Cin / G, K, K});
                        fill_normal(x, 41 + pl, 1), fill_normal(w, 42 + K, 1);
                        x->requires_grad = w->requires_grad = 1;
                        ib_tensor *y = ib_conv2d(ctx, x, w, NULL, s, p, d, G);
                        ib_tensor *gy = ib_tensor_like(ctx, y);
                        fill_normal(gy, 43 + s, 1);
                        ib_backward(ctx, y, gy->data);
                        const int64_t nx = ib_numel(x), nw = ib_numel(w);
                        double *gx = calloc((size_t)nx, sizeof(double)), *gw = calloc((size_t)nw, sizeof(double));
                        CHECK(gx && gw, "out of memory");
                        conv_ref_grads(x->data, w->data, gy->data, N, Cin, H, W, Cout, K, s, p, d, G, Ho, Wo, gx, gw);
                        double ex = 0, ew = 0;
                        for (int64_t i = 0; i < nx; i++) ex = fmax(ex, fabs(x->grad[i] - gx[i]) / (1 + fabs(gx[i])));
                        for (int64_t i = 0; i < nw; i++) ew = fmax(ew, fabs(w->grad[i] - gw[i]) / (1 + fabs(gw[i])));
                        free(gx), free(gw);
                        ib_ctx_free(ctx);
                        CHECK(ex < 1e-5 && ew < 1e-5, "%dx%d plane, k%d s%d d%d g%d: gx off by %.3g, gw by %.3g", H, W,
                              K, s, d, G, ex, ew);
                        cases++;
                    }
    CHECK(cases >= 40, "only %d cases ran", cases);
}

// Backward adds into existing grads (a weight used twice, or grads accumulated over steps).
TEST(backward_adds_into_grads) {
    ib_ctx *ctx = ib_ctx_new();
    float xd[2 * 3 * 5 * 5], wd[4 * 3 * 3 * 3], bd[4], gw[4 * 3 * 3 * 3], gb[4];
    ib_tensor x, w, b;
    ib_tensor_init(&x, xd, 4, (int[]){2, 3, 5, 5});
    ib_tensor_init(&w, wd, 4, (int[]){4, 3, 3, 3});
    ib_tensor_init(&b, bd, 1, (int[]){4});
    fill_normal(&x, 1, 1);
    fill_normal(&w, 2, 1);
    fill_normal(&b, 3, 1);
    memset(gw, 0, sizeof gw);
    memset(gb, 0, sizeof gb);
    w.grad = gw;
    b.grad = gb;
    w.requires_grad = b.requires_grad = 1;
    ib_tensor *y = ib_conv2d(ctx, &x, &w, &b, 1, 1, 1, 1);
    ib_backward(ctx, y, NULL);
    float once[4 * 3 * 3 * 3], once_b[4];
    memcpy(once, gw, sizeof gw);
    memcpy(once_b, gb, sizeof gb);
    // d(sum y)/db = N * Ho * Wo per channel.
    for (int c = 0; c < 4; c++) CHECK(gb[c] == 50.0f, "gb[%d] = %g, want 50", c, gb[c]);
    ib_ctx_reset(ctx);
    y = ib_conv2d(ctx, &x, &w, &b, 1, 1, 1, 1);
    ib_tensor *y2 = ib_conv2d(ctx, &x, &w, &b, 1, 1, 1, 1);
    ib_backward(ctx, y, NULL);
    ib_backward(ctx, y2, NULL);   // y's node is replayed again: y has a grad now, so 4 sums in total
    for (int i = 0; i < 4 * 27; i++)
        CHECK(fabsf(gw[i] - 4 * once[i]) <= 1e-4f * (1 + fabsf(once[i])), "gw[%d] = %g, want %g", i, gw[i],
              4 * once[i]);
    for (int c = 0; c < 4; c++) CHECK(gb[c] == 200.0f, "gb[%d] = %g, want 200", c, gb[c]);
    ib_ctx_free(ctx);
}

// A weight given as a view of a larger tensor (a supernet path's slice): channel slices and group blocks
// (a gcibn path's g-group weight inside a dense one) are read in place at their pitch, a kernel's centre is
// copied inside the conv; a centre-first 5x5 weight's views (ib_view_centre_first: its 3x3 centre, an ordinary
// view, and its 5x5 ring views, whose backward reads two segments a row) are read in place too. Either way the output, dx and the weight's gradient equal those of the same weight
// copied out by hand, bit for bit, and the gradient lands in the larger tensor's gradient and nowhere else.
TEST(conv2d_reads_weight_views) {
    static const struct {
        int cin, cout, k, groups, stride, cin_max, cout_max, k_max, depthwise;
    } cases[] = {
        {6, 8, 1, 1, 1, 10, 12, 1, 0},   // 1x1, direct: rows and columns cut (a projection's input channels)
        {6, 8, 3, 1, 1, 10, 12, 3, 0},   // 3x3 through im2col, channels cut
        {6, 8, 3, 2, 1, 6, 12, 3, 0},    // 2 groups, output rows cut
        {8, 8, 1, 2, 1, 8, 8, 1, 0},     // 2 groups, 1x1, input channels of each group cut
        {6, 8, 3, 1, 2, 10, 12, 5, 0},   // a kernel's centre: copied at the conv
        {8, 8, 3, 8, 1, 8, 12, 5, 1},    // depthwise centre: copied
        {8, 6, 3, 2, 1, 8, 12, 3, 2},    // 2 group blocks of a dense (12, 8, 3, 3) weight (gcibn): in place
        {8, 8, 3, 4, 1, 8, 16, 5, 2},    // 4 group blocks, kernel centre: copied
        {8, 6, 1, 2, 1, 8, 12, 1, 2},    // 2 group blocks, 1x1, direct
        // centre-first 5x5 weights (ib_view_centre_first), all read in place:
        {6, 8, 5, 1, 1, 10, 12, 5, 3},   // 5x5, channels cut (a tucker path's r_in): two segments a row
        {10, 12, 5, 1, 2, 10, 12, 5, 3}, // 5x5 whole, stride 2
        {6, 8, 3, 1, 1, 10, 12, 5, 3},   // 3x3: the centre taps, an ordinary view
        {8, 6, 5, 2, 1, 8, 12, 5, 4},    // 2 group blocks, 5x5 (gcibn)
        {8, 8, 3, 4, 2, 8, 16, 5, 4},    // 4 group blocks, 3x3, stride 2
    };
    // Every SIMD version this CPU runs: a ring view's forward reads it through the GEMM's column offsets.
    static const char *const simd[] = {"portable", "avx2", "avx512"};
    for (int sv = 0; sv < 3; sv++) {
        if (!ib_simd_select(simd[sv])) continue;
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            int cin = cases[ci].cin, cout = cases[ci].cout, k = cases[ci].k, g = cases[ci].groups;
            // depthwise 2: group blocks of a dense weight (every input channel per row); 3 and 4: a centre-first
            // weight, sliced or in group blocks
            int ring = cases[ci].depthwise >= 3, blocks = cases[ci].depthwise == 2 || cases[ci].depthwise == 4;
            int cpg_max = cases[ci].depthwise == 1 ? 1 : blocks ? cases[ci].cin_max : cases[ci].cin_max / g;
            int cpg = cases[ci].depthwise == 1 ? 1 : cin / g;
            int km = cases[ci].k_max, cm = cases[ci].cout_max;
            if (cases[ci].depthwise == 1) g = cin;
            ib_ctx *ctx = ib_ctx_new();
            ctx->recording = 1;
            int nb = cm * cpg_max * km * km, nw = cout * cpg * k * k, nx = 2 * cin * 7 * 7;
            float *mem = calloc((size_t)(2 * nb + 2 * nw + 2 * nx), sizeof(float));
            float *bd = mem, *bg = bd + nb, *wd = bg + nb, *wg = wd + nw, *xd = wg + nw, *xg = xd + nx;
            ib_tensor base, w, x;
            ib_tensor_init(&base, bd, 4, (int[]){cm, cpg_max, km, km});
            ib_tensor_init(&w, wd, 4, (int[]){cout, cpg, k, k});
            ib_tensor_init(&x, xd, 4, (int[]){2, cin, 7, 7});
            fill_normal(&base, 10 + ci, 1), fill_normal(&x, 20 + ci, 1);
            base.grad = bg, w.grad = wg, x.grad = xg;
            base.requires_grad = w.requires_grad = x.requires_grad = 1;
            base.centre_first = ring;
            ib_tensor *v = ring     ? ib_view_centre_first(ctx, &base, cout, cpg, k, g)
                           : blocks ? ib_view_group_blocks(ctx, &base, cout, g, k)
                                    : ib_view_slice(ctx, &base, cout, cpg, k, k);
            CHECK(!ring || k == 3 || v->ring > 0, "case %zu: a 5x5 centre-first view is a ring view", ci);
            CHECK(!ring || v->data == bd, "case %zu: the view starts at the centre taps of row 0", ci);
            ib_tensor_read(v, wd);   // the same weight, copied out by hand
            ib_tensor vg = *v;       // the view's gradient, seen as a tensor (v lives in the arena, reset below)
            vg.data = v->grad;
            int pad = (k - 1) / 2, s = cases[ci].stride;
            ib_tensor *y1 = ib_conv2d(ctx, &x, v, NULL, s, pad, 1, g);
            int64_t ny = ib_numel(y1);
            float *seed = malloc(sizeof(float) * (size_t)ny);   // the upstream gradient
            for (int64_t i = 0; i < ny; i++) seed[i] = (float)sin(0.37 * (double)i);
            ib_backward(ctx, y1, seed);
            float *keep = malloc(sizeof(float) * (size_t)(ny + nx));
            memcpy(keep, y1->data, sizeof(float) * (size_t)ny), memcpy(keep + ny, xg, sizeof(float) * (size_t)nx);
            memset(xg, 0, sizeof(float) * (size_t)nx);
            ib_ctx_reset(ctx);
            ctx->recording = 1;
            ib_tensor *y2 = ib_conv2d(ctx, &x, &w, NULL, s, pad, 1, g);
            ib_backward(ctx, y2, seed);
            for (int64_t i = 0; i < ny; i++) CHECK(y2->data[i] == keep[i], "%s, case %zu: y[%lld] differs", simd[sv], ci, (long long)i);
            for (int i = 0; i < nx; i++) CHECK(xg[i] == keep[ny + i], "case %zu: dx[%d] differs", ci, i);
            // The view's gradient, read out in row-major order, is the copy's; outside the slice it is zero.
            float *got = malloc(sizeof(float) * (size_t)nw);
            ib_tensor_read(&vg, got);
            double inside = 0, all = 0;
            for (int i = 0; i < nw; i++) {
                CHECK(got[i] == wg[i], "case %zu: dw[%d] = %g, the copy's %g", ci, i, got[i], wg[i]);
                inside += fabs(got[i]);
            }
            for (int i = 0; i < nb; i++) all += fabs(bg[i]);
            CHECK(inside > 0 && all == inside, "case %zu: gradient outside the slice (%g of %g)", ci, all - inside, all);
            free(got), free(keep), free(seed), free(mem);
            ib_ctx_free(ctx);
        }
    }
    ib_simd_select("auto");
}
