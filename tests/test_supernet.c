// The supernet: a path run inside the supernet and the network extracted from it compute the same logits
// (eval mode) and the same gradients on the path's weights (training mode), with nothing leaking into
// weights the path does not use; BN recalibration gives the exact average of its batches; training
// resumes bit for bit; every shipped space builds a supernet whose extreme paths run; and the verbs as a
// user runs them: supernet eval of an arch prints what eval of its extracted checkpoint prints, and
// train --init fine-tunes that checkpoint.
#include "tests/test.h"

#include "tasks/tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// search/spaces/NAME.space.json from the working directory, else from the test binary's folder upwards.
static const char *space_path(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "search/spaces/%s.space.json", name);
    return project_path(rel);
}

static void load_tiny(ib_space *sp) { IB_ASSERT(ib_space_load(sp, space_path("tiny")) == IB_OK, "%s", ib_errmsg()); }

// Random weights and BN statistics, so that eval mode's running statistics matter.
static void randomise(ib_params *ps, uint64_t seed) {
    ib_params_init_default(ps, seed);
    ib_rng r;
    ib_rng_seed(&r, seed, 7);
    for (int i = 0; i < ps->n; i++) {
        ib_tensor *t = ps->t[i];
        const char *leaf = strrchr(t->name, '.');
        leaf = leaf ? leaf + 1 : t->name;
        if (!strcmp(leaf, "running_var") || (t->ndim == 1 && !strcmp(leaf, "weight")))
            ib_rng_fill_uniform(&r, t->data, ib_numel(t), 0.5f, 1.5f);
        else if (!strcmp(leaf, "running_mean") || (t->ndim == 1 && !strcmp(leaf, "bias")))
            ib_rng_fill_uniform(&r, t->data, ib_numel(t), -0.2f, 0.2f);
    }
}

// Choices to try: the largest, the smallest, then random ones, and one with every layer the same op
// where the space allows it (so each op's slicing is covered).
static void pick(const ib_space *sp, int k, ib_rng *r, int *choice) {
    if (k == 0) ib_space_sample(sp, IB_SAMPLE_LARGEST, r, choice);
    else if (k == 1) ib_space_sample(sp, IB_SAMPLE_SMALLEST, r, choice);
    else ib_space_sample(sp, IB_SAMPLE_RANDOM, r, choice);
    if (k >= 2 && k < 2 + IB_BLOCK_SKIP) {   // force op k-2 wherever it is allowed, random fields
        for (int l = 0; l < sp->n_layers; l++) {
            ib_block_cfg all[512];
            int n = ib_space_choices(sp, l, all, 512);
            int idx[512], m = 0;
            for (int c = 0; c < n; c++)
                if ((int)all[c].op == k - 2) idx[m++] = c;
            if (m) choice[l] = idx[ib_rng_below(r, (uint32_t)m)];
        }
    }
}

static ib_tensor *input(ib_ctx *ctx, int n, int res, uint64_t seed) {
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){n, 3, res, res});
    fill_normal(x, seed, 1.0f);
    return x;
}

TEST(path_and_extracted_network_agree) {
    ib_space sp;
    load_tiny(&sp);
    ib_supernet sn, grads;
    CHECK(ib_supernet_build(&sn, &sp, 6) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_supernet_build(&grads, &sp, 6) == IB_OK, "%s", ib_errmsg());
    randomise(&sn.ps, 11);
    ib_rng r;
    ib_rng_seed(&r, 5, 0);
    int choice[64];
    ib_ctx *ctx = ib_ctx_new(), *ctx2 = ib_ctx_new();
    const int N = 4, R = 32;
    for (int k = 0; k < 12 && !ib_test_failed(); k++) {
        pick(&sp, k, &r, choice);
        ib_net net;
        CHECK(ib_supernet_extract(&sn, choice, &net) == IB_OK, "%s", ib_errmsg());
        // Eval mode: the logits, to 1e-6 (the same code on the same numbers: expected bit-exact).
        ib_ctx_reset(ctx), ib_ctx_reset(ctx2);
        ctx->training = ctx2->training = 0;
        ctx->recording = ctx2->recording = 0;
        ib_net path;
        ib_supernet_path(ctx, &sn, choice, &path);
        ib_tensor *x = input(ctx, N, R, 100 + k);
        ib_tensor *za = ib_net_forward(ctx, &path, x);
        ib_tensor *zb = ib_net_forward(ctx2, &net, x);
        double d = max_abs_diff(za->data, zb->data, ib_numel(za));
        CHECK(d <= 1e-6, "choice %d: eval logits differ by %g", k, d);
        // Training mode: loss sum(z * w) with fixed w; gradients of every path weight to 1e-5.
        ib_ctx_reset(ctx), ib_ctx_reset(ctx2);
        ctx->training = ctx2->training = 1;
        ctx->recording = ctx2->recording = 1;
        ctx->release_grads = ctx2->release_grads = 1;   // as the training loops run
        ib_params_zero_grad(&sn.ps);
        ib_params_zero_grad(&net.ps);
        ib_rng keep = sn.dropout_rng;
        ib_supernet_path(ctx, &sn, choice, &path);
        x = input(ctx, N, R, 200 + k);
        ib_tensor *wt = ib_tensor_new(ctx, 2, (int[]){N, 6});
        fill_normal(wt, 300 + k, 1.0f);
        za = ib_net_forward(ctx, &path, x);
        ib_backward(ctx, ib_sum(ctx, ib_mul_channel(ctx, ib_reshape(ctx, za, 4, (int[]){1, N * 6, 1, 1}),
                                                    ib_reshape(ctx, wt, 4, (int[]){1, N * 6, 1, 1}))), NULL);
        net.dropout_rng = keep;
        zb = ib_net_forward(ctx2, &net, x);
        d = max_abs_diff(za->data, zb->data, ib_numel(za));
        CHECK(d <= 1e-5, "choice %d: training logits differ by %g", k, d);
        ib_backward(ctx2, ib_sum(ctx2, ib_mul_channel(ctx2, ib_reshape(ctx2, zb, 4, (int[]){1, N * 6, 1, 1}),
                                                      ib_reshape(ctx2, wt, 4, (int[]){1, N * 6, 1, 1}))), NULL);
        // The supernet's gradients seen as weights, extracted along the same path: the standalone
        // network's gradients, tensor by tensor.
        memcpy(grads.ps.data, sn.ps.grad, sizeof(float) * (size_t)sn.ps.numel_params);
        ib_net gnet;
        CHECK(ib_supernet_extract(&grads, choice, &gnet) == IB_OK, "%s", ib_errmsg());
        double l1_path = 0, l1_all = 0;
        for (int i = 0; i < net.ps.n && !ib_test_failed(); i++) {
            if (net.ps.is_buffer[i]) continue;
            ib_tensor *a = gnet.ps.t[i], *b = net.ps.t[i];
            int64_t n = ib_numel(b);
            double e = rel_err(a->data, b->grad, n), m = max_abs_diff(a->data, b->grad, n);
            CHECK(e <= 1e-5 || m <= 1e-6, "choice %d: grad of %s differs (rel %g, max %g)", k, b->name, e, m);
            for (int64_t j = 0; j < n; j++) l1_path += fabs(b->grad[j]);
        }
        for (int64_t j = 0; j < sn.ps.numel_params; j++) l1_all += fabs(sn.ps.grad[j]);
        CHECK(fabs(l1_all - l1_path) <= 1e-4 * l1_path, "choice %d: gradient outside the path (%g vs %g)", k, l1_all,
              l1_path);
        ib_net_free(&gnet);
        ib_net_free(&net);
    }
    ib_ctx_free(ctx);
    ib_ctx_free(ctx2);
    ib_supernet_free(&grads);
    ib_supernet_free(&sn);
    ib_space_free(&sp);
}

