// HDF5 dataset packs (writer, reader, rejection of foreign or damaged files), the resize into a pack,
// the synthetic scenes (determinism, balance, annotations that agree with each other, speed), and the
// `ibnas pack` / `ibnas synth` verbs run as a user would.
#include "tests/test.h"
#include "data/data.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *tmpfile_path(const char *name) {
    static char buf[4][256];
    static int k = 0;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_tmpdir(), name);
    return buf[k];
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

static ib_ds_opts opts_for(ib_ds_format f) {
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = f;
    return o;
}

// A small hand-made detection + segmentation sample set, h x w = 12 x 10 (not square on purpose).
#define RT_N 5
#define RT_H 12
#define RT_W 10
static void make_sample(int i, ib_sample *s) {
    memset(s, 0, sizeof *s);
    s->h = RT_H, s->w = RT_W;
    s->rgb = malloc(RT_H * RT_W * 3);
    s->mask = malloc(RT_H * RT_W);
    for (int p = 0; p < RT_H * RT_W * 3; p++) s->rgb[p] = (uint8_t)(p * 7 + i * 31);
    for (int p = 0; p < RT_H * RT_W; p++) s->mask[p] = (uint8_t)((p + i) % 5 == 0 ? 255 : (p + i) % 3);
    s->label = i == 3 ? -1 : i % 3;
    s->n_boxes = i % 3;   // 0, 1, 2, 0, 1 boxes
    s->boxes = s->n_boxes ? malloc((size_t)s->n_boxes * sizeof *s->boxes) : NULL;
    for (int b = 0; b < s->n_boxes; b++)
        s->boxes[b] = (ib_box){0.25f + (float)b, 1.5f, 7.75f - (float)i * 0.1f, 11.f, (i + b) % 3, b};
    s->image_id = 1000 + 17 * i;
}

static const char *const rt_names[3] = {"cat", "traffic light", "caf\xc3\xa9"};

static ib_status write_rt_pack(const char *path) {
    ib_pack_writer *pw;
    ib_status st = ib_pack_writer_open(&pw, path, RT_H, RT_W, 1, 1, 3, rt_names, 255);
    if (st) return st;
    for (int i = 0; i < RT_N && st == IB_OK; i++) {
        ib_sample s;
        make_sample(i, &s);
        st = ib_pack_writer_add(pw, &s);
        ib_sample_free(&s);
    }
    if (st) {
        ib_pack_writer_abort(pw);
        return st;
    }
    return ib_pack_writer_close(pw);
}

TEST(pack_round_trip_is_exact) {
    const char *path = tmpfile_path("rt.h5");
    CHECK(write_rt_pack(path) == IB_OK, "write: %s", ib_errmsg());
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(file_exists(path) && !file_exists(tmp), "the pack was not renamed into place");
    ib_dataset *ds;
    ib_ds_opts o = opts_for(IB_DS_PACK);
    CHECK(ib_dataset_open(&ds, path, &o) == IB_OK, "open: %s", ib_errmsg());
    CHECK(ib_dataset_size(ds) == RT_N, "size %lld", (long long)ib_dataset_size(ds));
    CHECK(ib_dataset_classes(ds) == 3, "classes %d", ib_dataset_classes(ds));
    for (int c = 0; c < 3; c++)
        CHECK(!strcmp(ib_dataset_class_name(ds, c), rt_names[c]), "class %d is '%s'", c, ib_dataset_class_name(ds, c));
    CHECK(ds->has_labels && ds->has_boxes && ds->has_masks, "has_* flags");
    CHECK(ib_dataset_ignore_index(ds) == 255, "ignore_index %d", ib_dataset_ignore_index(ds));
    ib_dataset *ds7;   // an ignore index asked for wins over the pack's (ibnas pack --format pack --ignore-index)
    o.ignore_index = 7;
    CHECK(ib_dataset_open(&ds7, path, &o) == IB_OK, "open: %s", ib_errmsg());
    CHECK(ib_dataset_ignore_index(ds7) == 7, "asked for 7, got ignore_index %d", ib_dataset_ignore_index(ds7));
    ib_dataset_close(ds7);
    for (int i = 0; i < RT_N; i++) {
        ib_sample want, got;
        make_sample(i, &want);
        CHECK(ib_dataset_get(ds, i, &got) == IB_OK, "get %d: %s", i, ib_errmsg());
        int ok = got.h == RT_H && got.w == RT_W && !memcmp(got.rgb, want.rgb, RT_H * RT_W * 3) && got.mask &&
                 !memcmp(got.mask, want.mask, RT_H * RT_W) && got.label == want.label &&
                 got.image_id == want.image_id && got.n_boxes == want.n_boxes;
        for (int b = 0; ok && b < want.n_boxes; b++)
            ok = !memcmp(&got.boxes[b], &want.boxes[b], sizeof(ib_box));
        ib_sample_free(&want);
        ib_sample_free(&got);
        CHECK(ok, "sample %d differs after the round trip", i);
    }
    // Many threads reading at once get the same bytes (the reader serialises HDF5 internally).
    int bad = 0;
#pragma omp parallel for num_threads(4) reduction(+ : bad)
    for (int k = 0; k < 200; k++) {
        ib_sample got, want;
        make_sample(k % RT_N, &want);
        if (ib_dataset_get(ds, k % RT_N, &got) != IB_OK || memcmp(got.rgb, want.rgb, RT_H * RT_W * 3)) bad++;
        ib_sample_free(&got);
        ib_sample_free(&want);
    }
    ib_dataset_close(ds);
    CHECK(bad == 0, "%d concurrent reads differ", bad);
    // The format is readable by name guessing too (the .h5 suffix).
    o = opts_for(IB_DS_AUTO);
    CHECK(ib_dataset_open(&ds, path, &o) == IB_OK, "auto open: %s", ib_errmsg());
    CHECK(ib_dataset_size(ds) == RT_N, "auto size");
    ib_dataset_close(ds);
}

