// api: ib_model_export, a network as an ONNX graph (docs/EXPORT.md). The graph is the eval-mode network
// op for op: each conv-BN(-act) stage is a Conv (BN folded into its weight and bias, or a
// BatchNormalization after it with --keep-bn) and its activation (ReLU6 as Clip, h-swish as HardSwish
// from opset 14, x * HardSigmoid before), squeeze-excite as GlobalAveragePool, Conv, Relu, Conv,
// HardSigmoid, Mul, the residual as Add; then the classifier: GlobalAveragePool, Flatten, Gemm.
// Values and initializers carry the checkpoint's dotted names, so a node reads like the tensor it came from.
//
// The backbone (export_features) is apart from the classifier head, so a detection or segmentation head
// can be exported after it from the same feature (and tap) values.
#include "api/api.h"
#include "api/onnx_graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPSET_MIN 11
#define OPSET_MAX 21

// The input normalisation every ibnas network expects (include/ibnas.h, "Conventions").
static const char *const input_norm =
    "float32 NCHW RGB, x = (pixel - mean) / std with pixels in 0..255, mean 123.675,116.28,103.53, "
    "std 58.395,57.12,57.375 (ImageNet's, as ib_image_load and ib_dataset_input prepare images)";

void ib_export_opts_default(ib_export_opts *o) {
    memset(o, 0, sizeof *o);
    o->format = "onnx";
    o->opset = 13;
    o->res = 0;
    o->batch = 1;
    o->keep_bn = 0;
}

typedef struct {
    og_graph *g;
    int opset, keep_bn;
    int have_empty_roi;   // the empty "const.empty" Resize roi (opsets below 13) is in the graph
} exporter;

#define NAME_MAX_LEN 320   // value and initializer names: parameter names (< 256) and a suffix

// Formats a name into buf (NAME_MAX_LEN); longer is a programming error.
__attribute__((format(printf, 2, 3))) static void name_fmt(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, NAME_MAX_LEN, fmt, ap);
    va_end(ap);
    IB_ASSERT(k >= 0 && k < NAME_MAX_LEN, "ONNX value name too long: %s...", buf);
}

static const char *join(char *buf, const char *a, const char *b) {
    name_fmt(buf, "%s%s%s", a, a[0] ? "." : "", b);
    return buf;
}

// Value names are copied into caller buffers of NAME_MAX_LEN that may be the source itself.
static void set_name(char *out, const char *s) {
    if (out != s) memmove(out, s, strlen(s) + 1);
}

static int64_t dims4(int64_t *d, const ib_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) d[i] = t->shape[i], n *= t->shape[i];
    return n;
}

static void conv_attrs(exporter *e, og_node *n, const ib_conv *c) {
    int64_t k = c->k, pad = c->dilation * (c->k - 1) / 2;
    og_attr_ints(e->g, n, "kernel_shape", 2, (int64_t[]){k, k});
    og_attr_ints(e->g, n, "strides", 2, (int64_t[]){c->stride, c->stride});
    og_attr_ints(e->g, n, "pads", 4, (int64_t[]){pad, pad, pad, pad});
    og_attr_ints(e->g, n, "dilations", 2, (int64_t[]){c->dilation, c->dilation});
    og_attr_int(e->g, n, "group", c->groups);
}

// A Conv with the conv's own weight (and bias, if it has one), output named `out`.
static const char *conv_plain(exporter *e, const ib_conv *c, const char *x, const char *prefix, const char *out) {
    int64_t d[4];
    char nm[NAME_MAX_LEN];
    dims4(d, c->w);
    const char *w = og_initializer(e->g, join(nm, prefix, "weight"), 4, d, c->w->data);
    const char *b = NULL;
    if (c->b) {
        d[0] = c->cout;
        b = og_initializer(e->g, join(nm, prefix, "bias"), 1, d, c->b->data);
    }
    const char *in[3] = {x, w, b};
    og_node *n = og_add_node(e->g, "Conv", b ? 3 : 2, in, out);
    conv_attrs(e, n, c);
    return out;
}

