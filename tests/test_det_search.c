// The search on detection (MobileDets): a supernet trained as an SSDLite backbone (ib_supernet_train with
// task "detect": one head shared by every path) and the search scoring each subnet by the AP50 of its path
// on held-out training images. A tiny run on synthetic scenes: the log has the AP50 columns, a stopped run
// resumes to the uninterrupted run's weights and head, the search's pick meets its budget, the same seed
// gives the same pick, and mismatched task or settings fail with a message.
#include "tests/test.h"

#include "search/search.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// Stride 32 at 64 px: stem 2, stages 4 8 16 32 (the stride-16 feature is the third stage's output, 4x4).
static const char *space_json =
    "{\"format\": \"ibnas-space\", \"version\": 1, \"name\": \"dettiny\", \"input\": 64, \"classes\": 6,"
    " \"act\": \"relu6\", \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2},"
    " \"stages\": ["
    "  {\"out\": 16, \"stride\": 2, \"layers\": 1, \"op\": [\"ibn\", \"fused\"], \"kernel\": [3], \"expand\": [2, 3]},"
    "  {\"out\": 24, \"stride\": 2, \"layers\": 1, \"op\": [\"ibn\", \"fused\"], \"kernel\": [3], \"expand\": [2, 3]},"
    "  {\"out\": 32, \"stride\": 2, \"layers\": 2, \"op\": [\"ibn\", \"fused\", \"skip\"], \"kernel\": [3, 5], \"expand\": [2, 3]},"
    "  {\"out\": 48, \"stride\": 2, \"layers\": 1, \"op\": [\"ibn\", \"fused\"], \"kernel\": [3], \"expand\": [2, 3]}],"
    " \"head\": {\"out\": 64, \"dropout\": 0.0}}";

static char space_path[512], data[512], val[512], lut[512], largest[512];
static double budget;
// The detector a detection supernet scores (SSDLite on the stride-16 block output, 6 shape classes): latencies
// are of it, not of the classifier
static const ib_latency_head det_head = {.task = "detect", .det_tap_block = 1, .classes = 6};

static void fixtures(void) {
    if (space_path[0]) return;
    const char *d = test_tmpdir();
    snprintf(space_path, sizeof space_path, "%s/dettiny.space.json", d);
    FILE *f = fopen(space_path, "w");
    IB_ASSERT(f && fputs(space_json, f) >= 0 && fclose(f) == 0, "cannot write %s", space_path);
    snprintf(data, sizeof data, "%s/det_sn_train.h5", d);
    snprintf(val, sizeof val, "%s/det_sn_val.h5", d);
    IB_ASSERT(!ib_synth_write_pack(data, 192, 64, 21, 1, NULL, NULL, NULL), "%s", ib_errmsg());
    IB_ASSERT(!ib_synth_write_pack(val, 32, 64, 22, 1, NULL, NULL, NULL), "%s", ib_errmsg());
    snprintf(lut, sizeof lut, "%s/dettiny_edgetpu.csv", d);
    IB_ASSERT(!ib_latency_model_head(space_path, "edgetpu", 64, 0, &det_head, lut, NULL), "%s", ib_errmsg());
    budget = test_budget_between_head(space_path, lut, 64, &det_head, NULL, largest, sizeof largest);
}

static void sn_opts(ib_supernet_train_opts *o, const char *out) {
    ib_supernet_train_opts_default(o);
    o->space = space_path;
    o->train.task = "detect";
    o->train.data = data;
    o->train.out = out;
    o->train.epochs = 2, o->train.batch = 16, o->train.res = 64, o->train.lr = 0.05f, o->train.warmup_epochs = 0.5f;
    o->train.det_min_scale = 0.1f;
    o->train.threads = 1, o->train.workers = 1, o->train.progress = 0, o->train.seed = 5;
    o->holdout = 0.25;
    o->calib_batches = 1;
}

