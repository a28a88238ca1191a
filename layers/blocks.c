// The inverted-bottleneck family: ibn (MobileNetV2), fused (EdgeTPU/MobileDets), tucker (MobileDets),
// gcibn (MobileNetEdgeTPUV2) and skip. Stage naming follows torchvision's InvertedResidual:
// conv.0, conv.1, ... are conv-BN-act stages, then (optional) squeeze-excite, then the projection conv
// and its BN, so an ibn block's tensors have exactly torchvision's names.
#include "layers/layers.h"

#include <stdio.h>
#include <string.h>

const char *ib_block_op_name(ib_block_op op) {
    static const char *names[] = {"ibn", "fused", "tucker", "gcibn", "skip"};
    return (unsigned)op < 5 ? names[op] : "?";
}

static int tucker_width(float r, int c) { return ib_make_divisible(r * (float)c, 8); }

int ib_block_hidden(const ib_block_cfg *cfg, int cin) {
    switch (cfg->op) {
    case IB_BLOCK_IBN:
    case IB_BLOCK_FUSED:
    case IB_BLOCK_GCIBN: return cin * cfg->expand;
    case IB_BLOCK_TUCKER: return tucker_width(cfg->r_out, cfg->out);
    case IB_BLOCK_SKIP: return cin;
    }
    return cin;
}

ib_status ib_block_check(const ib_block_cfg *c, int cin, const char *where) {
    if (c->stride != 1 && c->stride != 2) return ib_fail(IB_ERR_ARG, "%s.stride: %d (must be 1 or 2)", where, c->stride);
    if (c->out < 1) return ib_fail(IB_ERR_ARG, "%s.out: %d (must be positive)", where, c->out);
    if (c->op == IB_BLOCK_SKIP) {
        if (c->stride != 1 || c->out != cin)
            return ib_fail(IB_ERR_ARG, "%s: skip needs stride 1 and out = in (%d), got stride %d out %d", where, cin,
                           c->stride, c->out);
        return IB_OK;
    }
    if (c->kernel < 1 || c->kernel > 9 || c->kernel % 2 == 0)
        return ib_fail(IB_ERR_ARG, "%s.kernel: %d (must be odd, 1 to 9)", where, c->kernel);
    if (c->op != IB_BLOCK_TUCKER && (c->expand < 1 || c->expand > 8))
        return ib_fail(IB_ERR_ARG, "%s.expand: %d (must be 1 to 8)", where, c->expand);
    if (c->op == IB_BLOCK_TUCKER && !(c->r_in > 0 && c->r_in <= 1 && c->r_out > 0 && c->r_out <= 1))
        return ib_fail(IB_ERR_ARG, "%s: tucker r_in %g, r_out %g (must be in (0, 1])", where, c->r_in, c->r_out);
    if (c->op == IB_BLOCK_GCIBN) {
        if (c->groups < 2 || cin % c->groups || (cin * c->expand) % c->groups)
            return ib_fail(IB_ERR_ARG, "%s.groups: %d must be at least 2 and divide the input width %d", where, c->groups,
                           cin);
    }
    if (c->se < 0 || c->se > 1) return ib_fail(IB_ERR_ARG, "%s.se: %g (must be in [0, 1])", where, c->se);
    return IB_OK;
}

static void block_name(char *buf, size_t n, const char *prefix, int stage) {
    char leaf[32];
    snprintf(leaf, sizeof leaf, "conv.%d", stage);
    ib_name_join(buf, n, prefix, leaf);
}

