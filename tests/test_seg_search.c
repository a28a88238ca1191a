// The search on segmentation (Autoseg-EdgeTPU): a supernet trained as a segmentation backbone
// (ib_supernet_train with task "segment": one DeepLabv3+-lite or BiFPN head shared by every path) and the search
// scoring each subnet by the mIoU of its path on held-out training images. Tiny runs on synthetic scenes of
// 32 px over the tiny space (strides 2, 4, 8: the head at strides 4 and 8): the loss falls, a stopped run
// resumes to the uninterrupted run's weights, head and optimizer state, supernet eval reports a path's mIoU,
// the search's pick meets its budget with an mIoU score, and mismatched task or settings fail with a message.
#include "tests/test.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char data[512], val[512], lut[512], lut_cls[512], largest[512], smallest[512];
static const char *space_path;
static double budget;
// The segmenter the supernets below build (sn_opts): latencies are of it, not of the classifier
static const ib_latency_head seg_head = {.task = "segment", .seg_head = "deeplab", .seg_high_stride = 8,
                                         .seg_low_stride = 4, .seg_head_width = 16, .classes = 7};

static void fixtures(void) {
    if (data[0]) return;
    const char *d = test_tmpdir();
    space_path = project_path("search/spaces/tiny.space.json");
    snprintf(data, sizeof data, "%s/seg_sn_train.h5", d);
    snprintf(val, sizeof val, "%s/seg_sn_val.h5", d);
    IB_ASSERT(!ib_synth_write_pack(data, 96, 32, 31, 1, NULL, NULL, NULL), "%s", ib_errmsg());
    IB_ASSERT(!ib_synth_write_pack(val, 32, 32, 32, 1, NULL, NULL, NULL), "%s", ib_errmsg());
    snprintf(lut, sizeof lut, "%s/seg_tiny_edgetpu.csv", d);
    IB_ASSERT(!ib_latency_model_head(space_path, "edgetpu", 32, 0, &seg_head, lut, NULL), "%s", ib_errmsg());
    snprintf(lut_cls, sizeof lut_cls, "%s/seg_tiny_edgetpu_classifier.csv", d);   // no segmentation head row
    IB_ASSERT(!ib_latency_model(space_path, "edgetpu", 32, 0, lut_cls, NULL), "%s", ib_errmsg());
    // the budget: halfway between the smallest and the largest segmenter's predicted latency
    budget = test_budget_between_head(space_path, lut, 32, &seg_head, smallest, largest, sizeof largest);
}

static void sn_opts(ib_supernet_train_opts *o, const char *out) {
    ib_supernet_train_opts_default(o);
    o->space = space_path;
    o->train.task = "segment";
    o->train.seg_head = "deeplab";
    o->train.seg_high_stride = 8, o->train.seg_low_stride = 4, o->train.seg_head_width = 16;
    o->train.data = data;
    o->train.out = out;
    // 96 scenes less the held-out quarter: 9 batches of 8 an epoch, 5 paths a step (fair sampling)
    o->train.epochs = 3, o->train.batch = 8, o->train.res = 32, o->train.lr = 0.05f, o->train.warmup_epochs = 0.3f;
    o->train.threads = 1, o->train.workers = 1, o->train.progress = 0, o->train.seed = 7;
    o->holdout = 0.25;
    o->calib_batches = 1;
}

// The train_loss column of the CSV log's rows, in order.
static int log_losses(const char *csv, double *loss, int max) {
    char *log = test_read_file(csv);
    int n = 0;
    char *line = strchr(log, '\n');   // past the header
    while (line && line[1] && n < max) {
        int e;
        long step;
        double lr;
        if (sscanf(line + 1, "%d,%ld,%lf,%lf", &e, &step, &lr, &loss[n]) == 4) n++;
        line = strchr(line + 1, '\n');
    }
    free(log);
    return n;
}

