// The segmentation head searched with the backbone (Autoseg-EdgeTPU): a space's seg_head choices (BiFPN
// layers and width) are one more gene of every choice vector; a path's head is a view of the shared largest
// head (its first layers and channels); the latency table has a head row per choice and the search predicts
// each candidate with its own; the pick's arch file carries its head, extract writes a checkpoint with that
// head which computes what the path computed. Tiny runs on synthetic 32 px scenes over the tiny space with
// seg_head {"repeats": [1, 2], "width": [8, 16], "low_stride": [2, 4]} (levels at strides 2, 4, 8 or 4, 8).
#include "tests/test.h"
#include "search/search.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char space_path[512], data[512], val[512], lut[512], largest[512], smallest[512];
static double budget;
static const ib_latency_head bifpn_head = {.task = "segment", .seg_head = "bifpn", .seg_high_stride = 8,
                                           .seg_low_stride = 4, .seg_head_width = 16, .seg_repeats = 2, .classes = 7};

// The tiny space with the head's choices.
static void load_space(ib_space *s) {
    IB_ASSERT(!ib_space_load(s, project_path("search/spaces/tiny.space.json")), "%s", ib_errmsg());
    s->n_seg_repeats = 2, s->seg_repeats[0] = 1, s->seg_repeats[1] = 2;
    s->n_seg_width = 2, s->seg_width[0] = 8, s->seg_width[1] = 16;
    s->n_seg_low = 2, s->seg_low[0] = 2, s->seg_low[1] = 4;
}

static void fixtures(void) {
    if (data[0]) return;
    const char *d = test_tmpdir();
    ib_space s;
    load_space(&s);
    char *j = ib_space_to_json(&s);
    snprintf(space_path, sizeof space_path, "%s/tiny_seghead.space.json", d);
    FILE *f = fopen(space_path, "w");
    IB_ASSERT(f && fputs(j, f) >= 0 && fclose(f) == 0, "cannot write %s", space_path);
    free(j);
    ib_space_free(&s);
    snprintf(data, sizeof data, "%s/sh_train.h5", d);
    snprintf(val, sizeof val, "%s/sh_val.h5", d);
    IB_ASSERT(!ib_synth_write_pack(data, 96, 32, 31, 1, NULL, NULL, NULL), "%s", ib_errmsg());
    IB_ASSERT(!ib_synth_write_pack(val, 32, 32, 32, 1, NULL, NULL, NULL), "%s", ib_errmsg());
    snprintf(lut, sizeof lut, "%s/sh_edgetpu.csv", d);
    IB_ASSERT(!ib_latency_model_head(space_path, "edgetpu", 32, 0, &bifpn_head, lut, NULL), "%s", ib_errmsg());
    budget = test_budget_between_head(space_path, lut, 32, &bifpn_head, smallest, largest, sizeof largest);
}

