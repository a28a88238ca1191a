// Segmentation: the DeepLabv3+-lite head (the BiFPN head: tasks/seg_bifpn.c), the pixel-wise loss, argmax (full and fast), the confusion
// matrix and mIoU, median-frequency weights, evaluation and the training loop (tasks/segment.h).
#include "tasks/segment.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const float imagenet_mean[3] = {0.485f * 255, 0.456f * 255, 0.406f * 255};
static const float imagenet_std[3] = {0.229f * 255, 0.224f * 255, 0.225f * 255};

// ---------------------------------------------------------------------------------------------
// Head configuration

void ib_seg_head_cfg_default(ib_seg_head_cfg *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->kind, sizeof c->kind, "deeplab");
    c->high_stride = 16;
    c->low_stride = 4;
    c->aspp = 64;
    c->low = 24;
    c->decoder = 64;
    c->rates[0] = 2, c->rates[1] = 4;
    c->width = 64;
    c->repeats = 2;
}

char *ib_seg_head_cfg_to_json(const ib_seg_head_cfg *c) {
    char *s = malloc(512);
    if (!s) return NULL;
    snprintf(s, 512,
             "{\"kind\": \"%s\", \"high_stride\": %d, \"low_stride\": %d, \"aspp\": %d, \"low\": %d, \"decoder\": %d, "
             "\"rates\": [%d, %d], \"width\": %d, \"repeats\": %d, \"in_h\": %d, \"in_w\": %d}",
             c->kind, c->high_stride, c->low_stride, c->aspp, c->low, c->decoder, c->rates[0], c->rates[1], c->width,
             c->repeats, c->in_h, c->in_w);
    return s;
}

static ib_status get_int(json_t *root, const char *key, int *v, int lo, int hi, const char *source) {
    json_t *j = json_object_get(root, key);
    if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi)
        return ib_fail(IB_ERR_FORMAT, "%s: seg_head.%s must be an integer in %d..%d", source, key, lo, hi);
    *v = (int)json_integer_value(j);
    return IB_OK;
}

ib_status ib_seg_head_cfg_parse(ib_seg_head_cfg *c, const char *text, const char *source) {
    ib_seg_head_cfg_default(c);
    json_error_t err;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!root) return ib_fail(IB_ERR_FORMAT, "%s: seg_head: %s (line %d, column %d)", source, err.text, err.line, err.column);
    ib_status s = IB_OK;
    json_t *kind = json_object_get(root, "kind"), *rates = json_object_get(root, "rates");
    if (!json_is_string(kind) || (strcmp(json_string_value(kind), "deeplab") && strcmp(json_string_value(kind), "bifpn")))
        s = ib_fail(IB_ERR_FORMAT, "%s: seg_head.kind must be \"deeplab\" or \"bifpn\" (the heads this build has)",
                    source);
    if (!s) snprintf(c->kind, sizeof c->kind, "%s", json_string_value(kind));
    if (!s) s = get_int(root, "high_stride", &c->high_stride, 2, 64, source);
    if (!s) s = get_int(root, "low_stride", &c->low_stride, 2, 64, source);
    if (!s) s = get_int(root, "aspp", &c->aspp, 1, 4096, source);
    if (!s) s = get_int(root, "low", &c->low, 1, 4096, source);
    if (!s) s = get_int(root, "decoder", &c->decoder, 1, 4096, source);
    // width and repeats came with the BiFPN head: checkpoints written before have neither (the defaults)
    if (!s && json_object_get(root, "width")) s = get_int(root, "width", &c->width, 1, 4096, source);
    if (!s && json_object_get(root, "repeats"))
        s = get_int(root, "repeats", &c->repeats, 1, IB_SEG_BIFPN_MAX_REPEATS, source);
    if (!s) s = get_int(root, "in_h", &c->in_h, 0, 8192, source);
    if (!s) s = get_int(root, "in_w", &c->in_w, 0, 8192, source);
    if (!s && (!json_is_array(rates) || json_array_size(rates) != 2 || !json_is_integer(json_array_get(rates, 0)) ||
               !json_is_integer(json_array_get(rates, 1)) || json_integer_value(json_array_get(rates, 0)) < 1 ||
               json_integer_value(json_array_get(rates, 1)) < 1))
        s = ib_fail(IB_ERR_FORMAT, "%s: seg_head.rates must be two positive integers", source);
    if (!s) {
        c->rates[0] = (int)json_integer_value(json_array_get(rates, 0));
        c->rates[1] = (int)json_integer_value(json_array_get(rates, 1));
    }
    json_decref(root);
    return s;
}

// ---------------------------------------------------------------------------------------------
// The head

void ib_seg_sep_init(ib_cba *dw, ib_cba *pw, ib_params *ps, const char *prefix, int cin, int cout, int dilation) {
    char name[128];
    snprintf(name, sizeof name, "%s.dw", prefix);
    ib_cba_init(dw, ps, name, cin, cin, 3, 1, cin, IB_ACT_RELU);
    dw->conv.dilation = dilation;
    snprintf(name, sizeof name, "%s.pw", prefix);
    ib_cba_init(pw, ps, name, cin, cout, 1, 1, 1, IB_ACT_RELU);
}

// The backbone blocks the head taps (high, low), or the error naming what is missing.
static ib_status seg_taps(const ib_arch *backbone, int classes, const ib_seg_head_cfg *cfg, int *hi_out, int *lo_out) {
    int bifpn = !strcmp(cfg->kind, "bifpn");
    if (!bifpn && strcmp(cfg->kind, "deeplab"))
        return ib_fail(IB_ERR_ARG, "segmentation head '%s' is not one of deeplab, bifpn", cfg->kind);
    if (classes < 2) return ib_fail(IB_ERR_ARG, "segmentation needs at least 2 classes, got %d", classes);
    int hi = ib_arch_last_block_at_stride(backbone, cfg->high_stride);
    int lo = ib_arch_last_block_at_stride(backbone, cfg->low_stride);
    if (hi < 0 || lo < -1 || lo >= hi)
        return ib_fail(IB_ERR_ARG, "%s: no block at stride %d for the %s and an earlier one at stride %d for %s "
                       "(--high-stride/--low-stride)", backbone->name, cfg->high_stride,
                       bifpn ? "BiFPN's coarsest level" : "ASPP", cfg->low_stride, bifpn ? "its finest" : "the decoder");
    *hi_out = hi, *lo_out = lo;
    return IB_OK;
}

