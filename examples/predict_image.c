// What `ibnas predict` does for one image, through the public API alone (include/ibnas.h): load a checkpoint
// of any task, run it on a PNG or JPEG, and print the top-5 classes, or draw the boxes, or overlay the
// predicted classes and write the label map. Build against an installed ibnas with
//     cc predict_image.c $(pkg-config --cflags --libs ibnas) -o predict_image
// Usage: predict_image CKPT.h5 IMAGE [OUT_PREFIX]   (writes OUT_PREFIX.png, and .labels.png for a segmenter)
#include <ibnas.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CKPT.h5 IMAGE [OUT_PREFIX]\n", argv[0]);
        return 2;
    }
    const char *prefix = argc > 3 ? argv[3] : "prediction";
    ib_model *m = NULL;
    uint8_t *rgb = NULL;
    int h, w, rc = 1;
    ib_prediction p = {0};
    ib_predict_opts o;
    ib_predict_opts_default(&o);   // the model's own input size; boxes scored 0.3 and above
    if (ib_model_load(&m, argv[1]) || ib_image_read(argv[2], &rgb, &h, &w) || ib_predict(m, rgb, h, w, &o, &p)) {
        fprintf(stderr, "%s\n", ib_errmsg());
        goto done;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s.png", prefix);
    if (p.n_top) {   // a classifier
        for (int t = 0; t < p.n_top; t++) printf("class %d  %.4f\n", p.top_class[t], p.top_prob[t]);
        rc = 0;
        goto done;
    }
    if (p.dets) {    // a detector: boxes in the image's pixels
        for (int k = 0; k < p.n_dets; k++)
            printf("class %d  %.3f  [%.1f %.1f %.1f %.1f]\n", p.dets[k].label, p.dets[k].score, p.dets[k].x0,
                   p.dets[k].y0, p.dets[k].x1, p.dets[k].y1);
        ib_draw_detections_named(rgb, h, w, p.dets, p.n_dets, m);
    } else {         // a segmenter: a class id per pixel
        char lpath[1100];
        snprintf(lpath, sizeof lpath, "%s.labels.png", prefix);
        if (ib_png_write_labels(lpath, p.labels, h, w, p.classes)) {
            fprintf(stderr, "%s\n", ib_errmsg());
            goto done;
        }
        ib_draw_segmentation(rgb, h, w, p.labels, 0.5f, -1);
    }
    if (ib_png_write_rgb(path, rgb, h, w)) fprintf(stderr, "%s\n", ib_errmsg());
    else rc = 0, printf("wrote %s\n", path);
done:
    ib_prediction_free(&p);
    free(rgb);
    ib_model_free(m);
    return rc;
}
