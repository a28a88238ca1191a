// The latency of segmenters and detectors (tasks/task_latency.c, docs/LATENCY.md "Segmenters and detectors"):
// the head's table row carries the taps and widths it is built from; a segmenter's prediction is its stem, its
// blocks up to the head's high stride and the head's row (blocks after the cut and the classifier head left
// out), a detector's every block, the head conv alone and the SSDLite row; tables keep the rows through a save
// and a load and refuse broken ones naming the line; `latency profile|model --task segment|detect` add the
// head's rows (a resumed profile adds nothing), `latency predict` is the sum of those rows, and `latency
// measure` times the whole network. No timing thresholds.
#include "tests/test.h"

#include "search/search.h"
#include "tasks/detect.h"
#include "tasks/segment.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The largest subnet of a space as an arch file in the scratch folder; malloc'd path.
static char *largest_arch(const char *space, const char *name) {
    ib_space *sp;
    char *text, *arch = strdup(test_scratch(name));
    IB_ASSERT(!ib_space_open(&sp, space) && !ib_space_sample_arch(sp, "largest", 0, 0, &text), "%s", ib_errmsg());
    ib_space_close(sp);
    FILE *f = fopen(arch, "w");
    IB_ASSERT(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", arch);
    free(text);
    return arch;
}

// `latency predict --verbose --json` with `flags`: 1 when its ms is the sum of its rows (no correction) and the last
// row is of op `last_op`; the ms in *ms, what it printed in why.
static int predict_is_row_sum(const char *cmd_prefix, const char *last_op, double *ms, char *why, size_t n) {
    char cmd[3000], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s --verbose --json", cmd_prefix);
    int rc = test_run(cmd, &out, &err);
    json_t *j = json_loads(out, 0, NULL), *jr = json_object_get(j, "rows");
    double sum = 0;
    for (size_t i = 0; i < json_array_size(jr); i++) sum += json_real_value(json_object_get(json_array_get(jr, i), "ms"));
    const char *last = json_string_value(json_object_get(json_array_get(jr, json_array_size(jr) - 1), "row"));
    *ms = json_real_value(json_object_get(j, "ms"));
    int ok = rc == 0 && j && last && !strncmp(last, last_op, strlen(last_op)) && last[strlen(last_op)] == ',' &&
             fabs(*ms - sum) < 1e-3 && *ms > 0;
    snprintf(why, n, "exit %d: %s %s", rc, out, err);
    json_decref(j);
    free(out), free(err);
    return ok;
}

TEST(seg_lut_task_keys_the_taps_and_widths) {
    ib_arch a;
    ib_arch_mobilenetv2(&a, 0.35f, 1000);
    int hi = ib_arch_last_block_at_stride(&a, 16), mid = ib_arch_last_block_at_stride(&a, 8);
    int lo = ib_arch_last_block_at_stride(&a, 4);
    CHECK(lo >= 0 && mid > lo && hi > mid && hi + 1 < a.n_blocks, "mobilenetv2's taps %d %d %d of %d", lo, mid, hi,
          a.n_blocks);
    ib_seg_head_cfg c;
    ib_seg_head_cfg_default(&c);
    ib_lut_task t;
    CHECK(ib_seg_lut_task(&a, 11, &c, 96, &t) == IB_OK, "%s", ib_errmsg());
    char ks[160], want[160];
    snprintf(want, sizeof want, "deeplab,%d,11,96,96,16,4,%d,64,64,24", a.blocks[hi].out, a.blocks[lo].out);
    CHECK(t.cut == hi + 1 && !strcmp(ib_lut_key_str(&t.head, ks, sizeof ks), want), "cut %d (want %d), row %s (want %s)",
          t.cut, hi + 1, ks, want);
    snprintf(c.kind, sizeof c.kind, "bifpn");
    c.width = 32, c.repeats = 3;
    CHECK(ib_seg_lut_task(&a, 11, &c, 96, &t) == IB_OK, "%s", ib_errmsg());
    snprintf(want, sizeof want, "bifpn,%d,11,96,96,16,4,%d,32,3,%d", a.blocks[hi].out, a.blocks[lo].out, a.blocks[mid].out);
    CHECK(t.cut == hi + 1 && !strcmp(ib_lut_key_str(&t.head, ks, sizeof ks), want), "cut %d (want %d), row %s (want %s)",
          t.cut, hi + 1, ks, want);
    // no block at the strides asked for: the head's own message
    c.high_stride = 64;
    CHECK(ib_seg_lut_task(&a, 11, &c, 96, &t) == IB_ERR_ARG && strstr(ib_errmsg(), "stride 64"), "%s", ib_errmsg());
    ib_arch_free(&a);
}

TEST(seg_predict_is_stem_blocks_to_the_cut_and_head_row) {
    ib_arch a;
    ib_arch_mobilenetv2(&a, 0.5f, 11);
    ib_seg_head_cfg c;
    ib_seg_head_cfg_default(&c);
    ib_lut_task task;
    CHECK(ib_seg_lut_task(&a, 11, &c, 64, &task) == IB_OK, "%s", ib_errmsg());
    // a table whose every row is known: blocks before the cut 1 ms, after it 1000, the classifier head 500
    ib_lut *t = ib_lut_new("handmade");
    ib_lut_key keys[64];
    int block[64], n = ib_lut_arch_keys(&a, 64, keys, block);
    for (int i = 0; i < n; i++) {
        double ms = block[i] < 0 ? 0.5 : block[i] >= a.n_blocks ? 500 : block[i] < task.cut ? 1 : 1000;
        CHECK(ib_lut_set(t, &keys[i], ms) == IB_OK, "%s", ib_errmsg());
    }
    double ms = 0, sum = 0;
    int rows = 0;
    // the head's row missing: named, with how to add it
    ib_status s = ib_lut_predict_task(t, &a, 64, &task, &ms);
    CHECK(s == IB_ERR_NOTFOUND && strstr(ib_errmsg(), "no row deeplab,") && strstr(ib_errmsg(), "--task segment"),
          "status %d: %s", s, ib_errmsg());
    CHECK(ib_lut_set(t, &task.head, 7) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_lut_predict_task(t, &a, 64, &task, &ms) == IB_OK &&
          ib_lut_predict_sum_task(t, &a, 64, &task, &sum, &rows) == IB_OK, "%s", ib_errmsg());
    CHECK(ms == 0.5 + task.cut + 7 && sum == ms && rows == task.cut + 2, "predicted %g, sum %g of %d rows (cut %d)", ms,
          sum, rows, task.cut);
    double cls;
    CHECK(ib_lut_predict(t, &a, 64, &cls) == IB_OK && cls > 1000, "the classifier %g", cls);
    // the correction applies as to a classifier
    ib_lut_correction corr = {.a = 2, .b = 0.5};
    CHECK(ib_lut_set_correction(t, 64, &corr, NULL) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_lut_predict_task(t, &a, 64, &task, &ms) == IB_OK, "%s", ib_errmsg());
    CHECK(fabs(ms - (2 * sum + 0.5 * rows)) < 1e-9, "corrected %g", ms);
    // the row survives a save and a load
    const char *p = test_scratch("seg_rows.csv");
    CHECK(ib_lut_save(t, p) == IB_OK, "%s", ib_errmsg());
    ib_lut_free(t);
    CHECK(ib_lut_load(&t, p) == IB_OK, "%s", ib_errmsg());
    double head = 0;
    CHECK(ib_lut_find(t, &task.head, &head) && head == 7, "the head's row after a load: %g", head);
    ib_lut_free(t);
    ib_arch_free(&a);
}

TEST(seg_rows_in_csv_checked) {
    static const char *const bad[][2] = {
        {"deeplab,96,11,96,96,16,4,24,64,64.5,24,0.3\n", "not a width"},   // widths are integers
        {"bifpn,96,11,96,96,16,4,24,64,2,-1,0.3\n", "not a width"},
        {"tucker,16,16,8,8,1,3,0,0,64,0.75,0.1\n", "not a ratio"},          // ratios stay ratios elsewhere
        {"aspp,96,11,96,96,16,4,24,64,64,24,0.3\n", "deeplab, bifpn or ssdlite"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = test_scratch("seg_bad.csv");
        FILE *f = fopen(p, "w");
        CHECK(f, "cannot write %s", p);
        fprintf(f, "# target: cpu\nop,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\n"
                   "deeplab,96,11,96,96,16,4,24,64,64,24,0.3\n%s", bad[i][0]);
        fclose(f);
        ib_lut *t;
        ib_status s = ib_lut_load(&t, p);
        char where[600];
        snprintf(where, sizeof where, "%s:4", p);
        CHECK(s == IB_ERR_FORMAT && strstr(ib_errmsg(), where) && strstr(ib_errmsg(), bad[i][1]),
              "row %s: status %d, %s", bad[i][0], s, ib_errmsg());
    }
}

// The CLI over a tiny space at 32 px (strides 2, 4, 8: the head at 8 and 4)
TEST(cli_latency_segmenter) {
    const char *bin = test_ibnas_bin(), *space = project_path("search/spaces/tiny.space.json");
    const char *lut = test_scratch("seg_tiny_cpu.csv"), *head = "--task segment --high-stride 8 --low-stride 4 --head-width 16";
    char cmd[3000], *out = NULL, *err = NULL;
    int rows[3], added[3];
    for (int k = 0; k < 3; k++) {   // profile, the same again (resumed: nothing), and without the head (nothing)
        snprintf(cmd, sizeof cmd, "%s latency profile --space %s --res 32 --classes 7 --out %s --calibrate 0 --repeats 2 "
                 "--warmup 1 --min-ms 0 --json %s", bin, space, lut, k < 2 ? head : "");
        int rc = test_run(cmd, &out, &err);
        json_t *j = json_loads(out, 0, NULL);
        CHECK(rc == 0 && j, "profile %d (%d): %s %s", k, rc, out, err);
        rows[k] = (int)json_integer_value(json_object_get(j, "rows"));
        added[k] = (int)json_integer_value(json_object_get(j, "added"));
        json_decref(j);
        free(out), free(err);
    }
    CHECK(rows[0] == added[0] && rows[1] == rows[0] && added[1] == 0 && rows[2] == rows[0] - 1 && added[2] == 0,
          "rows %d %d %d, added %d %d %d", rows[0], rows[1], rows[2], added[0], added[1], added[2]);
    // predict: the sum of the segmenter's rows (no correction: --calibrate 0), the head's row last
    char *arch = largest_arch(space, "seg_largest.arch.json"), why[4000];
    double ms;
    snprintf(cmd, sizeof cmd, "%s latency predict --lut %s --arch %s --res 32 --classes 7 %s", bin, lut, arch, head);
    CHECK(predict_is_row_sum(cmd, "deeplab", &ms, why, sizeof why), "predict: %s", why);
    // measure: the whole segmenter
    snprintf(cmd, sizeof cmd, "%s latency measure --arch %s --res 32 --classes 7 --repeats 3 --json %s", bin, arch, head);
    int rc = test_run(cmd, &out, &err);
    json_t *j = json_loads(out, 0, NULL);
    ms = json_real_value(json_object_get(j, "ms"));
    CHECK(rc == 0 && j && ms > 0 && isfinite(ms), "measure (%d): %s %s", rc, out, err);
    json_decref(j);
    free(out), free(err);
    // an unknown task and a head the arch cannot carry: refused, saying why
    snprintf(cmd, sizeof cmd, "%s latency measure --arch %s --res 32 --task pose", bin, arch);
    rc = test_run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, "not classify, segment or detect"), "--task pose (%d): %s", rc, err);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s latency measure --arch %s --res 32 --task detect", bin, arch);
    rc = test_run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, "stride-16 and stride-32"), "--task detect on a stride-8 arch (%d): %s", rc, err);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s latency predict --lut %s --arch %s --res 32 --task segment", bin, lut, arch);
    rc = test_run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, "no block at stride 16"), "--task segment at stride 16 of the tiny space (%d): %s", rc, err);
    free(out), free(err);
    free(arch);
}

