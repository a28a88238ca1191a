// Detection: default boxes, matching and encoding, the multibox loss (values by hand and gradients
// against central differences), NMS, checkpoints (a detection checkpoint loads as a detection model),
// training on synthetic scenes (the loss falls and AP50 rises far above the untrained network's), exact
// resume, fine-tuning from a classification checkpoint, and the verbs (train / eval --task detect,
// coco-eval).
#include "tests/test.h"

#include "tasks/detect.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// stride 32 at 64 px: 2 (stem) 4 8 16 16 32; head conv to 64
static const char *arch_json =
    "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"det_tiny\", \"classes\": 6, \"input\": 64,"
    " \"act\": \"relu6\", \"stem\": {\"out\": 16, \"kernel\": 3, \"stride\": 2},"
    " \"blocks\": [{\"op\": \"fused\", \"kernel\": 3, \"expand\": 2, \"out\": 24, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 4, \"out\": 32, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 4, \"out\": 48, \"stride\": 2},"
    "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 4, \"out\": 48, \"stride\": 1},"
    "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 4, \"out\": 96, \"stride\": 2}],"
    " \"head\": {\"out\": 128, \"dropout\": 0.0}}";

TEST(detect_anchors_and_matching) {
    ib_ssd_cfg c;
    ib_ssd_cfg_default(&c, 3);
    c.min_scale = 0.2f, c.max_scale = 0.8f;
    int sizes[3] = {4, 2, 1};
    int n = ib_ssd_anchors(&c, 3, sizes, NULL);
    CHECK(n == (16 + 4 + 1) * 4, "%d anchors", n);
    float *an = malloc(sizeof(float) * 4 * (size_t)n);
    ib_ssd_anchors(&c, 3, sizes, an);
    // first anchor: level 0 (scale 0.2), cell (0, 0), ratio 1; the fourth: sqrt(0.2 * 0.5)
    CHECK(fabsf(an[0] - 0.125f) < 1e-6f && fabsf(an[1] - 0.125f) < 1e-6f && fabsf(an[2] - 0.2f) < 1e-6f, "anchor 0");
    CHECK(fabsf(an[4 * 1 + 2] - 0.2f * sqrtf(2)) < 1e-6f && fabsf(an[4 * 1 + 3] - 0.2f / sqrtf(2)) < 1e-6f, "ratio 2");
    CHECK(fabsf(an[4 * 3 + 2] - sqrtf(0.2f * 0.5f)) < 1e-6f, "the in-between scale");
    // the last anchor: level 2 (scale 0.8, next 1), centre 0.5
    CHECK(fabsf(an[4 * (n - 1)] - 0.5f) < 1e-6f && fabsf(an[4 * (n - 1) + 2] - sqrtf(0.8f)) < 1e-6f, "last anchor");
    // encode/decode round trip
    float box[4] = {0.1f, 0.2f, 0.45f, 0.5f}, code[4], back[4];
    ib_ssd_encode(an + 8, box, code);
    ib_ssd_decode(an + 8, code, back);
    for (int i = 0; i < 4; i++) CHECK(fabsf(back[i] - box[i]) < 1e-5f, "round trip %d: %g vs %g", i, back[i], box[i]);
    // a box equal to the level-1 anchor at cell (0,0) ratio 1 matches it (IoU 1), and a tiny box with no
    // anchor at IoU 0.5 still gets its best one
    const float *a1 = an + 4 * 64;   // level 1 starts after 16 * 4 anchors
    float gt[8] = {a1[0] - a1[2] / 2, a1[1] - a1[3] / 2, a1[0] + a1[2] / 2, a1[1] + a1[3] / 2, 0.9f, 0.9f, 0.92f, 0.92f};
    int32_t gl[2] = {2, 0};
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)n);
    float *lt = malloc(sizeof(float) * 4 * (size_t)n);
    int npos = ib_ssd_match(&c, an, n, gt, gl, 2, lab, lt);
    CHECK(lab[64] == 3, "anchor 64 labelled %d, want 3", lab[64]);
    for (int i = 0; i < 4; i++) CHECK(fabsf(lt[64 * 4 + i]) < 1e-4f, "exact box encodes to 0: %g", lt[64 * 4 + i]);
    int tiny = 0;
    for (int a = 0; a < n; a++) tiny += lab[a] == 1;
    CHECK(tiny == 1, "the tiny box got %d anchors, want its best one", tiny);
    CHECK(npos >= 2, "%d positives", npos);
    free(an), free(lab), free(lt);
}

// loss inputs: N = 2, A = 6, K = 3
typedef struct {
    int32_t labels[12];
    float loc_t[48];
} loss_case;

static ib_tensor *loss_fwd(ib_ctx *ctx, ib_tensor **in, void *user) {
    loss_case *lc = user;
    return ib_ssd_loss(ctx, in[0], in[1], lc->labels, lc->loc_t, 3);
}

