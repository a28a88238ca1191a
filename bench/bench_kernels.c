// Kernel microbenchmark: conv 1x1, full 3x3 conv and depthwise conv at mobile-network shapes, forward
// and backward, as median time and GFLOP/s beside OpenBLAS SGEMM measured in the same run (the ceiling).
// Usage: bench_kernels [--threads N] [--repeats R] [--json]
#include "core/core.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int n, cin, cout, h, w, k, stride, pad, groups;
} bench_case;

static const bench_case CASES[] = {
    {"conv1x1 96->24", 32, 96, 24, 16, 16, 1, 1, 0, 1},
    {"conv1x1 144->24", 32, 144, 24, 16, 16, 1, 1, 0, 1},
    {"conv1x1 24->144", 32, 24, 144, 16, 16, 1, 1, 0, 1},
    {"conv1x1 256->256", 32, 256, 256, 28, 28, 1, 1, 0, 1},
    {"conv3x3 32->32", 32, 32, 32, 32, 32, 3, 1, 1, 1},
    {"conv3x3 32->64 s2", 32, 32, 64, 32, 32, 3, 2, 1, 1},
    {"dw3x3 144 s1", 32, 144, 144, 16, 16, 3, 1, 1, 144},
    {"dw3x3 144 s2", 32, 144, 144, 16, 16, 3, 2, 1, 144},
    {"dw5x5 144 s1", 32, 144, 144, 16, 16, 5, 1, 2, 144},
    {"dw5x5 144 s2", 32, 144, 144, 16, 16, 5, 2, 2, 144},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

typedef struct {
    double fwd_ms, bwd_ms, fwd_gflops, bwd_gflops;
} bench_result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static float *alloc_filled(int64_t n, uint64_t seed) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!p) return NULL;
    ib_rng r;
    ib_rng_seed(&r, seed, 3);
    ib_rng_fill_normal(&r, p, n, 0.0f, 1.0f);
    return p;
}

// Median seconds of one SGEMM (M = N = K = n) over `reps` runs after two warm-ups.
static double time_sgemm(int n, int reps, double *times) {
    int64_t nn = (int64_t)n * n;
    float *a = alloc_filled(nn, 1), *b = alloc_filled(nn, 2), *c = calloc((size_t)nn, sizeof(float));
    if (!a || !b || !c) return -1;
    for (int r = -2; r < reps; r++) {
        double t0 = ib_time_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (r >= 0) times[r] = ib_time_s() - t0;
    }
    free(a);
    free(b);
    free(c);
    return median(times, reps);
}

// Times forward (recording off) and backward (the op's backward function alone, upstream grad given)
// of one case. Leaves live outside the arena with their grads set, so nothing but the op allocates.
static int run_case(const bench_case *bc, int reps, double *times, bench_result *res) {
    int K = bc->k, cpg = bc->cin / bc->groups;
    int ho = (bc->h + 2 * bc->pad - K) / bc->stride + 1, wo = (bc->w + 2 * bc->pad - K) / bc->stride + 1;
    int xs[4] = {bc->n, bc->cin, bc->h, bc->w}, ws[4] = {bc->cout, cpg, K, K}, bs[1] = {bc->cout};
    ib_tensor x, w, b;
    ib_tensor_init(&x, NULL, 4, xs);
    ib_tensor_init(&w, NULL, 4, ws);
    ib_tensor_init(&b, NULL, 1, bs);
    int64_t nx = ib_numel(&x), nw = ib_numel(&w), ny = (int64_t)bc->n * bc->cout * ho * wo;
    x.data = alloc_filled(nx, 10);
    w.data = alloc_filled(nw, 11);
    b.data = alloc_filled(bc->cout, 12);
    x.grad = calloc((size_t)nx, sizeof(float));
    w.grad = calloc((size_t)nw, sizeof(float));
    b.grad = calloc((size_t)bc->cout, sizeof(float));
    float *gy = alloc_filled(ny, 13);
    int ok = x.data && w.data && b.data && x.grad && w.grad && b.grad && gy;
    ib_ctx *ctx = ib_ctx_new();
    for (int pass = 0; pass < 2 && ok; pass++) {
        int backward = pass == 1;
        x.requires_grad = w.requires_grad = b.requires_grad = backward;
        ctx->recording = backward;
        for (int r = -2; r < reps; r++) {
            ib_ctx_reset(ctx);
            double t0 = ib_time_s();
            ib_tensor *y = ib_conv2d(ctx, &x, &w, &b, bc->stride, bc->pad, 1, bc->groups);
            double t1 = ib_time_s();
            if (backward) {
                ib_node *node = &ctx->tape[ctx->tape_len - 1];
                y->grad = gy;
                ctx->recording = 0;   // as ib_backward does while replaying
                t0 = ib_time_s();
                node->op->backward(ctx, node);
                t1 = ib_time_s();
                ctx->recording = 1;
            }
            if (r >= 0) times[r] = t1 - t0;
        }
        double t = median(times, reps);
        double flops = 2.0 * bc->n * bc->cout * ho * wo * (double)cpg * K * K;
        if (backward) {
            flops *= 2;   // dx and dW each cost as much as the forward; db is negligible
            res->bwd_ms = 1e3 * t;
            res->bwd_gflops = flops / t * 1e-9;
        } else {
            res->fwd_ms = 1e3 * t;
            res->fwd_gflops = flops / t * 1e-9;
        }
    }
    ib_ctx_free(ctx);
    free(x.data);
    free(w.data);
    free(b.data);
    free(x.grad);
    free(w.grad);
    free(b.grad);
    free(gy);
    return ok;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_kernels [--threads N] [--repeats R] [--json]\n"
               "  conv 1x1, conv 3x3 and depthwise conv forward/backward: median time and GFLOP/s,\n"
               "  beside OpenBLAS SGEMM (1024^3) measured in the same run.\n"
               "  --threads N   OpenMP and OpenBLAS threads (default 2)\n"
               "  --repeats R   timed repeats per measurement after 2 warm-ups (default 9)\n"
               "  --json        print one JSON object instead of the table\n");
}

