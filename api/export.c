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

// The backbone: stem, blocks, head conv; `out` receives the name of the features value (N, C, h, w).
static ib_status export_features(exporter *e, const ib_net *net, const char *x, char *out) {
    char h[NAME_MAX_LEN], prefix[NAME_MAX_LEN];
    ib_status s = cba(e, &net->stem, x, "features.0", h);
    for (int i = 0; !s && i < net->arch.n_blocks; i++) {
        name_fmt(prefix, "features.%d", i + 1);
        s = block(e, &net->blocks[i], h, prefix, h);
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
    int res = opts->res > 0 ? opts->res : net->arch.input;
    if (opts->res < 0 || res < 8 || res > 4096)
        return ib_fail(IB_ERR_ARG, "%s: input resolution %d (must be 8 to 4096)", path, opts->res ? opts->res : res);
    if (opts->batch < 0) return ib_fail(IB_ERR_ARG, "%s: batch %d (a positive size, or 0 for dynamic)", path, opts->batch);
    if (m->seg)   // the heads' resizes, pooling and fusions have no ONNX writer yet
        return ib_fail(IB_ERR_ARG, "%s: a segmentation network (%s head) is not exported yet; only classify "
                       "networks are", path, m->seg->cfg.kind);
    if (strcmp(net->arch.task, "classify") != 0)
        return ib_fail(IB_ERR_ARG, "%s: the model's task is '%s'; only classify networks are exported so far", path,
                       net->arch.task);

    exporter e = {.opset = opts->opset, .keep_bn = opts->keep_bn};
    if (!(e.g = og_new(net->arch.name))) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    int64_t batch = opts->batch > 0 ? opts->batch : -1;
    og_input(e.g, "input", 4, (int64_t[]){batch, 3, res, res}, "N");
    char features[NAME_MAX_LEN];
    ib_status s = export_features(&e, net, "input", features);
    if (!s) {
        export_classifier(&e, net, features, "logits");
        og_output(e.g, "logits", 2, (int64_t[]){batch, net->arch.classes}, "N");
        char *arch = ib_arch_to_json(&net->arch);
        char buf[NAME_MAX_LEN];
        og_meta(e.g, "ibnas.format", "ibnas-onnx");
        og_meta(e.g, "ibnas.version", IBNAS_VERSION_STRING);
        og_meta(e.g, "ibnas.task", net->arch.task);
        og_meta(e.g, "ibnas.input_normalisation", input_norm);
        name_fmt(buf, "%d", res);
        og_meta(e.g, "ibnas.input_size", buf);
        name_fmt(buf, "%d", net->arch.classes);
        og_meta(e.g, "ibnas.classes", buf);
        og_meta(e.g, "ibnas.batchnorm", opts->keep_bn ? "kept" : "folded");
        if (arch) og_meta(e.g, "ibnas.arch", arch);
        free(arch);
        og_set_doc(e.g, "exported by ibnas: input 'input' (batch, 3, H, W) normalised as metadata "
                        "'ibnas.input_normalisation' says, output 'logits' (batch, classes)");
        int64_t bytes = 0;
        s = og_write(e.g, path, opts->opset, IBNAS_VERSION_STRING, &bytes);
        if (!s && r) {
            r->nodes = og_node_count(e.g);
            r->initializers = og_initializer_count(e.g);
            r->bytes = bytes;
        }
    }
    og_free(e.g);
    return s;
}
