// Tensors, views, the context (arena + tape), autograd replay and the parameter block.
#include "core.h"
#include "simd.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Context

ib_ctx *ib_ctx_new(void) {
    ib_ctx *ctx = calloc(1, sizeof *ctx);
    IB_ASSERT(ctx, "out of memory");
    ctx->arena = ib_arena_new(16u << 20);
    ctx->tape_cap = 1024;
    ctx->tape = malloc(sizeof(ib_node) * (size_t)ctx->tape_cap);
    IB_ASSERT(ctx->tape, "out of memory");
    ctx->recording = 1;
    ctx->training = 1;
    return ctx;
}

void ib_ctx_free(ib_ctx *ctx) {
    if (!ctx) return;
    ib_arena_free(ctx->arena);
    free(ctx->tape);
    free(ctx);
}

void ib_ctx_reset(ib_ctx *ctx) {
    ib_arena_reset(ctx->arena);
    ctx->tape_len = 0;
}

// ---------------------------------------------------------------------------------------------
// Tensors

int64_t ib_numel(const ib_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static void set_contiguous_strides(ib_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

int ib_is_contiguous(const ib_tensor *t) {
    if (t->blocks > 1) return 0;
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

int ib_same_shape(const ib_tensor *a, const ib_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *ib_shape_str(const ib_tensor *t, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %d" : "%d", t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

void ib_tensor_init(ib_tensor *t, float *data, int ndim, const int *shape) {
    IB_ASSERT(ndim >= 1 && ndim <= IB_MAX_DIMS, "ndim %d out of range", ndim);
    memset(t, 0, sizeof *t);
    t->data = data;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        IB_ASSERT(shape[i] >= 0, "negative dimension %d", shape[i]);
        t->shape[i] = shape[i];
    }
    set_contiguous_strides(t);
}

ib_tensor *ib_tensor_new(ib_ctx *ctx, int ndim, const int *shape) {
    ib_tensor *t = ib_arena_alloc(ctx->arena, sizeof *t);
    ib_tensor_init(t, NULL, ndim, shape);
    t->data = ib_arena_alloc(ctx->arena, sizeof(float) * (size_t)ib_numel(t));
    return t;
}

ib_tensor *ib_tensor_zeros(ib_ctx *ctx, int ndim, const int *shape) {
    ib_tensor *t = ib_tensor_new(ctx, ndim, shape);
    memset(t->data, 0, sizeof(float) * (size_t)ib_numel(t));
    return t;
}

ib_tensor *ib_tensor_like(ib_ctx *ctx, const ib_tensor *t) { return ib_tensor_new(ctx, t->ndim, t->shape); }

float *ib_grad(ib_ctx *ctx, ib_tensor *t) {
    if (!t->grad) {
        IB_ASSERT(!t->base, "a view's grad must alias its base's (view made before the base had one)");
        IB_ASSERT(ib_is_contiguous(t), "lazily allocated grads are contiguous");
        t->grad = ib_arena_calloc_reuse(ctx->arena, sizeof(float) * (size_t)ib_numel(t));
    }
    return t->grad;
}

// ---------------------------------------------------------------------------------------------
// Views

static ib_tensor *view_of(ib_ctx *ctx, ib_tensor *t) {
    IB_ASSERT(t->blocks <= 1, "a view of a group-block view");
    IB_ASSERT(!t->ring, "a view of a ring view");
    // The view's grad aliases the base's, so the base needs one now if gradients may flow.
    if (t->requires_grad && ctx->recording && !t->grad) ib_grad(ctx, t);
    ib_tensor *v = ib_arena_alloc(ctx->arena, sizeof *v);
    *v = *t;
    v->base = t->base ? t->base : t;
    v->name = NULL;
    return v;
}

ib_tensor *ib_view_slice(ib_ctx *ctx, ib_tensor *t, int n0, int n1, int k2, int k3) {
    IB_ASSERT(!t->centre_first, "ib_view_slice of a centre-first tensor (%s): ib_view_centre_first", t->name);
    int keep[4] = {n0, n1, k2, k3};
    ib_tensor *v = view_of(ctx, t);
    int64_t off = 0;
    for (int d = 0; d < 4 && d < t->ndim; d++) {
        int k = keep[d];
        if (k < 0 || k == t->shape[d]) continue;
        IB_ASSERT(k <= t->shape[d], "slice: dim %d keeps %d of %d", d, k, t->shape[d]);
        if (d >= 2) {
            IB_ASSERT((t->shape[d] - k) % 2 == 0, "slice: centred window %d of %d needs equal parity", k,
                      t->shape[d]);
            off += (int64_t)((t->shape[d] - k) / 2) * t->stride[d];
        }
        v->shape[d] = k;
    }
    v->data = t->data + off;
    v->grad = t->grad ? t->grad + off : NULL;
    return v;
}

ib_tensor *ib_view_range(ib_ctx *ctx, ib_tensor *t, int dim, int start, int len) {
    IB_ASSERT(dim >= 0 && dim < t->ndim, "view_range: dim %d of a rank-%d tensor", dim, t->ndim);
    IB_ASSERT(start >= 0 && len >= 0 && start + len <= t->shape[dim], "view_range: [%d, %d) of %d", start,
              start + len, t->shape[dim]);
    ib_tensor *v = view_of(ctx, t);
    int64_t off = (int64_t)start * t->stride[dim];
    v->shape[dim] = len;
    v->data = t->data + off;
    v->grad = t->grad ? t->grad + off : NULL;
    return v;
}

ib_tensor *ib_view_group_blocks(ib_ctx *ctx, ib_tensor *t, int hid, int groups, int k) {
    IB_ASSERT(!t->centre_first, "ib_view_group_blocks of a centre-first tensor (%s): ib_view_centre_first", t->name);
    IB_ASSERT(t->ndim == 4 && ib_is_contiguous(t) && groups >= 1 && hid % groups == 0 && t->shape[0] % groups == 0 &&
                  t->shape[1] % groups == 0 && hid <= t->shape[0] && k <= t->shape[2] && (t->shape[2] - k) % 2 == 0,
              "group blocks: %d groups of %d rows, kernel %d, in a (%d, %d, %d, %d) tensor", groups, hid, k, t->shape[0],
              t->shape[1], t->shape[2], t->shape[3]);
    ib_tensor *v = view_of(ctx, t);
    int64_t off = (int64_t)((t->shape[2] - k) / 2) * (t->stride[2] + t->stride[3]);
    v->shape[0] = hid, v->shape[1] = t->shape[1] / groups, v->shape[2] = v->shape[3] = k;
    v->blocks = groups;
    v->block_stride = (int64_t)(t->shape[0] / groups) * t->stride[0] + (int64_t)(t->shape[1] / groups) * t->stride[1];
    v->data = t->data + off;
    v->grad = t->grad ? t->grad + off : NULL;
    return v;
}

// Centre-first 5x5 kernels (core.h): the ring order of the plain taps, and back.
const signed char ib__ring_tap[25] = {9,  10, 11, 12, 13, 14, 0,  1,  2,  15, 16, 3, 4,
                                      5,  17, 18, 6,  7,  8,  19, 20, 21, 22, 23, 24};
const signed char ib__ring_plain[25] = {6, 7, 8,  11, 12, 13, 16, 17, 18, 0,  1,  2, 3,
                                        4, 5, 9,  10, 14, 15, 19, 20, 21, 22, 23, 24};

ib_tensor *ib_view_centre_first(ib_ctx *ctx, ib_tensor *t, int n0, int n1, int k, int groups) {
    IB_ASSERT(t->centre_first && t->ndim == 4 && t->shape[2] == 5 && t->shape[3] == 5 && ib_is_contiguous(t) &&
                  (k == 3 || k == 5) && groups >= 1 && t->shape[0] % groups == 0 && t->shape[1] % groups == 0 &&
                  n0 % groups == 0 && n0 / groups <= t->shape[0] / groups && n1 <= t->shape[1] / groups && n1 >= 1,
              "centre-first view: %d rows, %d inputs a group, kernel %d, %d groups of a (%d, %d, %d, %d) tensor %s",
              n0, n1, k, groups, t->shape[0], t->shape[1], t->shape[2], t->shape[3], t->name);
    IB_ASSERT(groups == 1 || n1 == t->shape[1] / groups, "centre-first view: a group's inputs are whole (%d of %d)", n1,
              t->shape[1] / groups);
    ib_tensor *v = view_of(ctx, t);
    int I = t->shape[1];
    v->centre_first = 0;
    v->shape[0] = n0, v->shape[1] = n1, v->shape[2] = v->shape[3] = k;
    v->stride[1] = 9, v->stride[2] = 3, v->stride[3] = 1;
    if (k == 5) v->ring = (int64_t)I * 9;
    if (groups > 1) {
        v->blocks = groups;
        v->block_stride = (int64_t)(t->shape[0] / groups) * t->stride[0] + (int64_t)(I / groups) * 9;
        v->ring_block_stride = (int64_t)(t->shape[0] / groups) * t->stride[0] + (int64_t)(I / groups) * 16;
    }
    return v;
}

// A ring view's two parts as ordinary views: its centre taps (O, I, 3, 3) and its outer taps (O, I, 4, 4).
static void ring_parts(const ib_tensor *v, ib_tensor *centre, ib_tensor *outer) {
    *centre = *v;
    centre->ring = 0;
    centre->shape[2] = centre->shape[3] = 3;
    *outer = *centre;
    outer->shape[2] = outer->shape[3] = 4;
    outer->stride[1] = 16, outer->stride[2] = 4, outer->stride[3] = 1;
    outer->data = v->data + v->ring;
    outer->grad = v->grad ? v->grad + v->ring : NULL;
    outer->block_stride = v->ring_block_stride;
}

// A ring view's elements, plain order (o, c, kh, kw), to or from contiguous memory (add: accumulate); rows (o)
// split over the pool. A path's 5x5 weight is copied so for each forward (ib_conv2d).
typedef struct {
    const ib_tensor *v;
    float *viewmem, *contig;
    int to_contig, add;
} ring_job;

static void ring_rows(void *p, int64_t lo, int64_t hi, int worker) {
    (void)worker;
    const ring_job *j = p;
    const ib_tensor *v = j->v;
    int I = v->shape[1], run = v->blocks > 1 ? v->shape[0] / v->blocks : v->shape[0];
    for (int64_t o = lo; o < hi; o++) {
        float *c0 = j->viewmem + o / run * v->block_stride + o % run * v->stride[0];
        float *r0 = j->viewmem + v->ring + o / run * v->ring_block_stride + o % run * v->stride[0];
        for (int c = 0; c < I; c++, c0 += 9, r0 += 16) {
            float *q = j->contig + (o * I + c) * 25;
            for (int t = 0; t < 25; t++) {
                int rt = ib__ring_tap[t];
                float *e = rt < 9 ? c0 + rt : r0 + (rt - 9);
                if (j->to_contig) q[t] = *e;
                else if (j->add) *e += q[t];
                else *e = q[t];
            }
        }
    }
}

static void ring_copy(const ib_tensor *v, float *viewmem, float *contig, int to_contig, int add) {
    ring_job j = {v, viewmem, contig, to_contig, add};
    ib_parallel_range(v->shape[0], ib_grain(32768, (int64_t)v->shape[1] * 25), ring_rows, &j);
}

void ib_centre_first_permute(float *data, int64_t n, int cin, int to_centre_first) {
    float *tmp = malloc(sizeof(float) * 25 * (size_t)cin);
    IB_ASSERT(tmp, "out of memory permuting a kernel");
    for (int64_t o = 0; o < n; o++) {
        float *row = data + o * 25 * cin;
        memcpy(tmp, row, sizeof(float) * 25 * (size_t)cin);
        for (int c = 0; c < cin; c++)
            for (int t = 0; t < 25; t++) {
                int rt = ib__ring_tap[t];
                int64_t f = rt < 9 ? c * 9 + rt : (int64_t)cin * 9 + c * 16 + (rt - 9);
                if (to_centre_first) row[f] = tmp[c * 25 + t];
                else row[c * 25 + t] = tmp[f];
            }
    }
    free(tmp);
}

ib_tensor *ib_reshape(ib_ctx *ctx, ib_tensor *t, int ndim, const int *shape) {
    IB_ASSERT(ib_is_contiguous(t), "reshape needs a contiguous tensor");
    ib_tensor *v = view_of(ctx, t);
    float *data = v->data, *grad = v->grad;
    ib_tensor_init(v, data, ndim, shape);
    IB_ASSERT(ib_numel(v) == ib_numel(t), "reshape: numel %lld != %lld", (long long)ib_numel(v),
              (long long)ib_numel(t));
    v->grad = grad;
    v->requires_grad = t->requires_grad;
    v->base = t->base ? t->base : t;
    return v;
}

// A (possibly strided, or group-block) view of up to 4 dims as four loops: the dims of size above 1, right-aligned
// in s/st (a group-block view's dim 0 in slot 0, split into its blocks of *run rows), each dim that lies end to end
// with the one inside it merged into it, so a 1x1 conv's slice gives whole rows and a slice of whole rows one run.
// Row (a, b, c) starts at view_row(view, s, st, run, a, b, c) from view->data; its s[3] elements are st[3] apart.
static void view_dims(const ib_tensor *view, int s[4], int64_t st[4], int64_t *run) {
    int gb = view->blocks > 1;
    for (int i = 0; i < 4; i++) s[i] = 1, st[i] = 0;
    for (int i = view->ndim - 1, o = 3; i >= gb; i--)
        if (view->shape[i] != 1) s[o] = view->shape[i], st[o] = view->stride[i], o--;
    if (gb) s[0] = view->shape[0], st[0] = view->stride[0];
    for (int j = 3; j > gb; j--)
        if (s[j - 1] > 1 && st[j - 1] == (int64_t)s[j] * st[j]) {
            s[j] *= s[j - 1];
            for (int i = j - 1; i > gb; i--) s[i] = s[i - 1], st[i] = st[i - 1];
            s[gb] = 1, st[gb] = 0;
            j++;   // the merged dim may merge again with the one now outside it
        }
    *run = gb ? s[0] / view->blocks : s[0];
}

// Calls ROW(off, k) for each row of a view (after view_dims): off its first element's offset from view->data, k the
// index of that element in the view's row-major order; the offsets summed loop by loop (no division per row).
#define VIEW_ROWS(view, s, st, run, ROW)                                                             \
    do {                                                                                             \
        int64_t k_ = 0;                                                                              \
        for (int a_ = 0; a_ < s[0]; a_++) {                                                          \
            int64_t oa_ = a_ / run * (view)->block_stride + a_ % run * st[0];                        \
            for (int b_ = 0; b_ < s[1]; b_++)                                                        \
                for (int c_ = 0; c_ < s[2]; c_++, k_ += s[3]) ROW(oa_ + b_ * st[1] + c_ * st[2], k_); \
        }                                                                                            \
    } while (0)

// Strided copy between a view and contiguous memory; add = accumulate. The view's planes (its rows of one
// (a, b), s[2] rows each, view_dims) are split over the pool when there are many: a kernel centre's copy
// (rows of 3 or 5 floats) runs in a supernet path's every step, and on one thread it left the other idle.
// Planes hold disjoint elements, so the result does not depend on the split.
typedef struct {
    const ib_tensor *view;
    float *viewmem, *contig;
    int to_contig, add;
    int s[4];
    int64_t st[4], run;
} copy_job;

static void copy_planes(void *p, int64_t lo, int64_t hi, int worker) {
    (void)worker;
    const copy_job *j = p;
    const int *s = j->s;
    const int64_t *st = j->st;
    const int n = s[3];
    const int64_t e = st[3];
    for (int64_t i = lo; i < hi; i++) {
        int a = (int)(i / s[1]), b = (int)(i % s[1]);
        int64_t off = a / j->run * j->view->block_stride + a % j->run * st[0] + b * st[1], k = i * s[2] * n;
        for (int c = 0; c < s[2]; c++, off += st[2], k += n) {
            float *p_ = j->viewmem + off, *q_ = j->contig + k;
            if (j->to_contig) {
                if (e == 1 && n >= 16) memcpy(q_, p_, sizeof(float) * (size_t)n);
                else
                    for (int d = 0; d < n; d++) q_[d] = p_[d * e];
            } else if (j->add)
                for (int d = 0; d < n; d++) p_[d * e] += q_[d];
            else
                for (int d = 0; d < n; d++) p_[d * e] = q_[d];
        }
    }
}

static void strided_copy(const ib_tensor *view, float *viewmem, float *contig, int to_contig, int add) {
    if (view->ring) {
        ring_copy(view, viewmem, contig, to_contig, add);
        return;
    }
    copy_job j = {view, viewmem, contig, to_contig, add, {0}, {0}, 0};
    view_dims(view, j.s, j.st, &j.run);
    ib_parallel_range((int64_t)j.s[0] * j.s[1], ib_grain(32768, (int64_t)j.s[2] * j.s[3]), copy_planes, &j);
}

// ib_view_mark (count 0: set each byte of t's elements to 1) and ib_view_count (count 1: add 1, up to 255).
static void view_bytes(const ib_tensor *t, const float *origin, uint8_t *bytes, int count) {
    if (t->ring) {
        ib_tensor centre, outer;
        ring_parts(t, &centre, &outer);
        view_bytes(&centre, origin, bytes, count);
        view_bytes(&outer, origin, bytes, count);
        return;
    }
    IB_ASSERT(t->data >= origin, "ib_view_%s: %s lies before the origin", count ? "count" : "mark",
              t->name ? t->name : "a view");
    int s[4];
    int64_t st[4], run;
    view_dims(t, s, st, &run);
    uint8_t *b0 = bytes + (t->data - origin);
    const int n = s[3];
    const int64_t e = st[3];
#define ROW_BYTES(off, k)                                        \
    do {                                                         \
        uint8_t *p_ = b0 + (off);                                \
        if (count)                                               \
            for (int d_ = 0; d_ < n; d_++) p_[d_ * e] += p_[d_ * e] < 255; \
        else if (e == 1 && n >= 16) memset(p_, 1, (size_t)n);    \
        else                                                     \
            for (int d_ = 0; d_ < n; d_++) p_[d_ * e] = 1;       \
    } while (0)
    VIEW_ROWS(t, s, st, run, ROW_BYTES);
#undef ROW_BYTES
}

void ib_view_mark(const ib_tensor *t, const float *origin, uint8_t *mask) { view_bytes(t, origin, mask, 0); }
void ib_view_count(const ib_tensor *t, const float *origin, uint8_t *count) { view_bytes(t, origin, count, 1); }

int64_t ib_mask_next(const uint8_t *mask, int64_t i, int64_t n, int set) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t none = set ? 0 : 0x0101010101010101ull;   // eight bytes none of which is sought (bytes are 0 or 1)
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, mask + i, 8);
        if (w != none) return i + __builtin_ctzll(w ^ none) / 8;   // the first byte that differs
    }
#endif
    for (; i < n; i++)
        if (!mask[i] == !set) return i;
    return n;
}

void ib_tensor_read(const ib_tensor *t, float *dst) { strided_copy(t, t->data, dst, 1, 0); }

void ib__view_grad_add(const ib_tensor *view, const float *src) {
    IB_ASSERT(view->grad, "view has no grad to add into");
    strided_copy(view, view->grad, (float *)src, 0, 1);
}

static void contiguous_backward(ib_ctx *ctx, ib_node *n) {
    (void)ctx;
    ib_tensor *x = n->in[0];
    ib__view_grad_add(x, n->out->grad);
}
static const ib_op op_contiguous = {"contiguous", contiguous_backward};

ib_tensor *ib_contiguous(ib_ctx *ctx, ib_tensor *t) {
    if (ib_is_contiguous(t)) return t;
    ib_tensor *y = ib_tensor_new(ctx, t->ndim, t->shape);
    strided_copy(t, t->data, y->data, 1, 0);
    ib_record(ctx, &op_contiguous, y, 1, &t);
    return y;
}

// ---------------------------------------------------------------------------------------------
// Autograd

void (*ib_prof_hook)(const ib_prof_event *e);
static int prof_scope = -1;

void ib_prof_scope(int scope) {
    if (ib_prof_hook && scope != prof_scope) {
        ib_prof_event e = {NULL, NULL, NULL, 0, 0, -1, prof_scope};
        ib_prof_hook(&e);
    }
    prof_scope = scope;
}

static void prof_op(const ib_op *op, ib_tensor *out, int n_in, ib_tensor *const *in, int backward, int tape_index) {
    ib_prof_event e = {op, out, in, n_in, backward, tape_index, prof_scope};
    ib_prof_hook(&e);
}

static ib_node *record(ib_ctx *ctx, const ib_op *op, ib_tensor *out, int n_in, ib_tensor *const *in) {
    if (!ctx->recording) return NULL;
    int any = 0;
    for (int i = 0; i < n_in; i++) any |= in[i] && in[i]->requires_grad;
    if (!any) return NULL;
    if (ctx->tape_len == ctx->tape_cap) {
        ctx->tape_cap *= 2;
        ib_node *t = realloc(ctx->tape, sizeof(ib_node) * (size_t)ctx->tape_cap);
        IB_ASSERT(t, "out of memory growing the tape");
        ctx->tape = t;
    }
    ib_node *n = &ctx->tape[ctx->tape_len++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->out = out;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    out->requires_grad = 1;
    return n;
}

ib_node *ib_record(ib_ctx *ctx, const ib_op *op, ib_tensor *out, int n_in, ib_tensor *const *in) {
    IB_ASSERT(n_in <= IB_MAX_INPUTS, "op %s: %d inputs", op->name, n_in);
    ib_node *n = record(ctx, op, out, n_in, in);
    if (ib_prof_hook) prof_op(op, out, n_in, in, 0, n ? (int)(n - ctx->tape) : -1);
    return n;
}

void ib_backward(ib_ctx *ctx, ib_tensor *out, const float *seed) {
    int64_t n = ib_numel(out);
    float *g = ib_grad(ctx, out);
    for (int64_t i = 0; i < n; i++) g[i] += seed ? seed[i] : 1.0f;
    int saved_recording = ctx->recording;
    ctx->recording = 0;   // backward functions use ops' kernels, never the tape
    for (int i = ctx->tape_len - 1; i >= 0; i--) {
        ib_node *node = &ctx->tape[i];
        if (!node->out->grad) continue;
        if (ctx->release_grads) ib_arena_scope_begin(ctx->arena);   // its scratch goes back after it
        node->op->backward(ctx, node);
        if (ib_prof_hook) prof_op(node->op, node->out, node->n_in, node->in, 1, i);
        if (!ctx->release_grads) continue;
        ib_arena_scope_end(ctx->arena);
        // Every consumer of this output was taped after it and has run: its grad is dead. Leave the
        // seed's alone (the caller may read it) and views (their grad is their base's).
        if (node->out != out && !node->out->base) {
            ib_arena_give_back(ctx->arena, node->out->grad, sizeof(float) * (size_t)ib_numel(node->out));
            node->out->grad = NULL;
        }
    }
    ctx->recording = saved_recording;
}

// ---------------------------------------------------------------------------------------------
// Sum (for tests and custom losses)

static void sum_backward(ib_ctx *ctx, ib_node *n) {
    ib_tensor *x = n->in[0];
    float g = n->out->grad[0];
    float *gx = ib_grad(ctx, x);
    int64_t m = ib_numel(x);
    for (int64_t i = 0; i < m; i++) gx[i] += g;
}
static const ib_op op_sum = {"sum", sum_backward};

ib_tensor *ib_sum(ib_ctx *ctx, ib_tensor *x) {
    IB_ASSERT(ib_is_contiguous(x), "sum: contiguous input");
    ib_tensor *y = ib_tensor_new(ctx, 1, (int[]){1});
    double s = 0;
    int64_t m = ib_numel(x);
    for (int64_t i = 0; i < m; i++) s += x->data[i];
    y->data[0] = (float)s;
    ib_record(ctx, &op_sum, y, 1, &x);
    return y;
}

// ---------------------------------------------------------------------------------------------
// Parameters

void ib_params_init(ib_params *ps) { memset(ps, 0, sizeof *ps); }

void ib_params_free(ib_params *ps) {
    for (int i = 0; i < ps->n; i++) {
        free((char *)ps->t[i]->name);
        free(ps->t[i]);
    }
    free(ps->t);
    free(ps->is_buffer);
    free(ps->no_decay);
    free(ps->data);
    free(ps->grad);
    free(ps->buf);
    memset(ps, 0, sizeof *ps);
}

static ib_tensor *params_register(ib_params *ps, const char *name, int ndim, const int *shape, int buffer,
                                  int no_decay) {
    IB_ASSERT(!ps->data && !ps->buf, "register every parameter before ib_params_alloc (%s)", name);
    IB_ASSERT(!ib_params_find(ps, name), "parameter %s registered twice", name);
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 64;
        ps->t = realloc(ps->t, sizeof *ps->t * (size_t)ps->cap);
        ps->is_buffer = realloc(ps->is_buffer, sizeof(int) * (size_t)ps->cap);
        ps->no_decay = realloc(ps->no_decay, sizeof(int) * (size_t)ps->cap);
        IB_ASSERT(ps->t && ps->is_buffer && ps->no_decay, "out of memory");
    }
    ib_tensor *t = malloc(sizeof *t);
    IB_ASSERT(t, "out of memory");
    ib_tensor_init(t, NULL, ndim, shape);
    t->name = strdup(name);
    t->requires_grad = !buffer;
    ps->t[ps->n] = t;
    ps->is_buffer[ps->n] = buffer;
    ps->no_decay[ps->n] = no_decay;
    ps->n++;
    if (buffer) ps->numel_buffers += ib_numel(t);
    else ps->numel_params += ib_numel(t);
    return t;
}

ib_tensor *ib_params_add(ib_params *ps, const char *name, int ndim, const int *shape, int no_decay) {
    return params_register(ps, name, ndim, shape, 0, no_decay);
}

ib_tensor *ib_params_add_buffer(ib_params *ps, const char *name, int ndim, const int *shape) {
    return params_register(ps, name, ndim, shape, 1, 1);
}

ib_status ib_params_alloc(ib_params *ps) {
    size_t np = (size_t)(ps->numel_params ? ps->numel_params : 1);
    size_t nb = (size_t)(ps->numel_buffers ? ps->numel_buffers : 1);
    ps->data = calloc(np, sizeof(float));
    ps->grad = calloc(np + IB_GRAD_SPARE, sizeof(float));
    ps->buf = calloc(nb, sizeof(float));
    if (!ps->data || !ps->grad || !ps->buf)
        return ib_fail(IB_ERR_NOMEM, "out of memory allocating %lld parameters", (long long)np);
    int64_t po = 0, bo = 0;
    for (int i = 0; i < ps->n; i++) {
        ib_tensor *t = ps->t[i];
        if (ps->is_buffer[i]) {
            t->data = ps->buf + bo;
            bo += ib_numel(t);
        } else {
            t->data = ps->data + po;
            t->grad = ps->grad + po;
            po += ib_numel(t);
        }
    }
    return IB_OK;
}

void ib_params_zero_grad(ib_params *ps) {
    if (ps->grad) memset(ps->grad, 0, sizeof(float) * (size_t)ps->numel_params);
}


ib_tensor *ib_params_find(const ib_params *ps, const char *name) {
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->t[i]->name, name) == 0) return ps->t[i];
    return NULL;
}

int ib_params_copy_matching(ib_params *dst, const ib_params *src) {
    int n = 0;
    for (int i = 0; i < dst->n; i++) {
        ib_tensor *t = dst->t[i], *u = ib_params_find(src, t->name);
        if (!u || !ib_same_shape(t, u)) continue;
        memcpy(t->data, u->data, sizeof(float) * (size_t)ib_numel(t));
        n++;
    }
    return n;
}
