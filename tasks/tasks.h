// tasks: what a network is trained and scored for. Here classification (the training loop: progress, CSV
// log, a checkpoint every epoch, exact resume, clean stop on Ctrl-C; top-1/top-5) and the pieces every
// loop shares; detection (SSDLite, COCO mAP) in tasks/detect.h, segmentation (DeepLabv3+-lite, mIoU) in
// tasks/segment.h. The four loops (classify, supernet, detect, segment) still repeat their skeleton.
#ifndef IB_TASKS_H
#define IB_TASKS_H

#include "data/loader.h"
#include "layers/layers.h"
#include "optim/optim.h"
#include "search/search.h"

#include <signal.h>

// ---------------------------------------------------------------------------------------------
// Evaluation

typedef struct ib_cls_metrics {
    int64_t images;
    double top1, top5;        // fractions
    double loss;              // mean cross-entropy (no smoothing)
    int n_classes;
    int64_t *per_class_total, *per_class_correct;   // n_classes each when asked for, else NULL
} ib_cls_metrics;
void ib_cls_metrics_free(ib_cls_metrics *m);

typedef struct ib_eval_cfg {
    int res;                  // images are resized (centre crop keeps the aspect) to res x res
    int batch;
    int workers;
    int per_class;
    float mean[3], std[3];    // normalisation, 0..255 units (ImageNet's by default)
    int progress;             // 1: a progress line on stderr
    ib_ctx *ctx;              // a context to run in (reset every batch; left reset), e.g. the training
                              // loop's, whose arena then serves both; NULL: a context of its own
} ib_eval_cfg;
void ib_eval_cfg_default(ib_eval_cfg *c);
// Eval mode (BN running statistics, no dropout, nothing recorded).
ib_status ib_eval_classify(ib_net *net, ib_dataset *ds, const ib_eval_cfg *cfg, ib_cls_metrics *m);

// ---------------------------------------------------------------------------------------------
// Training

typedef enum { IB_AUG_NONE = 0, IB_AUG_PADCROP, IB_AUG_RRC } ib_aug_kind;

typedef struct ib_train_cfg {
    const char *arch;         // "mobilenetv2", "mobilenetv2:0.5" or FILE.arch.json
    const char *data, *val;   // dataset paths or packs (val may be NULL: no per-epoch evaluation)
    ib_ds_format data_format; // IB_DS_AUTO by default
    int classes;              // 0: the training set's class count
    int epochs, batch, res;
    float lr;
    ib_optim_cfg optim;
    ib_lr_kind schedule;
    float warmup_epochs;      // linear warm-up length in epochs (may be fractional)
    float step_gamma;         // step schedule: factor per decay
    float step_epochs;        // step schedule: epochs between decays
    float label_smoothing;
    float ema;                // 0: off; else the EMA decay (evaluation then uses the EMA weights)
    float clip;               // gradient clipping max norm (0: off)
    ib_aug_kind aug;
    int pad;                  // IB_AUG_PADCROP padding
    float mean[3], std[3];
    uint64_t seed;
    int threads, workers;
    const char *out;          // checkpoint path, rewritten every epoch
    const char *resume;       // checkpoint to resume from (exactly: same numbers as an uninterrupted run)
    const char *init;         // a checkpoint whose network and weights training starts from (fine-tuning an
                              // extracted subnet); arch is then ignored. NULL: fresh weights
    const char *log;          // CSV log path (default: OUT with .csv appended)
    int progress;             // progress bar on stderr
    long max_steps;           // stop after this many steps in total (0: no limit; for tests)
    int sync_bn;              // data parallelism: batchnorm over every rank's share of the batch (ib_dp)
} ib_train_cfg;
void ib_train_cfg_default(ib_train_cfg *c);

typedef struct ib_train_result {
    int epochs_done;
    long steps;
    double last_loss;         // mean training loss of the last epoch
    double val_top1, val_top5;   // of the last evaluation (-1 without --val)
    double wall_s;
    double img_per_s;
    int interrupted;          // stopped by Ctrl-C (the checkpoint holds the state to resume)
} ib_train_result;

// Runs the whole loop. Installs a SIGINT handler for its duration: the first Ctrl-C finishes the
// step, saves, and returns IB_ERR_INTERRUPTED with res->interrupted set.
ib_status ib_train_classify(const ib_train_cfg *cfg, ib_train_result *res);

