// Layers against PyTorch: every block op (tests/ref/layers.h5, from tests/ref/layers.py) forward and
// backward in training and eval mode, gradient checks of each op through a whole block in training mode,
// the whole torchvision mobilenet_v2 (tests/ref/mobilenetv2.h5, a checkpoint written by
// tools/torch2ibnas.py) in eval mode and for one SGD training step, and checkpoint round trips and rejections.
// IBNAS_VERBOSE=1 prints the error of every mobilenet_v2 gradient.
#include "tests/test.h"
#include "layers/layers.h"
#include "optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK_TOL 1e-5
#define NET_TOL 1e-4

// rel_err of n floats against dataset `name`; keeps the worst error seen in *worst.
static int compare(ib_h5 *f, const char *name, const float *x, int64_t n, double tol, double *worst, char *msg,
                   size_t msgn) {
    if (!x) {
        snprintf(msg, msgn, "%s: no gradient was computed", name);
        return 0;
    }
    float *ref = malloc(sizeof(float) * (size_t)(n ? n : 1));
    IB_ASSERT(ref, "out of memory");
    ib_status s = ib_h5_read_f32(f, name, ref, n);
    if (s) {
        snprintf(msg, msgn, "%s", ib_errmsg());
        free(ref);
        return 0;
    }
    double e = rel_err(x, ref, n);
    free(ref);
    if (worst && !(e <= *worst)) *worst = e;
    if (!(e <= tol)) {
        snprintf(msg, msgn, "%s: relative error %.3g > %.3g", name, e, tol);
        return 0;
    }
    return 1;
}

static void count_member(const char *name, void *user) {
    (void)name;
    (*(int *)user)++;
}

static int count_members(ib_h5 *f, const char *group) {
    int n = 0;
    if (ib_h5_exists(f, group)) ib_h5_list(f, group, count_member, &n);
    return n;
}

// ---------------------------------------------------------------------------------------------
// Blocks

static const char *const BLOCK_CASES[] = {
    "ibn_e1_k3_s1",   "ibn_e6_k3_s1",   "ibn_e6_k5_s2",   "ibn_e6_k7_s1_se_hswish",
    "fused_e4_k3_s1", "fused_e3_k5_s2", "tucker_k3_s1",   "tucker_k5_s2",
    "gcibn_g2_k3_s1", "gcibn_g4_k5_s2", "gcibn_g4_k7_s1", "skip",
};
#define PREFIX "blk"   // the block's tensors are "blk.conv.0.0.weight"; the reference has "conv.0.0.weight"

static int read_cfg(ib_h5 *f, const char *cs, ib_block_cfg *cfg, int *cin, char *msg, size_t msgn) {
    char grp[128], *op = NULL, *act = NULL;
    int64_t v[5];
    double r[3];
    static const char *const ints[5] = {"cin", "out", "stride", "kernel", "expand"};
    static const char *const floats[3] = {"r_in", "r_out", "se"};
    snprintf(grp, sizeof grp, "/%s", cs);
    int ok = 1;
    for (int i = 0; i < 5 && ok; i++) ok = ib_h5_attr_i64(f, grp, ints[i], &v[i]) == IB_OK;
    for (int i = 0; i < 3 && ok; i++) ok = ib_h5_attr_f64(f, grp, floats[i], &r[i]) == IB_OK;
    int64_t groups = 1;
    if (ok) ok = ib_h5_attr_i64(f, grp, "groups", &groups) == IB_OK;
    if (ok) ok = ib_h5_attr_str(f, grp, "op", &op) == IB_OK && ib_h5_attr_str(f, grp, "act", &act) == IB_OK;
    if (!ok) {
        snprintf(msg, msgn, "%s", ib_errmsg());
        free(op), free(act);
        return 0;
    }
    memset(cfg, 0, sizeof *cfg);
    cfg->op = (ib_block_op)-1;
    for (int i = 0; i <= IB_BLOCK_SKIP; i++)
        if (!strcmp(op, ib_block_op_name((ib_block_op)i))) cfg->op = (ib_block_op)i;
    *cin = (int)v[0];
    cfg->out = (int)v[1], cfg->stride = (int)v[2], cfg->kernel = (int)v[3], cfg->expand = (int)v[4];
    cfg->groups = (int)groups;
    cfg->r_in = (float)r[0], cfg->r_out = (float)r[1], cfg->se = (float)r[2];
    ok = (int)cfg->op >= 0 && ib_act_parse(act, &cfg->act);
    if (!ok) snprintf(msg, msgn, "%s: op %s act %s not understood", cs, op, act);
    // The network's activation is relu6; a block-level relu6 says the same.
    if (cfg->act == IB_ACT_RELU6) cfg->act = IB_ACT_NONE;
    free(op), free(act);
    return ok;
}

