// ibnas train: train a classifier (detection and segmentation join later through --task).
#include "cli/cli.h"
#include "tasks/tasks.h"

#include <string.h>

static const char *usage_text =
    "usage: ibnas train --task classify --data PACK.h5|DIR [--val PACK.h5|DIR] --out CKPT.h5 [flags]\n\n"
    "Trains a network, printing progress on stderr, appending a row per epoch to OUT.csv and writing the\n"
    "checkpoint every epoch (atomically). Ctrl-C finishes the step, saves and stops; --resume OUT.h5\n"
    "continues exactly where it stopped. Defaults follow the Tiny ImageNet recipe in docs/TRAINING.md.\n";

static int parse_choice(const char *verb, const char *flag, const char *v, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 1;
        }
    fprintf(stderr, "ibnas %s: %s '%s' is not one of", verb, flag, v);
    for (int i = 0; i < n; i++) fprintf(stderr, " %s", names[i]);
    fputc('\n', stderr);
    return 0;
}

int cmd_train(int argc, char **argv) {
    ib_train_cfg c;
    ib_train_cfg_default(&c);
    const char *task = "classify", *optimizer = "sgd", *schedule = "cosine", *aug = "padcrop";
    int no_nesterov = 0, no_decay_bn = 0, quiet = 0, json = 0, max_steps = 0;
    float momentum = 0.9f, wd = 4e-5f;
    const cli_flag flags[] = {
        {"--task", F_STR, &task, "classify (default; detect and segment are not built yet)"},
        {"--arch", F_STR, &c.arch, "mobilenetv2, mobilenetv2:WIDTH or FILE.arch.json (default mobilenetv2)"},
        {"--data", F_STR, &c.data, "training data: a pack (.h5), an image folder, a Tiny ImageNet root, ..."},
        {"--val", F_STR, &c.val, "validation data, evaluated after every epoch (split 'val' of a root)"},
        {"--classes", F_INT, &c.classes, "class count (default: the training data's)"},
        {"--epochs", F_INT, &c.epochs, "epochs (default 10)"},
        {"--batch", F_INT, &c.batch, "batch size (default 64)"},
        {"--res", F_INT, &c.res, "input resolution (default 64)"},
        {"--lr", F_FLOAT, &c.lr, "peak learning rate (default 0.1)"},
        {"--optimizer", F_STR, &optimizer, "sgd, rmsprop (TF's), rmsprop_torch, adamw (default sgd)"},
        {"--momentum", F_FLOAT, &momentum, "momentum (default 0.9)"},
        {"--no-nesterov", F_BOOL, &no_nesterov, "plain momentum for sgd (default Nesterov)"},
        {"--wd", F_FLOAT, &wd, "weight decay (default 4e-5, on every parameter)"},
        {"--no-decay-bn-bias", F_BOOL, &no_decay_bn, "no weight decay on BN parameters and biases"},
        {"--schedule", F_STR, &schedule, "cosine, step, constant (default cosine, per step)"},
        {"--warmup", F_FLOAT, &c.warmup_epochs, "linear warm-up epochs (default 1)"},
        {"--label-smoothing", F_FLOAT, &c.label_smoothing, "label smoothing (default 0.1)"},
        {"--ema", F_FLOAT, &c.ema, "weight EMA decay, e.g. 0.9999 (default off); evaluation uses the EMA"},
        {"--clip", F_FLOAT, &c.clip, "clip gradients to this global norm (default off)"},
        {"--aug", F_STR, &aug, "padcrop (pad + random crop + flip), rrc (random-resized crop + flip), none"},
        {"--pad", F_INT, &c.pad, "padding of padcrop (default 4)"},
        {"--seed", F_U64, &c.seed, "seed of the initialisation, the data order and augmentation (default 0)"},
        {"--threads", F_INT, &c.threads, "threads (default: all cores)"},
        {"--workers", F_INT, &c.workers, "data loading threads (default 2)"},
        {"--out", F_STR, &c.out, "checkpoint to write (required)"},
        {"--resume", F_STR, &c.resume, "checkpoint to resume from (usually the same as --out)"},
        {"--log", F_STR, &c.log, "CSV log (default OUT.csv)"},
        {"--max-steps", F_INT, &max_steps, "stop after this many steps, saving a resumable checkpoint"},
        {"--quiet", F_BOOL, &quiet, "no progress output"},
        {"--json", F_BOOL, &json, "print the result as one JSON object on stdout"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("train", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (strcmp(task, "classify")) {
        fprintf(stderr, "ibnas train: --task %s is not built yet (classify is)\n", task);
        return 2;
    }
    if (!c.data || !c.out) {
        fprintf(stderr, "ibnas train: --data and --out are required (ibnas train --help)\n");
        return 2;
    }
    static const char *const opt_names[] = {"sgd", "rmsprop", "rmsprop_torch", "adamw"};
    static const char *const sch_names[] = {"constant", "cosine", "step"};
    static const char *const aug_names[] = {"none", "padcrop", "rrc"};
    int oi, si, ai;
    if (!parse_choice("train", "--optimizer", optimizer, opt_names, 4, &oi) ||
        !parse_choice("train", "--schedule", schedule, sch_names, 3, &si) || !parse_choice("train", "--aug", aug, aug_names, 3, &ai))
        return 2;
    c.optim = ib_optim_cfg_default(oi == 3 ? IB_OPTIM_ADAMW : oi == 0 ? IB_OPTIM_SGD : IB_OPTIM_RMSPROP, oi == 2);
    if (oi != 3) c.optim.momentum = momentum;
    c.optim.nesterov = oi == 0 && !no_nesterov && momentum > 0;
    c.optim.weight_decay = wd;
    c.optim.no_decay_bn_bias = no_decay_bn;
    c.schedule = (ib_lr_kind)si;
    c.aug = (ib_aug_kind)ai;
    c.progress = !quiet;
    c.max_steps = max_steps;

    ib_train_result res;
    ib_status s = ib_train_classify(&c, &res);
    if (s == IB_ERR_INTERRUPTED) {
        fprintf(stderr, "ibnas train: %s (continue with --resume %s)\n", ib_errmsg(), c.out);
        return 130;
    }
    if (s) return cli_report("train", s);
    if (json)
        printf("{\"task\": \"classify\", \"epochs\": %d, \"steps\": %ld, \"train_loss\": %.6f, \"val_top1\": %.6f, "
               "\"val_top5\": %.6f, \"wall_s\": %.1f, \"img_per_s\": %.1f, \"checkpoint\": \"%s\"}\n",
               res.epochs_done, res.steps, res.last_loss, res.val_top1, res.val_top5, res.wall_s, res.img_per_s, c.out);
    else if (!quiet)
        fprintf(stderr, "train: done, %d epochs, %ld steps in %.1fs; checkpoint %s\n", res.epochs_done, res.steps, res.wall_s,
                c.out);
    return 0;
}