// ---------------------------------------------------------------------------------------------
// Pieces the training loops share (classify.c's loop, the supernet's).

// "\r<what> [=====>    ] done/total <extra> ETA 1m02s" on stderr; done0: where this timing started. When stderr
// is not a terminal only the bar at done == total is printed (no carriage return): a line per epoch or stage.
void ib_progress_line(const char *what, int64_t done, int64_t done0, int64_t total, double t0, const char *extra);
// Resuming: drops the log's rows of epochs after epochs_done (rewritten through PATH.tmp).
ib_status ib_log_trim(const char *path, int64_t epochs_done);
// Opens a dataset that must have class labels.
ib_status ib_open_labelled(ib_dataset **ds, const char *path, ib_ds_format fmt, const char *split);
// Ctrl-C: the handler sets a flag that the loop reads between steps; restore `old` with sigaction.
void ib_sigint_catch(struct sigaction *old);
int ib_sigint_seen(void);

// The training loader (shuffled, augmented as cfg says, full batches only) and the LR schedule over its
// steps; errors for data that makes no batch and a warm-up covering the whole run.
ib_status ib_train_loader_open(const ib_train_cfg *cfg, ib_dataset *train, ib_loader **loader, long *steps_per_epoch,
                               ib_schedule *schedule);
// The same over loader options a task prepared (segmentation: masks, its own augmentation); batch, shuffle,
// drop_last, workers and seed should be cfg's, as ib_train_loader_open sets them.
ib_status ib_train_loader_open_with(const ib_train_cfg *cfg, ib_dataset *train, const ib_loader_opts *lo,
                                    ib_loader **loader, long *steps_per_epoch, ib_schedule *schedule);

// ---------------------------------------------------------------------------------------------
// Data parallelism (tasks/data_parallel.c, docs/SCALE.md): a loop run by every rank of an MPI job
// (ib_dist_size() > 1) trains on its share of each global batch (ib_train_loader_open_with shards the
// loader: rank r takes the r-th contiguous part, so the data and its augmentation do not depend on the rank
// count), sums the gradients over the ranks with one allreduce per step and takes the same optimizer step
// everywhere; rank 0 alone writes checkpoints, the log and progress. In a one-rank run every call is a no-op.
typedef struct ib_dp {
    int rank, size;
    int sync_bn;              // cfg->sync_bn in a job of more than one rank: set ctx->sync_bn for the steps
    float *pack;              // the gradients of more than one block, packed for their one allreduce
    int64_t cap;
} ib_dp;
// Checks the global batch splits across the ranks (the message names both numbers).
ib_status ib_dp_begin(ib_dp *dp, const ib_train_cfg *cfg);
void ib_dp_end(ib_dp *dp);
// Every rank takes rank 0's parameters and buffers, and its optimizer and EMA state (both may be NULL):
// identical at the start, whether fresh, fine-tuned or resumed.
void ib_dp_bcast(const ib_dp *dp, ib_params *ps, ib_optim *opt, ib_ema *ema);
// A loss that is a sum over this rank's share divided by max(weight, min_weight), a count of the share's own
// (segmentation: its labelled pixels, or their class weights; detection: its matched anchors, at least 1):
// backward starts from this seed instead of 1, so the gradients are those of the sum, on the same scale on
// every rank (synchronised batchnorm's backward adds the ranks' output gradients). 1 on one rank or with
// min_weight 0 (a mean over the same number of images on every rank).
double ib_dp_seed(const ib_dp *dp, double weight, double min_weight);
// After backward: the gradients of ps (and of head, NULL: none) become the whole batch's, in one allreduce
// with *loss_sum (this rank's loss times its images), *images and *stop (this rank wants to stop: Ctrl-C),
// which come back as the sums and any rank's stop. min_weight 0: the mean over the ranks (each rank's loss
// is the mean over its share of the same size, so that is the whole batch's gradient); min_weight > 0 (the
// same on every rank): backward was seeded by ib_dp_seed(weight, min_weight), and the ranks' sums are divided
// by max(sum of weights, min_weight), what one process divides the whole batch's sum by.
ib_status ib_dp_step(ib_dp *dp, ib_params *ps, ib_params *head, double weight, double min_weight, double *loss_sum,
                     int64_t *images, int *stop);
// Rank 0 writes (s: its save's result), the others learn the result; a failure stops every rank.
ib_status ib_dp_saved(const ib_dp *dp, ib_status s);