void ib_block_init(ib_block *b, ib_params *ps, const char *prefix, const ib_block_cfg *cfg, int cin, ib_act net_act) {
    char name[256];
    memset(b, 0, sizeof *b);
    b->cfg = *cfg;
    b->cin = cin;
    b->residual = cfg->stride == 1 && cin == cfg->out;
    if (cfg->op == IB_BLOCK_SKIP) return;
    ib_act act = cfg->act != IB_ACT_NONE ? cfg->act : net_act;
    int k = cfg->kernel, s = cfg->stride, hid = ib_block_hidden(cfg, cin);
    int n = 0;
#define STAGE(ci, co, kk, ss, gg)                                                  \
    do {                                                                           \
        block_name(name, sizeof name, prefix, n);                                  \
        ib_cba_init(&b->stages[n], ps, name, ci, co, kk, ss, gg, act);             \
        n++;                                                                       \
    } while (0)
    switch (cfg->op) {
    case IB_BLOCK_IBN:
        if (cfg->expand != 1) STAGE(cin, hid, 1, 1, 1);
        STAGE(hid, hid, k, s, hid);
        break;
    case IB_BLOCK_FUSED: STAGE(cin, hid, k, s, 1); break;
    case IB_BLOCK_GCIBN: STAGE(cin, hid, k, s, cfg->groups); break;
    case IB_BLOCK_TUCKER: {
        int mid = tucker_width(cfg->r_in, cin);
        STAGE(cin, mid, 1, 1, 1);
        STAGE(mid, hid, k, s, 1);
        break;
    }
    case IB_BLOCK_SKIP: break;
    }
#undef STAGE
    b->n_stages = n;
    if (cfg->se > 0) {
        block_name(name, sizeof name, prefix, n++);
        ib_se_init(&b->se, ps, name, hid, ib_make_divisible((float)hid * cfg->se, 8));
        b->has_se = 1;
    }
    block_name(name, sizeof name, prefix, n++);
    ib_conv_init(&b->project, ps, name, hid, cfg->out, 1, 1, 1, 0);
    block_name(name, sizeof name, prefix, n++);
    ib_bn_init(&b->project_bn, ps, name, cfg->out);
}

ib_tensor *ib_block_forward(ib_ctx *ctx, const ib_block *b, ib_tensor *x) {
    if (b->cfg.op == IB_BLOCK_SKIP) return x;
    ib_tensor *h = x;
    for (int i = 0; i < b->n_stages; i++) h = ib_cba_forward(ctx, &b->stages[i], h);
    if (b->has_se) h = ib_se_forward(ctx, &b->se, h);
    // The projection is a conv-BN stage without activation: as one, so inference fuses it.
    const ib_cba project = {b->project, b->project_bn, IB_ACT_NONE};
    h = ib_cba_forward(ctx, &project, h);
    return b->residual ? ib_add(ctx, x, h) : h;
}

int ib_block_convs(const ib_block_cfg *cfg, int cin, ib_conv_shape *out) {
    int n = 0, k = cfg->kernel, s = cfg->stride, hid = ib_block_hidden(cfg, cin);
#define CONV(ci, co, kk, ss, gg) (out[n++] = (ib_conv_shape){ci, co, kk, ss, gg})
    switch (cfg->op) {
    case IB_BLOCK_SKIP: return 0;
    case IB_BLOCK_IBN:
        if (cfg->expand != 1) CONV(cin, hid, 1, 1, 1);
        CONV(hid, hid, k, s, hid);
        break;
    case IB_BLOCK_FUSED: CONV(cin, hid, k, s, 1); break;
    case IB_BLOCK_GCIBN: CONV(cin, hid, k, s, cfg->groups); break;
    case IB_BLOCK_TUCKER: {
        int mid = tucker_width(cfg->r_in, cin);
        CONV(cin, mid, 1, 1, 1);
        CONV(mid, hid, k, s, 1);
        break;
    }
    }
    CONV(hid, cfg->out, 1, 1, 1);
#undef CONV
    return n;
}

// Output size of a "same"-padded conv: ceil(h / stride) for odd kernels.
static int conv_out(int h, int stride) { return (h + stride - 1) / stride; }

int64_t ib_block_macs(const ib_block_cfg *cfg, int cin, int h, int w) {
    ib_conv_shape cs[IB_BLOCK_MAX_STAGES + 1];
    int n = ib_block_convs(cfg, cin, cs);
    int64_t macs = 0;
    for (int i = 0; i < n; i++) {
        h = conv_out(h, cs[i].stride), w = conv_out(w, cs[i].stride);
        macs += (int64_t)h * w * cs[i].cout * (cs[i].cin / cs[i].groups) * cs[i].k * cs[i].k;
    }
    if (cfg->se > 0 && n > 0) {
        int hid = ib_block_hidden(cfg, cin), sq = ib_make_divisible((float)hid * cfg->se, 8);
        macs += 2 * (int64_t)hid * sq;
    }
    return macs;
}
