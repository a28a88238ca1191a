// ibnas eval: top-1 / top-5 of a classifier, or mIoU, pixel accuracy and per-class IoU of a segmentation
// network (--task segment), on a dataset, through the public API (include/ibnas.h).
#include "cli/cli.h"

#include <math.h>
#include <string.h>

static const char *usage_text =
    "usage: ibnas eval [--task classify|detect|segment] --model CKPT.h5 --data PACK.h5|DIR [flags]\n\n"
    "--task detect (or a detection checkpoint): the twelve COCO numbers; --dets-out writes the detections.\n"
    "Evaluates in eval mode (BN running statistics). Images are resized (centre crop keeping the aspect)\n"
    "to --res, normalised with ImageNet's mean and std. --task segment: images and masks are resized\n"
    "whole to --width x --height (default: the training size); mIoU, pixel accuracy and per-class IoU over\n"
    "every labelled pixel; --fast-argmax takes the argmax at the logits' low resolution; --pred-out DIR writes\n"
    "the predicted label maps at the evaluation size, NAME.png per image (the image file's name, or its index).\n";

static int eval_segment(const char *model, const char *data, const char *split, int threads, const ib_seg_eval_opts *eo,
                        int json) {
    ib_set_threads(threads);
    ib_model *m;
    ib_status s = ib_model_load(&m, model);
    if (s) return cli_report("eval", s);
    if (strcmp(ib_model_task(m), "segment")) {
        fprintf(stderr, "ibnas eval: %s is a %s model; use --task %s\n", model, ib_model_task(m), ib_model_task(m));
        ib_model_free(m);
        return 2;
    }
    ib_dataset *ds;
    if ((s = ib_dataset_load(&ds, data, split))) {
        ib_model_free(m);
        return cli_report("eval", s);
    }
    ib_seg_eval_report r;
    s = ib_eval_segment(m, ds, eo, &r);
    int nc = ib_dataset_classes(ds);
    if (!s && json) {
        printf("{\"task\": \"segment\", \"images\": %lld, \"pixels\": %lld, \"miou\": %.6f, \"pixel_acc\": %.6f, "
               "\"loss\": %.6f, \"fast_argmax\": %s, \"head_ms\": %.3f, \"total_ms\": %.3f, \"iou\": [",
               (long long)r.images, (long long)r.pixels, r.miou, r.pixel_acc, r.loss, eo->fast_argmax ? "true" : "false",
               r.head_ms, r.total_ms);
        for (int c = 0; c < r.classes; c++) {
            if (isnan(r.iou[c])) printf("%snull", c ? ", " : "");
            else printf("%s%.6f", c ? ", " : "", r.iou[c]);
        }
        printf("]}\n");
    } else if (!s) {
        printf("images %lld  mIoU %.4f  pixel acc %.4f%s  (%.2f ms/image, last layers %.2f ms)\n", (long long)r.images,
               r.miou, r.pixel_acc, eo->fast_argmax ? "  fast argmax" : "", r.total_ms, r.head_ms);
        for (int c = 0; c < r.classes; c++) {
            const char *name = c < nc ? ib_dataset_class_name(ds, c) : c == nc ? "background" : "?";
            if (isnan(r.iou[c])) printf("  %-24s absent\n", name);
            else printf("  %-24s %.4f\n", name, r.iou[c]);
        }
    }
    ib_seg_eval_report_free(&r);
    ib_dataset_close(ds);
    ib_model_free(m);
    return s ? cli_report("eval", s) : 0;
}