// A path's optimiser step is its subnet's: two SGD steps (momentum, Nesterov, weight decay) of a path inside the
// supernet, with the weights marked as training marks them (ib_supernet_active_*), and of the extracted network alone
// leave the path's weights equal (to float rounding of the 1e-5 gradients) and every other supernet weight as it
// was, bit for bit: the supernet changed exactly as many weights as the subnet has. Stepping whole shared tensors
// (decay and momentum on a kernel's outer ring, the channels past a slice) fails the count. The step leaves the
// supernet's gradient zero, ready for the next (training zeroes it only before the first).
TEST(path_step_is_its_subnets_step) {
    ib_space sp;
    load_tiny(&sp);
    ib_supernet sn;
    CHECK(ib_supernet_build(&sn, &sp, 6) == IB_OK, "%s", ib_errmsg());
    ib_optim_cfg oc = ib_optim_cfg_default(IB_OPTIM_SGD, 0);
    oc.momentum = 0.9f, oc.nesterov = 1, oc.weight_decay = 1e-3f;
    int64_t P = sn.ps.numel_params;
    float *before = malloc(sizeof(float) * (size_t)P);
    uint8_t *active = calloc((size_t)sn.ps.n, 1), *elem = calloc((size_t)P, 1);
    ib_rng r;
    ib_rng_seed(&r, 9, 0);
    int choice[64];
    ib_ctx *ctx = ib_ctx_new(), *ctx2 = ib_ctx_new();
    const int N = 4, R = 32;
    for (int k = 0; k < 2 + IB_BLOCK_SKIP && !ib_test_failed(); k++) {
        randomise(&sn.ps, 40 + k);
        pick(&sp, k, &r, choice);
        ib_net net, after;
        CHECK(ib_supernet_extract(&sn, choice, &net) == IB_OK, "%s", ib_errmsg());
        ib_optim *so = ib_optim_new(&oc, &sn.ps), *no = ib_optim_new(&oc, &net.ps);
        memcpy(before, sn.ps.data, sizeof(float) * (size_t)P);
        for (int st = 0; st < 2; st++) {
            if (st == 0) ib_params_zero_grad(&sn.ps);   // then the step zeroes what it stepped, as training does
            ib_params_zero_grad(&net.ps);
            ib_supernet_active_clear(&sn, active, elem);
            ib_ctx_reset(ctx), ib_ctx_reset(ctx2);
            ctx->training = ctx2->training = 1;
            ctx->recording = ctx2->recording = 1;
            ctx->release_grads = ctx2->release_grads = 1;
            ib_net path;
            ib_supernet_path(ctx, &sn, choice, &path);
            ib_supernet_active_add(&sn, &path, active, elem);
            net.dropout_rng = sn.dropout_rng;
            ib_tensor *x = input(ctx, N, R, 500 + 10 * k + st), *wt = ib_tensor_new(ctx, 2, (int[]){N, 6});
            fill_normal(wt, 600 + 10 * k + st, 1.0f);
            ib_tensor *za = ib_net_forward(ctx, &path, x), *zb = ib_net_forward(ctx2, &net, x);
            sn.dropout_rng = path.dropout_rng;
            ib_backward(ctx, ib_sum(ctx, ib_mul_channel(ctx, ib_reshape(ctx, za, 4, (int[]){1, N * 6, 1, 1}),
                                                        ib_reshape(ctx, wt, 4, (int[]){1, N * 6, 1, 1}))), NULL);
            ib_backward(ctx2, ib_sum(ctx2, ib_mul_channel(ctx2, ib_reshape(ctx2, zb, 4, (int[]){1, N * 6, 1, 1}),
                                                          ib_reshape(ctx2, wt, 4, (int[]){1, N * 6, 1, 1}))), NULL);
            ib_optim_step_active(so, 0.1f, active, elem, 1);
            ib_optim_step(no, 0.1f);
        }
        CHECK(ib_supernet_extract(&sn, choice, &after) == IB_OK, "%s", ib_errmsg());
        int64_t weights = 0, changed = 0;
        for (int i = 0; i < net.ps.n && !ib_test_failed(); i++) {
            if (net.ps.is_buffer[i]) continue;
            const ib_tensor *a = after.ps.t[i], *b = net.ps.t[i];
            int64_t n = ib_numel(b);
            double e = rel_err(a->data, b->data, n), m = max_abs_diff(a->data, b->data, n);
            CHECK(e <= 1e-5 || m <= 1e-6, "choice %d: %s after two steps differs (rel %g, max %g)", k, b->name, e, m);
            weights += n;
        }
        for (int i = 0; i < sn.ps.n; i++) {
            if (sn.ps.is_buffer[i]) continue;
            const ib_tensor *t = sn.ps.t[i];
            for (int64_t j = 0, o = t->data - sn.ps.data; j < ib_numel(t); j++) changed += t->data[j] != before[o + j];
        }
        CHECK(changed == weights, "choice %d: the supernet changed %lld weights, the subnet has %lld", k,
              (long long)changed, (long long)weights);
        int64_t left = 0;   // the step zeroed every gradient the path wrote: none outside its marks
        for (int64_t j = 0; j < P; j++) left += sn.ps.grad[j] != 0;
        CHECK(left == 0, "choice %d: %lld gradients left after the step", k, (long long)left);
        ib_optim_free(so);
        ib_optim_free(no);
        ib_net_free(&after);
        ib_net_free(&net);
    }
    ib_ctx_free(ctx);
    ib_ctx_free(ctx2);
    free(before);
    free(active);
    free(elem);
    ib_supernet_free(&sn);
    ib_space_free(&sp);
}

