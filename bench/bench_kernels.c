// Kernel microbenchmark: conv 1x1, full 3x3 conv and depthwise conv at mobile-network shapes, forward
// and backward, as median time and GFLOP/s beside OpenBLAS SGEMM measured in the same run (the ceiling);
// depthwise also in GB/s beside a STREAM-like triad (the memory ceiling); and the physical floor of
// inference: mobilenetv2's FLOPs at 224 over the 1-thread SGEMM rate, against the measured latency.
// Usage: bench_kernels [--threads N] [--repeats R] [--json] [--json-out FILE]   (docs/BENCH.md)
#include "core/core.h"
#include "layers/layers.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int n, cin, cout, h, w, k, stride, pad, groups;
} bench_case;

static const bench_case CASES[] = {
    {"conv1x1 96->24", 32, 96, 24, 16, 16, 1, 1, 0, 1},
    {"conv1x1 144->24", 32, 144, 24, 16, 16, 1, 1, 0, 1},
    {"conv1x1 24->144", 32, 24, 144, 16, 16, 1, 1, 0, 1},
    {"conv1x1 256->256", 32, 256, 256, 28, 28, 1, 1, 0, 1},
    {"conv1x1 96->576 4x4", 32, 96, 576, 4, 4, 1, 1, 0, 1},
    {"conv1x1 576->96 4x4", 32, 576, 96, 4, 4, 1, 1, 0, 1},
    {"conv1x1 160->960 2x2", 32, 160, 960, 2, 2, 1, 1, 0, 1},
    {"conv1x1 960->160 2x2", 32, 960, 160, 2, 2, 1, 1, 0, 1},
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
    double fwd_gbs, bwd_gbs;   // bytes moved per second: fwd x + y + w; bwd x + w + gy + gx + gw
} bench_result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static double minimum(const double *t, int n) {
    double m = t[0];
    for (int i = 1; i < n; i++) m = t[i] < m ? t[i] : m;
    return m;
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
            res->bwd_gbs = 4.0 * (double)(2 * nx + 2 * nw + ny) / t * 1e-9;
        } else {
            res->fwd_ms = 1e3 * t;
            res->fwd_gflops = flops / t * 1e-9;
            res->fwd_gbs = 4.0 * (double)(nx + nw + ny) / t * 1e-9;
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

// STREAM-like triad a[i] = b[i] + s * c[i] on `threads` threads: the best of `reps` runs in GB/s,
// counting 12 bytes per element (two reads, one write; the write-allocate read is not counted, as in
// STREAM). The arrays are first touched with the same static split as the timed loop.
static double triad_gbs(float *a, float *b, float *c, int64_t n, int threads, int reps) {
    omp_set_num_threads(threads);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f;
    double best = 1e30;
    const float sc = 3.0f;
    for (int r = -1; r < reps; r++) {
        double t0 = ib_time_s();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) a[i] = b[i] + sc * c[i];
        double t = ib_time_s() - t0;
        if (r >= 0 && t < best) best = t;
    }
    omp_set_num_threads(ib_get_threads());
    return 12.0 * (double)n / best * 1e-9;
}

// Array length for the triad: each array 4x the last-level cache as the system reports it, at least
// 64 MiB and at most 512 MiB (virtual machines sometimes report the whole host's cache).
static int64_t triad_len(size_t *llc_out) {
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc <= 0) llc = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (llc <= 0) llc = 32L << 20;
    *llc_out = (size_t)llc;
    int64_t bytes = 4 * (int64_t)llc;
    if (bytes < ((int64_t)64 << 20)) bytes = (int64_t)64 << 20;
    if (bytes > ((int64_t)512 << 20)) bytes = (int64_t)512 << 20;
    return bytes / (int64_t)sizeof(float);
}

// Multiply-adds of mobilenetv2 (1000 classes) at res x res, counted per op from the shapes as the
// network runs once (through the profiling hook), split by kind: 0 conv 1x1, 1 depthwise, 2 dense
// conv, 3 linear.
static double g_macs[4];
static void count_macs_hook(const ib_prof_event *e) {
    if (!e->op || e->backward || e->n_in < 2 || !e->in[1] || !e->out) return;
    const ib_tensor *x = e->in[0], *w = e->in[1];
    double out = (double)ib_numel(e->out);
    if (strstr(e->op->name, "conv") && w->ndim == 4) {
        int kind = w->shape[1] == 1 && w->shape[0] == x->shape[1] && x->shape[1] > 1 ? 1
                   : w->shape[2] == 1 && w->shape[3] == 1                            ? 0
                                                                                     : 2;
        g_macs[kind] += out * w->shape[1] * w->shape[2] * w->shape[3];
    } else if (!strcmp(e->op->name, "linear") && w->ndim == 2) {
        g_macs[3] += out * w->shape[1];
    }
}

typedef struct {
    double macs[4], total_macs;
    double sgemm1_gflops, floor_ms, infer_ms, infer_best_ms;
} floor_result;

