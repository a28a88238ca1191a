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


// ---------------------------------------------------------------------------------------------
// SSDLite (detect.c). Levels: the backbone's stride-16 feature (see tap_expansion),
// its stride-32 feature (ib_net_features: after the head conv when the arch has one), then extra layers
// (1x1 conv to out/2, 3x3 depthwise stride 2, 1x1 conv to out; BN + ReLU6 after each) while the previous
// level is larger than 1x1, at most n_extra. On every level two depthwise-separable predictors (3x3
// depthwise + BN + ReLU6, then a 1x1 conv with bias): A*4 box offsets and A*(classes+1) class logits
// (class 0 is the background), A = n_ratios + 1 default boxes per location.

#define IB_SSD_MAX_RATIOS 8
#define IB_SSD_MAX_LEVELS 8
typedef struct ib_ssd_cfg {
    int classes;                   // object classes (the background is added)
    float min_scale, max_scale;    // default-box scales of the first and last level (0.2, 0.95)
    int n_ratios;
    float ratios[IB_SSD_MAX_RATIOS];   // aspect ratios w/h (1, 2, 0.5); ratio 1 also gets sqrt(s_k s_k+1)
    int n_extra;                   // extra levels at most (4)
    int extra_out[4];              // their widths (512, 256, 256, 128)
    float match_iou;               // an anchor is positive at IoU >= this with its best box (0.5)
    float neg_ratio;               // hard negatives per positive (3)
    float nms_iou;                 // per-class NMS threshold (0.6)
    float score_thr;               // detections below are dropped (0.01)
    int max_dets;                  // per image (100)
    int tap_expansion;             // 1 (default): the stride-16 feature is the expansion (1x1 conv + BN + act)
                                   // of the first stride-32 block when that is an ibn block with expand > 1, as
                                   // MobileDets; else (0, or another block) the last stride-16 block's output
    int focal;                     // 1: the classification loss is RetinaNet's sigmoid focal loss (ib_focal_loss) and
                                   // scores are sigmoids; 0 (default): softmax cross-entropy with hard negatives
    float focal_alpha, focal_gamma;   // its alpha and gamma (0.25, 2)
} ib_ssd_cfg;
void ib_ssd_cfg_default(ib_ssd_cfg *c, int classes);
// JSON text of the configuration (the checkpoint's "detect" attribute), malloc'd; and back.
char *ib_ssd_cfg_to_json(const ib_ssd_cfg *c);
ib_status ib_ssd_cfg_parse(ib_ssd_cfg *c, const char *json, const char *source);

typedef struct ib_ssd_level_mod {
    ib_cba extra[3];               // extra levels only
    ib_cba box_dw, cls_dw;
    ib_conv box_pw, cls_pw;
} ib_ssd_level_mod;

// A detector: a backbone (an ib_net; its classifier is unused) and the head, in two parameter sets.
typedef struct ib_detector {
    ib_net net;
    ib_ssd_cfg cfg;
    ib_params ps;                  // the head's parameters, named "ssd.*"
    int tap16;                     // block whose output is (or feeds) the stride-16 feature
    int tap_exp;                   // 1: the stride-16 feature is block tap16 + 1's expansion stage
    int n_levels;                  // 2 + extra levels built
    ib_ssd_level_mod lv[IB_SSD_MAX_LEVELS];
    // anchors of the last forward's level sizes (cx, cy, w, h in [0, 1]), malloc'd
    int anchor_sizes[IB_SSD_MAX_LEVELS];
    int n_anchors;
    float *anchors;
} ib_detector;

// Builds the head on `net` (taken over: the detector frees it); the head's weights are initialised from seed.
ib_status ib_detector_build(ib_detector *d, ib_net *net, const ib_ssd_cfg *cfg, int res, uint64_t seed);
// The head alone, for backbones of arch a's shape that the caller sets into d->net before each forward (a
// supernet's paths: their stride-16 and stride-32 widths must be a's; tap_expansion then must be 0, since an
// expansion's width varies by path). ib_detector_free leaves a d->net with blocks NULL alone.
ib_status ib_detector_build_head(ib_detector *d, const ib_arch *a, const ib_ssd_cfg *cfg, int res, uint64_t seed);
void ib_detector_free(ib_detector *d);
int ib_detector_anchors_per_loc(const ib_detector *d);
// Sets the momentum of every BN of the head (not d->net's): BN recalibration of a supernet's head.
void ib_detector_set_bn_momentum(ib_detector *d, float m);

