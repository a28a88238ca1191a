// ibnas bench: training throughput and inference latency of a network on random data, measured as
// the PyTorch scripts in shared/bench/ measure them (median over repeats after warm-up). With
// --profile, a per-layer time breakdown through core's profiling hook (ib_prof_hook, core.h): every op
// reports when its forward or backward ends, the network reports which part (block) it is in, and the
// time between two reports is charged to the op that ended. docs/BENCH.md describes the tables.
#include "cli/cli.h"
#include "core/core.h"
#include "layers/layers.h"
#include "optim/optim.h"
#include "tasks/tasks.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *usage_text =
    "usage: ibnas bench train|infer [--arch A] [--res R] [--batch B] [--threads T] [--classes C] [--profile]\n"
    "                               [--json]\n\n"
    "train: SGD steps (momentum 0.9, weight decay 4e-5) on random images and labels; reports images/s\n"
    "       and the peak resident memory. infer: eval-mode forward passes; reports ms per batch.\n"
    "--profile adds the time per op kind and per block (median over the timed repeats of each entry).\n";

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

// ---------------------------------------------------------------------------------------------
// Profile: times per (part of the network, op kind, phase), one set per timed step.

enum {
    K_CONV1X1, K_CONV, K_DW, K_BN, K_BNACT, K_ACT, K_ADD, K_POOL, K_LINEAR, K_LOSS, K_DROPOUT, K_COPY, K_OTHER,
    K_GLUE, K_OPTIM, N_KINDS
};
static const char *kind_names[N_KINDS] = {"conv1x1", "conv kxk", "depthwise", "batchnorm", "bn+act",
                                          "activation", "add/mul", "pool", "linear", "loss", "dropout", "copy",
                                          "other op", "glue", "optimizer"};
enum { PH_FWD, PH_BWD, PH_STEP, N_PHASES };
static const char *phase_names[N_PHASES] = {"fwd", "bwd", "step"};

typedef struct prof {
    int n_parts;          // parts: 0 loss (scope -1), 1 + scope for the network's, then the optimizer
    int cells;            // n_parts * N_KINDS * N_PHASES
    double *cur;          // this step's seconds per cell
    double *hist;         // [repeats][cells]
    double *macs;         // forward multiply-adds per cell (one step; the same every step)
    int repeats, n_done;
    double last;          // time of the previous event
    int *tape_part;       // the part of each tape node, for its backward
    int tape_cap;
    char (*out_shape)[48];   // last forward output shape seen in each part
    char other_name[32];     // the first op name classified "other"
    char fused_name[32];     // the first fused convolution seen (conv + BN + activation in one op)
} prof;
static prof P;

static int part_of_scope(int scope) {
    int p = scope + 1;
    return p >= 0 && p < P.n_parts - 1 ? p : 0;
}
static double *cell(double *base, int part, int kind, int phase) {
    return base + ((size_t)part * N_KINDS + (size_t)kind) * N_PHASES + (size_t)phase;
}

// Convolutions by their weight: depthwise (C, 1, K, K) over C channels, pointwise K = 1, else dense.
static int conv_kind(const ib_prof_event *e) {
    if (e->n_in < 2 || !e->in[0] || !e->in[1] || e->in[1]->ndim != 4) return K_CONV;
    const ib_tensor *x = e->in[0], *w = e->in[1];
    if (w->shape[1] == 1 && w->shape[0] == x->shape[1] && x->shape[1] > 1) return K_DW;
    return w->shape[2] == 1 && w->shape[3] == 1 ? K_CONV1X1 : K_CONV;
}