TEST(pack_writer_checks_and_abort) {
    const char *path = tmpfile_path("abort.h5");
    ib_pack_writer *pw;
    CHECK(ib_pack_writer_open(&pw, path, RT_H, RT_W, 0, 0, 3, rt_names, 255) == IB_OK, "open: %s", ib_errmsg());
    ib_sample s;
    make_sample(1, &s);
    CHECK(ib_pack_writer_add(pw, &s) == IB_OK, "add: %s", ib_errmsg());
    s.label = 3;   // out of range for 3 classes
    ib_status st = ib_pack_writer_add(pw, &s);
    CHECK(st == IB_ERR_ARG && strstr(ib_errmsg(), path), "label 3 of 3 classes accepted (%s)", ib_errmsg());
    s.label = 0;
    s.w = RT_W - 1;
    st = ib_pack_writer_add(pw, &s);
    s.w = RT_W;
    ib_sample_free(&s);
    CHECK(st == IB_ERR_ARG, "a wrong-size image was accepted");
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(file_exists(tmp), "no temporary file while writing");
    ib_pack_writer_abort(pw);
    CHECK(!file_exists(tmp) && !file_exists(path), "abort left a file");
    // An unwritable place is an error naming it, not a crash.
    st = ib_pack_writer_open(&pw, "/nonexistent_dir/x.h5", 8, 8, 0, 0, 0, NULL, 255);
    CHECK(st == IB_ERR_IO && strstr(ib_errmsg(), "/nonexistent_dir/x.h5"), "bad folder: %s", ib_errmsg());
}

static ib_status open_pack(const char *path, ib_dataset **ds) {
    ib_ds_opts o = opts_for(IB_DS_PACK);
    return ib_dataset_open(ds, path, &o);
}

TEST(pack_rejects_foreign_files_naming_them) {
    ib_dataset *ds = NULL;
    // A checkpoint-like HDF5 file: another format name.
    const char *ck = tmpfile_path("ckpt.h5");
    ib_h5 *f;
    CHECK(ib_h5_create(&f, ck) == IB_OK, "create");
    ib_h5_set_attr_str(f, "/", "format", "ibnas-ckpt");
    ib_h5_set_attr_i64(f, "/", "version", 1);
    CHECK(ib_h5_close(f) == IB_OK, "close");
    ib_status st = open_pack(ck, &ds);
    CHECK(st == IB_ERR_FORMAT && strstr(ib_errmsg(), ck) && strstr(ib_errmsg(), "ibnas-ckpt") &&
              strstr(ib_errmsg(), "ibnas pack"),
          "wrong format name: %d %s", st, ib_errmsg());
    // The right name, a future version.
    const char *v2 = tmpfile_path("v2.h5");
    CHECK(ib_h5_create(&f, v2) == IB_OK, "create");
    ib_h5_set_attr_str(f, "/", "format", "ibnas-pack");
    ib_h5_set_attr_i64(f, "/", "version", 2);
    CHECK(ib_h5_close(f) == IB_OK, "close");
    st = open_pack(v2, &ds);
    CHECK(st == IB_ERR_FORMAT && strstr(ib_errmsg(), v2) && strstr(ib_errmsg(), "version 2"), "version: %s",
          ib_errmsg());
    // Not HDF5 at all, and no file.
    const char *txt = tmpfile_path("text.h5");
    FILE *fp = fopen(txt, "w");
    fputs("hello\n", fp);
    fclose(fp);
    st = open_pack(txt, &ds);
    CHECK(st == IB_ERR_FORMAT && strstr(ib_errmsg(), txt), "text file: %s", ib_errmsg());
    const char *none = tmpfile_path("none.h5");
    st = open_pack(none, &ds);
    CHECK(st != IB_OK && strstr(ib_errmsg(), none), "missing file: %s", ib_errmsg());
}

