// The BiFPN segmentation head (EfficientDet's weighted bidirectional feature pyramid): the backbone's
// levels at strides low_stride .. high_stride, each projected to `width` channels, then `repeats` layers of
// a top-down and a bottom-up pass whose nodes fuse their inputs with fast normalised weights
// (ib_weighted_sum) and a depthwise-separable 3x3. The last layer's outputs, upsampled to the finest level
// and fused the same way (so every level's bottom-up output counts), go to the classifier.
#include "tasks/segment.h"

#include <stdio.h>


static void node_init(ib_seg_bifpn_node *n, ib_params *ps, const char *prefix, int inputs, int width) {
    char name[128];
    snprintf(name, sizeof name, "%s.fuse.weight", prefix);   // 1-d "weight": initialised to 1 (equal shares)
    n->fuse = ib_params_add(ps, name, 1, (int[]){inputs}, 1);
    ib_seg_sep_init(&n->dw, &n->pw, ps, prefix, width, width, 1);
}

ib_status ib_seg_bifpn_register(ib_seg_head *head, ib_params *ps, const ib_arch *a) {
    const ib_seg_head_cfg *c = &head->cfg;
    int L = 0;
    for (int s = c->low_stride; s <= c->high_stride; s *= 2) {
        if (L == IB_SEG_BIFPN_MAX_LEVELS)
            return ib_fail(IB_ERR_ARG, "bifpn: strides %d..%d are more than %d levels", c->low_stride, c->high_stride,
                           IB_SEG_BIFPN_MAX_LEVELS);
        int b = ib_arch_last_block_at_stride(a, s);
        if (b < -1 || (L > 0 && b <= head->level_block[L - 1]))
            return ib_fail(IB_ERR_ARG, "%s: no block at stride %d for a BiFPN level (levels: strides %d..%d, "
                           "--low-stride/--high-stride)", a->name, s, c->low_stride, c->high_stride);
        head->level_block[L++] = b;
    }
    if (L < 2 || c->low_stride * (1 << (L - 1)) != c->high_stride)
        return ib_fail(IB_ERR_ARG, "bifpn: levels from stride %d to %d must be at least two, a power of 2 apart",
                       c->low_stride, c->high_stride);
    if (c->repeats < 1 || c->repeats > IB_SEG_BIFPN_MAX_REPEATS || c->width < 1)
        return ib_fail(IB_ERR_ARG, "bifpn: repeats %d (1..%d), width %d", c->repeats, IB_SEG_BIFPN_MAX_REPEATS,
                       c->width);
    head->levels = L;
    char name[128];
    for (int l = 0; l < L; l++) {
        int b = head->level_block[l], cin = b < 0 ? a->stem_out : a->blocks[b].out;
        snprintf(name, sizeof name, "seg.bifpn.lateral.%d", l);
        ib_cba_init(&head->lateral[l], ps, name, cin, c->width, 1, 1, 1, IB_ACT_NONE);
    }
    for (int r = 0; r < c->repeats; r++) {
        for (int l = 0; l < L - 1; l++) {
            snprintf(name, sizeof name, "seg.bifpn.%d.td.%d", r, l);
            node_init(&head->bifpn[r].td[l], ps, name, 2, c->width);
        }
        for (int l = 1; l < L; l++) {
            snprintf(name, sizeof name, "seg.bifpn.%d.up.%d", r, l);
            node_init(&head->bifpn[r].up[l], ps, name, l < L - 1 ? 3 : 2, c->width);
        }
    }
    head->merge = ib_params_add(ps, "seg.bifpn.merge.weight", 1, (int[]){L}, 1);
    return IB_OK;
}

static ib_tensor *node_forward(ib_ctx *ctx, const ib_seg_bifpn_node *n, int k, ib_tensor **in) {
    ib_tensor *f = ib_weighted_sum(ctx, k, in, n->fuse, IB_SEG_FUSE_EPS);
    return ib_cba_forward(ctx, &n->pw, ib_cba_forward(ctx, &n->dw, f));
}

// The finer level's size from the coarser: nearest upsampling (EfficientDet's 2x).
static ib_tensor *up_to(ib_ctx *ctx, ib_tensor *x, const ib_tensor *like) {
    return ib_resize_nearest(ctx, x, like->shape[2], like->shape[3]);
}

// The coarser level's size from the finer: 3x3 max pooling, stride 2, padding 1 (ceil(h / 2), the size a
// stride-2 conv with "same" padding gives); a level of another size is resized nearest after that.
static ib_tensor *down_to(ib_ctx *ctx, ib_tensor *x, const ib_tensor *like) {
    ib_tensor *p = ib_max_pool(ctx, x, 3, 2, 1);
    if (p->shape[2] != like->shape[2] || p->shape[3] != like->shape[3])
        p = ib_resize_nearest(ctx, p, like->shape[2], like->shape[3]);
    return p;
}

ib_tensor *ib_seg_bifpn_forward(ib_ctx *ctx, const ib_seg_head *head, ib_tensor *const *feats, int H, int W) {
    // feats[l]: (N, C_l, h_l, w_l), finest first -> logits (N, classes, h_0, w_0), or (N, classes, H, W)
    const int L = head->levels;
    ib_tensor *p[IB_SEG_BIFPN_MAX_LEVELS], *td[IB_SEG_BIFPN_MAX_LEVELS];
    for (int l = 0; l < L; l++) p[l] = ib_cba_forward(ctx, &head->lateral[l], feats[l]);
    for (int r = 0; r < head->cfg.repeats; r++) {
        const ib_seg_bifpn_layer *ly = &head->bifpn[r];
        // Top-down: each level fused with the coarser level's top-down output.
        td[L - 1] = p[L - 1];
        for (int l = L - 2; l >= 0; l--)
            td[l] = node_forward(ctx, &ly->td[l], 2, (ib_tensor *[]){p[l], up_to(ctx, td[l + 1], p[l])});
        // Bottom-up: each level's input, its top-down output (but the coarsest's) and the finer output.
        ib_tensor *out[IB_SEG_BIFPN_MAX_LEVELS];
        out[0] = td[0];
        for (int l = 1; l < L; l++) {
            ib_tensor *down = down_to(ctx, out[l - 1], p[l]);
            out[l] = l < L - 1 ? node_forward(ctx, &ly->up[l], 3, (ib_tensor *[]){p[l], td[l], down})
                               : node_forward(ctx, &ly->up[l], 2, (ib_tensor *[]){p[l], down});
        }
        for (int l = 0; l < L; l++) p[l] = out[l];
    }
    for (int l = 1; l < L; l++) p[l] = ib_resize_bilinear(ctx, p[l], p[0]->shape[2], p[0]->shape[3]);
    ib_tensor *z = ib_conv_forward(ctx, &head->cls, ib_weighted_sum(ctx, L, p, head->merge, IB_SEG_FUSE_EPS));
    return H > 0 ? ib_resize_bilinear(ctx, z, H, W) : z;
}