TEST(det_supernet_trains_and_resumes_exactly) {
    fixtures();
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/det_sn_a.h5", test_tmpdir());
    snprintf(b, sizeof b, "%s/det_sn_b.h5", test_tmpdir());
    ib_supernet_train_opts o;
    sn_opts(&o, a);
    o.train.val = val;
    ib_supernet_train_report r;
    CHECK(ib_supernet_train(&o, &r) == IB_OK, "%s", ib_errmsg());
    // 192 images less the held-out quarter: 8 full batches of 16 an epoch
    CHECK(r.train.steps == 16 && r.train.epochs_done == 2, "steps %ld, epochs %d", r.train.steps, r.train.epochs_done);
    CHECK(isfinite(r.train.last_loss) && r.train.last_loss > 0, "loss %g", r.train.last_loss);
    CHECK(r.train.val_top1 >= 0 && r.train.val_top1 <= 1 && r.smallest_top1 >= 0 && r.smallest_top1 <= 1,
          "largest AP50 %g, smallest %g", r.train.val_top1, r.smallest_top1);
    char csv[700];
    snprintf(csv, sizeof csv, "%s.csv", a);
    char *log = test_read_file(csv);
    CHECK(strstr(log, "largest_AP50,largest_AP,smallest_AP50"), "log header: %s", log);
    free(log);
    // stopped after 5 steps, then resumed: the uninterrupted run's backbone, head and optimizer state
    sn_opts(&o, b);
    o.train.val = val;
    o.train.max_steps = 5;
    CHECK(ib_supernet_train(&o, &r) == IB_OK && r.train.steps == 5, "%s", ib_errmsg());
    o.train.resume = b;
    o.train.max_steps = 0;
    CHECK(ib_supernet_train(&o, &r) == IB_OK && r.train.steps == 16, "%s", ib_errmsg());
    const char *names[] = {"params/features.0.0.weight", "params/features.3.fused.conv.0.0.weight",
                           "params/ssd.cls.0.pw.weight", "params/ssd.box.1.dw.0.weight", "buffers/ssd.cls.0.dw.1.running_mean",
                           "train/optim_head/momentum_buffer"};
    for (int i = 0; i < 6; i++) CHECK(test_same_array(a, b, names[i]), "%s differs after resume", names[i]);
    // the head moved from its initialisation: a fresh run of 1 step differs from the trained one
    char c1[600];
    snprintf(c1, sizeof c1, "%s/det_sn_c.h5", test_tmpdir());
    sn_opts(&o, c1);
    o.train.max_steps = 1;
    CHECK(ib_supernet_train(&o, &r) == IB_OK, "%s", ib_errmsg());
    CHECK(!test_same_array(a, c1, "params/ssd.cls.0.pw.weight"), "the head did not train");
    // the sandwich rule (largest, smallest and 2 random paths a step, all from the labels): an epoch stopped
    // after 3 steps and resumed gives the uninterrupted epoch's weights, head and optimizer state
    char sw1[600], sw2[600];
    snprintf(sw1, sizeof sw1, "%s/det_sn_sw1.h5", test_tmpdir());
    snprintf(sw2, sizeof sw2, "%s/det_sn_sw2.h5", test_tmpdir());
    sn_opts(&o, sw1);
    o.sampling = "sandwich";
    o.train.epochs = 1;
    CHECK(ib_supernet_train(&o, &r) == IB_OK && r.train.steps == 8 && isfinite(r.train.last_loss), "sandwich: %s",
          ib_errmsg());
    sn_opts(&o, sw2);
    o.sampling = "sandwich";
    o.train.epochs = 1;
    o.train.max_steps = 3;
    CHECK(ib_supernet_train(&o, &r) == IB_OK && r.train.steps == 3, "%s", ib_errmsg());
    o.train.resume = sw2;
    o.train.max_steps = 0;
    CHECK(ib_supernet_train(&o, &r) == IB_OK && r.train.steps == 8, "%s", ib_errmsg());
    for (int i = 0; i < 6; i++) CHECK(test_same_array(sw1, sw2, names[i]), "sandwich: %s differs after resume", names[i]);
    // its steps are not fair's: the head after the epoch differs from the fair run's after 8 steps
    sn_opts(&o, c1);
    o.train.epochs = 1;
    CHECK(ib_supernet_train(&o, &r) == IB_OK && r.train.steps == 8, "%s", ib_errmsg());
    CHECK(!test_same_array(sw1, c1, "params/ssd.cls.0.pw.weight"), "sandwich trained as fair");
    ib_status s;
    // data without boxes is named
    char nobox[600];
    snprintf(nobox, sizeof nobox, "%s/det_sn_nobox.h5", test_tmpdir());
    CHECK(!ib_synth_write_pack(nobox, 40, 64, 3, 0, NULL, NULL, NULL), "%s", ib_errmsg());
    sn_opts(&o, c1);
    o.train.data = nobox;
    s = ib_supernet_train(&o, &r);
    CHECK(s && strstr(ib_errmsg(), nobox) && strstr(ib_errmsg(), "boxes"), "data without boxes: %d %s", s, ib_errmsg());
}