// Builds mobilenetv2, counts its MACs at 224, times eval-mode batch-1 inference on 1 thread (median
// of 30 after 5 warm-ups, as ibnas bench infer, and the best) and the 1-thread SGEMM rate. The floor
// takes SGEMM's best run: the machine's capability, which other processes can only lower.
static int infer_floor(floor_result *fr, double *times, int reps) {
    ib_arch arch;
    ib_arch_mobilenetv2(&arch, 1.0f, 1000);
    ib_net net;
    ib_status s = ib_net_build(&net, &arch);
    ib_arch_free(&arch);
    if (s) return 0;
    ib_net_init_weights(&net, 0);
    ib_set_threads(1);
    ib_ctx *ctx = ib_ctx_new();
    ctx->training = 0, ctx->recording = 0;
    float *x = alloc_filled(3 * 224 * 224, 5);
    if (!x) return 0;
    ib_tensor xt;
    ib_tensor_init(&xt, x, 4, (int[]){1, 3, 224, 224});
    memset(g_macs, 0, sizeof g_macs);
    ib_prof_hook = count_macs_hook;
    ib_net_forward(ctx, &net, &xt);
    ib_prof_hook = NULL;
    fr->total_macs = 0;
    for (int k = 0; k < 4; k++) fr->total_macs += fr->macs[k] = g_macs[k];
    enum { N_INFER = 30 };
    double t[N_INFER];
    for (int r = -5; r < N_INFER; r++) {
        double t0 = ib_time_s();
        ib_ctx_reset(ctx);
        ib_net_forward(ctx, &net, &xt);
        if (r >= 0) t[r] = ib_time_s() - t0;
    }
    fr->infer_best_ms = 1e3 * minimum(t, N_INFER);
    fr->infer_ms = 1e3 * median(t, N_INFER);
    time_sgemm(1024, reps, times);
    fr->sgemm1_gflops = 2.0 * 1024 * 1024 * 1024 / minimum(times, reps) * 1e-9;
    fr->floor_ms = 2.0 * fr->total_macs / (fr->sgemm1_gflops * 1e9) * 1e3;
    ib_ctx_free(ctx);
    ib_net_free(&net);
    free(x);
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_kernels [--threads N] [--repeats R] [--json] [--json-out FILE]\n"
               "  conv 1x1, conv 3x3 and depthwise conv forward/backward: median time and GFLOP/s,\n"
               "  beside OpenBLAS SGEMM (1024^3) measured in the same run; depthwise in GB/s beside a\n"
               "  STREAM-like triad (1 and 2 threads); mobilenetv2 224 inference against its FLOP floor.\n"
               "  --threads N   OpenMP and OpenBLAS threads (default 2)\n"
               "  --repeats R   timed repeats per measurement after 2 warm-ups (default 9)\n"
               "  --json        print one JSON object instead of the table\n"
               "  --json-out F  also write that JSON object to file F (the table is still printed)\n");
}