typedef struct {
    double out, gx, grad, buffers;
} block_errs;

static void worst_of(double *w, double e) {
    if (!(e <= *w)) *w = e;
}

// Runs one reference case; errors (train and eval separately) into errs[0], errs[1].
static int block_case(ib_h5 *f, const char *cs, block_errs errs[2], char *msg, size_t msgn) {
    ib_block_cfg cfg;
    int cin;
    if (!read_cfg(f, cs, &cfg, &cin, msg, msgn)) return 0;
    ib_params ps;
    ib_params_init(&ps);
    ib_block b;
    ib_block_init(&b, &ps, PREFIX, &cfg, cin, IB_ACT_RELU6);
    int ok = ib_params_alloc(&ps) == IB_OK;
    char name[512], grp[128];
    snprintf(grp, sizeof grp, "%s/params", cs);
    int n_ref = count_members(f, grp);
    snprintf(grp, sizeof grp, "%s/buffers", cs);
    n_ref += count_members(f, grp);
    if (ok && n_ref != ps.n) {
        snprintf(msg, msgn, "%s: the block has %d tensors, the torch module %d", cs, ps.n, n_ref);
        ok = 0;
    }
    const size_t skip = strlen(PREFIX) + 1;
    for (int i = 0; i < ps.n && ok; i++) {
        snprintf(name, sizeof name, "%s/%s/%s", cs, ps.is_buffer[i] ? "buffers" : "params", ps.t[i]->name + skip);
        if (ib_h5_read_into(f, name, ps.t[i])) {
            snprintf(msg, msgn, "%s", ib_errmsg());
            ok = 0;
        }
    }
    ib_ctx *ctx = ib_ctx_new();
    // Training first, then eval with the running statistics the training step left (as the script).
    for (int mode = 0; mode < 2 && ok; mode++) {
        const char *m = mode == 0 ? "train" : "eval";
        block_errs *e = &errs[mode];
        ib_ctx_reset(ctx);
        ib_params_zero_grad(&ps);
        ctx->training = mode == 0;
        ctx->recording = 1;
        ib_tensor *x, *gout;
        snprintf(name, sizeof name, "%s/x", cs);
        ok = ib_h5_read(f, name, ctx, &x) == IB_OK;
        snprintf(name, sizeof name, "%s/gout", cs);
        ok = ok && ib_h5_read(f, name, ctx, &gout) == IB_OK;
        if (!ok) {
            snprintf(msg, msgn, "%s", ib_errmsg());
            break;
        }
        x->requires_grad = 1;
        ib_tensor *out = ib_block_forward(ctx, &b, x);
        if (!ib_same_shape(out, gout)) {
            char s1[64], s2[64];
            snprintf(msg, msgn, "%s %s: output %s, torch's %s", cs, m, ib_shape_str(out, s1, sizeof s1),
                     ib_shape_str(gout, s2, sizeof s2));
            ok = 0;
            break;
        }
        snprintf(name, sizeof name, "%s/%s/out", cs, m);
        ok = compare(f, name, out->data, ib_numel(out), BLOCK_TOL, &e->out, msg, msgn);
        ib_backward(ctx, out, gout->data);
        snprintf(name, sizeof name, "%s/%s/gx", cs, m);
        ok = ok && compare(f, name, x->grad, ib_numel(x), BLOCK_TOL, &e->gx, msg, msgn);
        for (int i = 0; i < ps.n && ok; i++) {
            ib_tensor *t = ps.t[i];
            if (ps.is_buffer[i]) {
                if (mode != 0) continue;
                snprintf(name, sizeof name, "%s/train/buffers/%s", cs, t->name + skip);
                ok = compare(f, name, t->data, ib_numel(t), BLOCK_TOL, &e->buffers, msg, msgn);
            } else {
                snprintf(name, sizeof name, "%s/%s/grad/%s", cs, m, t->name + skip);
                ok = compare(f, name, t->grad, ib_numel(t), BLOCK_TOL, &e->grad, msg, msgn);
            }
        }
    }
    ib_ctx_free(ctx);
    ib_params_free(&ps);
    return ok;
}

