// The weight-sharing supernet over a search space (docs/SEARCH.md, "Supernet").
//
// Per layer and per op the layer allows, one block of weights at the op's largest configuration (the
// largest kernel, expansion and tucker ratios of the layer's stage). A path, one arch of the space, is
// an ordinary ib_net made in a context's arena whose tensors are views of those weights: a smaller
// kernel is the centre of the largest, a smaller expansion (or tucker width) the first channels, a
// narrower BN the first entries. The path then runs the standalone network's own forward and backward
// code (layers/), so a path and its extracted network compute the same numbers, and each view's
// gradient lands in its slice of the shared tensor.
//
// gcibn is the one op whose sub-configurations are not a plain slice: a g-group conv's weight is
// (hid, cin/g, k, k). Its weights are kept as one dense (hid_max, cin, k_max, k_max) tensor, the shape of
// a fused block's expansion; a g-group path takes g diagonal blocks of it: group j uses input channels
// [j cin/g, (j+1) cin/g) and the first hid/g of the output rows starting at j hid_max/g. The blocks of
// 4 groups lie inside those of 2 groups, so the group counts share their weights as the kernels do.
//
// The 5x5 kernels of the block convs that are not depthwise (fused, tucker, the gcibn dense weight) are stored
// centre first (core.h): each output row holds the 3x3 centre taps of all its inputs, then the outer taps. A 3x3
// path then reads 9 of every 25 weights in place, as a channel slice, where a plain layout made it read the
// centre of each 5x5 window (a copy in, a copy out and a gradient added back, each touching every cache line
// of the 5x5 tensor). Depthwise kernels stay plain: they are small, and copied for the depthwise conv anyway.
#include "search/search.h"

#include <stdlib.h>
#include <string.h>

static ib_status space_copy(ib_space *dst, const ib_space *src) {
    *dst = *src;
    dst->stages = malloc(sizeof(ib_space_stage) * (size_t)(src->n_stages ? src->n_stages : 1));
    if (!dst->stages) return ib_fail(IB_ERR_NOMEM, "out of memory copying a space");
    memcpy(dst->stages, src->stages, sizeof(ib_space_stage) * (size_t)src->n_stages);
    return IB_OK;
}

// The largest configuration of `op` that layer l of the space allows.
static ib_block_cfg largest_cfg(const ib_space *sp, int l, ib_block_op op) {
    ib_space_layer li = ib_space_layer_info(sp, l);
    const ib_space_stage *st = &sp->stages[li.stage];
    ib_block_cfg c;
    memset(&c, 0, sizeof c);
    c.op = op == IB_BLOCK_GCIBN ? IB_BLOCK_FUSED : op;   // gcibn: the dense weight (see the top)
    c.out = li.cout, c.stride = li.stride, c.groups = 1;
    c.kernel = st->n_kernel ? st->kernel[st->n_kernel - 1] : 3;
    c.expand = st->n_expand ? st->expand[st->n_expand - 1] : 1;
    c.r_in = st->n_r_in ? st->r_in[st->n_r_in - 1] : 0.25f;
    c.r_out = st->n_r_out ? st->r_out[st->n_r_out - 1] : 0.75f;
    return c;
}