// What a checkpoint carries under /train besides the weights, so a run resumes exactly.
typedef struct ib_train_state {
    ib_optim *opt;
    ib_ema *ema;                 // NULL: none
    ib_rng *dropout_rng;
    int64_t epoch, batch_in_epoch, step;
    double epoch_loss;
    int64_t epoch_images;
    uint64_t seed;
    const ib_train_cfg *cfg;     // the run's settings: saved with the state, and a resume must share them
    const char *saved;           // the last checkpoint this run wrote or resumed from (NULL: none yet)
    int64_t saved_step;
} ib_train_state;
// Save writes the state and the settings a resume must keep (--batch, --data, --lr, --epochs, the
// optimizer); load refuses a checkpoint whose seed or settings differ from t->cfg's, naming the first.
ib_status ib_train_state_save(ib_h5 *f, void *user);   // user: ib_train_state*
ib_status ib_train_state_load(ib_h5 *f, ib_train_state *t);
ib_status ib_train_state_resume(const char *path, ib_train_state *t);   // opens the checkpoint and loads
// IB_OK for a finite loss; else the error that stops the run, naming the step and the last good checkpoint.
ib_status ib_train_loss_check(const ib_train_state *t, float loss);
// Every checkpoint save goes through this: s is the save's result. On success the state becomes the last
// good one; a failed save (a full disk) stops the run with the save's error and which file still holds the
// last complete state (the write went to OUT.tmp, so OUT is as it was).
ib_status ib_train_saved(ib_train_state *t, ib_status s);
// The checks every training verb makes before it loads anything: an output is named and can be written.
ib_status ib_train_out_check(const char *out, const char *what);
// The training data's class names on the network, so its checkpoints carry them (none when the data has
// no name for one of the classes).
ib_status ib_train_class_names(ib_net *net, const ib_dataset *ds, int classes);
// Once the network and the optimizer are built, before the first step: a checkpoint of at least `bytes`
// (ib_train_ckpt_bytes: every float of the weights, buffers, optimizer and EMA state) fits the file size
// limit (ulimit -f) and the free space of OUT's folder (a save writes OUT.tmp beside OUT); else the error
// names OUT, both sizes and says nothing was trained. A file system that reports no size passes.
ib_status ib_train_room_check(const char *out, int64_t bytes);
int64_t ib_train_ckpt_bytes(const ib_params *ps, ib_optim *opt, ib_ema *ema);
// The CSV log (cfg->log, else OUT.csv): a new file with `header` for a fresh run; when resuming, the rows
// of epochs after epochs_done are dropped and rows are appended.
ib_status ib_train_log_open(const ib_train_cfg *cfg, int64_t epochs_done, const char *header, FILE **log);
// The epoch's row is handed to the system (or the run stops with IB_ERR_IO naming the log and the reason).
ib_status ib_train_log_flush(const ib_train_cfg *cfg, FILE *log);

// ---------------------------------------------------------------------------------------------
// Supernets for classification (tasks/supernet.c): training with path sampling, and scoring a path.

typedef struct ib_sn_eval_cfg {
    int res;                  // evaluation and calibration resolution (0: the space's input)
    int batch, workers;       // evaluation batch (100), loader threads (2)
    int calib_batches;        // BN recalibration: this many batches of calib (20)
    int calib_batch;          // of this size (64)
    uint64_t calib_seed;      // which calibration images (a seeded shuffle): the same seed, the same numbers
    int progress;
    ib_ctx *ctx;              // a context to run in (NULL: one of its own)
} ib_sn_eval_cfg;
void ib_sn_eval_cfg_default(ib_sn_eval_cfg *c);
// Recalibrates the BN statistics of the path `choice` on calib (centre-cropped, unaugmented training
// images: running mean and variance become the exact averages over those batches) and writes them into
// the supernet's buffers; then evaluates the path on eval (top-1 / top-5), as ib_eval_classify does an
// extracted network. eval NULL: recalibration only.
ib_status ib_supernet_eval_classify(ib_supernet *sn, const int *choice, ib_dataset *calib, ib_dataset *eval,
                                    const ib_sn_eval_cfg *cfg, ib_cls_metrics *m);