TEST(detect_loss_value_and_gradient) {
    ib_ctx *ctx = ib_ctx_new();
    loss_case lc;
    // image 0: anchors 0 (class 1) and 3 (class 2) positive; image 1: anchor 7 positive (class 1)
    for (int i = 0; i < 12; i++) lc.labels[i] = 0;
    lc.labels[0] = 1, lc.labels[3] = 2, lc.labels[7] = 1;
    ib_rng r;
    ib_rng_seed(&r, 7, 0);
    for (int i = 0; i < 48; i++) lc.loc_t[i] = ib_rng_normal(&r);
    ib_tensor *loc = ib_tensor_new(ctx, 4, (int[]){2, 6, 4, 1}), *conf = ib_tensor_new(ctx, 4, (int[]){2, 6, 3, 1});
    // offsets 0.3 or 2 away from the targets (off smooth-L1's kink at 1); background logits spread so the
    // ranking of negatives is clear
    for (int i = 0; i < 48; i++) loc->data[i] = lc.loc_t[i] + ((i % 3) ? 0.3f : -2.0f);
    for (int a = 0; a < 12; a++) {
        conf->data[a * 3] = 0.4f * (float)a - 2;
        conf->data[a * 3 + 1] = 0.1f * (float)(a % 5);
        conf->data[a * 3 + 2] = -0.2f * (float)(a % 4);
    }
    loc->requires_grad = conf->requires_grad = 1;
    ctx->recording = 1;
    ib_tensor *L = ib_ssd_loss(ctx, loc, conf, lc.labels, lc.loc_t, 3);
    // by hand: positives 0, 3 (image 0) and 7 (image 1); negatives chosen by background loss, 3 per
    // positive: image 0 all 4 of {1, 2, 4, 5}; image 1 the 3 worst of {6, 8, 9, 10, 11}
    double want = 0;
    for (int a = 0; a < 12; a++) {
        const float *z = conf->data + a * 3;
        double lse = log(exp(z[0]) + exp(z[1]) + exp(z[2]));
        int pos = lc.labels[a] > 0;
        if (pos) {
            want += lse - z[lc.labels[a]];
            for (int j = 0; j < 4; j++) {
                double d = fabs((double)loc->data[a * 4 + j] - lc.loc_t[a * 4 + j]);
                want += d < 1 ? 0.5 * d * d : d - 0.5;
            }
        }
    }
    // background losses lse - z0 fall as a grows here (z0 rises fastest): image 1's worst negatives are 6, 8, 9
    int negs[7] = {1, 2, 4, 5, 6, 8, 9};
    for (int k = 0; k < 7; k++) {
        const float *z = conf->data + negs[k] * 3;
        want += log(exp(z[0]) + exp(z[1]) + exp(z[2])) - z[0];
    }
    want /= 3;
    CHECK(fabs(L->data[0] - want) < 1e-4 * fabs(want), "loss %g, by hand %g", L->data[0], want);
    ib_ctx_reset(ctx);
    ib_tensor *in[2] = {loc, conf};
    char msg[256];
    int ok = gradcheck(loss_fwd, &lc, 2, in, (int[]){1, 1}, (gc_opts){.h = 1e-2, .tol = 1e-3}, msg, sizeof msg);
    ib_ctx_free(ctx);
    CHECK(ok, "%s", msg);
}

// The focal variant: every element of the gradient against central differences, at offsets off smooth-L1's
// kink and logits spread over both tails of the sigmoid, for several (alpha, gamma) with gamma < 1 too.
typedef struct {
    int32_t labels[12];
    float loc_t[48];
    float alpha, gamma;
} focal_case;

static ib_tensor *focal_fwd(ib_ctx *ctx, ib_tensor **in, void *user) {
    focal_case *fc = user;
    return ib_focal_loss(ctx, in[0], in[1], fc->labels, fc->loc_t, fc->alpha, fc->gamma);
}