static int classify(const ib_prof_event *e) {
    const char *n = e->op->name;
    if (strstr(n, "conv") && strstr(n, "bn") && !P.fused_name[0])
        snprintf(P.fused_name, sizeof P.fused_name, "%s", n);
    if (strstr(n, "dwconv")) return K_DW;
    if (strstr(n, "conv")) return conv_kind(e);
    if (strstr(n, "batchnorm") && strstr(n, "act")) return K_BNACT;
    if (strstr(n, "batchnorm") || !strcmp(n, "bn")) return K_BN;
    if (!strcmp(n, "relu") || !strcmp(n, "relu6") || !strcmp(n, "hswish") || !strcmp(n, "hsigmoid") ||
        !strcmp(n, "sigmoid"))
        return K_ACT;
    if (!strcmp(n, "add") || !strcmp(n, "mul_channel") || !strcmp(n, "concat")) return K_ADD;
    if (strstr(n, "pool")) return K_POOL;
    if (!strcmp(n, "linear") || !strcmp(n, "matmul")) return K_LINEAR;
    if (!strcmp(n, "cross_entropy") || !strcmp(n, "kl_div_softmax") || !strcmp(n, "smooth_l1") || !strcmp(n, "sum"))
        return K_LOSS;
    if (!strcmp(n, "dropout")) return K_DROPOUT;
    if (!strcmp(n, "contiguous")) return K_COPY;
    if (!P.other_name[0]) snprintf(P.other_name, sizeof P.other_name, "%s", n);
    return K_OTHER;
}

// Forward multiply-adds of an op from its shapes (convolutions and linear layers; the rest is small).
static double op_macs(const ib_prof_event *e, int kind) {
    if (!e->out || e->n_in < 2 || !e->in[1]) return 0;
    const ib_tensor *w = e->in[1];
    double out = (double)ib_numel(e->out);
    if (kind == K_CONV1X1 || kind == K_CONV || kind == K_DW)
        return w->ndim == 4 ? out * w->shape[1] * w->shape[2] * w->shape[3] : 0;
    if (kind == K_LINEAR && w->ndim == 2) return out * w->shape[1];
    return 0;
}

static void prof_hook(const ib_prof_event *e) {
    double now = ib_time_s(), dt = now - P.last;
    P.last = now;
    int part, kind = e->op ? classify(e) : K_GLUE;
    if (e->backward) {
        part = e->tape_index >= 0 && e->tape_index < P.tape_cap ? P.tape_part[e->tape_index] : 0;
    } else {
        part = part_of_scope(e->scope);
        if (e->tape_index >= 0) {
            if (e->tape_index >= P.tape_cap) {
                int cap = P.tape_cap ? P.tape_cap : 256;
                while (cap <= e->tape_index) cap *= 2;
                int *t = realloc(P.tape_part, sizeof(int) * (size_t)cap);
                IB_ASSERT(t, "out of memory");
                P.tape_part = t, P.tape_cap = cap;
            }
            P.tape_part[e->tape_index] = part;
        }
        if (e->op) {
            *cell(P.macs, part, kind, PH_FWD) += op_macs(e, kind);
            if (e->out) {
                char *o = P.out_shape[part];
                size_t k = 0, n = sizeof P.out_shape[part];
                o[0] = 0;
                for (int d = 0; d < e->out->ndim && k < n; d++)
                    k += (size_t)snprintf(o + k, n - k, d ? "x%d" : "%d", e->out->shape[d]);
            }
        }
    }
    *cell(P.cur, part, kind, e->backward ? PH_BWD : PH_FWD) += dt;
}

static void prof_init(int n_blocks, int repeats) {
    memset(&P, 0, sizeof P);
    P.n_parts = n_blocks + 5;   // loss, stem, blocks, head, classifier, optimizer
    P.cells = P.n_parts * N_KINDS * N_PHASES;
    P.repeats = repeats;
    P.cur = calloc((size_t)P.cells, sizeof(double));
    P.macs = calloc((size_t)P.cells, sizeof(double));
    P.hist = calloc((size_t)P.cells * (size_t)repeats, sizeof(double));
    P.out_shape = calloc((size_t)P.n_parts, sizeof *P.out_shape);
    IB_ASSERT(P.cur && P.macs && P.hist && P.out_shape, "out of memory");
}

static void prof_free(void) {
    free(P.cur), free(P.macs), free(P.hist), free(P.out_shape), free(P.tape_part);
    memset(&P, 0, sizeof P);
}

// Starts a step's clock (forward) or restarts it (before backward, so zero_grad is not charged).
static void prof_mark(int new_step) {
    if (new_step) {
        memset(P.cur, 0, sizeof(double) * (size_t)P.cells);
        memset(P.macs, 0, sizeof(double) * (size_t)P.cells);
    }
    P.last = ib_time_s();
}

static void prof_end_step(int timed) {
    if (timed && P.n_done < P.repeats) memcpy(P.hist + (size_t)P.n_done++ * P.cells, P.cur, sizeof(double) * P.cells);
}

