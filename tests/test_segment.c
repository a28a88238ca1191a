// Segmentation (tasks/segment.c): the pixel loss against core's cross-entropy and finite differences (class
// weights, ignore index), the whole DeepLabv3+-lite network's input gradient by finite differences (dilated
// depthwise branches, image pooling, bilinear resizes, concatenations), the confusion matrix, IoU, mIoU and
// pixel accuracy against hand-computed numbers, the fast argmax's nearest upsampling, median-frequency
// weights, checkpoints (round trip, backbone reuse from a classification checkpoint), and training on
// synthetic scenes: the loss falls and mIoU rises above the untrained network's; a stopped-and-resumed run
// equals an uninterrupted one bit for bit.
#include "tests/test.h"

#include "tasks/segment.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

static const char *tiny_arch =
    "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"seg_tiny\", \"classes\": 7, \"input\": 32,"
    " \"act\": \"relu6\", \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2},"
    " \"blocks\": [{\"op\": \"ibn\", \"kernel\": 3, \"expand\": 3, \"out\": 16, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 3, \"out\": 16, \"stride\": 1},"
    "              {\"op\": \"fused\", \"kernel\": 3, \"expand\": 3, \"out\": 24, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 4, \"out\": 32, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 4, \"out\": 48, \"stride\": 2}],"
    " \"head\": {\"out\": 64, \"dropout\": 0.1}}";

static void small_head(ib_seg_head_cfg *c) {
    ib_seg_head_cfg_default(c);
    c->aspp = 16, c->low = 8, c->decoder = 16;
    c->rates[0] = 2, c->rates[1] = 3;
}

// The BiFPN head at the tiny backbone's strides 4, 8, 16 (blocks 0, 2, 3).
static void small_bifpn(ib_seg_head_cfg *c) {
    small_head(c);
    snprintf(c->kind, sizeof c->kind, "bifpn");
    c->width = 8, c->repeats = 2;
}

static void build_tiny_with(ib_net *net, ib_seg_head *head, int classes, uint64_t seed, const ib_seg_head_cfg *hc) {
    ib_arch a;
    IB_ASSERT(ib_arch_parse(&a, tiny_arch, "tiny") == IB_OK, "%s", ib_errmsg());
    IB_ASSERT(ib_seg_build(net, head, &a, classes, hc) == IB_OK, "%s", ib_errmsg());
    ib_arch_free(&a);
    ib_net_init_weights(net, seed);
}

static void build_tiny(ib_net *net, ib_seg_head *head, int classes, uint64_t seed) {
    ib_seg_head_cfg hc;
    small_head(&hc);
    build_tiny_with(net, head, classes, seed, &hc);
}

// ---------------------------------------------------------------------------------------------
// Loss

typedef struct {
    const int32_t *t;
    const float *w;
    int ignore;
} ce_args;

static ib_tensor *fwd_seg_ce(ib_ctx *ctx, ib_tensor **in, void *user) {
    const ce_args *a = user;
    return ib_seg_cross_entropy(ctx, in[0], a->t, a->w, a->ignore);
}

static void make_targets(int32_t *t, int64_t n, int classes, int ignore) {
    for (int64_t i = 0; i < n; i++) t[i] = (i * 7 + 3) % 5 == 0 ? ignore : (int32_t)((i * 5 + 1) % classes);
}

TEST(seg_ce_equals_core_cross_entropy_unweighted) {
    ib_ctx *ctx = ib_ctx_new(), *ctx2 = ib_ctx_new();   // one tape each: backward replays a whole tape
    int N = 2, C = 5, H = 4, W = 3;
    int64_t P = (int64_t)N * H * W;
    int32_t t[24];
    make_targets(t, P, C, 255);
    ib_tensor *z1 = ib_tensor_new(ctx, 4, (int[]){N, C, H, W}), *z2 = ib_tensor_new(ctx2, 4, (int[]){N, C, H, W});
    fill_normal(z1, 7, 2.0f);
    memcpy(z2->data, z1->data, sizeof(float) * (size_t)ib_numel(z1));
    z1->requires_grad = z2->requires_grad = 1;
    ctx->recording = 1;
    ib_tensor *a = ib_seg_cross_entropy(ctx, z1, t, NULL, 255);
    ib_tensor *b = ib_cross_entropy(ctx2, z2, t, 0.0f, 255);
    CHECK(fabsf(a->data[0] - b->data[0]) < 1e-5f * fabsf(b->data[0]) + 1e-6f, "loss %g, core %g", a->data[0], b->data[0]);
    CHECK(a->data[0] > 0.5f, "loss %g of random logits is implausibly small", a->data[0]);
    ib_backward(ctx, a, NULL);
    ib_backward(ctx2, b, NULL);
    double e = rel_err(z1->grad, z2->grad, ib_numel(z1));
    CHECK(e < 1e-5, "gradient differs from core's: rel err %g", e);
    ib_ctx_free(ctx);
    ib_ctx_free(ctx2);
}

TEST(seg_ce_weighted_value_and_gradcheck) {
    ib_ctx *ctx = ib_ctx_new();
    int N = 2, C = 4, H = 3, W = 3;
    int64_t P = (int64_t)N * H * W;
    int32_t t[18];
    make_targets(t, P, C, 9);
    const float w[4] = {0.5f, 2.0f, 1.0f, 3.0f};
    ib_tensor *z = ib_tensor_new(ctx, 4, (int[]){N, C, H, W});
    fill_normal(z, 11, 1.5f);
    ib_tensor *l = ib_seg_cross_entropy(ctx, z, t, w, 9);
    // By hand: sum w[t] * (logsumexp - z_t) / sum w[t] over the pixels not ignored.
    double num = 0, den = 0;
    for (int64_t p = 0; p < P; p++) {
        if (t[p] == 9) continue;
        int64_t i = p / (H * W), j = p % (H * W);
        double s = 0;
        for (int c = 0; c < C; c++) s += exp(z->data[(i * C + c) * H * W + j]);
        num += w[t[p]] * (log(s) - z->data[(i * C + t[p]) * H * W + j]);
        den += w[t[p]];
    }
    CHECK(fabs(l->data[0] - num / den) < 1e-5 * fabs(num / den), "loss %g, by hand %g", l->data[0], num / den);
    ce_args a = {t, w, 9};
    char msg[256];
    gc_opts o = {1e-2, 1e-3, 0};
    CHECK(gradcheck(fwd_seg_ce, &a, 1, &z, (int[]){1}, o, msg, sizeof msg), "%s", msg);
    // All pixels ignored: 0, and no gradient.
    int32_t all[18];
    for (int i = 0; i < 18; i++) all[i] = 9;
    CHECK(ib_seg_cross_entropy(ctx, z, all, w, 9)->data[0] == 0.0f, "all-ignored loss is not 0");
    ib_ctx_free(ctx);
}