ib_status ib_supernet_build(ib_supernet *sn, const ib_space *space, int classes) {
    memset(sn, 0, sizeof *sn);
    ib_status s = space_copy(&sn->space, space);
    if (s) return s;
    const ib_space *sp = &sn->space;
    ib_arch *a = &sn->base;
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", sp->name);
    snprintf(a->task, sizeof a->task, "classify");
    a->classes = classes > 0 ? classes : sp->classes;
    a->input = sp->input;
    a->stem_out = sp->stem_out, a->stem_kernel = sp->stem_kernel, a->stem_stride = sp->stem_stride;
    a->head_out = sp->head_out;
    a->dropout = sp->dropout;
    a->act = sp->act;
    if (!(a->blocks = calloc(1, sizeof(ib_block_cfg)))) return ib_fail(IB_ERR_NOMEM, "out of memory");
    ib_params_init(&sn->ps);
    ib_cba_init(&sn->stem, &sn->ps, "features.0", 3, a->stem_out, a->stem_kernel, a->stem_stride, 1, a->act);
    sn->layers = calloc((size_t)(sp->n_layers ? sp->n_layers : 1) * IB_BLOCK_SKIP, sizeof(ib_block));
    if (!sn->layers) return ib_fail(IB_ERR_NOMEM, "out of memory building the supernet of %s", sp->name);
    int c = a->stem_out;
    char name[96];
    for (int l = 0; l < sp->n_layers; l++) {
        ib_space_layer li = ib_space_layer_info(sp, l);
        unsigned ops = sp->stages[li.stage].ops;
        for (int o = 0; o < IB_BLOCK_SKIP; o++) {
            if (!(ops & (1u << o))) continue;
            ib_block_cfg cfg = largest_cfg(sp, l, (ib_block_op)o);
            snprintf(name, sizeof name, "features.%d.%s", l + 1, ib_block_op_name((ib_block_op)o));
            char where[64];
            snprintf(where, sizeof where, "%s: layer %d (%s)", sp->name, l, ib_block_op_name((ib_block_op)o));
            if ((s = ib_block_check(&cfg, li.cin, where))) return s;
            ib_block_init(&sn->layers[l * IB_BLOCK_SKIP + o], &sn->ps, name, &cfg, li.cin, a->act);
        }
        c = li.cout;
    }
    if (a->head_out > 0) {
        snprintf(name, sizeof name, "features.%d", sp->n_layers + 1);
        ib_cba_init(&sn->head, &sn->ps, name, c, a->head_out, 1, 1, 1, a->act);
        sn->has_head = 1;
        c = a->head_out;
    }
    ib_linear_init(&sn->fc, &sn->ps, "classifier.1", c, a->classes);
    ib_rng_seed(&sn->dropout_rng, 0, 0xd0);
    if ((s = ib_params_alloc(&sn->ps))) return s;
    for (int i = 0; i < sp->n_layers * IB_BLOCK_SKIP; i++)   // the 5x5 kernels centre first (see the top)
        for (int k = 0; k < sn->layers[i].n_stages; k++) {
            ib_tensor *w = sn->layers[i].stages[k].conv.w;
            if (w && w->shape[2] == 5 && sn->layers[i].stages[k].conv.groups == 1) w->centre_first = 1;
        }
    if (!(sn->by_data = malloc(sizeof(int) * (size_t)(sn->ps.n ? sn->ps.n : 1))))
        return ib_fail(IB_ERR_NOMEM, "out of memory building the supernet of %s", sp->name);
    for (int i = 0; i < sn->ps.n; i++)
        if (!sn->ps.is_buffer[i]) sn->by_data[sn->n_by_data++] = i;
    return IB_OK;
}

// The centre-first tensors' values, read as the plain layout, laid out centre first (see the top).
static void centre_first_from_plain(ib_params *ps) {
    for (int i = 0; i < ps->n; i++)
        if (ps->t[i]->centre_first) ib_centre_first_permute(ps->t[i]->data, ps->t[i]->shape[0], ps->t[i]->shape[1], 1);
}

void ib_supernet_init_weights(ib_supernet *sn, uint64_t seed) {
    ib_params_init_default(&sn->ps, seed);
    centre_first_from_plain(&sn->ps);   // drawn in the plain order: a seed gives the network it gave before the layout
    ib_rng_seed(&sn->dropout_rng, seed, 0xd0);
}

void ib_supernet_free(ib_supernet *sn) {
    ib_params_free(&sn->ps);
    free(sn->layers);
    free(sn->by_data);
    free(sn->space.stages);
    ib_arch_free(&sn->base);
    free(sn->train_data);
    free(sn->path);
    memset(sn, 0, sizeof *sn);
}

// ---------------------------------------------------------------------------------------------
// Paths