// The modelled targets model the head's row from its columns: a wider or deeper head costs more
TEST(model_seg_head_rows) {
    const char *space = project_path("search/spaces/mobiledets.space.json");
    double ms[2][3];
    static const char *const targets[2] = {"edgetpu", "dsp"};
    for (int t = 0; t < 2; t++)
        for (int v = 0; v < 3; v++) {
            ib_latency_head h = {.task = "segment", .seg_head = v ? "bifpn" : "deeplab", .seg_repeats = v == 2 ? 4 : 0,
                                 .classes = 11};
            const char *p = test_scratch("seg_model.csv");
            remove(p);
            int rows = 0;
            CHECK(ib_latency_model_head(space, targets[t], 96, 0, &h, p, &rows) == IB_OK, "%s", ib_errmsg());
            ib_lut *l;
            CHECK(ib_lut_load(&l, p) == IB_OK, "%s", ib_errmsg());
            ms[t][v] = -1;
            for (int i = 0; i < ib_lut_rows(l); i++) {
                double m;
                ib_lut_key k = ib_lut_row(l, i, &m);
                if (k.op == (v ? IB_LUT_BIFPN : IB_LUT_DEEPLAB)) ms[t][v] = m;
            }
            CHECK(rows == ib_lut_rows(l), "%d rows reported, %d in the table", rows, ib_lut_rows(l));
            ib_lut_free(l);
        }
    for (int t = 0; t < 2; t++)
        CHECK(ms[t][0] > 0 && ms[t][1] > 0 && ms[t][2] > ms[t][1], "%s: deeplab %g, bifpn %g, bifpn x4 %g ms", targets[t],
              ms[t][0], ms[t][1], ms[t][2]);
}

