// Conv, batchnorm, linear, conv-BN-activation and squeeze-excite modules, and default initialisation.
#include "layers/layers.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void ib_name_join(char *buf, size_t n, const char *prefix, const char *leaf) {
    int k = snprintf(buf, n, "%s%s%s", prefix, prefix[0] ? "." : "", leaf);
    IB_ASSERT(k > 0 && (size_t)k < n, "parameter name too long: %s.%s", prefix, leaf);
}

ib_tensor *ib_act_apply(ib_ctx *ctx, ib_act act, ib_tensor *x) {
    switch (act) {
    case IB_ACT_NONE: return x;
    case IB_ACT_RELU: return ib_relu(ctx, x);
    case IB_ACT_RELU6: return ib_relu6(ctx, x);
    case IB_ACT_HSWISH: return ib_hswish(ctx, x);
    }
    IB_ASSERT(0, "unknown activation %d", (int)act);
}

const char *ib_act_name(ib_act act) {
    static const char *names[] = {"none", "relu", "relu6", "hswish"};
    return (unsigned)act < 4 ? names[act] : "?";
}

int ib_act_parse(const char *s, ib_act *act) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, ib_act_name((ib_act)i))) {
            *act = (ib_act)i;
            return 1;
        }
    return 0;
}

int ib_make_divisible(float v, int divisor) {
    int nv = (int)(v + divisor / 2.0f) / divisor * divisor;
    if (nv < divisor) nv = divisor;
    if (nv < 0.9f * v) nv += divisor;
    return nv;
}

// ---------------------------------------------------------------------------------------------

void ib_conv_init(ib_conv *c, ib_params *ps, const char *prefix, int cin, int cout, int k, int stride, int groups,
                  int bias) {
    IB_ASSERT(groups >= 1 && cin % groups == 0 && cout % groups == 0, "%s: %d groups do not divide %d -> %d",
              prefix, groups, cin, cout);
    char name[256];
    memset(c, 0, sizeof *c);
    c->cin = cin, c->cout = cout, c->k = k, c->stride = stride, c->dilation = 1, c->groups = groups;
    ib_name_join(name, sizeof name, prefix, "weight");
    c->w = ib_params_add(ps, name, 4, (int[]){cout, cin / groups, k, k}, 0);
    if (bias) {
        ib_name_join(name, sizeof name, prefix, "bias");
        c->b = ib_params_add(ps, name, 1, (int[]){cout}, 1);
    }
}

ib_tensor *ib_conv_forward(ib_ctx *ctx, const ib_conv *c, ib_tensor *x) {
    IB_ASSERT(x->shape[1] == c->cin, "conv %s: input has %d channels, expected %d", c->w->name, x->shape[1], c->cin);
    int pad = c->dilation * (c->k - 1) / 2;
    return ib_conv2d(ctx, x, c->w, c->b, c->stride, pad, c->dilation, c->groups);
}

ib_tensor *ib_conv_forward_sub(ib_ctx *ctx, const ib_conv *c, ib_tensor *x, int cout, int k) {
    int cin = x->shape[1];
    int depthwise = c->groups == c->cin && c->groups == c->cout;
    IB_ASSERT(depthwise || c->groups == 1, "conv %s: sub-configurations of grouped convs are not supported",
              c->w->name);
    if (depthwise) IB_ASSERT(cout == cin, "depthwise %s: sub-width %d must equal the input's %d", c->w->name, cout, cin);
    if (cin == c->cin && cout == c->cout && k == c->k) return ib_conv_forward(ctx, c, x);
    IB_ASSERT(cin <= c->cin && cout <= c->cout && k <= c->k, "conv %s: sub-config %d->%d k%d exceeds %d->%d k%d",
              c->w->name, cin, cout, k, c->cin, c->cout, c->k);
    ib_tensor *w = ib_view_slice(ctx, c->w, cout, depthwise ? 1 : cin, k, k);   // ib_conv2d reads views
    ib_tensor *b = c->b ? ib_view_range(ctx, c->b, 0, 0, cout) : NULL;
    int pad = c->dilation * (k - 1) / 2;
    return ib_conv2d(ctx, x, w, b, c->stride, pad, c->dilation, depthwise ? cout : 1);
}

void ib_bn_init(ib_bn *bn, ib_params *ps, const char *prefix, int c) {
    char name[256];
    bn->c = c;
    bn->momentum = 0.1f;
    bn->eps = 1e-5f;
    ib_name_join(name, sizeof name, prefix, "weight");
    bn->w = ib_params_add(ps, name, 1, (int[]){c}, 1);
    ib_name_join(name, sizeof name, prefix, "bias");
    bn->b = ib_params_add(ps, name, 1, (int[]){c}, 1);
    ib_name_join(name, sizeof name, prefix, "running_mean");
    bn->mean = ib_params_add_buffer(ps, name, 1, (int[]){c});
    ib_name_join(name, sizeof name, prefix, "running_var");
    bn->var = ib_params_add_buffer(ps, name, 1, (int[]){c});
}

// The BN's tensors for x's channels: a narrower path of a shared layer uses the first c (views).
static void bn_tensors(ib_ctx *ctx, const ib_bn *bn, int c, ib_tensor **t) {
    IB_ASSERT(c <= bn->c, "batchnorm %s: %d channels, has %d", bn->w->name, c, bn->c);
    ib_tensor *all[4] = {bn->w, bn->b, bn->mean, bn->var};
    for (int i = 0; i < 4; i++) t[i] = c < bn->c ? ib_view_range(ctx, all[i], 0, 0, c) : all[i];
}