// ---------------------------------------------------------------------------------------------
// The network's gradient

typedef struct {
    ib_net *net;
    ib_seg_head *head;
} net_args;

static ib_tensor *fwd_seg_net(ib_ctx *ctx, ib_tensor **in, void *user) {
    net_args *a = user;
    ctx->training = 0;   // BN as an affine map: finite differences see the same function
    return ib_seg_forward(ctx, a->net, a->head, in[0], 1);
}

// The whole network's input gradient by finite differences, BN in eval mode with running statistics away
// from the defaults (so BN is not the identity).
static int network_gradcheck(const ib_seg_head_cfg *hc, double tol, char *msg, size_t msgn) {
    ib_net net;
    ib_seg_head head;
    build_tiny_with(&net, &head, 5, 3, hc);
    ib_rng r;
    ib_rng_seed(&r, 5, 0);
    for (int i = 0; i < net.ps.n; i++)
        if (net.ps.is_buffer[i] && strstr(net.ps.t[i]->name, "running_var"))
            for (int64_t k = 0; k < ib_numel(net.ps.t[i]); k++) net.ps.t[i]->data[k] = 0.5f + ib_rng_uniform(&r);
    ib_ctx *ctx = ib_ctx_new();
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){1, 3, 32, 24});
    fill_normal(x, 9, 1.0f);
    net_args a = {&net, &head};
    ctx->training = 0;
    ib_tensor *z = ib_seg_forward(ctx, &net, &head, x, 1), *zl = ib_seg_forward(ctx, &net, &head, x, 0);
    int ok = 1;
    if (z->shape[0] != 1 || z->shape[1] != 5 || z->shape[2] != 32 || z->shape[3] != 24)
        ok = 0, snprintf(msg, msgn, "logits shape");
    else if (zl->shape[2] != 8 || zl->shape[3] != 6)
        ok = 0, snprintf(msg, msgn, "low-resolution logits %dx%d, expected 8x6", zl->shape[2], zl->shape[3]);
    gc_opts o = {3e-3, tol, 64};
    if (ok) ok = gradcheck(fwd_seg_net, &a, 1, &x, (int[]){1}, o, msg, msgn);
    ib_ctx_free(ctx);
    ib_net_free(&net);
    return ok;
}

TEST(seg_network_input_gradcheck) {
    ib_seg_head_cfg hc;
    small_head(&hc);
    char msg[256];
    CHECK(network_gradcheck(&hc, 1e-2, msg, sizeof msg), "%s", msg);   // a whole network in float32: 7.2e-3 worst
}

// BiFPN: lateral convs, weighted fusions, nearest upsampling, max-pool downsampling, the merge of all levels.
TEST(seg_bifpn_network_input_gradcheck) {
    ib_seg_head_cfg hc;
    small_bifpn(&hc);
    char msg[256];
    // Its input gradient is 10x smaller than DeepLab's (RMS 2.5e-3), so float32 rounding weighs more: 1.1e-2 worst
    // at h 3e-3 (1e-3: 2.6e-3 rounding; 1e-2: max-pool and ReLU kinks crossed)
    CHECK(network_gradcheck(&hc, 2e-2, msg, sizeof msg), "%s", msg);
}

TEST(seg_head_taps_mobilenetv2) {
    ib_arch a;
    ib_arch_mobilenetv2(&a, 0.5f, 1000);
    ib_seg_head_cfg hc;
    ib_seg_head_cfg_default(&hc);
    ib_net net;
    ib_seg_head head;
    CHECK(ib_seg_build(&net, &head, &a, 12, &hc) == IB_OK, "%s", ib_errmsg());
    // torchvision's features.3 (stride 4) and features.13 (stride 16, the last 96-channel block at width 1).
    CHECK(head.low_block == 2 && head.high_block == 12, "taps %d, %d", head.low_block, head.high_block);
    CHECK(net.arch.n_blocks == 13 && !net.has_head && !net.fc.w, "backbone cut at the ASPP's block");
    CHECK(ib_params_find(&net.ps, "seg.classifier.weight")->shape[0] == 12, "classifier width");
    ib_net_free(&net);
    // BiFPN: features.3, features.6 and features.13 (strides 4, 8, 16)
    snprintf(hc.kind, sizeof hc.kind, "bifpn");
    CHECK(ib_seg_build(&net, &head, &a, 12, &hc) == IB_OK, "%s", ib_errmsg());
    CHECK(head.levels == 3 && head.level_block[0] == 2 && head.level_block[1] == 5 && head.level_block[2] == 12,
          "levels %d: blocks %d, %d, %d", head.levels, head.level_block[0], head.level_block[1], head.level_block[2]);
    CHECK(net.arch.n_blocks == 13 && ib_params_find(&net.ps, "seg.bifpn.1.up.2.fuse.weight")->shape[0] == 2,
          "the coarsest bottom-up node fuses 2 inputs");
    ib_net_free(&net);
    hc.high_stride = 64;
    CHECK(ib_seg_build(&net, &head, &a, 12, &hc) == IB_ERR_ARG && strstr(ib_errmsg(), "stride 64"), "%s", ib_errmsg());
    ib_net_free(&net);
    snprintf(hc.kind, sizeof hc.kind, "deeplab");
    CHECK(ib_seg_build(&net, &head, &a, 12, &hc) == IB_ERR_ARG && strstr(ib_errmsg(), "stride 64"), "%s", ib_errmsg());
    ib_net_free(&net);
    ib_arch_free(&a);
}

// ---------------------------------------------------------------------------------------------
// Metrics

TEST(seg_confusion_iou_by_hand) {
    // gt:   0 0 1 1 2 ign 0      (ignore 255)
    // pred: 0 1 1 1 0 2   0
    const int32_t gt[7] = {0, 0, 1, 1, 2, 255, 0}, pred[7] = {0, 1, 1, 1, 0, 2, 0};
    for (int classes = 3; classes <= 4; classes++) {
        ib_seg_metrics m;
        CHECK(ib_seg_metrics_alloc(&m, classes) == IB_OK, "alloc");
        CHECK(ib_seg_confusion_add(m.conf, classes, gt, pred, 7, 255) == -1, "no bad label");
        ib_seg_metrics_finish(&m);
        // conf rows (gt) x cols (pred): [2 1 0; 0 2 0; 1 0 0]
        CHECK(m.conf[0] == 2 && m.conf[1] == 1 && m.conf[classes + 1] == 2 && m.conf[2 * classes] == 1, "confusion");
        CHECK(m.pixels == 6, "pixels %lld", (long long)m.pixels);
        // IoU0 = 2 / (3 + 3 - 2) = 0.5, IoU1 = 2 / (2 + 3 - 2) = 2/3, IoU2 = 0 / (1 + 0 - 0) = 0
        CHECK(fabs(m.iou[0] - 0.5) < 1e-12 && fabs(m.iou[1] - 2.0 / 3) < 1e-12 && m.iou[2] == 0, "iou %g %g %g",
              m.iou[0], m.iou[1], m.iou[2]);
        if (classes == 4) CHECK(isnan(m.iou[3]), "absent class: NaN");
        CHECK(fabs(m.miou - (0.5 + 2.0 / 3) / 3) < 1e-12, "mIoU %g (classes %d)", m.miou, classes);
        CHECK(fabs(m.pixel_acc - 4.0 / 6) < 1e-12, "pixel acc %g", m.pixel_acc);
        ib_seg_metrics_free(&m);
    }
    ib_seg_metrics m;
    ib_seg_metrics_alloc(&m, 2);
    const int32_t bad[3] = {0, 5, 1};
    CHECK(ib_seg_confusion_add(m.conf, 2, bad, pred, 3, 255) == 1, "a label outside the classes is reported");
    ib_seg_metrics_free(&m);
}

