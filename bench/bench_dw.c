// Depthwise-conv and batchnorm microbenchmark at MobileNetV2's own shapes (training: res 64, batch 32;
// inference: res 224, batch 1), for each SIMD version this CPU runs: median forward and backward time,
// GFLOP/s and the GB/s of the tensors each pass must read and write.
// Usage: bench_dw [--threads N] [--repeats R] [--simd LIST] [--case TEXT] [--path auto|planes|cl]
//                 [--bn-path auto|channel|cols] [--json]
#include "core/core.h"
#include "core/simd.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int n, c, h, w, k, stride;
} dw_case;

static const dw_case CASES[] = {
    // training, res 64, batch 32
    {"train 96@32 s2", 32, 96, 32, 32, 3, 2},
    {"train 144@16 s1", 32, 144, 16, 16, 3, 1},
    {"train 144@16 s2", 32, 144, 16, 16, 3, 2},
    {"train 192@8 s1", 32, 192, 8, 8, 3, 1},
    {"train 192@8 s2", 32, 192, 8, 8, 3, 2},
    {"train 384@4 s1", 32, 384, 4, 4, 3, 1},
    {"train 576@4 s1", 32, 576, 4, 4, 3, 1},
    {"train 576@4 s2", 32, 576, 4, 4, 3, 2},
    {"train 960@2 s1", 32, 960, 2, 2, 3, 1},
    {"train 144@16 k5 s1", 32, 144, 16, 16, 5, 1},
    {"train 144@16 k5 s2", 32, 144, 16, 16, 5, 2},
    {"train 144@16 k7 s1", 32, 144, 16, 16, 7, 1},
    // inference, res 224, batch 1
    {"infer 32@112 s1", 1, 32, 112, 112, 3, 1},
    {"infer 96@112 s2", 1, 96, 112, 112, 3, 2},
    {"infer 144@56 s1", 1, 144, 56, 56, 3, 1},
    {"infer 144@56 s2", 1, 144, 56, 56, 3, 2},
    {"infer 384@14 s1", 1, 384, 14, 14, 3, 1},
    {"infer 576@14 s2", 1, 576, 14, 14, 3, 2},
    {"infer 960@7 s1", 1, 960, 7, 7, 3, 1},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static float *filled(int64_t n, uint64_t seed) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!p) return NULL;
    ib_rng r;
    ib_rng_seed(&r, seed, 5);
    ib_rng_fill_normal(&r, p, n, 0.0f, 1.0f);
    return p;
}

typedef struct {
    double fwd_ms, bwd_ms;
} timing;

