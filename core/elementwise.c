// Elementwise kernels: the activations (ReLU, ReLU6, h-swish, h-sigmoid, sigmoid), residual add,
// per-channel scaling (squeeze-excite), BiFPN's weighted fusion and channel concatenation, with their
// backward passes.
// Gradients at the kinks follow PyTorch 1.13 exactly, so parity tests can sit on a kink.
#include "core.h"
#include "core/simd.h"

#include <math.h>
#include <string.h>

// Below this many elements a parallel loop costs more than it saves; loops run on the library's pool
// (core/threads.c) in ranges of at least GRAIN elements.
#define PAR_MIN 32768
#define GRAIN (PAR_MIN / 2)

// The operands of an elementwise loop over a range.
typedef struct {
    const float *a, *b, *c;
    float *out;
    float s;
    int64_t inner, out_pitch;
} ew_job;

// ---------------------------------------------------------------------------------------------
// Activations: an element function and its derivative per kind; a macro stamps out one loop pair
// per kind. `simd` turns the clamps into blends: as branches they mispredict on every other element.

// NaN passes through, as with torch's clamp.
static inline float clamp06(float v) { return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); }

static inline float relu_f(float x) { return x > 0.0f ? x : (x == x ? 0.0f : x); }
static inline float relu6_f(float x) { return clamp06(x); }
static inline float hswish_f(float x) { return x * clamp06(x + 3.0f) / 6.0f; }
static inline float hsigmoid_f(float x) { return clamp06(x + 3.0f) / 6.0f; }
static inline float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// dL/dx from dy, input x and output y, written as torch 1.13 writes them (a select, not dy * 0, so an
// Inf in dy stays out of clamped elements), with torch's choices at the kinks: relu 0 at 0; relu6
// (hardtanh) 0 at 0 and 6; hardsigmoid 1/6 on the open (-3, 3); hardswish x/3 + 1/2 on [-3, 3), so
// -1/2 at -3 and 1 at 3. That last is torch's vectorised kernel (x >= 3 -> 1), which every tensor of
// more than a few elements goes through; its scalar tail loop alone gives 3/3 + 1/2 at exactly 3.
// Conditions use & rather than && so that the loops stay branch-free.
static inline float relu_g(float g, float x, float y) { return x > 0.0f ? g : 0.0f; }
static inline float relu6_g(float g, float x, float y) { return ((x > 0.0f) & (x < 6.0f)) ? g : 0.0f; }
static inline float hswish_g(float g, float x, float y) {
    return x < -3.0f ? 0.0f : (x < 3.0f ? g * (x / 3.0f + 0.5f) : g);
}
static inline float hsigmoid_g(float g, float x, float y) {
    return ((x > -3.0f) & (x < 3.0f)) ? g * (1.0f / 6.0f) : 0.0f;
}
static inline float sigmoid_g(float g, float x, float y) { return g * (1.0f - y) * y; }