TEST(detect_focal_loss_gradient) {
    ib_ctx *ctx = ib_ctx_new(), *run = ib_ctx_new();   // ctx holds the inputs, run the passes
    focal_case fc;
    for (int i = 0; i < 12; i++) fc.labels[i] = 0;
    fc.labels[0] = 1, fc.labels[3] = 2, fc.labels[7] = 1, fc.labels[10] = 2;
    ib_rng r;
    ib_rng_seed(&r, 17, 0);
    for (int i = 0; i < 48; i++) fc.loc_t[i] = ib_rng_normal(&r);
    ib_tensor *loc = ib_tensor_new(ctx, 4, (int[]){2, 6, 4, 1}), *conf = ib_tensor_new(ctx, 4, (int[]){2, 6, 3, 1});
    for (int i = 0; i < 48; i++) loc->data[i] = fc.loc_t[i] + ((i % 3) ? 0.4f : -1.7f);
    for (int i = 0; i < 36; i++) conf->data[i] = -4.5f + 0.26f * (float)((i * 7) % 36);   // -4.5 .. 4.6
    // the loss by hand for alpha 0.25, gamma 2: classes 1 and 2 of every anchor, smooth-L1 of the positives
    double want = 0;
    for (int a = 0; a < 12; a++) {
        for (int j = 1; j < 3; j++) {
            double z = conf->data[a * 3 + j], p = 1 / (1 + exp(-z));
            want += fc.labels[a] == j ? -0.25 * pow(1 - p, 2) * log(p) : -0.75 * pow(p, 2) * log(1 - p);
        }
        if (fc.labels[a] > 0)
            for (int j = 0; j < 4; j++) {
                double d = fabs((double)loc->data[a * 4 + j] - fc.loc_t[a * 4 + j]);
                want += d < 1 ? 0.5 * d * d : d - 0.5;
            }
    }
    want /= 4;
    ib_tensor *L = ib_focal_loss(run, loc, conf, fc.labels, fc.loc_t, 0.25f, 2);
    CHECK(fabs(L->data[0] - want) < 1e-5 * fabs(want), "focal loss %.7g, by hand %.7g", L->data[0], want);
    ib_ctx_reset(run);
    float ag[3][2] = {{0.25f, 2}, {0.6f, 0.5f}, {0.5f, 0}};
    char msg[256];
    for (int k = 0; k < 3; k++) {
        fc.alpha = ag[k][0], fc.gamma = ag[k][1];
        ib_tensor *in[2] = {loc, conf};
        int ok = gradcheck(focal_fwd, &fc, 2, in, (int[]){1, 1}, (gc_opts){.h = 1e-2, .tol = 1e-3}, msg, sizeof msg);
        CHECK(ok, "alpha %g gamma %g: %s", fc.alpha, fc.gamma, msg);
    }
    // column 0 (the softmax background) takes no gradient
    run->recording = 1;
    loc->requires_grad = conf->requires_grad = 1;
    L = ib_focal_loss(run, loc, conf, fc.labels, fc.loc_t, 0.25f, 2);
    ib_backward(run, L, NULL);
    CHECK(conf->grad, "no gradient reached the logits");
    for (int a = 0; a < 12; a++) CHECK(conf->grad[a * 3] == 0, "anchor %d: background logit gradient %g", a, conf->grad[a * 3]);
    CHECK(conf->grad[1] != 0 && conf->grad[2] != 0, "object logits took no gradient");
    ib_ctx_free(run);
    ib_ctx_free(ctx);
}

// Against tests/ref/detect_focal.py (torchvision.ops.sigmoid_focal_loss and torch's smooth-L1, float64).
TEST(detect_focal_loss_parity) {
    ib_h5 *f = NULL;
    CHECK(ib_h5_open(&f, ref_path("detect_focal.h5")) == IB_OK, "cannot open the reference: %s", ib_errmsg());
    const char *names[] = {"focal_a0.25_g2", "focal_a0.6_g0.5", "focal_a0.25_g0", "focal_no_positives"};
    char path[128], msg[512];
    for (int c = 0; c < 4; c++) {
        ib_ctx *ctx = ib_ctx_new();
        ib_tensor *loc, *conf, *loc_t, *gout;
        snprintf(path, sizeof path, "%s/x0", names[c]);
        CHECK(ib_h5_read(f, path, ctx, &loc) == IB_OK, "%s", ib_errmsg());
        snprintf(path, sizeof path, "%s/x1", names[c]);
        CHECK(ib_h5_read(f, path, ctx, &conf) == IB_OK, "%s", ib_errmsg());
        snprintf(path, sizeof path, "%s/x2", names[c]);
        CHECK(ib_h5_read(f, path, ctx, &loc_t) == IB_OK, "%s", ib_errmsg());
        snprintf(path, sizeof path, "%s/gout", names[c]);
        CHECK(ib_h5_read(f, path, ctx, &gout) == IB_OK, "%s", ib_errmsg());
        int NA = loc->shape[0] * loc->shape[1];
        int32_t labels[64];
        CHECK(NA <= 64, "%d anchors", NA);
        snprintf(path, sizeof path, "%s/labels", names[c]);
        CHECK(ib_h5_read_i32(f, path, labels, NA) == IB_OK, "%s", ib_errmsg());
        double alpha = 0, gamma = 0;
        CHECK(ib_h5_attr_f64(f, names[c], "alpha", &alpha) == IB_OK && ib_h5_attr_f64(f, names[c], "gamma", &gamma) == IB_OK,
              "%s", ib_errmsg());
        ctx->recording = 1;
        loc->requires_grad = conf->requires_grad = 1;
        ib_tensor *L = ib_focal_loss(ctx, loc, conf, labels, loc_t->data, (float)alpha, (float)gamma);
        snprintf(path, sizeof path, "%s/out", names[c]);
        CHECK(ref_compare(f, path, L, 1e-5, msg, sizeof msg), "%s", msg);
        ib_backward(ctx, L, gout->data);
        ib_tensor g;
        ib_tensor_init(&g, loc->grad, loc->ndim, loc->shape);
        snprintf(path, sizeof path, "%s/g0", names[c]);
        CHECK(ref_compare(f, path, &g, 1e-5, msg, sizeof msg), "%s", msg);
        ib_tensor_init(&g, conf->grad, conf->ndim, conf->shape);
        snprintf(path, sizeof path, "%s/g1", names[c]);
        CHECK(ref_compare(f, path, &g, 1e-5, msg, sizeof msg), "%s", msg);
        ib_ctx_free(ctx);
    }
    ib_h5_close(f);
}