// x: (N, 3, H, W) -> loc (N, A, 4, 1) and conf (N, A, classes + 1, 1); the anchors are (re)made for the
// level sizes met.
void ib_detector_forward(ib_ctx *ctx, ib_detector *d, ib_tensor *x, ib_tensor **loc, ib_tensor **conf);
// The head alone: t16 the output of block tap16 (the stride-16 tap before exp, the expansion stage run on it
// when the detector taps an expansion; NULL: none), h the stride-32 feature -> loc and conf as above.
void ib_detector_head_forward(ib_ctx *ctx, ib_detector *d, ib_tensor *t16, ib_tensor *h, const ib_cba *exp,
                              ib_tensor **loc, ib_tensor **conf);

// Where SSDLite taps a backbone of arch a at res x res (what ib_detector_build builds): block tap16 (-1: the
// stem) of width c16_in, its stride-16 feature of width c16 (the next block's expansion when tap_exp), the
// stride-32 feature of width c32 (after the head conv when the arch has one) and size32 x size32, and the
// extra levels built. IB_ERR_ARG when the arch cannot carry the head.
typedef struct ib_ssd_taps_info {
    int tap16, tap_exp, c16_in, c16, c32, size32, n_extra;
} ib_ssd_taps_info;
ib_status ib_ssd_taps(const ib_arch *a, const ib_ssd_cfg *cfg, int res, ib_ssd_taps_info *t);

// Latency (tasks/task_latency.c; docs/LATENCY.md "Segmenters and detectors"): the detector of arch a as latency
// tables see it (every block, the head conv as a "head" row with cout 0, the SSDLite row "ssdlite"), its head
// alone on random features timed as a row, and the whole detector timed as ib_lut_time_arch times a net.
struct ib_lut_task;
struct ib_lut_timing;
ib_status ib_det_lut_task(const ib_arch *a, const ib_ssd_cfg *cfg, int res, struct ib_lut_task *out);
ib_status ib_det_time_head(const ib_arch *a, const ib_ssd_cfg *cfg, int res, const struct ib_lut_timing *tm, double *ms);
ib_status ib_det_time_whole(const ib_arch *a, const ib_ssd_cfg *cfg, int res, const struct ib_lut_timing *tm, double *ms);

// Default boxes for level sizes sizes[0..n) (square maps): per location, per ratio r (s sqrt r, s / sqrt r),
// then (s', s') with s' = sqrt(s_k s_k+1) (s_n = 1); centres ((j + 0.5) / f, (i + 0.5) / f). Returns the count.
int ib_ssd_anchors(const ib_ssd_cfg *c, int n, const int *sizes, float *out /* count x 4 */);

// Matching and encoding. gt: n boxes (x0, y0, x1, y1 in [0, 1]) with labels 0..classes-1. Every anchor's
// best box at IoU >= match_iou is its target, and each box's best anchor is forced to it; labels[a] is
// that box's label + 1 (0: background); loc_t[a] its encoding with variances (0.1, 0.2). Returns the
// number of positives.
int ib_ssd_match(const ib_ssd_cfg *c, const float *anchors, int n_anchors, const float *gt, const int32_t *gt_labels,
                 int n_gt, int32_t *labels, float *loc_t);
void ib_ssd_encode(const float *anchor, const float *box, float *out);
void ib_ssd_decode(const float *anchor, const float *code, float *box);

// The multibox loss: (smooth-L1 over positives' offsets + softmax cross-entropy over positives and the
// hardest negatives, neg_ratio per positive, ranked by background loss per image) / positives in the
// batch (at least 1). labels: N*A, loc_t: N*A*4. Gradients into loc and conf.
ib_tensor *ib_ssd_loss(ib_ctx *ctx, ib_tensor *loc, ib_tensor *conf, const int32_t *labels, const float *loc_t,
                       float neg_ratio);

