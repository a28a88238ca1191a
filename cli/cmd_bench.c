// ibnas bench: training throughput and inference latency of a network on random data, measured as
// the PyTorch scripts in shared/bench/ measure them (median over repeats after warm-up).
#include "cli/cli.h"
#include "optim/optim.h"
#include "tasks/tasks.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *usage_text =
    "usage: ibnas bench train|infer [--arch A] [--res R] [--batch B] [--threads T] [--classes C] [--json]\n\n"
    "train: SGD steps (momentum 0.9, weight decay 4e-5) on random images and labels; reports images/s\n"
    "       and the peak resident memory. infer: eval-mode forward passes; reports ms per batch.\n";

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            printf("%s", usage_text);
            return 0;
        }
        fprintf(stderr, "%s", usage_text);
        return 2;
    }
    const char *mode = argv[1], *arch_spec = "mobilenetv2";
    int train = !strcmp(mode, "train");
    if (!train && strcmp(mode, "infer")) {
        fprintf(stderr, "ibnas bench: '%s' is not train or infer\n", mode);
        return 2;
    }
    int res = train ? 64 : 224, batch = train ? 32 : 1, threads = train ? 2 : 1, classes = train ? 10 : 1000;
    int repeats = train ? 10 : 30, warmup = train ? 3 : 5, json = 0;
    const cli_flag flags[] = {
        {"--arch", F_STR, &arch_spec, "mobilenetv2, mobilenetv2:WIDTH or FILE.arch.json"},
        {"--res", F_INT, &res, "input resolution (train 64, infer 224)"},
        {"--batch", F_INT, &batch, "batch size (train 32, infer 1)"},
        {"--threads", F_INT, &threads, "threads (train 2, infer 1)"},
        {"--classes", F_INT, &classes, "classes (train 10, infer 1000)"},
        {"--repeats", F_INT, &repeats, "timed repeats (train 10, infer 30); the median is reported"},
        {"--warmup", F_INT, &warmup, "untimed repeats first (train 3, infer 5)"},
        {"--json", F_BOOL, &json, "one JSON object on stdout"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("bench", argc - 1, argv + 1, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (res < 8 || batch < 1 || repeats < 1 || warmup < 0) {
        fprintf(stderr, "ibnas bench: --res, --batch, --repeats must be positive\n");
        return 2;
    }
    ib_set_threads(threads);
    ib_arch arch;
    ib_status s = ib_arch_resolve(&arch, arch_spec, classes);
    if (s) return cli_report("bench", s);
    ib_net net;
    s = ib_net_build(&net, &arch);
    ib_arch_free(&arch);
    if (s) return cli_report("bench", s);
    ib_net_init_weights(&net, 0);

    ib_ctx *ctx = ib_ctx_new();
    ib_rng rng;
    ib_rng_seed(&rng, 0, 0);
    float *x = malloc(sizeof(float) * (size_t)batch * 3 * res * res);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    double *t = malloc(sizeof(double) * (size_t)repeats);
    ib_rng_fill_normal(&rng, x, (int64_t)batch * 3 * res * res, 0, 1);
    for (int i = 0; i < batch; i++) y[i] = (int32_t)ib_rng_below(&rng, (uint32_t)classes);
    ib_tensor xt;
    ib_tensor_init(&xt, x, 4, (int[]){batch, 3, res, res});
    ib_optim *opt = NULL;
    if (train) {
        ib_optim_cfg oc = ib_optim_cfg_default(IB_OPTIM_SGD, 0);
        oc.momentum = 0.9f;
        oc.weight_decay = 4e-5f;
        opt = ib_optim_new(&oc, &net.ps);
        ctx->training = 1;
        ctx->recording = 1;
    } else {
        ctx->training = 0;
        ctx->recording = 0;
    }
    for (int i = 0; i < warmup + repeats; i++) {
        double t0 = ib_time_s();
        ib_ctx_reset(ctx);
        ib_tensor *z = ib_net_forward(ctx, &net, &xt);
        if (train) {
            ib_tensor *loss = ib_cross_entropy(ctx, z, y, 0.0f, -1);
            ib_params_zero_grad(&net.ps);
            ib_backward(ctx, loss, NULL);
            ib_optim_step(opt, 0.01f);
        }
        if (i >= warmup) t[i - warmup] = ib_time_s() - t0;
    }
    double med = median(t, repeats);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = (double)ru.ru_maxrss / 1024.0;
    if (train) {
        if (json)
            printf("{\"impl\": \"ibnas-%s\", \"threads\": %d, \"res\": %d, \"batch\": %d, \"train_img_per_s\": %.1f, "
                   "\"peak_rss_mb\": %.1f, \"arena_peak_mb\": %.1f}\n",
                   IB_VERSION_STRING, threads, res, batch, batch / med, rss_mb, ib_arena_peak(ctx->arena) / 1048576.0);
        else
            printf("train %s res %d batch %d threads %d: %.1f img/s (%.1f ms/step), peak RSS %.1f MB\n", arch_spec, res, batch,
                   threads, batch / med, med * 1e3, rss_mb);
    } else {
        if (json)
            printf("{\"impl\": \"ibnas-%s\", \"threads\": %d, \"res\": %d, \"batch\": %d, \"ms\": %.2f, \"img_per_s\": %.1f}\n",
                   IB_VERSION_STRING, threads, res, batch, med * 1e3, batch / med);
        else
            printf("infer %s res %d batch %d threads %d: %.2f ms/batch, %.1f img/s\n", arch_spec, res, batch, threads, med * 1e3,
                   batch / med);
    }
    ib_optim_free(opt);
    free(x), free(y), free(t);
    ib_ctx_free(ctx);
    ib_net_free(&net);
    return 0;
}