TEST(pack_rejects_damaged_packs_naming_them) {
    ib_dataset *ds = NULL;
    // /labels removed after writing: an incomplete pack.
    const char *a = tmpfile_path("nolabels.h5");
    CHECK(write_rt_pack(a) == IB_OK, "write: %s", ib_errmsg());
    hid_t h = H5Fopen(a, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(h >= 0 && H5Ldelete(h, "labels", H5P_DEFAULT) >= 0, "delete /labels");
    H5Fclose(h);
    ib_status st = open_pack(a, &ds);
    CHECK(st == IB_ERR_NOTFOUND && strstr(ib_errmsg(), a) && strstr(ib_errmsg(), "/labels"), "no labels: %s",
          ib_errmsg());
    // /box_offsets one short: a truncated index.
    const char *b = tmpfile_path("shortoffsets.h5");
    CHECK(write_rt_pack(b) == IB_OK, "write: %s", ib_errmsg());
    h = H5Fopen(b, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(h >= 0 && H5Ldelete(h, "box_offsets", H5P_DEFAULT) >= 0, "delete /box_offsets");
    int64_t off[RT_N] = {0};
    hsize_t dn = RT_N;
    hid_t sp = H5Screate_simple(1, &dn, NULL);
    hid_t d = H5Dcreate2(h, "box_offsets", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off);
    H5Dclose(d), H5Sclose(sp), H5Fclose(h);
    st = open_pack(b, &ds);
    CHECK(st == IB_ERR_FORMAT && strstr(ib_errmsg(), b) && strstr(ib_errmsg(), "box_offsets"), "short offsets: %s",
          ib_errmsg());
    // A file cut in half (a copy interrupted).
    const char *c = tmpfile_path("cut.h5");
    CHECK(write_rt_pack(c) == IB_OK, "write: %s", ib_errmsg());
    struct stat stt;
    stat(c, &stt);
    CHECK(truncate(c, stt.st_size / 2) == 0, "truncate");
    st = open_pack(c, &ds);
    if (st == IB_OK) {   // HDF5 may open a cut file when the superblock survives: reading must then fail
        ib_sample s;
        int fails = 0;
        for (int i = 0; i < RT_N; i++) {
            if (ib_dataset_get(ds, i, &s) != IB_OK) fails += strstr(ib_errmsg(), c) != NULL;
            else ib_sample_free(&s);
        }
        ib_dataset_close(ds);
        CHECK(fails > 0, "a pack cut in half read without error");
    } else {
        CHECK(strstr(ib_errmsg(), c), "cut file: %s", ib_errmsg());
    }
}

TEST(sample_fit_resizes_crops_and_maps_boxes) {
    // 2 x 1 image [0, 255] -> 4 x 4 (stretch): half-pixel bilinear, as F.interpolate(align_corners=False).
    uint8_t px[6] = {0, 0, 0, 255, 255, 255};
    ib_sample in = {.h = 1, .w = 2, .rgb = px, .label = 4, .image_id = 9};
    ib_sample out;
    CHECK(ib_sample_fit(&in, 4, 0, &out, NULL) == IB_OK, "fit");
    const int want[4] = {0, 64, 191, 255};
    for (int x = 0; x < 4; x++) CHECK(out.rgb[(2 * 4 + x) * 3] == want[x], "x %d: %d, want %d", x, out.rgb[(2 * 4 + x) * 3], want[x]);
    CHECK(out.label == 4 && out.image_id == 9 && out.mask == NULL, "label/id copied");
    ib_sample_free(&out);

    // A 1-pixel checkerboard shrunk 8x averages to grey: the widened filter does not alias.
    uint8_t *cb = malloc(64 * 64 * 3);
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            for (int c = 0; c < 3; c++) cb[(y * 64 + x) * 3 + c] = (uint8_t)(((x + y) & 1) * 255);
    in = (ib_sample){.h = 64, .w = 64, .rgb = cb, .label = -1};
    CHECK(ib_sample_fit(&in, 8, 0, &out, NULL) == IB_OK, "fit");
    int lo = 255, hi = 0;
    for (int p = 0; p < 8 * 8 * 3; p++) lo = out.rgb[p] < lo ? out.rgb[p] : lo, hi = out.rgb[p] > hi ? out.rgb[p] : hi;
    ib_sample_free(&out);
    free(cb);
    CHECK(lo >= 110 && hi <= 145, "checkerboard shrunk to [%d, %d], want ~128", lo, hi);

    // 20 wide x 10 high: crop takes columns 5..15; stretch halves x only. Columns hold their index.
    uint8_t *im = malloc(20 * 10 * 3), *mk = malloc(20 * 10);
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 20; x++) {
            for (int c = 0; c < 3; c++) im[(y * 20 + x) * 3 + c] = (uint8_t)(10 * x);
            mk[y * 20 + x] = (uint8_t)(x < 10 ? 1 : 2);
        }
    ib_box boxes[3] = {{6, 2, 8, 4, 1, 0}, {0, 0, 3, 3, 2, 1}, {4, 2, 16, 8, 0, 1}};
    in = (ib_sample){.h = 10, .w = 20, .rgb = im, .mask = mk, .n_boxes = 3, .boxes = boxes, .label = 1};
    int dropped = -1;
    CHECK(ib_sample_fit(&in, 10, 1, &out, &dropped) == IB_OK, "crop");
    CHECK(out.h == 10 && out.w == 10 && out.rgb[0] == 50 && out.rgb[9 * 3] == 140, "crop pixels %d %d", out.rgb[0],
          out.rgb[9 * 3]);
    CHECK(out.mask[4] == 1 && out.mask[5] == 2, "crop mask %d %d", out.mask[4], out.mask[5]);
    CHECK(dropped == 1 && out.n_boxes == 2, "crop kept %d boxes, dropped %d", out.n_boxes, dropped);
    CHECK(out.boxes[0].x0 == 1 && out.boxes[0].x1 == 3 && out.boxes[0].y0 == 2 && out.boxes[0].y1 == 4 &&
              out.boxes[0].label == 1,
          "crop box (%g %g %g %g)", out.boxes[0].x0, out.boxes[0].y0, out.boxes[0].x1, out.boxes[0].y1);
    CHECK(out.boxes[1].x0 == 0 && out.boxes[1].x1 == 10 && out.boxes[1].iscrowd == 1, "clipped box");
    ib_sample_free(&out);
    CHECK(ib_sample_fit(&in, 10, 0, &out, &dropped) == IB_OK, "stretch");
    CHECK(dropped == 0 && out.n_boxes == 3 && out.boxes[0].x0 == 3 && out.boxes[0].x1 == 4 && out.boxes[0].y0 == 2 &&
              out.boxes[0].y1 == 4,
          "stretch box (%g %g %g %g)", out.boxes[0].x0, out.boxes[0].y0, out.boxes[0].x1, out.boxes[0].y1);
    // Halving widens the triangle to 4 taps, renormalised at the edges: (0*.75 + 10*.75 + 20*.25) / 1.75.
    CHECK(out.mask[4] == 1 && out.mask[5] == 2 && out.rgb[0] == 7 && out.rgb[9 * 3] == 183,
          "stretch pixels %d %d", out.rgb[0], out.rgb[9 * 3]);
    ib_sample_free(&out);
    free(im);
    free(mk);
}

// ---------------------------------------------------------------------------------------------
// Synthetic scenes

static int same_sample(const ib_sample *a, const ib_sample *b) {
    size_t n = (size_t)a->h * a->w;
    if (a->h != b->h || a->w != b->w || a->label != b->label || a->n_boxes != b->n_boxes) return 0;
    if (memcmp(a->rgb, b->rgb, n * 3) || memcmp(a->mask, b->mask, n)) return 0;
    return a->n_boxes == 0 || !memcmp(a->boxes, b->boxes, (size_t)a->n_boxes * sizeof(ib_box));
}

TEST(synth_is_a_pure_function_of_seed_and_index) {
    ib_sample a, b, c, d;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b), memset(&c, 0, sizeof c), memset(&d, 0, sizeof d);
    ib_synth_render(7, 3, 64, &a);
    ib_synth_render(7, 3, 64, &b);
    ib_synth_render(7, 4, 64, &c);
    ib_synth_render(8, 3, 64, &d);
    CHECK(same_sample(&a, &b), "same (seed, i) gave different scenes");
    CHECK(memcmp(a.rgb, c.rgb, 64 * 64 * 3) != 0, "i = 3 and 4 gave the same image");
    CHECK(memcmp(a.rgb, d.rgb, 64 * 64 * 3) != 0, "seeds 7 and 8 gave the same image");
    ib_sample_free(&a), ib_sample_free(&b), ib_sample_free(&c), ib_sample_free(&d);
    // In parallel, in any order: the same scenes.
    enum { N = 48 };
    ib_sample par[N];
    memset(par, 0, sizeof par);
#pragma omp parallel for schedule(dynamic, 1) num_threads(3)
    for (int k = 0; k < N; k++) ib_synth_render(11, N - 1 - k, 40, &par[N - 1 - k]);
    int diff = 0;
    for (int k = 0; k < N; k++) {
        ib_sample s;
        memset(&s, 0, sizeof s);
        ib_synth_render(11, k, 40, &s);
        diff += !same_sample(&s, &par[k]);
        ib_sample_free(&s);
        ib_sample_free(&par[k]);
    }
    CHECK(diff == 0, "%d scenes differ between threaded and sequential rendering", diff);
}