TEST(seg_supernet_learns_and_resumes_exactly) {
    fixtures();
    char a[600], b[600], c1[600], csv[700];
    snprintf(a, sizeof a, "%s/seg_sn_a.h5", test_tmpdir());
    snprintf(b, sizeof b, "%s/seg_sn_b.h5", test_tmpdir());
    snprintf(c1, sizeof c1, "%s/seg_sn_c.h5", test_tmpdir());
    ib_supernet_train_opts o;
    sn_opts(&o, a);
    o.train.val = val;
    ib_supernet_train_report ra, rb;
    CHECK(ib_supernet_train(&o, &ra) == IB_OK, "%s", ib_errmsg());
    CHECK(ra.train.steps == 27 && ra.train.epochs_done == 3, "steps %ld, epochs %d", ra.train.steps, ra.train.epochs_done);
    // the loss falls: the third epoch's mean pixel cross-entropy well below the first's (ln 7 = 1.95 at chance)
    snprintf(csv, sizeof csv, "%s.csv", a);
    char *log = test_read_file(csv);
    int header = strstr(log, "largest_mIoU,largest_pixel_acc,smallest_mIoU") != NULL;
    free(log);
    CHECK(header, "log header of %s", csv);
    double loss[3];
    CHECK(log_losses(csv, loss, 3) == 3, "three epochs logged in %s", csv);
    CHECK(isfinite(loss[0]) && loss[0] > 0 && loss[2] < 0.8 * loss[0], "train loss by epoch %g %g %g", loss[0], loss[1],
          loss[2]);
    // mIoU of the largest and smallest paths, and the largest's pixel accuracy, are fractions
    CHECK(ra.train.val_top1 > 0 && ra.train.val_top1 <= 1 && ra.smallest_top1 > 0 && ra.smallest_top1 <= 1 &&
          ra.train.val_top5 > ra.train.val_top1 && ra.train.val_top5 <= 1,
          "largest mIoU %g, pixel acc %g, smallest mIoU %g", ra.train.val_top1, ra.train.val_top5, ra.smallest_top1);

    // stopped after 5 steps (inside the first epoch), then resumed: the uninterrupted run's supernet, head,
    // optimizer states and numbers, bit for bit
    sn_opts(&o, b);
    o.train.val = val;
    o.train.max_steps = 5;
    CHECK(ib_supernet_train(&o, &rb) == IB_OK && rb.train.steps == 5, "%s", ib_errmsg());
    o.train.resume = b;
    o.train.max_steps = 0;
    CHECK(ib_supernet_train(&o, &rb) == IB_OK && rb.train.steps == 27, "%s", ib_errmsg());
    const char *names[] = {"params/features.0.0.weight", "params/features.6.ibn.conv.0.0.weight",
                           "params/features.4.fused.conv.0.0.weight", "params/seg.aspp.0.0.weight",
                           "params/seg.classifier.weight", "params/seg.decoder.fuse.pw.0.weight",
                           "buffers/seg.decoder.reduce.1.running_mean", "train/optim/momentum_buffer",
                           "train/optim_head/momentum_buffer"};
    for (int i = 0; i < 9; i++) CHECK(test_same_array(a, b, names[i]), "%s differs after resume", names[i]);
    CHECK(ra.train.last_loss == rb.train.last_loss && ra.train.val_top1 == rb.train.val_top1 &&
          ra.smallest_top1 == rb.smallest_top1,
          "resumed: loss %.9g mIoU %.9g / %.9g, uninterrupted: %.9g %.9g / %.9g", rb.train.last_loss, rb.train.val_top1,
          rb.smallest_top1, ra.train.last_loss, ra.train.val_top1, ra.smallest_top1);
    // the head moved from its initialisation
    sn_opts(&o, c1);
    o.train.max_steps = 1;
    CHECK(ib_supernet_train(&o, &rb) == IB_OK, "%s", ib_errmsg());
    CHECK(!test_same_array(a, c1, "params/seg.classifier.weight"), "the head did not train");
    // what the segmentation loss never runs (the backbone's head conv, features.7, and its classifier) is never
    // stepped, not even by weight decay: after 27 steps (a) as after one (c1); what it runs is
    const char *unrun[] = {"params/features.7.0.weight", "params/features.7.1.weight", "params/classifier.1.weight",
                           "params/classifier.1.bias"};
    for (int i = 0; i < 4; i++) CHECK(test_same_array(a, c1, unrun[i]), "%s was stepped, and no loss runs it", unrun[i]);
    CHECK(!test_same_array(a, c1, "params/features.0.0.weight"), "the stem did not train");
    // a head on strides 2 and 4 runs the first two stages only: the third stage's ops (layers 5 and 6) are never
    // stepped either, the first stage's are
    char h1[600], h3[600];
    snprintf(h1, sizeof h1, "%s/seg_sn_h1.h5", test_tmpdir());
    snprintf(h3, sizeof h3, "%s/seg_sn_h3.h5", test_tmpdir());
    for (int k = 0; k < 2; k++) {
        sn_opts(&o, k ? h3 : h1);
        o.train.seg_high_stride = 4, o.train.seg_low_stride = 2;
        o.train.max_steps = k ? 3 : 1;
        CHECK(ib_supernet_train(&o, &rb) == IB_OK, "%s", ib_errmsg());
    }
    const char *cut[] = {"params/features.5.ibn.conv.0.0.weight", "params/features.6.fused.conv.0.0.weight",
                         "params/features.6.ibn.conv.1.0.weight"};
    for (int i = 0; i < 3; i++) CHECK(test_same_array(h1, h3, cut[i]), "%s was stepped, and the head cuts it", cut[i]);
    CHECK(!test_same_array(h1, h3, "params/features.1.ibn.conv.0.0.weight"), "the first stage did not train");
}

