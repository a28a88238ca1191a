// Train a segmenter (a backbone with a DeepLabv3+-lite or BiFPN head), evaluate it (mIoU, per-class IoU,
// pixel accuracy) and write its predicted label maps, through the public API alone (include/ibnas.h). Build
// against an installed ibnas with
//     cc train_segmenter.c $(pkg-config --cflags --libs ibnas) -o train_segmenter
// Usage: train_segmenter TRAIN.h5 VAL.h5 [EPOCHS [HEAD [RES]]]
//   TRAIN, VAL: data with masks (`ibnas synth --out train.h5 --n 4000 --size 64` and `--out val.h5 --seed 2
//   --n 300` make them; CamVid lists or image+mask folders work the same). HEAD: deeplab (default) or bifpn.
//   The backbone can be any arch, or an extracted subnet (t.init = "subnet.h5", see search_subnet.c).
// Writes segmenter.h5 (its log segmenter.h5.csv) and pred/ (one palette PNG per validation image).
#include <ibnas.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what) {
    fprintf(stderr, "train_segmenter: %s: %s\n", what, ib_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TRAIN.h5 VAL.h5 [EPOCHS [HEAD [RES]]]\n", argv[0]);
        return 2;
    }
    ib_train_opts t;
    ib_train_opts_default(&t);
    t.task = "segment";
    t.arch = "mobilenetv2:0.35";
    t.data = argv[1];
    t.val = argv[2];
    t.out = "segmenter.h5";
    t.epochs = argc > 3 ? atoi(argv[3]) : 8;
    t.seg_head = argc > 4 ? argv[4] : "deeplab";
    t.res = argc > 5 ? atoi(argv[5]) : 64;
    t.batch = 32;
    t.lr = 0.05f;
    t.warmup_epochs = 0.3f;
    t.progress = 0;
    ib_train_report tr;
    if (ib_train(&t, &tr)) return fail("train");
    printf("trained %d epochs: val mIoU %.3f, pixel accuracy %.3f\n", tr.epochs_done, tr.val_miou, tr.val_pixel_acc);

    ib_model *m;
    ib_dataset *ds;
    if (ib_model_load(&m, t.out)) return fail("load");
    if (ib_dataset_load(&ds, t.val, "val")) return fail("val data");
    ib_seg_eval_opts eo;
    ib_seg_eval_opts_default(&eo);
    eo.pred_out = "pred";
    ib_seg_eval_report r;
    ib_status s = ib_eval_segment(m, ds, &eo, &r);
    if (!s) {
        printf("%lld images, %lld labelled pixels: mIoU %.4f, pixel accuracy %.4f\n", (long long)r.images,
               (long long)r.pixels, r.miou, r.pixel_acc);
        for (int c = 0; c < r.classes; c++)
            if (!isnan(r.iou[c])) printf("  class %d IoU %.4f\n", c, r.iou[c]);
    } else {
        fail("eval");
    }
    ib_seg_eval_report_free(&r);
    ib_dataset_close(ds);
    ib_model_free(m);
    return s ? 1 : 0;
}
