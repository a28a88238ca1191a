// ibnas train: train a classifier or a segmentation network (--task segment; detection joins later), over
// the public API (ib_train).
#include "cli/cli.h"

#include <string.h>

static const char *usage_text =
    "usage: ibnas train [--task classify|detect|segment] --data PACK.h5|DIR [--val PACK.h5|DIR] --out CKPT.h5 [flags]\n\n"
    "Trains a network, printing progress on stderr, appending a row per epoch to OUT.csv and writing the\n"
    "checkpoint every epoch (atomically). Ctrl-C finishes the step, saves and stops; --resume OUT.h5\n"
    "continues exactly where it stopped. --init SUB.h5 starts from a checkpoint's network and weights (a\n"
    "subnet from ibnas extract: fine-tuning); with --arch, or when it classifies other classes or segments,\n"
    "the network (--arch's, else its own with a fresh classifier) takes every tensor of the same name and\n"
    "shape from it. Defaults follow the Tiny ImageNet recipe in docs/TRAINING.md.\n"
    "--task segment trains the backbone (--arch or --init's network) with a DeepLabv3+-lite or a BiFPN head\n"
    "(--head) on data with masks (docs/SEGMENTATION.md).\n";

int cmd_train(int argc, char **argv) {
    ib_train_opts o;
    ib_train_opts_default(&o);
    const char *task = "classify";
    cli_train_extra x;
    cli_flag flags[CLI_TRAIN_FLAGS + 15 + 12];
    int n = 0;
    flags[n++] = (cli_flag){"--task", F_STR, &task, "classify (default), detect (SSDLite; docs/DETECTION.md) or segment (docs/SEGMENTATION.md)"};
    flags[n++] = (cli_flag){"--arch", F_STR, &o.arch, "mobilenetv2, mobilenetv2:WIDTH or FILE.arch.json (default mobilenetv2, or --init's network)"};
    flags[n++] = (cli_flag){"--init", F_STR, &o.init, "start from this checkpoint's network and weights (fine-tuning)"};
    n += cli_train_flags(flags + n, &o, &x);
    // Segmentation
    n += cli_segment_flags(flags + n, &o);
    flags[n++] = (cli_flag){"--height", F_INT, &o.seg_height, "segment: training and validation height (default --res)"};
    flags[n++] = (cli_flag){"--width", F_INT, &o.seg_width, "segment: training and validation width (default --res)"};
    flags[n++] = (cli_flag){"--fast-argmax", F_BOOL, &o.fast_argmax, "segment: validate with the low-resolution argmax"};
    // Detection
    n += cli_detect_flags(flags + n, &o);
    flags[n] = (cli_flag){NULL, 0, NULL, NULL};
    int r = cli_parse("train", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    int detect = !strcmp(task, "detect");
    if (strcmp(task, "classify") && strcmp(task, "segment") && !detect) {
        fprintf(stderr, "ibnas train: --task %s is not one of classify, detect, segment\n", task);
        return 2;
    }
    o.task = task;
    if (!o.data || !o.out) {
        fprintf(stderr, "ibnas train: --data and --out are required (ibnas train --help)\n");
        return 2;
    }
    cli_train_apply(&o, &x);
    ib_train_report res;
    ib_status s = ib_train(&o, &res);
    if (s == IB_ERR_INTERRUPTED) {
        fprintf(stderr, "ibnas train: %s (continue with --resume %s)\n", ib_errmsg(), o.out);
        return 130;
    }
    if (s == IB_ERR_ARG && strstr(ib_errmsg(), "is not one of")) {
        fprintf(stderr, "ibnas train: %s\n", ib_errmsg());
        return 2;
    }
    if (s) return cli_report("train", s);
    if (x.json && !strcmp(task, "segment"))
        printf("{\"task\": \"segment\", \"epochs\": %d, \"steps\": %ld, \"train_loss\": %.6f, \"val_miou\": %.6f, "
               "\"val_pixel_acc\": %.6f, \"wall_s\": %.1f, \"img_per_s\": %.1f, \"checkpoint\": \"%s\"}\n",
               res.epochs_done, res.steps, res.last_loss, res.val_miou, res.val_pixel_acc, res.wall_s, res.img_per_s,
               o.out);
    else if (x.json && detect) {
        printf("{\"task\": \"detect\", \"epochs\": %d, \"steps\": %ld, \"train_loss\": %.6f, \"wall_s\": %.1f, "
               "\"img_per_s\": %.1f, \"checkpoint\": \"%s\"", res.epochs_done, res.steps, res.last_loss, res.wall_s,
               res.img_per_s, o.out);
        for (int i = 0; i < IB_COCO_NSTATS; i++) printf(", \"val_%s\": %.6f", ib_coco_stat_name(i), res.val_coco[i]);
        printf("}\n");
    } else if (x.json)
        printf("{\"task\": \"classify\", \"epochs\": %d, \"steps\": %ld, \"train_loss\": %.6f, \"val_top1\": %.6f, "
               "\"val_top5\": %.6f, \"wall_s\": %.1f, \"img_per_s\": %.1f, \"checkpoint\": \"%s\"}\n",
               res.epochs_done, res.steps, res.last_loss, res.val_top1, res.val_top5, res.wall_s, res.img_per_s, o.out);
    else if (!x.quiet)
        fprintf(stderr, "train: done, %d epochs, %ld steps in %.1fs; checkpoint %s\n", res.epochs_done, res.steps,
                res.wall_s, o.out);
    return 0;
}