// With --path-grads mean, a fair step's gradient is, per weight, the mean over the paths that ran it: each path's
// gradient computed alone, the weights each path read counted from its marks (ib_supernet_active_add), against
// the step's accumulation divided by ib_supernet_grad_mean. The tiny space's stage-first layers allow 4 op types
// for 5 paths, so one op runs twice there, with kernels or expansions that may differ: counts of 1 and 2 within
// one tensor.
TEST(fair_step_takes_each_weights_mean) {
    ib_space sp;
    load_tiny(&sp);
    ib_supernet sn;
    CHECK(ib_supernet_build(&sn, &sp, 6) == IB_OK, "%s", ib_errmsg());
    randomise(&sn.ps, 71);
    int64_t P = sn.ps.numel_params;
    int n = ib_space_fair_paths(&sp), L = ib_space_genes(&sp);
    CHECK(n == 5, "the tiny space deals %d paths, the test expects 5", n);
    int *choice = malloc(sizeof(int) * (size_t)(n * L));
    double *sum = calloc((size_t)P, sizeof(double));
    int *count = calloc((size_t)P, sizeof(int));
    uint8_t *active = calloc((size_t)sn.ps.n, 1), *elem = calloc((size_t)P, 1), *uses = calloc((size_t)P, 1);
    ib_ctx *ctx = ib_ctx_new();
    const int N = 4, R = 32;
    int twice = 0;
    for (int trial = 0; trial < 3 && !ib_test_failed(); trial++) {
        ib_rng r;
        ib_rng_seed(&r, 5, (uint64_t)trial);
        ib_space_sample_fair(&sp, &r, n, choice);
        memset(sum, 0, sizeof(double) * (size_t)P), memset(count, 0, sizeof(int) * (size_t)P);
        for (int pass = 0; pass < 2; pass++) {   // 0: each path alone; 1: accumulated as training does
            ib_params_zero_grad(&sn.ps);
            if (pass) ib_supernet_active_clear(&sn, active, elem);
            for (int p = 0; p < n; p++) {
                ib_ctx_reset(ctx);
                ctx->training = ctx->recording = ctx->release_grads = 1;
                ib_rng_seed(&sn.dropout_rng, 3, (uint64_t)p);
                ib_net path;
                ib_supernet_path(ctx, &sn, choice + (size_t)p * (size_t)L, &path);
                if (!pass) {   // this path's own marks
                    memset(active, 0, (size_t)sn.ps.n), memset(elem, 0, (size_t)P);
                    ib_supernet_active_clear(&sn, active, elem);
                }
                ib_supernet_active_add(&sn, &path, active, elem);
                if (pass) ib_supernet_uses_add(&sn, &path, uses);
                ib_tensor *x = input(ctx, N, R, 900 + (uint64_t)trial), *wt = ib_tensor_new(ctx, 2, (int[]){N, 6});
                fill_normal(wt, 950 + (uint64_t)trial, 1.0f);
                ib_tensor *z = ib_net_forward(ctx, &path, x);
                ib_backward(ctx, ib_sum(ctx, ib_mul_channel(ctx, ib_reshape(ctx, z, 4, (int[]){1, N * 6, 1, 1}),
                                                            ib_reshape(ctx, wt, 4, (int[]){1, N * 6, 1, 1}))), NULL);
                if (pass) continue;
                for (int i = 0; i < sn.ps.n; i++) {
                    if (sn.ps.is_buffer[i] || !active[i]) continue;
                    const ib_tensor *t = sn.ps.t[i];
                    for (int64_t j = 0, o = t->data - sn.ps.data; j < ib_numel(t); j++)
                        if (active[i] == 1 || elem[o + j]) count[o + j]++, sum[o + j] += sn.ps.grad[o + j];
                }
                ib_params_zero_grad(&sn.ps);
            }
        }
        ib_supernet_grad_mean(&sn, n, active, uses);
        int64_t bad = 0, worst = -1, left = 0;
        for (int64_t j = 0; j < P; j++) {
            double want = count[j] ? sum[j] / count[j] : 0, got = sn.ps.grad[j];
            twice += count[j] == 2;
            if (fabs(got - want) > 1e-6 + 1e-5 * fabs(want)) bad++, worst = worst < 0 ? j : worst;
            left += uses[j] != 0;
        }
        CHECK(bad == 0, "trial %d: %lld gradients are not the mean over their paths (first at %lld: %g, want %g / %d)",
              trial, (long long)bad, (long long)worst, worst < 0 ? 0.0 : sn.ps.grad[worst], worst < 0 ? 0.0 : sum[worst],
              worst < 0 ? 0 : count[worst]);
        CHECK(left == 0, "trial %d: %lld use counts left after the mean", trial, (long long)left);
    }
    CHECK(twice > 0, "no weight ran in two paths: the test checks only the stem, head and classifier's division");
    ib_ctx_free(ctx);
    free(choice), free(sum), free(count), free(active), free(elem), free(uses);
    ib_supernet_free(&sn);
    ib_space_free(&sp);
}

// After recalibration on T batches each BN's running mean is the average of the T batch means: checked
// on the stem's BN, whose input is the images through a fixed conv.
TEST(recalibration_averages_its_batches) {
    ib_space sp;
    load_tiny(&sp);
    ib_supernet sn;
    CHECK(ib_supernet_build(&sn, &sp, 6) == IB_OK, "%s", ib_errmsg());
    randomise(&sn.ps, 3);
    ib_dataset *ds;
    CHECK(ib_dataset_synth(&ds, 64, 32, 9) == IB_OK, "%s", ib_errmsg());
    int choice[64];
    ib_space_sample(&sp, IB_SAMPLE_SMALLEST, NULL, choice);
    ib_ctx *ctx = ib_ctx_new();
    ctx->recording = 0;
    ib_net path;
    ib_supernet_path(ctx, &sn, choice, &path);
    ib_recal_cfg rc;
    ib_recal_cfg_default(&rc, 32);
    rc.batches = 3, rc.batch = 16, rc.workers = 1, rc.seed = 4;
    CHECK(ib_recalibrate_bn(&path, ds, &rc) == IB_OK, "%s", ib_errmsg());
    // The same batches through the stem conv by hand.
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, 32, 32);
    lo.batch_size = 16, lo.shuffle = 1, lo.drop_last = 1, lo.seed = 4, lo.workers = 1;
    lo.want_boxes = lo.want_masks = 0;
    lo.aug.crop = IB_CROP_CENTER;
    memcpy(lo.aug.mean, rc.mean, sizeof rc.mean);
    memcpy(lo.aug.std, rc.std, sizeof rc.std);
    ib_loader *l;
    CHECK(ib_loader_open(&l, ds, &lo) == IB_OK, "%s", ib_errmsg());
    ib_loader_start_epoch(l, 0);
    int C = sp.stem_out;
    double avg[64] = {0};
    ib_ctx *c2 = ib_ctx_new();
    c2->recording = 0;
    for (int t = 0; t < 3; t++) {
        const ib_batch *b;
        CHECK(ib_loader_next(l, &b) == IB_OK && b, "batch %d", t);
        ib_ctx_reset(c2);
        ib_tensor x;
        ib_batch_tensor(b, &x);
        ib_tensor *y = ib_conv_forward(c2, &sn.stem.conv, &x);
        int64_t hw = (int64_t)y->shape[2] * y->shape[3];
        for (int ch = 0; ch < C; ch++) {
            double s = 0;
            for (int i = 0; i < y->shape[0]; i++)
                for (int64_t p = 0; p < hw; p++) s += y->data[((int64_t)i * C + ch) * hw + p];
            avg[ch] += s / (double)(y->shape[0] * hw) / 3;
        }
    }
    for (int ch = 0; ch < C; ch++)
        CHECK(fabs(sn.stem.bn.mean->data[ch] - avg[ch]) <= 1e-4 * (1 + fabs(avg[ch])), "channel %d: %g vs %g", ch,
              sn.stem.bn.mean->data[ch], avg[ch]);
    ib_ctx_free(c2);
    ib_loader_close(l);
    ib_ctx_free(ctx);
    ib_dataset_close(ds);
    ib_supernet_free(&sn);
    ib_space_free(&sp);
}