// What a supernet is trained for and how a path of it is scored, when that is not classification (the
// loop's own cross-entropy and top-1): a head shared by every path, its loss and its metric. Detection
// (tasks/detect_train.c: an SSDLite head, AP50) is one; segmentation (tasks/seg_supernet.c: a DeepLabv3+-lite
// or BiFPN head, mIoU) another. The supernet's file carries the head (attribute "task" and the head's own attributes).
typedef struct ib_sn_task ib_sn_task;
// What a task's evaluate reports of a path: its score, two more, and (slot IB_SN_LOSS) its training loss.
enum { IB_SN_LOSS = 3, IB_SN_METRICS = 4 };
struct ib_sn_task {
    const char *name;              // "detect", "segment"
    const char *metrics;           // the names of one path's three metrics ("AP50,AP,AP75", "mIoU,pixel_acc,loss")
    // a training or validation dataset with what the task needs (boxes, masks)
    ib_status (*open)(ib_sn_task *t, ib_dataset **ds, const char *path, ib_ds_format fmt, const char *split);
    // the head over sn's paths: fresh (from c->seed), or the one in `from` (a supernet file this task wrote;
    // its optimizer state too when c is given). c NULL: scoring only (no optimizer).
    ib_status (*attach)(ib_sn_task *t, const ib_supernet *sn, const ib_train_cfg *c, int classes, const char *from);
    ib_status (*loader)(ib_sn_task *t, const ib_train_cfg *c, ib_dataset *train, ib_loader **l, long *spe, ib_schedule *sch);
    // one path's loss on a batch, recorded for backward (gradients into the path's views and the head): a sum
    // over the batch divided by max(*weight, min_weight), *weight depending on the batch only (detection: the
    // matched anchors, at least 1; segmentation: the labelled pixels), which weighs a rank's share (ib_dp_step)
    ib_status (*loss)(ib_sn_task *t, ib_ctx *ctx, ib_net *path, const ib_batch *b, ib_tensor **loss, double *weight);
    // the part of a path that loss runs: its blocks (arch.n_blocks of them) and whether the head conv (has_head);
    // the step updates those weights alone (NULL: every block and the head conv; never the classifier)
    ib_net (*ran)(ib_sn_task *t, const ib_net *path);
    double min_weight;
    void (*zero_grad)(ib_sn_task *t);
    void (*step)(ib_sn_task *t, float lr, float clip);
    ib_status (*save)(ib_sn_task *t, ib_h5 *f);   // the head, its settings and optimizer state
    // a path (BN recalibrated) on eval: m[0] the score (higher is better), m[1], m[2] two more for the log,
    // m[IB_SN_LOSS] the task's training loss on eval (lower is better; the search's --metric loss)
    ib_status (*evaluate)(ib_sn_task *t, ib_net *path, ib_dataset *eval, const ib_sn_eval_cfg *cfg,
                          double m[IB_SN_METRICS]);
    // the head's BN statistics for one path (its own BN recalibrated already): ib_sn_recalibrate_head over
    // the head's BNs, on the batches of rc (the backbone's recalibration's)
    ib_status (*recalibrate)(ib_sn_task *t, ib_net *path, ib_dataset *calib, const ib_recal_cfg *rc);
    void (*free)(ib_sn_task *t);
    // the task's network on a path's arch as latency tables see it (ib_seg_lut_task, ib_det_lut_task), once
    // attached; NULL: the classifier's
    ib_status (*lut_task)(ib_sn_task *t, const ib_arch *a, int res, struct ib_lut_task *out);
    // one end-to-end latency of the task's network on a path's arch as it deploys (`train --task`'s: a detector
    // taps the expansion where it can), random weights, timed as tm says (ib_det_time_whole, ib_seg_time_whole);
    // NULL: the classifier's
    ib_status (*time_task)(ib_sn_task *t, const ib_arch *a, int res, const struct ib_lut_timing *tm, double *ms);
    // a checkpoint of the task's network at path (detection or segmentation, as train --task writes it): the
    // backbone `net` (an extracted path) and the head as attached, its settings; res the input size it
    // was scored at. train --task ... --init and eval load it.
    ib_status (*save_net)(ib_sn_task *t, const ib_net *net, int res, const char *path);
    ib_params *head;               // the head's tensors (parameters, BN running statistics), once attached
    void *state;
};
// The head's BN recalibration: path + head run forward in training mode over the calibration batches of rc,
// as ib_recalibrate_bn runs the path (the same images), the head's BNs (head->momentum) taking the exact
// average of their batch statistics while the path's BNs keep the statistics their recalibration wrote
// (momentum 0). Together that is Once-for-All's recalibration of path and head at once. head->forward runs
// path + head on a batch.
ib_status ib_sn_recalibrate_head(ib_net *path, const ib_recal_pass *head, ib_dataset *calib, const ib_recal_cfg *rc);
// What every task's step and save do with its head (t->head) and the head's optimizer: clip the head's
// gradient (clip > 0) and step it; write the head's tensors, the attributes "task" (t->name) and t->name
// holding `settings` (the head's JSON), and the optimizer's state under train/optim_head (opt NULL: none).
void ib_sn_head_step(ib_sn_task *t, ib_optim *opt, float lr, float clip);
ib_status ib_sn_head_save(ib_sn_task *t, ib_h5 *f, const ib_optim *opt, char *settings);
// The task a supernet file was trained for: *t NULL for classification (no "task" attribute), else the task
// attached to the file's head (for scoring: no optimizer). Free with t->free(t).
ib_status ib_sn_task_open(ib_sn_task **t, const ib_supernet *sn, const char *path);
// Recalibrates the path's BN on calib as ib_supernet_eval_classify does, then the head's on the same batches
// with that path's features (t->recalibrate), then t->evaluate on eval (NULL: recalibration only). The head
// is shared: its statistics are this path's until the next path is scored, as the backbone's BN buffers are.
ib_status ib_supernet_eval_task(ib_supernet *sn, ib_sn_task *t, const int *choice, ib_dataset *calib, ib_dataset *eval,
                                const ib_sn_eval_cfg *cfg, double m[IB_SN_METRICS]);