TEST(synth_balance_and_annotations_agree) {
    enum { N = 600, S = 48 };
    int count[IB_SYNTH_CLASSES] = {0}, nbox_hist[5] = {0}, outlined_guess = 0;
    for (int i = 0; i < N; i++) {
        ib_sample s;
        memset(&s, 0, sizeof s);
        ib_synth_render(2024, i, S, &s);
        CHECK(s.h == S && s.w == S && s.rgb && s.mask && s.image_id == i, "sample %d shape", i);
        CHECK(s.label >= 0 && s.label < IB_SYNTH_CLASSES, "label %d", s.label);
        count[s.label]++;
        CHECK(s.n_boxes >= 1 && s.n_boxes <= 4, "sample %d has %d boxes", i, s.n_boxes);
        nbox_hist[s.n_boxes]++;
        // The label is the class with the most mask pixels (the largest shape dominates by design).
        int px[IB_SYNTH_CLASSES + 1] = {0};
        for (int p = 0; p < S * S; p++) {
            CHECK(s.mask[p] <= IB_SYNTH_CLASSES, "mask value %d", s.mask[p]);
            px[s.mask[p]]++;
        }
        for (int c = 0; c < IB_SYNTH_CLASSES; c++)
            CHECK(c == s.label || px[c] < px[s.label], "sample %d: class %d has %d mask pixels, label %d has %d", i, c,
                  px[c], s.label, px[s.label]);
        // Each box lies in the image and is tight around pixels of its class: every edge touches one.
        for (int b = 0; b < s.n_boxes; b++) {
            ib_box *bx = &s.boxes[b];
            CHECK(bx->x0 >= 0 && bx->y0 >= 0 && bx->x1 <= S && bx->y1 <= S && bx->x1 > bx->x0 && bx->y1 > bx->y0,
                  "sample %d box %d (%g %g %g %g)", i, b, bx->x0, bx->y0, bx->x1, bx->y1);
            CHECK(bx->label >= 0 && bx->label < IB_SYNTH_CLASSES && bx->iscrowd == 0, "box label %d", bx->label);
            int x0 = (int)bx->x0, y0 = (int)bx->y0, x1 = (int)bx->x1 - 1, y1 = (int)bx->y1 - 1;
            int top = 0, bot = 0, lef = 0, rig = 0;
            for (int x = x0; x <= x1; x++) top |= s.mask[y0 * S + x] == bx->label, bot |= s.mask[y1 * S + x] == bx->label;
            for (int y = y0; y <= y1; y++) lef |= s.mask[y * S + x0] == bx->label, rig |= s.mask[y * S + x1] == bx->label;
            CHECK(top && bot && lef && rig, "sample %d box %d is not tight around class %d", i, b, bx->label);
        }
        int has_label_box = 0;
        for (int b = 0; b < s.n_boxes; b++) has_label_box |= s.boxes[b].label == s.label;
        CHECK(has_label_box, "sample %d: no box of the label's class", i);
        outlined_guess += px[s.label] < 150;
        ib_sample_free(&s);
    }
    for (int c = 0; c < IB_SYNTH_CLASSES; c++)
        CHECK(count[c] >= N / 10 && count[c] <= N / 4, "class %s has %d of %d samples", ib_synth_class_name(c), count[c], N);
    CHECK(nbox_hist[1] < N * 6 / 10 && nbox_hist[2] + nbox_hist[3] + nbox_hist[4] > N / 3,
          "too few multi-shape scenes: %d %d %d %d", nbox_hist[1], nbox_hist[2], nbox_hist[3], nbox_hist[4]);
    CHECK(outlined_guess > 0, "no thin (outlined) labelled shapes in %d scenes", N);
}

