// The optimizers: SGD, RMSProp (TF and torch forms) and AdamW over a flat parameter block, with their
// state in one block and its save/restore for checkpoints. Element operations follow torch.optim's
// order (float32, scalars computed in double and rounded once) so parity holds to float rounding.
#include "optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Below this many parameters a step runs on one thread: forking costs more than it saves.
#define PAR_MIN 32768

// A run of consecutive parameter tensors that share a weight decay; `masked`: only its elements whose byte in
// the step's element mask is set (ib_optim_step_active).
typedef struct {
    int64_t off, n;
    float wd;
    int masked;
} segment;

struct ib_optim {
    ib_optim_cfg cfg;
    ib_params *ps;
    int64_t n;               // numel_params
    int64_t step;
    int n_state;
    const char *state_name[2];
    float *state;            // n_state * n floats
    segment *seg;
    int n_seg;
    segment *active_seg;     // ib_optim_step_active's segments, rebuilt every call (ps->n at most)
    const uint8_t *elem;     // ib_optim_step_active's element mask during the call
    int clear;               // and whether it zeroes the gradients it stepped
};

ib_optim_cfg ib_optim_cfg_default(ib_optim_kind kind, int rmsprop_torch) {
    ib_optim_cfg c = {.kind = kind};
    switch (kind) {
    case IB_OPTIM_SGD: break;
    case IB_OPTIM_RMSPROP:
        c.rmsprop_torch = rmsprop_torch;
        if (rmsprop_torch) {
            c.rho = 0.99f;
            c.eps = 1e-8f;
        } else {
            c.rho = 0.9f;
            c.momentum = 0.9f;
            c.eps = 1e-3f;
        }
        break;
    case IB_OPTIM_ADAMW:
        c.beta1 = 0.9f;
        c.beta2 = 0.999f;
        c.eps = 1e-8f;
        c.weight_decay = 0.01f;
        break;
    }
    return c;
}

ib_status ib_optim_cfg_check(const ib_optim_cfg *c) {
    if (c->kind != IB_OPTIM_SGD && c->kind != IB_OPTIM_RMSPROP && c->kind != IB_OPTIM_ADAMW)
        return ib_fail(IB_ERR_ARG, "optimizer: unknown kind %d", (int)c->kind);
    if (!(c->weight_decay >= 0 && isfinite(c->weight_decay)))
        return ib_fail(IB_ERR_ARG, "optimizer: weight decay %g must be >= 0", c->weight_decay);
    if (c->kind != IB_OPTIM_ADAMW && !(c->momentum >= 0 && c->momentum < 1))
        return ib_fail(IB_ERR_ARG, "optimizer: momentum %g must be in [0, 1)", c->momentum);
    if (c->kind == IB_OPTIM_SGD && c->nesterov && c->momentum <= 0)
        return ib_fail(IB_ERR_ARG, "optimizer: Nesterov momentum needs momentum > 0");
    if (c->kind == IB_OPTIM_RMSPROP && !(c->rho >= 0 && c->rho < 1))
        return ib_fail(IB_ERR_ARG, "optimizer: RMSProp rho %g must be in [0, 1)", c->rho);
    if (c->kind == IB_OPTIM_ADAMW && !(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1))
        return ib_fail(IB_ERR_ARG, "optimizer: AdamW betas (%g, %g) must be in [0, 1)", c->beta1, c->beta2);
    if (c->kind != IB_OPTIM_SGD && !(c->eps > 0 && isfinite(c->eps)))
        return ib_fail(IB_ERR_ARG, "optimizer: eps %g must be > 0", c->eps);
    return IB_OK;
}

const char *ib_optim_name(const ib_optim *opt) {
    switch (opt->cfg.kind) {
    case IB_OPTIM_SGD: return "sgd";
    case IB_OPTIM_RMSPROP: return opt->cfg.rmsprop_torch ? "rmsprop_torch" : "rmsprop_tf";
    case IB_OPTIM_ADAMW: return "adamw";
    }
    return "?";
}

const ib_optim_cfg *ib_optim_get_cfg(const ib_optim *opt) { return &opt->cfg; }