// Supernet training: the classification loop's data, optimiser, schedule, progress, log, checkpoints,
// Ctrl-C and exact resume (base; its arch and init are unused), over paths of the space's supernet.
enum { IB_SN_SANDWICH = 0, IB_SN_UNIFORM, IB_SN_FAIR };
const char *ib_sn_sampling_name(int sampling);   // "sandwich", "uniform", "fair"
enum { IB_SN_MEAN = 0, IB_SN_SUM };
const char *ib_sn_path_grads_name(int rule);     // "mean", "sum"
typedef struct ib_sn_train_cfg {
    ib_train_cfg base;
    const char *space;        // the space file (not needed to resume)
    int sampling;             // IB_SN_FAIR (default): ib_space_fair_paths paths a step covering every op type of
                              // every layer once (FairNAS), all from the labels; IB_SN_SANDWICH: the largest, the
                              // smallest and n_random random paths each step, the others distilled from the
                              // largest's soft targets; IB_SN_UNIFORM: one random path a step
    int n_random;             // 2
    float op_ramp;            // uniform and sandwich's random paths: 0 (default) op types drawn per layer independently;
                              // > 0: chained along the path (ib_space_sample_chained), the switch probability rising
                              // linearly from 0 at step 0 to 1 after op_ramp epochs
    int path_grads;           // fair sampling: IB_SN_SUM (FairNAS) or IB_SN_MEAN (each weight's mean gradient over the
                              // paths that ran it); -1 (default): sum for a new supernet, the file's on resume
    float kd;                 // weight of the distillation loss, 1
    double holdout;           // fraction of the training data left out of training, for scoring subnets (0.1)
    int calib_batches;        // per-epoch evaluation of the largest and smallest paths: recalibration batches (10)
    ib_sn_task *task;         // NULL: classification; else the task's head, loss and metric (every sampling; under
                              // sandwich every path learns from the labels: no distillation, kd unused)
} ib_sn_train_cfg;
void ib_sn_train_cfg_default(ib_sn_train_cfg *c);

typedef struct ib_sn_train_result {
    ib_train_result base;     // val_top1 / val_top5: the largest path's
    double smallest_top1;     // of the last evaluation (-1 without val); with a task: its score (m[0])
} ib_sn_train_result;
ib_status ib_train_supernet_classify(const ib_sn_train_cfg *cfg, ib_sn_train_result *res);
// The calibration data a supernet records: its training data less the held-out part (*base must be
// closed after *calib), opened as t's (NULL: classification's, with labels). NULL *base when the supernet
// does not record its data.
ib_status ib_supernet_calib_data(const ib_supernet *sn, ib_sn_task *t, ib_dataset **base, ib_dataset **calib);

#endif