// The shared conv `full` seen as the path's conv `cs`: the tensor itself when nothing is cut, else the
// slice (first output and input channels, centred kernel) as a view; a gcibn path's g-group weight is the
// g diagonal blocks of the dense tensor (see the top), a group-block view. ib_conv2d reads channel slices and
// group blocks in place and copies a kernel's centre inside the conv; either way the gradient lands in the
// shared tensor.
ib_conv ib_supernet_conv_view(ib_ctx *ctx, const ib_conv *full, ib_conv_shape cs) {
    ib_conv c = *full;
    c.cin = cs.cin, c.cout = cs.cout, c.k = cs.k, c.stride = cs.stride, c.groups = cs.groups;
    int depthwise = cs.groups == cs.cin && cs.groups == cs.cout && cs.groups > 1;
    if (full->w->centre_first) {
        c.w = ib_view_centre_first(ctx, full->w, cs.cout, cs.cin / cs.groups, cs.k, cs.groups);
    } else if (depthwise || cs.groups == 1) {
        int in = depthwise ? 1 : cs.cin;
        if (cs.cout != full->w->shape[0] || in != full->w->shape[1] || cs.k != full->k)
            c.w = ib_view_slice(ctx, full->w, cs.cout, in, cs.k, cs.k);
    } else {
        c.w = ib_view_group_blocks(ctx, full->w, cs.cout, cs.groups, cs.k);
    }
    return c;
}

ib_bn ib_supernet_bn_view(ib_ctx *ctx, const ib_bn *full, int c) {
    ib_bn b = *full;
    b.c = c;
    if (c != full->c) {
        b.w = ib_view_range(ctx, full->w, 0, 0, c);
        b.b = ib_view_range(ctx, full->b, 0, 0, c);
        b.mean = ib_view_range(ctx, full->mean, 0, 0, c);
        b.var = ib_view_range(ctx, full->var, 0, 0, c);
    }
    return b;
}

ib_cba ib_supernet_cba_view(ib_ctx *ctx, const ib_cba *full, int cin, int cout) {
    ib_cba c = *full;
    int dw = full->conv.groups > 1 && full->conv.groups == full->conv.cin;
    c.conv = ib_supernet_conv_view(ctx, &full->conv, (ib_conv_shape){dw ? cout : cin, cout, full->conv.k, full->conv.stride,
                                                                     dw ? cout : 1});
    c.bn = ib_supernet_bn_view(ctx, &full->bn, cout);
    return c;
}

void ib_supernet_path(ib_ctx *ctx, ib_supernet *sn, const int *choice, ib_net *path) {
    const ib_space *sp = &sn->space;
    memset(path, 0, sizeof *path);
    path->arch = sn->base;
    path->arch.n_blocks = sp->n_layers;
    path->arch.blocks = ib_arena_alloc(ctx->arena, sizeof(ib_block_cfg) * (size_t)(sp->n_layers ? sp->n_layers : 1));
    path->blocks = ib_arena_calloc(ctx->arena, sizeof(ib_block) * (size_t)(sp->n_layers ? sp->n_layers : 1));
    path->stem = sn->stem;
    path->head = sn->head;
    path->has_head = sn->has_head;
    path->fc = sn->fc;
    path->dropout_rng = sn->dropout_rng;
    if (ib_space_head_choices(sp)) {   // the head gene: the task's shared head reads it from the arch
        int g = choice[sp->n_layers];
        IB_ASSERT(g >= 0 && g < ib_space_head_choices(sp), "seg_head: choice %d of %d", g, ib_space_head_choices(sp));
        ib_space_head_choice(sp, g, &path->arch.seg_repeats, &path->arch.seg_width, &path->arch.seg_low_stride);
    }
    for (int l = 0; l < sp->n_layers; l++) {
        int n = ib_space_choices(sp, l, NULL, 0);
        IB_ASSERT(choice[l] >= 0 && choice[l] < n, "layer %d: choice %d of %d", l, choice[l], n);
        ib_block_cfg *all = ib_arena_alloc(ctx->arena, sizeof(ib_block_cfg) * (size_t)n);
        ib_space_choices(sp, l, all, n);
        ib_block_cfg cfg = all[choice[l]];
        path->arch.blocks[l] = cfg;
        ib_space_layer li = ib_space_layer_info(sp, l);
        ib_block *b = &path->blocks[l];
        b->cfg = cfg;
        b->cin = li.cin;
        b->residual = cfg.stride == 1 && li.cin == cfg.out;
        if (cfg.op == IB_BLOCK_SKIP) continue;
        const ib_block *full = &sn->layers[l * IB_BLOCK_SKIP + cfg.op];
        ib_conv_shape cs[IB_BLOCK_MAX_STAGES + 1];
        int nc = ib_block_convs(&cfg, li.cin, cs);
        // An ibn path of expansion 1 has no expansion conv; the shared block has one when the largest
        // expansion is above 1, so the path's stages start at the shared block's depthwise stage.
        int skip = full->n_stages - (nc - 1);
        IB_ASSERT(skip == 0 || skip == 1, "layer %d: %d path stages against %d shared", l, nc - 1, full->n_stages);
        b->n_stages = nc - 1;
        for (int i = 0; i < nc - 1; i++) {
            const ib_cba *fs = &full->stages[i + skip];
            b->stages[i].conv = ib_supernet_conv_view(ctx, &fs->conv, cs[i]);
            b->stages[i].bn = ib_supernet_bn_view(ctx, &fs->bn, cs[i].cout);
            b->stages[i].act = fs->act;
        }
        b->project = ib_supernet_conv_view(ctx, &full->project, cs[nc - 1]);
        b->project_bn = ib_supernet_bn_view(ctx, &full->project_bn, cs[nc - 1].cout);
    }
}