void ib_optim_reset(ib_optim *opt) {
    opt->step = 0;
    size_t n = (size_t)opt->n;
    memset(opt->state, 0, sizeof(float) * n * (size_t)opt->n_state);
    // TF v1 starts the mean square at one, so the first steps are not divided by a tiny rms.
    if (opt->cfg.kind == IB_OPTIM_RMSPROP && !opt->cfg.rmsprop_torch)
        for (size_t j = 0; j < n; j++) opt->state[j] = 1.0f;
}

ib_optim *ib_optim_new(const ib_optim_cfg *cfg, ib_params *ps) {
    IB_ASSERT(ps->data && ps->grad, "ib_optim_new: call ib_params_alloc first");
    if (ib_optim_cfg_check(cfg)) return NULL;
    ib_optim *opt = calloc(1, sizeof *opt);
    if (!opt) {
        ib_fail(IB_ERR_NOMEM, "optimizer: out of memory");
        return NULL;
    }
    opt->cfg = *cfg;
    opt->ps = ps;
    opt->n = ps->numel_params;
    switch (cfg->kind) {
    case IB_OPTIM_SGD:
        if (cfg->momentum != 0) opt->state_name[opt->n_state++] = "momentum_buffer";
        break;
    case IB_OPTIM_RMSPROP:
        opt->state_name[opt->n_state++] = cfg->rmsprop_torch ? "square_avg" : "ms";
        if (cfg->momentum != 0) opt->state_name[opt->n_state++] = cfg->rmsprop_torch ? "momentum_buffer" : "mom";
        break;
    case IB_OPTIM_ADAMW:
        opt->state_name[opt->n_state++] = "exp_avg";
        opt->state_name[opt->n_state++] = "exp_avg_sq";
        break;
    }
    size_t n_state_floats = (size_t)opt->n * (size_t)opt->n_state;
    opt->state = malloc(sizeof(float) * (n_state_floats ? n_state_floats : 1));
    opt->seg = malloc(sizeof(segment) * (size_t)(ps->n ? ps->n : 1));
    opt->active_seg = malloc(sizeof(segment) * (size_t)(ps->n ? ps->n : 1));
    if (!opt->state || !opt->seg || !opt->active_seg) {
        ib_optim_free(opt);
        ib_fail(IB_ERR_NOMEM, "optimizer: out of memory for %lld state floats", (long long)n_state_floats);
        return NULL;
    }
    // Segments in block order; neighbours with the same decay merge, so a step is a few long loops.
    for (int i = 0; i < ps->n; i++) {
        if (ps->is_buffer[i]) continue;
        ib_tensor *t = ps->t[i];
        int64_t off = t->data - ps->data, n = ib_numel(t);
        if (n == 0) continue;
        IB_ASSERT(off >= 0 && off + n <= opt->n, "ib_optim_new: tensor %s is outside the parameter block", t->name);
        float wd = (cfg->no_decay_bn_bias && ps->no_decay[i]) ? 0.0f : cfg->weight_decay;
        segment *last = opt->n_seg ? &opt->seg[opt->n_seg - 1] : NULL;
        if (last && last->wd == wd && last->off + last->n == off) last->n += n;
        else opt->seg[opt->n_seg++] = (segment){off, n, wd, 0};
    }
    ib_optim_reset(opt);
    return opt;
}

void ib_optim_free(ib_optim *opt) {
    if (!opt) return;
    free(opt->state);
    free(opt->seg);
    free(opt->active_seg);
    free(opt);
}

// ---------------------------------------------------------------------------------------------
// Kernels: one per kind, over a range of the flat block. w, g and the state arrays are (n).

// The bits of x where on, else of y: a select the vectoriser takes (it leaves `on ? x : y` a branch at -O2).
static inline float select_f(int on, float x, float y) {
    uint32_t a, b, k = 0u - (uint32_t)on;
    memcpy(&a, &x, 4), memcpy(&b, &y, 4);
    a = (a & k) | (b & ~k);
    memcpy(&x, &a, 4);
    return x;
}

