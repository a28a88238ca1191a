// Gradient clipping by the global L2 norm (torch.nn.utils.clip_grad_norm_ semantics). The norm is
// summed in double over a fixed split of the gradient block, so it is the same for any thread count.
#include "optim/optim.h"

#include <math.h>

// The gradient block is cut into this many fixed pieces whatever the thread count; each piece is
// summed sequentially, then the pieces in order.
#define N_PIECES 64
#define PAR_MIN 32768

// g: (n) -> sum of g^2 in double.
static double sum_squares(const float *g, int64_t n) {
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += (double)g[j] * (double)g[j];
    return s;
}

// g: (n). g *= c.
static void scale_kernel(float *g, int64_t n, float c) {
    for (int64_t j = 0; j < n; j++) g[j] = g[j] * c;
}

// On the library's pool: the norm in N_PIECES fixed pieces summed in order (independent of the threads),
// the scaling over element ranges.
typedef struct {
    float *g;
    int64_t n;
    double *part;
    float c;
} clip_job;

static void norm_pieces(void *p, int64_t k0, int64_t k1, int worker) {
    const clip_job *j = p;
    for (int64_t k = k0; k < k1; k++) {
        int64_t lo = j->n * k / N_PIECES, hi = j->n * (k + 1) / N_PIECES;
        j->part[k] = sum_squares(j->g + lo, hi - lo);
    }
}

static void scale_range(void *p, int64_t lo, int64_t hi, int worker) {
    const clip_job *j = p;
    scale_kernel(j->g + lo, hi - lo, j->c);
}

double ib_grad_norm(const ib_params *ps) {
    IB_ASSERT(ps->grad, "ib_grad_norm: call ib_params_alloc first");
    int64_t n = ps->numel_params;
    double part[N_PIECES];
    clip_job j = {ps->grad, n, part, 1.0f};
    ib_parallel_range(N_PIECES, n >= PAR_MIN ? 1 : N_PIECES, norm_pieces, &j);
    double s = 0;
    for (int k = 0; k < N_PIECES; k++) s += part[k];
    return sqrt(s);
}

double ib_clip_grad_norm(ib_params *ps, double max_norm) {
    IB_ASSERT(max_norm > 0, "ib_clip_grad_norm: max_norm %g must be > 0", max_norm);
    double norm = ib_grad_norm(ps);
    if (!isfinite(norm)) return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;
    int64_t n = ps->numel_params;
    float c = (float)coef;
    clip_job j = {ps->grad, n, NULL, c};
    ib_parallel_range(n, PAR_MIN / 2, scale_range, &j);
    return norm;
}