// Medians over the timed steps, per cell (ms).
static void prof_medians(double *med) {
    double *col = malloc(sizeof(double) * (size_t)(P.n_done ? P.n_done : 1));
    IB_ASSERT(col, "out of memory");
    for (int c = 0; c < P.cells; c++) {
        for (int r = 0; r < P.n_done; r++) col[r] = P.hist[(size_t)r * P.cells + c];
        med[c] = P.n_done ? 1e3 * median(col, P.n_done) : 0;
    }
    free(col);
}

static void part_label(const ib_net *net, int part, char *name, size_t nn, char *desc, size_t nd) {
    int nb = net->arch.n_blocks;
    desc[0] = 0;
    if (part == 0) {
        snprintf(name, nn, "(outside)");
        snprintf(desc, nd, "loss");
    } else if (part == P.n_parts - 1) {
        snprintf(name, nn, "optimizer");
        snprintf(desc, nd, "zero_grad + SGD step");
    } else if (part - 1 <= nb) {   // features.0 (stem) .. features.nb
        snprintf(name, nn, "features.%d", part - 1);
        if (part == 1) {
            const ib_conv *c = &net->stem.conv;
            snprintf(desc, nd, "stem conv%dx%d s%d %d->%d", c->k, c->k, c->stride, c->cin, c->cout);
        } else {
            const ib_block *b = &net->blocks[part - 2];
            const ib_block_cfg *c = &b->cfg;
            snprintf(desc, nd, "%s e%d k%d s%d %d->%d", ib_block_op_name(c->op), c->expand, c->kernel, c->stride,
                     b->cin, c->out);
        }
    } else if (part - 1 == nb + 1) {
        snprintf(name, nn, "features.%d", nb + 1);
        if (net->has_head) snprintf(desc, nd, "head conv1x1 %d->%d", net->head.conv.cin, net->head.conv.cout);
    } else {
        snprintf(name, nn, "classifier");
        snprintf(desc, nd, "pool + linear %d->%d", net->fc.in, net->fc.out);
    }
}

typedef struct { int idx; double ms; } row;
static int cmp_row(const void *a, const void *b) {
    double x = ((const row *)a)->ms, y = ((const row *)b)->ms;
    return (x < y) - (x > y);
}

