// tasks/detect: object detection. The COCO bbox evaluator (coco_eval.c, pycocotools' COCOeval to 1e-4),
// the SSDLite head with SSD default boxes, matching, box encoding, the multibox loss with hard negative
// mining, decoding and per-class NMS (detect.c), and the detection training loop (detect_train.c).
#ifndef IB_DETECT_H
#define IB_DETECT_H

#include "tasks/tasks.h"

// ---------------------------------------------------------------------------------------------
// COCO bbox evaluation (coco_eval.c). Boxes are COCO's [x, y, w, h] in pixels.

typedef struct ib_coco_gt {
    int64_t id, image_id, category_id;
    double bbox[4];
    double area;              // the annotation's "area" (the area ranges use it, not w*h)
    int iscrowd;
} ib_coco_gt;

typedef struct ib_coco_det {
    int64_t image_id, category_id;
    double bbox[4];
    double score;
} ib_coco_det;

// The twelve numbers in COCOeval.stats order: AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl.
// -1 where the reference gives -1 (no ground truth in that area range).
enum { IB_COCO_STATS = 12 };
extern const char *const ib_coco_stat_names[IB_COCO_STATS];

// Images and categories are the ground truth's (as COCOeval's params); detections of an image not among
// them are an error (pycocotools asserts), of a category not among them are left out. gt and dt in file
// order (ties in score keep it). Detection ids are 1.. in dt order, as loadRes gives them.
ib_status ib_coco_evaluate(const int64_t *img_ids, int64_t n_img, const int64_t *cat_ids, int64_t n_cat,
                           const ib_coco_gt *gt, int64_t n_gt, const ib_coco_det *dt, int64_t n_dt,
                           double stats[IB_COCO_STATS]);
// The same from files: GT.json (COCO instances: images, categories, annotations) and DETS.json (a list of
// {"image_id","category_id","bbox","score"}).
ib_status ib_coco_evaluate_files(const char *gt_json, const char *dets_json, double stats[IB_COCO_STATS]);

#endif