TEST(det_lut_task_keys_and_predict) {
    ib_arch a;
    ib_arch_mobilenetv2(&a, 1.0f, 1000);
    ib_ssd_cfg c;
    ib_ssd_cfg_default(&c, 6);
    int hi = ib_arch_last_block_at_stride(&a, 16), A = c.n_ratios + 1;
    const ib_block_cfg *nb = &a.blocks[hi + 1];
    CHECK(nb->op == IB_BLOCK_IBN && nb->stride == 2 && nb->expand > 1, "mobilenetv2's first stride-32 block");
    ib_lut_task t;
    char ks[160], want[160], conv[160];
    // 96 px: the stride-32 map is 3x3, so two extra levels (3 -> 2 -> 1) of 512 and 256
    CHECK(ib_det_lut_task(&a, &c, 96, &t) == IB_OK, "%s", ib_errmsg());
    snprintf(want, sizeof want, "ssdlite,%d,6,96,96,2,%d,%d,1280,512,256", ib_block_hidden(nb, a.blocks[hi].out), A,
             a.blocks[hi].out);
    snprintf(conv, sizeof conv, "head,%d,0,3,3,0,0,1280,0,0,0", a.blocks[a.n_blocks - 1].out);
    CHECK(t.cut == a.n_blocks && t.has_conv && !strcmp(ib_lut_key_str(&t.head, ks, sizeof ks), want), "cut %d, row %s (want %s)",
          t.cut, ks, want);
    CHECK(!strcmp(ib_lut_key_str(&t.conv, ks, sizeof ks), conv), "conv row %s (want %s)", ks, conv);
    // the block output tapped (as a detection supernet builds it): no expansion
    c.tap_expansion = 0;
    CHECK(ib_det_lut_task(&a, &c, 96, &t) == IB_OK, "%s", ib_errmsg());
    snprintf(want, sizeof want, "ssdlite,%d,6,96,96,2,%d,0,1280,512,256", a.blocks[hi].out, A);
    CHECK(!strcmp(ib_lut_key_str(&t.head, ks, sizeof ks), want), "row %s (want %s)", ks, want);
    // the prediction: stem, every block, the head conv alone, the SSDLite row; not the classifier's head
    ib_lut *l = ib_lut_new("handmade");
    ib_lut_key keys[64];
    int block[64], n = ib_lut_arch_keys(&a, 96, keys, block);
    for (int i = 0; i < n; i++) CHECK(ib_lut_set(l, &keys[i], block[i] >= a.n_blocks ? 500 : 1) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_lut_set(l, &t.conv, 20) == IB_OK && ib_lut_set(l, &t.head, 300) == IB_OK, "%s", ib_errmsg());
    double ms, sum;
    int rows;
    CHECK(ib_lut_predict_task(l, &a, 96, &t, &ms) == IB_OK && ib_lut_predict_sum_task(l, &a, 96, &t, &sum, &rows) == IB_OK,
          "%s", ib_errmsg());
    int blocks = 0;
    for (int i = 0; i < a.n_blocks; i++) blocks += a.blocks[i].op != IB_BLOCK_SKIP;
    CHECK(ms == 1 + blocks + 20 + 300 && rows == blocks + 3, "predicted %g of %d rows (%d blocks)", ms, rows, blocks);
    ib_lut_free(l);
    // a backbone without stride 32 cannot carry SSDLite
    a.n_blocks = hi + 1;
    CHECK(ib_det_lut_task(&a, &c, 96, &t) == IB_ERR_ARG && strstr(ib_errmsg(), "stride-32"), "%s", ib_errmsg());
    ib_arch_free(&a);
}