// Conv then BN, as one Conv with the BN folded in (w' = w * s, b' = beta + (b - mean) * s with
// s = gamma / sqrt(var + eps), in double), or as Conv + BatchNormalization.
static ib_status conv_bn(exporter *e, const ib_conv *c, const ib_bn *bn, const char *x, const char *out) {
    char conv_prefix[NAME_MAX_LEN], bn_prefix[NAME_MAX_LEN], nm[NAME_MAX_LEN];
    // Initializers are named after the checkpoint's tensors: the module prefix is the weight's name less
    // its last component ("features.3.conv.0.0" for the conv, "features.3.conv.0.1" for its BN).
    name_fmt(conv_prefix, "%s", c->w->name);
    char *dot = strrchr(conv_prefix, '.');
    if (dot) *dot = 0;
    name_fmt(bn_prefix, "%s", bn->w->name);
    dot = strrchr(bn_prefix, '.');
    if (dot) *dot = 0;
    if (e->keep_bn) {
        char mid[NAME_MAX_LEN];
        name_fmt(mid, "%s", conv_prefix);
        conv_plain(e, c, x, conv_prefix, mid);
        int64_t d[1] = {bn->c};
        const char *in[5] = {mid, og_initializer(e->g, join(nm, bn_prefix, "weight"), 1, d, bn->w->data),
                             og_initializer(e->g, join(nm, bn_prefix, "bias"), 1, d, bn->b->data),
                             og_initializer(e->g, join(nm, bn_prefix, "running_mean"), 1, d, bn->mean->data),
                             og_initializer(e->g, join(nm, bn_prefix, "running_var"), 1, d, bn->var->data)};
        og_node *n = og_add_node(e->g, "BatchNormalization", 5, in, out);
        og_attr_float(e->g, n, "epsilon", bn->eps);
        return IB_OK;
    }
    int64_t d[4];
    int64_t numel = dims4(d, c->w), per = numel / c->cout;
    float *w = malloc(sizeof(float) * (size_t)numel), *b = malloc(sizeof(float) * (size_t)c->cout);
    if (!w || !b) {
        free(w), free(b);
        return ib_fail(IB_ERR_NOMEM, "out of memory folding %s", c->w->name);
    }
    for (int o = 0; o < c->cout; o++) {
        double s = (double)bn->w->data[o] / sqrt((double)bn->var->data[o] + (double)bn->eps);
        for (int64_t i = 0; i < per; i++) w[o * per + i] = (float)((double)c->w->data[o * per + i] * s);
        double b0 = c->b ? (double)c->b->data[o] : 0.0;
        b[o] = (float)((double)bn->b->data[o] + (b0 - (double)bn->mean->data[o]) * s);
    }
    const char *wn = og_initializer(e->g, join(nm, conv_prefix, "weight"), 4, d, w);
    d[0] = c->cout;
    const char *bn_name = og_initializer(e->g, join(nm, conv_prefix, "bias"), 1, d, b);
    free(w), free(b);
    const char *in[3] = {x, wn, bn_name};
    og_node *n = og_add_node(e->g, "Conv", 3, in, out);
    conv_attrs(e, n, c);
    return IB_OK;
}

// The activation on x; returns the value holding the result (x itself for none).
static const char *activation(exporter *e, ib_act act, const char *x, const char *out) {
    switch (act) {
    case IB_ACT_NONE: return x;
    case IB_ACT_RELU: og_add_node(e->g, "Relu", 1, (const char *[]){x}, out); return out;
    case IB_ACT_RELU6: {
        const char *in[3] = {x, og_scalar(e->g, "const.zero", 0.0f), og_scalar(e->g, "const.six", 6.0f)};
        og_add_node(e->g, "Clip", 3, in, out);
        return out;
    }
    case IB_ACT_HSWISH:
        if (e->opset >= 14) {
            og_add_node(e->g, "HardSwish", 1, (const char *[]){x}, out);
        } else {
            char gate[NAME_MAX_LEN];
            name_fmt(gate, "%s.gate", out);
            og_node *n = og_add_node(e->g, "HardSigmoid", 1, (const char *[]){x}, gate);
            og_attr_float(e->g, n, "alpha", 1.0f / 6.0f);
            og_attr_float(e->g, n, "beta", 0.5f);
            og_add_node(e->g, "Mul", 2, (const char *[]){x, gate}, out);
        }
        return out;
    }
    IB_ASSERT(0, "unknown activation %d", (int)act);
}