// Colour says nothing about the class: the mean colour of the labelled shape's pixels, averaged per
// class over 3000 scenes of uniform random colours (std ~3.5 per class mean), is the same for all.
TEST(synth_colour_does_not_predict_the_class) {
    enum { N = 3000, S = 24 };
    double colour[IB_SYNTH_CLASSES][3] = {{0}};
    int n[IB_SYNTH_CLASSES] = {0};
    for (int i = 0; i < N; i++) {
        ib_sample s;
        memset(&s, 0, sizeof s);
        ib_synth_render(77, i, S, &s);
        double m[3] = {0, 0, 0};
        int px = 0;
        for (int p = 0; p < S * S; p++)
            if (s.mask[p] == s.label) {
                px++;
                for (int c = 0; c < 3; c++) m[c] += s.rgb[p * 3 + c];
            }
        for (int c = 0; c < 3 && px > 0; c++) colour[s.label][c] += m[c] / px;
        n[s.label] += px > 0;
        ib_sample_free(&s);
    }
    for (int k = 0; k < 3; k++) {
        double lo = 255, hi = 0;
        for (int c = 0; c < IB_SYNTH_CLASSES; c++) {
            double m = colour[c][k] / n[c];
            lo = m < lo ? m : lo, hi = m > hi ? m : hi;
        }
        CHECK(hi - lo < 20, "channel %d: class mean colours span %.1f .. %.1f", k, lo, hi);
    }
}

