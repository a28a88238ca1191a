// The COCO bbox evaluator against pycocotools' COCOeval: every shared reference case to 1e-4 (skipped
// when ../shared is absent), and hand-made cases whose numbers follow from the algorithm by hand: no
// detections, a category without detections, more than 100 detections on an image, all-crowd ground
// truth, a detection on a crowd region, and area ranges taken from the annotation's "area".
#include "tests/test.h"

#include "tasks/detect.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *write_tmp(const char *name, const char *text) {
    static char paths[4][512];
    static int k;
    char *p = paths[k++ % 4];
    snprintf(p, 512, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(p, "w");
    IB_ASSERT(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", p);
    return p;
}

// Evaluates and compares with want[12] to 1e-4; 1 on a match, else a message.
static int eval_match(const char *gt, const char *dt, const double want[12], char *msg, size_t n) {
    double got[12];
    ib_status s = ib_coco_eval(gt, dt, got);
    if (s) return snprintf(msg, n, "ib_coco_eval: %s", ib_errmsg()), 0;
    for (int i = 0; i < 12; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-4))
            return snprintf(msg, n, "%s: got %.6f, want %.6f", ib_coco_stat_name(i), got[i], want[i]), 0;
    return 1;
}

TEST(coco_eval_shared_cases) {
    const char *sh = shared_dir();
    if (!sh) SKIP("../shared is absent: the reference cases were not run");
    char dir[512], ann[512];
    snprintf(dir, sizeof dir, "%s/ref/coco_eval", sh);
    snprintf(ann, sizeof ann, "%s/data/coco128/annotations/instances_val2017.json", sh);
    const int cases[] = {0, 1, 2, 7};
    int ran = 0;
    for (int c = 0; c < 4; c++) {
        char exp[600], dets[600], gt[600];
        snprintf(exp, sizeof exp, "%s/case_%d_expected.json", dir, cases[c]);
        snprintf(dets, sizeof dets, "%s/case_%d_dets.json", dir, cases[c]);
        snprintf(gt, sizeof gt, "%s/case_%d_gt.json", dir, cases[c]);
        FILE *f = fopen(gt, "r");
        if (f) fclose(f);
        json_error_t je;
        json_t *e = json_load_file(exp, 0, &je);
        CHECK(e, "%s: %s", exp, je.text);
        double want[12];
        for (int i = 0; i < 12; i++) {
            json_t *v = json_object_get(e, ib_coco_stat_name(i));
            CHECK(json_is_number(v), "%s: no %s", exp, ib_coco_stat_name(i));
            want[i] = json_number_value(v);
        }
        json_decref(e);
        char msg[300];
        CHECK(eval_match(f ? gt : ann, dets, want, msg, sizeof msg), "case %d: %s", cases[c], msg);
        ran++;
    }
    CHECK(ran == 4, "ran %d cases", ran);
}

// Two images, categories 1 and 2; boxes 50x50 (area 2500: medium) unless said.
static const char *gt_two =
    "{\"images\": [{\"id\": 1}, {\"id\": 2}], \"categories\": [{\"id\": 1}, {\"id\": 2}, {\"id\": 3}],"
    " \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 50, 50], \"area\": 2500, \"iscrowd\": 0},"
    "                   {\"id\": 2, \"image_id\": 2, \"category_id\": 2, \"bbox\": [100, 20, 50, 50], \"area\": 2500, \"iscrowd\": 0}]}";

TEST(coco_eval_empty_results) {
    // no detections: every range with ground truth gives 0, small and large (none there) -1
    const double want[12] = {0, 0, 0, -1, 0, -1, 0, 0, 0, -1, 0, -1};
    char msg[300];
    CHECK(eval_match(write_tmp("gt.json", gt_two), write_tmp("dt.json", "[]"), want, msg, sizeof msg), "%s", msg);
}

TEST(coco_eval_category_without_detections) {
    // category 1 found exactly, category 2 not at all, category 3 has no ground truth (left out): means of 1 and 0
    const double want[12] = {0.5, 0.5, 0.5, -1, 0.5, -1, 0.5, 0.5, 0.5, -1, 0.5, -1};
    char msg[300];
    CHECK(eval_match(write_tmp("gt.json", gt_two),
                     write_tmp("dt.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 50, 50], \"score\": 0.9},"
                                          " {\"image_id\": 2, \"category_id\": 3, \"bbox\": [0, 0, 5, 5], \"score\": 0.9}]"),
                     want, msg, sizeof msg),
          "%s", msg);
}

// One ground-truth box; `n_false` false detections scored above the true one, `n_after` below it.
static char *many_dets(int n_false, int n_after) {
    size_t cap = (size_t)(n_false + n_after + 1) * 100 + 16;
    char *s = malloc(cap);
    size_t o = (size_t)snprintf(s, cap, "[");
    for (int i = 0; i < n_false + n_after + 1; i++) {
        double score = i < n_false ? 0.9 - 0.001 * i : i == n_false ? 0.5 : 0.4 - 0.001 * (i - n_false);
        double x = i == n_false ? 10 : 300 + i;
        o += (size_t)snprintf(s + o, cap - o, "%s{\"image_id\": 1, \"category_id\": 1, \"bbox\": [%g, 10, 50, 50], \"score\": %g}",
                              i ? ", " : "", x, score);
    }
    snprintf(s + o, cap - o, "]");
    return s;
}

