// ibnas miou: mIoU, pixel accuracy and per-class IoU of two folders of label PNGs, through the public API
// (ib_miou_dirs).
#include "cli/cli.h"

#include <math.h>
#include <string.h>

static const char *usage_text =
    "usage: ibnas miou --gt-dir G --pred-dir P --classes N [--ignore K] [--json]\n\n"
    "Compares every .png of G with the file of the same name in P (8-bit gray or palette PNGs: the raw values\n"
    "are class ids; same size). Pixels whose ground truth is K (default 255) are left out. mIoU is the mean\n"
    "IoU over the classes present in the ground truth or the prediction.\n";

int cmd_miou(int argc, char **argv) {
    const char *gt = NULL, *pred = NULL;
    int classes = 0, ignore = 255, json = 0;
    const cli_flag flags[] = {
        {"--gt-dir", F_STR, &gt, "folder of ground-truth label PNGs (required)"},
        {"--pred-dir", F_STR, &pred, "folder of predicted label PNGs with the same names (required)"},
        {"--classes", F_INT, &classes, "class count (required)"},
        {"--ignore", F_INT, &ignore, "ground-truth value left out (default 255)"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("miou", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!gt || !pred || classes < 1) {
        fprintf(stderr, "ibnas miou: --gt-dir, --pred-dir and --classes are required (ibnas miou --help)\n");
        return 2;
    }
    ib_seg_eval_report rep;
    ib_status s = ib_miou_dirs(gt, pred, classes, ignore, &rep);
    if (!s && json) {
        printf("{\"images\": %lld, \"pixels\": %lld, \"miou\": %.6f, \"pixel_acc\": %.6f, \"iou\": [", (long long)rep.images,
               (long long)rep.pixels, rep.miou, rep.pixel_acc);
        for (int c = 0; c < rep.classes; c++) {
            if (isnan(rep.iou[c])) printf("%snull", c ? ", " : "");
            else printf("%s%.6f", c ? ", " : "", rep.iou[c]);
        }
        printf("]}\n");
    } else if (!s) {
        printf("images %lld  pixels %lld  mIoU %.4f  pixel acc %.4f\n", (long long)rep.images, (long long)rep.pixels,
               rep.miou, rep.pixel_acc);
        for (int c = 0; c < rep.classes; c++) {
            if (isnan(rep.iou[c])) printf("  class %-3d absent\n", c);
            else printf("  class %-3d %.4f\n", c, rep.iou[c]);
        }
    }
    ib_seg_eval_report_free(&rep);
    return s ? cli_report("miou", s) : 0;
}
