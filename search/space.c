// Search spaces (*.space.json): per stage a width, stride, depth and the block choices its layers allow.
// Parsed with jansson as arch files are: syntax errors name the line and column, wrong fields their path.
// Everything a generated block needs is checked when the space is read (every choice of every layer goes
// through ib_block_check), so any choice vector the space yields builds as a network.
#include "search/search.h"
#include "layers/json_fields.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_MAX_STAGES 64
#define SPACE_MAX_LAYERS 256
#define OP_BIT(op) (1u << (unsigned)(op))
#define OPS_EXPAND (OP_BIT(IB_BLOCK_IBN) | OP_BIT(IB_BLOCK_FUSED) | OP_BIT(IB_BLOCK_GCIBN))
#define OPS_KERNEL (OPS_EXPAND | OP_BIT(IB_BLOCK_TUCKER))

void ib_space_free(ib_space *s) {
    free(s->stages);
    memset(s, 0, sizeof *s);
}

static void space_defaults(ib_space *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "space");
    s->input = 224;
    s->classes = 1000;
    s->act = IB_ACT_RELU6;
    s->stem_out = 32, s->stem_kernel = 3, s->stem_stride = 2;
    s->head_out = 1280;
    s->dropout = 0.2f;
}

// ---------------------------------------------------------------------------------------------
// Layers and their choices

int ib_space_head_choices(const ib_space *s) {
    return s->n_seg_repeats * s->n_seg_width * (s->n_seg_low > 0 ? s->n_seg_low : 1);
}
int ib_space_genes(const ib_space *s) { return s->n_layers + (ib_space_head_choices(s) > 0); }

// g = (low * n_width + width) * n_repeats + repeats, each an index into its ascending list.
void ib_space_head_choice(const ib_space *s, int g, int *repeats, int *width, int *low_stride) {
    int nr = s->n_seg_repeats, nw = s->n_seg_width;
    *repeats = s->seg_repeats[g % nr];
    *width = s->seg_width[g / nr % nw];
    *low_stride = s->n_seg_low > 0 ? s->seg_low[g / (nr * nw)] : 0;
}

static int index_of(const int *v, int n, int x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x) return i;
    return -1;
}

int ib_space_head_index(const ib_space *s, int repeats, int width, int low_stride) {
    int r = index_of(s->seg_repeats, s->n_seg_repeats, repeats), w = index_of(s->seg_width, s->n_seg_width, width);
    int l = s->n_seg_low > 0 ? index_of(s->seg_low, s->n_seg_low, low_stride) : low_stride > 0 ? -1 : 0;
    return r < 0 || w < 0 || l < 0 ? -1 : (l * s->n_seg_width + w) * s->n_seg_repeats + r;
}

ib_space_layer ib_space_layer_info(const ib_space *s, int layer) {
    IB_ASSERT(layer >= 0 && layer < s->n_layers, "layer %d of a space of %d layers", layer, s->n_layers);
    int cin = s->stem_out;
    for (int i = 0; i < s->n_stages; i++) {
        const ib_space_stage *st = &s->stages[i];
        if (layer < st->layers) {
            ib_space_layer l = {i, layer, layer == 0 ? cin : st->out, st->out, layer == 0 ? st->stride : 1};
            return l;
        }
        layer -= st->layers;
        cin = st->out;
    }
    IB_ASSERT(0, "space layer count out of step with its stages");
    return (ib_space_layer){0, 0, 0, 0, 0};
}

// Blocks as ib_arch_parse makes them: the fields an op does not use hold the arch reader's defaults, so a
// subnet written to JSON and read back has byte-identical block configurations.
static ib_block_cfg cfg_base(ib_block_op op, int out, int stride) {
    ib_block_cfg c;
    memset(&c, 0, sizeof c);
    c.op = op, c.out = out, c.stride = stride;
    c.kernel = 3, c.expand = 1, c.groups = 1, c.r_in = 0.25f, c.r_out = 0.75f;
    return c;
}

// Enumerates a layer's choices in the documented order. With only >= 0 just that choice is written (to
// out[0]); otherwise up to max into out. Returns the count.
static int layer_choices(const ib_space *s, int layer, ib_block_cfg *out, int max, int only) {
    ib_space_layer L = ib_space_layer_info(s, layer);
    const ib_space_stage *st = &s->stages[L.stage];
    int n = 0;
#define EMIT(c)                                                      \
    do {                                                             \
        if (only >= 0) { if (n == only && out) out[0] = (c); }       \
        else if (out && n < max) out[n] = (c);                       \
        n++;                                                         \
    } while (0)
    for (int op = 0; op <= IB_BLOCK_SKIP; op++) {
        if (!(st->ops & OP_BIT(op))) continue;
        ib_block_cfg c = cfg_base((ib_block_op)op, L.cout, L.stride);
        switch ((ib_block_op)op) {
        case IB_BLOCK_IBN:
        case IB_BLOCK_FUSED:
            for (int k = 0; k < st->n_kernel; k++)
                for (int e = 0; e < st->n_expand; e++) {
                    c.kernel = st->kernel[k], c.expand = st->expand[e];
                    EMIT(c);
                }
            break;
        case IB_BLOCK_GCIBN:
            for (int k = 0; k < st->n_kernel; k++)
                for (int e = 0; e < st->n_expand; e++)
                    for (int g = 0; g < st->n_groups; g++) {
                        c.kernel = st->kernel[k], c.expand = st->expand[e], c.groups = st->groups[g];
                        EMIT(c);
                    }
            break;
        case IB_BLOCK_TUCKER:
            for (int k = 0; k < st->n_kernel; k++)
                for (int i = 0; i < st->n_r_in; i++)
                    for (int o = 0; o < st->n_r_out; o++) {
                        c.kernel = st->kernel[k], c.r_in = st->r_in[i], c.r_out = st->r_out[o];
                        EMIT(c);
                    }
            break;
        case IB_BLOCK_SKIP:
            if (L.index > 0 && L.stride == 1 && L.cin == L.cout) EMIT(c);
            break;
        }
    }
#undef EMIT
    return n;
}