// The SGD loop, specialised by constant flags (each call below passes literals, so no branch is left in the
// loop and it vectorises): use_wd (wd != 0), has_buf (momentum), nest (Nesterov), masked (step only where mask
// is set, leaving weight, momentum and gradient of the others as they are) and clear (zero the stepped
// gradients). Every variant gives each stepped element the same arithmetic, so the same bits.
static inline __attribute__((always_inline)) void sgd_loop(float *w, float *g, float *buf, const uint8_t *mask,
                                                           int64_t n, float neg_lr, float wd, float momentum,
                                                           int use_wd, int has_buf, int nest, int masked, int clear) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        int on = masked ? mask[j] != 0 : 1;
        float d = g[j];
        if (use_wd) d = d + wd * w[j];
        if (has_buf) {
            float b = buf[j] * momentum + d;
            buf[j] = masked ? select_f(on, b, buf[j]) : b;
            d = nest ? d + momentum * b : b;
        }
        float x = w[j] + neg_lr * d;
        w[j] = masked ? select_f(on, x, w[j]) : x;
        if (clear) g[j] = select_f(on, 0.0f, g[j]);
    }
}

#define SGD_VARIANTS(M, C)                                                                       \
    do {                                                                                         \
        if (!buf) {                                                                              \
            if (use_wd) sgd_loop(w, g, buf, mask, n, neg_lr, wd, momentum, 1, 0, 0, M, C);        \
            else sgd_loop(w, g, buf, mask, n, neg_lr, wd, momentum, 0, 0, 0, M, C);               \
        } else if (!nesterov) {                                                                  \
            if (use_wd) sgd_loop(w, g, buf, mask, n, neg_lr, wd, momentum, 1, 1, 0, M, C);        \
            else sgd_loop(w, g, buf, mask, n, neg_lr, wd, momentum, 0, 1, 0, M, C);               \
        } else {                                                                                 \
            if (use_wd) sgd_loop(w, g, buf, mask, n, neg_lr, wd, momentum, 1, 1, 1, M, C);        \
            else sgd_loop(w, g, buf, mask, n, neg_lr, wd, momentum, 0, 1, 1, M, C);               \
        }                                                                                        \
    } while (0)

// torch.optim.SGD, dampening 0. buf NULL when momentum is 0. A zero buffer makes the first step's
// buf = g, as torch's clone of the first gradient.
static void sgd_kernel(float *w, const float *gc, float *buf, int64_t n, float lr, float wd, float momentum,
                       int nesterov) {
    float *g = (float *)gc, neg_lr = -lr;   // not written: clear is 0
    const uint8_t *mask = NULL;
    int use_wd = wd != 0;
    SGD_VARIANTS(0, 0);
}

// sgd_kernel on the elements whose mask byte is set, the others left as they are (weight, momentum, gradient),
// and the stepped gradients zeroed when clear.
static void sgd_kernel_masked(float *w, float *g, float *buf, const uint8_t *mask, int64_t n, float lr, float wd,
                              float momentum, int nesterov, int clear) {
    float neg_lr = -lr;
    int use_wd = wd != 0;
    if (clear) SGD_VARIANTS(1, 1);
    else SGD_VARIANTS(1, 0);
}
#undef SGD_VARIANTS

// tf.compat.v1.train.RMSPropOptimizer: ms = rho*ms + (1-rho)*g^2; mom = momentum*mom + lr*g/sqrt(ms+eps);
// w -= mom. mom NULL when momentum is 0 (then w -= lr*g/sqrt(ms+eps)).
static void rmsprop_tf_kernel(float *w, const float *g, float *ms, float *mom, int64_t n, float lr, float wd,
                              float rho, float one_minus_rho, float momentum, float eps) {
    for (int64_t j = 0; j < n; j++) {
        float d = g[j];
        if (wd != 0) d = d + wd * w[j];
        float s = rho * ms[j] + one_minus_rho * d * d;
        ms[j] = s;
        float u = lr * d / sqrtf(s + eps);
        if (mom) {
            u = momentum * mom[j] + u;
            mom[j] = u;
        }
        w[j] = w[j] - u;
    }
}

