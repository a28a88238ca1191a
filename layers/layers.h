// layers: modules over the core ops (conv, batchnorm, activations, linear, squeeze-excite), the
// inverted-bottleneck block family (ibn, fused, tucker, gcibn, skip), networks built from an arch
// (JSON, or the mobilenetv2 preset) and HDF5 checkpoints.
//
// Parameters are registered into one ib_params block under PyTorch-style dotted names, so a
// checkpoint reads like a state_dict: mobilenetv2's names are torchvision's, name for name
// ("features.3.conv.1.0.weight"). A network is built in two phases: ib_net_build registers every
// tensor and allocates the block, then ib_net_init_weights fills it (or a checkpoint is loaded).
//
// Weight sharing (the supernet): every conv can run a sub-configuration of itself, fewer output or
// input channels (the first ones) and a smaller kernel (the centre), through views of its weight; the
// gradient flows back into that slice of the full tensor. See ib_conv_forward_sub.
#ifndef IB_LAYERS_H
#define IB_LAYERS_H

#include "core/core.h"

// ---------------------------------------------------------------------------------------------
// Activations

typedef enum { IB_ACT_NONE = 0, IB_ACT_RELU, IB_ACT_RELU6, IB_ACT_HSWISH } ib_act;
ib_tensor *ib_act_apply(ib_ctx *ctx, ib_act act, ib_tensor *x);
const char *ib_act_name(ib_act act);
int ib_act_parse(const char *s, ib_act *act);   // 1 on success

// ---------------------------------------------------------------------------------------------
// Modules. Each *_init registers its tensors under `prefix` ("features.0.0") into ps.

typedef struct ib_conv {
    ib_tensor *w, *b;        // w: (cout, cin/groups, k, k); b NULL unless bias
    int cin, cout, k, stride, dilation, groups;
} ib_conv;
void ib_conv_init(ib_conv *c, ib_params *ps, const char *prefix, int cin, int cout, int k, int stride, int groups,
                  int bias);
// Padding is "same" for odd kernels: dilation * (k - 1) / 2, as torchvision's blocks.
ib_tensor *ib_conv_forward(ib_ctx *ctx, const ib_conv *c, ib_tensor *x);
// Weight-shared sub-configuration: the first `cout` output channels, the first x->shape[1] input
// channels (per group for depthwise convs) and the centred k x k window of the kernel.
ib_tensor *ib_conv_forward_sub(ib_ctx *ctx, const ib_conv *c, ib_tensor *x, int cout, int k);

typedef struct ib_bn {
    ib_tensor *w, *b, *mean, *var;   // (c) each; mean, var are buffers
    int c;
    float momentum, eps;
} ib_bn;
void ib_bn_init(ib_bn *bn, ib_params *ps, const char *prefix, int c);
// Uses the first x->shape[1] channels of the parameters (a supernet's narrower path).
ib_tensor *ib_bn_forward(ib_ctx *ctx, const ib_bn *bn, ib_tensor *x);

typedef struct ib_linear_mod {
    ib_tensor *w, *b;        // w: (out, in), b: (out)
    int in, out;
} ib_linear_mod;
void ib_linear_init(ib_linear_mod *l, ib_params *ps, const char *prefix, int in, int out);
ib_tensor *ib_linear_forward(ib_ctx *ctx, const ib_linear_mod *l, ib_tensor *x);

// Conv + BN + activation: torchvision's Conv2dNormActivation ("<prefix>.0" conv, "<prefix>.1" BN).
typedef struct ib_cba {
    ib_conv conv;
    ib_bn bn;
    ib_act act;
} ib_cba;
void ib_cba_init(ib_cba *m, ib_params *ps, const char *prefix, int cin, int cout, int k, int stride, int groups,
                 ib_act act);
ib_tensor *ib_cba_forward(ib_ctx *ctx, const ib_cba *m, ib_tensor *x);

// Squeeze-excite (MobileNetV3's): global pool, 1x1 conv to `squeeze` + ReLU, 1x1 conv back + h-sigmoid,
// channel scale. Names "<prefix>.fc1.{weight,bias}", "<prefix>.fc2.{weight,bias}".
typedef struct ib_se {
    ib_conv fc1, fc2;
} ib_se;
void ib_se_init(ib_se *se, ib_params *ps, const char *prefix, int c, int squeeze);
ib_tensor *ib_se_forward(ib_ctx *ctx, const ib_se *se, ib_tensor *x);