TEST(seg_argmax_full_and_fast) {
    ib_ctx *ctx = ib_ctx_new();
    // z: 1 image, 3 classes, 2 x 2; the argmax map [[2, 0], [1, 0]] (pixel (1,1): a tie of 0 and 1 -> 0).
    ib_tensor *z = ib_tensor_new(ctx, 4, (int[]){1, 3, 2, 2});
    const float v[12] = {0, 5, 1, 4, /* class 1 */ 1, 2, 3, 4, /* class 2 */ 3, 1, 2, 0};
    memcpy(z->data, v, sizeof v);
    int32_t lab[4], up[16], scratch[4];
    ib_seg_argmax(z, lab);
    CHECK(lab[0] == 2 && lab[1] == 0 && lab[2] == 1 && lab[3] == 0, "argmax %d %d %d %d", lab[0], lab[1], lab[2], lab[3]);
    ib_seg_argmax_upsample(z, 4, 4, scratch, up);
    const int32_t want[16] = {2, 2, 0, 0, 2, 2, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0};
    CHECK(!memcmp(up, want, sizeof want), "nearest upsampling of the labels");
    // The same as resizing the logits nearest, then the argmax.
    ib_tensor *zn = ib_resize_nearest(ctx, z, 3, 5);
    int32_t a[15], b[15];
    ib_seg_argmax(zn, a);
    ib_seg_argmax_upsample(z, 3, 5, scratch, b);
    CHECK(!memcmp(a, b, sizeof a), "fast argmax equals argmax of nearest-resized logits");
    ib_ctx_free(ctx);
}