int ib_space_choices(const ib_space *s, int layer, ib_block_cfg *out, int max) {
    return layer_choices(s, layer, out, max, -1);
}

// Each layer's choice list, malloc'd (count in *n).
static ib_block_cfg *choices_alloc(const ib_space *s, int layer, int *n) {
    *n = layer_choices(s, layer, NULL, 0, -1);
    ib_block_cfg *c = malloc(sizeof *c * (size_t)(*n > 0 ? *n : 1));
    IB_ASSERT(c, "out of memory for the choices of a layer");
    layer_choices(s, layer, c, *n, -1);
    return c;
}

void ib_space_count(const ib_space *s, char *buf, size_t n, double *log10_count) {
    // A big integer in base 1e9 limbs, least significant first; a layer has at most a few thousand choices,
    // so each factor adds under 4 decimal digits.
    int cap = ib_space_genes(s) * 4 / 9 + 2, used = 1;
    uint32_t *limb = calloc((size_t)cap, sizeof *limb);
    IB_ASSERT(limb, "out of memory counting a space");
    limb[0] = 1;
    double lg = 0;
    for (int l = 0; l < ib_space_genes(s); l++) {
        uint64_t f = (uint64_t)(l < s->n_layers ? layer_choices(s, l, NULL, 0, -1) : ib_space_head_choices(s)), carry = 0;
        lg += log10((double)f);
        for (int i = 0; i < used; i++) {
            uint64_t v = limb[i] * f + carry;
            limb[i] = (uint32_t)(v % 1000000000u);
            carry = v / 1000000000u;
        }
        while (carry) {
            IB_ASSERT(used < cap, "space count overflowed its buffer");
            limb[used++] = (uint32_t)(carry % 1000000000u);
            carry /= 1000000000u;
        }
        if (f == 0) used = 1;   // a layer without choices (never in a parsed space) makes the count 0
    }
    if (buf && n) {
        size_t k = (size_t)snprintf(buf, n, "%u", limb[used - 1]);
        for (int i = used - 2; i >= 0 && k < n; i--) k += (size_t)snprintf(buf + k, n - k, "%09u", limb[i]);
    }
    free(limb);
    if (log10_count) *log10_count = lg;
}

// ---------------------------------------------------------------------------------------------
// Subnets

ib_status ib_space_arch(const ib_space *s, const int *choice, int classes, ib_arch *a) {
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%.56s-subnet", s->name);
    snprintf(a->task, sizeof a->task, "classify");
    a->classes = classes > 0 ? classes : s->classes;
    a->input = s->input;
    a->stem_out = s->stem_out, a->stem_kernel = s->stem_kernel, a->stem_stride = s->stem_stride;
    a->head_out = s->head_out;
    a->dropout = s->dropout;
    a->act = s->act;
    a->blocks = calloc((size_t)(s->n_layers > 0 ? s->n_layers : 1), sizeof(ib_block_cfg));
    if (!a->blocks) return ib_fail(IB_ERR_NOMEM, "out of memory for a subnet of space %s", s->name);
    for (int l = 0; l < s->n_layers; l++) {
        int n = layer_choices(s, l, &a->blocks[l], 1, choice[l]);
        if (choice[l] < 0 || choice[l] >= n) {
            int c = choice[l];
            ib_arch_free(a);
            return ib_fail(IB_ERR_ARG, "space %s: layer %d: choice %d is out of range (the layer has %d)", s->name, l,
                           c, n);
        }
        a->n_blocks++;
    }
    int nh = ib_space_head_choices(s);
    if (nh > 0) {
        int g = choice[s->n_layers];
        if (g < 0 || g >= nh) {
            ib_arch_free(a);
            return ib_fail(IB_ERR_ARG, "space %s: seg_head: choice %d is out of range (the head has %d)", s->name, g, nh);
        }
        ib_space_head_choice(s, g, &a->seg_repeats, &a->seg_width, &a->seg_low_stride);
    }
    return IB_OK;
}

