// tasks/segment.h: semantic segmentation (docs/SEGMENTATION.md). A DeepLabv3+-lite head or a BiFPN head
// (tasks/seg_bifpn.c) on a backbone of the inverted-bottleneck family, pixel-wise cross-entropy (ignore
// index, optional class weights), the confusion matrix with per-class IoU, mIoU and pixel accuracy, the fast
// low-resolution argmax, and the training loop (the classification loop's progress, CSV log, checkpoints,
// Ctrl-C and exact resume).
//
// A segmentation network is an ib_net whose arch has task "segment" (the backbone cut after its last
// block at the head's high stride: no head conv, no classifier) plus an ib_seg_head whose tensors are
// registered into the same parameter block (net->ps, names "seg.*"), so the optimizer, the EMA and the
// checkpoint see one block. The checkpoint is a classification checkpoint's layout with the root
// attribute seg_head (JSON, docs/FORMATS.md): ib_ckpt_load reads its backbone alone, ib_seg_load the whole.
#ifndef IB_SEGMENT_H
#define IB_SEGMENT_H

#include "search/search.h"
#include "tasks/tasks.h"

// ---------------------------------------------------------------------------------------------
// The head

typedef struct ib_seg_head_cfg {
    char kind[16];        // "deeplab" or "bifpn"
    int high_stride;      // deeplab: the ASPP's input; bifpn: the coarsest level fused. The backbone's last
                          // block at this stride, 16 (or 32)
    int low_stride;       // deeplab: the decoder's low-level feature; bifpn: the finest level, where the
                          // logits are. 4 (or 8)
    int aspp;             // deeplab: width of every ASPP branch and of its projection, 64
    int low;              // deeplab: the low-level feature reduced (1x1) to this width, 24
    int decoder;          // deeplab: the decoder's separable conv width, 64
    int rates[2];         // deeplab: dilations of the two depthwise-separable ASPP branches, {2, 4}
    int width;            // bifpn: channels of every level, 64
    int repeats;          // bifpn: BiFPN layers (top-down and bottom-up passes) stacked, 2
    int in_h, in_w;       // the input size trained at (evaluation's default), 0: the arch's input
} ib_seg_head_cfg;
void ib_seg_head_cfg_default(ib_seg_head_cfg *c);
char *ib_seg_head_cfg_to_json(const ib_seg_head_cfg *c);   // malloc'd
ib_status ib_seg_head_cfg_parse(ib_seg_head_cfg *c, const char *json, const char *source);

// BiFPN (EfficientDet): levels at strides low_stride, 2 low_stride, ..., high_stride, finest first.
#define IB_SEG_BIFPN_MAX_LEVELS 5
#define IB_SEG_BIFPN_MAX_REPEATS 8
#define IB_SEG_FUSE_EPS 1e-4f   // EfficientDet's epsilon in relu(w_i) / (eps + sum_j relu(w_j)) (ib_weighted_sum)
typedef struct ib_seg_bifpn_node {
    ib_tensor *fuse;                  // fast normalised fusion weights of its 2 or 3 inputs (ib_weighted_sum)
    ib_cba dw, pw;                    // then a depthwise-separable 3x3 (BN + ReLU after each conv)
} ib_seg_bifpn_node;
typedef struct ib_seg_bifpn_layer {
    ib_seg_bifpn_node td[IB_SEG_BIFPN_MAX_LEVELS];   // top-down nodes of levels 0..L-2 (td[0] is level 0's output)
    ib_seg_bifpn_node up[IB_SEG_BIFPN_MAX_LEVELS];   // bottom-up nodes of levels 1..L-1 (up[0] unused)
} ib_seg_bifpn_layer;

typedef struct ib_seg_head {
    ib_seg_head_cfg cfg;
    int classes;
    int high_block, low_block;        // the backbone blocks tapped (-1: the stem)
    // deeplab
    ib_cba aspp_1x1;                  // ASPP: 1x1 branch,
    ib_cba aspp_dw[2], aspp_pw[2];    //   two dilated depthwise-separable branches,
    ib_cba aspp_pool;                 //   image pooling (global average, 1x1, broadcast back),
    ib_cba aspp_proj;                 //   1x1 projection of the concatenation
    ib_cba low_reduce;                // decoder: 1x1 on the low-level feature,
    ib_cba dec_dw, dec_pw;            //   a depthwise-separable 3x3 on [upsampled ASPP, reduced low]
    // bifpn
    int levels;                       // L, 2..IB_SEG_BIFPN_MAX_LEVELS
    int level_block[IB_SEG_BIFPN_MAX_LEVELS];       // the backbone block tapped per level, finest first
    ib_cba lateral[IB_SEG_BIFPN_MAX_LEVELS];        // 1x1 conv + BN (no activation) of each tap to `width`
    ib_seg_bifpn_layer bifpn[IB_SEG_BIFPN_MAX_REPEATS];
    ib_tensor *merge;                 // fusion weights of the last layer's L outputs (upsampled bilinearly to
                                      // level 0), the classifier's input
    // both
    ib_conv cls;                      // a 1x1 (with bias) to the class logits, at the low stride
} ib_seg_head;