ib_status ib_seg_head_register(ib_seg_head *head, ib_params *ps, const ib_arch *backbone, int classes,
                               const ib_seg_head_cfg *cfg) {
    memset(head, 0, sizeof *head);
    ib_seg_head_cfg searched = *cfg;   // an arch from a space that searches the head sets its BiFPN's size
    if (backbone->seg_repeats > 0) {
        if (strcmp(cfg->kind, "bifpn"))
            return ib_fail(IB_ERR_ARG, "%s: its seg_head (repeats %d, width %d) is a BiFPN head's, not %s's (--head bifpn)",
                           backbone->name, backbone->seg_repeats, backbone->seg_width, cfg->kind);
        searched.repeats = backbone->seg_repeats, searched.width = backbone->seg_width;
        if (backbone->seg_low_stride > 0) searched.low_stride = backbone->seg_low_stride;
        cfg = &searched;
    }
    int hi, lo;
    ib_status s = seg_taps(backbone, classes, cfg, &hi, &lo);
    if (s) return s;
    head->cfg = *cfg;
    head->classes = classes;
    head->high_block = hi;
    head->low_block = lo;
    if (!strcmp(cfg->kind, "bifpn")) {
        if ((s = ib_seg_bifpn_register(head, ps, backbone))) return s;
        ib_conv_init(&head->cls, ps, "seg.classifier", cfg->width, classes, 1, 1, 1, 1);
        return IB_OK;
    }
    int ch = backbone->blocks[hi].out, cl = lo < 0 ? backbone->stem_out : backbone->blocks[lo].out;
    int A = cfg->aspp;
    ib_cba_init(&head->aspp_1x1, ps, "seg.aspp.0", ch, A, 1, 1, 1, IB_ACT_RELU);
    ib_seg_sep_init(&head->aspp_dw[0], &head->aspp_pw[0], ps, "seg.aspp.1", ch, A, cfg->rates[0]);
    ib_seg_sep_init(&head->aspp_dw[1], &head->aspp_pw[1], ps, "seg.aspp.2", ch, A, cfg->rates[1]);
    ib_cba_init(&head->aspp_pool, ps, "seg.aspp.pool", ch, A, 1, 1, 1, IB_ACT_RELU);
    ib_cba_init(&head->aspp_proj, ps, "seg.aspp.project", 4 * A, A, 1, 1, 1, IB_ACT_RELU);
    ib_cba_init(&head->low_reduce, ps, "seg.decoder.reduce", cl, cfg->low, 1, 1, 1, IB_ACT_RELU);
    ib_seg_sep_init(&head->dec_dw, &head->dec_pw, ps, "seg.decoder.fuse", A + cfg->low, cfg->decoder, 1);
    ib_conv_init(&head->cls, ps, "seg.classifier", cfg->decoder, classes, 1, 1, 1, 1);
    return IB_OK;
}

void ib_seg_head_set_bn_momentum(ib_seg_head *head, float m) {
    // every BN either head kind may hold; those of the other kind (zeroed, never run) take it harmlessly
    ib_cba *deeplab[] = {&head->aspp_1x1, &head->aspp_dw[0], &head->aspp_dw[1], &head->aspp_pw[0], &head->aspp_pw[1],
                         &head->aspp_pool, &head->aspp_proj, &head->low_reduce, &head->dec_dw, &head->dec_pw};
    for (size_t i = 0; i < sizeof deeplab / sizeof *deeplab; i++) deeplab[i]->bn.momentum = m;
    for (int l = 0; l < IB_SEG_BIFPN_MAX_LEVELS; l++) {
        head->lateral[l].bn.momentum = m;
        for (int r = 0; r < IB_SEG_BIFPN_MAX_REPEATS; r++) {
            ib_seg_bifpn_node *n[2] = {&head->bifpn[r].td[l], &head->bifpn[r].up[l]};
            for (int k = 0; k < 2; k++) n[k]->dw.bn.momentum = n[k]->pw.bn.momentum = m;
        }
    }
}

ib_status ib_seg_build(ib_net *net, ib_seg_head *head, const ib_arch *backbone, int classes,
                       const ib_seg_head_cfg *cfg) {
    memset(net, 0, sizeof *net);
    memset(head, 0, sizeof *head);
    int hi, lo;
    ib_status s = seg_taps(backbone, classes, cfg, &hi, &lo);
    if (s) return s;
    ib_arch a;
    if ((s = ib_arch_copy(&a, backbone))) return s;
    a.n_blocks = hi + 1;
    a.head_out = 0;
    a.dropout = 0;
    a.classes = classes;
    snprintf(a.task, sizeof a.task, "segment");
    s = ib_net_register(net, &a);
    ib_arch_free(&a);
    if (s) return s;
    if ((s = ib_seg_head_register(head, &net->ps, &net->arch, classes, cfg))) {
        ib_net_free(net);
        return s;
    }
    return ib_params_alloc(&net->ps);
}

ib_tensor *ib_seg_forward(ib_ctx *ctx, ib_net *net, const ib_seg_head *head, ib_tensor *x, int upsample) {
    ib_tensor *taps[IB_SEG_BIFPN_MAX_LEVELS] = {NULL};
    int H = upsample ? x->shape[2] : 0, W = x->shape[3];
    ib_tensor *z;
    if (head->levels > 0) {
        ib_net_features_taps(ctx, net, x, head->levels, head->level_block, taps);
        ib_prof_scope(net->arch.n_blocks + 1);
        z = ib_seg_bifpn_forward(ctx, head, taps, H, W);
        ib_prof_scope(-1);
        return z;
    }
    int after[2] = {head->low_block, head->high_block};
    ib_net_features_taps(ctx, net, x, 2, after, taps);
    ib_prof_scope(net->arch.n_blocks + 1);
    z = ib_seg_head_forward(ctx, head, taps[0], taps[1], H, W);
    ib_prof_scope(-1);
    return z;
}

