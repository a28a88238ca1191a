// Losses: softmax cross-entropy (classification and per-pixel segmentation, label smoothing, an
// ignore index), KL divergence between softmaxes (in-place distillation in the supernet) and
// smooth-L1 (box regression). Per-row terms are computed in parallel (the library's pool), then summed in
// double on one thread in row order, so the loss does not depend on the thread count.
#include "core.h"

#include <math.h>
#include <string.h>

// Rows in runs of about ROW_WORK values.
#define ROW_WORK 8192

// The operands of a loss loop over rows (or elements) [lo, hi).
typedef struct {
    const float *a, *b;   // logits or student or pred; teacher or target
    const void *saved;
    double *out;   // per-row losses or per-chunk sums
    float *ga, *gb;
    double g;
    int64_t n;
    int c;
    float beta;
} loss_job;

static ib_tensor *scalar_out(ib_ctx *ctx, double v) {
    ib_tensor *y = ib_tensor_new(ctx, 1, (int[]){1});
    y->data[0] = (float)v;
    return y;
}

// log(sum_c exp(x_c)) over `c` classes spaced `cs` apart, shifted by the max for stability.
static double logsumexp(const float *x, int c, int64_t cs) {
    float m = x[0];
    for (int k = 1; k < c; k++)
        if (x[k * cs] > m) m = x[k * cs];
    double s = 0;
    for (int k = 0; k < c; k++) s += exp((double)x[k * cs] - (double)m);
    return (double)m + log(s);
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

typedef struct {
    int64_t rows, hw;   // rows = N * H * W; hw = H * W (1 for (N, C) logits)
    int classes;
    int32_t *targets;   // copied: the caller's array may not outlive the step
    double *lse;        // per row: log-sum-exp of the logits
    int ignore_index;
    float eps;
    int64_t count;      // rows whose target is not ignored
} ce_saved;

// Row r = (n, s) with s in [0, hw) reads logits[n, :, s]: element (n*C + c)*hw + s.
static const float *ce_row(const float *logits, const ce_saved *s, int64_t r, int64_t *cs) {
    int64_t n = r / s->hw, sp = r % s->hw;
    *cs = s->hw;
    return logits + n * s->classes * s->hw + sp;
}

// logits: (N, C) or (N, C, H, W), targets: (N*H*W) -> per-row loss (N*H*W), lse (N*H*W).
// Per row: (1 - eps) * (lse - x_t) + eps/C * sum_c (lse - x_c); ignored rows give 0.
static void ce_fwd_range(void *arg, int64_t lo, int64_t hi, int worker) {
    const loss_job *j = arg;
    const ce_saved *s = j->saved;
    const float *logits = j->a;
    double *row_loss = j->out;
    for (int64_t r = lo; r < hi; r++) {
        int t = s->targets[r];
        if (t == s->ignore_index) {
            row_loss[r] = 0;
            s->lse[r] = 0;
            continue;
        }
        int64_t cs;
        const float *x = ce_row(logits, s, r, &cs);
        double lse = logsumexp(x, s->classes, cs);
        double sum_x = 0;
        for (int k = 0; k < s->classes; k++) sum_x += x[k * cs];
        s->lse[r] = lse;
        row_loss[r] = (1.0 - s->eps) * (lse - x[t * cs]) + (double)s->eps * (lse - sum_x / s->classes);
    }
}

static void ce_forward_rows(const float *logits, const ce_saved *s, double *row_loss) {
    loss_job j = {logits, NULL, s, row_loss, NULL, NULL, 0, 0, 0, 0};
    ib_parallel_range(s->rows, ib_grain(ROW_WORK, s->classes), ce_fwd_range, &j);
}

// d/dx_c = g * (p_c - (1 - eps) [c == t] - eps / C), g = upstream / count; ignored rows get nothing.
static void ce_bwd_range(void *arg, int64_t lo, int64_t hi, int worker) {
    const loss_job *j = arg;
    const ce_saved *s = j->saved;
    const float *logits = j->a;
    float *gx = j->ga;
    const double g = j->g, smooth = (double)s->eps / s->classes;
    for (int64_t r = lo; r < hi; r++) {
        int t = s->targets[r];
        if (t == s->ignore_index) continue;
        int64_t cs;
        const float *x = ce_row(logits, s, r, &cs);
        float *gr = gx + (x - logits);
        for (int k = 0; k < s->classes; k++) {
            double d = exp((double)x[k * cs] - s->lse[r]) - smooth - (k == t ? 1.0 - s->eps : 0.0);
            gr[k * cs] += (float)(g * d);
        }
    }
}

static void ce_backward_kernel(const float *logits, const ce_saved *s, float upstream, float *gx) {
    loss_job j = {logits, NULL, s, NULL, gx, NULL, (double)upstream / (double)s->count, 0, 0, 0};
    ib_parallel_range(s->rows, ib_grain(ROW_WORK, s->classes), ce_bwd_range, &j);
}

static void ce_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *x = n->in[0];
    const ce_saved *s = n->saved;
    if (!x->requires_grad || s->count == 0) return;
    ce_backward_kernel(x->data, s, n->out->grad[0], ib_grad(ctx, x));
}
static const ib_op op_cross_entropy = {"cross_entropy", ce_backward};