// Builds net (registered, not initialised) and head from a backbone arch (any task; cut after its last
// block at cfg->high_stride, head conv and classifier dropped) for `classes` classes. IB_ERR_ARG when the
// arch has no block at the strides asked for.
ib_status ib_seg_build(ib_net *net, ib_seg_head *head, const ib_arch *backbone, int classes,
                       const ib_seg_head_cfg *cfg);
// The head alone: its tensors registered on ps (not allocated) for a backbone arch whose blocks at
// cfg's strides it taps (blocks after the high stride, a head conv and a classifier are ignored). A supernet's
// segmentation head (tasks/seg_supernet.c) is this over the largest path's arch. ib_seg_build uses it.
ib_status ib_seg_head_register(ib_seg_head *head, ib_params *ps, const ib_arch *backbone, int classes,
                               const ib_seg_head_cfg *cfg);
// Sets the momentum of every BN of the head (BN recalibration of a supernet's head, tasks/seg_supernet.c).
void ib_seg_head_set_bn_momentum(ib_seg_head *head, float m);
// x: (N, 3, H, W) -> logits (N, classes, H, W) when upsample, else at the low stride (N, classes, ~H/4, ~W/4).
ib_tensor *ib_seg_forward(ib_ctx *ctx, ib_net *net, const ib_seg_head *head, ib_tensor *x, int upsample);
// The DeepLab head alone on the backbone's features: lo (N, Cl, h4, w4) at the low stride, hi (N, Ch, h16, w16)
// at the high one -> logits upsampled to H x W, or at lo's size when H is 0.
ib_tensor *ib_seg_head_forward(ib_ctx *ctx, const ib_seg_head *head, ib_tensor *lo, ib_tensor *hi, int H, int W);
// The BiFPN head alone (tasks/seg_bifpn.c): feats[l] (N, C_l, h_l, w_l), head->levels of them finest first, each
// level half the size of the one before (rounded up) -> logits at feats[0]'s size, upsampled to H x W unless H is 0.
ib_tensor *ib_seg_bifpn_forward(ib_ctx *ctx, const ib_seg_head *head, ib_tensor *const *feats, int H, int W);
// Two depthwise-separable pieces both heads use: a 3x3 depthwise (dilated) and a 1x1, each with BN + ReLU,
// named "<prefix>.dw", "<prefix>.pw".
void ib_seg_sep_init(ib_cba *dw, ib_cba *pw, ib_params *ps, const char *prefix, int cin, int cout, int dilation);
// Registers the BiFPN head's tensors (everything but the classifier) on a backbone whose blocks at the level
// strides are head->level_block; sets head->levels. tasks/seg_bifpn.c.
ib_status ib_seg_bifpn_register(ib_seg_head *head, ib_params *ps, const ib_arch *a);

// Checkpoints: the network's tensors, its arch and the head's JSON (root attribute seg_head). extra as
// ib_ckpt_save's (training state).
ib_status ib_seg_save(const ib_net *net, const ib_seg_head *head, const char *path,
                      ib_status (*extra)(ib_h5 *f, void *user), void *user);
ib_status ib_seg_load(ib_net *net, ib_seg_head *head, const char *path);
// 1 when the checkpoint at path is a segmentation one (has seg_head); 0 otherwise or unreadable.
int ib_seg_is_checkpoint(const char *path);
// Copies every tensor of the checkpoint (classification, extracted subnet or segmentation) whose name and
// shape match one of net's (the backbone; the head too from a segmentation checkpoint). *copied (may be
// NULL) gets the count; none is an error naming the file.
ib_status ib_seg_init_from(ib_net *net, const char *path, int *copied);