int main(int argc, char **argv) {
    int threads = 2, reps = 9, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_kernels: unknown or incomplete argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (threads < 1 || reps < 1) {
        fprintf(stderr, "bench_kernels: --threads and --repeats must be at least 1\n");
        return 2;
    }
    ib_set_threads(threads);
    double *times = malloc(sizeof(double) * (size_t)reps);
    if (!times) return 1;

    const int gemm_n = 1024;
    double t_gemm = time_sgemm(gemm_n, reps, times);
    if (t_gemm <= 0) {
        fprintf(stderr, "bench_kernels: out of memory for the SGEMM operands\n");
        return 1;
    }
    double gemm_gflops = 2.0 * gemm_n * gemm_n * gemm_n / t_gemm * 1e-9;

    bench_result res[N_CASES];
    for (int i = 0; i < N_CASES; i++)
        if (!run_case(&CASES[i], reps, times, &res[i])) {
            fprintf(stderr, "bench_kernels: out of memory for case %s\n", CASES[i].name);
            return 1;
        }

    if (json) {
        printf("{\"bench\":\"kernels\",\"threads\":%d,\"repeats\":%d,\"sgemm\":{\"n\":%d,\"ms\":%.4f,\"gflops\":%.2f},"
               "\"cases\":[",
               threads, reps, gemm_n, 1e3 * t_gemm, gemm_gflops);
        for (int i = 0; i < N_CASES; i++) {
            const bench_case *c = &CASES[i];
            printf("%s{\"name\":\"%s\",\"n\":%d,\"cin\":%d,\"cout\":%d,\"h\":%d,\"w\":%d,\"kernel\":%d,\"stride\":%d,"
                   "\"groups\":%d,\"fwd_ms\":%.4f,\"fwd_gflops\":%.2f,\"bwd_ms\":%.4f,\"bwd_gflops\":%.2f}",
                   i ? "," : "", c->name, c->n, c->cin, c->cout, c->h, c->w, c->k, c->stride, c->groups,
                   res[i].fwd_ms, res[i].fwd_gflops, res[i].bwd_ms, res[i].bwd_gflops);
        }
        printf("]}\n");
    } else {
        printf("bench_kernels: %d threads, median of %d after 2 warm-ups; OpenBLAS SGEMM %dx%dx%d: %.2f ms, "
               "%.1f GFLOP/s\n",
               threads, reps, gemm_n, gemm_n, gemm_n, 1e3 * t_gemm, gemm_gflops);
        printf("%-18s %3s %4s %4s %5s %2s %6s %9s %8s %9s %8s %6s %6s\n", "op", "N", "Cin", "Cout", "HxW", "s",
               "groups", "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s", "fwd %", "bwd %");
        for (int i = 0; i < N_CASES; i++) {
            const bench_case *c = &CASES[i];
            char hw[16];
            snprintf(hw, sizeof hw, "%dx%d", c->h, c->w);
            printf("%-18s %3d %4d %4d %5s %2d %6d %9.3f %8.1f %9.3f %8.1f %5.0f%% %5.0f%%\n", c->name, c->n, c->cin,
                   c->cout, hw, c->stride, c->groups, res[i].fwd_ms, res[i].fwd_gflops, res[i].bwd_ms,
                   res[i].bwd_gflops, 100 * res[i].fwd_gflops / gemm_gflops, 100 * res[i].bwd_gflops / gemm_gflops);
        }
        printf("(%% = share of the SGEMM rate; backward = dx + dW + db, counted as twice the forward FLOPs)\n");
    }
    free(times);
    return 0;
}