// A detector of one class (COCO people): the supernet trains on it, its path extracts and evaluates. A YOLO
// root of 24 images, each a bright square on a dark ground, its box the square's.
TEST(det_supernet_one_class) {
    fixtures();
    char root[600], path[800], snp[700], sub[700], cmd[4096], *out = NULL, *err = NULL;
    snprintf(root, sizeof root, "%s/det_one_class", test_tmpdir());
    const char *dirs[] = {"", "/images", "/images/train", "/labels", "/labels/train"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s%s", root, dirs[i]);
        struct stat st;
        IB_ASSERT(mkdir(path, 0755) == 0 || stat(path, &st) == 0, "cannot make %s", path);
    }
    snprintf(path, sizeof path, "%s/names.txt", root);
    FILE *f = fopen(path, "w");
    IB_ASSERT(f && fputs("thing\n", f) >= 0 && fclose(f) == 0, "cannot write %s", path);
    static uint8_t rgb[64 * 64 * 3];
    for (int n = 0; n < 24; n++) {
        int x0 = 4 + (n * 7) % 30, y0 = 6 + (n * 5) % 28, side = 16 + n % 12;
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
                for (int c = 0; c < 3; c++)
                    rgb[(y * 64 + x) * 3 + c] = (uint8_t)(x >= x0 && x < x0 + side && y >= y0 && y < y0 + side ? 220 : 30 + (x * y + c) % 20);
        snprintf(path, sizeof path, "%s/images/train/%02d.png", root, n);
        IB_ASSERT(!ib_png_write_rgb(path, rgb, 64, 64), "%s", ib_errmsg());
        snprintf(path, sizeof path, "%s/labels/train/%02d.txt", root, n);
        IB_ASSERT((f = fopen(path, "w")) && fprintf(f, "0 %.6f %.6f %.6f %.6f\n", (x0 + side / 2.0) / 64, (y0 + side / 2.0) / 64,
                                                    side / 64.0, side / 64.0) > 0 && fclose(f) == 0, "cannot write %s", path);
    }
    snprintf(snp, sizeof snp, "%s/det_sn_one.h5", test_tmpdir());
    ib_supernet_train_opts o;
    sn_opts(&o, snp);
    o.train.data = root;
    o.train.epochs = 1, o.train.batch = 8;
    ib_supernet_train_report r;
    CHECK(ib_supernet_train(&o, &r) == IB_OK && r.train.steps == 2, "one class: %s", ib_errmsg());
    snprintf(sub, sizeof sub, "%s/det_sub_one.h5", test_tmpdir());
    snprintf(cmd, sizeof cmd, "(%s extract --supernet %s --arch %s --calib-batches 1 --calib-batch 8 --threads 1 --workers 1 "
             "--out %s && %s eval --task detect --model %s --data %s --split train --threads 1 --json)", test_ibnas_bin(), snp,
             largest, sub, test_ibnas_bin(), sub, root);
    int rc = test_run(cmd, &out, &err);
    json_t *ev = json_loads(out, 0, NULL);
    double ap50 = json_number_value(json_object_get(ev, "AP50"));
    json_decref(ev);
    CHECK(rc == 0 && ap50 >= 0 && ap50 <= 1, "extract + eval of a one-class detection supernet (%d): %s %s", rc, out, err);
    free(out), free(err);
}

// The SSDLite head is shared by every path: scoring a path recalibrates the head's BN statistics with that
// path's features (tests/sn_head.c), the same path scores the same twice.
TEST(det_supernet_head_bn_recalibrated_per_path) {
    fixtures();
    char p[600], msg[1024];
    snprintf(p, sizeof p, "%s/det_sn_headbn.h5", test_tmpdir());
    ib_supernet_train_opts o;
    sn_opts(&o, p);
    o.train.max_steps = 4;
    ib_supernet_train_report r;
    CHECK(ib_supernet_train(&o, &r) == IB_OK, "%s", ib_errmsg());
    CHECK(test_sn_head_recal(p, val, msg, sizeof msg), "%s", msg);
}