// ---------------------------------------------------------------------------------------------
// Loss, prediction, metrics

// Pixel-wise softmax cross-entropy. logits: (N, C, H, W), targets: N*H*W (row-major N, H, W); pixels
// whose target is ignore_index are left out; weights (C, may be NULL: all 1) as torch's weight=: the loss
// is sum_i w[t_i] * nll_i / sum_i w[t_i]. No pixel counted: 0. A target outside 0..C-1 (not ignored) is
// an IB_ASSERT: the caller checks the data first (ib_seg_check_targets).
ib_tensor *ib_seg_cross_entropy(ib_ctx *ctx, ib_tensor *logits, const int32_t *targets, const float *weights,
                                int ignore_index);
// What ib_seg_cross_entropy divides its sum by: sum_i w[t_i] over the n targets not ignored (weights NULL: 1
// each), summed in target order. Data parallelism weighs each rank's loss by it (ib_dp_step).
double ib_seg_loss_weight(const int32_t *targets, int64_t n, const float *weights, int ignore_index);
// The min_weight of ib_dp_seed and ib_dp_step for that weight: a batch with no labelled pixel has a loss and
// gradient of 0, so any positive floor divides them alike.
#define IB_SEG_MIN_WEIGHT 1e-30
// The first target outside 0..classes-1 that is not ignore_index, as its index; -1 when none.
int64_t ib_seg_check_targets(const int32_t *t, int64_t n, int classes, int ignore_index);

// Per-pixel argmax over classes (ties: the lowest class). z: (N, C, h, w) -> out: N*h*w.
void ib_seg_argmax(const ib_tensor *z, int32_t *out);
// The fast prediction: argmax at z's resolution, the labels upsampled nearest (src = floor(dst * in / out),
// as ib_resize_nearest) to H x W. z: (N, C, h, w) -> out: N*H*W. scratch: N*h*w ints.
void ib_seg_argmax_upsample(const ib_tensor *z, int H, int W, int32_t *scratch, int32_t *out);

// conf[g * classes + p] counts pixels of ground truth g predicted p; gt == ignore_index is skipped.
// Returns the first gt index outside 0..classes-1 (not ignored), or -1 (such pixels are not counted).
int64_t ib_seg_confusion_add(int64_t *conf, int classes, const int32_t *gt, const int32_t *pred, int64_t n,
                             int ignore_index);

typedef struct ib_seg_metrics {
    int classes;
    int64_t images, pixels;   // pixels counted (ignored ones left out)
    int64_t *conf;            // classes * classes, malloc'd
    double *iou;              // classes, malloc'd: TP / (TP + FP + FN); NAN for a class absent from both
    double miou;              // the mean over classes present in the ground truth or the prediction
    double pixel_acc;         // correct / counted pixels
    double loss;              // mean cross-entropy per counted pixel (unweighted; full-resolution logits
                              // only, -1 with fast_argmax)
    double head_s, total_s;   // time in the prediction's last layers (upsampling and argmax) and in the
                              // whole forward pass plus those, summed over batches
} ib_seg_metrics;
ib_status ib_seg_metrics_alloc(ib_seg_metrics *m, int classes);
void ib_seg_metrics_finish(ib_seg_metrics *m);   // iou, miou, pixel_acc from conf
void ib_seg_metrics_free(ib_seg_metrics *m);

// Median-frequency class weights (Eigen and Fergus, SegNet): freq_c = pixels of c / pixels of the images
// where c appears; w_c = median over present classes of freq / freq_c; 0 for a class that never appears.
// Reads the masks of (at most max_images, 0: all) samples of ds. w: classes floats.
ib_status ib_seg_median_freq_weights(ib_dataset *ds, int classes, int64_t max_images, float *w);

// The class count a segmentation dataset needs: its classes, plus one when its ignore index is not that
// count (synthetic scenes: shape classes 0..5, background 6, ignore 255; CamVid: 11 classes, void 11).
int ib_seg_dataset_classes(const ib_dataset *ds);

// The metric alone on two folders of label PNGs (8-bit gray or palette: the raw values): every *.png of
// gt_dir against the file of the same name in pred_dir (same size). Ground-truth values outside
// 0..classes-1 that are not ignore_index, predictions outside 0..classes-1, a missing prediction or a size
// mismatch fail naming the file. m is allocated here (ib_seg_metrics_free); m->images counts the pairs.
ib_status ib_seg_miou_dirs(const char *gt_dir, const char *pred_dir, int classes, int ignore_index,
                           ib_seg_metrics *m);