// A conv-BN-activation stage named by its prefix ("features.3.conv.0"): the conv (and BN) write
// "<prefix>.conv", the activation "<prefix>"; without an activation the conv writes "<prefix>".
static ib_status cba(exporter *e, const ib_cba *m, const char *x, const char *prefix, char *out) {
    char pre[NAME_MAX_LEN];
    if (m->act == IB_ACT_NONE) name_fmt(pre, "%s", prefix);
    else name_fmt(pre, "%s.conv", prefix);
    ib_status s = conv_bn(e, &m->conv, &m->bn, x, pre);
    if (s) return s;
    set_name(out, activation(e, m->act, pre, prefix));
    return IB_OK;
}

// Squeeze-excite (layers.h): x * hsigmoid(fc2(relu(fc1(pool(x))))).
static void squeeze_excite(exporter *e, const ib_se *se, const char *x, const char *prefix, char *out) {
    char pool[NAME_MAX_LEN], a[NAME_MAX_LEN], r[NAME_MAX_LEN], b[NAME_MAX_LEN], gate[NAME_MAX_LEN], nm[NAME_MAX_LEN];
    name_fmt(pool, "%s.pool", prefix);
    og_add_node(e->g, "GlobalAveragePool", 1, (const char *[]){x}, pool);
    name_fmt(a, "%s.fc1", prefix);
    conv_plain(e, &se->fc1, pool, join(nm, prefix, "fc1"), a);
    name_fmt(r, "%s.relu", prefix);
    og_add_node(e->g, "Relu", 1, (const char *[]){a}, r);
    name_fmt(b, "%s.fc2", prefix);
    conv_plain(e, &se->fc2, r, join(nm, prefix, "fc2"), b);
    name_fmt(gate, "%s.gate", prefix);
    og_node *n = og_add_node(e->g, "HardSigmoid", 1, (const char *[]){b}, gate);
    og_attr_float(e->g, n, "alpha", 1.0f / 6.0f);
    og_attr_float(e->g, n, "beta", 0.5f);
    og_add_node(e->g, "Mul", 2, (const char *[]){x, gate}, prefix);
    set_name(out, prefix);
}

// One block (layers/blocks.c): its stages, squeeze-excite, the projection, the residual add. A skip block
// adds nothing: its output is its input.
static ib_status block(exporter *e, const ib_block *b, const char *x, const char *prefix, char *out) {
    if (b->cfg.op == IB_BLOCK_SKIP) {
        set_name(out, x);
        return IB_OK;
    }
    char h[NAME_MAX_LEN], stage[NAME_MAX_LEN], nm[NAME_MAX_LEN];
    name_fmt(h, "%s", x);
    int k = 0;
    for (int i = 0; i < b->n_stages; i++, k++) {
        name_fmt(stage, "%s.conv.%d", prefix, k);
        ib_status s = cba(e, &b->stages[i], h, stage, h);
        if (s) return s;
    }
    if (b->has_se) {
        name_fmt(stage, "%s.conv.%d", prefix, k++);
        squeeze_excite(e, &b->se, h, stage, h);
    }
    if (b->residual) name_fmt(nm, "%s.project", prefix);
    else name_fmt(nm, "%s", prefix);
    ib_status s = conv_bn(e, &b->project, &b->project_bn, h, nm);
    if (s) return s;
    if (b->residual) og_add_node(e->g, "Add", 2, (const char *[]){x, nm}, prefix);
    set_name(out, prefix);
    return IB_OK;
}

