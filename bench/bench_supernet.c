// A supernet training step on one sampled path against the same subnet trained alone (issue 11's cost
// bar: at most 1.15x the time and 1.2x the memory). For each of a few random archs of a space, rounds of
// one timed step (forward, backward, SGD step) of each side in alternating order, each after an untimed
// step of what precedes it in training (another random path; the same subnet): (a) the path inside the
// supernet, the gradients of the ops it ran zeroed and the optimiser stepping them as `supernet train`
// does, and (b) the extracted network alone. Reported: each side's median step, the median of the
// rounds' ratios (the bar's number: adjacent steps see the same host speed), the peak of each step's
// arena (activations, their grads, the copies of kernel centres), the subnet's weights and the supernet
// weights its steps update (whole shared tensors). Weights and optimiser state sit outside the arena and
// are reported apart: the supernet's are those of every op of every layer.
// Usage: bench_supernet [--space S] [--res R] [--batch B] [--archs N] [--repeats R] [--threads T] [--only K]
//                       [--side path|alone] [--print-arch] [--interleave] [--profile]
// (--only K: time arch K alone of the N, 0 the largest; the others are drawn, so K is the same arch, not timed;
// --side: step one side only, for a profiler to see that side's step apart, the other's columns left at 0;
// --print-arch: each arch's blocks before its row; --interleave: each timed step right after the other side's,
// instead of after an untimed step of what precedes it in training; --profile: each side's time per op and
// direction over the timed steps, the ops where the path spends most beyond the subnet first)
#include "search/search.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// One side of the comparison: the path inside the supernet (sn set) or the extracted network alone.
typedef struct {
    ib_ctx *ctx;
    ib_supernet *sn;
    const int *choice;
    ib_net *net;
    ib_optim *opt;
    ib_params *ps;
    uint8_t *active, *elem;   // the supernet's step updates the weights the path ran (tasks/supernet.c)
    int steps;
    const ib_space *sp;   // the path side: the space its untimed steps draw other random paths from, their
    ib_rng *rng;          // stream, their choices and their context (so the arena peak is the timed path's)
    int *other;
    ib_ctx *other_ctx;
} side;

// --profile: seconds per (op name, direction) of each side's timed steps, charged through core's hook (the
// time since the previous event), plus what runs outside ops: the path's set-up and the optimiser step.
#define PROF_MAX 64
static struct {
    int on, side, timed, warm;   // side: 0 the path, 1 alone; timed: a timed step runs; warm: past the warm-up round
    double last;
    int n;
    const char *name[PROF_MAX];
    int backward[PROF_MAX];
    double s[PROF_MAX][2];
} prof;

static void prof_charge(const char *name, int backward) {
    double now = ib_time_s(), dt = now - prof.last;
    prof.last = now;
    if (!prof.timed) return;
    int i = 0;
    while (i < prof.n && (strcmp(prof.name[i], name) || prof.backward[i] != backward)) i++;
    if (i == prof.n) {
        if (prof.n == PROF_MAX) return;
        prof.name[i] = name, prof.backward[i] = backward, prof.n++;
    }
    prof.s[i][prof.side] += dt;
}

static void prof_hook(const ib_prof_event *e) {
    if (e->op) prof_charge(e->op->name, e->backward);
    else prof_charge("(between ops)", 0);
}

static int cmp_prof(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    double di = prof.s[i][0] - prof.s[i][1], dj = prof.s[j][0] - prof.s[j][1];
    return (di < dj) - (di > dj);
}

static void prof_print(int reps) {
    int idx[PROF_MAX];
    double tot[2] = {0, 0};
    for (int i = 0; i < prof.n; i++) idx[i] = i, tot[0] += prof.s[i][0], tot[1] += prof.s[i][1];
    qsort(idx, (size_t)prof.n, sizeof(int), cmp_prof);
    printf("  %-26s %9s %9s %9s   (ms a step, over %d timed steps)\n", "op", "path", "alone", "path-alone", reps);
    for (int k = 0; k < prof.n; k++) {
        int i = idx[k];
        printf("  %-22s %s %9.2f %9.2f %9.2f\n", prof.name[i], prof.backward[i] ? "bwd" : "fwd", prof.s[i][0] * 1e3 / reps,
               prof.s[i][1] * 1e3 / reps, (prof.s[i][0] - prof.s[i][1]) * 1e3 / reps);
    }
    printf("  %-26s %9.2f %9.2f %9.2f\n", "total", tot[0] * 1e3 / reps, tot[1] * 1e3 / reps, (tot[0] - tot[1]) * 1e3 / reps);
    prof.n = 0;
    memset(prof.s, 0, sizeof prof.s);
}