#define DEFINE_ACTIVATION(NAME)                                                                               \
    static void NAME##_bwd_range(void *p, int64_t lo, int64_t hi, int worker) {                               \
        const ew_job *j = p; /* a: dy, b: x, c: y */                                                          \
        _Pragma("omp simd") for (int64_t i = lo; i < hi; i++) j->out[i] += NAME##_g(j->a[i], j->b[i], j->c[i]); \
    }                                                                                                         \
    static void NAME##_fwd_range(void *p, int64_t lo, int64_t hi, int worker) {                               \
        const ew_job *j = p;                                                                                  \
        _Pragma("omp simd") for (int64_t i = lo; i < hi; i++) j->out[i] = NAME##_f(j->a[i]);                  \
    }                                                                                                         \
    static void NAME##_backward(ib_ctx *ctx, ib_node *node) {                                                 \
        /* x, y, dy: any shape, n elements -> dx (added) */                                                   \
        ib_tensor *x = node->in[0];                                                                           \
        ew_job j = {node->out->grad, x->data, node->out->data, ib_grad(ctx, x), 0.0f, 0, 0};                  \
        ib_parallel_range(ib_numel(x), GRAIN, NAME##_bwd_range, &j);                                          \
    }                                                                                                         \
    static const ib_op op_##NAME = {#NAME, NAME##_backward};                                                  \
    ib_tensor *ib_##NAME(ib_ctx *ctx, ib_tensor *x) {                                                         \
        /* x: any shape -> y like x */                                                                        \
        IB_ASSERT(ib_is_contiguous(x), #NAME ": contiguous input");                                           \
        ib_tensor *y = ib_tensor_like(ctx, x);                                                                \
        ew_job j = {x->data, NULL, NULL, y->data, 0.0f, 0, 0};                                                \
        ib_parallel_range(ib_numel(x), GRAIN, NAME##_fwd_range, &j);                                          \
        ib_record(ctx, &op_##NAME, y, 1, &x);                                                                 \
        return y;                                                                                             \
    }

DEFINE_ACTIVATION(relu)
DEFINE_ACTIVATION(relu6)
DEFINE_ACTIVATION(hswish)
DEFINE_ACTIVATION(hsigmoid)
DEFINE_ACTIVATION(sigmoid)

// ---------------------------------------------------------------------------------------------
// Add

// out = s * a (b NULL, out written) or out += s * a (b == out), over a range.
static void axpy_range(void *p, int64_t lo, int64_t hi, int worker) {
    const ew_job *j = p;
    if (j->b) {
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) j->out[i] += j->s * j->a[i];
    } else {
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) j->out[i] = j->s * j->a[i];
    }
}

// out = a + b
static void add_range(void *p, int64_t lo, int64_t hi, int worker) {
    const ew_job *j = p;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) j->out[i] = j->a[i] + j->b[i];
}

static void add_into(float *dst, const float *src, int64_t n) {
    ew_job j = {src, dst, NULL, dst, 1.0f, 0, 0};
    ib_parallel_range(n, GRAIN, axpy_range, &j);
}

static void add_backward(ib_ctx *ctx, ib_node *node) {
    // dy: n elements -> da, db (added; a == b gets both)
    const int64_t n = ib_numel(node->out);
    for (int k = 0; k < 2; k++)
        if (node->in[k]->requires_grad) add_into(ib_grad(ctx, node->in[k]), node->out->grad, n);
}
static const ib_op op_add = {"add", add_backward};

ib_tensor *ib_add(ib_ctx *ctx, ib_tensor *a, ib_tensor *b) {
    // a, b: same shape -> y like a
    char sa[64], sb[64];
    IB_ASSERT(ib_same_shape(a, b), "add: shapes %s and %s differ", ib_shape_str(a, sa, sizeof sa),
              ib_shape_str(b, sb, sizeof sb));
    IB_ASSERT(ib_is_contiguous(a) && ib_is_contiguous(b), "add: contiguous inputs");
    ib_tensor *y = ib_tensor_like(ctx, a);
    ew_job j = {a->data, b->data, NULL, y->data, 0.0f, 0, 0};
    ib_parallel_range(ib_numel(a), GRAIN, add_range, &j);
    ib_record(ctx, &op_add, y, 2, (ib_tensor *[]){a, b});
    return y;
}

// ---------------------------------------------------------------------------------------------
// Per-channel scale (squeeze-excite)

// Per-channel scaling over planes [lo, hi) of hw values each, s one value per plane; dx, ds NULL when not
// wanted.
typedef struct {
    const float *dy, *x, *s;
    float *dx, *ds, *y;
    int64_t hw;
} mc_job;

static void mul_channel_bwd_planes(void *p, int64_t lo, int64_t hi, int worker) {
    const mc_job *j = p;
    const int64_t hw = j->hw;
    for (int64_t q = lo; q < hi; q++) {
        const float *g = j->dy + q * hw, *xp = j->x + q * hw;
        if (j->dx) {
            float *d = j->dx + q * hw;
#pragma omp simd
            for (int64_t i = 0; i < hw; i++) d[i] += g[i] * j->s[q];
        }
        if (j->ds) {
            double acc = 0;   // a plane summed whole, in order: independent of the threads
            for (int64_t i = 0; i < hw; i++) acc += (double)g[i] * xp[i];
            j->ds[q] += (float)acc;
        }
    }
}