// torchvision's _make_divisible: round to the nearest multiple of `divisor`, at least `divisor`, and
// never more than 10% below v.
int ib_make_divisible(float v, int divisor);
// "prefix.leaf", or "leaf" when prefix is empty (dotted state_dict names); asserts it fits in n.
void ib_name_join(char *buf, size_t n, const char *prefix, const char *leaf);

// Default initialisation, torchvision MobileNetV2's: conv weights kaiming-normal (fan_out), linear
// weights N(0, 0.01), biases 0, BN weight 1, running_var 1, running_mean 0.
void ib_params_init_default(ib_params *ps, uint64_t seed);

// ---------------------------------------------------------------------------------------------
// Blocks (DESIGN.md "Blocks"): C_in -> C_out with stride s, BN after every conv, the block's
// activation after all but the last conv, a residual add when s = 1 and C_in = C_out.

typedef enum { IB_BLOCK_IBN = 0, IB_BLOCK_FUSED, IB_BLOCK_TUCKER, IB_BLOCK_GCIBN, IB_BLOCK_SKIP } ib_block_op;
const char *ib_block_op_name(ib_block_op op);

typedef struct ib_block_cfg {
    ib_block_op op;
    int out, stride;
    int kernel;            // 3, 5, 7
    int expand;            // ibn, fused, gcibn: 1, 3, 4, 6, 8
    int groups;            // gcibn: 2, 4
    float r_in, r_out;     // tucker: 0.25, 0.75
    float se;              // squeeze-excite ratio of the hidden width (0: none; MobileNetV3 uses 0.25)
    ib_act act;            // IB_ACT_NONE here means "the network's activation"
} ib_block_cfg;

#define IB_BLOCK_MAX_STAGES 3
typedef struct ib_block {
    ib_block_cfg cfg;
    int cin, residual;
    int n_stages;                     // conv-BN(-act) stages before the projection
    ib_cba stages[IB_BLOCK_MAX_STAGES];
    ib_conv project;                  // the last conv (no activation)
    ib_bn project_bn;
    int has_se;
    ib_se se;
} ib_block;
// Hidden widths of a block (for latency tables and parameter counts).
int ib_block_hidden(const ib_block_cfg *cfg, int cin);
// Checks a configuration against DESIGN.md's choices; message names `where` and the field.
ib_status ib_block_check(const ib_block_cfg *cfg, int cin, const char *where);
void ib_block_init(ib_block *b, ib_params *ps, const char *prefix, const ib_block_cfg *cfg, int cin, ib_act net_act);
ib_tensor *ib_block_forward(ib_ctx *ctx, const ib_block *b, ib_tensor *x);

// The convolutions a block runs, in order (its conv-BN(-act) stages, then the projection; squeeze-excite
// is left out), for MAC counts, latency models and reports. A skip block has none. Returns the count
// (at most IB_BLOCK_MAX_STAGES + 1).
typedef struct ib_conv_shape {
    int cin, cout, k, stride, groups;   // groups == cin == cout: depthwise
} ib_conv_shape;
int ib_block_convs(const ib_block_cfg *cfg, int cin, ib_conv_shape *out);
// Multiply-accumulates of one image through the block at input h x w (convs and the residual add
// left out; SE's two 1x1 convs included when it has SE).
int64_t ib_block_macs(const ib_block_cfg *cfg, int cin, int h, int w);

// ---------------------------------------------------------------------------------------------
// Arch: a concrete network (docs/FORMATS.md, "Arch"). JSON through jansson.

typedef struct ib_arch {
    char name[64];
    char task[16];                // "classify" or "segment" (no classifier: tasks/segment.c adds a head)
    int classes, input;           // class count, nominal input resolution
    int stem_out, stem_kernel, stem_stride;
    int n_blocks;
    ib_block_cfg *blocks;         // malloc'd
    int head_out;                 // the 1x1 conv before pooling (0: none)
    float dropout;                // before the classifier (training only)
    ib_act act;                   // the network's activation
    int seg_repeats, seg_width;   // a searched BiFPN segmentation head's layers and width (JSON "seg_head",
                                  // from a space's seg_head choices; 0: not chosen, the head's flags apply)
    int seg_low_stride;           // and its finest level's stride (0: not chosen)
} ib_arch;