// The backbone: stem, blocks, head conv; `out` receives the name of the features value (N, C, h, w), and
// taps[t] the name of the value after block after[t] (-1: the stem), as ib_net_features_taps's taps.
static ib_status export_features(exporter *e, const ib_net *net, const char *x, char *out, int n_taps,
                                 const int *after, char (*taps)[NAME_MAX_LEN]) {
    char h[NAME_MAX_LEN], prefix[NAME_MAX_LEN];
    ib_status s = cba(e, &net->stem, x, "features.0", h);
    for (int i = -1; !s && i < net->arch.n_blocks; i++) {
        if (i >= 0) {
            name_fmt(prefix, "features.%d", i + 1);
            s = block(e, &net->blocks[i], h, prefix, h);
        }
        for (int t = 0; t < n_taps; t++)
            if (after[t] == i) name_fmt(taps[t], "%s", h);
    }
    if (!s && net->has_head) {
        name_fmt(prefix, "features.%d", net->arch.n_blocks + 1);
        s = cba(e, &net->head, h, prefix, h);
    }
    set_name(out, h);
    return s;
}

// The classifier: global average pool, flatten, linear (dropout is training only).
static void export_classifier(exporter *e, const ib_net *net, const char *features, const char *out) {
    og_add_node(e->g, "GlobalAveragePool", 1, (const char *[]){features}, "pool");
    og_node *n = og_add_node(e->g, "Flatten", 1, (const char *[]){"pool"}, "flatten");
    og_attr_int(e->g, n, "axis", 1);
    const ib_linear_mod *fc = &net->fc;
    const char *in[3] = {"flatten", og_initializer(e->g, fc->w->name, 2, (int64_t[]){fc->out, fc->in}, fc->w->data),
                         og_initializer(e->g, fc->b->name, 1, (int64_t[]){fc->out}, fc->b->data)};
    n = og_add_node(e->g, "Gemm", 3, in, out);
    og_attr_int(e->g, n, "transB", 1);
}

// ---------------------------------------------------------------------------------------------
// Segmentation heads (tasks/segment.c, tasks/seg_bifpn.c): the backbone up to the head's high-stride block
// with its taps, then the head op for op, ending in the logits at the input size (ib_seg_forward with
// upsample). Sizes are fixed, so every resize's target is known here.

// The spatial size a conv gives with conv_attrs' padding.
static int conv_out_size(int in, const ib_conv *c) {
    int pad = c->dilation * (c->k - 1) / 2;
    return (in + 2 * pad - c->dilation * (c->k - 1) - 1) / c->stride + 1;
}

// The size of the value after the stem (after = -1) or after block `after` for an h x w input.
static void feature_size(const ib_net *net, int after, int h, int w, int *ho, int *wo) {
    h = conv_out_size(h, &net->stem.conv), w = conv_out_size(w, &net->stem.conv);
    for (int i = 0; i <= after; i++) {
        const ib_block *b = &net->blocks[i];
        if (b->cfg.op == IB_BLOCK_SKIP) continue;
        for (int k = 0; k < b->n_stages; k++)
            h = conv_out_size(h, &b->stages[k].conv), w = conv_out_size(w, &b->stages[k].conv);
        h = conv_out_size(h, &b->project), w = conv_out_size(w, &b->project);
    }
    *ho = h, *wo = w;
}

// The scale runtimes turn back into `out` pixels: ONNX Runtime's kernel takes floor(in * scale) in float,
// ONNX's shape inference in double, so out / in is rounded up until both give out exactly (10 / 3 as a
// float is 3.33333325, and 3 x that in double is 9.99999976: 9 pixels).
static float resize_scale(int in, int out) {
    float s = (float)out / (float)in;
    while ((int64_t)(s * (float)in) < out || (int64_t)((double)s * in) < out) s = nextafterf(s, INFINITY);
    return s;
}

