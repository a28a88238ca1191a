// Prediction: the PNG writer against the project's own decoder (RGB and label maps, gray and palette, bit
// for bit; errors name the file and leave nothing behind), the class palette and drawing, and `ibnas
// predict` on small trained checkpoints of each task against what the library and the other verbs give for
// the same images: the top class is the argmax of `ibnas infer`'s logits, the boxes are those `eval
// --dets-out` writes, the label maps those `eval --pred-out` writes; bad inputs fail naming the file.
#include "tests/test.h"

#include "data/loader.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char tmp_path_buf[8][600];
static int tmp_path_next;
// A path in the scratch folder (the result lives until eight more calls).
static const char *tpath(const char *name) {
    char *p = tmp_path_buf[tmp_path_next++ % 8];
    snprintf(p, 600, "%s/%s", test_tmpdir(), name);
    return p;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int dir_entries(const char *dir) {   // -1 when it does not exist
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

// ---------------------------------------------------------------------------------------------
// The PNG writer

TEST(png_rgb_round_trip) {
    int h = 37, w = 23;   // odd sizes: rows are not padded
    uint8_t *px = malloc((size_t)h * w * 3);
    ib_rng r;
    ib_rng_seed(&r, 7, 0);
    for (int i = 0; i < h * w * 3; i++) px[i] = (uint8_t)ib_rng_below(&r, 256);
    px[0] = 0, px[1] = 255;
    const char *path = tpath("rgb.png");
    ib_status s = ib_png_write_rgb(path, px, h, w);
    uint8_t *back = NULL;
    int bh = 0, bw = 0;
    ib_status s2 = s ? s : ib_decode_file(path, &back, &bh, &bw);
    int same = !s2 && bh == h && bw == w && !memcmp(back, px, (size_t)h * w * 3);
    free(px);
    free(back);
    CHECK(!s, "write: %s", ib_errmsg());
    CHECK(!s2, "decode: %s", ib_errmsg());
    CHECK(same, "decoded %dx%d differs from the %dx%d written", bw, bh, w, h);
    CHECK(!exists(tpath("rgb.png.tmp")), "the temporary file is left behind");
}

TEST(png_labels_round_trip_gray_and_palette) {
    int h = 19, w = 31, classes = 23;   // past the 20 hand-picked colours
    uint8_t *lab = malloc((size_t)h * w);
    for (int i = 0; i < h * w; i++) lab[i] = (uint8_t)((i * 7 + i / w) % classes);
    for (int gray = 0; gray < 2; gray++) {
        const char *path = tpath(gray ? "gray.png" : "pal.png");
        ib_status s = ib_png_write_labels(path, lab, h, w, gray ? 0 : classes);
        uint8_t *back = NULL, *rgb = NULL;
        int bh = 0, bw = 0, rh = 0, rw = 0;
        ib_status s2 = s ? s : ib_decode_png_indices(path, &back, &bh, &bw);
        ib_status s3 = s || s2 ? IB_OK : ib_decode_file(path, &rgb, &rh, &rw);
        int same = !s2 && bh == h && bw == w && !memcmp(back, lab, (size_t)h * w);
        // as RGB: a palette PNG shows the class colours, a gray one the raw values
        int colours_ok = !s3 && rh == h && rw == w;
        for (int i = 0; colours_ok && i < h * w; i++) {
            uint8_t c[3];
            ib_class_color(lab[i], c);
            if (gray) c[0] = c[1] = c[2] = lab[i];
            colours_ok = !memcmp(rgb + 3 * i, c, 3);
        }
        free(back);
        free(rgb);
        if (!s && !s2 && !s3 && same && colours_ok) continue;
        free(lab);
        CHECK(!s && !s2 && !s3, "%s: %s", path, ib_errmsg());
        CHECK(same, "%s: label values differ after the round trip", path);
        CHECK(colours_ok, "%s: decoded colours are not the %s", path, gray ? "gray values" : "class palette");
    }
    free(lab);
    // the palette: 20 distinct colours first, then distinct VOC colours
    uint8_t a[3], b[3];
    for (int i = 0; i < 40; i++)
        for (int j = 0; j < i; j++) {
            ib_class_color(i, a), ib_class_color(j, b);
            CHECK(memcmp(a, b, 3), "classes %d and %d share a colour", i, j);
        }
    ib_class_color(0, a);
    CHECK(a[0] == 230 && a[1] == 25 && a[2] == 75, "class 0 is %d,%d,%d (docs/FORMATS.md: 230,25,75)", a[0], a[1], a[2]);
}

TEST(png_write_errors_name_the_file) {
    uint8_t px[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    const char *bad = tpath("no/such/folder/x.png");
    CHECK(ib_png_write_rgb(bad, px, 2, 2) == IB_ERR_IO && strstr(ib_errmsg(), bad), "message: %s", ib_errmsg());
    const char *p = tpath("range.png");
    CHECK(ib_png_write_labels(p, px, 3, 4, 5) == IB_ERR_ARG && strstr(ib_errmsg(), p) && strstr(ib_errmsg(), "index 5"),
          "a value past the palette: %s", ib_errmsg());
    CHECK(!exists(p) && !exists(tpath("range.png.tmp")), "a refused write left a file");
    CHECK(ib_png_write_labels(p, px, 3, 4, 300) == IB_ERR_ARG && strstr(ib_errmsg(), "300"), "%s", ib_errmsg());
    CHECK(ib_png_write_rgb(p, px, 0, 4) == IB_ERR_ARG && strstr(ib_errmsg(), p), "%s", ib_errmsg());
}

TEST(draw_boxes_and_overlay) {
    int h = 40, w = 50;
    uint8_t *img = calloc((size_t)h * w * 3, 1);
    ib_detection d = {.x0 = 10, .y0 = 20, .x1 = 30.5f, .y1 = 35, .score = 0.87f, .label = 2};
    ib_draw_detections(img, h, w, &d, 1);
    uint8_t c[3];
    ib_class_color(2, c);
    // the outline: columns 10 and 30 (x1 = 30.5 covers pixel 30), rows 20 and 34; inside untouched
    int ok = !memcmp(img + 3 * (27 * w + 10), c, 3) && !memcmp(img + 3 * (27 * w + 30), c, 3) &&
             !memcmp(img + 3 * (34 * w + 20), c, 3) && img[3 * (27 * w + 20)] == 0 && img[3 * (27 * w + 31)] == 0;
    // the label sits above the box in the class colour, with dark text (the colour is light)
    int label_bg = !memcmp(img + 3 * (13 * w + 10), c, 3), ink = 0;
    for (int y = 13; y < 20; y++)
        for (int x = 10; x < 40; x++) ink += img[3 * (y * w + x)] == 0 && img[3 * (y * w + x) + 1] == 0;
    uint8_t *lab = calloc((size_t)h * w, 1);
    lab[5] = 1;
    uint8_t before[3] = {img[15], img[16], img[17]}, c1[3];
    ib_draw_segmentation(img, h, w, lab, 0.5f, 0);
    ib_class_color(1, c1);
    int blended = img[15] == (uint8_t)lrintf(0.5f * before[0] + 0.5f * c1[0]) && img[0] == 0;
    free(img);
    free(lab);
    CHECK(ok, "the box outline is not where the box is");
    CHECK(label_bg && ink > 10, "label background %d, %d text pixels", label_bg, ink);
    CHECK(blended, "overlay: pixel 5 not blended half-way to class 1's colour, or class 0 (skipped) changed");
}

// ---------------------------------------------------------------------------------------------
// ibnas predict

#define N_SCENES 6
static char pack_path[600], img_dir[600], arch_cls[600], arch_det[600];

// Scenes 0..N_SCENES-1 of seed 21 at 64 px, as a pack and as PNG files img/NNNNNN.png (what `ibnas synth
// --images` writes), plus one 80x48 scene (a size no model here was trained at).
static void fixtures(void) {
    if (pack_path[0]) return;
    snprintf(pack_path, sizeof pack_path, "%s", tpath("scenes.h5"));
    snprintf(img_dir, sizeof img_dir, "%s", tpath("img"));
    snprintf(arch_cls, sizeof arch_cls, "%s", project_path("examples/archs/synth_small.arch.json"));
    snprintf(arch_det, sizeof arch_det, "%s", project_path("examples/archs/det_small.arch.json"));
    IB_ASSERT(!ib_synth_write_pack(pack_path, N_SCENES, 64, 21, 1, NULL, NULL, NULL), "%s", ib_errmsg());
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "%s synth --images %s --n %d --size 64 --seed 21 --quiet", test_ibnas_bin(), img_dir, N_SCENES);
    IB_ASSERT(test_run(cmd, NULL, NULL) == 0, "%s failed", cmd);
    ib_sample s;
    ib_synth_render(22, 0, 80, &s);
    IB_ASSERT(!ib_sample_resize(&s, 48, 80), "%s", ib_errmsg());
    char path[700];
    snprintf(path, sizeof path, "%s/wide.png", img_dir);
    IB_ASSERT(!ib_png_write_rgb(path, s.rgb, s.h, s.w), "%s", ib_errmsg());
    ib_sample_free(&s);
}

// A checkpoint of `task` after two training steps on the scenes (the weights need not be good, only fixed).
static const char *trained(const char *task) {
    const char *out = tpath(!strcmp(task, "detect") ? "det.h5" : !strcmp(task, "segment") ? "seg.h5" : "cls.h5");
    if (exists(out)) return out;
    ib_train_opts o;
    ib_train_opts_default(&o);
    o.task = task;
    o.arch = !strcmp(task, "detect") ? arch_det : arch_cls;
    o.data = pack_path;
    o.out = out;
    o.epochs = 1, o.batch = 3, o.res = 64, o.max_steps = 2;
    o.warmup_epochs = 0.2f;
    o.lr = 0.01f;
    o.progress = 0;
    o.workers = 1;
    o.det_min_scale = 0.1f;
    ib_train_report r;
    IB_ASSERT(!ib_train(&o, &r), "%s: %s", task, ib_errmsg());
    return out;
}

// Runs `ibnas predict ARGS --json` and returns its JSON (NULL after a failure, with the reason in msg).
static json_t *predict_json(const char *args, char *msg, size_t n) {
    char cmd[4000], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s predict %s --json --threads 2", test_ibnas_bin(), args);
    int rc = test_run(cmd, &out, &err);
    json_error_t je;
    json_t *j = rc == 0 ? json_loads(out, 0, &je) : NULL;
    if (!j) snprintf(msg, n, "%s: exit %d: %s%s", cmd, rc, err ? err : "", rc == 0 ? je.text : "");
    free(out);
    free(err);
    return j;
}

static json_t *image_entry(json_t *j, int i) { return json_array_get(json_object_get(j, "images"), (size_t)i); }

TEST(predict_classify_top1_is_the_argmax_of_infer) {
    fixtures();
    const char *ck = trained("classify");
    // the logits by `ibnas infer` on the images as ib_image_load prepares them
    float *x = malloc(sizeof(float) * N_SCENES * 3 * 64 * 64);
    char path[700], args[3000] = "";
    int k = snprintf(args, sizeof args, "--model %s", ck);
    for (int i = 0; i < N_SCENES; i++) {
        snprintf(path, sizeof path, "%s/%06d.png", img_dir, i);
        IB_ASSERT(!ib_image_load(path, 64, x + (size_t)i * 3 * 64 * 64), "%s", ib_errmsg());
        k += snprintf(args + k, sizeof args - (size_t)k, " %s", path);
    }
    IB_ASSERT(!ib_array_save(tpath("x.h5"), "x", x, 4, (int64_t[]){N_SCENES, 3, 64, 64}), "%s", ib_errmsg());
    free(x);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "%s infer --model %s --input %s --output %s --threads 2", test_ibnas_bin(), ck, tpath("x.h5"),
             tpath("y.h5"));
    CHECK(test_run(cmd, NULL, NULL) == 0, "%s failed", cmd);
    float *y;
    int nd;
    int64_t shape[IB_ARRAY_MAX_DIMS];
    CHECK(!ib_array_load(tpath("y.h5"), "y", &y, &nd, shape), "%s", ib_errmsg());
    char msg[5000] = "";
    json_t *j = predict_json(args, msg, sizeof msg);
    if (!j) free(y);
    CHECK(j, "%s", msg);
    int bad = -1;
    double worst = 0;
    for (int i = 0; i < N_SCENES && bad < 0; i++) {
        const float *l = y + i * shape[1];
        int am = 0;
        double sum = 0;
        for (int c = 1; c < shape[1]; c++) am = l[c] > l[am] ? c : am;
        for (int c = 0; c < shape[1]; c++) sum += exp((double)l[c] - l[am]);
        json_t *top = json_object_get(image_entry(j, i), "top");
        json_t *t0 = json_array_get(top, 0);
        double p0 = json_number_value(json_object_get(t0, "prob"));
        worst = fmax(worst, fabs(p0 - 1 / sum));
        if (json_array_size(top) != 5 || json_integer_value(json_object_get(t0, "class")) != am || fabs(p0 - 1 / sum) > 1e-5)
            bad = i;
        // the training data's names ride in the checkpoint (the pack's synth class names)
        const char *name = json_string_value(json_object_get(t0, "name"));
        if (!name || strcmp(name, ib_synth_class_name(am))) bad = i;
        for (size_t t = 1; t < json_array_size(top); t++)   // most probable first
            if (json_number_value(json_object_get(json_array_get(top, t), "prob")) > json_number_value(json_object_get(json_array_get(top, t - 1), "prob")))
                bad = i;
    }
    free(y);
    json_decref(j);
    CHECK(bad < 0, "image %d: predict's top-5 does not start with infer's argmax, its softmax and its name (worst %g)", bad,
          worst);
}

// The detections `eval --dets-out` wrote for image_id i, in file order.
static json_t *dets_of(json_t *all, int i) {
    json_t *out = json_array(), *d;
    size_t k;
    json_array_foreach(all, k, d) if (json_integer_value(json_object_get(d, "image_id")) == i) json_array_append(out, d);
    return out;
}

TEST(predict_detect_boxes_are_eval_dets_out) {
    fixtures();
    const char *ck = trained("detect");
    char cmd[3000], args[3000], msg[5000] = "";
    snprintf(cmd, sizeof cmd, "%s eval --task detect --model %s --data %s --dets-out %s --batch 1 --workers 1 --quiet --json",
             test_ibnas_bin(), ck, pack_path, tpath("dets.json"));
    CHECK(test_run(cmd, NULL, NULL) == 0, "%s failed", cmd);
    json_error_t je;
    json_t *all = json_load_file(tpath("dets.json"), 0, &je);
    CHECK(all, "dets.json: %s", je.text);
    const char *out = tpath("det_out");
    int k = snprintf(args, sizeof args, "--model %s --out %s --score-thresh 0", ck, out);
    for (int i = 0; i < N_SCENES; i++) k += snprintf(args + k, sizeof args - (size_t)k, " %s/%06d.png", img_dir, i);
    snprintf(args + k, sizeof args - (size_t)k, " %s/wide.png", img_dir);
    json_t *j = predict_json(args, msg, sizeof msg);
    if (!j) json_decref(all);
    CHECK(j, "%s", msg);
    int64_t total = 0;
    for (int i = 0; i < N_SCENES && !msg[0]; i++) {
        json_t *mine = json_object_get(image_entry(j, i), "detections"), *ref = dets_of(all, i);
        total += (int64_t)json_array_size(ref);
        if (json_array_size(mine) != json_array_size(ref))
            snprintf(msg, sizeof msg, "image %d: %zu boxes, eval wrote %zu", i, json_array_size(mine), json_array_size(ref));
        for (size_t q = 0; q < json_array_size(ref) && !msg[0]; q++) {
            json_t *a = json_array_get(mine, q), *b = json_array_get(ref, q), *box = json_object_get(a, "box"),
                   *bb = json_object_get(b, "bbox");
            double v[4], r[4];
            for (int e = 0; e < 4; e++) v[e] = json_number_value(json_array_get(box, (size_t)e)), r[e] = json_number_value(json_array_get(bb, (size_t)e));
            double sa = json_number_value(json_object_get(a, "score")), sb = json_number_value(json_object_get(b, "score"));
            // eval writes x, y, w, h with 2 decimals and the score with 8 significant digits
            const char *name = json_string_value(json_object_get(a, "name"));
            if (!name || strcmp(name, ib_synth_class_name((int)json_integer_value(json_object_get(a, "class")))))
                snprintf(msg, sizeof msg, "image %d box %zu: name %s for class %lld", i, q, name ? name : "(none)",
                         json_integer_value(json_object_get(a, "class")));
            else if (json_integer_value(json_object_get(a, "class")) != json_integer_value(json_object_get(b, "category_id")) ||
                fabs(v[0] - r[0]) > 0.0051 || fabs(v[1] - r[1]) > 0.0051 || fabs(v[2] - v[0] - r[2]) > 0.0051 ||
                fabs(v[3] - v[1] - r[3]) > 0.0051 || fabs(sa - sb) > 1e-7 * fabs(sb) + 1e-9)
                snprintf(msg, sizeof msg, "image %d box %zu: class %lld score %.8g [%.3f %.3f %.3f %.3f], eval: class %lld "
                         "score %.8g bbox [%.2f %.2f %.2f %.2f]", i, q, json_integer_value(json_object_get(a, "class")), sa,
                         v[0], v[1], v[2], v[3], json_integer_value(json_object_get(b, "category_id")), sb, r[0], r[1], r[2], r[3]);
        }
        json_decref(ref);
    }
    // the files: DIR/NAME.png at the image's size, DIR/NAME.json with the same boxes as stdout
    for (int i = 0; i <= N_SCENES && !msg[0]; i++) {
        json_t *e = image_entry(j, i);
        const char *png = json_string_value(json_object_get(e, "png")), *jf = json_string_value(json_object_get(e, "json"));
        uint8_t *rgb = NULL;
        int h = 0, w = 0, want_w = i < N_SCENES ? 64 : 80, want_h = i < N_SCENES ? 64 : 48;
        if (!png || ib_decode_file(png, &rgb, &h, &w) || h != want_h || w != want_w)
            snprintf(msg, sizeof msg, "image %d: picture %s is %dx%d, want %dx%d", i, png ? png : "(none)", w, h, want_w, want_h);
        free(rgb);
        json_t *f = jf ? json_load_file(jf, 0, &je) : NULL;
        if (!msg[0] && (!f || !json_equal(json_object_get(f, "detections"), json_object_get(e, "detections"))))
            snprintf(msg, sizeof msg, "%s: not the detections printed", jf ? jf : "(no json)");
        json_decref(f);
    }
    // the boxes of the 80x48 image are in its pixels
    json_t *d;
    size_t q;
    json_array_foreach(json_object_get(image_entry(j, N_SCENES), "detections"), q, d) {
        json_t *b = json_object_get(d, "box");
        if (json_number_value(json_array_get(b, 2)) > 80.001 || json_number_value(json_array_get(b, 3)) > 48.001)
            snprintf(msg, sizeof msg, "wide.png: box %zu reaches past 80x48", q);
    }
    json_decref(j);
    json_decref(all);
    CHECK(!msg[0], "%s", msg);
    CHECK(total > 0, "no detections to compare");
}

// The public calls: a trained model names its classes as its training data did, a created one names none;
// boxes drawn with the names differ from boxes drawn with the ids only in the label. The segmenter has one
// class more than the pack names (6, the scenes' background), so it records none.
TEST(model_class_names_and_named_labels) {
    fixtures();
    const char *task[] = {"classify", "detect", "segment"};
    for (int t = 0; t < 3; t++) {
        ib_model *m;
        CHECK(!ib_model_load(&m, trained(task[t])), "%s", ib_errmsg());
        int ok = ib_model_class_name(m, -1) == NULL && ib_model_class_name(m, ib_model_classes(m)) == NULL;
        for (int c = 0; c < ib_model_classes(m) && ok; c++)
            ok = t == 2 ? !ib_model_class_name(m, c)
                        : ib_model_class_name(m, c) && !strcmp(ib_model_class_name(m, c), ib_synth_class_name(c));
        if (ok && t == 1) {
            int h = 40, w = 60;
            uint8_t *a = calloc((size_t)h * w * 3, 1), *b = calloc((size_t)h * w * 3, 1);
            ib_detection d = {.x0 = 5, .y0 = 20, .x1 = 30, .y1 = 35, .score = 0.87f, .label = 2};
            ib_draw_detections(a, h, w, &d, 1);
            ib_draw_detections_named(b, h, w, &d, 1, m);
            int label_rows = 0, box_rows = 1;
            for (int y = 0; y < h; y++) {
                int diff = memcmp(a + (size_t)y * w * 3, b + (size_t)y * w * 3, (size_t)w * 3) != 0;
                if (y < 20) label_rows += diff;
                else box_rows &= !diff;
            }
            free(a), free(b);
            ok = label_rows > 0 && box_rows;
        }
        ib_model_free(m);
        CHECK(ok, "%s: the model's class names are not the pack's, or the named label is wrong", task[t]);
    }
    ib_model *fresh;
    CHECK(!ib_model_create(&fresh, "mobilenetv2:0.35", 6, 0), "%s", ib_errmsg());
    const char *none = ib_model_class_name(fresh, 0);
    ib_model_free(fresh);
    CHECK(!none, "a created model names class 0 '%s'", none);
}

TEST(predict_segment_labels_are_eval_pred_out) {
    fixtures();
    const char *ck = trained("segment");
    const char *pred = tpath("pred"), *out = tpath("seg_out/nested/deeper");
    char cmd[3000], args[3000], msg[5000] = "";
    snprintf(cmd, sizeof cmd, "%s eval --task segment --model %s --data %s --pred-out %s --batch 1 --workers 1 --quiet --json",
             test_ibnas_bin(), ck, pack_path, pred);
    CHECK(test_run(cmd, NULL, NULL) == 0, "%s failed", cmd);
    CHECK(dir_entries(pred) == N_SCENES, "%s holds %d files, want %d", pred, dir_entries(pred), N_SCENES);
    int k = snprintf(args, sizeof args, "--model %s --out %s --background 6", ck, out);
    for (int i = 0; i < N_SCENES; i++) k += snprintf(args + k, sizeof args - (size_t)k, " %s/%06d.png", img_dir, i);
    snprintf(args + k, sizeof args - (size_t)k, " %s/wide.png", img_dir);
    json_t *j = predict_json(args, msg, sizeof msg);
    CHECK(j, "%s", msg);
    ib_model *m = NULL;
    ib_status s = ib_model_load(&m, ck);
    for (int i = 0; i <= N_SCENES && !s && !msg[0]; i++) {
        json_t *e = image_entry(j, i);
        const char *lp = json_string_value(json_object_get(e, "labels")), *png = json_string_value(json_object_get(e, "png"));
        char ref[700], src[700];
        snprintf(ref, sizeof ref, "%s/%06d.png", pred, i);
        if (i < N_SCENES) snprintf(src, sizeof src, "%s/%06d.png", img_dir, i);
        else snprintf(src, sizeof src, "%s/wide.png", img_dir);
        uint8_t *a = NULL, *b = NULL, *rgb = NULL, *img = NULL;
        int ah = 0, aw = 0, bh = 0, bw = 0, rh = 0, rw = 0, h = 0, w = 0;
        ib_prediction p;
        memset(&p, 0, sizeof p);
        if (!lp || !png || ib_decode_png_indices(lp, &a, &ah, &aw) || ib_decode_file(png, &rgb, &rh, &rw) ||
            ib_image_read(src, &img, &h, &w) || ib_predict(m, img, h, w, NULL, &p))
            snprintf(msg, sizeof msg, "image %d: %s", i, ib_errmsg());
        else if (ah != h || aw != w || rh != h || rw != w)
            snprintf(msg, sizeof msg, "image %d: labels %dx%d, picture %dx%d, image %dx%d", i, aw, ah, rw, rh, w, h);
        else if (memcmp(a, p.labels, (size_t)h * w))
            snprintf(msg, sizeof msg, "%s: not ib_predict's labels", lp);
        else if (i < N_SCENES && (ib_decode_png_indices(ref, &b, &bh, &bw) || bh != h || bw != w || memcmp(a, b, (size_t)h * w)))
            snprintf(msg, sizeof msg, "%s differs from eval --pred-out's %s", lp, ref);
        // the class counts printed are the label map's
        for (int c = 0; !msg[0] && c < p.classes; c++) {
            int64_t n = 0;
            for (int64_t q = 0; q < (int64_t)h * w; q++) n += a[q] == c;
            if (n != json_integer_value(json_array_get(json_object_get(e, "class_pixels"), (size_t)c)))
                snprintf(msg, sizeof msg, "image %d: class %d has %lld pixels, JSON says otherwise", i, c, (long long)n);
        }
        ib_prediction_free(&p);
        free(a), free(b), free(rgb), free(img);
    }
    ib_model_free(m);
    json_decref(j);
    CHECK(!s, "%s", ib_errmsg());
    CHECK(!msg[0], "%s", msg);
}

TEST(predict_bad_inputs_name_the_file) {
    fixtures();
    const char *ck = trained("detect");
    char cmd[3000], *err = NULL;
    const char *out = tpath("bad_out"), *missing = tpath("missing.png");
    // a missing second image: nothing written for the first either
    snprintf(cmd, sizeof cmd, "%s predict --model %s --out %s %s/000000.png %s", test_ibnas_bin(), ck, out, img_dir, missing);
    int rc = test_run(cmd, NULL, &err);
    CHECK(rc == 1 && err && strstr(err, missing), "missing image: exit %d: %s", rc, err);
    free(err), err = NULL;
    CHECK(dir_entries(out) <= 0, "%s holds %d files after a failed run", out, dir_entries(out));
    // an image that is not an image
    snprintf(cmd, sizeof cmd, "%s predict --model %s --out %s %s", test_ibnas_bin(), ck, out, pack_path);
    rc = test_run(cmd, NULL, &err);
    CHECK(rc == 1 && err && strstr(err, pack_path) && strstr(err, "not a PNG or JPEG"), "a pack as the image: exit %d: %s", rc, err);
    free(err), err = NULL;
    // checkpoints that are not models: a pack, a PNG, a missing file
    const char *not_models[] = {pack_path, tpath("img/000000.png"), tpath("nope.h5")};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "%s predict --model %s --out %s %s/000000.png", test_ibnas_bin(), not_models[i], out, img_dir);
        rc = test_run(cmd, NULL, &err);
        int ok = rc == 1 && err && strstr(err, not_models[i]);
        if (!ok) {
            char e[600];
            snprintf(e, sizeof e, "%s", err ? err : "");
            free(err);
            CHECK(ok, "--model %s: exit %d: %s", not_models[i], rc, e);
        }
        free(err), err = NULL;
    }
    CHECK(dir_entries(out) <= 0, "%s holds %d files after failed runs", out, dir_entries(out));
    // two images with the same output name
    snprintf(cmd, sizeof cmd, "%s predict --model %s --out %s %s/000000.png %s/000000.png", test_ibnas_bin(), ck, out, img_dir,
             img_dir);
    rc = test_run(cmd, NULL, &err);
    CHECK(rc == 2 && err && strstr(err, "000000.png"), "the same name twice: exit %d: %s", rc, err);
    free(err), err = NULL;
    // a detector's input below its evaluation's minimum
    snprintf(cmd, sizeof cmd, "%s predict --model %s --out %s --res 16 %s/000000.png", test_ibnas_bin(), ck, out, img_dir);
    rc = test_run(cmd, NULL, &err);
    CHECK(rc == 1 && err && strstr(err, "res 16"), "--res 16 for a detector: exit %d: %s", rc, err);
    free(err), err = NULL;
    // a detector without --out
    snprintf(cmd, sizeof cmd, "%s predict --model %s %s/000000.png", test_ibnas_bin(), ck, img_dir);
    rc = test_run(cmd, NULL, &err);
    CHECK(rc == 2 && err && strstr(err, "--out"), "no --out: exit %d: %s", rc, err);
    free(err);
}

