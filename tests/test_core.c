// Core machinery: arena, tensors, views and their gradients, the tape, parameters, RNG, HDF5 I/O, the
// thread pool.
#include "tests/test.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST(arena_merges_chunks_and_aligns) {
    ib_arena *a = ib_arena_new(0);
    char *p = ib_arena_alloc(a, 3);
    CHECK(((uintptr_t)p & 63) == 0, "not 64-byte aligned");
    for (int i = 0; i < 10; i++) ib_arena_alloc(a, 1u << 20);   // outgrows the first chunk
    size_t used = ib_arena_used(a);
    CHECK(used >= (10u << 20), "used %zu", used);
    ib_arena_reset(a);
    CHECK(ib_arena_used(a) == 0, "reset");
    // After the merge, the same step fits in one chunk: the blocks follow each other in one piece of
    // memory, and the peak stays the size of one step.
    char *first = ib_arena_alloc(a, 3);
    for (int i = 0; i < 10; i++) {
        char *q = ib_arena_alloc(a, 1u << 20);
        CHECK(q == first + 64 + ((size_t)i << 20), "block %d is not in the merged chunk", i);
    }
    CHECK(ib_arena_used(a) == used, "the same step used %zu, first %zu", ib_arena_used(a), used);
    CHECK(ib_arena_peak(a) == used, "peak %zu after two equal steps of %zu", ib_arena_peak(a), used);
    ib_arena_free(a);
}

TEST(rng_is_deterministic_and_uniform) {
    ib_rng a, b;
    ib_rng_seed(&a, 42, 0);
    ib_rng_seed(&b, 42, 0);
    for (int i = 0; i < 100; i++) CHECK(ib_rng_u32(&a) == ib_rng_u32(&b), "streams differ at %d", i);
    ib_rng_seed(&b, 43, 0);
    int same = 0;
    for (int i = 0; i < 100; i++) same += ib_rng_u32(&a) == ib_rng_u32(&b);
    CHECK(same < 3, "different seeds gave %d equal draws", same);
    // Mean and variance of the normal generator over 100k draws.
    double s = 0, s2 = 0;
    for (int i = 0; i < 100000; i++) {
        double x = ib_rng_normal(&a);
        s += x;
        s2 += x * x;
    }
    CHECK(fabs(s / 1e5) < 0.02 && fabs(s2 / 1e5 - 1) < 0.02, "normal mean %g var %g", s / 1e5, s2 / 1e5);
    // Bounded draws hit every value.
    int seen[7] = {0};
    for (int i = 0; i < 700; i++) seen[ib_rng_below(&a, 7)]++;
    for (int k = 0; k < 7; k++) CHECK(seen[k] > 60, "value %d drawn %d times in 700", k, seen[k]);
    // Reference values pin the generator (PCG32 with seed 42, stream 54 as in pcg32-demo).
    ib_rng_seed(&a, 42, 54);
    CHECK(ib_rng_u32(&a) == 0xa15c02b7u, "pcg32 reference value");
    CHECK(ib_rng_u32(&a) == 0x7b47f409u, "pcg32 reference value 2");
}

TEST(views_alias_data_and_grad) {
    ib_ctx *ctx = ib_ctx_new();
    ib_params ps;
    ib_params_init(&ps);
    ib_tensor *w = ib_params_add(&ps, "w", 4, (int[]){6, 5, 7, 7}, 0);
    CHECK(ib_params_alloc(&ps) == IB_OK, "alloc");
    for (int64_t i = 0; i < ib_numel(w); i++) w->data[i] = (float)i;
    // First 4 output channels, first 3 input channels, centre 3x3 of the 7x7 kernel.
    ib_tensor *v = ib_view_slice(ctx, w, 4, 3, 3, 3);
    CHECK(v->shape[0] == 4 && v->shape[1] == 3 && v->shape[2] == 3 && v->shape[3] == 3, "shape");
    CHECK(!ib_is_contiguous(v), "a slice is strided");
    ib_tensor *c = ib_contiguous(ctx, v);
    // c[o,i,y,x] == w[o,i,y+2,x+2]
    for (int o = 0; o < 4; o++)
        for (int i = 0; i < 3; i++)
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 3; x++) {
                    float want = (float)(((o * 5 + i) * 7 + y + 2) * 7 + x + 2);
                    CHECK(c->data[((o * 3 + i) * 3 + y) * 3 + x] == want, "slice value at %d %d %d %d", o, i, y, x);
                }
    // Gradient flows back into exactly the slice of the larger tensor.
    ib_tensor *loss = ib_sum(ctx, c);
    ib_backward(ctx, loss, NULL);
    int64_t ones = 0;
    for (int o = 0; o < 6; o++)
        for (int i = 0; i < 5; i++)
            for (int y = 0; y < 7; y++)
                for (int x = 0; x < 7; x++) {
                    float g = w->grad[((o * 5 + i) * 7 + y) * 7 + x];
                    int inside = o < 4 && i < 3 && y >= 2 && y < 5 && x >= 2 && x < 5;
                    CHECK(g == (inside ? 1.0f : 0.0f), "grad at %d %d %d %d is %g", o, i, y, x, g);
                    ones += inside;
                }
    CHECK(ones == 4 * 3 * 9, "count");
    // A range view (a group's channels) and a reshape share memory too.
    ib_tensor *r = ib_view_range(ctx, w, 0, 2, 3);
    CHECK(r->data == w->data + 2 * 5 * 49 && r->shape[0] == 3, "range view");
    ib_tensor *flat = ib_reshape(ctx, w, 2, (int[]){6, 5 * 49});
    CHECK(flat->data == w->data && flat->grad == w->grad, "reshape aliases");
    ib_params_free(&ps);
    ib_ctx_free(ctx);
}