// kind 0: dwconv2d (+ its backward alone); 1: batchnorm then relu6 (training); 2: batchnorm_act relu6.
static int run(const dw_case *dc, int kind, int reps, double *times, timing *out) {
    int pad = dc->k / 2, ho = (dc->h + 2 * pad - dc->k) / dc->stride + 1,
        wo = (dc->w + 2 * pad - dc->k) / dc->stride + 1;
    int xs[4] = {dc->n, dc->c, dc->h, dc->w}, ws[4] = {dc->c, 1, dc->k, dc->k}, cs[1] = {dc->c};
    ib_tensor x, w, g, b, rm, rv;
    ib_tensor_init(&x, NULL, 4, xs);
    ib_tensor_init(&w, NULL, 4, ws);
    ib_tensor_init(&g, NULL, 1, cs);
    ib_tensor_init(&b, NULL, 1, cs);
    ib_tensor_init(&rm, NULL, 1, cs);
    ib_tensor_init(&rv, NULL, 1, cs);
    int64_t nx = ib_numel(&x), nw = ib_numel(&w), ny = kind ? nx : (int64_t)dc->n * dc->c * ho * wo;
    x.data = filled(nx, 1), w.data = filled(nw, 2), g.data = filled(dc->c, 3), b.data = filled(dc->c, 4);
    rm.data = calloc((size_t)dc->c, sizeof(float)), rv.data = calloc((size_t)dc->c, sizeof(float));
    w.grad = calloc((size_t)nw, sizeof(float));
    g.grad = calloc((size_t)dc->c, sizeof(float)), b.grad = calloc((size_t)dc->c, sizeof(float));
    float *gy = filled(ny, 6);
    int ok = x.data && w.data && g.data && b.data && rm.data && rv.data && w.grad && g.grad && b.grad && gy;
    ib_ctx *ctx = ib_ctx_new();
    ctx->training = kind != 0;
    for (int pass = 0; pass < 2 && ok; pass++) {
        int backward = pass == 1;
        x.requires_grad = w.requires_grad = g.requires_grad = b.requires_grad = backward;
        ctx->recording = backward;
        for (int r = -2; r < reps; r++) {
            ib_ctx_reset(ctx);
            x.grad = NULL;   // an activation's grad: the op allocates it (from the arena) as in training
            int first = 0;
            double t0 = ib_time_s();
            ib_tensor *y;
            if (kind == 0)
                y = ib_dwconv2d(ctx, &x, &w, NULL, dc->stride, pad, 1);
            else if (kind == 1) {
                first = ctx->tape_len;
                y = ib_relu6(ctx, ib_batchnorm(ctx, &x, &g, &b, &rm, &rv, 1, 0.1f, 1e-5f));
            } else
                y = ib_batchnorm_act(ctx, &x, &g, &b, &rm, &rv, 1, 0.1f, 1e-5f, IB_FUSE_RELU6);
            double t1 = ib_time_s();
            if (backward) {
                y->grad = gy;
                ctx->recording = 0;
                t0 = ib_time_s();
                for (int i = ctx->tape_len - 1; i >= first; i--) ctx->tape[i].op->backward(ctx, &ctx->tape[i]);
                t1 = ib_time_s();
                ctx->recording = 1;
            }
            if (r >= 0) times[r] = t1 - t0;
        }
        if (backward)
            out->bwd_ms = 1e3 * median(times, reps);
        else
            out->fwd_ms = 1e3 * median(times, reps);
    }
    ib_ctx_free(ctx);
    free(x.data), free(w.data), free(g.data), free(b.data), free(rm.data), free(rv.data);
    free(w.grad), free(g.grad), free(b.grad), free(gy);
    return ok;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_dw [--threads N] [--repeats R] [--simd LIST] [--case TEXT] [--path auto|planes|cl]\n"
            "                [--bn-path auto|channel|cols] [--json]\n"
            "  depthwise conv (forward, backward) and batchnorm + relu6 (separate, fused) at MobileNetV2's\n"
            "  training (res 64, batch 32) and inference (res 224, batch 1) shapes.\n"
            "  --threads N   threads (default 1)\n"
            "  --repeats R   timed repeats after 2 warm-ups; the median is reported (default 15)\n"
            "  --simd LIST   comma-separated versions to run (default: every one this CPU has)\n"
            "  --case TEXT   only the cases whose name contains TEXT\n"
            "  --path P      the depthwise layout: auto (by plane size, the default), planes (stacked planes) or\n"
            "                cl (channels last), core/dw_conv.c\n"
            "  --bn-path P   the batchnorm layout: auto (columns across channels on planes of at most 8\n"
            "                floats, the default), channel (per channel always) or cols (columns up to 16\n"
            "                floats), core/norm.c\n"
            "  --json        one JSON object per line instead of the table\n");
}