// ---------------------------------------------------------------------------------------------
// Which weights a step's paths ran

// The index in sn->ps of a registered parameter (not a buffer): a binary search by data address, which parameters
// take in registration order.
static int tensor_index(const ib_supernet *sn, const ib_tensor *t) {
    int lo = 0, hi = sn->n_by_data - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, i = sn->by_data[mid];
        const float *d = sn->ps.t[i]->data;
        if (d == t->data && sn->ps.t[i] == t) return i;
        if (d < t->data) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static int root_index(const ib_supernet *sn, const ib_tensor *t) {
    const ib_tensor *root = t->base ? t->base : t;
    int i = tensor_index(sn, root);
    IB_ASSERT(i >= 0, "supernet tensor %s is not registered", root->name);
    return i;
}

static void unmark(const ib_supernet *sn, const ib_tensor *t, uint8_t *active, uint8_t *elem) {
    if (!t) return;
    int i = root_index(sn, t);
    if (active[i] == 2) memset(elem + (t->data - sn->ps.data), 0, (size_t)ib_numel(t));
    active[i] = 0;
}

// A path's tensor t: its shared tensor whole (1), or the elements of the view (2) unless a path ran it whole.
static void mark(const ib_supernet *sn, const ib_tensor *t, uint8_t *active, uint8_t *elem) {
    if (!t) return;
    const ib_tensor *root = t->base ? t->base : t;
    int i = root_index(sn, t);
    if (active[i] == 1) return;
    if (ib_numel(t) == ib_numel(root)) {   // the whole tensor: its element marks go
        if (active[i] == 2) memset(elem + (root->data - sn->ps.data), 0, (size_t)ib_numel(root));
        active[i] = 1;
        return;
    }
    active[i] = 2;
    ib_view_mark(t, sn->ps.data, elem);
}

// A path's tensor t: one more use of each of its elements.
static void count_uses(const ib_supernet *sn, const ib_tensor *t, uint8_t *active, uint8_t *uses) {
    (void)active;
    if (t) ib_view_count(t, sn->ps.data, uses);
}

// A shared layer tensor t some path ran: each element's gradient, the sum over the paths that read it, becomes
// their mean; its use counts go back to zero.
static void mean_of_uses(const ib_supernet *sn, const ib_tensor *t, uint8_t *active, uint8_t *uses) {
    if (!t || !active[root_index(sn, t)]) return;
    int64_t off = t->data - sn->ps.data, n = ib_numel(t);
    uint8_t *u = uses + off;
    float *g = sn->ps.grad + off;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {   // most weights ran in one path or none: skip eight counts below 2 at a time
        uint64_t w;
        memcpy(&w, u + j, 8);
        if (w & 0xfefefefefefefefeull)
            for (int k = 0; k < 8; k++)
                if (u[j + k] > 1) g[j + k] /= (float)u[j + k];
    }
    for (; j < n; j++)
        if (u[j] > 1) g[j] /= (float)u[j];
    memset(u, 0, (size_t)n);
}

typedef void (*mark_fn)(const ib_supernet *, const ib_tensor *, uint8_t *, uint8_t *);

static void each_tensor(const ib_supernet *sn, const ib_block *b, mark_fn fn, uint8_t *active, uint8_t *elem) {
    for (int i = 0; i < b->n_stages; i++) {
        fn(sn, b->stages[i].conv.w, active, elem), fn(sn, b->stages[i].conv.b, active, elem);
        fn(sn, b->stages[i].bn.w, active, elem), fn(sn, b->stages[i].bn.b, active, elem);
    }
    fn(sn, b->project.w, active, elem), fn(sn, b->project.b, active, elem);
    fn(sn, b->project_bn.w, active, elem), fn(sn, b->project_bn.b, active, elem);
    if (b->has_se) {
        fn(sn, b->se.fc1.w, active, elem), fn(sn, b->se.fc1.b, active, elem);
        fn(sn, b->se.fc2.w, active, elem), fn(sn, b->se.fc2.b, active, elem);
    }
}

void ib_supernet_active_clear(const ib_supernet *sn, uint8_t *active, uint8_t *elem) {
    for (int i = 0; i < sn->ps.n; i++)
        if (active[i] != 2) active[i] = 1;   // the 2s: unmark clears their element marks
    for (int l = 0; l < sn->space.n_layers; l++)
        for (int o = 0; o < IB_BLOCK_SKIP; o++) each_tensor(sn, &sn->layers[l * IB_BLOCK_SKIP + o], unmark, active, elem);
}

// The layers a path runs: its blocks, up to where a task's loss cuts it (ib_sn_task.ran).
static int path_layers(const ib_supernet *sn, const ib_net *path) {
    return path->arch.n_blocks < sn->space.n_layers ? path->arch.n_blocks : sn->space.n_layers;
}

void ib_supernet_active_add(const ib_supernet *sn, const ib_net *path, uint8_t *active, uint8_t *elem) {
    for (int l = 0; l < path_layers(sn, path); l++)
        if (path->blocks[l].cfg.op != IB_BLOCK_SKIP) each_tensor(sn, &path->blocks[l], mark, active, elem);
}

void ib_supernet_active_top(const ib_supernet *sn, int head, uint8_t *active) {
    const ib_tensor *t[6] = {sn->fc.w, sn->fc.b};
    if (!head && sn->has_head) t[2] = sn->head.conv.w, t[3] = sn->head.conv.b, t[4] = sn->head.bn.w, t[5] = sn->head.bn.b;
    for (int k = 0; k < 6; k++)
        if (t[k]) active[root_index(sn, t[k])] = 0;
}

void ib_supernet_uses_add(const ib_supernet *sn, const ib_net *path, uint8_t *uses) {
    for (int l = 0; l < path_layers(sn, path); l++)
        if (path->blocks[l].cfg.op != IB_BLOCK_SKIP) each_tensor(sn, &path->blocks[l], count_uses, NULL, uses);
}

static void grad_div(const ib_tensor *t, int n) {
    if (t)
        for (int64_t j = 0, m = ib_numel(t); j < m; j++) t->grad[j] /= (float)n;
}

void ib_supernet_grad_mean(const ib_supernet *sn, int n_paths, uint8_t *active, uint8_t *uses) {
    for (int l = 0; l < sn->space.n_layers; l++)
        for (int o = 0; o < IB_BLOCK_SKIP; o++) each_tensor(sn, &sn->layers[l * IB_BLOCK_SKIP + o], mean_of_uses, active, uses);
    const ib_cba *shared[2] = {&sn->stem, sn->has_head ? &sn->head : NULL};   // every path ran these
    for (int k = 0; k < 2; k++)
        if (shared[k]) {
            grad_div(shared[k]->conv.w, n_paths), grad_div(shared[k]->conv.b, n_paths);
            grad_div(shared[k]->bn.w, n_paths), grad_div(shared[k]->bn.b, n_paths);
        }
    grad_div(sn->fc.w, n_paths), grad_div(sn->fc.b, n_paths);
}

// ---------------------------------------------------------------------------------------------
// Files

ib_status ib_supernet_save(const ib_supernet *sn, const char *path, ib_status (*extra)(ib_h5 *f, void *user),
                           void *user) {
    ib_h5 *f;
    ib_status s = ib_h5_create(&f, path);
    if (s) return s;
    char *json = ib_space_to_json(&sn->space);
    if (!json) s = ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!s) s = ib_h5_set_attr_str(f, "/", "format", IB_SUPERNET_FORMAT);
    if (!s) s = ib_h5_set_attr_i64(f, "/", "version", IB_SUPERNET_VERSION);
    if (!s) s = ib_h5_set_attr_str(f, "/", "space", json);
    if (!s) s = ib_h5_set_attr_i64(f, "/", "classes", sn->base.classes);
    if (!s) s = ib_h5_set_attr_str(f, "/", "train_data", sn->train_data ? sn->train_data : "");
    if (!s) s = ib_h5_set_attr_f64(f, "/", "holdout", sn->holdout);
    if (!s) s = ib_h5_set_attr_i64(f, "/", "split_seed", (int64_t)sn->split_seed);
    if (!s && sn->sampling[0]) s = ib_h5_set_attr_str(f, "/", "sampling", sn->sampling);
    if (!s && sn->path_grads[0]) s = ib_h5_set_attr_str(f, "/", "path_grads", sn->path_grads);
    if (!s) s = ib_h5_set_attr_str(f, "/", "ibnas_version", IB_VERSION_STRING);
    free(json);
    if (!s) s = ib_params_write(f, &sn->ps);
    if (!s && extra) s = extra(f, user);
    if (s) {
        ib_h5_abort(f);
        return s;
    }
    return ib_h5_close(f);
}

