// COCO results (tasks/coco_eval.c through ib_coco_evaluate_files): the bytes as the detections JSON
// evaluated against a fixed two-image ground truth; the evaluator may refuse them but must not crash.
#include "tasks/detect.h"
#include "tests/fuzz/fuzz.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *gt_path;
    if (!gt_path) {
        const char *gt =
            "{\"images\": [{\"id\": 1, \"width\": 64, \"height\": 64}, {\"id\": 2, \"width\": 32, \"height\": 48}],"
            " \"categories\": [{\"id\": 1, \"name\": \"a\"}, {\"id\": 3, \"name\": \"b\"}],"
            " \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 1, \"bbox\": [4, 4, 20, 10], \"area\": 200,"
            " \"iscrowd\": 0}, {\"id\": 2, \"image_id\": 2, \"category_id\": 3, \"bbox\": [0, 0, 30, 40], \"area\": 1200,"
            " \"iscrowd\": 1}]}";
        gt_path = fuzz_file("gt.json", (const uint8_t *)gt, strlen(gt));
        static char keep[1024];
        strncpy(keep, gt_path, sizeof keep - 1);
        gt_path = keep;
    }
    double stats[IB_COCO_STATS];
    ib_coco_evaluate_files(gt_path, fuzz_file("dets.json", data, size), stats);
    return 0;
}