ib_tensor *ib_seg_head_forward(ib_ctx *ctx, const ib_seg_head *head, ib_tensor *lo, ib_tensor *hi, int H, int W) {
    int hh = hi->shape[2], hw = hi->shape[3];
    ib_tensor *br[4];
    br[0] = ib_cba_forward(ctx, &head->aspp_1x1, hi);
    for (int i = 0; i < 2; i++)
        br[1 + i] = ib_cba_forward(ctx, &head->aspp_pw[i], ib_cba_forward(ctx, &head->aspp_dw[i], hi));
    ib_tensor *pool = ib_cba_forward(ctx, &head->aspp_pool, ib_global_avg_pool(ctx, hi));
    br[3] = ib_resize_bilinear(ctx, pool, hh, hw);   // from 1 x 1: the vector broadcast over the map
    ib_tensor *a = ib_cba_forward(ctx, &head->aspp_proj, ib_concat(ctx, 4, br));
    a = ib_resize_bilinear(ctx, a, lo->shape[2], lo->shape[3]);
    ib_tensor *l = ib_cba_forward(ctx, &head->low_reduce, lo);
    ib_tensor *d = ib_concat(ctx, 2, (ib_tensor *[]){a, l});
    d = ib_cba_forward(ctx, &head->dec_pw, ib_cba_forward(ctx, &head->dec_dw, d));
    ib_tensor *z = ib_conv_forward(ctx, &head->cls, d);
    return H > 0 ? ib_resize_bilinear(ctx, z, H, W) : z;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

typedef struct {
    const ib_seg_head *head;
    ib_status (*extra)(ib_h5 *f, void *user);
    void *user;
} seg_extra;

static ib_status seg_save_extra(ib_h5 *f, void *user) {
    seg_extra *e = user;
    char *json = ib_seg_head_cfg_to_json(&e->head->cfg);
    if (!json) return ib_fail(IB_ERR_NOMEM, "out of memory");
    ib_status s = ib_h5_set_attr_str(f, "/", "seg_head", json);
    free(json);
    if (!s) s = ib_h5_set_attr_str(f, "/", "task", "segment");
    if (!s && e->extra) s = e->extra(f, e->user);
    return s;
}

ib_status ib_seg_save(const ib_net *net, const ib_seg_head *head, const char *path,
                      ib_status (*extra)(ib_h5 *f, void *user), void *user) {
    seg_extra e = {head, extra, user};
    return ib_ckpt_save(net, path, seg_save_extra, &e);
}

int ib_seg_is_checkpoint(const char *path) {
    ib_h5 *f;
    if (ib_h5_open(&f, path)) return 0;
    char *v = NULL;
    int yes = ib_h5_attr_str(f, "/", "seg_head", &v) == IB_OK;
    free(v);
    ib_h5_close(f);
    return yes;
}

ib_status ib_seg_load(ib_net *net, ib_seg_head *head, const char *path) {
    memset(net, 0, sizeof *net);
    ib_net bb;   // ib_ckpt_load checks the header and reads the arch; its tensors are read again below
    ib_status s = ib_ckpt_load(&bb, path);
    if (s) return s;
    ib_h5 *f;
    if ((s = ib_h5_open(&f, path))) {
        ib_net_free(&bb);
        return s;
    }
    char *json = NULL;
    ib_seg_head_cfg cfg;
    if (ib_h5_attr_str(f, "/", "seg_head", &json))
        s = ib_fail(IB_ERR_FORMAT, "%s: not a segmentation checkpoint (no seg_head attribute)", path);
    if (!s) s = ib_seg_head_cfg_parse(&cfg, json, path);
    free(json);
    if (!s) s = ib_seg_build(net, head, &bb.arch, bb.arch.classes, &cfg);
    if (!s) s = ib_params_read(f, &net->ps);
    if (!s) {
        net->dropout_rng = bb.dropout_rng;
        net->class_names = bb.class_names, net->n_class_names = bb.n_class_names;   // moved
        bb.class_names = NULL, bb.n_class_names = 0;
    }
    ib_h5_close(f);
    ib_net_free(&bb);
    if (s && net->blocks) ib_net_free(net);
    return s;
}

ib_status ib_seg_init_from(ib_net *net, const char *path, int *copied) {
    ib_net src;
    ib_seg_head src_head;
    ib_status s = ib_seg_is_checkpoint(path) ? ib_seg_load(&src, &src_head, path) : ib_ckpt_load(&src, path);
    if (s) return s;
    int n = ib_params_copy_matching(&net->ps, &src.ps);
    ib_net_free(&src);
    if (copied) *copied = n;
    if (!n) return ib_fail(IB_ERR_ARG, "%s: no tensor matches the network being trained (another arch?)", path);
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Loss

typedef struct {
    const int32_t *targets;
    const float *weights;
    const double *lse;   // each pixel's log-sum-exp from the forward pass (the backward's softmax needs it)
    int ignore;
    double wsum;
} seg_ce_saved;

// One pixel's log-sum-exp over classes; z points at class 0, classes hw apart. The exponentials in float (as
// PyTorch's float32 log_softmax takes them; a double exp per class and pixel was a tenth of a small segmenter's
// training step), summed in double.
static double pixel_lse(const float *z, int C, int64_t hw) {
    float mx = z[0];
    for (int c = 1; c < C; c++) mx = z[c * hw] > mx ? z[c * hw] : mx;
    double s = 0;
    for (int c = 0; c < C; c++) s += expf(z[c * hw] - mx);
    return log(s) + mx;
}

// A per-pixel loop over pixels (or output rows) [lo, hi) on the library's pool; each pixel is done whole
// on one thread, so the numbers do not depend on the threads.
typedef struct {
    const float *z;
    float *gz;
    const int32_t *targets;
    const float *weights;
    double *lse, *row;
    int32_t *out;
    double g;
    int64_t hw;
    int C, ignore, H, W;
} seg_job;

static void seg_ce_bwd_pixels(void *arg, int64_t lo, int64_t hi, int worker) {
    const seg_job *jb = arg;
    const int64_t hw = jb->hw;
    const int C = jb->C;
    for (int64_t p = lo; p < hi; p++) {
        int32_t t = jb->targets[p];
        if (t == jb->ignore) continue;
        int64_t i = p / hw, j = p % hw;
        const float *z = jb->z + i * C * hw + j;
        float *gz = jb->gz + i * C * hw + j;
        double lse = jb->lse[p];
        double w = jb->g * (jb->weights ? jb->weights[t] : 1.0);
        for (int c = 0; c < C; c++) gz[c * hw] += (float)(w * ((double)expf((float)((double)z[c * hw] - lse)) - (c == t)));
    }
}

static void seg_ce_fwd_pixels(void *arg, int64_t lo, int64_t hi, int worker) {
    const seg_job *jb = arg;
    const int64_t hw = jb->hw;
    const int C = jb->C;
    for (int64_t p = lo; p < hi; p++) {
        int32_t t = jb->targets[p];
        if (t == jb->ignore) {
            jb->row[p] = jb->lse[p] = 0;
            continue;
        }
        int64_t i = p / hw, j = p % hw;
        const float *z = jb->z + i * C * hw + j;
        double lse = pixel_lse(z, C, hw);
        jb->lse[p] = lse;
        jb->row[p] = (jb->weights ? jb->weights[t] : 1.0) * (lse - z[t * hw]);
    }
}

static void argmax_pixels(void *arg, int64_t lo, int64_t hi, int worker) {
    const seg_job *jb = arg;
    const int64_t hw = jb->hw;
    const int C = jb->C;
    for (int64_t p = lo; p < hi; p++) {
        int64_t i = p / hw, j = p % hw;
        const float *x = jb->z + i * C * hw + j;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (x[c * hw] > x[best * hw]) best = c;
        jb->out[p] = best;
    }
}

// Output rows r = (image, y) of a nearest upsampling of the labels targets (h x w per image, h = C, w = hw
// here) to H x W.
static void upsample_rows(void *arg, int64_t lo, int64_t hi, int worker) {
    const seg_job *jb = arg;
    const int h = jb->C, w = (int)jb->hw, H = jb->H, W = jb->W;
    for (int64_t r = lo; r < hi; r++) {
        int64_t i = r / H;
        int y = (int)(r % H), sy = (int)((int64_t)y * h / H);
        const int32_t *src = jb->targets + (i * h + sy) * w;
        int32_t *dst = jb->out + r * W;
        for (int x = 0; x < W; x++) dst[x] = src[(int64_t)x * w / W];
    }
}

static void seg_ce_backward(ib_ctx *ctx, ib_node *n) {
    seg_ce_saved *sv = n->saved;
    ib_tensor *x = n->in[0];
    if (sv->wsum <= 0) return;
    float *gx = ib_grad(ctx, x);
    int N = x->shape[0], C = x->shape[1];
    int64_t hw = (int64_t)x->shape[2] * x->shape[3];
    seg_job jb = {x->data, gx, sv->targets, sv->weights, (double *)sv->lse, NULL, NULL, n->out->grad[0] / sv->wsum, hw, C,
                  sv->ignore, 0, 0};
    ib_parallel_range((int64_t)N * hw, ib_grain(8192, C), seg_ce_bwd_pixels, &jb);
}
static const ib_op op_seg_ce = {"seg_cross_entropy", seg_ce_backward};

int64_t ib_seg_check_targets(const int32_t *t, int64_t n, int classes, int ignore_index) {
    for (int64_t i = 0; i < n; i++)
        if (t[i] != ignore_index && (t[i] < 0 || t[i] >= classes)) return i;
    return -1;
}

double ib_seg_loss_weight(const int32_t *targets, int64_t n, const float *weights, int ignore_index) {
    double wsum = 0;   // summed in pixel order: the same number for any thread count
    for (int64_t p = 0; p < n; p++)
        if (targets[p] != ignore_index) wsum += weights ? weights[targets[p]] : 1.0;
    return wsum;
}

ib_tensor *ib_seg_cross_entropy(ib_ctx *ctx, ib_tensor *x, const int32_t *targets, const float *weights,
                                int ignore_index) {
    IB_ASSERT(x->ndim == 4 && ib_is_contiguous(x), "seg_cross_entropy: logits must be contiguous (N, C, H, W)");
    int N = x->shape[0], C = x->shape[1];
    int64_t hw = (int64_t)x->shape[2] * x->shape[3], P = (int64_t)N * hw;
    IB_ASSERT(ib_seg_check_targets(targets, P, C, ignore_index) < 0, "seg_cross_entropy: a target outside 0..%d",
              C - 1);
    double *row = ib_arena_alloc(ctx->arena, sizeof(double) * (size_t)P);
    double *lses = ib_arena_alloc(ctx->arena, sizeof(double) * (size_t)P);
    seg_job jb = {x->data, NULL, targets, weights, lses, row, NULL, 0, hw, C, ignore_index, 0, 0};
    ib_parallel_range(P, ib_grain(8192, C), seg_ce_fwd_pixels, &jb);
    double loss = 0, wsum = ib_seg_loss_weight(targets, P, weights, ignore_index);   // in pixel order, as the weights
    for (int64_t p = 0; p < P; p++)
        if (targets[p] != ignore_index) loss += row[p];
    ib_tensor *y = ib_tensor_new(ctx, 1, (int[]){1});
    y->data[0] = wsum > 0 ? (float)(loss / wsum) : 0.0f;
    ib_node *n = ib_record(ctx, &op_seg_ce, y, 1, &x);
    if (n) {
        seg_ce_saved *sv = ib_arena_alloc(ctx->arena, sizeof *sv);
        int32_t *tc = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)P);
        memcpy(tc, targets, sizeof(int32_t) * (size_t)P);
        float *wc = NULL;
        if (weights) {
            wc = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)C);
            memcpy(wc, weights, sizeof(float) * (size_t)C);
        }
        *sv = (seg_ce_saved){tc, wc, lses, ignore_index, wsum};
        n->saved = sv;
    }
    return y;
}