static void join_ints(char *buf, size_t n, const int *v, int count) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < count && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? ", " : "", v[i]);
}

static void join_floats(char *buf, size_t n, const float *v, int count) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < count && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%g", i ? ", " : "", v[i]);
}

static void join_ops(char *buf, size_t n, unsigned ops) {
    size_t k = 0;
    buf[0] = 0;
    for (int op = 0; op <= IB_BLOCK_SKIP && k < n; op++)
        if (ops & OP_BIT(op))
            k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? ", " : "", ib_block_op_name((ib_block_op)op));
}

static int has_int(const int *v, int count, int x) {
    for (int i = 0; i < count; i++)
        if (v[i] == x) return 1;
    return 0;
}

static int has_float(const float *v, int count, float x) {
    for (int i = 0; i < count; i++)
        if (fabsf(v[i] - x) <= 1e-6f) return 1;
    return 0;
}

static int same_choice(const ib_block_cfg *a, const ib_block_cfg *b) {
    if (a->op != b->op || a->out != b->out || a->stride != b->stride) return 0;
    switch (a->op) {
    case IB_BLOCK_SKIP: return 1;
    case IB_BLOCK_IBN:
    case IB_BLOCK_FUSED: return a->kernel == b->kernel && a->expand == b->expand;
    case IB_BLOCK_GCIBN: return a->kernel == b->kernel && a->expand == b->expand && a->groups == b->groups;
    case IB_BLOCK_TUCKER:
        return a->kernel == b->kernel && fabsf(a->r_in - b->r_in) <= 1e-6f && fabsf(a->r_out - b->r_out) <= 1e-6f;
    }
    return 0;
}

ib_status ib_space_check(const ib_space *s, const ib_arch *a, const char *source, int *choice) {
    const char *src = source ? source : "arch";
    if (a->n_blocks != s->n_layers)
        return ib_fail(IB_ERR_ARG, "%s: blocks: %d blocks, but space %s has %d layers", src, a->n_blocks, s->name,
                       s->n_layers);
    if (a->stem_out != s->stem_out || a->stem_kernel != s->stem_kernel || a->stem_stride != s->stem_stride)
        return ib_fail(IB_ERR_ARG, "%s: stem: out %d, kernel %d, stride %d; space %s has out %d, kernel %d, stride %d",
                       src, a->stem_out, a->stem_kernel, a->stem_stride, s->name, s->stem_out, s->stem_kernel,
                       s->stem_stride);
    if (a->head_out != s->head_out)
        return ib_fail(IB_ERR_ARG, "%s: head.out: %d, space %s has %d", src, a->head_out, s->name, s->head_out);
    if (a->act != s->act)
        return ib_fail(IB_ERR_ARG, "%s: act: %s, space %s uses %s", src, ib_act_name(a->act), s->name,
                       ib_act_name(s->act));
    char list[256];
    for (int l = 0; l < s->n_layers; l++) {
        const ib_block_cfg *b = &a->blocks[l];
        ib_space_layer L = ib_space_layer_info(s, l);
        const ib_space_stage *st = &s->stages[L.stage];
        if (!(st->ops & OP_BIT(b->op))) {
            join_ops(list, sizeof list, st->ops);
            return ib_fail(IB_ERR_ARG, "%s: blocks[%d].op: %s is not allowed in stage %d (%s)", src, l,
                           ib_block_op_name(b->op), L.stage, list);
        }
        if (b->op == IB_BLOCK_SKIP && L.index == 0)
            return ib_fail(IB_ERR_ARG, "%s: blocks[%d].op: skip is not allowed on the first layer of stage %d", src, l,
                           L.stage);
        if (b->out != L.cout)
            return ib_fail(IB_ERR_ARG, "%s: blocks[%d].out: %d, stage %d has width %d", src, l, b->out, L.stage, L.cout);
        if (b->stride != L.stride)
            return ib_fail(IB_ERR_ARG, "%s: blocks[%d].stride: %d, layer %d of stage %d has stride %d", src, l,
                           b->stride, L.index, L.stage, L.stride);
        if (b->op != IB_BLOCK_SKIP) {
            if (!has_int(st->kernel, st->n_kernel, b->kernel)) {
                join_ints(list, sizeof list, st->kernel, st->n_kernel);
                return ib_fail(IB_ERR_ARG, "%s: blocks[%d].kernel: %d is not allowed in stage %d (%s)", src, l,
                               b->kernel, L.stage, list);
            }
            if ((OPS_EXPAND & OP_BIT(b->op)) && !has_int(st->expand, st->n_expand, b->expand)) {
                join_ints(list, sizeof list, st->expand, st->n_expand);
                return ib_fail(IB_ERR_ARG, "%s: blocks[%d].expand: %d is not allowed in stage %d (%s)", src, l,
                               b->expand, L.stage, list);
            }
            if (b->op == IB_BLOCK_GCIBN && !has_int(st->groups, st->n_groups, b->groups)) {
                join_ints(list, sizeof list, st->groups, st->n_groups);
                return ib_fail(IB_ERR_ARG, "%s: blocks[%d].groups: %d is not allowed in stage %d (%s)", src, l,
                               b->groups, L.stage, list);
            }
            if (b->op == IB_BLOCK_TUCKER && !has_float(st->r_in, st->n_r_in, b->r_in)) {
                join_floats(list, sizeof list, st->r_in, st->n_r_in);
                return ib_fail(IB_ERR_ARG, "%s: blocks[%d].r_in: %g is not allowed in stage %d (%s)", src, l, b->r_in,
                               L.stage, list);
            }
            if (b->op == IB_BLOCK_TUCKER && !has_float(st->r_out, st->n_r_out, b->r_out)) {
                join_floats(list, sizeof list, st->r_out, st->n_r_out);
                return ib_fail(IB_ERR_ARG, "%s: blocks[%d].r_out: %g is not allowed in stage %d (%s)", src, l,
                               b->r_out, L.stage, list);
            }
            if (b->se != 0)
                return ib_fail(IB_ERR_ARG, "%s: blocks[%d].se: %g, space %s has no squeeze-excite", src, l, b->se,
                               s->name);
            if (b->act != IB_ACT_NONE && b->act != s->act)
                return ib_fail(IB_ERR_ARG, "%s: blocks[%d].act: %s, space %s uses %s throughout", src, l,
                               ib_act_name(b->act), s->name, ib_act_name(s->act));
        }
        int n, found = -1;
        ib_block_cfg *c = choices_alloc(s, l, &n);
        for (int i = 0; i < n && found < 0; i++)
            if (same_choice(&c[i], b)) found = i;
        free(c);
        if (found < 0)   // every field was found above, so this is a choice the layer's shape rules out
            return ib_fail(IB_ERR_ARG, "%s: blocks[%d]: %s is not one of the choices of layer %d of stage %d", src, l,
                           ib_block_op_name(b->op), L.index, L.stage);
        if (choice) choice[l] = found;
    }
    if (!ib_space_head_choices(s)) {
        if (a->seg_repeats > 0)
            return ib_fail(IB_ERR_ARG, "%s: seg_head: space %s has no segmentation head choices", src, s->name);
        return IB_OK;
    }
    if (a->seg_repeats <= 0)
        return ib_fail(IB_ERR_ARG, "%s: seg_head: missing; space %s searches the segmentation head (repeats and width)",
                       src, s->name);
    int g = ib_space_head_index(s, a->seg_repeats, a->seg_width, a->seg_low_stride);
    if (g < 0) {
        char lw[128], lr[128], ll[128] = "the head's flag";
        join_ints(lw, sizeof lw, s->seg_width, s->n_seg_width);
        join_ints(lr, sizeof lr, s->seg_repeats, s->n_seg_repeats);
        if (s->n_seg_low) join_ints(ll, sizeof ll, s->seg_low, s->n_seg_low);
        return ib_fail(IB_ERR_ARG, "%s: seg_head: repeats %d, width %d, low_stride %d; space %s allows repeats %s, widths "
                       "%s and low strides %s", src, a->seg_repeats, a->seg_width, a->seg_low_stride, s->name, lr, lw, ll);
    }
    if (choice) choice[s->n_layers] = g;
    return IB_OK;
}