// The multibox loss with RetinaNet's sigmoid focal loss in place of the mined cross-entropy: (smooth-L1 over
// positives' offsets + sum over every anchor and every object class c = 1..K-1 of
// FL(z_ac, [labels[a] == c]) ) / positives in the batch (at least 1), with p = sigmoid(z),
// FL(z, 1) = -alpha (1 - p)^gamma log p and FL(z, 0) = -(1 - alpha) p^gamma log(1 - p)
// (torchvision.ops.sigmoid_focal_loss). conf's column 0 (the softmax background) is unused: no gradient.
ib_tensor *ib_focal_loss(ib_ctx *ctx, ib_tensor *loc, ib_tensor *conf, const int32_t *labels, const float *loc_t,
                         float alpha, float gamma);
// The focal classifier's logits start at this bias, so every class starts at probability 0.01 (RetinaNet).
#define IB_FOCAL_PRIOR_BIAS (-4.59511985f)   // -log((1 - 0.01) / 0.01)

// Post-processing of one image: softmax (sigmoids of the object classes when c->focal), per class the boxes above score_thr (at most 200 by score),
// greedy NMS at nms_iou, then the best max_dets over classes. Boxes in [0, 1]. Returns the count written
// (boxes: 4 each x0 y0 x1 y1, scores, labels 0..classes-1); room for cfg->max_dets.
int ib_ssd_postprocess(const ib_ssd_cfg *c, const float *anchors, int n_anchors, const float *loc, const float *conf,
                       float *boxes, float *scores, int32_t *labels);

// Checkpoints: the backbone as ib_ckpt_save writes it, plus /params/ssd.* and /buffers/ssd.*, and root
// attributes task = "detect" and detect (the cfg as JSON). extra as ib_ckpt_save's.
ib_status ib_detector_save(const ib_detector *d, const char *path, ib_status (*extra)(ib_h5 *f, void *user), void *user);
// A detection checkpoint (res: the input size the anchors are made for, 0: the arch's input).
ib_status ib_detector_load(ib_detector *d, const char *path);
// The checkpoint's task attribute ("classify" when it has none), into buf.
ib_status ib_ckpt_task(const char *path, char *buf, size_t n);

// ---------------------------------------------------------------------------------------------
// Evaluation and training (detect_train.c)

typedef struct ib_det_eval_cfg {
    int res, batch, workers, progress;
    float mean[3], std[3];
    const char *dets_out;          // the detections as COCO results JSON (NULL: none)
    ib_ctx *ctx;                   // as ib_eval_cfg's
    double *loss;                  // when set: the training loss on these images (the multibox or focal loss of
                                   // each batch, weighted by its matched anchors as a batch's is normalised)
} ib_det_eval_cfg;
void ib_det_eval_cfg_default(ib_det_eval_cfg *c);
// Images are resized whole to res x res; detections are mapped back to the image's own pixels and scored
// against its boxes (area = box area, iscrowd as the source says) with ib_coco_evaluate.
ib_status ib_detector_eval(ib_detector *d, ib_dataset *ds, const ib_det_eval_cfg *cfg, double stats[IB_COCO_STATS],
                         int64_t *images);

typedef struct ib_det_train_cfg {
    ib_train_cfg base;             // arch / init / data / val / out / resume ...; aug: NONE or anything else
                                   // (random horizontal flip + SSD crop when base.aug == IB_AUG_RRC)
    ib_ssd_cfg ssd;                // classes 0: the data's
} ib_det_train_cfg;
typedef struct ib_det_train_result {
    ib_train_result base;          // val_top1: AP50 of the last evaluation, val_top5: AP (-1 without val);
                                   // last_loss after a stop (max_steps, Ctrl-C): the stopped epoch's mean so far
    double stats[IB_COCO_STATS];
} ib_det_train_result;
ib_status ib_train_detect(const ib_det_train_cfg *cfg, ib_det_train_result *res);

// The supernet task of detection (ib_sn_task): an SSDLite head shared by every path, on each path's stride-16
// block output (tap_expansion is forced to 0: an expansion's width varies by path) and stride-32 feature; the
// loss of ssd (softmax with hard negatives, or focal); the score AP50 (then AP, AP75). classes 0: the data's.
ib_status ib_sn_task_detect(ib_sn_task **t, const ib_ssd_cfg *ssd);

#endif
