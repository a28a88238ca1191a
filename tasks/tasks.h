// tasks: what a network is trained and scored for. Today classification: the training loop (progress,
// CSV log, a checkpoint every epoch, exact resume, clean stop on Ctrl-C) and top-1/top-5 evaluation.
// Detection (SSDLite, COCO mAP) and segmentation (DeepLabv3+-lite, mIoU) come next, on the same loop.
#ifndef IB_TASKS_H
#define IB_TASKS_H

#include "data/loader.h"
#include "layers/layers.h"
#include "optim/optim.h"

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
    const char *log;          // CSV log path (default: OUT with .csv appended)
    int progress;             // progress bar on stderr
    long max_steps;           // stop after this many steps in total (0: no limit; for tests)
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

#endif
