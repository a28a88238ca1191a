// Networks from an arch: stem, blocks, head conv, pool, dropout, classifier, named as torchvision's
// MobileNetV2 (features.0 .. features.n+1, classifier.1).
#include "layers/layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Dropout (inverted: kept values scaled by 1 / (1 - p)); the mask is drawn on one thread.
typedef struct { float *mask; } dropout_saved;

static void dropout_backward(ib_ctx *ctx, ib_node *n) {
    dropout_saved *sv = n->saved;
    ib_tensor *x = n->in[0];
    float *gx = ib_grad(ctx, x);
    const float *gy = n->out->grad;
    int64_t m = ib_numel(x);
    for (int64_t i = 0; i < m; i++) gx[i] += gy[i] * sv->mask[i];
}
static const ib_op op_dropout = {"dropout", dropout_backward};

static ib_tensor *dropout(ib_ctx *ctx, ib_tensor *x, float p, ib_rng *rng) {
    if (p <= 0) return x;
    int64_t m = ib_numel(x);
    ib_tensor *y = ib_tensor_like(ctx, x);
    float *mask = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)m);
    float scale = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < m; i++) {
        mask[i] = ib_rng_uniform(rng) < p ? 0.0f : scale;
        y->data[i] = x->data[i] * mask[i];
    }
    ib_node *n = ib_record(ctx, &op_dropout, y, 1, &x);
    if (n) {
        dropout_saved *sv = ib_arena_alloc(ctx->arena, sizeof *sv);
        sv->mask = mask;
        n->saved = sv;
    }
    return y;
}

ib_status ib_net_build(ib_net *net, const ib_arch *arch) {
    ib_status s = ib_net_register(net, arch);
    return s ? s : ib_params_alloc(&net->ps);
}

ib_status ib_net_register(ib_net *net, const ib_arch *arch) {
    memset(net, 0, sizeof *net);
    ib_status s = ib_arch_copy(&net->arch, arch);
    if (s) return s;
    const ib_arch *a = &net->arch;
    ib_params_init(&net->ps);
    char name[64];
    ib_cba_init(&net->stem, &net->ps, "features.0", 3, a->stem_out, a->stem_kernel, a->stem_stride, 1, a->act);
    net->blocks = calloc((size_t)(a->n_blocks ? a->n_blocks : 1), sizeof(ib_block));
    if (!net->blocks) return ib_fail(IB_ERR_NOMEM, "out of memory building %s", a->name);
    int c = a->stem_out;
    for (int i = 0; i < a->n_blocks; i++) {
        snprintf(name, sizeof name, "blocks[%d]", i);
        s = ib_block_check(&a->blocks[i], c, name);
        if (s) return s;
        snprintf(name, sizeof name, "features.%d", i + 1);
        ib_block_init(&net->blocks[i], &net->ps, name, &a->blocks[i], c, a->act);
        c = a->blocks[i].out;
    }
    if (a->head_out > 0) {
        snprintf(name, sizeof name, "features.%d", a->n_blocks + 1);
        ib_cba_init(&net->head, &net->ps, name, c, a->head_out, 1, 1, 1, a->act);
        net->has_head = 1;
        c = a->head_out;
    }
    // A segmentation backbone ends at its last block: the task head (tasks/segment.c) takes its features.
    if (strcmp(a->task, "segment")) ib_linear_init(&net->fc, &net->ps, "classifier.1", c, a->classes);
    ib_rng_seed(&net->dropout_rng, 0, 0xd0);
    return IB_OK;
}

void ib_net_init_weights(ib_net *net, uint64_t seed) {
    ib_params_init_default(&net->ps, seed);
    ib_rng_seed(&net->dropout_rng, seed, 0xd0);
}

static void free_class_names(ib_net *net) {
    for (int c = 0; c < net->n_class_names; c++) free(net->class_names[c]);
    free(net->class_names);
    net->class_names = NULL, net->n_class_names = 0;
}