// ib_view_mark marks exactly the elements a view holds, and ib_tensor_read reads them in order, by the
// definition of its shape and strides, for every kind of view the supernet makes, including 1x1 slices whose
// rows merge; ib_mask_next finds runs as a byte-by-byte scan does, from every start, across the 8-byte steps.
TEST(view_mark_and_mask_runs) {
    ib_ctx *ctx = ib_ctx_new();
    ib_params ps;
    ib_params_init(&ps);
    ib_tensor *w = ib_params_add(&ps, "w", 4, (int[]){8, 6, 5, 5}, 0);
    ib_tensor *p = ib_params_add(&ps, "p", 4, (int[]){8, 12, 1, 1}, 0);
    // large enough that ib_tensor_read splits its centre's planes over the pool
    ib_tensor *big = ib_params_add(&ps, "big", 4, (int[]){128, 96, 5, 5}, 0);
    CHECK(ib_params_alloc(&ps) == IB_OK, "alloc");
    int64_t N = ps.numel_params;
    for (int64_t i = 0; i < N; i++) ps.data[i] = (float)i;
    ib_tensor *views[] = {ib_view_slice(ctx, w, 5, 4, 3, 3),      ib_view_slice(ctx, w, 8, 6, 3, 3),
                          ib_view_slice(ctx, w, 3, -1, -1, -1),    ib_view_group_blocks(ctx, w, 6, 2, 5),
                          ib_view_group_blocks(ctx, w, 4, 2, 3),   ib_view_slice(ctx, p, 5, 7, 1, 1),
                          ib_view_slice(ctx, p, 8, 12, 1, 1),      ib_view_range(ctx, p, 0, 2, 3),
                          ib_view_slice(ctx, big, 120, 90, 3, 3)};
    uint8_t *m = malloc((size_t)N), *want = malloc((size_t)N);
    float *vals = malloc(sizeof(float) * (size_t)N);
    for (size_t v = 0; v < sizeof views / sizeof *views; v++) {
        memset(m, 0, (size_t)N), memset(want, 0, (size_t)N);
        const ib_tensor *t = views[v];
        ib_view_mark(t, ps.data, m);
        ib_tensor_read(t, vals);
        // By the definition of the view's shape and strides (core.h), element by element.
        int64_t k = 0, run = t->blocks > 1 ? t->shape[0] / t->blocks : t->shape[0], bad = 0;
        for (int a = 0; a < t->shape[0]; a++)
            for (int b = 0; b < t->shape[1]; b++)
                for (int c = 0; c < t->shape[2]; c++)
                    for (int d = 0; d < t->shape[3]; d++, k++) {
                        int64_t off = (t->data - ps.data) + a / run * t->block_stride + a % run * t->stride[0] +
                                      b * t->stride[1] + c * t->stride[2] + d * t->stride[3];
                        want[off] = 1;
                        bad += vals[k] != (float)off;   // ib_tensor_read's order and values
                    }
        CHECK(bad == 0, "view %zu: ib_tensor_read gives %lld wrong values", v, (long long)bad);
        for (int64_t i = 0; i < N; i++) bad += m[i] != want[i];
        CHECK(bad == 0, "view %zu: %lld elements marked wrongly", v, (long long)bad);
        ib_view_count(t, ps.data, m), ib_view_count(t, ps.data, m);   // counts: each element of the view twice more
        for (int64_t i = 0; i < N; i++) bad += m[i] != 3 * want[i];
        CHECK(bad == 0, "view %zu: %lld elements counted wrongly", v, (long long)bad);
    }
    ib_rng r;
    ib_rng_seed(&r, 3, 0);
    for (int trial = 0; trial < 40; trial++) {
        int n = 1 + (int)ib_rng_below(&r, 70), dense = (int)ib_rng_below(&r, 4);
        for (int i = 0; i < n; i++) m[i] = ib_rng_below(&r, 4) < (uint32_t)dense;
        for (int i = 0; i <= n; i++)
            for (int set = 0; set < 2; set++) {
                int64_t j = i;
                while (j < n && !m[j] != !set) j++;
                CHECK(ib_mask_next(m, i, n, set) == j, "n %d from %d, set %d: %lld, want %lld", n, i, set,
                      (long long)ib_mask_next(m, i, n, set), (long long)j);
            }
    }
    free(m), free(want), free(vals);
    ib_params_free(&ps);
    ib_ctx_free(ctx);
}