ib_status ib_supernet_load(ib_supernet *sn, const char *path) {
    memset(sn, 0, sizeof *sn);
    ib_h5 *f;
    ib_status s = ib_h5_open(&f, path);
    if (s) return s;
    char *fmt = NULL, *json = NULL, *data = NULL;
    int64_t version = 0, classes = 0, seed = 0;
    double holdout = 0;
    ib_space sp;
    memset(&sp, 0, sizeof sp);
    if (ib_h5_attr_str(f, "/", "format", &fmt) || strcmp(fmt, IB_SUPERNET_FORMAT))
        s = ib_fail(IB_ERR_FORMAT, "%s: not an ibnas supernet (format %s%s%s, expected \"%s\"; %s)", path,
                    fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "", IB_SUPERNET_FORMAT,
                    fmt && !strcmp(fmt, "ibnas-checkpoint") ? "a network's checkpoint: use ibnas eval" :
                                                              "write one with ibnas supernet train");
    if (!s && (ib_h5_attr_i64(f, "/", "version", &version) || version < 1 || version > IB_SUPERNET_VERSION))
        s = ib_fail(IB_ERR_FORMAT, "%s: supernet version %lld, this build reads versions 1 to %d", path,
                    (long long)version, IB_SUPERNET_VERSION);
    if (!s && (ib_h5_attr_str(f, "/", "space", &json) || ib_h5_attr_i64(f, "/", "classes", &classes)))
        s = ib_fail(IB_ERR_FORMAT, "%s: no space or classes attribute", path);
    if (!s) {
        char src[600];
        snprintf(src, sizeof src, "%s (space attribute)", path);
        s = ib_space_parse(&sp, json, src);
    }
    if (!s) s = ib_supernet_build(sn, &sp, (int)classes);
    if (!s) s = ib_params_read(f, &sn->ps);
    if (!s && version == 1) centre_first_from_plain(&sn->ps);   // plain 5x5 kernels (IB_SUPERNET_VERSION)
    sn->file_version = (int)version;
    if (!s && !ib_h5_attr_str(f, "/", "train_data", &data) && data[0]) {
        sn->train_data = data;
        data = NULL;
    }
    if (!s && !ib_h5_attr_f64(f, "/", "holdout", &holdout)) sn->holdout = holdout;
    if (!s && !ib_h5_attr_i64(f, "/", "split_seed", &seed)) sn->split_seed = (uint64_t)seed;
    char *sampling = NULL;
    if (!s && !ib_h5_attr_str(f, "/", "sampling", &sampling))
        snprintf(sn->sampling, sizeof sn->sampling, "%s", sampling);
    free(sampling);
    char *rule = NULL;
    if (!s && !ib_h5_attr_str(f, "/", "path_grads", &rule)) snprintf(sn->path_grads, sizeof sn->path_grads, "%s", rule);
    free(rule);
    char *task = NULL;
    if (!s && !ib_h5_attr_str(f, "/", "task", &task)) snprintf(sn->task, sizeof sn->task, "%s", task);
    free(task);
    if (!s && !(sn->path = strdup(path))) s = ib_fail(IB_ERR_NOMEM, "out of memory");
    free(fmt);
    free(json);
    free(data);
    if (sp.stages) ib_space_free(&sp);
    ib_h5_close(f);
    if (s) ib_supernet_free(sn);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Extraction

void ib_supernet_copy_tensor(ib_tensor *dst, const ib_tensor *src) {
    IB_ASSERT(ib_numel(dst) == ib_numel(src), "extract: %s has %lld values, the path %lld", dst->name,
              (long long)ib_numel(dst), (long long)ib_numel(src));
    ib_tensor_read(src, dst->data);
}

static void copy_conv(ib_conv *dst, const ib_conv *src) {
    ib_supernet_copy_tensor(dst->w, src->w);
    if (dst->b) ib_supernet_copy_tensor(dst->b, src->b);
}

static void copy_bn(ib_bn *dst, const ib_bn *src) {
    ib_supernet_copy_tensor(dst->w, src->w);
    ib_supernet_copy_tensor(dst->b, src->b);
    ib_supernet_copy_tensor(dst->mean, src->mean);
    ib_supernet_copy_tensor(dst->var, src->var);
}

void ib_supernet_copy_cba(ib_cba *dst, const ib_cba *src) {
    copy_conv(&dst->conv, &src->conv);
    copy_bn(&dst->bn, &src->bn);
}

ib_status ib_supernet_extract(ib_supernet *sn, const int *choice, ib_net *net) {
    ib_arch a;
    ib_status s = ib_space_arch(&sn->space, choice, sn->base.classes, &a);
    if (s) return s;
    s = ib_net_build(net, &a);
    ib_arch_free(&a);
    if (s) return s;
    ib_ctx *ctx = ib_ctx_new();
    ctx->recording = 0;
    ib_net p;
    ib_supernet_path(ctx, sn, choice, &p);
    ib_supernet_copy_cba(&net->stem, &p.stem);
    for (int l = 0; l < p.arch.n_blocks; l++) {
        ib_block *d = &net->blocks[l];
        const ib_block *b = &p.blocks[l];
        IB_ASSERT(d->n_stages == b->n_stages && d->cfg.op == b->cfg.op, "extract: layer %d differs", l);
        if (b->cfg.op == IB_BLOCK_SKIP) continue;
        for (int i = 0; i < b->n_stages; i++) ib_supernet_copy_cba(&d->stages[i], &b->stages[i]);
        copy_conv(&d->project, &b->project);
        copy_bn(&d->project_bn, &b->project_bn);
    }
    if (p.has_head) ib_supernet_copy_cba(&net->head, &p.head);
    ib_supernet_copy_tensor(net->fc.w, p.fc.w);
    ib_supernet_copy_tensor(net->fc.b, p.fc.b);
    net->dropout_rng = sn->dropout_rng;
    ib_ctx_free(ctx);
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// BN recalibration

void ib_recal_cfg_default(ib_recal_cfg *c, int res) {
    memset(c, 0, sizeof *c);
    c->res = res;
    c->batches = 20;
    c->batch = 64;
    c->workers = 2;
    c->mean[0] = 0.485f * 255, c->mean[1] = 0.456f * 255, c->mean[2] = 0.406f * 255;
    c->std[0] = 0.229f * 255, c->std[1] = 0.224f * 255, c->std[2] = 0.225f * 255;
}

ib_status ib_recal_loader_open(ib_loader **l, ib_dataset *calib, const ib_recal_cfg *cfg) {
    *l = NULL;
    if (cfg->batches < 1 || cfg->batch < 2)
        return ib_fail(IB_ERR_ARG, "BN recalibration needs at least one batch of at least 2 images");
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, cfg->res, cfg->res);
    lo.batch_size = cfg->batch;
    lo.shuffle = 1;
    lo.drop_last = 1;
    lo.seed = cfg->seed;
    lo.workers = cfg->workers;
    lo.want_boxes = 0;
    lo.want_masks = 0;
    lo.aug.crop = IB_CROP_CENTER;
    memcpy(lo.aug.mean, cfg->mean, sizeof lo.aug.mean);
    memcpy(lo.aug.std, cfg->std, sizeof lo.aug.std);
    ib_status s = ib_loader_open(l, calib, &lo);
    if (s) return s;
    if (ib_loader_batches(*l) < 1) {
        ib_loader_close(*l);
        *l = NULL;
        return ib_fail(IB_ERR_ARG, "%s: %lld images make no calibration batch of %d", ib_dataset_path(calib),
                       (long long)ib_dataset_size(calib), cfg->batch);
    }
    return IB_OK;
}

// Every BN the pass recalibrates gets momentum 1/(t+1) for calibration batch t, so after T batches the
// running statistics are the plain average of the T batches' (mean, unbiased variance), as PyTorch's
// momentum=None cumulative average that Once-for-All's recalibration uses.
ib_status ib_recalibrate_pass(const ib_recal_pass *p, ib_dataset *calib, const ib_recal_cfg *cfg) {
    ib_loader *l;
    ib_status s = ib_recal_loader_open(&l, calib, cfg);
    if (s) return s;
    ib_ctx *ctx = cfg->ctx ? cfg->ctx : ib_ctx_new();
    int t = 0;
    // More batches than an epoch holds wrap into the next epochs (another shuffle of the same seed).
    for (int64_t epoch = 0; t < cfg->batches && !s; epoch++) {
        ib_loader_start_epoch(l, epoch);
        const ib_batch *b;
        while (t < cfg->batches && (s = ib_loader_next(l, &b)) == IB_OK && b) {
            ib_ctx_reset(ctx);
            ctx->training = 1;
            ctx->recording = 0;
            p->momentum(p->user, 1.0f / (float)(t + 1));
            t++;
            ib_tensor x;
            ib_batch_tensor(b, &x);
            p->forward(ctx, p->user, &x);
        }
    }
    ib_ctx_reset(ctx);
    ctx->training = 0;
    if (!cfg->ctx) ib_ctx_free(ctx);
    ib_loader_close(l);
    p->momentum(p->user, 0.1f);   // back to the layers' 0.1
    return s;
}

static void net_momentum(void *net, float m) { ib_net_set_bn_momentum(net, m); }
static void net_forward(ib_ctx *ctx, void *net, ib_tensor *x) { ib_net_forward(ctx, net, x); }

ib_status ib_recalibrate_bn(ib_net *path, ib_dataset *calib, const ib_recal_cfg *cfg) {
    ib_recal_pass p = {.momentum = net_momentum, .forward = net_forward, .user = path};
    return ib_recalibrate_pass(&p, calib, cfg);
}