// ---------------------------------------------------------------------------------------------
// Prediction and metrics

void ib_seg_argmax(const ib_tensor *z, int32_t *out) {
    int N = z->shape[0], C = z->shape[1];
    int64_t hw = (int64_t)z->shape[2] * z->shape[3];
    seg_job jb = {z->data, NULL, NULL, NULL, NULL, NULL, out, 0, hw, C, 0, 0, 0};
    ib_parallel_range((int64_t)N * hw, ib_grain(8192, C), argmax_pixels, &jb);
}

void ib_seg_argmax_upsample(const ib_tensor *z, int H, int W, int32_t *scratch, int32_t *out) {
    int N = z->shape[0], h = z->shape[2], w = z->shape[3];
    ib_seg_argmax(z, scratch);
    seg_job jb = {NULL, NULL, scratch, NULL, NULL, NULL, out, 0, w, h, 0, H, W};
    ib_parallel_range((int64_t)N * H, ib_grain(8192, W), upsample_rows, &jb);
}

int64_t ib_seg_confusion_add(int64_t *conf, int classes, const int32_t *gt, const int32_t *pred, int64_t n,
                             int ignore_index) {
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        int32_t g = gt[i];
        if (g == ignore_index) continue;
        if (g < 0 || g >= classes) {
            if (bad < 0) bad = i;
            continue;
        }
        IB_ASSERT(pred[i] >= 0 && pred[i] < classes, "prediction %d outside 0..%d", pred[i], classes - 1);
        conf[(int64_t)g * classes + pred[i]]++;
    }
    return bad;
}

ib_status ib_seg_metrics_alloc(ib_seg_metrics *m, int classes) {
    memset(m, 0, sizeof *m);
    m->classes = classes;
    m->conf = calloc((size_t)classes * (size_t)classes, sizeof(int64_t));
    m->iou = calloc((size_t)classes, sizeof(double));
    m->loss = -1;
    if (!m->conf || !m->iou) {
        ib_seg_metrics_free(m);
        return ib_fail(IB_ERR_NOMEM, "out of memory for a %d-class confusion matrix", classes);
    }
    return IB_OK;
}

void ib_seg_metrics_finish(ib_seg_metrics *m) {
    int C = m->classes;
    int64_t correct = 0, total = 0;
    double sum = 0;
    int present = 0;
    for (int c = 0; c < C; c++) {
        int64_t tp = m->conf[(int64_t)c * C + c], gt = 0, pr = 0;
        for (int k = 0; k < C; k++) gt += m->conf[(int64_t)c * C + k], pr += m->conf[(int64_t)k * C + c];
        int64_t uni = gt + pr - tp;
        correct += tp, total += gt;
        m->iou[c] = uni > 0 ? (double)tp / (double)uni : NAN;
        if (uni > 0) sum += m->iou[c], present++;
    }
    m->pixels = total;
    m->miou = present ? sum / present : 0;
    m->pixel_acc = total ? (double)correct / (double)total : 0;
}

void ib_seg_metrics_free(ib_seg_metrics *m) {
    free(m->conf);
    free(m->iou);
    m->conf = NULL, m->iou = NULL;
}