TEST(backward_accumulates_and_skips_unreached) {
    ib_ctx *ctx = ib_ctx_new();
    float xd[5] = {0, 1, 2, 3, 4}, xg[5] = {0};
    ib_tensor x;
    ib_tensor_init(&x, xd, 1, (int[]){5});
    x.grad = xg;
    x.requires_grad = 1;
    ib_tensor *a = ib_sum(ctx, &x);
    ib_tensor *b = ib_sum(ctx, &x);   // taped, but the loss does not reach it
    CHECK(ctx->tape_len == 2, "two nodes taped, got %d", ctx->tape_len);
    ib_backward(ctx, a, NULL);
    for (int i = 0; i < 5; i++) CHECK(xg[i] == 1.0f, "only the reached node adds: %g", xg[i]);
    CHECK(b->grad == NULL, "unreached output got a grad");
    // A new step adds into the same grad (grads accumulate until zeroed).
    ib_ctx_reset(ctx);
    ib_tensor *c = ib_sum(ctx, &x);
    ib_backward(ctx, c, (float[]){2.0f});
    for (int i = 0; i < 5; i++) CHECK(xg[i] == 3.0f, "accumulated: %g", xg[i]);
    // With recording off nothing is taped and the output does not require grad.
    ctx->recording = 0;
    int len = ctx->tape_len;
    ib_tensor *d = ib_sum(ctx, &x);
    CHECK(ctx->tape_len == len && !d->requires_grad, "no-grad mode recorded a node");
    ib_ctx_free(ctx);
}

TEST(params_one_block) {
    ib_params ps;
    ib_params_init(&ps);
    ib_tensor *a = ib_params_add(&ps, "a.weight", 2, (int[]){3, 4}, 0);
    ib_tensor *m = ib_params_add_buffer(&ps, "bn.running_mean", 1, (int[]){4});
    ib_tensor *b = ib_params_add(&ps, "a.bias", 1, (int[]){3}, 1);
    CHECK(ib_params_alloc(&ps) == IB_OK, "alloc");
    CHECK(ps.numel_params == 15 && ps.numel_buffers == 4, "counts %lld %lld", (long long)ps.numel_params,
          (long long)ps.numel_buffers);
    CHECK(a->data == ps.data && b->data == ps.data + 12 && b->grad == ps.grad + 12, "contiguous block");
    CHECK(m->data == ps.buf && m->grad == NULL && !m->requires_grad, "buffer block");
    CHECK(ib_params_find(&ps, "a.bias") == b && !ib_params_find(&ps, "zzz"), "find");
    ib_params_free(&ps);
}

