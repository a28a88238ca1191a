// What the benchmarks stand on: the profiling hook (ibnas bench --profile) and the reuse of activation
// grads during backward (ctx->release_grads), which must not change a single number.
#include "layers/layers.h"
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>

TEST(arena_give_back_reuses_merges_and_grows_the_top) {
    ib_arena *a = ib_arena_new(0);
    char *p1 = ib_arena_alloc(a, 1000), *p2 = ib_arena_alloc(a, 1000), *p3 = ib_arena_alloc(a, 64);
    size_t used = ib_arena_used(a);
    ib_arena_give_back(a, p1, 1000);
    float *q = ib_arena_calloc_reuse(a, 800);   // fits in p1's block
    CHECK((char *)q == p1, "best fit should reuse the freed block");
    CHECK(q[0] == 0.0f && q[199] == 0.0f, "reused block not zeroed");
    CHECK(ib_arena_used(a) == used, "reuse allocated %zu new bytes", ib_arena_used(a) - used);
    ib_arena_give_back(a, q, 800);
    ib_arena_give_back(a, p2, 1000);   // merges with the rest of p1's block
    char *r = ib_arena_calloc_reuse(a, 2000);
    CHECK(r == p1, "neighbouring free blocks should merge");
    // A free block at the top of the chunk grows in place.
    ib_arena_give_back(a, p3, 64);
    size_t before = ib_arena_used(a);
    char *t = ib_arena_calloc_reuse(a, 4096);
    CHECK(t == p3, "the top block should grow in place");
    CHECK(ib_arena_used(a) == before + 4096 - 64, "grew by %zu", ib_arena_used(a) - before);
    // Memory from elsewhere is ignored.
    float outside[64];
    ib_arena_give_back(a, outside, sizeof outside);
    char *u = ib_arena_calloc_reuse(a, 64);
    CHECK(u != (char *)outside, "a foreign block was handed out");
    ib_arena_reset(a);
    CHECK(ib_arena_used(a) == 0, "reset");
    ib_arena_free(a);
}

// One training step of a narrow mobilenetv2; returns the parameter grads (malloc'd) and the arena peak.
static float *step_grads(ib_net *net, int release, size_t *peak) {
    ib_ctx *ctx = ib_ctx_new();
    ctx->release_grads = release;
    int shape[4] = {2, 3, 32, 32};
    ib_tensor *x = ib_tensor_new(ctx, 4, shape);
    fill_normal(x, 7, 1.0f);
    int32_t y[2] = {1, 3};
    ib_params_zero_grad(&net->ps);
    ib_tensor *loss = ib_cross_entropy(ctx, ib_net_forward(ctx, net, x), y, 0.1f, -1);
    ib_backward(ctx, loss, NULL);
    *peak = ib_arena_peak(ctx->arena);
    float *g = malloc(sizeof(float) * (size_t)net->ps.numel_params);
    if (g) memcpy(g, net->ps.grad, sizeof(float) * (size_t)net->ps.numel_params);
    ib_ctx_free(ctx);
    return g;
}

TEST(released_grads_give_the_same_step) {
    ib_set_threads(1);
    ib_arch arch;
    ib_arch_mobilenetv2(&arch, 0.35f, 5);
    arch.dropout = 0;
    ib_net net;
    ib_status s = ib_net_build(&net, &arch);
    ib_arch_free(&arch);
    CHECK(s == IB_OK, "build: %s", ib_errmsg());
    ib_net_init_weights(&net, 3);
    size_t peak_keep, peak_release;
    float *keep = step_grads(&net, 0, &peak_keep), *rel = step_grads(&net, 1, &peak_release);
    CHECK(keep && rel, "out of memory");
    int64_t n = net.ps.numel_params, differ = 0;
    for (int64_t i = 0; i < n; i++) differ += keep[i] != rel[i];
    CHECK(differ == 0, "%lld of %lld parameter grads differ when activation grads are reused", (long long)differ,
          (long long)n);
    // MobileNetV2's activation grads are about half its step (at this size: scratch and saved state weigh
    // more than at res 64 batch 32, where the peak drops by ~40%).
    CHECK(peak_release < peak_keep * 9 / 10, "arena peak %zu with reuse, %zu without", peak_release, peak_keep);
    printf("# arena peak %.2f MB with released grads, %.2f MB without\n", peak_release / 1048576.0,
           peak_keep / 1048576.0);
    free(keep);
    free(rel);
    ib_net_free(&net);
}

static int n_fwd, n_bwd, n_scope_changes, scope_seen[64];
static void count_hook(const ib_prof_event *e) {
    if (!e->op) {
        n_scope_changes++;
        return;
    }
    if (e->backward) n_bwd++;
    else n_fwd++;
    if (!e->backward && e->scope >= -1 && e->scope < 63) scope_seen[e->scope + 1] = 1;
}

TEST(profile_hook_sees_every_op_and_block) {
    ib_set_threads(1);
    ib_arch arch;
    ib_arch_mobilenetv2(&arch, 0.35f, 5);
    ib_net net;
    ib_status s = ib_net_build(&net, &arch);
    ib_arch_free(&arch);
    CHECK(s == IB_OK, "build: %s", ib_errmsg());
    ib_net_init_weights(&net, 3);
    ib_ctx *ctx = ib_ctx_new();
    static float xd[2 * 3 * 32 * 32];
    ib_tensor xt, *x = &xt;
    ib_tensor_init(x, xd, 4, (int[]){2, 3, 32, 32});
    fill_normal(x, 7, 1.0f);
    int32_t y[2] = {1, 3};
    n_fwd = n_bwd = n_scope_changes = 0;
    memset(scope_seen, 0, sizeof scope_seen);
    ib_prof_hook = count_hook;
    ib_tensor *loss = ib_cross_entropy(ctx, ib_net_forward(ctx, &net, x), y, 0.0f, -1);
    ib_backward(ctx, loss, NULL);
    ib_prof_hook = NULL;
    CHECK(n_fwd == ctx->tape_len, "%d forward events for %d taped ops", n_fwd, ctx->tape_len);
    CHECK(n_bwd == ctx->tape_len, "%d backward events for %d taped ops", n_bwd, ctx->tape_len);
    int nb = net.arch.n_blocks;
    for (int p = 0; p <= nb + 2; p++) CHECK(scope_seen[p + 1], "no op seen in part %d", p);
    CHECK(scope_seen[0], "the loss should be outside the network (scope -1)");
    CHECK(n_scope_changes >= nb + 3, "%d scope changes", n_scope_changes);
    // With recording off (inference) ops still report, with no tape index.
    ctx->recording = 0, ctx->training = 0;
    ib_ctx_reset(ctx);
    n_fwd = 0;
    ib_prof_hook = count_hook;
    ib_net_forward(ctx, &net, x);
    ib_prof_hook = NULL;
    CHECK(n_fwd > 3 * nb && ctx->tape_len == 0, "inference: %d events, tape %d", n_fwd, ctx->tape_len);
    ib_ctx_free(ctx);
    ib_net_free(&net);
}