void ib_arch_free(ib_arch *a);
ib_status ib_arch_copy(ib_arch *dst, const ib_arch *src);
// `source` names the text in messages (a file name). Syntax errors give line and column; wrong fields
// give their path ("blocks[3].kernel").
ib_status ib_arch_parse(ib_arch *a, const char *json, const char *source);
ib_status ib_arch_load(ib_arch *a, const char *path);
char *ib_arch_to_json(const ib_arch *a);    // malloc'd, pretty-printed
ib_status ib_arch_save(const ib_arch *a, const char *path);
// torchvision's mobilenet_v2(width_mult, num_classes) as an arch.
void ib_arch_mobilenetv2(ib_arch *a, float width, int classes);
// "mobilenetv2" (optionally "mobilenetv2:WIDTH"), a path to an *.arch.json, or JSON text (starts with '{').
ib_status ib_arch_resolve(ib_arch *a, const char *spec, int classes);

// ---------------------------------------------------------------------------------------------
// Networks: stem (features.0), blocks (features.1..n), head conv (features.n+1), global pool,
// dropout, classifier (classifier.1), as torchvision's MobileNetV2.

typedef struct ib_net {
    ib_arch arch;
    ib_params ps;
    ib_cba stem;
    ib_block *blocks;
    int has_head;
    ib_cba head;
    ib_linear_mod fc;
    ib_rng dropout_rng;
    char **class_names;   // the training data's names of the classes, n_class_names of them (NULL: none recorded)
    int n_class_names;
} ib_net;

ib_status ib_net_build(ib_net *net, const ib_arch *arch);   // registers and allocates (zeros)
// Registers the tensors only, so a task head can add its own to net->ps before ib_params_alloc(&net->ps)
// (one parameter block for backbone and head). An arch with task "segment" has no classifier.
ib_status ib_net_register(ib_net *net, const ib_arch *arch);
void ib_net_init_weights(ib_net *net, uint64_t seed);
void ib_net_free(ib_net *net);
// Records names[0..n) as the net's class names (copies; replaces any); a NULL or empty name among them, or
// n < 1, records none. Checkpoints keep them (attribute class_names).
ib_status ib_net_set_class_names(ib_net *net, const char *const *names, int n);
// Sets the momentum of every BN of net (stem, blocks, head conv): BN recalibration (search/supernet.c).
void ib_net_set_bn_momentum(ib_net *net, float m);
// x: (N, 3, H, W) -> logits (N, classes). ctx->training selects BN's batch statistics and dropout.
ib_tensor *ib_net_forward(ib_ctx *ctx, ib_net *net, ib_tensor *x);
// Features before the pool (N, C, h, w), for task heads.
ib_tensor *ib_net_features(ib_ctx *ctx, ib_net *net, ib_tensor *x);
// The same, also handing out the outputs of chosen blocks for multi-level heads (detection, segmentation):
// taps[t] receives the output of block after[t] (-1: the stem's).
ib_tensor *ib_net_features_taps(ib_ctx *ctx, ib_net *net, ib_tensor *x, int n_taps, const int *after,
                                ib_tensor **taps);
// The last block whose output has the given total stride (the stem's included): -1 the stem, -2 none.
int ib_arch_last_block_at_stride(const ib_arch *a, int stride);
int64_t ib_net_param_count(const ib_net *net);
// Multiply-accumulates of one image of res x res through the arch (stem, blocks, head conv, classifier).
int64_t ib_arch_macs(const ib_arch *a, int res);

// ---------------------------------------------------------------------------------------------
// Checkpoints (docs/FORMATS.md, "Checkpoint"): /params/<name>, /buffers/<name>, root attributes
// format = "ibnas-checkpoint", version, arch (JSON). Written to a temporary file and renamed.
// Training state (optimizer, epoch, step, RNG) goes under /train through the open file handle.

#define IB_CKPT_FORMAT "ibnas-checkpoint"
#define IB_CKPT_VERSION 1

// Writes the network; if `extra` is not NULL it is called with the open file before it is committed,
// to add /train state. Nothing is left under `path` if anything fails.
ib_status ib_ckpt_save(const ib_net *net, const char *path, ib_status (*extra)(ib_h5 *f, void *user), void *user);
// Builds the network from the checkpoint's arch and loads its tensors. Rejects a wrong format,
// version, a missing tensor or a shape mismatch, naming the file and the tensor.
ib_status ib_ckpt_load(ib_net *net, const char *path);
// Loads tensors into an already built network (same names and shapes).
ib_status ib_ckpt_load_into(ib_net *net, ib_h5 *f);
// Every tensor of a parameter set as /params/<name> or /buffers/<name>, and back (same names and shapes;
// a missing tensor or a shape mismatch names the file and the tensor). Checkpoints and supernets use these.
ib_status ib_params_write(ib_h5 *f, const ib_params *ps);
ib_status ib_params_read(ib_h5 *f, ib_params *ps);

#endif
