// The training flags `ibnas train` and `ibnas supernet train` share, over the public ib_train_opts.
#include "cli/cli.h"

#include <string.h>

int cli_train_flags(cli_flag *f, ib_train_opts *o, cli_train_extra *x) {
    memset(x, 0, sizeof *x);
    const cli_flag flags[] = {
        {"--data", F_STR, &o->data, "training data: a pack (.h5), an image folder, a Tiny ImageNet root, ..."},
        {"--val", F_STR, &o->val, "validation data, evaluated after every epoch (split 'val' of a root)"},
        {"--classes", F_INT, &o->classes, "class count (default: the training data's)"},
        {"--epochs", F_INT, &o->epochs, "epochs (default 10)"},
        {"--batch", F_INT, &o->batch, "batch size (default 64)"},
        {"--res", F_INT, &o->res, "input resolution (default 64)"},
        {"--lr", F_FLOAT, &o->lr, "peak learning rate (default 0.1)"},
        {"--optimizer", F_STR, &o->optimizer, "sgd, rmsprop (TF's), rmsprop_torch, adamw (default sgd)"},
        {"--momentum", F_FLOAT, &o->momentum, "momentum (default 0.9)"},
        {"--no-nesterov", F_BOOL, &x->no_nesterov, "plain momentum for sgd (default Nesterov)"},
        {"--wd", F_FLOAT, &o->weight_decay, "weight decay (default 4e-5, on every parameter)"},
        {"--no-decay-bn-bias", F_BOOL, &o->no_decay_bn_bias, "no weight decay on BN parameters and biases"},
        {"--schedule", F_STR, &o->schedule, "cosine, step, constant (default cosine, per step)"},
        {"--warmup", F_FLOAT, &o->warmup_epochs, "linear warm-up epochs (default 1)"},
        {"--label-smoothing", F_FLOAT, &o->label_smoothing, "label smoothing (default 0.1)"},
        {"--ema", F_FLOAT, &o->ema, "weight EMA decay, e.g. 0.9999 (default off); evaluation uses the EMA"},
        {"--clip", F_FLOAT, &o->clip, "clip gradients to this global norm (default off)"},
        {"--aug", F_STR, &o->aug, "padcrop (pad + random crop + flip), rrc (random-resized crop + flip), none"},
        {"--pad", F_INT, &o->pad, "padding of padcrop (default 4)"},
        {"--seed", F_U64, &o->seed, "seed of the initialisation, the data order and augmentation (default 0)"},
        {"--threads", F_INT, &o->threads, "threads (default: all cores)"},
        {"--workers", F_INT, &o->workers, "data loading threads (default 2)"},
        {"--out", F_STR, &o->out, "checkpoint to write (required)"},
        {"--resume", F_STR, &o->resume, "checkpoint to resume from (usually the same as --out)"},
        {"--log", F_STR, &o->log, "CSV log (default OUT.csv)"},
        {"--max-steps", F_INT, &x->max_steps, "stop after this many steps, saving a resumable checkpoint"},
        {"--sync-bn", F_BOOL, &o->sync_bn, "under mpirun: batchnorm over the whole global --batch, not each rank's share"},
        {"--quiet", F_BOOL, &x->quiet, "no progress output"},
        {"--json", F_BOOL, &x->json, "print the result as one JSON object on stdout"},
    };
    int n = (int)(sizeof flags / sizeof flags[0]);
    memcpy(f, flags, sizeof flags);
    return n;
}

void cli_train_apply(ib_train_opts *o, cli_train_extra *x) {
    if (ib_dist_rank() > 0) x->quiet = 1, x->json = 0;   // under mpirun rank 0 alone reports
    if (x->no_nesterov) o->nesterov = 0;
    o->progress = !x->quiet;
    o->max_steps = x->max_steps;
}

// The SSDLite flags of `train --task detect` and `supernet train --task detect`.
int cli_detect_flags(cli_flag *flags, ib_train_opts *o) {
    int n = 0;
    flags[n++] = (cli_flag){"--det-min-scale", F_FLOAT, &o->det_min_scale, "detect: default-box scale of the first level (0.2)"};
    flags[n++] = (cli_flag){"--det-max-scale", F_FLOAT, &o->det_max_scale, "detect: default-box scale of the last level (0.95)"};
    flags[n++] = (cli_flag){"--det-ratios", F_STR, &o->det_ratios, "detect: default-box aspect ratios (\"1,2,0.5\")"};
    flags[n++] = (cli_flag){"--det-match-iou", F_FLOAT, &o->det_match_iou, "detect: IoU making an anchor positive (0.5)"};
    flags[n++] = (cli_flag){"--det-neg-ratio", F_FLOAT, &o->det_neg_ratio, "detect: hard negatives per positive (3)"};
    flags[n++] = (cli_flag){"--det-nms-iou", F_FLOAT, &o->det_nms_iou, "detect: per-class NMS IoU threshold (0.6)"};
    flags[n++] = (cli_flag){"--det-score-thr", F_FLOAT, &o->det_score_thr, "detect: score threshold of detections (0.01)"};
    flags[n++] = (cli_flag){"--det-max-dets", F_INT, &o->det_max_dets, "detect: detections per image (100)"};
    flags[n++] = (cli_flag){"--det-loss", F_STR, &o->det_loss, "detect: ssd (softmax + hard negatives; default) or focal (sigmoid focal)"};
    flags[n++] = (cli_flag){"--det-focal-alpha", F_FLOAT, &o->det_focal_alpha, "detect: the focal loss's alpha (0.25)"};
    flags[n++] = (cli_flag){"--det-focal-gamma", F_FLOAT, &o->det_focal_gamma, "detect: the focal loss's gamma (2)"};
    return n;
}

int cli_segment_flags(cli_flag *flags, ib_train_opts *o) {
    int n = 0;
    flags[n++] = (cli_flag){"--head", F_STR, &o->seg_head, "segment: deeplab (default; DeepLabv3+-lite) or bifpn (EfficientDet's BiFPN)"};
    flags[n++] = (cli_flag){"--high-stride", F_INT, &o->seg_high_stride, "segment: the ASPP's (bifpn: the coarsest level's) stride, 16 or 32 (default 16)"};
    flags[n++] = (cli_flag){"--low-stride", F_INT, &o->seg_low_stride, "segment: the decoder's (bifpn: the finest level's, the logits') stride, 4 or 8 (default 4)"};
    flags[n++] = (cli_flag){"--head-width", F_INT, &o->seg_head_width, "segment: ASPP and decoder width (bifpn: every level's channels) (default 64)"};
    flags[n++] = (cli_flag){"--bifpn-repeats", F_INT, &o->seg_repeats, "segment: BiFPN layers stacked (default 2)"};
    flags[n++] = (cli_flag){"--seg-aug", F_STR, &o->seg_aug, "segment: flip (default), scale (jitter 0.5..2, crop, flip), none"};
    flags[n++] = (cli_flag){"--class-weights", F_STR, &o->class_weights, "segment: none (default) or median (median frequency)"};
    return n;
}
