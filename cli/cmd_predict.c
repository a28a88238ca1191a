// ibnas predict: a checkpoint's answer on image files, by its task, through the public API (ib_predict, the
// PNG writers and the drawing of include/ibnas.h): classify prints the top-5, detect draws the boxes and
// writes them as JSON, segment writes a coloured overlay and the label map.
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: ibnas predict --model CKPT.h5 IMAGE... [--out DIR] [--json] [--score-thresh T] [--res R]\n\n"
    "Runs the checkpoint on each image (PNG or JPEG) by its task:\n"
    "  classify  prints the top-5 classes with their probabilities (the image centre-cropped to --res);\n"
    "  detect    writes DIR/NAME.png, the image with each box outlined in its class colour and labelled\n"
    "            \"CLASS SCORE\" (the class's name where the checkpoint records names: training writes the data's),\n"
    "            and DIR/NAME.json, the boxes [x0, y0, x1, y1] in the image's pixels;\n"
    "  segment   writes DIR/NAME.png, the image with the predicted classes blended in (--alpha), and\n"
    "            DIR/NAME.labels.png, the label map (a palette PNG whose values are the class ids).\n"
    "NAME is the image's file name without its extension. Colours: docs/FORMATS.md \"Class colours\".\n"
    "Every image is read before anything is written: a missing or unreadable one stops the run with no output.\n";

// The file name without folder and extension.
static void stem_of(const char *path, char *buf, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    int len = dot && dot > base ? (int)(dot - base) : (int)strlen(base);
    snprintf(buf, n, "%.*s", len, base);
}

// JSON written to PATH.tmp and renamed.
static int write_json(const char *path, json_t *j) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_dump_file(j, tmp, JSON_REAL_PRECISION(8)) || rename(tmp, path)) {
        fprintf(stderr, "ibnas predict: %s: cannot write: %s\n", path, strerror(errno));
        remove(tmp);
        return 1;
    }
    return 0;
}

// "name" where the checkpoint names the classes
static json_t *named(json_t *o, const ib_model *m, int c) {
    const char *name = ib_model_class_name(m, c);
    if (o && name) json_object_set_new(o, "name", json_string(name));
    return o;
}

static json_t *box_json(const ib_model *m, const ib_detection *d) {
    return named(json_pack("{s:i, s:f, s:[f, f, f, f]}", "class", d->label, "score", (double)d->score, "box",
                           (double)d->x0, (double)d->y0, (double)d->x1, (double)d->y1),
                 m, d->label);
}

// The outputs of one image: files under out, and its JSON entry (returned; NULL after a failure, printed).
static json_t *predict_one(ib_model *m, const char *image, const char *out, const ib_predict_opts *po, float alpha,
                           int background) {
    uint8_t *rgb = NULL;
    int h, w;
    ib_prediction p;
    memset(&p, 0, sizeof p);
    json_t *j = NULL;
    ib_status s = ib_image_read(image, &rgb, &h, &w);
    if (!s) s = ib_predict(m, rgb, h, w, po, &p);
    if (s) {
        cli_report("predict", s);
        goto done;
    }
    j = json_pack("{s:s, s:i, s:i}", "image", image, "width", w, "height", h);
    char stem[1024], png[4200], extra[4200];
    stem_of(image, stem, sizeof stem);
    snprintf(png, sizeof png, "%s/%s.png", out ? out : ".", stem);
    if (!strcmp(p.task, "classify")) {
        json_t *top = json_array();
        for (int t = 0; t < p.n_top; t++)
            json_array_append_new(
                top, named(json_pack("{s:i, s:f}", "class", p.top_class[t], "prob", (double)p.top_prob[t]), m, p.top_class[t]));
        json_object_set_new(j, "top", top);
    } else if (!strcmp(p.task, "detect")) {
        json_t *dets = json_array();
        for (int k = 0; k < p.n_dets; k++) json_array_append_new(dets, box_json(m, &p.dets[k]));
        json_object_set_new(j, "detections", dets);
        json_object_set_new(j, "png", json_string(png));
        snprintf(extra, sizeof extra, "%s/%s.json", out, stem);
        json_object_set_new(j, "json", json_string(extra));
        ib_draw_detections_named(rgb, h, w, p.dets, p.n_dets, m);
        if ((s = ib_png_write_rgb(png, rgb, h, w))) cli_report("predict", s);
        else if (write_json(extra, j)) s = IB_ERR_IO;
    } else {
        json_t *counts = json_array();
        for (int c = 0; c < p.classes; c++) {
            int64_t n = 0;
            for (int64_t i = 0; i < (int64_t)h * w; i++) n += p.labels[i] == c;
            json_array_append_new(counts, json_integer((json_int_t)n));
        }
        json_object_set_new(j, "class_pixels", counts);
        snprintf(extra, sizeof extra, "%s/%s.labels.png", out, stem);
        json_object_set_new(j, "png", json_string(png));
        json_object_set_new(j, "labels", json_string(extra));
        ib_draw_segmentation(rgb, h, w, p.labels, alpha, background);
        if ((s = ib_png_write_labels(extra, p.labels, h, w, p.classes)) || (s = ib_png_write_rgb(png, rgb, h, w)))
            cli_report("predict", s);
    }
    if (s) json_decref(j), j = NULL;
done:
    ib_prediction_free(&p);
    free(rgb);
    return j;
}