int main(int argc, char **argv) {
    int threads = 1, reps = 15, json = 0;
    const char *simd = "avx512,avx2,portable", *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--simd") && i + 1 < argc)
            simd = argv[++i];
        else if (!strcmp(argv[i], "--case") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--path") && i + 1 < argc) {
            const char *pa = argv[++i];
            ib__dw_path = !strcmp(pa, "planes") ? 1 : !strcmp(pa, "cl") ? 2 : 0;
            if (!ib__dw_path && strcmp(pa, "auto")) {
                fprintf(stderr, "bench_dw: --path is auto, planes or cl, not '%s'\n", pa);
                return 2;
            }
        } else if (!strcmp(argv[i], "--bn-path") && i + 1 < argc) {
            const char *pa = argv[++i];
            ib__bn_path = !strcmp(pa, "channel") ? 1 : !strcmp(pa, "cols") ? 2 : 0;
            if (!ib__bn_path && strcmp(pa, "auto")) {
                fprintf(stderr, "bench_dw: --bn-path is auto, channel or cols, not '%s'\n", pa);
                return 2;
            }
        } else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_dw: unknown or incomplete argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (threads < 1 || reps < 1) {
        fprintf(stderr, "bench_dw: --threads and --repeats must be at least 1\n");
        return 2;
    }
    ib_set_threads(threads);
    double *times = malloc(sizeof(double) * (size_t)reps);
    if (!times) return 1;
    char list[256];
    snprintf(list, sizeof list, "%s", simd);
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        if (!ib_simd_select(name)) {
            if (!json) printf("bench_dw: %s: not available on this CPU, skipped\n", name);
            continue;
        }
        if (!json)
            printf("== %s, %d thread%s, median of %d\n%-20s %9s %8s %7s %9s %8s %7s %9s %9s %9s %9s\n", name, threads,
                   threads == 1 ? "" : "s", reps, "depthwise", "fwd ms", "GF/s", "GB/s", "bwd ms", "GF/s", "GB/s",
                   "bn+r6 fwd", "bwd", "fused fwd", "bwd");
        for (int i = 0; i < N_CASES; i++) {
            const dw_case *c = &CASES[i];
            if (only && !strstr(c->name, only)) continue;
            timing t[3];
            for (int kind = 0; kind < 3; kind++)
                if (!run(c, kind, reps, times, &t[kind])) {
                    fprintf(stderr, "bench_dw: out of memory in case %s\n", c->name);
                    return 1;
                }
            int pad = c->k / 2, ho = (c->h + 2 * pad - c->k) / c->stride + 1,
                wo = (c->w + 2 * pad - c->k) / c->stride + 1;
            double nx = (double)c->n * c->c * c->h * c->w, ny = (double)c->n * c->c * ho * wo;
            double flops = 2.0 * ny * c->k * c->k;
            double fwd_bytes = 4 * (nx + ny), bwd_bytes = 4 * (2 * nx + ny);   // bwd: x, gy in; gx out
            if (json)
                printf(
                    "{\"simd\":\"%s\",\"case\":\"%s\",\"threads\":%d,\"fwd_ms\":%.4f,\"bwd_ms\":%.4f,"
                    "\"bn_relu6_fwd_ms\":%.4f,\"bn_relu6_bwd_ms\":%.4f,\"bn_act_fwd_ms\":%.4f,\"bn_act_bwd_ms\":%.4f}"
                    "\n",
                    name, c->name, threads, t[0].fwd_ms, t[0].bwd_ms, t[1].fwd_ms, t[1].bwd_ms, t[2].fwd_ms,
                    t[2].bwd_ms);
            else
                printf("%-20s %9.3f %8.1f %7.1f %9.3f %8.1f %7.1f %9.3f %9.3f %9.3f %9.3f\n", c->name, t[0].fwd_ms,
                       flops / t[0].fwd_ms * 1e-6, fwd_bytes / t[0].fwd_ms * 1e-6, t[0].bwd_ms,
                       2 * flops / t[0].bwd_ms * 1e-6, bwd_bytes / t[0].bwd_ms * 1e-6, t[1].fwd_ms, t[1].bwd_ms,
                       t[2].fwd_ms, t[2].bwd_ms);
        }
    }
    ib_simd_select("auto");
    free(times);
    return 0;
}