TEST(every_space_builds_a_supernet) {
    const char *names[] = {"tiny", "mobiledets", "edgetpuv2", "union"};
    for (int i = 0; i < 4 && !ib_test_failed(); i++) {
        ib_space sp;
        CHECK(ib_space_load(&sp, space_path(names[i])) == IB_OK, "%s", ib_errmsg());
        ib_supernet sn;
        CHECK(ib_supernet_build(&sn, &sp, 10) == IB_OK, "%s: %s", names[i], ib_errmsg());
        ib_supernet_init_weights(&sn, 1);
        int choice[256];
        ib_ctx *ctx = ib_ctx_new();
        for (int k = 0; k < 2; k++) {
            ib_space_sample(&sp, k ? IB_SAMPLE_SMALLEST : IB_SAMPLE_LARGEST, NULL, choice);
            ib_ctx_reset(ctx);
            ctx->training = 1, ctx->recording = 0;
            ib_net path;
            ib_supernet_path(ctx, &sn, choice, &path);
            ib_tensor *z = ib_net_forward(ctx, &path, input(ctx, 2, 32, 1));
            CHECK(z->shape[0] == 2 && z->shape[1] == 10, "%s: logits shape", names[i]);
            for (int j = 0; j < 20; j++) CHECK(isfinite(z->data[j]), "%s: non-finite logit", names[i]);
        }
        ib_ctx_free(ctx);
        ib_supernet_free(&sn);
        ib_space_free(&sp);
    }
}