// One training step (forward, backward, SGD step), as `supernet train` or `train` runs it; its seconds.
static double step(side *sd, ib_tensor *x, const int32_t *labels) {
    double t0 = ib_time_s();
    prof.last = t0, prof.side = sd->sn ? 0 : 1;
    ib_ctx *ctx = sd->ctx;
    ib_ctx_reset(ctx);
    ctx->training = 1, ctx->recording = 1, ctx->release_grads = 1;
    ib_net path, *run = sd->net;
    // As training: the supernet's gradients zeroed once, then by each step where it stepped the weights the path ran.
    if (!sd->sn || !sd->steps) ib_params_zero_grad(sd->ps);
    if (sd->sn) {
        ib_supernet_active_clear(sd->sn, sd->active, sd->elem);
        ib_supernet_path(ctx, sd->sn, sd->choice, &path);
        ib_supernet_active_add(sd->sn, &path, sd->active, sd->elem);
        run = &path;
    }
    if (prof.on) prof_charge("(path set-up)", 0);
    ib_tensor *z = ib_net_forward(ctx, run, x);
    ib_tensor *loss = ib_cross_entropy(ctx, z, labels, 0.1f, -1);
    ib_backward(ctx, loss, NULL);
    if (prof.on) prof_charge("(between ops)", 1);
    if (sd->sn) ib_optim_step_active(sd->opt, 0.01f, sd->active, sd->elem, 1);
    else ib_optim_step(sd->opt, 0.01f);
    sd->steps++;
    if (prof.on) prof_charge("(optimiser step)", 0);
    return ib_time_s() - t0;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

static int one_side;   // --side: 'p' or 'a', 0 both
static int interleave;   // --interleave: each timed step right after the other side's

// The untimed step before a timed one, what runs before it in training: a step of another random path (the
// path side: `supernet train` draws a new path every step) or of the same network (the subnet alone).
static void prior_step(side *sd, ib_tensor *x, const int32_t *labels) {
    if (!sd->sn) {
        step(sd, x, labels);
        return;
    }
    const int *mine = sd->choice;
    ib_ctx *ctx = sd->ctx;
    ib_space_sample(sd->sp, IB_SAMPLE_RANDOM, sd->rng, sd->other);
    sd->choice = sd->other, sd->ctx = sd->other_ctx;
    step(sd, x, labels);
    sd->choice = mine, sd->ctx = ctx;
}

static double timed_step(side *sd, ib_tensor *x, const int32_t *labels) {
    if (!interleave) prior_step(sd, x, labels);
    prof.timed = prof.warm;
    double t = step(sd, x, labels);
    prof.timed = 0;
    return t;
}

// `reps` rounds after one warm-up round, each one timed step of either side, in alternating order, so both
// sides see the same stretch of the host's speed (docs/LATENCY.md, "Rounds"); each timed step follows an
// untimed one as in training (prior_step), or, with --interleave, the other side's step. The medians of each
// side's steps and of the rounds' ratios.
static void time_sides(side *p, side *a, ib_tensor *x, const int32_t *labels, int reps, double *tp, double *ta,
                       double *ratio) {
    double *t = malloc(sizeof(double) * 3 * (size_t)reps);
    IB_ASSERT(t, "out of memory");
    for (int r = -1; r < reps; r++) {
        double dp = 0, da = 0;
        prof.warm = r >= 1;   // round 0 first touches the momentum of weights no step has run yet
        if (one_side == 'p') dp = timed_step(p, x, labels);
        else if (one_side == 'a') da = timed_step(a, x, labels);
        else if (r & 1) da = timed_step(a, x, labels), dp = timed_step(p, x, labels);
        else dp = timed_step(p, x, labels), da = timed_step(a, x, labels);
        if (r < 0) continue;
        if (prof.on) printf("  round %d: path %.1f ms, alone %.1f ms\n", r, dp * 1e3, da * 1e3);
        t[r] = dp, t[reps + r] = da, t[2 * reps + r] = one_side ? 0 : dp / da;
    }
    *tp = median(t, reps), *ta = median(t + reps, reps), *ratio = median(t + 2 * reps, reps);
    free(t);
}

int main(int argc, char **argv) {
    const char *space = "search/spaces/mobiledets.space.json";
    int res = 32, batch = 64, archs = 4, reps = 5, threads = 2, only = -1, print_arch = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--space") && i + 1 < argc) space = argv[++i];
        else if (!strcmp(argv[i], "--res") && i + 1 < argc) res = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--archs") && i + 1 < argc) archs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--side") && i + 1 < argc && (!strcmp(argv[i + 1], "path") || !strcmp(argv[i + 1], "alone")))
            one_side = argv[++i][0] == 'p' ? 'p' : 'a';
        else if (!strcmp(argv[i], "--print-arch")) print_arch = 1;
        else if (!strcmp(argv[i], "--interleave")) interleave = 1;
        else if (!strcmp(argv[i], "--profile")) prof.on = 1;
        else if (!strcmp(argv[i], "--json")) continue;
        else {
            fprintf(stderr, "usage: bench_supernet [--space S] [--res R] [--batch B] [--archs N] [--repeats R] [--threads T] [--only K] [--side path|alone] [--print-arch] [--interleave] [--profile]\n");
            return 2;
        }
    }
    ib_set_threads(threads);
    if (prof.on) ib_prof_hook = prof_hook;
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
    int *choice = malloc(sizeof(int) * (size_t)ib_space_genes(&sp)), *other = malloc(sizeof(int) * (size_t)ib_space_genes(&sp));
    ib_rng wr;   // the other paths of the untimed steps: their own stream, so the timed archs stay the same
    ib_rng_seed(&wr, 4, 0);
    printf("bench_supernet: %s at %d px, batch %d, %d threads; supernet %lld weights (%.0f MB with grads and momentum)\n",
           sp.name, res, batch, threads, (long long)sn.ps.numel_params, 3.0 * 4 * (double)sn.ps.numel_params / 1e6);
    printf("%-6s %10s %10s %8s %12s %12s %8s %9s %9s\n", "arch", "path ms", "alone ms", "time x", "path arena",
           "alone arena", "mem x", "weights", "stepped");
    double worst_t = 0, worst_m = 0;
    for (int a = 0; a < archs; a++) {
        ib_space_sample(&sp, a == 0 ? IB_SAMPLE_LARGEST : IB_SAMPLE_RANDOM, &r, choice);
        if (only >= 0 && a != only) continue;
        ib_net net;
        if (ib_supernet_extract(&sn, choice, &net)) {
            fprintf(stderr, "bench_supernet: %s\n", ib_errmsg());
            return 1;
        }
        for (int l = 0; print_arch && l < net.arch.n_blocks; l++) {
            const ib_block_cfg *bc = &net.arch.blocks[l];
            printf("%s%s:k%de%d", l ? " " : "arch: ", ib_block_op_name(bc->op), bc->kernel, bc->expand);
            if (bc->op == IB_BLOCK_GCIBN) printf("g%d", bc->groups);
            if (bc->op == IB_BLOCK_TUCKER) printf("i%go%g", bc->r_in, bc->r_out);
            printf(l + 1 == net.arch.n_blocks ? "\n" : "");
        }
        ib_optim *nopt = ib_optim_new(&oc, &net.ps);
        side path = {ib_ctx_new(), &sn, choice, NULL, sopt, &sn.ps, calloc((size_t)sn.ps.n, 1),
                     calloc((size_t)sn.ps.numel_params, 1), 0, &sp, &wr, other, ib_ctx_new()};
        side al = {ib_ctx_new(), NULL, NULL, &net, nopt, &net.ps, NULL, NULL, 0, NULL, NULL, NULL, NULL};
        IB_ASSERT(path.active && path.elem, "out of memory");
        double t1, t2, tr;
        time_sides(&path, &al, &xt, labels, reps, &t1, &t2, &tr);
        int64_t stepped = 0;   // the supernet's weights the path's last step updated
        for (int i = 0; i < sn.ps.n; i++) {
            const ib_tensor *t = sn.ps.t[i];
            if (sn.ps.is_buffer[i] || !path.active[i]) continue;
            int64_t n = ib_numel(t), off = t->data - sn.ps.data;
            if (path.active[i] == 1) stepped += n;
            else
                for (int64_t j = 0; j < n; j++) stepped += path.elem[off + j];
        }
        size_t p1 = ib_arena_peak(path.ctx->arena), p2 = ib_arena_peak(al.ctx->arena);
        printf("%-6s %10.1f %10.1f %8.3f %10.1fMB %10.1fMB %8.3f %8.2fM %8.2fM\n", a == 0 ? "large" : "rand", t1 * 1e3,
               t2 * 1e3, tr, (double)p1 / 1e6, (double)p2 / 1e6, (double)p1 / (double)p2,
               (double)net.ps.numel_params / 1e6, (double)stepped / 1e6);
        if (prof.on) prof_print(reps - 1);
        if (tr > worst_t) worst_t = tr;
        if ((double)p1 / (double)p2 > worst_m) worst_m = (double)p1 / (double)p2;
        free(path.active);
        free(path.elem);
        ib_ctx_free(path.ctx);
        ib_ctx_free(path.other_ctx);
        ib_ctx_free(al.ctx);
        ib_optim_free(nopt);
        ib_net_free(&net);
    }
    if (one_side) printf("bench_supernet: one side stepped (--side), no ratios\n");
    else
        printf("bench_supernet: worst step time %.3fx, worst arena peak %.3fx of the subnet alone (bars: 1.15x, 1.2x)\n",
               worst_t, worst_m);
    free(choice);
    free(other);
    free(labels);
    free(xd);
    ib_ctx_free(ctx);
    ib_optim_free(sopt);
    ib_supernet_free(&sn);
    ib_space_free(&sp);
    return 0;
}