// x (N, C, h, w) resized to ho x wo as core/resize.c does. Bilinear there is torch's align_corners=False:
// src = (dst + 0.5) * in / out - 0.5 for every length, clamped to the input, which is ONNX's "half_pixel"
// ("pytorch_half_pixel" differs only for an output of length 1, where it takes 0); nearest is
// src = floor(dst * in / out), ONNX's "asymmetric" with nearest_mode "floor". The target goes in as scales, which hold no batch size, so a
// dynamic batch works. Returns the result's name: x itself when the size does not change (core's
// resizes copy then).
static const char *resize(exporter *e, const char *x, int h, int w, int ho, int wo, int bilinear, const char *out) {
    if (h == ho && w == wo) return x;
    char nm[NAME_MAX_LEN];
    const float sc[4] = {1.0f, 1.0f, resize_scale(h, ho), resize_scale(w, wo)};
    const char *scales = og_initializer(e->g, join(nm, out, "scales"), 1, (int64_t[]){4}, sc);
    // roi is an input to fill before opset 13 (unused by these modes): an empty tensor, made once
    const char *roi = NULL;
    if (e->opset < 13) roi = e->have_empty_roi++ ? "const.empty" : og_initializer(e->g, "const.empty", 1, (int64_t[]){0}, sc);
    og_node *n = og_add_node(e->g, "Resize", 3, (const char *[]){x, roi, scales}, out);
    og_attr_str(e->g, n, "mode", bilinear ? "linear" : "nearest");
    og_attr_str(e->g, n, "coordinate_transformation_mode", bilinear ? "half_pixel" : "asymmetric");
    if (!bilinear) og_attr_str(e->g, n, "nearest_mode", "floor");
    return out;
}

static void concat(exporter *e, int n, const char *const *x, const char *out) {
    og_attr_int(e->g, og_add_node(e->g, "Concat", n, x, out), "axis", 1);
}

// A depthwise-separable piece (ib_seg_sep_init): "<prefix>.dw" then "<prefix>.pw", each conv-BN-ReLU.
static ib_status separable(exporter *e, const ib_cba *dw, const ib_cba *pw, const char *x, const char *prefix,
                           char *out) {
    char nm[NAME_MAX_LEN], h[NAME_MAX_LEN];
    ib_status s = cba(e, dw, x, join(nm, prefix, "dw"), h);
    return s ? s : cba(e, pw, h, join(nm, prefix, "pw"), out);
}

// Fast normalised fusion (ib_weighted_sum) of n values. The weights are constants of the checkpoint, so the
// coefficients relu(w_i) / (eps + sum_j relu(w_j)) are computed here as ibnas computes them (in double,
// rounded to float) and the graph holds Mul(x_i, a_i) per input and a Sum. Initializers "<w's module>.a<i>",
// the result "<w's module>" ("seg.bifpn.0.td.1.fuse").
static void fuse(exporter *e, int n, const char *const *x, const ib_tensor *w, char *out) {
    IB_ASSERT(n >= 1 && n < IB_MAX_INPUTS && ib_numel(w) == n, "fuse: %d inputs, %lld weights", n, (long long)ib_numel(w));
    double a[IB_MAX_INPUTS];
    ib_weighted_sum_coeffs(w->data, n, IB_SEG_FUSE_EPS, a);
    char prefix[NAME_MAX_LEN], prod[IB_MAX_INPUTS][NAME_MAX_LEN], nm[NAME_MAX_LEN];
    const char *in[IB_MAX_INPUTS];
    name_fmt(prefix, "%s", w->name);
    char *dot = strrchr(prefix, '.');
    if (dot) *dot = 0;
    for (int i = 0; i < n; i++) {
        name_fmt(nm, "%s.a%d", prefix, i);
        name_fmt(prod[i], "%s.x%d", prefix, i);
        og_add_node(e->g, "Mul", 2, (const char *[]){x[i], og_scalar(e->g, nm, (float)a[i])}, prod[i]);
        in[i] = prod[i];
    }
    og_add_node(e->g, "Sum", n, in, prefix);
    set_name(out, prefix);
}

// The 1x1 classifier (with bias) at the low stride, then the bilinear resize to the input size: `out`.
static void seg_classifier(exporter *e, const ib_seg_head *hd, const char *x, int h, int w, int H, int W,
                           const char *out) {
    int same = h == H && w == W;
    conv_plain(e, &hd->cls, x, "seg.classifier", same ? out : "seg.classifier");
    if (!same) resize(e, "seg.classifier", h, w, H, W, 1, out);
}