int ib_seg_dataset_classes(const ib_dataset *ds) {
    int c = ib_dataset_classes(ds);
    return c + (ib_dataset_ignore_index(ds) != c);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

ib_status ib_seg_median_freq_weights(ib_dataset *ds, int classes, int64_t max_images, float *w) {
    int64_t n = ib_dataset_size(ds);
    if (max_images > 0 && max_images < n) n = max_images;
    int64_t *pix = calloc((size_t)classes, sizeof(int64_t)), *img_pix = calloc((size_t)classes, sizeof(int64_t)),
            *here = calloc((size_t)classes, sizeof(int64_t));
    double *freq = calloc((size_t)classes, sizeof(double)), *sorted = calloc((size_t)classes, sizeof(double));
    ib_status s = pix && img_pix && here && freq && sorted ? IB_OK : ib_fail(IB_ERR_NOMEM, "out of memory");
    int ign = ib_dataset_ignore_index(ds);
    for (int64_t i = 0; !s && i < n; i++) {
        ib_sample smp;
        memset(&smp, 0, sizeof smp);
        if ((s = ib_dataset_get(ds, i, &smp))) break;
        if (!smp.mask) {
            ib_sample_free(&smp);
            s = ib_fail(IB_ERR_FORMAT, "%s: sample %lld has no mask", ib_dataset_path(ds), (long long)i);
            break;
        }
        memset(here, 0, sizeof(int64_t) * (size_t)classes);
        int64_t labelled = 0;
        for (int64_t p = 0; p < (int64_t)smp.h * smp.w; p++) {
            int v = smp.mask[p];
            if (v == ign) continue;
            if (v >= classes) {
                s = ib_fail(IB_ERR_FORMAT, "%s: sample %lld has mask value %d; classes are 0..%d, ignore %d",
                            ib_dataset_path(ds), (long long)i, v, classes - 1, ign);
                break;
            }
            here[v]++, labelled++;
        }
        for (int c = 0; c < classes; c++)
            if (here[c]) pix[c] += here[c], img_pix[c] += labelled;
        ib_sample_free(&smp);
    }
    int present = 0;
    for (int c = 0; !s && c < classes; c++)
        if (pix[c]) freq[c] = (double)pix[c] / (double)img_pix[c], sorted[present++] = freq[c];
    if (!s && !present) s = ib_fail(IB_ERR_FORMAT, "%s: no labelled pixel to weight classes by", ib_dataset_path(ds));
    if (!s) {
        qsort(sorted, (size_t)present, sizeof(double), cmp_double);
        double med = present % 2 ? sorted[present / 2] : 0.5 * (sorted[present / 2 - 1] + sorted[present / 2]);
        for (int c = 0; c < classes; c++) w[c] = pix[c] ? (float)(med / freq[c]) : 0.0f;
    }
    free(pix), free(img_pix), free(here), free(freq), free(sorted);
    return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_png_name(const char *n) {
    size_t k = strlen(n);
    return k > 4 && (!strcmp(n + k - 4, ".png") || !strcmp(n + k - 4, ".PNG"));
}

ib_status ib_seg_miou_dirs(const char *gt_dir, const char *pred_dir, int classes, int ignore_index,
                           ib_seg_metrics *m) {
    memset(m, 0, sizeof *m);
    if (classes < 1 || classes > 256) return ib_fail(IB_ERR_ARG, "miou: %d classes (1..256)", classes);
    ib_status s = ib_seg_metrics_alloc(m, classes);
    if (s) return s;
    DIR *d = opendir(gt_dir);
    if (!d) return ib_fail(errno == ENOENT ? IB_ERR_NOTFOUND : IB_ERR_IO, "%s: cannot open folder: %s", gt_dir,
                           strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !is_png_name(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **t = realloc(names, cap * sizeof *names);
            if (!t) break;
            names = t;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    int oom = e != NULL;
    closedir(d);
    if (oom) s = ib_fail(IB_ERR_NOMEM, "out of memory listing %s", gt_dir);
    if (!s && !n) s = ib_fail(IB_ERR_NOTFOUND, "%s: no .png label files", gt_dir);
    if (!s) qsort(names, n, sizeof *names, cmp_str);
    char path[4096];
    for (size_t i = 0; !s && i < n; i++) {
        uint8_t *g = NULL, *p = NULL;
        int gh, gw, ph, pw;
        snprintf(path, sizeof path, "%s/%s", gt_dir, names[i]);
        s = ib_decode_png_indices(path, &g, &gh, &gw);
        snprintf(path, sizeof path, "%s/%s", pred_dir, names[i]);
        if (!s && (s = ib_decode_png_indices(path, &p, &ph, &pw)) == IB_ERR_NOTFOUND)
            s = ib_fail(IB_ERR_NOTFOUND, "%s: no prediction for %s/%s (%s)", path, gt_dir, names[i], ib_errmsg());
        if (!s && (gh != ph || gw != pw))
            s = ib_fail(IB_ERR_FORMAT, "%s: %dx%d, its ground truth %s/%s is %dx%d", path, pw, ph, gt_dir, names[i], gw, gh);
        for (int64_t k = 0; !s && k < (int64_t)gh * gw; k++) {
            int gv = g[k], pv = p[k];
            if (gv == ignore_index) continue;
            if (gv >= classes)
                s = ib_fail(IB_ERR_FORMAT, "%s/%s: label %d at (%lld, %lld); classes are 0..%d, ignore %d", gt_dir,
                            names[i], gv, (long long)(k % gw), (long long)(k / gw), classes - 1, ignore_index);
            else if (pv >= classes)
                s = ib_fail(IB_ERR_FORMAT, "%s: prediction %d at (%lld, %lld); classes are 0..%d", path, pv,
                            (long long)(k % gw), (long long)(k / gw), classes - 1);
            else
                m->conf[(int64_t)gv * classes + pv]++;
        }
        if (!s) m->images++;
        free(g);
        free(p);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (s) return s;
    ib_seg_metrics_finish(m);
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

void ib_seg_eval_cfg_default(ib_seg_eval_cfg *c) {
    memset(c, 0, sizeof *c);
    c->batch = 8;
    c->workers = 2;
    memcpy(c->mean, imagenet_mean, sizeof c->mean);
    memcpy(c->std, imagenet_std, sizeof c->std);
}

static double batch_loss_sum(const ib_tensor *z, const int32_t *t, int ignore, int64_t *counted) {
    int N = z->shape[0], C = z->shape[1];
    int64_t hw = (int64_t)z->shape[2] * z->shape[3];
    double s = 0;
    for (int64_t p = 0; p < (int64_t)N * hw; p++) {
        if (t[p] == ignore || t[p] < 0 || t[p] >= C) continue;
        const float *x = z->data + (p / hw) * C * hw + p % hw;
        s += pixel_lse(x, C, hw) - x[t[p] * hw];
        (*counted)++;
    }
    return s;
}

ib_status ib_eval_segment_net(ib_net *net, const ib_seg_head *head, ib_dataset *ds, const ib_seg_eval_cfg *cfg,
                          ib_seg_metrics *m) {
    int classes = head->classes;
    ib_status s = ib_seg_metrics_alloc(m, classes);
    if (s) return s;
    if (!ds->has_masks) return ib_fail(IB_ERR_FORMAT, "%s: has no masks to evaluate segmentation on", ib_dataset_path(ds));
    if (ib_seg_dataset_classes(ds) > classes)
        return ib_fail(IB_ERR_ARG, "%s: %d classes, the network predicts %d", ib_dataset_path(ds),
                       ib_seg_dataset_classes(ds), classes);
    int H = cfg->h > 0 ? cfg->h : head->cfg.in_h > 0 ? head->cfg.in_h : net->arch.input;
    int W = cfg->w > 0 ? cfg->w : head->cfg.in_w > 0 ? head->cfg.in_w : net->arch.input;
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, H, W);
    lo.batch_size = cfg->batch;
    lo.shuffle = 0;
    lo.workers = cfg->workers;
    lo.want_boxes = 0;
    lo.want_masks = 1;
    lo.aug.crop = IB_CROP_NONE;
    memcpy(lo.aug.mean, cfg->mean, sizeof lo.aug.mean);
    memcpy(lo.aug.std, cfg->std, sizeof lo.aug.std);
    uint8_t *labels = NULL;   // one image's prediction as bytes, for pred_out
    if (cfg->pred_out) {
        if (classes > 256)
            return ib_fail(IB_ERR_ARG, "%s: %d classes do not fit label PNGs (at most 256)", cfg->pred_out, classes);
        if (mkdir(cfg->pred_out, 0777) && errno != EEXIST)
            return ib_fail(IB_ERR_IO, "%s: cannot create (%s)", cfg->pred_out, strerror(errno));
        if (!(labels = malloc((size_t)H * W))) return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    ib_loader *l;
    if ((s = ib_loader_open(&l, ds, &lo))) {
        free(labels);
        return s;
    }
    ib_ctx *ctx = cfg->ctx ? cfg->ctx : ib_ctx_new();
    int ign = ib_dataset_ignore_index(ds);
    int64_t batches = ib_loader_batches(l), done = 0, counted = 0;
    double loss = 0, t0 = ib_time_s();
    ib_loader_start_epoch(l, 0);
    const ib_batch *b;
    while ((s = ib_loader_next(l, &b)) == IB_OK && b) {
        ib_ctx_reset(ctx);
        ctx->recording = 0;
        ctx->training = 0;
        ib_tensor x;
        ib_batch_tensor(b, &x);
        int64_t P = (int64_t)b->n * H * W;
        double ta = ib_time_s();
        ib_tensor *z = ib_seg_forward(ctx, net, head, &x, 0);
        double tb = ib_time_s();
        int32_t *pred = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)P);
        if (cfg->fast_argmax) {
            int32_t *scratch = ib_arena_alloc(ctx->arena, sizeof(int32_t) * (size_t)ib_numel(z) / (size_t)classes);
            ib_seg_argmax_upsample(z, H, W, scratch, pred);
        } else {
            z = ib_resize_bilinear(ctx, z, H, W);
            ib_seg_argmax(z, pred);
        }
        double tc = ib_time_s();
        m->head_s += tc - tb, m->total_s += tc - ta;
        if (!cfg->fast_argmax) loss += batch_loss_sum(z, b->masks, ign, &counted);
        int64_t bad = ib_seg_confusion_add(m->conf, classes, b->masks, pred, P, ign);
        if (bad >= 0) {
            s = ib_fail(IB_ERR_FORMAT, "%s: image %lld has mask value %d; classes are 0..%d, ignore %d",
                        ib_dataset_path(ds), (long long)b->indices[bad / ((int64_t)H * W)], b->masks[bad], classes - 1,
                        ign);
            break;
        }
        for (int i = 0; labels && i < b->n && !s; i++) {
            for (int64_t p = 0; p < (int64_t)H * W; p++) labels[p] = (uint8_t)pred[(int64_t)i * H * W + p];
            char name[256], path[4096];
            ib_dataset_sample_name(ds, b->indices[i], name, sizeof name);
            snprintf(path, sizeof path, "%s/%s.png", cfg->pred_out, name);
            s = ib_png_write_classes(path, labels, H, W, classes);
        }
        if (s) break;
        m->images += b->n;
        if (cfg->progress) ib_progress_line("eval", ++done, 0, batches, t0, "");
    }
    if (cfg->progress) fputc('\n', stderr);
    if (cfg->ctx) ib_ctx_reset(ctx);
    else ib_ctx_free(ctx);
    ib_loader_close(l);
    free(labels);
    if (s) return s;
    ib_seg_metrics_finish(m);
    if (!cfg->fast_argmax) m->loss = counted ? loss / (double)counted : 0;
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Training

void ib_seg_train_cfg_default(ib_seg_train_cfg *c) {
    memset(c, 0, sizeof *c);
    ib_train_cfg_default(&c->base);
    c->base.label_smoothing = 0;
    c->base.batch = 8;
    c->base.lr = 0.05f;
    c->base.warmup_epochs = 0.5f;
    c->base.arch = "mobilenetv2:0.5";
    ib_seg_head_cfg_default(&c->head);
    c->aug = "flip";
}

static ib_status save_state(ib_h5 *f, void *user) { return ib_train_state_save(f, user); }

ib_status ib_seg_open_data(ib_dataset **ds, const char *path, ib_ds_format fmt, const char *split) {
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = fmt;
    o.split = split;
    ib_status s = ib_dataset_open(ds, path, &o);
    if (s) return s;
    if (!(*ds)->has_masks) {
        s = ib_fail(IB_ERR_FORMAT, "%s: has no masks to train segmentation on (a pack from `ibnas synth`, CamVid "
                    "lists or image+mask folders)", path);
        ib_dataset_close(*ds);
        *ds = NULL;
    }
    return s;
}

void ib_seg_loader_opts(const ib_train_cfg *cfg, int H, int W, const char *aug, ib_loader_opts *lo) {
    ib_loader_opts_default(lo, H, W);
    lo->batch_size = cfg->batch;
    lo->shuffle = 1;
    lo->drop_last = 1;
    lo->workers = cfg->workers;
    lo->seed = cfg->seed;
    lo->want_boxes = 0;
    lo->want_masks = 1;
    lo->aug.crop = IB_CROP_NONE;
    if (!strcmp(aug, "scale")) {
        lo->aug.crop = IB_CROP_PAD;
        lo->aug.pad = 0;
        lo->aug.scale_jitter[0] = 0.5f, lo->aug.scale_jitter[1] = 2.0f;
    }
    lo->aug.hflip_p = strcmp(aug, "none") ? 0.5f : 0.0f;
    memcpy(lo->aug.mean, cfg->mean, sizeof lo->aug.mean);
    memcpy(lo->aug.std, cfg->std, sizeof lo->aug.std);
}

ib_status ib_train_segment(const ib_seg_train_cfg *scfg, ib_seg_train_result *res) {
    const ib_train_cfg *cfg = &scfg->base;
    memset(res, 0, sizeof *res);
    res->base.val_top1 = res->base.val_top5 = -1;
    res->val_miou = res->val_pixel_acc = -1;
    ib_set_threads(cfg->threads);
    ib_dataset *train = NULL, *val = NULL;
    ib_loader *loader = NULL;
    ib_ctx *ctx = NULL;
    FILE *log = NULL;
    ib_net net;
    memset(&net, 0, sizeof net);
    ib_seg_head head;
    memset(&head, 0, sizeof head);
    ib_train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.seed = cfg->seed;
    ts.cfg = cfg;
    float *weights = NULL;
    struct sigaction old_sa;
    int handler = 0;
    ib_status s;
    int H = scfg->h > 0 ? scfg->h : cfg->res, W = scfg->w > 0 ? scfg->w : cfg->res;
    const char *aug = scfg->aug ? scfg->aug : "flip";

    ib_dp dp;   // data parallelism under mpirun (one rank: every ib_dp call is a no-op)

    if (cfg->epochs < 1 || cfg->batch < 2 || H < 16 || W < 16 || !(cfg->lr > 0))
        return ib_fail(IB_ERR_ARG, "epochs, lr must be positive, batch at least 2 (batchnorm), size at least 16");
    if ((s = ib_dp_begin(&dp, cfg))) return s;
    const int progress = cfg->progress && dp.rank == 0;
    if ((s = ib_train_out_check(cfg->out, "checkpoint"))) return s;
    if (strcmp(aug, "flip") && strcmp(aug, "scale") && strcmp(aug, "none"))
        return ib_fail(IB_ERR_ARG, "segmentation aug '%s' is not one of flip, scale, none", aug);
    if (scfg->class_weights && strcmp(scfg->class_weights, "none") && strcmp(scfg->class_weights, "median"))
        return ib_fail(IB_ERR_ARG, "class weights '%s' is not one of none, median", scfg->class_weights);
    if ((s = ib_optim_cfg_check(&cfg->optim))) return s;
    if ((s = ib_seg_open_data(&train, cfg->data, cfg->data_format, "train"))) goto done;
    if (cfg->val && (s = ib_seg_open_data(&val, cfg->val, cfg->data_format, "val"))) goto done;
    int classes = cfg->classes > 0 ? cfg->classes : ib_seg_dataset_classes(train);
    if (classes < ib_seg_dataset_classes(train)) {
        s = ib_fail(IB_ERR_ARG, "%s: %d classes in the data, but --classes %d", cfg->data, ib_seg_dataset_classes(train),
                    classes);
        goto done;
    }

    // The network: a resumed run's checkpoint as it is; else the backbone (an arch, or --init's network) and a
    // fresh head, initialised, then --init's matching tensors copied in.
    if (cfg->resume) {
        if ((s = ib_seg_load(&net, &head, cfg->resume))) goto done;
        if (head.classes != classes) {
            s = ib_fail(IB_ERR_ARG, "%s: the network has %d classes, the data %d", cfg->resume, head.classes, classes);
            goto done;
        }
    } else {
        ib_arch arch;
        memset(&arch, 0, sizeof arch);
        if (cfg->init) {
            ib_net src;
            if ((s = ib_ckpt_load(&src, cfg->init))) goto done;
            s = ib_arch_copy(&arch, &src.arch);
            ib_net_free(&src);
        } else {
            s = ib_arch_resolve(&arch, cfg->arch, classes);
        }
        if (s) {
            ib_arch_free(&arch);
            goto done;
        }
        arch.input = H > W ? H : W;
        ib_seg_head_cfg hc = scfg->head;
        hc.in_h = H, hc.in_w = W;
        s = ib_seg_build(&net, &head, &arch, classes, &hc);
        ib_arch_free(&arch);
        if (s) goto done;
        ib_net_init_weights(&net, cfg->seed);
        int copied = 0;
        if (cfg->init && (s = ib_seg_init_from(&net, cfg->init, &copied))) goto done;
        if (cfg->init && progress) fprintf(stderr, "train: %d tensors from %s, the rest initialised\n", copied, cfg->init);
    }
    if ((s = ib_train_class_names(&net, train, classes))) goto done;
    if (scfg->class_weights && !strcmp(scfg->class_weights, "median")) {
        if (!(weights = malloc(sizeof(float) * (size_t)classes))) {
            s = ib_fail(IB_ERR_NOMEM, "out of memory");
            goto done;
        }
        if ((s = ib_seg_median_freq_weights(train, classes, 0, weights))) goto done;
        if (progress) {
            fprintf(stderr, "train: median-frequency class weights");
            for (int c = 0; c < classes; c++) fprintf(stderr, " %.3f", weights[c]);
            fputc('\n', stderr);
        }
    }
    ts.dropout_rng = &net.dropout_rng;
    if (!(ts.opt = ib_optim_new(&cfg->optim, &net.ps))) {
        s = ib_fail(IB_ERR_ARG, "%s", ib_errmsg());
        goto done;
    }
    if (cfg->ema > 0 && !(ts.ema = ib_ema_new(&net.ps, cfg->ema, IB_EMA_BUFFERS))) {
        s = IB_ERR_NOMEM;
        goto done;
    }
    if (cfg->resume && (s = ib_train_state_resume(cfg->resume, &ts))) goto done;
    ib_dp_bcast(&dp, &net.ps, ts.opt, ts.ema);
    if ((s = ib_train_room_check(cfg->out, ib_train_ckpt_bytes(&net.ps, ts.opt, ts.ema)))) goto done;

    ib_loader_opts lo;
    ib_seg_loader_opts(cfg, H, W, aug, &lo);
    long spe;
    ib_schedule sch;
    if ((s = ib_train_loader_open_with(cfg, train, &lo, &loader, &spe, &sch))) goto done;
    if (dp.rank == 0 &&
        (s = ib_train_log_open(cfg, ts.epoch, "epoch,step,lr,train_loss,val_miou,val_pixel_acc,val_loss,epoch_s,img_per_s", &log)))
        goto done;

    ib_sigint_catch(&old_sa);
    handler = 1;
    ctx = ib_ctx_new();
    int ign = ib_dataset_ignore_index(train);
    double t_run = ib_time_s();
    long steps_run = 0;
    if (progress)
        fprintf(stderr, "train: %s + %s head, %lld parameters, %lld images of %dx%d, %d classes, %ld steps an epoch%s\n",
                net.arch.name, head.cfg.kind, (long long)ib_net_param_count(&net), (long long)ib_dataset_size(train), W, H, classes,
                spe, cfg->resume ? " (resumed)" : "");
    if (progress && dp.size > 1)
        fprintf(stderr, "train: %d ranks, %d images each of every batch of %d%s\n", dp.size, cfg->batch / dp.size,
                cfg->batch, dp.sync_bn ? ", batchnorm synchronised" : "");
    for (int64_t e = ts.epoch; e < cfg->epochs; e++) {
        ts.epoch = e;
        ib_loader_start_epoch(loader, e);
        const ib_batch *b;
        for (int64_t k = 0; k < ts.batch_in_epoch; k++)
            if ((s = ib_loader_next(loader, &b)) || !b) goto done;
        double t_epoch = ib_time_s();
        int64_t images_run = 0, batch0 = ts.batch_in_epoch;
        while ((s = ib_loader_next(loader, &b)) == IB_OK && b) {
            int64_t bad = ib_seg_check_targets(b->masks, (int64_t)b->n * H * W, classes, ign);
            if (bad >= 0) {
                s = ib_fail(IB_ERR_FORMAT, "%s: image %lld has mask value %d; classes are 0..%d, ignore %d", cfg->data,
                            (long long)b->indices[bad / ((int64_t)H * W)], b->masks[bad], classes - 1, ign);
                goto done;
            }
            float lr = ib_lr_at(&sch, ts.step);
            ib_ctx_reset(ctx);
            ctx->training = 1;
            ctx->recording = 1;
            ctx->release_grads = 1;
            ctx->sync_bn = dp.sync_bn;
            ib_tensor x;
            ib_batch_tensor(b, &x);
            ib_tensor *z = ib_seg_forward(ctx, &net, &head, &x, 1);
            ib_tensor *loss = ib_seg_cross_entropy(ctx, z, b->masks, weights, ign);
            // Several ranks: the loss is a mean over this rank's labelled pixels (weighted), which weighs its share
            double wsum = dp.size > 1 ? ib_seg_loss_weight(b->masks, (int64_t)b->n * H * W, weights, ign) : 0;
            float seed = (float)ib_dp_seed(&dp, wsum, IB_SEG_MIN_WEIGHT);
            ib_params_zero_grad(&net.ps);
            ib_backward(ctx, loss, &seed);
            ctx->sync_bn = 0;
            double loss_sum = (double)loss->data[0] * b->n;
            int64_t n_img = b->n;
            int stop = ib_sigint_seen();
            if ((s = ib_dp_step(&dp, &net.ps, NULL, wsum, IB_SEG_MIN_WEIGHT, &loss_sum, &n_img, &stop))) goto done;
            if (cfg->clip > 0) ib_clip_grad_norm(&net.ps, cfg->clip);
            ib_optim_step(ts.opt, lr);
            if (ts.ema) ib_ema_update(ts.ema);
            if ((s = ib_train_loss_check(&ts, (float)(loss_sum / (double)n_img)))) goto done;
            ts.epoch_loss += loss_sum;
            ts.epoch_images += n_img;
            ts.step++, ts.batch_in_epoch++, steps_run++;
            images_run += n_img;
            res->base.steps = ts.step;
            if (progress) {
                char extra[128], what[32];
                snprintf(extra, sizeof extra, "loss %.4f lr %.4f %.1f img/s", ts.epoch_loss / (double)ts.epoch_images, lr,
                         (double)images_run / (ib_time_s() - t_epoch));
                snprintf(what, sizeof what, "epoch %lld/%d", (long long)e + 1, cfg->epochs);
                ib_progress_line(what, ts.batch_in_epoch, batch0, spe, t_epoch - 1e-9, extra);
            }
            if (stop || (cfg->max_steps > 0 && steps_run >= cfg->max_steps)) {
                int intr = stop;
                if (progress) fputc('\n', stderr);
                res->base.wall_s = ib_time_s() - t_run;
                if ((s = ib_train_saved(&ts, ib_dp_saved(&dp, dp.rank ? IB_OK : ib_seg_save(&net, &head, cfg->out, save_state,
                                                                                            &ts)))))
                    goto done;
                res->base.interrupted = intr;
                if (progress || (intr && dp.rank == 0))
                    fprintf(stderr, "train: %s at epoch %lld, batch %lld; saved %s, which resumes from here\n",
                            intr ? "interrupted" : "stopped", (long long)e + 1, (long long)ts.batch_in_epoch, cfg->out);
                s = intr ? ib_fail(IB_ERR_INTERRUPTED, "interrupted; state saved in %s", cfg->out) : IB_OK;
                goto done;
            }
        }
        if (s) goto done;
        if (progress) fputc('\n', stderr);
        double epoch_s = ib_time_s() - t_epoch;
        res->base.last_loss = ts.epoch_loss / (double)(ts.epoch_images ? ts.epoch_images : 1);
        res->base.img_per_s = (double)images_run / epoch_s;
        ib_seg_metrics m;
        memset(&m, 0, sizeof m);
        if (val) {   // every rank evaluates (the same numbers)
            ib_seg_eval_cfg ec;
            ib_seg_eval_cfg_default(&ec);
            ec.h = H, ec.w = W;
            ec.batch = cfg->batch;
            ec.workers = cfg->workers;
            ec.fast_argmax = scfg->fast_argmax;
            ec.ctx = ctx;
            memcpy(ec.mean, cfg->mean, sizeof ec.mean);
            memcpy(ec.std, cfg->std, sizeof ec.std);
            if (ts.ema) ib_ema_swap(ts.ema);
            s = ib_eval_segment_net(&net, &head, val, &ec, &m);
            if (ts.ema) ib_ema_swap(ts.ema);
            if (s) {
                ib_seg_metrics_free(&m);
                goto done;
            }
            res->val_miou = m.miou, res->val_pixel_acc = m.pixel_acc;
        }
        if (log) fprintf(log, "%lld,%ld,%.6g,%.6f,%.6f,%.6f,%.6f,%.2f,%.1f\n", (long long)e + 1, ts.step,
                         ib_lr_at(&sch, ts.step), res->base.last_loss, val ? m.miou : -1.0, val ? m.pixel_acc : -1.0,
                         val ? m.loss : -1.0, epoch_s, res->base.img_per_s);
        if (log && (s = ib_train_log_flush(cfg, log))) goto done;
        if (progress) fprintf(stderr, "epoch %lld: loss %.4f%s", (long long)e + 1, res->base.last_loss, val ? "" : "\n");
        if (progress && val) fprintf(stderr, " val mIoU %.4f pixel acc %.4f\n", m.miou, m.pixel_acc);
        ib_seg_metrics_free(&m);
        ts.epoch = e + 1;
        ts.batch_in_epoch = 0;
        ts.epoch_loss = 0;
        ts.epoch_images = 0;
        res->base.epochs_done = (int)(e + 1);
        if ((s = ib_train_saved(&ts, ib_dp_saved(&dp, dp.rank ? IB_OK : ib_seg_save(&net, &head, cfg->out, save_state, &ts)))))
            goto done;
        if (ib_sigint_seen() && dp.size < 2) {   // several ranks: the next step's allreduce carries it to all
            res->base.interrupted = 1;
            s = ib_fail(IB_ERR_INTERRUPTED, "interrupted; state saved in %s", cfg->out);
            goto done;
        }
    }
    res->base.wall_s = ib_time_s() - t_run;
    s = IB_OK;
done:
    if (handler) sigaction(SIGINT, &old_sa, NULL);
    if (log) fclose(log);
    ib_dp_end(&dp);
    free(weights);
    ib_ctx_free(ctx);
    ib_loader_close(loader);
    ib_ema_free(ts.ema);
    ib_optim_free(ts.opt);
    if (net.blocks) ib_net_free(&net);
    ib_dataset_close(val);
    ib_dataset_close(train);
    return s;
}