void ib_space_sample(const ib_space *s, ib_sample_kind kind, ib_rng *r, int *choice) {
    int h = (s->input + s->stem_stride - 1) / s->stem_stride;
    for (int l = 0; l < s->n_layers; l++) {
        ib_space_layer L = ib_space_layer_info(s, l);
        if (kind == IB_SAMPLE_RANDOM) {
            int n = layer_choices(s, l, NULL, 0, -1);
            choice[l] = (int)ib_rng_below(r, (uint32_t)n);
        } else {
            int n;
            ib_block_cfg *c = choices_alloc(s, l, &n);
            int best = 0;
            int64_t best_macs = ib_block_macs(&c[0], L.cin, h, h);
            for (int i = 1; i < n; i++) {
                int64_t m = ib_block_macs(&c[i], L.cin, h, h);
                if (kind == IB_SAMPLE_LARGEST ? m > best_macs : m < best_macs) best = i, best_macs = m;
            }
            free(c);
            choice[l] = best;
        }
        h = (h + L.stride - 1) / L.stride;
    }
    int nh = ib_space_head_choices(s);   // the largest head: the finest level, the widest, the most layers
    if (nh > 0) {
        int nl = s->n_seg_low > 0 ? s->n_seg_low : 1, per = nh / nl;
        choice[s->n_layers] = kind == IB_SAMPLE_RANDOM    ? (int)ib_rng_below(r, (uint32_t)nh)
                              : kind == IB_SAMPLE_LARGEST ? per - 1
                                                          : (nl - 1) * per;
    }
}