// DeepLabv3+-lite (ib_seg_head_forward): taps[0] the low-level feature, taps[1] the ASPP's input.
static ib_status export_deeplab(exporter *e, const ib_seg_head *hd, char (*taps)[NAME_MAX_LEN], const int *th,
                                const int *tw, int H, int W, const char *out) {
    const char *lo = taps[0], *hi = taps[1];
    char br[4][NAME_MAX_LEN], a[NAME_MAX_LEN], l[NAME_MAX_LEN], nm[NAME_MAX_LEN];
    ib_status s = cba(e, &hd->aspp_1x1, hi, "seg.aspp.0", br[0]);
    for (int i = 0; !s && i < 2; i++) {   // the dilated depthwise branches: dilation is conv_attrs'
        name_fmt(nm, "seg.aspp.%d", i + 1);
        s = separable(e, &hd->aspp_dw[i], &hd->aspp_pw[i], hi, nm, br[1 + i]);
    }
    if (s) return s;
    og_add_node(e->g, "GlobalAveragePool", 1, (const char *[]){hi}, "seg.aspp.pool.avg");
    if ((s = cba(e, &hd->aspp_pool, "seg.aspp.pool.avg", "seg.aspp.pool", nm))) return s;
    // from 1 x 1: the bilinear resize broadcasts the vector over the map (every source position clamps to it)
    set_name(br[3], resize(e, nm, 1, 1, th[1], tw[1], 1, "seg.aspp.pool.up"));
    concat(e, 4, (const char *[]){br[0], br[1], br[2], br[3]}, "seg.aspp.concat");
    if ((s = cba(e, &hd->aspp_proj, "seg.aspp.concat", "seg.aspp.project", a))) return s;
    set_name(a, resize(e, a, th[1], tw[1], th[0], tw[0], 1, "seg.aspp.up"));
    if ((s = cba(e, &hd->low_reduce, lo, "seg.decoder.reduce", l))) return s;
    concat(e, 2, (const char *[]){a, l}, "seg.decoder.concat");
    if ((s = separable(e, &hd->dec_dw, &hd->dec_pw, "seg.decoder.concat", "seg.decoder.fuse", nm))) return s;
    seg_classifier(e, hd, nm, th[0], tw[0], H, W, out);
    return IB_OK;
}

// One BiFPN node (tasks/seg_bifpn.c): the fusion of its k inputs, then the separable 3x3.
static ib_status bifpn_node(exporter *e, const ib_seg_bifpn_node *nd, int k, const char *const *x,
                            const char *prefix, char *out) {
    char f[NAME_MAX_LEN];
    fuse(e, k, x, nd->fuse, f);
    return separable(e, &nd->dw, &nd->pw, f, prefix, out);
}