// When every target is ignored the loss is 0 with a zero gradient (torch gives NaN, 0/0): a crop of
// a segmentation image that is all "ignore" then does not poison the step.
ib_tensor *ib_cross_entropy(ib_ctx *ctx, ib_tensor *logits, const int32_t *targets, float label_smoothing,
                            int ignore_index) {
    char b[64];
    IB_ASSERT(logits->ndim == 2 || logits->ndim == 4, "cross_entropy: logits must be (N, C) or (N, C, H, W), got %s",
              ib_shape_str(logits, b, sizeof b));
    IB_ASSERT(ib_is_contiguous(logits), "cross_entropy: contiguous logits");
    IB_ASSERT(logits->shape[1] > 0, "cross_entropy: no classes");
    IB_ASSERT(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy: label smoothing %g outside [0, 1]",
              (double)label_smoothing);
    ce_saved *s = ib_arena_alloc(ctx->arena, sizeof *s);
    s->classes = logits->shape[1];
    s->hw = logits->ndim == 4 ? (int64_t)logits->shape[2] * logits->shape[3] : 1;
    s->rows = (int64_t)logits->shape[0] * s->hw;
    s->ignore_index = ignore_index;
    s->eps = label_smoothing;
    s->targets = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)(s->rows ? s->rows : 1));
    if (s->rows) memcpy(s->targets, targets, sizeof(int32_t) * (size_t)s->rows);
    s->lse = ib_arena_alloc(ctx->arena, sizeof(double) * (size_t)(s->rows ? s->rows : 1));
    s->count = 0;
    for (int64_t r = 0; r < s->rows; r++) {
        int t = s->targets[r];
        if (t == ignore_index) continue;
        IB_ASSERT(t >= 0 && t < s->classes, "cross_entropy: target %d at row %lld outside [0, %d) (ignore_index %d)",
                  t, (long long)r, s->classes, ignore_index);
        s->count++;
    }
    double *row_loss = ib_arena_alloc(ctx->arena, sizeof(double) * (size_t)(s->rows ? s->rows : 1));
    ce_forward_rows(logits->data, s, row_loss);
    double total = 0;
    for (int64_t r = 0; r < s->rows; r++) total += row_loss[r];
    ib_tensor *y = scalar_out(ctx, s->count ? total / (double)s->count : 0.0);
    ib_node *n = ib_record(ctx, &op_cross_entropy, y, 1, &logits);
    if (n) n->saved = s;
    return y;
}

// ---------------------------------------------------------------------------------------------
// KL divergence between softmaxes

typedef struct {
    double *lse_s, *lse_t;   // per row
    double *row_kl;          // per row: sum_c p_t (log p_t - log p_s)
} kl_saved;

// student, teacher: (N, C) -> per-row KL, lse of each (N)
static void kl_fwd_range(void *arg, int64_t lo, int64_t hi, int worker) {
    const loss_job *jb = arg;
    const float *s = jb->a, *t = jb->b;
    const int c = jb->c;
    const kl_saved *k = jb->saved;
    for (int64_t r = lo; r < hi; r++) {
        const float *sr = s + (int64_t)r * c, *tr = t + (int64_t)r * c;
        double ls = logsumexp(sr, c, 1), lt = logsumexp(tr, c, 1);
        double kl = 0;
        for (int j = 0; j < c; j++) {
            double log_pt = (double)tr[j] - lt;
            double pt = exp(log_pt);
            if (pt > 0) kl += pt * (log_pt - ((double)sr[j] - ls));   // 0 log 0 = 0, as torch's xlogy
        }
        k->lse_s[r] = ls;
        k->lse_t[r] = lt;
        k->row_kl[r] = kl;
    }
}