// torch.optim.RMSprop, not centred: sa = alpha*sa + (1-alpha)*g^2; avg = sqrt(sa) + eps;
// buf = momentum*buf + g/avg, w -= lr*buf (or w -= lr*g/avg without momentum).
static void rmsprop_torch_kernel(float *w, const float *g, float *sa, float *buf, int64_t n, float lr, float wd,
                                 float alpha, float one_minus_alpha, float momentum, float eps) {
    float neg_lr = -lr;
    for (int64_t j = 0; j < n; j++) {
        float d = g[j];
        if (wd != 0) d = d + wd * w[j];
        float s = sa[j] * alpha + one_minus_alpha * d * d;
        sa[j] = s;
        float avg = sqrtf(s) + eps;
        if (buf) {
            float b = buf[j] * momentum + d / avg;
            buf[j] = b;
            w[j] = w[j] + neg_lr * b;
        } else {
            w[j] = w[j] + neg_lr * d / avg;
        }
    }
}

// torch.optim.AdamW: w *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
// w -= step_size * m / (sqrt(v)/sqrt(bc2) + eps), step_size = lr/bc1.
static void adamw_kernel(float *w, const float *g, float *m, float *v, int64_t n, float decay_mul, float beta1,
                         float one_minus_beta1, float beta2, float one_minus_beta2, float bc2_sqrt,
                         float neg_step_size, float eps) {
    for (int64_t j = 0; j < n; j++) {
        float x = w[j];
        if (decay_mul != 1.0f) x = x * decay_mul;
        float mj = m[j] * beta1 + one_minus_beta1 * g[j];
        float vj = v[j] * beta2 + one_minus_beta2 * g[j] * g[j];
        m[j] = mj;
        v[j] = vj;
        float denom = sqrtf(vj) / bc2_sqrt + eps;
        w[j] = x + neg_step_size * mj / denom;
    }
}

// Elements [off, off + n) of the block, all with weight decay wd.
static void step_run(ib_optim *opt, float wd, int64_t off, int64_t n, float lr) {
    const ib_optim_cfg *c = &opt->cfg;
    int64_t N = opt->n;
    float *w = opt->ps->data + off;
    const float *g = opt->ps->grad + off;
    float *s0 = opt->n_state > 0 ? opt->state + off : NULL;
    float *s1 = opt->n_state > 1 ? opt->state + N + off : NULL;
    switch (c->kind) {
    case IB_OPTIM_SGD:
        sgd_kernel(w, g, s0, n, lr, wd, c->momentum, c->nesterov);
        break;
    case IB_OPTIM_RMSPROP: {
        float one_minus_rho = (float)(1.0 - (double)c->rho);
        if (c->rmsprop_torch)
            rmsprop_torch_kernel(w, g, s0, s1, n, lr, wd, c->rho, one_minus_rho, c->momentum, c->eps);
        else
            rmsprop_tf_kernel(w, g, s0, s1, n, lr, wd, c->rho, one_minus_rho, c->momentum, c->eps);
        break;
    }
    case IB_OPTIM_ADAMW: {
        // Scalars in double as torch computes them in Python, each rounded to float once.
        double step = (double)opt->step;
        double bc1 = 1.0 - pow((double)c->beta1, step);
        double bc2 = 1.0 - pow((double)c->beta2, step);
        float decay_mul = (float)(1.0 - (double)lr * (double)wd);
        adamw_kernel(w, g, s0, s1, n, decay_mul, c->beta1, (float)(1.0 - (double)c->beta1), c->beta2,
                     (float)(1.0 - (double)c->beta2), (float)sqrt(bc2), (float)(-((double)lr / bc1)), c->eps);
        break;
    }
    }
    if (opt->clear) {   // read above, still in cache
        float *gz = opt->ps->grad + off;
        if (n >= 16) memset(gz, 0, sizeof(float) * (size_t)n);
        else
            for (int64_t j = 0; j < n; j++) gz[j] = 0;
    }
}