TEST(blocks_match_torch) {
    ib_h5 *f;
    CHECK(ib_h5_open(&f, ref_path("layers.h5")) == IB_OK, "%s", ib_errmsg());
    block_errs all[2] = {{0}};
    char msg[1024] = "";
    int ok = 1;
    for (size_t c = 0; c < sizeof BLOCK_CASES / sizeof *BLOCK_CASES && ok; c++) {
        block_errs e[2] = {{0}};
        ok = block_case(f, BLOCK_CASES[c], e, msg, sizeof msg);
        if (!ok) break;
        printf("  %-24s train: out %.2g gx %.2g grads %.2g buffers %.2g | eval: out %.2g gx %.2g grads %.2g\n",
               BLOCK_CASES[c], e[0].out, e[0].gx, e[0].grad, e[0].buffers, e[1].out, e[1].gx, e[1].grad);
        for (int m = 0; m < 2; m++) {
            worst_of(&all[m].out, e[m].out), worst_of(&all[m].gx, e[m].gx);
            worst_of(&all[m].grad, e[m].grad), worst_of(&all[m].buffers, e[m].buffers);
        }
    }
    ib_h5_close(f);
    CHECK(ok, "%s", msg);
    printf("  worst over all blocks: train out %.2g, gx %.2g, grads %.2g, running stats %.2g; "
           "eval out %.2g, gx %.2g, grads %.2g\n",
           all[0].out, all[0].gx, all[0].grad, all[0].buffers, all[1].out, all[1].gx, all[1].grad);
}

// Gradient check through a whole block in training mode: the input and five of the block's tensors
// (first conv, first BN weight, last stage's BN bias, projection conv, projection BN weight) are made
// leaves of the check by pointing the block at them.
typedef struct {
    ib_block *b;
} gc_block;

static ib_tensor *block_fwd(ib_ctx *ctx, ib_tensor **in, void *user) {
    ib_block *b = ((gc_block *)user)->b;
    ib_cba *last = &b->stages[b->n_stages - 1];
    b->stages[0].conv.w = in[1];
    b->stages[0].bn.w = in[2];
    last->bn.b = in[3];
    b->project.w = in[4];
    b->project_bn.w = in[5];
    ctx->training = 1;
    return ib_block_forward(ctx, b, in[0]);
}

// Weights of order 1 / sqrt(fan_in). The blocks use h-swish: inside (-3, 3) it is smooth and not linear,
// and the stage BNs (0 +- 0.45 x_hat) keep its inputs there, so central differences straddle no kink and
// a stage BN's bias has a gradient (with ReLU6 in its linear range the next BN in training mode would
// subtract the shift, leaving a zero gradient that a relative check cannot judge). ReLU6 is covered by
// the PyTorch parity cases.
static void init_gc_block(ib_params *ps, uint64_t seed) {
    ib_rng r;
    ib_rng_seed(&r, seed, 3);
    for (int i = 0; i < ps->n; i++) {
        ib_tensor *t = ps->t[i];
        int64_t n = ib_numel(t);
        const char *leaf = strrchr(t->name, '.') + 1;
        if (t->ndim == 4) {
            double fan_in = (double)t->shape[1] * t->shape[2] * t->shape[3];
            ib_rng_fill_normal(&r, t->data, n, 0.0f, (float)(1.0 / sqrt(fan_in)));
        } else if (strstr(t->name, ".fc")) {   // SE biases: fc1's keep the ReLU away from 0
            for (int64_t j = 0; j < n; j++) t->data[j] = 1.0f;
        } else if (!strcmp(leaf, "weight")) {
            ib_rng_fill_uniform(&r, t->data, n, 0.35f, 0.55f);
        } else if (!strcmp(leaf, "bias")) {
            ib_rng_fill_uniform(&r, t->data, n, -0.3f, 0.3f);
        } else if (!strcmp(leaf, "running_var")) {
            for (int64_t j = 0; j < n; j++) t->data[j] = 1.0f;
        }
    }
}