static void kl_forward_rows(const float *s, const float *t, int rows, int c, kl_saved *k) {
    loss_job j = {s, t, k, NULL, NULL, NULL, 0, 0, c, 0};
    ib_parallel_range(rows, ib_grain(ROW_WORK, c), kl_fwd_range, &j);
}

// dKL_r/ds_j = p_s,j - p_t,j;  dKL_r/dt_j = p_t,j * ((log p_t,j - log p_s,j) - KL_r); both times g / N.
static void kl_bwd_range(void *arg, int64_t lo, int64_t hi, int worker) {
    const loss_job *jb = arg;
    const float *s = jb->a, *t = jb->b;
    const int c = jb->c;
    const kl_saved *k = jb->saved;
    const double g = jb->g;
    float *gs = jb->ga, *gt = jb->gb;
    for (int64_t r = lo; r < hi; r++) {
        const float *sr = s + (int64_t)r * c, *tr = t + (int64_t)r * c;
        for (int j = 0; j < c; j++) {
            double log_ps = (double)sr[j] - k->lse_s[r], log_pt = (double)tr[j] - k->lse_t[r];
            double ps = exp(log_ps), pt = exp(log_pt);
            if (gs) gs[(int64_t)r * c + j] += (float)(g * (ps - pt));
            if (gt) gt[(int64_t)r * c + j] += (float)(g * pt * ((log_pt - log_ps) - k->row_kl[r]));
        }
    }
}

static void kl_backward_kernel(const float *s, const float *t, int rows, int c, const kl_saved *k, float upstream,
                               float *gs, float *gt) {
    loss_job j = {s, t, k, NULL, gs, gt, (double)upstream / rows, 0, c, 0};
    ib_parallel_range(rows, ib_grain(ROW_WORK, c), kl_bwd_range, &j);
}

static void kl_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *s = n->in[0], *t = n->in[1];
    float *gs = s->requires_grad ? ib_grad(ctx, s) : NULL;
    float *gt = t->requires_grad ? ib_grad(ctx, t) : NULL;
    kl_backward_kernel(s->data, t->data, s->shape[0], s->shape[1], n->saved, n->out->grad[0], gs, gt);
}
static const ib_op op_kl_div_softmax = {"kl_div_softmax", kl_backward};

ib_tensor *ib_kl_div_softmax(ib_ctx *ctx, ib_tensor *student, ib_tensor *teacher) {
    char b1[64], b2[64];
    IB_ASSERT(student->ndim == 2 && ib_same_shape(student, teacher),
              "kl_div_softmax: student %s and teacher %s must both be (N, C)", ib_shape_str(student, b1, sizeof b1),
              ib_shape_str(teacher, b2, sizeof b2));
    IB_ASSERT(ib_is_contiguous(student) && ib_is_contiguous(teacher), "kl_div_softmax: contiguous inputs");
    int rows = student->shape[0], c = student->shape[1];
    IB_ASSERT(rows > 0 && c > 0, "kl_div_softmax: empty input %s", ib_shape_str(student, b1, sizeof b1));
    kl_saved *k = ib_arena_alloc(ctx->arena, sizeof *k);
    k->lse_s = ib_arena_alloc(ctx->arena, sizeof(double) * (size_t)rows);
    k->lse_t = ib_arena_alloc(ctx->arena, sizeof(double) * (size_t)rows);
    k->row_kl = ib_arena_alloc(ctx->arena, sizeof(double) * (size_t)rows);
    kl_forward_rows(student->data, teacher->data, rows, c, k);
    double total = 0;
    for (int r = 0; r < rows; r++) total += k->row_kl[r];
    ib_tensor *y = scalar_out(ctx, total / rows);
    ib_tensor *in[2] = {student, teacher};
    ib_node *n = ib_record(ctx, &op_kl_div_softmax, y, 2, in);
    if (n) n->saved = k;
    return y;
}

// ---------------------------------------------------------------------------------------------
// Smooth-L1

typedef struct {
    float beta;
    ib_reduce red;
} sl1_saved;

// Chunks of a fixed size summed in order: parallel, yet independent of the thread count.
#define SL1_CHUNK 4096