TEST(detect_nms) {
    ib_ssd_cfg c;
    ib_ssd_cfg_default(&c, 2);
    c.max_dets = 2;
    // three anchors at the same place; offsets 0: boxes identical. Scores: class 1 high on anchors 0 and
    // 1 (NMS keeps one), class 2 on anchor 2.
    float an[12] = {0.5f, 0.5f, 0.4f, 0.4f, 0.5f, 0.5f, 0.4f, 0.4f, 0.2f, 0.2f, 0.2f, 0.2f};
    float loc[12] = {0};
    float conf[9] = {0, 5, 0, 0, 4, 0, 0, 0, 3};
    float boxes[8], scores[2];
    int32_t labels[2];
    int n = ib_ssd_postprocess(&c, an, 3, loc, conf, boxes, scores, labels);
    CHECK(n == 2, "%d detections, want 2", n);
    CHECK(labels[0] == 0 && labels[1] == 1, "labels %d %d", labels[0], labels[1]);
    CHECK(fabsf(boxes[0] - 0.3f) < 1e-5f && fabsf(boxes[2] - 0.7f) < 1e-5f, "box %g %g", boxes[0], boxes[2]);
    CHECK(scores[0] > scores[1], "scores sorted");
    c.max_dets = 1;
    n = ib_ssd_postprocess(&c, an, 3, loc, conf, boxes, scores, labels);
    CHECK(n == 1 && labels[0] == 0, "max_dets 1: %d", n);
}

static char train_pack[400], val_pack[400], small_pack[400], arch_path[400];

// Packs are made on first use: a single case run alone makes only what it needs.
static const char *pack(char *path, size_t n, const char *name, int count, uint64_t seed) {
    if (!path[0]) {
        snprintf(path, n, "%s/%s", test_tmpdir(), name);
        IB_ASSERT(!ib_synth_write_pack(path, count, 64, seed, 1, NULL, NULL, NULL), "%s", ib_errmsg());
    }
    return path;
}
#define TRAIN_PACK pack(train_pack, sizeof train_pack, "train.h5", 1024, 11)
#define VAL_PACK pack(val_pack, sizeof val_pack, "val.h5", 200, 12)
#define SMALL_PACK pack(small_pack, sizeof small_pack, "small.h5", 96, 13)

static void fixtures(void) {
    if (arch_path[0]) return;
    snprintf(arch_path, sizeof arch_path, "%s/det_tiny.arch.json", test_tmpdir());
    FILE *f = fopen(arch_path, "w");
    IB_ASSERT(f && fputs(arch_json, f) >= 0 && fclose(f) == 0, "cannot write %s", arch_path);
}

static void det_cfg(ib_det_train_cfg *c, const char *data, const char *out) {
    ib_train_cfg_default(&c->base);
    c->base.arch = arch_path;
    c->base.data = data;
    c->base.out = out;
    c->base.res = 64;
    c->base.batch = 32;
    c->base.lr = 0.05f;
    c->base.warmup_epochs = 0.2f;
    c->base.progress = 0;
    c->base.workers = 1;
    c->base.seed = 5;
    ib_ssd_cfg_default(&c->ssd, 0);
    c->ssd.min_scale = 0.1f;
}

static double eval_ap50(const char *ckpt, const char *pack, double *ap) {
    ib_detector d;
    IB_ASSERT(!ib_detector_load(&d, ckpt), "%s", ib_errmsg());
    ib_dataset *ds;
    ib_ds_opts o = {.format = IB_DS_AUTO, .ignore_index = 255};
    IB_ASSERT(!ib_dataset_open(&ds, pack, &o), "%s", ib_errmsg());
    ib_det_eval_cfg ec;
    ib_det_eval_cfg_default(&ec);
    ec.res = 64;
    ec.workers = 1;
    double st[IB_COCO_STATS];
    IB_ASSERT(!ib_detector_eval(&d, ds, &ec, st, NULL), "%s", ib_errmsg());
    ib_dataset_close(ds);
    ib_detector_free(&d);
    if (ap) *ap = st[0];
    return st[1];
}