// The CLI on the demo space (strides to 32) at 32 px: the detector's rows, their sum, the whole detector
TEST(cli_latency_detector) {
    const char *bin = test_ibnas_bin(), *space = project_path("search/spaces/demo.space.json");
    const char *lut = test_scratch("det_demo_cpu.csv");
    char cmd[3000], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s latency profile --space %s --res 32 --classes 6 --out %s --calibrate 0 --repeats 2 --warmup 1 "
             "--min-ms 0 --json --task detect", bin, space, lut);
    int rc = test_run(cmd, &out, &err);
    CHECK(rc == 0, "profile --task detect (%d): %s %s", rc, out, err);
    free(out), free(err);
    // the rows: the head conv alone, and one SSDLite row per width the first stride-32 layer gives its expansion
    ib_lut *l;
    CHECK(ib_lut_load(&l, lut) == IB_OK, "%s", ib_errmsg());
    int ssd = 0, conv = 0;
    for (int i = 0; i < ib_lut_rows(l); i++) {
        ib_lut_key k = ib_lut_row(l, i, NULL);
        ssd += k.op == IB_LUT_SSDLITE, conv += k.op == IB_LUT_HEAD && k.cout == 0;
    }
    ib_lut_free(l);
    CHECK(conv == 1 && ssd >= 2, "%d head-conv rows, %d ssdlite rows", conv, ssd);
    char *arch = largest_arch(space, "det_largest.arch.json"), why[4000];
    double ms;
    snprintf(cmd, sizeof cmd, "%s latency predict --lut %s --arch %s --res 32 --classes 6 --task detect", bin, lut, arch);
    CHECK(predict_is_row_sum(cmd, "ssdlite", &ms, why, sizeof why), "predict: %s", why);
    snprintf(cmd, sizeof cmd, "%s latency measure --arch %s --res 32 --classes 6 --repeats 3 --task detect --json", bin, arch);
    rc = test_run(cmd, &out, &err);
    json_t *j = json_loads(out, 0, NULL);
    ms = json_real_value(json_object_get(j, "ms"));
    CHECK(rc == 0 && j && ms > 0 && isfinite(ms), "measure (%d): %s %s", rc, out, err);
    json_decref(j);
    free(out), free(err), free(arch);
}