// Elements [off, off + n) of the block, n <= STRETCH, stepped where mask (indexed from off) is set. A kernel
// centre's slice is runs of 3 or 5 weights every 5 or 7; stepped run by run, the calls cost three times the
// arithmetic. SGD (what supernets train with) has a masked kernel; the others run over all n, then the elements
// outside the mask get back their weight, gradient and state. Every kernel is elementwise, so the set elements
// get exactly what step_run gives them alone.
#define STRETCH 256
static void step_masked(ib_optim *opt, float wd, int64_t off, int64_t n, const uint8_t *mask, float lr) {
    const ib_optim_cfg *c = &opt->cfg;
    if (c->kind == IB_OPTIM_SGD) {
        sgd_kernel_masked(opt->ps->data + off, opt->ps->grad + off, opt->n_state > 0 ? opt->state + off : NULL, mask,
                          n, lr, wd, c->momentum, c->nesterov, opt->clear);
        return;
    }
    float keep[4][STRETCH];
    float *arr[4] = {opt->ps->data + off, opt->ps->grad + off, NULL, NULL};
    for (int i = 0; i < opt->n_state; i++) arr[2 + i] = opt->state + (size_t)i * (size_t)opt->n + off;
    int na = 2 + opt->n_state;
    for (int i = 0; i < na; i++) memcpy(keep[i], arr[i], sizeof(float) * (size_t)n);
    step_run(opt, wd, off, n, lr);
    for (int64_t j = 0; j < n; j++)
        if (!mask[j])
            for (int i = 0; i < na; i++) arr[i][j] = keep[i][j];
}

// Elements [lo, hi) of segment s: all of them, or (masked) the runs of set bytes of the element mask; runs
// shorter than STRETCH with gaps between them, stepped a stretch of them at a time (step_masked).
static void step_range(ib_optim *opt, const segment *s, int64_t lo, int64_t hi, float lr) {
    if (!s->masked) {
        step_run(opt, s->wd, s->off + lo, hi - lo, lr);
        return;
    }
    const uint8_t *m = opt->elem + s->off;
    for (int64_t a = ib_mask_next(m, lo, hi, 1), b; a < hi; a = ib_mask_next(m, b, hi, 1)) {
        b = ib_mask_next(m, a, hi, 0);
        if (b - a >= STRETCH || b == hi) step_run(opt, s->wd, s->off + a, b - a, lr);
        else {   // a short run: the stretch from it, whatever runs and gaps follow
            b = a + STRETCH < hi ? a + STRETCH : hi;
            step_masked(opt, s->wd, s->off + a, b - a, m + a, lr);
        }
    }
}

// Elements [lo, hi) of the segments laid end to end. Elements are independent, so the result does not
// depend on how the pool splits them.
typedef struct {
    ib_optim *opt;
    const segment *seg;
    int n_seg;
    float lr;
} step_job;

static void step_elements(void *p, int64_t lo, int64_t hi, int worker) {
    const step_job *j = p;
    int64_t base = 0;
    for (int k = 0; k < j->n_seg && base < hi; k++) {
        const segment *s = &j->seg[k];
        int64_t a = lo > base ? lo - base : 0, b = hi - base < s->n ? hi - base : s->n;
        if (b > a) step_range(j->opt, s, a, b, j->lr);
        base += s->n;
    }
}

static void step_segments(ib_optim *opt, const segment *seg, int n_seg, int64_t total, float lr) {
    step_job j = {opt, seg, n_seg, lr};
    ib_parallel_range(total, PAR_MIN / 2, step_elements, &j);
}

void ib_optim_step(ib_optim *opt, float lr) {
    opt->step++;
    step_segments(opt, opt->seg, opt->n_seg, opt->n, lr);
}