TEST(space_seg_head_is_a_gene) {
    ib_space s, plain;
    load_space(&s);
    IB_ASSERT(!ib_space_load(&plain, project_path("search/spaces/tiny.space.json")), "%s", ib_errmsg());
    CHECK(ib_space_genes(&s) == s.n_layers + 1 && ib_space_head_choices(&s) == 8 && ib_space_genes(&plain) == plain.n_layers &&
          ib_space_head_choices(&plain) == 0, "genes %d of %d layers, head choices %d", ib_space_genes(&s), s.n_layers,
          ib_space_head_choices(&s));
    // eight times the subnets
    double lg, lg0;
    ib_space_count(&s, NULL, 0, &lg);
    ib_space_count(&plain, NULL, 0, &lg0);
    CHECK(fabs(lg - lg0 - log10(8.0)) < 1e-9, "log10 count %g against %g", lg, lg0);
    // the file round-trips
    char *j = ib_space_to_json(&s);
    ib_space b;
    CHECK(!ib_space_parse(&b, j, "json"), "%s", ib_errmsg());
    CHECK(b.n_seg_repeats == 2 && b.seg_repeats[1] == 2 && b.n_seg_width == 2 && b.seg_width[0] == 8 && b.seg_width[1] == 16 &&
              b.n_seg_low == 2 && b.seg_low[0] == 2 && b.seg_low[1] == 4,
          "parsed back: %s", j);
    ib_space_free(&b);
    // largest and smallest: the largest and the smallest head; a random choice vector round-trips through its arch
    int *c = calloc((size_t)ib_space_genes(&s), sizeof(int)), *back = calloc((size_t)ib_space_genes(&s), sizeof(int));
    ib_arch a;
    ib_space_sample(&s, IB_SAMPLE_LARGEST, NULL, c);
    CHECK(!ib_space_arch(&s, c, 7, &a) && a.seg_repeats == 2 && a.seg_width == 16 && a.seg_low_stride == 2, "largest: %d x %d from %d",
          a.seg_repeats, a.seg_width, a.seg_low_stride);
    ib_arch_free(&a);
    ib_space_sample(&s, IB_SAMPLE_SMALLEST, NULL, c);
    CHECK(!ib_space_arch(&s, c, 7, &a) && a.seg_repeats == 1 && a.seg_width == 8 && a.seg_low_stride == 4, "smallest: %d x %d from %d",
          a.seg_repeats, a.seg_width, a.seg_low_stride);
    ib_arch_free(&a);
    ib_rng r;
    ib_rng_seed(&r, 3, 0);
    int seen[8] = {0};
    for (int i = 0; i < 80; i++) {
        ib_space_sample(&s, IB_SAMPLE_RANDOM, &r, c);
        seen[c[s.n_layers]]++;
        CHECK(!ib_space_arch(&s, c, 7, &a), "%s", ib_errmsg());
        char *aj = ib_arch_to_json(&a);
        ib_arch a2;
        CHECK(!ib_arch_parse(&a2, aj, "arch") && a2.seg_repeats == a.seg_repeats && a2.seg_width == a.seg_width &&
              a2.seg_low_stride == a.seg_low_stride, "%s", aj);
        CHECK(!ib_space_check(&s, &a2, "arch", back) && !memcmp(c, back, sizeof(int) * (size_t)ib_space_genes(&s)),
              "choices do not round-trip: %s", ib_errmsg());
        free(aj);
        ib_arch_free(&a), ib_arch_free(&a2);
    }
    for (int i = 0; i < 8; i++) CHECK(seen[i] > 0, "head choice %d never drawn in 80", i);
    // fair sampling draws a head per path
    int P = ib_space_fair_paths(&s), G = ib_space_genes(&s), *fc = calloc((size_t)(P * G), sizeof(int));
    ib_space_sample_fair(&s, &r, P, fc);
    for (int p = 0; p < P; p++) CHECK(fc[p * G + s.n_layers] >= 0 && fc[p * G + s.n_layers] < 8, "fair path %d head %d", p, fc[p * G + s.n_layers]);
    free(fc);
    // refusals: an arch without a head, with a width the space lacks, a head where the space has none
    ib_space_sample(&s, IB_SAMPLE_SMALLEST, NULL, c);
    CHECK(!ib_space_arch(&s, c, 7, &a), "%s", ib_errmsg());
    a.seg_width = 12;
    CHECK(ib_space_check(&s, &a, "x.arch.json", NULL) == IB_ERR_ARG && strstr(ib_errmsg(), "x.arch.json: seg_head") &&
          strstr(ib_errmsg(), "widths 8, 16") && strstr(ib_errmsg(), "low strides 2, 4"), "width 12: %s", ib_errmsg());
    CHECK(ib_space_check(&plain, &a, "x.arch.json", NULL) == IB_ERR_ARG && strstr(ib_errmsg(), "no segmentation head choices"),
          "a head on a plain space: %s", ib_errmsg());
    a.seg_width = a.seg_repeats = 0;
    CHECK(ib_space_check(&s, &a, "x.arch.json", NULL) == IB_ERR_ARG && strstr(ib_errmsg(), "seg_head: missing"),
          "no head: %s", ib_errmsg());
    ib_arch_free(&a);
    // malformed seg_head in a space file
    static const char *bad[][2] = {{"{\"repeats\": [1, 2]}", "seg_head.width: missing"},
                            {"{\"repeats\": [2, 1], \"width\": [8]}", "ascending"},
                            {"{\"repeats\": [1], \"width\": [8], \"levels\": [4]}", "levels"},
                            {"{\"repeats\": [1], \"width\": [8], \"low_stride\": [3]}", "powers of 2"}};
    char *pj = ib_space_to_json(&plain);
    size_t n = strlen(pj);
    while (n > 0 && pj[n - 1] != '}') n--;   // the closing brace of the whole object
    for (int i = 0; i < 4; i++) {
        char text[8192];
        snprintf(text, sizeof text, "%.*s, \"seg_head\": %s}", (int)(n - 1), pj, bad[i][0]);
        ib_status st = ib_space_parse(&b, text, "bad.space.json");
        CHECK(st == IB_ERR_FORMAT && strstr(ib_errmsg(), "bad.space.json") && strstr(ib_errmsg(), bad[i][1]), "%s: %d %s",
              bad[i][0], st, ib_errmsg());
        if (!st) ib_space_free(&b);
    }
    free(pj);
    free(j), free(c), free(back);
    ib_space_free(&s), ib_space_free(&plain);
}