int cmd_eval(int argc, char **argv) {
    const char *task = "classify", *model = NULL, *data = NULL, *split = "val", *dets_out = NULL, *pred_out = NULL;
    int res = 0, batch = 0, threads = 0, workers = 2, per_class = 0, json = 0, quiet = 0;
    int height = 0, width = 0, fast_argmax = 0;
    const cli_flag flags[] = {
        {"--task", F_STR, &task, "classify (default), detect or segment"},
        {"--dets-out", F_STR, &dets_out, "detect: write the detections as COCO results JSON"},
        {"--model", F_STR, &model, "checkpoint (required)"},
        {"--data", F_STR, &data, "dataset: a pack (.h5) or any folder layout ibnas reads (required)"},
        {"--split", F_STR, &split, "split of a dataset root (default val)"},
        {"--res", F_INT, &res, "input resolution (default: the arch's input size)"},
        {"--batch", F_INT, &batch, "batch size (default 100; segment 8)"},
        {"--threads", F_INT, &threads, "threads (default: all cores)"},
        {"--workers", F_INT, &workers, "data loading threads (default 2)"},
        {"--per-class", F_BOOL, &per_class, "also report each class's top-1"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {"--quiet", F_BOOL, &quiet, "no progress output"},
        {"--height", F_INT, &height, "segment: evaluation height (default: the training size)"},
        {"--width", F_INT, &width, "segment: evaluation width (default: the training size)"},
        {"--fast-argmax", F_BOOL, &fast_argmax, "segment: argmax of the low-resolution logits, labels upsampled"},
        {"--pred-out", F_STR, &pred_out, "segment: write each image's predicted labels as DIR/NAME.png (palette PNGs)"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("eval", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    int detect = !strcmp(task, "detect");
    if (strcmp(task, "classify") && strcmp(task, "segment") && !detect) {
        fprintf(stderr, "ibnas eval: --task %s is not one of classify, detect, segment\n", task);
        return 2;
    }
    if (!model || !data) {
        fprintf(stderr, "ibnas eval: --model and --data are required (ibnas eval --help)\n");
        return 2;
    }
    if (!strcmp(task, "segment")) {
        ib_seg_eval_opts so;
        ib_seg_eval_opts_default(&so);
        so.height = height, so.width = width;
        if (batch) so.batch = batch;
        so.workers = workers;
        so.fast_argmax = fast_argmax;
        so.pred_out = pred_out;
        if (pred_out && cli_mkdirs("eval", pred_out)) return 1;
        so.progress = !quiet && !json;
        return eval_segment(model, data, split, threads, &so, json);
    }
    if (!batch) batch = 100;
    ib_set_threads(threads);
    ib_model *m;
    ib_status s = ib_model_load(&m, model);
    if (s) return cli_report("eval", s);
    ib_dataset *ds;
    if ((s = ib_dataset_load(&ds, data, split))) {
        ib_model_free(m);
        return cli_report("eval", s);
    }
    if (detect || !strcmp(ib_model_task(m), "detect")) {
        ib_det_eval_opts dopt;
        ib_det_eval_opts_default(&dopt);
        dopt.res = res;
        dopt.batch = batch == 100 ? 32 : batch;
        dopt.workers = workers;
        dopt.progress = !quiet && !json;
        dopt.dets_out = dets_out;
        ib_det_eval_report dr;
        s = ib_eval_detect(m, ds, &dopt, &dr);
        ib_dataset_close(ds);
        ib_model_free(m);
        if (s) return cli_report("eval", s);
        if (json) {
            printf("{\"task\": \"detect\", \"images\": %lld", (long long)dr.images);
            for (int i = 0; i < IB_COCO_NSTATS; i++) printf(", \"%s\": %.6f", ib_coco_stat_name(i), dr.coco[i]);
            printf("}\n");
        } else {
            printf("images %lld\n", (long long)dr.images);
            for (int i = 0; i < IB_COCO_NSTATS; i++) printf("%-6s %.4f\n", ib_coco_stat_name(i), dr.coco[i]);
        }
        return 0;
    }
    ib_eval_opts eo;
    ib_eval_opts_default(&eo);
    eo.res = res;   // 0: the model's input size
    eo.batch = batch;
    eo.workers = workers;
    eo.per_class = per_class;
    eo.progress = !quiet && !json;
    ib_eval_report er;
    s = ib_eval(m, ds, &eo, &er);
    int nc = ib_dataset_classes(ds);
    if (!s) {
        if (json) {
            printf("{\"task\": \"classify\", \"images\": %lld, \"top1\": %.6f, \"top5\": %.6f, \"loss\": %.6f",
                   (long long)er.images, er.top1, er.top5, er.loss);
            if (per_class) {
                printf(", \"per_class\": {");
                for (int c = 0; c < er.classes; c++) {
                    int64_t n = er.per_class_total[c];
                    double acc = n ? (double)er.per_class_correct[c] / (double)n : 0;
                    printf("%s\"%s\": %.6f", c ? ", " : "", c < nc ? ib_dataset_class_name(ds, c) : "?", acc);
                }
                printf("}");
            }
            printf("}\n");
        } else {
            printf("images %lld  top1 %.4f  top5 %.4f  loss %.4f\n", (long long)er.images, er.top1, er.top5, er.loss);
            if (per_class)
                for (int c = 0; c < er.classes; c++)
                    if (er.per_class_total[c])
                        printf("  %-24s %.4f (%lld images)\n", c < nc ? ib_dataset_class_name(ds, c) : "?",
                               (double)er.per_class_correct[c] / (double)er.per_class_total[c],
                               (long long)er.per_class_total[c]);
        }
    }
    ib_eval_report_free(&er);
    ib_dataset_close(ds);
    ib_model_free(m);
    return s ? cli_report("eval", s) : 0;
}