TEST(seg_supernet_bifpn_and_errors) {
    fixtures();
    char out[600];
    snprintf(out, sizeof out, "%s/seg_sn_bifpn.h5", test_tmpdir());
    ib_supernet_train_opts o;
    ib_supernet_train_report r;
    // the BiFPN head (levels at strides 4 and 8): trains, and the file names the head it carries
    sn_opts(&o, out);
    o.train.seg_head = "bifpn";
    o.train.seg_repeats = 1;
    o.train.epochs = 1;
    CHECK(ib_supernet_train(&o, &r) == IB_OK && r.train.steps == 9 && isfinite(r.train.last_loss) && r.train.last_loss > 0,
          "bifpn: %s (loss %g)", ib_errmsg(), r.train.last_loss);
    ib_supernet *sn;
    CHECK(ib_supernet_open(&sn, out) == IB_OK, "%s", ib_errmsg());
    int task_ok = !strcmp(ib_supernet_task(sn), "segment");
    ib_supernet_close(sn);
    CHECK(task_ok, "the supernet's task is not segment");
    CHECK(test_same_array(out, out, "params/seg.bifpn.0.td.0.fuse.weight"), "no BiFPN tensors in %s", out);
    // the default high stride 16: the tiny space has none (its total stride is 8)
    sn_opts(&o, out);
    o.train.seg_high_stride = 0;
    ib_status s = ib_supernet_train(&o, &r);
    CHECK(s == IB_ERR_ARG && strstr(ib_errmsg(), "stride 16") && strstr(ib_errmsg(), "--high-stride"), "high stride 16: %d %s",
          s, ib_errmsg());
    // the sandwich rule trains a segmentation supernet too (every path from the labels)
    sn_opts(&o, out);
    o.sampling = "sandwich";
    o.train.epochs = 1;
    CHECK(ib_supernet_train(&o, &r) == IB_OK && r.train.steps == 9 && isfinite(r.train.last_loss) && r.train.last_loss > 0,
          "sandwich with segment: %s (loss %g)", ib_errmsg(), r.train.last_loss);
    // data without masks is named
    char nomask[600];
    snprintf(nomask, sizeof nomask, "%s/seg_sn_nomask.h5", test_tmpdir());
    CHECK(!ib_synth_write_pack(nomask, 40, 32, 3, 0, NULL, NULL, NULL), "%s", ib_errmsg());
    sn_opts(&o, out);
    o.train.data = nomask;
    s = ib_supernet_train(&o, &r);
    CHECK(s && strstr(ib_errmsg(), nomask) && strstr(ib_errmsg(), "masks"), "data without masks: %d %s", s, ib_errmsg());
    // a size other than res x res
    sn_opts(&o, out);
    o.train.seg_height = 24;
    s = ib_supernet_train(&o, &r);
    CHECK(s == IB_ERR_ARG && strstr(ib_errmsg(), "res x res"), "--height 24: %d %s", s, ib_errmsg());
}

// `ibnas supernet train --task segment` of 2 epochs as sn_opts sets it up, to out; its stderr in *err.
static int cli_train(const char *out, const char *extra, char **err) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s supernet train --task segment --head deeplab --high-stride 8 --low-stride 4 --head-width 16 --space %s "
             "--data %s --out %s --epochs 2 --batch 8 --res 32 --lr 0.05 --warmup 0.3 --holdout 0.25 --threads 1 "
             "--workers 1 --seed 7 --quiet %s",
             test_ibnas_bin(), space_path, data, out, extra);
    char *o = NULL;
    int rc = test_run(cmd, &o, err);
    free(o);
    return rc;
}