static void mul_channel_fwd_planes(void *p, int64_t lo, int64_t hi, int worker) {
    const mc_job *j = p;
    const int64_t hw = j->hw;
    for (int64_t q = lo; q < hi; q++) {
#pragma omp simd
        for (int64_t i = 0; i < hw; i++) j->y[q * hw + i] = j->x[q * hw + i] * j->s[q];
    }
}

static void mul_channel_backward(ib_ctx *ctx, ib_node *node) {
    // x: (N, C, H, W), s: (N, C, 1, 1), dy: (N, C, H, W) -> dx = dy * s, ds = sum_hw dy * x
    ib_tensor *x = node->in[0], *s = node->in[1];
    const int64_t planes = (int64_t)x->shape[0] * x->shape[1], hw = (int64_t)x->shape[2] * x->shape[3];
    mc_job j = {node->out->grad, x->data, s->data, x->requires_grad ? ib_grad(ctx, x) : NULL,
                s->requires_grad ? ib_grad(ctx, s) : NULL, NULL, hw};
    ib_parallel_range(planes, ib_grain(GRAIN, hw), mul_channel_bwd_planes, &j);
}
static const ib_op op_mul_channel = {"mul_channel", mul_channel_backward};

ib_tensor *ib_mul_channel(ib_ctx *ctx, ib_tensor *x, ib_tensor *s) {
    // x: (N, C, H, W), s: (N, C, 1, 1) -> y: (N, C, H, W)
    char sx[64], ss[64];
    IB_ASSERT(x->ndim == 4 && s->ndim == 4 && s->shape[0] == x->shape[0] && s->shape[1] == x->shape[1] &&
                  s->shape[2] == 1 && s->shape[3] == 1,
              "mul_channel: x %s needs s (N, C, 1, 1), got %s", ib_shape_str(x, sx, sizeof sx),
              ib_shape_str(s, ss, sizeof ss));
    IB_ASSERT(ib_is_contiguous(x) && ib_is_contiguous(s), "mul_channel: contiguous inputs");
    ib_tensor *y = ib_tensor_like(ctx, x);
    const int64_t planes = (int64_t)x->shape[0] * x->shape[1], hw = (int64_t)x->shape[2] * x->shape[3];
    mc_job j = {NULL, x->data, s->data, NULL, NULL, y->data, hw};
    ib_parallel_range(planes, ib_grain(GRAIN, hw), mul_channel_fwd_planes, &j);
    ib_record(ctx, &op_mul_channel, y, 2, (ib_tensor *[]){x, s});
    return y;
}

// ---------------------------------------------------------------------------------------------
// Fast normalised fusion (EfficientDet's BiFPN): y = sum_i a_i x_i, a_i = relu(w_i) / (eps + sum_j relu(w_j))

double ib_weighted_sum_coeffs(const float *w, int n, float eps, double *a) {
    double den = eps;
    for (int i = 0; i < n; i++) den += w[i] > 0.0f ? w[i] : 0.0f;
    for (int i = 0; i < n; i++) a[i] = (w[i] > 0.0f ? w[i] : 0.0f) / den;
    return den;
}