TEST(synth_source_through_the_dataset_interface) {
    ib_ds_opts o = opts_for(IB_DS_SYNTH);
    o.synth_n = 50, o.synth_size = 32, o.synth_seed = 5;
    ib_dataset *ds;
    CHECK(ib_dataset_open(&ds, NULL, &o) == IB_OK, "open: %s", ib_errmsg());
    CHECK(ib_dataset_size(ds) == 50 && ib_dataset_classes(ds) == IB_SYNTH_CLASSES, "size %lld classes %d",
          (long long)ib_dataset_size(ds), ib_dataset_classes(ds));
    CHECK(!strcmp(ib_dataset_class_name(ds, 0), "circle") && !strcmp(ib_dataset_class_name(ds, 5), "star"), "names");
    CHECK(ds->has_labels && ds->has_boxes && ds->has_masks, "has_*");
    int diff = 0;
    for (int i = 0; i < 50; i += 7) {
        ib_sample a, b;
        memset(&b, 0, sizeof b);
        CHECK(ib_dataset_get(ds, i, &a) == IB_OK, "get: %s", ib_errmsg());
        ib_synth_render(5, i, 32, &b);
        diff += !same_sample(&a, &b) || a.image_id != i;
        ib_sample_free(&a), ib_sample_free(&b);
    }
    ib_dataset_close(ds);
    CHECK(diff == 0, "%d samples differ from ib_synth_render", diff);
}