TEST(blocks_gradcheck_training) {
    static const ib_block_cfg cfgs[] = {
        {.op = IB_BLOCK_IBN, .out = 4, .stride = 1, .kernel = 3, .expand = 3, .act = IB_ACT_HSWISH},
        {.op = IB_BLOCK_IBN, .out = 8, .stride = 2, .kernel = 5, .expand = 4, .se = 0.25f, .act = IB_ACT_HSWISH},
        {.op = IB_BLOCK_FUSED, .out = 4, .stride = 1, .kernel = 3, .expand = 3, .act = IB_ACT_HSWISH},
        {.op = IB_BLOCK_TUCKER, .out = 8, .stride = 2, .kernel = 3, .r_in = 0.75f, .r_out = 0.75f, .act = IB_ACT_HSWISH},
        {.op = IB_BLOCK_GCIBN, .out = 4, .stride = 1, .kernel = 3, .expand = 2, .groups = 2, .act = IB_ACT_HSWISH},
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof *cfgs; c++) {
        const ib_block_cfg *cfg = &cfgs[c];
        int cin = 4;
        CHECK(ib_block_check(cfg, cin, "gc") == IB_OK, "%s", ib_errmsg());
        ib_params ps;
        ib_params_init(&ps);
        ib_block b;
        ib_block_init(&b, &ps, "gc", cfg, cin, IB_ACT_RELU6);
        CHECK(ib_params_alloc(&ps) == IB_OK, "alloc");
        init_gc_block(&ps, 100 + c);
        ib_block saved = b;
        ib_tensor x;
        float xd[2 * 4 * 5 * 5];
        ib_tensor_init(&x, xd, 4, (int[]){2, cin, 5, 5});
        fill_normal(&x, 7 + c, 1.0f);
        ib_cba *last = &b.stages[b.n_stages - 1];
        ib_tensor *in[6] = {&x, b.stages[0].conv.w, b.stages[0].bn.w, last->bn.b, b.project.w, b.project_bn.w};
        int check[6] = {1, 1, 1, 1, 1, 1};
        gc_block u = {&b};
        char msg[512];
        int ok = gradcheck(block_fwd, &u, 6, in, check, (gc_opts){.h = 3e-3, .tol = 3e-3}, msg, sizeof msg);
        b = saved;
        ib_params_free(&ps);
        CHECK(ok, "%s block (case %zu): %s", ib_block_op_name(cfg->op), c, msg);
    }
}

// ---------------------------------------------------------------------------------------------
// The whole mobilenet_v2

// The reference: tests/ref/mobilenetv2.h5, or IBNAS_MOBILENETV2_REF (a file written by
// `tests/ref/mobilenetv2.py --updated --out PATH`, which also holds torch's updated weights).
static const char *mnv2_path(void) {
    const char *env = getenv("IBNAS_MOBILENETV2_REF");
    return env && *env ? env : ref_path("mobilenetv2.h5");
}

TEST(mobilenetv2_arch_json_matches_torch2ibnas) {
    ib_h5 *f;
    const char *path = mnv2_path();
    CHECK(ib_h5_open(&f, path) == IB_OK, "%s", ib_errmsg());
    char *theirs = NULL;
    ib_status s = ib_h5_attr_str(f, "/", "arch", &theirs);
    ib_h5_close(f);
    CHECK(s == IB_OK, "%s", ib_errmsg());
    ib_arch a;
    ib_arch_mobilenetv2(&a, 0.35f, 10);
    char *ours = ib_arch_to_json(&a);
    int same = !strcmp(ours, theirs);
    if (!same) printf("--- ib_arch_to_json:\n%s--- torch2ibnas:\n%s", ours, theirs);
    free(ours), free(theirs);
    ib_arch_free(&a);
    CHECK(same, "the arch JSON torch2ibnas wrote differs from ib_arch_to_json(ib_arch_mobilenetv2(0.35, 10))");
}