static void print_entry(const char *task, const json_t *e) {
    const char *image = json_string_value(json_object_get(e, "image"));
    if (!strcmp(task, "classify")) {
        printf("%s:", image);
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(e, "top"), i, t) {
            const char *name = json_string_value(json_object_get(t, "name"));
            if (name)
                printf("  %s %.4f", name, json_number_value(json_object_get(t, "prob")));
            else
                printf("  %lld %.4f", (long long)json_integer_value(json_object_get(t, "class")),
                       json_number_value(json_object_get(t, "prob")));
        }
        printf("\n");
    } else if (!strcmp(task, "detect")) {
        printf("%s: %zu boxes -> %s, %s\n", image, json_array_size(json_object_get(e, "detections")),
               json_string_value(json_object_get(e, "png")), json_string_value(json_object_get(e, "json")));
    } else {
        printf("%s -> %s, %s\n", image, json_string_value(json_object_get(e, "png")),
               json_string_value(json_object_get(e, "labels")));
    }
}

int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    int res = 0, json = 0, threads = 0, background = -1;
    float score_thresh = 0.3f, alpha = 0.5f;
    const cli_flag flags[] = {
        {"--model", F_STR, &model, "checkpoint (required): a classifier, a detector or a segmenter"},
        {"--out", F_STR, &out, "detect, segment: the folder for the pictures and JSON (made with its parents; required)"},
        {"--json", F_BOOL, &json, "print one JSON object with every image's results on stdout"},
        {"--score-thresh", F_FLOAT, &score_thresh, "detect: boxes scored below are left out (default 0.3)"},
        {"--res", F_INT, &res, "the network's input, res x res (default: the size the model was built or trained at)"},
        {"--alpha", F_FLOAT, &alpha, "segment: weight of the class colours over the image, 0..1 (default 0.5)"},
        {"--background", F_INT, &background, "segment: a class left uncoloured in the overlay (default: none)"},
        {"--threads", F_INT, &threads, "threads (default: all cores)"},
        {NULL, 0, NULL, NULL},
    };
    // Flags (and their values) go to cli_parse; every other argument is an image.
    int nf, ni;
    char **images, **fargv = cli_split_args("predict", argc, argv, flags, &nf, &images, &ni);
    if (!fargv) return 1;
    int rc = cli_parse("predict", nf, fargv, flags, usage_text);
    ib_model *m = NULL;
    json_t *all = NULL;
    if (rc) {
        rc = rc < 0 ? 0 : rc;
        goto done;
    }
    rc = 2;
    if (!model || !ni) {
        fprintf(stderr, "ibnas predict: --model and at least one image are required (ibnas predict --help)\n");
        goto done;
    }
    if (res < 0 || !(score_thresh >= 0 && score_thresh <= 1) || !(alpha >= 0 && alpha <= 1)) {
        fprintf(stderr, "ibnas predict: --res must be >= 0, --score-thresh and --alpha within 0..1\n");
        goto done;
    }
    ib_set_threads(threads);
    rc = 1;
    ib_status s = ib_model_load(&m, model);
    if (s) {
        cli_report("predict", s);
        goto done;
    }
    const char *task = ib_model_task(m);
    int classify = !strcmp(task, "classify");
    if (!classify && !out) {
        fprintf(stderr, "ibnas predict: %s is a %s model: --out DIR is required for its pictures\n", model, task);
        rc = 2;
        goto done;
    }
    // Before anything is written: every image readable, and no two with the same output name.
    for (int i = 0; i < ni; i++) {
        uint8_t *rgb;
        int h, w;
        if ((s = ib_image_read(images[i], &rgb, &h, &w))) {
            cli_report("predict", s);
            goto done;
        }
        free(rgb);
        char a[1024], b[1024];
        stem_of(images[i], a, sizeof a);
        for (int k = 0; k < i && !classify; k++) {
            stem_of(images[k], b, sizeof b);
            if (!strcmp(a, b)) {
                fprintf(stderr, "ibnas predict: %s and %s would both write %s/%s.png\n", images[k], images[i], out, a);
                rc = 2;
                goto done;
            }
        }
    }
    if (!classify && cli_mkdirs("predict", out)) goto done;
    ib_predict_opts po;
    ib_predict_opts_default(&po);
    po.res = res;
    po.score_thresh = score_thresh;
    all = json_array();
    for (int i = 0; i < ni; i++) {
        json_t *e = predict_one(m, images[i], classify ? NULL : out, &po, alpha, background);
        if (!e) goto done;
        if (!json) print_entry(task, e);
        json_array_append_new(all, e);
    }
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:O}", "task", task, "model", model, "images", all);
        char *txt = json_dumps(j, JSON_REAL_PRECISION(8));
        printf("%s\n", txt);
        free(txt);
        json_decref(j);
    }
    rc = 0;
done:
    json_decref(all);
    ib_model_free(m);
    free(fargv);
    return rc;
}