TEST(synth_pack_reads_back_through_ib_ds_pack) {
    // 100 scenes: more than one rendering group (64), so the order across groups is checked too.
    const char *path = tmpfile_path("synth.h5");
    int64_t boxes = -1;
    CHECK(ib_synth_write_pack(path, 100, 32, 9, 1, NULL, NULL, &boxes) == IB_OK, "write: %s", ib_errmsg());
    ib_dataset *ds;
    CHECK(open_pack(path, &ds) == IB_OK, "open: %s", ib_errmsg());
    CHECK(ib_dataset_size(ds) == 100 && ib_dataset_classes(ds) == IB_SYNTH_CLASSES, "size/classes");
    CHECK(ds->has_boxes && ds->has_masks, "annotations=1 must store boxes and masks");
    int64_t got_boxes = 0;
    int diff = 0;
    for (int i = 0; i < 100; i++) {
        ib_sample a, b;
        memset(&b, 0, sizeof b);
        CHECK(ib_dataset_get(ds, i, &a) == IB_OK, "get: %s", ib_errmsg());
        ib_synth_render(9, i, 32, &b);
        got_boxes += a.n_boxes;
        diff += !same_sample(&a, &b);
        ib_sample_free(&a), ib_sample_free(&b);
    }
    ib_dataset_close(ds);
    CHECK(diff == 0 && got_boxes == boxes, "%d samples differ; boxes %lld vs %lld", diff, (long long)got_boxes,
          (long long)boxes);
    // annotations=0: images and labels only, the same pixels.
    const char *plain = tmpfile_path("synth_plain.h5");
    CHECK(ib_synth_write_pack(plain, 70, 32, 9, 0, NULL, NULL, NULL) == IB_OK, "write: %s", ib_errmsg());
    CHECK(open_pack(plain, &ds) == IB_OK, "open: %s", ib_errmsg());
    CHECK(ib_dataset_size(ds) == 70 && !ds->has_boxes && !ds->has_masks, "plain pack: %lld images, boxes %d masks %d",
          (long long)ib_dataset_size(ds), ds->has_boxes, ds->has_masks);
    ib_sample a, b;
    memset(&b, 0, sizeof b);
    CHECK(ib_dataset_get(ds, 69, &a) == IB_OK, "get: %s", ib_errmsg());
    ib_synth_render(9, 69, 32, &b);
    int same = a.label == b.label && !memcmp(a.rgb, b.rgb, (size_t)32 * 32 * 3);
    ib_sample_free(&a), ib_sample_free(&b);
    ib_dataset_close(ds);
    CHECK(same, "scene 69 of the plain pack differs from ib_synth_render");
    CHECK(ib_synth_write_pack(plain, 0, 32, 9, 0, NULL, NULL, NULL) == IB_ERR_ARG, "n = 0 must be refused");
}

// ---------------------------------------------------------------------------------------------
// The verbs, run as a user runs them.

static int64_t json_count(const char *txt, const char *key) {
    json_error_t err;
    json_t *j = json_loads(txt, 0, &err);
    if (!j) return -999;
    json_t *v = json_object_get(j, key);
    int64_t x = json_is_integer(v) ? (int64_t)json_integer_value(v) : -998;
    json_decref(j);
    return x;
}

TEST(cli_synth_then_pack) {
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built (make build/ibnas)", bin);
    char cmd[1024], *out = NULL;
    const char *s = tmpfile_path("cli_synth.h5"), *p = tmpfile_path("cli_pack.h5"), *q = tmpfile_path("cli_gen.h5");
    snprintf(cmd, sizeof cmd, "%s synth --out %s --n 40 --size 32 --seed 3 --json", bin, s);
    int rc = test_run(cmd, &out, NULL);
    int64_t images = json_count(out, "images"), classes = json_count(out, "classes"), boxes = json_count(out, "boxes");
    free(out);
    CHECK(rc == 0 && images == 40 && classes == IB_SYNTH_CLASSES && boxes >= 40, "synth: rc %d images %lld classes %lld",
          rc, (long long)images, (long long)classes);
    // Re-pack at 24: a plain resize (it has boxes and masks), so no box is lost.
    snprintf(cmd, sizeof cmd, "%s pack --format pack %s --size 24 --out %s --json", bin, s, p);
    rc = test_run(cmd, &out, NULL);
    int64_t images2 = json_count(out, "images"), boxes2 = json_count(out, "boxes"), skipped = json_count(out, "skipped");
    free(out);
    CHECK(rc == 0 && images2 == 40 && boxes2 == boxes && skipped == 0, "pack: rc %d images %lld boxes %lld/%lld",
          rc, (long long)images2, (long long)boxes2, (long long)boxes);
    ib_dataset *ds;
    CHECK(open_pack(p, &ds) == IB_OK, "open the re-pack: %s", ib_errmsg());
    ib_sample a;
    CHECK(ds->size == 40 && ib_dataset_get(ds, 0, &a) == IB_OK && a.h == 24 && a.w == 24 && a.mask, "re-pack sample");
    ib_sample_free(&a);
    ib_dataset_close(ds);
    // The synthetic source packed directly gives the same scenes as `ibnas synth`.
    snprintf(cmd, sizeof cmd, "%s pack --format synth --n 40 --seed 3 --size 32 --out %s --json", bin, q);
    rc = test_run(cmd, &out, NULL);
    int64_t boxes3 = json_count(out, "boxes");
    free(out);
    CHECK(rc == 0 && boxes3 == boxes, "pack --format synth: rc %d boxes %lld", rc, (long long)boxes3);
    // Usage errors exit 2; a missing source exits 1 naming it.
    snprintf(cmd, sizeof cmd, "%s pack --bogus 1 --out %s", bin, p);
    CHECK(test_run(cmd, NULL, NULL) == 2, "unknown flag: not exit 2");
    snprintf(cmd, sizeof cmd, "%s synth --n 5", bin);
    CHECK(test_run(cmd, NULL, NULL) == 2, "synth without --out: not exit 2");
    snprintf(cmd, sizeof cmd, "%s pack --format pack /nonexistent/x.h5 --size 16 --out %s", bin, p);
    char *err = NULL;
    rc = test_run(cmd, NULL, &err);
    int named = strstr(err, "/nonexistent/x.h5") != NULL;
    free(err);
    CHECK(rc == 1, "missing source: exit %d, not 1", rc);
    CHECK(named, "the error does not name the missing file");
    snprintf(cmd, sizeof cmd, "%s pack --help", bin);
    CHECK(test_run(cmd, NULL, NULL) == 0, "--help");
}