void ib_optim_step_active(ib_optim *opt, float lr, const uint8_t *active, const uint8_t *elem, int clear) {
    if (!active) {
        opt->clear = clear;
        ib_optim_step(opt, lr);
        opt->clear = 0;
        return;
    }
    opt->step++;
    const ib_params *ps = opt->ps;
    const ib_optim_cfg *cfg = &opt->cfg;
    int n_seg = 0;
    int64_t total = 0;
    for (int i = 0; i < ps->n; i++) {
        if (ps->is_buffer[i] || !active[i]) continue;
        const ib_tensor *t = ps->t[i];
        int64_t off = t->data - ps->data, n = ib_numel(t);
        if (n == 0) continue;
        float wd = (cfg->no_decay_bn_bias && ps->no_decay[i]) ? 0.0f : cfg->weight_decay;
        int masked = active[i] == 2 && elem;
        segment *last = n_seg ? &opt->active_seg[n_seg - 1] : NULL;
        if (last && last->wd == wd && last->masked == masked && last->off + last->n == off) last->n += n;
        else opt->active_seg[n_seg++] = (segment){off, n, wd, masked};
        total += n;
    }
    opt->elem = elem, opt->clear = clear;
    step_segments(opt, opt->active_seg, n_seg, total, lr);
    opt->elem = NULL, opt->clear = 0;
}

// ---------------------------------------------------------------------------------------------
// State for checkpoints

int ib_optim_state_count(const ib_optim *opt) { return opt->n_state; }

void ib_optim_state(ib_optim *opt, int i, const char **name, float **data, int64_t *n) {
    IB_ASSERT(i >= 0 && i < opt->n_state, "ib_optim_state: index %d of %d", i, opt->n_state);
    if (name) *name = opt->state_name[i];
    if (data) *data = opt->state + (size_t)i * (size_t)opt->n;
    if (n) *n = opt->n;
}

int64_t ib_optim_step_count(const ib_optim *opt) { return opt->step; }
void ib_optim_set_step_count(ib_optim *opt, int64_t step) {
    IB_ASSERT(step >= 0, "ib_optim_set_step_count: %lld", (long long)step);
    opt->step = step;
}

ib_status ib_optim_save(const ib_optim *opt, ib_h5 *f, const char *group) {
    char path[1024];
    IB_ASSERT(opt->n <= INT32_MAX, "ib_optim_save: %lld parameters do not fit one dataset", (long long)opt->n);
    int64_t step = opt->step;
    snprintf(path, sizeof path, "%s/step", group);
    ib_status s = ib_h5_write_i64(f, path, &step, 1, (int[]){1});
    if (s) return s;
    s = ib_h5_set_attr_str(f, group, "optimizer", ib_optim_name(opt));
    if (s) return s;
    for (int i = 0; i < opt->n_state; i++) {
        snprintf(path, sizeof path, "%s/%s", group, opt->state_name[i]);
        s = ib_h5_write_f32(f, path, opt->state + (size_t)i * (size_t)opt->n, 1, (int[]){(int)opt->n});
        if (s) return s;
    }
    return IB_OK;
}

ib_status ib_optim_load(ib_optim *opt, ib_h5 *f, const char *group) {
    char path[1024], *kind = NULL;
    ib_status s = ib_h5_attr_str(f, group, "optimizer", &kind);
    if (s) return s;
    int same = strcmp(kind, ib_optim_name(opt)) == 0;
    if (!same) {
        s = ib_fail(IB_ERR_FORMAT, "%s: %s holds %s state, this run uses %s (resume with the same optimizer)",
                    ib_h5_path(f), group, kind, ib_optim_name(opt));
        free(kind);
        return s;
    }
    free(kind);
    for (int i = 0; i < opt->n_state; i++) {
        snprintf(path, sizeof path, "%s/%s", group, opt->state_name[i]);
        if (!ib_h5_exists(f, path))
            return ib_fail(IB_ERR_FORMAT, "%s: no %s (was momentum off when it was saved?)", ib_h5_path(f), path);
        s = ib_h5_read_f32(f, path, opt->state + (size_t)i * (size_t)opt->n, opt->n);
        if (s) return s;
    }
    int64_t step;
    snprintf(path, sizeof path, "%s/step", group);
    s = ib_h5_read_i64(f, path, &step, 1);
    if (s) return s;
    if (step < 0) return ib_fail(IB_ERR_FORMAT, "%s: %s is negative (%lld)", ib_h5_path(f), path, (long long)step);
    opt->step = step;
    return IB_OK;
}