// eval --pred-out names each file by the image file it came from when the source reads files: segmentation
// pairs (ROOT/train/NAME.png with ROOT/trainannot/NAME.png, masks written by ib_png_write_labels)
TEST(eval_pred_out_names_files_by_source) {
    fixtures();
    const char *ck = trained("segment");
    const char *root = tpath("pairs"), *pred = tpath("pairs_pred");
    const char *names[2] = {"alpha", "beta"};
    char path[900];
    mkdir(root, 0777);
    snprintf(path, sizeof path, "%s/train", root), mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/trainannot", root), mkdir(path, 0777);
    for (int i = 0; i < 2; i++) {
        ib_sample s;
        ib_synth_render(23, i, 64, &s);
        snprintf(path, sizeof path, "%s/train/%s.png", root, names[i]);
        ib_status st = ib_png_write_rgb(path, s.rgb, s.h, s.w);
        snprintf(path, sizeof path, "%s/trainannot/%s.png", root, names[i]);
        if (!st) st = ib_png_write_labels(path, s.mask, s.h, s.w, 7);
        ib_sample_free(&s);
        CHECK(!st, "%s", ib_errmsg());
    }
    ib_dataset *ds;
    CHECK(!ib_dataset_load(&ds, root, "train"), "%s", ib_errmsg());
    ib_model *m;
    ib_status s = ib_model_load(&m, ck);
    ib_seg_eval_opts o;
    ib_seg_eval_opts_default(&o);
    o.pred_out = pred;
    o.workers = 1;
    ib_seg_eval_report r;
    if (!s) s = ib_eval_segment(m, ds, &o, &r);
    int64_t images = r.images;
    ib_seg_eval_report_free(&r);
    ib_model_free(m);
    ib_dataset_close(ds);
    CHECK(!s, "%s", ib_errmsg());
    CHECK(images == 2 && dir_entries(pred) == 2, "%lld images, %d files in %s", (long long)images, dir_entries(pred), pred);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s.png", pred, names[i]);
        CHECK(exists(path), "%s is missing", path);
    }
}