// ib_pack, the library side of `ibnas pack`: a synthetic source packed through the public call holds the
// scenes ib_synth_render gives, the report counts them, the progress reaches the total, and bad options
// fail as usage errors before any file is made.
static void count_progress(int64_t done, int64_t n, void *user) {
    int64_t *last = user;
    if (done > *last && done <= n) *last = done;
}

TEST(ib_pack_public_call) {
    const char *p = tmpfile_path("ib_pack.h5");
    ib_pack_opts o;
    ib_pack_opts_default(&o);
    o.format = "synth", o.size = 20, o.synth_n = 37, o.synth_seed = 12;
    int64_t last = 0;
    o.progress = count_progress, o.user = &last;
    ib_pack_report r;
    CHECK(ib_pack(NULL, p, &o, &r) == IB_OK, "ib_pack synth: %s", ib_errmsg());
    CHECK(r.images == 37 && r.classes == IB_SYNTH_CLASSES && r.has_boxes && r.has_masks && !r.crop && r.skipped == 0,
          "report: %lld images, %d classes, boxes %d masks %d crop %d", (long long)r.images, r.classes, r.has_boxes,
          r.has_masks, r.crop);
    CHECK(last == 37, "progress reached %lld of 37", (long long)last);
    ib_dataset *ds;
    CHECK(open_pack(p, &ds) == IB_OK, "open: %s", ib_errmsg());
    int64_t boxes = 0;
    int diff = 0;
    for (int i = 0; i < 37; i++) {
        ib_sample a, b;
        CHECK(ib_dataset_get(ds, i, &a) == IB_OK, "get %d", i);
        ib_synth_render(12, i, 20, &b);
        diff += a.label != b.label || a.n_boxes != b.n_boxes || memcmp(a.rgb, b.rgb, 20 * 20 * 3) != 0;
        boxes += a.n_boxes;
        ib_sample_free(&a);
        ib_sample_free(&b);
    }
    ib_dataset_close(ds);
    CHECK(diff == 0 && boxes == r.boxes, "%d scenes differ from ib_synth_render; boxes %lld, report %lld", diff,
          (long long)boxes, (long long)r.boxes);
    const char *q = tmpfile_path("ib_pack_bad.h5");
    o.format = "nonsense";
    CHECK(ib_pack(NULL, q, &o, NULL) == IB_ERR_ARG && strstr(ib_errmsg(), "nonsense"), "unknown format: %s", ib_errmsg());
    o.format = "synth", o.fit = "squash";
    CHECK(ib_pack(NULL, q, &o, NULL) == IB_ERR_ARG && strstr(ib_errmsg(), "squash"), "bad fit: %s", ib_errmsg());
    o.fit = NULL, o.size = 4;
    CHECK(ib_pack(NULL, q, &o, NULL) == IB_ERR_ARG, "size 4 accepted");
    o.size = 20, o.format = "imagefolder";
    CHECK(ib_pack(NULL, q, &o, NULL) == IB_ERR_ARG, "no source accepted");
    CHECK(access(q, F_OK) != 0, "a failed ib_pack left %s", q);
}