TEST(detect_training_learns) {
    fixtures();
    char out[500], untrained[500];
    snprintf(out, sizeof out, "%s/learn.h5", test_tmpdir());
    snprintf(untrained, sizeof untrained, "%s/untrained.h5", test_tmpdir());
    ib_det_train_cfg c;
    det_cfg(&c, TRAIN_PACK, untrained);
    c.base.epochs = 1;
    c.base.max_steps = 1;
    c.base.lr = 1e-6f;   // one step of nothing: the untrained network's numbers
    ib_det_train_result r0;
    CHECK(!ib_train_detect(&c, &r0), "%s", ib_errmsg());
    det_cfg(&c, TRAIN_PACK, out);
    c.base.epochs = 4;
    c.base.val = NULL;
    c.base.optim = ib_optim_cfg_default(IB_OPTIM_ADAMW, 0);   // from scratch AdamW learns fastest here
    c.base.optim.weight_decay = 1e-4f;
    c.base.lr = 3e-3f;
    double t0 = ib_time_s();
    ib_det_train_result r;
    CHECK(!ib_train_detect(&c, &r), "%s", ib_errmsg());
    double ap0, ap;
    double a0 = eval_ap50(untrained, VAL_PACK, &ap0), a1 = eval_ap50(out, VAL_PACK, &ap);
    printf("  detect: untrained AP50 %.4f AP %.4f; after %d epochs (%.1f s, loss %.3f) AP50 %.4f AP %.4f\n", a0, ap0,
           r.base.epochs_done, ib_time_s() - t0, r.base.last_loss, a1, ap);
    CHECK(r.base.epochs_done == 4, "%d epochs", r.base.epochs_done);
    CHECK(r.base.last_loss < 0.85 * r0.base.last_loss, "loss %.3f, first step %.3f", r.base.last_loss, r0.base.last_loss);
    // 4 epochs of 1,024 scenes is early in learning (docs/DETECTION.md has longer runs): AP50 some 0.03-0.05,
    // against 1e-4 untrained
    CHECK(a1 > a0 + 0.015 && a1 > 20 * a0, "AP50 %.4f after training, %.4f untrained", a1, a0);
}

// The held-out loss ib_detector_eval reports (what the detection search scores by with --metric loss) is the
// training loss of those images in eval mode: the same number computed here by hand on one batch of them all
// (matching each image's boxes, then the multibox loss over the batch), and the same whatever the eval batch
// (each batch's loss weighted by its positives).
static double eval_loss(ib_detector *d, ib_dataset *ds, int batch) {
    ib_det_eval_cfg ec;
    ib_det_eval_cfg_default(&ec);
    ec.res = 64, ec.workers = 1, ec.batch = batch;
    double st[IB_COCO_STATS], loss = -1;
    ec.loss = &loss;
    IB_ASSERT(!ib_detector_eval(d, ds, &ec, st, NULL), "%s", ib_errmsg());
    return loss;
}

TEST(detect_eval_loss_is_the_training_loss) {
    fixtures();
    char out[500];
    snprintf(out, sizeof out, "%s/eval_loss.h5", test_tmpdir());
    ib_det_train_cfg c;
    det_cfg(&c, TRAIN_PACK, out);
    c.base.epochs = 1;
    c.base.max_steps = 20;
    ib_det_train_result r;
    CHECK(!ib_train_detect(&c, &r), "%s", ib_errmsg());
    ib_detector d;
    IB_ASSERT(!ib_detector_load(&d, out), "%s", ib_errmsg());
    ib_dataset *ds;
    ib_ds_opts o = {.format = IB_DS_AUTO, .ignore_index = 255};
    IB_ASSERT(!ib_dataset_open(&ds, SMALL_PACK, &o), "%s", ib_errmsg());
    int n = (int)ib_dataset_size(ds);
    double all = eval_loss(&d, ds, n), by7 = eval_loss(&d, ds, 7);
    // by hand: one batch of every image, unaugmented, eval mode
    ib_det_eval_cfg ec;
    ib_det_eval_cfg_default(&ec);
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, 64, 64);
    lo.batch_size = n, lo.shuffle = 0, lo.workers = 1, lo.want_boxes = 1, lo.want_masks = 0;
    lo.aug.crop = IB_CROP_NONE;
    memcpy(lo.aug.mean, ec.mean, sizeof lo.aug.mean);
    memcpy(lo.aug.std, ec.std, sizeof lo.aug.std);
    ib_loader *l;
    IB_ASSERT(!ib_loader_open(&l, ds, &lo), "%s", ib_errmsg());
    ib_loader_start_epoch(l, 0);
    const ib_batch *b;
    IB_ASSERT(!ib_loader_next(l, &b) && b && b->n == n, "one batch of %d", n);
    ib_ctx *ctx = ib_ctx_new();
    ctx->recording = 0, ctx->training = 0;
    ib_tensor x, *loc, *conf;
    ib_batch_tensor(b, &x);
    ib_detector_forward(ctx, &d, &x, &loc, &conf);
    int A = d.n_anchors;
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)n * A), gl[64];
    float *loc_t = malloc(sizeof(float) * 4 * (size_t)n * A), gb[256];
    int pos = 0;
    for (int i = 0; i < n; i++) {
        int g = 0;
        for (int64_t k = b->box_offsets[i]; k < b->box_offsets[i + 1] && g < 64; k++) {
            const ib_box *bx = &b->boxes[k];
            gb[g * 4] = bx->x0 / (float)b->w, gb[g * 4 + 1] = bx->y0 / (float)b->h;
            gb[g * 4 + 2] = bx->x1 / (float)b->w, gb[g * 4 + 3] = bx->y1 / (float)b->h;
            gl[g++] = bx->label;
        }
        pos += ib_ssd_match(&d.cfg, d.anchors, A, gb, gl, g, labels + (int64_t)i * A, loc_t + (int64_t)i * A * 4);
    }
    double hand = ib_ssd_loss(ctx, loc, conf, labels, loc_t, d.cfg.neg_ratio)->data[0];
    printf("  detect: held-out loss %.6f (one batch), %.6f (batches of 7), by hand %.6f; %d positives in %d images\n",
           all, by7, hand, pos, n);
    CHECK(hand > 0 && pos >= n, "loss %.4f, %d positives", hand, pos);
    CHECK(fabs(all - hand) < 1e-5 * hand, "eval %.7f, by hand %.7f", all, hand);
    CHECK(fabs(by7 - hand) < 1e-4 * hand, "eval in batches of 7 %.7f, by hand %.7f", by7, hand);
    free(labels), free(loc_t);
    ib_ctx_free(ctx);
    ib_loader_close(l);
    ib_dataset_close(ds);
    ib_detector_free(&d);
}