static void weighted_sum_backward(ib_ctx *ctx, ib_node *node) {
    // xs[i]: m elements each, w: (n), dy: m -> dxs[i] = a_i dy; dw_k = [w_k > 0] (<dy, x_k> - sum_i a_i <dy, x_i>) / den
    const int n = node->n_in - 1;
    ib_tensor *wt = node->in[n];
    const float eps = *(const float *)node->saved;
    const float *dy = node->out->grad;
    const int64_t m = ib_numel(node->out);
    double a[IB_MAX_INPUTS], dot[IB_MAX_INPUTS] = {0};
    const double den = ib_weighted_sum_coeffs(wt->data, n, eps, a);
    const float *xs[IB_MAX_INPUTS];
    for (int i = 0; i < n; i++) {
        ib_tensor *x = node->in[i];
        xs[i] = x->data;
        if (x->requires_grad) {
            float *dx = ib_grad(ctx, x);
            ew_job j = {dy, dx, NULL, dx, (float)a[i], 0, 0};
            ib_parallel_range(m, GRAIN, axpy_range, &j);
        }
    }
    if (!wt->requires_grad) return;
    // <dy, x_i> for every input in one pass over dy: the depthwise weight gradient's kernel (16 float lanes
    // folded into double in a fixed order, the same sums for any thread count; the one double chain it
    // replaces was 2.7% of a BiFPN segmenter's training step)
    ib_simd()->tapdot(dy, m, n, xs, dot);
    double mix = 0;
    for (int i = 0; i < n; i++) mix += a[i] * dot[i];
    float *dw = ib_grad(ctx, wt);
    for (int i = 0; i < n; i++)
        if (wt->data[i] > 0.0f) dw[i] += (float)((dot[i] - mix) / den);
}
static const ib_op op_weighted_sum = {"weighted_sum", weighted_sum_backward};

ib_tensor *ib_weighted_sum(ib_ctx *ctx, int n, ib_tensor *const *xs, ib_tensor *w, float eps) {
    // xs[i]: same shape, w: (n) -> y like xs[0]
    IB_ASSERT(n >= 1 && n < IB_MAX_INPUTS, "weighted_sum: %d inputs (1..%d)", n, IB_MAX_INPUTS - 1);
    IB_ASSERT(ib_numel(w) == n && ib_is_contiguous(w), "weighted_sum: w needs %d contiguous weights", n);
    IB_ASSERT(eps > 0.0f, "weighted_sum: eps %g must be positive", eps);
    for (int i = 0; i < n; i++) {
        char s0[64], si[64];
        IB_ASSERT(ib_same_shape(xs[i], xs[0]), "weighted_sum: input %d %s differs from input 0 %s", i,
                  ib_shape_str(xs[i], si, sizeof si), ib_shape_str(xs[0], s0, sizeof s0));
        IB_ASSERT(ib_is_contiguous(xs[i]), "weighted_sum: contiguous inputs");
    }
    double a[IB_MAX_INPUTS];
    ib_weighted_sum_coeffs(w->data, n, eps, a);
    float af[IB_MAX_INPUTS];
    for (int i = 0; i < n; i++) af[i] = (float)a[i];
    ib_tensor *y = ib_tensor_like(ctx, xs[0]);
    float *yd = y->data;
    const int64_t m = ib_numel(y);
    for (int i = 0; i < n; i++) {
        ew_job j = {xs[i]->data, i ? yd : NULL, NULL, yd, af[i], 0, 0};
        ib_parallel_range(m, GRAIN, axpy_range, &j);
    }
    ib_tensor *in[IB_MAX_INPUTS];
    memcpy(in, xs, sizeof(ib_tensor *) * (size_t)n);
    in[n] = w;
    ib_node *node = ib_record(ctx, &op_weighted_sum, y, n + 1, in);
    if (node) {
        float *e = ib_arena_alloc(ctx->arena, sizeof *e);
        *e = eps;
        node->saved = e;
    }
    return y;
}

// ---------------------------------------------------------------------------------------------
// Concatenation along dim 1

// Each input i is a block of in_ch[i] * inner floats per sample; the output interleaves them.
static int64_t concat_inner(const ib_tensor *t) {
    int64_t inner = 1;
    for (int d = 2; d < t->ndim; d++) inner *= t->shape[d];
    return inner;
}

