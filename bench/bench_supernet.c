// A supernet training step on one sampled path against the same subnet trained alone (issue 11's cost
// bar: at most 1.15x the time and 1.2x the memory). For each of a few random archs of a space: the median
// of timed steps (forward, backward, SGD step) of (a) the path inside the supernet, the gradients of the
// ops it ran zeroed and the optimiser stepping them as `supernet train` does, and (b) the extracted network alone; plus the peak of
// each step's arena (activations, their grads, the path's weight views). Weights and optimiser state
// sit outside the arena and are reported apart: the supernet's are those of every op of every layer.
// Usage: bench_supernet [--space S] [--res R] [--batch B] [--archs N] [--repeats R] [--threads T]
#include "search/search.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median seconds of `reps` training steps after one warm-up, and the arena's peak bytes.
static double time_steps(ib_ctx *ctx, ib_supernet *sn, const int *choice, ib_net *net, ib_optim *opt, ib_params *ps,
                         ib_tensor *x, const int32_t *labels, int reps, size_t *peak) {
    uint8_t *active = NULL;   // the supernet's step updates the tensors of the ops the path ran (tasks/supernet.c)
    if (sn) {
        active = malloc((size_t)sn->ps.n);
        IB_ASSERT(active, "out of memory");
        ib_supernet_active_clear(sn, active);
        ib_supernet_active_add(sn, choice, active);
    }
    double *t = malloc(sizeof(double) * (size_t)reps);
    IB_ASSERT(t, "out of memory");
    for (int r = -1; r < reps; r++) {
        double t0 = ib_time_s();
        ib_ctx_reset(ctx);
        ctx->training = 1, ctx->recording = 1, ctx->release_grads = 1;
        ib_net path, *run = net;
        if (sn) {
            ib_supernet_path(ctx, sn, choice, &path);
            run = &path;
        }
        ib_tensor *z = ib_net_forward(ctx, run, x);
        ib_tensor *loss = ib_cross_entropy(ctx, z, labels, 0.1f, -1);
        if (active && r > -1) ib_params_zero_grad_mask(ps, active);   // as training: the previous step's tensors
        else ib_params_zero_grad(ps);
        ib_backward(ctx, loss, NULL);
        if (active) ib_optim_step_active(opt, 0.01f, active);   // as supernet training steps: the ops it ran
        else ib_optim_step(opt, 0.01f);
        if (r >= 0) t[r] = ib_time_s() - t0;
    }
    *peak = ib_arena_peak(ctx->arena);
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    double m = t[reps / 2];
    free(t), free(active);
    return m;
}

int main(int argc, char **argv) {
    const char *space = "search/spaces/mobiledets.space.json";
    int res = 32, batch = 64, archs = 4, reps = 5, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--space") && i + 1 < argc) space = argv[++i];
        else if (!strcmp(argv[i], "--res") && i + 1 < argc) res = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--archs") && i + 1 < argc) archs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) continue;
        else {
            fprintf(stderr, "usage: bench_supernet [--space S] [--res R] [--batch B] [--archs N] [--repeats R] [--threads T]\n");
            return 2;
        }
    }
    ib_set_threads(threads);
    ib_space sp;
    if (ib_space_load(&sp, space)) {
        fprintf(stderr, "bench_supernet: %s\n", ib_errmsg());
        return 1;
    }
    ib_supernet sn;
    if (ib_supernet_build(&sn, &sp, 200)) {
        fprintf(stderr, "bench_supernet: %s\n", ib_errmsg());
        return 1;
    }
    ib_supernet_init_weights(&sn, 1);
    ib_optim_cfg oc = ib_optim_cfg_default(IB_OPTIM_SGD, 0);
    oc.momentum = 0.9f, oc.nesterov = 1, oc.weight_decay = 4e-5f;
    ib_optim *sopt = ib_optim_new(&oc, &sn.ps);
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){batch, 3, res, res});
    float *xd = malloc(sizeof(float) * (size_t)ib_numel(x));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)batch);
    ib_rng r;
    ib_rng_seed(&r, 3, 0);
    ib_rng_fill_normal(&r, xd, ib_numel(x), 0, 1);
    for (int i = 0; i < batch; i++) labels[i] = (int32_t)ib_rng_below(&r, 200);
    ib_tensor xt;
    ib_tensor_init(&xt, xd, 4, x->shape);
    int *choice = malloc(sizeof(int) * (size_t)ib_space_genes(&sp));
    printf("bench_supernet: %s at %d px, batch %d, %d threads; supernet %lld weights (%.0f MB with grads and momentum)\n",
           sp.name, res, batch, threads, (long long)sn.ps.numel_params, 3.0 * 4 * (double)sn.ps.numel_params / 1e6);
    printf("%-6s %10s %10s %8s %12s %12s %8s %10s\n", "arch", "path ms", "alone ms", "time x", "path arena", "alone arena",
           "mem x", "weights");
    double worst_t = 0, worst_m = 0;
    for (int a = 0; a < archs; a++) {
        ib_space_sample(&sp, a == 0 ? IB_SAMPLE_LARGEST : IB_SAMPLE_RANDOM, &r, choice);
        ib_net net;
        if (ib_supernet_extract(&sn, choice, &net)) {
            fprintf(stderr, "bench_supernet: %s\n", ib_errmsg());
            return 1;
        }
        ib_optim *nopt = ib_optim_new(&oc, &net.ps);
        ib_ctx *c1 = ib_ctx_new(), *c2 = ib_ctx_new();
        size_t p1, p2;
        double t1 = time_steps(c1, &sn, choice, NULL, sopt, &sn.ps, &xt, labels, reps, &p1);
        double t2 = time_steps(c2, NULL, NULL, &net, nopt, &net.ps, &xt, labels, reps, &p2);
        printf("%-6s %10.1f %10.1f %8.3f %10.1fMB %10.1fMB %8.3f %8.2fM\n", a == 0 ? "large" : "rand", t1 * 1e3, t2 * 1e3,
               t1 / t2, (double)p1 / 1e6, (double)p2 / 1e6, (double)p1 / (double)p2, (double)net.ps.numel_params / 1e6);
        if (t1 / t2 > worst_t) worst_t = t1 / t2;
        if ((double)p1 / (double)p2 > worst_m) worst_m = (double)p1 / (double)p2;
        ib_ctx_free(c1);
        ib_ctx_free(c2);
        ib_optim_free(nopt);
        ib_net_free(&net);
    }
    printf("bench_supernet: worst step time %.3fx, worst arena peak %.3fx of the subnet alone (bars: 1.15x, 1.2x)\n",
           worst_t, worst_m);
    free(choice);
    free(labels);
    free(xd);
    ib_ctx_free(ctx);
    ib_optim_free(sopt);
    ib_supernet_free(&sn);
    ib_space_free(&sp);
    return 0;
}