// The CLI: supernet train --task detect, then search --task detect twice with one seed.
TEST(det_search_cli_meets_budget_same_seed_same_pick) {
    fixtures();
    const char *d = test_tmpdir(), *bin = test_ibnas_bin();
    char snp[600], cmd[4096], *out = NULL, *err = NULL;
    snprintf(snp, sizeof snp, "%s/det_sn_cli.h5", d);
    snprintf(cmd, sizeof cmd,
             "%s supernet train --task detect --space %s --data %s --out %s --epochs 1 --batch 16 --res 64 --lr 0.05 "
             "--warmup 0.5 --det-min-scale 0.1 --holdout 0.25 --threads 1 --workers 1 --seed 5 --quiet --json",
             bin, space_path, data, snp);
    int rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "supernet train --task detect failed (%d): %s", rc, err);
    free(out), free(err);
    // supernet eval scores a path with the supernet's SSDLite head (its classifier never trained)
    snprintf(cmd, sizeof cmd, "%s supernet eval --supernet %s --arch %s --data %s --calib-batches 1 --calib-batch 16 --threads 1 "
             "--workers 1 --json", bin, snp, largest, val);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0 && strstr(out, "\"task\": \"detect\"") && strstr(out, "\"ap50\""), "supernet eval of a detection supernet gave %d: %s %s",
          rc, out, err);
    json_t *ev = json_loads(out, 0, NULL);
    double ap50 = json_number_value(json_object_get(ev, "ap50")), ap = json_number_value(json_object_get(ev, "ap"));
    double eloss = json_number_value(json_object_get(ev, "loss"));
    json_decref(ev);
    CHECK(ap50 >= 0 && ap50 <= 1 && ap >= 0 && ap <= ap50, "supernet eval: AP50 %g, AP %g", ap50, ap);
    CHECK(eloss > 0 && eloss < 100, "supernet eval: held-out multibox loss %g: %s", eloss, out);
    free(out), free(err);
    // extract: that path with the shared head as a detection checkpoint (the head's weights as trained, BN
    // recalibrated as supernet eval recalibrates), so eval --task detect gives supernet eval's numbers
    char sub[700];
    snprintf(sub, sizeof sub, "%s/det_sub.h5", d);
    snprintf(cmd, sizeof cmd, "(%s extract --supernet %s --arch %s --calib-batches 1 --calib-batch 16 --threads 1 --workers 1 "
             "--out %s && %s eval --task detect --model %s --data %s --threads 1 --json)", bin, snp, largest, sub, bin, sub, val);
    rc = test_run(cmd, &out, &err);
    ev = json_loads(out, 0, NULL);
    double eap50 = json_number_value(json_object_get(ev, "AP50")), eap = json_number_value(json_object_get(ev, "AP"));
    json_decref(ev);
    CHECK(rc == 0 && strstr(err, "a detection checkpoint"), "extract + eval of a detection supernet's path (%d): %s %s", rc,
          out, err);
    CHECK(fabs(eap50 - ap50) < 1e-6 && fabs(eap - ap) < 1e-6, "extracted: AP50 %g AP %g; supernet eval %g %g: %s", eap50, eap,
          ap50, ap, out);
    CHECK(test_same_array(sub, snp, "params/ssd.cls.0.pw.weight") && test_same_array(sub, snp, "params/ssd.box.1.dw.0.weight"),
          "the extracted head's weights are not the supernet's");
    free(out), free(err);
    double score[2];
    char *arch[2];
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd,
                 "%s search --task detect --supernet %s --lut edgetpu=%s --budget-ms %.6f --population 3 --generations 1 "
                 "--batch 1 --sample 2 --calib-batches 1 --eval-images 24 --threads 1 --workers 1 --seed 4 --quiet "
                 "--out %s/det_search_%d --json",
                 bin, snp, lut, budget, d, k);
        rc = test_run(cmd, &out, &err);
        CHECK(rc == 0, "search --task detect failed (%d): %s", rc, err);
        json_error_t je;
        json_t *j = json_loads(out, 0, &je);
        CHECK(j, "--json printed no JSON (%s): %s", je.text, out);
        json_t *p = json_array_get(json_object_get(json_array_get(json_object_get(j, "targets"), 0), "picks"), 0);
        int found = json_is_true(json_object_get(p, "found"));
        double ms = json_real_value(json_object_get(p, "ms"));
        score[k] = json_real_value(json_object_get(p, "score"));
        const char *label = json_string_value(json_object_get(j, "score"));
        int labelled = label && strstr(label, "AP50");
        json_decref(j);
        CHECK(found && ms <= budget, "pick found %d at %g ms, budget %g: %s", found, ms, budget, out);
        CHECK(score[k] >= 0 && score[k] <= 1, "AP50 %g", score[k]);
        CHECK(labelled, "the summary does not name AP50 as the score: %s", out);
        free(out), free(err);
        char path[700];
        snprintf(path, sizeof path, "%s/det_search_%d/edgetpu/best-%gms.arch.json", d, k, budget);
        arch[k] = test_read_file(path);
        CHECK(arch[k][0], "no %s", path);
        // the pick's latency is its detector's (every block, the head conv alone, the SSDLite row)
        ib_lut *t;
        CHECK(!ib_lut_load(&t, lut), "%s", ib_errmsg());
        ib_latency_prediction pd, pc;
        ib_status s1 = ib_lut_predict_detail_head(t, arch[k], &det_head, 64, &pd), s2 = ib_lut_predict_detail(t, arch[k], 64, &pc);
        ib_lut_free(t);
        CHECK(!s1 && !s2, "%s", ib_errmsg());
        CHECK(fabs(pd.ms - ms) < 1e-3 * ms && fabs(pc.ms - ms) > 0.05 * ms && !strncmp(pd.rows[pd.n_rows - 1].key, "ssdlite,", 8) &&
              !strncmp(pd.rows[pd.n_rows - 2].key, "head,", 5) && strstr(pd.rows[pd.n_rows - 2].key, ",0,"),
              "pick at %g ms: as a detector %g ms (last rows %s, %s), as a classifier %g", ms, pd.ms,
              pd.rows[pd.n_rows - 2].key, pd.rows[pd.n_rows - 1].key, pc.ms);
        ib_latency_prediction_free(&pd), ib_latency_prediction_free(&pc);
    }
    CHECK(score[0] == score[1] && !strcmp(arch[0], arch[1]), "same seed, different picks: %g vs %g", score[0], score[1]);
    free(arch[0]), free(arch[1]);
    // --latency-res: scored at 64 px, budgeted and picked by the detector's latency at 96 px (a table of that
    // size; one at 64 px alone is refused, its rows missing); the pick's arch file is for 96 px
    {
        char lut96[700], cmd96[4096];
        snprintf(lut96, sizeof lut96, "%s/dettiny_edgetpu96.csv", d);
        CHECK(!ib_latency_model_head(space_path, "edgetpu", 96, 0, &det_head, lut96, NULL), "%s", ib_errmsg());
        double b96 = test_budget_between_head(space_path, lut96, 96, &det_head, NULL, NULL, 0);
        CHECK(b96 > 1.2 * budget, "a budget at 96 px (%g ms) not above the one at 64 px (%g ms)", b96, budget);
        for (int k = 0; k < 2; k++) {
            snprintf(cmd96, sizeof cmd96,
                     "%s search --task detect --supernet %s --lut edgetpu=%s --budget-ms %.6f --latency-res 96 --population 3 "
                     "--generations 1 --batch 1 --sample 2 --calib-batches 1 --eval-images 24 --threads 1 --workers 1 --seed 4 "
                     "--quiet --out %s/det_search_96_%d --json",
                     bin, snp, k ? lut : lut96, b96, d, k);
            rc = test_run(cmd96, &out, &err);
            if (k) {
                CHECK(rc != 0 && strstr(err, "96"), "a 64 px table searched at --latency-res 96 gave %d: %s", rc, err);
                free(out), free(err);
                break;
            }
            CHECK(rc == 0, "search --latency-res 96 failed (%d): %s", rc, err);
            double ms;
            int found = test_search_pick(out, &ms, NULL) == 1;
            free(out), free(err);
            char path[800];
            snprintf(path, sizeof path, "%s/det_search_96_0/edgetpu/best-%gms.arch.json", d, b96);
            char *a96 = test_read_file(path);
            ib_lut *t;
            CHECK(!ib_lut_load(&t, lut96), "%s", ib_errmsg());
            ib_latency_prediction pd;
            CHECK(!ib_lut_predict_detail_head(t, a96, &det_head, 96, &pd), "%s", ib_errmsg());
            ib_lut_free(t);
            CHECK(found && ms <= b96 && fabs(pd.ms - ms) < 1e-3 * ms, "pick at %g ms under %g ms at 96 px; the table says %g ms",
                  ms, b96, pd.ms);
            CHECK(strstr(a96, "\"input\": 96"), "the pick's arch file is not for 96 px: %s", a96);
            ib_latency_prediction_free(&pd);
            free(a96);
        }
    }
    // --metric loss: each path scored by minus its held-out multibox loss (lower loss, higher score)
    snprintf(cmd, sizeof cmd,
             "%s search --task detect --supernet %s --lut edgetpu=%s --budget-ms %.6f --population 3 --generations 1 "
             "--batch 1 --sample 2 --calib-batches 1 --eval-images 24 --threads 1 --workers 1 --seed 4 --quiet --metric loss "
             "--out %s/det_search_loss --json",
             bin, snp, lut, budget, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "search --task detect --metric loss failed (%d): %s", rc, err);
    json_t *jl = json_loads(out, 0, NULL);
    json_t *pl = json_array_get(json_object_get(json_array_get(json_object_get(jl, "targets"), 0), "picks"), 0);
    double lscore = json_real_value(json_object_get(pl, "score"));
    const char *llabel = json_string_value(json_object_get(jl, "score"));
    CHECK(lscore < 0 && lscore > -100 && llabel && strstr(llabel, "-loss"), "--metric loss: score %g (%s): %s", lscore,
          llabel ? llabel : "no label", out);
    json_decref(jl);
    free(out), free(err);
    // --verify on a table relabelled as this CPU's: the picks timed as detectors (the task's time_task), the
    // summary carries the measurements
    {
        ib_lut *t;
        char here[256], lut_here[700];
        CHECK(!ib_lut_load(&t, lut), "%s", ib_errmsg());
        ib_lut_device_name(here, sizeof here);
        ib_lut_set_meta(t, "target", "cpu");
        ib_lut_set_meta(t, "device", here);
        ib_lut_set_meta(t, "threads", "1");
        snprintf(lut_here, sizeof lut_here, "%s/det_here.csv", d);
        CHECK(!ib_lut_save(t, lut_here), "%s", ib_errmsg());
        ib_lut_free(t);
        snprintf(cmd, sizeof cmd,
                 "%s search --task detect --supernet %s --lut cpu=%s --budget-ms %.6f --population 3 --generations 1 "
                 "--batch 1 --sample 2 --calib-batches 1 --eval-images 24 --threads 1 --workers 1 --seed 4 --verify 2 "
                 "--verify-slack 0.5 --out %s/det_search_verify --json",
                 bin, snp, lut_here, budget, d);
        rc = test_run(cmd, &out, &err);
        CHECK(rc == 0, "search --task detect --verify failed (%d): %s", rc, err);
        json_t *jv = json_loads(out, 0, NULL);
        json_t *pv = json_array_get(json_object_get(json_array_get(json_object_get(jv, "targets"), 0), "picks"), 0);
        CHECK(json_is_boolean(json_object_get(pv, "verified")) && json_integer_value(json_object_get(pv, "timed")) >= 1 &&
                  fabs(json_real_value(json_object_get(pv, "budget_measured_ms")) - budget) < 1e-6 && strstr(err, "timing the"),
              "--verify: %s / %s", out, err);
        json_decref(jv);
        free(out), free(err);
    }
    // a detection supernet searched as a classifier, and a classification metric, are refused
    snprintf(cmd, sizeof cmd, "%s search --task classify --supernet %s --lut edgetpu=%s --budget-ms 1 --out %s/det_search_x",
             bin, snp, lut, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, "trained for detect"), "--task classify on a detection supernet gave %d: %s", rc, err);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s search --supernet %s --lut edgetpu=%s --budget-ms 1 --metric top1 --out %s/det_search_y",
             bin, snp, lut, d);
    rc = test_run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, "ap50"), "--metric top1 on a detection supernet gave %d: %s", rc, err);
    free(out), free(err);
}
