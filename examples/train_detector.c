// Train an SSDLite detector on packs with boxes, evaluate it (the twelve COCO numbers) and write its
// detections, through the public API alone (include/ibnas.h). Build against an installed ibnas with
//     cc train_detector.c $(pkg-config --cflags --libs ibnas) -o train_detector
// Usage: train_detector TRAIN.h5 VAL.h5 [EPOCHS [RES]]
//   `ibnas synth --out train.h5 --n 6000 --size 96` and `--out val.h5 --seed 2 --n 500` make them.
#include <ibnas.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TRAIN.h5 VAL.h5 [EPOCHS [RES]]\n", argv[0]);
        return 2;
    }
    ib_train_opts o;
    ib_train_opts_default(&o);
    o.task = "detect";
    o.arch = "mobilenetv2:0.35";           // any arch of total stride 32, or o.init = a classification checkpoint
    o.data = argv[1];
    o.val = argv[2];
    o.out = "detector.h5";
    o.epochs = argc > 3 ? atoi(argv[3]) : 10;
    o.res = argc > 4 ? atoi(argv[4]) : 96;
    o.batch = 32;
    o.warmup_epochs = 0.3f;
    o.det_min_scale = 0.1f;                 // small objects at a small input
    ib_train_report tr;
    ib_status s = ib_train(&o, &tr);
    if (s) {
        fprintf(stderr, "train: %s\n", ib_errmsg());
        return 1;
    }
    printf("trained %d epochs: val AP50 %.3f\n", tr.epochs_done, tr.val_coco[1]);

    ib_model *m;
    ib_dataset *ds;
    if (ib_model_load(&m, o.out) || ib_dataset_load(&ds, o.val, NULL)) {
        fprintf(stderr, "%s\n", ib_errmsg());
        return 1;
    }
    ib_det_eval_opts eo;
    ib_det_eval_opts_default(&eo);
    eo.dets_out = "detections.json";        // COCO results format
    ib_det_eval_report er;
    s = ib_eval_detect(m, ds, &eo, &er);
    if (!s)
        for (int i = 0; i < IB_COCO_NSTATS; i++) printf("%-6s %.4f\n", ib_coco_stat_name(i), er.coco[i]);
    else fprintf(stderr, "eval: %s\n", ib_errmsg());
    ib_dataset_close(ds);
    ib_model_free(m);
    return s ? 1 : 0;
}