TEST(h5_roundtrip_and_errors) {
    char path[512];
    snprintf(path, sizeof path, "%s/h5_XXXXXX", test_tmpdir());
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *t = ib_tensor_new(ctx, 3, (int[]){2, 3, 4});
    fill_normal(t, 1, 1);
    ib_h5 *f;
    CHECK(ib_h5_create(&f, path) == IB_OK, "create: %s", ib_errmsg());
    CHECK(ib_h5_write(f, "params/layer.0.weight", t) == IB_OK, "write: %s", ib_errmsg());
    int32_t labels[3] = {7, -1, 3};
    CHECK(ib_h5_write_i32(f, "labels", labels, 1, (int[]){3}) == IB_OK, "write i32");
    CHECK(ib_h5_set_attr_str(f, "/", "format", "ibnas-test") == IB_OK, "attr");
    CHECK(ib_h5_set_attr_i64(f, "/", "version", 3) == IB_OK, "attr");
    CHECK(ib_h5_close(f) == IB_OK, "close: %s", ib_errmsg());

    CHECK(ib_h5_open(&f, path) == IB_OK, "open: %s", ib_errmsg());
    ib_tensor *u;
    CHECK(ib_h5_read(f, "params/layer.0.weight", ctx, &u) == IB_OK, "read: %s", ib_errmsg());
    CHECK(ib_same_shape(t, u) && memcmp(t->data, u->data, sizeof(float) * 24) == 0, "round trip exact");
    int32_t back[3];
    CHECK(ib_h5_read_i32(f, "labels", back, 3) == IB_OK && back[1] == -1 && back[2] == 3, "i32 round trip");
    char *s;
    int64_t v;
    CHECK(ib_h5_attr_str(f, "/", "format", &s) == IB_OK && !strcmp(s, "ibnas-test"), "str attr");
    free(s);
    CHECK(ib_h5_attr_i64(f, "/", "version", &v) == IB_OK && v == 3, "int attr");
    // Errors name the file and the dataset.
    ib_tensor *wrong = ib_tensor_new(ctx, 2, (int[]){6, 4});
    CHECK(ib_h5_read_into(f, "params/layer.0.weight", wrong) == IB_ERR_FORMAT, "shape mismatch detected");
    CHECK(strstr(ib_errmsg(), path) && strstr(ib_errmsg(), "layer.0.weight") && strstr(ib_errmsg(), "[6, 4]"),
          "message: %s", ib_errmsg());
    CHECK(ib_h5_read(f, "params/missing", ctx, &u) == IB_ERR_NOTFOUND, "missing dataset");
    CHECK(strstr(ib_errmsg(), "params/missing"), "message: %s", ib_errmsg());
    CHECK(ib_h5_attr_str(f, "/", "nope", &s) == IB_ERR_NOTFOUND, "missing attr");
    ib_h5_close(f);
    unlink(path);
    // A missing file and a non-HDF5 file.
    CHECK(ib_h5_open(&f, "/nonexistent/x.h5") == IB_ERR_IO && strstr(ib_errmsg(), "/nonexistent/x.h5"), "missing file");
    CHECK(ib_h5_open(&f, "/etc/hostname") == IB_ERR_FORMAT, "not hdf5");
    ib_ctx_free(ctx);
}

TEST(h5_create_is_atomic) {
    // An aborted write leaves neither the final file nor the temporary one.
    char path[512];
    snprintf(path, sizeof path, "%s/atomic.h5", test_tmpdir());
    ib_h5 *f;
    CHECK(ib_h5_create(&f, path) == IB_OK, "create");
    CHECK(access(path, F_OK) != 0, "final name must not exist while writing");
    ib_h5_abort(f);
    CHECK(access(path, F_OK) != 0, "aborted file must not appear");
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0, "temporary file removed");
}

// The pool (core/threads.c): every item of every loop runs exactly once, on a worker index below
// ib_pool_threads(), whatever the thread count; a loop inside an item and loops from two threads at
// once (one of them then runs alone) complete too.
typedef struct {
    int *hits;   // per item
    int inner;   // items of a nested loop per item (0: none)
    int *inner_hits;
    int bad_worker;
} pool_probe;

static void probe_inner(void *p, int64_t i, int worker) {
    int *h = p;
    h[i]++;
}

static void probe_item(void *p, int64_t i, int worker) {
    pool_probe *q = p;
    q->hits[i]++;
    if (worker < 0 || worker >= ib_pool_threads()) q->bad_worker = 1;
    if (q->inner) ib_parallel_for(q->inner, probe_inner, q->inner_hits + i * q->inner);
}

static int probe_loops(int loops, int seed) {
    ib_rng r;
    ib_rng_seed(&r, (uint64_t)seed, 7);
    for (int l = 0; l < loops; l++) {
        int n = 1 + (int)ib_rng_below(&r, 3000), inner = l % 7 == 0 ? 5 : 0;
        pool_probe q = {calloc((size_t)n, sizeof(int)), inner, inner ? calloc((size_t)n * inner, sizeof(int)) : NULL, 0};
        ib_parallel_for(n, probe_item, &q);
        int ok = !q.bad_worker;
        for (int i = 0; i < n; i++) ok &= q.hits[i] == 1;
        for (int i = 0; i < n * inner; i++) ok &= q.inner_hits[i] == 1;
        free(q.hits);
        free(q.inner_hits);
        if (!ok) return l + 1;
    }
    return 0;
}

static void *probe_thread(void *p) {
    *(int *)p = probe_loops(300, *(int *)p);
    return NULL;
}

TEST(pool_runs_every_item_once) {
    for (int t = 1; t <= 4; t++) {
        ib_set_threads(t);
        CHECK(ib_pool_threads() == t, "%d threads set, the pool has %d", t, ib_pool_threads());
        int bad = probe_loops(500, t);
        CHECK(!bad, "%d threads: loop %d missed or repeated an item", t, bad);
        int a = 11, b = 12;   // two callers at once: the seed in, the first bad loop out
        pthread_t ta, tb;
        CHECK(!pthread_create(&ta, NULL, probe_thread, &a) && !pthread_create(&tb, NULL, probe_thread, &b),
              "pthread_create");
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        CHECK(!a && !b, "%d threads, two callers: loops %d and %d went wrong", t, a, b);
    }
    ib_set_threads(0);
}
