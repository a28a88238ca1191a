// Gradient clipping by the global L2 norm (torch.nn.utils.clip_grad_norm_ semantics). The norm is
// summed in double over a fixed split of the gradient block, so it is the same for any thread count.
#include "optim/optim.h"

#include <math.h>
#include <omp.h>

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

double ib_grad_norm(const ib_params *ps) {
    IB_ASSERT(ps->grad, "ib_grad_norm: call ib_params_alloc first");
    int64_t n = ps->numel_params;
    double part[N_PIECES];
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int k = 0; k < N_PIECES; k++) {
        int64_t lo = n * k / N_PIECES, hi = n * (k + 1) / N_PIECES;
        part[k] = sum_squares(ps->grad + lo, hi - lo);
    }
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
#pragma omp parallel if (n >= PAR_MIN)
    {
        int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
        int64_t lo = n * tid / nth, hi = n * (tid + 1) / nth;
        scale_kernel(ps->grad + lo, hi - lo, c);
    }
    return norm;
}