// The focal loss trains too, and its checkpoint keeps the choice (post-processing then takes sigmoids).
TEST(detect_focal_training_learns) {
    fixtures();
    char out[500];
    snprintf(out, sizeof out, "%s/focal.h5", test_tmpdir());
    ib_det_train_cfg c;
    det_cfg(&c, TRAIN_PACK, out);
    c.base.epochs = 4;
    c.base.val = NULL;
    c.base.optim = ib_optim_cfg_default(IB_OPTIM_ADAMW, 0);
    c.base.optim.weight_decay = 1e-4f;
    c.base.lr = 3e-3f;
    c.ssd.focal = 1;
    c.ssd.focal_alpha = 0.25f, c.ssd.focal_gamma = 2;
    ib_det_train_result r;
    CHECK(!ib_train_detect(&c, &r), "%s", ib_errmsg());
    ib_detector d;
    CHECK(!ib_detector_load(&d, out), "%s", ib_errmsg());
    int focal = d.cfg.focal;
    float alpha = d.cfg.focal_alpha, gamma = d.cfg.focal_gamma;
    ib_detector_free(&d);
    CHECK(focal && alpha == 0.25f && gamma == 2, "the checkpoint says focal %d (%g, %g)", focal, alpha, gamma);
    double ap, a1 = eval_ap50(out, VAL_PACK, &ap);
    printf("  detect (focal): after %d epochs (loss %.3f) AP50 %.4f AP %.4f\n", r.base.epochs_done, r.base.last_loss, a1, ap);
    // the softmax run of detect_training_learns reaches 0.03-0.05 here; the untrained network 1e-4
    CHECK(a1 > 0.015, "AP50 %.4f after 4 focal epochs", a1);
}

static int same_file_params(const char *a, const char *b, char *msg, size_t n) {
    ib_detector x, y;
    IB_ASSERT(!ib_detector_load(&x, a) && !ib_detector_load(&y, b), "%s", ib_errmsg());
    int ok = x.net.ps.numel_params == y.net.ps.numel_params && x.ps.numel_params == y.ps.numel_params &&
             !memcmp(x.net.ps.data, y.net.ps.data, sizeof(float) * (size_t)x.net.ps.numel_params) &&
             !memcmp(x.ps.data, y.ps.data, sizeof(float) * (size_t)x.ps.numel_params) &&
             !memcmp(x.ps.buf, y.ps.buf, sizeof(float) * (size_t)x.ps.numel_buffers) &&
             !memcmp(x.net.ps.buf, y.net.ps.buf, sizeof(float) * (size_t)x.net.ps.numel_buffers);
    if (!ok) snprintf(msg, n, "%s and %s differ", a, b);
    ib_detector_free(&x), ib_detector_free(&y);
    return ok;
}

TEST(detect_resume_is_exact) {
    fixtures();
    char full[500], part[500];
    snprintf(full, sizeof full, "%s/full.h5", test_tmpdir());
    snprintf(part, sizeof part, "%s/part.h5", test_tmpdir());
    ib_det_train_cfg c;
    det_cfg(&c, SMALL_PACK, full);
    c.base.epochs = 2;
    c.base.aug = IB_AUG_RRC;   // SSD crop + flip: the augmentation draws must resume too
    ib_det_train_result r;
    CHECK(!ib_train_detect(&c, &r), "%s", ib_errmsg());
    det_cfg(&c, SMALL_PACK, part);
    c.base.epochs = 2;
    c.base.aug = IB_AUG_RRC;
    c.base.max_steps = 4;   // stops inside epoch 2 (3 steps an epoch)
    CHECK(!ib_train_detect(&c, &r), "%s", ib_errmsg());
    CHECK(r.base.steps == 4, "stopped at %ld", r.base.steps);
    c.base.max_steps = 0;
    c.base.resume = part;
    CHECK(!ib_train_detect(&c, &r), "resume: %s", ib_errmsg());
    CHECK(r.base.steps == 6, "resumed run ended at step %ld", r.base.steps);
    char msg[1200];
    CHECK(same_file_params(full, part, msg, sizeof msg), "%s", msg);
}