// The number of op types a layer allows and, per op type, the range of its choices (first[k], count[k]):
// ib_space_choices enumerates an op's configurations one after another.
// ops (may be NULL): each range's op type.
static int layer_op_ranges(const ib_space *s, int layer, int *first, int *count, int *ops) {
    int n, n_ops = 0;
    ib_block_cfg *c = choices_alloc(s, layer, &n);
    for (int i = 0; i < n; i++) {
        if (i == 0 || c[i].op != c[i - 1].op) {
            if (ops) ops[n_ops] = (int)c[i].op;
            first[n_ops] = i, count[n_ops] = 0, n_ops++;
        }
        count[n_ops - 1]++;
    }
    free(c);
    return n_ops;
}

int ib_space_fair_paths(const ib_space *s) {
    int m = 1, first[IB_BLOCK_SKIP + 1], count[IB_BLOCK_SKIP + 1];
    for (int l = 0; l < s->n_layers; l++) {
        int n = layer_op_ranges(s, l, first, count, NULL);
        if (n > m) m = n;
    }
    return m;
}

void ib_space_sample_fair(const ib_space *s, ib_rng *r, int n_paths, int *choices) {
    const int G = ib_space_genes(s);
    int first[IB_BLOCK_SKIP + 1], count[IB_BLOCK_SKIP + 1], perm[IB_BLOCK_SKIP + 1];
    for (int l = 0; l < s->n_layers; l++) {
        int n = layer_op_ranges(s, l, first, count, NULL);
        for (int i = 0; i < n; i++) perm[i] = i;
        for (int i = n - 1; i > 0; i--) {   // Fisher-Yates
            int j = (int)ib_rng_below(r, (uint32_t)(i + 1)), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        for (int p = 0; p < n_paths; p++) {
            int o = perm[p % n];
            choices[(size_t)p * (size_t)G + (size_t)l] = first[o] + (int)ib_rng_below(r, (uint32_t)count[o]);
        }
    }
    for (int p = 0, nh = ib_space_head_choices(s); nh > 0 && p < n_paths; p++)   // the head: uniform per path
        choices[(size_t)p * (size_t)G + (size_t)s->n_layers] = (int)ib_rng_below(r, (uint32_t)nh);
}

void ib_space_sample_chained(const ib_space *s, ib_rng *r, float q, int *choice) {
    int first[IB_BLOCK_SKIP + 1], count[IB_BLOCK_SKIP + 1], ops[IB_BLOCK_SKIP + 1], carry = -1;
    for (int l = 0; l < s->n_layers; l++) {
        int n = layer_op_ranges(s, l, first, count, ops), skip = -1, kept = -1, o;
        for (int i = 0; i < n; i++) {
            if (ops[i] == IB_BLOCK_SKIP) skip = i;
            if (ops[i] == carry) kept = i;
        }
        const int real = n - (skip >= 0);   // the non-skip op types
        if (skip >= 0 && ib_rng_below(r, (uint32_t)n) == 0) o = skip;   // skip as often as uniform over op types
        else if (kept >= 0 && ib_rng_uniform(r) >= q) o = kept;
        else {   // uniform over the layer's non-skip op types (the kept one among them)
            o = (int)ib_rng_below(r, (uint32_t)real);
            if (skip >= 0 && o >= skip) o++;
        }
        if (ops[o] != IB_BLOCK_SKIP && real > 1) carry = ops[o];   // a layer of one op type sets nothing
        choice[l] = first[o] + (int)ib_rng_below(r, (uint32_t)count[o]);
    }
    int nh = ib_space_head_choices(s);
    if (nh > 0) choice[s->n_layers] = (int)ib_rng_below(r, (uint32_t)nh);
}

// ---------------------------------------------------------------------------------------------
// Parsing

#define TRY IB_JSON_TRY

// A list field of a stage: 1 to IB_SPACE_MAX_VALUES numbers, ascending and unique. Integers within
// [lo, hi] (odd ones when `odd`) into iv, or numbers in (0, 1] into fv.
static ib_status get_values(const ib_json_where *w, json_t *st, const char *key, int *n, int *iv, float *fv, int lo, int hi,
                            int odd) {
    json_t *v = json_object_get(st, key);
    *n = 0;
    if (!v) return IB_OK;
    char msg[160];
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > IB_SPACE_MAX_VALUES) {
        snprintf(msg, sizeof msg, "must be an array of 1 to %d %s", IB_SPACE_MAX_VALUES, iv ? "integers" : "numbers");
        return ib_json_bad(w, key, msg);
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *x = json_array_get(v, i);
        if (iv) {
            if (!json_is_integer(x)) return ib_json_bad(w, key, "values must be integers");
            json_int_t k = json_integer_value(x);
            if (k < lo || k > hi || (odd && k % 2 == 0)) {
                snprintf(msg, sizeof msg, "%lld is not allowed (%s%d to %d)", (long long)k, odd ? "odd, " : "", lo, hi);
                return ib_json_bad(w, key, msg);
            }
            if (i > 0 && k <= iv[i - 1]) return ib_json_bad(w, key, "values must be ascending and unique");
            iv[i] = (int)k;
        } else {
            if (!json_is_number(x)) return ib_json_bad(w, key, "values must be numbers");
            double r = json_number_value(x);
            if (!(r > 0 && r <= 1)) {
                snprintf(msg, sizeof msg, "%g is not allowed (must be in (0, 1])", r);
                return ib_json_bad(w, key, msg);
            }
            if (i > 0 && (float)r <= fv[i - 1]) return ib_json_bad(w, key, "values must be ascending and unique");
            fv[i] = (float)r;
        }
        (*n)++;
    }
    return IB_OK;
}