// ---------------------------------------------------------------------------------------------
// Evaluation and training

typedef struct ib_seg_eval_cfg {
    int h, w;                 // images (and masks, nearest) are resized to h x w; 0: the head's in_h/in_w
    int batch, workers;       // 8, 2
    int fast_argmax;          // 1: argmax at the low-resolution logits, labels upsampled nearest
    float mean[3], std[3];
    int progress;
    ib_ctx *ctx;              // as ib_eval_cfg's
    const char *pred_out;     // a folder (made when missing) for each image's predicted labels, NAME.png
                              // (ib_dataset_sample_name) at h x w, palette PNGs; NULL: none
} ib_seg_eval_cfg;
void ib_seg_eval_cfg_default(ib_seg_eval_cfg *c);
ib_status ib_eval_segment_net(ib_net *net, const ib_seg_head *head, ib_dataset *ds, const ib_seg_eval_cfg *cfg,
                          ib_seg_metrics *m);

typedef struct ib_seg_train_cfg {
    ib_train_cfg base;        // data, val, out, resume, init (a backbone or segmentation checkpoint), arch, ...
                              // (label_smoothing, aug and pad are unused)
    ib_seg_head_cfg head;
    int h, w;                 // training and evaluation size; 0: base.res
    const char *aug;          // "flip" (default: resize, random flip), "scale" (scale jitter 0.5..2, random
                              // crop padded with the ignore index, flip), "none" (resize)
    const char *class_weights;// NULL or "none", "median" (median frequency from the training masks)
    int fast_argmax;          // per-epoch evaluation with the fast argmax
} ib_seg_train_cfg;
void ib_seg_train_cfg_default(ib_seg_train_cfg *c);

typedef struct ib_seg_train_result {
    ib_train_result base;     // val_top1/5 unused (-1)
    double val_miou, val_pixel_acc;   // of the last evaluation (-1 without val)
} ib_seg_train_result;
ib_status ib_train_segment(const ib_seg_train_cfg *cfg, ib_seg_train_result *res);

// ---------------------------------------------------------------------------------------------
// Latency (tasks/task_latency.c; docs/LATENCY.md "Segmenters and detectors")

// The segmenter of a backbone arch (any task) as latency tables see it: its first cut blocks (up to the last
// at the high stride) and the head's row (op deeplab or bifpn, columns in search/search.h) at res x res.
ib_status ib_seg_lut_task(const ib_arch *backbone, int classes, const ib_seg_head_cfg *cfg, int res, ib_lut_task *out);
// The head alone on random features of its taps' shapes, logits upsampled to res x res, timed as a row.
ib_status ib_seg_time_head(const ib_arch *backbone, int classes, const ib_seg_head_cfg *cfg, int res,
                           const ib_lut_timing *tm, double *ms);
// The whole segmenter (random weights, batch 1, eval mode) at res x res, timed as ib_lut_time_arch times a net.
ib_status ib_seg_time_whole(const ib_arch *backbone, int classes, const ib_seg_head_cfg *cfg, int res,
                            const ib_lut_timing *tm, double *ms);

// Pieces the segmentation loops share (ib_train_segment's, the supernet task's): a dataset that must have masks
// (the error names the file and what has them), and the training loader's options at H x W with aug "flip",
// "scale" or "none" (batch, shuffle, seed, workers, normalisation from cfg).
ib_status ib_seg_open_data(ib_dataset **ds, const char *path, ib_ds_format fmt, const char *split);
void ib_seg_loader_opts(const ib_train_cfg *cfg, int H, int W, const char *aug, ib_loader_opts *lo);

// ---------------------------------------------------------------------------------------------
// The supernet task (tasks/seg_supernet.c): one segmentation head (head's settings; classes 0: the training
// data's, ib_seg_dataset_classes) shared by every path, pixel-wise cross-entropy with the data's ignore index
// (class_weights NULL/"none" or "median"), a path scored by mIoU (m[0]), pixel accuracy and the mean pixel
// cross-entropy. The supernet's file carries the head's tensors, the root attributes task = "segment" and
// "segment" (JSON: classes, aug, class_weights and the head's settings) and its optimizer state under
// /train/optim_head.
ib_status ib_sn_task_segment(ib_sn_task **t, const ib_seg_head_cfg *head, const char *aug, const char *class_weights);

#endif