ib_status ib_net_set_class_names(ib_net *net, const char *const *names, int n) {
    free_class_names(net);
    for (int c = 0; c < n; c++)
        if (!names[c] || !names[c][0]) return IB_OK;
    if (n < 1) return IB_OK;
    if (!(net->class_names = calloc((size_t)n, sizeof *net->class_names))) return ib_fail(IB_ERR_NOMEM, "out of memory");
    net->n_class_names = n;
    for (int c = 0; c < n; c++)
        if (!(net->class_names[c] = strdup(names[c]))) {
            free_class_names(net);
            return ib_fail(IB_ERR_NOMEM, "out of memory");
        }
    return IB_OK;
}

void ib_net_free(ib_net *net) {
    free_class_names(net);
    ib_params_free(&net->ps);
    free(net->blocks);
    ib_arch_free(&net->arch);
    memset(net, 0, sizeof *net);
}

void ib_net_set_bn_momentum(ib_net *net, float m) {
    net->stem.bn.momentum = m;
    net->head.bn.momentum = m;
    for (int l = 0; l < net->arch.n_blocks; l++) {
        ib_block *b = &net->blocks[l];
        for (int i = 0; i < b->n_stages; i++) b->stages[i].bn.momentum = m;
        b->project_bn.momentum = m;
    }
}

ib_tensor *ib_net_features(ib_ctx *ctx, ib_net *net, ib_tensor *x) {
    return ib_net_features_taps(ctx, net, x, 0, NULL, NULL);
}

ib_tensor *ib_net_features_taps(ib_ctx *ctx, ib_net *net, ib_tensor *x, int n_taps, const int *after,
                                ib_tensor **taps) {
    IB_ASSERT(x->ndim == 4 && x->shape[1] == 3, "network input must be (N, 3, H, W)");
    for (int t = 0; t < n_taps; t++)
        IB_ASSERT(after[t] >= -1 && after[t] < net->arch.n_blocks, "tap after block %d of %d", after[t],
                  net->arch.n_blocks);
    ib_prof_scope(0);   // the parts' numbers, for ibnas bench --profile (core.h)
    ib_tensor *h = ib_cba_forward(ctx, &net->stem, x);
    for (int t = 0; t < n_taps; t++)
        if (after[t] == -1) taps[t] = h;
    for (int i = 0; i < net->arch.n_blocks; i++) {
        ib_prof_scope(i + 1);
        h = ib_block_forward(ctx, &net->blocks[i], h);
        for (int t = 0; t < n_taps; t++)
            if (after[t] == i) taps[t] = h;
    }
    ib_prof_scope(net->arch.n_blocks + 1);
    if (net->has_head) h = ib_cba_forward(ctx, &net->head, h);
    ib_prof_scope(-1);
    return h;
}

ib_tensor *ib_net_forward(ib_ctx *ctx, ib_net *net, ib_tensor *x) {
    IB_ASSERT(net->fc.w, "%s: a %s network has no classifier (use its task's forward)", net->arch.name, net->arch.task);
    ib_tensor *h = ib_net_features(ctx, net, x);
    ib_prof_scope(net->arch.n_blocks + 2);
    h = ib_global_avg_pool(ctx, h);
    h = ib_reshape(ctx, h, 2, (int[]){h->shape[0], h->shape[1]});
    if (ctx->training) h = dropout(ctx, h, net->arch.dropout, &net->dropout_rng);
    h = ib_linear_forward(ctx, &net->fc, h);
    ib_prof_scope(-1);
    return h;
}

int64_t ib_net_param_count(const ib_net *net) { return net->ps.numel_params; }

int ib_arch_last_block_at_stride(const ib_arch *a, int stride) {
    int s = a->stem_stride, last = s == stride ? -1 : -2;
    for (int i = 0; i < a->n_blocks; i++) {
        s *= a->blocks[i].stride;
        if (s == stride) last = i;
    }
    return last;
}

int64_t ib_arch_macs(const ib_arch *a, int res) {
    int h = (res + a->stem_stride - 1) / a->stem_stride, c = a->stem_out;
    int64_t macs = (int64_t)h * h * c * 3 * a->stem_kernel * a->stem_kernel;
    for (int i = 0; i < a->n_blocks; i++) {
        macs += ib_block_macs(&a->blocks[i], c, h, h);
        h = (h + a->blocks[i].stride - 1) / a->blocks[i].stride;
        c = a->blocks[i].out;
    }
    if (a->head_out > 0) macs += (int64_t)h * h * c * a->head_out, c = a->head_out;
    return macs + (int64_t)c * a->classes;
}