static ib_status parse_ops(const ib_json_where *w, json_t *st, unsigned *ops) {
    json_t *v = json_object_get(st, "op");
    if (!v) return ib_json_bad(w, "op", "missing");
    if (!json_is_array(v) || json_array_size(v) < 1)
        return ib_json_bad(w, "op", "must be an array of op names (ibn, fused, tucker, gcibn, skip)");
    *ops = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *x = json_array_get(v, i);
        const char *name = json_is_string(x) ? json_string_value(x) : "";
        int found = -1;
        for (int op = 0; op <= IB_BLOCK_SKIP; op++)
            if (!strcmp(name, ib_block_op_name((ib_block_op)op))) found = op;
        if (found < 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "\"%.40s\" is not an op (ibn, fused, tucker, gcibn, skip)", name);
            return ib_json_bad(w, "op", msg);
        }
        if (*ops & OP_BIT(found)) return ib_json_bad(w, "op", "lists an op twice");
        *ops |= OP_BIT(found);
    }
    return IB_OK;
}

// A field is present exactly when one of the stage's ops uses it.
static ib_status field_needed(const ib_json_where *w, const char *key, int n, unsigned ops, unsigned users, const char *who) {
    char msg[160];
    if ((ops & users) && n == 0) {
        snprintf(msg, sizeof msg, "missing (%s need it)", who);
        return ib_json_bad(w, key, msg);
    }
    if (!(ops & users) && n > 0) {
        snprintf(msg, sizeof msg, "no op of the stage uses it (only %s do)", who);
        return ib_json_bad(w, key, msg);
    }
    return IB_OK;
}

static ib_status parse_stage(ib_json_where *w, json_t *js, ib_space_stage *st, int cin) {
    static const char *const keys[] = {"out", "stride", "layers", "op", "kernel", "expand", "groups", "r_in", "r_out", NULL};
    if (!json_is_object(js)) return ib_json_bad(w, "", "must be an object");
    TRY(ib_json_only_keys(w, js, keys));
    TRY(ib_json_get_int(w, js, "out", &st->out, 1, 1, 1 << 16));
    TRY(ib_json_get_int(w, js, "stride", &st->stride, 1, 1, 2));
    TRY(ib_json_get_int(w, js, "layers", &st->layers, 1, 1, SPACE_MAX_LAYERS));
    TRY(parse_ops(w, js, &st->ops));
    TRY(get_values(w, js, "kernel", &st->n_kernel, st->kernel, NULL, 1, 9, 1));
    TRY(get_values(w, js, "expand", &st->n_expand, st->expand, NULL, 1, 8, 0));
    TRY(get_values(w, js, "groups", &st->n_groups, st->groups, NULL, 2, 1 << 16, 0));
    TRY(get_values(w, js, "r_in", &st->n_r_in, NULL, st->r_in, 0, 0, 0));
    TRY(get_values(w, js, "r_out", &st->n_r_out, NULL, st->r_out, 0, 0, 0));
    TRY(field_needed(w, "kernel", st->n_kernel, st->ops, OPS_KERNEL, "ibn, fused, tucker and gcibn"));
    TRY(field_needed(w, "expand", st->n_expand, st->ops, OPS_EXPAND, "ibn, fused and gcibn"));
    TRY(field_needed(w, "groups", st->n_groups, st->ops, OP_BIT(IB_BLOCK_GCIBN), "gcibn blocks"));
    TRY(field_needed(w, "r_in", st->n_r_in, st->ops, OP_BIT(IB_BLOCK_TUCKER), "tucker blocks"));
    TRY(field_needed(w, "r_out", st->n_r_out, st->ops, OP_BIT(IB_BLOCK_TUCKER), "tucker blocks"));
    for (int g = 0; g < st->n_groups; g++) {
        // The first layer takes the previous stage's width, the others this stage's (ib_block_check then sees
        // the expanded widths, multiples of these).
        char msg[160];
        if (cin % st->groups[g]) {
            snprintf(msg, sizeof msg, "%d does not divide the stage's input width %d", st->groups[g], cin);
            return ib_json_bad(w, "groups", msg);
        }
        if (st->layers > 1 && st->out % st->groups[g]) {
            snprintf(msg, sizeof msg, "%d does not divide the stage's width %d (the input of its later layers)",
                     st->groups[g], st->out);
            return ib_json_bad(w, "groups", msg);
        }
    }
    return IB_OK;
}