static void prof_report(const ib_net *net, int train, int json, double step_ms) {
    double *med = malloc(sizeof(double) * (size_t)P.cells);
    IB_ASSERT(med, "out of memory");
    prof_medians(med);
    double total = 0, *sums = calloc((size_t)(P.n_done ? P.n_done : 1), sizeof(double));
    IB_ASSERT(sums, "out of memory");
    for (int c = 0; c < P.cells; c++) total += med[c];
    for (int r = 0; r < P.n_done; r++)
        for (int c = 0; c < P.cells; c++) sums[r] += 1e3 * P.hist[(size_t)r * P.cells + c];
    double step_sum = P.n_done ? median(sums, P.n_done) : 0;
    free(sums);
    double pct = total > 0 ? 100.0 / total : 0;
    // By kind and phase.
    row kr[N_KINDS * N_PHASES];
    double kmacs[N_KINDS] = {0};
    int nk = 0;
    for (int k = 0; k < N_KINDS; k++) {
        for (int p = 0; p < P.n_parts; p++) kmacs[k] += *cell(P.macs, p, k, PH_FWD);
        for (int ph = 0; ph < N_PHASES; ph++) {
            double ms = 0;
            for (int p = 0; p < P.n_parts; p++) ms += *cell(med, p, k, ph);
            if (ms >= 0.0005) kr[nk++] = (row){k * N_PHASES + ph, ms};
        }
    }
    qsort(kr, (size_t)nk, sizeof *kr, cmp_row);
    // By part.
    row *pr = malloc(sizeof(row) * (size_t)P.n_parts);
    double *pf = calloc((size_t)P.n_parts * N_PHASES, sizeof(double));
    IB_ASSERT(pr && pf, "out of memory");
    int np = 0;
    for (int p = 0; p < P.n_parts; p++) {
        double ms = 0;
        for (int k = 0; k < N_KINDS; k++)
            for (int ph = 0; ph < N_PHASES; ph++) {
                pf[p * N_PHASES + ph] += *cell(med, p, k, ph);
                ms += *cell(med, p, k, ph);
            }
        if (ms >= 0.0005) pr[np++] = (row){p, ms};
    }
    qsort(pr, (size_t)np, sizeof *pr, cmp_row);
    char name[32], desc[64];
    if (json) {
        printf(", \"profile\": {\"steps\": %d, \"step_ms\": %.3f, \"profiled_step_ms\": %.3f, \"entries_ms\": %.3f, "
               "\"by_kind\": [",
               P.n_done, step_ms, step_sum, total);
        for (int i = 0; i < nk; i++) {
            int k = kr[i].idx / N_PHASES, ph = kr[i].idx % N_PHASES;
            double gf = ph == PH_FWD && kmacs[k] > 0 ? 2 * kmacs[k] / (kr[i].ms * 1e-3) * 1e-9 : 0;
            printf("%s{\"kind\": \"%s\", \"phase\": \"%s\", \"ms\": %.3f, \"pct\": %.2f", i ? ", " : "",
                   kind_names[k], phase_names[ph], kr[i].ms, kr[i].ms * pct);
            if (gf > 0) printf(", \"gmacs\": %.4f, \"gflops\": %.2f", kmacs[k] * 1e-9, gf);
            printf("}");
        }
        printf("], \"fused_conv_op\": \"%s\", \"by_block\": [", P.fused_name);
        for (int i = 0; i < np; i++) {
            int p = pr[i].idx;
            part_label(net, p, name, sizeof name, desc, sizeof desc);
            printf("%s{\"block\": \"%s\", \"desc\": \"%s\", \"out\": \"%s\", \"fwd_ms\": %.3f, \"bwd_ms\": %.3f, "
                   "\"step_ms\": %.3f, \"ms\": %.3f, \"pct\": %.2f}",
                   i ? ", " : "", name, desc, P.out_shape[p], pf[p * N_PHASES], pf[p * N_PHASES + 1],
                   pf[p * N_PHASES + 2], pr[i].ms, pr[i].ms * pct);
        }
        printf("]}");
    } else {
        printf("\nprofile over %d steps: step %.2f ms (median), profiled part of it %.2f ms (median of the sums);\n"
               "each entry is its median over the steps, and these sum to %.2f ms (%% are of that sum)\n",
               P.n_done, step_ms, step_sum, total);
        printf("\n%-12s %-5s %9s %6s %8s %8s\n", "op kind", "phase", "ms", "%", "GMAC", "GFLOP/s");
        for (int i = 0; i < nk; i++) {
            int k = kr[i].idx / N_PHASES, ph = kr[i].idx % N_PHASES;
            printf("%-12s %-5s %9.3f %5.1f%%", kind_names[k], phase_names[ph], kr[i].ms, kr[i].ms * pct);
            if (ph == PH_FWD && kmacs[k] > 0)
                printf(" %8.3f %8.1f", kmacs[k] * 1e-9, 2 * kmacs[k] / (kr[i].ms * 1e-3) * 1e-9);
            printf("\n");
        }
        if (P.other_name[0]) printf("(\"other op\" includes %s)\n", P.other_name);
        if (P.fused_name[0])
            printf("(convolutions fused with their BN and activation, %s, are counted as their convolution)\n",
                   P.fused_name);
        printf("\n%-13s %-26s %-18s %9s %9s %9s %6s\n", "block", "what", "output", "fwd ms", train ? "bwd ms" : "",
               "total ms", "%");
        for (int i = 0; i < np; i++) {
            int p = pr[i].idx;
            part_label(net, p, name, sizeof name, desc, sizeof desc);
            char bwd[16] = "";
            if (train) snprintf(bwd, sizeof bwd, "%9.3f", pf[p * N_PHASES + 1] + pf[p * N_PHASES + 2]);
            printf("%-13s %-26s %-18s %9.3f %9s %9.3f %5.1f%%\n", name, desc, P.out_shape[p], pf[p * N_PHASES], bwd,
                   pr[i].ms, pr[i].ms * pct);
        }
    }
    free(med), free(pr), free(pf);
}