// The table has the BiFPN row of every head choice; an arch's prediction takes its own head's.
TEST(seg_head_latency_rows) {
    fixtures();
    ib_lut *t;
    CHECK(!ib_lut_load(&t, lut), "%s", ib_errmsg());
    int rows = 0, widths = 0, layers = 0, lows = 0;
    for (int i = 0; i < ib_lut_rows(t); i++) {
        double ms;
        ib_lut_key k = ib_lut_row(t, i, &ms);
        if (k.op != IB_LUT_BIFPN) continue;
        rows++;
        widths |= k.groups == 8 ? 1 : k.groups == 16 ? 2 : 4;
        layers |= k.r_in == 1 ? 1 : k.r_in == 2 ? 2 : 4;
        lows |= k.kernel == 2 ? 1 : k.kernel == 4 ? 2 : 4;
    }
    CHECK(rows == 8 && widths == 3 && layers == 3 && lows == 3, "%d bifpn rows (widths %d, layers %d, low strides %d) in %s", rows, widths, layers, lows, lut);
    ib_latency_prediction p[2];
    const char *arch[2] = {smallest, largest};
    for (int k = 0; k < 2; k++) {
        char *a = test_read_file(arch[k]);
        CHECK(!ib_lut_predict_detail_head(t, a, &bifpn_head, 32, &p[k]), "%s", ib_errmsg());
        free(a);
    }
    CHECK(!strncmp(p[0].rows[p[0].n_rows - 1].key, "bifpn,", 6) && strstr(p[0].rows[p[0].n_rows - 1].key, ",8,1,") &&
          strstr(p[1].rows[p[1].n_rows - 1].key, ",16,2,") && p[1].rows[p[1].n_rows - 1].ms > p[0].rows[p[0].n_rows - 1].ms,
          "head rows %s (%g ms), %s (%g ms)", p[0].rows[p[0].n_rows - 1].key, p[0].rows[p[0].n_rows - 1].ms,
          p[1].rows[p[1].n_rows - 1].key, p[1].rows[p[1].n_rows - 1].ms);
    ib_latency_prediction_free(&p[0]), ib_latency_prediction_free(&p[1]);
    ib_lut_free(t);
}

static int run(const char *cmd, char **out, char **err) { return test_run(cmd, out, err); }