TEST(seg_median_frequency_weights) {
    char path[512];
    snprintf(path, sizeof path, "%s/mf.h5", test_tmpdir());
    CHECK(ib_synth_write_pack(path, 12, 32, 4, 1, NULL, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    ib_dataset *ds;
    CHECK(ib_dataset_load(&ds, path, NULL) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_seg_dataset_classes(ds) == 7, "synthetic scenes: 6 shapes and background, got %d", ib_seg_dataset_classes(ds));
    float w[7];
    CHECK(ib_seg_median_freq_weights(ds, 7, 0, w) == IB_OK, "%s", ib_errmsg());
    // Recount: freq_c = pixels of c / pixels of images holding c; w_c * freq_c is the same median for all.
    double pix[7] = {0}, img[7] = {0};
    for (int i = 0; i < 12; i++) {
        ib_sample s;
        memset(&s, 0, sizeof s);
        CHECK(ib_dataset_get(ds, i, &s) == IB_OK && s.mask, "sample %d", i);
        int cnt[7] = {0};
        for (int p = 0; p < s.h * s.w; p++) cnt[s.mask[p]]++;
        for (int c = 0; c < 7; c++)
            if (cnt[c]) pix[c] += cnt[c], img[c] += s.h * s.w;
        ib_sample_free(&s);
    }
    double prod = -1;
    int present = 0;
    for (int c = 0; c < 7; c++) {
        if (!pix[c]) {
            CHECK(w[c] == 0, "absent class %d weight %g", c, w[c]);
            continue;
        }
        present++;
        double q = w[c] * pix[c] / img[c];
        if (prod < 0) prod = q;
        CHECK(fabs(q - prod) < 1e-5 * prod, "class %d: w * freq %g, class 0's %g", c, q, prod);
    }
    CHECK(present >= 5 && w[6] < 1.0f, "background (the most frequent class) weighs under 1: %g", w[6]);
    ib_dataset_close(ds);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

// A network and its reloaded copy: the same weights, and the same logits on a fixed input.
static int same_after_loading(ib_net *net, const ib_seg_head *head, ib_net *back, const ib_seg_head *head2, char *msg,
                              size_t msgn) {
    if (back->ps.numel_params != net->ps.numel_params ||
        memcmp(back->ps.data, net->ps.data, sizeof(float) * (size_t)net->ps.numel_params)) {
        snprintf(msg, msgn, "weights differ after loading");
        return 0;
    }
    ib_ctx *ctx = ib_ctx_new();
    ctx->training = 0;
    ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, 32, 32});
    fill_normal(x, 2, 1.0f);
    ib_tensor *z1 = ib_seg_forward(ctx, net, head, x, 1), *z2 = ib_seg_forward(ctx, back, head2, x, 1);
    int same = !memcmp(z1->data, z2->data, sizeof(float) * (size_t)ib_numel(z1));
    if (!same) snprintf(msg, msgn, "logits differ after loading");
    ib_ctx_free(ctx);
    return same;
}

TEST(seg_checkpoint_round_trip_and_backbone_reuse) {
    char seg_path[512], cls_path[512];
    snprintf(seg_path, sizeof seg_path, "%s/seg.h5", test_tmpdir());
    snprintf(cls_path, sizeof cls_path, "%s/cls.h5", test_tmpdir());
    ib_net net, back;
    ib_seg_head head, head2;
    build_tiny(&net, &head, 7, 21);
    CHECK(ib_seg_save(&net, &head, seg_path, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_seg_is_checkpoint(seg_path), "seg_head attribute");
    CHECK(ib_seg_load(&back, &head2, seg_path) == IB_OK, "%s", ib_errmsg());
    CHECK(head2.classes == 7 && head2.cfg.aspp == 16 && head2.cfg.rates[1] == 3 && head2.low_block == head.low_block,
          "head round trip");
    char msg[128];
    CHECK(same_after_loading(&net, &head, &back, &head2, msg, sizeof msg), "%s", msg);
    ib_net_free(&back);
    // ib_ckpt_load reads the backbone alone (task segment: no classifier).
    ib_net bb;
    CHECK(ib_ckpt_load(&bb, seg_path) == IB_OK, "%s", ib_errmsg());
    CHECK(!strcmp(bb.arch.task, "segment") && !bb.fc.w, "backbone of a segmentation checkpoint");
    ib_net_free(&bb);

    // A classification checkpoint: still loads as before, and its backbone seeds a segmentation network.
    ib_arch a;
    CHECK(ib_arch_parse(&a, tiny_arch, "tiny") == IB_OK, "%s", ib_errmsg());
    ib_net cls;
    CHECK(ib_net_build(&cls, &a) == IB_OK, "%s", ib_errmsg());
    ib_net_init_weights(&cls, 99);
    CHECK(ib_ckpt_save(&cls, cls_path, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    CHECK(!ib_seg_is_checkpoint(cls_path), "a classification checkpoint is not a segmentation one");
    ib_net cls2;
    CHECK(ib_ckpt_load(&cls2, cls_path) == IB_OK && cls2.fc.w, "classification checkpoint loads with its classifier");
    ib_net_free(&cls2);
    int copied = 0;
    CHECK(ib_seg_init_from(&net, cls_path, &copied) == IB_OK, "%s", ib_errmsg());
    int backbone = 0;
    for (int i = 0; i < net.ps.n; i++) backbone += strncmp(net.ps.t[i]->name, "seg.", 4) != 0;
    CHECK(copied == backbone, "copied %d tensors, the backbone has %d", copied, backbone);
    ib_tensor *w0 = ib_params_find(&net.ps, "features.4.conv.0.0.weight");
    ib_tensor *w1 = ib_params_find(&cls.ps, "features.4.conv.0.0.weight");
    CHECK(w0 && w1 && !memcmp(w0->data, w1->data, sizeof(float) * (size_t)ib_numel(w0)), "backbone weights copied");
    ib_arch_free(&a);
    ib_net_free(&cls);
    ib_net_free(&net);
}

// ---------------------------------------------------------------------------------------------
// Training

static char train_pack[512], val_pack[512], arch_path[512];

static void fixtures(void) {
    if (train_pack[0]) return;
    snprintf(train_pack, sizeof train_pack, "%s/seg_train.h5", test_tmpdir());
    snprintf(val_pack, sizeof val_pack, "%s/seg_val.h5", test_tmpdir());
    snprintf(arch_path, sizeof arch_path, "%s/seg_tiny.arch.json", test_tmpdir());
    IB_ASSERT(ib_synth_write_pack(train_pack, 256, 32, 1, 1, NULL, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    IB_ASSERT(ib_synth_write_pack(val_pack, 64, 32, 2, 1, NULL, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    FILE *f = fopen(arch_path, "w");
    IB_ASSERT(f && fputs(tiny_arch, f) >= 0 && fclose(f) == 0, "cannot write %s", arch_path);
}

static void tiny_cfg(ib_seg_train_cfg *c, const char *out) {
    ib_seg_train_cfg_default(c);
    small_head(&c->head);
    c->base.arch = arch_path;
    c->base.data = train_pack;
    c->base.val = val_pack;
    c->base.out = out;
    c->base.res = 32;
    c->base.batch = 16;
    c->base.lr = 0.1f;
    c->base.optim.weight_decay = 0;
    c->base.warmup_epochs = 0.2f;
    c->base.progress = 0;
    c->base.workers = 1;
    c->base.threads = 1;
    c->base.seed = 5;
}

TEST(seg_training_learns) {
    fixtures();
    char out[512];
    snprintf(out, sizeof out, "%s/learn.h5", test_tmpdir());
    ib_seg_train_cfg c;
    tiny_cfg(&c, out);
    c.base.epochs = 6;
    // The untrained network's numbers.
    ib_net net;
    ib_seg_head head;
    ib_arch a;
    CHECK(ib_arch_load(&a, arch_path) == IB_OK, "%s", ib_errmsg());
    ib_seg_head_cfg hc = c.head;
    hc.in_h = hc.in_w = 32;
    CHECK(ib_seg_build(&net, &head, &a, 7, &hc) == IB_OK, "%s", ib_errmsg());
    ib_arch_free(&a);
    ib_net_init_weights(&net, c.base.seed);
    ib_dataset *val;
    CHECK(ib_dataset_load(&val, val_pack, NULL) == IB_OK, "%s", ib_errmsg());
    ib_seg_eval_cfg ec;
    ib_seg_eval_cfg_default(&ec);
    ec.workers = 1;
    ib_seg_metrics m0;
    CHECK(ib_eval_segment_net(&net, &head, val, &ec, &m0) == IB_OK, "%s", ib_errmsg());
    ib_net_free(&net);

    double t0 = ib_time_s();
    ib_seg_train_result r;
    CHECK(ib_train_segment(&c, &r) == IB_OK, "%s", ib_errmsg());
    double dt = ib_time_s() - t0;
    CHECK(ib_seg_load(&net, &head, out) == IB_OK, "%s", ib_errmsg());
    ib_seg_metrics m1;
    CHECK(ib_eval_segment_net(&net, &head, val, &ec, &m1) == IB_OK, "%s", ib_errmsg());
    ec.fast_argmax = 1;
    ib_seg_metrics mf;
    CHECK(ib_eval_segment_net(&net, &head, val, &ec, &mf) == IB_OK, "%s", ib_errmsg());
    fprintf(stderr, "  untrained mIoU %.3f loss %.3f; trained (%.1fs) mIoU %.3f (fast argmax %.3f) pixel acc %.3f loss %.3f\n",
            m0.miou, m0.loss, dt, m1.miou, mf.miou, m1.pixel_acc, m1.loss);
    CHECK(fabs(m1.miou - r.val_miou) < 1e-9, "evaluation of the checkpoint %g equals training's own %g", m1.miou,
          r.val_miou);
    CHECK(m1.loss < 0.7 * m0.loss, "loss %g not well below the untrained %g", m1.loss, m0.loss);
    CHECK(m1.miou > 2 * m0.miou && m1.miou > 0.08, "mIoU %g vs untrained %g", m1.miou, m0.miou);
    CHECK(mf.miou > 0.5 * m1.miou, "fast argmax mIoU %g", mf.miou);
    ib_seg_metrics_free(&m0);
    ib_seg_metrics_free(&m1);
    ib_seg_metrics_free(&mf);
    ib_dataset_close(val);
    ib_net_free(&net);
}

TEST(seg_resume_equals_uninterrupted) {
    fixtures();
    char full[512], part[512];
    snprintf(full, sizeof full, "%s/full.h5", test_tmpdir());
    snprintf(part, sizeof part, "%s/part.h5", test_tmpdir());
    ib_seg_train_cfg c;
    tiny_cfg(&c, full);
    c.base.epochs = 2;
    c.base.val = NULL;
    c.class_weights = "median";
    c.aug = "scale";
    ib_seg_train_result r;
    CHECK(ib_train_segment(&c, &r) == IB_OK, "%s", ib_errmsg());
    // Stopped at step 11 (mid epoch 1 of 16 steps), then at 21 (epoch 2), then to the end.
    tiny_cfg(&c, part);
    c.base.epochs = 2;
    c.base.val = NULL;
    c.class_weights = "median";
    c.aug = "scale";
    c.base.max_steps = 11;
    CHECK(ib_train_segment(&c, &r) == IB_OK && r.base.steps == 11, "%s", ib_errmsg());
    c.base.resume = part;
    c.base.max_steps = 10;
    CHECK(ib_train_segment(&c, &r) == IB_OK && r.base.steps == 21, "%s", ib_errmsg());
    c.base.max_steps = 0;
    CHECK(ib_train_segment(&c, &r) == IB_OK && r.base.steps == 32, "steps %ld: %s", r.base.steps, ib_errmsg());
    ib_net a, b;
    ib_seg_head ha, hb;
    CHECK(ib_seg_load(&a, &ha, full) == IB_OK && ib_seg_load(&b, &hb, part) == IB_OK, "%s", ib_errmsg());
    CHECK(!memcmp(a.ps.data, b.ps.data, sizeof(float) * (size_t)a.ps.numel_params), "weights differ after resuming");
    CHECK(!memcmp(a.ps.buf, b.ps.buf, sizeof(float) * (size_t)a.ps.numel_buffers), "BN statistics differ");
    ib_net_free(&a);
    ib_net_free(&b);
    // The log has one row per epoch.
    char log[600];
    snprintf(log, sizeof log, "%s.csv", part);
    char *text = test_read_file(log);
    int rows = 0;
    for (char *p = text; *p; p++) rows += *p == '\n';
    CHECK(rows == 3 && strstr(text, "val_miou"), "log: %s", text);
    free(text);
}

// The BiFPN head: checkpoint round trip (head config, weights, logits), then a stopped-and-resumed run
// equal bit for bit to an uninterrupted one.
TEST(seg_bifpn_round_trip_and_resume) {
    fixtures();
    char path[512], full[512], part[512];
    snprintf(path, sizeof path, "%s/bifpn_rt.h5", test_tmpdir());
    snprintf(full, sizeof full, "%s/bifpn_full.h5", test_tmpdir());
    snprintf(part, sizeof part, "%s/bifpn_part.h5", test_tmpdir());
    ib_seg_head_cfg hc;
    small_bifpn(&hc);
    hc.repeats = 3, hc.width = 12;
    ib_net net, back;
    ib_seg_head head, head2;
    build_tiny_with(&net, &head, 7, 4, &hc);
    ib_tensor *fw = ib_params_find(&net.ps, "seg.bifpn.2.up.1.fuse.weight");
    CHECK(fw && ib_numel(fw) == 3 && fw->data[0] == 1.0f, "fusion weights start at 1");
    fw->data[1] = 0.25f;   // a value the loader must bring back, not the default
    CHECK(ib_seg_save(&net, &head, path, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_seg_load(&back, &head2, path) == IB_OK, "%s", ib_errmsg());
    CHECK(!strcmp(head2.cfg.kind, "bifpn") && head2.cfg.repeats == 3 && head2.cfg.width == 12 && head2.levels == 3 &&
          head2.level_block[1] == head.level_block[1], "head round trip: %s, %d repeats, width %d, %d levels",
          head2.cfg.kind, head2.cfg.repeats, head2.cfg.width, head2.levels);
    char msg[128];
    CHECK(same_after_loading(&net, &head, &back, &head2, msg, sizeof msg), "%s", msg);
    ib_net_free(&back);
    ib_net_free(&net);

    ib_seg_train_cfg c;
    tiny_cfg(&c, full);
    small_bifpn(&c.head);
    c.base.epochs = 2;
    c.base.val = NULL;
    c.base.optim.weight_decay = 1e-4f;
    ib_seg_train_result r;
    CHECK(ib_train_segment(&c, &r) == IB_OK && r.base.steps == 32, "%s", ib_errmsg());
    tiny_cfg(&c, part);
    small_bifpn(&c.head);
    c.base.epochs = 2;
    c.base.val = NULL;
    c.base.optim.weight_decay = 1e-4f;
    c.base.max_steps = 19;
    CHECK(ib_train_segment(&c, &r) == IB_OK && r.base.steps == 19, "%s", ib_errmsg());
    c.base.resume = part;
    c.base.max_steps = 0;
    CHECK(ib_train_segment(&c, &r) == IB_OK && r.base.steps == 32, "steps %ld: %s", r.base.steps, ib_errmsg());
    ib_net a, b;
    ib_seg_head ha, hb;
    CHECK(ib_seg_load(&a, &ha, full) == IB_OK && ib_seg_load(&b, &hb, part) == IB_OK, "%s", ib_errmsg());
    CHECK(!strcmp(hb.cfg.kind, "bifpn"), "resumed head %s", hb.cfg.kind);
    CHECK(!memcmp(a.ps.data, b.ps.data, sizeof(float) * (size_t)a.ps.numel_params), "weights differ after resuming");
    CHECK(!memcmp(a.ps.buf, b.ps.buf, sizeof(float) * (size_t)a.ps.numel_buffers), "BN statistics differ");
    ib_tensor *mw = ib_params_find(&a.ps, "seg.bifpn.merge.weight");
    CHECK(mw && (mw->data[0] != 1.0f || mw->data[1] != 1.0f), "the merge weights did not train");
    ib_net_free(&a);
    ib_net_free(&b);
}

TEST(seg_training_errors) {
    fixtures();
    char out[512], cls_pack[512];
    snprintf(out, sizeof out, "%s/err.h5", test_tmpdir());
    snprintf(cls_pack, sizeof cls_pack, "%s/nomask.h5", test_tmpdir());
    CHECK(ib_synth_write_pack(cls_pack, 8, 32, 1, 0, NULL, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    ib_seg_train_cfg c;
    tiny_cfg(&c, out);
    c.base.data = cls_pack;
    ib_seg_train_result r;
    CHECK(ib_train_segment(&c, &r) == IB_ERR_FORMAT && strstr(ib_errmsg(), "nomask.h5") && strstr(ib_errmsg(), "masks"),
          "%s", ib_errmsg());
    tiny_cfg(&c, out);
    c.base.classes = 5;
    CHECK(ib_train_segment(&c, &r) == IB_ERR_ARG && strstr(ib_errmsg(), "--classes 5"), "%s", ib_errmsg());
    tiny_cfg(&c, out);
    c.class_weights = "inverse";
    CHECK(ib_train_segment(&c, &r) == IB_ERR_ARG && strstr(ib_errmsg(), "inverse"), "%s", ib_errmsg());
}

// ---------------------------------------------------------------------------------------------
// The verbs

TEST(seg_cli_train_and_eval) {
    fixtures();
    const char *bin = test_ibnas_bin();
    char out[512], cmd[3000];
    snprintf(out, sizeof out, "%s/cli.h5", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s train --task segment --head deeplab --arch %s --data %s --val %s --out %s --epochs 1 --batch 16 "
             "--res 32 --lr 0.1 --warmup 0.2 --threads 1 --workers 1 --class-weights median --quiet --json",
             bin, arch_path, train_pack, val_pack, out);
    char *txt = NULL;
    int rc = test_run(cmd, &txt, NULL);
    json_t *j = json_loads(txt ? txt : "", 0, NULL);
    double miou = j ? json_number_value(json_object_get(j, "val_miou")) : -2;
    int steps = j ? (int)json_integer_value(json_object_get(j, "steps")) : -1;
    json_decref(j);
    free(txt);
    CHECK(rc == 0 && steps == 16 && miou > 0 && miou <= 1, "train: exit %d, steps %d, val_miou %g", rc, steps, miou);
    for (int fast = 0; fast < 2; fast++) {
        snprintf(cmd, sizeof cmd, "%s eval --task segment --model %s --data %s --threads 1 --json%s", bin, out, val_pack,
                 fast ? " --fast-argmax" : "");
        rc = test_run(cmd, &txt, NULL);
        j = json_loads(txt ? txt : "", 0, NULL);
        json_t *iou = j ? json_object_get(j, "iou") : NULL;
        double m = j ? json_number_value(json_object_get(j, "miou")) : -2;
        double acc = j ? json_number_value(json_object_get(j, "pixel_acc")) : -2;
        int n_iou = iou ? (int)json_array_size(iou) : -1;
        double images = j ? (double)json_integer_value(json_object_get(j, "images")) : -1;
        json_decref(j);
        free(txt);
        CHECK(rc == 0 && n_iou == 7 && images == 64 && acc > 0 && acc <= 1, "eval%s: exit %d, %d IoUs, %g images",
              fast ? " --fast-argmax" : "", rc, n_iou, images);
        if (!fast) CHECK(fabs(m - miou) < 1e-5, "eval mIoU %g, training's %g", m, miou);
    }
    // A segmentation model under --task classify: an error, not a crash.
    snprintf(cmd, sizeof cmd, "%s eval --task classify --model %s --data %s", bin, out, val_pack);
    char *err = NULL;
    rc = test_run(cmd, NULL, &err);
    CHECK(rc == 1 || rc == 2, "eval --task classify of a segmentation model: exit %d: %s", rc, err);
    CHECK(strstr(err, "segmentation"), "message: %s", err);
    free(err);
}

// The verbs on a BiFPN model: train (its options), eval (training's mIoU again), predict, and export (its
// ONNX Runtime parity: tests/test_export.c).
TEST(seg_bifpn_cli) {
    fixtures();
    const char *bin = test_ibnas_bin();
    char out[512], onnx[600], img_dir[600], pred_dir[600], cmd[3600];
    snprintf(out, sizeof out, "%s/cli_bifpn.h5", test_tmpdir());
    snprintf(onnx, sizeof onnx, "%s/cli_bifpn.onnx", test_tmpdir());
    snprintf(img_dir, sizeof img_dir, "%s/bifpn_images", test_tmpdir());
    snprintf(pred_dir, sizeof pred_dir, "%s/bifpn_pred", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s train --task segment --head bifpn --head-width 12 --bifpn-repeats 1 --low-stride 8 --high-stride 32 "
             "--arch %s --data %s --val %s --out %s --epochs 1 --batch 16 --res 32 --lr 0.1 --warmup 0.2 --threads 1 "
             "--workers 1 --quiet --json", bin, arch_path, train_pack, val_pack, out);
    char *txt = NULL;
    int rc = test_run(cmd, &txt, NULL);
    json_t *j = json_loads(txt ? txt : "", 0, NULL);
    double miou = j ? json_number_value(json_object_get(j, "val_miou")) : -2;
    json_decref(j);
    free(txt);
    CHECK(rc == 0 && miou > 0 && miou <= 1, "train: exit %d, val_miou %g", rc, miou);
    ib_net net;
    ib_seg_head head;
    CHECK(ib_seg_load(&net, &head, out) == IB_OK, "%s", ib_errmsg());
    // strides 8..32 of the tiny backbone: blocks 2, 3, 4
    CHECK(!strcmp(head.cfg.kind, "bifpn") && head.cfg.width == 12 && head.cfg.repeats == 1 && head.levels == 3 &&
          head.level_block[0] == 2 && head.level_block[2] == 4, "%s head, width %d, %d repeats, %d levels from block %d",
          head.cfg.kind, head.cfg.width, head.cfg.repeats, head.levels, head.level_block[0]);
    ib_net_free(&net);
    snprintf(cmd, sizeof cmd, "%s eval --task segment --model %s --data %s --threads 1 --json", bin, out, val_pack);
    rc = test_run(cmd, &txt, NULL);
    j = json_loads(txt ? txt : "", 0, NULL);
    double m = j ? json_number_value(json_object_get(j, "miou")) : -2;
    json_decref(j);
    free(txt);
    CHECK(rc == 0 && fabs(m - miou) < 1e-5, "eval: exit %d, mIoU %g, training's %g", rc, m, miou);
    CHECK(mkdir(img_dir, 0777) == 0 || errno == EEXIST, "mkdir %s", img_dir);
    CHECK(ib_synth_write_images(img_dir, 1, 40, 3) == IB_OK, "%s", ib_errmsg());
    snprintf(cmd, sizeof cmd, "%s predict --model %s %s/000000.png --out %s --threads 1", bin, out, img_dir, pred_dir);
    char *err = NULL;
    rc = test_run(cmd, NULL, &err);
    char labels[700];
    snprintf(labels, sizeof labels, "%s/000000.labels.png", pred_dir);
    struct stat st;
    CHECK(rc == 0 && stat(labels, &st) == 0 && st.st_size > 0, "predict: exit %d: %s", rc, err);
    free(err);
    snprintf(cmd, sizeof cmd, "%s export --model %s --out %s", bin, out, onnx);
    rc = test_run(cmd, NULL, &err);
    CHECK(rc == 0 && strstr(err, "segmentation network") && strstr(err, "logits (batch, 7, 32, 32)") &&
          stat(onnx, &st) == 0 && st.st_size > 0, "export: exit %d: %s", rc, err);
    free(err);
}

// CamVid as the public loader opens it: void (11) is the ignore index, so 11 classes, not 12.
TEST(seg_camvid_classes) {
    const char *shared = shared_dir();
    if (!shared) SKIP("no ../shared");
    char root[600];
    snprintf(root, sizeof root, "%s/data/camvid", shared);
    ib_dataset *ds;
    if (ib_dataset_load(&ds, root, "val") != IB_OK) SKIP("%s", ib_errmsg());
    CHECK(ib_dataset_ignore_index(ds) == 11 && ib_seg_dataset_classes(ds) == 11 && ib_dataset_size(ds) == 101,
          "ignore %d, classes %d, %lld images", ib_dataset_ignore_index(ds), ib_seg_dataset_classes(ds),
          (long long)ib_dataset_size(ds));
    ib_dataset_close(ds);
}

// ---------------------------------------------------------------------------------------------
// PyTorch reference (tests/ref/segment.py): each head alone in training mode, its upsampled logits, the
// weighted pixel loss with ignored pixels, and the gradients of the features and of every head parameter.

// A backbone whose stride-4, 8 and 16 blocks have 6, 8 and 12 channels (the script's features).
static const char *ref_arch =
    "{\"format\": \"ibnas-arch\", \"version\": 1, \"classes\": 5, \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2},"
    " \"blocks\": [{\"op\": \"ibn\", \"expand\": 1, \"out\": 6, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"expand\": 1, \"out\": 8, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"expand\": 1, \"out\": 12, \"stride\": 2}], \"head\": {\"out\": 0}}";

// Reads every head tensor (seg.*, not the BN statistics) from GROUP/params/NAME; the count in *loaded.
static int ref_load_head(ib_h5 *f, const char *group, ib_params *ps, int *loaded, char *msg, size_t msgn) {
    char name[300];
    *loaded = 0;
    for (int i = 0; i < ps->n; i++) {
        ib_tensor *t = ps->t[i];
        if (ps->is_buffer[i] || strncmp(t->name, "seg.", 4)) continue;
        snprintf(name, sizeof name, "%sparams/%s", group, t->name);
        if (ib_h5_read_into(f, name, t) != IB_OK) {
            snprintf(msg, msgn, "%s", ib_errmsg());
            return 0;
        }
        ++*loaded;
    }
    return 1;
}

// Compares every head tensor's gradient with GROUP/grads/NAME.
static int ref_check_head_grads(ib_h5 *f, const char *group, ib_params *ps, double tol, char *msg, size_t msgn) {
    char name[300], why[240];
    for (int i = 0; i < ps->n; i++) {
        ib_tensor *p = ps->t[i];
        if (ps->is_buffer[i] || strncmp(p->name, "seg.", 4)) continue;
        ib_tensor g;
        ib_tensor_init(&g, p->grad, p->ndim, p->shape);
        snprintf(name, sizeof name, "%sgrads/%s", group, p->name);
        if (!ref_compare(f, name, &g, tol, why, sizeof why)) {
            snprintf(msg, msgn, "grad of %s: %s", p->name, why);
            return 0;
        }
    }
    return 1;
}

static ib_status ref_build(ib_net *net, ib_seg_head *head, const ib_seg_head_cfg *hc) {
    ib_arch a;
    ib_status s = ib_arch_parse(&a, ref_arch, "ref arch");
    if (!s) s = ib_seg_build(net, head, &a, 5, hc);
    ib_arch_free(&a);
    if (!s) ib_params_init_default(&net->ps, 1);
    return s;
}

TEST(seg_head_matches_pytorch) {
    ib_h5 *f;
    CHECK(ib_h5_open(&f, ref_path("segment.h5")) == IB_OK, "%s", ib_errmsg());
    // The script's sizes (its attribute dims holds them too).
    const int N = 2, CH = 12, CL = 6, H16 = 3, W16 = 2, H4 = 9, W4 = 7, H = 36, W = 26;
    ib_seg_head_cfg hc;
    ib_seg_head_cfg_default(&hc);
    hc.aspp = 8, hc.low = 4, hc.decoder = 8, hc.rates[0] = 2, hc.rates[1] = 3;
    ib_net net;
    ib_seg_head head;
    CHECK(ref_build(&net, &head, &hc) == IB_OK, "%s", ib_errmsg());
    char msg[300];
    int loaded = 0;
    CHECK(ref_load_head(f, "", &net.ps, &loaded, msg, sizeof msg), "%s", msg);
    CHECK(loaded == 32, "%d head tensors loaded", loaded);
    ib_ctx *ctx = ib_ctx_new();
    ctx->training = 1, ctx->recording = 1;
    ib_tensor *lo = ib_tensor_new(ctx, 4, (int[]){N, CL, H4, W4}), *hi = ib_tensor_new(ctx, 4, (int[]){N, CH, H16, W16});
    CHECK(ib_h5_read_into(f, "lo", lo) == IB_OK && ib_h5_read_into(f, "hi", hi) == IB_OK, "%s", ib_errmsg());
    lo->requires_grad = hi->requires_grad = 1;
    int32_t *t = malloc(sizeof(int32_t) * N * H * W);
    float w[5], ref_loss;
    CHECK(ib_h5_read_i32(f, "targets", t, (int64_t)N * H * W) == IB_OK && ib_h5_read_f32(f, "class_weights", w, 5) == IB_OK &&
          ib_h5_read_f32(f, "loss", &ref_loss, 1) == IB_OK, "%s", ib_errmsg());
    ib_tensor *z = ib_seg_head_forward(ctx, &head, lo, hi, H, W);
    CHECK(ref_compare(f, "logits", z, 1e-5, msg, sizeof msg), "logits: %s", msg);
    ib_tensor *loss = ib_seg_cross_entropy(ctx, z, t, w, 255);
    CHECK(fabsf(loss->data[0] - ref_loss) < 1e-5f * ref_loss, "loss %.7g, PyTorch %.7g", loss->data[0], ref_loss);
    ib_params_zero_grad(&net.ps);
    ib_backward(ctx, loss, NULL);
    ib_tensor gl, gh;
    ib_tensor_init(&gl, lo->grad, 4, lo->shape);
    ib_tensor_init(&gh, hi->grad, 4, hi->shape);
    CHECK(ref_compare(f, "g_lo", &gl, 1e-4, msg, sizeof msg), "grad of the low-level feature: %s", msg);
    CHECK(ref_compare(f, "g_hi", &gh, 1e-4, msg, sizeof msg), "grad of the ASPP's feature: %s", msg);
    // float32 sums over few, cancelling terms (the dilated depthwise weights): 1e-3
    CHECK(ref_check_head_grads(f, "", &net.ps, 1e-3, msg, sizeof msg), "%s", msg);
    free(t);
    ib_ctx_free(ctx);
    ib_net_free(&net);
    ib_h5_close(f);
}

// The BiFPN head (group bifpn/): three levels (strides 4, 8, 16), width 8, two layers; the fusion weights
// are parameters like the convs', their gradients compared too.
TEST(seg_bifpn_matches_pytorch) {
    ib_h5 *f;
    CHECK(ib_h5_open(&f, ref_path("segment.h5")) == IB_OK, "%s", ib_errmsg());
    const int N = 2, H = 36, W = 26, C[3] = {6, 8, 12}, SH[3] = {9, 5, 3}, SW[3] = {7, 4, 2};
    ib_seg_head_cfg hc;
    ib_seg_head_cfg_default(&hc);
    snprintf(hc.kind, sizeof hc.kind, "bifpn");
    hc.width = 8, hc.repeats = 2;
    ib_net net;
    ib_seg_head head;
    CHECK(ref_build(&net, &head, &hc) == IB_OK, "%s", ib_errmsg());
    CHECK(head.levels == 3 && head.level_block[0] == 0 && head.level_block[2] == 2, "levels %d", head.levels);
    char msg[300], name[64];
    int loaded = 0;
    CHECK(ref_load_head(f, "bifpn/", &net.ps, &loaded, msg, sizeof msg), "%s", msg);
    // 3 laterals (3 tensors) + 2 layers x 4 nodes x (fusion + 2 convs x 3) + merge + classifier (2)
    CHECK(loaded == 9 + 2 * 4 * 7 + 1 + 2, "%d head tensors loaded", loaded);
    ib_ctx *ctx = ib_ctx_new();
    ctx->training = 1, ctx->recording = 1;
    ib_tensor *feats[3];
    for (int l = 0; l < 3; l++) {
        feats[l] = ib_tensor_new(ctx, 4, (int[]){N, C[l], SH[l], SW[l]});
        snprintf(name, sizeof name, "bifpn/feat%d", l);
        CHECK(ib_h5_read_into(f, name, feats[l]) == IB_OK, "%s", ib_errmsg());
        feats[l]->requires_grad = 1;
    }
    int32_t *t = malloc(sizeof(int32_t) * N * H * W);
    float w[5], ref_loss;
    CHECK(ib_h5_read_i32(f, "bifpn/targets", t, (int64_t)N * H * W) == IB_OK &&
          ib_h5_read_f32(f, "class_weights", w, 5) == IB_OK && ib_h5_read_f32(f, "bifpn/loss", &ref_loss, 1) == IB_OK,
          "%s", ib_errmsg());
    ib_tensor *z = ib_seg_bifpn_forward(ctx, &head, feats, H, W);
    CHECK(ref_compare(f, "bifpn/logits", z, 1e-5, msg, sizeof msg), "logits: %s", msg);
    ib_tensor *loss = ib_seg_cross_entropy(ctx, z, t, w, 255);
    CHECK(fabsf(loss->data[0] - ref_loss) < 1e-5f * ref_loss, "loss %.7g, PyTorch %.7g", loss->data[0], ref_loss);
    ib_params_zero_grad(&net.ps);
    ib_backward(ctx, loss, NULL);
    for (int l = 0; l < 3; l++) {
        ib_tensor g;
        ib_tensor_init(&g, feats[l]->grad, 4, feats[l]->shape);
        snprintf(name, sizeof name, "bifpn/g_feat%d", l);
        CHECK(ref_compare(f, name, &g, 1e-4, msg, sizeof msg), "grad of level %d: %s", l, msg);
    }
    CHECK(ref_check_head_grads(f, "bifpn/", &net.ps, 1e-3, msg, sizeof msg), "%s", msg);
    free(t);
    ib_ctx_free(ctx);
    ib_net_free(&net);
    ib_h5_close(f);
}

// ---------------------------------------------------------------------------------------------
// ibnas miou: the metric on two folders of label PNGs

static void write_gray_png(const char *path, const uint8_t *px, int h, int w) {
    FILE *fp = fopen(path, "wb");
    IB_ASSERT(fp, "cannot write %s", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    IB_ASSERT(png && info && !setjmp(png_jmpbuf(png)), "libpng failed on %s", path);
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(px + (size_t)y * w));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(fp);
}

TEST(seg_miou_dirs_by_hand) {
    char gt[512], pred[512], path[700];
    snprintf(gt, sizeof gt, "%s/miou_gt", test_tmpdir());
    snprintf(pred, sizeof pred, "%s/miou_pred", test_tmpdir());
    CHECK(mkdir(gt, 0755) == 0 && mkdir(pred, 0755) == 0, "mkdir");
    // The same pixels as seg_confusion_iou_by_hand, split over two images (a 2x2 and a 1x3), ignore 255.
    const uint8_t g1[4] = {0, 0, 1, 1}, p1[4] = {0, 1, 1, 1}, g2[3] = {2, 255, 0}, p2[3] = {0, 2, 0};
    snprintf(path, sizeof path, "%s/a.png", gt), write_gray_png(path, g1, 2, 2);
    snprintf(path, sizeof path, "%s/a.png", pred), write_gray_png(path, p1, 2, 2);
    snprintf(path, sizeof path, "%s/b.png", gt), write_gray_png(path, g2, 1, 3);
    snprintf(path, sizeof path, "%s/b.png", pred), write_gray_png(path, p2, 1, 3);
    ib_seg_eval_report r;
    CHECK(ib_miou_dirs(gt, pred, 4, 255, &r) == IB_OK, "%s", ib_errmsg());
    CHECK(r.images == 2 && r.pixels == 6, "%lld images, %lld pixels", (long long)r.images, (long long)r.pixels);
    CHECK(fabs(r.miou - (0.5 + 2.0 / 3) / 3) < 1e-12 && fabs(r.pixel_acc - 4.0 / 6) < 1e-12 && isnan(r.iou[3]),
          "mIoU %g, pixel acc %g", r.miou, r.pixel_acc);
    ib_seg_eval_report_free(&r);
    // The verb, as JSON.
    char cmd[2000], *txt = NULL;
    snprintf(cmd, sizeof cmd, "%s miou --gt-dir %s --pred-dir %s --classes 4 --json", test_ibnas_bin(), gt, pred);
    int rc = test_run(cmd, &txt, NULL);
    json_t *j = json_loads(txt ? txt : "", 0, NULL);
    double m = j ? json_number_value(json_object_get(j, "miou")) : -1;
    int nulls = j && json_is_null(json_array_get(json_object_get(j, "iou"), 3));
    json_decref(j);
    free(txt);
    CHECK(rc == 0 && fabs(m - (0.5 + 2.0 / 3) / 3) < 1e-6 && nulls, "miou verb: exit %d, miou %g", rc, m);
    // Errors name the file: a missing prediction, a label outside the classes, a size mismatch.
    snprintf(path, sizeof path, "%s/c.png", gt), write_gray_png(path, g1, 2, 2);
    CHECK(ib_miou_dirs(gt, pred, 4, 255, &r) == IB_ERR_NOTFOUND && strstr(ib_errmsg(), "c.png"), "%s", ib_errmsg());
    ib_seg_eval_report_free(&r);
    snprintf(path, sizeof path, "%s/c.png", pred), write_gray_png(path, g2, 1, 3);
    CHECK(ib_miou_dirs(gt, pred, 4, 255, &r) == IB_ERR_FORMAT && strstr(ib_errmsg(), "c.png"), "%s", ib_errmsg());
    ib_seg_eval_report_free(&r);
    CHECK(ib_miou_dirs(gt, pred, 2, 255, &r) == IB_ERR_FORMAT && strstr(ib_errmsg(), "label 2"), "%s", ib_errmsg());
    ib_seg_eval_report_free(&r);
}