// pred, target: (M) -> sum over M of 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta (d = pred - target);
// beta == 0 is plain L1, as torch.
static void sl1_fwd_chunks(void *arg, int64_t lo, int64_t hi, int worker) {
    const loss_job *j = arg;
    const float *p = j->a, *t = j->b;
    const int64_t m = j->n;
    const float beta = j->beta;
    double *chunk_sum = j->out;
    for (int64_t ch = lo; ch < hi; ch++) {
        int64_t i1 = (ch + 1) * SL1_CHUNK < m ? (ch + 1) * SL1_CHUNK : m;
        double s = 0;
        for (int64_t i = ch * SL1_CHUNK; i < i1; i++) {
            double d = (double)p[i] - (double)t[i], a = fabs(d);
            s += a < beta ? 0.5 * d * d / beta : a - 0.5 * beta;
        }
        chunk_sum[ch] = s;
    }
}

static double sl1_forward_sum(const float *p, const float *t, int64_t m, float beta, double *chunk_sum) {
    int64_t chunks = (m + SL1_CHUNK - 1) / SL1_CHUNK;
    loss_job j = {p, t, NULL, chunk_sum, NULL, NULL, 0, m, 0, beta};
    ib_parallel_range(chunks, 1, sl1_fwd_chunks, &j);
    double total = 0;
    for (int64_t ch = 0; ch < chunks; ch++) total += chunk_sum[ch];
    return total;
}

// d/dpred = g * (d / beta if |d| < beta else sign(d)); d/dtarget is its negative.
static void sl1_bwd_range(void *arg, int64_t lo, int64_t hi, int worker) {
    const loss_job *j = arg;
    const float *p = j->a, *t = j->b;
    const float beta = j->beta;
    const double g = j->g;
    float *gp = j->ga, *gt = j->gb;
    for (int64_t i = lo; i < hi; i++) {
        double d = (double)p[i] - (double)t[i], a = fabs(d);
        double v = a < beta ? d / beta : (d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0);
        if (gp) gp[i] += (float)(g * v);
        if (gt) gt[i] -= (float)(g * v);
    }
}

static void sl1_backward_kernel(const float *p, const float *t, int64_t m, float beta, double g, float *gp,
                                float *gt) {
    loss_job j = {p, t, NULL, NULL, gp, gt, g, m, 0, beta};
    ib_parallel_range(m, ROW_WORK, sl1_bwd_range, &j);
}

static void sl1_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *p = n->in[0], *t = n->in[1];
    const sl1_saved *s = n->saved;
    int64_t m = ib_numel(p);
    if (m == 0) return;
    double g = (double)n->out->grad[0] / (s->red == IB_REDUCE_MEAN ? (double)m : 1.0);
    float *gp = p->requires_grad ? ib_grad(ctx, p) : NULL;
    float *gt = t->requires_grad ? ib_grad(ctx, t) : NULL;
    sl1_backward_kernel(p->data, t->data, m, s->beta, g, gp, gt);
}
static const ib_op op_smooth_l1 = {"smooth_l1", sl1_backward};

ib_tensor *ib_smooth_l1(ib_ctx *ctx, ib_tensor *pred, ib_tensor *target, float beta, ib_reduce red) {
    char b1[64], b2[64];
    IB_ASSERT(ib_same_shape(pred, target), "smooth_l1: pred %s and target %s differ", ib_shape_str(pred, b1, sizeof b1),
              ib_shape_str(target, b2, sizeof b2));
    IB_ASSERT(ib_is_contiguous(pred) && ib_is_contiguous(target), "smooth_l1: contiguous inputs");
    IB_ASSERT(beta >= 0, "smooth_l1: beta %g < 0", (double)beta);
    IB_ASSERT(red == IB_REDUCE_MEAN || red == IB_REDUCE_SUM, "smooth_l1: reduction %d", (int)red);
    int64_t m = ib_numel(pred);
    int64_t chunks = (m + SL1_CHUNK - 1) / SL1_CHUNK;
    double *chunk_sum = ib_arena_alloc(ctx->arena, sizeof(double) * (size_t)(chunks ? chunks : 1));
    double total = sl1_forward_sum(pred->data, target->data, m, beta, chunk_sum);
    // torch's mean over zero elements is NaN; an empty batch of boxes contributes 0 instead.
    ib_tensor *y = scalar_out(ctx, red == IB_REDUCE_MEAN ? (m ? total / (double)m : 0.0) : total);
    ib_tensor *in[2] = {pred, target};
    ib_node *n = ib_record(ctx, &op_smooth_l1, y, 2, in);
    if (n) {
        sl1_saved *s = ib_arena_alloc(ctx->arena, sizeof *s);
        s->beta = beta;
        s->red = red;
        n->saved = s;
    }
    return y;
}