// Stopped after 5 steps and resumed: the same weights, bit for bit, as a run that never stopped.
// The resume tests' run: a 300-scene pack NAME.h5 in the test folder (270 training images: 8 batches of 32 an
// epoch), the tiny space, 2 epochs, into NAME_a.h5 straight and into NAME_b.h5 stopped after 5 steps, then
// resumed from it (with path_grads -1, the file's rule, when forget_rule). Loads both into sa and sb, checks
// their weights and BN statistics are the same bits, and leaves c as the resume ran.
static void resume_runs(const char *name, ib_sn_train_cfg *c, int forget_rule, char *data, char *a, char *b,
                        ib_supernet *sa, ib_supernet *sb) {
    snprintf(data, 512, "%s/%s.h5", test_tmpdir(), name);
    snprintf(a, 512, "%s/%s_a.h5", test_tmpdir(), name);
    snprintf(b, 512, "%s/%s_b.h5", test_tmpdir(), name);
    CHECK(ib_synth_write_pack(data, 300, 32, 3, 0, NULL, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    c->space = space_path("tiny");
    c->base.data = data;
    c->base.epochs = 2, c->base.batch = 32, c->base.res = 32, c->base.warmup_epochs = 0.5f;
    c->base.workers = 1, c->base.progress = 0, c->base.seed = 7;
    ib_sn_train_result r;
    c->base.out = a;
    CHECK(ib_train_supernet_classify(c, &r) == IB_OK, "%s", ib_errmsg());
    CHECK(r.base.steps == 16, "steps %ld (270 training images: 8 batches of 32 an epoch)", r.base.steps);
    c->base.out = b, c->base.max_steps = 5;
    CHECK(ib_train_supernet_classify(c, &r) == IB_OK && r.base.steps == 5, "%s", ib_errmsg());
    c->base.resume = b, c->base.max_steps = 0;
    if (forget_rule) c->path_grads = -1;
    CHECK(ib_train_supernet_classify(c, &r) == IB_OK && r.base.steps == 16, "%s", ib_errmsg());
    CHECK(ib_supernet_load(sa, a) == IB_OK && ib_supernet_load(sb, b) == IB_OK, "%s", ib_errmsg());
    CHECK(sa->ps.numel_params == sb->ps.numel_params, "sizes");
    CHECK(!memcmp(sa->ps.data, sb->ps.data, sizeof(float) * (size_t)sa->ps.numel_params), "weights differ after resume");
    CHECK(!memcmp(sa->ps.buf, sb->ps.buf, sizeof(float) * (size_t)sa->ps.numel_buffers), "BN statistics differ");
}

TEST(supernet_resume_is_exact) {
    char data[512], a[512], b[512];
    ib_sn_train_cfg c;
    ib_sn_train_cfg_default(&c);
    c.path_grads = IB_SN_MEAN;   // the rule with more to restore (the use counts); the resume takes the file's
    ib_supernet sa, sb;
    resume_runs("sn", &c, 1, data, a, b, &sa, &sb);
    if (ib_test_failed()) return;
    ib_sn_train_result r;
    CHECK(sa.holdout == 0.1 && sa.train_data && !strcmp(sa.train_data, data), "recorded data %s holdout %g",
          sa.train_data ? sa.train_data : "(none)", sa.holdout);
    CHECK(!strcmp(sa.path_grads, "mean") && !strcmp(sb.path_grads, "mean"), "recorded path_grads '%s' and '%s', not mean",
          sa.path_grads, sb.path_grads);
    double moved = 0;
    ib_supernet s0;
    ib_space sp;
    load_tiny(&sp);
    CHECK(ib_supernet_build(&s0, &sp, 6) == IB_OK, "%s", ib_errmsg());
    ib_supernet_init_weights(&s0, 7);
    for (int64_t i = 0; i < s0.ps.numel_params; i++) moved += fabs(s0.ps.data[i] - sa.ps.data[i]);
    CHECK(moved > 1, "training did not move the weights (%g)", moved);
    ib_supernet_free(&s0);
    ib_space_free(&sp);
    ib_supernet_free(&sa);
    ib_supernet_free(&sb);
    // Resuming with another batch or learning rate is refused, naming the flag.
    c.base.batch = 16;
    ib_status st = ib_train_supernet_classify(&c, &r);
    CHECK(st == IB_ERR_ARG && strstr(ib_errmsg(), "--batch 32") && strstr(ib_errmsg(), "--batch 16"), "batch: %s",
          ib_errmsg());
    c.base.batch = 32, c.base.lr *= 2;
    st = ib_train_supernet_classify(&c, &r);
    CHECK(st == IB_ERR_ARG && strstr(ib_errmsg(), "--lr"), "lr: %s", ib_errmsg());
    c.base.lr /= 2, c.sampling = IB_SN_SANDWICH;   // the file records fair, the default
    st = ib_train_supernet_classify(&c, &r);
    CHECK(st == IB_ERR_ARG && strstr(ib_errmsg(), "--sampling fair, not sandwich"), "sampling: %s", ib_errmsg());
    c.sampling = IB_SN_FAIR, c.path_grads = IB_SN_SUM;   // the file records mean
    st = ib_train_supernet_classify(&c, &r);
    CHECK(st == IB_ERR_ARG && strstr(ib_errmsg(), "--path-grads mean, not sum") && strstr(ib_errmsg(), b), "path_grads: %s",
          ib_errmsg());
    c.path_grads = -1;
    // A diverging run stops at the first non-finite loss; an unwritable output is known before training.
    c.base.resume = NULL, c.base.lr = 1e30f, c.base.max_steps = 4;
    st = ib_train_supernet_classify(&c, &r);
    CHECK(st == IB_ERR_ARG && strstr(ib_errmsg(), "loss became") && strstr(ib_errmsg(), "at step"), "diverging: %s",
          ib_errmsg());
    c.base.out = "/nonexistent/folder/sn.h5";
    st = ib_train_supernet_classify(&c, &r);
    CHECK(st == IB_ERR_IO && strstr(ib_errmsg(), "/nonexistent/folder/sn.h5"), "unwritable: %s", ib_errmsg());
}

// --op-ramp (uniform here): the switch probability follows the step, so a run stopped after 5 steps and resumed
// ends where the straight run does, bit for bit; and it draws other paths than the independent rule (op_ramp 0).
TEST(op_ramp_resume_is_exact_and_changes_the_paths) {
    char data[512], a[512], b[512], z[512];
    ib_sn_train_cfg c;
    ib_sn_train_cfg_default(&c);
    c.sampling = IB_SN_UNIFORM, c.op_ramp = 1.5f;
    ib_supernet sa, sb, s0;
    resume_runs("sn_ramp", &c, 0, data, a, b, &sa, &sb);
    if (ib_test_failed()) return;
    snprintf(z, sizeof z, "%s/sn_ramp_0.h5", test_tmpdir());
    ib_sn_train_result r;
    c.base.resume = NULL, c.base.out = z, c.op_ramp = 0;
    CHECK(ib_train_supernet_classify(&c, &r) == IB_OK && r.base.steps == 16, "%s", ib_errmsg());
    CHECK(ib_supernet_load(&s0, z) == IB_OK, "%s", ib_errmsg());
    CHECK(memcmp(sa.ps.data, s0.ps.data, sizeof(float) * (size_t)sa.ps.numel_params), "op_ramp 1.5 trained as op_ramp 0");
    ib_supernet_free(&sa);
    ib_supernet_free(&sb);
    ib_supernet_free(&s0);
}

// A few steps of supernet training on n synthetic 32-px scenes (seeded 5) into NAME_out.h5 in the test
// folder, with the given sampling, seed and step count; momentum 0.9 and weight decay 1e-2, so any tensor
// an optimiser step touches moves.
static ib_status short_supernet_run(const char *name, int n, int sampling, uint64_t seed, int steps, char *out,
                                    size_t out_size, ib_sn_train_result *r) {
    char data[512];
    snprintf(data, sizeof data, "%s/%s.h5", test_tmpdir(), name);
    ib_status s = ib_synth_write_pack(data, n, 32, 5, 0, NULL, NULL, NULL);
    if (s) return s;
    snprintf(out, out_size, "%s/%s_out.h5", test_tmpdir(), name);
    ib_sn_train_cfg c;
    ib_sn_train_cfg_default(&c);
    c.space = space_path("tiny");
    c.sampling = sampling;
    c.base.data = data, c.base.out = out;
    c.base.epochs = 1, c.base.batch = 32, c.base.res = 32, c.base.warmup_epochs = 0;
    c.base.optim.momentum = 0.9f, c.base.optim.weight_decay = 1e-2f;
    c.base.workers = 1, c.base.progress = 0, c.base.seed = seed, c.base.max_steps = steps;
    return ib_train_supernet_classify(&c, r);
}

// --init: a supernet starts from another's weights and BN statistics (same space, tensors by name and shape):
// after one step at a negligible rate it holds the source's weights, where a fresh one does not; a supernet of
// another space is refused, naming the file; init with resume is refused.
TEST(supernet_init_starts_from_another_supernet) {
    char src[512], data[512], a[512], b[512], other[512];
    ib_sn_train_result r;
    CHECK(short_supernet_run("sn_init_src", 100, IB_SN_UNIFORM, 3, 3, src, sizeof src, &r) == IB_OK, "%s", ib_errmsg());
    snprintf(data, sizeof data, "%s/sn_init_src.h5", test_tmpdir());
    snprintf(a, sizeof a, "%s/sn_init_a.h5", test_tmpdir());
    snprintf(b, sizeof b, "%s/sn_init_b.h5", test_tmpdir());
    ib_sn_train_cfg c;
    ib_sn_train_cfg_default(&c);
    c.space = space_path("tiny");
    c.sampling = IB_SN_UNIFORM;
    c.base.data = data;
    c.base.epochs = 1, c.base.batch = 32, c.base.res = 32, c.base.warmup_epochs = 0, c.base.lr = 1e-12f;
    c.base.optim.weight_decay = 0;
    c.base.workers = 1, c.base.progress = 0, c.base.seed = 9, c.base.max_steps = 1;
    c.base.init = src, c.base.out = a;
    CHECK(ib_train_supernet_classify(&c, &r) == IB_OK && r.base.steps == 1, "%s", ib_errmsg());
    c.base.init = NULL, c.base.out = b;
    CHECK(ib_train_supernet_classify(&c, &r) == IB_OK && r.base.steps == 1, "%s", ib_errmsg());
    ib_supernet s0, sa, sb;
    CHECK(ib_supernet_load(&s0, src) == IB_OK && ib_supernet_load(&sa, a) == IB_OK && ib_supernet_load(&sb, b) == IB_OK,
          "%s", ib_errmsg());
    double da = 0, db = 0;
    for (int64_t i = 0; i < s0.ps.numel_params; i++) {
        da = fmax(da, fabs(sa.ps.data[i] - s0.ps.data[i]));
        db = fmax(db, fabs(sb.ps.data[i] - s0.ps.data[i]));
    }
    CHECK(da < 1e-6, "initialised from %s, the weights are %g from its", src, da);
    CHECK(db > 1e-2, "a fresh supernet (seed 9) is only %g from the source (seed 3): the check cannot tell", db);
    ib_supernet_free(&s0), ib_supernet_free(&sa), ib_supernet_free(&sb);
    // Another space (the tiny space renamed) is refused, naming the source file and both spaces.
    snprintf(other, sizeof other, "%s/other.space.json", test_tmpdir());
    FILE *in = fopen(space_path("tiny"), "rb"), *out = fopen(other, "wb");
    CHECK(in && out, "copy the tiny space");
    char text[8192];
    size_t len = fread(text, 1, sizeof text - 1, in);
    text[len] = 0;
    char *at = strstr(text, "\"name\": \"tiny\"");
    CHECK(at && len < sizeof text - 1, "the tiny space's name field");
    at += strlen("\"name\": \"tiny");
    fwrite(text, 1, (size_t)(at - text), out), fputc('2', out), fputs(at, out);
    fclose(in), fclose(out);
    c.space = other, c.base.init = src, c.base.out = b;
    ib_status st = ib_train_supernet_classify(&c, &r);
    CHECK(st == IB_ERR_ARG && strstr(ib_errmsg(), src) && strstr(ib_errmsg(), "tiny2"), "another space: %s", ib_errmsg());
    // Through the public API: init with resume is refused.
    ib_supernet_train_opts o;
    ib_supernet_train_opts_default(&o);
    o.space = space_path("tiny"), o.train.data = data, o.train.out = b, o.train.init = src, o.train.resume = a;
    ib_supernet_train_report rep;
    st = ib_supernet_train(&o, &rep);
    CHECK(st == IB_ERR_ARG && strstr(ib_errmsg(), "init and resume"), "init with resume: %s", ib_errmsg());
}

// Supernet files of version 1 hold the 5x5 kernels in the plain layout; this build stores them centre first
// (version 2) and converts a version 1 file as it loads it: the same weights, and so the same path logits. A
// version 1 file cannot be resumed (its optimizer state is in the old layout): refused, naming the file, and
// --init is the way on. A file of a version from the future is refused.
TEST(version_1_supernet_files_are_converted) {
    char src[512], data[512], v1[512], v9[512];
    ib_sn_train_result r;
    CHECK(short_supernet_run("sn_v1", 100, IB_SN_UNIFORM, 3, 2, src, sizeof src, &r) == IB_OK, "%s", ib_errmsg());
    snprintf(data, sizeof data, "%s/sn_v1.h5", test_tmpdir());
    snprintf(v1, sizeof v1, "%s/sn_v1_old.h5", test_tmpdir());
    snprintf(v9, sizeof v9, "%s/sn_v9.h5", test_tmpdir());
    ib_supernet sn, old;
    CHECK(ib_supernet_load(&sn, src) == IB_OK && sn.file_version == IB_SUPERNET_VERSION, "%s", ib_errmsg());
    // The version 1 file: the same supernet with its centre-first kernels put back in the plain order.
    int ring = 0;
    for (int i = 0; i < sn.ps.n; i++)
        if (sn.ps.t[i]->centre_first) {
            ib_centre_first_permute(sn.ps.t[i]->data, sn.ps.t[i]->shape[0], sn.ps.t[i]->shape[1], 0);
            ring++;
        }
    CHECK(ring > 0, "the tiny space's supernet has no centre-first kernel: the test tells nothing");
    for (int k = 0; k < 2; k++) {
        ib_h5 *f;
        char *json = ib_space_to_json(&sn.space);
        CHECK(json && ib_h5_create(&f, k ? v9 : v1) == IB_OK, "%s", ib_errmsg());
        CHECK(ib_h5_set_attr_str(f, "/", "format", IB_SUPERNET_FORMAT) == IB_OK &&
                  ib_h5_set_attr_i64(f, "/", "version", k ? 9 : 1) == IB_OK &&
                  ib_h5_set_attr_str(f, "/", "space", json) == IB_OK &&
                  ib_h5_set_attr_i64(f, "/", "classes", sn.base.classes) == IB_OK && ib_params_write(f, &sn.ps) == IB_OK &&
                  ib_h5_close(f) == IB_OK,
              "%s", ib_errmsg());
        free(json);
    }
    ib_supernet_free(&sn);
    CHECK(ib_supernet_load(&sn, src) == IB_OK && ib_supernet_load(&old, v1) == IB_OK && old.file_version == 1, "%s",
          ib_errmsg());
    int64_t diff = 0;
    for (int64_t i = 0; i < sn.ps.numel_params; i++) diff += sn.ps.data[i] != old.ps.data[i];
    CHECK(diff == 0, "%lld weights of the converted version 1 file differ", (long long)diff);
    // The largest path's logits, both files.
    int choice[64];
    ib_space_sample(&sn.space, IB_SAMPLE_LARGEST, NULL, choice);
    ib_ctx *ctx = ib_ctx_new(), *ctx2 = ib_ctx_new();
    ib_net pa, pb;
    ib_supernet_path(ctx, &sn, choice, &pa);
    ib_supernet_path(ctx2, &old, choice, &pb);
    ib_tensor *x = input(ctx, 2, 32, 77);
    ib_tensor *za = ib_net_forward(ctx, &pa, x), *zb = ib_net_forward(ctx2, &pb, x);
    CHECK(max_abs_diff(za->data, zb->data, ib_numel(za)) == 0, "the converted file's logits differ");
    ib_ctx_free(ctx), ib_ctx_free(ctx2);
    ib_supernet_free(&sn), ib_supernet_free(&old);
    ib_status st = ib_supernet_load(&sn, v9);
    CHECK(st == IB_ERR_FORMAT && strstr(ib_errmsg(), v9) && strstr(ib_errmsg(), "version 9"), "version 9: %s",
          ib_errmsg());
    ib_sn_train_cfg c;
    ib_sn_train_cfg_default(&c);
    c.space = space_path("tiny");
    c.sampling = IB_SN_UNIFORM;
    c.base.data = data, c.base.out = v9, c.base.resume = v1;
    c.base.epochs = 1, c.base.batch = 32, c.base.res = 32, c.base.workers = 1, c.base.progress = 0;
    st = ib_train_supernet_classify(&c, &r);
    CHECK(st == IB_ERR_FORMAT && strstr(ib_errmsg(), v1) && strstr(ib_errmsg(), "--init"), "resume of version 1: %s",
          ib_errmsg());
}

// A step leaves the ops no path ran as they were (no weight decay, no momentum), as torch.optim skips a
// parameter whose grad is None; the ops the path ran move. Uniform sampling: one path, drawn from the
// stream the loop seeds with (seed, step).
TEST(supernet_step_leaves_unused_ops_alone) {
    char out[512];
    ib_sn_train_result r;
    CHECK(short_supernet_run("sn_unused", 100, IB_SN_UNIFORM, 11, 2, out, sizeof out, &r) == IB_OK && r.base.steps == 2,
          "%s", ib_errmsg());
    ib_supernet trained, init;
    ib_space sp;
    load_tiny(&sp);
    CHECK(ib_supernet_load(&trained, out) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_supernet_build(&init, &sp, 6) == IB_OK, "%s", ib_errmsg());
    ib_supernet_init_weights(&init, 11);
    int L = sp.n_layers, *choice[2];
    ib_block_op used[2][16];
    for (int st = 0; st < 2; st++) {
        choice[st] = malloc(sizeof(int) * (size_t)L);
        ib_rng pr;
        ib_rng_seed(&pr, 11, 0x5e4c0000ull + (uint64_t)st);
        ib_space_sample(&sp, IB_SAMPLE_RANDOM, &pr, choice[st]);
        for (int l = 0; l < L; l++) {
            ib_block_cfg all[512];
            ib_space_choices(&sp, l, all, 512);
            used[st][l] = all[choice[st][l]].op;
        }
    }
    int moved = 0, kept = 0;
    for (int i = 0; i < init.ps.n; i++) {
        if (init.ps.is_buffer[i]) continue;
        const ib_tensor *t0 = init.ps.t[i], *t1 = trained.ps.t[i];
        int l = -1;
        char op[16] = "";
        if (sscanf(t0->name, "features.%d.%15[a-z]", &l, op) != 2) continue;   // stem, head: always used
        l -= 1;
        if (l < 0 || l >= L) continue;
        int in_path = !strcmp(op, ib_block_op_name(used[0][l])) || !strcmp(op, ib_block_op_name(used[1][l]));
        int same = !memcmp(t0->data, t1->data, sizeof(float) * (size_t)ib_numel(t0));
        CHECK(in_path ? !same : same, "%s: %s (layer %d ran %s then %s)", t0->name,
              in_path ? "did not move though its op ran" : "changed though no path ran its op", l,
              ib_block_op_name(used[0][l]), ib_block_op_name(used[1][l]));
        moved += !same, kept += same;
    }
    CHECK(moved > 0 && kept > 0, "moved %d kept %d: both kinds should occur", moved, kept);
    free(choice[0]);
    free(choice[1]);
    ib_supernet_free(&trained);
    ib_supernet_free(&init);
    ib_space_free(&sp);
}

// Fair sampling runs every op of every layer in each step: after one step every op's weights moved (the
// tiny space's layers allow ibn, fused, tucker, gcibn and skip, so a step runs five paths).
TEST(fair_step_trains_every_op) {
    char out[512];
    ib_sn_train_result r;
    CHECK(short_supernet_run("sn_fair", 64, IB_SN_FAIR, 5, 1, out, sizeof out, &r) == IB_OK && r.base.steps == 1, "%s",
          ib_errmsg());
    CHECK(isfinite(r.base.last_loss), "loss %g", r.base.last_loss);
    ib_supernet trained, init;
    ib_space sp;
    load_tiny(&sp);
    CHECK(ib_supernet_load(&trained, out) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_supernet_build(&init, &sp, 6) == IB_OK, "%s", ib_errmsg());
    ib_supernet_init_weights(&init, 5);
    int checked = 0;
    for (int i = 0; i < init.ps.n; i++) {
        if (init.ps.is_buffer[i]) continue;
        const ib_tensor *t0 = init.ps.t[i], *t1 = trained.ps.t[i];
        int l = -1;
        char op[16] = "";
        if (sscanf(t0->name, "features.%d.%15[a-z]", &l, op) != 2) continue;
        CHECK(memcmp(t0->data, t1->data, sizeof(float) * (size_t)ib_numel(t0)) != 0, "%s did not move in a fair step",
              t0->name);
        checked++;
    }
    CHECK(checked > 20, "only %d op tensors found", checked);
    CHECK(!strcmp(trained.path_grads, "sum"), "a default fair run records path_grads '%s', not sum", trained.path_grads);
    ib_supernet_free(&trained);
    ib_supernet_free(&init);
    ib_space_free(&sp);
}

static double json_num(const char *text, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = text ? strstr(text, pat) : NULL;
    return p ? atof(p + strlen(pat)) : NAN;
}

TEST(cli_supernet_eval_extract_eval_finetune) {
    const char *bin = test_ibnas_bin();
    const char *d = test_tmpdir();
    char cmd[4096], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd,
             "%s synth --out %s/c_train.h5 --n 400 --size 32 --seed 1 && %s synth --out %s/c_val.h5 --n 120 --size 32 "
             "--seed 2 && %s supernet train --space search/spaces/tiny.space.json --data %s/c_train.h5 --out %s/c_sn.h5 "
             "--epochs 1 --batch 32 --res 32 --warmup 0.2 --workers 1 --quiet --seed 3",
             bin, d, bin, d, bin, d, d);
    int rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "supernet train failed (%d): %s", rc, err);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s space sample --space search/spaces/tiny.space.json --seed 4 --out %s/c_a.arch.json", bin,
             d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "space sample failed (%d): %s", rc, err);
    free(out), free(err);
    snprintf(cmd, sizeof cmd,
             "%s supernet eval --supernet %s/c_sn.h5 --arch %s/c_a.arch.json --data %s/c_val.h5 --calib-batches 3 "
             "--calib-batch 16 --workers 1 --json", bin, d, d, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "supernet eval failed (%d): %s", rc, err);
    double t1 = json_num(out, "top1"), l1 = json_num(out, "loss");
    CHECK(isfinite(t1) && isfinite(l1) && json_num(out, "images") == 120, "supernet eval printed: %s", out);
    free(out), free(err);
    snprintf(cmd, sizeof cmd,
             "%s extract --supernet %s/c_sn.h5 --arch %s/c_a.arch.json --calib-batches 3 --calib-batch 16 --workers 1 "
             "--out %s/c_sub.h5 && %s eval --model %s/c_sub.h5 --data %s/c_val.h5 --workers 1 --json",
             bin, d, d, d, bin, d, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "extract + eval failed (%d): %s", rc, err);
    double t2 = json_num(out, "top1"), l2 = json_num(out, "loss");
    CHECK(t1 == t2 && fabs(l1 - l2) <= 1e-6, "supernet eval top1 %g loss %.6f, eval of the extracted %g %.6f", t1, l1, t2,
          l2);
    free(out), free(err);
    // Fine-tuning starts from the extracted weights: a 0-step-long run would evaluate the same; one
    // epoch at a small learning rate moves the loss but keeps the network.
    snprintf(cmd, sizeof cmd,
             "%s train --init %s/c_sub.h5 --data %s/c_train.h5 --val %s/c_val.h5 --epochs 1 --batch 32 --res 32 "
             "--lr 0.01 --warmup 0.2 --workers 1 --quiet --json --out %s/c_ft.h5", bin, d, d, d, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "train --init failed (%d): %s", rc, err);
    CHECK(isfinite(json_num(out, "val_top1")), "train --init printed: %s", out);
    free(out), free(err);
    // Errors: an arch of another space, a checkpoint given as a supernet.
    snprintf(cmd, sizeof cmd,
             "%s supernet eval --supernet %s/c_sn.h5 --arch examples/archs/synth_small.arch.json --data %s/c_val.h5",
             bin, d, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 1 && strstr(err, "synth_small.arch.json"), "arch outside the space: rc %d, %s", rc, err);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s supernet eval --supernet %s/c_sub.h5 --arch %s/c_a.arch.json --data %s/c_val.h5", bin,
             d, d, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 1 && strstr(err, "not an ibnas supernet") && strstr(err, "c_sub.h5"), "checkpoint as supernet: rc %d, %s",
          rc, err);
    free(out), free(err);
}