// ib_act and ib_fuse_act number the activations alike.
_Static_assert((int)IB_ACT_NONE == (int)IB_FUSE_NONE && (int)IB_ACT_RELU == (int)IB_FUSE_RELU &&
                   (int)IB_ACT_RELU6 == (int)IB_FUSE_RELU6 && (int)IB_ACT_HSWISH == (int)IB_FUSE_HSWISH,
               "ib_act and ib_fuse_act differ");

// BN then the activation, as one op (core's ib_batchnorm_act: no tensor between them).
static ib_tensor *bn_act_forward(ib_ctx *ctx, const ib_bn *bn, ib_act act, ib_tensor *x) {
    ib_tensor *t[4];
    bn_tensors(ctx, bn, x->shape[1], t);
    return ib_batchnorm_act(ctx, x, t[0], t[1], t[2], t[3], ctx->training, bn->momentum, bn->eps, (ib_fuse_act)act);
}

ib_tensor *ib_bn_forward(ib_ctx *ctx, const ib_bn *bn, ib_tensor *x) { return bn_act_forward(ctx, bn, IB_ACT_NONE, x); }

void ib_linear_init(ib_linear_mod *l, ib_params *ps, const char *prefix, int in, int out) {
    char name[256];
    l->in = in, l->out = out;
    ib_name_join(name, sizeof name, prefix, "weight");
    l->w = ib_params_add(ps, name, 2, (int[]){out, in}, 0);
    ib_name_join(name, sizeof name, prefix, "bias");
    l->b = ib_params_add(ps, name, 1, (int[]){out}, 1);
}

ib_tensor *ib_linear_forward(ib_ctx *ctx, const ib_linear_mod *l, ib_tensor *x) { return ib_linear(ctx, x, l->w, l->b); }

void ib_cba_init(ib_cba *m, ib_params *ps, const char *prefix, int cin, int cout, int k, int stride, int groups,
                 ib_act act) {
    char name[256];
    ib_name_join(name, sizeof name, prefix, "0");
    ib_conv_init(&m->conv, ps, name, cin, cout, k, stride, groups, 0);
    ib_name_join(name, sizeof name, prefix, "1");
    ib_bn_init(&m->bn, ps, name, cout);
    m->act = act;
}

// Inference (eval mode, nothing recorded, the full layer): conv, BN and activation in one pass over the
// output (core's ib_conv2d_bn_act). The BN is applied where the conv stores each output channel, from
// the running statistics as they are at that call: nothing is folded into a copy of the weights, so
// there is no cache to go stale when an optimizer step or a checkpoint load changes them.
static int conv_bn_fusable(const ib_ctx *ctx, const ib_conv *c, const ib_bn *bn, const ib_tensor *x) {
    return !ctx->training && !ctx->recording && x->shape[1] == c->cin && bn->c == c->cout;
}

static ib_tensor *conv_bn_act_forward(ib_ctx *ctx, const ib_conv *c, const ib_bn *bn, ib_act act, ib_tensor *x) {
    if (conv_bn_fusable(ctx, c, bn, x)) {
        int pad = c->dilation * (c->k - 1) / 2;
        return ib_conv2d_bn_act(ctx, x, c->w, c->b, c->stride, pad, c->dilation, c->groups, bn->w, bn->b, bn->mean,
                                bn->var, bn->eps, (ib_fuse_act)act);
    }
    return bn_act_forward(ctx, bn, act, ib_conv_forward(ctx, c, x));
}

ib_tensor *ib_cba_forward(ib_ctx *ctx, const ib_cba *m, ib_tensor *x) {
    return conv_bn_act_forward(ctx, &m->conv, &m->bn, m->act, x);
}

void ib_se_init(ib_se *se, ib_params *ps, const char *prefix, int c, int squeeze) {
    char name[256];
    ib_name_join(name, sizeof name, prefix, "fc1");
    ib_conv_init(&se->fc1, ps, name, c, squeeze, 1, 1, 1, 1);
    ib_name_join(name, sizeof name, prefix, "fc2");
    ib_conv_init(&se->fc2, ps, name, squeeze, c, 1, 1, 1, 1);
}

ib_tensor *ib_se_forward(ib_ctx *ctx, const ib_se *se, ib_tensor *x) {
    ib_tensor *s = ib_global_avg_pool(ctx, x);
    s = ib_relu(ctx, ib_conv_forward(ctx, &se->fc1, s));
    s = ib_hsigmoid(ctx, ib_conv_forward(ctx, &se->fc2, s));
    return ib_mul_channel(ctx, x, s);
}

// ---------------------------------------------------------------------------------------------

void ib_params_init_default(ib_params *ps, uint64_t seed) {
    ib_rng r;
    ib_rng_seed(&r, seed, 0x1417);
    for (int i = 0; i < ps->n; i++) {
        ib_tensor *t = ps->t[i];
        int64_t n = ib_numel(t);
        const char *leaf = strrchr(t->name, '.');
        leaf = leaf ? leaf + 1 : t->name;
        if (ps->is_buffer[i]) {
            float v = !strcmp(leaf, "running_var") ? 1.0f : 0.0f;
            for (int64_t j = 0; j < n; j++) t->data[j] = v;
        } else if (t->ndim == 4) {   // conv: kaiming normal, fan_out, gain sqrt(2)
            double fan_out = (double)t->shape[0] * t->shape[2] * t->shape[3];
            ib_rng_fill_normal(&r, t->data, n, 0.0f, (float)sqrt(2.0 / fan_out));
        } else if (t->ndim == 2) {
            ib_rng_fill_normal(&r, t->data, n, 0.0f, 0.01f);
        } else {   // 1-d: BN weight 1, every bias and BN bias 0
            float v = !strcmp(leaf, "weight") ? 1.0f : 0.0f;
            for (int64_t j = 0; j < n; j++) t->data[j] = v;
        }
    }
}