TEST(coco_eval_more_than_100_detections) {
    const char *gt = write_tmp("gt1.json",
                               "{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 1}], \"annotations\": [{\"id\": 7,"
                               " \"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 50, 50], \"area\": 2500}]}");
    char msg[300];
    // the true detection ranks 100th: found within 100 (precision 1/100 at every recall), not within 10
    char *d = many_dets(99, 5);
    const double want_100[12] = {0.01, 0.01, 0.01, -1, 0.01, -1, 0, 0, 1, -1, 1, -1};
    int ok = eval_match(gt, write_tmp("dt.json", d), want_100, msg, sizeof msg);
    free(d);
    CHECK(ok, "rank 100: %s", msg);
    // ranked 101st: cut off, as if never there
    d = many_dets(100, 3);
    const double want_101[12] = {0, 0, 0, -1, 0, -1, 0, 0, 0, -1, 0, -1};
    ok = eval_match(gt, write_tmp("dt.json", d), want_101, msg, sizeof msg);
    free(d);
    CHECK(ok, "rank 101: %s", msg);
}

TEST(coco_eval_crowd) {
    // all ground truth crowd: nothing to find, every number -1 (detections on the crowd are not false)
    const char *all_crowd = write_tmp("gtc.json",
                                      "{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 1}], \"annotations\": ["
                                      "{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 200, 200], \"area\": 40000, \"iscrowd\": 1}]}");
    const double none[12] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    char msg[300];
    CHECK(eval_match(all_crowd,
                     write_tmp("dt.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 20, 20], \"score\": 0.9}]"),
                     none, msg, sizeof msg),
          "all crowd: %s", msg);
    // a crowd region and a person: a detection inside the crowd (IoU over its own area: 1) scored above the
    // true one is ignored, not a false positive, so AP stays 1; two detections can both match the crowd
    const char *mixed = write_tmp("gtm.json",
                                  "{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 1}], \"annotations\": ["
                                  "{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [0, 0, 200, 200], \"area\": 40000, \"iscrowd\": 1},"
                                  "{\"id\": 2, \"image_id\": 1, \"category_id\": 1, \"bbox\": [300, 10, 50, 50], \"area\": 2500, \"iscrowd\": 0}]}");
    const double perfect_m[12] = {1, 1, 1, -1, 1, -1, 0, 1, 1, -1, 1, -1};   // AR1: only the crowd detection
    CHECK(eval_match(mixed,
                     write_tmp("dt.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 20, 20], \"score\": 0.9},"
                                          " {\"image_id\": 1, \"category_id\": 1, \"bbox\": [50, 50, 20, 20], \"score\": 0.8},"
                                          " {\"image_id\": 1, \"category_id\": 1, \"bbox\": [300, 10, 50, 50], \"score\": 0.7}]"),
                     perfect_m, msg, sizeof msg),
          "crowd + person: %s", msg);
}

TEST(coco_eval_area_from_annotation) {
    // the box is 50x50 but its "area" says 500 (small): APs counts it; in the medium range the ground truth
    // is ignored and the detection (area 2500) matched to it with it, so APm has nothing: -1.
    const char *gt = write_tmp("gta.json",
                               "{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 1}], \"annotations\": [{\"id\": 1,"
                               " \"image_id\": 1, \"category_id\": 1, \"bbox\": [10, 10, 50, 50], \"area\": 500, \"iscrowd\": 0}]}");
    const double want[12] = {1, 1, 1, 1, -1, -1, 1, 1, 1, 1, -1, -1};
    char msg[300];
    CHECK(eval_match(gt,
                     write_tmp("dt.json", "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [11, 10, 50, 50], \"score\": 0.9}]"),
                     want, msg, sizeof msg),
          "%s", msg);
}

TEST(coco_eval_bad_input) {
    const char *gt = write_tmp("gt.json", gt_two);
    double st[12];
    CHECK(ib_coco_eval(gt, write_tmp("dt.json", "[{\"image_id\": 9, \"category_id\": 1, \"bbox\": [0,0,1,1], \"score\": 1}]"),
                       st) == IB_ERR_ARG && strstr(ib_errmsg(), "image 9"),
          "a detection on an unknown image: %s", ib_errmsg());
    CHECK(ib_coco_eval(gt, write_tmp("dt.json", "{\"not\": \"a list\"}"), st) == IB_ERR_FORMAT && strstr(ib_errmsg(), "dt.json"),
          "not a list: %s", ib_errmsg());
    CHECK(ib_coco_eval("/nonexistent/gt.json", gt, st) == IB_ERR_FORMAT && strstr(ib_errmsg(), "/nonexistent/gt.json"),
          "missing file: %s", ib_errmsg());
}