// ---------------------------------------------------------------------------------------------

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            printf("%s", usage_text);
            return 0;
        }
        if (argc >= 2) fprintf(stderr, "ibnas bench: train or infer comes first, got '%s'\n", argv[1]);
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
    int repeats = train ? 10 : 30, warmup = train ? 3 : 5, json = 0, profile = 0, keep_grads = 0;
    const cli_flag flags[] = {
        {"--arch", F_STR, &arch_spec, "mobilenetv2, mobilenetv2:WIDTH or FILE.arch.json"},
        {"--res", F_INT, &res, "input resolution (train 64, infer 224)"},
        {"--batch", F_INT, &batch, "batch size (train 32, infer 1)"},
        {"--threads", F_INT, &threads, "threads (train 2, infer 1)"},
        {"--classes", F_INT, &classes, "classes (train 10, infer 1000)"},
        {"--repeats", F_INT, &repeats, "timed repeats (train 10, infer 30); the median is reported"},
        {"--warmup", F_INT, &warmup, "untimed repeats first (train 3, infer 5)"},
        {"--profile", F_BOOL, &profile, "time per op kind and per block (docs/BENCH.md)"},
        {"--keep-grads", F_BOOL, &keep_grads, "train: keep every activation grad to the end of backward (the old way)"},
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
        ctx->release_grads = !keep_grads;
    } else {
        ctx->training = 0;
        ctx->recording = 0;
    }
    if (profile) {
        prof_init(net.arch.n_blocks, repeats);
        ib_prof_hook = prof_hook;
    }
    for (int i = 0; i < warmup + repeats; i++) {
        double t0 = ib_time_s();
        ib_ctx_reset(ctx);
        if (profile) prof_mark(1);
        ib_tensor *z = ib_net_forward(ctx, &net, &xt);
        if (train) {
            ib_tensor *loss = ib_cross_entropy(ctx, z, y, 0.0f, -1);
            double t1 = ib_time_s();
            ib_params_zero_grad(&net.ps);
            double t2 = ib_time_s();
            if (profile) prof_mark(0);
            ib_backward(ctx, loss, NULL);
            double t3 = ib_time_s();
            ib_optim_step(opt, 0.01f);
            if (profile) *cell(P.cur, P.n_parts - 1, K_OPTIM, PH_STEP) += (t2 - t1) + (ib_time_s() - t3);
        }
        if (profile) prof_end_step(i >= warmup);
        if (i >= warmup) t[i - warmup] = ib_time_s() - t0;
    }
    ib_prof_hook = NULL;
    double med = median(t, repeats);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = (double)ru.ru_maxrss / 1024.0;
    if (json) {
        if (train)
            printf("{\"impl\": \"ibnas-%s\", \"threads\": %d, \"res\": %d, \"batch\": %d, \"train_img_per_s\": %.1f, "
                   "\"ms\": %.2f, \"peak_rss_mb\": %.1f, \"arena_peak_mb\": %.1f, \"params_mb\": %.1f",
                   IB_VERSION_STRING, threads, res, batch, batch / med, med * 1e3, rss_mb,
                   ib_arena_peak(ctx->arena) / 1048576.0, net.ps.numel_params * 4.0 / 1048576.0);
        else
            printf("{\"impl\": \"ibnas-%s\", \"threads\": %d, \"res\": %d, \"batch\": %d, \"ms\": %.2f, "
                   "\"img_per_s\": %.1f, \"peak_rss_mb\": %.1f",
                   IB_VERSION_STRING, threads, res, batch, med * 1e3, batch / med, rss_mb);
        if (profile) prof_report(&net, train, 1, med * 1e3);
        printf("}\n");
    } else {
        if (train)
            printf("train %s res %d batch %d threads %d: %.1f img/s (%.1f ms/step), peak RSS %.1f MB (arena %.1f MB)\n",
                   arch_spec, res, batch, threads, batch / med, med * 1e3, rss_mb,
                   ib_arena_peak(ctx->arena) / 1048576.0);
        else
            printf("infer %s res %d batch %d threads %d: %.2f ms/batch, %.1f img/s\n", arch_spec, res, batch, threads,
                   med * 1e3, batch / med);
        if (profile) prof_report(&net, train, 0, med * 1e3);
    }
    if (profile) prof_free();
    ib_optim_free(opt);
    free(x), free(y), free(t);
    ib_ctx_free(ctx);
    ib_net_free(&net);
    return 0;
}