// Samples [lo, hi): a block of `inner` floats of an input against its place in the output (pitch out_pitch).
static void concat_fwd_samples(void *p, int64_t lo, int64_t hi, int worker) {
    const ew_job *j = p;
    for (int64_t b = lo; b < hi; b++)
        memcpy(j->out + b * j->out_pitch, j->a + b * j->inner, sizeof(float) * (size_t)j->inner);
}

static void concat_bwd_samples(void *p, int64_t lo, int64_t hi, int worker) {
    const ew_job *j = p;
    for (int64_t b = lo; b < hi; b++) {
        float *dx = j->out + b * j->inner;
        const float *dy = j->a + b * j->out_pitch;
#pragma omp simd
        for (int64_t i = 0; i < j->inner; i++) dx[i] += dy[i];
    }
}

static void concat_backward(ib_ctx *ctx, ib_node *node) {
    // dy: (N, sum Ci, ...) -> dxs[i]: (N, Ci, ...) (added)
    ib_tensor *y = node->out;
    const int batch = y->shape[0];
    const int64_t inner = concat_inner(y), out_block = (int64_t)y->shape[1] * inner;
    int64_t offset = 0;
    for (int k = 0; k < node->n_in; k++) {
        ib_tensor *x = node->in[k];
        const int64_t block = (int64_t)x->shape[1] * inner;
        if (x->requires_grad) {
            ew_job j = {y->grad + offset, NULL, NULL, ib_grad(ctx, x), 0.0f, block, out_block};
            ib_parallel_range(batch, ib_grain(GRAIN, block), concat_bwd_samples, &j);
        }
        offset += block;
    }
}
static const ib_op op_concat = {"concat", concat_backward};

ib_tensor *ib_concat(ib_ctx *ctx, int n, ib_tensor *const *xs) {
    // xs[i]: (N, Ci, H, W) -> y: (N, sum Ci, H, W)
    IB_ASSERT(n >= 1, "concat: no inputs");
    if (n > IB_MAX_INPUTS) {
        // A node holds at most IB_MAX_INPUTS inputs: concatenate the head first, then the rest.
        ib_tensor *rest[IB_MAX_INPUTS];
        rest[0] = ib_concat(ctx, IB_MAX_INPUTS - 1, xs);
        int m = 1;
        for (int k = IB_MAX_INPUTS - 1; k < n; k++) {
            if (m == IB_MAX_INPUTS) {
                rest[0] = ib_concat(ctx, m, rest);
                m = 1;
            }
            rest[m++] = xs[k];
        }
        return ib_concat(ctx, m, rest);
    }
    const ib_tensor *x0 = xs[0];
    IB_ASSERT(x0->ndim >= 2, "concat: inputs need a channel dim");
    int channels = 0;
    for (int k = 0; k < n; k++) {
        char s0[64], sk[64];
        int fits = xs[k]->ndim == x0->ndim && xs[k]->shape[0] == x0->shape[0];
        for (int d = 2; d < x0->ndim && fits; d++) fits = xs[k]->shape[d] == x0->shape[d];
        IB_ASSERT(fits, "concat: input %d %s does not fit input 0 %s outside dim 1", k,
                  ib_shape_str(xs[k], sk, sizeof sk), ib_shape_str(x0, s0, sizeof s0));
        IB_ASSERT(ib_is_contiguous(xs[k]), "concat: contiguous inputs");
        channels += xs[k]->shape[1];
    }
    int shape[IB_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[1] = channels;
    ib_tensor *y = ib_tensor_new(ctx, x0->ndim, shape);
    const int batch = shape[0];
    const int64_t inner = concat_inner(x0), out_block = (int64_t)channels * inner;
    int64_t offset = 0;
    for (int k = 0; k < n; k++) {
        const int64_t block = (int64_t)xs[k]->shape[1] * inner;
        ew_job j = {xs[k]->data, NULL, NULL, y->data + offset, 0.0f, block, out_block};
        ib_parallel_range(batch, ib_grain(GRAIN, block), concat_fwd_samples, &j);
        offset += block;
    }
    ib_record(ctx, &op_concat, y, n, xs);
    return y;
}