// BiFPN (ib_seg_bifpn_forward): taps[l] the level-l feature, finest first.
static ib_status export_bifpn(exporter *e, const ib_seg_head *hd, char (*taps)[NAME_MAX_LEN], const int *th,
                              const int *tw, int H, int W, const char *out) {
    const int L = hd->levels;
    char p[IB_SEG_BIFPN_MAX_LEVELS][NAME_MAX_LEN], td[IB_SEG_BIFPN_MAX_LEVELS][NAME_MAX_LEN];
    char pre[NAME_MAX_LEN], nm[NAME_MAX_LEN], nm2[NAME_MAX_LEN];
    ib_status s = IB_OK;
    for (int l = 0; !s && l < L; l++) {
        name_fmt(pre, "seg.bifpn.lateral.%d", l);
        s = cba(e, &hd->lateral[l], taps[l], pre, p[l]);
    }
    for (int r = 0; !s && r < hd->cfg.repeats; r++) {
        const ib_seg_bifpn_layer *ly = &hd->bifpn[r];
        // top-down: the coarser output upsampled nearest to this level's size
        name_fmt(td[L - 1], "%s", p[L - 1]);
        for (int l = L - 2; !s && l >= 0; l--) {
            name_fmt(pre, "seg.bifpn.%d.td.%d", r, l);
            name_fmt(nm, "%s.up", pre);
            const char *up = resize(e, td[l + 1], th[l + 1], tw[l + 1], th[l], tw[l], 0, nm);
            s = bifpn_node(e, &ly->td[l], 2, (const char *[]){p[l], up}, pre, td[l]);
        }
        // bottom-up: the finer output max-pooled (3x3, stride 2, padding 1), resized nearest if its size differs
        char o[IB_SEG_BIFPN_MAX_LEVELS][NAME_MAX_LEN];
        name_fmt(o[0], "%s", td[0]);
        for (int l = 1; !s && l < L; l++) {
            name_fmt(pre, "seg.bifpn.%d.up.%d", r, l);
            name_fmt(nm, "%s.down", pre);
            og_node *n = og_add_node(e->g, "MaxPool", 1, (const char *[]){o[l - 1]}, nm);
            og_attr_ints(e->g, n, "kernel_shape", 2, (int64_t[]){3, 3});
            og_attr_ints(e->g, n, "strides", 2, (int64_t[]){2, 2});
            og_attr_ints(e->g, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
            int mh = (th[l - 1] - 1) / 2 + 1, mw = (tw[l - 1] - 1) / 2 + 1;
            name_fmt(nm2, "%s.down.resize", pre);
            const char *down = resize(e, nm, mh, mw, th[l], tw[l], 0, nm2);
            s = l < L - 1 ? bifpn_node(e, &ly->up[l], 3, (const char *[]){p[l], td[l], down}, pre, o[l])
                          : bifpn_node(e, &ly->up[l], 2, (const char *[]){p[l], down}, pre, o[l]);
        }
        for (int l = 0; l < L; l++) name_fmt(p[l], "%s", o[l]);
    }
    if (s) return s;
    // every level's output upsampled bilinearly to the finest and fused, then the classifier
    char up[IB_SEG_BIFPN_MAX_LEVELS][NAME_MAX_LEN], f[NAME_MAX_LEN];
    const char *in[IB_SEG_BIFPN_MAX_LEVELS];
    for (int l = 0; l < L; l++) {
        name_fmt(nm, "seg.bifpn.merge.%d.up", l);
        set_name(up[l], resize(e, p[l], th[l], tw[l], th[0], tw[0], 1, nm));
        in[l] = up[l];
    }
    fuse(e, L, in, hd->merge, f);
    seg_classifier(e, hd, f, th[0], tw[0], H, W, out);
    return IB_OK;
}

// The segmenter (ib_seg_forward, upsample on) on an H x W input: logits (N, classes, H, W) as `out`.
static ib_status export_segmenter(exporter *e, const ib_net *net, const ib_seg_head *hd, int H, int W,
                                  const char *out) {
    int bifpn = hd->levels > 0, n = bifpn ? hd->levels : 2;
    int after[IB_SEG_BIFPN_MAX_LEVELS] = {hd->low_block, hd->high_block}, th[IB_SEG_BIFPN_MAX_LEVELS],
        tw[IB_SEG_BIFPN_MAX_LEVELS];
    if (bifpn) memcpy(after, hd->level_block, sizeof(int) * (size_t)n);
    for (int t = 0; t < n; t++) feature_size(net, after[t], H, W, &th[t], &tw[t]);
    char taps[IB_SEG_BIFPN_MAX_LEVELS][NAME_MAX_LEN], features[NAME_MAX_LEN];
    ib_status s = export_features(e, net, "input", features, n, after, taps);
    if (s) return s;
    return bifpn ? export_bifpn(e, hd, taps, th, tw, H, W, out) : export_deeplab(e, hd, taps, th, tw, H, W, out);
}

ib_status ib_model_export(const ib_model *m, const char *path, const ib_export_opts *opts, ib_export_report *r) {
    ib_export_opts def;
    if (!opts) ib_export_opts_default(&def), opts = &def;
    if (!m || !path || !path[0]) return ib_fail(IB_ERR_ARG, "ib_model_export: a model and an output path are needed");
    if (!opts->format || strcmp(opts->format, "onnx") != 0)
        return ib_fail(IB_ERR_ARG, "%s: export format '%s' is not supported (onnx is)", path,
                       opts->format ? opts->format : "(none)");
    if (opts->opset < OPSET_MIN || opts->opset > OPSET_MAX)
        return ib_fail(IB_ERR_ARG, "%s: ONNX opset %d is not supported (%d to %d)", path, opts->opset, OPSET_MIN,
                       OPSET_MAX);
    const ib_net *net = &m->net;
    const ib_seg_head *seg = m->seg;
    // The input size: --res (square), else what the model was trained at (a segmenter's in_h x in_w).
    int H = net->arch.input, W = net->arch.input;
    if (seg && seg->cfg.in_h > 0 && seg->cfg.in_w > 0) H = seg->cfg.in_h, W = seg->cfg.in_w;
    if (opts->res > 0) H = W = opts->res;
    if (opts->res < 0 || H < 8 || H > 4096 || W < 8 || W > 4096)
        return ib_fail(IB_ERR_ARG, "%s: input size %dx%d (each side must be 8 to 4096)", path, opts->res ? opts->res : H,
                       opts->res ? opts->res : W);
    if (opts->batch < 0) return ib_fail(IB_ERR_ARG, "%s: batch %d (a positive size, or 0 for dynamic)", path, opts->batch);
    if (!seg && strcmp(net->arch.task, "classify") != 0)
        return ib_fail(IB_ERR_ARG, "%s: the model's task is '%s'; classify and segment networks are exported", path,
                       net->arch.task);

    exporter e = {.opset = opts->opset, .keep_bn = opts->keep_bn};
    if (!(e.g = og_new(net->arch.name))) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    int64_t batch = opts->batch > 0 ? opts->batch : -1;
    og_input(e.g, "input", 4, (int64_t[]){batch, 3, H, W}, "N");
    char features[NAME_MAX_LEN];
    ib_status s;
    if (seg) {
        s = export_segmenter(&e, net, seg, H, W, "logits");
        og_output(e.g, "logits", 4, (int64_t[]){batch, seg->classes, H, W}, "N");
    } else {
        s = export_features(&e, net, "input", features, 0, NULL, NULL);
        if (!s) export_classifier(&e, net, features, "logits");
        og_output(e.g, "logits", 2, (int64_t[]){batch, net->arch.classes}, "N");
    }
    if (!s) {
        char *arch = ib_arch_to_json(&net->arch);
        char buf[NAME_MAX_LEN];
        og_meta(e.g, "ibnas.format", "ibnas-onnx");
        og_meta(e.g, "ibnas.version", IBNAS_VERSION_STRING);
        og_meta(e.g, "ibnas.task", seg ? "segment" : net->arch.task);
        og_meta(e.g, "ibnas.input_normalisation", input_norm);
        if (H == W) name_fmt(buf, "%d", H);
        else name_fmt(buf, "%dx%d", H, W);   // height x width
        og_meta(e.g, "ibnas.input_size", buf);
        name_fmt(buf, "%d", seg ? seg->classes : net->arch.classes);
        og_meta(e.g, "ibnas.classes", buf);
        og_meta(e.g, "ibnas.batchnorm", opts->keep_bn ? "kept" : "folded");
        if (arch) og_meta(e.g, "ibnas.arch", arch);
        free(arch);
        if (seg) {
            char *head = ib_seg_head_cfg_to_json(&seg->cfg);
            if (head) og_meta(e.g, "ibnas.seg_head", head);
            free(head);
            og_set_doc(e.g, "exported by ibnas: input 'input' (batch, 3, H, W) normalised as metadata "
                            "'ibnas.input_normalisation' says, output 'logits' (batch, classes, H, W), per-pixel "
                            "class scores before softmax");
        } else {
            og_set_doc(e.g, "exported by ibnas: input 'input' (batch, 3, H, W) normalised as metadata "
                            "'ibnas.input_normalisation' says, output 'logits' (batch, classes)");
        }
        int64_t bytes = 0;
        s = og_write(e.g, path, opts->opset, IBNAS_VERSION_STRING, &bytes);
        if (!s && r) {
            r->nodes = og_node_count(e.g);
            r->initializers = og_initializer_count(e.g);
            r->bytes = bytes;
            r->height = H, r->width = W;
        }
    }
    og_free(e.g);
    return s;
}