// Every choice of every layer must be a block that builds; every layer needs at least one choice.
static ib_status check_layers(const ib_space *s, const char *source) {
    int first = 0;
    for (int i = 0; i < s->n_stages; i++) {
        for (int j = 0; j < s->stages[i].layers; j++) {
            int l = first + j, n;
            ib_space_layer L = ib_space_layer_info(s, l);
            ib_block_cfg *c = choices_alloc(s, l, &n);
            char where_[64];
            snprintf(where_, sizeof where_, "stages[%d]", i);
            ib_status st = IB_OK;
            for (int k = 0; k < n && !st; k++) st = ib_block_check(&c[k], L.cin, where_);
            free(c);
            if (st) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", ib_errmsg());
                return ib_fail(IB_ERR_FORMAT, "%s: %s", source, msg);
            }
            if (n == 0)
                return ib_fail(IB_ERR_FORMAT,
                               "%s: stages[%d].op: layer %d of the stage has no choice (skip alone cannot be a stage's "
                               "first layer, which changes the stride or the width)",
                               source, i, j);
        }
        first += s->stages[i].layers;
    }
    return IB_OK;
}

// "seg_head": {"repeats": [...], "width": [...]}, both lists required.
static ib_status parse_seg_head(ib_space *s, json_t *root, const char *source) {
    static const char *const keys[] = {"repeats", "width", "low_stride", NULL};
    json_t *h = json_object_get(root, "seg_head");
    ib_json_where w = {source, ""};
    if (!h) return IB_OK;
    if (!json_is_object(h)) return ib_json_bad(&w, "seg_head", "must be an object");
    snprintf(w.path, sizeof w.path, "seg_head");
    TRY(ib_json_only_keys(&w, h, keys));
    TRY(get_values(&w, h, "repeats", &s->n_seg_repeats, s->seg_repeats, NULL, 1, 8, 0));
    TRY(get_values(&w, h, "width", &s->n_seg_width, s->seg_width, NULL, 1, 1 << 12, 0));
    TRY(get_values(&w, h, "low_stride", &s->n_seg_low, s->seg_low, NULL, 1, 32, 0));
    for (int i = 0; i < s->n_seg_low; i++)
        if (s->seg_low[i] & (s->seg_low[i] - 1)) {
            s->n_seg_low = 0;
            return ib_json_bad(&w, "low_stride", "values must be powers of 2 (the BiFPN's finest level)");
        }
    if (!s->n_seg_repeats || !s->n_seg_width) {
        s->n_seg_repeats = s->n_seg_width = 0;
        return ib_json_bad(&w, s->n_seg_width ? "repeats" : "width", "missing");
    }
    return IB_OK;
}

static ib_status parse_root(ib_space *s, json_t *root, const char *source) {
    static const char *const keys[] = {"format", "version", "name", "input", "classes", "act", "stem", "stages", "head",
                                       "seg_head", NULL};
    ib_json_where w = {source, ""};
    if (!json_is_object(root)) return ib_json_bad(&w, "", "the top level must be an object");
    json_t *fmt = json_object_get(root, "format");
    if (json_is_string(fmt) && !strcmp(json_string_value(fmt), "ibnas-arch"))
        return ib_json_bad(&w, "format", "\"ibnas-arch\": this is an arch file (one network), not a search space");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), IB_SPACE_FORMAT))
        return ib_json_bad(&w, "format", "must be \"" IB_SPACE_FORMAT "\" (is this a search space file?)");
    TRY(ib_json_only_keys(&w, root, keys));
    int version = 0;
    TRY(ib_json_get_int(&w, root, "version", &version, 1, 1, 1000));
    if (version != IB_SPACE_VERSION) return ib_json_bad(&w, "version", "unsupported (this build reads version 1)");
    json_t *v;
    if ((v = json_object_get(root, "name"))) {
        if (!json_is_string(v) || !json_string_value(v)[0]) return ib_json_bad(&w, "name", "must be a non-empty string");
        snprintf(s->name, sizeof s->name, "%s", json_string_value(v));
    }
    TRY(ib_json_get_int(&w, root, "input", &s->input, 0, 8, 4096));
    TRY(ib_json_get_int(&w, root, "classes", &s->classes, 0, 1, 1 << 20));
    TRY(ib_json_get_act(&w, root, "act", &s->act));
    TRY(ib_json_get_stem(&w, root, &s->stem_out, &s->stem_kernel, &s->stem_stride));
    TRY(ib_json_get_head(&w, root, &s->head_out, &s->dropout));
    json_t *stages = json_object_get(root, "stages");
    w.path[0] = 0;
    if (!json_is_array(stages) || json_array_size(stages) < 1)
        return ib_json_bad(&w, "stages", stages ? "must be a non-empty array" : "missing");
    size_t n = json_array_size(stages);
    if (n > SPACE_MAX_STAGES) return ib_json_bad(&w, "stages", "more than 64 stages");
    s->stages = calloc(n, sizeof *s->stages);
    if (!s->stages) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", source);
    int cin = s->stem_out;
    for (size_t i = 0; i < n; i++) {
        snprintf(w.path, sizeof w.path, "stages[%zu]", i);
        TRY(parse_stage(&w, json_array_get(stages, i), &s->stages[i], cin));
        s->n_stages++;
        s->n_layers += s->stages[i].layers;
        cin = s->stages[i].out;
        if (s->n_layers > SPACE_MAX_LAYERS) return ib_json_bad(&w, "layers", "the space has more than 256 layers");
    }
    TRY(parse_seg_head(s, root, source));
    return check_layers(s, source);
}