// examples/predict_image.c (the public header alone) writes what `ibnas predict` writes
TEST(example_program_does_what_the_command_does) {
    fixtures();
    const char *bin = test_ibnas_bin(), *slash = strrchr(bin, '/');
    char example[700], cmd[3000], a[800], b[800];
    snprintf(example, sizeof example, "%.*sexamples/predict_image", slash ? (int)(slash - bin + 1) : 0, bin);
    if (!exists(example)) SKIP("%s is not built (make examples)", example);
    const char *ck = trained("segment"), *out = tpath("cli_seg");
    snprintf(cmd, sizeof cmd, "%s %s %s/000002.png %s > /dev/null", example, ck, img_dir, tpath("ex"));
    CHECK(test_run(cmd, NULL, NULL) == 0, "%s failed", cmd);
    snprintf(cmd, sizeof cmd, "%s predict --model %s --out %s %s/000002.png", bin, ck, out, img_dir);
    CHECK(test_run(cmd, NULL, NULL) == 0, "%s failed", cmd);
    const char *pairs[2][2] = {{"ex.png", "000002.png"}, {"ex.labels.png", "000002.labels.png"}};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/%s", test_tmpdir(), pairs[i][0]);
        snprintf(b, sizeof b, "%s/%s", out, pairs[i][1]);
        uint8_t *x = NULL, *y = NULL;
        int xh = 0, xw = 0, yh = 0, yw = 0;
        ib_status s = ib_decode_file(a, &x, &xh, &xw);
        if (!s) s = ib_decode_file(b, &y, &yh, &yw);
        int same = !s && xh == yh && xw == yw && !memcmp(x, y, (size_t)xh * xw * 3);
        free(x), free(y);
        CHECK(!s, "%s", ib_errmsg());
        CHECK(same, "%s and %s differ", a, b);
    }
}