// The CLI: supernet train --task segment, supernet eval of two paths, search --task segment, and the refusals.
// The DeepLab and BiFPN heads are shared by every path: scoring a path recalibrates the head's BN statistics
// with that path's features (tests/sn_head.c), the same path scores the same twice.
TEST(seg_supernet_head_bn_recalibrated_per_path) {
    fixtures();
    char p[600], msg[1024];
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/seg_sn_headbn_%d.h5", test_tmpdir(), k);
        ib_supernet_train_opts o;
        sn_opts(&o, p);
        if (k) o.train.seg_head = "bifpn";
        o.train.max_steps = 3;
        ib_supernet_train_report r;
        CHECK(ib_supernet_train(&o, &r) == IB_OK, "%s", ib_errmsg());
        CHECK(test_sn_head_recal(p, val, msg, sizeof msg), "%s head: %s", k ? "bifpn" : "deeplab", msg);
    }
}

TEST(seg_search_cli_meets_budget_scores_miou) {
    fixtures();
    const char *d = test_tmpdir(), *bin = test_ibnas_bin();
    char snp[600], cls[600], cmd[4096], *out = NULL, *err = NULL;
    snprintf(snp, sizeof snp, "%s/seg_sn_cli.h5", d);
    int rc = cli_train(snp, "--json", &err);
    CHECK(rc == 0, "supernet train --task segment failed (%d): %s", rc, err);
    free(err);

    // the same supernet after one step: the numbers a trained head must beat
    char snp0[600];
    snprintf(snp0, sizeof snp0, "%s/seg_sn_cli0.h5", d);
    rc = cli_train(snp0, "--max-steps 1", &err);
    CHECK(rc == 0, "supernet train --task segment --max-steps 1 failed (%d): %s", rc, err);
    free(err);

    // supernet eval: a path's mIoU, pixel accuracy and loss with the supernet's head (BN recalibrated on the
    // recorded training data); the CLI's numbers are the API's, and the trained head beats the untrained one
    double m[2][3], m0[3];
    for (int k = 0; k < 2; k++) {
        const char *arch = k ? largest : smallest;
        snprintf(cmd, sizeof cmd, "%s supernet eval --supernet %s --arch %s --data %s --calib-batches 2 --calib-batch 16 "
                 "--threads 1 --workers 1 --json", bin, snp, arch, val);
        rc = test_run(cmd, &out, &err);
        CHECK(rc == 0, "supernet eval of a segmentation supernet failed (%d): %s", rc, err);
        json_error_t je;
        json_t *j = json_loads(out, 0, &je);
        CHECK(j, "--json printed no JSON (%s): %s", je.text, out);
        const char *task = json_string_value(json_object_get(j, "task"));
        int is_seg = task && !strcmp(task, "segment");
        m[k][0] = json_number_value(json_object_get(j, "miou"));
        m[k][1] = json_number_value(json_object_get(j, "pixel_acc"));
        m[k][2] = json_number_value(json_object_get(j, "loss"));
        json_decref(j);
        CHECK(is_seg && m[k][0] > 0 && m[k][0] <= 1 && m[k][1] > m[k][0] && m[k][1] <= 1 && m[k][2] > 0 && isfinite(m[k][2]),
              "supernet eval: %s", out);
        free(out), free(err);
        for (int t = 0; t < 2; t++) {
            ib_supernet *sn;
            ib_dataset *ds;
            CHECK(!ib_supernet_open(&sn, t ? snp0 : snp) && !ib_dataset_load(&ds, val, "val"), "%s", ib_errmsg());
            ib_supernet_eval_opts eo;
            ib_supernet_eval_opts_default(&eo);
            eo.calib_batches = 2, eo.calib_batch = 16, eo.workers = 1;
            ib_supernet_task_report tr;
            ib_status s = ib_supernet_evaluate_task(sn, arch, ds, &eo, &tr);
            ib_eval_report cr;
            ib_status s2 = ib_supernet_evaluate(sn, arch, ds, &eo, &cr);   // its classifier never trained: refused
            ib_dataset_close(ds);
            ib_supernet_close(sn);
            CHECK(s == IB_OK && !strcmp(tr.task, "segment") && !strcmp(tr.names[0], "mIoU") &&
                  !strcmp(tr.names[1], "pixel_acc") && !strcmp(tr.names[2], "loss"), "%s", ib_errmsg());
            CHECK(s2 == IB_ERR_ARG && strstr(ib_errmsg(), "ib_supernet_evaluate_task"), "ib_supernet_evaluate gave %d", s2);
            if (t == 0)
                for (int i = 0; i < 3; i++)
                    CHECK(fabs(tr.metrics[i] - m[k][i]) < 1e-6, "API %s %g, CLI %g", tr.names[i], tr.metrics[i], m[k][i]);
            if (t == 1) memcpy(m0, tr.metrics, sizeof m0);
        }
        // after one step the head is near chance (7 classes); trained, it is well past that
        CHECK(m[k][0] > 3 * m0[0] && m[k][1] > 0.5 && m[k][1] > 3 * m0[1] && m[k][2] < 0.6 * m0[2],
              "path %d: trained mIoU %g pixel acc %g loss %g, after one step %g %g %g", k, m[k][0], m[k][1], m[k][2], m0[0],
              m0[1], m0[2]);
    }
    // the two paths are two networks: their held-out losses differ
    CHECK(m[0][2] != m[1][2], "the smallest and the largest path give the same loss %g", m[0][2]);

    // extract: the smallest path with the shared head as a segmentation checkpoint, recalibrated as supernet
    // eval recalibrates it, so eval --task segment gives supernet eval's numbers
    char sub[700];
    snprintf(sub, sizeof sub, "%s/seg_sub.h5", d);
    snprintf(cmd, sizeof cmd, "(%s extract --supernet %s --arch %s --calib-batches 2 --calib-batch 16 --threads 1 --workers 1 "
             "--out %s && %s eval --task segment --model %s --data %s --threads 1 --json)", bin, snp, smallest, sub, bin, sub, val);
    rc = test_run(cmd, &out, &err);
    json_t *ej = json_loads(out, 0, NULL);
    double emiou = json_number_value(json_object_get(ej, "miou")), eacc = json_number_value(json_object_get(ej, "pixel_acc"));
    json_decref(ej);
    CHECK(rc == 0 && strstr(err, "segmentation checkpoint"), "extract + eval of a segmentation supernet's path (%d): %s %s",
          rc, out, err);
    CHECK(fabs(emiou - m[0][0]) < 1e-6 && fabs(eacc - m[0][1]) < 1e-6, "extracted: mIoU %.7f pixel acc %.7f; supernet eval "
          "%.7f %.7f", emiou, eacc, m[0][0], m[0][1]);
    free(out), free(err);

    // search: the pick meets the budget, scored by mIoU in [0, 1]
    snprintf(cmd, sizeof cmd,
             "%s search --task segment --supernet %s --lut edgetpu=%s --budget-ms %.6f --population 3 --generations 1 "
             "--batch 1 --sample 2 --calib-batches 1 --eval-images 16 --threads 1 --workers 1 --seed 4 --quiet "
             "--out %s/seg_search --json",
             bin, snp, lut, budget, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "search --task segment failed (%d): %s", rc, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    CHECK(j, "--json printed no JSON (%s): %s", je.text, out);
    json_t *p = json_array_get(json_object_get(json_array_get(json_object_get(j, "targets"), 0), "picks"), 0);
    int found = json_is_true(json_object_get(p, "found"));
    double ms = json_real_value(json_object_get(p, "ms")), score = json_number_value(json_object_get(p, "score"));
    const char *label = json_string_value(json_object_get(j, "score"));
    int labelled = label && strstr(label, "mIoU");
    json_decref(j);
    CHECK(found && ms <= budget, "pick found %d at %g ms, budget %g: %s", found, ms, budget, out);
    CHECK(score > 0 && score <= 1, "mIoU %g", score);
    CHECK(labelled, "the summary does not name mIoU as the score: %s", out);
    free(out), free(err);
    char path[700];
    snprintf(path, sizeof path, "%s/seg_search/edgetpu/best-%gms.arch.json", d, budget);
    char *arch = test_read_file(path);
    int has_arch = arch[0] != 0;
    CHECK(has_arch, "no %s", path);
    // the pick's latency is its segmenter's: the stem, the blocks up to the head's stride and the head's row
    // (as latency predict --task segment gives it), not the classifier's
    ib_lut *t;
    CHECK(!ib_lut_load(&t, lut), "%s", ib_errmsg());
    ib_latency_prediction ps, pc;
    ib_status s1 = ib_lut_predict_detail_head(t, arch, &seg_head, 32, &ps), s2 = ib_lut_predict_detail(t, arch, 32, &pc);
    ib_lut_free(t);
    free(arch);
    CHECK(!s1 && !s2, "%s", ib_errmsg());
    CHECK(fabs(ps.ms - ms) < 1e-3 * ms && fabs(pc.ms - ms) > 0.05 * ms && !strncmp(ps.rows[ps.n_rows - 1].key, "deeplab,", 8),
          "pick at %g ms: as a segmenter %g ms (its last row %s), as a classifier %g", ms, ps.ms, ps.rows[ps.n_rows - 1].key,
          pc.ms);
    ib_latency_prediction_free(&ps), ib_latency_prediction_free(&pc);
    // --latency-of backbone: the same supernet's archs predicted and budgeted as whole classifiers
    double cls_budget = test_budget_between(space_path, lut, 32, NULL, NULL, 0);
    snprintf(cmd, sizeof cmd,
             "%s search --task segment --supernet %s --lut edgetpu=%s --budget-ms %.6f --latency-of backbone --population 3 "
             "--generations 1 --batch 1 --sample 2 --calib-batches 1 --eval-images 16 --threads 1 --workers 1 --seed 4 "
             "--quiet --out %s/seg_search_b --json", bin, snp, lut, cls_budget, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "search --latency-of backbone failed (%d): %s", rc, err);
    j = json_loads(out, 0, NULL);
    p = json_array_get(json_object_get(json_array_get(json_object_get(j, "targets"), 0), "picks"), 0);
    double bms = json_real_value(json_object_get(p, "ms"));
    json_decref(j);
    free(out), free(err);
    snprintf(path, sizeof path, "%s/seg_search_b/edgetpu/best-%gms.arch.json", d, cls_budget);
    arch = test_read_file(path);
    CHECK(!ib_lut_load(&t, lut), "%s", ib_errmsg());
    s2 = ib_lut_predict_detail(t, arch, 32, &pc);
    ib_lut_free(t);
    free(arch);
    CHECK(!s2 && fabs(pc.ms - bms) < 1e-3 * bms && bms <= cls_budget, "--latency-of backbone: pick at %g ms, as a classifier %g, "
          "budget %g", bms, pc.ms, cls_budget);
    ib_latency_prediction_free(&pc);
    snprintf(cmd, sizeof cmd, "%s search --supernet %s --lut edgetpu=%s --budget-ms 1 --latency-of head --out %s/seg_search_w",
             bin, snp, lut, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, "latency_of 'head' is not one of task, backbone"), "--latency-of head gave %d: %s", rc, err);
    free(out), free(err);
    // a table without the head's row is refused naming the row and how to add it
    snprintf(cmd, sizeof cmd, "%s search --task segment --supernet %s --lut edgetpu=%s --budget-ms %.6f --out %s/seg_search_z",
             bin, snp, lut_cls, budget, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, lut_cls) && strstr(err, "no row deeplab,") && strstr(err, "--task segment"),
          "search with a table lacking the segmentation head's row gave %d: %s", rc, err);
    free(out), free(err);

    // a detection metric on a segmentation supernet is refused naming the right ones
    snprintf(cmd, sizeof cmd, "%s search --supernet %s --lut edgetpu=%s --budget-ms 1 --metric ap50 --out %s/seg_search_y",
             bin, snp, lut, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, "miou, pixel_acc"), "--metric ap50 on a segmentation supernet gave %d: %s", rc, err);
    free(out), free(err);
    // a classification supernet searched as a segmentation one is refused with what to do
    snprintf(cls, sizeof cls, "%s/seg_sn_cls.h5", d);
    snprintf(cmd, sizeof cmd,
             "%s supernet train --space %s --data %s --out %s --epochs 1 --warmup 0.2 --batch 8 --res 32 --max-steps 1 --threads 1 "
             "--workers 1 --quiet", bin, space_path, data, cls);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "classification supernet (%d): %s", rc, err);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s search --task segment --supernet %s --lut edgetpu=%s --budget-ms 1 --out %s/seg_search_x",
             bin, cls, lut, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, "trained for classify, not segment") && strstr(err, "supernet train --task segment"),
          "--task segment on a classification supernet gave %d: %s", rc, err);
    free(out), free(err);
}