TEST(detect_checkpoints_and_init) {
    fixtures();
    // a classification checkpoint of the same arch: its backbone starts the detector
    char cls[500], det[500];
    snprintf(cls, sizeof cls, "%s/cls.h5", test_tmpdir());
    snprintf(det, sizeof det, "%s/det_init.h5", test_tmpdir());
    ib_model *m;
    CHECK(!ib_model_create(&m, arch_path, 6, 3), "%s", ib_errmsg());
    CHECK(!ib_model_save(m, cls), "%s", ib_errmsg());
    CHECK(!strcmp(ib_model_task(m), "classify"), "task %s", ib_model_task(m));
    ib_model_free(m);
    ib_det_train_cfg c;
    det_cfg(&c, SMALL_PACK, det);
    c.base.init = cls;
    c.base.epochs = 1;
    c.base.max_steps = 1;
    c.base.lr = 1e-9f;   // keeps the weights where they started (to float precision)
    c.base.optim.weight_decay = 0;
    ib_det_train_result r;
    CHECK(!ib_train_detect(&c, &r), "%s", ib_errmsg());
    ib_net a;
    ib_detector d;
    CHECK(!ib_ckpt_load(&a, cls), "%s", ib_errmsg());
    CHECK(!ib_detector_load(&d, det), "%s", ib_errmsg());
    ib_tensor *w0 = ib_params_find(&a.ps, "features.3.conv.0.0.weight"), *w1 = ib_params_find(&d.net.ps, "features.3.conv.0.0.weight");
    int found = w0 && w1;
    double diff = found ? max_abs_diff(w0->data, w1->data, ib_numel(w0)) : 1;
    ib_net_free(&a);
    int levels = d.n_levels, tap_exp = d.tap_exp, c16 = d.lv[0].box_dw.conv.cin;
    ib_detector_free(&d);
    CHECK(tap_exp == 1 && c16 == 192, "stride-16 feature: expansion %d, %d channels (want the last block's 48 x 4)",
          tap_exp, c16);
    CHECK(found, "features.3.conv.0.0.weight missing");
    CHECK(diff < 1e-6, "backbone weights moved by %g from the classification checkpoint's", diff);
    CHECK(levels == 3, "%d levels at 64 px (4x4, 2x2, 1x1)", levels);
    // the public API loads it as a detection model; a classification checkpoint is unchanged
    CHECK(!ib_model_load(&m, det), "%s", ib_errmsg());
    CHECK(!strcmp(ib_model_task(m), "detect") && ib_model_classes(m) == 6, "task %s, %d classes", ib_model_task(m),
          ib_model_classes(m));
    ib_dataset *ds;
    CHECK(!ib_dataset_load(&ds, SMALL_PACK, NULL), "%s", ib_errmsg());
    ib_det_eval_report er;
    ib_status s = ib_eval_detect(m, ds, NULL, &er);
    ib_eval_report cr;
    ib_status s2 = ib_eval(m, ds, NULL, &cr);
    ib_dataset_close(ds);
    ib_model_free(m);
    CHECK(!s && er.images == 96, "ib_eval_detect: %s, %lld images", ib_errmsg(), (long long)er.images);
    CHECK(s2 == IB_ERR_ARG, "ib_eval of a detection model should refuse");
    CHECK(!ib_model_load(&m, cls) && !strcmp(ib_model_task(m), "classify"), "classification checkpoint");
    ib_model_free(m);
}

TEST(detect_cli) {
    fixtures();
    char cmd[3000], *out = NULL, *err = NULL;
    const char *bin = test_ibnas_bin();
    char ck[500], dets[500];
    snprintf(ck, sizeof ck, "%s/cli.h5", test_tmpdir());
    snprintf(dets, sizeof dets, "%s/dets.json", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s train --task detect --arch %s --data %s --val %s --res 64 --epochs 1 --batch 32 --warmup 0.2 "
             "--det-min-scale 0.1 --det-ratios 1,2,0.5,3 --out %s --workers 1 --quiet --json",
             bin, arch_path, SMALL_PACK, SMALL_PACK, ck);
    int rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "train: rc %d: %s", rc, err);
    CHECK(strstr(out, "\"task\": \"detect\"") && strstr(out, "\"val_AP50\""), "train JSON: %s", out);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s eval --task detect --model %s --data %s --dets-out %s --json --workers 1", bin, ck,
             SMALL_PACK, dets);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "eval: rc %d: %s", rc, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECK(j && json_is_number(json_object_get(j, "AP50")) && json_integer_value(json_object_get(j, "images")) == 96,
          "eval JSON: %s", out);
    json_decref(j);
    free(out), free(err);
    j = json_load_file(dets, 0, &je);
    CHECK(j && json_is_array(j), "%s: %s", dets, je.text);
    size_t nd = json_array_size(j);
    json_decref(j);
    CHECK(nd > 0 && nd <= 96 * 100, "%zu detections", nd);
    // bad input names the problem
    snprintf(cmd, sizeof cmd, "%s coco-eval /nonexistent.json %s", bin, dets);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 1 && strstr(err, "/nonexistent.json"), "coco-eval of a missing file: rc %d, %s", rc, err);
    free(out), free(err);
}

