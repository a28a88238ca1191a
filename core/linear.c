// Matmul and linear (fully connected) ops on OpenBLAS SGEMM, forward and backward.
// Backward adds into the inputs' grads with beta = 1, so no temporary buffers are needed; the bias
// gradient is reduced per output column in double, rows in order (deterministic).
#include "core.h"

#include <cblas.h>
#include <string.h>

// Up to this many rows, linear's forward is one SGEMV per row.
#define LINEAR_GEMV_ROWS 2

// ---------------------------------------------------------------------------------------------
// Matmul

// a: (M, K), b: (K, N), gy: (M, N) -> ga += gy b^T (M, K), gb += a^T gy (K, N)
static void matmul_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *a = n->in[0], *b = n->in[1];
    const float *gy = n->out->grad;
    int M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (M == 0 || N == 0 || K == 0) return;
    if (a->requires_grad)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, N, 1.0f, gy, N, b->data, N, 1.0f,
                    ib_grad(ctx, a), K);
    if (b->requires_grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, M, 1.0f, a->data, K, gy, N, 1.0f,
                    ib_grad(ctx, b), N);
}
static const ib_op op_matmul = {"matmul", matmul_backward};

// a: (M, K), b: (K, N) -> (M, N)
ib_tensor *ib_matmul(ib_ctx *ctx, ib_tensor *a, ib_tensor *b) {
    char sa[64], sb[64];
    IB_ASSERT(a->ndim == 2 && b->ndim == 2 && a->shape[1] == b->shape[0], "matmul: shapes %s and %s do not fit",
              ib_shape_str(a, sa, sizeof sa), ib_shape_str(b, sb, sizeof sb));
    IB_ASSERT(ib_is_contiguous(a) && ib_is_contiguous(b), "matmul: contiguous inputs");
    int M = a->shape[0], K = a->shape[1], N = b->shape[1];
    ib_tensor *y = ib_tensor_new(ctx, 2, (int[]){M, N});
    if (K == 0) memset(y->data, 0, sizeof(float) * (size_t)M * (size_t)N);
    else if (M > 0 && N > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a->data, K, b->data, N, 0.0f,
                    y->data, N);
    ib_record(ctx, &op_matmul, y, 2, (ib_tensor *[]){a, b});
    return y;
}

// ---------------------------------------------------------------------------------------------
// Linear

// x: (N, in), w: (out, in), gy: (N, out) -> gx += gy w, gw += gy^T x, gb += sum_rows gy
static void linear_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    const float *gy = n->out->grad;
    int N = x->shape[0], in = x->shape[1], out = w->shape[0];
    if (N == 0 || out == 0) return;
    if (x->requires_grad && in > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, gy, out, w->data, in, 1.0f,
                    ib_grad(ctx, x), in);
    if (w->requires_grad && in > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, gy, out, x->data, in, 1.0f,
                    ib_grad(ctx, w), in);
    if (b && b->requires_grad) {
        double *acc = ib_arena_calloc(ctx->arena, sizeof(double) * (size_t)out);
        for (int i = 0; i < N; i++) {
            const float *row = gy + (int64_t)i * out;
            for (int j = 0; j < out; j++) acc[j] += row[j];
        }
        float *gb = ib_grad(ctx, b);
        for (int j = 0; j < out; j++) gb[j] += (float)acc[j];
    }
}
static const ib_op op_linear = {"linear", linear_backward};

// x: (N, in), w: (out, in), b: (out) or NULL -> (N, out)
ib_tensor *ib_linear(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b) {
    char sx[64], sw[64];
    IB_ASSERT(x->ndim == 2 && w->ndim == 2 && x->shape[1] == w->shape[1], "linear: x %s and w %s do not fit",
              ib_shape_str(x, sx, sizeof sx), ib_shape_str(w, sw, sizeof sw));
    IB_ASSERT(!b || (b->ndim == 1 && b->shape[0] == w->shape[0]), "linear: bias %s for %d outputs",
              ib_shape_str(b, sx, sizeof sx), w->shape[0]);
    IB_ASSERT(ib_is_contiguous(x) && ib_is_contiguous(w) && (!b || ib_is_contiguous(b)),
              "linear: contiguous inputs");
    int N = x->shape[0], in = x->shape[1], out = w->shape[0];
    ib_tensor *y = ib_tensor_new(ctx, 2, (int[]){N, out});
    // The bias goes in first so the GEMM adds onto it (beta = 1).
    for (int i = 0; i < N; i++) {
        float *row = y->data + (int64_t)i * out;
        if (b) memcpy(row, b->data, sizeof(float) * (size_t)out);
        else memset(row, 0, sizeof(float) * (size_t)out);
    }
    // A few rows (inference at batch 1) are matrix-vector products: SGEMM would first pack all of w
    // (5 MB for a 1280 -> 1000 classifier), which costs more than reading it once.
    if (N > 0 && out > 0 && in > 0 && N <= LINEAR_GEMV_ROWS)
        for (int i = 0; i < N; i++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w->data, in, x->data + (int64_t)i * in, 1, 1.0f,
                        y->data + (int64_t)i * out, 1);
    else if (N > 0 && out > 0 && in > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in, 1.0f, x->data, in, w->data, in, 1.0f,
                    y->data, out);
    ib_record(ctx, &op_linear, y, 3, (ib_tensor *[]){x, w, b});
    return y;
}