ib_status ib_space_parse(ib_space *s, const char *json, const char *source) {
    space_defaults(s);
    if (!source) source = "space";
    json_error_t err;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &err);
    if (!root) return ib_fail(IB_ERR_FORMAT, "%s:%d:%d: %s", source, err.line, err.column, err.text);
    ib_status st = parse_root(s, root, source);
    json_decref(root);
    if (st) ib_space_free(s);
    return st;
}

ib_status ib_space_load(ib_space *s, const char *path) {
    space_defaults(s);
    FILE *f = fopen(path, "rb");
    if (!f) return ib_fail(IB_ERR_IO, "%s: cannot open (no such file or not readable)", path);
    json_error_t err;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!root) return ib_fail(IB_ERR_FORMAT, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    ib_status st = parse_root(s, root, path);
    json_decref(root);
    if (st) ib_space_free(s);
    return st;
}

// ---------------------------------------------------------------------------------------------
// Writing: one stage per line.

// The shortest of %g and %.9g that reads back as the same float.
static const char *fmt_float(char *buf, size_t n, float v) {
    snprintf(buf, n, "%g", v);
    if (strtof(buf, NULL) != v) snprintf(buf, n, "%.9g", v);
    return buf;
}

char *ib_space_to_json(const ib_space *s) {
    size_t cap = 1024 + (size_t)s->n_stages * (400 + 16 * 5 * IB_SPACE_MAX_VALUES), k = 0;
    char *out = malloc(cap), f[32];
    IB_ASSERT(out, "out of memory");
    json_t *jname = json_string(s->name);
    char *name = jname ? json_dumps(jname, JSON_ENCODE_ANY) : NULL;   // quoted and escaped
    json_decref(jname);
    IB_ASSERT(name, "out of memory");
#define OUT(...) (k += (size_t)snprintf(out + k, k < cap ? cap - k : 0, __VA_ARGS__))
    OUT("{\n  \"format\": \"%s\", \"version\": %d,\n", IB_SPACE_FORMAT, IB_SPACE_VERSION);
    OUT("  \"name\": %s, \"input\": %d, \"classes\": %d, \"act\": \"%s\",\n", name, s->input, s->classes,
        ib_act_name(s->act));
    free(name);
    OUT("  \"stem\": {\"out\": %d, \"kernel\": %d, \"stride\": %d},\n", s->stem_out, s->stem_kernel, s->stem_stride);
    OUT("  \"stages\": [\n");
    for (int i = 0; i < s->n_stages; i++) {
        const ib_space_stage *st = &s->stages[i];
        OUT("    {\"out\": %d, \"stride\": %d, \"layers\": %d, \"op\": [", st->out, st->stride, st->layers);
        int first = 1;
        for (int op = 0; op <= IB_BLOCK_SKIP; op++)
            if (st->ops & OP_BIT(op)) OUT("%s\"%s\"", first ? "" : ", ", ib_block_op_name((ib_block_op)op)), first = 0;
        OUT("]");
        const struct { const char *key; int n; const int *iv; const float *fv; } fields[] = {
            {"kernel", st->n_kernel, st->kernel, NULL}, {"expand", st->n_expand, st->expand, NULL},
            {"groups", st->n_groups, st->groups, NULL}, {"r_in", st->n_r_in, NULL, st->r_in},
            {"r_out", st->n_r_out, NULL, st->r_out}};
        for (int j = 0; j < 5; j++) {
            if (!fields[j].n) continue;
            OUT(", \"%s\": [", fields[j].key);
            for (int x = 0; x < fields[j].n; x++) {
                if (fields[j].iv) OUT("%s%d", x ? ", " : "", fields[j].iv[x]);
                else OUT("%s%s", x ? ", " : "", fmt_float(f, sizeof f, fields[j].fv[x]));
            }
            OUT("]");
        }
        OUT("}%s\n", i + 1 < s->n_stages ? "," : "");
    }
    OUT("  ],\n  \"head\": {\"out\": %d, \"dropout\": %s}", s->head_out, fmt_float(f, sizeof f, s->dropout));
    if (ib_space_head_choices(s)) {
        OUT(",\n  \"seg_head\": {\"repeats\": [");
        for (int x = 0; x < s->n_seg_repeats; x++) OUT("%s%d", x ? ", " : "", s->seg_repeats[x]);
        OUT("], \"width\": [");
        for (int x = 0; x < s->n_seg_width; x++) OUT("%s%d", x ? ", " : "", s->seg_width[x]);
        OUT("]");
        if (s->n_seg_low) {
            OUT(", \"low_stride\": [");
            for (int x = 0; x < s->n_seg_low; x++) OUT("%s%d", x ? ", " : "", s->seg_low[x]);
            OUT("]");
        }
        OUT("}");
    }
    OUT("\n}\n");
#undef OUT
    IB_ASSERT(k < cap, "space JSON buffer too small");
    return out;
}