// Ctrl-C during `ibnas train --task detect` once the first checkpoint exists: the step finishes, the state
// is saved, exit 130 naming --resume; the checkpoint then resumes (--max-steps stops it again).
TEST(detect_cli_ctrl_c_resume) {
    fixtures();
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built (make build/ibnas)", bin);
    char out[500], errf[500], cmd[3000];
    const char *small = SMALL_PACK;
    snprintf(out, sizeof out, "%s/ctrlc.h5", test_tmpdir());
    snprintf(errf, sizeof errf, "%s/ctrlc.err", test_tmpdir());
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        if (!freopen(errf, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(99);
        execl(bin, bin, "train", "--task", "detect", "--arch", arch_path, "--data", small, "--res", "64", "--epochs",
              "500", "--batch", "32", "--warmup", "0.3", "--workers", "1", "--out", out, (char *)NULL);
        _exit(98);
    }
    int status = 0, exited = 0;
    for (int k = 0; k < 3000 && access(out, F_OK) != 0; k++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            exited = 1;
            break;
        }
        nanosleep(&(struct timespec){0, 100000000}, NULL);
    }
    if (!exited) {
        kill(pid, SIGINT);
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    }
    char *err = test_read_file(errf);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int said = strstr(err, "interrupted") && strstr(err, "--resume");
    free(err);
    CHECK(code == 130, "after SIGINT the exit code is %d, expected 130", code);
    CHECK(said, "the message after Ctrl-C must say it was interrupted and how to go on (--resume)");
    char *txt = NULL;
    snprintf(cmd, sizeof cmd,
             "%s train --task detect --arch %s --data %s --res 64 --epochs 500 --batch 32 --warmup 0.3 --workers 1 "
             "--out %s --resume %s --max-steps 2 --quiet --json", bin, arch_path, small, out, out);
    int rc = test_run(cmd, &txt, NULL);
    json_t *j = json_loads(txt ? txt : "", 0, NULL);
    double steps = j ? json_number_value(json_object_get(j, "steps")) : -1;
    json_decref(j);
    free(txt);
    CHECK(rc == 0, "resume: exit %d", rc);
    CHECK(steps >= 5, "resume: %g steps, expected at least the first epoch's 3 plus 2", steps);
}

// Real COCO ids, categories and pixels: the detections ib_detector_eval writes (mapped back from the
// 128 px input to each image's own size, COCO category ids) scored by the evaluator against coco128's
// own annotation file give the numbers ib_detector_eval computed from the loader's boxes. An untrained
// detector: the numbers are small, but they agree only if ids, categories and coordinates map right.
TEST(detect_eval_matches_coco_annotations) {
    const char *sh = shared_dir();
    if (!sh) SKIP("../shared is absent: the coco128 cross-check was not run");
    fixtures();
    char root[512], ann[600], dets[600];
    snprintf(root, sizeof root, "%s/data/coco128", sh);
    snprintf(ann, sizeof ann, "%s/annotations/instances_val2017.json", root);
    snprintf(dets, sizeof dets, "%s/coco128_dets.json", test_tmpdir());
    ib_dataset *ds;
    ib_ds_opts o = {.format = IB_DS_AUTO, .split = "val", .ignore_index = 255};
    CHECK(!ib_dataset_open(&ds, root, &o), "%s", ib_errmsg());
    ib_arch arch;
    CHECK(!ib_arch_resolve(&arch, arch_path, 80), "%s", ib_errmsg());
    ib_net net;
    ib_status s = ib_net_build(&net, &arch);
    ib_arch_free(&arch);
    CHECK(!s, "%s", ib_errmsg());
    ib_net_init_weights(&net, 1);
    ib_ssd_cfg sc;
    ib_ssd_cfg_default(&sc, 80);
    ib_detector d;
    CHECK(!ib_detector_build(&d, &net, &sc, 128, 1), "%s", ib_errmsg());
    ib_det_eval_cfg ec;
    ib_det_eval_cfg_default(&ec);
    ec.res = 128;
    ec.workers = 1;
    ec.dets_out = dets;
    double mine[IB_COCO_STATS], ref[IB_COCO_STATS];
    int64_t images = 0;
    s = ib_detector_eval(&d, ds, &ec, mine, &images);
    ib_detector_free(&d);
    ib_dataset_close(ds);
    CHECK(!s, "%s", ib_errmsg());
    CHECK(images == 128, "%lld images", (long long)images);
    CHECK(!ib_coco_evaluate_files(ann, dets, ref), "%s", ib_errmsg());
    printf("  coco128 val, untrained: AP50 %.6f / %.6f, AR100 %.6f / %.6f (loader boxes / annotation file)\n", mine[1],
           ref[1], mine[8], ref[8]);
    CHECK(ref[8] > 0, "AR100 %.5f against the annotation file: nothing found at all", ref[8]);
    // the loader's boxes, mapped back to each image's pixels with its COCO id and category id, must be the
    // annotation file's boxes (to the rounding of the 128 px round trip and of the written detections)
    for (int i = 0; i < IB_COCO_STATS; i++)
        CHECK(fabs(mine[i] - ref[i]) <= 1e-5 + 0.02 * fabs(ref[i]), "%s: %.6f from the loader's boxes, %.6f from the file",
              ib_coco_stat_name(i), mine[i], ref[i]);
}