TEST(mobilenetv2_matches_torchvision) {
    const char *path = mnv2_path();
    ib_net net;
    CHECK(ib_ckpt_load(&net, path) == IB_OK, "%s", ib_errmsg());
    ib_h5 *f;
    CHECK(ib_h5_open(&f, path) == IB_OK, "%s", ib_errmsg());
    ib_ctx *ctx = ib_ctx_new();
    char msg[1024] = "", name[512];
    double e_eval = 0, e_train = 0, e_loss = 0, e_grad = 0, e_buf = 0, e_upd = 0, zero_abs = 0;
    const char *worst_grad = "";
    int ok = 1, n_zero = 0, grad_fail = 0;
    ib_optim *opt = NULL;
    float *w0 = NULL, *g_ref = NULL;

    // Eval mode: running statistics.
    ctx->training = 0;
    ctx->recording = 0;
    ib_tensor *x;
    ok = ib_h5_read(f, "ref/x", ctx, &x) == IB_OK;
    if (!ok) snprintf(msg, sizeof msg, "%s", ib_errmsg());
    int n = ok ? x->shape[0] : 0;
    if (ok) {
        ib_tensor *logits = ib_net_forward(ctx, &net, x);
        ok = compare(f, "ref/logits_eval", logits->data, ib_numel(logits), NET_TOL, &e_eval, msg, sizeof msg);
    }

    // One training step: batch statistics, dropout 0, label-smoothed cross-entropy, SGD.
    int32_t labels[64];
    if (ok) ok = n <= 64 && ib_h5_read_i32(f, "ref/labels", labels, n) == IB_OK;
    if (ok) {
        ib_ctx_reset(ctx);
        ctx->training = 1;
        ctx->recording = 1;
        net.arch.dropout = 0;
        ib_params_zero_grad(&net.ps);
        ok = ib_h5_read(f, "ref/x", ctx, &x) == IB_OK;
        ib_tensor *logits = ib_net_forward(ctx, &net, x);
        ok = ok && compare(f, "ref/logits_train", logits->data, ib_numel(logits), NET_TOL, &e_train, msg, sizeof msg);
        ib_tensor *loss = ib_cross_entropy(ctx, logits, labels, 0.1f, -1);
        ok = ok && compare(f, "ref/loss", loss->data, 1, NET_TOL, &e_loss, msg, sizeof msg);
        if (ok) ib_backward(ctx, loss, NULL);
    }
    // Gradients per tensor. A few are zero in exact arithmetic: the projection-BN bias of a block whose
    // output only feeds a 1x1 conv and a BN in training mode (the next BN subtracts the batch mean, so a
    // per-channel shift cancels). There the reference is rounding noise, so the check is absolute: our
    // gradient must be as small, relative to the whole gradient's norm.
    double gnorm2 = 0;
    if (ok) {
        g_ref = malloc(sizeof(float) * (size_t)net.ps.numel_params);
        IB_ASSERT(g_ref, "out of memory");
        for (int i = 0; i < net.ps.n && ok; i++) {
            if (net.ps.is_buffer[i]) continue;
            ib_tensor *t = net.ps.t[i];
            snprintf(name, sizeof name, "ref/grad/%s", t->name);
            ok = ib_h5_read_f32(f, name, g_ref + (t->data - net.ps.data), ib_numel(t)) == IB_OK;
            if (!ok) snprintf(msg, sizeof msg, "%s", ib_errmsg());
        }
        for (int64_t j = 0; ok && j < net.ps.numel_params; j++) gnorm2 += (double)g_ref[j] * g_ref[j];
    }
    for (int i = 0; i < net.ps.n && ok; i++) {
        ib_tensor *t = net.ps.t[i];
        int64_t m = ib_numel(t);
        if (net.ps.is_buffer[i]) {
            snprintf(name, sizeof name, "ref/buffers_train/%s", t->name);
            ok = compare(f, name, t->data, m, NET_TOL, &e_buf, msg, sizeof msg);
            continue;
        }
        const float *ref = g_ref + (t->data - net.ps.data);
        double rn = 0, d2 = 0;
        for (int64_t j = 0; j < m; j++) {
            rn += (double)ref[j] * ref[j];
            d2 += ((double)t->grad[j] - ref[j]) * ((double)t->grad[j] - ref[j]);
        }
        if (!isfinite(d2)) {
            snprintf(msg, sizeof msg, "%s: non-finite gradient", t->name);
            ok = 0;
        } else if (sqrt(rn) < 1e-7 * sqrt(gnorm2)) {
            n_zero++;
            double a = sqrt(d2 / gnorm2);
            worst_of(&zero_abs, a);
            if (!(a <= 1e-6)) {
                snprintf(msg, sizeof msg, "%s: gradient is zero in exact arithmetic, ours has norm %.3g of the total",
                         t->name, a);
                ok = 0;
            }
        } else {
            double e = sqrt(d2 / rn);
            if (!(e <= e_grad)) e_grad = e, worst_grad = t->name;
            if (getenv("IBNAS_VERBOSE")) printf("    grad %-32s %.3g\n", t->name, e);
            if (!(e <= NET_TOL) && !grad_fail) {   // go on, so the report shows every tensor
                snprintf(msg, sizeof msg, "gradient of %s: relative error %.3g > %.3g", t->name, e, NET_TOL);
                grad_fail = 1;
            }
        }
    }
    if (grad_fail) ok = 0;
    // The SGD step, through optim/.
    int have_updated = ok && ib_h5_exists(f, "ref/updated");
    if (ok) {
        ib_optim_cfg oc = ib_optim_cfg_default(IB_OPTIM_SGD, 0);
        oc.momentum = 0.9f, oc.nesterov = 1, oc.weight_decay = 4e-5f, oc.no_decay_bn_bias = 0;
        opt = ib_optim_new(&oc, &net.ps);
        ok = opt != NULL;
        if (!ok) snprintf(msg, sizeof msg, "ib_optim_new: %s", ib_errmsg());
        w0 = malloc(sizeof(float) * (size_t)net.ps.numel_params);
        IB_ASSERT(w0, "out of memory");
        memcpy(w0, net.ps.data, sizeof(float) * (size_t)net.ps.numel_params);
        if (ok) ib_optim_step(opt, 0.1f);
    }
    for (int i = 0; i < net.ps.n && ok; i++) {
        if (net.ps.is_buffer[i]) continue;
        ib_tensor *t = net.ps.t[i];
        int64_t m = ib_numel(t), off = t->data - net.ps.data;
        if (have_updated) {
            snprintf(name, sizeof name, "ref/updated/%s", t->name);
            ok = compare(f, name, t->data, m, NET_TOL, &e_upd, msg, sizeof msg);
        } else {
            // torch.optim.SGD's first step (momentum buffer = d): w - lr * (d + momentum * d),
            // d = g + wd * w, with torch's gradients.
            double num = 0, den = 0;
            for (int64_t j = 0; j < m; j++) {
                double w = w0[off + j], d = (double)g_ref[off + j] + 4e-5 * w;
                double want = w - 0.1 * (d + 0.9 * d);
                num += (t->data[j] - want) * (t->data[j] - want);
                den += want * want;
            }
            double e = den > 0 ? sqrt(num / den) : sqrt(num);
            worst_of(&e_upd, e);
            if (!(e <= NET_TOL)) {
                snprintf(msg, sizeof msg, "updated %s: relative error %.3g > %.3g", t->name, e, NET_TOL);
                ok = 0;
            }
        }
    }
    if (ok)
        printf("  mobilenet_v2 0.35 (10 classes, 4x3x48x48): eval logits %.2g; train logits %.2g, loss %.2g, "
               "running stats %.2g, gradients %.2g (worst %s), %d zero gradients to %.2g of the total; updated "
               "weights %.2g (%s)\n",
               e_eval, e_train, e_loss, e_buf, e_grad, worst_grad, n_zero, zero_abs, e_upd,
               have_updated ? "torch.optim.SGD's" : "torch.optim.SGD's formula on torch's gradients");
    ib_optim_free(opt);
    free(w0), free(g_ref);
    ib_ctx_free(ctx);
    ib_h5_close(f);
    ib_net_free(&net);
    CHECK(ok, "%s", msg);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

static void tmp_name(char *buf, size_t n, const char *what) {
    snprintf(buf, n, "%s/layers_%s.h5", test_tmpdir(), what);
}

TEST(checkpoint_round_trip_is_exact) {
    ib_net a, b;
    CHECK(ib_ckpt_load(&a, mnv2_path()) == IB_OK, "%s", ib_errmsg());
    char path[256];
    tmp_name(path, sizeof path, "rt");
    ib_status s = ib_ckpt_save(&a, path, NULL, NULL);
    if (s) ib_net_free(&a);
    CHECK(s == IB_OK, "save: %s", ib_errmsg());
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int renamed = access(path, R_OK) == 0 && access(tmp, F_OK) != 0;
    if (!renamed) ib_net_free(&a), unlink(path);
    CHECK(renamed, "the checkpoint must be renamed into place");
    s = ib_ckpt_load(&b, path);
    unlink(path);
    if (s) ib_net_free(&a);
    CHECK(s == IB_OK, "load: %s", ib_errmsg());
    int ok = a.ps.n == b.ps.n;
    const char *bad = "";
    for (int i = 0; ok && i < a.ps.n; i++) {
        ok = !strcmp(a.ps.t[i]->name, b.ps.t[i]->name) && a.ps.is_buffer[i] == b.ps.is_buffer[i] &&
             !memcmp(a.ps.t[i]->data, b.ps.t[i]->data, sizeof(float) * (size_t)ib_numel(a.ps.t[i]));
        if (!ok) bad = a.ps.t[i]->name;
    }
    char *ja = ib_arch_to_json(&a.arch), *jb = ib_arch_to_json(&b.arch);
    int same_arch = !strcmp(ja, jb);
    free(ja), free(jb);
    int n = a.ps.n;
    ib_net_free(&a), ib_net_free(&b);
    CHECK(ok, "tensor %s differs after save and load", bad);
    CHECK(same_arch, "the arch differs after save and load");
    CHECK(n == 262, "mobilenet_v2 has 158 parameters and 104 buffers, got %d tensors", n);
}

typedef struct {
    const char *attr;
    const char *str;
    int64_t num;
} attr_override;

static ib_status override_attr(ib_h5 *f, void *user) {
    attr_override *o = user;
    return o->str ? ib_h5_set_attr_str(f, "/", o->attr, o->str) : ib_h5_set_attr_i64(f, "/", o->attr, o->num);
}

// Writes net's checkpoint by hand, leaving out tensor `drop` or writing `reshape` with one row less.
static ib_status write_broken(const ib_net *net, const char *path, const char *drop, const char *reshape) {
    ib_h5 *f;
    ib_status s = ib_h5_create(&f, path);
    if (s) return s;
    char *json = ib_arch_to_json(&net->arch);
    s = ib_h5_set_attr_str(f, "/", "format", IB_CKPT_FORMAT);
    if (!s) s = ib_h5_set_attr_i64(f, "/", "version", IB_CKPT_VERSION);
    if (!s) s = ib_h5_set_attr_str(f, "/", "arch", json);
    free(json);
    char name[512];
    for (int i = 0; i < net->ps.n && !s; i++) {
        const ib_tensor *t = net->ps.t[i];
        if (drop && !strcmp(t->name, drop)) continue;
        snprintf(name, sizeof name, "%s/%s", net->ps.is_buffer[i] ? "buffers" : "params", t->name);
        int shape[IB_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (reshape && !strcmp(t->name, reshape)) shape[0]--;
        s = ib_h5_write_f32(f, name, t->data, t->ndim, shape);
    }
    if (s) {
        ib_h5_abort(f);
        return s;
    }
    return ib_h5_close(f);
}

// Class names go into the checkpoint and come back; a net without them loads without them.
TEST(checkpoint_keeps_class_names) {
    ib_net net, back;
    CHECK(ib_ckpt_load(&net, mnv2_path()) == IB_OK, "%s", ib_errmsg());
    CHECK(!net.class_names && !net.n_class_names, "a checkpoint without names loaded %d", net.n_class_names);
    const char *names[] = {"cat", "dog", "traffic light"}, *gap[] = {"cat", NULL};
    CHECK(ib_net_set_class_names(&net, gap, 2) == IB_OK && !net.class_names, "a missing name must record none");
    CHECK(ib_net_set_class_names(&net, names, 3) == IB_OK && net.n_class_names == 3, "%s", ib_errmsg());
    char path[256];
    tmp_name(path, sizeof path, "names");
    CHECK(ib_ckpt_save(&net, path, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    ib_net_free(&net);
    CHECK(ib_ckpt_load(&back, path) == IB_OK, "%s", ib_errmsg());
    unlink(path);
    int same = back.n_class_names == 3;
    for (int c = 0; same && c < 3; c++) same = !strcmp(back.class_names[c], names[c]);
    ib_net_free(&back);
    CHECK(same, "the names did not come back");
}

TEST(checkpoint_rejects_bad_files) {
    ib_net net, other;
    CHECK(ib_ckpt_load(&net, mnv2_path()) == IB_OK, "%s", ib_errmsg());
    char path[256], msg[1024] = "";
    int ok = 1;
    // name of the case, how to break it, words the message must hold
    struct {
        const char *what;
        attr_override o;
        const char *drop, *reshape, *want;
    } cases[] = {
        {"format", {"format", "not-a-checkpoint", 0}, NULL, NULL, "format"},
        {"version", {"version", NULL, 2}, NULL, NULL, "version 2"},
        {"missing", {0}, "features.7.conv.1.1.running_var", NULL, "buffers/features.7.conv.1.1.running_var"},
        {"shape", {0}, NULL, "features.5.conv.2.weight", "params/features.5.conv.2.weight"},
        {"names", {"class_names", "[1, 2]", 0}, NULL, NULL, "class_names"},
        {"names0", {"class_names", "[\"cat\", \"\"]", 0}, NULL, NULL, "class_names"},
        {"names1", {"class_names", "{\"cat\": 0}", 0}, NULL, NULL, "class_names"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases && ok; c++) {
        tmp_name(path, sizeof path, cases[c].what);
        ib_status s = cases[c].o.attr ? ib_ckpt_save(&net, path, override_attr, &cases[c].o)
                                      : write_broken(&net, path, cases[c].drop, cases[c].reshape);
        if (s) {
            snprintf(msg, sizeof msg, "%s: writing the broken file: %s", cases[c].what, ib_errmsg());
            ok = 0;
            break;
        }
        s = ib_ckpt_load(&other, path);
        const char *m = ib_errmsg();
        unlink(path);
        if (s == IB_OK) {
            ib_net_free(&other);
            snprintf(msg, sizeof msg, "%s: a broken checkpoint loaded", cases[c].what);
            ok = 0;
        } else if (!strstr(m, path) || !strstr(m, cases[c].want)) {
            snprintf(msg, sizeof msg, "%s: message \"%s\" should name %s and %s", cases[c].what, m, path, cases[c].want);
            ok = 0;
        } else {
            printf("  %-8s -> %s\n", cases[c].what, m);
        }
    }
    // A missing file.
    if (ok) {
        ib_status s = ib_ckpt_load(&other, "/nonexistent/ibnas.h5");
        ok = s != IB_OK && strstr(ib_errmsg(), "/nonexistent/ibnas.h5");
        if (s == IB_OK) ib_net_free(&other);
        if (!ok) snprintf(msg, sizeof msg, "a missing file: \"%s\"", ib_errmsg());
    }
    ib_net_free(&net);
    CHECK(ok, "%s", msg);
}
