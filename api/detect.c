// api/detect: the public detection functions (include/ibnas.h, "Detection") over tasks/detect.h.
#include "api/api.h"
#include "tasks/detect.h"

ib_status ib_coco_eval(const char *gt_json, const char *dets_json, double stats[IB_COCO_NSTATS]) {
    if (!gt_json || !dets_json || !stats) return ib_fail(IB_ERR_ARG, "ib_coco_eval: gt_json, dets_json and stats are required");
    return ib_coco_evaluate_files(gt_json, dets_json, stats);
}

const char *ib_coco_stat_name(int i) { return i >= 0 && i < IB_COCO_STATS ? ib_coco_stat_names[i] : NULL; }