// Training, scoring a path with its own head, extraction, the search, and the refusals.
TEST(seg_head_search_cli) {
    fixtures();
    const char *d = test_tmpdir(), *bin = test_ibnas_bin();
    char snp[600], cmd[4096], *out = NULL, *err = NULL;
    snprintf(snp, sizeof snp, "%s/sh_sn.h5", d);
    snprintf(cmd, sizeof cmd,
             "%s supernet train --task segment --head bifpn --high-stride 8 --low-stride 4 --space %s --data %s --out %s "
             "--epochs 3 --batch 8 --res 32 --lr 0.05 --warmup 0.3 --holdout 0.25 --threads 1 --workers 1 --seed 7 --quiet",
             bin, space_path, data, snp);
    int rc = run(cmd, &out, &err);
    CHECK(rc == 0, "supernet train with head choices (%d): %s", rc, err);
    free(out), free(err);
    // the shared head is the largest: 2 layers; the file keeps the head asked for (--head-width 64 by default), the
    // head of archs that carry none (a mobilenetv2 baseline's)
    CHECK(test_same_array(snp, snp, "params/seg.bifpn.1.td.0.fuse.weight"), "no second BiFPN layer in %s", snp);
    char *settings = NULL;
    ib_h5 *f;
    CHECK(!ib_h5_open(&f, snp) && !ib_h5_attr_str(f, "/", "segment", &settings), "%s", ib_errmsg());
    ib_h5_close(f);
    int asked = strstr(settings, "\"width\":64") != NULL;
    CHECK(asked, "segment attribute of %s: %s", snp, settings);
    free(settings);

    // supernet eval of the smallest path (1 layer of 8 channels) and the largest; extract of the smallest gives a
    // checkpoint whose eval is the path's, to 1e-6
    double m[2][3];
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s supernet eval --supernet %s --arch %s --data %s --calib-batches 2 --calib-batch 16 "
                 "--threads 1 --workers 1 --json", bin, snp, k ? largest : smallest, val);
        rc = run(cmd, &out, &err);
        json_t *j = json_loads(out, 0, NULL);
        m[k][0] = json_number_value(json_object_get(j, "miou"));
        m[k][1] = json_number_value(json_object_get(j, "pixel_acc"));
        m[k][2] = json_number_value(json_object_get(j, "loss"));
        json_decref(j);
        CHECK(rc == 0 && m[k][0] > 0 && m[k][1] > 0.3 && m[k][2] > 0 && isfinite(m[k][2]), "supernet eval (%d): %s %s", rc, out, err);
        free(out), free(err);
    }
    CHECK(m[0][2] != m[1][2], "smallest and largest paths give the same loss %g", m[0][2]);
    char sub[700];
    snprintf(sub, sizeof sub, "%s/sh_sub.h5", d);
    snprintf(cmd, sizeof cmd, "(%s extract --supernet %s --arch %s --calib-batches 2 --calib-batch 16 --threads 1 --workers 1 "
             "--out %s && %s eval --task segment --model %s --data %s --threads 1 --json)", bin, snp, smallest, sub, bin, sub, val);
    rc = run(cmd, &out, &err);
    json_t *ej = json_loads(out, 0, NULL);
    double emiou = json_number_value(json_object_get(ej, "miou")), eacc = json_number_value(json_object_get(ej, "pixel_acc")),
           eloss = json_number_value(json_object_get(ej, "loss"));
    json_decref(ej);
    CHECK(rc == 0, "extract + eval (%d): %s %s", rc, out, err);
    CHECK(fabs(emiou - m[0][0]) < 1e-6 && fabs(eacc - m[0][1]) < 1e-6 && fabs(eloss - m[0][2]) < 1e-5 * m[0][2],
          "extracted: mIoU %.7f pixel acc %.7f loss %.7f; the path %.7f %.7f %.7f", emiou, eacc, eloss, m[0][0], m[0][1], m[0][2]);
    free(out), free(err);
    // the checkpoint's head is the path's: 8 channels, 1 layer, levels from stride 4
    char *head_json = NULL;
    CHECK(!ib_h5_open(&f, sub) && !ib_h5_attr_str(f, "/", "seg_head", &head_json), "%s", ib_errmsg());
    ib_h5_close(f);
    CHECK(strstr(head_json, "\"width\": 8") || strstr(head_json, "\"width\":8"), "seg_head of %s: %s", sub, head_json);
    CHECK(strstr(head_json, "\"repeats\": 1") || strstr(head_json, "\"repeats\":1"), "seg_head of %s: %s", sub, head_json);
    CHECK(strstr(head_json, "\"low_stride\": 4") || strstr(head_json, "\"low_stride\":4"), "seg_head of %s: %s", sub, head_json);
    free(head_json);

    // the search: the pick meets its budget as predicted with its own head's row, and its arch names its head
    snprintf(cmd, sizeof cmd,
             "%s search --task segment --supernet %s --lut edgetpu=%s --budget-ms %.6f --population 4 --generations 1 "
             "--batch 2 --sample 2 --calib-batches 1 --eval-images 16 --threads 1 --workers 1 --seed 4 --quiet "
             "--out %s/sh_search --json", bin, snp, lut, budget, d);
    rc = run(cmd, &out, &err);
    CHECK(rc == 0, "search (%d): %s", rc, err);
    double ms;
    int found = test_search_pick(out, &ms, NULL) == 1;
    free(out), free(err);
    CHECK(found && ms <= budget, "pick found %d at %g ms, budget %g", found, ms, budget);
    char path[700];
    snprintf(path, sizeof path, "%s/sh_search/edgetpu/best-%gms.arch.json", d, budget);
    char *arch = test_read_file(path);
    ib_arch a;
    CHECK(!ib_arch_parse(&a, arch, path) && a.seg_repeats > 0 && a.seg_width > 0, "the pick has no seg_head: %s", arch);
    char want[64];
    snprintf(want, sizeof want, ",%d,%d,", a.seg_width, a.seg_repeats);
    ib_arch_free(&a);
    ib_lut *t;
    ib_latency_prediction lp;
    CHECK(!ib_lut_load(&t, lut) && !ib_lut_predict_detail_head(t, arch, &bifpn_head, 32, &lp), "%s", ib_errmsg());
    ib_lut_free(t);
    free(arch);
    CHECK(fabs(lp.ms - ms) < 1e-3 * ms && strstr(lp.rows[lp.n_rows - 1].key, want), "pick at %g ms, predicted %g with row %s",
          ms, lp.ms, lp.rows[lp.n_rows - 1].key);
    ib_latency_prediction_free(&lp);
    // pareto.csv names each candidate's head
    snprintf(path, sizeof path, "%s/sh_search/edgetpu/pareto.csv", d);
    char *csv = test_read_file(path);
    int named = strstr(csv, "|bifpn:w") != NULL;
    free(csv);
    CHECK(named, "%s does not name the heads", path);

    // refusals: the head's cost left out, a DeepLab head, a classification supernet over the space
    snprintf(cmd, sizeof cmd, "%s search --task segment --supernet %s --lut edgetpu=%s --budget-ms 1 --latency-of backbone "
             "--out %s/sh_search_b", bin, snp, lut, d);
    rc = run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, snp) && strstr(err, "--latency-of task"), "--latency-of backbone gave %d: %s", rc, err);
    free(out), free(err);
    const char *refused[][2] = {{"--task segment --head deeplab --high-stride 8 --low-stride 4", "--head bifpn"},
                                {"", "--task segment --head bifpn"}};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s supernet train %s --space %s --data %s --out %s/sh_bad.h5 --epochs 1 --batch 8 --res 32 "
                 "--max-steps 1 --threads 1 --workers 1 --quiet", bin, refused[k][0], space_path, data, d);
        rc = run(cmd, &out, &err);
        CHECK(rc != 0 && strstr(err, refused[k][1]), "supernet train %s gave %d: %s", refused[k][0], rc, err);
        free(out), free(err);
    }
    // an arch without a head is refused by supernet eval, naming the file
    ib_space *sp;
    char *plain;
    CHECK(!ib_space_open(&sp, project_path("search/spaces/tiny.space.json")) && !ib_space_sample_arch(sp, "smallest", 0, 7, &plain),
          "%s", ib_errmsg());
    ib_space_close(sp);
    snprintf(path, sizeof path, "%s/sh_plain.arch.json", d);
    FILE *pf = fopen(path, "w");
    CHECK(pf && fputs(plain, pf) >= 0 && fclose(pf) == 0, "cannot write %s", path);
    free(plain);
    snprintf(cmd, sizeof cmd, "%s supernet eval --supernet %s --arch %s --data %s --threads 1 --workers 1", bin, snp, path, val);
    rc = run(cmd, &out, &err);
    CHECK(rc != 0 && strstr(err, path) && strstr(err, "seg_head: missing"), "an arch without its head gave %d: %s", rc, err);
    free(out), free(err);
}