int main(int argc, char **argv) {
    int threads = 2, reps = 9, json = 0;
    const char *json_out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--json-out") && i + 1 < argc) json_out = argv[++i];
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

    size_t llc;
    int64_t tn = triad_len(&llc);
    float *ta = malloc(sizeof(float) * (size_t)tn), *tb = malloc(sizeof(float) * (size_t)tn),
          *tc = malloc(sizeof(float) * (size_t)tn);
    if (!ta || !tb || !tc) {
        fprintf(stderr, "bench_kernels: out of memory for the triad arrays\n");
        return 1;
    }
    double triad[2];
    for (int th = 1; th <= 2; th++) triad[th - 1] = triad_gbs(ta, tb, tc, tn, th, reps < 5 ? 5 : reps);
    free(ta), free(tb), free(tc);
    double triad_here = triad[threads >= 2 ? 1 : 0];

    floor_result fr;
    if (!infer_floor(&fr, times, reps)) {
        fprintf(stderr, "bench_kernels: could not build mobilenetv2 for the floor: %s\n", ib_errmsg());
        return 1;
    }
    ib_set_threads(threads);
    static const char *mac_kinds[4] = {"conv1x1", "depthwise", "conv kxk", "linear"};

    for (int pass = 0; pass < 2; pass++) {   // the JSON object to stdout (--json), then to --json-out
        FILE *jf = pass == 0 ? (json ? stdout : NULL) : (json_out ? fopen(json_out, "w") : NULL);
        if (!jf) {
            if (pass == 1 && json_out) fprintf(stderr, "bench_kernels: cannot write %s\n", json_out);
            continue;
        }
        fprintf(jf, "{\"bench\":\"kernels\",\"threads\":%d,\"repeats\":%d,\"openblas_core\":\"%s\","
                    "\"sgemm\":{\"n\":%d,\"ms\":%.4f,\"gflops\":%.2f},\"cases\":[",
                threads, reps, openblas_get_corename(), gemm_n, 1e3 * t_gemm, gemm_gflops);
        for (int i = 0; i < N_CASES; i++) {
            const bench_case *c = &CASES[i];
            fprintf(jf, "%s{\"name\":\"%s\",\"n\":%d,\"cin\":%d,\"cout\":%d,\"h\":%d,\"w\":%d,\"kernel\":%d,"
                        "\"stride\":%d,\"groups\":%d,\"fwd_ms\":%.4f,\"fwd_gflops\":%.2f,\"bwd_ms\":%.4f,"
                        "\"bwd_gflops\":%.2f,\"fwd_gbs\":%.2f,\"bwd_gbs\":%.2f}",
                    i ? "," : "", c->name, c->n, c->cin, c->cout, c->h, c->w, c->k, c->stride, c->groups,
                    res[i].fwd_ms, res[i].fwd_gflops, res[i].bwd_ms, res[i].bwd_gflops, res[i].fwd_gbs,
                    res[i].bwd_gbs);
        }
        fprintf(jf, "],\"triad\":{\"array_mib\":%.0f,\"llc_mib\":%.1f,\"gbs_1t\":%.2f,\"gbs_2t\":%.2f},",
                tn * 4.0 / 1048576.0, llc / 1048576.0, triad[0], triad[1]);
        fprintf(jf, "\"floor\":{\"arch\":\"mobilenetv2\",\"res\":224,\"batch\":1,\"threads\":1,\"gmacs\":%.4f,",
                fr.total_macs * 1e-9);
        for (int k = 0; k < 4; k++)
            fprintf(jf, "\"gmacs_%s\":%.4f,", k == 2 ? "convkxk" : mac_kinds[k], fr.macs[k] * 1e-9);
        fprintf(jf, "\"sgemm_1t_best_gflops\":%.2f,\"floor_ms\":%.3f,\"infer_ms\":%.3f,\"infer_best_ms\":%.3f,"
                    "\"infer_over_floor\":%.2f}}\n",
                fr.sgemm1_gflops, fr.floor_ms, fr.infer_ms, fr.infer_best_ms, fr.infer_ms / fr.floor_ms);
        if (jf != stdout) fclose(jf);
    }
    if (!json) {
        printf("bench_kernels: %d threads, median of %d after 2 warm-ups; OpenBLAS (%s kernels) SGEMM %dx%dx%d: "
               "%.2f ms, %.1f GFLOP/s\n",
               threads, reps, openblas_get_corename(), gemm_n, gemm_n, gemm_n, 1e3 * t_gemm, gemm_gflops);
#if defined(__x86_64__) || defined(__i386__)
        const char *core = openblas_get_corename();
        if (__builtin_cpu_supports("avx512f") && !strcasestr(core, "skylake") && !strcasestr(core, "cooperlake") &&
            !strcasestr(core, "sapphire"))
            printf("note: this CPU has AVX-512 but OpenBLAS runs its %s kernels; with OPENBLAS_CORETYPE=SKYLAKEX\n"
                   "      its SGEMM (the ceiling here) may be much faster\n", core);
#endif
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
        printf("\nmemory: STREAM-like triad a = b + s*c, 3 x %.0f MiB arrays (LLC reported %.1f MiB), best of %d:\n"
               "  1 thread %.2f GB/s, 2 threads %.2f GB/s\n",
               tn * 4.0 / 1048576.0, llc / 1048576.0, reps < 5 ? 5 : reps, triad[0], triad[1]);
        printf("%-18s %9s %9s %8s %8s  (bytes: fwd x + y + w; bwd x + w + dy + dx + dw; %% of the %d-thread triad)\n",
               "depthwise", "fwd GB/s", "bwd GB/s", "fwd %", "bwd %", threads >= 2 ? 2 : 1);
        for (int i = 0; i < N_CASES; i++) {
            const bench_case *c = &CASES[i];
            if (c->groups != c->cin) continue;
            printf("%-18s %9.2f %9.2f %7.0f%% %7.0f%%\n", c->name, res[i].fwd_gbs, res[i].bwd_gbs,
                   100 * res[i].fwd_gbs / triad_here, 100 * res[i].bwd_gbs / triad_here);
        }
        printf("\nfloor: mobilenetv2 224x224 batch 1, 1 thread: %.1f M multiply-adds (%.3f GFLOP)\n",
               fr.total_macs * 1e-6, 2 * fr.total_macs * 1e-9);
        for (int k = 0; k < 4; k++)
            printf("  %-10s %7.1f M MACs %5.1f%%\n", mac_kinds[k], fr.macs[k] * 1e-6, 100 * fr.macs[k] / fr.total_macs);
        printf("  SGEMM 1 thread %.1f GFLOP/s (best run) -> floor %.2f ms; measured %.2f ms (median of 30; best\n"
               "  %.2f ms), %.1fx the floor\n",
               fr.sgemm1_gflops, fr.floor_ms, fr.infer_ms, fr.infer_best_ms, fr.infer_ms / fr.floor_ms);
    }
    free(times);
    return 0;
}