// The sharing rules of docs/SEARCH.md, read off the path's tensors: a smaller kernel is the centre of the
// largest, a smaller expansion the first channels, and a g-group gcibn conv takes the diagonal blocks of
// the dense weight (group j: input channels [j cin/g, (j+1) cin/g), output rows from j hid_max/g).
TEST(sharing_rules_slice_as_documented) {
    ib_space sp;
    load_tiny(&sp);
    ib_supernet sn;
    CHECK(ib_supernet_build(&sn, &sp, 6) == IB_OK, "%s", ib_errmsg());
    ib_supernet_init_weights(&sn, 2);
    int layer = 2;   // stage 1's first layer: 16 -> 24, stride 2
    ib_space_layer li = ib_space_layer_info(&sp, layer);
    ib_block_cfg all[512];
    int n = ib_space_choices(&sp, layer, all, 512), ibn = -1, gc = -1;
    for (int c = 0; c < n; c++) {
        if (all[c].op == IB_BLOCK_IBN && all[c].kernel == 3 && all[c].expand == 2) ibn = c;
        if (all[c].op == IB_BLOCK_GCIBN && all[c].kernel == 3 && all[c].expand == 2 && all[c].groups == 2) gc = c;
    }
    CHECK(ibn >= 0 && gc >= 0, "tiny space lacks ibn k3 e2 or gcibn k3 e2 g2 at layer %d", layer);
    int choice[64];
    ib_space_sample(&sp, IB_SAMPLE_SMALLEST, NULL, choice);
    ib_ctx *ctx = ib_ctx_new();
    ctx->recording = 0;
    // ibn k3 e2 inside ibn k5 e4: expansion rows, depthwise centre, projection's first input channels.
    choice[layer] = ibn;
    ib_net p;
    ib_supernet_path(ctx, &sn, choice, &p);
    const ib_block *full = &sn.layers[layer * IB_BLOCK_SKIP + IB_BLOCK_IBN], *b = &p.blocks[layer];
    int cin = li.cin, hid = cin * 2, hmax = full->stages[1].conv.cout, K = full->stages[1].conv.k;
    CHECK(K == 5 && hmax == cin * 4, "shared ibn: k %d, hidden %d", K, hmax);
    // The path's weights are views of the shared ones (no copies: convs read them in place or copy at
    // the conv); read them out in row-major order to compare.
    CHECK(b->stages[0].conv.w->data == full->stages[0].conv.w->data && b->project.w->data == full->project.w->data &&
              b->stages[1].conv.w->data == full->stages[1].conv.w->data + 6,
          "path weights alias the shared tensors");
    float *pw = malloc(sizeof(float) * (size_t)(hid * cin + hid * 9 + li.cout * hid));
    float *pe = pw, *pd = pe + hid * cin, *pp = pd + hid * 9;
    ib_tensor_read(b->stages[0].conv.w, pe), ib_tensor_read(b->stages[1].conv.w, pd), ib_tensor_read(b->project.w, pp);
    for (int o = 0; o < hid; o++)
        for (int c = 0; c < cin; c++)
            CHECK(pe[o * cin + c] == full->stages[0].conv.w->data[o * cin + c], "expand [%d,%d]", o, c);
    for (int o = 0; o < hid; o++)
        for (int a = 0; a < 3; a++)
            for (int e = 0; e < 3; e++)
                CHECK(pd[(o * 3 + a) * 3 + e] == full->stages[1].conv.w->data[(o * 5 + a + 1) * 5 + e + 1],
                      "depthwise centre [%d,%d,%d]", o, a, e);
    for (int o = 0; o < li.cout; o++)
        for (int c = 0; c < hid; c++)
            CHECK(pp[o * hid + c] == full->project.w->data[o * hmax + c], "project [%d,%d]", o, c);
    free(pw);
    // gcibn k3 e2 g2 from the dense (hmax, cin, 5, 5) weight.
    ib_ctx_reset(ctx);
    choice[layer] = gc;
    ib_supernet_path(ctx, &sn, choice, &p);
    full = &sn.layers[layer * IB_BLOCK_SKIP + IB_BLOCK_GCIBN];
    b = &p.blocks[layer];
    const ib_tensor *w = b->stages[0].conv.w;
    ib_tensor *W = full->stages[0].conv.w;
    CHECK(w->shape[0] == hid && w->shape[1] == cin / 2 && w->shape[2] == 3 && b->stages[0].conv.groups == 2, "gcibn shape");
    CHECK(W->shape[0] == hmax && W->shape[1] == cin && W->shape[2] == 5, "dense gcibn weight shape");
    // The dense weight's 5x5 kernels are centre first (search/supernet.c): a row's 3x3 centre taps of every
    // input channel, then their outer taps. Put back in the plain order, the path's weight is the centres of
    // its group blocks; read in place, each of its rows is a run of 9 cin/2 floats of the dense row.
    CHECK(W->centre_first && w->data == W->data && w->blocks == 2 && !w->ring && w->stride[1] == 9,
          "gcibn's path weight is a group-block view of the dense one's centre taps");
    CHECK(w->block_stride == (int64_t)(hmax / 2) * cin * 25 + (cin / 2) * 9, "gcibn block stride %lld",
          (long long)w->block_stride);
    float *gw = malloc(sizeof(float) * (size_t)ib_numel(w)), *plain = malloc(sizeof(float) * (size_t)ib_numel(W));
    ib_tensor_read(w, gw);
    memcpy(plain, W->data, sizeof(float) * (size_t)ib_numel(W));
    ib_centre_first_permute(plain, hmax, cin, 0);
    for (int j = 0; j < 2; j++)
        for (int r = 0; r < hid / 2; r++)
            for (int c = 0; c < cin / 2; c++)
                for (int a = 0; a < 3; a++)
                    for (int e = 0; e < 3; e++) {
                        float got = gw[(((j * hid / 2 + r) * (cin / 2) + c) * 3 + a) * 3 + e];
                        int row = j * hmax / 2 + r, ch = j * cin / 2 + c;
                        float want = plain[((row * cin + ch) * 5 + a + 1) * 5 + e + 1];
                        CHECK(got == want, "gcibn group %d row %d col %d [%d,%d]", j, r, c, a, e);
                        CHECK(W->data[(int64_t)row * cin * 25 + ch * 9 + a * 3 + e] == want,
                              "centre-first layout: row %d channel %d tap [%d,%d]", row, ch, a, e);
                    }
    // The 5x5 path (a ring view) reads the plain order back.
    ib_tensor *w5 = ib_view_centre_first(ctx, W, hid, cin / 2, 5, 2);
    float *g5 = malloc(sizeof(float) * (size_t)ib_numel(w5));
    ib_tensor_read(w5, g5);
    for (int j = 0; j < 2; j++)
        for (int r = 0; r < hid / 2; r++)
            for (int c = 0; c < cin / 2; c++)
                for (int t = 0; t < 25; t++)
                    CHECK(g5[((j * hid / 2 + r) * (cin / 2) + c) * 25 + t] ==
                              plain[((j * hmax / 2 + r) * cin + j * cin / 2 + c) * 25 + t],
                          "gcibn 5x5 group %d row %d col %d tap %d", j, r, c, t);
    free(g5), free(plain);
    free(gw);
    ib_ctx_free(ctx);
    ib_supernet_free(&sn);
    ib_space_free(&sp);
}
